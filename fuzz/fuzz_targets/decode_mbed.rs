//! The mbed decoder on arbitrary bytes: every item is a reading or a rejection, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meter_core::decode::{decoder, DecodeOptions, Format};

fuzz_target!(|data: &[u8]| {
    for item in decoder(Format::Mbed, data, DecodeOptions::new("fuzz")) {
        // A rejection must say where; a fatal one ends the stream.
        if let Err(e) = item {
            assert!(!e.to_string().is_empty());
        }
    }
});
