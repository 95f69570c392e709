//! `mysql://user@host:port/db1,db2?opt=v`, `postgres://...`, `mongodb://...`.
//!
//! A password in the URL is refused: the URL is shown in logs, plans and
//! manifests and sits in drtool's own argv. Passwords come from files or the
//! engine's environment variable (see `secret`).

use super::EngineError;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Mysql,
    Postgres,
    Mongodb,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Mysql => "mysql",
            Engine::Postgres => "postgres",
            Engine::Mongodb => "mongodb",
        }
    }

    /// The environment variable the engine's own tools read a password from.
    pub fn password_env(self) -> Option<&'static str> {
        match self {
            Engine::Mysql => Some("MYSQL_PWD"),
            Engine::Postgres => Some("PGPASSWORD"),
            Engine::Mongodb => None,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Engine::Mysql => 3306,
            Engine::Postgres => 5432,
            Engine::Mongodb => 27017,
        }
    }

    /// Query options drtool itself understands for this engine. MongoDB passes
    /// every other option through to the tools' connection string.
    fn known_options(self) -> &'static [&'static str] {
        match self {
            Engine::Mysql => &["bin_dir", "socket"],
            Engine::Postgres => &["bin_dir", "sslmode", "no_owner"],
            Engine::Mongodb => &["bin_dir", "oplog"],
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DbUrl {
    pub engine: Engine,
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
    /// Empty: every database on the server.
    pub databases: Vec<String>,
    /// drtool's options (see `Engine::known_options`).
    pub options: BTreeMap<String, String>,
    /// MongoDB connection-string options passed through to the tools.
    pub passthrough: Vec<(String, String)>,
}

impl DbUrl {
    pub fn parse(s: &str) -> Result<Self, EngineError> {
        let bad = |why: &str| EngineError::Usage(format!("invalid database URL {}: {why}", redact(s)));
        let u = ::url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        let engine = match u.scheme() {
            "mysql" | "mariadb" => Engine::Mysql,
            "postgres" | "postgresql" => Engine::Postgres,
            "mongodb" => Engine::Mongodb,
            other => {
                return Err(EngineError::Usage(format!(
                    "unsupported source scheme {other:?}: use mysql://, postgres:// or mongodb://"
                )));
            }
        };
        if u.password().is_some() {
            return Err(EngineError::Usage(format!(
                "a password in the URL {} is not accepted (it would show in process lists and logs); \
                 use --source-password-file or {}",
                redact(s),
                engine
                    .password_env()
                    .map_or("DRTOOL_SOURCE_PASSWORD".to_string(), |v| format!("DRTOOL_SOURCE_PASSWORD or {v}"))
            )));
        }
        let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
        // IPv6 literals come back bracketed; tools want them bare.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let user = Some(decode(u.username())).filter(|s| !s.is_empty());
        let path = u.path().trim_start_matches('/');
        let mut databases = Vec::new();
        for db in path.split(',').filter(|d| !d.is_empty()) {
            let db = decode(db);
            if db.contains('/') || db.contains('\0') {
                return Err(bad(&format!("invalid database name {db:?}")));
            }
            if !databases.contains(&db) {
                databases.push(db);
            }
        }
        let mut options = BTreeMap::new();
        let mut passthrough = Vec::new();
        for (k, v) in u.query_pairs() {
            if engine.known_options().contains(&k.as_ref()) {
                options.insert(k.into_owned(), v.into_owned());
            } else if engine == Engine::Mongodb {
                passthrough.push((k.into_owned(), v.into_owned()));
            } else {
                return Err(bad(&format!("unknown option {k:?} (known: {})", engine.known_options().join(", "))));
            }
        }
        let port = u.port().unwrap_or(engine.default_port());
        Ok(DbUrl { engine, user, host, port, databases, options, passthrough })
    }

    pub fn option(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(String::as_str)
    }

    pub fn flag(&self, key: &str) -> Result<bool, EngineError> {
        match self.option(key) {
            None => Ok(false),
            Some("true" | "1" | "yes" | "") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(v) => Err(EngineError::Usage(format!("option {key}={v:?}: use true or false"))),
        }
    }

    pub fn bin_dir(&self) -> Option<&str> {
        self.option("bin_dir")
    }

    /// `host:port`, the server as named in errors.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL without secrets (there are none: passwords are refused) and
    /// without the database list, for messages about the server.
    pub fn server_url(&self) -> String {
        let user = self.user.as_deref().map(|u| format!("{}@", encode(u))).unwrap_or_default();
        format!("{}://{user}{}", self.engine, self.server())
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server_url(), self.databases.iter().map(|d| encode(d)).collect::<Vec<_>>().join(","))?;
        let opts: Vec<String> = self
            .options
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .chain(self.passthrough.iter().map(|(k, v)| format!("{k}={}", encode(v))))
            .collect();
        if !opts.is_empty() {
            write!(f, "?{}", opts.join("&"))?;
        }
        Ok(())
    }
}

fn decode(s: &str) -> String {
    ::url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

fn encode(s: &str) -> String {
    ::url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The input with anything between `://` and `@` reduced to the user name.
fn redact(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else { return s.to_string() };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            format!("{scheme}://{}:***@{host}", userinfo.split(':').next().unwrap_or(""))
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_engine() {
        let u = DbUrl::parse("mysql://backup@db1:3307/app,crm").unwrap();
        assert_eq!(
            (u.engine, u.user.as_deref(), u.host.as_str(), u.port),
            (Engine::Mysql, Some("backup"), "db1", 3307)
        );
        assert_eq!(u.databases, vec!["app", "crm"]);
        let u = DbUrl::parse("postgres://postgres@127.0.0.1/shop?sslmode=require").unwrap();
        assert_eq!((u.port, u.option("sslmode")), (5432, Some("require")));
        let u = DbUrl::parse("mongodb://admin@rs1.example:27018/?oplog=true&authSource=admin").unwrap();
        assert!(u.databases.is_empty() && u.flag("oplog").unwrap());
        assert_eq!(u.passthrough, vec![("authSource".to_string(), "admin".to_string())]);
        assert_eq!(u.to_string(), "mongodb://admin@rs1.example:27018/?oplog=true&authSource=admin");
        let u = DbUrl::parse("mysql://root@[::1]:3306/").unwrap();
        assert_eq!((u.host.as_str(), u.server()), ("::1", "[::1]:3306".to_string()));
    }

    #[test]
    fn refuses_passwords_without_echoing_them() {
        let e = DbUrl::parse("mysql://root:hunter2@db/app").unwrap_err().to_string();
        assert!(e.contains("not accepted") && !e.contains("hunter2"), "{e}");
        assert!(e.contains("MYSQL_PWD"), "{e}");
    }

    #[test]
    fn rejects_bad_input_clearly() {
        for (url, want) in [
            ("redis://h/0", "unsupported source scheme"),
            ("mysql:///app", "no host"),
            ("mysql://h/app?color=red", "unknown option \"color\""),
            ("postgres://h/x?no_owner=maybe", ""),
        ] {
            match DbUrl::parse(url) {
                Err(e) => assert!(e.to_string().contains(want), "{url}: {e}"),
                Ok(u) => assert!(u.flag("no_owner").is_err(), "{url} parsed"),
            }
        }
    }

    #[test]
    fn decodes_names() {
        let u = DbUrl::parse("postgres://u%40corp@h/my%20db").unwrap();
        assert_eq!((u.user.as_deref(), u.databases[0].as_str()), (Some("u@corp"), "my db"));
    }
}
