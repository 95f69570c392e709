//! 1 GiB all-zero and highly compressible streams restore byte-identical
//! (the 1 GiB random/mixed case is in dedup.rs). Compared by BLAKE3 while
//! streaming, so nothing of 1 GiB is held in memory.

mod common;

use common::Repo;
use std::io::Read;
use std::process::Stdio;

const GIB: u64 = 1 << 30;

fn hash_of_command(script: &str) -> (blake3::Hash, u64) {
    let mut child =
        std::process::Command::new("sh").args(["-c", script]).stdout(Stdio::piped()).spawn().expect("generator");
    let (h, n) = hash_reader(child.stdout.take().expect("stdout"));
    assert!(child.wait().unwrap().success());
    (h, n)
}

fn hash_reader(mut r: impl Read) -> (blake3::Hash, u64) {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    (h.finalize(), n)
}

fn round_trip(script: &str) {
    let repo = Repo::init();
    let out = repo.run(["--json", "backup", "--name", "big", "--", "sh", "-c", script]).ok().json();
    assert_eq!(common::num(&out, "summary.bytes_read"), GIB);
    let mut child =
        repo.cmd(["restore", "latest", "--stdout"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let restored = hash_reader(child.stdout.take().unwrap());
    assert!(child.wait().unwrap().success());
    assert_eq!(restored, hash_of_command(script));
}

#[test]
fn gib_of_zeros_round_trips() {
    round_trip("head -c 1073741824 /dev/zero");
}

#[test]
fn gib_of_compressible_text_round_trips() {
    round_trip("yes \"INSERT INTO orders VALUES (42,'widget',19.99,'2026-11-22');\" | head -c 1073741824");
}
