//! The floor of `BAD_INPUTS.md` (the team's table of bad inputs and faults) in one place: every
//! row that applies, as data, run by one loop against one gateway.
//!
//! A [`Row`] is one struct literal: its number and title from the table, the request (or a
//! custom step, for rows that need more than one request), the HTTP status and
//! `extensions.code` expected, and whether backends may be called. Every row also checks that
//! the gateway's store did not change (consents, audit records, identity links, the outbox,
//! inbound webhooks, offers) — a rejection changes nothing.
//!
//! Rows that need a process killed, minutes of wall time or a world of their own (a PostgreSQL
//! outbox, Redis, consent races) are listed in [`ELSEWHERE`] with the test that covers each;
//! a test here fails when one of those tests is renamed or removed, so the list stays true.
//!
//! The gateway here runs the production profile (`[server] profile = "production"`):
//! introspection, field suggestions and GraphiQL are off.

use std::collections::BTreeMap;
use std::path::Path;

use futures::future::BoxFuture;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{
    ACCOUNT_ROUTE, Answer, FakeAgency, PERSON_ROUTE, Reply, RunningAgency, TestGateway, ada,
    ada_account, refused_url,
};

const EC_KEY: &str = include_str!("../fixtures/keys/ec.key.pem");
const EC_PUB: &str = include_str!("../fixtures/keys/ec.pub.pem");
const RSA_PUB: &str = include_str!("../fixtures/keys/rsa.pub.pem");
const ATTACKER_KEY: &str = include_str!("../fixtures/keys/attacker-ec.key.pem");

/// The issuer whose key is a PEM file in the project.
const ISS: &str = "https://civicgraph.local/dev";
/// The issuer whose keys come from a JWKS endpoint (a fake identity provider).
const IDP: &str = "https://idp.example";

/// The largest body the gateway reads in this world.
const MAX_BODY_BYTES: usize = 65_536;

const SDL: &str = r#"scalar Money

type Query {
  me: Citizen @connect(connector: "registry", operation: "person", args: {id: "$caller.citizenId"}) @public
  citizen(id: ID!): Citizen @connect(connector: "registry", operation: "person") @public
  hung(tin: String!): TaxAccount @connect(connector: "hung", operation: "account") @public
  gone(tin: String!): TaxAccount @connect(connector: "gone", operation: "account") @public
}

type Mutation {
  fileReturn(tin: String!, year: Int!): TaxAccount @connect(connector: "filing", operation: "file") @public
  fileLate(tin: String!, year: Int!): TaxAccount @connect(connector: "hung", operation: "file") @public
}

type Citizen {
  id: ID!
  name: String @map(from: "full_name")
  taxAccount: TaxAccount @connect(connector: "tax", operation: "account", args: {tin: "$parent.tin"}) @public
}

type TaxAccount {
  tin: String!
  balance: Money!
  filingStatus: FilingStatus
}

enum FilingStatus {
  FILED
  OVERDUE
}
"#;

/// A REST connector `name` at `${url_var}` with a read (`account`) and a write (`file`).
fn connector(name: &str, url_var: &str, timeout_ms: u64) -> String {
    format!(
        r#"name = "{name}"
kind = "rest"
base_url = "${{{url_var}}}"
timeout_ms = {timeout_ms}

[operations.account]
path = "/v1/taxpayers/{{tin}}/account"
select = "/account"

[operations.file]
method = "POST"
path = "/v1/taxpayers/{{tin}}/returns"
body = {{ year = "{{year}}" }}
select = "/account"
"#
    )
}

const REGISTRY_TOML: &str = r#"name = "registry"
kind = "rest"
base_url = "${REGISTRY_URL}"
[operations.person]
path = "/v1/people/{id}"
select = "/person"
"#;

const RETURNS_ROUTE: &str = "/v1/taxpayers/{tin}/returns";
const JWKS_ROUTE: &str = "/jwks.json";

/// The store's tables a rejected request must leave as they were.
const WATCHED_TABLES: [&str; 9] = [
    "consents",
    "consent_events",
    "audit_records",
    "identity_links",
    "life_events",
    "event_deliveries",
    "event_subscribers",
    "inbound_webhooks",
    "service_offers",
];

