//! The import function's entry point: logging, configuration, clients, the runtime loop.

use std::time::{Duration, SystemTime};

use lambda_runtime::{service_fn, LambdaEvent};
use meter_fn_import::{handle, Budget, Config, Import};
use meter_lambda::Env;

/// Time kept back from the invocation's deadline to write the last batch and the resume marker.
const MARGIN: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(&Env::process())?;
    let sdk = meter_aws::sdk_config().await;
    let state = Import::new(&sdk, &config);
    let state = &state;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = SystemTime::UNIX_EPOCH + Duration::from_millis(event.context.deadline);
            let budget = Budget::Deadline(deadline.checked_sub(MARGIN).unwrap_or(deadline));
            handle(state, &event.payload, budget)
                .await
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}
