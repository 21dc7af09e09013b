//! Connectors: the runtime objects that call backend systems.
//!
//! A connector file's typed config builds an `Arc<dyn Connector>`. The graph speaks to every
//! backend through this one trait, in plain JSON, so connector kinds never see GraphQL types
//! and the graph never sees HTTP or SQL.

pub mod context;
mod http_client;
pub mod mainframe;
mod rest;
pub(crate) mod soap;
mod sql;
mod template;
mod wsdl;
pub(crate) mod xml;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::config::{ConnectorConfig, Diagnostic, LoadedConnector, Location, PageConfig};
use crate::error::ErrorCode;
use crate::identity::KeyKind;
use crate::shield::{Shield, ShieldHub};
use crate::store::Store;

pub use mainframe::MainframeConnector;
pub use rest::RestConnector;
pub use soap::SoapConnector;
pub use sql::SqlConnector;
pub use template::{RenderError, Template};

/// Placeholder values for one backend call, by placeholder name.
pub type Arguments = BTreeMap<String, Value>;

/// A backend system the graph can call.
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Calls `operation` with `args`. `Ok(None)` means the entity does not exist (or the
    /// selected value is null), which the graph shows as `null` without an error.
    fn call<'a>(
        &'a self,
        operation: &'a str,
        args: &'a Arguments,
    ) -> BoxFuture<'a, Result<Option<Value>, CallError>>;

    /// Like [`Connector::call`], and also says when the answer was true: a connector that
    /// serves a copy (a nightly extract) gives the copy's as-of time, which clients see in
    /// `extensions.freshness`. Live backends answer `as_of: None`.
    fn call_with_freshness<'a>(
        &'a self,
        operation: &'a str,
        args: &'a Arguments,
    ) -> BoxFuture<'a, Result<Reply, CallError>> {
        Box::pin(async move {
            let value = self.call(operation, args).await?;
            Ok(Reply { value, as_of: None })
        })
    }

    /// Calls `operation` once for many values of its batch key (see [`BatchSpec`]): one
    /// backend call where the operation declares a batch form. `args` differ only in the
    /// batch key's value and number at most [`BatchSpec::max`]; the answer has one [`Reply`]
    /// per entry of `args`, in the same order, equal to what [`Connector::call_with_freshness`]
    /// answers for that entry alone (`value: None` for a key the backend does not know).
    ///
    /// Operations without a batch form never reach this; the default makes one call per
    /// entry, concurrently, so a connector kind without batching stays correct.
    fn call_batch<'a>(
        &'a self,
        operation: &'a str,
        args: &'a [Arguments],
    ) -> BoxFuture<'a, Result<Vec<Reply>, CallError>> {
        Box::pin(async move {
            futures::future::try_join_all(
                args.iter()
                    .map(|args| self.call_with_freshness(operation, args)),
            )
            .await
        })
    }

    /// Hands the connector the gateway's store, once, before serving starts. Connectors that
    /// keep data there (extract files) load it and start their background work; the future
    /// completes after the first load so the first request already sees data.
    fn attach<'a>(&'a self, _store: &'a Store) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Every entry of a batch by the single call, concurrently, as live answers: what REST and SQL
/// batches fall back to for operations or keys their batch form cannot carry.
pub(crate) async fn each_alone<'a, F, Fut>(
    args: &'a [Arguments],
    call: F,
) -> Result<Vec<Reply>, CallError>
where
    F: Fn(&'a Arguments) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Value>, CallError>>,
{
    let values = futures::future::try_join_all(args.iter().map(call)).await?;
    Ok(values
        .into_iter()
        .map(|value| Reply { value, as_of: None })
        .collect())
}

/// A connector's answer with its as-of time.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// What [`Connector::call`] returns.
    pub value: Option<Value>,
    /// When the data was true at the source, for copies; `None` for live answers.
    pub as_of: Option<DateTime<Utc>>,
}

