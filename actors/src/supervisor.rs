//! A supervisor actor with OTP semantics on ractor.
//!
//! - Strategies: [`Strategy::OneForOne`] restarts only the failed child;
//!   [`Strategy::RestForOne`] stops the children started after it (in reverse order) and
//!   restarts the failed child and those, in start order.
//! - Restart types: permanent (always), transient (only after an abnormal exit), temporary
//!   (never, not even when a sibling's failure stopped it).
//! - Each child has a [`Backoff`]; its restart count resets once it stays up for
//!   `reset_after`.
//! - More than `max_restarts` within `window` ([`MeltdownLimit`]) is a meltdown: the
//!   supervisor stops its children in reverse order and fails, so its parent sees a failed
//!   child and applies its own policy. Without a limit (the root) it never melts down.
//! - A watchdog kills a child whose heartbeat is older than its stall timeout; it is then
//!   restarted with reason `stalled`.
//! - Children start in order and stop in reverse order.
//!
//! Children are identified by their [`ActorCell`] id, not by ractor's global name registry,
//! so several supervision trees (several gateways in one test process) never collide.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ractor::concurrency::JoinHandle;
use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent,
};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::health::{ActorHealth, ActorState, HealthRegistry, Heartbeat, RestartReason};
use crate::meltdown::{MeltdownLimit, MeltdownTracker};

/// The future a spawn function returns.
pub type SpawnFuture = Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>;

/// Spawns one child, linked to the given supervisor cell, with its heartbeat handle.
pub type SpawnFn = Arc<dyn Fn(ActorCell, Heartbeat) -> SpawnFuture + Send + Sync>;

/// What an actor's handler returns for an expected, non-panic failure. The supervisor tells
/// errors from panics by this type: any other error value is counted as a panic.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

impl Failure {
    /// Wraps any displayable error.
    pub fn new(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// Supervisor failures, seen by the parent.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// Restart intensity exceeded.
    #[error("supervisor {0} melted down: too many restarts")]
    Meltdown(String),
}

/// Restart strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Restart only the failed child.
    OneForOne,
    /// Restart the failed child and every child started after it.
    RestForOne,
}

/// When a child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartType {
    /// Always.
    Permanent,
    /// Only after an abnormal exit.
    Transient,
    /// Never.
    Temporary,
}

/// One child.
#[derive(Clone)]
pub struct ChildSpec {
    /// Unique name within the supervisor.
    pub name: String,
    /// Restart type.
    pub restart: RestartType,
    /// Restart delays.
    pub backoff: Backoff,
    /// Kill and restart when its heartbeat is older than this.
    pub stall_timeout: Option<Duration>,
    /// Spawns it.
    pub spawn: SpawnFn,
}

impl ChildSpec {
    /// A permanent child with a 1 s–60 s backoff and no stall watchdog.
    pub fn new<F, Fut>(name: impl Into<String>, spawn: F) -> Self
    where
        F: Fn(ActorCell, Heartbeat) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ActorCell, SpawnErr>> + Send + 'static,
    {
        Self {
            name: name.into(),
            restart: RestartType::Permanent,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            stall_timeout: None,
            spawn: Arc::new(move |cell, hb| Box::pin(spawn(cell, hb))),
        }
    }

    /// Sets the restart type.
    pub fn restart(mut self, restart: RestartType) -> Self {
        self.restart = restart;
        self
    }

    /// Sets the backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Watches the child's heartbeat.
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = Some(timeout);
        self
    }
}

/// What a supervisor reports as it works (for tests and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorEvent {
    /// A child was spawned.
    Started {
        /// Supervisor group.
        group: String,
        /// Child name.
        child: String,
        /// Spawn count of this child.
        incarnation: u64,
    },
    /// A child went down and a restart is scheduled.
    Restarting {
        /// Supervisor group.
        group: String,
        /// Child name.
        child: String,
        /// Why.
        reason: RestartReason,
        /// Backoff before the restart.
        delay: Duration,
    },
    /// A child stopped for good (shutdown, or its restart type says so).
    Stopped {
        /// Supervisor group.
        group: String,
        /// Child name.
        child: String,
    },
    /// The supervisor exceeded its restart intensity.
    Meltdown {
        /// Supervisor group.
        group: String,
    },
}

