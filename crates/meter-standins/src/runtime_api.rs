//! The AWS Lambda Runtime API, as a function's process sees it inside Lambda
//! (`AWS_LAMBDA_RUNTIME_API`): `GET /2018-06-01/runtime/invocation/next` hands out the next event
//! with its request id and deadline headers, and the function posts the result to
//! `.../invocation/{id}/response` or `.../invocation/{id}/error`, or reports a failed start to
//! `.../runtime/init/error`. Tests run a built function binary against it and invoke it; the
//! cold-start benchmark reads when the process first asked for work.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::{lock, serve, Running};

/// What became of an invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The function's response body, parsed as JSON (or a JSON string when it is not JSON).
    Response(Value),
    /// The error the function reported (`errorType`, `errorMessage`).
    Error(Value),
}

struct Pending {
    id: String,
    event: Value,
    done: oneshot::Sender<Outcome>,
}

/// Invocations handed out and not answered yet, by request id.
type Waiting = Arc<Mutex<Vec<(String, oneshot::Sender<Outcome>)>>>;

#[derive(Clone)]
struct ApiState {
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Pending>>>,
    waiting: Waiting,
    first_next: Arc<Mutex<Option<Instant>>>,
    init_error: Arc<Mutex<Option<Value>>>,
}

/// A Runtime API server on loopback.
pub struct RuntimeApi {
    running: Running,
    tx: mpsc::Sender<Pending>,
    state: ApiState,
    seq: Mutex<u64>,
}

impl std::fmt::Debug for RuntimeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeApi")
            .field("addr", &self.running.addr)
            .finish_non_exhaustive()
    }
}

impl RuntimeApi {
    /// Starts the server.
    pub async fn start() -> Self {
        let (tx, rx) = mpsc::channel(16);
        let state = ApiState {
            queue: Arc::new(tokio::sync::Mutex::new(rx)),
            waiting: Arc::default(),
            first_next: Arc::default(),
            init_error: Arc::default(),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state.clone());
        Self {
            running: serve(app).await,
            tx,
            state,
            seq: Mutex::new(0),
        }
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API` for a function process (`host:port`).
    pub fn address(&self) -> String {
        self.running.addr.to_string()
    }

    /// Invokes the function with `event` and waits for its outcome.
    pub async fn invoke(&self, event: Value) -> Outcome {
        let id = {
            let mut n = lock(&self.seq);
            *n += 1;
            format!("8476a536-e9f4-11e8-9739-2dfe598c{:04}", *n)
        };
        let (done, outcome) = oneshot::channel();
        self.tx
            .send(Pending { id, event, done })
            .await
            .unwrap_or_else(|_| panic!("the runtime API stopped"));
        outcome
            .await
            .unwrap_or_else(|_| panic!("the invocation was dropped"))
    }

    /// When the process first asked for an event (the end of its initialisation).
    pub fn first_next(&self) -> Option<Instant> {
        *lock(&self.state.first_next)
    }

    /// What the process reported when it failed to start, if it did.
    pub fn init_error(&self) -> Option<Value> {
        lock(&self.state.init_error).clone()
    }
}

fn body_json(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn next(State(s): State<ApiState>) -> Response {
    lock(&s.first_next).get_or_insert_with(Instant::now);
    let Some(p) = s.queue.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + Duration::from_secs(900);
    let mut headers = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    };
    set("lambda-runtime-aws-request-id", p.id.clone());
    set(
        "lambda-runtime-deadline-ms",
        deadline.as_millis().to_string(),
    );
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:meterflow".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1".into(),
    );
    lock(&s.waiting).push((p.id, p.done));
    (headers, p.event.to_string()).into_response()
}

fn finish(s: &ApiState, id: &str, outcome: Outcome) -> StatusCode {
    let mut waiting = lock(&s.waiting);
    match waiting.iter().position(|(w, _)| w == id) {
        Some(i) => {
            let (_, done) = waiting.swap_remove(i);
            let _ = done.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn response(State(s): State<ApiState>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    finish(&s, &id, Outcome::Response(body_json(&body)))
}

async fn error(State(s): State<ApiState>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    finish(&s, &id, Outcome::Error(body_json(&body)))
}

async fn init_error(State(s): State<ApiState>, body: Bytes) -> StatusCode {
    *lock(&s.init_error) = Some(body_json(&body));
    StatusCode::ACCEPTED
}

/// The environment Lambda gives a function process, pointing it at `api`.
pub fn lambda_env(api: &RuntimeApi, function: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api.address()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/23/[$LATEST]0123456789abcdef".to_owned(),
        ),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
