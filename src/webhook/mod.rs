//! Webhook delivery: Standard Webhooks signatures, the SSRF guard, the retry
//! schedule and the dispatcher pool's worker.

pub mod dispatcher;
pub mod metrics;
pub mod schedule;
pub mod signature;
pub mod ssrf;
