//! The binding directives in the SDL, read into typed values with their locations.
//!
//! `@connect(connector: "tax", operation: "account", args: {tin: "$parent.tin"})` binds a field
//! to a backend operation; `@map(from: "birth_date")` reads a field from another key (or JSON
//! pointer) of its parent's backend data. The policy directives say who may read a field:
//! `@public`, `@requiresScopes(scopes: [["dmv:read"]])`, `@consent(category: "dmv.license")`
//! and `@owner(agency: "dmv")`. Wrong names and wrong argument types are errors.

use async_graphql::Value as ConstValue;
use async_graphql::parser::Positioned;
use async_graphql::parser::types::ConstDirective;

use super::sdl::FieldDef;
use crate::config::{Diagnostic, Location};

/// Directives this gateway reads; `@deprecated` is GraphQL's own.
pub(crate) const KNOWN_DIRECTIVES: &[&str] = &[
    "connect",
    "map",
    "public",
    "consent",
    "requiresScopes",
    "owner",
    "deprecated",
];

pub(crate) fn known_list() -> String {
    let names: Vec<String> = KNOWN_DIRECTIVES.iter().map(|d| format!("@{d}")).collect();
    names.join(", ")
}

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ArgSource {
    /// `$args.name`: the field's own argument.
    Argument(String),
    /// `$parent.key` or `$parent./json/pointer`: the parent object's backend data.
    Parent(JsonPath),
    /// Any other value: sent as written.
    Constant(serde_json::Value),
    /// `$caller.citizenId`: the citizen the request acts for (`Query.me`).
    CallerCitizen,
    /// The parent citizen's key at an agency, looked up in the identity crosswalk. Never
    /// written in the SDL: the binder chooses it for a connector's declared `identifier`.
    Crosswalk {
        kind: crate::identity::KeyKind,
        /// Where the parent object keeps its canonical citizen id.
        citizen: JsonPath,
    },
}

/// How a value is found in a JSON object: a key, or a JSON pointer when it starts with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonPath {
    /// A key of the object, with its `snake_case` form tried when the key itself is absent.
    Key { key: String, snake: Option<String> },
    /// An RFC 6901 pointer.
    Pointer(String),
}

impl JsonPath {
    /// A key or pointer as written in `@map(from:)` or `$parent.`.
    pub(crate) fn explicit(text: &str) -> Self {
        if text.starts_with('/') {
            Self::Pointer(text.to_string())
        } else {
            Self::Key {
                key: text.to_string(),
                snake: None,
            }
        }
    }

    /// A field's default source: its own name, else its `snake_case` spelling, since most
    /// legacy JSON APIs write `birth_date` where GraphQL writes `birthDate`.
    pub(crate) fn field_name(name: &str) -> Self {
        let snake = to_snake_case(name);
        Self::Key {
            snake: (snake != name).then_some(snake),
            key: name.to_string(),
        }
    }

    /// Finds the value in `parent`; `None` when absent.
    pub(crate) fn lookup<'a>(
        &self,
        parent: &'a serde_json::Value,
    ) -> Option<&'a serde_json::Value> {
        match self {
            Self::Key { key, snake } => parent
                .get(key)
                .or_else(|| snake.as_ref().and_then(|s| parent.get(s))),
            Self::Pointer(pointer) => parent.pointer(pointer),
        }
    }
}

fn to_snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.char_indices() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `@connect` as written on a field.
#[derive(Debug, Clone)]
pub(crate) struct ConnectDirective {
    pub(crate) connector: String,
    pub(crate) operation: String,
    /// Explicit placeholder sources, in the order written.
    pub(crate) args: Vec<(String, ArgSource)>,
    pub(crate) location: Location,
}

/// Every binding directive on one field.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldDirectives {
    pub(crate) connect: Option<ConnectDirective>,
    pub(crate) map_from: Option<(JsonPath, Location)>,
    pub(crate) policy: PolicyDirectives,
}

/// Whose data a personal field holds, as `@consent(subject:)` says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SubjectSource {
    /// `$args.name`: the citizen id is the field's argument.
    Argument(String),
    /// `$parent.key`: the citizen id is in the parent object's data.
    Parent(JsonPath),
    /// `$caller.citizenId`: the signed-in citizen.
    Caller,
}

/// The policy directives on one field, as written (checked against the catalogues later).
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyDirectives {
    pub(crate) public: Option<Location>,
    pub(crate) consent: Option<ConsentDirective>,
    pub(crate) scopes: Option<(Vec<Vec<String>>, Location)>,
    pub(crate) owner: Option<(String, Location)>,
    /// A policy directive was written but is malformed (already reported); the field is
    /// then not reported again as saying nothing.
    pub(crate) malformed: bool,
}

impl PolicyDirectives {
    /// Whether the field says anything about who may read it.
    pub(crate) fn is_empty(&self) -> bool {
        !self.malformed
            && self.public.is_none()
            && self.consent.is_none()
            && self.scopes.is_none()
            && self.owner.is_none()
    }
}

