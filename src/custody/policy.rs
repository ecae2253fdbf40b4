//! What a signer signs: the whole policy, pure and checked before every signature, the
//! same in the in-process signer and in `ctrip signer`.
//!
//! - A **deposit key** sends only to a treasury of its chain: the native balance with no
//!   calldata, or a configured token's exact `transfer(treasury, amount)`.
//! - The **gas tank** sends only (a) a seed of gas to one of our own deposit addresses
//!   (named by its key and derived here), no larger than [`SEED_GAS`] at the fee cap;
//!   (b) the deployment of the sweep delegate for a treasury, through the CREATE2
//!   deployer; (c) a `sweepMany` call to such a delegate over configured tokens only.
//! - An **EIP-7702 authorization** is signed only by a deposit key, only for its chain
//!   (never chain id 0, which is valid on every chain), and only to a treasury's delegate.
//! - Every transaction is for a configured chain, with a fee per gas at most that chain's
//!   cap, a tip at most the fee, and a gas limit at most [`MAX_GAS`].
//!
//! The delegate is safe to authorize because its code sends to the one treasury fixed in
//! it, and its address is a function of that treasury.

use std::collections::HashMap;

use alloy::eips::eip7702::Authorization;
use alloy::primitives::{Address, TxKind, U256};
use alloy::sol_types::SolCall;

use crate::config::Settings;
use crate::domain::sweep::{
    delegate_address, delegate_deployment, sweepManyCall, transfer_recipient, CREATE2_DEPLOYER,
};
use crate::wallet::{KeyRef, UnsignedTx};

/// The largest gas limit signed (a batch of twenty delegated sweeps stays far below it).
pub const MAX_GAS: u64 = 5_000_000;

/// A gas seed pays at most this much gas at the chain's fee cap.
pub const SEED_GAS: u64 = 500_000;

/// One chain's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPolicy {
    /// The chain's name (for the audit log).
    pub name: String,
    /// Where funds may go.
    pub treasuries: Vec<Address>,
    /// The tokens a deposit key may transfer and a delegate may sweep.
    pub tokens: Vec<Address>,
    /// The highest fee per gas signed, in wei.
    pub max_fee_per_gas: u128,
}

/// The policy: one set of rules per chain id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    chains: HashMap<u64, ChainPolicy>,
}

/// Why a request was refused: one line, safe to log and to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(why.into()))
}

impl Policy {
    /// The rules the configuration gives: each chain's treasury, the treasuries listed under
    /// `signer.treasuries` for it, its tokens and its sweep fee cap.
    pub fn from_settings(settings: &Settings) -> Self {
        let chains = settings
            .chains
            .iter()
            .map(|c| {
                let mut treasuries: Vec<Address> = c.treasury.into_iter().collect();
                if let Some(more) = settings.signer.treasuries.get(&c.name) {
                    treasuries.extend(more.iter().copied());
                }
                treasuries.sort();
                treasuries.dedup();
                (
                    c.chain_id,
                    ChainPolicy {
                        name: c.name.clone(),
                        treasuries,
                        tokens: c.tokens.iter().map(|t| t.address).collect(),
                        max_fee_per_gas: u128::from(c.sweep.max_fee_per_gas_wei),
                    },
                )
            })
            .collect();
        Self { chains }
    }

    /// A policy with exactly these chains.
    pub fn with_chains(chains: impl IntoIterator<Item = (u64, ChainPolicy)>) -> Self {
        Self {
            chains: chains.into_iter().collect(),
        }
    }

    /// The chain ids signed for.
    pub fn chain_ids(&self) -> Vec<u64> {
        self.chains.keys().copied().collect()
    }

    /// The rules of `chain_id`, if it is configured.
    pub fn chain(&self, chain_id: u64) -> Option<&ChainPolicy> {
        self.chains.get(&chain_id)
    }

