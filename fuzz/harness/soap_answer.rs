//! The soap_answer fuzz harness, shared by the cargo-fuzz target and the integration test that
//! replays the committed seed corpus on every `cargo test`.
//!
//! The first byte picks the HTTP status the backend answered with; the rest is its body, mapped
//! as the shipped DMV connector maps its `license` and `vehicles` answers. Mapping never panics,
//! and only a 2xx answer ever becomes data.

/// Maps `data` as a SOAP answer; panics when a failed (non-2xx) answer still became data.
pub(crate) fn check(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let status = match selector % 4 {
        1 => 500,
        2 => 400,
        3 => 404,
        _ => 200,
    };
    for answer in civicgraph::fuzzing::map_soap_answer(status, body) {
        match answer {
            Ok(_) => assert_eq!(status, 200, "a failed answer became data"),
            // The message is what reaches the log: building it must not panic either.
            Err(error) => drop(error.to_string()),
        }
    }
}
