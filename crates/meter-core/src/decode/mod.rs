//! Streaming decoders for every input format of the seed systems.
//!
//! Each decoder reads from any [`BufRead`], keeps one record in memory at a time, and yields
//! [`Decoded`] items: a valid [`Reading`], or a [`Rejection`] that says where (file, line,
//! field), why, and what the original text was. A bad record never stops the good ones after it;
//! only a header that makes the whole file unreadable ends a decoder early (after saying so).
//!
//! | format | module | source |
//! |---|---|---|
//! | wide half-hourly CSV (`Meter,Date,0:00,...,23:30`) | [`wide_csv`] | seed 004 |
//! | long CSV, one reading per row | [`long_csv`] | utility exports |
//! | Pi logger JSON (`timestamp`, `celcius`, `fahrenheit`) | [`pi_json`] | seed 001 |
//! | mbed Connector notifications | [`mbed`] | seed 002 |
//! | SST Cloud counter lists | [`sst`] | seed 000 |
//! | InfluxDB line protocol | [`line_protocol`] | Telegraf, InfluxDB clients, MQTT bridges |
//! | MQTT messages (numbers, JSON, mapped JSON, line protocol) | [`mqtt`] | meter readers publishing to a broker |

use std::fmt;
use std::io::{BufRead, Read};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::choice::{pick, UnknownName};
pub use crate::ingest::{Decoder, Rejection};
use crate::reading::{Kind, MeasureName, MeterId, Reading, SourceName, Tags, Unit};
use crate::time::TimeFormat;
pub use encoding::{encoding_named, Utf8Reader};

pub mod encoding;
pub mod line_protocol;
pub mod lines;
pub mod long_csv;
pub mod mbed;
pub mod mqtt;
pub mod pi_json;
pub mod sst;
pub mod wide_csv;

/// The most bytes of a rejected record's original text that are kept.
pub const MAX_RAW: usize = 1024;

/// The largest JSON document (mbed body, SST response, one Pi object) read into memory.
pub const MAX_JSON_BYTES: u64 = 8 * 1024 * 1024;

/// One decoder output.
pub type Decoded = Result<Reading, Rejection>;

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Settings shared by the decoders. Each decoder documents which it reads.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// The name shown in rejections (a path or an object key).
    pub file: Arc<str>,
    /// The zone of times written without an offset.
    pub zone: Tz,
    /// How time columns are written (long CSV).
    pub time_format: TimeFormat,
    /// The meter of every reading, for formats that do not name it (Pi JSON).
    pub meter: Option<MeterId>,
    /// The measure, overriding the format's default.
    pub measure: Option<MeasureName>,
    /// The unit, overriding the format's default.
    pub unit: Option<Unit>,
    /// The kind, overriding the format's default.
    pub kind: Option<Kind>,
    /// The source name, overriding the format's default.
    pub source: Option<SourceName>,
    /// Tags added to every reading.
    pub tags: Tags,
    /// When the data was received: the time of readings whose format carries none (SST, mbed).
    pub received_at: DateTime<Utc>,
    /// The text encoding, when not UTF-8 (`--encoding`, an object's `Content-Type` charset).
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// The unit of line-protocol timestamps.
    pub precision: line_protocol::Precision,
    /// The line-protocol tag that names the meter, when not `meter`.
    pub meter_tag: Option<String>,
    /// The series already stored, for formats that may not say a unit or kind (line protocol,
    /// MQTT messages).
    pub known: Option<KnownSeries>,
}

/// The unit and kind of series already stored, asked by decoders of formats that may leave
/// them out: a new reading then joins its series instead of being refused for a unit that
/// conflicts with it.
pub trait SeriesLookup: Send + Sync {
    /// The unit and kind of a stored series, if there is one.
    fn series(&self, meter: &MeterId, measure: &MeasureName) -> Option<(Unit, Kind)>;
}

/// A shared [`SeriesLookup`].
#[derive(Clone)]
pub struct KnownSeries(pub Arc<dyn SeriesLookup>);

impl KnownSeries {
    /// The unit and kind of a stored series, if there is one.
    pub fn series(&self, meter: &MeterId, measure: &MeasureName) -> Option<(Unit, Kind)> {
        self.0.series(meter, measure)
    }
}

