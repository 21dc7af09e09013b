//! Three `civicgraph serve` processes behind no load balancer at all — the test picks the
//! instance — sharing one PostgreSQL (a schema of the test's own), one Redis and one NATS, as
//! the README's "Running on several machines" describes. Skipped with a note when
//! `CIVICGRAPH_TEST_POSTGRES_URL`, `CIVICGRAPH_TEST_REDIS_URL` or `CIVICGRAPH_TEST_NATS_URL` is
//! unset.
//!
//! - A consent revoked through instance 1 is refused by instances 2 and 3 on their very next
//!   request, though they had the value cached; the withdrawal's `NOTIFY` drops their
//!   in-memory copies (their next read after a new grant goes to Redis, not to memory). The
//!   time a revocation takes to reach the other instances is measured over 50 revocations.
//! - The Redis tier is shared: a value one instance fetched is served by the others without a
//!   backend call.
//! - The outbox is shared: every event is delivered, once, whichever instance recorded it, and
//!   published to NATS once.
//! - A SIGKILLed instance loses nothing: its claimed deliveries are sent by the others after
//!   the lease with the same `webhook-id`, and the consent and audit record written through it
//!   are read back through another instance.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use civicgraph::auth::DEMO_CITIZEN_HEADER;
use civicgraph::auth::dev_tokens::{Persona, mint};
use civicgraph::config::Vars;
use serde_json::{Value, json};

use crate::events_scale::PgSchema;
use crate::events_world::{
    CASES_CONNECTOR, ChangeFeed, Mode, RULES, Receiver, ServeProcess, check_receptions, citizen,
    register_subscriber, wait_until,
};
use crate::support::{Answer, FakeAgency, GatewayClient, Reply, RunningAgency};

/// Bounds every wait, so a failure fails the test instead of hanging CI.
const WAIT: Duration = Duration::from_secs(60);

/// `[events] lease_s` (and no shorter than `delivery_timeout_ms` + 2 s, which the gateway
/// would otherwise raise it to).
const LEASE: Duration = Duration::from_secs(4);

/// The citizen whose consents these tests grant and revoke.
const ADA: &str = "C0000001";

/// The agency reading Ada's licence with her consent.
const READER: &str = "benefits";

const LICENSE_ROUTE: &str = "/v1/licenses/{number}";

/// The citizen graph over the registry and a cached DMV, beside the shipped consent, events and
/// subscriptions schemas.
const SDL: &str = r#"extend type Query {
  citizen(id: ID!): Citizen
    @connect(connector: "registry", operation: "person")
    @requiresScopes(scopes: [["citizen:lookup"]])
  me: Citizen @connect(connector: "registry", operation: "person", args: {id: "$caller.citizenId"}) @public
}

type Citizen {
  id: ID!
  license: License
    @connect(connector: "dmv", operation: "license", args: {number: "$parent.license"})
    @consent(category: "dmv.license") @owner(agency: "dmv") @requiresScopes(scopes: [["dmv:read"]])
}

type License { number: String! status: String! }

type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }
"#;

const REGISTRY_TOML: &str = r#"name = "registry"
kind = "rest"
base_url = "${REGISTRY_URL}"

[operations.person]
path = "/v1/people/{id}"
select = "/person"
"#;

const DMV_TOML: &str = r#"name = "dmv"
kind = "rest"
base_url = "${DMV_URL}"
cache = { ttl_s = 600 }

[operations.license]
path = "/v1/licenses/{number}"
select = "/license"
"#;

/// The one `civicgraph.toml` every instance runs; only the `${…}` values differ per instance
/// (its audit checkpoint file).
const GATEWAY_TOML: &str = r#"[server]
listen = "127.0.0.1:0"
shutdown_grace_ms = 1000

[storage]
url = "${STORAGE_URL}"
max_connections = 4

[auth]
demo_headers = true

[[auth.issuers]]
name = "local-dev"
issuer = "urn:civicgraph:test"
audience = "civicgraph"
role = "claim"
keys = { dev_key = "dev-issuer.pem" }

[trust]
signing_key = "signing-key.pem"

[trust.purposes]
case-management = "managing your case"
benefit-eligibility = "checking your eligibility for benefits"

[trust.categories]
"case.updates" = "updates to your case"
"dmv.license" = "your driver's licence"

