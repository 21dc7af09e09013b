//! The simulated agencies' data changes over time, so the gateway has life events to detect.
//!
//! `civicgraph demo --events-per-minute N` starts a [`ChangeSimulator`]: N times a minute it
//! picks a kind of change and a citizen and applies the change to the backend that owns it,
//! exactly as that agency's own systems would:
//!
//! | change | backend | how the gateway learns of it |
//! |---|---|---|
//! | job loss | a new `PENDING` claim (separation `LAYOFF` or `PLANT_CLOSURE`) in `ui_claims`, `updated_at` = now | polling `ui.claims_changed_since` |
//! | address change | the registry's address overlay and change log | polling `registry.changes` |
//! | birth | the registry's change log (one entry per parent), and a signed webhook per parent to `POST {gateway}/events/registry` | the webhook (and `registry.changes`) |
//!
//! What changes, and for whom, is a pure function of the seed ([`ChangePlanner`]), so a test
//! can predict it; only the timestamps come from the clock. A job loss goes to someone who
//! already has a claimant id (and so a crosswalk link to unemployment insurance); its
//! `updated_at` is whole seconds and strictly after the previous simulated claim's, so a poller
//! that reads `updated_at > watermark` never misses a claim filed in the same second.
//!
//! The birth webhook follows Standard Webhooks: `webhook-id` `msg_<uuid>` (kept across
//! retries so the gateway can drop a redelivery), `webhook-timestamp` in unix seconds and
//! `webhook-signature` `v1,<base64>` over `{id}.{timestamp}.{body}`, with the body
//! `{"kind":"birth","birth_id":"B…","parent_id":"C…","child_id":"C9…","registered_at":"…"}`.
//! A failed delivery is retried a few times with doubling pauses, in the background, and
//! logged with the webhook id only, never a citizen's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;

use super::data::{
    ClaimStatus, Money, Population, SeparationReason, SplitMix64, UnemploymentClaim,
    random_address, random_employer,
};
use super::registry::{AddressChange, Birth, ChangeAddressError, LiveRegistry, NewAddress};
use super::ui::{UiWriter, WriteClaimError};
use crate::events::signature::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSecret};

/// The fastest rate the simulator runs at (100 changes a second).
pub const MAX_EVENTS_PER_MINUTE: u32 = 6_000;
/// Attempts at one webhook delivery before it is given up (logged, counted as failed).
pub const WEBHOOK_ATTEMPTS: u32 = 4;

/// Mixed into the seed so the planner's stream differs from every person's.
const PLANNER_SALT: u64 = 0x6368_616E_6765_735F;
/// Ages at which people become parents in the simulation.
const PARENT_AGES: std::ops::RangeInclusive<u32> = 18..=45;

/// The kinds of change the simulator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A claimant files a new unemployment claim.
    JobLoss,
    /// A person moves.
    AddressChange,
    /// A child is born to one or two parents.
    Birth,
}

/// A change as the planner chose it, before it is applied (no timestamps, no ids the
/// backends assign).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedChange {
    /// A claimant lost their job.
    JobLoss {
        /// The claimant's citizen id.
        citizen_id: String,
        /// Their claimant id at unemployment insurance.
        claimant_id: String,
        /// `LAYOFF` or `PLANT_CLOSURE`.
        separation_reason: SeparationReason,
        /// Who let them go.
        last_employer: &'static str,
        /// The weekly benefit the claim will pay.
        weekly_benefit: Money,
    },
    /// A person moves to a new address.
    AddressChange {
        /// Who moves.
        citizen_id: String,
        /// Where to.
        address: NewAddress,
    },
    /// A child is born.
    Birth {
        /// One or two parents, distinct.
        parent_ids: Vec<String>,
    },
}

impl PlannedChange {
    /// Which kind of change this is.
    pub fn kind(&self) -> ChangeKind {
        match self {
            Self::JobLoss { .. } => ChangeKind::JobLoss,
            Self::AddressChange { .. } => ChangeKind::AddressChange,
            Self::Birth { .. } => ChangeKind::Birth,
        }
    }
}

