//! The built-in `identity` connector's operations: reading and changing the crosswalk
//! through the graph. They run in the gateway, so the caller's rights are checked here.

use async_graphql::ErrorExtensions;
use serde_json::{Value, json};

use super::scope::{LinksError, RequestScope};
use crate::connectors::Arguments;
use crate::error::ErrorCode;
use crate::identity::{AnyKey, CitizenId, CrosswalkError, KeyKind, Link};

/// Runs `operation` for the request's principal.
pub(crate) async fn call(
    operation: &str,
    args: &Arguments,
    scope: &RequestScope,
) -> Result<Option<Value>, async_graphql::Error> {
    let citizen = CitizenId::parse(text(args, "citizen_id")?)
        .map_err(|error| coded(ErrorCode::BadUserInput, error.to_string()))?;
    match operation {
        "links" => {
            let own = scope.principal().citizen() == Some(&citizen);
            if !own && scope.principal().operator().is_none() {
                return Err(forbidden(
                    "Only an operator or the citizen themself may see identity links.",
                ));
            }
            let links = scope.links(&citizen, false).await.map_err(store_error)?;
            Ok(Some(Value::Array(links.iter().map(link_json).collect())))
        }
        "link" | "unlink" => {
            let Some(operator) = scope.principal().operator() else {
                return Err(forbidden("Only an operator may change identity links."));
            };
            let crosswalk = scope
                .crosswalk
                .as_ref()
                .ok_or_else(|| store_error(LinksError::NoStore))?;
            let kind = KeyKind::parse(text(args, "kind")?)
                .map_err(|error| coded(ErrorCode::BadUserInput, error.to_string()))?;
            if operation == "link" {
                let key = AnyKey::parse(kind, text(args, "key")?)
                    .map_err(|error| coded(ErrorCode::BadUserInput, error.to_string()))?;
                let link = crosswalk
                    .link(&citizen, &key, operator)
                    .await
                    .map_err(crosswalk_error)?;
                tracing::info!(operator, kind = %kind, "Identity link written.");
                Ok(Some(link_json(&link)))
            } else {
                let removed = crosswalk
                    .unlink(&citizen, kind)
                    .await
                    .map_err(crosswalk_error)?;
                tracing::info!(operator, kind = %kind, removed = removed.is_some(), "Identity link removed.");
                Ok(removed.as_ref().map(link_json))
            }
        }
        other => Err(coded(
            ErrorCode::InternalError,
            format!("the identity connector has no operation `{other}`"),
        )),
    }
}

/// The string argument `name`, or `BAD_USER_INPUT` naming it.
pub(crate) fn text<'a>(args: &'a Arguments, name: &str) -> Result<&'a str, async_graphql::Error> {
    match args.get(name) {
        Some(Value::String(text)) => Ok(text),
        _ => Err(coded(
            ErrorCode::BadUserInput,
            format!("`{name}` must be a string"),
        )),
    }
}

fn link_json(link: &Link) -> Value {
    json!({
        "citizenId": link.citizen.as_str(),
        "kind": link.key.kind().graphql_name(),
        "key": link.key.as_str(),
        "linkedAt": link.linked_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "linkedBy": link.linked_by,
    })
}

pub(crate) fn coded(code: ErrorCode, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(move |_, extensions| {
        extensions.set("code", code.as_str());
    })
}

fn forbidden(message: &str) -> async_graphql::Error {
    coded(ErrorCode::Forbidden, message)
}

fn crosswalk_error(error: CrosswalkError) -> async_graphql::Error {
    match error {
        CrosswalkError::Conflict { .. } => coded(ErrorCode::Conflict, error.to_string()),
        other => store_error(LinksError::Crosswalk(other)),
    }
}

/// The store failed: logged in full, shown as unavailable.
pub(crate) fn store_error(error: LinksError) -> async_graphql::Error {
    tracing::error!(%error, "Identity crosswalk unavailable.");
    async_graphql::Error::new("The identity crosswalk is unavailable.").extend_with(
        |_, extensions| {
            extensions.set("code", ErrorCode::BackendUnavailable.as_str());
            extensions.set("connector", crate::connectors::IDENTITY_CONNECTOR);
        },
    )
}
