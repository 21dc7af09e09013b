//! The one function that names a cached answer.
//!
//! A key is a canonical byte string, never a hash, so two different calls can never share an
//! entry in memory: it holds the connector, the operation, every argument and, unless the
//! operation's answers are shared, who asked and why. The Redis tier hashes it for storage but
//! keeps the whole key inside the entry and compares it before use.

use std::sync::Arc;

use serde_json::Value;

use crate::auth::Principal;
use crate::connectors::Arguments;

/// Whose answers may be shared. Callers in different scopes never share a cached answer or an
/// in-flight call, because a backend may answer differently by who asks and why (it receives
/// the purpose), and BAD_INPUTS row 42 requires a new purpose to miss the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CacheScope {
    /// Reference data whose answer is the same for everyone (`cache.shared = true`).
    Shared,
    /// Nobody signed in.
    Anonymous,
    /// A citizen, by canonical id.
    Citizen(String),
    /// An agency client, with the purpose it stated.
    Agency {
        /// The agency's code (whose consents the caller acts under).
        agency: String,
        /// The client id of the token.
        client: String,
        /// The stated purpose.
        purpose: Option<String>,
    },
    /// A gateway operator, by subject.
    Operator(String),
}

impl CacheScope {
    /// The scope of a request made by `principal` for `purpose`.
    pub fn of(principal: &Principal, purpose: Option<&str>) -> Self {
        match principal {
            Principal::Anonymous => Self::Anonymous,
            Principal::Citizen(citizen) => Self::Citizen(citizen.as_str().to_string()),
            Principal::Agency(client) => Self::Agency {
                agency: client.agency.clone(),
                client: client.client_id.clone(),
                purpose: purpose.map(str::to_string),
            },
            Principal::Operator { name } => Self::Operator(name.clone()),
        }
    }

    /// The agency whose consents this scope's reads rest on: a withdrawn consent for it
    /// invalidates its entries.
    pub fn agency(&self) -> Option<&str> {
        match self {
            Self::Agency { agency, .. } => Some(agency),
            _ => None,
        }
    }
}

/// A cache key: compare and hash it, never parse it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(Arc<[u8]>);

impl CacheKey {
    /// The canonical bytes (the Redis tier hashes them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Builds the key of a call: the Redis tier's `(connector, operation)` prefix, then the scope,
/// then every argument in name order. Every variable-length part is length-prefixed and every
/// JSON value is tagged by kind, so no two different inputs encode to the same bytes.
pub fn cache_key(
    connector: &str,
    operation: &str,
    args: &Arguments,
    scope: &CacheScope,
) -> CacheKey {
    let mut out = crate::cache_tier::key_prefix(connector, operation);
    match scope {
        CacheScope::Shared => out.push(b'S'),
        CacheScope::Anonymous => out.push(b'A'),
        CacheScope::Citizen(id) => {
            out.push(b'C');
            bytes(&mut out, id.as_bytes());
        }
        CacheScope::Agency {
            agency,
            client,
            purpose,
        } => {
            out.push(b'G');
            bytes(&mut out, agency.as_bytes());
            bytes(&mut out, client.as_bytes());
            match purpose {
                Some(purpose) => {
                    out.push(1);
                    bytes(&mut out, purpose.as_bytes());
                }
                None => out.push(0),
            }
        }
        CacheScope::Operator(subject) => {
            out.push(b'O');
            bytes(&mut out, subject.as_bytes());
        }
    }
    length(&mut out, args.len());
    for (name, value) in args {
        bytes(&mut out, name.as_bytes());
        json(&mut out, value);
    }
    CacheKey(out.into())
}

fn length(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u64).to_be_bytes());
}

fn bytes(out: &mut Vec<u8>, data: &[u8]) {
    length(out, data.len());
    out.extend_from_slice(data);
}

