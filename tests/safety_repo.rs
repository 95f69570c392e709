//! Data-safety guards of the repository layer (issue 18): a backup that lost
//! its lock commits nothing; unreadable locks count as held; a prune record
//! replaced while being read is not missed; planted key slots and huge
//! objects are skipped or refused instead of hanging or exhausting memory.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Limit for one drtool run: only a guard against a hang, never an assertion
/// about speed (a loaded CI machine may be slow).
const HANG_GUARD: Duration = Duration::from_secs(300);
const GIB: u64 = 1 << 30;
const SLOT_A: &str = "a0000000000000000000000000000000";
const SLOT_B: &str = "b0000000000000000000000000000000";
const SLOT_C: &str = "c0000000000000000000000000000000";
const SLOT_D: &str = "d0000000000000000000000000000000";
const JUNK_LOCK: &str = "locks/e0000000000000000000000000000000";

/// A local repository whose key slot uses a cheap KDF (created through the
/// library; everything else goes through the CLI).
fn fast_repo() -> Repo {
    let r = Repo::uninitialised();
    let store: drtool::store::DynStore = Arc::new(drtool::store::LocalStore::new(&r.path));
    let kdf = drtool::repo::keys::KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 };
    let opts = drtool::repo::InitOptions { kdf, ..Default::default() };
    let init = drtool::repo::Repository::init(store, r.password.as_bytes(), opts);
    tokio::runtime::Runtime::new().unwrap().block_on(init).expect("init");
    r
}

/// Write an object behind drtool's back, as damage or an attacker would.
fn plant(repo: &Repo, name: &str, data: &[u8]) {
    let p = repo.path.join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
}

/// A sparse object of `len` bytes: costs no disk, but would not fit in memory if read.
fn plant_huge(repo: &Repo, name: &str, len: u64) {
    let p = repo.path.join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::File::create(&p).unwrap().set_len(len).unwrap();
}

/// Run `cmd` to the end (killed, and the test failed, if it hangs).
fn run_guarded(mut cmd: std::process::Command) -> Out {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (stdout, stderr) = (collect(child.stdout.take().unwrap()), collect(child.stderr.take().unwrap()));
    let status = wait_timeout(&mut child, HANG_GUARD);
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert_no_panic(&stderr);
    Out { status, stdout: stdout.join().unwrap(), stderr }
}

/// Back up some data, then forget it: its packs are garbage for prune.
fn garbage(repo: &Repo) -> Vec<String> {
    let b = repo.backup_stdin("old", &random_bytes(7, 3 * MIB));
    repo.delete_object(&format!("snapshots/{}", text(&b, "snapshot_id")));
    let packs = repo.object_names("data/");
    assert!(!packs.is_empty());
    packs
}

fn waiting_for(report: &serde_json::Value) -> String {
    report["pending"].as_array().unwrap().iter().map(|p| p["waiting_for"].to_string()).collect()
}

/// A backup whose lock object disappears, or is replaced, while it runs (a
/// prune elsewhere took it for stale) must not write its index or snapshot:
/// the prune may have deleted the packs they would name.
#[test]
fn a_backup_that_lost_its_lock_writes_no_snapshot() {
    for mode in ["removed", "replaced"] {
        let repo = fast_repo();
        let gate = repo.scratch("gate").join("go");
        let script = format!("head -c 300000 /dev/urandom; while [ ! -e '{}' ]; do sleep 0.05; done", gate.display());
        let mut cmd = repo.cmd(["--json", "backup", "--name", "db", "--", "sh", "-c", &script]);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = collect(child.stderr.take().unwrap());
        let _stdout = collect(child.stdout.take().unwrap());
        assert!(wait_until(HANG_GUARD, || repo.object_names("locks/").len() == 1), "the backup took no lock");
        let lock = repo.object_names("locks/").remove(0);
        match mode {
            "removed" => repo.delete_object(&lock),
            _ => repo.write_object(&lock, b"not the backup's lock".to_vec()),
        }
        fs::write(&gate, b"").unwrap();
        let status: ExitStatus = wait_timeout(&mut child, HANG_GUARD);
        let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
        assert_no_panic(&stderr);
        assert_eq!(status.code(), Some(11), "lock {mode}: expected exit 11, got {status:?}; stderr: {stderr}");
        assert!(stderr.contains("lost lock") && stderr.contains(&lock), "lock {mode}: {stderr}");
        assert!(repo.snapshot_objects().is_empty(), "lock {mode}: a snapshot was written");
        assert!(repo.object_names("index/").is_empty(), "lock {mode}: an index file was written");
    }
}

