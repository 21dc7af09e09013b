//! The built-in `cache` connector: operators drop a backend's cached answers through the
//! graph (`invalidateCache`). It runs in the gateway, so the caller's rights are checked here.

use serde_json::{Value, json};

use super::identity_ops::coded;
use super::scope::RequestScope;
use crate::connectors::{Arguments, Connectors};
use crate::error::ErrorCode;

/// Runs `operation` for the request's principal.
pub(crate) async fn call(
    operation: &str,
    args: &Arguments,
    scope: &RequestScope,
    connectors: &Connectors,
) -> Result<Option<Value>, async_graphql::Error> {
    if operation != "invalidate" {
        return Err(coded(
            ErrorCode::InternalError,
            format!("the cache connector has no operation `{operation}`"),
        ));
    }
    let Some(operator) = scope.principal().operator() else {
        return Err(coded(
            ErrorCode::Forbidden,
            "Only an operator may invalidate cached answers.",
        ));
    };
    let connector = args.get("connector").and_then(Value::as_str).unwrap_or("");
    let operation = args.get("operation").and_then(Value::as_str);
    let Some(shield) = connectors.shield(connector) else {
        let mut known: Vec<&str> = connectors.shields().map(|s| s.name()).collect();
        known.sort_unstable();
        return Err(coded(
            ErrorCode::BadUserInput,
            format!(
                "There is no backend connector `{connector}`; the connectors are {}.",
                crate::config::quoted_list(&known)
            ),
        ));
    };
    if let Some(operation) = operation
        && !connectors
            .specs()
            .get(connector)
            .is_some_and(|spec| spec.operations.contains_key(operation))
    {
        return Err(coded(
            ErrorCode::BadUserInput,
            format!("The `{connector}` connector has no operation `{operation}`."),
        ));
    }
    let dropped = shield.invalidate(operation).await;
    tracing::info!(operator = %operator, connector, operation = operation.unwrap_or("*"), dropped, "Cache invalidated by an operator.");
    Ok(Some(json!({
        "connector": connector,
        "operation": operation,
        "dropped": dropped,
    })))
}
