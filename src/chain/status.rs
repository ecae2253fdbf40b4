//! What is known about each chain right now: per-endpoint RPC health and heads, and the
//! head the scanner last processed. Written by the RPC client and the scanner, read by
//! `/health/detail`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// One RPC endpoint, identified by host only (URLs often embed provider keys).
#[derive(Debug, Clone)]
pub struct EndpointStatus {
    /// `host[:port]`.
    pub host: String,
    /// Latency of the last request.
    pub last_latency: Option<Duration>,
    /// When the last request finished.
    pub last_checked: Option<SystemTime>,
    /// Head reported by this endpoint's last `eth_blockNumber`.
    pub head: Option<u64>,
    /// The last failure, sanitized; `None` after a success.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Its head trails the best by more than the chain's `max_head_lag_blocks`.
    pub lagging: bool,
}

/// One chain.
#[derive(Debug, Clone, Default)]
pub struct ChainStatus {
    /// Endpoints in configured order.
    pub endpoints: Vec<EndpointStatus>,
    /// The head the scanner last processed.
    pub scanned_head: Option<u64>,
    /// Set while every answering endpoint is behind the scanner: the best head they serve.
    /// The scanner waits for them; it never takes this for a reorg.
    pub nodes_behind: Option<u64>,
    /// Confirmed payments whose counted funds a reorg took away.
    pub reversed_payments: u64,
    /// The sweeper's view, once it has ticked (chains with a treasury only).
    pub sweep: Option<SweepStatus>,
}

/// What the sweeper last saw.
#[derive(Debug, Clone, Default)]
pub struct SweepStatus {
    /// The gas tank's balance, in wei.
    pub gas_tank_wei: Option<alloy::primitives::U256>,
    /// Confirmed payments whose funds are not swept yet.
    pub unswept: i64,
    /// How long the oldest of them has been confirmed.
    pub oldest_unswept: Duration,
    /// Sweeps in flight.
    pub in_flight: i64,
    /// Age of the oldest sweep in flight.
    pub oldest_in_flight: Duration,
    /// Past this, a backlog is a warning: twice the chain's `max_age` for unswept funds,
    /// ten replacement periods for a sweep in flight.
    pub warn_unswept_after: Duration,
    /// See `warn_unswept_after`.
    pub warn_in_flight_after: Duration,
}

impl ChainStatus {
    /// The best head any endpoint reported.
    pub fn best_head(&self) -> Option<u64> {
        self.endpoints.iter().filter_map(|e| e.head).max()
    }

    /// Blocks between the best known head and what the scanner processed.
    pub fn lag(&self) -> Option<u64> {
        Some(self.best_head()?.saturating_sub(self.scanned_head?))
    }
}

/// All chains (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct ChainStatusRegistry {
    inner: Arc<RwLock<BTreeMap<String, ChainStatus>>>,
}

impl ChainStatusRegistry {
    /// Registers a chain with its endpoint hosts.
    pub fn register(&self, chain: &str, hosts: Vec<String>) {
        let mut m = self.inner.write().unwrap_or_else(|p| p.into_inner());
        m.entry(chain.to_string()).or_insert_with(|| ChainStatus {
            endpoints: hosts
                .into_iter()
                .map(|host| EndpointStatus {
                    host,
                    last_latency: None,
                    last_checked: None,
                    head: None,
                    last_error: None,
                    consecutive_failures: 0,
                    lagging: false,
                })
                .collect(),
            scanned_head: None,
            nodes_behind: None,
            reversed_payments: 0,
            sweep: None,
        });
    }

    /// Updates one chain.
    pub fn update(&self, chain: &str, f: impl FnOnce(&mut ChainStatus)) {
        let mut m = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = m.get_mut(chain) {
            f(s);
        }
    }

    /// A copy of one chain's status.
    pub fn get(&self, chain: &str) -> Option<ChainStatus> {
        self.inner.read().ok().and_then(|m| m.get(chain).cloned())
    }

    /// Copies of every chain's status.
    pub fn snapshot(&self) -> BTreeMap<String, ChainStatus> {
        self.inner.read().map(|m| m.clone()).unwrap_or_default()
    }
}
