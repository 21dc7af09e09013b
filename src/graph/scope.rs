//! What one request carries into its resolvers: who is asking and for what purpose, the
//! identity crosswalk and the consent ledger, the answers already fetched from them (so ten
//! fields of one citizen cost one lookup each), and the protected reads made so far, which
//! the audit trail records before the response leaves.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::TrustServices;
use super::collect::{Collector, Pace};
use crate::auth::Principal;
use crate::config::TrustConfig;
use crate::connectors::Arguments;
use crate::consent::policy::{Access, LiveConsent};
use crate::identity::{CitizenId, Crosswalk, CrosswalkError, Links};
use crate::shield::{CacheScope, CallKind, Served, Shield, ShieldError, ShieldHub, Staleness};

/// Who asks, why, and which request this is.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The caller.
    pub principal: Principal,
    /// The purpose an agency stated (checked against its token and the catalogue).
    pub purpose: Option<String>,
    /// The request's id, as in the `x-request-id` response header.
    pub request_id: String,
}

/// One decision on a personal field, kept for the audit trail.
#[derive(Debug, Clone)]
pub(crate) struct Read {
    pub(crate) citizen: CitizenId,
    pub(crate) category: String,
    /// `Type.field`.
    pub(crate) field: String,
    /// Where the value sits in the response, to withhold it if the audit cannot record it.
    pub(crate) path: Vec<async_graphql::PathSegment>,
    pub(crate) access: Access,
}

/// The live consents already read this request, per citizen.
type ConsentCells = HashMap<CitizenId, Arc<OnceCell<Arc<[LiveConsent]>>>>;

/// The backend reads of one operation collected across a list's items.
type BackendCollector = Collector<Arguments, Result<Served, ShieldError>>;