/// `@consent(category: "dmv.license", subject: "$parent.id")`.
#[derive(Debug, Clone)]
pub(crate) struct ConsentDirective {
    pub(crate) category: String,
    pub(crate) subject: Option<SubjectSource>,
    pub(crate) location: Location,
}

/// Reads a field's directives, collecting every misuse.
pub(crate) fn field_directives(
    field: &FieldDef,
    diagnostics: &mut Vec<Diagnostic>,
) -> FieldDirectives {
    let mut found = FieldDirectives::default();
    for directive in &field.directives {
        let location = field.directive_location(directive);
        let name = directive.node.name.node.as_str();
        match name {
            "connect" => {
                if found.connect.is_some() {
                    diagnostics.push(Diagnostic::at(
                        location,
                        "a field can have only one `@connect`",
                    ));
                    continue;
                }
                found.connect = read_connect(directive, location, diagnostics);
            }
            "map" => {
                let mut args = DirectiveArgs::new(directive, &location, diagnostics);
                if let Some(from) = args.string("from", true) {
                    if from.is_empty() {
                        args.problem(
                            "`from` must name a key or a JSON pointer such as `/address/street`",
                        );
                    } else {
                        found.map_from = Some((JsonPath::explicit(&from), location.clone()));
                    }
                }
                args.finish(&["from"]);
            }
            "public" => {
                DirectiveArgs::new(directive, &location, diagnostics).finish(&[]);
                found.policy.public = Some(location);
            }
            "consent" => {
                let mut args = DirectiveArgs::new(directive, &location, diagnostics);
                let category = args.string("category", true);
                let subject = args.string("subject", false).and_then(|text| {
                    let source = parse_subject(&text);
                    if source.is_none() {
                        args.problem(format!(
                            "`subject` is `{text}`; it names where the citizen id is: `$parent.<key>`, `$args.<name>` or `$caller.citizenId`"
                        ));
                    }
                    source
                });
                args.finish(&["category", "subject"]);
                if category.is_none() {
                    found.policy.malformed = true;
                }
                if let Some(category) = category {
                    found.policy.consent = Some(ConsentDirective {
                        category,
                        subject,
                        location,
                    });
                }
            }
            "requiresScopes" => {
                let mut args = DirectiveArgs::new(directive, &location, diagnostics);
                match args.value("scopes") {
                    Some(value) => match scope_sets(value) {
                        Some(sets) => found.policy.scopes = Some((sets, location.clone())),
                        None => {
                            found.policy.malformed = true;
                            args.problem(
                                "`scopes` must be a list of lists of scope names, e.g. [[\"dmv:read\"]] (any one inner list, all of its scopes)",
                            );
                        }
                    },
                    None => {
                        found.policy.malformed = true;
                        args.problem("argument `scopes` is required");
                    }
                }
                args.finish(&["scopes"]);
            }
            "owner" => {
                let mut args = DirectiveArgs::new(directive, &location, diagnostics);
                match args.string("agency", true) {
                    Some(agency) => found.policy.owner = Some((agency, location.clone())),
                    None => found.policy.malformed = true,
                }
                args.finish(&["agency"]);
            }
            "deprecated" => {}
            other => diagnostics.push(Diagnostic::at(
                location,
                format!(
                    "unknown directive `@{other}`; this gateway understands {}",
                    known_list()
                ),
            )),
        }
    }
    if let (Some(_), Some((_, location))) = (&found.connect, &found.map_from) {
        diagnostics.push(Diagnostic::at(
            location.clone(),
            "`@map` and `@connect` cannot be on the same field: a connected field's value comes from its backend",
        ));
    }
    found
}

fn parse_subject(text: &str) -> Option<SubjectSource> {
    if let Some(path) = text.strip_prefix("$parent.").filter(|p| !p.is_empty()) {
        Some(SubjectSource::Parent(JsonPath::explicit(path)))
    } else if let Some(name) = text.strip_prefix("$args.").filter(|n| !n.is_empty()) {
        Some(SubjectSource::Argument(name.to_string()))
    } else if text == "$caller.citizenId" {
        Some(SubjectSource::Caller)
    } else {
        None
    }
}

/// `[["a", "b"], ["c"]]` → sets; a flat `["a"]` is one set. Empty names or sets are refused.
fn scope_sets(value: &ConstValue) -> Option<Vec<Vec<String>>> {
    let ConstValue::List(outer) = value else {
        return None;
    };
    let names = |items: &[ConstValue]| -> Option<Vec<String>> {
        items
            .iter()
            .map(|item| match item {
                ConstValue::String(s) if !s.trim().is_empty() => Some(s.clone()),
                _ => None,
            })
            .collect()
    };
    if outer
        .iter()
        .all(|item| matches!(item, ConstValue::String(_)))
    {
        return names(outer)
            .filter(|set| !set.is_empty())
            .map(|set| vec![set]);
    }
    let sets: Option<Vec<Vec<String>>> = outer
        .iter()
        .map(|item| match item {
            ConstValue::List(inner) => names(inner).filter(|set| !set.is_empty()),
            _ => None,
        })
        .collect();
    sets.filter(|sets| !sets.is_empty())
}

