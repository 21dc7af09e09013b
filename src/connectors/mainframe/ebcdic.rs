//! EBCDIC code pages 037 and 1047 ↔ Unicode.
//!
//! Both pages are single-byte and cover exactly the Latin-1 repertoire (U+0000–U+00FF): every
//! one of the 256 bytes maps to a different character, so decoding never fails and a character
//! above U+00FF is the only thing encoding refuses. The tables are stored as the Latin-1 code
//! point of each EBCDIC byte; the reverse tables are computed from them at compile time, so both
//! directions are one array lookup.
//!
//! The two pages differ in six bytes only (`[`, `]`, `^`, `¬`, `Ý`, `¨`); a mainframe that
//! writes brackets in 1047 read as 037 shows `Ý` and `¨` instead.

use super::codec::CodePage;

// Generated, not typed in, with glibc's iconv (2.x) by this pipeline, once per page:
//
//     python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)))' \
//         | iconv -f IBM037 -t UTF-32BE          # and: iconv -f IBM1047 -t UTF-32BE
//
// The n-th big-endian 4-byte code point of the output is the entry for byte n; all are at most
// U+00FF, so they are stored as `u8`. The generating script asserted that each page is a
// permutation of 0x00–0xFF, and IBM037 agrees byte for byte with Python's `cp037` codec. The
// `iconv_agrees_with_the_tables` test re-checks both tables against iconv where it is installed.

/// EBCDIC 037 byte → Latin-1 code point.
const TO_LATIN1_037: [u8; 256] = [
    0x00, 0x01, 0x02, 0x03, 0x9C, 0x09, 0x86, 0x7F, 0x97, 0x8D, 0x8E, 0x0B, 0x0C, 0x0D, 0x0E,
    0x0F, // 0x0_
    0x10, 0x11, 0x12, 0x13, 0x9D, 0x85, 0x08, 0x87, 0x18, 0x19, 0x92, 0x8F, 0x1C, 0x1D, 0x1E,
    0x1F, // 0x1_
    0x80, 0x81, 0x82, 0x83, 0x84, 0x0A, 0x17, 0x1B, 0x88, 0x89, 0x8A, 0x8B, 0x8C, 0x05, 0x06,
    0x07, // 0x2_
    0x90, 0x91, 0x16, 0x93, 0x94, 0x95, 0x96, 0x04, 0x98, 0x99, 0x9A, 0x9B, 0x14, 0x15, 0x9E,
    0x1A, // 0x3_
    0x20, 0xA0, 0xE2, 0xE4, 0xE0, 0xE1, 0xE3, 0xE5, 0xE7, 0xF1, 0xA2, 0x2E, 0x3C, 0x28, 0x2B,
    0x7C, // 0x4_
    0x26, 0xE9, 0xEA, 0xEB, 0xE8, 0xED, 0xEE, 0xEF, 0xEC, 0xDF, 0x21, 0x24, 0x2A, 0x29, 0x3B,
    0xAC, // 0x5_
    0x2D, 0x2F, 0xC2, 0xC4, 0xC0, 0xC1, 0xC3, 0xC5, 0xC7, 0xD1, 0xA6, 0x2C, 0x25, 0x5F, 0x3E,
    0x3F, // 0x6_
    0xF8, 0xC9, 0xCA, 0xCB, 0xC8, 0xCD, 0xCE, 0xCF, 0xCC, 0x60, 0x3A, 0x23, 0x40, 0x27, 0x3D,
    0x22, // 0x7_
    0xD8, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0xAB, 0xBB, 0xF0, 0xFD, 0xFE,
    0xB1, // 0x8_
    0xB0, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x70, 0x71, 0x72, 0xAA, 0xBA, 0xE6, 0xB8, 0xC6,
    0xA4, // 0x9_
    0xB5, 0x7E, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0xA1, 0xBF, 0xD0, 0xDD, 0xDE,
    0xAE, // 0xA_
    0x5E, 0xA3, 0xA5, 0xB7, 0xA9, 0xA7, 0xB6, 0xBC, 0xBD, 0xBE, 0x5B, 0x5D, 0xAF, 0xA8, 0xB4,
    0xD7, // 0xB_
    0x7B, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0xAD, 0xF4, 0xF6, 0xF2, 0xF3,
    0xF5, // 0xC_
    0x7D, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F, 0x50, 0x51, 0x52, 0xB9, 0xFB, 0xFC, 0xF9, 0xFA,
    0xFF, // 0xD_
    0x5C, 0xF7, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0xB2, 0xD4, 0xD6, 0xD2, 0xD3,
    0xD5, // 0xE_
    0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0xB3, 0xDB, 0xDC, 0xD9, 0xDA,
    0x9F, // 0xF_
];

