//! The wide half-hourly CSV of seed 004: `Meter,Date,0:00,0:30,...,23:30`, one row per meter and
//! day, one interval reading per non-empty slot.
//!
//! Differences from the seed, on purpose: decimal amounts are accepted (the seed dropped "1.5"
//! silently); a bad cell is rejected with its column and the other cells of the row still land;
//! a row with the wrong number of cells is rejected whole, since its slots cannot be aligned.
//! Slot times are local times in the options' zone (UTC by default); each reading is stamped
//! with the start of its slot, so a day's readings roll up into that day.

use std::collections::VecDeque;
use std::io::BufRead;

use chrono::{NaiveDate, NaiveTime};

use super::lines::{BoundedLines, LongLines, MAX_LINE_BYTES};
use super::{parse_number, record_text, skip_bom, DecodeOptions, Decoded, Rejection};
use crate::reading::{Kind, MeasureName, MeterId, Reading, SourceName, Unit};
use crate::time::{local_to_utc, parse_date};

/// The default measure of the readings.
pub const DEFAULT_MEASURE: &str = "consumption";
/// The default source name.
pub const DEFAULT_SOURCE: &str = "csv";

/// Parses a slot header such as `0:00`, `7:30` or `23:30`.
fn slot_time(h: &str) -> Option<NaiveTime> {
    let (hh, mm) = h.trim().split_once(':')?;
    if hh.is_empty() || hh.len() > 2 || mm.len() != 2 {
        return None;
    }
    let hour: u32 = hh.parse().ok()?;
    let minute: u32 = mm.parse().ok()?;
    NaiveTime::from_hms_opt(hour, minute, 0)
}

/// Whether a first line is a wide-layout header: `Meter` and `Date` columns and slot columns.
pub fn looks_like_header(line: &str) -> bool {
    let cols: Vec<&str> = line
        .split(',')
        .map(|c| c.trim().trim_matches('"'))
        .collect();
    let has = |name: &str| cols.iter().any(|c| c.eq_ignore_ascii_case(name));
    has("meter") && has("date") && cols.iter().any(|c| slot_time(c).is_some())
}

#[derive(Debug)]
struct Layout {
    width: usize,
    meter: usize,
    date: usize,
    slots: Vec<(usize, NaiveTime, String)>,
}

/// Decodes the wide layout. Reads `zone`, `unit` (default dimensionless: the format states
/// none), `measure`, `kind` (default interval), `source` and `tags` from the options.
#[derive(Debug)]
pub struct WideCsvDecoder<R> {
    reader: csv::Reader<BoundedLines<R>>,
    /// Lines dropped for their length, to report.
    long: LongLines,
    options: DecodeOptions,
    measure: MeasureName,
    unit: Unit,
    kind: Kind,
    source: SourceName,
    layout: Option<Layout>,
    record: csv::ByteRecord,
    pending: VecDeque<Decoded>,
    done: bool,
}

impl<R: BufRead> WideCsvDecoder<R> {
    /// Starts decoding; nothing is read until the first item is asked for.
    pub fn new(mut reader: R, options: DecodeOptions) -> Self {
        let bom = skip_bom(&mut reader);
        let (reader, long) = BoundedLines::new(reader, MAX_LINE_BYTES);
        let csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(reader);
        let mut me = Self {
            reader: csv,
            long,
            measure: options.measure_or(DEFAULT_MEASURE),
            unit: options.unit.clone().unwrap_or(Unit::Dimensionless),
            kind: options.kind.unwrap_or(Kind::Interval),
            source: options.source_or(DEFAULT_SOURCE),
            options,
            layout: None,
            record: csv::ByteRecord::new(),
            pending: VecDeque::new(),
            done: false,
        };
        if let Err(e) = bom {
            me.fatal(1, format!("could not read the input: {e}"));
        }
        me
    }

    fn fatal(&mut self, line: u64, reason: String) {
        let raw = record_text(&self.record);
        self.pending.push_back(Err(Rejection::unreadable(
            &self.options.file,
            line,
            reason,
            &raw,
        )));
        self.done = true;
    }