/// A lock nobody can read is a live lock of unknown kind: prune condemns but
/// waits for it instead of deleting at once, backups run beside it, and it
/// ages out once the store has not rewritten it for the stale age.
#[test]
fn prune_waits_for_an_unreadable_lock_until_it_ages_out() {
    let repo = fast_repo();
    let packs = garbage(&repo);
    plant(&repo, JUNK_LOCK, b"no key opens this");
    let report = repo.run(["--json", "prune"]).ok().json();
    assert_eq!(num(&report, "deleted_packs"), 0, "prune deleted beside a held lock: {report:#}");
    assert!(num(&report, "pending_packs") > 0, "{report:#}");
    assert!(waiting_for(&report).contains("unreadable lock"), "{report:#}");
    assert_eq!(repo.object_names("data/"), packs);
    repo.backup_stdin("new", b"a backup runs beside an unreadable lock");
    // A holder rewrites its lock every 5 minutes: one untouched for 31 is stale.
    let old = SystemTime::now() - Duration::from_secs(31 * 60);
    fs::File::options().write(true).open(repo.path.join(JUNK_LOCK)).unwrap().set_modified(old).unwrap();
    let report = repo.run(["--json", "prune"]).ok().json();
    assert_eq!(num(&report, "stale_locks_removed"), 1, "{report:#}");
    assert!(num(&report, "deleted_packs") > 0, "{report:#}");
    assert!(repo.object_names("locks/").is_empty());
    assert_eq!(repo.restore_stdout("latest", &[]).ok().stdout, b"a backup runs beside an unreadable lock");
}

/// Huge planted lock and key objects are refused by size, not read whole:
/// the repository opens, backs up and restores, the key slot is skipped with
/// a warning, and prune treats the lock as held.
#[test]
fn huge_lock_and_key_objects_are_not_read() {
    let repo = fast_repo();
    let packs = garbage(&repo);
    plant_huge(&repo, JUNK_LOCK, 4 * GIB);
    plant_huge(&repo, &format!("keys/{SLOT_D}"), 4 * GIB);
    let out = run_guarded(repo.cmd(["--json", "snapshots"]));
    let out = out.ok();
    assert!(out.stderr.contains(&format!("ignoring key slot keys/{SLOT_D}")), "{}", out.stderr);
    assert!(out.stderr.contains("larger than"), "{}", out.stderr);
    let backup = repo.cmd(["--json", "backup", "--name", "db", "--", "printf", "still backs up"]);
    run_guarded(backup).ok();
    let report = run_guarded(repo.cmd(["--json", "prune"])).ok().json();
    assert_eq!(num(&report, "deleted_packs"), 0, "{report:#}");
    assert!(waiting_for(&report).contains("larger than"), "{report:#}");
    for p in &packs {
        assert!(repo.path.join(p).is_file(), "{p} deleted beside a held lock");
    }
    assert_eq!(repo.restore_stdout("latest", &[]).ok().stdout, b"still backs up");
}

/// A huge planted index file is damage named by its object, not a reason to
/// read gigabytes: backups warn and go on, `check` reports it (exit 4).
#[test]
fn a_huge_index_file_is_reported_not_read() {
    let repo = fast_repo();
    repo.backup_stdin("a", b"before");
    let name = format!("index/{}", "f".repeat(64));
    plant_huge(&repo, &name, 5 * GIB);
    let out = run_guarded(repo.cmd(["--json", "backup", "--name", "db", "--", "printf", "after"])).ok();
    assert!(out.stderr.contains(&name) && out.stderr.contains("larger than"), "{}", out.stderr);
    let check = run_guarded(repo.cmd(["--json", "check"])).expect_code(4);
    assert!(check.stdout_str().contains(&name) || check.stderr.contains(&name), "{}", check.stdout_str());
    assert_eq!(repo.restore_stdout("latest", &[]).ok().stdout, b"after");
}

/// A key slot as drtool writes it, with chosen Argon2 costs.
fn slot_json(m_cost_kib: u64, t_cost: u64) -> String {
    format!(
        r#"{{"version":1,"kdf":"argon2id","m_cost_kib":{m_cost_kib},"t_cost":{t_cost},"p_cost":1,"salt":"{}","wrapped":"{}","created":"2024-01-01T00:00:00Z"}}"#,
        "00".repeat(16),
        "11".repeat(60)
    )
}

