//! Proactive services: the catalogue in `schema/services.toml`, the suggestions it makes from a
//! citizen's joined record, and the offers life events make.
//!
//! - The **catalogue** names each service, the agency that provides it, the event types that
//!   offer it (`JobLost` → unemployment benefit) and a condition over the citizen's record that
//!   suggests it. Conditions are data in the operators of the rules file ([`super::condition`]),
//!   checked against the citizen graph when the gateway loads, so a misspelt field is a
//!   `civicgraph check` error at its line rather than a service nobody is ever suggested.
//! - **Suggestions** are computed by the graph (`Citizen.suggestedServices`), which reads the
//!   record through its own resolvers with the caller's rights; [`Catalogue::suggest`] only
//!   decides over what it was allowed to read.
//! - **Offers**: the [`OfferRelay`] tails the outbox and turns each event whose type triggers a
//!   service into an offer, in the same transaction that moves its own watermark. A citizen
//!   accepts or dismisses an offer ([`ServiceOffers`]); accepting records a
//!   `ServiceOfferAccepted` event addressed to the providing agency alone, so its webhook
//!   subscribers hear of it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use super::condition::{Condition, Test};
use super::outbox::{LifeEvent, Mark, NewEvent, Outbox, OutboxError};
use crate::config::{Diagnostic, TomlFile, TrustConfig, is_code, quoted_list};
use crate::store::on_pool;

/// The catalogue's file name, in the schema directory beside the graph its conditions read.
pub const CATALOGUE_FILE: &str = "services.toml";

/// The `event_sources` row of the offer relay: its watermark is the last outbox `seq` it read.
pub const OFFERS_SOURCE: &str = "services:offers";

/// The event recorded when a citizen accepts an offer; only the providing agency receives it.
pub const OFFER_ACCEPTED: &str = "ServiceOfferAccepted";

/// The category of [`OFFER_ACCEPTED`] events.
pub const OFFERS_CATEGORY: &str = "services.offers";

/// The `source` of the events the offers record.
pub const SERVICES_SOURCE: &str = "services";

/// The event types the life-events design documents. The rules file is the authority on which
/// types exist; until its loader hands `check` its own list, triggers are checked against these.
pub const DOCUMENTED_EVENT_TYPES: [&str; 5] = [
    "JobLost",
    "BirthRegistered",
    "AddressChanged",
    "VehicleRegistrationExpiring",
    "RetirementAgeReached",
];

/// The root type every condition path starts from.
pub const CONDITION_ROOT: &str = "Citizen";

/// The most events the relay reads in one pass.
const RELAY_BATCH: i64 = 500;

/// How long the relay waits for a missing `seq` before it takes it for a rolled-back insert
/// rather than one not yet committed (PostgreSQL hands out numbers before commit).
const GAP_GRACE: chrono::Duration = chrono::Duration::seconds(5);

/// How long an accepted offer may wait for its event before the relay records it (the
/// accepting request records it itself; this catches a crash in between).
const NOTIFY_GRACE: chrono::Duration = chrono::Duration::seconds(30);

/// What a condition path leads to in the graph, which decides the operators that apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    /// A scalar, by name (`String`, `Int`, `Date`, `Money`, …).
    Scalar(String),
    /// An enum, with its values.
    Enum(Vec<String>),
    /// An object type, by name: only `present` applies.
    Object(String),
}

/// The graph's answer to "what is at this dotted path from `Citizen`?", so the catalogue can be
/// checked without the events room knowing the graph's internals.
pub trait FieldTypes {
    /// What `path` (GraphQL field names joined by `.`) leads to, or why it leads nowhere.
    fn field_kind(&self, path: &str) -> Result<FieldKind, String>;
}

