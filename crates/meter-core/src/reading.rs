//! A reading and its validated parts. A value of these types is valid by construction: every
//! constructor checks its input, and deserialisation goes through the same checks.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use smol_str::SmolStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Why a reading or one of its parts could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadingError {
    /// The meter id was empty or only whitespace.
    #[error("meter id is empty")]
    EmptyMeterId,
    /// The meter id was longer than [`MeterId::MAX_LEN`] bytes.
    #[error("meter id is {0} bytes long; at most {max} are allowed", max = MeterId::MAX_LEN)]
    MeterIdTooLong(usize),
    /// The meter id had a control character or surrounding whitespace.
    #[error("meter id {0:?} has control characters or leading/trailing whitespace")]
    MeterIdMalformed(String),
    /// A measure name broke the naming rule.
    #[error("measure name {name:?} is invalid: {why}")]
    InvalidMeasure {
        /// The offending name.
        name: String,
        /// Which rule it broke.
        why: &'static str,
    },
    /// A unit was empty, too long or had characters outside the allowed set.
    #[error("unit {0:?} is invalid: use 1-16 letters, digits or one of % / . _ -")]
    InvalidUnit(String),
    /// A kind name was not one of cumulative, interval, gauge (or an alias).
    #[error("kind {0:?} is unknown: use cumulative, interval or gauge")]
    UnknownKind(String),
    /// A source name broke the naming rule.
    #[error("source name {0:?} is invalid: use 1-64 lower-case letters, digits, '-', '_' or '.'")]
    InvalidSource(String),
    /// The value was NaN or infinite.
    #[error("value {0} is not a finite number")]
    NonFiniteValue(f64),
    /// A cumulative counter cannot be negative.
    #[error("value {0} is negative, but a cumulative counter cannot be")]
    NegativeCumulative(f64),
    /// The time was outside the range meterflow accepts.
    #[error("time {0} is outside 1970-01-01..2200-01-01")]
    TimeOutOfRange(String),
    /// A tag key or value broke the rules.
    #[error("tag {key:?} is invalid: {why}")]
    InvalidTag {
        /// The offending key.
        key: String,
        /// Which rule it broke.
        why: &'static str,
    },
    /// More than [`Tags::MAX`] tags.
    #[error("{0} tags given; at most {max} are allowed", max = Tags::MAX)]
    TooManyTags(usize),
}

/// The conversions every validated text newtype shares: `Debug` and `Display` as the text,
/// `TryFrom<String>` and `FromStr` through the validating `new`, and back `Into<String>`.
macro_rules! text_newtype_impls {
    ($name:ident) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.0.as_str(), f)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $name {
            type Error = ReadingError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(&s)
            }
        }
        impl From<$name> for String {
            fn from(m: $name) -> Self {
                m.0.to_string()
            }
        }
        impl FromStr for $name {
            type Err = ReadingError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
    };
}

/// The identifier of one meter or sensor: 1 to 128 bytes of printable text.
///
/// Cheap to clone (inline up to 23 bytes, shared beyond), since decoders stamp the same id on
/// many readings.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MeterId(SmolStr);

impl MeterId {
    /// The longest id accepted, in bytes (a DynamoDB key and a Timestream dimension both fit).
    pub const MAX_LEN: usize = 128;

