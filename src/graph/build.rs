//! Type system + bindings → an async-graphql dynamic schema with one resolver per field.
//!
//! This is the only place that speaks async-graphql's resolver types. Objects travel through
//! the executor as the backend's own `serde_json::Value`, borrowed wherever possible, so a
//! nested field costs a map lookup, not a copy.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Object,
    ResolverContext, Scalar, Schema, SchemaBuilder, TypeRef,
};
use async_graphql::parser::types::{BaseType, Type as SdlType};
use async_graphql::{ErrorExtensions, Value as GqlValue};
use serde_json::Value;

use super::bind::{Bindings, ConnectBinding, FieldSource};
use super::cache_ops;
use super::consent_ops;
use super::directives::{ArgSource, SubjectSource};
use super::event_ops;
use super::guard::{FieldGuard, Guards};
use super::identity_ops;
use super::scalars::{self, Leaf};
use super::scope::{LinksError, Read, RequestScope};
use super::sdl::{InputDef, TypeDefKind, TypeSystem, deprecation};
use super::service_ops;
use crate::auth::Principal;
use crate::config::PageConfig;
use crate::connectors::{
    Arguments, CACHE_CONNECTOR, CONSENT_CONNECTOR, CallError, Connectors, EVENTS_CONNECTOR,
    IDENTITY_CONNECTOR, SERVICES_CONNECTOR,
};
use crate::consent::policy::{self, Access, Caller, Denial, FieldPolicy, Pending};
use crate::error::ErrorCode;
use crate::identity::CitizenId;
use crate::shield::{CacheScope, CallKind, Shield, ShieldError};

static NULL: Value = Value::Null;

/// What shape a field's value must have, precomputed so resolvers never look at the schema.
#[derive(Debug, Clone)]
enum Shape {
    NonNull(Box<Shape>),
    List(Box<Shape>),
    Leaf(Leaf),
    Object,
}

/// Adds every type of `system` to a schema builder, with resolvers from `bindings`.
pub(crate) fn build_schema(
    system: &TypeSystem,
    bindings: &Bindings,
    guards: &Guards,
    connectors: &Connectors,
) -> SchemaBuilder {
    build_rooted_schema(
        system,
        &system.query,
        system.mutation.as_deref(),
        system.subscription.as_deref(),
        bindings,
        guards,
        connectors,
    )
}

