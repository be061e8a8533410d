//! The ingest function's entry point: logging, configuration, clients, the runtime loop.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use meter_fn_ingest::{handle, Config, Ingest};
use meter_lambda::Env;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(&Env::process())?;
    let sdk = meter_aws::sdk_config().await;
    let state = Ingest::new(&sdk, &config);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async {
        Ok::<_, lambda_runtime::Error>(handle(&state, event.payload, chrono::Utc::now()).await)
    }))
    .await
}
