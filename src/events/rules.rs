//! `schema/life-events.toml`: where changes come from, and which change is which life event.
//!
//! A rule names its source, a condition over one change record, how the citizen is found (their
//! canonical id in the change, or an agency key looked up in the identity crosswalk), and the
//! opaque ids the event carries. Everything is checked when the gateway loads — sources against
//! the connectors, categories against the trust catalogue, mutation sources against the graph —
//! so a typo is a `file:line` error from `civicgraph check`, not a silent gap in production.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use super::condition::{Condition, scalar_text};
use super::signature::WebhookSecret;
use crate::config::{Diagnostic, TomlFile, TrustConfig, quoted_list};
use crate::connectors::ConnectorSpec;
use crate::identity::KeyKind;

/// The file name, in the schema directory.
pub const RULES_FILE: &str = "life-events.toml";

/// The most changes one poll asks for is up to the backend; more than this many in one answer
/// is refused as a runaway feed rather than recorded in one huge transaction.
pub const MAX_CHANGES_PER_CALL: usize = 5000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    sources: BTreeMap<String, Spanned<SourceDef>>,
    #[serde(default)]
    events: Vec<Spanned<RuleDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceDef {
    kind: Spanned<String>,
    connector: Option<Spanned<String>>,
    operation: Option<Spanned<String>>,
    cursor: Option<String>,
    start: Option<String>,
    every_s: Option<u64>,
    #[serde(default)]
    args: Map<String, Value>,
    secret: Option<Spanned<String>>,
    tolerance_s: Option<u64>,
    field: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    #[serde(rename = "type")]
    event_type: Spanned<String>,
    source: Spanned<String>,
    category: Spanned<String>,
    when: Option<Spanned<Condition>>,
    citizen: Spanned<CitizenDef>,
    subject: Spanned<BTreeMap<String, String>>,
    #[serde(default)]
    key: Vec<String>,
    occurred_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CitizenDef {
    field: Option<String>,
    key: Option<String>,
    kind: Option<String>,
}

/// Where a source's changes come from.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// A change feed called with `{ since = <watermark> }`; the largest `cursor` seen becomes
    /// the next watermark.
    Poll {
        /// The feed operation.
        operation: String,
        /// The field of each change that orders the feed.
        cursor: String,
        /// The watermark before the first poll; `now` starts at the first poll's time (in
        /// RFC 3339 seconds), so only changes made after the gateway first ran are events.
        start: String,
        /// Extra arguments.
        args: Map<String, Value>,
        /// Time between polls.
        every: Duration,
    },
    /// An operation whose whole answer is read each time (who is due now); repeats are the
    /// same events by their idempotency keys.
    Scan {
        /// The operation.
        operation: String,
        /// Its arguments.
        args: Map<String, Value>,
        /// Time between scans.
        every: Duration,
    },
    /// Signed webhooks the backend posts to `POST /events/{connector}`.
    Inbound {
        /// The Standard Webhooks secret the backend signs with; `None` (configured empty)
        /// refuses every request.
        secret: Option<WebhookSecret>,
        /// How far `webhook-timestamp` may be from now.
        tolerance_s: i64,
    },
    /// The gateway's own mutation field: its arguments and answer are the change.
    Mutation {
        /// The `Mutation` field.
        field: String,
    },
}

/// A change source.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its name in the rules file (also its watermark's key).
    pub name: String,
    /// The connector it reads (empty for mutation sources).
    pub connector: String,
    /// How changes arrive.
    pub kind: SourceKind,
}

/// How a rule finds the citizen a change is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CitizenFrom {
    /// The change carries the canonical id in this field.
    Field(String),
    /// The change carries an agency key of this kind, looked up in the crosswalk.
    Key {
        /// The field holding the key.
        field: String,
        /// What kind of key it is.
        kind: KeyKind,
    },
}

/// One rule: which changes of a source are an event of a type.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The event type, e.g. `JobLost`.
    pub event_type: String,
    /// The source it listens to.
    pub source: String,
    /// The consent category receivers need.
    pub category: String,
    /// Which changes qualify.
    pub when: Condition,
    /// Whom it is about.
    pub citizen: CitizenFrom,
    /// Payload name → change field (opaque ids only).
    pub subject: BTreeMap<String, String>,
    /// Subject names that identify the event (with its type and citizen): the same change
    /// reported by two sources (a mutation and a feed) is one event when these match.
    pub key: Vec<String>,
    /// The change's time field, if any.
    pub occurred_at: Option<String>,
}

