//! The person registry's changing state: addresses that move and children that are born,
//! recorded in a change log that the gateway polls.
//!
//! The synthetic [`Population`] is immutable (tests and benchmarks rely on its exact values),
//! so what changes lives beside it: an overlay of new addresses, applied whenever the
//! registry serves a person, and an append-only log of every change with a sequence number
//! (`seq`, from 1, without gaps) that a poller uses as its watermark. Log entries carry ids
//! only, never names or addresses, as a real registry's change notifications do: whoever needs
//! the new address reads the person.
//!
//! A birth is registered to one or two parents; the child (`C9…`) is not served by
//! `/v1/people`. Each parent gets a log entry, and the registry also announces the birth by
//! webhook (see [`super::changes`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use super::data::{Address, Person, Population, municipality};

/// The most changes one `/v1/changes` answer carries.
pub const MAX_CHANGES_PAGE: usize = 500;
/// Longest street line the registry stores.
pub const MAX_STREET_CHARS: usize = 100;

/// The person registry with its changes: the population plus what happened since.
#[derive(Debug)]
pub struct LiveRegistry {
    population: Arc<Population>,
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    /// New addresses by index in the population, with when they were recorded.
    moved: HashMap<usize, (Address, DateTime<Utc>)>,
    /// Every change, oldest first; `changes[i].seq == i + 1`.
    changes: Vec<RegistryChange>,
    /// Births registered so far.
    births: u64,
}

/// What kind of change a log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The citizen's registered address changed.
    Address,
    /// A child was registered to the citizen as a parent.
    Birth,
}

/// One entry of the registry's change log, as `/v1/changes` serves it: ids only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryChange {
    /// Position in the log, from 1 without gaps: the poller's watermark.
    pub seq: u64,
    /// Names this change: `AC-…` for an address change, `BR-…` for a birth registration.
    pub change_id: String,
    /// What changed.
    pub kind: ChangeKind,
    /// The citizen the change is about (for a birth, the parent).
    pub citizen_id: String,
    /// For a birth: the birth's id (`B…`), shared by the entries of both parents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_id: Option<String>,
    /// For a birth: the child's citizen id (`C9…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_id: Option<String>,
    /// When the registry recorded the change; served as RFC 3339 (UTC, seconds).
    #[serde(serialize_with = "rfc3339")]
    pub recorded_at: DateTime<Utc>,
}

/// An address change as the registry confirms it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressChange {
    /// The log entry's change id, `AC-…`.
    pub change_id: String,
    /// Whose address changed.
    pub citizen_id: String,
    /// The new address, with the county the registry assigns.
    pub address: Address,
}

/// A birth as the registry recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Birth {
    /// `B` and seven digits.
    pub birth_id: String,
    /// The child's citizen id, `C9` and six digits.
    pub child_id: String,
    /// The parents it was registered to, each with a log entry.
    pub parent_ids: Vec<String>,
    /// When it was registered.
    pub registered_at: DateTime<Utc>,
}

/// An address as someone asks the registry to record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAddress {
    /// House number and street.
    pub street: String,
    /// Municipality, one of the registry's.
    pub city: String,
    /// Five digits.
    pub postal_code: String,
}

/// Why the registry refused an address change. Each has a stable code for the JSON error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChangeAddressError {
    /// No person has this id.
    #[error("no person has this id")]
    UnknownPerson,
    /// The street is empty, too long or holds control characters.
    #[error("the street must be 1 to {MAX_STREET_CHARS} printable characters")]
    BadStreet,
    /// The city is not a municipality of the registry's region.
    #[error("the city is not a municipality the registry keeps")]
    UnknownCity,
    /// The postal code is not five digits.
    #[error("the postal code must be five digits")]
    BadPostalCode,
}

impl ChangeAddressError {
    /// The code the registry's JSON error carries.
    pub const fn code(self) -> &'static str {
        match self {
            Self::UnknownPerson => "not_found",
            Self::BadStreet => "bad_street",
            Self::UnknownCity => "unknown_city",
            Self::BadPostalCode => "bad_postal_code",
        }
    }
}

fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

impl LiveRegistry {
    /// A registry holding `population`, with no changes yet.
    pub fn new(population: Arc<Population>) -> Self {
        Self {
            population,
            state: RwLock::new(State::default()),
        }
    }

    /// The unchanging part: who was registered when the registry started.
    pub fn population(&self) -> &Arc<Population> {
        &self.population
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Every write below leaves the state whole before it can panic, so a poisoned lock
        // still guards consistent data.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A person as the registry now serves them: borrowed when they never moved, a patched
    /// copy when they did. `None` for unknown ids.
    pub fn person(&self, id: &str) -> Option<Cow<'_, Person>> {
        let index = self.population.index_of(id)?;
        Some(self.current(index, &self.read()))
    }

