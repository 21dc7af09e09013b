//! The keys every connector file may carry, whatever its kind, that say how the gateway
//! shields that backend: how many calls it may see at once, how answers are cached, how
//! failures are retried and when the circuit opens, and when the backend is in maintenance.
//!
//! ```toml
//! max_concurrency = 32
//! queue_timeout_ms = 50
//! cache = { ttl_s = 60, max_mb = 64, serve_stale_on_error_s = 600 }
//! retry = { attempts = 3, budget_percent = 10 }
//! breaker = { failures = 5, open_s = 30, probes = 3 }
//! maintenance = [{ daily = "01:00-03:00", utc_offset = "-05:00" }]
//! ```

use std::fmt;
use std::time::Duration;

use chrono::{FixedOffset, NaiveTime};
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// Calls a backend sees at once when its file does not say.
pub const DEFAULT_MAX_CONCURRENCY: usize = 32;
/// How long a call waits for a free slot when its file does not say.
pub const DEFAULT_QUEUE_TIMEOUT_MS: u64 = 50;

/// How one backend is shielded, gathered from its connector file.
#[derive(Debug, Clone)]
pub struct ShieldConfig {
    /// The most calls in flight to the backend at once; never exceeded.
    pub max_concurrency: usize,
    /// How long a call waits for a free slot before failing with `BACKEND_BUSY`.
    pub queue_timeout: Duration,
    /// The connector's own per-call deadline, which the shield enforces as well.
    pub timeout: Duration,
    /// Answers kept for reuse; `None` caches nothing (calls are still coalesced).
    pub cache: Option<CacheConfig>,
    /// Retries of failed reads.
    pub retry: RetryConfig,
    /// When the circuit opens and how it closes again.
    pub breaker: BreakerConfig,
    /// Times of day when the backend must not be called.
    pub maintenance: Vec<MaintenanceWindow>,
}

impl ShieldConfig {
    /// Gathers the shield keys of one connector file; `timeout_ms` is the connector's deadline.
    pub fn from_keys(keys: &ShieldKeys, timeout_ms: u64) -> Self {
        Self {
            max_concurrency: keys
                .max_concurrency
                .unwrap_or(DEFAULT_MAX_CONCURRENCY)
                .max(1),
            queue_timeout: Duration::from_millis(
                keys.queue_timeout_ms.unwrap_or(DEFAULT_QUEUE_TIMEOUT_MS),
            ),
            timeout: Duration::from_millis(timeout_ms.max(1)),
            cache: keys.cache.clone().filter(|cache| cache.ttl_s > 0),
            retry: keys.retry.clone(),
            breaker: keys.breaker.clone(),
            maintenance: keys.maintenance.clone(),
        }
    }
}

/// The shield keys as they appear in a connector file (each kind's struct holds one copy of
/// every field, because `deny_unknown_fields` cannot be combined with `flatten`).
#[derive(Debug, Clone, Default)]
pub struct ShieldKeys {
    /// `max_concurrency`.
    pub max_concurrency: Option<usize>,
    /// `queue_timeout_ms`.
    pub queue_timeout_ms: Option<u64>,
    /// `cache`.
    pub cache: Option<CacheConfig>,
    /// `retry`.
    pub retry: RetryConfig,
    /// `breaker`.
    pub breaker: BreakerConfig,
    /// `maintenance`.
    pub maintenance: Vec<MaintenanceWindow>,
}

/// `cache = { … }`: one in-memory cache per operation of the connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// How long an answer is served as fresh; 0 turns caching off.
    pub ttl_s: u64,
    /// Memory for this connector's answers, per operation, in MiB.
    #[serde(default = "default_max_mb")]
    pub max_mb: u64,
    /// For how long past its TTL an answer may still be served, marked stale, when the backend
    /// fails, its circuit is open or it is in maintenance.
    #[serde(default)]
    pub serve_stale_on_error_s: u64,
    /// The backend's answers do not depend on who asks (reference data), so every caller
    /// shares one entry. Off by default: entries are kept per caller and purpose.
    #[serde(default)]
    pub shared: bool,
}

fn default_max_mb() -> u64 {
    64
}

/// `retry = { … }`: failed reads are tried again, within a budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per call in all, the first included (1 turns retries off; at most 3).
    #[serde(default = "default_attempts", deserialize_with = "attempts")]
    pub attempts: u32,
    /// Retries may add at most this share of the calls made (a storm is not amplified).
    #[serde(default = "default_budget_percent")]
    pub budget_percent: f64,
    /// The first backoff; each further one doubles, with full jitter.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            budget_percent: default_budget_percent(),
            backoff_ms: default_backoff_ms(),
        }
    }
}

fn default_attempts() -> u32 {
    3
}

fn attempts<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let attempts = u32::deserialize(deserializer)?;
    if (1..=3).contains(&attempts) {
        Ok(attempts)
    } else {
        Err(de::Error::custom(format!(
            "`attempts` is {attempts}; it must be 1, 2 or 3 (a retry storm would bury a struggling backend)"
        )))
    }
}

fn default_budget_percent() -> f64 {
    10.0
}

fn default_backoff_ms() -> u64 {
    25
}

/// `breaker = { … }`: a circuit breaker per connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed calls (unreachable, timed out, 5xx) that open the circuit.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// How long the circuit stays open before one probe call is let through.
    #[serde(default = "default_open_s")]
    pub open_s: u64,
    /// Successful probes in a row that close the circuit again.
    #[serde(default = "default_probes")]
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: default_failures(),
            open_s: default_open_s(),
            probes: default_probes(),
        }
    }
}

