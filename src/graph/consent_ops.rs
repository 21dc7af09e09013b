//! The built-in `consent` connector's operations: a citizen's consents, the changes they make
//! to them (each answered with a signed receipt), and their access log — who read which of
//! their data, when, why, and on what basis, in plain words.
//!
//! Every operation is for the signed-in citizen about themself, checked here.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::identity_ops::{coded, text};
use super::scope::RequestScope;
use crate::audit::{Decision, StoredRecord};
use crate::config::TrustConfig;
use crate::connectors::Arguments;
use crate::consent::receipt::{self, ReceiptAction};
use crate::consent::{Consent, LedgerError, NewConsent};
use crate::error::{ErrorCode, capitalised};
use crate::identity::CitizenId;

/// How many access-log entries a page may hold.
pub(crate) const MAX_PAGE: usize = 100;
/// How long a consent lasts when the citizen gives no end.
const DEFAULT_VALIDITY_DAYS: i64 = 365;

/// Runs `operation` for the request's caller.
pub(crate) async fn call(
    operation: &str,
    args: &Arguments,
    scope: &RequestScope,
) -> Result<Option<Value>, async_graphql::Error> {
    let Some(services) = &scope.services else {
        return Err(unavailable());
    };
    let citizen = own_citizen(args, scope)?;
    let trust = &scope.trust;
    let now = Utc::now();
    match operation {
        "list" => {
            let consents = services.ledger.list(&citizen).await.map_err(ledger_error)?;
            Ok(Some(Value::Array(
                consents
                    .iter()
                    .map(|c| consent_json(c, trust, now))
                    .collect(),
            )))
        }
        "accessLog" => {
            let first = match args.get("first") {
                None | Some(Value::Null) => 20,
                Some(value) => match value.as_u64() {
                    Some(n @ 1..) if n as usize <= MAX_PAGE => n as usize,
                    _ => {
                        return Err(coded(
                            ErrorCode::BadUserInput,
                            format!("`first` must be between 1 and {MAX_PAGE}"),
                        ));
                    }
                },
            };
            let before = match args.get("after") {
                None | Some(Value::Null) => None,
                Some(Value::String(cursor)) => Some(
                    cursor
                        .parse::<i64>()
                        .ok()
                        .filter(|seq| *seq > 0)
                        .ok_or_else(|| {
                            coded(
                                ErrorCode::BadUserInput,
                                "`after` must be an `endCursor` from an earlier page",
                            )
                        })?,
                ),
                Some(_) => {
                    return Err(coded(ErrorCode::BadUserInput, "`after` must be a string"));
                }
            };
            let (records, has_more) = services
                .audit
                .for_citizen(&citizen, first, before)
                .await
                .map_err(|error| {
                    tracing::error!(%error, "Audit trail unavailable for an access log.");
                    coded(
                        ErrorCode::AuditUnavailable,
                        "The access log is unavailable right now.",
                    )
                })?;
            Ok(Some(access_log_page(&records, has_more, trust)))
        }
        "grant" => {
            let grant = new_consent(args, citizen, trust, now)?;
            let consent = services
                .ledger
                .grant(grant, now)
                .await
                .map_err(ledger_error)?;
            tracing::info!(handle = %consent.handle, "Consent granted.");
            change(services, trust, &consent, ReceiptAction::Granted, now)
        }
        "revoke" | "pause" | "resume" => {
            let handle = text(args, "handle")?;
            let ledger = &services.ledger;
            let (result, action) = match operation {
                "revoke" => (
                    ledger.revoke(&citizen, handle, now).await,
                    ReceiptAction::Revoked,
                ),
                "pause" => (
                    ledger.pause(&citizen, handle, now).await,
                    ReceiptAction::Paused,
                ),
                _ => (
                    ledger.resume(&citizen, handle, now).await,
                    ReceiptAction::Resumed,
                ),
            };
            let consent = result.map_err(ledger_error)?;
            tracing::info!(handle = %consent.handle, operation, "Consent changed.");
            if operation != "resume"
                && let Some(hub) = &scope.hub
            {
                // What the agency read under this consent is not served from the caches
                // again, and its loads in flight are not cached.
                hub.consent_withdrawn(&consent.grantee);
            }
            change(services, trust, &consent, action, now)
        }
        other => Err(coded(
            ErrorCode::InternalError,
            format!("the consent connector has no operation `{other}`"),
        )),
    }
}

