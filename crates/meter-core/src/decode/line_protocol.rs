//! InfluxDB line protocol, as Telegraf, InfluxDB clients and many MQTT bridges write it:
//! `measurement[,tag=value...] field=value[,field=value...] [timestamp]`, one point per line.
//!
//! The mapping to readings:
//! - **meter**: the tag named by [`DecodeOptions::meter_tag`] (default `meter`), else `device`,
//!   else `host`; a point with none of them is rejected.
//! - **measure**: `measurement.field` (`water,meter=M1 volume=1` is measure `water.volume`), or
//!   the field name alone when the measurement is `meter`. Characters a measure may not hold
//!   (anything but letters, digits, `_`, `.` and `-`) become `_`; a name that still breaks the
//!   rules (it starts with a digit, is longer than 64 characters, is reserved) is rejected.
//! - **readings**: each integer (`1i`), unsigned (`1u`) or float field is one reading. String
//!   and boolean fields are rejected, with the line and the field, and the point's other
//!   fields still land.
//! - **unit and kind**: the options' (`--unit`, `--kind`) when given, else the `unit` and `kind`
//!   tags, else those of the series already stored ([`DecodeOptions::known`]), else a gauge
//!   with no unit.
//! - **tags**: the other tags, their keys lower-cased with characters outside `a-z`, `0-9`, `_`
//!   turned into `_` (a key that then does not start with a letter rejects the point).
//! - **time**: the timestamp in the write's precision (ns unless told), cut to milliseconds; a
//!   point without one is stamped with the time it was received, so a client that sends the
//!   same point twice without a timestamp stores it twice.
//! - **collisions**: two points of one meter and measure whose timestamps differ but fall in
//!   the same millisecond would overwrite each other; the later is rejected instead, naming the
//!   earlier line. The check covers one write (an HTTP body, a message) and, in a file, each run
//!   of [`COLLISION_WINDOW`] points. The very same point repeated is not a collision: as in
//!   InfluxDB, the last value stands.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::BufRead;
use std::str::FromStr;

use chrono::DateTime;

use super::lines::MAX_LINE_BYTES;
use super::{read_line_bounded, skip_bom, utf8_cell, DecodeOptions, Decoded, LineRead, Rejection};
use crate::choice::{pick, UnknownName};
use crate::reading::{Kind, MeasureName, MeterId, Reading, Tags, Unit};

/// The default source name.
pub const DEFAULT_SOURCE: &str = "line-protocol";
/// The measurement whose fields are measures by their own names.
pub const PLAIN_MEASUREMENT: &str = "meter";
/// The tag that names the meter unless configured otherwise.
pub const DEFAULT_METER_TAG: &str = "meter";
/// The tags tried for the meter after the configured one.
pub const FALLBACK_METER_TAGS: [&str; 2] = ["device", "host"];
/// How many points back a file's collision check reaches (memory stays bounded on any file).
pub const COLLISION_WINDOW: usize = 250_000;

/// The unit of the timestamps of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Nanoseconds (InfluxDB's default).
    #[default]
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
}

impl Precision {
    /// Units of this precision in one millisecond (1 for seconds and milliseconds, which are
    /// scaled up instead).
    fn per_milli(self) -> i64 {
        match self {
            Self::Nanoseconds => 1_000_000,
            Self::Microseconds => 1_000,
            Self::Milliseconds | Self::Seconds => 1,
        }
    }

    /// A timestamp of this precision in epoch milliseconds, if it is representable.
    pub fn to_millis(self, raw: i64) -> Option<i64> {
        match self {
            Self::Seconds => raw.checked_mul(1000),
            other => Some(raw.div_euclid(other.per_milli())),
        }
    }
}

impl FromStr for Precision {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let aliases = [
            ("ns", Self::Nanoseconds),
            ("n", Self::Nanoseconds),
            ("us", Self::Microseconds),
            ("u", Self::Microseconds),
            ("ms", Self::Milliseconds),
            ("s", Self::Seconds),
        ];
        pick(s, &aliases, "precision", "ns, us, ms or s")
    }
}

/// A syntax error of a line, with the byte where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SyntaxError {
    at: usize,
    what: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.what, self.at + 1)
    }
}

