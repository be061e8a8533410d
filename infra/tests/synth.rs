//! The synthesised templates: snapshots (template changes show as a diff), the synthesis checks
//! firing on broken templates, and the stack's invariants.

use std::collections::BTreeSet;
use std::path::PathBuf;

use infra::checks::check;
use infra::{render, synth, HistoryStore, StackOptions, VARIANTS};
use meter_core::contract;
use serde_json::{json, Value};

fn template(history: HistoryStore) -> Value {
    synth(StackOptions { history }).unwrap_or_else(|p| panic!("synthesis checks failed: {p:?}"))
}

fn expected(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/expected")
        .join(file)
}

#[test]
fn templates_match_their_snapshots() {
    // UPDATE_SNAPSHOTS=1 cargo test -p infra rewrites them; review the diff before committing.
    for (history, file) in VARIANTS {
        let text = render(&template(history));
        let path = expected(file);
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if want != text {
            let first = want
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| want.lines().count().min(text.lines().count()));
            let show = |s: &str| {
                s.lines()
                    .skip(first.saturating_sub(3))
                    .take(8)
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            panic!(
                "{file} changed from line {}; rerun with UPDATE_SNAPSHOTS=1 and review the diff.\n--- snapshot\n{}\n+++ now\n{}",
                first + 1,
                show(&want),
                show(&text)
            );
        }
    }
}

#[test]
fn synthesis_is_deterministic() {
    for (history, _) in VARIANTS {
        assert_eq!(render(&template(history)), render(&template(history)));
    }
}

fn problems_after(edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut t = template(HistoryStore::DynamoDb);
    edit(&mut t);
    check(&t).into_iter().map(|p| p.0).collect()
}

fn one_problem(edit: impl FnOnce(&mut Value), wanted: &str) {
    let problems = problems_after(edit);
    assert!(
        problems.iter().any(|p| p.contains(wanted)),
        "wanted {wanted:?} in {problems:?}"
    );
}

