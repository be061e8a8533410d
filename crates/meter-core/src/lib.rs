//! meterflow's domain, shared by every adapter, function and the `meter` binary.
//!
//! It holds the validated reading types ([`Reading`] and its parts), time parsing and rollups in an
//! IANA time zone ([`rollup`]), the ports every backend implements ([`ports`]), streaming decoders
//! for every input format the seed systems used ([`decode`]), the one ingest pipeline from decoder
//! to store to report ([`ingest`]), batching to backend request limits ([`batch`]), and the names shared by the code and the deployment template ([`contract`]).
//!
//! It knows nothing of AWS, HTTP clients or databases: adapters depend on it, never the reverse.
#![deny(missing_docs)]

pub mod aggregate;
pub mod batch;
pub mod binned;
pub mod choice;
pub mod collect;
pub mod contract;
pub mod counter;
pub mod decode;
pub mod ingest;
pub mod ports;
pub mod press_counts;
pub mod reading;
pub mod rollup;
pub mod time;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use reading::{Kind, MeasureName, MeterId, Reading, ReadingError, SourceName, Tags, Unit};
pub use rollup::{Bucket, Granularity, Rollup, RollupRule};
pub use time::TimeRange;
