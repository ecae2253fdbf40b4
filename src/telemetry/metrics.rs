//! Prometheus metrics. One struct per component, all registered in one
//! registry; labels are bounded (route templates, never raw paths).

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

// Metric names and label sets below are static and valid, so construction cannot fail;
// a failure would be a programming error caught by the unit tests.
/// Registers a labelled counter.
#[allow(clippy::expect_used)]
pub fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let m =
        IntCounterVec::new(Opts::new(name, help).namespace("ctrip"), labels).expect("valid metric");
    let _ = r.register(Box::new(m.clone()));
    m
}

/// Registers an unlabelled counter.
#[allow(clippy::expect_used)]
pub fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let m = IntCounter::with_opts(Opts::new(name, help).namespace("ctrip")).expect("valid metric");
    let _ = r.register(Box::new(m.clone()));
    m
}

/// Registers a labelled integer gauge.
#[allow(clippy::expect_used)]
pub fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let m =
        IntGaugeVec::new(Opts::new(name, help).namespace("ctrip"), labels).expect("valid metric");
    let _ = r.register(Box::new(m.clone()));
    m
}

/// Registers an unlabelled integer gauge.
#[allow(clippy::expect_used)]
pub fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let m = IntGauge::with_opts(Opts::new(name, help).namespace("ctrip")).expect("valid metric");
    let _ = r.register(Box::new(m.clone()));
    m
}

/// Registers a labelled histogram.
#[allow(clippy::expect_used)]
pub fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help)
        .namespace("ctrip")
        .buckets(buckets);
    let m = HistogramVec::new(opts, labels).expect("valid metric");
    let _ = r.register(Box::new(m.clone()));
    m
}

/// Registers an unlabelled histogram.
#[allow(clippy::expect_used)]
pub fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let opts = HistogramOpts::new(name, help)
        .namespace("ctrip")
        .buckets(buckets);
    let m = Histogram::with_opts(opts).expect("valid metric");
    let _ = r.register(Box::new(m.clone()));
    m
}

/// Registers a labelled float gauge.
#[allow(clippy::expect_used)]
pub fn float_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let m = GaugeVec::new(Opts::new(name, help).namespace("ctrip"), labels).expect("valid metric");
    let _ = r.register(Box::new(m.clone()));
    m
}

/// Registers an unlabelled float gauge.
#[allow(clippy::expect_used)]
pub fn float_gauge(r: &Registry, name: &str, help: &str) -> prometheus::Gauge {
    let m = prometheus::Gauge::with_opts(Opts::new(name, help).namespace("ctrip"))
        .expect("valid metric");
    let _ = r.register(Box::new(m.clone()));
    m
}

/// Latency buckets from 0.5 ms to 10 s.
pub fn latency_buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

/// HTTP server metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    /// `ctrip_http_requests_total{route,method,status}`
    pub requests: IntCounterVec,
    /// `ctrip_http_request_duration_seconds{route,method}`
    pub duration: HistogramVec,
}

/// Database pool metrics, refreshed at scrape time.
#[derive(Clone)]
pub struct DbMetrics {
    /// `ctrip_db_pool_connections{state=idle|in_use}`
    pub connections: IntGaugeVec,
    /// `ctrip_db_pool_waiting`
    pub waiting: IntGauge,
}

/// Payment metrics.
#[derive(Clone)]
pub struct PaymentMetrics {
    /// `ctrip_payments_created_total{chain}`
    pub created: IntCounterVec,
    /// `ctrip_payment_transitions_total{chain,to}`
    pub transitions: IntCounterVec,
    /// `ctrip_payment_confirmation_latency_seconds{chain}`
    pub confirmation_latency: HistogramVec,
}