/// A supervisor's configuration.
#[derive(Clone)]
pub struct SupervisorSpec {
    /// Group name: the prefix of its children's health keys (`{group}.{child}`).
    pub group: String,
    /// Chain label of its children's metrics, when the group is a chain.
    pub chain: Option<String>,
    /// Restart strategy.
    pub strategy: Strategy,
    /// Restart intensity; `None` never melts down.
    pub meltdown: Option<MeltdownLimit>,
    /// How often the stall watchdog looks.
    pub watchdog_interval: Duration,
    /// How long a child may take to stop before it is killed.
    pub shutdown_timeout: Duration,
    /// Children, in start order.
    pub children: Vec<ChildSpec>,
    /// Where heartbeats and restarts are recorded.
    pub registry: HealthRegistry,
    /// Optional event listener.
    pub events: Option<UnboundedSender<SupervisorEvent>>,
}

/// Messages a supervisor handles.
pub enum SupervisorMsg {
    /// Spawn these children (index, generation), in order; sent after a backoff.
    Restart(Vec<(usize, u64)>),
    /// Look for stalled children.
    WatchdogTick,
    /// Operator bounce: stop the named child and restart it at once. Replies whether a
    /// running child of that name existed.
    RestartChild(String, RpcReplyPort<bool>),
    /// The names of running children, in start order.
    Running(RpcReplyPort<Vec<String>>),
    /// Stop every child in reverse order, then reply; the supervisor stays up (idle).
    StopChildren(RpcReplyPort<()>),
}

struct Child {
    spec: ChildSpec,
    health: Arc<ActorHealth>,
    cell: Option<ActorCell>,
    started_at: Instant,
    consecutive_restarts: u32,
    generation: u64,
    expected_exit: Option<RestartReason>,
}

/// The supervisor's state.
pub struct SupervisorState {
    spec: SupervisorSpec,
    children: Vec<Child>,
    tracker: MeltdownTracker,
    shutting_down: bool,
    watchdog: Option<JoinHandle<()>>,
}

/// The supervisor actor.
pub struct Supervisor;

impl Supervisor {
    /// Spawns a supervisor linked to `parent`. Like OTP's `start_link`, it returns once
    /// every child has been started (or its start failed and a restart is scheduled), so
    /// nested supervisors start strictly in order.
    pub async fn spawn_linked(
        spec: SupervisorSpec,
        parent: ActorCell,
    ) -> Result<(ActorRef<SupervisorMsg>, JoinHandle<()>), SpawnErr> {
        let (r, join) = Actor::spawn_linked(None, Supervisor, spec, parent).await?;
        Self::await_started(&r).await;
        Ok((r, join))
    }

    /// Spawns a top-level supervisor; returns once every child has been started.
    pub async fn spawn(
        spec: SupervisorSpec,
    ) -> Result<(ActorRef<SupervisorMsg>, JoinHandle<()>), SpawnErr> {
        let (r, join) = Actor::spawn(None, Supervisor, spec).await?;
        Self::await_started(&r).await;
        Ok((r, join))
    }

    /// Messages are handled only after `post_start` (which starts the children) is done,
    /// so answering a call proves the children were started. A supervisor that failed in
    /// `post_start` never answers; its parent learns of that through supervision events.
    async fn await_started(r: &ActorRef<SupervisorMsg>) {
        let _ = ractor::call!(r, SupervisorMsg::Running);
    }
}

impl SupervisorState {
    fn emit(&self, e: SupervisorEvent) {
        if let Some(tx) = &self.spec.events {
            let _ = tx.send(e);
        }
    }

    fn index_of(&self, cell: &ActorCell) -> Option<usize> {
        let id = cell.get_id();
        self.children
            .iter()
            .position(|c| c.cell.as_ref().is_some_and(|x| x.get_id() == id))
    }

    async fn spawn_child(&mut self, idx: usize, myself: &ActorCell) -> Result<(), ()> {
        let child = &mut self.children[idx];
        child.health.spawned();
        child.expected_exit = None;
        let fut = (child.spec.spawn)(myself.clone(), child.health.clone());
        match fut.await {
            Ok(cell) => {
                child.cell = Some(cell);
                child.started_at = Instant::now();
                let e = SupervisorEvent::Started {
                    group: self.spec.group.clone(),
                    child: child.spec.name.clone(),
                    incarnation: child.health.incarnation(),
                };
                self.emit(e);
                Ok(())
            }
            Err(_) => Err(()),
        }
    }

