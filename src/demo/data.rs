//! Deterministic synthetic population for the simulated agencies.
//!
//! Tests and benchmarks assert on concrete payloads, so the data must be a
//! pure function of `(count, seed)`: the random generator is written here
//! rather than taken from a crate (whose output may change on upgrade), and
//! all dates are relative to a fixed [`REFERENCE_DATE`] instead of "today".
//!
//! Every person is generated from their own random stream derived from the
//! seed and their index, so a smaller population is always a prefix of a
//! larger one with the same seed. Ids do not depend on the seed.
//!
//! Besides the registry record and the tax account, a person may be known to
//! the motor vehicle agency (a [`DriverLicense`] and [`Vehicle`]s, keyed by
//! licence number) and to unemployment insurance ([`UnemploymentClaim`]s,
//! keyed by claimant id). Those records come from a second random stream per
//! person, so adding them left every registry and tax payload unchanged.
//! Who is where follows real life: minors have no tax account, licence or
//! claim; about 85% of people aged 16 or more hold a licence; about 15% of
//! working-age adults ever claimed. A few are in the middle of a life event
//! on [`REFERENCE_DATE`]: a claim filed in the last 30 days (a job loss) or a
//! vehicle registered in the last 30 days (a new car).
//!
//! # The first citizen
//!
//! `C0000001` is guaranteed, for every seed, to be an adult with a tax
//! account, a driver's licence, at least one vehicle and at least one
//! unemployment claim, so the demo's first query and the examples have one
//! well-known record that touches every agency.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use super::benefits::BenefitsRecords;
use crate::identity::KeyKind;

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
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough value in `0..bound` (`bound == 0` yields 0). The
    /// modulo bias is irrelevant for synthetic data.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    pub(crate) fn index(&mut self, len: usize) -> usize {
        // `len` is a list length, far below u64::MAX, and the result is < len.
        self.below(len as u64) as usize
    }

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
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
    /// Driver's licence number (`D` and seven digits), the key into the motor
    /// vehicle agency; `None` for minors and adults without a licence. The
    /// registry does not know it (only the identity crosswalk does), so it is
    /// not part of the registry's payload.
    #[serde(skip)]
    pub license_number: Option<String>,
    /// Claimant id (`UI-` and seven digits), the key into unemployment
    /// insurance; `None` for everyone who never claimed. Not served by the
    /// registry, for the same reason as `license_number`.
    #[serde(skip)]
    pub claimant_id: Option<String>,
    /// Benefits case number (`BC` and eight digits), the key into the benefits mainframe;
    /// `None` for people without a benefits case. Not served by the registry.
    #[serde(skip)]
    pub case_number: Option<String>,
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

/// Driving privileges a licence grants; a closed set the agency prints on
/// the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LicenseClass {
    /// Combination vehicles over 26 000 lb (commercial).
    A,
    /// Single heavy vehicles and buses (commercial).
    B,
    /// Ordinary passenger cars and light trucks.
    C,
    /// Motorcycles.
    M,
}

impl LicenseClass {
    /// The wire spelling, as the DMV service writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::B => "B",
            Self::C => "C",
            Self::M => "M",
        }
    }
}

/// Whether a licence may be used today; the graph exposes it as an enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LicenseStatus {
    /// Valid on the reference date.
    Valid,
    /// Temporarily withdrawn, here always for too many points.
    Suspended,
    /// Past its expiry date and not renewed.
    Expired,
    /// Withdrawn for good.
    Revoked,
}

impl LicenseStatus {
    /// Points at or above which a licence is suspended; tests check that
    /// every suspended licence has at least this many and no valid one does.
    pub const SUSPENSION_POINTS: u8 = 12;

    /// The wire spelling, as the DMV service and the GraphQL enum write it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "VALID",
            Self::Suspended => "SUSPENDED",
            Self::Expired => "EXPIRED",
            Self::Revoked => "REVOKED",
        }
    }
}

/// A driver's licence as the motor vehicle agency keeps it, keyed by
/// [`DriverLicense::number`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverLicense {
    /// Licence number, `D` followed by seven digits; equal to the holder's
    /// [`Person::license_number`].
    pub number: String,
    /// What the holder may drive.
    pub class: LicenseClass,
    /// Standing on [`REFERENCE_DATE`]; consistent with `expires_on` and `points`.
    pub status: LicenseStatus,
    /// When the current card was issued (the latest renewal).
    pub issued_on: NaiveDate,
    /// Eight years after `issued_on`; before [`REFERENCE_DATE`] exactly when
    /// the status is [`LicenseStatus::Expired`].
    pub expires_on: NaiveDate,
    /// Zero to two conditions such as `CORRECTIVE_LENSES`, without repeats.
    pub restrictions: Vec<&'static str>,
    /// Penalty points on the driving record.
    pub points: u8,
}

/// A registered vehicle, owned by a licence holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vehicle {
    /// 17-character vehicle identification number (no `I`, `O` or `Q`),
    /// with a valid check digit in position 9; unique in the population.
    pub vin: String,
    /// Licence plate, e.g. `7KDX214`; unique in the population.
    pub plate: String,
    /// Manufacturer.
    pub make: &'static str,
    /// Model name.
    pub model: &'static str,
    /// Model year.
    pub year: i32,
    /// When the current owner registered the vehicle; within the 30 days
    /// before [`REFERENCE_DATE`] for a new purchase.
    pub registered_on: NaiveDate,
    /// When the registration lapses; `None` for historic vehicles with a
    /// permanent registration (the DMV sends `xsi:nil`).
    pub registration_expires_on: Option<NaiveDate>,
    /// The owner's [`DriverLicense::number`].
    pub owner_license_number: String,
}

/// Where an unemployment claim stands; the graph exposes it as an enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClaimStatus {
    /// Filed, not yet decided.
    Pending,
    /// Benefits are being paid.
    Active,
    /// All 26 weeks of benefits were paid.
    Exhausted,
    /// The claim was refused; nothing was paid.
    Denied,
    /// Benefits stopped early, e.g. on a new job.
    Closed,
}

impl ClaimStatus {
    /// The wire spelling, as stored in the database and in the GraphQL enum.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Active => "ACTIVE",
            Self::Exhausted => "EXHAUSTED",
            Self::Denied => "DENIED",
            Self::Closed => "CLOSED",
        }
    }
}

/// Why the claimant lost their job; decides eligibility in real life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeparationReason {
    /// Let go for lack of work.
    Layoff,
    /// The workplace closed.
    PlantClosure,
    /// A fixed-term contract ended.
    ContractEnd,
    /// Quit for a reason the law accepts.
    QuitWithCause,
}

impl SeparationReason {
    /// The wire spelling, as stored in the database and in the GraphQL enum.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Layoff => "LAYOFF",
            Self::PlantClosure => "PLANT_CLOSURE",
            Self::ContractEnd => "CONTRACT_END",
            Self::QuitWithCause => "QUIT_WITH_CAUSE",
        }
    }
}

