//! The sweeper: moves confirmed funds from deposit addresses to the chain's treasury.
//!
//! A native payment is swept self-paid: its deposit key sends the balance minus the fee
//! to the treasury (the address is never delegated, so plain 21,000-gas sends to it keep
//! working). Every sweep is planned, signed and stored in one database transaction, with
//! the sender's nonce taken under a row lock, before anything is broadcast; tracking then
//! (re)sends the stored bytes until a receipt is deep enough, and a sweep whose block a
//! reorg removed goes back to being sent. Funds worth less than `fee_multiple` times the
//! fee wait (`skipped`, with the reason) unless they are older than `max_age`.

use std::sync::Arc;
use std::time::Duration;

use alloy::consensus::{TxEip1559, TxEip7702};
use alloy::eips::eip7702::{Authorization, SignedAuthorization};
use alloy::primitives::{address, Address, Bytes, TxKind, B256, U256};
use alloy::providers::utils::Eip1559Estimation;
use alloy::sol_types::SolCall;
use slog::Logger;
use uuid::Uuid;

use super::metrics::ChainMetrics;
use super::rpc::ChainRpc;
use super::status::{ChainStatusRegistry, SweepStatus};
use super::TickError;
use crate::config::{ChainSettings, Eip7702Mode, L1FeeMode};
use crate::store::sweeps::{self, Attempt, NewAttempt, NewSweep, Sweepable};
use crate::store::{Store, StoreError};
use crate::wallet::{KeyRef, Signer, UnsignedTx, WalletError};
use crate::worker::{crash_point, Work};

use crate::domain::sweep::sweepManyCall;
pub use crate::domain::sweep::{
    delegate_address, delegate_deployment, delegate_initcode, delegates_to, transfer_call,
    CREATE2_DEPLOYER,
};

/// Deposit addresses swept in one EIP-7702 transaction at most.
const DELEGATED_BATCH: usize = 20;

alloy::sol! {
    /// The OP-stack `GasPriceOracle`'s bound on a transaction's L1 data fee.
    function getL1FeeUpperBound(uint256 size) returns (uint256);
}

/// The OP-stack `GasPriceOracle` predeploy.
pub const GAS_PRICE_ORACLE: Address = address!("420000000000000000000000000000000000000F");

/// Bytes of a signed EIP-1559 transaction besides its calldata (an upper bound), for the
/// L1 data fee.
const TX_OVERHEAD_BYTES: usize = 120;

/// Gas of a plain value transfer to an account without code.
const NATIVE_TRANSFER_GAS: u64 = 21_000;

/// Payments planned per tick at most.
const PLAN_BATCH: i64 = 50;

/// What the chain says of one attempt.
enum Tracked {
    /// No receipt (it was sent again unless replaced).
    Waiting,
    /// In a block, not deep enough (or reverted).
    Mined,
    /// Deep enough: the sweep is confirmed.
    Confirmed,
}

/// One chain's sweeper.
pub struct Sweeper {
    chain: ChainSettings,
    rpc: ChainRpc,
    store: Store,
    signer: Arc<dyn Signer>,
    metrics: ChainMetrics,
    log: Logger,
    interval: Duration,
    status: Option<ChainStatusRegistry>,
    /// Whether the chain supports EIP-7702 (probed once, when `eip7702 = "auto"`).
    eip7702: std::sync::Mutex<Option<bool>>,
}

/// What planning decided for one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Send `value` with `fee_cap` reserved for gas.
    Sweep {
        /// What reaches the treasury.
        value: U256,
    },
    /// Wait; the reason is shown on the payment.
    Defer(String),
}

/// Whether funds of `balance` are worth sweeping at a worst-case fee of `fee`: at least
/// `multiple` times the fee, or older than the maximum age (`aged`) and worth more than
/// the fee. A sweep never costs more than it moves.
pub fn plan_native(balance: U256, fee: U256, multiple: u32, aged: bool) -> Plan {
    if balance <= fee {
        return Plan::Defer(format!(
            "dust: the fee ({fee} wei) would take all of the {balance} wei"
        ));
    }
    if balance < fee.saturating_mul(U256::from(multiple)) && !aged {
        return Plan::Defer(format!(
            "dust: the fee ({fee} wei) would exceed 1/{multiple} of the {balance} wei; waiting for lower fees or more funds"
        ));
    }
    Plan::Sweep {
        value: balance - fee,
    }
}

/// The fees of a replacement: both the fee cap and the tip at least 12.5 % above the
/// stuck transaction's (nodes replace a pooled transaction only when both rise by 10 %;
/// some accept less, so the rule is ours to keep), and no lower than what the network asks
/// now. `None` when that would exceed `cap`.
pub fn bumped_fees(
    old_max_fee: u128,
    old_tip: u128,
    now: Eip1559Estimation,
    cap: u128,
) -> Option<(u128, u128)> {
    let bump = |v: u128| v.saturating_add(v.div_ceil(8)).max(v.saturating_add(1));
    let max_fee = now.max_fee_per_gas.max(bump(old_max_fee));
    let tip = now.max_priority_fee_per_gas.max(bump(old_tip)).min(max_fee);
    (max_fee <= cap).then_some((max_fee, tip))
}

/// An attempt as tracking sees it, right after it was stored.
fn just_stored(a: NewAttempt) -> Attempt {
    Attempt {
        id: a.id,
        sweep_id: a.sweep_id,
        raw: a.raw,
        hash: format!("{:#x}", a.hash),
        state: "signed".into(),
        block: None,
        nonce: a.nonce,
        max_fee_per_gas: a.max_fee_per_gas,
        max_priority_fee_per_gas: a.max_priority_fee_per_gas,
        age: Duration::ZERO,
        purpose: a.purpose.into(),
        value: a.value,
        gas_limit: a.gas_limit,
    }
}

/// An EIP-1559 transaction a sweep sends.
struct Plain {
    key: KeyRef,
    sender: Address,
    sweep_id: Uuid,
    nonce: u64,
    gas: u64,
    max_fee: u128,
    tip: u128,
    to: Address,
    value: U256,
    input: Vec<u8>,
    purpose: &'static str,
    /// The key behind `to`, when it is one of our deposit addresses (a seed).
    recipient: Option<KeyRef>,
}

/// Signs a transaction through the signing seam: its EIP-2718 bytes and hash.
pub async fn sign_tx(
    signer: &dyn Signer,
    key: KeyRef,
    tx: UnsignedTx,
    recipient: Option<KeyRef>,
) -> Result<(Vec<u8>, B256), WalletError> {
    let sig = signer.sign_transaction(key, &tx, recipient).await?;
    Ok(tx.into_signed(sig))
}

