//! `e2e`: the five seed pipelines hydrated end to end through the local stack.
//!
//! For each pipeline it deploys the synthesised template into the local AWS emulator (moto,
//! `AWS_ENDPOINT_URL`) with [`deploy::Deployment`], starts the stand-ins the pipeline reads
//! (SST Cloud, seed 003's series API), and plays AWS's part: the schedule, the SQS and stream
//! pollers, the bucket's notifications and the Function URLs, calling each function's handler
//! in-process with its environment resolved from the template and the events the emulated
//! services produced (messages received from SQS, records read from the DynamoDB stream, S3
//! notifications moto delivered to a queue). Every step prints what it checked; the run ends
//! with a table of the pipelines, pass or fail, and the time from putting the input to the data
//! being queryable. Exits non-zero when any pipeline fails.
//!
//! A test target without the test harness, so it prints as it goes: `scripts/e2e.sh
//! [PIPELINE...]` starts moto when needed and runs it (some pipelines by name:
//! `seed000-dynamodb`, `seed000-timestream`, `seed001`, `seed002`, `seed003`, `seed004`).
//! It runs only when `METER_E2E` is set (the script sets it), so the workspace's `cargo test`
//! leaves it to its own step; without `AWS_ENDPOINT_URL` it fails if `METER_REQUIRE_MOTO` is
//! set and skips otherwise.

// reason: a command-line run reports its checks and summary on stdout.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{Timelike, Utc};
use infra::stack::ids;
use infra::HistoryStore;
use meter_core::contract::cloud::ops;
use meter_core::contract::{self, cloud as names};
use meter_core::ports::MeterRegistry;
use meter_lambda::metrics::Emitter;
use meter_lambda::testing::function_url_request;
use serde_json::{json, Value};

use e2e::deploy::Deployment;
use e2e::{call, lookup, receive, sqs_event};

/// What a pipeline run found.
struct Checks {
    passed: usize,
}

impl Checks {
    fn new() -> Self {
        Self { passed: 0 }
    }

    /// Prints a check; a failed one ends the pipeline (later steps depend on it).
    fn check(&mut self, ok: bool, what: impl AsRef<str>) -> anyhow::Result<()> {
        if ok {
            self.passed += 1;
            println!("    ok    {}", what.as_ref());
            Ok(())
        } else {
            println!("    FAIL  {}", what.as_ref());
            Err(CheckFailed(what.as_ref().to_owned()).into())
        }
    }

    fn equal<T: PartialEq + std::fmt::Debug>(
        &mut self,
        got: T,
        want: T,
        what: &str,
    ) -> anyhow::Result<()> {
        let ok = got == want;
        let line = if ok {
            format!("{what}: {got:?}")
        } else {
            format!("{what}: got {got:?}, want {want:?}")
        };
        self.check(ok, line)
    }
}

/// A failed check (already printed).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CheckFailed(String);

/// A pipeline's result.
struct Outcome {
    hydration: Duration,
    note: String,
}

/// The shared run: the emulator's SDK configuration and a tag unique to this run.
struct Run {
    sdk: SdkConfig,
    endpoint: String,
    tag: String,
}

impl Run {
    /// Deploys the template variant under a stack named for this run and pipeline.
    async fn deploy(&self, pipeline: &str, history: HistoryStore) -> anyhow::Result<Deployment> {
        let stack = format!("{}-{pipeline}", self.tag);
        let d = Deployment::local(&self.sdk, &stack, history, None).await?;
        println!(
            "    ok    deployed {stack}: {} resources created from the template ({}); {} played by this run ({})",
            d.created().len(),
            d.created().iter().map(|c| c.0.as_str()).collect::<Vec<_>>().join(", "),
            d.played_by_driver.len(),
            summarise_types(&d.played_by_driver),
        );
        Ok(d)
    }

