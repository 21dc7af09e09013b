use std::path::Path;

use serde_json::json;

use super::*;
use crate::config::Vars;
use crate::events::Recorded;
use crate::store::testing::{TestStore, on_both_stores};

fn known() -> BTreeSet<String> {
    DOCUMENTED_EVENT_TYPES
        .iter()
        .map(|t| t.to_string())
        .collect()
}

fn file(text: &str) -> TomlFile {
    TomlFile::from_text("schema/services.toml", text, &Vars::default()).expect("interpolates")
}

/// The shipped configuration, checked: its trust catalogue and its graph.
fn shipped() -> crate::server::Checked {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("civicgraph.toml");
    crate::server::check(&config, &Vars::default()).unwrap_or_else(|d| panic!("{d}"))
}

fn trust() -> TrustConfig {
    toml::from_str(
        "[agencies.ui]\nname = \"UI\"\n[agencies.registry]\nname = \"Registry\"\n\
         [agencies.benefits]\nname = \"Benefits\"\n",
    )
    .expect("a trust table")
}

/// A catalogue whose conditions are not checked against a graph.
fn unchecked(text: &str) -> Catalogue {
    let (catalogue, problems) = Catalogue::parse(&file(text), None, &trust(), &known());
    assert!(problems.is_empty(), "{problems:?}");
    catalogue
}

fn messages(problems: &[Diagnostic]) -> Vec<String> {
    problems.iter().map(ToString::to_string).collect()
}

#[test]
fn the_shipped_catalogue_offers_the_documented_services_on_their_events() {
    let checked = shipped();
    let catalogue = &checked.services;
    let offered = |event: &str| -> Vec<String> {
        catalogue
            .triggered_by(event)
            .map(|s| s.id.clone())
            .collect()
    };
    assert_eq!(
        offered("JobLost"),
        ["unemployment-benefit", "health-coverage", "job-training"]
    );
    assert_eq!(
        offered("BirthRegistered"),
        ["child-benefit", "birth-certificate"]
    );
    assert_eq!(offered("AddressChanged"), ["voter-registration-update"]);
    assert_eq!(
        offered("VehicleRegistrationExpiring"),
        ["registration-renewal"]
    );
    assert_eq!(offered("RetirementAgeReached"), ["state-pension"]);
    assert_eq!(
        catalogue.selection().as_deref(),
        Some(
            "{ benefitCases { caseStatus program } birthDate driverLicense { expiresOn } \
             unemploymentClaims { separationReason status } vehicles { registrationExpiresOn } }"
        ),
        "one selection reads every condition's path"
    );
    assert!(
        Arc::ptr_eq(catalogue, checked.graph.service_catalogue()),
        "the graph answers from the checked catalogue"
    );
}

