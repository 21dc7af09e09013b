//! Tests of [`super`]: rows 28–35 and 39 of `BAD_INPUTS.md`, plus the principal mapping.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::config::AuthConfig;

const ISS: &str = "https://civicgraph.local/dev";
const RSA_KEY: &str = include_str!("../../tests/fixtures/keys/rsa.key.pem");
const RSA_PUB: &str = include_str!("../../tests/fixtures/keys/rsa.pub.pem");
const EC_KEY: &str = include_str!("../../tests/fixtures/keys/ec.key.pem");
const ATTACKER_KEY: &str = include_str!("../../tests/fixtures/keys/attacker-ec.key.pem");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys")
}

fn auth(toml_text: &str) -> AuthConfig {
    toml::from_str(toml_text).unwrap()
}

fn validator(role: &str, keys: &str) -> TokenValidator {
    let config = auth(&format!(
        r#"
        [[issuers]]
        name = "dev"
        issuer = "{ISS}"
        audience = "civicgraph"
        role = "{role}"
        keys = {keys}
        "#
    ));
    TokenValidator::new(&root(), &config.issuers).unwrap()
}

fn ec_validator() -> TokenValidator {
    validator("claim", r#"{ pem = "ec.pub.pem", algorithm = "ES256" }"#)
}

fn rsa_validator() -> TokenValidator {
    validator("claim", r#"{ pem = "rsa.pub.pem", algorithm = "RS256" }"#)
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn claims(role: &str) -> Value {
    json!({
        "iss": ISS,
        "aud": "civicgraph",
        "sub": "C0000001",
        "exp": now() + 300,
        "iat": now(),
        "role": role,
    })
}

fn at_header(alg: Algorithm) -> Header {
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".into());
    header
}

fn sign_with(header: &Header, claims: &Value, pem: &str) -> String {
    let key = match header.alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    };
    jsonwebtoken::encode(header, claims, &key).unwrap()
}

fn es256(claims: &Value) -> String {
    sign_with(&at_header(Algorithm::ES256), claims, EC_KEY)
}

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

async fn refused(validator: &TokenValidator, token: &str) -> TokenError {
    match validator.validate(token).await {
        Ok(principal) => panic!("accepted as {principal:?}"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn valid_tokens_map_to_exact_principals() {
    let v = ec_validator();
    assert_eq!(
        v.validate(&es256(&claims("citizen"))).await.unwrap(),
        Principal::Citizen(CitizenId::parse("C0000001").unwrap())
    );
    let mut operator = claims("operator");
    operator["sub"] = json!("ops@agency");
    assert_eq!(
        v.validate(&es256(&operator)).await.unwrap(),
        Principal::Operator {
            name: "ops@agency".into()
        }
    );
    let mut agency = claims("agency");
    agency["sub"] = json!("svc-42");
    agency["agency"] = json!("dmv");
    agency["scope"] = json!("tax:read  dmv:read");
    agency["purposes"] = json!(["benefits", "audit"]);
    assert_eq!(
        v.validate(&es256(&agency)).await.unwrap(),
        Principal::Agency(AgencyClient {
            client_id: "svc-42".into(),
            agency: "dmv".into(),
            scopes: ["dmv:read".to_string(), "tax:read".to_string()].into(),
            purposes: ["audit".to_string(), "benefits".to_string()].into(),
            purpose: None,
        })
    );
    agency["client_id"] = json!("client-7");
    agency["purpose"] = json!("fraud");
    let Principal::Agency(client) = v.validate(&es256(&agency)).await.unwrap() else {
        panic!("not an agency");
    };
    assert_eq!(client.client_id, "client-7");
    // A stated `purpose` is also an allowed one.
    assert_eq!(client.purpose.as_deref(), Some("fraud"));
    assert!(client.purposes.contains("fraud") && client.purposes.contains("audit"));
    // RSA keys work the same way.
    let token = sign_with(&at_header(Algorithm::RS256), &claims("citizen"), RSA_KEY);
    assert!(rsa_validator().validate(&token).await.is_ok());
}

#[tokio::test]
async fn a_configured_role_overrides_the_claim_and_a_bad_role_is_refused() {
    let v = validator("citizen", r#"{ pem = "ec.pub.pem", algorithm = "ES256" }"#);
    assert!(matches!(
        v.validate(&es256(&claims("operator"))).await,
        Ok(Principal::Citizen(_))
    ));
    let v = ec_validator();
    assert!(matches!(
        refused(&v, &es256(&claims("root"))).await,
        TokenError::BadRole
    ));
    let mut no_role = claims("citizen");
    no_role.as_object_mut().unwrap().remove("role");
    assert!(matches!(
        refused(&v, &es256(&no_role)).await,
        TokenError::BadRole
    ));
    let mut agency = claims("agency");
    agency.as_object_mut().unwrap().remove("agency");
    assert!(matches!(
        refused(&v, &es256(&agency)).await,
        TokenError::MissingAgency
    ));
    let mut bad_sub = claims("citizen");
    bad_sub["sub"] = json!("C1' OR 1=1");
    assert!(matches!(
        refused(&v, &es256(&bad_sub)).await,
        TokenError::BadSubject
    ));
}

/// Row 28: `alg: none` with an empty signature.
#[tokio::test]
async fn row28_alg_none_is_refused() {
    let v = ec_validator();
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "typ": "at+jwt"})),
            b64(&claims("citizen"))
        );
        assert!(matches!(refused(&v, &token).await, TokenError::Malformed));
    }
}

/// Row 29: HS256 signed with the issuer's RSA public key as the HMAC secret.
#[tokio::test]
async fn row29_hs256_with_the_public_key_as_secret_is_refused() {
    let token = jsonwebtoken::encode(
        &at_header(Algorithm::HS256),
        &claims("citizen"),
        &EncodingKey::from_secret(RSA_PUB.as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        refused(&rsa_validator(), &token).await,
        TokenError::AlgorithmMismatch(Algorithm::HS256)
    ));
    // Any other algorithm than the key's is refused too.
    let token = sign_with(&at_header(Algorithm::ES256), &claims("citizen"), EC_KEY);
    assert!(matches!(
        refused(&rsa_validator(), &token).await,
        TokenError::AlgorithmMismatch(Algorithm::ES256)
    ));
}

/// Serves a JWKS on 127.0.0.1:0 and counts requests; `down` makes it answer 503.
struct JwksServer {
    url: String,
    fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

async fn jwks_server(set: JwkSet) -> JwksServer {
    let fetches = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let body = serde_json::to_string(&set).unwrap();
    let (f, d) = (fetches.clone(), down.clone());
    let app = axum::Router::new().fallback(move || {
        let (f, d, body) = (f.clone(), d.clone(), body.clone());
        async move {
            f.fetch_add(1, Ordering::SeqCst);
            if d.load(Ordering::SeqCst) {
                (http::StatusCode::SERVICE_UNAVAILABLE, String::new())
            } else {
                (http::StatusCode::OK, body)
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    JwksServer {
        url: format!("http://{addr}/jwks.json"),
        fetches,
        down,
    }
}

fn ec_jwk(kid: &str) -> Jwk {
    let key = EncodingKey::from_ec_pem(EC_KEY.as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk
}

fn with_kid(kid: &str) -> Header {
    let mut header = at_header(Algorithm::ES256);
    header.kid = Some(kid.into());
    header
}

/// Row 32: `jku`, `x5u` and an embedded `jwk` are never followed or trusted.
#[tokio::test]
async fn row32_jku_x5u_and_embedded_jwk_are_ignored() {
    let attacker = jwks_server(JwkSet { keys: vec![] }).await;
    let v = ec_validator();
    let mut header = at_header(Algorithm::ES256);
    header.jku = Some(attacker.url.clone());
    header.x5u = Some(attacker.url.clone());
    // Signed by the attacker's key, which the header embeds and points at.
    let attacker_key = EncodingKey::from_ec_pem(ATTACKER_KEY.as_bytes()).unwrap();
    header.jwk = Some(Jwk::from_encoding_key(&attacker_key, Algorithm::ES256).unwrap());
    let token = sign_with(&header, &claims("citizen"), ATTACKER_KEY);
    assert!(matches!(refused(&v, &token).await, TokenError::Invalid(_)));
    // Signed by the trusted key, the same headers change nothing: it verifies.
    let token = sign_with(&header, &claims("citizen"), EC_KEY);
    assert!(v.validate(&token).await.is_ok());
    assert_eq!(attacker.fetches.load(Ordering::SeqCst), 0);
}

/// Row 33: past `exp`, future `nbf` (beyond the 30 s leeway) and a non-numeric `exp`.
#[tokio::test]
async fn row33_expired_not_yet_valid_and_mistyped_exp_are_refused() {
    let v = ec_validator();
    let mut expired = claims("citizen");
    expired["exp"] = json!(now() - 61);
    let mut early = claims("citizen");
    early["nbf"] = json!(now() + 61);
    let mut never = claims("citizen");
    never["exp"] = json!("never");
    for token in [&expired, &early, &never] {
        assert!(
            matches!(refused(&v, &es256(token)).await, TokenError::Invalid(_)),
            "{token}"
        );
    }
    // Within the leeway both are accepted.
    let mut skewed = claims("citizen");
    skewed["exp"] = json!(now() - 10);
    skewed["nbf"] = json!(now() + 10);
    assert!(v.validate(&es256(&skewed)).await.is_ok());
}

#[test]
fn leeway_above_30_seconds_is_a_config_error() {
    let config = auth(&format!(
        r#"
        [[issuers]]
        name = "dev"
        issuer = "{ISS}"
        audience = "civicgraph"
        role = "citizen"
        keys = {{ pem = "ec.pub.pem", algorithm = "ES256" }}
        leeway_s = 31
        "#
    ));
    let errors = TokenValidator::new(&root(), &config.issuers).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.contains("leeway_s"), "{}", errors[0]);
}

#[test]
fn bad_key_configuration_is_reported() {
    for (keys, expect) in [
        (
            r#"{ pem = "missing.pem", algorithm = "ES256" }"#,
            "cannot read",
        ),
        (r#"{ pem = "ec.pub.pem" }"#, "needs `algorithm`"),
        (
            r#"{ pem = "ec.pub.pem", algorithm = "XX1" }"#,
            "unknown algorithm",
        ),
        (
            r#"{ pem = "ec.pub.pem", algorithm = "HS256" }"#,
            "shared secret",
        ),
        (
            r#"{ pem = "ec.pub.pem", algorithm = "RS256" }"#,
            "not a PEM",
        ),
        (r#"{ jwks_file = "rsa.pub.pem" }"#, "not a JWKS"),
        (r#"{ jwks_url = "ftp://idp/jwks" }"#, "http(s)"),
        (r#"{ }"#, "exactly one"),
        (
            r#"{ jwks_file = "a", jwks_url = "https://x" }"#,
            "exactly one",
        ),
    ] {
        let config = auth(&format!(
            r#"
            [[issuers]]
            name = "dev"
            issuer = "{ISS}"
            audience = "civicgraph"
            role = "citizen"
            keys = {keys}
            "#
        ));
        let errors = TokenValidator::new(&root(), &config.issuers).unwrap_err();
        assert!(errors[0].message.contains(expect), "{keys}: {}", errors[0]);
    }
}

/// Row 34: each of `exp`, `aud`, `iss`, `sub` is required.
#[tokio::test]
async fn row34_each_missing_claim_is_refused() {
    let v = ec_validator();
    for claim in ["exp", "aud", "iss", "sub"] {
        let mut token = claims("citizen");
        token.as_object_mut().unwrap().remove(claim);
        let error = refused(&v, &es256(&token)).await;
        // Without `iss` no issuer can even be chosen.
        assert!(
            matches!(error, TokenError::Invalid(_) | TokenError::Malformed),
            "{claim}: {error}"
        );
    }
}

/// Row 35: a token for another API, or an ID token rather than an access token.
#[tokio::test]
async fn row35_wrong_audience_or_typ_is_refused() {
    let v = ec_validator();
    let mut other_api = claims("citizen");
    other_api["aud"] = json!(["payroll"]);
    assert!(matches!(
        refused(&v, &es256(&other_api)).await,
        TokenError::Invalid(_)
    ));
    let mut in_list = claims("citizen");
    in_list["aud"] = json!(["payroll", "civicgraph"]);
    assert!(v.validate(&es256(&in_list)).await.is_ok());
    for typ in [Some("JWT"), None] {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = typ.map(str::to_string);
        let token = sign_with(&header, &claims("citizen"), EC_KEY);
        assert!(matches!(
            refused(&v, &token).await,
            TokenError::WrongType(_)
        ));
    }
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("application/at+jwt".into());
    assert!(
        v.validate(&sign_with(&header, &claims("citizen"), EC_KEY))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn wrong_issuer_and_tampered_tokens_are_refused() {
    let v = ec_validator();
    let mut other = claims("citizen");
    other["iss"] = json!("https://evil.example");
    assert!(matches!(
        refused(&v, &es256(&other)).await,
        TokenError::UnknownIssuer
    ));
    // Change the payload (sub) but keep the signature.
    let token = es256(&claims("citizen"));
    let parts: Vec<&str> = token.split('.').collect();
    let mut changed = claims("citizen");
    changed["sub"] = json!("C0000002");
    let forged = format!("{}.{}.{}", parts[0], b64(&changed), parts[2]);
    assert!(matches!(refused(&v, &forged).await, TokenError::Invalid(_)));
    // Flip a signature character.
    let mut sig = parts[2].to_string();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    sig.replace_range(0..1, flipped);
    let forged = format!("{}.{}.{sig}", parts[0], parts[1]);
    assert!(
        refused(&v, &forged)
            .await
            .to_string()
            .contains("validation")
    );
    for junk in ["", "a.b", "a.b.c", "Bearer", "....."] {
        assert!(matches!(refused(&v, junk).await, TokenError::Malformed));
    }
    assert!(matches!(
        refused(&TokenValidator::default(), &es256(&claims("citizen"))).await,
        TokenError::NoIssuers
    ));
}

#[tokio::test]
async fn a_jwks_file_binds_each_key_to_its_kid_and_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let set = JwkSet {
        keys: vec![ec_jwk("k1")],
    };
    std::fs::write(
        dir.path().join("jwks.json"),
        serde_json::to_string(&set).unwrap(),
    )
    .unwrap();
    let config = auth(&format!(
        r#"
        [[issuers]]
        name = "dev"
        issuer = "{ISS}"
        audience = "civicgraph"
        role = "citizen"
        keys = {{ jwks_file = "jwks.json" }}
        "#
    ));
    let v = TokenValidator::new(dir.path(), &config.issuers).unwrap();
    let token = sign_with(&with_kid("k1"), &claims("citizen"), EC_KEY);
    assert!(v.validate(&token).await.is_ok());
    let token = sign_with(&with_kid("k2"), &claims("citizen"), EC_KEY);
    assert!(matches!(
        refused(&v, &token).await,
        TokenError::UnknownKey { .. }
    ));
}

fn url_validator(url: &str) -> TokenValidator {
    validator("citizen", &format!(r#"{{ jwks_url = "{url}" }}"#))
}

/// A token whose signature is never checked because its `kid` is unknown.
fn unsigned_with_kid(kid: &str) -> String {
    format!(
        "{}.{}.AAAA",
        b64(&json!({"alg": "ES256", "typ": "at+jwt", "kid": kid})),
        b64(&claims("citizen"))
    )
}

/// Row 30: 10 000 random unknown `kid`s cause one JWKS fetch in the 30 s window.
#[tokio::test]
async fn row30_unknown_kids_refresh_the_jwks_at_most_once_per_window() {
    let server = jwks_server(JwkSet {
        keys: vec![ec_jwk("k1")],
    })
    .await;
    let v = url_validator(&server.url);
    let token = sign_with(&with_kid("k1"), &claims("citizen"), EC_KEY);
    assert!(v.validate(&token).await.is_ok());
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    for i in 0..10_000 {
        let kid = format!("random-{i}-{}", uuid::Uuid::new_v4());
        assert!(matches!(
            refused(&v, &unsigned_with_kid(&kid)).await,
            TokenError::UnknownKey { .. }
        ));
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    // After the window one more unknown kid may refresh, once.
    let later = Instant::now() + REFRESH_MIN_INTERVAL + Duration::from_secs(1);
    for _ in 0..100 {
        assert!(
            v.validate_at(&unsigned_with_kid("x"), None, later)
                .await
                .is_err()
        );
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
}

/// Row 39: with the JWKS endpoint down, known keys keep working for 24 h, unknown `kid`s are
/// refused, and nothing is ever accepted unverified.
#[tokio::test]
async fn row39_jwks_down_keeps_last_known_good_keys_for_24_hours() {
    let server = jwks_server(JwkSet {
        keys: vec![ec_jwk("k1")],
    })
    .await;
    let v = url_validator(&server.url);
    let start = Instant::now();
    let token = sign_with(&with_kid("k1"), &claims("citizen"), EC_KEY);
    assert!(v.validate_at(&token, None, start).await.is_ok());
    server.down.store(true, Ordering::SeqCst);
    // An hour later the keys are stale, the refresh fails, the cached key still verifies.
    let hour = start + Duration::from_secs(3600);
    assert!(v.validate_at(&token, None, hour).await.is_ok());
    // That refresh runs in the background; wait for it to fail.
    for _ in 0..500 {
        if server.fetches.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    // Let the failed refresh finish with the cache before the next check.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(v.validate_at(&token, None, hour).await.is_ok());
    let unknown = sign_with(&with_kid("k9"), &claims("citizen"), EC_KEY);
    assert!(matches!(
        v.validate_at(&unknown, None, hour + REFRESH_MIN_INTERVAL)
            .await,
        Err(TokenError::UnknownKey { .. })
    ));
    // Past 24 h without a successful fetch the keys are dropped.
    let day = start + KEYS_MAX_AGE + Duration::from_secs(1);
    assert!(matches!(
        v.validate_at(&token, None, day).await,
        Err(TokenError::UnknownKey { .. })
    ));
    // When the IdP is back, keys return.
    server.down.store(false, Ordering::SeqCst);
    let back = day + REFRESH_MIN_INTERVAL;
    assert!(v.validate_at(&token, None, back).await.is_ok());
}

#[test]
fn two_entries_for_one_issuer_are_a_config_error() {
    let entry = format!(
        r#"
        [[issuers]]
        name = "dev"
        issuer = "{ISS}"
        audience = "civicgraph"
        role = "citizen"
        keys = {{ pem = "ec.pub.pem", algorithm = "ES256" }}
        "#
    );
    let config = auth(&format!("{entry}{entry}"));
    let errors = TokenValidator::new(&root(), &config.issuers).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.contains("already configured"),
        "{}",
        errors[0]
    );
}

#[tokio::test]
async fn row38_a_certificate_bound_token_needs_that_certificate() {
    let v = ec_validator();
    let ours = b"the partner's client certificate (DER)";
    let theirs = b"another client's certificate (DER)";
    let mut bound = claims("agency");
    bound["agency"] = json!("dmv");
    bound["cnf"] = json!({"x5t#S256": cert_thumbprint(ours)});
    let token = es256(&bound);
    assert!(v.validate_presented(&token, Some(ours)).await.is_ok());
    for presented in [Some(&theirs[..]), None] {
        assert!(matches!(
            v.validate_presented(&token, presented).await,
            Err(TokenError::CertificateMismatch)
        ));
    }
    assert!(matches!(
        v.validate(&token).await,
        Err(TokenError::CertificateMismatch)
    ));
    // An unbound token does not care which certificate came with it.
    let mut unbound = claims("agency");
    unbound["agency"] = json!("dmv");
    assert!(
        v.validate_presented(&es256(&unbound), Some(theirs))
            .await
            .is_ok()
    );
}
