//! COBOL copybooks: the record layouts a mainframe publishes, parsed into a tree of items with
//! every field's byte offset and length.
//!
//! The mainframe connector never sees COBOL source at run time: it loads the copybook once,
//! with [`Copybook::load`] or [`Copybook::parse`], and the codec works from the resulting
//! [`Item`] tree. Everything that can be wrong with a copybook is therefore reported here, at
//! load time, as a [`CopybookError`] naming the line and column of the offending token.
//!
//! # Source format
//!
//! Fixed-form reference format, as on the mainframe:
//!
//! - columns 1–6 are the sequence area and are ignored, whatever they hold;
//! - column 7 is the indicator: space for a normal line, `*` or `/` for a comment, `D`/`d` for a
//!   debugging line (treated as a comment), `-` for a continuation line; anything else is an
//!   error;
//! - columns 8–72 hold the text (area A from column 8, area B from column 12; the parser does
//!   not enforce the A/B split), and columns 73 onwards are ignored;
//! - lines shorter than 7 columns, and lines whose text area is blank, are blank lines;
//! - `*>` outside a literal starts a comment that runs to the end of the line;
//! - a tab advances to the next multiple of 8 columns (a tab in column 1 moves to column 9),
//!   and the columns in error messages count the expanded tabs;
//! - a UTF-8 byte-order mark is skipped; [`Copybook::load`] reads files that are not valid UTF-8
//!   as ISO-8859-1, so a Latin-1 comment does not stop the load.
//!
//! Continuation (`-` in column 7) follows the standard: inside a nonnumeric literal, the
//! literal on the continued line runs to column 72 inclusive (trailing spaces count, including
//! spaces an editor stripped), and the continuation line's first nonblank character must be the
//! same quote, after which the literal resumes. Otherwise the first nonblank character of the
//! continuation line directly follows the last nonblank character of the continued line, so a
//! word can be split across lines. Comment and blank lines may come between the two.
//!
//! # Entries
//!
//! Levels 01–49 (one or two digits) and 88 are accepted; 66 (`RENAMES`), 77 and `COPY` are
//! refused. An 88 entry belongs to the data item just before it, group or elementary. Clauses
//! may come in any order: `PICTURE`, `USAGE` (`DISPLAY`, `COMP`/`COMP-4`/`COMP-5`/`BINARY`,
//! `COMP-3`/`PACKED-DECIMAL`, with or without the `USAGE` keyword), `SIGN`, `OCCURS` (with
//! `DEPENDING ON`, `ASCENDING`/`DESCENDING KEY` and `INDEXED BY`), `REDEFINES`, `VALUE`, and
//! the clauses that do not change the layout: `JUSTIFIED`, `BLANK WHEN ZERO`, `SYNCHRONIZED`
//! (no slack bytes are added: records are laid out as if `SYNC` were absent), `GLOBAL` and
//! `EXTERNAL`. `USAGE` and `SIGN` written on a group apply to its elementary items.
//!
//! If the first entry is not level 01, the entries are wrapped in an implicit level-01 record
//! named after the file stem in upper case (`copybooks/benefit-case.cpy` → `BENEFIT-CASE`).
//!
//! `OCCURS n TIMES DEPENDING ON x` without `m TO` has a minimum of 1, as in the standard.
//! `COMP-5` is [`Usage::NativeBinary`]: the sizes of `COMP`, but its values may use the whole
//! binary range rather than the picture's digits. `JUSTIFIED RIGHT` and `BLANK WHEN ZERO` are not
//! recorded. `EJECT` and `SKIP1`–`SKIP3` are ignored wherever they appear.
//!
//! # Checks
//!
//! Beyond syntax (unknown or duplicate clauses, missing periods, bad names, level numbers that
//! do not match an enclosing level), the parser enforces the standard rules the codec relies
//! on: a `PICTURE` only on elementary items and on every elementary item; `USAGE` and `SIGN`
//! consistent with the picture and with the enclosing group; `OCCURS` not at level 01, at least
//! one occurrence, minimum not above maximum, `TO` only with `DEPENDING ON`; the `DEPENDING ON`
//! object an integer numeric field declared earlier in the same record, outside any table, not
//! after another variable-length table, and named once; `REDEFINES` naming an earlier sibling
//! at the same level, with only other redefinitions of the same area in between, and no
//! variable-length table on either side; `VALUE` literals of the field's class that fit its
//! picture (length, sign, integer and decimal digits), no `VALUE` under a group that has one.
//!
//! # Not supported
//!
//! `COPY` and `REPLACE`, levels 66 and 77, floating point (`COMP-1`, `COMP-2`), pointers,
//! `INDEX`, national and DBCS data, `P` scaling, floating-point edited pictures, hexadecimal
//! and other prefixed literals (`X'…'`), `VALUE NULL`, and qualified `DEPENDING ON` names.
//! Each is refused with an error at its position rather than guessed at.
//!
//! # Layout
//!
//! Offsets are 0-based bytes from the start of the 01 record. Items inside a table have the
//! offset of their first occurrence. Every `OCCURS … DEPENDING ON` table is laid out at its
//! maximum (the codec shifts later items at run time). A `REDEFINES` item starts where the item
//! it redefines starts, and the area the alternatives share is as long as the longest of them,
//! so a redefining item longer than the original makes the group longer.
//!
//! Sizes: `DISPLAY` text and edited pictures take one byte per character; `DISPLAY` numbers one
//! byte per digit plus one for a separate sign; packed decimal `digits / 2 + 1` bytes; binary 2,
//! 4 or 8 bytes for 1–4, 5–9 and 10–18 digits. Numbers are held as `rust_decimal` values, so
//! numeric pictures are limited to 28 digits.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::path::Path;

use rust_decimal::Decimal;

/// A parsed copybook: one or more level-01 records.
#[derive(Debug, Clone, PartialEq)]
pub struct Copybook {
    /// The level-01 records, in source order.
    pub records: Vec<Item>,
}

/// One data description entry (a group or an elementary field), levels 01–49.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The level number, 1–49 (66 RENAMES and 77 are refused; 88 become `conditions`).
    pub level: u8,
    /// The data name, upper case as written; `None` for `FILLER` (or an unnamed entry).
    pub name: Option<String>,
    /// Where the entry starts in the copybook (its level number).
    pub position: Position,
    /// Byte offset from the start of the record (every ODO table at its maximum).
    pub offset: usize,
    /// Bytes of one occurrence.
    pub size: usize,
    /// `OCCURS`, if the item repeats.
    pub occurs: Option<Occurs>,
    /// `REDEFINES <name>`: the item shares its bytes with that earlier sibling.
    pub redefines: Option<String>,
    /// A group with children, or an elementary field with a picture.
    pub kind: ItemKind,
    /// The `VALUE` clause (used as the default when encoding a request record).
    pub value: Option<Literal>,
    /// 88-level condition names attached to this item, in source order.
    pub conditions: Vec<Condition>,
}

/// A group or a field.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemKind {
    /// A group item; its size is the sum of its children (redefining children add nothing).
    Group(Vec<Item>),
    /// An elementary item.
    Field(Picture),
}

/// An elementary item's picture and usage, reduced to what the codec needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    /// The PIC string as written, e.g. `S9(7)V99`, for the layout table.
    pub text: String,
    /// Text or number.
    pub class: PicClass,
    /// How the bytes hold the value.
    pub usage: Usage,
}

/// What kind of value a picture holds.
#[derive(Debug, Clone, PartialEq)]
pub enum PicClass {
    /// `PIC X(n)` / `PIC A(n)`: `len` characters.
    Alphanumeric {
        /// Characters (= bytes in a single-byte code page).
        len: usize,
    },
    /// `PIC 9(n)`, `PIC S9(n)V9(m)`: an exact decimal.
    Numeric {
        /// Total digits, integer plus fraction (1–28).
        digits: u8,
        /// Digits after the implied decimal point `V`.
        scale: u8,
        /// Where the sign is, if the picture has `S`.
        sign: Sign,
    },
    /// Numeric-edited pictures (`Z`, `,`, `.`, `-`, `CR`, `$` …), decoded as text.
    Edited {
        /// Characters.
        len: usize,
    },
}

/// Where a signed number's sign is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// No `S` in the picture: the value is never negative.
    Unsigned,
    /// The default for `S`: overpunched into the zone of the last digit (zoned) or the last
    /// nibble (packed, binary two's complement).
    Trailing,
    /// `SIGN IS LEADING`: overpunched into the first digit's zone.
    Leading,
    /// `SIGN IS TRAILING SEPARATE CHARACTER`: a `+`/`-` byte after the digits.
    TrailingSeparate,
    /// `SIGN IS LEADING SEPARATE CHARACTER`: a `+`/`-` byte before the digits.
    LeadingSeparate,
}

/// How the bytes of a field are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// `DISPLAY`: one character per digit (zoned decimal for numbers).
    Display,
    /// `COMP-3` / `PACKED-DECIMAL`: two digits per byte, sign in the last nibble.
    Packed,
    /// `COMP`, `COMP-4`, `BINARY`: big-endian two's complement, 2, 4 or 8 bytes, holding at
    /// most the picture's digits.
    Binary,
    /// `COMP-5`: stored like `Binary`, but the value may use the whole range of its 2, 4 or 8
    /// bytes (`PIC S9(4) COMP-5` holds up to 32 767), as IBM's native binary does.
    NativeBinary,
}

/// `OCCURS min TO max TIMES DEPENDING ON name`, or `OCCURS n TIMES` (min = max, no object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurs {
    /// Fewest occurrences (equal to `max` without `DEPENDING ON`).
    pub min: usize,
    /// Most occurrences; the layout reserves this many.
    pub max: usize,
    /// The numeric field earlier in the record that holds the actual count.
    pub depending_on: Option<String>,
}

/// An 88-level condition name: the values of its parent field that make it true.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The condition name, upper case as written.
    pub name: String,
    /// Where the 88 entry starts.
    pub position: Position,
    /// The values (single values and `THRU` ranges) that make the condition true.
    pub values: Vec<ConditionValue>,
}

/// One value of an 88-level condition.
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionValue {
    /// `VALUE 'A'` or `VALUE 3`.
    Single(Literal),
    /// `VALUE 1 THRU 5` (inclusive).
    Range(Literal, Literal),
}

/// A literal in a `VALUE` clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `'text'` or `"text"` (doubled quotes decoded), continuation lines joined.
    Text(String),
    /// `123`, `-4.50`, `+7`.
    Number(Decimal),
    /// `SPACE`/`SPACES`.
    Spaces,
    /// `ZERO`/`ZEROS`/`ZEROES`.
    Zeros,
    /// `LOW-VALUE`/`LOW-VALUES` (bytes 0x00).
    LowValues,
    /// `HIGH-VALUE`/`HIGH-VALUES` (bytes 0xFF).
    HighValues,
}

/// A 1-based line and column in the copybook file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (column 8 is the first column of area A).
    pub column: usize,
}

/// Why a copybook could not be parsed; `Display` is `path:line:column: message`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}:{}:{}: {message}", position.line, position.column)]
pub struct CopybookError {
    /// The copybook's path as given to `parse`.
    pub path: String,
    /// Where the problem is.
    pub position: Position,
    /// What is wrong, in words a COBOL programmer would use.
    pub message: String,
}

impl Copybook {
    /// The record called `name` (case-insensitive), or the only record when `name` is `None`.
    pub fn record(&self, name: Option<&str>) -> Option<&Item> {
        match name {
            Some(name) => self.records.iter().find(|r| {
                r.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            }),
            None if self.records.len() == 1 => self.records.first(),
            None => None,
        }
    }
}

impl Item {
    /// Bytes the item takes in the record: `size` times its maximum occurrences.
    pub fn total_size(&self) -> usize {
        self.size * self.occurs.as_ref().map_or(1, |o| o.max)
    }

    /// The name, or `FILLER`.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("FILLER")
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// First column of the text area (area A).
const TEXT_FIRST_COLUMN: usize = 8;
/// Last column of the text area (area B); columns after it are ignored.
const TEXT_LAST_COLUMN: usize = 72;
/// Characters in the text area, columns 8–72.
const TEXT_WIDTH: usize = TEXT_LAST_COLUMN - TEXT_FIRST_COLUMN + 1;
/// Most digits a numeric picture may have: `rust_decimal` holds 28 significant digits exactly.
const MAX_DIGITS: usize = 28;
/// Most digits a binary (`COMP`) field may have: 18 digits fill 8 bytes.
const MAX_BINARY_DIGITS: usize = 18;
/// Largest item, in bytes, the parser lays out. It keeps every size and offset (and the
/// `size * max` of [`Item::total_size`]) far from overflow, and is the largest data item
/// Enterprise COBOL accepts.
const MAX_ITEM_BYTES: usize = 999_999_999;

impl Copybook {
    /// Parses copybook source. `path` is used only in error messages and, when the first entry
    /// is not level 01, to name the implicit record after the file stem.
    pub fn parse(path: &str, text: &str) -> Result<Copybook, CopybookError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let tokens = Lexer::new(path).run(text)?;
        let entries = Parser::new(path, tokens).entries()?;
        let nodes = build_tree(path, entries)?;
        let mut resolver = Resolver::new(path, &nodes);
        let records = resolver.records(nodes)?;
        Ok(Copybook { records })
    }

