//! The embedded store: every meterflow port over one SQLite file, for `meter` on a laptop or a
//! Raspberry Pi.
//!
//! Layout: a `series` row per (meter, measure) holds the unit, kind, source and tags; readings
//! are `(series, ts_ms, value)` in a `WITHOUT ROWID` table keyed by `(series, ts)`, so a range
//! query is one index range scan and an import writes 16-byte keys rather than repeated text.
//! Writes are upserts on that key (idempotent; a changed value replaces the old one). The file is
//! in WAL mode, so readers never wait for a writer.
//!
//! The synchronous methods (`write_batch`, ...) are for callers that own a thread (the CLI's
//! import, benchmarks); the port implementations run them on Tokio's blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use meter_core::batch::SQLITE_MAX_BATCH;
use meter_core::ports::{
    AddOutcome, CounterKey, Counters, Cursor, ItemFailure, MeterInfo, MeterRegistry, Page,
    RangeQuery, RangeReader, ReadingReader, ReadingWriter, RegistryEntry, RegistryPage,
    RollupQuery, SeriesInfo, StoreError, WriteReport, DEDUPE_WINDOW_SECS,
};
use meter_core::rollup::RollupBuilder;
use meter_core::time::parse_zone;
use meter_core::{Kind, MeasureName, MeterId, Reading, Rollup, SourceName, Tags, Unit};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

mod rollups;
use rollups::Settings;

