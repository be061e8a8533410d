//! Stored rollups in the SQLite file: an `hourly` row per series and UTC hour and a `daily` row
//! per series and local day of the series' zone, kept in the writer's transaction, and the
//! rollup query that reads them.
//!
//! Gauges and interval series merge new readings' summaries into their hours and days (an
//! upsert per row; a commit gathers the rows of all its series and writes them in a few
//! multi-row statements, see [`Pending`]); a changed value recomputes its hour from the
//! readings. A counter's hour depends on its neighbours (the counter rules decide each reading
//! from a window around it and the level before it), so a write resumes the rules a few
//! readings before the first reading it touched, from the level stored with the hour before,
//! and walks forward until an hour after the last touched reading comes out as it was stored;
//! its days are then merged again from their hours. A day is stored only where the zone's days
//! are whole UTC hours.

use std::collections::BTreeSet;

use chrono_tz::Tz;
use meter_core::aggregate::{
    day_of, hour_of, hours_of_values, plan, Aggregate, CounterHours, Piece, HOUR_MS,
};
use meter_core::counter::{Verdict, WINDOW};
use meter_core::ports::{RollupQuery, StoreError};
use meter_core::rollup::RollupBuilder;
use meter_core::Kind;
use rusqlite::{params, Connection, OptionalExtension, Row as SqlRow};

use crate::{millis, store_err};

/// The two aggregate tables, `hourly` and `daily`, of one shape.
pub(crate) fn schema() -> String {
    [Table::Hourly, Table::Daily]
        .iter()
        .map(|t| {
            format!(
                "CREATE TABLE IF NOT EXISTS {} (
                    series      INTEGER NOT NULL,
                    start       INTEGER NOT NULL,
                    count       INTEGER NOT NULL,
                    sum         REAL    NOT NULL,
                    min         REAL    NOT NULL,
                    max         REAL    NOT NULL,
                    first_ts    INTEGER NOT NULL,
                    first_value REAL    NOT NULL,
                    last_ts     INTEGER NOT NULL,
                    last_value  REAL    NOT NULL,
                    glitches    INTEGER NOT NULL DEFAULT 0,
                    jitters     INTEGER NOT NULL DEFAULT 0,
                    spikes      INTEGER NOT NULL DEFAULT 0,
                    resets      INTEGER NOT NULL DEFAULT 0,
                    wraps       INTEGER NOT NULL DEFAULT 0,
                    provisional INTEGER NOT NULL DEFAULT 0,
                    level       REAL,
                    PRIMARY KEY (series, start)
                ) WITHOUT ROWID;",
                t.name()
            )
        })
        .collect()
}

const COLUMNS: &str = "count, sum, min, max, first_ts, first_value, last_ts, last_value, \
                       glitches, jitters, spikes, resets, wraps, provisional, level";

/// What the rollups of a series are computed with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Settings {
    pub(crate) kind: Kind,
    /// A counter's register size, when the registry names one.
    pub(crate) register: Option<f64>,
    /// The zone its days are stored in.
    pub(crate) zone: Tz,
}

/// One aggregate table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Hourly,
    Daily,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Hourly => "hourly",
            Table::Daily => "daily",
        }
    }
}

fn aggregate_of(r: &SqlRow<'_>, at: usize) -> rusqlite::Result<Aggregate> {
    let count: i64 = r.get(at)?;
    let set_aside: [u32; 5] = [
        r.get(at + 8)?,
        r.get(at + 9)?,
        r.get(at + 10)?,
        r.get(at + 11)?,
        r.get(at + 12)?,
    ];
    let mut verdicts = [0; 6];
    verdicts[Verdict::Glitch as usize] = set_aside[0];
    verdicts[Verdict::Jitter as usize] = set_aside[1];
    verdicts[Verdict::Spike as usize] = set_aside[2];
    verdicts[Verdict::Reset as usize] = set_aside[3];
    verdicts[Verdict::Wrap as usize] = set_aside[4];
    Ok(Aggregate {
        count: count as u64,
        sum: r.get(at + 1)?,
        min: r.get(at + 2)?,
        max: r.get(at + 3)?,
        first: (r.get(at + 4)?, r.get(at + 5)?),
        last: (r.get(at + 6)?, r.get(at + 7)?),
        verdicts,
        provisional: r.get(at + 13)?,
        level: r.get(at + 14)?,
    })
}