    fn read_header(&mut self) -> bool {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(true) => {}
            Ok(false) => {
                self.done = true;
                return false;
            }
            Err(e) => {
                self.fatal(1, format!("the header could not be read: {e}"));
                return false;
            }
        }
        let cols: Vec<String> = self
            .record
            .iter()
            .map(|c| String::from_utf8_lossy(c).trim().to_owned())
            .collect();
        let find = |name: &str| cols.iter().position(|c| c.eq_ignore_ascii_case(name));
        let (Some(meter), Some(date)) = (find("meter"), find("date")) else {
            self.fatal(
                1,
                format!(
                    "the header needs Meter and Date columns; it has {}",
                    cols.join(",")
                ),
            );
            return false;
        };
        let mut slots: Vec<(usize, NaiveTime, String)> = Vec::new();
        for (i, c) in cols.iter().enumerate() {
            if let Some(t) = slot_time(c) {
                if slots.iter().any(|(_, seen, _)| *seen == t) {
                    self.fatal(1, format!("the header repeats the slot {c}"));
                    return false;
                }
                slots.push((i, t, c.clone()));
            }
        }
        if slots.is_empty() {
            self.fatal(1, "the header has no time-slot columns such as 0:00".into());
            return false;
        }
        self.layout = Some(Layout {
            width: cols.len(),
            meter,
            date,
            slots,
        });
        true
    }

    fn decode_row(&mut self) {
        let Some(layout) = &self.layout else { return };
        let file = &self.options.file;
        let line = super::record_line(&self.record, &self.reader);
        let record = &self.record;
        let reject = |field: Option<&str>, reason: String| {
            Err(Rejection::decode(
                file,
                line,
                field,
                reason,
                &record_text(record),
            ))
        };
        if record.len() != layout.width {
            if record.len() == 1 && record[0].is_empty() {
                return; // a blank line
            }
            self.pending.push_back(reject(
                None,
                format!(
                    "the row has {} cells; the header has {}",
                    record.len(),
                    layout.width
                ),
            ));
            return;
        }
        let meter_text = match super::utf8_cell(&record[layout.meter]) {
            Ok(text) => text,
            Err(reason) => {
                self.pending.push_back(reject(Some("Meter"), reason));
                return;
            }
        };
        let meter = match MeterId::new(meter_text.trim()) {
            Ok(m) => m,
            Err(e) => {
                self.pending.push_back(reject(Some("Meter"), e.to_string()));
                return;
            }
        };
        let date_text = String::from_utf8_lossy(&record[layout.date]);
        let date: NaiveDate = match parse_date(&date_text) {
            Ok(d) => d,
            Err(e) => {
                self.pending.push_back(reject(Some("Date"), e.to_string()));
                return;
            }
        };
        for (i, slot, label) in &layout.slots {
            let cell = record[*i].trim_ascii();
            if cell.is_empty() {
                continue;
            }
            let out = parse_number(cell)
                .ok_or_else(|| format!("{:?} is not a number", String::from_utf8_lossy(cell)))
                .and_then(|v| {
                    if v < 0.0 {
                        Err(format!("consumption {v} is negative"))
                    } else {
                        Ok(v)
                    }
                })
                .and_then(|v| {
                    let t = local_to_utc(date.and_time(*slot), self.options.zone)
                        .map_err(|e| e.to_string())?;
                    Reading::new(
                        meter.clone(),
                        self.measure.clone(),
                        v,
                        self.unit.clone(),
                        self.kind,
                        t,
                        self.source.clone(),
                    )
                    .map(|r| r.with_tags(self.options.tags.clone()))
                    .map_err(|e| e.to_string())
                });
            self.pending.push_back(match out {
                Ok(r) => Ok(r),
                Err(reason) => reject(Some(label), reason),
            });
        }
    }
}

impl<R: BufRead + Send> super::Decoder for WideCsvDecoder<R> {
    fn line(&self) -> u64 {
        super::record_line(&self.record, &self.reader)
    }
}

impl<R: BufRead> Iterator for WideCsvDecoder<R> {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        loop {
            for line in self.long.take() {
                let rejection = super::lines::too_long(&self.options.file, line);
                self.pending.push_back(Err(rejection));
            }
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            if self.layout.is_none() {
                if !self.read_header() {
                    continue;
                }
                continue;
            }
            match self.reader.read_byte_record(&mut self.record) {
                Ok(true) => self.decode_row(),
                Ok(false) => self.done = true,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    // A malformed record (bad UTF-8 cannot happen with byte records; this is an
                    // I/O error or an unterminated quote) ends the file: nothing after it can be
                    // trusted to be aligned.
                    self.fatal(line.max(1), format!("the CSV could not be read: {e}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    fn header() -> String {
        let mut h = String::from("Meter,Date");
        for i in 0..48 {
            h.push_str(&format!(",{}:{:02}", i / 2, (i % 2) * 30));
        }
        h
    }

    fn row(meter: &str, date: &str, cells: &[&str]) -> String {
        let mut r = format!("{meter},{date}");
        for c in cells {
            r.push(',');
            r.push_str(c);
        }
        r
    }

    fn decode(text: &str) -> (Vec<Reading>, Vec<Rejection>) {
        let d = WideCsvDecoder::new(text.as_bytes(), DecodeOptions::new("t.csv"));
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for item in d {
            match item {
                Ok(r) => ok.push(r),
                Err(e) => bad.push(e),
            }
        }
        (ok, bad)
    }

    #[test]
    fn a_full_row_gives_48_readings_that_sum_to_the_row() {
        let cells: Vec<String> = (0..48).map(|i| (i % 7).to_string()).collect();
        let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
        let text = format!(
            "{}\r\n{}\r\n",
            header(),
            row("EE00027", "2019-01-01", &cells)
        );
        let (ok, bad) = decode(&text);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok.len(), 48);
        let sum: f64 = ok.iter().map(Reading::value).sum();
        assert_eq!(sum, (0..48).map(|i| (i % 7) as f64).sum::<f64>());
        assert_eq!(ok[0].time().to_rfc3339(), "2019-01-01T00:00:00+00:00");
        assert_eq!(ok[47].time().to_rfc3339(), "2019-01-01T23:30:00+00:00");
        assert_eq!(ok[0].kind(), Kind::Interval);
    }

    #[test]
    fn empty_slots_are_skipped_and_bom_is_tolerated() {
        let mut cells = vec![""; 48];
        cells[3] = "1.5";
        let text = format!("\u{feff}{}\n{}\n", header(), row("m", "2019-01-02", &cells));
        let (ok, bad) = decode(&text);
        assert!(bad.is_empty());
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].value(), 1.5);
    }

