//! Lambda **import**: on S3 object-created events (direct S3 notifications, S3 events delivered
//! through EventBridge, or either inside SQS messages), streams each object through the decoder
//! its key and first bytes choose (wide CSV, long CSV, Pi JSON, mbed, SST counters) into the
//! history store in its largest batches, and writes the rejected rows, each with line, field and
//! reason, to `quarantine/<key>.errors.json` next to it.
//!
//! Re-delivery of an event changes nothing: readings are keyed by meter, measure and time, and
//! the report is rewritten with the same content.
//!
//! An object too large for one invocation is resumed, not cut: when the time left runs low, the
//! function stops after a fully written batch and puts a small marker object,
//! `_resume/<key>.json` (`{bucket, key, etag, skip, part}`), whose own object-created event
//! invokes the function again; the next run reads the same version (`If-Match` on the ETag),
//! skips the rows already done and goes on. Each part writes its own report
//! (`quarantine/<key>.errors.json`, then `quarantine/<key>.part-<n>.errors.json`).
//!
//! Each invocation writes one metric line (`meter_lambda::metrics`): readings stored, rows
//! quarantined, whether it failed (Lambda then retries the event), and the SDK's retries.

use std::sync::Arc;
use std::time::SystemTime;

use meter_aws_io::{event_key, quarantine_key, S3Objects};
use meter_core::contract::cloud::ops;
use meter_core::decode::{self, DecodeOptions};
use meter_core::ingest::{Batch, Pipeline, Report as IngestReport, MAX_LISTED};
use meter_core::ports::{write_all, GetObject, ObjectError, ObjectStore, ReadingWriter};
use meter_lambda::metrics::Emitter;
use meter_lambda::{ConfigError, Env, History, HistoryConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use meter_core::contract::cloud::{QUARANTINE_PREFIX, RESUME_PREFIX};
/// Readings per hand-over from the decoder to the writer: a multiple of DynamoDB's 25 and
/// Timestream's 100, so every request but the last of an object is full.
const CHUNK: usize = 2_500;
/// Write calls in flight.
const WRITE_CONCURRENCY: usize = 4;
/// The largest resume marker read.
const MAX_MARKER_BYTES: usize = 64 * 1024;

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The history store.
    pub history: HistoryConfig,
}

impl Config {
    /// Reads the history store's variables.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            history: HistoryConfig::from_env(env)?,
        })
    }
}

/// The clients, built once per cold start.
#[allow(missing_debug_implementations)] // reason: the ports are not Debug
pub struct Import {
    objects: Arc<dyn ObjectStore>,
    history: Arc<dyn ReadingWriter>,
    metrics: Emitter,
}

impl Import {
    /// Clients for the configured store (no request is sent).
    pub fn new(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        Self::with_parts(
            Arc::new(S3Objects::from_sdk(sdk)),
            // An object is a bulk write: stored rollups are brought up to date once per
            // series when the object (or this invocation's part of it) is written, not after
            // every batch.
            History::bulk(sdk, &config.history).writer,
        )
    }

    /// The same over given parts.
    pub fn with_parts(objects: Arc<dyn ObjectStore>, history: Arc<dyn ReadingWriter>) -> Self {
        Self {
            objects,
            history,
            metrics: Emitter::lambda("import"),
        }
    }

    /// The same, with the metric lines going to `metrics` instead of stdout.
    pub fn with_metrics(self, metrics: Emitter) -> Self {
        Self { metrics, ..self }
    }
}

/// When an invocation must hand the rest of an object to the next one.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// At this time (the invocation's deadline less a margin).
    Deadline(SystemTime),
    /// After this many records of an object (for tests, which must not depend on timing).
    Records(u64),
}

impl Budget {
    fn exhausted(&self, records_this_run: u64) -> bool {
        match self {
            Budget::Deadline(t) => SystemTime::now() >= *t,
            Budget::Records(n) => records_this_run >= *n,
        }
    }
}

