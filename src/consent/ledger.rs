//! The consent ledger in the gateway's store: which agency a citizen lets read which categories of
//! their data, for what purpose, and until when.
//!
//! Every change is one conditional `UPDATE … RETURNING` plus its `consent_events` row, in one
//! transaction: two racing revokes give one success and one [`LedgerError::Conflict`], and a crash
//! never leaves a change without its history. Times are compared in Rust ([`Consent::status`]),
//! never as stored text, so SQLite and PostgreSQL answer the same.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::broadcast::AnnounceWithdrawal;
use super::receipt::ReceiptAction;
use crate::config::{TrustConfig, quoted_list};
use crate::identity::CitizenId;
use crate::store::{Store, on_pool};

/// The most categories one consent may name: enough for any real form, small enough that a
/// grant is one short row.
pub const MAX_CATEGORIES: usize = 32;

/// Handles are bound as `$n` parameters in chunks of this size, under SQLite's 999 floor.
const HANDLES_PER_QUERY: usize = 500;

/// The columns every consent read selects, in [`Row`] order.
macro_rules! columns {
    () => {
        "handle, citizen_id, grantee, categories, purpose, valid_from, valid_until, state, \
         granted_at, changed_at"
    };
}

/// One `consents` row as read: handle, citizen, grantee, categories, purpose, valid from and
/// until, state, granted at, changed at.
type Row = (
    String,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
);

/// A consent's state as stored; time plays no part (see [`ConsentStatus`] for that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentState {
    /// In force whenever its validity window covers the moment of a read.
    Active,
    /// Suspended by the citizen; resuming makes it active again.
    Paused,
    /// Withdrawn for good; a new grant is needed.
    Revoked,
}

impl ConsentState {
    /// The text in the store's `state` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Revoked => "revoked",
        }
    }

    /// Reads the store's spelling; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Active, Self::Paused, Self::Revoked]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// A consent as a reader sees it at a given moment: the stored state combined with the validity
/// window, which is what the policy and the citizen's consent list need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentStatus {
    /// In force now.
    Active,
    /// Suspended by the citizen.
    Paused,
    /// Withdrawn by the citizen.
    Revoked,
    /// Its validity ended.
    Expired,
    /// Its validity has not started yet.
    Pending,
}

impl ConsentStatus {
    /// Lowercase, as in receipts and logs: `active`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Pending => "pending",
        }
    }

    /// The GraphQL enum value: `ACTIVE`.
    pub const fn graphql_name(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Paused => "PAUSED",
            Self::Revoked => "REVOKED",
            Self::Expired => "EXPIRED",
            Self::Pending => "PENDING",
        }
    }
}

/// What a citizen asks to grant; checked against the `[trust]` catalogues before anything is
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsent {
    /// Whose data.
    pub citizen: CitizenId,
    /// The agency allowed to read it (a code in `[trust.agencies]`).
    pub grantee: String,
    /// The data categories it may read (codes in `[trust.categories]`).
    pub categories: BTreeSet<String>,
    /// What for (a code in `[trust.purposes]`).
    pub purpose: String,
    /// From when.
    pub valid_from: DateTime<Utc>,
    /// Until when (exclusive).
    pub valid_until: DateTime<Utc>,
}

/// One consent in the ledger. Times are to the microsecond, as both stores keep them, so a
/// consent reads back equal to the one a change returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// Its public name: `cns_` and 32 hex digits; what citizens revoke by and receipts cite.
    pub handle: String,
    /// Whose data.
    pub citizen: CitizenId,
    /// The agency allowed to read it.
    pub grantee: String,
    /// The data categories it covers.
    pub categories: BTreeSet<String>,
    /// What for.
    pub purpose: String,
    /// From when.
    pub valid_from: DateTime<Utc>,
    /// Until when (exclusive).
    pub valid_until: DateTime<Utc>,
    /// As stored.
    pub state: ConsentState,
    /// When the citizen granted it.
    pub granted_at: DateTime<Utc>,
    /// When its state last changed (the grant, at first).
    pub changed_at: DateTime<Utc>,
}

impl Consent {
    /// What the consent means at `now`. A revoked or paused consent says so even after it
    /// expired, because that is what the citizen did last.
    pub fn status(&self, now: DateTime<Utc>) -> ConsentStatus {
        match self.state {
            ConsentState::Revoked => ConsentStatus::Revoked,
            ConsentState::Paused => ConsentStatus::Paused,
            ConsentState::Active if now >= self.valid_until => ConsentStatus::Expired,
            ConsentState::Active if now < self.valid_from => ConsentStatus::Pending,
            ConsentState::Active => ConsentStatus::Active,
        }
    }

    /// Whether it lets its grantee read at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.status(now) == ConsentStatus::Active
    }

    /// Whether it names `category` (exactly: categories have no hierarchy).
    pub fn covers(&self, category: &str) -> bool {
        self.categories.contains(category)
    }
}

/// One change in a consent's history, as the `consent_events` table keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentEvent {
    /// What happened.
    pub action: ReceiptAction,
    /// When.
    pub at: DateTime<Utc>,
}

/// Why a ledger read or change failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The grant is not acceptable; the message names the bad value and the valid ones, and is
    /// meant for the citizen.
    #[error("{0}")]
    Invalid(String),
    /// This citizen has no consent with that handle (whether or not another citizen has).
    #[error("no consent with this handle")]
    NotFound,
    /// The change does not apply to the consent's current state; the message says why.
    #[error("{0}")]
    Conflict(String),
    /// The store refused or could not be reached.
    #[error("the consent store failed: {0}")]
    Store(#[from] sqlx::Error),
    /// A stored row cannot be read back (edited by hand, or a newer schema).
    #[error("a stored consent is malformed: {0}")]
    Corrupt(String),
}