/// One gateway with recording backends, a PEM issuer and a JWKS issuer, and a SQLite file
/// store the test can count.
struct World {
    gateway: TestGateway,
    registry: RunningAgency,
    tax: RunningAgency,
    hung: RunningAgency,
    idp: RunningAgency,
    attacker: RunningAgency,
    store: sqlx::SqlitePool,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a directory for the store");
        let registry = FakeAgency::new()
            .route(PERSON_ROUTE, Reply::json(200, ada()))
            .run()
            .await;
        let tax = FakeAgency::new()
            .route(ACCOUNT_ROUTE, Reply::json(200, ada_account()))
            .route(RETURNS_ROUTE, Reply::json(200, ada_account()))
            .run()
            .await;
        let hung = FakeAgency::new()
            .route(ACCOUNT_ROUTE, Reply::hang())
            .route(RETURNS_ROUTE, Reply::hang())
            .run()
            .await;
        let mut jwk = Jwk::from_encoding_key(
            &EncodingKey::from_ec_pem(EC_KEY.as_bytes()).expect("the EC fixture key"),
            Algorithm::ES256,
        )
        .expect("a JWK of the EC key");
        jwk.common.key_id = Some("idp-1".into());
        let idp = FakeAgency::new()
            .route(
                JWKS_ROUTE,
                Reply::json(200, json!(JwkSet { keys: vec![jwk] })),
            )
            .run()
            .await;
        let attacker = FakeAgency::new()
            .route(JWKS_ROUTE, Reply::json(200, json!({"keys": []})))
            .run()
            .await;
        let db = dir.path().join("gateway.db");
        let gateway_toml = format!(
            r#"[server]
listen = "127.0.0.1:0"
max_body_bytes = {MAX_BODY_BYTES}
profile = "production"

[storage]
url = "sqlite://{db}?mode=rwc"

[auth]
demo_headers = true

[[auth.issuers]]
name = "local-dev"
issuer = "{ISS}"
audience = "civicgraph"
role = "claim"
keys = {{ pem = "keys/dev-es256.pub.pem", algorithm = "ES256" }}
leeway_s = 30

[[auth.issuers]]
name = "idp"
issuer = "{IDP}"
audience = "civicgraph"
role = "claim"
keys = {{ jwks_url = "{idp}{JWKS_ROUTE}" }}
"#,
            db = db.display(),
            idp = idp.url(),
        );
        let gateway = TestGateway::builder()
            .gateway_toml(&gateway_toml)
            .file("keys/dev-es256.pub.pem", EC_PUB)
            .schema("citizen.graphql", SDL)
            .connector("registry.toml", REGISTRY_TOML)
            .connector("tax.toml", &connector("tax", "TAX_URL", 2000))
            .connector("filing.toml", &connector("filing", "TAX_URL", 2000))
            .connector("hung.toml", &connector("hung", "HUNG_URL", 300))
            .connector("gone.toml", &connector("gone", "GONE_URL", 2000))
            .var("REGISTRY_URL", &registry.url())
            .var("TAX_URL", &tax.url())
            .var("HUNG_URL", &hung.url())
            .var("GONE_URL", &refused_url())
            .build()
            .await;
        let store = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
            .await
            .expect("open the gateway's store read-only");
        Self {
            gateway,
            registry,
            tax,
            hung,
            idp,
            attacker,
            store,
            _dir: dir,
        }
    }

    /// Requests the agencies got (the identity provider and the attacker are counted by the
    /// rows about them).
    fn backend_calls(&self) -> usize {
        self.registry.requests().len() + self.tax.requests().len() + self.hung.requests().len()
    }

    async fn store_counts(&self) -> BTreeMap<&'static str, i64> {
        let mut counts = BTreeMap::new();
        for table in WATCHED_TABLES {
            let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&self.store)
                .await
                .unwrap_or_else(|e| panic!("count {table}: {e}"));
            counts.insert(table, count);
        }
        counts
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A citizen's access-token claims from the PEM issuer.
fn claims() -> Value {
    json!({"iss": ISS, "aud": "civicgraph", "sub": "C0000001", "exp": now() + 300, "role": "citizen"})
}

fn claims_with(key: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[key] = value;
    claims
}

fn claims_without(key: &str) -> Value {
    let mut claims = claims();
    claims
        .as_object_mut()
        .expect("claims are an object")
        .remove(key);
    claims
}

fn at_header(alg: Algorithm) -> Header {
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".into());
    header
}

fn sign(header: &Header, claims: &Value, pem: &str) -> String {
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).expect("an EC fixture key");
    jsonwebtoken::encode(header, claims, &key).expect("sign a test token")
}

/// A token the PEM issuer would accept.
fn es256(claims: &Value) -> String {
    sign(&at_header(Algorithm::ES256), claims, EC_KEY)
}

fn b64(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

/// A custom step: sends what the row needs and answers with the response its expectations are
/// checked against (after its own assertions, e.g. on the identity provider's fetches).
type Step = for<'a> fn(&'a World) -> BoxFuture<'a, Answer>;