/// [`build_schema`] with other root types: the same types and resolvers, entered at `query`
/// (the service catalogue's conditions run from a `Citizen`).
pub(crate) fn build_rooted_schema(
    system: &TypeSystem,
    query: &str,
    mutation: Option<&str>,
    subscription: Option<&str>,
    bindings: &Bindings,
    guards: &Guards,
    connectors: &Connectors,
) -> SchemaBuilder {
    let mut builder = Schema::build(query, mutation, subscription);
    for ty in system.types.values() {
        builder = match &ty.kind {
            TypeDefKind::Object(fields) if system.subscription.as_deref() == Some(&ty.name) => {
                builder.register(super::live::subscription_type(ty, fields, bindings))
            }
            TypeDefKind::Object(fields) => {
                let mut object = Object::new(&ty.name);
                if let Some(description) = &ty.description {
                    object = object.description(description);
                }
                for field in fields.values() {
                    let Some(source) = bindings.get(&(ty.name.clone(), field.name.clone())) else {
                        continue;
                    };
                    let shape = Arc::new(shape_of(&field.ty, system));
                    let guard = guards.get(&(ty.name.clone(), field.name.clone())).cloned();
                    let mut dynamic = match source {
                        FieldSource::Parent(path) => {
                            let path = path.clone();
                            match guard {
                                None => Field::new(&field.name, type_ref(&field.ty), move |ctx| {
                                    resolve_from_parent(&ctx, &path, &shape)
                                }),
                                Some(guard) => {
                                    Field::new(&field.name, type_ref(&field.ty), move |ctx| {
                                        let (guard, path, shape) =
                                            (Arc::clone(&guard), path.clone(), Arc::clone(&shape));
                                        FieldFuture::new(async move {
                                            if let Some(scope) = ctx.data_opt::<Arc<RequestScope>>()
                                            {
                                                scope.touch();
                                            }
                                            if let Err(error) = admit(&ctx, &guard).await {
                                                return fail(&ctx, error, &shape);
                                            }
                                            match resolve_from_parent(&ctx, &path, &shape) {
                                                FieldFuture::Value(value) => Ok(value),
                                                FieldFuture::Future(future) => future.await,
                                            }
                                        })
                                    })
                                }
                            }
                        }
                        FieldSource::Connect(binding) => {
                            let target = if binding.connector == IDENTITY_CONNECTOR {
                                Target::Identity
                            } else if binding.connector == CONSENT_CONNECTOR {
                                Target::Consent
                            } else if binding.connector == CACHE_CONNECTOR {
                                Target::Cache(Box::new(connectors.clone()))
                            } else if binding.connector == EVENTS_CONNECTOR {
                                Target::Events
                            } else if binding.connector == SERVICES_CONNECTOR {
                                Target::Services
                            } else {
                                match connectors.shield(&binding.connector) {
                                    Some(shield) => Target::Backend(shield.clone()),
                                    None => continue,
                                }
                            };
                            let kind = if system.mutation.as_deref() == Some(ty.name.as_str()) {
                                CallKind::Write
                            } else {
                                CallKind::Read
                            };
                            let call = Arc::new(BoundCall {
                                binding: binding.clone(),
                                kind,
                                target,
                                shape: Shape::clone(&shape),
                                guard,
                            });
                            Field::new(&field.name, type_ref(&field.ty), move |ctx| {
                                let call = Arc::clone(&call);
                                FieldFuture::new(async move { call.resolve(&ctx).await })
                            })
                        }
                    };
                    if let Some(description) = &field.description {
                        dynamic = dynamic.description(description);
                    }
                    if let Some(reason) = deprecation(&field.directives) {
                        dynamic = dynamic.deprecation(Some(&reason));
                    }
                    for argument in &field.arguments {
                        dynamic = dynamic.argument(input_value(argument));
                    }
                    object = object.field(dynamic);
                }
                builder.register(object)
            }
            TypeDefKind::InputObject(fields) => {
                let mut input = InputObject::new(&ty.name);
                if let Some(description) = &ty.description {
                    input = input.description(description);
                }
                for field in fields.values() {
                    input = input.field(input_value(field));
                }
                builder.register(input)
            }
            TypeDefKind::Enum(values) => {
                let mut enumeration = Enum::new(&ty.name);
                if let Some(description) = &ty.description {
                    enumeration = enumeration.description(description);
                }
                for value in values {
                    let mut item = EnumItem::new(&value.name);
                    if let Some(description) = &value.description {
                        item = item.description(description);
                    }
                    if let Some(reason) = &value.deprecated {
                        item = item.deprecation(Some(reason));
                    }
                    enumeration = enumeration.item(item);
                }
                builder.register(enumeration)
            }
            TypeDefKind::Scalar => {
                let description = ty
                    .description
                    .clone()
                    .unwrap_or_else(|| scalars::default_description(&ty.name).to_string());
                let validator = scalars::input_validator(&ty.name);
                builder.register(
                    Scalar::new(&ty.name)
                        .description(description)
                        .validator(validator),
                )
            }
        };
    }
    builder
}

pub(super) fn input_value(def: &InputDef) -> InputValue {
    let mut input = InputValue::new(&def.name, type_ref(&def.ty));
    if let Some(description) = &def.description {
        input = input.description(description);
    }
    if let Some(default) = &def.default {
        input = input.default_value(default.clone());
    }
    input
}

pub(super) fn type_ref(ty: &SdlType) -> TypeRef {
    let inner = match &ty.base {
        BaseType::Named(name) => TypeRef::Named(name.to_string().into()),
        BaseType::List(item) => TypeRef::List(Box::new(type_ref(item))),
    };
    if ty.nullable {
        inner
    } else {
        TypeRef::NonNull(Box::new(inner))
    }
}

fn shape_of(ty: &SdlType, system: &TypeSystem) -> Shape {
    let inner = match &ty.base {
        BaseType::List(item) => Shape::List(Box::new(shape_of(item, system))),
        BaseType::Named(name) => match Leaf::scalar(name) {
            Some(leaf) => Shape::Leaf(leaf),
            None => match system.types.get(name.as_str()).map(|t| &t.kind) {
                Some(TypeDefKind::Enum(values)) => Shape::Leaf(Leaf::Enum(Arc::new(
                    values
                        .iter()
                        .map(|v| v.name.clone())
                        .collect::<HashSet<_>>(),
                ))),
                _ => Shape::Object,
            },
        },
    };
    if ty.nullable {
        inner
    } else {
        Shape::NonNull(Box::new(inner))
    }
}

