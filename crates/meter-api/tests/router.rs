//! The router without a server: every route, its errors, and the auth rules, over the in-memory
//! store, with a fixed clock.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use http_body_util::BodyExt;
use meter_api::{router, ApiState, AuthConfig, Secret};
use meter_core::decode::wide_csv::WideCsvDecoder;
use meter_core::decode::DecodeOptions;
use meter_core::ports::{CounterKey, Counters, ReadingWriter};
use meter_core::testing::{reading, MemoryStore};
use meter_core::{Kind, Reading, Unit};
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "s3cret-token-0123456789";
const SEED003: &str = "seed-003-key";
const HOOK: &str = "hook-secret";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-06-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

struct App {
    store: Arc<MemoryStore>,
    auth: AuthConfig,
}

impl App {
    async fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        // Seed 004's layout: one meter, two days of 48 half-hour slots.
        let mut csv = String::from("Meter,Date");
        for i in 0..48 {
            csv.push_str(&format!(",{}:{:02}", i / 2, (i % 2) * 30));
        }
        csv.push('\n');
        for (day, base) in [("2019-01-01", 1), ("2019-01-02", 2)] {
            csv.push_str(&format!("EE00027,{day}"));
            for i in 0..48 {
                csv.push_str(&format!(",{}", base + i % 5));
            }
            csv.push('\n');
        }
        let readings: Vec<Reading> =
            WideCsvDecoder::new(csv.as_bytes(), DecodeOptions::new("c.csv"))
                .map(Result::unwrap)
                .collect();
        store.write(&readings).await.unwrap();
        // Seed 001's pool: a temperature every 5 minutes for the last 24 hours.
        let pool: Vec<Reading> = (0..288)
            .map(|i| {
                let t = now() - Duration::minutes(5 * (288 - i));
                reading(
                    "pool",
                    "temperature",
                    t,
                    20.0 + (i % 12) as f64 * 0.25,
                    Kind::Gauge,
                    Unit::Celsius,
                )
            })
            .collect();
        store.write(&pool).await.unwrap();
        // Seed 003's identifier: 5-minute points from now - 24 h to now + 24 h.
        let series: Vec<Reading> = (-288..288)
            .map(|i| {
                let t = now() + Duration::minutes(5 * i);
                reading(
                    "test-run",
                    "value",
                    t,
                    ((i + 288) % 100) as f64,
                    Kind::Gauge,
                    Unit::Dimensionless,
                )
            })
            .collect();
        store.write(&series).await.unwrap();
        // An hourly interval meter across London's spring-forward night.
        let start = DateTime::parse_from_rfc3339("2024-03-30T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let energy: Vec<Reading> = (0..72)
            .map(|h| {
                reading(
                    "flat",
                    "energy",
                    start + Duration::hours(h),
                    1.0,
                    Kind::Interval,
                    Unit::KilowattHour,
                )
            })
            .collect();
        store.write(&energy).await.unwrap();
        let auth = AuthConfig {
            enabled: true,
            api_token: Secret::new(TOKEN),
            seed003_token: Secret::new(SEED003),
            webhook_secret: Secret::new(HOOK),
            write_token: None,
        };
        Self { store, auth }
    }

    fn state(&self) -> ApiState {
        ApiState {
            readings: self.store.clone(),
            forecasts: self.store.clone(),
            registry: Some(self.store.clone()),
            counters: self.store.clone(),
            push: None,
            auth: self.auth.clone(),
            default_zone: Tz::UTC,
            clock: Arc::new(now),
        }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let resp = router(self.state()).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, headers, body)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let req = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = self.send(req).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn error(&self, uri: &str) -> (StatusCode, String) {
        let (status, body) = self.get(uri).await;
        assert!(body["error"].is_string(), "{uri}: {body}");
        (status, body["code"].as_str().unwrap().to_owned())
    }

