//! The worker Lambda function (see `squash_functions::worker`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    squash_functions::worker::run().await
}
