//! Consent receipts: a signed record, for the citizen to keep, of each change to a consent.
//!
//! A receipt is a compact JWS of type [`RECEIPT_TYPE`] signed with the gateway's key. Its claims
//! follow the field set of the Kantara Consent Receipt v1.1 (and ISO/IEC TS 27560, which grew
//! from it), so receipt tools can read them, plus our own handle, action and validity. A receipt
//! carries the plain words of the catalogues at the time it was issued, so it still reads right
//! after the configuration changes, and it can be checked offline with only the public key.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::ledger::{Consent, ConsentStatus};
use crate::config::TrustConfig;
use crate::signing::{SigningError, SigningKey, Verifier, VerifyError};

/// The JWS `typ` of a consent receipt; verification insists on it, so no other signed document
/// (a token, an audit checkpoint) can pass for a receipt.
pub const RECEIPT_TYPE: &str = "consent-receipt+jwt";

/// The Kantara Consent Receipt specification version the claims follow.
pub const RECEIPT_VERSION: &str = "KI-CR-v1.1.0";

/// The jurisdiction named in receipts: the law is whatever the operator's deployment is under.
/// A constant until `[trust]` says more.
pub const JURISDICTION: &str = "as configured by the operator of this gateway";

/// How consent is collected: by the citizen themself, through the gateway.
pub const COLLECTION_METHOD: &str = "given by the citizen through the CivicGraph gateway";

/// Who issues receipts (`iss`).
pub const ISSUER: &str = "civicgraph";

/// What a receipt records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptAction {
    /// A new consent.
    Granted,
    /// A consent withdrawn for good.
    Revoked,
    /// A consent suspended.
    Paused,
    /// A paused consent in force again.
    Resumed,
}

impl ReceiptAction {
    /// Lowercase past tense, as in receipts and the `consent_events` table: `granted`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Revoked => "revoked",
            Self::Paused => "paused",
            Self::Resumed => "resumed",
        }
    }

    /// Reads [`as_str`](Self::as_str)'s spelling; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Granted, Self::Revoked, Self::Paused, Self::Resumed]
            .into_iter()
            .find(|action| action.as_str() == text)
    }
}

/// Claims of a consent receipt, shaped after the Kantara Consent Receipt v1.1 / ISO/IEC TS 27560,
/// plus the gateway's own handle, action, status and validity. Times are seconds since the epoch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptClaims {
    /// The receipt specification version ([`RECEIPT_VERSION`]).
    pub version: String,
    /// The jurisdiction the consent is given under.
    pub jurisdiction: String,
    /// When the recorded change happened.
    pub consent_timestamp: i64,
    /// How the consent was collected.
    pub collection_method: String,
    /// This receipt's own id (a UUID), distinct from the consent's handle: each change has its
    /// own receipt.
    #[serde(rename = "consentReceiptID")]
    pub consent_receipt_id: String,
    /// The language of the plain words (`en`).
    pub language: String,
    /// The citizen whose data it is.
    pub pii_principal_id: String,
    /// Who receives the data: the grantee agency.
    pub pii_controllers: Vec<PiiController>,
    /// What the data is used for.
    pub services: Vec<ReceiptService>,
    /// The consent's handle in the ledger, for revoking or pausing it later.
    pub consent_handle: String,
    /// What happened.
    pub action: ReceiptAction,
    /// The consent's status right after the change.
    pub status: ConsentStatus,
    /// Start of the consent's validity.
    pub valid_from: i64,
    /// End of the consent's validity (exclusive).
    pub valid_until: i64,
    /// When the receipt was issued.
    pub iat: i64,
    /// Who issued it ([`ISSUER`]).
    pub iss: String,
}

/// A receiver of the data, as a receipt names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PiiController {
    /// The name citizens know it by.
    pub pii_controller: String,
    /// Its code in `[trust.agencies]`.
    pub agency: String,
}

/// A service the consent is for, and its purposes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptService {
    /// Who provides the service (the grantee's name).
    pub service: String,
    /// The purposes consented to.
    pub purposes: Vec<ReceiptPurpose>,
}

