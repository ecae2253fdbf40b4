//! The per-chain RPC client on alloy: several endpoints, tried in order of health, each
//! with its own timeout and statistics. Errors never carry URLs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use alloy::network::Ethereum;
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::transports::http::Http;
use alloy::transports::{TransportError, TransportErrorKind};

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
    /// Anything else (malformed response, broken connection).
    #[error("transport error")]
    Transport,
    /// No endpoint is configured.
    #[error("no RPC endpoint")]
    NoEndpoint,
}

impl RpcError {
    /// Label value for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect_error",
            Self::Http(_) => "http_error",
            Self::Rpc { .. } => "rpc_error",
            Self::Transport | Self::NoEndpoint => "connect_error",
        }
    }

    /// RPC failures are transient from the gateway's point of view.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::NoEndpoint)
    }

    fn from_transport(e: &TransportError) -> Self {
        match e {
            TransportError::ErrorResp(p) => Self::Rpc {
                code: p.code,
                message: p.message.chars().take(200).collect(),
            },
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
}

struct Endpoint {
    host: String,
    provider: RootProvider<Ethereum>,
}

/// A chain's RPC client (cheap to clone).
#[derive(Clone)]
pub struct ChainRpc {
    chain: String,
    endpoints: Arc<Vec<Endpoint>>,
    preferred: Arc<AtomicUsize>,
    status: ChainStatusRegistry,
    metrics: ChainMetrics,
}

impl ChainRpc {
    /// Builds the client; no request is made yet.
    pub fn new(
        chain: &ChainSettings,
        timeout: Duration,
        status: ChainStatusRegistry,
        metrics: ChainMetrics,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let endpoints: Vec<Endpoint> = chain
            .rpc_urls
            .iter()
            .filter_map(|u| {
                let url = url::Url::parse(u.expose()).ok()?;
                let transport = Http::with_client(http.clone(), url);
                let client = RpcClient::new(transport, false);
                Some(Endpoint {
                    host: u.host(),
                    provider: RootProvider::new(client),
                })
            })
            .collect();
        status.register(
            &chain.name,
            endpoints.iter().map(|e| e.host.clone()).collect(),
        );
        Self {
            chain: chain.name.clone(),
            endpoints: Arc::new(endpoints),
            preferred: Arc::new(AtomicUsize::new(0)),
            status,
            metrics,
        }
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
        self.metrics
            .rpc_requests
            .with_label_values(&[self.chain.as_str(), method, outcome])
            .inc();
        self.metrics
            .rpc_duration
            .with_label_values(&[self.chain.as_str(), method])
            .observe(elapsed.as_secs_f64());
        self.status.update(&self.chain, |s| {
            if let Some(ep) = s.endpoints.get_mut(idx) {
                ep.last_latency = Some(elapsed);
                ep.last_checked = Some(SystemTime::now());
                match result {
                    Ok(head) => {
                        if head.is_some() {
                            ep.head = head;
                        }
                        ep.last_error = None;
                        ep.consecutive_failures = 0;
                    }
                    Err(e) => {
                        ep.last_error = Some(e.to_string());
                        ep.consecutive_failures = ep.consecutive_failures.saturating_add(1);
                    }
                }
            }
        });
    }

    /// `eth_blockNumber`, trying each endpoint once, starting with the preferred one; the
    /// first that answers becomes preferred.
    pub async fn block_number(&self) -> Result<u64, RpcError> {
        let n = self.endpoints.len();
        if n == 0 {
            return Err(RpcError::NoEndpoint);
        }
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut last = RpcError::NoEndpoint;
        for k in 0..n {
            let idx = (first + k) % n;
            let started = Instant::now();
            match self.endpoints[idx].provider.get_block_number().await {
                Ok(head) => {
                    self.observe(idx, "eth_blockNumber", started, Ok(Some(head)));
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(head);
                }
                Err(e) => {
                    let e = RpcError::from_transport(&e);
                    self.observe(idx, "eth_blockNumber", started, Err(&e));
                    last = e;
                }
            }
        }
        Err(last)
    }
}
