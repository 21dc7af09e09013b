//! PLACEHOLDER until the metrics registry lands from its branch (same signatures).

/// Placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisOutcome {
    /// Placeholder.
    Hit,
    /// Placeholder.
    Miss,
    /// Placeholder.
    Error,
    /// Placeholder.
    Garbage,
}

/// Placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Placeholder.
    Closed,
    /// Placeholder.
    Open,
    /// Placeholder.
    HalfOpen,
}

/// Placeholder.
#[derive(Debug, Default)]
pub struct Metrics;

#[allow(missing_docs)]
impl Metrics {
    pub fn new() -> Self {
        Self
    }
    pub fn cache_hit(&self, _c: &str, _o: &str) {}
    pub fn cache_miss(&self, _c: &str, _o: &str) {}
    pub fn cache_stale_served(&self, _c: &str, _o: &str) {}
    pub fn redis_outcome(&self, _c: &str, _outcome: RedisOutcome) {}
    pub fn coalesced(&self, _c: &str, _o: &str) {}
    pub fn batched_call(&self, _c: &str, _o: &str, _keys: usize) {}
    pub fn in_flight_add(&self, _c: &str, _d: i64) {}
    pub fn queued_add(&self, _c: &str, _d: i64) {}
    pub fn rejected_busy(&self, _c: &str) {}
    pub fn breaker_state(&self, _c: &str, _s: BreakerState) {}
    pub fn retry(&self, _c: &str, _o: &str) {}
    pub fn backend_call(&self, _c: &str, _o: &str, _outcome: &str, _seconds: f64) {}
    pub fn response_error(&self, _code: &str) {}
    pub fn render_placeholder(&self) {}
    pub fn render(&self) -> String {
        String::new()
    }
}

/// Placeholder.
pub fn content_type() -> &'static str {
    "text/plain; version=0.0.4; charset=utf-8"
}
