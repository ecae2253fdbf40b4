//! Webhook endpoints, the delivery queue and the attempt log.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::StoreError;

/// An endpoint as stored (the secrets stay inside the gateway).
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    /// Id.
    pub id: Uuid,
    /// Target URL.
    pub url: String,
    /// Free text.
    pub description: Option<String>,
    /// Subscribed event types; empty means all.
    pub events: Vec<String>,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// When the previous secret stops signing, during a rotation.
    pub previous_expires_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

const ENDPOINT_COLUMNS: &str =
    "id, url, description, events, status, disabled_reason, previous_expires_at, created_at";

fn endpoint_of(r: &tokio_postgres::Row) -> WebhookEndpoint {
    WebhookEndpoint {
        id: r.get(0),
        url: r.get(1),
        description: r.get(2),
        events: r.get(3),
        status: r.get(4),
        disabled_reason: r.get(5),
        previous_expires_at: r.get(6),
        created_at: r.get(7),
    }
}

/// Creates an endpoint.
pub async fn create_endpoint(
    c: &impl GenericClient,
    merchant_id: Uuid,
    url: &str,
    events: &[String],
    description: Option<&str>,
    secret: &str,
) -> Result<WebhookEndpoint, StoreError> {
    super::timed("webhooks.create_endpoint", async move {
        let row = c
            .query_one(
                &format!(
                "INSERT INTO webhook_endpoints (id, merchant_id, url, events, description, secret) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ENDPOINT_COLUMNS}"
            ),
                &[
                    &Uuid::now_v7(),
                    &merchant_id,
                    &url,
                    &events,
                    &description,
                    &secret,
                ],
            )
            .await?;
        Ok(endpoint_of(&row))
    })
    .await
}

/// A merchant's endpoints, newest first.
pub async fn list_endpoints(
    c: &impl GenericClient,
    merchant_id: Uuid,
) -> Result<Vec<WebhookEndpoint>, StoreError> {
    super::timed("webhooks.list_endpoints", async move {
        Ok(c.query(
            &format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
                 WHERE merchant_id = $1 AND deleted_at IS NULL ORDER BY id DESC"
            ),
            &[&merchant_id],
        )
        .await?
        .iter()
        .map(endpoint_of)
        .collect())
    })
    .await
}

/// Deletes an endpoint; its undelivered deliveries become dead. False when not found.
pub async fn delete_endpoint(
    c: &impl GenericClient,
    merchant_id: Uuid,
    id: Uuid,
) -> Result<bool, StoreError> {
    super::timed("webhooks.delete_endpoint", async move {
    let n = c
        .execute(
            "UPDATE webhook_endpoints SET deleted_at = now() WHERE merchant_id = $1 AND id = $2 AND deleted_at IS NULL",
            &[&merchant_id, &id],
        )
        .await?;
    if n == 1 {
        c.execute(
            "UPDATE webhook_deliveries SET status = 'dead', completed_at = now(), claim_token = NULL \
             WHERE endpoint_id = $1 AND status IN ('pending', 'failed')",
            &[&id],
        )
        .await?;
    }
    Ok(n == 1)
    })
    .await
}

/// Replaces the secret; the old one keeps signing for `grace_seconds`.
pub async fn rotate_secret(
    c: &impl GenericClient,
    merchant_id: Uuid,
    id: Uuid,
    new_secret: &str,
    grace_seconds: u64,
) -> Result<Option<WebhookEndpoint>, StoreError> {
    super::timed("webhooks.rotate_secret", async move {
    let grace = grace_seconds as f64;
    let row = c
        .query_opt(
            &format!(
                "UPDATE webhook_endpoints SET previous_secret = secret, secret = $3, \
                   previous_expires_at = now() + make_interval(secs => $4) \
                 WHERE merchant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING {ENDPOINT_COLUMNS}"
            ),
            &[&merchant_id, &id, &new_secret, &grace],
        )
        .await?;
    Ok(row.as_ref().map(endpoint_of))
    })
    .await
}

