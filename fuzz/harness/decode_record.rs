//! The decode_record fuzz harness, shared by the cargo-fuzz target and the integration test
//! that replays the committed seed corpus on every `cargo test`.
//!
//! Arbitrary bytes as a record of two realistic copybooks: decoding never panics, and a
//! record that decodes re-encodes to one that decodes to the same JSON.

use std::sync::OnceLock;

use civicgraph::connectors::mainframe::{
    CodePage, CodecOptions, Copybook, FieldDecode, FieldOptions, Item, ItemKind, NullWhen,
    RecordCodec,
};
use serde_json::{Map, Value};

const CASES: &str = include_str!("../../tests/fixtures/mainframe/benefit-cases.cpy");
const PAYMENT: &str = include_str!("../../tests/fixtures/mainframe/benefit-payment.cpy");

/// A codec whose JSON names are the COBOL names, and the names of the groups, so decoded JSON
/// can be flattened back into `encode`'s input.
struct Target {
    codec: RecordCodec,
    groups: Vec<String>,
}

fn options(fields: &[(&str, FieldOptions)], code_page: CodePage) -> CodecOptions {
    CodecOptions {
        code_page,
        strip_prefixes: vec!["BNQ-".into()],
        fields: fields
            .iter()
            .map(|(name, options)| ((*name).to_owned(), options.clone()))
            .collect(),
        ..CodecOptions::default()
    }
}

fn date(format: &str, null_when: Option<NullWhen>) -> FieldOptions {
    FieldOptions {
        decode: FieldDecode::Date(format.into()),
        null_when,
        ..FieldOptions::default()
    }
}

fn when(condition: &str) -> FieldOptions {
    FieldOptions {
        when: Some(condition.into()),
        ..FieldOptions::default()
    }
}

fn build(path: &str, text: &str, mut options: CodecOptions) -> Target {
    fn visit(item: &Item, options: &mut CodecOptions, groups: &mut Vec<String>) {
        if let Some(name) = &item.name {
            options.fields.entry(name.clone()).or_default().name = Some(name.clone());
        }
        if let ItemKind::Group(children) = &item.kind {
            groups.extend(item.name.clone());
            for child in children {
                visit(child, options, groups);
            }
        }
    }
    let copybook = Copybook::parse(path, text).expect("the fixture copybook parses");
    let record = copybook.record(None).expect("one record");
    let mut groups = Vec::new();
    if let ItemKind::Group(children) = &record.kind {
        for child in children {
            visit(child, &mut options, &mut groups);
        }
    }
    let codec = RecordCodec::new(record, options).expect("the options fit the copybook");
    Target { codec, groups }
}

fn targets() -> &'static [Target; 2] {
    static TARGETS: OnceLock<[Target; 2]> = OnceLock::new();
    TARGETS.get_or_init(|| {
        let skip = FieldOptions {
            skip: true,
            ..FieldOptions::default()
        };
        let cases = options(
            &[
                ("BNQ-PARTY", skip),
                ("BNQ-PERSON", when("BNQ-RECORD-TYPE-PERSON")),
                ("BNQ-BUSINESS", when("BNQ-RECORD-TYPE-BUSINESS")),
                ("BNQ-BIRTH-DATE", date("%Y%m%d", None)),
            ],
            CodePage::Cp037,
        );
        let payment = options(
            &[
                ("BNQ-OPEN-DATE", date("%Y%m%d", Some(NullWhen::Zero))),
                ("BNQ-CLOSE-DATE", date("%Y-%m-%d", Some(NullWhen::Spaces))),
            ],
            CodePage::Cp1047,
        );
        [
            build("benefit-cases.cpy", CASES, cases),
            build("benefit-payment.cpy", PAYMENT, payment),
        ]
    })
}

/// Decoded JSON → `encode` input: group objects flattened into their parent, `null` views
/// (a `when` that did not hold) left out, tables kept as arrays of flattened entries.
pub(crate) fn flatten(
    decoded: &Map<String, Value>,
    groups: &[String],
    out: &mut Map<String, Value>,
) {
    for (key, value) in decoded {
        match value {
            Value::Object(inner) => flatten(inner, groups, out),
            Value::Null if groups.contains(key) => {}
            Value::Array(entries) => {
                let entries = entries
                    .iter()
                    .map(|entry| match entry {
                        Value::Object(inner) => {
                            let mut flat = Map::new();
                            flatten(inner, groups, &mut flat);
                            Value::Object(flat)
                        }
                        other => other.clone(),
                    })
                    .collect();
                out.insert(key.clone(), Value::Array(entries));
            }
            other => {
                out.insert(key.clone(), other.clone());
            }
        }
    }
}

/// Decodes `data` with both targets; panics when a decoded record does not re-encode to one
/// that decodes the same. What the fuzzer runs on every input, and CI on the seed corpus.
pub(crate) fn check(data: &[u8]) {
    for target in targets() {
        let Ok(first) = target.codec.decode(data) else {
            continue;
        };
        let mut values = Map::new();
        flatten(&first, &target.groups, &mut values);
        let encoded = match target.codec.encode(&values) {
            Ok(encoded) => encoded,
            Err(error) => panic!("a decoded record does not re-encode: {error}"),
        };
        match target.codec.decode(&encoded) {
            Ok(second) => assert_eq!(first, second, "decode(encode(decode(x))) != decode(x)"),
            Err(error) => panic!("a re-encoded record does not decode: {error}"),
        }
    }
}
