//! Drill results, stored sealed under `drills/` like other metadata, so the
//! history of restore drills travels with the backups it proves.

use super::error::{RepoError, Result};
use super::{MetaKind, Repository};

/// Store one drill result (JSON); returns its object name.
pub async fn save(repo: &Repository, report: &serde_json::Value) -> Result<String> {
    let bytes = serde_json::to_vec(report).map_err(|e| RepoError::Pipeline(format!("serialise: {e}")))?;
    let id = repo.put_meta(MetaKind::Drill, "drills", &bytes).await?;
    Ok(format!("drills/{}", hex::encode(id)))
}

/// Every readable drill result; damaged ones are skipped with a warning.
pub async fn list(repo: &Repository) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for obj in repo.store().list("drills/").await? {
        match repo.get_meta(MetaKind::Drill, &obj.name).await {
            Ok(plain) => match serde_json::from_slice(&plain) {
                Ok(v) => out.push(v),
                Err(e) => tracing::warn!("skipping drill record {}: {e}", obj.name),
            },
            Err(e) => tracing::warn!("skipping drill record {}: {}", obj.name, super::error::chain(&e)),
        }
    }
    Ok(out)
}
