//! Request limits (BAD_INPUTS rows 12-27): each bad request gets its exact status and
//! `extensions.code`, and no backend hears of it. One test per row, named after it; each
//! states its request, the expected status and the expected code up front.

use std::path::Path;

use civicgraph::auth::dev_tokens::{Persona, mint};
use civicgraph::config::GatewayConfig;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};

use crate::support::{
    Answer, FakeAgency, GatewayClient, PERSON_ROUTE, Project, Reply, RunningAgency, TAX_TOML,
    TestGateway, ada, ada_account, serve_on_loopback,
};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// Citizens from a registry (one, a list by ids, a search page), with tax accounts and a
/// household that leads back to citizens (a cycle for depth).
const SDL: &str = r#"scalar Money

type Query {
  citizen(id: ID!): Citizen @connect(connector: "registry", operation: "person") @public
  citizens(ids: [ID!]!): [Citizen] @connect(connector: "registry", operation: "people") @public
  search(name: String!, first: Int): [Citizen] @connect(connector: "registry", operation: "search") @public
  find(filter: PersonFilter!): [Citizen] @connect(connector: "registry", operation: "find") @public
}

input PersonFilter {
  name: String!
}

type Citizen {
  id: ID!
  name: String @map(from: "full_name")
  household: [Citizen]
  taxAccount: TaxAccount @connect(connector: "tax", operation: "account", args: {tin: "$parent.tin"}) @public
}

type TaxAccount {
  tin: String!
  balance: Money!
}
"#;

const REGISTRY_TOML: &str = r#"name = "registry"
kind = "rest"
base_url = "${REGISTRY_URL}"

[operations.person]
path = "/v1/people/{id}"
select = "/person"

[operations.people]
path = "/v1/people"
query = { ids = "{ids}" }
select = "/people"

[operations.search]
path = "/v1/search"
query = { name = "{name}", first = "{first}" }
select = "/people"

[operations.find]
path = "/v1/find"
query = { name = "{filter}" }
select = "/people"
"#;

/// A gateway over a recording registry and tax agency, with an agency token issuer, the demo
/// headers (for citizens) and the given `[server]` lines and `[limits]` section.
struct Limited {
    client: GatewayClient,
    registry: RunningAgency,
    tax: RunningAgency,
    config: GatewayConfig,
    _running: civicgraph::server::RunningGateway,
    _project: Project,
}

impl Limited {
    async fn start(server: &str, limits: &str) -> Self {
        let person = ada()["person"].clone();
        let registry = FakeAgency::new()
            .route(PERSON_ROUTE, Reply::json(200, ada()))
            .route("/v1/people", Reply::json(200, json!({"people": [person]})))
            .route("/v1/search", Reply::json(200, json!({"people": [person]})))
            .route("/v1/find", Reply::json(200, json!({"people": [person]})))
            .run()
            .await;
        let tax = FakeAgency::new()
            .route(
                "/v1/taxpayers/{tin}/account",
                Reply::json(200, ada_account()),
            )
            .run()
            .await;
        let toml = format!(
            r#"[server]
listen = "127.0.0.1:0"
{server}

[storage]
url = "sqlite::memory:"

[auth]
demo_headers = true

[[auth.issuers]]
name = "local-dev"
issuer = "urn:civicgraph:test"
audience = "civicgraph"
role = "claim"
keys = {{ dev_key = "dev-issuer.pem" }}

[trust.purposes]
tax-assessment = "assessing your taxes"

[trust.agencies.tax]
name = "the Tax Agency"

[limits]
{limits}
"#
        );
        let project = TestGateway::builder()
            .gateway_toml(&toml)
            .schema("citizen.graphql", SDL)
            .connector("registry.toml", REGISTRY_TOML)
            .connector("tax.toml", TAX_TOML)
            .var("REGISTRY_URL", &registry.url())
            .var("TAX_URL", &tax.url())
            .write();
        let gateway = civicgraph::server::Gateway::load(&project.config_path(), &project.vars())
            .await
            .unwrap_or_else(|error| panic!("the test project does not load:\n{error}"));
        let (config, _) =
            civicgraph::config::load_gateway_config(&project.config_path(), &project.vars())
                .expect("the configuration loads");
        let running = serve_on_loopback(gateway).await;
        Self {
            client: GatewayClient::new(running.addr),
            registry,
            tax,
            config,
            _running: running,
            _project: project,
        }
    }

    /// Calls either backend received.
    fn backend_calls(&self) -> usize {
        self.registry.requests().len() + self.tax.requests().len()
    }

