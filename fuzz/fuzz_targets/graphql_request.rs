//! See `fuzz/harness/graphql_request.rs`: the harness is shared with the integration test that replays
//! the committed corpus.

#![no_main]

#[path = "../harness/graphql_request.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::check(data));
