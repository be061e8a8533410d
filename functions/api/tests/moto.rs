//! The api handler on Function URL requests, against the local AWS emulator: readings in the
//! DynamoDB history store, seed 003's future points, the token in Secrets Manager.

use std::sync::Arc;

use chrono::{Duration, DurationRound, TimeDelta, Utc};
use meter_core::ports::ReadingWriter;
use meter_core::{Kind, MeasureName, MeterId, Reading, SourceName, Unit};
use meter_fn_api::{handle, Api, Auth, Config};
use meter_lambda::testing::function_url_request;
use meter_lambda::HistoryConfig;
use meter_store_dynamodb::{
    create_tables, DynamoCounters, DynamoForecasts, DynamoReadings, DynamoRegistry,
};
use serde_json::Value;

async fn json(resp: axum::response::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_api_answers_our_routes_and_seed_003s_with_the_token_only() {
    let Some(sdk) = meter_aws_testing::emulator().await else {
        return;
    };
    let tag = format!("api-{}", std::process::id());
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let [registry, readings, forecasts, counters] =
        create_tables(&ddb, &format!("{tag}-")).await.unwrap();
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&tag)
        .secret_string("t0ken")
        .send()
        .await
        .unwrap();
    let now = Utc::now().duration_trunc(TimeDelta::minutes(5)).unwrap();
    let point = |t, v| {
        Reading::new(
            MeterId::new("test-run").unwrap(),
            MeasureName::new("value").unwrap(),
            v,
            Unit::Dimensionless,
            Kind::Gauge,
            t,
            SourceName::new("http-json").unwrap(),
        )
        .unwrap()
    };
    let past: Vec<Reading> = (1..=288)
        .map(|i| point(now - Duration::minutes(5 * i), i as f64))
        .collect();
    let future: Vec<Reading> = (1..=288)
        .map(|i| point(now + Duration::minutes(5 * i), i as f64))
        .collect();
    let history = Arc::new(DynamoReadings::new(ddb.clone(), &readings));
    let ahead = Arc::new(DynamoForecasts::new(ddb.clone(), &forecasts));
    for chunk in past.chunks(25) {
        assert!(history.write(chunk).await.unwrap().is_complete());
    }
    for chunk in future.chunks(25) {
        assert!(ahead.write(chunk).await.unwrap().is_complete());
    }
    let config = Config {
        registry_table: registry.clone(),
        forecasts_table: forecasts,
        counters_table: counters.clone(),
        history: HistoryConfig::Dynamo { table: readings },
        auth: Auth::Bearer {
            secret_id: tag.clone(),
        },
        zone: chrono_tz::Tz::UTC,
    };
    let api = Api::with_parts(
        history,
        ahead,
        Arc::new(DynamoRegistry::new(ddb.clone(), &registry)),
        Arc::new(DynamoCounters::new(ddb, &counters)),
        Arc::new(meter_aws::AwsSecrets::new(&sdk)),
        &config,
    );
    let (metrics, captured) = meter_lambda::metrics::Emitter::capture("api");
    let api = api.with_metrics(metrics);

    let (status, meters) = json(
        handle(
            &api,
            function_url_request(
                "GET",
                "/v1/meters",
                "",
                &[("authorization", "Bearer t0ken")],
                None,
            ),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{meters}");
    assert_eq!(meters["meters"][0]["meter"], "test-run", "{meters}");

    // Seed 003's own end-to-end check: now +/- 4 days answers 288 past and 288 future rows.
    let query = format!(
        "startDate={}&endDate={}&identifier=test-run",
        (now - Duration::days(4)).timestamp_millis(),
        (now + Duration::days(4)).timestamp_millis()
    );
    let (status, rows) = json(
        handle(
            &api,
            function_url_request(
                "GET",
                "/timeSeries-data",
                &query,
                &[("x-security-token", "t0ken")],
                None,
            ),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows["historicalRows"].as_array().unwrap().len(), 288);
    assert_eq!(rows["futureRows"].as_array().unwrap().len(), 288);

    for (path, query, headers) in [
        ("/v1/meters", "", vec![]),
        ("/v1/meters", "", vec![("authorization", "Bearer wrong")]),
        ("/timeSeries-data", query.as_str(), vec![]),
    ] {
        let (status, _) = json(
            handle(
                &api,
                function_url_request("GET", path, query, &headers, None),
            )
            .await
            .unwrap(),
        )
        .await;
        assert!(status == 401 || status == 400, "{path}: {status}");
        assert_ne!(status, 200);
    }
    // Each refusal is counted, as a refused credential or another client error.
    let refused = ["Unauthorized", "ClientErrors"].map(|m| captured.sum(m).unwrap());
    assert_eq!(refused[0] + refused[1], 3.0, "{refused:?}");
    assert_eq!(captured.sum("ServerErrors").unwrap(), 0.0);
}