    fn ddb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.sdk)
                .force_path_style(true)
                .build(),
        )
    }

    async fn secret(&self, arn: &str) -> anyhow::Result<String> {
        aws_sdk_secretsmanager::Client::new(&self.sdk)
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .context("reading a secret")?
            .secret_string
            .ok_or_else(|| anyhow!("the secret {arn} has no string"))
    }

    /// Every message waiting in a queue, as the records of Lambda SQS events (one batch per
    /// receive, as the poller delivers them).
    async fn receive_all(&self, dep: &Deployment, queue: &str) -> anyhow::Result<Vec<Value>> {
        let url = dep.reference(queue).context("queue")?;
        let arn = dep.attribute(queue, "Arn").context("queue arn")?;
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let mut batches = Vec::new();
        loop {
            let messages = receive(&sqs, url).await.context("receiving")?;
            if messages.is_empty() {
                return Ok(batches);
            }
            batches.push(sqs_event(&messages, arn));
        }
    }

    /// Deletes the messages of a batch except the failed ones, as the poller does with a
    /// partial batch response.
    async fn settle(
        &self,
        dep: &Deployment,
        queue: &str,
        batch: &Value,
        failed: &[String],
    ) -> anyhow::Result<()> {
        let url = dep.reference(queue).context("queue")?;
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        for r in batch["Records"].as_array().into_iter().flatten() {
            let id = r["messageId"].as_str().unwrap_or_default();
            if failed.iter().any(|f| f == id) {
                continue;
            }
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(r["receiptHandle"].as_str().unwrap_or_default())
                .send()
                .await
                .context("deleting a handled message")?;
        }
        Ok(())
    }
}

