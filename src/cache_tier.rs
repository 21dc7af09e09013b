//! The optional shared Redis tier under the shield's in-memory cache (`[cache] redis_url`).
//!
//! Every gateway instance reads and writes the same Redis, so an answer one instance fetched
//! spares the backend a call from the others. Redis is a convenience, never a dependency
//! (BAD_INPUTS row 43): when it is down, slow or answers with garbage, a read is a miss
//! ([`TierRead::Unavailable`], [`TierRead::Garbage`]), a write is dropped, and no detail reaches
//! a client. Nothing fails at start when Redis is down; only a malformed URL does.
//!
//! # Keys
//!
//! The shield builds an opaque key for each call; its first bytes are
//! [`key_prefix`]`(connector, operation)` — a `u32` big-endian length and the connector's name,
//! then a `u32` big-endian length and the operation's name — and the rest encodes the call's
//! arguments (and, for a per-caller entry, the caller), which may be personal data. So Redis
//! never sees the key: an entry lives under `civicgraph:v1:` + hex(SHA-256(key)).
//!
//! # Entries
//!
//! A stored entry is a binary envelope ([`ENVELOPE_VERSION`] 1), every integer big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `CGct` |
//! | 1 | version, 1 |
//! | 1 | tag kind: 1 SHA-256 checksum, 2 HMAC-SHA256 |
//! | 1 | flags: bit 0 a value is present, bit 1 an as-of time is present; others 0 |
//! | 32 | SHA-256 of the key |
//! | 8 | generation (see below) |
//! | 8 | `loaded_at`, microseconds since the Unix epoch |
//! | 8 | `as_of`, microseconds since the Unix epoch (0 when absent) |
//! | 4 | payload length *n* |
//! | *n* | payload: the value as JSON (empty when absent) |
//! | 32 | tag over every byte before it |
//!
//! With `secret` set the tag is HMAC-SHA256 under the secret, checked in constant time, so only
//! instances holding the secret can write entries the others accept; without one it is a
//! SHA-256 checksum, which catches corruption but not a forger with write access to Redis. An
//! instance accepts only its own tag kind (an HMAC instance refuses checksum-only entries). The
//! embedded key hash means an entry copied or garbled under another key is never served for it.
//! Any mismatch — magic, version, tag kind, flags, length, key hash, tag, timestamp, JSON — reads
//! as [`TierRead::Garbage`], and the entry is deleted (best effort, within the same deadline).
//! Reads are bounded: at most [`MAX_ENTRY_BYTES`] bytes are fetched (`GETRANGE`), and a longer
//! entry is garbage; a write of a larger entry is dropped.
//!
//! # Invalidation across instances
//!
//! Each (connector, operation) has a generation counter in Redis under
//! `civicgraph:v1:gen:` + hex(SHA-256([`key_prefix`])) (absent = 0), and each entry records the
//! generation it was written under. [`RedisTier::get`] fetches the counter and the entry in one
//! pipelined round trip (`GET gen` + `GETRANGE entry`) and serves the entry only when the two
//! agree; [`RedisTier::invalidate`] `INCR`s the counter. So once `invalidate` has returned on any
//! instance, every instance's next read of that operation is a miss — there is no window during
//! which another instance still serves the old entries from Redis (its in-memory tier is the
//! shield's to clear). A write reads the counter first; a write racing an invalidation is
//! stamped with the old generation and so is never served. Old entries are not deleted: they
//! are overwritten by the next write or expire with their TTL.
//!
//! Generation counters have no TTL. Run the cache's Redis with `noeviction` or a `volatile-*`
//! eviction policy so they are never evicted: a counter that vanished would start again at 0,
//! and entries written at generation 0 before the first invalidation would be served again.
//!
//! # Failures
//!
//! Each operation — its Redis commands, connecting included — is bounded by the `timeout` given
//! to [`RedisTier::new`]. After a connection failure or a timeout, the tier answers at once
//! (`Unavailable`, write dropped) for [`RETRY_AFTER`] before it tries Redis again on a fresh
//! connection, so a hung Redis costs one timeout per second, not one per request. Logs name the
//! connector and operation and what went wrong — never the key, the value or the URL's password.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, ErrorKind, RedisError, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::metrics::RedisOutcome;

/// The namespace of every key this tier writes; `v1` changes when the key scheme does.
pub const KEY_NAMESPACE: &str = "civicgraph:v1:";

/// The envelope version this build writes and the only one it reads.
pub const ENVELOPE_VERSION: u8 = 1;

/// The largest entry written or read; legacy answers are far smaller, and a bound keeps a
/// garbage value in Redis from costing the gateway memory.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024 * 1024;

/// How long the tier stops trying Redis after a connection failure or a timeout.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

const MAGIC: &[u8; 4] = b"CGct";
const TAG_CHECKSUM: u8 = 1;
const TAG_HMAC: u8 = 2;
const FLAG_VALUE: u8 = 0b01;
const FLAG_AS_OF: u8 = 0b10;
const HEADER_LEN: usize = 4 + 1 + 1 + 1 + 32 + 8 + 8 + 8 + 4;
const TAG_LEN: usize = 32;

/// The first bytes of every shield key for `operation` of `connector`: a `u32` big-endian
/// length and the connector's name, then a `u32` big-endian length and the operation's name.
/// The tier reads these two fields back to find the entry's generation counter, and
/// [`RedisTier::invalidate`] takes this prefix.
pub fn key_prefix(connector: &str, operation: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(8 + connector.len() + operation.len());
    for field in [connector, operation] {
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        prefix.extend_from_slice(&len.to_be_bytes());
        prefix.extend_from_slice(field.as_bytes());
    }
    prefix
}

/// A cached backend answer, as the tier stores it.
#[derive(Clone, PartialEq)]
pub struct StoredEntry {
    /// The backend's answer; `None` when it answered that there is nothing.
    pub value: Option<serde_json::Value>,
    /// The source's as-of time, when the backend serves a copy (an extract, a replica).
    pub as_of: Option<DateTime<Utc>>,
    /// When the gateway fetched the answer from the backend.
    pub loaded_at: DateTime<Utc>,
}

impl fmt::Debug for StoredEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The value is a backend answer, often personal data; Debug output ends up in logs.
        f.debug_struct("StoredEntry")
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("as_of", &self.as_of)
            .field("loaded_at", &self.loaded_at)
            .finish()
    }
}

/// What a read from the tier came to. Only `Hit` carries an answer; the shield treats every
/// other outcome as a miss and calls the backend.
#[derive(Debug, Clone, PartialEq)]
pub enum TierRead {
    /// A valid entry of the current generation.
    Hit(StoredEntry),
    /// No entry, or one written before the last invalidation.
    Miss,
    /// Redis is down, timed out, refused the command, or is skipped for [`RETRY_AFTER`] after
    /// such a failure.
    Unavailable,
    /// An entry (or the generation counter) failed its check; a bad entry has been deleted.
    Garbage,
}

impl TierRead {
    /// The outcome recorded in `civicgraph_cache_redis_reads_total`.
    pub fn outcome(&self) -> RedisOutcome {
        match self {
            Self::Hit(_) => RedisOutcome::Hit,
            Self::Miss => RedisOutcome::Miss,
            Self::Unavailable => RedisOutcome::Error,
            Self::Garbage => RedisOutcome::Garbage,
        }
    }
}

