//! HTTP metrics, and the set of metrics the API itself touches or refreshes at scrape time.

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::domain::metrics::PaymentMetrics;
use crate::store::metrics::DbMetrics;
use crate::supervision::metrics::ActorMetrics;
use crate::webhook::metrics::WebhookMetrics;

crate::declare_metrics! {
    /// HTTP server metrics; `route` is the route template, never the raw path.
    pub struct HttpMetrics() {
        requests: IntCounterVec = "http_requests_total" ["route", "method", "status"],
            "HTTP requests by route template (e.g. /v1/payments/{id}), method and status.";
        duration: HistogramVec = "http_request_duration_seconds" ["route", "method"],
            "HTTP request duration.";
        api_key_lookups: IntCounterVec = "api_key_lookups_total" ["source"],
            "API key checks by where the key row came from: memory (trusted while subscribed to key changes) or database.";
        checkout_streams: IntGauge = "checkout_event_streams" [],
            "Payer pages following their payment live on this replica (open server-sent event streams).";
        idempotent_replays: IntCounter = "idempotent_replays_total" [],
            "POST requests answered from a stored idempotent response.";
        ready: IntGauge = "ready" [],
            "1 when /health/ready passes (database reachable, schema current), else 0; refreshed at scrape time.";
    }
}

impl HttpMetrics {
    /// Observes one finished HTTP request.
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        self.requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }
}

/// The metrics the API counts into, refreshes at scrape time and renders.
#[derive(Clone)]
pub struct ApiMetrics {
    /// The process's registry, rendered by `/metrics`.
    pub registry: Registry,
    /// HTTP server.
    pub http: HttpMetrics,
    /// Payments created and canceled through the API.
    pub payments: PaymentMetrics,
    /// Database pool, refreshed at scrape time.
    pub db: DbMetrics,
    /// Actors, refreshed from the health registry at scrape time.
    pub actors: ActorMetrics,
    /// Webhook backlog, refreshed at scrape time.
    pub webhooks: WebhookMetrics,
}
