//! Tree restores read chunks by pack, many files at a time
//! (repo/restore_plan.rs, job/restore_batch.rs): many small files, large
//! multi-chunk files, files sharing chunks, sparse and empty files come back
//! byte for byte with their mtimes on both backends; a damaged pack still
//! fails the restore with exit 4 and leaves no wrong file behind; and against
//! S3 a restore no longer costs one request per file (counted by the Garage
//! server itself, so the test asserts no timing).

mod common;

use common::garage::GarageEnv;
use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Every regular file below `root` (relative path -> content).
fn files_below(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// `count` small files (2-4 KB, every 37th empty, every 50th a twin of the previous one) in 5 dirs.
fn small_files(root: &Path, count: usize, seed: u64) {
    let mut rng = Prng::new(seed);
    let mut last = Vec::new();
    for i in 0..count {
        let data = if i % 37 == 0 {
            Vec::new()
        } else if i % 50 == 1 {
            last.clone()
        } else {
            let len = 2000 + rng.below(2000) as usize;
            rng.bytes(len)
        };
        write_file(&root.join(format!("d{}/f{i:04}", i % 5)), &data);
        last = data;
    }
}

fn mixed_tree_restores_byte_for_byte(b: Backend) {
    let repo = Repo::init_on(b);
    let root = repo.scratch("src").join("vol");
    small_files(&root, 600, 1);
    let big = random_bytes(2, 9 * MIB + 123);
    write_file(&root.join("big.bin"), &big);
    // Same content: every chunk is shared with big.bin.
    write_file(&root.join("copy/big-again.bin"), &big);
    // Data, a long zero run (holes on restore) and an unaligned tail of zeros.
    let mut sparse = random_bytes(3, 3 * MIB + 5);
    sparse.extend(std::iter::repeat_n(0u8, 5 * MIB));
    sparse.extend(random_bytes(4, 100));
    sparse.extend(std::iter::repeat_n(0u8, 1000));
    write_file(&root.join("sparse.bin"), &sparse);
    write_file(&root.join("empty"), b"");
    std::fs::hard_link(root.join("big.bin"), root.join("hard.bin")).unwrap();
    let v = repo.backup_paths(&[&root]);

    let target = repo.scratch("restore");
    let out = repo.restore_target(text(&v, "snapshot_id"), &target, &["--json"]).ok();
    let summary = &out.json()["summary"];
    let restored = target.join("vol");
    let (want, got) = (files_below(&root), files_below(&restored));
    assert_eq!(want.len(), 600 + 5);
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
    for (path, data) in &want {
        assert!(got[path] == *data, "{} differs after restore", path.display());
        let (src, dst) = (std::fs::metadata(root.join(path)).unwrap(), std::fs::metadata(restored.join(path)).unwrap());
        assert_eq!((src.mtime(), src.mtime_nsec()), (dst.mtime(), dst.mtime_nsec()), "{}", path.display());
    }
    assert_eq!(num(summary, "files"), 600 + 4, "{summary}");
    assert_eq!(num(summary, "hardlinks"), 1, "{summary}");
    let (a, h) =
        (std::fs::metadata(restored.join("big.bin")).unwrap(), std::fs::metadata(restored.join("hard.bin")).unwrap());
    assert_eq!(a.ino(), h.ino(), "the hard link is restored as a hard link");
    let s = std::fs::metadata(restored.join("sparse.bin")).unwrap();
    assert!(s.blocks() * 512 < sparse.len() as u64 - 4 * MIB as u64, "the zero run is a hole: {} blocks", s.blocks());
}

/// Flip one byte in every KiB of an object: every blob in it is damaged.
fn damage_everywhere(repo: &Repo, name: &str) {
    let mut data = repo.read_object(name);
    for at in (100..data.len()).step_by(1000) {
        data[at] ^= 0x55;
    }
    repo.write_object(name, data);
}

fn damaged_pack_of_small_files_fails_and_leaves_no_wrong_file(b: Backend) {
    let repo = Repo::init_on(b);
    let root = repo.scratch("src").join("vol");
    small_files(&root, 300, 5);
    repo.backup_paths(&[&root]);
    let content_packs = repo.pack_objects();
    // A second snapshot whose metadata lives in a new pack and whose file contents
    // are all in the first backup's packs.
    write_file(&root.join("extra.txt"), b"extra\n");
    let v = repo.backup_paths(&[&root]);
    assert!(repo.pack_objects().len() > content_packs.len());
    for (p, _) in &content_packs {
        damage_everywhere(&repo, p);
    }
    let target = repo.scratch("restore");
    let out = repo.restore_target(text(&v, "snapshot_id"), &target, &[]).expect_code(4);
    assert!(out.stderr.contains("damaged"), "{}", out.stderr);
    let want = files_below(&root);
    for (path, data) in files_below(&target.join("vol")) {
        assert!(want.get(&path) == Some(&data), "{} was left behind with wrong content", path.display());
    }
}

/// A restore that fails on a later file (a directory in the way) must not
/// leave the files created for a batch still waiting for their content.
fn failure_before_a_batch_is_filled_leaves_no_empty_files(b: Backend) {
    let repo = Repo::init_on(b);
    let root = repo.scratch("src").join("vol");
    small_files(&root, 300, 6);
    let v = repo.backup_paths(&[&root]);
    let target = repo.scratch("restore");
    std::fs::create_dir_all(target.join("vol/d4/f0299/in-the-way")).unwrap();
    let out = repo.restore_target(text(&v, "snapshot_id"), &target, &[]);
    assert!(!out.status.success(), "the directory in the way must fail the restore");
    let want = files_below(&root);
    let got = files_below(&target.join("vol"));
    for (path, data) in got {
        assert!(want.get(&path) == Some(&data), "{} was left behind with wrong content", path.display());
    }
}

backend_tests! {
    mixed_tree_restores_byte_for_byte,
    damaged_pack_of_small_files_fails_and_leaves_no_wrong_file,
    failure_before_a_batch_is_filled_leaves_no_empty_files,
}

/// GetObject requests the Garage server has answered so far (its Prometheus metrics).
fn garage_gets(g: &GarageEnv) -> u64 {
    let port = g.vars.iter().find(|(k, _)| k == "GARAGE_ADMIN_PORT").map(|(_, v)| v.clone()).expect("admin port");
    let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).expect("garage admin port");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("api_s3_request_counter{api_endpoint=\"GetObject\"} "))
        .map_or(0, |n| n.trim().parse().expect("counter"))
}

/// Before restores were planned by pack, every small file cost its own GET
/// (each ~44 ms against Garage on loopback: the server's Nagle algorithm
/// holding the body until our delayed ACK).
#[test]
fn s3_tree_restore_does_not_cost_a_request_per_file() {
    if common::garage::shared().is_none() {
        return;
    }
    // A private server: no other test's requests are counted.
    let g: &'static GarageEnv = Box::leak(Box::new(GarageEnv::private()));
    let repo = Repo::init_on(Backend::Garage(g));
    let root = repo.scratch("src").join("vol");
    small_files(&root, 400, 9);
    let v = repo.backup_paths(&[&root]);
    let target = repo.scratch("restore");
    let before = garage_gets(g);
    repo.restore_target(text(&v, "snapshot_id"), &target, &[]).ok();
    let gets = garage_gets(g) - before;
    assert_eq!(files_below(&root), files_below(&target.join("vol")));
    assert!(gets < 100, "restoring 400 small files took {gets} GET requests");
}
