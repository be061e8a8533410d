//! The long CSV layout: one reading per row, with columns for meter, time and value, and
//! optionally unit, measure and kind. Header names are matched case-insensitively, ignoring
//! spaces, `_`, `-` and `.`, against common aliases (`meter_id`, `timestamp`, `reading`...).
//! Any other column whose name is a valid tag key becomes a tag (`location`, `line`).
//!
//! Times may be RFC 3339, `yyyy-MM-dd HH:mm[:ss]` in the options' zone, epoch seconds or epoch
//! milliseconds (see [`TimeFormat`](crate::time::TimeFormat)).
//!
//! This is the hot path of bulk imports: it works on byte records, and re-uses the previous
//! row's meter, unit, measure, kind and tags when the bytes are the same, so a typical row costs
//! one time parse, one number parse and no allocation.

use std::io::BufRead;

use super::lines::{BoundedLines, LongLines, MAX_LINE_BYTES};
use super::{parse_number, record_text, skip_bom, DecodeOptions, Decoded, Rejection};
use crate::reading::{Kind, MeasureName, MeterId, Reading, SourceName, Tags, Unit};
use crate::time::InstantParser;

/// The default measure.
pub const DEFAULT_MEASURE: &str = "consumption";
/// The default source name.
pub const DEFAULT_SOURCE: &str = "csv";

const METER: &[&str] = &[
    "meter",
    "meterid",
    "meterno",
    "meternumber",
    "device",
    "deviceid",
    "sensor",
    "sensorid",
    "identifier",
    "id",
    "endpoint",
    "ep",
    "counterid",
    "mpan",
    "serial",
];
const TIME: &[&str] = &[
    "time",
    "timestamp",
    "ts",
    "datetime",
    "readingtime",
    "readat",
    "measuredat",
    "date",
    "timeutc",
    "epoch",
    "instant",
];
const VALUE: &[&str] = &[
    "value",
    "reading",
    "val",
    "amount",
    "quantity",
    "consumption",
    "usage",
];
const UNIT: &[&str] = &["unit", "units", "uom", "unitofmeasure"];
const MEASURE: &[&str] = &["measure", "measurename", "metric", "measurement", "channel"];
const KIND: &[&str] = &["kind", "valuekind", "readingtype", "valuetype"];