/// One purpose, with the data categories consented to for it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptPurpose {
    /// The purpose code.
    pub purpose: String,
    /// The purpose in plain words.
    pub purpose_description: String,
    /// `EXPLICIT`: the citizen asked for this consent themself.
    pub consent_type: String,
    /// The data categories.
    pub pii_category: Vec<PiiCategory>,
    /// Always true: this is the purpose the consent was given for.
    pub primary_purpose: bool,
    /// When the consent ends, RFC 3339 to the second (as `validUntil`).
    pub termination: String,
}

/// One data category in a receipt.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PiiCategory {
    /// The category code.
    pub code: String,
    /// The category in plain words.
    pub description: String,
}

impl ReceiptClaims {
    /// The claims recording `action` on `consent`, in the words `trust` catalogues now.
    pub fn for_consent(
        trust: &TrustConfig,
        consent: &Consent,
        action: ReceiptAction,
        now: DateTime<Utc>,
    ) -> Self {
        let agency = trust.agency_name(&consent.grantee).to_string();
        let categories = consent
            .categories
            .iter()
            .map(|code| PiiCategory {
                code: code.clone(),
                description: trust.category_words(code).to_string(),
            })
            .collect();
        Self {
            version: RECEIPT_VERSION.to_string(),
            jurisdiction: JURISDICTION.to_string(),
            consent_timestamp: consent.changed_at.timestamp(),
            collection_method: COLLECTION_METHOD.to_string(),
            consent_receipt_id: uuid::Uuid::new_v4().to_string(),
            language: "en".to_string(),
            pii_principal_id: consent.citizen.as_str().to_string(),
            pii_controllers: vec![PiiController {
                pii_controller: agency.clone(),
                agency: consent.grantee.clone(),
            }],
            services: vec![ReceiptService {
                service: agency,
                purposes: vec![ReceiptPurpose {
                    purpose: consent.purpose.clone(),
                    purpose_description: trust.purpose_words(&consent.purpose).to_string(),
                    consent_type: "EXPLICIT".to_string(),
                    pii_category: categories,
                    primary_purpose: true,
                    termination: consent
                        .valid_until
                        .to_rfc3339_opts(SecondsFormat::Secs, true),
                }],
            }],
            consent_handle: consent.handle.clone(),
            action,
            status: consent.status(now),
            valid_from: consent.valid_from.timestamp(),
            valid_until: consent.valid_until.timestamp(),
            iat: now.timestamp(),
            iss: ISSUER.to_string(),
        }
    }

    /// A few lines in plain words for `civicgraph consent verify`: who did what, for whom, with
    /// which data, for what, and until when.
    pub fn summary(&self) -> String {
        let agencies = words_list(
            self.pii_controllers
                .iter()
                .map(|c| c.pii_controller.as_str())
                .collect(),
        );
        let mut out = String::new();
        let uses: Vec<String> = self
            .services
            .iter()
            .flat_map(|service| &service.purposes)
            .map(|purpose| {
                let categories = words_list(
                    purpose
                        .pii_category
                        .iter()
                        .map(|c| c.description.as_str())
                        .collect(),
                );
                format!("{categories} for {}", purpose.purpose_description)
            })
            .collect();
        let uses = words_list(uses.iter().map(String::as_str).collect());
        let who = &self.pii_principal_id;
        let line = match self.action {
            ReceiptAction::Granted => format!("{who} granted {agencies} access to {uses}."),
            ReceiptAction::Revoked => {
                format!("{who} revoked the consent that gave {agencies} access to {uses}.")
            }
            ReceiptAction::Paused => {
                format!("{who} paused the consent that gives {agencies} access to {uses}.")
            }
            ReceiptAction::Resumed => {
                format!("{who} resumed the consent that gives {agencies} access to {uses}.")
            }
        };
        out.push_str(&line);
        out.push('\n');
        out.push_str(&format!(
            "Valid from {} until {}; {} after this change.\n",
            time(self.valid_from),
            time(self.valid_until),
            self.status.as_str()
        ));
        out.push_str(&format!(
            "Consent {}, receipt {}, issued {} by {}.\n",
            self.consent_handle,
            self.consent_receipt_id,
            time(self.iat),
            self.iss
        ));
        out
    }
}

