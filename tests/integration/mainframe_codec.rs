//! The mainframe record codec against golden records written by hand.
//!
//! The copybooks and records live in `tests/fixtures/mainframe/`: every `.hex` record was
//! written byte by byte from the copybook rules, with a comment per field, so these tests
//! check the codec against the rules rather than against itself. Decoding goes through the
//! real copybook parser, as the connector does.

use std::path::PathBuf;

use civicgraph::connectors::mainframe::{
    CodePage, CodecOptions, Copybook, DecodeError, DecodeProblem, FieldDecode, FieldOptions, Item,
    ItemKind, NullWhen, Overflow, Pad, RecordCodec,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mainframe")
        .join(name)
}

/// The bytes of a `.hex` fixture: hex pairs, `#` comments.
fn hex(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture exists");
    let mut bytes = Vec::new();
    for line in text.lines() {
        let data = line.split('#').next().unwrap_or_default();
        for pair in data.split_whitespace() {
            bytes.push(u8::from_str_radix(pair, 16).expect("hex pair in fixture"));
        }
    }
    bytes
}

fn record(copybook: &str) -> Item {
    let path = fixture(copybook);
    let text = std::fs::read_to_string(&path).expect("copybook exists");
    let parsed = Copybook::parse(&path.display().to_string(), &text).expect("copybook parses");
    parsed.record(None).expect("one record").clone()
}

fn field(options: FieldOptions) -> FieldOptions {
    options
}

fn date(format: &str, null_when: NullWhen) -> FieldOptions {
    FieldOptions {
        decode: FieldDecode::Date(format.into()),
        null_when: Some(null_when),
        ..FieldOptions::default()
    }
}

fn when(condition: &str) -> FieldOptions {
    FieldOptions {
        when: Some(condition.into()),
        ..FieldOptions::default()
    }
}

fn payment_options(code_page: CodePage) -> CodecOptions {
    CodecOptions {
        code_page,
        strip_prefixes: vec!["BNQ-".into()],
        fields: [
            ("BNQ-OPEN-DATE".to_owned(), date("%Y%m%d", NullWhen::Zero)),
            (
                "BNQ-CLOSE-DATE".to_owned(),
                date("%Y-%m-%d", NullWhen::Spaces),
            ),
        ]
        .into_iter()
        .collect(),
        ..CodecOptions::default()
    }
}

fn payment_codec(code_page: CodePage) -> RecordCodec {
    RecordCodec::new(&record("benefit-payment.cpy"), payment_options(code_page))
        .expect("options fit the copybook")
}

fn cases_options() -> CodecOptions {
    CodecOptions {
        strip_prefixes: vec!["BNQ-".into()],
        fields: [
            (
                "BNQ-PARTY".to_owned(),
                field(FieldOptions {
                    skip: true,
                    ..FieldOptions::default()
                }),
            ),
            ("BNQ-PERSON".to_owned(), when("BNQ-RECORD-TYPE-PERSON")),
            ("BNQ-BUSINESS".to_owned(), when("BNQ-RECORD-TYPE-BUSINESS")),
            (
                "BNQ-BIRTH-DATE".to_owned(),
                field(FieldOptions {
                    decode: FieldDecode::Date("%Y%m%d".into()),
                    ..FieldOptions::default()
                }),
            ),
        ]
        .into_iter()
        .collect(),
        ..CodecOptions::default()
    }
}

