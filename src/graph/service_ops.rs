//! The built-in `services` connector: the service catalogue, the services suggested for a
//! citizen, and the offers life events made them (accept, dismiss).
//!
//! Suggestions are read **through the graph, with the caller's rights**. The graph keeps a
//! second executable schema over the same types and resolvers whose root is `Citizen`; a
//! suggestion runs the catalogue's one selection (`{ unemploymentClaims { status } … }`) on it
//! with the parent citizen as the root value and the caller's principal and purpose. Every
//! field therefore passes its own guard, consent check and audit record exactly as if the caller
//! had asked for it, and a field the caller may not read comes back as an error, which makes its
//! conditions unmet. No second policy implementation exists to drift from the first.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dynamic::{DynamicRequestExt as _, FieldValue, Schema};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ErrorExtensions as _, PathSegment};
use chrono::Utc;
use serde_json::{Value, json};

use super::bind::{Bindings, FieldSource};
use super::delivery;
use super::identity_ops::{coded, text};
use super::scope::RequestScope;
use super::sdl::{TypeDefKind, TypeSystem, named_type};
use crate::config::TrustConfig;
use crate::connectors::{Arguments, SERVICES_CONNECTOR};
use crate::error::ErrorCode;
use crate::events::outbox::rfc3339;
use crate::events::services::{Catalogue, FieldKind, Offer, OfferError, Service, ServiceOffers};

/// What the `services` resolvers reach, put into each request's data by the graph.
#[derive(Clone, Default)]
pub(crate) struct Proactive {
    pub(crate) catalogue: Arc<Catalogue>,
    /// The catalogue's selection, ready to run from a citizen; `None` without conditions.
    pub(crate) conditions: Option<Conditions>,
    /// The offers store; `None` in a graph from `check` alone.
    pub(crate) offers: Option<ServiceOffers>,
}

/// The schema rooted at `Citizen` and the parsed selection of every condition path.
#[derive(Clone)]
pub(crate) struct Conditions {
    pub(crate) schema: Schema,
    pub(crate) document: ExecutableDocument,
}

impl Conditions {
    /// The selection of `catalogue` on `schema`; `None` when the catalogue has no condition.
    pub(crate) fn new(schema: &Schema, catalogue: &Catalogue) -> Option<Self> {
        let selection = catalogue.selection()?;
        match async_graphql::parser::parse_query(format!("query ServiceConditions {selection}")) {
            Ok(document) => Some(Self {
                schema: schema.clone(),
                document,
            }),
            Err(error) => {
                tracing::error!(%error, "The service catalogue's selection does not parse.");
                None
            }
        }
    }
}

/// Object fields by type, for checking condition paths: what each field returns, the
/// arguments it cannot do without, and whether it is one of the services fields.
#[derive(Debug, Default)]
pub(crate) struct FieldIndex {
    objects: HashMap<String, HashMap<String, IndexedField>>,
    enums: HashMap<String, Vec<String>>,
}

#[derive(Debug)]
struct IndexedField {
    type_name: String,
    required_args: Vec<String>,
    from_services: bool,
}

impl FieldIndex {
    pub(crate) fn new(system: &TypeSystem, bindings: &Bindings) -> Self {
        let mut index = Self::default();
        for ty in system.types.values() {
            match &ty.kind {
                TypeDefKind::Object(fields) => {
                    let fields = fields
                        .values()
                        .map(|field| {
                            let from_services = matches!(
                                bindings.get(&(ty.name.clone(), field.name.clone())),
                                Some(FieldSource::Connect(b)) if b.connector == SERVICES_CONNECTOR
                            );
                            let required_args = field
                                .arguments
                                .iter()
                                .filter(|a| !a.ty.nullable && a.default.is_none())
                                .map(|a| a.name.clone())
                                .collect();
                            (
                                field.name.clone(),
                                IndexedField {
                                    type_name: named_type(&field.ty).to_string(),
                                    required_args,
                                    from_services,
                                },
                            )
                        })
                        .collect();
                    index.objects.insert(ty.name.clone(), fields);
                }
                TypeDefKind::Enum(values) => {
                    index.enums.insert(
                        ty.name.clone(),
                        values.iter().map(|v| v.name.clone()).collect(),
                    );
                }
                _ => {}
            }
        }
        index
    }