fn summarise_types(list: &[(String, String)]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, kind) in list {
        *counts.entry(kind.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n} {}", k.trim_start_matches("AWS::")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// The API function over a deployment, with its token read from the template's secret as a
/// client would.
async fn api(run: &Run, dep: &Deployment) -> anyhow::Result<(meter_fn_api::Api, String)> {
    let env = dep.function_env("api", &[])?;
    let config = meter_fn_api::Config::from_env(&lookup(&env))?;
    let token = run
        .secret(dep.reference(ids::API_TOKEN_SECRET).context("api secret")?)
        .await?;
    Ok((meter_fn_api::Api::new(&run.sdk, &config), token))
}

async fn api_get(
    api: &meter_fn_api::Api,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, Vec<u8>)> {
    Ok(call(
        |req| meter_fn_api::handle(api, req),
        function_url_request("GET", path, query, headers, None),
    )
    .await?)
}

/// The schedule's part: enqueue on a Scheduler payload, then the SQS poller's: fetch on each
/// batch received from the emulated queue. Answers (jobs queued, jobs failed).
async fn schedule_and_fetch(
    run: &Run,
    dep: &Deployment,
    checks: &mut Checks,
    fetch_extra: &[(&str, String)],
) -> anyhow::Result<()> {
    let env = dep.function_env("enqueue", &[])?;
    let config = meter_fn_enqueue::Config::from_env(&lookup(&env))?;
    let enqueue = meter_fn_enqueue::Enqueue::new(&run.sdk, &config);
    // EventBridge Scheduler with no input template sends an empty object.
    let report = meter_fn_enqueue::handle(&enqueue, json!({})).await?;
    checks.check(
        report.sent == report.jobs && report.jobs > 0,
        format!(
            "enqueue on the schedule: {} entries, {} jobs queued",
            report.entries, report.sent
        ),
    )?;
    let batches = run.receive_all(dep, ids::FETCH_QUEUE).await?;
    let received: usize = batches
        .iter()
        .map(|b| b["Records"].as_array().map_or(0, Vec::len))
        .sum();
    checks.equal(
        received,
        report.sent,
        "jobs read back from the emulated SQS queue",
    )?;

    let env = dep.function_env("fetch", fetch_extra)?;
    let config = meter_fn_fetch::Config::from_env(&lookup(&env))?;
    let env = Arc::new(env);
    let fetch = meter_fn_fetch::Fetch::new(
        &run.sdk,
        &config,
        Arc::new(move |k: &str| env.get(k).cloned()),
    );
    for batch in &batches {
        let event: SqsEvent = serde_json::from_value(batch.clone())?;
        let response = meter_fn_fetch::handle(&fetch, event, Utc::now()).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        run.settle(dep, ids::FETCH_QUEUE, batch, &failed).await?;
        checks.check(
            failed.is_empty(),
            format!("fetch on an SQS batch: no batchItemFailures (failed: {failed:?})"),
        )?;
    }
    Ok(())
}

/// Seed 000: SST Cloud water meters.
async fn seed000(run: &Run, checks: &mut Checks, history: HistoryStore) -> anyhow::Result<Outcome> {
    use meter_standins::{SstStandIn, SST_HOUSE, SST_PASSWORD, SST_USER};
    let dep = run
        .deploy(&format!("seed000-{}", history.as_str()), history)
        .await?;
    let sst = SstStandIn::start().await;
    // The step deploy.sh prints: the account's API token into the template's secret.
    aws_sdk_secretsmanager::Client::new(&run.sdk)
        .put_secret_value()
        .secret_id(dep.reference(ids::SST_SECRET).context("sst secret")?)
        .secret_string(sst.token())
        .send()
        .await?;

    let start = Instant::now();
    // `meter sst discover --registry dynamodb:<table>`, logging in with the account.
    let login = [
        (contract::ENV_SST_BASE_URL, sst.url()),
        (contract::ENV_SST_USERNAME, SST_USER.to_owned()),
        (contract::ENV_SST_PASSWORD, SST_PASSWORD.to_owned()),
    ];
    let config = meter_sources::sst::SstConfig::from_lookup(|k| {
        login.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })?;
    let client = meter_sources::sst::SstClient::new(config, None)?;
    let registry = meter_store_dynamodb::DynamoRegistry::new(
        run.ddb(),
        dep.reference(ids::REGISTRY_TABLE).context("registry")?,
    );
    let houses = client.houses().await?;
    for h in &houses {
        registry.put(&h.registry_entry()?).await?;
    }
    let listed = registry.list(None, 100).await?;
    checks.equal(
        listed
            .entries
            .iter()
            .map(|e| e.id.to_string())
            .collect::<Vec<_>>(),
        vec![format!("sst-house-{SST_HOUSE}")],
        "discovery filled the registry",
    )?;

    schedule_and_fetch(
        run,
        &dep,
        checks,
        &[(contract::ENV_SST_BASE_URL, sst.url())],
    )
    .await?;

    // The stand-in's counters, in litres.
    let mut want: Vec<i64> = vec![123_457, 98_765];
    want.sort_unstable();
    match history {
        HistoryStore::DynamoDb => {
            let (api, token) = api(run, &dep).await?;
            let bearer = format!("Bearer {token}");
            let (status, body) =
                api_get(&api, "/v1/latest", "", &[("authorization", &bearer)]).await?;
            let hydration = start.elapsed();
            checks.equal(status, 200, "GET /v1/latest answers")?;
            let latest = json_of(&body);
            let mut got: Vec<i64> = latest["latest"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["measure"] == "volume")
                .filter_map(|r| r["value"].as_f64())
                .map(|v| v as i64)
                .collect();
            got.sort_unstable();
            checks.equal(
                got,
                want,
                "the API's latest volumes equal the stand-in's counters (litres)",
            )?;
            let (status, _) = api_get(&api, "/v1/latest", "", &[]).await?;
            checks.equal(status, 401, "GET /v1/latest without the token is refused")?;
            Ok(Outcome {
                hydration,
                note: "DynamoDB history, read through the API".into(),
            })
        }
        HistoryStore::Timestream => {
            // Written is queryable in Timestream; reading moto's state dump back is not part
            // of the pipeline's time.
            let hydration = start.elapsed();
            let db = dep
                .reference(ids::TIMESTREAM_DATABASE)
                .context("database")?;
            let records = meter_aws_testing::timestream_records(db).await;
            let mut got: Vec<i64> = records
                .iter()
                .filter_map(|r| r["MeasureValue"].as_str())
                .filter_map(|v| v.parse().ok())
                .collect();
            got.sort_unstable();
            checks.equal(
                got,
                want,
                "Timestream WriteRecords as moto recorded them: one BIGINT volume per counter",
            )?;
            Ok(Outcome {
                hydration,
                note:
                    "Timestream history; moto cannot query it, so the records written are checked"
                        .into(),
            })
        }
    }
}

/// Routes the bucket's object-created notifications to a queue this run reads, so the import
/// handler gets the events moto itself produces (moto delivers no EventBridge events).
async fn tap_bucket(run: &Run, bucket: &str) -> anyhow::Result<Tap> {
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    let sqs = aws_sdk_sqs::Client::new(&run.sdk);
    let name = format!("{bucket}-tap");
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await?
        .queue_url
        .unwrap_or_default();
    let arn = format!("arn:aws:sqs:us-east-1:123456789012:{name}");
    run.s3()
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(&arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()?,
                )
                .build(),
        )
        .send()
        .await?;
    Ok(Tap { url, arn })
}