    async fn hook(&self, secret: Option<&str>, body: &str) -> (StatusCode, Value) {
        let mut req = Request::builder().method(Method::PUT).uri("/webhook");
        if let Some(s) = secret {
            req = req.header("x-webhook-secret", s);
        }
        let (status, _, body) = self
            .send(req.body(Body::from(body.to_owned())).unwrap())
            .await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn protected_routes_need_the_exact_token() {
    let app = App::new().await;
    for uri in [
        "/v1/meters",
        "/v1/latest",
        "/ui",
        "/?meterId=EE00027&date=01-01-2019",
    ] {
        let (status, headers, body) = app
            .send(Request::get(uri).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "unauthorized");
    }
    let almost = [
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        format!("Bearer {TOKEN}x"),
        format!("Bearer {}X", &TOKEN[..TOKEN.len() - 1]),
        format!("Basic {TOKEN}"),
        TOKEN.to_owned(),
        "Bearer ".to_owned(),
    ];
    for auth in almost {
        let req = Request::get("/v1/meters")
            .header(header::AUTHORIZATION, &auth)
            .body(Body::empty())
            .unwrap();
        assert_eq!(app.send(req).await.0, StatusCode::UNAUTHORIZED, "{auth}");
    }
    let (status, _) = app.get("/v1/meters").await;
    assert_eq!(status, StatusCode::OK);
    let req = Request::get("/v1/meters")
        .header(header::AUTHORIZATION, format!("bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.0, StatusCode::OK);
    let req = Request::get("/ui")
        .header(header::COOKIE, format!("other=1; meter_token={TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.0, StatusCode::OK);
}

#[tokio::test]
async fn open_routes_and_switched_off_auth() {
    let mut app = App::new().await;
    for uri in ["/v1/openapi.json", "/healthz", "/ui/login"] {
        let (status, _, _) = app
            .send(Request::get(uri).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
    let (_, _, body) = app
        .send(
            Request::get("/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    for path in [
        "/v1/meters/{meter}/readings",
        "/v1/meters/{meter}/daily",
        "/timeSeries-data",
        "/webhook",
        "/",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    app.auth = AuthConfig::disabled();
    let (status, _, _) = app
        .send(Request::get("/v1/meters").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn login_sets_a_cookie_only_for_the_right_token() {
    let app = App::new().await;
    let post = |token: &str| {
        Request::post("/ui/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .unwrap()
    };
    let (status, headers, _) = app.send(post(TOKEN)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with(&format!("meter_token={TOKEN};")) && cookie.contains("HttpOnly"));
    assert_eq!(app.send(post("wrong")).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn meters_and_latest() {
    let app = App::new().await;
    let (_, v) = app.get("/v1/meters").await;
    let ids: Vec<&str> = v["meters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["meter"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["EE00027", "flat", "pool", "test-run"]);
    let (_, v) = app.get("/v1/latest?meter=pool").await;
    let latest = &v["latest"][0];
    assert_eq!(latest["meter"], "pool");
    assert_eq!(latest["time"], "2024-06-01T11:55:00+00:00");
    assert_eq!(
        app.error("/v1/latest?meter=nobody").await,
        (StatusCode::NOT_FOUND, "unknown_meter".into())
    );
}

#[tokio::test]
async fn readings_page_through_a_range_in_json_and_csv() {
    let app = App::new().await;
    let mut uri =
        "/v1/meters/pool/readings?from=2024-05-31T12:00:00Z&to=2024-06-01T12:00:00Z&limit=100"
            .to_owned();
    let mut seen = Vec::new();
    loop {
        let (status, v) = app.get(&uri).await;
        assert_eq!(status, StatusCode::OK);
        let page = v["readings"].as_array().unwrap();
        assert!(page.len() <= 100);
        seen.extend(page.iter().map(|r| r["time"].as_str().unwrap().to_owned()));
        match v["next_cursor"].as_str() {
            Some(c) => {
                uri = format!(
                    "/v1/meters/pool/readings?from=2024-05-31T12:00:00Z&to=2024-06-01T12:00:00Z&limit=100&cursor={}",
                    c.replace(':', "%3A")
                )
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 288);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen);

    let req =
        Request::get("/v1/meters/pool/readings?from=2024-06-01&to=2024-06-01&format=csv&limit=10")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
    let (status, headers, body) = app.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(headers.contains_key("x-next-cursor"));
    let text = String::from_utf8(body).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("meter,measure,time,value,unit,kind,source")
    );
    assert_eq!(lines.count(), 10);
}

#[tokio::test]
async fn readings_errors_are_clear_4xx() {
    let app = App::new().await;
    let base = "/v1/meters/pool/readings";
    let cases = [
        (
            format!("{base}?to=2024-06-01"),
            StatusCode::BAD_REQUEST,
            "missing_parameter",
        ),
        (
            format!("{base}?from=yesterday&to=2024-06-01"),
            StatusCode::BAD_REQUEST,
            "bad_parameter",
        ),
        (
            format!("{base}?from=2024-06-01T00:00:00Z&to=2024-06-01T00:00:00Z"),
            StatusCode::BAD_REQUEST,
            "empty_range",
        ),
        (
            format!("{base}?from=2024-06-02T00:00:00Z&to=2024-06-01T00:00:00Z"),
            StatusCode::BAD_REQUEST,
            "reversed_range",
        ),
        (
            format!("{base}?from=2020-01-01&to=2024-06-01"),
            StatusCode::BAD_REQUEST,
            "range_too_large",
        ),
        (
            format!("{base}?from=2024-06-01&to=2024-06-01&limit=0"),
            StatusCode::BAD_REQUEST,
            "bad_parameter",
        ),
        (
            format!("{base}?from=2024-06-01&to=2024-06-01&limit=abc"),
            StatusCode::BAD_REQUEST,
            "bad_parameter",
        ),
        (
            format!("{base}?from=2024-06-01&to=2024-06-01&tz=Mars/Olympus"),
            StatusCode::BAD_REQUEST,
            "unknown_zone",
        ),
        (
            format!("{base}?from=2024-06-01&to=2024-06-01&format=xml"),
            StatusCode::BAD_REQUEST,
            "bad_parameter",
        ),
        (
            format!("{base}?from=2024-06-01&to=2024-06-01&measure=volume"),
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            format!("{base}?from=2024-06-01&to=2024-06-01&measure=9bad"),
            StatusCode::BAD_REQUEST,
            "bad_parameter",
        ),
        (
            format!("{base}?from=2024-06-01&to=2024-06-01&cursor=zzz"),
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "/v1/meters/nobody/readings?from=2024-06-01&to=2024-06-01".to_owned(),
            StatusCode::NOT_FOUND,
            "unknown_meter",
        ),
        ("/v1/nothing".to_owned(), StatusCode::NOT_FOUND, "not_found"),
        // axum's own rejections come in the one shape too.
        (
            "/v1/meters/%FF/daily?from=2024-06-01&to=2024-06-01".to_owned(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        // Far below the HTTP server's own 64 KiB bound, which would answer with a bare status.
        (
            format!(
                "/v1/meters/m/readings?from=2024-06-01&pad={}",
                "a".repeat(9000)
            ),
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
        ),
    ];
    for (uri, status, code) in cases {
        assert_eq!(app.error(&uri).await, (status, code.to_owned()), "{uri}");
    }
    let big = Request::put("/webhook")
        .header("content-type", "application/json")
        .body(Body::from(vec![b' '; meter_api::MAX_BODY_BYTES + 1]))
        .unwrap();
    let (status, headers, body) = app.send(big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers["content-type"], "application/json");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], "body_too_large", "{v}");
}

#[tokio::test]
async fn daily_and_hourly_rollups_in_a_zone_say_their_rule() {
    let app = App::new().await;
    let (status, v) = app
        .get("/v1/meters/flat/daily?from=2024-03-30&to=2024-03-31&tz=Europe/London")
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["rule"], "sum");
    assert_eq!(v["zone"], "Europe/London");
    let days: Vec<(String, f64)> = v["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["date"].as_str().unwrap().to_owned(),
                b["value"].as_f64().unwrap(),
            )
        })
        .collect();
    // One kWh per UTC hour: the 30th (GMT) has 24 hours, the 31st (spring forward) 23.
    assert_eq!(
        days,
        vec![("2024-03-30".into(), 24.0), ("2024-03-31".into(), 23.0)]
    );
    let (_, v) = app
        .get("/v1/meters/flat/hourly?from=2024-03-31&to=2024-03-31&tz=Europe/London")
        .await;
    assert_eq!(v["buckets"].as_array().unwrap().len(), 23);
    assert_eq!(v["buckets"][0]["hour"], "2024-03-31T00:00:00+00:00");
    assert_eq!(v["buckets"][1]["hour"], "2024-03-31T02:00:00+01:00");
    let (_, v) = app
        .get("/v1/meters/pool/daily?from=2024-06-01&to=2024-06-01")
        .await;
    assert_eq!(v["rule"], "min_mean_max");
    assert!(v["buckets"][0]["min"].is_number());
    assert_eq!(
        app.error("/v1/meters/flat/daily?from=2024-03-31&to=2024-03-30")
            .await
            .1,
        "reversed_range"
    );
    assert_eq!(
        app.error("/v1/meters/flat/hourly?from=2024-01-01&to=2024-12-31")
            .await
            .1,
        "range_too_large"
    );
    assert_eq!(
        app.error("/v1/meters/flat/daily?from=31-03-2024&to=2024-03-31")
            .await
            .1,
        "bad_parameter"
    );
    assert_eq!(
        app.error("/v1/meters/flat/daily?from=2024-03-30").await.1,
        "missing_parameter"
    );
}

#[tokio::test]
async fn the_chart_is_seed_001s() {
    let app = App::new().await;
    let req = Request::get("/v1/meters/pool/chart.svg")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = app.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml");
    let svg = String::from_utf8(body).unwrap();
    assert!(svg.contains("Last 24 Hours Pool Temperature"));
    assert!(
        svg.contains(r#"data-points="288""#),
        "every reading of the last 24 hours is drawn"
    );
    // The last reading (i = 287: 20 + 11 * 0.25 = 22.75) is annotated, rounded to one decimal.
    assert!(svg.contains(r#"data-last="22.8""#));
    assert!(svg.contains(">22.8</text></svg>"));
    assert_eq!(
        app.error("/v1/meters/pool/chart.svg?hours=0").await.1,
        "bad_parameter"
    );
}

#[tokio::test]
async fn the_page_lists_every_meter_with_its_chart() {
    let app = App::new().await;
    let req = Request::get("/ui")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = app.send(req).await;
    assert_eq!(status, StatusCode::OK);
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("<meta name=\"viewport\""));
    assert_eq!(html.matches("<section class=\"meter\"").count(), 4);
    assert_eq!(html.matches("<svg").count(), 4);
}

#[tokio::test]
async fn seed_004_daily_sum_and_its_errors_in_its_order() {
    let app = App::new().await;
    let req = Request::get("/?meterId=EE00027&date=01-01-2019")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = app.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let want: i64 = (0..48).map(|i| 1 + i % 5).sum();
    // The seed's own bytes: indented, keys in its order, the sum an integer.
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!(
            "{{\n  \"meterId\": \"EE00027\",\n  \"date\": \"01-01-2019\",\n  \"sum\": {want}\n}}"
        )
    );
    let (_, v) = app.get("/?meterId=EE00027&date=02-01-2019").await;
    assert_eq!(v["sum"], (0..48).map(|i| 2 + i % 5).sum::<i64>());
    let (status, v) = app.get("/?meterId=EE99999&date=01-01-2019").await;
    assert_eq!((status, v["sum"].as_i64()), (StatusCode::OK, Some(0)));

    let date_msg = "Date parameter is required. Pass date as a query parameter with key date";
    let meter_msg =
        "MeterId parameter is required. Pass meter id as a query parameter with key meterId";
    let cases = [
        ("/", date_msg.to_owned()),
        ("/?meterId=EE00027", date_msg.to_owned()),
        ("/?meterId=EE00027&date=%20", date_msg.to_owned()),
        ("/?date=01-01-2019", meter_msg.to_owned()),
        ("/?date=2019-01-01", meter_msg.to_owned()),
        (
            "/?meterId=EE00027&date=2019-01-01",
            "Invalid date 2019-01-01. Use format dd-MM-yyyy".to_owned(),
        ),
        (
            "/?meterId=EE00027&date=31-02-2019",
            "Invalid date 31-02-2019. Use format dd-MM-yyyy".to_owned(),
        ),
        (
            "/?meterId=EE00027&date=1-1-2019",
            "Invalid date 1-1-2019. Use format dd-MM-yyyy".to_owned(),
        ),
    ];
    for (uri, message) in cases {
        let (status, v) = app.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(v["error"], message, "{uri}");
    }
}

#[tokio::test]
async fn seed_003_serves_288_past_and_288_future_rows() {
    let app = App::new().await;
    let start = (now() - Duration::days(4)).timestamp_millis();
    let end = (now() + Duration::days(4)).timestamp_millis();
    let uri = format!("/timeSeries-data?startDate={start}&endDate={end}&identifier=test-run");
    let req = |token: Option<&str>| {
        let mut r = Request::get(&uri);
        if let Some(t) = token {
            r = r.header("x-security-token", t);
        }
        r.body(Body::empty()).unwrap()
    };
    let (status, _, body) = app.send(req(Some(SEED003))).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let hist = v["historicalRows"].as_array().unwrap();
    let fut = v["futureRows"].as_array().unwrap();
    assert_eq!((hist.len(), fut.len()), (288, 288));
    assert_eq!(
        hist[0],
        json!({"identifier": "test-run", "cpu": "87", "time": (now() - Duration::minutes(5)).timestamp_millis()})
    );
    assert!(
        hist[0]["time"].as_i64() > hist[1]["time"].as_i64(),
        "history is newest first"
    );
    assert_eq!(fut[0]["time"].as_i64(), Some(now().timestamp_millis()));
    assert!(
        fut[0]["time"].as_i64() < fut[1]["time"].as_i64(),
        "future rows ascend"
    );
    assert!(fut.iter().all(|r| r["cpu"].is_string()));

    for bad in [None, Some("nope"), Some(TOKEN)] {
        assert_eq!(
            app.send(req(bad)).await.0,
            StatusCode::UNAUTHORIZED,
            "{bad:?}"
        );
    }
    let missing = Request::get("/timeSeries-data?identifier=x")
        .header("x-security-token", SEED003)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = app.send(missing).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["error"],
        "Some query string params missing: startDate, endDate"
    );
    let bad = Request::get("/timeSeries-data?identifier=x&startDate=soon&endDate=1")
        .header("x-security-token", SEED003)
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(bad).await.0, StatusCode::BAD_REQUEST);
    // The last instant the date type holds: one millisecond more must not overflow.
    let last = Request::get("/timeSeries-data?identifier=x&startDate=0&endDate=8210266876799999")
        .header("x-security-token", SEED003)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = app.send(last).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], "bad_parameter", "{v}");
}

#[tokio::test]
async fn the_webhook_counts_each_press_once_and_refuses_strangers() {
    let app = App::new().await;
    let body = |ep: &str, payload: &str| {
        json!({"notifications": [{"ep": ep, "path": "/3200/0/5501", "ct": "text/plain", "payload": payload, "max-age": 0}]}).to_string()
    };
    assert_eq!(
        app.hook(None, &body("a", "MQ==")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.hook(Some("hook-secreT"), &body("a", "MQ==")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.hook(Some("hook-secre"), &body("a", "MQ==")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, v) = app.hook(Some(HOOK), &body("a", "MQ==")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["counted"], 1);
    let (_, v) = app.hook(Some(HOOK), &body("a", "MQ==")).await;
    assert_eq!(
        (v["counted"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
    let (_, v) = app.hook(Some(HOOK), &body("a", "Mg==")).await;
    assert_eq!(v["counted"], 1);
    let key = CounterKey::at("a", now());
    assert_eq!(app.store.total(&key).await.unwrap(), 2);

    let mixed = json!({"notifications": [
        {"ep": "b", "path": "/3303/0/5700", "payload": "MjE="},
        {"ep": "b", "path": "/3200/0/5501", "payload": "!!"},
        {"ep": "b", "path": "/3200/0/5501", "payload": "NQ=="}
    ]})
    .to_string();
    let (status, v) = app.hook(Some(HOOK), &mixed).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (v["counted"].as_u64(), v["ignored"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(v["rejected"][0]["notification"], 2);
    assert_eq!(app.hook(Some(HOOK), "").await.0, StatusCode::OK);
    assert_eq!(
        app.hook(Some(HOOK), "{not json").await.1["code"],
        "bad_body"
    );
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    assert_eq!(
        app.hook(Some(HOOK), &huge).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    let mut closed = App::new().await;
    closed.auth.webhook_secret = None;
    let (status, v) = closed.hook(Some(HOOK), &body("a", "MQ==")).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("webhook_disabled"))
    );
}
