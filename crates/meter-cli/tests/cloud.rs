//! `meter store init`, `meter import` and `meter query` on the cloud history stores
//! (`--store dynamodb:TABLE`, `--store timestream:DATABASE/TABLE`), against the local AWS
//! emulator the test command starts (`AWS_ENDPOINT_URL`).

mod support;

use std::process::{Command, Output};

use meter_aws_testing::unique;
use serde_json::Value;
use support::{daily_sums, examples, wide_sums, EXAMPLE_DAYS};

fn moto() -> Option<String> {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("METER_REQUIRE_MOTO").is_none(),
                "METER_REQUIRE_MOTO is set but AWS_ENDPOINT_URL is not"
            );
            eprintln!("skipped: no AWS_ENDPOINT_URL (scripts/test.sh starts moto)");
            None
        }
    }
}

fn meter(dir: &std::path::Path, store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meter"))
        .current_dir(dir)
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("METER_TZ")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn a_dynamodb_history_store_is_initialised_backfilled_and_queried() {
    let Some(_) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = format!("dynamodb:{}", unique("readings"));
    let init = ok(&meter(dir.path(), &store, &["store", "init"]));
    assert_eq!(init.trim(), format!("created {store}"));
    let again = ok(&meter(dir.path(), &store, &["store", "init"]));
    assert_eq!(again.trim(), format!("{store} exists"));

    // Good rows and a bad one in the same file: the good land, the bad is quarantined.
    let wide = std::fs::read_to_string(examples().join("consumption-wide.csv")).unwrap();
    let bad_line = format!("EX00101,2024-03-04{}\n", ",x".repeat(48));
    let file = dir.path().join("with-bad-row.csv");
    std::fs::write(&file, format!("{wide}{bad_line}")).unwrap();
    let out = meter(
        dir.path(),
        &store,
        &["import", "--json", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3), "partial: one row was rejected");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["readings_stored"], 288);
    assert_eq!(summary["rows_rejected"], 48, "each bad cell of the row");
    let quarantine = dir
        .path()
        .join(format!("{}.quarantine.jsonl", store.replace(':', "-")));
    let q = std::fs::read_to_string(&quarantine).unwrap();
    assert!(q.contains("\"line\":8"), "{q}");

    let query = |meter_id: &str| -> Vec<(String, f64)> {
        let args = [&["query", "daily", meter_id][..], &EXAMPLE_DAYS].concat();
        let out = ok(&meter(dir.path(), &store, &args));
        daily_sums(&serde_json::from_str(&out).unwrap())
    };
    for m in ["EX00101", "EX00102"] {
        assert_eq!(query(m), wide_sums(m));
    }
    // A second import of the same file changes no sum.
    let out = meter(
        dir.path(),
        &store,
        &["import", "--json", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(query("EX00101"), wide_sums("EX00101"));

    let latest = ok(&meter(
        dir.path(),
        &store,
        &["query", "latest", "EX00102", "--format", "json"],
    ));
    let latest: Value = serde_json::from_str(&latest).unwrap();
    assert!(latest[0]["time"]
        .as_str()
        .unwrap()
        .starts_with("2024-03-03T23:30"));
}

#[test]
fn a_timestream_backfill_of_old_readings_lands_through_the_magnetic_store() {
    let Some(_) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = unique("meters");
    let store = format!("timestream:{db}/readings");
    assert_eq!(
        ok(&meter(dir.path(), &store, &["store", "init"])).trim(),
        format!("created {store}")
    );
    let long = examples().join("readings-long.csv");
    let out = meter(
        dir.path(),
        &store,
        &["import", "--json", long.to_str().unwrap()],
    );
    let summary: Value = serde_json::from_slice(&ok(&out).into_bytes()).unwrap();
    assert_eq!(summary["readings_stored"], 72);

    let data: Value = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { meter_aws_testing::moto_state().await });
    let table = data["timestreamwrite"]["TimestreamTable"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["db_name"] == db.as_str())
        .unwrap();
    assert_eq!(
        table["magnetic_store_write_properties"]["EnableMagneticStoreWrites"],
        true
    );
    assert_eq!(table["records"].as_array().unwrap().len(), 72);
}

#[test]
fn local_only_commands_refuse_a_cloud_store_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = meter(dir.path(), "dynamodb:readings", &["registry", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`meter registry` works on the local store"),
        "{err}"
    );
    let out = meter(dir.path(), "timestream:only-a-db", &["query", "meters"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("timestream:DATABASE/TABLE"));
}

/// `meter --store dynamodb:T import` of 10,000 rows over 200 meters (in the order collectors
/// write them: every meter at t, then t+5 min) with 20% of AWS requests faulted: every reading
/// is stored on the first run or on a re-run of the same command, and the command's count
/// agrees with the table. (200 meters, not more: the import ends by recomputing every series'
/// stored rollups, a few Queries each, and the emulator's Query reads its whole table.)
#[test]
fn a_backfill_of_many_series_through_faults_stores_every_reading() {
    use meter_standins::fault_proxy::{FaultPlan, FaultProxy};
    const METERS: usize = 200;
    const TIMES: usize = 50;
    let Some(endpoint) = moto() else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let plan = FaultPlan {
        share: 0.2,
        seed: 29,
    };
    let proxy = runtime.block_on(FaultProxy::start(&endpoint, plan));
    let dir = tempfile::tempdir().unwrap();
    let table = unique("backfill");
    let store = format!("dynamodb:{table}");
    ok(&meter(dir.path(), &store, &["store", "init"]));
    let mut csv = String::from("meter,time,value,unit,measure,kind\n");
    for t in 0..TIMES {
        let time = 1_700_000_000 + 300 * t as i64;
        for m in 0..METERS {
            csv.push_str(&format!(
                "m{m:04},{time},{},L,volume,cumulative\n",
                t * 10 + m
            ));
        }
    }
    let file = dir.path().join("backfill.csv");
    std::fs::write(&file, csv).unwrap();

    let mut runs = Vec::new();
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_meter"))
            .current_dir(dir.path())
            .args(["--store", &store, "import", "--json", "--no-progress"])
            .arg(&file)
            .env("AWS_ENDPOINT_URL", proxy.url())
            .env_remove("METER_TZ")
            .output()
            .unwrap();
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let done = out.status.success();
        runs.push((out.status.code(), summary));
        if done {
            break;
        }
    }
    let (code, summary) = runs.last().unwrap();
    assert_eq!(*code, Some(0), "{runs:?}");
    assert_eq!(summary["readings_stored"], METERS * TIMES, "{summary}");
    assert!(proxy.counts().total() > 100, "the proxy faulted requests");

    // The table holds exactly those readings, with their values.
    let items = runtime.block_on(async {
        let sdk = meter_aws_testing::emulator().await.unwrap();
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = ddb
                .scan()
                .table_name(&table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break items,
            }
        }
    });
    let mut readings = std::collections::BTreeMap::new();
    for item in &items {
        let series = item["series"].as_s().unwrap();
        if !meter_store_dynamodb::is_readings_partition(series) {
            continue;
        }
        let ts: i64 = item["ts"].as_n().unwrap().parse().unwrap();
        let v: f64 = item["v"].as_n().unwrap().parse().unwrap();
        assert!(readings.insert((series.clone(), ts), v).is_none());
    }
    assert_eq!(readings.len(), METERS * TIMES);
    for ((series, ts), v) in &readings {
        let m: usize = series[1..5].parse().unwrap();
        let t = ((ts / 1000 - 1_700_000_000) / 300) as usize;
        assert_eq!(*v, (t * 10 + m) as f64, "{series} at {ts}");
    }
    eprintln!(
        "backfill: {} readings over {METERS} series, {} runs, {} requests through the proxy, {} faulted",
        readings.len(),
        runs.len(),
        proxy.counts().requests(),
        proxy.counts().total()
    );
}
