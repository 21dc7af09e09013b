//! The motor vehicle agency as a SOAP 1.1 service.
//!
//! Real motor vehicle agencies expose licences and registrations through
//! SOAP web services, so the `soap` connector needs a backend that behaves
//! like one: an envelope in the SOAP 1.1 namespace, a `SOAPAction` header,
//! document/literal bodies in the agency's own namespace, `xsi:nil` for
//! absent values, faults with HTTP 500, and a WSDL on `?wsdl`.
//!
//! | request | answer |
//! |---|---|
//! | `POST /dmv/soap`, `GetLicense` / `GetVehicles` | 200, the response element (empty when the licence number is unknown) |
//! | `POST /dmv/soap`, `GetLicenses` / `GetVehicleLists` with up to [`MAX_LIST_NUMBERS`] licence numbers | 200, one `license` / `holder` per known number, in licence-number order; unknown numbers are left out |
//! | `POST /dmv/soap`, `GetExpiringRegistrations` with `withinDays` (0 to [`MAX_EXPIRING_DAYS`]) and an optional `asOf` date (default: today, UTC) | 200, one `registration` (plate, owner's licence number, expiry date) per registration expiring in that window, soonest first (see [`Population::registrations_expiring`]) |
//! | malformed XML, a DTD, an unknown operation, a malformed licence number (any of a list's), too many numbers, a `withinDays` out of range, a malformed `asOf`, a wrong `SOAPAction` | 500, `soap:Client` fault |
//! | an envelope in another SOAP version's namespace | 500, `soap:VersionMismatch` fault |
//! | a header entry with `soap:mustUnderstand="1"` | 500, `soap:MustUnderstand` fault |
//! | a `Content-Type` other than `text/xml` | 415, `soap:Client` fault |
//! | a body over [`MAX_REQUEST_BYTES`] | 413, `soap:Client` fault |
//! | `GET /dmv/soap?wsdl` | 200, `connectors/dmv.wsdl` with the address of the server asked |
//!
//! Requests are read with a namespace-aware pull parser that refuses DTDs
//! (so no entity expansion can happen), limits nesting, and accepts only
//! the five predefined entities and character references.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;

use super::data::{DriverLicense, Population, Vehicle};

/// Where the service listens, relative to the server's base URL.
pub const SOAP_PATH: &str = "/dmv/soap";
/// The agency's XML namespace, bound to the `dmv` prefix in every answer.
pub const NAMESPACE: &str = "urn:civicgraph:demo:dmv:v1";
/// The SOAP 1.1 envelope namespace.
pub const SOAP11_ENVELOPE: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The SOAP 1.2 envelope namespace, recognised only to answer `VersionMismatch`.
pub const SOAP12_ENVELOPE: &str = "http://www.w3.org/2003/05/soap-envelope";
/// `SOAPAction` of `GetLicense`, as declared in the WSDL.
pub const GET_LICENSE_ACTION: &str = "urn:civicgraph:demo:dmv:v1#GetLicense";
/// `SOAPAction` of `GetVehicles`, as declared in the WSDL.
pub const GET_VEHICLES_ACTION: &str = "urn:civicgraph:demo:dmv:v1#GetVehicles";
/// `SOAPAction` of `GetLicenses`, the list form of `GetLicense`, as declared in the WSDL.
pub const GET_LICENSES_ACTION: &str = "urn:civicgraph:demo:dmv:v1#GetLicenses";
/// `SOAPAction` of `GetVehicleLists`, the list form of `GetVehicles`, as declared in the WSDL.
pub const GET_VEHICLE_LISTS_ACTION: &str = "urn:civicgraph:demo:dmv:v1#GetVehicleLists";
/// `SOAPAction` of `GetExpiringRegistrations`, the reminder scan, as declared in the WSDL.
pub const GET_EXPIRING_REGISTRATIONS_ACTION: &str =
    "urn:civicgraph:demo:dmv:v1#GetExpiringRegistrations";
/// The longest window `GetExpiringRegistrations` looks ahead, in days.
pub const MAX_EXPIRING_DAYS: u32 = 366;
/// Most licence numbers one list operation takes (the WSDL's `maxOccurs`).
pub const MAX_LIST_NUMBERS: usize = 100;
/// Largest request body accepted; a licence lookup is a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// The service description, served on `GET /dmv/soap?wsdl`.
pub const WSDL: &str = include_str!("../../connectors/dmv.wsdl");

/// The address written in [`WSDL`]; replaced by the address a client used.
const WSDL_DEFAULT_LOCATION: &str = "http://127.0.0.1:7102/dmv/soap";
const XSI_NAMESPACE: &str = "http://www.w3.org/2001/XMLSchema-instance";
const TEXT_XML: &str = "text/xml; charset=utf-8";
/// Deepest element nesting a request may have (a valid one has five levels).
const MAX_DEPTH: usize = 16;

