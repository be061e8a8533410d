//! `meter serve` as a process: files dropped in its folder are read back over HTTP, the webhook
//! counts, the page renders in headless Chromium, and Ctrl-C stops it cleanly. The tests wait on
//! the lines the server prints, not on time.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{examples, get_json, http, Server, HOOK};

#[test]
fn dropped_files_are_served_and_the_webhook_counts() {
    let mut server = Server::start(true);
    let mut names = Vec::new();
    let mut stack = vec![examples()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(examples()).unwrap().to_path_buf();
                server.drop_file(&p, &rel);
                names.push(rel);
            }
        }
    }
    let bad = server.dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "meter,time,value\nq,2024-01-01T00:00:00Z,1\nq,nope,2\n",
    )
    .unwrap();
    server.drop_file(&bad, Path::new("bad.csv"));
    let mut done = Vec::new();
    for _ in 0..names.len() + 1 {
        done.push(server.wait_for("imported "));
    }
    let bad_line = done
        .iter()
        .find(|l| l.starts_with("imported bad.csv"))
        .unwrap();
    assert!(bad_line.ends_with("-> quarantine/bad.csv"), "{bad_line}");
    assert!(server.drop.join("quarantine/bad.csv.errors.json").is_file());
    for n in &names {
        assert!(
            server.drop.join("done").join(n).is_file(),
            "{} not in done/",
            n.display()
        );
    }

    let addr = server.addr.clone();
    let meters = get_json(&addr, "/v1/meters");
    let ids: Vec<&str> = meters["meters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["meter"].as_str().unwrap())
        .collect();
    for id in [
        "EX00101",
        "EX00102",
        "flat-cold",
        "garage",
        "pool",
        "sst-1101",
        "button-hall",
        "q",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    // Seed 004's route gives the row's total.
    let csv = std::fs::read_to_string(examples().join("consumption-wide.csv")).unwrap();
    let row = csv
        .lines()
        .find(|l| l.starts_with("EX00101,2024-03-02"))
        .unwrap();
    let want: i64 = row
        .split(',')
        .skip(2)
        .map(|c| c.parse::<i64>().unwrap())
        .sum();
    let v = get_json(&addr, "/?meterId=EX00101&date=02-03-2024");
    assert_eq!(v["sum"], want);
    assert_eq!(http(&addr, "GET", "/v1/meters", &[], "").0, 401);

    let note = r#"{"notifications":[{"ep":"btn-1","path":"/3200/0/5501","payload":"Mw=="}]}"#;
    let (status, body) = http(
        &addr,
        "PUT",
        "/webhook",
        &[("x-webhook-secret", HOOK)],
        note,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["counted"], 1);
    let (_, body) = http(
        &addr,
        "PUT",
        "/webhook",
        &[("x-webhook-secret", HOOK)],
        note,
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["duplicates"],
        1
    );
    assert_eq!(http(&addr, "PUT", "/webhook", &[], note).0, 401);
    server.stop();
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        })
}

#[test]
fn the_page_renders_every_chart_in_headless_chromium() {
    let Some(browser) = chromium() else {
        // scripts/test.sh installs Chromium and sets this, so CI cannot skip the check.
        assert!(
            std::env::var_os("METER_REQUIRE_CHROMIUM").is_none(),
            "METER_REQUIRE_CHROMIUM is set but no chromium is on PATH"
        );
        eprintln!("skipped: no chromium on PATH (scripts/test.sh installs it)");
        return;
    };
    let mut server = Server::start(false);
    for name in ["consumption-wide.csv", "readings-long.csv"] {
        server.drop_file(&examples().join(name), Path::new(name));
    }
    server.wait_for("imported ");
    server.wait_for("imported ");
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{}/ui", server.addr))
        .output()
        .unwrap();
    support::assert_ok(&out);
    let dom = String::from_utf8(out.stdout).unwrap();
    let sections: Vec<&str> = dom.split("<section class=\"meter\"").skip(1).collect();
    assert_eq!(sections.len(), 4, "one section per meter");
    for s in sections {
        // Each chart was parsed by the browser into an SVG element with a drawn series and the
        // last value annotated.
        assert!(s.contains("<svg"), "{s}");
        assert!(s.contains("class=\"series\""), "{s}");
        assert!(s.contains("class=\"last\""), "{s}");
    }
    server.stop();
}

