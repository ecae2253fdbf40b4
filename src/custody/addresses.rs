//! Deposit addresses without private keys: each merchant account's extended public key
//! comes from the signer, is kept in memory, and is copied into the database so that
//! addresses can still be derived while the signer is away. The signer stays the
//! authority: whenever it answers, a database copy that differs is refused.

use std::sync::Arc;

use alloy::primitives::Address;
use slog::Logger;

use crate::store::{account_keys, Store};
use crate::wallet::{Signer, WalletError, WatchOnly};

/// Where the API and the workers get deposit addresses.
pub struct DepositAddresses {
    watch: WatchOnly,
    signer: Arc<dyn Signer>,
    store: Store,
    log: Logger,
    /// One account key is fetched at a time (a burst of first payments asks once).
    loading: tokio::sync::Mutex<()>,
}

impl DepositAddresses {
    /// Addresses from `signer`'s account keys, with their copies in `store`.
    pub fn new(signer: Arc<dyn Signer>, store: Store, log: Logger) -> Self {
        Self {
            watch: WatchOnly::new(),
            signer,
            store,
            log,
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// Makes sure `account`'s key is known. Call it before taking a database connection
    /// for the request: a first load needs one of its own, and a burst of requests each
    /// holding one while waiting for it would starve the pool.
    pub async fn ensure(&self, account: u32) -> Result<(), WalletError> {
        if self.watch.knows(account) {
            return Ok(());
        }
        let _one = self.loading.lock().await;
        if !self.watch.knows(account) {
            self.load(account).await?;
        }
        Ok(())
    }

    /// The deposit address `index` of merchant account `account`.
    pub async fn address(&self, account: u32, index: u32) -> Result<Address, WalletError> {
        if let Some(a) = self.watch.deposit_address(account, index) {
            return a;
        }
        self.ensure(account).await?;
        self.watch
            .deposit_address(account, index)
            .unwrap_or(Err(WalletError::Derivation))
    }

    async fn load(&self, account: u32) -> Result<(), WalletError> {
        let unavailable = |_| WalletError::Unavailable("the database is unreachable".into());
        let client = self.store.client().await.map_err(unavailable)?;
        let stored = account_keys::get(&client, account)
            .await
            .map_err(unavailable)?;
        match self.signer.account_xpub(account).await {
            Ok(xpub) => {
                match stored {
                    Some(s) if s != xpub => {
                        slog::crit!(self.log, "the stored account key differs from the signer's; refusing to derive addresses";
                            "account" => account);
                        return Err(WalletError::BadXpub(
                            "the stored account key differs from the signer's",
                        ));
                    }
                    Some(_) => {}
                    None => account_keys::insert(&client, account, &xpub)
                        .await
                        .map_err(unavailable)?,
                }
                self.watch.learn(account, &xpub)
            }
            Err(e) if e.is_retryable() => match stored {
                Some(s) => {
                    slog::warn!(self.log, "signer unavailable; deriving from the stored account key";
                        "account" => account);
                    self.watch.learn(account, &s)
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }
}