/// A field's value read from its parent object: no I/O, so no boxed future on success.
fn resolve_from_parent<'a>(
    ctx: &ResolverContext<'a>,
    path: &super::directives::JsonPath,
    shape: &Shape,
) -> FieldFuture<'a> {
    let parent = ctx.parent_value.downcast_ref::<Value>().unwrap_or(&NULL);
    match borrowed(path.lookup(parent), shape) {
        Ok(value) => FieldFuture::Value(value),
        Err(reason) => {
            tracing::warn!(
                field = %ctx.path_node.map(|p| p.to_string()).unwrap_or_default(),
                %reason,
                "Backend data does not fit the schema."
            );
            match fail(ctx, bad_data_error(None), shape) {
                Ok(value) => FieldFuture::Value(value),
                Err(marker) => {
                    FieldFuture::new(async move { Err::<Option<FieldValue<'a>>, _>(marker) })
                }
            }
        }
    }
}

/// Records a field's error with its path and answers `null` — or, for a non-null field, the
/// marker that makes [`super::complete`] null the nearest nullable ancestor. (The dynamic
/// executor would otherwise drop the field and lose the error's path.)
fn fail<'a>(
    ctx: &ResolverContext<'a>,
    error: async_graphql::Error,
    shape: &Shape,
) -> async_graphql::Result<Option<FieldValue<'a>>> {
    ctx.add_error(ctx.set_error_path(error.into_server_error(ctx.item.pos)));
    match shape {
        Shape::NonNull(_) => Err(async_graphql::Error::new(super::complete::PROPAGATE_NULL)),
        _ => Ok(None),
    }
}

/// Who serves a bound field.
#[derive(Debug)]
enum Target {
    /// A backend, through its shield.
    Backend(Shield),
    /// The gateway's own identity crosswalk.
    Identity,
    /// The gateway's consent ledger and audit trail.
    Consent,
    /// The shields' caches (operators invalidating them).
    Cache(Box<Connectors>),
    /// Life-event subscribers and deliveries.
    Events,
    /// The service catalogue and citizens' offers.
    Services,
}

/// A field bound to an operation, with the connector looked up once at build time.
#[derive(Debug)]
struct BoundCall {
    binding: ConnectBinding,
    /// Mutation fields write; everything else reads (and may be cached, batched, retried).
    kind: CallKind,
    target: Target,
    shape: Shape,
    /// Who may read the field; checked before the backend is called.
    guard: Option<Arc<FieldGuard>>,
}