fn cases_codec() -> RecordCodec {
    RecordCodec::new(&record("benefit-cases.cpy"), cases_options()).expect("options fit")
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn decoded(codec: &RecordCodec, bytes: &[u8]) -> Value {
    Value::Object(codec.decode(bytes).expect("the golden record decodes"))
}

fn decode_error(codec: &RecordCodec, bytes: &[u8]) -> DecodeError {
    codec.decode(bytes).expect_err("the record is refused")
}

/// A golden record with some bytes replaced.
fn patched(name: &str, at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut record = hex(name);
    record[at..at + bytes.len()].copy_from_slice(bytes);
    record
}

// ----- decoding golden records -----

#[test]
fn decodes_positive_numbers_in_every_form() {
    let codec = payment_codec(CodePage::Cp037);
    assert_eq!(codec.record_len(), 138);
    assert_eq!(
        decoded(&codec, &hex("payment-positive.hex")),
        json!({
            "caseNumber": "UI-0012345",
            "caseStatus": "OPEN",
            "monthlyAmount": "1500.00",
            "arrears": "120.50",
            "weeksPaid": "52",
            "adjustment": "12.34",
            "leadOverpunch": "123",
            "leadSeparate": "7",
            "trailSeparate": "45.6",
            "dependants": "3",
            "half": "1234",
            "halfUnsigned": "9999",
            "full": "123456789",
            "fullUnsigned": "999999999",
            "double": "999999999999999999",
            "doubleUnsigned": "12345678.90",
            "bigZoned": "123456789012345678",
            "bigPacked": "99999999999999999999999999.99",
            "openDate": "2024-01-31",
            "closeDate": "2024-12-31",
            "remark": "[A1] ok"
        })
    );
}

#[test]
fn decodes_negative_numbers_in_every_form() {
    let codec = payment_codec(CodePage::Cp037);
    assert_eq!(
        decoded(&codec, &hex("payment-negative.hex")),
        json!({
            "caseNumber": "DI-0000001",
            "caseStatus": "PENDING",
            "monthlyAmount": "-1234.56",
            "arrears": "-0.05",
            "weeksPaid": "1234",
            "adjustment": "-120.50",
            "leadOverpunch": "-45",
            "leadSeparate": "-999",
            "trailSeparate": "-0.1",
            "dependants": "42",
            "half": "-1234",
            "halfUnsigned": "0",
            "full": "-123456789",
            "fullUnsigned": "1",
            "double": "-1",
            "doubleUnsigned": "0.01",
            "bigZoned": "1",
            "bigPacked": "-99999999999999999999999999.99",
            "openDate": "1999-12-31",
            "closeDate": null,
            "remark": "neg"
        })
    );
}

#[test]
fn decodes_zero_and_negative_zero_with_their_scale() {
    let codec = payment_codec(CodePage::Cp037);
    assert_eq!(
        decoded(&codec, &hex("payment-zero.hex")),
        json!({
            "caseNumber": "ZERO",
            "caseStatus": "CLOSED",
            "monthlyAmount": "0.00",
            "arrears": "0.00",
            "weeksPaid": "0",
            "adjustment": "0.00",
            "leadOverpunch": "0",
            "leadSeparate": "0",
            "trailSeparate": "0.0",
            "dependants": "0",
            "half": "0",
            "halfUnsigned": "0",
            "full": "0",
            "fullUnsigned": "0",
            "double": "0",
            "doubleUnsigned": "0.00",
            "bigZoned": "0",
            "bigPacked": "0.00",
            "openDate": null,
            "closeDate": null,
            "remark": ""
        })
    );
}

#[test]
fn code_page_1047_reads_brackets_at_other_bytes() {
    let golden = hex("payment-positive.hex");
    let cp1047 = payment_codec(CodePage::Cp1047);
    // The 037 brackets BA and BB are Ý and ¨ in 1047.
    assert_eq!(decoded(&cp1047, &golden)["remark"], json!("ÝA1¨ ok"));
    // In 1047 the brackets are AD and BD.
    let in_1047 = patched("payment-positive.hex", 126, &[0xAD, 0xC1, 0xF1, 0xBD]);
    assert_eq!(decoded(&cp1047, &in_1047)["remark"], json!("[A1] ok"));
    let cp037 = payment_codec(CodePage::Cp037);
    assert_eq!(decoded(&cp037, &in_1047)["remark"], json!("ÝA1¨ ok"));
    let bytes = cp1047
        .encode(&object(json!({"BNQ-REMARK": "[x]"})))
        .expect("encodes");
    assert_eq!(&bytes[126..129], &[0xAD, 0xA7, 0xBD]);
}

#[test]
fn a_variable_table_with_no_entries_moves_the_trailer_up() {
    let codec = cases_codec();
    assert_eq!((codec.min_len(), codec.record_len()), (26, 56));
    let bytes = hex("cases-0.hex");
    assert_eq!(bytes.len(), 26);
    assert_eq!(
        decoded(&codec, &bytes),
        json!({
            "clientId": "C00001",
            "recordType": "PERSON",
            "person": {"birthDate": "1985-07-04"},
            "business": null,
            "flags": ["Y", "N", ""],
            "caseCount": "0",
            "cases": [],
            "trailer": "END."
        })
    );
}

#[test]
fn one_entry_and_the_other_redefines_view() {
    let codec = cases_codec();
    assert_eq!(
        decoded(&codec, &hex("cases-1.hex")),
        json!({
            "clientId": "B00042",
            "recordType": "BUSINESS",
            "person": null,
            "business": {"employees": "250", "sector": "AGRI"},
            "flags": ["N", "N", "N"],
            "caseCount": "1",
            "cases": [{"caseKind": "UNEMPLOYMENT", "monthlyAmount": "1500.00", "weeks": "26"}],
            "trailer": "END."
        })
    );
}

#[test]
fn a_full_variable_table_and_a_padded_slot() {
    let codec = cases_codec();
    let bytes = hex("cases-3.hex");
    let expected = json!({
        "clientId": "C00003",
        "recordType": "PERSON",
        "person": {"birthDate": "2000-02-29"},
        "business": null,
        "flags": ["Y", "Y", "Y"],
        "caseCount": "3",
        "cases": [
            {"caseKind": "UNEMPLOYMENT", "monthlyAmount": "1500.00", "weeks": "1"},
            {"caseKind": "DISABILITY", "monthlyAmount": "-12.34", "weeks": "10"},
            {"caseKind": "UNEMPLOYMENT", "monthlyAmount": "0.00", "weeks": "0"}
        ],
        "trailer": "END."
    });
    assert_eq!(decoded(&codec, &bytes), expected);
    // Extract files pad each record to a fixed slot: bytes past the layout are ignored.
    let mut slot = hex("cases-1.hex");
    slot.resize(80, 0x40);
    assert_eq!(decoded(&codec, &slot)["trailer"], json!("END."));
}

#[test]
fn without_when_every_view_is_decoded() {
    let mut options = cases_options();
    options.fields.remove("BNQ-PERSON");
    options.fields.remove("BNQ-BUSINESS");
    options.fields.remove("BNQ-PARTY");
    options.fields.remove("BNQ-BIRTH-DATE");
    let codec = RecordCodec::new(&record("benefit-cases.cpy"), options).expect("valid");
    // A person's birth date read as a business: F1 F9 F8 F5 is not packed decimal.
    let error = decode_error(&codec, &hex("cases-0.hex"));
    assert_eq!(error.field, "BNQ-BUSINESS.BNQ-EMPLOYEES");
    assert_eq!(error.offset, 7);
    assert_eq!(error.problem, DecodeProblem::BadPackedDigit { nibble: 0xF });
    // A business read as a person: the packed bytes are not zoned digits.
    let error = decode_error(&codec, &hex("cases-1.hex"));
    assert_eq!(
        (error.field.as_str(), error.offset),
        ("BNQ-PERSON.BNQ-BIRTH-DATE", 7)
    );
    assert_eq!(error.problem, DecodeProblem::NotADigit { byte: 0x00 });
}

#[test]
fn raw_decoding_ignores_88_levels() {
    let mut options = payment_options(CodePage::Cp037);
    options.fields.insert(
        "BNQ-CASE-STATUS".into(),
        FieldOptions {
            decode: FieldDecode::Raw,
            name: Some("statusCode".into()),
            ..FieldOptions::default()
        },
    );
    let codec = RecordCodec::new(&record("benefit-payment.cpy"), options).expect("valid");
    let value = decoded(&codec, &hex("payment-negative.hex"));
    assert_eq!(value["statusCode"], json!("Q"));
    assert!(value.get("caseStatus").is_none());
}

// ----- every decoding problem, with its field path and offset -----

#[test]
fn every_decode_problem_names_the_field_and_offset() {
    let payment = payment_codec(CodePage::Cp037);
    let cases = cases_codec();
    let p = "payment-positive.hex";
    let checks: [(&RecordCodec, Vec<u8>, &str, usize, DecodeProblem); 21] = [
        // Packed: a digit nibble B in the second case's amount.
        (
            &cases,
            patched("cases-3.hex", 36, &[0x0B]),
            "BNQ-CASES(2).BNQ-MONTHLY-AMOUNT",
            34,
            DecodeProblem::BadPackedDigit { nibble: 0xB },
        ),
        // Packed: the pad nibble of 9(4) COMP-3 must be 0.
        (
            &payment,
            patched(p, 20, &[0x10]),
            "BNQ-WEEKS-PAID",
            20,
            DecodeProblem::BadPackedDigit { nibble: 0x1 },
        ),
        // Packed: sign nibbles A and E are refused (only C, D, F).
        (
            &cases,
            patched("cases-3.hex", 38, &[0x4A]),
            "BNQ-CASES(2).BNQ-MONTHLY-AMOUNT",
            34,
            DecodeProblem::BadSign { nibble: 0xA },
        ),
        (
            &payment,
            patched(p, 15, &[0x0E]),
            "BNQ-MONTHLY-AMOUNT",
            11,
            DecodeProblem::BadSign { nibble: 0xE },
        ),
        // Packed: D in an unsigned picture.
        (
            &payment,
            patched(p, 22, &[0x2D]),
            "BNQ-WEEKS-PAID",
            20,
            DecodeProblem::BadSign { nibble: 0xD },
        ),
        // Zoned: a space among the digits.
        (
            &payment,
            patched(p, 25, &[0x40]),
            "BNQ-ADJUSTMENT",
            23,
            DecodeProblem::NotADigit { byte: 0x40 },
        ),
        // Zoned: an overpunch that is not on the sign digit.
        (
            &payment,
            patched(p, 23, &[0xC0]),
            "BNQ-ADJUSTMENT",
            23,
            DecodeProblem::NotADigit { byte: 0xC0 },
        ),
        // Zoned: sign zone E on the last digit.
        (
            &payment,
            patched(p, 29, &[0xE4]),
            "BNQ-ADJUSTMENT",
            23,
            DecodeProblem::BadSign { nibble: 0xE },
        ),
        // Zoned, leading overpunch: zone A on the first digit.
        (
            &payment,
            patched(p, 30, &[0xA1]),
            "BNQ-LEAD-OVERPUNCH",
            30,
            DecodeProblem::BadSign { nibble: 0xA },
        ),
        // Separate signs: a space and a period where + or - belongs.
        (
            &payment,
            patched(p, 33, &[0x40]),
            "BNQ-LEAD-SEPARATE",
            33,
            DecodeProblem::BadSeparateSign { byte: 0x40 },
        ),
        (
            &payment,
            patched(p, 41, &[0x4B]),
            "BNQ-TRAIL-SEPARATE",
            37,
            DecodeProblem::BadSeparateSign { byte: 0x4B },
        ),
        // Binary: more digits than the picture.
        (
            &payment,
            patched(p, 47, &[0x27, 0x10]),
            "BNQ-HALF",
            47,
            DecodeProblem::BinaryOverflow {
                value: 10000,
                digits: 4,
            },
        ),
        (
            &payment,
            patched(p, 49, &[0xFF, 0xFF]),
            "BNQ-HALF-UNSIGNED",
            49,
            DecodeProblem::BinaryOverflow {
                value: 65535,
                digits: 4,
            },
        ),
        // A count above the table's maximum, and a negative one.
        (
            &cases,
            patched("cases-3.hex", 20, &[0x00, 0x4C]),
            "BNQ-CASES",
            22,
            DecodeProblem::BadOccursCount {
                count: 4,
                min: 0,
                max: 3,
            },
        ),
        (
            &cases,
            patched("cases-0.hex", 20, &[0x00, 0x1D]),
            "BNQ-CASES",
            22,
            DecodeProblem::BadOccursCount {
                count: -1,
                min: 0,
                max: 3,
            },
        ),
        // 88-levels: 'X' is not a status; "XX" not a case kind.
        (
            &payment,
            patched(p, 10, &[0xE7]),
            "BNQ-CASE-STATUS",
            10,
            DecodeProblem::NoCondition,
        ),
        (
            &cases,
            patched("cases-3.hex", 42, &[0xE7, 0xE7]),
            "BNQ-CASES(3).BNQ-CASE-KIND",
            42,
            DecodeProblem::NoCondition,
        ),
        // Dates: 30 February, month 13.
        (
            &payment,
            patched(p, 112, &[0xF0, 0xF2, 0xF3, 0xF0]),
            "BNQ-OPEN-DATE",
            108,
            DecodeProblem::BadDate {
                format: "%Y%m%d".into(),
            },
        ),
        (
            &payment,
            patched(p, 121, &[0xF1, 0xF3]),
            "BNQ-CLOSE-DATE",
            116,
            DecodeProblem::BadDate {
                format: "%Y-%m-%d".into(),
            },
        ),
        // chrono reads "-024" as a year; no mainframe date means that (found by fuzzing:
        // "-024-12-03" could not be written back in ten characters).
        (
            &payment,
            patched(
                p,
                116,
                &[0x60, 0xF0, 0xF2, 0xF4, 0x60, 0xF1, 0xF2, 0x60, 0xF3, 0x40],
            ),
            "BNQ-CLOSE-DATE",
            116,
            DecodeProblem::BadDate {
                format: "%Y-%m-%d".into(),
            },
        ),
        (
            &cases,
            patched("cases-0.hex", 11, &[0xF0, 0xF2, 0xF3, 0xF0]),
            "BNQ-PERSON.BNQ-BIRTH-DATE",
            7,
            DecodeProblem::BadDate {
                format: "%Y%m%d".into(),
            },
        ),
    ];
    for (codec, bytes, field, offset, problem) in checks {
        let error = decode_error(codec, &bytes);
        assert_eq!(
            (error.field.as_str(), error.offset, &error.problem),
            (field, offset, &problem),
            "{error}"
        );
    }
}

#[test]
fn a_short_record_fails_at_the_first_field_that_does_not_fit() {
    let cases = cases_codec();
    // One case: the trailer moved to 32 and needs bytes up to 36.
    let one = hex("cases-1.hex");
    let error = decode_error(&cases, &one[..34]);
    assert_eq!((error.field.as_str(), error.offset), ("BNQ-TRAILER", 32));
    assert_eq!(
        error.problem,
        DecodeProblem::ShortRecord {
            needed: 36,
            actual: 34
        }
    );
    // Three cases cut inside the third.
    let three = hex("cases-3.hex");
    let error = decode_error(&cases, &three[..50]);
    assert_eq!(
        (error.field.as_str(), error.offset),
        ("BNQ-CASES(3).BNQ-WEEKS", 49)
    );
    assert_eq!(
        error.problem,
        DecodeProblem::ShortRecord {
            needed: 52,
            actual: 50
        }
    );
    // A FILLER that is not there is short too, even though it is never read.
    let error = decode_error(&cases, &three[..19]);
    assert_eq!((error.field.as_str(), error.offset), ("FILLER", 18));
    let payment = payment_codec(CodePage::Cp037);
    let error = decode_error(&payment, &hex("payment-positive.hex")[..137]);
    assert_eq!((error.field.as_str(), error.offset), ("BNQ-REMARK", 126));
    assert_eq!(
        error.to_string(),
        "field BNQ-REMARK at byte 126: record is 137 bytes, the field needs bytes up to 138"
    );
}

// ----- encoding -----

fn positive_values() -> Value {
    json!({
        "BNQ-CASE-NUMBER": "UI-0012345",
        "BNQ-CASE-STATUS": "OPEN",
        "BNQ-MONTHLY-AMOUNT": 1500,
        "BNQ-ARREARS": "120.5",
        "BNQ-WEEKS-PAID": "52",
        "BNQ-ADJUSTMENT": 12.34,
        "BNQ-LEAD-OVERPUNCH": "+123",
        "BNQ-LEAD-SEPARATE": 7,
        "BNQ-TRAIL-SEPARATE": "45.60",
        "BNQ-DEPENDANTS": 3,
        "BNQ-HALF": 1234,
        "BNQ-HALF-UNSIGNED": "9999",
        "BNQ-FULL": 123456789,
        "BNQ-FULL-UNSIGNED": 999999999,
        "BNQ-DOUBLE": "999999999999999999",
        "BNQ-DOUBLE-UNSIGNED": "12345678.9",
        "BNQ-BIG-ZONED": "123456789012345678",
        "BNQ-BIG-PACKED": "99999999999999999999999999.99",
        "BNQ-OPEN-DATE": "2024-01-31",
        "BNQ-CLOSE-DATE": "2024-12-31",
        "BNQ-REMARK": "[A1] ok"
    })
}

#[test]
fn encodes_the_golden_records_byte_for_byte() {
    let codec = payment_codec(CodePage::Cp037);
    assert_eq!(
        codec.encode(&object(positive_values())),
        Ok(hex("payment-positive.hex"))
    );
    let negative = json!({
        "BNQ-CASE-NUMBER": "DI-0000001",
        "BNQ-CASE-STATUS": "Q",
        "BNQ-MONTHLY-AMOUNT": "-1234.56",
        "BNQ-ARREARS": -0.05,
        "BNQ-WEEKS-PAID": 1234,
        "BNQ-ADJUSTMENT": "-120.50",
        "BNQ-LEAD-OVERPUNCH": -45,
        "BNQ-LEAD-SEPARATE": -999,
        "BNQ-TRAIL-SEPARATE": "-0.1",
        "BNQ-DEPENDANTS": "42",
        "BNQ-HALF": -1234,
        "BNQ-FULL": -123456789,
        "BNQ-FULL-UNSIGNED": 1,
        "BNQ-DOUBLE": -1,
        "BNQ-DOUBLE-UNSIGNED": "0.01",
        "BNQ-BIG-ZONED": 1,
        "BNQ-BIG-PACKED": "-99999999999999999999999999.99",
        "BNQ-OPEN-DATE": "1999-12-31",
        "BNQ-CLOSE-DATE": null,
        "BNQ-REMARK": "neg"
    });
    // The golden record has the lenient C zone on BNQ-DEPENDANTS' last digit; the codec
    // writes the preferred F of an unsigned field.
    let mut expected = hex("payment-negative.hex");
    expected[46] = 0xF2;
    assert_eq!(codec.encode(&object(negative)), Ok(expected));
}

#[test]
fn encodes_variable_tables_from_arrays_and_sets_the_count() {
    let codec = cases_codec();
    let one = json!({
        "BNQ-CLIENT-ID": "B00042",
        "BNQ-RECORD-TYPE": "BUSINESS",
        "BNQ-EMPLOYEES": 250,
        "BNQ-SECTOR": "AGRI",
        "BNQ-FLAGS": ["N", "N", "N"],
        "BNQ-CASES": [
            {"BNQ-CASE-KIND": "UNEMPLOYMENT", "BNQ-MONTHLY-AMOUNT": "1500", "BNQ-WEEKS": 26}
        ],
        "BNQ-TRAILER": "END."
    });
    assert_eq!(codec.encode(&object(one)), Ok(hex("cases-1.hex")));
    let three = json!({
        "BNQ-CLIENT-ID": "C00003",
        "BNQ-RECORD-TYPE": "P",
        "BNQ-BIRTH-DATE": "2000-02-29",
        "BNQ-FLAGS": ["Y", "Y", "Y"],
        "BNQ-CASES": [
            {"BNQ-CASE-KIND": "UI", "BNQ-MONTHLY-AMOUNT": 1500, "BNQ-WEEKS": 1},
            {"BNQ-CASE-KIND": "DISABILITY", "BNQ-MONTHLY-AMOUNT": -12.34, "BNQ-WEEKS": "010"},
            {"BNQ-CASE-KIND": "UNEMPLOYMENT"}
        ],
        "BNQ-TRAILER": "END."
    });
    assert_eq!(codec.encode(&object(three)), Ok(hex("cases-3.hex")));
    // No cases: 26 bytes, the FILLER written as spaces.
    let none = json!({
        "BNQ-CLIENT-ID": "C00001",
        "BNQ-RECORD-TYPE": "PERSON",
        "BNQ-BIRTH-DATE": "1985-07-04",
        "BNQ-FLAGS": ["Y", "N"],
        "BNQ-CASES": [],
        "BNQ-TRAILER": "END."
    });
    assert_eq!(
        codec.encode(&object(none)),
        Ok(patched("cases-0.hex", 18, &[0x40, 0x40]))
    );
}

#[test]
fn encoding_refuses_what_does_not_fit() {
    let codec = payment_codec(CodePage::Cp037);
    let cases = cases_codec();
    let refused =
        |codec: &RecordCodec, values: Value| codec.encode(&object(values)).expect_err("refused");
    let checks: [(&RecordCodec, Value, &str, &str); 13] = [
        (
            &codec,
            json!({"BNQ-MONTHLY-AMOUNT": "10000000"}),
            "BNQ-MONTHLY-AMOUNT",
            "has more integer digits than the picture's 7",
        ),
        (
            &codec,
            json!({"BNQ-MONTHLY-AMOUNT": "1.005"}),
            "BNQ-MONTHLY-AMOUNT",
            "has more decimal places than the picture's 2 (values are never rounded)",
        ),
        (
            &codec,
            json!({"BNQ-WEEKS-PAID": -1}),
            "BNQ-WEEKS-PAID",
            "is negative and the picture has no sign",
        ),
        (
            &codec,
            json!({"BNQ-HALF": 10000}),
            "BNQ-HALF",
            "has more integer digits than the picture's 4",
        ),
        (
            &codec,
            json!({"BNQ-HALF": "1e3"}),
            "BNQ-HALF",
            "is not a decimal number",
        ),
        (
            &codec,
            json!({"BNQ-CASE-NUMBER": "UI-00123456789"}),
            "BNQ-CASE-NUMBER",
            "is 14 characters, the field holds 10",
        ),
        (
            &codec,
            json!({"BNQ-CASE-STATUS": "OPENED"}),
            "BNQ-CASE-STATUS",
            "is none of the field's values (OPEN, CLOSED, PENDING)",
        ),
        (
            &codec,
            json!({"BNQ-OPEN-DATE": "2024-02-30"}),
            "BNQ-OPEN-DATE",
            "is not a date written YYYY-MM-DD",
        ),
        (
            &codec,
            json!({"BNQ-CLOSE-DATE": "+12345-01-01"}),
            "BNQ-CLOSE-DATE",
            "is not a date written YYYY-MM-DD",
        ),
        (
            &codec,
            json!({"BNQ-REMARK": null}),
            "BNQ-REMARK",
            "is null, and the field has no `null_when`",
        ),
        (
            &cases,
            json!({"BNQ-CASES": [{}, {}, {}, {}]}),
            "BNQ-CASES",
            "has 4 entries; the table holds at most 3",
        ),
        (
            &cases,
            json!({"BNQ-CASE-COUNT": 2, "BNQ-CASES": [{}]}),
            "BNQ-CASE-COUNT",
            "is 2 but its table has 1 entries",
        ),
        (
            &cases,
            json!({"BNQ-BIRTH-DATE": "2000-01-01", "BNQ-SECTOR": "AGRI"}),
            "BNQ-BUSINESS.BNQ-SECTOR",
            "shares its bytes with BNQ-PERSON (REDEFINES BNQ-PARTY), which is given too",
        ),
    ];
    for (codec, values, field, problem) in checks {
        let error = refused(codec, values);
        assert_eq!(
            (error.field.as_str(), error.problem.as_str()),
            (field, problem)
        );
    }
    let error = refused(
        &cases,
        json!({"BNQ-CASES": [{"BNQ-MONTHLY-AMOUNT": "0"}, {"BNQ-WEEKS": 1000}]}),
    );
    assert_eq!(error.field, "BNQ-CASES(2).BNQ-WEEKS");
    // Errors never repeat the value (it may be personal data).
    let error = refused(&codec, json!({"BNQ-REMARK": "Jane Q. Citizen, 1 Main St"}));
    assert!(!error.to_string().contains("Jane"), "{error}");
    assert_eq!(
        error.to_string(),
        "field BNQ-REMARK: is 26 characters, the field holds 12"
    );
}

#[test]
fn text_is_padded_and_truncated_as_configured() {
    let mut options = payment_options(CodePage::Cp037);
    options.text_pad = Pad::LowValues;
    options.text_overflow = Overflow::Truncate;
    options.fields.insert(
        "BNQ-CASE-NUMBER".into(),
        FieldOptions {
            overflow: Some(Overflow::Error),
            ..FieldOptions::default()
        },
    );
    let codec = RecordCodec::new(&record("benefit-payment.cpy"), options).expect("valid");
    let bytes = codec
        .encode(&object(json!({"BNQ-REMARK": "ok", "BNQ-CASE-NUMBER": "A"})))
        .expect("encodes");
    assert_eq!(
        &bytes[126..138],
        &[0x96, 0x92, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(&bytes[0..10], &[0xC1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    // The record truncates, the field overrides it and refuses.
    let bytes = codec
        .encode(&object(json!({"BNQ-REMARK": "[A1] ok, and more"})))
        .expect("truncated");
    assert_eq!(
        &bytes[126..138],
        &[
            0xBA, 0xC1, 0xF1, 0xBB, 0x40, 0x96, 0x92, 0x6B, 0x40, 0x81, 0x95, 0x84
        ]
    );
    let error = codec
        .encode(&object(json!({"BNQ-CASE-NUMBER": "UI-00123456789"})))
        .expect_err("the field says error");
    assert_eq!(error.problem, "is 14 characters, the field holds 10");
    // Fields not given: VALUE clauses absent here, so spaces and zeros.
    let codec = payment_codec(CodePage::Cp037);
    let bytes = codec.encode(&Map::new()).expect("all defaults");
    assert_eq!(bytes.len(), 138);
    assert_eq!(&bytes[0..11], &[0x40; 11]);
    assert_eq!(&bytes[11..16], &[0x00, 0x00, 0x00, 0x00, 0x0C]);
    assert_eq!(&bytes[20..23], &[0x00, 0x00, 0x0F]);
    assert_eq!(&bytes[23..30], &[0xF0, 0xF0, 0xF0, 0xF0, 0xF0, 0xF0, 0xC0]);
    assert_eq!(&bytes[33..37], &[0x4E, 0xF0, 0xF0, 0xF0]);
}

#[test]
fn options_that_do_not_fit_the_copybook_are_refused() {
    let payment = record("benefit-payment.cpy");
    let with = |key: &str, options: FieldOptions| {
        let mut all = payment_options(CodePage::Cp037);
        all.fields.insert(key.into(), options);
        RecordCodec::new(&payment, all).expect_err("refused")
    };
    assert_eq!(
        with("BNQ-NO-SUCH-FIELD", FieldOptions::default()),
        "fields.BNQ-NO-SUCH-FIELD names no item of record BNQ-PAYMENT"
    );
    assert!(with("BNQ-REMARK", when("BNQ-CASE-STATUS-OPEN")).contains("REDEFINES"));
    assert!(with("BNQ-MONTHLY-AMOUNT", date("%Y%m%d", NullWhen::Zero)).contains("decimals"));
    assert!(with("BNQ-REMARK", date("%Y%m%d", NullWhen::Zero)).contains("numeric"));
    let renamed = FieldOptions {
        name: Some("arrears".into()),
        ..FieldOptions::default()
    };
    assert!(with("BNQ-HALF", renamed).contains("`arrears`"));
    let cases = record("benefit-cases.cpy");
    let mut options = cases_options();
    options
        .fields
        .insert("BNQ-BUSINESS".into(), when("BNQ-NO-SUCH-CONDITION"));
    let error = RecordCodec::new(&cases, options).expect_err("unknown condition");
    assert!(error.contains("BNQ-NO-SUCH-CONDITION"), "{error}");
}

// ----- properties -----

/// A codec for `copybook` whose JSON names are the COBOL names, so decoded JSON can be fed
/// back to `encode` (which takes COBOL names) after flattening groups.
fn cobol_named(item: &Item, mut options: CodecOptions) -> (RecordCodec, Vec<String>) {
    fn visit(item: &Item, options: &mut CodecOptions, groups: &mut Vec<String>) {
        if let Some(name) = &item.name {
            options.fields.entry(name.clone()).or_default().name = Some(name.clone());
        }
        if let ItemKind::Group(children) = &item.kind {
            if let Some(name) = &item.name {
                groups.push(name.clone());
            }
            for child in children {
                visit(child, options, groups);
            }
        }
    }
    let mut groups = Vec::new();
    if let ItemKind::Group(children) = &item.kind {
        for child in children {
            visit(child, &mut options, &mut groups);
        }
    }
    (RecordCodec::new(item, options).expect("valid"), groups)
}

/// Golden records with a few bytes changed, and plain random bytes.
fn mutated(golden: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let edits = proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4);
    (
        prop::sample::select(golden),
        edits,
        any::<prop::sample::Index>(),
    )
        .prop_map(|(name, edits, cut)| {
            let mut bytes = hex(name);
            for (at, byte) in edits {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            let keep = cut
                .index(bytes.len() + 8)
                .max(bytes.len().saturating_sub(4));
            bytes.truncate(keep);
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoding_never_panics_and_what_decodes_re_encodes_stably(
        bytes in prop_oneof![
            mutated(&["cases-0.hex", "cases-1.hex", "cases-3.hex"]),
            proptest::collection::vec(any::<u8>(), 0..64),
        ],
    ) {
        let item = record("benefit-cases.cpy");
        let (codec, groups) = cobol_named(&item, cases_options());
        let Ok(first) = codec.decode(&bytes) else { return Ok(()) };
        let mut values = Map::new();
        crate::decode_record_harness::flatten(&first, &groups, &mut values);
        let encoded = codec.encode(&values).expect("what decodes re-encodes");
        let second = codec.decode(&encoded).expect("what encodes decodes");
        prop_assert_eq!(first, second);
    }

    #[test]
    fn payment_records_never_panic_and_re_encode_stably(
        bytes in prop_oneof![
            mutated(&["payment-positive.hex", "payment-negative.hex", "payment-zero.hex"]),
            proptest::collection::vec(any::<u8>(), 0..160),
        ],
    ) {
        let item = record("benefit-payment.cpy");
        let (codec, groups) = cobol_named(&item, payment_options(CodePage::Cp1047));
        let Ok(first) = codec.decode(&bytes) else { return Ok(()) };
        let mut values = Map::new();
        crate::decode_record_harness::flatten(&first, &groups, &mut values);
        let encoded = codec.encode(&values).expect("what decodes re-encodes");
        prop_assert_eq!(encoded.len(), codec.record_len());
        let second = codec.decode(&encoded).expect("what encodes decodes");
        prop_assert_eq!(first, second);
    }
}

/// The fuzz target's own checks over the committed seed corpus (including the input that once
/// crashed the date decoder), so CI guards what the fuzzer found without running cargo-fuzz.
#[test]
fn the_committed_fuzz_corpus_decodes_without_panics_and_re_encodes_stably() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_record");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).expect("the committed corpus") {
        let path = entry.expect("a corpus entry").path();
        let bytes = std::fs::read(&path).expect("a seed");
        crate::decode_record_harness::check(&bytes);
        seeds += 1;
    }
    assert!(seeds >= 17, "the corpus lost seeds: {seeds}");
}
