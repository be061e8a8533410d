//! The meterflow stack: every function with its log group and role, the schedule, the fetch
//! queue and its dead-letter queue, the import bucket and its EventBridge rule, the tables, the
//! optional Timestream database, the Function URLs, the secrets, alarms and a dashboard.

use meter_core::contract::cloud::{self as names, ops};
use serde_json::{json, Value};

use crate::cfn::{kind, skip_checkov, Expr, Handle, Template};
use crate::iam::{policy, Grant};

/// The history store a variant defaults to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryStore {
    /// DynamoDB (any account).
    DynamoDb,
    /// Amazon Timestream (accounts that had it before 2025-06-20).
    Timestream,
}

impl HistoryStore {
    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DynamoDb => "dynamodb",
            Self::Timestream => "timestream",
        }
    }
}

/// The stack's choices fixed at synthesis (the rest are CloudFormation parameters).
#[derive(Debug, Clone, Copy)]
pub struct StackOptions {
    /// The default of the `HistoryStore` parameter.
    pub history: HistoryStore,
}

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

fn pascal(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The template parameter holding a function's code key (`stream-metrics` ->
/// `StreamMetricsCodeKey`).
pub fn code_key_parameter(function: &str) -> String {
    format!("{}CodeKey", pascal(function))
}

/// Logical ids that code outside the template looks resources up by (the end-to-end run's
/// local deployment); functions are found with [`function_id`].
pub mod ids {
    pub const REGISTRY_TABLE: &str = "RegistryTable";
    pub const READINGS_TABLE: &str = "ReadingsTable";
    pub const FORECASTS_TABLE: &str = "ForecastsTable";
    pub const COUNTERS_TABLE: &str = "CountersTable";
    pub const TIMESTREAM_DATABASE: &str = "TimestreamDatabase";
    pub const TIMESTREAM_TABLE: &str = "TimestreamTable";
    pub const FETCH_QUEUE: &str = "FetchQueue";
    pub const FETCH_DEAD_LETTER_QUEUE: &str = "FetchDeadLetterQueue";
    pub const IMPORT_BUCKET: &str = "ImportBucket";
    pub const SST_SECRET: &str = "SstSecret";
    pub const API_TOKEN_SECRET: &str = "ApiTokenSecret";
    pub const WEBHOOK_SECRET: &str = "WebhookSecret";
}

/// A function's logical id (`stream-metrics` -> `StreamMetricsFunction`).
pub fn function_id(function: &str) -> String {
    format!("{}Function", pascal(function))
}

const USE_TIMESTREAM: &str = "UseTimestream";
const HAS_ALARM_EMAIL: &str = "HasAlarmEmail";
const USE_DYNAMODB: &str = "UseDynamoDB";
const API_PUBLIC: &str = "ApiIsPublic";
const WEBHOOK_PUBLIC: &str = "WebhookIsPublic";

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

fn queue(
    t: &mut Template,
    id: &str,
    visibility: u32,
    dlq: Option<&Handle<kind::Queue>>,
) -> Handle<kind::Queue> {
    let mut props = json!({
        "SqsManagedSseEnabled": true,
        "MessageRetentionPeriod": if dlq.is_none() { 1_209_600 } else { 345_600 },
        "VisibilityTimeout": visibility,
    });
    if let Some(d) = dlq {
        props["RedrivePolicy"] =
            json!({"deadLetterTargetArn": d.arn().into_value(), "maxReceiveCount": 5});
    }
    let h = t.add(id, "AWS::SQS::Queue", props);
    skip_checkov(t.resource(&h), "CKV_AWS_27", "Encrypted at rest with SQS-managed keys (SqsManagedSseEnabled); checkov recognises only KMS keys.");
    h
}

fn table(
    t: &mut Template,
    id: &str,
    pk: (&str, &str),
    sk: Option<(&str, &str)>,
    ttl: Option<&str>,
    stream: bool,
) -> Handle<kind::Table> {
    let mut attrs = vec![json!({"AttributeName": pk.0, "AttributeType": pk.1})];
    let mut keys = vec![json!({"AttributeName": pk.0, "KeyType": "HASH"})];
    if let Some((name, ty)) = sk {
        attrs.push(json!({"AttributeName": name, "AttributeType": ty}));
        keys.push(json!({"AttributeName": name, "KeyType": "RANGE"}));
    }
    let mut props = json!({
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": attrs,
        "KeySchema": keys,
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true},
        "SSESpecification": {"SSEEnabled": true},
    });
    if let Some(attr) = ttl {
        props["TimeToLiveSpecification"] = json!({"AttributeName": attr, "Enabled": true});
    }
    if stream {
        props["StreamSpecification"] = json!({"StreamViewType": "NEW_AND_OLD_IMAGES"});
    }
    let h = t.add(id, "AWS::DynamoDB::Table", props);
    let r = t.resource(&h);
    r.deletion_policy = Some("Delete");
    skip_checkov(
        r,
        "CKV_AWS_119",
        "Encrypted with the AWS-owned key; a CMK is a per-deployment choice with its own cost.",
    );
    h
}

