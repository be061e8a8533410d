//! The SST Cloud client and source against the stand-in server, over real HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use meter_core::collect::{Source, SourceError};
use meter_core::ports::{ReadingWriter, RegistryEntry};
use meter_core::testing::MemoryStore;
use meter_core::{Kind, MeasureName, MeterId, Reading, SourceName, Unit};
use meter_sources::sst::{SstAuth, SstClient, SstConfig, SstError, SstSource};
use meter_sources::Retry;
use meter_standins::{Fault, SstStandIn, SST_COLD, SST_HOT, SST_HOUSE, SST_PASSWORD, SST_USER};
use serde_json::json;

fn config(standin: &SstStandIn, auth: SstAuth) -> SstConfig {
    SstConfig {
        base_url: standin.url(),
        auth,
        timeout: Duration::from_millis(500),
        retry: Retry {
            attempts: 3,
            backoff: Duration::from_millis(10),
        },
        location: Some("flat".into()),
        max_litres_per_hour: 2000.0,
    }
}

fn login() -> SstAuth {
    SstAuth::Login {
        username: SST_USER.into(),
        password: SST_PASSWORD.into(),
    }
}

fn source(standin: &SstStandIn, auth: SstAuth, history: Arc<MemoryStore>) -> SstSource {
    SstSource::new(
        SstClient::new(config(standin, auth), None).unwrap(),
        history,
    )
}

