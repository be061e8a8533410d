//! Writes the CloudFormation templates: `cargo run -p infra [-- --out DIR]`.
// reason: a command-line tool's output goes to stdout by design.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use infra::{render, synth, StackOptions, VARIANTS};

/// Synthesise meterflow's CloudFormation templates, one per history-store choice.
#[derive(Debug, Parser)]
struct Args {
    /// Where to write the templates.
    #[arg(long, default_value = "infra/out")]
    out: PathBuf,
    /// Check the templates and print nothing to disk.
    #[arg(long)]
    check: bool,
    /// Print each function's name and the template parameter of its code key, one per line
    /// (the deploy script reads these, so the names are not typed twice).
    #[arg(long)]
    functions: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.functions {
        for name in meter_core::contract::cloud::FUNCTIONS {
            println!("{name} {}", infra::stack::code_key_parameter(name));
        }
        return Ok(());
    }
    if !args.check {
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
    }
    for (history, file) in VARIANTS {
        let template = match synth(StackOptions { history }) {
            Ok(t) => t,
            Err(problems) => {
                for p in &problems {
                    eprintln!("infra: {p}");
                }
                bail!(
                    "the {file} template failed {} synthesis checks",
                    problems.len()
                );
            }
        };
        let text = render(&template);
        if args.check {
            println!("{file}: ok ({} bytes)", text.len());
            continue;
        }
        let path = args.out.join(file);
        std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {} ({} bytes)", path.display(), text.len());
    }
    Ok(())
}
