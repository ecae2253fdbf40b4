//! Builds and runs the actor tree.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actors::{
    Backoff, ChildSpec, HealthRegistry, Heartbeat, MeltdownLimit, RestartReason, Strategy,
    Supervisor, SupervisorEvent, SupervisorMsg, SupervisorSpec,
};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use slog::{o, Logger};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use super::faults::Faults;
use super::janitor::Janitor;
use super::worker::{Work, Worker, WorkerArgs};
use crate::chain::confirmer::Confirmer;
use crate::chain::metrics::ChainMetrics;
use crate::chain::scanner::Scanner;
use crate::chain::sweeper::Sweeper;
use crate::chain::{ChainRpc, ChainStatusRegistry};
use crate::config::{ChainSettings, Settings};
use crate::store::Store;
use crate::webhook::dispatcher::Dispatcher;

/// The names of a chain's workers, in start order.
pub const CHAIN_ACTORS: [&str; 3] = ["scanner", "confirmer", "sweeper"];

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

/// Live supervisor references by group, kept current across restarts, so operators can
/// bounce one actor.
#[derive(Clone, Default)]
pub struct SupervisorDirectory(Arc<RwLock<HashMap<String, ActorRef<SupervisorMsg>>>>);

impl SupervisorDirectory {
    fn set(&self, group: &str, r: ActorRef<SupervisorMsg>) {
        if let Ok(mut m) = self.0.write() {
            m.insert(group.to_string(), r);
        }
    }

    /// Asks `group`'s supervisor to restart `actor`. `None` when the group is unknown or
    /// its supervisor is down; `Some(false)` when no such actor is running.
    pub async fn restart(&self, group: &str, actor: &str) -> Option<bool> {
        let sup = self.0.read().ok()?.get(group).cloned()?;
        ractor::call_t!(sup, SupervisorMsg::RestartChild, 5000, actor.to_string()).ok()
    }
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
    pub payment_metrics: crate::telemetry::metrics::PaymentMetrics,
    /// Webhook metrics.
    pub webhook_metrics: crate::webhook::metrics::WebhookMetrics,
    /// Root logger.
    pub log: Logger,
    /// Test-only fault injection.
    pub faults: Arc<Faults>,
    /// Supervisor references.
    pub directory: SupervisorDirectory,
    /// One RPC client per chain, shared by all of the chain's workers and kept across
    /// their restarts (heads are polled once and endpoint backoff is shared).
    pub rpcs: ChainClients,
}

/// The chains' RPC clients, built on first use.
#[derive(Clone, Default)]
pub struct ChainClients(Arc<std::sync::Mutex<HashMap<String, ChainRpc>>>);

/// The running tree.
pub struct Tree {
    root: ActorRef<SupervisorMsg>,
    join: JoinHandle<()>,
    events: tokio::task::JoinHandle<()>,
    log: Logger,
}

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

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

async fn spawn_worker<W: Work>(
    work: W,
    key: String,
    heartbeat: Heartbeat,
    log: Logger,
    faults: Arc<Faults>,
    retry: Backoff,
    parent: ActorCell,
) -> Result<ActorCell, SpawnErr> {
    let args = WorkerArgs {
        work,
        key,
        heartbeat,
        log,
        faults,
        retry,
    };
    Actor::spawn_linked(None, Worker::<W>::default(), args, parent)
        .await
        .map(|(r, _)| r.get_cell())
}

impl TreeContext {
    fn tick_retry(&self) -> Backoff {
        let s = &self.settings.supervision;
        Backoff::new(ms(s.tick_retry_min_ms), ms(s.tick_retry_max_ms))
    }

    fn worker_backoff(&self) -> Backoff {
        let s = &self.settings.supervision;
        Backoff::new(ms(s.restart_backoff_min_ms), ms(s.restart_backoff_max_ms))
    }

