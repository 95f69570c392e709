//! Policies: strict validation with located errors, `drtool run` (hooks,
//! backup, retention, metrics, webhook), run locks, schedules and the daemon.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");

/// A directory with a repository, a password file and a state directory.
struct Setup {
    repo: Repo,
    pw_file: PathBuf,
    state: PathBuf,
    policies: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let repo = Repo::init();
        let pw_file = repo.dir.path().join("repo.pass");
        std::fs::write(&pw_file, format!("{}\n", repo.password)).unwrap();
        let state = repo.scratch("state");
        let policies = repo.scratch("policies");
        Setup { repo, pw_file, state, policies }
    }

    /// Write policy `name` with the given extra TOML (source etc.).
    fn policy(&self, name: &str, body: &str) -> PathBuf {
        let text = format!(
            "name = \"{name}\"\nrepository = \"{}\"\npassword_file = \"{}\"\n{body}",
            self.repo.path.display(),
            self.pw_file.display()
        );
        let f = self.policies.join(format!("{name}.toml"));
        std::fs::write(&f, text).unwrap();
        f
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = drtool();
        c.arg("--policies").arg(&self.policies).args(args).env("DRTOOL_STATE_DIR", &self.state);
        c.env_remove("DRTOOL_PASSWORD").env_remove("DRTOOL_REPO");
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        run_with_input(self.cmd(args), None)
    }
}

// ---------------------------------------------------------------- validation

#[test]
fn example_policies_are_valid() {
    let out = run_with_input(
        {
            let mut c = drtool();
            c.args(["policy", "check", EXAMPLES]);
            c
        },
        None,
    )
    .ok();
    assert!(out.stdout_str().contains("4 policies checked, 0 invalid"), "{}", out.stdout_str());
}

/// (policy text, expected line, expected column or 0 for any, text the message must contain)
const BROKEN: &[(&str, usize, usize, &str)] = &[
    ("name = \"x\nrepository = \"/r\"\n", 1, 0, "string"),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\nschedule = 5\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n",
        4,
        12,
        "string",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\ncolour = \"red\"\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n",
        4,
        1,
        "colour",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\n[source]\nkind = \"command\"\ncommand = [\"true\"]\nshell = true\n",
        7,
        1,
        "shell",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\nschedule = \"61 * * * *\"\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n",
        4,
        12,
        "minute",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\n[source]\nkind = \"ftp\"\n",
        5,
        8,
        "expected mysql, postgres, mongodb, command, paths or device",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\n[source]\nkind = \"mysql\"\n",
        4,
        0,
        "source.url is missing",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\n[source]\nkind = \"mysql\"\nurl = \"mysql://u:secret@h/db\"\n",
        6,
        7,
        "not accepted",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\n[source]\nkind = \"postgres\"\nurl = \"mysql://u@h/db\"\n",
        6,
        7,
        "kind is \"postgres\"",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\npassword_file = \"/f\"\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n",
        4,
        0,
        "more than one",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n",
        1,
        0,
        "no repository password",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n[notify]\nwebhook = \"ftp://x\"\n",
        8,
        11,
        "http",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\ncompression = 42\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n",
        4,
        15,
        "0 (off) to 19",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\n[source]\nkind = \"paths\"\npaths = [\"relative/dir\"]\n",
        4,
        0,
        "absolute",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n[retention]\nkeep_daily = \"seven\"\n",
        8,
        14,
        "expected i64",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n[retention]\nkeep_dayly = 7\n",
        8,
        1,
        "keep_dayly",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n[retention]\nkeep_within = \"5 parsecs\"\n",
        7,
        0,
        "keep_within",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n[drill]\nscratch = \"oracle\"\n",
        7,
        0,
        "expected one of mariadb",
    ),
    (
        "name = \"bad name!\"\nrepository = \"/r\"\npassword_env = \"P\"\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n",
        1,
        8,
        "invalid name",
    ),
    ("repository = \"/r\"\npassword_env = \"P\"\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n", 1, 1, "name"),
    ("name = \"x\"\nname = \"y\"\n", 2, 1, "duplicate"),
    (
        "name = \"x\"\nrepository = \"ftp://r\"\npassword_env = \"P\"\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n",
        2,
        14,
        "unsupported repository",
    ),
    (
        "name = \"x\"\nrepository = \"/r\"\npassword_env = \"P\"\n[source]\nkind = \"command\"\ncommand = [\"true\"]\n[hooks]\npre = [[]]\n",
        7,
        0,
        "non-empty command list",
    ),
];

