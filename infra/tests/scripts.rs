//! The deploy and cleanup scripts' dry runs: the AWS CLI calls they would make, in order, with
//! the stack's parameters, without the CLI or credentials.

use std::path::PathBuf;
use std::process::Command;

fn script(name: &str, args: &[&str]) -> (bool, String, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("scripts").join(name))
        .args(args)
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn calls(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| l.starts_with("+ ")).collect()
}

#[test]
fn deploy_dry_run_prints_every_call_with_the_parameters() {
    let (ok, out, err) = script(
        "deploy.sh",
        &[
            "--dry-run",
            "--region",
            "eu-west-1",
            "--stack",
            "mf-test",
            "--history",
            "timestream",
            "--alarm-email",
            "ops@example.com",
        ],
    );
    assert!(ok, "{err}");
    let calls = calls(&out);
    assert!(
        calls[0].starts_with("+ bash scripts/package.sh"),
        "{calls:?}"
    );
    assert!(calls
        .iter()
        .any(|c| c.contains("cargo run -q -p infra -- --out infra/out")));
    let uploads: Vec<&&str> = calls
        .iter()
        .filter(|c| c.starts_with("+ aws s3 cp"))
        .collect();
    assert_eq!(uploads.len(), meter_core::contract::cloud::FUNCTIONS.len());
    let deploy = calls
        .iter()
        .find(|c| c.starts_with("+ aws cloudformation deploy"))
        .unwrap();
    for part in [
        "--stack-name mf-test",
        "--template-file infra/out/meterflow-timestream.json",
        "--capabilities CAPABILITY_IAM",
        "HistoryStore=timestream",
        "StreamMetricsCodeKey=lambda/stream-metrics-",
        "CodeBucket=mf-test-code-123456789012-eu-west-1",
        "AlarmEmail=ops@example.com",
    ] {
        assert!(deploy.contains(part), "{part} missing from {deploy}");
    }
    assert!(out.contains("put-secret-value"), "next steps are printed");
}

#[test]
fn cleanup_dry_run_empties_the_bucket_then_deletes_and_waits() {
    let (ok, out, err) = script(
        "cleanup.sh",
        &["--dry-run", "--region", "eu-west-1", "--code-bucket", "b"],
    );
    assert!(ok, "{err}");
    let calls = calls(&out);
    let at = |what: &str| {
        calls
            .iter()
            .position(|c| c.contains(what))
            .unwrap_or_else(|| panic!("{what}: {calls:?}"))
    };
    assert!(at("list-object-versions") < at("delete-objects"));
    assert!(at("delete-objects") < at("delete-stack"));
    assert!(at("delete-stack") < at("wait stack-delete-complete"));
    assert!(at("wait stack-delete-complete") < at("delete-bucket --bucket b"));
}

#[test]
fn the_scripts_refuse_bad_input_clearly() {
    let (ok, _, err) = script("deploy.sh", &["--dry-run"]);
    assert!(!ok && err.contains("no region"), "{err}");
    let (ok, _, err) = script(
        "deploy.sh",
        &["--dry-run", "--region", "x", "--history", "influx"],
    );
    assert!(
        !ok && err.contains("--history must be dynamodb or timestream"),
        "{err}"
    );
    let (ok, _, err) = script(
        "deploy.sh",
        &[
            "--dry-run",
            "--region",
            "x",
            "--alarm-email",
            "ops.example.com",
        ],
    );
    assert!(
        !ok && err.contains("--alarm-email ops.example.com is not an email address"),
        "{err}"
    );
    let (ok, _, err) = script("cleanup.sh", &["--region", "x", "--bogus"]);
    assert!(!ok && err.contains("unknown option --bogus"), "{err}");
}
