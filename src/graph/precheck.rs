//! `[trust] on_denied = "reject"`: an operation that selects a field its caller may certainly
//! not read is refused before anything runs, so not even the fields it may read reach a backend.
//!
//! "Certainly" means the caller's kind and scopes decide it (`policy::certain_denial`); what
//! depends on whose data a field holds or on the consent ledger is only known while executing,
//! and `Graph::execute` refuses the operation then, after the fact. Selections are taken as
//! written, `@skip`/`@include` included: asking is enough to be refused.

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ErrorExtensions, PathSegment, ServerError};

use super::complete::{TypeIndex, selected_operation};
use super::guard::Guards;
use super::sdl::named_type;
use crate::auth::Principal;
use crate::consent::policy::{Denial, certain_denial};
use crate::error::ErrorCode;

/// The fields of the operation that `principal` may certainly not read, as errors with their
/// response paths (list indices are unknown before execution, so paths name keys only).
pub(crate) fn certain_denials(
    types: &TypeIndex,
    guards: &Guards,
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    principal: &Principal,
) -> Vec<ServerError> {
    let Some(operation) = selected_operation(document, operation_name) else {
        return Vec::new();
    };
    let Some(root) = types.root(operation.node.ty) else {
        return Vec::new();
    };
    let mut walk = Walk {
        types,
        guards,
        document,
        principal,
        path: Vec::new(),
        visited: Vec::new(),
        denials: Vec::new(),
    };
    walk.selections(root, &operation.node.selection_set.node);
    walk.denials
}

struct Walk<'a> {
    types: &'a TypeIndex,
    guards: &'a Guards,
    document: &'a ExecutableDocument,
    principal: &'a Principal,
    path: Vec<PathSegment>,
    visited: Vec<&'a str>,
    denials: Vec<ServerError>,
}

impl<'a> Walk<'a> {
    fn selections(&mut self, type_name: &str, set: &'a SelectionSet) {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    self.path.push(PathSegment::Field(
                        field.node.response_key().node.to_string(),
                    ));
                    let guard = self.guards.get(&(type_name.to_string(), name.to_string()));
                    match guard.and_then(|g| certain_denial(&g.policy, self.principal)) {
                        Some(Denial::Forbidden(reason)) => {
                            let error = async_graphql::Error::new(reason).extend_with(|_, e| {
                                e.set("code", ErrorCode::Forbidden.as_str());
                            });
                            let mut error = error.into_server_error(field.pos);
                            error.path = self.path.clone();
                            self.denials.push(error);
                        }
                        _ => {
                            if let Some(ty) = self.types.field_type(type_name, name) {
                                let nested = named_type(ty).to_string();
                                self.selections(&nested, &field.node.selection_set.node);
                            }
                        }
                    }
                    self.path.pop();
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if !self.visited.contains(&name) {
                        self.visited.push(name);
                        if let Some(fragment) = self.document.fragments.get(name) {
                            self.selections(type_name, &fragment.node.selection_set.node);
                        }
                    }
                }
                Selection::InlineFragment(fragment) => {
                    self.selections(type_name, &fragment.node.selection_set.node);
                }
            }
        }
    }
}
