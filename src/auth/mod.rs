//! Who is asking: every request is resolved to a [`Principal`] before the graph runs.
//!
//! Callers prove who they are with a signed bearer token from a configured issuer
//! ([`tokens`]). The demo's headers are the other way, which `[auth] demo_headers` must switch
//! on explicitly and which the shipped configuration leaves off outside `civicgraph demo`.

pub mod dev_tokens;
pub mod tokens;

use std::collections::BTreeSet;

use http::HeaderMap;

pub use tokens::{TokenConfigError, TokenError, TokenValidator};

use crate::identity::CitizenId;

/// Header naming the citizen a demo request acts as.
pub const DEMO_CITIZEN_HEADER: &str = "x-demo-citizen";
/// Header naming the operator a demo request acts as.
pub const DEMO_OPERATOR_HEADER: &str = "x-demo-operator";

/// The caller of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Principal {
    /// Nobody in particular: public data only.
    #[default]
    Anonymous,
    /// A citizen acting for themself (`Query.me`).
    Citizen(CitizenId),
    /// A gateway operator, who may manage identity links.
    Operator {
        /// The operator's name, recorded on what they change.
        name: String,
    },
    /// A partner agency's client, acting for one stated purpose within its scopes; what it
    /// may read is decided field by field by [`crate::consent::policy`].
    Agency(AgencyClient),
}

/// An agency client named by an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyClient {
    /// The OAuth client (`client_id` claim, else `sub`), for audit.
    pub client_id: String,
    /// The agency the client belongs to (`agency` claim).
    pub agency: String,
    /// OAuth scopes granted (`scope` claim, space-separated).
    pub scopes: BTreeSet<String>,
    /// Purposes of use the token allows (`purposes` claim, plus `purpose`).
    pub purposes: BTreeSet<String>,
    /// The purpose the token itself states (`purpose` claim); a request's `X-Purpose` header
    /// may choose another of `purposes` instead.
    pub purpose: Option<String>,
}

impl AgencyClient {
    /// The one purpose this request is for: the `X-Purpose` header when sent, else the
    /// token's `purpose`, else its only allowed purpose. Checked against the catalogue and
    /// the token's allowed purposes.
    pub fn stated_purpose(
        &self,
        header: Option<&str>,
        catalogue: &crate::config::TrustConfig,
    ) -> Result<String, PurposeError> {
        let stated = match header.map(str::trim) {
            Some(purpose) => purpose.to_string(),
            None => match (&self.purpose, self.purposes.len()) {
                (Some(purpose), _) => purpose.clone(),
                (None, 1) => self.purposes.iter().next().cloned().unwrap_or_default(),
                (None, _) => return Err(PurposeError::Missing),
            },
        };
        if !catalogue.purposes.contains_key(&stated) {
            return Err(PurposeError::Unknown);
        }
        if !self.purposes.contains(&stated) {
            return Err(PurposeError::NotAllowed);
        }
        Ok(stated)
    }
}

/// Why an agency request has no usable purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PurposeError {
    /// None stated, and the token allows several (or none).
    #[error("state the purpose of this request in the `X-Purpose` header")]
    Missing,
    /// Not in the gateway's purpose catalogue.
    #[error("the stated purpose is not one this gateway knows")]
    Unknown,
    /// Not among the purposes the token allows.
    #[error("the stated purpose is not one this client's token allows")]
    NotAllowed,
}

impl Principal {
    /// The citizen this principal is, if any.
    pub fn citizen(&self) -> Option<&CitizenId> {
        match self {
            Self::Citizen(id) => Some(id),
            _ => None,
        }
    }

    /// The operator's name, if this principal is one.
    pub fn operator(&self) -> Option<&str> {
        match self {
            Self::Operator { name } => Some(name),
            _ => None,
        }
    }

    /// Reads the demo headers. A malformed value leaves the caller anonymous rather than
    /// failing the request, as an unknown token would.
    pub fn from_demo_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(name) = text(DEMO_OPERATOR_HEADER) {
            let name = name.trim();
            if (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
            {
                return Self::Operator {
                    name: name.to_string(),
                };
            }
            return Self::Anonymous;
        }
        match text(DEMO_CITIZEN_HEADER).map(|v| CitizenId::parse(v.trim())) {
            Some(Ok(id)) => Self::Citizen(id),
            _ => Self::Anonymous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn demo_headers_name_a_citizen_or_an_operator() {
        assert_eq!(
            Principal::from_demo_headers(&headers(&[(DEMO_CITIZEN_HEADER, "C0000001")])),
            Principal::Citizen(CitizenId::parse("C0000001").unwrap())
        );
        assert_eq!(
            Principal::from_demo_headers(&headers(&[(DEMO_OPERATOR_HEADER, "ops@agency")])),
            Principal::Operator {
                name: "ops@agency".into()
            }
        );
    }

    #[test]
    fn malformed_demo_headers_leave_the_caller_anonymous() {
        for (name, value) in [
            (DEMO_CITIZEN_HEADER, "C1' OR 1=1"),
            (DEMO_CITIZEN_HEADER, ""),
            (DEMO_OPERATOR_HEADER, "root; drop"),
        ] {
            assert_eq!(
                Principal::from_demo_headers(&headers(&[(name, value)])),
                Principal::Anonymous,
                "{name}: {value}"
            );
        }
    }
}
