//! The InfluxDB write API, so Telegraf's `outputs.influxdb_v2` (or `outputs.influxdb`), the
//! InfluxDB client libraries and anything else that speaks line protocol can push readings:
//! `POST /api/v2/write?org=&bucket=&precision=` (2.x, `Authorization: Token <token>`) and
//! `POST /write?db=&precision=` (1.x, `u`/`p` parameters or Basic auth, the password being the
//! token). `org`, `bucket` and `db` are accepted and not used: meterflow has one store.
//!
//! The body (gzip when `Content-Encoding: gzip`) goes through the one ingest pipeline with the
//! line-protocol decoder. Answers are InfluxDB's: 204 when every line landed; 400 with the bad
//! lines named (line number, field, reason) when some did not, the good ones having landed
//! (a partial write); 503 when the store could not take the readings, which a client retries.
//! Writes are idempotent by (meter, measure, time), so the same body written twice stores it
//! once. Rejected lines are kept in the quarantine.

use std::io::Read;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRef, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_ENCODING};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use meter_core::decode::line_protocol::{LineProtocolDecoder, Precision};
use meter_core::decode::{DecodeOptions, KnownSeries};
use meter_core::ingest::{Pipeline, Rejection, Report};
use meter_core::ports::{find_series, Quarantine, ReadingReader, ReadingWriter};
use serde::Deserialize;
use serde_json::json;

use crate::{ApiError, ApiState, AuthConfig, Clock, Secret};

/// The largest body taken as sent (compressed or not).
pub const MAX_WRITE_BODY_BYTES: usize = 16 * 1024 * 1024;
/// The largest body once decompressed: a gzip bomb stops here.
pub const MAX_WRITE_DECODED_BYTES: u64 = 64 * 1024 * 1024;
/// The most rejected lines named in a 400 answer (all are counted and quarantined).
pub const MAX_NAMED_LINES: usize = 100;

/// What the write routes need besides the API's state.
#[derive(Clone)]
pub struct PushState {
    /// Where the readings go.
    pub writer: Arc<dyn ReadingWriter>,
    /// Where rejected lines are kept.
    pub quarantine: Arc<dyn Quarantine>,
    /// The stored series, for points that do not say their unit or kind.
    pub known: Option<KnownSeries>,
    /// The tag naming the meter, when not `meter`.
    pub meter_tag: Option<String>,
    /// Where the stored series are asked before decoding when there is no synchronous
    /// `known` lookup (a cloud store: one catalogue request per meter the body names).
    pub catalogue: Option<Arc<dyn ReadingReader>>,
}

/// What the write routes use: authentication, the store, the clock. The whole API derives it
/// from its own state; a function that only takes writes builds it alone.
#[derive(Clone)]
pub struct WriteState {
    /// Authentication (the write token, else the API token).
    pub auth: AuthConfig,
    /// The store, when writes are taken.
    pub push: Option<PushState>,
    /// The clock that stamps lines without a time.
    pub clock: Clock,
}

impl std::fmt::Debug for WriteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteState")
            .field("auth", &self.auth)
            .field("push", &self.push)
            .finish_non_exhaustive()
    }
}

impl FromRef<ApiState> for WriteState {
    fn from_ref(api: &ApiState) -> Self {
        Self {
            auth: api.auth.clone(),
            push: api.push.clone(),
            clock: api.clock.clone(),
        }
    }
}

/// Store calls in flight while looking up the series a body names.
const CATALOGUE_CONCURRENCY: usize = 8;

impl std::fmt::Debug for PushState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushState")
            .field("meter_tag", &self.meter_tag)
            .finish_non_exhaustive()
    }
}

/// The query of both write routes.
#[derive(Debug, Deserialize)]
pub(crate) struct WriteParams {
    precision: Option<String>,
    /// 1.x's password: the token (its user name, `u`, is not checked).
    p: Option<String>,
}

