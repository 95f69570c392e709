//! Webhook URLs hold secrets (Slack's /services/T/B/SECRET, ?token=...): a
//! failed notification is reported with the URL redacted, and the secret
//! appears in no output, report, state or metrics file (issue 18).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const PATH_SECRET: &str = "PathSecret4242xyz";
const QUERY_SECRET: &str = "QuerySecret9876abc";
const USER_SECRET: &str = "UserSecret5555pq";

/// How a test webhook server answers.
#[derive(Clone, Copy)]
enum Answer {
    /// Reads the request, answers 500.
    ServerError,
    /// Closes the connection without a word (the HTTP client's own error).
    Hangup,
}

/// A loopback webhook server; returns its address and the number of requests seen.
fn server(answer: Answer) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            if let Answer::Hangup = answer {
                drop(conn);
                continue;
            }
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
            let _ = reader.read_exact(&mut vec![0u8; len]);
            let _ =
                conn.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (addr, seen)
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { all_files(&p, out) } else { out.push(p) }
    }
}

#[test]
fn a_failed_webhook_is_reported_without_its_secrets() {
    for (answer, what) in [(Answer::ServerError, "500"), (Answer::Hangup, "")] {
        let repo = Repo::init();
        let pw_file = repo.dir.path().join("repo.pass");
        std::fs::write(&pw_file, format!("{}\n", repo.password)).unwrap();
        let (state, policies, metrics) = (repo.scratch("state"), repo.scratch("policies"), repo.scratch("metrics"));
        let (addr, seen) = server(answer);
        let url = format!("http://hook:{USER_SECRET}@{addr}/services/T0001/B0002/{PATH_SECRET}?token={QUERY_SECRET}");
        std::fs::write(
            policies.join("nightly.toml"),
            format!(
                "name = \"nightly\"\nrepository = \"{}\"\npassword_file = \"{}\"\n\
                 [source]\nkind = \"command\"\ncommand = [\"echo\", \"x\"]\n\
                 [notify]\nwebhook = \"{url}\"\non_success = true\n[metrics]\ntextfile_dir = \"{}\"\n",
                repo.path.display(),
                pw_file.display(),
                metrics.display()
            ),
        )
        .unwrap();
        for verbosity in ["", "-vv"] {
            let mut c = drtool();
            c.arg("--policies").arg(&policies).env("DRTOOL_STATE_DIR", &state).args(["--json", "run", "nightly"]);
            if !verbosity.is_empty() {
                c.arg(verbosity);
            }
            let out = run_with_input(c, None).ok();
            // The notification failed, and says so, naming the server only.
            let reported = format!("notification to http://{addr}/<redacted> failed");
            assert!(out.stderr.contains(&reported), "{reported} not in:\n{}", out.stderr);
            assert!(out.stderr.contains(what), "{what} not in:\n{}", out.stderr);
            let mut files = Vec::new();
            all_files(&state, &mut files);
            all_files(&metrics, &mut files);
            assert!(files.len() >= 2, "{files:?}");
            let mut texts = vec![out.stdout_str(), out.stderr.clone()];
            texts.extend(files.iter().map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned()));
            for secret in [PATH_SECRET, QUERY_SECRET, USER_SECRET] {
                for t in &texts {
                    assert!(!t.contains(secret), "{secret} leaked ({verbosity}):\n{t}");
                }
            }
        }
        assert!(seen.load(Ordering::SeqCst) >= 2, "the webhook server was never called");
    }
}
