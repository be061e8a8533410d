//! Faults: the functions' handlers with every AWS call going through a fault-injecting proxy
//! (`meter_standins::fault_proxy`) that throttles, answers 500 and 503, cuts connections after
//! the work is done, and delays 20% of requests. Three suites, each counted back from the
//! emulated services with direct (unfaulted) reads:
//!
//! - import: a 100,000-row CSV object through the import handler (retried as Lambda retries
//!   an asynchronous invocation, then to the dead-letter queue);
//! - fetch: 1,000 registry entries enqueued and fetched from the series stand-in (failed jobs
//!   redelivered as SQS does, to the dead-letter queue after `maxReceiveCount`);
//! - webhook: 10,000 presses in Connector requests of 10 (a failed request resent as Connector
//!   does), then the counters stream through stream-metrics into CloudWatch.
//!
//! Prints each suite's figures (faults injected, sent, stored, duplicates, parked in a DLQ or
//! quarantine, lost) as a table; fails when anything is lost or duplicated. The handlers'
//! metric lines (`meter_lambda::metrics`) are captured and summed as CloudWatch would: the
//! suite also fails when they disagree with what it counted itself (retries the proxy saw,
//! jobs redelivered, invocations retried, requests resent). Runs only with `METER_E2E` set
//! (`scripts/reliability.sh faults`, and the test command).

// reason: a command-line run reports its figures on stdout.
#![allow(clippy::print_stdout)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use aws_config::SdkConfig;
use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{Timelike, Utc};
use e2e::deploy::Deployment;
use e2e::{call, lookup, receive, scan_all, sqs_event};
use infra::stack::ids;
use infra::HistoryStore;
use meter_core::contract::cloud::{self as names, ops};
use meter_lambda::metrics::{Captured, Emitter};
use meter_lambda::testing::function_url_request;
use meter_standins::fault_proxy::{FaultKind, FaultPlan, FaultProxy};
use serde_json::{json, Value};

const SHARE: f64 = 0.2;
/// The webhook suite: counters tables, and presses to each.
const SHARDS: usize = 100;
const PRESSES: usize = 100;

/// The warnings and errors the handlers log, as Lambda would collect them.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// The lines logged since the last call, and the first of them.
    fn take(&self) -> (usize, String) {
        let text = self
            .0
            .lock()
            .map(|mut b| String::from_utf8_lossy(&std::mem::take(&mut *b)).into_owned())
            .unwrap_or_default();
        let first = text.lines().next().unwrap_or_default();
        (text.lines().count(), first.chars().take(160).collect())
    }
}

/// A suite's figures with the log lines it caused.
fn with_logs(logs: &Logs, mut f: Figures) -> Figures {
    let (n, first) = logs.take();
    f.handled.push_str(&format!(
        "; {n} warning and error lines logged (first: {first})"
    ));
    f
}

/// One suite's figures.
#[derive(Debug, Default)]
struct Figures {
    suite: &'static str,
    requests: u64,
    faults: u64,
    sent: u64,
    stored: u64,
    duplicates: u64,
    parked: u64,
    lost: u64,
    handled: String,
    /// SDK retries the proxy saw (attempt 2 or later).
    proxy_retried: u64,
    /// AwsRetries summed from the metric lines (SDK retries and our adapters' resends).
    metric_retries: f64,
    /// The partial failures the metric lines report, described.
    metric_failures: String,
    /// Where the metric lines disagree with the suite's own counts.
    mismatches: Vec<String>,
}

/// The mismatches of lines that write a metric the contract does not list for their function
/// (the stack's alarms and dashboard would not see it).
fn unlisted(captured: &[&Captured]) -> Vec<String> {
    let mut out = Vec::new();
    for line in captured.iter().flat_map(|c| c.lines()) {
        let Ok(m) = meter_lambda::metrics::read(&line) else {
            continue; // reported by `sum`
        };
        let role = m.dimensions.first().map(|(_, v)| v.as_str()).unwrap_or("");
        for (name, _) in &m.values {
            let why = format!("{role} wrote {name}, which ops::WRITTEN_BY does not list");
            if !ops::writes(role, name) && !out.contains(&why) {
                out.push(why);
            }
        }
    }
    out
}