/// One service of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Its code, e.g. `unemployment-benefit`.
    pub id: String,
    /// What citizens call it.
    pub name: String,
    /// One or two sentences for citizens.
    pub description: String,
    /// The providing agency (a `[trust.agencies]` code): it hears of accepted offers.
    pub agency: String,
    /// Event types that make an offer of it.
    pub triggers: Vec<String>,
    /// Why it is suggested, in words a citizen reads.
    pub reason: String,
    /// When it is suggested; empty means it is only ever offered by an event.
    pub when: Condition,
}

/// A service suggested for a citizen, and the values in their record that made it so.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion<'a> {
    /// The service.
    pub service: &'a Service,
    /// `path = value` for each condition, e.g. `unemploymentClaims.status = PENDING`.
    pub matched: Vec<String>,
}

/// The loaded catalogue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalogue {
    services: Vec<Service>,
    /// Condition paths that end at an object (selected as `{ __typename }`).
    object_paths: BTreeSet<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    #[serde(default)]
    services: BTreeMap<Spanned<String>, Spanned<RawService>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    #[serde(default)]
    description: String,
    agency: Spanned<String>,
    #[serde(default)]
    triggers: Vec<Spanned<String>>,
    reason: String,
    #[serde(default)]
    when: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

impl Catalogue {
    /// Reads `services.toml` from the schema directory. A missing file is an empty catalogue
    /// (a graph without proactive services); every problem in a present one is reported.
    pub fn load(
        schema_dir: &std::path::Path,
        vars: &crate::config::Vars,
        fields: Option<&dyn FieldTypes>,
        trust: &TrustConfig,
        known_event_types: &BTreeSet<String>,
    ) -> (Self, Vec<Diagnostic>) {
        let path = schema_dir.join(CATALOGUE_FILE);
        let shown = std::env::current_dir()
            .ok()
            .and_then(|cwd| {
                path.strip_prefix(&cwd)
                    .ok()
                    .map(std::path::Path::to_path_buf)
            })
            .unwrap_or_else(|| path.clone());
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return (Self::default(), Vec::new());
            }
            Err(error) => {
                return (
                    Self::default(),
                    vec![Diagnostic::file(
                        &shown,
                        format!("cannot read this file: {error}"),
                    )],
                );
            }
        };
        match TomlFile::from_text(shown, &text, vars) {
            Ok(file) => Self::parse(&file, fields, trust, known_event_types),
            Err(diagnostics) => (Self::default(), diagnostics),
        }
    }

    /// Parses and checks a catalogue file: agencies against `[trust.agencies]`, triggers
    /// against `known_event_types`, condition paths and operators against the graph (when
    /// `fields` is given). A service with a problem is left out; every problem is reported.
    pub fn parse(
        file: &TomlFile,
        fields: Option<&dyn FieldTypes>,
        trust: &TrustConfig,
        known_event_types: &BTreeSet<String>,
    ) -> (Self, Vec<Diagnostic>) {
        let raw: RawCatalogue = match file.parse() {
            Ok(raw) => raw,
            Err(diagnostic) => return (Self::default(), vec![diagnostic]),
        };
        let mut diagnostics = Vec::new();
        let mut entries: Vec<_> = raw.services.into_iter().collect();
        entries.sort_by_key(|(id, _)| id.span().start);
        let mut catalogue = Self::default();
        for (id, raw) in entries {
            let at = |span: std::ops::Range<usize>| file.location(&span);
            let before = diagnostics.len();
            let service_id = id.get_ref().clone();
            if !is_code(&service_id) {
                diagnostics.push(Diagnostic::at(
                    at(id.span()),
                    format!(
                        "service id `{service_id}` must be a code: lowercase letters, digits, `-`, `.` or `_`, starting with a letter"
                    ),
                ));
            }
            let span = raw.span();
            let raw = raw.into_inner();
            if raw.name.trim().is_empty() {
                diagnostics.push(Diagnostic::at(
                    at(span.clone()),
                    format!("service `{service_id}` needs a `name` citizens recognise"),
                ));
            }
            let agency = raw.agency.get_ref();
            if !trust.agencies.contains_key(agency) {
                let known: Vec<&str> = trust.agencies.keys().map(String::as_str).collect();
                diagnostics.push(Diagnostic::at(
                    at(raw.agency.span()),
                    format!(
                        "unknown agency `{agency}`; the agencies in [trust.agencies] are {}",
                        or_none(&known)
                    ),
                ));
            }
            for trigger in &raw.triggers {
                if !known_event_types.contains(trigger.get_ref()) {
                    let known: Vec<&str> = known_event_types.iter().map(String::as_str).collect();
                    diagnostics.push(Diagnostic::at(
                        at(trigger.span()),
                        format!(
                            "unknown event type `{}`; the life-event types are {}",
                            trigger.get_ref(),
                            or_none(&known)
                        ),
                    ));
                }
            }
            if raw.triggers.is_empty() && raw.when.is_empty() {
                diagnostics.push(Diagnostic::at(
                    at(span.clone()),
                    format!(
                        "service `{service_id}` has neither `triggers` nor `when`, so it is never offered nor suggested"
                    ),
                ));
            }
            let mut when = BTreeMap::new();
            let mut objects = Vec::new();
            let mut conditions: Vec<_> = raw.when.into_iter().collect();
            conditions.sort_by_key(|(path, _)| path.span().start);
            for (path, value) in conditions {
                let key = path.get_ref().clone();
                let test: Test = match value.get_ref().clone().try_into() {
                    Ok(test) => test,
                    Err(error) => {
                        diagnostics.push(Diagnostic::at(
                            at(value.span()),
                            format!("`when.\"{key}\"`: {}", operator_message(&error)),
                        ));
                        continue;
                    }
                };
                if test.is_empty() {
                    diagnostics.push(Diagnostic::at(
                        at(value.span()),
                        format!(
                            "`when.\"{key}\"` has no operator; use one of {}",
                            quoted_list(OPERATORS)
                        ),
                    ));
                    continue;
                }
                if let Some(fields) = fields {
                    match fields.field_kind(&key) {
                        Err(reason) => diagnostics.push(Diagnostic::at(
                            at(path.span()),
                            format!("`when.\"{key}\"`: {reason}"),
                        )),
                        Ok(kind) => {
                            for problem in operator_problems(&test, &kind) {
                                diagnostics.push(Diagnostic::at(
                                    at(value.span()),
                                    format!("`when.\"{key}\"`: {problem}"),
                                ));
                            }
                            if matches!(kind, FieldKind::Object(_)) {
                                objects.push(key.clone());
                            }
                        }
                    }
                }
                when.insert(key, test);
            }
            if diagnostics.len() > before {
                continue;
            }
            catalogue.object_paths.extend(objects);
            catalogue.services.push(Service {
                id: service_id,
                name: raw.name,
                description: raw.description,
                agency: raw.agency.into_inner(),
                triggers: raw.triggers.into_iter().map(Spanned::into_inner).collect(),
                reason: raw.reason,
                when: Condition(when),
            });
        }
        (catalogue, diagnostics)
    }

    /// Every service, in file order.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// One service by id.
    pub fn get(&self, id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.id == id)
    }

    /// The services an event of `event_type` offers.
    pub fn triggered_by<'a>(&'a self, event_type: &'a str) -> impl Iterator<Item = &'a Service> {
        self.services
            .iter()
            .filter(move |s| s.triggers.iter().any(|t| t == event_type))
    }

    /// The GraphQL selection set (`{ unemploymentClaims { status } birthDate }`) that reads
    /// every condition's path from a `Citizen`; `None` when no service has a condition.
    pub fn selection(&self) -> Option<String> {
        #[derive(Default)]
        struct Node(BTreeMap<String, Node>);
        fn render(node: &Node, out: &mut String) {
            out.push('{');
            for (name, child) in &node.0 {
                out.push(' ');
                out.push_str(name);
                if !child.0.is_empty() {
                    out.push(' ');
                    render(child, out);
                }
            }
            out.push_str(" }");
        }
        let mut root = Node::default();
        for service in &self.services {
            for path in service.when.0.keys() {
                let mut node = &mut root;
                for part in path.split('.') {
                    node = node.0.entry(part.to_string()).or_default();
                }
                if self.object_paths.contains(path) {
                    node.0.entry("__typename".to_string()).or_default();
                }
            }
        }
        if root.0.is_empty() {
            return None;
        }
        let mut out = String::new();
        render(&root, &mut out);
        Some(out)
    }

    /// The services whose conditions `record` (the citizen as the graph answered the
    /// [`Catalogue::selection`]) meets. A condition on a path the caller could not read (in
    /// `unreadable`, as field names) is not met, even `present = false`: what is withheld is
    /// unknown, not absent.
    pub fn suggest(
        &self,
        record: &Value,
        unreadable: &[Vec<String>],
        today: NaiveDate,
    ) -> Vec<Suggestion<'_>> {
        let blocked = |path: &str| {
            let parts: Vec<&str> = path.split('.').collect();
            unreadable.iter().any(|denied| {
                denied
                    .iter()
                    .zip(&parts)
                    .all(|(denied, part)| denied == part)
            })
        };
        self.services
            .iter()
            .filter(|service| !service.when.0.is_empty())
            .filter(|service| !service.when.0.keys().any(|path| blocked(path)))
            .filter(|service| service.when.matches(record, today))
            .map(|service| Suggestion {
                service,
                matched: service.when.explain(record, today),
            })
            .collect()
    }
}

