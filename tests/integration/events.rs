//! Life events end to end: a backend's change feed → rules → outbox → a signed webhook at a
//! receiver on loopback; retries, dead letters and replay, 410, the consent filter, inbound
//! signed webhooks and NATS, all through a real gateway.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use civicgraph::events::signature::WebhookSecret;
use serde_json::{Value, json};

use crate::support::{TestGateway, TestGatewayBuilder};

/// A change feed the gateway polls: `GET /changes?since=N`.
#[derive(Clone, Default)]
struct Feed(Arc<Mutex<Vec<Value>>>);

impl Feed {
    fn push(&self, citizen: &str, case: &str, kind: &str) {
        let mut log = self.0.lock().unwrap();
        let seq = log.len() + 1;
        log.push(json!({
            "seq": seq, "citizen_id": citizen, "case_id": case, "kind": kind,
            "salary": 4321, "home_address": "1 Private Lane",
        }));
    }

    async fn serve(&self) -> SocketAddr {
        #[derive(serde::Deserialize)]
        struct Since {
            since: Option<u64>,
        }
        async fn changes(State(feed): State<Feed>, Query(q): Query<Since>) -> axum::Json<Value> {
            let since = q.since.unwrap_or(0) as usize;
            let log = feed.0.lock().unwrap();
            let page: Vec<Value> = log.iter().skip(since).take(50).cloned().collect();
            axum::Json(json!({ "changes": page }))
        }
        let app = Router::new()
            .route("/changes", get(changes))
            .with_state(self.clone());
        spawn(app).await
    }
}

async fn spawn(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// One webhook request as received.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A webhook receiver: answers from a script of statuses (then 200), records every request.
#[derive(Clone, Default)]
struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    always: Arc<Mutex<Option<u16>>>,
}

impl Receiver {
    fn answering(statuses: &[u16]) -> Self {
        let receiver = Self::default();
        receiver.script.lock().unwrap().extend(statuses);
        receiver
    }

    fn always(&self, status: Option<u16>) {
        *self.always.lock().unwrap() = status;
    }

    async fn serve(&self) -> String {
        async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
            let h = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            r.log.lock().unwrap().push(Received {
                id: h("webhook-id"),
                timestamp: h("webhook-timestamp"),
                signature: h("webhook-signature"),
                body,
            });
            let status = r
                .always
                .lock()
                .unwrap()
                .or_else(|| r.script.lock().unwrap().pop_front())
                .unwrap_or(200);
            StatusCode::from_u16(status).unwrap()
        }
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(self.clone());
        format!("http://{}/hook", spawn(app).await)
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received();
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {count} webhooks, got {}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const RULES: &str = r#"
[sources.hr-changes]
kind = "poll"
connector = "hr"
operation = "changes"
cursor = "seq"
start = "0"
every_s = 1

[sources.hr-notices]
kind = "inbound"
connector = "hr"
secret = "${HR_SECRET}"

[[events]]
type = "JobLost"
source = "hr-changes"
category = "hr.employment"
when = { kind = { eq = "termination" } }
citizen = { field = "citizen_id" }
subject = { case = "case_id" }

[[events]]
type = "JobLost"
source = "hr-notices"
category = "hr.employment"
when = { kind = { eq = "termination" } }
citizen = { field = "citizen_id" }
subject = { case = "case_id" }
"#;

const BASE_SDL: &str = r#"
scalar DateTime
type Query
type Mutation
"#;

fn world(feed: SocketAddr, schedule: &str, extra: &str) -> TestGatewayBuilder {
    world_with(feed, schedule, extra, true)
}

fn world_with(
    feed: SocketAddr,
    schedule: &str,
    extra: &str,
    allow_private: bool,
) -> TestGatewayBuilder {
    let gateway = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[storage]
url = "sqlite::memory:"

[auth]
demo_headers = true

[trust.purposes]
benefit-eligibility = "checking your eligibility for benefits"

[trust.categories]
"hr.employment" = "your employment records"

[trust.agencies.hr]
name = "the Employment Office"
legal_basis = "Employment Act §1"

[trust.agencies.benefits]
name = "the Benefits Agency"

[events]
allow_private_endpoints = {allow_private}
dispatch_poll_ms = 20
retry_schedule_s = {schedule}
delivery_timeout_ms = 2000
{extra}
"#
    );
    TestGateway::builder()
        .gateway_toml(&gateway)
        .schema("base.graphql", BASE_SDL)
        .schema(
            "events.graphql",
            include_str!("../../schema/events.graphql"),
        )
        .schema(
            "subscriptions.graphql",
            include_str!("../../schema/subscriptions.graphql"),
        )
        .schema(
            "consent.graphql",
            r#"
            type Consent { handle: ID! }
            type ConsentChange { consent: Consent! }
            extend type Mutation {
              grantConsent(grantee: String!, categories: [String!]!, purpose: String!, validFrom: DateTime, validUntil: DateTime): ConsentChange!
                @connect(connector: "consent", operation: "grant", args: {citizen_id: "$caller.citizenId"})
            }
            "#,
        )
        .file("schema/life-events.toml", RULES)
        .var("HR_SECRET", SECRET)
        .var("HR_URL", &format!("http://{feed}"))
        .connector(
            "hr.toml",
            r#"
name = "hr"
kind = "rest"
base_url = "${HR_URL}"
[operations.changes]
path = "/changes"
query = { since = "{since}" }
select = "/changes"
"#,
        )
}

