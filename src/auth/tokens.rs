//! Bearer tokens: a signed JWT from a configured issuer becomes a [`Principal`].
//!
//! Why it is shaped like this (RFC 8725 and the rows 28–39 of `BAD_INPUTS.md`):
//! - The token's unverified `iss` only *selects* an issuer; its keys then do the verifying, so
//!   one issuer's keys never vouch for another's tokens.
//! - The algorithm belongs to the configured key, never to the token: a header `alg` that
//!   differs (`none`, or `HS256` with the RSA public key used as an HMAC secret) is refused.
//! - `jku`, `x5u` and embedded `jwk` headers are ignored: a token never makes us fetch anything.
//! - A JWKS URL is fetched with a timeout and a size cap; unknown `kid`s can refresh it at most
//!   once per [`REFRESH_MIN_INTERVAL`] per issuer, so random `kid`s cannot hammer the IdP; if the
//!   IdP is down the last keys fetched keep working for [`KEYS_MAX_AGE`], and an unknown `kid`
//!   is refused — there is no unverified fallback.
//! - Why a token failed is for the logs ([`TokenError`]); the client only learns that it did.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{AgencyClient, Principal};
use crate::config::{IssuerConfig, IssuerRole, KeysConfig};
use crate::identity::CitizenId;

/// Largest clock skew an issuer may be given: more would keep expired tokens alive.
pub const MAX_LEEWAY_S: u64 = 30;
/// Shortest time between two JWKS fetches of one issuer, whatever tokens arrive.
pub const REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// How long fetched JWKS keys stay usable when the IdP cannot be reached.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Keys older than this are refetched (when allowed) even if the `kid` is known, so rotations
/// and revocations arrive without waiting for an unknown `kid`.
const KEYS_REFRESH_AFTER: Duration = Duration::from_secs(300);
/// A JWKS fetch may take this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS document larger than this is refused (a key set is a few KiB).
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Why a token was refused. For logs only: the client always gets the same message.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No issuer is configured, so nothing can verify a token.
    #[error("no token issuers are configured")]
    NoIssuers,
    /// The token is not a JWT we can read (three base64url parts, JSON, known `alg`).
    #[error("the token is malformed")]
    Malformed,
    /// The `iss` claim names no configured issuer.
    #[error("the token's issuer is not trusted")]
    UnknownIssuer,
    /// The header `alg` is not the algorithm of the issuer's key.
    #[error("the token's algorithm {0:?} does not match the issuer's key")]
    AlgorithmMismatch(Algorithm),
    /// No key of the issuer has the token's `kid`.
    #[error("no key of issuer {issuer} has this token's kid")]
    UnknownKey {
        /// The issuer's configured name.
        issuer: String,
    },
    /// The header `typ` is not the one required (an ID token rather than an access token).
    #[error("the token's typ header is not {0}")]
    WrongType(String),
    /// Signature, expiry, not-before, audience, issuer or a required claim failed.
    #[error("the token failed validation: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The role (configured or claimed) is missing or unknown.
    #[error("the token's role is missing or unknown")]
    BadRole,
    /// `sub` is not a citizen id, or is empty.
    #[error("the token's subject is not valid for its role")]
    BadSubject,
    /// An agency token without an `agency` claim.
    #[error("an agency token has no agency claim")]
    MissingAgency,
    /// The token is bound to a client certificate (`cnf.x5t#S256`, RFC 8705) and the request
    /// came without that certificate.
    #[error("the token is bound to a client certificate the request did not present")]
    CertificateMismatch,
}

/// A problem in `[[auth.issuers]]`, with the span of the TOML value it concerns.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TokenConfigError {
    /// Where in `civicgraph.toml` (byte span of the parsed text).
    pub span: Range<usize>,
    /// What is wrong, for a human.
    pub message: String,
}

/// Checks bearer tokens against the configured issuers. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct TokenValidator {
    issuers: Arc<Vec<Issuer>>,
}

#[derive(Debug)]
struct Issuer {
    name: String,
    issuer: String,
    audience: String,
    role: IssuerRole,
    leeway: u64,
    typ: Option<String>,
    keys: KeySource,
}

#[derive(Debug)]
enum KeySource {
    Static(Vec<VerifyKey>),
    Remote(Arc<RemoteJwks>),
}

#[derive(Clone)]
struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct RemoteJwks {
    url: String,
    name: String,
    client: reqwest::Client,
    cache: tokio::sync::Mutex<JwksCache>,
}

