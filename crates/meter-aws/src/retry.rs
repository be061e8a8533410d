//! One way of sending a batch to an AWS API that can answer "some of these, not all":
//! DynamoDB's `BatchWriteItem` (unprocessed items), SQS's `SendMessageBatch` (failed entries),
//! Timestream's `WriteRecords` (rejected records) and CloudWatch's `PutMetricData` (all or
//! nothing). The adapter builds requests and reads answers ([`send_batch`]'s `call`); this module
//! owns the loop: resend what is left with backoff until a budget is spent, then report every
//! item that did not land, by its index in the caller's input, with the reason.
//!
//! How it stacks on the SDK's retries: every call goes through the SDK's standard retry
//! strategy first (3 attempts with its own backoff for throttling, 5xx, timeouts and cut
//! connections). This loop sees only what is left after that: a call the SDK gave up on
//! (retried here while the error is retryable and the budget lasts) and items the service
//! accepted the call but did not process (never retried by the SDK, since the call
//! "succeeded"). One item can therefore be attempted up to 3 times per resend here; the budget,
//! not a count, bounds the total time.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant, SystemTime};

use meter_core::ports::{ItemFailure, StoreError, WriteReport};

use crate::tally;

/// Exponential backoff with full jitter, bounded by a deadline.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    deadline: Instant,
    state: u64,
}

impl Backoff {
    /// Starts at `base`, doubles up to `max`, and gives up at `now + budget`.
    pub fn new(base: Duration, max: Duration, budget: Duration) -> Self {
        Self {
            next: base,
            max,
            deadline: Instant::now() + budget,
            state: seed(),
        }
    }

    /// Waits before the next attempt, counted as a retry in the task's [`tally`]; `false` when
    /// the deadline has passed (give up and report).
    pub async fn wait(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        let pause = self.pause().min(self.deadline - now);
        tokio::time::sleep(pause).await;
        tally::record_resend();
        true
    }

    /// The next pause: uniform in `[1 ms, ceiling]` ("full jitter"), then the ceiling doubles.
    fn pause(&mut self) -> Duration {
        // xorshift64: jitter needs no cryptographic randomness, only a different sequence per
        // backoff, which the seed gives.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let ceiling = self.next.as_millis().max(1) as u64;
        self.next = (self.next * 2).min(self.max);
        Duration::from_millis(self.state % ceiling + 1)
    }
}

/// A seed that differs between backoffs made at the same instant, in one process or many:
/// `RandomState` draws its keys from the OS once per thread and steps them on every call, and
/// the wall clock separates processes (and machines) that started from the same keys.
fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    h.write_u64(nanos);
    h.write_u32(std::process::id());
    // xorshift's state must not be zero.
    h.finish() | 1
}

/// How long and how fast a batch is resent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first pause's ceiling.
    pub base: Duration,
    /// The largest pause's ceiling.
    pub max: Duration,
    /// Time after which what is left is reported instead of resent.
    pub budget: Duration,
}

impl RetryPolicy {
    /// Pauses from 50 ms up to 5 s, for `budget`.
    pub fn new(budget: Duration) -> Self {
        Self {
            base: Duration::from_millis(50),
            max: Duration::from_secs(5),
            budget,
        }
    }

    /// The same with a first pause of `base`.
    pub fn with_base(self, base: Duration) -> Self {
        Self { base, ..self }
    }
}

/// What the service did with one call's items.
#[derive(Debug)]
pub struct Answer<T> {
    /// Items stored.
    pub written: usize,
    /// Items to send again (throttled, unprocessed, or changed for a resend such as a higher
    /// version), each with its index in the caller's input, and why they are resent.
    pub resend: Vec<(usize, T)>,
    /// Why the last resend was needed, for the report when the budget runs out.
    pub resend_reason: String,
    /// Items refused for good.
    pub refused: Vec<ItemFailure>,
}

impl<T> Answer<T> {
    /// Every item stored.
    pub fn all(written: usize) -> Self {
        Self {
            written,
            resend: Vec::new(),
            resend_reason: String::new(),
            refused: Vec::new(),
        }
    }
}

