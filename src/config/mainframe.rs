//! `kind = "mainframe"`: fixed-width EBCDIC records described by a COBOL copybook, reached
//! online (transactions over TCP) or through nightly extract files dropped in a directory.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::Returns;
use crate::connectors::mainframe::codec::{CodePage, NullWhen, Overflow, Pad};
use crate::identity::KeyKind;

/// A mainframe backend. Exactly one of `[online]` and `[extract]` says how it is reached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MainframeConfig {
    /// The name the SDL uses in `@connect(connector: …)`; unique across files.
    pub name: Spanned<String>,
    /// Always `"mainframe"` here.
    pub kind: String,
    /// What the backend is, for `civicgraph check` and operators.
    #[serde(default)]
    pub description: Option<String>,
    /// The agency key this backend knows a person by; the graph fills `{<key>}` from the
    /// identity crosswalk.
    #[serde(default)]
    pub identifier: Option<Spanned<KeyKind>>,
    /// The copybook describing the records, relative to this file.
    pub copybook: Spanned<String>,
    /// EBCDIC code page of text fields: `"037"` (default) or `"1047"`.
    #[serde(default)]
    pub code_page: CodePage,
    /// Prefixes removed from COBOL names before they become JSON names, e.g. `["BNQ-"]`.
    #[serde(default)]
    pub strip_prefixes: Vec<String>,
    /// How request records are padded and what happens to text too long for its field.
    #[serde(default)]
    pub encoding: EncodingConfig,
    /// Per-field presentation, keyed by COBOL name (`[fields.BNQ-OPENED-ON]`).
    #[serde(default)]
    pub fields: BTreeMap<Spanned<String>, FieldConfig>,
    /// Online access: transactions over TCP.
    #[serde(default)]
    pub online: Option<Spanned<OnlineConfig>>,
    /// Batch access: extract files loaded into the gateway's store.
    #[serde(default)]
    pub extract: Option<Spanned<ExtractConfig>>,
    /// The most calls in flight to this backend at once (default 32); never exceeded.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// How long a call waits for a free slot before failing fast with `BACKEND_BUSY`
    /// (default 50).
    #[serde(default)]
    pub queue_timeout_ms: Option<u64>,
    /// Answers kept for reuse, per operation; absent caches nothing.
    #[serde(default)]
    pub cache: Option<super::CacheConfig>,
    /// Retries of failed reads (never of writes).
    #[serde(default)]
    pub retry: super::RetryConfig,
    /// When the circuit opens and how it closes.
    #[serde(default)]
    pub breaker: super::BreakerConfig,
    /// Daily windows when the backend must not be called (stale answers are served instead).
    #[serde(default)]
    pub maintenance: Vec<super::MaintenanceWindow>,
    /// The calls this backend offers, by name.
    pub operations: BTreeMap<Spanned<String>, MainframeOperation>,
}

/// Padding and truncation of request records, stated rather than implied.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodingConfig {
    /// `"error"` (default: the call is refused, nothing is sent) or `"truncate"` (cut on the
    /// right, as COBOL `MOVE` does) for text longer than its field.
    #[serde(default)]
    pub text_overflow: Overflow,
    /// `"spaces"` (default) or `"low-values"`: what fills the rest of a text field.
    #[serde(default)]
    pub text_pad: Pad,
}

/// How one field is presented (or filled, for request records).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// The JSON name; default: `strip_prefixes` removed, then `OPENED-ON` → `openedOn`.
    #[serde(default)]
    pub name: Option<String>,
    /// Leave the field out of answers.
    #[serde(default)]
    pub skip: bool,
    /// `"raw"` to ignore the field's 88-levels and show its value.
    #[serde(default)]
    pub decode: Option<Spanned<String>>,
    /// A date held as digits or text in this chrono format, e.g. `"%Y%m%d"`.
    #[serde(default)]
    pub date: Option<String>,
    /// `"spaces"`, `"zero"`, `"low-values"` or `"blank"` (any of them) reads as null.
    #[serde(default)]
    pub null_when: Option<NullWhen>,
    /// For a REDEFINES view: decode it only when this 88-level condition holds.
    #[serde(default)]
    pub when: Option<String>,
    /// Overrides `encoding.text_overflow` for this field.
    #[serde(default)]
    pub overflow: Option<Overflow>,
}

/// Where the mainframe listens and how records are framed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineConfig {
    /// `host:port` of the transaction gateway.
    pub address: Spanned<String>,
    /// `"length4"` (default, 4-byte big-endian length), `"length4-inclusive"` (the length
    /// counts its own 4 bytes), `"length2"`, `"length2-inclusive"`, or `"llzz"`.
    #[serde(default = "default_framing")]
    pub framing: Spanned<String>,
    /// Connections in the pool: the mainframe never sees more transactions at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Deadline for one transaction, including waiting for a pooled connection.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest response record accepted.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
}

fn default_framing() -> Spanned<String> {
    Spanned::new(0..0, "length4".to_string())
}

fn default_max_connections() -> usize {
    4
}

fn default_timeout_ms() -> u64 {
    2_000
}

fn default_max_record_bytes() -> usize {
    1024 * 1024
}

