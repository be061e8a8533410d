//! Cutting streams of items into requests no larger than a backend accepts.
//!
//! The limits of each AWS API are named here once, so adapters and tests agree on them.

/// Timestream `WriteRecords`: at most 100 records a request.
pub const TIMESTREAM_MAX_RECORDS: usize = 100;
/// DynamoDB `BatchWriteItem`: at most 25 put or delete requests a call.
pub const DYNAMODB_MAX_BATCH_WRITE: usize = 25;
/// SQS `SendMessageBatch`: at most 10 entries a call.
pub const SQS_MAX_BATCH: usize = 10;
/// SQS: at most 1 MiB per message and per batch payload (raised from 256 KiB in 2025).
pub const SQS_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// CloudWatch `PutMetricData`: at most 1,000 metric data points a request.
pub const CLOUDWATCH_MAX_METRICS: usize = 1000;
/// The embedded SQLite store: readings per transaction (large transactions amortise fsync).
pub const SQLITE_MAX_BATCH: usize = 50_000;

/// The limits of one request: an item count and, optionally, a byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most items a request may hold (at least 1).
    pub max_items: usize,
    /// The most bytes a request may hold, as measured by the caller's size function.
    pub max_bytes: Option<usize>,
}

impl Limits {
    /// A count limit only.
    pub fn items(max_items: usize) -> Self {
        Self {
            max_items: max_items.max(1),
            max_bytes: None,
        }
    }

    /// A count and a byte limit.
    pub fn items_and_bytes(max_items: usize, max_bytes: usize) -> Self {
        Self {
            max_items: max_items.max(1),
            max_bytes: Some(max_bytes),
        }
    }
}

/// Accumulates items and hands out full batches; for consumers that must await between
/// batches (push an item, send what comes back, and `finish` at the end).
#[derive(Debug)]
pub struct Batcher<T> {
    limits: Limits,
    items: Vec<T>,
    bytes: usize,
}

impl<T> Batcher<T> {
    /// An empty batcher.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            items: Vec::with_capacity(limits.max_items.min(4096)),
            bytes: 0,
        }
    }

    /// Adds an item of `size` bytes. Returns the batch that was full before it, if adding it
    /// would have broken a limit. An item larger than the byte budget on its own still forms a
    /// batch of one: the backend, not the batcher, must say it is too large.
    pub fn push_sized(&mut self, item: T, size: usize) -> Option<Vec<T>> {
        let over_bytes = self
            .limits
            .max_bytes
            .is_some_and(|max| !self.items.is_empty() && self.bytes + size > max);
        let out = if over_bytes { Some(self.take()) } else { None };
        self.items.push(item);
        self.bytes += size;
        if out.is_none() && self.items.len() >= self.limits.max_items {
            return Some(self.take());
        }
        out
    }

    /// Adds an item when only the count matters.
    pub fn push(&mut self, item: T) -> Option<Vec<T>> {
        self.push_sized(item, 0)
    }

    /// The items not yet handed out, if any.
    pub fn finish(&mut self) -> Option<Vec<T>> {
        (!self.items.is_empty()).then(|| self.take())
    }

    /// How many items are waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no items are waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn take(&mut self) -> Vec<T> {
        self.bytes = 0;
        std::mem::replace(
            &mut self.items,
            Vec::with_capacity(self.limits.max_items.min(4096)),
        )
    }
}

/// Cuts an iterator into batches of at most `max` items.
pub fn batches<I: Iterator>(iter: I, max: usize) -> impl Iterator<Item = Vec<I::Item>> {
    let mut iter = iter.fuse();
    let max = max.max(1);
    std::iter::from_fn(move || {
        let batch: Vec<I::Item> = iter.by_ref().take(max).collect();
        (!batch.is_empty()).then_some(batch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_full_except_the_last() {
        let sizes: Vec<usize> = batches(0..251, TIMESTREAM_MAX_RECORDS)
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, vec![100, 100, 51]);
        assert_eq!(batches(0..0, 10).count(), 0);
    }

    #[test]
    fn batcher_respects_count_and_bytes() {
        let mut b = Batcher::new(Limits::items_and_bytes(3, 100));
        assert_eq!(b.push_sized(1, 40), None);
        assert_eq!(b.push_sized(2, 40), None);
        // 40 + 40 + 40 > 100: the first two go out, the third waits.
        assert_eq!(b.push_sized(3, 40), Some(vec![1, 2]));
        assert_eq!(b.push_sized(4, 10), None);
        assert_eq!(b.push_sized(5, 10), Some(vec![3, 4, 5]));
        // An oversized item goes alone.
        assert_eq!(b.push_sized(6, 500), None);
        assert_eq!(b.push_sized(7, 1), Some(vec![6]));
        assert_eq!(b.finish(), Some(vec![7]));
        assert_eq!(b.finish(), None);
    }
}
