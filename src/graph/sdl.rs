//! `schema/*.graphql` → one merged type system, with a location for everything.
//!
//! Files may split the graph freely: a type is defined once and can be extended (`extend type`)
//! in any file. Every problem is collected, never just the first.

use std::path::Path;

use async_graphql::Value as ConstValue;
use async_graphql::parser::types::{
    BaseType, ConstDirective, Type as SdlType, TypeKind, TypeSystemDefinition,
};
use async_graphql::parser::{Positioned, parse_schema};
use indexmap::IndexMap;

use crate::config::{Diagnostic, Location, SourceFile};

/// Scalars every GraphQL schema has.
pub(crate) const BUILTIN_SCALARS: &[&str] = &["Int", "Float", "String", "Boolean", "ID"];
/// Scalars this gateway validates; a schema declares the ones it uses with `scalar Date`.
pub(crate) const CUSTOM_SCALARS: &[&str] = &["Date", "DateTime", "Money"];

/// The merged type system.
#[derive(Debug, Default)]
pub(crate) struct TypeSystem {
    pub(crate) types: IndexMap<String, TypeDef>,
    pub(crate) query: String,
    pub(crate) mutation: Option<String>,
    /// The root type of subscriptions (its fields stream; see `live`).
    pub(crate) subscription: Option<String>,
}

#[derive(Debug)]
pub(crate) struct TypeDef {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) kind: TypeDefKind,
    pub(crate) location: Location,
}

#[derive(Debug)]
pub(crate) enum TypeDefKind {
    Object(IndexMap<String, FieldDef>),
    Enum(Vec<EnumValueDef>),
    Scalar,
    InputObject(IndexMap<String, InputDef>),
}

#[derive(Debug)]
pub(crate) struct FieldDef {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) arguments: Vec<InputDef>,
    pub(crate) ty: SdlType,
    pub(crate) directives: Vec<Positioned<ConstDirective>>,
    pub(crate) location: Location,
}

#[derive(Debug, Clone)]
pub(crate) struct InputDef {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) ty: SdlType,
    pub(crate) default: Option<ConstValue>,
    pub(crate) location: Location,
}

#[derive(Debug)]
pub(crate) struct EnumValueDef {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) deprecated: Option<String>,
}

impl FieldDef {
    /// The location of a directive on this field (same file, the directive's own position).
    pub(crate) fn directive_location(&self, directive: &Positioned<ConstDirective>) -> Location {
        Location::at(
            &self.location.path,
            directive.pos.line,
            directive.pos.column,
        )
    }
}

/// The innermost named type of a possibly wrapped type.
pub(crate) fn named_type(ty: &SdlType) -> &str {
    match &ty.base {
        BaseType::Named(name) => name.as_str(),
        BaseType::List(inner) => named_type(inner),
    }
}

/// `@deprecated(reason:)`, which GraphQL defines for fields and enum values.
pub(crate) fn deprecation(directives: &[Positioned<ConstDirective>]) -> Option<String> {
    directives
        .iter()
        .find(|d| d.node.name.node == "deprecated")
        .map(|d| match d.node.get_argument("reason").map(|v| &v.node) {
            Some(ConstValue::String(reason)) => reason.clone(),
            _ => "No longer supported".to_string(),
        })
}

struct Pending<'a> {
    file: &'a Path,
    def: async_graphql::parser::types::TypeDefinition,
    pos: async_graphql::Pos,
}