/// Longest benefit period, in weeks.
pub const MAX_BENEFIT_WEEKS: u32 = 26;

/// One unemployment insurance claim as the agency's database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnemploymentClaim {
    /// Claim id, `CLM-` + the claimant's seven digits + `-` + a 1-based ordinal.
    pub claim_id: String,
    /// The claimant's id; equal to the person's [`Person::claimant_id`].
    pub claimant_id: String,
    /// When the claim was filed; claims of one claimant are at least a
    /// benefit year apart.
    pub filed_on: NaiveDate,
    /// Where the claim stands on [`REFERENCE_DATE`]; pending and active
    /// claims are recent, exhausted ones paid [`MAX_BENEFIT_WEEKS`].
    pub status: ClaimStatus,
    /// Why the job ended.
    pub separation_reason: SeparationReason,
    /// The employer the claimant separated from.
    pub last_employer: &'static str,
    /// Weekly benefit amount (exact cents).
    pub weekly_benefit: Money,
    /// Weeks paid so far: 0 for pending and denied claims.
    pub weeks_paid: u32,
    /// When benefits ended (exhausted or closed claims); `None` otherwise.
    pub benefit_end_date: Option<NaiveDate>,
    /// Last change of the claim, at or after its latest event and before
    /// the reference date's midnight.
    pub updated_at: DateTime<Utc>,
}

/// The synthetic citizens plus the indexes the agencies need to answer
/// lookups in O(1).
#[derive(Debug, Clone)]
pub struct Population {
    seed: u64,
    people: Vec<Person>,
    accounts: Vec<Option<TaxAccount>>,
    licenses: Vec<Option<DriverLicense>>,
    vehicles: Vec<Vec<Vehicle>>,
    claims: Vec<Vec<UnemploymentClaim>>,
    by_id: HashMap<String, usize>,
    by_tin: HashMap<String, usize>,
    by_license: HashMap<String, usize>,
    by_claimant: HashMap<String, usize>,
    benefits: BenefitsRecords,
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
        let offsets = KeyOffsets::new(seed);

        let mut people = Vec::with_capacity(count);
        let mut accounts = Vec::with_capacity(count);
        let mut licenses = Vec::with_capacity(count);
        let mut vehicles = Vec::with_capacity(count);
        let mut claims = Vec::with_capacity(count);
        let mut by_id = HashMap::with_capacity(count);
        let mut by_tin = HashMap::with_capacity(count);
        let mut by_license = HashMap::with_capacity(count);
        let mut by_claimant = HashMap::new();
        for index in 0..count {
            let (mut person, account) = generate_person(index, seed, tin_offset);
            let records = generate_agency_records(index, seed, &offsets, &person);
            person.license_number = records.license.as_ref().map(|l| l.number.clone());
            person.claimant_id = records.claims.first().map(|c| c.claimant_id.clone());
            by_id.insert(person.id.clone(), index);
            by_tin.insert(person.tin.clone(), index);
            if let Some(number) = &person.license_number {
                by_license.insert(number.clone(), index);
            }
            if let Some(claimant) = &person.claimant_id {
                by_claimant.insert(claimant.clone(), index);
            }
            people.push(person);
            accounts.push(account);
            licenses.push(records.license);
            vehicles.push(records.vehicles);
            claims.push(records.claims);
        }
        let benefits = BenefitsRecords::generate(&people, seed);
        for (citizen, case_number) in benefits.holders() {
            if let Some(&index) = by_id.get(citizen) {
                people[index].case_number = Some(case_number.clone());
            }
        }
        Population {
            seed,
            benefits,
            people,
            accounts,
            licenses,
            vehicles,
            claims,
            by_id,
            by_tin,
            by_license,
            by_claimant,
        }
    }

    /// The seed the population was generated from, for logging and for
    /// regenerating the same data elsewhere.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The benefits mainframe's cases and payments.
    pub fn benefits(&self) -> &BenefitsRecords {
        &self.benefits
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

    /// The driver's licence with this number, as the DMV serves it; `None`
    /// for unknown numbers.
    pub fn license(&self, number: &str) -> Option<&DriverLicense> {
        self.by_license
            .get(number)
            .and_then(|&index| self.licenses[index].as_ref())
    }

    /// The holder of a licence, for tests that join the DMV to the registry.
    pub fn person_by_license(&self, number: &str) -> Option<&Person> {
        self.by_license
            .get(number)
            .map(|&index| &self.people[index])
    }

    /// Vehicles registered to a licence holder; empty both for holders
    /// without a vehicle and for unknown numbers (ask [`Population::license`]
    /// to tell them apart).
    pub fn vehicles_of(&self, license_number: &str) -> &[Vehicle] {
        self.by_license
            .get(license_number)
            .map_or(&[], |&index| self.vehicles[index].as_slice())
    }

    /// A claimant's claims, newest first; empty for unknown claimant ids.
    pub fn claims_of(&self, claimant_id: &str) -> &[UnemploymentClaim] {
        self.by_claimant
            .get(claimant_id)
            .map_or(&[], |&index| self.claims[index].as_slice())
    }

    /// The person behind a claimant id, for tests that join unemployment
    /// insurance to the registry.
    pub fn person_by_claimant(&self, claimant_id: &str) -> Option<&Person> {
        self.by_claimant
            .get(claimant_id)
            .map(|&index| &self.people[index])
    }

    /// Everyone who ever claimed, in id order, with their claims (newest
    /// first): what the unemployment insurance database is seeded from.
    pub fn claimants(&self) -> impl Iterator<Item = (&Person, &[UnemploymentClaim])> + '_ {
        self.people
            .iter()
            .zip(&self.claims)
            .filter(|(_, claims)| !claims.is_empty())
            .map(|(person, claims)| (person, claims.as_slice()))
    }

    /// Every agency key every person has, as `(citizen id, kind, key)`, for
    /// seeding the identity crosswalk. A TIN is listed only for people with
    /// a tax account, so that every listed key resolves at its agency and the
    /// gateway never calls an agency about someone it does not know.
    pub fn links(&self) -> impl Iterator<Item = (&str, KeyKind, &str)> + '_ {
        self.people
            .iter()
            .zip(&self.accounts)
            .flat_map(|(person, account)| {
                let id = person.id.as_str();
                let tin = account
                    .as_ref()
                    .map(|_| (id, KeyKind::Tin, person.tin.as_str()));
                let license = person
                    .license_number
                    .as_deref()
                    .map(|number| (id, KeyKind::LicenseNumber, number));
                let claimant = person
                    .claimant_id
                    .as_deref()
                    .map(|claimant| (id, KeyKind::ClaimantId, claimant));
                let case = person
                    .case_number
                    .as_deref()
                    .map(|case| (id, KeyKind::CaseNumber, case));
                tin.into_iter().chain(license).chain(claimant).chain(case)
            })
    }
}

