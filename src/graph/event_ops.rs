//! The built-in `events` connector: webhook subscribers, their deliveries and dead letters.
//!
//! An operator manages every agency's subscribers; an agency client with the
//! `events:subscribe` scope manages its own agency's, for purposes its token allows. Nobody
//! else sees any. Answers are JSON shaped like `schema/events.graphql`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::identity_ops::coded;
use super::scope::RequestScope;
use crate::auth::Principal;
use crate::connectors::Arguments;
use crate::error::ErrorCode;
use crate::events::outbox::rfc3339;
use crate::events::{Delivery, DeliveryState, EventServices, NewSubscriber, Subscriber};

/// The scope an agency client needs to manage its subscribers.
pub(crate) const SUBSCRIBE_SCOPE: &str = "events:subscribe";

/// Event types the gateway itself records, besides the rules' (accepted service offers).
pub(crate) const GATEWAY_EVENT_TYPES: &[&str] = &["ServiceOfferAccepted"];

/// The most subscribers one agency may register (each costs a delivery row per event).
const MAX_SUBSCRIBERS_PER_AGENCY: usize = 50;

/// Who is managing subscribers.
enum Manager<'a> {
    Operator(&'a str),
    Agency { agency: &'a str, client: &'a str },
}

impl Manager<'_> {
    fn may_manage(&self, agency: &str) -> bool {
        match self {
            Self::Operator(_) => true,
            Self::Agency { agency: own, .. } => *own == agency,
        }
    }

    fn name(&self) -> String {
        match self {
            Self::Operator(name) => format!("operator:{name}"),
            Self::Agency { client, .. } => format!("client:{client}"),
        }
    }
}

fn manager(principal: &Principal) -> Result<Manager<'_>, async_graphql::Error> {
    match principal {
        Principal::Operator { name } => Ok(Manager::Operator(name)),
        Principal::Agency(client) if client.scopes.contains(SUBSCRIBE_SCOPE) => {
            Ok(Manager::Agency {
                agency: &client.agency,
                client: &client.client_id,
            })
        }
        Principal::Agency(_) => Err(coded(
            ErrorCode::Forbidden,
            format!("Managing event subscribers needs the `{SUBSCRIBE_SCOPE}` scope."),
        )),
        Principal::Anonymous => Err(coded(
            ErrorCode::Unauthenticated,
            "Sign in as an operator or an agency client to manage event subscribers.",
        )),
        Principal::Citizen(_) => Err(coded(
            ErrorCode::Forbidden,
            "Only operators and agencies manage event subscribers.",
        )),
    }
}

fn unavailable(error: impl std::fmt::Display) -> async_graphql::Error {
    tracing::error!(%error, "The event outbox is unavailable.");
    coded(
        ErrorCode::EventsUnavailable,
        "Life events are unavailable right now.",
    )
}

fn text<'a>(args: &'a Arguments, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

/// The event types a subscriber may ask for.
pub(crate) fn known_types(events: &EventServices) -> BTreeSet<String> {
    let mut types = events.detector.rules().event_types();
    types.extend(GATEWAY_EVENT_TYPES.iter().map(|t| t.to_string()));
    types
}

/// Runs `operation` for the request's principal.
pub(crate) async fn call(
    operation: &str,
    args: &Arguments,
    scope: &RequestScope,
) -> Result<Option<Value>, async_graphql::Error> {
    let Some(events) = &scope.events else {
        return Err(coded(
            ErrorCode::EventsUnavailable,
            "Life events are not enabled on this gateway.",
        ));
    };
    if operation == "types" {
        return Ok(Some(json!(known_types(events))));
    }
    let who = manager(scope.principal())?;
    let outbox = events.detector.outbox();
    match operation {
        "subscribers" => {
            let agency = match &who {
                Manager::Operator(_) => None,
                Manager::Agency { agency, .. } => Some(*agency),
            };
            let list = outbox.subscribers(agency).await.map_err(unavailable)?;
            Ok(Some(Value::Array(
                list.iter().map(subscriber_json).collect(),
            )))
        }
        "deliveries" => {
            let subscriber = owned_subscriber(events, &who, text(args, "subscriberId")).await?;
            let state = match text(args, "state") {
                None => None,
                Some(state) => Some(
                    DeliveryState::parse(&state.to_ascii_lowercase())
                        .ok_or_else(|| coded(ErrorCode::BadUserInput, "Unknown delivery state."))?,
                ),
            };
            let first = args.get("first").and_then(Value::as_i64).unwrap_or(50);
            if !(1..=500).contains(&first) {
                return Err(coded(
                    ErrorCode::BadUserInput,
                    "`first` must be between 1 and 500.",
                ));
            }
            let list = outbox
                .deliveries(&subscriber.id, state, first)
                .await
                .map_err(unavailable)?;
            Ok(Some(Value::Array(list.iter().map(delivery_json).collect())))
        }
        "register" => register(events, &who, scope, args).await.map(Some),
        "disable" | "enable" => {
            let subscriber = owned_subscriber(events, &who, text(args, "id")).await?;
            let active = operation == "enable";
            let reason = format!("disabled by {}", who.name());
            let changed = outbox
                .set_subscriber_active(&subscriber.id, active, Some(&reason))
                .await
                .map_err(unavailable)?
                .ok_or_else(|| coded(ErrorCode::NotFound, "There is no such subscriber."))?;
            tracing::info!(subscriber = %changed.id, active, by = %who.name(), "Event subscriber changed.");
            Ok(Some(subscriber_json(&changed)))
        }
        "replay" => {
            let subscriber = owned_subscriber(events, &who, text(args, "subscriberId")).await?;
            let replayed = outbox
                .replay(&subscriber.id, text(args, "eventId"))
                .await
                .map_err(unavailable)?;
            tracing::info!(subscriber = %subscriber.id, replayed, by = %who.name(), "Dead letters replayed.");
            Ok(Some(json!(replayed)))
        }
        other => Err(coded(
            ErrorCode::InternalError,
            format!("the events connector has no operation `{other}`"),
        )),
    }
}

