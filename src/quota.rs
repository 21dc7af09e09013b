//! Limits per caller, checked before an operation runs so a refused one costs no backend
//! call: a request rate and a cost budget (token buckets), the distinct-citizen cap of agency
//! clients, and load shedding when too many requests are in flight.
//!
//! Who is a "caller": an agency client by its token's `client_id`; a citizen by citizen id;
//! every anonymous caller together, in one shared bucket (behind a load balancer the peer
//! address would be the balancer's); operators are not limited. Every count lives in this
//! instance's memory, so with N instances a caller gets up to N times each limit.
//!
//! The cost charged is what [`Quotas::charge`] is given: over HTTP, the request limits' cost
//! estimate (`graph::limits::Estimate::cost`: fields, backend calls, list sizes).

mod bucket;
mod citizens;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Principal;
use crate::config::{Limits, QuotasConfig};
use crate::identity::CitizenId;
use crate::metrics::Metrics;

use bucket::{Bucket, Rate};
use citizens::CitizenCap;

/// Whose buckets a request draws from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CallerKey {
    Agency(String),
    Citizen(CitizenId),
    Anonymous,
}

/// One caller's two buckets, created full.
#[derive(Debug)]
struct Buckets {
    requests: Option<(Rate, Bucket)>,
    cost: Option<(Rate, Bucket)>,
}

/// Why a request may not run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Over the request rate or the cost budget: retry after this many seconds.
    Rate {
        /// Whole seconds, at least 1, for `Retry-After`.
        retry_after_s: u64,
    },
    /// The operation alone costs more than the caller's whole budget: retrying cannot help.
    TooCostly,
}

/// The request may run; holding it counts the request as in flight.
#[derive(Debug)]
pub struct InFlight(#[allow(dead_code, reason = "held for its drop")] Option<OwnedSemaphorePermit>);

/// The instance has `max_in_flight` requests under way: retry after `retry_after_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    /// For `Retry-After`.
    pub retry_after_s: u64,
}

/// An agency client over its distinct-citizen cap: retry when the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CitizenCapReached {
    /// Seconds until the client's window ends, at least 1.
    pub retry_after_s: u64,
}

/// Every caller's limits on this instance.
pub struct Quotas {
    config: QuotasConfig,
    in_flight: Option<Arc<Semaphore>>,
    /// Idle buckets are dropped once they would be full again, so memory follows the active
    /// callers, not every citizen who ever signed in.
    buckets: moka::sync::Cache<CallerKey, Arc<Mutex<Buckets>>>,
    citizens: Arc<CitizenCap>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas")
            .field("max_in_flight", &self.config.max_in_flight)
            .finish_non_exhaustive()
    }
}

/// The most callers whose buckets are kept at once (the least recently used go first, and
/// come back full).
const MAX_TRACKED_CALLERS: u64 = 100_000;

