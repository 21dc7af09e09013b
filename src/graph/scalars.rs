//! Leaf values: coercing backend JSON into GraphQL scalars and enums, and validating the
//! custom scalars `Date`, `DateTime` and `Money` on input.
//!
//! Legacy backends send numbers as strings and strings as numbers; the coercions here follow
//! the GraphQL spec's result-coercion rules and refuse anything that would lose information.
//! `Money` is carried as a decimal string so no amount ever passes through a float.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::{Name, Value as GqlValue};
use serde_json::Value;

/// A leaf type's coercion rule.
#[derive(Debug, Clone)]
pub(crate) enum Leaf {
    Int,
    Float,
    String,
    Boolean,
    Id,
    Date,
    DateTime,
    Money,
    Enum(Arc<HashSet<String>>),
}

impl Leaf {
    /// The rule for a named scalar, if the name is one.
    pub(crate) fn scalar(name: &str) -> Option<Self> {
        Some(match name {
            "Int" => Self::Int,
            "Float" => Self::Float,
            "String" => Self::String,
            "Boolean" => Self::Boolean,
            "ID" => Self::Id,
            "Date" => Self::Date,
            "DateTime" => Self::DateTime,
            "Money" => Self::Money,
            _ => return None,
        })
    }

    /// The type's name for messages.
    fn describe(&self) -> &'static str {
        match self {
            Self::Int => "an Int",
            Self::Float => "a Float",
            Self::String => "a String",
            Self::Boolean => "a Boolean",
            Self::Id => "an ID",
            Self::Date => "a Date (YYYY-MM-DD)",
            Self::DateTime => "a DateTime (RFC 3339)",
            Self::Money => "a Money amount (a decimal such as 12.50)",
            Self::Enum(_) => "one of the enum's values",
        }
    }

    /// Coerces a non-null backend value; the error says what was expected.
    pub(crate) fn coerce(&self, value: &Value) -> Result<GqlValue, String> {
        let fail = || {
            Err(format!(
                "expected {}, found {}",
                self.describe(),
                json_kind(value)
            ))
        };
        match (self, value) {
            (Self::Int, Value::Number(n)) => match n.as_i64().or_else(|| integral(n.as_f64()?)) {
                Some(i) if i32::try_from(i).is_ok() => Ok(GqlValue::from(i)),
                _ => fail(),
            },
            (Self::Int, Value::String(s)) => match s.parse::<i32>() {
                Ok(i) => Ok(GqlValue::from(i)),
                Err(_) => fail(),
            },
            (Self::Float, Value::Number(n)) => n.as_f64().map(GqlValue::from).map_or_else(fail, Ok),
            (Self::Float, Value::String(s)) => match s.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(GqlValue::from(f)),
                _ => fail(),
            },
            (Self::String, Value::String(s)) => Ok(GqlValue::String(s.clone())),
            (Self::String, Value::Number(n)) => Ok(GqlValue::String(n.to_string())),
            (Self::String, Value::Bool(b)) => Ok(GqlValue::String(b.to_string())),
            (Self::Boolean, Value::Bool(b)) => Ok(GqlValue::Boolean(*b)),
            // XML text and MySQL's TINYINT(1) carry booleans as text or 0/1.
            (Self::Boolean, Value::String(s)) => match s.as_str() {
                "true" | "1" => Ok(GqlValue::Boolean(true)),
                "false" | "0" => Ok(GqlValue::Boolean(false)),
                _ => fail(),
            },
            (Self::Boolean, Value::Number(n)) => match n.as_u64() {
                Some(1) => Ok(GqlValue::Boolean(true)),
                Some(0) => Ok(GqlValue::Boolean(false)),
                _ => fail(),
            },
            (Self::Id, Value::String(s)) => Ok(GqlValue::String(s.clone())),
            (Self::Id, Value::Number(n)) if n.is_i64() || n.is_u64() => {
                Ok(GqlValue::String(n.to_string()))
            }
            (Self::Date, Value::String(s)) if is_date(s) => Ok(GqlValue::String(s.clone())),
            (Self::DateTime, Value::String(s)) if is_date_time(s) => {
                Ok(GqlValue::String(s.clone()))
            }
            (Self::Money, Value::String(s)) if is_decimal(s) => Ok(GqlValue::String(s.clone())),
            (Self::Money, Value::Number(n)) if is_decimal(&n.to_string()) => {
                Ok(GqlValue::String(n.to_string()))
            }
            (Self::Enum(values), Value::String(s)) if values.contains(s) => {
                Ok(GqlValue::Enum(Name::new(s)))
            }
            _ => fail(),
        }
    }
}