/// One change recognised as an event, before its citizen is resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The event type.
    pub event_type: String,
    /// Its category.
    pub category: String,
    /// How to find the citizen.
    pub citizen: (CitizenFrom, String),
    /// Opaque ids.
    pub subject: Map<String, Value>,
    /// `Type:name=value|…` over the key's subject names; the detector adds the citizen.
    pub idempotency_key: String,
    /// When it happened, when the change says.
    pub occurred_at: Option<DateTime<Utc>>,
}

/// The rules file, checked.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Sources by name.
    pub sources: BTreeMap<String, Source>,
    /// Rules in file order.
    pub rules: Vec<Rule>,
}

/// What the rules are checked against.
pub struct CheckAgainst<'a> {
    /// The built connectors' specs.
    pub connectors: &'a BTreeMap<String, ConnectorSpec>,
    /// Purposes, categories, agencies.
    pub trust: &'a TrustConfig,
    /// Whether the graph has this `Mutation` field.
    pub has_mutation: &'a dyn Fn(&str) -> bool,
}

fn is_event_type(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
}

fn is_payload_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Reads a rules file's syntax and keys only, without checking it against a graph (the
/// README's examples are checked this way).
pub fn check_syntax(file: &TomlFile) -> Result<(), Diagnostic> {
    file.parse::<RulesFile>().map(drop)
}

