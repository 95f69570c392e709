//! `prune`: unreferenced data is deleted, mostly-garbage packs are repacked,
//! and the two-phase protocol (docs/PRUNE.md) keeps every snapshot restorable
//! while backups run, when prune is killed at any step, and when two prunes
//! start at once. Hazards 1 and 2 of docs/PRUNE.md have targeted tests.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::process::{ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A local repository whose key slot uses a cheap KDF, so that the hundreds of
/// drtool processes these tests start do not each spend ~0.2 s in Argon2.
/// It is created through the library; everything else goes through the CLI.
fn fast_repo() -> Repo {
    let r = Repo::uninitialised();
    let store: drtool::store::DynStore = Arc::new(drtool::store::LocalStore::new(&r.path));
    let kdf = drtool::repo::keys::KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 };
    let opts = drtool::repo::InitOptions { kdf, ..Default::default() };
    let init = drtool::repo::Repository::init(store, r.password.as_bytes(), opts);
    tokio::runtime::Runtime::new().unwrap().block_on(init).expect("init");
    r
}

/// `prune --json`, asserted successful.
#[track_caller]
fn prune(repo: &Repo) -> Value {
    repo.run(["--json", "prune"]).ok().json()
}

/// Remove a snapshot manifest as `forget` does (the data stays for prune).
fn forget(repo: &Repo, id: &str) {
    repo.delete_object(&format!("snapshots/{id}"));
}

fn snapshot_id(backup: &Value) -> String {
    text(backup, "snapshot_id").to_string()
}

fn pack_names(repo: &Repo) -> HashSet<String> {
    repo.object_names("data/").into_iter().collect()
}

/// Every snapshot in `expected` restores to exactly its bytes.
#[track_caller]
fn assert_restores(repo: &Repo, expected: &BTreeMap<String, Vec<u8>>) {
    for (id, data) in expected {
        let out = repo.restore_stdout(id, &[]).ok();
        assert!(out.stdout == *data, "snapshot {id} restored {} bytes, expected {}", out.stdout.len(), data.len());
    }
}

