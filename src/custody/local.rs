//! The in-process signer: the gateway holds the mnemonic itself (no `signer.socket`
//! configured, as in `ctrip dev`) and signs through the same policy a separate signer
//! applies. It also accepts merchants' own treasuries from the database, since this
//! process already holds everything a compromise could reach.

use std::sync::Arc;

use alloy::eips::eip7702::Authorization;
use alloy::primitives::{Address, Signature};
use slog::Logger;

use super::policy::{Policy, Refusal};
use crate::store::{treasuries, Store};
use crate::wallet::{HdWallet, KeyRef, Signer, UnsignedTx, WalletError};

/// Checks `tx` against `policy` (with `extra` treasuries) and signs it.
pub fn sign_transaction_checked(
    wallet: &HdWallet,
    policy: &Policy,
    key: KeyRef,
    tx: &UnsignedTx,
    recipient: Option<KeyRef>,
    extra: &[Address],
) -> Result<Signature, WalletError> {
    policy
        .check_transaction(key, tx, recipient, extra, &|k| wallet.key_address(k).ok())
        .map_err(|Refusal(why)| WalletError::Refused(why))?;
    wallet.sign_digest(key, &tx.signature_hash())
}

/// Checks `auth` against `policy` (with `extra` treasuries) and signs it.
pub fn sign_authorization_checked(
    wallet: &HdWallet,
    policy: &Policy,
    key: KeyRef,
    auth: &Authorization,
    extra: &[Address],
) -> Result<Signature, WalletError> {
    policy
        .check_authorization(key, auth, extra)
        .map_err(|Refusal(why)| WalletError::Refused(why))?;
    wallet.sign_digest(key, &auth.signature_hash())
}

/// The gateway's own signer.
pub struct LocalSigner {
    wallet: Arc<HdWallet>,
    policy: Policy,
    store: Option<Store>,
    log: Logger,
}

impl LocalSigner {
    /// Signs with `wallet` under `policy`; with a `store`, merchants' own treasuries count
    /// as treasuries too.
    pub fn new(wallet: Arc<HdWallet>, policy: Policy, store: Option<Store>, log: Logger) -> Self {
        Self {
            wallet,
            policy,
            store,
            log,
        }
    }

    async fn merchant_treasuries(&self, chain_id: u64) -> Result<Vec<Address>, WalletError> {
        let (Some(store), Some(chain)) = (&self.store, self.policy.chain(chain_id)) else {
            return Ok(Vec::new());
        };
        let unavailable = |_| WalletError::Unavailable("the database is unreachable".into());
        let client = store.client().await.map_err(unavailable)?;
        treasuries::on_chain(&client, &chain.name)
            .await
            .map_err(unavailable)
    }

    fn refused(&self, e: WalletError, what: &str) -> WalletError {
        if let WalletError::Refused(why) = &e {
            slog::error!(self.log, "signing refused by policy"; "what" => what, "reason" => why);
        }
        e
    }
}

#[async_trait::async_trait]
impl Signer for LocalSigner {
    async fn address(&self, key: KeyRef) -> Result<Address, WalletError> {
        self.wallet.key_address(key)
    }

    async fn account_xpub(&self, account: u32) -> Result<String, WalletError> {
        self.wallet.account_xpub(account)
    }

    async fn sign_transaction(
        &self,
        key: KeyRef,
        tx: &UnsignedTx,
        recipient: Option<KeyRef>,
    ) -> Result<Signature, WalletError> {
        let extra = self.merchant_treasuries(tx.chain_id()).await?;
        sign_transaction_checked(&self.wallet, &self.policy, key, tx, recipient, &extra)
            .map_err(|e| self.refused(e, "transaction"))
    }

    async fn sign_authorization(
        &self,
        key: KeyRef,
        auth: &Authorization,
    ) -> Result<Signature, WalletError> {
        let chain_id = u64::try_from(auth.chain_id).unwrap_or(0);
        let extra = self.merchant_treasuries(chain_id).await?;
        sign_authorization_checked(&self.wallet, &self.policy, key, auth, &extra)
            .map_err(|e| self.refused(e, "authorization"))
    }
}
