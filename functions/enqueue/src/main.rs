//! The enqueue function's entry point: logging, configuration, clients, the runtime loop.

use lambda_runtime::{service_fn, LambdaEvent};
use meter_fn_enqueue::{handle, Config, Enqueue};
use meter_lambda::Env;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(&Env::process())?;
    let sdk = meter_aws::sdk_config().await;
    let state = Enqueue::new(&sdk, &config);
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| async {
        handle(&state, event.payload)
            .await
            .map_err(lambda_runtime::Error::from)
    }))
    .await
}
