//! meterflow's HTTP API: one axum [`Router`] over the ports of `meter-core`, used unchanged by
//! `meter serve` (on the SQLite store) and by the Lambda Function URL (through `lambda_http`).
//!
//! Routes:
//! - our own, versioned under `/v1` and described by `/v1/openapi.json`: meters, readings (JSON or
//!   CSV, cursor-paginated), latest values, daily and hourly rollups, the last-24-hours chart;
//! - the seed systems' own: seed 003's `GET /timeSeries-data`, seed 004's `GET /?meterId&date`,
//!   seed 002's mbed webhook (`PUT`/`POST /webhook`), and seed 001's page of charts at `/ui`.
//!
//! Every error is JSON `{"error": <message>, "code": <stable code>}` (seed 004's clients read
//! `error`). Authentication is on unless switched off explicitly: a bearer token (or the page's
//! login cookie), seed 003's `x-security-token`, and the webhook's shared-secret header, each
//! compared in constant time.

mod auth;
pub mod chart;
mod error;
mod page;
mod params;
mod seeds;
mod v1;
mod webhook;
pub mod write;

use std::fmt;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::{middleware, Router};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use meter_core::ports::{Counters, MeterRegistry, RangeReader, ReadingReader};

pub use error::ApiError;
pub use webhook::WebhookState;
pub use write::{PushState, WriteState};

/// The header mbed Connector sends with every notification, holding the webhook's shared
/// secret (Connector's callback registration takes fixed headers for exactly this).
pub const WEBHOOK_SECRET_HEADER: &str = "x-webhook-secret";
/// Seed 003's token header.
pub const SEED003_TOKEN_HEADER: &str = "x-security-token";
/// The cookie the page's login form sets.
pub const TOKEN_COOKIE: &str = "meter_token";
/// The largest request body accepted (webhook notifications are a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The longest request target (path and query) served. Every route's parameters fit in a few
/// hundred bytes; the bound sits far below the HTTP server's own (64 KiB, answered by it before
/// any route runs, with a bare status), so a long URI gets the API's JSON error instead.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// A secret value: never printed, compared in constant time.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// Wraps a secret. Surrounding whitespace (a trailing newline in a token file) is dropped.
    pub fn new(value: &str) -> Option<Self> {
        let v = value.trim();
        (!v.is_empty()).then(|| Self(Arc::from(v.as_bytes())))
    }

    /// Whether `candidate` equals the secret, in time that depends only on their lengths.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        auth::constant_time_eq(&self.0, candidate)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Who may call what.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Off only when switched off explicitly (a Function URL behind AWS_IAM, `--no-auth`).
    pub enabled: bool,
    /// The bearer token of `/v1`, `/ui` and seed 004's route.
    pub api_token: Option<Secret>,
    /// Seed 003's `x-security-token`; the API token when unset.
    pub seed003_token: Option<Secret>,
    /// The webhook's shared secret; the webhook refuses everything when unset.
    pub webhook_secret: Option<Secret>,
    /// The token of the InfluxDB write routes; the API token when unset.
    pub write_token: Option<Secret>,
}

impl AuthConfig {
    /// Authentication switched off for every route.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            api_token: None,
            seed003_token: None,
            webhook_secret: None,
            write_token: None,
        }
    }
}

/// The current time; a function so tests can fix it.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Everything the handlers use.
#[derive(Clone)]
pub struct ApiState {
    /// The reading (history) store.
    pub readings: Arc<dyn ReadingReader>,
    /// The forecast store (seed 003's future rows); may be the reading store itself.
    pub forecasts: Arc<dyn RangeReader>,
    /// The registry, for each meter's own time zone.
    pub registry: Option<Arc<dyn MeterRegistry>>,
    /// The webhook's hourly counters.
    pub counters: Arc<dyn Counters>,
    /// Authentication.
    pub auth: AuthConfig,
    /// The InfluxDB write routes' store, when this API takes writes.
    pub push: Option<PushState>,
    /// The zone used when neither the caller nor the registry names one.
    pub default_zone: Tz,
    /// The clock.
    pub clock: Clock,
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiState")
            .field("auth", &self.auth)
            .field("default_zone", &self.default_zone)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }
}

/// Only the webhook (`PUT`/`POST /webhook`), for the webhook function.
pub fn webhook_router(state: WebhookState) -> Router {
    Router::new()
        .route("/webhook", put(webhook::notify).post(webhook::notify))
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(error::limit_uri))
        .layer(middleware::map_response(error::json_errors))
        .with_state(state)
}

/// The InfluxDB write routes, with their own body limit and authentication.
fn write_router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    WriteState: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/api/v2/write", post(write::write))
        .route("/write", post(write::write))
        .layer(DefaultBodyLimit::max(write::MAX_WRITE_BODY_BYTES))
}

/// Only the InfluxDB write routes (and `/healthz`), for the write function: it holds the
/// write grant, and the read API's function does not.
pub fn push_router(state: WriteState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(write_router())
        .fallback(error::not_found)
        .layer(middleware::from_fn(error::limit_uri))
        .layer(middleware::map_response(error::json_errors))
        .with_state(state)
}

/// The whole API.
pub fn router(state: ApiState) -> Router {
    let protected = Router::new()
        .route("/v1/meters", get(v1::meters))
        .route("/v1/latest", get(v1::latest))
        .route("/v1/meters/{meter}/readings", get(v1::readings))
        .route("/v1/meters/{meter}/daily", get(v1::daily))
        .route("/v1/meters/{meter}/hourly", get(v1::hourly))
        .route("/v1/meters/{meter}/chart.svg", get(v1::chart))
        .route("/ui", get(page::index))
        .route("/", get(seeds::daily_sum))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let open = Router::new()
        .route("/v1/openapi.json", get(v1::openapi))
        .route("/healthz", get(|| async { "ok" }))
        .route("/ui/login", get(page::login_form).post(page::login))
        .route("/timeSeries-data", get(seeds::time_series))
        .route("/webhook", put(webhook::notify).post(webhook::notify))
        .merge(write_router());
    protected
        .merge(open)
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(error::limit_uri))
        .layer(middleware::map_response(error::json_errors))
        .with_state(state)
}