const BACKEND: &str = "SQLite store";
/// 2 added `series.n`, the count of readings kept by the writer; 3 the stored rollups
/// (`hourly`, `daily`, and the zone and register size each series' rollups are kept with).
const SCHEMA_VERSION: i64 = 3;
/// The writer's page cache, in KiB (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: i64 = 16 * 1024;
/// WAL bytes written between automatic checkpoints (SQLite's default is 1,000 pages, 4 MiB
/// with its default page size).
const WAL_CHECKPOINT_BYTES: i64 = 32 * 1024 * 1024;
/// The page size of a new store (SQLite's default is 4 KiB; an existing file keeps its own).
const PAGE_SIZE: i64 = 32 * 1024;
/// Readings an open transaction takes before [`SqliteStore::write_open`] commits it: 8 MB of
/// buffered rows, and about 10 MB of new pages, which the writer's cache holds until the commit.
pub const OPEN_COMMIT_ROWS: usize = 250_000;
/// Read connections: WAL lets them all read while the writer writes.
const READERS: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    id      INTEGER PRIMARY KEY,
    meter   TEXT NOT NULL,
    measure TEXT NOT NULL,
    unit    TEXT NOT NULL,
    kind    TEXT NOT NULL,
    source  TEXT NOT NULL,
    tags    TEXT NOT NULL DEFAULT '{}',
    n       INTEGER NOT NULL DEFAULT 0,
    zone    TEXT NOT NULL DEFAULT 'UTC',
    register REAL,
    UNIQUE (meter, measure)
);
CREATE TABLE IF NOT EXISTS readings (
    series INTEGER NOT NULL REFERENCES series (id),
    ts     INTEGER NOT NULL,
    value  REAL    NOT NULL,
    PRIMARY KEY (series, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS registry (
    id    TEXT PRIMARY KEY,
    entry TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT    NOT NULL,
    hour  INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (name, hour)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counter_dedupe (
    key TEXT PRIMARY KEY,
    at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS counter_dedupe_at ON counter_dedupe (at);
";

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The folder for the file could not be created.
    #[error("cannot create the folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// SQLite could not open or set up the file.
    #[error("cannot open the store {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The file's schema could not be brought up to date (nothing was changed).
    #[error("cannot upgrade the store {path} from schema version {from}: {source}")]
    Migrate {
        /// The file.
        path: PathBuf,
        /// Its version.
        from: i64,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// The file was made by a newer meterflow.
    #[error("the store {path} has schema version {found}; this meter understands up to {SCHEMA_VERSION}")]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
}

fn store_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    let busy = matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    );
    let message = e.to_string();
    if busy {
        StoreError::Unavailable {
            backend: BACKEND,
            message,
            source: Some(Box::new(e)),
        }
    } else {
        StoreError::Refused {
            backend: BACKEND,
            message,
            source: Some(Box::new(e)),
        }
    }
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// What the writer remembers of a series, so most rows need no lookup.
#[derive(Debug, Clone)]
struct SeriesRow {
    id: i64,
    unit: Unit,
    kind: Kind,
    source: SourceName,
    tags: Tags,
}

/// One reading on its way into `readings`, with its place in the writer's input.
#[derive(Debug, Clone, Copy)]
struct Row {
    series: i64,
    ts: i64,
    seq: u64,
    value: f64,
}

#[derive(Debug)]
struct Writer {
    conn: Connection,
    series: SeriesCache,
    /// What each series' rollups are kept with, by series id.
    settings: HashMap<i64, Settings>,
    /// Whether [`SqliteStore::write_open`] holds a transaction open.
    open: bool,
    /// Rows of the transaction not inserted yet: inserted in (series, time) order when it
    /// commits, so a file in time order is written like one sorted by series.
    buffer: Vec<Row>,
    /// The next row's place in the writer's input (orders rows of one instant).
    seq: u64,
    /// The commit's aggregate rows, written together at its end.
    pending: rollups::Pending,
}

impl Writer {
    fn begin(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(store_err)
    }

    /// Inserts what is buffered and commits; rolls back if either fails.
    fn commit(&mut self) -> Result<(), StoreError> {
        let done = insert_rows(
            &self.conn,
            &mut self.buffer,
            &mut self.settings,
            &mut self.pending,
        )
        .and_then(|()| self.conn.execute_batch("COMMIT").map_err(store_err));
        self.open = false;
        if done.is_err() {
            self.rollback();
        }
        done
    }

    fn commit_open(&mut self) -> Result<(), StoreError> {
        if self.open {
            self.commit()
        } else {
            Ok(())
        }
    }

    /// Runs `f` in a transaction of its own (committing an open import's first), and forgets
    /// the series settings it may have changed.
    fn transact<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.commit_open()?;
        self.begin()?;
        self.settings.clear();
        match f(&self.conn) {
            Ok(v) => {
                self.conn.execute_batch("COMMIT").map_err(store_err)?;
                Ok(v)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// Undoes the transaction, and forgets the series ids it may have created.
    fn rollback(&mut self) {
        self.open = false;
        self.buffer.clear();
        self.pending.clear();
        if !self.conn.is_autocommit() {
            // A failed ROLLBACK leaves nothing to undo: SQLite already rolled back.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.series.clear();
        self.settings.clear();
    }
}

/// What [`SqliteStore::write_open`] did.
#[derive(Debug, Default)]
pub struct OpenWrite {
    /// The write's outcome, as [`SqliteStore::write_batch`] reports it.
    pub report: WriteReport,
    /// Whether this write committed the open transaction (everything written so far is durable).
    pub committed: bool,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
}

/// The embedded store. Cheap to clone; clones share the connections.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves SQLite consistent (transactions roll back on drop).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn connect(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the store file, its folder, and its schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::Folder {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let sqlite = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let writer = connect(&path, OpenFlags::default()).map_err(sqlite)?;
        // Large pages for a new file, set before WAL mode writes its header. A time-ordered
        // import appends each commit's rows of a thousand series at a thousand places in the
        // tree: with 32 KiB pages each place is one page rewritten instead of several, and
        // splits come 8 times less often (BENCHMARKS.md).
        writer
            .pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(sqlite)?;
        // The writer takes every series id it inserts from the `series` table in the same
        // transaction, so checking the key again on every reading only costs: without the
        // check a time-ordered import runs about 15% faster (BENCHMARKS.md).
        writer
            .pragma_update(None, "foreign_keys", "OFF")
            .map_err(sqlite)?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        // A batch in time order touches a page or two of every series it holds; the cache keeps
        // those of a thousand series between batches instead of reading them back each time.
        writer
            .pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(sqlite)?;
        // Room for every statement the writer repeats, the multi-row inserts' shapes included.
        writer.set_prepared_statement_cache_capacity(32);
        // Checkpoints copy each page once however often it was rewritten since the last one:
        // rarer checkpoints (and their fsyncs) cost less per reading; the WAL file is cut back
        // to the same size afterwards.
        let page: i64 = writer
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(sqlite)?;
        writer
            .pragma_update(
                None,
                "wal_autocheckpoint",
                WAL_CHECKPOINT_BYTES / page.max(512),
            )
            .map_err(sqlite)?;
        writer
            .pragma_update(None, "journal_size_limit", WAL_CHECKPOINT_BYTES)
            .map_err(sqlite)?;
        writer.execute_batch(SCHEMA).map_err(sqlite)?;
        writer.execute_batch(&rollups::schema()).map_err(sqlite)?;
        let found: Option<i64> = writer
            .query_row(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sqlite)?;
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(OpenError::NewerSchema { path, found: v });
            }
            Some(v) if v < SCHEMA_VERSION => {
                migrate(&writer, v).map_err(|source| OpenError::Migrate {
                    path: path.clone(),
                    from: v,
                    source,
                })?;
            }
            Some(_) => {}
            None => {
                writer
                    .execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                        [SCHEMA_VERSION.to_string()],
                    )
                    .map_err(sqlite)?;
            }
        }
        let readers = (0..READERS)
            .map(|_| {
                connect(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map(Mutex::new)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(Writer {
                    conn: writer,
                    series: HashMap::new(),
                    settings: HashMap::new(),
                    open: false,
                    buffer: Vec::new(),
                    seq: 0,
                    pending: rollups::Pending::default(),
                }),
                readers,
                next_reader: std::sync::atomic::AtomicUsize::new(0),
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Writes readings in one transaction (see [`ReadingWriter::write`] for the contract).
    ///
    /// The rows are written in (series, time) order whatever order they came in: a file in time
    /// order (every meter at t, then every meter at t+5 min) touches every series in each batch,
    /// and inserting each series' rows together turns a thousand scattered B-tree inserts into a
    /// thousand short sequential runs, each dirtying a page or two.
    pub fn write_batch(&self, readings: &[Reading]) -> Result<WriteReport, StoreError> {
        let mut w = lock(&self.inner.writer);
        w.commit_open()?;
        w.begin()?;
        let w = &mut *w;
        match resolve(&w.conn, &mut w.series, readings, &mut w.seq, &mut w.buffer) {
            Ok(report) => w.commit().map(|()| report),
            Err(e) => {
                w.rollback();
                Err(e)
            }
        }
    }

    /// Takes readings into a transaction left open across calls, for a one-shot import that
    /// reports only at its end. Each call checks its readings against their series (refusals
    /// come back at once) and buffers them; the transaction inserts them in (series, time) order
    /// and commits once it holds [`OPEN_COMMIT_ROWS`] readings, or at [`Self::commit_open`].
    /// A file in time order (every meter at t, then at t+5 min) is then written like one sorted
    /// by meter, each series' rows in one sequential run. Readings are durable only after that
    /// commit; a failure rolls back everything since the last one, which the error says.
    pub fn write_open(&self, readings: &[Reading]) -> Result<OpenWrite, StoreError> {
        let mut w = lock(&self.inner.writer);
        if !w.open {
            w.begin()?;
            w.open = true;
        }
        let w = &mut *w;
        match resolve(&w.conn, &mut w.series, readings, &mut w.seq, &mut w.buffer) {
            Ok(report) => {
                let committed = w.buffer.len() >= OPEN_COMMIT_ROWS;
                if committed {
                    w.commit()?;
                }
                Ok(OpenWrite { report, committed })
            }
            Err(e) => {
                w.rollback();
                Err(e)
            }
        }
    }

    /// Commits the transaction [`Self::write_open`] keeps open, if there is one.
    pub fn commit_open(&self) -> Result<(), StoreError> {
        lock(&self.inner.writer).commit_open()
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // Take the first free reader from a rotating start; wait on one only if all are busy.
        let start = self
            .inner
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = self.inner.readers.len();
        for i in 0..n {
            if let Ok(conn) = self.inner.readers[(start + i) % n].try_lock() {
                return f(&conn);
            }
        }
        let conn = lock(&self.inner.readers[start % n]);
        f(&conn)
    }

    /// Recomputes the stored rollups of `meter`'s series (every series when `None`) from their
    /// readings; answers how many series were rebuilt. For stores whose rollups were made under
    /// other rules; a zone or register size changed in the registry rebuilds by itself.
    pub fn rebuild_rollups(&self, meter: Option<&MeterId>) -> Result<usize, StoreError> {
        lock(&self.inner.writer)
            .transact(|conn| refresh_rollups(conn, meter.map(MeterId::as_str), true))
    }

    /// Sets the zone whose days are stored for meters the registry gives no zone (UTC until
    /// set), rebuilding the rollups that change; answers how many series were rebuilt.
    pub fn set_default_zone(&self, zone: Tz) -> Result<usize, StoreError> {
        lock(&self.inner.writer).transact(|conn| {
            if default_zone(conn).map_err(store_err)? == zone {
                return Ok(0);
            }
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![DEFAULT_ZONE_KEY, zone.name()],
            )
            .map_err(store_err)?;
            refresh_rollups(conn, None, false)
        })
    }

    /// See [`ReadingReader::range`].
    pub fn range_sync(&self, q: &RangeQuery) -> Result<Page, StoreError> {
        let after = q.after.as_ref().map(Cursor::reading_position).transpose()?;
        let limit = q.limit.clamp(1, 100_000);
        self.read(|conn| {
            let mut all = series_of(conn, &q.meter)?;
            all.retain(|(_, measure, _)| q.measure.as_ref().is_none_or(|m| m == measure));
            if let Some((m, _)) = &after {
                all.retain(|(_, measure, _)| measure.as_str() >= m.as_str());
            }
            let mut stmt = conn
                .prepare_cached(
                    "SELECT ts, value FROM readings
                     WHERE series = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts LIMIT ?4",
                )
                .map_err(store_err)?;
            let mut out = Vec::new();
            for (id, measure, row) in &all {
                let mut from = q.range.from().timestamp_millis();
                if let Some((m, t)) = &after {
                    if m == measure {
                        from = from.max(t + 1);
                    }
                }
                let want = limit + 1 - out.len();
                let rows = stmt
                    .query_map(
                        params![id, from, q.range.to().timestamp_millis(), want as i64],
                        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)),
                    )
                    .map_err(store_err)?;
                for row_result in rows {
                    let (ts, value) = row_result.map_err(store_err)?;
                    out.push(build_reading(&q.meter, measure, row, ts, value)?);
                }
                if out.len() > limit {
                    break;
                }
            }
            Ok(Page::of(out, limit, false))
        })
    }

    /// See [`ReadingReader::latest`].
    pub fn latest_sync(&self, meter: Option<&MeterId>) -> Result<Vec<Reading>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT s.meter, s.measure, s.unit, s.kind, s.source, s.tags, r.ts, r.value
                     FROM series s JOIN readings r ON r.series = s.id
                     AND r.ts = (SELECT MAX(ts) FROM readings WHERE series = s.id)
                     WHERE ?1 IS NULL OR s.meter = ?1
                     ORDER BY s.meter, s.measure",
                )
                .map_err(store_err)?;
            let rows = stmt
                .query_map([meter.map(MeterId::as_str)], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, f64>(7)?,
                    ))
                })
                .map_err(store_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (m, measure, unit, kind, source, tags, ts, value) = row.map_err(store_err)?;
                let meter = MeterId::new(&m).map_err(corrupt)?;
                let measure = MeasureName::new(&measure).map_err(corrupt)?;
                let row = series_row(0, &unit, &kind, &source, &tags)?;
                out.push(build_reading(&meter, &measure, &row, ts, value)?);
            }
            Ok(out)
        })
    }

    /// See [`ReadingReader::before`].
    pub fn before_sync(
        &self,
        (meter, measure): (&MeterId, &MeasureName),
        t: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        self.read(|conn| {
            let Some((id, _, row)) = series_of(conn, meter)?
                .into_iter()
                .find(|(_, m, _)| m == measure)
            else {
                return Ok(Vec::new());
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT ts, value FROM readings WHERE series = ?1 AND ts < ?2
                     ORDER BY ts DESC LIMIT ?3",
                )
                .map_err(store_err)?;
            let limit = i64::try_from(n).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(params![id, t.timestamp_millis(), limit], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
                })
                .map_err(store_err)?;
            let mut out = Vec::new();
            for found in rows {
                let (ts, v) = found.map_err(store_err)?;
                out.push(build_reading(meter, measure, &row, ts, v)?);
            }
            out.reverse();
            Ok(out)
        })
    }
    /// See [`ReadingReader::meters`]; with a meter, only that one.
    pub fn meters_sync(&self, only: Option<&MeterId>) -> Result<Vec<MeterInfo>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT s.meter, s.measure, s.unit, s.kind,
                            s.n,
                            (SELECT MIN(ts) FROM readings WHERE series = s.id),
                            (SELECT MAX(ts) FROM readings WHERE series = s.id)
                     FROM series s WHERE ?1 IS NULL OR s.meter = ?1
                     ORDER BY s.meter, s.measure",
                )
                .map_err(store_err)?;
            let rows = stmt
                .query_map([only.map(MeterId::as_str)], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                    ))
                })
                .map_err(store_err)?;
            let mut out: Vec<MeterInfo> = Vec::new();
            for row in rows {
                let (m, measure, unit, kind, count, first, last) = row.map_err(store_err)?;
                let (Some(first), Some(last)) = (first, last) else {
                    continue; // a series whose only write was rolled back
                };
                let info = SeriesInfo {
                    measure: MeasureName::new(&measure).map_err(corrupt)?,
                    unit: Unit::parse(&unit).map_err(corrupt)?,
                    kind: kind.parse().map_err(corrupt)?,
                    count: Some(count as u64),
                    first: millis(first)?,
                    last: millis(last)?,
                };
                match out.last_mut() {
                    Some(mi) if mi.meter.as_str() == m => mi.series.push(info),
                    _ => out.push(MeterInfo {
                        meter: MeterId::new(&m).map_err(corrupt)?,
                        series: vec![info],
                    }),
                }
            }
            Ok(out)
        })
    }

    /// The unit and kind of one stored series, if it exists.
    pub fn series_unit_kind(
        &self,
        meter: &MeterId,
        measure: &MeasureName,
    ) -> Result<Option<(Unit, Kind)>, StoreError> {
        self.read(|conn| {
            let row = conn
                .prepare_cached("SELECT unit, kind FROM series WHERE meter = ?1 AND measure = ?2")
                .and_then(|mut stmt| {
                    stmt.query_row([meter.as_str(), measure.as_str()], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })
                    .optional()
                })
                .map_err(store_err)?;
            row.map(|(unit, kind)| {
                Ok((
                    Unit::parse(&unit).map_err(corrupt)?,
                    kind.parse().map_err(corrupt)?,
                ))
            })
            .transpose()
        })
    }

    /// How many readings are stored in all.
    pub fn count_readings(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(store_err)
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(SqliteStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me))
            .await
            .map_err(|e| StoreError::Unavailable {
                backend: BACKEND,
                message: format!("the store task failed: {e}"),
                source: None,
            })?
    }
}

