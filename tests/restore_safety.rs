//! Restores put things where they belong and destroy nothing they cannot
//! replace (issue 18): trees with the same name land side by side, `--stdout`
//! writes one stream, an existing file survives a damaged pack, and metadata
//! never follows a symlink planted in the target while the restore runs.

mod common;

use common::mariadb::MariaDb;
use common::*;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every path below `dir` whose name starts like a restore's temporary entries.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if file_name(&p).starts_with(".drtool-restore-") {
            out.push(p.clone());
        }
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(leftovers(&p));
        }
    }
    out
}

/// Every path below `dir` with this file name.
fn find(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if file_name(&p) == name {
            out.push(p.clone());
        }
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(find(&p, name));
        }
    }
    out
}

/// `root` as the relative path it lands under when restored by its full path.
fn under(target: &Path, root: &Path) -> PathBuf {
    target.join(root.strip_prefix("/").unwrap())
}

#[test]
fn trees_with_the_same_name_restore_side_by_side() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    let (a, b, conf) = (src.join("www/a/uploads"), src.join("www/b/uploads"), src.join("etc/conf"));
    write_file(&a.join("x.txt"), b"from a");
    write_file(&a.join("only-a/deep.txt"), b"deep a");
    fs::hard_link(a.join("x.txt"), a.join("x-link")).unwrap();
    write_file(&b.join("x.txt"), b"from b");
    write_file(&conf.join("app.toml"), b"conf");
    let snap = repo.backup_paths(&[&a, &b, &conf]);
    let id = text(&snap, "snapshot_id").to_string();

    let t = repo.scratch("restore");
    let out = repo.restore_target(&id, &t, &[]).ok();
    let mut xs: Vec<String> = find(&t, "x.txt").iter().map(|p| fs::read_to_string(p).unwrap()).collect();
    xs.sort();
    assert_eq!(xs, ["from a", "from b"], "one tree overwrote the other");
    assert_eq!(fs::read(under(&t, &a).join("x.txt")).unwrap(), b"from a");
    assert!(out.stderr.contains("another tree has the same name"), "{}", out.stderr);
    assert_eq!(fs::read(under(&t, &a).join("only-a/deep.txt")).unwrap(), b"deep a");
    assert_eq!(fs::read(under(&t, &b).join("x.txt")).unwrap(), b"from b");
    let (x, l) = (under(&t, &a).join("x.txt"), under(&t, &a).join("x-link"));
    assert_eq!(fs::metadata(&x).unwrap().ino(), fs::metadata(&l).unwrap().ino(), "hard link kept");
    assert!(!under(&t, &b).join("only-a").exists(), "trees were merged");
    assert!(!t.join("uploads").exists(), "same-named trees must not share DIR/uploads");
    // A unique name keeps the usual place.
    assert_eq!(fs::read(t.join("conf/app.toml")).unwrap(), b"conf");

    // The plan shows where each tree goes.
    let t = repo.scratch("plan");
    let plan = repo.restore_target(&id, &t, &["--dry-run"]).ok().stdout_str();
    for (root, to) in [(&a, under(&t, &a)), (&b, under(&t, &b)), (&conf, t.join("conf"))] {
        let line = format!("tree {} -> {}", root.display(), to.display());
        assert!(plan.contains(&line), "plan lacks {line:?}:\n{plan}");
    }
    assert_eq!(fs::read_dir(&t).unwrap().count(), 0, "a dry run writes nothing");

    // --include by original path or by the path as restored.
    let t = repo.scratch("include");
    let restored_b = under(Path::new(""), &b).join("x.txt");
    let abs_a = a.join("only-a").display().to_string();
    repo.restore_target(&id, &t, &["--include", &abs_a, "--include", restored_b.to_str().unwrap()]).ok();
    assert_eq!(fs::read(under(&t, &a).join("only-a/deep.txt")).unwrap(), b"deep a");
    assert!(!under(&t, &a).join("x.txt").exists());
    assert_eq!(fs::read(under(&t, &b).join("x.txt")).unwrap(), b"from b");
    // The bare name is ambiguous now: it matches nothing, before anything is written.
    let t = repo.scratch("ambiguous");
    let out = repo.restore_target(&id, &t, &["--include", "uploads/x.txt"]).expect_code(2);
    assert!(out.stderr.contains("matches nothing"), "{}", out.stderr);
}

