//! Persisted operations: the query text a request runs, resolved from its `query` and its
//! `extensions.persistedQuery` before anything is parsed.
//!
//! Two uses share one mechanism, the SHA-256 of an operation's text:
//!
//! - **Automatic persisted queries** (Apollo's APQ protocol): a client sends
//!   `extensions.persistedQuery = {version: 1, sha256Hash}` without the text; an unknown hash
//!   gets `PERSISTED_QUERY_NOT_FOUND`, the client sends hash and text together, the gateway
//!   checks that the hash is the text's and remembers it (in a bounded in-memory cache per
//!   instance), and from then on the hash alone is enough, on GET too.
//! - **Safelists**: operations registered in Apollo persisted-query manifests. With
//!   `[persisted] mode = "safelist"` only they run: sent by manifest id, by hash, or as their
//!   exact text. A partner agency may have manifests of its own, which then are the only
//!   operations it may run.
//!
//! Nothing is executed and no backend is called for a request refused here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::config::{Diagnostic, Location, PersistedConfig, PersistedMode, SourceFile};
use crate::error::ErrorCode;

/// The `format` an Apollo persisted-query manifest declares.
pub const MANIFEST_FORMAT: &str = "apollo-persisted-query-manifest";

/// The message of `PERSISTED_QUERY_NOT_FOUND`; Apollo clients match on it as well as the code.
pub const NOT_FOUND_MESSAGE: &str = "PersistedQueryNotFound";

/// The message of `PERSISTED_QUERY_NOT_SUPPORTED`, which Apollo clients also match on.
pub const NOT_SUPPORTED_MESSAGE: &str = "PersistedQueryNotSupported";

/// The operations one manifest (or several merged) allows, by id and by the hash of their
/// text, so a client may send either.
#[derive(Debug, Default)]
struct Manifest {
    by_key: HashMap<String, Arc<str>>,
    /// The hashes of every body, for requests that send the text.
    hashes: std::collections::HashSet<String>,
}

impl Manifest {
    fn get(&self, key: &str) -> Option<&Arc<str>> {
        self.by_key
            .get(key)
            .or_else(|| self.by_key.get(&key.to_ascii_lowercase()))
    }

    fn allows_text_hash(&self, hash: &str) -> bool {
        self.hashes.contains(hash)
    }
}

/// What a request runs, once its persisted-operation extension is resolved.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The query text; `None` when the request has neither text nor hash.
    pub(crate) query: Option<String>,
    /// A verified APQ hash to remember once the text parses (`None` when nothing is new).
    pub(crate) register: Option<String>,
}

/// Why a request's operation is refused: the code and a message safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    /// One of the `PERSISTED_QUERY_*` codes, or `BAD_REQUEST` for a malformed extension.
    pub(crate) code: ErrorCode,
    /// What was wrong, without internals.
    pub(crate) message: &'static str,
}

impl Refused {
    fn new(code: ErrorCode, message: &'static str) -> Self {
        Self { code, message }
    }

    /// The label of `civicgraph_requests_rejected_total{reason}` for this refusal.
    pub(crate) fn reason(&self) -> &'static str {
        match self.code {
            ErrorCode::PersistedQueryNotFound => "persisted_not_found",
            ErrorCode::PersistedQueryHashMismatch => "persisted_hash_mismatch",
            ErrorCode::PersistedQueryNotAllowed => "persisted_not_allowed",
            ErrorCode::PersistedQueryNotSupported => "persisted_not_supported",
            _ => "persisted_bad_extension",
        }
    }
}

/// The APQ cache and the manifests, shared by every request of the instance.
pub struct PersistedOperations {
    mode: PersistedMode,
    apq: moka::sync::Cache<String, Arc<str>>,
    shared: Manifest,
    clients: HashMap<String, Manifest>,
}