fn normalise(h: &str) -> String {
    h.trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

#[derive(Debug)]
struct Columns {
    names: Vec<String>,
    meter: usize,
    time: usize,
    value: usize,
    unit: Option<usize>,
    measure: Option<usize>,
    kind: Option<usize>,
    tags: Vec<(usize, String)>,
}

impl Columns {
    fn from_header(names: Vec<String>) -> Result<Self, String> {
        let norm: Vec<String> = names.iter().map(|n| normalise(n)).collect();
        let mut used = vec![false; names.len()];
        let mut find = |aliases: &[&str]| {
            // Aliases are in order of preference, so "meter" wins over "id" when both exist.
            aliases.iter().find_map(|a| {
                let i = norm.iter().position(|n| n == a)?;
                if used[i] {
                    return None;
                }
                used[i] = true;
                Some(i)
            })
        };
        let meter = find(METER);
        let time = find(TIME);
        let value = find(VALUE);
        let unit = find(UNIT);
        let measure = find(MEASURE);
        let kind = find(KIND);
        let (Some(meter), Some(time), Some(value)) = (meter, time, value) else {
            let mut missing = Vec::new();
            if meter.is_none() {
                missing.push("meter (or meter_id, device, sensor, id)");
            }
            if time.is_none() {
                missing.push("time (or timestamp, datetime, date)");
            }
            if value.is_none() {
                missing.push("value (or reading, amount)");
            }
            return Err(format!(
                "the header lacks {}; it has {}",
                missing.join(", "),
                names.join(",")
            ));
        };
        let tags = names
            .iter()
            .enumerate()
            .filter(|(i, _)| !used[*i])
            .filter_map(|(i, n)| {
                let key = n.trim().to_ascii_lowercase().replace([' ', '-'], "_");
                Tags::new([(key.as_str(), "x")]).ok().map(|_| (i, key))
            })
            .take(Tags::MAX)
            .collect();
        Ok(Self {
            names,
            meter,
            time,
            value,
            unit,
            measure,
            kind,
            tags,
        })
    }
}

/// A value parsed from bytes, kept with the bytes so the next identical cell re-uses it.
#[derive(Debug)]
struct Cache<T> {
    bytes: Vec<u8>,
    value: Option<T>,
}

impl<T: Clone> Cache<T> {
    fn new() -> Self {
        Self {
            bytes: Vec::new(),
            value: None,
        }
    }

    fn get<E: std::fmt::Display>(
        &mut self,
        cell: &[u8],
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, String> {
        if let Some(v) = &self.value {
            if self.bytes == cell {
                return Ok(v.clone());
            }
        }
        let text = super::utf8_cell(cell)?;
        let v = parse(text).map_err(|e| e.to_string())?;
        self.bytes.clear();
        self.bytes.extend_from_slice(cell);
        self.value = Some(v.clone());
        Ok(v)
    }
}

/// Decodes the long layout. Reads `zone`, `time_format`, and `measure`, `unit` (default
/// dimensionless), `kind` (default interval), `source` and `tags` as defaults for columns the
/// file lacks.
#[derive(Debug)]
pub struct LongCsvDecoder<R> {
    reader: csv::Reader<BoundedLines<R>>,
    /// Lines dropped for their length, to report.
    long: LongLines,
    long_queue: std::collections::VecDeque<u64>,
    options: DecodeOptions,
    columns: Option<Columns>,
    record: csv::ByteRecord,
    fatal: Option<Rejection>,
    done: bool,
    measure: MeasureName,
    unit: Unit,
    kind: Kind,
    source: SourceName,
    meters: Cache<MeterId>,
    units: Cache<Unit>,
    measures: Cache<MeasureName>,
    kinds: Cache<Kind>,
    tag_bytes: Vec<u8>,
    tags: Tags,
    /// Each series' tags, from its first row (kept only when the file has tag columns): a row
    /// with other tags is refused, never merged into the series under the last row's labels.
    series_tags: std::collections::HashMap<(MeterId, MeasureName), Tags>,
    times: InstantParser,
}

impl<R: BufRead> LongCsvDecoder<R> {
    /// Starts decoding; nothing is read until the first item is asked for.
    pub fn new(mut reader: R, options: DecodeOptions) -> Self {
        let bom = skip_bom(&mut reader);
        let (reader, long) = BoundedLines::new(reader, MAX_LINE_BYTES);
        let csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(reader);
        let mut me = Self {
            reader: csv,
            long,
            long_queue: std::collections::VecDeque::new(),
            measure: options.measure_or(DEFAULT_MEASURE),
            unit: options.unit.clone().unwrap_or(Unit::Dimensionless),
            kind: options.kind.unwrap_or(Kind::Interval),
            source: options.source_or(DEFAULT_SOURCE),
            tags: options.tags.clone(),
            times: InstantParser::new(options.time_format, options.zone),
            options,
            columns: None,
            record: csv::ByteRecord::new(),
            fatal: None,
            done: false,
            meters: Cache::new(),
            units: Cache::new(),
            measures: Cache::new(),
            kinds: Cache::new(),
            tag_bytes: Vec::new(),
            series_tags: std::collections::HashMap::new(),
        };
        if let Err(e) = bom {
            me.set_fatal(1, format!("could not read the input: {e}"));
        }
        me
    }

    fn set_fatal(&mut self, line: u64, reason: String) {
        self.fatal = Some(Rejection::unreadable(
            &self.options.file,
            line,
            reason,
            &record_text(&self.record),
        ));
        self.done = true;
    }

    fn read_header(&mut self) {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(true) => {
                let names = self
                    .record
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).trim().to_owned())
                    .collect();
                match Columns::from_header(names) {
                    Ok(c) => self.columns = Some(c),
                    Err(reason) => self.set_fatal(1, reason),
                }
            }
            Ok(false) => self.done = true,
            Err(e) => self.set_fatal(1, format!("the header could not be read: {e}")),
        }
    }

    fn record_line(&self) -> u64 {
        super::record_line(&self.record, &self.reader)
    }

    fn reject(&self, col: Option<usize>, reason: impl std::fmt::Display) -> Rejection {
        let line = self.record_line();
        let field = col.and_then(|i| self.columns.as_ref().map(|c| c.names[i].as_str()));
        Rejection::decode(
            &self.options.file,
            line,
            field,
            reason,
            &record_text(&self.record),
        )
    }

    /// Turns the current record into a reading, or says which cell is wrong.
    fn decode_row(&mut self) -> Option<Decoded> {
        let cols = self.columns.as_ref()?;
        let rec = &self.record;
        if rec.len() != cols.names.len() {
            if rec.len() == 1 && rec[0].is_empty() {
                return None; // a blank line
            }
            let reason = format!(
                "the row has {} cells; the header has {}",
                rec.len(),
                cols.names.len()
            );
            return Some(Err(self.reject(None, reason)));
        }
        let (mc, tc, vc) = (cols.meter, cols.time, cols.value);
        let (uc, msc, kc) = (cols.unit, cols.measure, cols.kind);

        let meter = match self.meters.get(rec[mc].trim_ascii(), MeterId::new) {
            Ok(m) => m,
            Err(e) => return Some(Err(self.reject(Some(mc), e))),
        };
        let time = match self.times.parse_in_series(&rec[tc], &rec[mc]) {
            Ok(t) => t,
            Err(e) => return Some(Err(self.reject(Some(tc), e))),
        };
        let value_cell = rec[vc].trim_ascii();
        let value = match parse_number(value_cell) {
            Some(v) => v,
            None if value_cell.is_empty() => {
                return Some(Err(self.reject(Some(vc), "the value is empty")))
            }
            None => {
                let reason = format!("{:?} is not a number", String::from_utf8_lossy(value_cell));
                return Some(Err(self.reject(Some(vc), reason)));
            }
        };
        let unit = match uc.map(|i| rec[i].trim_ascii()) {
            Some(cell) if !cell.is_empty() => match self.units.get(cell, Unit::parse) {
                Ok(u) => u,
                Err(e) => return Some(Err(self.reject(uc, e))),
            },
            _ => self.unit.clone(),
        };
        let measure = match msc.map(|i| rec[i].trim_ascii()) {
            Some(cell) if !cell.is_empty() => match self.measures.get(cell, MeasureName::new) {
                Ok(m) => m,
                Err(e) => return Some(Err(self.reject(msc, e))),
            },
            _ => self.measure.clone(),
        };
        let kind = match kc.map(|i| rec[i].trim_ascii()) {
            Some(cell) if !cell.is_empty() => match self.kinds.get(cell, |s| s.parse::<Kind>()) {
                Ok(k) => k,
                Err(e) => return Some(Err(self.reject(kc, e))),
            },
            _ => self.kind,
        };
        if !cols.tags.is_empty() {
            if let Err((i, e)) = self.row_tags() {
                return Some(Err(self.reject(Some(i), e)));
            }
            let first = self
                .series_tags
                .entry((meter.clone(), measure.clone()))
                .or_insert_with(|| self.tags.clone());
            if *first != self.tags {
                let reason = format!(
                    "series {meter}/{measure} has tags {} in this file; this row has {}: a \
                     different tag is a different series (give it its own meter or measure)",
                    tags_text(first),
                    tags_text(&self.tags)
                );
                let col = self
                    .columns
                    .as_ref()
                    .and_then(|c| c.tags.first().map(|(i, _)| *i));
                return Some(Err(self.reject(col, reason)));
            }
        }
        let reading = Reading::new(meter, measure, value, unit, kind, time, self.source.clone());
        Some(match reading {
            Ok(r) => Ok(r.with_tags(self.tags.clone())),
            Err(e @ crate::reading::ReadingError::TimeOutOfRange(_)) => {
                Err(self.reject(Some(tc), e))
            }
            Err(e) => Err(self.reject(Some(vc), e)),
        })
    }

    /// Refreshes `self.tags` from the tag columns when their bytes changed since the last row.
    fn row_tags(&mut self) -> Result<(), (usize, String)> {
        let Some(cols) = &self.columns else {
            return Ok(());
        };
        let rec = &self.record;
        let same = {
            let mut pos = 0;
            cols.tags.iter().all(|(i, _)| {
                let cell = rec[*i].trim_ascii();
                let end = pos + cell.len() + 1;
                let ok = self.tag_bytes.get(pos..end - 1) == Some(cell)
                    && self.tag_bytes.get(end - 1) == Some(&0);
                pos = end;
                ok
            }) && pos == self.tag_bytes.len()
        };
        if same {
            return Ok(());
        }
        let mut tags = self.options.tags.clone();
        self.tag_bytes.clear();
        for (i, key) in &cols.tags {
            let cell = rec[*i].trim_ascii();
            self.tag_bytes.extend_from_slice(cell);
            self.tag_bytes.push(0);
            if !cell.is_empty() {
                let text = super::utf8_cell(cell).map_err(|e| (*i, e))?;
                tags = tags.with(key, text).map_err(|e| (*i, e.to_string()))?;
            }
        }
        self.tags = tags;
        Ok(())
    }
}