/// Writes readings inside the caller's transaction, in (series, time) order whatever order they
/// came in (see [`SqliteStore::write_batch`]).
fn resolve(
    conn: &Connection,
    series: &mut SeriesCache,
    readings: &[Reading],
    seq: &mut u64,
    rows: &mut Vec<Row>,
) -> Result<WriteReport, StoreError> {
    let mut report = WriteReport::default();
    rows.reserve(readings.len());
    let mut last: Option<(usize, i64)> = None;
    for (index, r) in readings.iter().enumerate() {
        // Rows of one series usually come together: compare with the previous reading
        // before hashing.
        let same = last.is_some_and(|(i, _)| {
            let p = &readings[i];
            p.meter() == r.meter()
                && p.measure() == r.measure()
                && p.unit() == r.unit()
                && p.kind() == r.kind()
                && p.tags() == r.tags()
                && p.source() == r.source()
        });
        let id = match (same, last) {
            (true, Some((_, id))) => id,
            _ => {
                let fit = series_for(conn, series, r).map_err(store_err)?;
                if let Some(reason) = fit.refused {
                    report.failures.push(ItemFailure {
                        index,
                        reason,
                        retryable: false,
                    });
                    last = None;
                    continue;
                }
                if fit.relabel {
                    update_series_labels(conn, series, r, fit.id).map_err(store_err)?;
                }
                last = Some((index, fit.id));
                fit.id
            }
        };
        rows.push(Row {
            series: id,
            ts: r.time().timestamp_millis(),
            seq: *seq,
            value: r.value(),
        });
        *seq += 1;
    }
    report.written = readings.len() - report.failures.len();
    Ok(report)
}