/// Why a backend call failed. The message is for logs; clients see only the code.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Connection refused, reset, or DNS failure (or a database that cannot be reached).
    #[error("backend unreachable: {0}")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend answered with a protocol-level fault (a SOAP Fault). The fault code is
    /// shown to clients; the fault string only goes to the log.
    #[error("backend fault `{fault_code}`: {fault_string}")]
    Fault {
        /// The fault code, e.g. `soap:Client` or `dmv:LicenseNotFound`.
        fault_code: String,
        /// The backend's explanation; may hold personal data, so never shown to clients.
        fault_string: String,
    },
    /// No answer within the connector's deadline.
    #[error("backend did not answer within {timeout_ms} ms")]
    Timeout {
        /// The deadline that passed.
        timeout_ms: u64,
    },
    /// The backend answered with a status that means it is failing (5xx).
    #[error("backend answered HTTP {status}")]
    ServerError {
        /// The HTTP status.
        status: u16,
    },
    /// The backend refused the request as sent (4xx other than an entity's 404).
    #[error("backend rejected the request with HTTP {status}")]
    Rejected {
        /// The HTTP status.
        status: u16,
    },
    /// The answer could not be used: not JSON, too large, or missing the selected value.
    #[error("backend answer unusable: {reason}")]
    BadResponse {
        /// What was wrong with it.
        reason: String,
    },
    /// An argument cannot be put into the request.
    #[error(transparent)]
    BadArgument(#[from] RenderError),
    /// An argument does not fit the type its parameter declares (`"abc"` for an integer).
    /// The message names the parameter, never the value, and reaches the client.
    #[error("argument `{name}` {reason}")]
    InvalidArgument {
        /// The parameter.
        name: String,
        /// What was expected, without the value.
        reason: String,
    },
    /// The graph asked for an operation this connector does not have (a bug: `check` prevents it).
    #[error("unknown operation `{0}`")]
    UnknownOperation(String),
}

impl CallError {
    /// The stable code a client sees for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unreachable(_) | Self::ServerError { .. } => ErrorCode::BackendUnavailable,
            Self::Timeout { .. } => ErrorCode::BackendTimeout,
            Self::Fault { .. } => ErrorCode::BackendFault,
            Self::Rejected { .. } | Self::BadResponse { .. } => ErrorCode::BackendBadResponse,
            Self::BadArgument(_) | Self::InvalidArgument { .. } => ErrorCode::BadUserInput,
            Self::UnknownOperation(_) => ErrorCode::InternalError,
        }
    }
}

/// What the graph needs to know about an operation to bind a field to it.
#[derive(Debug, Clone)]
pub struct OperationSpec {
    /// Placeholders that must have a value, or the call is skipped (path placeholders).
    pub required: Vec<String>,
    /// Placeholders that may be null (query parameters, body values).
    pub optional: Vec<String>,
    /// Where the operation is defined.
    pub location: Location,
    /// Set for operations that return one page of a list.
    pub page: Option<PageConfig>,
    /// The operation's description from the connector file.
    pub description: Option<String>,
    /// The operation's batch form, when the backend can answer many keys in one call.
    pub batch: Option<BatchSpec>,
}

/// An operation's batch form: the backend answers many values of one placeholder (a TIN, a
/// case number) in one call (a REST batch path, SQL `= ANY`, a SOAP list operation, a
/// mainframe multi-key transaction). The graph collects the keys a list of parents asks for
/// and makes one [`Connector::call_batch`] per `max` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSpec {
    /// The placeholder whose values vary across one batch, e.g. `tin`.
    pub key: String,
    /// The most keys in one call; more are split into several calls.
    pub max: usize,
}

impl OperationSpec {
    /// Every placeholder, required first.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.required
            .iter()
            .chain(self.optional.iter())
            .map(String::as_str)
    }
}

/// A connector's name, kind and operations, as the graph binder sees them.
#[derive(Debug, Clone)]
pub struct ConnectorSpec {
    /// `rest`, `soap`, `sql`, …
    pub kind: &'static str,
    /// The agency key the backend needs, filled from the identity crosswalk.
    pub identifier: Option<KeyKind>,
    /// Where the connector file is.
    pub location: Location,
    /// Operations by name.
    pub operations: BTreeMap<String, OperationSpec>,
}

