//! The health registry: one entry per supervised actor, with its last progress (the
//! heartbeat), lifecycle state and restart history. Supervisors write lifecycle changes;
//! workers call [`ActorHealth::beat`] after each unit of real progress; health endpoints and
//! metrics read [`HealthRegistry::snapshot`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// Why a child was restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RestartReason {
    /// The child panicked.
    Panic,
    /// The child's handler returned an error.
    Error,
    /// The watchdog killed it: no progress within its stall timeout.
    Stalled,
    /// Spawning it failed (including a failing `pre_start`).
    SpawnFailed,
    /// An operator asked for it.
    Manual,
    /// A sibling's failure restarted it (rest_for_one).
    Sibling,
    /// It stopped normally and its restart type asks for a restart (permanent).
    Exited,
}

impl RestartReason {
    /// Every reason, for initialising metric label sets.
    pub const ALL: [Self; 7] = [
        Self::Panic,
        Self::Error,
        Self::Stalled,
        Self::SpawnFailed,
        Self::Manual,
        Self::Sibling,
        Self::Exited,
    ];

    /// Label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Panic => "panic",
            Self::Error => "error",
            Self::Stalled => "stalled",
            Self::SpawnFailed => "spawn_failed",
            Self::Manual => "manual",
            Self::Sibling => "sibling",
            Self::Exited => "exited",
        }
    }
}

impl fmt::Display for RestartReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an actor is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorState {
    /// Spawned, no progress yet.
    Starting,
    /// Up.
    Running,
    /// Down, a restart is scheduled.
    Restarting,
    /// Its supervisor melted down; the parent retries later.
    Failed,
    /// Stopped on purpose (shutdown, temporary child done).
    Stopped,
}

impl ActorState {
    /// Human-readable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }
}

/// How long restarts are remembered for health output.
pub const RESTART_MEMORY: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct Inner {
    state: ActorState,
    last_progress: Instant,
    last_progress_wall: SystemTime,
    restarts: VecDeque<(Instant, RestartReason)>,
    restarts_total: BTreeMap<RestartReason, u64>,
    incarnation: u64,
    note: Option<String>,
}

/// One actor's health record. Cloned handles (`Arc`) are given to the actor as its heartbeat.
#[derive(Debug)]
pub struct ActorHealth {
    group: String,
    name: String,
    chain: Option<String>,
    stall_timeout: Option<Duration>,
    inner: Mutex<Inner>,
}

/// A worker's handle for reporting progress.
pub type Heartbeat = Arc<ActorHealth>;

/// A point-in-time copy of one entry.
#[derive(Debug, Clone)]
pub struct ActorSnapshot {
    /// `group.name`, e.g. `ethereum.scanner`.
    pub key: String,
    /// Supervisor group (a chain name, `webhooks`, ...).
    pub group: String,
    /// Child name within the group.
    pub name: String,
    /// Chain label for metrics, when the actor belongs to a chain.
    pub chain: Option<String>,
    /// Lifecycle state.
    pub state: ActorState,
    /// Seconds since the last progress.
    pub since_progress: Duration,
    /// Wall-clock time of the last progress.
    pub last_progress_wall: SystemTime,
    /// The stall timeout, when watched.
    pub stall_timeout: Option<Duration>,
    /// Restarts within [`RESTART_MEMORY`], with the latest reason.
    pub recent_restarts: usize,
    /// The latest restart's reason.
    pub last_restart_reason: Option<RestartReason>,
    /// Restarts since process start, by reason.
    pub restarts_total: BTreeMap<RestartReason, u64>,
    /// How many times it was spawned.
    pub incarnation: u64,
    /// Supervisor's note (e.g. why it failed, when it retries).
    pub note: Option<String>,
}

impl ActorSnapshot {
    /// Whether it stopped making progress for longer than its stall timeout.
    pub fn is_stale(&self) -> bool {
        self.stall_timeout.is_some_and(|t| self.since_progress > t)
    }
}

