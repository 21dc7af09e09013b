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
fn replay(target: &str, min_seeds: usize, check: Check) {
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

/// A harness's `check`: panics on an input its target must not fail on.
type Check = fn(&[u8]);

/// A small xorshift generator: mutations are reproducible from the printed seed.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One to four random edits of `input`, with `other` (another seed) to splice from.
    fn mutate(&mut self, input: &mut Vec<u8>, other: &[u8]) {
        const INTERESTING: [u8; 12] = [
            0, 1, 0x7f, 0x80, 0xff, b'{', b'}', b'"', b'\\', b'<', b'&', b' ',
        ];
        for _ in 0..1 + self.below(4) {
            let at = self.below(input.len() + 1);
            match self.below(6) {
                0 if at < input.len() => input[at] ^= 1 << self.below(8),
                1 if at < input.len() => input[at] = INTERESTING[self.below(INTERESTING.len())],
                2 => input.insert(at, self.next() as u8),
                3 if at < input.len() => {
                    let end = (at + 1 + self.below(16)).min(input.len());
                    input.drain(at..end);
                }
                4 if at < input.len() => {
                    let end = (at + 1 + self.below(64)).min(input.len());
                    let copy = input[at..end].to_vec();
                    let to = self.below(input.len() + 1);
                    input.splice(to..to, copy);
                }
                _ if !other.is_empty() => {
                    let from = self.below(other.len());
                    let end = (from + 1 + self.below(128)).min(other.len());
                    input.splice(at..at, other[from..end].iter().copied());
                }
                _ => {}
            }
        }
    }
}

/// Not coverage-guided fuzzing (that is `cargo fuzz`, see `fuzz/README.md`), but a quick stand-in
/// where libFuzzer cannot be built: random edits and splices of each corpus, through the same
/// checks, for `CIVICGRAPH_MUTATE_SECONDS` (default 20) per target. Failing inputs are written to
/// the temporary directory. `cargo test --test integration -- --ignored mutated_corpora`.
#[test]
#[ignore = "minutes of random inputs; run on demand"]
fn mutated_corpora_keep_their_targets_checks() {
    let seconds: u64 = std::env::var("CIVICGRAPH_MUTATE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64 | 1);
    let targets: [(&str, Check); 4] = [
        ("graphql_request", crate::graphql_request_harness::check),
        ("soap_answer", crate::soap_answer_harness::check),
        ("copybook", crate::copybook_harness::check),
        ("decode_record", crate::decode_record_harness::check),
    ];
    let mut failures = Vec::new();
    for (target, check) in targets {
        let seeds: Vec<Vec<u8>> = corpus(target)
            .iter()
            .map(|path| std::fs::read(path).expect("a readable seed"))
            .collect();
        let mut mutator = Mutator(seed);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        let mut runs = 0u64;
        while std::time::Instant::now() < deadline {
            let mut input = seeds[mutator.below(seeds.len())].clone();
            let other = &seeds[mutator.below(seeds.len())];
            mutator.mutate(&mut input, other);
            runs += 1;
            if std::panic::catch_unwind(|| check(&input)).is_err() {
                let path = std::env::temp_dir().join(format!("{target}-crash-{runs}.bin"));
                std::fs::write(&path, &input).expect("write the failing input");
                failures.push(format!("{target}: {}", path.display()));
            }
        }
        eprintln!("{target}: {runs} mutated inputs (seed {seed})");
    }
    assert!(
        failures.is_empty(),
        "failing inputs:\n{}",
        failures.join("\n")
    );
}