/// The consent ledger over the gateway's store, checked against the `[trust]` catalogues.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConsentLedger {
    store: Store,
    trust: Arc<TrustConfig>,
}

impl ConsentLedger {
    /// The ledger kept in `store` (whose migrations created its tables), accepting grants that
    /// name what `trust` catalogues.
    pub fn new(store: Store, trust: Arc<TrustConfig>) -> Self {
        Self { store, trust }
    }

    /// Records a new active consent and its `granted` event. An unacceptable grant is
    /// [`LedgerError::Invalid`] and writes nothing.
    pub async fn grant(
        &self,
        grant: NewConsent,
        now: DateTime<Utc>,
    ) -> Result<Consent, LedgerError> {
        const INSERT: &str = concat!(
            "INSERT INTO consents (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        let now = now.trunc_subsecs(6);
        let valid_from = grant.valid_from.trunc_subsecs(6);
        let valid_until = grant.valid_until.trunc_subsecs(6);
        self.check(&grant, valid_from, valid_until, now)?;
        let consent = Consent {
            handle: format!("cns_{}", uuid::Uuid::new_v4().simple()),
            citizen: grant.citizen,
            grantee: grant.grantee,
            categories: grant.categories,
            purpose: grant.purpose,
            valid_from,
            valid_until,
            state: ConsentState::Active,
            granted_at: now,
            changed_at: now,
        };
        let categories = join_categories(&consent.categories);
        on_pool!(&self.store, pool => {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            sqlx::query(INSERT)
                .bind(&consent.handle)
                .bind(consent.citizen.as_str())
                .bind(&consent.grantee)
                .bind(&categories)
                .bind(&consent.purpose)
                .bind(consent.valid_from)
                .bind(consent.valid_until)
                .bind(consent.state.as_str())
                .bind(consent.granted_at)
                .bind(consent.changed_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(EVENT)
                .bind(&consent.handle)
                .bind(ReceiptAction::Granted.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(consent)
    }

    /// Withdraws a consent for good (an active or paused one); its grantee loses access on the
    /// next read. Revoking it again is a [`LedgerError::Conflict`].
    pub async fn revoke(
        &self,
        citizen: &CitizenId,
        handle: &str,
        now: DateTime<Utc>,
    ) -> Result<Consent, LedgerError> {
        self.change(citizen, handle, Transition::Revoke, now).await
    }

    /// Suspends an active consent until the citizen resumes it.
    pub async fn pause(
        &self,
        citizen: &CitizenId,
        handle: &str,
        now: DateTime<Utc>,
    ) -> Result<Consent, LedgerError> {
        self.change(citizen, handle, Transition::Pause, now).await
    }

    /// Makes a paused consent active again, within its original validity.
    pub async fn resume(
        &self,
        citizen: &CitizenId,
        handle: &str,
        now: DateTime<Utc>,
    ) -> Result<Consent, LedgerError> {
        self.change(citizen, handle, Transition::Resume, now).await
    }

    /// The citizen's consent with this handle; `None` when they have none by that handle.
    pub async fn get(
        &self,
        citizen: &CitizenId,
        handle: &str,
    ) -> Result<Option<Consent>, LedgerError> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM consents WHERE handle = $1 AND citizen_id = $2"
        );
        let row: Option<Row> = on_pool!(&self.store, pool => {
            sqlx::query_as(SQL)
                .bind(handle)
                .bind(citizen.as_str())
                .fetch_optional(pool)
                .await
                .map_err(read_error(columns!()))?
        });
        row.map(decode).transpose()
    }

    /// Every consent the citizen ever granted, whatever its state, newest grant first.
    pub async fn list(&self, citizen: &CitizenId) -> Result<Vec<Consent>, LedgerError> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM consents WHERE citizen_id = $1"
        );
        let rows: Vec<Row> = on_pool!(&self.store, pool => {
            sqlx::query_as(SQL)
                .bind(citizen.as_str())
                .fetch_all(pool)
                .await
                .map_err(read_error(columns!()))?
        });
        newest_first(rows)
    }

    /// One query: the consents of `citizen` to `grantee` for `purpose` that are live at `now`,
    /// newest grant first. The policy calls this once per citizen per request.
    pub async fn live(
        &self,
        citizen: &CitizenId,
        grantee: &str,
        purpose: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Consent>, LedgerError> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM consents WHERE citizen_id = $1 AND grantee = $2 AND purpose = $3 \
             AND state = 'active'"
        );
        let rows: Vec<Row> = on_pool!(&self.store, pool => {
            sqlx::query_as(SQL)
                .bind(citizen.as_str())
                .bind(grantee)
                .bind(purpose)
                .fetch_all(pool)
                .await
                .map_err(read_error(columns!()))?
        });
        let mut consents = newest_first(rows)?;
        consents.retain(|consent| consent.is_live(now));
        Ok(consents)
    }

