#![allow(dead_code)]
//! Processes and listening sockets, read from /proc, for tests that check
//! what a scratch server or a killed run left behind.
//!
//! Tests run in parallel: a port that a scratch server gave back may be taken
//! at once by another test's server, so "is the port free" is a race. What a
//! test can assert without one is *who* still listens on it.

/// (pid, pgrp, state, cmdline) of every process.
pub fn processes() -> Vec<(u32, u32, char, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (Some(state), Some(Ok(pgrp))) = (f.first().and_then(|s| s.chars().next()), f.get(2).map(|s| s.parse()))
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        out.push((pid, pgrp, state, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
    }
    out
}

/// Socket inodes listening on TCP `port` (IPv4 or IPv6).
fn listening_inodes(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1).and_then(|a| a.rsplit(':').next()).and_then(|h| u16::from_str_radix(h, 16).ok());
            // State 0A is LISTEN.
            if local == Some(port) && f.get(3) == Some(&"0A") {
                if let Some(inode) = f.get(9) {
                    out.push(format!("socket:[{inode}]"));
                }
            }
        }
    }
    out
}

/// Processes holding a listening socket on `port`: pid and command line.
pub fn port_holders(port: u16) -> Vec<(u32, String)> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (pid, _, _, cmdline) in processes() {
        let links = std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten();
        let mut links = links.filter_map(|fd| std::fs::read_link(fd.path()).ok());
        if links.any(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str())) {
            out.push((pid, cmdline));
        }
    }
    out
}

/// Holders of `port` that belong to a drill scratch server whose directory
/// is gone (its teardown ran, so nothing of it may still listen). A scratch
/// of another test that took the port afterwards still has its directory.
pub fn orphaned_scratch_holders(port: u16) -> Vec<String> {
    port_holders(port)
        .into_iter()
        .filter(|(_, cmd)| {
            cmd.split([' ', '='])
                .filter(|a| a.contains("/drtool-scratch-"))
                .any(|a| !std::path::Path::new(&scratch_root(a)).exists())
        })
        .map(|(pid, cmd)| format!("{pid} ({cmd})"))
        .collect()
}

/// `/tmp/drtool-scratch-mariadb-XXXX/data/...` -> `/tmp/drtool-scratch-mariadb-XXXX`.
fn scratch_root(arg: &str) -> String {
    let at = arg.find("/drtool-scratch-").unwrap_or(0);
    let end = arg[at + 1..].find('/').map_or(arg.len(), |i| at + 1 + i);
    arg[..end].to_string()
}
