//! The DynamoDB tables (keys from the contract's table schemas, shared with the DynamoDB store's
//! `create_table`) and the Timestream database and table, created only when chosen.

use meter_core::contract::cloud::{self as names, TableSchema};
use serde_json::json;

use super::{ids, USE_DYNAMODB, USE_TIMESTREAM};
use crate::cfn::{kind, skip_checkov, Expr, Handle, Template};

/// The stack's stores.
pub(super) struct Tables {
    pub(super) registry: Handle<kind::Table>,
    pub(super) readings: Handle<kind::Table>,
    pub(super) forecasts: Handle<kind::Table>,
    pub(super) counters: Handle<kind::Table>,
    pub(super) ts_db: Handle<kind::TsDatabase>,
    pub(super) ts_table: Handle<kind::TsTable>,
}

fn table(t: &mut Template, id: &str, schema: TableSchema) -> Handle<kind::Table> {
    let (pk, sk) = (schema.partition, schema.sort);
    let mut attrs = vec![json!({"AttributeName": pk.0, "AttributeType": pk.1.letter()})];
    let mut keys = vec![json!({"AttributeName": pk.0, "KeyType": "HASH"})];
    if let Some((name, ty)) = sk {
        attrs.push(json!({"AttributeName": name, "AttributeType": ty.letter()}));
        keys.push(json!({"AttributeName": name, "KeyType": "RANGE"}));
    }
    let mut props = json!({
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": attrs,
        "KeySchema": keys,
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true},
        "SSESpecification": {"SSEEnabled": true},
    });
    if let Some(attr) = schema.ttl {
        props["TimeToLiveSpecification"] = json!({"AttributeName": attr, "Enabled": true});
    }
    if schema.stream {
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

/// Adds the tables.
pub(super) fn add(t: &mut Template) -> Tables {
    let registry = table(t, ids::REGISTRY_TABLE, names::REGISTRY_TABLE);
    let readings = table(t, ids::READINGS_TABLE, names::READINGS_TABLE);
    t.resource(&readings).condition = Some(USE_DYNAMODB.into());
    let forecasts = table(t, ids::FORECASTS_TABLE, names::FORECASTS_TABLE);
    let counters = table(t, ids::COUNTERS_TABLE, names::COUNTERS_TABLE);

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

    Tables {
        registry,
        readings,
        forecasts,
        counters,
        ts_db,
        ts_table,
    }
}
