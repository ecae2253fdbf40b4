//! Custody: who holds the keys and what they sign.
//!
//! With `signer.socket` set, the gateway (API and chain workers) holds no private key: it
//! derives deposit addresses from account extended public keys ([`addresses`]) and asks a
//! separate `ctrip signer` ([`server`]) for every signature over its socket ([`remote`]).
//! Without it, the gateway signs in-process ([`local`]). Either way every signature passes
//! the same [`policy`] first.

pub mod addresses;
pub mod local;
pub mod policy;
pub mod protocol;
pub mod remote;
pub mod server;
