//! A payment's timeline for operators: its transitions, transfers, events, delivery
//! attempts and sweeps in time order, each with the trace id of the span that wrote it.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::StoreError;

/// One step of a payment's life.
#[derive(Debug, Clone)]
pub struct TimelineEntry {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// `transition`, `transfer`, `event`, `delivery_attempt` or `sweep`.
    pub kind: String,
    /// The trace the step was written in, when tracing was on.
    pub trace_id: Option<String>,
    /// What the step says (no secret, no URL, no body).
    pub detail: serde_json::Value,
}

/// The payment's timeline, oldest first; `None` when no such payment exists.
pub async fn timeline(
    c: &impl GenericClient,
    payment_id: Uuid,
) -> Result<Option<Vec<TimelineEntry>>, StoreError> {
    super::timed("timeline.get", async move {
        let exists = c
            .query_opt("SELECT 1 FROM payments WHERE id = $1", &[&payment_id])
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        // The `ord` column keeps steps written at the same instant in the order the
        // gateway wrote them (a transition before the event announcing it).
        let rows = c
            .query(
                "SELECT at, kind, NULLIF(split_part(traceparent, '-', 2), ''), detail FROM ( \
                   SELECT h.at, 'transition' AS kind, 1 AS ord, h.id AS seq, h.traceparent, \
                     jsonb_build_object('from', h.from_status, 'to', h.to_status, 'reason', h.reason) AS detail \
                   FROM payment_history h WHERE h.payment_id = $1 \
                   UNION ALL \
                   SELECT t.detected_at, 'transfer', 0, t.id, t.traceparent, \
                     jsonb_build_object('tx_hash', t.tx_hash, 'log_index', t.log_index, \
                       'amount', t.amount_raw::text, 'asset', COALESCE(t.asset_contract, 'native'), \
                       'block_number', t.block_number, 'counted', t.counted, 'removed', t.removed, \
                       'late', t.late) \
                   FROM payment_transfers t WHERE t.payment_id = $1 \
                   UNION ALL \
                   SELECT e.created_at, 'event', 2, e.sequence, e.traceparent, \
                     jsonb_build_object('event_id', e.id, 'type', e.type, 'sequence', e.sequence) \
                   FROM events e WHERE e.payment_id = $1 \
                   UNION ALL \
                   SELECT a.attempted_at, 'delivery_attempt', 3, a.id, a.traceparent, \
                     jsonb_build_object('delivery_id', d.id, 'endpoint_id', d.endpoint_id, \
                       'event_id', d.event_id, 'http_status', a.http_status, \
                       'latency_ms', a.latency_ms, 'error', a.error) \
                   FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id \
                   WHERE d.payment_id = $1 \
                   UNION ALL \
                   SELECT s.created_at, 'sweep', 4, 0, s.traceparent, \
                     jsonb_build_object('sweep_id', s.id, 'strategy', s.strategy, 'state', s.state, \
                       'tx_hash', s.tx_hash, 'confirmed_at', s.confirmed_at) \
                   FROM sweeps s JOIN sweep_payments sp ON sp.sweep_id = s.id \
                   WHERE sp.payment_id = $1 \
                 ) steps ORDER BY at, ord, seq",
                &[&payment_id],
            )
            .await?;
        Ok(Some(
            rows.iter()
                .map(|r| TimelineEntry {
                    at: r.get(0),
                    kind: r.get(1),
                    trace_id: r.get(2),
                    detail: r.get(3),
                })
                .collect(),
        ))
    })
    .await
}
