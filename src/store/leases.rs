//! Chain leases: which replica runs a chain's workers, with a fencing token that grows at
//! every takeover. The database's clock (`now()`) is the only clock the lease rows use.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::StoreError;

/// A lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// `chain:<name>`.
    pub name: String,
    /// The replica holding it.
    pub holder: String,
    /// The fencing token of the current term.
    pub token: i64,
    /// When this term began.
    pub acquired_at: DateTime<Utc>,
    /// The last renewal.
    pub renewed_at: DateTime<Utc>,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
}

fn secs(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

/// Takes the lease `name` for `holder` when nobody holds it or its holder let it lapse;
/// returns the new term's token. `None`: someone else holds it.
pub async fn acquire(
    c: &impl GenericClient,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<i64>, StoreError> {
    super::timed("leases.acquire", async move {
        let row = c
            .query_opt(
                "INSERT INTO leases (name, holder, token, acquired_at, renewed_at, expires_at) \
                 VALUES ($1, $2, 1, now(), now(), now() + make_interval(secs => $3)) \
                 ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, \
                   token = leases.token + 1, acquired_at = now(), renewed_at = now(), \
                   expires_at = EXCLUDED.expires_at \
                 WHERE leases.expires_at <= now() \
                 RETURNING token",
                &[&name, &holder, &secs(ttl)],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    })
    .await
}

/// Extends the term `token` of `holder`; false when it lapsed or was taken over.
pub async fn renew(
    c: &impl GenericClient,
    name: &str,
    holder: &str,
    token: i64,
    ttl: Duration,
) -> Result<bool, StoreError> {
    super::timed("leases.renew", async move {
        let n = c
            .execute(
                "UPDATE leases SET renewed_at = now(), expires_at = now() + make_interval(secs => $4) \
                 WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > now()",
                &[&name, &holder, &token, &secs(ttl)],
            )
            .await?;
        Ok(n == 1)
    })
    .await
}

/// Gives the term up at once (on shutdown), so another replica takes over without waiting
/// for it to lapse.
pub async fn release(
    c: &impl GenericClient,
    name: &str,
    holder: &str,
    token: i64,
) -> Result<bool, StoreError> {
    super::timed("leases.release", async move {
        let n = c
            .execute(
                "UPDATE leases SET expires_at = now() \
                 WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > now()",
                &[&name, &holder, &token],
            )
            .await?;
        Ok(n == 1)
    })
    .await
}

/// How the chains should spread: this replica's unexpired leases (by name) and the
/// replicas seen within `ttl` (this one included). Marks this replica as seen.
pub async fn share(
    c: &impl GenericClient,
    holder: &str,
    ttl: Duration,
) -> Result<(Vec<String>, i64), StoreError> {
    super::timed("leases.share", async move {
        let row = c
            .query_one(
                "WITH seen AS ( \
                   INSERT INTO replicas (id, seen_at) VALUES ($1, now()) \
                   ON CONFLICT (id) DO UPDATE SET seen_at = now() \
                 ), gone AS ( \
                   DELETE FROM replicas WHERE seen_at < now() - interval '1 day' \
                 ) \
                 SELECT COALESCE((SELECT array_agg(name ORDER BY name) FROM leases \
                                  WHERE holder = $1 AND expires_at > now()), '{}'), \
                        (SELECT count(*) FROM replicas \
                          WHERE id <> $1 AND seen_at > now() - make_interval(secs => $2)) + 1",
                &[&holder, &secs(ttl)],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    })
    .await
}

/// The most chains one replica should lead: the chains divided over the live replicas,
/// rounded up (so every chain has room).
pub fn fair_share(chains: usize, replicas: i64) -> usize {
    let replicas = usize::try_from(replicas.max(1)).unwrap_or(1);
    chains.div_ceil(replicas)
}

/// Every lease, by name.
pub async fn list(c: &impl GenericClient) -> Result<Vec<LeaseRow>, StoreError> {
    super::timed("leases.list", async move {
        let rows = c
            .query(
                "SELECT name, holder, token, acquired_at, renewed_at, expires_at FROM leases ORDER BY name",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| LeaseRow {
                name: r.get(0),
                holder: r.get(1),
                token: r.get(2),
                acquired_at: r.get(3),
                renewed_at: r.get(4),
                expires_at: r.get(5),
            })
            .collect())
    })
    .await
}

/// The value a chain worker's connection carries as `ctrip.fence`: the lease and the
/// token its writes must still hold. A replica that leads nothing carries a fence no
/// lease matches, so nothing it writes to the chain tables can land.
pub fn fence_value(lease: &str, token: Option<i64>) -> String {
    format!("{lease}@{}", token.unwrap_or(0))
}