/// The built connectors, by name, each behind its shield: what the graph's resolvers call.
#[derive(Debug, Clone)]
pub struct Connectors {
    by_name: HashMap<String, Arc<dyn Connector>>,
    shields: HashMap<String, Shield>,
    specs: BTreeMap<String, ConnectorSpec>,
    hub: Arc<ShieldHub>,
    /// The file text each connector was built from, for kinds whose file says everything
    /// about them (no copybook or WSDL beside it), so a reload can tell it is unchanged.
    sources: HashMap<String, String>,
}

impl Default for Connectors {
    fn default() -> Self {
        Self {
            by_name: HashMap::new(),
            shields: HashMap::new(),
            specs: BTreeMap::new(),
            hub: ShieldHub::new(true),
            sources: HashMap::new(),
        }
    }
}

impl Connectors {
    /// The bare connector called `name`, for tests and tools that talk to one backend
    /// directly; the graph only ever calls [`Connectors::shield`].
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Connector>> {
        self.by_name.get(name)
    }

    /// The connector called `name` behind its shield: the one way the graph reaches it.
    pub fn shield(&self, name: &str) -> Option<&Shield> {
        self.shields.get(name)
    }

    /// Every shield, by connector name.
    pub fn shields(&self) -> impl Iterator<Item = &Shield> {
        self.shields.values()
    }

    /// What the shields share: metrics, the Redis tier, consent generations.
    pub fn hub(&self) -> &Arc<ShieldHub> {
        &self.hub
    }

    /// The static description of every connector.
    pub fn specs(&self) -> &BTreeMap<String, ConnectorSpec> {
        &self.specs
    }

    /// Takes over, from the connectors a reload replaces, every connector whose file did not
    /// change, so its cache, breaker and bulkhead carry on warm instead of starting cold.
    /// Both sets must share one [`ShieldHub`]. Returns the names kept, sorted.
    pub fn keep_unchanged(&mut self, previous: &Connectors) -> Vec<String> {
        let mut kept = Vec::new();
        for (name, source) in &self.sources {
            if previous.sources.get(name) != Some(source) {
                continue;
            }
            if let (Some(shield), Some(runtime)) =
                (previous.shields.get(name), previous.by_name.get(name))
            {
                self.shields.insert(name.clone(), shield.clone());
                self.by_name.insert(name.clone(), Arc::clone(runtime));
                kept.push(name.clone());
            }
        }
        kept.sort();
        kept
    }

    /// Gives every connector the gateway's store (see [`Connector::attach`]), all at once.
    pub async fn attach(&self, store: &Store) {
        futures::future::join_all(self.by_name.values().map(|c| c.attach(store))).await;
    }
}

/// The built-in connector that reads and changes the gateway's own identity crosswalk.
/// Its operations run inside the gateway (operators only, or a citizen reading their own
/// links), so they have no connector file and no backend.
pub const IDENTITY_CONNECTOR: &str = "identity";

/// The built-in connector of the consent ledger and the audit trail: citizens manage their
/// consents and read who read their data. Its operations check their caller themselves.
pub const CONSENT_CONNECTOR: &str = "consent";

/// The built-in connector through which operators drop a backend's cached answers.
pub const CACHE_CONNECTOR: &str = "cache";

/// The built-in connector of life events: `live` streams them to a `Subscription` field, each
/// caller seeing only the events it may; operators and agencies manage webhook subscribers, see
/// their deliveries and replay dead letters. Its operations check their caller themselves.
pub const EVENTS_CONNECTOR: &str = "events";

/// The built-in connector of proactive services: the catalogue, suggestions from a citizen's
/// record, and the offers life events make (which citizens accept or dismiss).
pub const SERVICES_CONNECTOR: &str = "services";

/// Whether `name` is a connector built into the gateway (no file, no backend), whose fields
/// police their callers in the gateway's own code.
pub fn is_built_in(name: &str) -> bool {
    name == IDENTITY_CONNECTOR
        || name == CONSENT_CONNECTOR
        || name == CACHE_CONNECTOR
        || name == EVENTS_CONNECTOR
        || name == SERVICES_CONNECTOR
}

