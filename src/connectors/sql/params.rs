//! `:name` placeholders in SQL text, their declared types, and the values bound to them.
//!
//! A query is scanned once, when the connector is built: the scanner knows enough SQL to skip
//! string literals, quoted identifiers, comments, PostgreSQL `::` casts and dollar-quoted
//! strings, so a `:word` inside any of those is left alone. Each call then renders the pieces
//! into the database's own markers (`$1` or `?`) with a list of values to bind, so a value is
//! never part of the SQL text.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

/// The longest list a list parameter accepts; more is refused as bad input.
pub(super) const MAX_LIST_LEN: usize = 1000;

/// The SQL dialect, which decides what the scanner skips and how markers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// PostgreSQL: `$1` markers, `::` casts, dollar quotes, nested block comments.
    Postgres,
    /// MySQL and MariaDB: `?` markers, backslash escapes in strings, `#` comments.
    MySql,
    /// SQLite: `?` markers.
    Sqlite,
}

impl Dialect {
    /// The database's name in messages.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Postgres => "PostgreSQL",
            Self::MySql => "MySQL/MariaDB",
            Self::Sqlite => "SQLite",
        }
    }
}

/// A piece of scanned SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    /// Text sent as written.
    Sql(String),
    /// A `:name` placeholder.
    Placeholder {
        /// The name without the colon.
        name: String,
        /// Byte offset of the colon in the query.
        offset: usize,
        /// Written as the sole content of `IN ( … )`, where a list expands into many values.
        in_list: bool,
        /// Written as the sole content of `ANY ( … )`, where PostgreSQL takes an array.
        in_any: bool,
    },
}

/// Why a query cannot be scanned; the offset is a byte offset into the query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ScanQueryError {
    /// A quoted string, identifier or dollar-quoted body runs to the end of the query.
    #[error("the {what} starting at byte {offset} is never closed")]
    Unclosed {
        /// What was opened: "string literal", "quoted identifier", "comment", …
        what: &'static str,
        /// Where it starts.
        offset: usize,
    },
    /// A positional marker (`?` or `$1`) written by hand.
    #[error(
        "`{marker}` at byte {offset} is a positional parameter; write a named placeholder such as `:id` and declare it in `params`"
    )]
    Positional {
        /// The marker as written.
        marker: String,
        /// Where it is.
        offset: usize,
    },
}

/// Splits `sql` into text and placeholders.
pub(super) fn scan(sql: &str, dialect: Dialect) -> Result<Vec<Piece>, ScanQueryError> {
    let b = sql.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                let backslash = match dialect {
                    Dialect::MySql => true,
                    Dialect::Postgres => is_escape_string(b, i),
                    Dialect::Sqlite => false,
                };
                i = skip_quoted(b, i, b'\'', backslash, "string literal")?;
            }
            b'"' => {
                let what = if dialect == Dialect::MySql {
                    "string literal"
                } else {
                    "quoted identifier"
                };
                i = skip_quoted(b, i, b'"', dialect == Dialect::MySql, what)?;
            }
            b'`' if dialect != Dialect::Postgres => {
                i = skip_quoted(b, i, b'`', false, "quoted identifier")?;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => i = skip_line(b, i),
            b'#' if dialect == Dialect::MySql => i = skip_line(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(b, i, dialect == Dialect::Postgres)?;
            }
            b'$' if dialect == Dialect::Postgres && !(i > 0 && is_ident_byte(b[i - 1])) => {
                if let Some(tag_end) = dollar_tag_end(b, i) {
                    i = skip_dollar_quoted(b, i, tag_end)?;
                } else if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                    return Err(ScanQueryError::Positional {
                        marker: sql[i..i + 1 + digits].to_string(),
                        offset: i,
                    });
                } else {
                    i += 1;
                }
            }
            b'?' if dialect != Dialect::Postgres => {
                return Err(ScanQueryError::Positional {
                    marker: "?".to_string(),
                    offset: i,
                });
            }
            b':' => {
                if b.get(i + 1) == Some(&b':') {
                    // A PostgreSQL cast (`x::int`): the type name after it is not a placeholder.
                    i += 2;
                    continue;
                }
                let len = placeholder_len(&b[i + 1..]);
                if len == 0 {
                    i += 1;
                    continue;
                }
                if start < i {
                    pieces.push(Piece::Sql(sql[start..i].to_string()));
                }
                let end = i + 1 + len;
                pieces.push(Piece::Placeholder {
                    name: sql[i + 1..end].to_string(),
                    offset: i,
                    in_list: is_sole_argument_of(sql, i, end, "in"),
                    in_any: is_sole_argument_of(sql, i, end, "any"),
                });
                i = end;
                start = end;
            }
            _ => i += 1,
        }
    }
    if start < b.len() {
        pieces.push(Piece::Sql(sql[start..].to_string()));
    }
    Ok(pieces)
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The length of a placeholder name at the start of `rest`: a letter or `_`, then letters,
/// digits and `_`; 0 when there is none.
fn placeholder_len(rest: &[u8]) -> usize {
    match rest.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => rest
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count(),
        _ => 0,
    }
}

