//! The `http-json` source: seed 003's external API, generalised. A registry entry says where and
//! how to read:
//!
//! | param | meaning | default |
//! |---|---|---|
//! | `url` | template; `{identifier}` (the entry id, URL-encoded), `{from}`/`{to}` (RFC 3339), `{from_ms}`/`{to_ms}` | required |
//! | `window_hours` | the window asked for: `now - w .. now + w` | 24 |
//! | `api_key_header` | header carrying the key, such as `x-api-key` | none |
//! | `api_key_env` / `api_key_secret` | the key, from an environment variable or the secret store | none |
//! | `items` | JSON pointer to the array of points in the answer | the answer itself |
//! | `time`, `value` | field (or JSON pointer) of each point's time and value | `time`, `value` |
//! | `time_format` | `auto`, `rfc3339`, `epoch-s`, `epoch-ms` | `auto` |
//! | `measure`, `unit`, `kind` | what the readings are | `value`, `1`, `gauge` |
//!
//! Points before now are history; points from now on are forecasts (seed 003's split). A point
//! that cannot be read is rejected with its position; the others still land.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use meter_core::collect::{Collected, Source, SourceError};
use meter_core::decode::mqtt::field;
use meter_core::decode::Rejection;
use meter_core::ports::{RegistryEntry, SecretStore};
use meter_core::time::{parse_instant, TimeFormat};
use meter_core::{contract, Kind, MeasureName, Reading, SourceName, Unit};
use serde_json::Value;

use crate::{body, send, short, LazyHttp, Retry};

/// Looks up an environment variable (a function so tests need not touch the process's).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The `http-json` source.
pub struct HttpJsonSource {
    http: LazyHttp,
    retry: Retry,
    secrets: Option<Arc<dyn SecretStore>>,
    env: EnvLookup,
}

impl std::fmt::Debug for HttpJsonSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpJsonSource")
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