/// Every condition operator, as written in the file.
const OPERATORS: &[&str] = &[
    "eq",
    "ne",
    "in",
    "not_in",
    "gt",
    "gte",
    "lt",
    "lte",
    "present",
    "within_days",
    "age_at_least",
];

fn or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        quoted_list(items)
    }
}

fn operator_message(error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    match message.strip_prefix("unknown field ") {
        Some(rest) => {
            let name = rest.split(',').next().unwrap_or(rest);
            format!(
                "unknown operator {name}; the operators are {}",
                quoted_list(OPERATORS)
            )
        }
        None => message.to_string(),
    }
}

/// What is wrong with applying `test` to a field of `kind`.
fn operator_problems(test: &Test, kind: &FieldKind) -> Vec<String> {
    let ordering: Vec<&Value> = [&test.gt, &test.gte, &test.lt, &test.lte]
        .into_iter()
        .flatten()
        .collect();
    let equality: Vec<&Value> = test
        .eq
        .iter()
        .chain(&test.ne)
        .chain(test.one_of.iter().flatten())
        .chain(test.not_in.iter().flatten())
        .collect();
    let dated = test.within_days.is_some() || test.age_at_least.is_some();
    let mut problems = Vec::new();
    match kind {
        FieldKind::Object(name) => {
            if !ordering.is_empty() || !equality.is_empty() || dated {
                problems.push(format!(
                    "this is an object (`{name}`): only `present` applies to it"
                ));
            }
        }
        FieldKind::Enum(values) => {
            if !ordering.is_empty() || dated {
                problems.push(
                    "this is an enum: compare it with `eq`, `ne`, `in` or `not_in`".to_string(),
                );
            }
            for value in equality {
                if !value
                    .as_str()
                    .is_some_and(|v| values.iter().any(|e| e == v))
                {
                    let known: Vec<&str> = values.iter().map(String::as_str).collect();
                    problems.push(format!(
                        "{value} is not a value of this enum; it is one of {}",
                        quoted_list(&known)
                    ));
                }
            }
        }
        FieldKind::Scalar(scalar) => {
            let is_date = matches!(scalar.as_str(), "Date" | "DateTime");
            if dated && !is_date {
                problems.push(format!(
                    "`within_days` and `age_at_least` apply to a `Date` or a `DateTime`; this is `{scalar}`"
                ));
            }
            if !ordering.is_empty() && matches!(scalar.as_str(), "Money" | "Boolean") {
                problems.push(format!(
                    "a `{scalar}` cannot be ordered here (amounts would compare as text); use `eq`, `ne`, `in` or `not_in`"
                ));
            }
            let fits = |value: &Value| match scalar.as_str() {
                "Int" | "Float" => value.is_number(),
                "Boolean" => value.is_boolean(),
                "ID" => value.is_string() || value.is_number(),
                "String" | "Date" | "DateTime" | "Money" => value.is_string(),
                _ => true,
            };
            for value in equality.into_iter().chain(ordering) {
                if !fits(value) {
                    problems.push(format!("{value} cannot be compared with `{scalar}`"));
                }
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Offers
// ---------------------------------------------------------------------------------------------

/// Where an offer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferState {
    /// Made, waiting for the citizen.
    Offered,
    /// The citizen wants it; the providing agency has been told.
    Accepted,
    /// The citizen does not want it.
    Dismissed,
}

impl OfferState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offered => "offered",
            Self::Accepted => "accepted",
            Self::Dismissed => "dismissed",
        }
    }

    /// The GraphQL enum value.
    pub fn graphql_name(self) -> &'static str {
        match self {
            Self::Offered => "OFFERED",
            Self::Accepted => "ACCEPTED",
            Self::Dismissed => "DISMISSED",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "offered" => Self::Offered,
            "accepted" => Self::Accepted,
            "dismissed" => Self::Dismissed,
            _ => return None,
        })
    }
}

