//! Bearer tokens over HTTP: a valid token is the caller, any bad token is a 401 with one fixed
//! body and no backend call, and a bad `[[auth.issuers]]` entry is reported at its line.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{
    FakeAgency, PERSON_ROUTE, Reply, RunningAgency, TestGateway, TestGatewayBuilder, check,
};

const EC_KEY: &str = include_str!("../fixtures/keys/ec.key.pem");
const EC_PUB: &str = include_str!("../fixtures/keys/ec.pub.pem");
const RSA_PUB: &str = include_str!("../fixtures/keys/rsa.pub.pem");
const ISS: &str = "https://civicgraph.local/dev";

const SDL: &str = r#"type Query {
  me: Citizen @connect(connector: "registry", operation: "person", args: {id: "$caller.citizenId"}) @public
}

type Citizen {
  id: ID!
  name: String @map(from: "full_name")
}
"#;

const REGISTRY: &str = r#"name = "registry"
kind = "rest"
base_url = "${REGISTRY_URL}"
[operations.person]
path = "/v1/people/{id}"
select = "/person"
"#;

const INVALID: &str = r#"{"errors":[{"message":"The bearer token is not valid.","extensions":{"code":"UNAUTHENTICATED"}}]}"#;

fn gateway_toml(demo_headers: bool) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[storage]
url = "sqlite::memory:"

[auth]
demo_headers = {demo_headers}

[[auth.issuers]]
name = "local-dev"
issuer = "{ISS}"
audience = "civicgraph"
role = "claim"
keys = {{ pem = "keys/dev-es256.pub.pem", algorithm = "ES256" }}
leeway_s = 30
"#
    )
}

async fn registry() -> RunningAgency {
    FakeAgency::new()
        .route(
            PERSON_ROUTE,
            Reply::json(
                200,
                json!({"person": {"id": "C0000001", "full_name": "Ada Lovelace"}}),
            ),
        )
        .run()
        .await
}

fn project(registry: &RunningAgency, gateway_toml: &str) -> TestGatewayBuilder {
    TestGateway::builder()
        .gateway_toml(gateway_toml)
        .file("keys/dev-es256.pub.pem", EC_PUB)
        .schema("citizen.graphql", SDL)
        .connector("registry.toml", REGISTRY)
        .var("REGISTRY_URL", &registry.url())
}

fn claims() -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({"iss": ISS, "aud": "civicgraph", "sub": "C0000001", "exp": now + 300, "role": "citizen"})
}

fn token(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    let key = EncodingKey::from_ec_pem(EC_KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

#[tokio::test]
async fn a_citizen_token_reaches_me_and_wins_over_demo_headers() {
    let registry = registry().await;
    // Demo headers on: the token still wins over them.
    let gateway = project(&registry, &gateway_toml(true)).build().await;
    let bearer = format!("Bearer {}", token(&claims()));
    let me = gateway
        .post_with(
            json!({"query": "{ me { id name } }"}),
            &[("authorization", &bearer), ("x-demo-citizen", "C0000002")],
        )
        .await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(
        me.body,
        json!({"data": {"me": {"id": "C0000001", "name": "Ada Lovelace"}}})
    );
    assert_eq!(registry.requests()[0].path, "/v1/people/C0000001");
}

#[tokio::test]
async fn bad_tokens_are_401_with_one_body_and_no_backend_call() {
    let registry = registry().await;
    let gateway = project(&registry, &gateway_toml(true)).build().await;
    let mut expired = claims();
    expired["exp"] = json!(jsonwebtoken::get_current_timestamp() - 61);
    let mut other_api = claims();
    other_api["aud"] = json!("payroll");
    let good = token(&claims());
    let tampered = format!("{}x", &good[..good.len() - 1]);
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(RSA_PUB.as_bytes()),
    )
    .unwrap();
    let cases = [
        format!("Bearer {}", token(&expired)),
        format!("Bearer {}", token(&other_api)),
        format!("Bearer {tampered}"),
        format!("Bearer {hs256}"),
        "Bearer not-a-jwt".to_string(),
        "Bearer ".to_string(),
        format!("Basic {good}"),
        "Basic dXNlcjpwYXNz".to_string(),
    ];
    for authorization in &cases {
        // The demo header would make the caller Ada: a bad token must not fall back to it.
        let answer = gateway
            .post_with(
                json!({"query": "{ me { id } }"}),
                &[
                    ("authorization", authorization),
                    ("x-demo-citizen", "C0000001"),
                ],
            )
            .await;
        assert_eq!(answer.status, 401, "{authorization}");
        assert_eq!(answer.text, INVALID, "{authorization}");
        assert_eq!(
            answer.header("www-authenticate"),
            r#"Bearer error="invalid_token""#
        );
    }
    assert_eq!(
        registry.requests().len(),
        0,
        "no backend call for a bad token"
    );
}

#[tokio::test]
async fn without_issuers_every_bearer_token_is_refused() {
    let registry = registry().await;
    let gateway = project(
        &registry,
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\nurl = \"sqlite::memory:\"\n",
    )
    .build()
    .await;
    let bearer = format!("Bearer {}", token(&claims()));
    let answer = gateway
        .post_with(
            json!({"query": "{ me { id } }"}),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.text, INVALID);
    // No token at all stays anonymous.
    let anonymous = gateway.post("{ me { id } }").await;
    assert_eq!(anonymous.status, 200);
    assert_eq!(
        anonymous.body["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    assert_eq!(registry.requests().len(), 0);
}

#[tokio::test]
async fn a_bad_issuer_entry_is_reported_at_its_line() {
    let registry = registry().await;
    let toml = gateway_toml(false)
        .replace("keys/dev-es256.pub.pem", "keys/missing.pem")
        .replace("leeway_s = 30", "leeway_s = 3600");
    let project = project(&registry, &toml).write();
    let Err(errors) = check(&project) else {
        panic!("the issuer is refused");
    };
    let errors = errors.to_string();
    assert!(errors.contains("civicgraph.toml:15:8:"), "{errors}");
    assert!(errors.contains("cannot read"), "{errors}");
    assert!(errors.contains("civicgraph.toml:16:12:"), "{errors}");
    assert!(errors.contains("leeway_s is at most 30"), "{errors}");
}
