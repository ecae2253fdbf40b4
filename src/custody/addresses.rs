//! Deposit addresses without private keys: each merchant account's extended public key
//! comes from the signer, is kept in memory, and is copied into the database so that
//! addresses can still be derived while the signer is away. The signer stays the
//! authority: whenever it answers, a database copy that differs is refused. Keys the
//! operator pinned in the configuration (`wallet.account_xpubs`) rank above both: a
//! signer or database copy that contradicts a pinned key stops that account.

use std::sync::Arc;

use alloy::primitives::Address;
use slog::Logger;

use crate::store::{account_keys, Store};
use crate::wallet::{Signer, WalletError, WatchOnly};

/// Where the API and the workers get deposit addresses.
pub struct DepositAddresses {
    watch: WatchOnly,
    pinned: std::collections::BTreeMap<u32, String>,
    signer: Arc<dyn Signer>,
    store: Store,
    log: Logger,
    /// One account key is fetched at a time (a burst of first payments asks once).
    loading: tokio::sync::Mutex<()>,
}

impl DepositAddresses {
    /// Addresses from `signer`'s account keys, with their copies in `store`.
    pub fn new(signer: Arc<dyn Signer>, store: Store, log: Logger) -> Self {
        Self::pinned(signer, store, log, Default::default())
    }

    /// [`DepositAddresses::new`] with the operator's pinned keys, by account.
    pub fn pinned(
        signer: Arc<dyn Signer>,
        store: Store,
        log: Logger,
        pinned: std::collections::BTreeMap<u32, String>,
    ) -> Self {
        Self {
            pinned,
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
        let pinned = self.pinned.get(&account);
        let disagrees =
            |other: &Option<String>| matches!((pinned, other), (Some(p), Some(o)) if p != o);
        if disagrees(&stored) {
            slog::crit!(self.log, "the stored account key differs from the pinned one; refusing to derive addresses";
                "account" => account);
            return Err(WalletError::BadXpub(
                "the stored account key differs from wallet.account_xpubs",
            ));
        }
        match self.signer.account_xpub(account).await {
            Ok(xpub) if disagrees(&Some(xpub.clone())) => {
                slog::crit!(self.log, "the signer's account key differs from the pinned one; refusing to derive addresses";
                    "account" => account);
                Err(WalletError::BadXpub(
                    "the signer's account key differs from wallet.account_xpubs",
                ))
            }
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
            Err(e) if e.is_retryable() => match pinned.cloned().or(stored) {
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