/// The ledger or audit store is not open (a graph built by `check` alone).
pub(crate) fn unavailable() -> async_graphql::Error {
    coded(
        ErrorCode::ConsentUnavailable,
        "The consent ledger is unavailable.",
    )
}

/// The citizen the operation is about, who must be the caller.
fn own_citizen(args: &Arguments, scope: &RequestScope) -> Result<CitizenId, async_graphql::Error> {
    let Some(caller) = scope.principal().citizen() else {
        return Err(coded(
            ErrorCode::Forbidden,
            "Only a signed-in citizen manages their consents and reads their access log.",
        ));
    };
    let named = CitizenId::parse(text(args, "citizen_id")?)
        .map_err(|error| coded(ErrorCode::BadUserInput, error.to_string()))?;
    if &named != caller {
        return Err(coded(
            ErrorCode::Forbidden,
            "A citizen's consents and access log are theirs alone.",
        ));
    }
    Ok(named)
}

fn change(
    services: &super::TrustServices,
    trust: &TrustConfig,
    consent: &Consent,
    action: ReceiptAction,
    now: DateTime<Utc>,
) -> Result<Option<Value>, async_graphql::Error> {
    let receipt =
        receipt::issue(&services.signing, trust, consent, action, now).map_err(|error| {
            tracing::error!(%error, "Could not sign a consent receipt.");
            coded(
                ErrorCode::InternalError,
                "The change was made, but its receipt could not be signed.",
            )
        })?;
    Ok(Some(json!({
        "consent": consent_json(consent, trust, now),
        "receipt": receipt,
    })))
}

fn new_consent(
    args: &Arguments,
    citizen: CitizenId,
    trust: &TrustConfig,
    now: DateTime<Utc>,
) -> Result<NewConsent, async_graphql::Error> {
    let categories = match args.get("categories") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    coded(
                        ErrorCode::BadUserInput,
                        "`categories` must be a list of category codes",
                    )
                })
            })
            .collect::<Result<BTreeSet<_>, _>>()?,
        _ => {
            return Err(coded(
                ErrorCode::BadUserInput,
                "`categories` must be a list of category codes",
            ));
        }
    };
    let valid_from = optional_time(args, "validFrom")?.unwrap_or(now);
    let valid_until = match optional_time(args, "validUntil")? {
        Some(until) => until,
        None => {
            let days = DEFAULT_VALIDITY_DAYS.min(i64::from(trust.max_consent_days));
            valid_from + Duration::days(days)
        }
    };
    Ok(NewConsent {
        citizen,
        grantee: text(args, "grantee")?.to_string(),
        categories,
        purpose: text(args, "purpose")?.to_string(),
        valid_from,
        valid_until,
    })
}

fn optional_time(
    args: &Arguments,
    name: &str,
) -> Result<Option<DateTime<Utc>>, async_graphql::Error> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                coded(
                    ErrorCode::BadUserInput,
                    format!("`{name}` must be an RFC 3339 time such as 2027-01-31T00:00:00Z"),
                )
            }),
        Some(_) => Err(coded(
            ErrorCode::BadUserInput,
            format!("`{name}` must be an RFC 3339 time"),
        )),
    }
}