/// One object to import, from an event or a resume marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The bucket.
    pub bucket: String,
    /// The key, decoded.
    pub key: String,
    /// The version being imported (set when resuming).
    #[serde(default)]
    pub etag: Option<String>,
    /// Records (readings and rejects) already done.
    #[serde(default)]
    pub skip: u64,
    /// Which part of the import this is (0 for the first).
    #[serde(default)]
    pub part: u32,
}

impl ObjectRef {
    /// The start of an object named by an event (its key still URL-encoded).
    fn from_event(bucket: &str, raw_key: &str) -> Self {
        Self {
            bucket: bucket.to_owned(),
            key: event_key(raw_key),
            etag: None,
            skip: 0,
            part: 0,
        }
    }
}

fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path).and_then(Value::as_str)
}

/// The objects an event names: an S3 notification (`Records[].s3`, keys URL-encoded), an
/// EventBridge "Object Created" event (`detail`), or an SQS event whose bodies are either.
/// S3's test event and other records are ignored.
pub fn objects_of(event: &Value) -> Result<Vec<ObjectRef>, EventError> {
    let mut out = Vec::new();
    if let (Some("Object Created"), Some(bucket), Some(key)) = (
        str_at(event, "/detail-type"),
        str_at(event, "/detail/bucket/name"),
        str_at(event, "/detail/object/key"),
    ) {
        // EventBridge keys are URL-encoded like notification keys.
        out.push(ObjectRef::from_event(bucket, key));
        return Ok(out);
    }
    let Some(records) = event.get("Records").and_then(Value::as_array) else {
        if event.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
            return Ok(out);
        }
        return Err(EventError::Unknown);
    };
    for r in records {
        if let Some(body) = r.get("body").and_then(Value::as_str) {
            let inner: Value = serde_json::from_str(body).map_err(EventError::SqsBody)?;
            out.extend(objects_of(&inner)?);
            continue;
        }
        let created = str_at(r, "/eventName").is_none_or(|n| n.starts_with("ObjectCreated"));
        if let (true, Some(bucket), Some(key)) = (
            created,
            str_at(r, "/s3/bucket/name"),
            str_at(r, "/s3/object/key"),
        ) {
            out.push(ObjectRef::from_event(bucket, key));
        }
    }
    Ok(out)
}

/// What one invocation did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Objects imported (wholly or up to a resume point).
    pub objects: usize,
    /// Readings stored.
    pub readings: usize,
    /// Rows rejected (decoding) or refused (by the store).
    pub rejected: usize,
    /// Objects handed on to a next invocation.
    pub resumed: usize,
    /// Objects skipped (our own reports).
    pub skipped: usize,
}

