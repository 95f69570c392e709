//! Command sequences of every strategy, through a recording fake runner
//! (this kernel has neither device-mapper snapshots nor ZFS; btrfs and
//! fsfreeze are also tested for real in tests/volume_*.rs), and the real
//! thaw watchdog process.

use super::*;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Records every call; answers from `(command prefix, stdout or Err(stderr))` rules, else "".
#[derive(Default)]
struct Fake {
    calls: Arc<Mutex<Vec<String>>>,
    rules: Vec<(String, Result<String, String>)>,
    /// Set to make every watchdog report that it fired.
    fire: Arc<AtomicBool>,
    watchdog_fails: bool,
}

impl Fake {
    fn new(rules: &[(&str, Result<&str, &str>)]) -> Arc<Self> {
        let rules = rules.iter().map(|(p, r)| (p.to_string(), r.map(String::from).map_err(String::from))).collect();
        Arc::new(Fake { rules, ..Fake::default() })
    }

    /// The calls so far, with this run's unique name replaced by NAME.
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(|c| normalize(c)).collect()
    }
}

fn normalize(s: &str) -> String {
    // drtool-YYYYmmddTHHMMSS-PID-N
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("drtool-") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 7..];
        let b = tail.as_bytes();
        let stamp = b.len() > 16
            && b[..8].iter().all(u8::is_ascii_digit)
            && b[8] == b'T'
            && b[9..15].iter().all(u8::is_ascii_digit)
            && b[15] == b'-';
        if stamp {
            // PID-N
            let digits = |t: &str| t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let pid_len = digits(&tail[16..]);
            let after = &tail[16 + pid_len + 1..];
            out.push_str("NAME");
            rest = &after[digits(after)..];
        } else {
            out.push_str("drtool-");
            rest = tail;
        }
    }
    out.push_str(rest);
    out.replace(&std::env::temp_dir().display().to_string(), "TMP")
}

impl Runner for Fake {
    fn run(&self, argv: &[&str]) -> Result<String, SnapshotError> {
        let line = argv.join(" ");
        self.calls.lock().unwrap().push(line.clone());
        for (prefix, r) in &self.rules {
            if line.starts_with(prefix.as_str()) {
                return r.clone().map_err(|stderr| SnapshotError::Command {
                    command: line.clone(),
                    status: "exit status 5".into(),
                    stderr,
                });
            }
        }
        Ok(String::new())
    }

    fn watchdog(&self, mountpoint: &Path, after: Duration) -> Result<Box<dyn Watchdog>, SnapshotError> {
        let m = mountpoint.display().to_string();
        self.calls.lock().unwrap().push(format!("watchdog {m} {}s", after.as_secs()));
        if self.watchdog_fails {
            return Err(SnapshotError::Spawn { command: "sh".into(), source: std::io::Error::other("no sh") });
        }
        Ok(Box::new(FakeWatchdog { fire: self.fire.clone(), log: self.calls.clone(), m }))
    }
}

struct FakeWatchdog {
    fire: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
    m: String,
}

impl Watchdog for FakeWatchdog {
    fn fired(&mut self) -> bool {
        self.fire.load(Ordering::SeqCst)
    }
    fn disarm(self: Box<Self>) {
        self.log.lock().unwrap().push(format!("disarm watchdog {}", self.m));
    }
}

fn spec(kind: SnapshotKind) -> SnapshotSpec {
    SnapshotSpec { kind, ..SnapshotSpec::default() }
}

fn paths(p: &[&str]) -> Vec<PathBuf> {
    p.iter().map(PathBuf::from).collect()
}

const FINDMNT: &str = "findmnt --noheadings --raw --output SOURCE,TARGET,FSTYPE --target";

// ---------------------------------------------------------------- LVM

fn lvm_fake(extra: &[(&str, Result<&str, &str>)]) -> Arc<Fake> {
    let mut rules: Vec<(&str, Result<&str, &str>)> = extra.to_vec();
    rules.extend([
        (FINDMNT, Ok("/dev/mapper/vg0-data /srv/data xfs\n")),
        ("lvs --noheadings --options vg_name,lv_name", Ok("  vg0 data\n")),
        ("lvs --noheadings --options lv_attr,snap_percent", Ok("  swi-a-s---  12.50\n")),
    ]);
    Fake::new(&rules)
}