/// The credential a write presents: `Token`, `Bearer` or Basic's password, else 1.x's `p`.
fn presented(headers: &HeaderMap, params: &WriteParams) -> Option<Vec<u8>> {
    if let Some(v) = headers.get(AUTHORIZATION) {
        let v = v.as_bytes();
        for scheme in [&b"Token "[..], b"Bearer "] {
            if v.len() > scheme.len() && v[..scheme.len()].eq_ignore_ascii_case(scheme) {
                return Some(v[scheme.len()..].trim_ascii().to_vec());
            }
        }
        let basic = b"Basic ";
        if v.len() > basic.len() && v[..basic.len()].eq_ignore_ascii_case(basic) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(v[basic.len()..].trim_ascii())
                .ok()?;
            let colon = decoded.iter().position(|&b| b == b':')?;
            return Some(decoded[colon + 1..].to_vec());
        }
        return None;
    }
    params.p.as_ref().map(|p| p.as_bytes().to_vec())
}

fn check_auth(
    state: &WriteState,
    headers: &HeaderMap,
    params: &WriteParams,
) -> Result<(), ApiError> {
    if !state.auth.enabled {
        return Ok(());
    }
    let secret: Option<&Secret> = state
        .auth
        .write_token
        .as_ref()
        .or(state.auth.api_token.as_ref());
    match (secret, presented(headers, params)) {
        (Some(s), Some(p)) if s.matches(&p) => Ok(()),
        _ => Err(ApiError::unauthorized(
            "send the write token as 'Authorization: Token <token>' (InfluxDB 2 clients), or as \
             the password of Basic auth or the 'p' parameter (InfluxDB 1 clients)",
        )),
    }
}

/// The body as text bytes, decompressed when it says gzip.
fn body_bytes(headers: &HeaderMap, body: Bytes) -> Result<Vec<u8>, ApiError> {
    let encoding = headers
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") | Some("") => Ok(body.to_vec()),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&body[..])
                .take(MAX_WRITE_DECODED_BYTES + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::bad_request("bad_body", format!("the gzip body cannot be read: {e}"))
                })?;
            if out.len() as u64 > MAX_WRITE_DECODED_BYTES {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!(
                        "the body is more than {MAX_WRITE_DECODED_BYTES} bytes decompressed; \
                         send smaller batches"
                    ),
                ));
            }
            Ok(out)
        }
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Encoding {other:?} is not read; send gzip or an uncompressed body"),
        )),
    }
}

/// `POST /api/v2/write` and `POST /write`.
pub(crate) async fn write(
    State(state): State<WriteState>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_auth(&state, &headers, &params)?;
    let Some(push) = state.push.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "writes_off",
            "this server does not take writes",
        ));
    };
    let precision: Precision = match params.precision.as_deref() {
        None | Some("") => Precision::default(),
        Some(p) => p
            .parse()
            .map_err(|e| ApiError::bad_request("bad_precision", format!("precision: {e}")))?,
    };
    let text = body_bytes(&headers, body)?;
    let mut options = DecodeOptions::new("write");
    options.precision = precision;
    options.received_at = (state.clock)();
    options.known = push.known.clone();
    options.meter_tag = push.meter_tag.clone();
    let text = Arc::new(text);
    if let (None, Some(catalogue)) = (&options.known, &push.catalogue) {
        options.known = Some(stored_series(&**catalogue, &text, &options).await?);
    }
    let max_batch = push.writer.max_batch();
    // Decoding is CPU work on a body of up to tens of megabytes: off the async threads.
    let batches = tokio::task::spawn_blocking(move || {
        let mut pipeline = Pipeline::new(max_batch);
        let unit = pipeline.begin("write", 0);
        let mut decoder = LineProtocolDecoder::new(&text[..], options);
        let mut out = Vec::new();
        let _ = pipeline.feed(unit, &mut decoder, &mut |b| {
            out.push(b);
            Ok::<(), ()>(())
        });
        pipeline.end(unit);
        out.extend(pipeline.flush());
        out
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("decoding failed: {e}"),
        )
    })?;
    let mut report = Report::new();
    let mut rejected: Vec<Rejection> = Vec::new();
    for batch in batches {
        let result = if batch.readings().is_empty() {
            Ok(Default::default())
        } else {
            push.writer.write(batch.readings()).await
        };
        let settled = batch.settle(result);
        rejected.extend(settled.rejections().cloned());
        report.add(settled);
    }
    let retryable: Vec<&Rejection> = rejected.iter().filter(|r| r.retryable).collect();
    if !retryable.is_empty() {
        // The store could not take them now: the client's retry (InfluxDB clients retry 503)
        // writes the whole body again, which stores the landed part once.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!(
                "{} of the readings could not be stored now: {}; write again",
                retryable.len(),
                retryable[0].reason
            ),
        ));
    }
    if !rejected.is_empty() {
        if let Err(e) = push.quarantine.keep(&rejected).await {
            tracing::error!(error = %e, rejected = rejected.len(), "Cannot quarantine rejected lines.");
            return Err(ApiError::from(e));
        }
        return Ok(partial_write(&report, &rejected));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The stored series of the meters `text` names: a first decoding pass finds them, and the
/// catalogue is asked once per meter.
async fn stored_series(
    catalogue: &dyn ReadingReader,
    text: &Arc<Vec<u8>>,
    options: &DecodeOptions,
) -> Result<KnownSeries, ApiError> {
    let (text, o) = (text.clone(), options.clone());
    let meters = tokio::task::spawn_blocking(move || {
        LineProtocolDecoder::new(&text[..], o)
            .filter_map(Result::ok)
            .map(|r| r.meter().clone())
            .collect::<std::collections::BTreeSet<_>>()
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("decoding failed: {e}"),
        )
    })?;
    let found = find_series(catalogue, meters, CATALOGUE_CONCURRENCY).await?;
    Ok(found.into_known())
}

