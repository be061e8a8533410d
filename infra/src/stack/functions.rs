//! The eight functions, each with its log group, least-privilege role and environment.

use meter_core::contract::cloud as names;
use serde_json::json;

use super::queues::{Queues, FETCH_TIMEOUT, INGEST_TIMEOUT};
use super::secrets::Secrets;
use super::tables::Tables;
use super::{
    code_key_parameter, function_id, pascal, API_PUBLIC, HAS_MQTT_MAPPING, USE_DYNAMODB,
    USE_TIMESTREAM,
};
use crate::cfn::{kind, skip_checkov, Expr, Handle, Template};
use crate::iam::{policy, Grant};

/// One function's shape.
struct FnSpec {
    name: &'static str,
    memory: u32,
    timeout: u32,
    env: Vec<(&'static str, Expr)>,
    grants: Vec<Grant>,
    dead_letter: Option<Expr>,
}

/// A function's resources.
pub(crate) struct Func {
    pub(crate) function: Handle<kind::Function>,
}

/// The stack's functions.
pub(super) struct Functions {
    pub(super) enqueue: Func,
    pub(super) fetch: Func,
    pub(super) import: Func,
    pub(super) webhook: Func,
    pub(super) stream_metrics: Func,
    pub(super) api: Func,
    pub(super) ingest: Func,
    pub(super) write: Func,
}

impl Functions {
    /// Every function, in the order of `names::FUNCTIONS`.
    pub(super) fn all(&self) -> [&Func; 8] {
        [
            &self.enqueue,
            &self.fetch,
            &self.import,
            &self.webhook,
            &self.stream_metrics,
            &self.api,
            &self.ingest,
            &self.write,
        ]
    }
}

/// The log group, role and function of a spec (the construct every function uses).
fn lambda(t: &mut Template, spec: FnSpec) -> Func {
    let base = pascal(spec.name);
    let group: Handle<kind::LogGroup> = t.add(
        &format!("{base}LogGroup"),
        "AWS::Logs::LogGroup",
        json!({"RetentionInDays": Expr::param("LogRetentionDays").into_value()}),
    );
    t.resource(&group).deletion_policy = Some("Delete");
    skip_checkov(t.resource(&group), "CKV_AWS_158", "Log groups use the account's default encryption; a CMK per group adds cost without a stated need.");
    skip_checkov(
        t.resource(&group),
        "CKV_AWS_338",
        "Retention is a parameter (default 14 days); a year is not required for operational logs.",
    );
    let mut grants = spec.grants;
    grants.push(Grant::Logs(group.arn()));
    if let Some(dlq) = &spec.dead_letter {
        grants.push(Grant::SqsSend(dlq.clone()));
    }
    let role: Handle<kind::Role> = t.add(
        &format!("{base}Role"),
        "AWS::IAM::Role",
        json!({
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
            },
            "Policies": [{"PolicyName": "least-privilege", "PolicyDocument": policy(&grants)}],
        }),
    );
    let mut env = serde_json::Map::new();
    for (k, v) in spec.env {
        env.insert(k.to_owned(), v.into_value());
    }
    let mut props = json!({
        "Architectures": ["arm64"],
        "Runtime": "provided.al2023",
        "Handler": "bootstrap",
        "MemorySize": spec.memory,
        "Timeout": spec.timeout,
        "Role": role.arn().into_value(),
        "Code": {
            "S3Bucket": Expr::param("CodeBucket").into_value(),
            "S3Key": Expr::param(&code_key_parameter(spec.name)).into_value(),
        },
        "LoggingConfig": {"LogGroup": group.name().into_value(), "LogFormat": "JSON"},
        "Environment": {"Variables": env},
    });
    if let Some(dlq) = spec.dead_letter {
        props["DeadLetterConfig"] = json!({"TargetArn": dlq.into_value()});
    }
    let function: Handle<kind::Function> =
        t.add(&function_id(spec.name), "AWS::Lambda::Function", props);
    let r = t.resource(&function);
    skip_checkov(r, "CKV_AWS_117", "Functions call only public AWS endpoints and SST Cloud; a VPC would add NAT cost and cold-start time.");
    skip_checkov(
        r,
        "CKV_AWS_173",
        "Environment variables hold names and ARNs only; secrets live in Secrets Manager.",
    );
    skip_checkov(r, "CKV_AWS_115", "Concurrency is capped on the event source mappings; reserved concurrency fails on new accounts with low quotas.");
    skip_checkov(r, "CKV_AWS_272", "Code signing needs a signing profile per account; packages are content-addressed in the deploy bucket.");
    if r.properties.get("DeadLetterConfig").is_none() {
        skip_checkov(r, "CKV_AWS_116", "Invoked synchronously or by an event source mapping; failures go to the source's own dead-letter queue.");
    }
    Func { function }
}

