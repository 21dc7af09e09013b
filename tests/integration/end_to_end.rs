//! The shipped configuration (`civicgraph.toml`, `schema/`, `connectors/`) in front of the
//! simulated agencies: what a newcomer running `civicgraph demo` sees.

use civicgraph::auth::{DEMO_CITIZEN_HEADER, DEMO_OPERATOR_HEADER};
use civicgraph::demo::agencies::{account_json, person_json};
use civicgraph::demo::{self, DemoOptions, Population};
use indexmap::IndexMap;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use crate::support::{DEMO_SEED, repo_config, start_demo};

/// What `FIRST_QUERY` must return to C0000001 (its `me` is their own record, every personal
/// field allowed), built from the agencies' own serialisation.
fn first_query_answer(population: &Population) -> Value {
    let person = population
        .person("C0000001")
        .expect("C0000001 always exists");
    let account = population
        .account_of(person)
        .expect("C0000001 is always an adult with a tax account");
    let (p, a) = (person_json(person), account_json(account));
    let licence_number = person
        .license_number
        .as_deref()
        .expect("C0000001 always drives");
    let licence = population
        .license(licence_number)
        .expect("the licence exists");
    let vehicles: Vec<Value> = population
        .vehicles_of(licence_number)
        .iter()
        .map(|v| json!({"plate": v.plate, "make": v.make, "model": v.model, "year": v.year}))
        .collect();
    assert!(!vehicles.is_empty(), "C0000001 always has a vehicle");
    let claimant = person
        .claimant_id
        .as_deref()
        .expect("C0000001 always has a claim");
    let claims: Vec<Value> = population
        .claims_of(claimant)
        .iter()
        .map(|c| {
            json!({
                "status": c.status.as_str(),
                "filedOn": c.filed_on.to_string(),
                "weeklyBenefit": c.weekly_benefit.to_string(),
            })
        })
        .collect();
    let assessments: Vec<Value> = a["assessments"]
        .as_array()
        .expect("assessments are a list")
        .iter()
        .map(|x| json!({"year": x["year"], "assessed": x["assessed"], "paid": x["paid"]}))
        .collect();
    let case_number = person
        .case_number
        .as_deref()
        .expect("C0000001 always has benefit cases");
    let benefits = population.benefits();
    let cases: Vec<Value> = benefits
        .cases(case_number)
        .iter()
        .map(|c| {
            let card = match &c.payment {
                civicgraph::demo::benefits::Payment::Card { last4, .. } => json!({"last4": last4}),
                _ => Value::Null,
            };
            let method = match &c.payment {
                civicgraph::demo::benefits::Payment::Card { .. } => "CARD",
                civicgraph::demo::benefits::Payment::Deposit { .. } => "DEPOSIT",
                civicgraph::demo::benefits::Payment::Check { .. } => "CHECK",
            };
            json!({
                "program": c.program.graphql(),
                "caseStatus": c.status.graphql(),
                "monthlyAmount": format!("{:.2}", c.monthly_amount),
                "balanceDue": format!("{:.2}", c.balance_due),
                "payMethod": method,
                "card": card,
            })
        })
        .collect();
    let payments: Vec<Value> = benefits
        .payments(case_number)
        .iter()
        .map(|p| {
            json!({
                "issuedOn": p.issued_on.to_string(),
                "amount": format!("{:.2}", p.amount),
                "status": p.status.graphql(),
            })
        })
        .collect();
    json!({"data": {"me": {
        "id": "C0000001",
        "name": p["full_name"],
        "birthDate": p["birth_date"],
        "address": {
            "street": p["address"]["street"],
            "city": p["address"]["city"],
            "postalCode": p["address"]["postal_code"],
        },
        "taxAccount": {
            "balance": a["balance"],
            "filingStatus": a["filing_status"],
            "assessments": assessments,
        },
        "driverLicense": {
            "number": licence.number,
            "class": licence.class.as_str(),
            "status": licence.status.as_str(),
            "expiresOn": licence.expires_on.to_string(),
        },
        "vehicles": vehicles,
        "unemploymentClaims": claims,
        "benefitCases": cases,
        "benefitPayments": payments,
    }},
    // The payments come from last night's extract, and the answer says so.
    "extensions": {"freshness": {"benefit_payments": {"asOf": "2025-12-31T02:00:00Z"}}}})
}

#[tokio::test]
async fn first_query_joins_registry_tax_motor_vehicles_and_unemployment() {
    let demo = start_demo(20).await;

    let answer = demo.post_as_citizen("C0000001", demo::FIRST_QUERY).await;

    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body, first_query_answer(&demo.population));
}

#[tokio::test]
async fn the_demo_services_tab_answers_the_citizen() {
    let demo = start_demo(20).await;

    let answer = demo.post_as_citizen("C0000001", demo::SERVICES_QUERY).await;

    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.body["errors"].is_null(), "{:#}", answer.body);
    let suggested = answer.body["data"]["me"]["suggestedServices"]
        .as_array()
        .expect("a list of suggestions");
    assert!(
        suggested
            .iter()
            .all(|s| s["reason"].as_str().is_some_and(|r| !r.is_empty())),
        "every suggestion says why: {suggested:?}"
    );
    assert_eq!(
        answer.body["data"]["me"]["serviceOffers"],
        serde_json::json!([])
    );
}

