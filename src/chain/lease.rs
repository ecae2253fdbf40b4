//! Chain leadership. Each replica runs one lease keeper per chain; the replica holding the
//! chain's lease runs its scanner, confirmer and sweeper, the others keep them on standby
//! (their ticks do nothing) and take over when the lease lapses.
//!
//! A leader trusts its term only until `ttl - margin` after the start of its last
//! successful renewal, by its own monotonic clock: past that, its workers stand by even
//! if the database still shows it as holder, so they stop before the lease can expire.
//! Their writes are fenced as well (the connection carries the term's token and the
//! database refuses a stale one), so a paused leader that wakes up after a takeover
//! cannot write anything.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use slog::Logger;

use super::metrics::ChainMetrics;
use super::TickError;
use crate::store::leases::{self, fence_value};
use crate::store::{Fence, Store};
use crate::worker::{Gate, Work};

/// The timing of chain leases.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// How long a term lasts unless renewed.
    pub ttl: Duration,
    /// How often a leader renews.
    pub renew_every: Duration,
    /// How often a replica without the lease tries to take it.
    pub poll_every: Duration,
}

impl LeaseTiming {
    /// How long a renewal is trusted: the term minus a safety margin (a fifth of it, at
    /// least one renewal interval), so the workers stand by before the lease can lapse.
    pub fn trust(&self) -> Duration {
        let margin = (self.ttl / 5).max(self.renew_every);
        self.ttl.saturating_sub(margin)
    }
}

#[derive(Debug, Default)]
struct Term {
    token: Option<i64>,
    trusted_until: Option<Instant>,
    since: Option<Instant>,
    /// A worker's write was refused under this term: it is over, whatever the clock says.
    refused: bool,
}

/// One chain's leadership as this replica sees it; the chain's workers are gated on it.
#[derive(Clone)]
pub struct Leadership {
    lease: String,
    holder: String,
    term: Arc<RwLock<Term>>,
    fence: Fence,
    /// Counts writes the fence refused (`ctrip_chain_fenced_writes_total`).
    refusals: Option<prometheus::IntCounter>,
}

impl Leadership {
    /// This replica's view of `chain`'s lease, starting as a follower.
    pub fn new(chain: &str, holder: &str) -> Self {
        let lease = format!("chain:{chain}");
        let fence = Fence::new(fence_value(&lease, None));
        Self {
            lease,
            holder: holder.to_string(),
            term: Arc::default(),
            fence,
            refusals: None,
        }
    }

    /// Counts the writes the fence refuses into `counter`.
    pub fn counting_refusals(mut self, counter: prometheus::IntCounter) -> Self {
        self.refusals = Some(counter);
        self
    }

    /// The lease's name (`chain:<name>`).
    pub fn lease(&self) -> &str {
        &self.lease
    }

    /// The fence the chain workers' connections carry.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// The token of the current term, while it is trusted.
    pub fn token(&self) -> Option<i64> {
        let t = self.term.read().unwrap_or_else(|p| p.into_inner());
        match (t.token, t.trusted_until) {
            (Some(tok), Some(until)) if !t.refused && Instant::now() < until => Some(tok),
            _ => None,
        }
    }

    fn set(&self, token: Option<i64>, trusted_until: Option<Instant>) {
        let mut t = self.term.write().unwrap_or_else(|p| p.into_inner());
        if token != t.token {
            t.since = token.map(|_| Instant::now());
        }
        t.token = token;
        t.trusted_until = trusted_until;
        t.refused = false;
        self.fence.set(fence_value(&self.lease, token));
    }

    fn held_token(&self) -> Option<i64> {
        self.term.read().unwrap_or_else(|p| p.into_inner()).token
    }

    fn was_refused(&self) -> bool {
        self.term.read().unwrap_or_else(|p| p.into_inner()).refused
    }
}

impl Gate for Leadership {
    fn open(&self) -> bool {
        self.token().is_some()
    }

    fn refused(&self) {
        self.term.write().unwrap_or_else(|p| p.into_inner()).refused = true;
        if let Some(c) = &self.refusals {
            c.inc();
        }
    }
}

/// Takes, renews and releases one chain's lease.
pub struct LeaseKeeper {
    chain: String,
    /// How many chains the configuration has (for the fair share).
    chains: usize,
    leadership: Leadership,
    store: Store,
    timing: LeaseTiming,
    metrics: ChainMetrics,
    log: Logger,
}

