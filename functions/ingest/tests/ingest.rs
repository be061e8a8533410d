//! The ingest function over in-memory ports, fed the message shape the stack's topic rule
//! produces (`SELECT encode(*, 'base64') AS payload, topic() AS topic, timestamp() AS received`).

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use base64::Engine;
use chrono::{TimeZone, Utc};
use meter_aws_io::ObjectQuarantine;
use meter_core::ports::{ItemFailure, ReadingWriter, StoreError, WriteReport};
use meter_core::testing::{MemoryObjects, MemoryStore};
use meter_core::{Kind, Reading};
use meter_fn_ingest::{handle, parse_body, parse_mapping, Ingest};
use meter_lambda::metrics::Emitter;
use serde_json::{json, Value};

const BUCKET: &str = "imports";

/// A message as the topic rule writes it (IoT Core's `timestamp()` is epoch milliseconds).
fn rule_message(id: &str, topic: &str, payload: &[u8], received_ms: i64) -> SqsMessage {
    let body = json!({
        "payload": base64::engine::general_purpose::STANDARD.encode(payload),
        "topic": topic,
        "received": received_ms,
    });
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_owned());
    m.body = Some(body.to_string());
    m
}

fn event(messages: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = messages;
    e
}

/// A writer that cannot take meter `FLAKY` now (throttled), and passes the rest on.
struct Flaky(Arc<MemoryStore>);

#[async_trait]
impl ReadingWriter for Flaky {
    fn max_batch(&self) -> usize {
        self.0.max_batch()
    }
    async fn write(&self, readings: &[Reading]) -> Result<WriteReport, StoreError> {
        let (flaky, rest): (Vec<_>, Vec<_>) = readings
            .iter()
            .cloned()
            .enumerate()
            .partition(|(_, r)| r.meter().as_str() == "FLAKY");
        let stored = self
            .0
            .write(&rest.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>())
            .await?;
        let mut report = WriteReport {
            written: stored.written,
            ..WriteReport::default()
        };
        for f in stored.failures {
            report.failures.push(ItemFailure {
                index: rest[f.index].0,
                ..f
            });
        }
        for (index, _) in flaky {
            report.failures.push(ItemFailure {
                index,
                reason: "throttled".into(),
                retryable: true,
            });
        }
        report.failures.sort_by_key(|f| f.index);
        Ok(report)
    }
}

struct Fixture {
    store: Arc<MemoryStore>,
    objects: Arc<MemoryObjects>,
    state: Ingest,
    metrics: meter_lambda::metrics::Captured,
}

fn fixture(mapping: Option<&str>) -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let objects = Arc::new(MemoryObjects::new());
    let (emitter, metrics) = Emitter::capture("ingest");
    let state = Ingest::with_parts(
        Arc::new(Flaky(store.clone())),
        store.clone(),
        Arc::new(ObjectQuarantine::new(
            objects.clone(),
            BUCKET,
            meter_core::contract::cloud::MQTT_QUARANTINE_PREFIX,
        )),
        mapping.map(|m| parse_mapping(m).unwrap()),
    )
    .with_metrics(emitter);
    Fixture {
        store,
        objects,
        state,
        metrics,
    }
}

/// Every rejection kept in the quarantine.
fn quarantined(objects: &MemoryObjects) -> Vec<Value> {
    objects
        .keys(BUCKET)
        .iter()
        .inspect(|k| assert!(k.starts_with("quarantine/mqtt/"), "{k}"))
        .flat_map(|k| {
            let doc: Value = serde_json::from_slice(&objects.bytes(BUCKET, k).unwrap()).unwrap();
            doc["rejections"].as_array().unwrap().clone()
        })
        .collect()
}

const RECEIVED: i64 = 1_733_313_600_000; // 2024-12-04T12:00:00Z

