//! Completes an executed response the way the GraphQL spec says it must look.
//!
//! async-graphql 7's dynamic executor has two gaps this pass closes:
//! - it merges fields as their futures finish, so keys come back in completion order
//!   (async-graphql issue #612); the spec orders them by the query;
//! - a field whose resolver fails is left out of its object instead of being `null`, and a
//!   failed non-null field does not make its parent `null` (no null propagation).
//!
//! Resolvers therefore record their own error (with its path) and return `null`; a non-null
//! field returns [`PROPAGATE_NULL`] instead, which this pass removes after turning the nearest
//! nullable ancestor into `null`. One walk over the response, guided by the document and the
//! SDL's types, does ordering, missing fields and propagation together. Selections left out by
//! `@skip(if: true)` / `@include(if: false)` are left out here too, not filled in as `null`.

use std::collections::HashMap;

use async_graphql::Value;
use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
    Type as SdlType,
};
use indexmap::IndexMap;

use super::sdl::{TypeDefKind, TypeSystem, named_type};

/// The message of the error a failed non-null field returns so the executor drops it; it never
/// reaches a client.
pub(crate) const PROPAGATE_NULL: &str = "\u{0}civicgraph: propagate null";

/// Output field types by object type, for the walk.
#[derive(Debug, Default)]
pub(crate) struct TypeIndex {
    objects: HashMap<String, HashMap<String, SdlType>>,
    query: String,
    mutation: Option<String>,
    subscription: Option<String>,
}

impl TypeIndex {
    pub(crate) fn new(system: &TypeSystem) -> Self {
        let objects = system
            .types
            .values()
            .filter_map(|ty| match &ty.kind {
                TypeDefKind::Object(fields) => Some((
                    ty.name.clone(),
                    fields
                        .values()
                        .map(|f| (f.name.clone(), f.ty.clone()))
                        .collect(),
                )),
                _ => None,
            })
            .collect();
        Self {
            objects,
            query: system.query.clone(),
            mutation: system.mutation.clone(),
            subscription: system.subscription.clone(),
        }
    }

    /// The root object type of an operation type (`None` when the schema has none).
    pub(crate) fn root(&self, ty: OperationType) -> Option<&str> {
        match ty {
            OperationType::Query => Some(&self.query),
            OperationType::Mutation => self.mutation.as_deref(),
            OperationType::Subscription => self.subscription.as_deref(),
        }
    }

    /// The declared type of `type_name.field`, if both exist.
    pub(crate) fn field_type(&self, type_name: &str, field: &str) -> Option<&SdlType> {
        self.objects.get(type_name)?.get(field)
    }

    /// Completes `response` in place for the operation that ran.
    pub(crate) fn complete(
        &self,
        response: &mut async_graphql::Response,
        document: &ExecutableDocument,
        operation_name: Option<&str>,
        variables: &async_graphql::Variables,
    ) {
        response.errors.retain(|e| e.message != PROPAGATE_NULL);
        let Some(operation) = selected_operation(document, operation_name) else {
            return;
        };
        let Some(root) = self.root(operation.node.ty) else {
            return;
        };
        if response.data == Value::Null {
            response.data = Value::Object(IndexMap::new());
        }
        let defaults = operation
            .node
            .variable_definitions
            .iter()
            .filter_map(|d| {
                let default = d.node.default_value.as_ref()?;
                Some((d.node.name.node.clone(), default.node.clone()))
            })
            .collect();
        let walk = Walk {
            index: self,
            document,
            variables,
            defaults,
        };
        let selections = [&operation.node.selection_set.node];
        if let Value::Object(map) = &mut response.data
            && walk.object(map, root, &selections).is_err()
        {
            response.data = Value::Null;
        }
    }
}

/// The operation a request runs: the named one, else the document's first.
pub(crate) fn selected_operation<'d>(
    document: &'d ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'d async_graphql::Positioned<async_graphql::parser::types::OperationDefinition>> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) => ops.values().next(),
    }
}

/// A non-null position received null: the nearest nullable ancestor must become null.
struct NullPropagates;

struct Walk<'a> {
    index: &'a TypeIndex,
    document: &'a ExecutableDocument,
    variables: &'a async_graphql::Variables,
    /// The operation's variable defaults, for variables the request left out.
    defaults: HashMap<async_graphql::Name, Value>,
}

/// The fields one selection asks of one object type, in response order; computed once per
/// selection and applied to every object of a list.
struct Plan<'a> {
    fields: Vec<PlannedField<'a>>,
}

