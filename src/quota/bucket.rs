//! A token bucket: a sustained rate with room for a burst, and how long until a refused
//! amount would fit. Time is passed in, so the arithmetic is tested without sleeping.
//!
//! Hand-written rather than `governor`: a charge here takes a variable amount from two
//! buckets at once (requests and cost) and must take from neither when one is short, and
//! each caller has its own rates; that is a dozen lines on top of this, but awkward with a
//! keyed limiter of one fixed quota.

use std::time::{Duration, Instant};

/// A rate in units per second and the most units that can accumulate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rate {
    pub(crate) per_s: f64,
    pub(crate) capacity: f64,
}

impl Rate {
    /// `per_s` with a burst of `burst` (0: one second's worth); `None` when `per_s` is 0,
    /// which means no limit.
    pub(crate) fn new(per_s: u32, burst: u32) -> Option<Self> {
        (per_s > 0).then(|| Self {
            per_s: f64::from(per_s),
            capacity: f64::from(if burst == 0 { per_s } else { burst }),
        })
    }

    /// How long a full refill takes: an idle bucket older than this is full again.
    pub(crate) fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(self.capacity / self.per_s)
    }
}

/// Units available now, refilled lazily at each look.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn full(rate: &Rate, now: Instant) -> Self {
        Self {
            tokens: rate.capacity,
            updated: now,
        }
    }

    fn refill(&mut self, rate: &Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_s).min(rate.capacity);
        self.updated = now;
    }

    /// `Ok` when `amount` is available now (nothing is taken yet); else how long until it
    /// will be. An amount above the capacity never fits: `Err(None)`.
    pub(crate) fn check(
        &mut self,
        rate: &Rate,
        amount: f64,
        now: Instant,
    ) -> Result<(), Option<Duration>> {
        self.refill(rate, now);
        if amount > rate.capacity {
            return Err(None);
        }
        if self.tokens >= amount {
            Ok(())
        } else {
            Err(Some(Duration::from_secs_f64(
                (amount - self.tokens) / rate.per_s,
            )))
        }
    }

    /// Takes `amount`, after a successful [`Bucket::check`] at the same `now`.
    pub(crate) fn take(&mut self, amount: f64) {
        self.tokens -= amount;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let rate = Rate::new(2, 4).expect("a limit");
        let start = Instant::now();
        let mut bucket = Bucket::full(&rate, start);
        for _ in 0..4 {
            assert_eq!(bucket.check(&rate, 1.0, start), Ok(()));
            bucket.take(1.0);
        }
        let wait = bucket.check(&rate, 1.0, start).unwrap_err().unwrap();
        assert_eq!(wait, Duration::from_millis(500));
        let later = start + Duration::from_millis(500);
        assert_eq!(bucket.check(&rate, 1.0, later), Ok(()));
        // Refill stops at the capacity however long the bucket was idle.
        let much_later = start + Duration::from_secs(3600);
        assert_eq!(bucket.check(&rate, 4.0, much_later), Ok(()));
        assert_eq!(bucket.check(&rate, 5.0, much_later), Err(None));
    }

    #[test]
    fn zero_means_no_limit_and_zero_burst_means_one_second() {
        assert_eq!(Rate::new(0, 10), None);
        let rate = Rate::new(3, 0).expect("a limit");
        assert_eq!(rate.capacity, 3.0);
        assert_eq!(rate.refill_time(), Duration::from_secs(1));
    }
}