#[test]
fn catalogue_mistakes_are_reported_at_their_lines() {
    let checked = shipped();
    let text = r#"[services.job-help]
name = "Job help"
agency = "labour"
triggers = ["JobLost", "JobFound"]
reason = "r"
when = { "unemploymentClaims.statuz" = { eq = "ACTIVE" }, birthDate = { equals = "x" } }

[services.Bad_Id]
name = "x"
agency = "ui"
reason = "r"
when = { "unemploymentClaims.status" = { in = ["FILED"] }, address = { eq = "x" }, "unemploymentClaims.weeksPaid" = { within_days = 3 }, updatedAt = {} }

[services.nothing]
name = "n"
agency = "ui"
reason = "r"

[services.loops]
name = "l"
agency = "ui"
reason = "r"
when = { "suggestedServices.reason" = { present = true }, "taxAccount.balance" = { lt = "0" }, "unemploymentClaims.weeksPaid" = { gte = "4" } }
"#;
    let (catalogue, problems) = Catalogue::parse(
        &file(text),
        Some(&checked.graph),
        &checked.config.trust,
        &known(),
    );
    assert!(
        catalogue.services().is_empty(),
        "a service with a problem is left out"
    );
    let problems = messages(&problems);
    let expected = [
        "schema/services.toml:3:10: unknown agency `labour`; the agencies in [trust.agencies] are `benefits`, `dmv`, `registry`, `tax` or `ui`",
        "schema/services.toml:4:24: unknown event type `JobFound`; the life-event types are `AddressChanged`, `BirthRegistered`, `JobLost`, `RetirementAgeReached` or `VehicleRegistrationExpiring`",
        "schema/services.toml:6:10: `when.\"unemploymentClaims.statuz\"`: `UnemploymentClaim` has no field `statuz`; its fields are `benefitEndDate`, `claimId`, `filedOn`, `lastEmployer`, `separationReason`, `status`, `updatedAt`, `weeklyBenefit` or `weeksPaid`",
        "schema/services.toml:6:71: `when.\"birthDate\"`: unknown operator `equals`; the operators are `eq`, `ne`, `in`, `not_in`, `gt`, `gte`, `lt`, `lte`, `present`, `within_days` or `age_at_least`",
        "schema/services.toml:8:11: service id `Bad_Id` must be a code: lowercase letters, digits, `-`, `.` or `_`, starting with a letter",
        "schema/services.toml:12:40: `when.\"unemploymentClaims.status\"`: \"FILED\" is not a value of this enum; it is one of `PENDING`, `ACTIVE`, `EXHAUSTED`, `DENIED` or `CLOSED`",
        "schema/services.toml:12:70: `when.\"address\"`: this is an object (`Address`): only `present` applies to it",
        "schema/services.toml:12:117: `when.\"unemploymentClaims.weeksPaid\"`: `within_days` and `age_at_least` apply to a `Date` or a `DateTime`; this is `Int`",
        "schema/services.toml:12:150: `when.\"updatedAt\"` has no operator; use one of `eq`, `ne`, `in`, `not_in`, `gt`, `gte`, `lt`, `lte`, `present`, `within_days` or `age_at_least`",
        "schema/services.toml:14:1: service `nothing` has neither `triggers` nor `when`, so it is never offered nor suggested",
        "schema/services.toml:23:10: `when.\"suggestedServices.reason\"`: `Citizen.suggestedServices` is made from the service catalogue itself",
        "schema/services.toml:23:82: `when.\"taxAccount.balance\"`: a `Money` cannot be ordered here (amounts would compare as text); use `eq`, `ne`, `in` or `not_in`",
        "schema/services.toml:23:129: `when.\"unemploymentClaims.weeksPaid\"`: \"4\" cannot be compared with `Int`",
    ];
    assert_eq!(
        problems, expected,
        "each problem at its line, in file order"
    );
}

#[test]
fn a_file_that_is_not_a_catalogue_names_its_line() {
    let (_, problems) = Catalogue::parse(
        &file(
            "[services.a]\nname = \"a\"\nagency = \"ui\"\nreason = \"r\"\ntrigger = [\"JobLost\"]\n",
        ),
        None,
        &trust(),
        &known(),
    );
    let problems = messages(&problems);
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("schema/services.toml:5:1: unknown key `trigger`"),
        "{problems:?}"
    );
}

#[test]
fn a_missing_catalogue_is_an_empty_one() {
    let dir = tempfile::tempdir().expect("a directory");
    let (catalogue, problems) =
        Catalogue::load(dir.path(), &Vars::default(), None, &trust(), &known());
    assert!(problems.is_empty());
    assert!(catalogue.services().is_empty());
    assert_eq!(catalogue.selection(), None);
}

#[test]
fn suggestions_need_every_condition_and_nothing_withheld() {
    let catalogue = unchecked(
        r#"[services.benefit]
name = "Benefit"
agency = "ui"
reason = "You have a claim."
when = { "claims.status" = { in = ["PENDING", "ACTIVE"] }, "claims.reason" = { in = ["LAYOFF"] } }

[services.no-licence]
name = "Learner programme"
agency = "registry"
reason = "You hold no driver's licence."
when = { licence = { present = false } }

[services.only-offered]
name = "Offered"
agency = "ui"
triggers = ["JobLost"]
reason = "r"
"#,
    );
    let today = NaiveDate::from_ymd_opt(2026, 11, 23).expect("a date");
    let record = json!({
        "claims": [{"status": "DENIED", "reason": "QUIT_WITH_CAUSE"}, {"status": "PENDING", "reason": "LAYOFF"}],
        "licence": null,
    });
    let ids = |suggestions: Vec<Suggestion<'_>>| -> Vec<(String, Vec<String>)> {
        suggestions
            .into_iter()
            .map(|s| (s.service.id.clone(), s.matched))
            .collect()
    };
    assert_eq!(
        ids(catalogue.suggest(&record, &[], today)),
        [
            (
                "benefit".to_string(),
                vec![
                    "claims.reason = LAYOFF".to_string(),
                    "claims.status = PENDING".to_string()
                ]
            ),
            ("no-licence".to_string(), vec!["licence = null".to_string()]),
        ],
        "a service without `when` is offered, never suggested"
    );
    let withheld = vec![vec!["licence".to_string()]];
    assert_eq!(
        ids(catalogue.suggest(&record, &withheld, today)),
        [(
            "benefit".to_string(),
            vec![
                "claims.reason = LAYOFF".to_string(),
                "claims.status = PENDING".to_string()
            ]
        )],
        "a withheld field is unknown, not absent"
    );
    let withheld = vec![vec!["claims".to_string(), "status".to_string()]];
    assert!(
        ids(catalogue.suggest(&record, &withheld, today))
            .iter()
            .all(|(id, _)| id != "benefit"),
        "a condition below a withheld field is not met"
    );
    let record = json!({"claims": [{"status": "CLOSED", "reason": "LAYOFF"}], "licence": {"__typename": "DriverLicense"}});
    assert!(catalogue.suggest(&record, &[], today).is_empty());
}

