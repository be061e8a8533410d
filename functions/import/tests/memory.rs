//! The import function's logic over in-memory ports (objects and store), without the emulator:
//! rejections with their lines, store refusals with theirs, resumes across invocations, a
//! replaced object, an unreadable one, and retryable store failures.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use meter_core::ingest::{FileReport, Stage};
use meter_core::ports::{ItemFailure, ObjectStore, ReadingWriter, StoreError, WriteReport};
use meter_core::testing::{MemoryObjects, MemoryStore};
use meter_core::Reading;
use meter_fn_import::{handle, Budget, Import, ImportError, Report};
use serde_json::{json, Value};

const BUCKET: &str = "in";

fn created(key: &str) -> Value {
    json!({"Records": [{
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": key}}
    }]})
}

/// A long CSV of `rows` minutely readings of meter `m` (at most 28 days of them); the rows listed in `bad` (0-based) carry a
/// value that is not a number. Line numbers are 1-based with the header on line 1.
fn csv(rows: usize, bad: &[usize]) -> String {
    let mut out = String::from("meter,time,value,unit,measure,kind\n");
    for i in 0..rows {
        let value = if bad.contains(&i) {
            "lots".to_owned()
        } else {
            i.to_string()
        };
        out.push_str(&format!(
            "m,2024-03-{:02}T{:02}:{:02}:00Z,{value},L,volume,cumulative\n",
            1 + i / 1440,
            i / 60 % 24,
            i % 60
        ));
    }
    out
}

async fn setup(key: &str, body: &str) -> (Arc<MemoryObjects>, Arc<MemoryStore>, Import) {
    setup_with(key, body, MemoryStore::new()).await
}

async fn setup_with(
    key: &str,
    body: &str,
    store: MemoryStore,
) -> (Arc<MemoryObjects>, Arc<MemoryStore>, Import) {
    let objects = Arc::new(MemoryObjects::new());
    objects
        .put(BUCKET, key, body.as_bytes().to_vec(), "text/csv")
        .await
        .unwrap();
    let store = Arc::new(store);
    let import = Import::with_parts(objects.clone(), store.clone());
    (objects, store, import)
}

/// One invocation on the creation of `key`, with time for the whole object.
async fn run(import: &Import, key: &str) -> Result<Report, ImportError> {
    handle(import, &created(key), Budget::Records(u64::MAX)).await
}

fn quarantine(objects: &MemoryObjects, key: &str) -> FileReport {
    let bytes = objects
        .bytes(BUCKET, key)
        .unwrap_or_else(|| panic!("no {key}; keys: {:?}", objects.keys(BUCKET)));
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn bad_rows_are_quarantined_with_line_and_field_and_the_rest_lands() {
    let (objects, store, import) = setup("a.csv", &csv(10, &[3, 7])).await;
    let report = run(&import, "a.csv").await.unwrap();
    assert_eq!(
        report,
        Report {
            objects: 1,
            readings: 8,
            rejected: 2,
            resumed: 0,
            skipped: 0
        }
    );
    assert_eq!(store.all().len(), 8);
    let q = quarantine(&objects, "quarantine/a.csv.errors.json");
    assert_eq!(q.file, "s3://in/a.csv");
    assert_eq!(
        (q.decoded, q.stored, q.rejected, q.not_stored),
        (8, 8, 2, 0)
    );
    assert!(q.version.is_some(), "the report names the version read");
    let lines: Vec<(Stage, u64, Option<&str>)> = q
        .rejections
        .iter()
        .map(|r| (r.stage, r.line, r.field.as_deref()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (Stage::Decode, 5, Some("value")),
            (Stage::Decode, 9, Some("value"))
        ]
    );
    assert!(
        q.rejections[0].raw.contains("lots"),
        "{:?}",
        q.rejections[0]
    );

    // A clean object writes no report; a re-delivered event changes nothing.
    let again = run(&import, "a.csv").await.unwrap();
    assert_eq!(again.readings, 8);
    assert_eq!(store.all().len(), 8);
}

#[tokio::test]
async fn store_refusals_carry_the_source_line() {
    let mut body = csv(3, &[]);
    body.push_str("refused,2024-03-01T05:00:00Z,1,L,volume,cumulative\n");
    let mut store = MemoryStore::new();
    store.refuse_meters = BTreeSet::from(["refused".to_owned()]);
    let (objects, store, import) = setup_with("b.csv", &body, store).await;
    let report = run(&import, "b.csv").await.unwrap();
    assert_eq!((report.readings, report.rejected), (3, 1));
    assert_eq!(store.all().len(), 3);
    let q = quarantine(&objects, "quarantine/b.csv.errors.json");
    assert_eq!(
        (q.decoded, q.stored, q.rejected, q.not_stored),
        (4, 3, 0, 1)
    );
    let r = &q.rejections[0];
    assert_eq!((r.stage, r.line), (Stage::Store, 5));
    assert!(r.reason.contains("refused by this test store"), "{r:?}");
    assert!(r.raw.contains("refused"), "{r:?}");
}

#[tokio::test]
async fn a_large_object_resumes_in_parts_and_stores_every_row_once() {
    let (objects, store, import) = setup("big.csv", &csv(12_000, &[100, 5_000, 11_999])).await;
    let mut event = created("big.csv");
    let mut parts = 0;
    loop {
        parts += 1;
        assert!(parts < 20, "the import does not finish");
        let report = handle(&import, &event, Budget::Records(4_000))
            .await
            .unwrap();
        if report.resumed == 0 {
            break;
        }
        let marker = "_resume/big.csv.json";
        let next: Value = serde_json::from_slice(&objects.bytes(BUCKET, marker).unwrap()).unwrap();
        assert_eq!(next["part"], parts);
        event = created(marker);
    }
    assert!(
        parts >= 3,
        "4,000 records a run make at least 3 parts, got {parts}"
    );
    assert_eq!(store.all().len(), 11_997);
    // Each part's report lists its own rejections; together they list each bad row once.
    let mut lines = Vec::new();
    for key in objects.keys(BUCKET) {
        if key.starts_with("quarantine/") {
            lines.extend(quarantine(&objects, &key).rejections.iter().map(|r| r.line));
        }
    }
    lines.sort_unstable();
    assert_eq!(lines, vec![102, 5_002, 12_001]);
}

#[tokio::test]
async fn a_resumed_import_stops_when_the_object_was_replaced() {
    let (objects, store, import) = setup("c.csv", &csv(6_000, &[])).await;
    let first = handle(&import, &created("c.csv"), Budget::Records(2_500))
        .await
        .unwrap();
    assert_eq!(first.resumed, 1);
    let stored = store.all().len();
    assert!(stored < 6_000);
    objects
        .put(BUCKET, "c.csv", csv(3, &[]).into_bytes(), "text/csv")
        .await
        .unwrap();
    let second = run(&import, "_resume/c.csv.json").await.unwrap();
    assert_eq!((second.readings, second.resumed), (0, 0));
    assert_eq!(
        store.all().len(),
        stored,
        "nothing of the new version via the old marker"
    );
}

#[tokio::test]
async fn an_unreadable_object_is_reported_as_one_rejection() {
    let (objects, store, import) = setup("d.bin", "\u{1}\u{2} not a meter file").await;
    let report = run(&import, "d.bin").await.unwrap();
    assert_eq!((report.readings, report.rejected), (0, 1));
    assert!(store.all().is_empty());
    let q = quarantine(&objects, "quarantine/d.bin.errors.json");
    assert!(q.error.is_some(), "{q:?}");
    assert!(!q.is_clean());
}

#[tokio::test]
async fn our_own_reports_are_skipped() {
    let (_, store, import) = setup("quarantine/x.errors.json", "{}").await;
    let report = run(&import, "quarantine/x.errors.json").await.unwrap();
    assert_eq!((report.skipped, report.objects), (1, 0));
    assert_eq!(store.write_calls(), 0);
}

/// Refuses every write as throttled until `fail` calls were made.
struct Throttled {
    inner: MemoryStore,
    fail: usize,
    calls: AtomicUsize,
}

#[async_trait]
impl ReadingWriter for Throttled {
    fn max_batch(&self) -> usize {
        1000
    }

    async fn write(&self, readings: &[Reading]) -> Result<WriteReport, StoreError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail {
            return Ok(WriteReport {
                written: 0,
                failures: (0..readings.len())
                    .map(|index| ItemFailure {
                        index,
                        reason: "ThrottlingException: slow down".into(),
                        retryable: true,
                    })
                    .collect(),
            });
        }
        self.inner.write(readings).await
    }
}

