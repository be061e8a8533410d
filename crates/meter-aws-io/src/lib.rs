//! meterflow's AWS messaging and objects, each at its API's batch limit:
//!
//! - [`SqsJobs`]: fetch jobs to SQS with SendMessageBatch (10 entries, 1 MiB), failed entries
//!   retried with backoff, then reported;
//! - [`CloudWatchMetrics`]: the `MetricPublisher` port over PutMetricData (1,000 values a request);
//! - [`S3Objects`]: the `ObjectStore` port over S3: objects streamed into the (synchronous)
//!   decoders through a bounded channel, so a 1 GB object is never in memory; reports and resume
//!   markers written next to their object;
//! - [`ObjectQuarantine`]: the `Quarantine` port over the same store, for rejected messages and
//!   write lines.

use std::io::Read;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{MetricDatum as CwDatum, StandardUnit};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use meter_aws::{send_batch, store_error, Answer, RetryPolicy};
use meter_core::batch::{
    Batcher, Limits, CLOUDWATCH_MAX_METRICS, SQS_MAX_BATCH, SQS_MAX_PAYLOAD_BYTES,
};
use meter_core::collect::FetchJob;
use meter_core::ports::{
    Cursor, GetObject, ItemFailure, KeyPage, MetricDatum, MetricPublisher, ObjectBody, ObjectError,
    ObjectStore, StoreError, WriteReport,
};

/// SQS fetch-job queue.
#[derive(Debug, Clone)]
pub struct SqsJobs {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    budget: Duration,
}

impl SqsJobs {
    /// Jobs go to `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            budget: Duration::from_secs(20),
        }
    }

    /// Sends jobs in batches of 10 (and at most 1 MiB); returns how many were sent and, for the
    /// others, their index and why. A job larger than a message is reported without sending.
    pub async fn send(&self, jobs: &[FetchJob]) -> Result<WriteReport, StoreError> {
        let mut report = WriteReport::default();
        let mut batcher: Batcher<(usize, String)> = Batcher::new(Limits::items_and_bytes(
            SQS_MAX_BATCH,
            SQS_MAX_PAYLOAD_BYTES,
        ));
        let mut batches = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            let body =
                serde_json::to_string(job).map_err(|e| StoreError::InvalidQuery(e.to_string()))?;
            if body.len() > SQS_MAX_PAYLOAD_BYTES {
                report.failures.push(ItemFailure {
                    index: i,
                    reason: format!(
                        "the job is {} bytes; an SQS message holds {SQS_MAX_PAYLOAD_BYTES}",
                        body.len()
                    ),
                    retryable: false,
                });
                continue;
            }
            let size = body.len();
            if let Some(b) = batcher.push_sized((i, body), size) {
                batches.push(b);
            }
        }
        batches.extend(batcher.finish());
        for batch in batches {
            let part = send_batch(RetryPolicy::new(self.budget), batch, |pending| {
                self.send_once(pending)
            })
            .await?;
            report.written += part.written;
            report.failures.extend(part.failures);
        }
        report.failures.sort_by_key(|f| f.index);
        Ok(report)
    }

    /// One `SendMessageBatch` call; entries failed on the service's side are resent, entries
    /// failed on ours (`SenderFault`) are refused.
    async fn send_once(&self, pending: Vec<(usize, String)>) -> Result<Answer<String>, StoreError> {
        let entries = pending
            .iter()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|e| StoreError::InvalidQuery(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| store_error("SQS", "SendMessageBatch", e))?;
        let mut answer = Answer::all(out.successful().len());
        for f in out.failed() {
            let Some(item) = pending.iter().find(|(i, _)| i.to_string() == f.id()) else {
                continue;
            };
            let reason = format!("{}: {}", f.code(), f.message().unwrap_or("no message"));
            if f.sender_fault() {
                answer.refused.push(ItemFailure {
                    index: item.0,
                    reason,
                    retryable: false,
                });
            } else {
                answer.resend.push(item.clone());
                answer.resend_reason = reason;
            }
        }
        Ok(answer)
    }
}

/// The `MetricPublisher` port on CloudWatch.
#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    client: aws_sdk_cloudwatch::Client,
    budget: Duration,
}

impl CloudWatchMetrics {
    /// A publisher over a client.
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        Self {
            client,
            budget: Duration::from_secs(20),
        }
    }

    /// How long a failing call is retried before its values are reported.
    pub fn with_retry_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    fn datum(d: &MetricDatum) -> Result<CwDatum, StoreError> {
        let mut b = CwDatum::builder()
            .metric_name(&d.name)
            .value(d.value)
            .unit(StandardUnit::from(d.unit.as_str()))
            .timestamp(aws_smithy_types::DateTime::from_millis(
                d.time.timestamp_millis(),
            ));
        for (k, v) in &d.dimensions {
            b = b.dimensions(
                aws_sdk_cloudwatch::types::Dimension::builder()
                    .name(k)
                    .value(v)
                    .build(),
            );
        }
        Ok(b.build())
    }
}

