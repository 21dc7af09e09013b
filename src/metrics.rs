//! The gateway's own metrics, in the OpenMetrics text format that Prometheus scrapes.
//!
//! One [`Metrics`] per gateway, shared (it is `Send + Sync`) by the shield, which counts every
//! backend call, cache read and rejection, and by the HTTP layer, which serves [`Metrics::render`]
//! with [`content_type`].
//!
//! Every name starts with `civicgraph_`; counters end in `_total`, and the one histogram carries
//! its unit (`civicgraph_backend_call_duration_seconds`). Label values are connector and
//! operation names, outcomes and error codes only — never an argument, a key or anything a
//! citizen typed. As a second line of defence, a label value that is not a short identifier
//! (ASCII letters, digits, `_`, `-`, `.`, at most [`MAX_LABEL_LEN`] bytes) is counted under
//! [`OTHER_LABEL`] instead, so a bug that passes a message or an argument cannot leak it into
//! the exposition or blow up the number of series.

use std::fmt;

use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The longest label value kept as given; a longer one is counted under [`OTHER_LABEL`].
pub const MAX_LABEL_LEN: usize = 64;

/// The label value that stands in for one that is not a short identifier.
pub const OTHER_LABEL: &str = "_other";

/// Upper bounds of the latency buckets, in seconds: legacy backends answer anywhere from a
/// millisecond (a cached mainframe record) to many seconds (a SOAP service under load), and a
/// call is cut off by its connector's `timeout_ms` well before 10 s.
/// From 5 ms (same-instance delivery) to a day (the retry schedule's far end).
const DELIVERY_DELAY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 60.0, 3600.0, 86400.0,
];

const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The content type of [`Metrics::render`]'s output. The exposition is OpenMetrics 1.0 text
/// (counters are declared without `_total` and the body ends in `# EOF`), which Prometheus
/// negotiates and parses natively; labelling it `text/plain; version=0.0.4` would make
/// Prometheus read the counters as untyped.
pub fn content_type() -> &'static str {
    "application/openmetrics-text; version=1.0.0; charset=utf-8"
}

/// What a read from the shared Redis cache tier came to, for
/// `civicgraph_cache_redis_reads_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisOutcome {
    /// A valid entry was found.
    Hit,
    /// No entry (or one from before an invalidation).
    Miss,
    /// Redis was down, timed out or answered with an error.
    Error,
    /// An entry was found but failed its signature or format check.
    Garbage,
}

impl RedisOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Error => "error",
            Self::Garbage => "garbage",
        }
    }
}

/// Why an instance dropped cached reads on a notice from the store, for
/// `civicgraph_consent_broadcasts_received_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastKind {
    /// A consent given to one agency was withdrawn (on any instance).
    Withdrawn,
    /// Notices may have been missed (listener reconnected, or an unreadable notice): every
    /// agency's cached reads were dropped.
    Resync,
}

impl BroadcastKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Withdrawn => "withdrawn",
            Self::Resync => "resync",
        }
    }
}

/// A backend's circuit breaker, as the gauge `civicgraph_breaker_state` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through (gauge value 0).
    Closed,
    /// Calls are refused without reaching the backend (gauge value 1).
    Open,
    /// A few probe calls go through to see whether the backend has recovered (gauge value 2).
    HalfOpen,
}

