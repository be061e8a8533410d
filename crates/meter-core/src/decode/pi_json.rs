//! The Raspberry Pi logger JSON of seed 001: `{"timestamp": <epoch s>, "celcius": x,
//! "fahrenheit": y}`, one object per file (as the Pi uploads it) or one per line.
//!
//! The meter is the options' meter, else the object's own `meter` field, else taken from the
//! object key: the folder before `YYYY/MM/DD/` in `pool/2024/05/01/120000.json` (so `pool`), or
//! the file's stem. A reading is a `temperature` gauge in °C; Fahrenheit alone is converted, and
//! both present but disagreeing is rejected rather than guessed.

use std::io::BufRead;

use serde_json::Value;

use super::{read_line_bounded, skip_bom, DecodeOptions, Decoded, LineRead, Rejection};
use crate::reading::{Kind, MeterId, Reading, Unit};
use crate::time::{parse_instant, TimeFormat};

/// The default measure.
pub const DEFAULT_MEASURE: &str = "temperature";
/// The default source name.
pub const DEFAULT_SOURCE: &str = "pi-logger";
/// The largest object accepted, in bytes.
pub const MAX_OBJECT_BYTES: usize = 64 * 1024;

/// The meter named by an object key or path: the folder before a `YYYY/MM/DD/` run, else the
/// file name without its extension.
pub fn meter_from_key(key: &str) -> Option<MeterId> {
    let parts: Vec<&str> = key.split(['/', '\\']).filter(|p| !p.is_empty()).collect();
    let is_num = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit());
    for i in 1..parts.len().saturating_sub(3) {
        if is_num(parts[i], 4) && is_num(parts[i + 1], 2) && is_num(parts[i + 2], 2) {
            return MeterId::new(parts[i - 1]).ok();
        }
    }
    let file = parts.last()?;
    let stem = file.rsplit_once('.').map_or(*file, |(s, _)| s);
    MeterId::new(stem).ok()
}

/// Decodes Pi logger objects.
#[derive(Debug)]
pub struct PiJsonDecoder<R> {
    reader: R,
    options: DecodeOptions,
    key_meter: Option<MeterId>,
    lines_read: u64,
    buf: Vec<u8>,
    start_line: u64,
    done: bool,
}

impl<R: BufRead> PiJsonDecoder<R> {
    /// Starts decoding; nothing is read until the first item is asked for.
    pub fn new(mut reader: R, options: DecodeOptions) -> Self {
        let bom_ok = skip_bom(&mut reader).is_ok();
        Self {
            key_meter: meter_from_key(&options.file),
            reader,
            options,
            lines_read: 0,
            buf: Vec::new(),
            start_line: 0,
            done: !bom_ok,
        }
    }

    fn reject(&self, line: u64, field: Option<&str>, reason: impl std::fmt::Display) -> Rejection {
        let raw = String::from_utf8_lossy(&self.buf);
        Rejection::decode(&self.options.file, line, field, reason, raw.trim_end())
    }