    /// [`ConsentLedger::live`] for many citizens in one query per 500 of them (a list of
    /// citizens costs one read, not one per citizen). Citizens with none are absent.
    pub async fn live_many(
        &self,
        citizens: &[CitizenId],
        grantee: &str,
        purpose: &str,
        now: DateTime<Utc>,
    ) -> Result<HashMap<CitizenId, Vec<Consent>>, LedgerError> {
        let wanted: BTreeSet<&str> = citizens.iter().map(CitizenId::as_str).collect();
        let wanted: Vec<&str> = wanted.into_iter().collect();
        let mut live: HashMap<CitizenId, Vec<Consent>> = HashMap::new();
        for chunk in wanted.chunks(HANDLES_PER_QUERY) {
            let placeholders: Vec<String> = (3..chunk.len() + 3).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT {} FROM consents WHERE grantee = $1 AND purpose = $2 \
                 AND state = 'active' AND citizen_id IN ({})",
                columns!(),
                placeholders.join(", ")
            );
            let rows: Vec<Row> = on_pool!(&self.store, pool => {
                let mut query = sqlx::query_as(&sql).bind(grantee).bind(purpose);
                for citizen in chunk {
                    query = query.bind(*citizen);
                }
                query.fetch_all(pool).await.map_err(read_error(columns!()))?
            });
            for consent in newest_first(rows)? {
                if consent.is_live(now) {
                    live.entry(consent.citizen.clone())
                        .or_default()
                        .push(consent);
                }
            }
        }
        Ok(live)
    }

    /// Of `handles`, those still live at `now` (one query for up to 500 distinct handles).
    /// Called just before personal data leaves, so a revocation that landed while a backend
    /// load was in flight still withholds it. Unknown handles are simply not live.
    pub async fn still_live(
        &self,
        handles: &[String],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, LedgerError> {
        let wanted: BTreeSet<&str> = handles.iter().map(String::as_str).collect();
        let wanted: Vec<&str> = wanted.into_iter().collect();
        let mut live = HashSet::new();
        for chunk in wanted.chunks(HANDLES_PER_QUERY) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT {} FROM consents WHERE state = 'active' AND handle IN ({})",
                columns!(),
                placeholders.join(", ")
            );
            let rows: Vec<Row> = on_pool!(&self.store, pool => {
                let mut query = sqlx::query_as(&sql);
                for handle in chunk {
                    query = query.bind(*handle);
                }
                query.fetch_all(pool).await.map_err(read_error(columns!()))?
            });
            for row in rows {
                let consent = decode(row)?;
                if consent.is_live(now) {
                    live.insert(consent.handle);
                }
            }
        }
        Ok(live)
    }

    /// Every change to the citizen's consent `handle`, oldest first: what a citizen's consent
    /// page shows and what an auditor replays. Another citizen's handle is
    /// [`LedgerError::NotFound`].
    pub async fn history(
        &self,
        citizen: &CitizenId,
        handle: &str,
    ) -> Result<Vec<ConsentEvent>, LedgerError> {
        const SQL: &str = "SELECT e.action, e.at FROM consent_events e \
                           JOIN consents c ON c.handle = e.handle \
                           WHERE e.handle = $1 AND c.citizen_id = $2 ORDER BY e.id";
        let rows: Vec<(String, DateTime<Utc>)> = on_pool!(&self.store, pool => {
            sqlx::query_as(SQL)
                .bind(handle)
                .bind(citizen.as_str())
                .fetch_all(pool)
                .await
                .map_err(read_error("action, at"))?
        });
        if rows.is_empty() {
            // Every consent has its `granted` event, so no rows means no such consent.
            return Err(LedgerError::NotFound);
        }
        rows.into_iter()
            .map(|(action, at)| {
                let action = ReceiptAction::parse(&action).ok_or_else(|| {
                    LedgerError::Corrupt(format!("unknown consent event action `{action}`"))
                })?;
                Ok(ConsentEvent { action, at })
            })
            .collect()
    }

    /// One state change: a conditional `UPDATE … RETURNING` and its event, in one transaction.
    async fn change(
        &self,
        citizen: &CitizenId,
        handle: &str,
        transition: Transition,
        now: DateTime<Utc>,
    ) -> Result<Consent, LedgerError> {
        const UPDATE: &str = concat!(
            "UPDATE consents SET state = $3, changed_at = $4 \
             WHERE handle = $1 AND citizen_id = $2 AND state IN ($5, $6) RETURNING ",
            columns!()
        );
        const STATE: &str = "SELECT state FROM consents WHERE handle = $1 AND citizen_id = $2";
        let (action, to, from) = transition.states();
        let now = now.trunc_subsecs(6);
        on_pool!(&self.store, pool => {
            let mut tx = crate::store::BeginWrite::begin_write(pool).await?;
            let row: Option<Row> = sqlx::query_as(UPDATE)
                .bind(handle)
                .bind(citizen.as_str())
                .bind(to.as_str())
                .bind(now)
                .bind(from[0].as_str())
                .bind(from[1].as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(read_error(columns!()))?;
            let Some(row) = row else {
                let state: Option<(String,)> = sqlx::query_as(STATE)
                    .bind(handle)
                    .bind(citizen.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                return Err(match state {
                    None => LedgerError::NotFound,
                    Some((state,)) => conflict(action, &state),
                });
            };
            // Read back before committing: a row that cannot be read is not changed either.
            let consent = decode(row)?;
            sqlx::query(EVENT)
                .bind(handle)
                .bind(action.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if to != ConsentState::Active {
                // Every instance drops the agency's cached reads when this commits.
                AnnounceWithdrawal::announce_withdrawal(&mut *tx, &consent.grantee).await?;
            }
            tx.commit().await?;
            Ok(consent)
        })
    }

    /// Checks a grant against the catalogues and the time rules; the first problem wins.
    fn check(
        &self,
        grant: &NewConsent,
        valid_from: DateTime<Utc>,
        valid_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let trust = &*self.trust;
        if !trust.agencies.contains_key(&grant.grantee) {
            return Err(unknown("agency", &grant.grantee, trust.agencies.keys()));
        }
        if !trust.purposes.contains_key(&grant.purpose) {
            return Err(unknown("purpose", &grant.purpose, trust.purposes.keys()));
        }
        if grant.categories.is_empty() {
            return Err(LedgerError::Invalid(format!(
                "a consent needs at least one data category; choose from {}",
                catalogue(trust.categories.keys())
            )));
        }
        if grant.categories.len() > MAX_CATEGORIES {
            return Err(LedgerError::Invalid(format!(
                "a consent may name at most {MAX_CATEGORIES} data categories (got {})",
                grant.categories.len()
            )));
        }
        if let Some(category) = grant
            .categories
            .iter()
            .find(|c| !trust.categories.contains_key(*c))
        {
            return Err(unknown("data category", category, trust.categories.keys()));
        }
        let years = 1..=9999;
        if !years.contains(&valid_from.year()) || !years.contains(&valid_until.year()) {
            return Err(LedgerError::Invalid(
                "consent dates must lie between the years 1 and 9999".to_string(),
            ));
        }
        if valid_until <= valid_from {
            return Err(LedgerError::Invalid(format!(
                "a consent must end after it starts (valid from {}, until {})",
                valid_from.to_rfc3339(),
                valid_until.to_rfc3339()
            )));
        }
        if valid_until <= now {
            return Err(LedgerError::Invalid(format!(
                "a consent must end in the future (valid until {} has passed)",
                valid_until.to_rfc3339()
            )));
        }
        let longest = chrono::Duration::days(i64::from(trust.max_consent_days));
        if valid_until - valid_from > longest {
            return Err(LedgerError::Invalid(format!(
                "a consent may last at most {} days; choose an earlier end or a later start",
                trust.max_consent_days
            )));
        }
        Ok(())
    }
}

/// The state changes after a grant.
#[derive(Debug, Clone, Copy)]
enum Transition {
    Revoke,
    Pause,
    Resume,
}

impl Transition {
    /// The event it records, the state it leaves, and the (at most two) states it applies to.
    fn states(self) -> (ReceiptAction, ConsentState, [ConsentState; 2]) {
        use ConsentState::{Active, Paused, Revoked};
        match self {
            Self::Revoke => (ReceiptAction::Revoked, Revoked, [Active, Paused]),
            Self::Pause => (ReceiptAction::Paused, Paused, [Active, Active]),
            Self::Resume => (ReceiptAction::Resumed, Active, [Paused, Paused]),
        }
    }
}

/// Appends one row to a consent's history, inside the transaction of the change it records.
const EVENT: &str = "INSERT INTO consent_events (handle, action, at) VALUES ($1, $2, $3)";

/// The user-facing reason a change does not apply to a consent in `state`.
fn conflict(action: ReceiptAction, state: &str) -> LedgerError {
    let message = match (action, ConsentState::parse(state)) {
        (ReceiptAction::Revoked, Some(ConsentState::Revoked)) => {
            "this consent is already revoked".to_string()
        }
        (ReceiptAction::Paused, Some(ConsentState::Paused)) => {
            "this consent is already paused".to_string()
        }
        (ReceiptAction::Resumed, Some(ConsentState::Active)) => {
            "this consent is not paused, so there is nothing to resume".to_string()
        }
        (_, Some(ConsentState::Revoked)) => format!(
            "this consent is revoked and cannot be {}; grant a new one instead",
            action.as_str()
        ),
        (_, Some(state)) => format!("a {} consent cannot be {}", state.as_str(), action.as_str()),
        (_, None) => {
            return LedgerError::Corrupt(format!("unknown consent state `{state}`"));
        }
    };
    LedgerError::Conflict(message)
}

/// `Invalid` naming the value sent (shortened, without control characters) and the valid ones.
fn unknown<'a>(what: &str, value: &str, valid: impl Iterator<Item = &'a String>) -> LedgerError {
    let shown: String = value.chars().filter(|c| !c.is_control()).take(64).collect();
    LedgerError::Invalid(format!(
        "unknown {what} `{shown}`; choose from {}",
        catalogue(valid)
    ))
}

/// The codes of a catalogue, quoted, for an error message.
fn catalogue<'a>(codes: impl Iterator<Item = &'a String>) -> String {
    let codes: Vec<&str> = codes.map(String::as_str).collect();
    if codes.is_empty() {
        "nothing: none is configured under `[trust]`".to_string()
    } else {
        quoted_list(&codes)
    }
}