/// Creates a delivery of an event for every enabled endpoint of the merchant that
/// subscribes to its type. Called in the transaction that writes the event.
pub async fn fan_out(
    c: &impl GenericClient,
    merchant_id: Uuid,
    payment_id: Uuid,
    event_id: &str,
    event_type: &str,
    sequence: i32,
) -> Result<u64, StoreError> {
    super::timed("webhooks.fan_out", async move {
    let stmt = c
        .prepare_cached(
            "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, merchant_id, payment_id, sequence, event_type) \
             SELECT gen_random_uuid(), e.id, $3, $1, $2, $4, $5 FROM webhook_endpoints e \
             WHERE e.merchant_id = $1 AND e.status = 'enabled' AND e.deleted_at IS NULL \
               AND (cardinality(e.events) = 0 OR $5 = ANY(e.events))",
        )
        .await?;
    Ok(c.execute(
        &stmt,
        &[&merchant_id, &payment_id, &event_id, &sequence, &event_type],
    )
    .await?)
    })
    .await
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Delivery id.
    pub id: Uuid,
    /// The event id (the `webhook-id`).
    pub event_id: String,
    /// Attempts before this one.
    pub attempts: u32,
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// Its URL.
    pub url: String,
    /// The current secret.
    pub secret: String,
    /// The previous secret, while its grace period lasts.
    pub previous_secret: Option<String>,
    /// The body to send.
    pub body: String,
    /// The payment the event is about (for logs).
    pub payment_id: Uuid,
    /// The claim's fencing token.
    pub claim_token: Uuid,
    /// The trace context of what wrote the event (a request or a worker tick).
    pub event_traceparent: Option<String>,
    /// The trace context of the request that created the payment.
    pub payment_traceparent: Option<String>,
    /// When the event was written to the outbox.
    pub event_created_at: DateTime<Utc>,
}

/// Locks the merchant's row (serialising endpoint creation per merchant) and counts its
/// endpoints that are not deleted.
pub async fn lock_and_count_endpoints(
    c: &impl GenericClient,
    merchant_id: Uuid,
) -> Result<u64, StoreError> {
    super::timed("webhooks.lock_and_count_endpoints", async move {
        c.execute(
            "SELECT 1 FROM merchants WHERE id = $1 FOR UPDATE",
            &[&merchant_id],
        )
        .await?;
        let n: i64 = c
        .query_one(
            "SELECT count(*) FROM webhook_endpoints WHERE merchant_id = $1 AND deleted_at IS NULL",
            &[&merchant_id],
        )
        .await?
        .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    })
    .await
}

/// Claims up to `limit` due deliveries, leasing them for `lease_seconds` so that no other
/// worker (in this process or another sharing the database) takes them meanwhile. A
/// delivery waits while an earlier event of the same payment to the same endpoint is
/// undelivered, so each endpoint sees a payment's events in sequence order. No endpoint
/// gets more than `per_endpoint` attempts in flight (counting live leases of every worker),
/// so one black-holed endpoint cannot hold the whole pool. Each claim carries a fresh
/// fencing token: only the holder of the newest claim may record the outcome.
pub async fn claim_due(
    c: &impl GenericClient,
    limit: i64,
    lease_seconds: f64,
    per_endpoint: i64,
) -> Result<Vec<Claimed>, StoreError> {
    super::timed("webhooks.claim_due", async move {
    let stmt = c
        .prepare_cached(
            // Endpoints whose in-flight attempts already fill their slots are left out of
            // the scan, so one endpoint's backlog never hides the others' due deliveries;
            // within the scanned rows, each endpoint gets at most its free slots.
            "WITH full_eps AS ( \
               SELECT endpoint_id FROM webhook_deliveries \
               WHERE claim_token IS NOT NULL AND status IN ('pending', 'failed') AND next_attempt_at > now() \
               GROUP BY endpoint_id HAVING count(*) >= $3 \
             ), due AS ( \
               SELECT d.id, d.endpoint_id, d.next_attempt_at FROM webhook_deliveries d \
               JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.status = 'enabled' AND e.deleted_at IS NULL \
               WHERE d.status IN ('pending', 'failed') AND d.next_attempt_at <= now() \
                 AND d.endpoint_id NOT IN (SELECT endpoint_id FROM full_eps) \
                 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p \
                   WHERE p.endpoint_id = d.endpoint_id AND p.payment_id = d.payment_id \
                     AND p.sequence < d.sequence AND p.status IN ('pending', 'failed')) \
               ORDER BY d.next_attempt_at LIMIT $1::bigint * 4 \
               FOR UPDATE OF d SKIP LOCKED \
             ), ranked AS ( \
               SELECT due.id, due.next_attempt_at, \
                 row_number() OVER (PARTITION BY due.endpoint_id ORDER BY due.next_attempt_at) \
                 + (SELECT count(*) FROM webhook_deliveries f \
                    WHERE f.endpoint_id = due.endpoint_id AND f.claim_token IS NOT NULL \
                      AND f.status IN ('pending', 'failed') AND f.next_attempt_at > now()) AS slot \
               FROM due \
             ), chosen AS ( \
               SELECT id FROM ranked WHERE slot <= $3 ORDER BY next_attempt_at LIMIT $1 \
             ) \
             UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2), \
               claim_token = gen_random_uuid() \
             FROM chosen, webhook_endpoints e, events ev, payments p \
             WHERE d.id = chosen.id AND e.id = d.endpoint_id AND ev.id = d.event_id \
               AND p.id = d.payment_id \
             RETURNING d.id, d.event_id, d.attempts, e.id, e.url, e.secret, \
               CASE WHEN e.previous_expires_at > now() THEN e.previous_secret END, ev.payload::text, \
               d.payment_id, d.claim_token, ev.traceparent, p.traceparent, ev.created_at",
        )
        .await?;
    let rows = c
        .query(&stmt, &[&limit, &lease_seconds, &per_endpoint])
        .await?;
    Ok(rows
        .iter()
        .map(|r| Claimed {
            id: r.get(0),
            event_id: r.get(1),
            attempts: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
            endpoint_id: r.get(3),
            url: r.get(4),
            secret: r.get(5),
            previous_secret: r.get(6),
            body: r.get(7),
            payment_id: r.get(8),
            claim_token: r.get(9),
            event_traceparent: r.get(10),
            payment_traceparent: r.get(11),
            event_created_at: r.get(12),
        })
        .collect())
    })
    .await
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// 2xx.
    Succeeded,
    /// Failed; try again at this time.
    RetryAt(DateTime<Utc>),
    /// Failed and out of attempts.
    Dead,
    /// 410 Gone: the delivery is dead and the endpoint disabled.
    Gone,
}

