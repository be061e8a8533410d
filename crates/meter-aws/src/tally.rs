//! How many requests the SDK sent during one invocation, and how many of them were retries:
//! the SDK retries throttles, 5xx answers, timeouts and cut connections on its own, so
//! without this count a function that spends half its time retrying looks healthy.
//!
//! Every attempt passes through [`sdk_config`](crate::sdk_config)'s HTTP client, which counts
//! it in the tally of the task that sent it; the SDK marks each attempt with its number
//! (`amz-sdk-request: attempt=2; max=3`), so a retry is told apart without classifying the
//! answer, whichever protocol or error code the service uses. Our adapters' own resends (a
//! batch's unprocessed items, a whole call after the SDK gave up) go through
//! [`Backoff`](crate::Backoff) and are counted there. Tallies are per task, so invocations
//! running side by side in one process (tests, `meter serve`) do not mix.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;

/// The SDK's attempt header.
const ATTEMPT_HEADER: &str = "amz-sdk-request";

/// What one invocation sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// HTTP attempts, first tries and retries.
    pub requests: u64,
    /// Attempts after the first of an operation, and our adapters' resends.
    pub retries: u64,
}

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    retries: AtomicU64,
}

tokio::task_local! {
    static CURRENT: Arc<Counts>;
}

/// Runs `f`, counting the SDK requests it sends (those sent from tasks it spawns are not
/// counted: the functions' handlers spawn none).
pub async fn tallied<F: Future>(f: F) -> (F::Output, Tally) {
    let counts = Arc::new(Counts::default());
    let out = CURRENT.scope(counts.clone(), f).await;
    let tally = Tally {
        requests: counts.requests.load(Ordering::Relaxed),
        retries: counts.retries.load(Ordering::Relaxed),
    };
    (out, tally)
}

/// The attempt number in an `amz-sdk-request` value (`attempt=2; max=3`).
pub fn attempt_of(value: &str) -> Option<u32> {
    value
        .split(';')
        .find_map(|part| part.trim().strip_prefix("attempt="))
        .and_then(|n| n.trim().parse().ok())
}

fn record(request: &HttpRequest) {
    // Outside a tallied scope (start-up, tests' own reads) there is nothing to count into.
    let _ = CURRENT.try_with(|c| {
        c.requests.fetch_add(1, Ordering::Relaxed);
        let attempt = request.headers().get(ATTEMPT_HEADER).and_then(attempt_of);
        if attempt.is_some_and(|a| a > 1) {
            c.retries.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// Counts one resend by an adapter.
pub(crate) fn record_resend() {
    let _ = CURRENT.try_with(|c| c.retries.fetch_add(1, Ordering::Relaxed));
}

/// A connector that counts each attempt before sending it.
#[derive(Debug)]
pub(crate) struct Tallying(pub(crate) SharedHttpConnector);

impl HttpConnector for Tallying {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        record(&request);
        self.0.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_number_is_read_from_the_sdk_header() {
        assert_eq!(attempt_of("attempt=1; max=3"), Some(1));
        assert_eq!(
            attempt_of("ttl=20240101T000000Z; attempt=2; max=3"),
            Some(2)
        );
        assert_eq!(attempt_of("max=3"), None);
        assert_eq!(attempt_of("attempt=x"), None);
    }

    fn request(attempt: Option<&str>) -> HttpRequest {
        let mut r = HttpRequest::new(aws_smithy_types::body::SdkBody::empty());
        if let Some(a) = attempt {
            r.headers_mut().insert(ATTEMPT_HEADER, a.to_owned());
        }
        r
    }

    #[tokio::test]
    async fn retries_are_counted_in_the_task_that_sent_them_and_nowhere_else() {
        record(&request(Some("attempt=2; max=3")));
        let ((), first) = tallied(async {
            record(&request(Some("attempt=1; max=3")));
            record(&request(Some("attempt=2; max=3")));
            record(&request(None));
        })
        .await;
        let ((), second) = tallied(async {
            record(&request(Some("attempt=3; max=3")));
            let mut backoff = crate::Backoff::new(
                std::time::Duration::from_millis(1),
                std::time::Duration::from_millis(1),
                std::time::Duration::from_secs(60),
            );
            assert!(backoff.wait().await);
        })
        .await;
        assert_eq!(
            first,
            Tally {
                requests: 3,
                retries: 1
            }
        );
        assert_eq!(
            second,
            Tally {
                requests: 1,
                retries: 2
            }
        );
    }
}