impl BreakerState {
    /// The gauge value: 0 closed, 1 open, 2 half-open (documented in the metric's HELP).
    pub fn gauge_value(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    connector: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    connector: String,
    operation: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    connector: String,
    operation: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RedisLabels {
    connector: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    status: String,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GraphqlOperationLabels {
    operation: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    channel: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    outcome: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric the gateway exports, registered once; the methods are cheap enough to call on
/// every backend call (an atomic add after a read-locked map lookup).
pub struct Metrics {
    registry: Registry,
    cache_hits: Family<OperationLabels, Counter>,
    cache_misses: Family<OperationLabels, Counter>,
    cache_stale_served: Family<OperationLabels, Counter>,
    redis_reads: Family<RedisLabels, Counter>,
    coalesced: Family<OperationLabels, Counter>,
    batched_calls: Family<OperationLabels, Counter>,
    batched_keys: Family<OperationLabels, Counter>,
    in_flight: Family<ConnectorLabels, Gauge>,
    queued: Family<ConnectorLabels, Gauge>,
    rejected_busy: Family<ConnectorLabels, Counter>,
    breaker_state: Family<ConnectorLabels, Gauge>,
    retries: Family<OperationLabels, Counter>,
    backend_calls: Family<OutcomeLabels, Counter>,
    backend_latency: Family<OperationLabels, Histogram, fn() -> Histogram>,
    response_errors: Family<CodeLabels, Counter>,
    events_recorded: Family<EventLabels, Counter>,
    event_deliveries: Family<DeliveryLabels, Counter>,
    event_delivery_delay: Histogram,
    requests_rejected: Family<ReasonLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    request_latency: Family<GraphqlOperationLabels, Histogram, fn() -> Histogram>,
    requests_in_flight: Gauge,
    operation_names: std::sync::Mutex<std::collections::HashSet<String>>,
    consent_broadcasts: Family<KindLabels, Counter>,
    consent_listener_up: Gauge,
    reloads: Family<ReloadLabels, Counter>,
    reload_ok: Gauge,
    reload_time: Gauge,
}

/// The most distinct GraphQL operation names labelled as themselves; later new names are
/// counted as [`OTHER_OPERATION`], so clients inventing names cannot grow the series without end.
pub const MAX_OPERATION_NAMES: usize = 200;

/// The label of a request whose operation has no name.
pub const ANONYMOUS_OPERATION: &str = "anonymous";

/// The label of a request whose operation name is unsafe, unknown or past [`MAX_OPERATION_NAMES`].
pub const OTHER_OPERATION: &str = "other";

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The registry's own Debug lists every series; a summary is what a log line needs.
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, all at zero (a family shows no series until first used).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("civicgraph");
        let cache_hits = Family::default();
        registry.register(
            "cache_hits",
            "Backend answers served from the gateway's cache, fresh.",
            cache_hits.clone(),
        );
        let cache_misses = Family::default();
        registry.register(
            "cache_misses",
            "Cache lookups that found no fresh answer, so the backend was called.",
            cache_misses.clone(),
        );
        let cache_stale_served = Family::default();
        registry.register(
            "cache_stale_served",
            "Answers served past their TTL, marked stale, because the backend failed, its circuit was open or it was in maintenance.",
            cache_stale_served.clone(),
        );
        let redis_reads = Family::default();
        registry.register(
            "cache_redis_reads",
            "Reads from the shared Redis cache tier by outcome: hit, miss, error (down or timed out) or garbage (an entry that failed its check).",
            redis_reads.clone(),
        );
        let coalesced = Family::default();
        registry.register(
            "coalesced_calls",
            "Calls that joined an identical call already in flight instead of reaching the backend.",
            coalesced.clone(),
        );
        let batched_calls = Family::default();
        registry.register(
            "batched_calls",
            "Backend calls that fetched several keys at once.",
            batched_calls.clone(),
        );
        let batched_keys = Family::default();
        registry.register(
            "batched_keys",
            "Keys fetched by batched backend calls (divide by civicgraph_batched_calls_total for the mean batch size).",
            batched_keys.clone(),
        );
        let in_flight = Family::default();
        registry.register(
            "backend_in_flight",
            "Calls to the backend under way now.",
            in_flight.clone(),
        );
        let queued = Family::default();
        registry.register(
            "backend_queued",
            "Calls waiting now for a free slot to the backend (max_concurrency).",
            queued.clone(),
        );
        let rejected_busy = Family::default();
        registry.register(
            "backend_rejected_busy",
            "Calls refused with BACKEND_BUSY because no slot freed within queue_timeout_ms.",
            rejected_busy.clone(),
        );
        let breaker_state = Family::default();
        registry.register(
            "breaker_state",
            "The backend's circuit breaker: 0 closed, 1 open, 2 half-open.",
            breaker_state.clone(),
        );
        let retries = Family::default();
        registry.register(
            "backend_retries",
            "Backend calls retried after a failure (each retry counts once).",
            retries.clone(),
        );
        let backend_calls = Family::default();
        registry.register(
            "backend_calls",
            "Backend calls by outcome: ok, or the error code the call failed with.",
            backend_calls.clone(),
        );
        let backend_latency =
            Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register_with_unit(
            "backend_call_duration",
            "How long backend calls took, whatever their outcome.",
            Unit::Seconds,
            backend_latency.clone(),
        );
        let response_errors = Family::default();
        registry.register(
            "response_errors",
            "Errors in GraphQL responses, by extensions.code.",
            response_errors.clone(),
        );
        let events_recorded = Family::default();
        registry.register(
            "events_recorded",
            "Life events written to the outbox, by type.",
            events_recorded.clone(),
        );
        let event_deliveries = Family::default();
        registry.register(
            "event_deliveries",
            "Life-event delivery attempts by channel (webhook, nats) and outcome: delivered, retry, dead, filtered (no consent), disabled (410 or a blocked endpoint). Alert on dead.",
            event_deliveries.clone(),
        );
        let event_delivery_delay = Histogram::new(DELIVERY_DELAY_BUCKETS);
        registry.register(
            "event_delivery_delay_seconds",
            "Time from an event's recording in the outbox to its acknowledged delivery.",
            event_delivery_delay.clone(),
        );
        let requests_rejected = Family::default();
        registry.register(
            "requests_rejected",
            "Requests (or, for citizens, fields) refused before any backend call, by reason: rate, cost, citizens (the distinct-citizen cap), overloaded (load shed), persisted_not_found, persisted_not_allowed, persisted_hash_mismatch, persisted_not_supported, persisted_bad_extension.",
            requests_rejected.clone(),
        );
        let requests = Family::default();
        registry.register(
            "requests",
            "GraphQL requests over HTTP by operation name (anonymous, other, or a safe name), HTTP status and the first error's extensions.code (none without errors).",
            requests.clone(),
        );
        let request_latency =
            Family::<GraphqlOperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register_with_unit(
            "request_duration",
            "How long GraphQL requests over HTTP took, from the first byte read to the response head, by operation name.",
            Unit::Seconds,
            request_latency.clone(),
        );
        let requests_in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "GraphQL requests over HTTP being served now.",
            requests_in_flight.clone(),
        );
        let consent_broadcasts = Family::default();
        registry.register(
            "consent_broadcasts_received",
            "Consent-withdrawal notices from the shared PostgreSQL by kind: withdrawn (one agency's cached reads dropped) or resync (every agency's, after the listener reconnected).",
            consent_broadcasts.clone(),
        );
        let consent_listener_up = Gauge::default();
        registry.register(
            "consent_listener_up",
            "1 while this instance listens for consent withdrawals on the shared PostgreSQL; always 0 on SQLite, where one instance needs no listener.",
            consent_listener_up.clone(),
        );
        let reloads = Family::default();
        registry.register(
            "graph_reloads",
            "Hot reloads by outcome: success (the new graph serves) or failure (it was invalid; the previous graph keeps serving). Alert on failure.",
            reloads.clone(),
        );
        let reload_ok = Gauge::default();
        reload_ok.set(1);
        registry.register(
            "graph_reload_ok",
            "1 when the files on disk are what is served (no reload yet, or the last one succeeded); 0 when the last reload failed.",
            reload_ok.clone(),
        );
        let reload_time = Gauge::default();
        registry.register_with_unit(
            "graph_reload_last_timestamp",
            "When the last reload finished, in Unix seconds (0 before the first).",
            Unit::Seconds,
            reload_time.clone(),
        );
        Self {
            requests_rejected,
            registry,
            requests,
            request_latency,
            requests_in_flight,
            operation_names: std::sync::Mutex::new(std::collections::HashSet::new()),
            cache_hits,
            cache_misses,
            cache_stale_served,
            redis_reads,
            coalesced,
            batched_calls,
            batched_keys,
            in_flight,
            queued,
            rejected_busy,
            breaker_state,
            retries,
            backend_calls,
            backend_latency,
            response_errors,
            events_recorded,
            event_deliveries,
            event_delivery_delay,
            consent_broadcasts,
            consent_listener_up,
            reloads,
            reload_ok,
            reload_time,
        }
    }

    /// A hot reload finished: `ok` when the new graph now serves, not when it was refused.
    pub fn graph_reloaded(&self, ok: bool) {
        let outcome = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ReloadLabels { outcome }).inc();
        self.reload_ok.set(i64::from(ok));
        self.reload_time.set(chrono::Utc::now().timestamp());
    }

