//! The actor tree this gateway runs: which workers each chain gets, the webhook pool and
//! the janitor, with their restart policies.
//!
//! ```text
//! root (one_for_one, never melts down)
//! ├── {chain}        one supervisor per chain (one_for_one, melts down after too many
//! │   ├── lease      restarts; the root then retries the whole chain with a slow backoff)
//! │   ├── scanner    (the three workers run only while the lease keeper holds the lease)
//! │   ├── confirmer
//! │   └── sweeper
//! └── webhooks       the dispatcher pool (one_for_one)
//!     ├── dispatcher-0 .. dispatcher-{N-1}
//!     └── janitor    purges idempotency keys older than a day
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actors::{
    Backoff, ChildSpec, HealthRegistry, Heartbeat, MeltdownLimit, Strategy, Supervisor,
    SupervisorEvent, SupervisorSpec,
};
use ractor::{ActorCell, SpawnErr};
use slog::{o, Logger};
use tokio::sync::mpsc::UnboundedSender;

use crate::api::janitor::Janitor;
use crate::chain::confirmer::Confirmer;
use crate::chain::lease::{Leadership, LeaseKeeper, LeaseTiming};
use crate::chain::metrics::ChainMetrics;
use crate::chain::scanner::Scanner;
use crate::chain::sweeper::Sweeper;
use crate::chain::{ChainRpc, ChainStatusRegistry};
use crate::config::{ChainSettings, Settings};
use crate::domain::metrics::PaymentMetrics;
use crate::store::Store;
use crate::supervision::tree::spawn_worker;
use crate::supervision::SupervisorDirectory;
use crate::wallet::Signer;
use crate::webhook::dispatcher::Dispatcher;
use crate::webhook::metrics::WebhookMetrics;
use crate::worker::{Faults, Work};

/// The names of a chain's workers, in start order: the lease keeper first, so it holds
/// the lease (or knows it does not) before the workers gated on it tick, and stops last,
/// releasing it once they are gone.
pub const CHAIN_ACTORS: [&str; 4] = ["lease", "scanner", "confirmer", "sweeper"];

/// The `(chain, actor)` metric label pairs of every worker the settings describe.
pub fn actor_labels(settings: &Settings) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = settings
        .chains
        .iter()
        .flat_map(|c| CHAIN_ACTORS.iter().map(|a| (c.name.clone(), a.to_string())))
        .collect();
    v.extend((0..settings.webhooks.workers).map(|i| (String::new(), format!("dispatcher-{i}"))));
    v.push((String::new(), "janitor".into()));
    v
}

/// What the tree needs from the application.
#[derive(Clone)]
pub struct TreeContext {
    /// Settings.
    pub settings: Arc<Settings>,
    /// Database.
    pub store: Store,
    /// Heartbeats and restarts.
    pub registry: HealthRegistry,
    /// Chain RPC and head status.
    pub chain_status: ChainStatusRegistry,
    /// Chain metrics.
    pub chain_metrics: ChainMetrics,
    /// Payment metrics.
    pub payment_metrics: PaymentMetrics,
    /// Webhook metrics.
    pub webhook_metrics: WebhookMetrics,
    /// Signs sweeps (the wallet, or later a separate signer).
    pub signer: Arc<dyn Signer>,
    /// Root logger.
    pub log: Logger,
    /// Test-only fault injection.
    pub faults: Arc<Faults>,
    /// Supervisor references.
    pub directory: SupervisorDirectory,
    /// One RPC client per chain, shared by all of the chain's workers and kept across
    /// their restarts (heads are polled once and endpoint backoff is shared).
    pub rpcs: ChainClients,
    /// The chain workers' own pool; each chain's workers use it fenced by their lease.
    pub chain_store: Store,
    /// This replica's view of every chain's lease.
    pub leaderships: Arc<HashMap<String, Leadership>>,
}

/// The chains' RPC clients, built on first use.
#[derive(Clone, Default)]
pub struct ChainClients(Arc<std::sync::Mutex<HashMap<String, ChainRpc>>>);

