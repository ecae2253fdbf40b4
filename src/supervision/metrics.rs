//! Actor metrics, refreshed from the health registry at scrape time.

use actors::{ActorState, HealthRegistry, RestartReason};
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec};

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

fn pairs(actors: &[(String, String)]) -> Vec<Vec<String>> {
    actors
        .iter()
        .map(|(c, a)| vec![c.clone(), a.clone()])
        .collect()
}

fn with_reasons(actors: &[(String, String)]) -> Vec<Vec<String>> {
    actors
        .iter()
        .flat_map(|(c, a)| {
            RestartReason::ALL
                .iter()
                .map(move |r| vec![c.clone(), a.clone(), r.as_str().to_string()])
        })
        .collect()
}

fn supervisors(chains: &[String]) -> Vec<Vec<String>> {
    supervisor_labels(chains)
        .into_iter()
        .map(|(c, a, _)| vec![c, a.to_string()])
        .collect()
}

crate::declare_metrics! {
    /// Supervision metrics. `actor` names a worker; for meltdowns it names the supervisor
    /// (`chain` for a chain's supervisor, `webhooks`, `root`).
    pub struct ActorMetrics(actors: &[(String, String)], chains: &[String]) {
        up: IntGaugeVec = "actor_up" ["chain", "actor"],
            "1 while the actor runs (chain is empty for the webhook pool).",
            zero = pairs(actors);
        last_heartbeat: GaugeVec = "actor_last_heartbeat_timestamp_seconds" ["chain", "actor"],
            "Unix time of the actor's last progress.";
        restarts: IntCounterVec = "actor_restarts_total" ["chain", "actor", "reason"],
            "Actor restarts by reason (panic, error, stalled, spawn_failed, manual, sibling, exited).",
            zero = with_reasons(actors);
        meltdowns: IntCounterVec = "supervisor_meltdowns_total" ["chain", "actor"],
            "Supervisors that exceeded their restart intensity (actor: chain, webhooks or root).",
            zero = supervisors(chains);
    }
}

impl ActorMetrics {
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
