//! The per-chain RPC client on alloy.
//!
//! - Several endpoints: a request goes to the healthiest one and fails over to the next on a
//!   transport failure; a failing endpoint backs off exponentially (0.5 s up to 30 s).
//! - [`ChainRpc::refresh_heads`] asks every endpoint for its head. An endpoint whose head
//!   trails the best by more than `max_lag` blocks is avoided even while it answers, and no
//!   request about block N ever goes to an endpoint that has not reported N: a lagging node
//!   answers "no logs" for blocks it does not have, which would silently skip payments.
//! - A JSON-RPC error (the node answered) is returned to the caller without failover: it is
//!   about the request (e.g. a log range too large), not the endpoint.
//! - Blocks are decoded with minimal structs, so chains with extra transaction types (L2
//!   deposit transactions) decode too. Errors and metrics never carry URLs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, Bytes, B256, U256, U64};
use alloy::providers::utils::{eip1559_default_estimator, Eip1559Estimation};
use alloy::rpc::client::RpcClient;
use alloy::rpc::json_rpc::{RpcRecv, RpcSend};
use alloy::rpc::types::{FeeHistory, TransactionReceipt};
use alloy::transports::http::Http;
use alloy::transports::{TransportError, TransportErrorKind};
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use super::metrics::ChainMetrics;
use super::status::ChainStatusRegistry;
use crate::config::ChainSettings;

/// An RPC failure, sanitized: no URL, no response body.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// The request did not finish in time.
    #[error("request timed out")]
    Timeout,
    /// No connection could be made.
    #[error("connection failed")]
    Connect,
    /// The endpoint answered with an HTTP error status.
    #[error("HTTP status {0}")]
    Http(u16),
    /// The node answered with a JSON-RPC error.
    #[error("JSON-RPC error {code}: {message}")]
    Rpc {
        /// JSON-RPC error code.
        code: i64,
        /// The node's message (truncated).
        message: String,
    },
    /// A response that does not decode.
    #[error("malformed response")]
    Decode,
    /// Anything else (a broken connection).
    #[error("transport error")]
    Transport,
    /// The HTTP client could not be built (bad TLS setup); the endpoint is never used
    /// with a weaker client instead.
    #[error("HTTP client could not be built")]
    Client,
    /// No endpoint can serve the request now (all backing off, or none has the block yet).
    #[error("no usable RPC endpoint")]
    NoEndpoint,
    /// A block the head says exists was not returned.
    #[error("block {0} not available")]
    MissingBlock(u64),
}

impl crate::worker::Retryable for RpcError {
    fn is_retryable(&self) -> bool {
        RpcError::is_retryable(self)
    }
}

impl RpcError {
    /// Label value for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            _ if self.is_rate_limited() => "rate_limited",
            Self::Http(_) => "http_error",
            Self::Rpc { .. } | Self::Decode | Self::MissingBlock(_) => "rpc_error",
            Self::Connect | Self::Transport | Self::NoEndpoint | Self::Client => "connect_error",
        }
    }

    /// RPC failures are transient from the gateway's point of view, except a client that
    /// cannot be built: retrying would build the same broken client.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Client)
    }

    /// Whether a node refused a transaction because it already has it: in its pool
    /// ("already known" in geth, "transaction already imported" in anvil) or mined ("nonce
    /// too low" for a nonce only we use). Re-sending stored bytes treats these as sent.
    pub fn is_already_sent(&self) -> bool {
        match self {
            Self::Rpc { message, .. } => {
                let m = message.to_ascii_lowercase();
                m.contains("already known")
                    || m.contains("already imported")
                    || m.contains("nonce too low")
            }
            _ => false,
        }
    }

    /// Whether a provider refused a log query for its size (the caller splits the range).
    /// Providers reuse codes (`-32005` is both "too many results" and "rate limited" at
    /// Infura), so the message decides; a throttled provider must never get more, smaller
    /// requests.
    pub fn is_range_too_large(&self) -> bool {
        if self.is_rate_limited() {
            return false;
        }
        match self {
            Self::Rpc { message, .. } => {
                let m = message.to_ascii_lowercase();
                m.contains("range")
                    || m.contains("more than")
                    || m.contains("too many results")
                    || m.contains("too many logs")
                    || m.contains("response size")
                    || m.contains("too large")
            }
            Self::Http(413) => true,
            _ => false,
        }
    }

    /// Whether the endpoint throttled us (HTTP 429 or a rate-limit error): that endpoint
    /// backs off and the request fails over to the next one.
    pub fn is_rate_limited(&self) -> bool {
        match self {
            Self::Http(429) => true,
            Self::Rpc { code, message } => {
                let m = message.to_ascii_lowercase();
                *code == 429
                    || m.contains("rate limit")
                    || m.contains("rate-limit")
                    || m.contains("ratelimit")
                    || m.contains("rate limited")
                    || m.contains("too many requests")
                    || m.contains("request limit")
                    || m.contains("capacity")
                    || m.contains("exceeded the quota")
                    || (m.contains("exceeded") && m.contains("request"))
            }
            _ => false,
        }
    }

    fn from_transport(e: &TransportError) -> Self {
        match e {
            TransportError::ErrorResp(p) => Self::Rpc {
                code: p.code,
                message: p.message.chars().take(200).collect(),
            },
            TransportError::DeserError { .. } => Self::Decode,
            TransportError::Transport(TransportErrorKind::HttpError(h)) => Self::Http(h.status),
            TransportError::Transport(TransportErrorKind::Custom(inner)) => {
                match inner.downcast_ref::<reqwest::Error>() {
                    Some(r) if r.is_timeout() => Self::Timeout,
                    Some(r) if r.is_connect() => Self::Connect,
                    _ => Self::Transport,
                }
            }
            _ => Self::Transport,
        }
    }

    /// Whether the node itself answered about the request (so the endpoint is alive and
    /// another endpoint would answer the same). A throttled endpoint did not.
    pub fn is_node_answer(&self) -> bool {
        matches!(self, Self::Rpc { .. } | Self::Decode) && !self.is_rate_limited()
    }
}