/// EBCDIC 1047 byte → Latin-1 code point.
const TO_LATIN1_1047: [u8; 256] = [
    0x00, 0x01, 0x02, 0x03, 0x9C, 0x09, 0x86, 0x7F, 0x97, 0x8D, 0x8E, 0x0B, 0x0C, 0x0D, 0x0E,
    0x0F, // 0x0_
    0x10, 0x11, 0x12, 0x13, 0x9D, 0x85, 0x08, 0x87, 0x18, 0x19, 0x92, 0x8F, 0x1C, 0x1D, 0x1E,
    0x1F, // 0x1_
    0x80, 0x81, 0x82, 0x83, 0x84, 0x0A, 0x17, 0x1B, 0x88, 0x89, 0x8A, 0x8B, 0x8C, 0x05, 0x06,
    0x07, // 0x2_
    0x90, 0x91, 0x16, 0x93, 0x94, 0x95, 0x96, 0x04, 0x98, 0x99, 0x9A, 0x9B, 0x14, 0x15, 0x9E,
    0x1A, // 0x3_
    0x20, 0xA0, 0xE2, 0xE4, 0xE0, 0xE1, 0xE3, 0xE5, 0xE7, 0xF1, 0xA2, 0x2E, 0x3C, 0x28, 0x2B,
    0x7C, // 0x4_
    0x26, 0xE9, 0xEA, 0xEB, 0xE8, 0xED, 0xEE, 0xEF, 0xEC, 0xDF, 0x21, 0x24, 0x2A, 0x29, 0x3B,
    0x5E, // 0x5_
    0x2D, 0x2F, 0xC2, 0xC4, 0xC0, 0xC1, 0xC3, 0xC5, 0xC7, 0xD1, 0xA6, 0x2C, 0x25, 0x5F, 0x3E,
    0x3F, // 0x6_
    0xF8, 0xC9, 0xCA, 0xCB, 0xC8, 0xCD, 0xCE, 0xCF, 0xCC, 0x60, 0x3A, 0x23, 0x40, 0x27, 0x3D,
    0x22, // 0x7_
    0xD8, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0xAB, 0xBB, 0xF0, 0xFD, 0xFE,
    0xB1, // 0x8_
    0xB0, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x70, 0x71, 0x72, 0xAA, 0xBA, 0xE6, 0xB8, 0xC6,
    0xA4, // 0x9_
    0xB5, 0x7E, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0xA1, 0xBF, 0xD0, 0x5B, 0xDE,
    0xAE, // 0xA_
    0xAC, 0xA3, 0xA5, 0xB7, 0xA9, 0xA7, 0xB6, 0xBC, 0xBD, 0xBE, 0xDD, 0xA8, 0xAF, 0x5D, 0xB4,
    0xD7, // 0xB_
    0x7B, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0xAD, 0xF4, 0xF6, 0xF2, 0xF3,
    0xF5, // 0xC_
    0x7D, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F, 0x50, 0x51, 0x52, 0xB9, 0xFB, 0xFC, 0xF9, 0xFA,
    0xFF, // 0xD_
    0x5C, 0xF7, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0xB2, 0xD4, 0xD6, 0xD2, 0xD3,
    0xD5, // 0xE_
    0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0xB3, 0xDB, 0xDC, 0xD9, 0xDA,
    0x9F, // 0xF_
];

/// Latin-1 code point → EBCDIC 037 byte.
const FROM_LATIN1_037: [u8; 256] = invert(&TO_LATIN1_037);

