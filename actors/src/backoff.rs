//! Exponential backoff with jitter, after Akka's `BackoffSupervisor`:
//! `delay = min(max, min × 2^n) × (1 + U[0,1) × random_factor)`. Jitter is applied after the
//! cap, so a delay lies in `[min(max, min×2^n), min(max, min×2^n) × (1 + random_factor)]`.

use std::time::Duration;

/// Restart delay policy for one child.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first restart.
    pub min: Duration,
    /// Cap before jitter.
    pub max: Duration,
    /// Jitter fraction, e.g. 0.2 adds up to 20 %.
    pub random_factor: f64,
    /// A child that stays up this long has its restart count reset.
    pub reset_after: Duration,
}

impl Backoff {
    /// A backoff from `min` to `max` with 20 % jitter, reset after `max` of stability.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            random_factor: 0.2,
            reset_after: max,
        }
    }

    /// The un-jittered delay before restart number `restarts` (0 for the first restart).
    pub fn base_delay(&self, restarts: u32) -> Duration {
        if restarts >= 30 {
            return self.max;
        }
        self.min
            .checked_mul(1u32 << restarts)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay for restart number `restarts`, given a uniform sample `unit` in `[0, 1)`.
    pub fn delay_with(&self, restarts: u32, unit: f64) -> Duration {
        let jitter = 1.0 + unit.clamp(0.0, 1.0) * self.random_factor.max(0.0);
        self.base_delay(restarts).mul_f64(jitter)
    }

    /// The delay for restart number `restarts`, with random jitter.
    pub fn delay(&self, restarts: u32) -> Duration {
        self.delay_with(restarts, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_delay_lies_within_its_bounds() {
        let b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(10),
            random_factor: 0.5,
            reset_after: Duration::from_secs(30),
        };
        for n in 0..40 {
            let base = b.base_delay(n);
            assert!(base >= b.min && base <= b.max, "n={n} base={base:?}");
            for _ in 0..200 {
                let d = b.delay(n);
                assert!(d >= base, "n={n}: {d:?} < {base:?}");
                assert!(
                    d <= base.mul_f64(1.5),
                    "n={n}: {d:?} > {:?}",
                    base.mul_f64(1.5)
                );
            }
        }
        assert_eq!(b.base_delay(0), Duration::from_millis(100));
        assert_eq!(b.base_delay(3), Duration::from_millis(800));
        assert_eq!(b.base_delay(7), Duration::from_secs(10));
        assert_eq!(b.delay_with(0, 0.0), Duration::from_millis(100));
        assert_eq!(
            b.delay_with(7, 0.999_999),
            Duration::from_secs(10).mul_f64(1.0 + 0.999_999 * 0.5)
        );
    }
}