fn server() -> Option<&'static MariaDb> {
    MariaDb::shared()
}

#[test]
fn stdout_of_a_multi_stream_snapshot_needs_one_stream_chosen() {
    let Some(db) = server() else { return };
    let repo = Repo::init();
    for (name, marker) in [("rs_one", "first_marker"), ("rs_two", "second_marker")] {
        db.sql(None, &format!("CREATE DATABASE {name}"));
        db.sql(Some(name), &format!("CREATE TABLE t (v VARCHAR(20)); INSERT INTO t VALUES ('{marker}')"));
    }
    let mut c = repo.cmd(["--json", "backup", "--source", &db.url("rs_one,rs_two")]);
    c.env("MYSQL_PWD", &db.password);
    let snap = run_with_input(c, None).ok().json();
    let id = text(&snap, "snapshot_id").to_string();

    let out = repo.restore_stdout(&id, &[]).expect_code(2);
    assert!(out.stdout.is_empty(), "nothing may be written before the refusal");
    for want in ["rs_one.sql", "rs_two.sql", "--stream"] {
        assert!(out.stderr.contains(want), "the refusal must name {want}: {}", out.stderr);
    }
    let two = repo.restore_stdout(&id, &["--stream", "rs_two.sql"]).ok().stdout_str();
    assert!(two.contains("second_marker") && !two.contains("first_marker"), "{}", &two[..two.len().min(2000)]);
    let out = repo.restore_stdout(&id, &["--stream", "rs_three.sql"]).expect_code(2);
    assert!(out.stderr.contains("rs_one.sql"), "{}", out.stderr);

    // --stream picks one file from a directory restore too.
    let t = repo.scratch("one");
    repo.restore_target(&id, &t, &["--stream", "rs_one.sql"]).ok();
    assert_eq!(fs::read_dir(&t).unwrap().map(|e| file_name(&e.unwrap().path())).collect::<Vec<_>>(), ["rs_one.sql"]);

    // A single stream needs no choice.
    let single = repo.backup_stdin("single", b"only stream\n");
    assert_eq!(repo.restore_stdout(text(&single, "snapshot_id"), &[]).ok().stdout, b"only stream\n");
}

/// Back up `content` as a stream first, so a tree holding it as a file adds
/// only its metadata: the file's content then lies in packs of its own.
fn seed(repo: &Repo, content: &[u8]) -> Vec<(String, u64)> {
    repo.backup_stdin("seed", content);
    let packs = repo.pack_objects();
    assert!(!packs.is_empty());
    packs
}

#[test]
fn a_damaged_pack_leaves_the_existing_files_as_they_were() {
    let repo = Repo::init();
    let big = random_bytes(31, 2 * MIB);
    let content_packs = seed(&repo, &big);
    let root = repo.scratch("src").join("vol");
    write_file(&root.join("a.bin"), &big);
    write_file(&root.join("b.txt"), b"new b\n");
    symlink("new-target", root.join("c-link")).unwrap();
    let id = text(&repo.backup_paths(&[&root]), "snapshot_id").to_string();

    let t = repo.scratch("restore");
    write_file(&t.join("vol/a.bin"), b"old a\n");
    write_file(&t.join("vol/b.txt"), b"old b\n");
    symlink("old-target", t.join("vol/c-link")).unwrap();
    for (p, len) in &content_packs {
        repo.flip_object_byte(p, *len as usize / 2);
    }
    let out = repo.restore_target(&id, &t, &[]).expect_code(4);
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);
    assert_eq!(fs::read(t.join("vol/a.bin")).ok().as_deref(), Some(&b"old a\n"[..]), "a.bin was destroyed");
    assert_eq!(fs::read(t.join("vol/b.txt")).unwrap(), b"old b\n");
    assert_eq!(fs::read_link(t.join("vol/c-link")).unwrap(), Path::new("old-target"));
    assert_eq!(leftovers(&t), Vec::<PathBuf>::new(), "temporary files left behind");

    // Undamaged, a restore replaces what is there.
    let src2 = repo.scratch("src2").join("vol");
    write_file(&src2.join("b.txt"), b"new b\n");
    let id2 = text(&repo.backup_paths(&[&src2]), "snapshot_id").to_string();
    let good = repo.scratch("good");
    write_file(&good.join("vol/b.txt"), b"old b\n");
    repo.restore_target(&id2, &good, &[]).ok();
    assert_eq!(fs::read(good.join("vol/b.txt")).unwrap(), b"new b\n");
    assert_eq!(leftovers(&good), Vec::<PathBuf>::new());
}

