//! The worker Lambda function (see `squash_functions::worker_handler`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    squash_functions::worker_handler::run().await
}
