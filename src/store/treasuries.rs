//! Merchants' own treasuries, per chain.

use alloy::primitives::Address;
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::payments::lower_hex;
use super::StoreError;

/// Sets (or replaces) a merchant's treasury on `chain`.
pub async fn set(
    c: &impl GenericClient,
    merchant_id: Uuid,
    chain: &str,
    address: &Address,
) -> Result<(), StoreError> {
    super::timed("treasuries.set", async move {
    c.execute(
        "INSERT INTO merchant_treasuries (merchant_id, chain, address) VALUES ($1, $2, $3) \
         ON CONFLICT (merchant_id, chain) DO UPDATE SET address = EXCLUDED.address, updated_at = now()",
        &[&merchant_id, &chain, &lower_hex(address)],
    )
    .await?;
    Ok(())
    })
    .await
}

/// Every merchant treasury on `chain` (what the in-process signer may sweep to besides
/// the chain's own).
pub async fn on_chain(c: &impl GenericClient, chain: &str) -> Result<Vec<Address>, StoreError> {
    super::timed("treasuries.on_chain", async move {
        let rows = c
            .query(
                "SELECT DISTINCT address FROM merchant_treasuries WHERE chain = $1",
                &[&chain],
            )
            .await?;
        rows.iter()
            .map(|r| {
                r.get::<_, String>(0)
                    .parse()
                    .map_err(|_| StoreError::Corrupt("merchant_treasuries"))
            })
            .collect()
    })
    .await
}

/// Removes a merchant's treasury on `chain`; `false` when there was none.
pub async fn delete(
    c: &impl GenericClient,
    merchant_id: Uuid,
    chain: &str,
) -> Result<bool, StoreError> {
    super::timed("treasuries.delete", async move {
        let n = c
            .execute(
                "DELETE FROM merchant_treasuries WHERE merchant_id = $1 AND chain = $2",
                &[&merchant_id, &chain],
            )
            .await?;
        Ok(n > 0)
    })
    .await
}

/// A merchant's treasuries by chain.
pub async fn list(
    c: &impl GenericClient,
    merchant_id: Uuid,
) -> Result<Vec<(String, Address)>, StoreError> {
    super::timed("treasuries.list", async move {
        let rows = c
        .query(
            "SELECT chain, address FROM merchant_treasuries WHERE merchant_id = $1 ORDER BY chain",
            &[&merchant_id],
        )
        .await?;
        rows.iter()
            .map(|r| {
                let address: String = r.get(1);
                Ok((
                    r.get(0),
                    address
                        .parse()
                        .map_err(|_| StoreError::Corrupt("merchant_treasuries"))?,
                ))
            })
            .collect()
    })
    .await
}
