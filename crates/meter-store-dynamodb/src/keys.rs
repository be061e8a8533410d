//! The partition keys of the readings table's item types, in one place.
//!
//! A series' readings live under `<meter>#<measure>`. Every other item type's key ends in text
//! no reading key can end in (a measure name has only letters, digits, `_`, `.` and `-`, so
//! the part after a reading key's last `#` never holds an `@`), so no meter or measure name can
//! make two item types share a partition.

/// A series' readings: `ts` is the reading's time in epoch milliseconds.
pub(crate) fn readings(meter: &str, measure: &str) -> String {
    format!("{meter}#{measure}")
}

/// A meter's catalogue: one item per series (`ts` is the series' numeric id).
pub(crate) fn catalogue(meter: &str) -> String {
    format!("{meter}@series")
}

/// A series' hourly aggregates: `ts` is the UTC hour's start.
pub(crate) fn hours(series: &str) -> String {
    format!("{series}@hour")
}

/// A series' daily aggregates in its zone: `ts` is the local day's start.
pub(crate) fn days(series: &str) -> String {
    format!("{series}@day")
}

/// Partitions the list of meters is spread over, so registering meters does not load one
/// partition and listing them pages.
pub(crate) const METER_SHARDS: u64 = 16;

/// One partition of the list of meters: `ts` is the meter's numeric id.
pub(crate) fn meter_list(shard: u64) -> String {
    format!("@meters#{shard:02}")
}

/// The catalogue partition tables written before the per-meter catalogue used (read once by
/// the rebuild that moves it).
pub(crate) const LEGACY_SERIES: &str = "#series";

/// A numeric id for a name (FNV-1a, 52 bits so it is exact as a DynamoDB number).
pub(crate) fn id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h & ((1 << 52) - 1)
}

/// The list partition a meter is registered in.
pub(crate) fn shard_of(meter: &str) -> u64 {
    id(meter) % METER_SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_reading_key_is_another_item_types_key() {
        // A meter named like another type's key still gets a reading key of its own.
        assert_ne!(readings("m@series", "x"), catalogue("m"));
        assert_ne!(
            readings("m#volume", "hour"),
            hours(&readings("m", "volume"))
        );
        assert_ne!(readings("@meters", "x01"), meter_list(1));
        assert!(shard_of("M042") < METER_SHARDS);
    }
}
