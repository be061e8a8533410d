//! Stand-in servers for the services meterflow reads, for tests: real HTTP servers on loopback
//! built from the shapes the real services answer (SST Cloud's REST API as independent clients
//! read it, seed 003's external API), with faults a test can schedule (an error status, a slow
//! answer, a malformed body, an expired token). They are not mocks of our clients: a client
//! talks to them over TCP exactly as it would to the real service.

pub mod fault_proxy;
pub mod runtime_api;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// A fault served instead of (or before) the next answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and a DRF-style error body.
    Status(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer 200 with a body that is not the documented shape.
    Malformed,
    /// Answer 502 with an HTML page, as a broken proxy does during outages.
    Html,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running server; stops when dropped.
#[derive(Debug)]
struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn serve(app: Router) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("stand-in cannot listen: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("stand-in has no address: {e}"));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Running {
        addr,
        stop: Some(stop),
    }
}

/// What the SST Cloud stand-in holds.
#[derive(Debug)]
pub struct SstState {
    /// The account's e-mail.
    pub username: String,
    /// The account's password.
    pub password: String,
    /// The one valid API key (DRF tokens are one per user).
    pub token: String,
    /// The account's houses.
    pub houses: Vec<Value>,
    /// Devices per house.
    pub devices: BTreeMap<i64, Vec<Value>>,
    /// Counters per house.
    pub counters: BTreeMap<i64, Vec<Value>>,
    /// Faults for the next requests, in order.
    pub faults: VecDeque<Fault>,
    /// Every request, as "METHOD /path".
    pub requests: Vec<String>,
    /// Whether `/houses/{id}/counters/` answers 404 (as it may for some accounts), leaving only
    /// the per-device counters.
    pub house_counters_missing: bool,
}

/// The SST Cloud stand-in.
#[derive(Debug, Clone)]
pub struct SstStandIn {
    running: Arc<Running>,
    state: Arc<Mutex<SstState>>,
}

/// The stand-in's account: `user@example.com` / `secret`.
pub const SST_USER: &str = "user@example.com";
/// The stand-in's password.
pub const SST_PASSWORD: &str = "secret";
/// The stand-in's house.
pub const SST_HOUSE: i64 = 9086;
/// The stand-in's cold and hot counters.
pub const SST_COLD: i64 = 39871;
/// The hot counter.
pub const SST_HOT: i64 = 39870;

fn counter(id: i64, name: &str, line: i64, hot: bool, value: i64) -> Value {
    json!({"id": id, "name": name, "line": line, "for_hot_water": hot, "max_value": 0, "step": 10,
           "value": value, "prev_value": value, "prev_step": 10, "device": 29485})
}

impl SstStandIn {
    /// Starts a stand-in with one house, one ProW+ device and a cold and a hot counter.
    pub async fn start() -> Self {
        let state = SstState {
            username: SST_USER.into(),
            password: SST_PASSWORD.into(),
            token: "3f0c9a1e5b7d4c2a9e8f1b2c3d4e5f60718293a4".into(),
            houses: vec![json!({"id": SST_HOUSE, "name": "Home", "timezone": "Europe/Moscow",
                                "owner": SST_USER, "created_at": "2019-03-14T15:36:30.228341Z"})],
            devices: [(SST_HOUSE, vec![json!({"id": 29485, "house": SST_HOUSE, "name": "Neptun", "type": 2,
                "parsed_configuration": "{\"signal_level\": 3}", "is_active": true, "is_connected": true,
                "line_names": ["Kitchen", "Bathroom", "Hot", "Cold"]})])]
            .into(),
            counters: [(SST_HOUSE, vec![
                counter(SST_COLD, "Cold", 4, false, 123_457),
                counter(SST_HOT, "Hot", 3, true, 98_765),
            ])]
            .into(),
            faults: VecDeque::new(),
            requests: Vec::new(),
            house_counters_missing: false,
        };
        let state = Arc::new(Mutex::new(state));
        let app = Router::new()
            .route("/auth/login/", post(sst_login))
            .route("/auth/logout/", post(sst_logout))
            .route("/houses/", get(sst_houses))
            .route("/houses/{house}/", get(sst_house))
            .route("/houses/{house}/counters/", get(sst_counters))
            .route("/houses/{house}/devices/", get(sst_devices))
            .route(
                "/houses/{house}/devices/{device}/counters/",
                get(sst_device_counters),
            )
            .with_state(state.clone());
        Self {
            running: Arc::new(serve(app).await),
            state,
        }
    }

