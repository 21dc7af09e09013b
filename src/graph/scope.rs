//! What one request carries into its resolvers: who is asking, the identity crosswalk, and
//! the crosswalk answers already fetched (so ten fields of one citizen cost one lookup).

use std::collections::HashMap;
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
}

impl RequestScope {
    pub(crate) fn new(principal: Principal, crosswalk: Option<Crosswalk>) -> Self {
        Self {
            principal,
            crosswalk,
            links: Mutex::new(HashMap::new()),
        }
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
