//! Conditions over a JSON record: `{ status = { eq = "FILED" }, weeks_paid = { lt = 26 } }`.
//!
//! The rules file uses them on one backend change, the service catalogue on a citizen's joined
//! record. They are data, not code, so `civicgraph check` can validate every one and nothing in
//! a configuration file can run arbitrary logic inside the gateway.

use std::collections::BTreeMap;

use chrono::{Datelike, Months, NaiveDate};
use serde::Deserialize;
use serde_json::Value;

/// One field's test; every operator given must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Test {
    /// Equal to this value.
    pub eq: Option<Value>,
    /// Not equal to this value (an absent field is not equal).
    pub ne: Option<Value>,
    /// One of these values.
    #[serde(rename = "in")]
    pub one_of: Option<Vec<Value>>,
    /// None of these values.
    pub not_in: Option<Vec<Value>>,
    /// Greater than (numbers by value, text in order — ISO dates compare as dates).
    pub gt: Option<Value>,
    /// Greater than or equal.
    pub gte: Option<Value>,
    /// Less than.
    pub lt: Option<Value>,
    /// Less than or equal.
    pub lte: Option<Value>,
    /// Present and not null (`true`), or absent or null (`false`).
    pub present: Option<bool>,
    /// A date from today up to this many days ahead (a licence expiring within 30 days).
    pub within_days: Option<u32>,
    /// A birth date at least this many years ago (reached an age).
    pub age_at_least: Option<u32>,
}

impl Test {
    /// Whether no operator is given (a mistake worth reporting: it would always hold).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether one value passes every operator given. `None` is an absent field.
    fn holds_for(&self, value: Option<&Value>, today: NaiveDate) -> bool {
        let value = value.filter(|v| !v.is_null());
        if let Some(present) = self.present
            && present != value.is_some()
        {
            return false;
        }
        if let Some(expected) = &self.ne
            && value.is_some_and(|v| same(v, expected))
        {
            return false;
        }
        if let Some(excluded) = &self.not_in
            && value.is_some_and(|v| excluded.iter().any(|e| same(v, e)))
        {
            return false;
        }
        let needs_value = self.eq.is_some()
            || self.one_of.is_some()
            || self.gt.is_some()
            || self.gte.is_some()
            || self.lt.is_some()
            || self.lte.is_some()
            || self.within_days.is_some()
            || self.age_at_least.is_some();
        let Some(value) = value else {
            return !needs_value;
        };
        if let Some(expected) = &self.eq
            && !same(value, expected)
        {
            return false;
        }
        if let Some(options) = &self.one_of
            && !options.iter().any(|o| same(value, o))
        {
            return false;
        }
        let ordered = [
            (&self.gt, [std::cmp::Ordering::Greater].as_slice()),
            (
                &self.gte,
                [std::cmp::Ordering::Greater, std::cmp::Ordering::Equal].as_slice(),
            ),
            (&self.lt, [std::cmp::Ordering::Less].as_slice()),
            (
                &self.lte,
                [std::cmp::Ordering::Less, std::cmp::Ordering::Equal].as_slice(),
            ),
        ];
        for (bound, allowed) in ordered {
            if let Some(bound) = bound {
                match compare(value, bound) {
                    Some(order) if allowed.contains(&order) => {}
                    _ => return false,
                }
            }
        }
        if let Some(days) = self.within_days {
            let Some(date) = date_of(value) else {
                return false;
            };
            let until = today + chrono::Duration::days(i64::from(days));
            if date < today || date > until {
                return false;
            }
        }
        if let Some(years) = self.age_at_least {
            let Some(born) = date_of(value) else {
                return false;
            };
            match born.checked_add_months(Months::new(years.saturating_mul(12))) {
                Some(reached) if reached <= today => {}
                _ => return false,
            }
        }
        true
    }
}

/// All of these field tests (keys are dotted paths into the record).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Condition(pub BTreeMap<String, Test>);

impl Condition {
    /// Whether the record meets every test. A path through a list holds when any element
    /// along it passes.
    pub fn matches(&self, record: &Value, today: NaiveDate) -> bool {
        self.0.iter().all(|(path, test)| {
            let values = lookup(record, path);
            if values.is_empty() {
                test.holds_for(None, today)
            } else {
                values.iter().any(|v| test.holds_for(Some(v), today))
            }
        })
    }

    /// The first value each test matched on, as `path = value` text: the reason shown to a
    /// citizen for a suggestion, and what a log line may say about a rule without its record.
    pub fn explain(&self, record: &Value, today: NaiveDate) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|(path, test)| {
                lookup(record, path)
                    .into_iter()
                    .find(|v| test.holds_for(Some(v), today))
                    .map(|v| format!("{path} = {}", text_of(v)))
            })
            .collect()
    }
}