/// Chooses the changes: a pure function of the population and the seed.
#[derive(Debug, Clone)]
pub struct ChangePlanner {
    rng: SplitMix64,
    population: Arc<Population>,
    /// Indexes of people with a claimant id.
    claimants: Vec<usize>,
    /// Indexes of adults (everyone may move, but children move with a parent).
    adults: Vec<usize>,
    /// Indexes of people of parenting age.
    parents: Vec<usize>,
    job_losses: bool,
}

impl ChangePlanner {
    /// A planner over `population`; `job_losses` is off when there is no unemployment
    /// insurance database to file claims in (then those turns become address changes).
    pub fn new(population: Arc<Population>, seed: u64, job_losses: bool) -> Self {
        let people = population.people();
        let indexes = |keep: &dyn Fn(usize) -> bool| -> Vec<usize> {
            (0..people.len()).filter(|&index| keep(index)).collect()
        };
        let claimants = indexes(&|index| people[index].claimant_id.is_some());
        let adults = indexes(&|index| people[index].age() >= 18);
        let mut parents = indexes(&|index| PARENT_AGES.contains(&people[index].age()));
        if parents.is_empty() {
            parents.clone_from(&adults);
        }
        Self {
            rng: SplitMix64::new(seed ^ PLANNER_SALT),
            population,
            claimants,
            adults,
            parents,
            job_losses,
        }
    }

    /// The next change. Four in ten are job losses (when enabled), four in ten moves, two in
    /// ten births; a kind with nobody to apply it to becomes a move.
    pub fn next_change(&mut self) -> PlannedChange {
        let roll = self.rng.below(100);
        let people = self.population.people();
        if roll < 40 && self.job_losses && !self.claimants.is_empty() {
            let person = &people[self.claimants[self.rng.index(self.claimants.len())]];
            let separation_reason = if self.rng.chance(50) {
                SeparationReason::Layoff
            } else {
                SeparationReason::PlantClosure
            };
            let last_employer = random_employer(&mut self.rng);
            let cents = 15_000 + i64::try_from(self.rng.below(70_001)).unwrap_or(0);
            return PlannedChange::JobLoss {
                citizen_id: person.id.clone(),
                claimant_id: person.claimant_id.clone().unwrap_or_default(),
                separation_reason,
                last_employer,
                weekly_benefit: Money::from_cents(cents),
            };
        }
        if roll >= 80 && !self.parents.is_empty() {
            let first = self.parents[self.rng.index(self.parents.len())];
            let mut parent_ids = vec![people[first].id.clone()];
            if self.parents.len() > 1 && self.rng.chance(40) {
                let mut second = first;
                while second == first {
                    second = self.parents[self.rng.index(self.parents.len())];
                }
                parent_ids.push(people[second].id.clone());
            }
            return PlannedChange::Birth { parent_ids };
        }
        let index = if self.adults.is_empty() {
            self.rng.index(people.len())
        } else {
            self.adults[self.rng.index(self.adults.len())]
        };
        let person = &people[index];
        let address = random_address(&mut self.rng);
        PlannedChange::AddressChange {
            citizen_id: person.id.clone(),
            address: NewAddress {
                street: address.street,
                city: address.city,
                postal_code: address.postal_code,
            },
        }
    }
}

/// A change as it was applied, with what the backend recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppliedChange {
    /// The claim filed in the unemployment insurance database.
    JobLoss(UnemploymentClaim),
    /// The registry's confirmation of the move.
    AddressChange(AddressChange),
    /// The registered birth.
    Birth(Birth),
}

/// Why a planned change could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyChangeError {
    /// The claim could not be written.
    #[error(transparent)]
    Claim(#[from] WriteClaimError),
    /// The registry refused the move (a bug in the planner: it only plans valid addresses).
    #[error("the registry refused the address change: {0}")]
    Address(#[from] ChangeAddressError),
    /// The registry knew none of the parents.
    #[error("the registry knows none of the birth's parents")]
    Birth,
    /// A job loss with no unemployment insurance database to file its claim in.
    #[error("no unemployment insurance database to file the claim in")]
    NoDatabase,
}

/// How many changes of each kind were applied and how the webhooks went, for the demo's
/// banner, logs and tests.
#[derive(Debug, Default)]
pub struct ChangeCounters {
    job_losses: AtomicU64,
    address_changes: AtomicU64,
    births: AtomicU64,
    failed_changes: AtomicU64,
    webhooks_delivered: AtomicU64,
    webhooks_failed: AtomicU64,
}

/// A snapshot of [`ChangeCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeCounts {
    /// Claims filed.
    pub job_losses: u64,
    /// Moves recorded.
    pub address_changes: u64,
    /// Births registered.
    pub births: u64,
    /// Planned changes a backend refused.
    pub failed_changes: u64,
    /// Birth webhooks the gateway accepted (2xx).
    pub webhooks_delivered: u64,
    /// Birth webhooks given up after [`WEBHOOK_ATTEMPTS`].
    pub webhooks_failed: u64,
}

