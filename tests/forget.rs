//! `drtool forget`: by id, and by retention rules per snapshot name.

mod common;

use common::*;

fn backup_at(repo: &Repo, name: &str, time: &str, data: &[u8]) -> String {
    let out = repo
        .run_input(["--json", "backup", "--stdin", "--name", name, "--time", time], std::io::Cursor::new(data.to_vec()))
        .ok()
        .json();
    out["snapshot_id"].as_str().unwrap().to_string()
}

#[test]
fn retention_keeps_per_name_explains_itself_and_dry_run_changes_nothing() {
    let repo = Repo::init();
    // Four days of 6-hourly "db" snapshots, and two "files" snapshots.
    let mut db = Vec::new();
    for day in 10..14 {
        for hour in [0, 6, 12, 18] {
            let t = format!("2026-03-{day}T{hour:02}:00:00Z");
            db.push((t.clone(), backup_at(&repo, "db", &t, t.as_bytes())));
        }
    }
    backup_at(&repo, "files", "2026-03-01T00:00:00Z", b"a");
    backup_at(&repo, "files", "2026-03-02T00:00:00Z", b"b");

    let plan = repo.run(["--json", "forget", "--keep-daily", "2", "--keep-last", "1", "--dry-run"]).ok().json();
    assert_eq!(plan["dry_run"], true);
    let groups = plan["groups"].as_array().unwrap();
    let db_group = groups.iter().find(|g| g["name"] == "db").unwrap();
    let kept: Vec<&str> = db_group["keep"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    // The newest (last + daily of the 13th) and the 18:00 one of the 12th (daily).
    let id_at = |t: &str| db.iter().find(|(time, _)| time == t).unwrap().1.as_str();
    assert_eq!(kept, [id_at("2026-03-13T18:00:00Z"), id_at("2026-03-12T18:00:00Z")]);
    let reasons = db_group["keep"][0]["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|r| r == "last snapshot")
            && reasons.iter().any(|r| r.as_str().unwrap().starts_with("daily")),
        "{reasons:?}"
    );
    assert_eq!(db_group["remove"].as_array().unwrap().len(), 14);
    // "files" is its own group: its two snapshots are on two days.
    let files = groups.iter().find(|g| g["name"] == "files").unwrap();
    assert_eq!(files["keep"].as_array().unwrap().len(), 2);
    assert_eq!(repo.snapshots().len(), 18, "--dry-run removed something");

    let done = repo.run(["--json", "forget", "--keep-daily", "2", "--keep-last", "1"]).ok().json();
    assert_eq!(done["removed"].as_array().unwrap().len(), 14);
    assert_eq!(repo.snapshots().len(), 4);
    // What is left still restores.
    let out = repo.restore_stdout(id_at("2026-03-12T18:00:00Z"), &[]).ok();
    assert_eq!(out.stdout, b"2026-03-12T18:00:00Z");
}

#[test]
fn forget_by_id_and_bad_input() {
    let repo = Repo::init();
    let a = backup_at(&repo, "x", "2026-01-01T00:00:00Z", b"one");
    let b = backup_at(&repo, "x", "2026-01-02T00:00:00Z", b"two");
    repo.run(["forget", &a[..10]]).ok();
    let left: Vec<String> = repo.snapshots().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(left, [b.clone()]);
    let out = repo.run(["forget"]).expect_code(2);
    assert!(out.stderr.contains("nothing to forget"), "{}", out.stderr);
    let out = repo.run(["forget", "--keep-daily", "-5"]).expect_code(2);
    assert!(out.stderr.contains("keep_daily"), "{}", out.stderr);
    let out = repo.run(["forget", "--keep-within", "5 parsecs"]).expect_code(2);
    assert!(out.stderr.contains("keep_within"), "{}", out.stderr);
    repo.run(["forget", "deadbeef"]).expect_code(13);
    assert_eq!(repo.snapshots().len(), 1);
}
