//! `svcops up` and the CLI, as a person uses them: one process, SQLite and the embedded bus
//! under a data directory, restarts that lose nothing.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tests::{binary, eventually};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const TIMEOUT: Duration = Duration::from_secs(60);

/// `svcops up` as started by [`up`]: the process, its address and the `try:` line it printed.
struct Up {
    child: Child,
    address: String,
    try_line: String,
}

/// Starts `svcops up` on port 0; its logs go to `up.log` in the data directory.
async fn up(data_dir: &Path) -> Up {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("up.log"))
        .expect("log file");
    let mut child = Command::new(binary("svcops"))
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("start svcops up");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (address, try_line) = tokio::time::timeout(TIMEOUT, async {
        let mut address = None;
        while let Some(line) = lines.next_line().await.expect("read") {
            if let Some(rest) = line.strip_prefix("svcops is running on ") {
                address = Some(rest.split_whitespace().next().expect("address").to_owned());
            }
            if let Some(rest) = line.strip_prefix("try: ") {
                return (
                    address.expect("address before the try line"),
                    rest.to_owned(),
                );
            }
        }
        panic!("svcops up exited before serving");
    })
    .await
    .expect("svcops up did not start in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Up {
        child,
        address,
        try_line,
    }
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn cli(address: &str, data_dir: &Path, args: &[&str]) -> Output {
    let output = Command::new(binary("svcops"))
        .args(args)
        .arg("--addr")
        .arg(address)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("SVCOPS_TOKEN")
        .output()
        .await
        .expect("run svcops");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn timeline(address: &str, data_dir: &Path, case_id: &str) -> Vec<serde_json::Value> {
    let output = cli(
        address,
        data_dir,
        &["listen", case_id, "--no-follow", "--output", "json"],
    )
    .await;
    assert_eq!(output.code, 0, "{}", output.stderr);
    output
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect()
}

fn types(entries: &[serde_json::Value]) -> Vec<String> {
    entries
        .iter()
        .map(|entry| {
            entry["type"]
                .as_str()
                .unwrap_or_default()
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_drives_an_embedded_svcops_that_survives_restarts() {
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path();
    let Up {
        child: mut server,
        address,
        try_line,
    } = up(data_dir).await;

    // The line `svcops up` suggests works as printed, from any directory, with no setting
    // the user would have to guess.
    let suggested = try_line
        .strip_prefix("svcops ")
        .unwrap_or_else(|| panic!("{try_line}"));
    let tried = Command::new("sh")
        .arg("-c")
        .arg(format!("\"$SVCOPS_BINARY\" {suggested}"))
        .env("SVCOPS_BINARY", binary("svcops"))
        .env_remove("SVCOPS_TOKEN")
        .env_remove("SVCOPS_DATA_DIR")
        .env_remove("SVCOPS_ADDR")
        .current_dir("/")
        .output()
        .await
        .expect("run the suggested command");
    assert!(
        tried.status.success(),
        "`{try_line}` failed: {}",
        String::from_utf8_lossy(&tried.stderr)
    );
    uuid::Uuid::parse_str(String::from_utf8_lossy(&tried.stdout).trim())
        .expect("the suggested command opens a case");

    let opened = cli(
        &address,
        data_dir,
        &[
            "case",
            "open",
            "--phone",
            "+86 138 0000 1234",
            "--category",
            "repair",
            "--summary",
            "lamp flickers",
        ],
    )
    .await;
    assert_eq!(opened.code, 0, "{}", opened.stderr);
    let case_id = opened.stdout.trim().to_owned();
    uuid::Uuid::parse_str(&case_id).expect("prints the case id");

    let wanted = [
        "CaseOpened",
        "WorkOrderOpened",
        "SlaClockStarted",
        "ClosedLoopItemOpened",
        "SlaOnSiteTargetSet",
    ];
    eventually("the case to reach every office", TIMEOUT, || {
        let (address, case_id) = (address.clone(), case_id.clone());
        async move {
            let seen = types(&timeline(&address, data_dir, &case_id).await);
            wanted
                .iter()
                .all(|kind| seen.iter().any(|seen| seen == kind))
                .then_some(())
        }
    })
    .await;

    // Bad input: one line, non-zero exit, nothing opened.
    let bad = cli(
        &address,
        data_dir,
        &[
            "case",
            "open",
            "--phone",
            "12",
            "--category",
            "repair",
            "--summary",
            " ",
        ],
    )
    .await;
    assert_ne!(bad.code, 0);
    assert_eq!(bad.stderr.trim().lines().count(), 1, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("customer_phone") && bad.stderr.contains("summary"),
        "{}",
        bad.stderr
    );
    let unknown = cli(&address, data_dir, &["case", "show", "not-a-uuid"]).await;
    assert_ne!(unknown.code, 0);
    assert!(unknown.stderr.contains("case_id"), "{}", unknown.stderr);

    // A token for an executive sees the phone masked.
    let token = cli(
        &address,
        data_dir,
        &["token", "--role", "executive", "--name", "GM Zhang"],
    )
    .await;
    assert_eq!(token.code, 0, "{}", token.stderr);
    let shown = Command::new(binary("svcops"))
        .args([
            "case",
            "show",
            &case_id,
            "--output",
            "json",
            "--addr",
            &address,
            "--token",
            token.stdout.trim(),
        ])
        .output()
        .await
        .expect("show");
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("json");
    assert_eq!(shown["customer_phone"], "+86*******1234");
    assert_eq!(shown["opened_by"], "svcops-cli");

    // The phone is in no file of the data directory (sealed in events, hashed in the key
    // table), and the secret protecting the keys sits beside them, owner-only.
    for entry in std::fs::read_dir(data_dir).expect("data directory") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        assert!(
            !bytes.windows(11).any(|window| window == b"13800001234"),
            "{} holds the phone",
            path.display()
        );
    }
    let secret = data_dir.join("personal-data-secret");
    assert_eq!(std::fs::read_to_string(&secret).expect("secret").len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Erasure: the case stays, the phone is gone.
    let erased = cli(
        &address,
        data_dir,
        &["customer", "erase", "--phone", "+86 138 0000 1234"],
    )
    .await;
    assert_eq!(
        (erased.code, erased.stdout.trim()),
        (0, "erased"),
        "{}",
        erased.stderr
    );
    let shown = cli(
        &address,
        data_dir,
        &["case", "show", &case_id, "--output", "json"],
    )
    .await;
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).expect("json");
    assert_eq!(shown["customer_data_erased"], true);
    assert_eq!(shown["customer_phone"], "");

    // A crash (SIGKILL), then a restart on the same data directory: nothing lost.
    let before = timeline(&address, data_dir, &case_id).await;
    server.kill().await.expect("kill");
    let Up {
        child: mut server,
        address,
        ..
    } = up(data_dir).await;
    let after = timeline(&address, data_dir, &case_id).await;
    assert!(
        after.len() >= before.len(),
        "before {before:#?} after {after:#?}"
    );
    assert_eq!(types(&after)[..before.len()], types(&before)[..]);
    let listed = cli(&address, data_dir, &["case", "list", "--output", "json"]).await;
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(listed["cases"][0]["case_id"], case_id.as_str());

    // A second case after the restart still flows through every office.
    let second = cli(
        &address,
        data_dir,
        &[
            "case",
            "open",
            "--phone",
            "+8613900002222",
            "--category",
            "installation",
            "--summary",
            "new fittings",
        ],
    )
    .await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    let second_id = second.stdout.trim().to_owned();
    eventually("the second case to get its work order", TIMEOUT, || {
        let (address, second_id) = (address.clone(), second_id.clone());
        async move {
            types(&timeline(&address, data_dir, &second_id).await)
                .iter()
                .any(|kind| kind == "WorkOrderOpened")
                .then_some(())
        }
    })
    .await;

    // The second case through its lifecycle from the CLI; a move its state does not allow
    // is one line naming the state.
    let moved = |args: &'static [&'static str]| {
        let (address, second_id) = (address.clone(), second_id.clone());
        async move {
            let mut full = vec!["case", args[0], second_id.as_str()];
            full.extend_from_slice(&args[1..]);
            full.extend(["--output", "json"]);
            let output = cli(&address, data_dir, &full).await;
            assert_eq!(output.code, 0, "{args:?}: {}", output.stderr);
            let case: serde_json::Value = serde_json::from_str(&output.stdout).expect("json");
            case
        }
    };
    let case = moved(&["triage", "--queue", "installation", "--priority", "high"]).await;
    assert_eq!(
        (&case["state"], &case["queue"], &case["priority"]),
        (&"triaged".into(), &"installation".into(), &"high".into())
    );
    let case = moved(&["assign", "--to", "agent-7"]).await;
    assert_eq!(
        (&case["state"], &case["assignee"]),
        (&"assigned".into(), &"agent-7".into())
    );
    let case = moved(&["wait", "--on", "middle-office", "--reason", "fitter booked"]).await;
    assert_eq!(
        (&case["state"], &case["waiting_on"]),
        (&"waiting".into(), &"middle_office".into())
    );
    let refused = cli(
        &address,
        data_dir,
        &["case", "reopen", &second_id, "--reason", "too early"],
    )
    .await;
    assert_ne!(refused.code, 0);
    assert_eq!(
        refused.stderr.trim(),
        "svcops: FailedPrecondition: cannot reopen a case that is waiting on the middle office"
    );
    // Escalated to the top from the CLI: the public-opinion risk is flagged with it, and
    // the list filters find it.
    let case = moved(&[
        "escalate",
        "--level",
        "3",
        "--reason",
        "asks for the director",
    ])
    .await;
    assert_eq!(
        (
            &case["escalation_level"],
            &case["risk"]["trigger"],
            &case["priority"]
        ),
        (&3.into(), &"top_escalation".into(), &"urgent".into())
    );
    let at_risk = cli(
        &address,
        data_dir,
        &[
            "case",
            "list",
            "--at-risk",
            "true",
            "--state",
            "waiting",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(at_risk.code, 0, "{}", at_risk.stderr);
    let at_risk: serde_json::Value = serde_json::from_str(&at_risk.stdout).expect("json");
    let at_risk: Vec<&str> = at_risk["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|case| case["case_id"].as_str().expect("case id"))
        .collect();
    assert_eq!(at_risk, [second_id.as_str()]);
    // A chat on the case: the bot answers, hands off to a person with the transcript, and
    // executives listening in hear every word.
    let started = cli(
        &address,
        data_dir,
        &[
            "contact",
            "start",
            "--case",
            &second_id,
            "--channel",
            "chat",
            "--bot",
        ],
    )
    .await;
    assert_eq!(started.code, 0, "{}", started.stderr);
    let contact_id = started.stdout.trim().to_owned();
    for args in [
        &[
            "say",
            &contact_id,
            "--speaker",
            "bot",
            "--text",
            "您好",
            "--end-ms",
            "800",
        ][..],
        &[
            "say",
            &contact_id,
            "--speaker",
            "customer",
            "--text",
            "the fitter has not come",
            "--start-ms",
            "1000",
            "--end-ms",
            "2500",
        ],
        &[
            "hand-off",
            &contact_id,
            "--queue",
            "installation",
            "--reason",
            "asks for a person",
        ],
    ] {
        let mut full = vec!["contact"];
        full.extend_from_slice(args);
        let output = cli(&address, data_dir, &full).await;
        assert_eq!(output.code, 0, "{args:?}: {}", output.stderr);
    }
    let shown = cli(
        &address,
        data_dir,
        &["case", "show", &second_id, "--output", "json"],
    )
    .await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).expect("json");
    assert_eq!(
        (
            &shown["contacts"][0]["state"],
            &shown["contacts"][0]["handed_off_to"],
            &shown["contacts"][0]["transcript"][1]["text"]
        ),
        (
            &"with_person".into(),
            &"installation".into(),
            &"the fitter has not come".into()
        )
    );
    eventually("listen-in to hear the customer", TIMEOUT, || {
        let (address, second_id) = (address.clone(), second_id.clone());
        async move {
            timeline(&address, data_dir, &second_id)
                .await
                .iter()
                .any(|entry| entry["description"] == "customer said: the fitter has not come")
                .then_some(())
        }
    })
    .await;
    let bad_filter = cli(&address, data_dir, &["case", "list", "--state", "sleeping"]).await;
    assert_ne!(bad_filter.code, 0);
    assert_eq!(
        bad_filter.stderr.trim(),
        "svcops: --state: unknown value \"sleeping\""
    );
    let case = moved(&["resolve", "--resolution", "fittings installed"]).await;
    assert_eq!(case["state"], "resolved");
    eventually("listen-in to show the resolution", TIMEOUT, || {
        let (address, second_id) = (address.clone(), second_id.clone());
        async move {
            types(&timeline(&address, data_dir, &second_id).await)
                .iter()
                .any(|kind| kind == "CaseResolved")
                .then_some(())
        }
    })
    .await;

    // The read models, as an admin sees them: every projection of every office, then one
    // rebuilt beside the live one while the list keeps answering.
    let listed = cli(
        &address,
        data_dir,
        &["admin", "projections", "--output", "json"],
    )
    .await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    let names: Vec<&str> = listed["projections"]
        .as_array()
        .expect("projections")
        .iter()
        .map(|projection| projection["name"].as_str().expect("name"))
        .collect();
    for name in [
        "case_list",
        "erasure_records",
        "work_order_list",
        "case_tracking",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let rebuilt = cli(
        &address,
        data_dir,
        &[
            "admin",
            "projection",
            "rebuild",
            "front-office",
            "case_list",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(rebuilt.code, 0, "{}", rebuilt.stderr);
    let rebuilt: serde_json::Value = serde_json::from_str(&rebuilt.stdout).expect("json");
    assert_eq!(rebuilt["status"], "live");
    assert_eq!(rebuilt["generation"], 2);
    let listed = cli(&address, data_dir, &["case", "list", "--output", "json"]).await;
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(listed["cases"][0]["case_id"], second_id.as_str());
    assert_eq!(
        listed["cases"][0]["state"], "resolved",
        "the rebuilt list replays the lifecycle"
    );
    assert_eq!(listed["cases"][1]["case_id"], case_id.as_str());
    let unknown = cli(
        &address,
        data_dir,
        &["admin", "projection", "rebuild", "front-office", "no_such"],
    )
    .await;
    assert_ne!(unknown.code, 0);
    assert_eq!(unknown.stderr.lines().count(), 1, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("no_such"), "{}", unknown.stderr);
    server.kill().await.expect("kill");

    // Logs to a file are plain text: no colour escapes.
    let log = std::fs::read_to_string(data_dir.join("up.log")).expect("log");
    assert!(log.contains("INFO"), "something was logged: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour escapes in a log file: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_personal_data_secret_is_refused_at_start() {
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path();
    let Up {
        child: mut server, ..
    } = up(data_dir).await;
    server.kill().await.expect("kill");
    // Someone replaces the secret: the keys in front-office.db were stored under the old one.
    std::fs::write(
        data_dir.join("personal-data-secret"),
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    )
    .expect("write");
    let output = tokio::time::timeout(
        TIMEOUT,
        Command::new(binary("svcops"))
            .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .output(),
    )
    .await
    .expect("exits promptly")
    .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("personal-data-secret") && stderr.contains("another personal data secret"),
        "{stderr}"
    );
}