/// Builds the DMV service so it can be mounted in-process or served by
/// [`super::SimulatedAgencies`].
pub fn dmv_router(population: Arc<Population>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(SOAP_PATH, get(wsdl).post(soap))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(population)
}

/// Whether `text` is a licence number as the DMV writes them: `D` and seven digits.
pub fn is_license_number(text: &str) -> bool {
    text.len() == 8
        && text.starts_with('D')
        && text.bytes().skip(1).all(|byte| byte.is_ascii_digit())
}

/// The operations the service offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    License,
    Vehicles,
    Licenses,
    VehicleLists,
    ExpiringRegistrations,
}

impl Operation {
    fn from_local_name(name: &[u8]) -> Option<Self> {
        match name {
            b"GetLicense" => Some(Self::License),
            b"GetVehicles" => Some(Self::Vehicles),
            b"GetLicenses" => Some(Self::Licenses),
            b"GetVehicleLists" => Some(Self::VehicleLists),
            b"GetExpiringRegistrations" => Some(Self::ExpiringRegistrations),
            _ => None,
        }
    }

    fn action(self) -> &'static str {
        match self {
            Self::License => GET_LICENSE_ACTION,
            Self::Vehicles => GET_VEHICLES_ACTION,
            Self::Licenses => GET_LICENSES_ACTION,
            Self::VehicleLists => GET_VEHICLE_LISTS_ACTION,
            Self::ExpiringRegistrations => GET_EXPIRING_REGISTRATIONS_ACTION,
        }
    }

    /// Whether the operation takes a list of licence numbers.
    fn is_list(self) -> bool {
        matches!(self, Self::Licenses | Self::VehicleLists)
    }

    /// Whether the operation is about licence numbers (all but the reminder scan).
    fn takes_license_numbers(self) -> bool {
        !matches!(self, Self::ExpiringRegistrations)
    }
}

/// The elements an operation's parameters come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parameter {
    LicenseNumber,
    WithinDays,
    AsOf,
}

impl Parameter {
    fn from_local_name(operation: Operation, name: &[u8]) -> Option<Self> {
        match (operation.takes_license_numbers(), name) {
            (true, b"licenseNumber") => Some(Self::LicenseNumber),
            (false, b"withinDays") => Some(Self::WithinDays),
            (false, b"asOf") => Some(Self::AsOf),
            _ => None,
        }
    }

    fn not_text(self) -> Fault {
        match self {
            Self::LicenseNumber => Fault::Client("licenseNumber must be text"),
            Self::WithinDays => Fault::Client("withinDays must be text"),
            Self::AsOf => Fault::Client("asOf must be text"),
        }
    }
}

/// A SOAP 1.1 fault. The texts are fixed so that nothing a client sent is
/// ever echoed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The request is wrong; the `&str` says how.
    Client(&'static str),
    /// The operation's licence number is not `D` and seven digits.
    InvalidLicenseNumber,
    /// The envelope is not in the SOAP 1.1 namespace.
    VersionMismatch,
    /// A header entry must be understood and is not.
    MustUnderstand,
}

impl Fault {
    fn code(self) -> &'static str {
        match self {
            Self::Client(_) | Self::InvalidLicenseNumber => "soap:Client",
            Self::VersionMismatch => "soap:VersionMismatch",
            Self::MustUnderstand => "soap:MustUnderstand",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::Client(message) => message,
            Self::InvalidLicenseNumber => "the licence number is malformed",
            Self::VersionMismatch => "only SOAP 1.1 envelopes are accepted",
            Self::MustUnderstand => "a mandatory header entry is not understood",
        }
    }

    fn into_response_with(self, status: StatusCode) -> Response {
        let mut body = String::with_capacity(512);
        body.push_str(r#"<soap:Fault><faultcode>"#);
        body.push_str(self.code());
        body.push_str("</faultcode><faultstring>");
        body.push_str(&escape(self.message()));
        body.push_str("</faultstring>");
        if self == Self::InvalidLicenseNumber {
            // A typed fault, declared in the WSDL, for errors in the body's content.
            body.push_str(
                "<detail><dmv:InvalidLicenseNumber><dmv:reason>expected D followed by seven \
                 digits</dmv:reason></dmv:InvalidLicenseNumber></detail>",
            );
        }
        body.push_str("</soap:Fault>");
        xml_response(status, &envelope(&body))
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        // SOAP 1.1 over HTTP: every fault is a 500.
        self.into_response_with(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// A parsed request: which operation, about which licence numbers (exactly one for the
/// single operations, none for the reminder scan), or over which window.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    operation: Operation,
    license_numbers: Vec<String>,
    /// The reminder scan's `withinDays`, as sent.
    within_days: Option<String>,
    /// The reminder scan's `asOf`, as sent.
    as_of: Option<String>,
}

/// What the parameter elements held, collected while parsing.
#[derive(Debug, Default)]
struct Params {
    license_numbers: Vec<String>,
    within_days: Option<String>,
    as_of: Option<String>,
}

async fn wsdl(RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    if !query.is_some_and(|query| query.eq_ignore_ascii_case("wsdl")) {
        let mut response = Fault::Client("POST a SOAP envelope, or GET ?wsdl for the description")
            .into_response_with(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return response;
    }
    // Like real SOAP stacks, advertise the address the client reached us on.
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| is_plain_authority(host));
    let document = match host {
        Some(host) => WSDL.replace(WSDL_DEFAULT_LOCATION, &format!("http://{host}{SOAP_PATH}")),
        None => WSDL.to_owned(),
    };
    xml_response(StatusCode::OK, &document)
}

/// A `Host` value that can go into an attribute unescaped: name or address and port.
fn is_plain_authority(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte))
}