/// Whether `name` can be written as a placeholder.
pub(super) fn is_placeholder_name(name: &str) -> bool {
    !name.is_empty() && placeholder_len(name.as_bytes()) == name.len()
}

/// `E'…'` (PostgreSQL's escape string), where backslashes escape.
fn is_escape_string(b: &[u8], quote: usize) -> bool {
    quote >= 1 && matches!(b[quote - 1], b'E' | b'e') && (quote < 2 || !is_ident_byte(b[quote - 2]))
}

/// Skips a quoted run starting at `open`, where a doubled quote (and, if `backslash`, a
/// backslash) escapes; returns the index after the closing quote.
fn skip_quoted(
    b: &[u8],
    open: usize,
    quote: u8,
    backslash: bool,
    what: &'static str,
) -> Result<usize, ScanQueryError> {
    let mut j = open + 1;
    while j < b.len() {
        match b[j] {
            b'\\' if backslash => j += 2,
            c if c == quote => {
                if b.get(j + 1) == Some(&quote) {
                    j += 2;
                } else {
                    return Ok(j + 1);
                }
            }
            _ => j += 1,
        }
    }
    Err(ScanQueryError::Unclosed { what, offset: open })
}

fn skip_line(b: &[u8], start: usize) -> usize {
    b[start..]
        .iter()
        .position(|c| *c == b'\n')
        .map_or(b.len(), |p| start + p + 1)
}

/// Skips `/* … */`; PostgreSQL nests them, the others end at the first `*/`.
fn skip_block_comment(b: &[u8], open: usize, nested: bool) -> Result<usize, ScanQueryError> {
    let mut depth = 1;
    let mut j = open + 2;
    while j + 1 < b.len() {
        if b[j] == b'*' && b[j + 1] == b'/' {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return Ok(j);
            }
        } else if nested && b[j] == b'/' && b[j + 1] == b'*' {
            depth += 1;
            j += 2;
        } else {
            j += 1;
        }
    }
    Err(ScanQueryError::Unclosed {
        what: "comment",
        offset: open,
    })
}

/// The index after an opening dollar-quote tag (`$$` or `$tag$`) at `open`, if there is one.
fn dollar_tag_end(b: &[u8], open: usize) -> Option<usize> {
    let rest = &b[open + 1..];
    let tag_len = match rest.first() {
        Some(b'$') => 0,
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c >= 0x80 => {
            rest.iter().take_while(|c| is_ident_byte(**c)).count()
        }
        _ => return None,
    };
    (rest.get(tag_len) == Some(&b'$')).then_some(open + tag_len + 2)
}

fn skip_dollar_quoted(b: &[u8], open: usize, tag_end: usize) -> Result<usize, ScanQueryError> {
    let tag = &b[open..tag_end];
    b[tag_end..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map(|p| tag_end + p + tag.len())
        .ok_or(ScanQueryError::Unclosed {
            what: "dollar-quoted string",
            offset: open,
        })
}

/// Whether the placeholder `sql[colon..end]` is written `<keyword> ( :name )`, e.g. `IN`.
fn is_sole_argument_of(sql: &str, colon: usize, end: usize, keyword: &str) -> bool {
    let before = sql[..colon].trim_end();
    let Some(before) = before.strip_suffix('(') else {
        return false;
    };
    let before = before.trim_end();
    let n = keyword.len();
    let found = before.len() >= n
        && before.is_char_boundary(before.len() - n)
        && before[before.len() - n..].eq_ignore_ascii_case(keyword)
        && before[..before.len() - n]
            .bytes()
            .next_back()
            .is_none_or(|c| !is_ident_byte(c));
    found && sql[end..].trim_start().starts_with(')')
}

// ---------------------------------------------------------------------------------------------
// Types and values
// ---------------------------------------------------------------------------------------------

/// The type of a single value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScalarType {
    /// Any text.
    Text,
    /// A 64-bit signed integer.
    Integer,
    /// An exact decimal number (up to 28 significant digits).
    Decimal,
    /// `true` or `false`.
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An instant, RFC 3339 with a zone.
    Timestamp,
}

impl ScalarType {
    const ALL: [(&'static str, ScalarType); 6] = [
        ("text", Self::Text),
        ("integer", Self::Integer),
        ("decimal", Self::Decimal),
        ("boolean", Self::Boolean),
        ("date", Self::Date),
        ("timestamp", Self::Timestamp),
    ];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("?", |(name, _)| name)
    }
}

/// A parameter's declared type: a scalar, or a list of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ParamType {
    /// The type of each value.
    pub(super) scalar: ScalarType,
    /// Written `[type]`: the argument is a list.
    pub(super) list: bool,
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.list {
            write!(f, "[{}]", self.scalar.name())
        } else {
            f.write_str(self.scalar.name())
        }
    }
}