/// The counted readings are the rest: they are not stored.
fn counted(mut a: Aggregate) -> Aggregate {
    let set_aside: u32 = a.verdicts[1..].iter().sum();
    a.verdicts[Verdict::Counted as usize] = 0;
    a.verdicts[Verdict::Counted as usize] = (a.count as u32).saturating_sub(set_aside);
    a
}

fn read_one(
    conn: &Connection,
    table: Table,
    series: i64,
    start: i64,
) -> Result<Option<Aggregate>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {} WHERE series = ?1 AND start = ?2",
        table.name()
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(store_err)?;
    stmt.query_row(params![series, start], |r| aggregate_of(r, 0))
        .optional()
        .map(|a| a.map(counted))
        .map_err(store_err)
}

/// Calls `each` with the stored aggregates of `[from, to)` in order.
fn read_range(
    conn: &Connection,
    table: Table,
    series: i64,
    (from, to): (i64, i64),
    mut each: impl FnMut(i64, Aggregate) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let sql = format!(
        "SELECT start, {COLUMNS} FROM {} WHERE series = ?1 AND start >= ?2 AND start < ?3
         ORDER BY start",
        table.name()
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(store_err)?;
    let mut rows = stmt.query(params![series, from, to]).map_err(store_err)?;
    while let Some(row) = rows.next().map_err(store_err)? {
        let start: i64 = row.get(0).map_err(store_err)?;
        each(start, counted(aggregate_of(row, 1).map_err(store_err)?))?;
    }
    Ok(())
}

fn write(
    conn: &Connection,
    table: Table,
    series: i64,
    start: i64,
    a: &Aggregate,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT OR REPLACE INTO {} (series, start, {COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        table.name()
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(store_err)?;
    stmt.execute(params![
        series,
        start,
        a.count as i64,
        a.sum,
        a.min,
        a.max,
        a.first.0,
        a.first.1,
        a.last.0,
        a.last.1,
        a.verdicts(Verdict::Glitch),
        a.verdicts(Verdict::Jitter),
        a.verdicts(Verdict::Spike),
        a.verdicts(Verdict::Reset),
        a.verdicts(Verdict::Wrap),
        a.provisional,
        a.level,
    ])
    .map_err(store_err)?;
    Ok(())
}

/// Aggregate rows bound as statement parameters, `per_row` values each.
fn bind_rows<'a>(
    rows: &'a [(i64, i64, Aggregate)],
    full: bool,
) -> impl Iterator<Item = rusqlite::types::Value> + 'a {
    use rusqlite::types::Value::{Integer, Null, Real};
    rows.iter().flat_map(move |(series, start, a)| {
        let base = [
            Integer(*series),
            Integer(*start),
            Integer(a.count as i64),
            Real(a.sum),
            Real(a.min),
            Real(a.max),
            Integer(a.first.0),
            Real(a.first.1),
            Integer(a.last.0),
            Real(a.last.1),
        ];
        let rules = full.then(|| {
            [
                Integer(a.verdicts(Verdict::Glitch).into()),
                Integer(a.verdicts(Verdict::Jitter).into()),
                Integer(a.verdicts(Verdict::Spike).into()),
                Integer(a.verdicts(Verdict::Reset).into()),
                Integer(a.verdicts(Verdict::Wrap).into()),
                Integer(a.provisional.into()),
                a.level.map_or(Null, Real),
            ]
        });
        base.into_iter().chain(rules.into_iter().flatten())
    })
}

/// Runs `sql(table, n)` over `rows` in chunks of [`BATCH_SIZES`] (a statement's run costs more
/// than its rows, so a commit's aggregates of every series go in a few statements).
fn batched(
    conn: &Connection,
    table: Table,
    rows: &[(i64, i64, Aggregate)],
    replace: bool,
) -> Result<(), StoreError> {
    let mut rest = rows;
    while !rest.is_empty() {
        let n = BATCH_SIZES
            .iter()
            .copied()
            .find(|n| *n <= rest.len())
            .unwrap_or(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut stmt = conn
            .prepare_cached(batch_sql(table, replace, n))
            .map_err(store_err)?;
        stmt.execute(rusqlite::params_from_iter(bind_rows(chunk, replace)))
            .map_err(store_err)?;
    }
    Ok(())
}

/// Aggregate rows per batched statement, largest first.
const BATCH_SIZES: [usize; 6] = [32, 16, 8, 4, 2, 1];

/// The statement writing `n` aggregate rows (one of [`BATCH_SIZES`]) into `table`: with
/// `replace`, whole rows (counter rules included) replace the stored ones; else the rows are
/// summaries of new gauge or interval readings, merged into the stored ones (SQL's `SET` reads
/// the row's old values).
fn batch_sql(table: Table, replace: bool, n: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        let mut out = Vec::new();
        for table in [Table::Hourly, Table::Daily] {
            for replace in [false, true] {
                for n in BATCH_SIZES {
                    out.push(if replace {
                        format!(
                            "INSERT OR REPLACE INTO {} (series, start, {COLUMNS}) VALUES {}",
                            table.name(),
                            vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; n]
                                .join(", ")
                        )
                    } else {
                        format!(
                            "INSERT INTO {} (series, start, count, sum, min, max,
                                             first_ts, first_value, last_ts, last_value)
                             VALUES {}
                             ON CONFLICT (series, start) DO UPDATE SET
                                 count = count + excluded.count,
                                 sum = sum + excluded.sum,
                                 min = min(min, excluded.min),
                                 max = max(max, excluded.max),
                                 first_value = CASE WHEN excluded.first_ts < first_ts
                                                    THEN excluded.first_value ELSE first_value END,
                                 first_ts = min(first_ts, excluded.first_ts),
                                 last_value = CASE WHEN excluded.last_ts >= last_ts
                                                   THEN excluded.last_value ELSE last_value END,
                                 last_ts = max(last_ts, excluded.last_ts)",
                            table.name(),
                            vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; n].join(", ")
                        )
                    });
                }
            }
        }
        out
    });
    let t = match table {
        Table::Hourly => 0,
        Table::Daily => 1,
    };
    let size = BATCH_SIZES
        .iter()
        .position(|s| *s == n)
        .unwrap_or(BATCH_SIZES.len() - 1);
    &all[(t * 2 + usize::from(replace)) * BATCH_SIZES.len() + size]
}