/// Latin-1 code point → EBCDIC 1047 byte.
const FROM_LATIN1_1047: [u8; 256] = invert(&TO_LATIN1_1047);

/// The reverse of a byte permutation, computed by the compiler.
const fn invert(table: &[u8; 256]) -> [u8; 256] {
    let mut reverse = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        reverse[table[byte] as usize] = byte as u8;
        byte += 1;
    }
    reverse
}

/// EBCDIC space (0x40), the padding of text fields in both pages.
pub const SPACE: u8 = 0x40;

/// EBCDIC `+` (0x4E), the positive separate sign in both pages.
pub const PLUS: u8 = 0x4E;

/// EBCDIC `-` (0x60), the negative separate sign in both pages.
pub const MINUS: u8 = 0x60;

fn to_latin1(page: CodePage) -> &'static [u8; 256] {
    match page {
        CodePage::Cp037 => &TO_LATIN1_037,
        CodePage::Cp1047 => &TO_LATIN1_1047,
    }
}

fn from_latin1(page: CodePage) -> &'static [u8; 256] {
    match page {
        CodePage::Cp037 => &FROM_LATIN1_037,
        CodePage::Cp1047 => &FROM_LATIN1_1047,
    }
}

/// The character an EBCDIC byte stands for; every byte has one, so this cannot fail.
pub fn decode_byte(page: CodePage, byte: u8) -> char {
    char::from(to_latin1(page)[usize::from(byte)])
}

/// The EBCDIC byte for a character, or `None` when the page has no such character (anything
/// above U+00FF).
pub fn encode_char(page: CodePage, c: char) -> Option<u8> {
    let code = u8::try_from(u32::from(c)).ok()?;
    Some(from_latin1(page)[usize::from(code)])
}

/// Decodes EBCDIC text. Total: every byte is a character, so a record's text never fails.
pub fn decode(page: CodePage, bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    decode_into(page, bytes, &mut text);
    text
}

/// Appends the decoded text to `out`, so callers can size the string once.
pub fn decode_into(page: CodePage, bytes: &[u8], out: &mut String) {
    let table = to_latin1(page);
    out.extend(bytes.iter().map(|&b| char::from(table[usize::from(b)])));
}

/// A character the code page has no byte for. The message names its position only: the text
/// may be personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("character {position} (0-based) has no byte in the EBCDIC code page")]
pub struct UnmappableChar {
    /// 0-based position of the character in the text (in characters, not bytes).
    pub position: usize,
    /// The character, for callers that may show it.
    pub character: char,
}

