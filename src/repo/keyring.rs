//! Key slot management: unlock, list, add, remove, change password.

use super::error::{RepoError, Result};
use super::keys::{DEFAULT_KDF, KeySlot, MasterKey};
use super::{Repository, json_bytes, random_hex};
use crate::store::DynStore;
use serde::Serialize;

/// A key slot as listed to the user.
#[derive(Debug, Clone, Serialize)]
pub struct SlotInfo {
    pub id: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub current: bool,
}

async fn load_slots(store: &DynStore) -> Result<Vec<(String, KeySlot)>> {
    let mut out = Vec::new();
    for obj in store.list("keys/").await? {
        let id = obj.name.trim_start_matches("keys/").to_string();
        let raw = store.get(&obj.name).await?;
        let slot: KeySlot = serde_json::from_slice(&raw).map_err(|e| RepoError::corrupt(obj.name.clone(), e))?;
        out.push((id, slot));
    }
    Ok(out)
}

/// Try every slot; Argon2 runs once per slot, so keep the slot count small.
pub(super) async fn unlock(store: &DynStore, repo_id: &str, password: &[u8]) -> Result<(MasterKey, String)> {
    let slots = load_slots(store).await?;
    if slots.is_empty() {
        return Err(RepoError::corrupt("keys/", "the repository has no key slots"));
    }
    let repo_id = repo_id.to_string();
    let password = zeroize::Zeroizing::new(password.to_vec());
    // Argon2 is deliberately slow: keep it off the async worker threads.
    let found = tokio::task::spawn_blocking(move || {
        for (id, slot) in slots {
            if let Some(m) = slot.open(&password, &repo_id)? {
                return Ok(Some((m, id)));
            }
        }
        Ok::<_, RepoError>(None)
    })
    .await
    .map_err(|e| RepoError::Pipeline(e.to_string()))??;
    found.ok_or_else(|| RepoError::WrongPassword { location: store.location() })
}

impl Repository {
    pub async fn list_keys(&self) -> Result<Vec<SlotInfo>> {
        let mut v: Vec<SlotInfo> = load_slots(&self.store)
            .await?
            .into_iter()
            .map(|(id, s)| SlotInfo { current: id == self.slot, id, created: s.created })
            .collect();
        v.sort_by_key(|s| s.created);
        Ok(v)
    }

    /// Add a slot for another password; returns its id.
    pub async fn add_key(&self, password: &[u8]) -> Result<String> {
        let master = self.master.clone();
        let id = random_hex(16)?;
        let repo_id = self.id.clone();
        let pw = zeroize::Zeroizing::new(password.to_vec());
        let slot = tokio::task::spawn_blocking(move || KeySlot::create(&master, &pw, &repo_id, DEFAULT_KDF))
            .await
            .map_err(|e| RepoError::Pipeline(e.to_string()))??;
        self.store.put(&format!("keys/{id}"), json_bytes(&slot)?).await?;
        Ok(id)
    }

    /// Remove a slot by id (or unique prefix). The slot in use cannot be removed.
    pub async fn remove_key(&self, id_prefix: &str) -> Result<String> {
        let slots = load_slots(&self.store).await?;
        let found: Vec<&String> = slots.iter().map(|(id, _)| id).filter(|id| id.starts_with(id_prefix)).collect();
        let id = match found.as_slice() {
            [one] => (*one).clone(),
            [] => return Err(RepoError::KeyNotFound(id_prefix.to_string())),
            _ => {
                return Err(RepoError::Invalid { what: "key id".into(), reason: format!("{id_prefix} is ambiguous") });
            }
        };
        if slots.len() == 1 {
            return Err(RepoError::LastKey);
        }
        if id == self.slot {
            return Err(RepoError::CurrentKey);
        }
        self.store.delete(&format!("keys/{id}")).await?;
        Ok(id)
    }

    /// Replace the slot in use with one for `new_password`. The new slot is
    /// stored before the old one is deleted, so a crash leaves both, not neither.
    pub async fn change_password(&mut self, new_password: &[u8]) -> Result<String> {
        let new_id = self.add_key(new_password).await?;
        let old = std::mem::replace(&mut self.slot, new_id.clone());
        self.store.delete(&format!("keys/{old}")).await?;
        Ok(new_id)
    }
}