    fn one_bad(line: &str) -> Rejection {
        let text = format!("{}\n{}\n", header(), line);
        let (_, bad) = decode(&text);
        assert_eq!(bad.len(), 1, "{bad:?}");
        bad.into_iter().next().unwrap()
    }

    #[test]
    fn malformed_rows_name_line_field_and_reason() {
        let full = vec!["1"; 48];
        let mut cells = full.clone();
        cells[2] = "abc";
        let e = one_bad(&row("m", "2019-01-01", &cells));
        assert_eq!((e.line, e.field.as_deref()), (2, Some("1:00")));
        assert!(e.reason.contains("\"abc\" is not a number"), "{}", e.reason);

        cells[2] = "-4";
        let e = one_bad(&row("m", "2019-01-01", &cells));
        assert_eq!(e.field.as_deref(), Some("1:00"));
        assert!(e.reason.contains("negative"));

        cells[2] = "NaN";
        let e = one_bad(&row("m", "2019-01-01", &cells));
        assert!(e.reason.contains("not a number"));

        let e = one_bad(&row("m", "01-01-2019", &full));
        assert_eq!((e.line, e.field.as_deref()), (2, Some("Date")));
        assert!(e.reason.contains("yyyy-MM-dd"));

        let e = one_bad(&row("m", "2019-02-30", &full));
        assert_eq!(e.field.as_deref(), Some("Date"));

        let e = one_bad(&row("", "2019-01-01", &full));
        assert_eq!(e.field.as_deref(), Some("Meter"));
        assert!(e.reason.contains("empty"));

        let e = one_bad(&row("m", "2019-01-01", &full[..40]));
        assert_eq!(e.field, None);
        assert!(
            e.reason.contains("42 cells; the header has 50"),
            "{}",
            e.reason
        );
        assert!(e.raw.starts_with("m,2019-01-01,1,1"));
    }

    #[test]
    fn good_rows_around_bad_ones_still_land() {
        let full = vec!["2"; 48];
        let text = format!(
            "{}\n{}\n{}\n{}\n",
            header(),
            row("a", "2019-01-01", &full),
            row("b", "not-a-date", &full),
            row("c", "2019-01-01", &full)
        );
        let (ok, bad) = decode(&text);
        assert_eq!(ok.len(), 96);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
    }

    #[test]
    fn unusable_headers_are_fatal_and_say_why() {
        let (ok, bad) = decode("Meter,Day,0:00\nm,2019-01-01,1\n");
        assert!(ok.is_empty());
        assert_eq!(bad.len(), 1);
        assert!(bad[0].is_fatal());
        assert!(bad[0].reason.contains("Meter and Date"));

        let (_, bad) = decode("Meter,Date,Total\nm,2019-01-01,1\n");
        assert!(bad[0].reason.contains("no time-slot columns"));

        let (_, bad) = decode("Meter,Date,0:00,0:00\n");
        assert!(bad[0].reason.contains("repeats the slot 0:00"));
    }

    #[test]
    fn an_unterminated_quote_ends_the_file_with_its_line() {
        let full = vec!["1"; 48];
        let text = format!("{}\n{}\n\"m,2019", header(), row("a", "2019-01-01", &full));
        let (ok, bad) = decode(&text);
        assert_eq!(ok.len(), 48);
        // The csv crate reads an unterminated quote to the end of input as one field.
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
    }

    #[test]
    fn slots_in_a_dst_gap_are_rejected_in_that_zone() {
        let mut cells = vec![""; 48];
        cells[2] = "1"; // 01:00, skipped in London on 2024-03-31
        cells[4] = "1"; // 02:00, exists
        let text = format!("{}\n{}\n", header(), row("m", "2024-03-31", &cells));
        let mut opts = DecodeOptions::new("t.csv");
        opts.zone = Tz::Europe__London;
        let items: Vec<Decoded> = WideCsvDecoder::new(text.as_bytes(), opts).collect();
        assert_eq!(items.len(), 2);
        let e = items[0].as_ref().unwrap_err();
        assert_eq!(e.field.as_deref(), Some("1:00"));
        assert!(e.reason.contains("does not exist"));
        assert!(items[1].is_ok());
    }
}
