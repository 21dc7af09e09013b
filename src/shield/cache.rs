//! The in-memory cache of one operation, with the generation rule that keeps withdrawn or
//! invalidated answers out of it.
//!
//! Every entry records the generations current when its load *started*: the operation's
//! (bumped by an operator's invalidation) and the calling agency's (bumped when a citizen
//! withdraws a consent from that agency). An entry whose generations are no longer current is
//! never served, and a load whose generations moved while it ran is never written (moka's own
//! invalidation does not reach loads already in flight: BAD_INPUTS row 40).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::key::CacheKey;
use crate::config::CacheConfig;
use crate::connectors::Reply;

/// The generations a load started under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generations {
    pub(crate) operation: u64,
    pub(crate) agency: u64,
}

/// One cached answer.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) reply: Arc<Reply>,
    /// When the gateway fetched it, on tokio's clock (freshness).
    pub(crate) loaded: Instant,
    /// The same moment on the wall clock (what clients see).
    pub(crate) fetched_at: DateTime<Utc>,
    pub(crate) generations: Generations,
}

/// How usable a cached answer is now.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Within its TTL.
    Fresh(Arc<Reply>),
    /// Past its TTL but within the stale window: served only if the backend cannot answer.
    Stale(StaleCopy),
    /// Nothing usable.
    Miss,
}

/// An answer past its TTL, kept for when the backend fails.
#[derive(Debug, Clone)]
pub(crate) struct StaleCopy {
    pub(crate) reply: Arc<Reply>,
    pub(crate) fetched_at: DateTime<Utc>,
    pub(crate) age: Duration,
}

/// The cache of one operation of one connector.
#[derive(Debug)]
pub(crate) struct OperationCache {
    entries: moka::sync::Cache<CacheKey, Arc<Entry>>,
    pub(crate) ttl: Duration,
    pub(crate) stale: Duration,
    generation: AtomicU64,
}

impl OperationCache {
    pub(crate) fn new(config: &CacheConfig) -> Self {
        let ttl = Duration::from_secs(config.ttl_s);
        let stale = Duration::from_secs(config.serve_stale_on_error_s);
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.max_mb.saturating_mul(1024 * 1024))
            .weigher(|key: &CacheKey, entry: &Arc<Entry>| {
                let size = key.as_bytes().len() + approximate_size(&entry.reply);
                u32::try_from(size).unwrap_or(u32::MAX)
            })
            // Memory is reclaimed once an entry can no longer be served even stale.
            .time_to_live(ttl + stale + Duration::from_secs(1))
            .build();
        Self {
            entries,
            ttl,
            stale,
            generation: AtomicU64::new(0),
        }
    }

    /// The operation's generation now.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Drops every entry and stops loads in flight from writing theirs.
    pub(crate) fn invalidate(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.run_pending_tasks();
        let count = self.entries.entry_count();
        self.entries.invalidate_all();
        count
    }

    pub(crate) fn lookup(&self, key: &CacheKey, current: Generations) -> Lookup {
        let Some(entry) = self.entries.get(key) else {
            return Lookup::Miss;
        };
        if entry.generations != current {
            self.entries.invalidate(key);
            return Lookup::Miss;
        }
        let age = entry.loaded.elapsed();
        if age < self.ttl {
            Lookup::Fresh(Arc::clone(&entry.reply))
        } else if age < self.ttl + self.stale {
            Lookup::Stale(StaleCopy {
                reply: Arc::clone(&entry.reply),
                fetched_at: entry.fetched_at,
                age,
            })
        } else {
            Lookup::Miss
        }
    }

    /// Keeps a loaded answer, unless the generations moved since its load started.
    pub(crate) fn insert(
        &self,
        key: CacheKey,
        reply: Arc<Reply>,
        started: Generations,
        current: Generations,
        loaded: Instant,
        fetched_at: DateTime<Utc>,
    ) -> bool {
        if started != current {
            return false;
        }
        self.entries.insert(
            key,
            Arc::new(Entry {
                reply,
                loaded,
                fetched_at,
                generations: started,
            }),
        );
        true
    }
}

/// Roughly how many bytes an answer holds, for the cache's byte capacity.
fn approximate_size(reply: &Reply) -> usize {
    fn walk(value: &serde_json::Value) -> usize {
        use serde_json::Value;
        match value {
            Value::Null | Value::Bool(_) | Value::Number(_) => 16,
            Value::String(text) => 24 + text.len(),
            Value::Array(items) => 24 + items.iter().map(walk).sum::<usize>(),
            Value::Object(fields) => {
                32 + fields
                    .iter()
                    .map(|(name, value)| 24 + name.len() + walk(value))
                    .sum::<usize>()
            }
        }
    }
    64 + reply.value.as_ref().map_or(0, walk)
}

/// The generation of each agency's consents: bumped whenever a citizen withdraws (revokes or
/// pauses) a consent given to that agency, so its cached reads are not served again and its
/// loads in flight are not written. An agency's generation is the common epoch (bumped for
/// every agency at once, when withdrawals may have been missed) plus its own count.
#[derive(Debug, Default)]
pub(crate) struct AgencyGenerations {
    by_agency: Mutex<HashMap<String, u64>>,
    epoch: AtomicU64,
}

impl AgencyGenerations {
    pub(crate) fn current(&self, agency: Option<&str>) -> u64 {
        let Some(agency) = agency else { return 0 };
        let own = *self
            .by_agency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(agency)
            .unwrap_or(&0);
        self.epoch.load(Ordering::SeqCst).wrapping_add(own)
    }

    pub(crate) fn bump(&self, agency: &str) {
        *self
            .by_agency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(agency.to_string())
            .or_default() += 1;
    }

    /// Every agency's generation moves, including agencies never bumped before.
    pub(crate) fn bump_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}
