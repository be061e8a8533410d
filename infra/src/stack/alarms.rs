//! Alarms, sent to one topic: dead-letter queues, function errors, and the functions' own
//! metrics where a person should look.

use meter_core::contract::cloud::{self as names, ops};
use serde_json::{json, Value};

use super::functions::{Func, Functions};
use super::queues::Queues;
use super::{pascal, HAS_ALARM_EMAIL};
use crate::cfn::{kind, skip_checkov, Expr, Handle, Template};

/// The metric an alarm watches, by one dimension, and when it fires (above `threshold` in one
/// 5-minute period).
struct Watch<'a> {
    namespace: &'a str,
    metric: &'a str,
    dimension: (&'a str, Expr),
    statistic: &'a str,
    threshold: u32,
}

fn alarm(t: &mut Template, id: &str, description: &str, watch: Watch<'_>, notify: &Value) {
    t.add::<kind::Other>(
        id,
        "AWS::CloudWatch::Alarm",
        json!({
            "AlarmDescription": description,
            "Namespace": watch.namespace,
            "MetricName": watch.metric,
            "Dimensions": [{"Name": watch.dimension.0, "Value": watch.dimension.1.into_value()}],
            "Statistic": watch.statistic,
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": watch.threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": notify,
        }),
    );
}

/// Adds the alarm topic and the alarms.
pub(super) fn add(t: &mut Template, all: &Functions, queues: &Queues) {
    // Alarms, sent to one topic, and a dashboard.
    let alarm_topic: Handle<kind::Topic> = t.add(
        "AlarmTopic",
        "AWS::SNS::Topic",
        json!({"DisplayName": Expr::sub("meterflow ${AWS::StackName} alarms").into_value()}),
    );
    // CloudWatch cannot publish to a topic under the AWS-managed SNS key, and a key of our own
    // costs more than the rest of an idle stack; the messages carry alarm names and values only.
    skip_checkov(t.resource(&alarm_topic), "CKV_AWS_26",
        "Alarm notifications carry alarm names and metric values, no data; CloudWatch cannot publish under the AWS-managed SNS key.");
    t.add::<kind::Other>(
        "AlarmTopicPolicy",
        "AWS::SNS::TopicPolicy",
        json!({
            "Topics": [alarm_topic.arn().into_value()],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "CloudWatchAlarmsOfThisAccount",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": "sns:Publish",
                    "Resource": alarm_topic.arn().into_value(),
                    "Condition": {"StringEquals": {"aws:SourceAccount": Expr::pseudo("AWS::AccountId").into_value()}},
                }],
            },
        }),
    );
    let subscription = t.add::<kind::Other>(
        "AlarmEmailSubscription",
        "AWS::SNS::Subscription",
        json!({
            "TopicArn": alarm_topic.arn().into_value(),
            "Protocol": "email",
            "Endpoint": Expr::param("AlarmEmail").into_value(),
        }),
    );
    t.resource(&subscription).condition = Some(HAS_ALARM_EMAIL.into());
    let notify = json!([alarm_topic.arn().into_value()]);
    for (id, q) in [
        ("FetchDlqAlarm", &queues.fetch_dlq),
        ("ImportDlqAlarm", &queues.import_dlq),
        ("StreamDlqAlarm", &queues.stream_dlq),
        ("ScheduleDlqAlarm", &queues.schedule_dlq),
        ("IngestDlqAlarm", &queues.ingest_dlq),
    ] {
        let watch = Watch {
            namespace: "AWS/SQS",
            metric: "ApproximateNumberOfMessagesVisible",
            dimension: ("QueueName", q.name()),
            statistic: "Maximum",
            threshold: 0,
        };
        let why = "Messages are waiting in a dead-letter queue: something kept failing.";
        alarm(t, id, why, watch, &notify);
    }
    let functions = all.all();
    for (f, name) in functions.iter().zip(names::FUNCTIONS) {
        let watch = Watch {
            namespace: "AWS/Lambda",
            metric: "Errors",
            dimension: ("FunctionName", f.function.name()),
            statistic: "Sum",
            threshold: 0,
        };
        let why = format!("The {name} function reported errors.");
        alarm(
            t,
            &format!("{}ErrorsAlarm", pascal(name)),
            &why,
            watch,
            &notify,
        );
    }
    // The functions' own metrics (EMF log lines): alarms where a person should look.
    let ops_alarm =
        |t: &mut Template, id: &str, description: &str, f: &Func, metric: &str, threshold: u32| {
            let watch = Watch {
                namespace: ops::NAMESPACE,
                metric,
                dimension: (ops::DIMENSION, f.function.name()),
                statistic: "Sum",
                threshold,
            };
            alarm(t, id, description, watch, &notify);
        };
    ops_alarm(t, "ImportRejectedRowsAlarm",
        "An imported file had rows that were quarantined: see quarantine/<key>.errors.json in the import bucket.",
        &all.import, ops::ROWS_REJECTED, 0);
    ops_alarm(t, "FetchRejectedRecordsAlarm",
        "A source answered records that are not readings, or the store refused readings for good: see the fetch function's log.",
        &all.fetch, ops::ROWS_REJECTED, 0);
    ops_alarm(
        t,
        "ApiServerErrorsAlarm",
        "The API answered 5xx: see its log.",
        &all.api,
        ops::SERVER_ERRORS,
        0,
    );
    ops_alarm(t, "WebhookServerErrorsAlarm",
        "The webhook answered 5xx (Connector resends, but check the counters table and the secret).",
        &all.webhook, ops::SERVER_ERRORS, 0);
    // A few refusals are someone's typo; dozens in five minutes are a probe or a secret
    // rotated without updating Connector.
    ops_alarm(
        t,
        "WebhookUnauthorizedAlarm",
        "The webhook refused more than 20 requests in 5 minutes for a missing or wrong secret.",
        &all.webhook,
        ops::UNAUTHORIZED,
        20,
    );
    // Retries across every function: sustained throttling means the tables' capacity or the
    // mappings' concurrency needs a look. One alarm over a sum rather than six.
    // Metric-math ids: lower case and alphanumeric.
    let ids: Vec<String> = names::FUNCTIONS
        .iter()
        .map(|n| format!("r{}", n.replace('-', "")))
        .collect();
    let mut retry_queries: Vec<Value> = functions
        .iter()
        .zip(&ids)
        .map(|(f, id)| {
            json!({
                "Id": id,
                "ReturnData": false,
                "MetricStat": {
                    "Metric": {
                        "Namespace": ops::NAMESPACE,
                        "MetricName": ops::AWS_RETRIES,
                        "Dimensions": [{"Name": ops::DIMENSION, "Value": f.function.name().into_value()}],
                    },
                    "Period": 300,
                    "Stat": "Sum",
                },
            })
        })
        .collect();
    retry_queries.push(json!({
        "Id": "retries",
        "Label": "AWS requests retried, all functions",
        "Expression": format!("SUM([{}])", ids.join(",")),
        "ReturnData": true,
    }));
    t.add::<kind::Other>(
        "AwsRetriesAlarm",
        "AWS::CloudWatch::Alarm",
        json!({
            "AlarmDescription": "The functions retried more than 100 AWS requests in 5 minutes, for 3 periods running: throttling or a failing service.",
            "Metrics": retry_queries,
            "EvaluationPeriods": 3,
            "Threshold": 100,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
                "AlarmActions": notify,
        }),
    );
}
