//! Proactive services on the demo: `Citizen.suggestedServices` read with the caller's own
//! rights, offers made from life events in the outbox, and accepting one telling the providing
//! agency through a `ServiceOfferAccepted` event addressed to it alone.

use std::time::{Duration, Instant};

use chrono::Utc;
use civicgraph::consent::NewConsent;
use civicgraph::demo::data::ClaimStatus;
use civicgraph::events::{LifeEvent, Mark, NewEvent, NewSubscriber, Recorded};
use civicgraph::identity::CitizenId;
use serde_json::{Map, Value, json};

use crate::support::{DemoStack, start_demo};

const SUGGESTED: &str =
    "{ me { suggestedServices { service { id name agency { code } } reason matched } } }";

/// A citizen with a claim pending or being paid, and one who never claimed.
fn claimant_and_non_claimant(demo: &DemoStack) -> (String, String) {
    let claimant = demo
        .population
        .claimants()
        .find(|(_, claims)| {
            claims
                .iter()
                .any(|c| matches!(c.status, ClaimStatus::Pending | ClaimStatus::Active))
        })
        .map(|(person, _)| person.id.clone())
        .expect("the demo has a citizen with a live claim");
    let other = demo
        .population
        .people()
        .iter()
        .find(|p| p.claimant_id.is_none())
        .map(|p| p.id.clone())
        .expect("the demo has a citizen who never claimed");
    (claimant, other)
}