/// One attempt's record.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// When it started.
    pub at: DateTime<Utc>,
    /// HTTP status, when there was a response.
    pub http_status: Option<u16>,
    /// Duration.
    pub latency_ms: i32,
    /// Error (no secrets, no bodies).
    pub error: Option<&'a str>,
    /// The attempt's own span, as sent in the request's `traceparent`.
    pub traceparent: Option<&'a str>,
}

/// Records an attempt and, if this worker still holds the newest claim, its outcome.
/// Returns false when the claim was superseded (the lease expired and another worker took
/// it, or the delivery was redelivered or its endpoint deleted meanwhile): the attempt is
/// logged, but the delivery's state is left to the newer claim.
pub async fn record_attempt(
    c: &impl GenericClient,
    d: &Claimed,
    attempt: &Attempt<'_>,
    outcome: AttemptOutcome,
) -> Result<bool, StoreError> {
    super::timed("webhooks.record_attempt", async move {
    let status = attempt
        .http_status
        .map(|s| i16::try_from(s).unwrap_or(i16::MAX));
    c.execute(
        "INSERT INTO webhook_attempts (delivery_id, attempted_at, http_status, latency_ms, error, traceparent) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &d.id,
            &attempt.at,
            &status,
            &attempt.latency_ms,
            &attempt.error,
            &attempt.traceparent,
        ],
    )
    .await?;
    let (new_status, next): (&str, Option<DateTime<Utc>>) = match outcome {
        AttemptOutcome::Succeeded => ("succeeded", None),
        AttemptOutcome::RetryAt(t) => ("failed", Some(t)),
        AttemptOutcome::Dead | AttemptOutcome::Gone => ("dead", None),
    };
    let fenced = c
        .execute(
            "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, \
               next_attempt_at = COALESCE($3, now()), claim_token = NULL, \
               completed_at = CASE WHEN $2 IN ('succeeded', 'dead') THEN now() ELSE NULL END \
             WHERE id = $1 AND claim_token = $4",
            &[&d.id, &new_status, &next, &d.claim_token],
        )
        .await?;
    if fenced == 0 {
        return Ok(false);
    }
    if outcome == AttemptOutcome::Gone {
        c.execute(
            "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = 'the endpoint answered 410 Gone' \
             WHERE id = $1",
            &[&d.endpoint_id],
        )
        .await?;
    }
    Ok(true)
    })
    .await
}

/// One logged attempt, for the delivery log.
#[derive(Debug, Clone)]
pub struct AttemptView {
    /// Start time.
    pub at: DateTime<Utc>,
    /// HTTP status.
    pub http_status: Option<i16>,
    /// Duration.
    pub latency_ms: i32,
    /// Error.
    pub error: Option<String>,
}

/// A delivery with its attempts.
#[derive(Debug, Clone)]
pub struct DeliveryView {
    /// Id.
    pub id: Uuid,
    /// Endpoint.
    pub endpoint_id: Uuid,
    /// Event id.
    pub event_id: String,
    /// Event type.
    pub event_type: String,
    /// Payment.
    pub payment_id: Uuid,
    /// Status.
    pub status: String,
    /// When the next attempt is due (meaningless once final).
    pub next_attempt_at: DateTime<Utc>,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// Success or death.
    pub completed_at: Option<DateTime<Utc>>,
    /// Attempts, oldest first.
    pub attempts: Vec<AttemptView>,
}

