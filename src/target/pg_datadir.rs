//! A PostgreSQL data directory made ready for point-in-time recovery
//! (docs/PITR.md): recovery settings, recovery.signal, owner and modes.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// (uid, gid) of an OS account.
pub fn os_user(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the duration of the call.
    let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    (rc == 0 && !found.is_null()).then_some((pw.pw_uid, pw.pw_gid))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no failure modes.
    unsafe { libc::geteuid() == 0 }
}

/// Write a file only its owner can read (created 0600, never readable by others
/// in between), optionally handing it to `owner`.
pub fn write_private(path: &Path, data: &[u8], owner: Option<(u32, u32)>) -> io::Result<()> {
    let tmp = path.with_extension("drtool-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
    }
    std::fs::rename(&tmp, path)
}

/// Whether `dir` is missing or an empty directory (else the reason it is not usable).
pub fn check_empty_target(dir: &Path) -> Result<(), String> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(format!("target {} is not empty; restore into a new or empty directory", dir.display())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("target {}: {e}", dir.display())),
    }
}

/// Hand the whole tree to `owner` (not following symlinks) and make the top 0700,
/// as PostgreSQL requires of its data directory.
pub fn chown_tree(dir: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let Some((uid, gid)) = owner else { return Ok(()) };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))?;
        if std::fs::symlink_metadata(&p)?.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(())
}

/// A value in postgresql.conf quoting.
fn conf_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// A word for the shell that runs restore_command.
fn shell_quote(v: &str) -> String {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@".contains(&b)) {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

/// Where recovery stops (`None` of them: at the end of the archived WAL).
#[derive(Debug, Clone, PartialEq)]
pub enum RecoveryTarget {
    End,
    /// Already formatted for PostgreSQL (`YYYY-MM-DD HH:MM:SS.ffffff+00`).
    Time(String),
    Lsn(String),
    Xid(String),
    Name(String),
}

/// Append the recovery settings to postgresql.auto.conf (later lines win) and
/// create recovery.signal. `fetch` is the program and arguments before `%f %p`.
pub fn configure_recovery(dir: &Path, fetch: &[String], target: &RecoveryTarget) -> io::Result<()> {
    let mut cmd: Vec<String> = fetch.iter().map(|a| shell_quote(a)).collect();
    cmd.push("%f".into());
    cmd.push("\"%p\"".into());
    let mut conf = String::from("\n# Added by drtool restore for point-in-time recovery (docs/PITR.md).\n");
    conf.push_str(&format!("restore_command = {}\n", conf_quote(&cmd.join(" "))));
    let setting = match target {
        RecoveryTarget::End => None,
        RecoveryTarget::Time(t) => Some(("recovery_target_time", t)),
        RecoveryTarget::Lsn(l) => Some(("recovery_target_lsn", l)),
        RecoveryTarget::Xid(x) => Some(("recovery_target_xid", x)),
        RecoveryTarget::Name(n) => Some(("recovery_target_name", n)),
    };
    if let Some((key, value)) = setting {
        conf.push_str(&format!("{key} = {}\n", conf_quote(value)));
        conf.push_str("recovery_target_action = 'promote'\n");
    }
    conf.push_str("recovery_target_timeline = 'latest'\n");
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(dir.join("postgresql.auto.conf"))?;
    f.write_all(conf.as_bytes())?;
    f.sync_all()?;
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join("recovery.signal"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_settings_are_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let fetch = vec!["/usr/bin/drtool".to_string(), "wal-fetch".into(), "--config".into(), "/a b/it's.toml".into()];
        configure_recovery(dir.path(), &fetch, &RecoveryTarget::Name("before 'x'".into())).unwrap();
        let conf = std::fs::read_to_string(dir.path().join("postgresql.auto.conf")).unwrap();
        assert!(
            conf.contains(r#"restore_command = '/usr/bin/drtool wal-fetch --config ''/a b/it''\''''s.toml'' %f "%p"'"#),
            "{conf}"
        );
        assert!(conf.contains("recovery_target_name = 'before ''x'''"), "{conf}");
        assert!(dir.path().join("recovery.signal").is_file());
        assert!(check_empty_target(dir.path()).is_err());
        assert!(check_empty_target(&dir.path().join("none")).is_ok());
    }
}