/// A field's value as written.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A float (`1.5`, `1`, `-2e3`).
    Float(f64),
    /// An integer (`1i`).
    Integer(i64),
    /// An unsigned integer (`1u`).
    Unsigned(u64),
    /// A string (`"on"`).
    String(String),
    /// A boolean (`t`, `false`).
    Boolean(bool),
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The measurement.
    pub measurement: String,
    /// The tags, in the order written.
    pub tags: Vec<(String, String)>,
    /// The fields, in the order written.
    pub fields: Vec<(String, FieldValue)>,
    /// The timestamp as written, when there is one.
    pub timestamp: Option<i64>,
}

struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn err<T>(&self, what: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            at: self.pos.min(self.s.len().saturating_sub(1)),
            what: what.into(),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// Text up to an unescaped byte of `stops`; a backslash before a byte of `escapes` stands
    /// for that byte, any other backslash for itself.
    fn token(&mut self, stops: &[u8], escapes: &[u8]) -> String {
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            if b == b'\\' {
                if let Some(&next) = self.s.get(self.pos + 1) {
                    if escapes.contains(&next) {
                        out.push(next);
                        self.pos += 2;
                        continue;
                    }
                }
            } else if stops.contains(&b) {
                break;
            }
            out.push(b);
            self.pos += 1;
        }
        // The line was checked as UTF-8 and escapes only remove ASCII backslashes.
        String::from_utf8(out).unwrap_or_default()
    }

    /// A tag or field key and the `=` after it.
    fn key(&mut self, what: &str) -> Result<String, SyntaxError> {
        let key = self.token(b",= ", b",= ");
        if key.is_empty() {
            return self.err(format!("a {what} has no key"));
        }
        if self.peek() != Some(b'=') {
            return self.err(format!("{what} {key:?} has no '=' and value"));
        }
        self.pos += 1;
        Ok(key)
    }

    fn skip_spaces(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn quoted(&mut self) -> Result<String, SyntaxError> {
        let open = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            match b {
                b'\\' if matches!(self.s.get(self.pos + 1), Some(b'"' | b'\\')) => {
                    out.push(self.s[self.pos + 1]);
                    self.pos += 2;
                }
                b'"' => {
                    self.pos += 1;
                    return Ok(String::from_utf8(out).unwrap_or_default());
                }
                _ => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
        self.pos = open;
        self.err("a string field value has no closing quote")
    }
}

fn field_value(text: &str) -> Result<FieldValue, String> {
    let bad = || {
        format!(
            "{text:?} is not a field value: write a number (1.5, 2i, 3u), a quoted string or a \
             boolean"
        )
    };
    match text {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Boolean(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Boolean(false)),
        _ => {}
    }
    let starts_like_number = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.'));
    if !starts_like_number {
        return Err(bad());
    }
    if let Some(n) = text.strip_suffix('i') {
        return n.parse().map(FieldValue::Integer).map_err(|_| bad());
    }
    if let Some(n) = text.strip_suffix('u') {
        return n.parse().map(FieldValue::Unsigned).map_err(|_| bad());
    }
    // Rust also reads "inf" and "NaN", which line protocol does not allow: the first byte was
    // checked above, so only digits, signs, a point and an exponent reach here.
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(FieldValue::Float(v)),
        _ => Err(bad()),
    }
}

/// Parses one line (without its line break). Blank lines and `#` comments give `None`.
pub fn parse_line(line: &str) -> Result<Option<Point>, String> {
    parse(line).map_err(|e| e.to_string())
}