/// A write lease on a file: whoever opens it blocks in open(2) until the
/// lease is released (or the kernel breaks it, after
/// /proc/sys/fs/lease-break-time seconds), and the lease shows the pending
/// break. This lets the test act at a known point of a restore.
struct Lease(fs::File);

impl Lease {
    fn take(path: &Path) -> Lease {
        let f = fs::File::open(path).unwrap();
        // SAFETY: fcntl on an open descriptor; the break notification (SIGIO) is ignored.
        let r = unsafe {
            libc::signal(libc::SIGIO, libc::SIG_IGN);
            libc::fcntl(f.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK)
        };
        assert_eq!(r, 0, "F_SETLEASE on {}: {}", path.display(), std::io::Error::last_os_error());
        Lease(f)
    }

    /// Someone is waiting in open(2) for this file.
    fn broken(&self) -> bool {
        // SAFETY: fcntl on an open descriptor.
        unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_GETLEASE) != libc::F_WRLCK }
    }
}

/// A directory of the snapshot is created early and given its metadata at
/// the end. Replace it with a symlink in between (what anyone who may write
/// to its parent can do): the restore must not chmod or touch the file the
/// symlink points to.
#[test]
fn metadata_never_follows_a_directory_replaced_by_a_symlink() {
    let repo = Repo::init();
    let content = random_bytes(32, 300 * 1024);
    seed(&repo, &content);
    let content_packs = repo.packs();
    let root = repo.scratch("src").join("data");
    fs::create_dir_all(root.join("d")).unwrap();
    fs::set_permissions(root.join("d"), fs::Permissions::from_mode(0o751)).unwrap();
    filetime::set_file_mtime(root.join("d"), filetime::FileTime::from_unix_time(1_000_000_000, 0)).unwrap();
    write_file(&root.join("z"), &content);
    let id = text(&repo.backup_paths(&[&root]), "snapshot_id").to_string();

    let victim = repo.scratch("outside").join("victim");
    write_file(&victim, b"not yours\n");
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    filetime::set_file_mtime(&victim, filetime::FileTime::from_unix_time(1_500_000_000, 0)).unwrap();

    let t = repo.scratch("restore");
    let leases: Vec<Lease> = content_packs.iter().map(|p| Lease::take(p)).collect();
    let mut child = repo.cmd(["restore", &id, "--target", t.to_str().unwrap()]).spawn().unwrap();
    let stderr = collect(child.stderr.take().unwrap());
    // The restore created data/d and now waits to read z's content.
    assert!(wait_until(Duration::from_secs(120), || leases.iter().any(Lease::broken)), "restore never read z");
    let d = t.join("data/d");
    assert!(fs::symlink_metadata(&d).unwrap().is_dir(), "data/d is created before z is read");
    fs::remove_dir(&d).unwrap();
    symlink(&victim, &d).unwrap();
    drop(leases);
    let status = wait_timeout(&mut child, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert_no_panic(&stderr);

    let m = fs::metadata(&victim).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600, "the restore chmod-ed the symlink's target; stderr: {stderr}");
    assert_eq!(m.mtime(), 1_500_000_000, "the restore set the symlink target's mtime; stderr: {stderr}");
    assert_eq!(fs::read(&victim).unwrap(), b"not yours\n");
    assert!(!status.success(), "a directory replaced during the restore is an error");
    assert!(stderr.contains("no longer a directory"), "{stderr}");
    assert_eq!(fs::read(t.join("data/z")).unwrap(), content);
}