impl BoundCall {
    async fn resolve<'a>(
        &self,
        ctx: &ResolverContext<'a>,
    ) -> async_graphql::Result<Option<FieldValue<'a>>> {
        let scope = ctx.data_opt::<Arc<RequestScope>>();
        if let Some(scope) = scope {
            scope.touch();
        }
        let result = self.admit_and_call(ctx).await;
        if let Some(scope) = scope {
            scope.touch();
        }
        result
    }

    async fn admit_and_call<'a>(
        &self,
        ctx: &ResolverContext<'a>,
    ) -> async_graphql::Result<Option<FieldValue<'a>>> {
        if let Some(guard) = &self.guard
            && let Err(error) = admit(ctx, guard).await
        {
            return fail(ctx, error, &self.shape);
        }
        match self.call(ctx).await {
            Ok(value) => Ok(value),
            Err(error) => fail(ctx, error, &self.shape),
        }
    }

    /// Fills every placeholder; `None` when a crosswalk key is missing, which means the
    /// citizen has no record at that agency and no call is made.
    async fn arguments(
        &self,
        ctx: &ResolverContext<'_>,
        scope: Option<&RequestScope>,
    ) -> async_graphql::Result<Option<Arguments>> {
        let parent = ctx.parent_value.downcast_ref::<Value>().unwrap_or(&NULL);
        let mut args = Arguments::new();
        for (name, source) in &self.binding.args {
            let value = match source {
                ArgSource::Argument(argument) => match ctx.args.get(argument) {
                    Some(value) => value.as_value().clone().into_json()?,
                    None => Value::Null,
                },
                ArgSource::Parent(path) => path.lookup(parent).cloned().unwrap_or(Value::Null),
                ArgSource::Constant(value) => value.clone(),
                ArgSource::CallerCitizen => match scope.map(|s| s.principal()) {
                    Some(Principal::Citizen(citizen)) => {
                        Value::String(citizen.as_str().to_string())
                    }
                    // Signed in, but not as a citizen: an agency or operator has no `me`.
                    Some(Principal::Agency(_) | Principal::Operator { .. }) => {
                        return Err(identity_ops::coded(
                            ErrorCode::Forbidden,
                            "This field is for a signed-in citizen acting for themself.",
                        ));
                    }
                    _ => {
                        return Err(identity_ops::coded(
                            ErrorCode::Unauthenticated,
                            "This field needs a signed-in citizen.",
                        ));
                    }
                },
                ArgSource::Crosswalk { kind, citizen } => {
                    let Some(citizen) = citizen
                        .lookup(parent)
                        .and_then(Value::as_str)
                        .and_then(|id| CitizenId::parse(id).ok())
                    else {
                        return Ok(None);
                    };
                    let Some(scope) = scope else {
                        return Err(identity_ops::store_error(LinksError::NoStore));
                    };
                    let links = scope
                        .links(&citizen, in_list(ctx))
                        .await
                        .map_err(identity_ops::store_error)?;
                    match links.get(*kind) {
                        Some(key) => Value::String(key.as_str().to_string()),
                        None => return Ok(None),
                    }
                }
            };
            args.insert(name.clone(), value);
        }
        Ok(Some(args))
    }

    async fn call<'a>(
        &self,
        ctx: &ResolverContext<'a>,
    ) -> async_graphql::Result<Option<FieldValue<'a>>> {
        let scope = ctx.data_opt::<Arc<RequestScope>>().map(Arc::as_ref);
        let Some(args) = self.arguments(ctx, scope).await? else {
            return self.absent();
        };
        let (connector, operation) = (&self.binding.connector, &self.binding.operation);
        let result = match &self.target {
            Target::Backend(shield) => {
                // A write's arguments are the change its life events are made from.
                let written = (self.kind == CallKind::Write).then(|| args.clone());
                let served = match scope {
                    Some(scope) if self.kind == CallKind::Read && in_list(ctx) => {
                        scope.batched(shield, operation, args).await
                    }
                    Some(scope) => {
                        shield
                            .call(operation, &args, scope.cache_scope(), self.kind)
                            .await
                    }
                    None => {
                        shield
                            .call(operation, &args, &CacheScope::Anonymous, self.kind)
                            .await
                    }
                };
                match served {
                    Ok(served) => {
                        if let Some(scope) = scope {
                            if let Some(as_of) = served.reply.as_of {
                                scope.saw_copy(connector, as_of);
                            }
                            if let Some(stale) = &served.stale {
                                scope.saw_stale(connector, stale);
                            }
                            if let Some(args) = &written {
                                scope
                                    .mutation_succeeded(
                                        ctx.field().name(),
                                        args,
                                        served.reply.value.as_ref(),
                                    )
                                    .await;
                            }
                        }
                        match Arc::try_unwrap(served.reply) {
                            Ok(reply) => reply.value,
                            Err(shared) => shared.value.clone(),
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            connector = %connector,
                            operation = %operation,
                            code = %error.code(),
                            %error,
                            "Backend call failed."
                        );
                        return Err(shield_error(connector, &error));
                    }
                }
            }
            Target::Identity => {
                let Some(scope) = scope else {
                    return Err(identity_ops::store_error(LinksError::NoStore));
                };
                identity_ops::call(operation, &args, scope).await?
            }
            Target::Consent => {
                let Some(scope) = scope else {
                    return Err(consent_ops::unavailable());
                };
                consent_ops::call(operation, &args, scope).await?
            }
            Target::Cache(connectors) => {
                let Some(scope) = scope else {
                    return Err(consent_ops::unavailable());
                };
                cache_ops::call(operation, &args, scope, connectors).await?
            }
            Target::Events => {
                let Some(scope) = scope else {
                    return Err(consent_ops::unavailable());
                };
                event_ops::call(operation, &args, scope).await?
            }
            Target::Services => {
                let Some(scope) = scope else {
                    return Err(consent_ops::unavailable());
                };
                let parent = ctx.parent_value.downcast_ref::<Value>().unwrap_or(&NULL);
                let proactive = ctx
                    .data_opt::<Arc<service_ops::Proactive>>()
                    .map(Arc::as_ref);
                service_ops::call(operation, &args, scope, parent, proactive).await?
            }
        };
        let Some(value) = result else {
            return self.absent();
        };
        let value = match &self.binding.page {
            Some(page) => to_connection(value, page),
            None => Ok(value),
        };
        value
            .and_then(|value| owned(value, &self.shape))
            .map_err(|reason| {
                tracing::warn!(
                    connector = %connector,
                    operation = %operation,
                    %reason,
                    "Backend answer does not fit the schema."
                );
                bad_data_error(Some(connector))
            })
    }

    /// No entity: `null`, or an error where the schema promises a value.
    fn absent<'a>(&self) -> async_graphql::Result<Option<FieldValue<'a>>> {
        match &self.shape {
            Shape::NonNull(_) => Err(bad_data_error(Some(&self.binding.connector))),
            _ => Ok(None),
        }
    }
}

