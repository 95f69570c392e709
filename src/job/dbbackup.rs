//! Feeding a database source's streams into one snapshot.

use super::JobError;
use super::backup::FeedResult;
use crate::engine::{DbUrl, Password};
use crate::repo::RepoError;
use crate::repo::snapshot::{Item, SourceInfo};
use crate::repo::writer::Feeder;
use crate::source::command::ChildHandle;
use crate::source::db::{self, DumpError};
use std::collections::BTreeMap;

/// The snapshot name used when none is given: the server and databases, no options.
pub fn default_name(url: &DbUrl) -> String {
    format!("{}/{}", url.server_url(), url.databases.join(","))
}

pub(super) fn feed_database(
    feeder: &mut Feeder,
    url: &DbUrl,
    password: &Password,
    child: &ChildHandle,
) -> Result<FeedResult, JobError> {
    let mut source = db::prepare(url, password)?;
    let mut items = Vec::new();
    let mut streams = Vec::new();
    let mut counts = BTreeMap::new();
    for i in 0..source.streams().len() {
        let stream = source.streams()[i].clone();
        tracing::info!(stream = %stream.name, "dumping");
        let mut stored = None;
        let mut failed: Option<RepoError> = None;
        let facts = source.dump(i, child, &mut |reader| match feeder.write_stream(reader) {
            Ok((s, _)) => {
                stored = Some(s);
                Ok(())
            }
            Err(e) => {
                failed = Some(e);
                Err(std::io::Error::other("repository write failed"))
            }
        });
        let facts = match facts {
            Ok(f) => f,
            Err(DumpError::Consumer) => {
                return Err(failed.map_or_else(|| JobError::Dump(DumpError::Consumer), JobError::Repo));
            }
            Err(e) => return Err(e.into()),
        };
        let s = stored.ok_or(JobError::Dump(DumpError::Consumer))?;
        counts.extend(facts.counts.iter().map(|(k, v)| (k.clone(), *v)));
        streams.push(serde_json::json!({
            "name": stream.name,
            "database": stream.database,
            "format": stream.format.as_str(),
            "size": s.size,
            "facts": facts.details,
            "counts": facts.counts,
        }));
        items.push(Item::Stream {
            name: stream.name.clone(),
            size: s.size,
            chunks: s.chunks,
            database: stream.database.clone(),
            format: Some(stream.format.as_str().to_string()),
        });
    }
    let mut details = source.details();
    if let Some(obj) = details.as_object_mut() {
        obj.insert("streams".into(), serde_json::Value::Array(streams));
    }
    Ok(FeedResult {
        items,
        source: SourceInfo { kind: url.engine.as_str().to_string(), details },
        warnings: vec![],
        fingerprints: serde_json::json!({ "counts": counts }),
    })
}