/// Per-request state, inserted into the async-graphql request data.
#[derive(Debug)]
pub(crate) struct RequestScope {
    pub(crate) context: RequestContext,
    pub(crate) crosswalk: Option<Crosswalk>,
    pub(crate) trust: Arc<TrustConfig>,
    pub(crate) services: Option<TrustServices>,
    links: Mutex<HashMap<CitizenId, Arc<OnceCell<Links>>>>,
    consents: Mutex<ConsentCells>,
    reads: Mutex<Vec<Read>>,
    /// The oldest as-of time of each connector that answered from a copy.
    freshness: Mutex<BTreeMap<String, DateTime<Utc>>>,
    /// The stalest answer each connector's shield served when the backend could not answer.
    stale: Mutex<BTreeMap<String, Staleness>>,
    /// Whose answers this request may share in the shields' caches.
    cache_scope: CacheScope,
    /// What the shields share (consent withdrawals reach the caches through it).
    pub(crate) hub: Option<Arc<ShieldHub>>,
    link_rounds: Collector<CitizenId, Option<Links>>,
    consent_rounds: Collector<CitizenId, Option<Arc<[LiveConsent]>>>,
    backend_rounds: Mutex<HashMap<(String, String), Arc<BackendCollector>>>,
    /// Bumped whenever a resolver starts or finishes, so a collecting round can tell a busy
    /// request (more askers may come) from an idle one.
    activity: std::sync::atomic::AtomicU64,
    /// Collecting rounds whose call is in flight.
    running_rounds: std::sync::atomic::AtomicUsize,
    /// Collecting rounds not yet answered, by opening order.
    open_rounds: Mutex<std::collections::BTreeSet<u64>>,
    opened_rounds: std::sync::atomic::AtomicU64,
    /// Life events: mutation sources record through it; subscriber management reads it.
    pub(crate) events: Option<crate::events::EventServices>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RequestScope {
    pub(crate) fn new(
        context: RequestContext,
        crosswalk: Option<Crosswalk>,
        trust: Arc<TrustConfig>,
        services: Option<TrustServices>,
        hub: Option<Arc<ShieldHub>>,
    ) -> Self {
        Self {
            cache_scope: CacheScope::of(&context.principal, context.purpose.as_deref()),
            hub,
            stale: Mutex::new(BTreeMap::new()),
            link_rounds: Collector::default(),
            consent_rounds: Collector::default(),
            backend_rounds: Mutex::new(HashMap::new()),
            activity: std::sync::atomic::AtomicU64::new(0),
            running_rounds: std::sync::atomic::AtomicUsize::new(0),
            open_rounds: Mutex::new(std::collections::BTreeSet::new()),
            opened_rounds: std::sync::atomic::AtomicU64::new(0),
            context,
            crosswalk,
            trust,
            services,
            links: Mutex::new(HashMap::new()),
            consents: Mutex::new(HashMap::new()),
            reads: Mutex::new(Vec::new()),
            freshness: Mutex::new(BTreeMap::new()),
            events: None,
        }
    }

    /// Gives the request the gateway's life-event services.
    pub(crate) fn with_events(mut self, events: Option<crate::events::EventServices>) -> Self {
        self.events = events;
        self
    }

    /// Records the life events a successful mutation field is a source of: the change is the
    /// field's arguments with its answer under `result`. The backend has already changed, so
    /// a failure here is logged, not returned (a polled feed of the same backend, with the
    /// same event key, is the safety net).
    pub(crate) async fn mutation_succeeded(
        &self,
        field: &str,
        args: &crate::connectors::Arguments,
        result: Option<&serde_json::Value>,
    ) {
        let Some(events) = &self.events else {
            return;
        };
        let Some(source) = events.detector.rules().mutation_source(field) else {
            return;
        };
        let mut change: serde_json::Map<String, serde_json::Value> =
            args.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        change.insert(
            "result".to_string(),
            result.cloned().unwrap_or(serde_json::Value::Null),
        );
        let name = source.name.clone();
        if let Err(error) = events
            .detector
            .record(
                &name,
                crate::events::Mark::Nothing,
                &[serde_json::Value::Object(change)],
            )
            .await
        {
            tracing::error!(source = %name, %error, "A mutation's life events could not be recorded.");
        }
    }

    /// The caller.
    pub(crate) fn principal(&self) -> &Principal {
        &self.context.principal
    }

    /// Keeps a decision on a personal field for the audit trail.
    pub(crate) fn record(&self, read: Read) {
        lock(&self.reads).push(read);
    }

    /// Every decision kept so far, leaving none.
    pub(crate) fn take_reads(&self) -> Vec<Read> {
        std::mem::take(&mut *lock(&self.reads))
    }

    /// Whether any field was denied so far (for `on_denied = "reject"`).
    pub(crate) fn any_denied(&self) -> bool {
        lock(&self.reads)
            .iter()
            .any(|read| matches!(read.access, Access::Denied(_)))
    }

    /// The consents `citizen` gave the calling agency for the stated purpose that are live
    /// now, read from the ledger at most once per request per citizen (never across requests,
    /// so a revocation holds from the next request on). A failed read is not remembered.
    pub(crate) async fn live_consents(
        &self,
        citizen: &CitizenId,
        in_list: bool,
    ) -> Result<Arc<[LiveConsent]>, crate::consent::LedgerError> {
        let (Some(services), Principal::Agency(client), Some(purpose)) = (
            &self.services,
            &self.context.principal,
            &self.context.purpose,
        ) else {
            return Ok(Arc::from(Vec::new()));
        };
        let cell = Arc::clone(lock(&self.consents).entry(citizen.clone()).or_default());
        let ledger = &services.ledger;
        let agency = client.agency.as_str();
        cell.get_or_try_init(|| async {
            if !in_list {
                return Ok(live_consents(
                    ledger.live(citizen, agency, purpose, Utc::now()).await?,
                ));
            }
            let collected = self
                .consent_rounds
                .ask(citizen.clone(), self.pace(), |citizens| async move {
                    match ledger
                        .live_many(&citizens, agency, purpose, Utc::now())
                        .await
                    {
                        Ok(mut live) => citizens
                            .iter()
                            .map(|citizen| {
                                Some(live_consents(live.remove(citizen).unwrap_or_default()))
                            })
                            .collect(),
                        // Each asker reads alone, and reports its own error.
                        Err(_) => citizens.iter().map(|_| None).collect(),
                    }
                })
                .await
                .flatten();
            match collected {
                Some(live) => Ok(live),
                None => Ok(live_consents(
                    ledger.live(citizen, agency, purpose, Utc::now()).await?,
                )),
            }
        })
        .await
        .cloned()
    }

    /// Remembers that `connector` answered with data as of `as_of`; the oldest time wins, so
    /// the response never claims to be fresher than its stalest part.
    pub(crate) fn saw_copy(&self, connector: &str, as_of: DateTime<Utc>) {
        let mut seen = lock(&self.freshness);
        seen.entry(connector.to_string())
            .and_modify(|oldest| *oldest = (*oldest).min(as_of))
            .or_insert(as_of);
    }

    /// `extensions.freshness`: per connector that did not answer live, `{"asOf": …}` for a
    /// copy (an extract) and `{"stale": true, "fetchedAt": …, "ageSeconds": …, "reason": …}`
    /// for a cached answer served because the backend could not answer. `None` when every
    /// answer was live.
    pub(crate) fn freshness(&self) -> Option<serde_json::Value> {
        let copies = lock(&self.freshness);
        let stale = lock(&self.stale);
        if copies.is_empty() && stale.is_empty() {
            return None;
        }
        let mut entries = serde_json::Map::new();
        for (connector, as_of) in copies.iter() {
            entries.insert(
                connector.clone(),
                serde_json::json!({
                    "asOf": as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                }),
            );
        }
        for (connector, staleness) in stale.iter() {
            let entry = entries
                .entry(connector.clone())
                .or_insert_with(|| serde_json::json!({}));
            if let serde_json::Value::Object(fields) = entry {
                fields.insert("stale".into(), true.into());
                fields.insert(
                    "fetchedAt".into(),
                    staleness
                        .fetched_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        .into(),
                );
                fields.insert("ageSeconds".into(), staleness.age.as_secs().into());
                fields.insert("reason".into(), staleness.reason.as_str().into());
            }
        }
        Some(serde_json::Value::Object(entries))
    }

    /// The citizen's links, fetched at most once per request however many fields ask
    /// (concurrent askers wait for the first fetch); inside a list, together with the other
    /// items' citizens in one query. A failed fetch is not remembered.
    pub(crate) async fn links(
        &self,
        citizen: &CitizenId,
        in_list: bool,
    ) -> Result<Links, LinksError> {
        let Some(crosswalk) = &self.crosswalk else {
            return Err(LinksError::NoStore);
        };
        let cell = Arc::clone(lock(&self.links).entry(citizen.clone()).or_default());
        cell.get_or_try_init(|| async {
            if !in_list {
                return crosswalk.links(citizen).await;
            }
            let collected = self
                .link_rounds
                .ask(citizen.clone(), self.pace(), |citizens| async move {
                    match crosswalk.links_many(&citizens).await {
                        Ok(mut links) => citizens
                            .iter()
                            .map(|citizen| links.remove(citizen))
                            .collect(),
                        Err(_) => citizens.iter().map(|_| None).collect(),
                    }
                })
                .await
                .flatten();
            match collected {
                Some(links) => Ok(links),
                None => crosswalk.links(citizen).await,
            }
        })
        .await
        .cloned()
        .map_err(LinksError::Crosswalk)
    }

    fn pace(&self) -> Pace<'_> {
        Pace {
            activity: &self.activity,
            running: &self.running_rounds,
            open: &self.open_rounds,
            opened: &self.opened_rounds,
        }
    }