impl Population {
    /// Everyone whose `age`-th birthday fell in the `within_days` days up to and including
    /// `today` (so `within_days = 0` is today only), in id order, with that birthday: what the
    /// registry answers a pension agency scanning for people reaching retirement age. A
    /// birthday on 29 February falls on 28 February in other years.
    pub fn reached_age(
        &self,
        age: u32,
        within_days: u32,
        today: NaiveDate,
    ) -> Vec<(&Person, NaiveDate)> {
        let earliest = today - Duration::days(i64::from(within_days));
        self.people
            .iter()
            .filter_map(|person| {
                let birthday = add_years(person.birth_date, age);
                (earliest <= birthday && birthday <= today).then_some((person, birthday))
            })
            .collect()
    }

    /// Vehicle registrations that expire between `today` and `within_days` days later (both
    /// included), soonest first: what the motor vehicle agency sends reminders for.
    ///
    /// The population holds each registration's expiry as of [`REFERENCE_DATE`]. One that had
    /// not lapsed by then is renewed on its anniversary every year, so its expiry on `today` is
    /// the first anniversary on or after `today`; that keeps registrations coming due whatever
    /// the date. Lapsed registrations (expired before [`REFERENCE_DATE`]) and permanent ones
    /// never come due.
    pub fn registrations_expiring(
        &self,
        today: NaiveDate,
        within_days: u32,
    ) -> Vec<ExpiringRegistration<'_>> {
        let latest = today + Duration::days(i64::from(within_days));
        let mut expiring: Vec<ExpiringRegistration<'_>> = self
            .vehicles
            .iter()
            .flatten()
            .filter_map(|vehicle| {
                let stored = vehicle.registration_expires_on?;
                if stored < REFERENCE_DATE {
                    return None;
                }
                let expires_on = next_anniversary(stored, today);
                (expires_on <= latest).then_some(ExpiringRegistration {
                    plate: &vehicle.plate,
                    owner_license_number: &vehicle.owner_license_number,
                    expires_on,
                })
            })
            .collect();
        expiring.sort_by(|a, b| (a.expires_on, a.plate).cmp(&(b.expires_on, b.plate)));
        expiring
    }
}

/// A registration coming due, as the motor vehicle agency's reminder scan lists it: ids and a
/// date only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiringRegistration<'a> {
    /// The vehicle's plate.
    pub plate: &'a str,
    /// The owner's licence number, the key the identity crosswalk links to a citizen.
    pub owner_license_number: &'a str,
    /// When the registration expires.
    pub expires_on: NaiveDate,
}

/// The first anniversary of `date` (itself included) on or after `today`.
fn next_anniversary(date: NaiveDate, today: NaiveDate) -> NaiveDate {
    if date >= today {
        return date;
    }
    // Counted from `date` each time, so a 29 February anniversary comes back in leap years;
    // the one wanted is this year's or next year's.
    let years = u32::try_from(today.year() - date.year()).unwrap_or(0);
    (years..years + 2)
        .map(|years| add_years(date, years))
        .find(|anniversary| *anniversary >= today)
        .unwrap_or(today)
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

/// A home address in one of the registry's municipalities: what a person is born with, and
/// what the change simulator moves people to. The draws are in a fixed order, so the
/// population stays a pure function of its seed.
pub(crate) fn random_address(rng: &mut SplitMix64) -> Address {
    let (city, county, postal_base) = rng.pick(CITIES);
    Address {
        street: format!(
            "{} {} {}",
            1 + rng.below(9_999),
            rng.pick(STREET_NAMES),
            rng.pick(STREET_SUFFIXES)
        ),
        city: city.to_owned(),
        postal_code: format!("{:05}", postal_base + rng.below(60)),
        county: county.to_owned(),
    }
}

/// The registry's spelling of a municipality and its county, for a name in any letter case;
/// `None` for a place outside the registry's region.
pub fn municipality(name: &str) -> Option<(&'static str, &'static str)> {
    CITIES
        .iter()
        .find(|(city, _, _)| city.eq_ignore_ascii_case(name.trim()))
        .map(|&(city, county, _)| (city, county))
}

/// An employer a claimant separated from, for claims filed after the population was generated.
pub(crate) fn random_employer(rng: &mut SplitMix64) -> &'static str {
    rng.pick(EMPLOYERS)
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

    let address = random_address(&mut rng);

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
        license_number: None,
        claimant_id: None,
        case_number: None,
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

/// Minimum age for a driver's licence.
pub const LICENSE_AGE: u32 = 16;
/// Working ages, the only ones at which the population files unemployment claims.
pub const WORKING_AGES: std::ops::RangeInclusive<u32> = 18..=66;
/// A life event is "recent" when it happened this many days before
/// [`REFERENCE_DATE`] or less.
pub const RECENT_DAYS: i64 = 30;

/// Licence numbers and claimant ids carry seven digits: `x mod KEY_SPACE`.
const KEY_SPACE: u64 = 10_000_000;
/// Both odd and not multiples of 5, so coprime with `KEY_SPACE` = 2^7 * 5^7:
/// `index -> index * M mod KEY_SPACE` is a bijection and keys stay unique.
const LICENSE_MULTIPLIER: u64 = 7_654_321;
const CLAIMANT_MULTIPLIER: u64 = 1_000_003;
/// Plates are a digit, three letters and three digits: 10 * 26^3 * 1000.
const PLATE_SPACE: u64 = 175_760_000;
/// A prime other than 2, 5 and 13, so coprime with `PLATE_SPACE`.
const PLATE_MULTIPLIER: u64 = 104_729;
/// Each person owns at most three vehicles; `index * VEHICLE_SLOTS + n` is a
/// unique number per vehicle from which its plate and VIN serial derive.
const VEHICLE_SLOTS: u64 = 4;
/// Characters allowed in a VIN: digits and capitals except I, O and Q.
const VIN_CHARS: &[u8; 33] = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";
/// Positions 11–17 of a VIN hold a unique serial in base 33.
const VIN_SERIAL_SPACE: u64 = 42_618_442_977;
/// Model-year codes (position 10) cycle through these every 30 years from 1980.
const VIN_YEAR_CODES: &[u8; 30] = b"ABCDEFGHJKLMNPRSTVWXY123456789";
/// Weights of the VIN check digit (position 9), per position.
const VIN_WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
/// Mixed into a person's stream so that agency records come from a stream
/// of their own and leave the registry and tax data untouched.
const AGENCY_STREAM_SALT: u64 = 0x6167_656E_6379_5F73;

/// Per-seed offsets for the agency keys, so that different seeds give
/// different numbers while each stays a bijection of the person's index.
#[derive(Debug, Clone, Copy)]
struct KeyOffsets {
    license: u64,
    claimant: u64,
    plate: u64,
    vin: u64,
}

impl KeyOffsets {
    fn new(seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x6B65_795F_6F66_6673);
        Self {
            license: rng.below(KEY_SPACE),
            claimant: rng.below(KEY_SPACE),
            plate: rng.below(PLATE_SPACE),
            vin: rng.below(VIN_SERIAL_SPACE),
        }
    }
}

