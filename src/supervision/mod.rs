//! The gateway's actor tree, built on the `actors` kit:
//!
//! ```text
//! root (one_for_one, never melts down)
//! ├── {chain}        one supervisor per chain (one_for_one, melts down after too many
//! │   ├── scanner    restarts; the root then retries the whole chain with a slow backoff)
//! │   ├── confirmer
//! │   └── sweeper
//! └── webhooks       the dispatcher pool (one_for_one)
//!     ├── dispatcher-0 .. dispatcher-{N-1}
//!     └── janitor    purges idempotency keys older than a day
//! ```

pub mod faults;
pub mod janitor;
pub mod metrics;
pub mod tree;
pub mod worker;

pub use faults::Faults;
pub use tree::{SupervisorDirectory, Tree, TreeContext};
