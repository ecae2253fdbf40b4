//! Merchant API keys: `ck_live_` + 32 random base62 characters. Only a SHA-256 of the key is
//! stored; the first characters form a public prefix used to find the row.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every key starts with this.
pub const KEY_PREFIX: &str = "ck_live_";
const RANDOM_LEN: usize = 32;
/// How many characters (including `ck_live_`) form the lookup prefix.
pub const LOOKUP_PREFIX_LEN: usize = KEY_PREFIX.len() + 8;
const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A freshly generated key: shown once, then only its hash is kept.
pub struct NewApiKey {
    /// The full key, to print once.
    pub raw: String,
    /// The lookup prefix.
    pub prefix: String,
    /// SHA-256 of the full key.
    pub hash: [u8; 32],
}

/// Generates a new random key.
pub fn generate() -> NewApiKey {
    let mut rng = rand::rng();
    let random: String = (0..RANDOM_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let raw = format!("{KEY_PREFIX}{random}");
    let prefix = raw[..LOOKUP_PREFIX_LEN].to_string();
    let hash = hash_key(&raw);
    NewApiKey { raw, prefix, hash }
}

/// SHA-256 of a presented key.
pub fn hash_key(raw: &str) -> [u8; 32] {
    Sha256::digest(raw.as_bytes()).into()
}

/// The lookup prefix of a presented key, or `None` when it cannot be one of ours.
pub fn lookup_prefix(raw: &str) -> Option<&str> {
    let ok = raw.len() == KEY_PREFIX.len() + RANDOM_LEN
        && raw.starts_with(KEY_PREFIX)
        && raw[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric());
    ok.then(|| &raw[..LOOKUP_PREFIX_LEN])
}

/// Compares a presented key with a stored hash in constant time.
pub fn verify(raw: &str, stored_hash: &[u8]) -> bool {
    hash_key(raw).ct_eq(stored_hash).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_verify_and_have_a_prefix() {
        let k = generate();
        assert!(k.raw.starts_with("ck_live_"));
        assert_eq!(lookup_prefix(&k.raw), Some(k.prefix.as_str()));
        assert!(verify(&k.raw, &k.hash));
        let other = generate();
        assert!(!verify(&other.raw, &k.hash));
        assert_ne!(k.raw, other.raw);
    }

    #[test]
    fn malformed_keys_have_no_prefix() {
        assert_eq!(lookup_prefix(""), None);
        assert_eq!(lookup_prefix("ck_live_short"), None);
        assert_eq!(lookup_prefix(&format!("ck_test_{}", "a".repeat(32))), None);
        assert_eq!(lookup_prefix(&format!("ck_live_{}!", "a".repeat(31))), None);
    }
}