/// Parses and merges every schema file.
pub(crate) fn load_type_system(files: &[SourceFile]) -> (TypeSystem, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut system = TypeSystem {
        query: "Query".to_string(),
        ..TypeSystem::default()
    };
    let mut definitions = Vec::new();
    let mut extensions = Vec::new();
    let mut schema_roots_at: Option<Location> = None;
    for file in files {
        let document = match parse_schema(&file.text) {
            Ok(document) => document,
            Err(error) => {
                let pos = error.positions().next();
                let location = pos.map_or_else(
                    || Location::at(&file.path, 1, 1),
                    |p| Location::at(&file.path, p.line, p.column),
                );
                let message = error.to_string();
                let message = message.lines().next().unwrap_or("syntax error").trim();
                diagnostics.push(Diagnostic::at(
                    location,
                    format!("GraphQL syntax error: {message}"),
                ));
                continue;
            }
        };
        for definition in document.definitions {
            match definition {
                TypeSystemDefinition::Type(def) => {
                    let pending = Pending {
                        file: &file.path,
                        pos: def.pos,
                        def: def.node,
                    };
                    if pending.def.extend {
                        extensions.push(pending);
                    } else {
                        definitions.push(pending);
                    }
                }
                TypeSystemDefinition::Schema(schema) => {
                    let location = Location::at(&file.path, schema.pos.line, schema.pos.column);
                    if let Some(first) = &schema_roots_at {
                        diagnostics.push(Diagnostic::at(
                            location,
                            format!(
                                "a second `schema {{ … }}` definition; the first is at {first}"
                            ),
                        ));
                        continue;
                    }
                    schema_roots_at = Some(location);
                    if let Some(query) = schema.node.query {
                        system.query = query.node.to_string();
                    }
                    system.mutation = schema.node.mutation.map(|m| m.node.to_string());
                    system.subscription = schema.node.subscription.map(|s| s.node.to_string());
                }
                TypeSystemDefinition::Directive(directive) => {
                    let name = directive.node.name.node.as_str();
                    if !super::directives::KNOWN_DIRECTIVES.contains(&name) {
                        diagnostics.push(Diagnostic::at(
                            Location::at(&file.path, directive.pos.line, directive.pos.column),
                            format!(
                                "unknown directive `@{name}`; this gateway understands {}",
                                super::directives::known_list()
                            ),
                        ));
                    }
                }
            }
        }
    }
    if system.mutation.is_none() {
        let has_mutation = definitions.iter().any(|p| p.def.name.node == "Mutation");
        if has_mutation && schema_roots_at.is_none() {
            system.mutation = Some("Mutation".to_string());
        }
    }
    if system.subscription.is_none()
        && schema_roots_at.is_none()
        && definitions
            .iter()
            .any(|p| p.def.name.node == "Subscription")
    {
        system.subscription = Some("Subscription".to_string());
    }

    for pending in definitions {
        let location = Location::at(pending.file, pending.pos.line, pending.pos.column);
        let name = pending.def.name.node.to_string();
        if let Some(existing) = system.types.get(&name) {
            diagnostics.push(Diagnostic::at(
                location,
                format!(
                    "duplicate type `{name}`: it is already defined at {}; use `extend type {name}` to add fields",
                    existing.location
                ),
            ));
            continue;
        }
        if BUILTIN_SCALARS.contains(&name.as_str()) {
            diagnostics.push(Diagnostic::at(
                location,
                format!("`{name}` is a built-in GraphQL type and cannot be redefined"),
            ));
            continue;
        }
        let kind = convert_kind(
            pending.file,
            pending.def.kind,
            &name,
            &location,
            &mut diagnostics,
        );
        let Some(kind) = kind else { continue };
        system.types.insert(
            name.clone(),
            TypeDef {
                name,
                description: pending.def.description.map(|d| d.node),
                kind,
                location,
            },
        );
    }
    for pending in extensions {
        let location = Location::at(pending.file, pending.pos.line, pending.pos.column);
        let name = pending.def.name.node.to_string();
        let Some(kind) = convert_kind(
            pending.file,
            pending.def.kind,
            &name,
            &location,
            &mut diagnostics,
        ) else {
            continue;
        };
        let Some(existing) = system.types.get_mut(&name) else {
            diagnostics.push(Diagnostic::at(
                location,
                format!("`extend type {name}` extends a type that is never defined"),
            ));
            continue;
        };
        match (&mut existing.kind, kind) {
            (TypeDefKind::Object(fields), TypeDefKind::Object(more)) => {
                merge_named(fields, more, &name, &mut diagnostics, |f| &f.location)
            }
            (TypeDefKind::InputObject(fields), TypeDefKind::InputObject(more)) => {
                merge_named(fields, more, &name, &mut diagnostics, |f| &f.location)
            }
            (TypeDefKind::Enum(values), TypeDefKind::Enum(more)) => values.extend(more),
            _ => diagnostics.push(Diagnostic::at(
                location,
                format!(
                    "this extension of `{name}` is a different kind of type than its definition at {}",
                    existing.location
                ),
            )),
        }
    }

    check_references(&system, &mut diagnostics);
    (system, diagnostics)
}

fn merge_named<T>(
    into: &mut IndexMap<String, T>,
    more: IndexMap<String, T>,
    type_name: &str,
    diagnostics: &mut Vec<Diagnostic>,
    location: impl Fn(&T) -> &Location,
) {
    for (name, item) in more {
        if let Some(existing) = into.get(&name) {
            diagnostics.push(Diagnostic::at(
                location(&item).clone(),
                format!(
                    "duplicate field `{type_name}.{name}`: already defined at {}",
                    location(existing)
                ),
            ));
        } else {
            into.insert(name, item);
        }
    }
}