impl FromStr for ParamType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let (inner, list) = match trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            Some(inner) => (inner.trim(), true),
            None => (trimmed, false),
        };
        ScalarType::ALL
            .iter()
            .find(|(name, _)| *name == inner)
            .map(|(_, scalar)| Self {
                scalar: *scalar,
                list,
            })
            .ok_or_else(|| {
                let names: Vec<&str> = ScalarType::ALL.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown parameter type `{}`; expected one of {}, or a list such as `[text]`",
                    text.chars().take(40).collect::<String>(),
                    names.join(", ")
                )
            })
    }
}

/// One value ready to bind; also a batch key, compared and hashed by value (`1.50` and
/// `1.5` are one decimal key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Scalar {
    /// Text.
    Text(String),
    /// An integer.
    Integer(i64),
    /// An exact decimal.
    Decimal(Decimal),
    /// A boolean.
    Boolean(bool),
    /// A date.
    Date(NaiveDate),
    /// An instant in UTC.
    Timestamp(DateTime<Utc>),
}

impl Scalar {
    /// The value as text, for databases without the type (SQLite): decimals keep their
    /// written scale, dates are `YYYY-MM-DD`, instants RFC 3339 in UTC with `Z`.
    pub(super) fn to_text(&self) -> Option<String> {
        match self {
            Self::Decimal(d) => Some(d.to_string()),
            Self::Date(d) => Some(d.format("%Y-%m-%d").to_string()),
            Self::Timestamp(t) => Some(t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Self::Text(_) | Self::Integer(_) | Self::Boolean(_) => None,
        }
    }
}

/// An argument converted to its parameter's type.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Bound {
    /// A scalar parameter's value.
    Scalar(Scalar),
    /// A list parameter's values, all of the declared type.
    List(ScalarType, Vec<Scalar>),
}

/// Why an argument does not fit its parameter; never quotes the value, which may be personal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ConvertArgumentError(pub(super) String);

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Converts an argument to `ty`; `Ok(None)` for null (the caller skips the query).
pub(super) fn convert(ty: ParamType, value: &Value) -> Result<Option<Bound>, ConvertArgumentError> {
    if value.is_null() {
        return Ok(None);
    }
    if !ty.list {
        if value.is_array() {
            return Err(ConvertArgumentError(format!(
                "must be {}, not a list",
                describe(ty.scalar)
            )));
        }
        return convert_scalar(ty.scalar, value).map(|s| Some(Bound::Scalar(s)));
    }
    let Value::Array(items) = value else {
        return Err(ConvertArgumentError(format!(
            "must be a list ({}), not {}",
            ty,
            json_kind(value)
        )));
    };
    if items.len() > MAX_LIST_LEN {
        return Err(ConvertArgumentError(format!(
            "has {} items; at most {MAX_LIST_LEN} are allowed",
            items.len()
        )));
    }
    let mut values = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        if item.is_null() {
            return Err(ConvertArgumentError(format!(
                "has null at item {index}; a list may not contain null"
            )));
        }
        let scalar = convert_scalar(ty.scalar, item)
            .map_err(|e| ConvertArgumentError(format!("item {index} {}", e.0)))?;
        values.push(scalar);
    }
    Ok(Some(Bound::List(ty.scalar, values)))
}

fn describe(scalar: ScalarType) -> &'static str {
    match scalar {
        ScalarType::Text => "text",
        ScalarType::Integer => "a 64-bit integer",
        ScalarType::Decimal => "a decimal number such as \"12.50\"",
        ScalarType::Boolean => "true or false",
        ScalarType::Date => "a date written YYYY-MM-DD",
        ScalarType::Timestamp => {
            "a timestamp in RFC 3339 with a zone, such as \"2026-01-02T03:04:05Z\""
        }
    }
}

