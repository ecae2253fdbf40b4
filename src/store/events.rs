//! The event outbox.

use deadpool_postgres::GenericClient;

use super::StoreError;

/// Events waiting in the outbox and the age of the oldest, in seconds.
pub async fn backlog(c: &impl GenericClient) -> Result<(u64, f64), StoreError> {
    let row = c
        .query_one(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) FROM events",
            &[],
        )
        .await?;
    let n: i64 = row.get(0);
    Ok((u64::try_from(n).unwrap_or(0), row.get(1)))
}
