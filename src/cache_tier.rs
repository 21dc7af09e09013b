//! PLACEHOLDER until the Redis tier lands from its branch (same signatures): no tier.

use std::time::Duration;

/// Placeholder.
pub fn key_prefix(connector: &str, operation: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(connector.len() as u32).to_be_bytes());
    out.extend_from_slice(connector.as_bytes());
    out.extend_from_slice(&(operation.len() as u32).to_be_bytes());
    out.extend_from_slice(operation.as_bytes());
    out
}

/// Placeholder.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    /// Placeholder.
    pub value: Option<serde_json::Value>,
    /// Placeholder.
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// Placeholder.
    pub loaded_at: chrono::DateTime<chrono::Utc>,
}

/// Placeholder.
#[derive(Debug)]
pub enum TierRead {
    /// Placeholder.
    Hit(StoredEntry),
    /// Placeholder.
    Miss,
    /// Placeholder.
    Unavailable,
    /// Placeholder.
    Garbage,
}

/// Placeholder.
#[derive(Debug, thiserror::Error)]
#[error("placeholder")]
pub struct CacheTierError;

/// Placeholder.
#[derive(Debug, Clone)]
pub struct RedisTier;

impl RedisTier {
    /// Placeholder.
    pub fn new(
        _url: &str,
        _secret: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<Self, CacheTierError> {
        Err(CacheTierError)
    }
    /// Placeholder.
    pub async fn get(&self, _key: &[u8]) -> TierRead {
        TierRead::Miss
    }
    /// Placeholder.
    pub async fn put(&self, _key: &[u8], _entry: &StoredEntry, _ttl: Duration) {}
    /// Placeholder.
    pub async fn invalidate(&self, _prefix: &[u8]) -> Result<u64, CacheTierError> {
        Ok(0)
    }
}
