//! What a child process inherits of drtool's environment.
//!
//! drtool's secrets (the repository password, database passwords, S3
//! credentials) reach it through its environment; a child inheriting them
//! would hand them to any program it runs and to anyone who can read its
//! /proc/PID/environ (root, and the account a scratch server runs as). So:
//! - every child loses drtool's secrets (`scrub`), user programs (hooks,
//!   `password_command`, `-- COMMAND` sources) included;
//! - tools drtool runs itself (`scrub_tool`: database tools, volume snapshot
//!   tools) also lose the engines' password variables: database tools get
//!   their credentials through the private files drtool writes (option file,
//!   PGPASSFILE, --config), and the others need none;
//! - scratch servers and their watchdog get a minimal environment
//!   (`minimal`): they run as another account and need nothing of ours.
//!
//! See docs/DECISIONS.md ("What child processes inherit").

use std::process::Command;
use std::sync::Mutex;

/// Variables that hold a secret drtool may read, by exact name.
const SECRET_VARS: &[&str] = &[
    "DRTOOL_PASSWORD",
    "DRTOOL_NEW_PASSWORD",
    "DRTOOL_SOURCE_PASSWORD",
    "DRTOOL_TARGET_PASSWORD",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
];

/// The engines' own password variables. A user's `-- pg_dump` may rely on
/// them, so they are drtool's secrets only once it reads a password from
/// them (`register_secret_var`); tools drtool runs never get them.
const ENGINE_PASSWORD_VARS: &[&str] = &["MYSQL_PWD", "PGPASSWORD"];

/// Words that make a DRTOOL_* variable a secret, present or future.
const SECRET_WORDS: &[&str] = &["PASSWORD", "SECRET", "TOKEN", "PASSPHRASE", "KEY"];

/// What a scratch server keeps: where programs are, its locale and time zone.
const MINIMAL_VARS: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR"];

/// Names drtool read a password from: `password_env` (any name a user
/// chose), MYSQL_PWD, PGPASSWORD.
static NAMED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Treat `name` as a secret from now on: drtool has read a password from it.
pub fn register_secret_var(name: &str) {
    if let Ok(mut v) = NAMED.lock() {
        if !v.iter().any(|n| n == name) {
            v.push(name.to_string());
        }
    }
}

/// Whether children must not see the variable `name`.
pub fn is_secret(name: &str) -> bool {
    SECRET_VARS.contains(&name)
        || (name.starts_with("DRTOOL_") && SECRET_WORDS.iter().any(|w| name.contains(w)))
        || NAMED.lock().is_ok_and(|v| v.iter().any(|n| n == name))
}

/// Remove drtool's secrets from what `cmd` inherits; everything else stays.
/// Variables set on `cmd` afterwards (PGPASSFILE, DRTOOL_RESULT) are kept.
pub fn scrub(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        // A name that is not UTF-8 is none of ours.
        if name.to_str().is_some_and(is_secret) {
            cmd.env_remove(&name);
        }
    }
    cmd
}

/// `scrub`, and the engines' password variables too: for the tools drtool
/// runs itself, which get credentials only through drtool's files.
pub fn scrub_tool(cmd: &mut Command) -> &mut Command {
    for name in ENGINE_PASSWORD_VARS {
        cmd.env_remove(name);
    }
    scrub(cmd)
}

/// Give `cmd` only PATH, HOME, user, locale, time zone and TMPDIR of ours.
pub fn minimal(cmd: &mut Command) -> &mut Command {
    cmd.env_clear();
    for (name, value) in std::env::vars_os() {
        let keep = name.to_str().is_some_and(|n| MINIMAL_VARS.contains(&n) || n.starts_with("LC_"));
        if keep {
            cmd.env(name, value);
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_by_name() {
        for n in ["DRTOOL_PASSWORD", "DRTOOL_SOURCE_PASSWORD", "DRTOOL_FOO_PASSWORD_FILE", "AWS_SESSION_TOKEN"] {
            assert!(is_secret(n), "{n}");
        }
        for n in ["PATH", "DRTOOL_RESULT", "DRTOOL_POLICY", "AWS_REGION", "AWS_PROFILE", "PGPASSFILE", "MY_PW"] {
            assert!(!is_secret(n), "{n}");
        }
        register_secret_var("MY_PW");
        assert!(is_secret("MY_PW"));
    }

    #[test]
    fn tools_never_get_engine_passwords() {
        let mut c = Command::new("true");
        scrub_tool(&mut c);
        let removed: Vec<_> = c.get_envs().filter(|(_, v)| v.is_none()).map(|(k, _)| k.to_owned()).collect();
        assert!(removed.iter().any(|k| k == "MYSQL_PWD") && removed.iter().any(|k| k == "PGPASSWORD"));
    }

    #[test]
    fn minimal_keeps_locale_and_path_only() {
        let mut c = Command::new("true");
        minimal(&mut c);
        let set: Vec<String> =
            c.get_envs().filter(|(_, v)| v.is_some()).map(|(k, _)| k.to_string_lossy().into_owned()).collect();
        assert!(set.iter().all(|k| MINIMAL_VARS.contains(&k.as_str()) || k.starts_with("LC_")), "{set:?}");
    }
}
