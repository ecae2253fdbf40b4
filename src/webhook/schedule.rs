//! Retry timing: the contract's schedule (about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h,
//! 20 h, 24 h) with ±20 % jitter, and `Retry-After` honoured (capped at 24 h).

use std::time::Duration;

/// The default schedule, in seconds: the delay after attempt 1, 2, ...
pub const DEFAULT_SCHEDULE_SECONDS: [u64; 9] =
    [5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 86_400];

/// The longest delay a `Retry-After` may ask for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// The delay after `attempts` failed attempts, or `None` when the delivery is dead.
/// `unit` is a uniform sample in `[0, 1)` for the jitter.
pub fn next_delay(
    schedule: &[Duration],
    attempts: u32,
    max_attempts: u32,
    unit: f64,
) -> Option<Duration> {
    if attempts >= max_attempts {
        return None;
    }
    let i = (attempts as usize).saturating_sub(1);
    let base = *schedule.get(i).or(schedule.last())?;
    Some(base.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0)))
}

/// Parses `Retry-After` (delay-seconds or an HTTP date).
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Vec<Duration> {
        DEFAULT_SCHEDULE_SECONDS
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect()
    }

    #[test]
    fn follows_the_schedule_with_jitter_then_dies() {
        let s = schedule();
        let d = next_delay(&s, 1, 10, 0.5).expect("retry");
        assert_eq!(d, Duration::from_secs(5));
        assert!(next_delay(&s, 1, 10, 0.0).expect("retry") >= Duration::from_secs(4));
        assert!(next_delay(&s, 1, 10, 0.999).expect("retry") <= Duration::from_secs(6));
        assert_eq!(
            next_delay(&s, 9, 10, 0.5),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(next_delay(&s, 10, 10, 0.5), None);
        assert_eq!(next_delay(&s, 3, 3, 0.5), None);
    }

    #[test]
    fn retry_after_forms() {
        let now = chrono::Utc::now();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("999999999", now), Some(MAX_RETRY_AFTER));
        let later = (now + chrono::Duration::seconds(90)).to_rfc2822();
        let d = parse_retry_after(&later, now).expect("date");
        assert!(d >= Duration::from_secs(89) && d <= Duration::from_secs(90));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