/// Why the tier could not be set up, or an invalidation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CacheTierError {
    /// `[cache] redis_url` cannot be used (the URL itself is never repeated: it may hold a
    /// password).
    #[error("`[cache] redis_url` is not a usable Redis URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// The secret is empty, which would sign entries with a key anyone can guess.
    #[error(
        "the Redis cache secret is empty; set a long random secret, or none for checksums only"
    )]
    EmptySecret,
    /// The timeout is zero, which would make every operation fail.
    #[error("the Redis cache timeout is zero; give it a few milliseconds at least")]
    ZeroTimeout,
    /// [`RedisTier::invalidate`] was given bytes that [`key_prefix`] did not make.
    #[error("cannot invalidate: the prefix is not one made by `key_prefix(connector, operation)`")]
    InvalidPrefix,
    /// Redis did not answer within the timeout.
    #[error("Redis ({endpoint}) did not answer within {timeout_ms} ms")]
    Timeout {
        /// Host and port (never credentials).
        endpoint: String,
        /// The timeout that passed.
        timeout_ms: u128,
    },
    /// Redis could not be reached, or refused the command.
    #[error("Redis ({endpoint}) failed: {failure}")]
    Redis {
        /// Host and port (never credentials).
        endpoint: String,
        /// What went wrong, without any data.
        failure: RedisFailure,
    },
}

/// A Redis error reduced to what is safe to log and show an operator: its category and, for
/// an error reply, the server's code (`NOAUTH`, `OOM`, …). A parse error's text may quote the
/// bytes Redis sent, which may be a cached value, so it is never kept.
#[derive(Debug, Clone)]
pub struct RedisFailure {
    category: &'static str,
    code: Option<String>,
}

impl RedisFailure {
    fn from_error(error: &RedisError) -> Self {
        let category = match error.kind() {
            ErrorKind::Io if error.is_connection_refusal() => "connection refused",
            ErrorKind::Io if error.is_timeout() => "timed out",
            ErrorKind::Io => "I/O error",
            ErrorKind::AuthenticationFailed => "authentication failed",
            ErrorKind::Server(_) => "error reply",
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => "unexpected reply",
            ErrorKind::InvalidClientConfig => "invalid client configuration",
            _ => "client error",
        };
        let code = match error.kind() {
            ErrorKind::Server(_) => error
                .code()
                .filter(|code| code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
                .map(str::to_owned),
            _ => None,
        };
        Self { category, code }
    }

    /// The connection is unusable (as opposed to Redis refusing one command).
    fn is_connection_failure(error: &RedisError) -> bool {
        !matches!(error.kind(), ErrorKind::Server(_))
    }
}

impl fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} ({code})", self.category),
            None => f.write_str(self.category),
        }
    }
}

/// How entries are tagged: a keyed MAC when the operator set a secret, else a checksum.
enum Signer {
    Checksum,
    Hmac(Vec<u8>),
}

impl Signer {
    fn kind(&self) -> u8 {
        match self {
            Self::Checksum => TAG_CHECKSUM,
            Self::Hmac(_) => TAG_HMAC,
        }
    }

    fn tag(&self, bytes: &[u8]) -> [u8; TAG_LEN] {
        match self {
            Self::Checksum => Sha256::digest(bytes).into(),
            Self::Hmac(secret) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret)
                    .expect("HMAC accepts a key of any length");
                mac.update(bytes);
                mac.finalize().into_bytes().into()
            }
        }
    }

    fn verify(&self, bytes: &[u8], tag: &[u8]) -> bool {
        match self {
            Self::Checksum => Sha256::digest(bytes).as_slice() == tag,
            Self::Hmac(secret) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret)
                    .expect("HMAC accepts a key of any length");
                mac.update(bytes);
                // Constant time, so a forger learns nothing from how long a rejection takes.
                mac.verify_slice(tag).is_ok()
            }
        }
    }
}

/// Why a stored entry was refused. Says what failed, never what the bytes were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum EntryProblem {
    #[error("shorter than its header and tag")]
    Truncated,
    #[error("longer than the largest entry")]
    Oversize,
    #[error("not a CivicGraph cache entry")]
    BadMagic,
    #[error("written in an envelope version this build does not read")]
    UnknownVersion,
    #[error("tagged with a checksum where an HMAC is required, or the reverse")]
    WrongTagKind,
    #[error("carries unknown flags")]
    UnknownFlags,
    #[error("its length does not match its payload length")]
    BadLength,
    #[error("its tag does not verify (tampered, or written with another secret)")]
    BadTag,
    #[error("written for another key")]
    WrongKey,
    #[error("holds a timestamp out of range")]
    BadTimestamp,
    #[error("holds a payload that is not valid JSON")]
    BadJson,
}

/// A decoded entry and the generation it was written under.
#[derive(Debug)]
struct Decoded {
    entry: StoredEntry,
    generation: u64,
}

fn encode_entry(signer: &Signer, key: &[u8], generation: u64, entry: &StoredEntry) -> Vec<u8> {
    let payload = match &entry.value {
        Some(value) => serde_json::to_vec(value).expect("a JSON value always serializes"),
        None => Vec::new(),
    };
    let mut flags = 0;
    if entry.value.is_some() {
        flags |= FLAG_VALUE;
    }
    if entry.as_of.is_some() {
        flags |= FLAG_AS_OF;
    }
    let as_of = entry.as_of.map_or(0, |at| at.timestamp_micros());
    encode_raw(
        signer.kind(),
        flags,
        &Sha256::digest(key).into(),
        generation,
        entry.loaded_at.timestamp_micros(),
        as_of,
        &payload,
        |bytes| signer.tag(bytes),
    )
}

/// Lays out an envelope from its fields; separate from [`encode_entry`] so tests can build
/// entries no honest writer would.
#[allow(clippy::too_many_arguments)]
fn encode_raw(
    tag_kind: u8,
    flags: u8,
    key_hash: &[u8; 32],
    generation: u64,
    loaded_at_us: i64,
    as_of_us: i64,
    payload: &[u8],
    tag: impl FnOnce(&[u8]) -> [u8; TAG_LEN],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TAG_LEN);
    out.extend_from_slice(MAGIC);
    out.push(ENVELOPE_VERSION);
    out.push(tag_kind);
    out.push(flags);
    out.extend_from_slice(key_hash);
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(&loaded_at_us.to_be_bytes());
    out.extend_from_slice(&as_of_us.to_be_bytes());
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    let tag = tag(&out);
    out.extend_from_slice(&tag);
    out
}

