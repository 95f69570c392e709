//! Retention groups snapshots by host and name (issue 18): one host's
//! `forget` or nightly policy run never forgets another host's snapshots of
//! the same name, unless asked to (`--group-by`, `[retention] group_by`).

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn backup_on(repo: &Repo, host: &str, name: &str, time: &str) -> String {
    let args = ["--json", "backup", "--stdin", "--name", name, "--host", host, "--time", time];
    let out = repo.run_input(args, std::io::Cursor::new(format!("{host} {time}").into_bytes())).ok().json();
    out["snapshot_id"].as_str().unwrap().to_string()
}

/// host -> ids of the snapshots left, oldest first.
fn by_host(repo: &Repo) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in repo.snapshots() {
        out.entry(s["host"].as_str().unwrap().to_string()).or_default().push(s["id"].as_str().unwrap().to_string());
    }
    out
}

/// hostA and hostB back up the same name; hostB's is the newest snapshot.
fn two_hosts() -> (Repo, [String; 3]) {
    let repo = Repo::init();
    let a1 = backup_on(&repo, "hostA", "d", "2026-04-01T01:00:00Z");
    let a2 = backup_on(&repo, "hostA", "d", "2026-04-02T01:00:00Z");
    let b1 = backup_on(&repo, "hostB", "d", "2026-04-02T03:00:00Z");
    (repo, [a1, a2, b1])
}

#[test]
fn forget_keeps_the_last_snapshot_of_each_host() {
    let (repo, [a1, a2, b1]) = two_hosts();
    // The dry run shows one group per host.
    let plan = repo.run(["forget", "--keep-last", "1", "--dry-run"]).ok().stdout_str();
    assert!(plan.contains("host hostA, name d: keep 1, remove 1"), "{plan}");
    assert!(plan.contains("host hostB, name d: keep 1, remove 0"), "{plan}");
    let plan = repo.run(["--json", "forget", "--keep-last", "1", "--dry-run"]).ok().json();
    let groups = plan["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{plan}");
    assert_eq!((groups[0]["host"].as_str(), groups[0]["name"].as_str()), (Some("hostA"), Some("d")));
    assert_eq!(repo.snapshots().len(), 3, "--dry-run removed something");

    let done = repo.run(["--json", "forget", "--keep-last", "1"]).ok().json();
    assert_eq!(done["removed"], serde_json::json!([a1]));
    let left = by_host(&repo);
    assert_eq!(left.get("hostA"), Some(&vec![a2.clone()]), "hostB's forget took hostA's snapshots: {left:?}");
    assert_eq!(left.get("hostB"), Some(&vec![b1.clone()]));
    // Both still restore.
    assert_eq!(repo.restore_stdout(&a2, &[]).ok().stdout, b"hostA 2026-04-02T01:00:00Z");
}

#[test]
fn group_by_name_and_host_filters() {
    let (repo, [a1, a2, b1]) = two_hosts();
    // --host limits the rules to one host's snapshots.
    repo.run(["forget", "--keep-last", "1", "--host", "hostB"]).ok();
    assert_eq!(repo.snapshots().len(), 3);
    // --group-by name: one group across hosts (the behaviour before issue 18).
    let plan = repo.run(["--json", "forget", "--keep-last", "1", "--group-by", "name", "--dry-run"]).ok().json();
    let groups = plan["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{plan}");
    assert!(groups[0].get("host").is_none(), "{plan}");
    let mut would: Vec<String> =
        plan["removed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    would.sort();
    let mut expect = vec![a1.clone(), a2.clone()];
    expect.sort();
    assert_eq!(would, expect);
    // --group-by "": every selected snapshot in one group, here those of hostA.
    repo.run(["forget", "--keep-last", "1", "--group-by", "", "--host", "hostA"]).ok();
    let left = by_host(&repo);
    assert_eq!(left.get("hostA"), Some(&vec![a2]));
    assert_eq!(left.get("hostB"), Some(&vec![b1.clone()]));

    let out = repo.run(["forget", "--keep-last", "1", "--group-by", "hots"]).expect_code(2);
    assert!(out.stderr.contains("--group-by") && out.stderr.contains("\"hots\""), "{}", out.stderr);
    let out = repo.run(["forget", "--group-by", "name", &b1]).expect_code(2);
    assert!(out.stderr.contains("retention rules"), "{}", out.stderr);
    let out = repo.run(["forget", "--host", "hostB", &b1]).expect_code(2);
    assert!(out.stderr.contains("retention rules"), "{}", out.stderr);
    let out = repo.run_input(["backup", "--stdin", "--name", "x", "--host", ""], std::io::Cursor::new(b"x".to_vec()));
    out.expect_code(2);
    assert_eq!(repo.snapshots().len(), 2);
}

/// A policy directory next to a repository, with a state directory.
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
        let (state, policies) = (repo.scratch("state"), repo.scratch("policies"));
        Setup { repo, pw_file, state, policies }
    }

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

    fn run(&self, args: &[&str]) -> Out {
        let mut c = drtool();
        c.arg("--policies").arg(&self.policies).args(args).env("DRTOOL_STATE_DIR", &self.state);
        run_with_input(c, None)
    }
}

