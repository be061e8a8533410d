//! Lambda **ingest**: the AWS end of MQTT push. Devices publish to AWS IoT Core; the stack's
//! topic rule puts each message in the ingest queue as `{"topic", "payload" (base64),
//! "received" (epoch ms)}` (see [`meter_core::contract::cloud::iot`]); this function takes the
//! queue in batches and reads every message with the same decoders as `meter serve --mqtt`
//! (mapping rule, bare number, JSON point or array, line protocol), through the one ingest
//! pipeline, into the history store.
//!
//! What a message becomes:
//! - its readings are stored (idempotently: a redelivered message stores nothing twice,
//!   except a bare number, which is stamped with the time IoT Core received it, so even that
//!   repeats its time);
//! - what cannot be read (a bad payload, a refused unit) is kept in the bucket's quarantine
//!   (`quarantine/mqtt/`) with its topic and reason, and the message is acknowledged: a
//!   retry would not change it, and it must not block the queue;
//! - a message whose readings the store could not take now is answered in
//!   `batchItemFailures`, so SQS delivers it again (and, after its receives, keeps it in the
//!   dead-letter queue). So is every message with rejections when the quarantine cannot be
//!   written.
//!
//! Unit and kind, when a message does not say: the series already stored (looked up once per
//! meter of the batch, before decoding), else a gauge with no unit.
//!
//! Each batch writes one metric line: readings stored, records rejected, messages answered as
//! failures.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use meter_core::contract::cloud::{self as names, iot, ops};
use meter_core::decode::mqtt::{decode_message, Mapping, MappingSpec, DEFAULT_SOURCE};
use meter_core::decode::DecodeOptions;
use meter_core::ingest::{Pipeline, Rejection, Report, UnitId};
use meter_core::ports::{find_series, write_all, Quarantine, ReadingReader, ReadingWriter};
use meter_core::MeterId;
use meter_lambda::metrics::{Counts, Emitter};
use meter_lambda::{ConfigError, Env, History, HistoryConfig};
use serde_json::Value;

/// Readings per write hand-over: a multiple of DynamoDB's 25 and Timestream's 100.
const CHUNK: usize = 2_500;
/// Store calls in flight (writes, and catalogue lookups before decoding).
const CONCURRENCY: usize = 4;

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The history store.
    pub history: HistoryConfig,
    /// The bucket whose quarantine prefix keeps rejected messages.
    pub quarantine_bucket: String,
    /// The mapping rules, when configured.
    pub mapping: Option<Mapping>,
}

impl Config {
    /// Reads the history store's variables, `QUARANTINE_BUCKET` and the optional
    /// `MQTT_MAPPING` (the TOML text of a mapping file).
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let mapping = match env.optional(names::ENV_MQTT_MAPPING) {
            None => None,
            Some(text) => Some(parse_mapping(&text).map_err(|why| ConfigError::Malformed {
                name: names::ENV_MQTT_MAPPING,
                why,
            })?),
        };
        Ok(Self {
            history: HistoryConfig::from_env(env)?,
            quarantine_bucket: env.required(names::ENV_QUARANTINE_BUCKET)?,
            mapping,
        })
    }
}

/// A mapping from the TOML text `meter serve --mqtt-map` reads from a file.
pub fn parse_mapping(text: &str) -> Result<Mapping, String> {
    let spec: MappingSpec = toml::from_str(text).map_err(|e| e.to_string())?;
    Mapping::new(spec).map_err(|e| e.to_string())
}

/// The clients, built once per cold start.
#[allow(missing_debug_implementations)] // reason: the ports are not Debug
pub struct Ingest {
    writer: Arc<dyn ReadingWriter>,
    reader: Arc<dyn ReadingReader>,
    quarantine: Arc<dyn Quarantine>,
    mapping: Option<Arc<Mapping>>,
    metrics: Emitter,
}

