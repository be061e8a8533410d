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
use meter_core::decode::{decoder, detect, DecodeOptions, Rejected};
use meter_core::ports::{write_all, ReadingWriter, StoreError};
use meter_core::Reading;
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
/// Rejected rows listed in one report (all are counted).
const MAX_REPORTED: usize = 10_000;

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
    objects: S3Objects,
    history: Arc<dyn ReadingWriter>,
    metrics: Emitter,
}

impl Import {
    /// Clients for the configured store (no request is sent).
    pub fn new(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        Self::with_parts(
            S3Objects::from_sdk(sdk),
            History::new(sdk, &config.history).writer,
        )
    }

    /// The same over given parts.
    pub fn with_parts(objects: S3Objects, history: Arc<dyn ReadingWriter>) -> Self {
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
pub fn objects_of(event: &Value) -> Result<Vec<ObjectRef>, String> {
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
        return Err("not an S3, EventBridge or SQS event".into());
    };
    for r in records {
        if let Some(body) = r.get("body").and_then(Value::as_str) {
            let inner: Value = serde_json::from_str(body)
                .map_err(|e| format!("an SQS message body is not JSON: {e}"))?;
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

/// Why an invocation failed (EventBridge retries it, then its dead-letter queue keeps it).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The event was not understood.
    #[error("{0}")]
    Event(String),
    /// An object, a marker or a report could not be read or written.
    #[error("{0}")]
    Storage(#[from] StoreError),
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
}

/// The quarantine report of one part of an object.
#[derive(Debug, Serialize)]
struct QuarantineReport<'a> {
    object: String,
    etag: Option<&'a str>,
    part: u32,
    first_record: u64,
    rejected: usize,
    listed: usize,
    rows: &'a [Rejected],
}

/// A chunk from the decoding thread.
struct Chunk {
    readings: Vec<Reading>,
    rejected: Vec<Rejected>,
    /// Records of the object done once this chunk is written.
    end: u64,
    /// Whether the object ended with this chunk.
    last: bool,
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
    for obj in objects_of(event).map_err(ImportError::Event)? {
        if obj.key.starts_with(QUARANTINE_PREFIX) {
            report.skipped += 1;
            continue;
        }
        let target = if obj.key.starts_with(RESUME_PREFIX) {
            let bytes = state
                .objects
                .get_small(&obj.bucket, &obj.key, 64 * 1024)
                .await?;
            serde_json::from_slice::<ObjectRef>(&bytes).map_err(|e| {
                ImportError::Event(format!(
                    "resume marker s3://{}/{}: {e}",
                    obj.bucket, obj.key
                ))
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
    let (reader, _, etag) = match state
        .objects
        .open_if(&obj.bucket, &obj.key, obj.etag.as_deref())
        .await
    {
        Ok(o) => o,
        Err(e) if obj.etag.is_some() && e.to_string().contains("PreconditionFailed") => {
            // Replaced since the import began: the new version's own event imports it.
            tracing::warn!(object = %name, "object replaced during a resumed import; stopping");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(2);
    let skip = obj.skip;
    let file = name.clone();
    let decoding = tokio::task::spawn_blocking(move || -> Result<(), String> {
        use std::io::BufRead;
        let mut input = std::io::BufReader::with_capacity(256 * 1024, reader);
        let head = input
            .fill_buf()
            .map_err(|e| format!("cannot read {file}: {e}"))?;
        let format = detect(&file, head)?;
        let mut options = DecodeOptions::new(&file);
        options.received_at = chrono::Utc::now();
        let mut chunk = Chunk {
            readings: Vec::with_capacity(CHUNK),
            rejected: Vec::new(),
            end: skip,
            last: false,
        };
        let mut n = 0u64;
        for item in decoder(format, input, options) {
            n += 1;
            if n <= skip {
                continue;
            }
            match item {
                Ok(r) => chunk.readings.push(r),
                Err(e) if e.is_fatal() => return Err(e.to_string()),
                Err(e) => chunk.rejected.push(e),
            }
            chunk.end = n;
            if chunk.readings.len() + chunk.rejected.len() >= CHUNK {
                let next = Chunk {
                    readings: Vec::with_capacity(CHUNK),
                    rejected: Vec::new(),
                    end: n,
                    last: false,
                };
                if tx
                    .blocking_send(std::mem::replace(&mut chunk, next))
                    .is_err()
                {
                    return Ok(()); // the writer stopped: a resume point was reached
                }
            }
        }
        chunk.last = true;
        let _ = tx.blocking_send(chunk);
        Ok(())
    });

    let mut rejected: Vec<Rejected> = Vec::new();
    let mut rejected_total = 0usize;
    let mut done = obj.skip;
    let mut finished = false;
    let mut retry_later: Vec<String> = Vec::new();
    while let Some(chunk) = rx.recv().await {
        let written = write_all(&*state.history, &chunk.readings, WRITE_CONCURRENCY).await?;
        report.readings += written.written;
        for f in written.failures {
            if f.retryable {
                retry_later.push(f.reason);
                continue;
            }
            let r = &chunk.readings[f.index];
            rejected_total += 1;
            if rejected.len() < MAX_REPORTED {
                rejected.push(Rejected {
                    file: Arc::from(name.as_str()),
                    line: 0,
                    field: None,
                    reason: format!("not stored: {}", f.reason),
                    raw: serde_json::to_string(r).unwrap_or_default(),
                });
            }
        }
        rejected_total += chunk.rejected.len();
        let room = MAX_REPORTED.saturating_sub(rejected.len());
        rejected.extend(chunk.rejected.into_iter().take(room));
        done = chunk.end;
        if chunk.last {
            finished = true;
            break;
        }
        if budget.exhausted(done - obj.skip) {
            break;
        }
    }
    drop(rx);
    let decoded = decoding
        .await
        .map_err(|e| ImportError::Event(format!("the decoder of {name} panicked: {e}")))?;
    if let Err(fatal) = decoded {
        // The object as a whole is unreadable (an unknown format): that is its report.
        rejected_total += 1;
        rejected.push(Rejected {
            file: Arc::from(name.as_str()),
            line: 0,
            field: None,
            reason: fatal,
            raw: String::new(),
        });
        finished = true;
    }
    if let Some(first) = retry_later.first() {
        return Err(ImportError::NotStored {
            bucket: obj.bucket.clone(),
            key: obj.key.clone(),
            failed: retry_later.len(),
            first: first.clone(),
        });
    }
    report.rejected += rejected_total;
    if rejected_total > 0 {
        let key = if obj.part == 0 {
            quarantine_key(&obj.key)
        } else {
            format!(
                "{QUARANTINE_PREFIX}{}.part-{}.errors.json",
                obj.key, obj.part
            )
        };
        let body = serde_json::to_vec_pretty(&QuarantineReport {
            object: name.clone(),
            etag: etag.as_deref(),
            part: obj.part,
            first_record: obj.skip,
            rejected: rejected_total,
            listed: rejected.len(),
            rows: &rejected,
        })
        .map_err(|e| ImportError::Event(e.to_string()))?;
        state.objects.put_json(&obj.bucket, &key, body).await?;
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
        let body = serde_json::to_vec(&next).map_err(|e| ImportError::Event(e.to_string()))?;
        state.objects.put_json(&obj.bucket, &marker, body).await?;
        report.resumed += 1;
        tracing::info!(object = %name, done, part = obj.part, "time is short; the rest continues from a resume marker");
    }
    tracing::info!(object = %name, readings = report.readings, rejected = rejected_total, finished, "imported");
    Ok(())
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