/// The last good key set of a JWKS URL and when it was fetched or tried.
#[derive(Debug, Default)]
struct JwksCache {
    keys: Vec<VerifyKey>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

impl JwksCache {
    /// Drops keys older than [`KEYS_MAX_AGE`]: past that, an unreachable IdP means no tokens.
    fn expire(&mut self, now: Instant) {
        if self
            .fetched_at
            .is_some_and(|at| now.saturating_duration_since(at) > KEYS_MAX_AGE)
        {
            self.keys.clear();
            self.fetched_at = None;
        }
    }

    /// Replaces the keys after a successful fetch; a failed one (`None`) changes nothing.
    fn store(&mut self, keys: Option<Vec<VerifyKey>>, now: Instant) {
        if let Some(keys) = keys {
            self.keys = keys;
            self.fetched_at = Some(now);
        }
    }

    /// Whether a fetch is both wanted (unknown kid, or stale keys) and allowed (rate limit).
    fn should_fetch(&self, kid_known: bool, now: Instant) -> bool {
        let allowed = self
            .last_attempt
            .is_none_or(|at| now.saturating_duration_since(at) >= REFRESH_MIN_INTERVAL);
        let stale = self
            .fetched_at
            .is_none_or(|at| now.saturating_duration_since(at) >= KEYS_REFRESH_AFTER);
        allowed && (!kid_known || stale)
    }
}

impl RemoteJwks {
    /// Fetches the key set, logging a failure (the caller keeps the last good keys).
    async fn fetch(&self) -> Option<Vec<VerifyKey>> {
        match fetch_jwks(&self.client, &self.url).await {
            Ok(keys) => Some(keys),
            Err(reason) => {
                tracing::warn!(
                    issuer = %self.name,
                    url = %self.url,
                    %reason,
                    "JWKS fetch failed; keeping the last good keys"
                );
                None
            }
        }
    }
}

/// The claims we read; `exp`, `nbf`, `iss`, `aud` are checked by `jsonwebtoken` itself.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    agency: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    purposes: Option<Vec<String>>,
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    cnf: Option<Confirmation>,
}

/// RFC 8705 confirmation: the token is only good with this client certificate.
#[derive(Debug, Deserialize)]
struct Confirmation {
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

impl TokenValidator {
    /// Builds the validator, reading key files relative to `root` (the directory of
    /// `civicgraph.toml`). Every problem is returned, each with the span it concerns.
    pub fn new(root: &Path, issuers: &[IssuerConfig]) -> Result<Self, Vec<TokenConfigError>> {
        let mut errors = Vec::new();
        let mut built = Vec::new();
        for (i, config) in issuers.iter().enumerate() {
            // Tokens are routed by `iss`, so a second entry for one issuer would never be used.
            if let Some(first) = issuers[..i].iter().find(|c| c.issuer == config.issuer) {
                errors.push(TokenConfigError {
                    span: config.keys.span(),
                    message: format!(
                        "issuer {}: `issuer = {:?}` is already configured by issuer {}",
                        config.name, config.issuer, first.name
                    ),
                });
            }
            if !config.enabled {
                continue;
            }
            match build_issuer(root, config) {
                Ok(issuer) => built.push(issuer),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(Self {
                issuers: Arc::new(built),
            })
        } else {
            Err(errors)
        }
    }

    /// Whether any issuer is configured (with none, every bearer token is refused).
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// Verifies `token` and maps it to the caller it stands for. A token bound to a client
    /// certificate is refused here: use [`Self::validate_presented`] with the certificate.
    pub async fn validate(&self, token: &str) -> Result<Principal, TokenError> {
        self.validate_at(token, None, Instant::now()).await
    }

    /// Verifies `token` as presented with `client_cert` (DER), the certificate of the TLS
    /// connection it came on. A token carrying `cnf.x5t#S256` is accepted only when that is
    /// the SHA-256 thumbprint of `client_cert` (RFC 8705), so a stolen token is useless
    /// without the client's private key.
    pub async fn validate_presented(
        &self,
        token: &str,
        client_cert: Option<&[u8]>,
    ) -> Result<Principal, TokenError> {
        self.validate_at(token, client_cert, Instant::now()).await
    }

    async fn validate_at(
        &self,
        token: &str,
        client_cert: Option<&[u8]>,
        now: Instant,
    ) -> Result<Principal, TokenError> {
        if self.issuers.is_empty() {
            return Err(TokenError::NoIssuers);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let iss = unverified_issuer(token).ok_or(TokenError::Malformed)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or(TokenError::UnknownIssuer)?;
        if let Some(typ) = &issuer.typ {
            let ok = header.typ.as_deref().is_some_and(|t| {
                t.eq_ignore_ascii_case(typ)
                    || t.strip_prefix("application/")
                        .is_some_and(|t| t.eq_ignore_ascii_case(typ))
            });
            if !ok {
                return Err(TokenError::WrongType(typ.clone()));
            }
        }
        let candidates = issuer.keys_for(header.kid.as_deref(), now).await;
        if candidates.is_empty() {
            return Err(TokenError::UnknownKey {
                issuer: issuer.name.clone(),
            });
        }
        let mut last = TokenError::AlgorithmMismatch(header.alg);
        for key in candidates.iter().filter(|k| k.alg == header.alg) {
            let mut validation = Validation::new(key.alg);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.set_issuer(&[&issuer.issuer]);
            validation.set_audience(&[&issuer.audience]);
            validation.leeway = issuer.leeway;
            validation.validate_nbf = true;
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => {
                    if let Some(bound) = data.claims.cnf.as_ref().and_then(|c| c.x5t_s256.as_ref())
                        && client_cert.map(cert_thumbprint).as_ref() != Some(bound)
                    {
                        return Err(TokenError::CertificateMismatch);
                    }
                    return issuer.principal(data.claims);
                }
                Err(error) => last = TokenError::Invalid(error),
            }
        }
        Err(last)
    }
}

impl Issuer {
    /// The keys that may have signed a token with this `kid`, refreshing a JWKS URL if allowed.
    async fn keys_for(&self, kid: Option<&str>, now: Instant) -> Vec<VerifyKey> {
        match &self.keys {
            KeySource::Static(keys) => matching(keys, kid),
            KeySource::Remote(remote) => {
                let mut cache = remote.cache.lock().await;
                cache.expire(now);
                let known = !matching(&cache.keys, kid).is_empty();
                if cache.should_fetch(known, now) {
                    cache.last_attempt = Some(now);
                    if known {
                        // Only stale: refresh in the background so a slow or dead IdP does not
                        // hold up tokens the cached keys can already verify.
                        let remote = Arc::clone(remote);
                        tokio::spawn(async move {
                            let keys = remote.fetch().await;
                            remote.cache.lock().await.store(keys, now);
                        });
                    } else {
                        let keys = remote.fetch().await;
                        cache.store(keys, now);
                    }
                }
                matching(&cache.keys, kid)
            }
        }
    }

