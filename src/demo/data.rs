//! Deterministic synthetic population for the simulated agencies.
//!
//! Tests and benchmarks assert on concrete payloads, so the data must be a
//! pure function of `(count, seed)`: the random generator is written here
//! rather than taken from a crate (whose output may change on upgrade), and
//! all dates are relative to a fixed [`REFERENCE_DATE`] instead of "today".
//!
//! Every person is generated from their own random stream derived from the
//! seed and their index, so a smaller population is always a prefix of a
//! larger one with the same seed. Ids do not depend on the seed, and the
//! first citizen, `C0000001`, is always an adult with a tax account, so
//! examples and tests have one well-known record to query.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// The "today" of the synthetic world; ages and timestamps are computed
/// against it so that output does not drift with the wall clock.
pub const REFERENCE_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2026, 1, 1) {
    Some(date) => date,
    None => panic!("2026-01-01 is a valid date"),
};

/// Largest population [`Population::generate`] accepts: it keeps citizen
/// ids at seven digits and guarantees that TINs stay unique.
pub const MAX_POPULATION: usize = 9_999_999;

/// Minimum age at which a person has a tax account; younger people make the
/// tax API answer 404, which the gateway must handle as "no data".
pub const TAX_AGE: u32 = 16;

/// Oldest age generated, so that ages cover 0..=95.
const MAX_AGE: i32 = 95;
/// Minimum age of the first citizen, `C0000001`.
const ADULT_AGE: i32 = 18;

/// TINs are nine-digit numbers: `TIN_FLOOR + (x mod TIN_SPACE)`.
const TIN_FLOOR: u64 = 100_000_000;
const TIN_SPACE: u64 = 900_000_000;
/// A prime (so coprime with `TIN_SPACE` = 2^8 * 3^2 * 5^8), which makes
/// `index -> index * TIN_MULTIPLIER mod TIN_SPACE` a bijection.
const TIN_MULTIPLIER: u64 = 982_451_653;

/// A small, stable pseudo-random generator (splitmix64).
///
/// Hand-written so that the synthetic data never changes because a
/// dependency changed its algorithm.
#[derive(Debug, Clone)]
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough value in `0..bound` (`bound == 0` yields 0). The
    /// modulo bias is irrelevant for synthetic data.
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    fn index(&mut self, len: usize) -> usize {
        // `len` is a list length, far below u64::MAX, and the result is < len.
        self.below(len as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Amount of money in cents.
///
/// Agencies send amounts as decimal strings with exactly two decimals, never
/// as floats, so that no precision is lost between backend and client; this
/// type keeps integer cents in memory and serializes as such a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    /// Builds an amount from integer cents, the only lossless representation.
    pub const fn from_cents(cents: i64) -> Self {
        Self(cents)
    }

    /// Exposes the exact value so callers can do arithmetic without parsing.
    pub const fn cents(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn serialize_date<S: Serializer>(date: &NaiveDate, serializer: S) -> Result<S::Ok, S::Error> {
    // NaiveDate's Display is ISO 8601 `YYYY-MM-DD`.
    serializer.collect_str(date)
}

fn serialize_timestamp<S: Serializer>(
    at: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Postal address as the person registry stores it; the gateway exposes it
/// as a nested object, so it is a separate type here too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    /// House number and street, e.g. "42 Maple Street".
    pub street: String,
    /// Municipality name.
    pub city: String,
    /// Five-digit postal code, kept as a string to preserve leading zeros.
    pub postal_code: String,
    /// County, which several agencies use as their jurisdiction key.
    pub county: String,
}

/// A citizen as the person registry knows them: the root entity that the
/// gateway joins other agencies' data onto (via `tin`).
///
/// Serializes exactly as the registry serves it under `"person"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    /// Registry id, `C` followed by the 1-based index (`C0000001`).
    pub id: String,
    /// First name.
    pub given_name: String,
    /// Surname.
    pub family_name: String,
    /// "Given Family", as legacy systems store a display name too.
    pub full_name: String,
    /// Date of birth; served as `YYYY-MM-DD`.
    #[serde(serialize_with = "serialize_date")]
    pub birth_date: NaiveDate,
    /// Current residential address.
    pub address: Address,
    /// Nine-digit taxpayer identification number, the key into the tax API.
    pub tin: String,
    /// Last modification of the record; served as RFC 3339 (UTC, seconds).
    #[serde(serialize_with = "serialize_timestamp")]
    pub updated_at: DateTime<Utc>,
}

impl Person {
    /// Age in whole years on `date`, needed to decide who has a tax account
    /// and useful for tests that look for minors or adults.
    pub fn age_on(&self, date: NaiveDate) -> u32 {
        age_on(self.birth_date, date)
    }

    /// Age on [`REFERENCE_DATE`], the synthetic world's "today".
    pub fn age(&self) -> u32 {
        self.age_on(REFERENCE_DATE)
    }
}

/// Filing status of a tax account. A closed set so the gateway can map it
/// to a GraphQL enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilingStatus {
    /// All returns filed.
    Filed,
    /// A return or payment is late.
    Overdue,
    /// The latest return is on extension.
    Extension,
    /// The person owes no tax.
    Exempt,
}

impl FilingStatus {
    /// The wire spelling, for callers that build JSON by hand.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Filed => "FILED",
            Self::Overdue => "OVERDUE",
            Self::Extension => "EXTENSION",
            Self::Exempt => "EXEMPT",
        }
    }
}

