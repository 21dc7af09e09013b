//! The copybook fuzz harness, shared by the cargo-fuzz target and the integration test that
//! replays the committed seed corpus on every `cargo test`.
//!
//! The input is copybook source, optionally followed by a NUL byte and a record: the source is
//! parsed; every record it declares is laid out (`civicgraph check --layout`), given a codec,
//! and the trailing bytes are decoded with it. Nothing may panic, whatever the source says.

use civicgraph::connectors::mainframe::{CodecOptions, Copybook, RecordCodec};

/// Records larger than this are not re-encoded: `encode` writes a whole record, and a copybook
/// may legally declare one of almost a gigabyte.
const MAX_ENCODED_BYTES: usize = 1 << 20;

/// Parses the source in `data` and decodes the record after its NUL with each record layout.
pub(crate) fn check(data: &[u8]) {
    let (source, record) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    let copybook = match Copybook::parse("FUZZ.cpy", source) {
        Ok(copybook) => copybook,
        Err(error) => {
            assert!(
                error.to_string().starts_with("FUZZ.cpy:"),
                "a copybook error does not say where: {error}"
            );
            return;
        }
    };
    for item in &copybook.records {
        drop(copybook.layout_table(item));
        let Ok(codec) = RecordCodec::new(item, CodecOptions::default()) else {
            continue;
        };
        assert!(
            codec.min_len() <= codec.record_len(),
            "min_len > record_len"
        );
        let Ok(decoded) = codec.decode(record) else {
            continue;
        };
        if codec.record_len() <= MAX_ENCODED_BYTES {
            // Decoded JSON is nested by group, which `encode` does not take back as it is; it
            // must refuse that cleanly, not panic.
            drop(codec.encode(&decoded));
        }
    }
}
