//! Trust end to end: signed tokens → purpose → field policy → consent ledger → audit trail,
//! over HTTP against fake agencies that count their calls, on an SQLite file and (when
//! `CIVICGRAPH_TEST_POSTGRES_URL` is set) on PostgreSQL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use civicgraph::audit::{AuditLog, Decision};
use civicgraph::auth::dev_tokens::{Persona, mint};
use civicgraph::config::{GatewayConfig, StorageConfig};
use civicgraph::consent::{ConsentLedger, NewConsent};
use civicgraph::identity::CitizenId;
use civicgraph::signing::SigningKey;
use civicgraph::store::Store;
use serde_json::{Value, json};

use crate::support::{Answer, FakeAgency, Reply, RunningAgency, TestGateway};

pub(crate) const ADA: &str = "C0000001";
const LICENSE_ROUTE: &str = "/v1/licenses/{number}";
pub(crate) const PURPOSE: &str = "benefit-eligibility";

const SDL: &str = r#"scalar DateTime

type Query {
  citizen(id: ID!): Citizen
    @connect(connector: "registry", operation: "person")
    @requiresScopes(scopes: [["citizen:lookup"]])
  me: Citizen @connect(connector: "registry", operation: "person", args: {id: "$caller.citizenId"}) @public
  notice: Notice @connect(connector: "registry", operation: "notice") @public
}

type Notice { text: String }

type Citizen {
  id: ID!
  name: String @map(from: "full_name")
    @consent(category: "registry.identity") @owner(agency: "registry") @requiresScopes(scopes: [["registry:read"]])
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

[operations.notice]
path = "/v1/notice"
select = "/notice"
"#;

const DMV_TOML: &str = r#"name = "dmv"
kind = "rest"
base_url = "${DMV_URL}"
# Cached, so that consent decisions are shown to run before the cache.
cache = { ttl_s = 600 }

[operations.license]
path = "/v1/licenses/{number}"
select = "/license"
"#;

/// Which store a world runs on.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite,
    Postgres(String),
}

impl Db {
    /// Both stores, PostgreSQL only when configured.
    fn all() -> Vec<Db> {
        let mut dbs = vec![Db::Sqlite];
        match std::env::var("CIVICGRAPH_TEST_POSTGRES_URL") {
            Ok(url) => dbs.push(Db::Postgres(url)),
            Err(_) => {
                eprintln!("skipped the PostgreSQL half: CIVICGRAPH_TEST_POSTGRES_URL is not set")
            }
        }
        dbs
    }
}

/// A gateway with the trust configuration over a fake registry and DMV, plus direct handles
/// on its ledger and audit trail (a second connection, as another instance would have).
pub(crate) struct World {
    dir: tempfile::TempDir,
    gateway: TestGateway,
    pub(crate) dmv: RunningAgency,
    pub(crate) registry: RunningAgency,
    config: GatewayConfig,
    config_path: PathBuf,
    ledger: ConsentLedger,
    audit: AuditLog,
    store: Store,
    storage_url: String,
    pg_schema: Option<(String, String)>,
}

fn gateway_toml(dir: &Path, storage_url: &str, on_denied: &str) -> String {
    let dir = dir.display();
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[storage]
url = "{storage_url}"
max_connections = 4

[auth]
client_cert_header = "x-client-cert"

[[auth.issuers]]
name = "local-dev"
issuer = "urn:civicgraph:test"
audience = "civicgraph"
role = "claim"
keys = {{ dev_key = "{dir}/dev-issuer.pem" }}

[trust]
signing_key = "{dir}/signing.pem"
on_denied = "{on_denied}"

[trust.purposes]
benefit-eligibility = "checking your eligibility for benefits"
fraud-investigation = "investigating suspected fraud"
tax-assessment = "assessing your taxes"

[trust.categories]
"registry.identity" = "your name"
"dmv.license" = "your driver's licence"
"dmv.vehicles" = "the vehicles registered to you"

[trust.agencies.registry]
name = "the Population Registry"
legal_basis = "Population Register Act §4"

[trust.agencies.dmv]
name = "the Motor Vehicle Agency"
legal_basis = "Motor Vehicle Act §21"

[trust.agencies.benefits]
name = "the Benefits Agency"

[audit]
checkpoint_file = "{dir}/checkpoints.jsonl"
checkpoint_interval_s = 1
timeout_ms = 300
"#
    )
}