/// A chain worker's tick: the sweeper works on a slower cadence than scanner and confirmer.
fn worker_tick(chain_tick: Duration, actor: &str) -> Duration {
    if actor == "sweeper" {
        chain_tick * 5
    } else {
        chain_tick
    }
}

/// A dispatcher waits up to a request timeout for its batch: never take that for a stall
/// (the watchdog would kill it mid-batch and the sends would go unrecorded, then repeated).
pub fn dispatcher_stall_timeout(
    stall: Duration,
    webhooks: &crate::config::WebhookSettings,
) -> Duration {
    stall.max(Dispatcher::lease(webhooks))
}

impl TreeContext {
    /// Starts the tree; chains and the webhook pool start in order.
    pub async fn start(&self) -> anyhow::Result<crate::supervision::Tree> {
        if self.faults.tree_start_fails() {
            anyhow::bail!("injected tree start failure (test hook)");
        }
        Ok(
            crate::supervision::Tree::start(self.log.clone(), &self.directory, |events| {
                self.root_spec(events)
            })
            .await?,
        )
    }

    fn tick_retry(&self) -> Backoff {
        let s = &self.settings.supervision;
        Backoff::new(s.tick_retry_min, s.tick_retry_max)
    }

    /// Spawns the actor running `work` under `parent`, with the tree's fault hooks and
    /// tick retry policy.
    async fn spawn<W: Work>(
        &self,
        work: W,
        key: String,
        hb: Heartbeat,
        log: Logger,
        gate: Option<Arc<dyn crate::worker::Gate>>,
        parent: ActorCell,
    ) -> Result<ActorCell, SpawnErr> {
        let args = crate::worker::WorkerArgs {
            work,
            key,
            heartbeat: hb,
            log,
            faults: self.faults.clone(),
            retry: self.tick_retry(),
            gate,
        };
        spawn_worker(args, parent).await
    }

    /// This replica's view of `chain`'s lease.
    fn leadership(&self, chain: &str) -> Result<Leadership, SpawnErr> {
        self.leaderships
            .get(chain)
            .cloned()
            .ok_or_else(|| SpawnErr::StartupFailed(format!("{chain}: no lease view").into()))
    }

    fn worker_backoff(&self) -> Backoff {
        let s = &self.settings.supervision;
        Backoff::new(s.restart_backoff_min, s.restart_backoff_max)
    }

    /// A worker's stall timeout: the configured one, but never less than three of its own
    /// ticks, so a healthy worker with a slow cadence is never taken for a stalled one.
    fn stall_timeout(&self, tick: Duration) -> Duration {
        match self.settings.supervision.stall_timeout {
            Duration::ZERO => (tick * 10).max(Duration::from_secs(30)),
            t => t.max(tick * 3),
        }
    }

    fn dispatcher_stall_timeout(&self, tick: Duration) -> Duration {
        dispatcher_stall_timeout(self.stall_timeout(tick), &self.settings.webhooks)
    }

    fn chain_spec(
        &self,
        chain: &ChainSettings,
        events: &UnboundedSender<SupervisorEvent>,
    ) -> SupervisorSpec {
        let s = &self.settings.supervision;
        let tick = chain.poll_interval();
        let children = CHAIN_ACTORS
            .iter()
            .map(|actor| {
                let (ctx, chain, actor) = (self.clone(), chain.clone(), *actor);
                let stall = self.stall_timeout(worker_tick(tick, actor));
                ChildSpec::new(actor, move |parent, hb| {
                    let (ctx, chain) = (ctx.clone(), chain.clone());
                    async move { ctx.spawn_chain_worker(&chain, actor, hb, parent).await }
                })
                .backoff(self.worker_backoff())
                .stall_timeout(stall)
            })
            .collect();
        self.group_spec(
            &chain.name,
            Some(chain.name.clone()),
            s.chain_max_restarts,
            children,
            events,
        )
    }