[trust.agencies.case]
name = "the Case Agency"
legal_basis = "Case Management Act §1"

[trust.agencies.dmv]
name = "the Motor Vehicle Agency"
legal_basis = "Motor Vehicle Act §21"

[trust.agencies.benefits]
name = "the Benefits Agency"

[audit]
checkpoint_file = "${CHECKPOINTS}"

[cache]
redis_url = "${REDIS_URL}"
redis_secret = "${REDIS_SECRET}"
redis_timeout_ms = 500

[events]
allow_private_endpoints = true
dispatch_poll_ms = 50
delivery_timeout_ms = 2000
lease_s = 4
retry_schedule_s = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
nats_url = "${NATS_URL}"
nats_stream = "${NATS_STREAM}"
subject_prefix = "${NATS_PREFIX}"
"#;

/// The shared services' URLs, or `None` (and a note) when one is not configured.
struct Services {
    db: PgSchema,
    redis_url: String,
    nats_url: String,
}

impl Services {
    async fn from_env() -> Option<Self> {
        for name in ["CIVICGRAPH_TEST_REDIS_URL", "CIVICGRAPH_TEST_NATS_URL"] {
            if std::env::var(name).is_err() {
                eprintln!("skipped: {name} is not set");
                return None;
            }
        }
        let db = PgSchema::create().await?;
        Some(Self {
            db,
            redis_url: std::env::var("CIVICGRAPH_TEST_REDIS_URL").expect("checked above"),
            nats_url: std::env::var("CIVICGRAPH_TEST_NATS_URL").expect("checked above"),
        })
    }
}

/// One project directory (schema, connectors, the shared keys) and three instances serving it.
struct Cluster {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
    instances: Vec<ServeProcess>,
    stream: String,
    nats_url: String,
}

impl Cluster {
    /// Writes the project and starts three instances: the first alone (it migrates the schema
    /// and makes the shared keys), then the other two together.
    async fn start(services: &Services, backends: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().expect("a project directory");
        let root = dir.path();
        let write = |path: &str, text: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("a directory");
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        };
        let shipped = |name: &str| {
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("schema")
                    .join(name),
            )
            .unwrap_or_else(|e| panic!("the shipped schema/{name}: {e}"))
        };
        write("civicgraph.toml", GATEWAY_TOML);
        write(
            "schema/base.graphql",
            "scalar DateTime\ntype Query\ntype Mutation\n",
        );
        write("schema/citizen.graphql", SDL);
        for name in ["consent.graphql", "events.graphql", "subscriptions.graphql"] {
            write(&format!("schema/{name}"), &shipped(name));
        }
        write("schema/life-events.toml", RULES);
        write("connectors/cases.toml", CASES_CONNECTOR);
        write("connectors/registry.toml", REGISTRY_TOML);
        write("connectors/dmv.toml", DMV_TOML);

        let unique = uuid::Uuid::new_v4().simple().to_string();
        let stream = format!("CG_SCALE_{unique}");
        let mut vars: Vec<(String, String)> = vec![
            ("STORAGE_URL".into(), services.db.url.clone()),
            ("REDIS_URL".into(), services.redis_url.clone()),
            // A secret of this run's own: entries other runs left in Redis read as garbage.
            ("REDIS_SECRET".into(), format!("scale-out-{unique}")),
            ("NATS_URL".into(), services.nats_url.clone()),
            ("NATS_STREAM".into(), stream.clone()),
            ("NATS_PREFIX".into(), format!("cgscale.{unique}")),
            ("CHECKPOINTS".into(), "checkpoints-0.jsonl".into()),
        ];
        for (name, url) in backends {
            vars.push(((*name).to_string(), url.clone()));
        }
        let config = root.join("civicgraph.toml");
        let first = ServeProcess::start_in(root, &config, &vars).await;
        let with_checkpoints = |n: usize| {
            let mut own = vars.clone();
            own.retain(|(name, _)| name != "CHECKPOINTS");
            own.push(("CHECKPOINTS".into(), format!("checkpoints-{n}.jsonl")));
            own
        };
        let (env_two, env_three) = (with_checkpoints(1), with_checkpoints(2));
        let (second, third) = tokio::join!(
            ServeProcess::start_in(root, &config, &env_two),
            ServeProcess::start_in(root, &config, &env_three),
        );
        Self {
            dir,
            vars,
            instances: vec![first, second, third],
            stream,
            nats_url: services.nats_url.clone(),
        }
    }

    /// The Redis tier's HMAC secret of this run.
    fn redis_secret(&self) -> String {
        self.vars
            .iter()
            .find(|(name, _)| name == "REDIS_SECRET")
            .map(|(_, value)| value.clone())
            .expect("a Redis secret")
    }

    fn client(&self, n: usize) -> GatewayClient {
        self.instances[n].client()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("civicgraph.toml")
    }

    /// A token of the development issuer for [`READER`], allowed to read licences.
    fn reader_token(&self) -> String {
        let vars = Vars::only(self.vars.iter().cloned().collect());
        let (config, root) = civicgraph::config::load_gateway_config(&self.config_path(), &vars)
            .unwrap_or_else(|problems| panic!("the test configuration: {problems}"));
        mint(
            &config,
            &root,
            &Persona::Agency {
                client_id: format!("{READER}-portal"),
                agency: READER.to_string(),
                scopes: ["citizen:lookup", "dmv:read"]
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                purpose: "benefit-eligibility".to_string(),
            },
            chrono::Utc::now(),
            chrono::Duration::hours(1),
        )
        .expect("mint a development token")
    }

    /// Deletes this run's NATS stream.
    async fn finish(self, services: Services) {
        let client = async_nats::connect(&self.nats_url)
            .await
            .expect("connect to NATS");
        let _ = async_nats::jetstream::new(client)
            .delete_stream(&self.stream)
            .await;
        drop(self.instances);
        services.db.drop_schema().await;
    }
}

