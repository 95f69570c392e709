//! Block devices and disk images backed up as one stream: dedup across days,
//! byte-identical restores to a file, stdout and a device (with its refusals),
//! and fsfreeze on a real ext4 file system on a loop device, including the
//! watchdog that thaws it when drtool is killed while it is frozen.
//!
//! The image tests need nothing special; the loop-device tests need root and
//! util-linux (skipped elsewhere, a failure under CI=true).

mod common;

use common::loopdev::{LoopDevice, LoopFs, require};
use common::*;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

const IMAGE: usize = 64 * MIB;

/// A 64 MiB "disk": a few MiB of zeros (unused space) and varied data.
fn disk_image(path: &Path) -> Vec<u8> {
    let mut data = sql_like(11, IMAGE);
    data[..MIB].fill(0);
    data[40 * MIB..44 * MIB].copy_from_slice(&random_bytes(12, 4 * MIB));
    data[50 * MIB..54 * MIB].fill(0);
    write_file(path, &data);
    data
}

/// 1% of the image's 4 KiB blocks (164 blocks, 656 KiB).
const ONE_PERCENT: usize = IMAGE / 4096 / 100 * 4096;

/// Overwrite `len` bytes at `off` with new data, as a file system rewriting a file in place does.
fn overwrite(path: &Path, data: &mut [u8], off: usize, len: usize, seed: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let new = random_bytes(seed, len);
    f.write_all_at(&new, off as u64).unwrap();
    f.sync_all().unwrap();
    data[off..off + len].copy_from_slice(&new);
}

fn backup_image(repo: &Repo, img: &Path) -> serde_json::Value {
    repo.run(["--json", "backup", "--device", &img.to_string_lossy()]).ok().json()
}

fn pct(n: u64) -> f64 {
    n as f64 * 100.0 / IMAGE as f64
}

/// Content-defined chunks average 1 MiB here (512 KiB to 8 MiB), so each
/// separate spot that changes costs one to three whole chunks: 1% of blocks
/// changed in one place re-stores a few percent of a 64 MiB image before
/// compression, and the same 1% spread over four places about twice that.
/// The test asserts on the contiguous case (a rewritten file) and reports both.
#[test]
fn image_backups_dedup_across_days_and_restore_byte_identical() {
    let repo = Repo::init();
    let dir = repo.scratch("disks");
    let img = dir.join("vm.img");
    let mut data = disk_image(&img);

    let day1 = backup_image(&repo, &img);
    overwrite(&img, &mut data, 21 * MIB + 12_288, ONE_PERCENT, 100);
    let day2 = backup_image(&repo, &img);
    let day2_data = data.clone();
    for (n, at) in [3usize, 17, 29, 47].into_iter().enumerate() {
        overwrite(&img, &mut data, at * MIB + 4096 * n, ONE_PERCENT / 4, 200 + n as u64);
    }
    let day3 = backup_image(&repo, &img);
    let line = |v: &serde_json::Value| {
        let (new, stored) = (num(v, "summary.bytes_new"), num(v, "summary.bytes_stored"));
        format!("new {new} B ({:.2}%), stored {stored} B ({:.2}%)", pct(new), pct(stored))
    };
    eprintln!(
        "64 MiB image, {ONE_PERCENT} B = 1% of blocks changed per day:\n  day 1 (full): {}\n  \
         day 2 (1% in one place): {}\n  day 3 (1% in 4 places): {}",
        line(&day1),
        line(&day2),
        line(&day3)
    );
    // Where the keyed chunker cuts differs from repository to repository, so
    // the bounds leave room for the worst layouts: the changed bytes plus the
    // chunks around them until the chunker resynchronises, three maximum-size
    // (8 MiB) chunks. A chunker that stopped deduplicating would store the
    // whole image again; the typical figures (printed above) are a few percent.
    let bound = ONE_PERCENT as u64 + 3 * 8 * MIB as u64;
    let stored2 = num(&day2, "summary.bytes_stored");
    assert!(stored2 < bound, "day 2 added {stored2} bytes to the repository (bound {bound})");
    let new2 = num(&day2, "summary.bytes_new");
    assert!(new2 < bound, "day 2 found {new2} new bytes (bound {bound})");
    assert!(num(&day2, "summary.chunks_new") < num(&day2, "summary.chunks"), "{day2}");

    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 3);
    assert_eq!(snaps[2]["source"], "device");
    let m = repo.run(["--json", "show", "latest"]).ok().json();
    assert_eq!(m["items"][0]["name"], "vm.img", "{m}");
    assert_eq!(num(&m, "source.details.size"), IMAGE as u64);

    // To a file under --target (named after the device), and to stdout.
    let target = repo.scratch("restore");
    repo.restore_target("latest", &target, &[]).ok();
    assert!(std::fs::read(target.join("vm.img")).unwrap() == data, "restored image differs");
    let out = repo.restore_stdout("latest", &[]).ok();
    assert!(out.stdout == data, "stdout restore differs");
    // Earlier days are still themselves.
    let out = repo.restore_stdout(day2["snapshot_id"].as_str().unwrap(), &[]).ok();
    assert!(out.stdout == day2_data, "day 2 restore differs");
}

