//! The Timestream queries, built with escaped literals and quoted identifiers.
//!
//! Seed 003 pasted the caller's identifier into its SQL; here every text value goes through
//! [`literal`] (single quotes doubled) and every name through [`ident`] (double quotes doubled),
//! and times are integers passed to `from_milliseconds`, so no input can change a query's shape.
//! Every query has a time predicate, which Timestream needs to prune partitions (and bills by).

use chrono::{DateTime, Utc};
use meter_core::time::TimeRange;
use meter_core::{Kind, MeasureName, MeterId};

use meter_core::binned::{
    AFTER_ROWS, BELOW_ROWS, CONTEXT_ROWS, EDGE_ROWS, KEEP_AFTER, KEEP_BEFORE,
};

use crate::layout::{DIM_KIND, DIM_METER, DIM_UNIT, SEED_MEASURE, VALUE_COLUMN};

/// A text literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A quoted identifier (database, table or column name).
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn at(t: DateTime<Utc>) -> String {
    format!("from_milliseconds({})", t.timestamp_millis())
}

/// Builds the queries of one table.
#[derive(Debug, Clone)]
pub struct Sql {
    table: String,
    lookback_days: u32,
}

impl Sql {
    /// Queries on `"database"."table"`; unbounded questions ("the latest reading") look back
    /// `lookback_days`.
    pub fn new(database: &str, table: &str, lookback_days: u32) -> Self {
        Self {
            table: format!("{}.{}", ident(database), ident(table)),
            lookback_days,
        }
    }

