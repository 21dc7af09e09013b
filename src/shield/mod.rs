//! The shield: the one way every backend call goes, so a 30-year-old backend survives a surge.
//!
//! cache → coalesce → bulkhead → circuit breaker → timeout/retry → connector.
//!
//! - **Cache** (`cache`): per operation, keyed by [`key::cache_key`] (connector, operation,
//!   arguments and, unless the operation's answers are shared, who asks and why). The policy
//!   decision is made by the graph *before* a field reaches the shield, so a cached answer is
//!   only ever served to a caller allowed to see it. Answers past their TTL are kept for the
//!   stale window and served, marked, when the backend cannot answer. An optional Redis tier
//!   is shared by every instance.
//! - **Coalescing**: identical calls in flight (same key, so same scope) share one backend call;
//!   a batch's keys are joinable as single calls while it runs.
//! - **Bulkhead** (`bulkhead`): at most `max_concurrency` calls in flight; a caller waits at
//!   most `queue_timeout_ms`, then fails fast with `BACKEND_BUSY`.
//! - **Breaker** (`breaker`) and **retries** (`budget`): reads are retried with jittered
//!   backoff, at most 3 attempts, within a budget of 10 % of calls; writes never are, and a
//!   write that timed out is `OUTCOME_UNKNOWN`.
//! - **Maintenance windows**: no call is made; a stale answer is served with its age.

mod breaker;
mod budget;
mod bulkhead;
mod cache;
pub mod key;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::time::Instant;
use tracing::{Instrument as _, Span};

use crate::cache_tier::{RedisTier, StoredEntry, TierRead};
use crate::config::ShieldConfig;
use crate::connectors::context;
use crate::connectors::{Arguments, BatchSpec, CallError, Connector, Reply};
use crate::error::ErrorCode;
use crate::metrics::{BroadcastKind, Metrics, RedisOutcome};
use crate::telemetry;

use breaker::{Breaker, Verdict};
use budget::RetryBudget;
use bulkhead::Bulkhead;
use cache::{AgencyGenerations, Generations, Lookup, OperationCache, StaleCopy};
pub use key::{CacheKey, CacheScope, cache_key};

/// Extra time the shield allows beyond a connector's own deadline before it gives up on a
/// call itself (the connector normally answers `BACKEND_TIMEOUT` first).
const DEADLINE_GRACE: Duration = Duration::from_millis(250);

/// Whether a call may change the backend: writes are never cached, coalesced or retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A query field: idempotent.
    Read,
    /// A mutation field.
    Write,
}

/// What the shields of one gateway share: metrics, the Redis tier, the agencies' consent
/// generations, and whether shielding is on at all.
#[derive(Debug)]
pub struct ShieldHub {
    metrics: Arc<Metrics>,
    redis: OnceLock<RedisTier>,
    agencies: AgencyGenerations,
    enabled: bool,
}

