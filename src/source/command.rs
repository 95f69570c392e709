//! A child process whose stdout is the stream to back up.
//!
//! The stream counts only if the child exits 0: a non-zero exit or death by a
//! signal fails the backup with the tail of the child's stderr in the error.

use super::SourceError;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use crate::child::keep_tail;

pub struct CommandSource {
    display: String,
    child: Child,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

/// The child's process-group id, so that an interrupted drtool can stop it.
#[derive(Debug, Clone, Default)]
pub struct ChildHandle(Arc<Mutex<Option<i32>>>);

impl ChildHandle {
    /// Send SIGTERM to the child's process group, if one is running.
    pub fn terminate(&self) {
        if let Ok(g) = self.0.lock() {
            if let Some(pgid) = *g {
                // SAFETY: kill with a negative pid signals that process group only.
                unsafe { libc::kill(-pgid, libc::SIGTERM) };
            }
        }
    }
}

impl CommandSource {
    pub fn spawn(argv: &[String], handle: &ChildHandle) -> Result<Self, SourceError> {
        let (prog, args) = argv.split_first().ok_or_else(|| SourceError::Spawn {
            command: "<empty>".into(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "empty command"),
        })?;
        let mut cmd = Command::new(prog);
        crate::child::scrub(&mut cmd).args(args);
        Self::spawn_command(cmd, &argv.join(" "), handle)
    }

    /// Start a prepared command; `display` names it in errors (it must not
    /// contain secrets, and the command's argv never does).
    pub fn spawn_command(mut cmd: Command, display: &str, handle: &ChildHandle) -> Result<Self, SourceError> {
        let display = display.to_string();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: we decide when it stops, not the terminal.
            .process_group(0)
            .spawn()
            .map_err(|source| SourceError::Spawn { command: display.clone(), source })?;
        if let Ok(mut g) = handle.0.lock() {
            *g = Some(child.id() as i32);
        }
        let stdout = child.stdout.take();
        let stderr = child.stderr.take().map(keep_tail);
        Ok(Self { display, child, stdout, stderr })
    }

    /// The child's stdout; taken once.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Wait for the child. `Ok` only for exit status 0.
    pub fn finish(mut self) -> Result<(), SourceError> {
        drop(self.stdout.take());
        let status = self.child.wait().map_err(|source| SourceError::Io { path: self.display.clone(), source })?;
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        Err(SourceError::Failed {
            command: self.display.clone(),
            status: describe(status),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Stop the child after a failure elsewhere; never blocks on its output.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        drop(self.stdout.take());
        let _ = self.child.wait();
    }
}

/// "exit status N" or "killed by signal N".
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn run(script: &str) -> (Vec<u8>, Result<(), SourceError>) {
        let argv = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let mut src = CommandSource::spawn(&argv, &ChildHandle::default()).unwrap();
        let mut out = Vec::new();
        src.take_stdout().unwrap().read_to_end(&mut out).unwrap();
        (out, src.finish())
    }

    #[test]
    fn success_failure_and_signal() {
        let (out, r) = run("printf hello");
        assert_eq!(out, b"hello");
        assert!(r.is_ok());
        let (_, r) = run("echo partial; echo 'dump failed: disk full' >&2; exit 3");
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("exit status 3") && msg.contains("disk full"), "{msg}");
        let (_, r) = run("kill -9 $$");
        assert!(r.unwrap_err().to_string().contains("killed by signal 9"));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let argv = vec!["/nonexistent/prog".to_string()];
        assert!(matches!(CommandSource::spawn(&argv, &ChildHandle::default()), Err(SourceError::Spawn { .. })));
    }
}
