//! Verified API keys, kept in memory so that authenticating a request costs no query.
//!
//! An entry is trusted only while this process is subscribed to key changes: every update
//! or deletion of a key row notifies all replicas at commit (a trigger on `api_keys`), and
//! the entry is dropped when its notice arrives. While the subscription is down nothing is
//! cached and every request reads its key. Entries also age out after
//! `server.api_key_cache_ttl_ms`, which bounds a revocation whose notice was somehow lost.
//!
//! A read that raced a revocation must not put the old row back after its notice was
//! handled: each change bumps a generation, and a row read under an older generation is
//! not stored.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use slog::Logger;
use uuid::Uuid;

use crate::store::listen::Notice;
use crate::store::Store;

/// The channel the `api_keys` trigger notifies, with the key's prefix as payload.
pub const CHANNEL: &str = "ctrip_api_keys";

/// Entries kept at most; past it the cache starts over (only keys that exist are
/// stored, so reaching it takes that many live keys in use).
const MAX_ENTRIES: usize = 100_000;

/// What authentication needs of a key row.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// SHA-256 of the key.
    pub key_hash: Vec<u8>,
    /// Owner.
    pub merchant_id: Uuid,
    /// Owner's BIP-44 account.
    pub account_index: u32,
    /// Whether the key was revoked (revocation is final, so this may be cached too).
    pub revoked: bool,
}

/// The answer of [`KeyCache::get`].
#[derive(Debug)]
pub enum Lookup {
    /// Trusted from memory.
    Hit(KeyEntry),
    /// Read the row; store it with [`KeyCache::put`] and this generation.
    Miss(Generation),
}

/// The cache's state when a read began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(Option<u64>);

struct Inner {
    entries: HashMap<String, (KeyEntry, Instant)>,
    /// Bumped by every change notice and every loss or gain of the subscription.
    generation: u64,
    /// Subscribed to key changes: only then is anything trusted from memory.
    listening: bool,
}

/// Verified keys by lookup prefix.
pub struct KeyCache {
    inner: RwLock<Inner>,
    ttl: Duration,
}

impl KeyCache {
    /// An empty cache trusting entries for `ttl` (zero disables it).
    pub fn new(ttl: Duration) -> Self {
        Self {
            inner: RwLock::new(Inner {
                entries: HashMap::new(),
                generation: 0,
                listening: false,
            }),
            ttl,
        }
    }

    /// Whether entries are trusted at all (the subscription is up and the TTL non-zero).
    pub fn active(&self) -> bool {
        !self.ttl.is_zero() && self.read().listening
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry for `prefix` when it may be trusted now.
    pub fn get(&self, prefix: &str) -> Lookup {
        let inner = self.read();
        if !inner.listening || self.ttl.is_zero() {
            return Lookup::Miss(Generation(None));
        }
        match inner.entries.get(prefix) {
            Some((e, at)) if at.elapsed() < self.ttl => Lookup::Hit(e.clone()),
            _ => Lookup::Miss(Generation(Some(inner.generation))),
        }
    }

    /// Stores a row read after [`KeyCache::get`] answered `Miss(generation)`, unless a
    /// change arrived in between.
    pub fn put(&self, prefix: &str, entry: KeyEntry, generation: Generation) {
        let mut inner = self.write();
        if !inner.listening || generation.0 != Some(inner.generation) {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner
            .entries
            .insert(prefix.to_string(), (entry, Instant::now()));
    }

    /// A key row changed: forget it.
    pub fn invalidate(&self, prefix: &str) {
        let mut inner = self.write();
        inner.generation += 1;
        inner.entries.remove(prefix);
    }

    /// The subscription is up: start trusting from here. Notices sent while it was down
    /// are lost, so whatever was cached before is dropped.
    pub fn subscribed(&self) {
        let mut inner = self.write();
        inner.generation += 1;
        inner.entries.clear();
        inner.listening = true;
    }

    /// The subscription is down: trust nothing until it is back.
    pub fn unsubscribed(&self) {
        let mut inner = self.write();
        inner.generation += 1;
        inner.entries.clear();
        inner.listening = false;
    }

    /// Entries held (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keeps `cache` subscribed to key changes until the task is dropped: on a lost session
/// it stops trusting the cache, then reconnects with a backoff (0.1 s doubling to 5 s).
pub async fn follow_changes(store: Store, cache: Arc<KeyCache>, log: Logger) {
    if cache.ttl.is_zero() {
        return;
    }
    let ping = (cache.ttl / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
    store
        .follow(
            CHANNEL,
            ping,
            |n| match n {
                Notice::Listening => cache.subscribed(),
                Notice::Payload(prefix) => cache.invalidate(&prefix),
            },
            |e| {
                cache.unsubscribed();
                slog::warn!(log, "API key change subscription lost; keys are read per request until it is back";
                    "error" => %e);
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> KeyEntry {
        KeyEntry {
            key_hash: vec![1; 32],
            merchant_id: Uuid::nil(),
            account_index: 0,
            revoked: false,
        }
    }

    fn generation(c: &KeyCache, prefix: &str) -> Generation {
        match c.get(prefix) {
            Lookup::Miss(g) => g,
            Lookup::Hit(_) => panic!("expected a miss"),
        }
    }

    #[test]
    fn nothing_is_trusted_until_subscribed() {
        let c = KeyCache::new(Duration::from_secs(60));
        let g = generation(&c, "p");
        c.put("p", entry(), g);
        assert!(matches!(c.get("p"), Lookup::Miss(_)));
        c.subscribed();
        let g = generation(&c, "p");
        c.put("p", entry(), g);
        assert!(matches!(c.get("p"), Lookup::Hit(_)));
        c.unsubscribed();
        assert!(matches!(c.get("p"), Lookup::Miss(_)));
        assert!(c.is_empty());
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_stored() {
        let c = KeyCache::new(Duration::from_secs(60));
        c.subscribed();
        let g = generation(&c, "p");
        // The revocation's notice arrives while the row (read before the commit) is in
        // flight.
        c.invalidate("p");
        c.put("p", entry(), g);
        assert!(matches!(c.get("p"), Lookup::Miss(_)));
    }

    #[test]
    fn a_change_drops_only_its_key_and_a_zero_ttl_caches_nothing() {
        let c = KeyCache::new(Duration::from_secs(60));
        c.subscribed();
        for p in ["a", "b"] {
            let g = generation(&c, p);
            c.put(p, entry(), g);
        }
        c.invalidate("a");
        assert!(matches!(c.get("a"), Lookup::Miss(_)));
        assert!(matches!(c.get("b"), Lookup::Hit(_)));

        let off = KeyCache::new(Duration::ZERO);
        off.subscribed();
        let g = generation(&off, "a");
        off.put("a", entry(), g);
        assert!(matches!(off.get("a"), Lookup::Miss(_)));
    }

    #[test]
    fn entries_age_out() {
        let c = KeyCache::new(Duration::from_nanos(1));
        c.subscribed();
        let g = generation(&c, "a");
        c.put("a", entry(), g);
        std::thread::yield_now();
        // One nanosecond has passed by the time the entry is read.
        assert!(matches!(c.get("a"), Lookup::Miss(_)));
    }
}