    /// A worker's stall timeout: the configured one, but never less than three of its own
    /// ticks, so a healthy worker with a slow cadence is never taken for a stalled one.
    fn stall_timeout(&self, tick: Duration) -> Duration {
        match self.settings.supervision.stall_timeout_ms {
            0 => (tick * 10).max(Duration::from_secs(30)),
            t => ms(t).max(tick * 3),
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
        SupervisorSpec {
            group: chain.name.clone(),
            chain: Some(chain.name.clone()),
            strategy: Strategy::OneForOne,
            meltdown: Some(MeltdownLimit {
                max_restarts: s.chain_max_restarts,
                window: ms(s.chain_restart_window_ms),
            }),
            watchdog_interval: ms(s.watchdog_interval_ms),
            shutdown_timeout: ms(s.shutdown_timeout_ms),
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
            ms(self.settings.supervision.rpc_timeout_ms),
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
        let faults = self.faults.clone();
        let rpc = || {
            self.chain_rpc(chain)
                .map_err(|e| SpawnErr::StartupFailed(format!("{}: {e}", chain.name).into()))
        };
        match actor {
            "scanner" => {
                let work = Scanner::new(
                    chain.clone(),
                    rpc()?,
                    self.store.clone(),
                    self.chain_status.clone(),
                    self.chain_metrics.clone(),
                    self.payment_metrics.clone(),
                    log.clone(),
                    self.settings.payments.late_funds_window_seconds,
                );
                spawn_worker(work, key, hb, log, faults, self.tick_retry(), parent).await
            }
            "confirmer" => {
                let work = Confirmer::new(
                    &chain.name,
                    rpc()?,
                    self.store.clone(),
                    self.chain_metrics.clone(),
                    self.payment_metrics.clone(),
                    log.clone(),
                    tick,
                )
                .with_status(self.chain_status.clone());
                spawn_worker(work, key, hb, log, faults, self.tick_retry(), parent).await
            }
            _ => {
                let work = Sweeper::new(self.store.clone(), worker_tick(tick, actor));
                spawn_worker(work, key, hb, log, faults, self.tick_retry(), parent).await
            }
        }
    }

    fn webhooks_spec(&self, events: &UnboundedSender<SupervisorEvent>) -> SupervisorSpec {
        let s = &self.settings.supervision;
        let tick = Duration::from_millis(self.settings.webhooks.poll_interval_ms);
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
                        spawn_worker(
                            work,
                            key,
                            hb,
                            log,
                            ctx.faults.clone(),
                            ctx.tick_retry(),
                            parent,
                        )
                        .await
                    }
                })
                .backoff(self.worker_backoff())
                .stall_timeout(self.dispatcher_stall_timeout(tick))
            })
            .collect();
        let ctx = self.clone();
        let purge_every = ms(s.idempotency_purge_interval_ms);
        children.push(
            ChildSpec::new("janitor", move |parent, hb| {
                let ctx = ctx.clone();
                async move {
                    let log = ctx.log.new(o!("actor" => "janitor"));
                    let work = Janitor::new(ctx.store.clone(), purge_every, log.clone());
                    spawn_worker(
                        work,
                        "webhooks.janitor".into(),
                        hb,
                        log,
                        ctx.faults.clone(),
                        ctx.tick_retry(),
                        parent,
                    )
                    .await
                }
            })
            .backoff(self.worker_backoff())
            .stall_timeout(self.stall_timeout(purge_every)),
        );
        SupervisorSpec {
            group: "webhooks".into(),
            chain: None,
            strategy: Strategy::OneForOne,
            meltdown: Some(MeltdownLimit {
                max_restarts: s.chain_max_restarts.max(self.settings.webhooks.workers),
                window: ms(s.chain_restart_window_ms),
            }),
            watchdog_interval: ms(s.watchdog_interval_ms),
            shutdown_timeout: ms(s.shutdown_timeout_ms),
            children,
            registry: self.registry.clone(),
            events: Some(events.clone()),
        }
    }

    fn root_spec(&self, events: &UnboundedSender<SupervisorEvent>) -> SupervisorSpec {
        let s = &self.settings.supervision;
        let slow = Backoff::new(ms(s.chain_retry_min_ms), ms(s.chain_retry_max_ms));
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
            watchdog_interval: ms(s.watchdog_interval_ms),
            shutdown_timeout: ms(s.shutdown_timeout_ms) * 4,
            children,
            registry: self.registry.clone(),
            events: Some(events.clone()),
        }
    }
}

/// Logs supervision events (and reports failures to Sentry when it is configured).
fn log_events(
    log: Logger,
) -> (
    UnboundedSender<SupervisorEvent>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = unbounded_channel::<SupervisorEvent>();
    let task = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            match e {
                SupervisorEvent::Started {
                    group,
                    child,
                    incarnation,
                } => {
                    slog::info!(log, "actor started"; "group" => group, "actor" => child, "incarnation" => incarnation)
                }
                SupervisorEvent::Restarting {
                    group,
                    child,
                    reason,
                    delay,
                } => {
                    slog::warn!(log, "actor restarting";
                        "group" => &group, "actor" => &child, "reason" => reason.as_str(),
                        "delay_ms" => delay.as_millis() as u64);
                    if matches!(
                        reason,
                        RestartReason::Panic | RestartReason::Error | RestartReason::Stalled
                    ) {
                        sentry::capture_message(
                            &format!("actor {group}.{child} restarting: {reason}"),
                            sentry::Level::Warning,
                        );
                    }
                }
                SupervisorEvent::Stopped { group, child } => {
                    slog::info!(log, "actor stopped for good"; "group" => group, "actor" => child)
                }
                SupervisorEvent::Meltdown { group } => {
                    slog::error!(log, "supervisor melted down; its parent retries it"; "group" => &group);
                    sentry::capture_message(
                        &format!("supervisor {group} melted down"),
                        sentry::Level::Error,
                    );
                }
            }
        }
    });
    (tx, task)
}

impl Tree {
    /// Starts the root supervisor; chains and the webhook pool start in order.
    pub async fn start(ctx: TreeContext) -> anyhow::Result<Self> {
        if ctx.faults.tree_start_fails() {
            anyhow::bail!("injected tree start failure (test hook)");
        }
        let log = ctx.log.clone();
        let (events_tx, events) = log_events(log.clone());
        let (root, join) = Supervisor::spawn(ctx.root_spec(&events_tx)).await?;
        ctx.directory.set("root", root.clone());
        Ok(Self {
            root,
            join,
            events,
            log,
        })
    }

    /// Stops the tree in reverse start order and waits for it.
    pub async fn shutdown(self, timeout: Duration) {
        slog::info!(self.log, "stopping the actor tree");
        if self
            .root
            .stop_and_wait(Some("shutdown".into()), Some(timeout))
            .await
            .is_err()
        {
            slog::warn!(self.log, "actor tree did not stop in time; killing it");
            self.root.kill();
        }
        let _ = self.join.await;
        // Every event sender lived in the stopped supervisors; the log task now drains and
        // ends, so the stop sequence is fully logged before the process exits.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.events).await;
        slog::info!(self.log, "actor tree stopped");
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
        w.request_timeout_ms = 60_000;
        assert!(
            dispatcher_stall_timeout(Duration::from_secs(30), &w) > Duration::from_secs(60),
            "a 60 s request must not be taken for a 30 s stall"
        );
        w.request_timeout_ms = 1_000;
        assert_eq!(
            dispatcher_stall_timeout(Duration::from_secs(30), &w),
            Duration::from_secs(30)
        );
    }
}