/// A directory the mainframe drops nightly extract files into.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractConfig {
    /// The directory, relative to this file unless absolute.
    pub directory: Spanned<String>,
    /// File names to load: `*` matches any run of characters, `?` one, e.g. `BENPAY.*.DAT`.
    pub pattern: Spanned<String>,
    /// The copybook record each file holds; optional when the copybook has one record.
    #[serde(default)]
    pub record: Option<Spanned<String>>,
    /// The field operations look records up by, e.g. `BPY-CASE-NUMBER`.
    pub key: Spanned<String>,
    /// Bytes per record slot; default: the record's length. Every file must be a whole
    /// number of slots.
    #[serde(default)]
    pub record_length: Option<usize>,
    /// When set, a file is loaded only once `<file><ready_suffix>` exists (the mainframe
    /// writes it after the last record), e.g. `".READY"`.
    #[serde(default)]
    pub ready_suffix: Option<String>,
    /// A chrono format matching the whole file name, giving the extract's as-of time, e.g.
    /// `"BENPAY.D%Y%m%d.T%H%M%S.DAT"`. Default: the file's modification time.
    #[serde(default)]
    pub as_of_format: Option<Spanned<String>>,
    /// How often the directory is looked at.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Larger files are rejected unread: a file is decoded in memory before it is stored, so
    /// this bounds what one load can take (default 512 MiB).
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

fn default_poll_ms() -> u64 {
    10_000
}

fn default_max_file_bytes() -> u64 {
    512 * 1024 * 1024
}

/// One call on a mainframe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MainframeOperation {
    /// What the call does, shown by `civicgraph check`.
    #[serde(default)]
    pub description: Option<String>,
    /// Online: the copybook record sent as the request.
    #[serde(default)]
    pub request: Option<Spanned<String>>,
    /// Online: the copybook record the answer is read as.
    #[serde(default)]
    pub response: Option<Spanned<String>>,
    /// Online: the transaction code and the request field that carries it.
    #[serde(default)]
    pub transaction: Option<Spanned<TransactionConfig>>,
    /// Online: request fields by COBOL name; `"{placeholder}"` takes an argument, anything
    /// else is sent as written.
    #[serde(default)]
    pub set: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    /// Online: which 88-level conditions of the response mean success and "no such entity";
    /// any other value is a backend fault whose code is the field's value.
    #[serde(default)]
    pub status: Option<Spanned<StatusConfig>>,
    /// Extract: the key looked up, normally `"{case_number}"`.
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    /// The COBOL name of the item to return (e.g. the OCCURS table of cases); default: the
    /// whole record.
    #[serde(default)]
    pub select: Option<Spanned<String>>,
    /// `one` (default online) or `many` (default for extracts: every record with the key).
    #[serde(default)]
    pub returns: Option<Returns>,
    /// Online: the multi-key transaction that answers many keys at once, so the graph asks
    /// for a list of parents' values in one transaction. Extract operations need none: they
    /// read many keys in one store query on their own.
    #[serde(default)]
    pub batch: Option<Spanned<MainframeBatch>>,
}

/// `[operations.<name>.batch]`: a multi-key transaction. The request record carries every key
/// in an `OCCURS … DEPENDING ON` table; the answer is a header record followed by one record
/// of the operation's `response` per key, each naming its key, so each key's answer is read
/// exactly as the operation's own answer is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MainframeBatch {
    /// The placeholder whose values one transaction carries many of; default: the operation's
    /// only placeholder.
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    /// The copybook record sent.
    pub request: Spanned<String>,
    /// The multi-key transaction's code and the request field that carries it.
    #[serde(default)]
    pub transaction: Option<Spanned<TransactionConfig>>,
    /// Further request fields, as the operation's `set` (the key goes into `keys`).
    #[serde(default)]
    pub set: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    /// The request table (`PIC … OCCURS m TO n TIMES DEPENDING ON …`) the keys go into; its
    /// count is set from the number of keys.
    pub keys: Spanned<String>,
    /// The record the answer starts with; the result records follow it.
    pub response: Spanned<String>,
    /// The field of `response` that says how many result records follow.
    pub count: Spanned<String>,
    /// Which 88-level conditions of `response` mean the transaction as a whole worked
    /// (otherwise the whole batch is a backend fault); `not_found` means no key exists.
    #[serde(default)]
    pub status: Option<Spanned<StatusConfig>>,
    /// The field of each result record (the operation's `response`) naming the key it answers.
    #[serde(rename = "match")]
    pub key_field: Spanned<String>,
    /// The most keys in one transaction; default and upper bound: the `keys` table's maximum.
    #[serde(default)]
    pub max: Option<Spanned<usize>>,
}

/// The transaction code of an online request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionConfig {
    /// The request field holding the code, e.g. `BNQ-TRAN-CODE`.
    pub field: String,
    /// The code, e.g. `BNQ1`.
    pub code: String,
}

/// How an online answer says whether it worked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// 88-level conditions meaning success.
    pub ok: Vec<String>,
    /// 88-level conditions meaning the entity does not exist (answered as null).
    #[serde(default)]
    pub not_found: Vec<String>,
}