    /// A one_for_one supervisor that melts down after more than `max_restarts` restarts
    /// within the chain restart window.
    fn group_spec(
        &self,
        group: &str,
        chain: Option<String>,
        max_restarts: usize,
        children: Vec<ChildSpec>,
        events: &UnboundedSender<SupervisorEvent>,
    ) -> SupervisorSpec {
        let s = &self.settings.supervision;
        SupervisorSpec {
            group: group.to_string(),
            chain,
            strategy: Strategy::OneForOne,
            meltdown: Some(MeltdownLimit {
                max_restarts,
                window: s.chain_restart_window,
            }),
            watchdog_interval: s.watchdog_interval,
            shutdown_timeout: s.shutdown_timeout,
            children,
            registry: self.registry.clone(),
            events: Some(events.clone()),
        }
    }

    /// The chain's one RPC client, built on first use. Its head refresh is reused for half
    /// a poll interval, so scanner and confirmer ticking together ask once.
    pub fn chain_rpc(&self, chain: &ChainSettings) -> Result<ChainRpc, crate::chain::RpcError> {
        let mut map = self.rpcs.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rpc) = map.get(&chain.name) {
            return Ok(rpc.clone());
        }
        let rpc = ChainRpc::new(
            chain,
            self.settings.supervision.rpc_timeout,
            self.chain_status.clone(),
            self.chain_metrics.clone(),
        )?
        .with_head_ttl(chain.poll_interval() / 2);
        map.insert(chain.name.clone(), rpc.clone());
        Ok(rpc)
    }

    async fn spawn_chain_worker(
        &self,
        chain: &ChainSettings,
        actor: &'static str,
        hb: Heartbeat,
        parent: ActorCell,
    ) -> Result<ActorCell, SpawnErr> {
        let key = format!("{}.{actor}", chain.name);
        let log = self
            .log
            .new(o!("chain" => chain.name.clone(), "actor" => actor));
        let tick = chain.poll_interval();
        let rpc = || {
            self.chain_rpc(chain)
                .map_err(|e| SpawnErr::StartupFailed(format!("{}: {e}", chain.name).into()))
        };
        let leadership = self.leadership(&chain.name)?;
        let store = self
            .chain_store
            .fenced(leadership.fence(), self.settings.supervision.lease_ttl);
        let gate: Option<Arc<dyn crate::worker::Gate>> = Some(Arc::new(leadership.clone()));
        match actor {
            "lease" => {
                let s = &self.settings.supervision;
                let work = LeaseKeeper::new(
                    &chain.name,
                    self.settings.chains.len(),
                    leadership,
                    self.store.clone(),
                    LeaseTiming {
                        ttl: s.lease_ttl,
                        renew_every: s.lease_renew,
                        poll_every: s.lease_poll,
                    },
                    self.chain_metrics.clone(),
                    log.clone(),
                );
                self.spawn(work, key, hb, log, None, parent).await
            }
            "scanner" => {
                let work = Scanner::new(
                    chain.clone(),
                    rpc()?,
                    store.clone(),
                    self.chain_status.clone(),
                    self.chain_metrics.clone(),
                    self.payment_metrics.clone(),
                    log.clone(),
                    self.settings.payments.late_funds_window.as_secs(),
                );
                self.spawn(work, key, hb, log, gate, parent).await
            }
            "confirmer" => {
                let work = Confirmer::new(
                    &chain.name,
                    rpc()?,
                    store.clone(),
                    self.chain_metrics.clone(),
                    self.payment_metrics.clone(),
                    log.clone(),
                    tick,
                )
                .with_status(self.chain_status.clone())
                .with_confirmation_budget(chain.confirmation_budget());
                self.spawn(work, key, hb, log, gate, parent).await
            }
            _ => {
                let work = Sweeper::new(
                    chain.clone(),
                    rpc()?,
                    store,
                    self.signer.clone(),
                    self.chain_metrics.clone(),
                    log.clone(),
                    worker_tick(tick, actor),
                )
                .with_status(self.chain_status.clone());
                self.spawn(work, key, hb, log, gate, parent).await
            }
        }
    }

    fn webhooks_spec(&self, events: &UnboundedSender<SupervisorEvent>) -> SupervisorSpec {
        let s = &self.settings.supervision;
        let tick = self.settings.webhooks.poll_interval;
        let mut children: Vec<ChildSpec> = (0..self.settings.webhooks.workers)
            .map(|i| {
                let name = format!("dispatcher-{i}");
                let ctx = self.clone();
                let child_name = name.clone();
                ChildSpec::new(name, move |parent, hb| {
                    let ctx = ctx.clone();
                    let key = format!("webhooks.{child_name}");
                    let log = ctx.log.new(o!("actor" => child_name.clone()));
                    async move {
                        let work = Dispatcher::new(
                            &ctx.settings.webhooks,
                            ctx.store.clone(),
                            ctx.webhook_metrics.clone(),
                            log.clone(),
                        )
                        .map_err(|e| {
                            SpawnErr::StartupFailed(format!("webhook client: {e}").into())
                        })?;
                        ctx.spawn(work, key, hb, log, None, parent).await
                    }
                })
                .backoff(self.worker_backoff())
                .stall_timeout(self.dispatcher_stall_timeout(tick))
            })
            .collect();
        let ctx = self.clone();
        let purge_every = s.idempotency_purge_interval;
        children.push(
            ChildSpec::new("janitor", move |parent, hb| {
                let ctx = ctx.clone();
                async move {
                    let log = ctx.log.new(o!("actor" => "janitor"));
                    let work = Janitor::new(ctx.store.clone(), purge_every, log.clone());
                    ctx.spawn(work, "webhooks.janitor".into(), hb, log, None, parent)
                        .await
                }
            })
            .backoff(self.worker_backoff())
            .stall_timeout(self.stall_timeout(purge_every)),
        );
        self.group_spec(
            "webhooks",
            None,
            s.chain_max_restarts.max(self.settings.webhooks.workers),
            children,
            events,
        )
    }

    fn root_spec(&self, events: &UnboundedSender<SupervisorEvent>) -> SupervisorSpec {
        let s = &self.settings.supervision;
        let slow = Backoff::new(s.chain_retry_min, s.chain_retry_max);
        let mut children: Vec<ChildSpec> = self
            .settings
            .chains
            .iter()
            .map(|chain| {
                let spec = self.chain_spec(chain, events);
                let dir = self.directory.clone();
                let group = chain.name.clone();
                ChildSpec::new(chain.name.clone(), move |parent, _hb| {
                    let (spec, dir, group) = (spec.clone(), dir.clone(), group.clone());
                    async move {
                        let (r, _) = Supervisor::spawn_linked(spec, parent).await?;
                        dir.set(&group, r.clone());
                        Ok(r.get_cell())
                    }
                })
                .backoff(slow)
            })
            .collect();
        let spec = self.webhooks_spec(events);
        let dir = self.directory.clone();
        children.push(
            ChildSpec::new("webhooks", move |parent, _hb| {
                let (spec, dir) = (spec.clone(), dir.clone());
                async move {
                    let (r, _) = Supervisor::spawn_linked(spec, parent).await?;
                    dir.set("webhooks", r.clone());
                    Ok(r.get_cell())
                }
            })
            .backoff(slow),
        );
        SupervisorSpec {
            group: "root".into(),
            chain: None,
            strategy: Strategy::OneForOne,
            // The root never gives up: a chain that keeps melting down is retried slowly
            // and never takes the other chains or the API down with it.
            meltdown: None,
            watchdog_interval: s.watchdog_interval,
            shutdown_timeout: s.shutdown_timeout * 4,
            children,
            registry: self.registry.clone(),
            events: Some(events.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispatcher_stall_timeout_follows_the_request_timeout() {
        let mut w =
            crate::config::Settings::load_layers(std::path::Path::new("config"), None, None, false)
                .expect("embedded defaults load")
                .webhooks;
        w.request_timeout = Duration::from_secs(60);
        assert!(
            dispatcher_stall_timeout(Duration::from_secs(30), &w) > Duration::from_secs(60),
            "a 60 s request must not be taken for a 30 s stall"
        );
        w.request_timeout = Duration::from_secs(1);
        assert_eq!(
            dispatcher_stall_timeout(Duration::from_secs(30), &w),
            Duration::from_secs(30)
        );
    }
}
