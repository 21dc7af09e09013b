//! `[quotas]`: per-caller request rates and cost budgets, a cap on the distinct citizens an
//! agency client may look up per period, and load shedding when too many GraphQL requests
//! are in flight. Every limit is kept in this instance's memory: with N instances behind a
//! load balancer a caller gets up to N times each limit.
//!
//! ```toml
//! [quotas]
//! max_in_flight = 512
//!
//! [quotas.agency]
//! requests_per_s = 20
//! max_distinct_citizens = 1000
//!
//! [quotas.clients."benefits-portal"]
//! requests_per_s = 100
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[quotas]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotasConfig {
    /// GraphQL requests executing at once on this instance; one more is refused at once with
    /// 503 `OVERLOADED` (never queued). 0 turns shedding off.
    pub max_in_flight: usize,
    /// The `Retry-After` (seconds) sent with `OVERLOADED`.
    pub overloaded_retry_after_s: u64,
    /// Limits of each agency client (by the token's `client_id`) without its own entry.
    pub agency: Limits,
    /// Limits of each signed-in citizen.
    pub citizen: Limits,
    /// Limits of all anonymous callers together: one shared bucket, since behind a load
    /// balancer the peer address is the balancer's.
    pub anonymous: Limits,
    /// Limits of one agency client, by its `client_id`; keys not given come from `agency`.
    pub clients: BTreeMap<String, ClientLimits>,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            overloaded_retry_after_s: 1,
            agency: Limits::default(),
            citizen: Limits::default(),
            anonymous: Limits::default(),
            clients: BTreeMap::new(),
        }
    }
}

/// One caller's limits. 0 means no limit, which is the default of each: the right values
/// depend on the agreement with each partner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Requests per second, sustained.
    pub requests_per_s: u32,
    /// Requests allowed at once after a quiet spell; 0 means `requests_per_s`.
    pub requests_burst: u32,
    /// Cost units per second, sustained; an operation costs 1 plus 1 per root field (until
    /// the gateway's cost estimate is wired in).
    pub cost_per_s: u32,
    /// Cost units allowed at once after a quiet spell; 0 means `cost_per_s`. An operation
    /// costing more than this is refused outright.
    pub cost_burst: u32,
    /// Distinct citizens whose personal fields an agency client may ask for per window;
    /// citizens already asked for in the window stay allowed. Agency clients only.
    pub max_distinct_citizens: u32,
    /// The window of `max_distinct_citizens`, in seconds (default one day).
    pub citizen_window_s: u64,
}

/// `[quotas.clients."<client_id>"]`: any key of [`Limits`]; the rest come from `[quotas.agency]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientLimits {
    /// See [`Limits::requests_per_s`].
    pub requests_per_s: Option<u32>,
    /// See [`Limits::requests_burst`].
    pub requests_burst: Option<u32>,
    /// See [`Limits::cost_per_s`].
    pub cost_per_s: Option<u32>,
    /// See [`Limits::cost_burst`].
    pub cost_burst: Option<u32>,
    /// See [`Limits::max_distinct_citizens`].
    pub max_distinct_citizens: Option<u32>,
    /// See [`Limits::citizen_window_s`].
    pub citizen_window_s: Option<u64>,
}

impl ClientLimits {
    /// These limits over `defaults`.
    pub fn over(&self, defaults: &Limits) -> Limits {
        Limits {
            requests_per_s: self.requests_per_s.unwrap_or(defaults.requests_per_s),
            requests_burst: self.requests_burst.unwrap_or(defaults.requests_burst),
            cost_per_s: self.cost_per_s.unwrap_or(defaults.cost_per_s),
            cost_burst: self.cost_burst.unwrap_or(defaults.cost_burst),
            max_distinct_citizens: self
                .max_distinct_citizens
                .unwrap_or(defaults.max_distinct_citizens),
            citizen_window_s: self.citizen_window_s.unwrap_or(defaults.citizen_window_s),
        }
    }
}

impl Limits {
    /// The citizen window, with its default of one day when 0.
    pub fn citizen_window(&self) -> std::time::Duration {
        std::time::Duration::from_secs(if self.citizen_window_s == 0 {
            86_400
        } else {
            self.citizen_window_s
        })
    }
}
