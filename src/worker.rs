//! Periodic work and the actor that drives it. A leaf: it imports no component, so every
//! component can implement [`Work`] and the supervision tree can run any of them. Each
//! tick runs in its own span (`worker.tick`, with the chain and actor) and in the worker's
//! own Sentry hub.
//!
//! A unit of periodic work ([`Work::tick_once`]) is driven by self-scheduled ticks. Tests
//! call `tick_once` directly; the actor adds scheduling, heartbeats and error policy
//! (retryable errors are logged and retried after a bounded exponential backoff, whatever
//! the work's own interval, so a dead dependency never spins a worker; fatal ones fail the
//! actor so its supervisor restarts it).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use actors::{Backoff, Failure, Heartbeat};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sentry::SentryFutureExt as _;
use slog::Logger;

/// How a failure should be handled. Each component classifies its own errors; the worker
/// only asks.
pub trait Retryable {
    /// Worth trying again later (the next tick): connectivity, timeouts, a chain view that
    /// changed mid-tick.
    fn is_retryable(&self) -> bool;

    /// Not worth retrying in this incarnation: the actor fails and its supervisor restarts
    /// it with a clean state.
    fn is_fatal(&self) -> bool {
        !self.is_retryable()
    }

    /// A write was refused because the term this worker ran under is over (another
    /// replica leads now): its gate should close at once rather than at its next check.
    fn is_fenced(&self) -> bool {
        false
    }
}