/// The `categories` column: the codes, sorted (a `BTreeSet` iterates in order), one space apart.
fn join_categories(categories: &BTreeSet<String>) -> String {
    categories
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A failed read of `columns` (as listed in the `SELECT`): a value that does not decode is a
/// malformed row, anything else the store's.
fn read_error(columns: &'static str) -> impl FnOnce(sqlx::Error) -> LedgerError {
    move |error| match error {
        // The decoder's own message may quote the stored value; name the column instead.
        sqlx::Error::ColumnDecode { index, .. } => {
            let column = index
                .trim_matches('"')
                .parse::<usize>()
                .ok()
                .and_then(|i| columns.split(',').nth(i))
                .map_or(index.as_str(), str::trim);
            LedgerError::Corrupt(format!("column `{column}` cannot be read back"))
        }
        error => LedgerError::Store(error),
    }
}

fn decode(row: Row) -> Result<Consent, LedgerError> {
    let (
        handle,
        citizen,
        grantee,
        categories,
        purpose,
        valid_from,
        valid_until,
        state,
        granted_at,
        changed_at,
    ) = row;
    let citizen =
        CitizenId::parse(&citizen).map_err(|error| LedgerError::Corrupt(error.to_string()))?;
    let categories: BTreeSet<String> = categories.split_whitespace().map(str::to_string).collect();
    if categories.is_empty() {
        return Err(LedgerError::Corrupt(
            "a consent has no categories".to_string(),
        ));
    }
    let state = ConsentState::parse(&state)
        .ok_or_else(|| LedgerError::Corrupt(format!("unknown consent state `{state}`")))?;
    Ok(Consent {
        handle,
        citizen,
        grantee,
        categories,
        purpose,
        valid_from,
        valid_until,
        state,
        granted_at,
        changed_at,
    })
}

/// Rows decoded and sorted newest grant first (then by handle, so ties have one order on both
/// stores).
fn newest_first(rows: Vec<Row>) -> Result<Vec<Consent>, LedgerError> {
    let mut consents = rows
        .into_iter()
        .map(decode)
        .collect::<Result<Vec<_>, _>>()?;
    consents.sort_by(|a, b| {
        b.granted_at
            .cmp(&a.granted_at)
            .then_with(|| b.handle.cmp(&a.handle))
    });
    Ok(consents)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::testing::{TestStore, on_both_stores};
    use chrono::TimeZone;

    /// The catalogues every consent test speaks in.
    pub(crate) fn trust() -> TrustConfig {
        toml::from_str(
            r#"
            max_consent_days = 365
            [purposes]
            benefit-eligibility = "checking your eligibility for benefits"
            tax-assessment = "assessing your taxes"
            [categories]
            "dmv.license" = "your driver's licence"
            "dmv.vehicles" = "the vehicles registered to you"
            "tax.account" = "your tax account"
            [agencies.dmv]
            name = "the Motor Vehicle Agency"
            [agencies.benefits]
            name = "the Benefits Office"
            legal_basis = "Benefits Act, section 12"
            "#,
        )
        .unwrap()
    }

    /// 2026-11-22 10:00:00.123456789 UTC: nanoseconds, so truncation to microseconds shows.
    pub(crate) fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
            + chrono::Duration::nanoseconds(123_456_789)
    }

    fn days(n: i64) -> chrono::Duration {
        chrono::Duration::days(n)
    }

    pub(crate) fn citizen(id: &str) -> CitizenId {
        CitizenId::parse(id).unwrap()
    }

    /// Alice lets the DMV read her licence and vehicles, to check benefits, for 30 days from an
    /// hour before `t0`.
    pub(crate) fn alice_to_dmv() -> NewConsent {
        NewConsent {
            citizen: citizen("C0000001"),
            grantee: "dmv".to_string(),
            categories: ["dmv.license", "dmv.vehicles"]
                .into_iter()
                .map(str::to_string)
                .collect(),
            purpose: "benefit-eligibility".to_string(),
            valid_from: t0() - chrono::Duration::hours(1),
            valid_until: t0() + days(30),
        }
    }

    /// The ledger on a test store.
    trait LedgerStore {
        fn ledger(&self) -> ConsentLedger;
    }

    impl LedgerStore for TestStore {
        fn ledger(&self) -> ConsentLedger {
            ConsentLedger::new(self.store.clone(), Arc::new(trust()))
        }
    }

    on_both_stores!(
        sqlite "consents.db",
        postgres &["consents", "consent_events"];
        grant_reads_back_every_field,
        invalid_grants_write_nothing,
        state_changes_follow_the_lifecycle_and_are_recorded,
        another_citizens_handle_is_not_found,
        live_keeps_only_current_active_consents_for_the_grantee_and_purpose,
        still_live_drops_revoked_and_paused_handles,
        racing_revokes_give_one_success_and_one_conflict,
        a_malformed_row_is_reported_as_corrupt,
    );

    async fn grant_reads_back_every_field(db: &TestStore) {
        let ledger = db.ledger();
        let micros = |t: DateTime<Utc>| t.trunc_subsecs(6);
        let consent = ledger.grant(alice_to_dmv(), t0()).await.unwrap();

        let hex = consent.handle.strip_prefix("cns_").expect("cns_ prefix");
        assert_eq!(hex.len(), 32);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let expected = Consent {
            handle: consent.handle.clone(),
            citizen: citizen("C0000001"),
            grantee: "dmv".to_string(),
            categories: alice_to_dmv().categories,
            purpose: "benefit-eligibility".to_string(),
            valid_from: micros(alice_to_dmv().valid_from),
            valid_until: micros(alice_to_dmv().valid_until),
            state: ConsentState::Active,
            granted_at: micros(t0()),
            changed_at: micros(t0()),
        };
        assert_eq!(consent, expected);
        assert_eq!(consent.granted_at.timestamp_subsec_nanos(), 123_456_000);
        assert!(consent.covers("dmv.license") && !consent.covers("tax.account"));
        assert_eq!(consent.status(t0()), ConsentStatus::Active);

        let alice = citizen("C0000001");
        assert_eq!(
            ledger.get(&alice, &consent.handle).await.unwrap(),
            Some(consent.clone()),
            "every field reads back exactly"
        );
        assert_eq!(ledger.list(&alice).await.unwrap(), vec![consent.clone()]);
        assert_eq!(
            ledger
                .live(&alice, "dmv", "benefit-eligibility", t0())
                .await
                .unwrap(),
            vec![consent.clone()]
        );
        assert_eq!(
            ledger.history(&alice, &consent.handle).await.unwrap(),
            vec![ConsentEvent {
                action: ReceiptAction::Granted,
                at: micros(t0()),
            }]
        );

        // A later grant comes first in the list.
        let later = NewConsent {
            grantee: "benefits".to_string(),
            categories: BTreeSet::from(["tax.account".to_string()]),
            ..alice_to_dmv()
        };
        let second = ledger
            .grant(later, t0() + chrono::Duration::seconds(1))
            .await
            .unwrap();
        assert_ne!(second.handle, consent.handle);
        assert_eq!(ledger.list(&alice).await.unwrap(), vec![second, consent]);
        assert_eq!(ledger.list(&citizen("C0000002")).await.unwrap(), vec![]);
    }

    async fn invalid_grants_write_nothing(db: &TestStore) {
        let ledger = db.ledger();
        let many: BTreeSet<String> = (0..33).map(|i| format!("c{i}")).collect();
        let cases: Vec<(&str, NewConsent, &[&str])> = vec![
            (
                "unknown agency",
                NewConsent {
                    grantee: "irs".to_string(),
                    ..alice_to_dmv()
                },
                &["unknown agency `irs`", "`benefits` or `dmv`"],
            ),
            (
                "unknown purpose",
                NewConsent {
                    purpose: "marketing".to_string(),
                    ..alice_to_dmv()
                },
                &[
                    "unknown purpose `marketing`",
                    "`benefit-eligibility` or `tax-assessment`",
                ],
            ),
            (
                "unknown category",
                NewConsent {
                    categories: BTreeSet::from([
                        "dmv.license".to_string(),
                        "health.records".to_string(),
                    ]),
                    ..alice_to_dmv()
                },
                &[
                    "unknown data category `health.records`",
                    "`dmv.license`, `dmv.vehicles` or `tax.account`",
                ],
            ),
            (
                "no categories",
                NewConsent {
                    categories: BTreeSet::new(),
                    ..alice_to_dmv()
                },
                &["at least one data category", "`dmv.license`"],
            ),
            (
                "too many categories",
                NewConsent {
                    categories: many,
                    ..alice_to_dmv()
                },
                &["at most 32 data categories (got 33)"],
            ),
            (
                "ends when it starts",
                NewConsent {
                    valid_until: alice_to_dmv().valid_from,
                    ..alice_to_dmv()
                },
                &["must end after it starts"],
            ),
            (
                "ends before it starts",
                NewConsent {
                    valid_from: t0() + days(2),
                    valid_until: t0() + days(1),
                    ..alice_to_dmv()
                },
                &["must end after it starts"],
            ),
            (
                "ended already",
                NewConsent {
                    valid_from: t0() - days(10),
                    valid_until: t0() - chrono::Duration::seconds(1),
                    ..alice_to_dmv()
                },
                &["must end in the future", "2026-11-22T09:59:59"],
            ),
            (
                "too long",
                NewConsent {
                    valid_from: t0(),
                    valid_until: t0() + days(365) + chrono::Duration::microseconds(1),
                    ..alice_to_dmv()
                },
                &["at most 365 days"],
            ),
            (
                "beyond year 9999",
                NewConsent {
                    valid_from: Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
                    valid_until: Utc.with_ymd_and_hms(10_000, 1, 2, 0, 0, 0).unwrap(),
                    ..alice_to_dmv()
                },
                &["between the years 1 and 9999"],
            ),
        ];
        for (case, grant, needles) in cases {
            let error = ledger.grant(grant, t0()).await.unwrap_err();
            let LedgerError::Invalid(message) = &error else {
                panic!("{case}: expected Invalid, got {error:?}");
            };
            for needle in needles {
                assert!(message.contains(needle), "{case}: {message}");
            }
        }
        assert_eq!(db.count("consents").await, 0);
        assert_eq!(db.count("consent_events").await, 0);

        // The limits themselves are fine: exactly the longest allowed consent.
        let longest = NewConsent {
            valid_from: t0(),
            valid_until: t0() + days(365),
            ..alice_to_dmv()
        };
        ledger.grant(longest, t0()).await.unwrap();
    }

    async fn state_changes_follow_the_lifecycle_and_are_recorded(db: &TestStore) {
        let ledger = db.ledger();
        let alice = citizen("C0000001");
        let consent = ledger.grant(alice_to_dmv(), t0()).await.unwrap();
        let handle = consent.handle.as_str();
        let at = |minutes: i64| t0() + chrono::Duration::minutes(minutes);
        let conflict = |result: Result<Consent, LedgerError>| match result {
            Err(LedgerError::Conflict(message)) => message,
            other => panic!("expected Conflict, got {other:?}"),
        };

        let paused = ledger.pause(&alice, handle, at(1)).await.unwrap();
        assert_eq!(paused.state, ConsentState::Paused);
        assert_eq!(paused.status(at(1)), ConsentStatus::Paused);
        assert_eq!(paused.changed_at, at(1).trunc_subsecs(6));
        assert_eq!(paused.granted_at, consent.granted_at);
        assert!(conflict(ledger.pause(&alice, handle, at(2)).await).contains("already paused"));

        let resumed = ledger.resume(&alice, handle, at(3)).await.unwrap();
        assert_eq!(resumed.state, ConsentState::Active);
        assert_eq!(
            Consent {
                changed_at: consent.changed_at,
                ..resumed.clone()
            },
            consent,
            "resuming restores the consent as granted"
        );
        assert!(conflict(ledger.resume(&alice, handle, at(4)).await).contains("not paused"));

        let revoked = ledger.revoke(&alice, handle, at(5)).await.unwrap();
        assert_eq!(revoked.state, ConsentState::Revoked);
        assert_eq!(revoked.status(at(5)), ConsentStatus::Revoked);
        assert_eq!(ledger.get(&alice, handle).await.unwrap(), Some(revoked));
        assert!(conflict(ledger.revoke(&alice, handle, at(6)).await).contains("already revoked"));
        assert!(conflict(ledger.pause(&alice, handle, at(6)).await).contains("revoked"));
        assert!(conflict(ledger.resume(&alice, handle, at(6)).await).contains("revoked"));

        let history: Vec<(ReceiptAction, DateTime<Utc>)> = ledger
            .history(&alice, handle)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.action, e.at))
            .collect();
        assert_eq!(
            history,
            vec![
                (ReceiptAction::Granted, at(0).trunc_subsecs(6)),
                (ReceiptAction::Paused, at(1).trunc_subsecs(6)),
                (ReceiptAction::Resumed, at(3).trunc_subsecs(6)),
                (ReceiptAction::Revoked, at(5).trunc_subsecs(6)),
            ],
            "one event per change, none for refused changes"
        );

        // A paused consent can be revoked directly.
        let other = ledger.grant(alice_to_dmv(), t0()).await.unwrap();
        ledger.pause(&alice, &other.handle, at(1)).await.unwrap();
        let revoked = ledger.revoke(&alice, &other.handle, at(2)).await.unwrap();
        assert_eq!(revoked.state, ConsentState::Revoked);
        assert_eq!(db.count("consent_events").await, 4 + 3);
    }

    async fn another_citizens_handle_is_not_found(db: &TestStore) {
        let ledger = db.ledger();
        let (alice, bob) = (citizen("C0000001"), citizen("C0000002"));
        let consent = ledger.grant(alice_to_dmv(), t0()).await.unwrap();
        let handle = consent.handle.as_str();
        let not_found = |result: Result<Consent, LedgerError>| {
            assert!(
                matches!(result, Err(LedgerError::NotFound)),
                "expected NotFound, got {result:?}"
            );
        };
        not_found(ledger.revoke(&bob, handle, t0()).await);
        not_found(ledger.pause(&bob, handle, t0()).await);
        not_found(ledger.resume(&bob, handle, t0()).await);
        assert_eq!(ledger.get(&bob, handle).await.unwrap(), None);
        assert!(matches!(
            ledger.history(&bob, handle).await,
            Err(LedgerError::NotFound)
        ));
        // Unknown handles look exactly the same.
        not_found(
            ledger
                .revoke(&alice, "cns_00000000000000000000000000000000", t0())
                .await,
        );
        assert_eq!(ledger.get(&alice, "nonsense").await.unwrap(), None);

        assert_eq!(
            ledger.get(&alice, handle).await.unwrap(),
            Some(consent.clone())
        );
        assert_eq!(ledger.history(&alice, handle).await.unwrap().len(), 1);
        assert_eq!(db.count("consent_events").await, 1);
    }

    async fn live_keeps_only_current_active_consents_for_the_grantee_and_purpose(db: &TestStore) {
        let ledger = db.ledger();
        let alice = citizen("C0000001");
        let live = ledger.grant(alice_to_dmv(), t0()).await.unwrap();
        let paused = ledger.grant(alice_to_dmv(), t0()).await.unwrap();
        ledger.pause(&alice, &paused.handle, t0()).await.unwrap();
        let revoked = ledger.grant(alice_to_dmv(), t0()).await.unwrap();
        ledger.revoke(&alice, &revoked.handle, t0()).await.unwrap();
        let expired = NewConsent {
            valid_from: t0() - days(60),
            valid_until: t0() - days(1),
            ..alice_to_dmv()
        };
        ledger.grant(expired, t0() - days(60)).await.unwrap();
        let pending = NewConsent {
            valid_from: t0() + days(1),
            valid_until: t0() + days(5),
            ..alice_to_dmv()
        };
        let pending = ledger.grant(pending, t0()).await.unwrap();
        let other_purpose = NewConsent {
            purpose: "tax-assessment".to_string(),
            ..alice_to_dmv()
        };
        ledger.grant(other_purpose, t0()).await.unwrap();
        let other_grantee = NewConsent {
            grantee: "benefits".to_string(),
            ..alice_to_dmv()
        };
        ledger.grant(other_grantee, t0()).await.unwrap();
        let other_citizen = NewConsent {
            citizen: citizen("C0000002"),
            ..alice_to_dmv()
        };
        ledger.grant(other_citizen, t0()).await.unwrap();

        let handles = |consents: Vec<Consent>| -> BTreeSet<String> {
            consents.into_iter().map(|c| c.handle).collect()
        };
        let at = |now| ledger.live(&alice, "dmv", "benefit-eligibility", now);
        assert_eq!(
            handles(at(t0()).await.unwrap()),
            BTreeSet::from([live.handle.clone()])
        );
        // The pending one starts at its valid_from, and each ends at its valid_until.
        assert_eq!(
            handles(at(pending.valid_from).await.unwrap()),
            BTreeSet::from([live.handle.clone(), pending.handle.clone()])
        );
        assert_eq!(
            handles(at(pending.valid_until).await.unwrap()),
            BTreeSet::from([live.handle.clone()])
        );
        assert_eq!(
            handles(at(live.valid_until).await.unwrap()),
            BTreeSet::new()
        );
        assert_eq!(
            ledger.list(&alice).await.unwrap().len(),
            7,
            "list shows every consent, live or not"
        );
    }

    async fn still_live_drops_revoked_and_paused_handles(db: &TestStore) {
        let ledger = db.ledger();
        let alice = citizen("C0000001");
        let a = ledger.grant(alice_to_dmv(), t0()).await.unwrap().handle;
        let b = ledger.grant(alice_to_dmv(), t0()).await.unwrap().handle;
        let asked = vec![a.clone(), b.clone(), "cns_unknown".to_string(), a.clone()];
        assert_eq!(
            ledger.still_live(&asked, t0()).await.unwrap(),
            HashSet::from([a.clone(), b.clone()])
        );
        ledger.revoke(&alice, &a, t0()).await.unwrap();
        assert_eq!(
            ledger.still_live(&asked, t0()).await.unwrap(),
            HashSet::from([b.clone()])
        );
        ledger.pause(&alice, &b, t0()).await.unwrap();
        assert_eq!(
            ledger.still_live(&asked, t0()).await.unwrap(),
            HashSet::new()
        );
        ledger.resume(&alice, &b, t0()).await.unwrap();
        assert_eq!(
            ledger.still_live(&asked, t0() + days(31)).await.unwrap(),
            HashSet::new(),
            "expired by then"
        );
        assert_eq!(ledger.still_live(&[], t0()).await.unwrap(), HashSet::new());

        // More handles than one query binds.
        let mut many: Vec<String> = (0..1200).map(|i| format!("cns_{i:032x}")).collect();
        many.push(b.clone());
        assert_eq!(
            ledger.still_live(&many, t0()).await.unwrap(),
            HashSet::from([b])
        );
    }

    async fn racing_revokes_give_one_success_and_one_conflict(db: &TestStore) {
        let ledger = db.ledger();
        let alice = citizen("C0000001");
        for _ in 0..10 {
            let handle = ledger.grant(alice_to_dmv(), t0()).await.unwrap().handle;
            let (first, second) = tokio::join!(
                ledger.revoke(&alice, &handle, t0()),
                ledger.revoke(&alice, &handle, t0()),
            );
            let outcomes = [&first, &second];
            assert_eq!(
                outcomes.iter().filter(|r| r.is_ok()).count(),
                1,
                "{first:?} {second:?}"
            );
            assert_eq!(
                outcomes
                    .iter()
                    .filter(|r| matches!(r, Err(LedgerError::Conflict(_))))
                    .count(),
                1,
                "{first:?} {second:?}"
            );
            let history = ledger.history(&alice, &handle).await.unwrap();
            assert_eq!(
                history.iter().map(|e| e.action).collect::<Vec<_>>(),
                vec![ReceiptAction::Granted, ReceiptAction::Revoked]
            );
        }
    }

    async fn a_malformed_row_is_reported_as_corrupt(db: &TestStore) {
        let ledger = db.ledger();
        let alice = citizen("C0000001");
        let consent = ledger.grant(alice_to_dmv(), t0()).await.unwrap();
        db.execute("UPDATE consents SET categories = ' '").await;
        assert!(matches!(
            ledger.get(&alice, &consent.handle).await,
            Err(LedgerError::Corrupt(_))
        ));
        assert!(matches!(
            ledger
                .live(&alice, "dmv", "benefit-eligibility", t0())
                .await,
            Err(LedgerError::Corrupt(_))
        ));
        assert!(matches!(
            ledger.revoke(&alice, &consent.handle, t0()).await,
            Err(LedgerError::Corrupt(_))
        ));
        assert_eq!(
            db.count("consent_events").await,
            1,
            "a change to a row that cannot be read back is not made"
        );
    }

    #[tokio::test]
    async fn sqlite_time_that_does_not_parse_is_corrupt() {
        let db = TestStore::sqlite("consents.db").await;
        let ledger = db.ledger();
        let alice = citizen("C0000001");
        let consent = ledger.grant(alice_to_dmv(), t0()).await.unwrap();
        db.execute("UPDATE consents SET valid_until = 'soon'").await;
        let error = ledger.get(&alice, &consent.handle).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "a stored consent is malformed: column `valid_until` cannot be read back",
            "names the column, not the value"
        );
        db.close().await;
    }

    #[tokio::test]
    async fn sqlite_lookups_use_the_citizen_index() {
        let db = TestStore::sqlite("consents.db").await;
        let Store::Sqlite(pool) = &db.store else {
            unreachable!()
        };
        for sql in [
            "SELECT handle FROM consents WHERE citizen_id = 'C1'",
            "SELECT handle FROM consents WHERE citizen_id = 'C1' AND grantee = 'dmv' \
             AND purpose = 'p' AND state = 'active'",
        ] {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .fetch_all(pool)
                    .await
                    .unwrap();
            assert!(
                plan.iter()
                    .any(|row| row.3.contains("consents_by_citizen_grantee_purpose")),
                "{sql}: {plan:?}"
            );
        }
        db.close().await;
    }

    #[test]
    fn status_prefers_what_the_citizen_did_over_the_calendar() {
        let consent = Consent {
            handle: "cns_x".to_string(),
            citizen: citizen("C0000001"),
            grantee: "dmv".to_string(),
            categories: BTreeSet::from(["dmv.license".to_string()]),
            purpose: "benefit-eligibility".to_string(),
            valid_from: t0(),
            valid_until: t0() + days(1),
            state: ConsentState::Active,
            granted_at: t0(),
            changed_at: t0(),
        };
        let before = t0() - chrono::Duration::microseconds(1);
        let after = t0() + days(1);
        assert_eq!(consent.status(before), ConsentStatus::Pending);
        assert_eq!(consent.status(t0()), ConsentStatus::Active);
        assert_eq!(consent.status(after), ConsentStatus::Expired);
        assert!(consent.is_live(t0()) && !consent.is_live(after) && !consent.is_live(before));
        for (state, status) in [
            (ConsentState::Paused, ConsentStatus::Paused),
            (ConsentState::Revoked, ConsentStatus::Revoked),
        ] {
            let changed = Consent {
                state,
                ..consent.clone()
            };
            for now in [before, t0(), after] {
                assert_eq!(changed.status(now), status);
            }
        }
        assert_eq!(ConsentStatus::Pending.as_str(), "pending");
        assert_eq!(ConsentStatus::Expired.graphql_name(), "EXPIRED");
        for state in [
            ConsentState::Active,
            ConsentState::Paused,
            ConsentState::Revoked,
        ] {
            assert_eq!(ConsentState::parse(state.as_str()), Some(state));
        }
    }
}
