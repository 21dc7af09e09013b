//! Record codec: the bytes of one fixed-width record ↔ JSON, driven by a copybook record.
//!
//! A [`RecordCodec`] is built once per connector operation from the level-01 [`Item`] and the
//! operation's [`CodecOptions`]. [`RecordCodec::new`] checks the options against the record and
//! precomputes everything decoding needs (JSON names, enum names, condition values as bytes,
//! default bytes), so [`RecordCodec::decode`], on the request path, allocates only the JSON it
//! returns.
//!
//! # Decoding
//!
//! - The 01 record is the top JSON object; each named group a nested object; each `OCCURS` an
//!   array. `FILLER` fields and `skip` fields are left out; the named fields of a `FILLER` group
//!   (without `OCCURS`) are merged into the enclosing object, as the group only groups them.
//! - Numbers (zoned, packed, binary, any scale) become JSON strings holding the exact decimal
//!   with every scale digit (`"1500.00"`, `"-0.05"`, `"42"`): never floats. Negative zero reads
//!   as zero. The sign rules are strict; see the `numeric` module.
//! - Alphanumeric text is decoded from the code page and trimmed of trailing spaces (leading
//!   spaces kept); numeric-edited text is trimmed on both sides.
//! - A field with 88-levels decodes (with [`FieldDecode::Auto`]) to the enum name of the first
//!   condition that holds, and a value none holds is [`DecodeProblem::NoCondition`].
//!   [`FieldDecode::Raw`] gives the text or number instead.
//! - `OCCURS … DEPENDING ON`: the count is read from the object, which comes earlier in the
//!   record; the array has exactly that many entries, and everything after the table moves up
//!   by `(max − count) × size` bytes (IBM variable-length records).
//! - `REDEFINES`: every view of the shared bytes is decoded, except that a view with a `when`
//!   option is decoded only when its 88-level condition holds on the data decoded before it,
//!   and is `null` otherwise. Among the views of one area, the first `when` that holds wins and
//!   the other `when` views are `null`, so the views with `when` exclude each other even if
//!   their conditions overlap.
//! - `null_when` is checked on the raw bytes first: a null field is never validated.
//! - A record longer than the layout is accepted (fixed-length extract slots are padded); one
//!   shorter than a field that has to be there is [`DecodeProblem::ShortRecord`] at that field.
//! - Errors name the field by its COBOL path below the 01 record, with 1-based subscripts
//!   (`BNQ-CASES(2).BNQ-MONTHLY-AMOUNT`), and the byte offset, from the start of the record,
//!   at which that field starts (for an `OCCURS DEPENDING ON` count out of range: the table).
//!
//! # Encoding
//!
//! [`RecordCodec::encode`] takes values keyed by upper-case COBOL names (`BNQ-CASE-NUMBER`),
//! as JSON strings or numbers; a table's values are one JSON array under the table's name, of
//! objects keyed the same way (a group table) or of values (an elementary table). Fields not
//! given take their `VALUE` clause, else spaces (text) or zero (numbers). Numbers are exact
//! (strings parsed strictly, JSON numbers through their text): more integer digits than the
//! picture, more decimal places than its scale, or a negative value in an unsigned picture is
//! an error, never rounded. Text longer than its field is an error or is cut on the right, as
//! `text_overflow` / a field's `overflow` say; text is padded on the right with `text_pad`
//! (numeric-edited fields are right-aligned with spaces). An 88-level field takes its enum name
//! (written as the condition's first value) or a raw value one of its conditions holds for; a
//! date field takes `YYYY-MM-DD`; `null` writes the field's `null_when` form. An `OCCURS
//! DEPENDING ON` count is set from the table's array length (or given, and then must agree);
//! the record is as long as its tables make it. Values for two different `REDEFINES` views of
//! the same bytes are refused. Everything is checked before any byte is returned, and errors
//! name the field, never the value (which may be personal data).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use chrono::format::{Parsed, StrftimeItems};
use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::copybook::{
    Condition, ConditionValue, Item, ItemKind, Literal, PicClass, Picture, Usage,
};
use super::ebcdic;
use super::numeric::{self, NumSpec};

/// An EBCDIC code page the codec translates to and from UTF-8.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub enum CodePage {
    /// IBM 037: USA/Canada, the common default.
    #[default]
    #[serde(rename = "037", alias = "cp037", alias = "ibm-037")]
    Cp037,
    /// IBM 1047: Latin-1 open systems (z/OS UNIX), differs from 037 in brackets and a few more.
    #[serde(rename = "1047", alias = "cp1047", alias = "ibm-1047")]
    Cp1047,
}

/// How the codec treats the whole record.
#[derive(Debug, Clone, Default)]
pub struct CodecOptions {
    /// The EBCDIC code page of text fields.
    pub code_page: CodePage,
    /// Prefixes removed from COBOL names before they become JSON names (`BNQ-` → ``).
    pub strip_prefixes: Vec<String>,
    /// Per-field options keyed by COBOL name (upper case).
    pub fields: BTreeMap<String, FieldOptions>,
    /// What encoding does with text longer than its field, unless a field says otherwise.
    pub text_overflow: Overflow,
    /// The byte text fields are padded with when encoding.
    pub text_pad: Pad,
}

/// The JSON keys from a decoded record's top object down to one item; see
/// [`RecordCodec::locate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(Vec<String>);

impl JsonPath {
    /// The item's value in `decoded`, if the record has it.
    pub fn get<'a>(&self, decoded: &'a Map<String, Value>) -> Option<&'a Value> {
        let (last, outer) = self.0.split_last()?;
        let mut object = decoded;
        for key in outer {
            object = object.get(key)?.as_object()?;
        }
        object.get(last)
    }
}

/// An 88-level condition checked on decoded records; see [`RecordCodec::condition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionCheck {
    field: JsonPath,
    enum_name: String,
}

impl ConditionCheck {
    /// Whether the condition holds in `decoded` (its field reads as the condition's name).
    pub fn holds(&self, decoded: &Map<String, Value>) -> bool {
        self.field.get(decoded).and_then(Value::as_str) == Some(self.enum_name.as_str())
    }

    /// Where the condition's field is, e.g. to report its value.
    pub fn field(&self) -> &JsonPath {
        &self.field
    }
}

impl CodecOptions {
    /// These options with `fields` narrowed to the items of `record`: a connector file's
    /// `[fields]` cover every record of its copybook, while [`RecordCodec::new`] refuses a
    /// field its record does not have.
    pub fn for_record(&self, record: &Item) -> CodecOptions {
        let mut options = self.clone();
        options
            .fields
            .retain(|name, _| super::find_item(record, name).is_some());
        options
    }
}

/// Options for one field or group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldOptions {
    /// The JSON name; default: prefixes stripped, then `CASE-OPEN-DATE` → `caseOpenDate`.
    pub name: Option<String>,
    /// Leave the field out of decoded JSON.
    pub skip: bool,
    /// How to present the value.
    pub decode: FieldDecode,
    /// A value that reads as JSON null.
    pub null_when: Option<NullWhen>,
    /// For an item that REDEFINES another (or is redefined): decode it only when this 88-level
    /// condition holds; otherwise it is null. Without `when`, every view is decoded.
    pub when: Option<String>,
    /// Overrides the record's `text_overflow` for this field.
    pub overflow: Option<Overflow>,
}

/// How a field's value is presented.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FieldDecode {
    /// Text as text, numbers as exact decimal strings, 88-level fields as enum names.
    #[default]
    Auto,
    /// Ignore 88-levels: the raw text or number.
    Raw,
    /// A date held as digits or text in this chrono format (e.g. `%Y%m%d`), written `YYYY-MM-DD`.
    Date(String),
}

/// Values that mean "nothing here".
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NullWhen {
    /// All spaces (EBCDIC 0x40).
    Spaces,
    /// Numeric value zero (any sign form).
    Zero,
    /// All 0x00 bytes.
    LowValues,
    /// Spaces, low-values, or (numeric) zero.
    Blank,
}

/// What encoding does when a text value is longer than its field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overflow {
    /// Refuse the value (the default): nothing is sent.
    #[default]
    Error,
    /// Cut on the right, as COBOL `MOVE` does.
    Truncate,
}

/// The byte text fields are padded with on the right when encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pad {
    /// EBCDIC space 0x40 (COBOL `MOVE` semantics).
    #[default]
    Spaces,
    /// 0x00.
    LowValues,
}

/// A record that does not decode; names the field (COBOL path such as
/// `BNQ-CASES(2).BNQ-MONTHLY-AMOUNT`) and the byte offset within the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field} at byte {offset}: {problem}")]
pub struct DecodeError {
    /// COBOL path of the field, occurrences 1-based.
    pub field: String,
    /// Byte offset from the start of the record.
    pub offset: usize,
    /// What is wrong.
    pub problem: DecodeProblem,
}

/// What is wrong with a record's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeProblem {
    /// The record ends before this field does.
    #[error("record is {actual} bytes, the field needs bytes up to {needed}")]
    ShortRecord {
        /// Bytes needed to the end of the field.
        needed: usize,
        /// Bytes the record has.
        actual: usize,
    },
    /// A packed-decimal digit nibble above 9, or a non-zero pad nibble (the first nibble of a
    /// picture with an even number of digits, which the value may not use).
    #[error(
        "packed decimal digit nibble {nibble:#x} is not 0-9 (or is a pad nibble that must be 0)"
    )]
    BadPackedDigit {
        /// The nibble.
        nibble: u8,
    },
    /// A sign nibble other than C, D or F (packed; D also in an unsigned picture), or a sign
    /// zone A, B or E (zoned), which IBM hardware accepts but this gateway refuses. Any other
    /// byte where a zoned digit belongs is [`DecodeProblem::NotADigit`].
    #[error("sign nibble {nibble:#x} is not C, D or F")]
    BadSign {
        /// The nibble.
        nibble: u8,
    },
    /// A zoned digit byte that is not F0–F9 (or a sign overpunch where one belongs).
    #[error("byte {byte:#04x} is not a digit")]
    NotADigit {
        /// The byte.
        byte: u8,
    },
    /// A separate sign byte that is neither `+` nor `-`.
    #[error("byte {byte:#04x} is not a separate sign (+ or -)")]
    BadSeparateSign {
        /// The byte.
        byte: u8,
    },
    /// A binary value with more digits than its picture allows.
    #[error("binary value {value} does not fit the picture's {digits} digits")]
    BinaryOverflow {
        /// The value read.
        value: i128,
        /// The picture's digits.
        digits: u8,
    },
    /// An OCCURS DEPENDING ON count outside the table's `min..=max`.
    #[error("OCCURS DEPENDING ON count {count} is outside {min} to {max}")]
    BadOccursCount {
        /// The count read.
        count: i128,
        /// The table's minimum.
        min: usize,
        /// The table's maximum.
        max: usize,
    },
    /// A field with 88-levels holds a value none of them names.
    #[error("value matches none of the field's 88-level conditions")]
    NoCondition,
    /// A field declared as a date does not hold one in the configured format.
    #[error("not a date in the format `{format}`")]
    BadDate {
        /// The configured format.
        format: String,
    },
}

/// A request record that cannot be built from the given values; names the field, never the
/// value (which may be personal data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {problem}")]
pub struct EncodeError {
    /// COBOL path of the field, as in [`DecodeError::field`] (`BNQ-CASES(2).BNQ-WEEKS`), or
    /// the key given when it names no field.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

/// Turns one copybook record into JSON and back. Built once per connector operation, so the
/// per-record work is a walk over precomputed nodes.
#[derive(Debug, Clone)]
pub struct RecordCodec {
    /// Every item of the record in pre-order; index 0 is the 01 record.
    nodes: Vec<Node>,
    page: CodePage,
    /// The byte given text is padded with.
    pad: u8,
    /// Bytes of the record with every table at its maximum.
    record_len: usize,
    /// Bytes of the record with every `DEPENDING ON` table at its minimum.
    min_len: usize,
    /// One past the last byte any view of the record can touch (a `REDEFINES` of the last
    /// item may be longer than it).
    extent: usize,
    /// Condition sources whose position `when` needs.
    position_slots: usize,
    /// `OCCURS DEPENDING ON` objects whose value tables need.
    count_slots: usize,
    /// Encoding: the COBOL names addressable in each scope (the record, or one entry of a
    /// table), `None` when a name is ambiguous there.
    scopes: HashMap<NodeId, HashMap<String, Option<NodeId>>>,
}

type NodeId = usize;

/// The 01 record's node.
const ROOT: NodeId = 0;

/// One item of the record, with everything decoding and encoding it needs.
#[derive(Debug, Clone)]
struct Node {
    /// The COBOL name, or `FILLER`.
    cobol: String,
    /// Whether the item has a name (is not `FILLER`).
    named: bool,
    parent: NodeId,
    /// The nearest enclosing table, or the record: the scope the item's name is given in.
    owner: NodeId,
    /// The JSON key; `None` for `FILLER` and `skip` items.
    json: Option<String>,
    /// Whether decoding produces anything for it (a key, or keys merged from a `FILLER` group).
    emit: bool,
    /// A `FILLER` group without `OCCURS`: its fields go into the enclosing object.
    flatten: bool,
    /// Offset of the (first occurrence of the) item from the start of its parent.
    rel: usize,
    /// Bytes of one occurrence.
    size: usize,
    /// Bytes of all occurrences at the maximum.
    total: usize,
    /// The smallest number of bytes the item can take (`DEPENDING ON` tables at their minimum).
    min_total: usize,
    table: Option<Table>,
    /// Shares its bytes with the preceding item (`REDEFINES`).
    redefines: bool,
    /// The first item of the `REDEFINES` set this item belongs to, if any.
    set_base: Option<NodeId>,
    kind: Kind,
    conditions: Vec<Cond>,
    when: Option<When>,
    null_when: Option<NullWhen>,
    /// `when` conditions of later items are evaluated at the position recorded here.
    position_slot: Option<usize>,
    /// The value of this `DEPENDING ON` object is recorded here.
    count_slot: Option<usize>,
    /// The tables whose count this field holds.
    counted_tables: Vec<NodeId>,
    /// Its size depends on a `DEPENDING ON` count.
    variable: bool,
    /// Must be visited even when it produces no JSON (a slot source, or a variable size).
    walk: bool,
    /// Encoding: a field's bytes when no value is given (its `VALUE`, else spaces or zero);
    /// a group's `VALUE`, if it has one. An error when the `VALUE` does not fit.
    default: Option<Result<Vec<u8>, String>>,
}

#[derive(Debug, Clone)]
struct Table {
    min: usize,
    max: usize,
    depending: Option<Depending>,
}

#[derive(Debug, Clone, Copy)]
struct Depending {
    object: NodeId,
    slot: usize,
}

#[derive(Debug, Clone)]
enum Kind {
    Group(Vec<NodeId>),
    Field(Field),
}

#[derive(Debug, Clone)]
struct Field {
    form: Form,
    mode: Mode,
    overflow: Overflow,
}

#[derive(Debug, Clone, Copy)]
enum Form {
    /// Alphanumeric, or numeric-edited (`edited`), one byte per character.
    Text {
        edited: bool,
    },
    Number(NumSpec),
}

#[derive(Debug, Clone)]
enum Mode {
    Plain,
    /// The field has 88-levels and decodes to their enum names.
    Enum,
    Date(DateFormat),
}

/// A chrono date format, parsed once rather than for every record.
#[derive(Debug, Clone)]
struct DateFormat {
    text: String,
    items: Vec<chrono::format::Item<'static>>,
}

/// An 88-level condition compiled for the field's bytes.
#[derive(Debug, Clone)]
struct Cond {
    cobol: String,
    enum_name: String,
    tests: Vec<Test>,
    /// The bytes of the condition's first value, written when encoding the enum name.
    first: Result<Vec<u8>, String>,
}

#[derive(Debug, Clone)]
enum Test {
    /// The field's bytes equal these (text padded with spaces, or a figurative constant).
    Bytes(Vec<u8>),
    /// The field's bytes are within these, inclusive, in EBCDIC order.
    BytesRange(Vec<u8>, Vec<u8>),
    Number(Decimal),
    NumberRange(Decimal, Decimal),
}

#[derive(Debug, Clone, Copy)]
struct When {
    source: NodeId,
    condition: usize,
    slot: usize,
}

/// A decoding failure on its way up: the node where it happened and the 1-based subscripts of
/// the tables it is in, innermost first. Boxed so the success path stays small.
#[derive(Debug)]
struct Fail {
    node: NodeId,
    occurrences: Vec<usize>,
    offset: usize,
    problem: DecodeProblem,
}

type Walked<T> = Result<T, Box<Fail>>;

fn fail(node: NodeId, offset: usize, problem: DecodeProblem) -> Box<Fail> {
    Box::new(Fail {
        node,
        occurrences: Vec::new(),
        offset,
        problem,
    })
}

/// Per-record decoding state.
struct Walk<'a> {
    bytes: &'a [u8],
    positions: Vec<Option<usize>>,
    counts: Vec<Option<i128>>,
}

