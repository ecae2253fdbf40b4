//! Runs actor trees built on the `actors` kit: the live supervisor directory operators
//! restart actors through, the supervision event log (and Sentry reports), and the actor
//! metrics refreshed from the health registry. It knows no component: the composition root
//! decides which workers the tree holds.

pub mod metrics;
pub mod tree;

pub use tree::{SupervisorDirectory, Tree};
