//! End to end: the five seed pipelines hydrated through the local stack. The test target
//! `tests/pipelines.rs` drives them (`scripts/e2e.sh`); this library holds [`deploy`], the
//! local deployment of the synthesised template into the AWS emulator.

pub mod deploy;

use std::collections::BTreeMap;
use std::future::Future;

use meter_lambda::Env;

/// The configuration lookup a function's `Config::from_env` reads, over a resolved environment.
pub fn lookup(env: &BTreeMap<String, String>) -> Env<impl Fn(&str) -> Option<String> + '_> {
    Env(move |k: &str| env.get(k).cloned())
}

/// What calling a Function URL handler can fail with.
#[derive(Debug, thiserror::Error)]
#[error("reading the handler's response: {0}")]
pub struct CallError(#[source] axum::Error);

/// Calls a Function URL handler as the URL would; answers the status and the body.
pub async fn call<F, Fut>(
    handler: F,
    req: lambda_http::Request,
) -> Result<(u16, Vec<u8>), CallError>
where
    F: FnOnce(lambda_http::Request) -> Fut,
    Fut: Future<Output = Result<lambda_http::Response<axum::body::Body>, std::convert::Infallible>>,
{
    let resp = match handler(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .map_err(CallError)?;
    Ok((status, body.to_vec()))
}

/// One item of a DynamoDB table.
pub type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

/// Every item of a table, page after page.
pub async fn scan_all(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<
    Vec<Item>,
    aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::scan::ScanError>,
> {
    let mut items = Vec::new();
    let mut page = None;
    loop {
        let out = ddb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(page)
            .send()
            .await?;
        items.extend(out.items.unwrap_or_default());
        page = out.last_evaluated_key;
        if page.is_none() {
            return Ok(items);
        }
    }
}

/// One receive of the SQS poller: up to 10 waiting messages, with their system attributes.
pub async fn receive(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<
    Vec<aws_sdk_sqs::types::Message>,
    aws_sdk_sqs::error::SdkError<aws_sdk_sqs::operation::receive_message::ReceiveMessageError>,
> {
    let got = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await?;
    Ok(got.messages.unwrap_or_default())
}

/// The Lambda SQS event the poller builds from received messages (`aws_lambda_events`'
/// `SqsEvent` shape).
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> serde_json::Value {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let attributes: BTreeMap<String, String> = m
                .attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), v))
                .collect();
            serde_json::json!({
                "messageId": m.message_id, "receiptHandle": m.receipt_handle,
                "body": m.body, "md5OfBody": m.md5_of_body, "attributes": attributes,
                "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn, "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// The sum of a CloudWatch metric's hourly datapoints from `from` up to the end of the hour
/// starting at `last_hour` (seed 002's presses: one metric per endpoint).
pub async fn hourly_sum(
    cw: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    metric: &str,
    from: chrono::DateTime<chrono::Utc>,
    last_hour: chrono::DateTime<chrono::Utc>,
) -> Result<
    f64,
    aws_sdk_cloudwatch::error::SdkError<
        aws_sdk_cloudwatch::operation::get_metric_statistics::GetMetricStatisticsError,
    >,
> {
    let stats = cw
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(metric)
        .start_time(aws_smithy_types::DateTime::from_secs(from.timestamp()))
        .end_time(aws_smithy_types::DateTime::from_secs(
            last_hour.timestamp() + 3600,
        ))
        .period(3600)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
        .send()
        .await?;
    Ok(stats.datapoints().iter().filter_map(|d| d.sum()).sum())
}