/// Encodes text into EBCDIC. Fails on the first character the page cannot hold (anything above
/// U+00FF) instead of writing a substitute such as `?`, which would corrupt a request silently.
pub fn encode(page: CodePage, text: &str) -> Result<Vec<u8>, UnmappableChar> {
    let table = from_latin1(page);
    text.chars()
        .enumerate()
        .map(
            |(position, character)| match u8::try_from(u32::from(character)) {
                Ok(code) => Ok(table[usize::from(code)]),
                Err(_) => Err(UnmappableChar {
                    position,
                    character,
                }),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGES: [CodePage; 2] = [CodePage::Cp037, CodePage::Cp1047];

    #[test]
    fn every_byte_round_trips_in_both_pages() {
        for page in PAGES {
            for byte in 0..=255u8 {
                let c = decode_byte(page, byte);
                assert!(u32::from(c) <= 0xFF, "{page:?} {byte:#04x} -> {c:?}");
                assert_eq!(encode_char(page, c), Some(byte), "{page:?} {byte:#04x}");
            }
        }
    }

    #[test]
    fn every_latin1_character_has_exactly_one_byte() {
        for page in PAGES {
            let mut seen = [false; 256];
            for code in 0..=255u8 {
                let byte = encode_char(page, char::from(code)).unwrap_or_default();
                assert!(
                    !seen[usize::from(byte)],
                    "{page:?}: two characters share {byte:#04x}"
                );
                seen[usize::from(byte)] = true;
                assert_eq!(decode_byte(page, byte), char::from(code));
            }
        }
    }

    #[test]
    fn anchors_common_to_both_pages() {
        for page in PAGES {
            assert_eq!(decode(page, &[0x40, 0xC1, 0xC9, 0xD1, 0xE9]), " AIJZ");
            assert_eq!(decode(page, &[0x81, 0x89, 0x91, 0xA9]), "aijz");
            assert_eq!(decode(page, &[0xF0, 0xF5, 0xF9]), "059");
            assert_eq!(
                decode(page, &[0x4B, 0x6B, 0x4E, 0x60, 0x61, 0x7D]),
                ".,+-/'"
            );
            assert_eq!(decode(page, &[0xC0, 0xD0, 0x5B, 0x7C, 0x4A]), "{}$@¢");
            assert_eq!(decode(page, &[0x25, 0x15, 0x00]), "\n\u{85}\0");
            assert_eq!(encode(page, "+"), Ok(vec![PLUS]));
            assert_eq!(encode(page, "-"), Ok(vec![MINUS]));
            assert_eq!(encode(page, " "), Ok(vec![SPACE]));
        }
    }

    #[test]
    fn brackets_and_caret_differ_between_037_and_1047() {
        // 037: [ = 0xBA, ] = 0xBB, ^ = 0xB0, ¬ = 0x5F, Ý = 0xAD, ¨ = 0xBD.
        assert_eq!(
            decode(CodePage::Cp037, &[0xBA, 0xBB, 0xB0, 0x5F, 0xAD, 0xBD]),
            "[]^¬Ý¨"
        );
        // 1047: [ = 0xAD, ] = 0xBD, ^ = 0x5F, ¬ = 0xB0, Ý = 0xBA, ¨ = 0xBB.
        assert_eq!(
            decode(CodePage::Cp1047, &[0xAD, 0xBD, 0x5F, 0xB0, 0xBA, 0xBB]),
            "[]^¬Ý¨"
        );
        assert_eq!(encode(CodePage::Cp037, "[x]"), Ok(vec![0xBA, 0xA7, 0xBB]));
        assert_eq!(encode(CodePage::Cp1047, "[x]"), Ok(vec![0xAD, 0xA7, 0xBD]));
    }

    #[test]
    fn the_pages_differ_in_exactly_six_bytes() {
        let differing: Vec<u8> = (0..=255u8)
            .filter(|&b| decode_byte(CodePage::Cp037, b) != decode_byte(CodePage::Cp1047, b))
            .collect();
        assert_eq!(differing, [0x5F, 0xAD, 0xB0, 0xBA, 0xBB, 0xBD]);
    }

    #[test]
    fn characters_outside_latin1_are_refused_with_their_position() {
        let euro = UnmappableChar {
            position: 2,
            character: '€',
        };
        assert_eq!(encode(CodePage::Cp037, "ab€c"), Err(euro));
        assert_eq!(
            encode(CodePage::Cp1047, "Łódź").map_err(|e| e.position),
            Err(0)
        );
        assert!(!euro.to_string().contains('€'));
        assert_eq!(encode_char(CodePage::Cp037, '€'), None);
        assert_eq!(
            encode(CodePage::Cp037, "café"),
            Ok(vec![0x83, 0x81, 0x86, 0x51])
        );
        assert_eq!(encode(CodePage::Cp037, ""), Ok(vec![]));
    }

    #[test]
    fn iconv_agrees_with_the_tables() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        for (page, name) in [(CodePage::Cp037, "IBM037"), (CodePage::Cp1047, "IBM1047")] {
            let child = Command::new("iconv")
                .args(["-f", name, "-t", "UTF-32BE"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn();
            let Ok(mut child) = child else {
                return; // no iconv on this machine: the anchors above still hold
            };
            let all: Vec<u8> = (0..=255u8).collect();
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(&all).expect("iconv reads its input");
            }
            let output = child.wait_with_output().expect("iconv runs");
            if !output.status.success() {
                return; // this iconv lacks the page
            }
            let decoded: Vec<char> = output
                .stdout
                .chunks(4)
                .map(|c| {
                    char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('?')
                })
                .collect();
            let ours: Vec<char> = (0..=255u8).map(|b| decode_byte(page, b)).collect();
            assert_eq!(decoded, ours, "{name}");
        }
    }
}