/// `check --read-data` is clean; returns the report.
#[track_caller]
fn assert_clean(repo: &Repo) -> Value {
    let (code, report) = repo.check(&["--read-data"]);
    assert_eq!(code, 0, "check is not clean: {report:#}");
    report
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Nothing is left for a later prune, and nothing is left to do.
#[track_caller]
fn assert_settled(repo: &Repo) {
    let again = prune(repo);
    assert_eq!(num(&again, "deleted_packs"), 0, "{again:#}");
    assert_eq!(num(&again, "condemned.bytes"), 0, "{again:#}");
    assert_eq!(num(&again, "pending_packs"), 0, "{again:#}");
    let report = assert_clean(repo);
    assert_eq!(num(&report, "unindexed_packs"), 0, "{report:#}");
    assert_eq!(num(&report, "prune_pending_packs"), 0, "{report:#}");
}

fn basic(b: Backend) {
    let repo = Repo::init_on(b);
    let (x, y, z, w) =
        (random_bytes(1, 3 * MIB), random_bytes(2, 3 * MIB), random_bytes(3, 3 * MIB), random_bytes(4, 4 * MIB));
    let sql = sql_like(5, 4 * MIB);
    let s1 = snapshot_id(&repo.backup_stdin("s1", &concat(&[&x, &y])));
    let s2_data = concat(&[&y, &z]);
    let s2 = snapshot_id(&repo.backup_stdin("s2", &s2_data));
    let s3 = snapshot_id(&repo.backup_stdin("s3", &w));
    let s4 = snapshot_id(&repo.backup_stdin("s4", &sql));
    forget(&repo, &s1);
    forget(&repo, &s3);
    let before = repo.stored_bytes();
    let r = prune(&repo);
    let after = repo.stored_bytes();
    assert!(num(&r, "deleted_packs") > 0 && num(&r, "freed_bytes") > 0, "{r:#}");
    assert_eq!(num(&r, "pending_packs"), 0, "a quiet repository is pruned in one run: {r:#}");
    // W (4 MiB, incompressible) and most of X went.
    assert!(after + 6 * MIB as u64 <= before, "stored {before} -> {after} bytes");
    assert_eq!(num(&r, "snapshots"), 2);
    let expected: BTreeMap<String, Vec<u8>> = [(s2, s2_data), (s4, sql)].into();
    assert_restores(&repo, &expected);
    assert_settled(&repo);
    assert_restores(&repo, &expected);
}

/// A pack that is mostly garbage is rewritten: the chunks still needed move
/// to a new pack, the old pack goes.
fn repack(b: Backend) {
    let repo = Repo::init_on(b);
    let (head, tail) = (random_bytes(10, 6 * MIB), random_bytes(11, 24 * MIB));
    let big = snapshot_id(&repo.backup_stdin("big", &concat(&[&head, &tail])));
    let big_packs = pack_names(&repo);
    let small = snapshot_id(&repo.backup_stdin("small", &head));
    forget(&repo, &big);
    let r = prune(&repo);
    assert!(num(&r, "repacked_packs") >= 1 && num(&r, "repacked_blobs") >= 1, "{r:#}");
    assert!(num(&r, "new_packs") >= 1, "{r:#}");
    let left = pack_names(&repo);
    assert!(
        big_packs.is_disjoint(&left),
        "old packs survived: {:?}",
        big_packs.intersection(&left).collect::<Vec<_>>()
    );
    assert_restores(&repo, &[(small, head)].into());
    let used = num(&r, "used_bytes");
    let stored: u64 = repo.pack_objects().iter().map(|(_, s)| s).sum();
    assert!(stored < used + 2 * MIB as u64, "{stored} bytes of packs hold {used} bytes in use");
    assert_settled(&repo);
}

backend_tests! { basic, repack }

/// Hazard 1: a backup that loaded the index before prune condemned a pack
/// deduplicates against it and commits afterwards; the pack must stay.
/// (The shared data comes first, so its chunk boundaries, keyed per
/// repository, match the old snapshot's and the dedup is certain.)
#[test]
fn hazard1_a_pack_condemned_while_a_backup_reuses_it_is_kept() {
    let repo = fast_repo();
    let shared = random_bytes(20, 8 * MIB);
    let old = snapshot_id(&repo.backup_stdin("old", &shared));
    let old_packs = pack_names(&repo);
    let unique = random_bytes(21, 40 * MIB);
    let (mut reaper, stdin) = paused_backup(&repo, "new", &concat(&[&shared, &unique]), old_packs.len());
    // The backup holds its lock, has read the index and reused the old chunks;
    // its snapshot is not written yet. Now the old data becomes garbage.
    forget(&repo, &old);
    let r = prune(&repo);
    assert!(num(&r, "condemned.unused") >= 1, "{r:#}");
    assert_eq!(num(&r, "deleted_packs"), 0, "{r:#}");
    assert!(waits_for(&r, "backup new"), "the mark must wait for the running backup: {r:#}");
    assert!(old_packs.is_subset(&pack_names(&repo)));
    let (code, report) = repo.check(&[]);
    assert_eq!(code, 0, "pending marks are not damage: {report:#}");
    assert!(num(&report, "prune_pending_packs") >= 1, "{report:#}");
    // The backup commits, referencing chunks in the condemned packs.
    drop(stdin);
    let out = finish(&mut reaper);
    let new = snapshot_id(&out);
    assert!(num(&out, "summary.chunks_new") < num(&out, "summary.chunks"), "no dedup happened: {out:#}");
    let r = prune(&repo);
    assert!(num(&r, "rescued_packs") >= 1, "{r:#}");
    assert!(old_packs.iter().any(|p| pack_names(&repo).contains(p)), "the reused pack was deleted");
    let expected: BTreeMap<String, Vec<u8>> = [(new, concat(&[&shared, &unique]))].into();
    assert_restores(&repo, &expected);
    assert_clean(&repo);
    prune(&repo);
    assert_restores(&repo, &expected);
    assert_settled(&repo);
}

/// The other half of hazard 1: a backup that starts after the mark stores
/// condemned chunks again instead of reusing them, so retiring the condemned
/// packs cannot take anything from it.
#[test]
fn a_backup_started_after_the_mark_does_not_reuse_condemned_chunks() {
    let repo = fast_repo();
    let shared = random_bytes(25, 5 * MIB);
    let old = snapshot_id(&repo.backup_stdin("old", &shared));
    let old_packs = pack_names(&repo);
    // A backup in progress keeps the mark pending.
    let (mut reaper, stdin) = paused_backup(&repo, "slow", &random_bytes(26, 40 * MIB), old_packs.len());
    forget(&repo, &old);
    let r = prune(&repo);
    assert!(num(&r, "condemned.unused") >= 1 && waits_for(&r, "backup slow"), "{r:#}");
    let late = repo.backup_stdin("late", &shared);
    assert_eq!(
        num(&late, "summary.chunks_new"),
        num(&late, "summary.chunks"),
        "condemned chunks were reused: {late:#}"
    );
    drop(stdin);
    let slow = finish(&mut reaper);
    let r = prune(&repo);
    assert!(old_packs.is_disjoint(&pack_names(&repo)), "{r:#}");
    let expected: BTreeMap<String, Vec<u8>> =
        [(snapshot_id(&late), shared), (snapshot_id(&slow), random_bytes(26, 40 * MIB))].into();
    assert_restores(&repo, &expected);
    assert_settled(&repo);
}

/// Why retired packs wait once more before deletion: a restore that read the
/// index before the retire may still read from a retired pack. Here the only
/// copy it knows of a chunk is in a condemned pack (hazard 1 made a snapshot
/// need it), and a later backup stored the chunk again, so the retire takes
/// the condemned pack out of the index instead of rescuing it.
#[test]
fn a_restore_reading_a_retired_pack_finishes_before_the_pack_is_deleted() {
    let repo = fast_repo();
    // Shared data first (certain dedup), and more of it than the restore reads ahead.
    let shared = random_bytes(27, 24 * MIB);
    let old = snapshot_id(&repo.backup_stdin("old", &shared));
    let old_packs = pack_names(&repo);
    let unique = random_bytes(28, 40 * MIB);
    let (mut backup, stdin) = paused_backup(&repo, "new", &concat(&[&shared, &unique]), old_packs.len());
    forget(&repo, &old);
    prune(&repo);
    drop(stdin);
    let out = finish(&mut backup);
    assert!(num(&out, "summary.chunks_new") < num(&out, "summary.chunks"), "no dedup happened: {out:#}");
    let new = snapshot_id(&out);
    // A restore of the new snapshot, stalled on a full pipe after its first MiB:
    // most of the shared chunks, only in the condemned packs, are still to be read.
    let mut restore = Reaper::new(repo.cmd(["restore", &new, "--stdout"]).spawn().unwrap());
    let mut stdout = restore.child.stdout.take().unwrap();
    let mut got = vec![0u8; MIB];
    std::io::Read::read_exact(&mut stdout, &mut got).unwrap();
    let late = snapshot_id(&repo.backup_stdin("late", &shared));
    let r = prune(&repo);
    let still_there = old_packs.iter().any(|p| pack_names(&repo).contains(p));
    // The restore goes on reading, from the packs that just left the index.
    std::io::Read::read_to_end(&mut stdout, &mut got).unwrap();
    let status = wait_timeout(&mut restore.child, Duration::from_secs(60));
    let mut stderr = String::new();
    std::io::Read::read_to_string(restore.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "restore failed: {stderr}\nprune: {r:#}");
    let expected = concat(&[&shared, &unique]);
    assert!(got == expected, "the restore returned {} bytes, not the {} backed up", got.len(), expected.len());
    assert!(waits_for(&r, "restore"), "retired packs must wait for the restore: {r:#}");
    assert!(still_there, "deleted under a running restore: {r:#}");
    assert_eq!(repo.check(&[]).0, 0);
    let r = prune(&repo);
    assert!(old_packs.is_disjoint(&pack_names(&repo)), "{r:#}");
    assert_restores(&repo, &[(new, expected), (late, shared)].into());
    assert_settled(&repo);
}

/// Hazard 2: the packs of a backup that has not written its index yet are
/// unindexed but not garbage; once it crashes, they are.
#[test]
fn hazard2_unindexed_packs_of_a_running_backup_survive_until_it_ends() {
    let repo = fast_repo();
    let first = random_bytes(30, 2 * MIB);
    let s0 = snapshot_id(&repo.backup_stdin("first", &first));
    let before = pack_names(&repo);
    let data = random_bytes(31, 40 * MIB);
    let (mut reaper, stdin) = paused_backup(&repo, "running", &data, before.len());
    let in_flight: HashSet<String> = pack_names(&repo).difference(&before).cloned().collect();
    for _ in 0..2 {
        let r = prune(&repo);
        assert!(num(&r, "condemned.unindexed") >= 1 || num(&r, "pending_packs") >= 1, "{r:#}");
        assert_eq!(num(&r, "deleted_packs"), 0, "{r:#}");
        assert!(waits_for(&r, "backup running"), "{r:#}");
        assert!(in_flight.is_subset(&pack_names(&repo)), "a running backup's pack was deleted");
        assert_eq!(repo.check(&[]).0, 0);
    }
    // The records are sealed: no pack id or lock name shows in the store (DESIGN principle 3).
    let records = repo.object_names("prune/");
    assert!(!records.is_empty());
    for name in &records {
        let raw = repo.read_object(name);
        for pack in &in_flight {
            assert!(!contains(&raw, object_id(pack).as_bytes()), "{name} shows a pack id");
        }
        assert!(!contains(&raw, b"locks/") && !contains(&raw, b"condemned"), "{name} is not sealed");
    }
    drop(stdin);
    let out = finish(&mut reaper);
    let r = prune(&repo);
    assert!(num(&r, "rescued_packs") >= 1, "{r:#}");
    assert_eq!(num(&r, "deleted_packs"), 0, "{r:#}");
    let expected: BTreeMap<String, Vec<u8>> = [(s0, first), (snapshot_id(&out), data)].into();
    assert_restores(&repo, &expected);
    assert_settled(&repo);

    // A backup killed mid-way leaves unindexed packs and a lock whose pid is
    // dead: the lock is stale at once, so one prune deletes the packs.
    let before = pack_names(&repo);
    let (mut reaper, stdin) = paused_backup(&repo, "doomed", &random_bytes(32, 40 * MIB), before.len());
    let orphans: HashSet<String> = pack_names(&repo).difference(&before).cloned().collect();
    reaper.child.kill().unwrap();
    reaper.child.wait().unwrap();
    drop(stdin);
    assert_eq!(repo.object_names("locks/").len(), 1, "the killed backup's lock stays behind");
    let r = prune(&repo);
    assert_eq!(num(&r, "stale_locks_removed"), 1, "{r:#}");
    assert!(num(&r, "deleted_packs") as usize >= orphans.len(), "{r:#}");
    assert!(orphans.is_disjoint(&pack_names(&repo)));
    assert_restores(&repo, &expected);
    assert_settled(&repo);
}

/// Acceptance: four backup processes write to one repository while prune
/// runs again and again and snapshots are forgotten between rounds; every
/// remaining snapshot restores exactly and check stays clean throughout.
///
/// Each backup sends its own data, pauses (holding its lock, index loaded),
/// then sends a block from a pool shared by all processes. Forgetting half of
/// the snapshots each round regularly leaves a pool block unreferenced just
/// before a paused backup deduplicates against it: hazard 1, many times over.
#[test]
fn prune_runs_repeatedly_while_four_backups_write() {
    let repo = Arc::new(fast_repo());
    let pool: Arc<Vec<Vec<u8>>> = Arc::new((0..6).map(|i| random_bytes(500 + i, 2 * MIB)).collect());
    let made: Arc<Mutex<Vec<(String, blake3::Hash)>>> = Arc::default();
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (repo, pool, made) = (repo.clone(), pool.clone(), made.clone());
            std::thread::spawn(move || {
                for j in 0..12u64 {
                    let own = random_bytes(1000 * w + j, MIB + (j as usize % 3) * MIB / 2);
                    let shared = &pool[((w * 3 + j) % 6) as usize];
                    let name = format!("w{w}-s{}", j % 3);
                    let out = backup_with_pause(&repo, &name, &own, Duration::from_millis(150), shared);
                    made.lock().unwrap().push((snapshot_id(&out), blake3::hash(&concat(&[&own, shared]))));
                }
            })
        })
        .collect();
    let mut rng = Prng::new(7);
    let mut forgotten: HashSet<String> = HashSet::new();
    let (mut rounds, mut deleted, mut rescued, mut waited, mut restored) = (0, 0, 0, 0, 0);
    let started = Instant::now();
    while writers.iter().any(|t| !t.is_finished()) {
        let mut reader = None;
        {
            let all = made.lock().unwrap();
            let live: Vec<&(String, blake3::Hash)> = all.iter().filter(|(id, _)| !forgotten.contains(id)).collect();
            for (id, _) in live.iter().skip(2) {
                if rng.next_u64().is_multiple_of(2) {
                    forget(&repo, id);
                    forgotten.insert(id.to_string());
                }
            }
            // A restore of a surviving snapshot runs while prune does.
            if let Some((id, hash)) = live.iter().find(|(id, _)| !forgotten.contains(id)) {
                let child = repo.cmd(["restore", id, "--stdout"]).spawn().unwrap();
                reader = Some((id.clone(), *hash, std::thread::spawn(move || child.wait_with_output().unwrap())));
            }
        }
        let r = prune(&repo);
        rounds += 1;
        deleted += num(&r, "deleted_packs");
        rescued += num(&r, "rescued_packs");
        waited += u64::from(num(&r, "pending_packs") > 0);
        if let Some((id, hash, t)) = reader {
            let out = t.join().unwrap();
            assert!(out.status.success(), "restore of {id} during prune: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(blake3::hash(&out.stdout), hash, "restore of {id} during prune returned other bytes");
            restored += 1;
        }
        if rounds % 3 == 0 {
            let (code, report) = repo.check(&[]);
            assert_eq!(code, 0, "check while backups and prune run: {report:#}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for t in writers {
        t.join().expect("a backup failed while prune ran");
    }
    let r = prune(&repo);
    deleted += num(&r, "deleted_packs");
    rescued += num(&r, "rescued_packs");
    assert_eq!(num(&r, "pending_packs"), 0, "{r:#}");
    eprintln!(
        "{rounds} prune rounds in {:?}: {deleted} packs deleted, {rescued} rescued, {waited} rounds left work \
         pending, {restored} restores ran alongside",
        started.elapsed()
    );
    assert!(rounds >= 5, "prune ran only {rounds} times");
    assert!(deleted > 0, "no garbage was ever deleted");
    assert!(waited > 0, "no prune ever had to wait for a running backup: the test lost its point");
    let all = made.lock().unwrap();
    assert_eq!(all.len(), 48);
    let remaining: Vec<&(String, blake3::Hash)> = all.iter().filter(|(id, _)| !forgotten.contains(id)).collect();
    assert_eq!(repo.snapshots().len(), remaining.len());
    for (id, hash) in remaining {
        let out = repo.restore_stdout(id, &[]).ok();
        assert_eq!(blake3::hash(&out.stdout), *hash, "snapshot {id} restored different bytes");
    }
    assert_settled(&repo);
}

/// `backup --stdin` of `first`, a pause, then `second`; asserted successful.
fn backup_with_pause(repo: &Repo, name: &str, first: &[u8], pause: Duration, second: &[u8]) -> Value {
    let mut child = repo.cmd(["--json", "backup", "--stdin", "--name", name]).stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (first, second) = (first.to_vec(), second.to_vec());
    let feeder = std::thread::spawn(move || {
        stdin.write_all(&first).unwrap();
        std::thread::sleep(pause);
        stdin.write_all(&second).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_no_panic(&stderr);
    assert!(out.status.success(), "backup {name} failed while prune ran: {:?}\n{stderr}", out.status);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Kill prune (SIGKILL) at every step of the protocol: each time, every
/// snapshot still restores and check is clean; a normal prune then finishes.
#[test]
fn prune_killed_at_any_step_leaves_a_restorable_repository() {
    const STEPS: [&str; 9] = [
        "repack-uploaded",
        "repack-indexed",
        "condemn-draft",
        "condemn-armed",
        "retire-index-written",
        "retire-index-deleted",
        "retire-recorded",
        "delete-first",
        "delete-done",
    ];
    let repo = fast_repo();
    let keep = sql_like(40, 3 * MIB);
    let mut expected: BTreeMap<String, Vec<u8>> = [(snapshot_id(&repo.backup_stdin("keep", &keep)), keep)].into();
    for (i, step) in STEPS.iter().enumerate() {
        // Garbage for every step: a forgotten snapshot whose packs are
        // mostly, but not entirely, garbage (so both repack and delete happen).
        let head = random_bytes(100 + i as u64, 2 * MIB);
        let big = snapshot_id(&repo.backup_stdin("big", &concat(&[&head, &random_bytes(200 + i as u64, 10 * MIB)])));
        expected.insert(snapshot_id(&repo.backup_stdin("head", &head)), head);
        forget(&repo, &big);
        let mut cmd = repo.cmd(["--json", "prune"]);
        cmd.env("DRTOOL_TEST_PRUNE_DIE_AT", step);
        let out = run_with_input(cmd, None);
        assert_eq!(
            signal_of(&out.status),
            Some(libc::SIGKILL),
            "prune did not reach {step}: {:?} {}",
            out.status,
            out.stderr
        );
        assert_eq!(repo.object_names("locks/").len(), 1, "the killed prune's lock stays behind");
        let (code, report) = repo.check(&["--read-data"]);
        assert_eq!(code, 0, "check after a crash at {step}: {report:#}");
        assert_restores(&repo, &expected);
    }
    let r = prune(&repo);
    assert_eq!(num(&r, "stale_locks_removed"), 1, "{r:#}");
    assert_eq!(num(&r, "pending_packs"), 0, "{r:#}");
    assert!(num(&r, "deleted_packs") > 0, "{r:#}");
    assert_restores(&repo, &expected);
    assert_settled(&repo);
    let r = prune(&repo);
    let (stored, used) = (num(&r, "bytes"), num(&r, "used_bytes"));
    assert!(stored < 2 * used, "garbage left after the crashes: {stored} bytes stored, {used} used");
    assert!(repo.object_names("locks/").is_empty());
}

/// Two prunes started together: one waits for the other's lock; both succeed.
#[test]
fn two_prunes_at_once_do_not_interfere() {
    let repo = fast_repo();
    let keep = random_bytes(50, 3 * MIB);
    let mut expected = BTreeMap::new();
    expected.insert(snapshot_id(&repo.backup_stdin("keep", &keep)), keep.clone());
    for i in 0..4 {
        let g = snapshot_id(&repo.backup_stdin("garbage", &random_bytes(60 + i, 3 * MIB)));
        forget(&repo, &g);
    }
    let spawn = || repo.cmd(["--json", "prune"]).spawn().unwrap();
    let (a, b) = (spawn(), spawn());
    let mut deleted = 0;
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_no_panic(&stderr);
        assert!(out.status.success(), "{:?}: {stderr}", out.status);
        deleted += num(&serde_json::from_slice(&out.stdout).unwrap(), "deleted_packs");
    }
    assert!(deleted >= 4, "{deleted} packs deleted");
    assert_restores(&repo, &expected);
    assert_settled(&repo);
}

/// `--dry-run` reports what a run would do and changes nothing, not even a lock.
#[test]
fn dry_run_changes_nothing() {
    let repo = fast_repo();
    let keep = random_bytes(70, 2 * MIB);
    repo.backup_stdin("keep", &keep);
    let g = snapshot_id(&repo.backup_stdin("gone", &random_bytes(71, 5 * MIB)));
    forget(&repo, &g);
    let before = repo.objects("");
    let dry = repo.run(["--json", "prune", "--dry-run"]).ok().json();
    assert_eq!(dry["dry_run"], Value::Bool(true));
    assert!(num(&dry, "deleted_packs") > 0, "{dry:#}");
    assert_eq!(repo.objects(""), before, "dry run changed the repository");
    let human = repo.run(["prune", "--dry-run"]).ok().stdout_str();
    assert!(human.contains("would delete"), "{human}");
    let real = prune(&repo);
    assert_eq!(num(&real, "deleted_packs"), num(&dry, "deleted_packs"), "{dry:#}\n{real:#}");
    assert_eq!(num(&real, "deleted_bytes"), num(&dry, "deleted_bytes"));
}

/// Damage stops prune before it decides anything: a missing pack that a
/// snapshot needs (its chunks would look absent) and a damaged manifest (its
/// chunks would look unused). Nothing is deleted; check reports the damage.
#[test]
fn prune_deletes_nothing_in_a_damaged_repository() {
    let repo = fast_repo();
    let keep = repo.backup_stdin("keep", &random_bytes(80, 3 * MIB));
    let before = pack_names(&repo);
    let gone = snapshot_id(&repo.backup_stdin("gone", &random_bytes(81, 3 * MIB)));
    forget(&repo, &gone);
    let all = repo.objects("");
    // A manifest that no longer opens.
    let manifest = format!("snapshots/{}", snapshot_id(&keep));
    let good = repo.read_object(&manifest);
    repo.flip_object_byte(&manifest, 40);
    let out = repo.run(["prune"]).expect_code(4);
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);
    repo.write_object(&manifest, good);
    assert_eq!(repo.objects(""), all, "prune changed a damaged repository");
    // A pack the kept snapshot needs, deleted behind drtool's back.
    let needed = before.iter().next().unwrap().clone();
    repo.delete_object(&needed);
    let out = repo.run(["prune"]).expect_code(4);
    assert!(out.stderr.contains("prune deletes nothing"), "{}", out.stderr);
    let (code, report) = repo.check(&[]);
    assert_eq!(code, 4, "{report:#}");
    assert_eq!(report["damaged_packs"].as_array().map(Vec::len), Some(1), "{report:#}");
    assert!(repo.object_names("prune/").is_empty(), "{:?}", repo.object_names("prune/"));
    assert!(repo.object_names("locks/").is_empty(), "{:?}", repo.object_names("locks/"));
}

/// Start `backup --stdin --name NAME`, feed it `data` and wait until it has
/// stored a pack beyond the `packs_before` there were: it then holds its lock,
/// has read the index, and waits for more input (which the caller may give
/// through the returned stdin, or close).
fn paused_backup(repo: &Repo, name: &str, data: &[u8], packs_before: usize) -> (Reaper, ChildStdin) {
    let mut reaper =
        Reaper::new(repo.cmd(["--json", "backup", "--stdin", "--name", name]).stdin(Stdio::piped()).spawn().unwrap());
    let mut stdin = reaper.child.stdin.take().unwrap();
    stdin.write_all(data).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || repo.pack_objects().len() > packs_before),
        "the backup stored no pack"
    );
    (reaper, stdin)
}

/// Wait for a backup started by [`paused_backup`]; it must succeed.
fn finish(reaper: &mut Reaper) -> Value {
    let status = wait_timeout(&mut reaper.child, Duration::from_secs(60));
    let mut stdout = Vec::new();
    std::io::Read::read_to_end(reaper.child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(reaper.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_no_panic(&stderr);
    assert!(status.success(), "backup failed: {status:?}\n{stderr}");
    serde_json::from_slice(&stdout).unwrap()
}

/// Whether some pending batch waits for a run whose description contains `what`.
fn waits_for(report: &Value, what: &str) -> bool {
    report["pending"].as_array().is_some_and(|p| {
        p.iter().any(|b| {
            b["waiting_for"].as_array().is_some_and(|w| w.iter().any(|h| h.as_str().is_some_and(|s| s.contains(what))))
        })
    })
}
