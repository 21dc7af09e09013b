//! Request limits on a parsed document, checked before async-graphql validates it and before
//! any backend call: depth, aliases, root fields, directives, fields once fragments are
//! expanded, list lengths, variables' size, introspection, and an estimate of the cost.
//!
//! The walk is linear in the document's size: every fragment is summarised once and its
//! summary reused wherever it is spread, so a "fragment bomb" (each fragment spreading the
//! previous one twice) costs one visit per fragment, and a cycle is found on the way
//! (BAD_INPUTS rows 14, 16, 18, 23, 27). Counts saturate instead of overflowing.
//!
//! The cost estimate ([`Estimate::cost`]) is what a per-client budget charges: every field
//! costs `field_cost`, a field bound to a backend `backend_cost`, and a list field multiplies
//! what is under it by its expected size (its `first`/`last`/`limit` argument, else the length
//! of a list argument, else `default_list_size`).

use std::collections::HashMap;
use std::io::Write;

use async_graphql::parser::types::{
    BaseType, ExecutableDocument, Field, OperationDefinition, Selection, SelectionSet,
};
use async_graphql::{Pos, ServerError, Value, Variables};

use super::bind::{Bindings, FieldSource};
use super::sdl::{TypeDefKind, TypeSystem, named_type};
use crate::config::LimitsConfig;
use crate::error::ErrorCode;

/// What the limits allow, gathered from `[limits]` and `[server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLimits {
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// `[server] max_depth`: the deepest field.
    pub max_depth: usize,
    /// Whether `__schema` / `__type` may be asked.
    pub introspection: bool,
}

impl RequestLimits {
    /// How deeply selection sets, fragment spreads and inline fragments may nest together:
    /// twice the field depth, so a fragment per level still fits. async-graphql's own
    /// recursion limit is set to the same, so this check always answers first.
    pub fn max_nesting(&self) -> usize {
        self.max_depth.saturating_mul(2).max(8)
    }
}

/// What running an operation is expected to cost, for limits and per-client budgets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    /// The estimated cost: fields, backend calls and list sizes (see the module docs).
    pub cost: u64,
    /// Fields bound to a backend, each list multiplying those under it.
    pub backend_calls: u64,
    /// Fields once every fragment is expanded.
    pub fields: u64,
    /// The deepest field.
    pub depth: usize,
    /// Aliased fields once every fragment is expanded.
    pub aliases: u64,
}

/// Why a request was refused. Messages never state a limit's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Deeper than `[server] max_depth`, or nested deeper than twice that.
    #[error("the query is nested too deeply")]
    TooDeep,
    /// More aliases than `max_aliases`.
    #[error("the query uses too many aliases")]
    TooManyAliases,
    /// More root fields than `max_root_fields`.
    #[error("the operation selects too many root fields")]
    TooManyRootFields,
    /// More directives than `max_directives`.
    #[error("the query uses too many directives")]
    TooManyDirectives,
    /// More fields than `max_fields` once fragments are expanded.
    #[error("the query selects too many fields once its fragments are expanded")]
    TooManyFields,
    /// A fragment spreads itself, directly or through others.
    #[error("fragment `{fragment}` spreads itself")]
    FragmentCycle {
        /// The fragment whose spread closes the cycle.
        fragment: String,
        /// Where that spread is.
        pos: Pos,
    },
    /// A list longer than `max_list_length`.
    #[error("the list in {place} is too long")]
    ListTooLong {
        /// ``variable `$ids` `` or ``argument `ids` of `citizens` ``.
        place: String,
        /// Where, for an argument written in the query.
        pos: Option<Pos>,
    },
    /// Variables larger than `max_variables_bytes`.
    #[error("the variables are too large")]
    VariablesTooLarge,
    /// An estimated cost above `max_cost`.
    #[error("the query is too complex: it would ask too much of the backends")]
    TooComplex,
    /// `__schema` / `__type` while introspection is off.
    #[error("introspection is disabled on this gateway")]
    IntrospectionDisabled,
}