/// Filters of the delivery log.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// One endpoint.
    pub endpoint: Option<Uuid>,
    /// One event.
    pub event: Option<String>,
    /// One status.
    pub status: Option<String>,
    /// Older than this delivery.
    pub starting_after: Option<Uuid>,
    /// Page size.
    pub limit: u32,
}

/// A merchant's deliveries, newest first, with their attempts.
pub async fn list_deliveries(
    c: &impl GenericClient,
    merchant_id: Uuid,
    f: &DeliveryFilter,
) -> Result<(Vec<DeliveryView>, bool), StoreError> {
    super::timed("webhooks.list_deliveries", async move {
    let limit = i64::from(f.limit) + 1;
    let rows = c
        .query(
            "SELECT d.id, d.endpoint_id, d.event_id, d.event_type, d.payment_id, d.status, d.next_attempt_at, \
               d.created_at, d.completed_at, \
               COALESCE((SELECT json_agg(json_build_object('at', a.attempted_at, 'http_status', a.http_status, \
                   'latency_ms', a.latency_ms, 'error', a.error) ORDER BY a.id) \
                 FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]'::json) \
             FROM webhook_deliveries d WHERE d.merchant_id = $1 \
               AND ($2::uuid IS NULL OR d.endpoint_id = $2) \
               AND ($3::text IS NULL OR d.event_id = $3) \
               AND ($4::text IS NULL OR d.status = $4) \
               AND ($5::uuid IS NULL OR (d.created_at, d.id) < \
                 (SELECT created_at, id FROM webhook_deliveries WHERE id = $5)) \
             ORDER BY d.created_at DESC, d.id DESC LIMIT $6",
            &[&merchant_id, &f.endpoint, &f.event, &f.status, &f.starting_after, &limit],
        )
        .await?;
    let has_more = rows.len() > f.limit as usize;
    #[derive(serde::Deserialize)]
    struct A {
        at: DateTime<Utc>,
        http_status: Option<i16>,
        latency_ms: i32,
        error: Option<String>,
    }
    let page = rows
        .iter()
        .take(f.limit as usize)
        .map(|r| {
            let attempts: serde_json::Value = r.get(9);
            let attempts: Vec<A> = serde_json::from_value(attempts)
                .map_err(|_| StoreError::Corrupt("webhook_attempts"))?;
            Ok(DeliveryView {
                id: r.get(0),
                endpoint_id: r.get(1),
                event_id: r.get(2),
                event_type: r.get(3),
                payment_id: r.get(4),
                status: r.get(5),
                next_attempt_at: r.get(6),
                created_at: r.get(7),
                completed_at: r.get(8),
                attempts: attempts
                    .into_iter()
                    .map(|a| AttemptView {
                        at: a.at,
                        http_status: a.http_status,
                        latency_ms: a.latency_ms,
                        error: a.error,
                    })
                    .collect(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((page, has_more))
    })
    .await
}

/// Makes a delivery due now, whatever its state. `None` when not found; `Some(false)` when
/// its endpoint is disabled or deleted.
pub async fn redeliver(
    c: &impl GenericClient,
    merchant_id: Uuid,
    id: Uuid,
) -> Result<Option<bool>, StoreError> {
    super::timed("webhooks.redeliver", async move {
    let row = c
        .query_opt(
            "SELECT e.status = 'enabled' AND e.deleted_at IS NULL FROM webhook_deliveries d \
             JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.merchant_id = $1 AND d.id = $2",
            &[&merchant_id, &id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if !row.get::<_, bool>(0) {
        return Ok(Some(false));
    }
    c.execute(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), completed_at = NULL, \
           claim_token = NULL WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(Some(true))
    })
    .await
}

/// Undelivered deliveries to enabled endpoints, and the age in seconds of the oldest.
pub async fn backlog(c: &impl GenericClient) -> Result<(u64, f64), StoreError> {
    super::timed("webhooks.backlog", async move {
    let row = c
        .query_one(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(d.created_at))::float8, 0) \
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             WHERE d.status IN ('pending', 'failed') AND e.status = 'enabled' AND e.deleted_at IS NULL",
            &[],
        )
        .await?;
    let n: i64 = row.get(0);
    Ok((u64::try_from(n).unwrap_or(0), row.get(1)))
    })
    .await
}
