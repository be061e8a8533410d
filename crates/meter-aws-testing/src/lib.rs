//! Test support for meterflow's AWS adapters, kept out of their production code: the local
//! emulator's SDK configuration (moto in server mode, skipped or required by the test command's
//! environment), what the emulator holds (Timestream records, DynamoDB stream events as Lambda
//! receives them), and an SDK interceptor that counts the requests a client sends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// A name no other test of any process uses: `name`, the process id and a counter, for the
/// tables, queues and buckets tests create in the shared emulator.
pub fn unique(name: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{name}-{}-{n}", std::process::id())
}

/// Creates an SQS queue named `name` in the emulator and answers its URL.
pub async fn queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    let created = sqs.create_queue().queue_name(name).send().await;
    let created = created.unwrap_or_else(|e| panic!("CreateQueue {name}: {e}"));
    created.queue_url().unwrap_or_default().to_owned()
}

/// The local emulator's SDK configuration (`AWS_ENDPOINT_URL`, which the test command sets
/// with METER_REQUIRE_MOTO), or `None` with a note where no emulator runs; with
/// METER_REQUIRE_MOTO set, a missing emulator fails the test instead of skipping it.
pub async fn emulator() -> Option<aws_config::SdkConfig> {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        assert!(
            std::env::var_os("METER_REQUIRE_MOTO").is_none(),
            "METER_REQUIRE_MOTO is set but AWS_ENDPOINT_URL is not"
        );
        eprintln!("skipped: no AWS_ENDPOINT_URL (scripts/test.sh starts moto)");
        return None;
    }
    Some(meter_aws::sdk_config().await)
}