impl Sweeper {
    /// Signs a delegated batch from the gas tank: a type-4 transaction carrying `auths`, or,
    /// when every address is delegated already, a plain EIP-1559 call to the delegate (a
    /// type-4 transaction must carry an authorization).
    #[allow(clippy::too_many_arguments)]
    async fn sign_delegated(
        &self,
        sweep_id: Uuid,
        nonce: u64,
        gas: u64,
        max_fee: u128,
        tip: u128,
        delegate: Address,
        input: Vec<u8>,
        auths: Vec<SignedAuthorization>,
    ) -> Result<NewAttempt, WalletError> {
        let tank = self.signer.address(KeyRef::GasTank).await?;
        if auths.is_empty() {
            return self
                .sign_plain(Plain {
                    key: KeyRef::GasTank,
                    sender: tank,
                    sweep_id,
                    nonce,
                    gas,
                    max_fee,
                    tip,
                    to: delegate,
                    value: U256::ZERO,
                    input,
                    purpose: "sweep",
                    recipient: None,
                })
                .await;
        }
        let unsigned = TxEip7702 {
            chain_id: self.chain.chain_id,
            nonce,
            gas_limit: gas,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            to: delegate,
            value: U256::ZERO,
            access_list: Default::default(),
            authorization_list: auths,
            input: Bytes::from(input),
        };
        let (raw, hash) = sign_tx(
            self.signer.as_ref(),
            KeyRef::GasTank,
            UnsignedTx::Eip7702(unsigned),
            None,
        )
        .await?;
        Ok(NewAttempt {
            id: Uuid::now_v7(),
            sweep_id,
            sender: tank,
            nonce,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            gas_limit: gas,
            value: U256::ZERO,
            raw,
            hash,
            purpose: "sweep",
        })
    }

    /// The authorizations a batch over `deposits` needs: one for each address not yet
    /// delegated to `delegate`, at its current nonce.
    async fn authorizations(
        &self,
        deposits: &[(Address, KeyRef)],
        delegate: Address,
    ) -> Result<Vec<SignedAuthorization>, TickError> {
        let mut auths = Vec::new();
        for (address, key) in deposits {
            if delegates_to(&self.rpc.code(*address).await?, delegate) {
                continue;
            }
            let auth = Authorization {
                chain_id: U256::from(self.chain.chain_id),
                address: delegate,
                nonce: self.rpc.mined_nonce(*address).await?,
            };
            auths.push(self.sign_authorization(*key, auth).await?);
        }
        Ok(auths)
    }

    /// Signs `t` and gives the attempt to store.
    async fn sign_plain(&self, t: Plain) -> Result<NewAttempt, WalletError> {
        let unsigned = TxEip1559 {
            chain_id: self.chain.chain_id,
            nonce: t.nonce,
            gas_limit: t.gas,
            max_fee_per_gas: t.max_fee,
            max_priority_fee_per_gas: t.tip,
            to: TxKind::Call(t.to),
            value: t.value,
            access_list: Default::default(),
            input: Bytes::from(t.input),
        };
        let (raw, hash) = sign_tx(
            self.signer.as_ref(),
            t.key,
            UnsignedTx::Eip1559(unsigned),
            t.recipient,
        )
        .await?;
        Ok(NewAttempt {
            id: Uuid::now_v7(),
            sweep_id: t.sweep_id,
            sender: t.sender,
            nonce: t.nonce,
            max_fee_per_gas: t.max_fee,
            max_priority_fee_per_gas: t.tip,
            gas_limit: t.gas,
            value: t.value,
            raw,
            hash,
            purpose: t.purpose,
        })
    }

    /// Builds a sweeper.
    pub fn new(
        chain: ChainSettings,
        rpc: ChainRpc,
        store: Store,
        signer: Arc<dyn Signer>,
        metrics: ChainMetrics,
        log: Logger,
        interval: Duration,
    ) -> Self {
        Self {
            chain,
            rpc,
            store,
            signer,
            metrics,
            log,
            interval,
            status: None,
            eip7702: std::sync::Mutex::new(None),
        }
    }

    /// Plans, signs and stores new sweeps; nothing is broadcast here (tracking sends the
    /// stored bytes). Returns how many sweeps were stored.
    pub async fn plan_once(&self) -> Result<usize, TickError> {
        let Some(treasury) = self.chain.treasury else {
            return Ok(0);
        };
        let client = self.store.client().await?;
        let due = sweeps::sweepable(&client, &self.chain.name, PLAN_BATCH).await?;
        drop(client);
        if due.is_empty() {
            return Ok(0);
        }
        // Requests go to endpoints whose head is known.
        self.rpc.refresh_heads().await?;
        let fees = self.rpc.eip1559_fees().await?;
        let cap = u128::from(self.chain.sweep.max_fee_per_gas_wei);
        let max_fee = fees.max_fee_per_gas.min(cap);
        let tip = fees.max_priority_fee_per_gas.min(max_fee);
        let fee = U256::from(NATIVE_TRANSFER_GAS) * U256::from(max_fee)
            + self.l1_fee(TX_OVERHEAD_BYTES).await?;
        let mut stored = 0;
        let (tokens, due): (Vec<Sweepable>, Vec<Sweepable>) =
            due.into_iter().partition(|p| p.asset.is_some());
        let mut due = due;
        if !tokens.is_empty() {
            if self.eip7702().await? {
                // One delegate per treasury: a batch goes to one treasury.
                let mut groups: Vec<(Address, Vec<Sweepable>)> = Vec::new();
                for p in tokens {
                    let to = p.treasury.unwrap_or(treasury);
                    match groups.iter_mut().find(|(t, _)| *t == to) {
                        Some((_, g)) => g.push(p),
                        None => groups.push((to, vec![p])),
                    }
                }
                for (to, group) in groups {
                    let refusable: Vec<Sweepable> = group.clone();
                    let planned = self.plan_delegated(group, to, max_fee, tip).await;
                    stored += self.unless_refused(&refusable, planned, 0).await?;
                }
            } else {
                due.extend(tokens);
            }
        }
        for p in due {
            let treasury = p.treasury.unwrap_or(treasury);
            if let Some(token) = p.asset {
                let planned = self.plan_token(&p, token, treasury, max_fee, tip).await;
                if self
                    .unless_refused(std::slice::from_ref(&p), planned, false)
                    .await?
                {
                    stored += 1;
                }
                continue;
            }
            let balance = self.rpc.balance(p.address).await?;
            let aged = p.confirmed_for >= self.chain.sweep.max_age;
            match plan_native(balance, fee, self.chain.sweep.fee_multiple, aged) {
                Plan::Defer(reason) => self.defer(&p, &reason).await?,
                Plan::Sweep { value } => {
                    let planned = self.store_sweep(&p, treasury, value, max_fee, tip).await;
                    if self
                        .unless_refused(std::slice::from_ref(&p), planned, false)
                        .await?
                    {
                        stored += 1;
                    }
                }
            }
        }
        Ok(stored)
    }