    /// Checks a transaction `key` is asked to sign. `extra` widens the chain's treasuries
    /// (the in-process signer also accepts merchants' own treasuries from the database);
    /// `derive` gives the address of one of our keys (for a seed's recipient).
    pub fn check_transaction(
        &self,
        key: KeyRef,
        tx: &UnsignedTx,
        recipient: Option<KeyRef>,
        extra: &[Address],
        derive: &dyn Fn(KeyRef) -> Option<Address>,
    ) -> Result<(), Refusal> {
        let (chain_id, max_fee, tip, gas, to, value, input) = match tx {
            UnsignedTx::Eip1559(t) => (
                t.chain_id,
                t.max_fee_per_gas,
                t.max_priority_fee_per_gas,
                t.gas_limit,
                match t.to {
                    TxKind::Call(a) => a,
                    TxKind::Create => return refuse("contract creation is never signed"),
                },
                t.value,
                &t.input,
            ),
            UnsignedTx::Eip7702(t) => (
                t.chain_id,
                t.max_fee_per_gas,
                t.max_priority_fee_per_gas,
                t.gas_limit,
                t.to,
                t.value,
                &t.input,
            ),
        };
        let Some(chain) = self.chains.get(&chain_id) else {
            return refuse(format!("chain id {chain_id} is not configured"));
        };
        if max_fee > chain.max_fee_per_gas {
            return refuse(format!(
                "max fee per gas {max_fee} is above the chain's cap {}",
                chain.max_fee_per_gas
            ));
        }
        if tip > max_fee {
            return refuse("the priority fee is above the max fee");
        }
        if gas > MAX_GAS {
            return refuse(format!("gas limit {gas} is above {MAX_GAS}"));
        }
        let treasuries: Vec<Address> = chain.treasuries.iter().chain(extra).copied().collect();
        let is_treasury = |a: Address| treasuries.contains(&a);
        match key {
            KeyRef::Deposit { .. } => {
                let UnsignedTx::Eip1559(_) = tx else {
                    return refuse("a deposit key signs only EIP-1559 transactions");
                };
                if input.is_empty() {
                    if is_treasury(to) {
                        return Ok(());
                    }
                    return refuse(format!("{to} is not a treasury of {}", chain.name));
                }
                if !chain.tokens.contains(&to) {
                    return refuse(format!("{to} is not a configured token of {}", chain.name));
                }
                if !value.is_zero() {
                    return refuse("a token transfer carries no value");
                }
                match transfer_recipient(input) {
                    Some(r) if is_treasury(r) => Ok(()),
                    Some(r) => refuse(format!("{r} is not a treasury of {}", chain.name)),
                    None => {
                        refuse("a deposit key calls a token only with transfer(treasury, amount)")
                    }
                }
            }
            KeyRef::GasTank => {
                if let Some(r) = recipient {
                    // A seed: gas to one of our own deposit addresses.
                    let KeyRef::Deposit { .. } = r else {
                        return refuse("a seed goes to a deposit address");
                    };
                    if derive(r) != Some(to) {
                        return refuse(format!("{to} is not the deposit address named"));
                    }
                    if !input.is_empty() || !matches!(tx, UnsignedTx::Eip1559(_)) {
                        return refuse("a seed is a plain transfer");
                    }
                    let most = U256::from(SEED_GAS) * U256::from(chain.max_fee_per_gas);
                    if value > most {
                        return refuse(format!("a seed of {value} wei is above {most}"));
                    }
                    return Ok(());
                }
                if !value.is_zero() {
                    return refuse("the gas tank sends value only as a seed to a deposit address");
                }
                if to == CREATE2_DEPLOYER {
                    let allowed = treasuries
                        .iter()
                        .any(|t| *input == delegate_deployment(*t)[..]);
                    if allowed && matches!(tx, UnsignedTx::Eip1559(_)) {
                        return Ok(());
                    }
                    return refuse("the deployer is called only to deploy a treasury's delegate");
                }
                let Some(treasury) = treasuries
                    .iter()
                    .copied()
                    .find(|t| delegate_address(*t) == to)
                else {
                    return refuse(format!("{to} is not a treasury's sweep delegate"));
                };
                let Ok(call) = sweepManyCall::abi_decode(input) else {
                    return refuse("a delegate is called only with sweepMany");
                };
                if let Some(t) = call.tokens.iter().find(|t| !chain.tokens.contains(t)) {
                    return refuse(format!("{t} is not a configured token of {}", chain.name));
                }
                if let UnsignedTx::Eip7702(t) = tx {
                    let delegate = delegate_address(treasury);
                    if t.authorization_list
                        .iter()
                        .any(|a| a.address != delegate || a.chain_id != U256::from(chain_id))
                    {
                        return refuse("an authorization in the batch is not for its delegate");
                    }
                }
                Ok(())
            }
        }
    }

