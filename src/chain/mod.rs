//! Chains: the RPC client, the live status each chain exposes to health and metrics, and
//! the chain workers (scanner, confirmer, sweeper).

pub mod confirmer;
pub mod metrics;
pub mod rpc;
pub mod scanner;
pub mod status;
pub mod sweeper;

pub use rpc::{ChainRpc, RpcError};
pub use status::{ChainStatus, ChainStatusRegistry, EndpointStatus};
