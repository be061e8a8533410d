//! The HTTP JSON source against seed 003's stand-in API, over real HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use meter_core::collect::{collect_all, Source, SourceError};
use meter_core::ports::{MeterRegistry, RegistryEntry};
use meter_core::testing::MemoryStore;
use meter_core::{MeterId, SourceName};
use meter_sources::http_json::HttpJsonSource;
use meter_standins::SeriesStandIn;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-06-01T12:00:00Z")
        .unwrap()
        .to_utc()
}

fn entry(url: &str, extra: &[(&str, &str)]) -> RegistryEntry {
    let mut params: BTreeMap<String, String> = [(
        "url".to_owned(),
        format!("{url}/series/{{identifier}}?from={{from_ms}}&to={{to_ms}}"),
    )]
    .into();
    for (k, v) in extra {
        params.insert((*k).to_owned(), (*v).to_owned());
    }
    RegistryEntry {
        id: MeterId::new("test-run").unwrap(),
        source: SourceName::new("http-json").unwrap(),
        params,
        zone: None,
        enabled: true,
    }
}

fn source(env: &'static [(&'static str, &'static str)]) -> HttpJsonSource {
    let lookup = move |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    HttpJsonSource::new(Duration::from_secs(5), None, Arc::new(lookup))
}

#[tokio::test]
async fn a_day_either_side_of_now_splits_288_into_history_and_288_into_forecasts() {
    let standin = SeriesStandIn::start(Some(now()), Some("k3y")).await;
    let registry = MemoryStore::new();
    registry
        .put(&entry(
            &standin.url(),
            &[
                ("api_key_header", "x-api-key"),
                ("api_key_env", "SERIES_KEY"),
            ],
        ))
        .await
        .unwrap();
    let (history, forecasts) = (MemoryStore::new(), MemoryStore::new());
    let sources: BTreeMap<String, Arc<dyn Source>> = [(
        "http-json".to_owned(),
        Arc::new(source(&[("SERIES_KEY", "k3y")])) as Arc<dyn Source>,
    )]
    .into();
    let report = collect_all(&registry, &sources, &history, &forecasts, now())
        .await
        .unwrap();
    assert_eq!(
        (
            report.collected,
            report.readings_written,
            report.forecasts_written
        ),
        (1, 288, 288),
        "{report:?}"
    );
    assert!(history.all().iter().all(|r| r.time() < now()));
    assert!(forecasts.all().iter().all(|r| r.time() >= now()));
    // The values arrived as strings and were read as numbers.
    assert_eq!(history.all()[1].value(), 37.0);
    let asked = standin.requests.lock().unwrap().clone();
    assert!(
        asked[0].contains(
            &(now() - chrono::Duration::hours(24))
                .timestamp_millis()
                .to_string()
        ),
        "{asked:?}"
    );
}

#[tokio::test]
async fn a_missing_key_and_a_bad_mapping_are_clear() {
    let standin = SeriesStandIn::start(Some(now()), Some("k3y")).await;
    let e = source(&[])
        .collect(&entry(&standin.url(), &[]), now())
        .await
        .unwrap_err();
    assert!(
        matches!(e, SourceError::Refused { .. }) && e.to_string().contains("403"),
        "{e}"
    );
    let e = source(&[])
        .collect(
            &entry(
                &standin.url(),
                &[("api_key_header", "x-api-key"), ("api_key_env", "NOPE")],
            ),
            now(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, SourceError::Config { .. }) && e.to_string().contains("NOPE"),
        "{e}"
    );

    let open = SeriesStandIn::start(Some(now()), None).await;
    let out = source(&[])
        .collect(&entry(&open.url(), &[("value", "missing")]), now())
        .await
        .unwrap();
    assert!(out.readings.is_empty() && out.forecasts.is_empty());
    assert_eq!(out.rejected.len(), 576);
    assert_eq!(
        (out.rejected[0].line, out.rejected[0].field.as_deref()),
        (1, Some("missing"))
    );
    let e = source(&[])
        .collect(&entry(&open.url(), &[("items", "/data")]), now())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no array of points"), "{e}");
    let mut no_url = entry(&open.url(), &[]);
    no_url.params.remove("url");
    assert!(source(&[])
        .collect(&no_url, now())
        .await
        .unwrap_err()
        .to_string()
        .contains("params.url is required"));
}
