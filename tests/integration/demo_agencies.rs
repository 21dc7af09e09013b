//! The demo's newer simulated agencies, over their real protocols: the motor vehicle agency's
//! SOAP 1.1 service on a loopback port, and the unemployment insurance database seeded on
//! SQLite always, and on PostgreSQL / MariaDB when `CIVICGRAPH_TEST_POSTGRES_URL` /
//! `CIVICGRAPH_TEST_MYSQL_URL` name a database the tests may create tables in.
//!
//! Then the agencies changing over time: the change feeds the gateway's life-event pollers
//! read (`ui.claims_changed_since`, `registry.changes`, `registry.retirement`,
//! `dmv.expiring_registrations`) and the registry's `change_address`, each called through the
//! shipped connector files; `changeAddress` through the graph; and `demo::start` with the
//! change simulator running.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use civicgraph::config::{ConnectorConfig, LoadedConnector, TomlFile, Vars, load_project};
use civicgraph::connectors::{Arguments, CallError, Connectors, build_connectors};
use civicgraph::demo::changes::{AppliedChange, ChangeSimulator};
use civicgraph::demo::data::{DriverLicense, REFERENCE_DATE, UnemploymentClaim};
use civicgraph::demo::dmv::{
    GET_LICENSE_ACTION, GET_VEHICLES_ACTION, NAMESPACE, SOAP_PATH, SOAP11_ENVELOPE, WSDL,
};
use civicgraph::demo::ui::{self, UiTables, UiWriter};
use civicgraph::demo::{self, DemoOptions, Population, SimulatedAgencies};
use civicgraph::events::signature::WebhookSecret;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use rust_decimal::Decimal;
use serde_json::{Value, json};

const SEED: u64 = 42;

// ---------------------------------------------------------------------------------------------
// A small XML reader for the answers
// ---------------------------------------------------------------------------------------------

/// One element of an answer: its path of local names from the root, its namespace, its text,
/// and whether it carries `xsi:nil="true"`.
#[derive(Debug, Clone)]
struct Node {
    path: String,
    namespace: String,
    text: String,
    nil: bool,
    children: usize,
}

/// Every element of a document in document order; panics on XML that is not well-formed.
fn parse_nodes(xml: &str) -> Vec<Node> {
    let mut reader = NsReader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut nodes: Vec<Node> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    loop {
        let (resolved, event) = reader.read_resolved_event().expect("well-formed XML");
        let namespace = match resolved {
            ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
            _ => String::new(),
        };
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let local = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let parent = open.last().map(|&index| nodes[index].path.clone());
                if let Some(&index) = open.last() {
                    nodes[index].children += 1;
                }
                let nil = start.attributes().flatten().any(|attribute| {
                    attribute.key.local_name().as_ref() == b"nil"
                        && attribute.value.as_ref() == b"true"
                });
                nodes.push(Node {
                    path: match parent {
                        Some(parent) => format!("{parent}/{local}"),
                        None => local,
                    },
                    namespace,
                    text: String::new(),
                    nil,
                    children: 0,
                });
                if matches!(event, Event::Start(_)) {
                    open.push(nodes.len() - 1);
                }
            }
            Event::End(_) => {
                open.pop();
            }
            Event::Text(text) => {
                if let Some(&index) = open.last() {
                    nodes[index]
                        .text
                        .push_str(&text.xml_content().expect("UTF-8"));
                }
            }
            Event::GeneralRef(reference) => {
                let name = reference.decode().expect("UTF-8").into_owned();
                let text = quick_xml::escape::resolve_predefined_entity(&name)
                    .expect("a predefined entity");
                if let Some(&index) = open.last() {
                    nodes[index].text.push_str(text);
                }
            }
            Event::DocType(_) => panic!("an answer must not carry a DTD"),
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(open.is_empty(), "unclosed elements");
    nodes
}

fn node<'a>(nodes: &'a [Node], path: &str) -> Option<&'a Node> {
    nodes.iter().find(|node| node.path == path)
}

