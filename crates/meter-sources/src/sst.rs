//! The SST Cloud client (the REST API at `api.sst-cloud.com` that Neptun ProW+ WiFi and Neptun
//! Smart controllers report to; it has no published specification, so its shapes are the ones
//! independent clients agree on) and the `sst-cloud` source.
//!
//! Authentication is a token (`Authorization: Token <key>`), or a username and password logged
//! in once through `POST /auth/login/` (the key is reused; on a 401 it logs in again once and
//! retries). It never calls `/auth/logout/`, which would end the account's other sessions. Paths
//! keep their trailing slashes. Requests time out after 30 s by default (the service is slow, not
//! down, at 10-30 s) and 5xx answers and network errors are retried with backoff.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use meter_core::collect::{Collected, Source, SourceError};
use meter_core::decode::sst::SstCountersDecoder;
use meter_core::decode::{DecodeOptions, Rejection};
use meter_core::ports::{ReadingReader, RegistryEntry, SecretStore};
use meter_core::{contract, MeterId, Reading, SourceName, Tags};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::{body, send, short, LazyHttp, Retry, SendError};

/// The default base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.sst-cloud.com";

/// How the client authenticates.
#[derive(Clone)]
pub enum SstAuth {
    /// A token, used as is.
    Token(String),
    /// An account, logged in once.
    Login {
        /// The e-mail.
        username: String,
        /// The password.
        password: String,
    },
    /// A secret (Secrets Manager) holding the token.
    SecretId(String),
}

impl std::fmt::Debug for SstAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token(***)"),
            Self::Login { username, .. } => write!(f, "Login({username}, ***)"),
            Self::SecretId(id) => write!(f, "SecretId({id})"),
        }
    }
}

/// The client's settings.
#[derive(Debug, Clone)]
pub struct SstConfig {
    /// The base URL, without a trailing slash.
    pub base_url: String,
    /// Authentication.
    pub auth: SstAuth,
    /// One request's time limit.
    pub timeout: Duration,
    /// Retries of network errors and 5xx answers.
    pub retry: Retry,
    /// The `location` tag of every reading (seed 000's `LOCATION`).
    pub location: Option<String>,
    /// The largest plausible use, in litres per hour since the previous reading.
    pub max_litres_per_hour: f64,
}

/// A setting that is missing or wrong, naming its variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What is wrong.
    pub message: String,
}

impl SstConfig {
    /// Reads the settings through `get` (the environment in binaries). Seed 000's variable
    /// names (`SST_CLOUT_TOKEN`, `TOKEN_SECRET_NAME`, `LOCATION`) are accepted too.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let val = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let base_url = val(contract::ENV_SST_BASE_URL)
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned())
            .trim_end_matches('/')
            .to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(ConfigError {
                variable: contract::ENV_SST_BASE_URL,
                message: format!("{base_url:?} is not an http(s) URL"),
            });
        }
        let token = val(contract::ENV_SST_TOKEN).or_else(|| val(contract::ENV_SST_TOKEN_SEED));
        let secret =
            val(contract::ENV_SST_SECRET_ID).or_else(|| val(contract::ENV_SST_SECRET_ID_SEED));
        let user = val(contract::ENV_SST_USERNAME);
        let password = val(contract::ENV_SST_PASSWORD);
        let auth = match (token, user, password, secret) {
            (Some(t), _, _, _) => SstAuth::Token(t.trim_start_matches("Token ").to_owned()),
            (None, Some(username), Some(password), _) => SstAuth::Login { username, password },
            (None, Some(_), None, _) => {
                return Err(ConfigError {
                    variable: contract::ENV_SST_PASSWORD,
                    message: format!("is needed with {}", contract::ENV_SST_USERNAME),
                })
            }
            (None, None, _, Some(id)) => SstAuth::SecretId(id),
            _ => {
                return Err(ConfigError {
                    variable: contract::ENV_SST_TOKEN,
                    message: format!(
                        "set it, or {} and {}, or {}",
                        contract::ENV_SST_USERNAME,
                        contract::ENV_SST_PASSWORD,
                        contract::ENV_SST_SECRET_ID
                    ),
                })
            }
        };
        let number = |name: &'static str, default: f64| -> Result<f64, ConfigError> {
            match val(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|n| *n > 0.0)
                    .ok_or(ConfigError {
                        variable: name,
                        message: format!("{v:?} is not a positive number"),
                    }),
            }
        };
        Ok(Self {
            base_url,
            auth,
            timeout: Duration::from_secs_f64(number(contract::ENV_SST_TIMEOUT_SECS, 30.0)?),
            retry: Retry::default(),
            location: val(contract::ENV_LOCATION),
            max_litres_per_hour: number(contract::ENV_SST_MAX_LITRES_PER_HOUR, 2000.0)?,
        })
    }
}