#[async_trait]
impl MetricPublisher for CloudWatchMetrics {
    fn max_batch(&self) -> usize {
        CLOUDWATCH_MAX_METRICS
    }

    async fn publish(&self, data: &[MetricDatum]) -> Result<WriteReport, StoreError> {
        let mut report = WriteReport::default();
        // One request per namespace and 1,000 values: PutMetricData takes one namespace a call.
        let mut namespaces: Vec<&str> = data.iter().map(|d| d.namespace.as_str()).collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        for ns in namespaces {
            let indexed: Vec<(usize, &MetricDatum)> = data
                .iter()
                .enumerate()
                .filter(|(_, d)| d.namespace == ns)
                .collect();
            for chunk in indexed.chunks(CLOUDWATCH_MAX_METRICS) {
                let datums = chunk
                    .iter()
                    .map(|(_, d)| Self::datum(d))
                    .collect::<Result<Vec<_>, _>>()?;
                let part = send_batch(
                    RetryPolicy::new(self.budget).with_base(Duration::from_millis(100)),
                    chunk.iter().map(|(i, _)| (*i, ())).collect(),
                    |pending| {
                        let datums = datums.clone();
                        async move {
                            self.client
                                .put_metric_data()
                                .namespace(ns)
                                .set_metric_data(Some(datums))
                                .send()
                                .await
                                .map_err(|e| store_error("CloudWatch", "PutMetricData", e))?;
                            Ok(Answer::all(pending.len()))
                        }
                    },
                )
                .await;
                // A refused call fails only its values: the other namespaces still publish.
                match part {
                    Ok(part) => {
                        report.written += part.written;
                        report.failures.extend(part.failures);
                    }
                    Err(err) => report
                        .failures
                        .extend(chunk.iter().map(|(i, _)| ItemFailure {
                            index: *i,
                            reason: err.to_string(),
                            retryable: err.is_retryable(),
                        })),
                }
            }
        }
        report.failures.sort_by_key(|f| f.index);
        Ok(report)
    }
}

/// The key of an S3 event record, decoded (event keys are URL-encoded, with `+` for spaces).
pub fn event_key(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the rejects report of an object goes: `quarantine/<key>.errors.json`, next to it.
pub fn quarantine_key(key: &str) -> String {
    format!(
        "{}{key}.errors.json",
        meter_core::contract::cloud::QUARANTINE_PREFIX
    )
}

/// Chunks of an object in flight between the download and the decoder.
const CHUNKS_IN_FLIGHT: usize = 4;

/// A blocking reader over an S3 object's body, fed by an async download through a bounded
/// channel: at most a few chunks are in memory whatever the object's size. Read it on a
/// blocking thread (`tokio::task::spawn_blocking`).
#[derive(Debug)]
pub struct ObjectReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.current.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Objects of S3 buckets.
#[derive(Debug, Clone)]
pub struct S3Objects {
    client: aws_sdk_s3::Client,
}

impl S3Objects {
    /// Objects through a client.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }

    /// Objects through a client built from `sdk`, with path-style addressing when an endpoint
    /// override (the local emulator) is set.
    pub fn from_sdk(sdk: &aws_config::SdkConfig) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        Self::new(aws_sdk_s3::Client::from_conf(conf))
    }

    fn get_error<E>(
        bucket: &str,
        key: &str,
        what: &GetObject,
        e: SdkError<E, HttpResponse>,
    ) -> ObjectError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        // Classified by the service's error code and status, never by the message's text.
        let status = match &e {
            SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
            _ => None,
        };
        match (e.code(), status, &what.if_version) {
            (Some("PreconditionFailed"), _, Some(version)) | (_, Some(412), Some(version)) => {
                ObjectError::VersionChanged {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    version: version.clone(),
                }
            }
            (Some("NoSuchKey"), _, _) | (_, Some(404), _) => ObjectError::NotFound {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            },
            _ => store_error("S3", &format!("GetObject s3://{bucket}/{key}"), e).into(),
        }
    }
}

/// The `bytes=` header of a range, if one is asked for.
fn range_header(what: &GetObject) -> Option<String> {
    match (what.range_start, what.range_end) {
        (None, None) => None,
        (start, Some(end)) => Some(format!(
            "bytes={}-{}",
            start.unwrap_or(0),
            end.saturating_sub(1)
        )),
        (Some(start), None) => Some(format!("bytes={start}-")),
    }
}