fn default_failures() -> u32 {
    5
}

fn default_open_s() -> u64 {
    30
}

fn default_probes() -> u32 {
    3
}

/// One daily maintenance window, e.g. a mainframe's nightly batch run:
/// `{ daily = "01:00-03:30", utc_offset = "-05:00" }`. A window may cross midnight
/// (`"23:00-01:00"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// Start, in the window's local time.
    pub from: NaiveTime,
    /// End (exclusive), in the window's local time.
    pub until: NaiveTime,
    /// The local time's offset from UTC.
    pub offset: FixedOffset,
}

impl MaintenanceWindow {
    /// Whether `now` falls inside the window.
    pub fn contains(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        let local = now.with_timezone(&self.offset).time();
        if self.from <= self.until {
            self.from <= local && local < self.until
        } else {
            local >= self.from || local < self.until
        }
    }

    /// When the window that contains `now` ends.
    pub fn ends_after(&self, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        let local = now.with_timezone(&self.offset);
        let mut end = local.date_naive().and_time(self.until);
        if end <= local.naive_local() {
            end += chrono::Duration::days(1);
        }
        end.and_local_timezone(self.offset)
            .single()
            .map_or(now, |end| end.with_timezone(&chrono::Utc))
    }
}

impl fmt::Display for MaintenanceWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{} (UTC{})",
            self.from.format("%H:%M"),
            self.until.format("%H:%M"),
            self.offset
        )
    }
}

impl<'de> Deserialize<'de> for MaintenanceWindow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            daily: String,
            #[serde(default)]
            utc_offset: Option<String>,
        }
        let raw = Raw::deserialize(deserializer)?;
        let (from, until) = raw.daily.split_once('-').ok_or_else(|| {
            de::Error::custom(format!(
                "maintenance window `{}` is not `HH:MM-HH:MM`",
                raw.daily
            ))
        })?;
        let time = |text: &str| {
            NaiveTime::parse_from_str(text.trim(), "%H:%M").map_err(|_| {
                de::Error::custom(format!(
                    "`{}` in maintenance window `{}` is not a time of day `HH:MM`",
                    text.trim(),
                    raw.daily
                ))
            })
        };
        let (from, until) = (time(from)?, time(until)?);
        if from == until {
            return Err(de::Error::custom(format!(
                "maintenance window `{}` is empty: it starts when it ends",
                raw.daily
            )));
        }
        let offset = match raw.utc_offset.as_deref() {
            None | Some("Z" | "UTC" | "+00:00") => FixedOffset::east_opt(0),
            Some(text) => {
                chrono::DateTime::parse_from_rfc3339(&format!("2000-01-01T00:00:00{text}"))
                    .ok()
                    .map(|t| *t.offset())
            }
        }
        .ok_or_else(|| {
            de::Error::custom(format!(
                "`utc_offset` {:?} is not an offset like `+02:00` or `-05:00`",
                raw.utc_offset.unwrap_or_default()
            ))
        })?;
        Ok(Self {
            from,
            until,
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn window(text: &str) -> Result<MaintenanceWindow, toml::de::Error> {
        #[derive(Deserialize)]
        struct Holder {
            window: MaintenanceWindow,
        }
        toml::from_str::<Holder>(&format!("window = {text}")).map(|h| h.window)
    }

    #[test]
    fn windows_cross_midnight_and_honour_their_offset() {
        let nightly = window(r#"{ daily = "23:00-01:30" }"#).unwrap();
        assert!(nightly.contains(Utc.with_ymd_and_hms(2026, 11, 22, 23, 30, 0).unwrap()));
        assert!(nightly.contains(Utc.with_ymd_and_hms(2026, 11, 23, 1, 0, 0).unwrap()));
        assert!(!nightly.contains(Utc.with_ymd_and_hms(2026, 11, 23, 1, 30, 0).unwrap()));
        assert_eq!(
            nightly.ends_after(Utc.with_ymd_and_hms(2026, 11, 22, 23, 30, 0).unwrap()),
            Utc.with_ymd_and_hms(2026, 11, 23, 1, 30, 0).unwrap()
        );
        let eastern = window(r#"{ daily = "01:00-03:00", utc_offset = "-05:00" }"#).unwrap();
        assert!(eastern.contains(Utc.with_ymd_and_hms(2026, 11, 22, 7, 0, 0).unwrap()));
        assert!(!eastern.contains(Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap()));
    }

    #[test]
    fn malformed_windows_say_what_is_wrong_and_where() {
        for (text, expected) in [
            (r#"{ daily = "01:00 to 03:00" }"#, "is not `HH:MM-HH:MM`"),
            (r#"{ daily = "25:00-03:00" }"#, "is not a time of day"),
            (r#"{ daily = "01:00-01:00" }"#, "is empty"),
            (
                r#"{ daily = "01:00-02:00", utc_offset = "CET" }"#,
                "is not an offset",
            ),
        ] {
            let error = window(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.contains("line 1"), "{text}: {error}");
        }
    }

    #[test]
    fn retry_attempts_are_capped_at_three() {
        #[derive(Deserialize)]
        struct Holder {
            #[allow(dead_code)]
            retry: RetryConfig,
        }
        let error = toml::from_str::<Holder>("retry = { attempts = 5 }")
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("must be 1, 2 or 3"), "{error}");
    }
}