/// Decides whether the caller may read a guarded field, keeping the decision on personal
/// data for the audit trail. `Err` is the field's error: it is then `null` and nothing below
/// it runs, so a denied field's backend is never called.
async fn admit(ctx: &ResolverContext<'_>, guard: &FieldGuard) -> Result<(), async_graphql::Error> {
    let Some(scope) = ctx.data_opt::<Arc<RequestScope>>() else {
        return Err(denial_error(&Denial::Forbidden(
            "This field is not available here.".to_string(),
        )));
    };
    let subject = guard.subject.as_ref().and_then(|source| {
        let text = match source {
            SubjectSource::Parent(path) => {
                let parent = ctx.parent_value.downcast_ref::<Value>().unwrap_or(&NULL);
                path.lookup(parent)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }
            SubjectSource::Argument(name) => ctx
                .args
                .get(name)
                .and_then(|value| value.string().ok().map(str::to_string)),
            SubjectSource::Caller => scope.principal().citizen().map(|c| c.as_str().to_string()),
        }?;
        CitizenId::parse(&text).ok()
    });
    // An agency client over its distinct-citizen cap asks about no new citizen: refused
    // before the policy, the ledger or any backend is consulted.
    if let (Some(citizen), Some(allowance)) =
        (&subject, ctx.data_opt::<crate::quota::CitizenAllowance>())
        && let Err(reached) = allowance.admit(citizen)
    {
        return Err(identity_ops::coded(
            ErrorCode::RateLimited,
            "This client has looked up as many different citizens as it may for now.",
        )
        .extend_with(|_, e| e.set("retryAfter", reached.retry_after_s)));
    }
    let caller = Caller {
        principal: scope.principal(),
        purpose: scope.context.purpose.as_deref(),
    };
    let access = match policy::decide(&guard.policy, caller, subject.as_ref(), &scope.trust) {
        Pending::Decided(access) => access,
        Pending::NeedsConsent { category, purpose } => {
            let Some(citizen) = &subject else {
                return Err(denial_error(&Denial::ConsentRequired { category, purpose }));
            };
            match scope.live_consents(citizen, in_list(ctx)).await {
                Ok(live) => policy::with_consents(&category, &purpose, &live),
                Err(error) => {
                    tracing::error!(%error, "Consent ledger unavailable.");
                    return Err(identity_ops::coded(
                        ErrorCode::ConsentUnavailable,
                        "The consent ledger is unavailable, so this field is withheld.",
                    ));
                }
            }
        }
    };
    if let (FieldPolicy::Personal { category, .. }, Some(citizen)) = (&guard.policy, &subject) {
        let path = ctx
            .set_error_path(async_graphql::ServerError::new("", None))
            .path;
        scope.record(Read {
            citizen: citizen.clone(),
            category: category.clone(),
            field: guard.label.clone(),
            path,
            access: access.clone(),
        });
    }
    match access {
        Access::Allowed(_) => Ok(()),
        Access::Denied(denial) => Err(denial_error(&denial)),
    }
}