/// What a row sends.
enum Send {
    /// One HTTP request to the gateway.
    Http {
        method: &'static str,
        path: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Body,
    },
    /// A custom step, for rows that need more than one request.
    Steps(Step),
}

/// A request body.
enum Body {
    None,
    /// `{"query": …}`.
    Query(String),
    /// Any JSON.
    Json(Value),
    /// Bytes as given (a declared `Content-Length`).
    Raw(Vec<u8>),
    /// Bytes sent chunked, with no `Content-Length`.
    Chunked(Vec<u8>),
}

/// May the row reach a backend?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backends {
    /// No backend call at all: the usual rule for a rejection.
    Untouched,
    /// The row is about a backend failing, so it is called (and fails).
    Called,
}

/// One row of `BAD_INPUTS.md`.
struct Row {
    number: u32,
    title: &'static str,
    send: Send,
    expect_status: u16,
    /// `extensions.code` of the first error.
    expect_code: &'static str,
    backends: Backends,
}

/// A POST of `{"query": query}` with extra headers.
fn post(query: &str, headers: Vec<(&'static str, String)>) -> Send {
    Send::Http {
        method: "POST",
        path: "/graphql",
        headers,
        body: Body::Query(query.to_string()),
    }
}

/// A POST of `{ me { id } }` with this bearer token (and the demo header naming Ada, which a
/// refused token must not fall back to).
fn with_token(token: &str) -> Send {
    post(
        "{ me { id } }",
        vec![bearer(token), ("x-demo-citizen", "C0000001".to_string())],
    )
}

/// A refused bearer token: 401, `UNAUTHENTICATED`, no backend call.
fn token_row(number: u32, title: &'static str, token: String) -> Row {
    Row {
        number,
        title,
        send: with_token(&token),
        expect_status: 401,
        expect_code: "UNAUTHENTICATED",
        backends: Backends::Untouched,
    }
}

/// The header that opens the CSRF gate for a GET.
const PREFLIGHT: &str = "x-civicgraph-preflight";

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

fn rows() -> Vec<Row> {
    let padding = "x".repeat(MAX_BODY_BYTES);
    let oversized = format!(r#"{{"query":"{{ __typename }}","extensions":{{"pad":"{padding}"}}}}"#);
    let deep = format!("{}{}", "{a".repeat(10_000), "}".repeat(10_000));
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt"})),
        b64(&claims())
    );
    let hs256_with_rsa_public_key = jsonwebtoken::encode(
        &at_header(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(RSA_PUB.as_bytes()),
    )
    .expect("an HS256 token");
    let mut id_token_header = Header::new(Algorithm::ES256);
    id_token_header.typ = Some("JWT".into());
    vec![
        // Request limits and GraphQL-over-HTTP (rows 1–27, those that pass today).
        Row {
            number: 1,
            title: "a body over the limit with Content-Length is 413",
            send: Send::Http {
                method: "POST",
                path: "/graphql",
                headers: vec![],
                body: Body::Raw(oversized.clone().into_bytes()),
            },
            expect_status: 413,
            expect_code: "PAYLOAD_TOO_LARGE",
            backends: Backends::Untouched,
        },
        Row {
            number: 2,
            title: "a chunked body growing past the limit is 413",
            send: Send::Http {
                method: "POST",
                path: "/graphql",
                headers: vec![],
                body: Body::Chunked(oversized.into_bytes()),
            },
            expect_status: 413,
            expect_code: "PAYLOAD_TOO_LARGE",
            backends: Backends::Untouched,
        },
        Row {
            number: 6,
            title: "GET with a mutation is 405 and not executed",
            send: Send::Http {
                method: "GET",
                path: "/graphql?query=mutation%20%7B%20fileReturn(tin%3A%20%22123456789%22%2C%20year%3A%202025)%20%7B%20tin%20%7D%20%7D",
                headers: vec![(PREFLIGHT, "1".to_string())],
                body: Body::None,
            },
            expect_status: 405,
            expect_code: "METHOD_NOT_ALLOWED",
            backends: Backends::Untouched,
        },
        Row {
            number: 4,
            title: "a text/plain POST with a valid JSON query and a cookie is a CSRF rejection",
            send: Send::Http {
                method: "POST",
                path: "/graphql",
                headers: vec![
                    ("content-type", "text/plain".to_string()),
                    ("cookie", "session=abc".to_string()),
                ],
                body: Body::Query("{ me { id } }".to_string()),
            },
            expect_status: 400,
            expect_code: "CSRF_REJECTED",
            backends: Backends::Untouched,
        },
        Row {
            number: 5,
            title: "a multipart/form-data POST is 415",
            send: Send::Http {
                method: "POST",
                path: "/graphql",
                headers: vec![(
                    "content-type",
                    "multipart/form-data; boundary=x".to_string(),
                )],
                body: Body::Raw(
                    b"--x\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{}\r\n--x--\r\n"
                        .to_vec(),
                ),
            },
            expect_status: 415,
            expect_code: "UNSUPPORTED_MEDIA_TYPE",
            backends: Backends::Untouched,
        },
        Row {
            number: 5,
            title: "an x-www-form-urlencoded POST is 415",
            send: Send::Http {
                method: "POST",
                path: "/graphql",
                headers: vec![(
                    "content-type",
                    "application/x-www-form-urlencoded".to_string(),
                )],
                body: Body::Raw(b"query=%7B%20me%20%7B%20id%20%7D%20%7D".to_vec()),
            },
            expect_status: 415,
            expect_code: "UNSUPPORTED_MEDIA_TYPE",
            backends: Backends::Untouched,
        },
        Row {
            number: 8,
            title: "a GET with no Content-Type and no preflight header is a CSRF rejection",
            send: Send::Http {
                method: "GET",
                path: "/graphql?query=%7B%20me%20%7B%20id%20%7D%20%7D",
                headers: vec![("x-demo-citizen", "C0000001".to_string())],
                body: Body::None,
            },
            expect_status: 400,
            expect_code: "CSRF_REJECTED",
            backends: Backends::Untouched,
        },
        Row {
            number: 13,
            title: "20 000 tokens are refused before the document is built",
            send: post(
                &format!("{{ {} }}", "__typename ".repeat(20_000).replace("__typename ", "a ")),
                vec![("accept", GRAPHQL_RESPONSE.to_string())],
            ),
            expect_status: 400,
            expect_code: "TOO_MANY_TOKENS",
            backends: Backends::Untouched,
        },
        Row {
            number: 14,
            title: "hundreds of aliases of citizen(id:) are refused with no backend call",
            send: post(
                &format!(
                    "{{ {} }}",
                    (0..300)
                        .map(|i| format!(r#"c{i}: citizen(id: "C0000001") {{ id }}"#))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                vec![("accept", GRAPHQL_RESPONSE.to_string())],
            ),
            expect_status: 400,
            expect_code: "TOO_MANY_ALIASES",
            backends: Backends::Untouched,
        },
        Row {
            number: 18,
            title: "a selection 50 deep is refused",
            send: post(
                &format!("{{ me {}{} }}", "{ taxAccount ".repeat(49), "}".repeat(49)),
                vec![("accept", GRAPHQL_RESPONSE.to_string())],
            ),
            expect_status: 400,
            expect_code: "QUERY_TOO_DEEP",
            backends: Backends::Untouched,
        },
        Row {
            number: 21,
            title: "a misspelt field is refused without a suggestion",
            send: Send::Steps(misspelt_field),
            expect_status: 400,
            expect_code: "GRAPHQL_VALIDATION_FAILED",
            backends: Backends::Untouched,
        },
        Row {
            number: 23,
            title: "a variable list of 101 ids is refused before any fan-out",
            send: Send::Http {
                method: "POST",
                path: "/graphql",
                headers: vec![("accept", GRAPHQL_RESPONSE.to_string())],
                body: Body::Json(json!({
                    "query": "query($ids: [ID!]!) { __typename }",
                    "variables": {"ids": (0..101).map(|i| format!("C{i:07}")).collect::<Vec<_>>()},
                })),
            },
            expect_status: 400,
            expect_code: "LIST_TOO_LONG",
            backends: Backends::Untouched,
        },
        Row {
            number: 23,
            title: "a million ids are larger than the body limit here: 413 before parsing",
            send: Send::Http {
                method: "POST",
                path: "/graphql",
                headers: vec![],
                body: Body::Json(json!({
                    "query": "query($ids: [ID!]!) { __typename }",
                    "variables": {"ids": (0..1_000_000).map(|i| i.to_string()).collect::<Vec<_>>()},
                })),
            },
            expect_status: 413,
            expect_code: "PAYLOAD_TOO_LARGE",
            backends: Backends::Untouched,
        },
        Row {
            number: 12,
            title: "a query nested 10 000 deep is refused before the parser recurses",
            send: post(&deep, vec![("accept", GRAPHQL_RESPONSE.to_string())]),
            expect_status: 400,
            expect_code: "PARSER_RECURSION_LIMIT",
            backends: Backends::Untouched,
        },
        Row {
            number: 16,
            title: "circular fragments are a validation error",
            send: post(
                "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
                vec![("accept", GRAPHQL_RESPONSE.to_string())],
            ),
            expect_status: 400,
            expect_code: "GRAPHQL_VALIDATION_FAILED",
            backends: Backends::Untouched,
        },
        Row {
            number: 19,
            title: "a citizen's batch of 1 000 operations is BATCH_NOT_ALLOWED",
            send: Send::Http {
                method: "POST",
                path: "/graphql",
                headers: vec![("x-demo-citizen", "C0000001".to_string())],
                body: Body::Json(Value::Array(
                    (0..1000)
                        .map(|_| json!({"query": "{ __typename }"}))
                        .collect(),
                )),
            },
            expect_status: 400,
            expect_code: "BATCH_NOT_ALLOWED",
            backends: Backends::Untouched,
        },
        Row {
            number: 20,
            title: "introspection with a citizen token is refused",
            send: post(
                "{ __schema { types { name } } }",
                vec![
                    bearer(&es256(&claims())),
                    ("accept", GRAPHQL_RESPONSE.to_string()),
                ],
            ),
            expect_status: 400,
            expect_code: "INTROSPECTION_DISABLED",
            backends: Backends::Untouched,
        },
        Row {
            number: 20,
            title: "__type(name:) with a citizen token is refused",
            send: post(
                r#"{ __type(name: "Citizen") { name fields { name } } }"#,
                vec![
                    bearer(&es256(&claims())),
                    ("accept", GRAPHQL_RESPONSE.to_string()),
                ],
            ),
            expect_status: 400,
            expect_code: "INTROSPECTION_DISABLED",
            backends: Backends::Untouched,
        },
        // Tokens.
        token_row(28, "alg none with an empty signature", alg_none),
        token_row(
            29,
            "HS256 signed with the RSA public key as the HMAC secret",
            hs256_with_rsa_public_key,
        ),
        Row {
            number: 30,
            title: "tokens with unknown kids are 401 and fetch the JWKS at most once",
            send: Send::Steps(unknown_kids),
            expect_status: 401,
            expect_code: "UNAUTHENTICATED",
            backends: Backends::Untouched,
        },
        Row {
            number: 32,
            title: "jku, x5u and an embedded jwk are never followed or trusted",
            send: Send::Steps(attacker_key_urls),
            expect_status: 401,
            expect_code: "UNAUTHENTICATED",
            backends: Backends::Untouched,
        },
        token_row(
            33,
            "exp 61 s in the past",
            es256(&claims_with("exp", json!(now() - 61))),
        ),
        token_row(
            33,
            "nbf 61 s in the future",
            es256(&claims_with("nbf", json!(now() + 61))),
        ),
        token_row(
            33,
            "exp that is not a number",
            es256(&claims_with("exp", json!("never"))),
        ),
        token_row(34, "no exp", es256(&claims_without("exp"))),
        token_row(34, "no aud", es256(&claims_without("aud"))),
        token_row(34, "no iss", es256(&claims_without("iss"))),
        token_row(34, "no sub", es256(&claims_without("sub"))),
        token_row(
            35,
            "a token for another API",
            es256(&claims_with("aud", json!("payroll"))),
        ),
        token_row(
            35,
            "an ID token (typ JWT, not at+jwt)",
            sign(&id_token_header, &claims(), EC_KEY),
        ),
        token_row(
            38,
            "a certificate-bound token without its certificate",
            es256(&claims_with(
                "cnf",
                json!({"x5t#S256": "bm90LXRoZS1wcmVzZW50ZWQtY2VydGlmaWNhdGU"}),
            )),
        ),
        // Backends.
        Row {
            number: 47,
            title: "a hanging backend fails at its timeout with a field error",
            send: post(r#"{ hung(tin: "123456789") { tin } }"#, vec![]),
            expect_status: 200,
            expect_code: "BACKEND_TIMEOUT",
            backends: Backends::Called,
        },
        Row {
            number: 52,
            title: "a mutation that times out is OUTCOME_UNKNOWN and not retried",
            send: Send::Steps(unknown_outcome),
            expect_status: 200,
            expect_code: "OUTCOME_UNKNOWN",
            backends: Backends::Called,
        },
        Row {
            number: 54,
            title: "a refused connection fails fast as BACKEND_UNAVAILABLE",
            send: post(r#"{ gone(tin: "123456789") { tin } }"#, vec![]),
            expect_status: 200,
            expect_code: "BACKEND_UNAVAILABLE",
            backends: Backends::Untouched,
        },
    ]
}

/// Row 21: `{ citizn { name } }` is refused, and the message suggests no field name (which
/// would help map a schema with introspection off).
fn misspelt_field(world: &World) -> BoxFuture<'_, Answer> {
    Box::pin(async move {
        let answer = send(
            world,
            &post(
                "{ citizn { name } }",
                vec![("accept", GRAPHQL_RESPONSE.to_string())],
            ),
        )
        .await;
        assert!(
            !answer.text.to_lowercase().contains("did you mean"),
            "a suggestion: {}",
            answer.text
        );
        answer
    })
}

/// Row 30: twenty tokens from the JWKS issuer, each with a random unknown `kid`.
fn unknown_kids(world: &World) -> BoxFuture<'_, Answer> {
    Box::pin(async move {
        let before = world.idp.calls(JWKS_ROUTE);
        let mut last = None;
        for i in 0..20 {
            let mut header = at_header(Algorithm::ES256);
            header.kid = Some(format!("unknown-{i}-{}", now()));
            let token = sign(&header, &claims_with("iss", json!(IDP)), EC_KEY);
            let answer = send(world, &with_token(&token)).await;
            assert_eq!(answer.status, 401, "kid {i}: {}", answer.text);
            last = Some(answer);
        }
        let fetches = world.idp.calls(JWKS_ROUTE) - before;
        assert!(fetches <= 1, "{fetches} JWKS fetches for 20 unknown kids");
        last.expect("twenty answers")
    })
}

/// Row 32: a token signed by the attacker's key that points at it (`jku`, `x5u`) and embeds it.
fn attacker_key_urls(world: &World) -> BoxFuture<'_, Answer> {
    Box::pin(async move {
        let mut header = at_header(Algorithm::ES256);
        let url = format!("{}{JWKS_ROUTE}", world.attacker.url());
        header.jku = Some(url.clone());
        header.x5u = Some(url);
        let attacker_key =
            EncodingKey::from_ec_pem(ATTACKER_KEY.as_bytes()).expect("the attacker's key");
        header.jwk = Some(
            Jwk::from_encoding_key(&attacker_key, Algorithm::ES256).expect("the attacker's JWK"),
        );
        let answer = send(world, &with_token(&sign(&header, &claims(), ATTACKER_KEY))).await;
        assert_eq!(
            world.attacker.requests().len(),
            0,
            "the attacker was fetched"
        );
        answer
    })
}

/// Row 52: a filing that times out; the backend got it exactly once and the caller is told
/// the outcome is unknown.
fn unknown_outcome(world: &World) -> BoxFuture<'_, Answer> {
    Box::pin(async move {
        let before = world.hung.calls(RETURNS_ROUTE);
        let answer = send(
            world,
            &post(
                r#"mutation { fileLate(tin: "123456789", year: 2025) { tin } }"#,
                vec![],
            ),
        )
        .await;
        assert_eq!(
            world.hung.calls(RETURNS_ROUTE) - before,
            1,
            "a write is never retried"
        );
        answer
    })
}

/// Sends a row's request as described.
async fn send(world: &World, request: &Send) -> Answer {
    let Send::Http {
        method,
        path,
        headers,
        body,
    } = request
    else {
        unreachable!("custom steps send their own requests");
    };
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    match (*method, body) {
        ("GET", Body::None) => world.gateway.get(path, &headers).await,
        ("POST", Body::Query(query)) => {
            world
                .gateway
                .post_with(json!({ "query": query }), &headers)
                .await
        }
        ("POST", Body::Json(value)) => world.gateway.post_with(value.clone(), &headers).await,
        ("POST", Body::Raw(bytes)) => world.gateway.post_body(bytes.clone(), &headers).await,
        ("POST", Body::Chunked(bytes)) => {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                bytes.chunks(512).map(|c| Ok(c.to_vec())).collect();
            world
                .gateway
                .post_body(
                    reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
                    &headers,
                )
                .await
        }
        (method, _) => panic!("rows send GET without a body or POST with one, not {method}"),
    }
}

#[tokio::test]
async fn every_bad_input_row_is_refused_as_the_table_says_and_changes_nothing() {
    let world = World::start().await;
    let mut failures = Vec::new();
    for row in rows() {
        let calls_before = world.backend_calls();
        let store_before = world.store_counts().await;
        let answer = match &row.send {
            Send::Steps(step) => step(&world).await,
            http => send(&world, http).await,
        };
        let code = answer.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("(none)")
            .to_string();
        let calls = world.backend_calls() - calls_before;
        let store_after = world.store_counts().await;
        let mut wrong = Vec::new();
        if answer.status.as_u16() != row.expect_status {
            wrong.push(format!(
                "status {} (want {})",
                answer.status, row.expect_status
            ));
        }
        if code != row.expect_code {
            wrong.push(format!("code {code} (want {})", row.expect_code));
        }
        if row.backends == Backends::Untouched && calls != 0 {
            wrong.push(format!("{calls} backend calls (want none)"));
        }
        if store_after != store_before {
            wrong.push(format!(
                "the store changed: {store_before:?} → {store_after:?}"
            ));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "row {} ({}): {}\n  body: {:.300}",
                row.number,
                row.title,
                wrong.join("; "),
                answer.text
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Rows covered by tests of their own
// ---------------------------------------------------------------------------------------------

/// A row covered by another test, and why it is not a row of [`rows`].
struct Elsewhere {
    number: u32,
    title: &'static str,
    /// `file::test_name`, the file relative to the repository root.
    test: &'static str,
    why: &'static str,
}

/// Rows whose scenario needs its own world.
const ELSEWHERE: &[Elsewhere] = &[
    Elsewhere {
        number: 9,
        title: "slowloris: headers at 1 byte/s closed at the header-read timeout",
        test: "tests/integration/edge.rs::row_9_a_slowloris_client_is_disconnected_at_the_header_read_timeout_while_others_are_served",
        why: "needs its own short timeout and raw sockets",
    },
    Elsewhere {
        number: 11,
        title: "HTTP/2 CONTINUATION flood: GOAWAY and the connection closed",
        test: "tests/integration/edge.rs::row_11_an_http2_continuation_flood_gets_goaway_and_the_connection_closes",
        why: "raw HTTP/2 frames on a socket of its own",
    },
    Elsewhere {
        number: 11,
        title: "the locked h2 is patched (RUSTSEC-2024-0332)",
        test: "tests/integration/edge.rs::row_11_the_locked_h2_is_patched_against_the_continuation_flood",
        why: "reads Cargo.lock, not a request",
    },
    Elsewhere {
        number: 23,
        title: "a million ids with a body limit large enough to carry them: VARIABLES_TOO_LARGE",
        test: "tests/integration/limits.rs::row_23_a_million_ids_or_a_long_list_are_refused_before_any_fan_out",
        why: "needs a 16 MiB body limit",
    },
    Elsewhere {
        number: 25,
        title: "unknown fields in an input-object variable",
        test: "tests/integration/limits.rs::row_25_an_unknown_field_in_an_input_object_variable_is_refused",
        why: "needs an input type this world's schema does not have",
    },
    Elsewhere {
        number: 27,
        title: "50 aliases of an expensive list field with identical args: QUERY_TOO_COMPLEX",
        test: "tests/integration/limits.rs::row_27_fifty_aliases_of_an_expensive_field_are_too_complex",
        why: "needs a list field with `first:`, which this world's schema does not have",
    },
    Elsewhere {
        number: 30,
        title: "≤ 1 JWKS fetch per issuer per 30 s (the window itself)",
        test: "src/auth/tokens_tests.rs::row30_unknown_kids_refresh_the_jwks_at_most_once_per_window",
        why: "the 30 s window needs paused time",
    },
    Elsewhere {
        number: 37,
        title: "a partner with tax:read asking for DMV fields",
        test: "tests/integration/trust.rs::the_policy_matrix_holds_on_sqlite_and_postgres",
        why: "needs the trust world: agencies, owners, consent categories",
    },
    Elsewhere {
        number: 37,
        title: "… and with on_denied = \"reject\", 403 with no backend call",
        test: "tests/integration/trust.rs::the_reject_option_refuses_the_whole_operation_without_calling_the_backend",
        why: "another gateway setting",
    },
    Elsewhere {
        number: 38,
        title: "a certificate-bound token with another client certificate",
        test: "tests/integration/trust.rs::a_certificate_bound_token_is_refused_with_another_certificate",
        why: "needs `client_cert_header` and a real certificate",
    },
    Elsewhere {
        number: 39,
        title: "JWKS down: last-known-good keys for 24 h",
        test: "src/auth/tokens_tests.rs::row39_jwks_down_keeps_last_known_good_keys_for_24_hours",
        why: "24 h needs paused time",
    },
    Elsewhere {
        number: 40,
        title: "consent revoked with a load in flight",
        test: "tests/integration/trust.rs::a_revocation_during_a_backend_load_withholds_what_it_loaded",
        why: "a race staged with a held backend",
    },
    Elsewhere {
        number: 40,
        title: "… the in-flight load is not cached",
        test: "src/shield/tests.rs::a_load_that_started_before_a_consent_withdrawal_is_not_cached",
        why: "the shield's cache, driven directly",
    },
    Elsewhere {
        number: 42,
        title: "another purpose is a cache miss",
        test: "src/shield/tests.rs::a_cached_answer_is_reused_only_within_its_scope_and_ttl",
        why: "the cache scope includes the purpose",
    },
    Elsewhere {
        number: 43,
        title: "Redis garbage is a miss and deleted",
        test: "src/cache_tier.rs::garbage_entries_read_as_garbage_and_are_deleted",
        why: "needs Redis (CIVICGRAPH_TEST_REDIS_URL)",
    },
    Elsewhere {
        number: 43,
        title: "Redis down is a miss within the timeout",
        test: "src/cache_tier.rs::redis_down_reads_as_unavailable_within_the_timeout",
        why: "needs Redis",
    },
    Elsewhere {
        number: 45,
        title: "audit store unavailable: personal data fails closed, public data flows",
        test: "tests/integration/trust.rs::with_the_audit_store_locked_personal_data_fails_closed_and_public_data_flows",
        why: "locks the audit store mid-run",
    },
    Elsewhere {
        number: 48,
        title: "a full bulkhead sheds with 503 and Retry-After",
        test: "tests/integration/shield.rs::a_full_bulkhead_sheds_with_503_and_retry_after",
        why: "needs concurrent load on a slow backend",
    },
    Elsewhere {
        number: 49,
        title: "the breaker opens and fails fast",
        test: "src/shield/tests.rs::an_open_circuit_fails_fast_or_serves_stale",
        why: "breaker periods need paused time",
    },
    Elsewhere {
        number: 50,
        title: "1 000 identical concurrent misses make one call",
        test: "src/shield/tests.rs::a_thousand_identical_concurrent_misses_make_one_backend_call",
        why: "a thousand concurrent loads",
    },
    Elsewhere {
        number: 51,
        title: "a 503 storm is retried within the budget",
        test: "src/shield/tests.rs::a_503_storm_is_retried_within_the_budget",
        why: "budget arithmetic over many calls",
    },
    Elsewhere {
        number: 55,
        title: "kill -9 after commit, before publish",
        test: "tests/integration/events_crash.rs::events_committed_before_a_kill_and_never_posted_are_delivered_after_restart",
        why: "kills a child process",
    },
    Elsewhere {
        number: 56,
        title: "kill -9 after the webhook POST: same webhook-id",
        test: "tests/integration/events_crash.rs::events_in_flight_at_a_kill_are_sent_again_after_restart_with_the_same_ids_in_order",
        why: "kills a child process",
    },
    Elsewhere {
        number: 57,
        title: "two relay workers and lease expiry",
        test: "tests/integration/events_scale.rs::a_killed_instances_deliveries_are_taken_over_after_their_lease_with_the_same_ids",
        why: "two instances on PostgreSQL",
    },
    Elsewhere {
        number: 59,
        title: "endpoints on loopback or private addresses are refused",
        test: "tests/integration/events.rs::the_ssrf_guard_refuses_loopback_endpoints_unless_allowed",
        why: "needs the events world",
    },
    Elsewhere {
        number: 60,
        title: "a poison event is dead-lettered; others flow",
        test: "tests/integration/events.rs::a_dead_letter_is_listed_and_replayed_with_its_id_and_410_disables_the_endpoint",
        why: "a shortened retry schedule",
    },
    Elsewhere {
        number: 61,
        title: "life-event payloads are thin",
        test: "tests/integration/events.rs::a_backend_change_reaches_a_subscriber_as_a_signed_thin_webhook",
        why: "needs a change feed and a receiver",
    },
    Elsewhere {
        number: 62,
        title: "an inbound callback replayed or badly signed is 400",
        test: "tests/integration/events.rs::inbound_webhooks_are_verified_deduplicated_and_replays_refused",
        why: "needs an inbound change source",
    },
];

#[test]
fn every_row_covered_elsewhere_names_a_test_that_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    for row in ELSEWHERE {
        let (file, test) = row.test.split_once("::").expect("file::test");
        let source = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|e| panic!("row {}: read {file}: {e}", row.number));
        if !source.contains(&format!("fn {test}(")) {
            missing.push(format!(
                "row {} ({}; {}): no `fn {test}` in {file}",
                row.number, row.title, row.why
            ));
        }
    }
    assert!(missing.is_empty(), "\n{}", missing.join("\n"));
}