impl ChangeCounts {
    /// Changes applied, of every kind.
    pub fn applied(&self) -> u64 {
        self.job_losses + self.address_changes + self.births
    }
}

impl ChangeCounters {
    /// The counts now.
    pub fn snapshot(&self) -> ChangeCounts {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ChangeCounts {
            job_losses: read(&self.job_losses),
            address_changes: read(&self.address_changes),
            births: read(&self.births),
            failed_changes: read(&self.failed_changes),
            webhooks_delivered: read(&self.webhooks_delivered),
            webhooks_failed: read(&self.webhooks_failed),
        }
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where the registry sends its birth webhooks and how it signs them.
#[derive(Debug, Clone)]
pub struct RegistryWebhook {
    client: reqwest::Client,
    url: String,
    secret: WebhookSecret,
    first_backoff: Duration,
}

impl RegistryWebhook {
    /// Webhooks to `url` (the gateway's `…/events/registry`), signed with `secret`; a failed
    /// attempt waits `first_backoff`, then twice that, and so on.
    ///
    /// # Errors
    ///
    /// If the HTTP client cannot be built (no TLS roots on the machine).
    pub fn new(
        url: impl Into<String>,
        secret: WebhookSecret,
        first_backoff: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            client,
            url: url.into(),
            secret,
            first_backoff,
        })
    }

    /// Sends one birth notice, retrying; `true` when the gateway accepted it.
    async fn deliver(&self, body: Vec<u8>) -> bool {
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let mut pause = self.first_backoff;
        for attempt in 1..=WEBHOOK_ATTEMPTS {
            let timestamp = Utc::now().timestamp();
            let signature = self.secret.sign(&id, timestamp, &body);
            let sent = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(ID_HEADER, &id)
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, signature)
                .body(body.clone())
                .send()
                .await;
            let outcome = match sent {
                Ok(response) if response.status().is_success() => return true,
                Ok(response) => format!("HTTP {}", response.status().as_u16()),
                Err(error) => error.without_url().to_string(),
            };
            if attempt == WEBHOOK_ATTEMPTS {
                tracing::warn!(webhook_id = %id, attempts = attempt, error = %outcome, "Registry webhook not delivered; giving up.");
            } else {
                tracing::debug!(webhook_id = %id, attempt, error = %outcome, "Registry webhook not delivered; retrying.");
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
            }
        }
        false
    }
}

/// The birth notice the registry POSTs: ids and a time only.
#[derive(Debug, Serialize)]
struct BirthNotice<'a> {
    kind: &'static str,
    birth_id: &'a str,
    parent_id: &'a str,
    child_id: &'a str,
    registered_at: String,
}

/// Applies planned changes to the simulated agencies.
#[derive(Debug)]
pub struct ChangeSimulator {
    planner: ChangePlanner,
    registry: Arc<LiveRegistry>,
    ui: Option<UiWriter>,
    webhook: Option<Arc<RegistryWebhook>>,
    /// Claims filed per claimant so far, for the next claim's ordinal.
    filed: HashMap<String, usize>,
    last_claim_at: Option<DateTime<Utc>>,
    counters: Arc<ChangeCounters>,
    deliveries: JoinSet<()>,
}