fn event_at(seq: i64, recorded_at: DateTime<Utc>) -> LifeEvent {
    LifeEvent {
        seq,
        id: format!("evt_{seq}"),
        event_type: "JobLost".into(),
        category: "ui.claims".into(),
        citizen_id: "C0000001".into(),
        citizen_seq: seq,
        subject: Map::new(),
        source: "ui-claims".into(),
        occurred_at: recorded_at,
        recorded_at,
        audience: None,
    }
}

#[test]
fn the_relay_waits_at_a_fresh_gap_and_passes_an_old_one() {
    let now = Utc::now();
    let fresh = [event_at(1, now), event_at(3, now), event_at(4, now)];
    assert_eq!(
        contiguous(0, &fresh, now).len(),
        1,
        "seq 2 may still commit"
    );
    let old = now - chrono::Duration::seconds(60);
    let settled = [event_at(1, old), event_at(3, old), event_at(4, now)];
    assert_eq!(
        contiguous(0, &settled, now).len(),
        3,
        "a gap older than the grace was rolled back"
    );
    assert_eq!(contiguous(5, &[event_at(6, now)], now).len(), 1);
}

const RELAY_CATALOGUE: &str = r#"[services.unemployment-benefit]
name = "Unemployment benefit"
agency = "ui"
triggers = ["JobLost"]
reason = "r"

[services.job-training]
name = "Job training"
agency = "ui"
triggers = ["JobLost"]
reason = "r"

[services.child-benefit]
name = "Child benefit"
agency = "benefits"
triggers = ["BirthRegistered"]
reason = "r"
"#;

fn life_event(kind: &str, citizen: &str, key: &str) -> NewEvent {
    NewEvent {
        event_type: kind.into(),
        category: "ui.claims".into(),
        citizen_id: citizen.into(),
        subject: Map::new(),
        idempotency_key: format!("{kind}:{key}"),
        source: "ui-claims".into(),
        occurred_at: Utc::now(),
        audience: None,
    }
}

async fn record(outbox: &Outbox, events: Vec<NewEvent>) -> Vec<LifeEvent> {
    match outbox
        .record("test", Mark::Nothing, events)
        .await
        .expect("record")
    {
        Recorded::Events(events) => events,
        other => panic!("expected events, got {other:?}"),
    }
}

const LEASE: Duration = Duration::from_secs(30);

on_both_stores!(
    sqlite "offers.db",
    postgres &["service_offers", "life_events"];
    events_become_offers_once_under_one_lease,
    accepting_tells_the_agency_once_and_answers_change_an_offer_once,
);