/// Why a call to SST Cloud failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SstError {
    /// Down, slow or failing (after retries).
    #[error("SST Cloud is unavailable ({request}): {message}")]
    Unavailable {
        /// The request.
        request: String,
        /// What happened.
        message: String,
    },
    /// The token or the credentials were refused.
    #[error("SST Cloud refused the credentials ({request}): {message}")]
    Unauthorized {
        /// The request.
        request: String,
        /// The service's words.
        message: String,
    },
    /// 403 or 404: the house or device is not this account's, or does not exist.
    #[error("SST Cloud answered {status} to {request}: {message}")]
    NotAllowed {
        /// The request.
        request: String,
        /// 403 or 404.
        status: u16,
        /// The service's words.
        message: String,
    },
    /// The answer was not in the documented shape (the API changed, or an error page).
    #[error("SST Cloud's answer to {request} has an unexpected shape: {message}")]
    Shape {
        /// The request.
        request: String,
        /// What was wrong.
        message: String,
    },
    /// The client could not be set up.
    #[error("SST Cloud client: {0}")]
    Setup(String),
}

impl SstError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A house.
#[derive(Debug, Clone, PartialEq)]
pub struct House {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its IANA zone, if given.
    pub timezone: Option<String>,
}

impl House {
    /// The registry entry that collects this house (what discovery registers): id
    /// `sst-house-<id>`, the house's name, and its zone when the service gives a valid one.
    pub fn registry_entry(&self) -> Result<RegistryEntry, SstError> {
        let shape = |message: String| SstError::Shape {
            request: "GET /houses/".into(),
            message,
        };
        let mut params = std::collections::BTreeMap::new();
        params.insert("house".to_owned(), self.id.to_string());
        if !self.name.is_empty() {
            params.insert("name".to_owned(), self.name.clone());
        }
        Ok(RegistryEntry {
            id: MeterId::new(&format!("sst-house-{}", self.id))
                .map_err(|e| shape(e.to_string()))?,
            source: SourceName::new(contract::SOURCE_SST).map_err(|e| shape(e.to_string()))?,
            params,
            zone: self
                .timezone
                .clone()
                .filter(|z| meter_core::time::parse_zone(z).is_ok()),
            enabled: true,
        })
    }
}

/// The SST Cloud client.
pub struct SstClient {
    http: LazyHttp,
    config: SstConfig,
    secrets: Option<Arc<dyn SecretStore>>,
    key: Mutex<Option<String>>,
}

impl std::fmt::Debug for SstClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SstClient")
            .field("base_url", &self.config.base_url)
            .field("auth", &self.config.auth)
            .finish_non_exhaustive()
    }
}

fn detail(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o
            .get("detail")
            .or_else(|| o.get("non_field_errors"))
            .map(|d| match d {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| Value::Object(o).to_string()),
        _ => short(&String::from_utf8_lossy(body)),
    }
}