async fn soap(
    State(population): State<Arc<Population>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let is_text_xml = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/xml"));
    if !is_text_xml {
        return Fault::Client("SOAP 1.1 requests are sent as text/xml")
            .into_response_with(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return Fault::Client("the request body could not be read")
                .into_response_with(rejection.status());
        }
    };
    let Some(action) = headers
        .get("soapaction")
        .and_then(|value| value.to_str().ok())
    else {
        return Fault::Client("the SOAPAction header is required").into_response();
    };
    let call = match parse_request(&body) {
        Ok(call) => call,
        Err(fault) => return fault.into_response(),
    };
    // An empty SOAPAction means "see the body"; any other must name the body's operation.
    let action = action.trim().trim_matches('"');
    if !action.is_empty() && action != call.operation.action() {
        return Fault::Client("the SOAPAction header does not match the operation").into_response();
    }
    if call.operation == Operation::ExpiringRegistrations {
        return match expiring_registrations_response(&population, &call) {
            Ok(body) => xml_response(StatusCode::OK, &envelope(&body)),
            Err(fault) => fault.into_response(),
        };
    }
    if !call.license_numbers.iter().all(|n| is_license_number(n)) {
        return Fault::InvalidLicenseNumber.into_response();
    }
    let Some(first) = call.license_numbers.first() else {
        return Fault::Client("the operation has no licenseNumber").into_response();
    };
    // A list operation answers each known number once, in licence-number order rather than
    // the order asked, as real services do; clients match items by their numbers.
    let mut numbers: Vec<&str> = call.license_numbers.iter().map(String::as_str).collect();
    numbers.sort_unstable();
    numbers.dedup();
    let body = match call.operation {
        Operation::License => get_license_response(population.license(first)),
        Operation::Vehicles => get_vehicles_response(
            population
                .license(first)
                .map(|_| population.vehicles_of(first)),
        ),
        Operation::Licenses => {
            let mut out = String::from("<dmv:GetLicensesResponse>");
            for license in numbers.iter().filter_map(|n| population.license(n)) {
                write_license(&mut out, license);
            }
            out.push_str("</dmv:GetLicensesResponse>");
            out
        }
        Operation::VehicleLists => {
            let mut out = String::from("<dmv:GetVehicleListsResponse>");
            for number in numbers.iter().filter(|n| population.license(n).is_some()) {
                out.push_str("<dmv:holder>");
                element(&mut out, "licenseNumber", number);
                write_vehicles(&mut out, population.vehicles_of(number));
                out.push_str("</dmv:holder>");
            }
            out.push_str("</dmv:GetVehicleListsResponse>");
            out
        }
        // Answered above.
        Operation::ExpiringRegistrations => String::new(),
    };
    xml_response(StatusCode::OK, &envelope(&body))
}

/// The `GetExpiringRegistrationsResponse` element for a checked window.
fn expiring_registrations_response(population: &Population, call: &Call) -> Result<String, Fault> {
    let within_days = call
        .within_days
        .as_deref()
        .map(str::trim)
        .and_then(|days| days.parse::<u32>().ok())
        .filter(|days| *days <= MAX_EXPIRING_DAYS)
        .ok_or(Fault::Client(
            "withinDays must be a whole number of days from 0 to 366",
        ))?;
    let today = match call.as_of.as_deref().map(str::trim) {
        None => chrono::Utc::now().date_naive(),
        Some(text) => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| Fault::Client("asOf must be a date, YYYY-MM-DD"))?,
    };
    let expiring = population.registrations_expiring(today, within_days);
    let mut out = String::with_capacity(64 + 160 * expiring.len());
    out.push_str("<dmv:GetExpiringRegistrationsResponse>");
    for registration in expiring {
        out.push_str("<dmv:registration>");
        element(&mut out, "plate", registration.plate);
        element(&mut out, "licenseNumber", registration.owner_license_number);
        element(&mut out, "expiresOn", registration.expires_on);
        out.push_str("</dmv:registration>");
    }
    out.push_str("</dmv:GetExpiringRegistrationsResponse>");
    Ok(out)
}