/// A [`SeriesLookup`] that remembers the series it found: once stored, a series keeps its unit
/// and kind, so a stream of messages asks the store once per series rather than once per
/// message. Series not found are asked again (they may be stored by then).
pub struct CachedSeries {
    inner: KnownSeries,
    found: std::sync::Mutex<std::collections::HashMap<(MeterId, MeasureName), (Unit, Kind)>>,
}

impl fmt::Debug for CachedSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CachedSeries")
    }
}

impl CachedSeries {
    /// The most series remembered; past it the memory starts again empty.
    pub const MAX_REMEMBERED: usize = 100_000;

    /// Remembers what `inner` finds.
    pub fn new(inner: KnownSeries) -> Self {
        Self {
            inner,
            found: std::sync::Mutex::default(),
        }
    }
}

impl SeriesLookup for CachedSeries {
    fn series(&self, meter: &MeterId, measure: &MeasureName) -> Option<(Unit, Kind)> {
        let key = (meter.clone(), measure.clone());
        if let Some(hit) = self
            .found
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return Some(hit.clone());
        }
        let found = self.inner.series(meter, measure)?;
        let mut memory = self
            .found
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if memory.len() >= Self::MAX_REMEMBERED {
            memory.clear();
        }
        memory.insert(key, found.clone());
        Some(found)
    }
}

/// Series looked up ahead of decoding: a cloud store's catalogue answers asynchronously, and a
/// decoder asks synchronously, so the caller finds the series of the meters a body names
/// ([`crate::ports::find_series`]) and decodes with the answers.
#[derive(Debug, Default, Clone)]
pub struct FoundSeries(std::collections::HashMap<(MeterId, MeasureName), (Unit, Kind)>);

impl FoundSeries {
    /// Records a stored series.
    pub fn insert(&mut self, meter: MeterId, measure: MeasureName, unit: Unit, kind: Kind) {
        self.0.insert((meter, measure), (unit, kind));
    }

    /// How many series are known.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// As the decoders' lookup.
    pub fn into_known(self) -> KnownSeries {
        KnownSeries(Arc::new(self))
    }
}

impl SeriesLookup for FoundSeries {
    fn series(&self, meter: &MeterId, measure: &MeasureName) -> Option<(Unit, Kind)> {
        self.0.get(&(meter.clone(), measure.clone())).cloned()
    }
}

impl fmt::Debug for KnownSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KnownSeries")
    }
}

impl DecodeOptions {
    /// Defaults for a file: UTC, auto-detected times, the formats' own defaults, received now.
    pub fn new(file: &str) -> Self {
        Self {
            file: Arc::from(file),
            zone: Tz::UTC,
            time_format: TimeFormat::Auto,
            meter: None,
            measure: None,
            unit: None,
            kind: None,
            source: None,
            tags: Tags::empty(),
            received_at: Utc::now(),
            encoding: None,
            precision: line_protocol::Precision::default(),
            meter_tag: None,
            known: None,
        }
    }

    pub(crate) fn measure_or(&self, default: &str) -> MeasureName {
        self.measure.clone().unwrap_or_else(|| {
            MeasureName::new(default).unwrap_or_else(|_| unreachable!("default measure is valid"))
        })
    }

    pub(crate) fn source_or(&self, default: &str) -> SourceName {
        self.source.clone().unwrap_or_else(|| {
            SourceName::new(default).unwrap_or_else(|_| unreachable!("default source is valid"))
        })
    }
}

/// The input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Seed 004's `Meter,Date,0:00,...,23:30`.
    WideCsv,
    /// One reading per row.
    LongCsv,
    /// Seed 001's Pi logger objects.
    PiJson,
    /// Seed 002's mbed Connector notification body.
    Mbed,
    /// Seed 000's SST Cloud counter list.
    SstCounters,
    /// InfluxDB line protocol.
    LineProtocol,
}