impl Rules {
    /// Parses and checks a rules file; every problem is reported at its line.
    pub fn load(file: &TomlFile, against: &CheckAgainst<'_>) -> Result<Self, Vec<Diagnostic>> {
        let parsed: RulesFile = file.parse().map_err(|d| vec![d])?;
        let mut problems = Vec::new();
        let mut at = |span: std::ops::Range<usize>, message: String| {
            problems.push(Diagnostic::at(file.location(&span), message));
        };
        let mut sources = BTreeMap::new();
        let mut inbound_connectors = BTreeSet::new();
        for (name, def) in &parsed.sources {
            let span = def.span();
            let def = def.get_ref();
            let connector = def.connector.as_ref().map(|c| c.get_ref().clone());
            let operation = || -> Result<String, String> {
                let Some(connector) = &def.connector else {
                    return Err(format!("source `{name}` needs `connector`"));
                };
                let Some(spec) = against.connectors.get(connector.get_ref()) else {
                    let known: Vec<&str> = against.connectors.keys().map(String::as_str).collect();
                    return Err(format!(
                        "source `{name}`: there is no connector `{}`; the connectors are {}",
                        connector.get_ref(),
                        quoted_list(&known)
                    ));
                };
                let Some(operation) = &def.operation else {
                    return Err(format!("source `{name}` needs `operation`"));
                };
                if !spec.operations.contains_key(operation.get_ref()) {
                    let known: Vec<&str> = spec.operations.keys().map(String::as_str).collect();
                    return Err(format!(
                        "source `{name}`: connector `{}` has no operation `{}`; it has {}",
                        connector.get_ref(),
                        operation.get_ref(),
                        quoted_list(&known)
                    ));
                }
                Ok(operation.get_ref().clone())
            };
            let every = Duration::from_secs(def.every_s.unwrap_or(5).max(1));
            let kind = match def.kind.get_ref().as_str() {
                "poll" => match (operation(), &def.cursor) {
                    (Err(message), _) => {
                        at(span, message);
                        continue;
                    }
                    (Ok(_), None) => {
                        at(
                            span,
                            format!(
                                "poll source `{name}` needs `cursor`: the field of each change \
                                 that orders the feed"
                            ),
                        );
                        continue;
                    }
                    (Ok(operation), Some(cursor)) => SourceKind::Poll {
                        operation,
                        cursor: cursor.clone(),
                        start: def.start.clone().unwrap_or_default(),
                        args: def.args.clone(),
                        every,
                    },
                },
                "scan" => match operation() {
                    Err(message) => {
                        at(span, message);
                        continue;
                    }
                    Ok(operation) => SourceKind::Scan {
                        operation,
                        args: def.args.clone(),
                        every,
                    },
                },
                "inbound" => {
                    let Some(connector) = &def.connector else {
                        at(span, format!("inbound source `{name}` needs `connector`"));
                        continue;
                    };
                    if !against.connectors.contains_key(connector.get_ref()) {
                        at(
                            connector.span(),
                            format!("there is no connector `{}`", connector.get_ref()),
                        );
                        continue;
                    }
                    if !inbound_connectors.insert(connector.get_ref().clone()) {
                        at(
                            connector.span(),
                            format!(
                                "connector `{}` already has an inbound source; one per connector \
                                 (it answers POST /events/{})",
                                connector.get_ref(),
                                connector.get_ref()
                            ),
                        );
                        continue;
                    }
                    let Some(secret) = &def.secret else {
                        at(
                            span,
                            format!("inbound source `{name}` needs `secret` (whsec_…)"),
                        );
                        continue;
                    };
                    // An empty secret (its variable unset) keeps the endpoint closed.
                    let parsed = if secret.get_ref().trim().is_empty() {
                        None
                    } else if let Ok(parsed) = WebhookSecret::parse(secret.get_ref()) {
                        Some(parsed)
                    } else {
                        at(
                            secret.span(),
                            "`secret` must be `whsec_` followed by the base64 of 24 to 64 bytes"
                                .to_string(),
                        );
                        continue;
                    };
                    SourceKind::Inbound {
                        secret: parsed,
                        tolerance_s: i64::try_from(def.tolerance_s.unwrap_or(300).clamp(1, 3600))
                            .unwrap_or(300),
                    }
                }
                "mutation" => {
                    let Some(field) = &def.field else {
                        at(span, format!("mutation source `{name}` needs `field`"));
                        continue;
                    };
                    if !(against.has_mutation)(field.get_ref()) {
                        at(
                            field.span(),
                            format!("the graph has no mutation field `{}`", field.get_ref()),
                        );
                        continue;
                    }
                    SourceKind::Mutation {
                        field: field.get_ref().clone(),
                    }
                }
                other => {
                    at(
                        def.kind.span(),
                        format!(
                            "unknown source kind `{other}`; use `poll`, `scan`, `inbound` or \
                             `mutation`"
                        ),
                    );
                    continue;
                }
            };
            sources.insert(
                name.clone(),
                Source {
                    name: name.clone(),
                    connector: connector.unwrap_or_default(),
                    kind,
                },
            );
        }
        let mut rules = Vec::new();
        let mut used = BTreeSet::new();
        for def in &parsed.events {
            let def = def.get_ref();
            let event_type = def.event_type.get_ref();
            let mut ok = true;
            if !is_event_type(event_type) {
                at(
                    def.event_type.span(),
                    format!("event type `{event_type}` must be PascalCase letters and digits"),
                );
                ok = false;
            }
            if !parsed.sources.contains_key(def.source.get_ref()) {
                let known: Vec<&str> = parsed.sources.keys().map(String::as_str).collect();
                at(
                    def.source.span(),
                    format!(
                        "there is no source `{}`; the sources are {}",
                        def.source.get_ref(),
                        quoted_list(&known)
                    ),
                );
                ok = false;
            }
            used.insert(def.source.get_ref().clone());
            if !against
                .trust
                .categories
                .contains_key(def.category.get_ref())
            {
                let known: Vec<&str> = against
                    .trust
                    .categories
                    .keys()
                    .map(String::as_str)
                    .collect();
                at(
                    def.category.span(),
                    format!(
                        "unknown category `{}`; [trust.categories] has {}",
                        def.category.get_ref(),
                        quoted_list(&known)
                    ),
                );
                ok = false;
            }
            for (path, test) in def.when.iter().flat_map(|w| &w.get_ref().0) {
                if test.is_empty() {
                    at(
                        def.when.as_ref().map(Spanned::span).unwrap_or_default(),
                        format!("the test on `{path}` has no operator"),
                    );
                    ok = false;
                }
            }
            let citizen = match def.citizen.get_ref() {
                CitizenDef {
                    field: Some(field),
                    key: None,
                    kind: None,
                } => Some(CitizenFrom::Field(field.clone())),
                CitizenDef {
                    field: None,
                    key: Some(field),
                    kind: Some(kind),
                } => match KeyKind::parse(kind) {
                    Ok(kind) => Some(CitizenFrom::Key {
                        field: field.clone(),
                        kind,
                    }),
                    Err(_) => {
                        let known: Vec<&str> = KeyKind::ALL.iter().map(|k| k.as_str()).collect();
                        at(
                            def.citizen.span(),
                            format!(
                                "unknown key kind `{kind}`; the crosswalk has {}",
                                quoted_list(&known)
                            ),
                        );
                        None
                    }
                },
                _ => {
                    at(
                        def.citizen.span(),
                        "`citizen` is either { field = \"…\" } (a canonical citizen id) or \
                         { key = \"…\", kind = \"…\" } (an agency key from the crosswalk)"
                            .to_string(),
                    );
                    None
                }
            };
            if def.subject.get_ref().is_empty() {
                at(
                    def.subject.span(),
                    "`subject` names at least one id the event carries".to_string(),
                );
                ok = false;
            }
            for name in def.subject.get_ref().keys() {
                if !is_payload_name(name) {
                    at(
                        def.subject.span(),
                        format!("subject name `{name}` must be lower_snake_case"),
                    );
                    ok = false;
                }
            }
            let (Some(citizen), true) = (citizen, ok) else {
                continue;
            };
            let key = if def.key.is_empty() {
                def.subject.get_ref().keys().cloned().collect()
            } else {
                def.key.clone()
            };
            if let Some(unknown) = key.iter().find(|k| !def.subject.get_ref().contains_key(*k)) {
                at(
                    def.subject.span(),
                    format!("`key` names `{unknown}`, which is not in `subject`"),
                );
                continue;
            }
            rules.push(Rule {
                event_type: event_type.clone(),
                source: def.source.get_ref().clone(),
                category: def.category.get_ref().clone(),
                when: def
                    .when
                    .as_ref()
                    .map(|w| w.get_ref().clone())
                    .unwrap_or_default(),
                citizen,
                subject: def.subject.get_ref().clone(),
                key,
                occurred_at: def.occurred_at.clone(),
            });
        }
        for (name, def) in &parsed.sources {
            if !used.contains(name) {
                at(
                    def.span(),
                    format!("source `{name}` has no [[events]] rule"),
                );
            }
        }
        if problems.is_empty() {
            Ok(Self { sources, rules })
        } else {
            Err(problems)
        }
    }