impl LeaseKeeper {
    /// A keeper for `leadership`, writing the lease through `store` (an unfenced pool).
    pub fn new(
        chain: &str,
        chains: usize,
        leadership: Leadership,
        store: Store,
        timing: LeaseTiming,
        metrics: ChainMetrics,
        log: Logger,
    ) -> Self {
        Self {
            chain: chain.to_string(),
            chains,
            leadership,
            store,
            timing,
            metrics,
            log,
        }
    }

    fn demote(&self, why: &'static str) {
        self.leadership.set(None, None);
        self.metrics
            .lease_leader
            .with_label_values(&[self.chain.as_str()])
            .set(0);
        slog::warn!(self.log, "chain lease lost; workers stand by"; "reason" => why);
    }

    /// One renewal or takeover attempt. Chains spread: a replica takes a free lease only
    /// while it leads fewer than its fair share of the chains, and gives up its last
    /// lease (by name) while it leads more, so a replica that starts later gets chains.
    pub async fn keep_once(&mut self) -> Result<(), TickError> {
        let started = Instant::now();
        let (mine, live) = {
            let client = self.store.client().await?;
            leases::share(&client, &self.leadership.holder, self.timing.ttl).await?
        };
        let fair = leases::fair_share(self.chains, live);
        let l = &self.leadership;
        if l.held_token().is_some()
            && mine.len() > fair
            && mine.last().map(String::as_str) == Some(l.lease.as_str())
        {
            slog::info!(self.log, "giving the chain up to spread chains over replicas";
                "leading" => mine.len(), "fair_share" => fair, "replicas" => live);
            self.release().await;
            return Ok(());
        }
        let l = &self.leadership;
        if let Some(token) = l.held_token() {
            if l.was_refused() {
                self.demote("a write was refused by the fence");
            } else if l.token().is_none() {
                self.demote("not renewed within the trust window");
            } else {
                let client = self.store.client().await?;
                match leases::renew(&client, &l.lease, &l.holder, token, self.timing.ttl).await {
                    Ok(true) => {
                        l.set(Some(token), Some(started + self.timing.trust()));
                        return Ok(());
                    }
                    Ok(false) => self.demote("taken over or lapsed"),
                    // Keep the term while it is trusted; the next tick tries again.
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if mine.len() >= fair {
            return Ok(());
        }
        let client = self.store.client().await?;
        if let Some(token) = leases::acquire(&client, &l.lease, &l.holder, self.timing.ttl).await? {
            l.set(Some(token), Some(started + self.timing.trust()));
            let chain = self.chain.as_str();
            self.metrics.lease_leader.with_label_values(&[chain]).set(1);
            self.metrics
                .lease_takeovers
                .with_label_values(&[chain])
                .inc();
            slog::info!(self.log, "chain lease taken; workers run here"; "token" => token);
        }
        Ok(())
    }

    /// Gives the lease up (on shutdown) so another replica takes over at once.
    pub async fn release(&mut self) {
        let l = &self.leadership;
        let Some(token) = l.held_token() else {
            return;
        };
        l.set(None, None);
        self.metrics
            .lease_leader
            .with_label_values(&[self.chain.as_str()])
            .set(0);
        if let Ok(c) = self.store.client().await {
            if let Ok(true) = leases::release(&c, &l.lease, &l.holder, token).await {
                slog::info!(self.log, "chain lease released"; "token" => token);
            }
        }
    }
}

impl Work for LeaseKeeper {
    type Error = TickError;

    fn interval(&self) -> Duration {
        if self.leadership.held_token().is_some() {
            self.timing.renew_every
        } else {
            self.timing.poll_every
        }
    }

    async fn tick_once(&mut self) -> Result<(), TickError> {
        self.keep_once().await
    }

    async fn stop(&mut self) {
        self.release().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_is_trusted_for_less_than_the_term() {
        let t = LeaseTiming {
            ttl: Duration::from_secs(10),
            renew_every: Duration::from_secs(2),
            poll_every: Duration::from_millis(500),
        };
        assert_eq!(t.trust(), Duration::from_secs(8));
        let slow = LeaseTiming {
            renew_every: Duration::from_secs(4),
            ..t
        };
        assert_eq!(slow.trust(), Duration::from_secs(6));
    }
}
