//! File trees restore identical: contents, kinds, symlink targets, modes and
//! nanosecond mtimes, including odd names (unicode, non-UTF-8 bytes).
//! Every test runs on a local directory (`local::`) and on Garage (`garage::`).

mod common;

use common::*;
use filetime::FileTime;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

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
    /// Permission bits; `None` for symlinks (always 0777 on Linux).
    mode: Option<u32>,
    mtime: (i64, i64),
}

/// Every entry under (and including) `root`, keyed by its path bytes relative to `root`'s parent.
fn describe(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut out = BTreeMap::new();
    let name = root.file_name().unwrap().as_bytes().to_vec();
    visit(root, name, &mut out);
    out
}

fn visit(path: &Path, rel: Vec<u8>, out: &mut BTreeMap<Vec<u8>, Entry>) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
        Kind::Symlink(fs::read_link(path).unwrap().as_os_str().as_bytes().to_vec())
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        let (h, len) = hash_reader(fs::File::open(path).unwrap());
        Kind::File(h, len)
    } else {
        panic!("unexpected file type at {}", path.display());
    };
    let mode = if ft.is_symlink() { None } else { Some(m.mode() & 0o7777) };
    out.insert(rel.clone(), Entry { kind, mode, mtime: (m.mtime(), m.mtime_nsec()) });
    if ft.is_dir() {
        for e in fs::read_dir(path).unwrap() {
            let e = e.unwrap();
            let mut child = rel.clone();
            child.push(b'/');
            child.extend_from_slice(e.file_name().as_bytes());
            visit(&e.path(), child, out);
        }
    }
}

fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = FileTime::from_unix_time(secs, nanos);
    if fs::symlink_metadata(path).unwrap().file_type().is_symlink() {
        filetime::set_symlink_file_times(path, t, t).unwrap();
    } else {
        filetime::set_file_times(path, t, t).unwrap();
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Build the test tree under `parent/data` and return its root.
fn build_tree(parent: &Path) -> PathBuf {
    let root = parent.join("data");
    let bad_name = OsStr::from_bytes(b"bad\xffname.bin");
    let files: Vec<(PathBuf, Vec<u8>)> = vec![
        (root.join("a/b/c/deep.txt"), b"deep file\n".to_vec()),
        (root.join("a/b/sibling.sql"), sql_like(3, 200_000)),
        (root.join("big.bin"), random_bytes(42, 3 * MIB + 17)),
        (root.join("empty.txt"), Vec::new()),
        (root.join("café/日本語.txt"), "こんにちは, café\n".as_bytes().to_vec()),
        (root.join(bad_name), b"non-utf8 name\n".to_vec()),
        (root.join("private.key"), b"secret-ish\n".to_vec()),
        (root.join("run.sh"), b"#!/bin/sh\necho hi\n".to_vec()),
        (root.join("modes/group-read"), b"g\n".to_vec()),
    ];
    for (p, d) in &files {
        write_file(p, d);
    }
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::create_dir_all(root.join("links")).unwrap();
    symlink("../a/b/c/deep.txt", root.join("links/relative")).unwrap();
    symlink(root.join("big.bin"), root.join("links/absolute")).unwrap();
    symlink("does/not/exist", root.join("links/dangling")).unwrap();
    symlink("/nonexistent/absolute/target", root.join("links/dangling-absolute")).unwrap();
    symlink("../café", root.join("links/to-dir")).unwrap();

    chmod(&root.join("private.key"), 0o600);
    chmod(&root.join("run.sh"), 0o755);
    chmod(&root.join("modes/group-read"), 0o640);
    chmod(&root.join("modes"), 0o750);
    chmod(&root.join("empty-dir"), 0o711);

    // Distinct nanosecond mtimes on everything, deepest first so that setting
    // a child's time does not disturb its directory's (it does not, but be exact).
    let mut all: Vec<PathBuf> = Vec::new();
    collect_paths(&root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_600_000_000 + i as i64 * 3_601, 123_456_789 - i as u32 * 1_001);
    }
    root
}

fn collect_paths(p: &Path, out: &mut Vec<PathBuf>) {
    out.push(p.to_path_buf());
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap() {
            collect_paths(&e.unwrap().path(), out);
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

fn tree_round_trips_with_metadata(b: Backend) {
    let repo = Repo::init_on(b);
    let src = repo.scratch("src");
    let root = build_tree(&src);
    let expected = describe(&root);
    // Sanity: the fixture really has what the test claims to cover.
    assert!(expected.contains_key(&b"data/bad\xffname.bin"[..]));
    assert!(expected.contains_key("data/café/日本語.txt".as_bytes()));
    assert!(expected.values().any(|e| e.mtime.1 % 1000 != 0), "mtimes should have nanoseconds");
    assert_eq!(expected[&b"data/empty-dir"[..]].kind, Kind::Dir);

    let v = repo.backup_paths(&[&root]);
    assert_eq!(v["partial"], false, "{v}");
    let id = text(&v, "snapshot_id").to_string();
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(text(&snaps[0], "source"), "paths");

    let target = repo.scratch("restore");
    let out = repo.restore_target(&id, &target, &[]).ok();
    let entries: Vec<_> = fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, vec![OsStr::new("data").to_os_string()], "a tree of /x/y/data restores to DIR/data");
    assert_same_tree(&expected, &describe(&target.join("data")));
    assert!(out.stderr.contains("restored snapshot"), "{}", out.stderr);
    // The restore must not have touched the source.
    assert_same_tree(&expected, &describe(&root));
}

fn unchanged_tree_backs_up_without_new_data_and_changes_are_seen(b: Backend) {
    let repo = Repo::init_on(b);
    let src = repo.scratch("src");
    let root = src.join("t");
    write_file(&root.join("one.txt"), &random_bytes(1, 600_000));
    write_file(&root.join("sub/two.txt"), b"two\n");
    let first = repo.backup_paths(&[&root]);
    let second = repo.backup_paths(&[&root]);
    assert_eq!(num(&second, "summary.chunks_new"), 0, "an unchanged tree must add no chunks: {second}");
    assert_ne!(first["snapshot_id"], second["snapshot_id"]);

    // Same size, same mtime, different content: must still be read (never skipped on metadata).
    let p = root.join("sub/two.txt");
    let m = fs::metadata(&p).unwrap();
    write_file(&p, b"TWO\n");
    filetime::set_file_mtime(&p, FileTime::from_last_modification_time(&m)).unwrap();
    let third = repo.backup_paths(&[&root]);
    assert!(num(&third, "summary.chunks_new") >= 1, "changed content must be stored: {third}");
    let target = repo.scratch("restore");
    repo.restore_target(text(&third, "snapshot_id"), &target, &[]).ok();
    assert_eq!(fs::read(target.join("t/sub/two.txt")).unwrap(), b"TWO\n");
    assert_eq!(fs::read(target.join("t/one.txt")).unwrap(), random_bytes(1, 600_000));
}

backend_tests! {
    tree_round_trips_with_metadata,
    unchanged_tree_backs_up_without_new_data_and_changes_are_seen,
}