    fn principal(&self, claims: Claims) -> Result<Principal, TokenError> {
        let role = match self.role {
            IssuerRole::Claim => match claims.role.as_deref() {
                Some("citizen") => IssuerRole::Citizen,
                Some("agency") => IssuerRole::Agency,
                Some("operator") => IssuerRole::Operator,
                _ => return Err(TokenError::BadRole),
            },
            role => role,
        };
        match role {
            IssuerRole::Citizen => CitizenId::parse(&claims.sub)
                .map(Principal::Citizen)
                .map_err(|_| TokenError::BadSubject),
            IssuerRole::Operator if !claims.sub.trim().is_empty() => {
                Ok(Principal::Operator { name: claims.sub })
            }
            IssuerRole::Operator => Err(TokenError::BadSubject),
            IssuerRole::Agency => {
                let agency = claims
                    .agency
                    .filter(|a| !a.is_empty())
                    .ok_or(TokenError::MissingAgency)?;
                Ok(Principal::Agency(AgencyClient {
                    client_id: claims.client_id.unwrap_or(claims.sub),
                    agency,
                    scopes: claims
                        .scope
                        .unwrap_or_default()
                        .split_ascii_whitespace()
                        .map(str::to_string)
                        .collect(),
                    purposes: claims
                        .purposes
                        .unwrap_or_default()
                        .into_iter()
                        .chain(claims.purpose.clone())
                        .collect::<BTreeSet<_>>(),
                    purpose: claims.purpose.filter(|p| !p.is_empty()),
                }))
            }
            IssuerRole::Claim => Err(TokenError::BadRole),
        }
    }
}

/// The RFC 8705 thumbprint of a DER certificate: base64url (no padding) of its SHA-256.
pub fn cert_thumbprint(der: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der))
}

/// A token with a `kid` may only use the key with that `kid` (or a key without one, as a PEM
/// is); a token without a `kid` may try every key.
fn matching(keys: &[VerifyKey], kid: Option<&str>) -> Vec<VerifyKey> {
    keys.iter()
        .filter(|k| match (kid, k.kid.as_deref()) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        })
        .cloned()
        .collect()
}

/// The `iss` claim read without verification, only to choose which keys verify the token.
fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: String,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok().map(|i| i.iss)
}