/// Sends `items` (each with its index in the caller's input) with `call`, resending what the
/// answers leave over with backoff until `policy`'s budget is spent.
///
/// - A call that fails with a retryable error is repeated while the budget lasts.
/// - When the budget is spent, or a call fails for good after some items were answered, the
///   items still pending are reported as failures with the reason and its retryability.
/// - A call that fails for good before any item was answered is the caller's error (a missing
///   table, a bad request): every item would fail the same way.
pub async fn send_batch<T, F, Fut>(
    policy: RetryPolicy,
    items: Vec<(usize, T)>,
    mut call: F,
) -> Result<WriteReport, StoreError>
where
    T: Clone,
    F: FnMut(Vec<(usize, T)>) -> Fut,
    Fut: std::future::Future<Output = Result<Answer<T>, StoreError>>,
{
    let mut report = WriteReport::default();
    let mut pending = items;
    let mut backoff = Backoff::new(policy.base, policy.max, policy.budget);
    while !pending.is_empty() {
        match call(pending.clone()).await {
            Ok(answer) => {
                report.written += answer.written;
                report.failures.extend(answer.refused);
                pending = answer.resend;
                if pending.is_empty() {
                    break;
                }
                tracing::warn!(left = pending.len(), reason = %answer.resend_reason, "Resending what the service left unprocessed.");
                if !backoff.wait().await {
                    let reason = format!(
                        "still pending when the retry budget of {:?} ran out: {}",
                        policy.budget, answer.resend_reason
                    );
                    fail_all(&mut report, &pending, &reason, true);
                    break;
                }
            }
            Err(err) => {
                if err.is_retryable() && backoff.wait().await {
                    continue;
                }
                if !err.is_retryable() && report.written == 0 && report.failures.is_empty() {
                    return Err(err);
                }
                fail_all(&mut report, &pending, &err.to_string(), err.is_retryable());
                break;
            }
        }
    }
    report.failures.sort_by_key(|f| f.index);
    Ok(report)
}

/// Adds one chunk's outcome to the report of a call made of several chunks. A permanent error
/// before anything of the call was answered is returned (every chunk would fail alike); after
/// that, it fails only the chunk's items, so what earlier chunks wrote is still reported.
pub fn merge_chunk(
    report: &mut WriteReport,
    indices: impl Iterator<Item = usize>,
    chunk: Result<WriteReport, StoreError>,
) -> Result<(), StoreError> {
    match chunk {
        Ok(part) => {
            report.written += part.written;
            report.failures.extend(part.failures);
        }
        Err(err) if report.written == 0 && report.failures.is_empty() => return Err(err),
        Err(err) => report.failures.extend(indices.map(|index| ItemFailure {
            index,
            reason: err.to_string(),
            retryable: err.is_retryable(),
        })),
    }
    Ok(())
}