    /// Reads and parses a copybook file, so the connector can report a missing or unreadable
    /// file the same way as a bad entry (an I/O error is reported at 1:1). A file that is not
    /// valid UTF-8 is read as ISO-8859-1.
    pub fn load(path: &Path) -> Result<Copybook, CopybookError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| CopybookError {
            path: shown.clone(),
            position: Position { line: 1, column: 1 },
            message: format!("cannot read the copybook: {e}"),
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => Copybook::parse(&shown, &text),
            Err(e) => {
                let text: String = e.as_bytes().iter().map(|&b| char::from(b)).collect();
                Copybook::parse(&shown, &text)
            }
        }
    }

    /// The layout of one record as an aligned text table, for `civicgraph check --layout`: one
    /// line per item (88-level conditions under their item) with its level and name indented by
    /// depth, picture, usage, 0-based offset, length of one occurrence, `OCCURS` and
    /// `REDEFINES`, so an operator can compare it with the mainframe's own listing.
    ///
    /// ```text
    /// Record BNQ-CASE-RECORD: 583 bytes. OFFSET is 0-based from the start of the record; …
    /// LEVEL NAME               PICTURE   USAGE   OFFSET  LENGTH  OCCURS                 REDEFINES
    /// 01 BNQ-CASE-RECORD       (group)                0     583
    ///   05 BNQ-STATUS          X         DISPLAY     12       1
    ///     88 BNQ-ACTIVE        VALUE 'A'
    ///   05 BNQ-OPEN-DATE-X     X(8)      DISPLAY     30       8                         BNQ-OPEN-DATE
    ///   05 BNQ-DEPENDENTS      (group)              175      34  0 TO 12 DEPENDING ON N
    ///     10 BNQ-DEP-NAME      X(25)     DISPLAY    175      25
    /// ```
    pub fn layout_table(&self, record: &Item) -> String {
        let mut rows = Vec::new();
        collect_rows(record, 0, &mut rows);
        let header = Row {
            name: "LEVEL NAME".to_string(),
            picture: "PICTURE".to_string(),
            usage: "USAGE".to_string(),
            offset: "OFFSET".to_string(),
            length: "LENGTH".to_string(),
            occurs: "OCCURS".to_string(),
            redefines: "REDEFINES".to_string(),
            condition: None,
        };
        let all = || std::iter::once(&header).chain(rows.iter());
        let width = |f: fn(&Row) -> &str| all().map(|r| f(r).chars().count()).max().unwrap_or(0);
        let name_w = width(|r| &r.name);
        let pic_w = all()
            .filter(|r| r.condition.is_none())
            .map(|r| r.picture.chars().count())
            .max()
            .unwrap_or(0);
        let usage_w = width(|r| &r.usage);
        let offset_w = width(|r| &r.offset);
        let length_w = width(|r| &r.length);
        let occurs_w = width(|r| &r.occurs);

        let mut out = String::new();
        let _ = writeln!(
            out,
            "Record {}: {} bytes. OFFSET is 0-based from the start of the record; items in a \
             table show their first occurrence; OCCURS DEPENDING ON tables are at their maximum.",
            record.display_name(),
            record.total_size()
        );
        for row in all() {
            let mut line = String::new();
            if let Some(values) = &row.condition {
                let _ = write!(line, "{:<name_w$}  {values}", row.name);
            } else {
                let _ = write!(
                    line,
                    "{:<name_w$}  {:<pic_w$}  {:<usage_w$}  {:>offset_w$}  {:>length_w$}  \
                     {:<occurs_w$}  {}",
                    row.name,
                    row.picture,
                    row.usage,
                    row.offset,
                    row.length,
                    row.occurs,
                    row.redefines
                );
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// One line of the layout table.
struct Row {
    name: String,
    picture: String,
    usage: String,
    offset: String,
    length: String,
    occurs: String,
    redefines: String,
    /// For an 88-level line: its values, printed after the name instead of the other columns.
    condition: Option<String>,
}

fn collect_rows(item: &Item, depth: usize, rows: &mut Vec<Row>) {
    let indent = "  ".repeat(depth);
    let (picture, usage) = match &item.kind {
        ItemKind::Group(_) => ("(group)".to_string(), String::new()),
        ItemKind::Field(pic) => (pic.text.clone(), usage_label(pic)),
    };
    let occurs = item
        .occurs
        .as_ref()
        .map_or_else(String::new, |o| match &o.depending_on {
            Some(object) => format!("{} TO {} DEPENDING ON {object}", o.min, o.max),
            None => format!("{} TIMES", o.max),
        });
    rows.push(Row {
        name: format!("{indent}{:02} {}", item.level, item.display_name()),
        picture,
        usage,
        offset: item.offset.to_string(),
        length: item.size.to_string(),
        occurs,
        redefines: item.redefines.clone().unwrap_or_default(),
        condition: None,
    });
    for condition in &item.conditions {
        let values: Vec<String> = condition
            .values
            .iter()
            .map(|v| match v {
                ConditionValue::Single(l) => literal_label(l),
                ConditionValue::Range(a, b) => {
                    format!("{} THRU {}", literal_label(a), literal_label(b))
                }
            })
            .collect();
        rows.push(Row {
            name: format!("{indent}  88 {}", condition.name),
            picture: String::new(),
            usage: String::new(),
            offset: String::new(),
            length: String::new(),
            occurs: String::new(),
            redefines: String::new(),
            condition: Some(format!("VALUE {}", values.join(", "))),
        });
    }
    if let ItemKind::Group(children) = &item.kind {
        for child in children {
            collect_rows(child, depth + 1, rows);
        }
    }
}

fn usage_label(pic: &Picture) -> String {
    let usage = match pic.usage {
        Usage::Display => "DISPLAY",
        Usage::Packed => "COMP-3",
        Usage::Binary => "COMP",
        Usage::NativeBinary => "COMP-5",
    };
    let sign = match &pic.class {
        PicClass::Numeric { sign, .. } if pic.usage == Usage::Display => match sign {
            Sign::Leading => " SIGN LEADING",
            Sign::LeadingSeparate => " SIGN LEADING SEPARATE",
            Sign::TrailingSeparate => " SIGN TRAILING SEPARATE",
            Sign::Unsigned | Sign::Trailing => "",
        },
        _ => "",
    };
    format!("{usage}{sign}")
}

fn literal_label(literal: &Literal) -> String {
    match literal {
        Literal::Text(text) => format!("'{}'", text.replace('\'', "''")),
        Literal::Number(n) => n.to_string(),
        Literal::Spaces => "SPACES".to_string(),
        Literal::Zeros => "ZEROS".to_string(),
        Literal::LowValues => "LOW-VALUES".to_string(),
        Literal::HighValues => "HIGH-VALUES".to_string(),
    }
}

fn error(path: &str, position: Position, message: impl Into<String>) -> CopybookError {
    CopybookError {
        path: path.to_string(),
        position,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer: physical lines → words, literals and periods.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    /// A COBOL word, picture string or numeric literal.
    Word,
    /// A nonnumeric literal; `text` holds its decoded content.
    Literal,
    /// The period that ends an entry.
    Period,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    /// As written (words), or the decoded content (literals).
    text: String,
    /// Upper case of `text`, for keyword matching.
    upper: String,
    pos: Position,
}

/// A word being read. It stays open at the end of a line so that a `-` continuation line can
/// extend it; the next significant line that is not a continuation closes it.
struct PendingWord {
    text: String,
    pos: Position,
    /// Where its last character is (for the position of a trailing period).
    last: Position,
    /// A space followed the word on its line.
    closed: bool,
}

/// A nonnumeric literal still open at the end of a line.
struct OpenLiteral {
    quote: char,
    text: String,
    pos: Position,
}

struct Lexer<'p> {
    path: &'p str,
    tokens: Vec<Token>,
    word: Option<PendingWord>,
    literal: Option<OpenLiteral>,
}

impl<'p> Lexer<'p> {
    fn new(path: &'p str) -> Self {
        Lexer {
            path,
            tokens: Vec::new(),
            word: None,
            literal: None,
        }
    }

    fn run(mut self, text: &str) -> Result<Vec<Token>, CopybookError> {
        for (index, raw) in text.split('\n').enumerate() {
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            self.line(index + 1, &expand_columns(raw))?;
        }
        if let Some(open) = self.literal.take() {
            return Err(self.unterminated(&open));
        }
        self.flush_word();
        Ok(self.tokens)
    }

    fn unterminated(&self, open: &OpenLiteral) -> CopybookError {
        error(
            self.path,
            open.pos,
            format!(
                "literal is not terminated: no closing {q} before column 73, and the next line \
                 is not a continuation line (`-` in column 7) starting with {q}",
                q = open.quote
            ),
        )
    }

    fn line(&mut self, line: usize, columns: &[char]) -> Result<(), CopybookError> {
        let Some(&indicator) = columns.get(6) else {
            return Ok(());
        };
        let area = columns.get(7..).unwrap_or(&[]);
        let pos = |i: usize| Position {
            line,
            column: TEXT_FIRST_COLUMN + i,
        };
        match indicator {
            '*' | '/' | 'D' | 'd' => return Ok(()),
            ' ' | '-' => {}
            other => {
                return Err(error(
                    self.path,
                    Position { line, column: 7 },
                    format!(
                        "column 7 holds `{other}`; in fixed format it must be a space, `*`, `/`, \
                         `D` or `-` (columns 1-6 are the sequence area, text starts in column 8)"
                    ),
                ));
            }
        }
        let Some(first) = area.iter().position(|&c| c != ' ') else {
            return Ok(());
        };
        if area.get(first) == Some(&'*') && area.get(first + 1) == Some(&'>') {
            return Ok(());
        }
        let mut start = first;
        if indicator == '-' {
            if let Some(open) = self.literal.take() {
                if area.get(first) != Some(&open.quote) {
                    return Err(error(
                        self.path,
                        pos(first),
                        format!(
                            "a continuation line of a literal must start with {q} (the literal \
                             resumes after it)",
                            q = open.quote
                        ),
                    ));
                }
                match self.literal_rest(open, area, first + 1) {
                    Some(next) => start = next,
                    None => return Ok(()),
                }
            } else if let Some(word) = &mut self.word {
                if matches!(area.get(first), Some('\'' | '"')) {
                    return Err(error(
                        self.path,
                        pos(first),
                        "this continuation line starts with a quote, but the line it continues \
                         does not end inside a literal",
                    ));
                }
                word.closed = false;
            }
        } else {
            if let Some(open) = self.literal.take() {
                return Err(self.unterminated(&open));
            }
            self.flush_word();
        }
        self.scan(area, start, line)
    }

    fn scan(&mut self, area: &[char], mut i: usize, line: usize) -> Result<(), CopybookError> {
        while let Some(&c) = area.get(i) {
            let pos = Position {
                line,
                column: TEXT_FIRST_COLUMN + i,
            };
            match c {
                ' ' => {
                    if let Some(word) = &mut self.word {
                        word.closed = true;
                    }
                    i += 1;
                }
                '*' if area.get(i + 1) == Some(&'>') => break,
                '\'' | '"' => {
                    if let Some(word) = &self.word
                        && !word.closed
                        && !word.text.chars().all(|c| c == ',' || c == ';')
                    {
                        return Err(error(
                            self.path,
                            word.pos,
                            format!(
                                "{prefix}{c}…{c} literals are not supported (only plain '…' and \
                                 \"…\" literals are)",
                                prefix = word.text
                            ),
                        ));
                    }
                    self.flush_word();
                    let open = OpenLiteral {
                        quote: c,
                        text: String::new(),
                        pos,
                    };
                    match self.literal_rest(open, area, i + 1) {
                        Some(next) => i = next,
                        None => return Ok(()),
                    }
                }
                _ => {
                    if self.word.as_ref().is_some_and(|w| w.closed) {
                        self.flush_word();
                    }
                    match &mut self.word {
                        Some(word) => {
                            word.text.push(c);
                            word.last = pos;
                        }
                        None => {
                            self.word = Some(PendingWord {
                                text: c.to_string(),
                                pos,
                                last: pos,
                                closed: false,
                            });
                        }
                    }
                    i += 1;
                }
            }
        }
        Ok(())
    }

    /// Reads a literal's content from `i`. Returns the index after the closing quote, or `None`
    /// when the literal runs to the end of the text area (it is then kept open, padded with
    /// spaces to column 72, for a continuation line).
    fn literal_rest(
        &mut self,
        mut open: OpenLiteral,
        area: &[char],
        mut i: usize,
    ) -> Option<usize> {
        loop {
            match area.get(i) {
                None => {
                    for _ in area.len()..TEXT_WIDTH {
                        open.text.push(' ');
                    }
                    self.literal = Some(open);
                    return None;
                }
                Some(&c) if c == open.quote => {
                    if area.get(i + 1) == Some(&open.quote) {
                        open.text.push(c);
                        i += 2;
                    } else {
                        self.tokens.push(Token {
                            kind: TokenKind::Literal,
                            upper: String::new(),
                            text: open.text,
                            pos: open.pos,
                        });
                        return Some(i + 1);
                    }
                }
                Some(&c) => {
                    open.text.push(c);
                    i += 1;
                }
            }
        }
    }

    /// Ends the pending word: a trailing period becomes a separate token, trailing commas and
    /// semicolons (separators) are dropped.
    fn flush_word(&mut self) {
        let Some(word) = self.word.take() else {
            return;
        };
        let mut text = word.text;
        let period = if text.ends_with('.') {
            text.pop();
            Some(word.last)
        } else {
            None
        };
        let text = text.trim_end_matches([',', ';']);
        if !text.is_empty() {
            self.tokens.push(Token {
                kind: TokenKind::Word,
                upper: text.to_ascii_uppercase(),
                text: text.to_string(),
                pos: word.pos,
            });
        }
        if let Some(pos) = period {
            self.tokens.push(Token {
                kind: TokenKind::Period,
                text: ".".to_string(),
                upper: ".".to_string(),
                pos,
            });
        }
    }
}

/// A physical line as columns: tabs expanded to the next multiple of 8, other whitespace (form
/// feed, no-break space …) read as a space, cut after column 72.
fn expand_columns(raw: &str) -> Vec<char> {
    let mut columns = Vec::with_capacity(TEXT_LAST_COLUMN);
    for c in raw.chars() {
        if columns.len() >= TEXT_LAST_COLUMN {
            break;
        }
        if c == '\t' {
            let next = (columns.len() / 8 + 1) * 8;
            while columns.len() < next {
                columns.push(' ');
            }
        } else if c.is_whitespace() {
            columns.push(' ');
        } else {
            columns.push(c);
        }
    }
    columns.truncate(TEXT_LAST_COLUMN);
    columns
}

// ---------------------------------------------------------------------------------------------
// Parser: tokens → data description entries.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct UsageClause {
    usage: Usage,
    /// As written, for messages (`COMP-3`, `PACKED-DECIMAL` …).
    keyword: String,
    pos: Position,
}

#[derive(Debug, Clone)]
struct SignClause {
    leading: bool,
    separate: bool,
    pos: Position,
}

#[derive(Debug, Clone)]
struct OccursClause {
    min: usize,
    max: usize,
    depending_on: Option<(String, Position)>,
}

/// An 88-level entry, with the position of each value for later checks.
#[derive(Debug, Clone)]
struct ConditionEntry {
    condition: Condition,
    positions: Vec<Position>,
}

#[derive(Debug, Clone)]
struct Entry {
    level: u8,
    pos: Position,
    name: Option<String>,
    pic: Option<(String, Position)>,
    usage: Option<UsageClause>,
    sign: Option<SignClause>,
    occurs: Option<OccursClause>,
    redefines: Option<(String, Position)>,
    value: Option<(Literal, Position)>,
    conditions: Vec<ConditionEntry>,
}

impl Entry {
    fn new(level: u8, pos: Position, name: Option<String>) -> Self {
        Entry {
            level,
            pos,
            name,
            pic: None,
            usage: None,
            sign: None,
            occurs: None,
            redefines: None,
            value: None,
            conditions: Vec::new(),
        }
    }

    fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("FILLER")
    }
}

/// Words that start a clause (or are usage words), so they are never taken as a data name.
fn is_clause_keyword(upper: &str) -> bool {
    matches!(
        upper,
        "PIC"
            | "PICTURE"
            | "USAGE"
            | "SIGN"
            | "LEADING"
            | "TRAILING"
            | "OCCURS"
            | "REDEFINES"
            | "RENAMES"
            | "VALUE"
            | "VALUES"
            | "JUSTIFIED"
            | "JUST"
            | "BLANK"
            | "SYNCHRONIZED"
            | "SYNC"
            | "GLOBAL"
            | "EXTERNAL"
            | "IS"
            | "ASCENDING"
            | "DESCENDING"
            | "INDEXED"
            | "KEY"
            | "DEPENDING"
    ) || usage_word(upper).is_some()
}

/// The usage a word names: `Some(Ok(_))` if supported, `Some(Err(what))` if a usage the
/// codec cannot handle, `None` if not a usage word.
fn usage_word(upper: &str) -> Option<Result<Usage, &'static str>> {
    Some(match upper {
        "DISPLAY" => Ok(Usage::Display),
        "COMP" | "COMPUTATIONAL" | "COMP-4" | "COMPUTATIONAL-4" | "BINARY" => Ok(Usage::Binary),
        "COMP-5" | "COMPUTATIONAL-5" => Ok(Usage::NativeBinary),
        "COMP-3" | "COMPUTATIONAL-3" | "PACKED-DECIMAL" => Ok(Usage::Packed),
        "COMP-1" | "COMPUTATIONAL-1" | "COMP-2" | "COMPUTATIONAL-2" | "FLOAT-SHORT"
        | "FLOAT-LONG" | "FLOAT-EXTENDED" | "FLOAT-BINARY-32" | "FLOAT-BINARY-64"
        | "FLOAT-DECIMAL-16" | "FLOAT-DECIMAL-34" => Err("floating point"),
        "POINTER" | "POINTER-32" | "PROCEDURE-POINTER" | "FUNCTION-POINTER" => Err("a pointer"),
        "INDEX" => Err("an index data item"),
        "NATIONAL" | "DISPLAY-1" | "UTF-8" => Err("national / DBCS characters"),
        "OBJECT" => Err("an object reference"),
        "COMP-6" | "COMPUTATIONAL-6" | "COMP-X" | "COMPUTATIONAL-X" | "COMP-N"
        | "COMPUTATIONAL-N" => Err("a vendor-specific format"),
        _ => return None,
    })
}

/// One or two digits: a level number (used to spot a missing period).
fn looks_like_level(upper: &str) -> bool {
    (1..=2).contains(&upper.len()) && upper.bytes().all(|b| b.is_ascii_digit())
}

fn is_figurative(upper: &str) -> bool {
    matches!(
        upper,
        "SPACE"
            | "SPACES"
            | "ZERO"
            | "ZEROS"
            | "ZEROES"
            | "LOW-VALUE"
            | "LOW-VALUES"
            | "HIGH-VALUE"
            | "HIGH-VALUES"
            | "QUOTE"
            | "QUOTES"
            | "ALL"
            | "NULL"
            | "NULLS"
    )
}

/// The literal a figurative constant stands for (not `ALL`, which takes an operand).
fn figurative(upper: &str) -> Option<Literal> {
    Some(match upper {
        "SPACE" | "SPACES" => Literal::Spaces,
        "ZERO" | "ZEROS" | "ZEROES" => Literal::Zeros,
        "LOW-VALUE" | "LOW-VALUES" => Literal::LowValues,
        "HIGH-VALUE" | "HIGH-VALUES" => Literal::HighValues,
        "QUOTE" | "QUOTES" => Literal::Text("\"".to_string()),
        _ => return None,
    })
}

fn looks_numeric(text: &str) -> bool {
    text.chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

/// Why `name` is not a valid data name, if it is not.
fn check_name(name: &str) -> Option<&'static str> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Some("it may hold only letters, digits and hyphens")
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("it may not start or end with a hyphen")
    } else if !name.chars().any(|c| c.is_ascii_alphabetic()) {
        Some("it must contain at least one letter")
    } else {
        None
    }
}

struct Parser<'p> {
    path: &'p str,
    tokens: Vec<Token>,
    at: usize,
}

impl<'p> Parser<'p> {
    fn new(path: &'p str, tokens: Vec<Token>) -> Self {
        Parser {
            path,
            tokens,
            at: 0,
        }
    }