/// Reads fixed-size fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EntryProblem> {
        if self.0.len() < n {
            return Err(EntryProblem::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EntryProblem> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, EntryProblem> {
        Ok(self.array::<1>()?[0])
    }
}

fn decode_entry(signer: &Signer, key: &[u8], bytes: &[u8]) -> Result<Decoded, EntryProblem> {
    if bytes.len() > MAX_ENTRY_BYTES {
        return Err(EntryProblem::Oversize);
    }
    if bytes.len() < HEADER_LEN + TAG_LEN {
        return Err(EntryProblem::Truncated);
    }
    let mut reader = Reader(bytes);
    if reader.array::<4>()? != *MAGIC {
        return Err(EntryProblem::BadMagic);
    }
    if reader.byte()? != ENVELOPE_VERSION {
        return Err(EntryProblem::UnknownVersion);
    }
    if reader.byte()? != signer.kind() {
        return Err(EntryProblem::WrongTagKind);
    }
    let flags = reader.byte()?;
    if flags & !(FLAG_VALUE | FLAG_AS_OF) != 0 {
        return Err(EntryProblem::UnknownFlags);
    }
    let key_hash = reader.array::<32>()?;
    let generation = u64::from_be_bytes(reader.array()?);
    let loaded_at_us = i64::from_be_bytes(reader.array()?);
    let as_of_us = i64::from_be_bytes(reader.array()?);
    let payload_len = u32::from_be_bytes(reader.array()?) as usize;
    if reader.0.len() != payload_len.saturating_add(TAG_LEN) {
        return Err(EntryProblem::BadLength);
    }
    let (signed, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    if !signer.verify(signed, tag) {
        return Err(EntryProblem::BadTag);
    }
    // After the tag: a forged entry is refused as such, whichever key it names.
    if key_hash.as_slice() != Sha256::digest(key).as_slice() {
        return Err(EntryProblem::WrongKey);
    }
    let payload = reader.take(payload_len)?;
    let loaded_at =
        DateTime::from_timestamp_micros(loaded_at_us).ok_or(EntryProblem::BadTimestamp)?;
    let as_of = if flags & FLAG_AS_OF != 0 {
        Some(DateTime::from_timestamp_micros(as_of_us).ok_or(EntryProblem::BadTimestamp)?)
    } else {
        None
    };
    let value = if flags & FLAG_VALUE != 0 {
        Some(serde_json::from_slice(payload).map_err(|_| EntryProblem::BadJson)?)
    } else if payload.is_empty() {
        None
    } else {
        return Err(EntryProblem::BadLength);
    };
    Ok(Decoded {
        entry: StoredEntry {
            value,
            as_of,
            loaded_at,
        },
        generation,
    })
}

/// The (connector, operation) a shield key belongs to, read back from its [`key_prefix`].
struct Scope<'a> {
    prefix: &'a [u8],
    connector: &'a str,
    operation: &'a str,
}

impl<'a> Scope<'a> {
    /// The scope at the front of `key`, or `None` when `key` does not start with a
    /// [`key_prefix`].
    fn of_key(key: &'a [u8]) -> Option<Self> {
        let mut rest = key;
        let mut fields = [""; 2];
        for field in &mut fields {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = u32::from_be_bytes(*len) as usize;
            if tail.len() < len {
                return None;
            }
            let (name, tail) = tail.split_at(len);
            *field = std::str::from_utf8(name).ok()?;
            rest = tail;
        }
        let [connector, operation] = fields;
        Some(Self {
            prefix: &key[..key.len() - rest.len()],
            connector,
            operation,
        })
    }

    /// The scope when `prefix` is exactly one [`key_prefix`], nothing after it.
    fn of_prefix(prefix: &'a [u8]) -> Option<Self> {
        Self::of_key(prefix).filter(|scope| scope.prefix.len() == prefix.len())
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The Redis key of the entry for shield key `key`.
fn entry_key(key: &[u8]) -> String {
    format!("{KEY_NAMESPACE}{}", hex(&Sha256::digest(key)))
}

/// The Redis key of the generation counter for a [`key_prefix`].
fn generation_key(prefix: &[u8]) -> String {
    format!("{KEY_NAMESPACE}gen:{}", hex(&Sha256::digest(prefix)))
}

/// A generation counter as Redis returns it: absent is 0; anything but a decimal `u64` is
/// garbage.
fn parse_generation(value: &Value) -> Option<u64> {
    match value {
        Value::Nil => Some(0),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// The shared Redis tier. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct RedisTier {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    /// Made on first use, and dropped after a connection failure or timeout so the next try
    /// starts afresh (the manager alone would keep a failed handshake's error forever).
    manager: Mutex<Option<ConnectionManager>>,
    signer: Signer,
    timeout: Duration,
    /// `host:port` and database, for logs and errors (never credentials).
    endpoint: String,
    /// Until when Redis is skipped after a failure, in ms since `epoch` (0: not skipped).
    skip_until_ms: AtomicU64,
    epoch: Instant,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signed = match self.inner.signer {
            Signer::Checksum => "checksum",
            Signer::Hmac(_) => "hmac-sha256",
        };
        f.debug_struct("RedisTier")
            .field("endpoint", &self.inner.endpoint)
            .field("timeout", &self.inner.timeout)
            .field("entries", &signed)
            .finish_non_exhaustive()
    }
}

impl RedisTier {
    /// A tier over the Redis at `url` (`redis://[user:password@]host[:port][/db]`, or
    /// `redis+unix://` / `unix://`; `rediss://` needs TLS, which this build does not include).
    /// Entries are signed with HMAC-SHA256 under `secret` when given, else checksummed.
    /// Every operation is bounded by `timeout`.
    ///
    /// Never fails because Redis is down (it connects on first use, and again after a
    /// failure); fails only on a malformed URL, an empty secret or a zero timeout.
    pub fn new(
        url: &str,
        secret: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Self, CacheTierError> {
        if url.starts_with("rediss://") || url.starts_with("valkeys://") {
            return Err(CacheTierError::InvalidUrl {
                reason: "TLS (`rediss://`) is not built into this gateway; reach Redis over a \
                         private network or a local TLS tunnel with `redis://`"
                    .to_owned(),
            });
        }
        let client = redis::Client::open(url).map_err(|error| CacheTierError::InvalidUrl {
            reason: url_problem(&error),
        })?;
        let signer = match secret {
            Some([]) => return Err(CacheTierError::EmptySecret),
            Some(secret) => Signer::Hmac(secret.to_vec()),
            None => Signer::Checksum,
        };
        if timeout.is_zero() {
            return Err(CacheTierError::ZeroTimeout);
        }
        let info = client.get_connection_info();
        let endpoint = match info.addr() {
            ConnectionAddr::Unix(path) => {
                format!("{}/{}", path.display(), info.redis_settings().db())
            }
            addr => format!("{addr}/{}", info.redis_settings().db()),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                manager: Mutex::new(None),
                signer,
                timeout,
                endpoint,
                skip_until_ms: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        })
    }

    /// The entry for shield key `key`: `Hit` only for an entry that passes every check and was
    /// written under the operation's current generation. Never fails; never takes longer than
    /// the timeout.
    pub async fn get(&self, key: &[u8]) -> TierRead {
        let Some(scope) = Scope::of_key(key) else {
            tracing::warn!("A cache key does not start with `key_prefix`; it is never cached.");
            return TierRead::Miss;
        };
        let Some(mut connection) = self.connection() else {
            return TierRead::Unavailable;
        };
        let deadline = Instant::now() + self.inner.timeout;
        let entry_key = entry_key(key);
        let read = tokio::time::timeout_at(
            deadline,
            redis::pipe()
                .cmd("GET")
                .arg(generation_key(scope.prefix))
                .cmd("GETRANGE")
                .arg(&entry_key)
                .arg(0)
                .arg(MAX_ENTRY_BYTES)
                .query_async::<(Value, Value)>(&mut connection),
        )
        .await;
        let (generation, stored) = match read {
            Ok(Ok(values)) => values,
            Ok(Err(error)) => {
                self.failed(&scope, &error, "read");
                return TierRead::Unavailable;
            }
            Err(_) => {
                self.timed_out(&scope, "read");
                return TierRead::Unavailable;
            }
        };
        let bytes = match stored {
            Value::BulkString(bytes) if bytes.is_empty() => return TierRead::Miss,
            Value::Nil => return TierRead::Miss,
            Value::BulkString(bytes) => bytes,
            _ => {
                tracing::warn!(
                    connector = %scope.connector,
                    operation = %scope.operation,
                    "Redis answered a cache read with something other than bytes; treated as a miss."
                );
                return TierRead::Garbage;
            }
        };
        let Some(generation) = parse_generation(&generation) else {
            tracing::warn!(
                connector = %scope.connector,
                operation = %scope.operation,
                "The Redis generation counter is not a number; reads of this operation miss \
                 until it is repaired."
            );
            return TierRead::Garbage;
        };
        match decode_entry(&self.inner.signer, key, &bytes) {
            Ok(decoded) if decoded.generation == generation => TierRead::Hit(decoded.entry),
            Ok(_) => TierRead::Miss,
            Err(problem) => {
                tracing::warn!(
                    connector = %scope.connector,
                    operation = %scope.operation,
                    %problem,
                    "A Redis cache entry failed its check; it is deleted and treated as a miss."
                );
                self.delete(&scope, &entry_key, deadline, connection).await;
                TierRead::Garbage
            }
        }
    }

    /// Stores `entry` for shield key `key` for `ttl`, under the operation's current generation.
    /// Never fails: a write that cannot be made within the timeout is dropped (and logged
    /// without the key or the value).
    pub async fn put(&self, key: &[u8], entry: &StoredEntry, ttl: Duration) {
        let Some(scope) = Scope::of_key(key) else {
            tracing::warn!("A cache key does not start with `key_prefix`; it is never cached.");
            return;
        };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if ttl_ms == 0 {
            return;
        }
        let Some(mut connection) = self.connection() else {
            return;
        };
        let deadline = Instant::now() + self.inner.timeout;
        let generation = tokio::time::timeout_at(
            deadline,
            redis::cmd("GET")
                .arg(generation_key(scope.prefix))
                .query_async::<Value>(&mut connection),
        )
        .await;
        let generation = match generation {
            Ok(Ok(value)) => value,
            Ok(Err(error)) => return self.failed(&scope, &error, "write"),
            Err(_) => return self.timed_out(&scope, "write"),
        };
        let Some(generation) = parse_generation(&generation) else {
            tracing::warn!(
                connector = %scope.connector,
                operation = %scope.operation,
                "The Redis generation counter is not a number; the cache write is dropped."
            );
            return;
        };
        let bytes = encode_entry(&self.inner.signer, key, generation, entry);
        if bytes.len() > MAX_ENTRY_BYTES {
            tracing::debug!(
                connector = %scope.connector,
                operation = %scope.operation,
                bytes = bytes.len(),
                "An answer is too large for the Redis cache; it is not written."
            );
            return;
        }
        let written = tokio::time::timeout_at(
            deadline,
            redis::cmd("SET")
                .arg(entry_key(key))
                .arg(bytes)
                .arg("PX")
                .arg(ttl_ms)
                .query_async::<Value>(&mut connection),
        )
        .await;
        match written {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => self.failed(&scope, &error, "write"),
            Err(_) => self.timed_out(&scope, "write"),
        }
    }

    /// Makes every entry stored so far for the (connector, operation) of `prefix` — a
    /// [`key_prefix`] — unreachable from every instance, by bumping its generation counter.
    /// Returns the new generation. Unlike reads and writes this reports failure, because an
    /// operator who asked for it must know whether it happened; it tries Redis even within
    /// [`RETRY_AFTER`] of a failure.
    pub async fn invalidate(&self, prefix: &[u8]) -> Result<u64, CacheTierError> {
        let scope = Scope::of_prefix(prefix).ok_or(CacheTierError::InvalidPrefix)?;
        let mut connection = self.manager();
        let bumped = tokio::time::timeout(
            self.inner.timeout,
            redis::cmd("INCR")
                .arg(generation_key(scope.prefix))
                .query_async::<i64>(&mut connection),
        )
        .await;
        match bumped {
            Ok(Ok(generation)) => {
                tracing::info!(
                    connector = %scope.connector,
                    operation = %scope.operation,
                    generation,
                    "Redis cache entries invalidated."
                );
                Ok(u64::try_from(generation).unwrap_or(0))
            }
            // The connection's own deadline (the same timeout) may fire first.
            Ok(Err(error)) if error.is_timeout() => {
                self.timed_out(&scope, "invalidation");
                Err(CacheTierError::Timeout {
                    endpoint: self.inner.endpoint.clone(),
                    timeout_ms: self.inner.timeout.as_millis(),
                })
            }
            Ok(Err(error)) => {
                self.failed(&scope, &error, "invalidation");
                Err(CacheTierError::Redis {
                    endpoint: self.inner.endpoint.clone(),
                    failure: RedisFailure::from_error(&error),
                })
            }
            Err(_) => {
                self.timed_out(&scope, "invalidation");
                Err(CacheTierError::Timeout {
                    endpoint: self.inner.endpoint.clone(),
                    timeout_ms: self.inner.timeout.as_millis(),
                })
            }
        }
    }

    /// Checks that Redis answers, within the timeout (for a readiness probe or `check`).
    pub async fn ping(&self) -> Result<(), CacheTierError> {
        let mut connection = self.manager();
        match tokio::time::timeout(
            self.inner.timeout,
            redis::cmd("PING").query_async::<Value>(&mut connection),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) if error.is_timeout() => {
                self.drop_connection();
                Err(CacheTierError::Timeout {
                    endpoint: self.inner.endpoint.clone(),
                    timeout_ms: self.inner.timeout.as_millis(),
                })
            }
            Ok(Err(error)) => {
                if RedisFailure::is_connection_failure(&error) {
                    self.drop_connection();
                }
                Err(CacheTierError::Redis {
                    endpoint: self.inner.endpoint.clone(),
                    failure: RedisFailure::from_error(&error),
                })
            }
            Err(_) => {
                self.drop_connection();
                Err(CacheTierError::Timeout {
                    endpoint: self.inner.endpoint.clone(),
                    timeout_ms: self.inner.timeout.as_millis(),
                })
            }
        }
    }

    /// Whether reads and writes skip Redis now, after a recent failure; with how long is left.
    pub fn skipping(&self) -> Option<Duration> {
        let until = self.inner.skip_until_ms.load(Ordering::Relaxed);
        let now = self.now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// The connection for a read or write, or `None` while Redis is skipped.
    fn connection(&self) -> Option<ConnectionManager> {
        if self.skipping().is_some() {
            return None;
        }
        Some(self.manager())
    }

    /// The connection manager, made lazily (it connects on its first command).
    fn manager(&self) -> ConnectionManager {
        let mut slot = self
            .inner
            .manager
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(manager) = slot.as_ref() {
            return manager.clone();
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.inner.timeout))
            .set_response_timeout(Some(self.inner.timeout))
            // One attempt per connection: retrying is the tier's job, after `RETRY_AFTER`.
            .set_number_of_retries(0);
        let manager = ConnectionManager::new_lazy_with_config(self.inner.client.clone(), config)
            .expect("a config with no push sender and no resubscription is valid");
        *slot = Some(manager.clone());
        manager
    }

    fn drop_connection(&self) {
        *self
            .inner
            .manager
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Skip Redis for [`RETRY_AFTER`], on a fresh connection afterwards.
    fn back_off(&self) {
        let retry_ms = u64::try_from(RETRY_AFTER.as_millis()).unwrap_or(u64::MAX);
        self.inner.skip_until_ms.store(
            self.now_ms().saturating_add(retry_ms).max(1),
            Ordering::Relaxed,
        );
        self.drop_connection();
    }

    fn failed(&self, scope: &Scope<'_>, error: &RedisError, doing: &str) {
        if error.is_timeout() {
            return self.timed_out(scope, doing);
        }
        let failure = RedisFailure::from_error(error);
        if RedisFailure::is_connection_failure(error) {
            self.back_off();
            tracing::warn!(
                connector = %scope.connector,
                operation = %scope.operation,
                endpoint = %self.inner.endpoint,
                error = %failure,
                "Redis cache {doing} failed; Redis is skipped for a second and reads miss."
            );
        } else {
            tracing::warn!(
                connector = %scope.connector,
                operation = %scope.operation,
                endpoint = %self.inner.endpoint,
                error = %failure,
                "Redis refused a cache {doing}; treated as a miss."
            );
        }
    }

    fn timed_out(&self, scope: &Scope<'_>, doing: &str) {
        self.back_off();
        tracing::warn!(
            connector = %scope.connector,
            operation = %scope.operation,
            endpoint = %self.inner.endpoint,
            timeout_ms = self.inner.timeout.as_millis(),
            "Redis cache {doing} timed out; Redis is skipped for a second and reads miss."
        );
    }

    /// Deletes a bad entry, within what is left of the read's deadline; failure is harmless
    /// (the entry fails its check again next time, or expires).
    async fn delete(
        &self,
        scope: &Scope<'_>,
        entry_key: &str,
        deadline: Instant,
        mut connection: ConnectionManager,
    ) {
        let deleted = tokio::time::timeout_at(
            deadline,
            redis::cmd("DEL")
                .arg(entry_key)
                .query_async::<Value>(&mut connection),
        )
        .await;
        match deleted {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => self.failed(scope, &error, "delete"),
            Err(_) => self.timed_out(scope, "delete"),
        }
    }
}

/// What is wrong with a Redis URL: the redis crate's description, which names the problem
/// ("Redis URL did not parse", "Invalid database number") and never quotes the URL; its
/// detail part is dropped all the same.
fn url_problem(error: &RedisError) -> String {
    let text = error.to_string();
    match text.split(" - ").next() {
        Some(description) if !description.is_empty() => description.to_owned(),
        _ => "it does not parse".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone as _;
    use serde_json::json;
    use tokio::net::TcpListener;

    use super::*;

    const SECRET: &[u8] = b"a long random secret shared by every instance";
    /// Generous, so a loaded CI machine does not turn a slow local Redis into a failure.
    const LOCAL_TIMEOUT: Duration = Duration::from_secs(2);

    fn redis_url() -> Option<String> {
        match std::env::var("CIVICGRAPH_TEST_REDIS_URL") {
            Ok(url) => Some(url),
            Err(_) => {
                eprintln!("skipped: CIVICGRAPH_TEST_REDIS_URL is not set");
                None
            }
        }
    }

    /// A connector name of the test's own, so tests never meet in the shared Redis.
    fn connector() -> String {
        format!("test-{}", uuid::Uuid::new_v4().simple())
    }

    /// A shield key as the shield builds one: the prefix, then the call's arguments.
    fn shield_key(connector: &str, operation: &str, arguments: &str) -> Vec<u8> {
        let mut key = key_prefix(connector, operation);
        key.extend_from_slice(arguments.as_bytes());
        key
    }

    fn entry(value: Option<serde_json::Value>) -> StoredEntry {
        StoredEntry {
            value,
            as_of: Some(Utc.with_ymd_and_hms(2024, 3, 1, 4, 0, 0).unwrap()),
            loaded_at: DateTime::from_timestamp_micros(1_717_171_717_123_456).unwrap(),
        }
    }

    /// Direct access to the test Redis, past the code under test.
    struct Raw(redis::aio::MultiplexedConnection);

    impl Raw {
        async fn connect(url: &str) -> Self {
            let client = redis::Client::open(url).expect("CIVICGRAPH_TEST_REDIS_URL parses");
            Self(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("the test Redis answers"),
            )
        }

        async fn set(&mut self, key: &str, bytes: &[u8]) {
            redis::cmd("SET")
                .arg(key)
                .arg(bytes)
                .arg("EX")
                .arg(60)
                .exec_async(&mut self.0)
                .await
                .expect("SET");
        }

        async fn get(&mut self, key: &str) -> Option<Vec<u8>> {
            redis::cmd("GET")
                .arg(key)
                .query_async(&mut self.0)
                .await
                .expect("GET")
        }

        async fn exists(&mut self, key: &str) -> bool {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<i64>(&mut self.0)
                .await
                .expect("EXISTS")
                == 1
        }

        async fn pttl_ms(&mut self, key: &str) -> i64 {
            redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut self.0)
                .await
                .expect("PTTL")
        }

        async fn del(&mut self, key: &str) {
            redis::cmd("DEL")
                .arg(key)
                .exec_async(&mut self.0)
                .await
                .expect("DEL");
        }
    }

    /// Entries that must each be refused, with the reason, for `key` under `signer`.
    fn bad_entries(signer: &Signer, key: &[u8]) -> Vec<(&'static str, Vec<u8>, EntryProblem)> {
        let good = encode_entry(signer, key, 0, &entry(Some(json!({"name": "Jane Doe"}))));
        let key_hash: [u8; 32] = Sha256::digest(key).into();
        let signed = |flags: u8, loaded_at_us: i64, payload: &[u8]| {
            encode_raw(
                signer.kind(),
                flags,
                &key_hash,
                0,
                loaded_at_us,
                0,
                payload,
                |bytes| signer.tag(bytes),
            )
        };
        let with = |at: usize, byte: u8| {
            let mut bytes = good.clone();
            bytes[at] = byte;
            bytes
        };
        let flipped = |at: usize| with(at, good[at] ^ 0x01);
        let other_kind = match signer {
            Signer::Checksum => Signer::Hmac(SECRET.to_vec()),
            Signer::Hmac(_) => Signer::Checksum,
        };
        vec![
            ("empty-ish", b"x".to_vec(), EntryProblem::Truncated),
            (
                "random bytes",
                b"this is not a cache entry, but it is long enough to be one if it were: \
                  0123456789012345678901234567890123456789"
                    .to_vec(),
                EntryProblem::BadMagic,
            ),
            (
                "truncated by one byte",
                good[..good.len() - 1].to_vec(),
                EntryProblem::BadLength,
            ),
            (
                "truncated to its header",
                good[..HEADER_LEN].to_vec(),
                EntryProblem::Truncated,
            ),
            (
                "one byte too many",
                [good.as_slice(), b"x"].concat(),
                EntryProblem::BadLength,
            ),
            (
                "a payload byte flipped",
                flipped(HEADER_LEN + 2),
                EntryProblem::BadTag,
            ),
            (
                "a tag byte flipped",
                flipped(good.len() - 1),
                EntryProblem::BadTag,
            ),
            (
                "a generation byte flipped",
                flipped(46),
                EntryProblem::BadTag,
            ),
            ("version 2", with(4, 2), EntryProblem::UnknownVersion),
            ("another magic", with(0, b'X'), EntryProblem::BadMagic),
            (
                "the other tag kind",
                encode_entry(&other_kind, key, 0, &entry(Some(json!(1)))),
                EntryProblem::WrongTagKind,
            ),
            (
                "another key's entry",
                encode_entry(signer, b"another key", 0, &entry(Some(json!(1)))),
                EntryProblem::WrongKey,
            ),
            (
                "unknown flags under a valid tag",
                signed(0b100, 0, b""),
                EntryProblem::UnknownFlags,
            ),
            (
                "invalid JSON under a valid tag",
                signed(FLAG_VALUE, 0, b"{\"name\": \"Jane"),
                EntryProblem::BadJson,
            ),
            (
                "a payload without its value flag",
                signed(0, 0, b"1"),
                EntryProblem::BadLength,
            ),
            (
                "a timestamp out of range",
                signed(0, i64::MAX, b""),
                EntryProblem::BadTimestamp,
            ),
            (
                "larger than the largest entry",
                vec![b'x'; MAX_ENTRY_BYTES + 1],
                EntryProblem::Oversize,
            ),
        ]
    }

    #[test]
    fn key_prefix_is_length_prefixed_and_read_back_from_keys() {
        let prefix = key_prefix("tax", "account");
        assert_eq!(prefix, b"\0\0\0\x03tax\0\0\0\x07account");
        let key = shield_key("tax", "account", "tin=123-45-6789");
        let scope = Scope::of_key(&key).expect("a shield key");
        assert_eq!(scope.prefix, prefix.as_slice());
        assert_eq!((scope.connector, scope.operation), ("tax", "account"));
        // Length prefixes keep ("ta", "xaccount") apart from ("tax", "account").
        assert_ne!(key_prefix("ta", "xaccount"), prefix);
        assert!(Scope::of_prefix(&prefix).is_some());
        assert!(
            Scope::of_prefix(&key).is_none(),
            "arguments after the prefix"
        );
        assert!(Scope::of_key(b"").is_none());
        assert!(
            Scope::of_key(b"\0\0\0\x09tax").is_none(),
            "a length past the end"
        );
        assert!(
            Scope::of_key(b"\0\0\0\x01\xff\0\0\0\0").is_none(),
            "not UTF-8"
        );
        assert!(Scope::of_key(b"\0\0\0\x03tax").is_none(), "no operation");
    }

    #[test]
    fn redis_keys_are_hashes_in_the_v1_namespace() {
        let key = shield_key("tax", "account", "tin=123-45-6789");
        let digest = Sha256::digest(&key);
        let expected: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(entry_key(&key), format!("civicgraph:v1:{expected}"));
        assert!(!entry_key(&key).contains("6789"));
        let prefix = key_prefix("tax", "account");
        let expected: String = Sha256::digest(&prefix)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            generation_key(&prefix),
            format!("civicgraph:v1:gen:{expected}")
        );
    }

    #[test]
    fn entries_round_trip_through_the_envelope() {
        let key = shield_key("tax", "account", "tin=1");
        for signer in [Signer::Checksum, Signer::Hmac(SECRET.to_vec())] {
            for value in [
                Some(json!({"name": "Ærøskøbing ✓", "items": [1, 2.5, null, {"a": true}]})),
                Some(serde_json::Value::Null),
                None,
            ] {
                let mut stored = entry(value);
                for as_of in [stored.as_of, None] {
                    stored.as_of = as_of;
                    let bytes = encode_entry(&signer, &key, 7, &stored);
                    let decoded = decode_entry(&signer, &key, &bytes).expect("decodes");
                    assert_eq!(decoded.generation, 7);
                    assert_eq!(decoded.entry, stored);
                }
            }
        }
    }

    #[test]
    fn decode_names_what_is_wrong_with_an_entry() {
        let key = shield_key("tax", "account", "tin=1");
        for signer in [Signer::Checksum, Signer::Hmac(SECRET.to_vec())] {
            for (case, bytes, problem) in bad_entries(&signer, &key) {
                assert_eq!(
                    decode_entry(&signer, &key, &bytes).map(|d| d.entry),
                    Err(problem),
                    "{case}"
                );
            }
        }
        let good = encode_entry(&Signer::Hmac(SECRET.to_vec()), &key, 0, &entry(None));
        assert_eq!(
            decode_entry(&Signer::Hmac(b"another secret".to_vec()), &key, &good).map(|d| d.entry),
            Err(EntryProblem::BadTag),
            "another secret"
        );
    }

    #[test]
    fn malformed_urls_fail_at_start_without_repeating_the_password() {
        for url in [
            "not a url",
            "http://user:hunter2@127.0.0.1:6379",
            "redis://user:hunter2@127.0.0.1:6379/notadb",
            "redis://user:hunter2@0.0.0.0:6379",
            "rediss://user:hunter2@redis.example:6380",
        ] {
            let error = RedisTier::new(url, None, LOCAL_TIMEOUT).expect_err(url);
            let message = error.to_string();
            assert!(
                matches!(error, CacheTierError::InvalidUrl { .. }),
                "{url}: {message}"
            );
            assert!(message.starts_with("`[cache] redis_url` is not a usable Redis URL: "));
            assert!(!message.contains("hunter2"), "{message}");
            assert!(!format!("{error:?}").contains("hunter2"));
        }
        let rediss = RedisTier::new("rediss://redis.example", None, LOCAL_TIMEOUT).unwrap_err();
        assert!(rediss.to_string().contains("TLS"), "{rediss}");
    }

    #[test]
    fn an_empty_secret_or_a_zero_timeout_fail_at_start() {
        let empty = RedisTier::new("redis://127.0.0.1:6379", Some(b""), LOCAL_TIMEOUT);
        assert!(
            matches!(empty, Err(CacheTierError::EmptySecret)),
            "{empty:?}"
        );
        let zero = RedisTier::new("redis://127.0.0.1:6379", None, Duration::ZERO);
        assert!(matches!(zero, Err(CacheTierError::ZeroTimeout)), "{zero:?}");
    }

    /// Outside any runtime, with nothing listening: start never touches Redis.
    #[test]
    fn starts_without_redis_and_debug_hides_credentials() {
        let tier = RedisTier::new(
            "redis://civic:hunter2@127.0.0.1:1/3",
            Some(b"my-secret-bytes"),
            LOCAL_TIMEOUT,
        )
        .expect("a well-formed URL is accepted whether or not Redis is up");
        let debug = format!("{tier:?}");
        assert!(debug.contains("127.0.0.1:1/3"), "{debug}");
        assert!(debug.contains("hmac-sha256"), "{debug}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("civic:"),
            "{debug}"
        );
        assert!(!debug.contains("my-secret"), "{debug}");
        let stored = format!("{:?}", entry(Some(json!({"name": "Jane Doe"}))));
        assert!(!stored.contains("Jane"), "{stored}");
    }

    #[test]
    fn reads_map_to_redis_outcomes() {
        assert_eq!(TierRead::Hit(entry(None)).outcome(), RedisOutcome::Hit);
        assert_eq!(TierRead::Miss.outcome(), RedisOutcome::Miss);
        assert_eq!(TierRead::Unavailable.outcome(), RedisOutcome::Error);
        assert_eq!(TierRead::Garbage.outcome(), RedisOutcome::Garbage);
    }

    #[tokio::test]
    async fn redis_down_reads_as_unavailable_within_the_timeout() {
        // Port 1 on loopback: nothing listens, the connection is refused.
        let timeout = Duration::from_millis(500);
        let tier =
            RedisTier::new("redis://civic:hunter2@127.0.0.1:1", Some(SECRET), timeout).unwrap();
        let key = shield_key("tax", "account", "tin=1");

        let started = Instant::now();
        assert_eq!(tier.get(&key).await, TierRead::Unavailable);
        assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
        assert!(
            tier.skipping().is_some(),
            "Redis is skipped after a failure"
        );

        let started = Instant::now();
        tier.put(&key, &entry(Some(json!(1))), Duration::from_secs(60))
            .await;
        assert!(started.elapsed() < timeout, "{:?}", started.elapsed());

        let error = tier
            .invalidate(&key_prefix("tax", "account"))
            .await
            .expect_err("an invalidation that did not happen is reported");
        let message = error.to_string();
        assert!(matches!(error, CacheTierError::Redis { .. }), "{message}");
        assert!(message.contains("127.0.0.1:1"), "{message}");
        assert!(message.contains("connection refused"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");

        assert!(tier.ping().await.is_err());
    }

    #[tokio::test]
    async fn hung_redis_reads_as_unavailable_within_the_timeout() {
        // Accepts connections and never says a word.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let timeout = Duration::from_millis(300);
        let slack = Duration::from_millis(250);
        let tier = RedisTier::new(&format!("redis://{addr}"), None, timeout).unwrap();
        let key = shield_key("tax", "account", "tin=1");

        let started = Instant::now();
        assert_eq!(tier.get(&key).await, TierRead::Unavailable);
        let first = started.elapsed();
        assert!(first >= timeout - Duration::from_millis(20), "{first:?}");
        assert!(first < timeout + slack, "{first:?}");

        // Within RETRY_AFTER the tier does not wait on Redis again.
        let started = Instant::now();
        assert_eq!(tier.get(&key).await, TierRead::Unavailable);
        tier.put(&key, &entry(None), Duration::from_secs(60)).await;
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );

        // An operator's invalidation still tries, and is bounded too.
        let started = Instant::now();
        let error = tier.invalidate(&key_prefix("tax", "account")).await;
        assert!(
            matches!(error, Err(CacheTierError::Timeout { .. })),
            "{error:?}"
        );
        assert!(
            started.elapsed() < timeout + slack,
            "{:?}",
            started.elapsed()
        );

        // After RETRY_AFTER it tries again (and waits the timeout again).
        tokio::time::sleep(RETRY_AFTER).await;
        let started = Instant::now();
        assert_eq!(tier.get(&key).await, TierRead::Unavailable);
        assert!(started.elapsed() >= timeout - Duration::from_millis(20));
        assert!(started.elapsed() < timeout + slack);
        server.abort();
    }

    #[tokio::test]
    async fn keys_without_a_key_prefix_are_never_cached() {
        let tier = RedisTier::new("redis://127.0.0.1:1", None, LOCAL_TIMEOUT).unwrap();
        assert_eq!(tier.get(b"tin=123-45-6789").await, TierRead::Miss);
        assert!(tier.skipping().is_none(), "Redis was not even asked");
        for prefix in [
            b"garbage".to_vec(),
            shield_key("tax", "account", "tin=1"),
            Vec::new(),
        ] {
            let error = tier.invalidate(&prefix).await;
            assert!(
                matches!(error, Err(CacheTierError::InvalidPrefix)),
                "{error:?}"
            );
        }
        let Some(url) = redis_url() else { return };
        let tier = RedisTier::new(&url, None, LOCAL_TIMEOUT).unwrap();
        let mut raw = Raw::connect(&url).await;
        tier.put(b"tin=123-45-6789", &entry(None), Duration::from_secs(60))
            .await;
        assert!(!raw.exists(&entry_key(b"tin=123-45-6789")).await);
    }

    #[tokio::test]
    async fn round_trips_entries_between_instances() {
        let Some(url) = redis_url() else { return };
        let writer = RedisTier::new(&url, Some(SECRET), LOCAL_TIMEOUT).unwrap();
        let reader = RedisTier::new(&url, Some(SECRET), LOCAL_TIMEOUT).unwrap();
        let connector = connector();
        let mut raw = Raw::connect(&url).await;
        assert!(writer.ping().await.is_ok());

        let key = shield_key(&connector, "account", "tin=123-45-6789");
        assert_eq!(reader.get(&key).await, TierRead::Miss);
        for value in [
            Some(json!({"name": "Jane Doe", "balance": 12.5, "tags": ["a", "ü"]})),
            Some(serde_json::Value::Null),
            None,
        ] {
            let stored = entry(value);
            writer.put(&key, &stored, Duration::from_secs(60)).await;
            assert_eq!(reader.get(&key).await, TierRead::Hit(stored.clone()));
            assert_eq!(writer.get(&key).await, TierRead::Hit(stored));
        }

        // Redis holds only hashes and the envelope: no argument, anywhere.
        let bytes = raw
            .get(&entry_key(&key))
            .await
            .expect("stored under its hash");
        assert!(bytes.starts_with(MAGIC));
        assert!(!bytes.windows(4).any(|w| w == b"6789"));

        // Checksummed entries round-trip between instances without a secret.
        let plain = RedisTier::new(&url, None, LOCAL_TIMEOUT).unwrap();
        let other = shield_key(&connector, "account", "tin=2");
        let stored = entry(Some(json!([1, 2, 3])));
        plain.put(&other, &stored, Duration::from_secs(60)).await;
        let second = RedisTier::new(&url, None, LOCAL_TIMEOUT).unwrap();
        assert_eq!(second.get(&other).await, TierRead::Hit(stored));
    }

    #[tokio::test]
    async fn entries_expire_with_their_ttl() {
        let Some(url) = redis_url() else { return };
        let tier = RedisTier::new(&url, Some(SECRET), LOCAL_TIMEOUT).unwrap();
        let mut raw = Raw::connect(&url).await;
        let key = shield_key(&connector(), "account", "tin=1");
        let stored = entry(Some(json!("short-lived")));
        tier.put(&key, &stored, Duration::from_secs(1)).await;
        let ttl = raw.pttl_ms(&entry_key(&key)).await;
        assert!((1..=1000).contains(&ttl), "PTTL {ttl}");
        assert_eq!(tier.get(&key).await, TierRead::Hit(stored.clone()));
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(tier.get(&key).await, TierRead::Miss);

        // A zero TTL writes nothing (Redis would refuse `PX 0`).
        tier.put(&key, &stored, Duration::ZERO).await;
        assert!(!raw.exists(&entry_key(&key)).await);
        assert!(tier.skipping().is_none());
    }

    #[tokio::test]
    async fn garbage_entries_read_as_garbage_and_are_deleted() {
        let Some(url) = redis_url() else { return };
        let mut raw = Raw::connect(&url).await;
        let connector = connector();
        for (secret, signer) in [
            (Some(SECRET), Signer::Hmac(SECRET.to_vec())),
            (None, Signer::Checksum),
        ] {
            let tier = RedisTier::new(&url, secret, LOCAL_TIMEOUT).unwrap();
            let key = shield_key(&connector, "account", "tin=123-45-6789");
            let redis_key = entry_key(&key);
            for (case, bytes, _) in bad_entries(&signer, &key) {
                raw.set(&redis_key, &bytes).await;
                assert_eq!(tier.get(&key).await, TierRead::Garbage, "{case}");
                assert!(!raw.exists(&redis_key).await, "{case}: deleted");
            }
            // A garbled entry does not stop the next good one.
            let stored = entry(Some(json!(42)));
            tier.put(&key, &stored, Duration::from_secs(60)).await;
            assert_eq!(tier.get(&key).await, TierRead::Hit(stored));
            assert!(tier.skipping().is_none(), "garbage is not a Redis failure");
        }
    }

    #[tokio::test]
    async fn entries_from_another_secret_or_none_are_garbage() {
        let Some(url) = redis_url() else { return };
        let mut raw = Raw::connect(&url).await;
        let key = shield_key(&connector(), "account", "tin=1");
        let ours = RedisTier::new(&url, Some(SECRET), LOCAL_TIMEOUT).unwrap();
        let theirs = RedisTier::new(&url, Some(b"another secret"), LOCAL_TIMEOUT).unwrap();
        let unsigned = RedisTier::new(&url, None, LOCAL_TIMEOUT).unwrap();
        let stored = entry(Some(json!({"name": "Jane Doe"})));

        for (writer, reader, case) in [
            (&theirs, &ours, "another secret"),
            (&unsigned, &ours, "checksum only, where an HMAC is required"),
            (&ours, &unsigned, "an HMAC the reader cannot check"),
        ] {
            writer.put(&key, &stored, Duration::from_secs(60)).await;
            assert!(raw.exists(&entry_key(&key)).await, "{case}: written");
            assert_eq!(reader.get(&key).await, TierRead::Garbage, "{case}");
            assert!(!raw.exists(&entry_key(&key)).await, "{case}: deleted");
        }
    }

    #[tokio::test]
    async fn invalidation_reaches_every_instance_at_once() {
        let Some(url) = redis_url() else { return };
        let mut raw = Raw::connect(&url).await;
        let connector = connector();
        let first = RedisTier::new(&url, Some(SECRET), LOCAL_TIMEOUT).unwrap();
        let second = RedisTier::new(&url, Some(SECRET), LOCAL_TIMEOUT).unwrap();
        let account = shield_key(&connector, "account", "tin=1");
        let returns = shield_key(&connector, "returns", "tin=1");
        let stored = entry(Some(json!({"balance": 1})));
        first.put(&account, &stored, Duration::from_secs(60)).await;
        first.put(&returns, &stored, Duration::from_secs(60)).await;
        assert_eq!(second.get(&account).await, TierRead::Hit(stored.clone()));

        let prefix = key_prefix(&connector, "account");
        assert_eq!(second.invalidate(&prefix).await.unwrap(), 1);
        // No grace period: the other instance misses on its very next read.
        assert_eq!(first.get(&account).await, TierRead::Miss);
        assert_eq!(second.get(&account).await, TierRead::Miss);
        assert!(
            raw.exists(&entry_key(&account)).await,
            "old entries are left to be overwritten or expire"
        );
        // Another operation of the same connector is untouched.
        assert_eq!(first.get(&returns).await, TierRead::Hit(stored.clone()));

        // New entries are written under the new generation and shared again.
        let fresh = entry(Some(json!({"balance": 2})));
        first.put(&account, &fresh, Duration::from_secs(60)).await;
        assert_eq!(second.get(&account).await, TierRead::Hit(fresh));

        // A write that read the counter before the invalidation is stamped with the old
        // generation, so it is never served.
        let late = encode_entry(&Signer::Hmac(SECRET.to_vec()), &account, 1, &stored);
        assert_eq!(first.invalidate(&prefix).await.unwrap(), 2);
        raw.set(&entry_key(&account), &late).await;
        assert_eq!(second.get(&account).await, TierRead::Miss);
        assert!(
            raw.exists(&entry_key(&account)).await,
            "a stale entry is not garbage"
        );

        raw.del(&generation_key(&prefix)).await;
    }

    #[tokio::test]
    async fn a_garbled_generation_counter_misses_and_drops_writes() {
        let Some(url) = redis_url() else { return };
        let mut raw = Raw::connect(&url).await;
        let connector = connector();
        let tier = RedisTier::new(&url, None, LOCAL_TIMEOUT).unwrap();
        let key = shield_key(&connector, "account", "tin=1");
        let prefix = key_prefix(&connector, "account");
        let stored = entry(Some(json!(1)));
        tier.put(&key, &stored, Duration::from_secs(60)).await;

        raw.set(&generation_key(&prefix), b"banana").await;
        assert_eq!(tier.get(&key).await, TierRead::Garbage);
        assert!(
            raw.exists(&generation_key(&prefix)).await,
            "the counter is never deleted: that would revive older entries"
        );
        raw.del(&entry_key(&key)).await;
        tier.put(&key, &stored, Duration::from_secs(60)).await;
        assert!(!raw.exists(&entry_key(&key)).await, "the write was dropped");

        let error = tier
            .invalidate(&prefix)
            .await
            .expect_err("INCR of a non-number");
        assert!(error.to_string().contains("error reply"), "{error}");
        assert!(
            tier.skipping().is_none(),
            "an error reply is not a connection failure"
        );
        raw.del(&generation_key(&prefix)).await;
    }

    /// Log output collected in memory, for asserting on what an operator would read.
    #[derive(Clone, Default)]
    struct LogCapture(Arc<Mutex<Vec<u8>>>);

    impl LogCapture {
        fn text(&self) -> String {
            let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    impl std::io::Write for LogCapture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut bytes) = self.0.lock() {
                bytes.extend_from_slice(buf);
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
        type Writer = LogCapture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[tokio::test]
    async fn logs_never_carry_keys_values_or_passwords() {
        let logs = LogCapture::default();
        let _guard = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_writer(logs.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::DEBUG)
                .finish(),
        );
        let key = shield_key("tax", "account", "tin=123-45-6789");
        let stored = entry(Some(json!({"name": "Jane Doe"})));
        let down = RedisTier::new(
            "redis://civic:hunter2@127.0.0.1:1",
            Some(SECRET),
            LOCAL_TIMEOUT,
        )
        .unwrap();
        assert_eq!(down.get(&key).await, TierRead::Unavailable);
        tokio::time::sleep(RETRY_AFTER).await;
        down.put(&key, &stored, Duration::from_secs(60)).await;
        let _ = down.invalidate(&key_prefix("tax", "account")).await;
        if let Some(url) = redis_url() {
            let mut raw = Raw::connect(&url).await;
            let tier = RedisTier::new(&url, Some(SECRET), LOCAL_TIMEOUT).unwrap();
            let key = shield_key(&connector(), "account", "tin=123-45-6789");
            let bytes = encode_entry(&Signer::Hmac(b"other".to_vec()), &key, 0, &stored);
            raw.set(&entry_key(&key), &bytes).await;
            assert_eq!(tier.get(&key).await, TierRead::Garbage);
            assert!(logs.text().contains("failed its check"), "{}", logs.text());
        }
        let text = logs.text();
        assert!(text.contains("Redis cache read failed"), "{text}");
        assert!(text.contains("connection refused"), "{text}");
        assert!(text.contains("connector=tax"), "{text}");
        for secret in ["6789", "Jane", "hunter2", "civic:"] {
            assert!(!text.contains(secret), "{secret} in\n{text}");
        }
    }
}