impl ChangeSimulator {
    /// A simulator changing `registry` (and the population behind it), filing claims through
    /// `ui` when given (job losses happen only then) and announcing births to `webhook` when
    /// given; what it changes follows `seed`.
    pub fn new(
        registry: Arc<LiveRegistry>,
        ui: Option<UiWriter>,
        webhook: Option<RegistryWebhook>,
        seed: u64,
    ) -> Self {
        let planner = ChangePlanner::new(Arc::clone(registry.population()), seed, ui.is_some());
        Self {
            planner,
            registry,
            ui,
            webhook: webhook.map(Arc::new),
            filed: HashMap::new(),
            last_claim_at: None,
            counters: Arc::new(ChangeCounters::default()),
            deliveries: JoinSet::new(),
        }
    }

    /// The counters, shared with whoever wants to watch.
    pub fn counters(&self) -> Arc<ChangeCounters> {
        Arc::clone(&self.counters)
    }

    /// Plans and applies one change at `now`. Birth webhooks go out in the background.
    ///
    /// # Errors
    ///
    /// If the backend refused the change; nothing was changed then.
    pub async fn step(&mut self, now: DateTime<Utc>) -> Result<AppliedChange, ApplyChangeError> {
        let planned = self.planner.next_change();
        let applied = self.apply(planned, now).await;
        let counter = match &applied {
            Ok(AppliedChange::JobLoss(_)) => &self.counters.job_losses,
            Ok(AppliedChange::AddressChange(_)) => &self.counters.address_changes,
            Ok(AppliedChange::Birth(_)) => &self.counters.births,
            Err(_) => &self.counters.failed_changes,
        };
        ChangeCounters::add(counter);
        applied
    }

    async fn apply(
        &mut self,
        planned: PlannedChange,
        now: DateTime<Utc>,
    ) -> Result<AppliedChange, ApplyChangeError> {
        match planned {
            PlannedChange::JobLoss {
                citizen_id: _,
                claimant_id,
                separation_reason,
                last_employer,
                weekly_benefit,
            } => {
                let Some(ui) = &self.ui else {
                    // The planner plans no job loss without a database.
                    return Err(ApplyChangeError::NoDatabase);
                };
                let updated_at = self.next_claim_time(now);
                let earlier = self.registry.population().claims_of(&claimant_id).len();
                let filed = self.filed.get(&claimant_id).copied().unwrap_or(0);
                let digits = claimant_id.strip_prefix("UI-").unwrap_or(&claimant_id);
                let claim = UnemploymentClaim {
                    claim_id: format!("CLM-{digits}-{}", earlier + filed + 1),
                    claimant_id: claimant_id.clone(),
                    filed_on: updated_at.date_naive(),
                    status: ClaimStatus::Pending,
                    separation_reason,
                    last_employer,
                    weekly_benefit,
                    weeks_paid: 0,
                    benefit_end_date: None,
                    updated_at,
                };
                ui.insert_claim(&claim).await?;
                self.filed.insert(claimant_id, filed + 1);
                self.last_claim_at = Some(updated_at);
                Ok(AppliedChange::JobLoss(claim))
            }
            PlannedChange::AddressChange {
                citizen_id,
                address,
            } => Ok(AppliedChange::AddressChange(self.registry.change_address(
                &citizen_id,
                &address,
                now,
            )?)),
            PlannedChange::Birth { parent_ids } => {
                let parents: Vec<&str> = parent_ids.iter().map(String::as_str).collect();
                let birth = self
                    .registry
                    .register_birth(&parents, now)
                    .ok_or(ApplyChangeError::Birth)?;
                self.announce(&birth);
                Ok(AppliedChange::Birth(birth))
            }
        }
    }

    /// Whole seconds, and after the previous simulated claim.
    fn next_claim_time(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let now = now.with_nanosecond(0).unwrap_or(now);
        match self.last_claim_at {
            Some(last) if now <= last => last + chrono::Duration::seconds(1),
            _ => now,
        }
    }

    /// One webhook per parent, each delivered (with retries) in the background.
    fn announce(&mut self, birth: &Birth) {
        let Some(webhook) = &self.webhook else {
            return;
        };
        let registered_at = birth
            .registered_at
            .to_rfc3339_opts(SecondsFormat::Secs, true);
        for parent in &birth.parent_ids {
            let notice = BirthNotice {
                kind: "birth",
                birth_id: &birth.birth_id,
                parent_id: parent,
                child_id: &birth.child_id,
                registered_at: registered_at.clone(),
            };
            let Ok(body) = serde_json::to_vec(&notice) else {
                continue; // strings only: cannot fail
            };
            let webhook = Arc::clone(webhook);
            let counters = Arc::clone(&self.counters);
            self.deliveries.spawn(async move {
                let counter = if webhook.deliver(body).await {
                    &counters.webhooks_delivered
                } else {
                    &counters.webhooks_failed
                };
                ChangeCounters::add(counter);
            });
        }
    }

