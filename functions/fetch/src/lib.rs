//! Lambda **fetch**: on an SQS batch of fetch jobs (ours, or seed 003's
//! `{"identifiers": [...]}`), collects every job's registry entries from their sources (SST
//! Cloud, HTTP JSON) concurrently, writes the readings of the whole batch to the history store
//! together (fuller requests cost fewer Timestream write units) and future points to the forecast
//! store, and answers `batchItemFailures` naming exactly the jobs that failed, so SQS retries
//! only those and its dead-letter queue keeps what keeps failing.
//!
//! A job fails when its body is not a job, an entry's source is missing or fails, or one of its
//! readings was refused for a reason that a retry may cure (throttling). Readings a store refuses
//! for good, and records a source answers but cannot be readings, are logged one by one with the
//! reason (retrying would not change them).
//!
//! Each batch writes one metric line (`meter_lambda::metrics`): readings stored, records and
//! readings rejected for good, jobs answered as failures, and the SDK's retries.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use meter_core::collect::{collect_job, CollectError, Collected, FetchJob};
use meter_core::contract::cloud::{self as names, ops};
use meter_core::ports::{write_all, MeterRegistry, ReadingWriter, SecretStore};
use meter_core::Reading;
use meter_lambda::metrics::{Counts, Emitter};
use meter_lambda::{ConfigError, Env, History, HistoryConfig};
use meter_sources::http_json::EnvLookup;
use meter_sources::Sources;

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The registry table.
    pub registry_table: String,
    /// The forecasts table.
    pub forecasts_table: String,
    /// The history store.
    pub history: HistoryConfig,
}

impl Config {
    /// Reads `REGISTRY_TABLE`, `FORECASTS_TABLE` and the history store's variables (the
    /// sources read their own, such as `SST_SECRET_ID`, when built).
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            registry_table: env.required(names::ENV_REGISTRY_TABLE)?,
            forecasts_table: env.required(names::ENV_FORECASTS_TABLE)?,
            history: HistoryConfig::from_env(env)?,
        })
    }
}

/// The clients and sources, built once per cold start.
#[allow(missing_debug_implementations)] // reason: the ports are not Debug
pub struct Fetch {
    registry: Arc<dyn MeterRegistry>,
    sources: Sources,
    history: Arc<dyn ReadingWriter>,
    forecasts: Arc<dyn ReadingWriter>,
    metrics: Emitter,
}

/// Write calls in flight per store.
const WRITE_CONCURRENCY: usize = 4;

impl Fetch {
    /// Clients for the configured tables and the sources `env` configures. No request is sent;
    /// secrets are fetched when a source first needs them.
    pub fn new(sdk: &aws_config::SdkConfig, config: &Config, env: EnvLookup) -> Self {
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        let history = History::new(sdk, &config.history);
        let secrets: Arc<dyn SecretStore> = Arc::new(meter_aws::AwsSecrets::new(sdk));
        let (sources, notes) =
            meter_sources::from_env(env, history.reader.clone(), || Some(secrets.clone()));
        for n in notes {
            tracing::info!(note = %n, "source not configured");
        }
        Self::with_parts(
            Arc::new(meter_store_dynamodb::DynamoRegistry::new(
                ddb.clone(),
                &config.registry_table,
            )),
            sources,
            history.writer,
            Arc::new(meter_store_dynamodb::DynamoForecasts::new(
                ddb,
                &config.forecasts_table,
            )),
        )
    }

    /// The same over given parts.
    pub fn with_parts(
        registry: Arc<dyn MeterRegistry>,
        sources: Sources,
        history: Arc<dyn ReadingWriter>,
        forecasts: Arc<dyn ReadingWriter>,
    ) -> Self {
        Self {
            registry,
            sources,
            history,
            forecasts,
            metrics: Emitter::lambda("fetch"),
        }
    }

    /// The same, with the metric lines going to `metrics` instead of stdout.
    pub fn with_metrics(self, metrics: Emitter) -> Self {
        Self { metrics, ..self }
    }

    /// Runs one queued job.
    async fn run(&self, body: &str, now: DateTime<Utc>) -> Result<Collected, CollectError> {
        let job = FetchJob::parse(body)?;
        let c = collect_job(&job, &*self.registry, &self.sources, now).await?;
        for r in &c.rejected {
            tracing::warn!(rejected = %r, "a source answered a record that is not a reading");
        }
        Ok(c)
    }
}

