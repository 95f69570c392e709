//! Nothing readable leaks into the store: no plaintext, file name, stream
//! name, tag, command line or plain hash of content (DESIGN.md principle 3).
//! Run on a local repository (every file under its directory) and on Garage
//! (every object's name and bytes under the repository prefix, read through S3;
//! Garage's own data directory stores blocks in its own format).

mod common;

use common::*;
use std::ffi::OsStr;
use std::path::Path;

const MARKER: &str = "DRTOOL-MARKER-7f3a9c";
const FILE_NAME: &str = "DRTOOL-FILENAME-c41d2e.sql";
const DIR_NAME: &str = "DRTOOL-DIRNAME-90be13";
const STREAM_NAME: &str = "DRTOOL-STREAMNAME-5a7d0f";
const CMD_NAME: &str = "DRTOOL-CMDSTREAM-e2f816";
const TAG: &str = "DRTOOL-TAG-3c9b44";

/// Text with the marker many times, mixed with dump-like lines.
fn marked_text(lines: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..lines {
        v.extend_from_slice(format!("INSERT INTO secrets VALUES ({i}, '{MARKER}', 'row {i}');\n").as_bytes());
    }
    v
}

/// Every stored name (relative to the repository) with its bytes: on a local
/// repository every file, temp files included; on S3 every object under the prefix.
fn everything_stored(repo: &Repo) -> Vec<(Vec<u8>, Vec<u8>)> {
    let all: Vec<(Vec<u8>, Vec<u8>)> = match repo.backend() {
        Backend::Local => repo
            .files()
            .into_iter()
            .map(|path| {
                let rel = path.strip_prefix(&repo.path).unwrap();
                let rel_bytes = std::os::unix::ffi::OsStrExt::as_bytes(rel.as_os_str()).to_vec();
                (rel_bytes, std::fs::read(&path).unwrap())
            })
            .collect(),
        Backend::Garage(_) => {
            repo.objects("").into_iter().map(|(name, _)| (name.as_bytes().to_vec(), repo.read_object(&name))).collect()
        }
    };
    // The scan sees the whole repository, not an empty listing.
    for dir in ["config", "keys/", "snapshots/"] {
        assert!(all.iter().any(|(n, _)| n.starts_with(dir.as_bytes())), "no {dir} object in the scan");
    }
    all
}

fn all_occurrences(stored: &[(Vec<u8>, Vec<u8>)], needles: &[(&str, Vec<u8>)]) -> Vec<String> {
    let mut found = Vec::new();
    for (rel, data) in stored {
        let shown = String::from_utf8_lossy(&rel);
        for (what, needle) in needles {
            if contains(rel, needle) {
                found.push(format!("{what} in the name {shown}"));
            }
            if contains(data, needle) {
                found.push(format!("{what} in the contents of {shown}"));
            }
        }
    }
    found
}

fn markers_names_and_plain_hashes_never_reach_the_store(b: Backend) {
    let repo = Repo::init_on(b);
    let src = repo.scratch("src");

    // A tree with the marker in file contents, a file name and a directory name.
    let root = src.join(DIR_NAME);
    write_file(&root.join(FILE_NAME), &marked_text(20_000));
    write_file(&root.join("small.txt"), format!("{MARKER}\n").repeat(40).as_bytes());
    write_file(&root.join("nested").join(format!("{MARKER}.txt")), b"named after the marker\n");
    std::os::unix::fs::symlink(format!("../{FILE_NAME}"), root.join("nested/link")).unwrap();
    let mut args = vec!["backup", "--tag", TAG];
    let root_str = root.to_str().unwrap().to_string();
    args.push(&root_str);
    repo.run(args).ok();

    // A stdin stream, stored with compression off, so only encryption can hide it.
    let stream = marked_text(50_000);
    repo.run_input(
        ["backup", "--compression", "0", "--stdin", "--name", STREAM_NAME, "--tag", TAG],
        std::io::Cursor::new(stream.clone()),
    )
    .ok();

    // A command stream whose command line names the marker file.
    let file = root.join(FILE_NAME);
    repo.backup_command(CMD_NAME, &[OsStr::new("cat"), file.as_os_str()]);
    assert_eq!(repo.snapshots().len(), 3);

    // A whole small file is one chunk: its plain (unkeyed) BLAKE3 must not appear either.
    let small = std::fs::read(root.join("small.txt")).unwrap();
    let plain_hash = blake3::hash(&small);
    let stream_hash = blake3::hash(&stream);

    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("content marker", MARKER.as_bytes().to_vec()),
        ("content marker (lowercase)", MARKER.to_lowercase().into_bytes()),
        ("file name", FILE_NAME.as_bytes().to_vec()),
        ("file name stem", b"FILENAME-c41d2e".to_vec()),
        ("directory name", DIR_NAME.as_bytes().to_vec()),
        ("stream name", STREAM_NAME.as_bytes().to_vec()),
        ("command stream name", CMD_NAME.as_bytes().to_vec()),
        ("tag", TAG.as_bytes().to_vec()),
        ("content line", b"INSERT INTO secrets".to_vec()),
        ("plain BLAKE3 of a file (binary)", plain_hash.as_bytes().to_vec()),
        ("plain BLAKE3 of a file (hex)", plain_hash.to_hex().as_bytes().to_vec()),
        ("plain BLAKE3 of the stream (hex)", stream_hash.to_hex().as_bytes().to_vec()),
        ("source directory path", repo.dir.path().to_str().unwrap().as_bytes().to_vec()),
    ];
    // The search itself works: it finds the marker in the source tree.
    assert!(contains(&std::fs::read(&file).unwrap(), MARKER.as_bytes()));
    let stored = everything_stored(&repo);
    for dir in ["data/", "index/"] {
        assert!(stored.iter().any(|(n, _)| n.starts_with(dir.as_bytes())), "no {dir} object in the scan");
    }
    let found = all_occurrences(&stored, &needles);
    assert!(found.is_empty(), "plaintext leaked into the repository:\n{}", found.join("\n"));

    // The data really is in there: everything restores with the password.
    let target = repo.scratch("restore");
    repo.restore_target("latest", &target, &["--name", STREAM_NAME]).ok();
    assert!(std::fs::read(target.join(STREAM_NAME)).unwrap() == stream);
    let listed = repo.snapshots();
    assert!(listed.iter().any(|s| s["name"] == STREAM_NAME && s["tags"][0] == TAG), "{listed:?}");
    let tree_target = repo.scratch("tree-restore");
    let tree_id = listed.iter().find(|s| s["source"] == "paths").unwrap()["id"].as_str().unwrap().to_string();
    repo.restore_target(&tree_id, &tree_target, &[]).ok();
    assert!(Path::new(&tree_target.join(DIR_NAME).join("nested").join(format!("{MARKER}.txt"))).is_file());
}

fn repository_without_password_reveals_no_names(b: Backend) {
    // A repository holding only names (empty streams): even those must not appear.
    let repo = Repo::init_on(b);
    repo.backup_stdin(STREAM_NAME, b"");
    let found = all_occurrences(&everything_stored(&repo), &[("stream name", STREAM_NAME.as_bytes().to_vec())]);
    assert!(found.is_empty(), "{found:?}");
    // And with another password nothing opens.
    let out = repo.run_pw("not the password", ["snapshots"]).expect_code(12);
    assert!(!out.stdout_str().contains(STREAM_NAME));
}

backend_tests! {
    markers_names_and_plain_hashes_never_reach_the_store,
    repository_without_password_reveals_no_names,
}