/// Per-request encoding state.
struct Enc {
    buf: Vec<u8>,
    counts: Vec<Option<i128>>,
    /// Subscripts of the table entries being written, outermost first.
    occurrences: Vec<usize>,
}

impl RecordCodec {
    /// Checks `options` against `record` and precomputes decoding: every `fields` key names an
    /// item, `when` names an 88-level condition decoded before the item (which must redefine or
    /// be redefined), `date` is only on numeric or alphanumeric fields, every `DEPENDING ON`
    /// object exists, is an integer field and comes before its table, pictures agree with the
    /// layout's sizes, and no two fields of one JSON object get the same name. The error says
    /// what is wrong, naming COBOL items.
    pub fn new(record: &Item, options: CodecOptions) -> Result<Self, String> {
        Builder::build(record, &options)
    }

    /// Bytes of the record with every `OCCURS DEPENDING ON` table at its maximum: the
    /// largest record this layout describes, and the length of a fixed-length extract slot.
    pub fn record_len(&self) -> usize {
        self.record_len
    }

    /// Bytes of the record with every `OCCURS DEPENDING ON` table at its minimum: no record
    /// shorter than this decodes.
    pub fn min_len(&self) -> usize {
        self.min_len
    }

    /// Where the item called `cobol` (case-insensitive) sits in decoded records: resolved
    /// once, when a connector is built, and read per record with [`JsonPath::get`]. `None`
    /// when there is no such item, it is left out of the JSON, or it lies inside an `OCCURS`
    /// table (no single value; the table itself is fine and reads as its list).
    pub fn locate(&self, cobol: &str) -> Option<JsonPath> {
        let node = self
            .nodes
            .iter()
            .position(|n| n.named && n.cobol.eq_ignore_ascii_case(cobol))?;
        let mut keys = Vec::new();
        let mut current = node;
        while current != ROOT {
            let item = self.nodes.get(current)?;
            if current != node && item.table.is_some() {
                return None;
            }
            match &item.json {
                Some(key) if !item.flatten => keys.push(key.clone()),
                Some(_) => {}
                None if item.flatten => {}
                None => return None,
            }
            current = item.parent;
        }
        keys.reverse();
        (!keys.is_empty()).then_some(JsonPath(keys))
    }

    /// The 88-level condition called `condition` (case-insensitive), resolved to its field's
    /// place in decoded records and its enum name. `None` when there is no such condition, or
    /// its field is not decoded as an enum (`decode = "raw"`, a date) or has no single value.
    pub fn condition(&self, condition: &str) -> Option<ConditionCheck> {
        let (field, cond) = self.nodes.iter().find_map(|node| {
            node.conditions
                .iter()
                .find(|c| c.cobol.eq_ignore_ascii_case(condition))
                .map(|c| (node, c))
        })?;
        match &field.kind {
            Kind::Field(Field {
                mode: Mode::Enum, ..
            }) => {}
            _ => return None,
        }
        Some(ConditionCheck {
            field: self.locate(&field.cobol)?,
            enum_name: cond.enum_name.clone(),
        })
    }

    /// Decodes one record into JSON (see the module documentation for the shape). Bytes after
    /// the layout's end are ignored.
    pub fn decode(&self, bytes: &[u8]) -> Result<Map<String, Value>, DecodeError> {
        self.decode_prefix(bytes).map(|(record, _)| record)
    }

    /// Decodes the record at the start of `bytes` and says how many bytes it takes (its
    /// `OCCURS DEPENDING ON` tables at their actual counts), for messages that carry several
    /// records back to back, each as long as its tables make it (as [`RecordCodec::encode`]
    /// writes them).
    pub fn decode_prefix(&self, bytes: &[u8]) -> Result<(Map<String, Value>, usize), DecodeError> {
        let mut walk = Walk {
            bytes,
            positions: vec![None; self.position_slots],
            counts: vec![None; self.count_slots],
        };
        let mut out = Map::new();
        match self.decode_children(&mut walk, ROOT, 0, Some(&mut out)) {
            Ok(used) => Ok((out, used)),
            Err(fail) => {
                let Fail {
                    node,
                    mut occurrences,
                    offset,
                    problem,
                } = *fail;
                occurrences.reverse();
                Err(DecodeError {
                    field: self.path(node, &occurrences),
                    offset,
                    problem,
                })
            }
        }
    }

    /// Builds a request record from values keyed by COBOL name (see the module documentation).
    /// Returns the record's bytes, as long as its `DEPENDING ON` tables make it.
    pub fn encode(&self, values: &Map<String, Value>) -> Result<Vec<u8>, EncodeError> {
        let mut enc = Enc {
            buf: vec![ebcdic::SPACE; self.extent],
            counts: vec![None; self.count_slots],
            occurrences: Vec::new(),
        };
        let chosen = self.check_scope(&enc, ROOT, values)?;
        let used = self.encode_children(&mut enc, ROOT, 0, values, &chosen, false)?;
        // The copybook sizes a REDEFINES area by its longest view, so `used` covers every view.
        enc.buf.truncate(used);
        Ok(enc.buf)
    }