impl SstClient {
    /// A client; nothing is sent until the first call.
    pub fn new(config: SstConfig, secrets: Option<Arc<dyn SecretStore>>) -> Result<Self, SstError> {
        if matches!(config.auth, SstAuth::SecretId(_)) && secrets.is_none() {
            return Err(SstError::Setup(format!(
                "{} names a secret, but this build has no secret store; set {} or {} and {}",
                contract::ENV_SST_SECRET_ID,
                contract::ENV_SST_TOKEN,
                contract::ENV_SST_USERNAME,
                contract::ENV_SST_PASSWORD
            )));
        }
        Ok(Self {
            http: LazyHttp::new(config.timeout, Duration::from_secs(10)),
            config,
            secrets,
            key: Mutex::new(None),
        })
    }

    async fn login(&self, request: &str) -> Result<String, SstError> {
        let SstAuth::Login { username, password } = &self.config.auth else {
            return Err(SstError::Setup("no credentials to log in with".into()));
        };
        let url = format!("{}/auth/login/", self.config.base_url);
        let payload = json!({"username": username, "email": username, "password": password, "language": "en"});
        let http = self.http.get().map_err(SstError::Setup)?;
        let r = send(self.config.retry, "POST /auth/login/", || {
            http.post(&url).json(&payload)
        })
        .await
        .map_err(|e| SstError::Unavailable {
            request: "POST /auth/login/".into(),
            message: e.to_string(),
        })?;
        let status = r.status();
        let bytes = body(r).await.map_err(|m| SstError::Unavailable {
            request: request.into(),
            message: m,
        })?;
        if !status.is_success() {
            return Err(SstError::Unauthorized {
                request: "POST /auth/login/".into(),
                message: detail(&bytes),
            });
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| SstError::Shape {
            request: "POST /auth/login/".into(),
            message: format!("not JSON: {e}"),
        })?;
        v.get("key")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| SstError::Shape {
                request: "POST /auth/login/".into(),
                message: "no \"key\" in the answer".into(),
            })
    }

    /// The key to send: the cached one, else the token, the secret, or a login.
    async fn key(&self, request: &str) -> Result<String, SstError> {
        let mut key = self.key.lock().await;
        if let Some(k) = key.as_ref() {
            return Ok(k.clone());
        }
        let k = match &self.config.auth {
            SstAuth::Token(t) => t.clone(),
            SstAuth::SecretId(id) => {
                let store = self
                    .secrets
                    .as_ref()
                    .ok_or_else(|| SstError::Setup("no secret store".into()))?;
                store
                    .secret(id)
                    .await
                    .map_err(|e| SstError::Setup(format!("the secret {id}: {e}")))?
                    .trim()
                    .trim_start_matches("Token ")
                    .to_owned()
            }
            SstAuth::Login { .. } => self.login(request).await?,
        };
        *key = Some(k.clone());
        Ok(k)
    }

    /// `GET <path>` as JSON bytes, with the trailing slash, retries and one re-login on 401.
    pub async fn get(&self, path: &str) -> Result<Vec<u8>, SstError> {
        let request = format!("GET {path}");
        let url = format!("{}{path}", self.config.base_url);
        let mut relogged = false;
        loop {
            let key = self.key(&request).await?;
            let http = self.http.get().map_err(SstError::Setup)?;
            let r = send(self.config.retry, &request, || {
                http.get(&url)
                    .header("Authorization", format!("Token {key}"))
                    .header("Accept", "application/json")
            })
            .await
            .map_err(|e| SstError::Unavailable {
                request: request.clone(),
                message: match e {
                    SendError::Status(s, b) => format!("answered {s} on every attempt: {b}"),
                    other => other.to_string(),
                },
            })?;
            let status = r.status();
            let bytes = body(r).await.map_err(|m| SstError::Unavailable {
                request: request.clone(),
                message: m,
            })?;
            match status {
                s if s.is_success() => return Ok(bytes),
                StatusCode::UNAUTHORIZED
                    if !relogged && matches!(self.config.auth, SstAuth::Login { .. }) =>
                {
                    tracing::info!(request = %request, "SST Cloud refused the key; logging in again.");
                    *self.key.lock().await = None;
                    relogged = true;
                }
                StatusCode::UNAUTHORIZED => {
                    *self.key.lock().await = None;
                    return Err(SstError::Unauthorized {
                        request,
                        message: detail(&bytes),
                    });
                }
                s => {
                    return Err(SstError::NotAllowed {
                        request,
                        status: s.as_u16(),
                        message: detail(&bytes),
                    })
                }
            }
        }
    }

    /// The account's houses.
    pub async fn houses(&self) -> Result<Vec<House>, SstError> {
        let bytes = self.get("/houses/").await?;
        let shape = |message: String| SstError::Shape {
            request: "GET /houses/".into(),
            message,
        };
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| shape(format!("not JSON: {e}")))?;
        let list = v
            .as_array()
            .ok_or_else(|| shape(format!("expected a list, got {}", short(&v.to_string()))))?;
        list.iter()
            .map(|h| {
                let id = h
                    .get("id")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| shape(format!("a house without an id: {h}")))?;
                Ok(House {
                    id,
                    name: h
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    timezone: h.get("timezone").and_then(Value::as_str).map(str::to_owned),
                })
            })
            .collect()
    }

    /// The water-meter devices of a house (types 2 and 4, Neptun ProW+ and its rebadge, and 7,
    /// Neptun Smart), by id.
    pub async fn meter_devices(&self, house: i64) -> Result<Vec<i64>, SstError> {
        let path = format!("/houses/{house}/devices/");
        let bytes = self.get(&path).await?;
        let shape = |message: String| SstError::Shape {
            request: format!("GET {path}"),
            message,
        };
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| shape(format!("not JSON: {e}")))?;
        let list = v
            .as_array()
            .ok_or_else(|| shape("expected a list of devices".into()))?;
        Ok(list
            .iter()
            .filter(|d| matches!(d.get("type").and_then(Value::as_i64), Some(2 | 4 | 7)))
            .filter_map(|d| d.get("id").and_then(Value::as_i64))
            .collect())
    }

    /// The counters of a house as readings stamped `now`, and the elements that were not
    /// counters (a changed shape is an error, not silence). Where the house-level list is not
    /// served (404), the counters are read device by device instead.
    pub async fn counters(
        &self,
        house: i64,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Reading>, Vec<Rejection>), SstError> {
        match self
            .counters_at(&format!("/houses/{house}/counters/"), house, now)
            .await
        {
            Err(SstError::NotAllowed { status: 404, .. }) => {
                tracing::info!(house, "No house-level counters; reading them per device.");
                let (mut readings, mut rejected) = (Vec::new(), Vec::new());
                for device in self.meter_devices(house).await? {
                    let path = format!("/houses/{house}/devices/{device}/counters/");
                    let (r, j) = self.counters_at(&path, house, now).await?;
                    readings.extend(r);
                    rejected.extend(j);
                }
                Ok((readings, rejected))
            }
            other => other,
        }
    }

    async fn counters_at(
        &self,
        path: &str,
        house: i64,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Reading>, Vec<Rejection>), SstError> {
        let bytes = self.get(path).await?;
        let mut options = DecodeOptions::new(&format!("GET {path}"));
        options.received_at = now;
        let mut tags = Tags::empty();
        if let Some(loc) = &self.config.location {
            tags = tags
                .with("location", loc)
                .map_err(|e| SstError::Setup(format!("{}: {e}", contract::ENV_LOCATION)))?;
        }
        options.tags = tags
            .with("house", &house.to_string())
            .map_err(|e| SstError::Setup(e.to_string()))?;
        let (mut readings, mut rejected) = (Vec::new(), Vec::new());
        for item in SstCountersDecoder::new(bytes.as_slice(), options) {
            match item {
                Ok(r) => readings.push(r),
                Err(e) if e.is_fatal() => {
                    return Err(SstError::Shape {
                        request: format!("GET {path}"),
                        message: e.reason,
                    })
                }
                Err(e) => rejected.push(e),
            }
        }
        Ok((readings, rejected))
    }
}

