//! The last step before personal data leaves the gateway: every protected read of the
//! request is confirmed and recorded, or withheld.
//!
//! 1. Consents used by the request are read again from the ledger: one revoked while a
//!    backend load was in flight withholds what it allowed (`CONSENT_REQUIRED`).
//! 2. The request's decisions go to the audit trail in one batch, one record per citizen and
//!    decision. If that append fails or times out, every personal value is withheld
//!    (`AUDIT_UNAVAILABLE`) while public fields stay.
//!
//! Withholding sets the value to `null` at its path and adds the error there; protected fields
//! are nullable (the loader insists), so nothing else in the response changes.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use async_graphql::{ErrorExtensions, PathSegment, ServerError, Value as GqlValue};
use chrono::Utc;

use super::scope::{Read, RequestScope};
use crate::audit::{AuditRecord, Decision};
use crate::auth::Principal;
use crate::consent::policy::{Access, Basis, Denial};
use crate::error::ErrorCode;

/// A value to take out of the response, and the error to put in its place.
pub(crate) struct Withheld {
    pub(crate) path: Vec<PathSegment>,
    pub(crate) error: ServerError,
}

/// Confirms and records the request's reads; returns what must be withheld. `deliver` is
/// false when the response will carry no data at all (a rejected operation): then only the
/// denials are recorded.
pub(crate) async fn settle(scope: &RequestScope, deliver: bool) -> Vec<Withheld> {
    let mut reads = scope.take_reads();
    if reads.is_empty() {
        return Vec::new();
    }
    if !deliver {
        reads.retain(|read| matches!(read.access, Access::Denied(_)));
    }
    let mut withheld = Vec::new();
    let Some(services) = &scope.services else {
        // A graph built by `check` alone has no audit trail, so it may deliver nothing personal.
        return withhold_all(&reads, ErrorCode::AuditUnavailable);
    };

    let handles: Vec<String> = reads
        .iter()
        .filter_map(|read| match &read.access {
            Access::Allowed(Basis::Consent(handle)) => Some(handle.clone()),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !handles.is_empty() {
        match services.ledger.still_live(&handles, Utc::now()).await {
            Ok(live) => {
                let purpose = scope.context.purpose.as_deref().unwrap_or_default();
                let before = withheld.len();
                revoke_in_flight(&mut reads, &live, purpose, &mut withheld);
                // A consent was withdrawn while this request's loads ran, perhaps on another
                // instance: what they cached for the agency is dropped too.
                if withheld.len() > before
                    && let (Some(hub), Some(agency)) = (&scope.hub, scope.cache_scope().agency())
                {
                    hub.consent_withdrawn(agency);
                }
            }
            Err(error) => {
                tracing::error!(%error, "Consent ledger unavailable while confirming consents.");
                let (lost, kept): (Vec<Read>, Vec<Read>) = reads
                    .into_iter()
                    .partition(|read| matches!(read.access, Access::Allowed(Basis::Consent(_))));
                withheld.extend(withhold_all(&lost, ErrorCode::ConsentUnavailable));
                reads = kept;
            }
        }
    }

    let records = records(scope, &reads);
    if let Err(error) = services.writer.append(records).await {
        tracing::error!(%error, "Audit trail unavailable: withholding personal data.");
        let allowed: Vec<Read> = reads
            .into_iter()
            .filter(|read| matches!(read.access, Access::Allowed(_)))
            .collect();
        withheld.extend(withhold_all(&allowed, ErrorCode::AuditUnavailable));
    }
    withheld
}

/// Reads allowed by a consent that is no longer live become `CONSENT_REQUIRED`.
fn revoke_in_flight(
    reads: &mut [Read],
    live: &HashSet<String>,
    purpose: &str,
    withheld: &mut Vec<Withheld>,
) {
    for read in reads {
        let Access::Allowed(Basis::Consent(handle)) = &read.access else {
            continue;
        };
        if live.contains(handle) {
            continue;
        }
        let denial = Denial::ConsentRequired {
            category: read.category.clone(),
            purpose: purpose.to_string(),
        };
        read.access = Access::Denied(denial);
        withheld.push(Withheld {
            path: read.path.clone(),
            error: coded_error(
                ErrorCode::ConsentRequired,
                "The citizen withdrew their consent while this request was running.",
                &read.path,
                Some(&read.category),
            ),
        });
    }
}

fn withhold_all(reads: &[Read], code: ErrorCode) -> Vec<Withheld> {
    let message = match code {
        ErrorCode::AuditUnavailable => {
            "Personal data is withheld: the audit trail could not record this read."
        }
        _ => "Personal data is withheld: the consent ledger could not be read.",
    };
    reads
        .iter()
        .filter(|read| matches!(read.access, Access::Allowed(_)))
        .map(|read| Withheld {
            path: read.path.clone(),
            error: coded_error(code, message, &read.path, None),
        })
        .collect()
}

fn coded_error(
    code: ErrorCode,
    message: &str,
    path: &[PathSegment],
    category: Option<&str>,
) -> ServerError {
    let category = category.map(str::to_string);
    let error = async_graphql::Error::new(message).extend_with(move |_, extensions| {
        extensions.set("code", code.as_str());
        if let Some(category) = &category {
            extensions.set("category", category.as_str());
        }
    });
    let mut server_error = error.into_server_error(async_graphql::Pos::default());
    server_error.locations.clear();
    server_error.path = path.to_vec();
    server_error
}

/// One record per citizen and decision (and basis): a query over ten fields of one citizen
/// writes one record naming the ten fields.
fn records(scope: &RequestScope, reads: &[Read]) -> Vec<AuditRecord> {
    let context = &scope.context;
    let (principal, agency) = match &context.principal {
        Principal::Anonymous => ("anonymous".to_string(), None),
        Principal::Citizen(id) => (format!("citizen:{}", id.as_str()), None),
        Principal::Operator { name } => (format!("operator:{name}"), None),
        Principal::Agency(client) => (
            format!("agency:{}", client.client_id),
            Some(client.agency.clone()),
        ),
    };
    let now = Utc::now();
    let mut grouped: BTreeMap<(String, &'static str, Option<String>), AuditRecord> =
        BTreeMap::new();
    for read in reads {
        let (decision, basis) = match &read.access {
            Access::Allowed(basis) => (Decision::Allowed, Some(basis.audit_text())),
            Access::Denied(Denial::Forbidden(_)) => (Decision::Forbidden, None),
            Access::Denied(Denial::ConsentRequired { .. }) => (Decision::ConsentRequired, None),
        };
        let record = grouped
            .entry((
                read.citizen.as_str().to_string(),
                decision.as_str(),
                basis.clone(),
            ))
            .or_insert_with(|| AuditRecord {
                at: now,
                request_id: context.request_id.clone(),
                principal: principal.clone(),
                agency: agency.clone(),
                citizen: read.citizen.clone(),
                categories: BTreeSet::new(),
                fields: BTreeSet::new(),
                purpose: context.purpose.clone(),
                decision,
                basis,
            });
        record.categories.insert(read.category.clone());
        record.fields.insert(read.field.clone());
    }
    grouped.into_values().collect()
}

/// Sets the value at `path` to `null`; a path that is gone already (an ancestor was nulled)
/// is left alone.
pub(crate) fn set_null(data: &mut GqlValue, path: &[PathSegment]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = data;
    for segment in parents {
        node = match (node, segment) {
            (GqlValue::Object(map), PathSegment::Field(name)) => match map.get_mut(name.as_str()) {
                Some(child) => child,
                None => return,
            },
            (GqlValue::List(items), PathSegment::Index(i)) => match items.get_mut(*i) {
                Some(child) => child,
                None => return,
            },
            _ => return,
        };
    }
    match (node, last) {
        (GqlValue::Object(map), PathSegment::Field(name)) => {
            if let Some(value) = map.get_mut(name.as_str()) {
                *value = GqlValue::Null;
            }
        }
        (GqlValue::List(items), PathSegment::Index(i)) => {
            if let Some(value) = items.get_mut(*i) {
                *value = GqlValue::Null;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_only_what_the_path_names() {
        let mut data = GqlValue::from_json(serde_json::json!({
            "a": {"b": [{"c": 1, "d": 2}, {"c": 3}]},
            "e": 4
        }))
        .unwrap();
        set_null(
            &mut data,
            &[
                PathSegment::Field("a".into()),
                PathSegment::Field("b".into()),
                PathSegment::Index(0),
                PathSegment::Field("c".into()),
            ],
        );
        set_null(
            &mut data,
            &[
                PathSegment::Field("x".into()),
                PathSegment::Field("y".into()),
            ],
        );
        assert_eq!(
            data.into_json().unwrap(),
            serde_json::json!({"a": {"b": [{"c": null, "d": 2}, {"c": 3}]}, "e": 4})
        );
    }
}