    /// What the dotted `path` from `root` leads to.
    pub(crate) fn kind(&self, root: &str, path: &str) -> Result<FieldKind, String> {
        if path.split('.').any(str::is_empty) {
            return Err(
                "a path is field names joined by `.`, e.g. `unemploymentClaims.status`".to_string(),
            );
        }
        if !self.objects.contains_key(root) {
            return Err(format!("the graph has no type `{root}`"));
        }
        let mut type_name = root.to_string();
        for part in path.split('.') {
            let Some(fields) = self.objects.get(&type_name) else {
                return Err(format!(
                    "`{type_name}` is not an object, so it has no field `{part}`"
                ));
            };
            let Some(field) = fields.get(part) else {
                let mut known: Vec<&str> = fields.keys().map(String::as_str).collect();
                known.sort_unstable();
                return Err(format!(
                    "`{type_name}` has no field `{part}`; its fields are {}",
                    crate::config::quoted_list(&known)
                ));
            };
            if field.from_services {
                return Err(format!(
                    "`{type_name}.{part}` is made from the service catalogue itself"
                ));
            }
            if let Some(argument) = field.required_args.first() {
                return Err(format!(
                    "`{type_name}.{part}` needs the argument `{argument}`, which a condition cannot give"
                ));
            }
            type_name = field.type_name.clone();
        }
        Ok(if self.objects.contains_key(&type_name) {
            FieldKind::Object(type_name)
        } else if let Some(values) = self.enums.get(&type_name) {
            FieldKind::Enum(values.clone())
        } else {
            FieldKind::Scalar(type_name)
        })
    }
}

/// Runs `operation` for the request's caller; `parent` is the object the field is on (the
/// citizen, for `suggested`).
pub(crate) async fn call(
    operation: &str,
    args: &Arguments,
    scope: &RequestScope,
    parent: &Value,
    proactive: Option<&Proactive>,
) -> Result<Option<Value>, async_graphql::Error> {
    let empty = Proactive::default();
    let proactive = proactive.unwrap_or(&empty);
    let trust = &scope.trust;
    match operation {
        "catalogue" => Ok(Some(Value::Array(
            proactive
                .catalogue
                .services()
                .iter()
                .map(|s| service_json(s, trust))
                .collect(),
        ))),
        "suggested" => suggested(parent, scope, proactive).await.map(Some),
        "offers" => {
            let citizen = text(args, "citizen_id")?;
            if scope.principal().citizen().map(|c| c.as_str()) != Some(citizen) {
                return Err(coded(
                    ErrorCode::Forbidden,
                    "A citizen's service offers are theirs alone (ask through `me`).",
                ));
            }
            let offers = offers_store(proactive)?;
            let list = offers
                .of_citizen(citizen)
                .await
                .map_err(|error| offer_error(OfferError::Outbox(error)))?;
            let mut shown = Vec::with_capacity(list.len());
            for offer in &list {
                shown.extend(offer_json(offers, offer, trust).await?);
            }
            Ok(Some(Value::Array(shown)))
        }
        "accept" | "dismiss" => {
            let citizen = text(args, "citizen_id")?;
            let id = text(args, "id")?;
            let offers = offers_store(proactive)?;
            let offer = if operation == "accept" {
                offers.accept(citizen, id).await
            } else {
                offers.dismiss(citizen, id).await
            }
            .map_err(offer_error)?;
            tracing::debug!(service = %offer.service_id, state = offer.state.as_str(), "Service offer changed by its citizen.");
            offer_json(offers, &offer, trust).await
        }
        other => Err(coded(
            ErrorCode::InternalError,
            format!("the services connector has no operation `{other}`"),
        )),
    }
}

