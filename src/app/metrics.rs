//! Every component's metrics, registered in one registry at start-up.

use crate::api::metrics::{ApiMetrics, HttpMetrics};
use crate::chain::metrics::ChainMetrics;
use crate::config::Settings;
use crate::domain::metrics::PaymentMetrics;
use crate::store::metrics::DbMetrics;
use crate::supervision::metrics::ActorMetrics;
use crate::telemetry::metrics::{new_registry, BuildMetrics, Declared, MetricsError, Registry};
use crate::telemetry::trace::TraceMetrics;
use crate::webhook::metrics::WebhookMetrics;

/// The process's metrics, one struct per component.
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// Build information.
    pub build: BuildMetrics,
    /// HTTP server.
    pub http: HttpMetrics,
    /// Database pool.
    pub db: DbMetrics,
    /// Payments.
    pub payments: PaymentMetrics,
    /// Chains and RPC.
    pub chain: ChainMetrics,
    /// Actors.
    pub actors: ActorMetrics,
    /// Webhooks.
    pub webhooks: WebhookMetrics,
    /// The span exporter.
    pub trace: TraceMetrics,
}

impl Metrics {
    /// Registers every metric; a registration error fails start-up.
    pub fn new(settings: &Settings) -> Result<Self, MetricsError> {
        let registry = new_registry()?;
        let chains: Vec<String> = settings.chains.iter().map(|c| c.name.clone()).collect();
        let names: Vec<&str> = chains.iter().map(String::as_str).collect();
        let r = &registry;
        Ok(Self {
            build: BuildMetrics::new(r)?,
            http: HttpMetrics::register(r)?,
            db: DbMetrics::register(r)?,
            payments: PaymentMetrics::register(r, &names)?,
            chain: ChainMetrics::new(r, &names)?,
            actors: ActorMetrics::register(r, &super::tree::actor_labels(settings), &chains)?,
            webhooks: WebhookMetrics::register(r)?,
            trace: TraceMetrics::register(r)?,
            registry,
        })
    }

    /// Every metric the gateway declares, in the order `/metrics` lists components.
    pub fn declared() -> Vec<Declared> {
        [
            BuildMetrics::DECLARED,
            HttpMetrics::DECLARED,
            DbMetrics::DECLARED,
            PaymentMetrics::DECLARED,
            ChainMetrics::DECLARED,
            ActorMetrics::DECLARED,
            WebhookMetrics::DECLARED,
            TraceMetrics::DECLARED,
        ]
        .concat()
    }

    /// What the API counts into and refreshes.
    pub fn for_api(&self) -> ApiMetrics {
        ApiMetrics {
            registry: self.registry.clone(),
            http: self.http.clone(),
            payments: self.payments.clone(),
            db: self.db.clone(),
            actors: self.actors.clone(),
            webhooks: self.webhooks.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_series_start_at_zero() {
        let mut s = Settings::load_layers(
            std::path::Path::new("config"),
            None,
            Some(std::path::Path::new("config/example.toml")),
            false,
        )
        .expect("loads");
        s.chains.truncate(1);
        s.chains[0].name = "eth".into();
        let m = Metrics::new(&s).expect("registers");
        let text = crate::telemetry::metrics::render(&m.registry);
        assert!(text.contains("ctrip_build_info{version="), "{text}");
        assert!(text.contains("ctrip_chain_configured{chain=\"eth\"} 1"));
        assert!(text.contains("ctrip_payments_created_total{chain=\"eth\"} 0"));
        assert!(text.contains("ctrip_payment_transitions_total{chain=\"eth\",to=\"confirmed\"} 0"));
        m.http.observe("/v1/payments/{id}", "GET", 200, 0.001);
        let text = crate::telemetry::metrics::render(&m.registry);
        assert!(text.contains("route=\"/v1/payments/{id}\""));
    }

    #[test]
    fn every_metric_is_declared_once() {
        let names: Vec<&str> = Metrics::declared().iter().map(|d| d.name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "{names:?}");
    }
}