    /// Waits up to `grace` for webhooks still being delivered, then drops the rest, and
    /// closes the database connection.
    pub async fn finish(mut self, grace: Duration) {
        let drained = tokio::time::timeout(grace, async {
            while self.deliveries.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.deliveries.shutdown().await;
        }
        if let Some(ui) = self.ui.take() {
            ui.close().await;
        }
    }

    /// Runs the simulator at `events_per_minute` (1 to [`MAX_EVENTS_PER_MINUTE`], clamped)
    /// until [`RunningSimulator::shutdown`]. The first change comes one period after the start.
    pub fn spawn(mut self, events_per_minute: u32) -> RunningSimulator {
        let rate = events_per_minute.clamp(1, MAX_EVENTS_PER_MINUTE);
        let period = Duration::from_secs(60) / rate;
        let counters = self.counters();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticks.tick() => {
                        if let Err(error) = self.step(Utc::now()).await {
                            tracing::warn!(%error, "Simulated change not applied.");
                        }
                        while self.deliveries.try_join_next().is_some() {}
                    }
                }
            }
            self.finish(Duration::from_secs(2)).await;
        });
        RunningSimulator {
            stop,
            task,
            counters,
            events_per_minute: rate,
        }
    }
}

/// A simulator running in the background.
#[derive(Debug)]
pub struct RunningSimulator {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    counters: Arc<ChangeCounters>,
    events_per_minute: u32,
}

impl RunningSimulator {
    /// What it has done so far.
    pub fn counts(&self) -> ChangeCounts {
        self.counters.snapshot()
    }

    /// The rate it runs at.
    pub fn events_per_minute(&self) -> u32 {
        self.events_per_minute
    }

