//! The coordinator Lambda function (see `squash_functions::coordinator_handler`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    squash_functions::coordinator_handler::run().await
}
