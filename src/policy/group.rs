//! Which snapshots retention rules are applied to together.
//!
//! Like restic's `forget --group-by` (default `host,paths`), snapshots are
//! split into groups and the `keep_*` rules apply to each group on its own.
//! drtool's default is `host,name`: a snapshot's name plays the part of
//! restic's paths (a policy names its snapshots after itself), and the host
//! keeps one machine's retention from forgetting another machine's snapshots
//! of the same name (one policy deployed on several servers, or two hosts
//! backing up the same path).

use serde::{Deserialize, Serialize};
use std::fmt;

/// One property snapshots can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupKey {
    /// The host the backup ran on (`backup --host`, a policy's `host`).
    Host,
    /// The snapshot name (a policy's name, `backup --name`).
    Name,
    /// The set of tags, order and repetition ignored.
    Tags,
}

impl GroupKey {
    pub const ALL: [GroupKey; 3] = [GroupKey::Host, GroupKey::Name, GroupKey::Tags];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupKey::Host => "host",
            GroupKey::Name => "name",
            GroupKey::Tags => "tags",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupByError {
    #[error("unknown group key {0:?}: expected a comma-separated list of host, name, tags (or \"\" for one group)")]
    UnknownKey(String),
    #[error("group key {0:?} is given twice")]
    Repeated(&'static str),
}

/// The keys snapshots are grouped by; no key at all puts every snapshot in
/// one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupBy {
    keys: Vec<GroupKey>,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy { keys: vec![GroupKey::Host, GroupKey::Name] }
    }
}

impl GroupBy {
    /// From a list as written in a policy (`None`: the default, host and name).
    pub fn from_keys(keys: Option<&[GroupKey]>) -> Result<GroupBy, GroupByError> {
        let Some(keys) = keys else { return Ok(GroupBy::default()) };
        let mut sorted = keys.to_vec();
        sorted.sort();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(GroupByError::Repeated(w[0].as_str()));
        }
        Ok(GroupBy { keys: sorted })
    }

    /// From restic's command-line form: "host,name", "name", "" (one group).
    pub fn parse(text: &str) -> Result<GroupBy, GroupByError> {
        let mut keys = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let key = GroupKey::ALL
                .into_iter()
                .find(|k| k.as_str() == part)
                .ok_or_else(|| GroupByError::UnknownKey(part.to_string()))?;
            keys.push(key);
        }
        GroupBy::from_keys(Some(&keys))
    }

    pub fn keys(&self) -> &[GroupKey] {
        &self.keys
    }

    pub fn has(&self, key: GroupKey) -> bool {
        self.keys.contains(&key)
    }

    /// The group a snapshot with these properties belongs to.
    pub fn group_of(&self, host: &str, name: &str, tags: &[String]) -> GroupId {
        let mut tags = tags.to_vec();
        tags.sort();
        tags.dedup();
        GroupId {
            host: self.has(GroupKey::Host).then(|| host.to_string()),
            name: self.has(GroupKey::Name).then(|| name.to_string()),
            tags: self.has(GroupKey::Tags).then_some(tags),
        }
    }
}

/// The values of the grouping keys that a group's snapshots share; a key
/// not grouped by is absent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupId {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if let Some(n) = &self.name {
            parts.push(format!("name {n}"));
        }
        if let Some(t) = &self.tags {
            parts.push(if t.is_empty() { "no tags".to_string() } else { format!("tags {}", t.join(",")) });
        }
        if parts.is_empty() { write!(f, "all snapshots") } else { write!(f, "{}", parts.join(", ")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_restic_style_lists() {
        assert_eq!(GroupBy::parse("host,name").unwrap(), GroupBy::default());
        assert_eq!(GroupBy::parse("name , host").unwrap(), GroupBy::default());
        assert_eq!(GroupBy::parse("").unwrap().keys(), &[] as &[GroupKey]);
        assert_eq!(GroupBy::parse("tags").unwrap().keys(), &[GroupKey::Tags]);
        assert_eq!(GroupBy::parse("hostname"), Err(GroupByError::UnknownKey("hostname".into())));
        assert_eq!(GroupBy::parse("name,name"), Err(GroupByError::Repeated("name")));
    }

    #[test]
    fn groups_ignore_tag_order_and_absent_keys() {
        let g = GroupBy::parse("name,tags").unwrap();
        let a = g.group_of("web1", "db", &["b".into(), "a".into()]);
        let b = g.group_of("web2", "db", &["a".into(), "b".into(), "a".into()]);
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "name db, tags a,b");
        assert_eq!(GroupBy::parse("").unwrap().group_of("h", "n", &[]).to_string(), "all snapshots");
        assert_ne!(GroupBy::default().group_of("web1", "db", &[]), GroupBy::default().group_of("web2", "db", &[]));
    }
}