async fn register(gateway: &TestGateway, agency: &str, url: &str) -> (String, WebhookSecret) {
    let answer = gateway
        .post_as_operator(
            "ops",
            &format!(
                r#"mutation {{ registerEventSubscriber(agency: "{agency}", purpose: "benefit-eligibility", url: "{url}", eventTypes: ["JobLost"]) {{ subscriber {{ id active eventTypes }} secret }} }}"#
            ),
        )
        .await;
    let registration = &answer.body["data"]["registerEventSubscriber"];
    assert_eq!(
        registration["subscriber"]["active"], true,
        "{:#}",
        answer.body
    );
    let secret = WebhookSecret::parse(registration["secret"].as_str().unwrap()).unwrap();
    (
        registration["subscriber"]["id"]
            .as_str()
            .unwrap()
            .to_string(),
        secret,
    )
}

fn verify(secret: &WebhookSecret, received: &Received) {
    secret
        .verify(
            &received.id,
            &received.timestamp,
            &received.signature,
            received.body.as_bytes(),
            chrono::Utc::now().timestamp(),
            300,
        )
        .unwrap_or_else(|e| panic!("a valid Standard Webhooks signature: {e}"));
}

#[tokio::test]
async fn a_backend_change_reaches_a_subscriber_as_a_signed_thin_webhook() {
    let feed = Feed::default();
    let gateway = world(feed.serve().await, "[1, 1]", "").build().await;
    let receiver = Receiver::default();
    let (_, secret) = register(&gateway, "hr", &receiver.serve().await).await;
    feed.push("C0000001", "CASE-1", "termination");
    feed.push("C0000001", "CASE-2", "promotion");
    feed.push("C0000001", "CASE-3", "termination");
    let got = receiver.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 2, "a promotion is no event");
    for received in &got {
        verify(&secret, received);
        let body = received.json();
        assert_eq!(body["type"], "JobLost");
        assert_eq!(body["data"]["id"], received.id.as_str());
        assert!(received.id.starts_with("evt_"));
        assert!(
            !received.body.contains("4321") && !received.body.contains("Private Lane"),
            "thin payload: {}",
            received.body
        );
    }
    let cases: Vec<(&str, i64)> = got
        .iter()
        .map(|r| r.json())
        .collect::<Vec<_>>()
        .iter()
        .map(|b| {
            (
                match b["data"]["subject"]["case"].as_str().unwrap() {
                    "CASE-1" => "CASE-1",
                    _ => "CASE-3",
                },
                b["data"]["citizenSequence"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cases,
        [("CASE-1", 1), ("CASE-3", 2)],
        "in order per citizen"
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_event_on_the_third_attempt_with_the_same_id() {
    let feed = Feed::default();
    let gateway = world(feed.serve().await, "[1, 1, 1]", "").build().await;
    let receiver = Receiver::answering(&[503, 500]);
    let (subscriber, secret) = register(&gateway, "hr", &receiver.serve().await).await;
    feed.push("C0000002", "CASE-9", "termination");
    let got = receiver.wait_for(3).await;
    assert!(got.iter().all(|r| r.id == got[0].id), "one webhook-id");
    for received in &got {
        verify(&secret, received);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = gateway
        .post_as_operator(
            "ops",
            &format!(
                r#"{{ eventDeliveries(subscriberId: "{subscriber}") {{ state attempts lastStatus event {{ id type }} }} }}"#
            ),
        )
        .await;
    assert_eq!(
        answer.body["data"]["eventDeliveries"],
        json!([{"state": "DELIVERED", "attempts": 3, "lastStatus": 200,
                "event": {"id": got[0].id, "type": "JobLost"}}])
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dead_letter_is_listed_and_replayed_with_its_id_and_410_disables_the_endpoint() {
    let feed = Feed::default();
    let gateway = world(feed.serve().await, "[1]", "").build().await;
    let receiver = Receiver::default();
    receiver.always(Some(500));
    let (subscriber, _) = register(&gateway, "hr", &receiver.serve().await).await;
    feed.push("C0000003", "CASE-5", "termination");
    let failed = receiver.wait_for(2).await;
    let dead_query = format!(
        r#"{{ eventDeliveries(subscriberId: "{subscriber}", state: DEAD) {{ attempts lastError event {{ id }} }} }}"#
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let answer = gateway.post_as_operator("ops", &dead_query).await;
        let list = answer.body["data"]["eventDeliveries"].clone();
        if list.as_array().is_some_and(|l| !l.is_empty()) {
            break list;
        }
        assert!(Instant::now() < deadline, "{:#}", answer.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        dead,
        json!([{"attempts": 2, "lastError": "the endpoint answered 500",
                "event": {"id": failed[0].id}}])
    );
    // The endpoint is fixed: replaying sends the same event again.
    receiver.always(None);
    let replayed = gateway
        .post_as_operator(
            "ops",
            &format!(r#"mutation {{ replayDeadLetters(subscriberId: "{subscriber}") }}"#),
        )
        .await;
    assert_eq!(replayed.body["data"]["replayDeadLetters"], 1);
    let got = receiver.wait_for(3).await;
    assert_eq!(got[2].id, failed[0].id);

    // 410 Gone: the endpoint is disabled and says why.
    receiver.always(Some(410));
    feed.push("C0000003", "CASE-6", "termination");
    receiver.wait_for(4).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = gateway
            .post_as_operator("ops", "{ eventSubscribers { id active disabledReason } }")
            .await;
        let listed = &answer.body["data"]["eventSubscribers"][0];
        if listed["active"] == false {
            assert_eq!(listed["disabledReason"], "the endpoint answered 410 Gone");
            break;
        }
        assert!(Instant::now() < deadline, "{:#}", answer.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    feed.push("C0000003", "CASE-7", "termination");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.received().len(),
        4,
        "a disabled endpoint gets nothing"
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_agency_receives_events_only_about_citizens_who_consented() {
    let feed = Feed::default();
    let gateway = world(feed.serve().await, "[1]", "").build().await;
    let receiver = Receiver::default();
    let (subscriber, _) = register(&gateway, "benefits", &receiver.serve().await).await;
    let granted = gateway
        .post_as_citizen(
            "C0000011",
            r#"mutation { grantConsent(grantee: "benefits", categories: ["hr.employment"], purpose: "benefit-eligibility") { consent { handle } } }"#,
        )
        .await;
    assert!(granted.body["errors"].is_null(), "{:#}", granted.body);
    feed.push("C0000012", "CASE-A", "termination"); // no consent
    feed.push("C0000011", "CASE-B", "termination"); // consented
    let got = receiver.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(got[0].json()["data"]["citizenId"], "C0000011");
    let answer = gateway
        .post_as_operator(
            "ops",
            &format!(
                r#"{{ eventDeliveries(subscriberId: "{subscriber}", state: FILTERED) {{ event {{ citizenId }} }} }}"#
            ),
        )
        .await;
    assert_eq!(
        answer.body["data"]["eventDeliveries"],
        json!([{"event": {"citizenId": "C0000012"}}])
    );
    // Agencies need the scope; citizens cannot manage subscribers at all.
    let citizen = gateway
        .post_as_citizen("C0000011", "{ eventSubscribers { id } }")
        .await;
    assert_eq!(citizen.body["errors"][0]["extensions"]["code"], "FORBIDDEN");
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn registration_refuses_bad_endpoints_types_and_agencies() {
    let feed = Feed::default();
    let gateway = world(feed.serve().await, "[1]", "").build().await;
    let cases = [
        (
            r#"agency: "hr", purpose: "benefit-eligibility", url: "ftp://example.org/x""#,
            "BAD_USER_INPUT",
        ),
        (
            r#"agency: "hr", purpose: "benefit-eligibility", url: "http://127.0.0.1:9/x", eventTypes: ["JobFound"]"#,
            "BAD_USER_INPUT",
        ),
        (
            r#"agency: "nasa", purpose: "benefit-eligibility", url: "http://127.0.0.1:9/x""#,
            "BAD_USER_INPUT",
        ),
        (
            r#"agency: "hr", purpose: "spying", url: "http://127.0.0.1:9/x""#,
            "UNKNOWN_PURPOSE",
        ),
    ];
    for (args, code) in cases {
        let answer = gateway
            .post_as_operator(
                "ops",
                &format!("mutation {{ registerEventSubscriber({args}) {{ secret }} }}"),
            )
            .await;
        assert_eq!(
            answer.body["errors"][0]["extensions"]["code"], code,
            "{args}: {:#}",
            answer.body
        );
    }
    let anonymous = gateway.post("{ eventSubscribers { id } }").await;
    assert_eq!(
        anonymous.body["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    let types = gateway.post("{ lifeEventTypes }").await;
    assert_eq!(
        types.body["data"]["lifeEventTypes"],
        json!(["JobLost", "ServiceOfferAccepted"])
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_ssrf_guard_refuses_loopback_endpoints_unless_allowed() {
    let feed = Feed::default();
    let gateway = world_with(feed.serve().await, "[1]", "", false)
        .build()
        .await;
    let answer = gateway
        .post_as_operator(
            "ops",
            r#"mutation { registerEventSubscriber(agency: "hr", purpose: "benefit-eligibility", url: "http://127.0.0.1:9/x") { secret } }"#,
        )
        .await;
    assert_eq!(
        answer.body["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
    let message = answer.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("`url`:"), "{message}");
    gateway.shutdown().await.unwrap();
}

async fn post_inbound(
    gateway: &TestGateway,
    id: &str,
    timestamp: i64,
    signature: Option<String>,
    body: &str,
) -> (u16, Value) {
    let secret = WebhookSecret::parse(SECRET).unwrap();
    let signature = signature.unwrap_or_else(|| secret.sign(id, timestamp, body.as_bytes()));
    let response = reqwest::Client::new()
        .post(gateway.url("/events/hr"))
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn inbound_webhooks_are_verified_deduplicated_and_replays_refused() {
    let feed = Feed::default();
    let gateway = world(feed.serve().await, "[1]", "").build().await;
    let receiver = Receiver::default();
    register(&gateway, "hr", &receiver.serve().await).await;
    let now = chrono::Utc::now().timestamp();
    let body = r#"{"kind":"termination","citizen_id":"C0000021","case_id":"IN-1"}"#;
    let (status, answer) = post_inbound(&gateway, "msg_1", now, None, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["duplicate"], false);
    assert_eq!(answer["events"].as_array().unwrap().len(), 1);
    // The sender retries the same message: recorded once.
    let (status, answer) = post_inbound(&gateway, "msg_1", now, None, body).await;
    assert_eq!((status, &answer["duplicate"]), (200, &json!(true)));
    // Replayed six minutes later (validly signed for that time): refused.
    let (status, answer) = post_inbound(&gateway, "msg_2", now - 360, None, body).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], "SIGNATURE_INVALID");
    // A bad signature, and a body changed after signing: refused.
    let (status, answer) =
        post_inbound(&gateway, "msg_3", now, Some("v1,AAAA".to_string()), body).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("SIGNATURE_INVALID"))
    );
    let secret = WebhookSecret::parse(SECRET).unwrap();
    let signed_other = secret.sign("msg_4", now, b"{}");
    let (status, _) = post_inbound(&gateway, "msg_4", now, Some(signed_other), body).await;
    assert_eq!(status, 400);
    // Unknown connector, and a body that is not a change.
    let unknown = reqwest::Client::new()
        .post(gateway.url("/events/nobody"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    let (status, answer) = post_inbound(&gateway, "msg_5", now, None, "[1, 2]").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("BAD_REQUEST"))
    );
    let got = receiver.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1, "one event from all of that");
    assert_eq!(got[0].json()["data"]["subject"]["case"], "IN-1");
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn events_are_published_to_nats_jetstream_once_per_event() {
    let Ok(url) = std::env::var("CIVICGRAPH_TEST_NATS_URL") else {
        eprintln!("skipped: CIVICGRAPH_TEST_NATS_URL is not set");
        return;
    };
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let stream = format!("CG_TEST_{unique}");
    let prefix = format!("cgtest.{unique}");
    let feed = Feed::default();
    let extra =
        format!("nats_url = \"{url}\"\nnats_stream = \"{stream}\"\nsubject_prefix = \"{prefix}\"");
    let gateway = world(feed.serve().await, "[1]", &extra).build().await;
    feed.push("C0000031", "N-1", "termination");
    feed.push("C0000032", "N-2", "termination");
    let client = async_nats::connect(&url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(20);
    let stored = loop {
        let mut info = jetstream.get_stream(&stream).await.unwrap();
        let messages = info.info().await.unwrap().state.messages;
        if messages >= 2 || Instant::now() > deadline {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stored, 2);
    let info = jetstream.get_stream(&stream).await.unwrap();
    let message = info
        .get_last_raw_message_by_subject(&format!("{prefix}.JobLost"))
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(body["type"], "JobLost");
    let id = message
        .headers
        .get("Nats-Msg-Id")
        .map(|v| v.to_string())
        .unwrap_or_default();
    assert_eq!(id, body["data"]["id"].as_str().unwrap());
    gateway.shutdown().await.unwrap();
    jetstream.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn a_move_through_the_graph_is_one_address_changed_event_though_the_registry_log_shows_it_too()
 {
    let demo = crate::support::start_demo(20).await;
    let moved = demo
        .post_as_citizen(
            "C0000002",
            r#"mutation { changeAddress(street: "12 Quarry Lane", city: "Lakeside", postalCode: "12345") { changeId } }"#,
        )
        .await;
    assert!(moved.body["errors"].is_null(), "{:#}", moved.body);
    let change = moved.body["data"]["changeAddress"]["changeId"]
        .as_str()
        .unwrap()
        .to_string();
    let address_events = || async {
        demo.outbox
            .citizen_events("C0000002", 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event_type == "AddressChanged")
            .collect::<Vec<_>>()
    };
    // Recorded by the mutation itself, at once.
    let events = address_events().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].subject["change"], change.as_str());
    assert_eq!(events[0].source, "address-mutation");
    // The registry's change log, polled every 2 s, reports the same move: still one event.
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let watermark = demo.outbox.watermark("registry-changes").await.unwrap();
        if watermark.as_deref().is_some_and(|w| w != "0") {
            break;
        }
    }
    assert_ne!(
        demo.outbox
            .watermark("registry-changes")
            .await
            .unwrap()
            .as_deref(),
        Some("0"),
        "the registry's log was polled past the move"
    );
    assert_eq!(address_events().await.len(), 1);
}