/// A service offered to a citizen because of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// `off_<uuid>`.
    pub id: String,
    /// Who it is for.
    pub citizen_id: String,
    /// The catalogue's service id.
    pub service_id: String,
    /// The event that made it.
    pub event_id: String,
    /// That event's type (empty if the event is gone).
    pub event_type: String,
    /// Where it stands.
    pub state: OfferState,
    /// When it was made.
    pub offered_at: DateTime<Utc>,
    /// When it last changed.
    pub changed_at: DateTime<Utc>,
}

/// Why an offer could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    /// No offer with this id belongs to the citizen.
    #[error("no such service offer")]
    NotFound,
    /// The offer was already accepted or dismissed.
    #[error("the service offer is already {}", .0.as_str())]
    Conflict(OfferState),
    /// The offer's service has left the catalogue, so no agency can be told.
    #[error("service `{0}` is no longer in the catalogue")]
    Withdrawn(String),
    /// The store failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

impl From<sqlx::Error> for OfferError {
    fn from(error: sqlx::Error) -> Self {
        Self::Outbox(OutboxError::Store(error))
    }
}

fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_ms(at: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(at).single().unwrap_or_default()
}

const OFFER_SELECT: &str = "SELECT o.id, o.citizen_id, o.service_id, o.event_id, \
                            COALESCE(e.event_type, ''), o.state, o.created_at, o.changed_at \
                            FROM service_offers o LEFT JOIN life_events e ON e.id = o.event_id";