/// Sums the samples of `name` (a counter's or gauge's full sample name) whose labels contain
/// `labels`, from an instance's `/metrics`.
async fn metric(client: &GatewayClient, name: &str, labels: &str) -> f64 {
    let text = client.get("/metrics", &[]).await.text;
    text.lines()
        .filter(|line| {
            (line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
                && line.contains(labels)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn withdrawals_heard(client: &GatewayClient) -> f64 {
    metric(
        client,
        "civicgraph_consent_broadcasts_received_total",
        "kind=\"withdrawn\"",
    )
    .await
}

async fn redis_hits(client: &GatewayClient) -> f64 {
    metric(
        client,
        "civicgraph_cache_redis_reads_total",
        "outcome=\"hit\"",
    )
    .await
}

/// Ada grants [`READER`] her licence through `client`; returns the consent's handle.
async fn grant(client: &GatewayClient) -> String {
    let answer = client
        .post_with(
            json!({"query": "mutation { grantConsent(grantee: \"benefits\", \
                categories: [\"dmv.license\"], purpose: \"benefit-eligibility\") \
                { consent { handle } } }"}),
            &[(DEMO_CITIZEN_HEADER, ADA)],
        )
        .await;
    answer.body["data"]["grantConsent"]["consent"]["handle"]
        .as_str()
        .unwrap_or_else(|| panic!("a granted consent: {}", answer.body))
        .to_string()
}

/// Ada revokes `handle` through `client`.
async fn revoke(client: &GatewayClient, handle: &str) {
    let answer = client
        .post_with(
            json!({"query": "mutation($h: ID!) { revokeConsent(handle: $h) { consent { status } } }",
                   "variables": {"h": handle}}),
            &[(DEMO_CITIZEN_HEADER, ADA)],
        )
        .await;
    assert_eq!(
        answer.body["data"]["revokeConsent"]["consent"]["status"], "REVOKED",
        "{}",
        answer.body
    );
}

/// [`READER`] reads Ada's licence through `client`.
async fn read_license(client: &GatewayClient, token: &str) -> Answer {
    client
        .post_with(
            json!({"query": format!("{{ citizen(id: \"{ADA}\") {{ license {{ number status }} }} }}")}),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await
}

fn license_code(answer: &Answer) -> Option<String> {
    answer.body["errors"].as_array().and_then(|errors| {
        errors
            .iter()
            .find(|e| e["path"] == json!(["citizen", "license"]))
            .and_then(|e| e["extensions"]["code"].as_str())
            .map(str::to_string)
    })
}

/// A registry that knows Ada with licence `license`, and a DMV that counts its calls.
async fn backends(license: &str) -> (RunningAgency, RunningAgency) {
    let registry = FakeAgency::new()
        .route(
            "/v1/people/{id}",
            Reply::json(200, json!({"person": {"id": ADA, "license": license}})),
        )
        .run()
        .await;
    let dmv = FakeAgency::new()
        .route(
            LICENSE_ROUTE,
            Reply::json(
                200,
                json!({"license": {"number": license, "status": "VALID"}}),
            ),
        )
        .run()
        .await;
    (registry, dmv)
}

/// Milliseconds, for printing.
fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_through_one_instance_is_enforced_and_uncached_on_the_others_at_once() {
    let Some(services) = Services::from_env().await else {
        return;
    };
    let license = format!("D{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let (registry, dmv) = backends(&license).await;
    let (feed, feed_url) = ChangeFeed::start().await;
    let cluster = Cluster::start(
        &services,
        &[
            ("REGISTRY_URL", registry.url()),
            ("DMV_URL", dmv.url()),
            ("CASES_URL", feed_url),
        ],
    )
    .await;
    let token = cluster.reader_token();
    let [one, two, three] = [0, 1, 2].map(|n| cluster.client(n));
    for client in [&one, &two, &three] {
        wait_until("the consent listener is up", WAIT, async || {
            metric(client, "civicgraph_consent_listener_up", "").await == 1.0
        })
        .await;
    }

    // The shared Redis tier: fetched once through instance 1, then served to 2 and 3 from
    // Redis, then from their own memory.
    let handle = grant(&one).await;
    let answer = read_license(&one, &token).await;
    assert_eq!(answer.body["data"]["citizen"]["license"]["number"], license);
    // The Redis write runs beside the answer; wait for it, reading Redis as an instance would.
    let tier = civicgraph::cache_tier::RedisTier::new(
        &services.redis_url,
        Some(cluster.redis_secret().as_bytes()),
        Duration::from_secs(1),
    )
    .expect("a Redis URL");
    let key = civicgraph::shield::cache_key(
        "dmv",
        "license",
        &BTreeMap::from([("number".to_string(), json!(license))]),
        &civicgraph::shield::CacheScope::Agency {
            agency: READER.to_string(),
            client: format!("{READER}-portal"),
            purpose: Some("benefit-eligibility".to_string()),
        },
    );
    wait_until("the licence in Redis", WAIT, async || {
        matches!(
            tier.get(key.as_bytes()).await,
            civicgraph::cache_tier::TierRead::Hit(_)
        )
    })
    .await;
    for client in [&two, &three, &two, &three] {
        let answer = read_license(client, &token).await;
        assert_eq!(
            answer.body["data"]["citizen"]["license"]["number"], license,
            "{}",
            answer.body
        );
    }
    assert_eq!(
        dmv.calls(LICENSE_ROUTE),
        1,
        "one backend call for all three"
    );
    for client in [&two, &three] {
        assert_eq!(redis_hits(client).await, 1.0, "served from Redis once");
    }

    // Revoked through instance 1: refused by 2 and 3 on the very next request.
    let (before_two, before_three) = (
        withdrawals_heard(&two).await,
        withdrawals_heard(&three).await,
    );
    revoke(&one, &handle).await;
    for client in [&two, &three] {
        let answer = read_license(client, &token).await;
        assert_eq!(
            answer.body["data"]["citizen"]["license"],
            Value::Null,
            "{}",
            answer.body
        );
        assert_eq!(license_code(&answer).as_deref(), Some("CONSENT_REQUIRED"));
    }
    assert_eq!(dmv.calls(LICENSE_ROUTE), 1);

    // The withdrawal's notice reached both, and dropped what they held in memory: after a new
    // grant their next read is a memory miss answered by Redis (without the notice it would
    // have been a memory hit).
    for (client, before) in [(&two, before_two), (&three, before_three)] {
        wait_until("the withdrawal heard", WAIT, async || {
            withdrawals_heard(client).await > before
        })
        .await;
    }
    let heard = [before_two + 1.0, before_three + 1.0];
    let regranted = grant(&one).await;
    for client in [&two, &three] {
        let answer = read_license(client, &token).await;
        assert_eq!(answer.body["data"]["citizen"]["license"]["number"], license);
        assert_eq!(
            redis_hits(client).await,
            2.0,
            "the in-memory copy was dropped, so Redis answered"
        );
    }
    assert_eq!(dmv.calls(LICENSE_ROUTE), 1);
    revoke(&one, &regranted).await;

    // How long a revocation takes to be heard by the other instances.
    const ROUNDS: usize = 50;
    let mut heard = heard.map(|n| n + 1.0);
    for (client, expected) in [&two, &three].into_iter().zip(heard) {
        wait_until("the second withdrawal heard", WAIT, async || {
            withdrawals_heard(client).await >= expected
        })
        .await;
    }
    let mut after_commit = Vec::new();
    let mut round_trips = Vec::new();
    for _ in 0..ROUNDS {
        let handle = grant(&one).await;
        let sent = Instant::now();
        revoke(&one, &handle).await;
        let answered = Instant::now();
        round_trips.push(answered - sent);
        for (n, client) in [&two, &three].into_iter().enumerate() {
            let deadline = Instant::now() + WAIT;
            while withdrawals_heard(client).await <= heard[n] {
                assert!(Instant::now() < deadline, "a revocation never heard");
            }
            heard[n] += 1.0;
            after_commit.push(Instant::now().saturating_duration_since(answered));
        }
    }
    after_commit.sort();
    round_trips.sort();
    eprintln!(
        "revocation heard by the other instances, measured from the revoke's answer (the commit \
         precedes it) to the counter seen on /metrics, {} samples: p50 {:.1} ms, p90 {:.1} ms, \
         max {:.1} ms; the revoke's own round trip: p50 {:.1} ms, max {:.1} ms",
        after_commit.len(),
        ms(percentile(&after_commit, 0.5)),
        ms(percentile(&after_commit, 0.9)),
        ms(percentile(&after_commit, 1.0)),
        ms(percentile(&round_trips, 0.5)),
        ms(percentile(&round_trips, 1.0)),
    );
    drop(feed);
    cluster.finish(services).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_outbox_and_a_killed_one_loses_nothing() {
    let Some(services) = Services::from_env().await else {
        return;
    };
    let license = format!("D{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let (registry, dmv) = backends(&license).await;
    let (feed, feed_url) = ChangeFeed::start().await;
    let receiver = Receiver::start(Mode::Answer(Duration::from_millis(50))).await;
    let mut cluster = Cluster::start(
        &services,
        &[
            ("REGISTRY_URL", registry.url()),
            ("DMV_URL", dmv.url()),
            ("CASES_URL", feed_url),
        ],
    )
    .await;
    let token = cluster.reader_token();
    let (subscriber, secret) = register_subscriber(&cluster.client(0), receiver.url()).await;
    // Deliveries to the webhook (the outbox also tracks each event's NATS publication).
    let webhooks_delivered = async || -> i64 {
        sqlx::query_as::<_, (i64,)>(&format!(
            "SELECT count(*) FROM {}.event_deliveries WHERE state = 'delivered' \
             AND subscriber_id = $1",
            services.db.schema
        ))
        .bind(&subscriber)
        .fetch_one(&services.db.admin)
        .await
        .expect("count the webhook deliveries")
        .0
    };

    // Shared outbox: 60 events, each delivered exactly once.
    let mut total = 0;
    for n in 1..=60 {
        feed.push(&citizen(n), &format!("CASE-{n}"));
        total += 1;
    }
    wait_until("every event delivered", WAIT, async || {
        webhooks_delivered().await == total
    })
    .await;
    let receptions = receiver.receptions();
    let bodies = check_receptions(&receptions, &secret);
    assert_eq!(bodies.len() as i64, total, "every event received");
    assert_eq!(receptions.len() as i64, total, "and each exactly once");
    let mut recorded = Vec::new();
    let mut delivered = Vec::new();
    for n in 0..3 {
        let client = cluster.client(n);
        recorded.push(metric(&client, "civicgraph_events_recorded_total", "").await as u64);
        delivered.push(
            metric(
                &client,
                "civicgraph_event_deliveries_total",
                "channel=\"webhook\",outcome=\"delivered\"",
            )
            .await as u64,
        );
    }
    assert_eq!(delivered.iter().sum::<u64>(), total as u64);
    eprintln!(
        "events recorded per instance {recorded:?}, webhooks delivered per instance {delivered:?}"
    );

    // Written through instance 3 before it dies: a consent, and an audited read under it.
    let victim = cluster.client(2);
    let handle = grant(&victim).await;
    let answer = read_license(&victim, &token).await;
    assert_eq!(answer.body["data"]["citizen"]["license"]["number"], license);

    // Slow answers (within the delivery timeout, so only the kill makes an event go twice),
    // so every instance holds claims when instance 3 is killed.
    receiver.set_mode(Mode::Answer(Duration::from_millis(1500)));
    let first_batch: BTreeSet<String> = bodies.keys().cloned().collect();
    for n in 61..=100 {
        feed.push(&citizen(n), &format!("CASE-{n}"));
        total += 1;
    }
    wait_until("all three instances sending", WAIT, async || {
        receiver.in_flight() > 16
    })
    .await;
    cluster.instances[2].kill();
    receiver.set_mode(Mode::Answer(Duration::from_millis(50)));
    wait_until("every event delivered by the survivors", WAIT, async || {
        webhooks_delivered().await == total
    })
    .await;

    let receptions = receiver.receptions();
    let bodies = check_receptions(&receptions, &secret);
    let received: BTreeSet<String> = bodies.keys().cloned().collect();
    assert_eq!(
        received,
        services.db.event_ids().await,
        "every event received"
    );
    let mut times: BTreeMap<&str, Vec<Instant>> = BTreeMap::new();
    for reception in &receptions {
        times.entry(&reception.id).or_default().push(reception.at);
    }
    assert!(
        times
            .iter()
            .all(|(id, at)| at.len() == 1 || !first_batch.contains(*id)),
        "the first batch was not sent again"
    );
    let again: Vec<(&str, Duration)> = times
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(id, at)| (*id, at[1] - at[0]))
        .collect();
    assert!(
        !again.is_empty(),
        "the killed instance had claims in flight, so some events are sent again (same id)"
    );
    for (id, gap) in &again {
        // Taken over only once the killed instance's lease ran out (less the moment between
        // its claim and its POST arriving).
        assert!(
            *gap >= LEASE - Duration::from_millis(500),
            "event {id} was sent again {gap:?} after its first POST, within the lease"
        );
    }
    eprintln!(
        "{total} events; {} sent again with the same webhook-id after the kill, {:?} after \
         their first POST",
        again.len(),
        again.iter().map(|(_, gap)| *gap).collect::<Vec<_>>()
    );

    // Published to NATS once each, whoever published and however often.
    let jetstream =
        async_nats::jetstream::new(async_nats::connect(&services.nats_url).await.unwrap());
    let mut messages = 0;
    wait_until("every event on NATS", WAIT, async || {
        let mut stream = jetstream.get_stream(&cluster.stream).await.unwrap();
        messages = stream.info().await.unwrap().state.messages;
        messages >= total as u64
    })
    .await;
    assert_eq!(messages, total as u64, "one NATS message per event");

    // What was written through the killed instance is there, read through instance 1.
    let answer = cluster
        .client(0)
        .post_with(
            json!({"query": "{ me { consents { handle } accessLog(first: 50) { edges { node { \
                reader { client } decision } } } } }"}),
            &[(DEMO_CITIZEN_HEADER, ADA)],
        )
        .await;
    let me = &answer.body["data"]["me"];
    let handles: Vec<&str> = me["consents"]
        .as_array()
        .unwrap_or_else(|| panic!("Ada's consents: {}", answer.body))
        .iter()
        .filter_map(|c| c["handle"].as_str())
        .collect();
    assert!(handles.contains(&handle.as_str()), "{handles:?}");
    let reads_by_reader = me["accessLog"]["edges"]
        .as_array()
        .expect("Ada's access log")
        .iter()
        .filter(|edge| {
            edge["node"]["reader"]["client"] == format!("{READER}-portal")
                && edge["node"]["decision"] == "ALLOWED"
        })
        .count();
    assert!(
        reads_by_reader >= 1,
        "the read through the killed instance is in the audit trail: {}",
        answer.body
    );
    drop((registry, dmv, feed, receiver));
    cluster.instances.truncate(2);
    cluster.finish(services).await;
}
