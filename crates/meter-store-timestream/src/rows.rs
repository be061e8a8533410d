//! Query results as typed rows: readings and series summaries.
//!
//! Timestream answers with column metadata and rows of text scalars (or nulls); `SELECT *` over a
//! table holding both layouts has a `measure_value::bigint` column (seed 000's `volume`), a
//! `value` column (multi-measure records) and one column per dimension, null where a record
//! lacks it.

use chrono::{DateTime, NaiveDateTime, Utc};
use meter_core::binned::{Bin, Kept};
use meter_core::ports::{SeriesInfo, StoreError};
use meter_core::{Kind, MeasureName, MeterId, Reading, SourceName, Tags, Unit};

use crate::layout::{
    tag_key, DIM_KIND, DIM_METER, DIM_SOURCE, DIM_UNIT, SEED_MEASURE, VALUE_COLUMN,
};

/// A query result: column names and rows of optional text scalars.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows, each as long as `columns`; `None` is a null.
    pub rows: Vec<Vec<Option<String>>>,
}

/// A rollup query's answer, parsed (see [`meter_core::binned`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Binned {
    /// The range's bins, in time order.
    pub bins: Vec<Bin>,
    /// The counter readings kept, in time order.
    pub kept: Vec<Kept>,
    /// The unit and kind of the newest bin's records.
    pub series: Option<(Unit, Kind)>,
}

/// Columns a reading row has besides its dimensions.
const NOT_TAGS: [&str; 5] = ["time", "measure_name", "rn", "n", VALUE_COLUMN];

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A Timestream timestamp (`2024-05-01 10:00:00.000000000`).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(|e| corrupt(format!("time {s:?}: {e}")))
}

