//! The citizen graph: `schema/*.graphql` + connectors → an executable GraphQL schema.
//!
//! Loading runs in stages, each collecting every problem it finds: parse and merge the SDL
//! (`sdl`), read the binding directives (`directives`), bind every field to a source (`bind`),
//! then build the async-graphql dynamic schema (`build`).

mod bind;
mod build;
mod cache_ops;
mod collect;
mod complete;
mod consent_ops;
mod delivery;
mod directives;
pub(crate) mod documents;
mod event_ops;
mod guard;
mod identity_ops;
pub mod limits;
mod live;
mod precheck;
mod scalars;
mod scope;
mod sdl;
mod service_ops;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use async_graphql::parser::types::ExecutableDocument;

use async_graphql::dynamic::Schema;

use crate::audit::{AuditLog, AuditWriter};
use crate::config::{Diagnostic, OnDenied, SourceFile, TrustConfig};
use crate::consent::ConsentLedger;
use crate::error::ErrorCode;
use crate::events::feed::EventFeed;
use crate::events::services::{CONDITION_ROOT, Catalogue, FieldKind, FieldTypes, ServiceOffers};
use crate::identity::Crosswalk;
use crate::shield::ShieldHub;
use crate::signing::SigningKey;

pub use documents::{DocumentCache, LexLimits, ParseDocumentError, scan};
pub use scope::RequestContext;

use crate::connectors::Connectors;

/// Executor settings taken from `civicgraph.toml`.
#[derive(Debug, Clone)]
pub struct GraphOptions {
    /// Answer `__schema` / `__type` queries.
    pub introspection: bool,
    /// Deepest selection set allowed.
    pub max_depth: usize,
    /// `[limits]`: checked on every document before it is validated.
    pub limits: crate::config::LimitsConfig,
    /// Validation errors may suggest field names ("Did you mean …?"); off in production.
    pub suggestions: bool,
    /// The purposes, categories and agencies the policy directives are checked against.
    pub trust: Arc<TrustConfig>,
}

/// The stores behind consent and audit, which a graph only has once the gateway opened its
/// database (a graph from `civicgraph check` has none, and delivers no personal data).
#[derive(Debug, Clone)]
pub struct TrustServices {
    /// The authoritative consent ledger, read on every request that needs a consent.
    pub ledger: ConsentLedger,
    /// The hash-chained audit trail, read for citizens' access logs.
    pub audit: AuditLog,
    /// Writes every protected read to `audit`, grouping concurrent requests' records into one
    /// transaction.
    pub writer: AuditWriter,
    /// Signs consent receipts.
    pub signing: SigningKey,
}

/// An executable graph and what it is made of.
#[derive(Clone)]
pub struct Graph {
    /// The executable schema.
    pub schema: Schema,
    /// What `civicgraph check` prints.
    pub summary: GraphSummary,
    types: Arc<complete::TypeIndex>,
    guards: Arc<guard::Guards>,
    crosswalk: Option<Crosswalk>,
    trust: Arc<TrustConfig>,
    services: Option<TrustServices>,
    shields: Arc<ShieldHub>,
    events: Option<crate::events::EventServices>,
    feed: Option<EventFeed>,
    /// Object fields by type, for checking the service catalogue's condition paths.
    fields: Arc<service_ops::FieldIndex>,
    /// The same types and resolvers rooted at `Citizen`, where suggestions are evaluated;
    /// `None` when nothing in the graph is bound to the `services` connector.
    citizen_schema: Option<Schema>,
    /// The service catalogue and the offers store, for the `services` resolvers.
    proactive: Arc<service_ops::Proactive>,
    /// The request limits and the field shapes their cost estimate needs.
    limits: Arc<(limits::RequestLimits, limits::Shapes)>,
}

/// How one operation ended.
#[derive(Debug)]
pub enum Outcome {
    /// Execution started: `data` is present (perhaps `null`) and errors carry paths.
    Executed(async_graphql::Response),
    /// The operation was rejected before execution (validation, unknown operation name).
    Rejected(Vec<async_graphql::ServerError>),
    /// It asked for fields its caller may not read and `[trust] on_denied = "reject"`: no
    /// data, only the denials.
    Denied(Vec<async_graphql::ServerError>),
}

impl Graph {
    /// Gives resolvers the identity crosswalk (a graph from `check` alone has none, and
    /// answers crosswalk-keyed fields with `BACKEND_UNAVAILABLE`).
    pub fn with_crosswalk(mut self, crosswalk: Crosswalk) -> Self {
        self.crosswalk = Some(crosswalk);
        self
    }