#[test]
fn the_rule_message_keeps_any_payload_and_its_topic() {
    let payload = b"\x00\xffnot text";
    let m = rule_message("1", "meters/M1/t", payload, RECEIVED);
    let parsed = parse_body(m.body.as_deref().unwrap()).unwrap();
    assert_eq!(parsed.topic, "meters/M1/t");
    assert_eq!(parsed.payload, payload);
    assert_eq!(
        parsed.received,
        Some(Utc.timestamp_millis_opt(RECEIVED).unwrap())
    );
    assert!(parse_body("{}").unwrap_err().contains("topic"));
    assert!(parse_body(r#"{"topic":"a","payload":"%%"}"#)
        .unwrap_err()
        .contains("base64"));
    assert!(parse_body("plain")
        .unwrap_err()
        .contains("not the topic rule's JSON"));
}

#[tokio::test]
async fn every_payload_kind_lands_and_bad_messages_are_quarantined_not_retried() {
    let f = fixture(None);
    let response = handle(
        &f.state,
        event(vec![
            rule_message("bare", "meters/M1/temperature", b"21.5", RECEIVED),
            rule_message(
                "json",
                "meters/M2/volume",
                br#"{"time": "2024-12-04T11:00:00Z", "value": 10.5, "unit": "m3", "kind": "cumulative"}"#,
                RECEIVED,
            ),
            rule_message(
                "lp",
                "anything/at/all",
                b"water,meter=M3 volume=7i 1733310000000000000\nwater,meter=M3 volume=8i 1733310300000000000",
                RECEIVED,
            ),
            rule_message("bad", "meters/M4/temperature", b"warm", RECEIVED),
            {
                let mut m = SqsMessage::default();
                m.message_id = Some("foreign".into());
                m.body = Some("not from the rule".into());
                m
            },
        ]),
        Utc::now(),
    )
    .await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let all = f.store.all();
    assert_eq!(all.len(), 4, "{all:?}");
    let bare = all.iter().find(|r| r.meter().as_str() == "M1").unwrap();
    assert_eq!(bare.value(), 21.5);
    // A bare number is stamped with the time IoT Core received it, so a redelivery repeats it.
    assert_eq!(bare.time(), Utc.timestamp_millis_opt(RECEIVED).unwrap());
    let json = all.iter().find(|r| r.meter().as_str() == "M2").unwrap();
    assert_eq!(json.kind(), Kind::Cumulative);
    assert_eq!(json.unit().symbol(), "m3");
    let lp: Vec<f64> = all
        .iter()
        .filter(|r| r.meter().as_str() == "M3")
        .map(Reading::value)
        .collect();
    assert_eq!(lp, vec![7.0, 8.0]);

    let kept = quarantined(&f.objects);
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept
        .iter()
        .any(|r| r["file"] == "meters/M4/temperature" && r["raw"] == "warm"));
    assert!(kept.iter().any(|r| r["file"] == "sqs message foreign"
        && r["reason"].as_str().unwrap().contains("topic rule")));
    assert_eq!(f.metrics.sum("ReadingsStored").unwrap(), 4.0);
    assert_eq!(f.metrics.sum("RowsRejected").unwrap(), 2.0);
}

#[tokio::test]
async fn a_redelivered_batch_stores_nothing_twice() {
    let f = fixture(None);
    let batch = || {
        event(vec![
            rule_message("a", "meters/M1/t", b"21.5", RECEIVED),
            rule_message(
                "b",
                "meters/M2/t",
                br#"[{"time": 1733310000, "value": 1}, {"time": 1733310300, "value": 2}]"#,
                RECEIVED,
            ),
        ])
    };
    handle(&f.state, batch(), Utc::now()).await;
    let once = f.store.all();
    handle(&f.state, batch(), Utc::now()).await;
    assert_eq!(f.store.all(), once);
    assert_eq!(once.len(), 3);
}

#[tokio::test]
async fn only_the_messages_the_store_could_not_take_are_retried() {
    let f = fixture(None);
    let response = handle(
        &f.state,
        event(vec![
            rule_message("ok", "meters/M1/t", b"1", RECEIVED),
            rule_message("later", "meters/FLAKY/t", b"2", RECEIVED),
            rule_message("ok2", "meters/M2/t", b"3", RECEIVED),
        ]),
        Utc::now(),
    )
    .await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["later"]);
    assert_eq!(f.store.all().len(), 2);
    assert!(
        quarantined(&f.objects).is_empty(),
        "a retry is not a rejection"
    );
    assert_eq!(f.metrics.sum("BatchItemFailures").unwrap(), 1.0);
}

#[tokio::test]
async fn a_message_without_unit_joins_its_stored_series() {
    let f = fixture(None);
    handle(
        &f.state,
        event(vec![rule_message(
            "first",
            "meters/W1/volume",
            br#"{"time": 1733310000, "value": 100, "unit": "m3", "kind": "cumulative"}"#,
            RECEIVED,
        )]),
        Utc::now(),
    )
    .await;
    // A later message leaves unit and kind out: it joins the stored series instead of being
    // refused as a unitless gauge.
    let response = handle(
        &f.state,
        event(vec![rule_message(
            "second",
            "meters/W1/volume",
            br#"{"time": 1733310300, "value": 101}"#,
            RECEIVED,
        )]),
        Utc::now(),
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    let all = f.store.all();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all
        .iter()
        .all(|r| r.kind() == Kind::Cumulative && r.unit().symbol() == "m3"));
    assert!(quarantined(&f.objects).is_empty());
}

#[tokio::test]
async fn a_mapping_reads_json_of_any_shape() {
    let f = fixture(Some(
        r#"
[[map]]
topic = "tele/+/SENSOR"
time = "Time"
value = "/ENERGY/Total"
meter_level = 2
measure = "energy"
unit = "kWh"
kind = "cumulative"
"#,
    ));
    handle(
        &f.state,
        event(vec![rule_message(
            "t",
            "tele/plug1/SENSOR",
            br#"{"Time": "2024-12-04T11:00:00Z", "ENERGY": {"Total": 12.25}}"#,
            RECEIVED,
        )]),
        Utc::now(),
    )
    .await;
    let all = f.store.all();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].meter().as_str(), "plug1");
    assert_eq!(all[0].measure().as_str(), "energy");
    assert_eq!(all[0].value(), 12.25);
}
