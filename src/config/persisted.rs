//! `[persisted]`: persisted operations — the Apollo automatic persisted queries protocol
//! (APQ), and a safelist mode in which only operations registered in a manifest run.
//!
//! ```toml
//! [persisted]
//! mode = "safelist"
//! manifests = ["persisted/web-app.json"]
//! clients = { "benefits-portal" = ["persisted/benefits.json"] }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

/// How the gateway treats operations sent by hash or by text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersistedMode {
    /// Any operation runs; clients may register and then send operations by hash (APQ).
    #[default]
    Apq,
    /// Only operations in the manifests run, sent by id, by hash or as their exact text; APQ
    /// registrations are refused, since they would let anything in.
    Safelist,
    /// The `persistedQuery` extension is not understood: a hash-only request gets
    /// `PERSISTED_QUERY_NOT_SUPPORTED`, which Apollo clients take as "send the text".
    Off,
}

/// `[persisted]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersistedConfig {
    /// `apq` (default), `safelist` or `off`.
    pub mode: PersistedMode,
    /// Memory for operations registered through APQ on this instance; the least used are
    /// evicted first (a client whose hash was evicted just sends the text again).
    pub apq_cache_mb: u64,
    /// Apollo persisted-query manifests (JSON, relative to `civicgraph.toml`) for every
    /// caller without its own entry in `clients`. Their operations can always be sent by id
    /// or hash, in either mode; in `safelist` mode they are the only ones that run.
    pub manifests: Vec<String>,
    /// Manifests of one partner, keyed by its agency client id (the token's `client_id`) or
    /// by its agency code: that client may run only these operations (not those of
    /// `manifests`). The client id wins when both match.
    pub clients: BTreeMap<String, Vec<String>>,
}

impl Default for PersistedConfig {
    fn default() -> Self {
        Self {
            mode: PersistedMode::Apq,
            apq_cache_mb: 16,
            manifests: Vec::new(),
            clients: BTreeMap::new(),
        }
    }
}