/// A metric's sum, or 0 with the unreadable line recorded as a mismatch.
fn sum(captured: &Captured, metric: &str, mismatches: &mut Vec<String>) -> f64 {
    captured.sum(metric).unwrap_or_else(|e| {
        mismatches.push(format!("unreadable metric line: {e}"));
        0.0
    })
}

/// The retries in the metric lines are at least the SDK retries the proxy saw (the rest are
/// our adapters' resends, invisible to it) and at most the faults that can cause a resend
/// (all but delays, plus the emulator's own server errors): none missed, none invented.
fn retries_bounded(proxy: &FaultProxy, metric_retries: f64, mismatches: &mut Vec<String>) {
    let c = proxy.counts();
    expect(
        mismatches,
        "retries",
        metric_retries,
        c.retried() as f64,
        true,
    );
    let resendable = c.total() - c.of(FaultKind::Delay) + c.upstream_errors();
    if metric_retries > resendable as f64 {
        mismatches.push(format!(
            "retries: metrics say {metric_retries}, more than the {resendable} faults and \
             emulator errors that could cause one"
        ));
    }
}

/// Records a mismatch unless `got` equals `want` (or, with `at_least`, is not below it).
fn expect(mismatches: &mut Vec<String>, what: &str, got: f64, want: f64, at_least: bool) {
    let ok = if at_least { got >= want } else { got == want };
    if !ok {
        let rel = if at_least { "at least " } else { "" };
        mismatches.push(format!("{what}: metrics say {got}, want {rel}{want}"));
    }
}

async fn deploy(sdk: &SdkConfig, stack: &str) -> anyhow::Result<Deployment> {
    Ok(Deployment::local(sdk, stack, HistoryStore::DynamoDb, None).await?)
}

/// The SDK configuration with every request through the proxy.
fn through(sdk: &SdkConfig, proxy: &FaultProxy) -> SdkConfig {
    // Without the environment's service configuration, which would put AWS_ENDPOINT_URL
    // (the emulator itself) back in front of this endpoint.
    // The SDK's default attempts (3) with shorter waits (AWS's start at 1 s): the suite checks
    // what is stored, not how long backoff takes, and must fit in CI.
    let retry = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(50))
        .with_max_backoff(Duration::from_secs(1));
    sdk.to_builder()
        .service_config(NoServiceConfig)
        .endpoint_url(proxy.url())
        .retry_config(retry)
        .build()
}

/// Service configuration that sets nothing.
#[derive(Debug)]
struct NoServiceConfig;

impl aws_types::service_config::LoadServiceConfig for NoServiceConfig {
    fn load_config(&self, _: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        None
    }
}

fn faults_line(proxy: &FaultProxy) -> String {
    let c = proxy.counts();
    format!(
        "{} throttled, {} 500, {} 503, {} cut, {} delayed; {} server errors of the emulator itself",
        c.of(FaultKind::Throttle),
        c.of(FaultKind::InternalError),
        c.of(FaultKind::Unavailable),
        c.of(FaultKind::Reset),
        c.of(FaultKind::Delay),
        c.upstream_errors()
    )
}

/// (distinct keys, items) of a table keyed by `pk`, `sk`; of the readings table, the
/// readings only.
async fn keys(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    (pk, sk): (&str, &str),
    readings: bool,
) -> anyhow::Result<(HashSet<(String, String)>, u64)> {
    let text = |v: Option<&aws_sdk_dynamodb::types::AttributeValue>| {
        v.and_then(|v| v.as_s().ok().or_else(|| v.as_n().ok()))
            .cloned()
            .unwrap_or_default()
    };
    // The readings table also holds its catalogue and stored rollups; those are not readings.
    let items: Vec<(String, String)> = scan_all(ddb, table)
        .await?
        .iter()
        .map(|i| (text(i.get(pk)), text(i.get(sk))))
        .filter(|(p, _)| !readings || meter_store_dynamodb::is_readings_partition(p))
        .collect();
    let n = items.len() as u64;
    Ok((items.into_iter().collect(), n))
}