    /// Stops making changes, gives webhooks in flight a moment, and closes the database.
    pub async fn shutdown(self) -> ChangeCounts {
        // A send error means the task already ended.
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "The change simulator's task ended abnormally.");
        }
        self.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;
    use crate::demo::data::municipality;
    use crate::demo::ui::{self, UiTables};

    fn population() -> Arc<Population> {
        Arc::new(Population::generate(300, 42))
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + seconds, 0).expect("a valid instant")
    }

    #[test]
    fn the_same_seed_plans_the_same_changes() {
        let plan = |seed, job_losses| -> Vec<PlannedChange> {
            let mut planner = ChangePlanner::new(population(), seed, job_losses);
            (0..300).map(|_| planner.next_change()).collect()
        };
        let first = plan(7, true);
        assert_eq!(first, plan(7, true));
        assert_ne!(first, plan(8, true));
        let kinds: HashSet<ChangeKind> = first.iter().map(PlannedChange::kind).collect();
        assert_eq!(kinds.len(), 3, "every kind occurs");
        let count = |kind| first.iter().filter(|c| c.kind() == kind).count();
        assert!(
            (90..=150).contains(&count(ChangeKind::JobLoss)),
            "about 40%"
        );
        assert!((30..=90).contains(&count(ChangeKind::Birth)), "about 20%");
        assert!(
            plan(7, false)
                .iter()
                .all(|change| change.kind() != ChangeKind::JobLoss),
            "no job losses without a database"
        );
    }

    #[test]
    fn planned_changes_fit_the_people_they_happen_to() {
        let population = population();
        let mut planner = ChangePlanner::new(Arc::clone(&population), 3, true);
        for _ in 0..500 {
            match planner.next_change() {
                PlannedChange::JobLoss {
                    citizen_id,
                    claimant_id,
                    separation_reason,
                    weekly_benefit,
                    ..
                } => {
                    let person = population.person(&citizen_id).expect("a person");
                    assert_eq!(person.claimant_id.as_deref(), Some(claimant_id.as_str()));
                    assert!(matches!(
                        separation_reason,
                        SeparationReason::Layoff | SeparationReason::PlantClosure
                    ));
                    assert!((15_000..=85_000).contains(&weekly_benefit.cents()));
                }
                PlannedChange::AddressChange {
                    citizen_id,
                    address,
                } => {
                    let person = population.person(&citizen_id).expect("a person");
                    assert!(person.age() >= 18);
                    assert!(municipality(&address.city).is_some());
                }
                PlannedChange::Birth { parent_ids } => {
                    assert!((1..=2).contains(&parent_ids.len()));
                    let distinct: HashSet<&String> = parent_ids.iter().collect();
                    assert_eq!(distinct.len(), parent_ids.len());
                    for id in &parent_ids {
                        let parent = population.person(id).expect("a person");
                        assert!(PARENT_AGES.contains(&parent.age()), "{}", parent.age());
                    }
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_is_honoured() {
        let registry = Arc::new(LiveRegistry::new(population()));
        let simulator = ChangeSimulator::new(Arc::clone(&registry), None, None, 11);
        let running = simulator.spawn(120);
        assert_eq!(running.events_per_minute(), 120);
        // Ticks every 500 ms from 500 ms on: 120 by 60 s, none more before 60.25 s.
        tokio::time::sleep(Duration::from_millis(60_250)).await;
        let counts = running.shutdown().await;
        assert_eq!(counts.applied(), 120, "{counts:?}");
        assert_eq!(counts.job_losses, 0);
        assert_eq!(counts.failed_changes, 0);
        assert!(registry.change_count() >= counts.applied());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_rate_makes_few_changes() {
        let registry = Arc::new(LiveRegistry::new(population()));
        let running = ChangeSimulator::new(Arc::clone(&registry), None, None, 11).spawn(2);
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(
            running.counts().applied(),
            0,
            "the first change comes after 30 s"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(running.counts().applied(), 1);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(running.shutdown().await.applied(), 3);
    }

    /// What the fake gateway received: the headers and body of each POST.
    #[derive(Debug, Clone)]
    struct Received {
        id: String,
        timestamp: String,
        signature: String,
        body: Vec<u8>,
    }

    #[derive(Default)]
    struct Inbox {
        received: Mutex<Vec<Received>>,
        /// Answer 503 to this many POSTs first.
        fail_first: usize,
    }

    async fn receive(
        State(inbox): State<Arc<Inbox>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let mut received = inbox.received.lock().expect("not poisoned");
        received.push(Received {
            id: header(ID_HEADER),
            timestamp: header(TIMESTAMP_HEADER),
            signature: header(SIGNATURE_HEADER),
            body: body.to_vec(),
        });
        if received.len() <= inbox.fail_first {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::NO_CONTENT
        }
    }

    /// A gateway stand-in on loopback; its `/events/registry` URL and what it received.
    async fn fake_gateway(fail_first: usize) -> (String, Arc<Inbox>) {
        let inbox = Arc::new(Inbox {
            received: Mutex::new(Vec::new()),
            fail_first,
        });
        let router = Router::new()
            .route("/events/registry", post(receive))
            .with_state(Arc::clone(&inbox));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!(
            "http://{}/events/registry",
            listener.local_addr().expect("an address")
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        (url, inbox)
    }

    async fn received_at_least(inbox: &Inbox, count: usize) -> Vec<Received> {
        for _ in 0..500 {
            let received = inbox.received.lock().expect("not poisoned").clone();
            if received.len() >= count {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fewer than {count} webhooks arrived");
    }

    /// A seeded SQLite unemployment insurance database in a temporary directory.
    async fn ui_database(population: &Population) -> (tempfile::TempDir, String) {
        let directory = tempfile::tempdir().expect("a directory");
        let url = ui::sqlite_url(&directory.path().join("ui.db"), "rwc");
        ui::seed(&url, population).await.expect("seeded");
        (directory, url)
    }

    #[tokio::test]
    async fn each_kind_of_change_lands_in_its_backend() {
        let population = population();
        let (_directory, url) = ui_database(&population).await;
        let registry = Arc::new(LiveRegistry::new(Arc::clone(&population)));
        let writer = UiWriter::connect(&url, &UiTables::default())
            .await
            .expect("a writer");
        let secret = WebhookSecret::generate().expect("a secret");
        let (gateway, inbox) = fake_gateway(0).await;
        let webhook = RegistryWebhook::new(gateway, secret.clone(), Duration::from_millis(10))
            .expect("a client");
        let mut simulator =
            ChangeSimulator::new(Arc::clone(&registry), Some(writer), Some(webhook), 5);

        let mut applied = Vec::new();
        for n in 0..60 {
            applied.push(simulator.step(at(n)).await.expect("applied"));
        }
        let claims: Vec<&UnemploymentClaim> = applied
            .iter()
            .filter_map(|change| match change {
                AppliedChange::JobLoss(claim) => Some(claim),
                _ => None,
            })
            .collect();
        let moves: Vec<&AddressChange> = applied
            .iter()
            .filter_map(|change| match change {
                AppliedChange::AddressChange(change) => Some(change),
                _ => None,
            })
            .collect();
        let births: Vec<&Birth> = applied
            .iter()
            .filter_map(|change| match change {
                AppliedChange::Birth(birth) => Some(birth),
                _ => None,
            })
            .collect();
        assert!(!claims.is_empty() && !moves.is_empty() && !births.is_empty());
        let counts = simulator.counters().snapshot();
        assert_eq!(
            (counts.job_losses, counts.address_changes, counts.births),
            (claims.len() as u64, moves.len() as u64, births.len() as u64)
        );

        // Job losses: rows in ui_claims, as the agency's database holds them.
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&ui::read_only_url(&url))
            .await
            .expect("a read-only connection");
        for claim in &claims {
            let row: (
                String,
                String,
                String,
                String,
                String,
                i64,
                Option<String>,
                String,
            ) = sqlx::query_as(
                "SELECT claimant_id, filed_on, status, separation_reason, weekly_benefit, \
                     weeks_paid, benefit_end_date, updated_at FROM ui_claims WHERE claim_id = ?",
            )
            .bind(&claim.claim_id)
            .fetch_one(&pool)
            .await
            .expect("the claim is in the database");
            assert_eq!(
                row,
                (
                    claim.claimant_id.clone(),
                    "2026-11-18".to_string(),
                    "PENDING".to_string(),
                    claim.separation_reason.as_str().to_string(),
                    claim.weekly_benefit.to_string(),
                    0,
                    None,
                    claim.updated_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                )
            );
        }
        pool.close().await;
        // Each claimant's new claims continue the numbering of the claims they had.
        let mut filed: HashMap<&str, usize> = HashMap::new();
        for claim in &claims {
            let count = filed.entry(&claim.claimant_id).or_insert(0);
            *count += 1;
            let earlier = population.claims_of(&claim.claimant_id).len();
            let digits = claim.claimant_id.trim_start_matches("UI-");
            assert_eq!(claim.claim_id, format!("CLM-{digits}-{}", earlier + *count));
        }

        // Moves: the registry serves the new address and logs the change.
        let last_move = moves.last().expect("a move");
        let person = registry.person(&last_move.citizen_id).expect("a person");
        assert_eq!(person.address, last_move.address);
        let log = registry.changes_since(0, 500);
        for change in &moves {
            assert!(log.iter().any(|entry| entry.change_id == change.change_id));
        }

        // Births: one log entry and one signed webhook per parent.
        let parents: usize = births.iter().map(|birth| birth.parent_ids.len()).sum();
        let birth_entries = log
            .iter()
            .filter(|entry| entry.kind == super::super::registry::ChangeKind::Birth)
            .count();
        assert_eq!(birth_entries, parents);
        let received = received_at_least(&inbox, parents).await;
        assert_eq!(received.len(), parents);
        let ids: HashSet<&str> = received.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), parents, "one webhook id per notice");
        for webhook in &received {
            assert!(webhook.id.starts_with("msg_"), "{}", webhook.id);
            secret
                .verify(
                    &webhook.id,
                    &webhook.timestamp,
                    &webhook.signature,
                    &webhook.body,
                    Utc::now().timestamp(),
                    60,
                )
                .expect("a valid signature");
            let body: serde_json::Value =
                serde_json::from_slice(&webhook.body).expect("a JSON body");
            let birth = births
                .iter()
                .find(|birth| body["birth_id"] == birth.birth_id.as_str())
                .expect("a birth the registry recorded");
            assert_eq!(
                body,
                serde_json::json!({
                    "kind": "birth",
                    "birth_id": birth.birth_id,
                    "parent_id": body["parent_id"],
                    "child_id": birth.child_id,
                    "registered_at": birth.registered_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                })
            );
            assert!(
                birth
                    .parent_ids
                    .iter()
                    .any(|p| body["parent_id"] == p.as_str())
            );
        }
        simulator.finish(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn claims_filed_in_one_second_still_sort_after_each_other() {
        let population = population();
        let (_directory, url) = ui_database(&population).await;
        let registry = Arc::new(LiveRegistry::new(Arc::clone(&population)));
        let writer = UiWriter::connect(&url, &UiTables::default())
            .await
            .expect("a writer");
        let mut simulator = ChangeSimulator::new(registry, Some(writer), None, 9);
        let now = at(0) + chrono::Duration::milliseconds(700);
        let mut claims = Vec::new();
        while claims.len() < 6 {
            if let AppliedChange::JobLoss(claim) = simulator.step(now).await.expect("applied") {
                claims.push(claim);
            }
        }
        let times: Vec<DateTime<Utc>> = claims.iter().map(|claim| claim.updated_at).collect();
        let expected: Vec<DateTime<Utc>> = (0..6).map(at).collect();
        assert_eq!(
            times, expected,
            "whole seconds, one apart, from the clock's second"
        );
        let ids: HashSet<&str> = claims.iter().map(|claim| claim.claim_id.as_str()).collect();
        assert_eq!(ids.len(), claims.len());
        simulator.finish(Duration::from_secs(1)).await;

        // What the change feed's query reads after the third claim: the last three, in order.
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&ui::read_only_url(&url))
            .await
            .expect("a read-only connection");
        let after: Vec<(String,)> = sqlx::query_as(
            "SELECT claim_id FROM ui_claims WHERE updated_at > ? ORDER BY updated_at, claim_id",
        )
        .bind(
            claims[2]
                .updated_at
                .to_rfc3339_opts(SecondsFormat::Secs, true),
        )
        .fetch_all(&pool)
        .await
        .expect("the feed");
        let after: Vec<&str> = after.iter().map(|(id,)| id.as_str()).collect();
        let expected: Vec<&str> = claims[3..].iter().map(|c| c.claim_id.as_str()).collect();
        assert_eq!(after, expected);
        pool.close().await;
    }

    #[tokio::test]
    async fn a_webhook_is_retried_with_its_id_and_given_up_after_the_last_attempt() {
        let secret = WebhookSecret::generate().expect("a secret");
        let (gateway, inbox) = fake_gateway(2).await;
        let webhook = RegistryWebhook::new(gateway, secret.clone(), Duration::from_millis(5))
            .expect("a client");
        assert!(webhook.deliver(b"{}".to_vec()).await);
        let received = received_at_least(&inbox, 3).await;
        assert_eq!(received.len(), 3, "two refusals, then accepted");
        assert!(
            received.iter().all(|r| r.id == received[0].id),
            "one id across retries"
        );
        for attempt in &received {
            secret
                .verify(
                    &attempt.id,
                    &attempt.timestamp,
                    &attempt.signature,
                    b"{}",
                    Utc::now().timestamp(),
                    60,
                )
                .expect("each attempt is signed");
        }

        let (gateway, inbox) = fake_gateway(usize::MAX).await;
        let webhook =
            RegistryWebhook::new(gateway, secret, Duration::from_millis(5)).expect("a client");
        assert!(!webhook.deliver(b"{}".to_vec()).await);
        assert_eq!(
            inbox.received.lock().expect("not poisoned").len(),
            WEBHOOK_ATTEMPTS as usize
        );

        let nobody = RegistryWebhook::new(
            "http://127.0.0.1:1/events/registry",
            WebhookSecret::generate().expect("a secret"),
            Duration::from_millis(1),
        )
        .expect("a client");
        assert!(
            !nobody.deliver(b"{}".to_vec()).await,
            "nothing listens on port 1"
        );
    }
}