fn services_spec() -> ConnectorSpec {
    let location = built_in_location(SERVICES_CONNECTOR);
    let op = |name: &str, required: &[&str], description: &str| {
        (
            name.to_string(),
            built_in_operation(&location, required, &[], description),
        )
    };
    ConnectorSpec {
        kind: "built-in",
        identifier: None,
        location: location.clone(),
        operations: BTreeMap::from([
            op("catalogue", &[], "Every service in schema/services.toml"),
            op(
                "suggested",
                &["citizen_id"],
                "Services a citizen's record meets the conditions of, as the caller may read it",
            ),
            op(
                "offers",
                &["citizen_id"],
                "Services offered to a citizen after life events (the citizen only)",
            ),
            op(
                "accept",
                &["citizen_id", "id"],
                "A citizen accepts an offer; the providing agency is told",
            ),
            op(
                "dismiss",
                &["citizen_id", "id"],
                "A citizen dismisses an offer",
            ),
        ]),
    }
}

fn events_spec() -> ConnectorSpec {
    let location = built_in_location(EVENTS_CONNECTOR);
    let op = |name: &str, required: &[&str], optional: &[&str], description: &str| {
        (
            name.to_string(),
            built_in_operation(&location, required, optional, description),
        )
    };
    ConnectorSpec {
        kind: "built-in",
        identifier: None,
        location: location.clone(),
        operations: BTreeMap::from([
            op(
                "live",
                &[],
                &["types"],
                "Life events as they are recorded, of some types or all, that the caller may see (a Subscription field)",
            ),
            op(
                "types",
                &[],
                &[],
                "The life-event types the rules can produce",
            ),
            op(
                "subscribers",
                &[],
                &[],
                "Webhook subscribers: all (operators) or the calling agency's",
            ),
            op(
                "deliveries",
                &["subscriberId"],
                &["state", "first"],
                "A subscriber's deliveries, newest event first",
            ),
            op(
                "register",
                &["agency", "purpose", "url"],
                &["eventTypes"],
                "Registers a webhook subscriber and returns its signing secret, once",
            ),
            op("disable", &["id"], &[], "Stops deliveries to a subscriber"),
            op("enable", &["id"], &[], "Resumes deliveries to a subscriber"),
            op(
                "replay",
                &["subscriberId"],
                &["eventId"],
                "Puts dead-lettered deliveries back in line, keeping their event ids",
            ),
        ]),
    }
}

fn cache_spec() -> ConnectorSpec {
    let location = built_in_location(CACHE_CONNECTOR);
    ConnectorSpec {
        kind: "built-in",
        identifier: None,
        location: location.clone(),
        operations: BTreeMap::from([(
            "invalidate".to_string(),
            built_in_operation(
                &location,
                &["connector"],
                &["operation"],
                "Drop a backend's cached answers, of one operation or all (operators only)",
            ),
        )]),
    }
}

fn built_in_location(name: &str) -> Location {
    Location {
        path: format!("<built-in {name} connector>").into(),
        line: 1,
        column: 1,
    }
}

fn built_in_operation(
    location: &Location,
    required: &[&str],
    optional: &[&str],
    description: &str,
) -> OperationSpec {
    OperationSpec {
        required: required.iter().map(|p| p.to_string()).collect(),
        optional: optional.iter().map(|p| p.to_string()).collect(),
        location: location.clone(),
        page: None,
        description: Some(description.to_string()),
        batch: None,
    }
}

fn consent_spec() -> ConnectorSpec {
    let location = built_in_location(CONSENT_CONNECTOR);
    let op = |name: &str, required: &[&str], optional: &[&str], description: &str| {
        (
            name.to_string(),
            built_in_operation(&location, required, optional, description),
        )
    };
    ConnectorSpec {
        kind: "built-in",
        identifier: None,
        location: location.clone(),
        operations: BTreeMap::from([
            op(
                "list",
                &["citizen_id"],
                &[],
                "A citizen's consents, newest first (the citizen only)",
            ),
            op(
                "accessLog",
                &["citizen_id"],
                &["first", "after"],
                "Who read a citizen's data, when and why, newest first (the citizen only)",
            ),
            op(
                "grant",
                &["citizen_id", "grantee", "categories", "purpose"],
                &["validFrom", "validUntil"],
                "A citizen consents to an agency reading categories of their data for a purpose",
            ),
            op(
                "revoke",
                &["citizen_id", "handle"],
                &[],
                "A citizen withdraws a consent for good",
            ),
            op(
                "pause",
                &["citizen_id", "handle"],
                &[],
                "A citizen suspends a consent",
            ),
            op(
                "resume",
                &["citizen_id", "handle"],
                &[],
                "A citizen resumes a paused consent",
            ),
        ]),
    }
}

