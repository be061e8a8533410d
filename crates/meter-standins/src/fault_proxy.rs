//! A fault-injecting HTTP proxy to put between the AWS SDK and the local emulator: point
//! `AWS_ENDPOINT_URL` (or an SDK config's endpoint) at [`FaultProxy::url`] and a chosen share of
//! requests is throttled, answered 500 or 503, delayed, or has its connection cut after the
//! emulator has done the work (the hardest case for "exactly once": the write happened, the
//! client saw a failure and retries). Which requests are hit is a pure function of a seed and the
//! request's number, so a failing run can be replayed. Error bodies follow each protocol's shape
//! (AWS JSON, awsQuery XML, S3 REST XML) so the SDK classifies them as it would AWS's own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::{serve, Running};

/// What share of requests to fault, and the seed choosing which.
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    /// Between 0 and 1.
    pub share: f64,
    /// Chooses the faulted requests and their kinds.
    pub seed: u64,
}

/// The kinds of fault, in equal shares of the faulted requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Not forwarded: the service's "slow down" answer.
    Throttle,
    /// Not forwarded: 500 internal error.
    InternalError,
    /// Not forwarded: 503 unavailable.
    Unavailable,
    /// Forwarded and done, then the connection is cut before the answer's body.
    Reset,
    /// Forwarded after a delay.
    Delay,
}

const KINDS: [FaultKind; 5] = [
    FaultKind::Throttle,
    FaultKind::InternalError,
    FaultKind::Unavailable,
    FaultKind::Reset,
    FaultKind::Delay,
];

impl FaultPlan {
    /// The fault for request number `n`, if any.
    pub fn pick(&self, n: u64) -> Option<FaultKind> {
        // splitmix64: a well-mixed, reproducible draw per request.
        let mut z = self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let draw = (z >> 11) as f64 / (1u64 << 53) as f64;
        (draw < self.share).then(|| KINDS[(z % KINDS.len() as u64) as usize])
    }
}

/// How many requests passed and how many of each fault were injected.
#[derive(Debug, Default)]
pub struct FaultCounts {
    requests: AtomicU64,
    retried: AtomicU64,
    upstream_errors: AtomicU64,
    faults: [AtomicU64; 5],
}

impl FaultCounts {
    /// Requests seen.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests the SDK marked as a retry (`amz-sdk-request: attempt=2` or later), whatever
    /// made it retry.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Server errors the proxy did not inject: 5xx answers of the upstream itself (moto answers
    /// 500 when a scan races a write in another thread) and upstreams it could not reach. Each
    /// is a cause of an SDK retry just as an injected fault is.
    pub fn upstream_errors(&self) -> u64 {
        self.upstream_errors.load(Ordering::Relaxed)
    }

    /// Faults of one kind injected.
    pub fn of(&self, kind: FaultKind) -> u64 {
        let i = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        self.faults[i].load(Ordering::Relaxed)
    }

    /// Faults injected in all.
    pub fn total(&self) -> u64 {
        self.faults.iter().map(|f| f.load(Ordering::Relaxed)).sum()
    }
}

struct ProxyState {
    upstream: String,
    plan: FaultPlan,
    counts: Arc<FaultCounts>,
    client: reqwest::Client,
}

/// A running proxy; stops when dropped.
#[derive(Clone)]
pub struct FaultProxy {
    running: Arc<Running>,
    counts: Arc<FaultCounts>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.running.addr)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (such as `http://127.0.0.1:5000`).
    pub async fn start(upstream: &str, plan: FaultPlan) -> Self {
        let counts = Arc::new(FaultCounts::default());
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            plan,
            counts: counts.clone(),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap_or_else(|e| panic!("the proxy's client: {e}")),
        });
        let app = Router::new().fallback(forward).with_state(state);
        Self {
            running: Arc::new(serve(app).await),
            counts,
        }
    }

    /// The URL to use as the AWS endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.running.addr)
    }

    /// What was injected so far.
    pub fn counts(&self) -> &FaultCounts {
        &self.counts
    }
}

/// Which wire protocol a request speaks, for error bodies the SDK parses.
#[derive(Clone, Copy)]
enum Protocol {
    Json,
    Query,
    RestXml,
}