/// Synthesises the stack.
pub fn template(options: StackOptions) -> Template {
    let mut t = Template {
        description:
            "meterflow: meter readings collected, imported, stored and served (cargo run -p infra)"
                .into(),
        ..Template::default()
    };
    t.metadata.insert(
        "cfn-lint".into(),
        json!({"config": {"ignore_checks": ["W3697"]}}),
    );
    t.metadata.insert(
        "IgnoreReasons".into(),
        json!({"W3697": "Timestream for LiveAnalytics is in maintenance mode; it is created only when HistoryStore=timestream, for accounts that still have it."}),
    );

    // Parameters.
    t.parameter("HistoryStore", json!({"Type": "String", "AllowedValues": ["dynamodb", "timestream"], "Default": options.history.as_str(),
        "Description": "Where readings are kept: DynamoDB (any account) or Timestream (accounts that had it before 2025-06-20)."}));
    t.parameter("CodeBucket", json!({"Type": "String", "Description": "The bucket holding the function packages (scripts/deploy.sh uploads them)."}));
    for f in names::FUNCTIONS {
        t.parameter(&code_key_parameter(f), json!({"Type": "String", "Description": format!("The S3 key of the {f} package; it changes when the code does.")}));
    }
    t.parameter("LogRetentionDays", json!({"Type": "Number", "Default": 14,
        "AllowedValues": [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]}));
    t.parameter("ScheduleRate", json!({"Type": "String", "Default": "rate(10 minutes)", "Description": "How often registry entries are collected (SST Cloud refreshes about every 10 minutes)."}));
    t.parameter(
        "FetchMaxConcurrency",
        json!({"Type": "Number", "Default": 5, "MinValue": 2, "MaxValue": 1000}),
    );
    t.parameter(
        "ApiAuthType",
        json!({"Type": "String", "AllowedValues": ["AWS_IAM", "NONE"], "Default": "AWS_IAM"}),
    );
    t.parameter("WebhookAuthType", json!({"Type": "String", "AllowedValues": ["AWS_IAM", "NONE"], "Default": "NONE",
        "Description": "mbed Connector cannot sign requests; the webhook checks its shared secret itself."}));
    t.parameter(
        "TimestreamMemoryRetentionHours",
        json!({"Type": "Number", "Default": names::TIMESTREAM_MEMORY_RETENTION_HOURS, "MinValue": 1, "MaxValue": 8766}),
    );
    t.parameter(
        "TimestreamMagneticRetentionDays",
        json!({"Type": "Number", "Default": names::TIMESTREAM_MAGNETIC_RETENTION_DAYS, "MinValue": 1, "MaxValue": 73000}),
    );
    t.parameter(
        "MetricNamespace",
        json!({"Type": "String", "Default": names::DEFAULT_METRIC_NAMESPACE}),
    );

    t.parameter("AlarmEmail", json!({"Type": "String", "Default": "", "AllowedPattern": "^$|^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$",
        "ConstraintDescription": "an email address, or empty for none",
        "Description": "Where the alarms are sent (AWS asks the address to confirm once). Empty: the alarms notify the stack's AlarmTopic only; subscribe anything to it later."}));
    t.conditions.insert(
        HAS_ALARM_EMAIL.into(),
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}),
    );
    t.conditions.insert(
        USE_TIMESTREAM.into(),
        json!({"Fn::Equals": [{"Ref": "HistoryStore"}, "timestream"]}),
    );
    t.conditions.insert(
        USE_DYNAMODB.into(),
        json!({"Fn::Equals": [{"Ref": "HistoryStore"}, "dynamodb"]}),
    );
    t.conditions.insert(
        API_PUBLIC.into(),
        json!({"Fn::Equals": [{"Ref": "ApiAuthType"}, "NONE"]}),
    );
    t.conditions.insert(
        WEBHOOK_PUBLIC.into(),
        json!({"Fn::Equals": [{"Ref": "WebhookAuthType"}, "NONE"]}),
    );

    // Tables.
    let registry = table(
        &mut t,
        ids::REGISTRY_TABLE,
        (names::REGISTRY_PK, "S"),
        None,
        None,
        false,
    );
    let readings = table(
        &mut t,
        ids::READINGS_TABLE,
        (names::READINGS_PK, "S"),
        Some((names::READINGS_SK, "N")),
        None,
        false,
    );
    t.resource(&readings).condition = Some(USE_DYNAMODB.into());
    let forecasts = table(
        &mut t,
        ids::FORECASTS_TABLE,
        (names::FORECASTS_PK, "S"),
        Some((names::FORECASTS_SK, "N")),
        Some(names::FORECASTS_TTL),
        false,
    );
    let counters = table(
        &mut t,
        ids::COUNTERS_TABLE,
        (names::COUNTERS_PK, "S"),
        Some((names::COUNTERS_SK, "S")),
        Some(names::COUNTERS_TTL),
        true,
    );

    // Timestream, only when chosen.
    let ts_db: Handle<kind::TsDatabase> = t.add(
        ids::TIMESTREAM_DATABASE,
        "AWS::Timestream::Database",
        json!({}),
    );
    t.resource(&ts_db).condition = Some(USE_TIMESTREAM.into());
    t.resource(&ts_db).deletion_policy = Some("Retain");
    skip_checkov(
        t.resource(&ts_db),
        "CKV_AWS_160",
        "Encrypted with the AWS-managed key by default.",
    );
    let ts_table: Handle<kind::TsTable> = t.add(
        ids::TIMESTREAM_TABLE,
        "AWS::Timestream::Table",
        json!({
            "DatabaseName": ts_db.name().into_value(),
            "RetentionProperties": {
                "MemoryStoreRetentionPeriodInHours": Expr::param("TimestreamMemoryRetentionHours").into_value(),
                "MagneticStoreRetentionPeriodInDays": Expr::param("TimestreamMagneticRetentionDays").into_value(),
            },
            "MagneticStoreWriteProperties": {"EnableMagneticStoreWrites": true},
        }),
    );
    t.resource(&ts_table).condition = Some(USE_TIMESTREAM.into());
    t.resource(&ts_table).deletion_policy = Some("Retain");

    // Queues.
    let fetch_timeout = 120;
    let fetch_dlq = queue(&mut t, ids::FETCH_DEAD_LETTER_QUEUE, 60, None);
    let fetch_queue = queue(
        &mut t,
        ids::FETCH_QUEUE,
        6 * fetch_timeout,
        Some(&fetch_dlq),
    );
    let import_dlq = queue(&mut t, "ImportDeadLetterQueue", 60, None);
    let stream_dlq = queue(&mut t, "StreamDeadLetterQueue", 60, None);
    let schedule_dlq = queue(&mut t, "ScheduleDeadLetterQueue", 60, None);

    // Secrets: values are generated or set with put-secret-value, never in the template.
    let secret = |t: &mut Template, id: &str, description: &str| -> Handle<kind::Secret> {
        let h = t.add(
            id,
            "AWS::SecretsManager::Secret",
            json!({
                "Description": description,
                "GenerateSecretString": {"PasswordLength": 40, "ExcludePunctuation": true},
            }),
        );
        skip_checkov(
            t.resource(&h),
            "CKV_AWS_149",
            "Encrypted with the AWS-managed key; a CMK is a per-deployment choice.",
        );
        h
    };
    let sst_secret = secret(&mut t, ids::SST_SECRET, "SST Cloud API token: set it with aws secretsmanager put-secret-value (scripts/deploy.sh prints how).");
    let api_secret = secret(
        &mut t,
        ids::API_TOKEN_SECRET,
        "Bearer token of the meterflow API (generated).",
    );
    let hook_secret = secret(
        &mut t,
        ids::WEBHOOK_SECRET,
        "Shared secret mbed Connector sends in x-webhook-secret (generated).",
    );

    // Import bucket.
    let bucket: Handle<kind::Bucket> = t.add(
        ids::IMPORT_BUCKET,
        "AWS::S3::Bucket",
        json!({
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            "PublicAccessBlockConfiguration": {"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true},
            "VersioningConfiguration": {"Status": "Enabled"},
            "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": true}},
            "LifecycleConfiguration": {"Rules": [{"Id": "expire-old-versions", "Status": "Enabled",
                "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}]},
        }),
    );
    let r = t.resource(&bucket);
    skip_checkov(
        r,
        "CKV_AWS_18",
        "Access logging needs a second bucket; imports are logged by the import function.",
    );
    skip_checkov(
        r,
        "CKV_AWS_144",
        "Cross-region replication is a disaster-recovery choice per deployment.",
    );
    skip_checkov(
        r,
        "CKV_AWS_145",
        "SSE-S3 encryption; a CMK is a per-deployment choice.",
    );

    let history_env = |env: &mut Vec<(&'static str, Expr)>| {
        env.push((names::ENV_HISTORY_STORE, Expr::param("HistoryStore")));
        env.push((
            names::ENV_READINGS_TABLE,
            Expr::when(USE_DYNAMODB, readings.name(), Expr::no_value()),
        ));
        env.push((
            names::ENV_TIMESTREAM_DATABASE,
            Expr::when(USE_TIMESTREAM, ts_db.name(), Expr::no_value()),
        ));
        env.push((
            names::ENV_TIMESTREAM_TABLE,
            Expr::when(USE_TIMESTREAM, ts_table.name(), Expr::no_value()),
        ));
    };
    let history_write = vec![
        Grant::When(USE_DYNAMODB, Box::new(Grant::DdbWrite(readings.arn()))),
        Grant::When(
            USE_TIMESTREAM,
            Box::new(Grant::TimestreamWrite(ts_table.arn())),
        ),
    ];
    let history_read = vec![
        Grant::When(USE_DYNAMODB, Box::new(Grant::DdbRead(readings.arn()))),
        Grant::When(
            USE_TIMESTREAM,
            Box::new(Grant::TimestreamQuery(ts_table.arn())),
        ),
    ];

    // Functions.
    let enqueue = lambda(
        &mut t,
        FnSpec {
            name: "enqueue",
            memory: 256,
            timeout: 60,
            env: vec![
                (names::ENV_REGISTRY_TABLE, registry.name()),
                (names::ENV_FETCH_QUEUE_URL, fetch_queue.url()),
            ],
            grants: vec![
                Grant::DdbRead(registry.arn()),
                Grant::SqsSend(fetch_queue.arn()),
            ],
            dead_letter: None,
        },
    );
    let mut env = vec![
        (names::ENV_REGISTRY_TABLE, registry.name()),
        (names::ENV_FORECASTS_TABLE, forecasts.name()),
        (meter_core::contract::ENV_SST_SECRET_ID, sst_secret.arn()),
    ];
    history_env(&mut env);
    let mut grants = vec![
        Grant::SqsConsume(fetch_queue.arn()),
        Grant::DdbRead(registry.arn()),
        Grant::DdbWrite(forecasts.arn()),
        Grant::SecretRead(sst_secret.arn()),
        Grant::When(USE_DYNAMODB, Box::new(Grant::DdbRead(readings.arn()))),
    ];
    grants.extend(history_write.clone());
    let fetch = lambda(
        &mut t,
        FnSpec {
            name: "fetch",
            memory: 512,
            timeout: fetch_timeout,
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
        &mut t,
        FnSpec {
            name: "import",
            memory: 1024,
            timeout: 900,
            env,
            grants,
            dead_letter: Some(import_dlq.arn()),
        },
    );

    let webhook = lambda(
        &mut t,
        FnSpec {
            name: "webhook",
            memory: 256,
            timeout: 10,
            env: vec![
                (names::ENV_COUNTERS_TABLE, counters.name()),
                (names::ENV_WEBHOOK_SECRET_SECRET, hook_secret.arn()),
            ],
            grants: vec![
                Grant::DdbWrite(counters.arn()),
                Grant::SecretRead(hook_secret.arn()),
            ],
            dead_letter: None,
        },
    );
    let namespace = "MetricNamespace";
    let stream_metrics = lambda(
        &mut t,
        FnSpec {
            name: "stream-metrics",
            memory: 256,
            timeout: 60,
            env: vec![(names::ENV_METRIC_NAMESPACE, Expr::param(namespace))],
            grants: vec![
                Grant::DdbStream(counters.stream_arn()),
                Grant::PutMetrics(names::DEFAULT_METRIC_NAMESPACE.into()),
                Grant::SqsSend(stream_dlq.arn()),
            ],
            dead_letter: None,
        },
    );
    let mut env = vec![
        (names::ENV_REGISTRY_TABLE, registry.name()),
        (names::ENV_FORECASTS_TABLE, forecasts.name()),
        (names::ENV_COUNTERS_TABLE, counters.name()),
        (names::ENV_API_TOKEN_SECRET, api_secret.arn()),
        (
            names::ENV_API_AUTH,
            Expr::when(API_PUBLIC, Expr::lit("bearer"), Expr::lit("iam")),
        ),
    ];
    history_env(&mut env);
    let mut grants = vec![
        Grant::DdbRead(registry.arn()),
        Grant::DdbRead(forecasts.arn()),
        Grant::DdbRead(counters.arn()),
        Grant::SecretRead(api_secret.arn()),
    ];
    grants.extend(history_read);
    let api = lambda(
        &mut t,
        FnSpec {
            name: "api",
            memory: 512,
            timeout: 30,
            env,
            grants,
            dead_letter: None,
        },
    );

    // Schedule -> enqueue.
    let scheduler_role: Handle<kind::Role> = t.add(
        "ScheduleRole",
        "AWS::IAM::Role",
        json!({
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": Expr::pseudo("AWS::AccountId").into_value()}},
            }]},
            "Policies": [{"PolicyName": "invoke-enqueue", "PolicyDocument": policy(&[
                Grant::Invoke(enqueue.function.arn()),
                Grant::SqsSend(schedule_dlq.arn()),
            ])}],
        }),
    );
    t.add::<kind::Other>(
        "CollectSchedule",
        "AWS::Scheduler::Schedule",
        json!({
            "Description": "Collect every registry entry (EventBridge Scheduler -> enqueue).",
            "ScheduleExpression": Expr::param("ScheduleRate").into_value(),
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": enqueue.function.arn().into_value(),
                "RoleArn": scheduler_role.arn().into_value(),
                "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 600},
                "DeadLetterConfig": {"Arn": schedule_dlq.arn().into_value()},
            },
        }),
    );

    // Fetch queue -> fetch.
    t.add::<kind::Other>(
        "FetchMapping",
        "AWS::Lambda::EventSourceMapping",
        json!({
            "EventSourceArn": fetch_queue.arn().into_value(),
            "FunctionName": fetch.function.arn().into_value(),
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": Expr::param("FetchMaxConcurrency").into_value()},
        }),
    );

    // Counters stream -> stream-metrics.
    t.add::<kind::Other>(
        "CountersStreamMapping",
        "AWS::Lambda::EventSourceMapping",
        json!({
            "EventSourceArn": counters.stream_arn().into_value(),
            "FunctionName": stream_metrics.function.arn().into_value(),
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 100,
            "MaximumBatchingWindowInSeconds": 5,
            "BisectBatchOnFunctionError": true,
            "MaximumRetryAttempts": 5,
            "DestinationConfig": {"OnFailure": {"Destination": stream_dlq.arn().into_value()}},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        }),
    );

    // Bucket -> EventBridge -> import: the bucket references nothing, so there is no cycle.
    let rule: Handle<kind::Rule> = t.add(
        "ImportRule",
        "AWS::Events::Rule",
        json!({
            "Description": "Objects created in the import bucket -> import function.",
            "EventPattern": {
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                // Reports are not imports; resume markers are, and invoke the function again.
                "detail": {
                    "bucket": {"name": [bucket.name().into_value()]},
                    "object": {"key": [{"anything-but": {"prefix": names::QUARANTINE_PREFIX}}]},
                },
            },
            "Targets": [{
                "Id": "import",
                "Arn": import.function.arn().into_value(),
                "RetryPolicy": {"MaximumRetryAttempts": 5, "MaximumEventAgeInSeconds": 3600},
                "DeadLetterConfig": {"Arn": import_dlq.arn().into_value()},
            }],
        }),
    );
    t.add::<kind::Other>(
        "ImportRulePermission",
        "AWS::Lambda::Permission",
        json!({
            "Action": "lambda:InvokeFunction",
            "FunctionName": import.function.arn().into_value(),
            "Principal": "events.amazonaws.com",
            "SourceArn": rule.arn().into_value(),
        }),
    );
    // EventBridge must be allowed to deliver failed events to the dead-letter queue.
    t.add::<kind::Other>(
        "ImportDeadLetterQueuePolicy",
        "AWS::SQS::QueuePolicy",
        json!({
            "Queues": [import_dlq.url().into_value()],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": import_dlq.arn().into_value(),
                "Condition": {"ArnEquals": {"aws:SourceArn": rule.arn().into_value()}},
            }]},
        }),
    );
    t.add::<kind::Other>(
        "ImportInvokeConfig",
        "AWS::Lambda::EventInvokeConfig",
        json!({
            "FunctionName": import.function.name().into_value(),
            "Qualifier": "$LATEST",
            "MaximumRetryAttempts": 2,
            "DestinationConfig": {"OnFailure": {"Destination": import_dlq.arn().into_value()}},
        }),
    );

    // Function URLs, with both permissions callers need since October 2025 when public.
    let url = |t: &mut Template,
               id: &str,
               f: &Func,
               auth_param: &str,
               public: &'static str|
     -> Handle<kind::FunctionUrl> {
        let h = t.add(
            id,
            "AWS::Lambda::Url",
            json!({
                "TargetFunctionArn": f.function.arn().into_value(),
                "AuthType": Expr::param(auth_param).into_value(),
            }),
        );
        let p1 = t.add::<kind::Other>(
            &format!("{id}PublicInvokeUrl"),
            "AWS::Lambda::Permission",
            json!({
                "Action": "lambda:InvokeFunctionUrl",
                "FunctionName": f.function.arn().into_value(),
                "Principal": "*",
                "FunctionUrlAuthType": "NONE",
            }),
        );
        t.resource(&p1).condition = Some(public.into());
        let p2 = t.add::<kind::Other>(
            &format!("{id}PublicInvoke"),
            "AWS::Lambda::Permission",
            json!({
                "Action": "lambda:InvokeFunction",
                "FunctionName": f.function.arn().into_value(),
                "Principal": "*",
                "InvokedViaFunctionUrl": true,
            }),
        );
        t.resource(&p2).condition = Some(public.into());
        h
    };
    let api_url = url(&mut t, "ApiUrl", &api, "ApiAuthType", API_PUBLIC);
    let webhook_url = url(
        &mut t,
        "WebhookUrl",
        &webhook,
        "WebhookAuthType",
        WEBHOOK_PUBLIC,
    );
    // A public webhook is the point (Connector cannot sign); the function checks its secret.
    skip_checkov(t.resource(&webhook_url), "CKV_AWS_258",
        "mbed Connector cannot sign requests; the webhook authenticates its shared-secret header in constant time.");

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
        ("FetchDlqAlarm", &fetch_dlq),
        ("ImportDlqAlarm", &import_dlq),
        ("StreamDlqAlarm", &stream_dlq),
        ("ScheduleDlqAlarm", &schedule_dlq),
    ] {
        t.add::<kind::Other>(id, "AWS::CloudWatch::Alarm", json!({
            "AlarmDescription": "Messages are waiting in a dead-letter queue: something kept failing.",
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": q.name().into_value()}],
            "Statistic": "Maximum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
                "AlarmActions": notify,
        }));
    }
    let functions = [&enqueue, &fetch, &import, &webhook, &stream_metrics, &api];
    for (f, name) in functions.iter().zip(names::FUNCTIONS) {
        t.add::<kind::Other>(
            &format!("{}ErrorsAlarm", pascal(name)),
            "AWS::CloudWatch::Alarm",
            json!({
                "AlarmDescription": format!("The {name} function reported errors."),
                "Namespace": "AWS/Lambda",
                "MetricName": "Errors",
                "Dimensions": [{"Name": "FunctionName", "Value": f.function.name().into_value()}],
                "Statistic": "Sum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": 0,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": notify,
            }),
        );
    }
    // The functions' own metrics (EMF log lines): alarms where a person should look.
    let ops_alarm =
        |t: &mut Template, id: &str, description: &str, f: &Func, metric: &str, threshold: u32| {
            t.add::<kind::Other>(
            id,
            "AWS::CloudWatch::Alarm",
            json!({
                "AlarmDescription": description,
                "Namespace": ops::NAMESPACE,
                "MetricName": metric,
                "Dimensions": [{"Name": ops::DIMENSION, "Value": f.function.name().into_value()}],
                "Statistic": "Sum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": threshold,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": notify,
            }),
        );
        };
    ops_alarm(&mut t, "ImportRejectedRowsAlarm",
        "An imported file had rows that were quarantined: see quarantine/<key>.errors.json in the import bucket.",
        &import, ops::ROWS_REJECTED, 0);
    ops_alarm(&mut t, "FetchRejectedRecordsAlarm",
        "A source answered records that are not readings, or the store refused readings for good: see the fetch function's log.",
        &fetch, ops::ROWS_REJECTED, 0);
    ops_alarm(
        &mut t,
        "ApiServerErrorsAlarm",
        "The API answered 5xx: see its log.",
        &api,
        ops::SERVER_ERRORS,
        0,
    );
    ops_alarm(&mut t, "WebhookServerErrorsAlarm",
        "The webhook answered 5xx (Connector resends, but check the counters table and the secret).",
        &webhook, ops::SERVER_ERRORS, 0);
    // A few refusals are someone's typo; dozens in five minutes are a probe or a secret
    // rotated without updating Connector.
    ops_alarm(
        &mut t,
        "WebhookUnauthorizedAlarm",
        "The webhook refused more than 20 requests in 5 minutes for a missing or wrong secret.",
        &webhook,
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

    let widget = |title: &str, metrics: Vec<Value>| {
        json!({
            "type": "metric", "width": 12, "height": 6,
            "properties": {"title": title, "region": "${AWS::Region}", "stat": "Sum", "period": 300, "metrics": metrics},
        })
    };
    // One dashboard line per (metric, function), the function by its physical name.
    let ops_lines = |pairs: &[(&str, &Func)]| -> Vec<Value> {
        pairs
            .iter()
            .map(|(metric, f)| {
                json!([
                    ops::NAMESPACE,
                    metric,
                    ops::DIMENSION,
                    format!("${{{}}}", f.function.id())
                ])
            })
            .collect()
    };
    let errors: Vec<Value> = functions
        .iter()
        .map(|f| {
            json!([
                "AWS/Lambda",
                "Errors",
                "FunctionName",
                format!("${{{}}}", f.function.id())
            ])
        })
        .collect();
    let retries: Vec<(&str, &Func)> = functions.iter().map(|f| (ops::AWS_RETRIES, *f)).collect();
    let body = json!({"widgets": [
        widget("Readings stored and rejected", ops_lines(&[
            (ops::READINGS_STORED, &fetch), (ops::READINGS_STORED, &import),
            (ops::ROWS_REJECTED, &fetch), (ops::ROWS_REJECTED, &import), (ops::ROWS_REJECTED, &stream_metrics),
        ])),
        widget("Retries and partial failures", [ops_lines(&retries), ops_lines(&[
            (ops::BATCH_ITEM_FAILURES, &fetch), (ops::BATCH_ITEM_FAILURES, &stream_metrics),
            (ops::INVOCATIONS_FAILED, &enqueue), (ops::INVOCATIONS_FAILED, &import),
        ])].concat()),
        widget("Refused and failed requests", ops_lines(&[
            (ops::UNAUTHORIZED, &api), (ops::CLIENT_ERRORS, &api), (ops::SERVER_ERRORS, &api),
            (ops::UNAUTHORIZED, &webhook), (ops::CLIENT_ERRORS, &webhook), (ops::SERVER_ERRORS, &webhook),
        ])),
        widget("Dead-letter queues", [&fetch_dlq, &import_dlq, &stream_dlq, &schedule_dlq].iter()
            .map(|q| json!(["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", format!("${{{}.QueueName}}", q.id())])).collect()),
        widget("Function errors", errors),
        widget("Button presses (seed 002)", vec![json!([{"expression": "SEARCH('{${MetricNamespace}} ', 'Sum', 3600)", "id": "presses"}])]),
    ]});
    t.add::<kind::Other>(
        "Dashboard",
        "AWS::CloudWatch::Dashboard",
        json!({
            "DashboardBody": Expr::sub(&body.to_string()).into_value(),
        }),
    );

    // Outputs.
    t.output("ApiUrl", "The API's Function URL.", api_url.url(), None);
    t.output(
        "WebhookUrl",
        "The URL to register as the mbed Connector callback.",
        webhook_url.url(),
        None,
    );
    t.output(
        "ImportBucketName",
        "Put CSV and Pi JSON files here.",
        bucket.name(),
        None,
    );
    t.output(
        "RegistryTableName",
        "The registry table.",
        registry.name(),
        None,
    );
    t.output(
        "ReadingsTableName",
        "The readings table (HistoryStore=dynamodb).",
        readings.name(),
        Some(USE_DYNAMODB),
    );
    t.output(
        "ForecastsTableName",
        "The forecasts table.",
        forecasts.name(),
        None,
    );
    t.output(
        "CountersTableName",
        "The counters table.",
        counters.name(),
        None,
    );
    t.output(
        "FetchQueueUrl",
        "The fetch job queue.",
        fetch_queue.url(),
        None,
    );
    t.output(
        "FetchDeadLetterQueueUrl",
        "Fetch jobs that kept failing.",
        fetch_dlq.url(),
        None,
    );
    t.output(
        "ImportDeadLetterQueueUrl",
        "Import events that kept failing.",
        import_dlq.url(),
        None,
    );
    t.output(
        "TimestreamDatabaseName",
        "The Timestream database (HistoryStore=timestream).",
        ts_db.name(),
        Some(USE_TIMESTREAM),
    );
    t.output(
        "TimestreamTableName",
        "The Timestream table (HistoryStore=timestream).",
        ts_table.name(),
        Some(USE_TIMESTREAM),
    );
    t.output(
        "SstSecretArn",
        "Put the SST Cloud token here.",
        sst_secret.arn(),
        None,
    );
    t.output(
        "ApiTokenSecretArn",
        "The API's bearer token.",
        api_secret.arn(),
        None,
    );
    t.output(
        "WebhookSecretArn",
        "The webhook's shared secret.",
        hook_secret.arn(),
        None,
    );
    for (f, name) in functions.iter().zip(names::FUNCTIONS) {
        t.output(
            &format!("{}FunctionName", pascal(name)),
            &format!("The {name} function."),
            f.function.name(),
            None,
        );
    }
    t
}
