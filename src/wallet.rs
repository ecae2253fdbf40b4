//! The HD wallet: BIP-39 seed, BIP-32 derivation at `m/44'/60'/{account}'/0/{index}`.
//!
//! Two kinds of keys come from the seed: deposit keys (one per payment, under the
//! merchant's account) and the gas tank, which pays sweep gas on every chain from
//! `m/44'/60'/2147483647'/0/0`. That account is the largest hardened one; merchant accounts
//! come from a sequence the database keeps below it, so the tank never shares a key with a
//! merchant.
//!
//! Everything that signs goes through [`Signer`]: a separate signer process can take over
//! by implementing it, without the sweeper changing.
//!
//! Deposit addresses need only public derivation below the account's external chain
//! (`m/44'/60'/{account}'/0`), so that extended public key is derived once per account and
//! cached; a new address then costs one non-hardened child derivation. The seed is kept in
//! zeroizing memory and is never logged or returned.

use std::collections::HashMap;
use std::sync::RwLock;

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
}

/// The BIP-44 account of the gas tank (the largest hardened account).
pub const GAS_TANK_ACCOUNT: u32 = 0x7fff_ffff;

/// A key the gateway signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The one seam every signature goes through (sweep transactions, and later EIP-7702
/// authorizations). Implementations never expose key material.
pub trait Signer: Send + Sync {
    /// The address of `key`.
    fn address(&self, key: KeyRef) -> Result<Address, WalletError>;
    /// Signs a 32-byte digest (a transaction's or an authorization's signing hash).
    fn sign_hash(&self, key: KeyRef, hash: &B256) -> Result<Signature, WalletError>;
}

impl Signer for HdWallet {
    fn address(&self, key: KeyRef) -> Result<Address, WalletError> {
        match key {
            KeyRef::Deposit { account, index } => self.deposit_address(account, index),
            KeyRef::GasTank => self.deposit_address(GAS_TANK_ACCOUNT, 0),
        }
    }

    fn sign_hash(&self, key: KeyRef, hash: &B256) -> Result<Signature, WalletError> {
        let secret = match key {
            KeyRef::Deposit { account, index } => self.signing_key(account, index)?,
            KeyRef::GasTank => self.signing_key(GAS_TANK_ACCOUNT, 0)?,
        };
        let signer = PrivateKeySigner::from_slice(&secret[..]).map_err(|_| WalletError::Signing)?;
        signer
            .sign_hash_sync(hash)
            .map_err(|_| WalletError::Signing)
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
            let sig = w.sign_hash(key, &hash).expect("signs");
            let recovered = sig.recover_address_from_prehash(&hash).expect("recovers");
            assert_eq!(recovered, w.address(key).expect("address"));
        }
        assert_ne!(
            w.address(KeyRef::GasTank).ok(),
            w.address(KeyRef::Deposit {
                account: 0,
                index: 0
            })
            .ok()
        );
    }

    #[test]
    fn generated_mnemonics_are_valid() {
        let m = HdWallet::generate_mnemonic();
        assert!(HdWallet::from_mnemonic(&m, "").is_ok());
    }
}