impl Ingest {
    /// Clients for the configured store and bucket (no request is sent).
    pub fn new(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        // A batch is a bulk write: DynamoDB's stored rollups are brought up to date once per
        // series touched by the batch, not once per message.
        let history = History::bulk(sdk, &config.history);
        let objects = Arc::new(meter_aws_io::S3Objects::from_sdk(sdk));
        Self::with_parts(
            history.writer,
            history.reader,
            Arc::new(meter_aws_io::ObjectQuarantine::new(
                objects,
                &config.quarantine_bucket,
                names::MQTT_QUARANTINE_PREFIX,
            )),
            config.mapping.clone(),
        )
    }

    /// The same over given parts.
    pub fn with_parts(
        writer: Arc<dyn ReadingWriter>,
        reader: Arc<dyn ReadingReader>,
        quarantine: Arc<dyn Quarantine>,
        mapping: Option<Mapping>,
    ) -> Self {
        Self {
            writer,
            reader,
            quarantine,
            mapping: mapping.map(Arc::new),
            metrics: Emitter::lambda("ingest"),
        }
    }

    /// The same, with the metric lines going to `metrics` instead of stdout.
    pub fn with_metrics(self, metrics: Emitter) -> Self {
        Self { metrics, ..self }
    }
}

/// One queue message as the topic rule writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMessage {
    /// The MQTT topic.
    pub topic: String,
    /// The payload as published.
    pub payload: Vec<u8>,
    /// When IoT Core received it.
    pub received: Option<DateTime<Utc>>,
}

/// Reads a queue message body written by the topic rule.
pub fn parse_body(body: &str) -> Result<RuleMessage, String> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| format!("the message is not the topic rule's JSON: {e}"))?;
    let topic = v
        .get(iot::TOPIC)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("the message has no {:?} string", iot::TOPIC))?;
    let payload = v
        .get(iot::PAYLOAD)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the message has no {:?} string", iot::PAYLOAD))?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| format!("the {:?} is not base64: {e}", iot::PAYLOAD))?;
    let received = v
        .get(iot::RECEIVED)
        .and_then(Value::as_i64)
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
    Ok(RuleMessage {
        topic: topic.to_owned(),
        payload,
        received,
    })
}

/// Handles one SQS batch; the response lists the messages to deliver again.
pub async fn handle(state: &Ingest, event: SqsEvent, now: DateTime<Utc>) -> SqsBatchResponse {
    let (response, _) = state
        .metrics
        .measure(batch(state, event, now), |(_, counts)| counts.clone())
        .await;
    response
}