/// InfluxDB's answer to a write with bad lines: 400, `code` "invalid", and a message naming
/// them; meterflow adds the lines as a list and the counts.
fn partial_write(report: &Report, rejected: &[Rejection]) -> Response {
    let mut lines: Vec<u64> = rejected.iter().map(|r| r.line).collect();
    lines.dedup();
    let named: Vec<String> = rejected
        .iter()
        .take(MAX_NAMED_LINES)
        .map(|r| match &r.field {
            Some(f) => format!("line {} [{f}]: {}", r.line, r.reason),
            None => format!("line {}: {}", r.line, r.reason),
        })
        .collect();
    let more = rejected.len().saturating_sub(MAX_NAMED_LINES);
    let mut message = format!(
        "partial write: {} readings stored, {} rejected on {} lines: {}",
        report.readings_stored,
        rejected.len(),
        lines.len(),
        named.join("; ")
    );
    if more > 0 {
        message.push_str(&format!("; and {more} more"));
    }
    let listed: Vec<_> = rejected
        .iter()
        .take(MAX_NAMED_LINES)
        .map(|r| json!({"line": r.line, "field": r.field, "reason": r.reason}))
        .collect();
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "code": "invalid",
            "message": message,
            "error": message,
            "stored": report.readings_stored,
            "rejected": rejected.len(),
            "lines": listed,
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn params(p: Option<&str>) -> WriteParams {
        WriteParams {
            precision: None,
            p: p.map(str::to_owned),
        }
    }

    #[test]
    fn credentials_come_from_each_scheme() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h, &params(Some("pw"))), Some(b"pw".to_vec()));
        assert_eq!(presented(&h, &params(None)), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Token abc"));
        assert_eq!(presented(&h, &params(Some("pw"))), Some(b"abc".to_vec()));
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer abc"));
        assert_eq!(presented(&h, &params(None)), Some(b"abc".to_vec()));
        // "u:p:q" - the password is everything after the first colon.
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic dTpwOnE="));
        assert_eq!(presented(&h, &params(None)), Some(b"p:q".to_vec()));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Digest x"));
        assert_eq!(presented(&h, &params(Some("pw"))), None);
    }

    #[test]
    fn gzip_bodies_are_read_and_unknown_encodings_refused() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"w,meter=M v=1 1\n").unwrap();
        let mut h = HeaderMap::new();
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let body = body_bytes(&h, Bytes::from(gz.finish().unwrap())).unwrap();
        assert_eq!(body, b"w,meter=M v=1 1\n");
        assert!(body_bytes(&h, Bytes::from_static(b"not gzip")).is_err());
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("br"));
        let e = body_bytes(&h, Bytes::from_static(b"x")).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