fn xml_response(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_XML))],
        body.to_owned(),
    )
        .into_response()
}

fn envelope(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP11_ENVELOPE}" xmlns:xsi="{XSI_NAMESPACE}" xmlns:dmv="{NAMESPACE}"><soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
}

/// Appends `<dmv:name>value</dmv:name>` with the value escaped.
fn element(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let value = value.to_string();
    // Writing to a String cannot fail.
    let _ = write!(out, "<dmv:{name}>{}</dmv:{name}>", escape(value.as_str()));
}

/// The `GetLicenseResponse` element; with no `license` inside for an unknown number.
fn get_license_response(license: Option<&DriverLicense>) -> String {
    let Some(license) = license else {
        return "<dmv:GetLicenseResponse/>".to_owned();
    };
    let mut out = String::with_capacity(512);
    out.push_str("<dmv:GetLicenseResponse>");
    write_license(&mut out, license);
    out.push_str("</dmv:GetLicenseResponse>");
    out
}

/// Appends one `license` element.
fn write_license(out: &mut String, license: &DriverLicense) {
    out.push_str("<dmv:license>");
    element(out, "number", &license.number);
    element(out, "class", license.class.as_str());
    element(out, "status", license.status.as_str());
    element(out, "issuedOn", license.issued_on);
    element(out, "expiresOn", license.expires_on);
    element(out, "points", license.points);
    if license.restrictions.is_empty() {
        out.push_str("<dmv:restrictions/>");
    } else {
        out.push_str("<dmv:restrictions>");
        for restriction in &license.restrictions {
            element(out, "restriction", restriction);
        }
        out.push_str("</dmv:restrictions>");
    }
    out.push_str("</dmv:license>");
}

/// The `GetVehiclesResponse` element: no `vehicles` inside for an unknown
/// licence number, an empty one for a holder without vehicles.
fn get_vehicles_response(vehicles: Option<&[Vehicle]>) -> String {
    let Some(vehicles) = vehicles else {
        return "<dmv:GetVehiclesResponse/>".to_owned();
    };
    let mut out = String::with_capacity(64 + 400 * vehicles.len());
    out.push_str("<dmv:GetVehiclesResponse>");
    write_vehicles(&mut out, vehicles);
    out.push_str("</dmv:GetVehiclesResponse>");
    out
}

/// Appends one `vehicles` element (empty for a holder without vehicles).
fn write_vehicles(out: &mut String, vehicles: &[Vehicle]) {
    if vehicles.is_empty() {
        out.push_str("<dmv:vehicles/>");
        return;
    }
    out.push_str("<dmv:vehicles>");
    for vehicle in vehicles {
        out.push_str("<dmv:vehicle>");
        element(out, "vin", &vehicle.vin);
        element(out, "plate", &vehicle.plate);
        element(out, "make", vehicle.make);
        element(out, "model", vehicle.model);
        element(out, "year", vehicle.year);
        element(out, "registeredOn", vehicle.registered_on);
        match vehicle.registration_expires_on {
            Some(expiry) => element(out, "registrationExpiresOn", expiry),
            None => out.push_str(r#"<dmv:registrationExpiresOn xsi:nil="true"/>"#),
        }
        out.push_str("</dmv:vehicle>");
    }
    out.push_str("</dmv:vehicles>");
}

/// Where the parser is in the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Before the root element.
    Prolog,
    /// Inside `soap:Envelope`, before `soap:Body`.
    Envelope,
    /// Inside `soap:Header`.
    Header,
    /// Inside `soap:Body`, before the operation element.
    Body,
    /// Inside the operation element.
    Operation,
    /// Inside a parameter element (`dmv:licenseNumber`, `dmv:withinDays`, `dmv:asOf`).
    Parameter(Parameter),
    /// Inside an element whose content is skipped (a header entry).
    Skipped,
    /// After the operation element, inside `soap:Body`.
    AfterOperation,
    /// After `soap:Body`, inside `soap:Envelope`.
    AfterBody,
    /// After the root element.
    Epilog,
}

fn is_namespace(resolved: &ResolveResult<'_>, uri: &str) -> bool {
    matches!(resolved, ResolveResult::Bound(Namespace(bound)) if *bound == uri.as_bytes())
}