fn parse(line: &str) -> Result<Option<Point>, SyntaxError> {
    let trimmed = line.trim_start_matches([' ', '\t']);
    if trimmed.trim_end().is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let mut sc = Scanner {
        s: line.as_bytes(),
        pos: line.len() - trimmed.len(),
    };
    let measurement = sc.token(b", ", b", ");
    if measurement.is_empty() {
        return sc.err("the line starts with no measurement name");
    }
    let mut tags = Vec::new();
    while sc.peek() == Some(b',') {
        sc.pos += 1;
        let key = sc.key("tag")?;
        let value = sc.token(b", ", b",= ");
        if value.is_empty() {
            return sc.err(format!("tag {key:?} has no value"));
        }
        tags.push((key, value));
    }
    if sc.skip_spaces() == 0 || sc.peek().is_none() {
        return sc.err("the point has no fields (put a space, then field=value)");
    }
    let mut fields = Vec::new();
    loop {
        let key = sc.key("field")?;
        let value = if sc.peek() == Some(b'"') {
            FieldValue::String(sc.quoted()?)
        } else {
            let at = sc.pos;
            let text = sc.token(b", ", b"");
            match field_value(&text) {
                Ok(v) => v,
                Err(why) => {
                    sc.pos = at;
                    return sc.err(format!("field {key:?}: {why}"));
                }
            }
        };
        fields.push((key, value));
        if sc.peek() == Some(b',') {
            sc.pos += 1;
            continue;
        }
        break;
    }
    let mut timestamp = None;
    if sc.skip_spaces() > 0 {
        let at = sc.pos;
        let text = sc.token(b" \t\r", b"");
        if !text.is_empty() {
            match text.parse::<i64>() {
                Ok(t) => timestamp = Some(t),
                Err(_) => {
                    sc.pos = at;
                    return sc.err(format!("the timestamp {text:?} is not an integer"));
                }
            }
        }
        sc.skip_spaces();
    }
    if sc.peek() == Some(b'\r') {
        sc.pos += 1;
    }
    if sc.peek().is_some() {
        return sc.err(
            "unexpected text after the point (a space inside a name must be escaped as '\\ ')",
        );
    }
    Ok(Some(Point {
        measurement,
        tags,
        fields,
        timestamp,
    }))
}

/// The measure a field becomes, by the documented rule.
pub fn measure_name(measurement: &str, field: &str) -> Result<MeasureName, String> {
    let joined = if measurement == PLAIN_MEASUREMENT {
        field.to_owned()
    } else {
        format!("{measurement}.{field}")
    };
    let normal: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    MeasureName::new(&normal).map_err(|e| e.to_string())
}

/// A tag key by the documented rule: lower case, other characters as `_`.
fn tag_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Decodes line protocol.
pub struct LineProtocolDecoder<R> {
    reader: R,
    options: DecodeOptions,
    buf: Vec<u8>,
    /// Lines read so far (the one being decoded).
    lines_read: u64,
    /// The line of the last item handed out.
    item_line: u64,
    queue: VecDeque<Decoded>,
    /// (meter, measure, millisecond) hashed -> the raw timestamp and line that claimed it.
    claimed: HashMap<u64, (i64, u64)>,
    /// The known series looked up so far, so a series is asked for once per input.
    known: HashMap<(MeterId, MeasureName), Option<(Unit, Kind)>>,
    done: bool,
}