#[test]
fn broken_policies_give_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (text, line, col, want)) in BROKEN.iter().enumerate() {
        let f = dir.path().join(format!("broken{i}.toml"));
        std::fs::write(&f, text).unwrap();
        let mut c = drtool();
        c.args(["policy", "check"]).arg(&f);
        let out = run_with_input(c, None).expect_code(2);
        let prefix = format!("{}:{line}:", f.display());
        let located: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
        assert!(
            located.iter().any(|l| l.contains(want) && (*col == 0 || l.starts_with(&format!("{prefix}{col}: ")))),
            "case {i}: wanted {prefix}{col}: ...{want}... in:\n{}",
            out.stderr
        );
    }
}

/// Deterministic mutations of the example policies: every one is either
/// valid or rejected with located errors, never a panic.
#[test]
fn fuzzed_policies_never_panic_and_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Prng::new(0xD57);
    let mut n = 0;
    for example in std::fs::read_dir(EXAMPLES).unwrap() {
        let path = example.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read(&path).unwrap();
        for _ in 0..80 {
            let mut t = text.clone();
            match rng.below(6) {
                0 => t.truncate(rng.below(t.len() as u64) as usize),
                1 => {
                    for _ in 0..3 {
                        let i = rng.below(t.len() as u64) as usize;
                        t[i] = b"=\"[]{},.#\n\\x0 "[rng.below(14) as usize];
                    }
                }
                2 => {
                    let lines: Vec<&[u8]> = t.split(|b| *b == b'\n').collect();
                    let skip = rng.below(lines.len() as u64) as usize;
                    t = lines
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != skip)
                        .map(|(_, l)| l.to_vec())
                        .collect::<Vec<_>>()
                        .join(&b'\n');
                }
                3 => {
                    let i = rng.below(t.len() as u64) as usize;
                    t.splice(i..i, b"\nunknown_key = 1\n".iter().copied());
                }
                4 => t = String::from_utf8_lossy(&t).replace("\"", "").into_bytes(),
                _ => {
                    let i = rng.below(t.len() as u64) as usize;
                    t.insert(i, 0xff);
                }
            }
            std::fs::write(dir.path().join(format!("f{n:04}.toml")), &t).unwrap();
            n += 1;
        }
    }
    let mut c = drtool();
    c.args(["--json", "policy", "check"]).arg(dir.path());
    let out = run_with_input(c, None);
    assert!(matches!(out.code(), Some(0 | 2)), "exit {:?}: {}", out.status, out.stderr);
    let results = out.json();
    let mut invalid = 0;
    for r in results.as_array().unwrap() {
        if r["ok"] == false {
            invalid += 1;
            let file = r["file"].as_str().unwrap();
            for e in r["errors"].as_array().unwrap() {
                let e = e.as_str().unwrap();
                let rest = e.strip_prefix(&format!("{file}:")).unwrap_or_else(|| panic!("error without its file: {e}"));
                let mut parts = rest.splitn(3, ':');
                let (l, c) = (parts.next().unwrap(), parts.next().unwrap());
                assert!(l.parse::<usize>().is_ok() && c.parse::<usize>().is_ok(), "error without line:column: {e}");
            }
        }
    }
    assert_eq!(results.as_array().unwrap().len(), n);
    assert!(invalid > n / 2, "the mutations should mostly break the policies ({invalid} of {n})");
}

// ---------------------------------------------------------------- runs

/// A tiny HTTP server collecting POST bodies.
fn webhook_server() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    sink.lock().unwrap().push(v);
                }
            }
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

#[test]
fn run_backs_up_applies_retention_writes_metrics_and_notifies() {
    let s = Setup::new();
    let data = s.repo.scratch("src").join("data.bin");
    let metrics = s.repo.scratch("metrics");
    let marks = s.repo.scratch("marks");
    let (url, got) = webhook_server();
    s.policy(
        "nightly",
        &format!(
            "schedule = \"30 2 * * *\"\n[source]\nkind = \"command\"\ncommand = [\"cat\", \"{}\"]\n\
             [retention]\nkeep_last = 2\n\
             [hooks]\npre = [[\"touch\", \"{m}/pre\"]]\npost = [[\"sh\", \"-c\", \"echo $DRTOOL_RESULT:$DRTOOL_POLICY >> {m}/post\"]]\n\
             [notify]\nwebhook = \"{url}\"\non_success = true\n[metrics]\ntextfile_dir = \"{}\"\n",
            data.display(),
            metrics.display(),
            m = marks.display()
        ),
    );
    let mut rng = Prng::new(7);
    for round in 0..3 {
        std::fs::write(&data, rng.bytes(300_000)).unwrap();
        let report = s.run(&["--json", "run", "nightly"]).ok().json();
        assert_eq!(report["ok"], true);
        assert_eq!(report["snapshots"], if round == 0 { 1 } else { 2 });
        assert_eq!(report["forgotten"].as_array().unwrap().len(), if round == 2 { 1 } else { 0 });
    }
    let snaps = s.repo.snapshots();
    assert_eq!(snaps.len(), 2);
    assert!(snaps.iter().all(|x| x["name"] == "nightly"));
    // The newest snapshot is the last data.
    let out = s.repo.restore_stdout("latest", &[]).ok();
    assert!(out.stdout == std::fs::read(&data).unwrap());
    assert!(marks.join("pre").exists());
    assert_eq!(std::fs::read_to_string(marks.join("post")).unwrap(), "success:nightly\n".repeat(3));
    let prom = std::fs::read_to_string(metrics.join("drtool_nightly.prom")).unwrap();
    for want in [
        "drtool_last_run_success{policy=\"nightly\"} 1",
        "drtool_snapshots{policy=\"nightly\"} 2",
        "# TYPE drtool_last_success_timestamp_seconds gauge",
    ] {
        assert!(prom.contains(want), "{want} missing from:\n{prom}");
    }
    assert!(
        wait_until(Duration::from_secs(5), || got.lock().unwrap().len() == 3),
        "webhook calls: {:?}",
        got.lock().unwrap()
    );
    let calls = got.lock().unwrap();
    assert_eq!(calls[2]["event"], "backup_succeeded");
    assert_eq!(calls[2]["report"]["policy"], "nightly");
}

