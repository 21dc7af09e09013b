use serde_json::json;

use super::*;
use crate::config::{Location, Vars};
use crate::connectors::OperationSpec;

fn specs() -> BTreeMap<String, ConnectorSpec> {
    let location = Location::at(std::path::Path::new("connectors/x.toml"), 1, 1);
    let operation = OperationSpec {
        required: Vec::new(),
        optional: vec!["since".into()],
        location: location.clone(),
        page: None,
        description: None,
        batch: None,
    };
    let connector = |ops: &[&str]| ConnectorSpec {
        kind: "sql",
        identifier: None,
        location: location.clone(),
        operations: ops
            .iter()
            .map(|op| (op.to_string(), operation.clone()))
            .collect(),
    };
    BTreeMap::from([
        (
            "ui".to_string(),
            connector(&["claims_changed_since", "claims"]),
        ),
        ("registry".to_string(), connector(&["changes"])),
    ])
}

fn trust() -> TrustConfig {
    let text = r#"
        [categories]
        "ui.claims" = "claims"
        "registry.address" = "address"
    "#;
    toml::from_str(text).expect("trust")
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn load(text: &str) -> Result<Rules, Vec<String>> {
    let file = TomlFile::from_text(
        "schema/life-events.toml",
        text,
        &Vars::only([("SECRET".to_string(), SECRET.to_string())].into()),
    )
    .map_err(|d| d.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let specs = specs();
    let trust = trust();
    let has_mutation = |field: &str| field == "changeAddress";
    Rules::load(
        &file,
        &CheckAgainst {
            connectors: &specs,
            trust: &trust,
            has_mutation: &has_mutation,
        },
    )
    .map_err(|d| d.iter().map(ToString::to_string).collect())
}

const GOOD: &str = r#"
[sources.ui-claims]
kind = "poll"
connector = "ui"
operation = "claims_changed_since"
cursor = "updated_at"
start = "1970-01-01T00:00:00Z"
every_s = 2

[sources.registry-notices]
kind = "inbound"
connector = "registry"
secret = "${SECRET}"

[sources.moves]
kind = "mutation"
field = "changeAddress"

[[events]]
type = "JobLost"
source = "ui-claims"
category = "ui.claims"
when = { status = { eq = "FILED" }, separation_reason = { in = ["LAID_OFF", "PLANT_CLOSED"] } }
citizen = { key = "claimant_id", kind = "claimant_id" }
subject = { claim = "claim_id" }
occurred_at = "updated_at"

[[events]]
type = "BirthRegistered"
source = "registry-notices"
category = "registry.address"
when = { kind = { eq = "birth" } }
citizen = { field = "parent_id" }
subject = { birth = "birth_id", child = "child_id" }
key = ["birth"]

[[events]]
type = "AddressChanged"
source = "moves"
category = "registry.address"
citizen = { field = "citizen_id" }
subject = { change = "result.change_id" }
"#;

#[test]
fn a_good_file_loads_and_detects_events() {
    let rules = load(GOOD).expect("valid rules");
    assert_eq!(
        rules.event_types().into_iter().collect::<Vec<_>>(),
        ["AddressChanged", "BirthRegistered", "JobLost"]
    );
    assert!(rules.inbound("registry").is_some());
    assert!(rules.inbound("ui").is_none());
    assert!(rules.mutation_source("changeAddress").is_some());
    let today = NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
    let change = json!({
        "claimant_id": "UI-1", "claim_id": "CL-9", "status": "FILED",
        "separation_reason": "LAID_OFF", "updated_at": "2026-11-23T01:02:03Z",
        "weekly_benefit": 412.5
    });
    let found = rules.detect("ui-claims", &change, today);
    assert_eq!(found.len(), 1);
    let event = &found[0];
    assert_eq!(event.event_type, "JobLost");
    assert_eq!(
        event.citizen,
        (
            CitizenFrom::Key {
                field: "claimant_id".into(),
                kind: KeyKind::ClaimantId
            },
            "UI-1".to_string()
        )
    );
    assert_eq!(
        Value::Object(event.subject.clone()),
        json!({"claim": "CL-9"})
    );
    assert_eq!(event.idempotency_key, "JobLost:claim=CL-9");
    assert!(event.occurred_at.is_some());
    // The payload is thin: the amount in the change never reaches it.
    assert!(
        !Value::Object(event.subject.clone())
            .to_string()
            .contains("412")
    );
    let quit = json!({"claimant_id": "UI-1", "claim_id": "CL-8", "status": "FILED",
                      "separation_reason": "QUIT"});
    assert!(rules.detect("ui-claims", &quit, today).is_empty());
    let no_id = json!({"claimant_id": "UI-1", "status": "FILED", "separation_reason": "LAID_OFF"});
    assert!(
        rules.detect("ui-claims", &no_id, today).is_empty(),
        "a change missing an id the event carries is no event"
    );
    let birth =
        json!({"kind": "birth", "birth_id": "B1", "parent_id": "C0000001", "child_id": "C9000001"});
    let births = rules.detect("registry-notices", &birth, today);
    assert_eq!(births[0].idempotency_key, "BirthRegistered:birth=B1");
    let moved = json!({"citizen_id": "C0000002", "result": {"change_id": "AC-1"}});
    assert_eq!(
        rules.detect("moves", &moved, today)[0].idempotency_key,
        "AddressChanged:change=AC-1"
    );
    assert!(later_watermark("10", "9"));
    assert!(later_watermark(
        "2026-11-23T01:00:00Z",
        "2026-11-22T23:00:00Z"
    ));
}

#[test]
fn every_mistake_is_reported_at_its_line() {
    let bad = r#"
[sources.a]
kind = "poll"
connector = "ui"
operation = "claims_since"
cursor = "updated_at"

[sources.b]
kind = "inbound"
connector = "registry"
secret = "not-a-secret"

[sources.c]
kind = "mutation"
field = "changeAdress"

[sources.d]
kind = "tail"

[sources.unused]
kind = "poll"
connector = "ui"
operation = "claims"
cursor = "updated_at"

[[events]]
type = "job_lost"
source = "nowhere"
category = "ui.claimz"
citizen = { key = "claimant_id", kind = "ssn" }
subject = { Claim = "claim_id" }
when = { status = {} }
"#;
    let problems = load(bad).expect_err("invalid rules");
    let expect = [
        "life-events.toml:2:1: source `a`: connector `ui` has no operation `claims_since`",
        "life-events.toml:11:10: `secret` must be `whsec_`",
        "life-events.toml:15:9: the graph has no mutation field `changeAdress`",
        "life-events.toml:18:8: unknown source kind `tail`",
        "life-events.toml:27:8: event type `job_lost` must be PascalCase",
        "life-events.toml:28:10: there is no source `nowhere`",
        "life-events.toml:29:12: unknown category `ui.claimz`",
        "life-events.toml:30:11: unknown key kind `ssn`",
        "life-events.toml:31:11: subject name `Claim` must be lower_snake_case",
        "life-events.toml:32:8: the test on `status` has no operator",
        "life-events.toml:20:1: source `unused` has no [[events]] rule",
    ];
    for expected in expect {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "missing `{expected}` in {problems:#?}"
        );
    }
    let unknown_key = load("[[events]]\ntype = \"A\"\nsorce = \"x\"\n").expect_err("unknown key");
    assert!(
        unknown_key[0].contains("life-events.toml:3:1: unknown key `sorce`"),
        "{unknown_key:?}"
    );
}