/// One yearly assessment; the gateway exposes these as a nested list, which
/// exercises list handling in the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    /// Tax year.
    pub year: i32,
    /// Amount assessed for the year.
    pub assessed: Money,
    /// Amount paid towards it.
    pub paid: Money,
    /// When the assessment was issued; served as `YYYY-MM-DD`.
    #[serde(serialize_with = "serialize_date")]
    pub assessed_on: NaiveDate,
}

/// A tax account as the tax agency serves it under `"account"`; only people
/// aged [`TAX_AGE`] or older have one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaxAccount {
    /// Taxpayer identification number, equal to the person's `tin`.
    pub tin: String,
    /// Sum of `paid - assessed` over the assessments: negative means owed.
    pub balance: Money,
    /// ISO 4217 currency code, always "USD".
    pub currency: String,
    /// Current filing status.
    pub filing_status: FilingStatus,
    /// Year of the most recent assessment.
    pub last_assessed_year: i32,
    /// One to four assessments, most recent first.
    pub assessments: Vec<Assessment>,
    /// Last modification of the account; served as RFC 3339.
    #[serde(serialize_with = "serialize_timestamp")]
    pub updated_at: DateTime<Utc>,
}

/// The synthetic citizens plus the indexes the agencies need to answer
/// lookups in O(1).
#[derive(Debug, Clone)]
pub struct Population {
    seed: u64,
    people: Vec<Person>,
    accounts: Vec<Option<TaxAccount>>,
    by_id: HashMap<String, usize>,
    by_tin: HashMap<String, usize>,
}

impl Population {
    /// Generates `count` citizens from `seed`; identical inputs always give
    /// identical data, so tests and benchmarks can rely on exact values.
    ///
    /// # Panics
    ///
    /// If `count` exceeds [`MAX_POPULATION`].
    pub fn generate(count: usize, seed: u64) -> Population {
        assert!(
            count <= MAX_POPULATION,
            "population of {count} exceeds the maximum of {MAX_POPULATION}"
        );
        let tin_offset = SplitMix64::new(seed ^ 0x7469_6E5F_6F66_6673).next_u64() % TIN_SPACE;

        let mut people = Vec::with_capacity(count);
        let mut accounts = Vec::with_capacity(count);
        let mut by_id = HashMap::with_capacity(count);
        let mut by_tin = HashMap::with_capacity(count);
        for index in 0..count {
            let (person, account) = generate_person(index, seed, tin_offset);
            by_id.insert(person.id.clone(), index);
            by_tin.insert(person.tin.clone(), index);
            people.push(person);
            accounts.push(account);
        }
        Population {
            seed,
            people,
            accounts,
            by_id,
            by_tin,
        }
    }

    /// The seed the population was generated from, for logging and for
    /// regenerating the same data elsewhere.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of citizens.
    pub fn len(&self) -> usize {
        self.people.len()
    }

    /// Whether the population is empty (a valid, if dull, demo).
    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// All citizens in id order, which is also the registry's paging order.
    pub fn people(&self) -> &[Person] {
        &self.people
    }

    /// Looks a citizen up by registry id.
    pub fn person(&self, id: &str) -> Option<&Person> {
        self.index_of(id).map(|index| &self.people[index])
    }

    /// Position of a citizen in [`Population::people`], which the registry
    /// uses to resume paging from a cursor.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Looks a citizen up by TIN, for tests that join the two agencies.
    pub fn person_by_tin(&self, tin: &str) -> Option<&Person> {
        self.by_tin.get(tin).map(|&index| &self.people[index])
    }

