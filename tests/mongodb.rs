//! MongoDB source and target, driven by the real mongodump archives in
//! ../shared/fixtures/mongodump.
//!
//! No MongoDB server or tools can be installed on the build machines, so the
//! tools are stand-ins in a `bin_dir`: a `mongodump` that records its
//! arguments and config file and writes a real archive (or fails the way
//! mongodump does), and a `mongorestore` that records what it received. What
//! is tested is drtool's side: argument and password handling, validation of
//! real archives as they stream, manifest counts, byte-identical round trips.
//! The live test against a real mongod is in tests/mongodb_live.rs.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const FIXTURES: [&str; 4] = ["test.bar.archive", "dump-w-oplog.archive", "timeseries.archive", "bad-format.archive"];
const PASSWORD_DB: &str = "mongo-s3cret-\"quoted\"";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/mongodump").join(name)
}

/// Stand-in tools. Behaviour is steered by files in `dir`:
/// `archive` (what mongodump writes), `exit` (its exit status), `stderr`.
struct Tools {
    dir: tempfile::TempDir,
}

impl Tools {
    fn new() -> Tools {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let record = format!(
            r#"for a in "$@"; do printf '%s\n' "$a"; done > "{d}/$TOOL.args"
for a in "$@"; do case "$a" in --config=*) cp "${{a#--config=}}" "{d}/$TOOL.config";; esac; done
"#
        );
        let dump = format!(
            "#!/bin/sh\nTOOL=mongodump\n[ \"$1\" = --version ] && {{ echo 'mongodump version: 100.9.4'; exit 0; }}\n{record}\
             cat \"{d}/archive\"\n[ -f \"{d}/stderr\" ] && cat \"{d}/stderr\" >&2\nexit $(cat \"{d}/exit\" 2>/dev/null || echo 0)\n"
        );
        let restore = format!(
            "#!/bin/sh\nTOOL=mongorestore\n{record}cat > \"{d}/restored.archive\"\necho 'restored 27 documents' >&2\n"
        );
        for (name, body) in [("mongodump", dump), ("mongorestore", restore)] {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        Tools { dir }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn serve(&self, archive: &[u8]) {
        std::fs::write(self.path("archive"), archive).unwrap();
    }

    fn args(&self, tool: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(&format!("{tool}.args"))).unwrap().lines().map(str::to_string).collect()
    }

    fn url(&self, path_and_query: &str) -> String {
        let sep = if path_and_query.contains('?') { '&' } else { '?' };
        format!("mongodb://backup@127.0.0.1:27017/{path_and_query}{sep}bin_dir={}", self.dir.path().display())
    }
}

fn backup(repo: &Repo, url: &str) -> Out {
    let mut c = repo.cmd(["--json", "backup", "--source", url, "--name", "mongo"]);
    c.env("DRTOOL_SOURCE_PASSWORD", PASSWORD_DB);
    run_with_input(c, None)
}

fn show(repo: &Repo, spec: &str) -> Value {
    repo.run(["--json", "show", spec]).ok().json()
}

fn expected_counts(name: &str) -> Vec<(&'static str, u64)> {
    match name {
        "test.bar.archive" => vec![("test.bar", 1), ("admin.system.version", 1)],
        "dump-w-oplog.archive" => vec![("test.foo", 25), ("admin.system.version", 1), (".oplog", 18)],
        "timeseries.archive" => vec![("timeseries_test.system.buckets.foo_ts", 10), ("admin.system.version", 1)],
        _ => vec![],
    }
}

#[test]
fn real_archives_round_trip_byte_identical_with_their_counts() {
    let tools = Tools::new();
    let repo = Repo::init();
    for name in FIXTURES {
        let original = std::fs::read(fixture(name)).unwrap();
        tools.serve(&original);
        let out = backup(&repo, &tools.url("")).ok().json();
        let id = out["snapshot_id"].as_str().unwrap().to_string();
        let m = show(&repo, &id);
        assert_eq!(m["source"]["kind"], "mongodb");
        let counts = &m["fingerprints"]["counts"];
        for (ns, n) in expected_counts(name) {
            assert_eq!(counts[ns], n, "{name}: count of {ns} in {counts}");
        }
        let stream = &m["source"]["details"]["streams"][0];
        assert_eq!(stream["format"], "mongodb-archive");
        let header = &stream["facts"];
        let want_server = match name {
            "test.bar.archive" => "3.4.3",
            "dump-w-oplog.archive" => "4.0.2",
            "timeseries.archive" => "5.0.0-rc0",
            _ => "4.0.14",
        };
        assert_eq!(header["server_version"], want_server, "{name}");
        assert_eq!(m["source"]["details"]["dump_tool_version"], "mongodump version: 100.9.4");

        // Raw restore: the archive, byte for byte.
        let dir = repo.scratch(&format!("raw-{name}"));
        repo.restore_target(&id, &dir, &[]).ok();
        assert!(std::fs::read(dir.join("all.archive")).unwrap() == original, "{name}: raw restore differs");

        // Restore into a server: mongorestore receives the archive, byte for byte.
        let mut c = repo.cmd(["restore", &id, "--to", &tools.url(""), "--yes"]);
        c.env("DRTOOL_TARGET_PASSWORD", PASSWORD_DB);
        run_with_input(c, None).ok();
        assert!(
            std::fs::read(tools.path("restored.archive")).unwrap() == original,
            "{name}: mongorestore input differs"
        );
    }
}

