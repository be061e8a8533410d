//! What meterflow's AWS adapters share:
//!
//! - [`sdk_config`]: one way of building SDK clients, from the standard environment (region,
//!   credential chain, and `AWS_ENDPOINT_URL` for the local emulator, with no code branch);
//! - [`is_retryable`] and [`store_error`]: one retry classification for every SDK error
//!   (throttling, 5xx, timeouts and dispatch failures are retried; validation errors are not),
//!   and typed errors that keep their source;
//! - [`retry`]: one loop for batch APIs that answer "some of these, not all", resending with
//!   [`Backoff`] (exponential, full jitter) until a budget is spent, then reporting what is left;
//! - [`AwsSecrets`]: a `SecretStore` over Secrets Manager and SSM, fetched once and cached, never
//!   logged;
//! - [`tally`]: the requests and retries the SDK sent during an invocation, for its metrics.

pub mod retry;
pub mod tally;

pub use retry::{merge_chunk, send_batch, Answer, Backoff, RetryPolicy};

use std::collections::HashMap;

use async_trait::async_trait;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use meter_core::ports::{SecretStore, StoreError};
use tokio::sync::Mutex;

/// The SDK configuration from the environment, with the SDK's own HTTPS client set to load
/// its TLS trust store on the first request rather than whenever a client is built.
///
/// The stock client parses every system root certificate when the first SDK client is
/// constructed (the web-identity STS client inside the credential chain already does), which
/// was most of a Lambda function's init time; a function that only talks to the emulator over
/// plain HTTP, or whose first event needs no AWS call, never pays it.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The SDK's default HTTPS client (hyper 1, rustls with aws-lc, proxy from the environment)
/// without its eager trust-store load at client construction.
fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    use aws_smithy_http_client::{proxy::ProxyConfig, Builder, ConnectorBuilder};
    let connectors = Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    SharedHttpClient::new(DeferredTls(connectors))
}

/// Builds connectors only when a request needs one (the wrapped client's
/// `validate_base_client_config` builds a throwaway connector just to load the roots early),
/// and counts each attempt in the sending task's [`tally`].
#[derive(Debug)]
struct DeferredTls(SharedHttpClient);

impl HttpClient for DeferredTls {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(tally::Tallying(self.0.http_connector(settings, components)))
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// Error codes that mean "slow down" or "try again" across AWS services.
const RETRYABLE_CODES: [&str; 10] = [
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "TransactionConflictException",
    "LimitExceededException",
];

/// Whether an SDK error is worth retrying.
pub fn is_retryable<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            status >= 500
                || status == 429
                || e.err().code().is_some_and(|c| RETRYABLE_CODES.contains(&c))
        }
        _ => false,
    }
}

/// A `StoreError` for an SDK error: retryable ones are `Unavailable`, the rest `Refused`; the
/// SDK error is kept as the source.
pub fn store_error<E>(
    backend: &'static str,
    what: &str,
    err: SdkError<E, HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let retryable = is_retryable(&err);
    let detail = match &err {
        SdkError::ServiceError(e) => format!(
            "{}: {}",
            e.err().code().unwrap_or("error"),
            e.err().message().unwrap_or("no message")
        ),
        other => other.to_string(),
    };
    let message = format!("{what}: {detail}");
    let source: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
    if retryable {
        StoreError::Unavailable {
            backend,
            message,
            source: Some(source),
        }
    } else {
        StoreError::Refused {
            backend,
            message,
            source: Some(source),
        }
    }
}

/// [`AwsSecrets`] built on the first secret asked for: a process that never needs one (a
/// `meter serve` with no secret named) never loads an AWS configuration, so it neither probes
/// the instance metadata endpoint for a region nor warns that it found none.
#[derive(Debug, Default)]
pub struct LazySecrets(tokio::sync::OnceCell<AwsSecrets>);

impl LazySecrets {
    /// Nothing loaded yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SecretStore for LazySecrets {
    async fn secret(&self, id: &str) -> Result<String, StoreError> {
        let secrets = self
            .0
            .get_or_init(|| async { AwsSecrets::new(&sdk_config().await) })
            .await;
        secrets.secret(id).await
    }
}

/// Secrets from Secrets Manager (names or ARNs) and SSM (`ssm:/path` or `/path`), fetched once
/// per process and cached.
pub struct AwsSecrets {
    secrets: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
    cache: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for AwsSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsSecrets { .. }")
    }
}

impl AwsSecrets {
    /// Clients from a configuration.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            secrets: aws_sdk_secretsmanager::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            cache: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl SecretStore for AwsSecrets {
    async fn secret(&self, id: &str) -> Result<String, StoreError> {
        if let Some(v) = self.cache.lock().await.get(id) {
            return Ok(v.clone());
        }
        let value = if let Some(name) = id
            .strip_prefix("ssm:")
            .or_else(|| id.starts_with('/').then_some(id))
        {
            let out = self
                .ssm
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| store_error("SSM", &format!("parameter {name}"), e))?;
            out.parameter().and_then(|p| p.value()).map(str::to_owned)
        } else {
            let out = self
                .secrets
                .get_secret_value()
                .secret_id(id)
                .send()
                .await
                .map_err(|e| store_error("Secrets Manager", &format!("secret {id}"), e))?;
            out.secret_string().map(str::to_owned)
        };
        let value = value.ok_or_else(|| StoreError::Refused {
            backend: "secrets",
            message: format!("{id} has no text value"),
            source: None,
        })?;
        // The value is cached, never logged: only the id appears in messages.
        self.cache.lock().await.insert(id.to_owned(), value.clone());
        tracing::debug!(secret = id, "Read a secret.");
        Ok(value)
    }
}