/// 100,000 readings in one object through the import handler.
async fn import(sdk: &SdkConfig, endpoint: &str, tag: &str) -> anyhow::Result<Figures> {
    const METERS: usize = 100;
    const PER_METER: usize = 1_000;
    let dep = deploy(sdk, &format!("{tag}-import")).await?;
    let bucket = dep
        .reference(ids::IMPORT_BUCKET)
        .context("bucket")?
        .to_owned();
    let mut csv = String::from("meter,time,value,unit,measure,kind\n");
    for m in 0..METERS {
        for i in 0..PER_METER {
            csv.push_str(&format!(
                "m{m:03},{},{},L,volume,cumulative\n",
                (chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
                    + chrono::Duration::minutes(i as i64))
                .to_rfc3339(),
                1000 + i
            ));
        }
    }
    let key = "faults/readings.csv";
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    s3.put_object()
        .bucket(&bucket)
        .key(key)
        .body(csv.into_bytes().into())
        .send()
        .await?;

    let proxy = FaultProxy::start(
        endpoint,
        FaultPlan {
            share: SHARE,
            seed: 11,
        },
    )
    .await;
    let faulted = through(sdk, &proxy);
    let env = dep.function_env("import", &[])?;
    let (emitter, metrics) = Emitter::capture("import");
    let import =
        meter_fn_import::Import::new(&faulted, &meter_fn_import::Config::from_env(&lookup(&env))?)
            .with_metrics(emitter);
    let event = json!({"Records": [{"eventName": "ObjectCreated:Put", "eventSource": "aws:s3",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]});
    // Lambda runs an asynchronous invocation up to 3 times (the template's
    // MaximumRetryAttempts: 2), then sends the event to the dead-letter queue.
    let mut failures = Vec::new();
    let mut parked = 0;
    let mut report = None;
    for _ in 0..3 {
        let budget =
            meter_fn_import::Budget::Deadline(SystemTime::now() + Duration::from_secs(600));
        match meter_fn_import::handle(&import, &event, budget).await {
            Ok(r) => {
                report = Some(r);
                break;
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    if report.is_none() {
        aws_sdk_sqs::Client::new(sdk)
            .send_message()
            .queue_url(dep.reference("ImportDeadLetterQueue").context("dlq")?)
            .message_body(event.to_string())
            .send()
            .await?;
        parked = (METERS * PER_METER) as u64;
    }
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let (stored, items) = keys(
        &ddb,
        dep.reference(ids::READINGS_TABLE).context("readings")?,
        (names::READINGS_PK, names::READINGS_SK),
        true,
    )
    .await?;
    let sent = (METERS * PER_METER) as u64;
    let stored_n = stored.len() as u64;
    let rejected = report.as_ref().map_or(0, |r| r.rejected as u64);
    let mut mismatches = unlisted(&[&metrics]);
    let metric_retries = sum(&metrics, ops::AWS_RETRIES, &mut mismatches);
    let failed = sum(&metrics, ops::INVOCATIONS_FAILED, &mut mismatches);
    let stored_metric = sum(&metrics, ops::READINGS_STORED, &mut mismatches);
    let rejected_metric = sum(&metrics, ops::ROWS_REJECTED, &mut mismatches);
    expect(
        &mut mismatches,
        "failed invocations",
        failed,
        failures.len() as f64,
        false,
    );
    expect(
        &mut mismatches,
        "rows rejected",
        rejected_metric,
        rejected as f64,
        false,
    );
    // At least once: a failed invocation's readings are written again by its retry.
    expect(
        &mut mismatches,
        "readings stored",
        stored_metric,
        stored_n as f64,
        true,
    );
    retries_bounded(&proxy, metric_retries, &mut mismatches);
    Ok(Figures {
        suite: "import 100,000 readings",
        requests: proxy.counts().requests(),
        faults: proxy.counts().total(),
        sent,
        stored: stored_n,
        duplicates: items - stored_n,
        parked: parked + rejected,
        lost: sent.saturating_sub(stored_n + parked + rejected),
        handled: format!(
            "{}; {} failed invocations retried{}",
            faults_line(&proxy),
            failures.len(),
            failures
                .first()
                .map(|f| format!(" (first: {f})"))
                .unwrap_or_default()
        ),
        proxy_retried: proxy.counts().retried(),
        metric_retries,
        metric_failures: format!("{failed} InvocationsFailed, {stored_metric} ReadingsStored"),
        mismatches,
    })
}

/// 1,000 registry entries: enqueue, then fetch on every batch until the queue is empty.
async fn fetch(
    sdk: &SdkConfig,
    endpoint: &str,
    stack: &str,
    suite: &'static str,
    (entries_n, share, seed): (usize, f64, u64),
) -> anyhow::Result<Figures> {
    const POINTS: usize = 5;
    let dep = deploy(sdk, stack).await?;
    // A fixed "now": the points do not move with the clock while failed jobs are redelivered.
    let standin = meter_standins::SeriesStandIn::start(Some(Utc::now()), None).await;
    let registry = meter_store_dynamodb::DynamoRegistry::new(
        aws_sdk_dynamodb::Client::new(sdk),
        dep.reference(ids::REGISTRY_TABLE).context("registry")?,
    );
    let mut entries = Vec::new();
    for i in 0..entries_n {
        entries.push(serde_json::from_value(json!({
            "id": format!("series-{i:04}"), "source": "http-json", "enabled": true,
            "params": {"url": format!("{}/series/{{identifier}}?from={{from_ms}}&to={{to_ms}}&points={POINTS}", standin.url())}
        }))?);
    }
    registry.put_many(&entries).await?;

    let proxy = FaultProxy::start(endpoint, FaultPlan { share, seed }).await;
    let faulted = through(sdk, &proxy);
    let env = dep.function_env("enqueue", &[])?;
    let (emitter, enqueue_metrics) = Emitter::capture("enqueue");
    let enqueue = meter_fn_enqueue::Enqueue::new(
        &faulted,
        &meter_fn_enqueue::Config::from_env(&lookup(&env))?,
    )
    .with_metrics(emitter);
    // The schedule's retry policy runs enqueue again on an error (up to 3 retries); duplicate
    // jobs are harmless, writes being idempotent.
    let mut enqueue_errors = 0;
    for attempt in 0..4 {
        match meter_fn_enqueue::handle(&enqueue, json!({})).await {
            Ok(_) => break,
            Err(e) if attempt < 3 => {
                enqueue_errors += 1;
                println!("    enqueue failed, the schedule retries: {e}");
            }
            Err(e) => bail!("enqueue failed 4 times: {e}"),
        }
    }

    let env = Arc::new(dep.function_env("fetch", &[])?);
    let config = meter_fn_fetch::Config::from_env(&lookup(&env))?;
    let lookup_env = env.clone();
    let (emitter, fetch_metrics) = Emitter::capture("fetch");
    let fetch = meter_fn_fetch::Fetch::new(
        &faulted,
        &config,
        Arc::new(move |k: &str| lookup_env.get(k).cloned()),
    )
    .with_metrics(emitter);
    // The SQS poller (AWS's, so not faulted): receive, invoke, delete what succeeded; a failed
    // job becomes visible again and, past maxReceiveCount, moves to the dead-letter queue.
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue = dep.reference(ids::FETCH_QUEUE).context("queue")?.to_owned();
    let arn = dep
        .attribute(ids::FETCH_QUEUE, "Arn")
        .context("arn")?
        .to_owned();
    let mut item_failures = 0;
    let mut invocations = 0;
    loop {
        let messages = receive(&sqs, &queue).await?;
        if messages.is_empty() {
            break;
        }
        let event: SqsEvent = serde_json::from_value(sqs_event(&messages, &arn))?;
        invocations += 1;
        let response = meter_fn_fetch::handle(&fetch, event, Utc::now()).await;
        let failed: HashSet<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        item_failures += failed.len();
        for m in &messages {
            let handle = m.receipt_handle.clone().unwrap_or_default();
            if failed.contains(m.message_id.as_deref().unwrap_or_default()) {
                sqs.change_message_visibility()
                    .queue_url(&queue)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await?;
            } else {
                sqs.delete_message()
                    .queue_url(&queue)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
        }
    }
    let dlq = dep
        .reference(ids::FETCH_DEAD_LETTER_QUEUE)
        .context("dlq")?
        .to_owned();
    // The jobs SQS gave up on, by entry: recoverable by a redrive, so parked, not lost.
    let mut parked_entries = HashSet::new();
    let mut parked_jobs = 0u64;
    loop {
        let messages = receive(&sqs, &dlq).await?;
        if messages.is_empty() {
            break;
        }
        for m in messages {
            parked_jobs += 1;
            let job = meter_core::collect::FetchJob::parse(m.body().unwrap_or_default())
                .map_err(anyhow::Error::msg)?;
            parked_entries.extend(job.entries.iter().map(ToString::to_string));
        }
    }

    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let (history, history_items) = keys(
        &ddb,
        dep.reference(ids::READINGS_TABLE).context("readings")?,
        (names::READINGS_PK, names::READINGS_SK),
        true,
    )
    .await?;
    let (future, future_items) = keys(
        &ddb,
        dep.reference(ids::FORECASTS_TABLE).context("forecasts")?,
        (names::FORECASTS_PK, names::FORECASTS_SK),
        false,
    )
    .await?;
    // Points stored per entry: history series are `<meter>#<measure>`, forecasts `<meter>`.
    let mut per_entry: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for (pk, _) in history.iter().chain(future.iter()) {
        let entry = pk.split('#').next().unwrap_or_default().to_owned();
        *per_entry.entry(entry).or_default() += 1;
    }
    let want = (POINTS * 2) as u64;
    let (mut parked, mut lost) = (0u64, 0u64);
    for i in 0..entries_n {
        let id = format!("series-{i:04}");
        let missing = want.saturating_sub(per_entry.get(&id).copied().unwrap_or(0));
        if parked_entries.contains(&id) {
            parked += missing;
        } else {
            lost += missing;
        }
    }
    let sent = (entries_n * POINTS * 2) as u64;
    let stored = (history.len() + future.len()) as u64;
    let mut mismatches = unlisted(&[&enqueue_metrics, &fetch_metrics]);
    let metric_retries = sum(&enqueue_metrics, ops::AWS_RETRIES, &mut mismatches)
        + sum(&fetch_metrics, ops::AWS_RETRIES, &mut mismatches);
    let job_failures = sum(&fetch_metrics, ops::BATCH_ITEM_FAILURES, &mut mismatches);
    let enqueue_failed = sum(&enqueue_metrics, ops::INVOCATIONS_FAILED, &mut mismatches);
    expect(
        &mut mismatches,
        "fetch jobs failed",
        job_failures,
        item_failures as f64,
        false,
    );
    expect(
        &mut mismatches,
        "enqueue runs failed",
        enqueue_failed,
        enqueue_errors as f64,
        false,
    );
    retries_bounded(&proxy, metric_retries, &mut mismatches);
    Ok(Figures {
        suite,
        requests: proxy.counts().requests(),
        faults: proxy.counts().total(),
        sent,
        stored,
        duplicates: history_items + future_items - stored,
        parked,
        lost,
        handled: format!(
            "{}; {enqueue_errors} enqueue retries, {invocations} fetch invocations, {item_failures} jobs failed and redelivered, {parked_jobs} in the DLQ",
            faults_line(&proxy)
        ),
        proxy_retried: proxy.counts().retried(),
        metric_retries,
        metric_failures: format!(
            "{job_failures} BatchItemFailures (fetch), {enqueue_failed} InvocationsFailed (enqueue)"
        ),
        mismatches,
    })
}

/// What one shard of the webhook suite counted: (counted, over, resent, stream retries,
/// CloudWatch sum).
async fn hook_shard(
    sdk: SdkConfig,
    faulted: SdkConfig,
    endpoint: String,
    tag: String,
    shard: usize,
    hour: chrono::DateTime<Utc>,
    (hook_metrics, stream_metrics): (Emitter, Emitter),
) -> anyhow::Result<(u64, u64, u64, u64, f64)> {
    use base64::Engine;
    let (sdk, faulted, endpoint, tag) = (&sdk, &faulted, endpoint.as_str(), tag.as_str());
    let cw = aws_sdk_cloudwatch::Client::new(sdk);
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let (mut counted, mut over, mut resent, mut stream_retries) = (0u64, 0u64, 0u64, 0u64);
    let mut in_metrics = 0.0;
    let dep = Deployment::local(
        sdk,
        &format!("{tag}-hook{shard}"),
        HistoryStore::DynamoDb,
        Some(&[ids::COUNTERS_TABLE, ids::WEBHOOK_SECRET]),
    )
    .await?;
    let secret = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(dep.reference(ids::WEBHOOK_SECRET).context("secret")?)
        .send()
        .await?
        .secret_string
        .unwrap_or_default();
    let env = dep.function_env("webhook", &[])?;
    let hook = meter_fn_webhook::Webhook::new(
        faulted,
        &meter_fn_webhook::Config::from_env(&lookup(&env))?,
    )
    .with_metrics(hook_metrics);
    let ep = format!("{tag}-ep{shard}");
    // Requests of 10 notifications; Connector resends a request not answered 2xx.
    for chunk in (1..=PRESSES).collect::<Vec<_>>().chunks(10) {
        let notes: Vec<Value> = chunk
            .iter()
            .map(|c| json!({"ep": ep, "path": "/3200/0/5501", "ct": "text/plain",
                "payload": base64::engine::general_purpose::STANDARD.encode(c.to_string()), "max-age": 0}))
            .collect();
        let body = json!({ "notifications": notes }).to_string();
        let mut tries = 0;
        loop {
            let req = function_url_request(
                "PUT",
                "/webhook",
                "",
                &[
                    ("content-type", "application/json"),
                    ("x-webhook-secret", &secret),
                ],
                Some(&body),
            );
            let (status, _) = call(|r| meter_fn_webhook::handle(&hook, r), req).await?;
            if (200..300).contains(&status) {
                break;
            }
            tries += 1;
            resent += 1;
            if tries > 20 {
                bail!("a request kept failing: {status}");
            }
        }
    }
    let counters = dep
        .reference(ids::COUNTERS_TABLE)
        .context("counters")?
        .to_owned();
    let mut n = 0u64;
    for item in scan_all(&ddb, &counters).await? {
        let is_counter = item
            .get(names::COUNTERS_PK)
            .and_then(|v| v.as_s().ok())
            .is_some_and(|p| !p.starts_with(names::COUNTERS_DEDUPE_PREFIX));
        if is_counter {
            n += item
                .get(names::COUNTERS_COUNT)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    counted += n.min(PRESSES as u64);
    over += n.saturating_sub(PRESSES as u64);

    // The stream, as Lambda's poller delivers it: batches of 100; with partial batch
    // responses a batch is retried from its first failed record.
    let stream_arn = dep
        .attribute(ids::COUNTERS_TABLE, "StreamArn")
        .context("stream")?
        .to_owned();
    let mut records = meter_aws_testing::stream_event(endpoint, &stream_arn)
        .await
        .records;
    let env = dep.function_env("stream-metrics", &[])?;
    let metrics = meter_fn_stream_metrics::StreamMetrics::new(
        faulted,
        &meter_fn_stream_metrics::Config::from_env(&lookup(&env)),
    )
    .with_metrics(stream_metrics);
    while !records.is_empty() {
        let take = records.len().min(100);
        let mut pending: Vec<_> = records.drain(..take).collect();
        let mut attempts = 0;
        while !pending.is_empty() {
            let event: StreamEvent = serde_json::from_value(json!({ "Records": pending }))?;
            let response = meter_fn_stream_metrics::handle(&metrics, event).await;
            let first_failed = response
                .batch_item_failures
                .iter()
                .filter_map(|f| f.item_identifier.clone())
                .filter_map(|seq| {
                    pending
                        .iter()
                        .position(|r| r.change.sequence_number.as_deref() == Some(seq.as_str()))
                })
                .min();
            match first_failed {
                None => pending.clear(),
                Some(i) => {
                    stream_retries += 1;
                    attempts += 1;
                    if attempts > 10 {
                        bail!("a stream batch kept failing");
                    }
                    pending.drain(..i);
                }
            }
        }
    }
    // The presses are stamped with the hour they landed in: a run that crosses an hour's end
    // has metrics in both, so the sum reads up to the hour now.
    let last_hour = Utc::now()
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .context("hour")?;
    in_metrics += e2e::hourly_sum(
        &cw,
        names::DEFAULT_METRIC_NAMESPACE,
        &ep,
        hour - chrono::Duration::hours(1),
        last_hour,
    )
    .await?;
    Ok((counted, over, resent, stream_retries, in_metrics))
}

/// 10,000 presses through the webhook, then each counters stream through stream-metrics.
///
/// The presses go to 100 counters tables of 100 presses each, because moto deep-copies a table
/// (its stream included) on every TransactWriteItems: one table taking all 10,000 grows each
/// copy until the emulator runs out of memory (it did, at 24 GB).
async fn webhook(sdk: &SdkConfig, endpoint: &str, tag: &str) -> anyhow::Result<Figures> {
    let proxy = FaultProxy::start(
        endpoint,
        FaultPlan {
            share: SHARE,
            seed: 37,
        },
    )
    .await;
    let faulted = through(sdk, &proxy);
    let hour = Utc::now()
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .context("hour")?;
    let (mut counted, mut over, mut resent, mut stream_retries) = (0u64, 0u64, 0u64, 0u64);
    let mut in_metrics = 0.0;
    let (hook_emitter, hook_metrics) = Emitter::capture("webhook");
    let (stream_emitter, stream_metrics) = Emitter::capture("stream-metrics");
    // Four shards at a time, as Connector and the stream pollers would run side by side.
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0;
    loop {
        while tasks.len() < 4 && next < SHARDS {
            tasks.spawn(hook_shard(
                sdk.clone(),
                faulted.clone(),
                endpoint.to_owned(),
                tag.to_owned(),
                next,
                hour,
                (hook_emitter.clone(), stream_emitter.clone()),
            ));
            next += 1;
        }
        let Some(done) = tasks.join_next().await else {
            break;
        };
        let (c, o, r, sr, m) = done??;
        counted += c;
        over += o;
        resent += r;
        stream_retries += sr;
        in_metrics += m;
    }
    let sent = (SHARDS * PRESSES) as u64;
    // CloudWatch has no idempotent put: a PutMetricData whose answer was cut after it landed is
    // retried (the stream batch fails) and counted twice. The counters are the record; the
    // metrics are at least once, and their excess is reported.
    if in_metrics < sent as f64 {
        bail!("CloudWatch sums {in_metrics} presses, {sent} were sent");
    }
    let mut mismatches = unlisted(&[&hook_metrics, &stream_metrics]);
    let metric_retries = sum(&hook_metrics, ops::AWS_RETRIES, &mut mismatches)
        + sum(&stream_metrics, ops::AWS_RETRIES, &mut mismatches);
    let server_errors = sum(&hook_metrics, ops::SERVER_ERRORS, &mut mismatches);
    let refused = sum(&hook_metrics, ops::UNAUTHORIZED, &mut mismatches)
        + sum(&hook_metrics, ops::CLIENT_ERRORS, &mut mismatches);
    let record_failures = sum(&stream_metrics, ops::BATCH_ITEM_FAILURES, &mut mismatches);
    expect(
        &mut mismatches,
        "webhook 5xx answers",
        server_errors,
        resent as f64,
        false,
    );
    expect(&mut mismatches, "webhook 4xx answers", refused, 0.0, false);
    // A retried stream batch has at least one failed record.
    expect(
        &mut mismatches,
        "stream records failed",
        record_failures,
        stream_retries as f64,
        true,
    );
    retries_bounded(&proxy, metric_retries, &mut mismatches);
    Ok(Figures {
        suite: "webhook 10,000 presses",
        requests: proxy.counts().requests(),
        faults: proxy.counts().total(),
        sent,
        stored: counted,
        duplicates: over,
        parked: 0,
        lost: sent.saturating_sub(counted + over),
        handled: format!(
            "{}; {resent} requests resent after a 5xx, {stream_retries} stream batches retried from the failed record; CloudWatch sums {in_metrics} (at least once: +{} from PutMetricData calls cut after landing and retried)",
            faults_line(&proxy),
            in_metrics - sent as f64,
        ),
        proxy_retried: proxy.counts().retried(),
        metric_retries,
        metric_failures: format!(
            "{server_errors} ServerErrors (webhook), {record_failures} BatchItemFailures (stream-metrics)"
        ),
        mismatches,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("METER_E2E").is_none() {
        println!(
            "skipped: the fault suite runs through scripts/reliability.sh and scripts/test.sh"
        );
        return Ok(());
    }
    let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") else {
        bail!("AWS_ENDPOINT_URL is not set (scripts/reliability.sh starts the emulator)");
    };
    let logs = Logs::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )?;
    let sdk = meter_aws::sdk_config().await;
    let tag = format!("faults{}", std::process::id());
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let run = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    let mut rows = Vec::new();
    if run("import") {
        println!(
            "== import: 100,000 readings, {:.0}% of AWS requests faulted",
            SHARE * 100.0
        );
        logs.take();
        let f = import(&sdk, &endpoint, &tag).await?;
        rows.push(with_logs(&logs, f));
    }
    if run("fetch") {
        println!(
            "== fetch: 1,000 registry entries, {:.0}% of AWS requests faulted",
            SHARE * 100.0
        );
        logs.take();
        let f = fetch(
            &sdk,
            &endpoint,
            &format!("{tag}-fetch"),
            "fetch 1,000 registry entries",
            (1_000, SHARE, 23),
        )
        .await?;
        rows.push(with_logs(&logs, f));
    }
    if run("fetch-harsh") {
        println!("== fetch-harsh: 100 registry entries, 60% of AWS requests faulted");
        logs.take();
        let f = fetch(
            &sdk,
            &endpoint,
            &format!("{tag}-harsh"),
            "fetch 100 entries, 60% faulted",
            (100, 0.6, 41),
        )
        .await?;
        rows.push(with_logs(&logs, f));
    }
    if run("webhook") {
        println!(
            "== webhook: 10,000 presses, {:.0}% of AWS requests faulted",
            SHARE * 100.0
        );
        logs.take();
        let f = webhook(&sdk, &endpoint, &tag).await?;
        rows.push(with_logs(&logs, f));
    }
    println!("\n| suite | AWS requests | faults injected | sent | stored | duplicates | parked (DLQ, quarantine) | lost | SDK retries seen by the proxy | AwsRetries in the metric lines | partial failures in the metric lines | how the faults were handled |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut bad = Vec::new();
    for f in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f.suite,
            f.requests,
            f.faults,
            f.sent,
            f.stored,
            f.duplicates,
            f.parked,
            f.lost,
            f.proxy_retried,
            f.metric_retries,
            f.metric_failures,
            f.handled
        );
        if f.lost > 0 || f.duplicates > 0 {
            bad.push(f.suite);
        }
    }
    let mismatched: Vec<String> = rows
        .iter()
        .flat_map(|f| {
            f.mismatches
                .iter()
                .map(move |m| format!("{}: {m}", f.suite))
        })
        .collect();
    for m in &mismatched {
        println!("METRICS DISAGREE: {m}");
    }
    if !bad.is_empty() {
        println!("\nLOST OR DUPLICATED: {bad:?}");
    }
    if !bad.is_empty() || !mismatched.is_empty() {
        std::process::exit(1);
    }
    println!("\nnothing lost, nothing duplicated; the metric lines agree with the suite's counts");
    Ok(())
}