    /// A resolver started or finished.
    pub(crate) fn touch(&self) {
        self.activity
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whose answers this request may share in the caches.
    pub(crate) fn cache_scope(&self) -> &CacheScope {
        &self.cache_scope
    }

    /// Remembers that `connector` answered with a stale copy; the stalest wins.
    pub(crate) fn saw_stale(&self, connector: &str, staleness: &Staleness) {
        let mut seen = lock(&self.stale);
        match seen.get(connector) {
            Some(known) if known.age >= staleness.age => {}
            _ => {
                seen.insert(connector.to_string(), staleness.clone());
            }
        }
    }

    /// Reads `args` of `shield`'s `operation` together with the same reads of the other
    /// items of a list: one batched call for all (see [`Shield::call_many`]). When the round
    /// is lost (its leader was dropped), reads alone.
    pub(crate) async fn batched(
        &self,
        shield: &Shield,
        operation: &str,
        args: Arguments,
    ) -> Result<Served, ShieldError> {
        let collector = Arc::clone(
            lock(&self.backend_rounds)
                .entry((shield.name().to_string(), operation.to_string()))
                .or_default(),
        );
        let scope = &self.cache_scope;
        let answer = collector
            .ask(args.clone(), self.pace(), |all| async move {
                shield.call_many(operation, &all, scope).await
            })
            .await;
        match answer {
            Some(answer) => answer,
            None => shield.call(operation, &args, scope, CallKind::Read).await,
        }
    }
}

fn live_consents(consents: Vec<crate::consent::Consent>) -> Arc<[LiveConsent]> {
    consents
        .into_iter()
        .map(|consent| LiveConsent {
            handle: consent.handle,
            categories: consent.categories,
        })
        .collect::<Vec<_>>()
        .into()
}

/// Why the crosswalk could not answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinksError {
    /// The graph runs without a store (built by `check` only).
    #[error("the gateway has no identity store")]
    NoStore,
    /// The store failed.
    #[error(transparent)]
    Crosswalk(CrosswalkError),
}