fn text<'a>(nodes: &'a [Node], path: &str) -> &'a str {
    match node(nodes, path) {
        Some(node) => node.text.as_str(),
        None => panic!("no element {path}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The DMV over HTTP
// ---------------------------------------------------------------------------------------------

struct Dmv {
    population: Arc<Population>,
    agencies: SimulatedAgencies,
    client: reqwest::Client,
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Dmv {
    async fn start() -> Dmv {
        let population = Arc::new(Population::generate(1_000, SEED));
        let agencies = SimulatedAgencies::start(Arc::clone(&population))
            .await
            .expect("the simulated agencies start");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a client");
        Dmv {
            population,
            agencies,
            client,
        }
    }

    fn url(&self) -> String {
        format!("{}{SOAP_PATH}", self.agencies.dmv_url)
    }

    async fn post_raw(&self, content_type: &str, action: Option<&str>, body: String) -> Answer {
        let mut request = self
            .client
            .post(self.url())
            .header("content-type", content_type)
            .body(body);
        if let Some(action) = action {
            request = request.header("soapaction", format!("\"{action}\""));
        }
        answer(request.send().await.expect("the DMV answers")).await
    }

    async fn call(&self, operation: &str, license_number: &str) -> Answer {
        let action = if operation == "GetVehicles" {
            GET_VEHICLES_ACTION
        } else {
            GET_LICENSE_ACTION
        };
        self.post_raw(
            "text/xml; charset=utf-8",
            Some(action),
            envelope(operation, license_number),
        )
        .await
    }

    fn first_license(&self) -> &DriverLicense {
        let first = &self.population.people()[0];
        let number = first.license_number.as_deref().expect("C0000001 drives");
        self.population.license(number).expect("a licence")
    }

    /// A well-formed licence number that nobody in the population holds.
    fn unknown_license_number(&self) -> String {
        (0..10_000_000)
            .map(|n| format!("D{n:07}"))
            .find(|number| self.population.license(number).is_none())
            .expect("a free number")
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.text().await.expect("a text body");
    Answer {
        status,
        content_type,
        body,
    }
}

/// A request as a SOAP client library would write it, with its own prefixes.
fn envelope(operation: &str, license_number: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="{SOAP11_ENVELOPE}" xmlns:v1="{NAMESPACE}">
  <soapenv:Header/>
  <soapenv:Body>
    <v1:{operation}>
      <v1:licenseNumber>{license_number}</v1:licenseNumber>
    </v1:{operation}>
  </soapenv:Body>
</soapenv:Envelope>"#
    )
}

/// Asserts a SOAP 1.1 fault with this code, answered with HTTP `status`.
fn assert_fault(answer: &Answer, status: u16, code: &str) -> Vec<Node> {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert!(
        answer.content_type.starts_with("text/xml"),
        "{}",
        answer.content_type
    );
    let nodes = parse_nodes(&answer.body);
    let fault = node(&nodes, "Envelope/Body/Fault").expect("a Fault");
    assert_eq!(fault.namespace, SOAP11_ENVELOPE);
    assert_eq!(text(&nodes, "Envelope/Body/Fault/faultcode"), code);
    assert!(!text(&nodes, "Envelope/Body/Fault/faultstring").is_empty());
    nodes
}

#[tokio::test]
async fn dmv_get_license_returns_the_licence_in_the_agency_namespace() {
    let dmv = Dmv::start().await;
    let license = dmv.first_license();

    let answer = dmv.call("GetLicense", &license.number).await;

    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.content_type, "text/xml; charset=utf-8");
    let nodes = parse_nodes(&answer.body);
    assert_eq!(nodes[0].path, "Envelope");
    assert_eq!(nodes[0].namespace, SOAP11_ENVELOPE);
    let base = "Envelope/Body/GetLicenseResponse/license";
    assert_eq!(
        node(&nodes, base).map(|n| n.namespace.as_str()),
        Some(NAMESPACE)
    );
    assert_eq!(text(&nodes, &format!("{base}/number")), license.number);
    assert_eq!(
        text(&nodes, &format!("{base}/class")),
        license.class.as_str()
    );
    assert_eq!(
        text(&nodes, &format!("{base}/status")),
        license.status.as_str()
    );
    assert_eq!(
        text(&nodes, &format!("{base}/issuedOn")),
        license.issued_on.to_string()
    );
    assert_eq!(
        text(&nodes, &format!("{base}/expiresOn")),
        license.expires_on.to_string()
    );
    assert_eq!(
        text(&nodes, &format!("{base}/points")),
        license.points.to_string()
    );
    let restrictions: Vec<&str> = nodes
        .iter()
        .filter(|node| node.path == format!("{base}/restrictions/restriction"))
        .map(|node| node.text.as_str())
        .collect();
    assert_eq!(restrictions, license.restrictions);
    assert!(node(&nodes, &format!("{base}/restrictions")).is_some());
    assert!(nodes.iter().all(|node| node.path.starts_with("Envelope")
        && (node.path.matches('/').count() < 2 || node.namespace == NAMESPACE)));

    // Restrictions appear as a list, also when a licence has several or none.
    for wanted in [0, 2] {
        let other = dmv
            .population
            .people()
            .iter()
            .filter_map(|person| dmv.population.license(person.license_number.as_deref()?))
            .find(|license| license.restrictions.len() == wanted)
            .expect("such a licence");
        let nodes = parse_nodes(&dmv.call("GetLicense", &other.number).await.body);
        let count = nodes
            .iter()
            .filter(|node| node.path == format!("{base}/restrictions/restriction"))
            .count();
        assert_eq!(count, wanted);
    }
}

#[tokio::test]
async fn dmv_get_vehicles_lists_each_vehicle_with_nil_for_permanent_registrations() {
    let dmv = Dmv::start().await;
    let number = dmv.first_license().number.clone();
    let expected = dmv.population.vehicles_of(&number);
    assert!(!expected.is_empty());

    let answer = dmv.call("GetVehicles", &number).await;

    assert_eq!(answer.status, 200, "{}", answer.body);
    let nodes = parse_nodes(&answer.body);
    let base = "Envelope/Body/GetVehiclesResponse/vehicles/vehicle";
    let served: Vec<(&str, &str, &str, &str, &str, &str)> = nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| node.path == base)
        .map(|(index, _)| {
            let field = |name: &str| {
                nodes[index..]
                    .iter()
                    .find(|node| node.path == format!("{base}/{name}"))
                    .map_or("", |node| node.text.as_str())
            };
            (
                field("vin"),
                field("plate"),
                field("make"),
                field("model"),
                field("year"),
                field("registeredOn"),
            )
        })
        .collect();
    let wanted: Vec<(String, String, String, String, String, String)> = expected
        .iter()
        .map(|v| {
            (
                v.vin.clone(),
                v.plate.clone(),
                v.make.to_string(),
                v.model.to_string(),
                v.year.to_string(),
                v.registered_on.to_string(),
            )
        })
        .collect();
    let wanted: Vec<(&str, &str, &str, &str, &str, &str)> = wanted
        .iter()
        .map(|(a, b, c, d, e, f)| {
            (
                a.as_str(),
                b.as_str(),
                c.as_str(),
                d.as_str(),
                e.as_str(),
                f.as_str(),
            )
        })
        .collect();
    assert_eq!(served, wanted);

    // A historic vehicle's registration never expires: xsi:nil, not an empty date.
    let (owner, vehicle) = dmv
        .population
        .people()
        .iter()
        .filter_map(|person| person.license_number.as_deref())
        .flat_map(|number| {
            dmv.population
                .vehicles_of(number)
                .iter()
                .map(move |vehicle| (number, vehicle))
        })
        .find(|(_, vehicle)| vehicle.registration_expires_on.is_none())
        .expect("a historic vehicle among 1000 citizens");
    let nodes = parse_nodes(&dmv.call("GetVehicles", owner).await.body);
    let vin_index = nodes
        .iter()
        .position(|node| node.path == format!("{base}/vin") && node.text == vehicle.vin)
        .expect("the vehicle is listed");
    let expiry = nodes[vin_index..]
        .iter()
        .find(|node| node.path == format!("{base}/registrationExpiresOn"))
        .expect("registrationExpiresOn is always present");
    assert!(expiry.nil);
    assert!(expiry.text.is_empty());
}

#[tokio::test]
async fn dmv_answers_unknown_licences_with_empty_responses() {
    let dmv = Dmv::start().await;
    let unknown = dmv.unknown_license_number();

    let answer = dmv.call("GetLicense", &unknown).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let nodes = parse_nodes(&answer.body);
    let response = node(&nodes, "Envelope/Body/GetLicenseResponse").expect("a response");
    assert_eq!(response.children, 0, "{}", answer.body);

    let answer = dmv.call("GetVehicles", &unknown).await;
    assert_eq!(answer.status, 200);
    let nodes = parse_nodes(&answer.body);
    let response = node(&nodes, "Envelope/Body/GetVehiclesResponse").expect("a response");
    assert_eq!(response.children, 0, "unknown holder: no vehicles element");

    // A known holder without vehicles gets an empty list instead.
    let carless = dmv
        .population
        .people()
        .iter()
        .filter_map(|person| person.license_number.as_deref())
        .find(|number| dmv.population.vehicles_of(number).is_empty())
        .expect("a licence holder without a vehicle");
    let nodes = parse_nodes(&dmv.call("GetVehicles", carless).await.body);
    let vehicles =
        node(&nodes, "Envelope/Body/GetVehiclesResponse/vehicles").expect("a vehicles element");
    assert_eq!(vehicles.children, 0);
}

#[tokio::test]
async fn dmv_faults_on_bad_requests_with_http_500() {
    let dmv = Dmv::start().await;
    let number = dmv.first_license().number.clone();

    let malformed_number = dmv.call("GetLicense", "12345").await;
    let nodes = assert_fault(&malformed_number, 500, "soap:Client");
    let detail = node(&nodes, "Envelope/Body/Fault/detail/InvalidLicenseNumber")
        .expect("a typed fault detail");
    assert_eq!(detail.namespace, NAMESPACE);

    let not_xml = dmv
        .post_raw(
            "text/xml",
            Some(GET_LICENSE_ACTION),
            "<soap:Envelope".into(),
        )
        .await;
    assert_fault(&not_xml, 500, "soap:Client");

    let unknown_operation = dmv
        .post_raw(
            "text/xml",
            Some(GET_LICENSE_ACTION),
            envelope("RevokeLicense", &number),
        )
        .await;
    assert_fault(&unknown_operation, 500, "soap:Client");

    let wrong_action = dmv
        .post_raw(
            "text/xml",
            Some(GET_VEHICLES_ACTION),
            envelope("GetLicense", &number),
        )
        .await;
    assert_fault(&wrong_action, 500, "soap:Client");

    let no_action = dmv
        .post_raw("text/xml", None, envelope("GetLicense", &number))
        .await;
    assert_fault(&no_action, 500, "soap:Client");

    // An empty SOAPAction defers to the body, as SOAP 1.1 allows.
    let empty_action = dmv
        .post_raw("text/xml", Some(""), envelope("GetLicense", &number))
        .await;
    assert_eq!(empty_action.status, 200, "{}", empty_action.body);

    let soap12 = envelope("GetLicense", &number)
        .replace(SOAP11_ENVELOPE, "http://www.w3.org/2003/05/soap-envelope");
    let version = dmv
        .post_raw("text/xml", Some(GET_LICENSE_ACTION), soap12)
        .await;
    assert_fault(&version, 500, "soap:VersionMismatch");

    let json = dmv
        .post_raw(
            "application/soap+xml",
            Some(GET_LICENSE_ACTION),
            envelope("GetLicense", &number),
        )
        .await;
    assert_fault(&json, 415, "soap:Client");

    let huge = envelope("GetLicense", &number).replace(
        "<soapenv:Header/>",
        &format!("<!-- {} -->", "x".repeat(100_000)),
    );
    let too_large = dmv
        .post_raw("text/xml", Some(GET_LICENSE_ACTION), huge)
        .await;
    assert_fault(&too_large, 413, "soap:Client");
}

#[tokio::test]
async fn dmv_refuses_dtds_without_expanding_entities() {
    let dmv = Dmv::start().await;
    let laughs = format!(
        r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
]>
<soapenv:Envelope xmlns:soapenv="{SOAP11_ENVELOPE}" xmlns:v1="{NAMESPACE}">
  <soapenv:Body><v1:GetLicense><v1:licenseNumber>&lol2;</v1:licenseNumber></v1:GetLicense></soapenv:Body>
</soapenv:Envelope>"#
    );
    let answer = dmv
        .post_raw("text/xml", Some(GET_LICENSE_ACTION), laughs)
        .await;
    let nodes = assert_fault(&answer, 500, "soap:Client");
    assert!(text(&nodes, "Envelope/Body/Fault/faultstring").contains("DTD"));
    assert!(!answer.body.contains("lol"));

    let external = format!(
        r#"<?xml version="1.0"?><!DOCTYPE x SYSTEM "file:///etc/passwd"><soapenv:Envelope xmlns:soapenv="{SOAP11_ENVELOPE}"/>"#
    );
    let answer = dmv
        .post_raw("text/xml", Some(GET_LICENSE_ACTION), external)
        .await;
    assert_fault(&answer, 500, "soap:Client");
}

