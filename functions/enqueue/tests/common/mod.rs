//! What the enqueue tests share: a registry table filled with entries and a fetch queue.
#![allow(dead_code)] // reason: each test file uses a different subset

use meter_core::ports::RegistryEntry;
use meter_core::{MeterId, SourceName};
use meter_store_dynamodb::{create_table, DynamoRegistry, TableKind};

pub(crate) fn entry(id: String, source: &str, enabled: bool) -> RegistryEntry {
    RegistryEntry {
        id: MeterId::new(&id).unwrap(),
        source: SourceName::new(source).unwrap(),
        params: Default::default(),
        zone: None,
        enabled,
    }
}

/// A registry table `registry-<tag>` holding `entries`, and a queue `jobs-<tag>`: the table's
/// name and the queue's URL.
pub(crate) async fn registry_and_queue(
    sdk: &aws_config::SdkConfig,
    tag: &str,
    entries: &[RegistryEntry],
) -> (String, String) {
    let table = format!("registry-{tag}");
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    create_table(&ddb, TableKind::Registry, &table)
        .await
        .unwrap();
    let put = DynamoRegistry::new(ddb, &table)
        .put_many(entries)
        .await
        .unwrap();
    assert!(put.is_complete());
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue_url = meter_aws_testing::queue(&sqs, &format!("jobs-{tag}")).await;
    (table, queue_url)
}