type OfferRow = (String, String, String, String, String, String, i64, i64);

fn offer_of(row: OfferRow) -> Result<Offer, OutboxError> {
    let (id, citizen_id, service_id, event_id, event_type, state, created, changed) = row;
    Ok(Offer {
        state: OfferState::parse(&state)
            .ok_or_else(|| OutboxError::Corrupt("a service offer's state".into()))?,
        id,
        citizen_id,
        service_id,
        event_id,
        event_type,
        offered_at: from_ms(created),
        changed_at: from_ms(changed),
    })
}

/// Citizens' offers in the gateway's store, and what accepting one tells the agency.
#[derive(Debug, Clone)]
pub struct ServiceOffers {
    outbox: Outbox,
    catalogue: Arc<Catalogue>,
}

impl ServiceOffers {
    /// Offers of `catalogue`'s services, kept beside the outbox they come from.
    pub fn new(outbox: Outbox, catalogue: Arc<Catalogue>) -> Self {
        Self { outbox, catalogue }
    }

    /// The catalogue the offers are of.
    pub fn catalogue(&self) -> &Arc<Catalogue> {
        &self.catalogue
    }

    /// The event that made `offer` (`None` only if the outbox lost it).
    pub async fn event_of(&self, offer: &Offer) -> Result<Option<LifeEvent>, OutboxError> {
        self.outbox.event(&offer.event_id).await
    }