fn integral(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && f.abs() < 2f64.powi(53)).then_some(f as i64)
}

fn json_kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the Boolean {b}"),
        Value::Number(_) => "a number".into(),
        Value::String(_) => "a string in another format".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// `YYYY-MM-DD` and a real calendar date.
pub(crate) fn is_date(s: &str) -> bool {
    s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// An RFC 3339 timestamp with an explicit offset.
pub(crate) fn is_date_time(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// An optional minus, digits, and an optional fraction: `-12.50`, `0`, `1000.125`.
pub(crate) fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    !whole.is_empty()
        && whole.len() <= 24
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction
            .is_none_or(|f| !f.is_empty() && f.len() <= 12 && f.bytes().all(|b| b.is_ascii_digit()))
}

/// The input check for a custom scalar, run by the executor on literals and variables.
pub(crate) fn input_validator(name: &str) -> fn(&GqlValue) -> bool {
    match name {
        "Date" => |v| matches!(v, GqlValue::String(s) if is_date(s)),
        "DateTime" => |v| matches!(v, GqlValue::String(s) if is_date_time(s)),
        _ => |v| matches!(v, GqlValue::String(s) if is_decimal(s)),
    }
}

/// What each custom scalar means, used when the SDL declares it without a description.
pub(crate) fn default_description(name: &str) -> &'static str {
    match name {
        "Date" => "A calendar date, `YYYY-MM-DD`.",
        "DateTime" => "An instant with its UTC offset, RFC 3339 (`2026-04-15T09:30:00Z`).",
        _ => "An exact decimal amount as a string (`-120.50`); never a binary float.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn coerces_what_the_spec_allows() {
        assert_eq!(Leaf::Int.coerce(&json!(3.0)), Ok(GqlValue::from(3)));
        assert_eq!(Leaf::Int.coerce(&json!("42")), Ok(GqlValue::from(42)));
        assert!(Leaf::Int.coerce(&json!(3.5)).is_err());
        assert!(Leaf::Int.coerce(&json!(1_i64 << 40)).is_err());
        assert_eq!(Leaf::String.coerce(&json!(7)), Ok(GqlValue::from("7")));
        assert_eq!(Leaf::Id.coerce(&json!(7)), Ok(GqlValue::from("7")));
        // XML text and MySQL TINYINT(1) booleans; nothing looser.
        assert_eq!(
            Leaf::Boolean.coerce(&json!("true")),
            Ok(GqlValue::from(true))
        );
        assert_eq!(Leaf::Boolean.coerce(&json!("0")), Ok(GqlValue::from(false)));
        assert_eq!(Leaf::Boolean.coerce(&json!(1)), Ok(GqlValue::from(true)));
        assert!(Leaf::Boolean.coerce(&json!("yes")).is_err());
        assert!(Leaf::Boolean.coerce(&json!(2)).is_err());
        assert_eq!(Leaf::Float.coerce(&json!("1.5")), Ok(GqlValue::from(1.5)));
    }

    #[test]
    fn validates_custom_scalars() {
        assert!(Leaf::Date.coerce(&json!("2024-02-29")).is_ok());
        assert!(Leaf::Date.coerce(&json!("2023-02-29")).is_err());
        assert!(
            Leaf::DateTime
                .coerce(&json!("2026-04-15T09:30:00Z"))
                .is_ok()
        );
        assert!(Leaf::DateTime.coerce(&json!("2026-04-15 09:30")).is_err());
        assert_eq!(
            Leaf::Money.coerce(&json!("-120.50")),
            Ok(GqlValue::from("-120.50"))
        );
        assert_eq!(Leaf::Money.coerce(&json!(12.5)), Ok(GqlValue::from("12.5")));
        assert!(Leaf::Money.coerce(&json!("1e3")).is_err());
        assert!(Leaf::Money.coerce(&json!("12.")).is_err());
    }

    #[test]
    fn enums_accept_only_their_values() {
        let leaf = Leaf::Enum(Arc::new(HashSet::from(["FILED".to_string()])));
        assert_eq!(
            leaf.coerce(&json!("FILED")),
            Ok(GqlValue::Enum(Name::new("FILED")))
        );
        assert!(leaf.coerce(&json!("filed")).is_err());
    }
}
