//! Copies of the merchant accounts' extended public keys, as the signer gave them.

use deadpool_postgres::GenericClient;

use super::StoreError;

/// The stored key of `account`.
pub async fn get(c: &impl GenericClient, account: u32) -> Result<Option<String>, StoreError> {
    super::timed("account_keys.get", async move {
        let account = i64::from(account);
        let row = c
            .query_opt(
                "SELECT xpub FROM account_keys WHERE account_index = $1",
                &[&account],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    })
    .await
}

/// Stores the key of `account` (the first copy stays: a later one is never written over
/// it).
pub async fn insert(c: &impl GenericClient, account: u32, xpub: &str) -> Result<(), StoreError> {
    super::timed("account_keys.insert", async move {
        let account = i64::from(account);
        c.execute(
            "INSERT INTO account_keys (account_index, xpub) VALUES ($1, $2) \
             ON CONFLICT (account_index) DO NOTHING",
            &[&account, &xpub],
        )
        .await?;
        Ok(())
    })
    .await
}
