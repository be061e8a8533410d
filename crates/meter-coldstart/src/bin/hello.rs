//! The cold-start floor: the smallest `lambda_runtime` function, echoing its event.

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(|e: LambdaEvent<serde_json::Value>| async move {
        Ok::<_, lambda_runtime::Error>(e.payload)
    }))
    .await
}