/// The queue a bucket's notifications reach.
struct Tap {
    url: String,
    arn: String,
}

/// The bucket's notifications waiting in the tap queue, as SQS events (removed from the queue).
async fn tapped(run: &Run, tap: &Tap) -> anyhow::Result<Vec<Value>> {
    let sqs = aws_sdk_sqs::Client::new(&run.sdk);
    let mut batches = Vec::new();
    loop {
        let messages = receive(&sqs, &tap.url).await?;
        if messages.is_empty() {
            return Ok(batches);
        }
        for m in &messages {
            sqs.delete_message()
                .queue_url(&tap.url)
                .set_receipt_handle(m.receipt_handle.clone())
                .send()
                .await?;
        }
        batches.push(sqs_event(&messages, &tap.arn));
    }
}

/// The import function over a deployment.
fn import(run: &Run, dep: &Deployment) -> anyhow::Result<meter_fn_import::Import> {
    let env = dep.function_env("import", &[])?;
    let config = meter_fn_import::Config::from_env(&lookup(&env))?;
    Ok(meter_fn_import::Import::new(&run.sdk, &config))
}

/// Runs the import handler on every notification waiting; answers the summed report.
async fn import_tapped(
    run: &Run,
    import: &meter_fn_import::Import,
    tap: &Tap,
) -> anyhow::Result<meter_fn_import::Report> {
    let mut total = meter_fn_import::Report::default();
    for event in tapped(run, tap).await? {
        let r = meter_fn_import::handle(
            import,
            &event,
            meter_fn_import::Budget::Deadline(
                std::time::SystemTime::now() + Duration::from_secs(840),
            ),
        )
        .await?;
        total.objects += r.objects;
        total.readings += r.readings;
        total.rejected += r.rejected;
        total.skipped += r.skipped;
    }
    Ok(total)
}

/// A deployment for an import pipeline: its bucket, the queue its notifications reach, and
/// the import function.
async fn import_stack(
    run: &Run,
    pipeline: &str,
) -> anyhow::Result<(Deployment, String, Tap, meter_fn_import::Import)> {
    let dep = run.deploy(pipeline, HistoryStore::DynamoDb).await?;
    let bucket = dep
        .reference(ids::IMPORT_BUCKET)
        .context("bucket")?
        .to_owned();
    let tap = tap_bucket(run, &bucket).await?;
    let import = import(run, &dep)?;
    Ok((dep, bucket, tap, import))
}

