//! The shield's mechanisms against a scripted connector, on tokio's paused clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::*;
use crate::config::{BreakerConfig, CacheConfig, MaintenanceWindow, RetryConfig};

/// What the scripted backend does with each call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Answer,
    Refuse,
    ServerError(u16),
    Hang,
    Slow(Duration),
    /// Waits for `release` before answering.
    Gate,
}

#[derive(Debug)]
struct Backend {
    calls: AtomicUsize,
    batch_calls: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    script: Mutex<Vec<Behaviour>>,
    otherwise: Mutex<Behaviour>,
    release: Notify,
}

impl Backend {
    fn new(otherwise: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            batch_calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            script: Mutex::new(Vec::new()),
            otherwise: Mutex::new(otherwise),
            release: Notify::new(),
        })
    }

    fn then(&self, behaviours: &[Behaviour]) {
        let mut script = self.script.lock().unwrap();
        *script = behaviours.iter().rev().copied().collect();
    }

    fn set(&self, behaviour: Behaviour) {
        *self.otherwise.lock().unwrap() = behaviour;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn answer(&self, key: &Value) -> Result<Reply, CallError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        // Leaves the count however the call ends, including dropped by a timeout.
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&self.in_flight);
        let behaviour = self
            .script
            .lock()
            .unwrap()
            .pop()
            .unwrap_or(*self.otherwise.lock().unwrap());
        let result = match behaviour {
            Behaviour::Answer => Ok(()),
            Behaviour::Refuse => Err(CallError::Unreachable("connection refused".into())),
            Behaviour::ServerError(status) => Err(CallError::ServerError { status }),
            Behaviour::Hang => futures::future::pending().await,
            Behaviour::Slow(wait) => {
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Behaviour::Gate => {
                self.release.notified().await;
                Ok(())
            }
        };
        result.map(|()| Reply {
            value: Some(json!({"key": key, "call": self.calls()})),
            as_of: None,
        })
    }
}

#[derive(Debug)]
struct Scripted(Arc<Backend>);

impl Connector for Scripted {
    fn call<'a>(
        &'a self,
        _operation: &'a str,
        args: &'a Arguments,
    ) -> BoxFuture<'a, Result<Option<Value>, CallError>> {
        Box::pin(async move {
            let key = args.get("id").cloned().unwrap_or(Value::Null);
            self.0.answer(&key).await.map(|reply| reply.value)
        })
    }

    fn call_batch<'a>(
        &'a self,
        _operation: &'a str,
        args: &'a [Arguments],
    ) -> BoxFuture<'a, Result<Vec<Reply>, CallError>> {
        Box::pin(async move {
            self.0.batch_calls.fetch_add(1, Ordering::SeqCst);
            let keys: Vec<Value> = args
                .iter()
                .map(|a| a.get("id").cloned().unwrap_or(Value::Null))
                .collect();
            self.0.answer(&Value::Array(keys.clone())).await?;
            Ok(keys
                .into_iter()
                .map(|key| Reply {
                    value: Some(json!({"key": key, "batched": true})),
                    as_of: None,
                })
                .collect())
        })
    }
}

fn config() -> ShieldConfig {
    ShieldConfig {
        max_concurrency: 4,
        queue_timeout: Duration::from_millis(50),
        timeout: Duration::from_millis(1_000),
        cache: Some(CacheConfig {
            ttl_s: 60,
            max_mb: 8,
            serve_stale_on_error_s: 600,
            shared: false,
        }),
        retry: RetryConfig::default(),
        breaker: BreakerConfig::default(),
        maintenance: Vec::new(),
    }
}

fn shield_with(backend: &Arc<Backend>, config: ShieldConfig) -> (Shield, Arc<ShieldHub>) {
    let hub = ShieldHub::new(true);
    let shield = Shield::new(
        "ui",
        Arc::new(Scripted(Arc::clone(backend))),
        config,
        [
            ("claims".to_string(), None),
            (
                "cases".to_string(),
                Some(BatchSpec {
                    key: "id".into(),
                    max: 40,
                }),
            ),
        ],
        Arc::clone(&hub),
    );
    (shield, hub)
}

fn args(id: &str) -> Arguments {
    Arguments::from([("id".to_string(), Value::from(id))])
}

fn citizen(id: &str) -> CacheScope {
    CacheScope::Citizen(id.into())
}

fn agency(purpose: &str) -> CacheScope {
    CacheScope::Agency {
        agency: "benefits".into(),
        client: "portal".into(),
        purpose: Some(purpose.into()),
    }
}