#[tokio::test]
async fn readings_the_store_may_take_later_fail_the_invocation_so_it_is_retried() {
    let objects = Arc::new(MemoryObjects::new());
    objects
        .put(BUCKET, "e.csv", csv(5, &[]).into_bytes(), "text/csv")
        .await
        .unwrap();
    let store = Arc::new(Throttled {
        inner: MemoryStore::new(),
        fail: 1,
        calls: AtomicUsize::new(0),
    });
    let import = Import::with_parts(objects.clone(), store.clone());
    let err = run(&import, "e.csv").await.unwrap_err();
    assert!(
        matches!(err, ImportError::NotStored { failed: 5, .. }),
        "{err}"
    );
    assert!(err.is_retryable());
    // Lambda's retry of the same event lands everything.
    let report = run(&import, "e.csv").await.unwrap();
    assert_eq!(report.readings, 5);
    assert_eq!(store.inner.all().len(), 5);
}

#[tokio::test]
async fn a_marker_that_is_not_ours_is_a_permanent_error() {
    let (_, _, import) = setup("_resume/x.json", "not json").await;
    let err = run(&import, "_resume/x.json").await.unwrap_err();
    assert!(matches!(err, ImportError::Event(_)), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_objects_charset_names_its_encoding_and_other_bytes_are_refused() {
    let latin1 =
        b"meter,time,value\nZ\xe4hler,2024-01-01T00:00:00Z,1\nZ\xf6hler,2024-01-01T00:00:00Z,2\n";
    let objects = Arc::new(MemoryObjects::new());
    let put = |key: &'static str, content_type: &'static str| {
        let objects = objects.clone();
        async move {
            objects
                .put(BUCKET, key, latin1.to_vec(), content_type)
                .await
                .unwrap();
        }
    };
    put("latin.csv", "text/csv; charset=ISO-8859-1").await;
    put("unsaid.csv", "text/csv").await;
    let store = Arc::new(MemoryStore::new());
    let import = Import::with_parts(objects.clone(), store.clone());
    let report = run(&import, "latin.csv").await.unwrap();
    assert_eq!((report.readings, report.rejected), (2, 0));
    let meters: Vec<String> = store.all().iter().map(|r| r.meter().to_string()).collect();
    assert_eq!(meters, ["Zähler", "Zöhler"]);
    // Without a charset the bytes are not UTF-8: refused row by row, never merged.
    let report = run(&import, "unsaid.csv").await.unwrap();
    assert_eq!((report.readings, report.rejected), (0, 2));
    let q = quarantine(&objects, "quarantine/unsaid.csv.errors.json");
    assert!(q.rejections.iter().all(|r| r.reason.contains("not UTF-8")));
}
