//! The one error shape of the API: `{"error": <message>, "code": <stable code>}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use meter_core::ports::StoreError;
use serde_json::json;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code.
    pub code: &'static str,
    /// A message for people.
    pub message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 503: a secret the route needs (a token, the webhook's) cannot be read now.
    pub fn secret_unavailable(what: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "secret_unavailable",
            format!("the {what} cannot be read; try again"),
        )
    }

    /// 401: a missing or wrong credential.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404 for a meter without readings.
    pub fn unknown_meter(meter: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_meter",
            format!("no readings are stored for meter {meter}"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::InvalidQuery(m) => Self::bad_request("bad_query", m.clone()),
            StoreError::Unavailable { .. } => {
                tracing::warn!(error = %e, "Store unavailable.");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    e.to_string(),
                )
            }
            _ => {
                tracing::error!(error = %e, "Store failed.");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_error",
                    "the store failed; see the server log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({"error": self.message, "code": self.code})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// Any route not served.
pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("there is no route {}; see /v1/openapi.json", uri.path()),
    )
}