impl Table {
    fn index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    fn cell<'a>(&self, row: &'a [Option<String>], name: &str) -> Option<&'a str> {
        self.index(name)
            .and_then(|i| row.get(i))
            .and_then(|v| v.as_deref())
    }

    /// A row's unit and kind: its dimensions, else seed 000's litres counter for its measure,
    /// else a gauge without a unit.
    fn unit_and_kind(
        &self,
        row: &[Option<String>],
        measure: &str,
    ) -> Result<(Unit, Kind), StoreError> {
        let seed = measure == SEED_MEASURE;
        let unit = match self.cell(row, DIM_UNIT) {
            Some(u) => Unit::parse(u).map_err(corrupt)?,
            None if seed => Unit::Litre,
            None => Unit::Dimensionless,
        };
        let kind = match self.cell(row, DIM_KIND) {
            Some(k) => k.parse().map_err(corrupt)?,
            None if seed => Kind::Cumulative,
            None => Kind::Gauge,
        };
        Ok((unit, kind))
    }

    /// The answer of [`crate::sql::Sql::rollup`] for a series of `measure`: its bins, the
    /// counter readings it kept, and the unit and kind of the newest bin (`None` when the
    /// range holds no reading).
    pub fn binned(&self, measure: &str) -> Result<Binned, StoreError> {
        let mut out = Binned::default();
        for row in &self.rows {
            let get = |c: &str| {
                self.cell(row, c)
                    .ok_or_else(|| corrupt(format!("a rollup row without {c}")))
            };
            let num = |c: &str| -> Result<f64, StoreError> {
                let v = get(c)?;
                v.parse()
                    .map_err(|_| corrupt(format!("{c} {v:?} is not a number")))
            };
            let ts = parse_time(get("time")?)?.timestamp_millis();
            match get("part")? {
                "bin" => {
                    out.bins.push(Bin {
                        start: ts,
                        count: get("n")?
                            .parse()
                            .map_err(|_| corrupt("a bin's count is not a number"))?,
                        sum: num("v")?,
                        min: num("lo")?,
                        max: num("hi")?,
                    });
                    out.series = Some(self.unit_and_kind(row, measure)?);
                }
                "reading" => out.kept.push(Kept {
                    row: get("i")?
                        .parse()
                        .map_err(|_| corrupt("a reading's row number is not a number"))?,
                    ts,
                    value: num("v")?,
                }),
                other => return Err(corrupt(format!("a rollup row of part {other:?}"))),
            }
        }
        Ok(out)
    }

    /// The readings of a `SELECT *` result. Rows written by other tools without a `meter`
    /// dimension (seed 000's own rows) are skipped; they cannot be told apart.
    pub fn readings(&self) -> Result<Vec<Reading>, StoreError> {
        let mut out = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let Some(meter) = self.cell(row, DIM_METER) else {
                continue;
            };
            let measure = self
                .cell(row, "measure_name")
                .ok_or_else(|| corrupt("a row without measure_name"))?;
            let value = self
                .cell(row, "measure_value::bigint")
                .or_else(|| self.cell(row, "measure_value::double"))
                .or_else(|| self.cell(row, VALUE_COLUMN))
                .ok_or_else(|| corrupt(format!("a {measure} row of {meter} without a value")))?;
            let value: f64 = value
                .parse()
                .map_err(|_| corrupt(format!("value {value:?} is not a number")))?;
            let time = parse_time(
                self.cell(row, "time")
                    .ok_or_else(|| corrupt("a row without time"))?,
            )?;
            let (unit, kind) = self.unit_and_kind(row, measure)?;
            let source = SourceName::new(self.cell(row, DIM_SOURCE).unwrap_or("timestream"))
                .map_err(corrupt)?;
            let mut tags = Vec::new();
            for (i, name) in self.columns.iter().enumerate() {
                if NOT_TAGS.contains(&name.as_str()) || name.starts_with("measure_value::") {
                    continue;
                }
                if let (Some(key), Some(Some(v))) = (tag_key(name), row.get(i)) {
                    tags.push((key.to_owned(), v.clone()));
                }
            }
            let reading = Reading::new(
                MeterId::new(meter).map_err(corrupt)?,
                MeasureName::new(measure).map_err(corrupt)?,
                value,
                unit,
                kind,
                time,
                source,
            )
            .map_err(corrupt)?
            .with_tags(Tags::new(tags).map_err(corrupt)?);
            out.push(reading);
        }
        Ok(out)
    }

    /// The rows of a series summary (`meter, measure_name, unit, kind, n, first, last`).
    pub fn series(&self) -> Result<Vec<(MeterId, SeriesInfo)>, StoreError> {
        let mut out = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let get = |c: &str| {
                self.cell(row, c)
                    .ok_or_else(|| corrupt(format!("a series row without {c}")))
            };
            let measure = get("measure_name")?;
            let (unit, kind) = self.unit_and_kind(row, measure)?;
            out.push((
                MeterId::new(get(DIM_METER)?).map_err(corrupt)?,
                SeriesInfo {
                    measure: MeasureName::new(measure).map_err(corrupt)?,
                    unit,
                    kind,
                    count: Some(
                        get("n")?
                            .parse()
                            .map_err(|_| corrupt("count is not a number"))?,
                    ),
                    first: parse_time(get("first")?)?,
                    last: parse_time(get("last")?)?,
                },
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn both_layouts_read_back_as_readings_with_their_tags() {
        let table = Table {
            columns: [
                "meter",
                "unit",
                "kind",
                "source",
                "service",
                "tag_time",
                "measure_name",
                "time",
                "measure_value::bigint",
                "value",
                "rn",
            ]
            .map(String::from)
            .to_vec(),
            rows: vec![
                vec![
                    s("c1"),
                    s("L"),
                    s("cumulative"),
                    s("sst-cloud"),
                    s("water"),
                    s("x"),
                    s("volume"),
                    s("2024-05-01 10:00:00.000000000"),
                    s("1234"),
                    None,
                    s("1"),
                ],
                vec![
                    s("pool"),
                    s("degC"),
                    s("gauge"),
                    s("pi-logger"),
                    None,
                    None,
                    s("temperature"),
                    s("2024-05-01 10:05:00.500000000"),
                    None,
                    s("23.437"),
                    s("1"),
                ],
                // A row the seed wrote itself, without the meter dimension.
                vec![
                    None,
                    None,
                    None,
                    None,
                    s("water"),
                    None,
                    s("volume"),
                    s("2024-05-01 10:00:00.000000000"),
                    s("99"),
                    None,
                    s("1"),
                ],
            ],
        };
        let rs = table.readings().unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].meter().as_str(), "c1");
        assert_eq!(rs[0].value(), 1234.0);
        assert_eq!(rs[0].unit(), &Unit::Litre);
        assert_eq!(rs[0].tags().get("service"), Some("water"));
        assert_eq!(rs[0].tags().get("time"), Some("x"));
        assert_eq!(rs[0].tags().len(), 2);
        assert_eq!(rs[0].time().timestamp(), 1_714_557_600);
        assert_eq!(rs[1].value(), 23.437);
        assert_eq!(rs[1].kind(), Kind::Gauge);
        assert_eq!(rs[1].time().timestamp_millis(), 1_714_557_900_500);
        assert!(rs[1].tags().is_empty());
    }

    #[test]
    fn a_row_without_a_value_is_an_error_not_a_zero() {
        let table = Table {
            columns: ["meter", "measure_name", "time"].map(String::from).to_vec(),
            rows: vec![vec![
                s("c1"),
                s("volume"),
                s("2024-05-01 10:00:00.000000000"),
            ]],
        };
        let err = table.readings().unwrap_err().to_string();
        assert!(err.contains("without a value"), "{err}");
    }
}
