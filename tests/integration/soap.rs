//! The `soap` connector end to end: a gateway in front of a real SOAP server on loopback,
//! for SOAP 1.1 and 1.2, faults, hostile XML, injection through arguments, WS-Security, and
//! the check-time errors of a connector file (with its WSDL).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use quick_xml::events::Event;
use serde_json::{Value, json};
use sha1::{Digest as _, Sha1};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::support::{Project, TestGateway, TestGatewayBuilder, check, outcome};

const DMV_NS: &str = "urn:civicgraph:demo:dmv:v1";
const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
const ACTION: &str = "urn:civicgraph:demo:dmv:v1#GetLicense";

/// A marker in backend fault strings and files that must never reach a client.
const SECRET: &str = "SECRET-SOAP-DETAIL";

const SDL: &str = r#"type Query {
  license(number: String!): License @connect(connector: "dmv", operation: "license", args: {license_number: "$args.number"}) @public
}

type License {
  number: String!
  holder: String
  class: String
  expires: String
  note: String
  restrictions: [String!]! @map(from: "/restrictions/restriction")
}
"#;

const QUERY: &str =
    r#"{ license(number: "D1234567") { number holder class expires note restrictions } }"#;

/// The motor-vehicle connector in the demo's shape; `${DMV_VERSION}` varies, and tests put
/// extra settings in place of the `# extra` line.
const DMV_TOML: &str = r#"name = "dmv"
kind = "soap"
description = "Motor vehicle agency"
identifier = "license_number"
endpoint = "${DMV_URL}/dmv/soap"
soap_version = "${DMV_VERSION:-1.1}"
timeout_ms = 2000
namespaces = { dmv = "urn:civicgraph:demo:dmv:v1" }
# extra

[operations.license]
action = "urn:civicgraph:demo:dmv:v1#GetLicense"
body = "<dmv:GetLicense><dmv:licenseNumber>{license_number}</dmv:licenseNumber></dmv:GetLicense>"
select = "dmv:GetLicenseResponse/dmv:license"
lists = ["dmv:restrictions/dmv:restriction"]
"#;

/// A WSDL describing exactly the operation above.
const DMV_WSDL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:tns="urn:civicgraph:demo:dmv:v1"
    targetNamespace="urn:civicgraph:demo:dmv:v1">
  <wsdl:types>
    <xs:schema targetNamespace="urn:civicgraph:demo:dmv:v1" elementFormDefault="qualified">
      <xs:element name="GetLicense">
        <xs:complexType><xs:sequence><xs:element name="licenseNumber" type="xs:string"/></xs:sequence></xs:complexType>
      </xs:element>
      <xs:element name="GetLicenseResponse">
        <xs:complexType><xs:sequence><xs:element name="license" type="tns:License" nillable="true"/></xs:sequence></xs:complexType>
      </xs:element>
      <xs:complexType name="License">
        <xs:sequence>
          <xs:element name="number" type="xs:string"/>
          <xs:element name="restrictions">
            <xs:complexType><xs:sequence>
              <xs:element name="restriction" type="xs:string" minOccurs="0" maxOccurs="unbounded"/>
            </xs:sequence></xs:complexType>
          </xs:element>
        </xs:sequence>
      </xs:complexType>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="GetLicenseRequest"><wsdl:part name="parameters" element="tns:GetLicense"/></wsdl:message>
  <wsdl:message name="GetLicenseResponse"><wsdl:part name="parameters" element="tns:GetLicenseResponse"/></wsdl:message>
  <wsdl:portType name="DmvPort">
    <wsdl:operation name="GetLicense">
      <wsdl:input message="tns:GetLicenseRequest"/><wsdl:output message="tns:GetLicenseResponse"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="DmvBinding" type="tns:DmvPort">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="GetLicense"><soap:operation soapAction="urn:civicgraph:demo:dmv:v1#GetLicense"/></wsdl:operation>
  </wsdl:binding>