fn identity_spec() -> ConnectorSpec {
    let location = built_in_location(IDENTITY_CONNECTOR);
    let operation = |required: &[&str], description: &str| {
        built_in_operation(&location, required, &[], description)
    };
    ConnectorSpec {
        kind: "built-in",
        identifier: None,
        location: location.clone(),
        operations: BTreeMap::from([
            (
                "links".to_string(),
                operation(
                    &["citizen_id"],
                    "Every agency key linked to a citizen (operators, or the citizen themself)",
                ),
            ),
            (
                "link".to_string(),
                operation(
                    &["citizen_id", "kind", "key"],
                    "Link an agency key to a citizen (operators only)",
                ),
            ),
            (
                "unlink".to_string(),
                operation(
                    &["citizen_id", "kind"],
                    "Remove a citizen's agency key (operators only)",
                ),
            ),
        ]),
    }
}

/// Builds every connector, collecting every problem (bad URL, malformed template), each
/// behind a shield with its file's limits (shielding on).
pub fn build_connectors(loaded: &[LoadedConnector]) -> (Connectors, Vec<Diagnostic>) {
    build_shielded_connectors(loaded, ShieldHub::new(true))
}

/// [`build_connectors`] with the shields sharing `hub` (the gateway's, which knows whether
/// shielding is on).
pub fn build_shielded_connectors(
    loaded: &[LoadedConnector],
    hub: Arc<ShieldHub>,
) -> (Connectors, Vec<Diagnostic>) {
    let mut connectors = Connectors {
        hub,
        ..Connectors::default()
    };
    connectors
        .specs
        .insert(IDENTITY_CONNECTOR.to_string(), identity_spec());
    connectors
        .specs
        .insert(CONSENT_CONNECTOR.to_string(), consent_spec());
    connectors
        .specs
        .insert(CACHE_CONNECTOR.to_string(), cache_spec());
    connectors
        .specs
        .insert(EVENTS_CONNECTOR.to_string(), events_spec());
    connectors
        .specs
        .insert(SERVICES_CONNECTOR.to_string(), services_spec());
    let mut diagnostics = Vec::new();
    for connector in loaded {
        let name = connector.config.name().get_ref().clone();
        if is_built_in(&name) {
            continue; // reported by the loader
        }
        let built = match &connector.config {
            ConnectorConfig::Rest(config) => RestConnector::build(config, &connector.file),
            ConnectorConfig::Soap(config) => SoapConnector::build(config, &connector.file),
            ConnectorConfig::Sql(config) => SqlConnector::build(config, &connector.file),
            ConnectorConfig::Mainframe(config) => {
                MainframeConnector::build(config, &connector.file)
            }
        };
        match built {
            Ok((runtime, mut spec)) => {
                if matches!(
                    connector.config,
                    ConnectorConfig::Rest(_) | ConnectorConfig::Sql(_)
                ) {
                    connectors
                        .sources
                        .insert(name.clone(), connector.file.source.text.clone());
                }
                spec.identifier = connector.config.identifier().map(|k| *k.get_ref());
                let shield = Shield::new(
                    &name,
                    Arc::clone(&runtime),
                    connector.config.shield(),
                    spec.operations
                        .iter()
                        .map(|(operation, op)| (operation.clone(), op.batch.clone())),
                    Arc::clone(&connectors.hub),
                );
                connectors.shields.insert(name.clone(), shield);
                connectors.by_name.insert(name.clone(), runtime);
                connectors.specs.insert(name, spec);
            }
            Err(mut errors) => diagnostics.append(&mut errors),
        }
    }
    (connectors, diagnostics)
}