impl ActorHealth {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere while holding it; the data (times and
        // counters) is still meaningful.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records progress.
    pub fn beat(&self) {
        let mut i = self.lock();
        i.last_progress = Instant::now();
        i.last_progress_wall = SystemTime::now();
        if i.state == ActorState::Starting {
            i.state = ActorState::Running;
        }
    }

    /// `group.name`.
    pub fn key(&self) -> String {
        format!("{}.{}", self.group, self.name)
    }

    /// The stall timeout.
    pub fn stall_timeout(&self) -> Option<Duration> {
        self.stall_timeout
    }

    /// Time since the last progress.
    pub fn since_progress(&self) -> Duration {
        Instant::now().saturating_duration_since(self.lock().last_progress)
    }

    /// Current state.
    pub fn state(&self) -> ActorState {
        self.lock().state
    }

    /// How many times it was spawned.
    pub fn incarnation(&self) -> u64 {
        self.lock().incarnation
    }

    /// Restarts since process start for one reason.
    pub fn restarts(&self, reason: RestartReason) -> u64 {
        self.lock()
            .restarts_total
            .get(&reason)
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn spawned(&self) {
        let mut i = self.lock();
        i.state = ActorState::Starting;
        i.incarnation += 1;
        // A fresh incarnation gets a full stall timeout to make its first progress.
        i.last_progress = Instant::now();
        i.note = None;
    }

    pub(crate) fn set_state(&self, state: ActorState, note: Option<String>) {
        let mut i = self.lock();
        i.state = state;
        i.note = note;
    }

    pub(crate) fn record_restart(&self, reason: RestartReason) {
        let now = Instant::now();
        let mut i = self.lock();
        i.restarts.push_back((now, reason));
        while i
            .restarts
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RESTART_MEMORY)
        {
            i.restarts.pop_front();
        }
        *i.restarts_total.entry(reason).or_insert(0) += 1;
        i.state = ActorState::Restarting;
    }

    /// A copy for reporting.
    pub fn snapshot(&self) -> ActorSnapshot {
        let now = Instant::now();
        let i = self.lock();
        ActorSnapshot {
            key: format!("{}.{}", self.group, self.name),
            group: self.group.clone(),
            name: self.name.clone(),
            chain: self.chain.clone(),
            state: i.state,
            since_progress: now.saturating_duration_since(i.last_progress),
            last_progress_wall: i.last_progress_wall,
            stall_timeout: self.stall_timeout,
            recent_restarts: i
                .restarts
                .iter()
                .filter(|(t, _)| now.duration_since(*t) <= RESTART_MEMORY)
                .count(),
            last_restart_reason: i.restarts.back().map(|(_, r)| *r),
            restarts_total: i.restarts_total.clone(),
            incarnation: i.incarnation,
            note: i.note.clone(),
        }
    }
}

/// Supervisor-level counters.
#[derive(Debug, Default, Clone)]
pub struct SupervisorSnapshot {
    /// Meltdowns per supervisor group.
    pub meltdowns: BTreeMap<String, u64>,
}

/// All health records of one process (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct HealthRegistry {
    actors: Arc<RwLock<BTreeMap<String, Arc<ActorHealth>>>>,
    meltdowns: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl HealthRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry for `group.name`, created on first use.
    pub fn register(
        &self,
        group: &str,
        name: &str,
        chain: Option<&str>,
        stall_timeout: Option<Duration>,
    ) -> Arc<ActorHealth> {
        let key = format!("{group}.{name}");
        if let Ok(map) = self.actors.read() {
            if let Some(h) = map.get(&key) {
                return h.clone();
            }
        }
        let mut map = self.actors.write().unwrap_or_else(|p| p.into_inner());
        map.entry(key)
            .or_insert_with(|| {
                Arc::new(ActorHealth {
                    group: group.to_string(),
                    name: name.to_string(),
                    chain: chain.map(str::to_string),
                    stall_timeout,
                    inner: Mutex::new(Inner {
                        state: ActorState::Starting,
                        last_progress: Instant::now(),
                        last_progress_wall: SystemTime::now(),
                        restarts: VecDeque::new(),
                        restarts_total: BTreeMap::new(),
                        incarnation: 0,
                        note: None,
                    }),
                })
            })
            .clone()
    }

    /// The entry for `group.name`, if registered.
    pub fn get(&self, group: &str, name: &str) -> Option<Arc<ActorHealth>> {
        self.actors
            .read()
            .ok()
            .and_then(|m| m.get(&format!("{group}.{name}")).cloned())
    }

    /// Every entry, ordered by key.
    pub fn snapshot(&self) -> Vec<ActorSnapshot> {
        self.actors
            .read()
            .map(|m| m.values().map(|h| h.snapshot()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn record_meltdown(&self, group: &str) {
        let mut m = self.meltdowns.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(group.to_string()).or_insert(0) += 1;
    }

    /// Meltdowns so far, by supervisor group.
    pub fn meltdowns(&self) -> BTreeMap<String, u64> {
        self.meltdowns.lock().map(|m| m.clone()).unwrap_or_default()
    }
}
