//! A circuit breaker per connector: after repeated failures the backend is given a rest, and
//! only single probe calls test whether it has recovered (BAD_INPUTS row 49).
//!
//! Time is tokio's clock, so tests drive it with paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::BreakerConfig;
use crate::metrics::{BreakerState, Metrics};

/// How a call that was let through ended, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The backend answered (an entity's absence or a rejected argument is an answer).
    Healthy,
    /// The backend is failing: unreachable, timed out, or a server error.
    Failing,
    /// Says nothing about the backend (the call never reached it).
    Neutral,
}

#[derive(Debug)]
enum State {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool, successes: u32 },
}

/// The breaker of one connector.
#[derive(Debug)]
pub(crate) struct Breaker {
    connector: String,
    config: BreakerConfig,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

/// Leave to call the backend; a probe reports back even when its call is dropped.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    breaker: &'a Breaker,
    probe: bool,
    reported: bool,
}

impl Admission<'_> {
    /// Reports how the call ended.
    pub(crate) fn report(mut self, verdict: Verdict) {
        self.reported = true;
        self.breaker.record(self.probe, verdict);
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.record(self.probe, Verdict::Neutral);
        }
    }
}

impl Breaker {
    pub(crate) fn new(connector: &str, config: BreakerConfig, metrics: Arc<Metrics>) -> Self {
        metrics.breaker_state(connector, BreakerState::Closed);
        Self {
            connector: connector.to_string(),
            config,
            state: Mutex::new(State::Closed {
                consecutive_failures: 0,
            }),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open_for(&self) -> Duration {
        Duration::from_secs(self.config.open_s.max(1))
    }

    /// Lets a call through, or says how long until the next probe may go.
    pub(crate) fn admit(&self) -> Result<Admission<'_>, Duration> {
        let mut state = self.lock();
        let now = Instant::now();
        let probe = match &mut *state {
            State::Closed { .. } => false,
            State::Open { until } if now < *until => return Err(*until - now),
            State::Open { .. } => {
                *state = State::HalfOpen {
                    probing: true,
                    successes: 0,
                };
                self.metrics
                    .breaker_state(&self.connector, BreakerState::HalfOpen);
                true
            }
            State::HalfOpen { probing: true, .. } => return Err(Duration::from_secs(1)),
            State::HalfOpen { probing, .. } => {
                *probing = true;
                true
            }
        };
        Ok(Admission {
            breaker: self,
            probe,
            reported: false,
        })
    }

    fn record(&self, probe: bool, verdict: Verdict) {
        let mut state = self.lock();
        let next = match (&mut *state, probe, verdict) {
            (State::Closed { .. }, false, Verdict::Healthy) => Some(State::Closed {
                consecutive_failures: 0,
            }),
            (
                State::Closed {
                    consecutive_failures,
                },
                false,
                Verdict::Failing,
            ) => {
                *consecutive_failures += 1;
                (*consecutive_failures >= self.config.failures.max(1)).then(|| State::Open {
                    until: Instant::now() + self.open_for(),
                })
            }
            (State::HalfOpen { successes, .. }, true, Verdict::Healthy) => {
                *successes += 1;
                if *successes >= self.config.probes.max(1) {
                    Some(State::Closed {
                        consecutive_failures: 0,
                    })
                } else {
                    Some(State::HalfOpen {
                        probing: false,
                        successes: *successes,
                    })
                }
            }
            (State::HalfOpen { .. }, true, Verdict::Failing) => Some(State::Open {
                until: Instant::now() + self.open_for(),
            }),
            (State::HalfOpen { probing, .. }, true, Verdict::Neutral) => {
                *probing = false;
                None
            }
            // A call let through before the circuit opened says nothing new.
            _ => None,
        };
        if let Some(next) = next {
            let gauge = match next {
                State::Closed { .. } => BreakerState::Closed,
                State::Open { .. } => BreakerState::Open,
                State::HalfOpen { .. } => BreakerState::HalfOpen,
            };
            let changed = std::mem::discriminant(&*state) != std::mem::discriminant(&next);
            *state = next;
            if changed {
                if gauge == BreakerState::Open {
                    tracing::warn!(connector = %self.connector, open_s = self.config.open_s, "Circuit opened: the backend keeps failing.");
                } else if gauge == BreakerState::Closed {
                    tracing::info!(connector = %self.connector, "Circuit closed: the backend answers again.");
                }
                self.metrics.breaker_state(&self.connector, gauge);
            }
        }
    }

    /// Whether calls are currently refused.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        matches!(*self.lock(), State::Open { until } if Instant::now() < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            "ui",
            BreakerConfig {
                failures: 5,
                open_s: 30,
                probes: 3,
            },
            Arc::new(Metrics::new()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_closes_after_good_probes() {
        let breaker = breaker();
        for _ in 0..4 {
            breaker.admit().unwrap().report(Verdict::Failing);
        }
        // A success resets the count: failures must be consecutive.
        breaker.admit().unwrap().report(Verdict::Healthy);
        for _ in 0..5 {
            breaker.admit().unwrap().report(Verdict::Failing);
        }
        assert!(breaker.is_open());
        let wait = breaker.admit().expect_err("open");
        assert_eq!(wait, Duration::from_secs(30));

        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(breaker.admit().is_err(), "still open after 29 s");
        tokio::time::advance(Duration::from_secs(1)).await;
        // One probe at a time.
        let probe = breaker.admit().expect("a probe goes through");
        assert!(
            breaker.admit().is_err(),
            "a second caller waits for the probe"
        );
        probe.report(Verdict::Healthy);
        breaker.admit().unwrap().report(Verdict::Healthy);
        assert!(breaker.admit().is_ok(), "third probe");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_the_circuit_for_another_full_period() {
        let breaker = breaker();
        for _ in 0..5 {
            breaker.admit().unwrap().report(Verdict::Failing);
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        breaker.admit().unwrap().report(Verdict::Failing);
        assert_eq!(
            breaker.admit().expect_err("open again"),
            Duration::from_secs(30)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_frees_the_probe_slot() {
        let breaker = breaker();
        for _ in 0..5 {
            breaker.admit().unwrap().report(Verdict::Failing);
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        drop(breaker.admit().expect("probe"));
        assert!(breaker.admit().is_ok(), "the next caller may probe");
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_failing_for_a_minute_is_probed_at_most_once_per_period() {
        // BAD_INPUTS row 49: 500s for 60 s, then recovery.
        let breaker = breaker();
        let (mut calls, mut probes) = (0, 0);
        let start = Instant::now();
        while Instant::now() - start < Duration::from_secs(60) {
            if let Ok(admission) = breaker.admit() {
                calls += 1;
                if admission.probe {
                    probes += 1;
                }
                admission.report(Verdict::Failing);
            }
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        assert!(calls <= 20, "opened within 20 calls: {calls}");
        assert!(probes <= 2, "≤ 1 probe per 30 s: {probes}");
        tokio::time::advance(Duration::from_secs(30)).await;
        for _ in 0..3 {
            breaker.admit().unwrap().report(Verdict::Healthy);
        }
        assert!(!breaker.is_open());
        assert!(
            !breaker.admit().unwrap().probe,
            "closed: ordinary calls again"
        );
    }
}
