//! The HD wallet: BIP-39 seed, BIP-32 derivation at `m/44'/60'/{account}'/0/{index}`.
//!
//! Two kinds of keys come from the seed: deposit keys (one per payment, under the
//! merchant's account) and the gas tank, which pays sweep gas on every chain from
//! `m/44'/60'/2147483647'/0/0`. That account is the largest hardened one; merchant accounts
//! come from a sequence the database keeps below it, so the tank never shares a key with a
//! merchant.
//!
//! Everything that signs goes through [`Signer`], which is asked to sign whole transactions
//! and authorizations (never bare hashes), so that whoever holds the keys can check what
//! it signs: the in-process signer and the separate `ctrip signer` apply the same policy.
//! [`WatchOnly`] derives deposit addresses from account extended public keys alone.
//!
//! Deposit addresses need only public derivation below the account's external chain
//! (`m/44'/60'/{account}'/0`), so that extended public key is derived once per account and
//! cached; a new address then costs one non-hardened child derivation. The seed is kept in
//! zeroizing memory and is never logged or returned.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::RwLock;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEip7702, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::eips::eip7702::Authorization;
use alloy::primitives::{keccak256, Address, Signature, B256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use bip32::{ChildNumber, DerivationPath, XPrv, XPub};
use hmac::{Hmac, KeyInit, Mac};
use k256::elliptic_curve::group::Group;
use k256::elliptic_curve::ops::MulByGenerator;
use k256::elliptic_curve::sec1::ToEncodedPoint;
use k256::elliptic_curve::PrimeField;
use k256::{ProjectivePoint, Scalar};
use serde::{Deserialize, Serialize};
use sha2::Sha512;
use zeroize::Zeroizing;

/// Wallet failures. None of them carry key material.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The mnemonic is not valid BIP-39.
    #[error("invalid BIP-39 mnemonic")]
    InvalidMnemonic,
    /// An account or index outside the non-hardened range.
    #[error("derivation index out of range")]
    IndexOutOfRange,
    /// A BIP-32 derivation failed (astronomically unlikely).
    #[error("key derivation failed")]
    Derivation,
    /// Signing failed.
    #[error("signing failed")]
    Signing,
    /// The signer's policy refused the request (the reason says which rule).
    #[error("refused by the signer's policy: {0}")]
    Refused(String),
    /// The signer could not be reached or did not answer in time.
    #[error("signer unavailable: {0}")]
    Unavailable(String),
    /// An extended public key that does not parse, or that contradicts the signer's.
    #[error("bad extended public key: {0}")]
    BadXpub(&'static str),
}

impl WalletError {
    /// Whether trying again later may succeed (the signer was away).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// The BIP-44 account of the gas tank (the largest hardened account).
pub const GAS_TANK_ACCOUNT: u32 = 0x7fff_ffff;

/// A key the gateway signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyRef {
    /// A payment's deposit key, `m/44'/60'/{account}'/0/{index}`.
    Deposit {
        /// The merchant's account.
        account: u32,
        /// The payment's derivation index.
        index: u32,
    },
    /// The gas tank, `m/44'/60'/2147483647'/0/0`.
    GasTank,
}

/// A transaction to be signed: what a sweep sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UnsignedTx {
    /// EIP-1559.
    Eip1559(TxEip1559),
    /// EIP-7702 (a delegated batch carrying authorizations).
    Eip7702(TxEip7702),
}

impl UnsignedTx {
    /// The chain it is for.
    pub fn chain_id(&self) -> u64 {
        match self {
            Self::Eip1559(t) => t.chain_id,
            Self::Eip7702(t) => t.chain_id,
        }
    }

    /// The hash a signature covers.
    pub fn signature_hash(&self) -> B256 {
        match self {
            Self::Eip1559(t) => t.signature_hash(),
            Self::Eip7702(t) => t.signature_hash(),
        }
    }

    /// The signed transaction's EIP-2718 bytes and hash.
    pub fn into_signed(self, sig: Signature) -> (Vec<u8>, B256) {
        let envelope = match self {
            Self::Eip1559(t) => TxEnvelope::from(t.into_signed(sig)),
            Self::Eip7702(t) => TxEnvelope::from(t.into_signed(sig)),
        };
        (envelope.encoded_2718(), *envelope.tx_hash())
    }
}

