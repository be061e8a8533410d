//! What writing readings to Timestream costs, our layout against seed 000's, from the requests
//! actually sent to the local emulator (`AWS_ENDPOINT_URL`; `scripts/bench.sh` starts it).
//!
//! Seed 000 wrote one single-measure record per counter, each run one request; a meter read on
//! its own is one record per request. Ours batches up to 100 multi-measure records with the
//! shared time and dimensions in `CommonAttributes`. Timestream bills each request in 1 KiB
//! write units of metered bytes (8 per timestamp, dimension names and values, measure names,
//! 8 per value), at $0.50 per million units.
//!
//! `cargo run --release -p meter-store-timestream --example write_cost [READINGS]`
// reason: a benchmark prints its figures.
#![allow(clippy::print_stdout)]

use aws_sdk_timestreamwrite::types::{Dimension, MeasureValueType, Record, TimeUnit};
use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use meter_aws_testing::CountCalls;
use meter_core::ports::ReadingWriter;
use meter_core::{Kind, MeasureName, MeterId, Reading, SourceName, Tags, Unit};
use meter_store_timestream::layout::{seed_record_bytes, write_units};
use meter_store_timestream::{create_table, Retention, TimestreamConfig, TimestreamReadings};

const PRICE_PER_MILLION_UNITS: f64 = 0.50;

/// Houses with a cold and a hot counter each, polled every 10 minutes (seed 000's schedule).
fn readings(n: usize, start: DateTime<Utc>) -> Vec<Reading> {
    (0..n)
        .map(|i| {
            let (poll, counter) = (i / 100, i % 100);
            Reading::new(
                MeterId::new(&format!("{}", 4_000_000 + counter)).unwrap(),
                MeasureName::new("volume").unwrap(),
                (100_000 + poll * 7 + counter) as f64,
                Unit::Litre,
                Kind::Cumulative,
                start + Duration::minutes(10 * poll as i64),
                SourceName::new("sst-cloud").unwrap(),
            )
            .unwrap()
            .with_tags(
                Tags::new([
                    ("service", "water"),
                    ("location", "home"),
                    (
                        "water_temperature",
                        if counter % 2 == 0 { "cold" } else { "hot" },
                    ),
                    ("counter_id", &(4_000_000 + counter).to_string()),
                    ("house", &(9000 + counter / 2).to_string()),
                ])
                .unwrap(),
            )
        })
        .collect()
}

struct Row {
    layout: &'static str,
    requests: usize,
    http_bytes: usize,
    metered_bytes: u64,
    units: u64,
    readings: usize,
}

impl Row {
    fn print(&self) {
        let per_million = 1e6 / self.readings as f64;
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.0} | ${:.3} |",
            self.layout,
            self.requests,
            self.http_bytes as f64 / self.readings as f64,
            self.metered_bytes as f64 / self.readings as f64,
            self.units as f64 * per_million,
            self.units as f64 * per_million * PRICE_PER_MILLION_UNITS / 1e6,
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "set AWS_ENDPOINT_URL to the emulator (scripts/moto.sh start)"
    );
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("READINGS is a number"))
        .unwrap_or(10_000);
    let sdk = meter_aws::sdk_config().await;
    let db = format!("cost-{}", std::process::id());
    create_table(&sdk, &db, "readings", Retention::default())
        .await
        .unwrap();
    let start = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - Duration::days(20);
    let batch = readings(n, start);
    let client = |calls: &CountCalls| {
        aws_sdk_timestreamwrite::Client::from_conf(
            aws_sdk_timestreamwrite::config::Builder::from(&sdk)
                .interceptor(calls.clone())
                .build(),
        )
    };
    let query = aws_sdk_timestreamquery::Client::new(&sdk);

    println!("| layout | requests | HTTP body bytes per reading | metered bytes per reading | write units per million readings | cost per million readings |");
    println!("|---|---|---|---|---|---|");

    // Ours: 100 readings a request (an import, or a fetch of many counters), then one house's
    // two counters a request (a fetch job per account).
    for (layout, size) in [
        ("meterflow, 100 readings a request", 100),
        ("meterflow, one house (2 counters) a request", 2),
    ] {
        let calls = CountCalls::default();
        let store = TimestreamReadings::with_clients(
            client(&calls),
            query.clone(),
            TimestreamConfig::new(&db, "readings"),
        );
        for chunk in batch.chunks(size) {
            assert!(store.write(chunk).await.unwrap().is_complete());
        }
        Row {
            layout,
            requests: calls.get("WriteRecords"),
            http_bytes: calls.bytes("WriteRecords"),
            metered_bytes: store.stats().metered_bytes,
            units: store.stats().write_units,
            readings: n,
        }
        .print();
    }

    // Seed 000's records, one reading per request.
    let calls = CountCalls::default();
    let seed = client(&calls);
    let (mut units, mut metered) = (0, 0);
    for r in &batch {
        let dim = |k: &str, v: &str| Dimension::builder().name(k).value(v).build().unwrap();
        let tag = |k: &str| r.tags().get(k).unwrap_or_default().to_owned();
        let common = Record::builder()
            .dimensions(dim("service", "water"))
            .dimensions(dim("location", &tag("location")))
            .measure_name("volume")
            .measure_value_type(MeasureValueType::Bigint)
            .time(r.time().timestamp().to_string())
            .time_unit(TimeUnit::Seconds)
            .build();
        let record = Record::builder()
            .measure_value(format!("{}", r.value() as i64))
            .dimensions(dim("water_temperature", &tag("water_temperature")))
            .build();
        seed.write_records()
            .database_name(&db)
            .table_name("readings")
            .common_attributes(common)
            .records(record)
            .send()
            .await
            .unwrap();
        metered += seed_record_bytes(r) as u64;
        units += write_units(seed_record_bytes(r));
    }
    Row {
        layout: "seed 000: one record a request",
        requests: calls.get("WriteRecords"),
        http_bytes: calls.bytes("WriteRecords"),
        metered_bytes: metered,
        units,
        readings: n,
    }
    .print();
}
