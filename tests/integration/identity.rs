//! The identity crosswalk through the graph: agency keys come from the gateway's store, no
//! link means no backend call, operators link and unlink, and `Query.me` follows the caller.

use serde_json::{Value, json};

use crate::support::{
    ACCOUNT_ROUTE, FakeAgency, PERSON_ROUTE, Reply, RunningAgency, TestGateway, TestGatewayBuilder,
    ada_account, check, outcome,
};

const SDL: &str = r#"scalar Money
scalar DateTime

type Query {
  citizen(id: ID!): Citizen @connect(connector: "registry", operation: "person") @public
  me: Citizen @connect(connector: "registry", operation: "person", args: {id: "$caller.citizenId"}) @public
}

type Citizen {
  id: ID!
  name: String @map(from: "full_name")
  taxAccount: TaxAccount @connect(connector: "tax", operation: "account") @public
  identityLinks: [IdentityLink!] @connect(connector: "identity", operation: "links", args: {citizen_id: "$parent.id"})
}

type TaxAccount {
  tin: String!
  balance: Money!
}

enum AgencyKeyKind { TIN LICENSE_NUMBER CLAIMANT_ID CASE_NUMBER }

type IdentityLink {
  citizenId: ID!
  kind: AgencyKeyKind!
  key: String!
  linkedAt: DateTime!
  linkedBy: String!
}

type Mutation {
  linkIdentity(citizenId: ID!, kind: AgencyKeyKind!, key: String!): IdentityLink!
    @connect(connector: "identity", operation: "link", args: {citizen_id: "$args.citizenId"})
  unlinkIdentity(citizenId: ID!, kind: AgencyKeyKind!): IdentityLink
    @connect(connector: "identity", operation: "unlink", args: {citizen_id: "$args.citizenId"})
}
"#;

const REGISTRY: &str = r#"name = "registry"
kind = "rest"
base_url = "${REGISTRY_URL}"
[operations.person]
path = "/v1/people/{id}"
select = "/person"
"#;

/// A tax connector that declares its key: the graph fills `{tin}` from the crosswalk.
const TAX: &str = r#"name = "tax"
kind = "rest"
identifier = "tin"
base_url = "${TAX_URL}"
[operations.account]
path = "/v1/taxpayers/{tin}/account"
select = "/account"
"#;

const OPERATOR: (&str, &str) = ("x-demo-operator", "ops");

/// A registry that knows everyone (the person's id echoes the path) and a tax agency.
async fn agencies() -> (RunningAgency, RunningAgency) {
    let registry = FakeAgency::new()
        .route(
            PERSON_ROUTE,
            Reply::json(200, json!({"person": {"id": "C0000001", "full_name": "Ada Lovelace", "tin": "999999999"}})),
        )
        .run()
        .await;
    let tax = FakeAgency::new()
        .route(ACCOUNT_ROUTE, Reply::json(200, ada_account()))
        .run()
        .await;
    (registry, tax)
}

fn project(
    registry: &RunningAgency,
    tax: &RunningAgency,
    storage: &str,
    demo_headers: bool,
) -> TestGatewayBuilder {
    TestGateway::builder()
        .gateway_toml(&format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\nurl = \"{storage}\"\n\n[auth]\ndemo_headers = {demo_headers}\n"
        ))
        .schema("citizen.graphql", SDL)
        .connector("registry.toml", REGISTRY)
        .connector("tax.toml", TAX)
        .var("REGISTRY_URL", &registry.url())
        .var("TAX_URL", &tax.url())
}

async fn mutate(gateway: &TestGateway, query: &str, headers: &[(&str, &str)]) -> Value {
    outcome(
        &gateway
            .post_with(json!({ "query": query }), headers)
            .await
            .body,
    )
}

const LINK_ADA: &str = r#"mutation { linkIdentity(citizenId: "C0000001", kind: TIN, key: "123456789") { citizenId kind key linkedBy } }"#;
const ADA_TAX: &str = r#"{ citizen(id: "C0000001") { name taxAccount { tin balance } } }"#;