/// The one seam every signature goes through. It is handed what is signed (a whole
/// transaction or authorization), never a bare hash, so the key holder can refuse what
/// its policy does not allow. Implementations never expose private key material.
#[async_trait::async_trait]
pub trait Signer: Send + Sync {
    /// The address of `key`.
    async fn address(&self, key: KeyRef) -> Result<Address, WalletError>;
    /// The extended public key of `account`'s external chain (`m/44'/60'/{account}'/0`),
    /// from which its deposit addresses are derived without any private key.
    async fn account_xpub(&self, account: u32) -> Result<String, WalletError>;
    /// Signs `tx` with `key`. `recipient` names the key behind `tx.to` when the
    /// transaction pays one of our own addresses (a gas seed), so the policy can check it.
    async fn sign_transaction(
        &self,
        key: KeyRef,
        tx: &UnsignedTx,
        recipient: Option<KeyRef>,
    ) -> Result<Signature, WalletError>;
    /// Signs an EIP-7702 authorization with `key`.
    async fn sign_authorization(
        &self,
        key: KeyRef,
        auth: &Authorization,
    ) -> Result<Signature, WalletError>;
    /// Whether the keys are in another process (then [`Signer::ping`] means something).
    fn is_separate(&self) -> bool {
        false
    }
    /// Checks that the signer answers.
    async fn ping(&self) -> Result<(), WalletError> {
        Ok(())
    }
}

impl HdWallet {
    /// The address of `key`.
    pub fn key_address(&self, key: KeyRef) -> Result<Address, WalletError> {
        match key {
            KeyRef::Deposit { account, index } => self.deposit_address(account, index),
            KeyRef::GasTank => self.deposit_address(GAS_TANK_ACCOUNT, 0),
        }
    }

    /// Signs a digest with `key`. Only the policy-checking signers call this.
    pub fn sign_digest(&self, key: KeyRef, hash: &B256) -> Result<Signature, WalletError> {
        let secret = match key {
            KeyRef::Deposit { account, index } => self.signing_key(account, index)?,
            KeyRef::GasTank => self.signing_key(GAS_TANK_ACCOUNT, 0)?,
        };
        let signer = PrivateKeySigner::from_slice(&secret[..]).map_err(|_| WalletError::Signing)?;
        signer
            .sign_hash_sync(hash)
            .map_err(|_| WalletError::Signing)
    }

    /// The extended public key of `account`'s external chain, `xpub…` encoded.
    pub fn account_xpub(&self, account: u32) -> Result<String, WalletError> {
        let xprv = XPrv::derive_from_path(&self.seed[..], &Self::path(account, "")?)
            .map_err(|_| WalletError::Derivation)?;
        Ok(xprv.public_key().to_string(bip32::Prefix::XPUB))
    }
}

/// Derives deposit addresses from account extended public keys: it can never sign. The
/// keys come from `source` (the signer) once per account and are kept in memory.
pub struct WatchOnly {
    accounts: RwLock<HashMap<u32, AccountChain>>,
}

impl Default for WatchOnly {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchOnly {
    /// Knows no account yet.
    pub fn new() -> Self {
        Self {
            accounts: RwLock::new(HashMap::new()),
        }
    }

    /// Whether `account`'s key is known.
    pub fn knows(&self, account: u32) -> bool {
        self.accounts
            .read()
            .map(|a| a.contains_key(&account))
            .unwrap_or(false)
    }

    /// Learns `account`'s extended public key (`xpub…`, at depth 4: the account's external
    /// chain).
    pub fn learn(&self, account: u32, xpub: &str) -> Result<(), WalletError> {
        let key = XPub::from_str(xpub).map_err(|_| WalletError::BadXpub("does not parse"))?;
        if key.attrs().depth != 4 {
            return Err(WalletError::BadXpub("not an account's external chain"));
        }
        let chain = AccountChain::from_xpub(&key)?;
        if let Ok(mut a) = self.accounts.write() {
            a.insert(account, chain);
        }
        Ok(())
    }

    /// The deposit address `index` of `account`; `None` while the account's key is unknown.
    pub fn deposit_address(
        &self,
        account: u32,
        index: u32,
    ) -> Option<Result<Address, WalletError>> {
        let chain = self.accounts.read().ok()?.get(&account)?.clone();
        Some(chain.child_address(index))
    }
}

/// Derives deposit addresses (and, for sweeping, signing keys) from one seed.
pub struct HdWallet {
    seed: Zeroizing<[u8; 64]>,
    accounts: RwLock<HashMap<u32, AccountChain>>,
}

/// An account's external chain `m/44'/60'/{account}'/0` in the form a public child
/// derivation needs: its point, its compressed encoding and its chain code.
#[derive(Clone)]
struct AccountChain {
    point: ProjectivePoint,
    compressed: [u8; 33],
    chain_code: [u8; 32],
}

impl AccountChain {
    fn from_xpub(xpub: &XPub) -> Result<Self, WalletError> {
        let compressed: [u8; 33] = xpub
            .public_key()
            .to_encoded_point(true)
            .as_bytes()
            .try_into()
            .map_err(|_| WalletError::Derivation)?;
        Ok(Self {
            point: ProjectivePoint::from(*xpub.public_key().as_affine()),
            compressed,
            chain_code: xpub.attrs().chain_code,
        })
    }

