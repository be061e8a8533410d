//! The embedded store against the port contracts, on a real SQLite file.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use meter_core::ports::{
    AddOutcome, CounterKey, Counters, MeterRegistry, RangeQuery, RangeReader, ReadingReader,
    ReadingWriter, RegistryEntry, RollupQuery,
};
use meter_core::testing::reading;
use meter_core::time::{parse_date, TimeRange};
use meter_core::{
    Granularity, Kind, MeasureName, MeterId, Reading, RollupRule, SourceName, Tags, Unit,
};
use meter_store_sqlite::SqliteStore;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn volume(meter: &str, time: &str, v: f64) -> Reading {
    reading(meter, "volume", t(time), v, Kind::Cumulative, Unit::Litre)
}

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("sub/meter.db")).unwrap();
    (dir, s)
}

fn range(from: &str, to: &str) -> TimeRange {
    TimeRange::new(t(from), t(to)).unwrap()
}

#[tokio::test]
async fn writes_are_idempotent_and_a_changed_value_replaces() {
    let (_d, s) = store();
    let batch = vec![
        volume("m", "2024-05-01T00:00:00Z", 10.0),
        volume("m", "2024-05-01T01:00:00Z", 20.0),
    ];
    assert_eq!(s.write(&batch).await.unwrap().written, 2);
    assert_eq!(s.write(&batch).await.unwrap().written, 2);
    assert_eq!(s.count_readings().unwrap(), 2);
    s.write(&[volume("m", "2024-05-01T01:00:00Z", 25.0)])
        .await
        .unwrap();
    assert_eq!(s.count_readings().unwrap(), 2);
    let latest = s.latest(None).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].value(), 25.0);
}

#[tokio::test]
async fn a_unit_or_kind_conflict_fails_only_that_item() {
    let (_d, s) = store();
    s.write(&[volume("m", "2024-05-01T00:00:00Z", 1.0)])
        .await
        .unwrap();
    let bad = reading(
        "m",
        "volume",
        t("2024-05-01T02:00:00Z"),
        1.0,
        Kind::Cumulative,
        Unit::CubicMetre,
    );
    let good = volume("m", "2024-05-01T03:00:00Z", 3.0);
    let report = s.write(&[bad, good]).await.unwrap();
    assert_eq!(report.written, 1);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].index, 0);
    assert!(
        report.failures[0]
            .reason
            .contains("stores cumulative values in L"),
        "{}",
        report.failures[0].reason
    );
    assert!(!report.failures[0].retryable);
    assert_eq!(s.count_readings().unwrap(), 2);
}

