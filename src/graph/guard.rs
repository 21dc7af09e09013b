//! Policy directives → one guard per protected field, checked against the `[trust]`
//! catalogues when the graph loads, so a typo in a category is a `check` error at its line
//! rather than a field nobody can ever read.
//!
//! A field that calls a backend must say who may read it (`@public`, `@requiresScopes` or
//! `@consent`): forgetting is an error, never an open field. A field read from its parent's
//! data needs no directive; it is part of the value its parent was allowed to return.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::bind::{Bindings, FieldSource, PolicyDirectiveMap, citizen_id_path};
use super::directives::{PolicyDirectives, SubjectSource};
use super::sdl::{TypeDefKind, TypeSystem};
use crate::config::{Diagnostic, TrustConfig};
use crate::connectors::is_built_in;
use crate::consent::policy::{FieldPolicy, ScopeRule};

/// What the resolver of one protected field checks before it reads anything.
#[derive(Debug, Clone)]
pub(crate) struct FieldGuard {
    pub(crate) policy: FieldPolicy,
    /// Where the citizen id of a personal field is.
    pub(crate) subject: Option<SubjectSource>,
    /// `Type.field`, as the audit trail names it.
    pub(crate) label: String,
}

/// Guards by (type, field); public fields and fields without directives have none.
pub(crate) type Guards = BTreeMap<(String, String), Arc<FieldGuard>>;

/// Builds every guard, collecting every problem.
pub(crate) fn guards(
    system: &TypeSystem,
    bindings: &Bindings,
    directives: &PolicyDirectiveMap,
    trust: &TrustConfig,
    diagnostics: &mut Vec<Diagnostic>,
) -> Guards {
    let roots: Vec<&str> = std::iter::once(system.query.as_str())
        .chain(system.mutation.as_deref())
        .collect();
    let mut guards = Guards::new();
    for ty in system.types.values() {
        let TypeDefKind::Object(fields) = &ty.kind else {
            continue;
        };
        let is_root = roots.contains(&ty.name.as_str());
        for field in fields.values() {
            let key = (ty.name.clone(), field.name.clone());
            let label = format!("{}.{}", ty.name, field.name);
            let Some(written) = directives.get(&key) else {
                if let Some(FieldSource::Connect(binding)) = bindings.get(&key)
                    && !is_built_in(&binding.connector)
                {
                    diagnostics.push(Diagnostic::at(
                        field.location.clone(),
                        format!(
                            "`{label}` calls connector `{}` but says nothing about who may read it: add `@public`, `@requiresScopes(scopes: [[\"…\"]])` or `@consent(category: \"…\")`",
                            binding.connector
                        ),
                    ));
                }
                continue;
            };
            if written.malformed {
                continue;
            }
            let Some(policy) = field_policy(&label, written, trust, diagnostics) else {
                continue;
            };
            if matches!(policy, FieldPolicy::Public) {
                continue;
            }
            if !field.ty.nullable {
                diagnostics.push(Diagnostic::at(
                    field.location.clone(),
                    format!(
                        "`{label}` is protected, so it must be nullable (`{}` without `!`): a denied field is null",
                        field.ty
                    ),
                ));
                continue;
            }
            let subject = match (&policy, &written.consent) {
                (FieldPolicy::Personal { .. }, Some(consent)) => {
                    let subject = consent
                        .subject
                        .clone()
                        .or_else(|| citizen_id_path(is_root, fields).map(SubjectSource::Parent));
                    match &subject {
                        None => {
                            diagnostics.push(Diagnostic::at(
                                consent.location.clone(),
                                format!(
                                    "`@consent` on `{label}` needs `subject:` saying where the citizen id is (`$args.<name>` or `$caller.citizenId`){}",
                                    if is_root { "; a root field has no parent" } else { "; its type has no field `id`" }
                                ),
                            ));
                            continue;
                        }
                        Some(SubjectSource::Argument(name))
                            if !field.arguments.iter().any(|a| &a.name == name) =>
                        {
                            diagnostics.push(Diagnostic::at(
                                consent.location.clone(),
                                format!("`subject` is `$args.{name}`, but `{label}` has no argument `{name}`"),
                            ));
                            continue;
                        }
                        Some(SubjectSource::Parent(_)) if is_root => {
                            diagnostics.push(Diagnostic::at(
                                consent.location.clone(),
                                "`subject` refers to `$parent`, but a root field has no parent object",
                            ));
                            continue;
                        }
                        _ => {}
                    }
                    subject
                }
                _ => None,
            };
            guards.insert(
                key,
                Arc::new(FieldGuard {
                    policy,
                    subject,
                    label,
                }),
            );
        }
    }
    guards
}

fn field_policy(
    label: &str,
    written: &PolicyDirectives,
    trust: &TrustConfig,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<FieldPolicy> {
    if let Some(location) = &written.public {
        if written.consent.is_some() || written.scopes.is_some() || written.owner.is_some() {
            diagnostics.push(Diagnostic::at(
                location.clone(),
                format!("`{label}` is `@public`, so it cannot also have `@consent`, `@requiresScopes` or `@owner`"),
            ));
            return None;
        }
        return Some(FieldPolicy::Public);
    }
    let scopes = ScopeRule(
        written
            .scopes
            .as_ref()
            .map(|(sets, _)| {
                sets.iter()
                    .map(|set| set.iter().cloned().collect::<BTreeSet<_>>())
                    .collect()
            })
            .unwrap_or_default(),
    );
    let Some(consent) = &written.consent else {
        if let Some((_, location)) = &written.owner {
            diagnostics.push(Diagnostic::at(
                location.clone(),
                format!("`@owner` on `{label}` needs `@consent(category: …)`: only personal data has an owning agency"),
            ));
            return None;
        }
        return Some(FieldPolicy::Restricted { scopes });
    };
    let mut ok = true;
    if !trust.categories.contains_key(&consent.category) {
        ok = false;
        diagnostics.push(Diagnostic::at(
            consent.location.clone(),
            format!(
                "unknown data category `{}`; declare it under `[trust.categories]` in civicgraph.toml ({})",
                consent.category,
                catalogue(trust.categories.keys())
            ),
        ));
    }
    let owner = match &written.owner {
        Some((agency, location)) => {
            if !trust.agencies.contains_key(agency) {
                ok = false;
                diagnostics.push(Diagnostic::at(
                    location.clone(),
                    format!(
                        "unknown agency `{agency}`; declare it under `[trust.agencies]` in civicgraph.toml ({})",
                        catalogue(trust.agencies.keys())
                    ),
                ));
            }
            Some(agency.clone())
        }
        None => None,
    };
    ok.then(|| FieldPolicy::Personal {
        category: consent.category.clone(),
        owner,
        scopes,
    })
}

fn catalogue<'a>(codes: impl Iterator<Item = &'a String>) -> String {
    let codes: Vec<&str> = codes.map(String::as_str).collect();
    if codes.is_empty() {
        "none is declared yet".to_string()
    } else {
        format!("declared: {}", crate::config::quoted_list(&codes))
    }
}