/// Calls `each` with a series' readings from `from` on, in time order, until it answers false.
fn walk_readings(
    conn: &Connection,
    series: i64,
    (from, to): (i64, i64),
    mut each: impl FnMut(i64, f64) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT ts, value FROM readings WHERE series = ?1 AND ts >= ?2 AND ts < ?3
             ORDER BY ts",
        )
        .map_err(store_err)?;
    let mut rows = stmt.query(params![series, from, to]).map_err(store_err)?;
    while let Some(row) = rows.next().map_err(store_err)? {
        let ts: i64 = row.get(0).map_err(store_err)?;
        let value: f64 = row.get(1).map_err(store_err)?;
        if !each(ts, value)? {
            break;
        }
    }
    Ok(())
}

/// Calls `each` with the aggregate of every hour of a gauge or interval series' readings in
/// `[from, to)`, streaming them.
fn value_hours(
    conn: &Connection,
    series: i64,
    span: (i64, i64),
    mut each: impl FnMut(i64, Aggregate) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut current: Option<(i64, Aggregate)> = None;
    walk_readings(conn, series, span, |ts, v| {
        let one = Aggregate::of_value(ts, v);
        match &mut current {
            Some((h, agg)) if *h == hour_of(ts) => agg.merge(&one),
            _ => {
                if let Some((h, agg)) = current.take() {
                    each(h, agg)?;
                }
                current = Some((hour_of(ts), one));
            }
        }
        Ok(true)
    })?;
    match current {
        Some((h, agg)) => each(h, agg),
        None => Ok(()),
    }
}