    /// A consent-withdrawal notice of `kind` was acted on.
    pub fn consent_broadcast(&self, kind: BroadcastKind) {
        self.consent_broadcasts
            .get_or_create(&KindLabels {
                kind: kind.as_str().to_owned(),
            })
            .inc();
    }

    /// Whether the consent-withdrawal listener is connected now.
    pub fn consent_listener_up(&self, up: bool) {
        self.consent_listener_up.set(i64::from(up));
    }

    /// An answer was served fresh from the cache.
    pub fn cache_hit(&self, connector: &str, operation: &str) {
        self.cache_hits
            .get_or_create(&operation_labels(connector, operation))
            .inc();
    }

    /// No fresh answer was cached; the backend is called.
    pub fn cache_miss(&self, connector: &str, operation: &str) {
        self.cache_misses
            .get_or_create(&operation_labels(connector, operation))
            .inc();
    }

    /// An expired answer was served, marked stale, because the backend could not answer.
    pub fn cache_stale_served(&self, connector: &str, operation: &str) {
        self.cache_stale_served
            .get_or_create(&operation_labels(connector, operation))
            .inc();
    }

    /// A read from the shared Redis tier came to `outcome`.
    pub fn redis_outcome(&self, connector: &str, outcome: RedisOutcome) {
        self.redis_reads
            .get_or_create(&RedisLabels {
                connector: label(connector),
                outcome: outcome.as_str().to_owned(),
            })
            .inc();
    }

    /// A call joined an identical one already in flight.
    pub fn coalesced(&self, connector: &str, operation: &str) {
        self.coalesced
            .get_or_create(&operation_labels(connector, operation))
            .inc();
    }

    /// One backend call fetched `keys` keys at once.
    pub fn batched_call(&self, connector: &str, operation: &str, keys: usize) {
        let labels = operation_labels(connector, operation);
        self.batched_calls.get_or_create(&labels).inc();
        self.batched_keys
            .get_or_create(&labels)
            .inc_by(u64::try_from(keys).unwrap_or(u64::MAX));
    }