impl LimitError {
    /// The stable `extensions.code`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooDeep => ErrorCode::QueryTooDeep,
            Self::TooManyAliases => ErrorCode::TooManyAliases,
            Self::TooManyRootFields => ErrorCode::TooManyRootFields,
            Self::TooManyDirectives => ErrorCode::TooManyDirectives,
            Self::TooManyFields => ErrorCode::TooManyFields,
            Self::FragmentCycle { .. } => ErrorCode::GraphqlValidationFailed,
            Self::ListTooLong { .. } => ErrorCode::ListTooLong,
            Self::VariablesTooLarge => ErrorCode::VariablesTooLarge,
            Self::TooComplex => ErrorCode::QueryTooComplex,
            Self::IntrospectionDisabled => ErrorCode::IntrospectionDisabled,
        }
    }

    /// The error as a client sees it, with its position when it has one.
    pub fn to_server_error(&self) -> ServerError {
        let pos = match self {
            Self::FragmentCycle { pos, .. } => Some(*pos),
            Self::ListTooLong { pos, .. } => *pos,
            _ => None,
        };
        let message = format!("{}.", crate::error::capitalised(&self.to_string()));
        let mut error = ServerError::new(message, pos);
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", self.code().as_str());
        error
    }
}

/// The shape of one output field, as far as limits care.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldShape {
    type_name: String,
    list: bool,
    backend: bool,
}

/// Output fields by type: their type, whether they are lists, whether a backend serves them.
#[derive(Debug, Clone, Default)]
pub struct Shapes {
    fields: HashMap<String, HashMap<String, FieldShape>>,
    roots: Vec<(async_graphql::parser::types::OperationType, String)>,
}

impl Shapes {
    /// The shapes of a loaded graph.
    pub(crate) fn new(system: &TypeSystem, bindings: &Bindings) -> Self {
        use async_graphql::parser::types::OperationType;
        let mut shapes = Self::default();
        shapes
            .roots
            .push((OperationType::Query, system.query.clone()));
        if let Some(mutation) = &system.mutation {
            shapes
                .roots
                .push((OperationType::Mutation, mutation.clone()));
        }
        if let Some(subscription) = &system.subscription {
            shapes
                .roots
                .push((OperationType::Subscription, subscription.clone()));
        }
        for ty in system.types.values() {
            if let TypeDefKind::Object(fields) = &ty.kind {
                for field in fields.values() {
                    let backend = matches!(
                        bindings.get(&(ty.name.clone(), field.name.clone())),
                        Some(FieldSource::Connect(_))
                    );
                    shapes = shapes.field(
                        &ty.name,
                        &field.name,
                        named_type(&field.ty),
                        matches!(field.ty.base, BaseType::List(_)),
                        backend,
                    );
                }
            }
        }
        shapes
    }

    /// Names the root type of an operation type.
    pub fn root(
        mut self,
        operation: async_graphql::parser::types::OperationType,
        type_name: &str,
    ) -> Self {
        self.roots.retain(|(ty, _)| *ty != operation);
        self.roots.push((operation, type_name.to_string()));
        self
    }

    /// Declares `parent.name` of type `type_name` (a list of them when `list`), served by a
    /// backend when `backend`.
    pub fn field(
        mut self,
        parent: &str,
        name: &str,
        type_name: &str,
        list: bool,
        backend: bool,
    ) -> Self {
        self.fields.entry(parent.to_string()).or_default().insert(
            name.to_string(),
            FieldShape {
                type_name: type_name.to_string(),
                list,
                backend,
            },
        );
        self
    }

    fn get(&self, parent: &str, name: &str) -> Option<&FieldShape> {
        self.fields.get(parent)?.get(name)
    }
}

