//! `meter sst discover`, `meter registry` and `meter collect` against the stand-in services, then
//! the API over the filled store.

mod support;

use std::process::{Command, Output};

use meter_standins::{
    SeriesStandIn, SstStandIn, SST_COLD, SST_HOT, SST_HOUSE, SST_PASSWORD, SST_USER,
};
use serde_json::Value;
use support::{get_json, Server};

fn meter(store: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meter"));
    cmd.arg("--store").arg(store).args(args);
    for k in [
        "SST_TOKEN",
        "SST_CLOUT_TOKEN",
        "SST_USERNAME",
        "SST_PASSWORD",
        "SST_SECRET_ID",
        "TOKEN_SECRET_NAME",
        "SST_BASE_URL",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn discover_then_collect_fills_the_store_and_the_api_answers_cold_and_hot() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let standin = rt.block_on(SstStandIn::start());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("meter.db");
    let url = standin.url();
    let sst = [
        ("SST_BASE_URL", url.as_str()),
        ("SST_USERNAME", SST_USER),
        ("SST_PASSWORD", SST_PASSWORD),
        ("LOCATION", "flat"),
    ];

    let out = meter(&store, &["sst", "discover", "--format", "json"], &sst);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counters: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counters.as_array().unwrap().len(), 2);
    let out = meter(&store, &["registry", "list", "--format", "json"], &[]);
    let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entries[0]["id"], format!("sst-house-{SST_HOUSE}"));
    assert_eq!(entries[0]["source"], "sst-cloud");
    assert_eq!(entries[0]["zone"], "Europe/Moscow");

    let out = meter(&store, &["collect", "--json"], &sst);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            report["collected"].as_u64(),
            report["readings_written"].as_u64()
        ),
        (Some(1), Some(2))
    );

    // Without SST settings the entry is skipped, said so, and the exit code is a failure.
    let out = meter(&store, &["collect"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no sst-cloud source here"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SST_TOKEN"));

    let mut server = Server::start_with(true, Some(&store), &[]);
    let latest = get_json(&server.addr, "/v1/latest");
    let rows = latest["latest"].as_array().unwrap();
    let water = |which: &str| {
        rows.iter()
            .find(|r| {
                r["tags"]["water_temperature"] == which
                    && r["tags"]["house"]
                        .as_str()
                        .and_then(|h| h.parse::<i64>().ok())
                        == Some(SST_HOUSE)
            })
            .unwrap_or_else(|| panic!("no {which} reading in {rows:?}"))
            .clone()
    };
    let (cold, hot) = (water("cold"), water("hot"));
    assert_eq!(
        (cold["meter"].as_str(), cold["value"].as_f64()),
        (Some(format!("sst-{SST_COLD}").as_str()), Some(123_457.0))
    );
    assert_eq!(
        (hot["meter"].as_str(), hot["value"].as_f64()),
        (Some(format!("sst-{SST_HOT}").as_str()), Some(98_765.0))
    );
    assert_eq!(
        (cold["unit"].as_str(), cold["tags"]["location"].as_str()),
        (Some("L"), Some("flat"))
    );
    server.stop();
}

#[test]
fn an_http_json_entry_collects_history_and_forecasts_into_the_store() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let standin = rt.block_on(SeriesStandIn::start(None, Some("key-1")));
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("meter.db");
    let url = format!("url={}/series/{{identifier}}", standin.url());
    let out = meter(
        &store,
        &[
            "registry",
            "add",
            "test-run",
            "--source",
            "http-json",
            "--param",
            &url,
            "--param",
            "api_key_header=x-api-key",
            "--param",
            "api_key_env=SERIES_KEY",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = meter(&store, &["collect", "--json"], &[("SERIES_KEY", "key-1")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            report["readings_written"].as_u64(),
            report["forecasts_written"].as_u64()
        ),
        (Some(288), Some(288))
    );
    let out = meter(
        &store,
        &["registry", "add", "x", "--source", "http-json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --param url"));
    let out = meter(&store, &["registry", "remove", "test-run"], &[]);
    assert!(out.status.success());
    let out = meter(&store, &["registry", "remove", "test-run"], &[]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn the_registry_can_live_in_the_stacks_dynamodb_table() {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        assert!(
            std::env::var_os("METER_REQUIRE_MOTO").is_none(),
            "METER_REQUIRE_MOTO is set but AWS_ENDPOINT_URL is not"
        );
        eprintln!("skipped: no AWS_ENDPOINT_URL (scripts/test.sh starts moto)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let standin = rt.block_on(SstStandIn::start());
    let prefix = format!("cli-{}-", std::process::id());
    let secret_name = format!("{prefix}sst-token");
    let [registry_table, ..] = rt.block_on(async {
        let sdk = meter_aws::sdk_config().await;
        // The token comes from Secrets Manager (SST_SECRET_ID), as the deployed functions read it.
        aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(&secret_name)
            .secret_string(standin.token())
            .send()
            .await
            .unwrap();
        meter_store_dynamodb::create_tables(&aws_sdk_dynamodb::Client::new(&sdk), &prefix)
            .await
            .unwrap()
    });
    let spec = format!("dynamodb:{registry_table}");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("meter.db");
    let url = standin.url();
    let sst = [
        ("SST_BASE_URL", url.as_str()),
        ("SST_SECRET_ID", secret_name.as_str()),
    ];
    let out = meter(&store, &["--registry", &spec, "sst", "discover"], &sst);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = meter(
        &store,
        &[
            "--registry",
            &spec,
            "registry",
            "add",
            "test-run",
            "--source",
            "http-json",
            "--param",
            "url=http://x/{identifier}",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = meter(
        &store,
        &["registry", "list", "--format", "json"],
        &[("METER_REGISTRY", spec.as_str())],
    );
    let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [format!("sst-house-{SST_HOUSE}").as_str(), "test-run"]);
    // The local store's own registry stayed empty.
    let out = meter(&store, &["registry", "list", "--format", "json"], &[]);
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
    let out = meter(
        &store,
        &["--registry", "postgres:x", "registry", "list"],
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("use dynamodb:TABLE"));
}