#[tokio::test]
async fn range_pages_cover_every_reading_once_in_order() {
    let (_d, s) = store();
    let start = t("2024-05-01T00:00:00Z");
    let mut batch = Vec::new();
    for i in 0..250 {
        batch.push(reading(
            "m",
            "a",
            start + Duration::minutes(i),
            i as f64,
            Kind::Gauge,
            Unit::Celsius,
        ));
        batch.push(reading(
            "m",
            "b",
            start + Duration::minutes(i),
            i as f64,
            Kind::Gauge,
            Unit::Celsius,
        ));
    }
    batch.push(reading(
        "other",
        "a",
        start,
        1.0,
        Kind::Gauge,
        Unit::Celsius,
    ));
    s.write(&batch).await.unwrap();
    let mut q = RangeQuery {
        meter: MeterId::new("m").unwrap(),
        measure: None,
        range: TimeRange::new(
            start + Duration::minutes(10),
            start + Duration::minutes(210),
        )
        .unwrap(),
        limit: 77,
        after: None,
    };
    let mut got = Vec::new();
    loop {
        let page = s.range(&q).await.unwrap();
        assert!(page.readings.len() <= 77);
        got.extend(page.readings);
        match page.next {
            Some(c) => q.after = Some(c),
            None => break,
        }
    }
    assert_eq!(got.len(), 400);
    let keys: Vec<(String, i64)> = got
        .iter()
        .map(|r| (r.measure().to_string(), r.time().timestamp()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted);
    q.measure = Some(MeasureName::new("b").unwrap());
    q.after = None;
    q.limit = 1000;
    assert_eq!(s.range(&q).await.unwrap().readings.len(), 200);
}

#[tokio::test]
async fn a_foreign_cursor_is_an_invalid_query() {
    let (_d, s) = store();
    let q = RangeQuery {
        meter: MeterId::new("m").unwrap(),
        measure: None,
        range: range("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"),
        limit: 10,
        after: Some(meter_core::ports::Cursor("garbage".into())),
    };
    assert!(matches!(
        s.range(&q).await,
        Err(meter_core::ports::StoreError::InvalidQuery(_))
    ));
}

#[tokio::test]
async fn daily_rollup_of_a_counter_across_dst_with_a_reset() {
    let (_d, s) = store();
    let zone = Tz::Europe__London;
    // Readings every hour from 2024-10-26 00:00 to 2024-10-28 00:00 UTC, +10 L each hour,
    // with the meter replaced (restarting at 0) at 2024-10-27 12:00 UTC.
    let mut batch = Vec::new();
    let mut v = 1000.0;
    let start = t("2024-10-25T23:00:00Z"); // 2024-10-26 00:00 BST
    for h in 0..50 {
        let time = start + Duration::hours(h);
        if time == t("2024-10-27T12:00:00Z") {
            v = 5.0;
        } else if h > 0 {
            v += 10.0;
        }
        batch.push(reading(
            "w",
            "volume",
            time,
            v,
            Kind::Cumulative,
            Unit::Litre,
        ));
    }
    s.write(&batch).await.unwrap();
    let q = RollupQuery {
        meter: MeterId::new("w").unwrap(),
        measure: None,
        range: TimeRange::local_days(
            parse_date("2024-10-26").unwrap(),
            parse_date("2024-10-27").unwrap(),
            zone,
        )
        .unwrap(),
        granularity: Granularity::Day,
        zone,
        register: None,
    };
    let r = s.rollup(&q).await.unwrap();
    assert_eq!(r.rule, RollupRule::LastMinusFirst);
    assert_eq!(r.buckets.len(), 2);
    // 26th: 24 readings, the first has no baseline: 23 increments of 10.
    assert_eq!(r.buckets[0].value, Some(230.0));
    // 27th (25 hours): 25 readings, 24 increments of 10 plus the reset reading (5 instead of 10).
    assert_eq!(r.buckets[1].count, 25);
    assert_eq!(r.buckets[1].resets, 1);
    assert_eq!(r.buckets[1].value, Some(245.0));
}

#[tokio::test]
async fn meters_latest_and_before() {
    let (_d, s) = store();
    s.write(&[
        volume("a", "2024-05-01T00:00:00Z", 1.0),
        volume("a", "2024-05-02T00:00:00Z", 2.0),
        reading(
            "a",
            "temp",
            t("2024-05-01T00:00:00Z"),
            20.0,
            Kind::Gauge,
            Unit::Celsius,
        ),
        volume("b", "2024-05-01T00:00:00Z", 7.0),
    ])
    .await
    .unwrap();
    let meters = s.meters().await.unwrap();
    assert_eq!(meters.len(), 2);
    assert_eq!(meters[0].series.len(), 2);
    assert_eq!(meters[0].series[1].count, Some(2));
    let a = MeterId::new("a").unwrap();
    assert_eq!(s.latest(Some(&a)).await.unwrap().len(), 2);
    let volume = MeasureName::new("volume").unwrap();
    let before = s
        .before((&a, &volume), t("2024-05-02T00:00:00Z"), 5)
        .await
        .unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].value(), 1.0);
    let before = s
        .before((&a, &volume), t("2024-05-02T00:00:01Z"), 5)
        .await
        .unwrap();
    let values: Vec<f64> = before.iter().map(|r| r.value()).collect();
    assert_eq!(values, [1.0, 2.0], "oldest first");
    let last = s
        .before((&a, &volume), t("2024-05-02T00:00:01Z"), 1)
        .await
        .unwrap();
    assert_eq!(last[0].value(), 2.0, "the newest n");
    assert!(s
        .meter(&MeterId::new("zzz").unwrap())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn tags_survive_and_follow_the_latest_write() {
    let (_d, s) = store();
    let tagged = volume("a", "2024-05-01T00:00:00Z", 1.0)
        .with_tags(Tags::new([("location", "flat")]).unwrap());
    s.write(&[tagged]).await.unwrap();
    assert_eq!(
        s.latest(None).await.unwrap()[0].tags().get("location"),
        Some("flat")
    );
    let moved = volume("a", "2024-05-02T00:00:00Z", 2.0)
        .with_tags(Tags::new([("location", "house")]).unwrap());
    s.write(&[moved]).await.unwrap();
    assert_eq!(
        s.latest(None).await.unwrap()[0].tags().get("location"),
        Some("house")
    );
}

#[tokio::test]
async fn data_persists_across_reopen_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.write(&[volume("a", "2024-05-01T00:00:00Z", 1.0)])
            .await
            .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.count_readings().unwrap(), 1);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn range_and_latest_queries_use_the_primary_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let _s = SqliteStore::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let plan = |sql: &str| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join(" | ")
    };
    let range = plan("SELECT ts, value FROM readings WHERE series = 1 AND ts >= 0 AND ts < 10 ORDER BY ts LIMIT 5");
    assert!(
        range.contains("SEARCH readings USING PRIMARY KEY (series=? AND ts>? AND ts<?)"),
        "{range}"
    );
    assert!(!range.contains("TEMP B-TREE"), "{range}");
    let before = plan(
        "SELECT ts, value FROM readings WHERE series = 1 AND ts < 10 ORDER BY ts DESC LIMIT 1",
    );
    assert!(before.contains("USING PRIMARY KEY"), "{before}");
    let series = plan("SELECT id, measure, unit, kind, source, tags FROM series WHERE meter = 'a' ORDER BY measure");
    assert!(
        series.contains("sqlite_autoindex_series_1 (meter=?)"),
        "{series}"
    );
    assert!(!series.contains("TEMP B-TREE"), "{series}");
}