/// A transaction, as much of it as payment detection needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcTransaction {
    /// Hash.
    pub hash: B256,
    /// Sender.
    pub from: Address,
    /// Recipient; `None` for contract creation.
    pub to: Option<Address>,
    /// Native value.
    #[serde(default)]
    pub value: U256,
}

/// A block with its transactions.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcBlock {
    /// Number.
    pub number: U64,
    /// Hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
    /// Timestamp (Unix seconds).
    pub timestamp: U64,
    /// Transactions (full objects).
    #[serde(default)]
    pub transactions: Vec<RpcTransaction>,
}

/// A block header.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcHeader {
    /// Number.
    pub number: U64,
    /// Hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
}

/// A log entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcLog {
    /// Emitting contract.
    pub address: Address,
    /// Topics.
    pub topics: Vec<B256>,
    /// Data.
    pub data: Bytes,
    /// Block number.
    pub block_number: U64,
    /// Block hash.
    pub block_hash: B256,
    /// Transaction hash.
    pub transaction_hash: B256,
    /// Index in the block.
    pub log_index: U64,
    /// Set by nodes for logs of reorged blocks.
    #[serde(default)]
    pub removed: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogFilter {
    from_block: U64,
    to_block: U64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    address: Vec<Address>,
    topics: Vec<Option<Vec<B256>>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Health {
    failures: u32,
    backoff_until: Option<Instant>,
    head: Option<u64>,
}

struct RpcEndpoint {
    host: String,
    client: RpcClient,
    health: Mutex<Health>,
}

impl RpcEndpoint {
    fn health(&self) -> Health {
        self.health.lock().map(|h| *h).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Health)) {
        if let Ok(mut h) = self.health.lock() {
            f(&mut h);
        }
    }
}

/// A chain's RPC client (cheap to clone; clones share endpoint health, the best head seen
/// and the head cache, so one client serves all of a chain's workers).
#[derive(Clone)]
pub struct ChainRpc {
    chain: String,
    endpoints: Arc<Vec<RpcEndpoint>>,
    max_lag: u64,
    status: ChainStatusRegistry,
    metrics: ChainMetrics,
    /// The best head any endpoint ever reported. It never goes down: a lower answer is a
    /// lagging or load-balanced node, never by itself a reorg.
    best_seen: Arc<AtomicU64>,
    /// The last head refresh, reused by every worker for `head_ttl`.
    last_refresh: Arc<Mutex<Option<(Instant, u64)>>>,
    head_ttl: Duration,
}