/// Every metric of the process.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// HTTP server.
    pub http: HttpMetrics,
    /// Database pool.
    pub db: DbMetrics,
    /// Payments.
    pub payments: PaymentMetrics,
    /// `ctrip_chain_configured{chain}`
    pub chain_configured: IntGaugeVec,
    /// `ctrip_build_info{version}`
    pub build_info: IntGaugeVec,
    /// `ctrip_idempotent_replays_total`
    pub idempotent_replays: IntCounter,
    /// Chain and RPC metrics.
    pub chain: crate::chain::metrics::ChainMetrics,
    /// Supervision metrics.
    pub actors: crate::supervision::metrics::ActorMetrics,
    /// Webhook metrics.
    pub webhooks: crate::webhook::metrics::WebhookMetrics,
}

impl Metrics {
    /// Registers every metric and initialises the known label sets to zero.
    pub fn new(chains: &[String], actors: &[(String, String)]) -> Self {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let _ = registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        let r = &registry;
        let http = HttpMetrics {
            requests: counter_vec(
                r,
                "http_requests_total",
                "HTTP requests by route template, method and status.",
                &["route", "method", "status"],
            ),
            duration: histogram_vec(
                r,
                "http_request_duration_seconds",
                "HTTP request duration.",
                &["route", "method"],
                latency_buckets(),
            ),
        };
        let db = DbMetrics {
            connections: gauge_vec(
                r,
                "db_pool_connections",
                "Database pool connections by state.",
                &["state"],
            ),
            waiting: gauge(r, "db_pool_waiting", "Tasks waiting for a pool connection."),
        };
        let payments = PaymentMetrics {
            created: counter_vec(r, "payments_created_total", "Payments created.", &["chain"]),
            transitions: counter_vec(
                r,
                "payment_transitions_total",
                "Payment status transitions by target status.",
                &["chain", "to"],
            ),
            confirmation_latency: histogram_vec(
                r,
                "payment_confirmation_latency_seconds",
                "Time from detection to confirmation.",
                &["chain"],
                vec![
                    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                ],
            ),
        };
        let chain_configured = gauge_vec(
            r,
            "chain_configured",
            "1 for every configured chain.",
            &["chain"],
        );
        let build_info = gauge_vec(
            r,
            "build_info",
            "Build information; always 1.",
            &["version"],
        );
        let idempotent_replays = counter(
            r,
            "idempotent_replays_total",
            "POST requests answered from a stored idempotent response.",
        );
        let chain = crate::chain::metrics::ChainMetrics::new(r, chains);
        let actors = crate::supervision::metrics::ActorMetrics::new(r, actors, chains);
        let webhooks = crate::webhook::metrics::WebhookMetrics::new(r);
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for state in ["idle", "in_use"] {
            db.connections.with_label_values(&[state]).set(0);
        }
        for chain in chains {
            chain_configured.with_label_values(&[chain.as_str()]).set(1);
            payments
                .created
                .with_label_values(&[chain.as_str()])
                .inc_by(0);
            for to in crate::domain::PaymentStatus::ALL {
                payments
                    .transitions
                    .with_label_values(&[chain.as_str(), to.as_str()])
                    .inc_by(0);
            }
        }
        Self {
            registry,
            http,
            db,
            payments,
            chain_configured,
            build_info,
            idempotent_replays,
            chain,
            actors,
            webhooks,
        }
    }

    /// The registry, for components that register their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Observes one finished HTTP request.
    pub fn observe_http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        self.http
            .requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.http
            .duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// Renders the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_series_start_at_zero() {
        let m = Metrics::new(
            &["eth".to_string()],
            &[("eth".to_string(), "scanner".to_string())],
        );
        let text = m.render();
        assert!(text.contains("ctrip_build_info{version="), "{text}");
        assert!(text.contains("ctrip_chain_configured{chain=\"eth\"} 1"));
        assert!(text.contains("ctrip_payments_created_total{chain=\"eth\"} 0"));
        assert!(text.contains("ctrip_payment_transitions_total{chain=\"eth\",to=\"confirmed\"} 0"));
        m.observe_http("/v1/payments/{id}", "GET", 200, 0.001);
        assert!(m.render().contains("route=\"/v1/payments/{id}\""));
    }
}