#[tokio::test]
async fn registry_pages_and_removes() {
    let (_d, s) = store();
    for i in 0..25 {
        let e = RegistryEntry {
            id: MeterId::new(&format!("id-{i:03}")).unwrap(),
            source: SourceName::new("http-json").unwrap(),
            params: [("url".to_owned(), "http://x/{identifier}".to_owned())].into(),
            zone: None,
            enabled: true,
        };
        s.put(&e).await.unwrap();
    }
    let mut after = None;
    let mut ids = Vec::new();
    loop {
        let page = s.list(after.as_ref(), 10).await.unwrap();
        ids.extend(page.entries.iter().map(|e| e.id.to_string()));
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(ids.len(), 25);
    assert_eq!(ids[0], "id-000");
    let id = MeterId::new("id-003").unwrap();
    assert_eq!(
        s.entry(&id).await.unwrap().unwrap().params["url"],
        "http://x/{identifier}"
    );
    assert!(s.remove(&id).await.unwrap());
    assert!(!s.remove(&id).await.unwrap());
    assert!(s.entry(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn counters_add_once_per_dedupe_key() {
    let (_d, s) = store();
    let key = CounterKey::at("ep-1", t("2024-05-01T13:45:00Z"));
    assert_eq!(
        s.add(&key, 1, Some("n1")).await.unwrap(),
        AddOutcome::Added(1)
    );
    assert_eq!(
        s.add(&key, 1, Some("n2")).await.unwrap(),
        AddOutcome::Added(2)
    );
    assert_eq!(
        s.add(&key, 1, Some("n1")).await.unwrap(),
        AddOutcome::Duplicate
    );
    assert_eq!(s.add(&key, 3, None).await.unwrap(), AddOutcome::Added(5));
    assert_eq!(s.total(&key).await.unwrap(), 5);
    assert_eq!(
        s.total(&CounterKey::at("ep-2", t("2024-05-01T13:00:00Z")))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn the_sqlite_rollup_agrees_with_the_ports_default() {
    let (_d, s) = store();
    let memory = meter_core::testing::MemoryStore::new();
    let start = t("2024-10-25T00:00:00Z");
    let mut batch = Vec::new();
    let mut counter = 100.0;
    for i in 0..(4 * 24 * 4) {
        let time = start + Duration::minutes(15 * i);
        counter = if i == 200 {
            3.0
        } else {
            counter + (i % 7) as f64
        };
        batch.push(reading(
            "m",
            "volume",
            time,
            counter,
            Kind::Cumulative,
            Unit::Litre,
        ));
        batch.push(reading(
            "m",
            "energy",
            time,
            (i % 5) as f64,
            Kind::Interval,
            Unit::KilowattHour,
        ));
        batch.push(reading(
            "m",
            "temp",
            time,
            10.0 + (i % 11) as f64,
            Kind::Gauge,
            Unit::Celsius,
        ));
    }
    s.write(&batch).await.unwrap();
    memory.write(&batch).await.unwrap();
    let zone = Tz::Europe__London;
    for measure in ["volume", "energy", "temp"] {
        for granularity in [Granularity::Day, Granularity::Hour] {
            let q = RollupQuery {
                meter: MeterId::new("m").unwrap(),
                measure: Some(MeasureName::new(measure).unwrap()),
                range: TimeRange::local_days(
                    parse_date("2024-10-26").unwrap(),
                    parse_date("2024-10-27").unwrap(),
                    zone,
                )
                .unwrap(),
                granularity,
                zone,
                register: None,
            };
            let ours = s.rollup(&q).await.unwrap();
            let default = memory.rollup(&q).await.unwrap();
            assert_eq!(ours, default, "{measure} {granularity:?}");
            assert!(ours.buckets.iter().any(|b| b.count > 0));
        }
    }
}

#[tokio::test]
async fn series_counts_follow_inserts_not_rewrites() {
    let (_d, s) = store();
    let batch: Vec<Reading> = (0..10)
        .map(|i| volume("m", &format!("2024-05-01T0{i}:00:00Z"), i as f64))
        .collect();
    s.write(&batch).await.unwrap();
    s.write(&batch).await.unwrap();
    s.write(&[
        volume("m", "2024-05-01T03:00:00Z", 99.0),
        volume("m", "2024-05-02T00:00:00Z", 100.0),
    ])
    .await
    .unwrap();
    let info = s.meter(&MeterId::new("m").unwrap()).await.unwrap().unwrap();
    assert_eq!(info.series[0].count, Some(11));
    assert_eq!(s.count_readings().unwrap(), 11);
}

#[test]
fn a_version_1_store_is_migrated_with_its_counts_and_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('schema_version', '1');
             CREATE TABLE series (id INTEGER PRIMARY KEY, meter TEXT NOT NULL, measure TEXT NOT NULL,
                 unit TEXT NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL,
                 tags TEXT NOT NULL DEFAULT '{}', UNIQUE (meter, measure));
             CREATE TABLE readings (series INTEGER NOT NULL REFERENCES series (id), ts INTEGER NOT NULL,
                 value REAL NOT NULL, PRIMARY KEY (series, ts)) WITHOUT ROWID;
             INSERT INTO series (id, meter, measure, unit, kind, source) VALUES (1, 'm', 'volume', 'L', 'cumulative', 'x');
             INSERT INTO readings VALUES (1, 0, 1.0), (1, 1000, 2.0), (1, 2000, 3.0);",
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let info = s.meters_sync(None).unwrap();
    assert_eq!(info[0].series[0].count, Some(3));
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: String = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v, "3");
    // The migration stored the rollups: one hour and one day of three readings.
    let counts: Vec<(String, i64)> = ["hourly", "daily"]
        .iter()
        .map(|t| {
            let n = c
                .query_row(&format!("SELECT SUM(count) FROM {t}"), [], |r| r.get(0))
                .unwrap();
            (t.to_string(), n)
        })
        .collect();
    assert_eq!(counts, [("hourly".into(), 3), ("daily".into(), 3)]);
}

/// Every stored reading of every series, in key order, as (meter, measure, ms, value).
fn dump(s: &SqliteStore) -> Vec<(String, String, i64, f64)> {
    let mut out = Vec::new();
    for m in s.meters_sync(None).unwrap() {
        let q = RangeQuery {
            meter: m.meter.clone(),
            measure: None,
            range: range("2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"),
            limit: 100_000,
            after: None,
        };
        for r in s.range_sync(&q).unwrap().readings {
            out.push((
                r.meter().to_string(),
                r.measure().to_string(),
                r.time().timestamp_millis(),
                r.value(),
            ));
        }
    }
    out
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// A batch is stored the same whatever order its rows come in: the writer orders each batch
    /// by series and time, and of two readings of one instant in a batch the later one stays.
    #[test]
    fn a_batch_lands_the_same_in_any_row_order(
        rows in proptest::collection::vec((0u8..5, 0u8..2, 0i64..40, -50i32..50), 1..200),
        seed in proptest::prelude::any::<u64>(),
    ) {
        let readings: Vec<Reading> = rows
            .iter()
            .map(|(m, s, step, v)| {
                reading(
                    &format!("m{m}"),
                    if *s == 0 { "a" } else { "b" },
                    t("2024-05-01T00:00:00Z") + Duration::minutes(5 * step),
                    f64::from(*v),
                    Kind::Gauge,
                    Unit::Celsius,
                )
            })
            .collect();
        // The expected store: the last reading of each key, in the input's order.
        let mut want = std::collections::BTreeMap::new();
        for r in &readings {
            want.insert(
                (r.meter().to_string(), r.measure().to_string(), r.time().timestamp_millis()),
                r.value(),
            );
        }
        let want: Vec<_> = want.into_iter().map(|((m, s, t), v)| (m, s, t, v)).collect();
        // The same rows shuffled, keeping the order of rows that share a key.
        let mut shuffled: Vec<(u64, usize)> = (0..readings.len())
            .map(|i| ((i as u64 + 1).wrapping_mul(seed | 1).rotate_left(17), i))
            .collect();
        shuffled.sort_unstable();
        let mut by_key: std::collections::HashMap<_, Vec<usize>> = Default::default();
        for (_, i) in &shuffled {
            let r = &readings[*i];
            by_key.entry((r.meter().clone(), r.measure().clone(), r.time())).or_default().push(*i);
        }
        for v in by_key.values_mut() {
            v.sort_unstable();
        }
        let mut taken: std::collections::HashMap<_, usize> = Default::default();
        let reordered: Vec<Reading> = shuffled
            .iter()
            .map(|(_, i)| {
                let r = &readings[*i];
                let key = (r.meter().clone(), r.measure().clone(), r.time());
                let n = taken.entry(key.clone()).or_default();
                *n += 1;
                readings[by_key[&key][*n - 1]].clone()
            })
            .collect();
        for batch in [&readings, &reordered] {
            let (_d, s) = store();
            let report = s.write_batch(batch).unwrap();
            proptest::prop_assert_eq!(report.written, batch.len());
            proptest::prop_assert_eq!(&dump(&s), &want);
            let counted: u64 = s
                .meters_sync(None)
                .unwrap()
                .iter()
                .flat_map(|m| m.series.iter().map(|s| s.count.unwrap_or(0)))
                .sum();
            proptest::prop_assert_eq!(counted, want.len() as u64);
        }
    }
}

#[test]
fn an_open_transaction_is_durable_only_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meter.db");
    let s = SqliteStore::open(&path).unwrap();
    let first = s
        .write_open(&[volume("m", "2024-05-01T00:00:00Z", 1.0)])
        .unwrap();
    assert_eq!(first.report.written, 1);
    assert!(!first.committed);
    // Another connection does not see what the open transaction holds.
    let other = SqliteStore::open(&path).unwrap();
    assert_eq!(other.count_readings().unwrap(), 0);
    // A batch written alone commits what was open first, then itself.
    s.write_batch(&[volume("m", "2024-05-01T01:00:00Z", 2.0)])
        .unwrap();
    assert_eq!(other.count_readings().unwrap(), 2);
    s.write_open(&[volume("m", "2024-05-01T02:00:00Z", 3.0)])
        .unwrap();
    assert_eq!(other.count_readings().unwrap(), 2);
    s.commit_open().unwrap();
    assert_eq!(other.count_readings().unwrap(), 3);
    // Dropping the store with a transaction open keeps nothing of it.
    s.write_open(&[volume("m", "2024-05-01T03:00:00Z", 4.0)])
        .unwrap();
    drop(s);
    assert_eq!(other.count_readings().unwrap(), 3);
    // A large enough open write commits itself.
    let s = SqliteStore::open(&path).unwrap();
    let many: Vec<Reading> = (0..meter_store_sqlite::OPEN_COMMIT_ROWS as i64)
        .map(|i| {
            reading(
                "n",
                "volume",
                t("2024-01-01T00:00:00Z") + Duration::seconds(i),
                i as f64,
                Kind::Cumulative,
                Unit::Litre,
            )
        })
        .collect();
    assert!(s.write_open(&many).unwrap().committed);
    assert_eq!(
        other.count_readings().unwrap(),
        3 + meter_store_sqlite::OPEN_COMMIT_ROWS as u64
    );
}

#[test]
fn new_stores_get_large_pages_and_old_ones_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let page_size = |path: &std::path::Path| -> i64 {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap()
    };
    let fresh = dir.path().join("new.db");
    let s = SqliteStore::open(&fresh).unwrap();
    s.write_batch(&[volume("m", "2024-05-01T00:00:00Z", 1.0)])
        .unwrap();
    drop(s);
    assert_eq!(page_size(&fresh), 32 * 1024);

    // A file made with SQLite's default pages is read and written as it is.
    let old = dir.path().join("old.db");
    rusqlite::Connection::open(&old)
        .unwrap()
        .execute_batch("PRAGMA page_size = 4096; CREATE TABLE t (x); DROP TABLE t;")
        .unwrap();
    let s = SqliteStore::open(&old).unwrap();
    s.write_batch(&[
        volume("m", "2024-05-01T00:00:00Z", 1.0),
        volume("m", "2024-05-01T00:05:00Z", 2.0),
    ])
    .unwrap();
    assert_eq!(s.count_readings().unwrap(), 2);
    drop(s);
    assert_eq!(page_size(&old), 4096);
}