/// Checks every limit on `document` with `variables` and estimates the operation that
/// `operation_name` selects (every operation and fragment of the document must be within the
/// limits, since async-graphql validates them all).
pub fn check(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
    shapes: &Shapes,
    limits: &RequestLimits,
) -> Result<Estimate, LimitError> {
    let config = &limits.limits;
    check_variables(variables, config)?;
    let mut walk = Walk {
        document,
        shapes,
        variables,
        limits,
        memo: HashMap::new(),
        stack: 0,
    };
    for (name, fragment) in &document.fragments {
        let summary = walk.fragment(name.as_str(), fragment.pos)?;
        walk.within(&summary, false)?;
    }
    let mut selected = Estimate::default();
    for (name, operation) in document.operations.iter() {
        let summary = walk.operation(&operation.node)?;
        walk.within(&summary, true)?;
        let chosen = match (operation_name, name) {
            (Some(wanted), Some(name)) => wanted == name.as_str(),
            (Some(_), None) => false,
            (None, _) => true,
        };
        if chosen && summary.cost >= selected.cost {
            selected = Estimate {
                cost: summary.cost,
                backend_calls: summary.calls,
                fields: summary.fields,
                depth: summary.depth,
                aliases: summary.aliases,
            };
        }
    }
    Ok(selected)
}

/// The variables' size as JSON (stopping once past the limit) and every list in them.
fn check_variables(variables: &Variables, config: &LimitsConfig) -> Result<(), LimitError> {
    struct Budget(usize);
    impl Write for Budget {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 = self
                .0
                .checked_sub(bytes.len())
                .ok_or_else(|| std::io::Error::other("over budget"))?;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    if serde_json::to_writer(Budget(config.max_variables_bytes), &**variables).is_err() {
        return Err(LimitError::VariablesTooLarge);
    }
    for (name, value) in variables.iter() {
        if longest_list(value) > config.max_list_length {
            return Err(LimitError::ListTooLong {
                place: format!("variable `${name}`"),
                pos: None,
            });
        }
    }
    Ok(())
}

/// The length of the longest list anywhere in `value`, without recursion.
fn longest_list(value: &Value) -> usize {
    let mut longest = 0;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::List(items) => {
                longest = longest.max(items.len());
                pending.extend(items);
            }
            Value::Object(fields) => pending.extend(fields.values()),
            _ => {}
        }
    }
    longest
}

/// The longest list written in an argument (variables are checked on their own, so here
/// they stand for nothing).
fn longest_literal(field: &Field) -> Option<(usize, &str, Pos)> {
    let mut found: Option<(usize, &str, Pos)> = None;
    for (name, argument) in &field.arguments {
        let literal = argument
            .node
            .clone()
            .into_const_with(|_| Ok::<_, std::convert::Infallible>(Value::Null));
        let Ok(literal) = literal;
        let len = longest_list(&literal);
        if len > 0 && found.is_none_or(|(longest, _, _)| len > longest) {
            found = Some((len, name.node.as_str(), argument.pos));
        }
    }
    found
}

/// What a selection set holds, fragments expanded; combined bottom-up.
#[derive(Debug, Clone, Copy, Default)]
struct Summary {
    /// The deepest field (a field with no selection is 1).
    depth: usize,
    /// Selection sets, spreads and inline fragments nested, as async-graphql counts them.
    nesting: usize,
    fields: u64,
    aliases: u64,
    directives: u64,
    /// Fields at this level (root fields, for an operation).
    top: u64,
    cost: u64,
    calls: u64,
    introspection: bool,
}

impl Summary {
    fn add(&mut self, other: &Summary) {
        self.depth = self.depth.max(other.depth);
        self.nesting = self.nesting.max(other.nesting);
        self.fields = self.fields.saturating_add(other.fields);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.directives = self.directives.saturating_add(other.directives);
        self.top = self.top.saturating_add(other.top);
        self.cost = self.cost.saturating_add(other.cost);
        self.calls = self.calls.saturating_add(other.calls);
        self.introspection |= other.introspection;
    }
}

enum Memo {
    InProgress,
    Done(Summary),
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    shapes: &'a Shapes,
    variables: &'a Variables,
    limits: &'a RequestLimits,
    memo: HashMap<&'a str, Memo>,
    /// Nesting of the walk itself, bounded so a long chain of fragments cannot exhaust the
    /// stack.
    stack: usize,
}

impl<'a> Walk<'a> {
    fn operation(&mut self, operation: &'a OperationDefinition) -> Result<Summary, LimitError> {
        let root = self
            .shapes
            .roots
            .iter()
            .find(|(ty, _)| *ty == operation.ty)
            .map(|(_, name)| name.as_str());
        let mut summary = self.set(root, &operation.selection_set.node)?;
        summary.directives = summary
            .directives
            .saturating_add(operation.directives.len() as u64);
        Ok(summary)
    }