#[test]
fn a_policy_run_forgets_only_its_own_hosts_snapshots() {
    let s = Setup::new();
    // web-b runs the same policy; its snapshots are older than web-a's.
    for t in ["2020-04-01T01:00:00Z", "2020-04-02T01:00:00Z"] {
        backup_on(&s.repo, "web-b", "web", t);
    }
    let body = |retention: &str| {
        format!(
            "host = \"web-a\"\n[source]\nkind = \"command\"\ncommand = [\"echo\", \"a\"]\n[retention]\n{retention}\n"
        )
    };
    s.policy("web", &body("keep_last = 1"));
    for round in 0..2 {
        let report: Value = s.run(&["--json", "run", "web"]).ok().json();
        assert_eq!(report["forgotten"].as_array().unwrap().len(), round, "{report}");
        assert_eq!(report["snapshots"], 1, "the run counts its own host's snapshots: {report}");
    }
    let left = by_host(&s.repo);
    assert_eq!(left.get("web-a").map(Vec::len), Some(1), "{left:?}");
    assert_eq!(left.get("web-b").map(Vec::len), Some(2), "web-a's retention forgot web-b's snapshots: {left:?}");

    // group_by = ["name"] opts back into one group across hosts.
    s.policy("web", &body("keep_last = 1\ngroup_by = [\"name\"]"));
    let report: Value = s.run(&["--json", "run", "web"]).ok().json();
    assert_eq!(report["forgotten"].as_array().unwrap().len(), 3, "{report}");
    let left = by_host(&s.repo);
    assert_eq!(left.keys().collect::<Vec<_>>(), ["web-a"], "{left:?}");
}

#[test]
fn bad_group_by_in_a_policy_is_a_located_error() {
    let s = Setup::new();
    let cases = [
        ("keep_last = 1\ngroup_by = [\"hots\"]", 9, "hots"),
        ("keep_last = 1\ngroup_by = \"host\"", 9, "sequence"),
        ("keep_last = 1\ngroup_by = [\"name\", \"name\"]", 7, "twice"),
        ("group_by = [\"name\"]", 7, "no rule"),
    ];
    for (i, (retention, line, want)) in cases.iter().enumerate() {
        let f = s.policy(
            &format!("p{i}"),
            &format!("[source]\nkind = \"command\"\ncommand = [\"true\"]\n[retention]\n{retention}\n"),
        );
        let mut c = drtool();
        c.args(["policy", "check"]).arg(&f);
        let out = run_with_input(c, None).expect_code(2);
        let prefix = format!("{}:{line}:", f.display());
        assert!(
            out.stderr.lines().any(|l| l.starts_with(&prefix) && l.contains(want)),
            "case {i}: wanted {prefix}...{want}... in:\n{}",
            out.stderr
        );
        std::fs::remove_file(&f).unwrap();
    }
}
