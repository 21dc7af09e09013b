//! What one request carries into its resolvers: who is asking and for what purpose, the
//! identity crosswalk and the consent ledger, the answers already fetched from them (so ten
//! fields of one citizen cost one lookup each), and the protected reads made so far, which
//! the audit trail records before the response leaves.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::TrustServices;
use crate::auth::Principal;
use crate::config::TrustConfig;
use crate::consent::policy::{Access, LiveConsent};
use crate::identity::{CitizenId, Crosswalk, CrosswalkError, Links};

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
    ) -> Self {
        Self {
            context,
            crosswalk,
            trust,
            services,
            links: Mutex::new(HashMap::new()),
            consents: Mutex::new(HashMap::new()),
            reads: Mutex::new(Vec::new()),
            freshness: Mutex::new(BTreeMap::new()),
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
    ) -> Result<Arc<[LiveConsent]>, crate::consent::LedgerError> {
        let (Some(services), Principal::Agency(client), Some(purpose)) = (
            &self.services,
            &self.context.principal,
            &self.context.purpose,
        ) else {
            return Ok(Arc::from(Vec::new()));
        };
        let cell = Arc::clone(lock(&self.consents).entry(citizen.clone()).or_default());
        cell.get_or_try_init(|| async {
            let live = services
                .ledger
                .live(citizen, &client.agency, purpose, Utc::now())
                .await?;
            Ok(live
                .into_iter()
                .map(|consent| LiveConsent {
                    handle: consent.handle,
                    categories: consent.categories,
                })
                .collect::<Vec<_>>()
                .into())
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

    /// `extensions.freshness`: `{"<connector>": {"asOf": "<RFC 3339>"}}`, or `None` when every
    /// answer was live.
    pub(crate) fn freshness(&self) -> Option<serde_json::Value> {
        let seen = lock(&self.freshness);
        if seen.is_empty() {
            return None;
        }
        let entries = seen.iter().map(|(connector, as_of)| {
            (
                connector.clone(),
                serde_json::json!({
                    "asOf": as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                }),
            )
        });
        Some(serde_json::Value::Object(entries.collect()))
    }

    /// The citizen's links, fetched at most once per request however many fields ask
    /// (concurrent askers wait for the first fetch). A failed fetch is not remembered.
    pub(crate) async fn links(&self, citizen: &CitizenId) -> Result<Links, LinksError> {
        let Some(crosswalk) = &self.crosswalk else {
            return Err(LinksError::NoStore);
        };
        let cell = Arc::clone(lock(&self.links).entry(citizen.clone()).or_default());
        cell.get_or_try_init(|| crosswalk.links(citizen))
            .await
            .cloned()
            .map_err(LinksError::Crosswalk)
    }
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
