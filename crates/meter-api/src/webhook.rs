//! Seed 002's webhook: mbed Connector `PUT`s notification bodies here; each notification on the
//! button counter resource adds one press to its endpoint's counter for the hour it arrived.
//!
//! Unlike the seed's, it is authenticated (a shared secret Connector sends as a fixed header with
//! every notification) and idempotent: Connector redelivers for up to 15 minutes, and a
//! notification seen before (same endpoint, path and payload, within the store's dedupe window)
//! is not counted again. The payload is the device's own running count, so two real presses
//! never share one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::Engine;
use meter_core::decode::mbed::{parse_notifications, BUTTON_PATH};
use meter_core::ports::{AddOutcome, CounterKey};
use serde_json::{json, Value};

use crate::{ApiError, ApiState, AuthConfig, Clock, WEBHOOK_SECRET_HEADER};

/// What the webhook needs: the counters, the secret and the clock. The whole API's state
/// provides it, and the webhook function builds it alone (it reads no readings).
#[derive(Clone)]
pub struct WebhookState {
    /// The hourly counters.
    pub counters: Arc<dyn meter_core::ports::Counters>,
    /// Authentication (its `webhook_secret`).
    pub auth: AuthConfig,
    /// The clock.
    pub clock: Clock,
}

impl std::fmt::Debug for WebhookState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookState")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl axum::extract::FromRef<ApiState> for WebhookState {
    fn from_ref(s: &ApiState) -> Self {
        Self {
            counters: s.counters.clone(),
            auth: s.auth.clone(),
            clock: s.clock.clone(),
        }
    }
}

/// `PUT`/`POST /webhook`
pub(crate) async fn notify(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    if state.auth.enabled {
        let Some(secret) = &state.auth.webhook_secret else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "webhook_disabled",
                "the webhook has no secret configured, so it accepts nothing",
            ));
        };
        let given = headers.get(WEBHOOK_SECRET_HEADER).map(|v| v.as_bytes());
        if !given.is_some_and(|g| secret.matches(g)) {
            return Err(ApiError::unauthorized(format!(
                "send the webhook secret in the '{WEBHOOK_SECRET_HEADER}' header"
            )));
        }
    }
    // Connector checks a new callback URL with a request that may carry no notifications.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Json(
            json!({"counted": 0, "duplicates": 0, "ignored": 0, "rejected": []}),
        ));
    }
    let parsed: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("bad_body", format!("the body is not JSON: {e}")))?;
    let source: Arc<str> = Arc::from("webhook");
    let now = (state.clock)();
    let (mut counted, mut duplicates, mut ignored) = (0u64, 0u64, 0u64);
    let mut rejected = Vec::new();
    for item in parse_notifications(&parsed, &source) {
        let n = match item {
            Ok(n) => n,
            Err(r) => {
                if r.is_fatal() {
                    return Err(ApiError::bad_request("bad_body", r.reason));
                }
                tracing::warn!(line = r.line, field = ?r.field, reason = %r.reason, "Rejected a notification.");
                rejected
                    .push(json!({"notification": r.line, "field": r.field, "reason": r.reason}));
                continue;
            }
        };
        if n.path != BUTTON_PATH {
            ignored += 1;
            continue;
        }
        let key = CounterKey::at(n.ep.as_str(), now);
        let payload = base64::engine::general_purpose::STANDARD.encode(&n.payload);
        let dedupe = format!("mbed\u{1f}{}\u{1f}{}\u{1f}{payload}", n.ep, n.path);
        match state.counters.add(&key, 1, Some(&dedupe)).await? {
            AddOutcome::Added(_) => counted += 1,
            AddOutcome::Duplicate => duplicates += 1,
        }
    }
    tracing::info!(
        counted,
        duplicates,
        ignored,
        rejected = rejected.len(),
        "Counted notifications."
    );
    Ok(Json(json!({
        "counted": counted,
        "duplicates": duplicates,
        "ignored": ignored,
        "rejected": rejected,
    })))
}
