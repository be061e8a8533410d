//! Synthesis-time checks over the template JSON: what CloudFormation would refuse (or accept and
//! regret) is caught before a deploy.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::iam::WILDCARD_ACTIONS;

/// A problem found in a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Problem(pub String);

/// Every `Ref`, `GetAtt` and `${...}` target inside `v`.
fn references(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("Ref") {
                out.insert(r.clone());
            }
            if let Some(Value::Array(a)) = m.get("Fn::GetAtt") {
                if let Some(Value::String(r)) = a.first() {
                    out.insert(r.clone());
                }
            }
            if let Some(sub) = m.get("Fn::Sub") {
                let text = match sub {
                    Value::String(s) => Some(s.as_str()),
                    Value::Array(a) => a.first().and_then(Value::as_str),
                    _ => None,
                };
                if let Some(text) = text {
                    let mut rest = text;
                    while let Some(start) = rest.find("${") {
                        let after = &rest[start + 2..];
                        let Some(end) = after.find('}') else { break };
                        let name = &after[..end];
                        if !name.starts_with('!') {
                            out.insert(name.split('.').next().unwrap_or(name).to_owned());
                        }
                        rest = &after[end + 1..];
                    }
                }
            }
            for x in m.values() {
                references(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

fn resources(t: &Value) -> BTreeMap<String, &Value> {
    t.get("Resources")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v)).collect())
        .unwrap_or_default()
}

/// Runs every check; an empty list means the template passed.
pub fn check(t: &Value) -> Vec<Problem> {
    let mut problems = Vec::new();
    let res = resources(t);
    let params: BTreeSet<String> = t
        .get("Parameters")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(dups) = t.pointer("/Metadata/DuplicateIds") {
        problems.push(Problem(format!("logical ids used twice: {dups}")));
    }

    // Dangling references, and the dependency graph for the cycle check.
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, r) in &res {
        if !id.chars().all(|c| c.is_ascii_alphanumeric()) || id.len() > 255 {
            problems.push(Problem(format!(
                "{id}: a logical id is 1-255 letters and digits"
            )));
        }
        let mut refs = BTreeSet::new();
        references(r, &mut refs);
        if let Some(d) = r.get("DependsOn") {
            for x in d.as_array().into_iter().flatten().filter_map(Value::as_str) {
                refs.insert(x.to_owned());
            }
        }
        for target in &refs {
            if !(target.starts_with("AWS::") || params.contains(target) || res.contains_key(target))
            {
                problems.push(Problem(format!(
                    "{id} references {target}, which the template does not declare"
                )));
            }
        }
        graph.insert(
            id.clone(),
            refs.into_iter().filter(|r| res.contains_key(r)).collect(),
        );
    }
    let mut outputs_refs = BTreeSet::new();
    if let Some(o) = t.get("Outputs") {
        references(o, &mut outputs_refs);
    }
    for target in outputs_refs {
        if !(target.starts_with("AWS::") || params.contains(&target) || res.contains_key(&target)) {
            problems.push(Problem(format!(
                "an output references {target}, which the template does not declare"
            )));
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        problems.push(Problem(format!(
            "circular dependency: {}",
            cycle.join(" -> ")
        )));
    }

    // Event source mappings: partial batch responses, and queue timeouts of 6x the consumer's.
    let target_of = |v: &Value| -> Option<String> {
        v.pointer("/Fn::GetAtt/0")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    for (id, r) in &res {
        if r.get("Type").and_then(Value::as_str) != Some("AWS::Lambda::EventSourceMapping") {
            continue;
        }
        let p = &r["Properties"];
        let reports = p["FunctionResponseTypes"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "ReportBatchItemFailures"));
        if !reports {
            problems.push(Problem(format!(
                "{id}: the mapping lacks FunctionResponseTypes ReportBatchItemFailures"
            )));
        }
        let (Some(source), Some(func)) = (
            target_of(&p["EventSourceArn"]),
            target_of(&p["FunctionName"]),
        ) else {
            continue;
        };
        let Some(queue) = res.get(&source).filter(|q| q["Type"] == "AWS::SQS::Queue") else {
            continue;
        };
        let visibility = queue["Properties"]["VisibilityTimeout"]
            .as_u64()
            .unwrap_or(30);
        let timeout = res
            .get(&func)
            .and_then(|f| f["Properties"]["Timeout"].as_u64())
            .unwrap_or(3);
        if visibility < 6 * timeout {
            problems.push(Problem(format!(
                "{source}: visibility timeout {visibility} s is under 6 x {func}'s timeout ({timeout} s)"
            )));
        }
    }

    // Every function logs to a log group of its own with a retention.
    for (id, r) in &res {
        if r["Type"] != "AWS::Lambda::Function" {
            continue;
        }
        let group = r["Properties"]["LoggingConfig"]["LogGroup"]["Ref"].as_str();
        match group.and_then(|g| res.get(g).map(|x| (g, x))) {
            Some((_, g))
                if g["Type"] == "AWS::Logs::LogGroup"
                    && !g["Properties"]["RetentionInDays"].is_null() => {}
            _ => problems.push(Problem(format!(
                "{id}: no log group of its own with a retention (LoggingConfig.LogGroup)"
            ))),
        }
    }

    // IAM: no wildcard action; a wildcard resource only for actions without a resource type.
    let mut statements = Vec::new();
    collect_statements(t, &mut statements);
    for s in statements {
        let actions: Vec<&str> = match &s["Action"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if actions.iter().any(|a| *a == "*" || a.ends_with(":*")) {
            problems.push(Problem(format!(
                "a statement grants a wildcard action: {s}"
            )));
        }
        if s["Resource"] == "*" {
            for a in actions.iter().filter(|a| !WILDCARD_ACTIONS.contains(a)) {
                problems.push(Problem(format!(
                    "{a} is granted on every resource; scope it"
                )));
            }
        }
    }

    // scripts/deploy.sh uploads the template to the code bucket (`--s3-bucket`), where
    // CloudFormation reads up to 1 MB; only a template sent in the request body is held to
    // 51,200 bytes.
    let size = serde_json::to_string(t).map(|s| s.len()).unwrap_or(0);
    if size > 1_000_000 {
        problems.push(Problem(format!(
            "the template is {size} bytes; CloudFormation reads 1,000,000 from S3"
        )));
    }
    problems
}

/// IAM statements anywhere in the template (inside `Fn::If` branches too).
fn collect_statements<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            if m.contains_key("Effect") && m.contains_key("Action") {
                out.push(v);
            }
            m.values().for_each(|x| collect_statements(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_statements(x, out)),
        _ => {}
    }
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(n.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n.to_owned(), Mark::Visiting);
        path.push(n.to_owned());
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(n.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}
