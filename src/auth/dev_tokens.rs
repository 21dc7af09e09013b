//! Development personas: tokens minted with the local development key, so a developer can
//! see exactly what a citizen, an agency client or an operator may read — through the same
//! token validation production uses, not a back door.
//!
//! Minting needs an issuer whose keys are `dev_key`; any other issuer is refused, since the
//! gateway holds no private key for it (and must never pretend to).

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{GatewayConfig, IssuerConfig, IssuerRole, TrustConfig};
use crate::identity::CitizenId;
use crate::signing::{SigningError, SigningKey};

/// Who a development token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persona {
    /// A citizen, by canonical id.
    Citizen(CitizenId),
    /// An agency client.
    Agency {
        /// The OAuth client id.
        client_id: String,
        /// The agency code (`[trust.agencies]`).
        agency: String,
        /// Scopes granted.
        scopes: BTreeSet<String>,
        /// The purpose the token states (and allows).
        purpose: String,
    },
    /// A gateway operator.
    Operator {
        /// The operator's name.
        name: String,
    },
}

/// Why no token was minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// No issuer with a `dev_key`.
    #[error(
        "no local development issuer is configured: `civicgraph token` signs only for an `[[auth.issuers]]` entry with `keys = {{ dev_key = \"…\" }}`"
    )]
    NoDevIssuer,
    /// The development issuer is switched off, so the gateway would refuse its tokens.
    #[error(
        "the local development issuer `{0}` is disabled (`enabled = false`); the shipped configuration turns it on with CIVICGRAPH_DEV_TOKENS=true"
    )]
    Disabled(String),
    /// The persona does not fit the catalogues.
    #[error("{0}")]
    Invalid(String),
    /// The key could not be read or used.
    #[error(transparent)]
    Key(#[from] SigningError),
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agency: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose: Option<&'a str>,
}

/// The configured local development issuer, enabled or not.
pub fn dev_issuer(config: &GatewayConfig) -> Result<&IssuerConfig, MintError> {
    let issuer = config
        .auth
        .issuers
        .iter()
        .find(|i| i.keys.get_ref().dev_key.is_some())
        .ok_or(MintError::NoDevIssuer)?;
    if !issuer.enabled {
        return Err(MintError::Disabled(issuer.name.clone()));
    }
    Ok(issuer)
}

/// Mints a token for `persona` from the development issuer of `config` (key paths relative
/// to `root`), valid for `ttl` from `now`.
pub fn mint(
    config: &GatewayConfig,
    root: &Path,
    persona: &Persona,
    now: DateTime<Utc>,
    ttl: chrono::Duration,
) -> Result<String, MintError> {
    let issuer = dev_issuer(config)?;
    check_persona(persona, issuer.role, &config.trust)?;
    let path = root.join(issuer.keys.get_ref().dev_key.as_deref().unwrap_or_default());
    let key = SigningKey::load_or_create(&path)?;
    let role = (issuer.role == IssuerRole::Claim).then_some(match persona {
        Persona::Citizen(_) => "citizen",
        Persona::Agency { .. } => "agency",
        Persona::Operator { .. } => "operator",
    });
    let mut claims = Claims {
        iss: &issuer.issuer,
        aud: &issuer.audience,
        sub: "",
        iat: now.timestamp(),
        nbf: now.timestamp(),
        exp: (now + ttl).timestamp(),
        role,
        client_id: None,
        agency: None,
        scope: None,
        purpose: None,
    };
    match persona {
        Persona::Citizen(id) => claims.sub = id.as_str(),
        Persona::Operator { name } => claims.sub = name,
        Persona::Agency {
            client_id,
            agency,
            scopes,
            purpose,
        } => {
            claims.sub = client_id;
            claims.client_id = Some(client_id);
            claims.agency = Some(agency);
            claims.scope = Some(scopes.iter().cloned().collect::<Vec<_>>().join(" "));
            claims.purpose = Some(purpose);
        }
    }
    let typ = if issuer.require_typ.is_empty() {
        "JWT"
    } else {
        issuer.require_typ.as_str()
    };
    Ok(key.sign(typ, &claims)?)
}