impl ShieldHub {
    /// A hub; `enabled = false` sends every call straight to its connector (`[shield]
    /// enabled = false`, for measuring what the shield buys).
    pub fn new(enabled: bool) -> Arc<Self> {
        Arc::new(Self {
            metrics: Arc::new(Metrics::new()),
            redis: OnceLock::new(),
            agencies: AgencyGenerations::default(),
            enabled,
        })
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Adds the shared Redis tier (once, at start).
    pub fn set_redis(&self, tier: RedisTier) {
        let _ = self.redis.set(tier);
    }

    /// A citizen withdrew a consent given to `agency`: none of that agency's cached answers is
    /// served again, and none of its loads in flight is cached.
    pub fn consent_withdrawn(&self, agency: &str) {
        self.agencies.bump(agency);
    }

    /// Another instance (or this one) announced a withdrawal from `agency` through the store
    /// (`consent::broadcast`): drop that agency's cached reads here too.
    pub fn consent_withdrawn_elsewhere(&self, agency: &str) {
        self.agencies.bump(agency);
        self.metrics.consent_broadcast(BroadcastKind::Withdrawn);
    }

    /// Withdrawals may have been missed (the listener was reconnecting, or a notice was
    /// unreadable): no agency's cached read is served again.
    pub fn consents_may_have_changed(&self) {
        self.agencies.bump_all();
        self.metrics.consent_broadcast(BroadcastKind::Resync);
    }

    /// Whether this instance hears other instances' withdrawals now (`/metrics` shows it).
    pub fn set_consent_listener_up(&self, up: bool) {
        self.metrics.consent_listener_up(up);
    }
}

/// How fresh a served answer is.
#[derive(Debug, Clone, PartialEq)]
pub struct Staleness {
    /// When the gateway fetched it.
    pub fetched_at: DateTime<Utc>,
    /// How old it is.
    pub age: Duration,
    /// Why the backend was not asked (the error it would have been).
    pub reason: ErrorCode,
}

/// An answer and, if it is a stale copy, how stale.
#[derive(Debug, Clone)]
pub struct Served {
    /// The connector's answer.
    pub reply: Arc<Reply>,
    /// Set when the backend could not answer and a copy past its TTL was served instead.
    pub stale: Option<Staleness>,
}

impl Served {
    fn fresh(reply: Arc<Reply>) -> Self {
        Self { reply, stale: None }
    }
}

/// Why the shield did not return an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShieldError {
    /// Every slot was taken for the whole queue timeout.
    #[error(
        "`{connector}` already has {limit} calls in flight and none finished within {waited_ms} ms"
    )]
    Busy {
        /// The connector.
        connector: String,
        /// Its `max_concurrency`.
        limit: usize,
        /// How long the call waited.
        waited_ms: u64,
    },
    /// The circuit is open.
    #[error("the circuit to `{connector}` is open after repeated failures")]
    Open {
        /// The connector.
        connector: String,
        /// When the next probe may go.
        retry_after: Duration,
    },
    /// The backend is in a maintenance window.
    #[error("`{connector}` is in its maintenance window until {until}")]
    Maintenance {
        /// The connector.
        connector: String,
        /// When the window ends.
        until: DateTime<Utc>,
    },
    /// A write timed out.
    #[error("a write to `{connector}` timed out, so whether it happened is unknown")]
    OutcomeUnknown {
        /// The connector.
        connector: String,
    },
    /// The connector failed.
    #[error(transparent)]
    Call(Arc<CallError>),
}

impl ShieldError {
    /// The code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Busy { .. } => ErrorCode::BackendBusy,
            Self::Open { .. } | Self::Maintenance { .. } => ErrorCode::BackendUnavailable,
            Self::OutcomeUnknown { .. } => ErrorCode::OutcomeUnknown,
            Self::Call(error) => error.code(),
        }
    }

    /// When trying again makes sense, for `extensions.retryAfter` and `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Busy { .. } => Some(Duration::from_secs(1)),
            Self::Open { retry_after, .. } => Some(*retry_after),
            Self::Maintenance { until, .. } => Some(
                (*until - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::from_secs(1)),
            ),
            _ => None,
        }
    }

    /// The connector error, when the connector itself failed.
    pub fn call_error(&self) -> Option<&CallError> {
        match self {
            Self::Call(error) => Some(error),
            _ => None,
        }
    }

    /// Whether the backend could not give an answer, so a stale copy beats none. An answer
    /// the backend *did* give (an unknown entity, a refused argument) is never papered over.
    fn allows_stale(&self) -> bool {
        match self {
            Self::Busy { .. } | Self::Open { .. } | Self::Maintenance { .. } => true,
            Self::OutcomeUnknown { .. } => false,
            Self::Call(error) => is_backend_failure(error),
        }
    }
}

/// Unreachable, timed out, or failing with a server error: counts against the breaker and may
/// be retried (for reads).
fn is_backend_failure(error: &CallError) -> bool {
    matches!(
        error,
        CallError::Unreachable(_) | CallError::Timeout { .. } | CallError::ServerError { .. }
    )
}

fn retryable(error: &CallError) -> bool {
    match error {
        CallError::Unreachable(_) | CallError::Timeout { .. } => true,
        CallError::ServerError { status } => matches!(status, 502..=504),
        _ => false,
    }
}

type SharedLoad = Shared<BoxFuture<'static, Result<Arc<Reply>, ShieldError>>>;
type SharedBatch = Shared<BoxFuture<'static, Result<Arc<Vec<Arc<Reply>>>, ShieldError>>>;