    /// Whether a summary is within the limits; root fields only count for an operation.
    fn within(&self, summary: &Summary, operation: bool) -> Result<(), LimitError> {
        let config = &self.limits.limits;
        if summary.depth > self.limits.max_depth || summary.nesting > self.limits.max_nesting() {
            return Err(LimitError::TooDeep);
        }
        if summary.aliases > config.max_aliases {
            return Err(LimitError::TooManyAliases);
        }
        if operation && summary.top > config.max_root_fields {
            return Err(LimitError::TooManyRootFields);
        }
        if summary.directives > config.max_directives {
            return Err(LimitError::TooManyDirectives);
        }
        if summary.fields > config.max_fields {
            return Err(LimitError::TooManyFields);
        }
        if summary.introspection && !self.limits.introspection {
            return Err(LimitError::IntrospectionDisabled);
        }
        if summary.cost > config.max_cost {
            return Err(LimitError::TooComplex);
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), LimitError> {
        self.stack += 1;
        if self.stack > self.limits.max_nesting() {
            return Err(LimitError::TooDeep);
        }
        Ok(())
    }

    fn fragment(&mut self, name: &'a str, pos: Pos) -> Result<Summary, LimitError> {
        match self.memo.get(name) {
            Some(Memo::Done(summary)) => return Ok(*summary),
            Some(Memo::InProgress) => {
                return Err(LimitError::FragmentCycle {
                    fragment: name.to_string(),
                    pos,
                });
            }
            None => {}
        }
        // An unknown fragment is left to validation, which names it.
        let Some(fragment) = self.document.fragments.get(name) else {
            return Ok(Summary::default());
        };
        self.memo.insert(name, Memo::InProgress);
        let on = fragment.node.type_condition.node.on.node.as_str();
        let mut summary = self.set(Some(on), &fragment.node.selection_set.node)?;
        summary.directives = summary
            .directives
            .saturating_add(fragment.node.directives.len() as u64);
        self.memo.insert(name, Memo::Done(summary));
        Ok(summary)
    }

    fn set(
        &mut self,
        type_name: Option<&'a str>,
        set: &'a SelectionSet,
    ) -> Result<Summary, LimitError> {
        let mut total = Summary::default();
        for selection in &set.items {
            let summary = match &selection.node {
                Selection::Field(field) => self.field(type_name, &field.node)?,
                Selection::FragmentSpread(spread) => {
                    self.enter()?;
                    let mut summary =
                        self.fragment(spread.node.fragment_name.node.as_str(), spread.pos)?;
                    self.stack -= 1;
                    summary.nesting += 1;
                    summary.directives = summary
                        .directives
                        .saturating_add(spread.node.directives.len() as u64);
                    summary
                }
                Selection::InlineFragment(inline) => {
                    let on = inline
                        .node
                        .type_condition
                        .as_ref()
                        .map(|c| c.node.on.node.as_str())
                        .or(type_name);
                    self.enter()?;
                    let mut summary = self.set(on, &inline.node.selection_set.node)?;
                    self.stack -= 1;
                    summary.nesting += 1;
                    summary.directives = summary
                        .directives
                        .saturating_add(inline.node.directives.len() as u64);
                    summary
                }
            };
            total.add(&summary);
        }
        Ok(total)
    }

    fn field(
        &mut self,
        type_name: Option<&'a str>,
        field: &'a Field,
    ) -> Result<Summary, LimitError> {
        let config = &self.limits.limits;
        let name = field.name.node.as_str();
        if let Some((len, argument, pos)) = longest_literal(field)
            && len > config.max_list_length
        {
            return Err(LimitError::ListTooLong {
                place: format!("argument `{argument}` of `{name}`"),
                pos: Some(pos),
            });
        }
        let shape = type_name.and_then(|t| self.shapes.get(t, name));
        let nested = !field.selection_set.node.items.is_empty();
        let child = if nested {
            self.enter()?;
            let child = self.set(
                shape.map(|s| s.type_name.as_str()),
                &field.selection_set.node,
            )?;
            self.stack -= 1;
            child
        } else {
            Summary::default()
        };
        let backend = shape.is_some_and(|s| s.backend);
        let size = if shape.is_some_and(|s| s.list) {
            self.list_size(field)
        } else {
            1
        };
        let own = if backend {
            config.backend_cost
        } else {
            config.field_cost
        };
        Ok(Summary {
            depth: child.depth + 1,
            nesting: child.nesting + usize::from(nested),
            fields: child.fields.saturating_add(1),
            aliases: child
                .aliases
                .saturating_add(u64::from(field.alias.is_some())),
            directives: child
                .directives
                .saturating_add(field.directives.len() as u64),
            top: 1,
            cost: own.saturating_add(size.saturating_mul(child.cost)),
            calls: u64::from(backend).saturating_add(size.saturating_mul(child.calls)),
            introspection: child.introspection || name == "__schema" || name == "__type",
        })
    }

    /// How many items a list field is expected to hold.
    fn list_size(&self, field: &Field) -> u64 {
        let variables = self.variables;
        let arguments: Vec<(&str, Value)> = field
            .arguments
            .iter()
            .map(|(name, value)| {
                let value = value.node.clone().into_const_with(|variable| {
                    Ok::<_, std::convert::Infallible>(
                        variables.get(&variable).cloned().unwrap_or(Value::Null),
                    )
                });
                let Ok(value) = value;
                (name.node.as_str(), value)
            })
            .collect();
        for wanted in ["first", "last", "limit"] {
            if let Some((_, Value::Number(number))) =
                arguments.iter().find(|(name, _)| *name == wanted)
            {
                return number.as_u64().unwrap_or(0);
            }
        }
        arguments
            .iter()
            .find_map(|(_, value)| match value {
                Value::List(items) => Some(items.len() as u64),
                _ => None,
            })
            .unwrap_or(self.limits.limits.default_list_size)
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;
    use async_graphql::parser::types::OperationType;

    use super::*;

    /// `Query.citizen` (a backend), `Query.citizens(ids)` (a backend list), `Citizen.name`,
    /// `Citizen.taxAccount` (a backend), `Citizen.household` (a list, cyclic).
    fn shapes() -> Shapes {
        Shapes::default()
            .root(OperationType::Query, "Query")
            .field("Query", "citizen", "Citizen", false, true)
            .field("Query", "citizens", "Citizen", true, true)
            .field("Citizen", "name", "String", false, false)
            .field("Citizen", "taxAccount", "TaxAccount", false, true)
            .field("Citizen", "household", "Citizen", true, false)
            .field("TaxAccount", "balance", "Money", false, false)
    }

    fn limits() -> RequestLimits {
        RequestLimits {
            limits: LimitsConfig::default(),
            max_depth: 32,
            introspection: true,
        }
    }

    fn run(query: &str, variables: serde_json::Value) -> Result<Estimate, LimitError> {
        run_with(query, variables, &limits())
    }

    fn run_with(
        query: &str,
        variables: serde_json::Value,
        limits: &RequestLimits,
    ) -> Result<Estimate, LimitError> {
        let document = parse_query(query).expect("the test query parses");
        check(
            &document,
            None,
            &Variables::from_json(variables),
            &shapes(),
            limits,
        )
    }

    #[test]
    fn estimates_backend_calls_and_list_sizes() {
        let estimate = run(
            r#"{ citizen(id: "C1") { name taxAccount { balance } } }"#,
            serde_json::Value::Null,
        )
        .expect("within limits");
        assert_eq!(
            estimate,
            Estimate {
                cost: 10 + 1 + 10 + 1,
                backend_calls: 2,
                fields: 4,
                depth: 3,
                aliases: 0,
            }
        );
        // A list multiplies what is under it by the length of its list argument.
        let estimate = run(
            "query($ids: [ID!]!) { citizens(ids: $ids) { taxAccount { balance } } }",
            serde_json::json!({"ids": ["a", "b", "c"]}),
        )
        .expect("within limits");
        assert_eq!(estimate.cost, 10 + 3 * 11);
        assert_eq!(estimate.backend_calls, 1 + 3);
        // Without one, by the default list size.
        let estimate = run(
            r#"{ citizen(id: "C1") { household { name } } }"#,
            serde_json::Value::Null,
        )
        .expect("within limits");
        assert_eq!(estimate.cost, 10 + 1 + 10);
    }

    #[test]
    fn fifty_aliases_of_an_expensive_list_are_too_complex() {
        let ids: Vec<String> = (0..100).map(|i| format!("C{i}")).collect();
        let one = "query($ids: [ID!]!) { citizens(ids: $ids) { name taxAccount { balance } } }";
        assert!(run(one, serde_json::json!({ "ids": ids })).is_ok());
        let many: String = (0..50)
            .map(|i| format!("a{i}: citizens(ids: $ids) {{ name taxAccount {{ balance }} }} "))
            .collect();
        let query = format!("query($ids: [ID!]!) {{ {many} }}");
        assert_eq!(
            run(&query, serde_json::json!({ "ids": ids })),
            Err(LimitError::TooComplex)
        );
    }

    #[test]
    fn depth_counts_through_fragments() {
        let deep = format!(
            "{{ citizen(id: \"C1\") {{ {}name{} }} }}",
            "household { ".repeat(40),
            " }".repeat(40)
        );
        assert_eq!(
            run(&deep, serde_json::Value::Null),
            Err(LimitError::TooDeep)
        );
        let through_fragments = "{ citizen(id: \"C1\") { ...A } }
            fragment A on Citizen { household { ...B } }
            fragment B on Citizen { household { name } }";
        let estimate = run(through_fragments, serde_json::Value::Null).expect("shallow");
        assert_eq!(estimate.depth, 4);
    }

    #[test]
    fn aliases_root_fields_directives_and_fields_are_counted_after_expansion() {
        let aliases: String = (0..101).map(|i| format!("a{i}: __typename ")).collect();
        assert_eq!(
            run(&format!("{{ {aliases} }}"), serde_json::Value::Null),
            Err(LimitError::TooManyAliases)
        );
        // Ten aliases in a fragment spread eleven times under different fields.
        let spreads: String = (0..11)
            .map(|i| format!("c{i}: citizen(id: \"x\") {{ ...F }} "))
            .collect();
        let fragment: String = (0..10).map(|i| format!("n{i}: name ")).collect();
        let query = format!("{{ {spreads} }} fragment F on Citizen {{ {fragment} }}");
        assert_eq!(
            run(&query, serde_json::Value::Null),
            Err(LimitError::TooManyAliases)
        );
        let roots: String = (0..65).map(|i| format!("r{i}: __typename ")).collect();
        let mut few_aliases = limits();
        few_aliases.limits.max_aliases = 1_000;
        assert_eq!(
            run_with(
                &format!("{{ {roots} }}"),
                serde_json::Value::Null,
                &few_aliases
            ),
            Err(LimitError::TooManyRootFields)
        );
        let directives = "__typename @include(if: true) ".repeat(51);
        assert_eq!(
            run(&format!("{{ {directives} }}"), serde_json::Value::Null),
            Err(LimitError::TooManyDirectives)
        );
    }

    #[test]
    fn a_fragment_bomb_is_refused_in_one_visit_per_fragment() {
        // F0 holds one field; each F(n) spreads F(n-1) twice: F29 expands to 2^29 fields.
        let mut query = String::from("{ citizen(id: \"x\") { ...F29 } }\n");
        query.push_str("fragment F0 on Citizen { name }\n");
        for n in 1..30 {
            query.push_str(&format!(
                "fragment F{n} on Citizen {{ ...F{p} household {{ ...F{p} }} }}\n",
                p = n - 1
            ));
        }
        let mut deep_enough = limits();
        deep_enough.max_depth = 64;
        // Fragments summarised before the operation are visited in the document's map order,
        // so the first one past a limit may be past the field count or the cost first; both
        // refuse the bomb before it is expanded.
        let outcome = run_with(&query, serde_json::Value::Null, &deep_enough);
        assert!(
            matches!(
                outcome,
                Err(LimitError::TooManyFields | LimitError::TooComplex)
            ),
            "{outcome:?}"
        );
    }

    #[test]
    fn circular_fragments_are_refused() {
        let query = "{ citizen(id: \"x\") { ...A } }
            fragment A on Citizen { name ...B }
            fragment B on Citizen { household { ...A } }";
        let error = run(query, serde_json::Value::Null).expect_err("a cycle");
        assert!(
            matches!(error, LimitError::FragmentCycle { .. }),
            "{error:?}"
        );
        assert_eq!(error.code(), ErrorCode::GraphqlValidationFailed);
        // A fragment spreading itself, even unused, is a cycle too.
        let unused = "{ __typename } fragment A on Citizen { ...A }";
        assert!(matches!(
            run(unused, serde_json::Value::Null),
            Err(LimitError::FragmentCycle { .. })
        ));
    }

    #[test]
    fn long_lists_and_large_variables_are_refused() {
        let ids: Vec<u32> = (0..101).collect();
        let error = run(
            "query($ids: [ID!]!) { citizens(ids: $ids) { name } }",
            serde_json::json!({ "ids": ids }),
        )
        .expect_err("too long");
        assert_eq!(error.code(), ErrorCode::ListTooLong);
        assert!(error.to_string().contains("`$ids`"), "{error}");
        let nested = serde_json::json!({ "filter": { "any": [{ "ids": ids }] } });
        assert!(matches!(
            run("query($filter: F) { __typename }", nested),
            Err(LimitError::ListTooLong { .. })
        ));
        let literal = format!(
            "{{ citizens(ids: [{}]) {{ name }} }}",
            vec!["\"a\""; 101].join(",")
        );
        let error = run(&literal, serde_json::Value::Null).expect_err("too long");
        assert!(error.to_string().contains("argument `ids` of `citizens`"));
        let big = "x".repeat(70 * 1024);
        assert_eq!(
            run(
                "query($s: String) { __typename }",
                serde_json::json!({ "s": big })
            ),
            Err(LimitError::VariablesTooLarge)
        );
        let million: Vec<u8> = vec![1; 1_000_000];
        assert_eq!(
            run(
                "query($ids: [ID!]!) { citizens(ids: $ids) { name } }",
                serde_json::json!({ "ids": million })
            ),
            Err(LimitError::VariablesTooLarge)
        );
    }

    #[test]
    fn introspection_is_refused_when_off_and_typename_is_not() {
        let mut off = limits();
        off.introspection = false;
        for query in [
            "{ __schema { types { name } } }",
            "{ __type(name: \"Citizen\") { name } }",
            "{ ...I } fragment I on Query { __schema { queryType { name } } }",
        ] {
            assert_eq!(
                run_with(query, serde_json::Value::Null, &off),
                Err(LimitError::IntrospectionDisabled),
                "{query}"
            );
        }
        assert!(run_with("{ __typename }", serde_json::Value::Null, &off).is_ok());
        assert!(run("{ __schema { types { name } } }", serde_json::Value::Null).is_ok());
    }

    #[test]
    fn messages_never_state_a_limit() {
        for error in [
            LimitError::TooDeep,
            LimitError::TooManyAliases,
            LimitError::TooManyRootFields,
            LimitError::TooManyDirectives,
            LimitError::TooManyFields,
            LimitError::VariablesTooLarge,
            LimitError::TooComplex,
            LimitError::IntrospectionDisabled,
        ] {
            let message = error.to_server_error().message;
            assert!(!message.chars().any(|c| c.is_ascii_digit()), "{message}");
        }
    }

    #[test]
    fn a_long_fragment_chain_is_refused_on_a_small_stack() {
        let mut query = String::from("{ citizen(id: \"x\") { ...F0 } }\n");
        for n in 0..5_000 {
            query.push_str(&format!("fragment F{n} on Citizen {{ ...F{} }}\n", n + 1));
        }
        query.push_str("fragment F5000 on Citizen { name }\n");
        let outcome = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || run(&query, serde_json::Value::Null))
            .expect("spawn a small-stack thread")
            .join()
            .expect("no stack overflow");
        assert_eq!(outcome, Err(LimitError::TooDeep));
    }
}
