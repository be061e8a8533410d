//! The template's parameters and the conditions derived from them.

use meter_core::contract::cloud as names;
use serde_json::json;

use super::{
    code_key_parameter, StackOptions, API_PUBLIC, HAS_ALARM_EMAIL, HAS_MQTT_MAPPING, USE_DYNAMODB,
    USE_TIMESTREAM, WEBHOOK_PUBLIC, WRITE_PUBLIC,
};
use crate::cfn::Template;

/// Declares the parameters and conditions.
pub(super) fn add(t: &mut Template, options: StackOptions) {
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
    t.parameter("WriteAuthType", json!({"Type": "String", "AllowedValues": ["AWS_IAM", "NONE"], "Default": "NONE",
        "Description": "InfluxDB clients and Telegraf cannot sign requests; the write function checks its token itself."}));
    t.parameter("MqttTopicFilter", json!({"Type": "String", "Default": meter_core::decode::mqtt::DEFAULT_TOPIC_FILTER,
        "AllowedPattern": "^[^'\\s]+$", "ConstraintDescription": "an MQTT topic filter (+ and # wildcards), without quotes or spaces",
        "Description": "The IoT Core topics whose messages are stored (the topic rule's FROM)."}));
    t.parameter("MqttMapping", json!({"Type": "String", "Default": "",
        "Description": "Optional: the TOML text of an MQTT mapping file (as meter serve --mqtt-map reads), for JSON of other shapes."}));
    t.parameter(
        "IngestMaxConcurrency",
        json!({"Type": "Number", "Default": 5, "MinValue": 2, "MaxValue": 1000}),
    );
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
        WRITE_PUBLIC.into(),
        json!({"Fn::Equals": [{"Ref": "WriteAuthType"}, "NONE"]}),
    );
    t.conditions.insert(
        HAS_MQTT_MAPPING.into(),
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "MqttMapping"}, ""]}]}),
    );
    t.conditions.insert(
        WEBHOOK_PUBLIC.into(),
        json!({"Fn::Equals": [{"Ref": "WebhookAuthType"}, "NONE"]}),
    );
}
