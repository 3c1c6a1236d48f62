//! When the next attempt is due, and when to give up: pure arithmetic on times, unit-tested
//! without a database. Never reads a clock.

use std::time::Duration;

use crate::clock::dur_ms;

/// The retry schedule. Defaults are near Postfix's (`minimal_backoff_time` 300 s,
/// `maximal_backoff_time` 4000 s, `maximal_queue_lifetime` 5 d).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failed try; doubled after each further one. Default 5 minutes.
    pub first_backoff: Duration,
    /// The longest wait between tries. Default 1 hour.
    pub max_backoff: Duration,
    /// How long an email is tried before it is `failed`, unless its submission says otherwise.
    /// Default 5 days.
    pub lifetime: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first_backoff: Duration::from_secs(5 * 60),
            max_backoff: Duration::from_secs(60 * 60),
            lifetime: Duration::from_secs(5 * 24 * 60 * 60),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th failed try (1-based): `first_backoff · 2^(failures-1)`,
    /// at most `max_backoff`, at least one second (so a flush never meets the same email twice).
    pub fn backoff(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(32);
        let wait = self
            .first_backoff
            .checked_mul(1u32 << shift.min(31))
            .unwrap_or(self.max_backoff);
        wait.min(self.max_backoff).max(Duration::from_secs(1))
    }
}

/// What follows a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Queued again, due at this time (ms).
    RetryAt(i64),
    /// Past the lifetime, or the server's Retry-After falls past it: `failed`.
    GiveUp,
}

/// The next attempt after the `failures`-th failed try at `now`, for an email that expires at
/// `expires_at` (all in ms since the epoch).
///
/// The wait is the backoff, never shorter than `retry_after`. A wait that ends past the lifetime
/// is cut to the end of the lifetime (one last try then), unless it is the server's Retry-After
/// that reaches past it: then the email gives up now, as it would at that last try.
pub(crate) fn next_attempt(
    policy: &RetryPolicy,
    failures: u32,
    now: i64,
    expires_at: i64,
    retry_after: Option<Duration>,
) -> Next {
    if now >= expires_at {
        return Next::GiveUp;
    }
    let floor = retry_after.map(dur_ms).unwrap_or(0);
    if now.saturating_add(floor) > expires_at {
        return Next::GiveUp;
    }
    let wait = dur_ms(policy.backoff(failures)).max(floor);
    Next::RetryAt(now.saturating_add(wait).min(expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;

    #[test]
    fn backoff_starts_at_five_minutes_and_doubles_to_an_hour() {
        let p = RetryPolicy::default();
        let waits: Vec<u64> = (1..=8).map(|n| p.backoff(n).as_secs() / MIN).collect();
        assert_eq!(waits, [5, 10, 20, 40, 60, 60, 60, 60]);
        assert_eq!(p.backoff(1000), Duration::from_secs(3600));
    }

    #[test]
    fn retry_after_is_a_floor_never_a_ceiling() {
        let p = RetryPolicy::default();
        let day = 86_400_000;
        // shorter than the backoff: the backoff wins
        assert_eq!(
            next_attempt(&p, 1, 0, day, Some(Duration::from_secs(10))),
            Next::RetryAt(300_000)
        );
        // longer: the server's Retry-After wins
        assert_eq!(
            next_attempt(&p, 1, 0, day, Some(Duration::from_secs(900))),
            Next::RetryAt(900_000)
        );
    }

    #[test]
    fn a_wait_past_the_lifetime_is_one_last_try_at_its_end() {
        let p = RetryPolicy::default();
        assert_eq!(next_attempt(&p, 5, 0, 60_000, None), Next::RetryAt(60_000));
        assert_eq!(next_attempt(&p, 5, 60_000, 60_000, None), Next::GiveUp);
    }

    #[test]
    fn a_retry_after_past_the_lifetime_gives_up_now() {
        let p = RetryPolicy::default();
        assert_eq!(
            next_attempt(&p, 1, 0, 60_000, Some(Duration::from_secs(120))),
            Next::GiveUp
        );
    }
}