    /// Validates and builds a meter id.
    pub fn new(id: &str) -> Result<Self, ReadingError> {
        if id.trim().is_empty() {
            return Err(ReadingError::EmptyMeterId);
        }
        if id.len() > Self::MAX_LEN {
            return Err(ReadingError::MeterIdTooLong(id.len()));
        }
        if id.chars().any(char::is_control) || id.trim() != id {
            return Err(ReadingError::MeterIdMalformed(id.to_owned()));
        }
        Ok(Self(SmolStr::new(id)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype_impls!(MeterId);

/// The name of what is measured (`volume`, `temperature`, `energy`): an ASCII letter, then up to
/// 63 letters, digits, `_`, `.` or `-`. Names Timestream reserves are refused.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MeasureName(SmolStr);

impl MeasureName {
    /// Validates and builds a measure name.
    pub fn new(name: &str) -> Result<Self, ReadingError> {
        let bad = |why| ReadingError::InvalidMeasure {
            name: name.to_owned(),
            why,
        };
        let mut chars = name.chars();
        match chars.next() {
            None => return Err(bad("it is empty")),
            Some(c) if !c.is_ascii_alphabetic() => return Err(bad("it must start with a letter")),
            Some(_) => {}
        }
        if name.len() > 64 {
            return Err(bad("it is longer than 64 characters"));
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return Err(bad("only letters, digits, '_', '.' and '-' are allowed"));
        }
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("ts_") || lower.starts_with("measure_value") || lower == "time" {
            return Err(bad("the name is reserved by Timestream"));
        }
        Ok(Self(SmolStr::new(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype_impls!(MeasureName);

/// The unit of a value. Common units have their own variant; anything else is kept as a short
/// validated symbol, so a new sensor does not need a code change.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Unit {
    /// Litres (`L`): SST Cloud water counters.
    Litre,
    /// Cubic metres (`m3`).
    CubicMetre,
    /// Kilowatt-hours (`kWh`): utility half-hourly exports.
    KilowattHour,
    /// Watt-hours (`Wh`).
    WattHour,
    /// Degrees Celsius (`degC`).
    Celsius,
    /// Degrees Fahrenheit (`degF`).
    Fahrenheit,
    /// A count of events (`count`): button presses.
    Count,
    /// A percentage (`%`).
    Percent,
    /// No unit stated by the source (`1`).
    Dimensionless,
    /// Any other unit symbol.
    Other(SmolStr),
}

impl Unit {
    /// Parses a unit symbol, accepting common spellings (`l`, `litres`, `°C`, `kwh`...).
    pub fn parse(symbol: &str) -> Result<Self, ReadingError> {
        let s = symbol.trim();
        let known = match s.to_ascii_lowercase().as_str() {
            "l" | "litre" | "litres" | "liter" | "liters" => Some(Unit::Litre),
            "m3" | "m^3" | "m³" | "cubic_metre" | "cubic_meter" => Some(Unit::CubicMetre),
            "kwh" => Some(Unit::KilowattHour),
            "wh" => Some(Unit::WattHour),
            "degc" | "°c" | "c" | "celsius" => Some(Unit::Celsius),
            "degf" | "°f" | "f" | "fahrenheit" => Some(Unit::Fahrenheit),
            "count" | "counts" | "presses" => Some(Unit::Count),
            "%" | "percent" => Some(Unit::Percent),
            "1" | "" | "none" => Some(Unit::Dimensionless),
            _ => None,
        };
        if let Some(unit) = known {
            return Ok(unit);
        }
        let ok = s.len() <= 16
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '/' | '.' | '_' | '-'));
        if ok {
            Ok(Unit::Other(SmolStr::new(s)))
        } else {
            Err(ReadingError::InvalidUnit(symbol.to_owned()))
        }
    }

    /// The canonical symbol.
    pub fn symbol(&self) -> &str {
        match self {
            Unit::Litre => "L",
            Unit::CubicMetre => "m3",
            Unit::KilowattHour => "kWh",
            Unit::WattHour => "Wh",
            Unit::Celsius => "degC",
            Unit::Fahrenheit => "degF",
            Unit::Count => "count",
            Unit::Percent => "%",
            Unit::Dimensionless => "1",
            Unit::Other(s) => s,
        }
    }
}

impl fmt::Debug for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}
impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}
impl TryFrom<String> for Unit {
    type Error = ReadingError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<Unit> for String {
    fn from(u: Unit) -> Self {
        u.symbol().to_owned()
    }
}
impl FromStr for Unit {
    type Err = ReadingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// What a value means over time; it decides how readings roll up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A running total that only grows, apart from resets (a water counter).
    Cumulative,
    /// The amount used in the interval that starts at the reading's time (a half-hour CSV slot),
    /// so an interval rolls up into the bucket where it begins.
    Interval,
    /// A level at an instant (a temperature).
    Gauge,
}

impl Kind {
    /// The canonical name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cumulative => "cumulative",
            Kind::Interval => "interval",
            Kind::Gauge => "gauge",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = ReadingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cumulative" | "counter" | "total" | "meter" => Ok(Kind::Cumulative),
            "interval" | "delta" | "amount" | "consumption" | "sum" => Ok(Kind::Interval),
            "gauge" | "level" | "instant" | "sample" => Ok(Kind::Gauge),
            _ => Err(ReadingError::UnknownKind(s.to_owned())),
        }
    }
}

/// Where readings came from (`sst-cloud`, `csv`, `pi-logger`, `mbed`): 1 to 64 lower-case letters,
/// digits, `-`, `_` or `.`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceName(SmolStr);

impl SourceName {
    /// Validates and builds a source name.
    pub fn new(name: &str) -> Result<Self, ReadingError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
            });
        if ok {
            Ok(Self(SmolStr::new(name)))
        } else {
            Err(ReadingError::InvalidSource(name.to_owned()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_newtype_impls!(SourceName);

/// A small, sorted set of tags (`location`, `water_temperature`, `line`...). Shared on clone,
/// since a decoder stamps the same tags on every reading of a file.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct Tags(Option<Arc<BTreeMap<String, String>>>);

impl Tags {
    /// The most tags a reading may carry (Timestream allows more; this keeps items small).
    pub const MAX: usize = 8;

    /// Validates and builds a tag set.
    pub fn new<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ReadingError> {
        let map: BTreeMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::try_from(map)
    }

    /// No tags.
    pub fn empty() -> Self {
        Self(None)
    }

    /// The value of one tag.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.as_ref()?.get(key).map(String::as_str)
    }

    /// The tags in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// How many tags there are.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy with one more tag (or one replaced).
    pub fn with(&self, key: &str, value: &str) -> Result<Self, ReadingError> {
        let mut map: BTreeMap<String, String> = self.0.as_deref().cloned().unwrap_or_default();
        map.insert(key.to_owned(), value.to_owned());
        Self::try_from(map)
    }

    fn check(key: &str, value: &str) -> Result<(), ReadingError> {
        let bad = |why| ReadingError::InvalidTag {
            key: key.to_owned(),
            why,
        };
        let mut chars = key.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
            return Err(bad("a key starts with a lower-case letter"));
        }
        if key.len() > 64
            || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(bad(
                "a key has at most 64 lower-case letters, digits or '_'",
            ));
        }
        if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
            return Err(bad("a value has 1-256 bytes and no control characters"));
        }
        Ok(())
    }
}

impl TryFrom<BTreeMap<String, String>> for Tags {
    type Error = ReadingError;
    fn try_from(map: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        if map.len() > Self::MAX {
            return Err(ReadingError::TooManyTags(map.len()));
        }
        for (k, v) in &map {
            Self::check(k, v)?;
        }
        Ok(if map.is_empty() {
            Self(None)
        } else {
            Self(Some(Arc::new(map)))
        })
    }
}
impl From<Tags> for BTreeMap<String, String> {
    fn from(t: Tags) -> Self {
        t.0.map(|m| (*m).clone()).unwrap_or_default()
    }
}
impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// One reading: the value of one measure of one meter at one instant.
///
/// Readings are keyed by (meter, measure, time): writing the same key twice stores one reading.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ReadingRepr")]
pub struct Reading {
    meter: MeterId,
    measure: MeasureName,
    value: f64,
    unit: Unit,
    kind: Kind,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    time: DateTime<Utc>,
    source: SourceName,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    tags: Tags,
}

/// The unvalidated wire shape of a reading; deserialisation validates it into a [`Reading`].
#[derive(Deserialize)]
struct ReadingRepr {
    meter: MeterId,
    measure: MeasureName,
    value: f64,
    unit: Unit,
    kind: Kind,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    time: DateTime<Utc>,
    source: SourceName,
    #[serde(default)]
    tags: Tags,
}

impl TryFrom<ReadingRepr> for Reading {
    type Error = ReadingError;
    fn try_from(r: ReadingRepr) -> Result<Self, Self::Error> {
        Ok(Reading::new(
            r.meter, r.measure, r.value, r.unit, r.kind, r.time, r.source,
        )?
        .with_tags(r.tags))
    }
}

/// The first instant refused, 2200-01-01T00:00:00Z in epoch seconds: far enough for forecasts,
/// near enough to catch unit mix-ups (epoch milliseconds read as seconds land in the year 50,000).
/// A constant because this check runs once per decoded row.
const MAX_EPOCH_SECS: i64 = 7_258_118_400;

impl Reading {
    /// Builds a reading, checking the value against the kind and the time against the accepted
    /// range. The parts are already valid by their own types.
    #[inline]
    pub fn new(
        meter: MeterId,
        measure: MeasureName,
        value: f64,
        unit: Unit,
        kind: Kind,
        time: DateTime<Utc>,
        source: SourceName,
    ) -> Result<Self, ReadingError> {
        if !value.is_finite() {
            return Err(ReadingError::NonFiniteValue(value));
        }
        if kind == Kind::Cumulative && value < 0.0 {
            return Err(ReadingError::NegativeCumulative(value));
        }
        Self::check_time(time)?;
        Ok(Self {
            meter,
            measure,
            value,
            unit,
            kind,
            time,
            source,
            tags: Tags::empty(),
        })
    }