    /// A sweep the signer's policy refused waits with the reason on its payments (an
    /// operator fixes the configuration, e.g. lists a merchant's treasury with the signer),
    /// and the others on the chain go on; `none` stands for "nothing stored". Any other
    /// failure fails the tick.
    async fn unless_refused<T>(
        &self,
        payments: &[Sweepable],
        planned: Result<T, TickError>,
        none: T,
    ) -> Result<T, TickError> {
        match planned {
            Err(TickError::Signing(WalletError::Refused(why))) => {
                slog::error!(self.log, "the signer refused a sweep; it waits"; "reason" => &why,
                    "payments" => payments.len());
                let reason = format!("the signer refused this sweep: {why}");
                for p in payments {
                    self.defer(p, &reason).await?;
                }
                Ok(none)
            }
            other => other,
        }
    }

    /// Whether token sweeps go through the EIP-7702 delegate on this chain.
    async fn eip7702(&self) -> Result<bool, TickError> {
        match self.chain.sweep.eip7702 {
            Eip7702Mode::On => return Ok(true),
            Eip7702Mode::Off => return Ok(false),
            Eip7702Mode::Auto => {}
        }
        if let Some(known) = *self.eip7702.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(known);
        }
        // A node without EIP-7702 refuses a call carrying an authorization list. The probe's
        // authorization is signed by a throwaway key: none of ours signs anything that is
        // not a sweep.
        let tank = self.signer.address(KeyRef::GasTank).await?;
        let throwaway = alloy::signers::local::PrivateKeySigner::random();
        let auth = Authorization {
            chain_id: U256::from(self.chain.chain_id),
            address: tank,
            nonce: 0,
        };
        let sig = alloy::signers::SignerSync::sign_hash_sync(&throwaway, &auth.signature_hash())
            .map_err(|_| WalletError::Signing)?;
        let signed = auth.into_signed(sig);
        let probe = serde_json::json!({"from": tank, "to": tank, "authorizationList": [signed]});
        let supported = match self.rpc.estimate(probe).await {
            Ok(_) => true,
            Err(e) if e.is_node_answer() => false,
            Err(e) => return Err(e.into()),
        };
        slog::info!(self.log, "EIP-7702 probed"; "supported" => supported);
        *self.eip7702.lock().unwrap_or_else(|p| p.into_inner()) = Some(supported);
        Ok(supported)
    }

    async fn sign_authorization(
        &self,
        key: KeyRef,
        auth: Authorization,
    ) -> Result<SignedAuthorization, WalletError> {
        let sig = self.signer.sign_authorization(key, &auth).await?;
        Ok(auth.into_signed(sig))
    }

    /// Sweeps token deposits through the EIP-7702 delegate: one type-4 transaction from the
    /// gas tank calls `sweepMany` on up to [`DELEGATED_BATCH`] addresses, carrying a signed
    /// authorization only for those not delegated yet. Deposit addresses never hold gas.
    /// The delegate is deployed first (by CREATE2, from the tank) when it is missing.
    async fn plan_delegated(
        &self,
        due: Vec<Sweepable>,
        treasury: Address,
        max_fee: u128,
        tip: u128,
    ) -> Result<usize, TickError> {
        let delegate = delegate_address(treasury);
        if self.rpc.code(delegate).await?.is_empty() {
            let stored = self.deploy_delegate(treasury, max_fee, tip).await?;
            if stored.is_none() {
                for p in &due {
                    self.defer(
                        p,
                        "waiting for the gas tank: it cannot pay this sweep's gas",
                    )
                    .await?;
                }
            }
            return Ok(stored.unwrap_or(0));
        }
        let mut batch: Vec<(Sweepable, Address, U256)> = Vec::new();
        let mut auths = Vec::new();
        for p in due.into_iter() {
            if batch.len() >= DELEGATED_BATCH {
                break;
            }
            let Some(token) = p.asset else { continue };
            let amount = self.rpc.token_balance(token, p.address).await?;
            if amount.is_zero() {
                self.defer(&p, "nothing to sweep: the address holds none of the token")
                    .await?;
                continue;
            }
            if self.token_dust(&p, token, amount).await? {
                continue;
            }
            if !delegates_to(&self.rpc.code(p.address).await?, delegate) {
                let key = KeyRef::Deposit {
                    account: p.account_index,
                    index: p.derivation_index,
                };
                if self.signer.address(key).await? != p.address {
                    continue;
                }
                let auth = Authorization {
                    chain_id: U256::from(self.chain.chain_id),
                    address: delegate,
                    nonce: self.rpc.mined_nonce(p.address).await?,
                };
                auths.push(self.sign_authorization(key, auth).await?);
            }
            batch.push((p, token, amount));
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let mut tokens: Vec<Address> = batch.iter().map(|(_, t, _)| *t).collect();
        tokens.sort();
        tokens.dedup();
        let deposits: Vec<Address> = batch.iter().map(|(p, _, _)| p.address).collect();
        let input = sweepManyCall { deposits, tokens }.abi_encode();
        let tank = self.signer.address(KeyRef::GasTank).await?;
        let mut call = serde_json::json!({
            "from": tank, "to": delegate, "data": Bytes::from(input.clone()),
        });
        if !auths.is_empty() {
            call["authorizationList"] = serde_json::json!(auths);
        }
        let gas = self.rpc.estimate(call).await?;
        let gas = gas.saturating_add(gas / 10);
        let size = TX_OVERHEAD_BYTES + input.len() + 110 * auths.len();
        let need = U256::from(gas) * U256::from(max_fee) + self.l1_fee(size).await?;
        if self.rpc.balance(tank).await? < need {
            for (p, _, _) in &batch {
                self.defer(
                    p,
                    "waiting for the gas tank: it cannot pay this sweep's gas",
                )
                .await?;
            }
            return Ok(0);
        }
        let tank_nonce = self.rpc.mined_nonce(tank).await?;
        let mut client = self.store.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let id = Uuid::now_v7();
        let items: Vec<(Address, Option<Address>, U256)> = batch
            .iter()
            .map(|(p, t, a)| (p.address, Some(*t), *a))
            .collect();
        let payments: Vec<Uuid> = batch.iter().map(|(p, _, _)| p.payment_id).collect();
        if !sweeps::insert_batch(
            &tx,
            id,
            &self.chain.name,
            "delegated",
            &treasury,
            &items,
            &payments,
        )
        .await?
        {
            return Ok(0);
        }
        let nonce = sweeps::take_nonce(&tx, &self.chain.name, &tank, tank_nonce).await?;
        let n_auths = auths.len();
        let attempt = self
            .sign_delegated(id, nonce, gas, max_fee, tip, delegate, input, auths)
            .await?;
        let hash = attempt.hash;
        sweeps::insert_attempt(&tx, &self.chain.name, &attempt).await?;
        tx.commit().await.map_err(StoreError::from)?;
        crash_point("sweep_committed");
        slog::info!(self.log, "delegated token sweep signed and stored";
            "sweep_id" => %id, "tx_hash" => %hash, "addresses" => items.len(),
            "authorizations" => n_auths);
        Ok(1)
    }

    /// Deploys the delegate for `treasury` from the gas tank (CREATE2, so the address is
    /// known in advance), recorded like a sweep so its nonce is never lost.
    async fn deploy_delegate(
        &self,
        treasury: Address,
        max_fee: u128,
        tip: u128,
    ) -> Result<Option<usize>, TickError> {
        let client = self.store.client().await?;
        if sweeps::deploy_in_flight(&client, &self.chain.name).await? {
            return Ok(Some(0));
        }
        drop(client);
        let tank = self.signer.address(KeyRef::GasTank).await?;
        let input = delegate_deployment(treasury);
        let gas = self
            .rpc
            .estimate(serde_json::json!({
                "from": tank, "to": CREATE2_DEPLOYER, "data": Bytes::from(input.clone()),
            }))
            .await?;
        let gas = gas.saturating_add(gas / 10);
        if self.rpc.balance(tank).await? < U256::from(gas) * U256::from(max_fee) {
            slog::warn!(
                self.log,
                "the gas tank cannot pay for deploying the sweep delegate"
            );
            return Ok(None);
        }
        let tank_nonce = self.rpc.mined_nonce(tank).await?;
        let mut client = self.store.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let id = Uuid::now_v7();
        sweeps::insert_batch(&tx, id, &self.chain.name, "delegated", &treasury, &[], &[]).await?;
        let nonce = sweeps::take_nonce(&tx, &self.chain.name, &tank, tank_nonce).await?;
        let attempt = self
            .sign_plain(Plain {
                key: KeyRef::GasTank,
                sender: tank,
                sweep_id: id,
                nonce,
                gas,
                max_fee,
                tip,
                to: CREATE2_DEPLOYER,
                value: U256::ZERO,
                input,
                purpose: "deploy",
                recipient: None,
            })
            .await?;
        let hash = attempt.hash;
        sweeps::insert_attempt(&tx, &self.chain.name, &attempt).await?;
        tx.commit().await.map_err(StoreError::from)?;
        slog::info!(self.log, "sweep delegate deployment signed and stored";
            "delegate" => %delegate_address(treasury), "tx_hash" => %hash);
        Ok(Some(1))
    }

    /// The L1 data fee a transaction of `size` bytes may pay on top of gas (0 off OP-stack
    /// chains).
    async fn l1_fee(&self, size: usize) -> Result<U256, TickError> {
        if self.chain.sweep.l1_fee == L1FeeMode::None {
            return Ok(U256::ZERO);
        }
        let data = getL1FeeUpperBoundCall {
            size: U256::from(size),
        }
        .abi_encode();
        let out = self.rpc.call(GAS_PRICE_ORACLE, data).await?;
        if out.len() < 32 {
            return Err(super::RpcError::Decode.into());
        }
        Ok(U256::from_be_slice(&out[..32]))
    }

    /// Whether `amount` of `token` is below its configured minimum (and not old enough to
    /// go anyway); then `p` waits, with the reason.
    async fn token_dust(
        &self,
        p: &Sweepable,
        token: Address,
        amount: U256,
    ) -> Result<bool, TickError> {
        let min = self
            .chain
            .tokens
            .iter()
            .find(|t| t.address == token)
            .and_then(|t| t.min_sweep_raw);
        match min {
            Some(min) if amount < min && p.confirmed_for < self.chain.sweep.max_age => {
                self.defer(
                    p,
                    &format!("dust: {amount} raw units, below the token's min_sweep_raw {min}"),
                )
                .await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Marks `p` as waiting, with the reason (counted and logged once per new reason).
    async fn defer(&self, p: &Sweepable, reason: &str) -> Result<(), TickError> {
        if p.reason.as_deref() == Some(reason) {
            return Ok(());
        }
        slog::info!(self.log, "sweep deferred"; "payment_id" => %p.payment_id, "reason" => reason);
        let client = self.store.client().await?;
        sweeps::defer(&client, p.payment_id, reason).await?;
        self.metrics
            .sweeps
            .with_label_values(&[self.chain.name.as_str(), "skipped"])
            .inc();
        Ok(())
    }

    /// The gas a token transfer of `amount` from `from` needs, with a tenth more as margin.
    async fn transfer_gas(
        &self,
        from: Address,
        token: Address,
        data: &[u8],
    ) -> Result<u64, TickError> {
        let gas = self.rpc.estimate_gas(from, token, data).await?;
        Ok(gas.saturating_add(gas / 10))
    }

    /// Plans a token sweep by seeding: the deposit key pays the transfer's gas, which the
    /// gas tank first sends it (exactly what the transfer needs at the fee cap, less what
    /// the address already holds). Only the seed is signed now; the transfer is signed
    /// once the seed is confirmed.
    async fn plan_token(
        &self,
        p: &Sweepable,
        token: Address,
        treasury: Address,
        max_fee: u128,
        tip: u128,
    ) -> Result<bool, TickError> {
        let amount = self.rpc.token_balance(token, p.address).await?;
        if amount.is_zero() {
            self.defer(p, "nothing to sweep: the address holds none of the token")
                .await?;
            return Ok(false);
        }
        if self.token_dust(p, token, amount).await? {
            return Ok(false);
        }
        let gas = self
            .transfer_gas(p.address, token, &transfer_call(treasury, amount))
            .await?;
        let transfer_size = TX_OVERHEAD_BYTES + 68;
        let need = U256::from(gas) * U256::from(max_fee) + self.l1_fee(transfer_size).await?;
        let held = self.rpc.balance(p.address).await?;
        let seed = need.saturating_sub(held);
        let tank = self.signer.address(KeyRef::GasTank).await?;
        let seed_fee = U256::from(NATIVE_TRANSFER_GAS) * U256::from(max_fee)
            + self.l1_fee(TX_OVERHEAD_BYTES).await?;
        if !seed.is_zero() {
            let tank_balance = self.rpc.balance(tank).await?;
            if tank_balance < seed + seed_fee {
                self.defer(
                    p,
                    "waiting for the gas tank: it cannot pay this sweep's gas",
                )
                .await?;
                return Ok(false);
            }
        }
        let tank_nonce = self.rpc.mined_nonce(tank).await?;
        let mut client = self.store.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let sweep = NewSweep {
            id: Uuid::now_v7(),
            chain: self.chain.name.clone(),
            strategy: "seeded",
            treasury,
            address: p.address,
            asset: Some(token),
            amount,
            payments: vec![p.payment_id],
        };
        if !sweeps::insert_sweep(&tx, &sweep).await? {
            return Ok(false);
        }
        if seed.is_zero() {
            // The address already holds the gas: the transfer is signed at once.
            tx.commit().await.map_err(StoreError::from)?;
            self.sign_transfer(sweep.id).await?;
            return Ok(true);
        }
        let nonce = sweeps::take_nonce(&tx, &self.chain.name, &tank, tank_nonce).await?;
        let attempt = self
            .sign_plain(Plain {
                key: KeyRef::GasTank,
                sender: tank,
                sweep_id: sweep.id,
                nonce,
                gas: NATIVE_TRANSFER_GAS,
                max_fee,
                tip,
                to: p.address,
                value: seed,
                input: Vec::new(),
                purpose: "seed",
                recipient: Some(KeyRef::Deposit {
                    account: p.account_index,
                    index: p.derivation_index,
                }),
            })
            .await?;
        let hash = attempt.hash;
        sweeps::insert_attempt(&tx, &self.chain.name, &attempt).await?;
        tx.commit().await.map_err(StoreError::from)?;
        slog::info!(self.log, "sweep seed signed and stored";
            "payment_id" => %p.payment_id, "sweep_id" => %sweep.id, "tx_hash" => %hash,
            "seed_wei" => %seed);
        Ok(true)
    }

    /// Signs, stores and sends a seeded sweep's token transfer from the deposit key, once
    /// its seed is confirmed (or the address held the gas already).
    async fn sign_transfer(&self, sweep_id: Uuid) -> Result<(), TickError> {
        match self.sign_transfer_now(sweep_id).await {
            // The seed is on the address already; the transfer waits (and is asked for
            // again each tick) until the signer's configuration allows it, without holding
            // up the chain's other sweeps.
            Err(TickError::Signing(WalletError::Refused(why))) => {
                slog::error!(self.log, "the signer refused a token transfer; it waits";
                    "sweep_id" => %sweep_id, "reason" => &why);
                Ok(())
            }
            other => other,
        }
    }

    async fn sign_transfer_now(&self, sweep_id: Uuid) -> Result<(), TickError> {
        let client = self.store.client().await?;
        let Some(ctx) = sweeps::context(&client, sweep_id).await? else {
            return Ok(());
        };
        if sweeps::has_transfer(&client, sweep_id).await? {
            return Ok(());
        }
        drop(client);
        let Some(token) = ctx.asset else {
            return Ok(());
        };
        let amount = self.rpc.token_balance(token, ctx.address).await?;
        let data = transfer_call(ctx.treasury, amount);
        let gas = self.transfer_gas(ctx.address, token, &data).await?;
        let now = self.rpc.eip1559_fees().await?;
        // Fees may have risen since the seed: offer what the address can pay.
        let held = self.rpc.balance(ctx.address).await?;
        let l1 = self.l1_fee(TX_OVERHEAD_BYTES + data.len()).await?;
        let affordable =
            u128::try_from(held.saturating_sub(l1) / U256::from(gas.max(1))).unwrap_or(u128::MAX);
        let max_fee = now
            .max_fee_per_gas
            .min(u128::from(self.chain.sweep.max_fee_per_gas_wei))
            .min(affordable);
        let tip = now.max_priority_fee_per_gas.min(max_fee);
        let key = KeyRef::Deposit {
            account: ctx.account_index,
            index: ctx.derivation_index,
        };
        let on_chain = self.rpc.mined_nonce(ctx.address).await?;
        let mut client = self.store.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let nonce = sweeps::take_nonce(&tx, &self.chain.name, &ctx.address, on_chain).await?;
        let attempt = self
            .sign_plain(Plain {
                key,
                sender: ctx.address,
                sweep_id,
                nonce,
                gas,
                max_fee,
                tip,
                to: token,
                value: U256::ZERO,
                input: data,
                purpose: "sweep",
                recipient: None,
            })
            .await?;
        sweeps::insert_attempt(&tx, &self.chain.name, &attempt).await?;
        tx.commit().await.map_err(StoreError::from)?;
        slog::info!(self.log, "token transfer signed and stored";
            "sweep_id" => %sweep_id, "tx_hash" => %attempt.hash, "amount" => %amount);
        self.send(&just_stored(attempt)).await
    }

    /// Stores one self-paid sweep of `p`'s address in one transaction: the sweep, its item
    /// and payment, the nonce taken under lock, and the signed attempt with its bytes.
    async fn store_sweep(
        &self,
        p: &Sweepable,
        treasury: Address,
        value: U256,
        max_fee: u128,
        tip: u128,
    ) -> Result<bool, TickError> {
        let key = KeyRef::Deposit {
            account: p.account_index,
            index: p.derivation_index,
        };
        if self.signer.address(key).await? != p.address {
            // The key would not move these funds: never sign for an address it is not.
            slog::error!(self.log, "deposit key does not match the payment's address; not swept";
                "payment_id" => %p.payment_id);
            return Ok(false);
        }
        let on_chain = self.rpc.mined_nonce(p.address).await?;
        let mut client = self.store.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let sweep = NewSweep {
            id: Uuid::now_v7(),
            chain: self.chain.name.clone(),
            strategy: "self_paid",
            treasury,
            address: p.address,
            asset: None,
            amount: value,
            payments: vec![p.payment_id],
        };
        if !sweeps::insert_sweep(&tx, &sweep).await? {
            return Ok(false);
        }
        let nonce = sweeps::take_nonce(&tx, &self.chain.name, &p.address, on_chain).await?;
        let attempt = self
            .sign_plain(Plain {
                key,
                sender: p.address,
                sweep_id: sweep.id,
                nonce,
                gas: NATIVE_TRANSFER_GAS,
                max_fee,
                tip,
                to: treasury,
                value,
                input: Vec::new(),
                purpose: "sweep",
                recipient: None,
            })
            .await?;
        let hash = attempt.hash;
        sweeps::insert_attempt(&tx, &self.chain.name, &attempt).await?;
        tx.commit().await.map_err(StoreError::from)?;
        crash_point("sweep_committed");
        slog::info!(self.log, "sweep signed and stored";
            "payment_id" => %p.payment_id, "sweep_id" => %sweep.id, "tx_hash" => %hash,
            "nonce" => nonce, "value_wei" => %value);
        Ok(true)
    }

    /// Sends every stored attempt that has no receipt yet (again, if need be: the bytes
    /// are the same, so a node that has it already says so) and confirms sweeps whose
    /// receipt is `confirmations` deep on the canonical chain. Returns how many sweeps it
    /// confirmed.
    pub async fn track_once(&self) -> Result<usize, TickError> {
        let client = self.store.client().await?;
        let attempts = sweeps::in_flight(&client, &self.chain.name).await?;
        drop(client);
        if attempts.is_empty() {
            self.report_in_flight().await?;
            return Ok(0);
        }
        let head = self.rpc.refresh_heads().await?;
        let mut confirmed = 0;
        for sweep in attempts.chunk_by(|a, b| a.sweep_id == b.sweep_id) {
            if self.track_sweep(sweep, head).await? {
                confirmed += 1;
            }
        }
        self.report_in_flight().await?;
        Ok(confirmed)
    }

    /// Follows one sweep's attempts; replaces the newest with higher fees when none has a
    /// receipt `bump_after` after it was signed.
    async fn track_sweep(&self, attempts: &[Attempt], head: u64) -> Result<bool, TickError> {
        let mut mined = false;
        for a in attempts {
            match self.track(a, head).await? {
                Tracked::Confirmed => return Ok(true),
                Tracked::Mined => mined = true,
                Tracked::Waiting => {}
            }
        }
        let newest = attempts.iter().rev().find(|a| a.state != "replaced");
        if let Some(newest) = newest.filter(|a| !mined && a.age >= self.bump_after()) {
            self.replace(newest).await?;
        }
        Ok(false)
    }

    fn bump_after(&self) -> Duration {
        self.chain
            .sweep
            .bump_after
            .unwrap_or(self.chain.block_time * 3)
    }

    /// Signs, stores and sends a replacement of a stuck self-paid attempt: same nonce,
    /// fees bumped, the value lowered by the larger fee reserve.
    async fn replace(&self, stuck: &Attempt) -> Result<(), TickError> {
        let client = self.store.client().await?;
        let Some(sp) = sweeps::context(&client, stuck.sweep_id).await? else {
            return Ok(());
        };
        drop(client);
        let cap = u128::from(self.chain.sweep.max_fee_per_gas_wei);
        let now = self.rpc.eip1559_fees().await?;
        let Some((max_fee, tip)) = bumped_fees(
            stuck.max_fee_per_gas,
            stuck.max_priority_fee_per_gas,
            now,
            cap,
        ) else {
            slog::warn!(self.log, "stuck sweep cannot be replaced: its fees are at the cap";
                "sweep_id" => %stuck.sweep_id, "tx_hash" => &stuck.hash);
            return Ok(());
        };
        let deposit = KeyRef::Deposit {
            account: sp.account_index,
            index: sp.derivation_index,
        };
        let base = Plain {
            key: deposit,
            sender: sp.address,
            sweep_id: stuck.sweep_id,
            nonce: stuck.nonce,
            gas: stuck.gas_limit,
            max_fee,
            tip,
            to: sp.treasury,
            value: U256::ZERO,
            input: Vec::new(),
            purpose: "sweep",
            recipient: None,
        };
        let plain = match (sp.strategy.as_str(), stuck.purpose.as_str(), sp.asset) {
            // Native, self-paid: the larger fee reserve lowers the value sent.
            ("self_paid", "sweep", _) => {
                let balance = self.rpc.balance(sp.address).await?;
                let reserve = U256::from(NATIVE_TRANSFER_GAS) * U256::from(max_fee)
                    + self.l1_fee(TX_OVERHEAD_BYTES).await?;
                if balance <= reserve {
                    return Ok(());
                }
                Plain {
                    value: balance - reserve,
                    ..base
                }
            }
            // A seed from the tank: the same value to the deposit address.
            ("seeded", "seed", _) => Plain {
                key: KeyRef::GasTank,
                sender: self.signer.address(KeyRef::GasTank).await?,
                to: sp.address,
                value: stuck.value,
                purpose: "seed",
                recipient: Some(deposit),
                ..base
            },
            // A token transfer paid by its seed: the same transfer, if the seed covers the
            // higher fee (otherwise it is re-sent as it is).
            ("seeded", "sweep", Some(token)) => {
                let amount = self.rpc.token_balance(token, sp.address).await?;
                let data = transfer_call(sp.treasury, amount);
                let held = self.rpc.balance(sp.address).await?;
                let need = U256::from(stuck.gas_limit) * U256::from(max_fee)
                    + self.l1_fee(TX_OVERHEAD_BYTES + data.len()).await?;
                if held < need {
                    return Ok(());
                }
                Plain {
                    to: token,
                    input: data,
                    ..base
                }
            }
            // The delegate's deployment: the same call to the CREATE2 deployer.
            ("delegated", "deploy", _) => {
                let input = delegate_deployment(sp.treasury);
                Plain {
                    key: KeyRef::GasTank,
                    sender: self.signer.address(KeyRef::GasTank).await?,
                    to: CREATE2_DEPLOYER,
                    input,
                    purpose: "deploy",
                    ..base
                }
            }
            // A delegated batch: the same call over the same addresses, with the
            // authorizations still needed (re-signed: the deposits' nonces have not moved).
            ("delegated", "sweep", _) => {
                let client = self.store.client().await?;
                let members = sweeps::batch_members(&client, stuck.sweep_id).await?;
                drop(client);
                let delegate = delegate_address(sp.treasury);
                let keys: Vec<(Address, KeyRef)> = members
                    .iter()
                    .map(|(a, _, account, index)| {
                        (
                            *a,
                            KeyRef::Deposit {
                                account: *account,
                                index: *index,
                            },
                        )
                    })
                    .collect();
                let auths = self.authorizations(&keys, delegate).await?;
                let mut tokens: Vec<Address> = members.iter().filter_map(|m| m.1).collect();
                tokens.sort();
                tokens.dedup();
                let deposits = members.iter().map(|m| m.0).collect();
                let input = sweepManyCall { deposits, tokens }.abi_encode();
                let attempt = self
                    .sign_delegated(
                        stuck.sweep_id,
                        stuck.nonce,
                        stuck.gas_limit,
                        max_fee,
                        tip,
                        delegate,
                        input,
                        auths,
                    )
                    .await?;
                return self.store_replacement(stuck, attempt).await;
            }
            _ => return Ok(()),
        };
        let attempt = self.sign_plain(plain).await?;
        self.store_replacement(stuck, attempt).await
    }

    /// Stores a replacement of `stuck` (marking it replaced) and sends it.
    async fn store_replacement(
        &self,
        stuck: &Attempt,
        attempt: NewAttempt,
    ) -> Result<(), TickError> {
        let (max_fee, tip) = (attempt.max_fee_per_gas, attempt.max_priority_fee_per_gas);
        let hash = attempt.hash;
        let mut client = self.store.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        sweeps::insert_replacement(&tx, &attempt).await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.metrics
            .sweep_replacements
            .with_label_values(&[self.chain.name.as_str()])
            .inc();
        slog::warn!(self.log, "stuck sweep replaced with higher fees";
            "sweep_id" => %stuck.sweep_id, "old_tx_hash" => &stuck.hash, "tx_hash" => %hash,
            "nonce" => stuck.nonce, "max_fee_per_gas" => max_fee, "max_priority_fee_per_gas" => tip);
        self.send(&just_stored(attempt)).await
    }

    async fn track(&self, a: &Attempt, head: u64) -> Result<Tracked, TickError> {
        if a.purpose == "seed" && a.state == "confirmed" {
            // The seed landed; the transfer follows (once: it is looked up first).
            self.sign_transfer(a.sweep_id).await?;
            return Ok(Tracked::Mined);
        }
        let hash: B256 = a
            .hash
            .parse()
            .map_err(|_| StoreError::Corrupt("sweep_attempts"))?;
        let Some(receipt) = self.rpc.receipt(hash).await? else {
            if a.state == "replaced" {
                // A later attempt pays more; this one is only watched in case it wins.
                return Ok(Tracked::Waiting);
            }
            if a.state == "mined" {
                slog::warn!(self.log, "sweep transaction left the canonical chain; sending it again";
                    "sweep_id" => %a.sweep_id, "tx_hash" => &a.hash);
            } else if a.state == "broadcast" && !self.rpc.knows(hash).await? {
                slog::warn!(self.log, "sweep transaction dropped by the nodes; sending it again";
                    "sweep_id" => %a.sweep_id, "tx_hash" => &a.hash);
                self.metrics
                    .sweep_drops
                    .with_label_values(&[self.chain.name.as_str()])
                    .inc();
            }
            self.send(a).await?;
            return Ok(Tracked::Waiting);
        };
        let (Some(number), Some(block_hash)) = (receipt.block_number, receipt.block_hash) else {
            return Ok(Tracked::Waiting);
        };
        let block_text = format!("{block_hash:#x}");
        if a.block.as_ref() != Some(&(number, block_text.clone())) {
            let client = self.store.client().await?;
            sweeps::mark_attempt(&client, a.id, "mined", Some((number, &block_text))).await?;
        }
        let depth = head.saturating_add(1).saturating_sub(number);
        if depth < u64::from(self.chain.confirmations) {
            return Ok(Tracked::Mined);
        }
        // Deep enough by number; confirm only if the block is still the canonical one.
        if self.rpc.header(number).await?.hash != block_hash {
            return Ok(Tracked::Mined);
        }
        if !receipt.status() {
            slog::error!(self.log, "sweep transaction reverted"; "sweep_id" => %a.sweep_id, "tx_hash" => &a.hash);
            self.metrics
                .sweeps
                .with_label_values(&[self.chain.name.as_str(), "failed"])
                .inc();
            return Ok(Tracked::Mined);
        }
        let fee = (receipt.gas_used as f64) * (receipt.effective_gas_price as f64);
        let client = self.store.client().await?;
        let strategy = sweeps::strategy(&client, a.sweep_id).await?;
        drop(client);
        self.metrics
            .sweep_fees
            .with_label_values(&[self.chain.name.as_str(), strategy.as_str()])
            .inc_by(fee);
        if a.purpose == "seed" {
            let client = self.store.client().await?;
            sweeps::seed_confirmed(&client, a.id).await?;
            drop(client);
            self.sign_transfer(a.sweep_id).await?;
            return Ok(Tracked::Mined);
        }
        let mut client = self.store.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let settled = sweeps::confirm(&tx, a.sweep_id, a.id, &a.hash).await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.metrics
            .sweeps
            .with_label_values(&[self.chain.name.as_str(), "succeeded"])
            .inc();
        for p in &settled {
            if let Some(since) = p.confirmed_at.or(p.history.last().map(|h| h.at)) {
                let secs = (chrono::Utc::now() - since).num_milliseconds() as f64 / 1000.0;
                self.metrics
                    .sweep_latency
                    .with_label_values(&[self.chain.name.as_str()])
                    .observe(secs.max(0.0));
            }
            slog::info!(self.log, "payment swept";
                "payment_id" => %p.id, "sweep_id" => %a.sweep_id, "tx_hash" => &a.hash);
        }
        Ok(Tracked::Confirmed)
    }

    /// Broadcasts an attempt's stored bytes; a node that already has them counts as sent.
    async fn send(&self, a: &Attempt) -> Result<(), TickError> {
        match self.rpc.send_raw(&a.raw).await {
            Ok(_) => crash_point("sweep_sent"),
            Err(e) if e.is_already_sent() => {}
            Err(e) if e.is_node_answer() => {
                // Refused for good reason (underpriced, out of funds): keep the record and
                // try again next tick; the fee rules change with the network.
                slog::warn!(self.log, "sweep transaction refused by the node";
                    "sweep_id" => %a.sweep_id, "tx_hash" => &a.hash, "error" => %e);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        if a.state != "broadcast" {
            let client = self.store.client().await?;
            sweeps::mark_attempt(&client, a.id, "broadcast", None).await?;
        }
        Ok(())
    }

    async fn report_in_flight(&self) -> Result<(), TickError> {
        let client = self.store.client().await?;
        let (count, oldest) = sweeps::in_flight_stats(&client, &self.chain.name).await?;
        let chain = self.chain.name.as_str();
        self.metrics
            .sweeps_in_flight
            .with_label_values(&[chain])
            .set(count);
        self.metrics
            .oldest_sweep_age
            .with_label_values(&[chain])
            .set(oldest);
        Ok(())
    }

    /// Reads the gas tank's balance and the backlog into the metrics and the chain status
    /// that `/health/detail` shows.
    async fn report(&self) -> Result<(), TickError> {
        let tank = self.signer.address(KeyRef::GasTank).await?;
        let balance = self.rpc.balance(tank).await?;
        let client = self.store.client().await?;
        let (unswept, oldest_unswept) = sweeps::unswept_stats(&client, &self.chain.name).await?;
        let (in_flight, oldest_in_flight) =
            sweeps::in_flight_stats(&client, &self.chain.name).await?;
        let chain = self.chain.name.as_str();
        self.metrics
            .gas_tank_balance
            .with_label_values(&[chain])
            .set(u128::try_from(balance).map_or(f64::MAX, |v| v as f64));
        self.metrics
            .unswept_payments
            .with_label_values(&[chain])
            .set(unswept);
        self.metrics
            .oldest_unswept_age
            .with_label_values(&[chain])
            .set(oldest_unswept);
        let native = self.chain.native_symbol.as_str();
        let mut values: Vec<(&str, f64)> = std::iter::once((native, 0.0))
            .chain(self.chain.tokens.iter().map(|t| (t.symbol.as_str(), 0.0)))
            .collect();
        for (asset, value) in sweeps::unswept_value(&client, &self.chain.name).await? {
            let symbol = match asset {
                None => Some(native),
                Some(a) => self
                    .chain
                    .tokens
                    .iter()
                    .find(|t| t.address == a)
                    .map(|t| t.symbol.as_str()),
            };
            if let Some(v) = values.iter_mut().find(|(s, _)| Some(*s) == symbol) {
                v.1 = value;
            }
        }
        for (asset, value) in values {
            self.metrics
                .unswept_value
                .with_label_values(&[chain, asset])
                .set(value);
        }
        // Runway and drift: what the tank can still pay, and whether our nonce records agree
        // with the chain (they may differ only while something is in flight).
        let (ours, tank_in_flight, mean_fee) =
            sweeps::tank_stats(&client, &self.chain.name, &tank).await?;
        let wei = u128::try_from(balance).map_or(f64::MAX, |v| v as f64);
        // Without history, a seed (a plain transfer) at today's fee cap stands for a sweep,
        // so an empty tank shows a runway of zero from the start.
        let fee = match mean_fee.filter(|f| *f > 0.0) {
            Some(f) => f,
            None => {
                let now = self.rpc.eip1559_fees().await?;
                (NATIVE_TRANSFER_GAS as f64) * (now.max_fee_per_gas as f64)
            }
        };
        self.metrics
            .gas_tank_runway
            .with_label_values(&[chain])
            .set(if fee > 0.0 { wei / fee } else { f64::NAN });
        let drift = match ours {
            Some(ours) if tank_in_flight == 0 => {
                let mined = self.rpc.mined_nonce(tank).await?;
                i64::try_from(ours).unwrap_or(i64::MAX) - i64::try_from(mined).unwrap_or(i64::MAX)
            }
            _ => 0,
        };
        self.metrics
            .gas_tank_nonce_drift
            .with_label_values(&[chain])
            .set(drift);
        if let Some(status) = &self.status {
            let sweep = SweepStatus {
                gas_tank_wei: Some(balance),
                unswept,
                oldest_unswept: Duration::from_secs_f64(oldest_unswept.max(0.0)),
                in_flight,
                oldest_in_flight: Duration::from_secs_f64(oldest_in_flight.max(0.0)),
                warn_unswept_after: self.chain.sweep.max_age * 2,
                warn_in_flight_after: self.bump_after() * 10,
            };
            status.update(chain, |s| s.sweep = Some(sweep));
        }
        Ok(())
    }

    /// Publishes the gas tank and the backlog to `/health/detail` through `status`.
    pub fn with_status(mut self, status: ChainStatusRegistry) -> Self {
        self.status = Some(status);
        self
    }
}

impl Work for Sweeper {
    type Error = TickError;

    fn interval(&self) -> Duration {
        self.interval
    }

    /// Follows what is in flight, plans what is due, then sends what was just stored. A
    /// chain without a treasury sweeps nothing and asks its nodes nothing.
    async fn tick_once(&mut self) -> Result<(), TickError> {
        self.track_once().await?;
        if self.chain.treasury.is_none() {
            return Ok(());
        }
        if self.plan_once().await? > 0 {
            self.track_once().await?;
        }
        self.rpc.refresh_heads().await?;
        self.report().await
    }
}

/// One issued address that still holds funds.
#[derive(Debug, Clone)]
pub struct Holding {
    /// The payment the address was issued for.
    pub payment_id: Uuid,
    /// The address.
    pub address: Address,
    /// `native` or the token's symbol.
    pub asset: String,
    /// The balance, raw units.
    pub amount: U256,
    /// Payment status.
    pub status: String,
    /// Settlement status.
    pub settlement: String,
    /// Whether it is the payment's own asset (the sweeper moves only that).
    pub own_asset: bool,
}

/// Every address issued on `chain` that holds native funds or any configured token, read
/// from the chain now (16 requests in flight at a time), so nothing is ever stranded.
pub async fn audit(
    chain: &ChainSettings,
    rpc: &ChainRpc,
    store: &Store,
) -> Result<Vec<Holding>, TickError> {
    use futures::{StreamExt, TryStreamExt};
    let client = store.client().await?;
    let issued = sweeps::issued(&client, &chain.name).await?;
    drop(client);
    rpc.refresh_heads().await?;
    let found: Vec<Vec<Holding>> = futures::stream::iter(issued)
        .map(|p| async move {
            let mut out = Vec::new();
            let native = rpc.balance(p.address).await?;
            let mut assets = vec![(None, "native".to_string(), native)];
            for t in &chain.tokens {
                let amount = rpc.token_balance(t.address, p.address).await?;
                assets.push((Some(t.address), t.symbol.clone(), amount));
            }
            for (contract, asset, amount) in assets {
                if !amount.is_zero() {
                    out.push(Holding {
                        payment_id: p.payment_id,
                        address: p.address,
                        asset,
                        amount,
                        status: p.status.clone(),
                        settlement: p.settlement.clone(),
                        own_asset: contract == p.asset,
                    });
                }
            }
            Ok::<_, TickError>(out)
        })
        .buffered(16)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// geth's rule for replacing a pooled transaction: both the fee cap and the tip
    /// strictly higher and at least 10 % higher.
    fn geth_replaces(old: (u128, u128), new: (u128, u128)) -> bool {
        let at_least = |o: u128, n: u128| n > o && n * 100 >= o * 110;
        at_least(old.0, new.0) && at_least(old.1, new.1)
    }

    #[test]
    fn a_replacement_raises_both_fees_by_an_eighth_within_the_cap() {
        let quiet = Eip1559Estimation {
            max_fee_per_gas: 1,
            max_priority_fee_per_gas: 1,
        };
        for (fee, tip) in [
            (1u128, 1u128),
            (7, 1),
            (8, 8),
            (1_000_000_007, 3),
            (2_000_000_000, 1_000_000_000),
        ] {
            let (f, t) = bumped_fees(fee, tip, quiet, u128::MAX).expect("under the cap");
            assert!(geth_replaces((fee, tip), (f, t)), "{fee}/{tip} -> {f}/{t}");
            assert!(
                f * 8 >= fee * 9 && t * 8 >= tip * 9,
                "12.5 %: {fee}/{tip} -> {f}/{t}"
            );
            assert!(t <= f);
        }
        // The network asking more than the bump wins.
        let busy = Eip1559Estimation {
            max_fee_per_gas: 50,
            max_priority_fee_per_gas: 20,
        };
        assert_eq!(bumped_fees(10, 2, busy, 100), Some((50, 20)));
        // Never above the cap.
        assert_eq!(bumped_fees(100, 2, quiet, 110), None);
    }

    #[test]
    fn a_sweep_never_costs_more_than_a_tenth_unless_the_funds_are_old() {
        let fee = U256::from(21_000u64 * 2_000_000_000);
        let ten = fee * U256::from(10u64);
        assert_eq!(
            plan_native(ten, fee, 10, false),
            Plan::Sweep { value: ten - fee }
        );
        assert!(matches!(
            plan_native(ten - U256::from(1u64), fee, 10, false),
            Plan::Defer(r) if r.contains("1/10")
        ));
        assert_eq!(
            plan_native(fee * U256::from(2u64), fee, 10, true),
            Plan::Sweep { value: fee }
        );
        assert!(matches!(plan_native(fee, fee, 10, true), Plan::Defer(_)));
        assert!(matches!(
            plan_native(U256::ZERO, fee, 10, true),
            Plan::Defer(_)
        ));
    }
}