    /// Calls in flight to `connector` changed by `delta` (+1 when one starts, -1 when it ends).
    pub fn in_flight_add(&self, connector: &str, delta: i64) {
        self.in_flight
            .get_or_create(&connector_labels(connector))
            .inc_by(delta);
    }

    /// Calls waiting for a slot to `connector` changed by `delta`.
    pub fn queued_add(&self, connector: &str, delta: i64) {
        self.queued
            .get_or_create(&connector_labels(connector))
            .inc_by(delta);
    }

    /// A call to `connector` was refused with `BACKEND_BUSY`.
    pub fn rejected_busy(&self, connector: &str) {
        self.rejected_busy
            .get_or_create(&connector_labels(connector))
            .inc();
    }

    /// `connector`'s circuit breaker is now in `state`.
    pub fn breaker_state(&self, connector: &str, state: BreakerState) {
        self.breaker_state
            .get_or_create(&connector_labels(connector))
            .set(state.gauge_value());
    }

    /// A failed call is being tried again.
    pub fn retry(&self, connector: &str, operation: &str) {
        self.retries
            .get_or_create(&operation_labels(connector, operation))
            .inc();
    }

    /// One backend call (one attempt) finished with `outcome` (`"ok"` or an error code such as
    /// `"BACKEND_TIMEOUT"`) after `seconds`.
    pub fn backend_call(&self, connector: &str, operation: &str, outcome: &str, seconds: f64) {
        let labels = operation_labels(connector, operation);
        self.backend_latency
            .get_or_create(&labels)
            .observe(seconds.max(0.0));
        self.backend_calls
            .get_or_create(&OutcomeLabels {
                connector: labels.connector,
                operation: labels.operation,
                outcome: label(outcome),
            })
            .inc();
    }

    /// A life event of `event_type` was recorded in the outbox.
    pub fn event_recorded(&self, event_type: &str) {
        self.events_recorded
            .get_or_create(&EventLabels {
                event_type: label(event_type),
            })
            .inc();
    }

    /// One delivery attempt on `channel` ended with `outcome`; `delay_s` (recording to
    /// acknowledgement) is observed for delivered ones.
    pub fn event_delivery(&self, channel: &str, outcome: &str, delay_s: Option<f64>) {
        self.event_deliveries
            .get_or_create(&DeliveryLabels {
                channel: label(channel),
                outcome: label(outcome),
            })
            .inc();
        if let Some(delay) = delay_s {
            self.event_delivery_delay.observe(delay.max(0.0));
        }
    }

    /// A response carried an error with `extensions.code` = `code`.
    pub fn response_error(&self, code: &str) {
        self.response_errors
            .get_or_create(&CodeLabels { code: label(code) })
            .inc();
    }

    /// A request was refused by a quota, load shedding or the persisted-operation rules.
    pub fn request_rejected(&self, reason: &str) {
        self.requests_rejected
            .get_or_create(&ReasonLabels {
                reason: label(reason),
            })
            .inc();
    }

    /// The label for a request's operation: [`ANONYMOUS_OPERATION`] without a name; the name
    /// when it is a plain GraphQL name of at most 64 characters without a run of four digits
    /// (which could be an id someone put in it) and one of the first [`MAX_OPERATION_NAMES`]
    /// seen; else [`OTHER_OPERATION`].
    pub fn operation_label(&self, name: Option<&str>) -> String {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return ANONYMOUS_OPERATION.to_string();
        };
        if !safe_operation_name(name) {
            return OTHER_OPERATION.to_string();
        }
        let mut known = self
            .operation_names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.contains(name) {
            return name.to_string();
        }
        if known.len() < MAX_OPERATION_NAMES {
            known.insert(name.to_string());
            return name.to_string();
        }
        OTHER_OPERATION.to_string()
    }

    /// A GraphQL request started (+1) or ended (-1).
    pub fn request_in_flight_add(&self, delta: i64) {
        self.requests_in_flight.inc_by(delta);
    }

    /// A GraphQL request labelled `operation` (from [`Metrics::operation_label`]) was answered
    /// with `status` after `seconds`; `code` is its first error's code, if any.
    pub fn request(&self, operation: &str, status: u16, code: Option<&str>, seconds: f64) {
        let operation = label(operation);
        self.request_latency
            .get_or_create(&GraphqlOperationLabels {
                operation: operation.clone(),
            })
            .observe(seconds.max(0.0));
        self.requests
            .get_or_create(&RequestLabels {
                operation,
                status: status.to_string(),
                code: code.map_or_else(|| "none".to_string(), label),
            })
            .inc();
    }

    /// The whole exposition, ending in `# EOF`; serve it with [`content_type`].
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and the encoder only fails when its writer does.
        if let Err(error) = text::encode(&mut out, &self.registry) {
            tracing::warn!(%error, "Metrics could not be encoded.");
        }
        out
    }
}

fn connector_labels(connector: &str) -> ConnectorLabels {
    ConnectorLabels {
        connector: label(connector),
    }
}

