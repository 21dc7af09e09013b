//! `Subscription.lifeEvents` over a real WebSocket (`graphql-transport-ws`) against the shipped
//! gateway: events recorded in its outbox reach each subscriber in order, filtered by type and
//! by what the caller may see; sockets authenticate exactly as HTTP requests do.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use civicgraph::auth::{DEMO_CITIZEN_HEADER, DEMO_OPERATOR_HEADER};
use civicgraph::consent::NewConsent;
use civicgraph::events::{LifeEvent, Mark, NewEvent, Recorded};
use civicgraph::identity::CitizenId;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::support::{DemoStack, GatewayClient, check, citizen_project, refused_url, start_demo};

const WAIT: Duration = Duration::from_secs(10);

const LIFE_EVENTS: &str = "subscription($types: [String!]) { lifeEvents(types: $types) { \
     id type citizenId citizenSequence category subject { name id } occurredAt recordedAt } }";

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the server sent: a protocol message, or the close frame.
#[derive(Debug)]
enum Incoming {
    Json(Value),
    Closed(u16, String),
}

/// A `graphql-transport-ws` client on one socket.
struct Socket {
    stream: Stream,
}

impl Socket {
    /// Opens `/graphql` offering `graphql-transport-ws`, with extra upgrade headers.
    async fn open(
        gateway: &GatewayClient,
        headers: &[(&str, &str)],
    ) -> Result<Self, tungstenite::Error> {
        let mut request = format!("ws://{}/graphql", gateway.addr())
            .into_client_request()
            .expect("a WebSocket request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        for (name, value) in headers {
            request.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        let (stream, response) =
            tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
                .await
                .expect("the upgrade is answered in time")?;
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "graphql-transport-ws"
        );
        Ok(Self { stream })
    }

    /// Opens a socket and completes `connection_init` → `connection_ack`.
    async fn ready(gateway: &GatewayClient, headers: &[(&str, &str)], payload: Value) -> Self {
        let mut socket = Self::open(gateway, headers)
            .await
            .expect("the upgrade succeeds");
        socket
            .send(json!({"type": "connection_init", "payload": payload}))
            .await;
        match socket.recv().await {
            Incoming::Json(message) => assert_eq!(message, json!({"type": "connection_ack"})),
            other => panic!("expected connection_ack, got {other:?}"),
        }
        socket
    }

    async fn send(&mut self, message: Value) {
        self.stream
            .send(Message::text(message.to_string()))
            .await
            .expect("send a message");
    }

    async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({
            "id": id,
            "type": "subscribe",
            "payload": {"query": query, "variables": variables},
        }))
        .await;
    }

    /// The next protocol message or close frame (pings are answered by the library).
    async fn recv(&mut self) -> Incoming {
        loop {
            let message = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("the server says something in time")
                .expect("the socket is open")
                .expect("a readable frame");
            match message {
                Message::Text(text) => {
                    return Incoming::Json(serde_json::from_str(&text).expect("JSON"));
                }
                Message::Close(frame) => {
                    return match frame {
                        Some(frame) => {
                            Incoming::Closed(u16::from(frame.code), frame.reason.to_string())
                        }
                        None => Incoming::Closed(u16::from(CloseCode::Status), String::new()),
                    };
                }
                _ => continue,
            }
        }
    }

    /// The next message, which must be `type` for subscription `id`.
    async fn expect(&mut self, id: &str, kind: &str) -> Value {
        match self.recv().await {
            Incoming::Json(message) => {
                assert_eq!(message["type"], kind, "{message}");
                assert_eq!(message["id"], id, "{message}");
                message
            }
            other => panic!("expected `{kind}` for {id}, got {other:?}"),
        }
    }

    /// The next event delivered on subscription `id`.
    async fn next_event(&mut self, id: &str) -> Value {
        let message = self.expect(id, "next").await;
        assert!(message["payload"].get("errors").is_none(), "{message}");
        message["payload"]["data"]["lifeEvents"].clone()
    }
}

