//! Benchmark drivers for `scripts/bench.sh`: a long-CSV generator, the decode-only loop of the
//! long-CSV decoder, and the raw `csv` byte-record loop it is compared with (the practical
//! ceiling). Each measurement prints one JSON line with its time and the process's peak memory.
// reason: a benchmark driver reports on stdout.
#![allow(clippy::print_stdout)]

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::time::Instant;

use anyhow::{bail, Context};
use meter_core::decode::long_csv::LongCsvDecoder;
use meter_core::decode::DecodeOptions;

fn usage() -> anyhow::Result<()> {
    bail!(
        "usage: meter-bench gen ROWS PATH time|meter|counter | decode PATH | raw PATH \
         | fill STORE METERS DAYS"
    )
}

/// Fills a store with `meters` temperature sensors read every 5 minutes for `days` days up to
/// 2025-01-01 (a year of 5-minute readings is 105,120 per meter), for the API benchmark.
fn fill(store: &str, meters: u32, days: i64) -> anyhow::Result<()> {
    use meter_core::{Kind, MeasureName, MeterId, Reading, SourceName, Unit};
    let started = Instant::now();
    let store = meter_store_sqlite::SqliteStore::open(store)?;
    let end = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")?.to_utc();
    let start = end - chrono::Duration::days(days);
    let source = SourceName::new("bench")?;
    let (temperature, volume) = (
        MeasureName::new("temperature")?,
        MeasureName::new("volume")?,
    );
    let mut total = 0u64;
    for m in 0..meters {
        let meter = MeterId::new(&format!("M{m:03}"))?;
        let mut batch = Vec::with_capacity(50_000);
        let mut t = start;
        let mut i = 0u64;
        // Even meters are thermometers; odd ones water meters, a counter in litres.
        let counter = m % 2 == 1;
        let mut litres = 1000.0 * f64::from(m);
        while t < end {
            let step = ((i * 7 + u64::from(m)) % 200) as f64 / 10.0;
            litres += step;
            let (measure, value, unit, kind) = if counter {
                (&volume, litres, Unit::Litre, Kind::Cumulative)
            } else {
                (&temperature, 15.0 + step, Unit::Celsius, Kind::Gauge)
            };
            batch.push(Reading::new(
                meter.clone(),
                measure.clone(),
                value,
                unit,
                kind,
                t,
                source.clone(),
            )?);
            if batch.len() == 50_000 {
                total += store.write_batch(&batch)?.written as u64;
                batch.clear();
            }
            t += chrono::Duration::minutes(5);
            i += 1;
        }
        total += store.write_batch(&batch)?.written as u64;
    }
    println!(
        "{{\"mode\":\"fill\",\"rows\":{total},\"secs\":{:.1}}}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Peak resident memory of this process, in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// How a generated file orders its rows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// All meters at t, then all at t+5 min: how collectors and most exports write.
    Time,
    /// Each meter's whole run, then the next meter's.
    Meter,
    /// Time order, and each meter a water counter (`kind` cumulative, litres rising).
    Counter,
}

/// A long CSV of 1,000 meters read every 5 minutes. Both orders hold exactly the same rows
/// (row `k` is meter `k % 1000` at step `k / 1000`), so they compare like for like.
fn generate(rows: u64, path: &str, order: Order) -> anyhow::Result<()> {
    const METERS: u64 = 1000;
    let steps = rows.div_ceil(METERS);
    let mut out = BufWriter::with_capacity(
        1 << 20,
        File::create(path).with_context(|| path.to_owned())?,
    );
    let counter = order == Order::Counter;
    if counter {
        writeln!(out, "meter,time,value,unit,kind")?;
    } else {
        writeln!(out, "meter,time,value,unit")?;
    }
    let start = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")?.timestamp();
    let mut row = |m: u64, i: u64| -> anyhow::Result<()> {
        if i * METERS + m >= rows {
            return Ok(());
        }
        // A fixed mix of (meter, step), so a row's value does not depend on the order.
        let mut x = (m << 32 | i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 29;
        let t = chrono::DateTime::from_timestamp(start + (i as i64) * 300, 0).context("time")?;
        let value = (x % 100_000) as f64 / 1000.0;
        let stamp = t.format("%Y-%m-%dT%H:%M:%SZ");
        if counter {
            // The counter's level is the sum of its steps so far, whatever order rows come in.
            let litres = 1000.0 * m as f64 + 5.0 * i as f64 + (x % 5) as f64;
            writeln!(out, "MTR{m:06},{stamp},{litres},L,cumulative")?;
        } else {
            writeln!(out, "MTR{m:06},{stamp},{value},kWh")?;
        }
        Ok(())
    };
    match order {
        Order::Time | Order::Counter => {
            for i in 0..steps {
                for m in 0..METERS {
                    row(m, i)?;
                }
            }
        }
        Order::Meter => {
            for m in 0..METERS {
                for i in 0..steps {
                    row(m, i)?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn report(
    mode: &str,
    path: &str,
    rows: u64,
    rejected: u64,
    started: Instant,
) -> anyhow::Result<()> {
    let secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(path)?.len() as f64;
    println!(
        "{{\"mode\":\"{mode}\",\"rows\":{rows},\"rejected\":{rejected},\"secs\":{secs:.3},\"rows_per_s\":{:.0},\"mb_per_s\":{:.1},\"peak_rss_mib\":{:.1}}}",
        rows as f64 / secs,
        bytes / 1e6 / secs,
        peak_rss_mib()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["gen", rows, path, "time"] => generate(rows.parse()?, path, Order::Time),
        ["gen", rows, path, "meter"] => generate(rows.parse()?, path, Order::Meter),
        ["gen", rows, path, "counter"] => generate(rows.parse()?, path, Order::Counter),
        ["fill", store, meters, days] => fill(store, meters.parse()?, days.parse()?),
        ["decode", path] => {
            let started = Instant::now();
            let file = BufReader::with_capacity(256 * 1024, File::open(path)?);
            let (mut ok, mut bad) = (0u64, 0u64);
            let mut checksum = 0.0f64;
            for item in LongCsvDecoder::new(file, DecodeOptions::new(path)) {
                match item {
                    Ok(r) => {
                        ok += 1;
                        checksum += r.value();
                    }
                    Err(_) => bad += 1,
                }
            }
            std::hint::black_box(checksum);
            report("decode", path, ok, bad, started)
        }
        ["raw", path] => {
            let started = Instant::now();
            let file = BufReader::with_capacity(256 * 1024, File::open(path)?);
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(file);
            let mut record = csv::ByteRecord::new();
            let mut rows = 0u64;
            let mut bytes = 0usize;
            while reader.read_byte_record(&mut record)? {
                rows += 1;
                bytes += record.as_slice().len();
            }
            std::hint::black_box(bytes);
            report("raw-csv", path, rows, 0, started)
        }
        _ => usage(),
    }
}