/// Adds the functions.
pub(super) fn add(
    t: &mut Template,
    tables: &Tables,
    queues: &Queues,
    secrets: &Secrets,
    bucket: &Handle<kind::Bucket>,
) -> Functions {
    let history_env = |env: &mut Vec<(&'static str, Expr)>| {
        env.push((names::ENV_HISTORY_STORE, Expr::param("HistoryStore")));
        env.push((
            names::ENV_READINGS_TABLE,
            Expr::when(USE_DYNAMODB, tables.readings.name(), Expr::no_value()),
        ));
        env.push((
            names::ENV_TIMESTREAM_DATABASE,
            Expr::when(USE_TIMESTREAM, tables.ts_db.name(), Expr::no_value()),
        ));
        env.push((
            names::ENV_TIMESTREAM_TABLE,
            Expr::when(USE_TIMESTREAM, tables.ts_table.name(), Expr::no_value()),
        ));
    };
    // A DynamoDB writer reads too: it recomputes the stored rollups from the readings.
    let history_write = vec![
        Grant::When(
            USE_DYNAMODB,
            Box::new(Grant::DdbWrite(tables.readings.arn())),
        ),
        Grant::When(
            USE_DYNAMODB,
            Box::new(Grant::DdbRead(tables.readings.arn())),
        ),
        Grant::When(
            USE_TIMESTREAM,
            Box::new(Grant::TimestreamWrite(tables.ts_table.arn())),
        ),
    ];
    let history_read = vec![
        Grant::When(
            USE_DYNAMODB,
            Box::new(Grant::DdbRead(tables.readings.arn())),
        ),
        Grant::When(
            USE_TIMESTREAM,
            Box::new(Grant::TimestreamQuery(tables.ts_table.arn())),
        ),
    ];

    let enqueue = lambda(
        t,
        FnSpec {
            name: "enqueue",
            memory: 256,
            timeout: 60,
            env: vec![
                (names::ENV_REGISTRY_TABLE, tables.registry.name()),
                (names::ENV_FETCH_QUEUE_URL, queues.fetch_queue.url()),
            ],
            grants: vec![
                Grant::DdbRead(tables.registry.arn()),
                Grant::SqsSend(queues.fetch_queue.arn()),
            ],
            dead_letter: None,
        },
    );
    let mut env = vec![
        (names::ENV_REGISTRY_TABLE, tables.registry.name()),
        (names::ENV_FORECASTS_TABLE, tables.forecasts.name()),
        (
            meter_core::contract::ENV_SST_SECRET_ID,
            secrets.sst_secret.arn(),
        ),
    ];
    history_env(&mut env);
    let mut grants = vec![
        Grant::SqsConsume(queues.fetch_queue.arn()),
        Grant::DdbRead(tables.registry.arn()),
        Grant::DdbWrite(tables.forecasts.arn()),
        Grant::SecretRead(secrets.sst_secret.arn()),
    ];
    grants.extend(history_write.clone());
    let fetch = lambda(
        t,
        FnSpec {
            name: "fetch",
            memory: 512,
            timeout: FETCH_TIMEOUT,
            env,
            grants,
            dead_letter: None,
        },
    );

    let mut env = vec![];
    history_env(&mut env);
    let mut grants = vec![
        Grant::S3Read(bucket.arn()),
        Grant::S3Write(bucket.arn(), names::QUARANTINE_PREFIX),
        Grant::S3Write(bucket.arn(), names::RESUME_PREFIX),
    ];
    grants.extend(history_write.clone());
    let import = lambda(
        t,
        FnSpec {
            name: "import",
            memory: 1024,
            timeout: 900,
            env,
            grants,
            dead_letter: Some(queues.import_dlq.arn()),
        },
    );

    let webhook = lambda(
        t,
        FnSpec {
            name: "webhook",
            memory: 256,
            timeout: 10,
            env: vec![
                (names::ENV_COUNTERS_TABLE, tables.counters.name()),
                (names::ENV_WEBHOOK_SECRET_SECRET, secrets.hook_secret.arn()),
            ],
            grants: vec![
                Grant::DdbWrite(tables.counters.arn()),
                Grant::SecretRead(secrets.hook_secret.arn()),
            ],
            dead_letter: None,
        },
    );
    let namespace = "MetricNamespace";
    let stream_metrics = lambda(
        t,
        FnSpec {
            name: "stream-metrics",
            memory: 256,
            timeout: 60,
            env: vec![(names::ENV_METRIC_NAMESPACE, Expr::param(namespace))],
            grants: vec![
                Grant::DdbStream(tables.counters.stream_arn()),
                Grant::PutMetrics(names::DEFAULT_METRIC_NAMESPACE.into()),
                Grant::SqsSend(queues.stream_dlq.arn()),
            ],
            dead_letter: None,
        },
    );
    let mut env = vec![
        (names::ENV_REGISTRY_TABLE, tables.registry.name()),
        (names::ENV_FORECASTS_TABLE, tables.forecasts.name()),
        (names::ENV_COUNTERS_TABLE, tables.counters.name()),
        (names::ENV_API_TOKEN_SECRET, secrets.api_secret.arn()),
        (
            names::ENV_API_AUTH,
            Expr::when(API_PUBLIC, Expr::lit("bearer"), Expr::lit("iam")),
        ),
    ];
    history_env(&mut env);
    let mut grants = vec![
        Grant::DdbRead(tables.registry.arn()),
        Grant::DdbRead(tables.forecasts.arn()),
        Grant::DdbRead(tables.counters.arn()),
        Grant::SecretRead(secrets.api_secret.arn()),
    ];
    grants.extend(history_read);
    let api = lambda(
        t,
        FnSpec {
            name: "api",
            memory: 512,
            timeout: 30,
            env,
            grants,
            dead_letter: None,
        },
    );

    // The push paths write readings and read the series catalogue (for messages that leave out
    // unit and kind), and keep what they reject under their own quarantine prefix.
    let mut push_grants = history_write.clone();
    push_grants.push(Grant::When(
        USE_TIMESTREAM,
        Box::new(Grant::TimestreamQuery(tables.ts_table.arn())),
    ));
    let mut env = vec![
        (names::ENV_QUARANTINE_BUCKET, bucket.name()),
        (
            names::ENV_MQTT_MAPPING,
            Expr::when(
                HAS_MQTT_MAPPING,
                Expr::param("MqttMapping"),
                Expr::no_value(),
            ),
        ),
    ];
    history_env(&mut env);
    let mut grants = vec![
        Grant::SqsConsume(queues.ingest_queue.arn()),
        Grant::S3Write(bucket.arn(), names::MQTT_QUARANTINE_PREFIX),
    ];
    grants.extend(push_grants.clone());
    let ingest = lambda(
        t,
        FnSpec {
            name: "ingest",
            memory: 512,
            timeout: INGEST_TIMEOUT,
            env,
            grants,
            dead_letter: None,
        },
    );
    // Its own function rather than a route of the api: the api keeps read-only grants.
    let mut env = vec![
        (names::ENV_QUARANTINE_BUCKET, bucket.name()),
        (names::ENV_WRITE_TOKEN_SECRET, secrets.write_secret.arn()),
    ];
    history_env(&mut env);
    let mut grants = vec![
        Grant::SecretRead(secrets.write_secret.arn()),
        Grant::S3Write(bucket.arn(), names::WRITE_QUARANTINE_PREFIX),
    ];
    grants.extend(push_grants);
    let write = lambda(
        t,
        FnSpec {
            name: "write",
            memory: 1024,
            timeout: 30,
            env,
            grants,
            dead_letter: None,
        },
    );

    Functions {
        enqueue,
        fetch,
        import,
        webhook,
        stream_metrics,
        api,
        ingest,
        write,
    }
}
