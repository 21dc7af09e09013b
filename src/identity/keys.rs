//! Typed identifiers: the canonical citizen id and each agency's own key for a person.
//!
//! Every agency knows a person by a different number. Keeping each in its own newtype means a
//! TIN can never be sent where a licence number is expected: the compiler refuses it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a text is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Empty, too long, or with characters outside `A–Z a–z 0–9 - _ . /`.
    #[error(
        "`{kind}` must be 1–64 characters of letters, digits, `-`, `_`, `.` or `/` (the value is not shown)"
    )]
    Malformed {
        /// What kind of identifier was expected.
        kind: &'static str,
    },
    /// Not one of the agency key kinds.
    #[error(
        "unknown agency key kind `{0}`; expected tin, license_number, claimant_id or case_number"
    )]
    UnknownKind(String),
}

/// Which agency key a connector understands; also the placeholder name it is passed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// Taxpayer identification number (tax agency).
    Tin,
    /// Driver's licence number (motor vehicles).
    LicenseNumber,
    /// Claimant id (unemployment insurance).
    ClaimantId,
    /// Case number (the benefits mainframe).
    CaseNumber,
}

impl KeyKind {
    /// Every kind, in a stable order.
    pub const ALL: [KeyKind; 4] = [
        Self::Tin,
        Self::LicenseNumber,
        Self::ClaimantId,
        Self::CaseNumber,
    ];

    /// The name in config files, the store and connector placeholders: `license_number`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tin => "tin",
            Self::LicenseNumber => "license_number",
            Self::ClaimantId => "claimant_id",
            Self::CaseNumber => "case_number",
        }
    }

    /// The GraphQL enum value: `LICENSE_NUMBER`.
    pub const fn graphql_name(self) -> &'static str {
        match self {
            Self::Tin => "TIN",
            Self::LicenseNumber => "LICENSE_NUMBER",
            Self::ClaimantId => "CLAIMANT_ID",
            Self::CaseNumber => "CASE_NUMBER",
        }
    }

    /// Reads either spelling (`license_number` or `LICENSE_NUMBER`).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == text || k.graphql_name() == text)
            .ok_or_else(|| KeyError::UnknownKind(text.chars().take(40).collect()))
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn well_formed(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

/// A canonical citizen id, the key every agency record is linked to (`C0000001`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CitizenId(String);

impl CitizenId {
    /// Validates the text of an id.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if well_formed(text) {
            Ok(Self(text.to_string()))
        } else {
            Err(KeyError::Malformed { kind: "citizen id" })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One agency's key for a person, tied to its kind at the type level.
pub trait AgencyKey: Sized {
    /// Which kind of key this type is.
    const KIND: KeyKind;
    /// Validates the text of a key.
    fn parse(text: &str) -> Result<Self, KeyError>;
    /// The key as text, for the one place that sends it to the agency.
    fn as_str(&self) -> &str;
}

macro_rules! agency_key {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl AgencyKey for $name {
            const KIND: KeyKind = $kind;
            fn parse(text: &str) -> Result<Self, KeyError> {
                if well_formed(text) {
                    Ok(Self(text.to_string()))
                } else {
                    Err(KeyError::Malformed { kind: $kind.as_str() })
                }
            }
            fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for AnyKey {
            fn from(key: $name) -> Self {
                Self::$name(key)
            }
        }
    };
}

agency_key!(
    /// A taxpayer identification number.
    Tin,
    KeyKind::Tin
);
agency_key!(
    /// A driver's licence number.
    LicenseNumber,
    KeyKind::LicenseNumber
);
agency_key!(
    /// An unemployment-insurance claimant id.
    ClaimantId,
    KeyKind::ClaimantId
);
agency_key!(
    /// A benefits case number.
    CaseNumber,
    KeyKind::CaseNumber
);

/// A key of whichever agency; the variant is its kind, so kind and value never disagree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AnyKey {
    /// Tax.
    Tin(Tin),
    /// Motor vehicles.
    LicenseNumber(LicenseNumber),
    /// Unemployment insurance.
    ClaimantId(ClaimantId),
    /// Benefits.
    CaseNumber(CaseNumber),
}

impl AnyKey {
    /// Validates `text` as a key of `kind`.
    pub fn parse(kind: KeyKind, text: &str) -> Result<Self, KeyError> {
        Ok(match kind {
            KeyKind::Tin => Tin::parse(text)?.into(),
            KeyKind::LicenseNumber => LicenseNumber::parse(text)?.into(),
            KeyKind::ClaimantId => ClaimantId::parse(text)?.into(),
            KeyKind::CaseNumber => CaseNumber::parse(text)?.into(),
        })
    }

    /// Which agency's key this is.
    pub fn kind(&self) -> KeyKind {
        match self {
            Self::Tin(_) => KeyKind::Tin,
            Self::LicenseNumber(_) => KeyKind::LicenseNumber,
            Self::ClaimantId(_) => KeyKind::ClaimantId,
            Self::CaseNumber(_) => KeyKind::CaseNumber,
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Tin(k) => k.as_str(),
            Self::LicenseNumber(k) => k.as_str(),
            Self::ClaimantId(k) => k.as_str(),
            Self::CaseNumber(k) => k.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_both_spellings_and_refuse_others() {
        assert_eq!(KeyKind::parse("license_number"), Ok(KeyKind::LicenseNumber));
        assert_eq!(KeyKind::parse("CLAIMANT_ID"), Ok(KeyKind::ClaimantId));
        assert!(matches!(
            KeyKind::parse("ssn"),
            Err(KeyError::UnknownKind(_))
        ));
    }

    #[test]
    fn keys_refuse_markup_and_empty_text() {
        assert!(Tin::parse("123-45-6789").is_ok());
        assert!(Tin::parse("").is_err());
        assert!(LicenseNumber::parse("D1<x/>").is_err());
        assert!(CitizenId::parse("C0000001' OR 1=1").is_err());
        assert!(CitizenId::parse(&"C".repeat(65)).is_err());
    }

    #[test]
    fn any_key_keeps_its_kind() {
        let key = AnyKey::parse(KeyKind::ClaimantId, "UI-000042").unwrap();
        assert_eq!(key.kind(), KeyKind::ClaimantId);
        assert_eq!(key.as_str(), "UI-000042");
    }
}