    /// A citizen's offers, newest first (at most 200).
    pub async fn of_citizen(&self, citizen_id: &str) -> Result<Vec<Offer>, OutboxError> {
        let sql = format!(
            "{OFFER_SELECT} WHERE o.citizen_id = $1 ORDER BY o.created_at DESC, o.id LIMIT 200"
        );
        let rows: Vec<OfferRow> = on_pool!(self.outbox.store(), pool => {
            sqlx::query_as(&sql).bind(citizen_id).fetch_all(pool).await?
        });
        rows.into_iter().map(offer_of).collect()
    }

    /// One of the citizen's offers; `None` when it does not exist or is someone else's.
    pub async fn get(&self, citizen_id: &str, id: &str) -> Result<Option<Offer>, OutboxError> {
        let sql = format!("{OFFER_SELECT} WHERE o.id = $1 AND o.citizen_id = $2");
        let row: Option<OfferRow> = on_pool!(self.outbox.store(), pool => {
            sqlx::query_as(&sql).bind(id).bind(citizen_id).fetch_optional(pool).await?
        });
        row.map(offer_of).transpose()
    }

    /// Moves an offered offer to `to`; a conflict names where it already stands.
    async fn change(&self, citizen_id: &str, id: &str, to: OfferState) -> Result<(), OfferError> {
        let Some(offer) = self.get(citizen_id, id).await? else {
            return Err(OfferError::NotFound);
        };
        if offer.state != OfferState::Offered {
            return Err(OfferError::Conflict(offer.state));
        }
        if to == OfferState::Accepted && self.catalogue.get(&offer.service_id).is_none() {
            return Err(OfferError::Withdrawn(offer.service_id));
        }
        let changed = on_pool!(self.outbox.store(), pool => {
            sqlx::query(
                "UPDATE service_offers SET state = $3, changed_at = $4 \
                 WHERE id = $1 AND citizen_id = $2 AND state = 'offered'",
            )
            .bind(id)
            .bind(citizen_id)
            .bind(to.as_str())
            .bind(ms(Utc::now()))
            .execute(pool)
            .await?
            .rows_affected()
        });
        if changed == 0 {
            // Another request changed it between the read and the update.
            let now = self.get(citizen_id, id).await?;
            return Err(now.map_or(OfferError::NotFound, |o| OfferError::Conflict(o.state)));
        }
        Ok(())
    }