#[tokio::test]
async fn no_link_means_null_and_no_backend_call_until_an_operator_links_one() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax, "sqlite::memory:", true)
        .build()
        .await;

    // The registry's own `tin` field is not used: only the crosswalk says which TIN is Ada's.
    let before = gateway.post(ADA_TAX).await;
    assert_eq!(
        outcome(&before.body),
        json!({"data": {"citizen": {"name": "Ada Lovelace", "taxAccount": null}}})
    );
    assert_eq!(tax.requests().len(), 0, "no link, no call");

    assert_eq!(
        mutate(&gateway, LINK_ADA, &[OPERATOR]).await,
        json!({"data": {"linkIdentity": {"citizenId": "C0000001", "kind": "TIN", "key": "123456789", "linkedBy": "ops"}}})
    );
    let after = gateway.post(ADA_TAX).await;
    assert_eq!(
        outcome(&after.body),
        json!({"data": {"citizen": {"name": "Ada Lovelace", "taxAccount": {"tin": "123456789", "balance": "-120.50"}}}})
    );
    let calls = tax.requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].path, "/v1/taxpayers/123456789/account",
        "the linked TIN is sent"
    );

    let unlinked = mutate(
        &gateway,
        r#"mutation { unlinkIdentity(citizenId: "C0000001", kind: TIN) { key } }"#,
        &[OPERATOR],
    )
    .await;
    assert_eq!(
        unlinked,
        json!({"data": {"unlinkIdentity": {"key": "123456789"}}})
    );
    let again = mutate(
        &gateway,
        r#"mutation { unlinkIdentity(citizenId: "C0000001", kind: TIN) { key } }"#,
        &[OPERATOR],
    )
    .await;
    assert_eq!(
        again,
        json!({"data": {"unlinkIdentity": null}}),
        "unlinking twice is not an error"
    );
    gateway.post(ADA_TAX).await;
    assert_eq!(tax.requests().len(), 1, "unlinked: no further call");
}

#[tokio::test]
async fn only_operators_change_links_and_conflicts_change_nothing() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax, "sqlite::memory:", true)
        .build()
        .await;

    for headers in [vec![], vec![("x-demo-citizen", "C0000001")]] {
        let denied = mutate(&gateway, LINK_ADA, &headers).await;
        assert_eq!(
            denied["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{headers:?}"
        );
        assert_eq!(denied["errors"][0]["path"], json!(["linkIdentity"]));
        assert_eq!(denied["data"], Value::Null);
    }
    mutate(&gateway, LINK_ADA, &[OPERATOR]).await;

    // The same TIN for another citizen: CONFLICT, and Bob stays unlinked.
    let conflict = mutate(
        &gateway,
        r#"mutation { linkIdentity(citizenId: "C0000002", kind: TIN, key: "123456789") { key } }"#,
        &[OPERATOR],
    )
    .await;
    assert_eq!(conflict["errors"][0]["extensions"]["code"], "CONFLICT");
    let bob_tin = mutate(
        &gateway,
        r#"mutation { unlinkIdentity(citizenId: "C0000002", kind: TIN) { key } }"#,
        &[OPERATOR],
    )
    .await;
    assert_eq!(
        bob_tin,
        json!({"data": {"unlinkIdentity": null}}),
        "Bob never got the TIN"
    );

    // Keys that could smuggle markup or SQL are refused before the store is touched.
    for (citizen, key) in [
        ("C0000003", "1</tin><x/>"),
        ("C0000003", "' OR '1'='1"),
        ("C0000003' --", "1"),
    ] {
        let query = format!(
            r#"mutation {{ linkIdentity(citizenId: {}, kind: LICENSE_NUMBER, key: {}) {{ key }} }}"#,
            json!(citizen),
            json!(key)
        );
        let refused = mutate(&gateway, &query, &[OPERATOR]).await;
        assert_eq!(
            refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{key}"
        );
        assert!(
            !refused.to_string().contains("OR '1'"),
            "the value is not echoed"
        );
    }
}