fn denial_error(denial: &Denial) -> async_graphql::Error {
    match denial {
        Denial::Forbidden(reason) => identity_ops::coded(ErrorCode::Forbidden, reason.as_str()),
        Denial::ConsentRequired { category, purpose } => {
            let (category, purpose) = (category.clone(), purpose.clone());
            async_graphql::Error::new(format!(
                "Reading `{category}` for `{purpose}` needs the citizen's consent."
            ))
            .extend_with(move |_, extensions| {
                extensions.set("code", ErrorCode::ConsentRequired.as_str());
                extensions.set("category", category.as_str());
                extensions.set("purpose", purpose.as_str());
            })
        }
    }
}

fn backend_error(connector: &str, error: &CallError) -> async_graphql::Error {
    let code = error.code();
    let message = match code {
        ErrorCode::BackendTimeout => format!("The `{connector}` backend did not answer in time."),
        ErrorCode::BackendBadResponse => {
            format!("The `{connector}` backend sent an answer the gateway cannot use.")
        }
        ErrorCode::BadUserInput => error.to_string(),
        ErrorCode::InternalError => "Internal error.".to_string(),
        ErrorCode::BackendFault => format!("The `{connector}` backend reported a fault."),
        _ => format!("The `{connector}` backend is unavailable."),
    };
    let connector = connector.to_string();
    let fault_code = match error {
        CallError::Fault { fault_code, .. } => Some(fault_code.clone()),
        _ => None,
    };
    async_graphql::Error::new(message).extend_with(move |_, extensions| {
        extensions.set("code", code.as_str());
        extensions.set("connector", connector.as_str());
        if let Some(fault_code) = &fault_code {
            extensions.set("faultCode", fault_code.as_str());
        }
    })
}

/// A failed shielded call as the client sees it: the connector's own error, or why the
/// shield did not call (busy, circuit open, maintenance, a write's unknown outcome), with
/// `extensions.retryAfter` in seconds where waiting helps.
fn shield_error(connector: &str, error: &ShieldError) -> async_graphql::Error {
    if let Some(call) = error.call_error() {
        return backend_error(connector, call);
    }
    let code = error.code();
    let message = match error {
        ShieldError::Busy { .. } => {
            format!("The `{connector}` backend is busy; try again shortly.")
        }
        ShieldError::Open { .. } => format!(
            "The `{connector}` backend is failing, so the gateway is not calling it for now."
        ),
        ShieldError::Maintenance { until, .. } => format!(
            "The `{connector}` backend is in its maintenance window until {}.",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        ShieldError::OutcomeUnknown { .. } => format!(
            "The `{connector}` backend did not confirm the change in time; it may or may not have happened."
        ),
        ShieldError::Call(_) => format!("The `{connector}` backend is unavailable."),
    };
    let retry_after = error.retry_after().map(|wait| wait.as_secs().max(1));
    let connector = connector.to_string();
    async_graphql::Error::new(message).extend_with(move |_, extensions| {
        extensions.set("code", code.as_str());
        extensions.set("connector", connector.as_str());
        if let Some(seconds) = retry_after {
            extensions.set("retryAfter", seconds);
        }
    })
}

/// Whether the field resolves inside a list (an ancestor is a list item), where its backend
/// reads are collected into one batch with its siblings'.
fn in_list(ctx: &ResolverContext<'_>) -> bool {
    let mut node = ctx.path_node.as_ref();
    while let Some(current) = node {
        if matches!(current.segment, async_graphql::QueryPathSegment::Index(_)) {
            return true;
        }
        node = current.parent;
    }
    false
}

fn bad_data_error(connector: Option<&str>) -> async_graphql::Error {
    let connector = connector.map(str::to_string);
    let message = match &connector {
        Some(name) => format!("The `{name}` backend sent data that does not fit the schema."),
        None => "The backend sent data that does not fit the schema.".to_string(),
    };
    async_graphql::Error::new(message).extend_with(move |_, extensions| {
        extensions.set("code", ErrorCode::BackendBadResponse.as_str());
        if let Some(connector) = &connector {
            extensions.set("connector", connector.as_str());
        }
    })
}

/// Borrowed backend data → executor value.
fn borrowed<'a>(value: Option<&'a Value>, shape: &Shape) -> Result<Option<FieldValue<'a>>, String> {
    let value = value.filter(|v| !v.is_null());
    match (shape, value) {
        (Shape::NonNull(_), None) => Err("a required value is missing".to_string()),
        (Shape::NonNull(inner), value) => borrowed(value, inner),
        (_, None) => Ok(None),
        (Shape::List(item), Some(Value::Array(items))) => {
            let items = items
                .iter()
                .map(|i| borrowed(Some(i), item).map(|v| v.unwrap_or(FieldValue::NULL)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(FieldValue::list(items)))
        }
        (Shape::List(_), Some(_)) => Err("expected a list".to_string()),
        (Shape::Object, Some(object @ Value::Object(_))) => {
            Ok(Some(FieldValue::borrowed_any(object)))
        }
        (Shape::Object, Some(_)) => Err("expected an object".to_string()),
        (Shape::Leaf(leaf), Some(value)) => leaf.coerce(value).map(|v| Some(FieldValue::value(v))),
    }
}