/// `(x + offset) * multiplier mod space`: injective on `0..space` when the
/// multiplier is coprime with the space.
fn permuted(x: u64, offset: u64, multiplier: u64, space: u64) -> u64 {
    let shifted = (u128::from(x) + u128::from(offset)) % u128::from(space);
    // The product is reduced modulo `space`, which fits in a u64.
    (shifted * u128::from(multiplier) % u128::from(space)) as u64
}

fn add_years(date: NaiveDate, years: u32) -> NaiveDate {
    date.checked_add_months(Months::new(12 * years))
        .unwrap_or(date)
}

fn sub_years(date: NaiveDate, years: u32) -> NaiveDate {
    date.checked_sub_months(Months::new(12 * years))
        .unwrap_or(date)
}

/// A date uniformly in `lo..=hi`; `lo` when the range is empty.
fn date_between(rng: &mut SplitMix64, lo: NaiveDate, hi: NaiveDate) -> NaiveDate {
    let span = u64::try_from((hi - lo).num_days()).unwrap_or(0);
    lo + Duration::days(i64::try_from(rng.below(span + 1)).unwrap_or(0))
}

fn days_before_reference(days: u64) -> NaiveDate {
    REFERENCE_DATE - Duration::days(i64::try_from(days).unwrap_or(0))
}

/// What the motor vehicle agency and unemployment insurance hold about one person.
struct AgencyRecords {
    license: Option<DriverLicense>,
    vehicles: Vec<Vehicle>,
    claims: Vec<UnemploymentClaim>,
}

fn generate_agency_records(
    index: usize,
    seed: u64,
    offsets: &KeyOffsets,
    person: &Person,
) -> AgencyRecords {
    let stream = seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03) ^ AGENCY_STREAM_SALT;
    let mut rng = SplitMix64::new(stream);
    let age = person.age();
    // `C0000001` is an adult (see `generate_person`) and gets a record at
    // every agency, whatever the dice say.
    let first = index == 0;

    let license = (age >= LICENSE_AGE && (rng.chance(85) || first))
        .then(|| generate_license(&mut rng, index, offsets, person.birth_date));
    let vehicles = match &license {
        Some(license) => generate_vehicles(
            &mut rng,
            index,
            offsets,
            &license.number,
            person.birth_date,
            first,
        ),
        None => Vec::new(),
    };
    let claims = if first || (WORKING_AGES.contains(&age) && rng.chance(15)) {
        generate_claims(&mut rng, index, offsets, person.birth_date)
    } else {
        Vec::new()
    };
    AgencyRecords {
        license,
        vehicles,
        claims,
    }
}

fn generate_license(
    rng: &mut SplitMix64,
    index: usize,
    offsets: &KeyOffsets,
    birth_date: NaiveDate,
) -> DriverLicense {
    let digits = permuted(index as u64, offsets.license, LICENSE_MULTIPLIER, KEY_SPACE);
    let class = match rng.below(100) {
        0..80 => LicenseClass::C,
        80..88 => LicenseClass::B,
        88..95 => LicenseClass::A,
        _ => LicenseClass::M,
    };
    let mut status = match rng.below(100) {
        0..85 => LicenseStatus::Valid,
        85..92 => LicenseStatus::Expired,
        92..97 => LicenseStatus::Suspended,
        _ => LicenseStatus::Revoked,
    };
    let first_eligible = add_years(birth_date, LICENSE_AGE);
    // Cards are valid for eight years from issue.
    let expired = days_before_reference(1 + rng.below(3 * 365));
    let (issued_on, expires_on) =
        if status == LicenseStatus::Expired && sub_years(expired, 8) >= first_eligible {
            (sub_years(expired, 8), expired)
        } else {
            if status == LicenseStatus::Expired {
                // Too young to have let a licence run out.
                status = LicenseStatus::Valid;
            }
            let lo = first_eligible.max(sub_years(REFERENCE_DATE, 8) + Duration::days(1));
            let hi = days_before_reference(1).max(lo);
            let issued = date_between(rng, lo, hi);
            (issued, add_years(issued, 8))
        };
    let points = match status {
        LicenseStatus::Valid => match rng.below(100) {
            0..70 => 0,
            70..90 => 1 + rng.below(4),
            _ => 4 + rng.below(8),
        },
        LicenseStatus::Suspended => u64::from(LicenseStatus::SUSPENSION_POINTS) + rng.below(7),
        LicenseStatus::Revoked => rng.below(21),
        LicenseStatus::Expired => rng.below(7),
    };
    let wanted = match rng.below(100) {
        0..65 => 0,
        65..93 => 1,
        _ => 2,
    };
    let mut restrictions: Vec<&'static str> = Vec::with_capacity(wanted);
    while restrictions.len() < wanted {
        let restriction = rng.pick(RESTRICTIONS);
        if !restrictions.contains(&restriction) {
            restrictions.push(restriction);
        }
    }
    DriverLicense {
        number: format!("D{digits:07}"),
        class,
        status,
        issued_on,
        expires_on,
        restrictions,
        // At most 20 by construction above.
        points: u8::try_from(points).unwrap_or(u8::MAX),
    }
}

fn generate_vehicles(
    rng: &mut SplitMix64,
    index: usize,
    offsets: &KeyOffsets,
    license_number: &str,
    birth_date: NaiveDate,
    first: bool,
) -> Vec<Vehicle> {
    let mut count: u64 = match rng.below(100) {
        0..20 => 0,
        20..65 => 1,
        65..90 => 2,
        _ => 3,
    };
    if first {
        count = count.max(1);
    }
    let last_year = REFERENCE_DATE.year();
    let first_eligible = add_years(birth_date, LICENSE_AGE);
    let mut vehicles = Vec::with_capacity(count as usize);
    for ordinal in 0..count {
        let slot = index as u64 * VEHICLE_SLOTS + ordinal;
        let (make, wmi, models, since) = rng.pick(MAKES);
        let model = rng.pick(models);
        let new_purchase = rng.chance(4);
        let year = if new_purchase {
            last_year - 1 + rng.below(2) as i32
        } else {
            // The older of two draws: fleets lean towards recent models.
            let span = (last_year - since) as u64 + 1;
            last_year - rng.below(span).min(rng.below(span)) as i32
        };
        let registered_on = if new_purchase {
            days_before_reference(1 + rng.below(RECENT_DAYS as u64))
        } else {
            let on_sale = NaiveDate::from_ymd_opt(year - 1, 7, 1).unwrap_or(REFERENCE_DATE);
            let hi = days_before_reference(RECENT_DAYS as u64 + 1);
            let lo = on_sale.max(first_eligible).min(hi);
            date_between(rng, lo, hi)
        };
        let registration_expires_on = if year <= 2000 && rng.chance(40) {
            // Historic plates: registered once, never renewed.
            None
        } else {
            // Renewed every year on the registration's anniversary.
            let years = u32::try_from(REFERENCE_DATE.year() - registered_on.year()).unwrap_or(0);
            let mut expiry = add_years(registered_on, years);
            if expiry <= REFERENCE_DATE {
                expiry = add_years(expiry, 1);
            }
            let lapsed = sub_years(expiry, 1);
            if lapsed > registered_on && rng.chance(6) {
                Some(lapsed)
            } else {
                Some(expiry)
            }
        };
        vehicles.push(Vehicle {
            vin: vin_for(rng, wmi, year, (slot + offsets.vin) % VIN_SERIAL_SPACE),
            plate: plate_for(permuted(slot, offsets.plate, PLATE_MULTIPLIER, PLATE_SPACE)),
            make,
            model,
            year,
            registered_on,
            registration_expires_on,
            owner_license_number: license_number.to_owned(),
        });
    }
    vehicles
}

