//! Rows → JSON objects keyed by column name.
//!
//! Each database names its column types differently, so each has a decoder that looks at
//! `type_info().name()` and reads the value as the matching Rust type. Exact numbers
//! (DECIMAL/NUMERIC) become strings so no digit is lost; instants become RFC 3339 in UTC; bytes
//! become base64. A type with no clean JSON form is refused with the column's name, so an
//! operator can cast it in the query.

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use serde_json::{Map, Number, Value};
use sqlx::mysql::MySqlRow;
use sqlx::postgres::{PgRow, PgTypeKind, PgValueFormat, PgValueRef};
use sqlx::sqlite::SqliteRow;
use sqlx::{Column, Decode, Row, TypeInfo, ValueRef};

/// Why a row could not be turned into JSON; the message names the column, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum DecodeRowError {
    /// A type the connector has no JSON form for.
    #[error(
        "column `{column}` has type {type_name}, which the sql connector cannot turn into JSON; cast it in the query (e.g. to text)"
    )]
    Unsupported {
        /// The column's name.
        column: String,
        /// The database's name for its type.
        type_name: String,
    },
    /// The value did not decode as its declared type (e.g. a zero date, NaN).
    #[error("column `{column}` ({type_name}) holds a value that has no JSON form: {reason}")]
    Value {
        /// The column's name.
        column: String,
        /// The database's name for its type.
        type_name: String,
        /// Why (from the decoder; it does not quote the value).
        reason: String,
    },
    /// Two columns with one name would overwrite each other in the object.
    #[error("two columns are named `{0}`; give one of them an alias (`AS …`)")]
    DuplicateColumn(String),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a per-type decoder answers: the JSON value, or `None` for a type it does not know.
type Decoded = Result<Option<Value>, BoxError>;

fn to_object<R: Row>(
    row: &R,
    decode: impl Fn(&R, usize, &str) -> Decoded,
) -> Result<Map<String, Value>, DecodeRowError> {
    let mut object = Map::new();
    for (index, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let type_name = column.type_info().name().to_string();
        let value = match decode(row, index, &type_name) {
            Ok(Some(value)) => value,
            Ok(None) => {
                return Err(DecodeRowError::Unsupported {
                    column: name.to_string(),
                    type_name,
                });
            }
            Err(error) => {
                return Err(DecodeRowError::Value {
                    column: name.to_string(),
                    type_name,
                    reason: error.to_string(),
                });
            }
        };
        if object.insert(name.to_string(), value).is_some() {
            return Err(DecodeRowError::DuplicateColumn(name.to_string()));
        }
    }
    Ok(object)
}

fn float(value: f64) -> Result<Value, BoxError> {
    Number::from_f64(value)
        .map(Value::Number)
        .ok_or_else(|| "NaN or infinity cannot be written in JSON".into())
}

/// An `f32` through its shortest decimal form, so `0.1` stays `0.1` and not `0.10000000149…`.
fn float32(value: f32) -> Result<Value, BoxError> {
    float(value.to_string().parse::<f64>()?)
}

fn date(value: NaiveDate) -> Value {
    Value::String(value.format("%Y-%m-%d").to_string())
}

fn time(value: NaiveTime) -> Value {
    Value::String(value.format("%H:%M:%S%.f").to_string())
}