/// An event the function does not understand.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not an S3 notification, an EventBridge event or an SQS event carrying either.
    #[error("not an S3, EventBridge or SQS event")]
    Unknown,
    /// An SQS message whose body is not JSON.
    #[error("an SQS message body is not JSON: {0}")]
    SqsBody(#[source] serde_json::Error),
    /// A resume marker that is not one of ours.
    #[error("resume marker s3://{bucket}/{key}: {source}")]
    Marker {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// Why an invocation failed (EventBridge retries it, then its dead-letter queue keeps it).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The event was not understood.
    #[error(transparent)]
    Event(#[from] EventError),
    /// An object, a marker or a report could not be read or written.
    #[error(transparent)]
    Objects(#[from] ObjectError),
    /// The readings landed but what the store derives from them (DynamoDB's stored rollups)
    /// could not be brought up to date; the retry writes them again, which recomputes it.
    #[error("the readings of s3://{bucket}/{key} are stored, but not their rollups: {source}")]
    NotFlushed {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The store's error.
        #[source]
        source: meter_core::ports::StoreError,
    },
    /// Readings could not be written for a reason a retry may cure.
    #[error("{failed} readings of s3://{bucket}/{key} were not stored: {first}")]
    NotStored {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// How many.
        failed: usize,
        /// The first reason.
        first: String,
    },
    /// The decoding task ended abnormally (it panicked).
    #[error("the decoder of {object} stopped: {source}")]
    Decoder {
        /// The object.
        object: String,
        /// The task's error.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl ImportError {
    /// Whether running the invocation again may succeed: the event is well formed and the
    /// failure was the store's or the network's.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Event(_) | Self::Decoder { .. } => false,
            Self::Objects(e) => e.is_retryable(),
            Self::NotStored { .. } => true,
            Self::NotFlushed { source, .. } => source.is_retryable(),
        }
    }
}

/// Imports every object an event names.
pub async fn handle(state: &Import, event: &Value, budget: Budget) -> Result<Report, ImportError> {
    let invocation = async {
        let mut report = Report::default();
        let result = import_all(state, event, budget, &mut report).await;
        (report, result)
    };
    let (report, result) = state
        .metrics
        .measure(invocation, |(report, result)| {
            vec![
                (ops::READINGS_STORED, report.readings as u64),
                (ops::ROWS_REJECTED, report.rejected as u64),
                (ops::INVOCATIONS_FAILED, u64::from(result.is_err())),
            ]
        })
        .await;
    result.map(|()| report)
}

async fn import_all(
    state: &Import,
    event: &Value,
    budget: Budget,
    report: &mut Report,
) -> Result<(), ImportError> {
    for obj in objects_of(event)? {
        if obj.key.starts_with(QUARANTINE_PREFIX) {
            report.skipped += 1;
            continue;
        }
        let target = if obj.key.starts_with(RESUME_PREFIX) {
            let bytes = state
                .objects
                .get_bytes(&obj.bucket, &obj.key, MAX_MARKER_BYTES)
                .await?;
            serde_json::from_slice::<ObjectRef>(&bytes).map_err(|source| EventError::Marker {
                bucket: obj.bucket.clone(),
                key: obj.key.clone(),
                source,
            })?
        } else {
            obj
        };
        import_object(state, &target, budget, report).await?;
    }
    Ok(())
}

async fn import_object(
    state: &Import,
    obj: &ObjectRef,
    budget: Budget,
    report: &mut Report,
) -> Result<(), ImportError> {
    let name = format!("s3://{}/{}", obj.bucket, obj.key);
    let what = GetObject {
        if_version: obj.etag.clone(),
        ..GetObject::default()
    };
    let object = match state.objects.get(&obj.bucket, &obj.key, &what).await {
        Ok(o) => o,
        Err(ObjectError::VersionChanged { .. }) => {
            // Replaced since the import began: the new version's own event imports it.
            tracing::warn!(object = %name, "object replaced during a resumed import; stopping");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let etag = object.version.clone();
    let charset = object.charset().map(str::to_owned);

    // Decoding and batching on a blocking thread; writing here, two batches apart.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(2);
    let (file, skip) = (name.clone(), obj.skip);
    let decoding = tokio::task::spawn_blocking(move || {
        let mut pipeline = Pipeline::new(CHUNK);
        let unit = pipeline.begin(&file, skip);
        let input = std::io::BufReader::with_capacity(256 * 1024, object.body);
        let mut options = DecodeOptions::new(&file);
        options.received_at = chrono::Utc::now();
        // A charset the decoders do not know reads as UTF-8, whose rules refuse (not replace)
        // bytes that are not UTF-8, row by row.
        options.encoding = charset
            .as_deref()
            .and_then(|c| decode::encoding_named(c).ok());
        // The writer hangs up at a resume point: then the rest is left for the next run.
        let mut emit = |batch: Batch| tx.blocking_send(batch).map_err(drop);
        let fed = match decode::open(input, None, options) {
            Ok((format, mut decoder)) => {
                pipeline.format(unit, format);
                pipeline
                    .feed(unit, &mut *decoder, &mut emit)
                    .map(|()| pipeline.end(unit))
            }
            Err(e) => {
                pipeline.fail(unit, e);
                Ok(())
            }
        };
        if fed.is_ok() {
            if let Some(rest) = pipeline.flush() {
                let _ = emit(rest);
            }
        }
    });

    let mut ingest = IngestReport::listing(MAX_LISTED);
    let mut done = obj.skip;
    let mut finished = false;
    let mut retry_later: Vec<String> = Vec::new();
    while let Some(batch) = rx.recv().await {
        let written = write_all(&*state.history, batch.readings(), WRITE_CONCURRENCY).await;
        let settled = batch.settle(written);
        retry_later.extend(
            settled
                .rejections()
                .filter(|r| r.retryable)
                .map(|r| r.reason.clone()),
        );
        for c in ingest.add(settled) {
            done = c.records;
            finished = c.complete;
        }
        if finished || budget.exhausted(done - obj.skip) {
            break;
        }
    }
    drop(rx);
    decoding.await.map_err(|source| ImportError::Decoder {
        object: name.clone(),
        source,
    })?;
    // Before the report and any resume marker: a part counts as done only once its rollups are.
    if let Err(source) = state.history.flush().await {
        return Err(ImportError::NotFlushed {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            source,
        });
    }
    if let Some(first) = retry_later.first() {
        return Err(ImportError::NotStored {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            failed: retry_later.len(),
            first: first.clone(),
        });
    }
    let mut part = ingest
        .per_file
        .pop()
        .unwrap_or_else(|| meter_core::ingest::FileReport::failed(&name, "nothing was read"));
    part.version = etag.clone();
    report.readings += part.stored as usize;
    // An unreadable object counts as one rejected row: it is one thing that did not land.
    let unreadable = u64::from(part.error.is_some() && part.rejected == 0);
    report.rejected += (part.rejected + part.not_stored + unreadable) as usize;
    if !part.is_clean() {
        let key = if obj.part == 0 {
            quarantine_key(&obj.key)
        } else {
            format!(
                "{QUARANTINE_PREFIX}{}.part-{}.errors.json",
                obj.key, obj.part
            )
        };
        let body = serde_json::to_vec_pretty(&part).unwrap_or_default();
        put_json(state, &obj.bucket, &key, body).await?;
    }
    report.objects += 1;
    if !finished {
        let next = ObjectRef {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            etag,
            skip: done,
            part: obj.part + 1,
        };
        let marker = format!("{RESUME_PREFIX}{}.json", obj.key);
        let body = serde_json::to_vec(&next).unwrap_or_default();
        put_json(state, &obj.bucket, &marker, body).await?;
        report.resumed += 1;
        tracing::info!(object = %name, done, part = obj.part, "time is short; the rest continues from a resume marker");
    }
    tracing::info!(object = %name, readings = part.stored, rejected = part.rejected + part.not_stored, finished, "imported");
    Ok(())
}

async fn put_json(
    state: &Import,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
) -> Result<(), ObjectError> {
    state
        .objects
        .put(bucket, key, body, "application/json")
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_come_from_notifications_eventbridge_and_sqs() {
        let notification = json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "b"}, "object": {"key": "in/my+file%2B1.csv", "size": 10}}
        }, {
            "eventName": "ObjectRemoved:Delete",
            "s3": {"bucket": {"name": "b"}, "object": {"key": "gone.csv"}}
        }]});
        let keys: Vec<String> = objects_of(&notification)
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, vec!["in/my file+1.csv"]);

        let bridge = json!({
            "version": "0", "detail-type": "Object Created", "source": "aws.s3",
            "detail": {"bucket": {"name": "b"}, "object": {"key": "pool/2024/06/01/120000.json", "size": 60}}
        });
        assert_eq!(
            objects_of(&bridge).unwrap()[0].key,
            "pool/2024/06/01/120000.json"
        );

        let sqs = json!({"Records": [
            {"messageId": "1", "body": notification.to_string()},
            {"messageId": "2", "body": json!({"Service": "Amazon S3", "Event": "s3:TestEvent"}).to_string()}
        ]});
        assert_eq!(objects_of(&sqs).unwrap().len(), 1);
        assert!(objects_of(&json!({"hello": 1})).is_err());
    }
}