#[test]
fn a_failed_run_notifies_keeps_the_last_success_and_runs_post_hooks() {
    let s = Setup::new();
    let metrics = s.repo.scratch("metrics");
    let marks = s.repo.scratch("marks");
    let (url, got) = webhook_server();
    let body = |cmd: &str| {
        format!(
            "[source]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"{cmd}\"]\n[hooks]\npost = [[\"sh\", \"-c\", \"echo $DRTOOL_RESULT >> {}/post\"]]\n\
             [notify]\nwebhook = \"{url}\"\n[metrics]\ntextfile_dir = \"{}\"\n",
            marks.display(),
            metrics.display()
        )
    };
    s.policy("flaky", &body("echo fine"));
    s.run(&["run", "flaky"]).ok();
    s.policy("flaky", &body("echo dump died >&2; exit 3"));
    let out = s.run(&["run", "flaky"]).expect_code(5);
    assert!(out.stderr.contains("dump died"), "{}", out.stderr);
    assert_eq!(s.repo.snapshots().len(), 1);
    assert_eq!(std::fs::read_to_string(marks.join("post")).unwrap(), "success\nfailure\n");
    let prom = std::fs::read_to_string(metrics.join("drtool_flaky.prom")).unwrap();
    assert!(prom.contains("drtool_last_run_success{policy=\"flaky\"} 0"), "{prom}");
    assert!(!prom.contains("drtool_last_success_timestamp_seconds{policy=\"flaky\"} 0\n"), "{prom}");
    // Only the failure was notified (on_success is off).
    assert!(wait_until(Duration::from_secs(5), || got.lock().unwrap().len() == 1));
    assert_eq!(got.lock().unwrap()[0]["event"], "backup_failed");
    assert!(got.lock().unwrap()[0]["report"]["error"].as_str().unwrap().contains("exit status 3"));
}

#[test]
fn a_failing_pre_hook_stops_the_run() {
    let s = Setup::new();
    s.policy("guarded", "[source]\nkind = \"command\"\ncommand = [\"echo\", \"x\"]\n[hooks]\npre = [[\"sh\", \"-c\", \"echo not today >&2; exit 1\"]]\n");
    let out = s.run(&["run", "guarded"]).expect_code(5);
    assert!(out.stderr.contains("not today"), "{}", out.stderr);
    assert!(s.repo.snapshots().is_empty());
}

#[test]
fn a_second_run_is_locked_at_once_and_a_killed_run_blocks_nothing() {
    let s = Setup::new();
    s.policy("slow", "[source]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"sleep 30; echo late\"]\n");
    let mut first = s.cmd(&["run", "slow"]);
    first.stdout(Stdio::null()).stderr(Stdio::null());
    let mut first = first.spawn().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || !children_of(first.id()).is_empty()),
        "first run never started its source"
    );
    let started = std::time::Instant::now();
    let out = s.run(&["run", "slow"]).expect_code(11);
    assert!(started.elapsed() < Duration::from_secs(5), "the second run waited");
    assert!(out.stderr.contains("another run of policy \"slow\""), "{}", out.stderr);
    // Crash the first run (and its source).
    let kids = children_of(first.id());
    send_signal(first.id(), libc::SIGKILL);
    for k in kids {
        send_signal(k as u32, libc::SIGKILL);
    }
    let _ = first.wait();
    // The next scheduled run goes ahead.
    s.policy("slow", "[source]\nkind = \"command\"\ncommand = [\"echo\", \"quick\"]\n");
    s.run(&["run", "slow"]).ok();
    assert_eq!(s.repo.snapshots().len(), 1);
}