/// The `sst-cloud` source. A registry entry names a house (`params.house`); without one, every
/// house of the account is read. Each counter's value is checked against the meter's previous
/// reading: zero after non-zero, or more litres than `max_litres_per_hour` allows since then, is
/// logged as implausible and stored as it came, for the counter rules to set aside.
pub struct SstSource {
    client: SstClient,
    history: Arc<dyn ReadingReader>,
    max_litres_per_hour: f64,
}

impl std::fmt::Debug for SstSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SstSource")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl SstSource {
    /// A source over a client, checking against `history`.
    pub fn new(client: SstClient, history: Arc<dyn ReadingReader>) -> Self {
        let max_litres_per_hour = client.config.max_litres_per_hour;
        Self {
            client,
            history,
            max_litres_per_hour,
        }
    }

    /// The client.
    pub fn client(&self) -> &SstClient {
        &self.client
    }

    async fn implausible(&self, r: &Reading) -> Result<Option<String>, SourceError> {
        let latest =
            self.history
                .latest(Some(r.meter()))
                .await
                .map_err(|e| SourceError::Unavailable {
                    source_name: contract::SOURCE_SST.into(),
                    message: format!("cannot read the previous reading: {e}"),
                    cause: None,
                })?;
        let Some(prev) = latest
            .iter()
            .find(|p| p.measure() == r.measure() && p.time() < r.time())
        else {
            return Ok(None);
        };
        if r.value() == 0.0 && prev.value() > 0.0 {
            return Ok(Some(format!(
                "implausible: the counter reads 0 after {} L at {}",
                prev.value(),
                prev.time().to_rfc3339()
            )));
        }
        let hours = ((r.time() - prev.time()).num_seconds() as f64 / 3600.0).max(1.0);
        let used = r.value() - prev.value();
        if used > self.max_litres_per_hour * hours {
            return Ok(Some(format!(
                "implausible: {used} L since {} is more than {} L/h allows",
                prev.time().to_rfc3339(),
                self.max_litres_per_hour
            )));
        }
        Ok(None)
    }
}