impl std::fmt::Debug for PersistedOperations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistedOperations")
            .field("mode", &self.mode)
            .field("manifest_operations", &self.shared.by_key.len())
            .field("client_manifests", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl Default for PersistedOperations {
    fn default() -> Self {
        Self::empty(&PersistedConfig::default())
    }
}

impl PersistedOperations {
    fn empty(config: &PersistedConfig) -> Self {
        let apq = moka::sync::Cache::builder()
            .max_capacity(config.apq_cache_mb.saturating_mul(1024 * 1024))
            .weigher(|key: &String, text: &Arc<str>| {
                u32::try_from(key.len() + text.len()).unwrap_or(u32::MAX)
            })
            .build();
        Self {
            mode: config.mode,
            apq,
            shared: Manifest::default(),
            clients: HashMap::new(),
        }
    }

    /// Reads every manifest `[persisted]` names (paths relative to `civicgraph.toml`, which
    /// is at `config_path`). Every problem is reported, at the manifest's line where it can be
    /// found; a manifest with problems contributes nothing.
    pub fn load(config_path: &Path, config: &PersistedConfig) -> (Self, Vec<Diagnostic>) {
        let root = config_path.parent().unwrap_or(Path::new(""));
        let mut operations = Self::empty(config);
        let mut diagnostics = Vec::new();
        operations.shared = read_manifests(root, &config.manifests, &mut diagnostics);
        for (client, paths) in &config.clients {
            let manifest = read_manifests(root, paths, &mut diagnostics);
            operations.clients.insert(client.clone(), manifest);
        }
        if config.mode == PersistedMode::Safelist
            && config.manifests.is_empty()
            && config.clients.is_empty()
        {
            diagnostics.push(Diagnostic::file(
                config_path,
                "[persisted] mode = \"safelist\" needs `manifests` or `clients`: with none, no operation could run",
            ));
        }
        (operations, diagnostics)
    }

    /// The manifest that applies to `principal`: its client id's, else its agency's, else
    /// the shared one.
    fn manifest_for(&self, principal: &Principal) -> &Manifest {
        if let Principal::Agency(client) = principal
            && let Some(manifest) = self
                .clients
                .get(&client.client_id)
                .or_else(|| self.clients.get(&client.agency))
        {
            return manifest;
        }
        &self.shared
    }

    /// The text the request runs, from its `query` and `extensions`; see the module docs.
    pub(crate) fn resolve(
        &self,
        query: Option<String>,
        extensions: Option<&serde_json::Value>,
        principal: &Principal,
    ) -> Result<Resolved, Refused> {
        let hash = persisted_hash(extensions)?;
        if self.mode == PersistedMode::Off {
            return match (query, hash) {
                (None, Some(_)) => Err(Refused::new(
                    ErrorCode::PersistedQueryNotSupported,
                    NOT_SUPPORTED_MESSAGE,
                )),
                (query, _) => Ok(Resolved {
                    query,
                    register: None,
                }),
            };
        }
        let manifest = self.manifest_for(principal);
        let safelist = self.mode == PersistedMode::Safelist;
        match (query, hash) {
            (None, None) => Ok(Resolved {
                query: None,
                register: None,
            }),
            (None, Some(key)) => {
                if let Some(text) = manifest.get(key) {
                    return Ok(known(text));
                }
                if safelist {
                    return Err(not_allowed());
                }
                match self.apq.get(&key.to_ascii_lowercase()) {
                    Some(text) => Ok(known(&text)),
                    None => Err(Refused::new(
                        ErrorCode::PersistedQueryNotFound,
                        NOT_FOUND_MESSAGE,
                    )),
                }
            }
            (Some(text), key) => {
                let digest = sha256_hex(&text);
                if let Some(key) = key {
                    let is_id_of_text = manifest.get(key).is_some_and(|body| **body == *text);
                    if !key.eq_ignore_ascii_case(&digest) && !is_id_of_text {
                        return Err(Refused::new(
                            ErrorCode::PersistedQueryHashMismatch,
                            "`extensions.persistedQuery.sha256Hash` is not the SHA-256 of the query text.",
                        ));
                    }
                }
                let listed = manifest.allows_text_hash(&digest);
                if safelist && !listed {
                    return Err(not_allowed());
                }
                let register =
                    (key.is_some() && !listed && !self.apq.contains_key(&digest)).then_some(digest);
                Ok(Resolved {
                    query: Some(text),
                    register,
                })
            }
        }
    }

    /// Remembers a verified APQ registration whose text parsed.
    pub(crate) fn register(&self, hash: String, text: &str) {
        self.apq.insert(hash, Arc::from(text));
    }

    /// Whether the safelist lets `principal` run `text` (for WebSocket operations, which
    /// always carry their text). Always true outside `safelist` mode.
    pub(crate) fn allows_text(&self, text: &str, principal: &Principal) -> bool {
        self.mode != PersistedMode::Safelist
            || self
                .manifest_for(principal)
                .allows_text_hash(&sha256_hex(text))
    }
}

fn known(text: &Arc<str>) -> Resolved {
    Resolved {
        query: Some(text.to_string()),
        register: None,
    }
}

fn not_allowed() -> Refused {
    Refused::new(
        ErrorCode::PersistedQueryNotAllowed,
        "This operation is not in the persisted-operation list this caller may run.",
    )
}

/// The hex SHA-256 of an operation's text, as APQ and the manifests key it.
pub fn sha256_hex(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// `extensions.persistedQuery.sha256Hash`, checked: `None` when the extension is absent.
fn persisted_hash(extensions: Option<&serde_json::Value>) -> Result<Option<&str>, Refused> {
    let bad = |message| Err(Refused::new(ErrorCode::BadRequest, message));
    let extensions = match extensions {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Object(map)) => map,
        Some(_) => return bad("`extensions` must be a JSON object."),
    };
    let Some(persisted) = extensions.get("persistedQuery").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(persisted) = persisted.as_object() else {
        return bad(
            "`extensions.persistedQuery` must be an object with `version` and `sha256Hash`.",
        );
    };
    if persisted.get("version").and_then(serde_json::Value::as_u64) != Some(1) {
        return bad("`extensions.persistedQuery.version` must be 1.");
    }
    match persisted
        .get("sha256Hash")
        .and_then(serde_json::Value::as_str)
    {
        Some(hash) if !hash.trim().is_empty() && hash.len() <= 256 => Ok(Some(hash.trim())),
        _ => bad("`extensions.persistedQuery.sha256Hash` must be a non-empty string."),
    }
}

/// An Apollo persisted-query manifest as written.
#[derive(Debug, Deserialize)]
struct ManifestFile {
    format: String,
    version: u64,
    operations: Vec<ManifestOperation>,
}

#[derive(Debug, Deserialize)]
struct ManifestOperation {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    body: String,
}

fn read_manifests(root: &Path, paths: &[String], diagnostics: &mut Vec<Diagnostic>) -> Manifest {
    let mut merged = Manifest::default();
    for path in paths {
        let full = root.join(path);
        let text = match std::fs::read_to_string(&full) {
            Ok(text) => text,
            Err(error) => {
                diagnostics.push(Diagnostic::file(
                    &full,
                    format!("cannot read this persisted-operation manifest: {error}"),
                ));
                continue;
            }
        };
        let source = SourceFile::new(full, text);
        let before = diagnostics.len();
        let operations = parse_manifest(&source, diagnostics);
        if diagnostics.len() > before {
            continue;
        }
        for (id, body) in operations {
            merged.hashes.insert(sha256_hex(&body));
            let body: Arc<str> = Arc::from(body);
            merged.by_key.insert(sha256_hex(&body), Arc::clone(&body));
            merged.by_key.insert(id, body);
        }
    }
    merged
}

/// The `(id, body)` pairs of one manifest, every problem reported at its line.
fn parse_manifest(source: &SourceFile, diagnostics: &mut Vec<Diagnostic>) -> Vec<(String, String)> {
    let file: ManifestFile = match serde_json::from_str(&source.text) {
        Ok(file) => file,
        Err(error) => {
            let location = Location::at(&source.path, error.line(), error.column());
            let message = error.to_string();
            // serde_json appends " at line L column C", which the location already says.
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(head, _)| head);
            diagnostics.push(Diagnostic::at(
                location,
                format!("not an Apollo persisted-query manifest: {message}"),
            ));
            return Vec::new();
        }
    };
    let top = || source.location(0);
    if file.format != MANIFEST_FORMAT {
        diagnostics.push(Diagnostic::at(
            top(),
            format!(
                "`format` is `{}`; a persisted-query manifest says `{MANIFEST_FORMAT}`",
                file.format
            ),
        ));
    }
    if file.version != 1 {
        diagnostics.push(Diagnostic::at(
            top(),
            format!(
                "`version` is {}; this gateway reads version 1 manifests",
                file.version
            ),
        ));
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    let mut operations = Vec::new();
    for (index, operation) in file.operations.iter().enumerate() {
        // Where the operation is: the line of its id in the file, else the file's top.
        let location = serde_json::to_string(&operation.id)
            .ok()
            .and_then(|quoted| source.text.find(&quoted))
            .map_or_else(top, |offset| source.location(offset));
        let label = match &operation.name {
            Some(name) => format!("operations[{index}] (`{name}`)"),
            None => format!("operations[{index}]"),
        };
        let mut problem = |message: String| {
            diagnostics.push(Diagnostic::at(
                location.clone(),
                format!("{label}: {message}"),
            ));
        };
        if operation.id.trim().is_empty() {
            problem("`id` is empty".to_string());
            continue;
        }
        let document = match async_graphql::parser::parse_query(&operation.body) {
            Ok(document) => document,
            Err(error) => {
                problem(format!(
                    "`body` is not valid GraphQL: {}",
                    crate::graph::documents::syntax_message(&error)
                ));
                continue;
            }
        };
        if let Some(kind) = &operation.kind {
            let types: Vec<&'static str> = document
                .operations
                .iter()
                .map(|(_, op)| match op.node.ty {
                    async_graphql::parser::types::OperationType::Query => "query",
                    async_graphql::parser::types::OperationType::Mutation => "mutation",
                    async_graphql::parser::types::OperationType::Subscription => "subscription",
                })
                .collect();
            if !types.contains(&kind.as_str()) {
                problem(format!(
                    "`type` is `{kind}` but the body defines no {kind} (it has {})",
                    types.join(", ")
                ));
                continue;
            }
        }
        match seen.get(operation.id.as_str()) {
            Some(body) if *body != operation.body => {
                problem(format!(
                    "the id `{}` is used by an earlier operation with a different body",
                    operation.id
                ));
                continue;
            }
            _ => {
                seen.insert(&operation.id, &operation.body);
            }
        }
        operations.push((operation.id.clone(), operation.body.clone()));
    }
    operations
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const QUERY: &str = "{ notice { text } }";

    fn manifest(operations: serde_json::Value) -> String {
        serde_json::json!({"format": MANIFEST_FORMAT, "version": 1, "operations": operations})
            .to_string()
    }

    fn ext(hash: &str) -> serde_json::Value {
        serde_json::json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
    }

    fn load(mode: PersistedMode, files: &[(&str, &str)]) -> (PersistedOperations, Vec<Diagnostic>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let config = PersistedConfig {
            mode,
            manifests: files.iter().map(|(name, _)| name.to_string()).collect(),
            clients: BTreeMap::new(),
            ..PersistedConfig::default()
        };
        PersistedOperations::load(&dir.path().join("civicgraph.toml"), &config)
    }

    #[test]
    fn the_hash_of_a_text_is_its_lower_case_hex_sha256() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn apq_asks_for_the_text_then_remembers_a_verified_hash() {
        let ops = PersistedOperations::default();
        let hash = sha256_hex(QUERY);
        let anyone = Principal::Anonymous;
        let missing = ops.resolve(None, Some(&ext(&hash)), &anyone).unwrap_err();
        assert_eq!(missing.code, ErrorCode::PersistedQueryNotFound);
        assert_eq!(missing.message, NOT_FOUND_MESSAGE);
        let first = ops
            .resolve(Some(QUERY.into()), Some(&ext(&hash)), &anyone)
            .unwrap();
        assert_eq!(first.register.as_deref(), Some(hash.as_str()));
        ops.register(hash.clone(), QUERY);
        let again = ops
            .resolve(None, Some(&ext(&hash.to_uppercase())), &anyone)
            .unwrap();
        assert_eq!(again.query.as_deref(), Some(QUERY));
    }

    #[test]
    fn a_hash_that_is_not_the_texts_is_refused_and_not_stored() {
        let ops = PersistedOperations::default();
        let wrong = sha256_hex("{ other }");
        let refused = ops
            .resolve(
                Some(QUERY.into()),
                Some(&ext(&wrong)),
                &Principal::Anonymous,
            )
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::PersistedQueryHashMismatch);
        assert!(
            ops.resolve(None, Some(&ext(&wrong)), &Principal::Anonymous)
                .is_err()
        );
    }

    #[test]
    fn malformed_extensions_are_bad_requests() {
        let ops = PersistedOperations::default();
        for extensions in [
            serde_json::json!([1]),
            serde_json::json!({"persistedQuery": "abc"}),
            serde_json::json!({"persistedQuery": {"version": 2, "sha256Hash": "ab"}}),
            serde_json::json!({"persistedQuery": {"version": 1, "sha256Hash": 7}}),
            serde_json::json!({"persistedQuery": {"version": 1, "sha256Hash": ""}}),
        ] {
            let refused = ops
                .resolve(None, Some(&extensions), &Principal::Anonymous)
                .unwrap_err();
            assert_eq!(refused.code, ErrorCode::BadRequest, "{extensions}");
        }
    }

    #[test]
    fn off_mode_says_hashes_are_not_supported_but_runs_text() {
        let ops = PersistedOperations::empty(&PersistedConfig {
            mode: PersistedMode::Off,
            ..PersistedConfig::default()
        });
        let refused = ops
            .resolve(None, Some(&ext(&sha256_hex(QUERY))), &Principal::Anonymous)
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::PersistedQueryNotSupported);
        assert_eq!(refused.message, NOT_SUPPORTED_MESSAGE);
        let text = ops
            .resolve(Some(QUERY.into()), None, &Principal::Anonymous)
            .unwrap();
        assert_eq!(text.query.as_deref(), Some(QUERY));
    }

    #[test]
    fn a_safelist_runs_listed_operations_by_id_hash_or_text_only() {
        let text = manifest(serde_json::json!([
            {"id": "notice-v1", "name": "Notice", "type": "query", "body": QUERY}
        ]));
        let (ops, problems) = load(PersistedMode::Safelist, &[("m.json", &text)]);
        assert!(problems.is_empty(), "{problems:?}");
        let anyone = Principal::Anonymous;
        for key in ["notice-v1", &sha256_hex(QUERY)] {
            let resolved = ops.resolve(None, Some(&ext(key)), &anyone).unwrap();
            assert_eq!(resolved.query.as_deref(), Some(QUERY));
        }
        assert!(ops.resolve(Some(QUERY.into()), None, &anyone).is_ok());
        let other = "{ notice { text } __typename }";
        for refused in [
            ops.resolve(Some(other.into()), None, &anyone),
            ops.resolve(None, Some(&ext(&sha256_hex(other))), &anyone),
            ops.resolve(Some(other.into()), Some(&ext(&sha256_hex(other))), &anyone),
        ] {
            assert_eq!(
                refused.unwrap_err().code,
                ErrorCode::PersistedQueryNotAllowed
            );
        }
        assert!(ops.allows_text(QUERY, &anyone));
        assert!(!ops.allows_text(other, &anyone));
    }

    #[test]
    fn bad_manifests_are_reported_at_their_line() {
        let broken = "{\n  \"format\": \"apollo-persisted-query-manifest\",\n  \"version\": 1,\n  \"operations\": [\n    {\"id\": \"a\", \"body\": \"{ notice { text }\"},\n    {\"id\": \"b\", \"type\": \"mutation\", \"body\": \"{ notice { text } }\"}\n  ]\n}\n";
        let (_, problems) = load(PersistedMode::Apq, &[("bad.json", broken)]);
        let lines: Vec<(usize, String)> = problems
            .iter()
            .map(|d| (d.location.as_ref().unwrap().line, d.message.clone()))
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].0, 5);
        assert!(
            lines[0]
                .1
                .starts_with("operations[0]: `body` is not valid GraphQL"),
            "{lines:?}"
        );
        assert_eq!(lines[1].0, 6);
        assert!(lines[1].1.contains("`type` is `mutation`"), "{lines:?}");

        let (_, problems) = load(
            PersistedMode::Apq,
            &[("trunc.json", "{\n  \"format\": 3\n}")],
        );
        let location = problems[0].location.as_ref().unwrap();
        assert_eq!(location.line, 2, "{problems:?}");

        let wrong_format = r#"{"format": "relay", "version": 1, "operations": []}"#;
        let (_, problems) = load(PersistedMode::Apq, &[("f.json", wrong_format)]);
        assert!(
            problems[0].message.contains("`format` is `relay`"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_safelist_without_manifests_is_a_config_error() {
        let (_, problems) = load(PersistedMode::Safelist, &[]);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .message
                .contains("needs `manifests` or `clients`")
        );
    }
}