#[async_trait]
impl ObjectStore for S3Objects {
    /// Streams the body through a bounded channel of a few chunks: whatever the object's size,
    /// only those are in memory.
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        what: &GetObject,
    ) -> Result<ObjectBody, ObjectError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_if_match(what.if_version.clone())
            .set_range(range_header(what))
            .send()
            .await
            .map_err(|e| Self::get_error(bucket, key, what, e))?;
        let size = out.content_length().and_then(|n| u64::try_from(n).ok());
        let version = out.e_tag().map(str::to_owned);
        let content_type = out.content_type().map(str::to_owned);
        let mut body = out.body;
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        tokio::spawn(async move {
            loop {
                match body.try_next().await {
                    Ok(Some(chunk)) => {
                        if tx.send(Ok(chunk.to_vec())).await.is_err() {
                            return; // the reader was dropped
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                        return;
                    }
                }
            }
        });
        Ok(ObjectBody {
            body: Box::new(ObjectReader {
                rx,
                current: Vec::new(),
                pos: 0,
            }),
            size,
            version,
            content_type,
        })
    }

    async fn get_bytes(&self, bucket: &str, key: &str, max: usize) -> Result<Vec<u8>, ObjectError> {
        let what = GetObject::default();
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| Self::get_error(bucket, key, &what, e))?;
        if out.content_length().unwrap_or(0) as usize > max {
            return Err(ObjectError::TooLarge {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                max,
            });
        }
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable {
                backend: "S3",
                message: format!("reading s3://{bucket}/{key}: {e}"),
                source: Some(Box::new(e)),
            })?;
        Ok(body.into_bytes().to_vec())
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ObjectError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(body.into())
            .send()
            .await
            .map_err(|e| store_error("S3", &format!("PutObject s3://{bucket}/{key}"), e))?;
        Ok(())
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&Cursor>,
    ) -> Result<KeyPage, ObjectError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(after.map(|c| c.0.clone()))
            .send()
            .await
            .map_err(|e| store_error("S3", &format!("ListObjectsV2 s3://{bucket}/{prefix}"), e))?;
        Ok(KeyPage {
            keys: out
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect(),
            next: out.next_continuation_token().map(|t| Cursor(t.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_are_decoded() {
        assert_eq!(
            event_key("pool/2024/06/01/120000.json"),
            "pool/2024/06/01/120000.json"
        );
        assert_eq!(event_key("my+file%2Bv2%20%C3%A9.csv"), "my file+v2 é.csv");
        assert_eq!(event_key("bad%zz%"), "bad%zz%");
        assert_eq!(
            quarantine_key("in/a.csv"),
            "quarantine/in/a.csv.errors.json"
        );
    }
}

/// The `Quarantine` port over an object store (S3 on AWS), for the push paths (MQTT messages
/// from IoT Core, line-protocol writes): each call keeps its rejections, each with its topic or
/// request, line, field, reason and original text, as one JSON document at
/// `<prefix><yyyy>/<mm>/<dd>/<hhmmss.mmm>-<hash>.json` under a prefix of `quarantine/` (the hash is of the content,
/// so two instances keeping at the same millisecond do not overwrite each other). The import
/// rule skips the prefix, so nothing kept here is imported.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // reason: the port is not Debug
pub struct ObjectQuarantine {
    objects: std::sync::Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
}

impl ObjectQuarantine {
    /// Keeps rejections in `bucket` under `prefix` (`MQTT_QUARANTINE_PREFIX`,
    /// `WRITE_QUARANTINE_PREFIX`).
    pub fn new(
        objects: std::sync::Arc<dyn ObjectStore>,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        Self {
            objects,
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    /// The key a document of `body`, kept at `at`, is written to.
    pub fn key(&self, at: chrono::DateTime<chrono::Utc>, body: &[u8]) -> String {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: the same content gives the same name in every instance.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        format!(
            "{}{}-{:016x}.json",
            self.prefix,
            at.format("%Y/%m/%d/%H%M%S%.3f"),
            h.finish()
        )
    }
}

#[async_trait]
impl meter_core::ports::Quarantine for ObjectQuarantine {
    async fn keep(&self, rejections: &[meter_core::ingest::Rejection]) -> Result<(), StoreError> {
        if rejections.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec_pretty(&serde_json::json!({
            "rejected": rejections.len(),
            "rejections": rejections,
        }))
        .map_err(|e| StoreError::Corrupt(format!("a rejection cannot be written as JSON: {e}")))?;
        let at = chrono::Utc::now();
        let key = self.key(at, &body);
        match self
            .objects
            .put(&self.bucket, &key, body, "application/json")
            .await
        {
            Ok(()) => Ok(()),
            Err(ObjectError::Store(e)) => Err(e),
            Err(e) => Err(StoreError::Refused {
                backend: "s3",
                message: e.to_string(),
                source: None,
            }),
        }
    }
}
