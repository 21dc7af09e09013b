//! The graphql_request fuzz harness, shared by the cargo-fuzz target and the integration test
//! that replays the committed seed corpus on every `cargo test`.
//!
//! Bytes become a request to the gateway's own axum router, in process: a small citizen graph
//! (registry + tax) whose backends refuse connections, the store in memory, demo headers on.
//! The first byte picks the request's shape, the rest fills it:
//!
//! | byte % 6 | request                                                                  |
//! |----------|--------------------------------------------------------------------------|
//! | 0        | `POST /graphql`, the rest as the JSON body                               |
//! | 1        | `POST /graphql`, `{"query": rest}`                                       |
//! | 2        | `GET /graphql?query=rest` (percent-encoded)                              |
//! | 3        | as 1, as the citizen `C0000001` (demo header)                            |
//! | 4        | a fixed query with `Authorization: Bearer rest`                          |
//! | 5        | `{"query": before the first NUL, "variables": after it (raw JSON)}`      |
//!
//! Whatever arrives, the gateway answers: never a 500, always a JSON body, and every error
//! carries an `extensions.code`.

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const SCHEMA: &str = r#"scalar Money

type Query {
  citizen(id: ID!): Citizen @connect(connector: "registry", operation: "person") @public
  me: Citizen @connect(connector: "registry", operation: "person", args: {id: "$caller.citizenId"}) @public
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

/// The gateway's router and the runtime it runs on, loaded once per process.
struct Target {
    runtime: tokio::runtime::Runtime,
    router: Router,
    _project: tempfile::TempDir,
}

fn write(dir: &std::path::Path, path: &str, text: &str) {
    let path = dir.join(path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create the project's directories");
    }
    std::fs::write(&path, text).expect("write a project file");
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        // Nothing listens on port 9 of the loopback (discard): every backend call is refused
        // at once, so a query that reaches the backends costs no waiting.
        let backend = "http://127.0.0.1:9";
        let project = tempfile::tempdir().expect("a temporary project directory");
        let dir = project.path();
        write(
            dir,
            "civicgraph.toml",
            "[server]\nlisten = \"127.0.0.1:0\"\n\
             # Parsed documents are not cached, so each input takes the same path every run.\n\
             document_cache_mb = 0\n\n\
             [storage]\nurl = \"sqlite::memory:\"\n\n[auth]\ndemo_headers = true\n",
        );
        write(dir, "schema/citizen.graphql", SCHEMA);
        write(
            dir,
            "connectors/registry.toml",
            &format!(
                "name = \"registry\"\nkind = \"rest\"\nbase_url = \"{backend}\"\ntimeout_ms = 500\n\n\
                 [operations.person]\npath = \"/v1/people/{{id}}\"\nselect = \"/person\"\n"
            ),
        );
        write(
            dir,
            "connectors/tax.toml",
            &format!(
                "name = \"tax\"\nkind = \"rest\"\nbase_url = \"{backend}\"\ntimeout_ms = 500\n\n\
                 [operations.account]\npath = \"/v1/taxpayers/{{tin}}/account\"\nselect = \"/account\"\n"
            ),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let vars = civicgraph::config::Vars::only(Default::default());
        let gateway = runtime
            .block_on(civicgraph::server::Gateway::load(
                &dir.join("civicgraph.toml"),
                &vars,
            ))
            .unwrap_or_else(|error| panic!("the fuzz project does not load:\n{error}"));
        Target {
            router: gateway.router(),
            runtime,
            _project: project,
        }
    })
}

fn json_string(bytes: &[u8]) -> String {
    Value::String(String::from_utf8_lossy(bytes).into_owned()).to_string()
}

/// A JSON POST to `/graphql`.
fn post() -> axum::http::request::Builder {
    Request::builder()
        .method(Method::POST)
        .uri("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/graphql-response+json")
}

/// The request `data` describes, or `None` when it cannot be one (an invalid header value).
fn request(data: &[u8]) -> Option<Request<Body>> {
    let (&selector, rest) = data.split_first()?;
    let request = match selector % 6 {
        0 => post().body(Body::from(rest.to_vec())),
        1 => post().body(Body::from(format!("{{\"query\":{}}}", json_string(rest)))),
        2 => {
            let query: String =
                percent_encoding::percent_encode(rest, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            Request::builder()
                .method(Method::GET)
                .uri(format!("/graphql?query={query}"))
                .header(header::ACCEPT, "application/json")
                .body(Body::empty())
        }
        3 => post()
            .header("x-demo-citizen", "C0000001")
            .body(Body::from(format!("{{\"query\":{}}}", json_string(rest)))),
        4 => {
            let mut value = b"Bearer ".to_vec();
            value.extend_from_slice(rest);
            let value = axum::http::HeaderValue::from_bytes(&value).ok()?;
            post().header(header::AUTHORIZATION, value).body(Body::from(
                r#"{"query":"{ citizen(id: \"C1\") { name } }"}"#,
            ))
        }
        _ => {
            let (query, variables) = match rest.iter().position(|&b| b == 0) {
                Some(nul) => (&rest[..nul], &rest[nul + 1..]),
                None => (rest, &b"{}"[..]),
            };
            let mut body =
                format!("{{\"query\":{},\"variables\":", json_string(query)).into_bytes();
            body.extend_from_slice(variables);
            body.push(b'}');
            post().body(Body::from(body))
        }
    };
    request.ok()
}

/// Sends the request `data` describes; panics on a 500, a body that is not JSON, or an error
/// without a code.
pub(crate) fn check(data: &[u8]) {
    let Some(request) = request(data) else {
        return;
    };
    let target = target();
    let (status, body) = target.runtime.block_on(async {
        let response = target
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("an in-memory body")
            .to_bytes();
        (status, body)
    });
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "a 500: {body:?}");
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(error) => panic!("HTTP {status}: the body is not JSON ({error}): {body:?}"),
    };
    for error in body
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        assert!(
            error
                .pointer("/extensions/code")
                .is_some_and(Value::is_string),
            "HTTP {status}: an error without extensions.code: {error}"
        );
    }
}
