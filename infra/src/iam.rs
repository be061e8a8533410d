//! Least-privilege IAM from declared grants: each grant expands to the actions it needs on the
//! resources it names. A wildcard resource is allowed only for actions that have no resource
//! type ([`WILDCARD_ACTIONS`]); the synthesis checks enforce it on the whole template.

use serde_json::{json, Value};

use crate::cfn::Expr;

/// Actions with no resource type, which IAM only accepts on `"*"`.
pub const WILDCARD_ACTIONS: [&str; 3] = [
    "timestream:DescribeEndpoints",
    "cloudwatch:PutMetricData",
    "dynamodb:ListStreams",
];

/// What a function may do.
#[derive(Debug, Clone)]
pub enum Grant {
    /// Receive and delete messages (an SQS event source).
    SqsConsume(Expr),
    /// Send messages.
    SqsSend(Expr),
    /// Read items of a table.
    DdbRead(Expr),
    /// Write items of a table (put, update, batch).
    DdbWrite(Expr),
    /// Read a table's stream.
    DdbStream(Expr),
    /// Write records to a Timestream table (and discover its endpoint).
    TimestreamWrite(Expr),
    /// Query a Timestream table (and discover its endpoint).
    TimestreamQuery(Expr),
    /// Read a secret's value.
    SecretRead(Expr),
    /// Publish metrics to one namespace.
    PutMetrics(String),
    /// Read objects of a bucket (the bucket's ARN).
    S3Read(Expr),
    /// Write objects of a bucket under a prefix (the bucket's ARN, the prefix).
    S3Write(Expr, &'static str),
    /// Write to a log group (the group's ARN).
    Logs(Expr),
    /// Invoke a function.
    Invoke(Expr),
    /// Any grant, only when a condition holds.
    When(&'static str, Box<Grant>),
}

fn stmt(actions: &[&str], resource: Value) -> Value {
    json!({"Effect": "Allow", "Action": actions, "Resource": resource})
}

fn objects(bucket_arn: Expr, suffix: &str) -> Value {
    Expr::join("", vec![bucket_arn, Expr::lit(suffix)]).into_value()
}

impl Grant {
    /// The policy statements of the grant.
    pub fn statements(&self) -> Vec<Value> {
        match self {
            Grant::SqsConsume(q) => vec![stmt(
                &[
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:ChangeMessageVisibility",
                ],
                q.clone().into_value(),
            )],
            Grant::SqsSend(q) => vec![stmt(
                &["sqs:SendMessage", "sqs:GetQueueAttributes"],
                q.clone().into_value(),
            )],
            Grant::DdbRead(t) => vec![stmt(
                &[
                    "dynamodb:GetItem",
                    "dynamodb:Query",
                    "dynamodb:Scan",
                    "dynamodb:BatchGetItem",
                    "dynamodb:DescribeTable",
                ],
                t.clone().into_value(),
            )],
            Grant::DdbWrite(t) => vec![stmt(
                &[
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:BatchWriteItem",
                    "dynamodb:DescribeTable",
                ],
                t.clone().into_value(),
            )],
            Grant::DdbStream(s) => vec![
                stmt(
                    &[
                        "dynamodb:DescribeStream",
                        "dynamodb:GetRecords",
                        "dynamodb:GetShardIterator",
                    ],
                    s.clone().into_value(),
                ),
                stmt(&["dynamodb:ListStreams"], json!("*")),
            ],
            Grant::TimestreamWrite(t) => vec![
                // DescribeTable: the writer reads the retention windows once, to report readings
                // the table would refuse before sending them.
                stmt(
                    &["timestream:WriteRecords", "timestream:DescribeTable"],
                    t.clone().into_value(),
                ),
                stmt(&["timestream:DescribeEndpoints"], json!("*")),
            ],
            Grant::TimestreamQuery(t) => vec![
                stmt(&["timestream:Select"], t.clone().into_value()),
                stmt(&["timestream:DescribeEndpoints"], json!("*")),
            ],
            Grant::SecretRead(s) => vec![stmt(
                &["secretsmanager:GetSecretValue"],
                s.clone().into_value(),
            )],
            Grant::PutMetrics(ns) => vec![json!({
                "Effect": "Allow",
                "Action": ["cloudwatch:PutMetricData"],
                "Resource": "*",
                "Condition": {"StringEquals": {"cloudwatch:namespace": ns}},
            })],
            Grant::S3Read(b) => vec![stmt(
                &["s3:GetObject", "s3:GetObjectVersion"],
                objects(b.clone(), "/*"),
            )],
            Grant::S3Write(b, prefix) => vec![stmt(
                &["s3:PutObject"],
                objects(b.clone(), &format!("/{prefix}*")),
            )],
            Grant::Logs(g) => vec![stmt(
                &["logs:CreateLogStream", "logs:PutLogEvents"],
                g.clone().into_value(),
            )],
            Grant::Invoke(f) => vec![stmt(&["lambda:InvokeFunction"], f.clone().into_value())],
            Grant::When(cond, g) => g
                .statements()
                .into_iter()
                .map(|s| Expr::when(cond, Expr::lit(s), Expr::no_value()).into_value())
                .collect(),
        }
    }
}

/// A policy document of grants, with duplicate statements removed.
pub fn policy(grants: &[Grant]) -> Value {
    let mut statements: Vec<Value> = Vec::new();
    for g in grants {
        for s in g.statements() {
            if !statements.contains(&s) {
                statements.push(s);
            }
        }
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}