/// `demo::start` with the unemployment-insurance agency in an SQLite file (`None`) or in the
/// server database at `ui_database_url`: the first query, sent with the citizen token the demo
/// mints (as its first GraphiQL tab sends it), answers, and the demo stops cleanly.
async fn demo_serves_the_first_query(ui_database_url: Option<String>) {
    let state = tempfile::tempdir().expect("a directory for the demo's state");
    let running = demo::start(&DemoOptions {
        citizens: 10,
        seed: DEMO_SEED,
        port: 0,
        config: repo_config(),
        ui_database_url,
        state_dir: Some(state.path().to_path_buf()),
        ..DemoOptions::default()
    })
    .await
    .expect("the demo starts");
    let client = crate::support::GatewayClient::new(running.gateway.addr);
    let personas = running
        .personas
        .clone()
        .expect("the shipped configuration has the local development issuer");
    assert_eq!(personas.citizen_id, "C0000001");

    let answer = client
        .post_with(
            json!({ "query": demo::FIRST_QUERY }),
            &[("authorization", &format!("Bearer {}", personas.citizen))],
        )
        .await;

    assert_eq!(
        answer.body,
        first_query_answer(&Population::generate(10, DEMO_SEED))
    );
    running.shutdown().await.expect("the demo stops cleanly");
}

#[tokio::test]
async fn demo_start_serves_the_first_query_and_shuts_down_cleanly() {
    demo_serves_the_first_query(None).await;
}

/// A JSON value read with its objects' keys in the order they were written.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Ordered {
    Object(IndexMap<String, Ordered>),
    List(Vec<Ordered>),
    Leaf(IgnoredAny),
}

impl Ordered {
    /// Objects become `[[key, value], …]` lists so a comparison sees the order; leaves are null.
    fn shape(&self) -> Value {
        match self {
            Self::Object(map) => map.iter().map(|(k, v)| json!([k, v.shape()])).collect(),
            Self::List(items) => json!({"list": items.iter().map(Self::shape).collect::<Vec<_>>()}),
            Self::Leaf(_) => Value::Null,
        }
    }
}

#[tokio::test]
async fn response_keys_follow_the_query_order_even_when_a_backend_field_finishes_last() {
    let demo = start_demo(5).await;

    let answer = demo
        .post_as_citizen(
            "C0000001",
            r#"{ me {
                  taxAccount { filingStatus balance }
                  name
                  id
                  birthDate
                } }"#,
        )
        .await;

    // serde_json's `Value` sorts keys, so the raw text is read with its order kept.
    let ordered: Ordered = serde_json::from_str(&answer.text).expect("a JSON answer");
    assert_eq!(
        ordered.shape(),
        json!([[
            "data",
            [[
                "me",
                [
                    ["taxAccount", [["filingStatus", null], ["balance", null]]],
                    ["name", null],
                    ["id", null],
                    ["birthDate", null],
                ]
            ]]
        ]]),
        "{}",
        answer.text
    );
}

#[tokio::test]
async fn citizens_pages_follow_the_end_cursor_until_the_last_page() {
    let demo = start_demo(7).await;

    // Listing citizens is for operators and agencies with `citizen:list`; ids are not personal.
    let mut pages = Vec::new();
    let mut after = Value::Null;
    loop {
        let answer = demo
            .post_with(
                json!({
                    "query": "query Page($after: String) { citizens(first: 3, after: $after) {
                        edges { cursor node { id } }
                        pageInfo { hasNextPage endCursor }
                    } }",
                    "variables": {"after": after},
                }),
                &[(DEMO_OPERATOR_HEADER, "ops")],
            )
            .await;
        let page = answer.body["data"]["citizens"].clone();
        assert!(page.is_object(), "{}", answer.text);
        pages.push(page.clone());
        if page["pageInfo"]["hasNextPage"] != json!(true) || pages.len() > 5 {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }

    let page = |ids: &[&str], has_next: bool| {
        let edges: Vec<Value> = ids
            .iter()
            .map(|id| json!({"cursor": id, "node": {"id": id}}))
            .collect();
        json!({"edges": edges, "pageInfo": {"hasNextPage": has_next, "endCursor": ids.last()}})
    };
    assert_eq!(
        pages,
        vec![
            page(&["C0000001", "C0000002", "C0000003"], true),
            page(&["C0000004", "C0000005", "C0000006"], true),
            page(&["C0000007"], false),
        ]
    );
}

#[tokio::test]
async fn an_unknown_citizen_is_null_without_errors() {
    let demo = start_demo(5).await;

    // An operator may look citizens up (and would be refused their personal fields).
    let answer = demo
        .post_as_operator(
            "ops",
            r#"{ citizen(id: "C9999999") { id name taxAccount { balance } } }"#,
        )
        .await;

    assert_eq!(
        (answer.status.as_u16(), answer.body),
        (200, json!({"data": {"citizen": null}}))
    );
}