    fn err(&self, pos: Position, message: impl Into<String>) -> CopybookError {
        error(self.path, pos, message)
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn peek_word(&self) -> Option<&str> {
        self.peek()
            .filter(|t| t.kind == TokenKind::Word)
            .map(|t| t.upper.as_str())
    }

    fn bump(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        if token.is_some() {
            self.at += 1;
        }
        token
    }

    /// Consumes the next token if it is one of `words`.
    fn skip(&mut self, words: &[&str]) -> bool {
        if self.peek_word().is_some_and(|w| words.contains(&w)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// Where the last consumed token is (or 1:1).
    fn last_pos(&self) -> Position {
        self.at
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or(Position { line: 1, column: 1 }, |t| t.pos)
    }

    fn entries(mut self) -> Result<Vec<Entry>, CopybookError> {
        let mut entries: Vec<Entry> = Vec::new();
        while let Some(token) = self.peek().cloned() {
            match token.kind {
                TokenKind::Period => {
                    self.at += 1;
                    continue;
                }
                TokenKind::Literal => {
                    return Err(self.err(token.pos, "expected a level number, found a literal"));
                }
                TokenKind::Word => {}
            }
            match token.upper.as_str() {
                "COPY" => {
                    return Err(self.err(
                        token.pos,
                        "COPY statements are not supported: expand the copied member into the \
                         copybook",
                    ));
                }
                "REPLACE" => {
                    return Err(self.err(token.pos, "REPLACE statements are not supported"));
                }
                "EJECT" | "SKIP1" | "SKIP2" | "SKIP3" => {
                    self.at += 1;
                    if self.peek().is_some_and(|t| t.kind == TokenKind::Period) {
                        self.at += 1;
                    }
                    continue;
                }
                _ => {}
            }
            self.at += 1;
            let level = self.level_number(&token)?;
            match level {
                66 => {
                    return Err(self.err(
                        token.pos,
                        "level 66 (RENAMES) is not supported: describe the fields with \
                         REDEFINES instead",
                    ));
                }
                77 => {
                    return Err(self.err(
                        token.pos,
                        "level 77 items are not supported: declare the item at level 01",
                    ));
                }
                88 => {
                    let condition = self.condition_entry(token.pos)?;
                    let Some(owner) = entries.last_mut() else {
                        return Err(self.err(
                            token.pos,
                            format!(
                                "88-level condition {} has no data item before it to belong to",
                                condition.condition.name
                            ),
                        ));
                    };
                    owner.conditions.push(condition);
                }
                _ => entries.push(self.data_entry(level, token.pos)?),
            }
        }
        if entries.is_empty() {
            return Err(self.err(
                Position { line: 1, column: 1 },
                "no data description entries in the copybook",
            ));
        }
        Ok(entries)
    }

    fn level_number(&self, token: &Token) -> Result<u8, CopybookError> {
        let text = token.upper.as_str();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.err(
                token.pos,
                format!(
                    "expected a level number (01-49 or 88), found `{}`",
                    token.text
                ),
            ));
        }
        if text.len() > 2 {
            return Err(self.err(
                token.pos,
                format!("level number `{text}` has more than two digits"),
            ));
        }
        match text.parse::<u8>() {
            Ok(level @ (1..=49 | 66 | 77 | 88)) => Ok(level),
            _ => Err(self.err(
                token.pos,
                format!("level number {text} is not valid (use 01-49 or 88)"),
            )),
        }
    }

    /// A data name after the level number, if there is one (`FILLER` gives `None`).
    fn data_name(&mut self) -> Result<Option<String>, CopybookError> {
        let Some(token) = self.peek().filter(|t| t.kind == TokenKind::Word).cloned() else {
            return Ok(None);
        };
        if is_clause_keyword(&token.upper) {
            return Ok(None);
        }
        if looks_like_level(&token.upper) {
            return Err(self.missing_period(&token));
        }
        self.at += 1;
        if token.upper == "FILLER" {
            return Ok(None);
        }
        if let Some(why) = check_name(&token.upper) {
            return Err(self.err(
                token.pos,
                format!("`{}` is not a valid data name: {why}", token.text),
            ));
        }
        Ok(Some(token.upper))
    }

    fn missing_period(&self, token: &Token) -> CopybookError {
        self.err(
            token.pos,
            format!(
                "missing period before level number {}: the previous entry must end with a period",
                token.text
            ),
        )
    }

    fn data_entry(&mut self, level: u8, pos: Position) -> Result<Entry, CopybookError> {
        let name = self.data_name()?;
        let mut entry = Entry::new(level, pos, name);
        let mut seen: Vec<&'static str> = Vec::new();
        loop {
            let Some(token) = self.bump() else {
                return Err(self.err(
                    self.last_pos(),
                    format!(
                        "missing period: the copybook ends before the entry for {} is closed with \
                         a period",
                        entry.display_name()
                    ),
                ));
            };
            match token.kind {
                TokenKind::Period => break,
                TokenKind::Literal => {
                    return Err(self.err(
                        token.pos,
                        "unexpected literal: a literal belongs after VALUE",
                    ));
                }
                TokenKind::Word => {}
            }
            if matches!(token.upper.as_str(), "EJECT" | "SKIP1" | "SKIP2" | "SKIP3") {
                // Listing-control statements may appear anywhere; they change nothing.
                continue;
            }
            let clause = match token.upper.as_str() {
                "PIC" | "PICTURE" => "PICTURE",
                "USAGE" => "USAGE",
                w if usage_word(w).is_some() => "USAGE",
                "SIGN" | "LEADING" | "TRAILING" => "SIGN",
                "OCCURS" => "OCCURS",
                "REDEFINES" => "REDEFINES",
                "VALUE" | "VALUES" => "VALUE",
                "JUSTIFIED" | "JUST" => "JUSTIFIED",
                "BLANK" => "BLANK WHEN ZERO",
                "SYNCHRONIZED" | "SYNC" => "SYNCHRONIZED",
                "GLOBAL" => "GLOBAL",
                "EXTERNAL" => "EXTERNAL",
                "IS" if self.peek_word() == Some("GLOBAL") => {
                    self.at += 1;
                    "GLOBAL"
                }
                "IS" if self.peek_word() == Some("EXTERNAL") => {
                    self.at += 1;
                    "EXTERNAL"
                }
                "RENAMES" => {
                    return Err(self.err(token.pos, "RENAMES (level 66) is not supported"));
                }
                "COPY" => {
                    return Err(self.err(
                        token.pos,
                        "COPY statements are not supported: expand the copied member into the \
                         copybook",
                    ));
                }
                w if looks_like_level(w) => return Err(self.missing_period(&token)),
                _ => {
                    return Err(self.err(
                        token.pos,
                        format!(
                            "unknown clause `{}` in the entry for {}",
                            token.text,
                            entry.display_name()
                        ),
                    ));
                }
            };
            if seen.contains(&clause) {
                return Err(self.err(
                    token.pos,
                    format!(
                        "duplicate {clause} clause in the entry for {}",
                        entry.display_name()
                    ),
                ));
            }
            seen.push(clause);
            match clause {
                "PICTURE" => {
                    self.skip(&["IS"]);
                    match self.peek().filter(|t| t.kind == TokenKind::Word).cloned() {
                        Some(pic) => {
                            self.at += 1;
                            entry.pic = Some((pic.text, pic.pos));
                        }
                        None => {
                            return Err(self.err(
                                token.pos,
                                "PICTURE needs a character string such as X(10) or S9(7)V99",
                            ));
                        }
                    }
                }
                "USAGE" => {
                    let word = if token.upper == "USAGE" {
                        self.skip(&["IS"]);
                        match self.peek().filter(|t| t.kind == TokenKind::Word).cloned() {
                            Some(w) if usage_word(&w.upper).is_some() => {
                                self.at += 1;
                                w
                            }
                            _ => {
                                return Err(self.err(
                                    token.pos,
                                    "USAGE needs DISPLAY, COMP, COMP-3, COMP-4, COMP-5, BINARY \
                                     or PACKED-DECIMAL",
                                ));
                            }
                        }
                    } else {
                        token.clone()
                    };
                    match usage_word(&word.upper) {
                        Some(Ok(usage)) => {
                            entry.usage = Some(UsageClause {
                                usage,
                                keyword: word.upper,
                                pos: word.pos,
                            });
                        }
                        Some(Err(what)) => {
                            return Err(self.err(
                                word.pos,
                                format!("USAGE {} ({what}) is not supported", word.upper),
                            ));
                        }
                        None => {
                            return Err(self.err(word.pos, "unknown USAGE"));
                        }
                    }
                }
                "SIGN" => entry.sign = Some(self.sign_clause(&token)?),
                "OCCURS" => {
                    if level == 1 {
                        return Err(self.err(
                            token.pos,
                            "OCCURS cannot be used at level 01: put the table in a level 02-49 \
                             item",
                        ));
                    }
                    entry.occurs = Some(self.occurs_clause(&token)?);
                }
                "REDEFINES" => match self.peek().filter(|t| t.kind == TokenKind::Word).cloned() {
                    Some(target) if !is_clause_keyword(&target.upper) => {
                        self.at += 1;
                        if let Some(why) = check_name(&target.upper) {
                            return Err(self.err(
                                target.pos,
                                format!("`{}` is not a valid data name: {why}", target.text),
                            ));
                        }
                        entry.redefines = Some((target.upper, target.pos));
                    }
                    _ => {
                        return Err(self.err(
                            token.pos,
                            "REDEFINES needs the name of the item it redefines",
                        ));
                    }
                },
                "VALUE" => {
                    self.skip(&["IS", "ARE"]);
                    entry.value = Some(self.literal(token.pos)?);
                }
                "JUSTIFIED" => {
                    self.skip(&["RIGHT"]);
                }
                "BLANK WHEN ZERO" => {
                    self.skip(&["WHEN"]);
                    if !self.skip(&["ZERO", "ZEROS", "ZEROES"]) {
                        return Err(self.err(token.pos, "expected BLANK WHEN ZERO"));
                    }
                }
                "SYNCHRONIZED" => {
                    self.skip(&["LEFT", "RIGHT"]);
                }
                _ => {}
            }
        }
        Ok(entry)
    }

    fn sign_clause(&mut self, token: &Token) -> Result<SignClause, CopybookError> {
        let which = if token.upper == "SIGN" {
            self.skip(&["IS"]);
            match self.peek_word() {
                Some(w @ ("LEADING" | "TRAILING")) => {
                    let leading = w == "LEADING";
                    self.at += 1;
                    leading
                }
                _ => return Err(self.err(token.pos, "SIGN needs LEADING or TRAILING")),
            }
        } else {
            token.upper == "LEADING"
        };
        let separate = self.skip(&["SEPARATE"]);
        if separate {
            self.skip(&["CHARACTER"]);
        }
        Ok(SignClause {
            leading: which,
            separate,
            pos: token.pos,
        })
    }

    fn integer(&mut self, after: &Token, what: &str) -> Result<(usize, Position), CopybookError> {
        match self.peek().filter(|t| t.kind == TokenKind::Word).cloned() {
            Some(t) if !t.text.is_empty() && t.text.bytes().all(|b| b.is_ascii_digit()) => {
                self.at += 1;
                match t.text.parse::<usize>() {
                    Ok(n) if n <= MAX_ITEM_BYTES => Ok((n, t.pos)),
                    _ => Err(self.err(t.pos, format!("{what} {} is too large", t.text))),
                }
            }
            Some(t) => Err(self.err(
                t.pos,
                format!("{what} must be an unsigned integer, found `{}`", t.text),
            )),
            None => Err(self.err(after.pos, format!("{what} needs an unsigned integer"))),
        }
    }

    fn occurs_clause(&mut self, token: &Token) -> Result<OccursClause, CopybookError> {
        let (first, first_pos) = self.integer(token, "OCCURS")?;
        let to = if self.peek_word() == Some("TO") {
            let to_token = self.bump();
            let after = to_token.as_ref().unwrap_or(token);
            Some(self.integer(after, "OCCURS … TO")?)
        } else {
            None
        };
        self.skip(&["TIMES"]);
        let depending_on = if self.skip(&["DEPENDING"]) {
            self.skip(&["ON"]);
            match self.peek().filter(|t| t.kind == TokenKind::Word).cloned() {
                Some(object) if !is_clause_keyword(&object.upper) => {
                    self.at += 1;
                    if let Some(why) = check_name(&object.upper) {
                        return Err(self.err(
                            object.pos,
                            format!("`{}` is not a valid data name: {why}", object.text),
                        ));
                    }
                    if let Some(qualifier) = self.peek().filter(|t| {
                        t.kind == TokenKind::Word && matches!(t.upper.as_str(), "OF" | "IN")
                    }) {
                        return Err(self.err(
                            qualifier.pos,
                            "qualified names (OF / IN) after DEPENDING ON are not supported",
                        ));
                    }
                    Some((object.upper, object.pos))
                }
                _ => {
                    return Err(self.err(
                        token.pos,
                        "DEPENDING ON needs the name of the field that holds the count",
                    ));
                }
            }
        } else {
            None
        };
        loop {
            match self.peek_word() {
                Some("ASCENDING" | "DESCENDING") => {
                    if let Some(key) = self.bump() {
                        self.skip(&["KEY"]);
                        self.skip(&["IS"]);
                        self.names(&key)?;
                    }
                }
                Some("INDEXED") => {
                    if let Some(indexed) = self.bump() {
                        self.skip(&["BY"]);
                        self.names(&indexed)?;
                    }
                }
                _ => break,
            }
        }
        let (min, max) = match (to, &depending_on) {
            (Some((max, max_pos)), Some(_)) => {
                if max == 0 {
                    return Err(self.err(max_pos, "OCCURS maximum must be at least 1"));
                }
                if first > max {
                    return Err(self.err(
                        first_pos,
                        format!("OCCURS minimum {first} is greater than the maximum {max}"),
                    ));
                }
                (first, max)
            }
            (Some(_), None) => {
                return Err(self.err(
                    token.pos,
                    "OCCURS … TO … needs DEPENDING ON naming the field that holds the count",
                ));
            }
            (None, depending) => {
                if first == 0 {
                    return Err(
                        self.err(first_pos, "OCCURS 0: a table needs at least one occurrence")
                    );
                }
                // `OCCURS n TIMES DEPENDING ON x` without `m TO`: the minimum is 1.
                (if depending.is_some() { 1 } else { first }, first)
            }
        };
        Ok(OccursClause {
            min,
            max,
            depending_on,
        })
    }

    /// One or more names (ASCENDING KEY …, INDEXED BY …); parsed and ignored.
    fn names(&mut self, after: &Token) -> Result<(), CopybookError> {
        let mut count = 0;
        while let Some(word) = self.peek_word() {
            if is_clause_keyword(word) || looks_like_level(word) {
                break;
            }
            self.at += 1;
            count += 1;
        }
        if count == 0 {
            return Err(self.err(
                after.pos,
                format!("{} needs at least one name", after.upper),
            ));
        }
        Ok(())
    }

    /// A literal after VALUE (or THRU): nonnumeric, numeric or figurative.
    fn literal(&mut self, after: Position) -> Result<(Literal, Position), CopybookError> {
        let Some(token) = self.bump() else {
            return Err(self.err(after, "expected a literal after VALUE"));
        };
        match token.kind {
            TokenKind::Literal => return Ok((Literal::Text(token.text), token.pos)),
            TokenKind::Period => {
                return Err(self.err(token.pos, "expected a literal before the period"));
            }
            TokenKind::Word => {}
        }
        if let Some(literal) = figurative(&token.upper) {
            return Ok((literal, token.pos));
        }
        let literal = match token.upper.as_str() {
            "ALL" => {
                let operand = self.bump();
                match operand.as_ref().map(|t| (t.kind, figurative(&t.upper))) {
                    Some((TokenKind::Word, Some(literal))) => literal,
                    Some((TokenKind::Literal, _)) => {
                        Literal::Text(operand.map(|t| t.text).unwrap_or_default())
                    }
                    _ => {
                        return Err(self.err(
                            token.pos,
                            "ALL needs a nonnumeric literal or a figurative constant after it",
                        ));
                    }
                }
            }
            "NULL" | "NULLS" => {
                return Err(self.err(token.pos, "VALUE NULL (pointers) is not supported"));
            }
            text if looks_numeric(text) => Literal::Number(self.number(&token)?),
            _ => {
                return Err(self.err(
                    token.pos,
                    format!("expected a literal after VALUE, found `{}`", token.text),
                ));
            }
        };
        Ok((literal, token.pos))
    }

    fn number(&self, token: &Token) -> Result<Decimal, CopybookError> {
        let bad = || {
            self.err(
                token.pos,
                format!("`{}` is not a valid numeric literal", token.text),
            )
        };
        let text = token.text.as_str();
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !digits_ok(int) || !digits_ok(frac) || int.len() + frac.len() == 0 {
            return Err(bad());
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        if int.len() + frac.len() > MAX_DIGITS {
            return Err(self.err(
                token.pos,
                format!("numeric literal `{text}` has more than {MAX_DIGITS} significant digits"),
            ));
        }
        let normal = format!(
            "{}{}.{}",
            if negative { "-" } else { "" },
            if int.is_empty() { "0" } else { int },
            if frac.is_empty() { "0" } else { frac }
        );
        Decimal::from_str_exact(&normal)
            .map(|d| d.normalize())
            .map_err(|_| bad())
    }

    fn is_literal_start(&self) -> bool {
        match self.peek() {
            Some(t) if t.kind == TokenKind::Literal => true,
            Some(t) if t.kind == TokenKind::Word => {
                is_figurative(&t.upper) || looks_numeric(&t.upper)
            }
            _ => false,
        }
    }

    fn condition_entry(&mut self, pos: Position) -> Result<ConditionEntry, CopybookError> {
        let name = match self.peek().filter(|t| t.kind == TokenKind::Word).cloned() {
            Some(t) if !is_clause_keyword(&t.upper) && t.upper != "FILLER" => {
                if looks_like_level(&t.upper) {
                    return Err(self.missing_period(&t));
                }
                self.at += 1;
                if let Some(why) = check_name(&t.upper) {
                    return Err(self.err(
                        t.pos,
                        format!("`{}` is not a valid condition name: {why}", t.text),
                    ));
                }
                t.upper
            }
            _ => return Err(self.err(pos, "an 88-level entry needs a condition name")),
        };
        match self.peek().cloned() {
            Some(t) if t.kind == TokenKind::Word && (t.upper == "VALUE" || t.upper == "VALUES") => {
                self.at += 1;
            }
            Some(t) => {
                return Err(self.err(
                    t.pos,
                    format!("the 88-level entry for {name} needs a VALUE clause"),
                ));
            }
            None => {
                return Err(self.err(
                    self.last_pos(),
                    format!("the 88-level entry for {name} needs a VALUE clause"),
                ));
            }
        }
        self.skip(&["IS", "ARE"]);
        let mut values = Vec::new();
        let mut positions = Vec::new();
        loop {
            let (low, low_pos) = self.literal(self.last_pos())?;
            positions.push(low_pos);
            if let Some(thru) = self
                .peek()
                .filter(|t| {
                    t.kind == TokenKind::Word && matches!(t.upper.as_str(), "THRU" | "THROUGH")
                })
                .cloned()
            {
                self.at += 1;
                let (high, high_pos) = self.literal(thru.pos)?;
                positions.push(high_pos);
                values.push(ConditionValue::Range(low, high));
            } else {
                values.push(ConditionValue::Single(low));
            }
            if !self.is_literal_start() {
                break;
            }
            // `88 X VALUE 1` missing its period before `05 NEXT-ITEM …`: a one- or two-digit
            // number followed by a word that cannot follow a value is a level number.
            if let Some(next) = self.peek().filter(|t| looks_like_level(&t.upper))
                && self.tokens.get(self.at + 1).is_some_and(|after| {
                    after.kind == TokenKind::Word
                        && !matches!(after.upper.as_str(), "THRU" | "THROUGH")
                        && figurative(&after.upper).is_none()
                        && after.upper != "ALL"
                        && !looks_numeric(&after.upper)
                })
            {
                return Err(self.missing_period(next));
            }
        }
        match self.bump() {
            Some(t) if t.kind == TokenKind::Period => {}
            Some(t) if t.kind == TokenKind::Word && looks_like_level(&t.upper) => {
                return Err(self.missing_period(&t));
            }
            Some(t) => {
                return Err(self.err(
                    t.pos,
                    format!(
                        "unexpected `{}` in the 88-level entry for {name} (only VALUE is \
                         supported)",
                        t.text
                    ),
                ));
            }
            None => {
                return Err(self.err(
                    self.last_pos(),
                    format!(
                        "missing period: the copybook ends before the 88-level entry for {name} \
                         is closed with a period"
                    ),
                ));
            }
        }
        Ok(ConditionEntry {
            condition: Condition {
                name,
                position: pos,
                values,
            },
            positions,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Tree: entries → nested groups by level number.
// ---------------------------------------------------------------------------------------------

struct Node {
    entry: Entry,
    children: Vec<Node>,
}

/// Nests entries by level number. A copybook that does not start at level 01 is wrapped in an
/// implicit record named after the file stem.
fn build_tree(path: &str, entries: Vec<Entry>) -> Result<Vec<Node>, CopybookError> {
    let mut records: Vec<Node> = Vec::new();
    let mut stack: Vec<Node> = Vec::new();
    for entry in entries {
        if stack.is_empty() && entry.level != 1 {
            let name = Path::new(path)
                .file_stem()
                .map(|s| s.to_string_lossy().to_uppercase())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "RECORD".to_string());
            stack.push(Node {
                entry: Entry::new(1, Position { line: 1, column: 1 }, Some(name)),
                children: Vec::new(),
            });
        }
        let level = entry.level;
        if level == 1 {
            close_to(&mut stack, &mut records, 0);
        } else {
            let mut popped = None;
            while stack.last().is_some_and(|n| n.entry.level > level) {
                popped = stack.last().map(|n| n.entry.level);
                close_top(&mut stack, &mut records);
            }
            if stack.last().is_some_and(|n| n.entry.level == level) {
                close_top(&mut stack, &mut records);
            } else if popped.is_some() {
                let open: Vec<String> = stack
                    .iter()
                    .map(|n| format!("{:02}", n.entry.level))
                    .collect();
                return Err(error(
                    path,
                    entry.pos,
                    format!(
                        "level {level:02} does not match any enclosing level (the open levels \
                         are {})",
                        open.join(", ")
                    ),
                ));
            }
        }
        stack.push(Node {
            entry,
            children: Vec::new(),
        });
    }
    close_to(&mut stack, &mut records, 0);
    Ok(records)
}

/// Closes the innermost open node.
fn close_top(stack: &mut Vec<Node>, records: &mut Vec<Node>) {
    let keep = stack.len().saturating_sub(1);
    close_to(stack, records, keep);
}

/// Closes open nodes until `len` remain, attaching each to its parent (or to `records`).
fn close_to(stack: &mut Vec<Node>, records: &mut Vec<Node>, len: usize) {
    while stack.len() > len {
        let Some(node) = stack.pop() else {
            break;
        };
        match stack.last_mut() {
            Some(parent) => parent.children.push(node),
            None => records.push(node),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resolver: pictures, usage, sizes, offsets and the cross-entry rules.
// ---------------------------------------------------------------------------------------------

/// A picture reduced to its class, before usage is applied.
enum Shape {
    Alphanumeric(usize),
    Edited(usize),
    Numeric {
        digits: usize,
        scale: usize,
        signed: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Symbol {
    /// `A` or `X`.
    Alpha,
    /// `9`.
    Digit,
    S,
    V,
    /// An editing symbol: `Z * , . + - $ B 0 /`.
    Edit(char),
    /// `CR` or `DB`, two characters.
    CreditDebit,
}

fn parse_picture(path: &str, text: &str, pos: Position) -> Result<Shape, CopybookError> {
    let err = |message: String| error(path, pos, message);
    let chars: Vec<char> = text.to_ascii_uppercase().chars().collect();
    let mut symbols: Vec<(Symbol, usize)> = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        let symbol = match c {
            'A' | 'X' => Symbol::Alpha,
            '9' => Symbol::Digit,
            'S' => Symbol::S,
            'V' => Symbol::V,
            'Z' | '*' | ',' | '.' | '+' | '-' | '$' | 'B' | '0' | '/' => Symbol::Edit(c),
            'C' if next == Some('R') => {
                i += 1;
                Symbol::CreditDebit
            }
            'D' if next == Some('B') => {
                i += 1;
                Symbol::CreditDebit
            }
            'P' => {
                return Err(err(format!(
                    "PICTURE {text}: P scaling is not supported (declare the digits with 9 and V)"
                )));
            }
            'E' => {
                return Err(err(format!(
                    "PICTURE {text}: floating-point edited pictures (E) are not supported"
                )));
            }
            'N' | 'G' | 'U' => {
                return Err(err(format!(
                    "PICTURE {text}: national and DBCS pictures ({c}) are not supported"
                )));
            }
            '1' => {
                return Err(err(format!(
                    "PICTURE {text}: boolean pictures (1) are not supported"
                )));
            }
            '(' => {
                return Err(err(format!(
                    "PICTURE {text}: `(` must follow a picture symbol"
                )));
            }
            other => {
                return Err(err(format!(
                    "PICTURE {text}: `{other}` is not a picture symbol"
                )));
            }
        };
        i += 1;
        let mut count = 1;
        if chars.get(i) == Some(&'(') {
            let rest = chars.get(i + 1..).unwrap_or(&[]);
            let Some(close) = rest.iter().position(|&c| c == ')') else {
                return Err(err(format!("PICTURE {text}: `(` is not closed")));
            };
            let inner: String = rest.iter().take(close).collect();
            if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(format!(
                    "PICTURE {text}: a repeat count `({inner})` must be a positive integer"
                )));
            }
            count = match inner.parse::<usize>() {
                Ok(0) => {
                    return Err(err(format!(
                        "PICTURE {text}: a repeat count must be at least 1"
                    )));
                }
                Ok(n) if n <= MAX_ITEM_BYTES => n,
                _ => {
                    return Err(err(format!(
                        "PICTURE {text}: repeat count ({inner}) is too large"
                    )));
                }
            };
            i += close + 2;
        }
        if matches!(symbol, Symbol::S | Symbol::V | Symbol::CreditDebit) && count > 1 {
            return Err(err(format!(
                "PICTURE {text}: S, V, CR and DB cannot be repeated"
            )));
        }
        symbols.push((symbol, count));
    }
    if symbols.is_empty() {
        return Err(err("PICTURE is empty".to_string()));
    }
    let total = |pred: &dyn Fn(Symbol) -> bool| {
        symbols
            .iter()
            .filter(|(s, _)| pred(*s))
            .fold(0usize, |acc, (_, n)| acc.saturating_add(*n))
    };
    let has = |pred: &dyn Fn(Symbol) -> bool| symbols.iter().any(|(s, _)| pred(*s));
    let s_count = symbols.iter().filter(|(s, _)| *s == Symbol::S).count();
    if s_count > 1 || symbols.iter().skip(1).any(|(s, _)| *s == Symbol::S) {
        return Err(err(format!(
            "PICTURE {text}: S may appear only once, as the first symbol"
        )));
    }
    if symbols.iter().filter(|(s, _)| *s == Symbol::V).count() > 1 {
        return Err(err(format!("PICTURE {text}: V may appear only once")));
    }
    let is_edit = |s: Symbol| matches!(s, Symbol::Edit(_) | Symbol::CreditDebit);
    let signed = s_count == 1;
    let has_v = has(&|s| s == Symbol::V);
    if has(&|s| s == Symbol::Alpha) {
        if signed || has_v {
            return Err(err(format!(
                "PICTURE {text}: S and V belong to numeric pictures and cannot be used with A or X"
            )));
        }
        if let Some((Symbol::Edit(c), _)) = symbols
            .iter()
            .find(|(s, _)| is_edit(*s) && !matches!(s, Symbol::Edit('B' | '0' | '/')))
        {
            return Err(err(format!(
                "PICTURE {text}: `{c}` is a numeric editing symbol and cannot be used with A or X"
            )));
        }
        if has(&|s| s == Symbol::CreditDebit) {
            return Err(err(format!(
                "PICTURE {text}: CR and DB are numeric editing symbols and cannot be used with A \
                 or X"
            )));
        }
        let len = total(&|s| s != Symbol::V);
        return Ok(if has(&is_edit) {
            Shape::Edited(len)
        } else {
            Shape::Alphanumeric(len)
        });
    }
    if has(&is_edit) {
        if signed {
            return Err(err(format!(
                "PICTURE {text}: S cannot be used in a numeric-edited picture (use +, -, CR or DB)"
            )));
        }
        if symbols
            .iter()
            .rev()
            .skip(1)
            .any(|(s, _)| *s == Symbol::CreditDebit)
        {
            return Err(err(format!(
                "PICTURE {text}: CR or DB must be the last symbol"
            )));
        }
        if has_v && has(&|s| s == Symbol::Edit('.')) {
            return Err(err(format!(
                "PICTURE {text}: V and `.` cannot both be used"
            )));
        }
        let len = total(&|s| !matches!(s, Symbol::V | Symbol::CreditDebit))
            .saturating_add(total(&|s| s == Symbol::CreditDebit).saturating_mul(2));
        return Ok(Shape::Edited(len));
    }
    let digits = total(&|s| s == Symbol::Digit);
    if digits == 0 {
        return Err(err(format!(
            "PICTURE {text}: a numeric picture needs at least one 9"
        )));
    }
    if digits > MAX_DIGITS {
        return Err(err(format!(
            "PICTURE {text}: {digits} digits is more than the {MAX_DIGITS}-digit limit of \
             numeric fields (exact decimals are held in rust_decimal)"
        )));
    }
    let scale = symbols
        .iter()
        .skip_while(|(s, _)| *s != Symbol::V)
        .filter(|(s, _)| *s == Symbol::Digit)
        .map(|(_, n)| *n)
        .sum();
    Ok(Shape::Numeric {
        digits,
        scale,
        signed,
    })
}

/// What a group passes down to its subordinate items.
#[derive(Clone, Default)]
struct Inherited {
    /// The group's USAGE clause and the group's name.
    usage: Option<(UsageClause, String)>,
    /// The nearest group SIGN clause.
    sign: Option<SignClause>,
    /// The name of an enclosing group with a VALUE clause.
    value_group: Option<String>,
    /// Inside an OCCURS table.
    in_table: bool,
}

/// What the ODO checks need to know about each item, in source order within a record.
struct OrderInfo {
    name: Option<String>,
    /// `None` for a group or a non-numeric field, else whether the picture is an integer.
    integer: Option<bool>,
    /// How to describe the item when it is the wrong kind of ODO object.
    description: String,
    in_table: bool,
    /// The first ODO table that ends before this item, if any.
    after_odo: Option<String>,
}

struct OdoCheck {
    /// Index in `order` of the table.
    table: usize,
    table_name: String,
    object: String,
    pos: Position,
}

/// The items sharing one storage area: an item without REDEFINES and the items after it that
/// redefine it (or each other), by name → index among the siblings.
#[derive(Default)]
struct Area {
    names: HashMap<String, usize>,
}

impl Area {
    fn add(&mut self, item: &Item, index: usize) {
        if let Some(name) = &item.name {
            self.names.insert(name.clone(), index);
        }
    }
}

struct Resolver<'p> {
    path: &'p str,
    /// Every data name in the copybook, for better REDEFINES messages.
    all_names: HashSet<String>,
    order: Vec<OrderInfo>,
    odo_checks: Vec<OdoCheck>,
    /// The first ODO table completed in the current record.
    passed_odo: Option<String>,
}

fn collect_names(nodes: &[Node], names: &mut HashSet<String>) {
    for node in nodes {
        if let Some(name) = &node.entry.name {
            names.insert(name.clone());
        }
        collect_names(&node.children, names);
    }
}

fn has_odo(item: &Item) -> Option<String> {
    if item
        .occurs
        .as_ref()
        .is_some_and(|o| o.depending_on.is_some())
    {
        return Some(item.display_name().to_string());
    }
    match &item.kind {
        ItemKind::Group(children) => children.iter().find_map(has_odo),
        ItemKind::Field(_) => None,
    }
}

impl<'p> Resolver<'p> {
    fn new(path: &'p str, nodes: &[Node]) -> Self {
        let mut all_names = HashSet::new();
        collect_names(nodes, &mut all_names);
        Resolver {
            path,
            all_names,
            order: Vec::new(),
            odo_checks: Vec::new(),
            passed_odo: None,
        }
    }

    fn err(&self, pos: Position, message: impl Into<String>) -> CopybookError {
        error(self.path, pos, message)
    }

    fn records(&mut self, nodes: Vec<Node>) -> Result<Vec<Item>, CopybookError> {
        let mut records: Vec<Item> = Vec::new();
        let mut area = Area::default();
        for node in nodes {
            if let Some((target, pos)) = node.entry.redefines.clone() {
                self.find_redefined(&records, &area, &target, pos, 1)?;
            } else {
                area.names.clear();
            }
            self.order.clear();
            self.odo_checks.clear();
            self.passed_odo = None;
            let record = self.resolve(node, &Inherited::default(), 0)?;
            self.check_odo_objects(record.display_name())?;
            area.add(&record, records.len());
            records.push(record);
        }
        Ok(records)
    }

    /// The sibling `target` that a REDEFINES names: the most recent item of that name in the
    /// current area (the last item without REDEFINES and the items redefining it).
    fn find_redefined<'i>(
        &self,
        siblings: &'i [Item],
        area: &Area,
        target: &str,
        pos: Position,
        level: u8,
    ) -> Result<&'i Item, CopybookError> {
        if let Some(item) = area.names.get(target).and_then(|&i| siblings.get(i)) {
            return Ok(item);
        }
        let message = if siblings.iter().any(|i| i.name.as_deref() == Some(target)) {
            format!(
                "REDEFINES {target}: the redefining entry must immediately follow {target} (only \
                 other entries redefining the same area may come between)"
            )
        } else if self.all_names.contains(target) {
            format!(
                "REDEFINES {target}: {target} is not an earlier item at level {level:02} in the \
                 same group"
            )
        } else {
            format!("REDEFINES {target}: there is no item named {target}")
        };
        Err(self.err(pos, message))
    }

    fn check_odo_objects(&self, record: &str) -> Result<(), CopybookError> {
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, info) in self.order.iter().enumerate() {
            if let Some(name) = &info.name {
                by_name.entry(name.as_str()).or_default().push(index);
            }
        }
        for check in &self.odo_checks {
            let object = check.object.as_str();
            let table = &check.table_name;
            let same_name = by_name.get(object).map_or(&[][..], Vec::as_slice);
            let earlier: Vec<&OrderInfo> = same_name
                .iter()
                .filter(|&&i| i < check.table)
                .filter_map(|&i| self.order.get(i))
                .collect();
            let info = match earlier.as_slice() {
                [] => {
                    let message = if same_name.iter().any(|&i| i > check.table) {
                        format!(
                            "DEPENDING ON {object}: {object} is declared after the table \
                             {table}; the count must be declared before the table"
                        )
                    } else {
                        format!(
                            "DEPENDING ON {object}: there is no item {object} in record {record}"
                        )
                    };
                    return Err(self.err(check.pos, message));
                }
                [info] => *info,
                _ => {
                    return Err(self.err(
                        check.pos,
                        format!(
                            "DEPENDING ON {object} is ambiguous: {} items named {object} come \
                             before the table {table}",
                            earlier.len()
                        ),
                    ));
                }
            };
            match info.integer {
                Some(true) => {}
                Some(false) => {
                    return Err(self.err(
                        check.pos,
                        format!(
                            "DEPENDING ON {object}: {object} must be an integer, but its picture \
                             has decimal places ({})",
                            info.description
                        ),
                    ));
                }
                None => {
                    return Err(self.err(
                        check.pos,
                        format!(
                            "DEPENDING ON {object}: {object} must be a numeric elementary item \
                             holding the count, but it is {}",
                            info.description
                        ),
                    ));
                }
            }
            if info.in_table {
                return Err(self.err(
                    check.pos,
                    format!(
                        "DEPENDING ON {object}: {object} is inside a table (OCCURS); the count \
                         must be a single field"
                    ),
                ));
            }
            if let Some(earlier_table) = &info.after_odo {
                return Err(self.err(
                    check.pos,
                    format!(
                        "DEPENDING ON {object}: {object} follows the variable-length table \
                         {earlier_table}, so its own position varies; the count must be at a \
                         fixed position"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn resolve(
        &mut self,
        node: Node,
        inherited: &Inherited,
        offset: usize,
    ) -> Result<Item, CopybookError> {
        let Node { entry, children } = node;
        let name = entry.display_name().to_string();
        let order_index = self.order.len();
        self.order.push(OrderInfo {
            name: entry.name.clone(),
            integer: None,
            description: "a group item".to_string(),
            in_table: inherited.in_table || entry.occurs.is_some(),
            after_odo: self.passed_odo.clone(),
        });

        let usage = match (&entry.usage, &inherited.usage) {
            (Some(own), Some((group, group_name))) if own.usage != group.usage => {
                return Err(self.err(
                    own.pos,
                    format!(
                        "USAGE {} of {name} contradicts USAGE {} of the enclosing group \
                         {group_name}",
                        own.keyword, group.keyword
                    ),
                ));
            }
            (Some(own), _) => Some((own.clone(), name.clone())),
            (None, from_group) => from_group.clone(),
        };
        if let (Some((_, value_pos)), Some(group)) = (&entry.value, &inherited.value_group) {
            return Err(self.err(
                *value_pos,
                format!("{name} cannot have a VALUE clause: the enclosing group {group} has one"),
            ));
        }

        let (kind, size) = if children.is_empty() {
            let Some((pic_text, pic_pos)) = entry.pic.clone() else {
                return Err(self.err(
                    entry.pos,
                    format!("{name} has no PICTURE clause and no subordinate items"),
                ));
            };
            let picture =
                self.field(&entry, &name, pic_text, pic_pos, usage.as_ref(), inherited)?;
            let size = match (&picture.class, picture.usage) {
                (PicClass::Alphanumeric { len } | PicClass::Edited { len }, _) => *len,
                (PicClass::Numeric { digits, sign, .. }, Usage::Display) => {
                    usize::from(*digits)
                        + usize::from(matches!(
                            sign,
                            Sign::LeadingSeparate | Sign::TrailingSeparate
                        ))
                }
                (PicClass::Numeric { digits, .. }, Usage::Packed) => usize::from(*digits) / 2 + 1,
                (PicClass::Numeric { digits, .. }, Usage::Binary | Usage::NativeBinary) => {
                    match digits {
                        1..=4 => 2,
                        5..=9 => 4,
                        _ => 8,
                    }
                }
            };
            if let Some(info) = self.order.get_mut(order_index) {
                match &picture.class {
                    PicClass::Numeric { scale, .. } => {
                        info.integer = Some(*scale == 0);
                        info.description = format!("PIC {}", picture.text);
                    }
                    _ => info.description = format!("PIC {}", picture.text),
                }
            }
            (ItemKind::Field(picture), size)
        } else {
            if let Some((pic, pic_pos)) = &entry.pic {
                return Err(self.err(
                    *pic_pos,
                    format!(
                        "{name} is a group item (subordinate entries follow it) and cannot have a \
                         PICTURE clause (PIC {pic})"
                    ),
                ));
            }
            let child_inherited = Inherited {
                usage,
                sign: entry.sign.clone().or_else(|| inherited.sign.clone()),
                value_group: if entry.value.is_some() {
                    Some(name.clone())
                } else {
                    inherited.value_group.clone()
                },
                in_table: inherited.in_table || entry.occurs.is_some(),
            };
            let (items, size) = self.layout(children, &child_inherited, offset)?;
            (ItemKind::Group(items), size)
        };

        let max = entry.occurs.as_ref().map_or(1, |o| o.max);
        if size > MAX_ITEM_BYTES || size.checked_mul(max).is_none_or(|t| t > MAX_ITEM_BYTES) {
            return Err(self.err(
                entry.pos,
                format!("{name} is larger than the {MAX_ITEM_BYTES}-byte limit"),
            ));
        }

        let mut item = Item {
            level: entry.level,
            name: entry.name.clone(),
            position: entry.pos,
            offset,
            size,
            occurs: entry.occurs.as_ref().map(|o| Occurs {
                min: o.min,
                max: o.max,
                depending_on: o.depending_on.as_ref().map(|(n, _)| n.clone()),
            }),
            redefines: entry.redefines.as_ref().map(|(n, _)| n.clone()),
            kind,
            value: None,
            conditions: Vec::new(),
        };
        if let Some((literal, pos)) = entry.value {
            self.check_literal(&item, &literal, pos)?;
            item.value = Some(literal);
        }
        for ConditionEntry {
            condition,
            positions,
        } in entry.conditions
        {
            let literals = condition.values.iter().flat_map(|v| match v {
                ConditionValue::Single(l) => vec![l],
                ConditionValue::Range(a, b) => vec![a, b],
            });
            for (literal, pos) in literals.zip(positions) {
                self.check_literal(&item, literal, pos)?;
            }
            item.conditions.push(condition);
        }
        if let Some(occurs) = &entry.occurs
            && let Some((object, pos)) = &occurs.depending_on
        {
            self.odo_checks.push(OdoCheck {
                table: order_index,
                table_name: name.clone(),
                object: object.clone(),
                pos: *pos,
            });
            if self.passed_odo.is_none() {
                self.passed_odo = Some(name);
            }
        }
        Ok(item)
    }

    /// An elementary item's picture with its usage and sign applied.
    fn field(
        &self,
        entry: &Entry,
        name: &str,
        pic_text: String,
        pic_pos: Position,
        usage: Option<&(UsageClause, String)>,
        inherited: &Inherited,
    ) -> Result<Picture, CopybookError> {
        let shape = parse_picture(self.path, &pic_text, pic_pos)?;
        let usage_value = usage.map_or(Usage::Display, |(u, _)| u.usage);
        let class = match shape {
            Shape::Alphanumeric(len) | Shape::Edited(len) => {
                if let Some((clause, owner)) = usage.filter(|(u, _)| u.usage != Usage::Display) {
                    let from = if owner == name {
                        String::new()
                    } else {
                        format!(" (from group {owner})")
                    };
                    return Err(self.err(
                        if owner == name { clause.pos } else { pic_pos },
                        format!(
                            "USAGE {}{from} needs a numeric picture, but {name} is PIC {pic_text}",
                            clause.keyword
                        ),
                    ));
                }
                if let Some(sign) = &entry.sign {
                    return Err(self.err(
                        sign.pos,
                        format!(
                            "the SIGN clause needs a signed numeric picture (S9…), but {name} is \
                             PIC {pic_text}"
                        ),
                    ));
                }
                if matches!(shape, Shape::Edited(_)) {
                    PicClass::Edited { len }
                } else {
                    PicClass::Alphanumeric { len }
                }
            }
            Shape::Numeric {
                digits,
                scale,
                signed,
            } => {
                if let Some(sign) = &entry.sign {
                    if !signed {
                        return Err(self.err(
                            sign.pos,
                            format!(
                                "the SIGN clause needs a signed picture (S9…), but {name} is PIC \
                                 {pic_text}"
                            ),
                        ));
                    }
                    if usage_value != Usage::Display {
                        return Err(self.err(
                            sign.pos,
                            format!(
                                "the SIGN clause applies only to USAGE DISPLAY fields ({name})"
                            ),
                        ));
                    }
                }
                if matches!(usage_value, Usage::Binary | Usage::NativeBinary)
                    && digits > MAX_BINARY_DIGITS
                {
                    return Err(self.err(
                        pic_pos,
                        format!(
                            "PICTURE {pic_text}: binary (COMP) fields hold at most \
                             {MAX_BINARY_DIGITS} digits"
                        ),
                    ));
                }
                let sign = if !signed {
                    Sign::Unsigned
                } else if usage_value != Usage::Display {
                    Sign::Trailing
                } else {
                    match entry.sign.as_ref().or(inherited.sign.as_ref()) {
                        None => Sign::Trailing,
                        Some(s) => match (s.leading, s.separate) {
                            (true, true) => Sign::LeadingSeparate,
                            (true, false) => Sign::Leading,
                            (false, true) => Sign::TrailingSeparate,
                            (false, false) => Sign::Trailing,
                        },
                    }
                };
                // Both fit: digits <= 28 was checked by `parse_picture`, scale <= digits.
                let digits = u8::try_from(digits).unwrap_or(u8::MAX);
                let scale = u8::try_from(scale).unwrap_or(u8::MAX);
                PicClass::Numeric {
                    digits,
                    scale,
                    sign,
                }
            }
        };
        Ok(Picture {
            text: pic_text,
            class,
            usage: usage_value,
        })
    }

    /// Lays out a group's children from `base`; returns them and the group's size.
    fn layout(
        &mut self,
        children: Vec<Node>,
        inherited: &Inherited,
        base: usize,
    ) -> Result<(Vec<Item>, usize), CopybookError> {
        let mut items: Vec<Item> = Vec::with_capacity(children.len());
        let mut area_start = base;
        let mut area_len = 0usize;
        let mut area = Area::default();
        for child in children {
            if let Some((target, pos)) = child.entry.redefines.clone() {
                let level = child.entry.level;
                let redefined = self.find_redefined(&items, &area, &target, pos, level)?;
                let redefined_odo = has_odo(redefined);
                let item = self.resolve(child, inherited, area_start)?;
                if let Some(table) = redefined_odo.or_else(|| has_odo(&item)) {
                    return Err(self.err(
                        pos,
                        format!(
                            "REDEFINES {target}: neither the redefined nor the redefining item \
                             may contain a variable-length table (OCCURS DEPENDING ON), but \
                             {table} is one"
                        ),
                    ));
                }
                area_len = area_len.max(item.total_size());
                area.add(&item, items.len());
                items.push(item);
            } else {
                area_start = area_start.saturating_add(area_len);
                area.names.clear();
                let item = self.resolve(child, inherited, area_start)?;
                area_len = item.total_size();
                area.add(&item, items.len());
                items.push(item);
            }
            if area_start.saturating_add(area_len).saturating_sub(base) > MAX_ITEM_BYTES {
                let pos = items
                    .last()
                    .map_or(Position { line: 1, column: 1 }, |i| i.position);
                return Err(self.err(
                    pos,
                    format!("the group is larger than the {MAX_ITEM_BYTES}-byte limit"),
                ));
            }
        }
        Ok((
            items,
            area_start.saturating_add(area_len).saturating_sub(base),
        ))
    }

    /// Checks that a VALUE literal (or an 88 value) fits the item it belongs to.
    fn check_literal(
        &self,
        item: &Item,
        literal: &Literal,
        pos: Position,
    ) -> Result<(), CopybookError> {
        let name = item.display_name();
        let text_len = |max: usize, what: &str| -> Result<(), CopybookError> {
            if let Literal::Text(text) = literal {
                let len = text.chars().count();
                if len > max {
                    return Err(self.err(
                        pos,
                        format!(
                            "the literal is {len} characters long, but {what} {name} holds {max}"
                        ),
                    ));
                }
            }
            Ok(())
        };
        match &item.kind {
            ItemKind::Group(_) => {
                if let Literal::Number(n) = literal {
                    return Err(self.err(
                        pos,
                        format!(
                            "numeric literal {n} for group item {name}: a group's value must be a \
                             nonnumeric literal or a figurative constant"
                        ),
                    ));
                }
                text_len(item.size, "group")
            }
            ItemKind::Field(pic) => match &pic.class {
                PicClass::Alphanumeric { len } => {
                    if let Literal::Number(n) = literal {
                        return Err(self.err(
                            pos,
                            format!(
                                "numeric literal {n} for alphanumeric field {name} (PIC {}): \
                                 write it in quotes",
                                pic.text
                            ),
                        ));
                    }
                    text_len(*len, "field")
                }
                PicClass::Edited { len } => text_len(*len, "field"),
                PicClass::Numeric {
                    digits,
                    scale,
                    sign,
                } => {
                    let n = match literal {
                        Literal::Number(n) => *n,
                        Literal::Zeros => return Ok(()),
                        other => {
                            return Err(self.err(
                                pos,
                                format!(
                                    "{} does not fit numeric field {name} (PIC {}): the value \
                                     must be a numeric literal or ZERO",
                                    literal_label(other),
                                    pic.text
                                ),
                            ));
                        }
                    };
                    let fail = |why: String| {
                        self.err(
                            pos,
                            format!("VALUE {n} does not fit {name} (PIC {}): {why}", pic.text),
                        )
                    };
                    if n.is_sign_negative() && !n.is_zero() && *sign == Sign::Unsigned {
                        return Err(fail("it is negative but the picture has no S".to_string()));
                    }
                    let places = usize::try_from(n.normalize().scale()).unwrap_or(usize::MAX);
                    if places > usize::from(*scale) {
                        return Err(fail(format!(
                            "it has {places} decimal places, the picture {scale}"
                        )));
                    }
                    let integer = n.abs().trunc().normalize();
                    let int_digits = if integer.is_zero() {
                        0
                    } else {
                        integer
                            .to_string()
                            .bytes()
                            .filter(u8::is_ascii_digit)
                            .count()
                    };
                    let int_room = usize::from(*digits).saturating_sub(usize::from(*scale));
                    if int_digits > int_room {
                        return Err(fail(format!(
                            "it has {int_digits} integer digits, the picture {int_room}"
                        )));
                    }
                    Ok(())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed-format source from text-area lines: each line gets an empty sequence area and a
    /// blank indicator, so its text starts in column 8 (index `k` in a line is column `8 + k`).
    fn src(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("       {l}\n")).collect()
    }

    fn parse(lines: &[&str]) -> Copybook {
        match Copybook::parse("TEST.cpy", &src(lines)) {
            Ok(copybook) => copybook,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn fails(lines: &[&str]) -> CopybookError {
        match Copybook::parse("TEST.cpy", &src(lines)) {
            Ok(copybook) => panic!("expected an error, parsed {copybook:#?}"),
            Err(e) => e,
        }
    }

    #[track_caller]
    fn assert_error(e: &CopybookError, line: usize, column: usize, phrase: &str) {
        assert_eq!(
            (e.position.line, e.position.column),
            (line, column),
            "wrong position for: {e}"
        );
        assert!(
            e.message.contains(phrase),
            "`{}` does not contain `{phrase}`",
            e.message
        );
    }

    /// Runs error cases; reports every mismatch at once.
    fn check_cases(cases: &[(Vec<&str>, usize, usize, &str)]) {
        let mut wrong = Vec::new();
        for (lines, line, column, phrase) in cases {
            match Copybook::parse("TEST.cpy", &src(lines)) {
                Ok(_) => wrong.push(format!("{lines:?}: parsed, expected `{phrase}`")),
                Err(e) => {
                    if (e.position.line, e.position.column) != (*line, *column)
                        || !e.message.contains(phrase)
                    {
                        wrong.push(format!(
                            "{lines:?}: expected {line}:{column} `{phrase}`, got {e}"
                        ));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// Every item of a record in source order: (name, level, offset, size, total size).
    fn flatten(item: &Item) -> Vec<(String, u8, usize, usize, usize)> {
        let mut out = vec![(
            item.display_name().to_string(),
            item.level,
            item.offset,
            item.size,
            item.total_size(),
        )];
        if let ItemKind::Group(children) = &item.kind {
            for child in children {
                out.extend(flatten(child));
            }
        }
        out
    }

    fn find<'a>(item: &'a Item, name: &str) -> &'a Item {
        fn walk<'a>(item: &'a Item, name: &str) -> Option<&'a Item> {
            if item.name.as_deref() == Some(name) {
                return Some(item);
            }
            match &item.kind {
                ItemKind::Group(children) => children.iter().find_map(|c| walk(c, name)),
                ItemKind::Field(_) => None,
            }
        }
        walk(item, name).unwrap_or_else(|| panic!("no item {name}"))
    }

    fn picture(item: &Item) -> &Picture {
        match &item.kind {
            ItemKind::Field(p) => p,
            ItemKind::Group(_) => panic!("{} is a group", item.display_name()),
        }
    }

    fn dec(text: &str) -> Decimal {
        Decimal::from_str_exact(text).expect("test decimal")
    }

    fn text(s: &str) -> Literal {
        Literal::Text(s.to_string())
    }

    const BENEFIT_CASE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/copybooks/BENEFIT-CASE.cpy"
    ));

    fn benefit_case() -> Item {
        let copybook = match Copybook::parse("copybooks/BENEFIT-CASE.cpy", BENEFIT_CASE) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(copybook.records.len(), 1);
        copybook.record(None).cloned().expect("one record")
    }

    #[test]
    fn benefit_case_offsets_and_sizes() {
        let record = benefit_case();
        // Worked by hand from the rules (offset 0-based, size of one occurrence, total):
        // BNQ-KEY: X(3) = 3 + 9(9) = 9 → 12.              next 12
        // BNQ-STATUS X → 1.                                 next 13
        // S9(7)V99 COMP-3: 9 digits → 9/2+1 = 5.            next 18
        // S9(5)V99 SIGN LEADING SEPARATE: 7 + 1 = 8.        next 26
        // 9(4) COMP: 1-4 digits → 2.                        next 28
        // S9(4) BINARY → 2.                                 next 30
        // BNQ-OPEN-DATE: 9(4) + 99 + 9(2) = 8.              next 38
        // BNQ-OPEN-DATE-X REDEFINES it: offset 30, 8; area max(8, 8) = 8, next stays 38.
        // FILLER X(2) 38, unnamed XX 40.                    next 42
        // ZZZ,ZZ9.99- = 11 characters.                      next 53
        // $$$,$$9.99CR = 10 + CR (2) = 12.                  next 65
        // (the D debugging line is a comment)
        // BNQ-FLAGS X OCCURS 5: 1 × 5 = 5.                  next 70
        // BNQ-NOTE X(40).                                   next 110
        // BNQ-ADDRESS: X(20) + X(15) = 35 at 110.
        // BNQ-PO-BOX REDEFINES BNQ-ADDRESS at 110: 9(6) + X(15) + X(20) = 41 (110, 116, 131);
        //   the area is max(35, 41) = 41.                   next 151
        // X(3)9 = 4 characters.                             next 155
        // A(3) = 3.                                         next 158
        // 9(3)V9(2) PACKED-DECIMAL: 5 digits → 5/2+1 = 3.   next 161
        // BNQ-TOTALS USAGE COMP-3: S9(9)V99 = 11 digits → 6 each, 161 and 167 → 12. next 173
        // S9(3) COMP-3: 3/2+1 = 2.                          next 175
        // BNQ-DEPENDENTS: X(25) + 9(8) + X = 34 (175, 200, 208) × 12 = 408.   next 583
        let expected: Vec<(&str, u8, usize, usize, usize)> = vec![
            ("BNQ-CASE-RECORD", 1, 0, 583, 583),
            ("BNQ-KEY", 5, 0, 12, 12),
            ("BNQ-AGENCY-CODE", 10, 0, 3, 3),
            ("BNQ-CASE-NUMBER", 10, 3, 9, 9),
            ("BNQ-STATUS", 5, 12, 1, 1),
            ("BNQ-MONTHLY-AMOUNT", 5, 13, 5, 5),
            ("BNQ-ARREARS", 5, 18, 8, 8),
            ("BNQ-HOUSEHOLD-SIZE", 5, 26, 2, 2),
            ("BNQ-PRIORITY", 5, 28, 2, 2),
            ("BNQ-OPEN-DATE", 5, 30, 8, 8),
            ("BNQ-OPEN-YYYY", 10, 30, 4, 4),
            ("BNQ-OPEN-MM", 10, 34, 2, 2),
            ("BNQ-OPEN-DD", 10, 36, 2, 2),
            ("BNQ-OPEN-DATE-X", 5, 30, 8, 8),
            ("FILLER", 5, 38, 2, 2),
            ("FILLER", 5, 40, 2, 2),
            ("BNQ-PRINT-AMOUNT", 5, 42, 11, 11),
            ("BNQ-PRINT-BALANCE", 5, 53, 12, 12),
            ("BNQ-FLAGS", 5, 65, 1, 5),
            ("BNQ-NOTE", 5, 70, 40, 40),
            ("BNQ-ADDRESS", 5, 110, 35, 35),
            ("BNQ-STREET", 10, 110, 20, 20),
            ("BNQ-CITY", 10, 130, 15, 15),
            ("BNQ-PO-BOX", 5, 110, 41, 41),
            ("BNQ-BOX-NUMBER", 10, 110, 6, 6),
            ("BNQ-BOX-CITY", 10, 116, 15, 15),
            ("BNQ-BOX-EXTRA", 10, 131, 20, 20),
            ("BNQ-MIXED-CODE", 5, 151, 4, 4),
            ("BNQ-PAY-CODE", 5, 155, 3, 3),
            ("BNQ-RATE", 5, 158, 3, 3),
            ("BNQ-TOTALS", 5, 161, 12, 12),
            ("BNQ-TOTAL-PAID", 10, 161, 6, 6),
            ("BNQ-TOTAL-DUE", 10, 167, 6, 6),
            ("BNQ-DEPENDENT-COUNT", 5, 173, 2, 2),
            ("BNQ-DEPENDENTS", 5, 175, 34, 408),
            ("BNQ-DEP-NAME", 10, 175, 25, 25),
            ("BNQ-DEP-BIRTH", 10, 200, 8, 8),
            ("BNQ-DEP-RELATION", 10, 208, 1, 1),
        ];
        let actual = flatten(&record);
        let actual: Vec<(&str, u8, usize, usize, usize)> = actual
            .iter()
            .map(|(n, l, o, s, t)| (n.as_str(), *l, *o, *s, *t))
            .collect();
        assert_eq!(actual, expected);
        // Positions are those of the level numbers (sequence area and column 7 counted).
        assert_eq!(record.position, Position { line: 3, column: 8 });
        assert_eq!(
            find(&record, "BNQ-STATUS").position,
            Position {
                line: 8,
                column: 12
            }
        );
        assert_eq!(
            find(&record, "BNQ-DEP-RELATION").position,
            Position {
                line: 52,
                column: 16
            }
        );
    }

    #[test]
    fn benefit_case_pictures_usages_and_signs() {
        let record = benefit_case();
        let class = |name: &str| picture(find(&record, name)).class.clone();
        let usage = |name: &str| picture(find(&record, name)).usage;
        assert_eq!(class("BNQ-AGENCY-CODE"), PicClass::Alphanumeric { len: 3 });
        assert_eq!(
            class("BNQ-CASE-NUMBER"),
            PicClass::Numeric {
                digits: 9,
                scale: 0,
                sign: Sign::Unsigned
            }
        );
        assert_eq!(
            class("BNQ-MONTHLY-AMOUNT"),
            PicClass::Numeric {
                digits: 9,
                scale: 2,
                sign: Sign::Trailing
            }
        );
        assert_eq!(usage("BNQ-MONTHLY-AMOUNT"), Usage::Packed);
        assert_eq!(
            class("BNQ-ARREARS"),
            PicClass::Numeric {
                digits: 7,
                scale: 2,
                sign: Sign::LeadingSeparate
            }
        );
        assert_eq!(usage("BNQ-ARREARS"), Usage::Display);
        assert_eq!(usage("BNQ-HOUSEHOLD-SIZE"), Usage::Binary);
        assert_eq!(usage("BNQ-PRIORITY"), Usage::Binary);
        assert_eq!(class("BNQ-PRINT-AMOUNT"), PicClass::Edited { len: 11 });
        assert_eq!(class("BNQ-PRINT-BALANCE"), PicClass::Edited { len: 12 });
        assert_eq!(
            picture(find(&record, "BNQ-PRINT-BALANCE")).text,
            "$$$,$$9.99CR"
        );
        assert_eq!(class("BNQ-MIXED-CODE"), PicClass::Alphanumeric { len: 4 });
        assert_eq!(class("BNQ-PAY-CODE"), PicClass::Alphanumeric { len: 3 });
        // The word PACKED-DECIMAL is split over a continuation line.
        assert_eq!(usage("BNQ-RATE"), Usage::Packed);
        assert_eq!(
            class("BNQ-RATE"),
            PicClass::Numeric {
                digits: 5,
                scale: 2,
                sign: Sign::Unsigned
            }
        );
        // USAGE COMP-3 on the group BNQ-TOTALS applies to its fields.
        assert_eq!(usage("BNQ-TOTAL-PAID"), Usage::Packed);
        assert_eq!(usage("BNQ-TOTAL-DUE"), Usage::Packed);
        assert_eq!(
            class("BNQ-TOTAL-DUE"),
            PicClass::Numeric {
                digits: 11,
                scale: 2,
                sign: Sign::Trailing
            }
        );
        let key = find(&record, "BNQ-KEY");
        assert!(matches!(key.kind, ItemKind::Group(_)));
        assert!(
            !record
                .conditions
                .iter()
                .any(|c| c.name == "BNQ-DEBUG-TRACE")
        );
        assert!(
            flatten(&record)
                .iter()
                .all(|(n, ..)| n != "BNQ-DEBUG-TRACE"),
            "the D line is a comment"
        );
    }

    #[test]
    fn benefit_case_values_conditions_occurs_redefines() {
        let record = benefit_case();
        // 88 on a group item.
        let key = find(&record, "BNQ-KEY");
        assert_eq!(key.conditions.len(), 1);
        assert_eq!(key.conditions[0].name, "BNQ-NO-KEY");
        assert_eq!(
            key.conditions[0].values,
            vec![ConditionValue::Single(Literal::Spaces)]
        );

        let status = find(&record, "BNQ-STATUS");
        let names: Vec<&str> = status.conditions.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["BNQ-ACTIVE", "BNQ-CLOSED", "BNQ-PENDING"]);
        assert_eq!(
            status.conditions[0].values,
            vec![ConditionValue::Single(text("A"))]
        );
        assert_eq!(
            status.conditions[0].position,
            Position {
                line: 9,
                column: 16
            }
        );
        assert_eq!(
            status.conditions[1].values,
            vec![
                ConditionValue::Single(text("C")),
                ConditionValue::Single(text("X"))
            ]
        );
        assert_eq!(
            status.conditions[2].values,
            vec![
                ConditionValue::Range(text("P"), text("R")),
                ConditionValue::Single(text("W"))
            ]
        );
        let month = find(&record, "BNQ-OPEN-MM");
        assert_eq!(
            month.conditions[0].values,
            vec![ConditionValue::Range(
                Literal::Number(dec("1")),
                Literal::Number(dec("3"))
            )]
        );

        assert_eq!(
            find(&record, "BNQ-PRIORITY").value,
            Some(Literal::Number(dec("5")))
        );
        assert_eq!(
            find(&record, "BNQ-RATE").value,
            Some(Literal::Number(dec("12.5")))
        );
        assert_eq!(
            find(&record, "BNQ-TOTAL-DUE").value,
            Some(Literal::Number(dec("-1.25")))
        );
        assert_eq!(find(&record, "BNQ-PAY-CODE").value, Some(text("ABC")));
        // The literal on line 29 starts after the quote in column 53 and runs to column 72
        // inclusive: "CASE OPENED BY THE" is 18 characters, the 19th (column 72, stripped by
        // the editor) is a space; the continuation line adds "INTAKE UNIT".
        assert_eq!(
            find(&record, "BNQ-NOTE").value,
            Some(text("CASE OPENED BY THE INTAKE UNIT"))
        );
        let fillers: Vec<&Item> = match &record.kind {
            ItemKind::Group(children) => children.iter().filter(|c| c.name.is_none()).collect(),
            ItemKind::Field(_) => Vec::new(),
        };
        assert_eq!(fillers.len(), 2);
        assert_eq!(fillers[0].value, Some(Literal::Spaces));
        assert_eq!(fillers[1].value, None);

        assert_eq!(
            find(&record, "BNQ-FLAGS").occurs,
            Some(Occurs {
                min: 5,
                max: 5,
                depending_on: None
            })
        );
        assert_eq!(
            find(&record, "BNQ-DEPENDENTS").occurs,
            Some(Occurs {
                min: 0,
                max: 12,
                depending_on: Some("BNQ-DEPENDENT-COUNT".to_string())
            })
        );
        assert_eq!(
            find(&record, "BNQ-OPEN-DATE-X").redefines.as_deref(),
            Some("BNQ-OPEN-DATE")
        );
        assert_eq!(
            find(&record, "BNQ-PO-BOX").redefines.as_deref(),
            Some("BNQ-ADDRESS")
        );
        assert_eq!(find(&record, "BNQ-ADDRESS").redefines, None);
    }

    #[test]
    fn load_reads_the_fixture_and_reports_io_errors_at_1_1() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/copybooks/BENEFIT-CASE.cpy");
        let copybook = Copybook::load(&path).expect("fixture loads");
        assert_eq!(copybook.records[0].total_size(), 583);

        let missing =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/copybooks/NOPE.cpy");
        let e = Copybook::load(&missing).expect_err("missing file");
        assert_error(&e, 1, 1, "cannot read the copybook");
        assert!(
            e.to_string()
                .starts_with(&format!("{}:1:1: ", missing.display()))
        );
    }

    #[test]
    fn load_reads_latin1_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("LATIN.cpy");
        let mut bytes = b"      * R\xC9SUM\xC9 \xA7 4\n       01  R.\n".to_vec();
        bytes.extend_from_slice(b"           05  A PIC X(2) VALUE '\xC9T'.\n");
        std::fs::write(&path, bytes).expect("write");
        let copybook = Copybook::load(&path).expect("latin-1 loads");
        assert_eq!(copybook.records[0].size, 2);
        assert_eq!(find(&copybook.records[0], "A").value, Some(text("ÉT")));
    }

    #[test]
    fn implicit_record_is_named_after_the_file_stem() {
        let copybook = Copybook::parse(
            "copybooks/BENEFIT-CASE.cpy",
            &src(&[
                "05  A PIC X(3).",
                "05  B.",
                "    10  C PIC 9(2).",
                "05  D PIC X.",
            ]),
        )
        .expect("parses");
        let record = copybook
            .record(Some("benefit-case"))
            .expect("named after the stem");
        assert_eq!(record.level, 1);
        assert_eq!(record.position, Position { line: 1, column: 1 });
        // A 0+3, B 3 (C 3+2), D 5+1 → 6.
        let rows: Vec<_> = flatten(record)
            .into_iter()
            .map(|(n, _, o, s, _)| (n, o, s))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("BENEFIT-CASE".to_string(), 0, 6),
                ("A".to_string(), 0, 3),
                ("B".to_string(), 3, 2),
                ("C".to_string(), 3, 2),
                ("D".to_string(), 5, 1),
            ]
        );
    }

    #[test]
    fn clauses_that_do_not_change_the_layout_and_group_sign() {
        let record = parse(&[
            "1  rec is external.",
            "   5  grp sign trailing separate.",
            "      10 amt pic s9(3)v9 .",
            "      10 cnt pic s9(2) sign is leading.",
            "      10 plain pic 9(2).",
            "   EJECT",
            "   5  nm picture is x(10) justified right value all '*'.",
            "   5  amt-ed pic zz9.99",
            "      SKIP2",
            "      blank when zero.",
            "   5  bin pic s9(9) usage is comp-5 synchronized left.",
            "   5  hv pic x(2) value is high-values.",
            "   5  lv pic x(2) value low-value.",
            "   5  q pic x value quote.",
            "   5  z pic 9(3) value zeros global.",
            "   5  d pic s9(3) usage display value -12.",
        ])
        .records
        .remove(0);
        // grp: s9(3)v9 trailing separate 4+1 = 5, s9(2) leading 2, 9(2) 2 → 9 at 0.
        // nm 9/10, amt-ed zz9.99 = 6 at 19, bin 9 digits → 4 at 25 (SYNC adds no slack),
        // hv 29/2, lv 31/2, q 33/1, z 34/3, d 37/3 → 40.
        let rows: Vec<_> = flatten(&record)
            .into_iter()
            .map(|(n, _, o, s, _)| (n, o, s))
            .collect();
        let expected = [
            ("REC", 0, 40),
            ("GRP", 0, 9),
            ("AMT", 0, 5),
            ("CNT", 5, 2),
            ("PLAIN", 7, 2),
            ("NM", 9, 10),
            ("AMT-ED", 19, 6),
            ("BIN", 25, 4),
            ("HV", 29, 2),
            ("LV", 31, 2),
            ("Q", 33, 1),
            ("Z", 34, 3),
            ("D", 37, 3),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(n, o, s)| (n.to_string(), *o, *s))
            .collect();
        assert_eq!(rows, expected);
        let sign = |name: &str| match picture(find(&record, name)).class {
            PicClass::Numeric { sign, .. } => sign,
            _ => panic!("{name} is not numeric"),
        };
        assert_eq!(sign("AMT"), Sign::TrailingSeparate);
        assert_eq!(
            sign("CNT"),
            Sign::Leading,
            "the item's own SIGN wins over the group's"
        );
        assert_eq!(sign("PLAIN"), Sign::Unsigned);
        assert_eq!(picture(find(&record, "BIN")).usage, Usage::NativeBinary);
        assert_eq!(picture(find(&record, "AMT")).text, "s9(3)v9");
        assert_eq!(find(&record, "NM").value, Some(text("*")));
        assert_eq!(find(&record, "HV").value, Some(Literal::HighValues));
        assert_eq!(find(&record, "LV").value, Some(Literal::LowValues));
        assert_eq!(find(&record, "Q").value, Some(text("\"")));
        assert_eq!(find(&record, "Z").value, Some(Literal::Zeros));
        assert_eq!(find(&record, "D").value, Some(Literal::Number(dec("-12"))));
    }

    #[test]
    fn usage_sizes() {
        let record = parse(&[
            "01  R.",
            "    05  B1 PIC 9 COMP.",
            "    05  B4 PIC S9(4) COMP-4.",
            "    05  B5 PIC 9(5) BINARY.",
            "    05  B9 PIC S9(9) COMPUTATIONAL.",
            "    05  B10 PIC 9(10) COMP-5.",
            "    05  B18 PIC S9(16)V99 COMP.",
            "    05  P1 PIC 9 COMP-3.",
            "    05  P2 PIC S99 COMPUTATIONAL-3.",
            "    05  P4 PIC S9(4) PACKED-DECIMAL.",
            "    05  D3 PIC S9(3) SIGN TRAILING SEPARATE.",
            "    05  D28 PIC S9(20)V9(8).",
        ])
        .records
        .remove(0);
        // Binary: 1-4 digits → 2, 5-9 → 4, 10-18 → 8. Packed: digits/2+1: 1 → 1, 2 → 2,
        // 4 → 3. Display: S9(3) separate 3+1 = 4; 28 digits → 28.
        let sizes: Vec<_> = flatten(&record)
            .into_iter()
            .skip(1)
            .map(|(n, _, _, s, _)| (n, s))
            .collect();
        let expected = [
            ("B1", 2),
            ("B4", 2),
            ("B5", 4),
            ("B9", 4),
            ("B10", 8),
            ("B18", 8),
            ("P1", 1),
            ("P2", 2),
            ("P4", 3),
            ("D3", 4),
            ("D28", 28),
        ];
        let expected: Vec<_> = expected.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        assert_eq!(sizes, expected);
        assert_eq!(record.size, 2 + 2 + 4 + 4 + 8 + 8 + 1 + 2 + 3 + 4 + 28);
        let usage_of = |name: &str| match &record.kind {
            ItemKind::Group(children) => children
                .iter()
                .find(|c| c.name.as_deref() == Some(name))
                .and_then(|c| match &c.kind {
                    ItemKind::Field(picture) => Some(picture.usage),
                    ItemKind::Group(_) => None,
                }),
            ItemKind::Field(_) => None,
        };
        assert_eq!(usage_of("B9"), Some(Usage::Binary));
        assert_eq!(usage_of("B10"), Some(Usage::NativeBinary));
    }

    #[test]
    fn picture_forms() {
        let pos = Position { line: 1, column: 1 };
        let ok = |pic: &str| match parse_picture("P", pic, pos) {
            Ok(Shape::Alphanumeric(n)) => format!("X{n}"),
            Ok(Shape::Edited(n)) => format!("E{n}"),
            Ok(Shape::Numeric {
                digits,
                scale,
                signed,
            }) => {
                format!("{}9:{digits}.{scale}", if signed { "S" } else { "" })
            }
            Err(e) => panic!("{pic}: {e}"),
        };
        let cases = [
            ("X(10)", "X10"),
            ("XX", "X2"),
            ("A(3)", "X3"),
            ("x(003)", "X3"),
            ("X(3)9", "X4"),
            ("9(5)", "9:5.0"),
            ("S9(7)V99", "S9:9.2"),
            ("9(3)V9(2)", "9:5.2"),
            ("SV9(4)", "S9:4.4"),
            ("99V", "9:2.0"),
            ("ZZZ,ZZ9.99", "E10"),
            ("-9(5)", "E6"),
            ("$$$9.99", "E7"),
            ("9(5)CR", "E7"),
            ("ZZ9DB", "E5"),
            ("+ZZ9", "E4"),
            ("***9.99", "E7"),
            ("Z(4)9V99", "E7"),
            ("99/99/9999", "E10"),
            ("999B999", "E7"),
            ("9990", "E4"),
            ("XXBXX", "E5"),
            ("X(2)/X(2)0", "E6"),
        ];
        for (pic, want) in cases {
            assert_eq!(ok(pic), want, "PIC {pic}");
        }
        let bad = [
            ("9(3)P", "P scaling is not supported"),
            ("PP99", "P scaling is not supported"),
            ("9S9", "S may appear only once"),
            ("9V9V9", "V may appear only once"),
            ("X(0)", "at least 1"),
            ("X(3", "not closed"),
            ("X()", "positive integer"),
            ("(3)X", "must follow a picture symbol"),
            ("SX(3)", "cannot be used with A or X"),
            ("X,XX", "numeric editing symbol"),
            ("CRZZ9", "must be the last symbol"),
            ("ZZ9V.99", "V and `.`"),
            ("S9(29)", "28-digit limit"),
            ("9(14)9(15)", "28-digit limit"),
            ("9.9E+99", "floating-point"),
            ("N(5)", "national"),
            ("SZZ9", "numeric-edited"),
            ("S", "at least one 9"),
            ("9(9999999999)", "too large"),
            ("Q", "not a picture symbol"),
            ("SS9", "S may appear only once"),
            ("VV9", "V may appear only once"),
        ];
        for (pic, phrase) in bad {
            match parse_picture("P", pic, pos) {
                Ok(_) => panic!("PIC {pic} should fail"),
                Err(e) => assert!(e.message.contains(phrase), "PIC {pic}: {}", e.message),
            }
        }
    }

    #[test]
    fn literal_continuation_with_explicit_spaces_doubled_quotes_and_comment_between() {
        // Line 2: the quote is in column 34 (index 33 of the line); the literal runs from
        // column 35 to 72 inclusive = 38 characters: "IT''S A LONG" is 12 of them (11 once
        // the doubled quote is decoded), then 26 spaces written out; columns 73-80 are junk.
        let line2 = format!(
            "{:<72}{}",
            "           05  A PIC X(60) VALUE 'IT''S A LONG", "JUNK'XYZ"
        );
        assert_eq!(line2.find('\''), Some(33));
        let text = [
            "       01  R.".to_string(),
            line2,
            "      * a comment line between a continued line and its continuation".to_string(),
            String::new(),
            "      -    'ONE'.".to_string(),
        ]
        .join("\n");
        let copybook = Copybook::parse("T.cpy", &text).expect("parses");
        let a = find(&copybook.records[0], "A");
        let expected = format!("IT'S A LONG{}ONE", " ".repeat(26));
        assert_eq!(expected.len(), 11 + 26 + 3);
        assert_eq!(a.value, Some(text_literal(&expected)));
    }

    fn text_literal(s: &str) -> Literal {
        Literal::Text(s.to_string())
    }

    #[test]
    fn literal_continued_over_several_lines() {
        // The continued lines are short: each literal part is padded with spaces to column 72.
        let text = [
            "       01  R.",
            "       05 A PIC X(150) VALUE 'AB",
            "      -    'CD",
            "      -    'EF\".",
        ]
        .join("\n");
        // The last part has no closing apostrophe: the literal (opened on line 2, column 30)
        // is still open at the end of the copybook.
        let e = Copybook::parse("T.cpy", &text).expect_err("the literal is not closed");
        assert_error(&e, 2, 30, "not terminated");
        let text = text.replace("EF\".", "EF'.");
        let copybook = Copybook::parse("T.cpy", &text).expect("parses");
        // Line 2: quote in column 30, content columns 31-72 = 42 chars: "AB" + 40 spaces.
        // Line 3: quote in column 12, content columns 13-72 = 60 chars: "CD" + 58 spaces.
        let expected = format!("AB{}CD{}EF", " ".repeat(40), " ".repeat(58));
        assert_eq!(
            find(&copybook.records[0], "A").value,
            Some(text_literal(&expected))
        );
        // A continuation line that starts a literal although none is open.
        let text = "       01  R.\n       05 A PIC X(9) VALUE\n      -    'AB'.\n";
        let e = Copybook::parse("T.cpy", text).expect_err("nothing to continue");
        assert_error(&e, 3, 12, "does not end inside a literal");
    }

    #[test]
    fn tabs_expand_to_multiples_of_eight() {
        // "000100" fills columns 1-6; the tab moves to column 9, so column 7 is blank and the
        // text starts in column 9.
        let text = "000100\t01  R.\n000200\t    05  A  PIC X  FOO.\n";
        let e = Copybook::parse("T.cpy", text).expect_err("FOO is unknown");
        // FOO: column 9 + index 18 in "    05  A  PIC X  FOO." = 27.
        assert_error(&e, 2, 27, "unknown clause `FOO`");
        let copybook = Copybook::parse("T.cpy", "\t01 R.\n\t\t05 A PIC X(2).\n").expect("parses");
        assert_eq!(
            copybook.records[0].position,
            Position { line: 1, column: 9 }
        );
        assert_eq!(
            find(&copybook.records[0], "A").position,
            Position {
                line: 2,
                column: 17
            }
        );
    }

    #[test]
    fn sequence_area_and_columns_after_72_are_ignored() {
        let text = [
            format!("{:<72}{}", "ABCDEF 01  R.", "99999999"),
            format!(
                "{:<72}{}",
                "12.'4\" 05  A PIC X(4)    VALUE 'ABCD'.", "'\"'\"*>."
            ),
            "999999".to_string(),
            String::new(),
            "   ".to_string(),
            "      *> just a comment".to_string(),
            "       05  B PIC 9(2).  *> an inline comment 'with quote".to_string(),
            format!("{:<72}{}", "       05  C PIC X(3).", "PIC X(99)."),
        ]
        .join("\r\n");
        let copybook = Copybook::parse("T.cpy", &text).expect("parses");
        let record = &copybook.records[0];
        assert_eq!(find(record, "A").value, Some(text_literal("ABCD")));
        // A 0/4, B 4/2, C 6/3 → 9.
        assert_eq!(find(record, "B").offset, 4);
        assert_eq!((find(record, "C").offset, find(record, "C").size), (6, 3));
        assert_eq!(record.size, 9);
    }

    #[test]
    fn multiple_records_and_record_level_redefines() {
        let copybook = parse(&[
            "01  REQUEST.",
            "    05  REQ-ID PIC X(8).",
            "01  REPLY REDEFINES REQUEST.",
            "    05  REP-ID PIC X(8).",
            "    05  REP-CODE PIC 9(4).",
            "01  OTHER.",
            "    05  O PIC X.",
        ]);
        assert_eq!(copybook.records.len(), 3);
        assert!(copybook.record(None).is_none(), "no single record");
        let reply = copybook.record(Some("reply")).expect("REPLY");
        assert_eq!((reply.offset, reply.size), (0, 12));
        assert_eq!(reply.redefines.as_deref(), Some("REQUEST"));
        assert_eq!(copybook.record(Some("OTHER")).map(|r| r.size), Some(1));
    }

    #[test]
    fn several_redefinitions_of_one_area() {
        let record = parse(&[
            "01  R.",
            "    05  A PIC X(4).",
            "    05  B REDEFINES A PIC 9(6).",
            "    05  C REDEFINES A PIC X(2).",
            "    05  D REDEFINES B PIC X(3).",
            "    05  E PIC X.",
        ])
        .records
        .remove(0);
        // A, B, C, D share offset 0; the area is max(4, 6, 2, 3) = 6, so E is at 6.
        let rows: Vec<_> = flatten(&record)
            .into_iter()
            .map(|(n, _, o, s, _)| (n, o, s))
            .collect();
        let expected = [
            ("R", 0, 7),
            ("A", 0, 4),
            ("B", 0, 6),
            ("C", 0, 2),
            ("D", 0, 3),
            ("E", 6, 1),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(n, o, s)| (n.to_string(), *o, *s))
            .collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn nested_tables_and_odo_without_minimum() {
        let record = parse(&[
            "01  R.",
            "    05  N PIC 9(2).",
            "    05  T OCCURS 3.",
            "        10  U PIC X(2) OCCURS 4 TIMES.",
            "        10  V PIC 9.",
            "    05  W PIC X OCCURS 10 DEPENDING N.",
            "    05  AFTER PIC X.",
        ])
        .records
        .remove(0);
        // T: U 2×4 = 8 + V 1 = 9, ×3 = 27 at 2; W at 29, 1×10; AFTER at 39 → 40.
        let rows: Vec<_> = flatten(&record)
            .into_iter()
            .map(|(n, _, o, s, t)| (n, o, s, t))
            .collect();
        let expected = [
            ("R", 0, 40, 40),
            ("N", 0, 2, 2),
            ("T", 2, 9, 27),
            ("U", 2, 2, 8),
            ("V", 10, 1, 1),
            ("W", 29, 1, 10),
            ("AFTER", 39, 1, 1),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(n, o, s, t)| (n.to_string(), *o, *s, *t))
            .collect();
        assert_eq!(rows, expected);
        assert_eq!(
            find(&record, "W").occurs,
            Some(Occurs {
                min: 1,
                max: 10,
                depending_on: Some("N".to_string())
            })
        );
    }

    #[test]
    fn deep_nesting_of_49_levels() {
        let mut lines: Vec<String> = (1..49).map(|l| format!("{l:02} G{l}.")).collect();
        lines.push("49 LEAF PIC X(3).".to_string());
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let record = parse(&refs).records.remove(0);
        let mut depth = 0;
        let mut item = &record;
        while let ItemKind::Group(children) = &item.kind {
            assert_eq!(item.size, 3);
            item = &children[0];
            depth += 1;
        }
        assert_eq!(depth, 48);
        assert_eq!(
            (item.level, item.display_name(), item.size),
            (49, "LEAF", 3)
        );
    }

    #[test]
    fn ten_thousand_lines() {
        let mut lines = vec!["01  BIG.".to_string()];
        for i in 0..9_999 {
            lines.push(format!("    05  F{i} PIC X(2)."));
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let record = parse(&refs).records.remove(0);
        assert_eq!(record.size, 2 * 9_999);
        assert_eq!(find(&record, "F9998").offset, 2 * 9_998);
    }

    /// A small deterministic generator (no new dependencies) for the no-panic tests.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next()).unwrap_or(0) % n.max(1)
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut rng = Lcg(42);
        for _ in 0..200 {
            let len = rng.below(4_000);
            let bytes: Vec<u8> = (0..len).map(|_| (rng.next() & 0xFF) as u8).collect();
            let _ = Copybook::parse("G.cpy", &String::from_utf8_lossy(&bytes));
        }
        // Very long lines, in the text area and after it.
        let long = format!(
            "       01  R.\n       05  A PIC X({}).\n{}",
            "9".repeat(200_000),
            "X".repeat(1_000_000)
        );
        let _ = Copybook::parse("G.cpy", &long);
        let long_word = format!(
            "       01  R.\n       05  A PIC X.\n{}",
            "      -    A\n".repeat(50_000)
        );
        let _ = Copybook::parse("G.cpy", &long_word);
        // Every prefix of the fixture (truncated entries, literals, continuations).
        let chars: Vec<char> = BENEFIT_CASE.chars().collect();
        for end in (0..chars.len()).step_by(7) {
            let prefix: String = chars.iter().take(end).collect();
            let _ = Copybook::parse("G.cpy", &prefix);
        }
        // Random soups of COBOL words and punctuation in fixed format.
        let vocabulary = [
            "01",
            "05",
            "10",
            "88",
            "66",
            "77",
            "1",
            "49",
            "50",
            "PIC",
            "X(3)",
            "S9(5)V99",
            "9(40)",
            "COMP-3",
            "COMP",
            "VALUE",
            "VALUES",
            "'A'",
            "'B",
            "THRU",
            "OCCURS",
            "3",
            "0",
            "TO",
            "DEPENDING",
            "ON",
            "A",
            "B",
            "REDEFINES",
            "SIGN",
            "LEADING",
            "SEPARATE",
            "INDEXED",
            "BY",
            "ASCENDING",
            "KEY",
            ".",
            ",",
            "ALL",
            "SPACES",
            "ZERO",
            "-1.5",
            "FILLER",
            "USAGE",
            "IS",
            "ZZ9.99",
            "X(999999999)",
            "9(999999999)",
            "*>",
            "\"Q\"",
            "X'C1'",
            "COPY",
            "BLANK",
            "WHEN",
            "SYNC",
            "JUST",
            "X(0)",
            "(",
            ")",
            "9(",
            "+",
            "P",
        ];
        for _ in 0..3_000 {
            let mut text = String::new();
            for _ in 0..rng.below(12) {
                let indicator = [" ", " ", " ", "-", "*", "D", "/"][rng.below(7)];
                let words: Vec<&str> = (0..rng.below(10))
                    .map(|_| vocabulary[rng.below(vocabulary.len())])
                    .collect();
                text.push_str(&format!("000000{indicator}    {}\n", words.join(" ")));
            }
            let _ = Copybook::parse("G.cpy", &text);
        }
    }

    #[test]
    fn huge_tables_are_refused_not_overflowed() {
        let e = fails(&[
            "01  R.",
            "    05  T OCCURS 999999999.",
            "        10  U PIC X(999999999) OCCURS 999999999.",
        ]);
        assert_error(&e, 3, 16, "byte limit");
    }

    #[test]
    fn layout_table_rows() {
        let record = benefit_case();
        let copybook = Copybook {
            records: vec![record.clone()],
        };
        let table = copybook.layout_table(&record);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("Record BNQ-CASE-RECORD: 583 bytes."),
            "{}",
            lines[0]
        );
        let normalized: Vec<String> = lines
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        let expect_rows = [
            "LEVEL NAME PICTURE USAGE OFFSET LENGTH OCCURS REDEFINES",
            "01 BNQ-CASE-RECORD (group) 0 583",
            "05 BNQ-KEY (group) 0 12",
            "88 BNQ-NO-KEY VALUE SPACES",
            "10 BNQ-CASE-NUMBER 9(9) DISPLAY 3 9",
            "88 BNQ-PENDING VALUE 'P' THRU 'R', 'W'",
            "05 BNQ-MONTHLY-AMOUNT S9(7)V99 COMP-3 13 5",
            "05 BNQ-ARREARS S9(5)V99 DISPLAY SIGN LEADING SEPARATE 18 8",
            "05 BNQ-HOUSEHOLD-SIZE 9(4) COMP 26 2",
            "05 BNQ-OPEN-DATE-X X(8) DISPLAY 30 8 BNQ-OPEN-DATE",
            "05 FILLER X(2) DISPLAY 38 2",
            "05 BNQ-FLAGS X DISPLAY 65 1 5 TIMES",
            "05 BNQ-PO-BOX (group) 110 41 BNQ-ADDRESS",
            "10 BNQ-BOX-EXTRA X(20) DISPLAY 131 20",
            "10 BNQ-TOTAL-DUE S9(9)V99 COMP-3 167 6",
            "05 BNQ-DEPENDENTS (group) 175 34 0 TO 12 DEPENDING ON BNQ-DEPENDENT-COUNT",
            "10 BNQ-DEP-RELATION X DISPLAY 208 1",
        ];
        for row in expect_rows {
            assert!(
                normalized.iter().any(|l| l == row),
                "no row `{row}` in\n{table}"
            );
        }
        // One line per item and per condition, plus the title and the header.
        let items = flatten(&record).len();
        assert_eq!(lines.len(), 2 + items + 5);
        // Indentation by depth and right-aligned numbers under the OFFSET header.
        let header = lines[1];
        let offset_end = header
            .find("OFFSET")
            .map(|i| i + "OFFSET".len())
            .expect("OFFSET");
        let dep = lines
            .iter()
            .find(|l| l.contains("BNQ-DEP-RELATION"))
            .expect("row");
        assert!(dep.starts_with("    10 BNQ-DEP-RELATION"), "{dep}");
        assert_eq!(dep.get(offset_end - 3..offset_end), Some("208"), "{table}");
        let top = lines
            .iter()
            .find(|l| l.contains("BNQ-CASE-RECORD ("))
            .copied();
        assert!(top.is_none(), "names and pictures are separate columns");
    }

    #[test]
    fn error_display_is_path_line_column_message() {
        let e = fails(&["01  R.", "    05  A  PIC X  FOO."]);
        assert_eq!(
            e.to_string(),
            "TEST.cpy:2:26: unknown clause `FOO` in the entry for A"
        );
    }

    #[test]
    fn errors_in_entries() {
        let cases: Vec<(Vec<&str>, usize, usize, &str)> = vec![
            (
                vec!["01  R.", "    05  A  PIC X  FOO."],
                2,
                26,
                "unknown clause `FOO`",
            ),
            (
                vec!["01  R.", "    05  A  PIC X(5)"],
                2,
                23,
                "missing period",
            ),
            (
                vec!["01  R.", "    05  A  PIC X", "    05  B  PIC X."],
                3,
                12,
                "missing period before level number 05",
            ),
            (
                vec!["01  R.", "    05  A  PIC X  PIC 9."],
                2,
                26,
                "duplicate PICTURE clause",
            ),
            (
                vec!["01  R.", "    05  A PIC S9 COMP BINARY."],
                2,
                30,
                "duplicate USAGE clause",
            ),
            (
                vec!["01  R OCCURS 3.", "    05  A PIC X."],
                1,
                14,
                "OCCURS cannot be used at level 01",
            ),
            (
                vec!["01  R.", "    05  A PIC X OCCURS 0."],
                2,
                31,
                "at least one occurrence",
            ),
            (
                vec![
                    "01  R.",
                    "    05  N PIC 9.",
                    "    05  A PIC X OCCURS 5 TO 3 DEPENDING ON N.",
                ],
                3,
                31,
                "minimum 5 is greater than the maximum 3",
            ),
            (
                vec![
                    "01  R.",
                    "    05  N PIC 9.",
                    "    05  A PIC X OCCURS 0 TO 0 DEPENDING ON N.",
                ],
                3,
                36,
                "maximum must be at least 1",
            ),
            (
                vec!["01  R.", "    05  A PIC X OCCURS 1 TO 3."],
                2,
                24,
                "needs DEPENDING ON",
            ),
            (
                vec!["01  R.", "    05  A PIC X OCCURS MANY."],
                2,
                31,
                "unsigned integer",
            ),
            (
                vec!["01  R.", "    05  A PIC X OCCURS 3 INDEXED BY."],
                2,
                33,
                "INDEXED needs at least one name",
            ),
            (
                vec!["01  R.", "    05  A PIC X(5) VALUE 'ABC."],
                2,
                33,
                "not terminated",
            ),
            (
                vec!["01  R.", "    05  A PIC X VALUE X'C1'."],
                2,
                30,
                "literals are not supported",
            ),
            (
                vec!["01  R.", "    05  -AB PIC X."],
                2,
                16,
                "not a valid data name",
            ),
            (
                vec!["01  R.", "    05  A_B PIC X."],
                2,
                16,
                "letters, digits and hyphens",
            ),
            (
                vec!["01  R.", "    05  AB- PIC X."],
                2,
                16,
                "start or end with a hyphen",
            ),
            (
                vec!["01  R.", "    05  123 PIC X."],
                2,
                16,
                "at least one letter",
            ),
            (
                vec![
                    "01  R.",
                    "    05  G.",
                    "        10  A PIC X.",
                    "      07  B PIC X.",
                ],
                4,
                14,
                "level 07 does not match any enclosing level",
            ),
            (
                vec!["01  R.", "    05  G PIC X(4).", "        10  A PIC X."],
                2,
                22,
                "cannot have a PICTURE clause",
            ),
            (
                vec!["01  R.", "    05  A."],
                2,
                12,
                "no PICTURE clause and no subordinate items",
            ),
            (
                vec!["01  R."],
                1,
                8,
                "no PICTURE clause and no subordinate items",
            ),
            (
                vec!["01  R.", "    05  A PIC 9(3)PP."],
                2,
                22,
                "P scaling is not supported",
            ),
            (
                vec!["01  R.", "    05  A PIC S9(29)."],
                2,
                22,
                "28-digit limit",
            ),
            (vec!["01  R.", "    05  A COMP-1."], 2, 18, "floating point"),
            (
                vec!["01  R.", "    05  A USAGE IS COMP-2."],
                2,
                27,
                "floating point",
            ),
            (
                vec!["01  R.", "    05  A USAGE POINTER."],
                2,
                24,
                "not supported",
            ),
            (
                vec!["01  R.", "    05  A USAGE NATIONAL PIC N(3)."],
                2,
                24,
                "not supported",
            ),
            (
                vec!["01  R.", "    COPY BNQCASE."],
                2,
                12,
                "COPY statements are not supported",
            ),
            (
                vec!["01  R.", "    05  A PIC X.", "66  B RENAMES A."],
                3,
                8,
                "level 66 (RENAMES) is not supported",
            ),
            (
                vec!["77  A PIC X."],
                1,
                8,
                "level 77 items are not supported",
            ),
            (
                vec!["01  R.", "    50  A PIC X."],
                2,
                12,
                "level number 50 is not valid",
            ),
            (
                vec!["01  R.", "    005  A PIC X."],
                2,
                12,
                "more than two digits",
            ),
            (vec!["R PIC X."], 1, 8, "expected a level number"),
            (
                vec!["01  R.", "    05  A PIC 9(19) COMP."],
                2,
                22,
                "at most 18 digits",
            ),
            (
                vec!["01  R.", "    05  A PIC 9(3) SIGN LEADING."],
                2,
                27,
                "needs a signed picture",
            ),
            (
                vec!["01  R.", "    05  A PIC S9(3) COMP-3 SIGN LEADING."],
                2,
                35,
                "only to USAGE DISPLAY",
            ),
            (
                vec!["01  R.", "    05  A PIC X(3) SIGN LEADING."],
                2,
                27,
                "needs a signed numeric picture",
            ),
            (
                vec![
                    "01  R.",
                    "    05  G COMP-3.",
                    "        10  A PIC S9(3) COMP.",
                ],
                3,
                32,
                "contradicts USAGE COMP-3",
            ),
            (
                vec!["01  R.", "    05  G COMP-3.", "        10  A PIC X(3)."],
                3,
                26,
                "from group G",
            ),
            (
                vec!["01  R.", "    05  A PIC X(4) COMP."],
                2,
                27,
                "needs a numeric picture",
            ),
            (vec!["01  R.", "    05  A RENAMES B."], 2, 18, "RENAMES"),
            (
                vec!["01  R.", "    05  A PIC."],
                2,
                18,
                "PICTURE needs a character string",
            ),
            (
                vec!["01  R.", "    05  A PIC X 'B'."],
                2,
                24,
                "unexpected literal",
            ),
            (
                vec!["01  R.", "    05  A PIC X JUSTIFIED JUST."],
                2,
                34,
                "duplicate JUSTIFIED",
            ),
            (
                vec!["01  R.", "    05  A PIC 9 BLANK WHEN NOW."],
                2,
                24,
                "BLANK WHEN ZERO",
            ),
            (
                vec!["01  R.", "    05  A PIC X OCCURS 2 DEPENDING ON N OF G."],
                2,
                48,
                "qualified names",
            ),
        ];
        check_cases(&cases);
    }

    #[test]
    fn errors_in_values() {
        let cases: Vec<(Vec<&str>, usize, usize, &str)> = vec![
            (
                vec!["01  R.", "    05  A PIC 9(3) VALUE 'ABC'."],
                2,
                33,
                "does not fit numeric field A",
            ),
            (
                vec!["01  R.", "    05  A PIC 9(3) VALUE SPACES."],
                2,
                33,
                "does not fit numeric field A",
            ),
            (
                vec!["01  R.", "    05  A PIC X(2) VALUE 'ABC'."],
                2,
                33,
                "3 characters long",
            ),
            (
                vec!["01  R.", "    05  A PIC X(2) VALUE 12."],
                2,
                33,
                "numeric literal 12 for alphanumeric field",
            ),
            (
                vec!["01  R.", "    05  A PIC 9V9 VALUE 1.25."],
                2,
                32,
                "2 decimal places",
            ),
            (
                vec!["01  R.", "    05  A PIC 9(2) VALUE 123."],
                2,
                33,
                "3 integer digits",
            ),
            (
                vec!["01  R.", "    05  A PIC 9(2) VALUE -1."],
                2,
                33,
                "negative",
            ),
            (
                vec!["01  R.", "    05  A PIC 9(2) VALUE 1-2."],
                2,
                33,
                "not a valid numeric literal",
            ),
            (
                vec!["01  R.", "    05  A PIC 9(2) VALUE BANANA."],
                2,
                33,
                "expected a literal",
            ),
            (
                vec!["01  R.", "    05  A PIC 9(2) VALUE."],
                2,
                32,
                "expected a literal before the period",
            ),
            (vec!["01  R.", "    05  A PIC X VALUE NULL."], 2, 30, "NULL"),
            (
                vec!["01  R.", "    05  A PIC X VALUE ALL."],
                2,
                30,
                "ALL needs",
            ),
            (
                vec!["01  R.", "    05  A PIC X.", "        88  A-ON VALUE 1."],
                3,
                31,
                "numeric literal 1 for alphanumeric field",
            ),
            (
                vec![
                    "01  R.",
                    "    05  A PIC 9.",
                    "        88  A-ON VALUE 1 THRU 'Z'.",
                ],
                3,
                38,
                "does not fit numeric field A",
            ),
            (
                vec![
                    "01  R.",
                    "    05  G.",
                    "        88  G-ON VALUE 7.",
                    "        10  A PIC X.",
                ],
                3,
                31,
                "group item G",
            ),
            (
                vec![
                    "01  R.",
                    "    05  G.",
                    "        88  G-ON VALUE 'ABC'.",
                    "        10  A PIC XX.",
                ],
                3,
                31,
                "3 characters long, but group G holds 2",
            ),
            (
                vec![
                    "01  R.",
                    "    05  G VALUE SPACES.",
                    "        10  A PIC XX VALUE 'A'.",
                ],
                3,
                35,
                "enclosing group G has one",
            ),
            (
                vec!["88  FLAG VALUE 'Y'."],
                1,
                8,
                "has no data item before it",
            ),
            (
                vec!["01  R.", "    05  A PIC X.", "        88  VALUE 'Y'."],
                3,
                16,
                "needs a condition name",
            ),
            (
                vec!["01  R.", "    05  A PIC X.", "        88  A-ON PIC X."],
                3,
                25,
                "needs a VALUE clause",
            ),
            (
                vec![
                    "01  R.",
                    "    05  A PIC X.",
                    "        88  A-ON VALUE 'Y' GLOBAL.",
                ],
                3,
                35,
                "only VALUE",
            ),
            (
                vec![
                    "01  R.",
                    "    05  A PIC 9.",
                    "        88  A-ON VALUE 1",
                    "    05  B PIC X.",
                ],
                4,
                12,
                "missing period before level number 05",
            ),
            (
                vec!["01  R.", "    05  A PIC 9(40) VALUE 1."],
                2,
                22,
                "28-digit limit",
            ),
            (
                vec![
                    "01  R.",
                    "    05  A PIC 9(9) VALUE 12345678901234567890123456789.",
                ],
                2,
                33,
                "more than 28 significant digits",
            ),
        ];
        check_cases(&cases);
    }

    #[test]
    fn errors_in_redefines_and_depending_on() {
        let cases: Vec<(Vec<&str>, usize, usize, &str)> = vec![
            (
                vec!["01  R.", "    05  A PIC X.", "    05  B REDEFINES Z PIC X."],
                3,
                28,
                "there is no item named Z",
            ),
            (
                vec![
                    "01  R.",
                    "    05  G.",
                    "        10  A PIC X.",
                    "    05  B REDEFINES A PIC X.",
                ],
                4,
                28,
                "not an earlier item at level 05",
            ),
            (
                vec!["01  R.", "    05  B REDEFINES A PIC X.", "    05  A PIC X."],
                2,
                28,
                "not an earlier item",
            ),
            (
                vec![
                    "01  R.",
                    "    05  A PIC X.",
                    "    05  C PIC X.",
                    "    05  B REDEFINES A PIC X.",
                ],
                4,
                28,
                "must immediately follow A",
            ),
            (
                vec![
                    "01  R.",
                    "    05  N PIC 9.",
                    "    05  A.",
                    "        10  T PIC X OCCURS 1 TO 5 DEPENDING ON N.",
                    "    05  B REDEFINES A PIC X(5).",
                ],
                5,
                28,
                "variable-length table",
            ),
            (
                vec![
                    "01  R.",
                    "    05  N PIC X.",
                    "    05  A PIC X OCCURS 1 TO 3 DEPENDING ON N.",
                ],
                3,
                51,
                "must be a numeric elementary item",
            ),
            (
                vec![
                    "01  R.",
                    "    05  N.",
                    "        10 M PIC 9.",
                    "    05  A PIC X OCCURS 1 TO 3 DEPENDING ON N.",
                ],
                4,
                51,
                "but it is a group item",
            ),
            (
                vec![
                    "01  R.",
                    "    05  A PIC X OCCURS 1 TO 3 DEPENDING ON N.",
                    "    05  N PIC 9.",
                ],
                2,
                51,
                "declared after the table",
            ),
            (
                vec!["01  R.", "    05  A PIC X OCCURS 1 TO 3 DEPENDING ON N."],
                2,
                51,
                "there is no item N in record R",
            ),
            (
                vec![
                    "01  Q.",
                    "    05  N PIC 9.",
                    "01  R.",
                    "    05  A PIC X OCCURS 1 TO 3 DEPENDING ON N.",
                ],
                4,
                51,
                "there is no item N in record R",
            ),
            (
                vec![
                    "01  R.",
                    "    05  N PIC 9V9.",
                    "    05  A PIC X OCCURS 1 TO 3 DEPENDING ON N.",
                ],
                3,
                51,
                "must be an integer",
            ),
            (
                vec![
                    "01  R.",
                    "    05  G1.",
                    "        10  N PIC 9.",
                    "    05  G2.",
                    "        10  N PIC 9.",
                    "    05  A PIC X OCCURS 1 TO 3 DEPENDING ON N.",
                ],
                6,
                51,
                "ambiguous",
            ),
            (
                vec![
                    "01  R.",
                    "    05  N PIC 9 OCCURS 2.",
                    "    05  A PIC X OCCURS 1 TO 3 DEPENDING ON N.",
                ],
                3,
                51,
                "inside a table",
            ),
            (
                vec![
                    "01  R.",
                    "    05  N PIC 9.",
                    "    05  T PIC X OCCURS 1 TO 5 DEPENDING ON N.",
                    "    05  M PIC 9.",
                    "    05  U PIC X OCCURS 1 TO 5 DEPENDING ON M.",
                ],
                5,
                51,
                "follows the variable-length table T",
            ),
        ];
        check_cases(&cases);
    }

    #[test]
    fn errors_in_the_source_format() {
        let e = Copybook::parse("T.cpy", "").expect_err("empty");
        assert_error(&e, 1, 1, "no data description entries");
        let e =
            Copybook::parse("T.cpy", "      * only a comment\n\n      /\n").expect_err("comments");
        assert_error(&e, 1, 1, "no data description entries");
        let e =
            Copybook::parse("T.cpy", "       01  R.\n000100X01  A PIC X.\n").expect_err("column 7");
        assert_error(&e, 2, 7, "column 7");
        let text = "       01  R.\n       05  A PIC X(70) VALUE 'ABC\n      -    DEF'.\n";
        let e = Copybook::parse("T.cpy", text).expect_err("continuation without quote");
        assert_error(&e, 3, 12, "must start with '");
        let text = "       01  R.\n       05  A PIC X(70) VALUE 'ABC\n       05  B PIC X.\n";
        let e = Copybook::parse("T.cpy", text).expect_err("not continued");
        assert_error(&e, 2, 30, "not terminated");
        let text = "       01  R.\n       05  A PIC X(70) VALUE \"ABC\n      -    'DEF\".\n";
        let e = Copybook::parse("T.cpy", text).expect_err("wrong quote");
        assert_error(&e, 3, 12, "must start with \"");
    }
}