/// Every value at a dotted path; a list along the way contributes each of its elements.
pub fn lookup<'a>(record: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![record];
    for part in path.split('.') {
        let mut next = Vec::new();
        for value in current {
            match value {
                Value::Object(map) => {
                    if let Some(found) = map.get(part) {
                        next.push(found);
                    }
                }
                Value::Array(items) => next.extend(
                    items
                        .iter()
                        .filter_map(|item| item.as_object().and_then(|m| m.get(part))),
                ),
                _ => {}
            }
        }
        current = next;
    }
    current
        .into_iter()
        .flat_map(|value| match value {
            Value::Array(items) => items.iter().collect::<Vec<_>>(),
            other => vec![other],
        })
        .collect()
}

/// One value at a path as text (a string as is, a number as written); `None` when absent,
/// null, or not a scalar. Ids in payloads and idempotency keys are made with it.
pub fn scalar_text(record: &Value, path: &str) -> Option<String> {
    match lookup(record, path).first()? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Equality that treats `1` and `1.0` alike (backends differ in how they write numbers).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.as_str().cmp(y.as_str())),
        _ => None,
    }
}

/// A date from `YYYY-MM-DD…` text (a date, or a timestamp's date part).
pub fn date_of(value: &Value) -> Option<NaiveDate> {
    let text = value.as_str()?;
    let date = text.get(..10)?;
    NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()
        .filter(|d| d.year() > 1800)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn condition(toml_text: &str) -> Condition {
        #[derive(Deserialize)]
        struct Wrapper {
            when: Condition,
        }
        let wrapper: Wrapper = toml::from_str(toml_text).expect("condition");
        wrapper.when
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).expect("date")
    }

    #[test]
    fn every_operator_decides_as_documented() {
        let record = json!({
            "status": "FILED", "weeks": 3, "reason": null,
            "expires": "2026-12-01", "born": "1959-11-20T00:00:00Z",
            "claims": [{"status": "DENIED"}, {"status": "FILED"}],
        });
        let holds = |text: &str| condition(text).matches(&record, today());
        assert!(holds(r#"when = { status = { eq = "FILED" } }"#));
        assert!(!holds(r#"when = { status = { ne = "FILED" } }"#));
        assert!(holds(
            r#"when = { status = { in = ["APPROVED", "FILED"] } }"#
        ));
        assert!(!holds(r#"when = { status = { not_in = ["FILED"] } }"#));
        assert!(holds(r#"when = { weeks = { gt = 2, lte = 3.0 } }"#));
        assert!(!holds(r#"when = { weeks = { lt = 3 } }"#));
        assert!(holds(r#"when = { weeks = { eq = 3.0 } }"#), "3 == 3.0");
        assert!(holds(r#"when = { reason = { present = false } }"#));
        assert!(holds(r#"when = { missing = { present = false } }"#));
        assert!(!holds(r#"when = { missing = { eq = 1 } }"#));
        assert!(holds(r#"when = { missing = { ne = 1 } }"#));
        assert!(holds(r#"when = { expires = { within_days = 30 } }"#));
        assert!(!holds(r#"when = { expires = { within_days = 7 } }"#));
        assert!(holds(r#"when = { born = { age_at_least = 67 } }"#));
        assert!(!holds(r#"when = { born = { age_at_least = 68 } }"#));
        assert!(holds(r#"when = { "claims.status" = { eq = "FILED" } }"#));
        assert!(!holds(
            r#"when = { "claims.status" = { eq = "APPROVED" } }"#
        ));
        assert!(!holds(
            r#"when = { status = { eq = "FILED" }, weeks = { gt = 5 } }"#
        ));
        assert!(
            !holds(r#"when = { status = { gt = 3 } }"#),
            "text vs number"
        );
    }

    #[test]
    fn unknown_operators_are_refused_and_reasons_name_the_values() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code, reason = "only the parse result matters")]
        struct Wrapper {
            when: Condition,
        }
        let error = toml::from_str::<Wrapper>(r#"when = { status = { equals = "X" } }"#)
            .expect_err("unknown operator");
        assert!(
            error.to_string().contains("unknown field `equals`"),
            "{error}"
        );
        let record = json!({"claims": [{"status": "DENIED"}, {"status": "FILED"}]});
        let when = condition(r#"when = { "claims.status" = { in = ["FILED"] } }"#);
        assert_eq!(when.explain(&record, today()), ["claims.status = FILED"]);
        assert_eq!(
            scalar_text(&json!({"a": {"b": 7}}), "a.b").as_deref(),
            Some("7")
        );
        assert!(Test::default().is_empty());
    }
}
