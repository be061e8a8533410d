//! Hostile input to every decoder: deeply nested JSON, a huge cell, binary bytes and an
//! oversized document each end as rejections that say what was wrong, never as a panic, a
//! stack overflow or unbounded memory; good records next to them still land.

use meter_core::decode::{decoder, DecodeOptions, Format};

const ALL: [Format; 5] = [
    Format::WideCsv,
    Format::LongCsv,
    Format::PiJson,
    Format::Mbed,
    Format::SstCounters,
];

/// (readings, rejection messages) of one input.
fn run(format: Format, input: &[u8]) -> (usize, Vec<String>) {
    let mut ok = 0;
    let mut rejected = Vec::new();
    for item in decoder(format, input, DecodeOptions::new("hostile")) {
        match item {
            Ok(_) => ok += 1,
            Err(e) => rejected.push(e.to_string()),
        }
    }
    (ok, rejected)
}

#[test]
fn deeply_nested_json_is_rejected_without_recursing_away() {
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    for format in [Format::PiJson, Format::Mbed, Format::SstCounters] {
        let (ok, rejected) = run(format, deep.as_bytes());
        assert_eq!(ok, 0, "{format:?}");
        assert!(!rejected.is_empty(), "{format:?}");
        assert!(
            rejected[0].contains("hostile"),
            "names the file: {}",
            rejected[0]
        );
    }
}

#[test]
fn a_huge_line_is_rejected_without_being_held_and_the_next_line_lands() {
    let cell = "9".repeat(32 * 1024 * 1024);
    let long =
        format!("meter,time,value\nm1,2024-01-01T00:00:00Z,{cell}\nm1,2024-01-01T01:00:00Z,2\n");
    let (ok, rejected) = run(Format::LongCsv, long.as_bytes());
    assert_eq!(ok, 1);
    assert_eq!(rejected.len(), 1);
    let first = &rejected[0];
    assert!(first.starts_with("hostile:2"), "{first}");
    assert!(
        first.contains("longer than") && first.len() < 2048,
        "{first}"
    );

    let mut header = String::from("Meter,Date");
    for slot in 0..48 {
        header.push_str(&format!(",{}:{:02}", slot / 2, (slot % 2) * 30));
    }
    let wide = format!(
        "{header}\nEE1,2019-01-01,{cell}{}\nEE1,2019-01-02{}\n",
        ",1".repeat(47),
        ",1".repeat(48)
    );
    let (ok, rejected) = run(Format::WideCsv, wide.as_bytes());
    assert_eq!(ok, 48, "the good day lands");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].starts_with("hostile:2") && rejected[0].len() < 2048);
}

#[test]
fn binary_bytes_are_rejected_by_every_decoder() {
    // A deterministic mix of NULs, invalid UTF-8 and control bytes, with newlines.
    let binary: Vec<u8> = (0u32..64 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for format in ALL {
        let (ok, rejected) = run(format, &binary);
        assert_eq!(ok, 0, "{format:?}");
        assert!(
            !rejected.is_empty(),
            "{format:?}: binary input must be reported"
        );
    }
}

#[test]
fn an_oversized_json_document_is_refused_before_it_is_held() {
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(9 * 1024 * 1024));
    for format in [Format::PiJson, Format::Mbed, Format::SstCounters] {
        let (ok, rejected) = run(format, big.as_bytes());
        assert_eq!(ok, 0, "{format:?}");
        assert!(
            rejected.iter().any(|r| r.contains("larger than")),
            "{format:?}: {rejected:?}"
        );
    }
}