impl Format {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WideCsv => "wide-csv",
            Self::LongCsv => "long-csv",
            Self::PiJson => "pi-json",
            Self::Mbed => "mbed",
            Self::SstCounters => "sst",
            Self::LineProtocol => "line-protocol",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let aliases = [
            ("wide-csv", Self::WideCsv),
            ("wide", Self::WideCsv),
            ("long-csv", Self::LongCsv),
            ("long", Self::LongCsv),
            ("csv", Self::LongCsv),
            ("pi-json", Self::PiJson),
            ("pi", Self::PiJson),
            ("mbed", Self::Mbed),
            ("sst", Self::SstCounters),
            ("sst-counters", Self::SstCounters),
            ("line-protocol", Self::LineProtocol),
            ("lp", Self::LineProtocol),
            ("influx", Self::LineProtocol),
        ];
        let expected = "wide-csv, long-csv, pi-json, mbed, sst or line-protocol";
        pick(s, &aliases, "format", expected)
    }
}

/// Why an input's format could not be told.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// Nothing to read, and the name has no telling extension.
    #[error("{name}: empty, and its name does not tell the format")]
    Empty {
        /// The input's name.
        name: String,
    },
    /// JSON of a shape no decoder reads.
    #[error("{name}: JSON, but not a Pi logger object, an mbed notification body or an SST counter list")]
    UnknownJson {
        /// The input's name.
        name: String,
    },
    /// The first bytes could not be read.
    #[error("cannot read {name}: {source}")]
    Read {
        /// The input's name.
        name: String,
        /// The reader's error.
        #[source]
        source: std::io::Error,
    },
}

/// Recognises a format from the first bytes of the content (at least the first line), using
/// the name's extension only when the content says nothing (an empty file).
pub fn detect(name: &str, head: &[u8]) -> Result<Format, DetectError> {
    let head = strip_bom(head);
    let text = String::from_utf8_lossy(&head[..head.len().min(64 * 1024)]);
    let trimmed = text.trim_start();
    let lower_name = name.to_ascii_lowercase();
    if lower_name.ends_with(".lp") || lower_name.ends_with(".line") {
        return Ok(Format::LineProtocol);
    }
    if trimmed.is_empty() {
        return if lower_name.ends_with(".csv") {
            Ok(Format::LongCsv)
        } else if lower_name.ends_with(".json") || lower_name.ends_with(".jsonl") {
            Ok(Format::PiJson)
        } else {
            Err(DetectError::Empty {
                name: name.to_owned(),
            })
        };
    }
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if text.contains("\"notifications\"") {
            return Ok(Format::Mbed);
        }
        if text.contains("\"for_hot_water\"")
            || (trimmed.starts_with('[') && text.contains("\"step\""))
        {
            return Ok(Format::SstCounters);
        }
        if ["\"celcius\"", "\"celsius\"", "\"fahrenheit\""]
            .iter()
            .any(|k| text.contains(k))
        {
            return Ok(Format::PiJson);
        }
        return Err(DetectError::UnknownJson {
            name: name.to_owned(),
        });
    }
    let first_line = trimmed.lines().next().unwrap_or("");
    let first_point = trimmed
        .lines()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .unwrap_or("");
    if matches!(line_protocol::parse_line(first_point), Ok(Some(_))) {
        return Ok(Format::LineProtocol);
    }
    if wide_csv::looks_like_header(first_line) {
        Ok(Format::WideCsv)
    } else {
        Ok(Format::LongCsv)
    }
}

/// The decoder for an input: of `format` when the caller forces one, else of the format its
/// first bytes show. `options.file` names the input in rejections and errors.
pub fn open<'a, R: BufRead + Send + 'a>(
    reader: R,
    format: Option<Format>,
    options: DecodeOptions,
) -> Result<(Format, Box<dyn Decoder + 'a>), DetectError> {
    match options.encoding.filter(|e| *e != encoding_rs::UTF_8) {
        Some(encoding) => open_utf8(Utf8Reader::new(reader, encoding), format, options),
        None => open_utf8(reader, format, options),
    }
}

