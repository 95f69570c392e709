//! Key slot management: unlock, list, add, remove, change password.

use super::error::{RepoError, Result};
use super::keys::{DEFAULT_KDF, KeySlot, MasterKey};
use super::{Repository, SMALL_OBJECT_LIMIT, json_bytes, random_hex};
use crate::store::{DynStore, StoreError};
use serde::Serialize;

/// A key slot as listed to the user.
#[derive(Debug, Clone, Serialize)]
pub struct SlotInfo {
    pub id: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub current: bool,
}

/// Every slot under `keys/`, each with the reason it must not be tried, if
/// any. Slots are plaintext that anyone with write access to the store can
/// plant, so one bad slot is skipped (with a warning where it matters), never
/// a reason to refuse the good ones.
async fn load_slots(store: &DynStore) -> Result<Vec<(String, Result<KeySlot, String>)>> {
    let mut out = Vec::new();
    for obj in store.list("keys/").await? {
        let id = obj.name.trim_start_matches("keys/").to_string();
        let slot = match store.get_limited(&obj.name, SMALL_OBJECT_LIMIT).await {
            Ok(raw) => serde_json::from_slice::<KeySlot>(&raw)
                .map_err(|e| format!("not a key slot: {e}"))
                .and_then(|s| s.check().map(|()| s)),
            // Removed by `key remove` or `key passwd` since the listing.
            Err(e) if e.is_not_found() => continue,
            Err(e @ StoreError::TooLarge { .. }) => Err(e.to_string()),
            Err(e) => return Err(e.into()),
        };
        out.push((id, slot));
    }
    Ok(out)
}

/// The usable slots; a warning names each one skipped.
fn usable(slots: Vec<(String, Result<KeySlot, String>)>) -> Vec<(String, KeySlot)> {
    let mut ok = Vec::new();
    for (id, slot) in slots {
        match slot {
            Ok(s) => ok.push((id, s)),
            Err(why) => tracing::warn!("ignoring key slot keys/{id}: {why}"),
        }
    }
    ok
}

/// Try every usable slot; Argon2 runs once per slot, so keep the slot count small.
pub(super) async fn unlock(store: &DynStore, repo_id: &str, password: &[u8]) -> Result<(MasterKey, String)> {
    let all = load_slots(store).await?;
    let listed = all.len();
    let slots = usable(all);
    if slots.is_empty() {
        let why = if listed == 0 { "the repository has no key slots" } else { "no key slot is usable" };
        return Err(RepoError::corrupt("keys/", why));
    }
    let repo_id = repo_id.to_string();
    let password = zeroize::Zeroizing::new(password.to_vec());
    // Argon2 is deliberately slow: keep it off the async worker threads.
    let found = tokio::task::spawn_blocking(move || {
        for (id, slot) in slots {
            match slot.open(&password, &repo_id) {
                Ok(Some(m)) => return Some((m, id)),
                Ok(None) => {}
                Err(e) => tracing::warn!("ignoring key slot keys/{id}: {}", super::error::chain(&e)),
            }
        }
        None
    })
    .await
    .map_err(|e| RepoError::Pipeline(e.to_string()))?;
    found.ok_or_else(|| RepoError::WrongPassword { location: store.location() })
}

impl Repository {
    pub async fn list_keys(&self) -> Result<Vec<SlotInfo>> {
        let mut v: Vec<SlotInfo> = usable(load_slots(&self.store).await?)
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
        // Unusable slots can be removed too: that is how a planted one goes.
        let slots = load_slots(&self.store).await?;
        let found: Vec<&String> = slots.iter().map(|(id, _)| id).filter(|id| id.starts_with(id_prefix)).collect();
        let id = match found.as_slice() {
            [one] => (*one).clone(),
            [] => return Err(RepoError::KeyNotFound(id_prefix.to_string())),
            _ => {
                return Err(RepoError::Invalid { what: "key id".into(), reason: format!("{id_prefix} is ambiguous") });
            }
        };
        let usable_others = slots.iter().filter(|(other, s)| *other != id && s.is_ok()).count();
        if usable_others == 0 {
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
