//! The write function's entry point: logging, configuration, clients, the runtime loop.

use lambda_http::{service_fn, Request};
use meter_fn_write::{handle, Config, Write};
use meter_lambda::Env;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env(&Env::process())?;
    let sdk = meter_aws::sdk_config().await;
    let state = Write::new(&sdk, &config);
    let state = &state;
    lambda_http::run(service_fn(move |req: Request| async move {
        handle(state, req).await
    }))
    .await
}