    /// Spawns the given children in order; a spawn failure goes through the restart path.
    async fn spawn_in_order(
        &mut self,
        plan: Vec<(usize, u64)>,
        myself: &ActorRef<SupervisorMsg>,
    ) -> Result<(), ActorProcessingErr> {
        for (idx, generation) in plan {
            let Some(child) = self.children.get(idx) else {
                continue;
            };
            if child.cell.is_some() || child.generation != generation || self.shutting_down {
                continue;
            }
            if self.spawn_child(idx, &myself.get_cell()).await.is_err() {
                self.child_down(idx, RestartReason::SpawnFailed, true, myself)
                    .await?;
            }
        }
        Ok(())
    }

    /// Stops children `from..` in reverse start order, waiting for each.
    async fn stop_children_from(&mut self, from: usize, reason: Option<RestartReason>) {
        let timeout = self.spec.shutdown_timeout;
        for idx in (from..self.children.len()).rev() {
            let Some(cell) = self.children[idx].cell.take() else {
                continue;
            };
            // The termination event may still arrive; it no longer matches any child.
            if cell
                .stop_and_wait(Some("supervisor stop".into()), Some(timeout))
                .await
                .is_err()
            {
                let _ = cell.kill_and_wait(Some(timeout)).await;
            }
            let child = &self.children[idx];
            match reason {
                Some(r) => child.health.record_restart(r),
                None => child.health.set_state(ActorState::Stopped, None),
            }
            if reason.is_none() {
                let e = SupervisorEvent::Stopped {
                    group: self.spec.group.clone(),
                    child: child.spec.name.clone(),
                };
                self.emit(e);
            }
        }
    }

    /// A child went down: decide, per restart type, strategy and intensity, what follows.
    async fn child_down(
        &mut self,
        idx: usize,
        reason: RestartReason,
        abnormal: bool,
        myself: &ActorRef<SupervisorMsg>,
    ) -> Result<(), ActorProcessingErr> {
        self.children[idx].cell = None;
        if self.shutting_down {
            self.children[idx]
                .health
                .set_state(ActorState::Stopped, None);
            return Ok(());
        }
        let should_restart = match self.children[idx].spec.restart {
            RestartType::Permanent => true,
            RestartType::Transient => abnormal,
            RestartType::Temporary => false,
        };
        if !should_restart {
            self.children[idx]
                .health
                .set_state(ActorState::Stopped, None);
            let e = SupervisorEvent::Stopped {
                group: self.spec.group.clone(),
                child: self.children[idx].spec.name.clone(),
            };
            self.emit(e);
            return Ok(());
        }
        // An operator's bounce is not a fault: it neither counts toward a meltdown nor waits.
        if reason != RestartReason::Manual {
            if let Some(limit) = self.spec.meltdown {
                if self.tracker.record(&limit, Instant::now()) {
                    return Err(self.meltdown().await);
                }
            }
        }
        let child = &mut self.children[idx];
        if child.started_at.elapsed() >= child.spec.backoff.reset_after {
            child.consecutive_restarts = 0;
        }
        let delay = if reason == RestartReason::Manual {
            Duration::ZERO
        } else {
            child.spec.backoff.delay(child.consecutive_restarts)
        };
        child.consecutive_restarts = child.consecutive_restarts.saturating_add(1);
        child.health.record_restart(reason);
        child.generation += 1;
        let mut plan = vec![(idx, child.generation)];
        let e = SupervisorEvent::Restarting {
            group: self.spec.group.clone(),
            child: child.spec.name.clone(),
            reason,
            delay,
        };
        self.emit(e);

        if self.spec.strategy == Strategy::RestForOne {
            self.stop_children_from(idx + 1, Some(RestartReason::Sibling))
                .await;
            for j in idx + 1..self.children.len() {
                let sibling = &mut self.children[j];
                if sibling.spec.restart == RestartType::Temporary {
                    sibling.health.set_state(ActorState::Stopped, None);
                    continue;
                }
                sibling.generation += 1;
                plan.push((j, sibling.generation));
                let e = SupervisorEvent::Restarting {
                    group: self.spec.group.clone(),
                    child: sibling.spec.name.clone(),
                    reason: RestartReason::Sibling,
                    delay,
                };
                self.emit(e);
            }
        }
        if delay.is_zero() {
            myself.send_message(SupervisorMsg::Restart(plan))?;
        } else {
            myself.send_after(delay, move || SupervisorMsg::Restart(plan));
        }
        Ok(())
    }