    /// Checks an EIP-7702 authorization `key` is asked to sign.
    pub fn check_authorization(
        &self,
        key: KeyRef,
        auth: &Authorization,
        extra: &[Address],
    ) -> Result<(), Refusal> {
        let KeyRef::Deposit { .. } = key else {
            return refuse("only deposit keys sign authorizations");
        };
        let Ok(chain_id) = u64::try_from(auth.chain_id) else {
            return refuse("chain id out of range");
        };
        if chain_id == 0 {
            return refuse("an authorization for chain id 0 would hold on every chain");
        }
        let Some(chain) = self.chains.get(&chain_id) else {
            return refuse(format!("chain id {chain_id} is not configured"));
        };
        let to_delegate = chain
            .treasuries
            .iter()
            .chain(extra)
            .any(|t| delegate_address(*t) == auth.address);
        if to_delegate {
            Ok(())
        } else {
            refuse(format!(
                "{} is not a treasury's sweep delegate",
                auth.address
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sweep::transfer_call;
    use alloy::consensus::{TxEip1559, TxEip7702};
    use alloy::primitives::{address, Bytes, Signature};

    const CHAIN: u64 = 31337;
    const TREASURY: Address = address!("1111111111111111111111111111111111111111");
    const TOKEN: Address = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
    const STRANGER: Address = address!("dead00000000000000000000000000000000beef");
    const DEPOSIT: Address = address!("2222222222222222222222222222222222222222");
    const CAP: u128 = 100_000_000_000;

    fn policy() -> Policy {
        Policy::with_chains([(
            CHAIN,
            ChainPolicy {
                name: "devchain".into(),
                treasuries: vec![TREASURY],
                tokens: vec![TOKEN],
                max_fee_per_gas: CAP,
            },
        )])
    }

    fn deposit() -> KeyRef {
        KeyRef::Deposit {
            account: 1,
            index: 7,
        }
    }

    fn derive(k: KeyRef) -> Option<Address> {
        (k == deposit()).then_some(DEPOSIT)
    }

    fn tx(to: Address, value: u64, input: Vec<u8>) -> TxEip1559 {
        TxEip1559 {
            chain_id: CHAIN,
            nonce: 0,
            gas_limit: 21_000,
            max_fee_per_gas: CAP,
            max_priority_fee_per_gas: 1,
            to: TxKind::Call(to),
            value: U256::from(value),
            access_list: Default::default(),
            input: Bytes::from(input),
        }
    }

    fn check(key: KeyRef, t: TxEip1559, recipient: Option<KeyRef>) -> Result<(), Refusal> {
        policy().check_transaction(key, &UnsignedTx::Eip1559(t), recipient, &[], &derive)
    }

    fn refused(r: Result<(), Refusal>, why: &str) {
        match r {
            Err(Refusal(reason)) => assert!(reason.contains(why), "{reason} (wanted {why})"),
            Ok(()) => panic!("allowed, but should be refused: {why}"),
        }
    }

    #[test]
    fn deposit_keys_pay_treasuries_only() {
        check(deposit(), tx(TREASURY, 5, vec![]), None).expect("native sweep");
        let to_token = tx(TOKEN, 0, transfer_call(TREASURY, U256::from(9u64)));
        check(deposit(), to_token, None).expect("token sweep");
        refused(
            check(deposit(), tx(STRANGER, 5, vec![]), None),
            "not a treasury",
        );
        refused(
            check(
                deposit(),
                tx(TOKEN, 0, transfer_call(STRANGER, U256::from(9u64))),
                None,
            ),
            "not a treasury",
        );
        refused(
            check(
                deposit(),
                tx(STRANGER, 0, transfer_call(TREASURY, U256::from(9u64))),
                None,
            ),
            "not a configured token",
        );
        // approve(stranger, max) on a configured token: not a transfer.
        let mut approve = transfer_call(STRANGER, U256::MAX);
        approve[..4].copy_from_slice(&[0x09, 0x5e, 0xa7, 0xb3]);
        refused(
            check(deposit(), tx(TOKEN, 0, approve), None),
            "only with transfer",
        );
        refused(
            check(deposit(), tx(TREASURY, 5, vec![1, 2, 3]), None),
            "not a configured token",
        );
        // A treasury the in-process signer knows from the database.
        policy()
            .check_transaction(
                deposit(),
                &UnsignedTx::Eip1559(tx(STRANGER, 5, vec![])),
                None,
                &[STRANGER],
                &derive,
            )
            .expect("an extra treasury");
    }

    #[test]
    fn fees_chains_and_gas_are_capped() {
        let mut t = tx(TREASURY, 5, vec![]);
        t.max_fee_per_gas = CAP + 1;
        refused(check(deposit(), t, None), "above the chain's cap");
        let mut t = tx(TREASURY, 5, vec![]);
        t.max_priority_fee_per_gas = CAP + 1;
        refused(check(deposit(), t, None), "priority fee");
        let mut t = tx(TREASURY, 5, vec![]);
        t.chain_id = 1;
        refused(check(deposit(), t, None), "not configured");
        let mut t = tx(TREASURY, 5, vec![]);
        t.gas_limit = MAX_GAS + 1;
        refused(check(deposit(), t, None), "gas limit");
        let mut t = tx(TREASURY, 5, vec![]);
        t.to = TxKind::Create;
        refused(check(deposit(), t, None), "contract creation");
    }

    #[test]
    fn the_gas_tank_seeds_our_addresses_deploys_and_calls_delegates_only() {
        let tank = KeyRef::GasTank;
        check(tank, tx(DEPOSIT, 1_000, vec![]), Some(deposit())).expect("a seed");
        refused(
            check(tank, tx(STRANGER, 1_000, vec![]), Some(deposit())),
            "not the deposit address named",
        );
        refused(
            check(tank, tx(DEPOSIT, 1_000, vec![]), None),
            "only as a seed",
        );
        let too_much = u64::try_from(U256::from(SEED_GAS) * U256::from(CAP) + U256::from(1u64))
            .unwrap_or(u64::MAX);
        refused(
            check(tank, tx(DEPOSIT, too_much, vec![]), Some(deposit())),
            "above",
        );
        check(
            tank,
            tx(CREATE2_DEPLOYER, 0, delegate_deployment(TREASURY)),
            None,
        )
        .expect("deploys the treasury's delegate");
        refused(
            check(
                tank,
                tx(CREATE2_DEPLOYER, 0, delegate_deployment(STRANGER)),
                None,
            ),
            "only to deploy",
        );
        let delegate = delegate_address(TREASURY);
        let batch = sweepManyCall {
            deposits: vec![DEPOSIT],
            tokens: vec![TOKEN],
        }
        .abi_encode();
        check(tank, tx(delegate, 0, batch.clone()), None).expect("a batch");
        refused(
            check(tank, tx(delegate_address(STRANGER), 0, batch), None),
            "not a treasury's sweep delegate",
        );
        let foreign = sweepManyCall {
            deposits: vec![DEPOSIT],
            tokens: vec![STRANGER],
        }
        .abi_encode();
        refused(
            check(tank, tx(delegate, 0, foreign), None),
            "not a configured token",
        );
        refused(
            check(tank, tx(delegate, 0, vec![1, 2]), None),
            "only with sweepMany",
        );
        // A type-4 batch whose authorizations point elsewhere.
        let bad_auth = Authorization {
            chain_id: U256::from(CHAIN),
            address: STRANGER,
            nonce: 0,
        }
        .into_signed(Signature::test_signature());
        let t4 = TxEip7702 {
            chain_id: CHAIN,
            nonce: 0,
            gas_limit: 100_000,
            max_fee_per_gas: CAP,
            max_priority_fee_per_gas: 1,
            to: delegate,
            value: U256::ZERO,
            access_list: Default::default(),
            authorization_list: vec![bad_auth],
            input: Bytes::from(
                sweepManyCall {
                    deposits: vec![DEPOSIT],
                    tokens: vec![TOKEN],
                }
                .abi_encode(),
            ),
        };
        refused(
            policy().check_transaction(tank, &UnsignedTx::Eip7702(t4), None, &[], &derive),
            "not for its delegate",
        );
    }

    #[test]
    fn authorizations_go_to_a_treasurys_delegate_on_its_chain() {
        let p = policy();
        let auth = |chain: u64, to: Address| Authorization {
            chain_id: U256::from(chain),
            address: to,
            nonce: 3,
        };
        let delegate = delegate_address(TREASURY);
        p.check_authorization(deposit(), &auth(CHAIN, delegate), &[])
            .expect("the delegate");
        refused(
            p.check_authorization(deposit(), &auth(0, delegate), &[]),
            "chain id 0",
        );
        refused(
            p.check_authorization(deposit(), &auth(1, delegate), &[]),
            "not configured",
        );
        refused(
            p.check_authorization(deposit(), &auth(CHAIN, STRANGER), &[]),
            "not a treasury's sweep delegate",
        );
        refused(
            p.check_authorization(KeyRef::GasTank, &auth(CHAIN, delegate), &[]),
            "only deposit keys",
        );
    }
}