/// Inserts rows in (series, time) order, brings the stored rollups of each series up to date,
/// and empties `rows`. Rows after everything stored of their series (an import, a collector's
/// news: almost every row) are inserted together at the end, many series per statement, and
/// so are the aggregate rows (`pending`).
fn insert_rows(
    conn: &Connection,
    rows: &mut Vec<Row>,
    settings: &mut HashMap<i64, Settings>,
    pending: &mut rollups::Pending,
) -> Result<(), StoreError> {
    // The sequence number breaks ties, so of two readings of one instant the later one stays.
    rows.sort_unstable_by_key(|r| (r.series, r.ts, r.seq));
    rows.dedup_by(|later, earlier| {
        let same = later.series == earlier.series && later.ts == earlier.ts;
        if same {
            *earlier = *later;
        }
        same
    });
    let mut count = conn
        .prepare_cached("UPDATE series SET n = n + ?1 WHERE id = ?2")
        .map_err(store_err)?;
    let mut touched: Vec<(i64, f64)> = Vec::new();
    // Stretches of `rows` made of appended runs, inserted after the loop.
    let mut appended_rows: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let series = rows[start].series;
        let end = rows[start..]
            .iter()
            .position(|r| r.series != series)
            .map_or(rows.len(), |n| start + n);
        let run = &rows[start..end];
        touched.clear();
        let stored_last: Option<i64> = conn
            .prepare_cached("SELECT MAX(ts) FROM readings WHERE series = ?1")
            .map_err(store_err)?
            .query_row([series], |r| r.get(0))
            .map_err(store_err)?;
        let appended = stored_last.is_none_or(|last| run[0].ts > last);
        let (added, changed) = if appended {
            // Nothing of this series is read back before the insert: the counter rules walk
            // the appended rows from memory.
            match appended_rows.last_mut() {
                Some(r) if r.end == start => r.end = end,
                _ => appended_rows.push(start..end),
            }
            touched.extend(run.iter().map(|r| (r.ts, r.value)));
            (run.len(), false)
        } else {
            classify(conn, run, &mut touched)?
        };
        if added > 0 {
            count
                .execute(params![added as i64, series])
                .map_err(store_err)?;
        }
        let settings = match settings.get(&series) {
            Some(s) => *s,
            None => {
                let s = series_settings(conn, series)?;
                settings.insert(series, s);
                s
            }
        };
        rollups::maintain(
            conn,
            &rollups::Touched {
                series,
                settings,
                rows: &touched,
                changed,
                appended,
            },
            pending,
        )?;
        start = end;
    }
    for r in appended_rows {
        insert_new(conn, &rows[r])?;
    }
    pending.flush(conn)?;
    rows.clear();
    Ok(())
}