/// The Timestream records the emulator holds for `database`, as they were sent.
pub async fn timestream_records(database: &str) -> Vec<serde_json::Value> {
    moto_state().await["timestreamwrite"]["TimestreamTable"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["db_name"] == database)
        .flat_map(|t| t["records"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// One DynamoDB Streams call as JSON on the wire (the SDK has no Streams client here, and
/// the wire JSON is what Lambda's poller turns into events).
async fn streams(endpoint: &str, op: &str, body: serde_json::Value) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .post(endpoint)
        .header("x-amz-target", format!("DynamoDBStreams_20120810.{op}"))
        .header("content-type", "application/x-amz-json-1.0")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261123/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("DynamoDB Streams {op}: {e}"));
    resp.json()
        .await
        .unwrap_or_else(|e| panic!("DynamoDB Streams {op} answered no JSON: {e}"))
}

/// Every record of a table's stream in the emulator at `endpoint`, as the Lambda event
/// the stream's poller would deliver (with `eventSourceARN`, which GetRecords lacks).
pub async fn stream_event(
    endpoint: &str,
    stream_arn: &str,
) -> aws_lambda_events::event::dynamodb::Event {
    use serde_json::json;
    let described = streams(endpoint, "DescribeStream", json!({"StreamArn": stream_arn})).await;
    let mut records = Vec::new();
    for shard in described["StreamDescription"]["Shards"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let it = streams(
            endpoint,
            "GetShardIterator",
            json!({"StreamArn": stream_arn, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await;
        let mut iterator = it["ShardIterator"].clone();
        // GetRecords answers at most 1,000 records; follow the shard to its end.
        while iterator.is_string() {
            let got = streams(endpoint, "GetRecords", json!({"ShardIterator": iterator})).await;
            let page = got["Records"].as_array().cloned().unwrap_or_default();
            if page.is_empty() {
                break;
            }
            for mut r in page {
                r["eventSourceARN"] = json!(stream_arn);
                records.push(r);
            }
            iterator = got["NextShardIterator"].clone();
        }
    }
    serde_json::from_value(json!({ "Records": records }))
        .unwrap_or_else(|e| panic!("the stream's records are not a Lambda event: {e}"))
}

/// The emulator's whole state (moto's `/moto-api/data.json`). moto answers that dump with
/// a 500 now and then while other requests change its state, so a failed read is tried
/// again a few times.
pub async fn moto_state() -> serde_json::Value {
    let url = format!(
        "{}/moto-api/data.json",
        std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL")
    );
    let mut last = String::new();
    for _ in 0..10 {
        let resp = match reqwest::get(&url).await {
            Ok(r) => r,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        match resp.json::<serde_json::Value>().await {
            Ok(data) => return data,
            Err(e) => last = e.to_string(),
        }
    }
    panic!("the emulator's state could not be read: {last}");
}

/// An interceptor counting each operation's attempts on the wire, and the bytes of their
/// request bodies; add it to a client's config
/// (`config::Builder::from(&sdk).interceptor(counter.clone())`).
#[derive(Debug, Clone, Default)]
#[allow(clippy::type_complexity)] // reason: test support, read through its methods
pub struct CountCalls(
    Arc<Mutex<HashMap<String, (usize, usize)>>>,
    Arc<Mutex<Vec<(String, String)>>>,
    Arc<Mutex<bool>>,
);

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "CountCalls"
    }
    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(m) = cfg.load::<Metadata>() {
            let body = ctx.request().body().bytes().unwrap_or_default();
            let bytes = body.len();
            if *self
                .2
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
            {
                self.1
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((
                        m.name().to_owned(),
                        String::from_utf8_lossy(body).into_owned(),
                    ));
            }
            let mut counts = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = counts.entry(m.name().to_owned()).or_default();
            entry.0 += 1;
            entry.1 += bytes;
        }
        Ok(())
    }
}

impl CountCalls {
    /// The request bodies of an operation sent so far (only when built with
    /// [`CountCalls::keeping_bodies`]).
    pub fn bodies(&self, operation: &str) -> Vec<String> {
        self.1
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(op, _)| op == operation)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// A counter that also keeps every request body, to check what was sent where the
    /// emulator is too slow to read it all back.
    pub fn keeping_bodies() -> Self {
        let c = Self::default();
        *c.2.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        c
    }

    /// How many requests of an operation (`BatchWriteItem`) were sent.
    pub fn get(&self, operation: &str) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(operation)
            .map_or(0, |c| c.0)
    }

    /// The bytes of the request bodies of an operation sent so far.
    pub fn bytes(&self, operation: &str) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(operation)
            .map_or(0, |c| c.1)
    }
}

/// An interceptor that answers the first `times` attempts of one operation with a canned
/// HTTP response instead of the emulator's (a throttle, a recorded partial failure), to
/// exercise paths the emulator never takes. The request still reaches the emulator.
#[derive(Debug, Clone)]
pub struct Fault {
    operation: &'static str,
    status: u16,
    body: String,
    content_type: &'static str,
    left: Arc<Mutex<usize>>,
}

impl Fault {
    /// Replaces the answer to the first `times` attempts of `operation` (`BatchWriteItem`)
    /// with `status` and `body` (JSON, sent as `content_type`).
    pub fn new(
        operation: &'static str,
        times: usize,
        status: u16,
        content_type: &'static str,
        body: impl Into<String>,
    ) -> Self {
        Self {
            operation,
            status,
            body: body.into(),
            content_type,
            left: Arc::new(Mutex::new(times)),
        }
    }

    /// How many replacements are still to come.
    pub fn left(&self) -> usize {
        *self
            .left
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Intercept for Fault {
    fn name(&self) -> &'static str {
        "Fault"
    }
    fn modify_before_deserialization(
        &self,
        ctx: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<Metadata>().map(Metadata::name) != Some(self.operation) {
            return Ok(());
        }
        {
            let mut left = self
                .left
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *left == 0 {
                return Ok(());
            }
            *left -= 1;
        }
        let mut resp = aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(self.status)?,
            aws_smithy_types::body::SdkBody::from(self.body.clone()),
        );
        resp.headers_mut().insert("content-type", self.content_type);
        *ctx.response_mut() = resp;
        Ok(())
    }
}