/// One connector behind its shield; the only handle the graph has on a backend.
#[derive(Debug, Clone)]
pub struct Shield {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    connector: Arc<dyn Connector>,
    config: ShieldConfig,
    caches: HashMap<String, OperationCache>,
    batches: HashMap<String, BatchSpec>,
    inflight: Mutex<HashMap<CacheKey, SharedLoad>>,
    bulkhead: Bulkhead,
    breaker: Breaker,
    budget: RetryBudget,
    hub: Arc<ShieldHub>,
}

impl Shield {
    /// Puts `connector` behind a shield configured by `config`; `operations` names every
    /// operation with its batch form, if any.
    pub fn new(
        name: &str,
        connector: Arc<dyn Connector>,
        config: ShieldConfig,
        operations: impl IntoIterator<Item = (String, Option<BatchSpec>)>,
        hub: Arc<ShieldHub>,
    ) -> Self {
        let metrics = Arc::clone(&hub.metrics);
        let mut caches = HashMap::new();
        let mut batches = HashMap::new();
        for (operation, batch) in operations {
            if let Some(cache) = &config.cache {
                caches.insert(operation.clone(), OperationCache::new(cache));
            }
            if let Some(batch) = batch {
                batches.insert(operation, batch);
            }
        }
        Self {
            inner: Arc::new(Inner {
                name: name.to_string(),
                bulkhead: Bulkhead::new(
                    name,
                    config.max_concurrency,
                    config.queue_timeout,
                    Arc::clone(&metrics),
                ),
                breaker: Breaker::new(name, config.breaker.clone(), Arc::clone(&metrics)),
                budget: RetryBudget::new(config.retry.budget_percent),
                connector,
                config,
                caches,
                batches,
                inflight: Mutex::new(HashMap::new()),
                hub,
            }),
        }
    }

    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The operation's batch form, if it has one.
    pub fn batch_spec(&self, operation: &str) -> Option<&BatchSpec> {
        self.inner.batches.get(operation)
    }

    /// Calls in flight to the backend now.
    pub fn in_flight(&self) -> usize {
        self.inner.bulkhead.in_flight()
    }

    /// Drops the cached answers of one operation, or of all, here and in the Redis tier, and
    /// keeps loads already in flight from writing theirs. Returns how many in-memory entries
    /// were dropped.
    pub async fn invalidate(&self, operation: Option<&str>) -> u64 {
        let mut dropped = 0;
        for (name, cache) in &self.inner.caches {
            if operation.is_none_or(|op| op == name) {
                dropped += cache.invalidate();
                if let Some(tier) = self.inner.hub.redis.get() {
                    let prefix = crate::cache_tier::key_prefix(&self.inner.name, name);
                    if let Err(error) = tier.invalidate(&prefix).await {
                        tracing::warn!(connector = %self.inner.name, operation = %name, %error, "Could not invalidate the shared cache tier.");
                    }
                }
            }
        }
        dropped
    }

    /// One call through the shield, in its own `backend_call` span (see [`crate::telemetry`]).
    pub async fn call(
        &self,
        operation: &str,
        args: &Arguments,
        scope: &CacheScope,
        kind: CallKind,
    ) -> Result<Served, ShieldError> {
        let span = telemetry::backend_span(&self.inner.name, operation, scope, kind);
        let result = self
            .call_in_span(operation, args, scope, kind)
            .instrument(span.clone())
            .await;
        let code = result.as_ref().err().map(|error| error.code().as_str());
        telemetry::record_outcome(&span, code);
        result
    }