/// Periodic work owned by one actor.
pub trait Work: Send + 'static {
    /// Why a tick did not complete.
    type Error: Retryable + fmt::Display + fmt::Debug + Send + 'static;
    /// Pause between the end of one tick and the start of the next.
    fn interval(&self) -> Duration;
    /// One unit of work. Completing it counts as progress (a heartbeat).
    fn tick_once(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Runs once when the actor stops for good or for a restart (a lease keeper gives its
    /// lease up here).
    fn stop(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Whether a worker may run its ticks now. A closed gate (this replica does not lead the
/// worker's chain) makes a tick a no-op that still counts as progress: standing by is
/// healthy.
pub trait Gate: Send + Sync + 'static {
    /// Whether ticks run.
    fn open(&self) -> bool;

    /// A tick's write was refused by the fence: stop trusting the term now.
    fn refused(&self) {}
}

/// Messages of a worker.
#[derive(Debug)]
pub enum WorkerMsg {
    /// Run one tick.
    Tick,
}

/// The actor wrapping a [`Work`].
pub struct Worker<W>(PhantomData<fn() -> W>);

impl<W> Default for Worker<W> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// Everything a worker is started with.
pub struct WorkerArgs<W> {
    /// The work.
    pub work: W,
    /// Health key, e.g. `ethereum.scanner`.
    pub key: String,
    /// Progress reporting.
    pub heartbeat: Heartbeat,
    /// Logger carrying `chain` and `actor`.
    pub log: Logger,
    /// Test-only fault injection.
    pub faults: Arc<Faults>,
    /// Delay before retrying a failed tick, by consecutive failures.
    pub retry: Backoff,
    /// Runs ticks only while open (chain workers: while this replica leads the chain).
    pub gate: Option<Arc<dyn Gate>>,
}

/// When the tick after one that ended with `failures` consecutive failures runs: the
/// work's interval after a success, at least the retry backoff after a failure.
pub fn next_tick_delay(interval: Duration, failures: u64, retry: &Backoff, unit: f64) -> Duration {
    match failures {
        0 => interval,
        n => {
            let n = u32::try_from(n - 1).unwrap_or(u32::MAX);
            interval.max(retry.delay_with(n, unit))
        }
    }
}

/// A worker's state.
pub struct WorkerState<W> {
    args: WorkerArgs<W>,
    failures: u64,
    /// This worker's Sentry hub, tagged with its chain and actor, so whatever it reports
    /// (a panic included) says where it came from.
    hub: Arc<sentry::Hub>,
    /// Span attributes: the chain (empty for the webhook pool) and the actor.
    chain: String,
    actor: String,
}

impl<W: Work> Actor for Worker<W> {
    type Msg = WorkerMsg;
    type State = WorkerState<W>;
    type Arguments = WorkerArgs<W>;

    async fn pre_start(
        &self,
        _myself: ActorRef<WorkerMsg>,
        args: WorkerArgs<W>,
    ) -> Result<Self::State, ActorProcessingErr> {
        slog::debug!(args.log, "actor starting");
        let (chain, actor) = match args.key.split_once('.') {
            Some((c, a)) => (c.to_string(), a.to_string()),
            None => (String::new(), args.key.clone()),
        };
        let hub = Arc::new(sentry::Hub::new_from_top(sentry::Hub::main()));
        hub.configure_scope(|scope| {
            if !chain.is_empty() {
                scope.set_tag("chain", &chain);
            }
            scope.set_tag("actor", &actor);
        });
        Ok(WorkerState {
            args,
            failures: 0,
            hub,
            chain,
            actor,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<WorkerMsg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        myself.send_message(WorkerMsg::Tick)?;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let WorkerMsg::Tick = msg;
        if state.args.gate.as_ref().is_some_and(|g| !g.open()) {
            state.args.heartbeat.beat();
            myself.send_after(state.args.work.interval(), || WorkerMsg::Tick);
            return Ok(());
        }
        #[cfg(debug_assertions)]
        hold_point(&state.args.key, &state.args.log).await;
        let cx = crate::telemetry::trace::start(
            "worker.tick",
            SpanKind::Internal,
            &Context::new(),
            vec![
                KeyValue::new("ctrip.chain", state.chain.clone()),
                KeyValue::new("ctrip.actor", state.actor.clone()),
            ],
            Vec::new(),
        );
        let hub = state.hub.clone();
        // A panic report (made by the panic hook, from this hub) names the tick's trace.
        if let Some(trace_id) = crate::telemetry::trace::trace_id(&cx) {
            hub.configure_scope(|scope| scope.set_tag("trace_id", trace_id));
        }
        let args = &mut state.args;
        let tick = async {
            args.faults.maybe_panic(&args.key);
            args.work.tick_once().await
        };
        let result = tick.with_context(cx.clone()).bind_hub(hub).await;
        if result.is_err() {
            crate::telemetry::trace::fail(&cx, "tick failed");
        }
        drop(cx);
        match result {
            Ok(()) => {
                state.args.heartbeat.beat();
                if state.failures > 0 {
                    slog::info!(state.args.log, "tick recovered"; "failed_ticks" => state.failures);
                    state.failures = 0;
                }
            }
            Err(e) if e.is_fatal() => {
                // The supervisor reports the failure once, as an error, when it restarts us.
                slog::warn!(state.args.log, "tick failed; restarting actor"; "error" => %e);
                return Err(Box::new(Failure::new(e)));
            }
            Err(e) if e.is_fenced() => {
                // Nothing was written: the database refused the stale term. Stand by now
                // instead of retrying until the trust window runs out.
                if let Some(g) = &state.args.gate {
                    g.refused();
                }
                slog::warn!(state.args.log, "write refused by the lease fence; standing by";
                    "error" => %e);
            }
            Err(e) => {
                state.failures += 1;
                // Log the first failure and then every 10th, so an outage does not flood.
                if state.failures == 1 || state.failures % 10 == 0 {
                    slog::warn!(state.args.log, "tick failed; retrying";
                        "error" => %e, "failed_ticks" => state.failures);
                }
            }
        }
        let every = next_tick_delay(
            state.args.work.interval(),
            state.failures,
            &state.args.retry,
            rand::random::<f64>(),
        );
        myself.send_after(every, || WorkerMsg::Tick);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<WorkerMsg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.args.work.stop().await;
        slog::info!(state.args.log, "actor stopped");
        Ok(())
    }
}

// Test-only fault injection. In release builds the type exists but holds nothing and
// injects nothing: the hook is compiled out.

/// Faults armed by tests, consumed by workers.
#[derive(Debug, Default)]
pub struct Faults {
    #[cfg(debug_assertions)]
    panics: std::sync::Mutex<std::collections::HashSet<String>>,
    #[cfg(debug_assertions)]
    tree_start: std::sync::atomic::AtomicBool,
}

impl Faults {
    /// Makes the worker with health key `key` panic on its next tick (debug builds only).
    #[cfg(debug_assertions)]
    pub fn inject_panic(&self, key: &str) {
        if let Ok(mut p) = self.panics.lock() {
            p.insert(key.to_string());
        }
    }

    /// Panics if a panic was armed for `key` (debug builds only).
    #[cfg(debug_assertions)]
    pub fn maybe_panic(&self, key: &str) {
        let armed = self
            .panics
            .lock()
            .map(|mut p| p.remove(key))
            .unwrap_or(false);
        if armed {
            panic!("injected panic (test hook) in {key}");
        }
    }

    /// No-op in release builds.
    #[cfg(not(debug_assertions))]
    #[inline(always)]
    pub fn maybe_panic(&self, _key: &str) {}

    /// Makes the next actor-tree start fail (debug builds only).
    #[cfg(debug_assertions)]
    pub fn fail_tree_start(&self) {
        self.tree_start
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a tree-start failure was armed (always false in release builds).
    pub fn tree_start_fails(&self) -> bool {
        #[cfg(debug_assertions)]
        {
            self.tree_start
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        }
        #[cfg(not(debug_assertions))]
        {
            false
        }
    }
}

/// Holds a tick that has passed its gate for as long as a file exists, when the
/// environment variable `CTRIP_TEST_HOLD` is `<worker key>=<path>` (debug builds only;
/// compiled out of release builds). It freezes a worker between its lease check and its
/// write, as a long pause of the process would, so a test can prove the fence refuses the
/// write that follows. The wait polls: this is a test hook, never a production path.
#[cfg(debug_assertions)]
async fn hold_point(key: &str, log: &Logger) {
    let Ok(v) = std::env::var("CTRIP_TEST_HOLD") else {
        return;
    };
    let Some((k, path)) = v.split_once('=') else {
        return;
    };
    let path = std::path::Path::new(path);
    if k != key || !path.exists() {
        return;
    }
    slog::info!(log, "held at the test hold point");
    while path.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Aborts the process at `point` when the environment variable `CTRIP_TEST_CRASH` names it
/// (debug builds only; compiled out of release builds). It gives the tests that kill the
/// real process a crash at an exact place, such as between a commit and a broadcast.
#[inline]
pub fn crash_point(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("CTRIP_TEST_CRASH").is_ok_and(|v| v == point) {
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_ticks_back_off_exponentially_up_to_the_cap_whatever_the_interval() {
        let retry = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        // A worker that runs back to back (interval zero) while healthy.
        assert_eq!(
            next_tick_delay(Duration::ZERO, 0, &retry, 0.0),
            Duration::ZERO
        );
        let delays: Vec<Duration> = (1..=10)
            .map(|n| next_tick_delay(Duration::ZERO, n, &retry, 0.0))
            .collect();
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_secs(1));
        assert_eq!(delays[2], Duration::from_secs(2));
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(delays[9], Duration::from_secs(30));
        // Jitter never exceeds 20 % above the cap.
        assert!(next_tick_delay(Duration::ZERO, 1000, &retry, 0.999) <= Duration::from_secs(36));
        // A slow worker's own interval still applies when it is longer.
        assert_eq!(
            next_tick_delay(Duration::from_secs(60), 1, &retry, 0.0),
            Duration::from_secs(60)
        );
        // In one minute of a dead dependency, a worker runs a handful of ticks, not thousands.
        let mut t = Duration::ZERO;
        let mut ticks = 0u64;
        while t < Duration::from_secs(60) {
            ticks += 1;
            t += next_tick_delay(Duration::ZERO, ticks, &retry, 0.5);
        }
        assert!(ticks < 15, "{ticks} ticks in a minute");
    }
}
