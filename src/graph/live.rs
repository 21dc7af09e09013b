//! `type Subscription`: its fields stream life events through the built-in `events`
//! connector's `live` operation.
//!
//! Each subscriber sees only what it may: every event from the gateway's [`EventFeed`] is
//! filtered by the requested types and by [`events::visible_to`] (an operator sees all, a
//! citizen their own, an agency what the owning agency's legal basis or the citizen's live
//! consent allows for the purpose it stated), and every event delivered is written to the
//! audit trail first, exactly as a protected field of a query is. Anonymous callers get none.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::dynamic::{
    FieldValue, ResolverContext, Subscription, SubscriptionField, SubscriptionFieldFuture,
};
use async_graphql::{ErrorExtensions as _, PathSegment, ServerError};
use chrono::Utc;
use futures::Stream;
use indexmap::IndexMap;

use super::bind::{Bindings, FieldSource, PolicyDirectiveMap};
use super::build::{input_value, type_ref};
use super::delivery;
use super::directives::ArgSource;
use super::identity_ops::coded;
use super::scope::{Read, RequestScope};
use super::sdl::{FieldDef, TypeDef, TypeDefKind, TypeSystem, deprecation, named_type};
use crate::auth::Principal;
use crate::config::Diagnostic;
use crate::connectors::EVENTS_CONNECTOR;
use crate::consent::policy::{Access, Basis};
use crate::error::ErrorCode;
use crate::events::feed::{self, EventFeed, FeedError, FeedReceiver};
use crate::events::{self, LifeEvent};
use crate::identity::CitizenId;

/// The `events` operation a subscription field binds to.
const LIVE: &str = "live";

/// Reports subscription bindings the executor cannot run: `events.live` on a field that is
/// not a subscription, a subscription field bound to anything else, and policy directives on
/// a subscription field (its events are checked one by one, so a field-wide rule would only
/// mislead).
pub(crate) fn check(
    system: &TypeSystem,
    bindings: &Bindings,
    policies: &PolicyDirectiveMap,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let subscription = system.subscription.as_deref();
    for ((type_name, field_name), source) in bindings {
        let FieldSource::Connect(binding) = source else {
            continue;
        };
        let Some(field) = field_def(system, type_name, field_name) else {
            continue;
        };
        let is_live = binding.connector == EVENTS_CONNECTOR && binding.operation == LIVE;
        let on_subscription = subscription == Some(type_name.as_str());
        if is_live && !on_subscription {
            diagnostics.push(Diagnostic::at(
                field.location.clone(),
                format!(
                    "`{type_name}.{field_name}`: `{EVENTS_CONNECTOR}.{LIVE}` streams events, so it binds a field of `type Subscription`"
                ),
            ));
        }
        if on_subscription && !is_live {
            diagnostics.push(Diagnostic::at(
                field.location.clone(),
                format!(
                    "`{type_name}.{field_name}`: a subscription field streams life events; bind it with `@connect(connector: \"{EVENTS_CONNECTOR}\", operation: \"{LIVE}\")`"
                ),
            ));
        }
    }
    let Some(subscription) = subscription else {
        return;
    };
    // An event is answered from the event itself: a backend call below it would run outside
    // a request's audit and withholding, so none may be reachable.
    for type_name in reachable_types(system, subscription) {
        let Some(TypeDefKind::Object(fields)) = system.types.get(&type_name).map(|t| &t.kind)
        else {
            continue;
        };
        for field in fields.values() {
            if let Some(FieldSource::Connect(binding)) =
                bindings.get(&(type_name.clone(), field.name.clone()))
            {
                diagnostics.push(Diagnostic::at(
                    field.location.clone(),
                    format!(
                        "`{type_name}.{}` calls connector `{}`, but it is reachable from `{subscription}`, whose events carry ids only; read the details with a query instead",
                        field.name, binding.connector
                    ),
                ));
            }
        }
    }
    for key @ (type_name, field_name) in policies.keys() {
        let bound_live = matches!(
            bindings.get(key),
            Some(FieldSource::Connect(binding))
                if binding.connector == EVENTS_CONNECTOR && binding.operation == LIVE
        );
        // A field bound to anything else already has its error.
        if type_name != subscription || !bound_live {
            continue;
        }
        if let Some(field) = field_def(system, type_name, field_name) {
            diagnostics.push(Diagnostic::at(
                field.location.clone(),
                format!(
                    "`{type_name}.{field_name}` decides for each event who may see it (the caller's own, its consents, or all for an operator); remove its `@public`, `@requiresScopes` or `@consent`"
                ),
            ));
        }
    }
}

/// The object types a subscription's fields return, and every object type below them.
fn reachable_types(system: &TypeSystem, subscription: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut pending: Vec<String> = match system.types.get(subscription).map(|t| &t.kind) {
        Some(TypeDefKind::Object(fields)) => fields
            .values()
            .map(|f| named_type(&f.ty).to_string())
            .collect(),
        _ => Vec::new(),
    };
    while let Some(name) = pending.pop() {
        if seen.contains(&name) {
            continue;
        }
        let Some(TypeDefKind::Object(fields)) = system.types.get(&name).map(|t| &t.kind) else {
            continue;
        };
        pending.extend(fields.values().map(|f| named_type(&f.ty).to_string()));
        seen.push(name);
    }
    seen
}