async fn read(shield: &Shield, id: &str, scope: &CacheScope) -> Result<Served, ShieldError> {
    shield
        .call("claims", &args(id), scope, CallKind::Read)
        .await
}

#[tokio::test(start_paused = true)]
async fn a_cached_answer_is_reused_only_within_its_scope_and_ttl() {
    let backend = Backend::new(Behaviour::Answer);
    let (shield, _) = shield_with(&backend, config());
    let first = read(&shield, "1", &citizen("C1")).await.unwrap();
    let again = read(&shield, "1", &citizen("C1")).await.unwrap();
    assert_eq!(backend.calls(), 1);
    assert_eq!(first.reply, again.reply);

    // Another citizen, another purpose, another argument: never the cached answer.
    read(&shield, "1", &citizen("C2")).await.unwrap();
    read(&shield, "1", &agency("benefit-eligibility"))
        .await
        .unwrap();
    read(&shield, "1", &agency("fraud-investigation"))
        .await
        .unwrap();
    read(&shield, "2", &citizen("C1")).await.unwrap();
    assert_eq!(backend.calls(), 5);

    tokio::time::advance(Duration::from_secs(61)).await;
    read(&shield, "1", &citizen("C1")).await.unwrap();
    assert_eq!(
        backend.calls(),
        6,
        "past its TTL the answer is fetched again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_thousand_identical_concurrent_misses_make_one_backend_call() {
    let backend = Backend::new(Behaviour::Slow(Duration::from_millis(20)));
    let mut config = config();
    config.cache = None; // coalescing alone
    let (shield, _) = shield_with(&backend, config);
    let scope = citizen("C1");
    let answers = futures::future::join_all((0..1_000).map(|_| read(&shield, "1", &scope))).await;
    assert!(answers.iter().all(Result::is_ok));
    assert_eq!(backend.calls(), 1, "BAD_INPUTS row 50");
}

#[tokio::test(start_paused = true)]
async fn the_bulkhead_caps_concurrency_and_sheds_the_rest_quickly() {
    let backend = Backend::new(Behaviour::Slow(Duration::from_secs(5)));
    let mut config = config();
    config.cache = None;
    config.timeout = Duration::from_secs(10);
    let (shield, _) = shield_with(&backend, config);
    let scope = citizen("C1");
    let started = tokio::time::Instant::now();
    let ids: Vec<String> = (0..10).map(|n| n.to_string()).collect();
    let answers = futures::future::join_all(ids.iter().map(|id| read(&shield, id, &scope))).await;
    let busy: Vec<_> = answers
        .iter()
        .filter_map(|a| a.as_ref().err())
        .filter(|e| e.code() == ErrorCode::BackendBusy)
        .collect();
    assert_eq!(busy.len(), 6, "4 slots, 6 shed");
    assert_eq!(
        backend.peak.load(Ordering::SeqCst),
        4,
        "never more than max_concurrency"
    );
    assert_eq!(busy[0].retry_after(), Some(Duration::from_secs(1)));
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!(shield.in_flight(), 0, "every slot went back");
}

#[tokio::test(start_paused = true)]
async fn a_shed_call_fails_within_the_queue_timeout() {
    let backend = Backend::new(Behaviour::Hang);
    let mut config = config();
    config.cache = None;
    config.max_concurrency = 1;
    let (shield, _) = shield_with(&backend, config);
    let scope = citizen("C1");
    let hung = tokio::spawn({
        let shield = shield.clone();
        let scope = scope.clone();
        async move { read(&shield, "1", &scope).await }
    });
    tokio::task::yield_now().await;
    let started = tokio::time::Instant::now();
    let error = read(&shield, "2", &scope).await.expect_err("busy");
    assert_eq!(error.code(), ErrorCode::BackendBusy);
    assert!(
        started.elapsed() <= Duration::from_millis(50),
        "shed in ≤ 50 ms"
    );
    // The hung call ends at the deadline and its slot comes back (BAD_INPUTS row 47).
    let hung = hung.await.unwrap().expect_err("timed out");
    assert_eq!(hung.code(), ErrorCode::BackendTimeout);
    assert_eq!(shield.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn failed_reads_are_retried_but_writes_never_are() {
    let backend = Backend::new(Behaviour::Answer);
    let mut config = config();
    config.cache = None;
    let (shield, _) = shield_with(&backend, config);
    let scope = citizen("C1");
    backend.then(&[Behaviour::Refuse]);
    read(&shield, "1", &scope)
        .await
        .expect("retried once after a reset (row 54)");
    assert_eq!(backend.calls(), 2);

    backend.then(&[Behaviour::ServerError(503)]);
    let error = shield
        .call("claims", &args("1"), &scope, CallKind::Write)
        .await
        .expect_err("a write is not retried");
    assert_eq!(error.code(), ErrorCode::BackendUnavailable);
    assert_eq!(backend.calls(), 3);

    // A 500 is the backend's own bug, not a passing failure: no retry.
    backend.then(&[Behaviour::ServerError(500)]);
    read(&shield, "2", &scope).await.expect_err("500");
    assert_eq!(backend.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_write_that_times_out_has_an_unknown_outcome() {
    let backend = Backend::new(Behaviour::Hang);
    let (shield, _) = shield_with(&backend, config());
    let error = shield
        .call("claims", &args("1"), &citizen("C1"), CallKind::Write)
        .await
        .expect_err("timed out");
    assert_eq!(error.code(), ErrorCode::OutcomeUnknown, "BAD_INPUTS row 52");
    assert_eq!(backend.calls(), 1, "never retried");
}

#[tokio::test(start_paused = true)]
async fn a_503_storm_is_retried_within_the_budget() {
    let backend = Backend::new(Behaviour::ServerError(503));
    let mut config = config();
    config.cache = None;
    config.breaker.failures = u32::MAX; // the budget alone
    let (shield, _) = shield_with(&backend, config);
    let scope = citizen("C1");
    for n in 0..1_000 {
        let _ = read(&shield, &n.to_string(), &scope).await;
    }
    let retries = backend.calls() - 1_000;
    assert!(
        retries <= 101,
        "retries ≤ 10 % (+1 at start): {retries} (row 51)"
    );
    assert!(retries >= 50, "the budget is used: {retries}");
}

#[tokio::test(start_paused = true)]
async fn stale_answers_are_served_marked_when_the_backend_fails() {
    let backend = Backend::new(Behaviour::Answer);
    let (shield, _) = shield_with(&backend, config());
    let scope = citizen("C1");
    let fresh = read(&shield, "1", &scope).await.unwrap();
    assert!(fresh.stale.is_none());

    tokio::time::advance(Duration::from_secs(90)).await;
    backend.set(Behaviour::Refuse);
    let stale = read(&shield, "1", &scope).await.expect("stale copy");
    assert_eq!(stale.reply, fresh.reply);
    let staleness = stale.stale.expect("marked stale");
    assert_eq!(staleness.age, Duration::from_secs(90));
    assert_eq!(staleness.reason, ErrorCode::BackendUnavailable);

    // Past the stale window there is nothing to serve.
    tokio::time::advance(Duration::from_secs(600)).await;
    assert!(read(&shield, "1", &scope).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_fails_fast_or_serves_stale() {
    let backend = Backend::new(Behaviour::Answer);
    let mut config = config();
    config.retry.attempts = 1;
    let (shield, _) = shield_with(&backend, config);
    let scope = citizen("C1");
    read(&shield, "cached", &scope).await.unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    backend.set(Behaviour::ServerError(503));
    for n in 0..5 {
        let _ = read(&shield, &n.to_string(), &scope).await;
    }
    let calls = backend.calls();
    let error = read(&shield, "9", &scope).await.expect_err("open");
    assert_eq!(error.code(), ErrorCode::BackendUnavailable);
    assert!(matches!(error, ShieldError::Open { .. }));
    assert_eq!(backend.calls(), calls, "no call while open");
    let stale = read(&shield, "cached", &scope)
        .await
        .expect("stale while open");
    assert!(stale.stale.is_some());

    // After the open period, probes close it again.
    backend.set(Behaviour::Answer);
    tokio::time::advance(Duration::from_secs(30)).await;
    for n in 0..3 {
        read(&shield, &format!("probe{n}"), &scope)
            .await
            .expect("probe");
    }
    read(&shield, "after", &scope).await.expect("closed");
}

#[tokio::test(start_paused = true)]
async fn no_call_is_made_in_a_maintenance_window() {
    let now = Utc::now();
    let window = MaintenanceWindow {
        from: (now - chrono::Duration::hours(1)).time(),
        until: (now + chrono::Duration::hours(1)).time(),
        offset: chrono::FixedOffset::east_opt(0).unwrap(),
    };
    let mut config = config();
    config.maintenance = vec![window];
    let backend = Backend::new(Behaviour::Answer);
    let (shield, _) = shield_with(&backend, config);
    let scope = citizen("C1");
    let error = read(&shield, "2", &scope).await.expect_err("maintenance");
    assert!(matches!(error, ShieldError::Maintenance { .. }));
    assert_eq!(error.code(), ErrorCode::BackendUnavailable);
    let wait = error.retry_after().expect("retry after the window");
    assert!(wait > Duration::from_secs(3_500) && wait <= Duration::from_secs(3_600));
    let batch = shield
        .call_many("cases", &[args("a"), args("b")], &scope)
        .await;
    assert!(
        batch
            .iter()
            .all(|answer| matches!(answer, Err(ShieldError::Maintenance { .. })))
    );
    assert_eq!(backend.calls(), 0, "no call in the window");
}

#[tokio::test(start_paused = true)]
async fn a_load_that_started_before_a_consent_withdrawal_is_not_cached() {
    let backend = Backend::new(Behaviour::Gate);
    let (shield, hub) = shield_with(&backend, config());
    let scope = agency("benefit-eligibility");
    let load = tokio::spawn({
        let shield = shield.clone();
        let scope = scope.clone();
        async move { read(&shield, "1", &scope).await }
    });
    while backend.calls() == 0 {
        tokio::task::yield_now().await;
    }
    hub.consent_withdrawn("benefits");
    backend.release.notify_one();
    load.await
        .unwrap()
        .expect("the in-flight caller still gets its answer");

    backend.set(Behaviour::Answer);
    read(&shield, "1", &scope).await.unwrap();
    assert_eq!(
        backend.calls(),
        2,
        "the withdrawn load was not cached (row 40)"
    );
    read(&shield, "1", &scope).await.unwrap();
    assert_eq!(backend.calls(), 2, "later loads are cached again");

    // A withdrawal also retires what was already cached for that agency, and nothing else.
    read(&shield, "1", &citizen("C1")).await.unwrap();
    hub.consent_withdrawn("benefits");
    read(&shield, "1", &scope).await.unwrap();
    read(&shield, "1", &citizen("C1")).await.unwrap();
    assert_eq!(backend.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn withdrawals_heard_from_other_instances_and_resyncs_retire_agency_entries() {
    let backend = Backend::new(Behaviour::Answer);
    let (shield, hub) = shield_with(&backend, config());
    let scope = agency("benefit-eligibility");
    read(&shield, "1", &scope).await.unwrap();
    read(&shield, "1", &citizen("C1")).await.unwrap();
    assert_eq!(backend.calls(), 2);

    // Another instance's withdrawal, heard through the store: the agency's entry goes.
    hub.consent_withdrawn_elsewhere("benefits");
    read(&shield, "1", &scope).await.unwrap();
    assert_eq!(backend.calls(), 3);

    // Notices may have been missed: every agency's entries go, including agencies never
    // withdrawn from before; a citizen's own reads rest on no consent and stay.
    hub.consents_may_have_changed();
    read(&shield, "1", &scope).await.unwrap();
    read(&shield, "1", &citizen("C1")).await.unwrap();
    assert_eq!(backend.calls(), 4);
    let text = hub.metrics().render();
    assert!(
        text.contains("civicgraph_consent_broadcasts_received_total{kind=\"withdrawn\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("civicgraph_consent_broadcasts_received_total{kind=\"resync\"} 1"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn invalidation_drops_entries_and_keeps_loads_in_flight_out() {
    let backend = Backend::new(Behaviour::Answer);
    let (shield, _) = shield_with(&backend, config());
    let scope = citizen("C1");
    read(&shield, "1", &scope).await.unwrap();
    assert_eq!(shield.invalidate(Some("claims")).await, 1);
    read(&shield, "1", &scope).await.unwrap();
    assert_eq!(backend.calls(), 2);

    backend.set(Behaviour::Gate);
    let load = tokio::spawn({
        let shield = shield.clone();
        let scope = scope.clone();
        async move { read(&shield, "2", &scope).await }
    });
    while backend.calls() == 2 {
        tokio::task::yield_now().await;
    }
    shield.invalidate(None).await;
    backend.release.notify_one();
    load.await.unwrap().unwrap();
    backend.set(Behaviour::Answer);
    read(&shield, "2", &scope).await.unwrap();
    assert_eq!(
        backend.calls(),
        4,
        "the load in flight during invalidation was not cached"
    );
}

#[tokio::test(start_paused = true)]
async fn a_list_of_keys_costs_one_call_per_batch_reusing_cached_and_in_flight_answers() {
    let backend = Backend::new(Behaviour::Answer);
    let (shield, _) = shield_with(&backend, config());
    let scope = citizen("C1");
    shield
        .call("cases", &args("k3"), &scope, CallKind::Read)
        .await
        .unwrap();
    let calls = backend.calls();
    let all: Vec<Arguments> = (0..100).map(|n| args(&format!("k{}", n % 90))).collect();
    let answers = shield.call_many("cases", &all, &scope).await;
    assert_eq!(answers.len(), 100);
    for (n, answer) in answers.iter().enumerate() {
        let value = answer.as_ref().unwrap().reply.value.clone().unwrap();
        assert_eq!(value["key"], json!(format!("k{}", n % 90)), "position {n}");
    }
    // 89 distinct uncached keys in batches of 40: three calls.
    assert_eq!(backend.calls() - calls, 3);
    assert_eq!(backend.batch_calls.load(Ordering::SeqCst), 3);
    let again = shield.call_many("cases", &all, &scope).await;
    assert!(again.iter().all(Result::is_ok));
    assert_eq!(backend.calls() - calls, 3, "all cached now");
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_fails_each_key_or_serves_each_stale_copy() {
    let backend = Backend::new(Behaviour::Answer);
    let mut config = config();
    config.retry.attempts = 1;
    let (shield, _) = shield_with(&backend, config);
    let scope = citizen("C1");
    shield.call_many("cases", &[args("a")], &scope).await;
    tokio::time::advance(Duration::from_secs(61)).await;
    backend.set(Behaviour::Refuse);
    let answers = shield
        .call_many("cases", &[args("a"), args("b")], &scope)
        .await;
    assert!(answers[0].as_ref().unwrap().stale.is_some());
    assert_eq!(
        answers[1].as_ref().unwrap_err().code(),
        ErrorCode::BackendUnavailable
    );
}

#[tokio::test(start_paused = true)]
async fn with_the_shield_off_every_call_goes_to_the_backend() {
    let backend = Backend::new(Behaviour::Answer);
    let shield = Shield::new(
        "ui",
        Arc::new(Scripted(Arc::clone(&backend))),
        config(),
        [("claims".to_string(), None)],
        ShieldHub::new(false),
    );
    let scope = citizen("C1");
    read(&shield, "1", &scope).await.unwrap();
    read(&shield, "1", &scope).await.unwrap();
    assert_eq!(backend.calls(), 2);
}

/// A backend call's span names the connector, operation, calling agency, client and purpose,
/// the cache outcome and the call's outcome, and nothing the caller asked about.
#[tokio::test]
async fn backend_call_spans_carry_names_and_outcomes_never_arguments() {
    use tracing::Instrument as _;
    use tracing_subscriber::layer::SubscriberExt;

    let spans = crate::telemetry::capture::Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let backend = Backend::new(Behaviour::Answer);
    let (shield, _hub) = shield_with(&backend, config());
    let context = context::CallContext {
        purpose: Some("benefit-eligibility".into()),
        request_id: Some("req-7".into()),
    };
    let tin = "123-45-6789";
    let scope = agency("benefit-eligibility");
    context::scope(context.clone(), async {
        read(&shield, tin, &scope).await.expect("an answer");
        read(&shield, tin, &scope).await.expect("a cached answer");
    })
    .instrument(tracing::info_span!("request"))
    .await;
    backend.set(Behaviour::ServerError(500));
    context::scope(context, async {
        let _ = read(&shield, "C0000001", &citizen("C0000001")).await;
    })
    .await;

    let calls = spans.named("backend_call");
    assert_eq!(calls.len(), 3, "{calls:?}");
    let first = &calls[0].fields;
    for (field, value) in [
        ("connector", "ui"),
        ("operation", "claims"),
        ("caller", "agency"),
        ("agency", "benefits"),
        ("client_id", "portal"),
        ("purpose", "benefit-eligibility"),
        ("request_id", "req-7"),
        ("kind", "read"),
        ("cache", "miss"),
        ("outcome", "ok"),
    ] {
        assert_eq!(
            first.get(field).map(String::as_str),
            Some(value),
            "{field}: {first:?}"
        );
    }
    assert_eq!(calls[1].fields["cache"], "hit");
    let failed = &calls[2].fields;
    assert_eq!(failed["caller"], "citizen");
    assert_eq!(failed["outcome"], "BACKEND_UNAVAILABLE");
    assert_eq!(failed["otel.status_code"], "ERROR");
    let everything = format!("{calls:?}");
    assert!(!everything.contains(tin), "{everything}");
    assert!(!everything.contains("C0000001"), "{everything}");
}