fn new_event(kind: &str, category: &str, citizen: &str, key: &str) -> NewEvent {
    let mut subject = Map::new();
    subject.insert("claim".into(), Value::from(format!("CL-{key}")));
    NewEvent {
        event_type: kind.into(),
        category: category.into(),
        citizen_id: citizen.into(),
        subject,
        idempotency_key: format!("{kind}:{key}"),
        source: "test".into(),
        occurred_at: Utc::now(),
        audience: None,
    }
}

/// The event as a subscriber must see it.
fn seen(event: &LifeEvent) -> Value {
    civicgraph::events::feed::graph_value(event)
}

/// Waits until `count` subscriptions listen on the gateway's feed, so events recorded next
/// reach every one of them.
async fn listening(demo: &DemoStack, count: usize) {
    let feed = demo
        .feed
        .as_ref()
        .expect("the shipped gateway has a live feed");
    let deadline = Instant::now() + WAIT;
    while feed.subscribers().await != count {
        assert!(Instant::now() < deadline, "never {count} subscriptions");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn grant(demo: &DemoStack, citizen: &str, agency: &str, category: &str, purpose: &str) {
    let now = Utc::now();
    demo.ledger
        .grant(
            NewConsent {
                citizen: CitizenId::parse(citizen).unwrap(),
                grantee: agency.into(),
                categories: BTreeSet::from([category.to_string()]),
                purpose: purpose.into(),
                valid_from: now,
                valid_until: now + chrono::Duration::days(30),
            },
            now,
        )
        .await
        .expect("a consent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn life_events_reach_each_subscriber_in_order_as_its_rights_allow() {
    let demo = start_demo(3).await;
    let people = demo.population.people();
    let (ada, bob) = (people[0].id.clone(), people[1].id.clone());
    grant(&demo, &ada, "benefits", "ui.claims", "benefit-eligibility").await;

    let operator = [(DEMO_OPERATOR_HEADER, "ops@example")];
    let mut everything = Socket::ready(&demo, &operator, json!({})).await;
    everything.subscribe("all", LIFE_EVENTS, json!({})).await;
    let mut births = Socket::ready(&demo, &operator, json!({})).await;
    births
        .subscribe("births", LIFE_EVENTS, json!({"types": ["BirthRegistered"]}))
        .await;
    let citizen = [(DEMO_CITIZEN_HEADER, ada.as_str())];
    let mut own = Socket::ready(&demo, &citizen, json!({})).await;
    own.subscribe("own", LIFE_EVENTS, json!({})).await;
    // Agencies authenticate in `connection_init`, as a browser must.
    // An event type no rule produces is a mistake, not a silent empty stream.
    own.subscribe("typo", LIFE_EVENTS, json!({"types": ["JobFound"]}))
        .await;
    let refused = own.expect("typo", "next").await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{refused:#}"
    );
    own.expect("typo", "complete").await;
    let benefits_token = demo.agency_token("benefits", &["ui:read"], "benefit-eligibility");
    let mut consented = Socket::ready(
        &demo,
        &[],
        json!({"Authorization": format!("Bearer {benefits_token}"), "X-Purpose": "benefit-eligibility"}),
    )
    .await;
    consented
        .subscribe("consented", LIFE_EVENTS, json!({}))
        .await;
    let tax_token = demo.agency_token("tax", &["tax:read"], "tax-assessment");
    let mut unconsented = Socket::ready(
        &demo,
        &[],
        json!({"Authorization": format!("Bearer {tax_token}")}),
    )
    .await;
    unconsented
        .subscribe("unconsented", LIFE_EVENTS, json!({}))
        .await;
    listening(&demo, 5).await;

    let recorded = match demo
        .outbox
        .record(
            "test",
            Mark::Nothing,
            vec![
                new_event("JobLost", "ui.claims", &bob, "1"),
                new_event("JobLost", "ui.claims", &ada, "2"),
                new_event("JobLost", "ui.claims", &bob, "3"),
                new_event("BirthRegistered", "ui.claims", &ada, "4"),
                // The tax agency's own data: it receives this on its legal basis.
                new_event("TaxAssessed", "tax.account", &bob, "5"),
            ],
        )
        .await
        .expect("recorded")
    {
        Recorded::Events(events) => events,
        other => panic!("expected events, got {other:?}"),
    };
    let [_, ada_2, _, ada_4, bob_tax] = recorded.as_slice() else {
        panic!("five events");
    };

    for event in &recorded {
        assert_eq!(
            everything.next_event("all").await,
            seen(event),
            "operators see all, in order"
        );
    }
    assert_eq!(
        births.next_event("births").await,
        seen(ada_4),
        "only the type asked for"
    );
    assert_eq!(
        own.next_event("own").await,
        seen(ada_2),
        "a citizen sees their own"
    );
    assert_eq!(own.next_event("own").await, seen(ada_4));
    assert_eq!(
        consented.next_event("consented").await,
        seen(ada_2),
        "an agency sees a consenting citizen's events"
    );
    assert_eq!(consented.next_event("consented").await, seen(ada_4));
    assert_eq!(
        unconsented.next_event("unconsented").await,
        seen(bob_tax),
        "without consent, an agency sees none of the citizen's claims events, only its own data's"
    );

    // Each delivery to the agency is in the citizen's access log, like a protected read.
    let log = demo
        .post_as_citizen(
            &ada,
            "{ me { accessLog(first: 50) { edges { node { fields basis reader { __typename } } } } } }",
        )
        .await;
    let deliveries = log.body["data"]["me"]["accessLog"]["edges"]
        .as_array()
        .expect("an access log")
        .iter()
        .filter(|edge| edge["node"]["fields"] == json!(["Subscription.lifeEvents"]))
        .filter(|edge| {
            edge["node"]["basis"]
                .as_str()
                .is_some_and(|basis| basis.starts_with("consent cns_"))
        })
        .count();
    assert_eq!(deliveries, 2, "{}", log.text);

    // Completing a subscription stops it; the socket stays usable.
    consented
        .send(json!({"id": "consented", "type": "complete"}))
        .await;
    listening(&demo, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sockets_authenticate_like_http_requests() {
    let demo = start_demo(2).await;
    let ada = demo.population.people()[0].id.clone();

    // A refused token on the upgrade request: 401 before any socket exists.
    match Socket::open(&demo, &[("authorization", "Bearer not-a-token")]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("a refused token must not open a socket"),
    }

    // A refused token in `connection_init`: closed with 4403.
    let mut socket = Socket::open(&demo, &[])
        .await
        .expect("an anonymous upgrade");
    socket
        .send(
            json!({"type": "connection_init", "payload": {"Authorization": "Bearer not-a-token"}}),
        )
        .await;
    match socket.recv().await {
        Incoming::Closed(code, reason) => {
            assert_eq!(code, 4403);
            assert_eq!(reason, "The bearer token is not valid.");
        }
        other => panic!("expected a 4403 close, got {other:?}"),
    }

    // An agency that states no purpose its token allows: closed with 4403 too.
    let token = demo.agency_token("benefits", &["ui:read"], "benefit-eligibility");
    let mut socket = Socket::open(&demo, &[])
        .await
        .expect("an anonymous upgrade");
    socket
        .send(json!({"type": "connection_init", "payload": {
            "Authorization": format!("Bearer {token}"), "X-Purpose": "tax-assessment"}}))
        .await;
    assert!(matches!(socket.recv().await, Incoming::Closed(4403, _)));

    // Anonymous callers may connect, but get no events.
    let mut anonymous = Socket::ready(&demo, &[], json!({})).await;
    anonymous.subscribe("a", LIFE_EVENTS, json!({})).await;
    let refused = anonymous.expect("a", "next").await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );
    anonymous.expect("a", "complete").await;

    // Queries run over the socket for its caller, named in `connection_init`.
    let mut payload = Map::new();
    payload.insert(DEMO_CITIZEN_HEADER.to_string(), Value::from(ada.clone()));
    let mut citizen = Socket::ready(&demo, &[], Value::Object(payload)).await;
    citizen.subscribe("q", "{ me { id } }", json!({})).await;
    let answer = citizen.expect("q", "next").await;
    assert_eq!(answer["payload"], json!({"data": {"me": {"id": ada}}}));
    citizen.expect("q", "complete").await;

    // A subscription that does not fit the schema is a validation error.
    citizen
        .subscribe("bad", "subscription { lifeEvents { nope } }", json!({}))
        .await;
    let invalid = citizen.expect("bad", "next").await;
    assert_eq!(
        invalid["payload"]["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{invalid}"
    );

    // Over HTTP a subscription is refused with a pointer to the socket.
    let answer = demo
        .post_as_citizen(&ada, "subscription { lifeEvents { id } }")
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.body["errors"][0]["extensions"]["code"],
        "BAD_REQUEST"
    );
    assert!(
        answer.body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("graphql-transport-ws")),
        "{}",
        answer.text
    );
}

/// The repository's subscription schema, added to a small test project.
const SUBSCRIPTIONS_SDL: &str = include_str!("../../schema/subscriptions.graphql");

#[test]
fn subscription_bindings_are_checked_when_the_graph_loads() {
    let project = citizen_project(&refused_url(), &refused_url())
        .schema(
            "live.graphql",
            r#"type Subscription {
  fromBackend(id: ID!): String @connect(connector: "registry", operation: "person") @public
  guarded: Pulse @connect(connector: "events", operation: "live") @public
}
extend type Query {
  pulse: Pulse @connect(connector: "events", operation: "live")
}
type Pulse {
  id: ID!
  person: String @connect(connector: "registry", operation: "person", args: {id: "$parent.id"}) @public
}
"#,
        )
        .write();
    let problems = match check(&project) {
        Ok(_) => panic!("misbound subscriptions must not check"),
        Err(problems) => problems,
    };
    let messages: Vec<&str> = problems.0.iter().map(|d| d.message.as_str()).collect();
    for phrase in [
        "`Subscription.fromBackend`: a subscription field streams life events",
        "`Subscription.guarded` decides for each event who may see it",
        "`Query.pulse`: `events.live` streams events, so it binds a field of `type Subscription`",
        "`Pulse.person` calls connector `registry`, but it is reachable from `Subscription`",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(phrase)),
            "no `{phrase}` in {messages:#?}"
        );
    }
    assert_eq!(messages.len(), 4, "{messages:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutting_down_ends_open_subscriptions() {
    let gateway = citizen_project(&refused_url(), &refused_url())
        .schema("subscriptions.graphql", SUBSCRIPTIONS_SDL)
        .schema("scalars.graphql", "scalar DateTime\n")
        .gateway_toml(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_ms = 3000\n\n\
             [storage]\nurl = \"sqlite::memory:\"\n\n[auth]\ndemo_headers = true\n",
        )
        .build()
        .await;
    let mut socket = Socket::ready(&gateway, &[(DEMO_OPERATOR_HEADER, "ops")], json!({})).await;
    socket.subscribe("all", LIFE_EVENTS, json!({})).await;
    socket.subscribe("q", "{ __typename }", json!({})).await;
    socket.expect("q", "next").await;
    socket.expect("q", "complete").await;

    let started = Instant::now();
    let stopping = tokio::spawn(gateway.shutdown());
    loop {
        match socket.recv().await {
            // The subscription may end (`complete`) before the socket closes.
            Incoming::Json(message) => assert_eq!(message["id"], "all", "{message}"),
            Incoming::Closed(code, _) => {
                assert_eq!(code, 1001, "going away");
                break;
            }
        }
    }
    stopping
        .await
        .expect("the shutdown task")
        .expect("a clean shutdown");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "an open socket does not hold the shutdown past its grace period"
    );
}