/// What a write did to one series' readings: the times (in order) of the readings it added or
/// changed, and whether any stored value changed.
pub(crate) struct Touched<'a> {
    pub(crate) series: i64,
    pub(crate) settings: Settings,
    /// New or changed readings, in time order.
    pub(crate) rows: &'a [(i64, f64)],
    /// Whether some of them replaced a stored value (else all are new).
    pub(crate) changed: bool,
    /// Whether they all came after every stored reading (an import, a collector's news).
    pub(crate) appended: bool,
}

/// The aggregate rows a commit writes, gathered over every series it touched and written in
/// a few multi-row statements at its end ([`Pending::flush`]) instead of a few per series.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Summaries of new gauge or interval readings per (series, hour), merged into the stored
    /// hours.
    merge_hours: Vec<(i64, i64, Aggregate)>,
    /// The same per (series, local day).
    merge_days: Vec<(i64, i64, Aggregate)>,
    /// Counter hours the rules recomputed, replacing the stored ones.
    put_hours: Vec<(i64, i64, Aggregate)>,
    /// Counter series whose days are merged again from their hours once those are written.
    days_from: Vec<(i64, Tz, BTreeSet<i64>)>,
}

impl Pending {
    /// Writes what was gathered, in order: hours first, then the days made of them.
    pub(crate) fn flush(&mut self, conn: &Connection) -> Result<(), StoreError> {
        batched(conn, Table::Hourly, &self.merge_hours, false)?;
        batched(conn, Table::Hourly, &self.put_hours, true)?;
        batched(conn, Table::Daily, &self.merge_days, false)?;
        let mut days = Vec::new();
        for (series, zone, hours) in &self.days_from {
            days_from_hours(conn, *series, *zone, hours, &mut days)?;
        }
        batched(conn, Table::Daily, &days, true)?;
        self.clear();
        Ok(())
    }

    /// Forgets what was gathered (the transaction rolled back).
    pub(crate) fn clear(&mut self) {
        self.merge_hours.clear();
        self.merge_days.clear();
        self.put_hours.clear();
        self.days_from.clear();
    }
}

/// Brings a series' hours and days up to date after a write: most of it is gathered in
/// `pending`, which the commit writes for all its series at once.
pub(crate) fn maintain(
    conn: &Connection,
    t: &Touched<'_>,
    pending: &mut Pending,
) -> Result<(), StoreError> {
    let (Some(first), Some(last)) = (t.rows.first(), t.rows.last()) else {
        return Ok(());
    };
    if t.settings.kind == Kind::Cumulative {
        let mut hours = BTreeSet::new();
        for (h, agg) in walk_counter(
            conn,
            t.series,
            t.settings.register,
            (first.0, last.0),
            t.appended.then_some(t.rows),
        )? {
            pending.put_hours.push((t.series, h, agg));
            hours.insert(h);
        }
        pending.days_from.push((t.series, t.settings.zone, hours));
    } else if t.changed {
        // A replaced value may have been an hour's minimum: its hours are summed again, and
        // their days merged again from them (at once: nothing of this series is pending).
        let hours: BTreeSet<i64> = t.rows.iter().map(|(ts, _)| hour_of(*ts)).collect();
        for h in &hours {
            value_hours(conn, t.series, (*h, h + HOUR_MS), |h, agg| {
                write(conn, Table::Hourly, t.series, h, &agg)
            })?;
        }
        let mut days = Vec::new();
        days_from_hours(conn, t.series, t.settings.zone, &hours, &mut days)?;
        batched(conn, Table::Daily, &days, true)?;
    } else {
        // New readings only: their summaries add to the stored hours and days.
        let mut day: Option<((i64, i64), Aggregate)> = None;
        for (h, agg) in hours_of_values(t.rows) {
            pending.merge_hours.push((t.series, h, agg));
            let Some(d) = day_of(h, t.settings.zone) else {
                continue;
            };
            match &mut day {
                Some((span, acc)) if span.0 <= h && h < span.1 => acc.merge(&agg),
                _ => {
                    if let Some((span, acc)) = day.take() {
                        pending.merge_days.push((t.series, span.0, acc));
                    }
                    day = Some((d, agg));
                }
            }
        }
        if let Some((span, acc)) = day {
            pending.merge_days.push((t.series, span.0, acc));
        }
    }
    Ok(())
}