fn convert_scalar(scalar: ScalarType, value: &Value) -> Result<Scalar, ConvertArgumentError> {
    let mismatch = || {
        ConvertArgumentError(format!(
            "must be {}, not {}",
            describe(scalar),
            json_kind(value)
        ))
    };
    let unparsable = || ConvertArgumentError(format!("must be {}", describe(scalar)));
    match scalar {
        ScalarType::Text => match value {
            Value::String(text) => Ok(Scalar::Text(text.clone())),
            Value::Number(number) => Ok(Scalar::Text(number.to_string())),
            _ => Err(mismatch()),
        },
        ScalarType::Integer => match value {
            Value::Number(number) => number.as_i64().map(Scalar::Integer).ok_or_else(unparsable),
            Value::String(text) => text
                .trim()
                .parse::<i64>()
                .map(Scalar::Integer)
                .map_err(|_| unparsable()),
            _ => Err(mismatch()),
        },
        ScalarType::Decimal => match value {
            Value::Number(number) => parse_decimal(&number.to_string())
                .map(Scalar::Decimal)
                .ok_or_else(unparsable),
            Value::String(text) if is_plain_decimal(text.trim()) => parse_decimal(text.trim())
                .map(Scalar::Decimal)
                .ok_or_else(unparsable),
            Value::String(_) => Err(unparsable()),
            _ => Err(mismatch()),
        },
        ScalarType::Boolean => match value {
            Value::Bool(b) => Ok(Scalar::Boolean(*b)),
            _ => Err(mismatch()),
        },
        ScalarType::Date => match value {
            Value::String(text) if text.len() == 10 => NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(Scalar::Date)
                .map_err(|_| unparsable()),
            Value::String(_) => Err(unparsable()),
            _ => Err(mismatch()),
        },
        ScalarType::Timestamp => match value {
            Value::String(text) => DateTime::parse_from_rfc3339(text.trim())
                .map(|t| Scalar::Timestamp(t.with_timezone(&Utc)))
                .map_err(|_| unparsable()),
            _ => Err(mismatch()),
        },
    }
}

/// An optional sign, digits, and an optional fraction: `-12.50`, `0`, `.5`.
fn is_plain_decimal(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    !(whole.is_empty() && fraction.is_empty())
        && whole.bytes().all(|c| c.is_ascii_digit())
        && fraction.bytes().all(|c| c.is_ascii_digit())
}

/// Parses exactly (no rounding); JSON numbers may come in exponent form (`1e3`).
fn parse_decimal(text: &str) -> Option<Decimal> {
    Decimal::from_str_exact(text)
        .ok()
        .or_else(|| Decimal::from_scientific(text).ok())
}

// ---------------------------------------------------------------------------------------------
// Compiled queries
// ---------------------------------------------------------------------------------------------

/// How a placeholder occurrence is written into the SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// One marker (a scalar, or a PostgreSQL array as in `= ANY(:ids)`).
    Single,
    /// `IN (:ids)`: one marker per list item (PostgreSQL: `SELECT unnest($n)`).
    Expand,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Sql(String),
    Param { index: usize, form: Form },
}

/// A query ready to render: text parts and parameter occurrences, with each parameter's type.
#[derive(Debug, Clone)]
pub(super) struct CompiledQuery {
    dialect: Dialect,
    parts: Vec<Part>,
    /// Every parameter in order of first appearance.
    params: Vec<(String, ParamType)>,
}

