//! Puts response keys back in the order the query asked for them.
//!
//! The GraphQL spec orders a result map by `CollectFields()`; async-graphql 7 merges fields as
//! their futures complete (async-graphql issue #612), so a slow backend field would move to
//! the end. One pass over the response, guided by the document, restores the order.

use std::collections::HashSet;

use async_graphql::Value;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Selection, SelectionSet,
};
use indexmap::IndexMap;

/// Reorders `data` to follow the selected operation of `document`.
pub fn restore_field_order(
    data: &mut Value,
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) => ops.values().next(),
    };
    if let Some(operation) = operation {
        reorder(data, &[&operation.node.selection_set.node], document);
    }
}

fn reorder(value: &mut Value, selections: &[&SelectionSet], document: &ExecutableDocument) {
    match value {
        Value::List(items) => {
            for item in items {
                reorder(item, selections, document);
            }
        }
        Value::Object(map) => {
            let mut order: IndexMap<&str, Vec<&SelectionSet>> = IndexMap::new();
            let mut visited = HashSet::new();
            for set in selections {
                collect(set, document, &mut order, &mut visited);
            }
            let mut old = std::mem::take(map);
            for (key, nested) in order {
                if let Some((key, mut child)) = old.shift_remove_entry(key) {
                    if !nested.is_empty() {
                        reorder(&mut child, &nested, document);
                    }
                    map.insert(key, child);
                }
            }
            map.extend(old);
        }
        _ => {}
    }
}

fn collect<'a>(
    set: &'a SelectionSet,
    document: &'a ExecutableDocument,
    order: &mut IndexMap<&'a str, Vec<&'a SelectionSet>>,
    visited: &mut HashSet<&'a str>,
) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                let nested = order
                    .entry(field.node.response_key().node.as_str())
                    .or_default();
                if !field.node.selection_set.node.items.is_empty() {
                    nested.push(&field.node.selection_set.node);
                }
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                if visited.insert(name)
                    && let Some(fragment) = document.fragments.get(name)
                {
                    collect(&fragment.node.selection_set.node, document, order, visited);
                }
            }
            Selection::InlineFragment(fragment) => {
                collect(&fragment.node.selection_set.node, document, order, visited);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    #[test]
    fn follows_the_query_through_fragments_aliases_and_lists() {
        let document =
            parse_query("{ b a: x { ...F } c { z y } } fragment F on T { q ... on T { p } }")
                .unwrap();
        let mut data = Value::from_json(serde_json::json!({
            "c": [{"y": 1, "z": 2}],
            "a": {"p": 1, "q": 2},
            "b": 0,
        }))
        .unwrap();
        restore_field_order(&mut data, &document, None);
        assert_eq!(
            serde_json::to_string(&data).unwrap(),
            r#"{"b":0,"a":{"q":2,"p":1},"c":[{"z":2,"y":1}]}"#
        );
    }
}
