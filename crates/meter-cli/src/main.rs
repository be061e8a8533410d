//! The `meter` binary: meterflow on one machine. It imports files into the embedded SQLite store
//! and queries readings, latest values and rollups back out.
//!
//! Exit codes: 0 success; 1 failure (nothing could be done, or a fatal error); 2 usage error;
//! 3 partial success (some input was rejected or not stored, the rest landed).
// reason: a command-line tool's output goes to stdout by design.
#![allow(clippy::print_stdout)]

mod cli;
mod import;
mod mqtt;
mod output;
mod query;
mod registry;
mod serve;
mod stores;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use meter_core::contract;

use crate::cli::{Cli, Command, StoreArgs};
use crate::stores::StoreSpec;

/// The outcome of a command, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Partial,
    Failure,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::Failure => ExitCode::from(1),
            Outcome::Partial => ExitCode::from(3),
        }
    }
}

/// The store: the flag or `METER_STORE`, else the file in the per-user data folder.
fn store_spec(flag: Option<PathBuf>) -> anyhow::Result<StoreSpec> {
    if let Some(p) = flag {
        return StoreSpec::parse(p);
    }
    let base = dirs::data_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/share")))
        .context("cannot find a per-user data folder; pass --store or set METER_STORE")?;
    Ok(StoreSpec::Local(
        base.join(contract::DATA_DIR_NAME)
            .join(contract::DEFAULT_STORE_FILE),
    ))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            eprintln!("meter: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env(contract::ENV_LOG).unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let spec = store_spec(cli.store)?;
    match cli.command {
        Command::Import(args) => return import::run(&spec, args),
        Command::Query(args) => return current_thread()?.block_on(query::run(&spec, args)),
        Command::Store(StoreArgs::Init) => {
            println!("{}", current_thread()?.block_on(stores::init(&spec))?);
            return Ok(Outcome::Success);
        }
        Command::Store(StoreArgs::RebuildRollups { meter }) => {
            let meter = meter
                .map(|m| meter_core::MeterId::new(&m))
                .transpose()
                .context("METER")?;
            let said =
                current_thread()?.block_on(stores::rebuild_rollups(&spec, meter.as_ref()))?;
            println!("{said}");
            return Ok(Outcome::Success);
        }
        _ => {}
    }
    let store = spec.local(cli.command.name())?.to_owned();
    match cli.command {
        Command::Import(_) | Command::Query(_) | Command::Store(_) => {
            unreachable!("handled above")
        }
        Command::Registry(args) => {
            current_thread()?.block_on(registry::registry(&store, cli.registry.as_deref(), args))
        }
        Command::Sst(args) => {
            current_thread()?.block_on(registry::sst(&store, cli.registry.as_deref(), args))
        }
        Command::Collect(args) => {
            current_thread()?.block_on(registry::collect(&store, cli.registry.as_deref(), args))
        }
        Command::Serve(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(serve::run(&store, args))
        }
    }
}
