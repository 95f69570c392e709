//! MongoDB through its database tools (mongodump, mongorestore).
//!
//! drtool needs no driver of its own: the archive header carries the server
//! and tool versions. The password reaches the tools through `--config`, a
//! YAML file the tools read `password:` from (mongo-tools 100.3+).

use super::{DbUrl, EngineError, Password, SecretDir, find_tool};
use std::path::PathBuf;
use std::process::Command;

pub struct MongoConn {
    pub url: DbUrl,
    config: Option<PathBuf>,
    _secrets: SecretDir,
}

/// What a mongorestore run should do besides loading the archive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreOptions {
    /// Only these source databases (`--nsInclude db.*`); empty: everything.
    pub include: Vec<String>,
    /// Renames `(from, to)` of whole databases (`--nsFrom from.* --nsTo to.*`).
    pub renames: Vec<(String, String)>,
    /// Drop each collection before restoring it.
    pub drop: bool,
    /// Replay the archive's oplog for a point-in-time consistent restore.
    pub oplog_replay: bool,
}

impl MongoConn {
    pub fn new(url: &DbUrl, password: &Password) -> Result<Self, EngineError> {
        let secrets = SecretDir::new()?;
        let config = match password.get() {
            Some(p) => Some(secrets.write("tools.yaml", &format!("password: {}\n", yaml_string(p)))?),
            None => None,
        };
        Ok(MongoConn { url: url.clone(), config, _secrets: secrets })
    }

    pub fn tool(&self, name: &str) -> Result<PathBuf, EngineError> {
        find_tool(
            self.url.bin_dir(),
            &[name],
            "install the MongoDB Database Tools (https://www.mongodb.com/docs/database-tools/)",
        )
    }

    /// The connection string the tools get: user, host, port and pass-through
    /// options; never a password.
    pub fn uri(&self) -> String {
        let user = self.url.user.as_deref().map(|u| format!("{}@", enc(u))).unwrap_or_default();
        let opts: Vec<String> = self.url.passthrough.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
        let query = if opts.is_empty() { String::new() } else { format!("?{}", opts.join("&")) };
        format!("mongodb://{user}{}/{query}", self.url.server())
    }

    fn base(&self, tool: &PathBuf) -> Command {
        let mut c = Command::new(tool);
        crate::child::scrub_tool(&mut c);
        if let Some(cfg) = &self.config {
            c.arg(format!("--config={}", cfg.display()));
        }
        c.arg(format!("--uri={}", self.uri()));
        c
    }

    /// mongodump writing an uncompressed archive to stdout.
    pub fn dump_command(&self, tool: &PathBuf, db: Option<&str>, oplog: bool) -> Command {
        let mut c = self.base(tool);
        c.arg("--archive");
        if let Some(db) = db {
            c.arg(format!("--db={db}"));
        }
        if oplog {
            c.arg("--oplog");
        }
        c
    }

    /// mongorestore reading an archive from stdin.
    pub fn restore_command(&self, tool: &PathBuf, o: &RestoreOptions) -> Command {
        let mut c = self.base(tool);
        c.arg("--archive");
        for db in &o.include {
            c.arg(format!("--nsInclude={}.*", ns_escape(db)));
        }
        for (from, to) in &o.renames {
            c.arg(format!("--nsFrom={}.*", ns_escape(from))).arg(format!("--nsTo={}.*", ns_escape(to)));
        }
        if o.drop {
            c.arg("--drop");
        }
        if o.oplog_replay {
            c.arg("--oplogReplay");
        }
        c
    }
}

fn enc(s: &str) -> String {
    ::url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Namespace patterns treat `*` and `\` specially; database names with them are escaped.
fn ns_escape(db: &str) -> String {
    db.replace('\\', "\\\\").replace('*', "\\*")
}

/// A YAML double-quoted scalar.
fn yaml_string(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\x{:02x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(c: &Command) -> Vec<String> {
        c.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn dump_and_restore_arguments() {
        let url = DbUrl::parse("mongodb://admin@rs1:27018/?authSource=admin&replicaSet=rs0&oplog=true").unwrap();
        let conn = MongoConn::new(&url, &Password::new("p\"w")).unwrap();
        let tool = PathBuf::from("mongodump");
        let a = argv(&conn.dump_command(&tool, None, true));
        assert!(a[0].starts_with("--config=") && a.iter().all(|x| !x.contains("p\"w")), "{a:?}");
        assert_eq!(
            a[1..],
            ["--uri=mongodb://admin@rs1:27018/?authSource=admin&replicaSet=rs0", "--archive", "--oplog"]
        );
        let cfg = std::fs::read_to_string(a[0].trim_start_matches("--config=")).unwrap();
        assert_eq!(cfg, "password: \"p\\\"w\"\n");
        let a = argv(&conn.dump_command(&tool, Some("shop"), false));
        assert_eq!(a[2..], ["--archive", "--db=shop"]);
        let o = RestoreOptions {
            include: vec!["shop".into()],
            renames: vec![("shop".into(), "shop_copy".into())],
            drop: true,
            oplog_replay: false,
        };
        let a = argv(&conn.restore_command(&PathBuf::from("mongorestore"), &o));
        assert_eq!(a[2..], ["--archive", "--nsInclude=shop.*", "--nsFrom=shop.*", "--nsTo=shop_copy.*", "--drop"]);
    }

    #[test]
    fn no_password_no_config() {
        let url = DbUrl::parse("mongodb://localhost/").unwrap();
        let conn = MongoConn::new(&url, &Password::default()).unwrap();
        let a = argv(&conn.dump_command(&PathBuf::from("mongodump"), None, false));
        assert_eq!(a, ["--uri=mongodb://localhost:27017/", "--archive"]);
        assert_eq!(ns_escape("we*ird\\"), "we\\*ird\\\\");
    }
}