/// Writes the rows of a run that overlaps stored readings: new ones inserted, changed values
/// replaced, equal ones left alone. Fills `touched` with the new and changed ones and answers
/// how many were new and whether a stored value changed.
fn classify(
    conn: &Connection,
    run: &[Row],
    touched: &mut Vec<(i64, f64)>,
) -> Result<(usize, bool), StoreError> {
    let (series, first, last) = (run[0].series, run[0].ts, run[run.len() - 1].ts);
    let mut stmt = conn
        .prepare_cached(
            "SELECT ts, value FROM readings WHERE series = ?1 AND ts >= ?2 AND ts <= ?3
             ORDER BY ts",
        )
        .map_err(store_err)?;
    let stored = stmt
        .query_map(params![series, first, last], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
        })
        .map_err(store_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(store_err)?;
    let mut update = conn
        .prepare_cached("UPDATE readings SET value = ?3 WHERE series = ?1 AND ts = ?2")
        .map_err(store_err)?;
    let mut fresh = Vec::new();
    let mut changed = false;
    let mut i = 0;
    for r in run {
        while i < stored.len() && stored[i].0 < r.ts {
            i += 1;
        }
        match stored.get(i) {
            Some((ts, v)) if *ts == r.ts => {
                if *v != r.value {
                    update
                        .execute(params![series, r.ts, r.value])
                        .map_err(store_err)?;
                    touched.push((r.ts, r.value));
                    changed = true;
                }
            }
            _ => {
                fresh.push(*r);
                touched.push((r.ts, r.value));
            }
        }
    }
    insert_new(conn, &fresh)?;
    Ok((fresh.len(), changed))
}

/// Inserts rows known to be new, many per statement (most of a row's cost in SQLite is running
/// a statement).
fn insert_new(conn: &Connection, rows: &[Row]) -> Result<(), StoreError> {
    let mut rest = rows;
    while !rest.is_empty() {
        let n = INSERT_SIZES
            .iter()
            .copied()
            .find(|n| *n <= rest.len())
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut insert = conn.prepare_cached(insert_sql(n)).map_err(store_err)?;
        let values: Vec<&dyn rusqlite::ToSql> = chunk
            .iter()
            .flat_map(|r| [&r.series as &dyn rusqlite::ToSql, &r.ts, &r.value])
            .collect();
        insert.execute(&values[..]).map_err(store_err)?;
    }
    Ok(())
}

/// Rows per `INSERT` statement, largest first: a run of a series is cut into these, so a few
/// statement shapes serve every length.
const INSERT_SIZES: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// `INSERT OR IGNORE` of `n` rows (one of [`INSERT_SIZES`]).
fn insert_sql(n: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        INSERT_SIZES
            .iter()
            .map(|n| {
                format!(
                    "INSERT OR IGNORE INTO readings (series, ts, value) VALUES {}",
                    vec!["(?, ?, ?)"; *n].join(", ")
                )
            })
            .collect()
    });
    let i = INSERT_SIZES.iter().position(|s| *s == n).unwrap_or(6);
    &all[i]
}

