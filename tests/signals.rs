//! SIGINT and SIGTERM stop a policy run with exit 130 in every phase, also
//! after the backup's own signal watch has ended (issue 18: a Ctrl-C during
//! post hooks was swallowed and the run went on until the hook's timeout).

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

/// Only a guard against a hang, not a timing assertion.
const HANG_GUARD: Duration = Duration::from_secs(120);

struct Setup {
    repo: Repo,
    pw_file: PathBuf,
    state: PathBuf,
    policies: PathBuf,
    marks: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let repo = Repo::init();
        let pw_file = repo.dir.path().join("repo.pass");
        std::fs::write(&pw_file, format!("{}\n", repo.password)).unwrap();
        let (state, policies, marks) = (repo.scratch("state"), repo.scratch("policies"), repo.scratch("marks"));
        Setup { repo, pw_file, state, policies, marks }
    }

    /// A policy backing up a small command output, with these hooks (TOML lines).
    fn policy(&self, name: &str, hooks: &str) {
        let text = format!(
            "name = \"{name}\"\nrepository = \"{}\"\npassword_file = \"{}\"\n\
             [source]\nkind = \"command\"\ncommand = [\"echo\", \"data\"]\n[retention]\nkeep_last = 5\n\
             [hooks]\ntimeout_seconds = 3600\n{hooks}\n",
            self.repo.path.display(),
            self.pw_file.display()
        );
        std::fs::write(self.policies.join(format!("{name}.toml")), text).unwrap();
    }

    fn spawn_run(&self, name: &str) -> Child {
        let mut c = drtool();
        c.arg("--policies").arg(&self.policies).args(["--json", "run", name]).env("DRTOOL_STATE_DIR", &self.state);
        c.spawn().expect("spawn drtool run")
    }
}

/// A hook that records its pid in `marker` (so the test knows it is running)
/// and then blocks far longer than the test's hang guard.
fn blocking_hook(marker: &Path) -> String {
    format!("[\"sh\", \"-c\", \"echo $$ > {}.tmp && mv {0}.tmp {0} && exec sleep 3600\"]", marker.display())
}

fn wait_for_pid(marker: &Path, drtool: &mut Child) -> i32 {
    let appeared = wait_until(HANG_GUARD, || marker.exists() || drtool.try_wait().unwrap().is_some());
    assert!(appeared && marker.exists(), "the hook never started (drtool: {:?})", drtool.try_wait());
    std::fs::read_to_string(marker).unwrap().trim().parse().unwrap()
}

fn alive(pid: i32) -> bool {
    processes().iter().any(|p| p.0 == pid && p.3 != 'Z' && p.3 != 'X')
}

/// Stop drtool (hang guard), then collect its output; kills a left-over hook.
fn finish(mut drtool: Child, hook: i32) -> (std::process::ExitStatus, Value, String) {
    let stdout = collect(drtool.stdout.take().unwrap());
    let stderr = collect(drtool.stderr.take().unwrap());
    let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait_timeout(&mut drtool, HANG_GUARD)));
    let hook_alive = alive(hook);
    if hook_alive {
        send_signal(hook as u32, libc::SIGKILL);
    }
    let status = status.unwrap_or_else(|_| panic!("drtool did not stop within {HANG_GUARD:?} of the signal"));
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert_no_panic(&stderr);
    assert!(!hook_alive, "the interrupted hook {hook} was left running");
    let report = serde_json::from_slice(&stdout.join().unwrap()).unwrap_or(Value::Null);
    (status, report, stderr)
}

#[test]
fn a_signal_during_a_post_hook_stops_the_run_with_130_and_keeps_the_snapshot() {
    for (sig, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let s = Setup::new();
        let marker = s.marks.join("post-running");
        s.policy("nightly", &format!("post = [{}]", blocking_hook(&marker)));
        let mut drtool = s.spawn_run("nightly");
        // The post hook runs after the commit and retention: the watch is over.
        let hook = wait_for_pid(&marker, &mut drtool);
        send_signal(drtool.id(), sig);
        let (status, report, stderr) = finish(drtool, hook);
        assert_eq!(status.code(), Some(130), "{name}: {status:?}\n{stderr}");
        assert!(stderr.contains(&format!("interrupted by {name}")), "{stderr}");
        assert_eq!(report["ok"], false, "{report}");
        assert!(report["error"].as_str().unwrap_or("").contains(name), "{report}");
        // The commit had completed: the snapshot is there, whole, and the repository is clean.
        let snaps = s.repo.snapshots();
        assert_eq!(snaps.len(), 1);
        assert_eq!(report["snapshot_id"], snaps[0]["id"], "{report}");
        assert_eq!(s.repo.restore_stdout("latest", &[]).ok().stdout, b"data\n");
        let (code, check) = s.repo.check(&[]);
        assert_eq!(code, 0, "{check}");
    }
}

#[test]
fn a_signal_during_a_pre_hook_stops_before_the_backup_and_still_runs_post_hooks() {
    let s = Setup::new();
    let marker = s.marks.join("pre-running");
    let post = s.marks.join("post");
    s.policy(
        "guarded",
        &format!(
            "pre = [{}]\npost = [[\"sh\", \"-c\", \"echo $DRTOOL_RESULT >> {}\"]]",
            blocking_hook(&marker),
            post.display()
        ),
    );
    let mut drtool = s.spawn_run("guarded");
    let hook = wait_for_pid(&marker, &mut drtool);
    send_signal(drtool.id(), libc::SIGINT);
    let (status, report, stderr) = finish(drtool, hook);
    assert_eq!(status.code(), Some(130), "{status:?}\n{stderr}");
    assert!(report["error"].as_str().unwrap_or("").contains("interrupted by SIGINT"), "{report}");
    assert!(s.repo.snapshots().is_empty());
    // Post hooks undo what pre hooks did, interrupted or not.
    assert_eq!(std::fs::read_to_string(&post).unwrap(), "failure\n");
    let state: Value = serde_json::from_slice(&std::fs::read(s.state.join("policies/guarded.json")).unwrap()).unwrap();
    assert_eq!(state["last_ok"], false, "{state}");
}
