//! Split function 1 for local emulation: the extra parts of a split batch go to these names,
//! since `cargo lambda watch` runs one invocation at a time per name (deployments send parts
//! to the slots' own functions, which Lambda runs in as many containers as needed) (see
//! `squash_functions::worker_handler`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    squash_functions::worker_handler::run().await
}