fn open_utf8<'a, R: BufRead + Send + 'a>(
    mut reader: R,
    format: Option<Format>,
    options: DecodeOptions,
) -> Result<(Format, Box<dyn Decoder + 'a>), DetectError> {
    let format = match format {
        Some(f) => f,
        None => {
            let head = reader.fill_buf().map_err(|source| DetectError::Read {
                name: options.file.to_string(),
                source,
            })?;
            detect(&options.file, head)?
        }
    };
    Ok((format, decoder(format, reader, options)))
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

/// Reads past a UTF-8 byte-order mark, if the input starts with one.
pub(crate) fn skip_bom<R: BufRead>(reader: &mut R) -> std::io::Result<()> {
    let buf = reader.fill_buf()?;
    if buf.starts_with(b"\xEF\xBB\xBF") {
        reader.consume(3);
    }
    Ok(())
}

/// A decoder of any format, for callers that choose the format at run time.
pub fn decoder<'a, R: BufRead + Send + 'a>(
    format: Format,
    reader: R,
    options: DecodeOptions,
) -> Box<dyn Decoder + 'a> {
    match format {
        Format::WideCsv => Box::new(wide_csv::WideCsvDecoder::new(reader, options)),
        Format::LongCsv => Box::new(long_csv::LongCsvDecoder::new(reader, options)),
        Format::PiJson => Box::new(pi_json::PiJsonDecoder::new(reader, options)),
        Format::Mbed => Box::new(mbed::MbedDecoder::new(reader, options)),
        Format::SstCounters => Box::new(sst::SstCountersDecoder::new(reader, options)),
        Format::LineProtocol => Box::new(line_protocol::LineProtocolDecoder::new(reader, options)),
    }
}

/// A cell's text, or why it is not text: bytes that are not UTF-8 are refused, never replaced
/// (two meters spelt in Latin-1 would otherwise become one).
pub(crate) fn utf8_cell(cell: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(cell).map_err(|e| {
        let at = e.valid_up_to();
        format!(
            "the text is not UTF-8 (byte 0x{:02X} at position {}); name the file's encoding \
             (--encoding latin1, or a charset in the object's Content-Type)",
            cell[at],
            at + 1
        )
    })
}

/// The line a CSV record is on. The csv reader places a record at the first blank line before
/// it, so the line is also counted back from where the record ended (less the line breaks inside
/// its quoted fields), and the later of the two is the record's.
pub(crate) fn record_line<R: Read>(record: &csv::ByteRecord, reader: &csv::Reader<R>) -> u64 {
    let start = record.position().map_or(0, |p| p.line());
    let inside: usize = record
        .iter()
        .map(|field| field.iter().filter(|b| **b == b'\n').count())
        .sum();
    let end = reader.position().line();
    start.max(end.saturating_sub(1 + inside as u64))
}

/// Reads a whole JSON document of at most [`MAX_JSON_BYTES`], so a hostile body cannot exhaust
/// memory. Errors are worded for a rejection.
pub(crate) fn read_bounded_json<R: Read>(reader: R) -> Result<serde_json::Value, String> {
    let mut limited = reader.take(MAX_JSON_BYTES + 1);
    let mut buf = Vec::new();
    limited
        .read_to_end(&mut buf)
        .map_err(|e| format!("could not read the input: {e}"))?;
    if buf.len() as u64 > MAX_JSON_BYTES {
        return Err(format!(
            "the document is larger than {} MiB",
            MAX_JSON_BYTES / (1024 * 1024)
        ));
    }
    serde_json::from_slice(strip_bom(&buf)).map_err(|e| format!("invalid JSON: {e}"))
}

/// Parses a number cell. Plain decimals of up to 15 significant digits (nearly every meter
/// value) take an exact fast path: the digits form an integer below 2^53 and the scale is a power
/// of ten up to 10^22, both exact in an `f64`, so one division rounds correctly. Anything else
/// (exponents, long mantissas, `inf`) goes through the standard parser; only finite results count.
pub(crate) fn parse_number(cell: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (negative, digits) = match cell.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, cell),
    };
    let mut mantissa: u64 = 0;
    let mut count = 0usize;
    let mut scale: Option<usize> = None;
    let mut fast = !digits.is_empty() && digits.len() <= 16;
    if fast {
        for (i, &c) in digits.iter().enumerate() {
            match c {
                b'0'..=b'9' => {
                    mantissa = mantissa * 10 + u64::from(c - b'0');
                    count += 1;
                }
                b'.' if scale.is_none() => scale = Some(digits.len() - i - 1),
                _ => {
                    fast = false;
                    break;
                }
            }
        }
    }
    if fast && count > 0 && count <= 15 {
        let v = mantissa as f64 / POW10[scale.unwrap_or(0)];
        return Some(if negative { -v } else { v });
    }
    std::str::from_utf8(cell)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

