//! Where passwords come from. Never from the command line (visible in /proc).

use super::exit::Failure;
use std::io::IsTerminal;
use std::path::Path;
use zeroize::Zeroizing;

fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut v = std::fs::read(path)
        .map_err(|e| Failure::usage(format!("cannot read password file {}: {e}", path.display())))?;
    // One trailing newline is the file's, not the password's.
    if v.last() == Some(&b'\n') {
        v.pop();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
    }
    Ok(Zeroizing::new(v))
}

fn non_empty(p: Zeroizing<Vec<u8>>, what: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    if p.is_empty() { Err(Failure::usage(format!("{what} is empty"))) } else { Ok(p) }
}

/// The repository password: --password-file, DRTOOL_PASSWORD, or a prompt on a terminal.
pub fn repo_password(file: Option<&Path>, confirm: bool) -> Result<Zeroizing<Vec<u8>>, Failure> {
    if let Some(f) = file {
        return non_empty(read_file(f)?, "the password file");
    }
    if let Ok(p) = std::env::var("DRTOOL_PASSWORD") {
        return non_empty(Zeroizing::new(p.into_bytes()), "DRTOOL_PASSWORD");
    }
    prompt("repository password", confirm, "no password: set DRTOOL_PASSWORD or use --password-file")
}

/// A new password for `key add` / `key passwd`.
pub fn new_password(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, Failure> {
    if let Some(f) = file {
        return non_empty(read_file(f)?, "the new password file");
    }
    if let Ok(p) = std::env::var("DRTOOL_NEW_PASSWORD") {
        return non_empty(Zeroizing::new(p.into_bytes()), "DRTOOL_NEW_PASSWORD");
    }
    prompt("new password", true, "no new password: set DRTOOL_NEW_PASSWORD or use --new-password-file")
}

fn prompt(what: &str, confirm: bool, otherwise: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(otherwise));
    }
    let read = |p: &str| rpassword::prompt_password(p).map_err(|e| Failure::usage(format!("cannot read {what}: {e}")));
    let first = Zeroizing::new(read(&format!("Enter {what}: "))?.into_bytes());
    if confirm {
        let second = Zeroizing::new(read(&format!("Repeat {what}: "))?.into_bytes());
        if *first != *second {
            return Err(Failure::usage("passwords do not match"));
        }
    }
    non_empty(first, what)
}