fn suggested_ids(body: &Value, root: &str) -> Vec<String> {
    body["data"][root]["suggestedServices"]
        .as_array()
        .unwrap_or_else(|| panic!("suggestions in {body}"))
        .iter()
        .map(|s| s["service"]["id"].as_str().expect("an id").to_string())
        .collect()
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("an error code in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_citizen_with_a_live_claim_is_suggested_unemployment_benefit_with_its_reason() {
    let demo = start_demo(40).await;
    let (claimant, other) = claimant_and_non_claimant(&demo);

    let answer = demo.post_as_citizen(&claimant, SUGGESTED).await;
    assert!(answer.body.get("errors").is_none(), "{}", answer.body);
    let suggestions = answer.body["data"]["me"]["suggestedServices"]
        .as_array()
        .expect("a list");
    let benefit = suggestions
        .iter()
        .find(|s| s["service"]["id"] == "unemployment-benefit")
        .unwrap_or_else(|| panic!("unemployment benefit in {suggestions:?}"));
    assert_eq!(
        benefit["reason"],
        "You have an unemployment insurance claim that is pending or being paid."
    );
    assert_eq!(benefit["service"]["agency"]["code"], "ui");
    let matched = benefit["matched"][0].as_str().expect("a matched value");
    assert!(
        matched == "unemploymentClaims.status = PENDING"
            || matched == "unemploymentClaims.status = ACTIVE",
        "{matched}"
    );

    let answer = demo.post_as_citizen(&other, SUGGESTED).await;
    assert!(
        !suggested_ids(&answer.body, "me").contains(&"unemployment-benefit".to_string()),
        "no claim, no suggestion: {}",
        answer.body
    );

    // Reading the conditions read the claims, and the citizen's data tracker says so.
    let log = demo
        .post_as_citizen(
            &claimant,
            "{ me { accessLog(first: 20) { edges { node { fields } } } } }",
        )
        .await;
    let fields: Vec<&str> = log.body["data"]["me"]["accessLog"]["edges"]
        .as_array()
        .expect("log entries")
        .iter()
        .flat_map(|e| e["node"]["fields"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert!(
        fields.contains(&"Citizen.unemploymentClaims"),
        "the suggestion's read is audited: {fields:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agency_is_suggested_only_what_its_consents_let_it_read() {
    let demo = start_demo(40).await;
    let (claimant, _) = claimant_and_non_claimant(&demo);
    let query = format!(
        r#"{{ citizen(id: "{claimant}") {{ suggestedServices {{ service {{ id }} }} }} }}"#
    );
    let ask = |token: String| {
        let demo = &demo;
        let query = query.clone();
        async move {
            demo.post_with(
                json!({ "query": query }),
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await
        }
    };
    let scopes = [
        "citizen:lookup",
        "ui:read",
        "benefits:read",
        "registry:read",
    ];
    let benefits = || demo.agency_token("benefits", &scopes, "benefit-eligibility");

    let without = ask(benefits()).await;
    assert!(
        without.body.get("errors").is_none(),
        "a condition it may not read is not met, not an error: {}",
        without.body
    );
    assert!(
        !suggested_ids(&without.body, "citizen").contains(&"unemployment-benefit".to_string()),
        "without consent the claims stay unread: {}",
        without.body
    );

    let owner = ask(demo.agency_token("ui", &scopes, "unemployment-claim")).await;
    assert!(
        suggested_ids(&owner.body, "citizen").contains(&"unemployment-benefit".to_string()),
        "the claims' own agency reads them on its legal basis: {}",
        owner.body
    );

    let now = Utc::now();
    demo.ledger
        .grant(
            NewConsent {
                citizen: CitizenId::parse(&claimant).expect("an id"),
                grantee: "benefits".into(),
                categories: ["ui.claims".to_string()].into_iter().collect(),
                purpose: "benefit-eligibility".into(),
                valid_from: now,
                valid_until: now + chrono::Duration::days(30),
            },
            now,
        )
        .await
        .expect("a consent");
    let with = ask(benefits()).await;
    assert!(
        suggested_ids(&with.body, "citizen").contains(&"unemployment-benefit".to_string()),
        "with the citizen's consent it is: {}",
        with.body
    );
}

fn job_lost(citizen: &str, claim: &str) -> NewEvent {
    let mut subject = Map::new();
    subject.insert("claim".into(), Value::from(claim));
    NewEvent {
        event_type: "JobLost".into(),
        category: "ui.claims".into(),
        citizen_id: citizen.into(),
        subject,
        idempotency_key: format!("JobLost:{claim}"),
        source: "ui-claims".into(),
        occurred_at: Utc::now(),
        audience: None,
    }
}

const OFFERS: &str = "{ me { serviceOffers { id state service { id agency { code } } event { id type } offeredAt changedAt } } }";

/// The citizen's offers once the relay has made `count` of them.
async fn offers_when(demo: &DemoStack, citizen: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = demo.post_as_citizen(citizen, OFFERS).await;
        let offers = answer.body["data"]["me"]["serviceOffers"]
            .as_array()
            .unwrap_or_else(|| panic!("offers in {}", answer.body))
            .clone();
        if offers.len() >= count {
            return offers;
        }
        assert!(
            Instant::now() < deadline,
            "the relay made {} of {count} offers",
            offers.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn accept(id: &str) -> String {
    format!(r#"mutation {{ acceptServiceOffer(id: "{id}") {{ id state service {{ id }} }} }}"#)
}

fn dismiss(id: &str) -> String {
    format!(r#"mutation {{ dismissServiceOffer(id: "{id}") {{ id state }} }}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_loss_becomes_offers_and_accepting_one_tells_the_providing_agency() {
    let demo = start_demo(10).await;
    let citizen = demo.population.people()[0].id.clone();
    let neighbour = demo.population.people()[1].id.clone();
    let hook = |agency: &str| NewSubscriber {
        agency: agency.into(),
        purpose: "benefit-eligibility".into(),
        endpoint: "http://127.0.0.1:9/hook".into(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        event_types: vec!["ServiceOfferAccepted".into()],
        created_by: "ops".into(),
    };
    let ui_hook = demo.outbox.add_subscriber(hook("ui")).await.expect("hook");
    let dmv_hook = demo.outbox.add_subscriber(hook("dmv")).await.expect("hook");

    let recorded = demo
        .outbox
        .record("ui-claims", Mark::Nothing, vec![job_lost(&citizen, "CL-1")])
        .await
        .expect("record");
    let Recorded::Events(events) = recorded else {
        panic!("recorded {recorded:?}");
    };
    let event: &LifeEvent = &events[0];

    let offers = offers_when(&demo, &citizen, 3).await;
    let mut services: Vec<&str> = offers
        .iter()
        .map(|o| o["service"]["id"].as_str().expect("an id"))
        .collect();
    services.sort_unstable();
    assert_eq!(
        services,
        ["health-coverage", "job-training", "unemployment-benefit"]
    );
    for offer in &offers {
        assert_eq!(offer["state"], "OFFERED");
        assert_eq!(offer["event"], json!({"id": event.id, "type": "JobLost"}));
        assert_eq!(offer["offeredAt"], offer["changedAt"]);
    }
    let by_service = |id: &str| -> String {
        offers
            .iter()
            .find(|o| o["service"]["id"] == id)
            .and_then(|o| o["id"].as_str())
            .expect("an offer")
            .to_string()
    };
    let benefit = by_service("unemployment-benefit");
    let training = by_service("job-training");

    // Only the citizen answers their offers.
    let token = demo.agency_token("ui", &["citizen:lookup"], "unemployment-claim");
    let as_agency = demo
        .post_with(
            json!({ "query": accept(&benefit) }),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(code(&as_agency.body), "FORBIDDEN", "{}", as_agency.body);
    let theirs = demo
        .post_with(
            json!({ "query": format!(r#"{{ citizen(id: "{citizen}") {{ serviceOffers {{ id }} }} }}"#) }),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(code(&theirs.body), "FORBIDDEN", "{}", theirs.body);
    let neighbours = demo.post_as_citizen(&neighbour, &accept(&benefit)).await;
    assert_eq!(code(&neighbours.body), "NOT_FOUND", "{}", neighbours.body);
    let unknown = demo.post_as_citizen(&citizen, &accept("off_nothing")).await;
    assert_eq!(code(&unknown.body), "NOT_FOUND");

    let accepted = demo.post_as_citizen(&citizen, &accept(&benefit)).await;
    assert_eq!(
        accepted.body["data"]["acceptServiceOffer"],
        json!({"id": benefit, "state": "ACCEPTED", "service": {"id": "unemployment-benefit"}}),
        "{}",
        accepted.body
    );
    let again = demo.post_as_citizen(&citizen, &accept(&benefit)).await;
    assert_eq!(code(&again.body), "CONFLICT", "{}", again.body);

    let dismissed = demo.post_as_citizen(&citizen, &dismiss(&training)).await;
    assert_eq!(
        dismissed.body["data"]["dismissServiceOffer"]["state"], "DISMISSED",
        "{}",
        dismissed.body
    );
    let late = demo.post_as_citizen(&citizen, &accept(&training)).await;
    assert_eq!(code(&late.body), "CONFLICT", "{}", late.body);

    // One event, addressed to the providing agency, with ids only; its webhook is in line.
    let told: Vec<LifeEvent> = demo
        .outbox
        .citizen_events(&citizen, 20)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.event_type == "ServiceOfferAccepted")
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].audience.as_deref(), Some("ui"));
    assert_eq!(told[0].category, "services.offers");
    assert_eq!(
        Value::Object(told[0].subject.clone()),
        json!({"offer": benefit, "service": "unemployment-benefit"})
    );
    let queued = demo
        .outbox
        .deliveries(&ui_hook.id, None, 10)
        .await
        .expect("deliveries");
    assert_eq!(
        queued
            .iter()
            .map(|d| d.event.id.as_str())
            .collect::<Vec<_>>(),
        [told[0].id.as_str()]
    );
    assert!(
        demo.outbox
            .deliveries(&dmv_hook.id, None, 10)
            .await
            .expect("deliveries")
            .is_empty(),
        "another agency's webhook never hears of it"
    );

    let now = offers_when(&demo, &citizen, 3).await;
    let states: Vec<(&str, &str)> = now
        .iter()
        .map(|o| {
            (
                o["service"]["id"].as_str().expect("an id"),
                o["state"].as_str().expect("a state"),
            )
        })
        .collect();
    assert!(states.contains(&("unemployment-benefit", "ACCEPTED")));
    assert!(states.contains(&("job-training", "DISMISSED")));
    assert!(states.contains(&("health-coverage", "OFFERED")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anyone_may_read_the_catalogue() {
    let demo = start_demo(2).await;
    let answer = demo
        .post("{ serviceCatalogue { id triggers agency { code name } } }")
        .await;
    let services = answer.body["data"]["serviceCatalogue"]
        .as_array()
        .unwrap_or_else(|| panic!("a catalogue in {}", answer.body));
    let pension = services
        .iter()
        .find(|s| s["id"] == "state-pension")
        .expect("the state pension");
    assert_eq!(
        pension,
        &json!({"id": "state-pension", "triggers": ["RetirementAgeReached"],
                "agency": {"code": "benefits", "name": "the Benefits Agency"}})
    );
    assert!(services.len() >= 8, "{services:?}");
}

/// A small citizen graph with the services fields, over backends that are never called.
fn catalogue_project(services_toml: &str) -> crate::support::Project {
    crate::support::TestGateway::builder()
        .gateway_toml(
            "[storage]\nurl = \"sqlite::memory:\"\n\n[trust.agencies.tax]\nname = \"the Tax Agency\"\n",
        )
        .schema(
            "citizen.graphql",
            r#"scalar Money
scalar DateTime
type Query {
  citizen(id: ID!): Citizen @connect(connector: "registry", operation: "person") @public
}
type Mutation
type Citizen {
  id: ID!
  taxAccount: TaxAccount @connect(connector: "tax", operation: "account", args: {tin: "$parent.tin"}) @public
}
type TaxAccount {
  balance: Money!
  filingStatus: FilingStatus
}
enum FilingStatus { FILED OVERDUE }
type Agency { code: String! name: String! }
type LifeEvent { id: ID! type: String! }
"#,
        )
        .schema("services.graphql", include_str!("../../schema/services.graphql"))
        .schema("services.toml", services_toml)
        .connector("registry.toml", crate::support::REGISTRY_TOML)
        .connector("tax.toml", crate::support::TAX_TOML)
        .var("REGISTRY_URL", "http://127.0.0.1:9")
        .var("TAX_URL", "http://127.0.0.1:9")
        .write()
}

#[test]
fn civicgraph_check_names_the_line_of_each_catalogue_mistake() {
    let project = catalogue_project(
        r#"[services.filing-help]
name = "Filing help"
agency = "tax"
triggers = ["JobLost"]
reason = "Your return is late."
when = { "taxAccount.filingStatus" = { eq = "LATE" } }

[services.refund]
name = "Refund"
agency = "treasury"
triggers = ["TaxRefunded"]
reason = "r"
when = { "taxAccount.balanse" = { present = true } }
"#,
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_civicgraph"))
        .arg("check")
        .arg("--config")
        .arg(project.config_path())
        .env_clear()
        .envs(project.env())
        .output()
        .expect("run the civicgraph binary");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "services.toml:6:38: `when.\"taxAccount.filingStatus\"`: \"LATE\" is not a value of this enum; it is one of `FILED` or `OVERDUE`",
        "services.toml:10:10: unknown agency `treasury`; the agencies in [trust.agencies] are `tax`",
        "services.toml:11:13: unknown event type `TaxRefunded`",
        "services.toml:13:10: `when.\"taxAccount.balanse\"`: `TaxAccount` has no field `balanse`; its fields are `balance` or `filingStatus`",
    ] {
        assert!(stderr.contains(expected), "`{expected}` in:\n{stderr}");
    }

    let fixed = catalogue_project(
        "[services.filing-help]\nname = \"Filing help\"\nagency = \"tax\"\nreason = \"r\"\n\
         when = { \"taxAccount.filingStatus\" = { eq = \"OVERDUE\" } }\n",
    );
    let checked = crate::support::check(&fixed).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(checked.services.services()[0].id, "filing-help");
}