/// A VIN whose positions 11–17 spell `serial` (so VINs are unique), with
/// the make's manufacturer code, the model-year code and a correct check digit.
fn vin_for(rng: &mut SplitMix64, wmi: &str, year: i32, serial: u64) -> String {
    let mut chars = [b'0'; 17];
    chars[..3].copy_from_slice(&wmi.as_bytes()[..3]);
    for slot in &mut chars[3..8] {
        *slot = VIN_CHARS[rng.index(VIN_CHARS.len())];
    }
    let year_index = (year - 1980).rem_euclid(30) as usize;
    chars[9] = VIN_YEAR_CODES[year_index];
    let mut rest = serial;
    for slot in chars[10..].iter_mut().rev() {
        *slot = VIN_CHARS[(rest % 33) as usize];
        rest /= 33;
    }
    chars[8] = vin_check_digit(&chars);
    chars.iter().map(|&byte| char::from(byte)).collect()
}

/// The check digit of ISO 3779 / 49 CFR 565: transliterate, weigh, sum mod 11.
fn vin_check_digit(chars: &[u8; 17]) -> u8 {
    let value = |byte: u8| -> u32 {
        match byte {
            b'0'..=b'9' => u32::from(byte - b'0'),
            b'A'..=b'H' => u32::from(byte - b'A') + 1,
            b'J'..=b'N' => u32::from(byte - b'J') + 1,
            b'P' => 7,
            b'R' => 9,
            b'S'..=b'Z' => u32::from(byte - b'S') + 2,
            _ => 0,
        }
    };
    let sum: u32 = chars
        .iter()
        .zip(VIN_WEIGHTS)
        .map(|(&byte, weight)| value(byte) * weight)
        .sum();
    match sum % 11 {
        10 => b'X',
        // Below 10, so a single digit.
        digit => b'0' + digit as u8,
    }
}

/// `7KDX214`: a digit, three letters, three digits, spelled from `n`.
fn plate_for(n: u64) -> String {
    let digit = n % 10;
    let mut rest = n / 10;
    let mut letters = [b'A'; 3];
    for slot in &mut letters {
        *slot = b'A' + (rest % 26) as u8;
        rest /= 26;
    }
    let letters: String = letters.iter().map(|&byte| char::from(byte)).collect();
    format!("{digit}{letters}{:03}", rest % 1000)
}

fn generate_claims(
    rng: &mut SplitMix64,
    index: usize,
    offsets: &KeyOffsets,
    birth_date: NaiveDate,
) -> Vec<UnemploymentClaim> {
    let digits = permuted(
        index as u64,
        offsets.claimant,
        CLAIMANT_MULTIPLIER,
        KEY_SPACE,
    );
    let claimant_id = format!("UI-{digits:07}");
    let yesterday = days_before_reference(1);
    let window_start = sub_years(REFERENCE_DATE, 20);
    let last_working_day = add_years(birth_date, *WORKING_AGES.end()).min(yesterday);
    let mut earliest = add_years(birth_date, *WORKING_AGES.start()).max(window_start);
    if earliest > last_working_day {
        // Only `C0000001` gets here: either retired long ago (give them a
        // claim late in their working life) or just turned 18.
        earliest = if last_working_day < window_start {
            sub_years(last_working_day, 3)
        } else {
            last_working_day
        };
    }
    let wanted = match rng.below(100) {
        0..70 => 1,
        70..92 => 2,
        _ => 3,
    };
    let job_loss = last_working_day == yesterday && rng.chance(12);
    let latest = if job_loss {
        days_before_reference(1 + rng.below(RECENT_DAYS as u64)).max(earliest)
    } else {
        let hi = days_before_reference(RECENT_DAYS as u64 + 1)
            .min(last_working_day)
            .max(earliest);
        date_between(rng, earliest, hi)
    };
    // Newest first; one benefit year or more between claims.
    let mut filed = vec![latest];
    while filed.len() < wanted {
        let previous = filed[filed.len() - 1] - Duration::days(400 + rng.below(1_500) as i64);
        if previous < earliest {
            break;
        }
        filed.push(previous);
    }

    let count = filed.len();
    let mut claims = Vec::with_capacity(count);
    for (position, filed_on) in filed.into_iter().enumerate() {
        let age_days = (REFERENCE_DATE - filed_on).num_days();
        let status = if age_days <= RECENT_DAYS {
            if age_days < 14 && rng.chance(50) {
                ClaimStatus::Pending
            } else {
                ClaimStatus::Active
            }
        } else if age_days <= 7 * (i64::from(MAX_BENEFIT_WEEKS) + 1) {
            match rng.below(100) {
                0..60 => ClaimStatus::Active,
                60..75 => ClaimStatus::Denied,
                _ => ClaimStatus::Closed,
            }
        } else {
            match rng.below(100) {
                0..35 => ClaimStatus::Exhausted,
                35..80 => ClaimStatus::Closed,
                _ => ClaimStatus::Denied,
            }
        };
        // The first week is an unpaid waiting week.
        let payable_weeks = u32::try_from(age_days / 7)
            .unwrap_or(0)
            .saturating_sub(1)
            .min(MAX_BENEFIT_WEEKS);
        let weeks_paid = match status {
            ClaimStatus::Pending | ClaimStatus::Denied => 0,
            ClaimStatus::Active => payable_weeks,
            ClaimStatus::Exhausted => MAX_BENEFIT_WEEKS,
            ClaimStatus::Closed => {
                let most = u64::from(payable_weeks.clamp(1, MAX_BENEFIT_WEEKS - 1));
                1 + rng.below(most) as u32
            }
        };
        let benefit_end_date = matches!(status, ClaimStatus::Exhausted | ClaimStatus::Closed)
            .then(|| filed_on + Duration::days(7 * (i64::from(weeks_paid) + 1)));
        let last_event = match (status, benefit_end_date) {
            (_, Some(end)) => end,
            (ClaimStatus::Active, None) => days_before_reference(1 + rng.below(7)),
            (ClaimStatus::Denied, None) => {
                (filed_on + Duration::days(7 + rng.below(21) as i64)).min(yesterday)
            }
            _ => filed_on,
        }
        .min(yesterday)
        .max(filed_on);
        let separation_reason = match rng.below(100) {
            0..50 => SeparationReason::Layoff,
            50..65 => SeparationReason::PlantClosure,
            65..90 => SeparationReason::ContractEnd,
            _ => SeparationReason::QuitWithCause,
        };
        claims.push(UnemploymentClaim {
            claim_id: format!("CLM-{digits:07}-{}", count - position),
            claimant_id: claimant_id.clone(),
            filed_on,
            status,
            separation_reason,
            last_employer: rng.pick(EMPLOYERS),
            weekly_benefit: Money::from_cents(15_000 + rng.below(70_001) as i64),
            weeks_paid,
            benefit_end_date,
            updated_at: timestamp_after(rng, midnight(last_event)),
        });
    }
    claims
}