#[tokio::test]
async fn a_minor_has_a_null_tax_account_without_errors() {
    let demo = start_demo(200).await;
    let minor = demo
        .population
        .people()
        .iter()
        .find(|p| demo.population.account_of(p).is_none())
        .expect("200 synthetic citizens include a minor");

    let answer = demo
        .post_as_citizen(&minor.id, "{ me { id taxAccount { balance } } }")
        .await;

    assert_eq!(
        answer.body,
        json!({"data": {"me": {"id": minor.id, "taxAccount": null}}})
    );
}

#[tokio::test]
async fn aliases_fragments_and_variables_shape_the_answer() {
    let demo = start_demo(5).await;
    let population = &demo.population;
    let (one, two) = (
        population.person("C0000001").expect("C0000001 exists"),
        population.person("C0000002").expect("C0000002 exists"),
    );
    let one_account = population.account_of(one).expect("C0000001 has an account");

    // A citizen reads only their own record, so each of the two asks for it in turn, with the
    // same document: `operationName` picks the operation, and the second one's variable is
    // what `@include` reads.
    let document = r#"
        query One {
          first: me {
            ...Who
            tax: taxAccount { owed: balance }
          }
        }
        query Two($whereabouts: Boolean!) {
          second: me {
            ... on Citizen { givenName familyName }
            where: address @include(if: $whereabouts) { town: city }
          }
        }
        fragment Who on Citizen { id fullName: name }
    "#;
    let first = demo
        .post_with(
            json!({"query": document, "operationName": "One"}),
            &[(DEMO_CITIZEN_HEADER, "C0000001")],
        )
        .await;
    let second = demo
        .post_with(
            json!({
                "query": document,
                "variables": {"whereabouts": true},
                "operationName": "Two",
            }),
            &[(DEMO_CITIZEN_HEADER, "C0000002")],
        )
        .await;

    assert_eq!(
        (first.body, second.body),
        (
            json!({"data": {
                "first": {
                    "id": "C0000001",
                    "fullName": one.full_name,
                    "tax": {"owed": account_json(one_account)["balance"]},
                },
            }}),
            json!({"data": {
                "second": {
                    "givenName": two.given_name,
                    "familyName": two.family_name,
                    "where": {"town": two.address.city},
                },
            }})
        )
    );
}

#[tokio::test]
async fn date_date_time_and_money_values_are_passed_through_as_served() {
    let demo = start_demo(5).await;
    let person = demo.population.person("C0000001").expect("C0000001 exists");
    let (p, a) = (
        person_json(person),
        account_json(demo.population.account_of(person).expect("an account")),
    );

    let answer = demo
        .post_as_citizen(
            "C0000001",
            r#"{ me {
                  birthDate updatedAt
                  taxAccount { balance updatedAt assessments { assessed paid assessedOn } }
                } }"#,
        )
        .await;

    let assessments: Vec<Value> = a["assessments"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|x| json!({"assessed": x["assessed"], "paid": x["paid"], "assessedOn": x["assessed_on"]}))
        .collect();
    assert_eq!(
        answer.body,
        json!({"data": {"me": {
            "birthDate": p["birth_date"],
            "updatedAt": p["updated_at"],
            "taxAccount": {
                "balance": a["balance"],
                "updatedAt": a["updated_at"],
                "assessments": assessments,
            },
        }}})
    );
}

/// The demo with its unemployment-insurance agency in a real server database, as
/// `civicgraph demo --ui-database-url …` runs it.
async fn demo_on_server_database(variable: &str) {
    match std::env::var(variable) {
        Ok(url) => demo_serves_the_first_query(Some(url)).await,
        Err(_) => eprintln!("skipped: {variable} is not set"),
    }
}

#[tokio::test]
async fn demo_first_query_with_unemployment_claims_in_postgres() {
    demo_on_server_database("CIVICGRAPH_TEST_POSTGRES_URL").await;
}

#[tokio::test]
async fn demo_first_query_with_unemployment_claims_in_mariadb() {
    demo_on_server_database("CIVICGRAPH_TEST_MYSQL_URL").await;
}

/// A child is known to the registry only: the crosswalk links no key to them, so every
/// agency field is null without an error (`identity::no_link_means_null_and_no_backend_call…`
/// proves no call is made).
#[tokio::test]
async fn a_citizen_absent_from_the_agencies_gets_nulls_and_no_errors() {
    let demo = start_demo(200).await;
    let child = demo
        .population
        .people()
        .iter()
        .find(|p| p.age() < 16)
        .expect("200 people include a child");
    let query = "{ me { id taxAccount { balance } driverLicense { number } vehicles { plate } unemploymentClaims { status } } }";
    let answer = demo.post_as_citizen(&child.id, query).await;
    assert_eq!(
        answer.body,
        json!({"data": {"me": {"id": child.id, "taxAccount": null, "driverLicense": null, "vehicles": null, "unemploymentClaims": null}}})
    );
}