/// Signs a receipt recording `action` on `consent` with the gateway's key.
pub fn issue(
    key: &SigningKey,
    trust: &TrustConfig,
    consent: &Consent,
    action: ReceiptAction,
    now: DateTime<Utc>,
) -> Result<String, SigningError> {
    key.sign(
        RECEIPT_TYPE,
        &ReceiptClaims::for_consent(trust, consent, action, now),
    )
}

/// Checks a receipt's type and signature and returns its claims. Receipts are records, not
/// credentials: nothing about time is checked, and an expired consent's receipt still verifies.
pub fn verify(verifier: &Verifier, jws: &str) -> Result<ReceiptClaims, VerifyError> {
    verifier.verify(RECEIPT_TYPE, jws)
}

/// `a`, `a and b`, `a, b and c`.
fn words_list(items: Vec<&str>) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// Seconds since the epoch, for people: `2026-11-22 10:00:00 UTC`.
fn time(seconds: i64) -> String {
    DateTime::<Utc>::from_timestamp(seconds, 0).map_or_else(
        || format!("{seconds} s after 1970"),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use base64::Engine as _;
    use serde_json::{Value, json};

    use super::*;
    use crate::consent::ledger::ConsentState;
    use crate::consent::ledger::tests::{citizen, t0, trust};

    fn key() -> (tempfile::TempDir, SigningKey) {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(&dir.path().join("signing.pem")).unwrap();
        (dir, key)
    }

    fn consent(state: ConsentState) -> Consent {
        Consent {
            handle: "cns_0123456789abcdef0123456789abcdef".to_string(),
            citizen: citizen("C0000001"),
            grantee: "dmv".to_string(),
            categories: BTreeSet::from(["dmv.license".to_string(), "dmv.vehicles".to_string()]),
            purpose: "benefit-eligibility".to_string(),
            valid_from: t0(),
            valid_until: t0() + chrono::Duration::days(30),
            state,
            granted_at: t0(),
            changed_at: t0() + chrono::Duration::minutes(5),
        }
    }

    #[test]
    fn receipts_verify_for_every_action() {
        let (_dir, key) = key();
        let trust = trust();
        let now = t0() + chrono::Duration::minutes(5);
        for (action, state, status) in [
            (
                ReceiptAction::Granted,
                ConsentState::Active,
                ConsentStatus::Active,
            ),
            (
                ReceiptAction::Paused,
                ConsentState::Paused,
                ConsentStatus::Paused,
            ),
            (
                ReceiptAction::Resumed,
                ConsentState::Active,
                ConsentStatus::Active,
            ),
            (
                ReceiptAction::Revoked,
                ConsentState::Revoked,
                ConsentStatus::Revoked,
            ),
        ] {
            let consent = consent(state);
            let jws = issue(&key, &trust, &consent, action, now).unwrap();
            let claims = verify(key.verifier(), &jws).unwrap();
            let expected = ReceiptClaims {
                consent_receipt_id: claims.consent_receipt_id.clone(),
                ..ReceiptClaims::for_consent(&trust, &consent, action, now)
            };
            assert_eq!(claims, expected);
            assert_eq!(claims.action, action);
            assert_eq!(claims.status, status);
            assert_eq!(claims.consent_handle, consent.handle);
            assert_eq!(claims.pii_principal_id, "C0000001");
            assert_eq!(claims.valid_until, consent.valid_until.timestamp());
            assert_eq!(claims.consent_timestamp, consent.changed_at.timestamp());
            assert_eq!(claims.iat, now.timestamp());
            assert!(uuid::Uuid::parse_str(&claims.consent_receipt_id).is_ok());
        }
    }

    #[test]
    fn claims_use_the_consent_receipt_field_names() {
        let claims = ReceiptClaims::for_consent(
            &trust(),
            &consent(ConsentState::Active),
            ReceiptAction::Granted,
            t0(),
        );
        let json = serde_json::to_value(&claims).unwrap();
        for key in [
            "version",
            "jurisdiction",
            "consentTimestamp",
            "collectionMethod",
            "consentReceiptID",
            "language",
            "piiPrincipalId",
            "piiControllers",
            "services",
            "consentHandle",
            "action",
            "status",
            "validFrom",
            "validUntil",
            "iat",
            "iss",
        ] {
            assert!(json.get(key).is_some(), "missing `{key}` in {json}");
        }
        assert_eq!(json["version"], RECEIPT_VERSION);
        assert_eq!(json["language"], "en");
        assert_eq!(json["iss"], "civicgraph");
        assert_eq!(json["action"], "granted");
        assert_eq!(json["status"], "active");
        assert_eq!(
            json["piiControllers"],
            json!([{"piiController": "the Motor Vehicle Agency", "agency": "dmv"}])
        );
        assert_eq!(
            json["services"][0]["purposes"][0],
            json!({
                "purpose": "benefit-eligibility",
                "purposeDescription": "checking your eligibility for benefits",
                "consentType": "EXPLICIT",
                "piiCategory": [
                    {"code": "dmv.license", "description": "your driver's licence"},
                    {"code": "dmv.vehicles", "description": "the vehicles registered to you"},
                ],
                "primaryPurpose": true,
                "termination": "2026-12-22T10:00:00Z",
            })
        );
    }

    #[test]
    fn an_altered_receipt_is_refused() {
        let (_dir, key) = key();
        let consent = consent(ConsentState::Active);
        let jws = issue(&key, &trust(), &consent, ReceiptAction::Granted, t0()).unwrap();
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts: Vec<String> = jws.split('.').map(str::to_string).collect();
        let mut claims: Value = serde_json::from_slice(&engine.decode(&parts[1]).unwrap()).unwrap();
        claims["validUntil"] = json!(claims["validUntil"].as_i64().unwrap() + 365 * 86_400);
        parts[1] = engine.encode(serde_json::to_vec(&claims).unwrap());
        assert_eq!(
            verify(key.verifier(), &parts.join(".")),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn a_token_is_not_a_receipt() {
        let (_dir, key) = key();
        let claims = ReceiptClaims::for_consent(
            &trust(),
            &consent(ConsentState::Active),
            ReceiptAction::Granted,
            t0(),
        );
        let token = key.sign("at+jwt", &claims).unwrap();
        assert_eq!(
            verify(key.verifier(), &token),
            Err(VerifyError::WrongType {
                expected: RECEIPT_TYPE.to_string(),
                found: "at+jwt".to_string(),
            })
        );
    }

    #[test]
    fn summary_says_who_let_whom_read_what_for_what_until_when() {
        let consent = consent(ConsentState::Active);
        let claims = ReceiptClaims::for_consent(&trust(), &consent, ReceiptAction::Granted, t0());
        let summary = claims.summary();
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(
            lines[0],
            "C0000001 granted the Motor Vehicle Agency access to your driver's licence and the \
             vehicles registered to you for checking your eligibility for benefits."
        );
        assert_eq!(
            lines[1],
            "Valid from 2026-11-22 10:00:00 UTC until 2026-12-22 10:00:00 UTC; active after this \
             change."
        );
        assert!(lines[2].starts_with(&format!("Consent {}, receipt ", consent.handle)));

        let revoked = Consent {
            state: ConsentState::Revoked,
            ..consent
        };
        let claims = ReceiptClaims::for_consent(&trust(), &revoked, ReceiptAction::Revoked, t0());
        assert!(
            claims.summary().starts_with(
                "C0000001 revoked the consent that gave the Motor Vehicle Agency access to"
            ),
            "{}",
            claims.summary()
        );
        assert!(claims.summary().contains("; revoked after this change."));
    }

    #[test]
    fn actions_read_back_from_their_text() {
        for action in [
            ReceiptAction::Granted,
            ReceiptAction::Revoked,
            ReceiptAction::Paused,
            ReceiptAction::Resumed,
        ] {
            assert_eq!(ReceiptAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(ReceiptAction::parse("deleted"), None);
    }
}