fn protocol(req: &axum::http::request::Parts) -> Protocol {
    let ct = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("application/x-amz-json") {
        Protocol::Json
    } else if ct.starts_with("application/x-www-form-urlencoded") {
        Protocol::Query
    } else {
        Protocol::RestXml
    }
}

fn error(protocol: Protocol, kind: FaultKind) -> Response {
    let (status, code) = match (kind, protocol) {
        (FaultKind::Throttle, Protocol::Json) => (400, "ThrottlingException"),
        (FaultKind::Throttle, Protocol::Query) => (400, "Throttling"),
        (FaultKind::Throttle, Protocol::RestXml) => (503, "SlowDown"),
        (FaultKind::Unavailable, _) => (503, "ServiceUnavailable"),
        _ => (500, "InternalFailure"),
    };
    let message = "fault injected by the test proxy";
    let (content_type, body) = match protocol {
        Protocol::Json => (
            "application/x-amz-json-1.0",
            format!(r#"{{"__type":"{code}","message":"{message}"}}"#),
        ),
        Protocol::Query => (
            "text/xml",
            format!("<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"),
        ),
        Protocol::RestXml => (
            "application/xml",
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault</RequestId></Error>"),
        ),
    };
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    if matches!(protocol, Protocol::Json) {
        if let Ok(v) = HeaderValue::from_str(code) {
            r.headers_mut().insert("x-amzn-errortype", v);
        }
    }
    r
}

async fn forward(State(s): State<Arc<ProxyState>>, req: Request) -> Response {
    let n = s.counts.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let attempt = parts
        .headers
        .get("amz-sdk-request")
        .and_then(|v| v.to_str().ok())
        .and_then(meter_aws::tally::attempt_of);
    if attempt.is_some_and(|a| a > 1) {
        s.counts.retried.fetch_add(1, Ordering::Relaxed);
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    // The emulator's own API (state dumps, canned results) is never faulted.
    let fault = if path.starts_with("/moto-api") {
        None
    } else {
        s.plan.pick(n)
    };
    if let Some(kind) = fault {
        let i = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        s.counts.faults[i].fetch_add(1, Ordering::Relaxed);
    }
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match fault {
        Some(k @ (FaultKind::Throttle | FaultKind::InternalError | FaultKind::Unavailable)) => {
            return error(protocol(&parts), k)
        }
        Some(FaultKind::Delay) => tokio::time::sleep(Duration::from_millis(150)).await,
        _ => {}
    }
    let mut upstream = s
        .client
        .request(parts.method.clone(), format!("{}{path}", s.upstream))
        .body(bytes);
    for (k, v) in &parts.headers {
        if !matches!(k.as_str(), "host" | "content-length" | "connection") {
            upstream = upstream.header(k, v);
        }
    }
    let answer = match upstream.send().await {
        Ok(a) => a,
        Err(e) => {
            s.counts.upstream_errors.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::BAD_GATEWAY, e.to_string()).into_response();
        }
    };
    let status = answer.status();
    if status.is_server_error() {
        s.counts.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }
    let headers = answer.headers().clone();
    let body = match answer.bytes().await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut out = if fault == Some(FaultKind::Reset) {
        // The work is done upstream; the client gets headers and then a cut connection.
        let cut = futures_util::stream::once(async {
            Err::<axum::body::Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fault injected: connection reset",
            ))
        });
        Response::new(Body::from_stream(cut))
    } else {
        Response::new(Body::from(body))
    };
    *out.status_mut() = status;
    for (k, v) in &headers {
        if !matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            out.headers_mut().append(k, v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_faults_its_share_in_every_kind_reproducibly() {
        let plan = FaultPlan {
            share: 0.2,
            seed: 7,
        };
        let picks: Vec<_> = (0..100_000).map(|n| plan.pick(n)).collect();
        let faulted = picks.iter().flatten().count();
        assert!((19_000..21_000).contains(&faulted), "{faulted}");
        for kind in KINDS {
            let k = picks.iter().flatten().filter(|p| **p == kind).count();
            assert!((3_500..4_500).contains(&k), "{kind:?}: {k}");
        }
        assert_eq!(
            picks,
            (0..100_000).map(|n| plan.pick(n)).collect::<Vec<_>>()
        );
        let none = FaultPlan {
            share: 0.0,
            seed: 7,
        };
        assert!((0..10_000).all(|n| none.pick(n).is_none()));
    }
}