async fn pg_schema(base: &str) -> (String, String) {
    use sqlx::Connection;
    let schema = format!("cg_trust_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .expect("connect to CIVICGRAPH_TEST_POSTGRES_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create a schema for the test");
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    (url, schema)
}

impl World {
    pub(crate) async fn start(db: &Db) -> Self {
        Self::start_with(db, "null", Reply::json(200, license())).await
    }

    async fn start_with(db: &Db, on_denied: &str, dmv_reply: Reply) -> Self {
        let dir = tempfile::tempdir().expect("a directory for the world");
        let (storage_url, pg_schema) = match db {
            Db::Sqlite => (
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("gateway.db").display()
                ),
                None,
            ),
            Db::Postgres(base) => {
                let (url, schema) = pg_schema(base).await;
                (url, Some((base.clone(), schema)))
            }
        };
        let registry = FakeAgency::new()
            .route(
                "/v1/people/{id}",
                Reply::json(
                    200,
                    json!({"person": {"id": ADA, "full_name": "Ada Lovelace", "license": "D1234567"}}),
                ),
            )
            .route(
                "/v1/notice",
                Reply::json(200, json!({"notice": {"text": "Offices close at noon."}})),
            )
            .run()
            .await;
        let dmv = FakeAgency::new()
            .route(LICENSE_ROUTE, dmv_reply)
            .run()
            .await;
        let toml = gateway_toml(dir.path(), &storage_url, on_denied);
        let config: GatewayConfig = toml::from_str(&toml).expect("the test configuration parses");
        let consent_sdl = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/consent.graphql"),
        )
        .expect("the shipped consent schema")
        .replace("extend type Mutation", "type Mutation");
        let gateway = TestGateway::builder()
            .gateway_toml(&toml)
            .schema("citizen.graphql", SDL)
            .schema("consent.graphql", &consent_sdl)
            .connector("registry.toml", REGISTRY_TOML)
            .connector("dmv.toml", DMV_TOML)
            .var("REGISTRY_URL", &registry.url())
            .var("DMV_URL", &dmv.url())
            .build()
            .await;
        let store = Store::connect(&StorageConfig {
            url: storage_url.clone(),
            max_connections: 4,
        })
        .await
        .expect("a second connection to the gateway's store");
        let config_path = dir.path().join("civicgraph.toml");
        std::fs::write(&config_path, &toml).expect("write the configuration for the CLI");
        Self {
            ledger: ConsentLedger::new(store.clone(), std::sync::Arc::new(config.trust.clone())),
            audit: AuditLog::new(store.clone(), Duration::from_secs(5)),
            store,
            dir,
            gateway,
            dmv,
            registry,
            config,
            config_path,
            storage_url,
            pg_schema,
        }
    }

    /// Drops the PostgreSQL schema (SQLite files go with the directory).
    async fn finish(self) {
        self.store.close().await;
        if let Some((base, schema)) = &self.pg_schema {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(base).await {
                let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }

    pub(crate) fn token(&self, persona: &Persona) -> String {
        mint(
            &self.config,
            Path::new("/"),
            persona,
            Utc::now(),
            chrono::Duration::hours(1),
        )
        .expect("mint a test token")
    }

    pub(crate) async fn ask(
        &self,
        token: Option<&str>,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(bearer) = &bearer {
            all.push(("authorization", bearer));
        }
        self.gateway.post_with(json!({"query": query}), &all).await
    }

    fn license_calls(&self) -> usize {
        self.dmv.calls(LICENSE_ROUTE)
    }

    async fn grant(
        &self,
        citizen: &str,
        grantee: &str,
        categories: &[&str],
        purpose: &str,
        (from, until): (DateTime<Utc>, DateTime<Utc>),
        now: DateTime<Utc>,
    ) -> String {
        self.ledger
            .grant(
                NewConsent {
                    citizen: CitizenId::parse(citizen).unwrap(),
                    grantee: grantee.to_string(),
                    categories: categories.iter().map(|c| c.to_string()).collect(),
                    purpose: purpose.to_string(),
                    valid_from: from,
                    valid_until: until,
                },
                now,
            )
            .await
            .expect("a valid grant")
            .handle
    }
}

fn license() -> Value {
    json!({"license": {"number": "D1234567", "status": "VALID"}})
}

pub(crate) fn citizen(id: &str) -> Persona {
    Persona::Citizen(CitizenId::parse(id).unwrap())
}

pub(crate) fn agency(agency: &str, scopes: &[&str], purpose: &str) -> Persona {
    Persona::Agency {
        client_id: format!("{agency}-portal"),
        agency: agency.to_string(),
        scopes: scopes
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
        purpose: purpose.to_string(),
    }
}

/// The code of the error at `path`, if any.
fn code_at(body: &Value, path: &[&str]) -> Option<String> {
    let path: Vec<Value> = path.iter().map(|p| json!(p)).collect();
    body["errors"]
        .as_array()?
        .iter()
        .find(|e| e["path"].as_array() == Some(&path))
        .and_then(|e| e["extensions"]["code"].as_str())
        .map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// The matrix: principal × category × consent state
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Who {
    Citizen(&'static str),
    Operator,
    Anonymous,
    Agency(&'static str, &'static [&'static str]),
}

#[derive(Debug, Clone, Copy)]
enum ConsentSetup {
    None,
    Active(&'static [&'static str]),
    Expired,
    Revoked,
    Paused,
    Pending,
    WrongPurpose,
    AnotherCitizens,
    OtherCategory,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Data,
    Code(&'static str),
    /// The field is never reached (its parent was denied).
    Absent,
}

struct Row {
    name: &'static str,
    who: Who,
    consent: ConsentSetup,
    citizen: Expect,
    name_field: Expect,
    license: Expect,
    dmv_calls: usize,
}

const LOOKUP_DMV: &[&str] = &["citizen:lookup", "registry:read", "dmv:read"];

fn matrix() -> Vec<Row> {
    use ConsentSetup as C;
    use Expect::{Absent, Code, Data};
    let cr = Code("CONSENT_REQUIRED");
    let forbidden = Code("FORBIDDEN");
    let benefits = Who::Agency("benefits", LOOKUP_DMV);
    let row = |name, who, consent, name_field, license, dmv_calls| Row {
        name,
        who,
        consent,
        citizen: Data,
        name_field,
        license,
        dmv_calls,
    };
    vec![
        row(
            "the citizen reads their own record",
            Who::Citizen(ADA),
            C::None,
            Data,
            Data,
            1,
        ),
        row(
            "another citizen gets nothing of this record",
            Who::Citizen("C0000002"),
            C::None,
            forbidden,
            forbidden,
            0,
        ),
        row(
            "an operator may look up but not read",
            Who::Operator,
            C::None,
            forbidden,
            forbidden,
            0,
        ),
        Row {
            name: "anonymous callers read public fields only",
            who: Who::Anonymous,
            consent: C::None,
            citizen: forbidden,
            name_field: Absent,
            license: Absent,
            dmv_calls: 0,
        },
        Row {
            name: "an agency without the lookup scope cannot look up",
            who: Who::Agency("benefits", &["dmv:read", "registry:read"]),
            consent: C::Active(&["dmv.license", "registry.identity"]),
            citizen: forbidden,
            name_field: Absent,
            license: Absent,
            dmv_calls: 0,
        },
        row(
            "the owning agency reads its data on its legal basis",
            Who::Agency("dmv", LOOKUP_DMV),
            C::None,
            cr,
            Data,
            1,
        ),
        row(
            "the owning agency still needs the scope",
            Who::Agency("dmv", &["citizen:lookup", "registry:read"]),
            C::None,
            cr,
            forbidden,
            0,
        ),
        row(
            "another agency without consent",
            benefits,
            C::None,
            cr,
            cr,
            0,
        ),
        row(
            "another agency with a live consent",
            benefits,
            C::Active(&["dmv.license"]),
            cr,
            Data,
            1,
        ),
        row(
            "a consent covering both categories",
            benefits,
            C::Active(&["dmv.license", "registry.identity"]),
            Data,
            Data,
            1,
        ),
        row("an expired consent", benefits, C::Expired, cr, cr, 0),
        row("a revoked consent", benefits, C::Revoked, cr, cr, 0),
        row("a paused consent", benefits, C::Paused, cr, cr, 0),
        row(
            "a consent that has not started",
            benefits,
            C::Pending,
            cr,
            cr,
            0,
        ),
        row(
            "a consent for another purpose",
            benefits,
            C::WrongPurpose,
            cr,
            cr,
            0,
        ),
        row(
            "another citizen's consent",
            benefits,
            C::AnotherCitizens,
            cr,
            cr,
            0,
        ),
        row(
            "a consent for another category",
            benefits,
            C::OtherCategory,
            cr,
            cr,
            0,
        ),
        row(
            "a partner with only tax:read asking for DMV fields (BAD_INPUTS 37)",
            Who::Agency("benefits", &["citizen:lookup", "tax:read"]),
            C::Active(&["dmv.license", "registry.identity"]),
            forbidden,
            forbidden,
            0,
        ),
    ]
}

async fn set_up_consent(world: &World, setup: ConsentSetup) {
    let now = Utc::now();
    let hour = chrono::Duration::hours(1);
    let year = chrono::Duration::days(365);
    let licence = &["dmv.license"][..];
    match setup {
        ConsentSetup::None => {}
        ConsentSetup::Active(categories) => {
            world
                .grant(ADA, "benefits", categories, PURPOSE, (now, now + year), now)
                .await;
        }
        ConsentSetup::Expired => {
            let then = now - hour * 3;
            world
                .grant(ADA, "benefits", licence, PURPOSE, (then, then + hour), then)
                .await;
        }
        ConsentSetup::Revoked | ConsentSetup::Paused => {
            let handle = world
                .grant(ADA, "benefits", licence, PURPOSE, (now, now + year), now)
                .await;
            let ada = CitizenId::parse(ADA).unwrap();
            let changed = if matches!(setup, ConsentSetup::Revoked) {
                world.ledger.revoke(&ada, &handle, now).await
            } else {
                world.ledger.pause(&ada, &handle, now).await
            };
            changed.expect("the change is made");
        }
        ConsentSetup::Pending => {
            world
                .grant(
                    ADA,
                    "benefits",
                    licence,
                    PURPOSE,
                    (now + hour, now + year),
                    now,
                )
                .await;
        }
        ConsentSetup::WrongPurpose => {
            world
                .grant(
                    ADA,
                    "benefits",
                    licence,
                    "fraud-investigation",
                    (now, now + year),
                    now,
                )
                .await;
        }
        ConsentSetup::AnotherCitizens => {
            world
                .grant(
                    "C0000002",
                    "benefits",
                    licence,
                    PURPOSE,
                    (now, now + year),
                    now,
                )
                .await;
        }
        ConsentSetup::OtherCategory => {
            world
                .grant(
                    ADA,
                    "benefits",
                    &["dmv.vehicles"],
                    PURPOSE,
                    (now, now + year),
                    now,
                )
                .await;
        }
    }
}

fn check(body: &Value, root: &str, field: &str, expect: Expect, row: &str) {
    match expect {
        Expect::Data => assert!(
            !body["data"][root][field].is_null() && code_at(body, &[root, field]).is_none(),
            "{row}: `{field}` should be served: {body}"
        ),
        Expect::Code(code) => {
            assert!(
                body["data"][root][field].is_null(),
                "{row}: `{field}` leaked: {body}"
            );
            assert_eq!(
                code_at(body, &[root, field]).as_deref(),
                Some(code),
                "{row}: `{field}`: {body}"
            );
        }
        Expect::Absent => assert!(
            code_at(body, &[root, field]).is_none(),
            "{row}: `{field}` should not be reached: {body}"
        ),
    }
}

async fn run_matrix(db: &Db) {
    for row in matrix() {
        let world = World::start(db).await;
        set_up_consent(&world, row.consent).await;
        let (token, root) = match row.who {
            Who::Citizen(id) => (Some(world.token(&citizen(id))), "me"),
            Who::Operator => (
                Some(world.token(&Persona::Operator { name: "ops".into() })),
                "citizen",
            ),
            Who::Anonymous => (None, "citizen"),
            Who::Agency(code, scopes) => {
                (Some(world.token(&agency(code, scopes, PURPOSE))), "citizen")
            }
        };
        let query = if root == "me" {
            "{ me { id name license { number status } } }".to_string()
        } else {
            format!(r#"{{ citizen(id: "{ADA}") {{ id name license {{ number status }} }} }}"#)
        };
        let answer = world.ask(token.as_deref(), &query, &[]).await;
        assert_eq!(answer.status, 200, "{}: {}", row.name, answer.text);
        let body = &answer.body;
        match row.citizen {
            Expect::Code(code) => {
                assert!(body["data"][root].is_null(), "{}: {body}", row.name);
                assert_eq!(
                    code_at(body, &[root]).as_deref(),
                    Some(code),
                    "{}: {body}",
                    row.name
                );
            }
            _ => assert_eq!(body["data"][root]["id"], json!(ADA), "{}: {body}", row.name),
        }
        check(body, root, "name", row.name_field, row.name);
        check(body, root, "license", row.license, row.name);
        assert_eq!(
            world.license_calls(),
            row.dmv_calls,
            "{}: DMV calls",
            row.name
        );

        // Every decision on the licence is in the audit trail, with its basis.
        let (records, _) = world
            .audit
            .for_citizen(&CitizenId::parse(ADA).unwrap(), 50, None)
            .await
            .expect("read the audit trail");
        let licence_records: Vec<_> = records
            .iter()
            .filter(|r| r.record.fields.contains("Citizen.license"))
            .collect();
        match row.license {
            Expect::Data => {
                assert_eq!(licence_records.len(), 1, "{}: {records:?}", row.name);
                let record = &licence_records[0].record;
                assert_eq!(record.decision, Decision::Allowed, "{}", row.name);
                let basis = record.basis.clone().unwrap_or_default();
                assert!(
                    basis == "self"
                        || basis.starts_with("legal basis: ")
                        || basis.starts_with("consent cns_"),
                    "{}: {basis}",
                    row.name
                );
            }
            Expect::Code("CONSENT_REQUIRED") => {
                assert_eq!(licence_records.len(), 1, "{}: {records:?}", row.name);
                let record = &licence_records[0].record;
                assert_eq!(record.decision, Decision::ConsentRequired, "{}", row.name);
                assert_eq!(record.purpose.as_deref(), Some(PURPOSE), "{}", row.name);
                assert_eq!(record.agency.as_deref(), Some("benefits"), "{}", row.name);
            }
            _ => {}
        }
        world.finish().await;
    }
}

#[tokio::test]
async fn the_policy_matrix_holds_on_sqlite_and_postgres() {
    for db in Db::all() {
        run_matrix(&db).await;
    }
}

#[tokio::test]
async fn consent_required_names_the_category_and_the_purpose() {
    let world = World::start(&Db::Sqlite).await;
    let token = world.token(&agency("benefits", LOOKUP_DMV, PURPOSE));
    let answer = world
        .ask(
            Some(&token),
            &format!(r#"{{ citizen(id: "{ADA}") {{ license {{ number }} }} }}"#),
            &[],
        )
        .await;
    let error = &answer.body["errors"][0];
    assert_eq!(error["path"], json!(["citizen", "license"]));
    assert_eq!(
        error["extensions"],
        json!({"code": "CONSENT_REQUIRED", "category": "dmv.license", "purpose": PURPOSE})
    );
    world.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Purpose binding
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_agency_request_states_one_allowed_catalogued_purpose_which_backends_receive() {
    let world = World::start(&Db::Sqlite).await;
    // The token states `benefit-eligibility`; the header may narrow to another allowed one
    // only if the token allows it, so a second token allows two and states none.
    let now = Utc::now();
    let two = {
        use civicgraph::signing::SigningKey;
        let key = SigningKey::load(&world.dir.path().join("dev-issuer.pem")).unwrap();
        key.sign(
            "at+jwt",
            &json!({
                "iss": "urn:civicgraph:test", "aud": "civicgraph", "sub": "dmv-portal",
                "exp": now.timestamp() + 600, "iat": now.timestamp(), "role": "agency",
                "agency": "dmv", "scope": "citizen:lookup dmv:read",
                "purposes": ["fraud-investigation", "benefit-eligibility"],
            }),
        )
        .unwrap()
    };
    let query = format!(r#"{{ citizen(id: "{ADA}") {{ license {{ number }} }} }}"#);
    let cases = [
        (None, 400, "PURPOSE_REQUIRED"),
        (Some("no-such-purpose"), 400, "UNKNOWN_PURPOSE"),
        (Some("tax-assessment"), 403, "PURPOSE_NOT_ALLOWED"),
    ];
    for (header, status, code) in cases {
        let headers: Vec<(&str, &str)> = header.map(|h| ("x-purpose", h)).into_iter().collect();
        let answer = world.ask(Some(&two), &query, &headers).await;
        assert_eq!(answer.status, status, "{header:?}: {}", answer.text);
        assert_eq!(
            answer.body["errors"][0]["extensions"]["code"],
            json!(code),
            "{header:?}"
        );
        assert!(
            answer.body.get("data").is_none(),
            "{header:?}: no data at all"
        );
    }
    assert_eq!(world.license_calls(), 0, "refused requests call no backend");

    let answer = world
        .ask(Some(&two), &query, &[("x-purpose", "fraud-investigation")])
        .await;
    assert_eq!(
        answer.body["data"]["citizen"]["license"]["number"],
        json!("D1234567")
    );
    let sent = world.dmv.requests();
    assert_eq!(
        sent[0]
            .headers
            .get("x-purpose")
            .and_then(|v| v.to_str().ok()),
        Some("fraud-investigation"),
        "the backend hears the purpose"
    );
    assert!(
        sent[0].headers.get("x-request-id").is_some(),
        "and the request id"
    );
    world.finish().await;
}

// ---------------------------------------------------------------------------------------------
// The citizen's side: grant → receipt → data → access log → revoke
// ---------------------------------------------------------------------------------------------

async fn run_consent_flow(db: &Db) {
    let world = World::start(db).await;
    let agency_token = world.token(&agency("benefits", LOOKUP_DMV, PURPOSE));
    let citizen_token = world.token(&citizen(ADA));
    let query = format!(r#"{{ citizen(id: "{ADA}") {{ license {{ number status }} }} }}"#);

    // 1. No consent: CONSENT_REQUIRED and the DMV is never called.
    let before = world.ask(Some(&agency_token), &query, &[]).await;
    assert_eq!(
        code_at(&before.body, &["citizen", "license"]).as_deref(),
        Some("CONSENT_REQUIRED")
    );
    assert_eq!(world.license_calls(), 0);

    // 2. The citizen grants consent and gets a signed receipt.
    let grant = world
        .ask(
            Some(&citizen_token),
            r#"mutation { grantConsent(grantee: "benefits", categories: ["dmv.license"], purpose: "benefit-eligibility") {
                 consent { handle status grantee { name } categories { code description } purpose { code } }
                 receipt } }"#,
            &[],
        )
        .await;
    assert_eq!(grant.status, 200, "{}", grant.text);
    let change = &grant.body["data"]["grantConsent"];
    assert_eq!(change["consent"]["status"], json!("ACTIVE"));
    assert_eq!(
        change["consent"]["grantee"]["name"],
        json!("the Benefits Agency")
    );
    let handle = change["consent"]["handle"]
        .as_str()
        .expect("a handle")
        .to_string();
    let receipt = change["receipt"].as_str().expect("a receipt");
    let key = SigningKey::load(&world.dir.path().join("signing.pem")).unwrap();
    let claims = civicgraph::consent::receipt::verify(key.verifier(), receipt)
        .expect("the receipt verifies");
    assert_eq!(claims.consent_handle, handle);

    // 3. The same query now answers, and the backend heard the purpose.
    let after = world.ask(Some(&agency_token), &query, &[]).await;
    assert_eq!(
        after.body["data"]["citizen"]["license"],
        json!({"number": "D1234567", "status": "VALID"}),
        "{}",
        after.text
    );
    assert_eq!(world.license_calls(), 1);

    // 4. The citizen's access log shows that read, its purpose and basis, in plain words.
    let log = world
        .ask(
            Some(&citizen_token),
            r#"{ me { consents { handle status } accessLog(first: 10) {
                   edges { cursor node { decision reader { kind name } purpose { code description } basis summary fields } }
                   pageInfo { hasNextPage endCursor } } } }"#,
            &[],
        )
        .await;
    let edges = log.body["data"]["me"]["accessLog"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let read = edges
        .iter()
        .map(|e| &e["node"])
        .find(|n| n["decision"] == json!("ALLOWED") && n["reader"]["kind"] == json!("AGENCY"))
        .unwrap_or_else(|| panic!("the agency's read is logged: {}", log.text));
    assert_eq!(read["purpose"]["code"], json!(PURPOSE));
    assert_eq!(read["basis"], json!(format!("consent {handle}")));
    assert_eq!(
        read["summary"],
        json!(
            "The Benefits Agency read your driver's licence for checking your eligibility for benefits, with your consent."
        )
    );
    assert!(
        edges
            .iter()
            .any(|e| e["node"]["decision"] == json!("CONSENT_REQUIRED")),
        "the refused attempt is logged too: {}",
        log.text
    );

    // 5. Revocation holds from the very next request.
    let revoke = world
        .ask(
            Some(&citizen_token),
            &format!(r#"mutation {{ revokeConsent(handle: "{handle}") {{ consent {{ status }} receipt }} }}"#),
            &[],
        )
        .await;
    assert_eq!(
        revoke.body["data"]["revokeConsent"]["consent"]["status"],
        json!("REVOKED"),
        "{}",
        revoke.text
    );
    let denied = world.ask(Some(&agency_token), &query, &[]).await;
    assert_eq!(
        code_at(&denied.body, &["citizen", "license"]).as_deref(),
        Some("CONSENT_REQUIRED")
    );
    assert_eq!(
        world.license_calls(),
        1,
        "no backend call after the revocation"
    );

    // 6. Someone else's consent cannot be revoked, nor a missing one; bad grants change nothing.
    let stranger = world.token(&citizen("C0000002"));
    let answer = world
        .ask(
            Some(&stranger),
            &format!(r#"mutation {{ revokeConsent(handle: "{handle}") {{ receipt }} }}"#),
            &[],
        )
        .await;
    assert_eq!(
        answer.body["errors"][0]["extensions"]["code"],
        json!("NOT_FOUND"),
        "{}",
        answer.text
    );
    let answer = world
        .ask(
            Some(&citizen_token),
            r#"mutation { grantConsent(grantee: "nsa", categories: ["dmv.license"], purpose: "benefit-eligibility") { receipt } }"#,
            &[],
        )
        .await;
    assert_eq!(
        answer.body["errors"][0]["extensions"]["code"],
        json!("BAD_USER_INPUT"),
        "{}",
        answer.text
    );
    let answer = world
        .ask(
            Some(&agency_token),
            r#"mutation { grantConsent(grantee: "benefits", categories: ["dmv.license"], purpose: "benefit-eligibility") { receipt } }"#,
            &[],
        )
        .await;
    assert_eq!(
        answer.body["errors"][0]["extensions"]["code"],
        json!("FORBIDDEN"),
        "agencies cannot grant"
    );
    let consents = world
        .ledger
        .list(&CitizenId::parse(ADA).unwrap())
        .await
        .unwrap();
    assert_eq!(consents.len(), 1, "only the one real grant exists");

    // 7. `civicgraph audit verify` passes on the chain, and fails once a row is edited.
    let (records, _) = world
        .audit
        .for_citizen(&CitizenId::parse(ADA).unwrap(), 100, None)
        .await
        .unwrap();
    assert!(records.len() >= 3, "{records:?}");
    civicgraph::audit::write_checkpoint(
        &world.audit,
        &key,
        &world.dir.path().join("checkpoints.jsonl"),
    )
    .await
    .expect("a checkpoint");
    let verify = run_audit_verify(&world);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    tamper(&world, records[0].seq).await;
    let verify = run_audit_verify(&world);
    assert_eq!(
        verify.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(out.contains(&format!("record {}", records[0].seq)), "{out}");
    world.finish().await;
}

fn run_audit_verify(world: &World) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_civicgraph"))
        .args(["audit", "verify", "--config"])
        .arg(&world.config_path)
        .env_remove("CIVICGRAPH_STORAGE_URL")
        .output()
        .expect("run civicgraph audit verify")
}

/// What an insider with database rights would do: switch off the guard and edit a record.
async fn tamper(world: &World, seq: i64) {
    let sqls: &[&str] = if world.pg_schema.is_some() {
        &[
            "ALTER TABLE audit_records DISABLE TRIGGER USER",
            "UPDATE audit_records SET purpose = 'tax-assessment' WHERE seq = $1",
        ]
    } else {
        &[
            "DROP TRIGGER IF EXISTS audit_records_no_update",
            "UPDATE audit_records SET purpose = 'tax-assessment' WHERE seq = $1",
        ]
    };
    match &world.store {
        Store::Sqlite(pool) => {
            let names: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_records'")
                    .fetch_all(pool)
                    .await
                    .unwrap();
            for (name,) in names {
                sqlx::query(&format!("DROP TRIGGER {name}"))
                    .execute(pool)
                    .await
                    .unwrap();
            }
            sqlx::query(sqls[1]).bind(seq).execute(pool).await.unwrap();
        }
        Store::Postgres(pool) => {
            sqlx::query(sqls[0]).execute(pool).await.unwrap();
            sqlx::query(sqls[1]).bind(seq).execute(pool).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_citizen_grants_reads_are_logged_and_revocation_holds_on_sqlite_and_postgres() {
    for db in Db::all() {
        run_consent_flow(&db).await;
    }
}

#[tokio::test]
async fn the_access_log_pages_newest_first() {
    let world = World::start(&Db::Sqlite).await;
    let me = world.token(&citizen(ADA));
    for _ in 0..5 {
        let answer = world.ask(Some(&me), "{ me { name } }", &[]).await;
        assert_eq!(answer.body["data"]["me"]["name"], json!("Ada Lovelace"));
    }
    let page = |after: Option<String>| {
        let after = after
            .map(|a| format!(r#", after: "{a}""#))
            .unwrap_or_default();
        format!(
            "{{ me {{ accessLog(first: 2{after}) {{ edges {{ cursor node {{ reader {{ kind }} summary }} }} pageInfo {{ hasNextPage endCursor }} }} }} }}"
        )
    };
    let mut cursors = Vec::new();
    let mut after = None;
    loop {
        let answer = world.ask(Some(&me), &page(after.clone()), &[]).await;
        let log = &answer.body["data"]["me"]["accessLog"];
        for edge in log["edges"].as_array().expect("edges") {
            cursors.push(edge["cursor"].as_str().unwrap().parse::<i64>().unwrap());
            assert_eq!(edge["node"]["summary"], json!("You read your name."));
        }
        if log["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = log["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
    // Five reads before the first page; each page's own read lands after it was taken.
    assert!(cursors.len() >= 5, "{cursors:?}");
    assert!(
        cursors.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats: {cursors:?}"
    );
    let bad = world
        .ask(
            Some(&me),
            "{ me { accessLog(first: 500) { edges { cursor } } } }",
            &[],
        )
        .await;
    assert_eq!(
        bad.body["errors"][0]["extensions"]["code"],
        json!("BAD_USER_INPUT")
    );
    let other = world.token(&agency("benefits", LOOKUP_DMV, PURPOSE));
    let answer = world
        .ask(
            Some(&other),
            &format!(r#"{{ citizen(id: "{ADA}") {{ accessLog {{ edges {{ cursor }} }} }} }}"#),
            &[],
        )
        .await;
    assert_eq!(answer.body["data"]["citizen"]["accessLog"], Value::Null);
    assert_eq!(
        answer.body["errors"][0]["extensions"]["code"],
        json!("FORBIDDEN")
    );
    world.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Revocation racing a load in flight
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_revocation_during_a_backend_load_withholds_what_it_loaded() {
    for db in Db::all() {
        let world = World::start_with(
            &db,
            "null",
            Reply::json(200, license()).after(Duration::from_millis(600)),
        )
        .await;
        let now = Utc::now();
        let handle = world
            .grant(
                ADA,
                "benefits",
                &["dmv.license"],
                PURPOSE,
                (now, now + chrono::Duration::days(30)),
                now,
            )
            .await;
        let token = world.token(&agency("benefits", LOOKUP_DMV, PURPOSE));
        let query = format!(r#"{{ citizen(id: "{ADA}") {{ id license {{ number }} }} }}"#);
        let (answer, ()) = tokio::join!(world.ask(Some(&token), &query, &[]), async {
            world.dmv.wait_for_calls(LICENSE_ROUTE, 1).await;
            world
                .ledger
                .revoke(&CitizenId::parse(ADA).unwrap(), &handle, Utc::now())
                .await
                .expect("revoke while the load is in flight");
        });
        assert_eq!(world.license_calls(), 1, "the load was in flight");
        assert_eq!(answer.body["data"]["citizen"]["id"], json!(ADA));
        assert_eq!(
            answer.body["data"]["citizen"]["license"],
            Value::Null,
            "0 revoked values served: {}",
            answer.text
        );
        assert!(!answer.text.contains("D1234567"), "{}", answer.text);
        assert_eq!(
            code_at(&answer.body, &["citizen", "license"]).as_deref(),
            Some("CONSENT_REQUIRED")
        );
        let (records, _) = world
            .audit
            .for_citizen(&CitizenId::parse(ADA).unwrap(), 10, None)
            .await
            .unwrap();
        assert!(
            records
                .iter()
                .all(|r| r.record.decision != Decision::Allowed),
            "nothing is recorded as read: {records:?}"
        );
        // The next request does not even call the backend.
        let again = world.ask(Some(&token), &query, &[]).await;
        assert_eq!(
            code_at(&again.body, &["citizen", "license"]).as_deref(),
            Some("CONSENT_REQUIRED")
        );
        assert_eq!(world.license_calls(), 1);
        // Consent given again: the load that raced the revocation was not kept in the cache
        // (BAD_INPUTS row 40), so the backend is asked afresh.
        let now = Utc::now();
        world
            .grant(
                ADA,
                "benefits",
                &["dmv.license"],
                PURPOSE,
                (now, now + chrono::Duration::days(30)),
                now,
            )
            .await;
        let regranted = world.ask(Some(&token), &query, &[]).await;
        assert_eq!(
            regranted.body["data"]["citizen"]["license"]["number"],
            json!("D1234567"),
            "{}",
            regranted.text
        );
        assert_eq!(
            world.license_calls(),
            2,
            "not served from a cache written by the raced load"
        );
        world.finish().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The audit store down; the reject option
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn with_the_audit_store_locked_personal_data_fails_closed_and_public_data_flows() {
    for db in Db::all() {
        let world = World::start(&db).await;
        let me = world.token(&citizen(ADA));
        // Another connection takes the audit head's write lock and keeps it.
        let lock = AuditLock::take(&world).await;
        let started = Instant::now();
        let answer = world
            .ask(
                Some(&me),
                "{ notice { text } me { id name license { number } } }",
                &[],
            )
            .await;
        let took = started.elapsed();
        assert_eq!(answer.status, 503, "{}", answer.text);
        assert!(answer.headers.get("retry-after").is_some());
        assert!(took < Duration::from_secs(2), "failed closed in {took:?}");
        assert_eq!(
            answer.body["data"]["notice"]["text"],
            json!("Offices close at noon.")
        );
        assert_eq!(answer.body["data"]["me"]["id"], json!(ADA));
        for field in ["name", "license"] {
            assert_eq!(
                answer.body["data"]["me"][field],
                Value::Null,
                "{field} withheld: {}",
                answer.text
            );
            assert_eq!(
                code_at(&answer.body, &["me", field]).as_deref(),
                Some("AUDIT_UNAVAILABLE")
            );
        }
        assert!(!answer.text.contains("Ada Lovelace") && !answer.text.contains("D1234567"));
        let public = world.ask(None, "{ notice { text } }", &[]).await;
        assert_eq!(
            public.status, 200,
            "public data needs no audit: {}",
            public.text
        );
        lock.release().await;
        let recovered = world.ask(Some(&me), "{ me { name } }", &[]).await;
        assert_eq!(
            recovered.body["data"]["me"]["name"],
            json!("Ada Lovelace"),
            "{}",
            recovered.text
        );
        world.finish().await;
    }
}

/// A second connection holding the audit trail's write lock.
enum AuditLock {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl AuditLock {
    async fn take(world: &World) -> Self {
        let store = Store::connect(&StorageConfig {
            url: world.storage_url.clone(),
            max_connections: 1,
        })
        .await
        .unwrap();
        match store {
            Store::Sqlite(pool) => {
                let mut conn = pool.acquire().await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                Self::Sqlite(conn)
            }
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("LOCK TABLE audit_head IN ACCESS EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                Self::Postgres(tx)
            }
        }
    }

    async fn release(self) {
        match self {
            Self::Sqlite(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();
            }
            Self::Postgres(tx) => tx.rollback().await.unwrap(),
        }
    }
}

#[tokio::test]
async fn the_reject_option_refuses_the_whole_operation_without_calling_the_backend() {
    let world = World::start_with(&Db::Sqlite, "reject", Reply::json(200, license())).await;
    let token = world.token(&agency(
        "benefits",
        &["citizen:lookup", "tax:read"],
        PURPOSE,
    ));
    let answer = world
        .ask(
            Some(&token),
            &format!(
                r#"{{ notice {{ text }} citizen(id: "{ADA}") {{ id license {{ number }} }} }}"#
            ),
            &[],
        )
        .await;
    assert_eq!(answer.status, 403, "{}", answer.text);
    assert!(
        answer.body.get("data").is_none(),
        "no data at all: {}",
        answer.text
    );
    assert_eq!(
        answer.body["errors"][0]["extensions"]["code"],
        json!("FORBIDDEN")
    );
    assert_eq!(
        answer.body["errors"][0]["path"],
        json!(["citizen", "license"])
    );
    assert_eq!(world.license_calls(), 0);
    assert!(
        world.registry.requests().is_empty(),
        "refused before anything ran: not even the fields it may read reached a backend"
    );
    // What only the ledger can decide is refused after execution, still with no data.
    let consentless = world.token(&agency("benefits", LOOKUP_DMV, PURPOSE));
    let refused = world
        .ask(
            Some(&consentless),
            &format!(r#"{{ citizen(id: "{ADA}") {{ id license {{ number }} }} }}"#),
            &[],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(refused.body.get("data").is_none(), "{}", refused.text);
    assert_eq!(
        refused.body["errors"][0]["extensions"]["code"],
        json!("CONSENT_REQUIRED")
    );
    assert_eq!(world.license_calls(), 0);
    // An operation asking only for what the caller may read is answered as usual.
    let fine = world
        .ask(
            Some(&token),
            &format!(r#"{{ citizen(id: "{ADA}") {{ id }} }}"#),
            &[],
        )
        .await;
    assert_eq!(fine.status, 200, "{}", fine.text);
    world.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Configuration errors and the token command
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn policy_mistakes_in_the_schema_are_reported_at_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let toml = gateway_toml(dir.path(), "sqlite::memory:", "null");
    let sdl = r#"type Query {
  open: Notice @connect(connector: "registry", operation: "notice")
  typo: Notice @connect(connector: "registry", operation: "notice") @consent(category: "dmv.licence") @owner(agency: "dmv")
  both: Notice @connect(connector: "registry", operation: "notice") @public @requiresScopes(scopes: [["a"]])
  strict: Notice! @connect(connector: "registry", operation: "notice") @requiresScopes(scopes: [["a"]])
  whose: Notice @connect(connector: "registry", operation: "notice") @consent(category: "dmv.license")
  stranger: Notice @connect(connector: "registry", operation: "notice") @consent(category: "dmv.license", subject: "$args.id") @owner(agency: "nsa")
  scopes: Notice @connect(connector: "registry", operation: "notice") @requiresScopes(scopes: "dmv:read")
  argless: Notice @connect(connector: "registry", operation: "notice") @consent(category: "dmv.license", subject: "$args.id")
}
type Notice { text: String }
"#;
    let project = TestGateway::builder()
        .gateway_toml(&toml)
        .schema("citizen.graphql", sdl)
        .connector("registry.toml", REGISTRY_TOML)
        .var("REGISTRY_URL", "http://127.0.0.1:9")
        .write();
    let errors = crate::support::check(&project)
        .expect_err("the schema has policy mistakes")
        .to_string();
    for expected in [
        "citizen.graphql:2:3: `Query.open` calls connector `registry` but says nothing about who may read it",
        "citizen.graphql:3:69: unknown data category `dmv.licence`",
        "citizen.graphql:4:69: `Query.both` is `@public`, so it cannot also have",
        "citizen.graphql:5:3: `Query.strict` is protected, so it must be nullable",
        "citizen.graphql:6:70: `@consent` on `Query.whose` needs `subject:`",
        "citizen.graphql:7:128: unknown agency `nsa`",
        "citizen.graphql:8:71: `@requiresScopes`: `scopes` must be a list of lists",
        "citizen.graphql:9:72: `subject` is `$args.id`, but `Query.argless` has no argument `id`",
    ] {
        assert!(
            errors.contains(expected),
            "missing `{expected}` in:\n{errors}"
        );
    }
    assert!(
        !errors.contains("`Query.scopes` calls connector"),
        "reported once:\n{errors}"
    );
}

#[test]
fn the_token_command_prints_only_a_token_and_refuses_without_the_dev_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let toml = gateway_toml(dir.path(), "sqlite::memory:", "null");
    std::fs::create_dir(dir.path().join("schema")).unwrap();
    std::fs::create_dir(dir.path().join("connectors")).unwrap();
    let config = dir.path().join("civicgraph.toml");
    std::fs::write(&config, &toml).unwrap();
    let run = |args: &[&str], config: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_civicgraph"))
            .arg("token")
            .args(args)
            .arg("--config")
            .arg(config)
            .output()
            .expect("run civicgraph token")
    };
    for args in [
        &["citizen", ADA][..],
        &[
            "agency",
            "benefits-portal",
            "--scopes",
            "citizen:lookup,dmv:read",
            "--purpose",
            PURPOSE,
        ][..],
        &["operator"][..],
    ] {
        let out = run(args, &config);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text.trim().split('.').count(),
            3,
            "{args:?}: only a JWS: {text}"
        );
        assert_eq!(text.lines().count(), 1);
    }
    let out = run(
        &[
            "agency",
            "x",
            "--scopes",
            "a",
            "--purpose",
            "nope",
            "--agency",
            "benefits",
        ],
        &config,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown purpose `nope`"));

    let without = dir.path().join("other.toml");
    std::fs::write(&without, "[server]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let out = run(&["operator"], &without);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no local development issuer"));
    let disabled = dir.path().join("disabled.toml");
    std::fs::write(
        &disabled,
        toml.replace("role = \"claim\"", "role = \"claim\"\nenabled = false"),
    )
    .unwrap();
    let out = run(&["operator"], &disabled);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("disabled"));
}

#[tokio::test]
async fn a_certificate_bound_token_is_refused_with_another_certificate() {
    use base64::Engine;
    let world = World::start(&Db::Sqlite).await;
    let ours = b"partner certificate".to_vec();
    let theirs = b"someone else's certificate".to_vec();
    let pem = |der: &[u8]| {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let pem = format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
        percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let now = Utc::now();
    let key = SigningKey::load(&world.dir.path().join("dev-issuer.pem")).unwrap();
    let token = key
        .sign(
            "at+jwt",
            &json!({
                "iss": "urn:civicgraph:test", "aud": "civicgraph", "sub": "dmv-portal",
                "exp": now.timestamp() + 600, "role": "agency", "agency": "dmv",
                "scope": "citizen:lookup dmv:read", "purpose": "fraud-investigation",
                "cnf": {"x5t#S256": civicgraph::auth::tokens::cert_thumbprint(&ours)},
            }),
        )
        .unwrap();
    let query = format!(r#"{{ citizen(id: "{ADA}") {{ license {{ number }} }} }}"#);
    for presented in [Some(pem(&theirs)), None] {
        let headers: Vec<(&str, &str)> = presented
            .as_deref()
            .map(|p| ("x-client-cert", p))
            .into_iter()
            .collect();
        let answer = world.ask(Some(&token), &query, &headers).await;
        assert_eq!(answer.status, 401, "{}", answer.text);
        assert_eq!(
            answer.body["errors"][0]["extensions"]["code"],
            json!("UNAUTHENTICATED")
        );
    }
    let ours = pem(&ours);
    let answer = world
        .ask(Some(&token), &query, &[("x-client-cert", &ours)])
        .await;
    assert_eq!(
        answer.body["data"]["citizen"]["license"]["number"],
        json!("D1234567"),
        "{}",
        answer.text
    );
    world.finish().await;
}