#[test]
fn the_checks_fire_on_broken_templates() {
    one_problem(
        |t| {
            t["Resources"]["FetchQueue"]["Properties"]["Tags"] =
                json!([{"Key": "x", "Value": {"Ref": "Nowhere"}}])
        },
        "references Nowhere",
    );
    one_problem(
        |t| {
            t["Resources"]["ApiFunction"]["Properties"]["Description"] =
                json!({"Fn::Sub": "${Missing.Arn}"})
        },
        "references Missing",
    );
    one_problem(
        |t| t["Outputs"]["X"] = json!({"Value": {"Ref": "Gone"}}),
        "an output references Gone",
    );
    one_problem(
        |t| t["Resources"]["FetchDeadLetterQueue"]["DependsOn"] = json!(["FetchQueue"]),
        "circular dependency",
    );
    one_problem(
        |t| t["Resources"]["FetchQueue"]["Properties"]["VisibilityTimeout"] = json!(600),
        "visibility timeout 600 s is under 6 x FetchFunction's timeout (120 s)",
    );
    one_problem(
        |t| {
            t["Resources"]["FetchMapping"]["Properties"]
                .as_object_mut()
                .unwrap()
                .remove("FunctionResponseTypes");
        },
        "FetchMapping: the mapping lacks FunctionResponseTypes ReportBatchItemFailures",
    );
    one_problem(
        |t| {
            t["Resources"]["WebhookFunction"]["Properties"]
                .as_object_mut()
                .unwrap()
                .remove("LoggingConfig");
        },
        "WebhookFunction: no log group of its own",
    );
    one_problem(
        |t| {
            t["Resources"]["ApiRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
                .as_array_mut()
                .unwrap()
                .push(json!({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}));
        },
        "s3:GetObject is granted on every resource",
    );
    one_problem(
        |t| {
            t["Resources"]["ApiRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
                .as_array_mut()
                .unwrap()
                .push(json!({"Effect": "Allow", "Action": "dynamodb:*", "Resource": {"Fn::GetAtt": ["RegistryTable", "Arn"]}}));
        },
        "wildcard action",
    );
    one_problem(
        |t| t["Resources"]["Bad-Id"] = json!({"Type": "AWS::SQS::Queue"}),
        "Bad-Id: a logical id is 1-255 letters and digits",
    );
}

fn statements(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(m) if m.contains_key("Effect") => out.push(v.clone()),
        Value::Object(m) => m.values().for_each(|x| statements(x, out)),
        Value::Array(a) => a.iter().for_each(|x| statements(x, out)),
        _ => {}
    }
}

#[test]
fn every_iam_statement_is_scoped() {
    for (history, _) in VARIANTS {
        let t = template(history);
        let mut all = Vec::new();
        statements(&t["Resources"], &mut all);
        assert!(all.len() > 20);
        for s in all {
            let actions: Vec<String> = match &s["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
                _ => panic!("{s}"),
            };
            assert!(actions.iter().all(|a| !a.contains('*')), "{s}");
            if s["Resource"] == "*" {
                assert!(
                    actions
                        .iter()
                        .all(|a| infra::iam::WILDCARD_ACTIONS.contains(&a.as_str())),
                    "{s}"
                );
            }
            if actions.iter().any(|a| a == "cloudwatch:PutMetricData") {
                assert!(
                    s["Condition"]["StringEquals"]["cloudwatch:namespace"].is_string(),
                    "{s}"
                );
            }
        }
    }
}

#[test]
fn the_stack_keeps_its_promises() {
    let t = template(HistoryStore::Timestream);
    let r = &t["Resources"];
    assert_eq!(t["Parameters"]["HistoryStore"]["Default"], "timestream");
    assert_eq!(
        template(HistoryStore::DynamoDb)["Parameters"]["HistoryStore"]["Default"],
        "dynamodb"
    );
    // Every function: arm64, provided.al2023, code from a parameter key, its own log group.
    let known: BTreeSet<&str> = [
        contract::cloud::ENV_HISTORY_STORE,
        contract::cloud::ENV_READINGS_TABLE,
        contract::cloud::ENV_FORECASTS_TABLE,
        contract::cloud::ENV_REGISTRY_TABLE,
        contract::cloud::ENV_COUNTERS_TABLE,
        contract::cloud::ENV_TIMESTREAM_DATABASE,
        contract::cloud::ENV_TIMESTREAM_TABLE,
        contract::cloud::ENV_FETCH_QUEUE_URL,
        contract::cloud::ENV_METRIC_NAMESPACE,
        contract::cloud::ENV_API_TOKEN_SECRET,
        contract::cloud::ENV_WEBHOOK_SECRET_SECRET,
        contract::cloud::ENV_API_AUTH,
        contract::cloud::ENV_WRITE_TOKEN_SECRET,
        contract::cloud::ENV_QUARANTINE_BUCKET,
        contract::cloud::ENV_MQTT_MAPPING,
        contract::ENV_SST_SECRET_ID,
    ]
    .into();
    let functions: Vec<(&String, &Value)> = r
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["Type"] == "AWS::Lambda::Function")
        .collect();
    assert_eq!(functions.len(), contract::cloud::FUNCTIONS.len());
    for (id, f) in functions {
        let p = &f["Properties"];
        assert_eq!(p["Architectures"], json!(["arm64"]), "{id}");
        assert_eq!(p["Runtime"], "provided.al2023", "{id}");
        assert!(
            p["Code"]["S3Key"]["Ref"]
                .as_str()
                .unwrap()
                .ends_with("CodeKey"),
            "{id}"
        );
        for k in p["Environment"]["Variables"].as_object().unwrap().keys() {
            assert!(
                known.contains(k.as_str()),
                "{id} sets {k}, which meter_core::contract does not name"
            );
        }
    }
    // The fetch queue: visibility of 6 x the fetch timeout, a DLQ after 5 receives.
    assert_eq!(r["FetchQueue"]["Properties"]["VisibilityTimeout"], 720);
    assert_eq!(
        r["FetchQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"],
        5
    );
    assert_eq!(
        r["FetchMapping"]["Properties"]["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    // The counters stream: new and old images, bisect, bounded retries, an on-failure queue.
    assert_eq!(
        r["CountersTable"]["Properties"]["StreamSpecification"]["StreamViewType"],
        "NEW_AND_OLD_IMAGES"
    );
    let m = &r["CountersStreamMapping"]["Properties"];
    assert_eq!(
        (&m["BisectBatchOnFunctionError"], &m["MaximumRetryAttempts"]),
        (&json!(true), &json!(5))
    );
    assert!(m["DestinationConfig"]["OnFailure"]["Destination"].is_object());
    // Seed key names, from the contract.
    assert_eq!(
        r["CountersTable"]["Properties"]["KeySchema"][0]["AttributeName"],
        "Endpoint"
    );
    assert_eq!(
        r["CountersTable"]["Properties"]["KeySchema"][1]["AttributeName"],
        "EventHour"
    );
    assert_eq!(
        r["ForecastsTable"]["Properties"]["TimeToLiveSpecification"]["AttributeName"],
        "expiry"
    );
    // Timestream only under its condition, with magnetic writes for backfill.
    assert_eq!(r["TimestreamTable"]["Condition"], "UseTimestream");
    assert_eq!(
        r["TimestreamTable"]["Properties"]["MagneticStoreWriteProperties"]
            ["EnableMagneticStoreWrites"],
        true
    );
    assert_eq!(r["ReadingsTable"]["Condition"], "UseDynamoDB");
    // The bucket: encrypted, private, versioned, events through EventBridge (no cycle).
    let b = &r["ImportBucket"]["Properties"];
    assert_eq!(b["VersioningConfiguration"]["Status"], "Enabled");
    assert_eq!(
        b["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"],
        true
    );
    assert_eq!(
        b["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"],
        true
    );
    // The API URL is AWS_IAM by default; public URLs get both permissions.
    assert_eq!(t["Parameters"]["ApiAuthType"]["Default"], "AWS_IAM");
    assert_eq!(
        r["ApiUrlPublicInvokeUrl"]["Properties"]["FunctionUrlAuthType"],
        "NONE"
    );
    assert_eq!(
        r["ApiUrlPublicInvoke"]["Properties"]["InvokedViaFunctionUrl"],
        true
    );
    // Every checkov skip carries its reason.
    for (id, res) in r.as_object().unwrap() {
        for skip in res
            .pointer("/Metadata/checkov/skip")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            assert!(
                skip["comment"].as_str().is_some_and(|c| c.len() > 20),
                "{id}: {skip}"
            );
        }
    }
    for out in [
        "ApiUrl",
        "WebhookUrl",
        "ImportBucketName",
        "RegistryTableName",
        "FetchQueueUrl",
        "SstSecretArn",
    ] {
        assert!(t["Outputs"][out].is_object(), "{out}");
    }
}

/// The function's logical name for a resource id such as `StreamMetricsFunction`.
fn role_of(resource: &str) -> Option<&'static str> {
    contract::cloud::FUNCTIONS.into_iter().find(|name| {
        let pascal: String = name
            .split('-')
            .map(|w| w[..1].to_uppercase() + &w[1..])
            .collect();
        resource == format!("{pascal}Function")
    })
}