/// The services whose conditions the citizen's record meets, as the caller may read it.
async fn suggested(
    parent: &Value,
    scope: &RequestScope,
    proactive: &Proactive,
) -> Result<Value, async_graphql::Error> {
    let Some(conditions) = &proactive.conditions else {
        return Ok(Value::Array(Vec::new()));
    };
    // A scope of its own: its reads are confirmed and audited here, and anything withheld
    // makes conditions unmet rather than a hole in the caller's response.
    let nested = Arc::new(
        RequestScope::new(
            scope.context.clone(),
            scope.crosswalk.clone(),
            Arc::clone(&scope.trust),
            scope.services.clone(),
            scope.hub.clone(),
        )
        .with_events(scope.events.clone()),
    );
    let mut request = async_graphql::Request::new("").data(Arc::clone(&nested));
    request.set_parsed_query(conditions.document.clone());
    let response = conditions
        .schema
        .execute(request.root_value(FieldValue::owned_any(parent.clone())))
        .await;
    let withheld = delivery::settle(&nested, true).await;
    let unreadable: Vec<Vec<String>> = response
        .errors
        .iter()
        .map(|error| field_names(&error.path))
        .chain(withheld.iter().map(|w| field_names(&w.path)))
        .collect();
    let record = response.data.into_json().unwrap_or(Value::Null);
    let today = Utc::now().date_naive();
    Ok(Value::Array(
        proactive
            .catalogue
            .suggest(&record, &unreadable, today)
            .into_iter()
            .map(|suggestion| {
                json!({
                    "service": service_json(suggestion.service, &scope.trust),
                    "reason": suggestion.service.reason,
                    "matched": suggestion.matched,
                })
            })
            .collect(),
    ))
}

fn field_names(path: &[PathSegment]) -> Vec<String> {
    path.iter()
        .filter_map(|segment| match segment {
            PathSegment::Field(name) => Some(name.clone()),
            PathSegment::Index(_) => None,
        })
        .collect()
}

fn offers_store(proactive: &Proactive) -> Result<&ServiceOffers, async_graphql::Error> {
    proactive
        .offers
        .as_ref()
        .ok_or_else(|| unavailable("the gateway has no store"))
}

fn unavailable(reason: &str) -> async_graphql::Error {
    tracing::error!(reason, "Service offers unavailable.");
    async_graphql::Error::new("Service offers are unavailable right now.").extend_with(
        |_, extensions| {
            extensions.set("code", ErrorCode::BackendUnavailable.as_str());
            extensions.set("connector", SERVICES_CONNECTOR);
        },
    )
}

fn offer_error(error: OfferError) -> async_graphql::Error {
    match error {
        OfferError::NotFound => coded(
            ErrorCode::NotFound,
            "You have no service offer with this id.",
        ),
        OfferError::Conflict(state) => coded(
            ErrorCode::Conflict,
            format!("This offer was already {}.", state.as_str()),
        ),
        OfferError::Withdrawn(_) => coded(
            ErrorCode::Conflict,
            "This service is no longer offered, so the offer cannot be accepted.",
        ),
        OfferError::Outbox(error) => unavailable(&error.to_string()),
    }
}

fn service_json(service: &Service, trust: &TrustConfig) -> Value {
    json!({
        "id": service.id,
        "name": service.name,
        "description": service.description,
        "agency": {"code": service.agency, "name": trust.agency_name(&service.agency)},
        "triggers": service.triggers,
    })
}

/// An offer as the graph shows it, with its event; `None` when its service has left the
/// catalogue (or its event the outbox).
async fn offer_json(
    offers: &ServiceOffers,
    offer: &Offer,
    trust: &TrustConfig,
) -> Result<Option<Value>, async_graphql::Error> {
    let Some(service) = offers.catalogue().get(&offer.service_id) else {
        tracing::debug!(service = %offer.service_id, "An offer's service is no longer in the catalogue.");
        return Ok(None);
    };
    let event = offers
        .event_of(offer)
        .await
        .map_err(|error| offer_error(OfferError::Outbox(error)))?;
    let Some(event) = event else {
        tracing::warn!(offer = %offer.id, "An offer's event is missing from the outbox.");
        return Ok(None);
    };
    Ok(Some(json!({
        "id": offer.id,
        "service": service_json(service, trust),
        "state": offer.state.graphql_name(),
        "event": crate::events::feed::graph_value(&event),
        "offeredAt": rfc3339(offer.offered_at),
        "changedAt": rfc3339(offer.changed_at),
    })))
}
