//! `[trust]` and `[audit]` in `civicgraph.toml`: the catalogues the policy speaks in (purposes,
//! data categories, agencies and their legal bases) and where the audit trail's checkpoints go.
//!
//! Codes are what tokens, directives and the ledger store; the plain words beside them are
//! what a citizen reads in their consent receipts and access log.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// Purposes, categories and agencies, and what a denied field does.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// Ed25519 key (PKCS#8 PEM, relative to `civicgraph.toml`) that signs consent receipts and
    /// audit checkpoints; made on first start when missing.
    pub signing_key: String,
    /// What happens to an operation that asks for a field its caller may not read.
    pub on_denied: OnDenied,
    /// The purposes an agency may state, code → plain words ("checking your eligibility for
    /// benefits"), e.g. `benefit-eligibility`.
    pub purposes: BTreeMap<String, Spanned<String>>,
    /// The data categories fields are tagged with (`@consent(category:)`), code → plain words
    /// ("your driver's licence").
    pub categories: BTreeMap<String, Spanned<String>>,
    /// Agencies, by the code in their tokens' `agency` claim and in `@owner(agency:)`.
    pub agencies: BTreeMap<String, AgencyConfig>,
    /// The longest a citizen's consent may last, in days.
    pub max_consent_days: u32,
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            signing_key: ".civicgraph/signing-key.pem".to_string(),
            on_denied: OnDenied::Null,
            purposes: BTreeMap::new(),
            categories: BTreeMap::new(),
            agencies: BTreeMap::new(),
            max_consent_days: 5 * 366,
        }
    }
}

impl TrustConfig {
    /// The plain words for a purpose code; the code itself when it is not catalogued.
    pub fn purpose_words<'a>(&'a self, code: &'a str) -> &'a str {
        self.purposes
            .get(code)
            .map_or(code, |w| w.get_ref().as_str())
    }

    /// The plain words for a category code; the code itself when it is not catalogued.
    pub fn category_words<'a>(&'a self, code: &'a str) -> &'a str {
        self.categories
            .get(code)
            .map_or(code, |w| w.get_ref().as_str())
    }

    /// The agency's name; its code when it is not catalogued.
    pub fn agency_name<'a>(&'a self, code: &'a str) -> &'a str {
        self.agencies.get(code).map_or(code, |a| a.name.as_str())
    }

    /// Problems with the catalogues, each with the span of what is wrong.
    pub fn problems(&self) -> Vec<(Option<std::ops::Range<usize>>, String)> {
        let mut problems = Vec::new();
        let mut code = |kind: &str, code: &str, span: Option<std::ops::Range<usize>>| {
            if !is_code(code) {
                problems.push((
                    span,
                    format!(
                        "{kind} `{code}` is not a valid code: use 1–64 lowercase letters, digits, `.`, `-` or `_`, starting with a letter"
                    ),
                ));
            }
        };
        for (name, words) in &self.purposes {
            code("purpose", name, Some(words.span()));
        }
        for (name, words) in &self.categories {
            code("category", name, Some(words.span()));
        }
        for (name, agency) in &self.agencies {
            code(
                "agency",
                name,
                agency.legal_basis.as_ref().map(Spanned::span),
            );
        }
        for (name, words) in self.purposes.iter().chain(&self.categories) {
            if words.get_ref().trim().is_empty() {
                problems.push((
                    Some(words.span()),
                    format!("`{name}` needs plain words saying what it is, for citizens to read"),
                ));
            }
        }
        if self.max_consent_days == 0 {
            problems.push((
                None,
                "`trust.max_consent_days` must be at least 1".to_string(),
            ));
        }
        problems
    }
}

/// Whether `code` is a catalogue code: `[a-z][a-z0-9._-]{0,63}`.
pub fn is_code(code: &str) -> bool {
    let mut bytes = code.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && code.len() <= 64
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_'))
}

/// One agency in the catalogue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyConfig {
    /// How citizens know it ("the Motor Vehicle Agency").
    pub name: String,
    /// The law under which the agency reads the data it owns (`@owner(agency:)`) without the
    /// citizen's consent. Without one, it needs consent like any other agency.
    #[serde(default)]
    pub legal_basis: Option<Spanned<String>>,
}

/// What happens to an operation that asks for a field its caller may not read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDenied {
    /// The field is `null` with `FORBIDDEN` or `CONSENT_REQUIRED`; the rest is answered.
    #[default]
    Null,
    /// The whole operation is refused with HTTP 403 and the denials, and no data.
    Reject,
}

/// `[audit]`: where the audit chain's signed checkpoints go, and how long a write may take.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// File (relative to `civicgraph.toml`) the signed chain heads are appended to. It lives
    /// outside the database so that cutting the chain's tail there is caught.
    pub checkpoint_file: String,
    /// Seconds between checkpoints (one is written only when the chain grew).
    pub checkpoint_interval_s: u64,
    /// How long a protected read waits for its audit record to commit before it is refused
    /// with `AUDIT_UNAVAILABLE`.
    pub timeout_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_file: ".civicgraph/audit-checkpoints.jsonl".to_string(),
            checkpoint_interval_s: 60,
            timeout_ms: 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_lowercase_words() {
        for good in ["dmv.license", "benefit-eligibility", "tax", "a_b9"] {
            assert!(is_code(good), "{good}");
        }
        for bad in ["", "DMV", "9dmv", "dmv license", "dmv/x", &"a".repeat(65)] {
            assert!(!is_code(bad), "{bad}");
        }
    }
}
