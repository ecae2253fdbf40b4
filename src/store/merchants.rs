//! Merchants and their derivation-index sequences.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::StoreError;
use crate::domain::checkout::{Accent, Branding, TokenQr};

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

/// What the merchant's payers see of it.
pub async fn branding(c: &impl GenericClient, id: Uuid) -> Result<Option<Branding>, StoreError> {
    super::timed("merchants.branding", async move {
        let stmt = c
            .prepare_cached("SELECT name, accent_color, token_qr FROM merchants WHERE id = $1")
            .await?;
        let Some(row) = c.query_opt(&stmt, &[&id]).await? else {
            return Ok(None);
        };
        let accent: Option<String> = row.get(1);
        let token_qr: String = row.get(2);
        Ok(Some(Branding {
            name: row.get(0),
            accent: match accent {
                Some(a) => Some(Accent::parse(&a).ok_or(StoreError::Corrupt("merchants"))?),
                None => None,
            },
            token_qr: TokenQr::parse(&token_qr).ok_or(StoreError::Corrupt("merchants"))?,
        }))
    })
    .await
}

/// Changes what the merchant's payers see; a `None` leaves that part as it is (an accent
/// of `Some(None)` returns to the page's default). False when there is no such merchant.
pub async fn set_branding(
    c: &impl GenericClient,
    id: Uuid,
    name: Option<&str>,
    accent: Option<Option<Accent>>,
    token_qr: Option<TokenQr>,
) -> Result<bool, StoreError> {
    super::timed("merchants.set_branding", async move {
        let accent_text = accent.map(|a| a.map(|a| format!("#{}", a.hex())));
        let n = c
            .execute(
                "UPDATE merchants SET name = COALESCE($2, name), \
                        accent_color = CASE WHEN $3 THEN $4 ELSE accent_color END, \
                        token_qr = COALESCE($5, token_qr) \
                  WHERE id = $1",
                &[
                    &id,
                    &name,
                    &accent_text.is_some(),
                    &accent_text.flatten(),
                    &token_qr.map(TokenQr::as_str),
                ],
            )
            .await?;
        Ok(n == 1)
    })
    .await
}

/// Reserves `n` of the merchant's next derivation indexes, in ascending order. Sequences
/// never return a value twice, even when the surrounding transaction rolls back, so an
/// index is never reused; one that is reserved and never used is a gap.
pub async fn reserve_derivation_indexes(
    c: &impl GenericClient,
    account_index: u32,
    n: u32,
) -> Result<Vec<u32>, StoreError> {
    super::timed("merchants.reserve_derivation_indexes", async move {
        let stmt = c
            .prepare_cached(
                "SELECT nextval(('deposit_index_' || $1::int)::regclass) \
                 FROM generate_series(1, $2::int)",
            )
            .await?;
        let account = i32::try_from(account_index).map_err(|_| StoreError::Corrupt("merchants"))?;
        let n = i32::try_from(n).map_err(|_| StoreError::Corrupt("reservation size"))?;
        let mut out = c
            .query(&stmt, &[&account, &n])
            .await?
            .iter()
            .map(|r| {
                u32::try_from(r.get::<_, i64>(0))
                    .map_err(|_| StoreError::Corrupt("deposit index sequence"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_unstable();
        Ok(out)
    })
    .await
}