// ---------------------------------------------------------------- schedules

fn systemd_analyze() -> bool {
    let ok = std::process::Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!mariadb::in_ci(), "systemd-analyze is missing but CI=true: scripts/setup.sh installs it");
        eprintln!("skipping: systemd-analyze is not installed");
    }
    ok
}

#[test]
fn schedule_writes_systemd_units_and_crontab_lines() {
    let s = Setup::new();
    let src = "[source]\nkind = \"command\"\ncommand = [\"true\"]\n";
    s.policy(
        "nightly",
        &format!("schedule = \"30 2 * * *\"\n{src}[drill]\nscratch = \"mariadb\"\nschedule = \"0 6 * * 0\"\n"),
    );
    s.policy("both-days", &format!("schedule = \"0 4 1,15 * Fri\"\n{src}"));
    s.policy("manual", src);
    let units = s.repo.scratch("units");
    s.run(&["schedule", "--systemd", units.to_str().unwrap()]).ok();
    let mut names: Vec<String> = std::fs::read_dir(&units).unwrap().map(|e| file_name(&e.unwrap().path())).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "drtool-both-days.service",
            "drtool-both-days.timer",
            "drtool-drill-nightly.service",
            "drtool-drill-nightly.timer",
            "drtool-nightly.service",
            "drtool-nightly.timer"
        ]
    );
    let drill = std::fs::read_to_string(units.join("drtool-drill-nightly.service")).unwrap();
    assert!(drill.contains(" drill nightly"), "{drill}");
    assert!(
        std::fs::read_to_string(units.join("drtool-drill-nightly.timer"))
            .unwrap()
            .contains("OnCalendar=Sun *-*-* 06:00:00")
    );
    let timer = std::fs::read_to_string(units.join("drtool-both-days.timer")).unwrap();
    assert!(timer.contains("Persistent=true"), "{timer}");
    let calendars: Vec<&str> = timer.lines().filter_map(|l| l.strip_prefix("OnCalendar=")).collect();
    assert_eq!(calendars.len(), 2, "day-of-month OR day-of-week needs two OnCalendar lines: {timer}");
    let service = std::fs::read_to_string(units.join("drtool-nightly.service")).unwrap();
    assert!(service.contains("Type=oneshot") && service.contains(" run nightly"), "{service}");
    if systemd_analyze() {
        for u in ["drtool-nightly.timer", "drtool-both-days.timer"] {
            for c in
                std::fs::read_to_string(units.join(u)).unwrap().lines().filter_map(|l| l.strip_prefix("OnCalendar="))
            {
                let out = std::process::Command::new("systemd-analyze").args(["calendar", c]).output().unwrap();
                assert!(out.status.success(), "systemd rejects {c}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
    let cron = s.run(&["schedule", "--crontab"]).ok().stdout_str();
    assert!(cron.lines().any(|l| l.starts_with("30 2 * * * ") && l.contains(" run nightly")), "{cron}");
    assert!(!cron.contains("run manual"), "{cron}");
    assert!(cron.lines().any(|l| l.starts_with("0 6 * * 0 ") && l.contains(" drill nightly")), "{cron}");
    let next = s.run(&["--json", "schedule", "--next", "nightly"]).ok().json();
    let times: Vec<&str> = next.as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(times.len(), 5);
    assert!(times.iter().all(|t| t.contains("T02:30:00")), "{times:?}");
}

#[test]
fn the_daemon_runs_due_policies_and_stops_cleanly() {
    let s = Setup::new();
    s.policy(
        "every-minute",
        "schedule = \"* * * * *\"\n[source]\nkind = \"command\"\ncommand = [\"echo\", \"tick\"]\n",
    );
    let mut daemon = s.cmd(&["daemon"]);
    daemon.stdout(Stdio::null()).stderr(Stdio::piped()).env("DRTOOL_LOG", "info");
    let mut daemon = daemon.spawn().unwrap();
    let ran = wait_until(Duration::from_secs(90), || s.repo.snapshots().len() >= 1);
    send_signal(daemon.id(), libc::SIGTERM);
    let status = wait_timeout(&mut daemon, Duration::from_secs(30));
    let mut log = String::new();
    daemon.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(ran, "no run within 90 s; daemon log:\n{log}");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("every-minute"), "{log}");
}

#[test]
fn run_by_file_and_unknown_policy() {
    let s = Setup::new();
    let f = s.policy("byfile", "[source]\nkind = \"command\"\ncommand = [\"echo\", \"x\"]\n");
    let mut c = s.cmd(&["run"]);
    c.arg(&f);
    run_with_input(c, None).ok();
    let out = s.run(&["run", "nope"]).expect_code(13);
    assert!(out.stderr.contains("no policy named \"nope\""), "{}", out.stderr);
}