    /// People at positions `range` of the population, as currently registered.
    pub fn people(&self, range: std::ops::Range<usize>) -> Vec<Cow<'_, Person>> {
        let state = self.read();
        range.map(|index| self.current(index, &state)).collect()
    }

    fn current(&self, index: usize, state: &State) -> Cow<'_, Person> {
        let person = &self.population.people()[index];
        match state.moved.get(&index) {
            None => Cow::Borrowed(person),
            Some((address, at)) => {
                let mut moved = person.clone();
                moved.address = address.clone();
                moved.updated_at = *at;
                Cow::Owned(moved)
            }
        }
    }

    /// Checks and records a new address for `citizen_id` at `now`, appending an `address`
    /// change to the log. The city's spelling and county are the registry's own.
    pub fn change_address(
        &self,
        citizen_id: &str,
        address: &NewAddress,
        now: DateTime<Utc>,
    ) -> Result<AddressChange, ChangeAddressError> {
        let index = self
            .population
            .index_of(citizen_id)
            .ok_or(ChangeAddressError::UnknownPerson)?;
        let address = validate(address)?;
        let mut state = self.write();
        let seq = next_seq(&state);
        let change_id = format!("AC-{seq:08}");
        state.changes.push(RegistryChange {
            seq,
            change_id: change_id.clone(),
            kind: ChangeKind::Address,
            citizen_id: citizen_id.to_string(),
            birth_id: None,
            child_id: None,
            recorded_at: now,
        });
        state.moved.insert(index, (address.clone(), now));
        Ok(AddressChange {
            change_id,
            citizen_id: citizen_id.to_string(),
            address,
        })
    }

    /// Registers a newborn to `parent_ids` (unknown ids are left out) at `now`: one `birth`
    /// entry per parent. `None` when no parent is known, and then nothing is recorded.
    pub fn register_birth(&self, parent_ids: &[&str], now: DateTime<Utc>) -> Option<Birth> {
        let mut parents: Vec<String> = Vec::with_capacity(parent_ids.len());
        for id in parent_ids {
            if self.population.index_of(id).is_some() && !parents.iter().any(|p| p == id) {
                parents.push((*id).to_string());
            }
        }
        if parents.is_empty() {
            return None;
        }
        let mut state = self.write();
        state.births += 1;
        let number = state.births;
        let birth_id = format!("B{number:07}");
        let child_id = child_id(self.population.len(), number);
        for parent in &parents {
            let seq = next_seq(&state);
            state.changes.push(RegistryChange {
                seq,
                change_id: format!("BR-{seq:08}"),
                kind: ChangeKind::Birth,
                citizen_id: parent.clone(),
                birth_id: Some(birth_id.clone()),
                child_id: Some(child_id.clone()),
                recorded_at: now,
            });
        }
        Some(Birth {
            birth_id,
            child_id,
            parent_ids: parents,
            registered_at: now,
        })
    }

    /// The changes after `since`, oldest first, at most `limit` of them.
    pub fn changes_since(&self, since: u64, limit: usize) -> Vec<RegistryChange> {
        let state = self.read();
        let start = usize::try_from(since)
            .unwrap_or(usize::MAX)
            .min(state.changes.len());
        let end = start.saturating_add(limit).min(state.changes.len());
        state.changes[start..end].to_vec()
    }

    /// How many changes the log holds (also the last `seq`).
    pub fn change_count(&self) -> u64 {
        self.read().changes.len() as u64
    }
}

fn next_seq(state: &State) -> u64 {
    state.changes.len() as u64 + 1
}

/// `C9` and six digits while that stays clear of the population's own ids (below 9 000 000
/// people), else the ids after the population's.
fn child_id(population: usize, number: u64) -> String {
    if population < 9_000_000 && number < 1_000_000 {
        format!("C9{number:06}")
    } else {
        let index = usize::try_from(number).unwrap_or(usize::MAX);
        super::data::citizen_id(population.saturating_add(index).saturating_sub(1))
    }
}