    /// The tax account for `tin`, or `None` for unknown TINs and for people
    /// younger than [`TAX_AGE`].
    pub fn account(&self, tin: &str) -> Option<&TaxAccount> {
        self.by_tin
            .get(tin)
            .and_then(|&index| self.accounts[index].as_ref())
    }

    /// The tax account belonging to `person`, if any.
    pub fn account_of(&self, person: &Person) -> Option<&TaxAccount> {
        self.account(&person.tin)
    }
}

/// Citizen id for a 0-based index; independent of the seed so that
/// `C0000001` exists in every non-empty population.
pub fn citizen_id(index: usize) -> String {
    format!("C{:07}", index + 1)
}

fn tin_for(index: usize, tin_offset: u64) -> String {
    // Injective on 0..TIN_SPACE: adding a constant and multiplying by a unit
    // modulo TIN_SPACE are both bijections.
    let shifted = (index as u128 + u128::from(tin_offset)) % u128::from(TIN_SPACE);
    let mixed = shifted * u128::from(TIN_MULTIPLIER) % u128::from(TIN_SPACE);
    format!("{}", mixed + u128::from(TIN_FLOOR))
}

fn age_on(birth: NaiveDate, date: NaiveDate) -> u32 {
    let mut years = date.year() - birth.year();
    if (date.month(), date.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    u32::try_from(years).unwrap_or(0)
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    date.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// A timestamp uniformly between `start` (inclusive) and the reference
/// date's midnight (exclusive, unless `start` is not before it).
fn timestamp_after(rng: &mut SplitMix64, start: DateTime<Utc>) -> DateTime<Utc> {
    let end = midnight(REFERENCE_DATE);
    let span = u64::try_from((end - start).num_seconds()).unwrap_or(0);
    let offset = i64::try_from(rng.below(span)).unwrap_or(0);
    start + Duration::seconds(offset)
}

fn generate_person(index: usize, seed: u64, tin_offset: u64) -> (Person, Option<TaxAccount>) {
    let stream = seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut rng = SplitMix64::new(stream);

    let given_name = rng.pick(GIVEN_NAMES);
    let family_name = rng.pick(FAMILY_NAMES);

    // Ages 0..=MAX_AGE on the reference date: born between the day after
    // the (MAX_AGE + 1)th birthday cut-off and the reference date itself.
    let earliest = REFERENCE_DATE
        .with_year(REFERENCE_DATE.year() - MAX_AGE - 1)
        .and_then(|date| date.succ_opt())
        .unwrap_or(REFERENCE_DATE);
    // The first citizen is always an adult so that demos and tests can rely
    // on `C0000001` having a tax account.
    let latest = if index == 0 {
        REFERENCE_DATE
            .with_year(REFERENCE_DATE.year() - ADULT_AGE)
            .unwrap_or(REFERENCE_DATE)
    } else {
        REFERENCE_DATE
    };
    let span_days = u64::try_from((latest - earliest).num_days()).unwrap_or(0);
    let birth_date =
        earliest + Duration::days(i64::try_from(rng.below(span_days + 1)).unwrap_or(0));

    let (city, county, postal_base) = rng.pick(CITIES);
    let address = Address {
        street: format!(
            "{} {} {}",
            1 + rng.below(9_999),
            rng.pick(STREET_NAMES),
            rng.pick(STREET_SUFFIXES)
        ),
        city: city.to_owned(),
        postal_code: format!("{:05}", postal_base + rng.below(60)),
        county: county.to_owned(),
    };

    let recent = midnight(REFERENCE_DATE) - Duration::days(730);
    let updated_at = timestamp_after(&mut rng, midnight(birth_date).max(recent));

    let tin = tin_for(index, tin_offset);
    let age = age_on(birth_date, REFERENCE_DATE);
    let account = (age >= TAX_AGE).then(|| generate_account(&mut rng, &tin, birth_date, age));

    let person = Person {
        id: citizen_id(index),
        given_name: given_name.to_owned(),
        family_name: family_name.to_owned(),
        full_name: format!("{given_name} {family_name}"),
        birth_date,
        address,
        tin,
        updated_at,
    };
    (person, account)
}

fn generate_account(
    rng: &mut SplitMix64,
    tin: &str,
    birth_date: NaiveDate,
    age: u32,
) -> TaxAccount {
    let roll = rng.below(100);
    let filing_status = if age < 18 && roll < 70 {
        FilingStatus::Exempt
    } else {
        match roll {
            0..60 => FilingStatus::Filed,
            60..75 => FilingStatus::Overdue,
            75..87 => FilingStatus::Extension,
            _ => FilingStatus::Exempt,
        }
    };

    // Assessments are issued the year after the tax year; with the
    // reference date at the start of 2026, 2024 is the latest complete one.
    // An extension means the latest year has not been assessed yet.
    let last_assessed_year = match filing_status {
        FilingStatus::Extension => REFERENCE_DATE.year() - 3,
        _ => REFERENCE_DATE.year() - 2,
    };
    let first_taxable_year = birth_date.year() + TAX_AGE as i32;
    let max_entries = (last_assessed_year - first_taxable_year + 1).clamp(1, 4);
    let entries = 1 + rng.below(max_entries as u64) as i32;

    let mut assessments = Vec::with_capacity(entries as usize);
    for (position, year) in (last_assessed_year - entries + 1..=last_assessed_year)
        .rev()
        .enumerate()
    {
        let assessed = match filing_status {
            FilingStatus::Exempt => 0,
            _ => 5_000 + rng.below(2_500_000) as i64,
        };
        let paid = match filing_status {
            FilingStatus::Exempt => 0,
            // The most recent year is underpaid; older ones are settled.
            FilingStatus::Overdue if position == 0 => assessed * rng.below(80) as i64 / 100,
            _ if rng.chance(15) => {
                // Small over- or underpayment, as in real ledgers.
                let delta = rng.below(20_000) as i64 - 10_000;
                (assessed + delta).max(0)
            }
            _ => assessed,
        };
        let issued = NaiveDate::from_ymd_opt(year + 1, 2, 1).unwrap_or(REFERENCE_DATE);
        let assessed_on = issued + Duration::days(rng.below(250) as i64);
        assessments.push(Assessment {
            year,
            assessed: Money::from_cents(assessed),
            paid: Money::from_cents(paid),
            assessed_on,
        });
    }

    let balance = assessments
        .iter()
        .map(|entry| entry.paid.cents() - entry.assessed.cents())
        .sum();
    let latest_issue = assessments
        .iter()
        .map(|entry| entry.assessed_on)
        .max()
        .unwrap_or(REFERENCE_DATE);
    let updated_at = timestamp_after(rng, midnight(latest_issue));

    TaxAccount {
        tin: tin.to_owned(),
        balance: Money::from_cents(balance),
        currency: "USD".to_owned(),
        filing_status,
        last_assessed_year,
        assessments,
        updated_at,
    }
}

const GIVEN_NAMES: &[&str] = &[
    "Amara", "Benedikt", "Carmen", "Dmitri", "Elena", "Farah", "Gabriel", "Hana", "Ibrahim",
    "Julia", "Kenji", "Lucia", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Samuel",
    "Tamar", "Umar", "Valeria", "William", "Ximena", "Yusuf", "Zoe", "Aiko", "Bernard", "Chiara",
    "Diego", "Esther", "Felix", "Grace", "Henrik", "Ines", "Jonah", "Kwame", "Leila", "Marcus",
    "Noor", "Olivia", "Pavel", "Ruth", "Soren", "Theo", "Wanjiru",
];

const FAMILY_NAMES: &[&str] = &[
    "Abara",
    "Bergstrom",
    "Castillo",
    "Dubois",
    "Eriksen",
    "Fernandes",
    "Goldberg",
    "Haddad",
    "Ishikawa",
    "Jablonski",
    "Kowalczyk",
    "Lindqvist",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quinn",
    "Rasmussen",
    "Santos",
    "Tanaka",
    "Underwood",
    "Varga",
    "Whitfield",
    "Xu",
    "Yilmaz",
    "Zielinski",
    "Albrecht",
    "Brennan",
    "Chowdhury",
    "Delgado",
    "Ellison",
    "Fitzgerald",
    "Gallagher",
    "Holloway",
    "Iverson",
    "Jensen",
    "Keller",
    "Laurent",
    "Moreau",
    "Novak",
    "Ortega",
    "Pham",
    "Reyes",
    "Sorensen",
    "Thornton",
    "Vasquez",
    "Walsh",
    "Young",
];

const STREET_NAMES: &[&str] = &[
    "Maple", "Oak", "Cedar", "Willow", "Birch", "Elm", "Juniper", "Magnolia", "Hawthorn", "Aspen",
    "Chestnut", "Linden", "Sycamore", "Poplar", "Alder", "Spruce", "Hickory", "Laurel", "Mill",
    "Church", "River", "Lake", "Hill", "Park", "Market", "Station", "Harbor", "Meadow", "Orchard",
    "Quarry",
];

const STREET_SUFFIXES: &[&str] = &[
    "Street",
    "Avenue",
    "Road",
    "Lane",
    "Drive",
    "Court",
    "Way",
    "Boulevard",
    "Place",
    "Terrace",
];

/// (city, county, first postal code of the city's range).
const CITIES: &[(&str, &str, u64)] = &[
    ("Ashford", "Cole County", 40_100),
    ("Brightwater", "Cole County", 40_200),
    ("Carrow Bend", "Cole County", 40_300),
    ("Dunmore", "Cole County", 40_400),
    ("Eastbrook", "Cole County", 40_500),
    ("Fairhaven", "Marlow County", 41_100),
    ("Glenwood", "Marlow County", 41_200),
    ("Harlow", "Marlow County", 41_300),
    ("Ironbridge", "Marlow County", 41_400),
    ("Juniper Hills", "Marlow County", 41_500),
    ("Kingsport", "Hollis County", 42_100),
    ("Lakeside", "Hollis County", 42_200),
    ("Millbrook", "Hollis County", 42_300),
    ("Northfield", "Hollis County", 42_400),
    ("Oakridge", "Hollis County", 42_500),
    ("Pinecrest", "Ridley County", 43_100),
    ("Queensbury", "Ridley County", 43_200),
    ("Riverton", "Ridley County", 43_300),
    ("Stonegate", "Ridley County", 43_400),
    ("Thornbury", "Ridley County", 43_500),
    ("Upton", "Brannock County", 44_100),
    ("Valemount", "Brannock County", 44_200),
    ("Westfield", "Brannock County", 44_300),
    ("Yarrow Creek", "Brannock County", 44_400),
    ("Zephyr Point", "Brannock County", 44_500),
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn same_seed_gives_identical_population() {
        let first = Population::generate(500, 42);
        let second = Population::generate(500, 42);
        assert_eq!(first.people(), second.people());
        assert_eq!(first.accounts, second.accounts);
    }

    #[test]
    fn different_seeds_give_different_names_dates_and_amounts() {
        let first = Population::generate(200, 1);
        let second = Population::generate(200, 2);
        let pairs = || first.people().iter().zip(second.people());
        assert!(
            pairs().all(|(a, b)| a.id == b.id),
            "ids do not depend on the seed"
        );
        assert!(pairs().any(|(a, b)| a.full_name != b.full_name));
        assert!(pairs().any(|(a, b)| a.birth_date != b.birth_date));
        assert!(pairs().any(|(a, b)| a.tin != b.tin));
        let balances = |population: &Population| -> Vec<i64> {
            population
                .accounts
                .iter()
                .flatten()
                .map(|account| account.balance.cents())
                .collect()
        };
        assert_ne!(balances(&first), balances(&second));
    }

    #[test]
    fn ids_are_index_based_and_seed_independent() {
        let population = Population::generate(12, 987_654_321);
        assert_eq!(population.people()[0].id, "C0000001");
        assert_eq!(population.people()[11].id, "C0000012");
        assert!(population.person("C0000001").is_some());
        assert!(population.person("C0000013").is_none());
        assert!(population.person("c0000001").is_none());
    }

    #[test]
    fn first_citizen_is_always_an_adult_with_a_tax_account() {
        for seed in 0..500 {
            let population = Population::generate(1, seed);
            let first = &population.people()[0];
            assert!(first.age() >= 18, "seed {seed}: age {}", first.age());
            assert!(population.account_of(first).is_some(), "seed {seed}");
        }
    }

    #[test]
    fn smaller_population_is_a_prefix_of_a_larger_one() {
        let small = Population::generate(30, 5);
        let large = Population::generate(300, 5);
        assert_eq!(small.people(), &large.people()[..30]);
    }

    #[test]
    fn tins_are_unique_nine_digit_numbers_across_100k_citizens() {
        let population = Population::generate(100_000, 2026);
        let mut seen = HashSet::with_capacity(population.len());
        for person in population.people() {
            assert_eq!(person.tin.len(), 9, "{}", person.tin);
            assert!(person.tin.bytes().all(|b| b.is_ascii_digit()));
            assert!(!person.tin.starts_with('0'));
            assert!(
                seen.insert(person.tin.as_str()),
                "duplicate TIN {}",
                person.tin
            );
        }
    }

    #[test]
    fn tin_formula_is_injective_even_near_the_wrap_around() {
        let offset = TIN_SPACE - 10;
        let tins: HashSet<String> = (0..1_000).map(|index| tin_for(index, offset)).collect();
        assert_eq!(tins.len(), 1_000);
    }

    #[test]
    fn minors_have_no_tax_account_and_adults_do() {
        let population = Population::generate(2_000, 9);
        let mut minors = 0;
        for person in population.people() {
            let account = population.account_of(person);
            if person.age() < TAX_AGE {
                minors += 1;
                assert!(account.is_none(), "{} is {}", person.id, person.age());
            } else {
                assert!(account.is_some(), "{} is {}", person.id, person.age());
            }
        }
        assert!(minors > 0, "the sample should contain minors");
    }

    #[test]
    fn ages_span_newborns_to_ninety_five() {
        let population = Population::generate(20_000, 3);
        let ages: Vec<u32> = population.people().iter().map(Person::age).collect();
        assert!(ages.iter().all(|&age| age <= 95));
        assert!(ages.contains(&0));
        assert!(ages.contains(&95));
    }

    #[test]
    fn lookups_by_id_and_tin_find_the_same_person() {
        let population = Population::generate(1_000, 11);
        for person in population.people() {
            assert_eq!(population.person(&person.id), Some(person));
            assert_eq!(population.person_by_tin(&person.tin), Some(person));
            if let Some(account) = population.account(&person.tin) {
                assert_eq!(account.tin, person.tin);
            }
        }
        assert!(population.account("000000000").is_none());
    }

    #[test]
    fn accounts_are_internally_consistent() {
        let population = Population::generate(3_000, 77);
        let mut statuses = HashSet::new();
        for account in population.accounts.iter().flatten() {
            statuses.insert(account.filing_status);
            assert!((1..=4).contains(&account.assessments.len()));
            assert_eq!(account.currency, "USD");
            assert_eq!(account.assessments[0].year, account.last_assessed_year);
            let sum: i64 = account
                .assessments
                .iter()
                .map(|entry| entry.paid.cents() - entry.assessed.cents())
                .sum();
            assert_eq!(account.balance.cents(), sum);
            for pair in account.assessments.windows(2) {
                assert_eq!(pair[0].year, pair[1].year + 1, "most recent first");
            }
            for entry in &account.assessments {
                assert_eq!(entry.assessed_on.year(), entry.year + 1);
                assert!(entry.assessed_on < REFERENCE_DATE);
            }
            if account.filing_status == FilingStatus::Overdue {
                assert!(account.balance.cents() < 0);
            }
            assert!(account.updated_at <= midnight(REFERENCE_DATE));
        }
        assert_eq!(statuses.len(), 4, "all filing statuses occur");
    }

    #[test]
    fn money_serializes_as_a_two_decimal_string() {
        let render = |cents| serde_json::to_string(&Money::from_cents(cents)).ok();
        assert_eq!(render(-12_050).as_deref(), Some(r#""-120.50""#));
        assert_eq!(render(0).as_deref(), Some(r#""0.00""#));
        assert_eq!(render(7).as_deref(), Some(r#""0.07""#));
        assert_eq!(render(-5).as_deref(), Some(r#""-0.05""#));
        assert_eq!(render(123_456).as_deref(), Some(r#""1234.56""#));
    }

    #[test]
    fn dates_and_timestamps_use_iso_formats() {
        let population = Population::generate(50, 8);
        let person = &population.people()[0];
        let value = serde_json::to_value(person).unwrap_or_default();
        let birth = value["birth_date"].as_str().unwrap_or_default();
        assert_eq!(birth.len(), 10);
        assert_eq!(
            NaiveDate::parse_from_str(birth, "%Y-%m-%d").ok(),
            Some(person.birth_date)
        );
        let updated = value["updated_at"].as_str().unwrap_or_default();
        assert!(updated.ends_with('Z'), "{updated}");
        assert_eq!(
            DateTime::parse_from_rfc3339(updated)
                .ok()
                .map(|at| at.to_utc()),
            Some(person.updated_at)
        );
    }

    #[test]
    fn full_name_joins_given_and_family_names() {
        let population = Population::generate(100, 4);
        for person in population.people() {
            assert_eq!(
                person.full_name,
                format!("{} {}", person.given_name, person.family_name)
            );
            assert_eq!(person.address.postal_code.len(), 5);
        }
    }
}
