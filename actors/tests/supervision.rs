//! Deterministic supervision tests: paused tokio time (backoff delays elapse instantly when
//! the runtime is idle) and supervisor events awaited instead of sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actors::{
    Backoff, ChildSpec, Failure, HealthRegistry, Heartbeat, MeltdownLimit, RestartReason,
    RestartType, Strategy, Supervisor, SupervisorEvent, SupervisorMsg, SupervisorSpec,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

enum WMsg {
    Fail,
    Panic,
    Stop,
    Beat,
}

struct Worker;

struct WorkerArgs {
    name: String,
    heartbeat: Heartbeat,
    journal: UnboundedSender<String>,
    refs: Refs,
}

type Refs = Arc<Mutex<HashMap<String, ActorRef<WMsg>>>>;

struct WorkerState {
    name: String,
    heartbeat: Heartbeat,
    journal: UnboundedSender<String>,
}

impl Actor for Worker {
    type Msg = WMsg;
    type State = WorkerState;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<WMsg>,
        a: WorkerArgs,
    ) -> Result<WorkerState, ActorProcessingErr> {
        a.refs.lock().unwrap().insert(a.name.clone(), myself);
        let _ = a.journal.send(format!("start:{}", a.name));
        a.heartbeat.beat();
        Ok(WorkerState {
            name: a.name,
            heartbeat: a.heartbeat,
            journal: a.journal,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<WMsg>,
        msg: WMsg,
        s: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WMsg::Fail => return Err(Box::new(Failure("boom".into()))),
            WMsg::Panic => panic!("injected"),
            WMsg::Stop => myself.stop(None),
            WMsg::Beat => s.heartbeat.beat(),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _m: ActorRef<WMsg>,
        s: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        let _ = s.journal.send(format!("stop:{}", s.name));
        Ok(())
    }
}

struct Harness {
    sup: ActorRef<SupervisorMsg>,
    events: UnboundedReceiver<SupervisorEvent>,
    journal: UnboundedReceiver<String>,
    refs: Refs,
    registry: HealthRegistry,
}

fn backoff() -> Backoff {
    Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_secs(5),
        random_factor: 0.2,
        reset_after: Duration::from_secs(30),
    }
}

async fn start(
    strategy: Strategy,
    children: &[(&str, RestartType, Option<Duration>)],
    meltdown: Option<MeltdownLimit>,
) -> Harness {
    let (etx, events) = unbounded_channel();
    let (jtx, journal) = unbounded_channel();
    let refs: Refs = Arc::default();
    let registry = HealthRegistry::new();
    let specs = children
        .iter()
        .map(|(name, restart, stall)| {
            let (name_s, jtx, refs) = (name.to_string(), jtx.clone(), refs.clone());
            let mut spec = ChildSpec::new(*name, move |sup, hb| {
                let args = WorkerArgs {
                    name: name_s.clone(),
                    heartbeat: hb,
                    journal: jtx.clone(),
                    refs: refs.clone(),
                };
                async move {
                    Actor::spawn_linked(None, Worker, args, sup)
                        .await
                        .map(|(r, _)| r.get_cell())
                }
            })
            .restart(*restart)
            .backoff(backoff());
            if let Some(t) = stall {
                spec = spec.stall_timeout(*t);
            }
            spec
        })
        .collect();
    let spec = SupervisorSpec {
        group: "g".into(),
        chain: None,
        strategy,
        meltdown,
        watchdog_interval: Duration::from_millis(100),
        shutdown_timeout: Duration::from_secs(5),
        children: specs,
        registry: registry.clone(),
        events: Some(etx),
    };
    let (sup, _) = Supervisor::spawn(spec).await.unwrap();
    let mut h = Harness {
        sup,
        events,
        journal,
        refs,
        registry,
    };
    for _ in children {
        assert!(matches!(
            h.next().await,
            SupervisorEvent::Started { incarnation: 1, .. }
        ));
    }
    h.drain_journal();
    h
}

impl Harness {
    async fn next(&mut self) -> SupervisorEvent {
        tokio::time::timeout(Duration::from_secs(3600), self.events.recv())
            .await
            .unwrap()
            .unwrap()
    }
    fn send(&self, child: &str, msg: WMsg) {
        self.refs.lock().unwrap()[child].send_message(msg).unwrap();
    }
    fn drain_journal(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.journal.try_recv() {
            out.push(line);
        }
        out
    }
    fn incarnation(&self, child: &str) -> u64 {
        self.registry.get("g", child).unwrap().incarnation()
    }
    async fn running(&self) -> Vec<String> {
        ractor::call!(self.sup, SupervisorMsg::Running).unwrap()
    }
}