/// Brings a store of an older schema version up to date, in one transaction.
fn migrate(conn: &Connection, from: i64) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(store_err)?;
    let done = (|| {
        if from < 2 {
            // Version 1 counted readings on every query; count them once, then keep `n`.
            conn.execute_batch(
                "ALTER TABLE series ADD COLUMN n INTEGER NOT NULL DEFAULT 0;
                 UPDATE series SET n = (SELECT COUNT(*) FROM readings WHERE series = series.id);",
            )
            .map_err(store_err)?;
        }
        if from < 3 {
            // Version 2 rolled up raw readings on every query: store every series' rollups.
            conn.execute_batch(
                "ALTER TABLE series ADD COLUMN zone TEXT NOT NULL DEFAULT 'UTC';
                 ALTER TABLE series ADD COLUMN register REAL;",
            )
            .map_err(store_err)?;
            refresh_rollups(conn, None, true)?;
        }
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [SCHEMA_VERSION.to_string()],
        )
        .map_err(store_err)?;
        Ok(())
    })();
    match done {
        Ok(()) => conn.execute_batch("COMMIT").map_err(store_err),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The meta key of the zone days are stored in for meters the registry gives none.
const DEFAULT_ZONE_KEY: &str = "default_zone";

/// The zone and register size a meter's rollups are kept with: the registry entry's zone, else
/// the store's default zone (UTC unless set), and the register size its params name.
fn wanted_settings(conn: &Connection, meter: &str) -> rusqlite::Result<(Tz, Option<f64>)> {
    let entry: Option<RegistryEntry> = conn
        .query_row("SELECT entry FROM registry WHERE id = ?1", [meter], |r| {
            r.get::<_, String>(0)
        })
        .optional()?
        .and_then(|json| serde_json::from_str(&json).ok());
    let registered = entry
        .as_ref()
        .and_then(|e| e.zone.as_deref())
        .and_then(|z| parse_zone(z).ok());
    let zone = match registered {
        Some(z) => z,
        None => default_zone(conn)?,
    };
    Ok((zone, entry.and_then(|e| e.register_size())))
}

fn default_zone(conn: &Connection) -> rusqlite::Result<Tz> {
    let name: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [DEFAULT_ZONE_KEY],
            |r| r.get(0),
        )
        .optional()?;
    Ok(name.and_then(|n| parse_zone(&n).ok()).unwrap_or(Tz::UTC))
}

/// What a stored series' rollups are kept with.
fn series_settings(conn: &Connection, id: i64) -> Result<Settings, StoreError> {
    let (kind, zone, register): (String, String, Option<f64>) = conn
        .prepare_cached("SELECT kind, zone, register FROM series WHERE id = ?1")
        .map_err(store_err)?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(store_err)?;
    Ok(Settings {
        kind: kind.parse().map_err(corrupt)?,
        register,
        zone: parse_zone(&zone).map_err(corrupt)?,
    })
}

/// Recomputes the rollups of `meter`'s series (every meter's when `None`) whose zone or
/// register size differ from what the registry now says, or of all of them when `all`;
/// answers how many series were rebuilt. Runs in the caller's transaction.
fn refresh_rollups(conn: &Connection, meter: Option<&str>, all: bool) -> Result<usize, StoreError> {
    let series: Vec<(i64, String, String, String, Option<f64>)> = conn
        .prepare_cached(
            "SELECT id, meter, kind, zone, register FROM series
             WHERE ?1 IS NULL OR meter = ?1 ORDER BY id",
        )
        .map_err(store_err)?
        .query_map([meter], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .map_err(store_err)?
        .collect::<Result<_, _>>()
        .map_err(store_err)?;
    let mut rebuilt = 0;
    for (id, meter, kind, zone, register) in series {
        let (want_zone, want_register) = wanted_settings(conn, &meter).map_err(store_err)?;
        if !all && want_zone.name() == zone && want_register == register {
            continue;
        }
        conn.execute(
            "UPDATE series SET zone = ?1, register = ?2 WHERE id = ?3",
            params![want_zone.name(), want_register, id],
        )
        .map_err(store_err)?;
        let settings = Settings {
            kind: kind.parse().map_err(corrupt)?,
            register: want_register,
            zone: want_zone,
        };
        rollups::rebuild(conn, id, settings)?;
        rebuilt += 1;
    }
    Ok(rebuilt)
}

fn millis(ts: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ts)
        .ok_or_else(|| corrupt(format!("timestamp {ts} is out of range")))
}

fn series_row(
    id: i64,
    unit: &str,
    kind: &str,
    source: &str,
    tags: &str,
) -> Result<SeriesRow, StoreError> {
    let tags: std::collections::BTreeMap<String, String> =
        serde_json::from_str(tags).map_err(corrupt)?;
    Ok(SeriesRow {
        id,
        unit: Unit::parse(unit).map_err(corrupt)?,
        kind: kind.parse().map_err(corrupt)?,
        source: SourceName::new(source).map_err(corrupt)?,
        tags: Tags::try_from(tags).map_err(corrupt)?,
    })
}

fn build_reading(
    meter: &MeterId,
    measure: &MeasureName,
    row: &SeriesRow,
    ts: i64,
    value: f64,
) -> Result<Reading, StoreError> {
    Reading::new(
        meter.clone(),
        measure.clone(),
        value,
        row.unit.clone(),
        row.kind,
        millis(ts)?,
        row.source.clone(),
    )
    .map(|r| r.with_tags(row.tags.clone()))
    .map_err(corrupt)
}

/// The series of a meter, ordered by measure.
fn series_of(
    conn: &Connection,
    meter: &MeterId,
) -> Result<Vec<(i64, MeasureName, SeriesRow)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, measure, unit, kind, source, tags FROM series WHERE meter = ?1 ORDER BY measure",
        )
        .map_err(store_err)?;
    let rows = stmt
        .query_map([meter.as_str()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .map_err(store_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, measure, unit, kind, source, tags) = row.map_err(store_err)?;
        out.push((
            id,
            MeasureName::new(&measure).map_err(corrupt)?,
            series_row(id, &unit, &kind, &source, &tags)?,
        ));
    }
    Ok(out)
}

fn tags_json(tags: &Tags) -> String {
    let map: std::collections::BTreeMap<&str, &str> = tags.iter().collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_owned())
}

/// The writer's series, by meter then measure: looked up by reference, so a row costs no key.
type SeriesCache = HashMap<MeterId, HashMap<MeasureName, SeriesRow>>;