fn build_issuer(root: &Path, config: &IssuerConfig) -> Result<Issuer, Vec<TokenConfigError>> {
    let mut errors = Vec::new();
    let keys_span = config.keys.span();
    let err = |span: Range<usize>, message: String| TokenConfigError { span, message };
    let leeway = match &config.leeway_s {
        Some(l) if *l.get_ref() > MAX_LEEWAY_S => {
            errors.push(err(
                l.span(),
                format!(
                    "issuer {}: leeway_s is at most {MAX_LEEWAY_S} seconds",
                    config.name
                ),
            ));
            MAX_LEEWAY_S
        }
        Some(l) => *l.get_ref(),
        None => MAX_LEEWAY_S,
    };
    let keys = match read_keys(root, &config.name, config.keys.get_ref()) {
        Ok(keys) => Some(keys),
        Err(message) => {
            errors.push(err(keys_span, format!("issuer {}: {message}", config.name)));
            None
        }
    };
    match keys {
        Some(keys) if errors.is_empty() => Ok(Issuer {
            name: config.name.clone(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            role: config.role,
            leeway,
            typ: Some(config.require_typ.clone()).filter(|t| !t.is_empty()),
            keys,
        }),
        _ => Err(errors),
    }
}

fn read_keys(root: &Path, name: &str, keys: &KeysConfig) -> Result<KeySource, String> {
    let sources = [&keys.pem, &keys.jwks_file, &keys.jwks_url, &keys.dev_key]
        .iter()
        .filter(|s| s.is_some())
        .count();
    if sources != 1 {
        return Err("`keys` needs exactly one of `pem`, `jwks_file`, `jwks_url`, `dev_key`".into());
    }
    if let Some(file) = &keys.dev_key {
        if keys.algorithm.is_some() {
            return Err("a `dev_key` is always Ed25519; leave out `algorithm`".into());
        }
        let path = root.join(file);
        let signing =
            crate::signing::SigningKey::load_or_create(&path).map_err(|e| e.to_string())?;
        let key = DecodingKey::from_ed_pem(signing.verifier().public_pem().as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(KeySource::Static(vec![VerifyKey {
            kid: None,
            alg: Algorithm::EdDSA,
            key,
        }]));
    }
    if let Some(pem) = &keys.pem {
        let Some(alg) = &keys.algorithm else {
            return Err("a `pem` key needs `algorithm` (e.g. \"ES256\")".into());
        };
        let alg = Algorithm::from_str(alg).map_err(|_| format!("unknown algorithm {alg:?}"))?;
        let path = root.join(pem);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let key = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(&bytes),
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&bytes),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(&bytes),
            _ => {
                return Err(format!(
                    "algorithm {alg:?} needs a shared secret; only public-key algorithms are accepted"
                ));
            }
        }
        .map_err(|e| format!("{} is not a PEM public key for {alg:?}: {e}", path.display()))?;
        return Ok(KeySource::Static(vec![VerifyKey {
            kid: None,
            alg,
            key,
        }]));
    }
    if keys.algorithm.is_some() {
        return Err("`algorithm` goes with `pem`; a JWKS names each key's algorithm".into());
    }
    if let Some(file) = &keys.jwks_file {
        let path = root.join(file);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let keys = parse_jwks(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(KeySource::Static(keys));
    }
    let url = keys.jwks_url.as_deref().unwrap_or_default();
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("jwks_url {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(format!("jwks_url {url:?} must be http(s)"));
    }
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    Ok(KeySource::Remote(Arc::new(RemoteJwks {
        url: url.to_string(),
        client,
        name: name.to_string(),
        cache: tokio::sync::Mutex::new(JwksCache::default()),
    })))
}

/// Reads a JWKS document. Keys that cannot verify signatures (encryption keys, symmetric keys,
/// unknown types) are skipped; a set with no usable key is an error.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<VerifyKey>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let keys: Vec<VerifyKey> = set
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(|jwk| {
            let alg = jwk_algorithm(&jwk)?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some(VerifyKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            })
        })
        .collect();
    if keys.is_empty() {
        return Err("the JWKS has no usable signature key".into());
    }
    Ok(keys)
}

/// The key's algorithm: its `alg`, or else the usual one for its type and curve. HMAC keys are
/// never accepted from a JWKS.
fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    if let Some(alg) = jwk.common.key_algorithm {
        let alg = Algorithm::from_str(&alg.to_string()).ok()?;
        return (!matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
            .then_some(alg);
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        AlgorithmParameters::OctetKey(_) => None,
    }
}

async fn fetch_jwks(client: &reqwest::Client, url: &str) -> Result<Vec<VerifyKey>, String> {
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
    {
        return Err("the JWKS is too large".into());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err("the JWKS is too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    parse_jwks(&body)
}

#[cfg(test)]
#[path = "tokens_tests.rs"]
mod tests;