fn instant(value: DateTime<Utc>) -> Value {
    Value::String(value.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn base64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn utf8(bytes: &[u8]) -> Result<Value, BoxError> {
    Ok(Value::String(std::str::from_utf8(bytes)?.to_string()))
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// A PostgreSQL row as a JSON object.
pub(super) fn pg_row(row: &PgRow) -> Result<Map<String, Value>, DecodeRowError> {
    to_object(row, |row, index, type_name| {
        let raw = row.try_get_raw(index)?;
        if raw.is_null() {
            return Ok(Some(Value::Null));
        }
        if matches!(raw.type_info().kind(), PgTypeKind::Enum(_)) {
            return utf8(raw.as_bytes()?).map(Some);
        }
        pg_value(row, index, raw, type_name)
    })
}

fn pg_value(row: &PgRow, index: usize, raw: PgValueRef<'_>, type_name: &str) -> Decoded {
    let binary = raw.format() == PgValueFormat::Binary;
    Ok(Some(match type_name {
        "BOOL" => Value::Bool(row.try_get(index)?),
        "INT2" => Value::from(row.try_get::<i16, _>(index)?),
        "INT4" => Value::from(row.try_get::<i32, _>(index)?),
        "INT8" => Value::from(row.try_get::<i64, _>(index)?),
        "FLOAT4" => float32(row.try_get(index)?)?,
        "FLOAT8" => float(row.try_get(index)?)?,
        "NUMERIC" if binary => Value::String(pg_numeric_text(raw.as_bytes()?)?),
        "NUMERIC" => utf8(raw.as_bytes()?)?,
        "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "UNKNOWN" | "citext" => utf8(raw.as_bytes()?)?,
        "DATE" => date(row.try_get(index)?),
        "TIME" => time(row.try_get(index)?),
        "TIMESTAMP" => instant(row.try_get::<NaiveDateTime, _>(index)?.and_utc()),
        "TIMESTAMPTZ" => instant(row.try_get(index)?),
        "UUID" if binary => Value::String(uuid::Uuid::from_slice(raw.as_bytes()?)?.to_string()),
        "UUID" => utf8(raw.as_bytes()?)?,
        "JSON" => serde_json::from_slice(raw.as_bytes()?)?,
        "JSONB" => {
            let bytes = raw.as_bytes()?;
            let text = match (binary, bytes.split_first()) {
                (true, Some((1, rest))) => rest,
                (true, _) => return Err("unknown JSONB version".into()),
                (false, _) => bytes,
            };
            serde_json::from_slice(text)?
        }
        "BYTEA" => base64(row.try_get::<&[u8], _>(index)?),
        "VOID" => Value::Null,
        "TEXT[]" | "VARCHAR[]" | "CHAR[]" | "NAME[]" => {
            array(row.try_get::<Vec<Option<String>>, _>(index)?, |s| {
                Ok(Value::String(s))
            })?
        }
        "INT2[]" => array(row.try_get::<Vec<Option<i16>>, _>(index)?, |n| Ok(n.into()))?,
        "INT4[]" => array(row.try_get::<Vec<Option<i32>>, _>(index)?, |n| Ok(n.into()))?,
        "INT8[]" => array(row.try_get::<Vec<Option<i64>>, _>(index)?, |n| Ok(n.into()))?,
        "BOOL[]" => array(
            row.try_get::<Vec<Option<bool>>, _>(index)?,
            |b| Ok(b.into()),
        )?,
        "FLOAT4[]" => array(row.try_get::<Vec<Option<f32>>, _>(index)?, float32)?,
        "FLOAT8[]" => array(row.try_get::<Vec<Option<f64>>, _>(index)?, float)?,
        "DATE[]" => array(row.try_get::<Vec<Option<NaiveDate>>, _>(index)?, |d| {
            Ok(date(d))
        })?,
        _ => return Ok(None),
    }))
}

fn array<T>(
    items: Vec<Option<T>>,
    each: impl Fn(T) -> Result<Value, BoxError>,
) -> Result<Value, BoxError> {
    items
        .into_iter()
        .map(|item| item.map_or(Ok(Value::Null), &each))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// PostgreSQL's binary NUMERIC (base-10000 digits with a weight and a display scale) as exact
/// decimal text. Read directly rather than through `rust_decimal`, whose 28 digits are fewer
/// than a NUMERIC column can hold.
fn pg_numeric_text(bytes: &[u8]) -> Result<String, BoxError> {
    let word = |i: usize| -> Result<u16, BoxError> {
        bytes
            .get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated NUMERIC".into())
    };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("NaN cannot be written in JSON".into()),
        _ => return Err("infinity cannot be written in JSON".into()),
    }
    let mut digits = Vec::with_capacity(ndigits);
    for i in 0..ndigits {
        let digit = word(4 + i)?;
        if digit > 9999 {
            return Err("malformed NUMERIC digit".into());
        }
        digits.push(digit);
    }
    let digit_at = |position: i32| -> u16 {
        usize::try_from(position)
            .ok()
            .and_then(|p| digits.get(p).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    // The integer part: base-10000 groups at weights `weight` down to 0.
    if weight < 0 {
        text.push('0');
    } else {
        for group in 0..=weight {
            let digit = digit_at(group);
            if group == 0 {
                text.push_str(&digit.to_string());
            } else {
                text.push_str(&format!("{digit:04}"));
            }
        }
    }
    if dscale > 0 {
        text.push('.');
        let mut fraction = String::new();
        let mut group = weight + 1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", digit_at(group)));
            group += 1;
        }
        fraction.truncate(dscale);
        text.push_str(&fraction);
    }
    Ok(text)
}

// ---------------------------------------------------------------------------------------------
// MySQL / MariaDB
// ---------------------------------------------------------------------------------------------

/// A MySQL or MariaDB row as a JSON object.
pub(super) fn mysql_row(row: &MySqlRow) -> Result<Map<String, Value>, DecodeRowError> {
    to_object(row, |row, index, type_name| {
        let raw = row.try_get_raw(index)?;
        if raw.is_null() {
            return Ok(Some(Value::Null));
        }
        let bytes = || row.try_get_unchecked::<&[u8], _>(index);
        Ok(Some(match type_name {
            // `TINYINT(1)`, which is what MySQL and MariaDB make of `BOOLEAN`.
            "BOOLEAN" => Value::Bool(row.try_get_unchecked::<i8, _>(index)? != 0),
            "TINYINT" => Value::from(row.try_get::<i8, _>(index)?),
            "SMALLINT" => Value::from(row.try_get::<i16, _>(index)?),
            "INT" | "MEDIUMINT" => Value::from(row.try_get::<i32, _>(index)?),
            "BIGINT" => Value::from(row.try_get::<i64, _>(index)?),
            "TINYINT UNSIGNED" => Value::from(row.try_get::<u8, _>(index)?),
            "SMALLINT UNSIGNED" | "YEAR" => Value::from(row.try_get_unchecked::<u16, _>(index)?),
            "INT UNSIGNED" | "MEDIUMINT UNSIGNED" => Value::from(row.try_get::<u32, _>(index)?),
            "BIGINT UNSIGNED" => Value::from(row.try_get::<u64, _>(index)?),
            "FLOAT" => float32(row.try_get(index)?)?,
            "DOUBLE" => float(row.try_get(index)?)?,
            // Sent as text in both protocols: exact, whatever the precision.
            "DECIMAL" => utf8(bytes()?)?,
            "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
            | "SET" => utf8(bytes()?)?,
            "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
                base64(bytes()?)
            }
            "BIT" => {
                let bytes = bytes()?;
                if bytes.len() > 8 {
                    return Err("BIT wider than 64".into());
                }
                Value::from(bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
            }
            "JSON" => serde_json::from_slice(bytes()?)?,
            "DATE" => date(row.try_get(index)?),
            "TIME" => time(row.try_get(index)?),
            // The connection's time zone is UTC (sqlx sets `time_zone = '+00:00'`), so a
            // TIMESTAMP arrives in UTC and a DATETIME is read as UTC.
            "DATETIME" => instant(row.try_get::<NaiveDateTime, _>(index)?.and_utc()),
            "TIMESTAMP" => instant(row.try_get(index)?),
            "NULL" => Value::Null,
            _ => return Ok(None),
        }))
    })
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

/// A SQLite row as a JSON object, by each value's storage class (SQLite is dynamically
/// typed); an integer in a column declared `BOOLEAN` becomes `true`/`false`.
pub(super) fn sqlite_row(row: &SqliteRow) -> Result<Map<String, Value>, DecodeRowError> {
    to_object(row, |row, index, declared| {
        let raw = row.try_get_raw(index)?;
        if raw.is_null() {
            return Ok(Some(Value::Null));
        }
        let storage = raw.type_info().name().to_string();
        Ok(Some(match storage.as_str() {
            "INTEGER" if declared == "BOOLEAN" => {
                Value::Bool(<i64 as Decode<sqlx::Sqlite>>::decode(raw)? != 0)
            }
            "INTEGER" => Value::from(<i64 as Decode<sqlx::Sqlite>>::decode(raw)?),
            "REAL" => float(<f64 as Decode<sqlx::Sqlite>>::decode(raw)?)?,
            "TEXT" => Value::String(<String as Decode<sqlx::Sqlite>>::decode(raw)?),
            "BLOB" => base64(<&[u8] as Decode<sqlx::Sqlite>>::decode(raw)?),
            _ => return Ok(None),
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [ndigits, weight as u16, sign, dscale]
            .into_iter()
            .chain(digits.iter().copied())
        {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        bytes
    }

    #[test]
    fn reads_postgres_numerics_exactly() {
        // 1234.50: groups [1234, 5000], weight 0, scale 2.
        let text = pg_numeric_text(&numeric(2, 0, 0, 2, &[1234, 5000])).expect("decodes");
        assert_eq!(text, "1234.50");
        // -0.0012: groups [12], weight -1, scale 4.
        let text = pg_numeric_text(&numeric(1, -1, 0x4000, 4, &[12])).expect("decodes");
        assert_eq!(text, "-0.0012");
        // 123456789012345678901234567890.5 (more digits than rust_decimal holds).
        let text = pg_numeric_text(&numeric(
            9,
            7,
            0,
            1,
            &[12, 3456, 7890, 1234, 5678, 9012, 3456, 7890, 5000],
        ))
        .expect("decodes");
        assert_eq!(text, "123456789012345678901234567890.5");
        // 0 with scale 2; trailing zero groups are omitted on the wire.
        assert_eq!(
            pg_numeric_text(&numeric(0, 0, 0, 2, &[])).expect("decodes"),
            "0.00"
        );
        assert_eq!(
            pg_numeric_text(&numeric(1, 2, 0, 0, &[7])).expect("decodes"),
            "700000000"
        );
        assert!(pg_numeric_text(&numeric(0, 0, 0xC000, 0, &[])).is_err());
        assert!(pg_numeric_text(&[0, 1]).is_err());
    }

    #[test]
    fn floats_keep_their_short_form() {
        assert_eq!(float32(0.1).expect("finite"), serde_json::json!(0.1));
        assert!(float(f64::NAN).is_err());
    }
}