#[test]
fn password_reaches_the_tools_only_through_their_config_file() {
    let tools = Tools::new();
    let repo = Repo::init();
    tools.serve(&std::fs::read(fixture("test.bar.archive")).unwrap());
    let out = backup(&repo, &tools.url("?authSource=admin")).ok();
    assert!(!out.stderr.contains("s3cret"));
    let args = tools.args("mongodump");
    assert!(args.iter().all(|a| !a.contains("s3cret")), "password in argv: {args:?}");
    assert!(args[0].starts_with("--config="), "{args:?}");
    assert_eq!(args[1..], ["--uri=mongodb://backup@127.0.0.1:27017/?authSource=admin", "--archive"]);
    let cfg = std::fs::read_to_string(tools.path("mongodump.config")).unwrap();
    assert_eq!(cfg, "password: \"mongo-s3cret-\\\"quoted\\\"\"\n");
    // The private file is gone once the run is over.
    let cfg_path = Path::new(args[0].trim_start_matches("--config="));
    assert!(!cfg_path.exists() && !cfg_path.parent().unwrap().exists(), "{} left behind", cfg_path.display());
    // Nor does the manifest hold it.
    let m = repo.run(["show", "latest"]).ok();
    assert!(!m.stdout_str().contains("s3cret"));
}

#[test]
fn oplog_and_database_options_become_mongodump_arguments() {
    let tools = Tools::new();
    let repo = Repo::init();
    tools.serve(&std::fs::read(fixture("dump-w-oplog.archive")).unwrap());
    backup(&repo, &tools.url("?oplog=true")).ok();
    assert_eq!(tools.args("mongodump")[2..], ["--archive", "--oplog"]);
    let m = show(&repo, "latest");
    assert_eq!(m["source"]["details"]["oplog"], true);

    // One archive per named database.
    tools.serve(&std::fs::read(fixture("test.bar.archive")).unwrap());
    backup(&repo, &tools.url("test")).ok();
    assert_eq!(tools.args("mongodump")[2..], ["--archive", "--db=test"]);
    let m = show(&repo, "latest");
    assert_eq!(m["items"][0]["name"], "test.archive");
    assert_eq!(m["items"][0]["database"], "test");

    // --oplog cannot be combined with a database list: a usage error, no snapshot.
    let before = repo.snapshots().len();
    let out = backup(&repo, &tools.url("test?oplog=true")).expect_code(2);
    assert!(out.stderr.contains("oplog"), "{}", out.stderr);
    assert_eq!(repo.snapshots().len(), before);
}

#[test]
fn restore_renames_and_drops_through_mongorestore_arguments() {
    let tools = Tools::new();
    let repo = Repo::init();
    tools.serve(&std::fs::read(fixture("test.bar.archive")).unwrap());
    backup(&repo, &tools.url("test")).ok();
    let plan = repo.run(["restore", "latest", "--to", &tools.url(""), "--rename", "test_copy", "--dry-run"]).ok();
    assert!(plan.stdout_str().contains("test -> test_copy"), "{}", plan.stdout_str());
    assert!(!tools.path("mongorestore.args").exists(), "--dry-run ran mongorestore");
    repo.run(["restore", "latest", "--to", &tools.url(""), "--rename", "test_copy", "--clean", "--yes"]).ok();
    // No target password given: no config file either.
    let args = tools.args("mongorestore");
    assert_eq!(
        args,
        [
            "--uri=mongodb://backup@127.0.0.1:27017/",
            "--archive",
            "--nsInclude=test.*",
            "--nsFrom=test.*",
            "--nsTo=test_copy.*",
            "--drop"
        ]
    );
}

#[test]
fn restore_without_yes_and_without_a_terminal_is_refused() {
    let tools = Tools::new();
    let repo = Repo::init();
    tools.serve(&std::fs::read(fixture("test.bar.archive")).unwrap());
    backup(&repo, &tools.url("")).ok();
    let out = repo.run(["restore", "latest", "--to", &tools.url("")]).expect_code(6);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    assert!(!tools.path("mongorestore.args").exists(), "mongorestore ran without confirmation");
}

#[test]
fn truncated_archives_fail_the_backup_even_when_mongodump_exits_0() {
    let tools = Tools::new();
    let repo = Repo::init();
    for name in FIXTURES {
        let full = std::fs::read(fixture(name)).unwrap();
        for cut in [0, 3, 40, full.len() / 3, full.len() / 2, full.len() - 4, full.len() - 1] {
            tools.serve(&full[..cut]);
            let out = backup(&repo, &tools.url("")).expect_code(5);
            assert!(
                out.stderr.contains("truncated") || out.stderr.contains("malformed") || out.stderr.contains("magic"),
                "{name} cut at {cut}: {}",
                out.stderr
            );
            assert!(out.stderr.contains("mongodump of all databases on 127.0.0.1:27017"), "{}", out.stderr);
        }
    }
    assert!(repo.snapshots().is_empty(), "a truncated archive became a snapshot");
}

#[test]
fn a_failing_mongodump_fails_the_backup_with_its_stderr() {
    let tools = Tools::new();
    let repo = Repo::init();
    let full = std::fs::read(fixture("dump-w-oplog.archive")).unwrap();
    tools.serve(&full[..full.len() / 2]);
    std::fs::write(tools.path("stderr"), "Failed: error connecting to db server: server returned error on SASL authentication step: Authentication failed.\n").unwrap();
    std::fs::write(tools.path("exit"), "1").unwrap();
    let out = backup(&repo, &tools.url("")).expect_code(5);
    assert!(out.stderr.contains("Authentication failed"), "{}", out.stderr);
    assert!(repo.snapshots().is_empty());
}

#[test]
fn missing_tools_are_a_clear_error() {
    let repo = Repo::init();
    let empty = tempfile::tempdir().unwrap();
    let url = format!("mongodb://127.0.0.1:27017/?bin_dir={}", empty.path().display());
    let out = backup(&repo, &url).expect_code(5);
    assert!(out.stderr.contains("mongodump") && out.stderr.contains("Database Tools"), "{}", out.stderr);
}
