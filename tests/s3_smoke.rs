//! A first end-to-end check against a real Garage server.

mod common;

use common::garage;
use std::process::Command;

#[test]
fn backup_restore_check_on_garage() {
    let Some(g) = garage::shared() else { return };
    let url = g.fresh_url();
    let run = |args: &[&str], input: Option<&[u8]>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_drtool"));
        c.arg("--repo").arg(&url).args(args).env("DRTOOL_PASSWORD", "pw");
        g.apply(&mut c);
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(data) = input {
            std::io::Write::write_all(&mut stdin, data).unwrap();
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    assert!(run(&["init"], None).status.success());
    let data = common::random_bytes(7, 3 << 20);
    let out = run(&["backup", "--stdin", "--name", "s"], Some(&data));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["restore", "latest", "--stdout"], None);
    assert!(out.status.success());
    assert_eq!(out.stdout, data);
    let out = run(&["check", "--read-data"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let store = g.store(&url);
    assert!(!garage::list(&store, "data/").is_empty());
}