fn source_error(e: SstError) -> SourceError {
    if e.is_retryable() {
        SourceError::Unavailable {
            source_name: contract::SOURCE_SST.into(),
            message: e.to_string(),
            cause: Some(Box::new(e)),
        }
    } else {
        SourceError::Refused {
            source_name: contract::SOURCE_SST.into(),
            message: e.to_string(),
            cause: Some(Box::new(e)),
        }
    }
}

#[async_trait]
impl Source for SstSource {
    fn name(&self) -> &str {
        contract::SOURCE_SST
    }

    async fn collect(
        &self,
        entry: &RegistryEntry,
        now: DateTime<Utc>,
    ) -> Result<Collected, SourceError> {
        let houses = match entry.params.get("house") {
            Some(h) => vec![h.parse::<i64>().map_err(|_| SourceError::Config {
                entry: entry.id.to_string(),
                message: format!("params.house {h:?} is not a house id"),
            })?],
            None => self
                .client
                .houses()
                .await
                .map_err(source_error)?
                .into_iter()
                .map(|h| h.id)
                .collect(),
        };
        let mut out = Collected::default();
        for house in houses {
            let (readings, rejected) = self
                .client
                .counters(house, now)
                .await
                .map_err(source_error)?;
            out.rejected.extend(rejected);
            for r in readings {
                // Stored as it came: the counter rules of every rollup set a glitch aside, and
                // a value dropped here could not be judged with the readings after it.
                if let Some(reason) = self.implausible(&r).await? {
                    tracing::warn!(meter = %r.meter(), value = r.value(), reason = %reason, "An implausible counter value; stored for the counter rules to judge.");
                }
                out.readings.push(r);
            }
        }
        Ok(out)
    }
}