/// One message's readings, tagged with the message they came from.
fn tagged(
    ok: &[(usize, Collected)],
    pick: fn(&Collected) -> &Vec<Reading>,
) -> (Vec<Reading>, Vec<usize>) {
    let mut readings = Vec::new();
    let mut owner = Vec::new();
    for (msg, c) in ok {
        readings.extend(pick(c).iter().cloned());
        owner.extend(std::iter::repeat_n(*msg, pick(c).len()));
    }
    (readings, owner)
}

/// Writes one store's share of the batch, marking the messages to retry; returns the readings
/// written and those refused for good.
async fn write(
    store: &dyn ReadingWriter,
    what: &str,
    readings: &[Reading],
    owner: &[usize],
    failed: &mut [bool],
) -> (usize, usize) {
    if readings.is_empty() {
        return (0, 0);
    }
    match write_all(store, readings, WRITE_CONCURRENCY).await {
        Ok(report) => {
            let mut refused = 0;
            for f in &report.failures {
                if f.retryable {
                    failed[owner[f.index]] = true;
                } else {
                    refused += 1;
                    tracing::error!(store = what, reading = %serde_json::to_string(&readings[f.index]).unwrap_or_default(), reason = %f.reason, "a reading was refused for good");
                }
            }
            (report.written, refused)
        }
        Err(e) => {
            tracing::error!(store = what, error = %e, "the store refused the batch");
            for &m in owner {
                failed[m] = true;
            }
            (0, 0)
        }
    }
}

/// Handles one SQS batch; the response lists the message ids to retry.
pub async fn handle(state: &Fetch, event: SqsEvent, now: DateTime<Utc>) -> SqsBatchResponse {
    let (response, _) = state
        .metrics
        .measure(batch(state, event, now), |(_, counts)| counts.clone())
        .await;
    response
}

async fn batch(state: &Fetch, event: SqsEvent, now: DateTime<Utc>) -> (SqsBatchResponse, Counts) {
    let messages: Vec<&SqsMessage> = event.records.iter().collect();
    let results = join_all(
        messages
            .iter()
            .map(|m| state.run(m.body.as_deref().unwrap_or_default(), now)),
    )
    .await;
    let mut failed = vec![false; messages.len()];
    let mut ok: Vec<(usize, Collected)> = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(c) => ok.push((i, c)),
            Err(reason) => {
                // Both kinds go back to the queue: a retryable one to succeed later, a
                // permanent one to reach the dead-letter queue after its receives, where it is
                // kept for a person to read instead of being dropped here.
                tracing::error!(message = messages[i].message_id.as_deref().unwrap_or("?"), %reason, retryable = reason.is_retryable(), "fetch job failed");
                failed[i] = true;
            }
        }
    }
    let (history, h_owner) = tagged(&ok, |c| &c.readings);
    let (forecasts, f_owner) = tagged(&ok, |c| &c.forecasts);
    let unreadable: usize = ok.iter().map(|(_, c)| c.rejected.len()).sum();
    let (written, refused) =
        write(&*state.history, "history", &history, &h_owner, &mut failed).await;
    let (predicted, refused_forecasts) = write(
        &*state.forecasts,
        "forecasts",
        &forecasts,
        &f_owner,
        &mut failed,
    )
    .await;
    let mut response = SqsBatchResponse::default();
    for (m, _) in messages.iter().zip(&failed).filter(|(_, f)| **f) {
        match &m.message_id {
            Some(id) => response.add_failure(id.clone()),
            None => tracing::error!("a failed message has no id; SQS cannot be told to retry it"),
        }
    }
    tracing::info!(
        messages = messages.len(),
        failed = response.batch_item_failures.len(),
        readings = written,
        forecasts = predicted,
        "fetch batch done"
    );
    let counts = vec![
        (ops::READINGS_STORED, written as u64),
        (
            ops::ROWS_REJECTED,
            (unreadable + refused + refused_forecasts) as u64,
        ),
        (
            ops::BATCH_ITEM_FAILURES,
            response.batch_item_failures.len() as u64,
        ),
    ];
    (response, counts)
}