struct PlannedField<'a> {
    key: &'a str,
    name: &'a str,
    /// `None` for `__typename` and introspection fields, which the executor completes itself.
    ty: Option<&'a SdlType>,
    nested: Vec<&'a SelectionSet>,
}

impl<'a> Walk<'a> {
    fn object(
        &self,
        map: &mut IndexMap<async_graphql::Name, Value>,
        type_name: &str,
        selections: &[&'a SelectionSet],
    ) -> Result<(), NullPropagates> {
        let plan = self.plan(type_name, selections);
        self.apply(map, &plan)
    }

    fn plan(&self, type_name: &str, selections: &[&'a SelectionSet]) -> Plan<'a> {
        let mut fields: Vec<PlannedField<'a>> = Vec::new();
        let mut visited = Vec::new();
        for set in selections {
            self.collect(set, &mut fields, &mut visited);
        }
        if let Some(types) = self.index.objects.get(type_name) {
            for field in &mut fields {
                field.ty = types.get(field.name);
            }
        }
        Plan { fields }
    }

    fn apply(
        &self,
        map: &mut IndexMap<async_graphql::Name, Value>,
        plan: &Plan<'a>,
    ) -> Result<(), NullPropagates> {
        let mut old = std::mem::take(map);
        map.reserve(plan.fields.len());
        for field in &plan.fields {
            let entry = old.swap_remove_entry(field.key);
            let Some(ty) = field.ty else {
                if let Some((key, value)) = entry {
                    map.insert(key, value);
                }
                continue;
            };
            let (key, mut value) =
                entry.unwrap_or_else(|| (async_graphql::Name::new(field.key), Value::Null));
            self.value(&mut value, ty, &field.nested)?;
            map.insert(key, value);
        }
        map.extend(old);
        Ok(())
    }

    /// Completes one value of type `ty`; an error means the value itself must be null but
    /// cannot be.
    fn value(
        &self,
        value: &mut Value,
        ty: &SdlType,
        nested: &[&'a SelectionSet],
    ) -> Result<(), NullPropagates> {
        let plan = (!nested.is_empty()).then(|| self.plan(named_type(ty), nested));
        self.complete(value, ty, plan.as_ref())
    }

    fn complete(
        &self,
        value: &mut Value,
        ty: &SdlType,
        plan: Option<&Plan<'a>>,
    ) -> Result<(), NullPropagates> {
        let inner_failed = match (&ty.base, &mut *value) {
            (_, Value::Null) => false,
            (BaseType::List(item), Value::List(items)) => items
                .iter_mut()
                .any(|i| self.complete(i, item, plan).is_err()),
            (BaseType::Named(_), Value::Object(map)) => {
                plan.is_some_and(|plan| self.apply(map, plan).is_err())
            }
            _ => false,
        };
        if inner_failed {
            *value = Value::Null;
        }
        if *value == Value::Null && !ty.nullable {
            return Err(NullPropagates);
        }
        Ok(())
    }

    fn collect(
        &self,
        set: &'a SelectionSet,
        fields: &mut Vec<PlannedField<'a>>,
        visited: &mut Vec<&'a str>,
    ) {
        for selection in &set.items {
            let directives = match &selection.node {
                Selection::Field(field) => &field.node.directives,
                Selection::FragmentSpread(spread) => &spread.node.directives,
                Selection::InlineFragment(fragment) => &fragment.node.directives,
            };
            if !self.included(directives) {
                continue;
            }
            match &selection.node {
                Selection::Field(field) => {
                    let key = field.node.response_key().node.as_str();
                    let index = match fields.iter().position(|f| f.key == key) {
                        Some(index) => index,
                        None => {
                            fields.push(PlannedField {
                                key,
                                name: field.node.name.node.as_str(),
                                ty: None,
                                nested: Vec::new(),
                            });
                            fields.len() - 1
                        }
                    };
                    let planned = &mut fields[index];
                    if !field.node.selection_set.node.items.is_empty() {
                        planned.nested.push(&field.node.selection_set.node);
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if !visited.contains(&name) {
                        visited.push(name);
                        if let Some(fragment) = self.document.fragments.get(name) {
                            self.collect(&fragment.node.selection_set.node, fields, visited);
                        }
                    }
                }
                Selection::InlineFragment(fragment) => {
                    self.collect(&fragment.node.selection_set.node, fields, visited);
                }
            }
        }
    }

    /// Whether `@skip` / `@include` keep a selection (the executor evaluated them the same way,
    /// after validation made sure `if` is a Boolean).
    fn included(
        &self,
        directives: &[async_graphql::Positioned<async_graphql::parser::types::Directive>],
    ) -> bool {
        directives.iter().all(|directive| {
            let condition = directive.node.get_argument("if").map(|value| {
                let resolved = value.node.clone().into_const_with(|name| {
                    self.variables
                        .get(&name)
                        .or_else(|| self.defaults.get(&name))
                        .cloned()
                        .ok_or(())
                });
                matches!(resolved, Ok(Value::Boolean(true)))
            });
            !matches!(
                (directive.node.name.node.as_str(), condition),
                ("skip", Some(true)) | ("include", Some(false))
            )
        })
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceFile;
    use async_graphql::parser::parse_query;

    fn index() -> TypeIndex {
        let sdl = "type Query { a: A b: Int c: [C!] }\n\
                   type A { x: Int! y: Int }\n\
                   type C { z: Int! }";
        let (system, problems) =
            super::super::sdl::load_type_system(&[SourceFile::new("t.graphql", sdl.into())]);
        assert!(problems.is_empty(), "{problems:?}");
        TypeIndex::new(&system)
    }

    fn complete(query: &str, data: serde_json::Value) -> String {
        let document = parse_query(query).unwrap();
        let mut response = async_graphql::Response::new(Value::from_json(data).unwrap());
        index().complete(&mut response, &document, None, &Default::default());
        serde_json::to_string(&response.data).unwrap()
    }

    #[test]
    fn skipped_and_excluded_selections_stay_out() {
        // The executor left `y`, `b` and the fragment's `x` out; none may come back as null,
        // and a skipped non-null field must not null its parent.
        let out = complete(
            "query($no: Boolean = false) { a { x @skip(if: true) y @include(if: $no) } b @include(if: false) c { ... on C @skip(if: true) { z } } }",
            serde_json::json!({"a": {}, "c": [{}]}),
        );
        assert_eq!(out, r#"{"a":{},"c":[{}]}"#);
        let document = parse_query("query($yes: Boolean!) { b @skip(if: $yes) a { y } }").unwrap();
        let mut response = async_graphql::Response::new(
            Value::from_json(serde_json::json!({"a": {"y": 1}})).unwrap(),
        );
        let variables = async_graphql::Variables::from_json(serde_json::json!({"yes": true}));
        index().complete(&mut response, &document, None, &variables);
        assert_eq!(
            serde_json::to_string(&response.data).unwrap(),
            r#"{"a":{"y":1}}"#
        );
    }

    #[test]
    fn keys_follow_the_query_through_fragments_and_aliases() {
        let out = complete(
            "{ b al: a { ...F } c { z } } fragment F on A { y ... on A { x } }",
            serde_json::json!({"c": [{"z": 2}], "al": {"x": 1, "y": 2}, "b": 0}),
        );
        assert_eq!(out, r#"{"b":0,"al":{"y":2,"x":1},"c":[{"z":2}]}"#);
    }

    #[test]
    fn a_missing_nullable_field_becomes_null() {
        let out = complete("{ a { y x } b }", serde_json::json!({"a": {"x": 1}}));
        assert_eq!(out, r#"{"a":{"y":null,"x":1},"b":null}"#);
    }

    #[test]
    fn a_missing_non_null_field_nulls_its_nearest_nullable_ancestor() {
        let out = complete(
            "{ a { x y } b }",
            serde_json::json!({"a": {"y": 1}, "b": 3}),
        );
        assert_eq!(out, r#"{"a":null,"b":3}"#);
        let out = complete("{ c { z } }", serde_json::json!({"c": [{"z": 1}, {}]}));
        assert_eq!(out, r#"{"c":null}"#, "a non-null list item nulls the list");
    }

    #[test]
    fn propagation_markers_never_reach_the_client() {
        let document = parse_query("{ b }").unwrap();
        let mut response = async_graphql::Response::new(Value::Null);
        response
            .errors
            .push(async_graphql::ServerError::new(PROPAGATE_NULL, None));
        index().complete(&mut response, &document, None, &Default::default());
        assert!(response.errors.is_empty());
        assert_eq!(
            serde_json::to_string(&response.data).unwrap(),
            r#"{"b":null}"#
        );
    }
}
