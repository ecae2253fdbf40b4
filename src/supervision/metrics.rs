//! Actor metrics, refreshed from the health registry at scrape time.

use actors::{ActorState, HealthRegistry, RestartReason};
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Registry};

use crate::telemetry::metrics::{counter_vec, float_gauge_vec, gauge_vec};

/// Supervision metrics.
#[derive(Clone)]
pub struct ActorMetrics {
    /// `ctrip_actor_up{chain,actor}`
    pub up: IntGaugeVec,
    /// `ctrip_actor_last_heartbeat_timestamp_seconds{chain,actor}`
    pub last_heartbeat: GaugeVec,
    /// `ctrip_actor_restarts_total{chain,actor,reason}`
    pub restarts: IntCounterVec,
    /// `ctrip_supervisor_meltdowns_total{chain,actor}`: `actor` names the supervisor
    /// (`chain` for a chain's supervisor, `webhooks`, `root`).
    pub meltdowns: IntCounterVec,
}

/// The supervisors of a tree, as `(chain label, supervisor label, registry group)`.
pub fn supervisor_labels(chains: &[String]) -> Vec<(String, &'static str, String)> {
    let mut v: Vec<_> = chains
        .iter()
        .map(|c| (c.clone(), "chain", c.clone()))
        .collect();
    v.push((String::new(), "webhooks", "webhooks".into()));
    v.push((String::new(), "root", "root".into()));
    v
}

impl ActorMetrics {
    /// Registers the metrics and initialises the known label sets to zero.
    pub fn new(r: &Registry, actors: &[(String, String)], chains: &[String]) -> Self {
        let m = Self {
            up: gauge_vec(
                r,
                "actor_up",
                "1 while the actor runs.",
                &["chain", "actor"],
            ),
            last_heartbeat: float_gauge_vec(
                r,
                "actor_last_heartbeat_timestamp_seconds",
                "Unix time of the actor's last progress.",
                &["chain", "actor"],
            ),
            restarts: counter_vec(
                r,
                "actor_restarts_total",
                "Actor restarts by reason.",
                &["chain", "actor", "reason"],
            ),
            meltdowns: counter_vec(
                r,
                "supervisor_meltdowns_total",
                "Supervisors that exceeded their restart intensity.",
                &["chain", "actor"],
            ),
        };
        for (chain, actor) in actors {
            m.up.with_label_values(&[chain.as_str(), actor.as_str()])
                .set(0);
            for reason in RestartReason::ALL {
                m.restarts
                    .with_label_values(&[chain.as_str(), actor.as_str(), reason.as_str()])
                    .inc_by(0);
            }
        }
        for (chain, actor, _) in supervisor_labels(chains) {
            m.meltdowns
                .with_label_values(&[chain.as_str(), actor])
                .inc_by(0);
        }
        m
    }

    /// Copies the registry's state into the metrics.
    pub fn refresh(&self, registry: &HealthRegistry, chains: &[String]) {
        for a in registry.snapshot() {
            if a.group == "root" {
                continue;
            }
            let chain = a.chain.clone().unwrap_or_default();
            let labels = [chain.as_str(), a.name.as_str()];
            let up = matches!(a.state, ActorState::Running | ActorState::Starting);
            self.up.with_label_values(&labels).set(i64::from(up));
            let ts = a
                .last_progress_wall
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.last_heartbeat.with_label_values(&labels).set(ts);
            for (reason, total) in &a.restarts_total {
                let c = self
                    .restarts
                    .with_label_values(&[labels[0], labels[1], reason.as_str()]);
                c.inc_by(total.saturating_sub(c.get()));
            }
        }
        let meltdowns = registry.meltdowns();
        for (chain, actor, group) in supervisor_labels(chains) {
            if let Some(total) = meltdowns.get(&group) {
                let c = self.meltdowns.with_label_values(&[chain.as_str(), actor]);
                c.inc_by(total.saturating_sub(c.get()));
            }
        }
    }
}
