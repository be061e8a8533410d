//! Lambda **stream-metrics**: on DynamoDB stream batches from the counters table, turns each
//! record's old and new images into a delta of its (endpoint, hour) counter, sums them, and
//! publishes one CloudWatch value per endpoint and hour (seed 002's layout), up to 1,000 to a
//! PutMetricData call. Records whose values could not be published are answered as
//! `batchItemFailures` by sequence number, so Lambda retries from the first of them.
//!
//! A batch is at most 100 records (the template's batch size), so its sums fit one
//! PutMetricData call, which succeeds or fails whole: a retry never publishes a delta twice.
//! Records that are not counter items are logged and skipped (retrying cannot change them).
//!
//! Each batch writes one metric line (`meter_lambda::metrics`): records skipped, records
//! answered as failures, and the SDK's retries.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use meter_aws_io::CloudWatchMetrics;
use meter_core::contract::cloud::{self as names, ops};
use meter_core::ports::MetricPublisher;
use meter_core::press_counts::{hourly_sums, CounterChange};
use meter_lambda::metrics::Emitter;
use meter_lambda::Env;
use serde_json::Value;

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The metric namespace (`METRIC_NAMESPACE`, seed 002's `MbedButtonPressHour` by default).
    pub namespace: String,
}

impl Config {
    /// Reads `METRIC_NAMESPACE`.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Self {
        Self {
            namespace: env
                .optional(names::ENV_METRIC_NAMESPACE)
                .unwrap_or_else(|| names::DEFAULT_METRIC_NAMESPACE.to_owned()),
        }
    }
}

/// The client, built once per cold start.
#[allow(missing_debug_implementations)] // reason: the port is not Debug
pub struct StreamMetrics {
    metrics: Arc<dyn MetricPublisher>,
    namespace: String,
    ops: Emitter,
}

impl StreamMetrics {
    /// A CloudWatch client (no request is sent).
    pub fn new(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        Self::with_parts(
            Arc::new(CloudWatchMetrics::new(aws_sdk_cloudwatch::Client::new(sdk))),
            config,
        )
    }

    /// The same over a given publisher.
    pub fn with_parts(metrics: Arc<dyn MetricPublisher>, config: &Config) -> Self {
        Self {
            metrics,
            namespace: config.namespace.clone(),
            ops: Emitter::lambda("stream-metrics"),
        }
    }

    /// The same, with the function's own metric lines going to `ops` instead of stdout.
    pub fn with_metrics(self, ops: Emitter) -> Self {
        Self { ops, ..self }
    }
}

/// An image attribute in DynamoDB JSON (`{"S": ...}`, `{"N": ...}`).
fn attr<'a>(image: &'a Value, name: &str, ty: &str) -> Option<&'a str> {
    image.get(name)?.get(ty)?.as_str()
}

/// Why a stream record carries no counter change. Permanent: the record reads the same on retry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    /// The count attribute is not a number.
    #[error("{attribute} {text:?} is not a number")]
    NotANumber {
        /// The attribute.
        attribute: &'static str,
        /// What it holds.
        text: String,
    },
    /// A key attribute is missing from the keys and both images.
    #[error("the record has no {0} key")]
    MissingKey(&'static str),
}

/// The counter change a stream record carries.
pub fn change_of(record: &EventRecord) -> Result<CounterChange, RecordError> {
    fn json<T: serde::Serialize>(item: &T) -> Value {
        serde_json::to_value(item).unwrap_or(Value::Null)
    }
    let keys = json(&record.change.keys);
    let (old, new) = (
        json(&record.change.old_image),
        json(&record.change.new_image),
    );
    let count = |image: &Value| -> Result<Option<f64>, RecordError> {
        match attr(image, names::COUNTERS_COUNT, "N") {
            Some(n) => n.parse().map(Some).map_err(|_| RecordError::NotANumber {
                attribute: names::COUNTERS_COUNT,
                text: n.to_owned(),
            }),
            None => Ok(None),
        }
    };
    let key = |name: &'static str| {
        attr(&keys, name, "S")
            .or_else(|| attr(&new, name, "S"))
            .or_else(|| attr(&old, name, "S"))
            .map(str::to_owned)
            .ok_or(RecordError::MissingKey(name))
    };
    let removed = record.event_name == "REMOVE";
    Ok(CounterChange {
        endpoint: key(names::COUNTERS_PK)?,
        event_hour: key(names::COUNTERS_SK)?,
        old: count(&old)?,
        new: if removed { None } else { count(&new)? },
    })
}

fn failure(seq: &str) -> DynamoDbBatchItemFailure {
    let mut f = DynamoDbBatchItemFailure::default();
    f.item_identifier = Some(seq.to_owned());
    f
}

/// Handles one stream batch; the response names the records to retry.
pub async fn handle(state: &StreamMetrics, event: Event) -> DynamoDbEventResponse {
    let (response, _) = state
        .ops
        .measure(batch(state, event), |(response, skipped)| {
            vec![
                (ops::ROWS_REJECTED, *skipped),
                (
                    ops::BATCH_ITEM_FAILURES,
                    response.batch_item_failures.len() as u64,
                ),
            ]
        })
        .await;
    response
}

/// One batch: the response, and the records skipped as not counters.
async fn batch(state: &StreamMetrics, event: Event) -> (DynamoDbEventResponse, u64) {
    let mut skipped = 0;
    let mut changes = Vec::with_capacity(event.records.len());
    let mut positions = Vec::with_capacity(event.records.len());
    for (i, r) in event.records.iter().enumerate() {
        match change_of(r) {
            Ok(c) => {
                changes.push(c);
                positions.push(i);
            }
            Err(reason) => {
                skipped += 1;
                tracing::error!(event_id = %r.event_id, %reason, "skipped a record that is not a counter")
            }
        }
    }
    let mut failed = vec![false; event.records.len()];
    match hourly_sums(&state.namespace, &changes) {
        Ok(sums) => {
            let data: Vec<_> = sums.iter().map(|s| s.datum.clone()).collect();
            let failed_data: Vec<usize> = match state.metrics.publish(&data).await {
                Ok(report) => {
                    for f in &report.failures {
                        tracing::error!(metric = %data[f.index].name, reason = %f.reason, "a metric value was not published");
                    }
                    report.failures.iter().map(|f| f.index).collect()
                }
                Err(e) => {
                    tracing::error!(error = %e, "publishing the metrics failed");
                    (0..data.len()).collect()
                }
            };
            for d in failed_data {
                for &c in &sums[d].sources {
                    failed[positions[c]] = true;
                }
            }
            tracing::info!(
                records = event.records.len(),
                values = data.len(),
                "published hourly press counts"
            );
        }
        Err(reason) => {
            tracing::error!(%reason, "a counter's hour cannot be read");
            failed.iter_mut().for_each(|f| *f = true);
        }
    }
    let mut response = DynamoDbEventResponse::default();
    for (r, _) in event.records.iter().zip(&failed).filter(|(_, f)| **f) {
        match &r.change.sequence_number {
            Some(seq) => response.batch_item_failures.push(failure(seq)),
            None => {
                tracing::error!(event_id = %r.event_id, "a failed record has no sequence number")
            }
        }
    }
    (response, skipped)
}
