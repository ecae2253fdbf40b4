//! Runs an actor tree: the live supervisor directory, the event log and the worker spawn
//! helper. What the tree holds is decided by the composition root, not here.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actors::{RestartReason, Supervisor, SupervisorEvent, SupervisorMsg, SupervisorSpec};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use slog::Logger;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::worker::{Work, Worker, WorkerArgs};

/// Live supervisor references by group, kept current across restarts, so operators can
/// bounce one actor.
#[derive(Clone, Default)]
pub struct SupervisorDirectory(Arc<RwLock<HashMap<String, ActorRef<SupervisorMsg>>>>);

impl SupervisorDirectory {
    /// Records the live supervisor of `group` (called by each supervisor's spawn function).
    pub fn set(&self, group: &str, r: ActorRef<SupervisorMsg>) {
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

/// The running tree.
pub struct Tree {
    root: ActorRef<SupervisorMsg>,
    join: JoinHandle<()>,
    events: tokio::task::JoinHandle<()>,
    log: Logger,
}

/// Spawns the actor running `args.work`, linked to `parent`.
pub async fn spawn_worker<W: Work>(
    args: WorkerArgs<W>,
    parent: ActorCell,
) -> Result<ActorCell, SpawnErr> {
    Actor::spawn_linked(None, Worker::<W>::default(), args, parent)
        .await
        .map(|(r, _)| r.get_cell())
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
                    // One report per actor failure: an error or a stall is reported here (an
                    // error-level line is a Sentry event); a panic was already reported by
                    // the panic hook, from the worker's own hub with its chain and actor.
                    let delay_ms = delay.as_millis() as u64;
                    match reason {
                        RestartReason::Error
                        | RestartReason::Stalled
                        | RestartReason::SpawnFailed => {
                            slog::error!(log, "actor failed; restarting";
                                "group" => &group, "actor" => &child, "reason" => reason.as_str(),
                                "delay_ms" => delay_ms)
                        }
                        _ => slog::warn!(log, "actor restarting";
                            "group" => &group, "actor" => &child, "reason" => reason.as_str(),
                            "delay_ms" => delay_ms),
                    }
                }
                SupervisorEvent::Stopped { group, child } => {
                    slog::info!(log, "actor stopped for good"; "group" => group, "actor" => child)
                }
                SupervisorEvent::Meltdown { group } => {
                    slog::error!(log, "supervisor melted down; its parent retries it"; "group" => &group);
                }
            }
        }
    });
    (tx, task)
}

impl Tree {
    /// Starts the root supervisor built by `root_spec` (which hands the event sender to
    /// every supervisor it describes); its children start in order.
    pub async fn start(
        log: Logger,
        directory: &SupervisorDirectory,
        root_spec: impl FnOnce(&UnboundedSender<SupervisorEvent>) -> SupervisorSpec,
    ) -> Result<Self, SpawnErr> {
        let (events_tx, events) = log_events(log.clone());
        let (root, join) = Supervisor::spawn(root_spec(&events_tx)).await?;
        directory.set("root", root.clone());
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