#[test]
fn device_option_errors_are_usage_errors() {
    let repo = Repo::init();
    let out = repo.run(["backup", "--device", "/nonexistent/disk.img"]).expect_code(5);
    assert!(out.stderr.contains("/nonexistent/disk.img"), "{}", out.stderr);
    let dir = repo.scratch("d");
    let out = repo.run(["backup", "--device", &dir.to_string_lossy()]).expect_code(5);
    assert!(out.stderr.contains("not a block device or a disk image"), "{}", out.stderr);
    let img = dir.join("a.img");
    write_file(&img, b"x");
    let out = repo.run(["backup", "--device", &img.to_string_lossy(), "--snapshot", "btrfs"]).expect_code(2);
    assert!(out.stderr.contains("applies to paths"), "{}", out.stderr);
    let out = repo.run(["backup", "--snapshot-size", "1G", &dir.to_string_lossy()]).expect_code(2);
    assert!(out.stderr.contains("--snapshot lvm"), "{}", out.stderr);
    repo.run(["backup", "--device", &img.to_string_lossy(), &dir.to_string_lossy()]).expect_code(2);
    let out = repo.run(["restore", "latest", "--target", &dir.to_string_lossy(), "--yes"]).expect_code(2);
    assert!(out.stderr.contains("--yes applies"), "{}", out.stderr);
}

#[test]
fn policy_device_source_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let check = |source: &str| {
        let f = dir.path().join("p.toml");
        std::fs::write(&f, format!("name = \"d\"\nrepository = \"/r\"\npassword_env = \"P\"\n[source]\n{source}\n"))
            .unwrap();
        let mut c = drtool();
        c.args(["policy", "check"]).arg(&f);
        run_with_input(c, None)
    };
    check("kind = \"device\"\ndevice = \"/dev/vg0/data\"\nsnapshot = \"lvm\"\nsnapshot_size = \"2G\"").ok();
    check("kind = \"paths\"\npaths = [\"/srv\"]\nsnapshot = \"fsfreeze\"\nfreeze_timeout_seconds = 20").ok();
    for (source, expect) in [
        ("kind = \"device\"\ndevice = \"disk.img\"", "absolute path"),
        ("kind = \"device\"\ndevice = \"/d\"\nsnapshot = \"btrfs\"", "does not apply to kind \"device\""),
        ("kind = \"paths\"\npaths = [\"/srv\"]\nsnapshot = \"ext4\"", "expected btrfs, lvm, zfs, fsfreeze or none"),
        ("kind = \"command\"\ncommand = [\"true\"]\nsnapshot = \"lvm\"", "does not apply"),
        ("kind = \"paths\"\npaths = [\"/srv\"]\nsnapshot = \"btrfs\"\nsnapshot_size = \"1G\"", "snapshot_size"),
        ("kind = \"paths\"\npaths = [\"/srv\"]\ndevice = \"/dev/x\"", "source.device does not apply"),
    ] {
        let out = check(source).expect_code(2);
        let all = out.stdout_str() + &out.stderr;
        assert!(all.contains(expect), "{source}: {all}");
    }
}

