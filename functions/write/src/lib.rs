//! Lambda **write**, behind its own Function URL: the InfluxDB write API of `meter serve`
//! (`POST /api/v2/write?precision=` with `Authorization: Token`, `POST /write` with `u`/`p` or
//! Basic auth, gzip bodies, partial writes answered 400 with the bad lines named) served
//! through `lambda_http`, into the history store (DynamoDB or Timestream). Rejected lines are
//! kept in the bucket's quarantine (`quarantine/write/`).
//!
//! Why a function of its own rather than a route of the api function: least privilege. The api
//! function only reads; this one holds the write grant on the history store (and, for
//! DynamoDB's stored rollups, the read it needs to recompute them) and the quarantine prefix,
//! and nothing else: not the registry, the forecasts or the counters. A leaked read token
//! cannot write, and a leaked write token cannot read.
//!
//! InfluxDB clients cannot sign requests, so the URL's auth type is NONE and the router
//! checks the write token kept in Secrets Manager (`WRITE_TOKEN_SECRET_ARN`), in constant
//! time. The secret is read on the first request, not at start-up.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::Router;
use lambda_http::Request;
use meter_api::{push_router, ApiError, AuthConfig, PushState, Secret, WriteState};
use meter_core::contract::cloud as names;
use meter_core::ports::{Quarantine, ReadingReader, ReadingWriter, SecretStore};
use meter_lambda::metrics::Emitter;
use meter_lambda::{ConfigError, Env, History, HistoryConfig, LazyRouter};

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The history store.
    pub history: HistoryConfig,
    /// The Secrets Manager secret (name or ARN) holding the write token.
    pub secret_id: String,
    /// The bucket whose quarantine prefix keeps rejected lines.
    pub quarantine_bucket: String,
    /// The tag naming the meter, when not `meter`.
    pub meter_tag: Option<String>,
}

impl Config {
    /// Reads the history store's variables, `WRITE_TOKEN_SECRET_ARN`, `QUARANTINE_BUCKET` and
    /// the optional `METER_TAG`.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            history: HistoryConfig::from_env(env)?,
            secret_id: env.required(names::ENV_WRITE_TOKEN_SECRET)?,
            quarantine_bucket: env.required(names::ENV_QUARANTINE_BUCKET)?,
            meter_tag: env.optional(names::ENV_METER_TAG),
        })
    }
}

/// The clients, built once per cold start; the router once the token is known.
#[allow(missing_debug_implementations)] // reason: the ports are not Debug
pub struct Write {
    writer: Arc<dyn ReadingWriter>,
    reader: Arc<dyn ReadingReader>,
    quarantine: Arc<dyn Quarantine>,
    secrets: Arc<dyn SecretStore>,
    secret_id: String,
    meter_tag: Option<String>,
    router: LazyRouter,
}

impl Write {
    /// Clients for the configured store, bucket and secret (no request is sent).
    pub fn new(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        let history = History::new(sdk, &config.history);
        let objects = Arc::new(meter_aws_io::S3Objects::from_sdk(sdk));
        Self::with_parts(
            history.writer,
            history.reader,
            Arc::new(meter_aws_io::ObjectQuarantine::new(
                objects,
                &config.quarantine_bucket,
                names::WRITE_QUARANTINE_PREFIX,
            )),
            Arc::new(meter_aws::AwsSecrets::new(sdk)),
            config,
        )
    }

    /// The same over given parts.
    pub fn with_parts(
        writer: Arc<dyn ReadingWriter>,
        reader: Arc<dyn ReadingReader>,
        quarantine: Arc<dyn Quarantine>,
        secrets: Arc<dyn SecretStore>,
        config: &Config,
    ) -> Self {
        Self {
            writer,
            reader,
            quarantine,
            secrets,
            secret_id: config.secret_id.clone(),
            meter_tag: config.meter_tag.clone(),
            router: LazyRouter::new(Emitter::lambda("write")),
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
            tracing::error!(error = %e, "cannot read the write token");
            ApiError::secret_unavailable("write token").into_response()
        })?;
        Ok(push_router(WriteState {
            auth: AuthConfig {
                enabled: true,
                api_token: None,
                seed003_token: None,
                webhook_secret: None,
                write_token: Secret::new(value.trim()),
            },
            push: Some(PushState {
                writer: self.writer.clone(),
                quarantine: self.quarantine.clone(),
                known: None,
                meter_tag: self.meter_tag.clone(),
                catalogue: Some(self.reader.clone()),
            }),
            clock: Arc::new(chrono::Utc::now),
        }))
    }
}

/// Serves one Function URL request.
pub async fn handle(state: &Write, req: Request) -> Result<Response, Infallible> {
    state.router.serve(|| state.build(), req).await
}