#[test]
fn lvm_snapshot_is_mounted_read_and_removed() {
    let fake = lvm_fake(&[]);
    let set = SnapshotSet::for_paths(&spec(SnapshotKind::Lvm), &paths(&["/srv/data/uploads"]), fake.clone()).unwrap();
    let views = set.views();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].original, PathBuf::from("/srv/data"));
    assert_eq!(normalize(&views[0].snapshot.display().to_string()), "TMP/vg0-data-NAME");
    assert!(views[0].snapshot.is_dir(), "the mount directory exists while the snapshot is held");
    let (verified, removed) = set.finish();
    verified.unwrap();
    removed.unwrap();
    assert!(!views[0].snapshot.exists(), "the mount directory is removed");
    assert_eq!(
        fake.calls(),
        vec![
            format!("{FINDMNT} /srv/data/uploads"),
            "lvs --noheadings --options vg_name,lv_name /dev/mapper/vg0-data".to_string(),
            "lvcreate --snapshot --name data-NAME --extents 10%ORIGIN vg0/data".into(),
            "mount -o ro,nouuid /dev/vg0/data-NAME TMP/vg0-data-NAME".into(),
            "lvs --noheadings --options lv_attr,snap_percent vg0/data-NAME".into(),
            "umount TMP/vg0-data-NAME".into(),
            "lvremove -f vg0/data-NAME".into(),
        ]
    );
}

#[test]
fn lvm_overflow_fails_and_still_removes() {
    let fake = lvm_fake(&[("lvs --noheadings --options lv_attr,snap_percent", Ok("  swi-I-s---  100.00\n"))]);
    let mut s = spec(SnapshotKind::Lvm);
    s.size = Some("2G".into());
    let set = SnapshotSet::for_paths(&s, &paths(&["/srv/data"]), fake.clone()).unwrap();
    let (verified, removed) = set.finish();
    assert!(matches!(verified, Err(SnapshotError::Overflowed { .. })), "{verified:?}");
    removed.unwrap();
    let calls = fake.calls();
    assert!(calls.contains(&"lvcreate --snapshot --name data-NAME --size 2G vg0/data".to_string()), "{calls:?}");
    assert_eq!(calls.last().unwrap(), "lvremove -f vg0/data-NAME");
}