    /// The address of non-hardened child `index` (BIP-32 CKDpub): `IL·G + K`, where `IL`
    /// is the first half of HMAC-SHA512(chain code, K || index). `IL·G` uses the
    /// generator's precomputed tables, several times faster than the generic
    /// multiplication; this is most of what creating a payment costs the gateway.
    fn child_address(&self, index: u32) -> Result<Address, WalletError> {
        if index >= ChildNumber::HARDENED_FLAG {
            return Err(WalletError::IndexOutOfRange);
        }
        let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(&self.chain_code)
            .map_err(|_| WalletError::Derivation)?;
        mac.update(&self.compressed);
        mac.update(&index.to_be_bytes());
        let i = mac.finalize().into_bytes();
        let il: [u8; 32] = i[..32].try_into().map_err(|_| WalletError::Derivation)?;
        // IL at or above the group order, or a child at infinity, makes the index invalid
        // (probability below 2^-127); BIP-32 says to skip it, and it is refused here.
        let tweak =
            Option::<Scalar>::from(Scalar::from_repr(il.into())).ok_or(WalletError::Derivation)?;
        let child = ProjectivePoint::mul_by_generator(&tweak) + self.point;
        if bool::from(child.is_identity()) {
            return Err(WalletError::Derivation);
        }
        let point = child.to_affine().to_encoded_point(false);
        let hash = keccak256(&point.as_bytes()[1..]);
        Ok(Address::from_slice(&hash[12..]))
    }
}

impl std::fmt::Debug for HdWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HdWallet([redacted])")
    }
}

impl HdWallet {
    /// Builds the wallet from a BIP-39 English mnemonic and optional passphrase.
    pub fn from_mnemonic(phrase: &str, passphrase: &str) -> Result<Self, WalletError> {
        let m =
            bip39::Mnemonic::parse_normalized(phrase).map_err(|_| WalletError::InvalidMnemonic)?;
        let seed = Zeroizing::new(m.to_seed_normalized(passphrase));
        Ok(Self {
            seed,
            accounts: RwLock::new(HashMap::new()),
        })
    }

    /// A fresh random 12-word mnemonic (for `ctrip dev`).
    pub fn generate_mnemonic() -> Zeroizing<String> {
        let mut entropy = Zeroizing::new([0u8; 16]);
        rand::fill(&mut entropy[..]);
        // 16 bytes is always a valid BIP-39 entropy length.
        #[allow(clippy::expect_used)]
        let m = bip39::Mnemonic::from_entropy(&entropy[..]).expect("16 bytes is valid entropy");
        Zeroizing::new(m.to_string())
    }

    fn path(account: u32, tail: &str) -> Result<DerivationPath, WalletError> {
        if account >= ChildNumber::HARDENED_FLAG {
            return Err(WalletError::IndexOutOfRange);
        }
        format!("m/44'/60'/{account}'/0{tail}")
            .parse()
            .map_err(|_| WalletError::Derivation)
    }

    fn account_chain(&self, account: u32) -> Result<AccountChain, WalletError> {
        if let Ok(cache) = self.accounts.read() {
            if let Some(x) = cache.get(&account) {
                return Ok(x.clone());
            }
        }
        let xprv = XPrv::derive_from_path(&self.seed[..], &Self::path(account, "")?)
            .map_err(|_| WalletError::Derivation)?;
        let chain = AccountChain::from_xpub(&xprv.public_key())?;
        if let Ok(mut cache) = self.accounts.write() {
            cache.insert(account, chain.clone());
        }
        Ok(chain)
    }

    /// The EIP-55 deposit address at `m/44'/60'/{account}'/0/{index}`.
    pub fn deposit_address(&self, account: u32, index: u32) -> Result<Address, WalletError> {
        self.account_chain(account)?.child_address(index)
    }