</wsdl:definitions>
"#;

// ---------------------------------------------------------------------------------------------
// A SOAP server on loopback
// ---------------------------------------------------------------------------------------------

/// One envelope as the SOAP server received it.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Script = dyn Fn(&Received) -> (u16, String) + Send + Sync;

/// A SOAP endpoint at `/dmv/soap` that answers with `script` and records every envelope.
struct SoapServer {
    url: String,
    log: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl SoapServer {
    async fn start(script: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static) -> Self {
        Self::start_after(Duration::ZERO, script).await
    }

    /// [`SoapServer::start`], answering each request only after `delay`.
    async fn start_after(
        delay: Duration,
        script: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static,
    ) -> Self {
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let handler_log = Arc::clone(&log);
        let router = Router::new().route(
            "/dmv/soap",
            post(move |headers: HeaderMap, body: Bytes| {
                let received = Received {
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let (status, reply) = script(&received);
                handler_log
                    .lock()
                    .expect("the log is never poisoned")
                    .push(received);
                async move {
                    tokio::time::sleep(delay).await;
                    (
                        StatusCode::from_u16(status).expect("a valid status"),
                        [("content-type", "text/xml; charset=utf-8")],
                        reply,
                    )
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the SOAP server");
        let addr = listener.local_addr().expect("a bound address");
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the SOAP server serves");
        });
        Self {
            url: format!("http://{addr}"),
            log,
            task,
        }
    }

    /// A server that always answers `status` with `body`.
    async fn answering(status: u16, body: impl Into<String>) -> Self {
        let body = body.into();
        Self::start(move |_| (status, body.clone())).await
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().expect("the log is never poisoned").clone()
    }
}

impl Drop for SoapServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A SOAP 1.1 envelope around `body`, with prefixes other than the connector's.
fn envelope11(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><S:Envelope xmlns:S=\"{SOAP11_NS}\" \
         xmlns:ns0=\"{DMV_NS}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
         <S:Body>{body}</S:Body></S:Envelope>"
    )
}

/// A SOAP 1.2 envelope around `body`.
fn envelope12(body: &str) -> String {
    format!(
        "<env:Envelope xmlns:env=\"{SOAP12_NS}\" xmlns:d=\"{DMV_NS}\"><env:Body>{body}</env:Body></env:Envelope>"
    )
}

/// A licence answer with one restriction, using the `ns0` prefix.
fn license_answer() -> String {
    envelope11(
        "<ns0:GetLicenseResponse><ns0:license>\
         <ns0:number>D1234567</ns0:number><ns0:holder>Ada Lovelace</ns0:holder>\
         <ns0:class>B</ns0:class><ns0:expires>2030-01-31</ns0:expires><ns0:note/>\
         <ns0:restrictions><ns0:restriction>CORRECTIVE_LENSES</ns0:restriction></ns0:restrictions>\
         </ns0:license></ns0:GetLicenseResponse>",
    )
}

fn expected_license() -> Value {
    json!({"data": {"license": {
        "number": "D1234567",
        "holder": "Ada Lovelace",
        "class": "B",
        "expires": "2030-01-31",
        "note": "",
        "restrictions": ["CORRECTIVE_LENSES"],
    }}})
}

/// The project: [`SDL`] and [`DMV_TOML`] pointed at `server`.
fn project(server: &SoapServer) -> TestGatewayBuilder {
    project_with(server, "# extra")
}

/// [`project`] with `extra` in place of the `# extra` line of the connector file.
fn project_with(server: &SoapServer, extra: &str) -> TestGatewayBuilder {
    TestGateway::builder()
        .schema("dmv.graphql", SDL)
        .connector("dmv.toml", &DMV_TOML.replacen("# extra", extra, 1))
        .var("DMV_URL", &server.url)
}

/// The text of every element with local name `local` (any namespace) in `xml`, and whether
/// the document holds an element with local name `absent`. A real XML parser, so the test sees
/// the envelope as a SOAP server would.
fn texts_in(xml: &str, local: &str, absent: &str) -> (Vec<String>, bool) {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut texts = Vec::new();
    let mut inside = false;
    let mut found_absent = false;
    loop {
        match reader
            .read_event()
            .expect("the server received well-formed XML")
        {
            Event::Start(e) if e.local_name().as_ref() == local.as_bytes() => {
                inside = true;
                texts.push(String::new());
            }
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == absent.as_bytes() => {
                found_absent = true;
            }
            Event::End(e) if e.local_name().as_ref() == local.as_bytes() => inside = false,
            Event::Text(t) if inside => {
                let text = t.xml10_content().expect("UTF-8 text");
                if let Some(last) = texts.last_mut() {
                    last.push_str(&text);
                }
            }
            Event::GeneralRef(r) if inside => {
                let name = String::from_utf8_lossy(&r).into_owned();
                let decoded = match name.as_str() {
                    "lt" => "<".to_string(),
                    "gt" => ">".to_string(),
                    "amp" => "&".to_string(),
                    "quot" => "\"".to_string(),
                    "apos" => "'".to_string(),
                    other => panic!("unexpected entity `&{other};`"),
                };
                if let Some(last) = texts.last_mut() {
                    last.push_str(&decoded);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    (texts, found_absent)
}

/// The error codes of an answer, with the fault code when there is one.
fn error_codes(answer: &Value) -> Vec<Value> {
    answer["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| json!([e["extensions"]["code"], e["extensions"]["faultCode"]]))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn answers_a_license_query_over_soap_11() {
    let server = SoapServer::answering(200, license_answer()).await;
    let gateway = project(&server).build().await;

    let answer = gateway.post(QUERY).await;

    assert_eq!(outcome(&answer.body), expected_license());
    let received = server.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(
        (
            request.header("content-type"),
            request.header("soapaction").map(str::to_string)
        ),
        (
            Some("text/xml; charset=utf-8"),
            Some(format!("\"{ACTION}\""))
        )
    );
    assert!(
        request
            .body
            .contains(&format!("xmlns:soap=\"{SOAP11_NS}\"")),
        "{}",
        request.body
    );
    assert_eq!(
        texts_in(&request.body, "licenseNumber", "evil").0,
        ["D1234567"]
    );
}

#[tokio::test]
async fn answers_a_license_query_over_soap_12() {
    let answer12 = envelope12(
        "<d:GetLicenseResponse><d:license><d:number>D1234567</d:number><d:holder>Ada Lovelace</d:holder>\
         <d:class>B</d:class><d:expires>2030-01-31</d:expires><d:note></d:note>\
         <d:restrictions><d:restriction>CORRECTIVE_LENSES</d:restriction></d:restrictions>\
         </d:license></d:GetLicenseResponse>",
    );
    let server = SoapServer::answering(200, answer12).await;
    let gateway = project(&server).var("DMV_VERSION", "1.2").build().await;

    let answer = gateway.post(QUERY).await;

    assert_eq!(outcome(&answer.body), expected_license());
    let request = &server.received()[0];
    assert_eq!(
        (request.header("content-type"), request.header("soapaction")),
        (
            Some(
                "application/soap+xml; charset=utf-8; action=\"urn:civicgraph:demo:dmv:v1#GetLicense\""
            ),
            None
        )
    );
    assert!(
        request
            .body
            .contains(&format!("xmlns:soap=\"{SOAP12_NS}\"")),
        "{}",
        request.body
    );
}

#[tokio::test]
async fn an_argument_full_of_markup_arrives_as_text() {
    let server = SoapServer::answering(200, license_answer()).await;
    let gateway = project(&server).build().await;
    let hostile = "</dmv:licenseNumber><evil/>&amp;\"'";

    let answer = gateway
        .post_with(
            json!({
                "query": "query($n: String!) { license(number: $n) { number } }",
                "variables": {"n": hostile},
            }),
            &[],
        )
        .await;

    assert_eq!(answer.body["data"]["license"]["number"], "D1234567");
    let request = &server.received()[0];
    assert_eq!(
        texts_in(&request.body, "licenseNumber", "evil"),
        (vec![hostile.to_string()], false),
        "the server received {}",
        request.body
    );
}

#[tokio::test]
async fn nil_elements_are_null_and_a_nil_license_is_no_license() {
    let with_nil = envelope11(
        "<ns0:GetLicenseResponse><ns0:license><ns0:number>D1</ns0:number>\
         <ns0:holder xsi:nil=\"true\"/><ns0:restrictions/></ns0:license></ns0:GetLicenseResponse>",
    );
    let server = SoapServer::answering(200, with_nil).await;
    let gateway = project(&server).build().await;

    let answer = gateway
        .post(r#"{ license(number: "D1") { number holder restrictions } }"#)
        .await;

    assert_eq!(
        outcome(&answer.body),
        json!({"data": {"license": {"number": "D1", "holder": null, "restrictions": []}}})
    );

    let nil_license = envelope11(
        "<ns0:GetLicenseResponse><ns0:license xsi:nil=\"true\"/></ns0:GetLicenseResponse>",
    );
    let server = SoapServer::answering(200, nil_license).await;
    let gateway = project(&server).build().await;

    let answer = gateway
        .post(r#"{ license(number: "D1") { number } }"#)
        .await;

    assert_eq!(outcome(&answer.body), json!({"data": {"license": null}}));
}

#[tokio::test]
async fn repeated_restrictions_become_a_list() {
    let two = envelope11(
        "<ns0:GetLicenseResponse><ns0:license><ns0:number>D1</ns0:number><ns0:restrictions>\
         <ns0:restriction>A</ns0:restriction><ns0:restriction>B</ns0:restriction>\
         </ns0:restrictions></ns0:license></ns0:GetLicenseResponse>",
    );
    let server = SoapServer::answering(200, two).await;
    let gateway = project(&server).build().await;

    let answer = gateway
        .post(r#"{ license(number: "D1") { restrictions } }"#)
        .await;

    assert_eq!(
        outcome(&answer.body),
        json!({"data": {"license": {"restrictions": ["A", "B"]}}})
    );
}

// ---------------------------------------------------------------------------------------------
// Faults and hostile answers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_soap_11_fault_with_http_500_is_a_backend_fault_without_its_text() {
    let fault = envelope11(&format!(
        "<S:Fault><faultcode>ns0:LicenseNotFound</faultcode>\
         <faultstring>{SECRET}: no licence D1234567 for Ada Lovelace</faultstring>\
         <detail><ns0:trace>{SECRET}</ns0:trace></detail></S:Fault>"
    ));
    let server = SoapServer::answering(500, fault).await;
    let gateway = project(&server).build().await;

    let answer = gateway.post(QUERY).await;

    assert_eq!(
        (
            answer.body["data"].clone(),
            error_codes(&answer.body),
            answer.text.contains(SECRET)
        ),
        (
            json!({"license": null}),
            vec![json!(["BACKEND_FAULT", "dmv:LicenseNotFound"])],
            false
        ),
        "{}",
        answer.text
    );
}

#[tokio::test]
async fn a_soap_12_fault_with_http_500_gives_its_most_specific_subcode() {
    let fault = envelope12(&format!(
        "<env:Fault><env:Code><env:Value>env:Receiver</env:Value>\
         <env:Subcode><env:Value>d:RegistryOffline</env:Value></env:Subcode></env:Code>\
         <env:Reason><env:Text xml:lang=\"en\">{SECRET}: mainframe down</env:Text></env:Reason>\
         </env:Fault>"
    ));
    let server = SoapServer::answering(500, fault).await;
    let gateway = project(&server).var("DMV_VERSION", "1.2").build().await;

    let answer = gateway.post(QUERY).await;

    assert_eq!(
        (error_codes(&answer.body), answer.text.contains(SECRET)),
        (vec![json!(["BACKEND_FAULT", "dmv:RegistryOffline"])], false),
        "{}",
        answer.text
    );
}

#[tokio::test]
async fn a_500_without_a_fault_is_backend_unavailable() {
    let server = SoapServer::answering(500, format!("<html>{SECRET}</html>")).await;
    let gateway = project(&server).build().await;

    let answer = gateway.post(QUERY).await;

    assert_eq!(
        (error_codes(&answer.body), answer.text.contains(SECRET)),
        (vec![json!(["BACKEND_UNAVAILABLE", null])], false)
    );
}

#[tokio::test]
async fn an_xxe_attempt_is_refused_without_reading_the_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let secret_file = dir.path().join("secret.txt");
    std::fs::write(&secret_file, format!("{SECRET}-FILE-CONTENTS")).expect("write the file");
    let xxe = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY xxe SYSTEM \"file://{}\">]>\
         <S:Envelope xmlns:S=\"{SOAP11_NS}\" xmlns:ns0=\"{DMV_NS}\"><S:Body><ns0:GetLicenseResponse>\
         <ns0:license><ns0:number>&xxe;</ns0:number></ns0:license></ns0:GetLicenseResponse>\
         </S:Body></S:Envelope>",
        secret_file.display()
    );
    let server = SoapServer::answering(200, xxe).await;
    let gateway = project(&server).build().await;

    let answer = gateway.post(QUERY).await;

    assert_eq!(
        (error_codes(&answer.body), answer.text.contains(SECRET)),
        (vec![json!(["BACKEND_BAD_RESPONSE", null])], false),
        "{}",
        answer.text
    );
}

#[tokio::test]
async fn a_billion_laughs_attempt_is_refused_quickly() {
    let mut entities = String::from("<!ENTITY lol \"lol\">");
    for i in 1..=9 {
        let previous = if i == 1 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        entities.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{previous};").repeat(10)
        ));
    }
    let bomb = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [{entities}]><S:Envelope xmlns:S=\"{SOAP11_NS}\">\
         <S:Body>&lol9;</S:Body></S:Envelope>"
    );
    let server = SoapServer::answering(200, bomb).await;
    let gateway = project(&server).build().await;

    let started = Instant::now();
    let answer = gateway.post(QUERY).await;

    assert_eq!(
        (
            error_codes(&answer.body),
            started.elapsed() < Duration::from_secs(2)
        ),
        (vec![json!(["BACKEND_BAD_RESPONSE", null])], true)
    );
}

#[tokio::test]
async fn a_10_000_deep_answer_is_refused_without_overflowing_the_stack() {
    let deep = envelope11(&format!(
        "{}{}",
        "<ns0:a>".repeat(10_000),
        "</ns0:a>".repeat(10_000)
    ));
    let server = SoapServer::answering(200, deep).await;
    let gateway = project(&server).build().await;

    let answer = gateway.post(QUERY).await;

    assert_eq!(
        error_codes(&answer.body),
        vec![json!(["BACKEND_BAD_RESPONSE", null])]
    );
}

#[tokio::test]
async fn a_slow_soap_backend_gives_backend_timeout() {
    let server = SoapServer::start_after(Duration::from_secs(3), |_| (200, license_answer())).await;
    let gateway = TestGateway::builder()
        .schema("dmv.graphql", SDL)
        .connector(
            "dmv.toml",
            &DMV_TOML.replacen("timeout_ms = 2000", "timeout_ms = 200", 1),
        )
        .var("DMV_URL", &server.url)
        .build()
        .await;

    let started = Instant::now();
    let answer = gateway.post(QUERY).await;

    assert_eq!(
        (
            error_codes(&answer.body),
            started.elapsed() < Duration::from_secs(2)
        ),
        (vec![json!(["BACKEND_TIMEOUT", null])], true)
    );
}

#[tokio::test]
async fn an_answer_over_the_size_limit_gives_backend_bad_response() {
    let huge = envelope11(&format!("<ns0:pad>{}</ns0:pad>", " ".repeat(9 << 20)));
    let server = SoapServer::answering(200, huge).await;
    let gateway = project(&server).build().await;

    let answer = gateway.post(QUERY).await;

    assert_eq!(
        error_codes(&answer.body),
        vec![json!(["BACKEND_BAD_RESPONSE", null])]
    );
}

// ---------------------------------------------------------------------------------------------
// WS-Security
// ---------------------------------------------------------------------------------------------

/// A server that checks the UsernameToken the way a WS-Security stack does, and answers the
/// licence only when it verifies.
async fn ws_security_server() -> SoapServer {
    SoapServer::start(|received| {
        let text = |local: &str| texts_in(&received.body, local, "-").0.into_iter().next();
        let user_ok = text("Username").as_deref() == Some("dmv-gateway");
        let password = text("Password").unwrap_or_default();
        let verified = if received.body.contains("#PasswordDigest") {
            let nonce = base64::engine::general_purpose::STANDARD
                .decode(text("Nonce").unwrap_or_default())
                .unwrap_or_default();
            let created = text("Created").unwrap_or_default();
            let mut hasher = Sha1::new();
            hasher.update(&nonce);
            hasher.update(created.as_bytes());
            hasher.update("s3cr&t<pw>".as_bytes());
            let expected = base64::engine::general_purpose::STANDARD.encode(hasher.finalize());
            nonce.len() == 16 && !created.is_empty() && password == expected
        } else {
            password == "s3cr&t<pw>"
        };
        if user_ok && verified {
            (200, license_answer())
        } else {
            (
                500,
                envelope11(
                    "<S:Fault><faultcode>S:Client</faultcode><faultstring>bad token</faultstring></S:Fault>",
                ),
            )
        }
    })
    .await
}

#[tokio::test]
async fn a_ws_security_password_text_token_reaches_the_server() {
    let server = ws_security_server().await;
    let gateway = project_with(
        &server,
        r#"ws_security = { username = "${DMV_USER}", password = "${DMV_PASSWORD}" }"#,
    )
    .var("DMV_USER", "dmv-gateway")
    .var("DMV_PASSWORD", "s3cr&t<pw>")
    .build()
    .await;

    let answer = gateway.post(QUERY).await;

    assert_eq!(outcome(&answer.body), expected_license());
    assert!(server.received()[0].body.contains("#PasswordText"));
}

#[tokio::test]
async fn a_ws_security_password_digest_token_verifies_at_the_server() {
    let server = ws_security_server().await;
    let gateway = project_with(
        &server,
        r#"ws_security = { username = "${DMV_USER}", password = "${DMV_PASSWORD}", password_type = "digest" }"#,
    )
        .var("DMV_USER", "dmv-gateway")
        .var("DMV_PASSWORD", "s3cr&t<pw>")
        .build()
        .await;

    let answer = gateway.post(QUERY).await;
    let again = gateway.post(QUERY).await;

    assert_eq!(
        (outcome(&answer.body), outcome(&again.body)),
        (expected_license(), expected_license())
    );
    let received = server.received();
    assert!(
        !received[0].body.contains("s3cr"),
        "a digest never sends the password"
    );
    assert_ne!(
        texts_in(&received[0].body, "Nonce", "-").0,
        texts_in(&received[1].body, "Nonce", "-").0,
        "every call has a fresh nonce"
    );
}

// ---------------------------------------------------------------------------------------------
// Check-time errors
// ---------------------------------------------------------------------------------------------

/// A project whose connector file is [`DMV_TOML`] with `old` replaced by `new`, and with
/// `wsdl = "dmv.wsdl"` holding `wsdl` when given.
fn checked_project(old: &str, new: &str, wsdl: Option<&str>) -> Project {
    assert!(DMV_TOML.contains(old), "`{old}` is not in the connector");
    let mut toml = DMV_TOML.replacen(old, new, 1);
    let mut builder = TestGateway::builder()
        .schema("dmv.graphql", SDL)
        .var("DMV_URL", "http://127.0.0.1:9");
    if let Some(wsdl) = wsdl {
        toml = toml.replacen("# extra", "wsdl = \"dmv.wsdl\"", 1);
        builder = builder.connector("dmv.wsdl", wsdl);
    }
    builder.connector("dmv.toml", &toml).write()
}

/// `file:line:column: message` of every diagnostic about the connector file, file names only.
/// (A connector that does not build also leaves `Query` without fields, which the graph
/// reports separately; that follow-on report is not this file's subject.)
fn reported(project: &Project) -> Vec<String> {
    match check(project) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics
            .0
            .iter()
            .map(|d| {
                let at = d.location.as_ref().map_or_else(String::new, |l| {
                    let file = l.path.file_name().map_or_else(
                        || l.path.display().to_string(),
                        |f| f.to_string_lossy().into_owned(),
                    );
                    format!("{file}:{}:{}", l.line, l.column)
                });
                format!("{at}: {}", d.message)
            })
            .filter(|report| report.starts_with("dmv.toml:"))
            .collect(),
    }
}

#[track_caller]
fn assert_one_report(project: &Project, at: &str, phrase: &str) {
    let reported = reported(project);
    assert!(
        reported.len() == 1 && reported[0].starts_with(at) && reported[0].contains(phrase),
        "expected one report at {at} containing {phrase:?}, found {reported:#?}"
    );
}

#[test]
fn the_demo_shaped_connector_checks_clean_against_its_wsdl() {
    let project = checked_project("description", "description", Some(DMV_WSDL));
    let checked = check(&project);
    assert!(checked.is_ok(), "{:?}", checked.err());
}

#[test]
fn a_malformed_body_template_is_reported_at_its_line() {
    let project = checked_project("</dmv:GetLicense>\"", "\"", None);
    assert_one_report(&project, "dmv.toml:13:8: ", "is not well-formed XML");
}

#[test]
fn an_undeclared_prefix_in_the_body_is_reported_at_its_line() {
    let project = checked_project(
        "<dmv:licenseNumber>{license_number}</dmv:licenseNumber>",
        "<mv:licenseNumber>{license_number}</mv:licenseNumber>",
        None,
    );
    assert_one_report(&project, "dmv.toml:13:8: ", "prefix `mv:`");
}

#[test]
fn an_undeclared_prefix_in_select_is_reported_at_its_line() {
    let project = checked_project("dmv:GetLicenseResponse/", "mv:GetLicenseResponse/", None);
    assert_one_report(&project, "dmv.toml:14:10: ", "prefix `mv:`");
}

#[test]
fn a_select_path_missing_from_the_wsdl_names_the_step_and_what_is_there() {
    let project = checked_project("/dmv:license\"", "/dmv:licence\"", Some(DMV_WSDL));
    assert_one_report(
        &project,
        "dmv.toml:14:10: ",
        "step 2 `dmv:licence` is not a child of `dmv:GetLicenseResponse`, which contains `dmv:license`",
    );
}

#[test]
fn an_action_missing_from_the_wsdl_is_reported_at_the_operation() {
    let project = checked_project("#GetLicense\"", "#GetLicence\"", Some(DMV_WSDL));
    assert_one_report(
        &project,
        "dmv.toml:11:",
        "no binding operation has `soapAction`",
    );
}

#[test]
fn a_missing_wsdl_file_is_reported_at_the_wsdl_key() {
    let project = checked_project("# extra", "wsdl = \"missing.wsdl\"", None);
    assert_one_report(&project, "dmv.toml:9:8: ", "cannot read");
}