// ---------------------------------------------------------------- loop devices

/// A loop device over a new image of `mib` MiB.
fn loop_device(dir: &Path, name: &str, mib: u64) -> LoopDevice {
    let img = dir.join(name);
    std::fs::File::create(&img).unwrap().set_len(mib << 20).unwrap();
    LoopDevice::attach(&img)
}

fn read_device(dev: &Path, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(dev).unwrap();
    let mut v = vec![0u8; len];
    std::io::Read::read_exact(&mut f, &mut v).unwrap();
    v
}

#[test]
fn restore_to_device_checks_confirmation_size_and_use() {
    if !require("restore_to_device_checks_confirmation_size_and_use", &["losetup", "mkfs.ext4", "mount"]) {
        return;
    }
    let repo = Repo::init();
    let dir = repo.scratch("dev");
    let img = dir.join("disk.img");
    let data = disk_image(&img);
    repo.run(["backup", "--device", &img.to_string_lossy()]).ok();

    let big = loop_device(&dir, "big.img", 80);
    let small = loop_device(&dir, "small.img", 32);
    // Without --yes: the plan, then a refusal; nothing written.
    let out = repo.run(["restore", "latest", "--to-device", big.path()]).expect_code(6);
    assert!(out.stderr.contains("needs --yes") && out.stderr.contains("OVERWRITE"), "{}", out.stderr);
    assert!(read_device(&big.dev, MIB).iter().all(|b| *b == 0), "written without --yes");
    let out = repo.run(["restore", "latest", "--to-device", big.path(), "--dry-run"]).ok();
    assert!(out.stderr.contains("OVERWRITE"), "{}", out.stderr);
    // Too small, not a device.
    let out = repo.run(["restore", "latest", "--to-device", small.path(), "--yes"]).expect_code(6);
    assert!(out.stderr.contains("does not fit"), "{}", out.stderr);
    let out = repo.run(["restore", "latest", "--to-device", &img.to_string_lossy(), "--yes"]).expect_code(6);
    assert!(out.stderr.contains("not a block device"), "{}", out.stderr);
    // In use: a mounted file system.
    let fs = LoopFs::new("ext4", 80);
    let out = repo.run(["restore", "latest", "--to-device", fs.dev.path(), "--yes"]).expect_code(6);
    assert!(out.stderr.contains("in use"), "{}", out.stderr);
    drop(fs);

    let started = Instant::now();
    let out = repo.run(["--json", "restore", "latest", "--to-device", big.path(), "--yes"]).ok();
    assert_eq!(num(&out.json(), "summary.bytes"), IMAGE as u64);
    eprintln!("restored 64 MiB onto {} in {:.2} s", big.path(), started.elapsed().as_secs_f64());
    assert!(read_device(&big.dev, IMAGE) == data, "the device does not hold the image");
}

fn frozen(mountpoint: &Path) -> bool {
    // A write blocks on a frozen file system: try one on a thread, with a deadline.
    let p = mountpoint.join(format!("probe-{}", std::process::id()));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::fs::write(&p, b"x").and_then(|_| std::fs::File::open(&p)?.sync_all());
        let _ = tx.send(r.is_ok());
    });
    !matches!(rx.recv_timeout(Duration::from_secs(2)), Ok(true))
}