#[tokio::test]
async fn citizens_see_their_own_links_and_nobody_elses() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax, "sqlite::memory:", true)
        .build()
        .await;
    mutate(&gateway, LINK_ADA, &[OPERATOR]).await;
    let links = |headers: Vec<(&'static str, &'static str)>| {
        let gateway = &gateway;
        async move {
            outcome(
                &gateway
                    .post_with(
                        json!({"query": r#"{ citizen(id: "C0000001") { identityLinks { kind key } } }"#}),
                        &headers,
                    )
                    .await
                    .body,
            )
        }
    };
    assert_eq!(
        links(vec![("x-demo-citizen", "C0000001")]).await,
        json!({"data": {"citizen": {"identityLinks": [{"kind": "TIN", "key": "123456789"}]}}})
    );
    let other = links(vec![("x-demo-citizen", "C0000002")]).await;
    assert_eq!(other["data"], json!({"citizen": {"identityLinks": null}}));
    assert_eq!(other["errors"][0]["extensions"]["code"], "FORBIDDEN");
    let anonymous = links(vec![]).await;
    assert_eq!(anonymous["errors"][0]["extensions"]["code"], "FORBIDDEN");
}

#[tokio::test]
async fn me_is_the_caller_and_needs_one() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax, "sqlite::memory:", true)
        .build()
        .await;
    let me = gateway
        .post_with(
            json!({"query": "{ me { id name } }"}),
            &[("x-demo-citizen", "C0000001")],
        )
        .await;
    assert_eq!(
        outcome(&me.body),
        json!({"data": {"me": {"id": "C0000001", "name": "Ada Lovelace"}}})
    );
    assert_eq!(registry.requests()[0].path, "/v1/people/C0000001");

    let anonymous = gateway.post("{ me { id } }").await;
    assert_eq!(
        outcome(&anonymous.body),
        json!({"data": {"me": null}, "errors": [{"path": ["me"], "extensions": {"code": "UNAUTHENTICATED"}}]})
    );
    assert_eq!(
        registry.requests().len(),
        1,
        "no registry call without a caller"
    );
}

#[tokio::test]
async fn demo_headers_are_ignored_unless_switched_on() {
    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax, "sqlite::memory:", false)
        .build()
        .await;
    let me = gateway
        .post_with(
            json!({"query": "{ me { id } }"}),
            &[("x-demo-citizen", "C0000001")],
        )
        .await;
    assert_eq!(
        me.body["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    let link = mutate(&gateway, LINK_ADA, &[OPERATOR]).await;
    assert_eq!(link["errors"][0]["extensions"]["code"], "FORBIDDEN");
}

#[tokio::test]
async fn links_survive_a_restart_on_a_file_store() {
    let (registry, tax) = agencies().await;
    let dir = tempfile::tempdir().unwrap();
    let storage = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("gateway.db").display()
    );
    let first = project(&registry, &tax, &storage, true).build().await;
    let linked = mutate(&first, LINK_ADA, &[OPERATOR]).await;
    assert_eq!(
        linked["data"]["linkIdentity"]["key"], "123456789",
        "the link was written: {linked}"
    );
    first.shutdown().await.unwrap();

    let second = project(&registry, &tax, &storage, true).build().await;
    let answer = second.post(ADA_TAX).await;
    assert_eq!(
        answer.body["data"]["citizen"]["taxAccount"]["tin"], "123456789",
        "the link survived the restart: {}",
        answer.body
    );
}

#[tokio::test]
async fn links_work_on_a_postgres_store() {
    let Ok(url) = std::env::var("CIVICGRAPH_TEST_POSTGRES_URL") else {
        eprintln!("skipped: CIVICGRAPH_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("cg_it_identity_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&url).await.expect("PostgreSQL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let storage = format!("{url}{separator}options=-c%20search_path%3D{schema}");

    let (registry, tax) = agencies().await;
    let gateway = project(&registry, &tax, &storage, true).build().await;
    mutate(&gateway, LINK_ADA, &[OPERATOR]).await;
    let answer = gateway.post(ADA_TAX).await;
    assert_eq!(
        answer.body["data"]["citizen"]["taxAccount"]["tin"],
        "123456789"
    );
    gateway.shutdown().await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

#[test]
fn a_crosswalk_key_needs_a_citizen_id_on_the_parent() {
    let project = TestGateway::builder()
        .schema(
            "citizen.graphql",
            r#"type Query { account(x: ID): Account @connect(connector: "tax", operation: "account") @public }
type Account { tin: String }"#,
        )
        .connector("tax.toml", TAX)
        .var("TAX_URL", "http://127.0.0.1:9")
        .write();
    let error = check(&project)
        .expect_err("a root field has no citizen")
        .to_string();
    assert!(
        error.contains("schema/citizen.graphql:1:")
            && error.contains("needs the citizen's `tin` from the identity crosswalk"),
        "{error}"
    );
}

#[test]
fn the_identity_connector_name_is_reserved() {
    let project = TestGateway::builder()
        .schema("citizen.graphql", "type Query { x: String @connect(connector: \"identity\", operation: \"links\", args: {citizen_id: \"C1\"}) }")
        .connector("identity.toml", "name = \"identity\"\nkind = \"rest\"\nbase_url = \"http://127.0.0.1:9\"\n[operations.a]\npath = \"/\"\n")
        .write();
    let error = check(&project).expect_err("reserved name").to_string();
    assert!(
        error.contains("connectors/identity.toml:1:") && error.contains("reserved"),
        "{error}"
    );
}