fn validate(address: &NewAddress) -> Result<Address, ChangeAddressError> {
    let street = address.street.trim();
    if street.is_empty()
        || street.chars().count() > MAX_STREET_CHARS
        || street.chars().any(char::is_control)
    {
        return Err(ChangeAddressError::BadStreet);
    }
    let (city, county) = municipality(&address.city).ok_or(ChangeAddressError::UnknownCity)?;
    let postal_code = address.postal_code.trim();
    if postal_code.len() != 5 || !postal_code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ChangeAddressError::BadPostalCode);
    }
    Ok(Address {
        street: street.to_string(),
        city: city.to_string(),
        postal_code: postal_code.to_string(),
        county: county.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> LiveRegistry {
        LiveRegistry::new(Arc::new(Population::generate(30, 5)))
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + seconds, 0).expect("a valid instant")
    }

    fn address(street: &str, city: &str, postal_code: &str) -> NewAddress {
        NewAddress {
            street: street.to_string(),
            city: city.to_string(),
            postal_code: postal_code.to_string(),
        }
    }

    #[test]
    fn a_move_shows_on_the_person_and_in_the_log() {
        let registry = registry();
        let before = registry.person("C0000002").expect("a person").into_owned();
        let change = registry
            .change_address(
                "C0000002",
                &address(" 12 Quarry Lane ", "lakeside", "42211"),
                at(0),
            )
            .expect("a valid address");
        assert_eq!(change.change_id, "AC-00000001");
        assert_eq!(
            change.address,
            Address {
                street: "12 Quarry Lane".to_string(),
                city: "Lakeside".to_string(),
                postal_code: "42211".to_string(),
                county: "Hollis County".to_string(),
            }
        );
        let after = registry.person("C0000002").expect("a person");
        assert_eq!(after.address, change.address);
        assert_eq!(after.updated_at, at(0));
        assert_eq!(after.full_name, before.full_name);
        assert!(matches!(
            registry.person("C0000003"),
            Some(Cow::Borrowed(_))
        ));
        let log = registry.changes_since(0, 10);
        assert_eq!(log.len(), 1);
        assert_eq!(
            serde_json::to_value(&log[0]).expect("JSON"),
            serde_json::json!({"seq": 1, "change_id": "AC-00000001", "kind": "address",
                "citizen_id": "C0000002", "recorded_at": "2026-11-18T11:06:40Z"})
        );
    }

    #[test]
    fn bad_addresses_change_nothing() {
        let registry = registry();
        let cases = [
            (
                "C0000099",
                address("1 Elm Road", "Upton", "44100"),
                ChangeAddressError::UnknownPerson,
            ),
            (
                "C0000001",
                address("  ", "Upton", "44100"),
                ChangeAddressError::BadStreet,
            ),
            (
                "C0000001",
                address(&"x".repeat(101), "Upton", "44100"),
                ChangeAddressError::BadStreet,
            ),
            (
                "C0000001",
                address("1 Elm\nRoad", "Upton", "44100"),
                ChangeAddressError::BadStreet,
            ),
            (
                "C0000001",
                address("1 Elm Road", "Springfield", "44100"),
                ChangeAddressError::UnknownCity,
            ),
            (
                "C0000001",
                address("1 Elm Road", "Upton", "4410"),
                ChangeAddressError::BadPostalCode,
            ),
            (
                "C0000001",
                address("1 Elm Road", "Upton", "4410x"),
                ChangeAddressError::BadPostalCode,
            ),
        ];
        for (id, new, expected) in cases {
            assert_eq!(
                registry.change_address(id, &new, at(0)),
                Err(expected),
                "{new:?}"
            );
        }
        assert_eq!(registry.change_count(), 0);
        assert!(matches!(
            registry.person("C0000001"),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn a_birth_logs_one_entry_per_known_parent() {
        let registry = registry();
        assert_eq!(registry.register_birth(&["C7777777"], at(0)), None);
        let birth = registry
            .register_birth(&["C0000004", "C0000009", "C0000004", "C7777777"], at(5))
            .expect("known parents");
        assert_eq!(birth.birth_id, "B0000001");
        assert_eq!(birth.child_id, "C9000001");
        assert_eq!(birth.parent_ids, ["C0000004", "C0000009"]);
        let second = registry
            .register_birth(&["C0000010"], at(6))
            .expect("a parent");
        assert_eq!(
            (second.birth_id.as_str(), second.child_id.as_str()),
            ("B0000002", "C9000002")
        );
        let log = registry.changes_since(0, 10);
        let seen: Vec<(u64, &str, &str, Option<&str>)> = log
            .iter()
            .map(|c| {
                (
                    c.seq,
                    c.change_id.as_str(),
                    c.citizen_id.as_str(),
                    c.birth_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (1, "BR-00000001", "C0000004", Some("B0000001")),
                (2, "BR-00000002", "C0000009", Some("B0000001")),
                (3, "BR-00000003", "C0000010", Some("B0000002")),
            ]
        );
        assert!(log.iter().all(|c| c.kind == ChangeKind::Birth));
        assert!(
            registry.person("C9000001").is_none(),
            "children are not served"
        );
    }

    #[test]
    fn the_log_pages_from_a_watermark() {
        let registry = registry();
        for n in 0..7 {
            registry
                .change_address(
                    "C0000001",
                    &address(&format!("{n} Mill Way"), "Upton", "44101"),
                    at(n),
                )
                .expect("valid");
        }
        let seqs = |since, limit| -> Vec<u64> {
            registry
                .changes_since(since, limit)
                .iter()
                .map(|c| c.seq)
                .collect()
        };
        assert_eq!(seqs(0, 3), [1, 2, 3]);
        assert_eq!(seqs(3, 3), [4, 5, 6]);
        assert_eq!(seqs(6, 3), [7]);
        assert!(seqs(7, 3).is_empty());
        assert!(seqs(u64::MAX, 3).is_empty());
        assert_eq!(
            registry
                .person("C0000001")
                .expect("a person")
                .address
                .street,
            "6 Mill Way"
        );
    }

    #[test]
    fn children_stay_clear_of_population_ids() {
        assert_eq!(child_id(1_000, 12), "C9000012");
        assert_eq!(child_id(9_500_000, 1), "C9500001");
        assert_eq!(child_id(9_500_000, 2), "C9500002");
    }
}