fn operation_labels(connector: &str, operation: &str) -> OperationLabels {
    OperationLabels {
        connector: label(connector),
        operation: label(operation),
    }
}

/// A GraphQL name (`[_A-Za-z][_0-9A-Za-z]*`), at most 64 bytes, with no run of four digits.
fn safe_operation_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let starts_well = bytes
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_');
    let digit_run = bytes
        .split(|b| !b.is_ascii_digit())
        .any(|run| run.len() >= 4);
    starts_well
        && bytes.len() <= MAX_LABEL_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        && !digit_run
}

/// `value` when it is a short identifier, else [`OTHER_LABEL`].
fn label(value: &str) -> String {
    let identifier = !value.is_empty()
        && value.len() <= MAX_LABEL_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if identifier {
        value.to_owned()
    } else {
        OTHER_LABEL.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;

    /// One sample line of the exposition: name, labels, value.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// What a scraper reads: `# HELP`/`# TYPE` per family, then samples, then `# EOF`.
    #[derive(Debug, Default)]
    struct Exposition {
        help: BTreeMap<String, String>,
        types: BTreeMap<String, String>,
        units: BTreeMap<String, String>,
        samples: Vec<Sample>,
        eof: bool,
    }

    impl Exposition {
        /// Parses the OpenMetrics text `text`, panicking on any line a scraper would reject.
        fn parse(text: &str) -> Self {
            let mut out = Self::default();
            for line in text.lines() {
                assert!(!out.eof, "nothing may follow # EOF: {line:?}");
                if line == "# EOF" {
                    out.eof = true;
                } else if let Some(rest) = line.strip_prefix("# HELP ") {
                    let (name, help) = rest.split_once(' ').expect("HELP name text");
                    out.help.insert(name.to_owned(), help.to_owned());
                } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                    let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                    out.types.insert(name.to_owned(), kind.to_owned());
                } else if let Some(rest) = line.strip_prefix("# UNIT ") {
                    let (name, unit) = rest.split_once(' ').expect("UNIT name unit");
                    out.units.insert(name.to_owned(), unit.to_owned());
                } else {
                    out.samples.push(parse_sample(line));
                }
            }
            out
        }

        /// The value of the one sample named `name` whose labels include all of `labels`.
        fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let found: Vec<&Sample> = self
                .samples
                .iter()
                .filter(|s| {
                    s.name == name
                        && labels
                            .iter()
                            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                })
                .collect();
            assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
            found.first().map(|s| s.value)
        }
    }

    fn parse_sample(line: &str) -> Sample {
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = value.parse().expect("a numeric sample value");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels close with }");
                let mut labels = BTreeMap::new();
                for pair in split_labels(body) {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .expect("a quoted label value");
                    labels.insert(k.to_owned(), v.to_owned());
                }
                (name.to_owned(), labels)
            }
        };
        Sample {
            name,
            labels,
            value,
        }
    }

    /// Splits `a="x",b="y,z"` at the commas outside quotes.
    fn split_labels(body: &str) -> Vec<&str> {
        let mut parts = Vec::new();
        let (mut start, mut quoted, mut escaped) = (0, false, false);
        for (i, c) in body.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    parts.push(&body[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if start < body.len() {
            parts.push(&body[start..]);
        }
        parts
    }

    #[test]
    fn renders_every_family_with_help_and_type() {
        let metrics = Metrics::new();
        metrics.cache_hit("tax", "account");
        metrics.cache_miss("tax", "account");
        metrics.cache_stale_served("tax", "account");
        metrics.redis_outcome("tax", RedisOutcome::Garbage);
        metrics.coalesced("tax", "account");
        metrics.batched_call("tax", "accounts", 7);
        metrics.in_flight_add("tax", 1);
        metrics.queued_add("tax", 1);
        metrics.rejected_busy("tax");
        metrics.breaker_state("tax", BreakerState::Open);
        metrics.retry("tax", "account");
        metrics.backend_call("tax", "account", "ok", 0.003);
        metrics.response_error("BACKEND_TIMEOUT");
        metrics.event_recorded("JobLost");
        metrics.event_delivery("webhook", "delivered", Some(0.02));
        metrics.request("Overview", 200, None, 0.01);
        metrics.request_in_flight_add(0);
        metrics.graph_reloaded(false);
        metrics.request_rejected("rate");
        metrics.consent_broadcast(BroadcastKind::Withdrawn);
        metrics.consent_listener_up(true);
        let text = metrics.render();
        let exposition = Exposition::parse(&text);
        assert!(exposition.eof, "the exposition ends in # EOF:\n{text}");

        let families = [
            ("civicgraph_cache_hits", "counter"),
            ("civicgraph_cache_misses", "counter"),
            ("civicgraph_cache_stale_served", "counter"),
            ("civicgraph_cache_redis_reads", "counter"),
            ("civicgraph_coalesced_calls", "counter"),
            ("civicgraph_batched_calls", "counter"),
            ("civicgraph_batched_keys", "counter"),
            ("civicgraph_backend_in_flight", "gauge"),
            ("civicgraph_backend_queued", "gauge"),
            ("civicgraph_backend_rejected_busy", "counter"),
            ("civicgraph_breaker_state", "gauge"),
            ("civicgraph_backend_retries", "counter"),
            ("civicgraph_backend_calls", "counter"),
            ("civicgraph_backend_call_duration_seconds", "histogram"),
            ("civicgraph_response_errors", "counter"),
            ("civicgraph_events_recorded", "counter"),
            ("civicgraph_event_deliveries", "counter"),
            ("civicgraph_event_delivery_delay_seconds", "histogram"),
            ("civicgraph_requests", "counter"),
            ("civicgraph_request_duration_seconds", "histogram"),
            ("civicgraph_requests_in_flight", "gauge"),
            ("civicgraph_graph_reloads", "counter"),
            ("civicgraph_graph_reload_ok", "gauge"),
            ("civicgraph_graph_reload_last_timestamp_seconds", "gauge"),
            ("civicgraph_requests_rejected", "counter"),
            ("civicgraph_consent_broadcasts_received", "counter"),
            ("civicgraph_consent_listener_up", "gauge"),
        ];
        for (family, kind) in families {
            assert_eq!(
                exposition.types.get(family).map(String::as_str),
                Some(kind),
                "# TYPE {family} {kind}\n{text}"
            );
            assert!(
                exposition.help.get(family).is_some_and(|h| !h.is_empty()),
                "# HELP {family}\n{text}"
            );
            let sample_prefix = if kind == "counter" {
                format!("{family}_total")
            } else {
                family.to_owned()
            };
            assert!(
                exposition
                    .samples
                    .iter()
                    .any(|s| s.name.starts_with(&sample_prefix)),
                "a sample of {family}\n{text}"
            );
        }
        assert_eq!(exposition.types.len(), families.len(), "{text}");
        assert_eq!(
            exposition
                .units
                .get("civicgraph_backend_call_duration_seconds")
                .map(String::as_str),
            Some("seconds")
        );
        // Every sample belongs to a declared family.
        for sample in &exposition.samples {
            assert!(
                exposition.types.keys().any(|f| sample.name.starts_with(f)),
                "undeclared sample {sample:?}"
            );
        }
    }

    #[test]
    fn counts_by_label() {
        let metrics = Metrics::new();
        for _ in 0..3 {
            metrics.cache_hit("tax", "account");
        }
        metrics.cache_hit("tax", "returns");
        metrics.cache_hit("registry", "person");
        metrics.redis_outcome("tax", RedisOutcome::Hit);
        metrics.redis_outcome("tax", RedisOutcome::Hit);
        metrics.redis_outcome("tax", RedisOutcome::Error);
        metrics.batched_call("tax", "accounts", 7);
        metrics.batched_call("tax", "accounts", 3);
        metrics.backend_call("tax", "account", "ok", 0.02);
        metrics.backend_call("tax", "account", "BACKEND_TIMEOUT", 2.0);
        metrics.backend_call("tax", "account", "BACKEND_TIMEOUT", 2.0);
        metrics.response_error("CONSENT_REQUIRED");
        metrics.response_error("CONSENT_REQUIRED");
        metrics.rejected_busy("tax");
        metrics.retry("tax", "account");
        let e = Exposition::parse(&metrics.render());

        let tax_account = [("connector", "tax"), ("operation", "account")];
        assert_eq!(
            e.value("civicgraph_cache_hits_total", &tax_account),
            Some(3.0)
        );
        assert_eq!(
            e.value(
                "civicgraph_cache_hits_total",
                &[("connector", "tax"), ("operation", "returns")]
            ),
            Some(1.0)
        );
        assert_eq!(
            e.value(
                "civicgraph_cache_hits_total",
                &[("connector", "registry"), ("operation", "person")]
            ),
            Some(1.0)
        );
        assert_eq!(
            e.value("civicgraph_cache_misses_total", &tax_account),
            None,
            "a family shows only the series that were used"
        );
        assert_eq!(
            e.value(
                "civicgraph_cache_redis_reads_total",
                &[("connector", "tax"), ("outcome", "hit")]
            ),
            Some(2.0)
        );
        assert_eq!(
            e.value(
                "civicgraph_cache_redis_reads_total",
                &[("connector", "tax"), ("outcome", "error")]
            ),
            Some(1.0)
        );
        let accounts = [("connector", "tax"), ("operation", "accounts")];
        assert_eq!(
            e.value("civicgraph_batched_calls_total", &accounts),
            Some(2.0)
        );
        assert_eq!(
            e.value("civicgraph_batched_keys_total", &accounts),
            Some(10.0)
        );
        assert_eq!(
            e.value(
                "civicgraph_backend_calls_total",
                &[
                    ("connector", "tax"),
                    ("operation", "account"),
                    ("outcome", "BACKEND_TIMEOUT")
                ]
            ),
            Some(2.0)
        );
        assert_eq!(
            e.value(
                "civicgraph_backend_calls_total",
                &[
                    ("connector", "tax"),
                    ("operation", "account"),
                    ("outcome", "ok")
                ]
            ),
            Some(1.0)
        );
        assert_eq!(
            e.value(
                "civicgraph_response_errors_total",
                &[("code", "CONSENT_REQUIRED")]
            ),
            Some(2.0)
        );
        assert_eq!(
            e.value(
                "civicgraph_backend_rejected_busy_total",
                &[("connector", "tax")]
            ),
            Some(1.0)
        );
        assert_eq!(
            e.value("civicgraph_backend_retries_total", &tax_account),
            Some(1.0)
        );
    }

    #[test]
    fn latency_histogram_buckets_span_a_millisecond_to_ten_seconds() {
        let metrics = Metrics::new();
        metrics.backend_call("tax", "account", "ok", 0.0005);
        metrics.backend_call("tax", "account", "ok", 0.003);
        metrics.backend_call("tax", "account", "BACKEND_TIMEOUT", 2.0);
        metrics.backend_call("tax", "account", "BACKEND_TIMEOUT", 30.0);
        let e = Exposition::parse(&metrics.render());
        let name = "civicgraph_backend_call_duration_seconds";
        let buckets: Vec<(f64, f64)> = e
            .samples
            .iter()
            .filter(|s| s.name == format!("{name}_bucket"))
            .map(|s| {
                let le = &s.labels["le"];
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("numeric le")
                };
                (bound, s.value)
            })
            .collect();
        let bounds: Vec<f64> = buckets.iter().map(|(b, _)| *b).collect();
        assert_eq!(bounds.first(), Some(&0.001));
        assert!(bounds.contains(&10.0), "{bounds:?}");
        assert_eq!(bounds.last(), Some(&f64::INFINITY));
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        let count_at = |bound: f64| {
            buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map(|(_, c)| *c)
                .expect("bucket")
        };
        // Buckets are cumulative.
        assert_eq!(count_at(0.001), 1.0);
        assert_eq!(count_at(0.005), 2.0);
        assert_eq!(count_at(2.5), 3.0);
        assert_eq!(count_at(10.0), 3.0);
        assert_eq!(count_at(f64::INFINITY), 4.0);
        let labels = [("connector", "tax"), ("operation", "account")];
        assert_eq!(e.value(&format!("{name}_count"), &labels), Some(4.0));
        let sum = e.value(&format!("{name}_sum"), &labels).expect("sum");
        assert!((sum - 32.0035).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn gauges_go_up_and_down() {
        let metrics = Metrics::new();
        let connector = [("connector", "tax")];
        metrics.in_flight_add("tax", 1);
        metrics.in_flight_add("tax", 1);
        metrics.queued_add("tax", 3);
        let e = Exposition::parse(&metrics.render());
        assert_eq!(
            e.value("civicgraph_backend_in_flight", &connector),
            Some(2.0)
        );
        assert_eq!(e.value("civicgraph_backend_queued", &connector), Some(3.0));

        metrics.in_flight_add("tax", -1);
        metrics.queued_add("tax", -3);
        let e = Exposition::parse(&metrics.render());
        assert_eq!(
            e.value("civicgraph_backend_in_flight", &connector),
            Some(1.0)
        );
        assert_eq!(e.value("civicgraph_backend_queued", &connector), Some(0.0));

        let state = |metrics: &Metrics| {
            Exposition::parse(&metrics.render()).value("civicgraph_breaker_state", &connector)
        };
        metrics.breaker_state("tax", BreakerState::Open);
        assert_eq!(state(&metrics), Some(1.0));
        metrics.breaker_state("tax", BreakerState::HalfOpen);
        assert_eq!(state(&metrics), Some(2.0));
        metrics.breaker_state("tax", BreakerState::Closed);
        assert_eq!(state(&metrics), Some(0.0));
    }

    #[test]
    fn label_values_that_are_not_identifiers_are_counted_as_other() {
        let metrics = Metrics::new();
        metrics.cache_hit("tax", "account");
        metrics.response_error("Jane Doe <jane@example.org> has no account");
        metrics.response_error("line\nbreak");
        metrics.response_error(&"A".repeat(MAX_LABEL_LEN + 1));
        metrics.response_error("");
        metrics.backend_call("tax", "account\"}", "ok", 0.01);
        let text = metrics.render();
        assert!(!text.contains("jane"), "{text}");
        assert!(!text.contains("account\\\""), "{text}");
        let e = Exposition::parse(&text);
        assert_eq!(
            e.value("civicgraph_response_errors_total", &[("code", OTHER_LABEL)]),
            Some(4.0)
        );
        assert_eq!(
            e.value(
                "civicgraph_backend_calls_total",
                &[("connector", "tax"), ("operation", OTHER_LABEL)]
            ),
            Some(1.0)
        );
        // Identifiers with the allowed punctuation are kept as given.
        metrics.cache_hit("unemployment-insurance", "claims.by_id");
        let e = Exposition::parse(&metrics.render());
        assert_eq!(
            e.value(
                "civicgraph_cache_hits_total",
                &[
                    ("connector", "unemployment-insurance"),
                    ("operation", "claims.by_id")
                ]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn counts_from_many_threads_add_up() {
        let metrics = Arc::new(Metrics::new());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let metrics = Arc::clone(&metrics);
                std::thread::spawn(move || {
                    let operation = if t % 2 == 0 { "even" } else { "odd" };
                    for _ in 0..1000 {
                        metrics.cache_hit("tax", operation);
                        metrics.in_flight_add("tax", 1);
                        metrics.backend_call("tax", operation, "ok", 0.001);
                        metrics.in_flight_add("tax", -1);
                        // Rendering while others write must neither block nor tear.
                        if t == 0 {
                            let _ = metrics.render();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a metrics thread");
        }
        let e = Exposition::parse(&metrics.render());
        for operation in ["even", "odd"] {
            let labels = [("connector", "tax"), ("operation", operation)];
            assert_eq!(
                e.value("civicgraph_cache_hits_total", &labels),
                Some(4000.0)
            );
            assert_eq!(
                e.value("civicgraph_backend_call_duration_seconds_count", &labels),
                Some(4000.0)
            );
        }
        assert_eq!(
            e.value("civicgraph_backend_in_flight", &[("connector", "tax")]),
            Some(0.0)
        );
    }

    #[test]
    fn requests_are_counted_by_operation_status_and_code() {
        let metrics = Metrics::new();
        let name = metrics.operation_label(Some("CitizenOverview"));
        metrics.request_in_flight_add(1);
        metrics.request(&name, 200, None, 0.02);
        metrics.request(&name, 200, Some("CONSENT_REQUIRED"), 0.03);
        metrics.request(
            &metrics.operation_label(None),
            400,
            Some("BAD_REQUEST"),
            0.001,
        );
        let e = Exposition::parse(&metrics.render());
        assert_eq!(
            e.value(
                "civicgraph_requests_total",
                &[
                    ("operation", "CitizenOverview"),
                    ("status", "200"),
                    ("code", "none")
                ]
            ),
            Some(1.0)
        );
        assert_eq!(
            e.value(
                "civicgraph_requests_total",
                &[
                    ("operation", "anonymous"),
                    ("status", "400"),
                    ("code", "BAD_REQUEST")
                ]
            ),
            Some(1.0)
        );
        assert_eq!(
            e.value(
                "civicgraph_request_duration_seconds_count",
                &[("operation", "CitizenOverview")]
            ),
            Some(2.0)
        );
        assert_eq!(e.value("civicgraph_requests_in_flight", &[]), Some(1.0));
        metrics.request_in_flight_add(-1);
        let e = Exposition::parse(&metrics.render());
        assert_eq!(e.value("civicgraph_requests_in_flight", &[]), Some(0.0));
    }

    #[test]
    fn operation_names_are_bounded_and_never_carry_ids() {
        let metrics = Metrics::new();
        assert_eq!(metrics.operation_label(None), ANONYMOUS_OPERATION);
        assert_eq!(metrics.operation_label(Some("")), ANONYMOUS_OPERATION);
        assert_eq!(
            metrics.operation_label(Some("Citizen_C0000042")),
            OTHER_OPERATION
        );
        assert_eq!(
            metrics.operation_label(Some("tin 123-45-6789")),
            OTHER_OPERATION
        );
        assert_eq!(metrics.operation_label(Some("9Lives")), OTHER_OPERATION);
        assert_eq!(
            metrics.operation_label(Some(&"A".repeat(MAX_LABEL_LEN + 1))),
            OTHER_OPERATION
        );
        assert_eq!(metrics.operation_label(Some("Q2")), "Q2");
        for n in 0..MAX_OPERATION_NAMES * 2 {
            let name = format!(
                "Op_{}",
                n.to_string()
                    .chars()
                    .map(|c| (b'a' + c as u8 - b'0') as char)
                    .collect::<String>()
            );
            let _ = metrics.operation_label(Some(&name));
        }
        // The cap holds, names seen before keep their label, new ones are "other".
        assert_eq!(metrics.operation_label(Some("Q2")), "Q2");
        assert_eq!(metrics.operation_label(Some("BrandNew")), OTHER_OPERATION);
        let known = metrics.operation_names.lock().expect("names").len();
        assert_eq!(known, MAX_OPERATION_NAMES);
    }

    #[test]
    fn content_type_is_openmetrics_text() {
        assert!(content_type().starts_with("application/openmetrics-text; version=1.0.0"));
        // What the body claims to be must match what it is: OpenMetrics ends in # EOF.
        assert!(Metrics::new().render().ends_with("# EOF\n"));
    }

    #[test]
    fn metrics_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + fmt::Debug>() {}
        assert_send_sync::<Metrics>();
    }
}
