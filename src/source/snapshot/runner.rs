//! Running administration commands (btrfs, lvcreate, zfs, mount, fsfreeze).

use super::SnapshotError;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Runs administration commands to completion, and starts thaw watchdogs.
///
/// `run` is synchronous and has no shell: `argv` reaches the program as is.
/// It succeeds only when the command exits 0; otherwise the error carries the
/// command line, its exit status and its stderr. Implementations must be safe
/// to call from `Drop` (no async runtime needed).
pub trait Runner: Send + Sync {
    /// Run `argv` and return its stdout.
    fn run(&self, argv: &[&str]) -> Result<String, SnapshotError>;

    /// Start a process that thaws `mountpoint` after `after`, even when drtool
    /// has died or hangs by then. It must outlive drtool's process (its own
    /// process group, so a terminal's Ctrl-C does not reach it).
    fn watchdog(&self, mountpoint: &Path, after: Duration) -> Result<Box<dyn Watchdog>, SnapshotError>;
}

/// A running thaw watchdog.
pub trait Watchdog: Send {
    /// Whether it has already fired (thawed, or tried to).
    fn fired(&mut self) -> bool;
    /// Stop it without thawing (drtool thaws itself).
    fn disarm(self: Box<Self>);
}

/// The real thing: child processes.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&self, argv: &[&str]) -> Result<String, SnapshotError> {
        let command = argv.join(" ");
        let (prog, args) =
            argv.split_first().ok_or_else(|| SnapshotError::Usage("empty administration command".into()))?;
        tracing::debug!("running {command}");
        let out = crate::child::scrub_tool(&mut Command::new(prog))
            .args(args)
            // LVM tools complain about any inherited descriptor; there are none, but say so.
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| SnapshotError::Spawn { command: command.clone(), source })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let status = match (out.status.code(), out.status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => out.status.to_string(),
        };
        Err(SnapshotError::Command { command, status, stderr: String::from_utf8_lossy(&out.stderr).into_owned() })
    }

    fn watchdog(&self, mountpoint: &Path, after: Duration) -> Result<Box<dyn Watchdog>, SnapshotError> {
        // A shell, not a thread: it must survive drtool being killed. `sleep`
        // runs as its child; both are in a process group of their own.
        let script = "sleep \"$1\"; exec fsfreeze --unfreeze \"$2\"";
        let child = crate::child::scrub_tool(&mut Command::new("sh"))
            .args(["-c", script, "drtool-thaw-watchdog"])
            .arg(after.as_secs().max(1).to_string())
            .arg(mountpoint)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .map_err(|source| SnapshotError::Spawn { command: "sh (thaw watchdog)".into(), source })?;
        Ok(Box::new(ProcessWatchdog { child, exited: false }))
    }
}

struct ProcessWatchdog {
    child: Child,
    /// Reaped already: its pid (and group id) may belong to someone else now.
    exited: bool,
}

impl Watchdog for ProcessWatchdog {
    fn fired(&mut self) -> bool {
        // It exits only by thawing (or failing to); disarm kills it first.
        if !self.exited {
            self.exited = !matches!(self.child.try_wait(), Ok(None));
        }
        self.exited
    }

    fn disarm(mut self: Box<Self>) {
        if self.fired() {
            return;
        }
        let pgid = self.child.id() as i32;
        // SAFETY: a negative pid signals only the watchdog's own process group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