#[test]
fn an_unreadable_subfolder_is_skipped_with_one_warning_and_the_rest_imports() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = Server::start_unprivileged();
    let locked = server.drop.join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    std::fs::write(
        locked.join("kept.csv"),
        "meter,time,value\nk,2024-01-01T00:00:00Z,1\n",
    )
    .unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let file = server.dir.path().join("a.csv");
    std::fs::write(&file, "meter,time,value\na,2024-01-01T00:00:00Z,1\n").unwrap();
    server.drop_file(&file, Path::new("a.csv"));
    let mut lines = Vec::new();
    let read_until = |server: &mut Server, prefix: &str, lines: &mut Vec<String>| loop {
        let line = support::read_line(&mut server.lines);
        lines.push(line.clone());
        if line.starts_with(prefix) {
            break;
        }
    };
    read_until(&mut server, "imported a.csv", &mut lines);
    // A second file a later scan imports: by then the locked folder was seen again.
    server.drop_file(&file, Path::new("b.csv"));
    read_until(&mut server, "imported b.csv", &mut lines);
    let warnings = lines.iter().filter(|l| l.contains("skipping")).count();
    assert_eq!(warnings, 1, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("locked") && l.contains("ermission")),
        "{lines:#?}"
    );
    // Let the temporary folder be removed.
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    server.stop();
}

#[test]
fn a_file_still_open_for_writing_waits_for_its_writer_to_close_it() {
    use std::io::Write;
    let mut server = Server::start(false);
    let path = server.drop.join("slow.csv");
    let mut writer = std::fs::File::create(&path).unwrap();
    writer
        .write_all(b"meter,time,value\ns,2024-01-01T00:00:00Z,1\ns,2024-01-01T01:00:00Z,2\n")
        .unwrap();
    writer.flush().unwrap();
    // The writer pauses with the file open: the server must not take the half it has.
    server.wait_for("meter serve: waiting for the writer of slow.csv to close it");
    writer
        .write_all(b"s,2024-01-01T02:00:00Z,3\ns,2024-01-01T03:00:00Z,4\n")
        .unwrap();
    drop(writer);
    let line = server.wait_for("imported slow.csv");
    assert!(line.contains(": 4 stored, 0 rejected"), "{line}");
    server.stop();
}

#[test]
fn a_file_that_cannot_be_moved_is_imported_once_not_on_every_scan() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = Server::start_unprivileged();
    let done = server.drop.join("done");
    std::fs::set_permissions(&done, std::fs::Permissions::from_mode(0o555)).unwrap();
    let file = server.dir.path().join("x.csv");
    std::fs::write(&file, "meter,time,value\nx,2024-01-01T00:00:00Z,1\n").unwrap();
    server.drop_file(&file, Path::new("a.csv"));
    let mut lines = vec![server.wait_for("imported a.csv")];
    assert!(lines[0].contains("cannot be moved"), "{}", lines[0]);
    // Later scans (one imports b.csv) leave a.csv alone.
    server.drop_file(&file, Path::new("b.csv"));
    loop {
        let line = support::read_line(&mut server.lines);
        let done = line.starts_with("imported b.csv");
        lines.push(line);
        if done {
            break;
        }
    }
    let a = lines
        .iter()
        .filter(|l| l.starts_with("imported a.csv"))
        .count();
    assert_eq!(a, 1, "{lines:#?}");
    std::fs::set_permissions(&done, std::fs::Permissions::from_mode(0o755)).unwrap();
    server.stop();
}

/// With no AWS configuration at all, `meter serve` never reaches for one: no request to the
/// instance metadata endpoint (pointed at a listener of the test's, so a probe would show) and
/// no warning on stderr. A request target over the API's bound is answered in the JSON shape.
#[test]
fn serve_without_aws_configuration_neither_probes_nor_warns() {
    use std::io::Read;
    use std::process::Stdio;
    let imds = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    imds.set_nonblocking(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meter"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("METER_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .env("HOME", dir.path())
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{}", imds.local_addr().unwrap()),
        )
        .env("METER_API_TOKEN", support::TOKEN)
        .arg("--store")
        .arg(dir.path().join("meter.db"))
        .args(["serve", "--listen", "127.0.0.1:0", "--drop"])
        .arg(dir.path().join("drop"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap());
    let first = support::read_line(&mut lines);
    let addr = first
        .strip_prefix("meter serve: listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    assert_eq!(
        get_json(&addr, "/v1/meters"),
        serde_json::json!({"meters": []})
    );
    let long = format!("/v1/meters?pad={}", "a".repeat(9000));
    let (status, body) = http(&addr, "GET", &long, &[], "");
    assert_eq!(status, 414, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "uri_too_long", "{v}");

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{stderr}");
    assert!(
        !stderr.contains("WARN") && !stderr.to_lowercase().contains("metadata"),
        "{stderr}"
    );
    assert!(
        matches!(imds.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "meter serve connected to the instance metadata endpoint"
    );
}
