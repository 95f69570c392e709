//! Database passwords: where they come from, and how they reach the engine's
//! tools without appearing in any process's argv.
//!
//! Each tool gets the password through a file only it and we can read (a
//! MySQL option file, a pgpass file, a mongo tools config file) inside a
//! private directory that is removed when the run ends; RAM-backed /dev/shm
//! is preferred so the secret never reaches a disk.

use super::{Engine, EngineError};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

#[derive(Clone, Default)]
pub struct Password(Option<Zeroizing<String>>);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Password(***)" } else { "Password(none)" })
    }
}

impl Password {
    pub fn new(p: impl Into<String>) -> Self {
        Password(Some(Zeroizing::new(p.into())))
    }

    /// In order: `file`, the variable `drtool_var` (DRTOOL_SOURCE_PASSWORD or
    /// DRTOOL_TARGET_PASSWORD), the engine's own variable (MYSQL_PWD,
    /// PGPASSWORD). None of them: no password (e.g. peer or trust auth).
    pub fn load(engine: Engine, file: Option<&Path>, drtool_var: &str) -> Result<Self, EngineError> {
        if let Some(f) = file {
            let mut s = std::fs::read_to_string(f)
                .map_err(|e| EngineError::Usage(format!("cannot read password file {}: {e}", f.display())))?;
            // One trailing newline belongs to the file, not the password.
            if s.ends_with('\n') {
                s.pop();
                if s.ends_with('\r') {
                    s.pop();
                }
            }
            return Ok(Password::new(s));
        }
        for var in std::iter::once(drtool_var).chain(engine.password_env()) {
            if let Ok(p) = std::env::var(var) {
                crate::child::register_secret_var(var);
                return Ok(Password::new(p));
            }
        }
        Ok(Password(None))
    }

    pub fn get(&self) -> Option<&str> {
        self.0.as_ref().map(|p| p.as_str())
    }
}

/// A private directory for credential files, removed on drop.
#[derive(Debug)]
pub struct SecretDir {
    dir: tempfile::TempDir,
}

impl SecretDir {
    pub fn new() -> Result<Self, EngineError> {
        let shm = Path::new("/dev/shm");
        let base = if is_writable_dir(shm) { shm.to_path_buf() } else { std::env::temp_dir() };
        let err = |e| EngineError::io(format!("cannot create a private directory in {}", base.display()), e);
        let dir = tempfile::Builder::new()
            .prefix("drtool-cred-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&base)
            .map_err(err)?;
        // Whatever the umask did, only we may enter it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        Ok(SecretDir { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Create `name` (mode 0600, must not exist) holding `contents`.
    pub fn write(&self, name: &str, contents: &str) -> Result<PathBuf, EngineError> {
        let path = self.dir.path().join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| EngineError::io(format!("cannot create {}", path.display()), e))?;
        f.write_all(contents.as_bytes()).map_err(|e| EngineError::io(format!("cannot write {}", path.display()), e))?;
        Ok(path)
    }
}

fn is_writable_dir(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else { return false };
    // SAFETY: access() only reads the NUL-terminated path.
    p.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_removed() {
        let d = SecretDir::new().unwrap();
        let p = d.write("pw", "s3cret").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(d.path()).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(d.write("pw", "again").is_err(), "an existing file is never overwritten");
        let dir = d.path().to_path_buf();
        drop(d);
        assert!(!dir.exists());
    }

    #[test]
    fn password_file_loses_one_newline_and_debug_hides_it() {
        let d = SecretDir::new().unwrap();
        let f = d.write("f", "pa ss\n\n").unwrap();
        let p = Password::load(Engine::Mongodb, Some(&f), "DRTOOL_TEST_UNSET_VAR").unwrap();
        assert_eq!(p.get(), Some("pa ss\n"));
        assert!(!format!("{p:?}").contains("pa ss"));
        let missing = Password::load(Engine::Mongodb, Some(Path::new("/nonexistent/pw")), "X");
        assert!(missing.unwrap_err().to_string().contains("/nonexistent/pw"));
    }
}