#[test]
fn fsfreeze_device_backup_of_a_mounted_file_system() {
    if !require("fsfreeze_device_backup_of_a_mounted_file_system", &["losetup", "mkfs.ext4", "mount", "fsfreeze"]) {
        return;
    }
    let fs = LoopFs::new("ext4", 64);
    write_file(&fs.root().join("data.sql"), &sql_like(5, 8 * MIB));
    let repo = Repo::init();
    let out = repo.run(["--json", "-v", "backup", "--device", fs.dev.path(), "--snapshot", "fsfreeze"]).ok();
    assert!(out.stderr.contains("frozen") && out.stderr.contains("thawed"), "{}", out.stderr);
    assert!(!frozen(fs.root()), "the file system is still frozen after the backup");
    let m = repo.run(["--json", "show", "latest"]).ok().json();
    let frozen_at = &m["source"]["details"]["snapshot"]["taken"][0]["frozen"];
    assert_eq!(frozen_at.as_str(), Some(fs.root().to_str().unwrap()), "{m}");
    assert_eq!(num(&m, "source.details.size"), 64 << 20);

    // The copy is a mountable file system with the file in it.
    let restore = repo.scratch("r");
    repo.restore_target("latest", &restore, &[]).ok();
    let copy = restore.join(fs.dev.dev.file_name().unwrap());
    let dev = LoopDevice::attach(&copy);
    let m2 = common::loopdev::Mounted::mount(dev.path(), &restore.join("mnt"), &["-o", "ro"]);
    assert!(std::fs::read(m2.dir.join("data.sql")).unwrap() == sql_like(5, 8 * MIB));
}

#[test]
fn fsfreeze_watchdog_thaws_when_the_copy_is_too_slow_or_drtool_is_killed() {
    if !require("fsfreeze_watchdog_thaws", &["losetup", "mkfs.ext4", "mount", "fsfreeze"]) {
        return;
    }
    let fs = LoopFs::new("ext4", 160);
    // zstd level 19 on 120 MiB of text takes far longer than a 2 s freeze.
    let mut f = std::fs::File::create(fs.root().join("data.sql")).unwrap();
    for i in 0..12 {
        f.write_all(&sql_like(20 + i, 10 * MIB)).unwrap();
    }
    f.sync_all().unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    drop(f);
    let repo = Repo::init();
    let slow = |extra: &[&str]| {
        let mut args = vec!["backup", "--compression", "19", "--device", fs.dev.path(), "--snapshot", "fsfreeze"];
        args.extend_from_slice(extra);
        repo.cmd(args)
    };

    // Too slow: the watchdog thaws after 2 s, and the backup fails rather than keep an inconsistent copy.
    let started = Instant::now();
    let out = run_with_input(slow(&["--freeze-timeout", "2"]), None).expect_code(5);
    assert!(out.stderr.contains("thawed by the watchdog after 2 s"), "{}", out.stderr);
    assert!(!frozen(fs.root()));
    assert!(repo.snapshots().is_empty());
    eprintln!("slow copy failed after {:.1} s with: {}", started.elapsed().as_secs_f64(), out.stderr.trim());

    // Killed outright while frozen: the watchdog process still thaws on time.
    let mut child = slow(&["--freeze-timeout", "3"]).spawn().unwrap();
    assert!(wait_until(Duration::from_secs(30), watchdog_running), "no watchdog process appeared");
    assert!(frozen(fs.root()), "not frozen while the watchdog runs");
    send_signal(child.id(), libc::SIGKILL);
    let _ = child.wait();
    let killed = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || !frozen(fs.root())), "still frozen 10 s after drtool was killed");
    eprintln!("drtool killed while frozen: thawed {:.1} s later by the watchdog", killed.elapsed().as_secs_f64());
}

/// Whether a `drtool-thaw-watchdog` shell is running.
fn watchdog_running() -> bool {
    processes().iter().any(|(pid, ..)| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| contains(&c, b"drtool-thaw-watchdog"))
    })
}
