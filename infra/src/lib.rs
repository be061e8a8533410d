//! `cargo run -p infra`: meterflow's CloudFormation, synthesised from typed Rust.
//!
//! [`cfn`] is a small typed layer (intrinsics as types, handles exposing only valid attributes),
//! [`iam`] expands declared grants into least-privilege policies, [`stack`] builds the stack, and
//! [`checks`] refuses a template with a dangling reference, a cycle, a short queue timeout, a
//! mapping without partial batch responses, a function without its log group, or a wildcard
//! grant outside the actions that need one.

pub mod cfn;
pub mod checks;
pub mod iam;
pub mod stack;

use serde_json::Value;

pub use stack::{HistoryStore, StackOptions};

/// The variants written by `cargo run -p infra`: one per history-store default.
pub const VARIANTS: [(HistoryStore, &str); 2] = [
    (HistoryStore::DynamoDb, "meterflow-dynamodb.json"),
    (HistoryStore::Timestream, "meterflow-timestream.json"),
];

/// Synthesises and checks one variant.
pub fn synth(options: StackOptions) -> Result<Value, Vec<checks::Problem>> {
    let json = stack::template(options).to_json();
    let problems = checks::check(&json);
    if problems.is_empty() {
        Ok(json)
    } else {
        Err(problems)
    }
}

/// The JSON text of a template, as written to disk (pretty, with a final newline).
pub fn render(template: &Value) -> String {
    let mut s = serde_json::to_string_pretty(template).unwrap_or_default();
    s.push('\n');
    s
}
