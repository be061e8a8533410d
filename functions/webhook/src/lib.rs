//! Lambda **webhook**, behind a Function URL: seed 002's mbed Connector webhook, the
//! `meter-api` webhook route served through `lambda_http`. It checks the shared-secret header
//! (the seed left the URL open), and counts each button press once per endpoint and hour in the
//! counters table (`Endpoint`, `EventHour`, `ADD EventCount`); Connector's redeliveries are not
//! counted twice.
//!
//! The secret is read from Secrets Manager on the first request, not at start-up, and kept for
//! the life of the instance; a failed read is retried by the next request.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::Router;
use lambda_http::Request;
use meter_api::{webhook_router, ApiError, AuthConfig, Secret, WebhookState};
use meter_core::contract::cloud as names;
use meter_core::ports::{Counters, SecretStore};
use meter_lambda::metrics::Emitter;
use meter_lambda::{ConfigError, Env, LazyRouter};

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The counters table.
    pub counters_table: String,
    /// The Secrets Manager secret (name or ARN) holding the shared secret.
    pub secret_id: String,
}

impl Config {
    /// Reads `COUNTERS_TABLE` and `WEBHOOK_SECRET_ARN`.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            counters_table: env.required(names::ENV_COUNTERS_TABLE)?,
            secret_id: env.required(names::ENV_WEBHOOK_SECRET_SECRET)?,
        })
    }
}

/// The clients, built once per cold start; the router once the secret is known.
#[allow(missing_debug_implementations)] // reason: the ports are not Debug
pub struct Webhook {
    counters: Arc<dyn Counters>,
    secrets: Arc<dyn SecretStore>,
    secret_id: String,
    router: LazyRouter,
}

impl Webhook {
    /// Clients for the configured table and secret (no request is sent).
    pub fn new(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        Self::with_parts(
            Arc::new(meter_store_dynamodb::DynamoCounters::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &config.counters_table,
            )),
            Arc::new(meter_aws::AwsSecrets::new(sdk)),
            &config.secret_id,
        )
    }

    /// The same over given parts.
    pub fn with_parts(
        counters: Arc<dyn Counters>,
        secrets: Arc<dyn SecretStore>,
        secret_id: &str,
    ) -> Self {
        Self {
            counters,
            secrets,
            secret_id: secret_id.to_owned(),
            router: LazyRouter::new(Emitter::lambda("webhook")),
        }
    }

    /// The same, with the metric lines going to `metrics` instead of stdout.
    pub fn with_metrics(self, metrics: Emitter) -> Self {
        Self {
            router: LazyRouter::new(metrics),
            ..self
        }
    }

    async fn build(&self) -> Result<Router, Response> {
        let value = self.secrets.secret(&self.secret_id).await.map_err(|e| {
            tracing::error!(error = %e, "cannot read the webhook secret");
            ApiError::secret_unavailable("webhook secret").into_response()
        })?;
        Ok(webhook_router(WebhookState {
            counters: self.counters.clone(),
            auth: AuthConfig {
                enabled: true,
                api_token: None,
                seed003_token: None,
                webhook_secret: Secret::new(value.trim()),
                write_token: None,
            },
            clock: Arc::new(chrono::Utc::now),
        }))
    }
}

/// Serves one Function URL request.
pub async fn handle(state: &Webhook, req: Request) -> Result<Response, Infallible> {
    state.router.serve(|| state.build(), req).await
}