impl ChainRpc {
    /// Builds the client; no request is made yet. Fails (rather than falling back to a
    /// client without timeouts or with redirects) when the HTTP client cannot be built.
    pub fn new(
        chain: &ChainSettings,
        timeout: Duration,
        status: ChainStatusRegistry,
        metrics: ChainMetrics,
    ) -> Result<Self, RpcError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|_| RpcError::Client)?;
        let endpoints: Vec<RpcEndpoint> = chain
            .rpc_urls
            .iter()
            .map(|u| {
                let transport = Http::with_client(http.clone(), u.expose().clone());
                RpcEndpoint {
                    host: u.host(),
                    client: RpcClient::new(transport, false),
                    health: Mutex::new(Health::default()),
                }
            })
            .collect();
        status.register(
            &chain.name,
            endpoints.iter().map(|e| e.host.clone()).collect(),
        );
        Ok(Self {
            chain: chain.name.clone(),
            endpoints: Arc::new(endpoints),
            max_lag: chain.max_head_lag_blocks,
            status,
            metrics,
            best_seen: Arc::default(),
            last_refresh: Arc::default(),
            head_ttl: Duration::ZERO,
        })
    }

    /// Reuses a head refresh for `ttl`, so the chain's workers ticking at the same cadence
    /// ask the endpoints for their heads once, not once each.
    pub fn with_head_ttl(mut self, ttl: Duration) -> Self {
        self.head_ttl = ttl;
        self
    }

    /// Whether `other` is a clone of this client (they share endpoint state).
    pub fn same_client(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.endpoints, &other.endpoints)
    }

    /// The best head any endpoint ever reported (monotonic).
    pub fn best_seen(&self) -> u64 {
        self.best_seen.load(Ordering::SeqCst)
    }

    /// The chain's name.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    fn observe(
        &self,
        idx: usize,
        method: &str,
        started: Instant,
        result: Result<Option<u64>, &RpcError>,
    ) {
        let elapsed = started.elapsed();
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        let chain = self.chain.as_str();
        self.metrics
            .rpc_requests
            .with_label_values(&[chain, method, outcome])
            .inc();
        // A client span for the call, after the fact: the method and outcome, never the
        // endpoint (its URL may carry a key).
        if crate::telemetry::trace::enabled() {
            crate::telemetry::trace::record(
                "rpc.call",
                opentelemetry::trace::SpanKind::Client,
                SystemTime::now() - elapsed,
                vec![
                    opentelemetry::KeyValue::new("rpc.system", "jsonrpc"),
                    opentelemetry::KeyValue::new("rpc.method", method.to_string()),
                    opentelemetry::KeyValue::new("ctrip.chain", self.chain.clone()),
                    opentelemetry::KeyValue::new("ctrip.outcome", outcome),
                ],
            );
        }
        self.metrics
            .rpc_duration
            .with_label_values(&[chain, method])
            .observe(elapsed.as_secs_f64());
        let Some(ep) = self.endpoints.get(idx) else {
            return;
        };
        match result {
            Ok(head) => ep.update(|h| {
                h.failures = 0;
                h.backoff_until = None;
                if head.is_some() {
                    h.head = head;
                }
            }),
            Err(e) if e.is_node_answer() => {}
            // Throttled or unreachable: this endpoint backs off.
            Err(_) => ep.update(|h| {
                h.failures = h.failures.saturating_add(1);
                let backoff = Duration::from_millis(500)
                    .saturating_mul(1 << h.failures.min(6).saturating_sub(1))
                    .min(Duration::from_secs(30));
                h.backoff_until = Some(Instant::now() + backoff);
            }),
        }
        let health = ep.health();
        self.status.update(&self.chain, |s| {
            if let Some(st) = s.endpoints.get_mut(idx) {
                st.last_latency = Some(elapsed);
                st.last_checked = Some(SystemTime::now());
                st.head = health.head;
                st.consecutive_failures = health.failures;
                st.last_error = match result {
                    Ok(_) => None,
                    Err(e) => Some(e.to_string()),
                };
            }
        });
    }

    /// Asks every endpoint not backing off for its head; returns the best head an endpoint
    /// answering now can serve. That may be lower than [`Self::best_seen`] (the leading
    /// endpoint failed, or a load balancer answered from a slower node); callers never
    /// scan above it and never take the difference for a reorg. Endpoints that trail the
    /// best by more than `max_lag` are marked lagging in the chain status.
    pub async fn refresh_heads(&self) -> Result<u64, RpcError> {
        if !self.head_ttl.is_zero() {
            let cached = self.last_refresh.lock().ok().and_then(|g| *g);
            if let Some((at, head)) = cached {
                if at.elapsed() < self.head_ttl {
                    return Ok(head);
                }
            }
        }
        let now = Instant::now();
        let calls = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(idx, ep)| async move {
                if ep.health().backoff_until.is_some_and(|t| t > now) {
                    return None;
                }
                let started = Instant::now();
                let r: Result<U64, _> = ep.client.request_noparams("eth_blockNumber").await;
                match r {
                    Ok(h) => {
                        let head = h.to::<u64>();
                        self.observe(idx, "eth_blockNumber", started, Ok(Some(head)));
                        Some(head)
                    }
                    Err(e) => {
                        let e = RpcError::from_transport(&e);
                        self.observe(idx, "eth_blockNumber", started, Err(&e));
                        None
                    }
                }
            });
        let heads = join_all(calls).await;
        let served = heads
            .iter()
            .flatten()
            .copied()
            .max()
            .ok_or(RpcError::NoEndpoint)?;
        self.best_seen.fetch_max(served, Ordering::SeqCst);
        let best = self.best_seen();
        if let Ok(mut g) = self.last_refresh.lock() {
            *g = Some((Instant::now(), served));
        }
        let max_lag = self.max_lag;
        self.status.update(&self.chain, |s| {
            for ep in &mut s.endpoints {
                ep.lagging = ep.head.is_some_and(|h| h.saturating_add(max_lag) < best);
            }
        });
        let as_gauge = i64::try_from(best).unwrap_or(i64::MAX);
        self.metrics
            .head_block
            .with_label_values(&[self.chain.as_str()])
            .set(as_gauge);
        Ok(served)
    }

    /// Endpoints to try, best first: not backing off, not lagging, and known to have
    /// `min_block`.
    fn candidates(&self, min_block: u64) -> Vec<usize> {
        let now = Instant::now();
        let best = self
            .endpoints
            .iter()
            .filter_map(|e| e.health().head)
            .max()
            .unwrap_or(0);
        let mut c: Vec<(u32, usize)> = self
            .endpoints
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let h = e.health();
                let usable = h.backoff_until.is_none_or(|t| t <= now)
                    && h.head.is_some_and(|head| {
                        head >= min_block && head.saturating_add(self.max_lag) >= best
                    });
                usable.then_some((h.failures, i))
            })
            .collect();
        c.sort();
        c.into_iter().map(|(_, i)| i).collect()
    }

    /// One JSON-RPC request about block `min_block` (or later), with failover.
    pub async fn request<P, R>(
        &self,
        method: &'static str,
        params: P,
        min_block: u64,
    ) -> Result<R, RpcError>
    where
        P: RpcSend + Clone,
        R: RpcRecv,
    {
        let mut last = RpcError::NoEndpoint;
        for idx in self.candidates(min_block) {
            let started = Instant::now();
            let r: Result<R, TransportError> = self.endpoints[idx]
                .client
                .request(method, params.clone())
                .await;
            match r {
                Ok(v) => {
                    self.observe(idx, method, started, Ok(None));
                    return Ok(v);
                }
                Err(e) => {
                    let e = RpcError::from_transport(&e);
                    self.observe(idx, method, started, Err(&e));
                    if e.is_node_answer() {
                        return Err(e);
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// `address`'s balance at the latest block.
    pub async fn balance(&self, address: Address) -> Result<U256, RpcError> {
        self.request("eth_getBalance", (address, BlockNumberOrTag::Latest), 0)
            .await
    }

    /// How many transactions `address` has had mined (its next nonce as the chain sees it).
    pub async fn mined_nonce(&self, address: Address) -> Result<u64, RpcError> {
        let n: U64 = self
            .request(
                "eth_getTransactionCount",
                (address, BlockNumberOrTag::Latest),
                0,
            )
            .await?;
        Ok(n.to())
    }

    /// EIP-1559 fees for a transaction sent now: the fee cap allows the base fee to double
    /// before inclusion, the tip is the median of the last ten blocks' 20th percentiles.
    pub async fn eip1559_fees(&self) -> Result<Eip1559Estimation, RpcError> {
        let history: FeeHistory = self
            .request(
                "eth_feeHistory",
                (U64::from(10), BlockNumberOrTag::Latest, vec![20.0f64]),
                0,
            )
            .await?;
        let next_base = history
            .base_fee_per_gas
            .last()
            .copied()
            .ok_or(RpcError::Decode)?;
        let rewards = history.reward.unwrap_or_default();
        Ok(eip1559_default_estimator(next_base, &rewards))
    }

    /// The result of calling `to` with `data` at the latest block.
    pub async fn call(&self, to: Address, data: Vec<u8>) -> Result<Bytes, RpcError> {
        let call = serde_json::json!({"to": to, "data": Bytes::from(data)});
        self.request("eth_call", (call, BlockNumberOrTag::Latest), 0)
            .await
    }

    /// The code at `address` (empty for an account without code).
    pub async fn code(&self, address: Address) -> Result<Bytes, RpcError> {
        self.request("eth_getCode", (address, BlockNumberOrTag::Latest), 0)
            .await
    }

    /// The gas of the call `tx` (a JSON transaction object, which may carry an
    /// `authorizationList`) would use now.
    pub async fn estimate(&self, tx: serde_json::Value) -> Result<u64, RpcError> {
        let gas: U64 = self.request("eth_estimateGas", (tx,), 0).await?;
        Ok(gas.to())
    }

    /// `holder`'s balance of the ERC-20 `token` at the latest block.
    pub async fn token_balance(&self, token: Address, holder: Address) -> Result<U256, RpcError> {
        let mut data = vec![0x70, 0xa0, 0x82, 0x31];
        data.extend_from_slice(B256::left_padding_from(holder.as_slice()).as_slice());
        let call = serde_json::json!({"to": token, "data": Bytes::from(data)});
        let out: Bytes = self
            .request("eth_call", (call, BlockNumberOrTag::Latest), 0)
            .await?;
        if out.len() < 32 {
            return Err(RpcError::Decode);
        }
        Ok(U256::from_be_slice(&out[..32]))
    }

    /// The gas a call from `from` to `to` with `data` would use now.
    pub async fn estimate_gas(
        &self,
        from: Address,
        to: Address,
        data: &[u8],
    ) -> Result<u64, RpcError> {
        let call =
            serde_json::json!({"from": from, "to": to, "data": Bytes::copy_from_slice(data)});
        let gas: U64 = self.request("eth_estimateGas", (call,), 0).await?;
        Ok(gas.to())
    }

    /// Broadcasts a signed transaction.
    pub async fn send_raw(&self, raw: &[u8]) -> Result<B256, RpcError> {
        self.request("eth_sendRawTransaction", (Bytes::copy_from_slice(raw),), 0)
            .await
    }

    /// Whether any node still knows the transaction `hash` (pooled or mined).
    pub async fn knows(&self, hash: B256) -> Result<bool, RpcError> {
        let tx: Option<serde_json::Value> =
            self.request("eth_getTransactionByHash", (hash,), 0).await?;
        Ok(tx.is_some())
    }

    /// The receipt of `hash`, once mined.
    pub async fn receipt(&self, hash: B256) -> Result<Option<TransactionReceipt>, RpcError> {
        self.request("eth_getTransactionReceipt", (hash,), 0).await
    }

    /// The block with full transactions.
    pub async fn block(&self, n: u64) -> Result<RpcBlock, RpcError> {
        let b: Option<RpcBlock> = self
            .request("eth_getBlockByNumber", (U64::from(n), true), n)
            .await?;
        b.ok_or(RpcError::MissingBlock(n))
    }

    /// The block header.
    pub async fn header(&self, n: u64) -> Result<RpcHeader, RpcError> {
        let b: Option<RpcHeader> = self
            .request("eth_getBlockByNumber", (U64::from(n), false), n)
            .await?;
        b.ok_or(RpcError::MissingBlock(n))
    }

    /// Logs emitted by `contracts` (any contract when empty) with `topics` (position-wise
    /// alternatives) in `from..=to`.
    pub async fn logs(
        &self,
        from: u64,
        to: u64,
        contracts: Vec<Address>,
        topics: Vec<Option<Vec<B256>>>,
    ) -> Result<Vec<RpcLog>, RpcError> {
        let filter = LogFilter {
            from_block: U64::from(from),
            to_block: U64::from(to),
            address: contracts,
            topics,
        };
        self.request("eth_getLogs", [filter_value(&filter)?], to)
            .await
    }
}

fn filter_value(f: &LogFilter) -> Result<serde_json::Value, RpcError> {
    serde_json::to_value(f).map_err(|_| RpcError::Decode)
}