/// What [`read_line_bounded`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineRead {
    /// The end of the input.
    Eof,
    /// A line (with its terminator, if any) was appended to the buffer.
    Line,
    /// The line was longer than the limit; it was skipped up to its end.
    TooLong,
}

/// Reads one line of at most `max` bytes into `buf`, skipping the rest of a longer line without
/// holding it, so one huge line cannot exhaust memory.
pub(crate) fn read_line_bounded<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    let start = buf.len();
    let n = reader.by_ref().take(max as u64).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(LineRead::Eof);
    }
    if buf.last() == Some(&b'\n') || n < max {
        return Ok(LineRead::Line);
    }
    buf.truncate(start);
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(LineRead::TooLong);
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(LineRead::TooLong);
            }
            None => {
                let len = chunk.len();
                reader.consume(len);
            }
        }
    }
}

/// Writes CSV fields back as one line, for a rejection's original text.
pub(crate) fn record_text(record: &csv::ByteRecord) -> String {
    let mut out = Vec::with_capacity(record.as_slice().len() + record.len());
    {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(&mut out);
        // Writing to a Vec cannot fail.
        let _ = w.write_byte_record(record);
        let _ = w.flush();
    }
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_every_format_from_content() {
        let cases: [(&str, &str, Format); 7] = [
            (
                "a.csv",
                "Meter,Date,0:00,0:30\nEE1,2024-01-01,1,2\n",
                Format::WideCsv,
            ),
            ("a.txt", "\u{feff}Meter,Date,0:00,0:30\n", Format::WideCsv),
            (
                "a.csv",
                "meter,time,value\nm,2024-01-01T00:00:00Z,1\n",
                Format::LongCsv,
            ),
            (
                "x.json",
                "{\"timestamp\": 1, \"celcius\": 2, \"fahrenheit\": 3}\n",
                Format::PiJson,
            ),
            ("b.json", "{\"notifications\":[]}", Format::Mbed),
            (
                "c.json",
                "[{\"id\":1,\"for_hot_water\":true,\"value\":5}]",
                Format::SstCounters,
            ),
            ("d.csv", "", Format::LongCsv),
        ];
        for (name, head, want) in cases {
            assert_eq!(
                detect(name, head.as_bytes()).unwrap(),
                want,
                "{name}: {head:?}"
            );
        }
        assert!(detect("e.json", b"{\"foo\": 1}").is_err());
        assert!(detect("e.bin", b"").is_err());
    }

    #[test]
    fn numbers_parse_exactly_like_the_standard_parser() {
        let cases = [
            "0",
            "1",
            "-1",
            "+2.5",
            "86.951",
            "0.1",
            "0.3",
            "123456789012345",
            "1234567890.12345",
            "1e3",
            "-0.000001",
            ".5",
            "5.",
            "1.7976931348623157e308",
            "12345678901234567890",
            "0.30000000000000004",
            "9007199254740993",
        ];
        for c in cases {
            assert_eq!(parse_number(c.as_bytes()), c.parse::<f64>().ok(), "{c}");
        }
        for bad in [
            "", "-", ".", "1.2.3", "abc", "1,5", "inf", "NaN", "--1", "1e999",
        ] {
            assert_eq!(parse_number(bad.as_bytes()), None, "{bad:?}");
        }
        // Every 3-decimal value the benchmark generator writes agrees with the standard parser.
        for i in (0..100_000u32).step_by(7) {
            let text = format!("{}.{:03}", i / 1000, i % 1000);
            assert_eq!(
                parse_number(text.as_bytes()),
                text.parse::<f64>().ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn raw_text_is_truncated_on_a_char_boundary() {
        let s = "é".repeat(600);
        let t = truncate(&s, MAX_RAW);
        assert!(t.len() <= MAX_RAW && t.len() >= MAX_RAW - 1);
    }
}
