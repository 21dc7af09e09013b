//! `kind = "soap"`: an XML web service (SOAP 1.1 or 1.2 over HTTP).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{Returns, Secret};
use crate::identity::KeyKind;

/// A SOAP backend. Request bodies are XML templates whose `{placeholders}` are XML-escaped;
/// responses are mapped to JSON by element paths whose prefixes are declared in `namespaces`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoapConfig {
    /// The name the SDL uses in `@connect(connector: …)`; unique across files.
    pub name: Spanned<String>,
    /// Always `"soap"` here.
    pub kind: String,
    /// What the backend is, for `civicgraph check` and operators.
    #[serde(default)]
    pub description: Option<String>,
    /// The agency key this backend knows a person by; the graph fills `{<key>}` from the
    /// identity crosswalk.
    #[serde(default)]
    pub identifier: Option<Spanned<KeyKind>>,
    /// The service URL every envelope is POSTed to.
    pub endpoint: Spanned<String>,
    /// `"1.1"` (text/xml + SOAPAction header) or `"1.2"` (application/soap+xml; action=…).
    #[serde(default)]
    pub soap_version: SoapVersion,
    /// Per-call deadline.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Idle pooled connections kept.
    #[serde(default = "default_pool_idle")]
    pub pool_max_idle: usize,
    /// Prefix → namespace URI, for templates and element paths. Matching is by URI, so the
    /// backend may use any prefixes it likes.
    #[serde(default)]
    pub namespaces: BTreeMap<String, Spanned<String>>,
    /// Static HTTP headers (credentials come in through `${VAR}`).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// WS-Security UsernameToken added to every envelope's header.
    #[serde(default)]
    pub ws_security: Option<WsSecurity>,
    /// A WSDL file (relative to the connector file) that `civicgraph check` verifies every
    /// operation and element path against.
    #[serde(default)]
    pub wsdl: Option<Spanned<String>>,
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
    /// The calls this service offers, by name.
    pub operations: BTreeMap<Spanned<String>, SoapOperation>,
}

fn default_timeout_ms() -> u64 {
    2_000
}

fn default_pool_idle() -> usize {
    32
}

/// The SOAP protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SoapVersion {
    /// SOAP 1.1.
    #[default]
    #[serde(rename = "1.1")]
    V11,
    /// SOAP 1.2.
    #[serde(rename = "1.2")]
    V12,
}

/// WS-Security UsernameToken credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsSecurity {
    /// User name, normally `${DMV_USER}`.
    pub username: Secret,
    /// Password, normally `${DMV_PASSWORD}`.
    pub password: Secret,
    /// `text` (PasswordText) or `digest` (PasswordDigest with nonce and timestamp).
    #[serde(default)]
    pub password_type: PasswordType,
}

/// How the UsernameToken carries the password.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordType {
    /// The password itself (only over TLS).
    #[default]
    Text,
    /// Base64(SHA-1(nonce + created + password)).
    Digest,
}

/// One SOAP operation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoapOperation {
    /// What the call does, shown by `civicgraph check`.
    #[serde(default)]
    pub description: Option<String>,
    /// The SOAPAction (1.1 header; 1.2 `action` media-type parameter).
    #[serde(default)]
    pub action: Option<String>,
    /// The content of `soap:Body`, with `{placeholders}` that are XML-escaped when filled.
    pub body: Spanned<String>,
    /// Element path from inside `soap:Body` to the result, e.g. `dmv:GetLicenseResponse/dmv:license`.
    /// When that element is absent the field is `null`.
    pub select: Spanned<String>,
    /// Element paths, relative to `select`, that are lists even when they occur once or never.
    #[serde(default)]
    pub lists: Vec<Spanned<String>>,
    /// `one` (default): the selected element, or `null`. `many`: every element `select`
    /// matches, as a list (`[]` when there is none), so a list field never depends on how
    /// many items the backend happened to have.
    #[serde(default = "one")]
    pub returns: Returns,
    /// The service's list operation, which answers many keys in one envelope; the graph then
    /// asks for a list of parents' values in one call instead of one call each.
    #[serde(default)]
    pub batch: Option<Spanned<SoapBatch>>,
}

/// `[operations.<name>.batch]`: the list operation behind an operation, e.g. `GetLicenses`
/// for `GetLicense`. Each key's answer is built from its item exactly as the operation's own
/// answer is built from `select` (with the operation's `lists` and `returns`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoapBatch {
    /// The placeholder whose values one envelope carries many of; default: the operation's
    /// only placeholder.
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    /// The list operation's SOAPAction.
    #[serde(default)]
    pub action: Option<Spanned<String>>,
    /// The content of `soap:Body`, with `{each}` once, where the repeated part goes.
    pub body: Spanned<String>,
    /// The part repeated once per key, e.g.
    /// `<dmv:licenseNumber>{license_number}</dmv:licenseNumber>`; placeholders are XML-escaped.
    pub each: Spanned<String>,
    /// Element path from inside `soap:Body` to the items, e.g.
    /// `dmv:GetLicensesResponse/dmv:license`; the service may answer them in any order and
    /// leaves unknown keys out.
    pub items: Spanned<String>,
    /// Element path, relative to an item, to the element whose text is the key it answers.
    #[serde(rename = "match")]
    pub key_element: Spanned<String>,
    /// Element path, relative to an item, to what the operation's `select` would find for
    /// that key (an item that wraps one key's answer, e.g. a holder's vehicles); default: the
    /// item itself is the selected element.
    #[serde(default)]
    pub select: Option<Spanned<String>>,
    /// The most keys in one envelope (default 100, at most 1000).
    #[serde(default)]
    pub max: Option<Spanned<usize>>,
}

fn one() -> Returns {
    Returns::One
}