/// Owned backend data (a call's answer) → executor value.
fn owned(value: Value, shape: &Shape) -> Result<Option<FieldValue<'static>>, String> {
    match (shape, value) {
        (Shape::NonNull(_), Value::Null) => Err("a required value is missing".to_string()),
        (Shape::NonNull(inner), value) => owned(value, inner),
        (_, Value::Null) => Ok(None),
        (Shape::List(item), Value::Array(items)) => {
            let items = items
                .into_iter()
                .map(|i| owned(i, item).map(|v| v.unwrap_or(FieldValue::NULL)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(FieldValue::list(items)))
        }
        (Shape::List(_), _) => Err("expected a list".to_string()),
        (Shape::Object, object @ Value::Object(_)) => Ok(Some(FieldValue::owned_any(object))),
        (Shape::Object, _) => Err("expected an object".to_string()),
        (Shape::Leaf(leaf), value) => leaf
            .coerce(&value)
            .map(|v: GqlValue| Some(FieldValue::value(v))),
    }
}

/// One page of a backend list → a Relay connection object.
fn to_connection(mut page_value: Value, page: &PageConfig) -> Result<Value, String> {
    let items = match page_value
        .pointer_mut(page.items.get_ref())
        .map(Value::take)
    {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => Vec::new(),
        Some(_) => return Err(format!("`{}` is not a list", page.items.get_ref())),
    };
    let cursor_text = |value: Option<&Value>| match value {
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Number(n)) => Value::String(n.to_string()),
        _ => Value::Null,
    };
    let next_cursor = cursor_text(page_value.pointer(page.next_cursor.get_ref()));
    let edges: Vec<Value> = items
        .into_iter()
        .map(|node| {
            let cursor = page
                .edge_cursor
                .as_ref()
                .map_or(Value::Null, |p| cursor_text(node.pointer(p.get_ref())));
            serde_json::json!({ "cursor": cursor, "node": node })
        })
        .collect();
    let start_cursor = edges.first().map_or(Value::Null, |e| e["cursor"].clone());
    let end_cursor = if next_cursor.is_null() {
        edges.last().map_or(Value::Null, |e| e["cursor"].clone())
    } else {
        next_cursor.clone()
    };
    Ok(serde_json::json!({
        "edges": edges,
        "pageInfo": {
            "hasNextPage": !next_cursor.is_null(),
            "hasPreviousPage": false,
            "startCursor": start_cursor,
            "endCursor": end_cursor,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(edge_cursor: bool) -> PageConfig {
        let mut text = "items = \"/people\"\nnext_cursor = \"/next\"\n".to_string();
        if edge_cursor {
            text.push_str("edge_cursor = \"/id\"\n");
        }
        toml::from_str(&text).expect("a valid page table")
    }

    #[test]
    fn pages_become_relay_connections() {
        let value = json!({"people": [{"id": "a"}, {"id": "b"}], "next": "b"});
        let connection = to_connection(value, &page(true)).unwrap();
        assert_eq!(
            connection,
            json!({
                "edges": [{"cursor": "a", "node": {"id": "a"}}, {"cursor": "b", "node": {"id": "b"}}],
                "pageInfo": {"hasNextPage": true, "hasPreviousPage": false, "startCursor": "a", "endCursor": "b"},
            })
        );
    }

    #[test]
    fn the_last_page_has_no_next_page() {
        let connection = to_connection(json!({"people": [], "next": null}), &page(false)).unwrap();
        assert_eq!(connection["pageInfo"]["hasNextPage"], json!(false));
        assert_eq!(connection["edges"], json!([]));
    }
}
