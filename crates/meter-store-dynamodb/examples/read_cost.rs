//! What one meter's queries read from DynamoDB as the table grows, from the store's own count
//! of the items Query and GetItem returned and of the read units DynamoDB bills for them (each
//! request's item bytes rounded up to 4 KB; the emulator's own capacity figures ignore item
//! sizes), against the local emulator (`AWS_ENDPOINT_URL`; `scripts/bench-dynamodb.sh` starts
//! it).
//!
//! The meter under test holds a year of 5-minute water-counter readings (105,120). Other
//! meters join the table (a gauge each, two readings) until it holds 100, 1,000 and 10,000
//! meters; at each size the same four requests are made: a year of daily rollups (from stored
//! days), a month of hourly rollups (from stored hours), a day of readings, and the same year of
//! daily rollups walked from raw readings (what every request cost before stored rollups).
//! On-demand reads cost $0.125 per million read request units (eventually consistent reads of
//! up to 4 KB are half a unit).
//!
//! `cargo run --release -p meter-store-dynamodb --example read_cost [SIZES]` (default
//! `100,1000,10000`).
// reason: a benchmark prints its figures.
#![allow(clippy::print_stdout)]

use std::sync::atomic::Ordering;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use meter_core::ports::{
    rollup_from_readings, RangeQuery, RangeReader, ReadingReader, ReadingWriter, RollupQuery,
};
use meter_core::time::{parse_date, TimeRange};
use meter_core::{Granularity, Kind, MeasureName, MeterId, Reading, SourceName, Unit};
use meter_store_dynamodb::{create_tables, DynamoReadings};

const PRICE_PER_MILLION_UNITS: f64 = 0.125;
const TARGET: &str = "T0001";

fn reading(meter: &str, measure: &str, t: DateTime<Utc>, v: f64, kind: Kind) -> Reading {
    let unit = if kind == Kind::Gauge {
        Unit::parse("degC").expect("a unit")
    } else {
        Unit::Litre
    };
    Reading::new(
        MeterId::new(meter).expect("an id"),
        MeasureName::new(measure).expect("a measure"),
        v,
        unit,
        kind,
        t,
        SourceName::new("bench").expect("a source"),
    )
    .expect("a reading")
}

/// Items and read units a request read.
async fn cost<F: std::future::Future<Output = anyhow::Result<()>>>(
    store: &DynamoReadings,
    f: F,
) -> anyhow::Result<(u64, f64)> {
    let c = store.read_cost();
    let units = || *c.billed_units.lock().unwrap_or_else(|e| e.into_inner());
    let (items, u) = (c.items.load(Ordering::Relaxed), units());
    f.await?;
    Ok((c.items.load(Ordering::Relaxed) - items, units() - u))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "100,1000,10000".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let sdk = meter_aws::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let prefix = format!("bench-read-{}-", std::process::id());
    let [_, table, _, _] = create_tables(&client, &prefix).await?;
    let store = DynamoReadings::new(client.clone(), &table).deferring_rollups();

    let start: DateTime<Utc> = "2024-01-01T00:00:00Z".parse()?;
    let year: Vec<Reading> = (0..366 * 288)
        .map(|i| {
            let t = start + Duration::minutes(5 * i);
            reading(
                TARGET,
                "volume",
                t,
                10_000.0 + i as f64 * 0.7,
                Kind::Cumulative,
            )
        })
        .collect();
    let began = std::time::Instant::now();
    for chunk in year.chunks(store.max_batch()) {
        let report = store.write(chunk).await?;
        anyhow::ensure!(report.is_complete(), "{:?}", report.failures.first());
    }
    store.flush().await?;
    eprintln!(
        "wrote {} readings of {TARGET} in {:.0} s",
        year.len(),
        began.elapsed().as_secs_f64()
    );

    let meter = MeterId::new(TARGET)?;
    let volume = MeasureName::new("volume")?;
    let days = TimeRange::local_days(
        parse_date("2024-01-01")?,
        parse_date("2024-12-31")?,
        Tz::UTC,
    )?;
    let month = TimeRange::local_days(
        parse_date("2024-06-01")?,
        parse_date("2024-06-30")?,
        Tz::UTC,
    )?;
    let daily = RollupQuery::new(
        meter.clone(),
        Some(volume.clone()),
        days,
        Granularity::Day,
        Tz::UTC,
    );
    let hourly = RollupQuery::new(
        meter.clone(),
        Some(volume.clone()),
        month,
        Granularity::Hour,
        Tz::UTC,
    );
    let day = RangeQuery {
        meter: meter.clone(),
        measure: Some(volume.clone()),
        range: TimeRange::local_days(
            parse_date("2024-06-01")?,
            parse_date("2024-06-01")?,
            Tz::UTC,
        )?,
        limit: 1000,
        after: None,
    };

    println!("| meters in the table | year of daily rollups: items | read units | month of hourly: items | read units | day of readings: items | read units | year of daily from raw readings: items | read units |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut joined = 1;
    let mut per_request = Vec::new();
    for size in sizes {
        let crowd: Vec<Reading> = (joined..size)
            .flat_map(|m| {
                let id = format!("M{m:05}");
                [0, 1].map(|h| {
                    reading(
                        &id,
                        "temperature",
                        start + Duration::hours(h),
                        20.0,
                        Kind::Gauge,
                    )
                })
            })
            .collect();
        for chunk in crowd.chunks(store.max_batch()) {
            let report = store.write(chunk).await?;
            anyhow::ensure!(report.is_complete(), "{:?}", report.failures.first());
        }
        store.flush().await?;
        joined = joined.max(size);
        let a = cost(&store, async {
            let r = store.rollup(&daily).await?;
            anyhow::ensure!(r.buckets.len() == 366 && r.buckets.iter().all(|b| b.count == 288));
            Ok(())
        })
        .await?;
        let b = cost(&store, async {
            anyhow::ensure!(store.rollup(&hourly).await?.buckets.len() == 720);
            Ok(())
        })
        .await?;
        let c = cost(&store, async {
            anyhow::ensure!(store.range(&day).await?.readings.len() == 288);
            Ok(())
        })
        .await?;
        let d = cost(&store, async {
            let info = store.meter(&meter).await?.expect("the meter");
            let s = info.pick(Some(&volume))?.clone();
            let raw = rollup_from_readings(&store, &daily, (s.measure, s.unit, s.kind)).await?;
            anyhow::ensure!(raw.buckets.len() == 366);
            Ok(())
        })
        .await?;
        println!(
            "| {size} | {} | {:.1} | {} | {:.1} | {} | {:.1} | {} | {:.1} |",
            a.0, a.1, b.0, b.1, c.0, c.1, d.0, d.1
        );
        per_request = vec![
            ("year of daily rollups", a.1),
            ("month of hourly rollups", b.1),
            ("day of readings", c.1),
            ("year of daily from raw readings", d.1),
        ];
    }
    println!();
    println!("| request | read units | cost per million requests (on-demand, $0.125 per million read units) |");
    println!("|---|---|---|");
    for (what, units) in per_request {
        println!(
            "| {what} | {units:.1} | ${:.2} |",
            units * PRICE_PER_MILLION_UNITS
        );
    }
    Ok(())
}
