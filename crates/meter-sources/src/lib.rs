//! meterflow's sources, each an implementation of `meter_core::collect::Source`:
//!
//! - [`sst`]: the SST Cloud (Neptun ProW / Smart) client of seed 000, with token or login
//!   authentication, retries for a slow and flaky service, and plausibility checks;
//! - [`http_json`]: a generic HTTP JSON source (seed 003's external API): a URL template, an
//!   optional API-key header, and a mapping from the response to readings, split into history and
//!   forecasts at "now".
//!
//! Both use [`Retry`] for network errors and 5xx answers. Secrets come from the environment or a
//! `SecretStore`, and are never logged.

pub mod http_json;
pub mod sst;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use meter_core::collect::Source;
use meter_core::contract;
use meter_core::ports::{ReadingReader, SecretStore};
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::http_json::{EnvLookup, HttpJsonSource};
use crate::sst::{SstAuth, SstClient, SstConfig, SstSource};

/// The sources a process can run, by name, with a note for each it cannot (missing settings).
pub type Sources = BTreeMap<String, Arc<dyn Source>>;

/// Builds every source whose settings are present in `env`: SST Cloud only when configured
/// (most users have no account), the HTTP JSON source always. `secrets` is asked for only when
/// a setting names a secret (`SST_SECRET_ID`, an entry's `api_key_secret`); `history` gives the
/// SST plausibility checks the previous readings.
pub fn from_env(
    env: EnvLookup,
    history: Arc<dyn ReadingReader>,
    secrets: impl Fn() -> Option<Arc<dyn SecretStore>>,
) -> (Sources, Vec<String>) {
    let mut out: Sources = BTreeMap::new();
    let mut notes = Vec::new();
    let client = SstConfig::from_lookup(|k| env(k))
        .map_err(|e| e.to_string())
        .and_then(|c| {
            let secrets = matches!(c.auth, SstAuth::SecretId(_))
                .then(&secrets)
                .flatten();
            SstClient::new(c, secrets).map_err(|e| e.to_string())
        });
    match client {
        Ok(client) => {
            out.insert(
                contract::SOURCE_SST.to_owned(),
                Arc::new(SstSource::new(client, history)),
            );
        }
        Err(e) => notes.push(format!("{}: not configured ({e})", contract::SOURCE_SST)),
    }
    out.insert(
        contract::SOURCE_HTTP_JSON.to_owned(),
        Arc::new(HttpJsonSource::new(Duration::from_secs(30), secrets(), env)),
    );
    (out, notes)
}

/// An HTTP client built on its first request. Building a `reqwest` client sets up its
/// certificate verifier, which reads and parses every system root certificate: a Lambda
/// function should not pay that at start-up, nor a `meter` command that never fetches.
pub(crate) struct LazyHttp {
    timeout: Duration,
    connect_timeout: Duration,
    client: OnceLock<reqwest::Client>,
}

impl LazyHttp {
    pub(crate) fn new(timeout: Duration, connect_timeout: Duration) -> Self {
        Self {
            timeout,
            connect_timeout,
            client: OnceLock::new(),
        }
    }

    /// The client; an error (no usable TLS backend) is answered again on the next call.
    pub(crate) fn get(&self) -> Result<&reqwest::Client, String> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let built = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout.min(self.timeout))
            .user_agent(concat!("meterflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(self.client.get_or_init(|| built))
    }
}

/// The largest response body read (an SST house or a day of points is a few kilobytes).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// How a source retries: network errors, timeouts, 429 and 5xx answers are retried with
/// exponential backoff; anything else is answered at once.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The first wait; it doubles each time.
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// The last failure of a retried request.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The request could not be made or answered (connect, timeout, reset).
    Network(reqwest::Error),
    /// The service kept answering a retryable status.
    Status(StatusCode, String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Network(e) if e.is_timeout() => write!(f, "timed out: {e}"),
            Self::Network(e) => write!(f, "{e}"),
            Self::Status(s, body) => write!(f, "answered {s}: {body}"),
        }
    }
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// Sends the request `make` builds, retrying per `policy`; returns the first answer that is not
/// retryable (which may still be an error status for the caller to judge).
pub(crate) async fn send(
    policy: Retry,
    what: &str,
    make: impl Fn() -> RequestBuilder,
) -> Result<Response, SendError> {
    let mut wait = policy.backoff;
    let attempts = policy.attempts.max(1);
    let mut last = None;
    for attempt in 1..=attempts {
        match make().send().await {
            Ok(r) if !retryable(r.status()) => return Ok(r),
            Ok(r) => {
                let status = r.status();
                let body = short(&r.text().await.unwrap_or_default());
                tracing::warn!(request = what, %status, attempt, attempts, "Retryable answer.");
                last = Some(SendError::Status(status, body));
            }
            Err(e) => {
                tracing::warn!(request = what, error = %e, attempt, attempts, "Request failed.");
                last = Some(SendError::Network(e));
            }
        }
        if attempt < attempts {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    Err(last.unwrap_or(SendError::Status(
        StatusCode::SERVICE_UNAVAILABLE,
        String::new(),
    )))
}

/// Reads a body of at most [`MAX_BODY_BYTES`].
pub(crate) async fn body(mut r: Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = r
        .chunk()
        .await
        .map_err(|e| format!("the body could not be read: {e}"))?
    {
        if out.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("the body is larger than {MAX_BODY_BYTES} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The first 300 characters of a body, for error messages (HTML error pages can be long).
pub(crate) fn short(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_owned(),
    }
}