    /// `A.B(2).C` for a node, with the given subscripts (outermost first) on its tables.
    fn path(&self, node: NodeId, occurrences: &[usize]) -> String {
        let mut chain = Vec::new();
        let mut at = node;
        while at != ROOT {
            let Some(n) = self.nodes.get(at) else { break };
            chain.push(at);
            at = n.parent;
        }
        let mut subscripts = occurrences.iter();
        let mut path = String::new();
        for &id in chain.iter().rev() {
            let Some(n) = self.nodes.get(id) else {
                continue;
            };
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&n.cobol);
            if n.table.is_some()
                && let Some(k) = subscripts.next()
            {
                let _ = write!(path, "({k})");
            }
        }
        path
    }

    // ----- decoding -----

    /// Decodes the children of a group that starts at `start`; returns the group's actual size.
    fn decode_children(
        &self,
        walk: &mut Walk<'_>,
        group: NodeId,
        start: usize,
        mut out: Option<&mut Map<String, Value>>,
    ) -> Walked<usize> {
        let node = &self.nodes[group];
        let Kind::Group(children) = &node.kind else {
            return Ok(node.size);
        };
        let mut shrink = 0usize;
        let mut base_start = start;
        let mut when_taken = false;
        for &id in children {
            let child = &self.nodes[id];
            let pos = if child.redefines {
                base_start
            } else {
                base_start = (start + child.rel).saturating_sub(shrink);
                when_taken = false;
                base_start
            };
            let active = match &child.when {
                None => true,
                Some(_) if when_taken => false,
                Some(when) => {
                    when_taken = self.when_holds(walk, when);
                    when_taken
                }
            };
            let used = if active {
                self.decode_item(walk, id, pos, out.as_deref_mut())?
            } else {
                if let (Some(out), Some(key)) = (out.as_deref_mut(), &child.json) {
                    out.insert(key.clone(), Value::Null);
                }
                child.total
            };
            if !child.redefines {
                shrink += child.total.saturating_sub(used);
            }
        }
        Ok(node.size.saturating_sub(shrink))
    }

    /// Decodes one item (all its occurrences) at `pos`; returns the bytes it takes.
    fn decode_item(
        &self,
        walk: &mut Walk<'_>,
        id: NodeId,
        pos: usize,
        out: Option<&mut Map<String, Value>>,
    ) -> Walked<usize> {
        let node = &self.nodes[id];
        let out = out.filter(|_| node.emit);
        if out.is_none() && !node.walk {
            if pos.saturating_add(node.total) > walk.bytes.len() {
                return Err(self.first_short(id, pos, walk.bytes.len()));
            }
            return Ok(node.total);
        }
        let Some(table) = &node.table else {
            if node.flatten {
                return self.decode_children(walk, id, pos, out);
            }
            let (used, value) = self.decode_occurrence(walk, id, pos, out.is_some())?;
            if let (Some(out), Some(key), Some(value)) = (out, &node.json, value) {
                out.insert(key.clone(), value);
            }
            return Ok(used);
        };
        let count = match table.depending {
            None => table.max,
            Some(depending) => {
                let count = walk
                    .counts
                    .get(depending.slot)
                    .copied()
                    .flatten()
                    .unwrap_or(-1);
                match usize::try_from(count) {
                    Ok(n) if n >= table.min && n <= table.max => n,
                    _ => {
                        let problem = DecodeProblem::BadOccursCount {
                            count,
                            min: table.min,
                            max: table.max,
                        };
                        return Err(fail(id, pos, problem));
                    }
                }
            }
        };
        // Sized by what the record can hold, not by a count that may be garbage.
        let room = walk.bytes.len().saturating_sub(pos) / node.size.max(1);
        let mut values = out
            .as_ref()
            .map(|_| Vec::with_capacity(count.min(room + 1)));
        let mut cursor = pos;
        for index in 0..count {
            let (used, value) = self
                .decode_occurrence(walk, id, cursor, values.is_some())
                .map_err(|mut f| {
                    f.occurrences.push(index + 1);
                    f
                })?;
            cursor += used;
            if let (Some(values), Some(value)) = (values.as_mut(), value) {
                values.push(value);
            }
        }
        if let (Some(out), Some(key), Some(values)) = (out, &node.json, values) {
            out.insert(key.clone(), Value::Array(values));
        }
        Ok(cursor - pos)
    }

    /// Decodes one occurrence of an item; the value only when `emit`.
    fn decode_occurrence(
        &self,
        walk: &mut Walk<'_>,
        id: NodeId,
        pos: usize,
        emit: bool,
    ) -> Walked<(usize, Option<Value>)> {
        let node = &self.nodes[id];
        if let Some(slot) = node.position_slot
            && let Some(p) = walk.positions.get_mut(slot)
        {
            *p = Some(pos);
        }
        match &node.kind {
            Kind::Group(_) => {
                if emit
                    && let Some(null_when) = node.null_when
                    && let Some(raw) = walk.bytes.get(pos..pos.saturating_add(node.size))
                    && is_null(null_when, None, raw)
                {
                    return Ok((node.size, Some(Value::Null)));
                }
                if emit {
                    let mut object = Map::new();
                    let used = self.decode_children(walk, id, pos, Some(&mut object))?;
                    Ok((used, Some(Value::Object(object))))
                } else {
                    Ok((self.decode_children(walk, id, pos, None)?, None))
                }
            }
            Kind::Field(field) => {
                let end = pos.saturating_add(node.size);
                let Some(raw) = walk.bytes.get(pos..end) else {
                    let problem = DecodeProblem::ShortRecord {
                        needed: end,
                        actual: walk.bytes.len(),
                    };
                    return Err(fail(id, pos, problem));
                };
                if let Some(slot) = node.count_slot
                    && let Form::Number(spec) = field.form
                {
                    let count = spec.decode_unscaled(raw).map_err(|p| fail(id, pos, p))?;
                    if let Some(c) = walk.counts.get_mut(slot) {
                        *c = Some(count);
                    }
                }
                if !emit {
                    return Ok((node.size, None));
                }
                let value = self
                    .field_value(node, field, raw)
                    .map_err(|p| fail(id, pos, p))?;
                Ok((node.size, Some(value)))
            }
        }
    }

    /// The JSON value of one field's bytes.
    fn field_value(&self, node: &Node, field: &Field, raw: &[u8]) -> Result<Value, DecodeProblem> {
        if let Some(null_when) = node.null_when
            && is_null(null_when, Some(&field.form), raw)
        {
            return Ok(Value::Null);
        }
        match (&field.mode, field.form) {
            (Mode::Enum, form) => {
                let index = self.matching_condition(node, form, raw)?;
                let name = node.conditions.get(index).map(|c| c.enum_name.clone());
                Ok(name.map_or(Value::Null, Value::String))
            }
            (Mode::Date(format), form) => self.date_value(format, form, raw),
            (Mode::Plain, Form::Text { edited }) => Ok(Value::String(self.text(raw, edited))),
            (Mode::Plain, Form::Number(spec)) => {
                let unscaled = spec.decode_unscaled(raw)?;
                Ok(Value::String(numeric::format_unscaled(
                    unscaled, spec.scale,
                )))
            }
        }
    }

    /// Text of a field: trailing spaces trimmed, and leading ones too when `edited`.
    fn text(&self, raw: &[u8], edited: bool) -> String {
        let end = raw
            .iter()
            .rposition(|&b| b != ebcdic::SPACE)
            .map_or(0, |i| i + 1);
        let body = raw.get(..end).unwrap_or_default();
        let start = if edited {
            body.iter().position(|&b| b != ebcdic::SPACE).unwrap_or(end)
        } else {
            0
        };
        ebcdic::decode(self.page, body.get(start..).unwrap_or_default())
    }

    fn date_value(
        &self,
        format: &DateFormat,
        form: Form,
        raw: &[u8],
    ) -> Result<Value, DecodeProblem> {
        let bad = || DecodeProblem::BadDate {
            format: format.text.clone(),
        };
        let text = match form {
            Form::Text { .. } => self.text(raw, true),
            Form::Number(spec) => {
                let unscaled = spec.decode_unscaled(raw)?;
                if unscaled < 0 {
                    return Err(bad());
                }
                // PIC 9(6) holding 050131 is the number 50131: put the zeros back.
                let digits = numeric::format_unscaled(unscaled, 0);
                let width = usize::from(spec.digits);
                let mut text = String::with_capacity(width.max(digits.len()));
                text.extend(std::iter::repeat_n('0', width.saturating_sub(digits.len())));
                text.push_str(&digits);
                text
            }
        };
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, &text, format.items.iter()).map_err(|_| bad())?;
        let date = parsed
            .to_naive_date()
            .ok()
            .filter(four_digit_year)
            .ok_or_else(bad)?;
        Ok(Value::String(iso_date(date)))
    }

    /// The index of the first 88-level condition that holds, or `NoCondition`.
    fn matching_condition(
        &self,
        node: &Node,
        form: Form,
        raw: &[u8],
    ) -> Result<usize, DecodeProblem> {
        let mut number: Option<Decimal> = None;
        for (index, condition) in node.conditions.iter().enumerate() {
            if condition_holds(condition, form, raw, &mut number)? {
                return Ok(index);
            }
        }
        Err(DecodeProblem::NoCondition)
    }

    fn when_holds(&self, walk: &Walk<'_>, when: &When) -> bool {
        let Some(pos) = walk.positions.get(when.slot).copied().flatten() else {
            return false;
        };
        let Some(source) = self.nodes.get(when.source) else {
            return false;
        };
        let Some(raw) = walk.bytes.get(pos..pos.saturating_add(source.size)) else {
            return false;
        };
        let Some(condition) = source.conditions.get(when.condition) else {
            return false;
        };
        let form = match &source.kind {
            Kind::Field(field) => field.form,
            Kind::Group(_) => Form::Text { edited: false },
        };
        condition_holds(condition, form, raw, &mut None).unwrap_or(false)
    }

    /// The first field of a fixed-size item at `pos` that does not fit in `len` bytes.
    fn first_short(&self, id: NodeId, pos: usize, len: usize) -> Box<Fail> {
        let node = &self.nodes[id];
        let occurrences = node.table.as_ref().map_or(1, |t| t.max);
        for index in 0..occurrences {
            let start = pos.saturating_add(index.saturating_mul(node.size));
            let end = start.saturating_add(node.size);
            if end <= len {
                continue;
            }
            let mut short = match &node.kind {
                Kind::Group(children) => children
                    .iter()
                    .map(|&c| (c, &self.nodes[c]))
                    .filter(|(_, c)| !c.redefines)
                    .find(|(_, c)| start.saturating_add(c.rel).saturating_add(c.total) > len)
                    .map(|(c, child)| self.first_short(c, start.saturating_add(child.rel), len)),
                Kind::Field(_) => None,
            }
            .unwrap_or_else(|| {
                let problem = DecodeProblem::ShortRecord {
                    needed: end,
                    actual: len,
                };
                fail(id, start, problem)
            });
            if node.table.is_some() {
                short.occurrences.push(index + 1);
            }
            return short;
        }
        let problem = DecodeProblem::ShortRecord {
            needed: pos.saturating_add(node.total),
            actual: len,
        };
        fail(id, pos, problem)
    }

    // ----- encoding -----

    /// Checks the keys of one scope's values and picks, for each `REDEFINES` set they touch,
    /// the view they are in.
    fn check_scope(
        &self,
        enc: &Enc,
        owner: NodeId,
        values: &Map<String, Value>,
    ) -> Result<Vec<(NodeId, NodeId)>, EncodeError> {
        let names = self.scopes.get(&owner);
        let mut chosen: Vec<(NodeId, NodeId)> = Vec::new();
        for (key, value) in values {
            let found = names.and_then(|n| n.get(key));
            let scope_path = || {
                if owner == ROOT {
                    String::new()
                } else {
                    format!("{}.", self.path(owner, &enc.occurrences))
                }
            };
            let id = match found {
                Some(Some(id)) => *id,
                Some(None) => {
                    return Err(EncodeError {
                        field: format!("{}{key}", scope_path()),
                        problem: "is ambiguous: more than one item has this name".into(),
                    });
                }
                None => {
                    let upper = key.to_ascii_uppercase();
                    let hint = if names.is_some_and(|n| n.contains_key(&upper)) {
                        format!(" (COBOL names are upper case: {upper})")
                    } else {
                        String::new()
                    };
                    return Err(EncodeError {
                        field: format!("{}{key}", scope_path()),
                        problem: format!("is not an item of this record{hint}"),
                    });
                }
            };
            let node = &self.nodes[id];
            let problem = match (&node.kind, &node.table, value) {
                (_, Some(_), Value::Array(_)) => None,
                (_, Some(_), _) => Some("repeats (OCCURS): give a JSON array"),
                (Kind::Group(_), None, _) => Some("is a group: give values for its fields"),
                (Kind::Field(_), None, _) => None,
            };
            if let Some(problem) = problem {
                return Err(self.encode_error(enc, id, problem.to_owned()));
            }
            let mut at = id;
            while at != owner && at != ROOT {
                let n = &self.nodes[at];
                if let Some(base) = n.set_base {
                    match chosen.iter().find(|(b, _)| *b == base) {
                        Some(&(_, other)) if other != at => {
                            let problem = format!(
                                "shares its bytes with {} (REDEFINES {}), which is given too",
                                self.nodes[other].cobol, self.nodes[base].cobol
                            );
                            return Err(self.encode_error(enc, id, problem));
                        }
                        Some(_) => {}
                        None => chosen.push((base, at)),
                    }
                }
                at = n.parent;
            }
        }
        Ok(chosen)
    }

    fn encode_error(&self, enc: &Enc, id: NodeId, problem: String) -> EncodeError {
        EncodeError {
            field: self.path(id, &enc.occurrences),
            problem,
        }
    }

    /// Writes the children of a group at `start`; returns the group's actual size.
    fn encode_children(
        &self,
        enc: &mut Enc,
        group: NodeId,
        start: usize,
        scope: &Map<String, Value>,
        chosen: &[(NodeId, NodeId)],
        defaults_written: bool,
    ) -> Result<usize, EncodeError> {
        let node = &self.nodes[group];
        let Kind::Group(children) = &node.kind else {
            return Ok(node.size);
        };
        let mut shrink = 0usize;
        let mut base_start = start;
        for &id in children {
            let child = &self.nodes[id];
            let pos = if child.redefines {
                base_start
            } else {
                base_start = (start + child.rel).saturating_sub(shrink);
                base_start
            };
            let active = match child.set_base {
                None => true,
                Some(base) => match chosen.iter().find(|(b, _)| *b == base) {
                    Some(&(_, view)) => view == id,
                    None => !child.redefines,
                },
            };
            let used = if active {
                self.encode_item(enc, id, pos, scope, chosen, defaults_written)?
            } else {
                child.total
            };
            if !child.redefines {
                shrink += child.total.saturating_sub(used);
            }
        }
        Ok(node.size.saturating_sub(shrink))
    }

    fn encode_item(
        &self,
        enc: &mut Enc,
        id: NodeId,
        pos: usize,
        scope: &Map<String, Value>,
        chosen: &[(NodeId, NodeId)],
        defaults_written: bool,
    ) -> Result<usize, EncodeError> {
        let node = &self.nodes[id];
        let given = if node.named {
            scope.get(&node.cobol)
        } else {
            None
        };
        let Some(table) = &node.table else {
            return match &node.kind {
                Kind::Group(_) => {
                    let written = self.write_group_value(enc, id, pos, defaults_written)?;
                    self.encode_children(enc, id, pos, scope, chosen, written)
                }
                Kind::Field(_) => self.encode_field(enc, id, pos, given, scope, defaults_written),
            };
        };
        let entries = given.and_then(Value::as_array);
        if let Some(entries) = entries
            && entries.len() > table.max
        {
            let problem = format!(
                "has {} entries; the table holds at most {}",
                entries.len(),
                table.max
            );
            return Err(self.encode_error(enc, id, problem));
        }
        let count = match table.depending {
            None => table.max,
            Some(depending) => {
                let Some(count) = enc.counts.get(depending.slot).copied().flatten() else {
                    let problem = format!(
                        "its count field {} is not written (another REDEFINES view is given)",
                        self.nodes[depending.object].cobol
                    );
                    return Err(self.encode_error(enc, id, problem));
                };
                match usize::try_from(count) {
                    Ok(n) if n >= table.min && n <= table.max => n,
                    _ => {
                        let problem = format!(
                            "OCCURS DEPENDING ON count {count} is outside {} to {}",
                            table.min, table.max
                        );
                        return Err(self.encode_error(enc, id, problem));
                    }
                }
            }
        };
        if let Some(entries) = entries
            && table.depending.is_some()
            && entries.len() != count
        {
            let problem = format!(
                "has {} entries but its count field says {count}",
                entries.len()
            );
            return Err(self.encode_error(enc, id, problem));
        }
        let mut cursor = pos;
        for index in 0..count {
            enc.occurrences.push(index + 1);
            let entry = entries.and_then(|e| e.get(index));
            let used = self.encode_occurrence(enc, id, cursor, entry, defaults_written)?;
            enc.occurrences.pop();
            cursor += used;
        }
        Ok(cursor - pos)
    }

    fn encode_occurrence(
        &self,
        enc: &mut Enc,
        id: NodeId,
        pos: usize,
        entry: Option<&Value>,
        defaults_written: bool,
    ) -> Result<usize, EncodeError> {
        let node = &self.nodes[id];
        let empty = Map::new();
        match &node.kind {
            Kind::Group(_) => {
                let object = match entry {
                    None => &empty,
                    Some(Value::Object(object)) => object,
                    Some(_) => {
                        let problem = "each entry must be an object of its fields".to_owned();
                        return Err(self.encode_error(enc, id, problem));
                    }
                };
                let chosen = self.check_scope(enc, id, object)?;
                let written = self.write_group_value(enc, id, pos, defaults_written)?;
                self.encode_children(enc, id, pos, object, &chosen, written)
            }
            Kind::Field(_) => self.encode_field(enc, id, pos, entry, &empty, defaults_written),
        }
    }

    /// Writes a group's `VALUE` (unless an enclosing group's already did); returns whether
    /// the group's bytes now hold a default its fields must not overwrite with theirs.
    fn write_group_value(
        &self,
        enc: &mut Enc,
        id: NodeId,
        pos: usize,
        defaults_written: bool,
    ) -> Result<bool, EncodeError> {
        let node = &self.nodes[id];
        if defaults_written {
            return Ok(true);
        }
        let Some(default) = &node.default else {
            return Ok(false);
        };
        let bytes = default
            .as_ref()
            .map_err(|problem| self.encode_error(enc, id, problem.clone()))?;
        let out = self.slot(enc, id, pos)?;
        let n = out.len().min(bytes.len());
        out[..n].copy_from_slice(&bytes[..n]);
        Ok(true)
    }

    /// The bytes of one occurrence of a node in the output.
    fn slot<'e>(
        &self,
        enc: &'e mut Enc,
        id: NodeId,
        pos: usize,
    ) -> Result<&'e mut [u8], EncodeError> {
        let end = pos.saturating_add(self.nodes[id].size);
        if end > enc.buf.len() {
            return Err(EncodeError {
                field: self.path(id, &enc.occurrences),
                problem: "lies outside the record (the layout is inconsistent)".into(),
            });
        }
        Ok(&mut enc.buf[pos..end])
    }

    fn encode_field(
        &self,
        enc: &mut Enc,
        id: NodeId,
        pos: usize,
        given: Option<&Value>,
        scope: &Map<String, Value>,
        defaults_written: bool,
    ) -> Result<usize, EncodeError> {
        let node = &self.nodes[id];
        let Kind::Field(field) = &node.kind else {
            return Ok(node.size);
        };
        let counted = if node.count_slot.is_some() {
            self.entries_counted(enc, id, scope)?
        } else {
            None
        };
        let page = self.page;
        let pad = self.pad;
        let path = |enc: &Enc, problem: String| EncodeError {
            field: self.path(id, &enc.occurrences),
            problem,
        };
        let written = {
            let out = self.slot(enc, id, pos)?;
            match (given, counted, field.form) {
                (Some(value), _, _) => write_value(node, field, value, page, pad, out),
                (None, Some(n), Form::Number(spec)) => {
                    let n = i128::try_from(n).unwrap_or(i128::MAX);
                    spec.encode_unscaled(n, out).map_err(|e| e.to_string())
                }
                (None, _, _) if defaults_written => Ok(()),
                (None, _, _) => match &node.default {
                    Some(Ok(bytes)) if bytes.len() == out.len() => {
                        out.copy_from_slice(bytes);
                        Ok(())
                    }
                    Some(Err(problem)) => Err(problem.clone()),
                    _ => Err("has no default value".to_owned()),
                },
            }
        };
        written.map_err(|problem| path(enc, problem))?;
        if let Some(slot) = node.count_slot
            && let Form::Number(spec) = field.form
        {
            let end = pos.saturating_add(node.size);
            let count = enc
                .buf
                .get(pos..end)
                .and_then(|raw| spec.decode_unscaled(raw).ok());
            if let (Some(count), Some(n)) = (count, counted)
                && i128::try_from(n).ok() != Some(count)
            {
                let problem = format!("is {count} but its table has {n} entries");
                return Err(path(enc, problem));
            }
            if let Some(c) = enc.counts.get_mut(slot) {
                *c = count;
            }
        }
        Ok(node.size)
    }

    /// For a `DEPENDING ON` object: the number of entries given for its tables in this scope.
    fn entries_counted(
        &self,
        enc: &Enc,
        id: NodeId,
        scope: &Map<String, Value>,
    ) -> Result<Option<usize>, EncodeError> {
        let node = &self.nodes[id];
        let mut counted: Option<usize> = None;
        for &table in &node.counted_tables {
            let t = &self.nodes[table];
            if t.owner != node.owner {
                continue;
            }
            let Some(entries) = scope.get(&t.cobol).and_then(Value::as_array) else {
                continue;
            };
            match counted {
                Some(n) if n != entries.len() => {
                    let problem = format!(
                        "counts several tables, given with {n} and {} entries",
                        entries.len()
                    );
                    return Err(self.encode_error(enc, id, problem));
                }
                _ => counted = Some(entries.len()),
            }
        }
        Ok(counted)
    }
}