    async fn call_in_span(
        &self,
        operation: &str,
        args: &Arguments,
        scope: &CacheScope,
        kind: CallKind,
    ) -> Result<Served, ShieldError> {
        let inner = &self.inner;
        if !inner.hub.enabled {
            return inner
                .connector
                .call_with_freshness(operation, args)
                .await
                .map(|reply| Served::fresh(Arc::new(reply)))
                .map_err(|error| ShieldError::Call(Arc::new(error)));
        }
        if kind == CallKind::Write {
            return inner
                .guarded(operation, CallKind::Write, || {
                    inner.connector.call_with_freshness(operation, args)
                })
                .await
                .map(|reply| Served::fresh(Arc::new(reply)));
        }
        let scope = inner.scope_for(scope);
        let key = cache_key(&inner.name, operation, args, scope);
        let started = inner.generations(operation, scope.agency());
        let stale = match inner.cached(operation, &key, started).await {
            Cached::Fresh(reply) => {
                Span::current().record("cache", "hit");
                return Ok(Served::fresh(reply));
            }
            Cached::Stale(copy) => Some(copy),
            Cached::Miss => None,
        };
        Span::current().record("cache", "miss");
        if let Some(error) = inner.in_maintenance() {
            return serve_stale_or(inner, operation, stale, error);
        }
        let load = {
            let mut inflight = lock(&inner.inflight);
            match inflight.get(&key) {
                Some(load) => {
                    inner.hub.metrics.coalesced(&inner.name, operation);
                    Span::current().record("cache", "coalesced");
                    load.clone()
                }
                None => {
                    let load = Arc::clone(inner).load(
                        operation.to_string(),
                        key.clone(),
                        args.clone(),
                        started,
                        scope.agency().map(str::to_string),
                    );
                    inflight.insert(key, load.clone());
                    load
                }
            }
        };
        match load.await {
            Ok(reply) => Ok(Served::fresh(reply)),
            Err(error) => serve_stale_or(inner, operation, stale, error),
        }
    }

    /// Many reads of one operation that differ only in its batch key (a list of parents'
    /// fields): cached and in-flight answers are reused, and the rest cost one backend call
    /// per `max` keys. Without a batch form, the calls go one by one, concurrently, still
    /// bounded by the bulkhead. One answer per entry of `args`, in order.
    pub async fn call_many(
        &self,
        operation: &str,
        args: &[Arguments],
        scope: &CacheScope,
    ) -> Vec<Result<Served, ShieldError>> {
        let span = telemetry::backend_span(&self.inner.name, operation, scope, CallKind::Read);
        span.record("keys", args.len());
        let results = self
            .call_many_in_span(operation, args, scope)
            .instrument(span.clone())
            .await;
        let code = results
            .iter()
            .find_map(|result| result.as_ref().err().map(|error| error.code().as_str()));
        telemetry::record_outcome(&span, code);
        results
    }

    async fn call_many_in_span(
        &self,
        operation: &str,
        args: &[Arguments],
        scope: &CacheScope,
    ) -> Vec<Result<Served, ShieldError>> {
        let inner = &self.inner;
        let Some(spec) = inner.batches.get(operation).cloned() else {
            return futures::future::join_all(
                args.iter()
                    .map(|args| self.call(operation, args, scope, CallKind::Read)),
            )
            .await;
        };
        if !inner.hub.enabled {
            return inner.batch_unshielded(operation, args, spec.max).await;
        }
        let scope = inner.scope_for(scope);
        let started = inner.generations(operation, scope.agency());
        let keys: Vec<CacheKey> = args
            .iter()
            .map(|args| cache_key(&inner.name, operation, args, scope))
            .collect();
        let mut results: Vec<Option<Result<Served, ShieldError>>> = vec![None; args.len()];
        let mut stale: Vec<Option<StaleCopy>> = vec![None; args.len()];
        let lookups =
            futures::future::join_all(keys.iter().map(|key| inner.cached(operation, key, started)))
                .await;
        for (index, lookup) in lookups.into_iter().enumerate() {
            match lookup {
                Cached::Fresh(reply) => results[index] = Some(Ok(Served::fresh(reply))),
                Cached::Stale(copy) => stale[index] = Some(copy),
                Cached::Miss => {}
            }
        }
        let missing: Vec<usize> = (0..args.len()).filter(|&i| results[i].is_none()).collect();
        Span::current().record(
            "cache",
            match missing.len() {
                0 => "hit",
                n if n == args.len() => "miss",
                _ => "partial",
            },
        );
        if missing.is_empty() {
            return results.into_iter().flatten().collect();
        }
        if let Some(error) = inner.in_maintenance() {
            for index in missing {
                results[index] = Some(serve_stale_or(
                    inner,
                    operation,
                    stale[index].take(),
                    error.clone(),
                ));
            }
            return results.into_iter().flatten().collect();
        }
        let waits: Vec<(usize, SharedLoad)> = {
            let mut inflight = lock(&inner.inflight);
            // Each distinct key once: joined if another call already loads it, else loaded here.
            let mut seen = std::collections::HashSet::new();
            let mut to_load: Vec<usize> = Vec::new();
            for &index in &missing {
                let key = &keys[index];
                if !seen.insert(key) {
                    continue;
                }
                if inflight.contains_key(key) {
                    inner.hub.metrics.coalesced(&inner.name, operation);
                } else {
                    to_load.push(index);
                }
            }
            for chunk in to_load.chunks(spec.max.max(1)) {
                let chunk_keys: Vec<CacheKey> = chunk.iter().map(|&i| keys[i].clone()).collect();
                let chunk_args: Vec<Arguments> = chunk.iter().map(|&i| args[i].clone()).collect();
                let batch = Arc::clone(inner).load_batch(
                    operation.to_string(),
                    chunk_keys.clone(),
                    chunk_args,
                    started,
                    scope.agency().map(str::to_string),
                );
                for (position, key) in chunk_keys.into_iter().enumerate() {
                    let one: SharedLoad = batch
                        .clone()
                        .map(move |answers| answers.map(|all| Arc::clone(&all[position])))
                        .boxed()
                        .shared();
                    inflight.insert(key, one);
                }
            }
            missing
                .iter()
                .filter_map(|&index| inflight.get(&keys[index]).map(|load| (index, load.clone())))
                .collect()
        };
        let answers = futures::future::join_all(
            waits
                .into_iter()
                .map(|(index, load)| async move { (index, load.await) }),
        )
        .await;
        for (index, answer) in answers {
            results[index] = Some(match answer {
                Ok(reply) => Ok(Served::fresh(reply)),
                Err(error) => serve_stale_or(inner, operation, stale[index].take(), error),
            });
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(ShieldError::Call(Arc::new(CallError::BadResponse {
                        reason: "a batched answer went missing".into(),
                    })))
                })
            })
            .collect()
    }
}