impl Quotas {
    /// Limits as `[quotas]` sets them; rejections are counted in `metrics`.
    pub fn new(config: &QuotasConfig, metrics: Arc<Metrics>) -> Self {
        let all = std::iter::once(&config.agency)
            .chain([&config.citizen, &config.anonymous])
            .copied()
            .chain(config.clients.values().map(|c| c.over(&config.agency)));
        let idle = all
            .flat_map(|limits| {
                [
                    Rate::new(limits.requests_per_s, limits.requests_burst),
                    Rate::new(limits.cost_per_s, limits.cost_burst),
                ]
            })
            .flatten()
            .map(|rate| rate.refill_time())
            .max()
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_secs(1));
        Self {
            in_flight: (config.max_in_flight > 0)
                .then(|| Arc::new(Semaphore::new(config.max_in_flight))),
            buckets: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED_CALLERS)
                .time_to_idle(idle)
                .build(),
            citizens: Arc::new(CitizenCap::default()),
            config: config.clone(),
            metrics,
        }
    }

    /// Counts a request as in flight, or sheds it at once when `max_in_flight` are.
    pub fn enter(&self) -> Result<InFlight, Overloaded> {
        let Some(semaphore) = &self.in_flight else {
            return Ok(InFlight(None));
        };
        match Arc::clone(semaphore).try_acquire_owned() {
            Ok(permit) => Ok(InFlight(Some(permit))),
            Err(_) => {
                self.metrics.request_rejected("overloaded");
                Err(Overloaded {
                    retry_after_s: self.config.overloaded_retry_after_s.max(1),
                })
            }
        }
    }

    fn limits(&self, principal: &Principal) -> Option<(CallerKey, Limits)> {
        match principal {
            Principal::Agency(client) => {
                let limits = match self.config.clients.get(&client.client_id) {
                    Some(own) => own.over(&self.config.agency),
                    None => self.config.agency,
                };
                Some((CallerKey::Agency(client.client_id.clone()), limits))
            }
            Principal::Citizen(citizen) => {
                Some((CallerKey::Citizen(citizen.clone()), self.config.citizen))
            }
            Principal::Anonymous => Some((CallerKey::Anonymous, self.config.anonymous)),
            Principal::Operator { .. } => None,
        }
    }

    /// Charges one request of `cost` units to the caller: both its request rate and its cost
    /// budget must have room, else neither is charged.
    pub fn charge(&self, principal: &Principal, cost: u64) -> Result<(), Limited> {
        self.charge_at(principal, cost, Instant::now())
    }

    fn charge_at(&self, principal: &Principal, cost: u64, now: Instant) -> Result<(), Limited> {
        let Some((key, limits)) = self.limits(principal) else {
            return Ok(());
        };
        let requests = Rate::new(limits.requests_per_s, limits.requests_burst);
        let budget = Rate::new(limits.cost_per_s, limits.cost_burst);
        if requests.is_none() && budget.is_none() {
            return Ok(());
        }
        let entry = self.buckets.get_with(key, || {
            Arc::new(Mutex::new(Buckets {
                requests: requests.map(|rate| (rate, Bucket::full(&rate, now))),
                cost: budget.map(|rate| (rate, Bucket::full(&rate, now))),
            }))
        });
        let mut guard = entry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let buckets = &mut *guard;
        let cost = cost as f64;
        let mut wait = Duration::ZERO;
        let mut reason = "rate";
        let checks = [
            (buckets.requests.as_mut(), 1.0, "rate"),
            (buckets.cost.as_mut(), cost, "cost"),
        ];
        for (slot, amount, label) in checks {
            let Some((rate, bucket)) = slot else { continue };
            match bucket.check(rate, amount, now) {
                Ok(()) => {}
                Err(None) => {
                    self.metrics.request_rejected("cost");
                    return Err(Limited::TooCostly);
                }
                Err(Some(more)) => {
                    if more > wait {
                        wait = more;
                        reason = label;
                    }
                }
            }
        }
        if wait > Duration::ZERO {
            self.metrics.request_rejected(reason);
            return Err(Limited::Rate {
                retry_after_s: whole_seconds(wait),
            });
        }
        if let Some((_, bucket)) = buckets.requests.as_mut() {
            bucket.take(1.0);
        }
        if let Some((_, bucket)) = buckets.cost.as_mut() {
            bucket.take(cost);
        }
        Ok(())
    }

    /// What a request's resolvers check before each citizen's personal fields; `None` when
    /// the caller is not an agency client or has no cap.
    pub fn citizen_allowance(&self, principal: &Principal) -> Option<CitizenAllowance> {
        let Principal::Agency(client) = principal else {
            return None;
        };
        let (_, limits) = self.limits(principal)?;
        (limits.max_distinct_citizens > 0).then(|| CitizenAllowance {
            cap: Arc::clone(&self.citizens),
            client: client.client_id.clone(),
            max: limits.max_distinct_citizens,
            window: limits.citizen_window(),
            metrics: Arc::clone(&self.metrics),
        })
    }
}

/// One request's share of its agency client's distinct-citizen cap, handed to the resolvers
/// with the request.
#[derive(Clone)]
pub struct CitizenAllowance {
    cap: Arc<CitizenCap>,
    client: String,
    max: u32,
    window: Duration,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for CitizenAllowance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CitizenAllowance")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl CitizenAllowance {
    /// Whether the client may ask about `citizen` now (a citizen already asked about in the
    /// window always may).
    pub fn admit(&self, citizen: &CitizenId) -> Result<(), CitizenCapReached> {
        self.cap
            .admit(&self.client, citizen, self.max, self.window, Instant::now())
            .map_err(|wait| {
                self.metrics.request_rejected("citizens");
                CitizenCapReached {
                    retry_after_s: whole_seconds(wait),
                }
            })
    }
}

fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AgencyClient;
    use crate::config::ClientLimits;

    fn agency(client_id: &str) -> Principal {
        Principal::Agency(AgencyClient {
            client_id: client_id.to_string(),
            agency: "benefits".to_string(),
            scopes: Default::default(),
            purposes: Default::default(),
            purpose: None,
        })
    }

    fn quotas(config: QuotasConfig) -> Quotas {
        Quotas::new(&config, Arc::new(Metrics::new()))
    }

    #[test]
    fn a_charge_takes_from_both_buckets_or_neither() {
        let config = QuotasConfig {
            agency: Limits {
                requests_per_s: 10,
                cost_per_s: 5,
                ..Limits::default()
            },
            ..QuotasConfig::default()
        };
        let quotas = quotas(config);
        let now = Instant::now();
        let partner = agency("p");
        assert_eq!(quotas.charge_at(&partner, 4, now), Ok(()));
        // One cost unit left: a request costing 2 is refused and takes nothing, so one
        // costing 1 still fits.
        assert_eq!(
            quotas.charge_at(&partner, 2, now),
            Err(Limited::Rate { retry_after_s: 1 })
        );
        assert_eq!(quotas.charge_at(&partner, 1, now), Ok(()));
        assert_eq!(quotas.charge_at(&partner, 6, now), Err(Limited::TooCostly));
        let rendered = quotas.metrics.render();
        assert!(rendered.contains("civicgraph_requests_rejected_total{reason=\"cost\"} 2"));
    }

    #[test]
    fn clients_have_their_own_limits_and_operators_none() {
        let mut config = QuotasConfig {
            agency: Limits {
                requests_per_s: 1,
                ..Limits::default()
            },
            ..QuotasConfig::default()
        };
        config.clients.insert(
            "big".to_string(),
            ClientLimits {
                requests_per_s: Some(3),
                ..ClientLimits::default()
            },
        );
        let quotas = quotas(config);
        let now = Instant::now();
        assert!(quotas.charge_at(&agency("small"), 1, now).is_ok());
        assert!(quotas.charge_at(&agency("small"), 1, now).is_err());
        for _ in 0..3 {
            assert!(quotas.charge_at(&agency("big"), 1, now).is_ok());
        }
        assert!(quotas.charge_at(&agency("big"), 1, now).is_err());
        let operator = Principal::Operator { name: "ops".into() };
        for _ in 0..10 {
            assert!(quotas.charge_at(&operator, 1, now).is_ok());
        }
    }

    #[test]
    fn shedding_refuses_past_max_in_flight_until_one_finishes() {
        let quotas = quotas(QuotasConfig {
            max_in_flight: 1,
            overloaded_retry_after_s: 2,
            ..QuotasConfig::default()
        });
        let first = quotas.enter().expect("room for one");
        assert_eq!(quotas.enter().unwrap_err(), Overloaded { retry_after_s: 2 });
        drop(first);
        assert!(quotas.enter().is_ok());
    }

    #[test]
    fn only_capped_agency_clients_get_a_citizen_allowance() {
        let quotas = quotas(QuotasConfig {
            agency: Limits {
                max_distinct_citizens: 1,
                ..Limits::default()
            },
            ..QuotasConfig::default()
        });
        assert!(quotas.citizen_allowance(&Principal::Anonymous).is_none());
        let allowance = quotas.citizen_allowance(&agency("p")).expect("capped");
        let ada = CitizenId::parse("C0000001").unwrap();
        let bob = CitizenId::parse("C0000002").unwrap();
        assert!(allowance.admit(&ada).is_ok());
        assert!(allowance.admit(&ada).is_ok());
        let refused = allowance.admit(&bob).unwrap_err();
        assert_eq!(refused.retry_after_s, 86_400);
    }
}