const RESTRICTIONS: &[&str] = &[
    "CORRECTIVE_LENSES",
    "DAYLIGHT_ONLY",
    "AUTOMATIC_TRANSMISSION",
    "NO_FREEWAY",
    "IGNITION_INTERLOCK",
    "OUTSIDE_MIRROR",
];

/// (make, world manufacturer identifier, models, first model year offered).
const MAKES: &[(&str, &str, &[&str], i32)] = &[
    (
        "Ford",
        "1FA",
        &["Focus", "Escape", "F-150", "Mustang"],
        1985,
    ),
    (
        "Toyota",
        "JTD",
        &["Corolla", "Camry", "RAV4", "Prius"],
        1985,
    ),
    ("Honda", "1HG", &["Civic", "Accord", "CR-V", "Fit"], 1985),
    (
        "Chevrolet",
        "1G1",
        &["Malibu", "Silverado", "Equinox", "Bolt"],
        1985,
    ),
    (
        "Volkswagen",
        "WVW",
        &["Golf", "Jetta", "Passat", "ID.4"],
        1985,
    ),
    ("Subaru", "JF1", &["Outback", "Forester", "Impreza"], 1985),
    ("Hyundai", "KMH", &["Elantra", "Tucson", "Ioniq 5"], 1990),
    (
        "Nissan",
        "1N4",
        &["Altima", "Leaf", "Rogue", "Sentra"],
        1985,
    ),
    ("Volvo", "YV1", &["XC60", "V60", "XC40"], 1985),
    ("Tesla", "5YJ", &["Model 3", "Model Y", "Model S"], 2012),
];

