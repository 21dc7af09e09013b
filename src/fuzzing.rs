//! Entry points for the cargo-fuzz targets in `fuzz/` that the public API does not already
//! offer. Hidden from the docs and not part of the API: the fuzzers need to reach one private
//! mapping without the crate opening its SOAP internals to everyone.
//!
//! The other targets drive public items: `Gateway::load` + `Gateway::router` (the GraphQL
//! request path), `Copybook::parse` and `RecordCodec` (the mainframe codec).

use serde_json::Value;

use crate::config::Returns;
use crate::connectors::CallError;
use crate::connectors::soap::read_answer;
use crate::connectors::xml::Name;

/// The demo motor vehicle agency's namespace (`connectors/dmv.toml`).
const DMV_NS: &str = "urn:civicgraph:demo:dmv:v1";

/// A backend's SOAP answer (`status`, body `bytes`) mapped to JSON as the shipped
/// `connectors/dmv.toml` maps it: once as `license` (`returns = "one"` with a `lists` path) and
/// once as `vehicles` (`returns = "many"`). Outside bytes, so this must never panic.
pub fn map_soap_answer(status: u16, bytes: &[u8]) -> [Result<Option<Value>, CallError>; 2] {
    let dmv = |local: &str| Name::new(Some(DMV_NS), local);
    let namespaces = [("dmv".to_string(), DMV_NS.to_string())];
    let license = read_answer(
        status,
        bytes,
        &[dmv("GetLicenseResponse"), dmv("license")],
        &[vec![dmv("restrictions"), dmv("restriction")]],
        Returns::One,
        &namespaces,
    );
    let vehicles = read_answer(
        status,
        bytes,
        &[dmv("GetVehiclesResponse"), dmv("vehicles"), dmv("vehicle")],
        &[],
        Returns::Many,
        &namespaces,
    );
    [license, vehicles]
}