/// `YYYY-MM-DD` for a date whose year has four digits.
fn iso_date(date: NaiveDate) -> String {
    fn push(text: &mut String, value: u32, width: u32) {
        for power in (0..width).rev() {
            let digit = value / 10u32.pow(power) % 10;
            text.push(char::from(b'0' + digit as u8));
        }
    }
    let mut text = String::with_capacity(10);
    push(&mut text, u32::try_from(date.year()).unwrap_or(0), 4);
    text.push('-');
    push(&mut text, date.month(), 2);
    text.push('-');
    push(&mut text, date.day(), 2);
    text
}

/// Years 0–9999 only: chrono also reads `-024` or `+12345` as a year, which no mainframe date
/// means and which `YYYY-MM-DD` cannot write back.
fn four_digit_year(date: &NaiveDate) -> bool {
    (0..=9999).contains(&date.year())
}

/// Whether `raw` is one of the field's `null_when` forms.
fn is_null(null_when: NullWhen, form: Option<&Form>, raw: &[u8]) -> bool {
    let spaces = || raw.iter().all(|&b| b == ebcdic::SPACE);
    let low = || raw.iter().all(|&b| b == 0);
    let zero = || matches!(form, Some(Form::Number(spec)) if spec.decode_unscaled(raw) == Ok(0));
    match null_when {
        NullWhen::Spaces => spaces(),
        NullWhen::LowValues => low(),
        NullWhen::Zero => zero(),
        NullWhen::Blank => spaces() || low() || zero(),
    }
}