    /// Gives resolvers the consent ledger and the audit trail; without them no personal
    /// field is ever delivered.
    pub fn with_trust_services(mut self, services: TrustServices) -> Self {
        self.services = Some(services);
        self
    }

    /// Gives resolvers the life-event services (mutation sources, subscriber management).
    pub fn with_events(mut self, events: crate::events::EventServices) -> Self {
        self.events = Some(events);
        self
    }

    /// Whether the graph has this `Mutation` field (rules name mutation sources by field).
    pub fn has_mutation_field(&self, field: &str) -> bool {
        self.types
            .root(async_graphql::parser::types::OperationType::Mutation)
            .is_some_and(|root| self.types.field_type(root, field).is_some())
    }

    /// Gives `Subscription` fields the gateway's live feed of life events (a graph without
    /// one answers them with `BACKEND_UNAVAILABLE`).
    pub fn with_event_feed(mut self, feed: EventFeed) -> Self {
        self.feed = Some(feed);
        self
    }

    /// The live feed of life events, so the server can end its subscriptions when it stops.
    pub fn event_feed(&self) -> Option<&EventFeed> {
        self.feed.as_ref()
    }

    /// A request's scope: its caller and everything its resolvers reach through it.
    fn request_scope(&self, context: RequestContext) -> Arc<scope::RequestScope> {
        Arc::new(
            scope::RequestScope::new(
                context,
                self.crosswalk.clone(),
                Arc::clone(&self.trust),
                self.services.clone(),
                Some(Arc::clone(&self.shields)),
            )
            .with_events(self.events.clone()),
        )
    }

    /// Runs one parsed subscription for the caller in `context`: a response per event the
    /// caller may see, each completed like [`Graph::execute`]'s. The subscription keeps one
    /// request scope, so its principal, purpose and request id are those it started with.
    /// Queries and mutations go through [`Graph::execute`].
    pub fn subscribe(
        &self,
        request: async_graphql::Request,
        document: &ExecutableDocument,
        context: RequestContext,
    ) -> futures::stream::BoxStream<'static, async_graphql::Response> {
        use futures::StreamExt as _;
        let operation_name = request.operation_name.clone();
        let variables = request.variables.clone();
        let scope = self.request_scope(context);
        let mut request = request.data(scope);
        if let Some(feed) = &self.feed {
            request = request.data(feed.clone());
        }
        request.set_parsed_query(document.clone());
        let types = Arc::clone(&self.types);
        let document = document.clone();
        self.schema
            .execute_stream(request)
            .map(move |mut response| {
                let executed = response.data != async_graphql::Value::Null
                    || response.errors.iter().any(|e| !e.path.is_empty());
                if executed {
                    types.complete(
                        &mut response,
                        &document,
                        operation_name.as_deref(),
                        &variables,
                    );
                }
                response
            })
            .boxed()
    }

    /// Gives the `services` fields their catalogue (suggestions, and the services offers name).
    pub fn with_service_catalogue(mut self, catalogue: Arc<Catalogue>) -> Self {
        let proactive = Arc::make_mut(&mut self.proactive);
        proactive.conditions = self
            .citizen_schema
            .as_ref()
            .and_then(|schema| service_ops::Conditions::new(schema, &catalogue));
        proactive.catalogue = catalogue;
        self
    }

    /// Gives the `services` fields the store of citizens' offers (a graph from `check` alone
    /// has none, and answers offers with `BACKEND_UNAVAILABLE`).
    pub fn with_service_offers(mut self, offers: ServiceOffers) -> Self {
        Arc::make_mut(&mut self.proactive).offers = Some(offers);
        self
    }

    /// The service catalogue the graph answers from.
    pub fn service_catalogue(&self) -> &Arc<Catalogue> {
        &self.proactive.catalogue
    }

    /// What the graph's shields share: metrics, the Redis tier, consent generations.
    pub fn shields(&self) -> &Arc<ShieldHub> {
        &self.shields
    }

    /// The catalogues the graph was checked against.
    pub fn trust(&self) -> &Arc<TrustConfig> {
        &self.trust
    }

    /// The limits every request is held to.
    pub fn request_limits(&self) -> &limits::RequestLimits {
        &self.limits.0
    }

    /// Checks a parsed document against the request limits before anything validates or runs
    /// it; the estimate is what a per-client budget charges. Every HTTP and WebSocket
    /// operation comes through here right after parsing.
    pub fn check_limits(
        &self,
        document: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &async_graphql::Variables,
    ) -> Result<limits::Estimate, limits::LimitError> {
        let (request_limits, shapes) = &*self.limits;
        limits::check(document, operation_name, variables, shapes, request_limits)
    }

    /// Validates and runs one parsed operation for the caller in `context`. An executed
    /// response is spec-complete: keys in query order, failed fields `null` with their path,
    /// nulls propagated past non-null fields. Before it is returned, every protected read is
    /// confirmed and written to the audit trail, or withheld (see `delivery`).
    pub async fn execute(
        &self,
        request: async_graphql::Request,
        document: &ExecutableDocument,
        context: RequestContext,
    ) -> Outcome {
        let operation_name = request.operation_name.clone();
        if self.trust.on_denied == OnDenied::Reject {
            let denials = precheck::certain_denials(
                &self.types,
                &self.guards,
                document,
                operation_name.as_deref(),
                &context.principal,
            );
            if !denials.is_empty() {
                return Outcome::Denied(denials);
            }
        }
        let variables = request.variables.clone();
        let call_context = crate::connectors::context::CallContext {
            purpose: context.purpose.clone(),
            request_id: Some(context.request_id.clone()).filter(|id| !id.is_empty()),
        };
        let scope = self.request_scope(context);
        let mut request = request
            .data(Arc::clone(&scope))
            .data(Arc::clone(&self.proactive));
        request.set_parsed_query(document.clone());
        let mut response =
            crate::connectors::context::scope(call_context, self.schema.execute(request)).await;
        if self.trust.on_denied == OnDenied::Reject && scope.any_denied() {
            delivery::settle(&scope, false).await;
            let denials = response
                .errors
                .into_iter()
                .filter(|error| {
                    let code = error.extensions.as_ref().and_then(|e| e.get("code"));
                    [ErrorCode::Forbidden, ErrorCode::ConsentRequired]
                        .iter()
                        .any(|c| code == Some(&async_graphql::Value::from(c.as_str())))
                })
                .collect();
            return Outcome::Denied(denials);
        }
        for withheld in delivery::settle(&scope, true).await {
            delivery::set_null(&mut response.data, &withheld.path);
            response.errors.push(withheld.error);
        }
        if let Some(freshness) = scope.freshness() {
            response.extensions.insert(
                "freshness".to_string(),
                async_graphql::Value::from_json(freshness).unwrap_or_default(),
            );
        }
        let executed = response.data != async_graphql::Value::Null
            || response.errors.iter().any(|e| !e.path.is_empty())
            || response.errors.is_empty();
        if !executed {
            return Outcome::Rejected(response.errors);
        }
        self.types.complete(
            &mut response,
            document,
            operation_name.as_deref(),
            &variables,
        );
        Outcome::Executed(response)
    }
}