fn check_persona(
    persona: &Persona,
    role: IssuerRole,
    trust: &TrustConfig,
) -> Result<(), MintError> {
    let wanted = match persona {
        Persona::Citizen(_) => IssuerRole::Citizen,
        Persona::Agency { .. } => IssuerRole::Agency,
        Persona::Operator { .. } => IssuerRole::Operator,
    };
    if role != IssuerRole::Claim && role != wanted {
        return Err(MintError::Invalid(format!(
            "the development issuer only makes {role:?} tokens (its `role`); set `role = \"claim\"` to mint every persona"
        )));
    }
    if let Persona::Agency {
        agency, purpose, ..
    } = persona
    {
        if !trust.agencies.contains_key(agency) {
            let known: Vec<&str> = trust.agencies.keys().map(String::as_str).collect();
            return Err(MintError::Invalid(format!(
                "unknown agency `{agency}`; the agencies are {}",
                crate::config::quoted_list(&known)
            )));
        }
        if !trust.purposes.contains_key(purpose) {
            let known: Vec<&str> = trust.purposes.keys().map(String::as_str).collect();
            return Err(MintError::Invalid(format!(
                "unknown purpose `{purpose}`; the purposes are {}",
                crate::config::quoted_list(&known)
            )));
        }
    }
    Ok(())
}

/// The agency a client id belongs to when `--agency` is not given: its first `-`-separated
/// word, if that names a catalogued agency (`benefits-portal` → `benefits`).
pub fn agency_of_client(client_id: &str, trust: &TrustConfig) -> Option<String> {
    let first = client_id.split(['-', '_', '.']).next()?;
    trust
        .agencies
        .contains_key(first)
        .then(|| first.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Principal, TokenValidator};

    fn config(enabled: bool) -> GatewayConfig {
        toml::from_str(&format!(
            r#"
            [[auth.issuers]]
            name = "local-dev"
            issuer = "urn:civicgraph:dev"
            audience = "civicgraph"
            role = "claim"
            enabled = {enabled}
            keys = {{ dev_key = "dev.pem" }}

            [trust.purposes]
            benefit-eligibility = "checking your eligibility"
            [trust.agencies.benefits]
            name = "the Benefits Agency"
            "#
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn minted_tokens_pass_the_gateways_own_validation() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(true);
        let validator = TokenValidator::new(dir.path(), &config.auth.issuers).unwrap();
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        let citizen = CitizenId::parse("C0000001").unwrap();
        let token = mint(
            &config,
            dir.path(),
            &Persona::Citizen(citizen.clone()),
            now,
            hour,
        )
        .unwrap();
        assert_eq!(
            validator.validate(&token).await.unwrap(),
            Principal::Citizen(citizen)
        );

        let agency = Persona::Agency {
            client_id: "benefits-portal".into(),
            agency: agency_of_client("benefits-portal", &config.trust).unwrap(),
            scopes: BTreeSet::from(["dmv:read".to_string()]),
            purpose: "benefit-eligibility".into(),
        };
        let token = mint(&config, dir.path(), &agency, now, hour).unwrap();
        let Principal::Agency(client) = validator.validate(&token).await.unwrap() else {
            panic!("not an agency");
        };
        assert_eq!(client.agency, "benefits");
        assert_eq!(client.purpose.as_deref(), Some("benefit-eligibility"));
        assert!(client.scopes.contains("dmv:read"));

        let expired = mint(
            &config,
            dir.path(),
            &Persona::Operator { name: "ops".into() },
            now - chrono::Duration::hours(2),
            hour,
        )
        .unwrap();
        assert!(validator.validate(&expired).await.is_err());
    }

    #[test]
    fn minting_is_refused_without_an_enabled_dev_issuer_or_with_unknown_codes() {
        let dir = tempfile::tempdir().unwrap();
        let persona = Persona::Operator { name: "ops".into() };
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        assert!(matches!(
            mint(&config(false), dir.path(), &persona, now, hour),
            Err(MintError::Disabled(_))
        ));
        assert!(matches!(
            mint(&GatewayConfig::default(), dir.path(), &persona, now, hour),
            Err(MintError::NoDevIssuer)
        ));
        let stranger = Persona::Agency {
            client_id: "x".into(),
            agency: "nsa".into(),
            scopes: BTreeSet::new(),
            purpose: "benefit-eligibility".into(),
        };
        assert!(matches!(
            mint(&config(true), dir.path(), &stranger, now, hour),
            Err(MintError::Invalid(_))
        ));
        assert!(
            !dir.path().join("dev.pem").exists(),
            "no key is made for a refused mint"
        );
    }
}
