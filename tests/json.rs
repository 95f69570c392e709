//! `--json` output parses and has the documented fields and types.

mod common;

use common::*;
use serde_json::Value;
use std::ffi::OsStr;

#[track_caller]
fn assert_summary(s: &Value) {
    for k in ["bytes_read", "bytes_new", "bytes_stored", "chunks", "chunks_new", "packs", "duration_ms"] {
        assert!(s[k].is_u64(), "summary.{k} missing or not a number: {s}");
    }
}

#[track_caller]
fn assert_hex_id(v: &Value, key: &str) -> String {
    let id = text(v, key);
    assert_eq!(id.len(), 64, "{key} is a 64-hex id: {v}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{key}: {id}");
    id.to_string()
}

#[test]
fn backup_snapshots_check_and_key_list_json() {
    let repo = Repo::uninitialised();
    let init = repo.run(["--json", "init"]).ok().json();
    assert!(init["id"].is_string() && init["key"].is_string(), "{init}");

    // backup --json (stdin and command).
    let data = sql_like(2, 3 * MIB);
    let b = repo
        .run_input(
            ["--json", "backup", "--stdin", "--name", "db", "--tag", "nightly"],
            std::io::Cursor::new(data.clone()),
        )
        .ok()
        .json();
    let id = assert_hex_id(&b, "snapshot_id");
    assert_eq!(text(&b, "short_id"), &id[..8]);
    assert_eq!(text(&b, "name"), "db");
    assert_eq!(b["partial"], false);
    assert_summary(&b["summary"]);
    assert_eq!(num(&b, "summary.bytes_read"), data.len() as u64);
    assert!(
        num(&b, "summary.bytes_stored") > 0 && num(&b, "summary.bytes_stored") < data.len() as u64,
        "SQL text compresses: {b}"
    );
    assert!(num(&b, "summary.packs") >= 1);
    assert_eq!(num(&b, "summary.chunks_new"), num(&b, "summary.chunks"));
    assert!(chrono::DateTime::parse_from_rfc3339(text(&b, "time")).is_ok(), "{b}");
    let c = repo.run(["--json", "backup", "--name", "cmd", "--", "printf", "hello"]).ok().json();
    assert_eq!(num(&c, "summary.bytes_read"), 5);

    // snapshots --json (all, and filtered by name).
    let all = repo.run(["--json", "snapshots"]).ok().json();
    let all = all.as_array().expect("array");
    assert_eq!(all.len(), 2);
    let s = all.iter().find(|s| s["id"] == id.as_str()).expect("the backup is listed");
    assert_hex_id(s, "id");
    assert_eq!(text(s, "short_id"), &id[..8]);
    assert_eq!(text(s, "name"), "db");
    assert_eq!(text(s, "source"), "stdin");
    assert!(s["host"].is_string());
    assert_eq!(num(s, "size"), data.len() as u64);
    assert_eq!(s["tags"], serde_json::json!(["nightly"]));
    assert_eq!(s["partial"], false);
    assert!(chrono::DateTime::parse_from_rfc3339(text(s, "time")).is_ok());
    assert_summary(&s["summary"]);
    assert_eq!(s["summary"], b["summary"], "the stored summary is the one reported by backup");
    let only = repo.run(["--json", "snapshots", "--name", "cmd"]).ok().json();
    assert_eq!(only.as_array().unwrap().len(), 1);
    assert_eq!(only[0]["source"], "command");
    let none = repo.run(["--json", "snapshots", "--name", "nothing"]).ok().json();
    assert_eq!(none, serde_json::json!([]));

    // check --json, structural and with data.
    for args in [
        vec!["--json", "check"],
        vec!["--json", "check", "--read-data"],
        vec!["--json", "check", "--read-data-subset", "50"],
    ] {
        let r = repo.run(&args).ok().json();
        for k in ["snapshots", "index_files", "packs_indexed", "packs_read", "blobs_read", "unindexed_packs"] {
            assert!(r[k].is_u64(), "{args:?}: {k} in {r}");
        }
        assert_eq!(num(&r, "snapshots"), 2);
        assert_eq!(r["damaged_packs"], serde_json::json!([]));
        assert_eq!(r["errors"], serde_json::json!([]));
    }
    let full = repo.run(["--json", "check", "--read-data"]).ok().json();
    assert_eq!(num(&full, "packs_read"), num(&full, "packs_indexed"));
    assert!(
        num(&full, "blobs_read") > num(&b, "summary.chunks"),
        "every data chunk and the metadata were read: {full}"
    );

    // key list --json.
    let keys = repo.run(["--json", "key", "list"]).ok().json();
    let keys = keys.as_array().expect("array");
    assert_eq!(keys.len(), 1);
    assert_eq!(text(&keys[0], "id"), text(&init, "key"));
    assert_eq!(keys[0]["current"], true);
    assert!(chrono::DateTime::parse_from_rfc3339(text(&keys[0], "created")).is_ok());

    // restore --json to a directory reports a summary on stdout.
    let target = repo.scratch("t");
    let r = repo.restore_target(&id, &target, &[]);
    assert!(r.status.success());
    let r = repo
        .run([
            OsStr::new("--json"),
            OsStr::new("restore"),
            OsStr::new("latest"),
            OsStr::new("--name"),
            OsStr::new("cmd"),
            OsStr::new("--target"),
            target.as_os_str(),
        ])
        .ok()
        .json();
    assert_eq!(num(&r, "summary.bytes"), 5, "{r}");
    assert_eq!(num(&r, "summary.files"), 1, "{r}");
}

#[test]
fn check_json_reports_damage_as_json_with_exit_4() {
    let repo = Repo::init();
    repo.backup_stdin("db", &random_bytes(1, 2 * MIB));
    let pack = repo.packs().into_iter().next().unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let n = bytes.len() - 1;
    bytes[n] ^= 1;
    std::fs::write(&pack, bytes).unwrap();
    let out = repo.run(["--json", "check", "--read-data"]).expect_code(4);
    let r = out.json();
    assert_eq!(r["damaged_packs"][0]["pack"], file_name(&pack).as_str());
    assert_eq!(r["damaged_packs"][0]["snapshots"].as_array().unwrap().len(), 1);
}