/// Merges the days holding `hours` again from their stored hours, into `out` as (series, day,
/// aggregate) rows.
fn days_from_hours(
    conn: &Connection,
    series: i64,
    zone: Tz,
    hours: &BTreeSet<i64>,
    out: &mut Vec<(i64, i64, Aggregate)>,
) -> Result<(), StoreError> {
    let mut last_day = None;
    for h in hours {
        let Some(day) = day_of(*h, zone) else {
            continue;
        };
        if last_day == Some(day) {
            continue;
        }
        last_day = Some(day);
        let mut agg: Option<Aggregate> = None;
        read_range(conn, Table::Hourly, series, day, |_, a| {
            match &mut agg {
                Some(acc) => acc.merge(&a),
                None => agg = Some(a),
            }
            Ok(())
        })?;
        if let Some(a) = agg {
            out.push((series, day.0, a));
        }
    }
    Ok(())
}

/// Recomputes a counter's hours around the readings in `touched` (first and last time), from
/// the [`WINDOW`] readings before the first (whose decisions looked at it) until an hour after
/// the last comes out as stored; answers the hours that changed, in order.
fn walk_counter(
    conn: &Connection,
    series: i64,
    register: Option<f64>,
    (first, last): (i64, i64),
    appended: Option<&[(i64, f64)]>,
) -> Result<Vec<(i64, Aggregate)>, StoreError> {
    let affected: Option<i64> = conn
        .prepare_cached(
            "SELECT ts FROM readings WHERE series = ?1 AND ts < ?2
             ORDER BY ts DESC LIMIT 1 OFFSET ?3",
        )
        .map_err(store_err)?
        .query_row(
            params![series, first, CounterHours::START_BEFORE as i64 - 1],
            |r| r.get(0),
        )
        .optional()
        .map_err(store_err)?;
    // With fewer readings before, the walk starts at the series' beginning.
    let start = affected.map_or(i64::MIN, hour_of);
    let (level, before) = if start == i64::MIN {
        (None, Vec::new())
    } else {
        resume_state(conn, series, start)?
    };
    let mut walk = CounterHours::resume(register, level, &before, last);
    // The hours the write covers, read in one scan; a walk past them looks up each hour.
    let mut near = std::collections::HashMap::new();
    if last < i64::MAX {
        read_range(
            conn,
            Table::Hourly,
            series,
            (start, hour_of(last) + HOUR_MS),
            |h, a| {
                near.insert(h, a);
                Ok(())
            },
        )?;
    }
    let covered = start..hour_of(last).saturating_add(HOUR_MS);
    let mut stored = |h: i64| match near.get(&h) {
        Some(a) => Ok(Some(*a)),
        None if covered.contains(&h) => Ok(None),
        None => read_one(conn, Table::Hourly, series, h),
    };
    match appended {
        // Appended rows are what follows the stored ones: no need to read them back.
        Some(rows) => {
            let mut going = true;
            walk_readings(conn, series, (start, first), |ts, v| {
                going = walk.push(ts, v, &mut stored)?;
                Ok(going)
            })?;
            for (ts, v) in rows {
                if !going {
                    break;
                }
                going = walk.push(*ts, *v, &mut stored)?;
            }
        }
        None => walk_readings(conn, series, (start, i64::MAX), |ts, v| {
            walk.push(ts, v, &mut stored)
        })?,
    }
    walk.finish(&mut stored)
}

/// The counter rules' state at `start` (an hour): the level stored with the last hour before
/// it, and the raw values of the [`WINDOW`] readings before it.
fn resume_state(
    conn: &Connection,
    series: i64,
    start: i64,
) -> Result<(Option<f64>, Vec<f64>), StoreError> {
    let level: Option<f64> = conn
        .prepare_cached(
            "SELECT level FROM hourly WHERE series = ?1 AND start < ?2
             ORDER BY start DESC LIMIT 1",
        )
        .map_err(store_err)?
        .query_row(params![series, start], |r| r.get(0))
        .optional()
        .map_err(store_err)?
        .flatten();
    let mut stmt = conn
        .prepare_cached(
            "SELECT value FROM readings WHERE series = ?1 AND ts < ?2
             ORDER BY ts DESC LIMIT ?3",
        )
        .map_err(store_err)?;
    let mut before = stmt
        .query_map(params![series, start, WINDOW as i64], |r| {
            r.get::<_, f64>(0)
        })
        .map_err(store_err)?
        .collect::<Result<Vec<f64>, _>>()
        .map_err(store_err)?;
    before.reverse();
    Ok((level, before))
}