fn field_def<'a>(system: &'a TypeSystem, type_name: &str, field: &str) -> Option<&'a FieldDef> {
    match &system.types.get(type_name)?.kind {
        TypeDefKind::Object(fields) => fields.get(field),
        _ => None,
    }
}

/// The subscription root type with one streaming resolver per bound field.
pub(crate) fn subscription_type(
    ty: &TypeDef,
    fields: &IndexMap<String, FieldDef>,
    bindings: &Bindings,
) -> Subscription {
    let mut subscription = Subscription::new(&ty.name);
    if let Some(description) = &ty.description {
        subscription = subscription.description(description);
    }
    for field in fields.values() {
        let Some(FieldSource::Connect(binding)) =
            bindings.get(&(ty.name.clone(), field.name.clone()))
        else {
            continue;
        };
        let live = Arc::new(Live {
            label: format!("{}.{}", ty.name, field.name),
            types_argument: binding.args.iter().find_map(|(name, source)| {
                match (name.as_str(), source) {
                    ("types", ArgSource::Argument(argument)) => Some(argument.clone()),
                    _ => None,
                }
            }),
        });
        let mut dynamic = SubscriptionField::new(&field.name, type_ref(&field.ty), move |ctx| {
            let live = Arc::clone(&live);
            SubscriptionFieldFuture::new(async move { live.start(ctx).await })
        });
        if let Some(description) = &field.description {
            dynamic = dynamic.description(description);
        }
        if let Some(reason) = deprecation(&field.directives) {
            dynamic = dynamic.deprecation(Some(&reason));
        }
        for argument in &field.arguments {
            dynamic = dynamic.argument(input_value(argument));
        }
        subscription = subscription.field(dynamic);
    }
    subscription
}

/// One subscription field bound to `events.live`.
#[derive(Debug)]
struct Live {
    /// `Subscription.field`, as the audit trail names it.
    label: String,
    /// The field argument that lists the wanted event types, when it has one.
    types_argument: Option<String>,
}

impl Live {
    /// Checks the caller and the arguments, then joins the feed: from here on, every event
    /// recorded that the caller may see is one item of the stream.
    async fn start<'a>(
        &self,
        ctx: ResolverContext<'a>,
    ) -> async_graphql::Result<
        impl Stream<Item = async_graphql::Result<FieldValue<'a>>> + Send + use<'a>,
    > {
        let unavailable = || {
            coded(
                ErrorCode::BackendUnavailable,
                "Live events are not available on this gateway right now.",
            )
        };
        let scope = Arc::clone(
            ctx.data_opt::<Arc<RequestScope>>()
                .ok_or_else(unavailable)?,
        );
        if matches!(scope.principal(), Principal::Anonymous) {
            return Err(coded(
                ErrorCode::Unauthenticated,
                "Live events need a signed-in caller: a citizen, an agency or an operator.",
            ));
        }
        let feed = ctx
            .data_opt::<EventFeed>()
            .cloned()
            .ok_or_else(unavailable)?;
        let types = match self.types_argument.as_deref().and_then(|n| ctx.args.get(n)) {
            Some(value) if !value.is_null() => {
                let wanted = value
                    .list()?
                    .iter()
                    .map(|item| item.string().map(str::to_string))
                    .collect::<Result<HashSet<_>, _>>()?;
                if let Some(events) = &scope.events {
                    let known = super::event_ops::known_types(events);
                    if let Some(unknown) = wanted.iter().find(|t| !known.contains(*t)) {
                        let list: Vec<&str> = known.iter().map(String::as_str).collect();
                        return Err(coded(
                            ErrorCode::BadUserInput,
                            format!(
                                "Unknown event type `{}`; the types are {}.",
                                unknown.chars().take(64).collect::<String>(),
                                crate::config::quoted_list(&list)
                            ),
                        ));
                    }
                }
                // An empty list asks for no filter, as a webhook subscriber's does.
                (!wanted.is_empty()).then_some(wanted)
            }
            _ => None,
        };
        let path = ctx.set_error_path(ServerError::new("", None)).path;
        let receiver = feed.subscribe().await.map_err(|error| {
            tracing::error!(%error, "Live event feed could not start.");
            unavailable()
        })?;
        let following = Following {
            scope,
            receiver,
            types,
            label: self.label.clone(),
            path,
        };
        Ok(futures::stream::unfold(
            Some(following),
            |state| async move {
                let mut following = state?;
                match following.next().await {
                    Ok(event) => Some((
                        Ok(FieldValue::owned_any(feed::graph_value(&event))),
                        Some(following),
                    )),
                    Err(Some(error)) => Some((Err(error), None)),
                    Err(None) => None,
                }
            },
        ))
    }
}