fn fail_all<T>(report: &mut WriteReport, pending: &[(usize, T)], reason: &str, retryable: bool) {
    report
        .failures
        .extend(pending.iter().map(|(index, _)| ItemFailure {
            index: *index,
            reason: reason.to_owned(),
            retryable,
        }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn quick(budget_ms: u64) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
            budget: Duration::from_millis(budget_ms),
        }
    }

    fn unavailable(message: &str) -> StoreError {
        StoreError::Unavailable {
            backend: "test",
            message: message.to_owned(),
            source: None,
        }
    }

    fn refused(message: &str) -> StoreError {
        StoreError::Refused {
            backend: "test",
            message: message.to_owned(),
            source: None,
        }
    }

    fn items(n: usize) -> Vec<(usize, char)> {
        (0..n).map(|i| (i, (b'a' + i as u8) as char)).collect()
    }

    #[tokio::test]
    async fn unprocessed_items_are_resent_until_stored_and_refusals_are_kept() {
        let calls = AtomicUsize::new(0);
        let sent = std::sync::Mutex::new(Vec::new());
        let report = send_batch(quick(10_000), items(5), |batch| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            sent.lock()
                .unwrap()
                .push(batch.iter().map(|(_, c)| *c).collect::<String>());
            async move {
                Ok(match n {
                    // Item 1 refused for good; 3 and 4 left unprocessed.
                    0 => Answer {
                        written: 2,
                        resend: batch.iter().filter(|(i, _)| *i >= 3).cloned().collect(),
                        resend_reason: "unprocessed".into(),
                        refused: vec![ItemFailure {
                            index: 1,
                            reason: "too big".into(),
                            retryable: false,
                        }],
                    },
                    _ => Answer::all(batch.len()),
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(*sent.lock().unwrap(), vec!["abcde", "de"]);
        assert_eq!(report.written, 4);
        assert_eq!(report.failures.len(), 1);
        assert_eq!(
            (report.failures[0].index, report.failures[0].retryable),
            (1, false)
        );
    }

    #[tokio::test]
    async fn a_throttled_call_is_repeated_whole() {
        let calls = AtomicUsize::new(0);
        let report = send_batch(quick(10_000), items(3), |batch| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(unavailable("ThrottlingException: slow down"))
                } else {
                    Ok(Answer::all(batch.len()))
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(report.written, 3);
        assert!(report.failures.is_empty());
    }

    #[tokio::test]
    async fn when_the_budget_is_spent_what_is_left_is_reported_retryable() {
        let calls = AtomicUsize::new(0);
        let report = send_batch(quick(20), items(4), |batch| {
            // The first call stores one item; the service then processes nothing more.
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                let skip = usize::from(first);
                Ok(Answer {
                    written: skip,
                    resend: batch[skip..].to_vec(),
                    resend_reason: "ProvisionedThroughputExceeded".into(),
                    refused: Vec::new(),
                })
            }
        })
        .await
        .unwrap();
        assert!(
            calls.load(Ordering::SeqCst) > 2,
            "the budget allows resends"
        );
        assert_eq!(report.written, 1);
        assert_eq!(
            report.failures.iter().map(|f| f.index).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(report.failures.iter().all(|f| f.retryable
            && f.reason.contains("retry budget")
            && f.reason.contains("ProvisionedThroughputExceeded")));

        let report = send_batch(quick(20), items(2), |_| async {
            Err::<Answer<char>, _>(unavailable("503"))
        })
        .await
        .unwrap();
        assert_eq!(report.written, 0);
        assert_eq!(report.failures.len(), 2);
        assert!(report.failures.iter().all(|f| f.retryable));
    }

    #[tokio::test]
    async fn a_permanent_error_is_the_callers_until_items_were_answered() {
        let err = send_batch(quick(10_000), items(2), |_| async {
            Err::<Answer<char>, _>(refused("ResourceNotFoundException: no table"))
        })
        .await
        .unwrap_err();
        assert!(!err.is_retryable());

        let calls = AtomicUsize::new(0);
        let report = send_batch(quick(10_000), items(3), |batch| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Ok(Answer {
                        written: 1,
                        resend: batch[1..].to_vec(),
                        resend_reason: "unprocessed".into(),
                        refused: Vec::new(),
                    })
                } else {
                    Err(refused("ValidationException: bad item"))
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(report.written, 1);
        assert_eq!(
            report
                .failures
                .iter()
                .map(|f| (f.index, f.retryable))
                .collect::<Vec<_>>(),
            vec![(1, false), (2, false)]
        );
        assert!(report.failures[0].reason.contains("bad item"));
    }

    #[test]
    fn a_chunk_refused_after_others_landed_fails_only_its_items() {
        let mut report = WriteReport::default();
        assert!(merge_chunk(&mut report, 0..2, Err(refused("no table"))).is_err());
        let two = WriteReport {
            written: 2,
            failures: Vec::new(),
        };
        merge_chunk(&mut report, 0..2, Ok(two)).unwrap();
        merge_chunk(&mut report, 2..4, Err(refused("bad"))).unwrap();
        assert_eq!(report.written, 2);
        assert_eq!(
            report.failures.iter().map(|f| f.index).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(report.failures.iter().all(|f| !f.retryable));
    }

    #[test]
    fn backoffs_made_at_the_same_time_draw_different_pauses() {
        let second = Duration::from_secs(1);
        let draw = || {
            let mut b = Backoff::new(second, second, second);
            (0..8).map(|_| b.pause()).collect::<Vec<_>>()
        };
        let (a, b) = (draw(), draw());
        assert_ne!(a, b, "two backoffs share a jitter sequence");
        assert!(a
            .iter()
            .all(|p| *p >= Duration::from_millis(1) && *p <= second));
    }

    #[test]
    fn pauses_grow_to_the_ceiling() {
        let mut b = Backoff::new(
            Duration::from_millis(4),
            Duration::from_millis(16),
            Duration::from_secs(60),
        );
        let ceilings: Vec<Duration> = (0..5)
            .map(|_| {
                let c = b.next;
                let p = b.pause();
                assert!(p <= c.max(Duration::from_millis(1)), "{p:?} > {c:?}");
                c
            })
            .collect();
        assert_eq!(
            ceilings,
            [4, 8, 16, 16, 16].map(Duration::from_millis).to_vec()
        );
    }
}