    /// The base URL, such as `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.running.addr)
    }

    /// The valid token.
    pub fn token(&self) -> String {
        lock(&self.state).token.clone()
    }

    /// Makes the current token invalid (as a logout elsewhere would) and returns the new one.
    pub fn rotate_token(&self) -> String {
        let mut s = lock(&self.state);
        s.token = format!("{}-rotated", s.token);
        s.token.clone()
    }

    /// Queues a fault for the next request.
    pub fn fault(&self, f: Fault) {
        lock(&self.state).faults.push_back(f);
    }

    /// Sets a counter's value.
    pub fn set_value(&self, counter_id: i64, value: Value) {
        let mut s = lock(&self.state);
        for list in s.counters.values_mut() {
            for c in list.iter_mut() {
                if c["id"] == counter_id {
                    c["value"] = value.clone();
                }
            }
        }
    }

    /// Makes the house-level counters route answer 404.
    pub fn hide_house_counters(&self) {
        lock(&self.state).house_counters_missing = true;
    }

    /// Every request so far, as "METHOD /path".
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state).requests.clone()
    }
}

type Shared = Arc<Mutex<SstState>>;

/// Records the request and serves a queued fault, if any.
async fn sst_gate(
    state: &Shared,
    what: String,
    headers: Option<&HeaderMap>,
) -> Result<(), Response> {
    let fault = {
        let mut s = lock(state);
        s.requests.push(what);
        s.faults.pop_front()
    };
    match fault {
        None => {}
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Err((
                status,
                axum::Json(json!({"detail": "A server error occurred."})),
            )
                .into_response());
        }
        Some(Fault::Malformed) => {
            return Err((
                StatusCode::OK,
                axum::Json(json!({"results": "not what you expect"})),
            )
                .into_response());
        }
        Some(Fault::Html) => {
            return Err((
                StatusCode::BAD_GATEWAY,
                "<html><body>502 Bad Gateway</body></html>",
            )
                .into_response());
        }
    }
    if let Some(h) = headers {
        let token = lock(state).token.clone();
        let ok = h
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Token {token}"));
        if !ok {
            return Err((
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Token")],
                axum::Json(json!({"detail": "Invalid token."})),
            )
                .into_response());
        }
    }
    Ok(())
}

async fn sst_login(State(state): State<Shared>, body: axum::body::Bytes) -> Response {
    if let Err(r) = sst_gate(&state, "POST /auth/login/".into(), None).await {
        return r;
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let s = lock(&state);
    let user = v["username"].as_str().or(v["email"].as_str());
    if user == Some(s.username.as_str()) && v["password"].as_str() == Some(s.password.as_str()) {
        axum::Json(json!({"key": s.token})).into_response()
    } else {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"non_field_errors": ["Unable to log in with provided credentials."]}),
            ),
        )
            .into_response()
    }
}

async fn sst_logout(State(state): State<Shared>) -> Response {
    lock(&state).requests.push("POST /auth/logout/".into());
    StatusCode::OK.into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"detail": "Not found."})),
    )
        .into_response()
}

async fn sst_houses(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = sst_gate(&state, "GET /houses/".into(), Some(&headers)).await {
        return r;
    }
    axum::Json(Value::Array(lock(&state).houses.clone())).into_response()
}

async fn sst_house(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(house): Path<i64>,
) -> Response {
    if let Err(r) = sst_gate(&state, format!("GET /houses/{house}/"), Some(&headers)).await {
        return r;
    }
    let s = lock(&state);
    match s.houses.iter().find(|h| h["id"] == house) {
        Some(h) => axum::Json(h.clone()).into_response(),
        None => not_found(),
    }
}