/// What a reading's series says about it.
struct Fit {
    id: i64,
    /// Why the series cannot take the reading (another unit or kind), if it cannot.
    refused: Option<String>,
    /// Whether the reading's tags or source differ from the series' labels.
    relabel: bool,
}

/// The series of a reading, created on first sight, from the cache when possible.
fn series_for(tx: &Connection, cache: &mut SeriesCache, r: &Reading) -> rusqlite::Result<Fit> {
    let fit = |row: &SeriesRow| Fit {
        id: row.id,
        refused: (row.unit != *r.unit() || row.kind != r.kind()).then(|| {
            format!(
                "series {}/{} stores {} values in {}; this reading is {} in {}",
                r.meter(),
                r.measure(),
                row.kind,
                row.unit,
                r.kind(),
                r.unit()
            )
        }),
        relabel: row.tags != *r.tags() || row.source != *r.source(),
    };
    if let Some(row) = cache.get(r.meter()).and_then(|m| m.get(r.measure())) {
        return Ok(fit(row));
    }
    let existing = tx
        .query_row(
            "SELECT id, unit, kind, source, tags FROM series WHERE meter = ?1 AND measure = ?2",
            params![r.meter().as_str(), r.measure().as_str()],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                ))
            },
        )
        .optional()?;
    let row = match existing {
        Some((id, unit, kind, source, tags)) => series_row(id, &unit, &kind, &source, &tags)
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
        None => {
            let (zone, register) = wanted_settings(tx, r.meter().as_str())?;
            tx.execute(
                "INSERT INTO series (meter, measure, unit, kind, source, tags, zone, register)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    r.meter().as_str(),
                    r.measure().as_str(),
                    r.unit().symbol(),
                    r.kind().as_str(),
                    r.source().as_str(),
                    tags_json(r.tags()),
                    zone.name(),
                    register
                ],
            )?;
            SeriesRow {
                id: tx.last_insert_rowid(),
                unit: r.unit().clone(),
                kind: r.kind(),
                source: r.source().clone(),
                tags: r.tags().clone(),
            }
        }
    };
    let answer = fit(&row);
    cache
        .entry(r.meter().clone())
        .or_default()
        .insert(r.measure().clone(), row);
    Ok(answer)
}

/// The latest write's source and tags label the series.
fn update_series_labels(
    tx: &Connection,
    cache: &mut SeriesCache,
    r: &Reading,
    id: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE series SET source = ?1, tags = ?2 WHERE id = ?3",
        params![r.source().as_str(), tags_json(r.tags()), id],
    )?;
    if let Some(row) = cache
        .get_mut(r.meter())
        .and_then(|m| m.get_mut(r.measure()))
    {
        row.source = r.source().clone();
        row.tags = r.tags().clone();
    }
    Ok(())
}

/// The series a decoder asks about when a message leaves out its unit or kind. A store that
/// cannot be read answers "no such series": the reading then carries the defaults, and the
/// write reports any conflict with the series it meets.
impl meter_core::decode::SeriesLookup for SqliteStore {
    fn series(&self, meter: &MeterId, measure: &MeasureName) -> Option<(Unit, Kind)> {
        self.series_unit_kind(meter, measure).ok().flatten()
    }
}

#[async_trait]
impl ReadingWriter for SqliteStore {
    fn max_batch(&self) -> usize {
        SQLITE_MAX_BATCH
    }

    async fn write(&self, readings: &[Reading]) -> Result<WriteReport, StoreError> {
        let owned = readings.to_vec();
        self.blocking(move |s| s.write_batch(&owned)).await
    }
}

#[async_trait]
impl RangeReader for SqliteStore {
    async fn range(&self, query: &RangeQuery) -> Result<Page, StoreError> {
        let q = query.clone();
        self.blocking(move |s| s.range_sync(&q)).await
    }
}

#[async_trait]
impl ReadingReader for SqliteStore {
    async fn latest(&self, meter: Option<&MeterId>) -> Result<Vec<Reading>, StoreError> {
        let m = meter.cloned();
        self.blocking(move |s| s.latest_sync(m.as_ref())).await
    }

    async fn before(
        &self,
        (meter, measure): (&MeterId, &MeasureName),
        t: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        let (m, ms) = (meter.clone(), measure.clone());
        self.blocking(move |s| s.before_sync((&m, &ms), t, n)).await
    }

    async fn meters(&self) -> Result<Vec<MeterInfo>, StoreError> {
        self.blocking(|s| s.meters_sync(None)).await
    }

    async fn meter(&self, meter: &MeterId) -> Result<Option<MeterInfo>, StoreError> {
        let m = meter.clone();
        self.blocking(move |s| Ok(s.meters_sync(Some(&m))?.into_iter().next()))
            .await
    }

    async fn rollup(&self, query: &RollupQuery) -> Result<Rollup, StoreError> {
        let q = query.clone();
        self.blocking(move |s| s.rollup_sync(&q)).await
    }
}

