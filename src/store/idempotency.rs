//! Idempotency keys: claimed in the same transaction as the operation they protect, so a
//! crash either keeps both the result and the stored response or neither.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::StoreError;

/// How long a key is remembered; the janitor purges older ones.
pub const KEY_TTL_HOURS: i32 = 24;

/// The outcome of claiming a key.
#[derive(Debug)]
pub enum Claim {
    /// First use: run the operation, then [`complete`] in the same transaction.
    New,
    /// Seen before with the same request: answer with the stored response.
    Replay {
        /// Stored HTTP status.
        status: u16,
        /// Stored response body.
        body: Vec<u8>,
    },
    /// Seen before with a different request.
    Mismatch,
    /// Claimed by a request whose response is not stored yet.
    InProgress,
}

/// Claims `key` for this merchant and request hash. A concurrent claim of the same key
/// waits on the unique index until the first transaction ends, then sees its result.
pub async fn claim(
    c: &impl GenericClient,
    merchant_id: Uuid,
    key: &str,
    request_hash: &[u8],
) -> Result<Claim, StoreError> {
    super::timed("idempotency.claim", async move {
        let insert = c
        .prepare_cached(
            "INSERT INTO idempotency_keys (merchant_id, key, request_hash) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .await?;
        if c.execute(&insert, &[&merchant_id, &key, &request_hash])
            .await?
            == 1
        {
            return Ok(Claim::New);
        }
        stored(c, merchant_id, key, request_hash).await
    })
    .await
}

/// Judges a key that was already claimed, from its stored row.
pub fn judge(
    request_hash: &[u8],
    stored_hash: Vec<u8>,
    status: Option<i16>,
    body: Option<Vec<u8>>,
) -> Result<Claim, StoreError> {
    if stored_hash != request_hash {
        return Ok(Claim::Mismatch);
    }
    match (status, body) {
        (Some(s), Some(body)) => Ok(Claim::Replay {
            status: u16::try_from(s).map_err(|_| StoreError::Corrupt("idempotency_keys"))?,
            body,
        }),
        _ => Ok(Claim::InProgress),
    }
}

/// Reads and judges a key known to be claimed already.
pub async fn stored(
    c: &impl GenericClient,
    merchant_id: Uuid,
    key: &str,
    request_hash: &[u8],
) -> Result<Claim, StoreError> {
    let row = c
        .query_one(
            "SELECT request_hash, response_status, response_body FROM idempotency_keys \
             WHERE merchant_id = $1 AND key = $2",
            &[&merchant_id, &key],
        )
        .await?;
    judge(request_hash, row.get(0), row.get(1), row.get(2))
}

/// Stores the response of a claimed key.
pub async fn complete(
    c: &impl GenericClient,
    merchant_id: Uuid,
    key: &str,
    status: u16,
    body: &[u8],
) -> Result<(), StoreError> {
    super::timed("idempotency.complete", async move {
        let stmt = c
            .prepare_cached(
                "UPDATE idempotency_keys SET response_status = $3, response_body = $4 \
             WHERE merchant_id = $1 AND key = $2",
            )
            .await?;
        let status = i16::try_from(status).map_err(|_| StoreError::Corrupt("idempotency_keys"))?;
        c.execute(&stmt, &[&merchant_id, &key, &status, &body])
            .await?;
        Ok(())
    })
    .await
}

/// Deletes keys older than `max_age_hours`; returns how many.
pub async fn purge_older_than(
    c: &impl GenericClient,
    max_age_hours: i32,
) -> Result<u64, StoreError> {
    super::timed("idempotency.purge_older_than", async move {
        Ok(c.execute(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)",
            &[&max_age_hours],
        )
        .await?)
    })
    .await
}

/// Releases a claim whose operation failed, so that a retry can run it.
pub async fn release(
    c: &impl GenericClient,
    merchant_id: Uuid,
    key: &str,
) -> Result<(), StoreError> {
    super::timed("idempotency.release", async move {
    c.execute(
        "DELETE FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 AND response_status IS NULL",
        &[&merchant_id, &key],
    )
    .await?;
    Ok(())
    })
    .await
}
