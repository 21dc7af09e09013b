//! `[persisted]` over HTTP: the APQ round trip on POST and GET (as Apollo clients run it),
//! a hash that is not the text's, the safelist allowing and refusing, a partner agency's own
//! manifest, and a broken manifest reported by `civicgraph check` at its line.

use civicgraph::http::persisted::sha256_hex;
use serde_json::{Value, json};

use crate::quotas::{LimitsWorld, code, notice_reply};
use crate::support::TestGateway;

const NOTICE: &str = "{ notice { text } }";
const LOOKUP: &str = "{ citizen(id: \"C0000001\") { id } }";

fn apq(hash: &str) -> Value {
    json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
}

fn manifest(operations: Value) -> String {
    json!({"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations})
        .to_string()
}

#[tokio::test]
async fn apq_registers_on_post_then_runs_by_hash_on_post_and_get() {
    let world = LimitsWorld::start("", &[], notice_reply()).await;
    let hash = sha256_hex(NOTICE);

    // Hash alone, unknown: 200 for application/json (what Apollo clients retry on) …
    let unknown = world.post(None, json!({"extensions": apq(&hash)})).await;
    assert_eq!(unknown.status, 200, "{}", unknown.text);
    assert_eq!(code(&unknown), "PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(
        unknown.body["errors"][0]["message"],
        "PersistedQueryNotFound"
    );
    // … and 404 for the GraphQL-over-HTTP media type.
    let spec = world
        .gateway
        .post_with(
            json!({"extensions": apq(&hash)}),
            &[("accept", "application/graphql-response+json")],
        )
        .await;
    assert_eq!(spec.status, 404, "{}", spec.text);
    assert_eq!(code(&spec), "PERSISTED_QUERY_NOT_FOUND");
    assert_eq!(world.notice_calls(), 0);

    // Hash and text: verified, stored, run.
    let registered = world
        .post(None, json!({"query": NOTICE, "extensions": apq(&hash)}))
        .await;
    assert_eq!(registered.status, 200, "{}", registered.text);
    assert_eq!(
        registered.body["data"]["notice"]["text"],
        "Offices close at noon."
    );

    // The hash alone now runs, on POST and on GET (the main use of APQ).
    let by_hash = world.post(None, json!({"extensions": apq(&hash)})).await;
    assert_eq!(
        by_hash.body["data"]["notice"]["text"],
        "Offices close at noon."
    );
    let extensions = apq(&hash).to_string();
    let url = format!(
        "/graphql?extensions={}",
        percent_encoding::utf8_percent_encode(&extensions, percent_encoding::NON_ALPHANUMERIC)
    );
    let get = world
        .gateway
        .get(
            &url,
            &[
                ("accept", "application/json"),
                ("x-civicgraph-preflight", "1"),
            ],
        )
        .await;
    assert_eq!(get.status, 200, "{}", get.text);
    assert_eq!(get.body["data"]["notice"]["text"], "Offices close at noon.");
    assert_eq!(world.notice_calls(), 3);
}

#[tokio::test]
async fn a_hash_that_is_not_the_texts_is_refused_and_nothing_is_stored() {
    let world = LimitsWorld::start("", &[], notice_reply()).await;
    let wrong = sha256_hex("{ something { else } }");
    let refused = world
        .post(None, json!({"query": NOTICE, "extensions": apq(&wrong)}))
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(code(&refused), "PERSISTED_QUERY_HASH_MISMATCH");
    assert_eq!(world.notice_calls(), 0);
    let later = world.post(None, json!({"extensions": apq(&wrong)})).await;
    assert_eq!(code(&later), "PERSISTED_QUERY_NOT_FOUND", "{}", later.text);

    let malformed = world
        .post(
            None,
            json!({"query": NOTICE, "extensions": {"persistedQuery": {"version": 3, "sha256Hash": "x"}}}),
        )
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(code(&malformed), "BAD_REQUEST");
}

#[tokio::test]
async fn a_safelist_runs_listed_operations_and_refuses_others_without_backend_calls() {
    let shared = manifest(json!([
        {"id": "notice-v1", "name": "Notice", "type": "query", "body": NOTICE}
    ]));
    let partner = manifest(json!([
        {"id": "lookup-v1", "name": "Lookup", "type": "query", "body": LOOKUP}
    ]));
    let world = LimitsWorld::start(
        "[persisted]\nmode = \"safelist\"\nmanifests = [\"persisted/web.json\"]\n\n[persisted.clients]\n\"dmv-portal\" = [\"persisted/dmv.json\"]\n",
        &[
            ("persisted/web.json", &shared),
            ("persisted/dmv.json", &partner),
        ],
        notice_reply(),
    )
    .await;

    // Listed: by manifest id, by hash, or as the exact text.
    for body in [
        json!({"extensions": apq("notice-v1")}),
        json!({"extensions": apq(&sha256_hex(NOTICE))}),
        json!({"query": NOTICE}),
    ] {
        let answer = world.post(None, body.clone()).await;
        assert_eq!(answer.status, 200, "{body}: {}", answer.text);
        assert_eq!(
            answer.body["data"]["notice"]["text"],
            "Offices close at noon."
        );
    }
    assert_eq!(world.notice_calls(), 3);

    // Not listed: refused, including as an APQ registration.
    let other = "{ notice { text } other { text } }";
    for body in [
        json!({"query": other}),
        json!({"query": other, "extensions": apq(&sha256_hex(other))}),
        json!({"extensions": apq(&sha256_hex(other))}),
    ] {
        let answer = world.post(None, body.clone()).await;
        assert_eq!(answer.status, 403, "{body}: {}", answer.text);
        assert_eq!(code(&answer), "PERSISTED_QUERY_NOT_ALLOWED");
    }
    assert_eq!(
        world.notice_calls(),
        3,
        "no refused operation reached a backend"
    );

    // The partner with its own manifest runs its operations, and only those.
    let token = world.agency_token("dmv-portal", "dmv", &["citizen:lookup"]);
    let own = world
        .post(Some(&token), json!({"extensions": apq("lookup-v1")}))
        .await;
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(own.body["data"]["citizen"]["id"], "C0000001");
    let shared_op = world.post(Some(&token), json!({"query": NOTICE})).await;
    assert_eq!(shared_op.status, 403, "{}", shared_op.text);
    assert_eq!(code(&shared_op), "PERSISTED_QUERY_NOT_ALLOWED");
    // Other agency clients get the shared list.
    let stranger = world.agency_token("benefits-portal", "benefits", &["citizen:lookup"]);
    let theirs = world
        .post(Some(&stranger), json!({"extensions": apq("lookup-v1")}))
        .await;
    assert_eq!(
        code(&theirs),
        "PERSISTED_QUERY_NOT_ALLOWED",
        "{}",
        theirs.text
    );
    assert_eq!(world.notice_calls(), 3);
}

#[test]
fn a_broken_manifest_is_a_check_error_at_its_line() {
    let broken = "{\n  \"format\": \"apollo-persisted-query-manifest\",\n  \"version\": 1,\n  \"operations\": [\n    {\"id\": \"ok\", \"body\": \"{ notice { text } }\"},\n    {\"id\": \"broken\", \"name\": \"Broken\", \"body\": \"{ notice { \"}\n  ]\n}\n";
    let project = TestGateway::builder()
        .server("[persisted]\nmode = \"safelist\"\nmanifests = [\"persisted/web.json\", \"persisted/missing.json\"]")
        .schema("s.graphql", "type Query { hello: String @public }")
        .file("persisted/web.json", broken.as_bytes())
        .write();
    let problems = crate::support::check(&project).expect_err("the manifest is broken");
    let text = problems.to_string();
    assert!(
        text.contains("web.json:6:")
            && text.contains("operations[1] (`Broken`): `body` is not valid GraphQL"),
        "{text}"
    );
    assert!(
        text.contains("missing.json")
            && text.contains("cannot read this persisted-operation manifest"),
        "{text}"
    );
}

/// The first answer to operation `id` on a `graphql-transport-ws` socket (a `next` or an
/// `error` message).
async fn over_websocket(gateway: &crate::support::GatewayClient, query: &str) -> Value {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = format!("ws://{}/graphql", gateway.addr())
        .into_client_request()
        .expect("a WebSocket request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("a header value"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the upgrade succeeds");
    for message in [
        json!({"type": "connection_init", "payload": {}}),
        json!({"id": "1", "type": "subscribe", "payload": {"query": query}}),
    ] {
        socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send a message");
    }
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
            .await
            .expect("an answer in time")
            .expect("the socket is open")
            .expect("a readable frame");
        if let Message::Text(text) = frame {
            let message: Value = serde_json::from_str(&text).expect("JSON");
            if message["id"] == "1" {
                return message;
            }
        }
    }
}

#[tokio::test]
async fn the_safelist_holds_for_operations_over_websocket_too() {
    let shared = manifest(json!([{"id": "notice-v1", "body": NOTICE}]));
    let world = LimitsWorld::start(
        "[persisted]\nmode = \"safelist\"\nmanifests = [\"web.json\"]\n",
        &[("web.json", &shared)],
        notice_reply(),
    )
    .await;
    let listed = over_websocket(&world.gateway, NOTICE).await;
    assert_eq!(
        listed["payload"]["data"]["notice"]["text"], "Offices close at noon.",
        "{listed}"
    );
    let refused = over_websocket(&world.gateway, "{ other { text } }").await;
    let errors = match &refused["payload"] {
        Value::Array(errors) => errors.clone(),
        payload => payload["errors"].as_array().cloned().unwrap_or_default(),
    };
    assert_eq!(
        errors[0]["extensions"]["code"], "PERSISTED_QUERY_NOT_ALLOWED",
        "{refused}"
    );
    assert_eq!(world.notice_calls(), 1);
}