fn read_connect(
    directive: &Positioned<ConstDirective>,
    location: Location,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<ConnectDirective> {
    let mut args = DirectiveArgs::new(directive, &location, diagnostics);
    let connector = args.string("connector", true);
    let operation = args.string("operation", true);
    let mut sources = Vec::new();
    if let Some(value) = args.value("args") {
        match value {
            ConstValue::Object(map) => {
                for (name, value) in map {
                    let source = match value {
                        ConstValue::String(text) => {
                            if let Some(arg) = text.strip_prefix("$args.") {
                                ArgSource::Argument(arg.to_string())
                            } else if let Some(path) = text.strip_prefix("$parent.") {
                                ArgSource::Parent(JsonPath::explicit(path))
                            } else if let Some(field) = text.strip_prefix("$caller.") {
                                if field != "citizenId" {
                                    args.problem(format!(
                                        "`args.{name}` is `{text}`; the caller offers only `$caller.citizenId`"
                                    ));
                                    continue;
                                }
                                ArgSource::CallerCitizen
                            } else if text.starts_with('$') {
                                args.problem(format!(
                                    "`args.{name}` is `{text}`; a reference starts with `$args.`, `$parent.` or `$caller.`"
                                ));
                                continue;
                            } else {
                                ArgSource::Constant(serde_json::Value::String(text.clone()))
                            }
                        }
                        other => ArgSource::Constant(super::sdl::const_to_json(other)),
                    };
                    sources.push((name.to_string(), source));
                }
            }
            other => args.problem(format!(
                "`args` must be an object such as {{tin: \"$parent.tin\"}}, not {}",
                describe(other)
            )),
        }
    }
    args.finish(&["connector", "operation", "args"]);
    Some(ConnectDirective {
        connector: connector?,
        operation: operation?,
        args: sources,
        location,
    })
}

/// Reads a directive's arguments, reporting wrong types, missing and unknown arguments.
struct DirectiveArgs<'a> {
    directive: &'a Positioned<ConstDirective>,
    location: &'a Location,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl<'a> DirectiveArgs<'a> {
    fn new(
        directive: &'a Positioned<ConstDirective>,
        location: &'a Location,
        diagnostics: &'a mut Vec<Diagnostic>,
    ) -> Self {
        Self {
            directive,
            location,
            diagnostics,
        }
    }

    fn name(&self) -> &str {
        self.directive.node.name.node.as_str()
    }

    fn problem(&mut self, message: impl Into<String>) {
        let message = format!("`@{}`: {}", self.name(), message.into());
        self.diagnostics
            .push(Diagnostic::at(self.location.clone(), message));
    }

    fn value(&self, argument: &str) -> Option<&'a ConstValue> {
        self.directive
            .node
            .get_argument(argument)
            .map(|value| &value.node)
    }

    fn string(&mut self, argument: &str, required: bool) -> Option<String> {
        match self.value(argument) {
            Some(ConstValue::String(text)) => Some(text.clone()),
            Some(other) => {
                let found = describe(other);
                self.problem(format!(
                    "argument `{argument}` must be a String, not {found}"
                ));
                None
            }
            None => {
                if required {
                    self.problem(format!("argument `{argument}` is required"));
                }
                None
            }
        }
    }

    fn finish(mut self, allowed: &[&str]) {
        if allowed.is_empty() && !self.directive.node.arguments.is_empty() {
            self.problem("takes no arguments");
            return;
        }
        let unknown: Vec<String> = self
            .directive
            .node
            .arguments
            .iter()
            .map(|(name, _)| name.node.to_string())
            .filter(|name| !allowed.contains(&name.as_str()))
            .collect();
        for name in unknown {
            let expected = crate::config::quoted_list(allowed);
            self.problem(format!("unknown argument `{name}`; expected {expected}"));
        }
    }
}

fn describe(value: &ConstValue) -> String {
    match value {
        ConstValue::Null => "null".to_string(),
        ConstValue::Number(n) => format!("the number {n}"),
        ConstValue::String(_) => "a String".to_string(),
        ConstValue::Boolean(b) => format!("the Boolean {b}"),
        ConstValue::Binary(_) => "binary data".to_string(),
        ConstValue::Enum(name) => format!("the enum value {name}"),
        ConstValue::List(_) => "a list".to_string(),
        ConstValue::Object(_) => "an object".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_names_fall_back_to_snake_case_keys() {
        let path = JsonPath::field_name("birthDate");
        assert_eq!(
            path.lookup(&json!({"birth_date": "2000-01-01"})),
            Some(&json!("2000-01-01"))
        );
        assert_eq!(
            path.lookup(&json!({"birthDate": 1, "birth_date": 2})),
            Some(&json!(1))
        );
        assert_eq!(JsonPath::field_name("id").lookup(&json!({"ID": 1})), None);
    }

    #[test]
    fn explicit_paths_may_be_pointers() {
        let path = JsonPath::explicit("/address/street");
        assert_eq!(
            path.lookup(&json!({"address": {"street": "Elm"}})),
            Some(&json!("Elm"))
        );
    }
}