#[test]
fn the_alarms_notify_and_with_the_dashboard_watch_metrics_the_functions_write() {
    use contract::cloud::ops;
    let t = template(HistoryStore::DynamoDb);
    let r = t["Resources"].as_object().unwrap();
    let mut watched = BTreeSet::new();
    // Alarms: single metrics and the metric-math ones.
    for (id, a) in r
        .iter()
        .filter(|(_, v)| v["Type"] == "AWS::CloudWatch::Alarm")
    {
        let p = &a["Properties"];
        // Every alarm notifies someone: the topic, and the address when one is given.
        assert_eq!(p["AlarmActions"], json!([{"Ref": "AlarmTopic"}]), "{id}");
        let mut metrics = vec![p.clone()];
        for q in p["Metrics"].as_array().into_iter().flatten() {
            if q["MetricStat"].is_object() {
                metrics.push(q["MetricStat"]["Metric"].clone());
            }
        }
        for m in metrics.iter().filter(|m| m["Namespace"] == ops::NAMESPACE) {
            let dims = m["Dimensions"].as_array().unwrap();
            assert_eq!(dims.len(), 1, "{id}");
            assert_eq!(dims[0]["Name"], ops::DIMENSION, "{id}");
            let function = dims[0]["Value"]["Ref"].as_str().unwrap();
            let role = role_of(function).unwrap_or_else(|| panic!("{id}: {function}"));
            watched.insert((
                id.clone(),
                m["MetricName"].as_str().unwrap().to_owned(),
                role,
            ));
        }
    }
    // The dashboard's lines: [namespace, metric, dimension, "${LogicalId}"].
    let body: Value = serde_json::from_str(
        r["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mut lines = 0;
    for w in body["widgets"].as_array().unwrap() {
        for m in w["properties"]["metrics"].as_array().unwrap() {
            if m[0] != ops::NAMESPACE {
                continue;
            }
            lines += 1;
            assert_eq!(m[2], ops::DIMENSION);
            let function = m[3]
                .as_str()
                .unwrap()
                .trim_start_matches("${")
                .trim_end_matches('}');
            let role = role_of(function).unwrap_or_else(|| panic!("dashboard: {function}"));
            watched.insert(("Dashboard".into(), m[1].as_str().unwrap().to_owned(), role));
        }
    }
    assert_eq!(r["AlarmEmailSubscription"]["Condition"], "HasAlarmEmail");
    assert_eq!(
        r["AlarmEmailSubscription"]["Properties"]["Endpoint"],
        json!({"Ref": "AlarmEmail"})
    );
    assert!(lines >= 15, "{lines} dashboard lines");
    let in_alarms = watched.iter().filter(|(id, ..)| id != "Dashboard").count();
    assert!(in_alarms >= 11, "{in_alarms} alarm metrics");
    for (id, metric, role) in &watched {
        assert!(
            ops::writes(role, metric),
            "{id} watches {metric} of {role}, which that function does not write"
        );
    }
    // Every metric a function writes is on the dashboard.
    for (metric, roles) in ops::WRITTEN_BY {
        for role in roles {
            assert!(
                watched
                    .iter()
                    .any(|(id, m, r)| id == "Dashboard" && m == metric && r == role),
                "the dashboard does not show {metric} of {role}"
            );
        }
    }
}

/// The IoT topic rule: its SQL, golden (moto does not route IoT messages, so the ingest
/// function's tests feed it the shape this SQL produces), its queue and error action, and a
/// role that may send to those two queues only.
#[test]
fn the_topic_rule_sends_every_message_with_its_topic_to_the_ingest_queue() {
    let t = template(HistoryStore::DynamoDb);
    let r = &t["Resources"];
    let rule = &r["IngestTopicRule"]["Properties"]["TopicRulePayload"];
    assert_eq!(
        rule["Sql"],
        json!({"Fn::Sub": "SELECT encode(*, 'base64') AS payload, topic() AS topic, timestamp() AS received FROM '${MqttTopicFilter}'"})
    );
    assert_eq!(
        contract::cloud::iot::sql("meters/#"),
        "SELECT encode(*, 'base64') AS payload, topic() AS topic, timestamp() AS received FROM 'meters/#'"
    );
    assert_eq!(rule["AwsIotSqlVersion"], "2016-03-23");
    assert_eq!(t["Parameters"]["MqttTopicFilter"]["Default"], "meters/#");
    let action = &rule["Actions"][0]["Sqs"];
    assert_eq!(action["QueueUrl"], json!({"Ref": "IngestQueue"}));
    assert_eq!(action["UseBase64"], false);
    assert_eq!(
        rule["ErrorAction"]["Sqs"]["QueueUrl"],
        json!({"Ref": "IngestDeadLetterQueue"})
    );
    let role = &r["IngestTopicRuleRole"]["Properties"];
    let statements = role["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    let resources: Vec<&Value> = statements.iter().map(|s| &s["Resource"]).collect();
    assert_eq!(
        resources,
        vec![
            &json!({"Fn::GetAtt": ["IngestQueue", "Arn"]}),
            &json!({"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]})
        ]
    );
    // The queue covers 6 x the function's timeout and hands over to its DLQ after 5 receives;
    // the mapping answers partial batches.
    let timeout = r["IngestFunction"]["Properties"]["Timeout"]
        .as_u64()
        .unwrap();
    assert_eq!(
        r["IngestQueue"]["Properties"]["VisibilityTimeout"].as_u64(),
        Some(6 * timeout)
    );
    assert_eq!(
        r["IngestQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"],
        5
    );
    assert_eq!(
        r["IngestMapping"]["Properties"]["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    // The write function is its own: no grant on the registry, forecasts or counters.
    let write_policy = r["WriteRole"]["Properties"]["Policies"][0]["PolicyDocument"].to_string();
    for table in [
        "RegistryTable",
        "ForecastsTable",
        "CountersTable",
        "ApiTokenSecret",
    ] {
        assert!(
            !write_policy.contains(table),
            "the write role names {table}"
        );
    }
    assert!(write_policy.contains("WriteTokenSecret"));
    assert_eq!(
        r["WriteUrl"]["Properties"]["AuthType"],
        json!({"Ref": "WriteAuthType"})
    );
}
