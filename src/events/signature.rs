//! Standard Webhooks signatures: what the gateway puts on every webhook it sends, and checks on
//! every webhook a backend sends it.
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, signed with HMAC-SHA256 under
//! the secret's key bytes; `webhook-signature` lists `v1,<base64>` entries separated by spaces so
//! a secret can be rotated with both signatures present. A timestamp outside the tolerance is
//! refused, so a captured request cannot be replayed later; the id makes a redelivery
//! recognisable.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the message id (the event id for the webhooks the gateway sends).
pub const ID_HEADER: &str = "webhook-id";
/// The header carrying the attempt's time in unix seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The header carrying one or more `v1,<base64>` signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// The prefix Standard Webhooks secrets carry, so one is recognisable in a config file.
const SECRET_PREFIX: &str = "whsec_";

/// A webhook signing secret: `whsec_` followed by the base64 of 24–64 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

/// Why a secret or a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The secret is not `whsec_` + base64 of at least 24 bytes.
    #[error("a webhook secret must be `whsec_` followed by the base64 of 24 to 64 random bytes")]
    BadSecret,
    /// A `webhook-*` header is missing or not text.
    #[error("the `{0}` header is missing")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not unix seconds.
    #[error("`webhook-timestamp` is not a time in unix seconds")]
    BadTimestamp,
    /// The timestamp is further from now than the tolerance: a replay, or a clock far off.
    #[error("`webhook-timestamp` is {age_s} s from now, beyond the {tolerance_s} s tolerance")]
    OutsideTolerance {
        /// How far the timestamp is from now, in seconds.
        age_s: i64,
        /// The tolerance allowed.
        tolerance_s: i64,
    },
    /// No `v1` signature in the header matches the body.
    #[error("no signature in `webhook-signature` matches the body")]
    Mismatch,
}

impl WebhookSecret {
    /// A fresh random secret (32 bytes from the operating system).
    pub fn generate() -> Result<Self, SignatureError> {
        let mut bytes = vec![0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|_| SignatureError::BadSecret)?;
        Ok(Self(bytes))
    }

    /// Reads `whsec_<base64>` (the prefix may be left out, as some senders do).
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let text = text.trim();
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| SignatureError::BadSecret)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SignatureError::BadSecret);
        }
        Ok(Self(bytes))
    }

    /// The `whsec_…` form, for storing and for showing once to the subscriber.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` value for one attempt: `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// Checks a received request: the timestamp within `tolerance_s` of `now` (either way), then
    /// any `v1` signature in `signatures` against the body, compared in constant time.
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now: i64,
        tolerance_s: i64,
    ) -> Result<(), SignatureError> {
        let timestamp: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::BadTimestamp)?;
        let age_s = now.saturating_sub(timestamp);
        if age_s.abs() > tolerance_s {
            return Err(SignatureError::OutsideTolerance { age_s, tolerance_s });
        }
        for entry in signatures.split_whitespace() {
            let Some(("v1", encoded)) = entry.split_once(',') else {
                continue;
            };
            let Ok(tag) = STANDARD.decode(encoded) else {
                continue;
            };
            // `verify_slice` compares in constant time.
            if self.mac(id, timestamp, body).verify_slice(&tag).is_ok() {
                return Ok(());
            }
        }
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example from the Standard Webhooks specification's reference libraries.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1614265330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_specification_example() {
        let secret = WebhookSecret::parse(SPEC_SECRET).expect("the spec's secret");
        assert_eq!(
            secret.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.as_bytes()),
            SPEC_SIGNATURE
        );
    }

    #[test]
    fn verifies_within_tolerance_and_refuses_replays_and_tampering() {
        let secret = WebhookSecret::parse(SPEC_SECRET).expect("the spec's secret");
        let ts = SPEC_TIMESTAMP.to_string();
        let ok = |now| secret.verify(SPEC_ID, &ts, SPEC_SIGNATURE, SPEC_BODY.as_bytes(), now, 300);
        assert_eq!(ok(SPEC_TIMESTAMP + 300), Ok(()));
        assert_eq!(ok(SPEC_TIMESTAMP - 300), Ok(()));
        // Replayed six minutes later.
        assert_eq!(
            ok(SPEC_TIMESTAMP + 360),
            Err(SignatureError::OutsideTolerance {
                age_s: 360,
                tolerance_s: 300
            })
        );
        let verify = |id: &str, ts: &str, sig: &str, body: &str| {
            secret.verify(id, ts, sig, body.as_bytes(), SPEC_TIMESTAMP, 300)
        };
        assert_eq!(
            verify(SPEC_ID, &ts, SPEC_SIGNATURE, r#"{"test": 2432232315}"#),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("msg_other", &ts, SPEC_SIGNATURE, SPEC_BODY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SPEC_ID, "1614265331", SPEC_SIGNATURE, SPEC_BODY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SPEC_ID, "soon", SPEC_SIGNATURE, SPEC_BODY),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            verify(SPEC_ID, &ts, "v2,abc v1,!!!", SPEC_BODY),
            Err(SignatureError::Mismatch)
        );
        // A rotated secret: the old and the new signature side by side.
        let rotated = format!("v1,AAAA {SPEC_SIGNATURE}");
        assert_eq!(verify(SPEC_ID, &ts, &rotated, SPEC_BODY), Ok(()));
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let secret = WebhookSecret::generate().expect("random bytes");
        assert!(secret.expose().starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(&secret.expose()), Ok(secret.clone()));
        assert_eq!(
            WebhookSecret::parse("whsec_c2hvcnQ="),
            Err(SignatureError::BadSecret)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_not base64"),
            Err(SignatureError::BadSecret)
        );
        assert_eq!(format!("{secret:?}"), "WebhookSecret(…)");
    }
}