fn json(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(b'n'),
        Value::Bool(false) => out.push(b'f'),
        Value::Bool(true) => out.push(b't'),
        Value::Number(number) => {
            // The number's own text: 1 and 1.0 are different arguments to a backend.
            out.push(b'#');
            bytes(out, number.to_string().as_bytes());
        }
        Value::String(text) => {
            out.push(b's');
            bytes(out, text.as_bytes());
        }
        Value::Array(items) => {
            out.push(b'[');
            length(out, items.len());
            for item in items {
                json(out, item);
            }
        }
        Value::Object(fields) => {
            out.push(b'{');
            length(out, fields.len());
            let mut sorted: Vec<_> = fields.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            for (name, item) in sorted {
                bytes(out, name.as_bytes());
                json(out, item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn scope() -> impl Strategy<Value = CacheScope> {
        let text = || ".{0,5}";
        prop_oneof![
            Just(CacheScope::Shared),
            Just(CacheScope::Anonymous),
            text().prop_map(CacheScope::Citizen),
            (text(), text(), prop::option::of(text())).prop_map(|(agency, client, purpose)| {
                CacheScope::Agency {
                    agency,
                    client,
                    purpose,
                }
            }),
            text().prop_map(CacheScope::Operator),
        ]
    }

    fn arguments() -> impl Strategy<Value = Arguments> {
        prop::collection::btree_map(".{0,4}", value(), 0..4)
    }

    type Call = (String, String, Arguments, CacheScope);

    fn call() -> impl Strategy<Value = Call> {
        (".{0,4}", ".{0,4}", arguments(), scope())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Different connectors, operations, argument sets or identity scopes never share a key;
        /// equal ones always do.
        #[test]
        fn different_calls_never_share_a_key(a in call(), b in call()) {
            let key_a = cache_key(&a.0, &a.1, &a.2, &a.3);
            let key_b = cache_key(&b.0, &b.1, &b.2, &b.3);
            prop_assert_eq!(a == b, key_a == key_b, "{:?} vs {:?}", a, b);
        }

        /// The same call with only the scope changed (another citizen, another purpose) gets
        /// another key, including near misses that share every other part.
        #[test]
        fn another_scope_is_another_key((connector, operation, args, first) in call(), second in scope()) {
            prop_assume!(first != second);
            prop_assert_ne!(
                cache_key(&connector, &operation, &args, &first),
                cache_key(&connector, &operation, &args, &second)
            );
        }
    }

    #[test]
    fn look_alike_inputs_stay_apart() {
        let args = |pairs: &[(&str, Value)]| -> Arguments {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        let agency = |purpose: &str| CacheScope::Agency {
            agency: "benefits".into(),
            client: "portal".into(),
            purpose: Some(purpose.into()),
        };
        let tin = args(&[("tin", Value::from("123"))]);
        let pairs = [
            // A connector name that swallows the operation's first letters.
            (
                cache_key("tax", "account", &tin, &CacheScope::Shared),
                cache_key("taxa", "ccount", &tin, &CacheScope::Shared),
            ),
            // The number 123 and the string "123".
            (
                cache_key("tax", "account", &tin, &CacheScope::Shared),
                cache_key(
                    "tax",
                    "account",
                    &args(&[("tin", Value::from(123))]),
                    &CacheScope::Shared,
                ),
            ),
            // Purpose P1 and P2 (BAD_INPUTS row 42).
            (
                cache_key("tax", "account", &tin, &agency("benefit-eligibility")),
                cache_key("tax", "account", &tin, &agency("fraud-investigation")),
            ),
            // Two citizens.
            (
                cache_key(
                    "tax",
                    "account",
                    &tin,
                    &CacheScope::Citizen("C0000001".into()),
                ),
                cache_key(
                    "tax",
                    "account",
                    &tin,
                    &CacheScope::Citizen("C0000002".into()),
                ),
            ),
            // A null argument and a missing one.
            (
                cache_key(
                    "tax",
                    "account",
                    &args(&[("a", Value::Null)]),
                    &CacheScope::Shared,
                ),
                cache_key("tax", "account", &args(&[]), &CacheScope::Shared),
            ),
        ];
        for (a, b) in pairs {
            assert_ne!(a, b);
        }
    }
}