/// A problem found when compiling a query, for a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CompileProblem {
    /// About the query text.
    Query(String),
    /// About one entry of `params`.
    Param {
        /// The parameter's name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

impl CompiledQuery {
    /// Scans `sql` and checks its placeholders against `params` (name → type as written).
    pub(super) fn compile<'a>(
        sql: &str,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
        dialect: Dialect,
    ) -> Result<Self, Vec<CompileProblem>> {
        Self::compile_as(sql, params, dialect, "`query`", None)
    }

    /// Scans the batch form of a query (see [`crate::config::SqlBatch`]): `params` as the
    /// single query declares them, except that `key` is bound as a list of its type, which
    /// must be written `IN (:key)` (or, on PostgreSQL, `ANY(:key)`) wherever it appears.
    pub(super) fn compile_batch<'a>(
        sql: &str,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
        dialect: Dialect,
        key: &str,
    ) -> Result<Self, Vec<CompileProblem>> {
        Self::compile_as(sql, params, dialect, "`batch.query`", Some(key))
    }

    /// [`Self::compile`] with the name of the query in messages, and a key bound as a set.
    fn compile_as<'a>(
        sql: &str,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
        dialect: Dialect,
        label: &str,
        set_key: Option<&str>,
    ) -> Result<Self, Vec<CompileProblem>> {
        let mut problems = Vec::new();
        let mut declared: Vec<(&str, Option<ParamType>)> = Vec::new();
        for (name, ty) in params {
            if !is_placeholder_name(name) {
                problems.push(CompileProblem::Param {
                    name: name.to_string(),
                    message: format!(
                        "parameter name `{name}` cannot be written as a placeholder: names are letters, digits and `_`, not starting with a digit"
                    ),
                });
            }
            match ty.parse::<ParamType>() {
                Ok(mut parsed) => {
                    if set_key == Some(name) {
                        parsed.list = true;
                    }
                    declared.push((name, Some(parsed)));
                }
                Err(message) => {
                    problems.push(CompileProblem::Param {
                        name: name.to_string(),
                        message: format!("parameter `{name}`: {message}"),
                    });
                    declared.push((name, None));
                }
            }
        }
        let pieces = match scan(sql, dialect) {
            Ok(pieces) => pieces,
            Err(error) => {
                problems.push(CompileProblem::Query(format!("{label}: {error}")));
                return Err(problems);
            }
        };

        let mut order: Vec<(String, ParamType)> = Vec::new();
        let mut parts = Vec::new();
        let mut undeclared: Vec<String> = Vec::new();
        let mut loose_key = false;
        for piece in pieces {
            let (name, in_list, in_any) = match piece {
                Piece::Sql(text) => {
                    parts.push(Part::Sql(text));
                    continue;
                }
                Piece::Placeholder {
                    name,
                    in_list,
                    in_any,
                    ..
                } => (name, in_list, in_any),
            };
            if set_key == Some(name.as_str()) && dialect == Dialect::Postgres && !in_list && !in_any
            {
                loose_key = true;
            }
            let Some((_, ty)) = declared.iter().find(|(n, _)| *n == name) else {
                if !undeclared.contains(&name) {
                    undeclared.push(name);
                }
                continue;
            };
            let Some(ty) = *ty else {
                continue;
            };
            let index = match order.iter().position(|(n, _)| *n == name) {
                Some(index) => index,
                None => {
                    order.push((name.clone(), ty));
                    order.len() - 1
                }
            };
            let form = match (ty.list, in_list, dialect) {
                (true, true, _) => Form::Expand,
                (true, false, Dialect::Postgres) | (false, _, _) => Form::Single,
                (true, false, _) => {
                    let what = if set_key == Some(name.as_str()) {
                        "the batch key"
                    } else {
                        "list parameter"
                    };
                    problems.push(CompileProblem::Query(format!(
                        "{label}: {what} `:{name}` must be written `IN (:{name})` on {}, where it becomes one `?` per item",
                        dialect.label()
                    )));
                    Form::Single
                }
            };
            parts.push(Part::Param { index, form });
        }
        if let (true, Some(key)) = (loose_key, set_key) {
            problems.push(CompileProblem::Query(format!(
                "{label}: the batch key `:{key}` is an array of keys here; write it `IN (:{key})` or `= ANY(:{key})` wherever it appears"
            )));
        }
        if !undeclared.is_empty() {
            let names: Vec<String> = undeclared.iter().map(|n| format!("`:{n}`")).collect();
            problems.push(CompileProblem::Query(format!(
                "{label} uses {} {}, not declared in `params`; add e.g. `params = {{ {} = \"text\" }}`",
                if names.len() == 1 { "placeholder" } else { "placeholders" },
                names.join(", "),
                undeclared[0]
            )));
        }
        for (name, ty) in &declared {
            // A parameter with an unknown type is already reported, and left out of `order`.
            if ty.is_some() && !order.iter().any(|(n, _)| n == name) && is_placeholder_name(name) {
                let written = sql.contains(&format!(":{name}"));
                problems.push(CompileProblem::Param {
                    name: name.to_string(),
                    message: format!(
                        "parameter `{name}` is never used in {label}{}; remove it or write `:{name}` where it belongs",
                        if written {
                            " (it only appears inside a string literal, quoted identifier or comment)"
                        } else {
                            ""
                        }
                    ),
                });
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            dialect,
            parts,
            params: order,
        })
    }

    /// Every parameter in order of first appearance.
    pub(super) fn params(&self) -> &[(String, ParamType)] {
        &self.params
    }

    /// The SQL and the values to bind in order, for arguments given in [`Self::params`] order.
    pub(super) fn render<'v>(&self, values: &'v [Bound]) -> (String, Vec<BindItem<'v>>) {
        let mut sql = String::new();
        let mut binds = Vec::new();
        if self.dialect == Dialect::Postgres {
            // PostgreSQL numbers its markers, so each parameter is bound once and may be
            // referred to many times.
            binds.extend(values.iter().map(BindItem::from_bound));
        }
        for part in &self.parts {
            let (index, form) = match part {
                Part::Sql(text) => {
                    sql.push_str(text);
                    continue;
                }
                Part::Param { index, form } => (*index, *form),
            };
            let Some(value) = values.get(index) else {
                continue;
            };
            match (self.dialect, form, value) {
                (Dialect::Postgres, Form::Single, _) => {
                    sql.push_str(&format!("${}", index + 1));
                }
                (Dialect::Postgres, Form::Expand, _) => {
                    // `IN (SELECT unnest($1))` keeps the element type of the bound array and
                    // behaves for an empty list, in `IN` and in `NOT IN`.
                    sql.push_str(&format!("SELECT unnest(${})", index + 1));
                }
                (_, _, Bound::Scalar(scalar)) => {
                    sql.push('?');
                    binds.push(BindItem::Scalar(scalar));
                }
                (_, _, Bound::List(_, items)) if items.is_empty() => {
                    // An empty subquery: `x IN (…)` is false and `x NOT IN (…)` is true, as
                    // for an empty list; `IN ()` would be a syntax error.
                    sql.push_str(if self.dialect == Dialect::MySql {
                        "SELECT NULL FROM DUAL WHERE 1 = 0"
                    } else {
                        "SELECT NULL WHERE 1 = 0"
                    });
                }
                (_, _, Bound::List(_, items)) => {
                    for (i, item) in items.iter().enumerate() {
                        sql.push_str(if i == 0 { "?" } else { ", ?" });
                        binds.push(BindItem::Scalar(item));
                    }
                }
            }
        }
        (sql, binds)
    }
}

