//! The contract's JSON objects, rendered from the domain: the payment object and the event
//! envelope. The HTTP responses and the webhook bodies both come from here, so a field can
//! never differ between the two. The store uses [`EventObject`] to write the outbox in the
//! same transaction as the state change it announces.

pub mod payment;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

pub use payment::PaymentObject;

/// RFC 3339 UTC with `Z` and milliseconds: every time the contract shows.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An event as stored in the outbox and sent as a webhook body.
#[derive(Debug, Serialize)]
pub struct EventObject<'a> {
    /// `evt_...`; the same on every attempt and redelivery.
    pub id: &'a str,
    /// e.g. `payment.confirmed`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// When the state change happened.
    pub created_at: String,
    /// The payment's event sequence number (increases by one per event).
    pub sequence: i32,
    /// The payment as it was right after the change.
    pub data: PaymentObject,
}

/// One step of a payment's timeline, as operators see it.
#[derive(Debug, Serialize)]
pub struct TimelineStep {
    /// When it happened.
    pub at: String,
    /// `transition`, `transfer`, `event`, `delivery_attempt` or `sweep`.
    pub kind: String,
    /// The trace the step was written in (search it in the trace backend), or null.
    pub trace_id: Option<String>,
    /// The step's facts.
    pub detail: serde_json::Value,
}

/// A payment's timeline: every step in time order.
#[derive(Debug, Serialize)]
pub struct TimelineObject {
    /// Always `timeline`.
    pub object: &'static str,
    /// The payment.
    pub payment_id: String,
    /// Oldest first.
    pub steps: Vec<TimelineStep>,
}
