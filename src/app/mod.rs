//! Builds the gateway from settings and runs it until shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use slog::Logger;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::config::{Secret, Settings};
use crate::custody::addresses::DepositAddresses;
use crate::custody::local::LocalSigner;
use crate::custody::policy::Policy;
use crate::custody::remote::RemoteSigner;
use crate::store::Store;
use crate::wallet::{HdWallet, Signer};

pub mod metrics;
pub mod tree;

pub use metrics::Metrics;
use tree::TreeContext;

/// A built, bound, not yet serving gateway.
pub struct Application {
    listener: TcpListener,
    ops_listener: Option<TcpListener>,
    port: u16,
    state: AppState,
    metrics: Metrics,
    rpcs: tree::ChainClients,
    tracing: crate::telemetry::trace::Tracing,
    chain_store: Store,
    leaderships: Arc<HashMap<String, crate::chain::lease::Leadership>>,
    signer: Arc<dyn Signer>,
}

impl Application {
    /// Connects to the database (failing fast when it is unreachable), applies migrations
    /// when `migrate` is set, derives the wallet and binds the listener.
    pub async fn build(mut settings: Settings, log: Logger, migrate: bool) -> anyhow::Result<Self> {
        let store = Store::new(&settings.database)?;
        store
            .ping()
            .await
            .context("cannot reach PostgreSQL at database.url")?;
        if migrate {
            store.migrate().await.context("migrations failed")?;
        }
        // With a separate signer this process never holds a key; otherwise it signs itself,
        // under the same policy.
        let signer: Arc<dyn Signer> = match &settings.signer.socket {
            Some(path) => {
                slog::info!(log, "watch-only: every signature comes from the separate signer";
                    "socket" => %path.display());
                Arc::new(RemoteSigner::new(path.clone(), settings.signer.timeout))
            }
            None => {
                let wallet = HdWallet::from_mnemonic(
                    settings.wallet.mnemonic.expose(),
                    settings.wallet.passphrase.expose(),
                )
                .context("wallet.mnemonic")?;
                slog::warn!(log, "signing in-process: this process holds the mnemonic (set signer.socket to run a separate ctrip signer)");
                Arc::new(LocalSigner::new(
                    Arc::new(wallet),
                    Policy::from_settings(&settings),
                    Some(store.clone()),
                    log.clone(),
                ))
            }
        };
        // The wallet holds the keys from here on; the settings every component shares keep
        // no copy of the mnemonic (the dropped secrets are zeroed).
        settings.wallet.mnemonic = Secret::default();
        settings.wallet.passphrase = Secret::default();
        let metrics = Metrics::new(&settings).context("metrics registration")?;
        store.instrument(
            metrics.db.clone(),
            settings.database.slow_query,
            log.clone(),
        );
        let tracing =
            crate::telemetry::trace::Tracing::start(&settings.telemetry, metrics.trace.clone())?;
        if settings.telemetry.otlp_endpoint.is_some() {
            slog::info!(log, "exporting traces over OTLP/HTTP";
                "sample_ratio" => settings.telemetry.trace_sample_ratio);
        }
        let chains: HashMap<_, _> = settings
            .chains
            .iter()
            .map(|c| (c.name.clone(), c.clone()))
            .collect();
        let addr = settings.server.bind;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on server.bind {addr}"))?;
        let port = listener.local_addr()?.port();
        let ops_listener = match settings.server.ops_bind {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on server.ops_bind {addr}"))?,
            ),
            None => None,
        };
        if chains.is_empty() {
            slog::warn!(log, "no [[chains]] configured: payments cannot be created");
        }
        let known_actors = tree::actor_labels(&settings);
        // The chain workers get a pool of their own: their sessions carry a lease fence.
        let chain_store = Store::separate_pool(&settings.database, settings.chains.len() * 3 + 1)?;
        let replica = settings
            .supervision
            .replica_id
            .clone()
            .unwrap_or_else(default_replica_id);
        let leaderships: HashMap<_, _> = settings
            .chains
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    crate::chain::lease::Leadership::new(&c.name, &replica).counting_refusals(
                        metrics
                            .chain
                            .fenced_writes
                            .with_label_values(&[c.name.as_str()]),
                    ),
                )
            })
            .collect();
        if !settings.chains.is_empty() {
            slog::info!(log, "replica"; "replica_id" => &replica);
        }
        let api_metrics = metrics.for_api();
        let state = AppState {
            changes: Arc::new(api::checkout::changes::PaymentChanges::new(
                settings.server.max_event_streams,
                api_metrics.http.checkout_streams.clone(),
            )),
            chains: Arc::new(chains),
            signer: signer.clone(),
            wallet: Arc::new(DepositAddresses::pinned(
                signer.clone(),
                store.clone(),
                log.clone(),
                settings
                    .wallet
                    .account_xpubs
                    .iter()
                    .filter_map(|(a, x)| Some((a.parse().ok()?, x.clone())))
                    .collect(),
            )),
            store,
            keys: Arc::new(api::key_cache::KeyCache::new(
                settings.server.api_key_cache_ttl,
            )),
            indexes: Arc::new(api::indexes::IndexReservations::new(
                settings.payments.address_reservation,
            )),
            metrics: api_metrics,
            log,
            registry: actors::HealthRegistry::new(),
            chain_status: crate::chain::ChainStatusRegistry::default(),
            directory: crate::supervision::SupervisorDirectory::default(),
            faults: Arc::new(crate::worker::Faults::default()),
            known_actors: Arc::new(known_actors),
            settings: Arc::new(settings),
        };
        Ok(Self {
            listener,
            ops_listener,
            port,
            state,
            metrics,
            rpcs: Default::default(),
            tracing,
            chain_store,
            leaderships: Arc::new(leaderships),
            signer,
        })
    }

    /// What the actor tree is built from.
    pub fn tree_context(&self) -> TreeContext {
        let state = &self.state;
        TreeContext {
            settings: state.settings.clone(),
            store: state.store.clone(),
            registry: state.registry.clone(),
            chain_status: state.chain_status.clone(),
            chain_metrics: self.metrics.chain.clone(),
            payment_metrics: self.metrics.payments.clone(),
            webhook_metrics: self.metrics.webhooks.clone(),
            signer: self.signer.clone(),
            log: state.log.clone(),
            faults: state.faults.clone(),
            directory: state.directory.clone(),
            rpcs: self.rpcs.clone(),
            chain_store: self.chain_store.clone(),
            leaderships: self.leaderships.clone(),
        }
    }

    /// What signs for this gateway (the separate signer's client, or the in-process one).
    pub fn signer(&self) -> Arc<dyn Signer> {
        self.signer.clone()
    }

    /// The span exporter (tests flush it before reading what a collector received).
    pub fn tracing(&self) -> crate::telemetry::trace::Tracing {
        self.tracing.clone()
    }

    /// Every component's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The operator listener's port, when `server.ops_bind` is set.
    pub fn ops_port(&self) -> Option<u16> {
        self.ops_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// Shared state, for tests and embedding.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Starts the actor tree (unless `supervision.enabled` is false) and serves until
    /// `shutdown` resolves; then drains in-flight requests and stops the tree in reverse
    /// start order. A tree that fails to start is an error before anything is served: a
    /// gateway without scanners must not look healthy.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let ctx = self.tree_context();
        let tracing = self.tracing.clone();
        let state = self.state;
        let log = state.log.clone();
        let tree = if state.settings.supervision.enabled {
            match ctx.start().await {
                Ok(t) => Some(t),
                Err(e) => {
                    slog::error!(log, "actor tree failed to start"; "error" => %e);
                    return Err(e.context("the actor tree failed to start"));
                }
            }
        } else {
            None
        };
        // Every replica follows API key changes for as long as it serves.
        let key_changes = tokio::spawn(api::key_cache::follow_changes(
            state.store.clone(),
            state.keys.clone(),
            log.clone(),
        ));
        // ... and payment changes, for the payer pages it holds open.
        let payment_changes = tokio::spawn(api::checkout::changes::follow_changes(
            state.store.clone(),
            state.changes.clone(),
            log.clone(),
        ));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let drain = state.settings.supervision.shutdown_timeout;
        let ops = self.ops_listener.map(|l| {
            if let Ok(a) = l.local_addr() {
                slog::info!(log, "serving operator endpoints"; "port" => a.port());
            }
            tokio::spawn(api::server::serve(
                l,
                state.clone(),
                api::Surface::Ops,
                stopped(),
                drain,
            ))
        });
        let surface = if ops.is_some() {
            api::Surface::Public
        } else {
            api::Surface::All
        };
        slog::info!(log, "serving"; "port" => self.port);
        let changes = state.changes.clone();
        tokio::spawn(async move {
            shutdown.await;
            // Open event streams would hold the drain for its whole timeout; ended, their
            // pages reconnect to another replica (or poll).
            changes.close();
            let _ = stop_tx.send(true);
        });
        api::server::serve(self.listener, state.clone(), surface, stopped(), drain).await;
        if let Some(ops) = ops {
            let _ = ops.await;
        }
        slog::info!(log, "HTTP server stopped");
        key_changes.abort();
        payment_changes.abort();
        if let Some(tree) = tree {
            tree.shutdown(state.settings.supervision.shutdown_timeout * 4)
                .await;
        }
        // Export what is queued; the exporter blocks, so off the async threads.
        let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
        Ok(())
    }
}

/// A name unique to this process: host, process id and a random suffix (a restarted
/// process is a new holder and begins a new term).
fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
