//! Damage is detected and never restored: a flipped byte in a pack makes
//! `check --read-data` name the pack and the snapshots it affects, and makes
//! `restore` fail with exit 4 without writing a single wrong byte.
//! Every test runs on a local directory (`local::`) and on Garage (`garage::`);
//! on Garage the damage is done through S3 (read the object, change it, put it back).

mod common;

use common::*;
use std::collections::BTreeMap;

/// Pack object names and their sizes.
fn pack_set(repo: &Repo) -> BTreeMap<String, u64> {
    repo.pack_objects().into_iter().collect()
}

/// A repository with a "victim" stream whose packs are separate from a
/// "bystander" stream's; returns (repo, victim data, victim id, bystander data, bystander id,
/// victim packs as (object name, size)).
fn two_snapshots(b: Backend) -> (Repo, Vec<u8>, String, Vec<u8>, String, Vec<(String, u64)>) {
    let repo = Repo::init_on(b);
    let victim = random_bytes(6, 7 * MIB);
    let v1 = repo.backup_stdin("victim", &victim);
    let victim_packs: Vec<(String, u64)> = pack_set(&repo).into_iter().collect();
    assert!(!victim_packs.is_empty());
    let bystander = random_bytes(7, 3 * MIB);
    let v2 = repo.backup_stdin("bystander", &bystander);
    let (vid, bid) = (text(&v1, "snapshot_id").to_string(), text(&v2, "snapshot_id").to_string());
    let all = pack_set(&repo);
    assert!(victim_packs.iter().all(|(n, _)| all.contains_key(n)) && all.len() > victim_packs.len());
    (repo, victim, vid, bystander, bid, victim_packs)
}

fn flipped_byte_in_a_pack_is_found_named_and_never_restored(b: Backend) {
    let (repo, victim, vid, bystander, bid, victim_packs) = two_snapshots(b);
    assert_eq!(repo.check(&["--read-data"]).0, 0, "a fresh repository checks clean");

    // Damage the victim's largest pack in the middle (inside a blob).
    let (pack, len) = victim_packs.iter().max_by_key(|(_, len)| *len).unwrap().clone();
    let pack_id = object_id(&pack).to_string();
    repo.flip_object_byte(&pack, len as usize / 2);

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

fn damaged_file_in_a_tree_is_not_left_behind(b: Backend) {
    let repo = Repo::init_on(b);
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
    assert!(!content_packs.is_empty());
    for (p, len) in &content_packs {
        repo.flip_object_byte(p, *len as usize / 2);
    }
    let target = repo.scratch("restore");
    let out = repo.restore_target(text(&v, "snapshot_id"), &target, &[]).expect_code(4);
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);
    let restored = target.join("vol/big.bin");
    assert!(!restored.exists(), "a partially restored file must be removed");
}

fn missing_pack_is_reported_without_reading_data(b: Backend) {
    let (repo, _victim, vid, bystander, bid, victim_packs) = two_snapshots(b);
    let pack = &victim_packs[0].0;
    let pack_id = object_id(pack).to_string();
    repo.delete_object(pack);

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

fn damaged_metadata_is_reported_by_check(b: Backend) {
    let (repo, _victim, vid, _bystander, _bid, _packs) = two_snapshots(b);
    // A damaged snapshot manifest.
    let snap = format!("snapshots/{vid}");
    assert!(repo.snapshot_objects().contains(&snap), "{:?}", repo.snapshot_objects());
    let len = repo.read_object(&snap).len();
    repo.flip_object_byte(&snap, len / 2);
    let (code, report) = repo.check(&[]);
    assert_eq!(code, 4, "{report}");
    let errors = report["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e.as_str().unwrap().contains(&vid[..8])), "{report}");
    let out = repo.restore_stdout(&vid, &[]).expect_code(4);
    assert!(out.stdout.is_empty());
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);

    // A damaged index file.
    let (index, len) = repo.objects("index/").into_iter().next().expect("an index object");
    repo.flip_object_byte(&index, len as usize / 2);
    let (code, report) = repo.check(&[]);
    assert_eq!(code, 4, "{report}");
    let errors = report["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e.as_str().unwrap().contains(object_id(&index))), "{report}");
}

backend_tests! {
    flipped_byte_in_a_pack_is_found_named_and_never_restored,
    damaged_file_in_a_tree_is_not_left_behind,
    missing_pack_is_reported_without_reading_data,
    damaged_metadata_is_reported_by_check,
}