/// A stale copy when the error allows one, else the error.
fn serve_stale_or(
    inner: &Inner,
    operation: &str,
    stale: Option<StaleCopy>,
    error: ShieldError,
) -> Result<Served, ShieldError> {
    match stale {
        Some(copy) if error.allows_stale() => {
            inner.hub.metrics.cache_stale_served(&inner.name, operation);
            Span::current().record("cache", "stale");
            tracing::info!(connector = %inner.name, operation, code = %error.code(), age_s = copy.age.as_secs(), "Served a stale answer: the backend could not answer.");
            Ok(Served {
                reply: copy.reply,
                stale: Some(Staleness {
                    fetched_at: copy.fetched_at,
                    age: copy.age,
                    reason: error.code(),
                }),
            })
        }
        _ => Err(error),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the cache tiers hold for a key.
enum Cached {
    Fresh(Arc<Reply>),
    Stale(StaleCopy),
    Miss,
}

impl Inner {
    fn scope_for<'a>(&self, scope: &'a CacheScope) -> &'a CacheScope {
        if self.config.cache.as_ref().is_some_and(|cache| cache.shared) {
            &CacheScope::Shared
        } else {
            scope
        }
    }

    fn generations(&self, operation: &str, agency: Option<&str>) -> Generations {
        Generations {
            operation: self
                .caches
                .get(operation)
                .map_or(0, OperationCache::generation),
            agency: self.hub.agencies.current(agency),
        }
    }

    fn in_maintenance(&self) -> Option<ShieldError> {
        let now = Utc::now();
        self.config
            .maintenance
            .iter()
            .find(|window| window.contains(now))
            .map(|window| ShieldError::Maintenance {
                connector: self.name.clone(),
                until: window.ends_after(now),
            })
    }

    /// Looks in memory, then in the Redis tier (a fresh Redis entry is copied into memory).
    async fn cached(&self, operation: &str, key: &CacheKey, current: Generations) -> Cached {
        let Some(cache) = self.caches.get(operation) else {
            return Cached::Miss;
        };
        let mut stale = None;
        match cache.lookup(key, current) {
            Lookup::Fresh(reply) => {
                self.hub.metrics.cache_hit(&self.name, operation);
                return Cached::Fresh(reply);
            }
            Lookup::Stale(copy) => stale = Some(copy),
            Lookup::Miss => {}
        }
        if let Some(tier) = self.hub.redis.get() {
            match tier.get(key.as_bytes()).await {
                TierRead::Hit(entry) => {
                    self.hub
                        .metrics
                        .redis_outcome(&self.name, RedisOutcome::Hit);
                    let age = (Utc::now() - entry.loaded_at).to_std().unwrap_or_default();
                    let reply = Arc::new(Reply {
                        value: entry.value,
                        as_of: entry.as_of,
                    });
                    if age < cache.ttl {
                        let loaded = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                        cache.insert(
                            key.clone(),
                            Arc::clone(&reply),
                            current,
                            current,
                            loaded,
                            entry.loaded_at,
                        );
                        self.hub.metrics.cache_hit(&self.name, operation);
                        return Cached::Fresh(reply);
                    }
                    if age < cache.ttl + cache.stale && stale.is_none() {
                        stale = Some(StaleCopy {
                            reply,
                            fetched_at: entry.loaded_at,
                            age,
                        });
                    }
                }
                TierRead::Miss => self
                    .hub
                    .metrics
                    .redis_outcome(&self.name, RedisOutcome::Miss),
                TierRead::Unavailable => self
                    .hub
                    .metrics
                    .redis_outcome(&self.name, RedisOutcome::Error),
                TierRead::Garbage => self
                    .hub
                    .metrics
                    .redis_outcome(&self.name, RedisOutcome::Garbage),
            }
        }
        self.hub.metrics.cache_miss(&self.name, operation);
        match stale {
            Some(copy) => Cached::Stale(copy),
            None => Cached::Miss,
        }
    }

    /// Keeps a fresh answer in memory and in the Redis tier, unless a consent withdrawal or an
    /// invalidation happened since its load started.
    fn store(
        &self,
        operation: &str,
        key: CacheKey,
        reply: &Arc<Reply>,
        started: Generations,
        agency: Option<&str>,
    ) {
        let Some(cache) = self.caches.get(operation) else {
            return;
        };
        let current = self.generations(operation, agency);
        let fetched_at = Utc::now();
        let stored = cache.insert(
            key.clone(),
            Arc::clone(reply),
            started,
            current,
            Instant::now(),
            fetched_at,
        );
        if !stored {
            tracing::debug!(connector = %self.name, operation, "Not cached: consent withdrawn or cache invalidated while loading.");
            return;
        }
        if let Some(tier) = self.hub.redis.get() {
            let tier = tier.clone();
            let entry = StoredEntry {
                value: reply.value.clone(),
                as_of: reply.as_of,
                loaded_at: fetched_at,
            };
            let ttl = cache.ttl + cache.stale;
            tokio::spawn(async move { tier.put(key.as_bytes(), &entry, ttl).await });
        }
    }

    /// The shared load of one key: it runs in the context of the request that started it,
    /// writes the cache, and leaves the in-flight map when done.
    fn load(
        self: Arc<Self>,
        operation: String,
        key: CacheKey,
        args: Arguments,
        started: Generations,
        agency: Option<String>,
    ) -> SharedLoad {
        let context = context::current().unwrap_or_default();
        async move {
            let result = context::scope(
                context,
                self.guarded(&operation, CallKind::Read, || {
                    self.connector.call_with_freshness(&operation, &args)
                }),
            )
            .await
            .map(Arc::new);
            if let Ok(reply) = &result {
                self.store(&operation, key.clone(), reply, started, agency.as_deref());
            }
            lock(&self.inflight).remove(&key);
            result
        }
        .instrument(Span::current())
        .boxed()
        .shared()
    }

    /// The shared load of one batch of keys.
    fn load_batch(
        self: Arc<Self>,
        operation: String,
        keys: Vec<CacheKey>,
        args: Vec<Arguments>,
        started: Generations,
        agency: Option<String>,
    ) -> SharedBatch {
        let context = context::current().unwrap_or_default();
        async move {
            self.hub
                .metrics
                .batched_call(&self.name, &operation, args.len());
            let result = context::scope(
                context,
                self.guarded(&operation, CallKind::Read, || async {
                    let replies = self.connector.call_batch(&operation, &args).await?;
                    if replies.len() != args.len() {
                        return Err(CallError::BadResponse {
                            reason: format!(
                                "a batch of {} keys was answered with {} entries",
                                args.len(),
                                replies.len()
                            ),
                        });
                    }
                    Ok(replies)
                }),
            )
            .await
            .map(|replies| Arc::new(replies.into_iter().map(Arc::new).collect::<Vec<_>>()));
            if let Ok(replies) = &result {
                for (key, reply) in keys.iter().zip(replies.iter()) {
                    self.store(&operation, key.clone(), reply, started, agency.as_deref());
                }
            }
            let mut inflight = lock(&self.inflight);
            for key in &keys {
                inflight.remove(key);
            }
            drop(inflight);
            result
        }
        .instrument(Span::current())
        .boxed()
        .shared()
    }

    /// Batches with the shield off: straight to the connector, `max` keys per call.
    async fn batch_unshielded(
        &self,
        operation: &str,
        args: &[Arguments],
        max: usize,
    ) -> Vec<Result<Served, ShieldError>> {
        let mut results = Vec::with_capacity(args.len());
        for chunk in args.chunks(max.max(1)) {
            match self.connector.call_batch(operation, chunk).await {
                Ok(replies) if replies.len() == chunk.len() => results.extend(
                    replies
                        .into_iter()
                        .map(|reply| Ok(Served::fresh(Arc::new(reply)))),
                ),
                Ok(replies) => {
                    let error = ShieldError::Call(Arc::new(CallError::BadResponse {
                        reason: format!(
                            "a batch of {} keys was answered with {} entries",
                            chunk.len(),
                            replies.len()
                        ),
                    }));
                    results.extend(chunk.iter().map(|_| Err(error.clone())));
                }
                Err(error) => {
                    // Each entry of a failed batch fails the same way.
                    let error = ShieldError::Call(Arc::new(error));
                    results.extend(chunk.iter().map(|_| Err(error.clone())));
                }
            }
        }
        results
    }

    /// bulkhead → breaker → timeout → connector, retried for reads.
    async fn guarded<T, F, Fut>(
        &self,
        operation: &str,
        kind: CallKind,
        mut attempt: F,
    ) -> Result<T, ShieldError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let attempts = match kind {
            CallKind::Read => self.config.retry.attempts.max(1),
            CallKind::Write => 1,
        };
        self.budget.deposit();
        let mut tried = 0;
        loop {
            tried += 1;
            if let Some(error) = self.in_maintenance() {
                return Err(error);
            }
            let admission = self
                .breaker
                .admit()
                .map_err(|retry_after| ShieldError::Open {
                    connector: self.name.clone(),
                    retry_after,
                })?;
            let slot = self
                .bulkhead
                .enter()
                .await
                .map_err(|full| ShieldError::Busy {
                    connector: self.name.clone(),
                    limit: full.limit,
                    waited_ms: full.waited.as_millis() as u64,
                })?;
            let begun = Instant::now();
            let outcome =
                match tokio::time::timeout(self.config.timeout + DEADLINE_GRACE, attempt()).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(CallError::Timeout {
                        timeout_ms: self.config.timeout.as_millis() as u64,
                    }),
                };
            drop(slot);
            let code = match &outcome {
                Ok(_) => "ok",
                Err(error) => error.code().as_str(),
            };
            self.hub.metrics.backend_call(
                &self.name,
                operation,
                code,
                begun.elapsed().as_secs_f64(),
            );
            admission.report(match &outcome {
                Ok(_) => Verdict::Healthy,
                Err(error) if is_backend_failure(error) => Verdict::Failing,
                Err(_) => Verdict::Healthy,
            });
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if kind == CallKind::Write && matches!(error, CallError::Timeout { .. }) {
                return Err(ShieldError::OutcomeUnknown {
                    connector: self.name.clone(),
                });
            }
            if kind == CallKind::Read
                && tried < attempts
                && retryable(&error)
                && self.budget.withdraw()
            {
                self.hub.metrics.retry(&self.name, operation);
                tokio::time::sleep(budget::backoff(
                    Duration::from_millis(self.config.retry.backoff_ms),
                    tried,
                ))
                .await;
                continue;
            }
            return Err(ShieldError::Call(Arc::new(error)));
        }
    }
}

#[cfg(test)]
mod tests;