/// Reads a SOAP 1.1 request envelope into the call it asks for.
///
/// Accepts exactly `Envelope > [Header] > Body > (GetLicense | GetVehicles) >
/// licenseNumber`, or up to [`MAX_LIST_NUMBERS`] `licenseNumber`s in `GetLicenses` and
/// `GetVehicleLists`, or `GetExpiringRegistrations > withinDays, [asOf]`, namespace-aware
/// (any prefixes), with whitespace and comments anywhere and optional header entries that
/// need not be understood. Everything else is a fault.
fn parse_request(body: &[u8]) -> Result<Call, Fault> {
    const MALFORMED: Fault = Fault::Client("the request is not well-formed XML");
    let text = std::str::from_utf8(body).map_err(|_| Fault::Client("the request is not UTF-8"))?;
    let mut reader = NsReader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;

    // The stack of places entered, one per open element.
    let mut stack: Vec<Place> = Vec::with_capacity(8);
    let mut place = Place::Prolog;
    let mut operation: Option<Operation> = None;
    let mut params = Params::default();
    let mut value = String::new();

    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(|_| MALFORMED)?;
        match event {
            Event::DocType(_) => return Err(Fault::Client("DTDs are not accepted")),
            Event::Start(ref start) | Event::Empty(ref start) => {
                let is_empty = matches!(event, Event::Empty(_));
                let local = start.local_name();
                let local = local.as_ref();
                let next = match place {
                    Place::Prolog => {
                        if local != b"Envelope" {
                            return Err(Fault::Client("the root element is not a SOAP envelope"));
                        }
                        if is_namespace(&resolved, SOAP11_ENVELOPE) {
                            Place::Envelope
                        } else {
                            return Err(Fault::VersionMismatch);
                        }
                    }
                    Place::Envelope if is_namespace(&resolved, SOAP11_ENVELOPE) => match local {
                        b"Header" => Place::Header,
                        b"Body" => Place::Body,
                        _ => return Err(Fault::Client("unexpected element in the envelope")),
                    },
                    Place::Header => {
                        if must_understand(&reader, start) {
                            return Err(Fault::MustUnderstand);
                        }
                        Place::Skipped
                    }
                    Place::Skipped => Place::Skipped,
                    Place::Body => {
                        let known = is_namespace(&resolved, NAMESPACE)
                            .then(|| Operation::from_local_name(local))
                            .flatten();
                        match known {
                            Some(found) => {
                                operation = Some(found);
                                Place::Operation
                            }
                            None => return Err(Fault::Client("unknown operation")),
                        }
                    }
                    Place::Operation => {
                        let parameter = operation
                            .filter(|_| is_namespace(&resolved, NAMESPACE))
                            .and_then(|operation| Parameter::from_local_name(operation, local));
                        let Some(parameter) = parameter else {
                            return Err(Fault::Client("unexpected element in the operation"));
                        };
                        match parameter {
                            Parameter::LicenseNumber => {
                                let list = operation.is_some_and(Operation::is_list);
                                if !list && !params.license_numbers.is_empty() {
                                    return Err(Fault::Client("licenseNumber is given twice"));
                                }
                                if params.license_numbers.len() >= MAX_LIST_NUMBERS {
                                    return Err(Fault::Client(
                                        "too many licence numbers in one request",
                                    ));
                                }
                            }
                            Parameter::WithinDays if params.within_days.is_some() => {
                                return Err(Fault::Client("withinDays is given twice"));
                            }
                            Parameter::AsOf if params.as_of.is_some() => {
                                return Err(Fault::Client("asOf is given twice"));
                            }
                            Parameter::WithinDays | Parameter::AsOf => {}
                        }
                        value.clear();
                        Place::Parameter(parameter)
                    }
                    Place::Parameter(parameter) => {
                        return Err(parameter.not_text());
                    }
                    Place::AfterOperation => {
                        return Err(Fault::Client("the body holds more than one operation"));
                    }
                    Place::Envelope | Place::AfterBody | Place::Epilog => {
                        return Err(Fault::Client("unexpected element in the envelope"));
                    }
                };
                if is_empty {
                    close(next, &mut place, &mut params, &value);
                } else {
                    if stack.len() >= MAX_DEPTH {
                        return Err(Fault::Client("the request is nested too deeply"));
                    }
                    stack.push(place);
                    place = next;
                }
            }
            Event::End(_) => {
                let closed = place;
                place = stack.pop().ok_or(MALFORMED)?;
                close(closed, &mut place, &mut params, &value);
            }
            Event::Text(text) => {
                let text = text.xml_content().map_err(|_| MALFORMED)?;
                match place {
                    Place::Parameter(_) => value.push_str(&text),
                    Place::Skipped => {}
                    _ if text.trim().is_empty() => {}
                    _ => return Err(Fault::Client("unexpected text in the envelope")),
                }
            }
            Event::CData(data) => match place {
                Place::Parameter(_) => {
                    value.push_str(&data.xml_content().map_err(|_| MALFORMED)?);
                }
                Place::Skipped => {}
                _ => return Err(Fault::Client("unexpected text in the envelope")),
            },
            Event::GeneralRef(reference) => {
                // Only character references and the five predefined entities exist
                // without a DTD; anything else is an undefined entity.
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(character)) => character.to_string(),
                    Ok(None) => {
                        let name = reference.decode().map_err(|_| MALFORMED)?;
                        resolve_predefined_entity(&name)
                            .ok_or(Fault::Client("undefined entity"))?
                            .to_owned()
                    }
                    Err(_) => return Err(MALFORMED),
                };
                match place {
                    Place::Parameter(_) => value.push_str(&resolved),
                    Place::Skipped => {}
                    _ => return Err(Fault::Client("unexpected text in the envelope")),
                }
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if place != Place::Epilog || !stack.is_empty() {
        return Err(MALFORMED);
    }
    let operation = operation.ok_or(Fault::Client("the body holds no operation"))?;
    if operation.takes_license_numbers() && params.license_numbers.is_empty() {
        return Err(Fault::Client("the operation has no licenseNumber"));
    }
    if !operation.takes_license_numbers() && params.within_days.is_none() {
        return Err(Fault::Client("the operation has no withinDays"));
    }
    Ok(Call {
        operation,
        license_numbers: params.license_numbers,
        within_days: params.within_days,
        as_of: params.as_of,
    })
}