/// Seed 001: the Raspberry Pi pool thermometer.
async fn seed001(run: &Run, checks: &mut Checks) -> anyhow::Result<Outcome> {
    let (dep, bucket, tap, import) = import_stack(run, "seed001").await?;
    let now = Utc::now();
    let start = Instant::now();
    // One reading every half hour over the last 24 hours, as the logger's cron wrote them.
    let n = 47;
    let mut last = 0.0;
    for i in 0..n {
        let t = now - chrono::Duration::minutes(30 * (n - i));
        let celsius = 24.0 + f64::from(i32::try_from(i % 12)?) * 0.2;
        last = celsius;
        let key = t.format("pool/%Y/%m/%d/%H%M%S.json").to_string();
        let body = json!({"timestamp": t.timestamp(), "celcius": celsius,
            "fahrenheit": celsius * 9.0 / 5.0 + 32.0});
        run.s3()
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(format!("{body}\n").into_bytes().into())
            .send()
            .await?;
    }
    let report = import_tapped(run, &import, &tap).await?;
    checks.equal(
        (report.objects, report.readings, report.rejected),
        (n as usize, n as usize, 0),
        "import on moto's S3 notifications: (objects, readings, rejected)",
    )?;
    let (api, token) = api(run, &dep).await?;
    let bearer = format!("Bearer {token}");
    let (status, body) = api_get(
        &api,
        "/v1/meters/pool/chart.svg",
        "",
        &[("authorization", &bearer)],
    )
    .await?;
    let hydration = start.elapsed();
    checks.equal(status, 200, "GET /v1/meters/pool/chart.svg answers")?;
    let svg = String::from_utf8_lossy(&body);
    checks.check(
        svg.contains("Last 24 Hours Pool Temperature"),
        "the chart is seed 001's (its title)",
    )?;
    checks.check(
        svg.contains(&format!(r#"data-points="{n}""#)),
        format!("the chart draws the last 24 hours: {n} points"),
    )?;
    let annotated = format!("{last:.1}");
    checks.check(
        svg.contains(&format!(r#"data-last="{annotated}""#))
            && svg.contains(&format!(">{annotated}</text>")),
        format!("the last value is annotated: {annotated}"),
    )?;
    Ok(Outcome {
        hydration,
        note: format!("{n} objects under pool/YYYY/MM/DD/"),
    })
}

/// The DynamoDB stream's records as Lambda's poller would deliver them.
async fn seed002(run: &Run, checks: &mut Checks) -> anyhow::Result<Outcome> {
    use base64::Engine;
    let dep = run.deploy("seed002", HistoryStore::DynamoDb).await?;
    let env = dep.function_env("webhook", &[])?;
    let (emitter, webhook_metrics) = Emitter::capture("webhook");
    let webhook = meter_fn_webhook::Webhook::new(
        &run.sdk,
        &meter_fn_webhook::Config::from_env(&lookup(&env))?,
    )
    .with_metrics(emitter);
    let secret = run
        .secret(
            dep.reference(ids::WEBHOOK_SECRET)
                .context("webhook secret")?,
        )
        .await?;
    let presses = |ep: &str, counts: &[u32]| {
        let notes: Vec<Value> = counts
            .iter()
            .map(|c| json!({"ep": ep, "path": "/3200/0/5501", "ct": "text/plain",
                "payload": base64::engine::general_purpose::STANDARD.encode(c.to_string()), "max-age": 0}))
            .collect();
        json!({ "notifications": notes }).to_string()
    };
    let send = |body: String, secret: Option<String>| {
        let webhook = &webhook;
        async move {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(s) = &secret {
                headers.push(("x-webhook-secret", s.as_str()));
            }
            call(
                |req| meter_fn_webhook::handle(webhook, req),
                function_url_request("PUT", "/webhook", "", &headers, Some(&body)),
            )
            .await
        }
    };
    let start = Instant::now();
    // Endpoint names carry the run's tag: CloudWatch metrics outlive a stack, and the namespace
    // is seed 002's fixed one.
    let b1 = format!("{}-button-1", run.tag);
    let b2 = format!("{}-button-2", run.tag);
    let sent: [(&str, &[u32]); 3] = [(&b1, &[1, 2, 3]), (&b2, &[1]), (&b1, &[4, 5])];
    for (ep, counts) in sent {
        let (status, body) = send(presses(ep, counts), Some(secret.clone())).await?;
        checks.equal(
            (status, json_of(&body)["counted"].as_u64()),
            (200, Some(counts.len() as u64)),
            &format!("webhook counts {} presses of {ep}", counts.len()),
        )?;
    }
    let (status, body) = send(presses(&b1, &[5]), Some(secret.clone())).await?;
    checks.equal(
        (status, json_of(&body)["counted"].as_u64()),
        (200, Some(0)),
        "a replayed notification is not counted again",
    )?;
    let (status, _) = send(presses(&b1, &[6]), None).await?;
    checks.equal(status, 401, "a request without the secret is refused")?;
    let (status, _) = send(presses(&b1, &[6]), Some("wrong".into())).await?;
    checks.equal(status, 401, "a request with a wrong secret is refused")?;
    checks.equal(
        webhook_metrics
            .sum(ops::UNAUTHORIZED)
            .map_err(anyhow::Error::msg)?,
        2.0,
        "the refusals are counted in the webhook's metric lines (Unauthorized)",
    )?;

    let stream_arn = dep
        .attribute(ids::COUNTERS_TABLE, "StreamArn")
        .context("counters stream")?;
    let event = meter_aws_testing::stream_event(&run.endpoint, stream_arn).await;
    let records = event.records.len();
    if std::env::var_os("E2E_DEBUG").is_some() {
        for r in &event.records {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
    }
    let env = dep.function_env("stream-metrics", &[])?;
    let metrics = meter_fn_stream_metrics::StreamMetrics::new(
        &run.sdk,
        &meter_fn_stream_metrics::Config::from_env(&lookup(&env)),
    );
    let response = meter_fn_stream_metrics::handle(&metrics, event).await;
    checks.check(
        response.batch_item_failures.is_empty(),
        format!("stream-metrics on {records} stream records: no batchItemFailures"),
    )?;

    let namespace = env
        .get(names::ENV_METRIC_NAMESPACE)
        .cloned()
        .unwrap_or_default();
    checks.equal(
        namespace.as_str(),
        names::DEFAULT_METRIC_NAMESPACE,
        "the metric namespace is seed 002's",
    )?;
    let cw = aws_sdk_cloudwatch::Client::new(&run.sdk);
    let hour = Utc::now()
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .context("hour")?;
    let from = hour - chrono::Duration::hours(1);
    let mut hydration = Duration::ZERO;
    for (ep, want) in [(&b1, 5.0), (&b2, 1.0)] {
        let sum = e2e::hourly_sum(&cw, &namespace, ep, from, hour).await?;
        hydration = start.elapsed();
        // Presses made across an hour boundary are two hours' sums; together they are all.
        checks.equal(
            sum,
            want,
            &format!("CloudWatch hourly sums of {ep} equal the presses sent"),
        )?;
    }
    Ok(Outcome {
        hydration,
        note: "webhook -> counters -> stream -> CloudWatch".into(),
    })
}

/// Seed 003: the time-series cache of an external API.
async fn seed003(run: &Run, checks: &mut Checks) -> anyhow::Result<Outcome> {
    use meter_standins::SeriesStandIn;
    let dep = run.deploy("seed003", HistoryStore::DynamoDb).await?;
    let key = "series-k3y";
    let standin = SeriesStandIn::start(None, Some(key)).await;
    let registry = meter_store_dynamodb::DynamoRegistry::new(
        run.ddb(),
        dep.reference(ids::REGISTRY_TABLE).context("registry")?,
    );
    let entry = json!({"id": "test-run", "source": contract::SOURCE_HTTP_JSON, "enabled": true,
        "params": {"url": format!("{}/series/{{identifier}}?from={{from_ms}}&to={{to_ms}}", standin.url()),
                   "api_key_header": "x-api-key", "api_key_env": "SERIES_API_KEY"}});
    let start = Instant::now();
    registry.put(&serde_json::from_value(entry)?).await?;
    checks.check(
        true,
        "an identifier in the registry (http-json, API key from the environment)",
    )?;
    schedule_and_fetch(run, &dep, checks, &[("SERIES_API_KEY", key.to_owned())]).await?;

    let (api, token) = api(run, &dep).await?;
    let now = Utc::now();
    let query = format!(
        "startDate={}&endDate={}&identifier=test-run",
        (now - chrono::Duration::days(4)).timestamp_millis(),
        (now + chrono::Duration::days(4)).timestamp_millis()
    );
    let (status, body) = api_get(
        &api,
        "/timeSeries-data",
        &query,
        &[("x-security-token", &token)],
    )
    .await?;
    let hydration = start.elapsed();
    checks.equal(
        status,
        200,
        "GET /timeSeries-data with x-security-token answers",
    )?;
    let rows = json_of(&body);
    let count = |k: &str| rows[k].as_array().map_or(0, Vec::len);
    checks.equal(
        (count("historicalRows"), count("futureRows")),
        (288, 288),
        "now +/- 4 days: (historical, future) rows, the seed's own check",
    )?;
    let (status, _) = api_get(&api, "/timeSeries-data", &query, &[]).await?;
    checks.check(
        status == 401 || status == 400,
        format!("without the token: {status}"),
    )?;

    // The future rows carry a TTL (the forecasts table's, from the template).
    let ddb = run.ddb();
    let table = dep.reference(ids::FORECASTS_TABLE).context("forecasts")?;
    let ttl = ddb.describe_time_to_live().table_name(table).send().await?;
    let ttl_attr = ttl
        .time_to_live_description()
        .and_then(|d| d.attribute_name())
        .unwrap_or_default()
        .to_owned();
    checks.equal(
        ttl_attr.as_str(),
        names::FORECASTS_TTL,
        "the forecasts table's TTL attribute",
    )?;
    let all = e2e::scan_all(&ddb, table).await?;
    let items = all.len();
    let with_ttl = all
        .iter()
        .filter_map(|item| item.get(names::FORECASTS_TTL))
        .filter_map(|v| v.as_n().ok())
        .filter_map(|n| n.parse::<i64>().ok())
        .filter(|e| *e > now.timestamp())
        .count();
    checks.equal(
        (items, with_ttl),
        (288, 288),
        "every future point is stored with a TTL in the future: (items, with TTL)",
    )?;
    Ok(Outcome {
        hydration,
        note: "registry -> enqueue -> SQS -> fetch -> API".into(),
    })
}

/// A wide half-hourly CSV of `rows` (meter, day, value of every slot).
fn wide_csv(rows: &[(&str, &str, u32)]) -> String {
    let mut csv = String::from("Meter,Date");
    for slot in 0..48 {
        csv.push_str(&format!(",{}:{:02}", slot / 2, (slot % 2) * 30));
    }
    csv.push('\n');
    for (meter, day, v) in rows {
        csv.push_str(&format!("{meter},{day}"));
        for slot in 0..48 {
            csv.push_str(&format!(",{}", v + slot % 3));
        }
        csv.push('\n');
    }
    csv
}

/// The seed 004 route's sum of each (meter, day).
async fn daily_sums(
    api: &meter_fn_api::Api,
    bearer: &str,
    days: &[(&str, &str, u32)],
) -> anyhow::Result<Vec<i64>> {
    let mut out = Vec::new();
    for (meter, day, _) in days {
        let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")?
            .format("%d-%m-%Y")
            .to_string();
        let (status, body) = api_get(
            api,
            "/",
            &format!("meterId={meter}&date={date}"),
            &[("authorization", bearer)],
        )
        .await?;
        if status != 200 {
            bail!("GET /?meterId={meter}&date={date}: {status}");
        }
        out.push(json_of(&body)["sum"].as_i64().unwrap_or(-1));
    }
    Ok(out)
}

/// Seed 004: utility CSV exports.
async fn seed004(run: &Run, checks: &mut Checks) -> anyhow::Result<Outcome> {
    let (dep, bucket, tap, import) = import_stack(run, "seed004").await?;
    let (emitter, import_metrics) = Emitter::capture("import");
    let import = import.with_metrics(emitter);
    let (api, token) = api(run, &dep).await?;
    let bearer = format!("Bearer {token}");
    let day_sum = |v: u32| -> i64 { (0..48).map(|s| i64::from(v + s % 3)).sum() };
    let days = [
        ("EE00027", "2019-01-01", 1),
        ("EE00027", "2019-01-02", 2),
        ("EE00028", "2019-01-01", 3),
    ];
    let mut csv = wide_csv(&days);
    // Two bad rows next to good ones: an impossible date (the row is rejected) and a
    // non-numeric slot (that cell is rejected, the row's other 47 land).
    csv.push_str(&format!("EE00029,2019-13-01{}\n", ",1".repeat(48)));
    csv.push_str(&format!("EE00030,2019-01-01,x{}\n", ",1".repeat(47)));
    let key = "exports/jan 2019.csv";
    let put = || async {
        run.s3()
            .put_object()
            .bucket(&bucket)
            .key(key)
            .body(csv.clone().into_bytes().into())
            .send()
            .await
    };
    let start = Instant::now();
    put().await?;
    let report = import_tapped(run, &import, &tap).await?;
    checks.equal(
        (report.objects, report.readings, report.rejected),
        (1, 191, 2),
        "import on moto's S3 notification: (objects, readings, rejected)",
    )?;
    let want: Vec<i64> = days.iter().map(|d| day_sum(d.2)).collect();
    let got = daily_sums(&api, &bearer, &days).await?;
    let hydration = start.elapsed();
    checks.equal(got, want.clone(), "the seed 004 route's daily sums")?;

    let report_key = format!("{}{key}.errors.json", names::QUARANTINE_PREFIX);
    let q = run
        .s3()
        .get_object()
        .bucket(&bucket)
        .key(&report_key)
        .send()
        .await
        .with_context(|| format!("no quarantine report at {report_key}"))?;
    let q: Value = serde_json::from_slice(&q.body.collect().await?.into_bytes())?;
    let lines: Vec<i64> = q["rejections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["line"].as_i64())
        .collect();
    checks.equal(
        (q["rejected"].as_i64(), lines),
        (Some(2), vec![5, 6]),
        &format!("the quarantine report {report_key} names each bad line"),
    )?;

    put().await?;
    let again = import_tapped(run, &import, &tap).await?;
    checks.equal(
        again.objects,
        1,
        "the same file put again is imported again",
    )?;
    checks.equal(
        daily_sums(&api, &bearer, &days).await?,
        want,
        "and changes no sum",
    )?;
    let sum = |m| import_metrics.sum(m).map_err(anyhow::Error::msg);
    checks.equal(
        (sum(ops::READINGS_STORED)?, sum(ops::ROWS_REJECTED)?),
        (382.0, 4.0),
        "the import's metric lines: (ReadingsStored, RowsRejected) over both puts",
    )?;
    Ok(Outcome {
        hydration,
        note: "wide CSV -> import -> daily sums".into(),
    })
}

type PipelineFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Outcome>> + 'a>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("METER_E2E").is_none() {
        println!("skipped: the end-to-end pipelines run through scripts/e2e.sh");
        return Ok(());
    }
    let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") else {
        if std::env::var_os("METER_REQUIRE_MOTO").is_some() {
            bail!("METER_REQUIRE_MOTO is set but AWS_ENDPOINT_URL is not");
        }
        println!("skipped: no AWS_ENDPOINT_URL (scripts/e2e.sh starts the emulator)");
        return Ok(());
    };
    let run = Run {
        sdk: meter_aws::sdk_config().await,
        endpoint,
        tag: format!("e2e{}", std::process::id()),
    };
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    type Pipeline = (
        &'static str,
        &'static str,
        for<'a> fn(&'a Run, &'a mut Checks) -> PipelineFuture<'a>,
    );
    let pipelines: [Pipeline; 6] = [
        ("seed000-dynamodb", "water meters (SST Cloud)", |r, c| {
            Box::pin(seed000(r, c, HistoryStore::DynamoDb))
        }),
        ("seed000-timestream", "water meters (SST Cloud)", |r, c| {
            Box::pin(seed000(r, c, HistoryStore::Timestream))
        }),
        ("seed001", "Pi pool thermometer", |r, c| {
            Box::pin(seed001(r, c))
        }),
        ("seed002", "mbed buttons", |r, c| Box::pin(seed002(r, c))),
        ("seed003", "time-series cache", |r, c| {
            Box::pin(seed003(r, c))
        }),
        ("seed004", "CSV import", |r, c| Box::pin(seed004(r, c))),
    ];
    if let Some(unknown) = wanted
        .iter()
        .find(|w| !pipelines.iter().any(|p| p.0 == w.as_str()))
    {
        bail!(
            "no pipeline {unknown}; choose from {:?}",
            pipelines.map(|p| p.0)
        );
    }
    let mut rows = Vec::new();
    for (name, what, f) in pipelines {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        println!("\n== {name}: {what}");
        let mut checks = Checks::new();
        let started = Instant::now();
        let result = f(&run, &mut checks).await;
        let total = started.elapsed();
        match result {
            Ok(o) => rows.push((name, Ok((o, checks.passed)), total)),
            Err(e) => {
                if !e.is::<CheckFailed>() {
                    println!("    FAIL  {e:#}");
                }
                rows.push((name, Err(format!("{e:#}")), total));
            }
        }
    }
    println!("\n| pipeline | result | checks | input to queryable | whole run | note |");
    println!("|---|---|---|---|---|---|");
    let mut failed = 0;
    for (name, result, total) in &rows {
        match result {
            Ok((o, passed)) => println!(
                "| {name} | pass | {passed} | {:.0} ms | {:.1} s | {} |",
                o.hydration.as_secs_f64() * 1e3,
                total.as_secs_f64(),
                o.note
            ),
            Err(e) => {
                failed += 1;
                println!(
                    "| {name} | **FAIL** | | | {:.1} s | {e} |",
                    total.as_secs_f64()
                );
            }
        }
    }
    if failed > 0 {
        println!("\n{failed} of {} pipelines FAILED", rows.len());
        std::process::exit(1);
    }
    println!("\nall {} pipelines pass", rows.len());
    Ok(())
}
