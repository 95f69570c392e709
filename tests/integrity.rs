//! Damage is detected and never restored: a flipped byte in a pack makes
//! `check --read-data` name the pack and the snapshots it affects, and makes
//! `restore` fail with exit 4 without writing a single wrong byte.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

fn pack_set(repo: &Repo) -> BTreeSet<PathBuf> {
    repo.packs().into_iter().collect()
}

/// A repository with a "victim" stream whose packs are separate from a
/// "bystander" stream's; returns (repo, victim data, victim id, bystander data, bystander id, victim packs).
fn two_snapshots() -> (Repo, Vec<u8>, String, Vec<u8>, String, Vec<PathBuf>) {
    let repo = Repo::init();
    let victim = random_bytes(6, 7 * MIB);
    let v1 = repo.backup_stdin("victim", &victim);
    let victim_packs: Vec<PathBuf> = pack_set(&repo).into_iter().collect();
    assert!(!victim_packs.is_empty());
    let bystander = random_bytes(7, 3 * MIB);
    let v2 = repo.backup_stdin("bystander", &bystander);
    let (vid, bid) = (text(&v1, "snapshot_id").to_string(), text(&v2, "snapshot_id").to_string());
    (repo, victim, vid, bystander, bid, victim_packs)
}

#[test]
fn flipped_byte_in_a_pack_is_found_named_and_never_restored() {
    let (repo, victim, vid, bystander, bid, victim_packs) = two_snapshots();
    assert_eq!(repo.check(&["--read-data"]).0, 0, "a fresh repository checks clean");

    // Damage the victim's largest pack in the middle (inside a blob).
    let pack = victim_packs.iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap().clone();
    let pack_id = file_name(&pack);
    let len = std::fs::metadata(&pack).unwrap().len() as usize;
    flip_byte(&pack, len / 2);

    // Structural check does not read pack contents: it still passes (decided by running it).
    let (code, report) = repo.check(&[]);
    assert_eq!(code, 0, "structural check reads no data: {report}");
    assert_eq!(num(&report, "packs_read"), 0);
    assert_eq!(report["damaged_packs"].as_array().unwrap().len(), 0);

    for args in [&["--read-data"][..], &["--read-data-subset", "100"][..]] {
        let (code, report) = repo.check(args);
        assert_eq!(code, 4, "check {args:?} must report damage: {report}");
        let damaged = report["damaged_packs"].as_array().unwrap();
        assert_eq!(damaged.len(), 1, "{report}");
        assert_eq!(damaged[0]["pack"], pack_id.as_str(), "the damaged pack is named by its id");
        assert!(!text(&damaged[0], "reason").is_empty());
        let snaps: Vec<&str> =
            damaged[0]["snapshots"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(snaps, vec![vid.as_str()], "only the victim snapshot is affected");
        assert!(num(&report, "packs_read") >= 2);
    }
    // The human-readable report names them too.
    let human = repo.run(["check", "--read-data"]).expect_code(4).stdout_str();
    assert!(human.contains(&pack_id) && human.contains(&vid[..8]), "{human}");

    // --stdout: fails with 4, and what was written is a strict prefix of the original.
    let out = repo.restore_stdout(&vid, &[]).expect_code(4);
    assert!(out.stdout.len() < victim.len(), "restore must stop at the damage");
    assert!(victim.starts_with(&out.stdout), "restore wrote wrong bytes to stdout");
    assert!(out.stderr.contains("damaged") && out.stderr.contains(&pack_id), "unclear error: {}", out.stderr);

    // --target: fails with 4, and the partial file does not remain.
    let target = repo.scratch("restore");
    let out = repo.restore_target(&vid, &target, &[]).expect_code(4);
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);
    assert!(!target.join("victim").exists(), "a partially restored file must be removed");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);

    // Unaffected snapshots still restore.
    assert!(repo.restore_stdout(&bid, &[]).ok().stdout == bystander);
}

#[test]
fn damaged_file_in_a_tree_is_not_left_behind() {
    let repo = Repo::init();
    let big = random_bytes(11, 5 * MIB);
    // Store big.bin's chunks first (as a stream: same content, same chunks), so the
    // tree backup adds only its metadata and the file's packs can be damaged alone.
    repo.backup_stdin("seed", &big);
    let content_packs = pack_set(&repo);
    let src = repo.scratch("src");
    let root = src.join("vol");
    write_file(&root.join("big.bin"), &big);
    write_file(&root.join("small.txt"), b"small\n");
    let v = repo.backup_paths(&[&root]);
    assert_eq!(num(&v, "summary.chunks_new"), 2, "only small.txt and the tree metadata are new: {v}");
    for p in &content_packs {
        let len = std::fs::metadata(p).unwrap().len() as usize;
        flip_byte(p, len / 2);
    }
    let target = repo.scratch("restore");
    let out = repo.restore_target(text(&v, "snapshot_id"), &target, &[]).expect_code(4);
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);
    let restored = target.join("vol/big.bin");
    assert!(!restored.exists(), "a partially restored file must be removed");
}

#[test]
fn missing_pack_is_reported_without_reading_data() {
    let (repo, _victim, vid, bystander, bid, victim_packs) = two_snapshots();
    let pack = &victim_packs[0];
    let pack_id = file_name(pack);
    std::fs::remove_file(pack).unwrap();

    let (code, report) = repo.check(&[]);
    assert_eq!(code, 4, "{report}");
    let damaged = report["damaged_packs"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{report}");
    assert_eq!(damaged[0]["pack"], pack_id.as_str());
    assert!(text(&damaged[0], "reason").contains("missing"), "{report}");
    assert_eq!(damaged[0]["snapshots"][0], vid.as_str());

    let out = repo.restore_stdout(&vid, &[]).expect_code(4);
    assert!(out.stderr.contains(&pack_id), "{}", out.stderr);
    let target = repo.scratch("t");
    repo.restore_target(&vid, &target, &[]).expect_code(4);
    assert!(!target.join("victim").exists());
    assert!(repo.restore_stdout(&bid, &[]).ok().stdout == bystander);
}

#[test]
fn damaged_metadata_is_reported_by_check() {
    let (repo, _victim, vid, _bystander, _bid, _packs) = two_snapshots();
    // A damaged snapshot manifest.
    let snap = repo.path.join("snapshots").join(&vid);
    assert!(snap.is_file());
    let len = std::fs::metadata(&snap).unwrap().len() as usize;
    flip_byte(&snap, len / 2);
    let (code, report) = repo.check(&[]);
    assert_eq!(code, 4, "{report}");
    let errors = report["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e.as_str().unwrap().contains(&vid[..8])), "{report}");
    let out = repo.restore_stdout(&vid, &[]).expect_code(4);
    assert!(out.stdout.is_empty());
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);

    // A damaged index file.
    let index = std::fs::read_dir(repo.path.join("index")).unwrap().next().unwrap().unwrap().path();
    let len = std::fs::metadata(&index).unwrap().len() as usize;
    flip_byte(&index, len / 2);
    let (code, report) = repo.check(&[]);
    assert_eq!(code, 4, "{report}");
    let errors = report["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e.as_str().unwrap().contains(&file_name(&index))), "{report}");
}