/// Moves past an element that just closed: `closed` was its place, `place`
/// is its parent's and becomes where the parser continues.
fn close(closed: Place, place: &mut Place, params: &mut Params, value: &str) {
    match closed {
        Place::Parameter(Parameter::LicenseNumber) => {
            params.license_numbers.push(value.trim().to_owned());
        }
        Place::Parameter(Parameter::WithinDays) => params.within_days = Some(value.to_owned()),
        Place::Parameter(Parameter::AsOf) => params.as_of = Some(value.to_owned()),
        Place::Operation => *place = Place::AfterOperation,
        Place::Body => *place = Place::AfterBody,
        Place::Envelope | Place::AfterBody => *place = Place::Epilog,
        Place::AfterOperation => *place = Place::AfterBody,
        _ => {}
    }
}

/// Whether a header entry carries `soap:mustUnderstand="1"` (or `true`).
fn must_understand(reader: &NsReader<&[u8]>, start: &quick_xml::events::BytesStart<'_>) -> bool {
    start.attributes().flatten().any(|attribute| {
        let (resolved, local) = reader.resolve_attribute(attribute.key);
        is_namespace(&resolved, SOAP11_ENVELOPE)
            && local.as_ref() == b"mustUnderstand"
            && matches!(attribute.value.as_ref(), b"1" | b"true")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(operation: &str, number: &str) -> String {
        format!(
            r#"<?xml version="1.0"?>
<s:Envelope xmlns:s="{SOAP11_ENVELOPE}" xmlns:d="{NAMESPACE}">
  <s:Header><x:Trace xmlns:x="urn:example:trace">abc</x:Trace></s:Header>
  <s:Body><d:{operation}><!-- a comment --><d:licenseNumber> {number} </d:licenseNumber></d:{operation}></s:Body>
</s:Envelope>"#
        )
    }

    #[test]
    fn reads_either_operation_with_any_prefixes() {
        let call = parse_request(request("GetLicense", "D1234567").as_bytes());
        assert_eq!(
            call,
            Ok(Call {
                operation: Operation::License,
                license_numbers: vec!["D1234567".to_owned()],
                within_days: None,
                as_of: None,
            })
        );
        let default_ns = format!(
            r#"<Envelope xmlns="{SOAP11_ENVELOPE}"><Body><GetVehicles xmlns="{NAMESPACE}"><licenseNumber>D&#49;234567</licenseNumber></GetVehicles></Body></Envelope>"#
        );
        let call = parse_request(default_ns.as_bytes()).map(|call| call.operation);
        assert_eq!(call, Ok(Operation::Vehicles));
    }

    #[test]
    fn refuses_dtds_and_undefined_entities() {
        let billion_laughs = format!(
            r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>
<s:Envelope xmlns:s="{SOAP11_ENVELOPE}"><s:Body><d:GetLicense xmlns:d="{NAMESPACE}"><d:licenseNumber>&lol2;</d:licenseNumber></d:GetLicense></s:Body></s:Envelope>"#
        );
        assert_eq!(
            parse_request(billion_laughs.as_bytes()),
            Err(Fault::Client("DTDs are not accepted"))
        );
        let entity = request("GetLicense", "&ent;");
        assert_eq!(
            parse_request(entity.as_bytes()),
            Err(Fault::Client("undefined entity"))
        );
    }

    #[test]
    fn faults_on_wrong_structure() {
        let cases = [
            (
                format!(r#"<s:Envelope xmlns:s="{SOAP11_ENVELOPE}"><s:Body></s:Envelope>"#),
                "the request is not well-formed XML",
            ),
            ("<a/>".to_owned(), "the root element is not a SOAP envelope"),
            (
                request("GetLicense", "D1").replace("</s:Envelope>", ""),
                "the request is not well-formed XML",
            ),
            (request("DeleteLicense", "D1234567"), "unknown operation"),
            (
                request("GetLicense", "<d:x/>"),
                "licenseNumber must be text",
            ),
            (
                format!(
                    r#"<s:Envelope xmlns:s="{SOAP11_ENVELOPE}"><s:Body><GetLicense><licenseNumber>D1234567</licenseNumber></GetLicense></s:Body></s:Envelope>"#
                ),
                "unknown operation",
            ),
            (
                format!(r#"<s:Envelope xmlns:s="{SOAP11_ENVELOPE}"><s:Body/></s:Envelope>"#),
                "the body holds no operation",
            ),
            (
                format!(
                    r#"<s:Envelope xmlns:s="{SOAP11_ENVELOPE}" xmlns:d="{NAMESPACE}"><s:Body><d:GetLicense/><d:GetLicense/></s:Body></s:Envelope>"#
                ),
                "the body holds more than one operation",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(
                parse_request(body.as_bytes()),
                Err(Fault::Client(message)),
                "{body}"
            );
        }
        let deep = format!(
            r#"<s:Envelope xmlns:s="{SOAP11_ENVELOPE}"><s:Header>{}{}</s:Header></s:Envelope>"#,
            "<x>".repeat(40),
            "</x>".repeat(40)
        );
        assert_eq!(
            parse_request(deep.as_bytes()),
            Err(Fault::Client("the request is nested too deeply"))
        );
    }

    #[test]
    fn other_soap_versions_and_mandatory_headers_get_their_own_faults() {
        let soap12 = request("GetLicense", "D1234567").replace(SOAP11_ENVELOPE, SOAP12_ENVELOPE);
        assert_eq!(
            parse_request(soap12.as_bytes()),
            Err(Fault::VersionMismatch)
        );
        let mandatory = request("GetLicense", "D1234567")
            .replace("<x:Trace ", r#"<x:Trace s:mustUnderstand="1" "#);
        assert_eq!(
            parse_request(mandatory.as_bytes()),
            Err(Fault::MustUnderstand)
        );
    }

    #[test]
    fn list_operations_take_many_numbers_and_single_ones_only_one() {
        let list = |operation: &str, count: usize| {
            let numbers: String = (0..count)
                .map(|i| format!("<d:licenseNumber>D{i:07}</d:licenseNumber>"))
                .collect();
            format!(
                r#"<s:Envelope xmlns:s="{SOAP11_ENVELOPE}" xmlns:d="{NAMESPACE}"><s:Body><d:{operation}>{numbers}</d:{operation}></s:Body></s:Envelope>"#
            )
        };
        let call = parse_request(list("GetLicenses", 3).as_bytes()).expect("a list call");
        assert_eq!(
            (call.operation, call.license_numbers),
            (
                Operation::Licenses,
                vec!["D0000000".into(), "D0000001".into(), "D0000002".into()]
            )
        );
        let call = parse_request(list("GetVehicleLists", MAX_LIST_NUMBERS).as_bytes());
        assert_eq!(call.map(|c| c.license_numbers.len()), Ok(MAX_LIST_NUMBERS));
        assert_eq!(
            parse_request(list("GetLicenses", MAX_LIST_NUMBERS + 1).as_bytes()),
            Err(Fault::Client("too many licence numbers in one request"))
        );
        assert_eq!(
            parse_request(list("GetLicense", 2).as_bytes()),
            Err(Fault::Client("licenseNumber is given twice"))
        );
        assert_eq!(
            parse_request(list("GetLicenses", 0).as_bytes()),
            Err(Fault::Client("the operation has no licenseNumber"))
        );
    }

    fn expiring(params: &str) -> String {
        format!(
            r#"<s:Envelope xmlns:s="{SOAP11_ENVELOPE}" xmlns:d="{NAMESPACE}"><s:Body><d:GetExpiringRegistrations>{params}</d:GetExpiringRegistrations></s:Body></s:Envelope>"#
        )
    }

    #[test]
    fn reads_the_expiring_registrations_scan() {
        let call = parse_request(
            expiring("<d:withinDays> 30 </d:withinDays><d:asOf>2026-11-23</d:asOf>").as_bytes(),
        );
        assert_eq!(
            call,
            Ok(Call {
                operation: Operation::ExpiringRegistrations,
                license_numbers: Vec::new(),
                within_days: Some(" 30 ".to_owned()),
                as_of: Some("2026-11-23".to_owned()),
            })
        );
        let cases = [
            ("", "the operation has no withinDays"),
            (
                "<d:asOf>2026-11-23</d:asOf>",
                "the operation has no withinDays",
            ),
            (
                "<d:withinDays>1</d:withinDays><d:withinDays>2</d:withinDays>",
                "withinDays is given twice",
            ),
            (
                "<d:withinDays>1</d:withinDays><d:asOf>2026-01-01</d:asOf><d:asOf>2026-01-02</d:asOf>",
                "asOf is given twice",
            ),
            (
                "<d:licenseNumber>D1234567</d:licenseNumber>",
                "unexpected element in the operation",
            ),
            (
                "<d:withinDays><d:x/></d:withinDays>",
                "withinDays must be text",
            ),
        ];
        for (params, message) in cases {
            assert_eq!(
                parse_request(expiring(params).as_bytes()),
                Err(Fault::Client(message)),
                "{params}"
            );
        }
        assert_eq!(
            parse_request(
                request("GetLicense", "D1234567")
                    .replace("licenseNumber", "withinDays")
                    .as_bytes()
            ),
            Err(Fault::Client("unexpected element in the operation"))
        );
    }

    async fn post(router: &Router, body: String, action: &str) -> (StatusCode, String) {
        use http_body_util::BodyExt as _;
        use tower::ServiceExt as _;
        let request = axum::http::Request::post(SOAP_PATH)
            .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .header("soapaction", action)
            .body(axum::body::Body::from(body))
            .expect("a request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn answers_the_registrations_expiring_in_the_window() {
        let population = Arc::new(Population::generate(1_000, 42));
        let router = dmv_router(Arc::clone(&population));
        let (status, body) = post(
            &router,
            expiring("<d:withinDays>30</d:withinDays><d:asOf>2026-11-23</d:asOf>"),
            GET_EXPIRING_REGISTRATIONS_ACTION,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).expect("a date");
        let due = population.registrations_expiring(today, 30);
        assert!(!due.is_empty());
        let mut expected = String::from("<dmv:GetExpiringRegistrationsResponse>");
        for registration in &due {
            expected.push_str(&format!(
                "<dmv:registration><dmv:plate>{}</dmv:plate><dmv:licenseNumber>{}</dmv:licenseNumber><dmv:expiresOn>{}</dmv:expiresOn></dmv:registration>",
                registration.plate, registration.owner_license_number, registration.expires_on
            ));
        }
        expected.push_str("</dmv:GetExpiringRegistrationsResponse>");
        assert_eq!(body, envelope(&expected));

        let (status, body) = post(
            &router,
            expiring("<d:withinDays>0</d:withinDays>"),
            GET_EXPIRING_REGISTRATIONS_ACTION,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        for (params, message) in [
            (
                "<d:withinDays>367</d:withinDays>",
                "withinDays must be a whole number of days from 0 to 366",
            ),
            (
                "<d:withinDays>-1</d:withinDays>",
                "withinDays must be a whole number of days from 0 to 366",
            ),
            (
                "<d:withinDays>soon</d:withinDays>",
                "withinDays must be a whole number of days from 0 to 366",
            ),
            (
                "<d:withinDays>3</d:withinDays><d:asOf>23.11.2026</d:asOf>",
                "asOf must be a date, YYYY-MM-DD",
            ),
        ] {
            let (status, body) =
                post(&router, expiring(params), GET_EXPIRING_REGISTRATIONS_ACTION).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{params}");
            assert!(
                body.contains("<faultcode>soap:Client</faultcode>"),
                "{body}"
            );
            assert!(body.contains(message), "{params}: {body}");
        }
        let (status, body) = post(
            &router,
            expiring("<d:withinDays>3</d:withinDays>"),
            GET_LICENSE_ACTION,
        )
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("does not match the operation"), "{body}");
    }

    #[test]
    fn licence_numbers_are_d_and_seven_digits() {
        assert!(is_license_number("D0000001"));
        for bad in [
            "",
            "D123456",
            "D12345678",
            "d1234567",
            "X1234567",
            "D12345a7",
            "D１234567",
        ] {
            assert!(!is_license_number(bad), "{bad}");
        }
    }
}