    /// Whether an instant is one meterflow accepts.
    #[inline]
    pub fn check_time(time: DateTime<Utc>) -> Result<(), ReadingError> {
        // Compared as dates and times, not epoch seconds: this runs once per decoded row and
        // turning a date into seconds is the dearer operation.
        static LIMITS: LazyLock<(DateTime<Utc>, DateTime<Utc>)> = LazyLock::new(|| {
            (
                DateTime::UNIX_EPOCH,
                DateTime::from_timestamp(MAX_EPOCH_SECS, 0).unwrap_or(DateTime::<Utc>::MAX_UTC),
            )
        });
        let (min, max) = *LIMITS;
        if time < min || time >= max {
            return Err(ReadingError::TimeOutOfRange(time.to_rfc3339()));
        }
        Ok(())
    }

    /// The same reading with these tags.
    #[inline]
    pub fn with_tags(mut self, tags: Tags) -> Self {
        self.tags = tags;
        self
    }

    /// The meter.
    pub fn meter(&self) -> &MeterId {
        &self.meter
    }
    /// The measure.
    pub fn measure(&self) -> &MeasureName {
        &self.measure
    }
    /// The value, finite (and not negative for a cumulative counter).
    pub fn value(&self) -> f64 {
        self.value
    }
    /// The unit.
    pub fn unit(&self) -> &Unit {
        &self.unit
    }
    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// The instant, in UTC.
    pub fn time(&self) -> DateTime<Utc> {
        self.time
    }
    /// The source.
    pub fn source(&self) -> &SourceName {
        &self.source
    }
    /// The tags.
    pub fn tags(&self) -> &Tags {
        &self.tags
    }
}

impl fmt::Debug for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}@{} = {} {} ({}, {}, {:?})",
            self.meter,
            self.measure,
            self.time.to_rfc3339(),
            self.value,
            self.unit,
            self.kind,
            self.source,
            self.tags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn reading(value: f64, kind: Kind, time: DateTime<Utc>) -> Result<Reading, ReadingError> {
        Reading::new(
            MeterId::new("m1")?,
            MeasureName::new("volume")?,
            value,
            Unit::Litre,
            kind,
            time,
            SourceName::new("test")?,
        )
    }

    #[test]
    fn meter_ids_are_validated() {
        assert_eq!(MeterId::new(""), Err(ReadingError::EmptyMeterId));
        assert_eq!(MeterId::new("   "), Err(ReadingError::EmptyMeterId));
        assert!(matches!(
            MeterId::new(" a"),
            Err(ReadingError::MeterIdMalformed(_))
        ));
        assert!(matches!(
            MeterId::new("a\u{0}b"),
            Err(ReadingError::MeterIdMalformed(_))
        ));
        assert_eq!(
            MeterId::new(&"x".repeat(129)),
            Err(ReadingError::MeterIdTooLong(129))
        );
        assert_eq!(MeterId::new("EE00027").unwrap().as_str(), "EE00027");
    }

    #[test]
    fn measure_names_are_validated() {
        for bad in [
            "",
            "1abc",
            "a b",
            "ts_x",
            "measure_value::x",
            "time",
            &"a".repeat(65),
        ] {
            assert!(MeasureName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(MeasureName::new("volume").is_ok());
        assert!(MeasureName::new("energy.import-kwh_1").is_ok());
    }

    #[test]
    fn units_parse_aliases_and_keep_unknown_symbols() {
        assert_eq!(Unit::parse("litres").unwrap(), Unit::Litre);
        assert_eq!(Unit::parse("°C").unwrap(), Unit::Celsius);
        assert_eq!(Unit::parse("KWH").unwrap(), Unit::KilowattHour);
        assert_eq!(Unit::parse("ppm").unwrap().symbol(), "ppm");
        assert!(Unit::parse("a b").is_err());
        assert!(Unit::parse(&"x".repeat(17)).is_err());
    }

    #[test]
    fn readings_reject_invalid_values_and_times() {
        assert!(matches!(
            reading(f64::NAN, Kind::Gauge, t(0)),
            Err(ReadingError::NonFiniteValue(_))
        ));
        assert!(matches!(
            reading(-1.0, Kind::Cumulative, t(0)),
            Err(ReadingError::NegativeCumulative(_))
        ));
        assert!(reading(-1.0, Kind::Gauge, t(0)).is_ok());
        assert!(matches!(
            reading(1.0, Kind::Gauge, t(-1)),
            Err(ReadingError::TimeOutOfRange(_))
        ));
        // Epoch milliseconds mistaken for seconds land far in the future.
        assert!(matches!(
            reading(1.0, Kind::Gauge, t(1_700_000_000_000)),
            Err(ReadingError::TimeOutOfRange(_))
        ));
    }

    #[test]
    fn tags_are_validated_and_bounded() {
        assert!(Tags::new([("location", "home")]).is_ok());
        assert!(Tags::new([("Location", "home")]).is_err());
        assert!(Tags::new([("location", "")]).is_err());
        let many: Vec<(String, String)> = (0..9).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(Tags::new(many), Err(ReadingError::TooManyTags(9)));
    }

    #[test]
    fn deserialisation_validates() {
        let ok = r#"{"meter":"m","measure":"volume","value":1,"unit":"L","kind":"cumulative","time":0,"source":"x"}"#;
        let r: Reading = serde_json::from_str(ok).unwrap();
        assert_eq!(r.unit(), &Unit::Litre);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Reading>(&json).unwrap(), r);
        let neg = ok.replace("\"value\":1", "\"value\":-5");
        assert!(serde_json::from_str::<Reading>(&neg).is_err());
    }
}