    async fn meltdown(&mut self) -> ActorProcessingErr {
        self.spec.registry.record_meltdown(&self.spec.group);
        self.emit(SupervisorEvent::Meltdown {
            group: self.spec.group.clone(),
        });
        self.shutting_down = true;
        self.stop_children_from(0, None).await;
        let note = format!(
            "supervisor {} melted down; its parent retries",
            self.spec.group
        );
        for c in &self.children {
            c.health.set_state(ActorState::Failed, Some(note.clone()));
        }
        Box::new(SupervisorError::Meltdown(self.spec.group.clone()))
    }

    fn watchdog(&mut self) {
        for child in &mut self.children {
            let (Some(timeout), Some(cell)) = (child.spec.stall_timeout, &child.cell) else {
                continue;
            };
            if child.expected_exit.is_some() {
                continue;
            }
            let since = child.health.since_progress();
            if since > timeout {
                child.expected_exit = Some(RestartReason::Stalled);
                cell.kill();
            }
        }
    }
}

/// Tells a handler error (a [`Failure`] or a nested supervisor's meltdown) from a panic,
/// which ractor reports as a bare string error.
fn classify(err: &ActorProcessingErr) -> RestartReason {
    if err.is::<Failure>() || err.is::<SupervisorError>() {
        RestartReason::Error
    } else {
        RestartReason::Panic
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorSpec;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        spec: SupervisorSpec,
    ) -> Result<Self::State, ActorProcessingErr> {
        let children = spec
            .children
            .iter()
            .map(|c| Child {
                health: spec.registry.register(
                    &spec.group,
                    &c.name,
                    spec.chain.as_deref(),
                    c.stall_timeout,
                ),
                spec: c.clone(),
                cell: None,
                started_at: Instant::now(),
                consecutive_restarts: 0,
                generation: 0,
                expected_exit: None,
            })
            .collect();
        Ok(SupervisorState {
            spec,
            children,
            tracker: MeltdownTracker::default(),
            shutting_down: false,
            watchdog: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let plan = (0..state.children.len()).map(|i| (i, 0)).collect();
        state.spawn_in_order(plan, &myself).await?;
        if state
            .children
            .iter()
            .any(|c| c.spec.stall_timeout.is_some())
        {
            let every = state.spec.watchdog_interval;
            state.watchdog = Some(myself.send_interval(every, || SupervisorMsg::WatchdogTick));
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: SupervisorMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Restart(plan) => state.spawn_in_order(plan, &myself).await?,
            SupervisorMsg::WatchdogTick => state.watchdog(),
            SupervisorMsg::RestartChild(name, reply) => {
                let found = state
                    .children
                    .iter_mut()
                    .find(|c| c.spec.name == name && c.cell.is_some());
                let ok = match found {
                    Some(child) => {
                        child.expected_exit = Some(RestartReason::Manual);
                        if let Some(cell) = &child.cell {
                            cell.stop(Some("restart requested".into()));
                        }
                        true
                    }
                    None => false,
                };
                let _ = reply.send(ok);
            }
            SupervisorMsg::Running(reply) => {
                let names = state
                    .children
                    .iter()
                    .filter(|c| c.cell.is_some())
                    .map(|c| c.spec.name.clone())
                    .collect();
                let _ = reply.send(names);
            }
            SupervisorMsg::StopChildren(reply) => {
                state.shutting_down = true;
                state.stop_children_from(0, None).await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(idx) = state.index_of(&cell) {
                    let reason = state.children[idx]
                        .expected_exit
                        .take()
                        .unwrap_or_else(|| classify(&err));
                    state.child_down(idx, reason, true, &myself).await?;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(idx) = state.index_of(&cell) {
                    match state.children[idx].expected_exit.take() {
                        Some(reason) => state.child_down(idx, reason, true, &myself).await?,
                        None => {
                            state
                                .child_down(idx, RestartReason::Exited, false, &myself)
                                .await?
                        }
                    }
                }
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(w) = state.watchdog.take() {
            w.abort();
        }
        state.shutting_down = true;
        state.stop_children_from(0, None).await;
        Ok(())
    }
}