#[test]
fn lvm_failed_mount_removes_the_snapshot() {
    let fake = lvm_fake(&[("mount ", Err("mount: wrong fs type"))]);
    let err = SnapshotSet::for_paths(&spec(SnapshotKind::Lvm), &paths(&["/srv/data"]), fake.clone()).err().unwrap();
    assert!(err.to_string().contains("wrong fs type"), "{err}");
    let calls = fake.calls();
    assert_eq!(calls.last().unwrap(), "lvremove -f vg0/data-NAME", "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("umount")), "{calls:?}");
}

#[test]
fn lvm_dropped_set_unmounts_and_removes() {
    let fake = lvm_fake(&[]);
    let set = SnapshotSet::for_paths(&spec(SnapshotKind::Lvm), &paths(&["/srv/data"]), fake.clone()).unwrap();
    // A backup that fails (or is interrupted) drops the set without finish().
    drop(set);
    let calls = fake.calls();
    assert_eq!(calls[calls.len() - 2..], ["umount TMP/vg0-data-NAME", "lvremove -f vg0/data-NAME"], "{calls:?}");
    assert!(!calls.iter().any(|c| c.contains("lv_attr")), "no validity check without a read: {calls:?}");
}

#[test]
fn lvm_failed_removal_is_an_error_naming_the_manual_command() {
    let fake = lvm_fake(&[("lvremove", Err("Logical volume vg0/data-x in use."))]);
    let set = SnapshotSet::for_paths(&spec(SnapshotKind::Lvm), &paths(&["/srv/data"]), fake.clone()).unwrap();
    let (verified, removed) = set.finish();
    verified.unwrap();
    let e = removed.unwrap_err();
    let msg = error_chain(&e);
    assert!(matches!(e, SnapshotError::Cleanup { .. }), "{msg}");
    assert!(msg.contains("lvremove -f vg0/data-") && msg.contains("in use"), "{msg}");
}

#[test]
fn lvm_device_snapshot_is_read_as_a_device() {
    let fake = lvm_fake(&[]);
    let set = SnapshotSet::for_device(&spec(SnapshotKind::Lvm), Path::new("/dev/vg0/data"), fake.clone()).unwrap();
    let v = &set.views()[0];
    assert_eq!(v.original, PathBuf::from("/dev/vg0/data"));
    assert_eq!(normalize(&v.snapshot.display().to_string()), "/dev/vg0/data-NAME");
    let (verified, removed) = set.finish();
    verified.unwrap();
    removed.unwrap();
    assert_eq!(
        fake.calls(),
        vec![
            "lvs --noheadings --options vg_name,lv_name /dev/vg0/data",
            "lvcreate --snapshot --name data-NAME --extents 10%ORIGIN vg0/data",
            "lvs --noheadings --options lv_attr,snap_percent vg0/data-NAME",
            "lvremove -f vg0/data-NAME",
        ]
    );
}

#[test]
fn lvm_refuses_what_is_not_a_logical_volume() {
    let fake = Fake::new(&[(FINDMNT, Ok("tmpfs /run tmpfs\n"))]);
    let e = SnapshotSet::for_paths(&spec(SnapshotKind::Lvm), &paths(&["/run/x"]), fake.clone()).err().unwrap();
    assert!(e.to_string().contains("not from an LVM logical volume"), "{e}");
    let fake = Fake::new(&[(FINDMNT, Ok("/dev/sda1 /boot ext4\n")), ("lvs", Ok(""))]);
    let e = SnapshotSet::for_paths(&spec(SnapshotKind::Lvm), &paths(&["/boot"]), fake.clone()).err().unwrap();
    assert!(e.to_string().contains("not an LVM logical volume"), "{e}");
    assert!(!fake.calls().iter().any(|c| c.starts_with("lvcreate")));
}

// ---------------------------------------------------------------- ZFS

#[test]
fn zfs_snapshot_is_read_through_dot_zfs_and_destroyed() {
    let fake = Fake::new(&[(FINDMNT, Ok("tank/data /srv/data zfs\n"))]);
    let set = SnapshotSet::for_paths(&spec(SnapshotKind::Zfs), &paths(&["/srv/data/a", "/srv/data/b"]), fake.clone())
        .unwrap();
    let views = set.views();
    assert_eq!(views.len(), 1, "one snapshot per dataset");
    assert_eq!(normalize(&views[0].snapshot.display().to_string()), "/srv/data/.zfs/snapshot/NAME");
    assert_eq!(views[0].original, PathBuf::from("/srv/data"));
    let (verified, removed) = set.finish();
    verified.unwrap();
    removed.unwrap();
    assert_eq!(
        fake.calls(),
        vec![
            format!("{FINDMNT} /srv/data/a"),
            format!("{FINDMNT} /srv/data/b"),
            "zfs snapshot tank/data@NAME".into(),
            "zfs destroy tank/data@NAME".into(),
        ]
    );
}

#[test]
fn zfs_second_snapshot_failing_destroys_the_first() {
    let fake = Arc::new(Fake {
        rules: vec![
            (format!("{FINDMNT} /srv/a"), Ok("tank/a /srv/a zfs\n".into())),
            (format!("{FINDMNT} /srv/b"), Ok("tank/b /srv/b zfs\n".into())),
            ("zfs snapshot tank/b@".into(), Err("cannot create snapshot: out of space".into())),
        ],
        ..Fake::default()
    });
    let e =
        SnapshotSet::for_paths(&spec(SnapshotKind::Zfs), &paths(&["/srv/a", "/srv/b"]), fake.clone()).err().unwrap();
    assert!(e.to_string().contains("out of space"), "{e}");
    assert_eq!(fake.calls().last().unwrap(), "zfs destroy tank/a@NAME");
}

#[test]
fn zfs_refuses_other_file_systems() {
    let fake = Fake::new(&[(FINDMNT, Ok("/dev/sda2 /srv ext4\n"))]);
    let e = SnapshotSet::for_paths(&spec(SnapshotKind::Zfs), &paths(&["/srv"]), fake.clone()).err().unwrap();
    assert!(e.to_string().contains("not ZFS"), "{e}");
    assert_eq!(fake.calls().len(), 1);
}

// ---------------------------------------------------------------- fsfreeze

fn freeze_fake() -> Arc<Fake> {
    Fake::new(&[(FINDMNT, Ok("/dev/sdb1 /srv/data ext4\n"))])
}

#[test]
fn fsfreeze_freezes_arms_the_watchdog_and_thaws() {
    let fake = freeze_fake();
    let mut s = spec(SnapshotKind::Fsfreeze);
    s.freeze_timeout = Some(Duration::from_secs(20));
    let set = SnapshotSet::for_paths(&s, &paths(&["/srv/data/db"]), fake.clone()).unwrap();
    assert!(set.views().is_empty(), "a frozen file system is read in place");
    assert_eq!(set.frozen(), vec![PathBuf::from("/srv/data")]);
    let (verified, removed) = set.finish();
    verified.unwrap();
    removed.unwrap();
    assert_eq!(
        fake.calls()[1..],
        [
            "fsfreeze --freeze /srv/data",
            "watchdog /srv/data 20s",
            "fsfreeze --unfreeze /srv/data",
            "disarm watchdog /srv/data",
        ]
    );
}

#[test]
fn fsfreeze_cut_short_by_the_watchdog_fails_the_backup() {
    let fake = freeze_fake();
    let set = SnapshotSet::for_paths(&spec(SnapshotKind::Fsfreeze), &paths(&["/srv/data"]), fake.clone()).unwrap();
    // The copy took longer than the limit: the watchdog thawed the file system.
    fake.fire.store(true, Ordering::SeqCst);
    let (verified, removed) = set.finish();
    let e = verified.unwrap_err();
    assert!(matches!(e, SnapshotError::FreezeTimeout { seconds: 60, .. }), "{e}");
    removed.unwrap();
    let calls = fake.calls();
    assert!(!calls.iter().any(|c| c == "fsfreeze --unfreeze /srv/data"), "already thawed: {calls:?}");
}

#[test]
fn fsfreeze_without_a_watchdog_thaws_at_once() {
    let fake = Arc::new(Fake {
        rules: vec![(FINDMNT.into(), Ok("/dev/sdb1 /srv/data ext4\n".into()))],
        watchdog_fails: true,
        ..Fake::default()
    });
    let e = SnapshotSet::for_paths(&spec(SnapshotKind::Fsfreeze), &paths(&["/srv/data"]), fake.clone()).err().unwrap();
    assert!(e.to_string().contains("cannot start"), "{e}");
    assert_eq!(
        fake.calls()[1..],
        ["fsfreeze --freeze /srv/data", "watchdog /srv/data 60s", "fsfreeze --unfreeze /srv/data"]
    );
}

#[test]
fn fsfreeze_failed_thaw_leaves_the_watchdog_armed() {
    let fake = Fake::new(&[(FINDMNT, Ok("/dev/sdb1 /srv/data ext4\n")), ("fsfreeze --unfreeze", Err("I/O error"))]);
    let set = SnapshotSet::for_paths(&spec(SnapshotKind::Fsfreeze), &paths(&["/srv/data"]), fake.clone()).unwrap();
    let (_, removed) = set.finish();
    let msg = error_chain(&removed.unwrap_err());
    assert!(msg.contains("fsfreeze --unfreeze /srv/data") && msg.contains("watchdog"), "{msg}");
    assert!(!fake.calls().iter().any(|c| c.starts_with("disarm")), "{:?}", fake.calls());
}

#[test]
fn fsfreeze_refuses_the_root_file_system() {
    let fake = Fake::new(&[(FINDMNT, Ok("/dev/sda1 / ext4\n"))]);
    let e = SnapshotSet::for_paths(&spec(SnapshotKind::Fsfreeze), &paths(&["/etc"]), fake.clone()).err().unwrap();
    assert!(e.to_string().contains("refusing to freeze the root"), "{e}");
    assert!(!fake.calls().iter().any(|c| c.starts_with("fsfreeze")));
}

/// The real watchdog: a process of its own that fires on time (its thaw
/// fails here, on a directory that is no mount point, which is harmless) and
/// that disarming stops.
#[test]
fn real_watchdog_fires_on_time_and_disarms() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut w = SystemRunner.watchdog(dir.path(), Duration::from_secs(1)).unwrap();
    assert!(!w.fired(), "fired at once");
    while !w.fired() {
        assert!(started.elapsed() < Duration::from_secs(10), "watchdog never fired");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(started.elapsed() >= Duration::from_millis(900), "fired early: {:?}", started.elapsed());
    w.disarm();

    let mut w = SystemRunner.watchdog(dir.path(), Duration::from_secs(30)).unwrap();
    assert!(!w.fired());
    let t = Instant::now();
    w.disarm();
    assert!(t.elapsed() < Duration::from_secs(2), "disarm waited for the timer");
}

// ---------------------------------------------------------------- parsing

#[test]
fn kinds_and_findmnt_output_parse() {
    for k in ["none", "btrfs", "lvm", "zfs", "fsfreeze"] {
        assert_eq!(k.parse::<SnapshotKind>().unwrap().as_str(), k);
    }
    assert!("ext4".parse::<SnapshotKind>().unwrap_err().contains("btrfs, lvm, zfs, fsfreeze or none"));
    let fake = Fake::new(&[(FINDMNT, Ok("/dev/mapper/vg-a\\x20b /srv/my\\x20data ext4\n"))]);
    let m = mount_of(Path::new("/srv/my data/x"), fake.as_ref()).unwrap();
    assert_eq!(m.source, "/dev/mapper/vg-a b");
    assert_eq!(m.target, PathBuf::from("/srv/my data"));
    let fake = Fake::new(&[(FINDMNT, Ok(""))]);
    assert!(mount_of(Path::new("/x"), fake.as_ref()).is_err());
}

#[test]
fn btrfs_is_refused_off_btrfs() {
    let dir = tempfile::tempdir().unwrap();
    if btrfs::subvolume_root(dir.path()).is_ok() {
        return; // the temporary directory is on btrfs here
    }
    let fake = Fake::new(&[]);
    let e =
        SnapshotSet::for_paths(&spec(SnapshotKind::Btrfs), &[dir.path().to_path_buf()], fake.clone()).err().unwrap();
    assert!(e.to_string().contains("not on a btrfs file system"), "{e}");
    assert!(fake.calls().is_empty());
}
