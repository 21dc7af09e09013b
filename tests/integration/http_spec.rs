//! `/graphql` as the GraphQL-over-HTTP specification says, the operational endpoints, request
//! ids and graceful shutdown.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    ACCOUNT_ROUTE, Answer, FakeAgency, PERSON_ROUTE, Reply, RunningAgency, TestGateway,
    ada_account, ada_registry, citizen_project, tax_agency,
};

const QUERY: &str = r#"{ citizen(id: "C0000001") { name } }"#;
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// A filing mutation served by the tax agency's `returns` endpoint.
const MUTATION_SDL: &str = r#"type Mutation {
  fileReturn(tin: String!, year: Int!): TaxAccount @connect(connector: "filing", operation: "file") @public
}
"#;

const FILING_TOML: &str = r#"name = "filing"
kind = "rest"
base_url = "${TAX_URL}"

[operations.file]
method = "POST"
path = "/v1/taxpayers/{tin}/returns"
body = { year = "{year}" }
select = "/account"
"#;

const RETURNS_ROUTE: &str = "/v1/taxpayers/{tin}/returns";
const MUTATION: &str = r#"mutation { fileReturn(tin: "123456789", year: 2025) { tin } }"#;

/// A gateway over Ada's registry and tax agency, with the agencies kept for call counts.
async fn gateway() -> (TestGateway, RunningAgency, RunningAgency) {
    let registry = ada_registry().await;
    let tax = tax_agency(Reply::json(200, ada_account())).await;
    let gateway = citizen_project(&registry.url(), &tax.url()).build().await;
    (gateway, registry, tax)
}

/// The media type without parameters.
fn media_type(answer: &Answer) -> &str {
    answer.content_type().split(';').next().unwrap_or_default()
}

/// `(status, media type, has a data key, first error code)`.
fn request_outcome(answer: &Answer) -> (u16, String, bool, Value) {
    (
        answer.status.as_u16(),
        media_type(answer).to_string(),
        answer.body.get("data").is_some(),
        answer.body["errors"][0]["extensions"]["code"].clone(),
    )
}

fn outcome_of(
    status: u16,
    media: &str,
    has_data: bool,
    code: Option<&str>,
) -> (u16, String, bool, Value) {
    (status, media.to_string(), has_data, json!(code))
}

#[tokio::test]
async fn accepting_graphql_response_json_gets_that_media_type() {
    let (gateway, _registry, _tax) = gateway().await;

    let answer = gateway
        .post_with(json!({"query": QUERY}), &[("accept", GRAPHQL_RESPONSE)])
        .await;

    assert_eq!(
        (request_outcome(&answer), answer.body),
        (
            outcome_of(200, GRAPHQL_RESPONSE, true, None),
            json!({"data": {"citizen": {"name": "Ada Lovelace"}}})
        )
    );
}

