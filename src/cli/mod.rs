//! Command-line interface: argument definitions and output; no logic of its own.

mod binlogcmd;
mod commands;
mod dbrestore;
mod drillcmd;
pub mod exit;
mod forget;
mod keycmd;
pub mod output;
mod pitr;
mod pitrcmd;
mod policycmd;
mod prunecmd;
mod secrets;
mod volume;
mod walcmd;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "drtool", version, about = "Backup and disaster recovery for databases and volumes")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Repository: a local path or file:///path.
    #[arg(long, short = 'r', env = "DRTOOL_REPO", global = true)]
    pub repo: Option<String>,
    /// File holding the repository password (else DRTOOL_PASSWORD, else a prompt on a terminal).
    #[arg(long, global = true)]
    pub password_file: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Directory of policy files (default ./policies if it exists, else /etc/drtool/policies).
    #[arg(long, env = "DRTOOL_POLICIES", global = true, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Log detail: -v info, -vv debug (logs go to stderr).
    #[arg(long, short = 'v', action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new encrypted repository.
    Init,
    /// Back up paths, standard input (--stdin) or a command's output (-- COMMAND ARGS).
    Backup(BackupArgs),
    /// List snapshots.
    Snapshots {
        /// Only snapshots with this name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Show one snapshot's manifest: source details (server and tool versions,
    /// binlog/WAL/oplog positions), streams and recorded row counts.
    Show {
        /// Snapshot id, unique prefix, or `latest`.
        snapshot: String,
        /// With `latest`: the latest snapshot with this name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Restore a snapshot (an id, a unique id prefix, or `latest`).
    Restore(RestoreArgs),
    /// Verify the repository's structure, and with --read-data every stored byte.
    Check(CheckArgs),
    /// Manage the passwords (key slots) that open the repository.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Remove snapshots: given ids, or those a retention policy does not keep.
    Forget(ForgetArgs),
    /// Delete data no snapshot references; safe while backups run (docs/PRUNE.md).
    Prune(PruneArgs),
    /// Check policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run a policy (by name or file): pre hooks, backup, retention, post hooks,
    /// metrics and notification. A second run of the same policy exits 11 at once.
    Run {
        /// Policy name, or path to its file.
        policy: String,
    },
    /// Write systemd units, print crontab lines, or show a policy's next run times.
    Schedule(ScheduleArgs),
    /// Run every policy on its schedule in this process (for containers).
    Daemon,
    /// Restore the latest snapshot of a policy into a throw-away server, check it,
    /// measure RTO and RPO, store and print a report, tear everything down.
    Drill(DrillArgs),
    /// Capture a policy's MySQL/MariaDB binary log into the repository until
    /// stopped (SIGINT/SIGTERM); the policy needs a [binlog] section (docs/PITR.md).
    Binlog(BinlogArgs),
    /// List stored drill results.
    Drills {
        /// Only drills of this policy.
        #[arg(long)]
        policy: Option<String>,
    },
    /// Archive one PostgreSQL WAL file (archive_command = 'drtool wal-push --config FILE %p').
    WalPush(walcmd::WalPushArgs),
    /// Fetch one archived WAL file (restore_command = 'drtool wal-fetch --config FILE %f "%p"').
    WalFetch(walcmd::WalFetchArgs),
    /// Create a WAL archive and write the configuration wal-push/wal-fetch read.
    WalConfig(walcmd::WalConfigArgs),
}

#[derive(Args, Debug)]
pub struct BinlogArgs {
    /// Policy name, or path to its file.
    pub policy: String,
    /// Print what is captured (files, newest event and its age, gaps) and exit.
    #[arg(long)]
    pub status: bool,
}

#[derive(Args, Debug)]
pub struct DrillArgs {
    /// Policy name, or path to its file.
    pub policy: String,
    /// Write the report as JSON to FILE (after `drill`, `--json FILE` means this).
    #[arg(long = "report-json", value_name = "FILE")]
    pub json_file: Option<PathBuf>,
    /// Write a JUnit XML report (one testcase per check) to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a Markdown report to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate policy files (default: every *.toml in the policies directory).
    Check {
        /// Files or directories.
        paths: Vec<PathBuf>,
    },
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ScheduleArgs {
    /// Write drtool-NAME.service and drtool-NAME.timer for each scheduled policy into DIR.
    #[arg(long, value_name = "DIR")]
    pub systemd: Option<PathBuf>,
    /// Print crontab lines for the scheduled policies.
    #[arg(long)]
    pub crontab: bool,
    /// Print the next 5 run times of a policy.
    #[arg(long, value_name = "POLICY")]
    pub next: Option<String>,
}

#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Snapshot ids (or unique prefixes) to remove.
    pub snapshots: Vec<String>,
    /// Keep the N most recent snapshots.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_last: Option<i64>,
    /// Keep the most recent snapshot of each of the last N hours (-1: all hours).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_hourly: Option<i64>,
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_daily: Option<i64>,
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_weekly: Option<i64>,
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_monthly: Option<i64>,
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub keep_yearly: Option<i64>,
    /// Keep every snapshot within this duration of the newest one (e.g. 2y5m7d3h).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Only snapshots with this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Only snapshots of this host (repeatable; default: every host).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Apply the rules to each group of snapshots sharing these keys, comma-separated:
    /// host, name, tags; "" puts every selected snapshot in one group (as restic's --group-by).
    #[arg(long, value_name = "KEYS", default_value = "host,name")]
    pub group_by: String,
    /// List what would be removed and why each kept snapshot is kept; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run `prune` afterwards.
    #[arg(long)]
    pub prune: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Show what would be deleted and repacked; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up.
    pub paths: Vec<PathBuf>,
    /// A database server to dump: mysql://USER@HOST:PORT/DB1,DB2 (no path: all databases),
    /// postgres://USER@HOST:PORT/DB, mongodb://USER@HOST:PORT/[DB][?oplog=true].
    /// The password comes from --source-password-file, DRTOOL_SOURCE_PASSWORD, MYSQL_PWD or PGPASSWORD.
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
    /// File holding the database password for --source.
    #[arg(long, value_name = "FILE", requires = "source")]
    pub source_password_file: Option<PathBuf>,
    /// Back up standard input as one stream (needs --name).
    #[arg(long)]
    pub stdin: bool,
    /// Snapshot name (required for --stdin and commands; default for paths: the paths).
    #[arg(long)]
    pub name: Option<String>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Record this host name in the snapshot instead of the machine's (retention groups by host).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// zstd level (0 = off). Level 3 measured smaller than restic at over twice its speed (docs/DECISIONS.md).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub compression: i32,
    /// Record this snapshot time instead of now (RFC 3339, e.g. 2026-01-31T02:30:00Z).
    #[arg(long)]
    pub time: Option<chrono::DateTime<chrono::Utc>>,
    /// Read every file, even those the parent snapshot shows unchanged
    /// (same size, mtime, ctime and inode).
    #[arg(long)]
    pub force: bool,
    /// Leave out paths matching GLOB (repeatable). Matched like restic: against the
    /// base name and every trailing part of the path; a leading `/` anchors it to the
    /// full path (`*.tmp`, `node_modules`, `/srv/app/cache`).
    #[arg(long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Leave out directories holding a valid CACHEDIR.TAG (the Cache Directory Tagging spec).
    #[arg(long)]
    pub exclude_caches: bool,
    /// Stay on each path's file system: mount points below it are kept empty.
    #[arg(long, short = 'x')]
    pub one_file_system: bool,
    /// Back up a block device or disk image as one stream, named after its file name.
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<PathBuf>,
    /// Read paths (or --device) from a consistent snapshot taken for the backup and
    /// removed after it: btrfs, lvm, zfs (paths), lvm, fsfreeze (devices; paths too). See docs/VOLUMES.md.
    #[arg(long, value_name = "KIND", default_value = "none")]
    pub snapshot: crate::source::snapshot::SnapshotKind,
    /// LVM copy-on-write space for the snapshot: a size (2G) or a share of the volume (20%ORIGIN).
    #[arg(long, value_name = "SIZE")]
    pub snapshot_size: Option<String>,
    /// fsfreeze: thaw after this many seconds at the latest (the backup then fails).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub freeze_timeout: Option<u64>,
    /// With --source postgres://...: a physical base backup (pg_basebackup) for
    /// point-in-time recovery, instead of pg_dump (docs/PITR.md).
    #[arg(long, requires = "source")]
    pub physical: bool,
    /// Command whose stdout is backed up, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot id, unique prefix, or `latest`.
    pub snapshot: String,
    /// With `latest`: the latest snapshot with this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Directory to restore into (streams become files named after the stream).
    #[arg(long, conflicts_with = "stdout")]
    pub target: Option<PathBuf>,
    /// Write a stream snapshot to standard output.
    #[arg(long, conflicts_with = "to")]
    pub stdout: bool,
    /// Restore only the stream of this name (as `drtool show` lists them); needed by
    /// --stdout when the snapshot holds several (one per database).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["to", "to_device", "include"])]
    pub stream: Option<String>,
    /// Restore a database snapshot into a server: mysql://USER@HOST:PORT/[DB], postgres://..., mongodb://...
    /// (a database in the URL restores only that one). Shows the plan and asks first.
    #[arg(long, value_name = "URL", conflicts_with = "target")]
    pub to: Option<String>,
    /// Restore under another name: NEW (one database) or OLD=NEW (repeatable).
    #[arg(long, value_name = "NEW|OLD=NEW", requires = "to")]
    pub rename: Vec<String>,
    /// Replace databases that exist on the target (MySQL: drop and recreate; PostgreSQL:
    /// pg_restore --clean --if-exists; MongoDB: mongorestore --drop).
    #[arg(long, visible_alias = "drop", requires = "to")]
    pub clean: bool,
    /// Also apply the snapshot's accounts / roles (MariaDB users, pg_dumpall --globals-only).
    #[arg(long, requires = "to")]
    pub with_globals: bool,
    /// Write the snapshot's stream (a device backup) onto this block device, which must
    /// not be in use and must be large enough. Shows the plan; needs --yes.
    #[arg(long, value_name = "DEVICE", conflicts_with_all = ["target", "stdout", "to"])]
    pub to_device: Option<PathBuf>,
    /// Do not ask for confirmation (--to-device: required to write).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Show the plan and stop (with --target: list what would be restored, write nothing).
    #[arg(long)]
    pub dry_run: bool,
    /// Restore only this path and what is below it (repeatable): the original path
    /// (/srv/uploads/a) or the path under the target (uploads/a).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["to", "stdout"])]
    pub include: Vec<String>,
    /// File holding the target server's password (else DRTOOL_TARGET_PASSWORD, MYSQL_PWD, PGPASSWORD).
    #[arg(long, value_name = "FILE", requires = "to")]
    pub to_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub point: pitrcmd::PointArgs,
    /// MySQL point-in-time recovery (with --to): like --at, up to and including the
    /// transaction with this GTID (DOMAIN-SERVER-SEQ).
    #[arg(long, value_name = "GTID", requires = "to", conflicts_with_all = ["at", "at_position", "at_lsn", "at_xid", "at_name"])]
    pub at_gtid: Option<String>,
    /// MySQL point-in-time recovery (with --to): replay the events before FILE:POSITION (as
    /// SHOW MASTER STATUS reports it).
    #[arg(long, value_name = "FILE:POS", requires = "to", conflicts_with_all = ["at", "at_lsn", "at_xid", "at_name"])]
    pub at_position: Option<String>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Read, decrypt and verify every blob.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read and verify this percentage of packs, chosen at random (e.g. 10 or 2.5).
    #[arg(long, value_name = "PERCENT")]
    pub read_data_subset: Option<f64>,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List key slots.
    List,
    /// Add a password (from --new-password-file, DRTOOL_NEW_PASSWORD or a prompt).
    Add {
        #[arg(long)]
        new_password_file: Option<PathBuf>,
    },
    /// Remove a key slot by id (or unique prefix); not the one in use.
    Remove { id: String },
    /// Change the password of the key slot in use.
    Passwd {
        #[arg(long)]
        new_password_file: Option<PathBuf>,
    },
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRTOOL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

/// `drill POLICY --json FILE` writes the report to FILE (as the drill issue
/// specifies), while the global `--json` switch takes no value: after the
/// `drill` subcommand, `--json` followed by a value becomes `--report-json`.
fn drill_json_argument(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let Some(sub) = args.iter().position(|a| a == "drill") else { return args };
    let mut i = sub + 1;
    while i + 1 < args.len() {
        let next_is_value = !args[i + 1].to_string_lossy().starts_with('-');
        if args[i] == "--json" && next_is_value {
            args[i] = "--report-json".into();
        }
        i += 1;
    }
    args
}

/// Entry point: parse, run, map errors to documented exit codes.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(drill_json_argument(std::env::args_os().collect())) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("drtool: cannot start runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let result = runtime.block_on(commands::dispatch(cli));
    // Do not wait for blocking readers (an interrupted backup may still be
    // blocked reading stdin): everything that matters has completed or failed.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("drtool: error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}