fn convert_kind(
    file: &Path,
    kind: TypeKind,
    type_name: &str,
    location: &Location,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<TypeDefKind> {
    let at = |pos: async_graphql::Pos| Location::at(file, pos.line, pos.column);
    let input_def =
        |value: Positioned<async_graphql::parser::types::InputValueDefinition>| InputDef {
            name: value.node.name.node.to_string(),
            description: value.node.description.map(|d| d.node),
            ty: value.node.ty.node,
            default: value.node.default_value.map(|d| d.node),
            location: at(value.pos),
        };
    match kind {
        TypeKind::Object(object) => {
            if !object.implements.is_empty() {
                diagnostics.push(Diagnostic::at(
                    location.clone(),
                    format!(
                        "`{type_name}` implements an interface; interfaces are not supported yet"
                    ),
                ));
            }
            let mut fields = IndexMap::new();
            for field in object.fields {
                let def = FieldDef {
                    name: field.node.name.node.to_string(),
                    description: field.node.description.map(|d| d.node),
                    arguments: field.node.arguments.into_iter().map(input_def).collect(),
                    ty: field.node.ty.node,
                    directives: field.node.directives,
                    location: at(field.pos),
                };
                let more = IndexMap::from([(def.name.clone(), def)]);
                merge_named(&mut fields, more, type_name, diagnostics, |f| &f.location);
            }
            Some(TypeDefKind::Object(fields))
        }
        TypeKind::InputObject(input) => {
            let mut fields = IndexMap::new();
            for field in input.fields {
                let def = input_def(field);
                let more = IndexMap::from([(def.name.clone(), def)]);
                merge_named(&mut fields, more, type_name, diagnostics, |f| &f.location);
            }
            Some(TypeDefKind::InputObject(fields))
        }
        TypeKind::Enum(enumeration) => Some(TypeDefKind::Enum(
            enumeration
                .values
                .into_iter()
                .map(|v| EnumValueDef {
                    name: v.node.value.node.to_string(),
                    description: v.node.description.map(|d| d.node),
                    deprecated: deprecation(&v.node.directives),
                })
                .collect(),
        )),
        TypeKind::Scalar => {
            if CUSTOM_SCALARS.contains(&type_name) {
                Some(TypeDefKind::Scalar)
            } else {
                diagnostics.push(Diagnostic::at(
                    location.clone(),
                    format!(
                        "unknown scalar `{type_name}`; this gateway validates {}",
                        crate::config::quoted_list(CUSTOM_SCALARS)
                    ),
                ));
                None
            }
        }
        TypeKind::Interface(_) | TypeKind::Union(_) => {
            diagnostics.push(Diagnostic::at(
                location.clone(),
                format!("`{type_name}` is an interface or union; these are not supported yet"),
            ));
            None
        }
    }
}

/// Every referenced type exists and is used on the right side (input vs output).
fn check_references(system: &TypeSystem, diagnostics: &mut Vec<Diagnostic>) {
    let kind_of = |name: &str| -> Option<&TypeDefKind> { system.types.get(name).map(|t| &t.kind) };
    let is_builtin = |name: &str| BUILTIN_SCALARS.contains(&name);
    let unknown = |name: &str| {
        let hint = if CUSTOM_SCALARS.contains(&name) {
            format!("; declare it with `scalar {name}`")
        } else {
            String::new()
        };
        format!("unknown type `{name}`{hint}")
    };
    let check_input = |input: &InputDef, diagnostics: &mut Vec<Diagnostic>| {
        let name = named_type(&input.ty);
        if is_builtin(name) {
            return;
        }
        match kind_of(name) {
            None => diagnostics.push(Diagnostic::at(input.location.clone(), unknown(name))),
            Some(TypeDefKind::Object(_)) => diagnostics.push(Diagnostic::at(
                input.location.clone(),
                format!(
                    "`{}` is an output type and cannot be used as an input; define an `input` type",
                    name
                ),
            )),
            Some(_) => {}
        }
    };
    for ty in system.types.values() {
        match &ty.kind {
            TypeDefKind::Object(fields) => {
                if fields.is_empty() {
                    diagnostics.push(Diagnostic::at(
                        ty.location.clone(),
                        format!("type `{}` has no fields", ty.name),
                    ));
                }
                for field in fields.values() {
                    let name = named_type(&field.ty);
                    if !is_builtin(name) {
                        match kind_of(name) {
                            None => diagnostics
                                .push(Diagnostic::at(field.location.clone(), unknown(name))),
                            Some(TypeDefKind::InputObject(_)) => diagnostics.push(Diagnostic::at(
                                field.location.clone(),
                                format!("`{name}` is an input type and cannot be a field's type"),
                            )),
                            Some(_) => {}
                        }
                    }
                    for argument in &field.arguments {
                        check_input(argument, diagnostics);
                    }
                }
            }
            TypeDefKind::InputObject(fields) => {
                for field in fields.values() {
                    check_input(field, diagnostics);
                }
            }
            TypeDefKind::Enum(_) | TypeDefKind::Scalar => {}
        }
    }
    let root_problem = |name: &str| match kind_of(name) {
        Some(TypeDefKind::Object(_)) => None,
        Some(_) => Some(format!("the root type `{name}` must be an object type")),
        None => Some(format!(
            "the schema has no `type {name}`; every graph needs one"
        )),
    };
    if let Some(message) = root_problem(&system.query) {
        diagnostics.push(Diagnostic {
            location: None,
            message,
        });
    }
    for root in system.mutation.iter().chain(system.subscription.iter()) {
        if let Some(message) = root_problem(root) {
            diagnostics.push(Diagnostic {
                location: None,
                message,
            });
        }
    }
}

/// Converts a directive's constant argument for messages and JSON use.
pub(crate) fn const_to_json(value: &ConstValue) -> serde_json::Value {
    value.clone().into_json().unwrap_or(serde_json::Value::Null)
}
