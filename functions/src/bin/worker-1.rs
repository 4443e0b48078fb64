//! Worker slot 1 for local emulation (deployments point every slot at the `worker` binary) (see `squash_functions::worker_handler`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    squash_functions::worker_handler::run().await
}