/// Drops and recomputes every hour and day of a series from its readings.
pub(crate) fn rebuild(conn: &Connection, series: i64, s: Settings) -> Result<(), StoreError> {
    for table in [Table::Hourly, Table::Daily] {
        conn.execute(
            &format!("DELETE FROM {} WHERE series = ?1", table.name()),
            [series],
        )
        .map_err(store_err)?;
    }
    let mut rows = Vec::new();
    if s.kind == Kind::Cumulative {
        let changed = walk_counter(conn, series, s.register, (i64::MIN, i64::MAX), None)?;
        rows.extend(changed.into_iter().map(|(h, agg)| (series, h, agg)));
    } else {
        value_hours(conn, series, (i64::MIN, i64::MAX), |h, agg| {
            rows.push((series, h, agg));
            Ok(())
        })?;
    }
    batched(conn, Table::Hourly, &rows, true)?;
    let hours = rows.iter().map(|(_, h, _)| *h).collect();
    let mut days = Vec::new();
    days_from_hours(conn, series, s.zone, &hours, &mut days)?;
    batched(conn, Table::Daily, &days, true)
}

/// Feeds `builder` the pieces of `q`'s range: stored days and hours where they fit, readings
/// (with a counter's context) for the rest.
pub(crate) fn fill(
    conn: &Connection,
    series: i64,
    s: Settings,
    q: &RollupQuery,
    builder: &mut RollupBuilder,
) -> Result<(), StoreError> {
    for piece in plan(q.range, q.granularity, q.zone, Some(s.zone))? {
        match piece {
            Piece::Raw(range) => {
                let mut part =
                    RollupBuilder::for_query(&RollupQuery { range, ..q.clone() }, s.kind)?;
                raw(conn, series, s.kind, range, &mut part)?;
                builder.absorb(part);
            }
            Piece::Hours(range) | Piece::Days(range) => {
                let table = if matches!(piece, Piece::Days(_)) {
                    Table::Daily
                } else {
                    Table::Hourly
                };
                let span = (
                    range.from().timestamp_millis(),
                    range.to().timestamp_millis(),
                );
                read_range(conn, table, series, span, |start, a| {
                    builder.add(millis(start)?, &a);
                    Ok(())
                })?;
            }
        }
    }
    Ok(())
}

/// Pushes a stretch's readings into `builder`, with a counter's context either side.
pub(crate) fn raw(
    conn: &Connection,
    series: i64,
    kind: Kind,
    range: meter_core::TimeRange,
    builder: &mut RollupBuilder,
) -> Result<(), StoreError> {
    let (from, to) = (
        range.from().timestamp_millis(),
        range.to().timestamp_millis(),
    );
    let counter = kind == Kind::Cumulative;
    let mut start = from;
    if counter {
        // The rules carry on from the level stored with the hour before, so the edge decides
        // as the stored hours did (a walk from the series' first reading).
        start = hour_of(from);
        let (level, before) = resume_state(conn, series, start)?;
        builder.resume(level, &before);
    }
    // A counter's last readings are decided with the few after the range.
    let mut after = 0;
    let end = if counter { i64::MAX } else { to };
    let mut failed = None;
    walk_readings(conn, series, (start, end), |ts, v| {
        if ts < from {
            builder.baseline(millis(ts)?, v);
            return Ok(true);
        }
        if ts >= to {
            if after == WINDOW {
                return Ok(false);
            }
            after += 1;
        }
        if let Err(e) = builder.push(millis(ts)?, v) {
            failed = Some(e);
            return Ok(false);
        }
        Ok(true)
    })?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