async fn batch(state: &Ingest, event: SqsEvent, now: DateTime<Utc>) -> (SqsBatchResponse, Counts) {
    let ids: Vec<Option<String>> = event.records.iter().map(|m| m.message_id.clone()).collect();
    let mut rejected: Vec<Rejection> = Vec::new();
    // Each message's own rejections, by message: the quarantine's failure fails exactly them.
    let mut rejecting: BTreeSet<usize> = BTreeSet::new();
    let mut messages: Vec<(usize, RuleMessage)> = Vec::new();
    for (i, m) in event.records.iter().enumerate() {
        let name = format!("sqs message {}", ids[i].as_deref().unwrap_or("?"));
        match parse_body(m.body.as_deref().unwrap_or_default()) {
            Ok(msg) => messages.push((i, msg)),
            Err(reason) => {
                let raw = m.body.as_deref().unwrap_or_default();
                rejected.push(Rejection::unreadable(&Arc::from(name), 1, reason, raw));
                rejecting.insert(i);
            }
        }
    }

    let options = |msg: &RuleMessage| {
        let mut o = DecodeOptions::new(DEFAULT_SOURCE);
        o.received_at = msg.received.unwrap_or(now);
        o
    };
    let mapping = state.mapping.as_deref();
    let mut failed = vec![false; ids.len()];

    // The stored series of the batch's meters, for messages that leave out unit or kind: a
    // first reading pass names the meters, and the catalogue is asked once for each.
    let meters: BTreeSet<MeterId> = messages
        .iter()
        .flat_map(|(_, m)| decode_message(&m.topic, &m.payload, &options(m), mapping))
        .filter_map(Result::ok)
        .map(|r| r.meter().clone())
        .collect();
    let known = match find_series(&*state.reader, meters, CONCURRENCY).await {
        Ok(found) => Some(found.into_known()),
        Err(e) => {
            // Without the catalogue a reading that leaves out its unit could be refused for a
            // conflict it does not have: deliver the batch again instead.
            tracing::error!(error = %e, "cannot read the series catalogue; the batch is retried");
            return respond(&ids, &vec![true; ids.len()], 0, 0);
        }
    };

    let mut pipeline = Pipeline::new(CHUNK);
    let mut units: Vec<(UnitId, usize)> = Vec::new();
    let mut batches = Vec::new();
    for (i, msg) in &messages {
        let unit = pipeline.begin(&msg.topic, 0);
        units.push((unit, *i));
        let mut o = options(msg);
        o.known = known.clone();
        let mut decoder = decode_message(&msg.topic, &msg.payload, &o, mapping);
        let _ = pipeline.feed(unit, &mut decoder, &mut |b| {
            batches.push(b);
            Ok::<(), ()>(())
        });
        pipeline.end(unit);
    }
    batches.extend(pipeline.flush());
    let message_of = |u: UnitId| units.iter().find(|(id, _)| *id == u).map(|(_, i)| *i);

    let mut report = Report::new();
    for b in batches {
        let result = if b.readings().is_empty() {
            Ok(Default::default())
        } else {
            write_all(&*state.writer, b.readings(), CONCURRENCY).await
        };
        let settled = b.settle(result);
        for (u, r) in settled.unit_rejections() {
            let Some(i) = message_of(u) else { continue };
            if r.retryable {
                failed[i] = true;
            } else {
                rejecting.insert(i);
                rejected.push(r.clone());
            }
        }
        report.add(settled);
    }
    if let Err(e) = state.writer.flush().await {
        // The readings landed but not their rollups: the redelivery writes them again, which
        // recomputes them.
        tracing::error!(error = %e, "stored rollups not brought up to date; the batch is retried");
        return respond(&ids, &vec![true; ids.len()], 0, rejected.len());
    }
    if !rejected.is_empty() {
        for r in &rejected {
            tracing::warn!(topic = %r.file, line = r.line, field = r.field.as_deref().unwrap_or(""), reason = %r.reason, "message quarantined");
        }
        if let Err(e) = state.quarantine.keep(&rejected).await {
            tracing::error!(error = %e, rejected = rejected.len(), "cannot write the quarantine; those messages are retried");
            for &i in &rejecting {
                failed[i] = true;
            }
        }
    }
    let stored = report.readings_stored as usize;
    tracing::info!(
        messages = ids.len(),
        readings = stored,
        rejected = rejected.len(),
        "ingest batch done"
    );
    respond(&ids, &failed, stored, rejected.len())
}

fn respond(
    ids: &[Option<String>],
    failed: &[bool],
    stored: usize,
    rejected: usize,
) -> (SqsBatchResponse, Counts) {
    let mut response = SqsBatchResponse::default();
    for (id, _) in ids.iter().zip(failed).filter(|(_, f)| **f) {
        match id {
            Some(id) => response.add_failure(id.clone()),
            None => tracing::error!("a failed message has no id; SQS cannot be told to retry it"),
        }
    }
    let counts = vec![
        (ops::READINGS_STORED, stored as u64),
        (ops::ROWS_REJECTED, rejected as u64),
        (
            ops::BATCH_ITEM_FAILURES,
            response.batch_item_failures.len() as u64,
        ),
    ];
    (response, counts)
}