async fn sst_counters(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(house): Path<i64>,
) -> Response {
    if let Err(r) = sst_gate(
        &state,
        format!("GET /houses/{house}/counters/"),
        Some(&headers),
    )
    .await
    {
        return r;
    }
    let s = lock(&state);
    match s.counters.get(&house) {
        Some(c) if !s.house_counters_missing => axum::Json(Value::Array(c.clone())).into_response(),
        _ => not_found(),
    }
}

async fn sst_devices(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(house): Path<i64>,
) -> Response {
    if let Err(r) = sst_gate(
        &state,
        format!("GET /houses/{house}/devices/"),
        Some(&headers),
    )
    .await
    {
        return r;
    }
    match lock(&state).devices.get(&house) {
        Some(d) => axum::Json(Value::Array(d.clone())).into_response(),
        None => not_found(),
    }
}

async fn sst_device_counters(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((house, device)): Path<(i64, i64)>,
) -> Response {
    let what = format!("GET /houses/{house}/devices/{device}/counters/");
    if let Err(r) = sst_gate(&state, what, Some(&headers)).await {
        return r;
    }
    match lock(&state).counters.get(&house) {
        Some(c) => axum::Json(Value::Array(
            c.iter()
                .filter(|c| c["device"] == device)
                .cloned()
                .collect(),
        ))
        .into_response(),
        None => not_found(),
    }
}

/// Seed 003's external API: `GET /series/{identifier}` answers 288 points every 5 minutes over the
/// day before `now` and 288 over the day after, as the seed's generator did:
/// `{"identifier", "time": epoch seconds, "value": "<0-100>"}`. Points sit on the 5-minute grid,
/// skipping the grid point nearest `now`, so a client's own "now" (a moment earlier or later)
/// splits them 288/288 too.
#[derive(Debug, Clone)]
pub struct SeriesStandIn {
    running: Arc<Running>,
    /// Every request's path and query.
    pub requests: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct SeriesState {
    now: Option<DateTime<Utc>>,
    api_key: Option<String>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl SeriesStandIn {
    /// Starts the stand-in around a fixed `now`, or the time of each request; with `api_key`,
    /// requests without `x-api-key: <key>` get 403.
    pub async fn start(now: Option<DateTime<Utc>>, api_key: Option<&str>) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = SeriesState {
            now,
            api_key: api_key.map(str::to_owned),
            requests: requests.clone(),
        };
        let app = Router::new()
            .route("/series/{identifier}", get(series))
            .with_state(state);
        Self {
            running: Arc::new(serve(app).await),
            requests,
        }
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.running.addr)
    }
}

async fn series(
    State(state): State<SeriesState>,
    headers: HeaderMap,
    Path(identifier): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    lock(&state.requests).push(format!("/series/{identifier}?{q:?}"));
    if let Some(key) = &state.api_key {
        if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(key.as_str()) {
            return (
                StatusCode::FORBIDDEN,
                axum::Json(json!({"message": "Forbidden"})),
            )
                .into_response();
        }
    }
    let now = state.now.unwrap_or_else(Utc::now).timestamp();
    let grid = now - now.rem_euclid(300) + if now.rem_euclid(300) >= 150 { 300 } else { 0 };
    // `points=N` (at most 288) shortens each side, for load tests with many identifiers.
    let side: i64 = q
        .get("points")
        .and_then(|p| p.parse().ok())
        .map_or(288, |n: i64| n.clamp(0, 288));
    let points: Vec<Value> = (0..2 * side)
        .map(|i| {
            let t = if i < side {
                grid - (side - i) * 300
            } else {
                grid + (i - side + 1) * 300
            };
            json!({"identifier": identifier, "time": t, "value": ((i * 37) % 101).to_string(),
                   "metadata": if i < side { "Past" } else { "Future" }})
        })
        .collect();
    axum::Json(Value::Array(points)).into_response()
}
