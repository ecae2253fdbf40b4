//! Merchants and their derivation-index sequences.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::StoreError;

/// A merchant row.
#[derive(Debug, Clone)]
pub struct Merchant {
    /// Id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// BIP-44 account of the merchant's deposit addresses.
    pub account_index: u32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Creates a merchant and its private derivation-index sequence. Call inside a transaction.
pub async fn create(c: &impl GenericClient, name: &str) -> Result<Merchant, StoreError> {
    super::timed("merchants.create", async move {
        let id = Uuid::now_v7();
        let row = c
            .query_one(
                "INSERT INTO merchants (id, name, account_index) \
             VALUES ($1, $2, nextval('merchant_account_seq')) RETURNING account_index, created_at",
                &[&id, &name],
            )
            .await?;
        let account: i32 = row.get(0);
        // The name is built from an integer we just read back, never from input.
        c.batch_execute(&format!(
            "CREATE SEQUENCE deposit_index_{account} AS integer MINVALUE 0 START WITH 0"
        ))
        .await?;
        Ok(Merchant {
            id,
            name: name.to_string(),
            account_index: u32::try_from(account).map_err(|_| StoreError::Corrupt("merchants"))?,
            created_at: row.get(1),
        })
    })
    .await
}

/// Whether a merchant exists.
pub async fn exists(c: &impl GenericClient, id: Uuid) -> Result<bool, StoreError> {
    super::timed("merchants.exists", async move {
        Ok(c.query_opt("SELECT 1 FROM merchants WHERE id = $1", &[&id])
            .await?
            .is_some())
    })
    .await
}

/// Hands out the merchant's next derivation index. Sequences never return a value twice,
/// even when the surrounding transaction rolls back, so an index is never reused.
pub async fn next_derivation_index(
    c: &impl GenericClient,
    account_index: u32,
) -> Result<u32, StoreError> {
    super::timed("merchants.next_derivation_index", async move {
        let stmt = c
            .prepare_cached("SELECT nextval(('deposit_index_' || $1::int)::regclass)")
            .await?;
        let account = i32::try_from(account_index).map_err(|_| StoreError::Corrupt("merchants"))?;
        let v: i64 = c.query_one(&stmt, &[&account]).await?.get(0);
        u32::try_from(v).map_err(|_| StoreError::Corrupt("deposit index sequence"))
    })
    .await
}
