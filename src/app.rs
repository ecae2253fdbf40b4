//! Builds the gateway from settings and runs it until shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use slog::Logger;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::config::Settings;
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::wallet::HdWallet;

/// A built, bound, not yet serving gateway.
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
}

impl Application {
    /// Connects to the database (failing fast when it is unreachable), applies migrations
    /// when `migrate` is set, derives the wallet and binds the listener.
    pub async fn build(settings: Settings, log: Logger, migrate: bool) -> anyhow::Result<Self> {
        let store = Store::new(&settings.database)?;
        store
            .ping()
            .await
            .context("cannot reach PostgreSQL at database.url")?;
        if migrate {
            store.migrate().await.context("migrations failed")?;
        }
        let wallet = HdWallet::from_mnemonic(
            settings.wallet.mnemonic.expose(),
            settings.wallet.passphrase.expose(),
        )
        .context("wallet.mnemonic")?;
        let names: Vec<String> = settings.chains.iter().map(|c| c.name.clone()).collect();
        let metrics = Metrics::new(&names);
        let chains: HashMap<_, _> = settings
            .chains
            .iter()
            .map(|c| (c.name.clone(), c.clone()))
            .collect();
        let addr = settings.server_bind()?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on server.bind {addr}"))?;
        let port = listener.local_addr()?.port();
        if chains.is_empty() {
            slog::warn!(log, "no [[chains]] configured: payments cannot be created");
        }
        let state = AppState {
            settings: Arc::new(settings),
            chains: Arc::new(chains),
            store,
            wallet: Arc::new(wallet),
            metrics,
            log,
        };
        Ok(Self {
            listener,
            port,
            state,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Shared state, for tests and embedding.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let log = self.state.log.clone();
        slog::info!(log, "serving"; "port" => self.port);
        warp::serve(api::routes(self.state))
            .incoming(self.listener)
            .graceful(shutdown)
            .run()
            .await;
        slog::info!(log, "HTTP server stopped");
    }
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
