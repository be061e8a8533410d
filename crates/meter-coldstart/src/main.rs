//! Cold starts of the Lambda functions, measured as Lambda would see them on this machine: each
//! built binary is started as a fresh process against a Lambda Runtime API
//! (`meter_standins::runtime_api`) and invoked once with a representative event, against the
//! local AWS emulator (`AWS_ENDPOINT_URL`). For each run it records the time from process start
//! to the first `next` request (initialisation) and to the end of the first invocation, side by
//! side with a hello-world function (the floor) and seed 002's Python webhook (boto3) under a
//! minimal Python runtime loop. Prints medians as a Markdown table.
//!
//! `coldstart BIN_DIR RUNS` (BIN_DIR holds the release builds of `meter-fn-*` and `hello-lambda`)
// reason: a benchmark prints its table.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use meter_standins::runtime_api::{lambda_env, Outcome, RuntimeApi};
use meter_standins::SeriesStandIn;
use serde_json::{json, Value};

struct Subject {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    event: Value,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One cold start: (init ms, first invocation done ms).
async fn run_once(s: &Subject) -> anyhow::Result<(f64, f64)> {
    let api = RuntimeApi::start().await;
    let start = Instant::now();
    let mut child = Command::new(&s.program)
        .args(&s.args)
        .envs(lambda_env(&api, s.name))
        .envs(s.env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", s.program.display()))?;
    let outcome = tokio::time::timeout(Duration::from_secs(60), api.invoke(s.event.clone())).await;
    let done = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    match outcome {
        Ok(Outcome::Response(_)) => {}
        Ok(Outcome::Error(e)) => bail!("{} answered an error: {e}", s.name),
        Err(_) => bail!("{} did not answer within 60 s", s.name),
    }
    let init = api
        .first_next()
        .context("the process never asked for an event")?
        .duration_since(start);
    Ok((init.as_secs_f64() * 1e3, done.as_secs_f64() * 1e3))
}

async fn setup(bin: &Path, root: &Path, standin: &SeriesStandIn) -> anyhow::Result<Vec<Subject>> {
    let sdk = meter_aws::sdk_config().await;
    let tag = format!("coldstart-{}", std::process::id());
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let [registry, readings, forecasts, counters] =
        meter_store_dynamodb::create_tables(&ddb, &format!("{tag}-")).await?;
    let seed_table = "mbed_connector_button_presses";
    meter_store_dynamodb::create_table(&ddb, meter_store_dynamodb::TableKind::Counters, seed_table)
        .await?;
    let entry = json!({"id": "test-run", "source": "http-json", "enabled": true,
        "params": {"url": format!("{}/series/{{identifier}}?from={{from_ms}}&to={{to_ms}}", standin.url())}});
    let entry: meter_core::ports::RegistryEntry = serde_json::from_value(entry)?;
    use meter_core::ports::MeterRegistry;
    meter_store_dynamodb::DynamoRegistry::new(ddb.clone(), &registry)
        .put(&entry)
        .await?;
    let queue = aws_sdk_sqs::Client::new(&sdk)
        .create_queue()
        .queue_name(&tag)
        .send()
        .await?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    for name in ["api", "webhook"] {
        secrets
            .create_secret()
            .name(format!("{tag}-{name}"))
            .secret_string("s3cret")
            .send()
            .await?;
    }
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(&tag).send().await?;
    let mut csv = String::from("Meter,Date");
    for slot in 0..48 {
        csv.push_str(&format!(",{}:{:02}", slot / 2, (slot % 2) * 30));
    }
    csv.push_str("\nEE00027,2019-01-01");
    csv.push_str(&",1".repeat(48));
    csv.push('\n');
    s3.put_object()
        .bucket(&tag)
        .key("in/consumption.csv")
        .body(csv.into_bytes().into())
        .send()
        .await?;

    let e = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let history = [
        ("HISTORY_STORE", "dynamodb"),
        ("READINGS_TABLE", readings.as_str()),
    ];
    let function_url = |method: &str, path: &str, headers: Value, body: Option<String>| {
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": headers,
            "requestContext": {"accountId": "anonymous", "apiId": "a", "domainName": "a.lambda-url.us-east-1.on.aws",
                "domainPrefix": "a", "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7", "userAgent": "bench"}, "requestId": "id", "routeKey": "$default",
                "stage": "$default", "time": "23/Nov/2026:12:00:00 +0000", "timeEpoch": 1_795_435_200_000u64},
            "body": body, "isBase64Encoded": false
        })
    };
    let press = json!({"notifications": [{"ep": "button-1", "path": "/3200/0/5501", "ct": "text/plain",
        "payload": "MQ==", "max-age": 0}]});
    let now = chrono::Utc::now().format("%Y-%m-%d %H:00:00").to_string();
    let f = |name: &str| bin.join(format!("meter-fn-{name}"));
    Ok(vec![
        Subject {
            name: "hello-world (floor)",
            program: bin.join("hello-lambda"),
            args: vec![],
            env: vec![],
            event: json!({"hello": "world"}),
        },
        Subject {
            name: "enqueue",
            program: f("enqueue"),
            args: vec![],
            env: e(&[("REGISTRY_TABLE", &registry), ("FETCH_QUEUE_URL", &queue)]),
            event: json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}),
        },
        Subject {
            name: "fetch",
            program: f("fetch"),
            args: vec![],
            env: [
                e(&[
                    ("REGISTRY_TABLE", &registry),
                    ("FORECASTS_TABLE", &forecasts),
                ]),
                e(&history),
            ]
            .concat(),
            event: json!({"Records": [{"messageId": "1", "receiptHandle": "r", "body": "{\"identifiers\":[\"test-run\"]}",
                "attributes": {}, "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:fetch", "awsRegion": "us-east-1"}]}),
        },
        Subject {
            name: "import",
            program: f("import"),
            args: vec![],
            env: e(&history),
            event: json!({"Records": [{"eventName": "ObjectCreated:Put", "eventSource": "aws:s3",
                "s3": {"bucket": {"name": tag}, "object": {"key": "in/consumption.csv"}}}]}),
        },
        Subject {
            name: "webhook",
            program: f("webhook"),
            args: vec![],
            env: e(&[
                ("COUNTERS_TABLE", &counters),
                ("WEBHOOK_SECRET_ARN", &format!("{tag}-webhook")),
            ]),
            event: function_url(
                "PUT",
                "/webhook",
                json!({"content-type": "application/json", "x-webhook-secret": "s3cret"}),
                Some(press.to_string()),
            ),
        },
        Subject {
            name: "stream-metrics",
            program: f("stream-metrics"),
            args: vec![],
            env: vec![],
            event: json!({"Records": [{"eventID": "1", "eventName": "INSERT", "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                "dynamodb": {"ApproximateCreationDateTime": 1_795_435_200, "Keys": {"Endpoint": {"S": "button-1"}, "EventHour": {"S": now}},
                    "NewImage": {"Endpoint": {"S": "button-1"}, "EventHour": {"S": now}, "EventCount": {"N": "1"}},
                    "SequenceNumber": "111", "SizeBytes": 26, "StreamViewType": "NEW_AND_OLD_IMAGES"},
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/counters/stream/2026-11-23T00:00:00.000"}]}),
        },
        Subject {
            name: "api",
            program: f("api"),
            args: vec![],
            env: [
                e(&[
                    ("REGISTRY_TABLE", &registry),
                    ("FORECASTS_TABLE", &forecasts),
                    ("COUNTERS_TABLE", &counters),
                    ("API_AUTH", "bearer"),
                    ("API_TOKEN_SECRET_ARN", &format!("{tag}-api")),
                ]),
                e(&history),
            ]
            .concat(),
            event: function_url(
                "GET",
                "/v1/meters",
                json!({"authorization": "Bearer s3cret"}),
                None,
            ),
        },
        Subject {
            name: "seed 002 webhook (Python 3, boto3)",
            program: PathBuf::from("python3"),
            args: vec![
                root.join("scripts/bench/python_runtime.py")
                    .display()
                    .to_string(),
                root.join("scripts/bench/seed002_webhook.py")
                    .display()
                    .to_string(),
                "lambda_handler".into(),
            ],
            env: vec![],
            event: press,
        },
    ])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(bin), Some(runs)) = (args.get(1), args.get(2)) else {
        bail!("usage: coldstart BIN_DIR RUNS");
    };
    let runs: usize = runs.parse().context("RUNS")?;
    std::env::var("AWS_ENDPOINT_URL").context("AWS_ENDPOINT_URL must point at the emulator")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let standin = SeriesStandIn::start(None, None).await;
    let subjects = setup(Path::new(bin), &root, &standin).await?;
    let mut init: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    let mut total: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    // Interleaved, so a noisy moment on this shared machine touches every subject alike.
    for run in 0..runs {
        eprintln!("run {} of {runs}", run + 1);
        for (i, s) in subjects.iter().enumerate() {
            let (a, b) = run_once(s).await?;
            init[i].push(a);
            total[i].push(b);
        }
    }
    let floor = median(init[0].clone());
    println!("| function | init, median ms | init / floor | first invocation done, median ms |");
    println!("|---|---|---|---|");
    for (i, s) in subjects.iter().enumerate() {
        let m = median(init[i].clone());
        println!(
            "| {} | {:.1} | {:.1}x | {:.1} |",
            s.name,
            m,
            m / floor,
            median(total[i].clone())
        );
    }
    Ok(())
}