impl<R> fmt::Debug for LineProtocolDecoder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineProtocolDecoder")
            .field("file", &self.options.file)
            .field("line", &self.lines_read)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> LineProtocolDecoder<R> {
    /// Starts decoding; nothing is read until the first item is asked for.
    pub fn new(mut reader: R, options: DecodeOptions) -> Self {
        let bom_ok = skip_bom(&mut reader).is_ok();
        Self {
            reader,
            options,
            buf: Vec::new(),
            lines_read: 0,
            item_line: 0,
            queue: VecDeque::new(),
            claimed: HashMap::new(),
            known: HashMap::new(),
            done: !bom_ok,
        }
    }

    fn reject(&self, field: Option<&str>, reason: impl fmt::Display, raw: &str) -> Rejection {
        Rejection::decode(&self.options.file, self.lines_read, field, reason, raw)
    }

    /// The unit and kind of a series: as given earlier in this input (the store has not
    /// committed it yet), else as stored.
    fn known_series(&mut self, meter: &MeterId, measure: &MeasureName) -> Option<(Unit, Kind)> {
        if self.known.len() >= 10_000 {
            self.known.clear();
        }
        let lookup = &self.options.known;
        self.known
            .entry((meter.clone(), measure.clone()))
            .or_insert_with(|| lookup.as_ref().and_then(|l| l.series(meter, measure)))
            .clone()
    }

    /// Turns one line into items on the queue.
    fn decode_line(&mut self, text: &str) {
        let raw = text.trim_end();
        let point = match parse(raw) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                let r = self.reject(None, e, raw);
                self.queue.push_back(Err(r));
                return;
            }
        };
        match self.point(&point, raw) {
            Ok(items) => self.queue.extend(items),
            Err(r) => self.queue.push_back(Err(r)),
        }
    }

    fn point(&mut self, p: &Point, raw: &str) -> Result<Vec<Decoded>, Rejection> {
        let configured = self
            .options
            .meter_tag
            .clone()
            .unwrap_or_else(|| DEFAULT_METER_TAG.to_owned());
        let meter_key = std::iter::once(configured.as_str())
            .chain(FALLBACK_METER_TAGS)
            .find(|k| p.tags.iter().any(|(t, _)| t == k));
        let meter = match (&self.options.meter, meter_key) {
            (Some(m), _) => m.clone(),
            (None, Some(key)) => {
                let value = p.tags.iter().find(|(t, _)| t == key).map(|(_, v)| v);
                MeterId::new(value.map_or("", String::as_str))
                    .map_err(|e| self.reject(Some(key), e, raw))?
            }
            (None, None) => {
                return Err(self.reject(
                    None,
                    format!(
                        "the point names no meter: add a {configured:?} tag (or \"device\" or \
                         \"host\")"
                    ),
                    raw,
                ))
            }
        };
        let mut unit_tag = None;
        let mut kind_tag = None;
        let mut tags = Vec::new();
        for (key, value) in &p.tags {
            if Some(key.as_str()) == meter_key {
                continue;
            }
            match key.as_str() {
                "unit" => {
                    unit_tag =
                        Some(Unit::parse(value).map_err(|e| self.reject(Some("unit"), e, raw))?)
                }
                "kind" => {
                    kind_tag =
                        Some(Kind::from_str(value).map_err(|e| self.reject(Some("kind"), e, raw))?)
                }
                _ => {
                    let normal = tag_key(key);
                    tags.push((normal, value.clone()));
                }
            }
        }
        let tags = Tags::new(tags.clone()).map_err(|e| self.reject(None, e, raw))?;
        let time = match p.timestamp {
            None => self.options.received_at,
            Some(t) => {
                let ms = self.options.precision.to_millis(t).ok_or_else(|| {
                    self.reject(None, format!("the timestamp {t} is out of range"), raw)
                })?;
                DateTime::from_timestamp_millis(ms).ok_or_else(|| {
                    self.reject(None, format!("the timestamp {t} is out of range"), raw)
                })?
            }
        };
        let mut out = Vec::with_capacity(p.fields.len());
        for (field, value) in &p.fields {
            let value = match value {
                FieldValue::Float(v) => *v,
                FieldValue::Integer(v) => *v as f64,
                FieldValue::Unsigned(v) => *v as f64,
                FieldValue::String(_) | FieldValue::Boolean(_) => {
                    let what = if matches!(value, FieldValue::String(_)) {
                        "a string"
                    } else {
                        "a boolean"
                    };
                    out.push(Err(self.reject(
                        Some(field),
                        format!("field {field:?} is {what}; only numeric fields are readings"),
                        raw,
                    )));
                    continue;
                }
            };
            let measure = match measure_name(&p.measurement, field) {
                Ok(m) => m,
                Err(why) => {
                    out.push(Err(self.reject(Some(field), why, raw)));
                    continue;
                }
            };
            if let Some(t) = p.timestamp {
                let ms = time.timestamp_millis();
                let mut h = DefaultHasher::new();
                (meter.as_str(), measure.as_str(), ms).hash(&mut h);
                let key = h.finish();
                if self.claimed.len() >= COLLISION_WINDOW {
                    self.claimed.clear();
                }
                match self.claimed.get(&key) {
                    Some(&(earlier, line)) if earlier != t => {
                        out.push(Err(self.reject(
                            Some(field),
                            format!(
                                "the point falls in the same millisecond as line {line} \
                                 ({earlier} and {t}) for meter {meter}, measure {measure}; \
                                 readings are kept to the millisecond, so it would overwrite \
                                 that one"
                            ),
                            raw,
                        )));
                        continue;
                    }
                    _ => {
                        self.claimed.insert(key, (t, self.lines_read));
                    }
                }
            }
            let known = if self.options.unit.is_none() || self.options.kind.is_none() {
                self.known_series(&meter, &measure)
            } else {
                None
            };
            let unit = self
                .options
                .unit
                .clone()
                .or_else(|| unit_tag.clone())
                .or_else(|| known.as_ref().map(|k| k.0.clone()))
                .unwrap_or(Unit::Dimensionless);
            let kind = self
                .options
                .kind
                .or(kind_tag)
                .or(known.as_ref().map(|k| k.1))
                .unwrap_or(Kind::Gauge);
            self.known
                .insert((meter.clone(), measure.clone()), Some((unit.clone(), kind)));
            let reading = Reading::new(
                meter.clone(),
                measure,
                value,
                unit,
                kind,
                time,
                self.options.source_or(DEFAULT_SOURCE),
            )
            .map(|r| r.with_tags(merge_tags(&self.options.tags, &tags)))
            .map_err(|e| self.reject(Some(field), e, raw));
            out.push(reading);
        }
        Ok(out)
    }
}