/// Planted key slots (absurd Argon2 costs, malformed JSON) are skipped with a
/// warning naming each, never tried: the right password still opens the
/// repository, a wrong one still exits 12, and the bad slot can be removed.
#[test]
fn planted_key_slots_are_skipped_with_a_warning() {
    let repo = Repo::init();
    repo.backup_stdin("a", b"kept");
    plant(&repo, &format!("keys/{SLOT_A}"), slot_json(4_000_000_000, 1).as_bytes());
    plant(&repo, &format!("keys/{SLOT_B}"), slot_json(64, 4_000_000_000).as_bytes());
    plant(&repo, &format!("keys/{SLOT_C}"), b"{not json");
    let warned = |stderr: &str| {
        for id in [SLOT_A, SLOT_B, SLOT_C] {
            assert!(stderr.contains(&format!("ignoring key slot keys/{id}")), "no warning for {id}: {stderr}");
        }
    };
    let out = run_guarded(repo.cmd(["--json", "snapshots"])).ok();
    warned(&out.stderr);
    assert_eq!(out.json().as_array().map(Vec::len), Some(1));
    let out = run_guarded(repo.cmd_pw("not the password", ["snapshots"])).expect_code(12);
    warned(&out.stderr);
    assert_eq!(repo.restore_stdout("latest", &[]).ok().stdout, b"kept");
    run_guarded(repo.cmd(["key", "remove", SLOT_C])).ok();
    assert!(!repo.path.join("keys").join(SLOT_C).exists());
}

// ------------------------------------------------- prune record hand-over

/// A local store that, when `watched` is first read, does what a prune does
/// at that instant: stores the successor record, then deletes `watched`. The
/// read then finds nothing, as it would have on a real store.
#[derive(Debug)]
struct HandOverOnRead {
    inner: drtool::store::LocalStore,
    watched: String,
    successor: Mutex<Option<(String, Vec<u8>)>>,
}

impl HandOverOnRead {
    async fn maybe_hand_over(&self, name: &str) {
        use drtool::store::Store;
        let next = if name == self.watched { self.successor.lock().unwrap().take() } else { None };
        if let Some((successor, bytes)) = next {
            self.inner.put(&successor, bytes).await.unwrap();
            self.inner.delete(&self.watched).await.unwrap();
        }
    }
}

#[async_trait::async_trait]
impl drtool::store::Store for HandOverOnRead {
    async fn put(&self, name: &str, data: Vec<u8>) -> Result<(), drtool::store::StoreError> {
        self.inner.put(name, data).await
    }
    async fn get(&self, name: &str) -> Result<Vec<u8>, drtool::store::StoreError> {
        self.maybe_hand_over(name).await;
        self.inner.get(name).await
    }
    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, drtool::store::StoreError> {
        self.inner.get_range(name, offset, len).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<drtool::store::ObjectInfo>, drtool::store::StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, name: &str) -> Result<(), drtool::store::StoreError> {
        self.inner.delete(name).await
    }
    async fn size(&self, name: &str) -> Result<u64, drtool::store::StoreError> {
        self.inner.size(name).await
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

/// Prune replaces a draft record by its armed successor (stored first, then
/// the draft deleted). A reader that listed the draft and finds it gone must
/// list again and see the successor's condemned packs; skipping it would let
/// a backup deduplicate against packs about to be deleted.
#[test]
fn a_prune_record_replaced_while_read_is_not_missed() {
    use drtool::repo::ids::PackId;
    use drtool::repo::prune::records::{self, PruneRecord, Reason, RecordedPack, Stage};
    let repo = fast_repo();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pack = PackId([7; 32]);
    let (draft, armed) = rt.block_on(async {
        let store: drtool::store::DynStore = Arc::new(drtool::store::LocalStore::new(&repo.path));
        let r = drtool::repo::Repository::open(store, repo.password.as_bytes()).await.unwrap();
        let entry = RecordedPack { id: pack, size: 1, indexed: true, reason: Reason::Unused };
        let draft = records::save(&r, &PruneRecord::new(Stage::Condemned, vec![entry])).await.unwrap();
        let mut next = draft.record.clone();
        next.wait_for = Some(vec![]);
        next.replaces = vec![draft.name.clone()];
        let armed = records::save(&r, &next).await.unwrap();
        (draft.name, armed.name)
    });
    // Only the draft is visible when the reader lists; the successor appears
    // (and the draft goes) as the reader opens the draft.
    let armed_bytes = repo.read_object(&armed);
    repo.delete_object(&armed);
    let store = HandOverOnRead {
        inner: drtool::store::LocalStore::new(&repo.path),
        watched: draft.clone(),
        successor: Mutex::new(Some((armed.clone(), armed_bytes))),
    };
    let condemned = rt.block_on(async {
        let store: drtool::store::DynStore = Arc::new(store);
        let r = drtool::repo::Repository::open(store, repo.password.as_bytes()).await.unwrap();
        records::condemned_packs(&r).await.unwrap()
    });
    assert!(!Path::new(&repo.path.join(&draft)).exists(), "the hand-over did not happen");
    assert!(condemned.contains(&pack), "the armed record replacing {draft} was missed: {condemned:?}");
}