async fn events_become_offers_once_under_one_lease(db: &TestStore) {
    let outbox = Outbox::new(db.store.clone());
    let catalogue = Arc::new(unchecked(RELAY_CATALOGUE));
    let relay = OfferRelay::new(outbox.clone(), Arc::clone(&catalogue), LEASE);
    let other = OfferRelay::new(outbox.clone(), Arc::clone(&catalogue), LEASE);
    let recorded = record(
        &outbox,
        vec![
            life_event("JobLost", "C0000001", "a"),
            life_event("AddressChanged", "C0000001", "b"),
            life_event("BirthRegistered", "C0000002", "c"),
        ],
    )
    .await;
    let pass = relay.pass().await.expect("a pass");
    assert_eq!(
        pass,
        RelayPass {
            events: 3,
            offers: 3,
            standby: false
        }
    );
    assert_eq!(
        other.pass().await.expect("a pass"),
        RelayPass {
            standby: true,
            ..RelayPass::default()
        },
        "one instance relays at a time"
    );
    assert_eq!(
        outbox.watermark(OFFERS_SOURCE).await.expect("watermark"),
        Some(recorded[2].seq.to_string()),
        "the watermark moved with the offers"
    );
    let offers = ServiceOffers::new(outbox.clone(), Arc::clone(&catalogue));
    let mine = offers.of_citizen("C0000001").await.expect("offers");
    let mut services: Vec<&str> = mine.iter().map(|o| o.service_id.as_str()).collect();
    services.sort_unstable();
    assert_eq!(services, ["job-training", "unemployment-benefit"]);
    assert!(mine.iter().all(|o| o.state == OfferState::Offered
        && o.event_id == recorded[0].id
        && o.event_type == "JobLost"));
    assert_eq!(
        relay.pass().await.expect("a pass"),
        RelayPass::default(),
        "nothing new, nothing made"
    );
    // A watermark put back (a crash before it moved) makes no second offer.
    db.execute(&format!(
        "UPDATE event_sources SET watermark = '0' WHERE source = '{OFFERS_SOURCE}'"
    ))
    .await;
    let again = relay.pass().await.expect("a pass");
    assert_eq!((again.events, again.offers), (3, 0));
    assert_eq!(db.count("service_offers").await, 3);
}

async fn accepting_tells_the_agency_once_and_answers_change_an_offer_once(db: &TestStore) {
    let outbox = Outbox::new(db.store.clone());
    let catalogue = Arc::new(unchecked(RELAY_CATALOGUE));
    let relay = OfferRelay::new(outbox.clone(), Arc::clone(&catalogue), LEASE);
    record(&outbox, vec![life_event("JobLost", "C0000001", "a")]).await;
    relay.pass().await.expect("a pass");
    let offers = ServiceOffers::new(outbox.clone(), Arc::clone(&catalogue));
    let mine = offers.of_citizen("C0000001").await.expect("offers");
    let (first, second) = (&mine[0], &mine[1]);

    assert!(matches!(
        offers.accept("C0000009", &first.id).await,
        Err(OfferError::NotFound)
    ));
    let accepted = offers.accept("C0000001", &first.id).await.expect("accept");
    assert_eq!(accepted.state, OfferState::Accepted);
    assert!(accepted.changed_at >= first.changed_at);
    assert!(matches!(
        offers.accept("C0000001", &first.id).await,
        Err(OfferError::Conflict(OfferState::Accepted))
    ));
    assert!(matches!(
        offers.dismiss("C0000001", &first.id).await,
        Err(OfferError::Conflict(OfferState::Accepted))
    ));
    let dismissed = offers
        .dismiss("C0000001", &second.id)
        .await
        .expect("dismiss");
    assert_eq!(dismissed.state, OfferState::Dismissed);
    assert!(matches!(
        offers.accept("C0000001", &second.id).await,
        Err(OfferError::Conflict(OfferState::Dismissed))
    ));

    let told: Vec<LifeEvent> = outbox
        .citizen_events("C0000001", 10)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.event_type == OFFER_ACCEPTED)
        .collect();
    assert_eq!(told.len(), 1, "one event for one acceptance");
    let event = &told[0];
    assert_eq!(event.audience.as_deref(), Some("ui"));
    assert_eq!(event.category, OFFERS_CATEGORY);
    assert_eq!(
        Value::Object(event.subject.clone()),
        json!({"offer": first.id, "service": first.service_id})
    );
    assert_eq!(
        relay.pass().await.expect("a pass").offers,
        0,
        "an accepted offer's event offers nothing"
    );

    // The gateway died between accepting and recording: the relay records it later, once.
    record(&outbox, vec![life_event("JobLost", "C0000003", "b")]).await;
    relay.pass().await.expect("a pass");
    let lost = &offers.of_citizen("C0000003").await.expect("offers")[0];
    db.execute(&format!(
        "UPDATE service_offers SET state = 'accepted', changed_at = 0 WHERE id = '{}'",
        lost.id
    ))
    .await;
    assert_eq!(offers.notify_unsent().await.expect("notify"), 1);
    assert_eq!(offers.notify_unsent().await.expect("notify"), 0);
    let told = outbox.citizen_events("C0000003", 10).await.expect("events");
    assert!(
        told.iter()
            .any(|e| e.event_type == OFFER_ACCEPTED && e.audience.as_deref() == Some("ui"))
    );
}
