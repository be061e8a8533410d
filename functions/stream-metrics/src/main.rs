//! The stream-metrics function's entry point: logging, configuration, clients, the runtime loop.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{service_fn, LambdaEvent};
use meter_fn_stream_metrics::{handle, Config, StreamMetrics};
use meter_lambda::Env;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env(&Env::process());
    let sdk = meter_aws::sdk_config().await;
    let state = StreamMetrics::new(&sdk, &config);
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<_, lambda_runtime::Error>(handle(state, event.payload).await)
    }))
    .await
}