/// The options' tags with the point's own over them.
fn merge_tags(base: &Tags, own: &Tags) -> Tags {
    if base.is_empty() {
        return own.clone();
    }
    let mut merged = base.clone();
    for (k, v) in own.iter() {
        if let Ok(t) = merged.with(k, v) {
            merged = t;
        }
    }
    merged
}

impl<R: BufRead> Iterator for LineProtocolDecoder<R> {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                self.item_line = self.lines_read;
                return Some(item);
            }
            if self.done {
                return None;
            }
            self.buf.clear();
            let read = read_line_bounded(&mut self.reader, &mut self.buf, MAX_LINE_BYTES);
            self.lines_read += 1;
            match read {
                Ok(LineRead::Eof) => {
                    self.done = true;
                    return None;
                }
                Ok(LineRead::TooLong) => {
                    let r = super::lines::too_long(&self.options.file, self.lines_read);
                    self.queue.push_back(Err(r));
                }
                Ok(LineRead::Line) => {
                    let buf = std::mem::take(&mut self.buf);
                    match utf8_cell(&buf) {
                        Ok(text) => self.decode_line(text),
                        Err(why) => {
                            let raw = String::from_utf8_lossy(&buf).into_owned();
                            let r = self.reject(None, why, raw.trim_end());
                            self.queue.push_back(Err(r));
                        }
                    }
                    self.buf = buf;
                }
                Err(e) => {
                    self.done = true;
                    let r = Rejection::unreadable(&self.options.file, self.lines_read, e, "");
                    self.queue.push_back(Err(r));
                }
            }
        }
    }
}

impl<R: BufRead + Send> super::Decoder for LineProtocolDecoder<R> {
    fn line(&self) -> u64 {
        self.item_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoder as _, KnownSeries, SeriesLookup};
    use std::sync::Arc;

    fn decode(text: &str, options: DecodeOptions) -> Vec<Decoded> {
        LineProtocolDecoder::new(text.as_bytes(), options).collect()
    }

    fn opts() -> DecodeOptions {
        DecodeOptions::new("write")
    }

