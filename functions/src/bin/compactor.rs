//! The compactor Lambda function (see `squash_functions::compactor_handler`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    squash_functions::compactor_handler::run().await
}
