//! MongoDB against a real server: needs `mongod`, `mongodump` and
//! `mongorestore` on PATH, which the build machines cannot install. Ignored by
//! default (so never counted as passed); run where they exist with
//! `cargo test --release --test mongodb_live -- --ignored`.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
#[ignore = "needs mongod, mongodump and mongorestore on PATH"]
fn live_backup_and_renamed_restore() {
    for tool in ["mongod", "mongodump", "mongorestore"] {
        assert!(Command::new(tool).arg("--version").output().is_ok(), "{tool} is not on PATH");
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Command::new("mongod")
        .args(["--dbpath"])
        .arg(dir.path())
        .args(["--bind_ip", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("mongodb://127.0.0.1:{port}/");
    assert!(
        wait_until(Duration::from_secs(60), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "mongod did not start"
    );
    // Load a real archive as the data to protect.
    let fixture =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/mongodump/test.bar.archive");
    let st = Command::new("mongorestore")
        .arg(format!("--uri={url}"))
        .arg(format!("--archive={}", fixture.display()))
        .status();
    assert!(st.unwrap().success());

    let repo = Repo::init();
    repo.run(["backup", "--source", &format!("{url}test"), "--name", "live"]).ok();
    let m = repo.run(["--json", "show", "latest"]).ok().json();
    assert_eq!(m["fingerprints"]["counts"]["test.bar"], 1);
    repo.run(["restore", "latest", "--to", &url, "--rename", "test_copy", "--yes"]).ok();
    // Dump the copy through drtool again: the same documents under the new name.
    repo.run(["backup", "--source", &format!("{url}test_copy"), "--name", "copy"]).ok();
    let m = repo.run(["--json", "show", "latest", "--name", "copy"]).ok().json();
    assert_eq!(m["fingerprints"]["counts"]["test_copy.bar"], 1);
    let _ = server.kill();
    let _ = server.wait();
}