fn name() -> String {
    contract::SOURCE_HTTP_JSON.to_owned()
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl HttpJsonSource {
    /// A source with the given request time limit; its HTTP client is built on first use.
    pub fn new(timeout: Duration, secrets: Option<Arc<dyn SecretStore>>, env: EnvLookup) -> Self {
        Self {
            http: LazyHttp::new(timeout, Duration::from_secs(10)),
            retry: Retry::default(),
            secrets,
            env,
        }
    }

    async fn api_key(
        &self,
        entry: &RegistryEntry,
    ) -> Result<Option<(String, String)>, SourceError> {
        let config = |message: String| SourceError::Config {
            entry: entry.id.to_string(),
            message,
        };
        let Some(header) = entry.params.get("api_key_header") else {
            return Ok(None);
        };
        let key = if let Some(var) = entry.params.get("api_key_env") {
            (self.env)(var).ok_or_else(|| {
                config(format!(
                    "the environment variable {var} (params.api_key_env) is not set"
                ))
            })?
        } else if let Some(id) = entry.params.get("api_key_secret") {
            let store = self
                .secrets
                .as_ref()
                .ok_or_else(|| config("params.api_key_secret needs a secret store".into()))?;
            store
                .secret(id)
                .await
                .map_err(|e| SourceError::Unavailable {
                    source_name: name(),
                    message: format!("the secret {id}: {e}"),
                    cause: None,
                })?
        } else {
            return Err(config(
                "params.api_key_header needs params.api_key_env or params.api_key_secret".into(),
            ));
        };
        Ok(Some((header.clone(), key.trim().to_owned())))
    }
}

#[async_trait]
impl Source for HttpJsonSource {
    fn name(&self) -> &str {
        contract::SOURCE_HTTP_JSON
    }

    async fn collect(
        &self,
        entry: &RegistryEntry,
        now: DateTime<Utc>,
    ) -> Result<Collected, SourceError> {
        let config = |message: String| SourceError::Config {
            entry: entry.id.to_string(),
            message,
        };
        let p = &entry.params;
        let template = p
            .get("url")
            .ok_or_else(|| config("params.url is required".into()))?;
        let hours: i64 = match p.get("window_hours") {
            Some(h) => h
                .parse()
                .ok()
                .filter(|h| (1..=24 * 366).contains(h))
                .ok_or_else(|| config(format!("params.window_hours {h:?} is not 1-8784")))?,
            None => 24,
        };
        let (from, to) = (
            now - chrono::Duration::hours(hours),
            now + chrono::Duration::hours(hours),
        );
        let url = template
            .replace("{identifier}", &encode(entry.id.as_str()))
            .replace("{from_ms}", &from.timestamp_millis().to_string())
            .replace("{to_ms}", &to.timestamp_millis().to_string())
            .replace("{from}", &encode(&from.to_rfc3339()))
            .replace("{to}", &encode(&to.to_rfc3339()));
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(config(format!(
                "params.url {template:?} is not an http(s) URL"
            )));
        }
        let time_format: TimeFormat = p
            .get("time_format")
            .map_or(Ok(TimeFormat::Auto), |f| f.parse())
            .map_err(|e| config(format!("params.time_format: {e}")))?;
        let measure = MeasureName::new(p.get("measure").map_or("value", String::as_str))
            .map_err(|e| config(format!("params.measure: {e}")))?;
        let unit = Unit::parse(p.get("unit").map_or("1", String::as_str))
            .map_err(|e| config(format!("params.unit: {e}")))?;
        let kind: Kind = p
            .get("kind")
            .map_or("gauge", String::as_str)
            .parse()
            .map_err(|e| config(format!("params.kind: {e}")))?;
        let zone: Tz = entry
            .zone
            .as_deref()
            .and_then(|z| z.parse().ok())
            .unwrap_or(Tz::UTC);
        let source =
            SourceName::new(contract::SOURCE_HTTP_JSON).map_err(|e| config(e.to_string()))?;
        let key = self.api_key(entry).await?;

        let what = format!("GET {}", url.split('?').next().unwrap_or(&url));
        let unavailable = |message: String| SourceError::Unavailable {
            source_name: name(),
            message,
            cause: None,
        };
        let http = self.http.get().map_err(unavailable)?;
        let r = send(self.retry, &what, || {
            let mut req = http.get(&url).header("Accept", "application/json");
            if let Some((h, k)) = &key {
                req = req.header(h.as_str(), k.as_str());
            }
            req
        })
        .await
        .map_err(|e| unavailable(format!("{what}: {e}")))?;
        let status = r.status();
        let bytes = body(r).await.map_err(unavailable)?;
        if !status.is_success() {
            return Err(SourceError::Refused {
                source_name: name(),
                message: format!(
                    "{what} answered {status}: {}",
                    short(&String::from_utf8_lossy(&bytes))
                ),
                cause: None,
            });
        }
        let refused = |message: String| SourceError::Refused {
            source_name: name(),
            message,
            cause: None,
        };
        let doc: Value = serde_json::from_slice(&bytes)
            .map_err(|e| refused(format!("{what}: the answer is not JSON: {e}")))?;
        let items = match p.get("items") {
            Some(ptr) => doc.pointer(ptr),
            None => Some(&doc),
        }
        .and_then(Value::as_array)
        .ok_or_else(|| refused(format!("{what}: no array of points at params.items")))?;
        let (time_field, value_field) = (
            p.get("time").map_or("time", String::as_str),
            p.get("value").map_or("value", String::as_str),
        );
        let file: Arc<str> = Arc::from(what.as_str());
        let mut readings = Vec::with_capacity(items.len());
        let mut rejected = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let reject = |f: &str, reason: String| {
                Rejection::decode(&file, i as u64 + 1, Some(f), reason, &item.to_string())
            };
            let time = match field(item, time_field) {
                Some(Value::Number(n)) => parse_instant(&n.to_string(), time_format, zone),
                Some(Value::String(s)) => parse_instant(s, time_format, zone),
                _ => {
                    rejected.push(reject(time_field, "the time is missing".into()));
                    continue;
                }
            };
            let time = match time {
                Ok(t) => t,
                Err(e) => {
                    rejected.push(reject(time_field, e.to_string()));
                    continue;
                }
            };
            let value = match field(item, value_field) {
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            let Some(value) = value else {
                rejected.push(reject(
                    value_field,
                    format!(
                        "the value is missing or not a number: {:?}",
                        field(item, value_field)
                    ),
                ));
                continue;
            };
            match Reading::new(
                entry.id.clone(),
                measure.clone(),
                value,
                unit.clone(),
                kind,
                time,
                source.clone(),
            ) {
                Ok(r) => readings.push(r),
                Err(e) => rejected.push(reject(value_field, e.to_string())),
            }
        }
        let mut out = Collected::split(readings, now);
        out.rejected = rejected;
        Ok(out)
    }
}
