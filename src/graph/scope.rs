//! What one request carries into its resolvers: who is asking, the identity crosswalk, and
//! the crosswalk answers already fetched (so ten fields of one citizen cost one lookup).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::auth::Principal;
use crate::identity::{CitizenId, Crosswalk, CrosswalkError, Links};

/// Per-request state, inserted into the async-graphql request data.
#[derive(Debug)]
pub(crate) struct RequestScope {
    pub(crate) principal: Principal,
    pub(crate) crosswalk: Option<Crosswalk>,
    links: Mutex<HashMap<CitizenId, Arc<OnceCell<Links>>>>,
    /// The oldest as-of time of each connector that answered from a copy.
    freshness: Mutex<BTreeMap<String, DateTime<Utc>>>,
}

impl RequestScope {
    pub(crate) fn new(principal: Principal, crosswalk: Option<Crosswalk>) -> Self {
        Self {
            principal,
            crosswalk,
            links: Mutex::new(HashMap::new()),
            freshness: Mutex::new(BTreeMap::new()),
        }
    }

    /// Remembers that `connector` answered with data as of `as_of`; the oldest time wins, so
    /// the response never claims to be fresher than its stalest part.
    pub(crate) fn saw_copy(&self, connector: &str, as_of: DateTime<Utc>) {
        let mut seen = self
            .freshness
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.entry(connector.to_string())
            .and_modify(|oldest| *oldest = (*oldest).min(as_of))
            .or_insert(as_of);
    }

    /// `extensions.freshness`: `{"<connector>": {"asOf": "<RFC 3339>"}}`, or `None` when every
    /// answer was live.
    pub(crate) fn freshness(&self) -> Option<serde_json::Value> {
        let seen = self
            .freshness
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let cell = {
            let mut cells = self
                .links
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(cells.entry(citizen.clone()).or_default())
        };
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
