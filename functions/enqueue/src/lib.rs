//! Lambda **enqueue**: on a schedule (an EventBridge Scheduler invocation, or the older
//! scheduled-rule event), reads every page of the meter registry and sends one fetch job per
//! SST Cloud entry or group of identifiers to the fetch queue, ten to a SendMessageBatch.
//!
//! The event's content does not matter (a schedule carries no work); it is only logged.
//!
//! A failed run writes a metric line (`meter_lambda::metrics`); so does one the SDK retried.

use std::sync::Arc;

use meter_aws_io::SqsJobs;
use meter_core::collect::{plan_jobs, JOB_GROUP};
use meter_core::contract::cloud::{self as names, ops};
use meter_core::ports::{MeterRegistry, StoreError};
use meter_lambda::metrics::Emitter;
use meter_lambda::{ConfigError, Env};
use serde::Serialize;

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The registry table.
    pub registry_table: String,
    /// The fetch queue.
    pub queue_url: String,
}

impl Config {
    /// Reads `REGISTRY_TABLE` and `FETCH_QUEUE_URL`.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            registry_table: env.required(names::ENV_REGISTRY_TABLE)?,
            queue_url: env.required(names::ENV_FETCH_QUEUE_URL)?,
        })
    }
}

/// The clients, built once per cold start.
#[allow(missing_debug_implementations)] // reason: the ports are not Debug
pub struct Enqueue {
    registry: Arc<dyn MeterRegistry>,
    jobs: SqsJobs,
    metrics: Emitter,
}

impl Enqueue {
    /// Clients for the configured table and queue (no request is sent).
    pub fn new(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        Self::with_clients(
            aws_sdk_dynamodb::Client::new(sdk),
            aws_sdk_sqs::Client::new(sdk),
            config,
        )
    }

    /// The same over given clients (tests attach interceptors).
    pub fn with_clients(
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
        config: &Config,
    ) -> Self {
        Self {
            registry: Arc::new(meter_store_dynamodb::DynamoRegistry::new(
                dynamodb,
                &config.registry_table,
            )),
            jobs: SqsJobs::new(sqs, &config.queue_url),
            metrics: Emitter::lambda("enqueue"),
        }
    }

    /// The same, with the metric lines going to `metrics` instead of stdout.
    pub fn with_metrics(self, metrics: Emitter) -> Self {
        Self { metrics, ..self }
    }
}

/// What one run did (the function's result, and its log line).
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    /// Registry entries read.
    pub entries: usize,
    /// Entries switched off.
    pub disabled: usize,
    /// Jobs planned.
    pub jobs: usize,
    /// Jobs queued.
    pub sent: usize,
}

/// The handler's failure: the registry could not be read, or some jobs were not queued (the
/// schedule's retry policy runs the function again; duplicate jobs are harmless because
/// writes are idempotent).
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// Reading the registry failed.
    #[error("reading the registry failed: {0}")]
    Registry(#[source] StoreError),
    /// Sending failed as a whole.
    #[error("queueing the jobs failed: {0}")]
    Queue(#[source] StoreError),
    /// Some jobs were not queued.
    #[error("{failed} of {jobs} fetch jobs were not queued; first: {first}")]
    Partial {
        /// Jobs planned.
        jobs: usize,
        /// Jobs not queued.
        failed: usize,
        /// The first reason.
        first: String,
    },
}

/// Page size of the registry scan (DynamoDB caps a page at 1 MB anyway).
const PAGE: usize = 1000;

/// Queues the fetch jobs of every enabled registry entry.
pub async fn handle(state: &Enqueue, event: serde_json::Value) -> Result<Report, EnqueueError> {
    state
        .metrics
        .measure(enqueue(state, event), |r| {
            vec![(ops::INVOCATIONS_FAILED, u64::from(r.is_err()))]
        })
        .await
}

async fn enqueue(state: &Enqueue, event: serde_json::Value) -> Result<Report, EnqueueError> {
    let trigger = event
        .get("detail-type")
        .and_then(|v| v.as_str())
        .unwrap_or("direct invocation or EventBridge Scheduler");
    let mut report = Report::default();
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let page = state
            .registry
            .list(after.as_ref(), PAGE)
            .await
            .map_err(EnqueueError::Registry)?;
        report.entries += page.entries.len();
        entries.extend(page.entries);
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    report.disabled = entries.iter().filter(|e| !e.enabled).count();
    let jobs = plan_jobs(entries, JOB_GROUP);
    report.jobs = jobs.len();
    let sent = state.jobs.send(&jobs).await.map_err(EnqueueError::Queue)?;
    report.sent = sent.written;
    tracing::info!(
        trigger,
        entries = report.entries,
        jobs = report.jobs,
        sent = report.sent,
        "enqueued fetch jobs"
    );
    if let Some(first) = sent.failures.first() {
        for f in &sent.failures {
            tracing::error!(job = ?jobs.get(f.index), reason = %f.reason, "a fetch job was not queued");
        }
        return Err(EnqueueError::Partial {
            jobs: jobs.len(),
            failed: sent.failures.len(),
            first: first.reason.clone(),
        });
    }
    Ok(report)
}
