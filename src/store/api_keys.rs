//! API keys: stored as SHA-256 hashes, found by their public prefix.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::StoreError;
use crate::domain::apikey::NewApiKey;

/// What authentication needs to know about a key.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// Key id.
    pub id: Uuid,
    /// Owner.
    pub merchant_id: Uuid,
    /// Owner's BIP-44 account.
    pub account_index: u32,
    /// SHA-256 of the key.
    pub key_hash: Vec<u8>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Stores a new key for a merchant and returns its id.
pub async fn insert(
    c: &impl GenericClient,
    merchant_id: Uuid,
    key: &NewApiKey,
) -> Result<Uuid, StoreError> {
    super::timed("api_keys.insert", async move {
        let id = Uuid::now_v7();
        c.execute(
            "INSERT INTO api_keys (id, merchant_id, prefix, key_hash) VALUES ($1, $2, $3, $4)",
            &[&id, &merchant_id, &key.prefix, &&key.hash[..]],
        )
        .await?;
        Ok(id)
    })
    .await
}

/// Finds a key by its lookup prefix.
pub async fn find_by_prefix(
    c: &impl GenericClient,
    prefix: &str,
) -> Result<Option<StoredKey>, StoreError> {
    super::timed("api_keys.find_by_prefix", async move {
        let stmt = c
            .prepare_cached(
                "SELECT k.id, k.merchant_id, m.account_index, k.key_hash, k.revoked_at \
             FROM api_keys k JOIN merchants m ON m.id = k.merchant_id WHERE k.prefix = $1",
            )
            .await?;
        let Some(row) = c.query_opt(&stmt, &[&prefix]).await? else {
            return Ok(None);
        };
        let account: i32 = row.get(2);
        Ok(Some(StoredKey {
            id: row.get(0),
            merchant_id: row.get(1),
            account_index: u32::try_from(account).map_err(|_| StoreError::Corrupt("merchants"))?,
            key_hash: row.get(3),
            revoked_at: row.get(4),
        }))
    })
    .await
}

/// Revokes a key; returns false when no such active key exists.
pub async fn revoke(c: &impl GenericClient, id: Uuid) -> Result<bool, StoreError> {
    super::timed("api_keys.revoke", async move {
        let n = c
            .execute(
                "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
                &[&id],
            )
            .await?;
        Ok(n == 1)
    })
    .await
}
