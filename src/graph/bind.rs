//! Field → source: every field of every object type is bound either to a backend operation
//! (`@connect`) or to a value in its parent's backend data. Problems are collected with the
//! location of the directive and of the operation in its connector file.

use std::collections::{BTreeMap, HashSet};

use super::directives::{
    ArgSource, ConnectDirective, JsonPath, PolicyDirectives, field_directives,
};
use super::sdl::{FieldDef, TypeDefKind, TypeSystem, named_type};
use crate::config::{Diagnostic, PageConfig};
use crate::connectors::{ConnectorSpec, OperationSpec};

/// Where a field's value comes from.
#[derive(Debug, Clone)]
pub(crate) enum FieldSource {
    /// A backend call.
    Connect(ConnectBinding),
    /// A value in the parent object's backend data.
    Parent(JsonPath),
}

/// A field bound to a backend operation, with a source for every placeholder.
#[derive(Debug, Clone)]
pub(crate) struct ConnectBinding {
    pub(crate) connector: String,
    pub(crate) operation: String,
    pub(crate) args: Vec<(String, ArgSource)>,
    pub(crate) page: Option<PageConfig>,
}

/// Every field's source, keyed by (type, field).
pub(crate) type Bindings = BTreeMap<(String, String), FieldSource>;

/// The policy directives of every field that has any, keyed like [`Bindings`]; read here so
/// each directive is parsed (and each misuse reported) once.
pub(crate) type PolicyDirectiveMap = BTreeMap<(String, String), PolicyDirectives>;

/// Binds every field, collecting every problem.
pub(crate) fn bind(
    system: &TypeSystem,
    connectors: &BTreeMap<String, ConnectorSpec>,
    broken_connectors: &HashSet<String>,
    policies: &mut PolicyDirectiveMap,
    diagnostics: &mut Vec<Diagnostic>,
) -> Bindings {
    let mut bindings = Bindings::new();
    let roots: Vec<&str> = std::iter::once(system.query.as_str())
        .chain(system.mutation.as_deref())
        .chain(system.subscription.as_deref())
        .collect();
    for ty in system.types.values() {
        let TypeDefKind::Object(fields) = &ty.kind else {
            continue;
        };
        let is_root = roots.contains(&ty.name.as_str());
        for field in fields.values() {
            let mut directives = field_directives(field, diagnostics);
            if !directives.policy.is_empty() {
                policies.insert(
                    (ty.name.clone(), field.name.clone()),
                    std::mem::take(&mut directives.policy),
                );
            }
            let source = match directives.connect {
                Some(connect) => {
                    if broken_connectors.contains(&connect.connector) {
                        continue;
                    }
                    match bind_connect(
                        system, &ty.name, is_root, fields, field, &connect, connectors,
                    ) {
                        Ok(binding) => FieldSource::Connect(binding),
                        Err(mut problems) => {
                            diagnostics.append(&mut problems);
                            continue;
                        }
                    }
                }
                None if is_root => {
                    diagnostics.push(Diagnostic::at(
                        field.location.clone(),
                        format!(
                            "nothing can resolve `{}.{}`: a root field needs `@connect(connector: …, operation: …)`",
                            ty.name, field.name
                        ),
                    ));
                    continue;
                }
                None => {
                    if let Some(argument) = field.arguments.first() {
                        diagnostics.push(Diagnostic::at(
                            argument.location.clone(),
                            format!(
                                "argument `{}` of `{}.{}` is never used: only a field with `@connect` passes arguments to a backend",
                                argument.name, ty.name, field.name
                            ),
                        ));
                    }
                    FieldSource::Parent(
                        directives
                            .map_from
                            .map_or_else(|| JsonPath::field_name(&field.name), |(path, _)| path),
                    )
                }
            };
            bindings.insert((ty.name.clone(), field.name.clone()), source);
        }
    }
    bindings
}

