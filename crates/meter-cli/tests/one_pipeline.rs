//! One bad file through the three ways readings come in from files (`meter import`, the drop
//! folder of `meter serve`, the import function) gives the same rejections: the same stage,
//! line, field, reason and raw text, apart from where the file was (`file`) and when (`at`).

mod support;

use std::path::Path;
use std::sync::Arc;

use meter_core::ports::ObjectStore;
use meter_core::testing::MemoryObjects;
use meter_fn_import::{handle, Budget, Import};
use meter_store_sqlite::SqliteStore;
use serde_json::{json, Value};
use support::Server;

/// Decode faults of several kinds (time, value, missing cells) and store refusals (units that
/// conflict with the series' own), between good rows.
const BAD: &str = "meter,time,value,unit,measure,kind\n\
    a,2024-01-01T00:00:00Z,1,L,volume,cumulative\n\
    a,not-a-time,2,L,volume,cumulative\n\
    a,2024-01-01T01:00:00Z,zzz,L,volume,cumulative\n\
    a,2024-01-01T02:00:00Z\n\
    a,2024-01-01T03:00:00Z,4,parsecs,volume,cumulative\n\
    a,2024-01-01T04:00:00Z,5,kWh,volume,cumulative\n\
    a,2024-01-01T05:00:00Z,6,L,volume,cumulative\n";

/// The rejections without the fields that name the caller's place and time.
fn comparable(rejections: impl IntoIterator<Item = Value>) -> Vec<Value> {
    rejections
        .into_iter()
        .map(|mut r| {
            let o = r.as_object_mut().unwrap();
            assert!(o.remove("file").is_some(), "a rejection names its file");
            o.remove("at");
            r
        })
        .collect()
}

fn through_meter_import(dir: &Path) -> Vec<Value> {
    let file = dir.join("bad.csv");
    std::fs::write(&file, BAD).unwrap();
    let (_, quarantined) = support::partial_import(&dir.join("import.db"), &file);
    comparable(quarantined)
}

fn through_the_drop_folder() -> Vec<Value> {
    let mut server = Server::start(false);
    let file = server.dir.path().join("bad.csv");
    std::fs::write(&file, BAD).unwrap();
    server.drop_file(&file, Path::new("bad.csv"));
    let line = server.wait_for("imported bad.csv");
    assert!(line.ends_with("-> quarantine/bad.csv"), "{line}");
    let report: Value = serde_json::from_slice(
        &std::fs::read(server.drop.join("quarantine/bad.csv.errors.json")).unwrap(),
    )
    .unwrap();
    server.stop();
    comparable(report["rejections"].as_array().unwrap().clone())
}

fn through_the_import_function(dir: &Path) -> Vec<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let objects = Arc::new(MemoryObjects::new());
        objects
            .put("in", "bad.csv", BAD.as_bytes().to_vec(), "text/csv")
            .await
            .unwrap();
        let store = Arc::new(SqliteStore::open(dir.join("function.db")).unwrap());
        let import = Import::with_parts(objects.clone(), store);
        let event = json!({"Records": [{
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "in"}, "object": {"key": "bad.csv"}}
        }]});
        handle(&import, &event, Budget::Records(u64::MAX))
            .await
            .unwrap();
        let report: Value = serde_json::from_slice(
            &objects
                .bytes("in", "quarantine/bad.csv.errors.json")
                .unwrap(),
        )
        .unwrap();
        comparable(report["rejections"].as_array().unwrap().clone())
    })
}

#[test]
fn one_bad_file_is_rejected_alike_by_every_caller() {
    let dir = tempfile::tempdir().unwrap();
    let cli = through_meter_import(dir.path());
    let lines: Vec<(&str, u64)> = cli
        .iter()
        .map(|r| (r["stage"].as_str().unwrap(), r["line"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("decode", 3),
            ("decode", 4),
            ("decode", 5),
            ("store", 6),
            ("store", 7)
        ],
        "{cli:#?}"
    );
    assert!(
        cli[4]["reason"].as_str().unwrap().contains("kWh"),
        "{cli:#?}"
    );
    assert_eq!(
        through_the_drop_folder(),
        cli,
        "drop folder vs meter import"
    );
    assert_eq!(
        through_the_import_function(dir.path()),
        cli,
        "import function vs meter import"
    );
}