/// Condition paths of the service catalogue start at `Citizen`.
impl FieldTypes for Graph {
    fn field_kind(&self, path: &str) -> Result<FieldKind, String> {
        self.fields.kind(CONDITION_ROOT, path)
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("summary", &self.summary)
            .finish()
    }
}

/// Counts and bindings of a loaded graph, for `civicgraph check` and operators.
#[derive(Debug, Clone, Default)]
pub struct GraphSummary {
    /// Type names in definition order.
    pub types: Vec<String>,
    /// Fields across all object types.
    pub fields: usize,
    /// Per connector: its kind, operations, and the fields it serves (`Type.field` → operation).
    pub connectors: BTreeMap<String, ConnectorUse>,
}

/// How the graph uses one connector.
#[derive(Debug, Clone, Default)]
pub struct ConnectorUse {
    /// `rest`, …
    pub kind: &'static str,
    /// Every operation the connector file defines, with its description.
    pub operations: Vec<(String, Option<String>)>,
    /// `(Type.field, operation)` for every field bound to this connector.
    pub fields: Vec<(String, String)>,
}

impl fmt::Display for GraphSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operations: usize = self.connectors.values().map(|c| c.operations.len()).sum();
        writeln!(
            f,
            "{} types, {} fields, {} connectors, {} operations",
            self.types.len(),
            self.fields,
            self.connectors.len(),
            operations
        )?;
        writeln!(f, "types: {}", self.types.join(", "))?;
        for (name, usage) in &self.connectors {
            writeln!(f, "connector `{name}` ({})", usage.kind)?;
            for (operation, description) in &usage.operations {
                match description {
                    Some(description) => writeln!(f, "  operation {operation}: {description}")?,
                    None => writeln!(f, "  operation {operation}")?,
                }
            }
            if usage.fields.is_empty() {
                writeln!(f, "  serves no field")?;
            }
            for (field, operation) in &usage.fields {
                writeln!(f, "  {field} <- {operation}")?;
            }
        }
        Ok(())
    }
}