    /// The private key at `m/44'/60'/{account}'/0/{index}`, for signing sweeps.
    pub fn signing_key(
        &self,
        account: u32,
        index: u32,
    ) -> Result<Zeroizing<[u8; 32]>, WalletError> {
        if index >= ChildNumber::HARDENED_FLAG {
            return Err(WalletError::IndexOutOfRange);
        }
        let xprv =
            XPrv::derive_from_path(&self.seed[..], &Self::path(account, &format!("/{index}"))?)
                .map_err(|_| WalletError::Derivation)?;
        Ok(Zeroizing::new(xprv.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethereum address of a secp256k1 public key: the last 20 bytes of keccak256(x || y).
    fn address_of(key: &k256::ecdsa::VerifyingKey) -> Address {
        let point = key.to_encoded_point(false);
        let hash = keccak256(&point.as_bytes()[1..]);
        Address::from_slice(&hash[12..])
    }

    const TEST_MNEMONIC: &str = "test test test test test test test test test test test junk";

    #[test]
    fn test_mnemonic_gives_anvils_default_accounts() {
        let w = HdWallet::from_mnemonic(TEST_MNEMONIC, "").expect("valid");
        assert_eq!(
            w.deposit_address(0, 0).expect("derive").to_checksum(None),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
        assert_eq!(
            w.deposit_address(0, 1).expect("derive").to_checksum(None),
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        );
    }

    #[test]
    fn the_fast_child_derivation_matches_bip32() {
        let w = HdWallet::from_mnemonic(TEST_MNEMONIC, "").expect("valid");
        for account in [0, 1, 7, 1000] {
            let base =
                XPrv::derive_from_path(&w.seed[..], &HdWallet::path(account, "").expect("path"))
                    .expect("derive")
                    .public_key();
            for index in (0..40).chain([1 << 20, ChildNumber::HARDENED_FLAG - 1]) {
                let by_bip32 = base
                    .derive_child(ChildNumber::new(index, false).expect("index"))
                    .expect("derive");
                assert_eq!(
                    w.deposit_address(account, index).expect("derive"),
                    address_of(by_bip32.public_key()),
                    "account {account}, index {index}"
                );
            }
        }
        assert!(matches!(
            w.deposit_address(0, ChildNumber::HARDENED_FLAG),
            Err(WalletError::IndexOutOfRange)
        ));
    }

    #[test]
    fn signing_key_matches_the_address() {
        let w = HdWallet::from_mnemonic(TEST_MNEMONIC, "").expect("valid");
        let sk = w.signing_key(0, 0).expect("derive");
        assert_eq!(
            hex::encode(&sk[..]),
            "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
        );
    }

    #[test]
    fn accounts_are_separate_and_debug_is_redacted() {
        let w = HdWallet::from_mnemonic(TEST_MNEMONIC, "").expect("valid");
        assert_ne!(w.deposit_address(0, 0).ok(), w.deposit_address(1, 0).ok());
        assert!(!format!("{w:?}").contains("test"));
        assert!(w.deposit_address(0, 1 << 31).is_err());
    }

    #[test]
    fn signatures_recover_to_the_key_address_and_the_tank_is_its_own_key() {
        let w = HdWallet::from_mnemonic(TEST_MNEMONIC, "").expect("valid");
        let hash = keccak256(b"sweep");
        for key in [
            KeyRef::Deposit {
                account: 3,
                index: 7,
            },
            KeyRef::GasTank,
        ] {
            let sig = w.sign_digest(key, &hash).expect("signs");
            let recovered = sig.recover_address_from_prehash(&hash).expect("recovers");
            assert_eq!(recovered, w.key_address(key).expect("address"));
        }
        assert_ne!(
            w.key_address(KeyRef::GasTank).ok(),
            w.key_address(KeyRef::Deposit {
                account: 0,
                index: 0
            })
            .ok()
        );
    }

    #[test]
    fn addresses_from_account_public_keys_match_the_private_derivation() {
        let w = HdWallet::from_mnemonic(TEST_MNEMONIC, "").expect("valid");
        let watch = WatchOnly::new();
        assert!(watch.deposit_address(0, 0).is_none(), "unknown account");
        for account in [0u32, 1, 5, 40_000] {
            let xpub = w.account_xpub(account).expect("xpub");
            assert!(xpub.starts_with("xpub"));
            watch.learn(account, &xpub).expect("learns");
            for index in (0..10).chain([999, 1 << 30]) {
                let by_key = w.signing_key(account, index).expect("derive");
                let signer = PrivateKeySigner::from_slice(&by_key[..]).expect("key");
                assert_eq!(
                    watch
                        .deposit_address(account, index)
                        .expect("known")
                        .expect("derives"),
                    signer.address(),
                    "account {account}, index {index}"
                );
            }
        }
        // Account 0 of the test mnemonic: anvil's first accounts, from the public key alone.
        assert_eq!(
            watch
                .deposit_address(0, 0)
                .expect("known")
                .expect("derives")
                .to_checksum(None),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
        // Only an account's external chain (depth 4) is accepted.
        let root = XPrv::new([7u8; 64])
            .expect("key")
            .public_key()
            .to_string(bip32::Prefix::XPUB);
        assert!(matches!(
            watch.learn(9, &root),
            Err(WalletError::BadXpub(_))
        ));
        assert!(watch.learn(9, "xpub-nonsense").is_err());
    }

    #[test]
    fn generated_mnemonics_are_valid() {
        let m = HdWallet::generate_mnemonic();
        assert!(HdWallet::from_mnemonic(&m, "").is_ok());
    }
}
