//! The retry budget: retries may add at most a fixed share of the calls made, so a failing
//! backend sees a storm shrink rather than triple (BAD_INPUTS row 51).

use std::sync::Mutex;
use std::time::Duration;

/// Tokens for retries, earned by first attempts.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    earn: f64,
    tokens: Mutex<f64>,
}

/// The most retries saved up, so a long quiet spell cannot fund a storm.
const MAX_TOKENS: f64 = 10.0;

impl RetryBudget {
    /// A budget where each call earns `percent` / 100 of a retry; one retry is available at
    /// start so a lone failed read is retried once.
    pub(crate) fn new(percent: f64) -> Self {
        Self {
            earn: (percent / 100.0).clamp(0.0, 1.0),
            tokens: Mutex::new(1.0f64.min(MAX_TOKENS)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, f64> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A first attempt was made.
    pub(crate) fn deposit(&self) {
        let mut tokens = self.lock();
        *tokens = (*tokens + self.earn).min(MAX_TOKENS);
    }

    /// Takes one retry from the budget, if there is one.
    pub(crate) fn withdraw(&self) -> bool {
        let mut tokens = self.lock();
        if self.earn > 0.0 && *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Full-jitter exponential backoff before retry number `retry` (1-based): a random wait
/// between zero and `base · 2^(retry-1)`, so callers that failed together do not return
/// together.
pub(crate) fn backoff(base: Duration, retry: u32) -> Duration {
    let ceiling = base.saturating_mul(1 << retry.saturating_sub(1).min(10));
    let mut bytes = [0u8; 8];
    // Randomness only spreads retries out; if the OS has none, wait the whole ceiling.
    if getrandom::getrandom(&mut bytes).is_err() {
        return ceiling;
    }
    let fraction = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
    ceiling.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stay_within_ten_percent_of_calls() {
        let budget = RetryBudget::new(10.0);
        let mut retries = 0;
        for _ in 0..1_000 {
            budget.deposit();
            if budget.withdraw() {
                retries += 1;
            }
        }
        assert!(retries <= 101, "{retries} retries for 1000 calls");
        assert!(retries >= 99, "the budget is spent: {retries}");
    }

    #[test]
    fn a_zero_budget_allows_no_retries() {
        let budget = RetryBudget::new(0.0);
        budget.deposit();
        assert!(!budget.withdraw());
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_ceiling() {
        let base = Duration::from_millis(25);
        for retry in 1..=2 {
            let ceiling = base * (1 << (retry - 1));
            let waits: Vec<_> = (0..50).map(|_| backoff(base, retry)).collect();
            assert!(waits.iter().all(|w| *w <= ceiling));
            assert!(waits.iter().any(|w| *w != waits[0]), "jittered");
        }
    }
}
