//! Restart intensity (OTP's MaxR within MaxT): more than `max_restarts` restarts within
//! `window` is a meltdown, which the supervisor escalates to its parent.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeltdownLimit {
    /// Restarts tolerated within the window.
    pub max_restarts: usize,
    /// The sliding window.
    pub window: Duration,
}

/// Sliding log of restart times.
#[derive(Debug, Default, Clone)]
pub struct MeltdownTracker {
    log: VecDeque<Instant>,
}

impl MeltdownTracker {
    /// Records a restart at `now`; returns true when the limit is exceeded.
    pub fn record(&mut self, limit: &MeltdownLimit, now: Instant) -> bool {
        self.log.push_back(now);
        while let Some(first) = self.log.front() {
            if now.duration_since(*first) >= limit.window {
                self.log.pop_front();
            } else {
                break;
            }
        }
        self.log.len() > limit.max_restarts
    }

    /// Restarts currently inside the window (as of the last record).
    pub fn len(&self) -> usize {
        self.log.len()
    }

    /// Whether no restart is inside the window.
    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn more_than_n_in_the_window_is_a_meltdown() {
        let limit = MeltdownLimit {
            max_restarts: 3,
            window: Duration::from_secs(10),
        };
        let mut t = MeltdownTracker::default();
        let start = Instant::now();
        assert!(!t.record(&limit, start));
        assert!(!t.record(&limit, start + Duration::from_secs(1)));
        assert!(!t.record(&limit, start + Duration::from_secs(2)));
        assert!(t.record(&limit, start + Duration::from_secs(3)));
        // Spread out beyond the window, the same count is fine.
        let mut t = MeltdownTracker::default();
        for i in 0..10 {
            assert!(!t.record(&limit, start + Duration::from_secs(4 * i)));
        }
        assert!(t.len() <= 3);
    }
}
