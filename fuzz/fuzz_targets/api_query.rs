//! The HTTP API's path and query parsing on arbitrary request targets: every answer is a
//! status, 5xx never (a bad parameter is the caller's error).
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use meter_api::{router, ApiState, AuthConfig};
use meter_core::testing::MemoryStore;
use tower::ServiceExt;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Routes that parse parameters, with the fuzzed text as their query or path segment.
    let targets = [
        format!("/v1/latest?{text}"),
        format!("/v1/meters/m/readings?{text}"),
        format!("/v1/meters/m/daily?{text}"),
        format!("/v1/meters/m/hourly?{text}"),
        format!("/v1/meters/m/chart.svg?{text}"),
        format!("/?{text}"),
        format!("/timeSeries-data?{text}"),
        format!("/v1/meters/{text}/daily"),
    ];
    let store = Arc::new(MemoryStore::new());
    let state = ApiState {
        readings: store.clone(),
        forecasts: store.clone(),
        registry: Some(store.clone()),
        counters: store,
        push: None,
        auth: AuthConfig::disabled(),
        default_zone: chrono_tz::Tz::UTC,
        clock: Arc::new(chrono::Utc::now),
    };
    let app = router(state);
    for uri in targets {
        let Ok(req) = Request::get(uri.as_str()).body(Body::empty()) else {
            continue;
        };
        let resp = runtime()
            .block_on(app.clone().oneshot(req))
            .expect("infallible");
        assert!(!resp.status().is_server_error(), "{uri}: {}", resp.status());
    }
});