fn restarting(child: &str, reason: RestartReason) -> impl Fn(&SupervisorEvent) -> bool + '_ {
    move |e| matches!(e, SupervisorEvent::Restarting { child: c, reason: r, .. } if c == child && *r == reason)
}

fn started(child: &str, n: u64) -> SupervisorEvent {
    SupervisorEvent::Started {
        group: "g".into(),
        child: child.into(),
        incarnation: n,
    }
}

const P: RestartType = RestartType::Permanent;

#[tokio::test(start_paused = true)]
async fn one_for_one_restarts_only_the_failed_child() {
    let mut h = start(
        Strategy::OneForOne,
        &[("a", P, None), ("b", P, None), ("c", P, None)],
        None,
    )
    .await;
    h.send("b", WMsg::Fail);
    assert!(restarting("b", RestartReason::Error)(&h.next().await));
    assert_eq!(h.next().await, started("b", 2));
    assert_eq!(
        (h.incarnation("a"), h.incarnation("b"), h.incarnation("c")),
        (1, 2, 1)
    );
    assert_eq!(h.running().await, ["a", "b", "c"]);
    assert_eq!(
        h.registry
            .get("g", "b")
            .unwrap()
            .restarts(RestartReason::Error),
        1
    );

    // A panic is told apart from an error.
    h.send("c", WMsg::Panic);
    assert!(restarting("c", RestartReason::Panic)(&h.next().await));
    assert_eq!(h.next().await, started("c", 2));
    assert_eq!((h.incarnation("a"), h.incarnation("b")), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn rest_for_one_restarts_the_failed_child_and_later_siblings_in_order() {
    let mut h = start(
        Strategy::RestForOne,
        &[
            ("a", P, None),
            ("b", P, None),
            ("c", P, None),
            ("d", P, None),
        ],
        None,
    )
    .await;
    h.send("b", WMsg::Fail);
    assert!(restarting("b", RestartReason::Error)(&h.next().await));
    assert!(restarting("c", RestartReason::Sibling)(&h.next().await));
    assert!(restarting("d", RestartReason::Sibling)(&h.next().await));
    assert_eq!(h.next().await, started("b", 2));
    assert_eq!(h.next().await, started("c", 2));
    assert_eq!(h.next().await, started("d", 2));
    // Later siblings stopped in reverse order, then everything restarted in start order.
    assert_eq!(
        h.drain_journal(),
        ["stop:d", "stop:c", "start:b", "start:c", "start:d"]
    );
    assert_eq!(h.incarnation("a"), 1);
    assert_eq!(h.running().await, ["a", "b", "c", "d"]);
}

#[tokio::test(start_paused = true)]
async fn transient_and_temporary_children() {
    let mut h = start(
        Strategy::OneForOne,
        &[
            ("t", RestartType::Transient, None),
            ("tmp", RestartType::Temporary, None),
            ("t2", RestartType::Transient, None),
        ],
        None,
    )
    .await;
    // A transient child that stops normally stays down.
    h.send("t", WMsg::Stop);
    assert_eq!(
        h.next().await,
        SupervisorEvent::Stopped {
            group: "g".into(),
            child: "t".into()
        }
    );
    // A transient child that fails is restarted.
    h.send("t2", WMsg::Fail);
    assert!(restarting("t2", RestartReason::Error)(&h.next().await));
    assert_eq!(h.next().await, started("t2", 2));
    // A temporary child is never restarted, even after a failure.
    h.send("tmp", WMsg::Panic);
    assert_eq!(
        h.next().await,
        SupervisorEvent::Stopped {
            group: "g".into(),
            child: "tmp".into()
        }
    );
    assert_eq!(h.running().await, ["t2"]);
}

#[tokio::test(start_paused = true)]
async fn temporary_siblings_are_not_restarted_by_rest_for_one() {
    let mut h = start(
        Strategy::RestForOne,
        &[
            ("a", P, None),
            ("tmp", RestartType::Temporary, None),
            ("c", P, None),
        ],
        None,
    )
    .await;
    h.send("a", WMsg::Fail);
    assert!(restarting("a", RestartReason::Error)(&h.next().await));
    assert!(restarting("c", RestartReason::Sibling)(&h.next().await));
    assert_eq!(h.next().await, started("a", 2));
    assert_eq!(h.next().await, started("c", 2));
    assert_eq!(h.running().await, ["a", "c"]);
}

#[tokio::test(start_paused = true)]
async fn meltdown_escalates_after_n_restarts_in_the_window() {
    let limit = MeltdownLimit {
        max_restarts: 3,
        window: Duration::from_secs(60),
    };
    let mut h = start(
        Strategy::OneForOne,
        &[("a", P, None), ("b", P, None)],
        Some(limit),
    )
    .await;
    for n in 2..=4 {
        h.send("a", WMsg::Fail);
        assert!(restarting("a", RestartReason::Error)(&h.next().await));
        assert_eq!(h.next().await, started("a", n));
    }
    // The fourth restart within the window is one too many.
    let sup = h.sup.clone();
    h.send("a", WMsg::Fail);
    assert_eq!(
        h.next().await,
        SupervisorEvent::Meltdown { group: "g".into() }
    );
    // Children are stopped in reverse order, and the supervisor itself fails.
    assert_eq!(
        h.next().await,
        SupervisorEvent::Stopped {
            group: "g".into(),
            child: "b".into()
        }
    );
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        while sup.get_status() != ractor::ActorStatus::Stopped {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(status.is_ok());
    assert_eq!(h.registry.meltdowns()["g"], 1);
    assert_eq!(
        h.registry.get("g", "b").unwrap().state(),
        actors::ActorState::Failed
    );
}

#[tokio::test(start_paused = true)]
async fn restarts_spread_beyond_the_window_never_melt_down_and_backoff_resets() {
    let limit = MeltdownLimit {
        max_restarts: 3,
        window: Duration::from_secs(10),
    };
    let mut h = start(Strategy::OneForOne, &[("a", P, None)], Some(limit)).await;
    let mut delays = Vec::new();
    for n in 2..=4 {
        h.send("a", WMsg::Fail);
        match h.next().await {
            SupervisorEvent::Restarting { delay, .. } => delays.push(delay),
            e => panic!("{e:?}"),
        }
        assert_eq!(h.next().await, started("a", n));
    }
    // Consecutive failures back off exponentially (100 ms, 200 ms, 400 ms, each + ≤ 20 %).
    for (i, d) in delays.iter().enumerate() {
        let base = Duration::from_millis(100 << i);
        assert!(*d >= base && *d <= base.mul_f64(1.2), "{i}: {d:?}");
    }
    // After a stable period (reset_after = 30 s, longer than the window) both the backoff
    // and the meltdown log start over.
    tokio::time::advance(Duration::from_secs(31)).await;
    for n in 5..=6 {
        h.send("a", WMsg::Fail);
        match h.next().await {
            SupervisorEvent::Restarting { delay, .. } => {
                if n == 5 {
                    assert!(delay <= Duration::from_millis(120), "{delay:?}");
                }
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(h.next().await, started("a", n));
    }
    assert!(h.registry.meltdowns().is_empty());
}

#[tokio::test(start_paused = true)]
async fn watchdog_restarts_a_stalled_child() {
    let mut h = start(
        Strategy::OneForOne,
        &[("busy", P, Some(Duration::from_secs(2))), ("idle", P, None)],
        None,
    )
    .await;
    // Beating keeps it alive past its timeout.
    for _ in 0..5 {
        tokio::time::advance(Duration::from_millis(900)).await;
        h.send("busy", WMsg::Beat);
    }
    assert_eq!(h.incarnation("busy"), 1);
    // Silence beyond the timeout gets it killed within one watchdog tick and restarted.
    let e = h.next().await;
    assert!(restarting("busy", RestartReason::Stalled)(&e), "{e:?}");
    assert_eq!(h.next().await, started("busy", 2));
    assert_eq!(
        h.registry
            .get("g", "busy")
            .unwrap()
            .restarts(RestartReason::Stalled),
        1
    );
    assert_eq!(h.incarnation("idle"), 1);
}

#[tokio::test(start_paused = true)]
async fn manual_restart_and_ordered_shutdown() {
    let mut h = start(
        Strategy::OneForOne,
        &[("a", P, None), ("b", P, None), ("c", P, None)],
        None,
    )
    .await;
    let ok = ractor::call!(h.sup, SupervisorMsg::RestartChild, "b".to_string()).unwrap();
    assert!(ok);
    match h.next().await {
        SupervisorEvent::Restarting {
            child,
            reason,
            delay,
            ..
        } => {
            assert_eq!(
                (child.as_str(), reason, delay),
                ("b", RestartReason::Manual, Duration::ZERO)
            );
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(h.next().await, started("b", 2));
    assert!(!ractor::call!(h.sup, SupervisorMsg::RestartChild, "zz".to_string()).unwrap());
    h.drain_journal();
    h.sup.stop_and_wait(None, None).await.unwrap();
    assert_eq!(h.drain_journal(), ["stop:c", "stop:b", "stop:a"]);
}