fn tags_text(tags: &Tags) -> String {
    let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

impl<R: BufRead + Send> super::Decoder for LongCsvDecoder<R> {
    fn line(&self) -> u64 {
        self.record_line()
    }
}

impl<R: BufRead> Iterator for LongCsvDecoder<R> {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        loop {
            self.long_queue.extend(self.long.take());
            if let Some(line) = self.long_queue.pop_front() {
                return Some(Err(super::lines::too_long(&self.options.file, line)));
            }
            if let Some(f) = self.fatal.take() {
                return Some(Err(f));
            }
            if self.done {
                return None;
            }
            if self.columns.is_none() {
                self.read_header();
                continue;
            }
            match self.reader.read_byte_record(&mut self.record) {
                Ok(true) => {
                    if let Some(item) = self.decode_row() {
                        return Some(item);
                    }
                }
                Ok(false) => self.done = true,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    self.set_fatal(line.max(1), format!("the CSV could not be read: {e}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::TimeFormat;
    use chrono_tz::Tz;

    fn decode_with(text: &str, opts: DecodeOptions) -> (Vec<Reading>, Vec<Rejection>) {
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for item in LongCsvDecoder::new(text.as_bytes(), opts) {
            match item {
                Ok(r) => ok.push(r),
                Err(e) => bad.push(e),
            }
        }
        (ok, bad)
    }

    fn decode(text: &str) -> (Vec<Reading>, Vec<Rejection>) {
        decode_with(text, DecodeOptions::new("l.csv"))
    }

    #[test]
    fn aliases_optional_columns_and_tags() {
        let text = "\u{feff}Meter ID,Timestamp,Reading,UOM,Measure,Kind,Location\r\n\
                    m1,2024-01-01T00:00:00Z,12.5,kWh,energy,interval,garage\r\n\
                    m1,1704067200,3,L,volume,cumulative,garage\r\n";
        let (ok, bad) = decode(text);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].meter().as_str(), "m1");
        assert_eq!(ok[0].unit(), &Unit::KilowattHour);
        assert_eq!(ok[0].measure().as_str(), "energy");
        assert_eq!(ok[1].kind(), Kind::Cumulative);
        assert_eq!(ok[1].time(), ok[0].time());
        assert_eq!(ok[1].tags().get("location"), Some("garage"));
    }

    #[test]
    fn local_times_use_the_zone_option() {
        let mut opts = DecodeOptions::new("l.csv");
        opts.zone = Tz::America__New_York;
        let (ok, _) = decode_with("meter,time,value\nm,2024-07-01 08:00,1\n", opts);
        assert_eq!(ok[0].time().to_rfc3339(), "2024-07-01T12:00:00+00:00");
    }

    #[test]
    fn forced_epoch_millis() {
        let mut opts = DecodeOptions::new("l.csv");
        opts.time_format = TimeFormat::EpochMillis;
        let (ok, bad) = decode_with("meter,ts,value\nm,1000,1\nm,2024-01-01,1\n", opts);
        assert_eq!(ok[0].time().timestamp_millis(), 1000);
        assert_eq!(bad[0].field.as_deref(), Some("ts"));
    }

    fn one_bad(line: &str) -> Rejection {
        let text = format!("meter,time,value,unit,kind\n{line}\n");
        let (ok, bad) = decode(&text);
        assert!(ok.is_empty());
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].line, 2);
        bad.into_iter().next().unwrap()
    }

    #[test]
    fn malformed_rows_name_field_and_reason() {
        let cases: [(&str, Option<&str>, &str); 13] = [
            (
                ",2024-01-01T00:00:00Z,1,L,gauge",
                Some("meter"),
                "meter id is empty",
            ),
            ("m,,1,L,gauge", Some("time"), "is not a time"),
            (
                "m,2024-01-01T25:00:00Z,1,L,gauge",
                Some("time"),
                "impossible",
            ),
            ("m,soon,1,L,gauge", Some("time"), "is not a time"),
            (
                "m,2024-01-01T00:00:00Z,,L,gauge",
                Some("value"),
                "the value is empty",
            ),
            (
                "m,2024-01-01T00:00:00Z,12a,L,gauge",
                Some("value"),
                "\"12a\" is not a number",
            ),
            (
                "m,2024-01-01T00:00:00Z,inf,L,gauge",
                Some("value"),
                "\"inf\" is not a number",
            ),
            (
                "m,2024-01-01T00:00:00Z,-3,L,cumulative",
                Some("value"),
                "cannot be",
            ),
            (
                "m,2024-01-01T00:00:00Z,1,bad unit,gauge",
                Some("unit"),
                "unit",
            ),
            (
                "m,2024-01-01T00:00:00Z,1,L,wobbly",
                Some("kind"),
                "kind \"wobbly\" is unknown",
            ),
            (
                "m,99999999999999999,1,L,gauge",
                Some("time"),
                "out of range",
            ),
            (
                "m,9999999999999,1,L,gauge",
                Some("time"),
                "outside 1970-01-01..2200-01-01",
            ),
            (
                "m,2024-01-01T00:00:00Z,1,L",
                None,
                "the row has 4 cells; the header has 5",
            ),
        ];
        for (line, field, reason) in cases {
            let e = one_bad(line);
            assert_eq!(e.field.as_deref(), field, "{line}");
            assert!(e.reason.contains(reason), "{line}: {}", e.reason);
            assert_eq!(e.raw, line);
        }
    }

    fn london(text: &str) -> (Vec<String>, Vec<Rejection>) {
        let mut opts = DecodeOptions::new("l.csv");
        opts.zone = Tz::Europe__London;
        let (ok, bad) = decode_with(text, opts);
        let times = ok
            .iter()
            .map(|r| format!("{} {}", r.meter(), r.time().format("%H:%M")))
            .collect();
        (times, bad)
    }

    #[test]
    fn a_repeated_local_hour_is_read_in_row_order_per_meter() {
        let (times, bad) =
            london("meter,time,value\nD,2024-10-27 01:30,16\nD,2024-10-27 01:30,32\n");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(times, ["D 00:30", "D 01:30"]);
        // Two meters interleaved, a row each half hour through the repeated hour.
        let text = "meter,time,value\n\
            A,2024-10-27 00:30,1\nB,2024-10-27 00:30,1\n\
            A,2024-10-27 01:00,2\nB,2024-10-27 01:00,2\nA,2024-10-27 01:30,3\nB,2024-10-27 01:30,3\n\
            A,2024-10-27 01:00,4\nB,2024-10-27 01:00,4\nA,2024-10-27 01:30,5\nB,2024-10-27 01:30,5\n\
            A,2024-10-27 02:00,6\n";
        let (times, bad) = london(text);
        assert!(bad.is_empty(), "{bad:?}");
        let a: Vec<&str> = times
            .iter()
            .filter(|t| t.starts_with('A'))
            .map(String::as_str)
            .collect();
        assert_eq!(
            a,
            ["A 23:30", "A 00:00", "A 00:30", "A 01:00", "A 01:30", "A 02:00"]
        );
        // Going back a second time cannot be placed: refused, naming the ambiguity.
        let (_, bad) = london("meter,time,value\nD,2024-10-27 01:30,1\nD,2024-10-27 01:00,2\nD,2024-10-27 01:45,3\nD,2024-10-27 01:15,4\n");
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 5);
        assert!(bad[0].reason.contains("occurs twice"), "{}", bad[0].reason);
        // A local time the clocks skip is still refused.
        let (_, bad) = london("meter,time,value\nD,2024-03-31 01:30,1\n");
        assert!(
            bad[0].reason.contains("does not exist"),
            "{}",
            bad[0].reason
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_and_an_encoding_reads_them() {
        let latin1: &[u8] = b"meter,time,value\nZ\xe4hler,2024-01-01T00:00:00Z,1\nZ\xf6hler,2024-01-01T00:00:00Z,2\n";
        let run = |options: DecodeOptions| {
            let (_, decoder) =
                crate::decode::open(latin1, Some(crate::decode::Format::LongCsv), options).unwrap();
            decoder.collect::<Vec<Decoded>>()
        };
        let items = run(DecodeOptions::new("l.csv"));
        assert_eq!(items.len(), 2);
        for (item, line) in items.iter().zip([2, 3]) {
            let e = item.as_ref().unwrap_err();
            assert_eq!((e.line, e.field.as_deref()), (line, Some("meter")));
            assert!(e.reason.contains("not UTF-8"), "{}", e.reason);
        }
        let mut options = DecodeOptions::new("l.csv");
        options.encoding = Some(crate::decode::encoding_named("latin1").unwrap());
        let meters: Vec<String> = run(options)
            .into_iter()
            .map(|r| r.unwrap().meter().to_string())
            .collect();
        assert_eq!(meters, ["Zähler", "Zöhler"]);
    }

    #[test]
    fn a_row_whose_tags_differ_from_its_series_is_refused_not_relabelled() {
        let (ok, bad) = decode(
            "meter,time,value,location\n\
             a,2024-01-01T00:00:00Z,1,flat\n\
             b,2024-01-01T00:00:00Z,1,garage\n\
             a,2024-01-01T01:00:00Z,2,garage\n\
             a,2024-01-01T02:00:00Z,3,flat\n",
        );
        let landed: Vec<(String, String)> = ok
            .iter()
            .map(|r| {
                (
                    r.meter().to_string(),
                    r.tags().get("location").unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            landed,
            [
                ("a".into(), "flat".into()),
                ("b".into(), "garage".into()),
                ("a".into(), "flat".into())
            ]
        );
        assert_eq!(bad.len(), 1);
        assert_eq!(
            (bad[0].line, bad[0].field.as_deref()),
            (4, Some("location"))
        );
        assert!(bad[0].reason.contains("location=flat"), "{}", bad[0].reason);
    }

    #[test]
    fn a_line_past_the_bound_is_refused_without_being_held_and_the_rest_lands() {
        let long = "9".repeat(MAX_LINE_BYTES + 10);
        let text = format!(
            "meter,time,value\nm,2024-01-01T00:00:00Z,1\nm,2024-01-01T01:00:00Z,{long}\nm,2024-01-01T02:00:00Z,3\n"
        );
        let (ok, bad) = decode(&text);
        assert_eq!(ok.iter().map(|r| r.value()).collect::<Vec<_>>(), [1.0, 3.0]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
        assert!(bad[0].reason.contains("longer than"), "{}", bad[0].reason);
    }

    #[test]
    fn rejections_name_the_row_after_blank_lines() {
        let (ok, bad) = decode(
            "meter,time,value\n\n\nB,2024-01-01T00:00:00Z,abc\n\nB,2024-01-01T01:00:00Z,1\nB,x,2\n",
        );
        assert_eq!(ok.len(), 1);
        let lines: Vec<u64> = bad.iter().map(|r| r.line).collect();
        assert_eq!(lines, [4, 7]);
    }

    #[test]
    fn a_header_without_required_columns_is_fatal() {
        let (ok, bad) = decode("sensor,when,value\ns,2024-01-01,1\n");
        assert!(ok.is_empty());
        assert_eq!(bad.len(), 1);
        assert!(bad[0].is_fatal());
        assert!(bad[0].reason.contains("lacks time"), "{}", bad[0].reason);
    }

    #[test]
    fn good_rows_after_bad_ones_land_and_caches_do_not_leak_values() {
        let text = "meter,time,value,unit\n\
                    a,2024-01-01T00:00:00Z,1,L\n\
                    b,2024-01-01T00:00:00Z,x,L\n\
                    b,2024-01-01T00:30:00Z,2,kWh\n\
                    a,2024-01-01T01:00:00Z,3,\n";
        let (ok, bad) = decode(text);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
        let got: Vec<(&str, f64, String)> = ok
            .iter()
            .map(|r| (r.meter().as_str(), r.value(), r.unit().to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", 1.0, "L".into()),
                ("b", 2.0, "kWh".into()),
                ("a", 3.0, "1".into())
            ]
        );
    }

    #[test]
    fn tag_cache_follows_changes() {
        // Different series, so each row's own tags hold (one series' may not change).
        let text = "meter,time,value,location\n\
                    a,2024-01-01T00:00:00Z,1,x\n\
                    a,2024-01-01T00:01:00Z,1,x\n\
                    b,2024-01-01T00:02:00Z,1,y\n\
                    c,2024-01-01T00:03:00Z,1,\n";
        let (ok, bad) = decode(text);
        assert!(bad.is_empty(), "{bad:?}");
        let locs: Vec<Option<&str>> = ok.iter().map(|r| r.tags().get("location")).collect();
        assert_eq!(locs, vec![Some("x"), Some("x"), Some("y"), None]);
    }
}