const EMPLOYERS: &[&str] = &[
    "Ashford Tool & Die",
    "Brightwater Logistics",
    "Carrow Bend Hospital",
    "Cole County Schools",
    "Dunmore Paper Mill",
    "Eastbrook Foods",
    "Fairhaven Shipyard",
    "Glenwood Retail Group",
    "Harlow Call Center",
    "Ironbridge Steel",
    "Kingsport Software",
    "Lakeside Hotels",
    "Millbrook Construction",
    "Oakridge Printing",
    "Pinecrest Home Care",
    "Riverton Auto Parts",
    "Stonegate Insurance",
    "Upton Textiles",
    "Westfield Warehousing",
    "Zephyr Point Marina",
];

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
    use std::collections::{HashMap, HashSet};

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
    fn agency_records_are_deterministic_and_a_prefix_of_larger_populations() {
        let first = Population::generate(400, 42);
        let second = Population::generate(400, 42);
        let larger = Population::generate(900, 42);
        assert_eq!(first.licenses, second.licenses);
        assert_eq!(first.vehicles, second.vehicles);
        assert_eq!(first.claims, second.claims);
        assert_eq!(first.people(), &larger.people()[..400]);
        assert_eq!(first.licenses, larger.licenses[..400]);
        assert_eq!(first.vehicles, larger.vehicles[..400]);
        assert_eq!(first.claims, larger.claims[..400]);
        let other = Population::generate(400, 43);
        assert_ne!(first.licenses, other.licenses);
    }

    #[test]
    fn first_citizen_is_known_to_every_agency() {
        for seed in 0..500 {
            let population = Population::generate(1, seed);
            let first = &population.people()[0];
            assert!(population.account_of(first).is_some(), "seed {seed}");
            let number = first.license_number.as_deref().expect("a licence");
            assert!(population.license(number).is_some(), "seed {seed}");
            assert!(!population.vehicles_of(number).is_empty(), "seed {seed}");
            let claimant = first.claimant_id.as_deref().expect("a claimant id");
            assert!(!population.claims_of(claimant).is_empty(), "seed {seed}");
            let kinds: Vec<KeyKind> = population.links().map(|(_, kind, _)| kind).collect();
            assert_eq!(
                kinds,
                [
                    KeyKind::Tin,
                    KeyKind::LicenseNumber,
                    KeyKind::ClaimantId,
                    KeyKind::CaseNumber
                ]
            );
        }
    }

    #[test]
    fn every_link_resolves_at_its_agency_and_keys_are_unique() {
        let population = Population::generate(3_000, 21);
        let mut keys = HashSet::new();
        let mut per_kind = HashMap::new();
        for (citizen, kind, key) in population.links() {
            assert!(keys.insert((kind, key)), "duplicate {kind} {key}");
            *per_kind.entry(kind).or_insert(0) += 1;
            let owner = match kind {
                KeyKind::Tin => {
                    assert!(population.account(key).is_some(), "{key}");
                    population.person_by_tin(key)
                }
                KeyKind::LicenseNumber => {
                    assert!(population.license(key).is_some(), "{key}");
                    population.person_by_license(key)
                }
                KeyKind::ClaimantId => {
                    assert!(!population.claims_of(key).is_empty(), "{key}");
                    population.person_by_claimant(key)
                }
                KeyKind::CaseNumber => {
                    assert!(!population.benefits().cases(key).is_empty(), "{key}");
                    population
                        .people()
                        .iter()
                        .find(|p| p.case_number.as_deref() == Some(key))
                }
            };
            assert_eq!(owner.map(|person| person.id.as_str()), Some(citizen));
        }
        for kind in [
            KeyKind::Tin,
            KeyKind::LicenseNumber,
            KeyKind::ClaimantId,
            KeyKind::CaseNumber,
        ] {
            assert!(per_kind.get(&kind).copied().unwrap_or(0) > 100, "{kind}");
        }
        assert!(population.license("D0000000x").is_none());
        assert!(population.vehicles_of("nope").is_empty());
        assert!(population.claims_of("UI-nope").is_empty());
    }

    #[test]
    fn minors_are_unknown_to_tax_dmv_and_unemployment_insurance() {
        let population = Population::generate(3_000, 5);
        let linked: HashSet<&str> = population.links().map(|(id, _, _)| id).collect();
        let mut minors = 0;
        for person in population.people() {
            if person.age() < TAX_AGE {
                minors += 1;
                assert!(!linked.contains(person.id.as_str()), "{}", person.id);
                assert!(person.license_number.is_none());
                assert!(person.claimant_id.is_none());
            }
            if person.age() < *WORKING_AGES.start() {
                assert!(person.claimant_id.is_none(), "{}", person.id);
            }
        }
        assert!(minors > 100);
    }

    #[test]
    fn shares_of_licence_holders_and_claimants_are_realistic() {
        let population = Population::generate(10_000, 99);
        let (mut drivers_age, mut drivers, mut working, mut claimants) = (0, 0, 0, 0);
        let mut without_vehicle = 0;
        for (index, person) in population.people().iter().enumerate() {
            if person.age() >= LICENSE_AGE {
                drivers_age += 1;
                if let Some(number) = &person.license_number {
                    drivers += 1;
                    if population.vehicles_of(number).is_empty() {
                        without_vehicle += 1;
                    }
                }
            }
            if index > 0 && WORKING_AGES.contains(&person.age()) {
                working += 1;
                claimants += usize::from(person.claimant_id.is_some());
            }
        }
        let licensed = drivers * 100 / drivers_age;
        let claimed = claimants * 100 / working;
        assert!((80..=90).contains(&licensed), "{licensed}% hold a licence");
        assert!((11..=19).contains(&claimed), "{claimed}% ever claimed");
        assert!(
            without_vehicle > drivers / 10,
            "some drivers own no vehicle"
        );
    }

    #[test]
    fn licences_are_consistent_with_their_status() {
        let population = Population::generate(3_000, 13);
        let mut statuses = HashSet::new();
        for (person, license) in population.people().iter().zip(&population.licenses) {
            let Some(license) = license else { continue };
            statuses.insert(license.status);
            assert_eq!(
                person.license_number.as_deref(),
                Some(license.number.as_str())
            );
            assert_eq!(license.number.len(), 8);
            assert!(license.number.starts_with('D'));
            assert!(license.number[1..].bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(license.expires_on, add_years(license.issued_on, 8));
            assert!(license.issued_on >= add_years(person.birth_date, LICENSE_AGE));
            assert!(license.issued_on <= REFERENCE_DATE);
            assert_eq!(
                license.expires_on < REFERENCE_DATE,
                license.status == LicenseStatus::Expired,
                "{license:?}"
            );
            match license.status {
                LicenseStatus::Suspended => {
                    assert!(license.points >= LicenseStatus::SUSPENSION_POINTS);
                }
                LicenseStatus::Valid => assert!(license.points < LicenseStatus::SUSPENSION_POINTS),
                _ => {}
            }
            assert!(license.restrictions.len() <= 2);
            let distinct: HashSet<_> = license.restrictions.iter().collect();
            assert_eq!(distinct.len(), license.restrictions.len());
        }
        assert_eq!(statuses.len(), 4, "all licence statuses occur");
    }

    #[test]
    fn vehicles_have_valid_unique_vins_and_plates() {
        let population = Population::generate(5_000, 17);
        let (mut vins, mut plates) = (HashSet::new(), HashSet::new());
        let mut historic = 0;
        for (person, vehicles) in population.people().iter().zip(&population.vehicles) {
            assert!(vehicles.len() <= 3);
            if !vehicles.is_empty() {
                assert!(person.license_number.is_some(), "{}", person.id);
            }
            for vehicle in vehicles {
                assert_eq!(
                    Some(vehicle.owner_license_number.as_str()),
                    person.license_number.as_deref()
                );
                assert_eq!(vehicle.vin.len(), 17);
                assert!(vehicle.vin.bytes().all(|b| VIN_CHARS.contains(&b)));
                let bytes: [u8; 17] = vehicle.vin.as_bytes().try_into().expect("17 bytes");
                assert_eq!(vin_check_digit(&bytes), bytes[8], "{}", vehicle.vin);
                assert!(
                    vins.insert(vehicle.vin.clone()),
                    "duplicate {}",
                    vehicle.vin
                );
                assert!(
                    plates.insert(vehicle.plate.clone()),
                    "duplicate {}",
                    vehicle.plate
                );
                assert_eq!(vehicle.plate.len(), 7);
                assert!((1985..=REFERENCE_DATE.year()).contains(&vehicle.year));
                assert!(vehicle.registered_on < REFERENCE_DATE);
                match vehicle.registration_expires_on {
                    Some(expiry) => assert!(expiry > vehicle.registered_on),
                    None => {
                        historic += 1;
                        assert!(vehicle.year <= 2000);
                    }
                }
            }
        }
        assert!(historic > 0, "some historic vehicles have permanent plates");
    }

    #[test]
    fn vin_check_digit_matches_a_published_example() {
        // The worked example of 49 CFR 565: 1M8GDM9AXKP042788.
        let vin: [u8; 17] = *b"1M8GDM9AXKP042788";
        assert_eq!(vin_check_digit(&vin), b'X');
    }

    #[test]
    fn claims_follow_the_benefit_rules() {
        let population = Population::generate(5_000, 23);
        let mut ids = HashSet::new();
        let mut statuses = HashSet::new();
        for (person, claims) in population.claimants() {
            assert!((1..=3).contains(&claims.len()));
            let claimant = person.claimant_id.as_deref().expect("claimant id");
            assert!(claimant.starts_with("UI-") && claimant.len() == 10);
            for pair in claims.windows(2) {
                assert!(pair[0].filed_on - pair[1].filed_on >= Duration::days(400));
            }
            for claim in claims {
                statuses.insert(claim.status);
                assert!(ids.insert(claim.claim_id.clone()), "{}", claim.claim_id);
                assert_eq!(claim.claimant_id, claimant);
                assert!(claim.filed_on < REFERENCE_DATE);
                assert!(claim.weeks_paid <= MAX_BENEFIT_WEEKS);
                assert!((15_000..=85_000).contains(&claim.weekly_benefit.cents()));
                let recent = REFERENCE_DATE - claim.filed_on <= Duration::days(RECENT_DAYS);
                match claim.status {
                    ClaimStatus::Pending => {
                        assert!(recent);
                        assert_eq!(claim.weeks_paid, 0);
                    }
                    ClaimStatus::Active => {
                        assert!(REFERENCE_DATE - claim.filed_on <= Duration::weeks(27));
                    }
                    ClaimStatus::Exhausted => assert_eq!(claim.weeks_paid, MAX_BENEFIT_WEEKS),
                    ClaimStatus::Denied => assert_eq!(claim.weeks_paid, 0),
                    ClaimStatus::Closed => assert!(claim.weeks_paid >= 1),
                }
                assert_eq!(
                    claim.benefit_end_date.is_some(),
                    matches!(claim.status, ClaimStatus::Exhausted | ClaimStatus::Closed)
                );
                if let Some(end) = claim.benefit_end_date {
                    assert!(end > claim.filed_on && end <= REFERENCE_DATE);
                }
                assert!(claim.updated_at >= midnight(claim.filed_on));
                assert!(claim.updated_at < midnight(REFERENCE_DATE));
            }
        }
        assert_eq!(statuses.len(), 5, "all claim statuses occur");
    }

    #[test]
    fn a_thousand_citizens_include_job_losses_and_new_vehicles() {
        for seed in [1, 42, 2026] {
            let population = Population::generate(1_000, seed);
            let recent = |date: NaiveDate| REFERENCE_DATE - date <= Duration::days(RECENT_DAYS);
            let job_losses = population
                .claimants()
                .filter(|(_, claims)| {
                    claims[0].filed_on < REFERENCE_DATE
                        && recent(claims[0].filed_on)
                        && matches!(claims[0].status, ClaimStatus::Pending | ClaimStatus::Active)
                })
                .count();
            let new_vehicles = population
                .vehicles
                .iter()
                .flatten()
                .filter(|vehicle| recent(vehicle.registered_on))
                .count();
            assert!(job_losses >= 2, "seed {seed}: {job_losses} job losses");
            assert!(
                new_vehicles >= 5,
                "seed {seed}: {new_vehicles} new vehicles"
            );
        }
    }

    #[test]
    fn agency_keys_are_unique_across_a_large_population() {
        let population = Population::generate(50_000, 8);
        let numbers: HashSet<&str> = population
            .people()
            .iter()
            .filter_map(|person| person.license_number.as_deref())
            .collect();
        assert_eq!(numbers.len(), population.by_license.len());
        let claimants = population
            .people()
            .iter()
            .filter(|person| person.claimant_id.is_some())
            .count();
        assert_eq!(claimants, population.by_claimant.len());
        let keys: HashSet<u64> = (0..20_000)
            .map(|index| permuted(index, KEY_SPACE - 7, CLAIMANT_MULTIPLIER, KEY_SPACE))
            .collect();
        assert_eq!(keys.len(), 20_000);
        let plates: HashSet<String> = (0..20_000)
            .map(|slot| {
                plate_for(permuted(
                    slot,
                    PLATE_SPACE - 3,
                    PLATE_MULTIPLIER,
                    PLATE_SPACE,
                ))
            })
            .collect();
        assert_eq!(plates.len(), 20_000);
    }

    #[test]
    fn reached_age_finds_exactly_the_birthdays_in_the_window() {
        let population = Population::generate(5_000, 31);
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).expect("a date");
        let found = population.reached_age(67, 30, today);
        assert!(!found.is_empty(), "about one person a month turns 67");
        for (person, reached_on) in &found {
            assert_eq!(*reached_on, add_years(person.birth_date, 67));
            assert!(today - *reached_on <= Duration::days(30) && *reached_on <= today);
            assert_eq!(person.age_on(*reached_on), 67);
        }
        let expected = population
            .people()
            .iter()
            .filter(|person| {
                let birthday = add_years(person.birth_date, 67);
                birthday <= today && today - birthday <= Duration::days(30)
            })
            .count();
        assert_eq!(found.len(), expected);
        let today_only = population.reached_age(67, 0, today);
        assert!(today_only.iter().all(|(_, on)| *on == today));
        assert!(population.reached_age(150, 366, today).is_empty());
    }

    #[test]
    fn a_leap_day_birthday_falls_on_the_last_of_february() {
        assert_eq!(
            add_years(NaiveDate::from_ymd_opt(1960, 2, 29).expect("a date"), 67),
            NaiveDate::from_ymd_opt(2027, 2, 28).expect("a date")
        );
        let leap = NaiveDate::from_ymd_opt(2024, 2, 29).expect("a date");
        assert_eq!(
            next_anniversary(leap, NaiveDate::from_ymd_opt(2027, 3, 1).expect("a date")),
            NaiveDate::from_ymd_opt(2028, 2, 29).expect("a date")
        );
    }

    #[test]
    fn registrations_come_due_in_a_thousand_citizens_whatever_the_date() {
        let days = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("a date");
        for seed in [1, 42, 2026] {
            let population = Population::generate(1_000, seed);
            for today in [
                REFERENCE_DATE,
                days(2026, 11, 23),
                days(2027, 6, 15),
                days(2031, 2, 1),
            ] {
                let expiring = population.registrations_expiring(today, 30);
                assert!(
                    expiring.len() >= 10,
                    "seed {seed}, {today}: {} registrations due",
                    expiring.len()
                );
                for pair in expiring.windows(2) {
                    assert!(pair[0].expires_on <= pair[1].expires_on, "soonest first");
                }
                for due in &expiring {
                    assert!(today <= due.expires_on);
                    assert!(due.expires_on - today <= Duration::days(30));
                    let vehicle = population
                        .vehicles_of(due.owner_license_number)
                        .iter()
                        .find(|vehicle| vehicle.plate == due.plate)
                        .expect("the owner's vehicle");
                    let stored = vehicle.registration_expires_on.expect("not permanent");
                    assert!(stored >= REFERENCE_DATE, "lapsed ones never come due");
                    assert_eq!(
                        (due.expires_on.month(), due.expires_on.day()),
                        (stored.month(), stored.day()),
                        "renewed on the anniversary"
                    );
                }
            }
        }
    }

    #[test]
    fn registrations_due_on_the_reference_date_are_the_stored_ones() {
        let population = Population::generate(2_000, 7);
        let mut stored: Vec<(NaiveDate, &str)> = population
            .vehicles
            .iter()
            .flatten()
            .filter_map(|vehicle| {
                let expiry = vehicle.registration_expires_on?;
                (expiry >= REFERENCE_DATE && expiry - REFERENCE_DATE <= Duration::days(45))
                    .then_some((expiry, vehicle.plate.as_str()))
            })
            .collect();
        stored.sort_unstable();
        let due: Vec<(NaiveDate, &str)> = population
            .registrations_expiring(REFERENCE_DATE, 45)
            .iter()
            .map(|due| (due.expires_on, due.plate))
            .collect();
        assert_eq!(due, stored);
    }

    #[test]
    fn moving_addresses_stay_in_the_registrys_region() {
        let mut rng = SplitMix64::new(9);
        for _ in 0..200 {
            let address = random_address(&mut rng);
            let (city, county) = municipality(&address.city).expect("a known city");
            assert_eq!(
                (city, county),
                (address.city.as_str(), address.county.as_str())
            );
            assert_eq!(address.postal_code.len(), 5);
        }
        assert_eq!(
            municipality(" lakeside "),
            Some(("Lakeside", "Hollis County"))
        );
        assert_eq!(municipality("Springfield"), None);
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