/// The subscriber named by `id`, if the manager may see it (else `NOT_FOUND`, so an agency
/// cannot probe for other agencies' subscribers).
async fn owned_subscriber(
    events: &EventServices,
    who: &Manager<'_>,
    id: Option<&str>,
) -> Result<Subscriber, async_graphql::Error> {
    let not_found = || coded(ErrorCode::NotFound, "There is no such subscriber.");
    let id = id.ok_or_else(not_found)?;
    let subscriber = events
        .detector
        .outbox()
        .subscriber(id)
        .await
        .map_err(unavailable)?
        .ok_or_else(not_found)?;
    if !who.may_manage(&subscriber.agency) || subscriber.id == "nats" {
        return Err(not_found());
    }
    Ok(subscriber)
}

async fn register(
    events: &EventServices,
    who: &Manager<'_>,
    scope: &RequestScope,
    args: &Arguments,
) -> Result<Value, async_graphql::Error> {
    let trust = &scope.trust;
    let agency = text(args, "agency").unwrap_or_default();
    let purpose = text(args, "purpose").unwrap_or_default();
    let url = text(args, "url").unwrap_or_default();
    if !trust.agencies.contains_key(agency) {
        let known: Vec<&str> = trust.agencies.keys().map(String::as_str).collect();
        return Err(coded(
            ErrorCode::BadUserInput,
            format!(
                "Unknown agency `{}`; the agencies are {}.",
                agency.chars().take(64).collect::<String>(),
                crate::config::quoted_list(&known)
            ),
        ));
    }
    if !who.may_manage(agency) {
        return Err(coded(
            ErrorCode::Forbidden,
            "An agency registers subscribers for itself only.",
        ));
    }
    if !trust.purposes.contains_key(purpose) {
        return Err(coded(
            ErrorCode::UnknownPurpose,
            "The purpose is not one this gateway knows.",
        ));
    }
    if let Principal::Agency(client) = scope.principal()
        && !client.purposes.contains(purpose)
    {
        return Err(coded(
            ErrorCode::PurposeNotAllowed,
            "The purpose is not one this client's token allows.",
        ));
    }
    let endpoint = crate::events::egress::check_endpoint(url, events.allow_private_endpoints)
        .map_err(|error| coded(ErrorCode::BadUserInput, format!("`url`: {error}.")))?;
    let known = known_types(events);
    let mut types = Vec::new();
    if let Some(Value::Array(items)) = args.get("eventTypes") {
        for item in items {
            let Some(name) = item.as_str() else { continue };
            if !known.contains(name) {
                let list: Vec<&str> = known.iter().map(String::as_str).collect();
                return Err(coded(
                    ErrorCode::BadUserInput,
                    format!(
                        "Unknown event type `{}`; the types are {}.",
                        name.chars().take(64).collect::<String>(),
                        crate::config::quoted_list(&list)
                    ),
                ));
            }
            if !types.iter().any(|t| t == name) {
                types.push(name.to_string());
            }
        }
    }
    let outbox = events.detector.outbox();
    let existing = outbox
        .subscribers(Some(agency))
        .await
        .map_err(unavailable)?;
    if existing.len() >= MAX_SUBSCRIBERS_PER_AGENCY {
        return Err(coded(
            ErrorCode::Conflict,
            format!(
                "An agency may have at most {MAX_SUBSCRIBERS_PER_AGENCY} subscribers; disable or reuse one."
            ),
        ));
    }
    let secret = crate::events::signature::WebhookSecret::generate()
        .map_err(|_| coded(ErrorCode::InternalError, "Internal error."))?;
    let subscriber = outbox
        .add_subscriber(NewSubscriber {
            agency: agency.to_string(),
            purpose: purpose.to_string(),
            endpoint: endpoint.to_string(),
            secret: secret.expose(),
            event_types: types,
            created_by: who.name(),
        })
        .await
        .map_err(unavailable)?;
    tracing::info!(subscriber = %subscriber.id, agency, by = %who.name(), "Event subscriber registered.");
    Ok(json!({
        "subscriber": subscriber_json(&subscriber),
        "secret": secret.expose(),
    }))
}

fn subscriber_json(subscriber: &Subscriber) -> Value {
    json!({
        "id": subscriber.id,
        "agency": subscriber.agency,
        "purpose": subscriber.purpose,
        "url": subscriber.endpoint,
        "eventTypes": subscriber.event_types,
        "active": subscriber.active,
        "disabledReason": subscriber.disabled_reason,
        "createdBy": subscriber.created_by,
        "createdAt": rfc3339(subscriber.created_at),
    })
}

fn delivery_json(delivery: &Delivery) -> Value {
    json!({
        "event": crate::events::feed::graph_value(&delivery.event),
        "state": delivery.state.as_str().to_ascii_uppercase(),
        "attempts": delivery.attempts,
        "nextAttemptAt": delivery.next_attempt_at.map(rfc3339),
        "lastStatus": delivery.last_status,
        "lastError": delivery.last_error,
        "deliveredAt": delivery.delivered_at.map(rfc3339),
    })
}
