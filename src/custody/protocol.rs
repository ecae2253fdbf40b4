//! The signer's wire protocol: one JSON object per line over a Unix socket, each request
//! answered by one line with the same `id`. Requests name what is to be signed in full
//! (the transaction or authorization), so the signer can check it against its policy.

use alloy::eips::eip7702::Authorization;
use alloy::primitives::{Address, Signature};
use serde::{Deserialize, Serialize};

use crate::wallet::{KeyRef, UnsignedTx};

/// The longest request line a signer reads (a batch of twenty authorizations is far less).
pub const MAX_LINE: usize = 256 * 1024;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The address of a key.
    Address {
        /// The key.
        key: KeyRef,
    },
    /// The extended public key of an account's external chain.
    AccountXpub {
        /// The account.
        account: u32,
    },
    /// Sign a transaction.
    SignTransaction {
        /// The signing key.
        key: KeyRef,
        /// The transaction.
        tx: UnsignedTx,
        /// The key behind the recipient, when it is one of ours (a gas seed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recipient: Option<KeyRef>,
    },
    /// Sign an EIP-7702 authorization.
    SignAuthorization {
        /// The signing key.
        key: KeyRef,
        /// The authorization.
        auth: Authorization,
    },
    /// Whether the signer is up, and which chains it signs for.
    Health,
}

impl Request {
    /// The operation's name, for metrics and the audit log.
    pub fn op(&self) -> &'static str {
        match self {
            Self::Address { .. } => "address",
            Self::AccountXpub { .. } => "account_xpub",
            Self::SignTransaction { .. } => "sign_transaction",
            Self::SignAuthorization { .. } => "sign_authorization",
            Self::Health => "health",
        }
    }
}

/// A request with its id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    /// Echoed in the answer.
    pub id: u64,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// The signer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// An address.
    Address(Address),
    /// An extended public key.
    Xpub(String),
    /// A signature.
    Signature(Signature),
    /// Up, signing for these chain ids.
    Healthy(Vec<u64>),
    /// The policy refused; the reason names the rule.
    Refused(String),
    /// The request could not be served (malformed, or a derivation failed).
    Error(String),
}

/// An answer with the id of its request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id (0 when the request could not be read).
    pub id: u64,
    /// The answer.
    #[serde(flatten)]
    pub answer: Answer,
}