impl SqliteStore {
    /// See [`ReadingReader::rollup`]: the same rules as the default, answered from the stored
    /// daily and hourly rollups where they fit the request and from one index range scan per
    /// partial edge (see [`meter_core::aggregate::plan`]).
    pub fn rollup_sync(&self, q: &RollupQuery) -> Result<Rollup, StoreError> {
        let info = self
            .meters_sync(Some(&q.meter))?
            .into_iter()
            .next()
            .ok_or_else(|| {
                StoreError::InvalidQuery(format!("no readings are stored for meter {}", q.meter))
            })?;
        let series = info.pick(q.measure.as_ref())?.clone();
        let mut builder = RollupBuilder::for_query(q, series.kind)?;
        self.read(|conn| {
            let id: i64 = conn
                .prepare_cached("SELECT id FROM series WHERE meter = ?1 AND measure = ?2")
                .map_err(store_err)?
                .query_row(params![q.meter.as_str(), series.measure.as_str()], |r| {
                    r.get(0)
                })
                .map_err(store_err)?;
            let stored = series_settings(conn, id)?;
            if stored.register == q.register {
                rollups::fill(conn, id, stored, q, &mut builder)
            } else {
                // Asked with another register size than the rollups were kept with.
                rollups::raw(conn, id, series.kind, q.range, &mut builder)
            }
        })?;
        q.answer((series.measure, series.unit, series.kind), builder)
    }
}

#[async_trait]
impl MeterRegistry for SqliteStore {
    async fn put(&self, entry: &RegistryEntry) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(entry).map_err(|e| StoreError::InvalidQuery(e.to_string()))?;
        let id = entry.id.to_string();
        self.blocking(move |s| {
            // A new zone or register size changes the meter's stored rollups.
            lock(&s.inner.writer).transact(|conn| {
                conn.execute(
                    "INSERT INTO registry (id, entry) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET entry = excluded.entry",
                    params![id, json],
                )
                .map_err(store_err)?;
                refresh_rollups(conn, Some(&id), false).map(drop)
            })
        })
        .await
    }

    async fn entry(&self, id: &MeterId) -> Result<Option<RegistryEntry>, StoreError> {
        let id = id.to_string();
        self.blocking(move |s| {
            s.read(|conn| {
                let json: Option<String> = conn
                    .query_row("SELECT entry FROM registry WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(store_err)?;
                json.map(|j| serde_json::from_str(&j).map_err(corrupt))
                    .transpose()
            })
        })
        .await
    }

    async fn remove(&self, id: &MeterId) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.blocking(move |s| {
            lock(&s.inner.writer).transact(|conn| {
                let n = conn
                    .execute("DELETE FROM registry WHERE id = ?1", [&id])
                    .map_err(store_err)?;
                refresh_rollups(conn, Some(&id), false)?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn list(&self, after: Option<&Cursor>, limit: usize) -> Result<RegistryPage, StoreError> {
        let after = after.map(|c| c.0.clone()).unwrap_or_default();
        let limit = limit.clamp(1, 10_000);
        self.blocking(move |s| {
            s.read(|conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, entry FROM registry WHERE id > ?1 ORDER BY id LIMIT ?2",
                    )
                    .map_err(store_err)?;
                let rows = stmt
                    .query_map(params![after, limit as i64 + 1], |r| r.get::<_, String>(1))
                    .map_err(store_err)?;
                let mut entries = Vec::new();
                for json in rows {
                    let json = json.map_err(store_err)?;
                    entries.push(serde_json::from_str::<RegistryEntry>(&json).map_err(corrupt)?);
                }
                let next = if entries.len() > limit {
                    entries.truncate(limit);
                    entries.last().map(|e| Cursor(e.id.to_string()))
                } else {
                    None
                };
                Ok(RegistryPage { entries, next })
            })
        })
        .await
    }
}

#[async_trait]
impl Counters for SqliteStore {
    async fn add(
        &self,
        key: &CounterKey,
        delta: u64,
        dedupe: Option<&str>,
    ) -> Result<AddOutcome, StoreError> {
        let (name, hour) = (key.name.clone(), key.hour.timestamp());
        let dedupe = dedupe.map(str::to_owned);
        let delta =
            i64::try_from(delta).map_err(|_| StoreError::InvalidQuery("delta too large".into()))?;
        self.blocking(move |s| {
            let mut w = lock(&s.inner.writer);
            let tx = w
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(store_err)?;
            if let Some(d) = &dedupe {
                // A key older than the window is taken as new and its time refreshed.
                let now = Utc::now().timestamp();
                let fresh = tx
                    .execute(
                        "INSERT INTO counter_dedupe (key, at) VALUES (?1, ?2)
                         ON CONFLICT (key) DO UPDATE SET at = excluded.at
                         WHERE counter_dedupe.at < ?3",
                        params![d, now, now - DEDUPE_WINDOW_SECS],
                    )
                    .map_err(store_err)?;
                if fresh > 0 && now % 64 == 0 {
                    // Now and then, forget keys long past the window so the table stays small.
                    tx.execute(
                        "DELETE FROM counter_dedupe WHERE at < ?1",
                        [now - 2 * DEDUPE_WINDOW_SECS],
                    )
                    .map_err(store_err)?;
                }
                if fresh == 0 {
                    return Ok(AddOutcome::Duplicate);
                }
            }
            let total: i64 = tx
                .query_row(
                    "INSERT INTO counters (name, hour, count) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name, hour) DO UPDATE SET count = count + excluded.count
                     RETURNING count",
                    params![name, hour, delta],
                    |r| r.get(0),
                )
                .map_err(store_err)?;
            tx.commit().map_err(store_err)?;
            Ok(AddOutcome::Added(total as u64))
        })
        .await
    }

    async fn total(&self, key: &CounterKey) -> Result<u64, StoreError> {
        let (name, hour) = (key.name.clone(), key.hour.timestamp());
        self.blocking(move |s| {
            s.read(|conn| {
                let n: Option<i64> = conn
                    .query_row(
                        "SELECT count FROM counters WHERE name = ?1 AND hour = ?2",
                        params![name, hour],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(store_err)?;
                Ok(n.unwrap_or(0) as u64)
            })
        })
        .await
    }
}