    /// One line per rule for `civicgraph check`: `JobLost <- ui-claims (poll ui.claims_changed_since)`.
    pub fn summary(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|rule| {
                let how = match self
                    .sources
                    .get(&rule.source)
                    .map(|s| (&s.kind, &s.connector))
                {
                    Some((SourceKind::Poll { operation, .. }, connector)) => {
                        format!("poll {connector}.{operation}")
                    }
                    Some((SourceKind::Scan { operation, .. }, connector)) => {
                        format!("scan {connector}.{operation}")
                    }
                    Some((SourceKind::Inbound { .. }, connector)) => {
                        format!("POST /events/{connector}")
                    }
                    Some((SourceKind::Mutation { field }, _)) => format!("mutation {field}"),
                    None => "?".to_string(),
                };
                format!("{} <- {} ({how})", rule.event_type, rule.source)
            })
            .collect()
    }

    /// Every event type the rules can produce.
    pub fn event_types(&self) -> BTreeSet<String> {
        self.rules.iter().map(|r| r.event_type.clone()).collect()
    }

    /// The inbound source answering `POST /events/{connector}`.
    pub fn inbound(&self, connector: &str) -> Option<&Source> {
        self.sources
            .values()
            .find(|s| matches!(s.kind, SourceKind::Inbound { .. }) && s.connector == connector)
    }

    /// The mutation sources of a `Mutation` field.
    pub fn mutation_source(&self, field: &str) -> Option<&Source> {
        self.sources
            .values()
            .find(|s| matches!(&s.kind, SourceKind::Mutation { field: f } if f == field))
    }

    /// The events in one change from `source`: each rule of the source whose condition holds
    /// and whose citizen and ids are all present. A change that names no citizen is skipped.
    pub fn detect(&self, source: &str, change: &Value, today: NaiveDate) -> Vec<Detection> {
        self.rules
            .iter()
            .filter(|rule| rule.source == source && rule.when.matches(change, today))
            .filter_map(|rule| {
                let citizen_value = match &rule.citizen {
                    CitizenFrom::Field(field) | CitizenFrom::Key { field, .. } => {
                        scalar_text(change, field)?
                    }
                };
                let mut subject = Map::new();
                for (name, field) in &rule.subject {
                    subject.insert(name.clone(), Value::from(scalar_text(change, field)?));
                }
                let mut key = rule.event_type.clone();
                for (i, name) in rule.key.iter().enumerate() {
                    key.push(if i == 0 { ':' } else { '|' });
                    key.push_str(name);
                    key.push('=');
                    key.push_str(subject.get(name)?.as_str()?);
                }
                let occurred_at = rule
                    .occurred_at
                    .as_ref()
                    .and_then(|field| scalar_text(change, field))
                    .and_then(|text| parse_time(&text));
                Some(Detection {
                    event_type: rule.event_type.clone(),
                    category: rule.category.clone(),
                    citizen: (rule.citizen.clone(), citizen_value),
                    subject,
                    idempotency_key: key,
                    occurred_at,
                })
            })
            .collect()
    }
}

/// An RFC 3339 time, a `YYYY-MM-DD HH:MM:SS` one (UTC), or a date (midnight UTC).
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    if let Ok(at) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(at.and_utc());
    }
    if let Ok(at) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(at.and_utc());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

/// The larger of two watermarks: numbers by value, anything else as text (ISO times sort).
pub fn later_watermark(a: &str, b: &str) -> bool {
    match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x > y,
        _ => a > b,
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
