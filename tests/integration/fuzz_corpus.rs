//! The cargo-fuzz targets' own checks over their committed seed corpora (`fuzz/corpus/<target>/`),
//! so every input a fuzzer once found (and every realistic seed) runs on each `cargo test`, not
//! only when someone fuzzes. `decode_record`'s corpus runs in `mainframe_codec`.

use std::path::{Path, PathBuf};

/// The files of `fuzz/corpus/<target>/`, sorted so a failure names the same seed every run.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every seed of `target`, naming the seed that panics.
fn replay(target: &str, min_seeds: usize, check: fn(&[u8])) {
    let files = corpus(target);
    assert!(
        files.len() >= min_seeds,
        "the {target} corpus lost seeds: {}",
        files.len()
    );
    for path in files {
        let bytes = std::fs::read(&path).expect("a readable seed");
        if std::panic::catch_unwind(|| check(&bytes)).is_err() {
            panic!("fuzz seed {} fails its target's checks", path.display());
        }
    }
}

#[test]
fn the_graphql_request_corpus_gets_coded_json_answers_and_no_500() {
    replay("graphql_request", 20, crate::graphql_request_harness::check);
}

#[test]
fn the_soap_answer_corpus_maps_without_panics_and_failures_never_become_data() {
    replay("soap_answer", 12, crate::soap_answer_harness::check);
}

#[test]
fn the_copybook_corpus_parses_lays_out_and_decodes_without_panics() {
    replay("copybook", 10, crate::copybook_harness::check);
}
