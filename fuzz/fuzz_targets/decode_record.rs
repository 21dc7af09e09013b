//! Arbitrary bytes as a record of two realistic copybooks: decoding never panics, and a
//! record that decodes re-encodes to one that decodes to the same JSON.

#![no_main]

#[path = "../harness/decode_record.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::check(data));