    /// A partner agency's bearer token (`tax` agency, purpose `tax-assessment`).
    fn partner_token(&self) -> String {
        let root = self._project.config_path();
        let root = root.parent().unwrap_or(Path::new("/"));
        let persona = Persona::Agency {
            client_id: "tax-portal".to_string(),
            agency: "tax".to_string(),
            scopes: Default::default(),
            purpose: "tax-assessment".to_string(),
        };
        let token = mint(
            &self.config,
            root,
            &persona,
            chrono::Utc::now(),
            chrono::Duration::minutes(10),
        )
        .expect("mint a partner token");
        format!("Bearer {token}")
    }

    async fn post(&self, body: Value, headers: &[(&str, &str)]) -> Answer {
        self.client.post_with(body, headers).await
    }
}

/// `(status, first error's code)`.
fn status_and_code(answer: &Answer) -> (u16, Value) {
    (
        answer.status.as_u16(),
        answer.body["errors"][0]["extensions"]["code"].clone(),
    )
}

fn aliases(count: usize, field: &str) -> String {
    (0..count).map(|i| format!("a{i}: {field} ")).collect()
}

#[tokio::test]
async fn row_12_a_query_nested_ten_thousand_deep_is_a_parser_recursion_error() {
    let gw = Limited::start("", "").await;
    let query = format!("{}{}", "{a".repeat(10_000), "}".repeat(10_000));

    let answer = gw.post(json!({ "query": query }), &[]).await;
    let calls_when_refused = gw.backend_calls();
    let after = gw
        .post(
            json!({"query": r#"{ citizen(id: "C0000001") { name } }"#}),
            &[],
        )
        .await;

    assert_eq!(
        (status_and_code(&answer), calls_when_refused),
        ((400, json!("PARSER_RECURSION_LIMIT")), 0)
    );
    assert_eq!(after.body["data"]["citizen"]["name"], "Ada Lovelace");
}

#[tokio::test]
async fn row_13_a_hundred_thousand_tokens_are_refused_before_parsing() {
    // A body large enough for the text (1.1 MB), so the token limit is what answers.
    let gw = Limited::start("max_body_bytes = 4194304", "").await;
    let query = format!("{{{}}}", " __typename".repeat(100_000));

    let answer = gw.post(json!({ "query": query }), &[]).await;

    assert_eq!(
        (status_and_code(&answer), gw.backend_calls()),
        ((400, json!("TOO_MANY_TOKENS")), 0)
    );
}

#[tokio::test]
async fn row_14_ten_thousand_aliases_are_refused_with_no_backend_call() {
    let query = format!(
        "{{ {} }}",
        aliases(10_000, r#"citizen(id: "C0000001") { name }"#)
    );
    // With the default limits the text alone is too long.
    let defaults = Limited::start("", "").await;
    let by_tokens = defaults.post(json!({ "query": query }), &[]).await;
    // With room for the text, the alias limit answers.
    let roomy = Limited::start("", "max_tokens = 200000").await;
    let by_aliases = roomy.post(json!({ "query": query }), &[]).await;

    assert_eq!(
        (
            status_and_code(&by_tokens),
            status_and_code(&by_aliases),
            defaults.backend_calls() + roomy.backend_calls()
        ),
        (
            (400, json!("TOO_MANY_TOKENS")),
            (400, json!("TOO_MANY_ALIASES")),
            0
        )
    );
}

#[tokio::test]
async fn row_16_circular_fragments_and_a_fragment_bomb_are_refused() {
    let gw = Limited::start("", "").await;
    let cycle = r#"{ citizen(id: "C0000001") { ...A } }
        fragment A on Citizen { name ...B }
        fragment B on Citizen { household { ...A } }"#;
    // Each fragment spreads the one before twice: 30 levels expand to 2^29 fields.
    let mut bomb = String::from(r#"{ citizen(id: "C0000001") { ...F29 } }"#);
    bomb.push_str(" fragment F0 on Citizen { name }");
    for n in 1..30 {
        bomb.push_str(&format!(
            " fragment F{n} on Citizen {{ ...F{p} ...F{p} }}",
            p = n - 1
        ));
    }

    let cycled = gw
        .post(json!({ "query": cycle }), &[("accept", GRAPHQL_RESPONSE)])
        .await;
    let bombed = gw.post(json!({ "query": bomb }), &[]).await;

    assert_eq!(
        (
            status_and_code(&cycled),
            status_and_code(&bombed),
            gw.backend_calls()
        ),
        (
            (400, json!("GRAPHQL_VALIDATION_FAILED")),
            (400, json!("TOO_MANY_FIELDS")),
            0
        )
    );
}

#[tokio::test]
async fn row_18_depth_fifty_through_a_cyclic_type_is_too_deep() {
    let gw = Limited::start("", "").await;
    let query = format!(
        r#"{{ citizen(id: "C0000001") {{ {}name{} }} }}"#,
        "household { ".repeat(49),
        " }".repeat(49)
    );

    let answer = gw.post(json!({ "query": query }), &[]).await;

    assert_eq!(
        (status_and_code(&answer), gw.backend_calls()),
        ((400, json!("QUERY_TOO_DEEP")), 0)
    );
}

#[tokio::test]
async fn row_19_batches_are_refused_to_citizens_and_capped_for_partners() {
    let gw = Limited::start("", "max_batch_operations = 5").await;
    let one = json!({"query": r#"{ citizen(id: "C0000001") { name } }"#});
    let thousand = Value::Array(vec![one.clone(); 1_000]);
    let six = Value::Array(vec![one.clone(); 6]);
    let two = Value::Array(vec![one.clone(); 2]);
    let partner = gw.partner_token();

    let citizen = gw
        .post(thousand.clone(), &[("x-demo-citizen", "C0000001")])
        .await;
    let anonymous = gw.post(thousand, &[]).await;
    let too_many = gw.post(six, &[("authorization", &partner)]).await;
    let calls_before_allowed = gw.backend_calls();
    let allowed = gw.post(two, &[("authorization", &partner)]).await;

    assert_eq!(
        (
            status_and_code(&citizen),
            status_and_code(&anonymous),
            status_and_code(&too_many),
            calls_before_allowed
        ),
        (
            (400, json!("BATCH_NOT_ALLOWED")),
            (400, json!("BATCH_NOT_ALLOWED")),
            (400, json!("BATCH_LIMIT_EXCEEDED")),
            0
        )
    );
    assert_eq!(
        (allowed.status.as_u16(), allowed.body),
        (
            200,
            json!([
                {"data": {"citizen": {"name": "Ada Lovelace"}}},
                {"data": {"citizen": {"name": "Ada Lovelace"}}}
            ])
        )
    );
}

#[tokio::test]
async fn row_19_batches_stay_off_by_default_even_for_partners() {
    let gw = Limited::start("", "").await;
    let one = json!({"query": r#"{ citizen(id: "C0000001") { name } }"#});
    let partner = gw.partner_token();

    let answer = gw
        .post(json!([one.clone(), one]), &[("authorization", &partner)])
        .await;

    assert_eq!(
        (status_and_code(&answer), gw.backend_calls()),
        ((400, json!("BATCH_NOT_ALLOWED")), 0)
    );
}

#[tokio::test]
async fn row_20_introspection_is_refused_in_production() {
    let gw = Limited::start(r#"profile = "production""#, "").await;
    let partner = gw.partner_token();

    let as_partner = gw
        .post(
            json!({"query": "{ __schema { types { name } } }"}),
            &[("authorization", &partner)],
        )
        .await;
    let as_citizen = gw
        .post(
            json!({"query": r#"{ __type(name: "Citizen") { name } }"#}),
            &[("x-demo-citizen", "C0000001")],
        )
        .await;
    let typename = gw.post(json!({"query": "{ __typename }"}), &[]).await;
    let playground = gw.client.get("/graphql", &[("accept", "text/html")]).await;

    assert_eq!(
        (
            status_and_code(&as_partner),
            status_and_code(&as_citizen),
            typename.body["data"]["__typename"].clone(),
            playground.text.contains("GraphiQL"),
            gw.backend_calls()
        ),
        (
            (400, json!("INTROSPECTION_DISABLED")),
            (400, json!("INTROSPECTION_DISABLED")),
            json!("Query"),
            false,
            0
        )
    );
}

#[tokio::test]
async fn row_21_a_misspelt_field_gets_no_suggestion_in_production() {
    let production = Limited::start(r#"profile = "production""#, "").await;
    let development = Limited::start("", "").await;
    let query = json!({"query": r#"{ citizn(id: "C0000001") { name } }"#});

    let hardened = production
        .post(query.clone(), &[("accept", GRAPHQL_RESPONSE)])
        .await;
    let helpful = development
        .post(query, &[("accept", GRAPHQL_RESPONSE)])
        .await;

    assert_eq!(
        (
            status_and_code(&hardened),
            hardened.text.contains("Did you mean"),
            helpful.text.contains("Did you mean"),
            production.backend_calls()
        ),
        ((400, json!("GRAPHQL_VALIDATION_FAILED")), false, true, 0)
    );
}

#[tokio::test]
async fn row_23_a_million_ids_or_a_long_list_are_refused_before_any_fan_out() {
    // A body large enough to carry a million ids, so the variables limit is what answers.
    let gw = Limited::start("max_body_bytes = 16777216", "").await;
    let query = "query($ids: [ID!]!) { citizens(ids: $ids) { name } }";
    let ids = |n: usize| -> Vec<String> { (0..n).map(|i| format!("{i}")).collect() };

    let million = gw
        .post(
            json!({"query": query, "variables": {"ids": ids(1_000_000)}}),
            &[],
        )
        .await;
    let long = gw
        .post(json!({"query": query, "variables": {"ids": ids(101)}}), &[])
        .await;
    let written = gw
        .post(
            json!({"query": format!("{{ citizens(ids: {:?}) {{ name }} }}", ids(101))}),
            &[],
        )
        .await;
    let calls_when_refused = gw.backend_calls();
    let fits = gw
        .post(json!({"query": query, "variables": {"ids": ids(100)}}), &[])
        .await;

    assert_eq!(
        (
            status_and_code(&million),
            status_and_code(&long),
            status_and_code(&written),
            calls_when_refused
        ),
        (
            (400, json!("VARIABLES_TOO_LARGE")),
            (400, json!("LIST_TOO_LONG")),
            (400, json!("LIST_TOO_LONG")),
            0
        )
    );
    assert_eq!(
        (fits.status.as_u16(), gw.backend_calls()),
        (200, 1),
        "{}",
        fits.text
    );
}

#[tokio::test]
async fn row_25_an_unknown_field_in_an_input_object_variable_is_refused() {
    let gw = Limited::start("", "").await;
    let query = "query($filter: PersonFilter!) { find(filter: $filter) { name } }";

    let answer = gw
        .post(
            json!({"query": query, "variables": {"filter": {"name": "Ada", "isAdmin": true}}}),
            &[("accept", GRAPHQL_RESPONSE)],
        )
        .await;

    assert_eq!(
        (status_and_code(&answer), gw.backend_calls()),
        ((400, json!("GRAPHQL_VALIDATION_FAILED")), 0)
    );
}

#[tokio::test]
async fn row_27_fifty_aliases_of_an_expensive_field_are_too_complex() {
    let gw = Limited::start("", "").await;
    let field = r#"search(name: "Ada", first: 100) { name taxAccount { balance } }"#;

    let fifty = gw
        .post(
            json!({"query": format!("{{ {} }}", aliases(50, field))}),
            &[],
        )
        .await;
    let calls_when_refused = gw.backend_calls();
    let one = gw
        .post(json!({"query": format!("{{ {field} }}")}), &[])
        .await;

    assert_eq!(
        (status_and_code(&fifty), calls_when_refused),
        ((400, json!("QUERY_TOO_COMPLEX")), 0)
    );
    assert_eq!(
        (one.status.as_u16(), gw.registry.requests().len()),
        (200, 1),
        "{}",
        one.text
    );
}

#[tokio::test]
async fn limit_messages_state_no_limit_value() {
    let gw = Limited::start("", "").await;
    let deep = format!(
        r#"{{ citizen(id: "C0000001") {{ {}name{} }} }}"#,
        "household { ".repeat(40),
        " }".repeat(40)
    );

    let answer = gw.post(json!({ "query": deep }), &[]).await;
    let message = answer.body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    assert_eq!(
        (
            status_and_code(&answer),
            message.chars().any(|c| c.is_ascii_digit())
        ),
        ((400, json!("QUERY_TOO_DEEP")), false),
        "{message}"
    );
}

#[tokio::test]
async fn websocket_operations_obey_the_same_limits() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    let gw = Limited::start("", "").await;
    let mut request = format!("ws://{}/graphql", gw.client.addr())
        .into_client_request()
        .expect("a WebSocket request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the upgrade succeeds");
    let deep = format!(
        r#"{{ citizen(id: "C0000001") {{ {}name{} }} }}"#,
        "household { ".repeat(49),
        " }".repeat(49)
    );
    for message in [
        json!({"type": "connection_init", "payload": {}}),
        json!({"id": "1", "type": "subscribe", "payload": {"query": deep}}),
    ] {
        socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
            .await
            .expect("an answer in time")
            .expect("the socket is open")
            .expect("a readable frame");
        if let Message::Text(text) = message {
            answers.push(serde_json::from_str::<Value>(&text).expect("JSON"));
        }
    }

    // async-graphql sends a request error as `error` (its payload the errors), or as `next`.
    let refused = &answers[1];
    let code = match refused["type"].as_str() {
        Some("error") => refused["payload"][0]["extensions"]["code"].clone(),
        _ => refused["payload"]["errors"][0]["extensions"]["code"].clone(),
    };
    assert_eq!(
        (code, gw.backend_calls()),
        (json!("QUERY_TOO_DEEP"), 0),
        "{refused}"
    );
}
