//! Token checks. Every comparison runs in time that depends only on the lengths involved, so
//! timing does not reveal how much of a guess was right.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use crate::{ApiError, ApiState, Secret, TOKEN_COOKIE};

/// Equality of two byte strings without an early exit on the first difference.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold back into an early-exit compare.
    std::hint::black_box(diff) == 0
}

/// The token a request presents: `Authorization: Bearer <t>`, else the page's login cookie.
fn presented(headers: &HeaderMap) -> Option<Vec<u8>> {
    if let Some(v) = headers.get(AUTHORIZATION) {
        let v = v.as_bytes();
        let prefix = b"Bearer ";
        if v.len() > prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return Some(v[prefix.len()..].to_vec());
        }
        return None;
    }
    for cookie in headers.get_all(COOKIE) {
        for part in cookie.as_bytes().split(|&b| b == b';') {
            let part = part.trim_ascii();
            if let Some(v) = part.strip_prefix(format!("{TOKEN_COOKIE}=").as_bytes()) {
                return Some(v.to_vec());
            }
        }
    }
    None
}

/// Whether the request carries `secret` by bearer header or cookie.
pub(crate) fn bearer_ok(headers: &HeaderMap, secret: Option<&Secret>) -> bool {
    match (secret, presented(headers)) {
        (Some(s), Some(p)) => s.matches(&p),
        _ => false,
    }
}

/// Middleware for the token-protected routes.
pub(crate) async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !state.auth.enabled || bearer_ok(request.headers(), state.auth.api_token.as_ref()) {
        return Ok(next.run(request).await);
    }
    Err(ApiError::unauthorized(
        "send the API token as 'Authorization: Bearer <token>'",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_is_exact() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret "));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