    fn decode_object(&self, v: &Value, line: u64) -> Decoded {
        let Some(obj) = v.as_object() else {
            return Err(self.reject(line, None, "expected a JSON object"));
        };
        let number = |key: &str| -> Result<Option<f64>, Rejection> {
            let value = match obj.get(key) {
                None | Some(Value::Null) => return Ok(None),
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(s)) => {
                    Some(s.trim().parse::<f64>().map_err(|_| {
                        self.reject(line, Some(key), format!("{s:?} is not a number"))
                    })?)
                }
                Some(other) => {
                    return Err(self.reject(line, Some(key), format!("{other} is not a number")))
                }
            };
            match value {
                Some(v) if !v.is_finite() => {
                    Err(self.reject(line, Some(key), format!("{v} is not a finite number")))
                }
                v => Ok(v),
            }
        };
        let time = match obj.get("timestamp") {
            None | Some(Value::Null) => {
                return Err(self.reject(line, Some("timestamp"), "the timestamp is missing"))
            }
            Some(Value::Number(n)) => {
                parse_instant(&n.to_string(), TimeFormat::Auto, self.options.zone)
            }
            Some(Value::String(s)) => parse_instant(s, TimeFormat::Auto, self.options.zone),
            Some(other) => {
                let reason = format!("{other} is not a time");
                return Err(self.reject(line, Some("timestamp"), reason));
            }
        }
        .map_err(|e| self.reject(line, Some("timestamp"), e))?;
        let celsius = match number("celcius")? {
            Some(c) => Some(c),
            None => number("celsius")?,
        };
        let fahrenheit = number("fahrenheit")?;
        let value = match (celsius, fahrenheit) {
            (Some(c), Some(f)) => {
                // The Pi prints Fahrenheit with 6 significant digits, so allow for rounding.
                if ((c * 9.0 / 5.0 + 32.0) - f).abs() > 0.05 {
                    let reason = format!("celcius {c} and fahrenheit {f} disagree");
                    return Err(self.reject(line, Some("fahrenheit"), reason));
                }
                c
            }
            (Some(c), None) => c,
            (None, Some(f)) => (f - 32.0) * 5.0 / 9.0,
            (None, None) => {
                return Err(self.reject(
                    line,
                    Some("celcius"),
                    "neither celcius nor fahrenheit is given",
                ))
            }
        };
        if value < -273.15 {
            let reason = format!("{value} °C is below absolute zero");
            return Err(self.reject(line, Some("celcius"), reason));
        }
        let meter = match (&self.options.meter, obj.get("meter")) {
            (Some(m), _) => m.clone(),
            (None, Some(Value::String(s))) => {
                MeterId::new(s).map_err(|e| self.reject(line, Some("meter"), e))?
            }
            (None, _) => self.key_meter.clone().ok_or_else(|| {
                self.reject(
                    line,
                    None,
                    "no meter: name one, or use a key such as pool/YYYY/MM/DD/HHMMSS.json",
                )
            })?,
        };
        let unit = self.options.unit.clone().unwrap_or(Unit::Celsius);
        let value = if unit == Unit::Fahrenheit {
            value * 9.0 / 5.0 + 32.0
        } else {
            value
        };
        Reading::new(
            meter,
            self.options.measure_or(DEFAULT_MEASURE),
            value,
            unit,
            self.options.kind.unwrap_or(Kind::Gauge),
            time,
            self.options.source_or(DEFAULT_SOURCE),
        )
        .map(|r| r.with_tags(self.options.tags.clone()))
        .map_err(|e| {
            let field = match e {
                crate::reading::ReadingError::TimeOutOfRange(_) => Some("timestamp"),
                _ => None,
            };
            self.reject(line, field, e)
        })
    }
}

impl<R: BufRead + Send> super::Decoder for PiJsonDecoder<R> {
    fn line(&self) -> u64 {
        self.start_line
    }
}

impl<R: BufRead> Iterator for PiJsonDecoder<R> {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        while !self.done {
            let before = self.buf.len();
            let room = MAX_OBJECT_BYTES.saturating_sub(before).max(1);
            let read = read_line_bounded(&mut self.reader, &mut self.buf, room);
            self.lines_read += 1;
            match read {
                Err(e) => {
                    self.done = true;
                    return Some(Err(self.reject(
                        self.lines_read,
                        None,
                        format!("could not read: {e}"),
                    )));
                }
                Ok(LineRead::Eof) => {
                    self.done = true;
                    if self.buf.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    let reason = "the input ends inside a JSON object";
                    let item = Err(self.reject(self.start_line, None, reason));
                    self.buf.clear();
                    return Some(item);
                }
                Ok(LineRead::TooLong) => {
                    let start = if before == 0 {
                        self.lines_read
                    } else {
                        self.start_line
                    };
                    self.buf.clear();
                    let reason = format!("the object is larger than {MAX_OBJECT_BYTES} bytes");
                    return Some(Err(self.reject(start, None, reason)));
                }
                Ok(LineRead::Line) => {}
            }
            if before == 0 {
                if self.buf.iter().all(u8::is_ascii_whitespace) {
                    self.buf.clear();
                    continue;
                }
                self.start_line = self.lines_read;
            }
            let item = match serde_json::from_slice::<Value>(&self.buf) {
                Ok(v) => self.decode_object(&v, self.start_line),
                // An object spread over several lines: read on.
                Err(e) if e.is_eof() => continue,
                Err(e) => {
                    let line = self.start_line + e.line() as u64 - 1;
                    Err(self.reject(line, None, format!("invalid JSON: {e}")))
                }
            };
            self.buf.clear();
            return Some(item);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(key: &str, text: &str) -> Vec<Decoded> {
        PiJsonDecoder::new(text.as_bytes(), DecodeOptions::new(key)).collect()
    }

