//! Lambda **api**, behind a Function URL: the `meter-api` router (our `/v1` routes, the page,
//! and the seeds' routes: 003's `/timeSeries-data`, 004's `/?meterId&date`) through
//! `lambda_http`, on the configured history store (DynamoDB or Timestream), the forecasts table
//! and the registry.
//!
//! Authentication: with `API_AUTH=iam` the Function URL itself requires signed requests, so the
//! router checks nothing more; with `API_AUTH=bearer` (a public URL) every route but the open
//! ones needs the token kept in Secrets Manager (`API_TOKEN_SECRET_ARN`), which is also seed
//! 003's `x-security-token`. The secret is read on the first request, not at start-up.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono_tz::Tz;
use lambda_http::Request;
use meter_api::{router, ApiError, ApiState, AuthConfig, Secret};
use meter_core::contract::{self, cloud as names};
use meter_core::ports::{Counters, MeterRegistry, RangeReader, ReadingReader, SecretStore};
use meter_lambda::metrics::Emitter;
use meter_lambda::{ConfigError, Env, History, HistoryConfig, LazyRouter};

/// How callers are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// The Function URL checks IAM signatures.
    Iam,
    /// The router checks the bearer token kept in this secret.
    Bearer {
        /// The secret's name or ARN.
        secret_id: String,
    },
}

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The registry table.
    pub registry_table: String,
    /// The forecasts table.
    pub forecasts_table: String,
    /// The counters table.
    pub counters_table: String,
    /// The history store.
    pub history: HistoryConfig,
    /// Authentication.
    pub auth: Auth,
    /// The zone days are cut in when neither caller nor registry says (`METER_TZ`, else UTC).
    pub zone: Tz,
}

impl Config {
    /// Reads the tables, the history store, `API_AUTH` (`iam` or `bearer`, the default) with
    /// `API_TOKEN_SECRET_ARN`, and `METER_TZ`.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let auth = match env.optional(names::ENV_API_AUTH).as_deref() {
            Some("iam") => Auth::Iam,
            None | Some("bearer") => Auth::Bearer {
                secret_id: env.required(names::ENV_API_TOKEN_SECRET)?,
            },
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: names::ENV_API_AUTH,
                    value: other.to_owned(),
                    why: "use iam or bearer",
                })
            }
        };
        let zone = match env.optional(contract::ENV_TZ) {
            None => Tz::UTC,
            Some(z) => z.parse().map_err(|_| ConfigError::Invalid {
                name: contract::ENV_TZ,
                value: z,
                why: "use an IANA zone name such as Europe/Moscow",
            })?,
        };
        Ok(Self {
            registry_table: env.required(names::ENV_REGISTRY_TABLE)?,
            forecasts_table: env.required(names::ENV_FORECASTS_TABLE)?,
            counters_table: env.required(names::ENV_COUNTERS_TABLE)?,
            history: HistoryConfig::from_env(env)?,
            auth,
            zone,
        })
    }
}

/// The stores, built once per cold start; the router once the token is known.
#[allow(missing_debug_implementations)] // reason: the ports are not Debug
pub struct Api {
    readings: Arc<dyn ReadingReader>,
    forecasts: Arc<dyn RangeReader>,
    registry: Arc<dyn MeterRegistry>,
    counters: Arc<dyn Counters>,
    secrets: Arc<dyn SecretStore>,
    auth: Auth,
    zone: Tz,
    router: LazyRouter,
}

impl Api {
    /// Clients for the configured stores (no request is sent).
    pub fn new(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        Self::with_parts(
            History::new(sdk, &config.history).reader,
            Arc::new(meter_store_dynamodb::DynamoForecasts::new(
                ddb.clone(),
                &config.forecasts_table,
            )),
            Arc::new(meter_store_dynamodb::DynamoRegistry::new(
                ddb.clone(),
                &config.registry_table,
            )),
            Arc::new(meter_store_dynamodb::DynamoCounters::new(
                ddb,
                &config.counters_table,
            )),
            Arc::new(meter_aws::AwsSecrets::new(sdk)),
            config,
        )
    }

    /// The same over given parts.
    pub fn with_parts(
        readings: Arc<dyn ReadingReader>,
        forecasts: Arc<dyn RangeReader>,
        registry: Arc<dyn MeterRegistry>,
        counters: Arc<dyn Counters>,
        secrets: Arc<dyn SecretStore>,
        config: &Config,
    ) -> Self {
        Self {
            readings,
            forecasts,
            registry,
            counters,
            secrets,
            auth: config.auth.clone(),
            zone: config.zone,
            router: LazyRouter::new(Emitter::lambda("api")),
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
        let auth = match &self.auth {
            Auth::Iam => AuthConfig::disabled(),
            Auth::Bearer { secret_id } => {
                let token = self.secrets.secret(secret_id).await.map_err(|e| {
                    tracing::error!(error = %e, "cannot read the API token");
                    ApiError::secret_unavailable("API token").into_response()
                })?;
                AuthConfig {
                    enabled: true,
                    api_token: Secret::new(token.trim()),
                    seed003_token: None,
                    webhook_secret: None,
                    write_token: None,
                }
            }
        };
        Ok(router(ApiState {
            readings: self.readings.clone(),
            forecasts: self.forecasts.clone(),
            registry: Some(self.registry.clone()),
            counters: self.counters.clone(),
            push: None,
            auth,
            default_zone: self.zone,
            clock: Arc::new(chrono::Utc::now),
        }))
    }
}

/// Serves one Function URL request.
pub async fn handle(state: &Api, req: Request) -> Result<Response, Infallible> {
    state.router.serve(|| state.build(), req).await
}