/// One value to bind: a scalar, or (PostgreSQL only) a whole list as an array.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum BindItem<'v> {
    /// One value.
    Scalar(&'v Scalar),
    /// An array of values of one type.
    List(ScalarType, &'v [Scalar]),
}

impl<'v> BindItem<'v> {
    fn from_bound(bound: &'v Bound) -> Self {
        match bound {
            Bound::Scalar(scalar) => Self::Scalar(scalar),
            Bound::List(ty, items) => Self::List(*ty, items),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn names(sql: &str, dialect: Dialect) -> Vec<String> {
        scan(sql, dialect)
            .expect("scans")
            .into_iter()
            .filter_map(|p| match p {
                Piece::Placeholder { name, .. } => Some(name),
                Piece::Sql(_) => None,
            })
            .collect()
    }

    const ALL: [Dialect; 3] = [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite];

    #[test]
    fn finds_placeholders_outside_literals_and_comments() {
        let sql = "SELECT ':a', \"b:c\", x -- :d\n FROM t /* :e */ WHERE id = :id AND n = :n";
        for dialect in ALL {
            assert_eq!(names(sql, dialect), ["id", "n"], "{dialect:?}");
        }
    }

    #[test]
    fn doubled_quotes_stay_inside_the_literal() {
        let sql = "SELECT 'it''s :not' FROM t WHERE a = :a";
        for dialect in ALL {
            assert_eq!(names(sql, dialect), ["a"], "{dialect:?}");
        }
    }

    #[test]
    fn backslash_escapes_only_where_the_dialect_has_them() {
        // MySQL: `\'` escapes, so the literal runs to the last quote.
        assert_eq!(
            names(r"SELECT 'a\' :x ' WHERE b = :b", Dialect::MySql),
            ["b"]
        );
        // PostgreSQL (standard strings) and SQLite: the backslash is an ordinary character.
        for dialect in [Dialect::Postgres, Dialect::Sqlite] {
            assert_eq!(
                names(r"SELECT 'a\' , :x, 'c' WHERE b = :b", dialect),
                ["x", "b"],
                "{dialect:?}"
            );
        }
        // PostgreSQL escape strings do escape.
        assert_eq!(
            names(r"SELECT E'a\' :x ' WHERE b = :b", Dialect::Postgres),
            ["b"]
        );
    }

    #[test]
    fn casts_are_not_placeholders() {
        assert_eq!(
            names(
                "SELECT :amount::numeric, x::text FROM t WHERE d = :day::date",
                Dialect::Postgres
            ),
            ["amount", "day"]
        );
    }

    #[test]
    fn dollar_quotes_are_skipped() {
        let sql = "SELECT $$ :a $$, $tag$ it's :b $tag$, $x$$ :c $x$ WHERE id = :id";
        assert_eq!(names(sql, Dialect::Postgres), ["id"]);
        // `$` inside an identifier is not a quote.
        assert_eq!(
            names("SELECT a$b FROM t WHERE c = :c", Dialect::Postgres),
            ["c"]
        );
    }

    #[test]
    fn nested_comments_follow_the_dialect() {
        assert_eq!(
            names(
                "SELECT /* a /* b */ :x */ 1 WHERE y = :y",
                Dialect::Postgres
            ),
            ["y"]
        );
        assert_eq!(
            names("SELECT /* a /* b */ :x WHERE y = :y", Dialect::Sqlite),
            ["x", "y"]
        );
    }

    #[test]
    fn mysql_hash_comments_and_backticks() {
        assert_eq!(
            names("SELECT `a:b` FROM t # :c\nWHERE d = :d", Dialect::MySql),
            ["d"]
        );
    }

    #[test]
    fn unclosed_literals_and_comments_are_errors() {
        for (sql, what) in [
            ("SELECT 'abc", "string literal"),
            ("SELECT /* abc", "comment"),
            ("SELECT \"abc", "quoted identifier"),
        ] {
            let error = scan(sql, Dialect::Sqlite).expect_err("unclosed");
            assert!(error.to_string().contains(what), "{error}");
        }
        let error = scan("SELECT $a$ abc", Dialect::Postgres).expect_err("unclosed");
        assert!(error.to_string().contains("dollar-quoted"), "{error}");
    }

    #[test]
    fn positional_markers_are_refused() {
        assert!(matches!(
            scan("SELECT * FROM t WHERE a = ?", Dialect::MySql),
            Err(ScanQueryError::Positional { .. })
        ));
        assert!(matches!(
            scan("SELECT * FROM t WHERE a = $1", Dialect::Postgres),
            Err(ScanQueryError::Positional { .. })
        ));
        // PostgreSQL's jsonb `?` operator is not a marker there.
        assert_eq!(
            names("SELECT doc ? 'k' FROM t WHERE a = :a", Dialect::Postgres),
            ["a"]
        );
    }

    #[test]
    fn in_lists_are_recognised() {
        let pieces = scan(
            "SELECT * FROM t WHERE a IN ( :ids ) AND b = ANY(:more) AND c NOT in(:x)",
            Dialect::Postgres,
        )
        .expect("scans");
        let in_list: Vec<(String, bool)> = pieces
            .into_iter()
            .filter_map(|p| match p {
                Piece::Placeholder { name, in_list, .. } => Some((name, in_list)),
                Piece::Sql(_) => None,
            })
            .collect();
        assert_eq!(
            in_list,
            [
                ("ids".to_string(), true),
                ("more".to_string(), false),
                ("x".to_string(), true)
            ]
        );
    }

    fn compile(sql: &str, params: &[(&str, &str)], dialect: Dialect) -> CompiledQuery {
        CompiledQuery::compile(sql, params.iter().copied(), dialect).expect("compiles")
    }

    fn problems(sql: &str, params: &[(&str, &str)], dialect: Dialect) -> Vec<CompileProblem> {
        CompiledQuery::compile(sql, params.iter().copied(), dialect).expect_err("is rejected")
    }

    #[test]
    fn renders_numbered_markers_for_postgres() {
        let query = compile(
            "SELECT * FROM t WHERE a = :a OR b = :a AND c = ANY(:ids) AND d IN (:ids)",
            &[("a", "text"), ("ids", "[integer]")],
            Dialect::Postgres,
        );
        let values = [
            Bound::Scalar(Scalar::Text("x".into())),
            Bound::List(ScalarType::Integer, vec![Scalar::Integer(1)]),
        ];
        let (sql, binds) = query.render(&values);
        assert_eq!(
            sql,
            "SELECT * FROM t WHERE a = $1 OR b = $1 AND c = ANY($2) AND d IN (SELECT unnest($2))"
        );
        assert_eq!(binds.len(), 2);
    }

    #[test]
    fn renders_question_marks_and_expands_lists() {
        for dialect in [Dialect::MySql, Dialect::Sqlite] {
            let query = compile(
                "SELECT * FROM t WHERE a = :a AND id IN (:ids) OR b = :a",
                &[("a", "text"), ("ids", "[integer]")],
                dialect,
            );
            let values = [
                Bound::Scalar(Scalar::Text("x".into())),
                Bound::List(
                    ScalarType::Integer,
                    vec![Scalar::Integer(1), Scalar::Integer(2), Scalar::Integer(3)],
                ),
            ];
            let (sql, binds) = query.render(&values);
            assert_eq!(
                sql,
                "SELECT * FROM t WHERE a = ? AND id IN (?, ?, ?) OR b = ?"
            );
            // A repeated placeholder is bound again at each use.
            assert_eq!(binds.len(), 5);
            let empty = [
                Bound::Scalar(Scalar::Text("x".into())),
                Bound::List(ScalarType::Integer, vec![]),
            ];
            let (sql, binds) = query.render(&empty);
            assert!(sql.contains("IN (SELECT NULL"), "{sql}");
            assert_eq!(binds.len(), 2);
        }
    }

    #[test]
    fn a_batch_key_binds_as_a_set_on_every_database() {
        let params = [("who", "text"), ("n", "integer")];
        let sql = "SELECT * FROM t WHERE who IN (:who) AND n = :n";
        let values = [
            Bound::List(
                ScalarType::Text,
                vec![Scalar::Text("a".into()), Scalar::Text("b".into())],
            ),
            Bound::Scalar(Scalar::Integer(1)),
        ];
        for dialect in [Dialect::MySql, Dialect::Sqlite] {
            let query =
                CompiledQuery::compile_batch(sql, params, dialect, "who").expect("compiles");
            assert_eq!(query.params()[0].1.to_string(), "[text]");
            let (rendered, binds) = query.render(&values);
            assert_eq!(rendered, "SELECT * FROM t WHERE who IN (?, ?) AND n = ?");
            assert_eq!(binds.len(), 3);
        }
        let query =
            CompiledQuery::compile_batch(sql, params, Dialect::Postgres, "who").expect("compiles");
        assert_eq!(
            query.render(&values).0,
            "SELECT * FROM t WHERE who IN (SELECT unnest($1)) AND n = $2"
        );
        let any = "SELECT * FROM t WHERE who = any ( :who ) AND n = :n";
        let query =
            CompiledQuery::compile_batch(any, params, Dialect::Postgres, "who").expect("compiles");
        assert_eq!(
            query.render(&values).0,
            "SELECT * FROM t WHERE who = any ( $1 ) AND n = $2"
        );
        // `many(:who)` is not `ANY(:who)`.
        let found = CompiledQuery::compile_batch(
            "SELECT * FROM t WHERE who = many(:who) AND n = :n",
            params,
            Dialect::Postgres,
            "who",
        )
        .expect_err("refused");
        assert!(
            matches!(&found[..], [CompileProblem::Query(m)] if m.starts_with("`batch.query`: the batch key `:who` is an array")),
            "{found:?}"
        );
    }

    #[test]
    fn a_placeholder_without_a_param_is_named() {
        let found = problems(
            "SELECT * FROM t WHERE a = :a AND b = :b AND c = :c",
            &[("a", "text")],
            Dialect::Sqlite,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        let CompileProblem::Query(message) = &found[0] else {
            panic!("{found:?}")
        };
        assert!(message.contains("`:b`, `:c`"), "{message}");
        assert!(message.contains("not declared in `params`"), "{message}");
    }

    #[test]
    fn a_param_never_used_is_named() {
        let found = problems(
            "SELECT * FROM t WHERE a = ':b'",
            &[("b", "text")],
            Dialect::Postgres,
        );
        assert_eq!(
            found,
            [CompileProblem::Param {
                name: "b".into(),
                message: "parameter `b` is never used in `query` (it only appears inside a string literal, quoted identifier or comment); remove it or write `:b` where it belongs".into()
            }]
        );
    }

    #[test]
    fn list_params_outside_in_are_refused_where_they_cannot_bind() {
        let found = problems(
            "SELECT * FROM t WHERE id = ANY(:ids)",
            &[("ids", "[integer]")],
            Dialect::MySql,
        );
        assert!(
            matches!(&found[..], [CompileProblem::Query(m)] if m.contains("IN (:ids)")),
            "{found:?}"
        );
    }

    #[test]
    fn parses_types() {
        assert_eq!(
            "text".parse::<ParamType>(),
            Ok(ParamType {
                scalar: ScalarType::Text,
                list: false
            })
        );
        assert_eq!(
            " [ integer ] ".parse::<ParamType>(),
            Ok(ParamType {
                scalar: ScalarType::Integer,
                list: true
            })
        );
        let error = "money".parse::<ParamType>().expect_err("unknown");
        assert!(error.contains("unknown parameter type `money`"), "{error}");
        assert!(error.contains("timestamp"), "{error}");
        assert!("[[text]]".parse::<ParamType>().is_err());
    }

    fn ty(text: &str) -> ParamType {
        text.parse().expect("a type")
    }

    #[test]
    fn converts_arguments_to_their_types() {
        let convert_ok = |t: &str, v: Value| convert(ty(t), &v).expect("fits").expect("not null");
        assert_eq!(
            convert_ok("integer", json!("42")),
            Bound::Scalar(Scalar::Integer(42))
        );
        assert_eq!(
            convert_ok("decimal", json!("-12.50")),
            Bound::Scalar(Scalar::Decimal(Decimal::new(-1250, 2)))
        );
        assert_eq!(
            convert_ok("decimal", json!(12.5)),
            Bound::Scalar(Scalar::Decimal(Decimal::new(125, 1)))
        );
        assert_eq!(
            convert_ok("text", json!(7)),
            Bound::Scalar(Scalar::Text("7".into()))
        );
        let Bound::Scalar(Scalar::Timestamp(t)) =
            convert_ok("timestamp", json!("2026-01-02T05:04:05+02:00"))
        else {
            panic!("a timestamp")
        };
        assert_eq!(t.to_rfc3339(), "2026-01-02T03:04:05+00:00");
        assert_eq!(
            convert_ok("[text]", json!(["a", "b"])),
            Bound::List(
                ScalarType::Text,
                vec![Scalar::Text("a".into()), Scalar::Text("b".into())]
            )
        );
        assert_eq!(convert(ty("date"), &Value::Null), Ok(None));
    }

    #[test]
    fn refuses_values_that_do_not_fit_without_quoting_them() {
        for (t, value) in [
            ("integer", json!("abc-secret")),
            ("integer", json!(1.5)),
            ("integer", json!({"a": 1})),
            ("decimal", json!("1e3x-secret")),
            ("decimal", json!("NaN")),
            ("boolean", json!("yes-secret")),
            ("date", json!("2026-13-01")),
            ("date", json!("02/01/2026-secret")),
            ("timestamp", json!("2026-01-02T03:04:05")),
            ("text", json!({"a": "secret"})),
            ("text", json!(["secret"])),
            ("[integer]", json!("secret")),
            ("[integer]", json!([1, null])),
            ("[integer]", json!([1, "secret"])),
        ] {
            let error = convert(ty(t), &value).expect_err("does not fit");
            assert!(!error.0.contains("secret"), "{t}: {}", error.0);
        }
        let long = Value::Array(vec![json!(1); MAX_LIST_LEN + 1]);
        let error = convert(ty("[integer]"), &long).expect_err("too long");
        assert!(error.0.contains("at most 1000"), "{}", error.0);
    }
}