    #[test]
    fn meter_comes_from_the_key() {
        assert_eq!(
            meter_from_key("pool/2020/07/02/235500.json")
                .unwrap()
                .as_str(),
            "pool"
        );
        assert_eq!(
            meter_from_key("/data/drop/garden/2024/01/31/000000.json")
                .unwrap()
                .as_str(),
            "garden"
        );
        assert_eq!(meter_from_key("shed.json").unwrap().as_str(), "shed");
    }

    #[test]
    fn the_pis_own_output_decodes() {
        let items = decode(
            "pool/2020/07/02/235500.json",
            "{\"timestamp\": 1593733500, \"celcius\": 23.437, \"fahrenheit\": 74.1866}\n",
        );
        let r = items[0].as_ref().unwrap();
        assert_eq!(r.meter().as_str(), "pool");
        assert_eq!(r.value(), 23.437);
        assert_eq!(r.unit(), &Unit::Celsius);
        assert_eq!(r.kind(), Kind::Gauge);
        assert_eq!(r.time().timestamp(), 1_593_733_500);
    }

    #[test]
    fn lines_and_pretty_objects_and_fahrenheit_only() {
        let text = "{\"timestamp\": 1, \"celcius\": 1.0}\n\n{\n  \"timestamp\": 2,\n  \"fahrenheit\": 212\n}\r\n{\"timestamp\": \"3\", \"celsius\": \"4.5\"}\n";
        let items = decode("s.jsonl", text);
        let values: Vec<f64> = items.iter().map(|i| i.as_ref().unwrap().value()).collect();
        assert_eq!(values, vec![1.0, 100.0, 4.5]);
    }

    #[test]
    fn malformed_objects_are_rejected_with_line_and_field() {
        let text = [
            "{\"timestamp\": 1, \"celcius\": 20}",       // 1 ok
            "{\"celcius\": 20}",                         // 2 no timestamp
            "{\"timestamp\": 1, \"celcius\": \"warm\"}", // 3 not a number
            "{\"timestamp\": 1}",                        // 4 no temperature
            "{\"timestamp\": 1, \"celcius\": 20, \"fahrenheit\": 90}", // 5 disagree
            "{\"timestamp\": 1, \"celcius\": -300}",     // 6 below absolute zero
            "[1, 2]",                                    // 7 not an object
            "{\"timestamp\": 1, \"celcius\": 20,}",      // 8 invalid JSON
            "{\"timestamp\": true, \"celcius\": 20}",    // 9 bad timestamp type
            "{\"timestamp\": 1, \"celcius\": 21}",       // 10 ok
            "{\"timestamp\": 1, \"celcius\": \"NaN\"}",  // 11 not finite
            "{\"timestamp\": 1, ",                       // 12 truncated
        ]
        .join("\n");
        let items = decode("pool/2024/01/01/000000.json", &text);
        let bad: Vec<(u64, Option<String>, String)> = items
            .iter()
            .filter_map(|i| i.as_ref().err())
            .map(|e| (e.line, e.field.clone(), e.reason.clone()))
            .collect();
        let expect: [(u64, Option<&str>, &str); 10] = [
            (2, Some("timestamp"), "timestamp is missing"),
            (3, Some("celcius"), "\"warm\" is not a number"),
            (4, Some("celcius"), "neither celcius nor fahrenheit"),
            (5, Some("fahrenheit"), "disagree"),
            (6, Some("celcius"), "below absolute zero"),
            (7, None, "expected a JSON object"),
            (8, None, "invalid JSON"),
            (9, Some("timestamp"), "is not a time"),
            (11, Some("celcius"), "not a finite number"),
            (12, None, "ends inside a JSON object"),
        ];
        assert_eq!(bad.len(), expect.len(), "{bad:?}");
        for (got, want) in bad.iter().zip(expect) {
            assert_eq!(got.0, want.0, "{got:?}");
            assert_eq!(got.1.as_deref(), want.1, "{got:?}");
            assert!(got.2.contains(want.2), "{got:?}");
        }
        assert_eq!(items.iter().filter(|i| i.is_ok()).count(), 2);
    }

    #[test]
    fn an_oversized_line_is_rejected_without_holding_it() {
        let huge = format!(
            "{{\"timestamp\": 1, \"pad\": \"{}\"}}\n{{\"timestamp\": 1, \"celcius\": 2}}\n",
            "x".repeat(MAX_OBJECT_BYTES * 2)
        );
        let items = decode("s.json", &huge);
        assert_eq!(items.len(), 2);
        assert!(items[0]
            .as_ref()
            .unwrap_err()
            .reason
            .contains("larger than"));
        assert_eq!(items[1].as_ref().unwrap().value(), 2.0);
    }
}