fn entry() -> RegistryEntry {
    RegistryEntry {
        id: MeterId::new(&format!("sst-house-{SST_HOUSE}")).unwrap(),
        source: SourceName::new("sst-cloud").unwrap(),
        params: [("house".to_owned(), SST_HOUSE.to_string())].into(),
        zone: None,
        enabled: true,
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-06-01T12:00:00Z")
        .unwrap()
        .to_utc()
}

fn count(standin: &SstStandIn, what: &str) -> usize {
    standin
        .requests()
        .iter()
        .filter(|r| r.as_str() == what)
        .count()
}

#[tokio::test]
async fn a_token_reads_the_counters_as_seed_000_stored_them() {
    let standin = SstStandIn::start().await;
    let src = source(
        &standin,
        SstAuth::Token(standin.token()),
        Arc::new(MemoryStore::new()),
    );
    let out = src.collect(&entry(), now()).await.unwrap();
    assert!(out.rejected.is_empty());
    let by_meter: BTreeMap<String, &Reading> = out
        .readings
        .iter()
        .map(|r| (r.meter().to_string(), r))
        .collect();
    let cold = by_meter[&format!("sst-{SST_COLD}")];
    assert_eq!(cold.value(), 123_457.0);
    assert_eq!((cold.unit(), cold.kind()), (&Unit::Litre, Kind::Cumulative));
    assert_eq!(cold.time(), now());
    for (k, v) in [
        ("service", "water"),
        ("water_temperature", "cold"),
        ("location", "flat"),
        ("house", "9086"),
        ("line", "4"),
    ] {
        assert_eq!(cold.tags().get(k), Some(v), "{k}");
    }
    assert_eq!(
        by_meter[&format!("sst-{SST_HOT}")]
            .tags()
            .get("water_temperature"),
        Some("hot")
    );
    assert_eq!(count(&standin, "GET /houses/9086/counters/"), 1);
    assert_eq!(count(&standin, "POST /auth/logout/"), 0);
}

#[tokio::test]
async fn a_login_is_reused_and_renewed_once_when_the_key_expires() {
    let standin = SstStandIn::start().await;
    let src = source(&standin, login(), Arc::new(MemoryStore::new()));
    src.collect(&entry(), now()).await.unwrap();
    src.collect(&entry(), now()).await.unwrap();
    assert_eq!(count(&standin, "POST /auth/login/"), 1, "the key is reused");
    standin.rotate_token();
    let out = src.collect(&entry(), now()).await.unwrap();
    assert_eq!(out.readings.len(), 2);
    assert_eq!(
        count(&standin, "POST /auth/login/"),
        2,
        "one new login after the 401"
    );
    assert_eq!(count(&standin, "POST /auth/logout/"), 0, "never log out");
}

#[tokio::test]
async fn refused_credentials_are_a_clear_error() {
    let standin = SstStandIn::start().await;
    let client = SstClient::new(config(&standin, SstAuth::Token("wrong".into())), None).unwrap();
    let e = client.counters(SST_HOUSE, now()).await.unwrap_err();
    assert!(matches!(e, SstError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("Invalid token."), "{e}");
    assert_eq!(
        count(&standin, "GET /houses/9086/counters/"),
        1,
        "a 401 is not retried"
    );

    let bad = SstAuth::Login {
        username: SST_USER.into(),
        password: "nope".into(),
    };
    let e = SstClient::new(config(&standin, bad), None)
        .unwrap()
        .houses()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Unable to log in"), "{e}");
    let e = SstClient::new(config(&standin, SstAuth::Token(standin.token())), None)
        .unwrap()
        .counters(1, now())
        .await
        .unwrap_err();
    assert!(matches!(e, SstError::NotAllowed { status: 404, .. }), "{e}");
}

#[tokio::test]
async fn slow_answers_and_5xx_are_retried() {
    let standin = SstStandIn::start().await;
    let client = SstClient::new(config(&standin, SstAuth::Token(standin.token())), None).unwrap();
    standin.fault(Fault::Delay(Duration::from_secs(3)));
    standin.fault(Fault::Status(503));
    let (readings, _) = client.counters(SST_HOUSE, now()).await.unwrap();
    assert_eq!(readings.len(), 2);
    assert_eq!(
        count(&standin, "GET /houses/9086/counters/"),
        3,
        "timeout, 503, then the answer"
    );
}

#[tokio::test]
async fn an_outage_ends_as_a_retryable_error_and_a_changed_shape_as_a_refusal() {
    let standin = SstStandIn::start().await;
    let src = source(
        &standin,
        SstAuth::Token(standin.token()),
        Arc::new(MemoryStore::new()),
    );
    for _ in 0..3 {
        standin.fault(Fault::Html);
    }
    let e = src.collect(&entry(), now()).await.unwrap_err();
    assert!(
        matches!(e, SourceError::Unavailable { .. }) && e.is_retryable(),
        "{e}"
    );
    assert!(e.to_string().contains("502"), "{e}");

    standin.fault(Fault::Malformed);
    let e = src.collect(&entry(), now()).await.unwrap_err();
    assert!(matches!(e, SourceError::Refused { .. }), "{e}");
    assert!(e.to_string().contains("unexpected shape"), "{e}");
}

#[tokio::test]
async fn zero_and_jump_glitches_are_stored_as_they_came_for_the_counter_rules() {
    let standin = SstStandIn::start().await;
    let history = Arc::new(MemoryStore::new());
    let prev = |id: i64, v: f64| {
        Reading::new(
            MeterId::new(&format!("sst-{id}")).unwrap(),
            MeasureName::new("volume").unwrap(),
            v,
            Unit::Litre,
            Kind::Cumulative,
            now() - chrono::Duration::hours(1),
            SourceName::new("sst-cloud").unwrap(),
        )
        .unwrap()
    };
    history
        .write(&[prev(SST_COLD, 123_000.0), prev(SST_HOT, 98_000.0)])
        .await
        .unwrap();
    standin.set_value(SST_COLD, json!(0));
    standin.set_value(SST_HOT, json!(98_000 + 50_000));
    let src = source(&standin, SstAuth::Token(standin.token()), history.clone());
    let out = src.collect(&entry(), now()).await.unwrap();
    // Nothing is dropped at the source: a rollup's counter rules judge these with the readings
    // after them (a zero the counter comes back from is a glitch, and adds nothing).
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let mut values: Vec<f64> = out.readings.iter().map(|r| r.value()).collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, [0.0, 148_000.0]);

    // Plausible use passes: 300 L in an hour.
    standin.set_value(SST_COLD, json!(123_300));
    standin.set_value(SST_HOT, json!(98_100));
    let out = src.collect(&entry(), now()).await.unwrap();
    assert_eq!((out.readings.len(), out.rejected.len()), (2, 0));
    // A counter element that is not a counter is rejected with its position; the rest land.
    standin.set_value(SST_HOT, json!("lots"));
    let out = src.collect(&entry(), now()).await.unwrap();
    assert_eq!(out.readings.len(), 1);
    assert_eq!(out.rejected[0].line, 2);
    assert_eq!(out.rejected[0].field.as_deref(), Some("value"));
}

#[test]
fn configuration_accepts_seed_000_names_and_names_what_is_wrong() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let c =
        SstConfig::from_lookup(env(&[("SST_CLOUT_TOKEN", "abc"), ("LOCATION", "dacha")])).unwrap();
    assert!(matches!(c.auth, SstAuth::Token(ref t) if t == "abc"));
    assert_eq!(c.location.as_deref(), Some("dacha"));
    assert_eq!(c.base_url, "https://api.sst-cloud.com");
    assert!(
        !format!("{:?}", c.auth).contains("abc"),
        "tokens are not printed"
    );
    let c = SstConfig::from_lookup(env(&[("TOKEN_SECRET_NAME", "sst/token")])).unwrap();
    assert!(matches!(c.auth, SstAuth::SecretId(ref id) if id == "sst/token"));
    assert!(SstClient::new(c, None)
        .unwrap_err()
        .to_string()
        .contains("SST_SECRET_ID"));
    let e = SstConfig::from_lookup(env(&[("SST_USERNAME", "u")])).unwrap_err();
    assert_eq!(e.variable, "SST_PASSWORD");
    let e = SstConfig::from_lookup(env(&[])).unwrap_err();
    assert_eq!(e.variable, "SST_TOKEN");
    let e = SstConfig::from_lookup(env(&[("SST_TOKEN", "t"), ("SST_BASE_URL", "ftp://x")]))
        .unwrap_err();
    assert_eq!(e.variable, "SST_BASE_URL");
    let e =
        SstConfig::from_lookup(env(&[("SST_TOKEN", "t"), ("SST_TIMEOUT_SECS", "-1")])).unwrap_err();
    assert_eq!(e.variable, "SST_TIMEOUT_SECS");
}

#[tokio::test]
async fn without_house_counters_each_meter_device_is_read() {
    let standin = SstStandIn::start().await;
    standin.hide_house_counters();
    let client = SstClient::new(config(&standin, SstAuth::Token(standin.token())), None).unwrap();
    let (readings, rejected) = client.counters(SST_HOUSE, now()).await.unwrap();
    assert_eq!((readings.len(), rejected.len()), (2, 0));
    assert_eq!(count(&standin, "GET /houses/9086/devices/"), 1);
    assert_eq!(
        count(&standin, "GET /houses/9086/devices/29485/counters/"),
        1
    );
}