/// Whether a condition holds for a field's bytes; the field's number is decoded at most once
/// (into `number`) however many conditions need it.
fn condition_holds(
    condition: &Cond,
    form: Form,
    raw: &[u8],
    number: &mut Option<Decimal>,
) -> Result<bool, DecodeProblem> {
    for test in &condition.tests {
        let holds = match test {
            Test::Bytes(bytes) => raw == bytes.as_slice(),
            Test::BytesRange(low, high) => low.as_slice() <= raw && raw <= high.as_slice(),
            Test::Number(_) | Test::NumberRange(..) => {
                let value = match (*number, form) {
                    (Some(value), _) => value,
                    (None, Form::Number(spec)) => {
                        let value = spec.decode(raw)?;
                        *number = Some(value);
                        value
                    }
                    (None, Form::Text { .. }) => return Ok(false),
                };
                match test {
                    Test::Number(n) => value == *n,
                    Test::NumberRange(low, high) => *low <= value && value <= *high,
                    _ => false,
                }
            }
        };
        if holds {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Writes a given value into a field's bytes; the error names no part of the value.
fn write_value(
    node: &Node,
    field: &Field,
    value: &Value,
    page: CodePage,
    pad: u8,
    out: &mut [u8],
) -> Result<(), String> {
    match value {
        Value::Null => {
            match (node.null_when, field.form) {
                (Some(NullWhen::Spaces | NullWhen::Blank), _) => out.fill(ebcdic::SPACE),
                (Some(NullWhen::LowValues), _) => out.fill(0),
                (Some(NullWhen::Zero), Form::Number(spec)) => {
                    spec.encode_unscaled(0, out).map_err(|e| e.to_string())?;
                }
                _ => return Err("is null, and the field has no `null_when`".into()),
            }
            Ok(())
        }
        Value::String(_) | Value::Number(_) => match &field.mode {
            Mode::Plain => write_plain(field, value, page, pad, out),
            Mode::Enum => {
                if let Value::String(name) = value
                    && let Some(condition) = node.conditions.iter().find(|c| c.enum_name == *name)
                {
                    let bytes = condition.first.as_ref().map_err(Clone::clone)?;
                    if bytes.len() == out.len() {
                        out.copy_from_slice(bytes);
                        return Ok(());
                    }
                }
                if write_plain(field, value, page, pad, out).is_ok() {
                    let mut number = None;
                    for condition in &node.conditions {
                        if condition_holds(condition, field.form, out, &mut number).unwrap_or(false)
                        {
                            return Ok(());
                        }
                    }
                }
                let names: Vec<&str> = node
                    .conditions
                    .iter()
                    .map(|c| c.enum_name.as_str())
                    .collect();
                Err(format!(
                    "is none of the field's values ({})",
                    names.join(", ")
                ))
            }
            Mode::Date(format) => {
                let Value::String(text) = value else {
                    return Err("must be a date written YYYY-MM-DD".into());
                };
                let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .filter(four_digit_year)
                    .ok_or_else(|| "is not a date written YYYY-MM-DD".to_owned())?;
                let mut formatted = String::new();
                write!(formatted, "{}", date.format_with_items(format.items.iter())).map_err(
                    |_| format!("cannot be written in the date format `{}`", format.text),
                )?;
                match field.form {
                    Form::Text { edited } => {
                        write_text(&formatted, edited, field.overflow, page, pad, out)
                    }
                    Form::Number(spec) => {
                        let number = numeric::parse_decimal(&formatted).ok_or_else(|| {
                            format!(
                                "the date format `{}` does not give digits only",
                                format.text
                            )
                        })?;
                        spec.encode(number, out).map_err(|e| e.to_string())
                    }
                }
            }
        },
        _ => Err("must be a JSON string or number".into()),
    }
}

/// Writes a text or number value without 88-level or date handling.
fn write_plain(
    field: &Field,
    value: &Value,
    page: CodePage,
    pad: u8,
    out: &mut [u8],
) -> Result<(), String> {
    match (field.form, value) {
        (Form::Text { edited }, Value::String(text)) => {
            write_text(text, edited, field.overflow, page, pad, out)
        }
        (Form::Text { edited }, Value::Number(number)) => {
            write_text(&number.to_string(), edited, field.overflow, page, pad, out)
        }
        (Form::Number(spec), Value::String(text)) => {
            let number = numeric::parse_decimal(text).ok_or("is not a decimal number")?;
            spec.encode(number, out).map_err(|e| e.to_string())
        }
        (Form::Number(spec), Value::Number(number)) => {
            let text = number.to_string();
            let number = numeric::parse_decimal(&text)
                .or_else(|| Decimal::from_scientific(&text).ok())
                .ok_or("is a number too large or too precise to hold exactly")?;
            spec.encode(number, out).map_err(|e| e.to_string())
        }
        _ => Err("must be a JSON string or number".into()),
    }
}

/// Writes text into a field: padded on the right with `pad` (edited fields: right-aligned
/// with spaces); too long is an error or cut on the right, as `overflow` says.
fn write_text(
    text: &str,
    edited: bool,
    overflow: Overflow,
    page: CodePage,
    pad: u8,
    out: &mut [u8],
) -> Result<(), String> {
    let chars = text.chars().count();
    let len = out.len();
    if chars > len && overflow == Overflow::Error {
        return Err(format!("is {chars} characters, the field holds {len}"));
    }
    let used = chars.min(len);
    let (start, fill) = if edited {
        (len - used, ebcdic::SPACE)
    } else {
        (0, pad)
    };
    out.fill(fill);
    for (index, (c, byte)) in text.chars().zip(out.iter_mut().skip(start)).enumerate() {
        *byte = ebcdic::encode_char(page, c).ok_or_else(|| {
            format!(
                "character {} has no byte in code page {}",
                index + 1,
                page_name(page)
            )
        })?;
    }
    Ok(())
}

fn page_name(page: CodePage) -> &'static str {
    match page {
        CodePage::Cp037 => "037",
        CodePage::Cp1047 => "1047",
    }
}

// ----- building -----

/// Builds the node tree from the copybook items and checks the options against it.
struct Builder<'o> {
    options: &'o CodecOptions,
    /// `fields` keys, upper case, with whether an item used them.
    fields: HashMap<String, (&'o FieldOptions, bool)>,
    nodes: Vec<Node>,
    /// Options per node, for the passes after the tree is built.
    node_options: Vec<Option<&'o FieldOptions>>,
    /// `REDEFINES` target per node.
    redefines_names: Vec<Option<String>>,
    /// `DEPENDING ON` object per node.
    depending_names: Vec<Option<String>>,
    record: String,
}

impl<'o> Builder<'o> {
    fn build(record: &Item, options: &'o CodecOptions) -> Result<RecordCodec, String> {
        let record_name = record.display_name().to_owned();
        if !matches!(record.kind, ItemKind::Group(_)) {
            return Err(format!("record {record_name} is not a group"));
        }
        if record.occurs.is_some() || record.redefines.is_some() {
            return Err(format!(
                "record {record_name} has OCCURS or REDEFINES at level 01"
            ));
        }
        let mut fields = HashMap::new();
        for (key, opts) in &options.fields {
            if fields
                .insert(key.to_ascii_uppercase(), (opts, false))
                .is_some()
            {
                return Err(format!(
                    "fields.{key} is given twice (names are not case-sensitive)"
                ));
            }
        }
        let mut builder = Builder {
            options,
            fields,
            nodes: Vec::new(),
            node_options: Vec::new(),
            redefines_names: Vec::new(),
            depending_names: Vec::new(),
            record: record_name,
        };
        builder.add(record, ROOT, record.offset, ROOT)?;
        let unused: Vec<&String> = options
            .fields
            .keys()
            .filter(|k| {
                builder
                    .fields
                    .get(&k.to_ascii_uppercase())
                    .is_some_and(|(_, used)| !used)
            })
            .collect();
        if let Some(key) = unused.first() {
            return Err(format!(
                "fields.{key} names no item of record {}",
                builder.record
            ));
        }
        builder.link_redefines()?;
        builder.resolve_depending()?;
        builder.resolve_when()?;
        builder.check_null_when()?;
        builder.mark_walk_and_emit();
        builder.check_json_names()?;
        builder.finish(record)
    }

    /// Adds an item and its children in pre-order; returns its id.
    fn add(
        &mut self,
        item: &Item,
        parent: NodeId,
        parent_offset: usize,
        owner: NodeId,
    ) -> Result<NodeId, String> {
        let id = self.nodes.len();
        let cobol = item.display_name().to_owned();
        let named = item.name.is_some();
        let rel = item
            .offset
            .checked_sub(parent_offset)
            .ok_or_else(|| format!("{cobol} starts at byte {}, before its group", item.offset))?;
        let opts = if named {
            match self.fields.get_mut(&cobol.to_ascii_uppercase()) {
                Some((opts, used)) => {
                    *used = true;
                    Some(*opts)
                }
                None => None,
            }
        } else {
            None
        };
        let table = match &item.occurs {
            None => None,
            Some(occurs) => {
                if occurs.min > occurs.max || occurs.max == 0 {
                    return Err(format!(
                        "{cobol} OCCURS {} TO {}: the range is empty",
                        occurs.min, occurs.max
                    ));
                }
                Some(Table {
                    min: occurs.min,
                    max: occurs.max,
                    depending: None,
                })
            }
        };
        let max = table.as_ref().map_or(1, |t| t.max);
        let total = item
            .size
            .checked_mul(max)
            .ok_or_else(|| format!("{cobol} is too large"))?;
        if item.size == 0 {
            return Err(format!("{cobol} takes no bytes"));
        }
        let skip = opts.is_some_and(|o| o.skip);
        let json = match opts.and_then(|o| o.name.clone()) {
            _ if !named || skip => None,
            Some(name) => Some(name),
            None => Some(camel_case(strip_prefix(
                &cobol,
                &self.options.strip_prefixes,
            ))),
        };
        let null_when = opts.and_then(|o| o.null_when);
        self.nodes.push(Node {
            cobol: cobol.clone(),
            named,
            parent,
            owner,
            json,
            emit: false,
            flatten: !named && item.occurs.is_none() && matches!(item.kind, ItemKind::Group(_)),
            rel,
            size: item.size,
            total,
            min_total: total,
            table,
            redefines: false,
            set_base: None,
            kind: Kind::Group(Vec::new()),
            conditions: Vec::new(),
            when: None,
            null_when,
            position_slot: None,
            count_slot: None,
            counted_tables: Vec::new(),
            variable: false,
            walk: false,
            default: None,
        });
        self.node_options.push(opts);
        self.redefines_names.push(item.redefines.clone());
        self.depending_names
            .push(item.occurs.as_ref().and_then(|o| o.depending_on.clone()));
        let form = match &item.kind {
            ItemKind::Group(children) => {
                let child_owner = if item.occurs.is_some() { id } else { owner };
                let mut ids = Vec::with_capacity(children.len());
                for child in children {
                    ids.push(self.add(child, id, item.offset, child_owner)?);
                }
                self.nodes[id].kind = Kind::Group(ids);
                None
            }
            ItemKind::Field(picture) => {
                let form = field_form(&cobol, picture, item.size)?;
                Some(form)
            }
        };
        let field_name = strip_prefix(&cobol, &self.options.strip_prefixes).to_owned();
        let size = item.size;
        let mut conditions = Vec::with_capacity(item.conditions.len());
        for condition in &item.conditions {
            conditions.push(self.condition(&cobol, &field_name, condition, form, size)?);
        }
        for (i, c) in conditions.iter().enumerate() {
            if conditions[..i].iter().any(|d| d.enum_name == c.enum_name) {
                return Err(format!(
                    "{cobol}: 88-levels {} and another both become enum value {}",
                    c.cobol, c.enum_name
                ));
            }
        }
        let default = match (form, &item.value) {
            (Some(form), Some(literal)) => {
                Some(literal_bytes(literal, form, size, self.options.code_page))
            }
            (Some(Form::Number(spec)), None) => {
                let mut zero = vec![0u8; size];
                Some(
                    spec.encode_unscaled(0, &mut zero)
                        .map(|()| zero)
                        .map_err(|e| e.to_string()),
                )
            }
            (Some(Form::Text { .. }), None) => Some(Ok(vec![ebcdic::SPACE; size])),
            (None, Some(literal)) => {
                Some(text_literal_bytes(literal, size, self.options.code_page))
            }
            (None, None) => None,
        }
        .map(|d| d.map_err(|e| format!("its VALUE clause {e}")));
        let decode = opts.map(|o| &o.decode).unwrap_or(&FieldDecode::Auto);
        let overflow = opts
            .and_then(|o| o.overflow)
            .unwrap_or(self.options.text_overflow);
        if let Some(form) = form {
            let mode = match decode {
                FieldDecode::Auto if !conditions.is_empty() => Mode::Enum,
                FieldDecode::Auto | FieldDecode::Raw => Mode::Plain,
                FieldDecode::Date(format) => Mode::Date(check_date_format(&cobol, format, form)?),
            };
            self.nodes[id].kind = Kind::Field(Field {
                form,
                mode,
                overflow,
            });
        } else if matches!(decode, FieldDecode::Date(_)) {
            return Err(format!(
                "fields.{cobol}: `date` is for fields, {cobol} is a group"
            ));
        }
        let node = &mut self.nodes[id];
        node.conditions = conditions;
        node.default = default;
        Ok(id)
    }

    fn condition(
        &self,
        cobol: &str,
        field_name: &str,
        condition: &Condition,
        form: Option<Form>,
        size: usize,
    ) -> Result<Cond, String> {
        let page = self.options.code_page;
        let context = |e: String| format!("{cobol} 88 {}: {e}", condition.name);
        let form = form.unwrap_or(Form::Text { edited: false });
        let mut tests = Vec::with_capacity(condition.values.len());
        for value in &condition.values {
            let test = match (value, form) {
                (ConditionValue::Single(literal), Form::Number(_)) => match number_literal(literal)
                {
                    Some(n) => Test::Number(n),
                    None => Test::Bytes(text_literal_bytes(literal, size, page).map_err(context)?),
                },
                (ConditionValue::Single(literal), Form::Text { .. }) => {
                    Test::Bytes(text_literal_bytes(literal, size, page).map_err(context)?)
                }
                (ConditionValue::Range(low, high), Form::Number(_)) => {
                    match (number_literal(low), number_literal(high)) {
                        (Some(low), Some(high)) => Test::NumberRange(low, high),
                        _ => return Err(context("a THRU range of a number needs numbers".into())),
                    }
                }
                (ConditionValue::Range(low, high), Form::Text { .. }) => Test::BytesRange(
                    text_literal_bytes(low, size, page).map_err(context)?,
                    text_literal_bytes(high, size, page).map_err(context)?,
                ),
            };
            tests.push(test);
        }
        let first = match condition.values.first() {
            Some(ConditionValue::Single(literal) | ConditionValue::Range(literal, _)) => {
                literal_bytes(literal, form, size, page)
            }
            None => Err("has no value".into()),
        }
        .map_err(|e| format!("its 88-level {} {e}", condition.name));
        Ok(Cond {
            cobol: condition.name.clone(),
            enum_name: enum_name(&condition.name, field_name, &self.options.strip_prefixes),
            tests,
            first,
        })
    }

    /// Checks each group's children: in order, not overlapping, and every `REDEFINES` naming
    /// the item just before it (or another view of that item) at the same offset.
    fn link_redefines(&mut self) -> Result<(), String> {
        for group in 0..self.nodes.len() {
            let Kind::Group(children) = &self.nodes[group].kind else {
                continue;
            };
            let children = children.clone();
            let group_size = self.nodes[group].size;
            let group_name = self.nodes[group].cobol.clone();
            let mut base: Option<NodeId> = None;
            let mut views: Vec<String> = Vec::new();
            let mut end = 0usize;
            for id in children {
                let target = self.redefines_target(id);
                let node = &self.nodes[id];
                match target {
                    Some(target) => {
                        let Some(b) = base else {
                            return Err(format!(
                                "{} REDEFINES {target}, which is not before it",
                                node.cobol
                            ));
                        };
                        if !views.iter().any(|v| v.eq_ignore_ascii_case(&target)) {
                            return Err(format!(
                                "{} REDEFINES {target}, but the item before it is {}",
                                node.cobol, self.nodes[b].cobol
                            ));
                        }
                        if node.rel != self.nodes[b].rel {
                            return Err(format!(
                                "{} REDEFINES {target} but starts at another byte",
                                node.cobol
                            ));
                        }
                        views.push(node.cobol.clone());
                        self.nodes[id].redefines = true;
                        self.nodes[id].set_base = Some(b);
                        self.nodes[b].set_base = Some(b);
                    }
                    None => {
                        if node.rel < end {
                            return Err(format!("{} overlaps the item before it", node.cobol));
                        }
                        end = node.rel.saturating_add(node.total);
                        if end > group_size {
                            return Err(format!(
                                "{} ends at byte {end} of {group_name}, which has {group_size}",
                                node.cobol
                            ));
                        }
                        base = Some(id);
                        views = vec![node.cobol.clone()];
                    }
                }
            }
        }
        Ok(())
    }

    fn redefines_target(&self, id: NodeId) -> Option<String> {
        self.redefines_names.get(id).cloned().flatten()
    }

    fn is_ancestor(&self, ancestor: NodeId, mut id: NodeId) -> bool {
        while id != ROOT {
            id = self.nodes[id].parent;
            if id == ancestor {
                return true;
            }
        }
        false
    }

    /// The tables an item is in (itself included when `inclusive`), innermost first.
    fn tables(&self, mut id: NodeId, inclusive: bool) -> Vec<NodeId> {
        let mut tables = Vec::new();
        if !inclusive {
            id = self.nodes[id].parent;
        }
        while id != ROOT {
            if self.nodes[id].table.is_some() {
                tables.push(id);
            }
            id = self.nodes[id].parent;
        }
        tables
    }

    /// Ids of an item's descendants: pre-order makes them contiguous.
    fn descendants(&self, id: NodeId) -> std::ops::Range<NodeId> {
        let mut last = id;
        while let Kind::Group(children) = &self.nodes[last].kind {
            match children.last() {
                Some(&child) => last = child,
                None => break,
            }
        }
        id + 1..last + 1
    }

    fn ancestors_or_self(&self, mut id: NodeId) -> Vec<NodeId> {
        let mut chain = vec![id];
        while id != ROOT {
            id = self.nodes[id].parent;
            chain.push(id);
        }
        chain
    }

    fn resolve_depending(&mut self) -> Result<(), String> {
        let mut by_name: HashMap<String, Vec<NodeId>> = HashMap::new();
        for (id, node) in self.nodes.iter().enumerate().skip(1) {
            if node.named {
                by_name
                    .entry(node.cobol.to_ascii_uppercase())
                    .or_default()
                    .push(id);
            }
        }
        let mut slots = 0;
        for id in 0..self.nodes.len() {
            let Some(object_name) = self.depending_names[id].clone() else {
                continue;
            };
            let table = self.nodes[id].cobol.clone();
            let context = |e: &str| format!("{table} OCCURS DEPENDING ON {object_name}: {e}");
            let object = match by_name
                .get(&object_name.to_ascii_uppercase())
                .map(Vec::as_slice)
            {
                Some([object]) => *object,
                Some(_) => return Err(context("more than one item has that name")),
                None => return Err(context("no item of the record has that name")),
            };
            let o = &self.nodes[object];
            if !matches!(&o.kind, Kind::Field(Field { form: Form::Number(spec), .. }) if spec.scale == 0)
                || o.table.is_some()
            {
                return Err(context(
                    "the count must be a numeric field without decimals or OCCURS",
                ));
            }
            if object >= id {
                return Err(context("the count must come before the table"));
            }
            let outer = self.tables(id, false);
            if self
                .tables(object, false)
                .iter()
                .any(|t| !outer.contains(t))
            {
                return Err(context("the count is in a table the OCCURS is not in"));
            }
            if o.null_when.is_some() {
                return Err(context("the count field cannot have `null_when`"));
            }
            if self
                .ancestors_or_self(object)
                .iter()
                .any(|&a| self.node_options[a].is_some_and(|opts| opts.when.is_some()))
            {
                return Err(context(
                    "the count field is in an item with `when`, so may not be read",
                ));
            }
            if self
                .ancestors_or_self(id)
                .iter()
                .any(|&a| self.nodes[a].set_base.is_some())
            {
                return Err(context(
                    "a variable-length table inside REDEFINES is not supported",
                ));
            }
            let slot = *self.nodes[object].count_slot.get_or_insert(slots);
            if slot == slots {
                slots += 1;
            }
            self.nodes[object].counted_tables.push(id);
            if let Some(t) = self.nodes[id].table.as_mut() {
                t.depending = Some(Depending { object, slot });
            }
            for a in self.ancestors_or_self(id) {
                self.nodes[a].variable = true;
            }
        }
        Ok(())
    }

    fn resolve_when(&mut self) -> Result<(), String> {
        let mut by_name: HashMap<String, Vec<(NodeId, usize)>> = HashMap::new();
        for (id, node) in self.nodes.iter().enumerate() {
            for (index, condition) in node.conditions.iter().enumerate() {
                by_name
                    .entry(condition.cobol.to_ascii_uppercase())
                    .or_default()
                    .push((id, index));
            }
        }
        let mut slots = 0;
        for id in 0..self.nodes.len() {
            let Some(condition) = self.node_options[id].and_then(|o| o.when.clone()) else {
                continue;
            };
            let item = self.nodes[id].cobol.clone();
            let context = |e: &str| format!("fields.{item}: `when = {condition}`: {e}");
            if self.nodes[id].set_base.is_none() {
                return Err(context(
                    "`when` is only for an item that REDEFINES another or is redefined",
                ));
            }
            let (source, index) = match by_name
                .get(&condition.to_ascii_uppercase())
                .map(Vec::as_slice)
            {
                Some([one]) => *one,
                Some(_) => return Err(context("more than one 88-level has that name")),
                None => {
                    return Err(context(&format!(
                        "no 88-level of record {} has that name",
                        self.record
                    )));
                }
            };
            if source >= id && !self.is_ancestor(source, id) {
                return Err(context("the condition's field must come before the item"));
            }
            if source == id {
                return Err(context("the condition is on the item itself"));
            }
            if self
                .tables(source, true)
                .iter()
                .any(|&t| !self.is_ancestor(t, id))
            {
                return Err(context(
                    "the condition's field is in a table the item is not in",
                ));
            }
            if self.nodes[source].variable {
                return Err(context("the condition is on a group of variable length"));
            }
            let slot = *self.nodes[source].position_slot.get_or_insert(slots);
            if slot == slots {
                slots += 1;
            }
            self.nodes[id].when = Some(When {
                source,
                condition: index,
                slot,
            });
        }
        Ok(())
    }

    fn check_null_when(&self) -> Result<(), String> {
        for (id, node) in self.nodes.iter().enumerate() {
            let Some(null_when) = node.null_when else {
                continue;
            };
            let context = |e: &str| format!("fields.{}: `null_when`: {e}", node.cobol);
            match &node.kind {
                Kind::Field(field) => {
                    if null_when == NullWhen::Zero && !matches!(field.form, Form::Number(_)) {
                        return Err(context("`zero` is for numeric fields"));
                    }
                }
                Kind::Group(_) => {
                    if null_when == NullWhen::Zero {
                        return Err(context("`zero` is for numeric fields, this is a group"));
                    }
                    if node.variable {
                        return Err(context("the group's length varies (OCCURS DEPENDING ON)"));
                    }
                    if self.descendants(id).any(|d| {
                        self.nodes[d].position_slot.is_some() || self.nodes[d].count_slot.is_some()
                    }) {
                        return Err(context(
                            "the group holds a count or a `when` condition that must always be read",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn mark_walk_and_emit(&mut self) {
        for id in (0..self.nodes.len()).rev() {
            let node = &self.nodes[id];
            let mut walk =
                node.position_slot.is_some() || node.count_slot.is_some() || node.variable;
            let mut child_emits = false;
            if let Kind::Group(children) = &node.kind {
                for &c in children {
                    walk |= self.nodes[c].walk;
                    child_emits |= self.nodes[c].emit;
                }
            }
            let emit = id == ROOT || node.json.is_some() || (node.flatten && child_emits);
            let node = &mut self.nodes[id];
            node.walk = walk;
            node.emit = emit;
        }
    }

    fn collect_keys<'a>(&'a self, group: NodeId, keys: &mut Vec<(&'a str, NodeId)>) {
        let Kind::Group(children) = &self.nodes[group].kind else {
            return;
        };
        for &c in children {
            let child = &self.nodes[c];
            if !child.emit {
                continue;
            }
            match &child.json {
                Some(key) => keys.push((key, c)),
                None if child.flatten => self.collect_keys(c, keys),
                None => {}
            }
        }
    }

    fn check_json_names(&self) -> Result<(), String> {
        for (id, node) in self.nodes.iter().enumerate() {
            if !matches!(node.kind, Kind::Group(_)) || (id != ROOT && (node.flatten || !node.emit))
            {
                continue;
            }
            let mut keys = Vec::new();
            self.collect_keys(id, &mut keys);
            for (i, (key, a)) in keys.iter().enumerate() {
                if let Some((_, b)) = keys[..i].iter().find(|(k, _)| k == key) {
                    return Err(format!(
                        "{} and {} both become the JSON field `{key}`: give one a `name`",
                        self.nodes[*b].cobol, self.nodes[*a].cobol
                    ));
                }
            }
        }
        Ok(())
    }

    fn finish(mut self, record: &Item) -> Result<RecordCodec, String> {
        for id in (0..self.nodes.len()).rev() {
            let node = &self.nodes[id];
            let one = match &node.kind {
                Kind::Group(children) => {
                    let saved: usize = children
                        .iter()
                        .map(|&c| &self.nodes[c])
                        .filter(|c| !c.redefines)
                        .map(|c| c.total.saturating_sub(c.min_total))
                        .sum();
                    node.size.saturating_sub(saved)
                }
                Kind::Field(_) => node.size,
            };
            let times = match &node.table {
                None => 1,
                Some(t) if t.depending.is_some() => t.min,
                Some(t) => t.max,
            };
            self.nodes[id].min_total = one.saturating_mul(times);
        }
        let mut absolute = vec![0usize; self.nodes.len()];
        let mut extent = 0usize;
        for id in 0..self.nodes.len() {
            let node = &self.nodes[id];
            let start = if id == ROOT {
                0
            } else {
                absolute[node.parent]
                    .checked_add(node.rel)
                    .ok_or_else(|| format!("{} lies beyond any record", node.cobol))?
            };
            absolute[id] = start;
            let end = start
                .checked_add(node.total)
                .ok_or_else(|| format!("{} lies beyond any record", node.cobol))?;
            extent = extent.max(end);
        }
        let mut scopes: HashMap<NodeId, HashMap<String, Option<NodeId>>> = HashMap::new();
        for (id, node) in self.nodes.iter().enumerate().skip(1) {
            if node.named {
                scopes
                    .entry(node.owner)
                    .or_default()
                    .entry(node.cobol.clone())
                    .and_modify(|e| *e = None)
                    .or_insert(Some(id));
            }
        }
        let position_slots = self
            .nodes
            .iter()
            .filter_map(|n| n.position_slot)
            .map(|s| s + 1)
            .max()
            .unwrap_or(0);
        let count_slots = self
            .nodes
            .iter()
            .filter_map(|n| n.count_slot)
            .map(|s| s + 1)
            .max()
            .unwrap_or(0);
        let record_len = record.total_size();
        Ok(RecordCodec {
            min_len: self.nodes[ROOT].min_total,
            nodes: self.nodes,
            page: self.options.code_page,
            pad: match self.options.text_pad {
                Pad::Spaces => ebcdic::SPACE,
                Pad::LowValues => 0,
            },
            record_len,
            extent: extent.max(record_len),
            position_slots,
            count_slots,
            scopes,
        })
    }
}

/// How a picture's bytes hold its value, checked against the size the layout gives it.
fn field_form(cobol: &str, picture: &Picture, size: usize) -> Result<Form, String> {
    let (form, bytes) = match &picture.class {
        PicClass::Alphanumeric { len } | PicClass::Edited { len } => {
            if picture.usage != Usage::Display {
                return Err(format!(
                    "{cobol} PIC {}: text cannot be COMP or COMP-3",
                    picture.text
                ));
            }
            let edited = matches!(picture.class, PicClass::Edited { .. });
            (Form::Text { edited }, *len)
        }
        PicClass::Numeric {
            digits,
            scale,
            sign,
        } => {
            let spec = NumSpec::new(*digits, *scale, *sign, picture.usage)
                .map_err(|e| format!("{cobol} PIC {} {e}", picture.text))?;
            (Form::Number(spec), spec.byte_len())
        }
    };
    if bytes != size {
        return Err(format!(
            "{cobol} PIC {} takes {bytes} bytes, but the layout gives it {size}",
            picture.text
        ));
    }
    Ok(form)
}

/// A literal as a number, when it is one (`ZERO` is 0; text that reads as a decimal counts).
fn number_literal(literal: &Literal) -> Option<Decimal> {
    match literal {
        Literal::Number(n) => Some(*n),
        Literal::Zeros => Some(Decimal::ZERO),
        Literal::Text(text) => numeric::parse_decimal(text.trim()),
        Literal::Spaces | Literal::LowValues | Literal::HighValues => None,
    }
}

/// A literal as the bytes of a text field of `size` bytes: text padded with spaces as a COBOL
/// `VALUE` is; a figurative constant repeated.
fn text_literal_bytes(literal: &Literal, size: usize, page: CodePage) -> Result<Vec<u8>, String> {
    let text = match literal {
        Literal::Text(text) => text.trim_end_matches(' ').to_owned(),
        Literal::Number(n) => n.to_string(),
        Literal::Spaces => return Ok(vec![ebcdic::SPACE; size]),
        Literal::Zeros => return Ok(vec![0xF0; size]),
        Literal::LowValues => return Ok(vec![0; size]),
        Literal::HighValues => return Ok(vec![0xFF; size]),
    };
    let mut bytes = ebcdic::encode(page, &text).map_err(|e| format!("has a {e}"))?;
    if bytes.len() > size {
        return Err(format!(
            "is {} characters, the field holds {size}",
            bytes.len()
        ));
    }
    bytes.resize(size, ebcdic::SPACE);
    Ok(bytes)
}

/// A literal as the bytes of a field of this form.
fn literal_bytes(
    literal: &Literal,
    form: Form,
    size: usize,
    page: CodePage,
) -> Result<Vec<u8>, String> {
    match (form, literal) {
        (Form::Text { .. }, _) => text_literal_bytes(literal, size, page),
        (Form::Number(_), Literal::Spaces | Literal::LowValues | Literal::HighValues) => {
            text_literal_bytes(literal, size, page)
        }
        (Form::Number(spec), _) => {
            let number = number_literal(literal).ok_or("is not a number")?;
            let mut out = vec![0u8; size];
            spec.encode(number, &mut out).map_err(|e| e.to_string())?;
            Ok(out)
        }
    }
}

/// Checks a `date` option: a valid chrono format that reads back a whole date, on an
/// alphanumeric field or an integer one.
fn check_date_format(cobol: &str, format: &str, form: Form) -> Result<DateFormat, String> {
    let context = |e: &str| format!("fields.{cobol}: `date = \"{format}\"`: {e}");
    match form {
        Form::Text { edited: true } => {
            return Err(context("a date must be alphanumeric or numeric"));
        }
        Form::Number(spec) if spec.scale > 0 => {
            return Err(context("a numeric date cannot have decimals"));
        }
        _ => {}
    }
    let items = StrftimeItems::new(format)
        .parse_to_owned()
        .map_err(|_| context("not a chrono format"))?;
    let sample = NaiveDate::from_ymd_opt(2024, 12, 31).ok_or_else(|| context("no sample date"))?;
    let mut text = String::new();
    write!(text, "{}", sample.format_with_items(items.iter()))
        .map_err(|_| context("not a chrono format"))?;
    let mut parsed = Parsed::new();
    let back = chrono::format::parse(&mut parsed, &text, items.iter())
        .and_then(|()| parsed.to_naive_date());
    if back != Ok(sample) {
        return Err(context(
            "the format does not hold a whole date (year, month and day)",
        ));
    }
    Ok(DateFormat {
        text: format.to_owned(),
        items,
    })
}

/// The name without the first of `prefixes` it starts with (unless nothing would be left).
fn strip_prefix<'a>(name: &'a str, prefixes: &[String]) -> &'a str {
    for prefix in prefixes {
        if let (Some(head), Some(rest)) = (name.get(..prefix.len()), name.get(prefix.len()..))
            && head.eq_ignore_ascii_case(prefix)
            && !rest.is_empty()
        {
            return rest;
        }
    }
    name
}

/// `CASE-OPEN-DATE` → `caseOpenDate`.
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (index, word) in name.split('-').filter(|w| !w.is_empty()).enumerate() {
        let mut chars = word.chars();
        if index > 0
            && let Some(first) = chars.next()
        {
            out.extend(first.to_uppercase());
        }
        out.extend(chars.flat_map(char::to_lowercase));
    }
    out
}

/// The enum name of an 88-level: prefix stripped, the field's own (stripped) name and `-`
/// removed from its front, `-` → `_`, upper case (`BNQ-CASE-STATUS-OPEN` → `OPEN`).
fn enum_name(condition: &str, field: &str, prefixes: &[String]) -> String {
    let name = strip_prefix(condition, prefixes);
    let rest = name
        .get(..field.len())
        .filter(|head| head.eq_ignore_ascii_case(field))
        .and_then(|_| name.get(field.len()..))
        .and_then(|rest| rest.strip_prefix('-'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(name);
    rest.replace('-', "_").to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::connectors::mainframe::copybook::{Copybook, Occurs, Position, Sign};

    /// A multi-key answer is records back to back, each as long as its table makes it.
    #[test]
    fn records_back_to_back_decode_one_after_another() {
        let copybook = Copybook::parse(
            "R.cpy",
            "       01  R.\n\
             \x20          05  N  PIC 9.\n\
             \x20          05  T  PIC X(2) OCCURS 0 TO 3 TIMES DEPENDING ON N.\n\
             \x20          05  E  PIC X.\n",
        )
        .expect("a valid copybook");
        let record = copybook.record(Some("R")).expect("record R");
        let codec = RecordCodec::new(record, CodecOptions::default()).expect("a codec");
        let first = codec
            .encode(
                json!({"T": ["ab"], "E": "z"})
                    .as_object()
                    .expect("an object"),
            )
            .expect("encodes");
        let second = codec
            .encode(
                json!({"T": ["cd", "ef", "gh"], "E": "y"})
                    .as_object()
                    .expect("an object"),
            )
            .expect("encodes");
        assert_eq!((first.len(), second.len()), (4, 8));
        let both = [first.as_slice(), second.as_slice()].concat();
        let (one, used) = codec.decode_prefix(&both).expect("the first record");
        assert_eq!(used, 4);
        assert_eq!(Value::Object(one), json!({"n": "1", "t": ["ab"], "e": "z"}));
        let (two, used) = codec.decode_prefix(&both[4..]).expect("the second record");
        assert_eq!(used, 8);
        assert_eq!(
            Value::Object(two.clone()),
            json!({"n": "3", "t": ["cd", "ef", "gh"], "e": "y"})
        );
        assert_eq!(codec.decode(&both[4..]).expect("decodes"), two);
    }

    // ----- hand-built layouts (the parser is tested on its own) -----

    fn item(level: u8, name: &str, kind: ItemKind) -> Item {
        Item {
            level,
            name: (name != "FILLER").then(|| name.to_owned()),
            position: Position { line: 1, column: 8 },
            offset: 0,
            size: 0,
            occurs: None,
            redefines: None,
            kind,
            value: None,
            conditions: Vec::new(),
        }
    }

    fn text(level: u8, name: &str, len: usize) -> Item {
        let picture = Picture {
            text: format!("X({len})"),
            class: PicClass::Alphanumeric { len },
            usage: Usage::Display,
        };
        item(level, name, ItemKind::Field(picture))
    }

    fn edited(level: u8, name: &str, len: usize) -> Item {
        let picture = Picture {
            text: "Z(n)9.99".into(),
            class: PicClass::Edited { len },
            usage: Usage::Display,
        };
        item(level, name, ItemKind::Field(picture))
    }

    fn number(level: u8, name: &str, digits: u8, scale: u8, sign: Sign, usage: Usage) -> Item {
        let picture = Picture {
            text: format!("9({digits})V9({scale})"),
            class: PicClass::Numeric {
                digits,
                scale,
                sign,
            },
            usage,
        };
        item(level, name, ItemKind::Field(picture))
    }

    fn group(level: u8, name: &str, children: Vec<Item>) -> Item {
        item(level, name, ItemKind::Group(children))
    }

    fn occurs(mut item: Item, min: usize, max: usize, depending_on: Option<&str>) -> Item {
        item.occurs = Some(Occurs {
            min,
            max,
            depending_on: depending_on.map(str::to_owned),
        });
        item
    }

    fn redefines(mut item: Item, target: &str) -> Item {
        item.redefines = Some(target.to_owned());
        item
    }

    fn conditions(mut item: Item, list: &[(&str, Vec<ConditionValue>)]) -> Item {
        item.conditions = list
            .iter()
            .map(|(name, values)| Condition {
                name: (*name).to_owned(),
                position: Position {
                    line: 1,
                    column: 12,
                },
                values: values.clone(),
            })
            .collect();
        item
    }

    fn is(text: &str) -> Vec<ConditionValue> {
        vec![ConditionValue::Single(Literal::Text(text.into()))]
    }

    /// Assigns offsets and sizes as the parser does: children one after another, a
    /// `REDEFINES` at its target's offset, a group the sum of its non-redefining children.
    fn layout(mut record: Item) -> Item {
        place(&mut record, 0);
        record
    }

    fn place(item: &mut Item, offset: usize) -> usize {
        item.offset = offset;
        item.size = match &mut item.kind {
            ItemKind::Field(picture) => match &picture.class {
                PicClass::Alphanumeric { len } | PicClass::Edited { len } => *len,
                PicClass::Numeric {
                    digits,
                    scale,
                    sign,
                } => NumSpec::new(*digits, *scale, *sign, picture.usage)
                    .map(|s| s.byte_len())
                    .unwrap_or(1),
            },
            ItemKind::Group(children) => {
                let mut cursor = offset;
                let mut base = offset;
                for child in children {
                    if child.redefines.is_some() {
                        place(child, base);
                    } else {
                        base = cursor;
                        cursor += place(child, cursor);
                    }
                }
                cursor - offset
            }
        };
        item.total_size()
    }

    fn e(text: &str) -> Vec<u8> {
        ebcdic::encode(CodePage::Cp037, text).expect("Latin-1 test text")
    }

    fn options(fields: &[(&str, FieldOptions)]) -> CodecOptions {
        CodecOptions {
            strip_prefixes: vec!["BNQ-".into()],
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            ..CodecOptions::default()
        }
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// 01 BNQ-REC: a case number, a status with 88-levels, a date, a binary count and a
    /// variable table of (type, packed amount), then a trailer after the table.
    fn cases_record() -> Item {
        layout(group(
            1,
            "BNQ-REC",
            vec![
                text(5, "BNQ-CASE-NUMBER", 8),
                conditions(
                    text(5, "BNQ-CASE-STATUS", 1),
                    &[
                        ("BNQ-CASE-STATUS-OPEN", is("O")),
                        ("BNQ-CASE-STATUS-CLOSED", is("C")),
                    ],
                ),
                number(5, "BNQ-OPENED", 8, 0, Sign::Unsigned, Usage::Display),
                number(5, "BNQ-CASE-COUNT", 4, 0, Sign::Trailing, Usage::Binary),
                occurs(
                    group(
                        5,
                        "BNQ-CASES",
                        vec![
                            text(10, "BNQ-CASE-TYPE", 2),
                            number(
                                10,
                                "BNQ-MONTHLY-AMOUNT",
                                9,
                                2,
                                Sign::Trailing,
                                Usage::Packed,
                            ),
                        ],
                    ),
                    0,
                    3,
                    Some("BNQ-CASE-COUNT"),
                ),
                text(5, "BNQ-TRAILER", 4),
            ],
        ))
    }

    fn cases_options() -> CodecOptions {
        options(&[(
            "BNQ-OPENED",
            FieldOptions {
                decode: FieldDecode::Date("%Y%m%d".into()),
                ..FieldOptions::default()
            },
        )])
    }

    /// Two cases: offsets 0 number, 8 status, 9 date, 17 count, 19 and 26 the cases, 33 the
    /// trailer (shifted up by one unused 7-byte entry).
    fn two_cases() -> Vec<u8> {
        let mut bytes = e("ABC12345O20240131");
        bytes.extend([0x00, 0x02]);
        bytes.extend(e("UI"));
        bytes.extend([0x00, 0x00, 0x12, 0x05, 0x0C]);
        bytes.extend(e("DI"));
        bytes.extend([0x00, 0x00, 0x00, 0x00, 0x5D]);
        bytes.extend(e("TRLR"));
        bytes
    }

    fn cases_codec() -> RecordCodec {
        RecordCodec::new(&cases_record(), cases_options()).expect("valid options")
    }

    #[test]
    fn decodes_a_variable_table_and_shifts_what_follows() {
        let codec = cases_codec();
        assert_eq!(codec.record_len(), 44);
        assert_eq!(codec.min_len(), 23);
        let decoded = codec.decode(&two_cases()).expect("decodes");
        assert_eq!(
            Value::Object(decoded),
            json!({
                "caseNumber": "ABC12345",
                "caseStatus": "OPEN",
                "opened": "2024-01-31",
                "caseCount": "2",
                "cases": [
                    {"caseType": "UI", "monthlyAmount": "120.50"},
                    {"caseType": "DI", "monthlyAmount": "-0.05"}
                ],
                "trailer": "TRLR"
            })
        );
    }

    #[test]
    fn empty_and_full_tables() {
        let codec = cases_codec();
        let mut empty = e("ABC12345C20240131");
        empty.extend([0x00, 0x00]);
        empty.extend(e("TRLR"));
        let decoded = codec.decode(&empty).expect("decodes");
        assert_eq!(decoded["cases"], json!([]));
        assert_eq!(decoded["trailer"], json!("TRLR"));
        assert_eq!(decoded["caseStatus"], json!("CLOSED"));
        let mut full = e("ABC12345C20240131");
        full.extend([0x00, 0x03]);
        for _ in 0..3 {
            full.extend(e("UI"));
            full.extend([0x99, 0x99, 0x99, 0x99, 0x9C]);
        }
        full.extend(e("TRLR"));
        assert_eq!(full.len(), codec.record_len());
        let decoded = codec.decode(&full).expect("decodes");
        assert_eq!(decoded["cases"][2]["monthlyAmount"], json!("9999999.99"));
        assert_eq!(decoded["trailer"], json!("TRLR"));
        // A longer slot (fixed-length extract) is fine.
        full.extend(e("    "));
        assert!(codec.decode(&full).is_ok());
    }

    #[test]
    fn errors_name_the_path_and_offset() {
        let codec = cases_codec();
        let mut bytes = two_cases();
        bytes[32] = 0x5A; // second amount (bytes 28-32), last byte: sign nibble A
        let error = codec.decode(&bytes).expect_err("bad sign");
        assert_eq!(error.field, "BNQ-CASES(2).BNQ-MONTHLY-AMOUNT");
        assert_eq!(error.offset, 28);
        assert_eq!(error.problem, DecodeProblem::BadSign { nibble: 0xA });
        assert_eq!(
            error.to_string(),
            "field BNQ-CASES(2).BNQ-MONTHLY-AMOUNT at byte 28: sign nibble 0xa is not C, D or F"
        );

        let mut bytes = two_cases();
        bytes[18] = 4;
        let error = codec.decode(&bytes).expect_err("count 4 of at most 3");
        assert_eq!((error.field.as_str(), error.offset), ("BNQ-CASES", 19));
        assert_eq!(
            error.problem,
            DecodeProblem::BadOccursCount {
                count: 4,
                min: 0,
                max: 3
            }
        );

        let bytes = two_cases();
        let error = codec.decode(&bytes[..35]).expect_err("short");
        assert_eq!((error.field.as_str(), error.offset), ("BNQ-TRAILER", 33));
        assert_eq!(
            error.problem,
            DecodeProblem::ShortRecord {
                needed: 37,
                actual: 35
            }
        );

        let error = codec.decode(&bytes[..22]).expect_err("short in the table");
        assert_eq!(
            (error.field.as_str(), error.offset),
            ("BNQ-CASES(1).BNQ-MONTHLY-AMOUNT", 21)
        );

        let mut bytes = two_cases();
        bytes[8] = 0xC1; // status 'A'
        let error = codec.decode(&bytes).expect_err("no 88 for A");
        assert_eq!((error.field.as_str(), error.offset), ("BNQ-CASE-STATUS", 8));
        assert_eq!(error.problem, DecodeProblem::NoCondition);

        let mut bytes = two_cases();
        bytes[13] = 0xF1; // month 13
        let error = codec.decode(&bytes).expect_err("bad date");
        assert_eq!((error.field.as_str(), error.offset), ("BNQ-OPENED", 9));
        assert_eq!(
            error.problem,
            DecodeProblem::BadDate {
                format: "%Y%m%d".into()
            }
        );

        assert_eq!(
            codec.decode(&[]).map_err(|e| e.field),
            Err("BNQ-CASE-NUMBER".into())
        );
    }

    #[test]
    fn encodes_from_cobol_names_and_round_trips() {
        let codec = cases_codec();
        let values = object(json!({
            "BNQ-CASE-NUMBER": "ABC12345",
            "BNQ-CASE-STATUS": "OPEN",
            "BNQ-OPENED": "2024-01-31",
            "BNQ-CASES": [
                {"BNQ-CASE-TYPE": "UI", "BNQ-MONTHLY-AMOUNT": "120.5"},
                {"BNQ-CASE-TYPE": "DI", "BNQ-MONTHLY-AMOUNT": -0.05}
            ],
            "BNQ-TRAILER": "TRLR"
        }));
        assert_eq!(codec.encode(&values), Ok(two_cases()));
        let decoded = codec.decode(&two_cases()).expect("decodes");
        assert_eq!(decoded["cases"][0]["monthlyAmount"], json!("120.50"));
    }

    #[test]
    fn encoding_checks_counts_and_values() {
        let codec = cases_codec();
        let error = |values: Value| codec.encode(&object(values)).expect_err("refused");
        let e1 = error(json!({"BNQ-CASE-COUNT": 1, "BNQ-CASES": [{}, {}]}));
        assert_eq!(e1.field, "BNQ-CASE-COUNT");
        let e2 = error(json!({"BNQ-CASES": [{}, {}, {}, {}]}));
        assert_eq!(e2.field, "BNQ-CASES");
        assert_eq!(e2.problem, "has 4 entries; the table holds at most 3");
        let e3 = error(json!({"BNQ-CASES": [{"BNQ-MONTHLY-AMOUNT": "1.001"}]}));
        assert_eq!(e3.field, "BNQ-CASES(1).BNQ-MONTHLY-AMOUNT");
        assert!(e3.problem.contains("decimal places"), "{}", e3.problem);
        let e4 = error(json!({"BNQ-CASES": [{"BNQ-MONTHLY-AMOUNT": "10000000"}]}));
        assert!(e4.problem.contains("integer digits"), "{}", e4.problem);
        let e5 = error(json!({"BNQ-CASE-NUMBER": "ABCDEFGHIJ"}));
        assert_eq!(e5.problem, "is 10 characters, the field holds 8");
        let e6 = error(json!({"BNQ-NOPE": 1}));
        assert_eq!(e6.field, "BNQ-NOPE");
        let e7 = error(json!({"bnq-trailer": "x"}));
        assert!(e7.problem.contains("BNQ-TRAILER"), "{}", e7.problem);
        let e8 = error(json!({"BNQ-CASE-STATUS": "PENDING"}));
        assert!(e8.problem.contains("OPEN, CLOSED"), "{}", e8.problem);
        let e9 = error(json!({"BNQ-OPENED": "31/01/2024"}));
        assert_eq!(e9.field, "BNQ-OPENED");
        let e10 = error(json!({"BNQ-CASE-TYPE": "UI"}));
        assert!(e10.problem.contains("not an item"), "{}", e10.problem);
        let e11 = error(json!({"BNQ-CASES": {"BNQ-CASE-TYPE": "UI"}}));
        assert!(e11.problem.contains("array"), "{}", e11.problem);
        let e12 = error(json!({"BNQ-CASE-NUMBER": true}));
        assert!(e12.problem.contains("string or number"), "{}", e12.problem);
        let e13 = error(json!({"BNQ-CASE-NUMBER": "Grüße €"}));
        assert_eq!(e13.problem, "character 7 has no byte in code page 037");
        // No error message repeats the value.
        for err in [e1, e2, e3, e4, e5, e8, e9, e13] {
            assert!(
                !err.to_string().contains("ABCDEFGHIJ") && !err.to_string().contains("PENDING")
            );
        }
        // Defaults: spaces, zeros, an empty table and a raw status that an 88 names.
        let bytes = codec
            .encode(&object(json!({"BNQ-CASE-STATUS": "C"})))
            .expect("defaults");
        let mut expected = e("        C00000000");
        expected.extend([0x00, 0x00]);
        expected.extend(e("    "));
        assert_eq!(bytes, expected);
    }

    #[test]
    fn text_padding_and_truncation_follow_the_options() {
        let record = layout(group(1, "R", vec![text(5, "NAME", 4), text(5, "CODE", 3)]));
        let mut opts = options(&[(
            "CODE",
            FieldOptions {
                overflow: Some(Overflow::Error),
                ..FieldOptions::default()
            },
        )]);
        opts.text_overflow = Overflow::Truncate;
        opts.text_pad = Pad::LowValues;
        let codec = RecordCodec::new(&record, opts).expect("valid");
        let bytes = codec.encode(&object(json!({"NAME": "Johnson", "CODE": "A"})));
        let mut expected = e("John");
        expected.extend(e("A"));
        expected.extend([0, 0]);
        assert_eq!(bytes, Ok(expected));
        let error = codec
            .encode(&object(json!({"CODE": "ABCD"})))
            .expect_err("field says error");
        assert_eq!(error.problem, "is 4 characters, the field holds 3");
    }

    fn views_record() -> Item {
        layout(group(
            1,
            "R",
            vec![
                conditions(
                    text(5, "R-TYPE", 1),
                    &[("R-TYPE-PERSON", is("P")), ("R-TYPE-ORG", is("O"))],
                ),
                text(5, "R-BODY", 6),
                redefines(
                    group(
                        5,
                        "R-PERSON",
                        vec![
                            number(10, "R-AGE", 3, 0, Sign::Unsigned, Usage::Display),
                            text(10, "R-INITIALS", 3),
                        ],
                    ),
                    "R-BODY",
                ),
                redefines(
                    group(
                        5,
                        "R-ORG",
                        vec![
                            number(10, "R-EMPLOYEES", 5, 0, Sign::Trailing, Usage::Packed),
                            text(10, "FILLER", 3),
                        ],
                    ),
                    "R-BODY",
                ),
                text(5, "R-END", 1),
            ],
        ))
    }

    fn when(condition: &str) -> FieldOptions {
        FieldOptions {
            when: Some(condition.into()),
            ..FieldOptions::default()
        }
    }

    #[test]
    fn redefines_views_follow_when() {
        let opts = options(&[
            ("R-PERSON", when("R-TYPE-PERSON")),
            ("R-ORG", when("R-TYPE-ORG")),
        ]);
        let codec = RecordCodec::new(&views_record(), opts).expect("valid");
        let person = [e("P042ABC"), e("!")].concat();
        assert_eq!(
            Value::Object(codec.decode(&person).expect("person")),
            json!({
                "rType": "PERSON",
                "rBody": "042ABC",
                "rPerson": {"rAge": "42", "rInitials": "ABC"},
                "rOrg": null,
                "rEnd": "!"
            })
        );
        let mut org = e("O");
        org.extend([0x01, 0x23, 0x4C]);
        org.extend(e("   ."));
        let decoded = codec.decode(&org).expect("org");
        assert_eq!(decoded["rPerson"], Value::Null);
        assert_eq!(decoded["rOrg"], json!({"rEmployees": "1234"}));
        // Neither condition: both views null, and their bytes are not checked.
        let neither = [e("X"), vec![0xFF; 6], e(".")].concat();
        let error = codec.decode(&neither).expect_err("R-TYPE has no 88 for X");
        assert_eq!(error.field, "R-TYPE");

        // Without `when`, every view is decoded, so the packed view of text fails.
        let codec = RecordCodec::new(&views_record(), options(&[])).expect("valid");
        let error = codec.decode(&person).expect_err("text is not packed");
        assert_eq!(
            (error.field.as_str(), error.offset),
            ("R-ORG.R-EMPLOYEES", 1)
        );
        assert_eq!(error.problem, DecodeProblem::BadPackedDigit { nibble: 0xF });

        // Encoding takes one view, and refuses two.
        let opts = options(&[
            ("R-PERSON", when("R-TYPE-PERSON")),
            ("R-ORG", when("R-TYPE-ORG")),
        ]);
        let codec = RecordCodec::new(&views_record(), opts).expect("valid");
        let bytes = codec.encode(&object(
            json!({"R-TYPE": "ORG", "R-EMPLOYEES": 1234, "R-END": "."}),
        ));
        assert_eq!(bytes, Ok(org));
        let error = codec
            .encode(&object(json!({"R-AGE": 1, "R-EMPLOYEES": 2})))
            .expect_err("two views");
        assert!(
            error.problem.contains("REDEFINES R-BODY"),
            "{}",
            error.problem
        );
    }

    #[test]
    fn when_views_exclude_each_other() {
        // Both conditions hold for 'P': the first view with `when` wins.
        let record = layout(group(
            1,
            "R",
            vec![
                conditions(
                    text(5, "R-TYPE", 1),
                    &[
                        ("R-TYPE-PERSON", is("P")),
                        (
                            "R-TYPE-ANY",
                            vec![ConditionValue::Range(
                                Literal::Text("A".into()),
                                Literal::Text("Z".into()),
                            )],
                        ),
                    ],
                ),
                text(5, "R-BODY", 6),
                redefines(group(5, "R-PERSON", vec![text(10, "R-NAME", 6)]), "R-BODY"),
                redefines(group(5, "R-OTHER", vec![text(10, "R-CODE", 6)]), "R-BODY"),
                text(5, "R-END", 1),
            ],
        ));
        let opts = options(&[
            ("R-PERSON", when("R-TYPE-PERSON")),
            ("R-OTHER", when("R-TYPE-ANY")),
        ]);
        let codec = RecordCodec::new(&record, opts).expect("valid");
        let decoded = codec.decode(&e("PABCDEF.")).expect("decodes");
        assert_eq!(decoded["rPerson"], json!({"rName": "ABCDEF"}));
        assert_eq!(decoded["rOther"], Value::Null);
        assert_eq!(decoded["rType"], json!("PERSON"));
        let decoded = codec.decode(&e("QABCDEF.")).expect("decodes");
        assert_eq!(decoded["rPerson"], Value::Null);
        assert_eq!(decoded["rOther"], json!({"rCode": "ABCDEF"}));
        assert_eq!(decoded["rType"], json!("ANY"));
    }

    #[test]
    fn options_are_checked_against_the_record() {
        let record = cases_record();
        let fails = |fields: &[(&str, FieldOptions)]| {
            RecordCodec::new(&record, options(fields)).expect_err("refused")
        };
        let date = |f: &str| FieldOptions {
            decode: FieldDecode::Date(f.into()),
            ..FieldOptions::default()
        };
        let null = |n: NullWhen| FieldOptions {
            null_when: Some(n),
            ..FieldOptions::default()
        };
        let named = |n: &str| FieldOptions {
            name: Some(n.into()),
            ..FieldOptions::default()
        };
        assert!(fails(&[("BNQ-NOPE", FieldOptions::default())]).contains("names no item"));
        assert!(fails(&[("BNQ-CASES", date("%Y%m%d"))]).contains("group"));
        assert!(fails(&[("BNQ-CASE-NUMBER", date("%Y-%m"))]).contains("whole date"));
        assert!(fails(&[("BNQ-CASE-NUMBER", date("%Q"))]).contains("chrono"));
        assert!(fails(&[("BNQ-CASE-NUMBER", null(NullWhen::Zero))]).contains("numeric"));
        assert!(fails(&[("BNQ-CASE-COUNT", null(NullWhen::Spaces))]).contains("count"));
        assert!(fails(&[("BNQ-TRAILER", when("BNQ-CASE-STATUS-OPEN"))]).contains("REDEFINES"));
        assert!(fails(&[("BNQ-TRAILER", named("caseNumber"))]).contains("caseNumber"));
        // An ODO object after its table.
        let late = layout(group(
            1,
            "R",
            vec![
                occurs(text(5, "T", 1), 0, 2, Some("N")),
                number(5, "N", 1, 0, Sign::Unsigned, Usage::Display),
            ],
        ));
        let error = RecordCodec::new(&late, options(&[])).expect_err("late object");
        assert!(error.contains("before the table"), "{error}");
        let missing = layout(group(
            1,
            "R",
            vec![occurs(text(5, "T", 1), 0, 2, Some("N"))],
        ));
        assert!(RecordCodec::new(&missing, options(&[])).is_err());
        // A picture that disagrees with the layout's size.
        let mut wrong = layout(group(1, "R", vec![text(5, "A", 2)]));
        if let ItemKind::Group(children) = &mut wrong.kind {
            children[0].size = 3;
        }
        assert!(RecordCodec::new(&wrong, options(&[])).is_err());
    }

    #[test]
    fn filler_is_left_out_and_filler_groups_merge() {
        let record = layout(group(
            1,
            "R",
            vec![
                text(5, "FILLER", 2),
                group(5, "FILLER", vec![text(10, "R-A", 1), text(10, "FILLER", 1)]),
                text(5, "R-B", 1),
            ],
        ));
        let opts = options(&[(
            "R-B",
            FieldOptions {
                skip: true,
                ..FieldOptions::default()
            },
        )]);
        let codec = RecordCodec::new(&record, opts).expect("valid");
        let decoded = codec.decode(&e("xxAyB")).expect("decodes");
        assert_eq!(Value::Object(decoded), json!({"rA": "A"}));
        // Skipped and FILLER bytes are not checked, but must be there.
        let error = codec.decode(&e("xxAy")).expect_err("short");
        assert_eq!((error.field.as_str(), error.offset), ("R-B", 4));
    }

    #[test]
    fn enum_names_and_camel_case() {
        let prefixes = vec!["BNQ-".to_owned()];
        assert_eq!(
            enum_name("BNQ-CASE-STATUS-OPEN", "CASE-STATUS", &prefixes),
            "OPEN"
        );
        assert_eq!(
            enum_name("STATUS-IS-OPEN", "CASE-STATUS", &prefixes),
            "STATUS_IS_OPEN"
        );
        assert_eq!(
            enum_name("BNQ-CASE-STATUS", "CASE-STATUS", &prefixes),
            "CASE_STATUS"
        );
        assert_eq!(
            enum_name("CASE-STATUSX-A", "CASE-STATUS", &prefixes),
            "CASE_STATUSX_A"
        );
        assert_eq!(camel_case("CASE-OPEN-DATE"), "caseOpenDate");
        assert_eq!(camel_case("ADDR-LINE-1"), "addrLine1");
        assert_eq!(camel_case("X"), "x");
        assert_eq!(strip_prefix("BNQ-", &prefixes), "BNQ-");
        assert_eq!(strip_prefix("BNQX-A", &prefixes), "BNQX-A");
    }

    #[test]
    fn null_when_reads_raw_bytes_first() {
        let record = layout(group(
            1,
            "R",
            vec![
                number(5, "R-AMOUNT", 5, 2, Sign::Trailing, Usage::Packed),
                number(5, "R-DATE", 8, 0, Sign::Unsigned, Usage::Display),
                group(5, "R-ADDR", vec![text(10, "R-CITY", 3)]),
                edited(5, "R-EDITED", 7),
            ],
        ));
        let opts = options(&[
            (
                "R-AMOUNT",
                FieldOptions {
                    null_when: Some(NullWhen::Zero),
                    ..FieldOptions::default()
                },
            ),
            (
                "R-DATE",
                FieldOptions {
                    null_when: Some(NullWhen::Blank),
                    decode: FieldDecode::Date("%Y%m%d".into()),
                    ..FieldOptions::default()
                },
            ),
            (
                "R-ADDR",
                FieldOptions {
                    null_when: Some(NullWhen::Spaces),
                    ..FieldOptions::default()
                },
            ),
        ]);
        let codec = RecordCodec::new(&record, opts).expect("valid");
        let mut bytes = vec![0x00, 0x00, 0x0D];
        bytes.extend([0x40; 8]);
        bytes.extend(e("   "));
        bytes.extend(e("  12.50"));
        assert_eq!(
            Value::Object(codec.decode(&bytes).expect("decodes")),
            json!({"rAmount": null, "rDate": null, "rAddr": null, "rEdited": "12.50"})
        );
        let encoded = codec.encode(&object(json!({
            "R-AMOUNT": null, "R-DATE": null, "R-CITY": "   ", "R-EDITED": "12.50"
        })));
        let mut expected = vec![0x00, 0x00, 0x0C];
        expected.extend([0x40; 8]);
        expected.extend(e("   "));
        expected.extend(e("  12.50"));
        assert_eq!(encoded, Ok(expected));
    }

    #[test]
    fn numeric_conditions_and_value_defaults() {
        let mut header = group(5, "R-HDR", vec![text(10, "R-H1", 2), text(10, "R-H2", 2)]);
        header.value = Some(Literal::Text("HDR".into()));
        let mut amount = number(5, "R-AMT", 4, 1, Sign::Trailing, Usage::Display);
        amount.value = Some(Literal::Number(Decimal::new(-15, 1)));
        let record = layout(group(
            1,
            "R",
            vec![
                conditions(
                    number(5, "R-CODE", 2, 0, Sign::Unsigned, Usage::Display),
                    &[
                        ("R-CODE-NONE", vec![ConditionValue::Single(Literal::Spaces)]),
                        (
                            "R-CODE-LOW",
                            vec![ConditionValue::Range(
                                Literal::Zeros,
                                Literal::Number(9.into()),
                            )],
                        ),
                        (
                            "R-CODE-HIGH",
                            vec![ConditionValue::Range(
                                Literal::Number(10.into()),
                                Literal::Number(99.into()),
                            )],
                        ),
                    ],
                ),
                header,
                amount,
                edited(5, "R-ED", 6),
            ],
        ));
        let codec = RecordCodec::new(&record, options(&[])).expect("valid");
        let rest = [e("HDR "), e("0015"), e("  1.50")].concat();
        for (code, name) in [("  ", "NONE"), ("05", "LOW"), ("42", "HIGH")] {
            let decoded = codec
                .decode(&[e(code), rest.clone()].concat())
                .expect("decodes");
            assert_eq!(decoded["rCode"], json!(name));
        }
        let error = codec
            .decode(&[e("4 "), rest.clone()].concat())
            .expect_err("not a number");
        assert_eq!(error.problem, DecodeProblem::NotADigit { byte: 0x40 });
        // Defaults: numeric zero, the group's VALUE, the field's VALUE (-1.5), spaces.
        let defaults = codec.encode(&Map::new()).expect("defaults");
        let mut expected = e("00HDR ");
        expected.extend([0xF0, 0xF0, 0xF1, 0xD5]);
        expected.extend(e("      "));
        assert_eq!(defaults, expected);
        let given = codec
            .encode(&object(
                json!({"R-CODE": "NONE", "R-H2": "ZZ", "R-ED": "1.50", "R-AMT": 2}),
            ))
            .expect("encodes");
        let mut expected = e("  HDZZ");
        expected.extend([0xF0, 0xF0, 0xF2, 0xC0]);
        expected.extend(e("  1.50"));
        assert_eq!(given, expected);
        let low = codec
            .encode(&object(json!({"R-CODE": "LOW"})))
            .expect("encodes");
        assert_eq!(low[..2], [0xF0, 0xF0]);
        let raw = codec
            .encode(&object(json!({"R-CODE": 77})))
            .expect("an 88 holds");
        assert_eq!(raw[..2], [0xF7, 0xF7]);
    }

    #[test]
    fn nested_tables_name_every_subscript() {
        let record = layout(group(
            1,
            "R",
            vec![
                number(5, "R-N", 1, 0, Sign::Unsigned, Usage::Display),
                occurs(
                    group(
                        5,
                        "R-T",
                        vec![occurs(
                            number(10, "R-V", 1, 0, Sign::Unsigned, Usage::Display),
                            2,
                            2,
                            None,
                        )],
                    ),
                    0,
                    2,
                    Some("R-N"),
                ),
                text(5, "R-END", 1),
            ],
        ));
        let codec = RecordCodec::new(&record, options(&[])).expect("valid");
        let short = codec
            .decode(&e("2123"))
            .expect_err("the last digit is missing");
        assert_eq!((short.field.as_str(), short.offset), ("R-T(2).R-V(2)", 4));
        assert_eq!(
            short.problem,
            DecodeProblem::ShortRecord {
                needed: 5,
                actual: 4
            }
        );
        let error = codec.decode(&e("2123x.")).expect_err("x is not a digit");
        assert_eq!((error.field.as_str(), error.offset), ("R-T(2).R-V(2)", 4));
        let decoded = codec
            .decode(&e("11."))
            .expect_err("one entry has two digits");
        assert_eq!(decoded.field, "R-T(1).R-V(2)");
        let decoded = codec.decode(&e("112.")).expect("decodes");
        assert_eq!(
            Value::Object(decoded),
            json!({"rN": "1", "rT": [{"rV": ["1", "2"]}], "rEnd": "."})
        );
        let bytes = codec.encode(&object(
            json!({"R-T": [{"R-V": [3]}, {"R-V": ["4", 5]}], "R-END": "!"}),
        ));
        assert_eq!(bytes, Ok(e("23045!")));
        let error = codec
            .encode(&object(json!({"R-T": [{"R-V": [1, 2, 3]}]})))
            .expect_err("three of two");
        assert_eq!(error.field, "R-T(1).R-V");
    }

    // ----- properties -----

    fn sign_strategy() -> impl Strategy<Value = Sign> {
        prop_oneof![
            Just(Sign::Unsigned),
            Just(Sign::Trailing),
            Just(Sign::Leading),
            Just(Sign::TrailingSeparate),
            Just(Sign::LeadingSeparate),
        ]
    }

    /// A picture (digits 1–18, any scale, every usage and sign form) and a value it holds.
    fn picture_and_value() -> impl Strategy<Value = (u8, u8, Sign, Usage, i128)> {
        (
            1u8..=18,
            prop_oneof![
                Just(Usage::Display),
                Just(Usage::Packed),
                Just(Usage::Binary),
                Just(Usage::NativeBinary)
            ],
        )
            .prop_flat_map(|(digits, usage)| {
                let sign = match usage {
                    Usage::Display => sign_strategy().boxed(),
                    _ => prop_oneof![Just(Sign::Unsigned), Just(Sign::Trailing)].boxed(),
                };
                (Just(digits), 0..=digits, sign, Just(usage))
            })
            .prop_flat_map(|(digits, scale, sign, usage)| {
                let max = 10i128.pow(u32::from(digits)) - 1;
                let min = if sign == Sign::Unsigned { 0 } else { -max };
                (
                    Just(digits),
                    Just(scale),
                    Just(sign),
                    Just(usage),
                    min..=max,
                )
            })
    }

    fn one_field(field: Item) -> RecordCodec {
        let record = layout(group(1, "R", vec![field]));
        RecordCodec::new(&record, CodecOptions::default()).expect("valid")
    }

    proptest! {
        #[test]
        fn numbers_round_trip_exactly((digits, scale, sign, usage, unscaled) in picture_and_value()) {
            let codec = one_field(number(5, "N", digits, scale, sign, usage));
            let text = numeric::format_unscaled(unscaled, scale);
            let bytes = codec.encode(&object(json!({"N": text}))).expect("in range");
            let decoded = codec.decode(&bytes).expect("decodes");
            prop_assert_eq!(&decoded["n"], &json!(text));
            // One more integer digit never fits (COMP-5 is bounded by its bytes instead).
            if usage != Usage::NativeBinary {
                let too_big = numeric::format_unscaled(10i128.pow(u32::from(digits)), scale);
                let refused = codec.encode(&object(json!({"N": too_big}))).is_err();
                prop_assert!(refused);
            }
        }

        #[test]
        fn text_round_trips(
            len in 1usize..40,
            chars in proptest::collection::vec(any::<u8>(), 0..40),
            page in prop_oneof![Just(CodePage::Cp037), Just(CodePage::Cp1047)],
        ) {
            let text: String = chars.iter().take(len).map(|&b| char::from(b)).collect();
            let record = layout(group(1, "R", vec![text_field(len)]));
            let codec = RecordCodec::new(&record, CodecOptions { code_page: page, ..CodecOptions::default() })
                .expect("valid");
            let bytes = codec.encode(&object(json!({"T": text}))).expect("fits");
            prop_assert_eq!(bytes.len(), len);
            let decoded = codec.decode(&bytes).expect("decodes");
            prop_assert_eq!(&decoded["t"], &json!(text.trim_end_matches(' ')));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let codec = cases_codec();
            if let Ok(decoded) = codec.decode(&bytes) {
                prop_assert!(decoded.contains_key("trailer"));
            }
            let codec = RecordCodec::new(&views_record(), options(&[])).expect("valid");
            let _ = codec.decode(&bytes);
        }
    }

    fn text_field(len: usize) -> Item {
        text(5, "T", len)
    }
}