    /// The quoted table reference.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// One page of a meter's readings in `[from, to)`, by measure then time, one past `limit` so
    /// the caller knows whether another page follows.
    pub fn range(
        &self,
        meter: &MeterId,
        measure: Option<&MeasureName>,
        range: TimeRange,
        after: Option<(&MeasureName, i64)>,
        limit: usize,
    ) -> String {
        let mut sql = format!(
            "SELECT * FROM {} WHERE {} = {} AND time >= {} AND time < {}",
            self.table,
            ident(DIM_METER),
            literal(meter.as_str()),
            at(range.from()),
            at(range.to())
        );
        if let Some(m) = measure {
            sql.push_str(&format!(" AND measure_name = {}", literal(m.as_str())));
        }
        if let Some((m, ms)) = after {
            let m = literal(m.as_str());
            sql.push_str(&format!(
                " AND (measure_name > {m} OR (measure_name = {m} AND time > from_milliseconds({ms})))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY measure_name ASC, time ASC LIMIT {}",
            limit + 1
        ));
        sql
    }

    /// The newest reading of each series (of one meter, or of all).
    pub fn latest(&self, meter: Option<&MeterId>) -> String {
        let filter = match meter {
            Some(m) => format!(" AND {} = {}", ident(DIM_METER), literal(m.as_str())),
            None => String::new(),
        };
        format!(
            "SELECT * FROM (SELECT r.*, row_number() OVER (PARTITION BY {m}, measure_name ORDER BY time DESC) AS rn \
             FROM {t} r WHERE time >= ago({d}d){filter}) WHERE rn = 1 ORDER BY {m} ASC, measure_name ASC",
            m = ident(DIM_METER),
            t = self.table,
            d = self.lookback_days,
        )
    }

    /// The last `n` readings of a series strictly before `t`, newest first.
    pub fn before(
        &self,
        meter: &MeterId,
        measure: &MeasureName,
        t: DateTime<Utc>,
        n: usize,
    ) -> String {
        format!(
            "SELECT * FROM {} WHERE {} = {} AND measure_name = {} AND time < {} AND time >= {} - {}d \
             ORDER BY time DESC LIMIT {}",
            self.table,
            ident(DIM_METER),
            literal(meter.as_str()),
            literal(measure.as_str()),
            at(t),
            at(t),
            self.lookback_days,
            n.max(1)
        )
    }

    /// Every series with its count and time span.
    pub fn series(&self, meter: Option<&MeterId>) -> String {
        let filter = match meter {
            Some(m) => format!(" AND {} = {}", ident(DIM_METER), literal(m.as_str())),
            None => String::new(),
        };
        format!(
            "SELECT {m}, measure_name, {u}, {k}, count(*) AS n, min(time) AS first, max(time) AS last \
             FROM {t} WHERE time >= ago({d}d) AND {m} IS NOT NULL{filter} \
             GROUP BY {m}, measure_name, {u}, {k} ORDER BY {m} ASC, measure_name ASC",
            m = ident(DIM_METER),
            u = ident(DIM_UNIT),
            k = ident(DIM_KIND),
            t = self.table,
            d = self.lookback_days,
        )
    }

    /// A rollup's one query (see [`meter_core::binned`]): for the series' readings in `range`,
    /// one row per bin of `width_ms` (`part = 'bin'`: count, sum, min and max) and, where the
    /// records are a counter's, the readings the counter rules need (`part = 'reading'`, with
    /// their row number `i` in the series): the context before and after the range, the first
    /// and last of each bin, the ends, and the rows around every reading lower than one before
    /// it. The rules themselves run in the adapter.
    pub fn rollup(
        &self,
        meter: &MeterId,
        measure: &MeasureName,
        range: TimeRange,
        width_ms: i64,
    ) -> String {
        let value = if measure.as_str() == SEED_MEASURE {
            "CAST(measure_value::bigint AS double)".to_owned()
        } else {
            ident(VALUE_COLUMN)
        };
        let series = format!(
            "{} = {} AND measure_name = {}",
            ident(DIM_METER),
            literal(meter.as_str()),
            literal(measure.as_str())
        );
        let width = if width_ms % 3_600_000 == 0 {
            format!("{}h", width_ms / 3_600_000)
        } else {
            format!("{}m", width_ms / 60_000)
        };
        let (from, to) = (at(range.from()), at(range.to()));
        let cols = format!(
            "time, {value} AS v, {k} AS kind, {u} AS unit",
            k = ident(DIM_KIND),
            u = ident(DIM_UNIT)
        );
        format!(
            "WITH s AS (\
             (SELECT {cols} FROM {t} WHERE {series} AND time < {from} AND time >= {from} - {d}d \
             ORDER BY time DESC LIMIT {context}) \
             UNION ALL (SELECT {cols} FROM {t} WHERE {series} AND time >= {from} AND time < {to}) \
             UNION ALL (SELECT {cols} FROM {t} WHERE {series} AND time >= {to} AND time < {to} + 366d \
             ORDER BY time ASC LIMIT {after})), \
             o AS (SELECT time, v, kind, unit, \
             CASE WHEN time >= {from} AND time < {to} THEN bin(time, {width}) END AS b, \
             row_number() OVER (ORDER BY time) AS i, count(*) OVER () AS total, \
             CASE WHEN v < lag(v) OVER (ORDER BY time) \
             OR v < max(v) OVER (ORDER BY time ROWS BETWEEN {below} PRECEDING AND 1 PRECEDING) \
             THEN 1 ELSE 0 END AS odd FROM s), \
             k AS (SELECT time, v, kind, unit, b, i, total, \
             max(odd) OVER (ORDER BY time ROWS BETWEEN {keep_after} PRECEDING AND {keep_before} FOLLOWING) AS near, \
             min(i) OVER (PARTITION BY b) AS bin_first, max(i) OVER (PARTITION BY b) AS bin_last FROM o) \
             SELECT 'bin' AS part, b AS time, NULL AS i, count(*) AS n, sum(v) AS v, min(v) AS lo, \
             max(v) AS hi, max_by(kind, time) AS kind, max_by(unit, time) AS unit \
             FROM k WHERE b IS NOT NULL GROUP BY b \
             UNION ALL SELECT 'reading' AS part, time, i, NULL AS n, v, NULL AS lo, NULL AS hi, kind, unit \
             FROM k WHERE kind = {cumulative} AND (b IS NULL OR near = 1 OR i <= {edge} \
             OR i > total - {edge} OR i = bin_first OR i = bin_last) \
             ORDER BY time ASC, part ASC",
            t = self.table,
            d = self.lookback_days,
            context = CONTEXT_ROWS,
            after = AFTER_ROWS,
            below = BELOW_ROWS,
            keep_after = KEEP_AFTER,
            keep_before = KEEP_BEFORE,
            edge = EDGE_ROWS,
            cumulative = literal(Kind::Cumulative.as_str()),
        )
    }

    /// Seed 000's README chart: over the last day, the hourly maximum of the cold and hot
    /// counters of one location, newest first.
    pub fn seed000_hourly(&self, location: &str) -> String {
        format!(
            "SELECT bin(time, 1h) AS hour, \
             max(CASE WHEN water_temperature = 'cold' THEN measure_value::bigint END) AS cold, \
             max(CASE WHEN water_temperature = 'hot' THEN measure_value::bigint END) AS hot \
             FROM {} WHERE measure_name = 'volume' AND service = 'water' AND location = {} \
             AND time >= ago(1d) GROUP BY bin(time, 1h) ORDER BY hour DESC",
            self.table,
            literal(location)
        )
    }

    /// Seed 000's `get-last-meter-values`: the first and last counter value of the last 30 days,
    /// per water temperature (and now per counter, which the seed could not tell apart).
    pub fn seed000_last_values(&self, location: &str) -> String {
        format!(
            "SELECT water_temperature, counter_id, \
             max_by(measure_value::bigint, time) AS last, min_by(measure_value::bigint, time) AS first \
             FROM {} WHERE measure_name = 'volume' AND service = 'water' AND location = {} \
             AND time >= ago(30d) GROUP BY water_temperature, counter_id",
            self.table,
            literal(location)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sql() -> Sql {
        Sql::new("meterflow", "readings", 400)
    }
    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    #[test]
    fn literals_and_identifiers_are_escaped() {
        assert_eq!(literal("a'b"), "'a''b'");
        assert_eq!(literal("' OR '1'='1"), "''' OR ''1''=''1'");
        assert_eq!(ident("my\"db"), "\"my\"\"db\"");
        assert_eq!(Sql::new("d\"b", "t", 1).table(), "\"d\"\"b\".\"t\"");
    }

    #[test]
    fn golden_range_query() {
        let range = TimeRange::new(t(1_700_000_000), t(1_700_086_400)).unwrap();
        let meter = MeterId::new("house-1/counter 'cold'").unwrap();
        assert_eq!(
            sql().range(&meter, None, range, None, 100),
            "SELECT * FROM \"meterflow\".\"readings\" WHERE \"meter\" = 'house-1/counter ''cold''' \
             AND time >= from_milliseconds(1700000000000) AND time < from_milliseconds(1700086400000) \
             ORDER BY measure_name ASC, time ASC LIMIT 101"
        );
        let volume = MeasureName::new("volume").unwrap();
        assert_eq!(
            sql().range(&meter, Some(&volume), range, Some((&volume, 1_700_000_300_000)), 10),
            "SELECT * FROM \"meterflow\".\"readings\" WHERE \"meter\" = 'house-1/counter ''cold''' \
             AND time >= from_milliseconds(1700000000000) AND time < from_milliseconds(1700086400000) \
             AND measure_name = 'volume' AND (measure_name > 'volume' OR (measure_name = 'volume' \
             AND time > from_milliseconds(1700000300000))) ORDER BY measure_name ASC, time ASC LIMIT 11"
        );
    }

    #[test]
    fn golden_latest_before_and_series_queries() {
        let meter = MeterId::new("x' OR '1'='1").unwrap();
        assert_eq!(
            sql().latest(Some(&meter)),
            "SELECT * FROM (SELECT r.*, row_number() OVER (PARTITION BY \"meter\", measure_name ORDER BY time DESC) AS rn \
             FROM \"meterflow\".\"readings\" r WHERE time >= ago(400d) AND \"meter\" = 'x'' OR ''1''=''1') \
             WHERE rn = 1 ORDER BY \"meter\" ASC, measure_name ASC"
        );
        assert_eq!(
            sql().before(&meter, &MeasureName::new("volume").unwrap(), t(1_700_000_000), 9),
            "SELECT * FROM \"meterflow\".\"readings\" WHERE \"meter\" = 'x'' OR ''1''=''1' AND measure_name = 'volume' \
             AND time < from_milliseconds(1700000000000) AND time >= from_milliseconds(1700000000000) - 400d \
             ORDER BY time DESC LIMIT 9"
        );
        assert_eq!(
            sql().series(None),
            "SELECT \"meter\", measure_name, \"unit\", \"kind\", count(*) AS n, min(time) AS first, max(time) AS last \
             FROM \"meterflow\".\"readings\" WHERE time >= ago(400d) AND \"meter\" IS NOT NULL \
             GROUP BY \"meter\", measure_name, \"unit\", \"kind\" ORDER BY \"meter\" ASC, measure_name ASC"
        );
    }

    #[test]
    fn golden_seed_000_queries() {
        assert_eq!(
            sql().seed000_hourly("flat 'A'"),
            "SELECT bin(time, 1h) AS hour, \
             max(CASE WHEN water_temperature = 'cold' THEN measure_value::bigint END) AS cold, \
             max(CASE WHEN water_temperature = 'hot' THEN measure_value::bigint END) AS hot \
             FROM \"meterflow\".\"readings\" WHERE measure_name = 'volume' AND service = 'water' \
             AND location = 'flat ''A''' AND time >= ago(1d) GROUP BY bin(time, 1h) ORDER BY hour DESC"
        );
        assert!(sql()
            .seed000_last_values("flat")
            .contains("max_by(measure_value::bigint, time) AS last"));
    }
    #[test]
    fn golden_rollup_query() {
        let range = TimeRange::new(t(1_700_000_000), t(1_700_086_400)).unwrap();
        let meter = MeterId::new("m'1").unwrap();
        let f = "from_milliseconds(1700000000000)";
        let e = "from_milliseconds(1700086400000)";
        let cols =
            "time, CAST(measure_value::bigint AS double) AS v, \"kind\" AS kind, \"unit\" AS unit";
        let series =
            "FROM \"meterflow\".\"readings\" WHERE \"meter\" = 'm''1' AND measure_name = 'volume'";
        let want = format!(
            "WITH s AS ((SELECT {cols} {series} AND time < {f} AND time >= {f} - 400d ORDER BY time DESC LIMIT 9) \
             UNION ALL (SELECT {cols} {series} AND time >= {f} AND time < {e}) \
             UNION ALL (SELECT {cols} {series} AND time >= {e} AND time < {e} + 366d ORDER BY time ASC LIMIT 3)), \
             o AS (SELECT time, v, kind, unit, CASE WHEN time >= {f} AND time < {e} THEN bin(time, 1h) END AS b, \
             row_number() OVER (ORDER BY time) AS i, count(*) OVER () AS total, \
             CASE WHEN v < lag(v) OVER (ORDER BY time) \
             OR v < max(v) OVER (ORDER BY time ROWS BETWEEN 12 PRECEDING AND 1 PRECEDING) THEN 1 ELSE 0 END AS odd FROM s), \
             k AS (SELECT time, v, kind, unit, b, i, total, \
             max(odd) OVER (ORDER BY time ROWS BETWEEN 3 PRECEDING AND 4 FOLLOWING) AS near, \
             min(i) OVER (PARTITION BY b) AS bin_first, max(i) OVER (PARTITION BY b) AS bin_last FROM o) \
             SELECT 'bin' AS part, b AS time, NULL AS i, count(*) AS n, sum(v) AS v, min(v) AS lo, max(v) AS hi, \
             max_by(kind, time) AS kind, max_by(unit, time) AS unit FROM k WHERE b IS NOT NULL GROUP BY b \
             UNION ALL SELECT 'reading' AS part, time, i, NULL AS n, v, NULL AS lo, NULL AS hi, kind, unit FROM k \
             WHERE kind = 'cumulative' AND (b IS NULL OR near = 1 OR i <= 7 OR i > total - 7 \
             OR i = bin_first OR i = bin_last) ORDER BY time ASC, part ASC"
        );
        let volume = MeasureName::new("volume").unwrap();
        assert_eq!(sql().rollup(&meter, &volume, range, 3_600_000), want);
        // Other measures read the multi-measure column; zones with :30 offsets bin by quarters.
        let energy = sql().rollup(&meter, &MeasureName::new("energy").unwrap(), range, 900_000);
        assert!(energy.contains("SELECT time, \"value\" AS v,"), "{energy}");
        assert!(energy.contains("bin(time, 15m)"), "{energy}");
        assert!(!energy.contains("measure_value::bigint"), "{energy}");
    }
}