fn bind_connect(
    system: &TypeSystem,
    type_name: &str,
    is_root: bool,
    siblings: &indexmap::IndexMap<String, FieldDef>,
    field: &FieldDef,
    connect: &ConnectDirective,
    connectors: &BTreeMap<String, ConnectorSpec>,
) -> Result<ConnectBinding, Vec<Diagnostic>> {
    let at = |message: String| vec![Diagnostic::at(connect.location.clone(), message)];
    let Some(connector) = connectors.get(&connect.connector) else {
        let known: Vec<&str> = connectors.keys().map(String::as_str).collect();
        return Err(at(format!(
            "unknown connector `{}`; the connectors are {}",
            connect.connector,
            if known.is_empty() {
                "none (add a file to connectors/)".to_string()
            } else {
                crate::config::quoted_list(&known)
            }
        )));
    };
    let Some(operation) = connector.operations.get(&connect.operation) else {
        let known: Vec<&str> = connector.operations.keys().map(String::as_str).collect();
        return Err(at(format!(
            "connector `{}` ({}) has no operation `{}`; it has {}",
            connect.connector,
            connector.location.path.display(),
            connect.operation,
            crate::config::quoted_list(&known)
        )));
    };

    let mut problems = Vec::new();
    let placeholders: Vec<&str> = operation.placeholders().collect();
    for (name, source) in &connect.args {
        if !placeholders.contains(&name.as_str()) {
            problems.push(Diagnostic::at(
                connect.location.clone(),
                format!(
                    "`args.{name}`: operation `{}.{}` ({}) has no placeholder `{{{name}}}`; its placeholders are {}",
                    connect.connector,
                    connect.operation,
                    operation.location,
                    placeholder_list(operation)
                ),
            ));
        }
        match source {
            ArgSource::Argument(argument)
                if !field.arguments.iter().any(|a| &a.name == argument) =>
            {
                problems.push(Diagnostic::at(
                    connect.location.clone(),
                    format!("`args.{name}` refers to `$args.{argument}`, but `{type_name}.{}` has no argument `{argument}`", field.name),
                ));
            }
            ArgSource::Parent(_) if is_root => problems.push(Diagnostic::at(
                connect.location.clone(),
                format!("`args.{name}` refers to `$parent`, but a root field has no parent object"),
            )),
            _ => {}
        }
    }

    let mut args = connect.args.clone();
    for placeholder in operation.placeholders() {
        if args.iter().any(|(name, _)| name == placeholder) {
            continue;
        }
        if field.arguments.iter().any(|a| a.name == placeholder) {
            args.push((
                placeholder.to_string(),
                ArgSource::Argument(placeholder.to_string()),
            ));
            continue;
        }
        if let Some(kind) = connector.identifier
            && kind.as_str() == placeholder
        {
            match citizen_id_path(is_root, siblings) {
                Some(citizen) => {
                    args.push((
                        placeholder.to_string(),
                        ArgSource::Crosswalk { kind, citizen },
                    ));
                }
                None => problems.push(Diagnostic::at(
                    connect.location.clone(),
                    format!(
                        "connector `{}` needs the citizen's `{kind}` from the identity crosswalk, which is found by the citizen's id; `{type_name}` has no field `id`{}. Map it explicitly with `args: {{{placeholder}: \"$args.<name>\"}}`",
                        connect.connector,
                        if is_root { " (it is a root type)" } else { "" },
                    ),
                )),
            }
            continue;
        }
        let sibling = (!is_root).then(|| siblings.get(placeholder)).flatten();
        if let Some(sibling) = sibling
            && !sibling
                .directives
                .iter()
                .any(|d| d.node.name.node == "connect")
        {
            let mut ignored = Vec::new();
            let path = field_directives(sibling, &mut ignored)
                .map_from
                .map_or_else(|| JsonPath::field_name(&sibling.name), |(path, _)| path);
            args.push((placeholder.to_string(), ArgSource::Parent(path)));
            continue;
        }
        if operation.optional.iter().any(|o| o == placeholder) {
            continue;
        }
        let remedy = if is_root {
            format!("or map it from an argument with `args: {{{placeholder}: \"$args.<name>\"}}`")
        } else {
            format!(
                "give `{type_name}` a field `{placeholder}`, or map it with `args: {{{placeholder}: \"$parent.{placeholder}\"}}`"
            )
        };
        problems.push(Diagnostic::at(
            connect.location.clone(),
            format!(
                "placeholder `{{{placeholder}}}` of operation `{}.{}` ({}) has no source: give `{}.{}` an argument `{placeholder}`, {remedy}",
                connect.connector, connect.operation, operation.location, type_name, field.name,
            ),
        ));
    }

    if operation.page.is_some() && !is_connection(system, named_type(&field.ty)) {
        problems.push(Diagnostic::at(
            connect.location.clone(),
            format!(
                "operation `{}.{}` returns pages, so `{}.{}` must return a connection type with `edges {{ node cursor }}` and `pageInfo`",
                connect.connector, connect.operation, type_name, field.name
            ),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ConnectBinding {
        connector: connect.connector.clone(),
        operation: connect.operation.clone(),
        args,
        page: operation.page.clone(),
    })
}

/// Where a parent object keeps its canonical citizen id: its `id` field (with that field's
/// `@map`), when the field comes from the parent's data rather than a backend call.
pub(crate) fn citizen_id_path(
    is_root: bool,
    siblings: &indexmap::IndexMap<String, FieldDef>,
) -> Option<JsonPath> {
    if is_root {
        return None;
    }
    let id = siblings.get("id")?;
    if id.directives.iter().any(|d| d.node.name.node == "connect") {
        return None;
    }
    let mut ignored = Vec::new();
    Some(
        field_directives(id, &mut ignored)
            .map_from
            .map_or_else(|| JsonPath::field_name("id"), |(path, _)| path),
    )
}

fn placeholder_list(operation: &OperationSpec) -> String {
    let names: Vec<&str> = operation.placeholders().collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        crate::config::quoted_list(&names)
    }
}

/// A Relay-style connection: `edges` of objects with `node`, and `pageInfo`.
fn is_connection(system: &TypeSystem, name: &str) -> bool {
    let object = |name: &str| match system.types.get(name).map(|t| &t.kind) {
        Some(TypeDefKind::Object(fields)) => Some(fields),
        _ => None,
    };
    let Some(fields) = object(name) else {
        return false;
    };
    let edges_have_node = fields
        .get("edges")
        .and_then(|edges| object(named_type(&edges.ty)))
        .is_some_and(|edge| edge.contains_key("node"));
    edges_have_node && fields.contains_key("pageInfo")
}