#[tokio::test]
async fn dmv_serves_its_wsdl_with_its_own_address() {
    let dmv = Dmv::start().await;
    let response = dmv
        .client
        .get(format!("{}?wsdl", dmv.url()))
        .send()
        .await
        .expect("the DMV answers");
    let answer = answer(response).await;

    assert_eq!(answer.status, 200);
    assert!(answer.content_type.starts_with("text/xml"));
    let nodes = parse_nodes(&answer.body);
    assert_eq!(nodes[0].path, "definitions");
    assert_eq!(nodes[0].namespace, "http://schemas.xmlsoap.org/wsdl/");
    assert!(
        answer
            .body
            .contains(r#"targetNamespace="urn:civicgraph:demo:dmv:v1""#)
    );
    for action in [GET_LICENSE_ACTION, GET_VEHICLES_ACTION] {
        assert!(answer.body.contains(&format!(r#"soapAction="{action}""#)));
    }
    assert!(
        answer
            .body
            .contains(&format!(r#"<soap:address location="{}"/>"#, dmv.url())),
        "the WSDL points at the server that served it"
    );
    assert!(node(&nodes, "definitions/types/schema").is_some());
    // The file on disk is the one the connector checks against.
    let on_disk =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors/dmv.wsdl"))
            .expect("connectors/dmv.wsdl");
    assert_eq!(on_disk, WSDL);

    let plain_get = dmv.client.get(dmv.url()).send().await.expect("an answer");
    assert_eq!(plain_get.status().as_u16(), 405);
}

#[tokio::test]
async fn dmv_stops_with_the_other_agencies() {
    let dmv = Dmv::start().await;
    let url = dmv.url();
    let Dmv {
        agencies, client, ..
    } = dmv;
    tokio::time::timeout(Duration::from_secs(10), agencies.shutdown())
        .await
        .expect("shutdown finishes");
    assert!(client.get(format!("{url}?wsdl")).send().await.is_err());
}

// ---------------------------------------------------------------------------------------------
// The unemployment insurance database
// ---------------------------------------------------------------------------------------------

/// A table prefix no other test run uses, so parallel runs can share a database.
fn unique_prefix(name: &str) -> UiTables {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    UiTables::with_prefix(&format!("t{}_{nanos}_{name}_", std::process::id()))
        .expect("a valid prefix")
}

/// `(claim_id, status, filed_on, weekly_benefit, weeks_paid, benefit_end_date, updated_at)` as
/// the population has them, newest first.
type ClaimRow = (
    String,
    String,
    NaiveDate,
    Decimal,
    i32,
    Option<NaiveDate>,
    DateTime<Utc>,
);

/// A [`ClaimRow`] as SQLite stores it: dates, decimals and timestamps as text.
type SqliteClaimRow = (String, String, String, String, i64, Option<String>, String);

fn expected_rows(claims: &[UnemploymentClaim]) -> Vec<ClaimRow> {
    claims
        .iter()
        .map(|claim| {
            (
                claim.claim_id.clone(),
                claim.status.as_str().to_owned(),
                claim.filed_on,
                Decimal::new(claim.weekly_benefit.cents(), 2),
                i32::try_from(claim.weeks_paid).expect("small"),
                claim.benefit_end_date,
                claim.updated_at,
            )
        })
        .collect()
}

fn totals(population: &Population) -> (i64, i64) {
    let claimants = population.claimants().count();
    let claims: usize = population.claimants().map(|(_, claims)| claims.len()).sum();
    (
        i64::try_from(claimants).expect("small"),
        i64::try_from(claims).expect("small"),
    )
}

/// The claimant with the most claims, so the read-back covers several rows and statuses.
fn busiest_claimant(population: &Population) -> (&str, &[UnemploymentClaim]) {
    let (person, claims) = population
        .claimants()
        .max_by_key(|(_, claims)| claims.len())
        .expect("claimants");
    (person.claimant_id.as_deref().expect("an id"), claims)
}

#[tokio::test]
async fn ui_database_seeds_ten_thousand_citizens_into_sqlite_quickly_and_exactly() {
    let population = Population::generate(10_000, SEED);
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("ui.db");
    let url = ui::sqlite_url(&path, "rwc");

    // Seeding twice proves the tables are dropped and recreated.
    ui::seed(&url, &Population::generate(50, SEED))
        .await
        .expect("a first seed");
    let summary = ui::seed(&url, &population).await.expect("seeding SQLite");

    eprintln!(
        "seeded {} claimants and {} claims into SQLite in {:?}",
        summary.claimants, summary.claims, summary.elapsed
    );
    assert!(
        summary.elapsed < Duration::from_secs(2),
        "seeding took {:?}",
        summary.elapsed
    );
    let (claimants, claims) = totals(&population);
    assert_eq!(
        (summary.claimants, summary.claims),
        (claimants as usize, claims as usize)
    );

    // Read back the way the gateway will: read-only.
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&ui::read_only_url(&url))
        .await
        .expect("a read-only connection");
    let counted: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM ui_claimants), (SELECT COUNT(*) FROM ui_claims)",
    )
    .fetch_one(&pool)
    .await
    .expect("counts");
    assert_eq!(counted, (claimants, claims));
    let index: Option<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ui_claims' AND sql LIKE '%claimant_id%'",
    )
    .fetch_optional(&pool)
    .await
    .expect("the schema");
    assert!(index.is_some(), "ui_claims is indexed on claimant_id");

    let (claimant_id, expected) = busiest_claimant(&population);
    let rows: Vec<SqliteClaimRow> = sqlx::query_as(
        "SELECT claim_id, status, filed_on, weekly_benefit, weeks_paid, benefit_end_date, updated_at \
         FROM ui_claims WHERE claimant_id = ? ORDER BY filed_on DESC",
    )
    .bind(claimant_id)
    .fetch_all(&pool)
    .await
    .expect("the claims");
    let read: Vec<ClaimRow> = rows
        .into_iter()
        .map(|(id, status, filed, benefit, weeks, end, updated)| {
            let benefit: Decimal = benefit.parse().expect("a decimal string");
            assert_eq!(benefit.scale(), 2, "two decimals, as written");
            (
                id,
                status,
                filed.parse().expect("YYYY-MM-DD"),
                benefit,
                i32::try_from(weeks).expect("small"),
                end.map(|end| end.parse().expect("YYYY-MM-DD")),
                DateTime::parse_from_rfc3339(&updated)
                    .expect("RFC 3339")
                    .to_utc(),
            )
        })
        .collect();
    assert_eq!(read, expected_rows(expected));

    let write = sqlx::query("DELETE FROM ui_claims").execute(&pool).await;
    assert!(write.is_err(), "the gateway's URL is read-only");
    pool.close().await;
}

/// Seeds a server database and reads it back with its native types.
macro_rules! check_server_database {
    ($pool_options:ty, $url:expr, $seed_url:expr, $placeholder:literal) => {{
        let url: String = $url;
        let population = Population::generate(1_000, SEED);
        let tables = unique_prefix("seed");
        let summary = ui::seed_tables(&$seed_url, &population, &tables)
            .await
            .expect("seeding");
        let (claimants, claims) = totals(&population);
        assert_eq!(summary.claims as i64, claims);

        let pool = <$pool_options>::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("a connection");
        let counted: (i64, i64) = sqlx::query_as(&format!(
            "SELECT (SELECT COUNT(*) FROM {}), (SELECT COUNT(*) FROM {})",
            tables.claimants(),
            tables.claims()
        ))
        .fetch_one(&pool)
        .await
        .expect("counts");
        assert_eq!(counted, (claimants, claims));

        let (claimant_id, expected) = busiest_claimant(&population);
        let read: Vec<ClaimRow> = sqlx::query_as(&format!(
            "SELECT claim_id, status, filed_on, weekly_benefit, weeks_paid, benefit_end_date, \
             updated_at FROM {} WHERE claimant_id = {} ORDER BY filed_on DESC",
            tables.claims(),
            $placeholder
        ))
        .bind(claimant_id)
        .fetch_all(&pool)
        .await
        .expect("the claims");
        assert_eq!(read, expected_rows(expected));
        for row in &read {
            assert_eq!(row.3.scale(), 2, "DECIMAL(10,2) keeps two decimals");
        }
        let recent: Vec<(NaiveDate,)> = sqlx::query_as(&format!(
            "SELECT filed_on FROM {} WHERE filed_on >= {} ORDER BY filed_on",
            tables.claims(),
            $placeholder
        ))
        .bind(REFERENCE_DATE - chrono::Duration::days(30))
        .fetch_all(&pool)
        .await
        .expect("recent claims");
        assert!(!recent.is_empty(), "job losses in the last 30 days");

        for table in [tables.claims(), tables.claimants()] {
            sqlx::query(&format!("DROP TABLE {table}"))
                .execute(&pool)
                .await
                .expect("clean up");
        }
        pool.close().await;
    }};
}

#[tokio::test]
async fn ui_database_seeds_postgres_with_exact_decimals_and_timestamps() {
    let Ok(url) = std::env::var("CIVICGRAPH_TEST_POSTGRES_URL") else {
        eprintln!("skipped: CIVICGRAPH_TEST_POSTGRES_URL is not set");
        return;
    };
    check_server_database!(sqlx::postgres::PgPoolOptions, url.clone(), url, "$1");
}

#[tokio::test]
async fn ui_database_seeds_mariadb_with_exact_decimals_and_timestamps() {
    let Ok(url) = std::env::var("CIVICGRAPH_TEST_MYSQL_URL") else {
        eprintln!("skipped: CIVICGRAPH_TEST_MYSQL_URL is not set");
        return;
    };
    // Seed through the `mariadb://` spelling the demo accepts; read through sqlx's `mysql://`.
    let mariadb = match url.split_once("://") {
        Some((_, rest)) => format!("mariadb://{rest}"),
        None => url.clone(),
    };
    check_server_database!(sqlx::mysql::MySqlPoolOptions, url.clone(), mariadb, "?");
}

#[tokio::test]
async fn ui_seeding_reports_bad_urls_without_echoing_them() {
    let population = Population::generate(10, SEED);
    let error = ui::seed("oracle://scott:tiger@127.0.0.1/orcl", &population)
        .await
        .expect_err("unsupported");
    assert!(!error.to_string().contains("tiger"), "{error}");
    let error = ui::seed("postgres://civicgraph:s3cret@127.0.0.1:1/none", &population)
        .await
        .expect_err("nothing listens on port 1");
    assert!(!error.to_string().contains("s3cret"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// The demo's wiring
// ---------------------------------------------------------------------------------------------

/// A project with only the registry and the tax agency, so the demo's own wiring is tested
/// whatever the state of the connectors the other agencies need.
fn registry_and_tax_project() -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = tempfile::tempdir().expect("a temporary directory");
    for directory in ["schema", "connectors"] {
        std::fs::create_dir(project.path().join(directory)).expect("a directory");
    }
    for file in [
        "civicgraph.toml",
        "schema/citizen.graphql",
        "schema/tax.graphql",
        "connectors/registry.toml",
        "connectors/tax.toml",
    ] {
        std::fs::copy(root.join(file), project.path().join(file)).expect("a project file");
    }
    project
}

#[tokio::test]
async fn demo_start_seeds_a_read_only_sqlite_database_and_runs_the_dmv() {
    let project = registry_and_tax_project();
    let running = demo::start(&DemoOptions {
        citizens: 200,
        port: 0,
        config: project.path().join("civicgraph.toml"),
        ..DemoOptions::default()
    })
    .await
    .expect("the demo starts");

    let url = running.ui_database.url.clone();
    assert!(
        url.starts_with("sqlite://") && url.ends_with("?mode=ro"),
        "{url}"
    );
    let population = Population::generate(200, DemoOptions::default().seed);
    let (_, claims) = totals(&population);
    assert_eq!(running.ui_database.seeded.claims as i64, claims);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("the demo's database opens read-only");
    let (counted,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ui_claims")
        .fetch_one(&pool)
        .await
        .expect("a count");
    assert_eq!(counted, claims);
    pool.close().await;

    let wsdl = reqwest::get(format!("{}{SOAP_PATH}?wsdl", running.agencies.dmv_url))
        .await
        .expect("the DMV answers");
    assert_eq!(wsdl.status().as_u16(), 200);

    let file = url
        .trim_start_matches("sqlite://")
        .trim_end_matches("?mode=ro")
        .to_owned();
    assert!(Path::new(&file).exists());
    running.shutdown().await.expect("the demo stops");
    assert!(
        !Path::new(&file).exists(),
        "the temporary database goes with the demo"
    );
}

#[test]
fn first_query_asks_every_agency() {
    for field in [
        "taxAccount",
        "driverLicense { number class status expiresOn }",
        "vehicles { plate make model year }",
        "unemploymentClaims { status filedOn weeklyBenefit }",
    ] {
        assert!(demo::FIRST_QUERY.contains(field), "{field}");
    }
}

// ---------------------------------------------------------------------------------------------
// Agencies that change over time: the feeds the life-event pollers read, through the gateway's
// own connectors (the shipped connector files)
// ---------------------------------------------------------------------------------------------

/// The simulated agencies with a seeded SQLite database, changed by the simulator, and the
/// shipped connector files built against them as the gateway builds them.
struct ChangingAgencies {
    population: Arc<Population>,
    agencies: SimulatedAgencies,
    connectors: Connectors,
    applied: Vec<AppliedChange>,
    _ui_directory: tempfile::TempDir,
}

impl ChangingAgencies {
    /// Starts everything and applies `changes` simulated changes, one a second apart.
    async fn start(changes: usize) -> ChangingAgencies {
        let population = Arc::new(Population::generate(1_000, SEED));
        let agencies = SimulatedAgencies::start(Arc::clone(&population))
            .await
            .expect("the simulated agencies start");
        let directory = tempfile::tempdir().expect("a directory");
        let path = directory.path().join("ui.db");
        ui::seed(&ui::sqlite_url(&path, "rwc"), &population)
            .await
            .expect("seeded");
        let writer = UiWriter::connect(&ui::sqlite_url(&path, "rwc"), &UiTables::default())
            .await
            .expect("a writer");
        let mut simulator =
            ChangeSimulator::new(Arc::clone(&agencies.registry), Some(writer), None, SEED);
        let start = Utc::now() - chrono::Duration::seconds(changes as i64);
        let mut applied = Vec::with_capacity(changes);
        for n in 0..changes {
            let at = start + chrono::Duration::seconds(n as i64);
            applied.push(simulator.step(at).await.expect("a change"));
        }
        simulator.finish(Duration::from_secs(1)).await;

        let vars = Vars::only(HashMap::from([
            ("REGISTRY_URL".to_string(), agencies.registry_url.clone()),
            ("TAX_URL".to_string(), agencies.tax_url.clone()),
            ("DMV_URL".to_string(), agencies.dmv_url.clone()),
            ("UI_DATABASE_URL".to_string(), ui::sqlite_url(&path, "ro")),
            (
                "BENEFITS_MAINFRAME_ADDR".to_string(),
                agencies.benefits_addr.clone(),
            ),
            (
                "BENEFITS_EXTRACT_DIR".to_string(),
                agencies.benefits_extract_dir.display().to_string(),
            ),
        ]));
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("civicgraph.toml");
        let (project, _) = load_project(&config, &vars);
        let (connectors, problems) = build_connectors(&project.connectors);
        assert!(problems.is_empty(), "{problems:?}");
        ChangingAgencies {
            population,
            agencies,
            connectors,
            applied,
            _ui_directory: directory,
        }
    }

    async fn call(&self, connector: &str, operation: &str, args: &[(&str, Value)]) -> Value {
        let args: Arguments = args
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect();
        let connector = self.connectors.get(connector).expect("a shipped connector");
        match connector.call(operation, &args).await {
            Ok(Some(value)) => value,
            Ok(None) => panic!("`{operation}` answered nothing"),
            Err(error) => panic!("`{operation}` failed: {error}"),
        }
    }

    fn claims(&self) -> Vec<&UnemploymentClaim> {
        self.applied
            .iter()
            .filter_map(|change| match change {
                AppliedChange::JobLoss(claim) => Some(claim),
                _ => None,
            })
            .collect()
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[tokio::test]
async fn ui_change_feed_pages_new_claims_from_a_watermark() {
    let world = ChangingAgencies::start(40).await;
    let claims = world.claims();
    assert!(claims.len() >= 5, "{} job losses", claims.len());

    // Every seeded claim changed before the synthetic world's "today"; only new ones after.
    let reference = format!("{REFERENCE_DATE}T00:00:00Z");
    let fresh = world
        .call("ui", "claims_changed_since", &[("since", json!(reference))])
        .await;
    let expected: Vec<Value> = claims
        .iter()
        .map(|claim| {
            json!({
                "claimant_id": claim.claimant_id,
                "claim_id": claim.claim_id,
                "status": "PENDING",
                "separation_reason": claim.separation_reason.as_str(),
                "filed_on": claim.filed_on.to_string(),
                "updated_at": rfc3339(claim.updated_at),
            })
        })
        .collect();
    assert_eq!(fresh, Value::Array(expected));

    // The watermark a poller keeps is the last `updated_at` it saw.
    let third = fresh[2]["updated_at"].clone();
    let after = world
        .call("ui", "claims_changed_since", &[("since", third)])
        .await;
    assert_eq!(after.as_array().map(Vec::len), Some(claims.len() - 3));
    assert_eq!(after[0], fresh[3]);
    let last = fresh[claims.len() - 1]["updated_at"].clone();
    let none = world
        .call("ui", "claims_changed_since", &[("since", last)])
        .await;
    assert_eq!(none, json!([]));

    // From the beginning: the oldest 500 changes, in `updated_at` order.
    let all = world
        .call(
            "ui",
            "claims_changed_since",
            &[("since", json!("1970-01-01T00:00:00Z"))],
        )
        .await;
    let rows = all.as_array().expect("a list");
    let seeded: usize = world.population.claimants().map(|(_, c)| c.len()).sum();
    assert_eq!(rows.len(), (seeded + claims.len()).min(500));
    for pair in rows.windows(2) {
        let key = |row: &Value| {
            (
                row["updated_at"].as_str().unwrap_or_default().to_owned(),
                row["claim_id"].as_str().unwrap_or_default().to_owned(),
            )
        };
        assert!(key(&pair[0]) < key(&pair[1]), "{pair:?}");
    }

    // A watermark that is not a time is the caller's mistake, named without its value.
    let args: Arguments = [("since".to_string(), json!("yesterday"))].into();
    let error = world
        .connectors
        .get("ui")
        .expect("ui")
        .call("claims_changed_since", &args)
        .await
        .expect_err("not a timestamp");
    assert!(
        matches!(error, CallError::InvalidArgument { .. }),
        "{error}"
    );
    assert!(!error.to_string().contains("yesterday"));
    world.agencies.shutdown().await;
}

#[tokio::test]
async fn registry_change_feed_lists_moves_and_births_from_a_sequence_number() {
    let world = ChangingAgencies::start(30).await;
    let log = world.agencies.registry.changes_since(0, 500);
    assert!(!log.is_empty());
    let all = world
        .call("registry", "changes", &[("since", json!("0"))])
        .await;
    let expected: Vec<Value> = log
        .iter()
        .map(|change| serde_json::to_value(change).expect("JSON"))
        .collect();
    assert_eq!(all, Value::Array(expected));
    let kinds: HashSet<&str> = all
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|change| change["kind"].as_str())
        .collect();
    assert_eq!(kinds, HashSet::from(["address", "birth"]));
    for change in all.as_array().expect("a list") {
        let keys: HashSet<&str> = change
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        let ids_only = HashSet::from([
            "seq",
            "change_id",
            "kind",
            "citizen_id",
            "birth_id",
            "child_id",
            "recorded_at",
        ]);
        assert!(keys.is_subset(&ids_only), "{keys:?}");
    }

    // A poller's next call starts after the last `seq` it saw.
    let last = log.len() as u64;
    let after = world
        .call("registry", "changes", &[("since", json!(last - 2))])
        .await;
    assert_eq!(after, json!([all[log.len() - 2], all[log.len() - 1]]));
    let none = world
        .call("registry", "changes", &[("since", json!(last))])
        .await;
    assert_eq!(none, json!([]));

    // The moves show in the registry's people, as the graph reads them.
    let moved = world.applied.iter().rev().find_map(|change| match change {
        AppliedChange::AddressChange(change) => Some(change),
        _ => None,
    });
    let moved = moved.expect("a move");
    let person = world
        .call("registry", "person", &[("id", json!(moved.citizen_id))])
        .await;
    let mut latest = moved.address.clone();
    for change in &world.applied {
        if let AppliedChange::AddressChange(change) = change
            && change.citizen_id == moved.citizen_id
        {
            latest = change.address.clone();
        }
    }
    assert_eq!(person["address"]["street"], latest.street.as_str());
    assert_eq!(person["address"]["city"], latest.city.as_str());
    world.agencies.shutdown().await;
}

#[tokio::test]
async fn registry_lists_who_reached_retirement_age() {
    let world = ChangingAgencies::start(0).await;
    let today = Utc::now().date_naive();
    let answer = world
        .call(
            "registry",
            "retirement",
            &[("age", json!(67)), ("within_days", json!(365))],
        )
        .await;
    let expected: Vec<Value> = world
        .population
        .reached_age(67, 365, today)
        .into_iter()
        .map(|(person, on)| json!({"citizen_id": person.id, "reached_on": on.to_string()}))
        .collect();
    assert!(
        !expected.is_empty(),
        "about ten of 1000 citizens turn 67 a year"
    );
    assert_eq!(answer, Value::Array(expected));
    world.agencies.shutdown().await;
}

#[tokio::test]
async fn dmv_lists_registrations_coming_due() {
    let world = ChangingAgencies::start(0).await;
    let today = Utc::now().date_naive();
    let answer = world
        .call(
            "dmv",
            "expiring_registrations",
            &[("within_days", json!(30))],
        )
        .await;
    let expected: Vec<Value> = world
        .population
        .registrations_expiring(today, 30)
        .iter()
        .map(|due| {
            json!({
                "plate": due.plate,
                "licenseNumber": due.owner_license_number,
                "expiresOn": due.expires_on.to_string(),
            })
        })
        .collect();
    assert!(expected.len() >= 10, "{} registrations due", expected.len());
    assert_eq!(answer, Value::Array(expected));
    let none = world
        .call(
            "dmv",
            "expiring_registrations",
            &[("within_days", json!(0))],
        )
        .await;
    assert!(none.is_array());
    let args: Arguments = [("within_days".to_string(), json!(400))].into();
    let error = world
        .connectors
        .get("dmv")
        .expect("dmv")
        .call("expiring_registrations", &args)
        .await
        .expect_err("beyond 366 days");
    assert!(
        matches!(&error, CallError::Fault { fault_code, .. } if fault_code == "soap:Client"),
        "{error}"
    );
    world.agencies.shutdown().await;
}

#[tokio::test]
async fn registry_records_an_address_change_through_its_connector() {
    let world = ChangingAgencies::start(0).await;
    let answer = world
        .call(
            "registry",
            "change_address",
            &[
                ("id", json!("C0000007")),
                ("street", json!("12 Quarry Lane")),
                ("city", json!("lakeside")),
                ("postal_code", json!("42211")),
            ],
        )
        .await;
    assert_eq!(
        answer,
        json!({"change_id": "AC-00000001", "citizen_id": "C0000007", "address": {
            "street": "12 Quarry Lane", "city": "Lakeside", "postal_code": "42211",
            "county": "Hollis County"}})
    );
    let person = world
        .call("registry", "person", &[("id", json!("C0000007"))])
        .await;
    assert_eq!(person["address"], answer["address"]);
    let log = world
        .call("registry", "changes", &[("since", json!(0))])
        .await;
    assert_eq!(log[0]["change_id"], "AC-00000001");

    let args: Arguments = [
        ("id", json!("C0000007")),
        ("street", json!("1 Elm Road")),
        ("city", json!("Upton")),
        ("postal_code", json!("ABCDE")),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    let error = world
        .connectors
        .get("registry")
        .expect("registry")
        .call("change_address", &args)
        .await
        .expect_err("a bad postal code");
    assert!(
        matches!(error, CallError::Rejected { status: 400 }),
        "{error}"
    );
    assert_eq!(
        world.agencies.registry.change_count(),
        1,
        "nothing more recorded"
    );
    world.agencies.shutdown().await;
}

/// Seeds a server database, files claims with the simulator's writer, and reads them back
/// through an `sql` connector with the shipped `claims_changed_since` query (on the test's
/// own tables): a timestamp watermark compares exactly on every database.
async fn check_change_feed_on_server(url: &str, seed_url: &str) {
    let population = Population::generate(200, SEED);
    let tables = unique_prefix("feed");
    ui::seed_tables(seed_url, &population, &tables)
        .await
        .expect("seeding");
    let writer = UiWriter::connect(seed_url, &tables)
        .await
        .expect("a writer");
    let registry = Arc::new(civicgraph::demo::registry::LiveRegistry::new(Arc::new(
        population,
    )));
    let mut simulator = ChangeSimulator::new(registry, Some(writer), None, SEED);
    let now = Utc::now();
    let mut claims = Vec::new();
    while claims.len() < 4 {
        if let AppliedChange::JobLoss(claim) = simulator.step(now).await.expect("a change") {
            claims.push(claim);
        }
    }
    simulator.finish(Duration::from_secs(1)).await;

    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors/ui.toml"))
            .expect("connectors/ui.toml");
    let toml = shipped
        .replace("${UI_DATABASE_URL:-sqlite://ui.db?mode=ro}", url)
        .replace("ui_claims", &tables.claims());
    let file = TomlFile::from_text("ui.toml", &toml, &Vars::default()).expect("valid TOML");
    let config = ConnectorConfig::Sql(file.parse().expect("an sql connector"));
    let (connectors, problems) = build_connectors(&[LoadedConnector { config, file }]);
    assert!(problems.is_empty(), "{problems:?}");
    let ui = connectors.get("ui").expect("ui");
    let feed = |since: Value| {
        let args: Arguments = [("since".to_string(), since)].into();
        async move {
            ui.call("claims_changed_since", &args)
                .await
                .expect("the feed answers")
                .expect("a list")
        }
    };
    let fresh = feed(json!(format!("{REFERENCE_DATE}T00:00:00Z"))).await;
    let ids: Vec<&str> = fresh
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|row| row["claim_id"].as_str())
        .collect();
    let expected: Vec<&str> = claims.iter().map(|claim| claim.claim_id.as_str()).collect();
    assert_eq!(ids, expected);
    assert_eq!(
        fresh[0]["updated_at"].as_str(),
        Some(rfc3339(claims[0].updated_at).as_str())
    );
    let after = feed(fresh[1]["updated_at"].clone()).await;
    assert_eq!(after, json!([fresh[2], fresh[3]]));
    assert_eq!(feed(fresh[3]["updated_at"].clone()).await, json!([]));

    let drop = [
        format!("DROP TABLE {}", tables.claims()),
        format!("DROP TABLE {}", tables.claimants()),
    ];
    match ui::UiDatabaseKind::of_url(url).expect("a server URL") {
        ui::UiDatabaseKind::Postgres => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .expect("a connection");
            for statement in &drop {
                sqlx::query(statement)
                    .execute(&pool)
                    .await
                    .expect("clean up");
            }
            pool.close().await;
        }
        _ => {
            let pool = sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .expect("a connection");
            for statement in &drop {
                sqlx::query(statement)
                    .execute(&pool)
                    .await
                    .expect("clean up");
            }
            pool.close().await;
        }
    }
}

#[tokio::test]
async fn ui_change_feed_works_on_postgres() {
    let Ok(url) = std::env::var("CIVICGRAPH_TEST_POSTGRES_URL") else {
        eprintln!("skipped: CIVICGRAPH_TEST_POSTGRES_URL is not set");
        return;
    };
    check_change_feed_on_server(&url, &url).await;
}

#[tokio::test]
async fn ui_change_feed_works_on_mariadb() {
    let Ok(url) = std::env::var("CIVICGRAPH_TEST_MYSQL_URL") else {
        eprintln!("skipped: CIVICGRAPH_TEST_MYSQL_URL is not set");
        return;
    };
    let mariadb = match url.split_once("://") {
        Some((_, rest)) => format!("mariadb://{rest}"),
        None => url.clone(),
    };
    check_change_feed_on_server(&url, &mariadb).await;
}

#[tokio::test]
async fn demo_with_events_changes_its_agencies_until_it_stops() {
    let project = registry_and_tax_project();
    let secret = WebhookSecret::generate().expect("a secret");
    let running = demo::start(&DemoOptions {
        citizens: 200,
        port: 0,
        config: project.path().join("civicgraph.toml"),
        events_per_minute: 1_200,
        registry_webhook_secret: Some(secret.expose()),
        ..DemoOptions::default()
    })
    .await
    .expect("the demo starts");
    assert_eq!(running.registry_webhook_secret, secret);
    let simulator = running.simulator.as_ref().expect("a simulator");
    assert_eq!(simulator.events_per_minute(), 1_200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while simulator.counts().job_losses == 0 || simulator.counts().address_changes == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            simulator.counts()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = simulator.counts();
    assert!(running.agencies.registry.change_count() >= counts.address_changes);

    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&running.ui_database.url)
        .await
        .expect("the demo's database");
    let (new_claims,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM ui_claims WHERE updated_at > ?")
            .bind(format!("{REFERENCE_DATE}T00:00:00Z"))
            .fetch_one(&pool)
            .await
            .expect("a count");
    assert!(
        new_claims as u64 >= counts.job_losses,
        "{new_claims} < {counts:?}"
    );
    pool.close().await;

    let bad = demo::start(&DemoOptions {
        citizens: 10,
        port: 0,
        config: project.path().join("civicgraph.toml"),
        events_per_minute: 1,
        registry_webhook_secret: Some("not-a-secret".to_string()),
        ..DemoOptions::default()
    })
    .await
    .expect_err("a malformed secret");
    assert!(bad.to_string().contains("REGISTRY_WEBHOOK_SECRET"), "{bad}");
    assert!(!bad.to_string().contains("not-a-secret"), "{bad}");
    let too_fast = demo::start(&DemoOptions {
        events_per_minute: 1_000_000,
        ..DemoOptions::default()
    })
    .await
    .expect_err("too fast");
    assert!(
        too_fast.to_string().contains("--events-per-minute"),
        "{too_fast}"
    );

    tokio::time::timeout(Duration::from_secs(20), running.shutdown())
        .await
        .expect("the demo stops in time")
        .expect("the demo stops");
}

#[tokio::test]
async fn change_address_moves_the_signed_in_citizen_only() {
    let demo = crate::support::start_demo(50).await;
    let mutation = r#"mutation { changeAddress(street: "12 Quarry Lane", city: "Lakeside", postalCode: "42211") { changeId citizenId address { street city postalCode county } } }"#;
    let answer = demo.post_as_citizen("C0000002", mutation).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.body,
        json!({"data": {"changeAddress": {"changeId": "AC-00000001", "citizenId": "C0000002",
            "address": {"street": "12 Quarry Lane", "city": "Lakeside", "postalCode": "42211",
                "county": "Hollis County"}}}})
    );
    let me = demo
        .post_as_citizen("C0000002", "{ me { address { street city postalCode } } }")
        .await;
    assert_eq!(
        me.body["data"]["me"]["address"],
        json!({"street": "12 Quarry Lane", "city": "Lakeside", "postalCode": "42211"})
    );

    let code = |answer: &crate::support::Answer| {
        answer.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let anonymous = demo.post(mutation).await;
    assert_eq!(code(&anonymous), "UNAUTHENTICATED", "{}", anonymous.text);
    let operator = demo.post_as_operator("ops", mutation).await;
    assert_eq!(code(&operator), "FORBIDDEN", "{}", operator.text);
    let refused = demo
        .post_as_citizen(
            "C0000002",
            r#"mutation { changeAddress(street: "1 Elm Road", city: "Springfield", postalCode: "44100") { changeId } }"#,
        )
        .await;
    assert_eq!(refused.body["data"], Value::Null, "{}", refused.text);
    // The registry's 400 is a refused backend call; what it refused stays in the log.
    assert_eq!(code(&refused), "BACKEND_BAD_RESPONSE", "{}", refused.text);
    assert!(!refused.text.contains("Springfield"), "{}", refused.text);
    let me = demo
        .post_as_citizen("C0000002", "{ me { address { city } } }")
        .await;
    assert_eq!(me.body["data"]["me"]["address"]["city"], "Lakeside");
}
