//! Tree backups with full metadata (hard links, xattrs, owners, special
//! modes, odd names, sparse files), excludes, partial backups, selective and
//! dry-run restores, symlink escapes, and incremental reads.
//!
//! Owners are only checked when the tests run as root (as in CI); the
//! one-file-system test needs `mount -t tmpfs` (root) and skips without it
//! outside CI.

mod common;

use common::*;
use filetime::FileTime;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    File(blake3::Hash, u64),
    Dir,
    Symlink(Vec<u8>),
}

/// What a restore must reproduce for one entry.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    /// Permission bits with setuid/setgid/sticky; `None` for symlinks.
    mode: Option<u32>,
    owner: (u32, u32),
    mtime: (i64, i64),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For files: the link count and the first (in name order) of the names sharing the inode.
    links: Option<(u64, Vec<u8>)>,
}

fn xattrs_of(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<_> = xattr::list(p)
        .map(|names| names.map(|n| (n.as_bytes().to_vec(), xattr::get(p, &n).unwrap().unwrap_or_default())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Every entry under (and including) `root`, keyed by path relative to `root`'s parent.
fn describe(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut metas = Vec::new();
    collect(root, root.file_name().unwrap().as_bytes().to_vec(), &mut metas);
    let mut first_name: HashMap<u64, Vec<u8>> = HashMap::new();
    for (rel, _, m) in &metas {
        if m.file_type().is_file() {
            let e = first_name.entry(m.ino()).or_insert_with(|| rel.clone());
            if rel < e {
                *e = rel.clone();
            }
        }
    }
    let mut out = BTreeMap::new();
    for (rel, path, m) in metas {
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            Kind::Symlink(fs::read_link(&path).unwrap().as_os_str().as_bytes().to_vec())
        } else if ft.is_dir() {
            Kind::Dir
        } else {
            let (h, len) = hash_reader(fs::File::open(&path).unwrap());
            Kind::File(h, len)
        };
        let links = ft.is_file().then(|| (m.nlink(), first_name[&m.ino()].clone()));
        let entry = Entry {
            kind,
            mode: (!ft.is_symlink()).then_some(m.mode() & 0o7777),
            owner: (m.uid(), m.gid()),
            mtime: (m.mtime(), m.mtime_nsec()),
            xattrs: if ft.is_symlink() { Vec::new() } else { xattrs_of(&path) },
            links,
        };
        out.insert(rel, entry);
    }
    out
}

fn collect(path: &Path, rel: Vec<u8>, out: &mut Vec<(Vec<u8>, PathBuf, fs::Metadata)>) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let is_dir = m.is_dir();
    out.push((rel.clone(), path.to_path_buf(), m));
    if is_dir {
        for e in fs::read_dir(path).unwrap() {
            let e = e.unwrap();
            let mut child = rel.clone();
            child.push(b'/');
            child.extend_from_slice(e.file_name().as_bytes());
            collect(&e.path(), child, out);
        }
    }
}

#[track_caller]
fn assert_same_tree(expected: &BTreeMap<Vec<u8>, Entry>, got: &BTreeMap<Vec<u8>, Entry>) {
    let show = |k: &Vec<u8>| String::from_utf8_lossy(k).into_owned();
    for (k, e) in expected {
        match got.get(k) {
            None => panic!("{} missing from the restore", show(k)),
            Some(g) => assert_eq!(g, e, "{} differs after restore", show(k)),
        }
    }
    for k in got.keys() {
        assert!(expected.contains_key(k), "{} appeared in the restore but was not backed up", show(k));
    }
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtimes(root: &Path) {
    let mut all = Vec::new();
    collect(root, Vec::new(), &mut all);
    all.sort_by_key(|(_, p, _)| std::cmp::Reverse(p.components().count()));
    for (i, (_, p, _)) in all.iter().enumerate() {
        let t = FileTime::from_unix_time(1_650_000_000 + i as i64 * 977, 987_654_321 - i as u32 * 1_003);
        filetime::set_symlink_file_times(p, t, t).unwrap();
    }
}

const SPARSE_LEN: u64 = 64 << 20;

/// Build the metadata fixture under `parent/meta`.
fn build_tree(parent: &Path) -> PathBuf {
    let root = parent.join("meta");
    write_file(&root.join("plain.txt"), b"plain\n");
    // Hard links: three names of one file (one in a subdirectory), and a pair.
    write_file(&root.join("hl/one"), &random_bytes(5, 200_000));
    fs::create_dir_all(root.join("hl/sub")).unwrap();
    fs::hard_link(root.join("hl/one"), root.join("hl/two")).unwrap();
    fs::hard_link(root.join("hl/one"), root.join("hl/sub/three")).unwrap();
    write_file(&root.join("pair-a"), b"pair\n");
    fs::hard_link(root.join("pair-a"), root.join("pair-b")).unwrap();
    // Extended attributes, text and binary, on a file, a hard-linked file and a directory.
    xattr::set(root.join("plain.txt"), "user.text", b"hello world").unwrap();
    xattr::set(root.join("plain.txt"), "user.binary", &[0, 0xff, 0x80, 10, 0]).unwrap();
    xattr::set(root.join("plain.txt"), "user.empty", b"").unwrap();
    xattr::set(root.join("hl/one"), "user.linked", b"shared by all names").unwrap();
    xattr::set(root.join("hl"), "user.dir", b"on a directory").unwrap();
    // Special names.
    write_file(&root.join("names/new\nline.txt"), b"newline\n");
    write_file(&root.join("names/with space"), b"space\n");
    write_file(&root.join(OsStr::from_bytes(b"names/bad\xffdir/f\xfe\x01")), b"bytes\n");
    // A sparse file: three 4 KiB blocks of data in 64 MiB.
    let f = fs::File::create(root.join("sparse.img")).unwrap();
    f.set_len(SPARSE_LEN).unwrap();
    for off in [0, 20 << 20, SPARSE_LEN - 4096] {
        f.write_all_at(&random_bytes(off, 4096), off).unwrap();
    }
    drop(f);
    // Empty directories, symlinks (dangling too).
    fs::create_dir_all(root.join("empty/nested-empty")).unwrap();
    symlink("plain.txt", root.join("link-rel")).unwrap();
    symlink("/no/such/target", root.join("link-dangling")).unwrap();
    // Owners (root only: chown before chmod, which it would clear).
    if is_root() {
        for p in ["plain.txt", "hl/one", "hl", "names"] {
            std::os::unix::fs::lchown(root.join(p), Some(1234), Some(5678)).unwrap();
        }
        std::os::unix::fs::lchown(root.join("link-rel"), Some(4321), Some(8765)).unwrap();
    }
    // Modes, with setuid, setgid and sticky bits.
    write_file(&root.join("modes/suid"), b"#!/bin/sh\n");
    write_file(&root.join("modes/sgid"), b"#!/bin/sh\n");
    write_file(&root.join("modes/none"), b"nobody reads me\n");
    write_file(&root.join("modes/ro/inside"), b"in a read-only dir\n");
    fs::create_dir_all(root.join("modes/sticky")).unwrap();
    chmod(&root.join("modes/suid"), 0o4755);
    chmod(&root.join("modes/sgid"), 0o2711);
    chmod(&root.join("modes/none"), 0o000);
    chmod(&root.join("modes/sticky"), 0o1777);
    chmod(&root.join("modes/ro"), 0o555);
    set_mtimes(&root);
    root
}

fn allocated(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks() * 512
}

#[test]
fn full_metadata_round_trips() {
    let repo = Repo::init();
    let src = repo.scratch("src");
    let root = build_tree(&src);
    let expected = describe(&root);
    assert_eq!(expected[&b"meta/hl/two"[..]].links, Some((3, b"meta/hl/one".to_vec())));
    assert!(expected[&b"meta/plain.txt"[..]].xattrs.len() == 3, "the fixture needs xattr support");

    let v = repo.backup_paths(&[&root]);
    assert_eq!(v["partial"], false, "{v}");
    let target = repo.scratch("restore");
    let out = repo.restore_target(text(&v, "snapshot_id"), &target, &[]).ok();
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    let got = describe(&target.join("meta"));
    assert_same_tree(&expected, &got);

    let one = fs::metadata(target.join("meta/hl/one")).unwrap();
    assert_eq!(one.ino(), fs::metadata(target.join("meta/hl/sub/three")).unwrap().ino());
    assert_eq!(one.nlink(), 3);
    if is_root() {
        assert_eq!((one.uid(), one.gid()), (1234, 5678));
    }
    assert_eq!(fs::metadata(target.join("meta/modes/suid")).unwrap().mode() & 0o7777, 0o4755);

    let (orig, restored) = (allocated(&root.join("sparse.img")), allocated(&target.join("meta/sparse.img")));
    assert!(orig < 1 << 20, "the fixture is not sparse here ({orig} bytes allocated)");
    assert!(restored <= orig + (64 << 10), "sparse file restored with {restored} bytes allocated (original {orig})");
    assert_eq!(fs::metadata(target.join("meta/sparse.img")).unwrap().len(), SPARSE_LEN);
}

/// Back up with extra CLI arguments; returns the JSON (asserting success).
fn backup_with(repo: &Repo, root: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args: Vec<&OsStr> = vec![OsStr::new("--json"), OsStr::new("backup")];
    args.extend(extra.iter().map(OsStr::new));
    args.push(root.as_os_str());
    repo.run(args).ok().json()
}

fn restored_names(repo: &Repo, v: &serde_json::Value, name: &str) -> Vec<String> {
    let target = repo.scratch(name);
    repo.restore_target(text(v, "snapshot_id"), &target, &[]).ok();
    let mut all = Vec::new();
    collect(&target, Vec::new(), &mut all);
    let mut names: Vec<String> =
        all.into_iter().skip(1).map(|(rel, _, _)| String::from_utf8_lossy(&rel[1..]).into_owned()).collect();
    names.sort();
    names
}

#[test]
fn excludes_by_glob_and_cache_tags() {
    let repo = Repo::init();
    let root = repo.scratch("src").join("ex");
    for f in ["keep.txt", "a.tmp", "sub/b.tmp", "sub/keep.md", "node_modules/x.js", "logs/app.log", "sub/logs/kept.log"]
    {
        write_file(&root.join(f), f.as_bytes());
    }
    let mut tag = b"Signature: 8a477f597d28d172789f06886806bc55".to_vec();
    tag.extend_from_slice(b"\n# This file is a cache directory tag.\n");
    write_file(&root.join("cache-valid/CACHEDIR.TAG"), &tag);
    write_file(&root.join("cache-valid/blob"), b"cached");
    write_file(&root.join("cache-invalid/CACHEDIR.TAG"), b"Signature: 0000000000000000000000000000000\n");
    write_file(&root.join("cache-invalid/blob"), b"not a cache");
    let anchored = format!("{}/logs", root.display());
    let v = backup_with(
        &repo,
        &root,
        &["--exclude", "*.tmp", "--exclude", "node_modules", "--exclude", &anchored, "--exclude-caches"],
    );
    assert_eq!(v["partial"], false);
    let names = restored_names(&repo, &v, "r1");
    assert_eq!(
        names,
        [
            "ex",
            "ex/cache-invalid",
            "ex/cache-invalid/CACHEDIR.TAG",
            "ex/cache-invalid/blob",
            "ex/keep.txt",
            "ex/sub",
            "ex/sub/keep.md",
            "ex/sub/logs",
            "ex/sub/logs/kept.log"
        ]
    );
    // Without options everything is kept.
    let all = restored_names(&repo, &backup_with(&repo, &root, &[]), "r2");
    assert_eq!(all.len(), 18, "{all:?}");
    // A bad pattern is a usage error before anything happens.
    let out = repo.run(["backup", "--exclude", "a[", root.to_str().unwrap()]).expect_code(2);
    assert!(out.stderr.contains("a["), "{}", out.stderr);
}

/// A tmpfs mounted inside the tree, unmounted on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn one_file_system_keeps_mount_points_empty() {
    let repo = Repo::init();
    let root = repo.scratch("src").join("fs");
    write_file(&root.join("here.txt"), b"same fs");
    let mnt = root.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let ok = std::process::Command::new("mount").args(["-t", "tmpfs", "drtool-test"]).arg(&mnt).status();
    if !matches!(ok, Ok(s) if s.success()) {
        assert!(std::env::var_os("CI").is_none(), "mount -t tmpfs failed, and CI needs this test");
        eprintln!("skipping: cannot mount a tmpfs here (not root?)");
        return;
    }
    let _mount = Mount(mnt.clone());
    write_file(&mnt.join("other.txt"), b"other fs");
    let v = backup_with(&repo, &root, &["--one-file-system"]);
    assert_eq!(restored_names(&repo, &v, "r1"), ["fs", "fs/here.txt", "fs/mnt"]);
    let v = backup_with(&repo, &root, &[]);
    assert_eq!(restored_names(&repo, &v, "r2"), ["fs", "fs/here.txt", "fs/mnt", "fs/mnt/other.txt"]);
}

/// Root reads everything, so as root drtool runs as nobody (65534) and the
/// entries to skip belong to root with mode 0600/0700; otherwise mode 000.
#[test]
fn unreadable_entries_make_a_partial_snapshot_with_exit_3() {
    let repo = Repo::init();
    let root = repo.scratch("src").join("part");
    write_file(&root.join("ok/one.txt"), b"one");
    write_file(&root.join("two.txt"), b"two");
    write_file(&root.join("secret.txt"), b"secret");
    write_file(&root.join("locked/inside.txt"), b"inside");
    let as_root = is_root();
    if as_root {
        let st = std::process::Command::new("chown").args(["-R", "65534:65534"]).arg(repo.dir.path()).status();
        assert!(st.unwrap().success());
        chmod(repo.dir.path(), 0o755);
        for p in ["secret.txt", "locked"] {
            std::os::unix::fs::chown(root.join(p), Some(0), Some(0)).unwrap();
        }
        chmod(&root.join("secret.txt"), 0o600);
        chmod(&root.join("locked"), 0o700);
    } else {
        chmod(&root.join("secret.txt"), 0o000);
        chmod(&root.join("locked"), 0o000);
    }
    let mut cmd = repo.cmd([OsStr::new("--json"), OsStr::new("backup"), root.as_os_str()]);
    if as_root {
        cmd.uid(65534).gid(65534);
    }
    let out = run_with_input(cmd, None).expect_code(3);
    let v = out.json();
    assert_eq!(v["partial"], true, "{v}");
    let warnings = v["warnings"].to_string();
    for p in ["secret.txt", "locked"] {
        assert!(warnings.contains(&root.join(p).display().to_string()), "{p} not named: {warnings}");
        assert!(out.stderr.contains(&format!("could not read {}", root.join(p).display())), "{}", out.stderr);
    }
    assert_eq!(repo.snapshots().last().unwrap()["partial"], true);
    if !as_root {
        chmod(&root.join("locked"), 0o755);
    }
    assert_eq!(restored_names(&repo, &v, "r"), ["part", "part/ok", "part/ok/one.txt", "part/two.txt"]);
}

#[test]
fn restore_include_and_dry_run() {
    let repo = Repo::init();
    let root = repo.scratch("src").join("sel");
    write_file(&root.join("a/x.txt"), b"x");
    write_file(&root.join("a/deep/y.txt"), b"y");
    write_file(&root.join("b/z.txt"), b"z");
    write_file(&root.join("a/first"), b"linked content");
    fs::hard_link(root.join("a/first"), root.join("b/second")).unwrap();
    let v = repo.backup_paths(&[&root]);
    let id = text(&v, "snapshot_id");

    // Dry run: lists, writes nothing.
    let target = repo.dir.path().join("never-created");
    let out = repo.restore_target(id, &target, &["--dry-run"]).ok();
    assert!(!target.exists(), "a dry run created the target");
    let listing = out.stdout_str();
    assert!(listing.contains(&format!("{}", target.join("sel/a/deep/y.txt").display())), "{listing}");
    assert!(listing.contains("hardlink"), "{listing}");
    assert!(listing.contains("nothing was written"), "{listing}");
    let args = ["--json", "restore", id, "--target", target.to_str().unwrap(), "--dry-run"];
    let json = repo.run(args).ok().json();
    assert_eq!(json["summary"]["planned"].as_array().unwrap().len(), 9, "{json}");
    assert!(!target.exists());

    // --include by original path: the subtree and its parent directories only.
    let t1 = repo.scratch("t1");
    let inc = root.join("a/deep").display().to_string();
    repo.restore_target(id, &t1, &["--include", &inc]).ok();
    let mut got = Vec::new();
    collect(&t1, Vec::new(), &mut got);
    let mut names: Vec<String> =
        got.iter().skip(1).map(|(r, _, _)| String::from_utf8_lossy(&r[1..]).into_owned()).collect();
    names.sort();
    assert_eq!(names, ["sel", "sel/a", "sel/a/deep", "sel/a/deep/y.txt"]);

    // --include by restored path; a hard link whose first name is left out gets the content.
    let t2 = repo.scratch("t2");
    repo.restore_target(id, &t2, &["--include", "sel/b"]).ok();
    assert_eq!(fs::read(t2.join("sel/b/second")).unwrap(), b"linked content");
    assert!(!t2.join("sel/a").exists());

    // An include that matches nothing is an error, before anything is written.
    let t3 = repo.dir.path().join("t3");
    let out = repo.restore_target(id, &t3, &["--include", "/no/such/path"]).expect_code(2);
    assert!(out.stderr.contains("/no/such/path"), "{}", out.stderr);
    assert!(!t3.exists());
}

/// A crafted snapshot holding `t/a -> <outside>` and then the file `t/a/passwd`:
/// restore must refuse, and nothing may appear outside the target.
#[test]
fn symlink_escape_in_a_crafted_snapshot_is_refused() {
    use drtool::repo::Repository;
    use drtool::repo::snapshot::Item;
    use drtool::repo::tree::{Node, NodeKind, RawPath};
    use drtool::repo::writer::{BackupWriter, WriterOptions};
    use std::sync::Arc;

    let repo = Repo::init();
    let seed = repo.scratch("seed");
    write_file(&seed.join("f"), b"f");
    repo.backup_paths(&[&seed]);
    let outside = repo.scratch("outside");
    let node = |path: &str, kind, target: Option<&[u8]>| Node {
        path: RawPath(path.as_bytes().to_vec()),
        kind,
        mode: 0o755,
        target: target.map(|t| RawPath(t.to_vec())),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let id = rt.block_on(async {
        let store: drtool::store::DynStore = Arc::new(drtool::store::LocalStore::new(repo.path.clone()));
        let r = Arc::new(Repository::open(store, PASSWORD.as_bytes()).await.unwrap());
        let base = r.find_snapshot("latest", None).await.unwrap();
        let index = Arc::new(r.load_index().await.unwrap());
        let (writer, feeder) = BackupWriter::start(r.clone(), index, &WriterOptions::default()).unwrap();
        let out = outside.as_os_str().as_bytes().to_vec();
        let (feeder, meta, content) = tokio::task::spawn_blocking(move || {
            let mut feeder = feeder;
            let (content, _) = feeder.write_stream(&b"pwned\n"[..]).unwrap();
            let mut passwd = node("t/a/passwd", NodeKind::File, None);
            (passwd.size, passwd.chunks) = (content.size, content.chunks.clone());
            let mut meta = Vec::new();
            for n in [node("t", NodeKind::Dir, None), node("t/a", NodeKind::Symlink, Some(&out)), passwd] {
                serde_json::to_writer(&mut meta, &n).unwrap();
                meta.push(b'\n');
            }
            let (meta, _) = feeder.write_stream(&meta[..]).unwrap();
            (feeder, meta, content)
        })
        .await
        .unwrap();
        writer.commit(feeder).await.unwrap();
        let mut m = base.manifest.clone();
        m.items = vec![Item::Tree {
            root: "/crafted/t".into(),
            files: 1,
            dirs: 1,
            size: content.size,
            meta_size: meta.size,
            meta_chunks: meta.chunks,
        }];
        let held = drtool::repo::lock::acquire(&r, false, "crafted backup").await.unwrap();
        let id = r.save_snapshot(&m, &held).await.unwrap();
        held.release().await.unwrap();
        id
    });
    let target = repo.scratch("restore");
    let out = repo.restore_target(&id.to_string(), &target, &[]);
    assert_ne!(out.code(), Some(0), "restore through a symlink succeeded: {}", out.stderr);
    assert!(out.stderr.contains("unsafe"), "{}", out.stderr);
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "restore wrote outside the target");
    assert_eq!(fs::read_link(target.join("t/a")).unwrap(), outside, "the symlink itself is restored");
}

#[test]
fn incremental_backup_reads_only_what_changed() {
    let repo = Repo::init();
    let root = repo.scratch("src").join("inc");
    let mut total = 0u64;
    for i in 0..40u64 {
        let len = 30_000 + i as usize * 101;
        write_file(&root.join(format!("d{}/f{i}.bin", i % 4)), &random_bytes(i, len));
        total += len as u64;
    }
    fs::hard_link(root.join("d0/f0.bin"), root.join("d1/link-to-f0")).unwrap();
    xattr::set(root.join("d2/f2.bin"), "user.tag", b"v1").unwrap();
    let first = repo.backup_paths(&[&root]);
    assert_eq!(num(&first, "summary.bytes_unchanged"), 0);

    // Unchanged: nothing but the tree metadata is read.
    let second = repo.backup_paths(&[&root]);
    assert_eq!(num(&second, "summary.bytes_unchanged"), total, "{second}");
    assert!(num(&second, "summary.bytes_read") < 32 << 10, "{second}");
    assert_eq!(num(&second, "summary.chunks_new"), 0, "{second}");

    // One file rewritten: only it is read.
    let changed = random_bytes(1000, 30_101);
    write_file(&root.join("d1/f1.bin"), &changed);
    let third = repo.backup_paths(&[&root]);
    assert_eq!(num(&third, "summary.bytes_unchanged"), total - 30_101, "{third}");
    let read = num(&third, "summary.bytes_read");
    assert!((30_101..30_101 + (32 << 10)).contains(&read), "{third}");

    // An xattr change moves ctime: the file is read again and the new value restored.
    xattr::set(root.join("d2/f2.bin"), "user.tag", b"v2").unwrap();
    let fourth = repo.backup_paths(&[&root]);
    assert_eq!(num(&fourth, "summary.bytes_unchanged"), total - (30_000 + 2 * 101), "{fourth}");
    let target = repo.scratch("restore");
    repo.restore_target(text(&fourth, "snapshot_id"), &target, &[]).ok();
    assert_eq!(xattr::get(target.join("inc/d2/f2.bin"), "user.tag").unwrap().unwrap(), b"v2");
    assert_eq!(fs::read(target.join("inc/d1/f1.bin")).unwrap(), changed);
    let a = fs::metadata(target.join("inc/d0/f0.bin")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (fs::metadata(target.join("inc/d1/link-to-f0")).unwrap().ino(), 2));
}