#[tokio::test]
async fn accepting_json_or_sending_no_accept_gets_application_json() {
    let (gateway, _registry, _tax) = gateway().await;
    let body = json!({"query": QUERY}).to_string();

    let with_json = gateway
        .post_with(json!({"query": QUERY}), &[("accept", JSON)])
        .await;
    let without_accept = gateway
        .raw(&format!(
            "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
        .await;

    assert_eq!(
        (
            request_outcome(&with_json),
            request_outcome(&without_accept)
        ),
        (
            outcome_of(200, JSON, true, None),
            outcome_of(200, JSON, true, None)
        )
    );
}

#[tokio::test]
async fn a_syntax_error_is_400_for_graphql_response_json_and_200_for_json_without_data() {
    let (gateway, _registry, tax) = gateway().await;
    let bad = json!({"query": "{ citizen(id: \"C0000001\") { name "});

    let new_type = gateway
        .post_with(bad.clone(), &[("accept", GRAPHQL_RESPONSE)])
        .await;
    let legacy = gateway.post_with(bad, &[("accept", JSON)]).await;

    assert_eq!(
        (
            request_outcome(&new_type),
            request_outcome(&legacy),
            tax.requests().len()
        ),
        (
            outcome_of(400, GRAPHQL_RESPONSE, false, Some("GRAPHQL_PARSE_FAILED")),
            outcome_of(200, JSON, false, Some("GRAPHQL_PARSE_FAILED")),
            0
        )
    );
}

#[tokio::test]
async fn a_validation_error_is_400_for_graphql_response_json_and_200_for_json_without_data() {
    let (gateway, registry, _tax) = gateway().await;
    let invalid = json!({"query": "{ citizen(id: \"C0000001\") { name shoeSize } }"});

    let new_type = gateway
        .post_with(invalid.clone(), &[("accept", GRAPHQL_RESPONSE)])
        .await;
    let legacy = gateway.post_with(invalid, &[("accept", JSON)]).await;

    assert_eq!(
        (
            request_outcome(&new_type),
            request_outcome(&legacy),
            registry.requests().len()
        ),
        (
            outcome_of(
                400,
                GRAPHQL_RESPONSE,
                false,
                Some("GRAPHQL_VALIDATION_FAILED")
            ),
            outcome_of(200, JSON, false, Some("GRAPHQL_VALIDATION_FAILED")),
            0
        )
    );
}

#[tokio::test]
async fn a_query_nested_ten_thousand_deep_is_refused_and_the_gateway_keeps_serving() {
    let (gateway, registry, _tax) = gateway().await;
    let deep = format!("{}{}", "{a".repeat(10_000), "}".repeat(10_000));

    let refused = gateway
        .post_with(json!({"query": deep}), &[("accept", GRAPHQL_RESPONSE)])
        .await;
    let after = gateway.post(QUERY).await;

    assert_eq!(
        (
            request_outcome(&refused),
            after.body["data"]["citizen"]["name"].clone(),
            registry.requests().len()
        ),
        (
            outcome_of(400, GRAPHQL_RESPONSE, false, Some("PARSER_RECURSION_LIMIT")),
            json!("Ada Lovelace"),
            1
        )
    );
}

#[tokio::test]
async fn circular_fragments_are_a_validation_error_that_reaches_no_backend() {
    let (gateway, registry, _tax) = gateway().await;
    let cycle = "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }";

    let answer = gateway
        .post_with(json!({"query": cycle}), &[("accept", GRAPHQL_RESPONSE)])
        .await;

    assert_eq!(
        (request_outcome(&answer), registry.requests().len()),
        (
            outcome_of(
                400,
                GRAPHQL_RESPONSE,
                false,
                Some("GRAPHQL_VALIDATION_FAILED")
            ),
            0
        )
    );
}

#[tokio::test]
async fn accepting_only_text_plain_is_406() {
    let (gateway, registry, _tax) = gateway().await;

    let answer = gateway
        .post_with(json!({"query": QUERY}), &[("accept", "text/plain")])
        .await;

    assert_eq!(
        (answer.status.as_u16(), registry.requests().len()),
        (406, 0)
    );
}

#[tokio::test]
async fn a_text_plain_body_is_415_and_reaches_no_backend() {
    let (gateway, registry, _tax) = gateway().await;

    // With the preflight header it passes the CSRF rule (edge.rs has the case without), and
    // is still not JSON.
    let answer = gateway
        .post_body(
            json!({"query": QUERY}).to_string(),
            &[
                ("content-type", "text/plain"),
                (crate::support::PREFLIGHT_HEADER, "1"),
            ],
        )
        .await;

    assert_eq!(
        (request_outcome(&answer), registry.requests().len()),
        (
            outcome_of(415, JSON, false, Some("UNSUPPORTED_MEDIA_TYPE")),
            0
        )
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400() {
    let (gateway, _registry, _tax) = gateway().await;

    let answer = gateway.post_body("query { citizen }", &[]).await;

    assert_eq!(
        request_outcome(&answer),
        outcome_of(400, JSON, false, Some("BAD_REQUEST"))
    );
}

#[tokio::test]
async fn a_json_body_without_query_is_400() {
    let (gateway, _registry, _tax) = gateway().await;

    let answer = gateway
        .post_with(json!({"variables": {"id": "C0000001"}}), &[])
        .await;

    assert_eq!(
        request_outcome(&answer),
        outcome_of(400, JSON, false, Some("BAD_REQUEST"))
    );
}

#[tokio::test]
async fn a_batch_is_400_batch_not_allowed_and_runs_nothing() {
    let (gateway, registry, _tax) = gateway().await;

    let answer = gateway
        .post_with(json!([{"query": QUERY}, {"query": QUERY}]), &[])
        .await;

    assert_eq!(
        (request_outcome(&answer), registry.requests().len()),
        (outcome_of(400, JSON, false, Some("BATCH_NOT_ALLOWED")), 0)
    );
}

#[tokio::test]
async fn get_runs_a_url_encoded_query() {
    let (gateway, _registry, _tax) = gateway().await;

    let answer = gateway.get_query(r#"{citizen(id:"C0000001"){name}}"#).await;

    assert_eq!(
        (answer.status.as_u16(), answer.body),
        (200, json!({"data": {"citizen": {"name": "Ada Lovelace"}}}))
    );
}

/// Ada's graph plus a `Mutation` that files a return with the tax agency.
async fn gateway_with_mutation() -> (TestGateway, RunningAgency) {
    let registry = ada_registry().await;
    let tax = FakeAgency::new()
        .route(ACCOUNT_ROUTE, Reply::json(200, ada_account()))
        .route(RETURNS_ROUTE, Reply::json(200, ada_account()))
        .run()
        .await;
    let gateway = citizen_project(&registry.url(), &tax.url())
        .schema("mutation.graphql", MUTATION_SDL)
        .connector("filing.toml", FILING_TOML)
        .build()
        .await;
    (gateway, tax)
}

#[tokio::test]
async fn get_with_a_mutation_is_405_allow_post_and_reaches_no_backend() {
    let (gateway, tax) = gateway_with_mutation().await;

    let answer = gateway.get_query(MUTATION).await;

    assert_eq!(
        (
            request_outcome(&answer),
            answer.header("allow").to_string(),
            tax.calls(RETURNS_ROUTE)
        ),
        (
            outcome_of(405, JSON, false, Some("METHOD_NOT_ALLOWED")),
            "POST".to_string(),
            0
        )
    );
}

#[tokio::test]
async fn post_with_a_mutation_reaches_the_backend() {
    let (gateway, tax) = gateway_with_mutation().await;

    let answer = gateway.post(MUTATION).await;

    assert_eq!(
        (answer.body, tax.calls(RETURNS_ROUTE)),
        (json!({"data": {"fileReturn": {"tin": "123456789"}}}), 1)
    );
}

/// A JSON body of about `size` bytes that would be a valid request if it were allowed.
fn padded_request(size: usize) -> String {
    let padding = "x".repeat(size);
    json!({"query": QUERY, "extensions": {"padding": padding}}).to_string()
}

async fn small_limit_gateway() -> (TestGateway, RunningAgency) {
    let registry = ada_registry().await;
    let gateway = citizen_project(&registry.url(), &crate::support::refused_url())
        .server("max_body_bytes = 1024")
        .build()
        .await;
    (gateway, registry)
}

#[tokio::test]
async fn a_body_under_max_body_bytes_is_served() {
    let (gateway, _registry) = small_limit_gateway().await;

    let answer = gateway.post_body(padded_request(800), &[]).await;

    assert_eq!(
        answer.body,
        json!({"data": {"citizen": {"name": "Ada Lovelace"}}})
    );
}

#[tokio::test]
async fn a_body_over_max_body_bytes_with_content_length_is_413() {
    let (gateway, registry) = small_limit_gateway().await;

    let answer = gateway.post_body(padded_request(2048), &[]).await;

    assert_eq!(
        (request_outcome(&answer), registry.requests().len()),
        (outcome_of(413, JSON, false, Some("PAYLOAD_TOO_LARGE")), 0)
    );
}

#[tokio::test]
async fn a_chunked_body_over_max_body_bytes_is_413() {
    let (gateway, registry) = small_limit_gateway().await;
    let body = padded_request(4096).into_bytes();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(512).map(|c| Ok(c.to_vec())).collect();

    let answer = gateway
        .post_body(
            reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
            &[],
        )
        .await;

    assert_eq!(
        (request_outcome(&answer), registry.requests().len()),
        (outcome_of(413, JSON, false, Some("PAYLOAD_TOO_LARGE")), 0)
    );
}

#[tokio::test]
async fn browsers_get_graphiql_on_get_graphql_and_on_the_root() {
    let (gateway, _registry, _tax) = gateway().await;

    let on_graphql = gateway
        .get("/graphql", &[("accept", "text/html,application/xhtml+xml")])
        .await;
    let on_root = gateway.get("/", &[]).await;

    let page = |answer: &Answer| {
        (
            answer.status.as_u16(),
            media_type(answer).to_string(),
            answer.text.to_lowercase().contains("graphiql"),
        )
    };
    assert_eq!(
        (page(&on_graphql), page(&on_root)),
        (
            (200, "text/html".to_string(), true),
            (200, "text/html".to_string(), true)
        )
    );
}

#[tokio::test]
async fn healthz_and_readyz_report_ok() {
    let (gateway, _registry, _tax) = gateway().await;

    let health = gateway.get("/healthz", &[]).await;
    let ready = gateway.get("/readyz", &[]).await;

    assert_eq!(
        (
            health.status.as_u16(),
            ready.status.as_u16(),
            ready.body["store"].clone()
        ),
        (200, 200, json!("ok"))
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let (gateway, _registry, _tax) = gateway().await;

    let answers = [
        gateway.post(QUERY).await,
        gateway.post_body("{", &[]).await,
        gateway
            .post_body("{}", &[("content-type", "text/plain")])
            .await,
        gateway.get_query("{ nope }").await,
        gateway.get("/healthz", &[]).await,
        gateway.get("/readyz", &[]).await,
        gateway.get("/", &[]).await,
        gateway.get("/no-such-page", &[]).await,
    ];

    let missing: Vec<(u16, &str)> = answers
        .iter()
        .filter(|a| a.header("x-request-id").is_empty())
        .map(|a| (a.status.as_u16(), a.text.as_str()))
        .collect();
    assert_eq!(missing, Vec::<(u16, &str)>::new());
}

#[tokio::test]
async fn a_client_supplied_request_id_is_echoed() {
    let (gateway, _registry, _tax) = gateway().await;

    let posted = gateway
        .post_with(json!({"query": QUERY}), &[("x-request-id", "req-7d1e-42")])
        .await;
    let health = gateway
        .get("/healthz", &[("x-request-id", "req-health-1")])
        .await;

    assert_eq!(
        (posted.header("x-request-id"), health.header("x-request-id")),
        ("req-7d1e-42", "req-health-1")
    );
}

#[tokio::test]
async fn shutdown_returns_ok_and_the_port_then_refuses_connections() {
    let (gateway, _registry, _tax) = gateway().await;
    let addr = gateway.addr();
    assert_eq!(gateway.post(QUERY).await.status, 200);

    let stopped = gateway.shutdown().await;
    let connect = tokio::net::TcpStream::connect(addr).await;

    assert_eq!(
        (
            stopped.map_err(|e| e.to_string()),
            connect.map(drop).map_err(|e| e.kind())
        ),
        (Ok(()), Err(std::io::ErrorKind::ConnectionRefused))
    );
}

#[tokio::test]
async fn a_request_in_flight_completes_when_shutdown_starts() {
    let registry = ada_registry().await;
    let tax = tax_agency(Reply::json(200, ada_account()).after(Duration::from_millis(300))).await;
    let gateway = citizen_project(&registry.url(), &tax.url()).build().await;
    let client = (*gateway).clone();
    let in_flight = tokio::spawn(async move {
        client
            .post(r#"{ citizen(id: "C0000001") { name taxAccount { balance } } }"#)
            .await
    });
    tax.wait_for_calls(ACCOUNT_ROUTE, 1).await;

    let stopped = gateway.shutdown().await;
    let answer = in_flight.await.expect("the request task finishes");

    assert_eq!(
        (
            stopped.map_err(|e| e.to_string()),
            answer.status.as_u16(),
            answer.body,
            registry.calls(PERSON_ROUTE)
        ),
        (
            Ok(()),
            200,
            json!({"data": {"citizen": {"name": "Ada Lovelace", "taxAccount": {"balance": "-120.50"}}}}),
            1
        )
    );
}

#[tokio::test]
async fn skipped_fields_are_left_out_not_answered_as_null() {
    let (gateway, _registry, tax) = gateway().await;
    let answer = gateway
        .post_with(
            json!({
                "query": r#"query($skip: Boolean!) {
                    citizen(id: "C0000001") { name @skip(if: $skip) id taxAccount @include(if: false) { tin } }
                }"#,
                "variables": {"skip": true},
            }),
            &[],
        )
        .await;
    assert_eq!(
        answer.body,
        json!({"data": {"citizen": {"id": "C0000001"}}}),
        "{}",
        answer.text
    );
    assert_eq!(
        tax.calls(ACCOUNT_ROUTE),
        0,
        "an excluded field's backend is not called"
    );
}
