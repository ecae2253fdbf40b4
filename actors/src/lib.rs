//! A supervision kit on ractor, independent of the gateway's domain.
//!
//! - [`Supervisor`]: OTP-style supervisor actor: `one_for_one` and `rest_for_one`,
//!   permanent/transient/temporary children, per-child [`Backoff`] with jitter and reset,
//!   [`MeltdownLimit`] escalation, ordered start and reverse-order stop, and a stall watchdog.
//! - [`HealthRegistry`]: per-actor heartbeats, lifecycle state and restart history, read by
//!   health endpoints and metrics.
//!
//! # Why not `ractor-supervisor`
//! `ractor-supervisor` 0.2 (evaluated first, with `default-features = false`) provides the
//! strategies, restart types, meltdown counting and per-child backoff, and this crate follows
//! its design. It was not adopted because the gateway needs what it cannot offer without
//! forking: restart reasons (`panic`, `error`, `stalled`, `spawn_failed`) reported per child
//! for metrics and health output, a heartbeat watchdog that restarts stalled children,
//! control over escalation (a chain's meltdown must not spend the root's restart budget),
//! and child identity independent of ractor's global name registry (it registers every
//! child by name, so two trees in one process collide, and it sleeps 10 ms to dodge name
//! races on restart).

pub mod backoff;
pub mod health;
pub mod meltdown;
pub mod supervisor;

pub use backoff::Backoff;
pub use health::{
    ActorHealth, ActorSnapshot, ActorState, HealthRegistry, Heartbeat, RestartReason,
};
pub use meltdown::{MeltdownLimit, MeltdownTracker};
pub use supervisor::{
    ChildSpec, Failure, RestartType, SpawnFn, Strategy, Supervisor, SupervisorError,
    SupervisorEvent, SupervisorMsg, SupervisorSpec,
};
