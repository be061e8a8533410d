//! End to end: the five seed pipelines hydrated through the local stack. The test target
//! `tests/pipelines.rs` drives them (`scripts/e2e.sh`); this library holds [`deploy`], the
//! local deployment of the synthesised template into the AWS emulator.

pub mod deploy;