/// One subscriber's position in the feed and what it asked for.
struct Following {
    scope: Arc<RequestScope>,
    receiver: FeedReceiver,
    types: Option<HashSet<String>>,
    label: String,
    path: Vec<PathSegment>,
}

impl Following {
    /// The next event this subscriber may see, audited; `Err(None)` ends the stream quietly
    /// (the gateway is stopping), `Err(Some(_))` ends it with that error.
    async fn next(&mut self) -> Result<Arc<LifeEvent>, Option<async_graphql::Error>> {
        loop {
            let event = match self.receiver.recv().await {
                Ok(event) => event,
                Err(FeedError::Closed) => return Err(None),
                Err(FeedError::Lagged { after_seq, missed }) => {
                    let error = FeedError::Lagged { after_seq, missed };
                    return Err(Some(
                        async_graphql::Error::new(crate::error::capitalised(&error.to_string()))
                            .extend_with(move |_, extensions| {
                                extensions.set("code", ErrorCode::SubscriptionLagged.as_str());
                                extensions.set("afterSeq", after_seq);
                                extensions.set("missed", missed);
                            }),
                    ));
                }
                Err(error @ FeedError::Outbox(_)) => {
                    tracing::error!(%error, "Live event feed failed.");
                    return Err(Some(coded(
                        ErrorCode::BackendUnavailable,
                        "Live events are not available on this gateway right now.",
                    )));
                }
            };
            if self
                .types
                .as_ref()
                .is_some_and(|types| !types.contains(&event.event_type))
            {
                continue;
            }
            let scope = &self.scope;
            let ledger = scope.services.as_ref().map(|services| &services.ledger);
            let visible = events::visible_to(
                ledger,
                &scope.trust,
                scope.principal(),
                scope.context.purpose.as_deref(),
                &event,
            )
            .await;
            if !visible {
                continue;
            }
            if self.audit(&event).await? {
                return Ok(event);
            }
        }
    }

    /// Records the delivery in the audit trail, as a protected read of the event's category
    /// about its citizen. `Ok(false)`: not delivered after all (the consent that allowed it
    /// was withdrawn meanwhile); `Err`: the audit trail or ledger is down, so nothing more is
    /// delivered on this subscription.
    async fn audit(&self, event: &LifeEvent) -> Result<bool, Option<async_graphql::Error>> {
        let scope = &self.scope;
        let Ok(citizen) = CitizenId::parse(&event.citizen_id) else {
            tracing::warn!(
                seq = event.seq,
                "A life event names no valid citizen; not delivered."
            );
            return Ok(false);
        };
        let Some(basis) = basis(scope, &citizen, event).await else {
            return Ok(false);
        };
        scope.record(Read {
            citizen,
            category: event.category.clone(),
            field: self.label.clone(),
            path: self.path.clone(),
            access: Access::Allowed(basis),
        });
        let withheld = delivery::settle(scope, true).await;
        let Some(first) = withheld.into_iter().next() else {
            return Ok(true);
        };
        let code = first
            .error
            .extensions
            .as_ref()
            .and_then(|extensions| extensions.get("code"))
            .cloned();
        if code
            == Some(async_graphql::Value::from(
                ErrorCode::ConsentRequired.as_str(),
            ))
        {
            return Ok(false);
        }
        let message = first.error.message.clone();
        Err(Some(async_graphql::Error::new(message).extend_with(
            move |_, extensions| {
                if let Some(code) = &code {
                    extensions.set("code", code.clone());
                }
            },
        )))
    }
}

/// Why the caller may see `event`, as the audit trail records it; `None` when, read again
/// now, it may not (a consent withdrawn since the feed's check).
async fn basis(scope: &RequestScope, citizen: &CitizenId, event: &LifeEvent) -> Option<Basis> {
    match scope.principal() {
        Principal::Operator { .. } => Some(Basis::Role),
        Principal::Citizen(_) => Some(Basis::OwnRecord),
        Principal::Anonymous => None,
        Principal::Agency(client) => {
            let agency = client.agency.as_str();
            if event.audience.as_deref() == Some(agency) {
                return Some(Basis::LegalBasis(
                    "the event is addressed to the agency".to_string(),
                ));
            }
            if events::category_owner(&scope.trust, &event.category) == Some(agency) {
                let law = scope
                    .trust
                    .agencies
                    .get(agency)
                    .and_then(|a| a.legal_basis.as_ref())
                    .map(|law| law.get_ref().clone())
                    .unwrap_or_default();
                return Some(Basis::LegalBasis(law));
            }
            let services = scope.services.as_ref()?;
            let purpose = scope.context.purpose.as_deref()?;
            let live = services
                .ledger
                .live(citizen, agency, purpose, Utc::now())
                .await
                .ok()?;
            live.into_iter()
                .find(|consent| consent.covers(&event.category))
                .map(|consent| Basis::Consent(consent.handle))
        }
    }
}