fn ledger_error(error: LedgerError) -> async_graphql::Error {
    match error {
        LedgerError::Invalid(message) => coded(ErrorCode::BadUserInput, message),
        LedgerError::NotFound => {
            coded(ErrorCode::NotFound, "You have no consent with this handle.")
        }
        LedgerError::Conflict(message) => coded(ErrorCode::Conflict, message),
        other => {
            tracing::error!(error = %other, "Consent ledger failed.");
            unavailable()
        }
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn described(code: &str, words: &str) -> Value {
    json!({"code": code, "description": words})
}

fn consent_json(consent: &Consent, trust: &TrustConfig, now: DateTime<Utc>) -> Value {
    json!({
        "handle": consent.handle,
        "grantee": {"code": consent.grantee, "name": trust.agency_name(&consent.grantee)},
        "categories": consent
            .categories
            .iter()
            .map(|c| described(c, trust.category_words(c)))
            .collect::<Vec<_>>(),
        "purpose": described(&consent.purpose, trust.purpose_words(&consent.purpose)),
        "validFrom": time(consent.valid_from),
        "validUntil": time(consent.valid_until),
        "status": consent.status(now).graphql_name(),
        "grantedAt": time(consent.granted_at),
        "changedAt": time(consent.changed_at),
    })
}

fn access_log_page(records: &[StoredRecord], has_more: bool, trust: &TrustConfig) -> Value {
    let edges: Vec<Value> = records
        .iter()
        .map(|stored| json!({"cursor": stored.seq.to_string(), "node": entry_json(stored, trust)}))
        .collect();
    let cursor = |edge: Option<&Value>| edge.map_or(Value::Null, |e| e["cursor"].clone());
    json!({
        "pageInfo": {
            "hasNextPage": has_more,
            "hasPreviousPage": false,
            "startCursor": cursor(edges.first()),
            "endCursor": cursor(edges.last()),
        },
        "edges": edges,
    })
}

/// One access-log entry, with a sentence a citizen can read.
fn entry_json(stored: &StoredRecord, trust: &TrustConfig) -> Value {
    let record = &stored.record;
    let (kind, reader) = match (record.principal.split_once(':'), &record.agency) {
        (_, Some(agency)) => ("AGENCY", trust.agency_name(agency).to_string()),
        (Some(("citizen", _)), None) => ("CITIZEN", "you".to_string()),
        (Some(("operator", _)), None) => ("OPERATOR", "a gateway operator".to_string()),
        _ => ("ANONYMOUS", "someone not signed in".to_string()),
    };
    let what: Vec<&str> = record
        .categories
        .iter()
        .map(|c| trust.category_words(c))
        .collect();
    let what = join_words(&what);
    let why = record
        .purpose
        .as_deref()
        .map(|p| format!(" for {}", trust.purpose_words(p)))
        .unwrap_or_default();
    let basis = record.basis.as_deref().unwrap_or_default();
    let summary = match record.decision {
        Decision::Allowed => {
            let how = if let Some(law) = basis.strip_prefix("legal basis: ") {
                format!(", under {law}")
            } else if basis.starts_with("consent ") {
                ", with your consent".to_string()
            } else {
                String::new()
            };
            format!("{} read {what}{why}{how}.", capitalised(&reader))
        }
        Decision::ConsentRequired => format!(
            "{} asked for {what}{why} and was refused: you have not consented.",
            capitalised(&reader)
        ),
        Decision::Forbidden => format!(
            "{} asked for {what}{why} and was refused: not allowed.",
            capitalised(&reader)
        ),
    };
    json!({
        "at": time(record.at),
        "reader": {
            "kind": kind,
            "name": reader,
            "client": record.principal.split_once(':').map(|(_, id)| id),
        },
        "categories": record
            .categories
            .iter()
            .map(|c| described(c, trust.category_words(c)))
            .collect::<Vec<_>>(),
        "fields": record.fields.iter().collect::<Vec<_>>(),
        "purpose": record
            .purpose
            .as_deref()
            .map(|p| described(p, trust.purpose_words(p))),
        "decision": match record.decision {
            Decision::Allowed => "ALLOWED",
            Decision::Forbidden => "FORBIDDEN",
            Decision::ConsentRequired => "CONSENT_REQUIRED",
        },
        "basis": record.basis,
        "summary": summary,
    })
}

fn join_words(words: &[&str]) -> String {
    match words {
        [] => "data".to_string(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_joined_like_a_sentence() {
        assert_eq!(join_words(&["a"]), "a");
        assert_eq!(join_words(&["a", "b"]), "a and b");
        assert_eq!(join_words(&["a", "b", "c"]), "a, b and c");
        assert_eq!(capitalised("the agency"), "The agency");
    }
}