    /// The citizen accepts an offer: it becomes `accepted` and a `ServiceOfferAccepted` event
    /// for the providing agency alone goes into the outbox. Should recording the event fail,
    /// the offer is put back; should the gateway die in between, the relay records it later
    /// (its idempotency key makes either way one event).
    pub async fn accept(&self, citizen_id: &str, id: &str) -> Result<Offer, OfferError> {
        self.change(citizen_id, id, OfferState::Accepted).await?;
        let offer = self
            .get(citizen_id, id)
            .await?
            .ok_or(OfferError::NotFound)?;
        if let Err(error) = self.notify(&offer).await {
            // Best effort: if this fails too, the relay records the event later instead.
            let put_back: Result<u64, sqlx::Error> = on_pool!(self.outbox.store(), pool => {
                sqlx::query(
                    "UPDATE service_offers SET state = 'offered' WHERE id = $1 AND state = 'accepted'",
                )
                .bind(id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
            });
            if let Err(put_back) = put_back {
                tracing::warn!(error = %put_back, "Could not put an accepted offer back after its event failed.");
            }
            return Err(error);
        }
        Ok(offer)
    }

    /// The citizen dismisses an offer.
    pub async fn dismiss(&self, citizen_id: &str, id: &str) -> Result<Offer, OfferError> {
        self.change(citizen_id, id, OfferState::Dismissed).await?;
        self.get(citizen_id, id).await?.ok_or(OfferError::NotFound)
    }

    /// Records the accepted offer's event (a second recording is a no-op).
    async fn notify(&self, offer: &Offer) -> Result<(), OfferError> {
        let service = self
            .catalogue
            .get(&offer.service_id)
            .ok_or_else(|| OfferError::Withdrawn(offer.service_id.clone()))?;
        let mut subject = Map::new();
        subject.insert("offer".into(), Value::String(offer.id.clone()));
        subject.insert("service".into(), Value::String(service.id.clone()));
        let event = NewEvent {
            event_type: OFFER_ACCEPTED.to_string(),
            category: OFFERS_CATEGORY.to_string(),
            citizen_id: offer.citizen_id.clone(),
            subject,
            idempotency_key: accepted_key(&offer.id),
            source: SERVICES_SOURCE.to_string(),
            occurred_at: offer.changed_at,
            audience: Some(service.agency.clone()),
        };
        self.outbox
            .record(SERVICES_SOURCE, Mark::Nothing, vec![event])
            .await?;
        Ok(())
    }

    /// Records the event of every offer accepted a while ago whose event is missing (the
    /// gateway stopped between the two); returns how many.
    pub async fn notify_unsent(&self) -> Result<usize, OfferError> {
        let sql = format!(
            "{OFFER_SELECT} WHERE o.state = 'accepted' AND o.changed_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM life_events a WHERE a.idempotency_key = '{OFFER_ACCEPTED}:' || o.id) \
             ORDER BY o.changed_at LIMIT 100"
        );
        let before = ms(Utc::now() - NOTIFY_GRACE);
        let rows: Vec<OfferRow> = on_pool!(self.outbox.store(), pool => {
            sqlx::query_as(&sql).bind(before).fetch_all(pool).await?
        });
        let mut sent = 0;
        for row in rows {
            let offer = offer_of(row)?;
            match self.notify(&offer).await {
                Ok(()) => sent += 1,
                // Left in place: the service is gone, so there is nobody to tell.
                Err(OfferError::Withdrawn(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(sent)
    }
}

/// The idempotency key of an accepted offer's event.
pub fn accepted_key(offer_id: &str) -> String {
    format!("{OFFER_ACCEPTED}:{offer_id}")
}

/// Turns events into offers: it tails the outbox from its own watermark, under a lease so one
/// gateway instance works at a time.
#[derive(Debug, Clone)]
pub struct OfferRelay {
    outbox: Outbox,
    offers: ServiceOffers,
    owner: String,
    lease: Duration,
}

/// What one pass of the relay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayPass {
    /// Events read past the watermark.
    pub events: usize,
    /// Offers made (an offer made before is not counted).
    pub offers: usize,
    /// Whether another instance holds the lease (nothing was read).
    pub standby: bool,
}

impl OfferRelay {
    /// A relay of `catalogue`'s services over `outbox`, holding its lease for `lease` at a time.
    pub fn new(outbox: Outbox, catalogue: Arc<Catalogue>, lease: Duration) -> Self {
        Self {
            offers: ServiceOffers::new(outbox.clone(), catalogue),
            outbox,
            owner: format!("offers-{}", uuid::Uuid::new_v4().simple()),
            lease,
        }
    }

    /// One pass: takes the lease, reads the events after the watermark, and writes their
    /// offers with the new watermark in one transaction.
    pub async fn pass(&self) -> Result<RelayPass, OfferError> {
        let Some(watermark) = self
            .outbox
            .lease_source(OFFERS_SOURCE, "0", &self.owner, self.lease)
            .await?
        else {
            return Ok(RelayPass {
                standby: true,
                ..RelayPass::default()
            });
        };
        let after: i64 = watermark.parse().map_err(|_| {
            OutboxError::Corrupt(format!("the `{OFFERS_SOURCE}` watermark is not a number"))
        })?;
        let events = self.outbox.events_after(after, RELAY_BATCH).await?;
        let ready = contiguous(after, &events, Utc::now());
        let mut pass = RelayPass {
            events: ready.len(),
            ..RelayPass::default()
        };
        if let Some(last) = ready.last() {
            pass.offers = self.write(last.seq, ready).await?;
        }
        Ok(pass)
    }

    /// Writes the offers of `events` and moves the watermark to `last`, while the lease holds.
    async fn write(&self, last: i64, events: &[LifeEvent]) -> Result<usize, OfferError> {
        let catalogue = Arc::clone(self.offers.catalogue());
        let rows: Vec<(&LifeEvent, &Service)> = events
            .iter()
            // An event addressed to one agency (an accepted offer) is not about the citizen's
            // life, and offers nothing.
            .filter(|event| event.audience.is_none())
            .flat_map(|event| {
                catalogue
                    .triggered_by(&event.event_type)
                    .map(move |service| (event, service))
            })
            .collect();
        let now = ms(Utc::now());
        let made = on_pool!(self.outbox.store(), pool => {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            let moved = sqlx::query(
                "UPDATE event_sources SET watermark = $2, updated_at = $3 \
                 WHERE source = $1 AND lease_owner = $4",
            )
            .bind(OFFERS_SOURCE)
            .bind(last.to_string())
            .bind(now)
            .bind(&self.owner)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(0);
            }
            let mut made = 0;
            for (event, service) in &rows {
                let id = format!("off_{}", uuid::Uuid::new_v4().simple());
                made += sqlx::query(
                    "INSERT INTO service_offers (id, citizen_id, service_id, event_id, state, \
                     created_at, changed_at) VALUES ($1, $2, $3, $4, 'offered', $5, $5) \
                     ON CONFLICT (citizen_id, service_id, event_id) DO NOTHING",
                )
                .bind(&id)
                .bind(&event.citizen_id)
                .bind(&service.id)
                .bind(&event.id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            made
        });
        Ok(usize::try_from(made).unwrap_or(usize::MAX))
    }

    /// Runs passes every `every` (at once again after a full batch) until `stop` turns true;
    /// now and then, while it holds the lease, it also records the events of accepted offers
    /// that a crash left unrecorded ([`ServiceOffers::notify_unsent`]).
    pub fn spawn(self, every: Duration, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let sweep_every = NOTIFY_GRACE.to_std().unwrap_or(Duration::from_secs(30));
            let mut swept = tokio::time::Instant::now();
            loop {
                if *stop.borrow() {
                    break;
                }
                let busy = match self.pass().await {
                    Ok(pass) => {
                        if !pass.standby && swept.elapsed() >= sweep_every {
                            swept = tokio::time::Instant::now();
                            if let Err(error) = self.offers.notify_unsent().await {
                                tracing::warn!(%error, "Recording accepted offers' events failed; retrying later.");
                            }
                        }
                        pass.events as i64 >= RELAY_BATCH
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Service offer relay pass failed; retrying.");
                        false
                    }
                };
                if busy {
                    continue;
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = stop.changed() => {}
                }
            }
        })
    }
}

/// The events that may be read now: in order, stopping at a missing `seq` unless the event
/// after it is older than [`GAP_GRACE`] (then the missing one was rolled back, not late).
fn contiguous(after: i64, events: &[LifeEvent], now: DateTime<Utc>) -> &[LifeEvent] {
    let mut expected = after + 1;
    for (i, event) in events.iter().enumerate() {
        if event.seq != expected && now - event.recorded_at < GAP_GRACE {
            return &events[..i];
        }
        expected = event.seq + 1;
    }
    events
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