/// Builds the graph from schema files and built connectors. `broken_connectors` names
/// connectors whose files failed to load, so their fields do not add a second error.
pub fn build_graph(
    schema_files: &[SourceFile],
    connectors: &Connectors,
    broken_connectors: &HashSet<String>,
    options: &GraphOptions,
) -> Result<Graph, Vec<Diagnostic>> {
    let (system, mut diagnostics) = sdl::load_type_system(schema_files);
    let mut policies = bind::PolicyDirectiveMap::new();
    let bindings = bind::bind(
        &system,
        connectors.specs(),
        broken_connectors,
        &mut policies,
        &mut diagnostics,
    );
    live::check(&system, &bindings, &policies, &mut diagnostics);
    let guards = guard::guards(
        &system,
        &bindings,
        &policies,
        &options.trust,
        &mut diagnostics,
    );
    if !diagnostics.is_empty() {
        return Err(diagnostics);
    }

    let mut summary = GraphSummary {
        types: system.types.keys().cloned().collect(),
        ..GraphSummary::default()
    };
    for (name, spec) in connectors.specs() {
        summary.connectors.insert(
            name.clone(),
            ConnectorUse {
                kind: spec.kind,
                operations: spec
                    .operations
                    .iter()
                    .map(|(name, op)| (name.clone(), op.description.clone()))
                    .collect(),
                fields: Vec::new(),
            },
        );
    }
    for ((type_name, field_name), source) in &bindings {
        summary.fields += 1;
        if let bind::FieldSource::Connect(binding) = source
            && let Some(usage) = summary.connectors.get_mut(&binding.connector)
        {
            let crosswalk = binding.args.iter().find_map(|(_, source)| match source {
                directives::ArgSource::Crosswalk { kind, .. } => Some(*kind),
                _ => None,
            });
            let operation = match crosswalk {
                Some(kind) => format!("{} ({kind} from the identity crosswalk)", binding.operation),
                None => binding.operation.clone(),
            };
            usage
                .fields
                .push((format!("{type_name}.{field_name}"), operation));
        }
    }

    let serves_citizens = system.types.contains_key(CONDITION_ROOT)
        && bindings.iter().any(|((ty, _), source)| {
            ty == CONDITION_ROOT
                && matches!(source, bind::FieldSource::Connect(b) if b.connector == crate::connectors::SERVICES_CONNECTOR)
        });
    let citizen_schema = if serves_citizens {
        build::build_rooted_schema(
            &system,
            CONDITION_ROOT,
            None,
            None,
            &bindings,
            &guards,
            connectors,
        )
        .limit_depth(options.max_depth)
        .disable_introspection()
        .disable_suggestions()
        .finish()
        .map_err(|error| {
            vec![Diagnostic {
                location: None,
                message: format!("the graph cannot be entered at `{CONDITION_ROOT}`: {error}"),
            }]
        })
        .map(Some)?
    } else {
        None
    };
    let request_limits = limits::RequestLimits {
        limits: options.limits.clone(),
        max_depth: options.max_depth,
        introspection: options.introspection,
    };
    // Depth is `limits::check`'s (stable codes, fragments expanded once); async-graphql's
    // own recursion check is set no tighter, so it never answers first.
    let mut builder = build::build_schema(&system, &bindings, &guards, connectors)
        .limit_recursive_depth(request_limits.max_nesting());
    if !options.introspection {
        builder = builder.disable_introspection();
    }
    if !options.suggestions {
        builder = builder.disable_suggestions();
    }
    let schema = builder.finish().map_err(|error| {
        // A connector that failed to build took its fields with it; the schema's complaint
        // (e.g. "Query must define one or more fields") would only repeat that problem.
        if broken_connectors.is_empty() {
            vec![Diagnostic {
                location: None,
                message: format!("the schema is not valid GraphQL: {error}"),
            }]
        } else {
            Vec::new()
        }
    })?;
    Ok(Graph {
        schema,
        summary,
        types: Arc::new(complete::TypeIndex::new(&system)),
        guards: Arc::new(guards),
        crosswalk: None,
        trust: Arc::clone(&options.trust),
        services: None,
        shields: Arc::clone(connectors.hub()),
        events: None,
        feed: None,
        fields: Arc::new(service_ops::FieldIndex::new(&system, &bindings)),
        citizen_schema,
        proactive: Arc::default(),
        limits: Arc::new((request_limits, limits::Shapes::new(&system, &bindings))),
    })
}
