//! The demo's newer simulated agencies, over their real protocols: the motor vehicle agency's
//! SOAP 1.1 service on a loopback port, and the unemployment insurance database seeded on
//! SQLite always, and on PostgreSQL / MariaDB when `CIVICGRAPH_TEST_POSTGRES_URL` /
//! `CIVICGRAPH_TEST_MYSQL_URL` name a database the tests may create tables in.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, Utc};
use civicgraph::demo::data::{DriverLicense, REFERENCE_DATE, UnemploymentClaim};
use civicgraph::demo::dmv::{
    GET_LICENSE_ACTION, GET_VEHICLES_ACTION, NAMESPACE, SOAP_PATH, SOAP11_ENVELOPE, WSDL,
};
use civicgraph::demo::ui::{self, UiTables};
use civicgraph::demo::{self, DemoOptions, Population, SimulatedAgencies};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use rust_decimal::Decimal;

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