    #[test]
    fn a_point_per_numeric_field_with_measurement_dot_field() {
        let out = decode(
            "water,meter=M1,site=north volume=123.4,flow=2i 1700000000000000000\n",
            opts(),
        );
        let r: Vec<_> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].meter().as_str(), "M1");
        assert_eq!(r[0].measure().as_str(), "water.volume");
        assert_eq!(r[0].value(), 123.4);
        assert_eq!(r[1].measure().as_str(), "water.flow");
        assert_eq!(r[1].value(), 2.0);
        assert_eq!(r[0].time().timestamp_millis(), 1_700_000_000_000);
        assert_eq!(r[0].tags().get("site"), Some("north"));
        assert_eq!(r[0].tags().get("meter"), None);
        assert_eq!(r[0].kind(), Kind::Gauge);
        assert_eq!(r[0].unit(), &Unit::Dimensionless);
    }

    #[test]
    fn the_meter_measurement_names_measures_by_field() {
        let r = decode("meter,device=D7 temperature=21.5 1\n", opts());
        let r = r[0].as_ref().unwrap();
        assert_eq!(r.meter().as_str(), "D7");
        assert_eq!(r.measure().as_str(), "temperature");
    }

    #[test]
    fn escapes_are_read() {
        let out = decode(
            "my\\ water,meter=M\\,1,room=a\\=b\\ c used\\ litres=1 5\n",
            opts(),
        );
        let r = out[0].as_ref().unwrap();
        assert_eq!(r.meter().as_str(), "M,1");
        assert_eq!(r.measure().as_str(), "my_water.used_litres");
        assert_eq!(r.tags().get("room"), Some("a=b c"));
    }

    #[test]
    fn string_and_boolean_fields_are_rejected_and_the_rest_lands() {
        let out = decode("p,meter=M1 state=\"on, really\",ok=t,power=3.5 1\n", opts());
        assert_eq!(out.len(), 3);
        let e = out[0].as_ref().unwrap_err();
        assert_eq!(e.field.as_deref(), Some("state"));
        assert!(e.reason.contains("string"), "{}", e.reason);
        assert!(out[1].as_ref().unwrap_err().reason.contains("boolean"));
        assert_eq!(out[2].as_ref().unwrap().value(), 3.5);
    }

    #[test]
    fn bad_lines_name_their_line_and_good_ones_around_them_land() {
        let text = "# a comment\n\
                    w,meter=M1 v=1 1000000\n\
                    w,meter=M1 v= 2000000\n\
                    w v=3 3000000\n\
                    \n\
                    w,meter=M1 v=4 4000000\n\
                    w,meter=M1 v=1 12x\n";
        let mut d = LineProtocolDecoder::new(text.as_bytes(), opts());
        let mut got = Vec::new();
        while let Some(item) = d.next() {
            got.push((d.line(), item));
        }
        let lines: Vec<(u64, bool)> = got.iter().map(|(l, r)| (*l, r.is_ok())).collect();
        assert_eq!(
            lines,
            vec![(2, true), (3, false), (4, false), (6, true), (7, false)]
        );
        let e = got[2].1.as_ref().unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.reason.contains("names no meter"), "{}", e.reason);
        assert!(got[4].1.as_ref().unwrap_err().reason.contains("timestamp"));
    }

    #[test]
    fn precision_scales_and_a_missing_timestamp_is_the_receipt_time() {
        let mut o = opts();
        o.precision = Precision::Seconds;
        let r = decode("w,meter=M v=1 1700000000\n", o.clone());
        assert_eq!(
            r[0].as_ref().unwrap().time().timestamp_millis(),
            1_700_000_000_000
        );
        o.precision = Precision::Microseconds;
        let r = decode("w,meter=M v=1 1700000000123456\n", o.clone());
        assert_eq!(
            r[0].as_ref().unwrap().time().timestamp_millis(),
            1_700_000_000_123
        );
        let r = decode("w,meter=M v=1\n", o.clone());
        assert_eq!(r[0].as_ref().unwrap().time(), o.received_at);
    }

    #[test]
    fn points_colliding_at_a_millisecond_are_rejected_but_repeats_are_not() {
        let text = "w,meter=M v=1 1000000\n\
                    w,meter=M v=2 1500000\n\
                    w,meter=M v=3 1000000\n\
                    w,meter=N v=4 1500000\n";
        let out = decode(text, opts());
        assert!(out[0].is_ok());
        let e = out[1].as_ref().unwrap_err();
        assert!(e.reason.contains("line 1"), "{}", e.reason);
        assert!(out[2].is_ok(), "the same point again is not a collision");
        assert!(out[3].is_ok(), "another meter does not collide");
    }

    #[test]
    fn unit_and_kind_come_from_tags_then_the_stored_series() {
        struct Known;
        impl SeriesLookup for Known {
            fn series(&self, meter: &MeterId, measure: &MeasureName) -> Option<(Unit, Kind)> {
                (meter.as_str() == "M1" && measure.as_str() == "water.volume")
                    .then_some((Unit::Litre, Kind::Cumulative))
            }
        }
        let mut o = opts();
        o.known = Some(KnownSeries(Arc::new(Known)));
        let out = decode(
            "water,meter=M1 volume=5 1\n\
             water,meter=M2 volume=5 1\n\
             water,meter=M2,unit=kWh,kind=interval volume=5 1\n",
            o,
        );
        let r: Vec<_> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!((r[0].unit(), r[0].kind()), (&Unit::Litre, Kind::Cumulative));
        assert_eq!(
            (r[1].unit(), r[1].kind()),
            (&Unit::Dimensionless, Kind::Gauge)
        );
        assert_eq!(
            (r[2].unit(), r[2].kind()),
            (&Unit::KilowattHour, Kind::Interval)
        );
        assert!(r[2].tags().is_empty());
    }

    #[test]
    fn a_series_keeps_the_unit_and_kind_it_was_given_earlier_in_the_input() {
        let out = decode(
            "water,meter=A,unit=L,kind=cumulative volume=10 1000000000\n\
             water,meter=A volume=12 2000000000\n",
            opts(),
        );
        let r: Vec<_> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!((r[1].unit(), r[1].kind()), (&Unit::Litre, Kind::Cumulative));
    }

    #[test]
    fn names_our_rules_refuse_are_normalised_or_rejected() {
        assert_eq!(
            measure_name("home/water", "flow rate").unwrap().as_str(),
            "home_water.flow_rate"
        );
        assert!(measure_name("meter", "1st").is_err());
        assert!(measure_name("meter", "time").is_err());
        let out = decode("w,meter=M,Room-Name=x v=1 1\n", opts());
        assert_eq!(out[0].as_ref().unwrap().tags().get("room_name"), Some("x"));
        let out = decode("w,meter=M,9lives=x v=1 1\n", opts());
        assert!(out[0].is_err());
    }

    #[test]
    fn syntax_errors_say_where() {
        for (line, what) in [
            ("w,meter=M", "no fields"),
            ("w,meter v=1", "no '='"),
            ("w,meter=M v=\"open", "closing quote"),
            ("w,meter=M v=abc", "not a field value"),
            ("w,meter=M v=1 2 3", "unexpected text"),
            ("w,meter=M v=inf", "not a field value"),
            (",meter=M v=1", "no measurement"),
        ] {
            let e = parse_line(line).unwrap_err();
            assert!(e.contains(what), "{line}: {e}");
        }
        assert_eq!(parse_line("  # note").unwrap(), None);
        let p = parse_line("w,meter=M v=-1.5e3,n=-3i,u=7u 9\r")
            .unwrap()
            .unwrap();
        assert_eq!(
            p.fields,
            vec![
                ("v".into(), FieldValue::Float(-1500.0)),
                ("n".into(), FieldValue::Integer(-3)),
                ("u".into(), FieldValue::Unsigned(7)),
            ]
        );
        assert_eq!(p.timestamp, Some(9));
    }

    proptest::proptest! {
        /// Any text: the decoder never panics, and every line that is not blank or a comment
        /// gives at least one item, all from that line.
        #[test]
        fn any_text_decodes_without_panicking(text in "[a-z=, \"\\\\0-9.#\\n-]{0,200}") {
            let mut d = LineProtocolDecoder::new(text.as_bytes(), opts());
            let mut last = 0;
            while let Some(_item) = d.next() {
                proptest::prop_assert!(d.line() >= last);
                last = d.line();
            }
        }

        /// A point written with escapes reads back as the names and values it was built from.
        #[test]
        fn escaped_names_read_back(
            measurement in "[a-z][a-z ,=]{0,10}",
            meter in "[A-Za-z0-9][A-Za-z0-9 ,=]{0,10}[A-Za-z0-9]",
            value in -1.0e9f64..1.0e9,
            ts in 0i64..4_000_000_000_000_000_000,
        ) {
            let esc = |s: &str, chars: &[char]| {
                let mut out = String::new();
                for c in s.chars() {
                    if chars.contains(&c) { out.push('\\'); }
                    out.push(c);
                }
                out
            };
            let line = format!(
                "{},meter={} v={value:?} {ts}",
                esc(&measurement, &[',', ' ']),
                esc(&meter, &[',', '=', ' '])
            );
            let p = parse_line(&line).unwrap().unwrap();
            proptest::prop_assert_eq!(p.measurement, measurement);
            proptest::prop_assert_eq!(&p.tags[0].1, &meter);
            proptest::prop_assert_eq!(&p.fields[0].1, &FieldValue::Float(value));
            proptest::prop_assert_eq!(p.timestamp, Some(ts));
        }
    }
}
