//! The gateway's own signing keys: what it says about consent (receipts), about its audit
//! chain (checkpoints) and, in development, about who a caller is (local tokens) is signed
//! so it can be checked later without trusting the database or the person holding the file.
//!
//! Keys are Ed25519 in PKCS#8 PEM files. A missing key file is made on first use (mode 0600 on
//! Unix), so a fresh checkout needs no key ceremony; production points the path at a managed key.
//! Everything signed is a compact JWS whose `typ` header says what it is, and verification
//! insists on that `typ`, so a receipt can never pass for a checkpoint or a token.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, spki::der::pem};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// Why a key could not be loaded or made, or a signature made.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The key file could not be read or written.
    #[error("signing key `{path}`: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The file is not an Ed25519 private key in PKCS#8 PEM.
    #[error("signing key `{path}` is not an Ed25519 private key in PKCS#8 PEM ({reason})")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What was wrong, without any key material.
        reason: String,
    },
    /// The operating system gave no randomness for a new key.
    #[error("no randomness for a new signing key: {0}")]
    Random(String),
    /// Signing failed (the claims could not be serialised).
    #[error("could not sign: {0}")]
    Sign(String),
}

/// Why a signed document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a compact JWS, or its header is unreadable.
    #[error("not a signed document (compact JWS)")]
    Malformed,
    /// Signed as something else (`typ` differs).
    #[error("this is a `{found}` document, not a `{expected}`")]
    WrongType {
        /// The `typ` required.
        expected: String,
        /// The `typ` found (empty when absent).
        found: String,
    },
    /// Signed by another key.
    #[error("signed by another key (kid `{found}`, expected `{expected}`)")]
    OtherKey {
        /// This key's id.
        expected: String,
        /// The document's `kid`.
        found: String,
    },
    /// The signature does not match the content: it was altered or forged.
    #[error("the signature does not match: the document was altered or not signed by this key")]
    BadSignature,
    /// The signature holds but the content is not what this document type contains.
    #[error("the signed content is not valid: {0}")]
    BadContent(String),
}

/// An Ed25519 private key, able to sign compact JWS.
#[derive(Clone)]
pub struct SigningKey {
    encoding: EncodingKey,
    verifier: Verifier,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.verifier.key_id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads the key at `path`, or makes one there when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SigningError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_pem(path, &text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(source) => Err(SigningError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Reads an existing key; a missing file is an error.
    pub fn load(path: &Path) -> Result<Self, SigningError> {
        let text = std::fs::read_to_string(path).map_err(|source| SigningError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_pem(path, &text)
    }

    fn create(path: &Path) -> Result<Self, SigningError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| SigningError::Random(e.to_string()))?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let pem = key
            .to_pkcs8_pem(pem::LineEnding::LF)
            .map_err(|e| SigningError::Sign(e.to_string()))?;
        let io = |source| SigningError::Io {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => parent.to_path_buf(),
            None => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        // Written whole to a temporary file, then linked into place only if no key is there:
        // two processes starting at once end up with one key, never a half-written file.
        let mut file = tempfile::Builder::new()
            .prefix(".signing-key-")
            .tempfile_in(&dir)
            .map_err(io)?;
        restrict(file.as_file()).map_err(io)?;
        std::io::Write::write_all(&mut file, pem.as_bytes()).map_err(io)?;
        file.as_file().sync_all().map_err(io)?;
        match file.persist_noclobber(path) {
            Ok(_) => {
                tracing::info!(path = %path.display(), "Made a new signing key.");
                Self::from_pem(path, &pem)
            }
            Err(error) if error.error.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::load(path)
            }
            Err(error) => Err(io(error.error)),
        }
    }

    fn from_pem(path: &Path, text: &str) -> Result<Self, SigningError> {
        let bad = |reason: String| SigningError::BadKey {
            path: path.to_path_buf(),
            reason,
        };
        let key =
            ed25519_dalek::SigningKey::from_pkcs8_pem(text).map_err(|e| bad(e.to_string()))?;
        let encoding = EncodingKey::from_ed_pem(text.as_bytes()).map_err(|e| bad(e.to_string()))?;
        let public_pem = key
            .verifying_key()
            .to_public_key_pem(pem::LineEnding::LF)
            .map_err(|e| bad(e.to_string()))?;
        let verifier = Verifier::from_public_pem(&public_pem).map_err(|e| bad(e.to_string()))?;
        Ok(Self { encoding, verifier })
    }

    /// Signs `claims` as a compact JWS of type `typ` (`EdDSA`, with this key's id as `kid`).
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, SigningError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(typ.to_string());
        header.kid = Some(self.verifier.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| SigningError::Sign(e.to_string()))
    }

    /// The public half, for checking what this key signed.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

#[cfg(unix)]
fn restrict(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

/// An Ed25519 public key that checks compact JWS.
#[derive(Clone)]
pub struct Verifier {
    decoding: DecodingKey,
    key_id: String,
    public_pem: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for an Ed25519 public key in SPKI PEM.
    pub fn from_public_pem(pem: &str) -> Result<Self, jsonwebtoken::errors::Error> {
        let decoding = DecodingKey::from_ed_pem(pem.as_bytes())?;
        Ok(Self {
            decoding,
            key_id: key_id(pem),
            public_pem: pem.to_string(),
        })
    }

    /// A short, stable name for the key: the start of the SHA-256 of its public PEM, in
    /// base64url. It lets a reader tell which key signed a document before checking it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key, for publishing (e.g. beside exported receipts).
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// Checks a compact JWS of type `typ` and returns its claims. Nothing about time is
    /// checked here: receipts and checkpoints are records, not credentials.
    pub fn verify<T: DeserializeOwned>(&self, typ: &str, jws: &str) -> Result<T, VerifyError> {
        let header = jsonwebtoken::decode_header(jws.trim()).map_err(|_| VerifyError::Malformed)?;
        let found = header.typ.unwrap_or_default();
        if found != typ {
            return Err(VerifyError::WrongType {
                expected: typ.to_string(),
                found,
            });
        }
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::BadSignature);
        }
        if let Some(kid) = header.kid
            && kid != self.key_id
        {
            return Err(VerifyError::OtherKey {
                expected: self.key_id.clone(),
                found: kid,
            });
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<T>(jws.trim(), &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => VerifyError::BadSignature,
                jsonwebtoken::errors::ErrorKind::Json(e) => VerifyError::BadContent(e.to_string()),
                _ => VerifyError::Malformed,
            })
    }
}

fn key_id(public_pem: &str) -> String {
    use base64::Engine;
    let digest = Sha256::digest(public_pem.trim().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_missing_key_is_made_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.pem");
        let first = SigningKey::load_or_create(&path).unwrap();
        let second = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(first.verifier().key_id(), second.verifier().key_id());
        let jws = first.sign("test+jwt", &json!({"n": 1})).unwrap();
        let claims: Value = second.verifier().verify("test+jwt", &jws).unwrap();
        assert_eq!(claims, json!({"n": 1}));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn processes_racing_to_make_a_key_end_up_with_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.pem");
        let ids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| SigningKey::load_or_create(&path).unwrap()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().verifier().key_id().to_string())
                .collect()
        });
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    }

    #[test]
    fn altered_retyped_and_foreign_documents_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(&dir.path().join("a.pem")).unwrap();
        let other = SigningKey::load_or_create(&dir.path().join("b.pem")).unwrap();
        let jws = key
            .sign("receipt+jwt", &json!({"who": "C0000001"}))
            .unwrap();

        let mut parts: Vec<String> = jws.split('.').map(str::to_string).collect();
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        parts[1] = engine.encode(br#"{"who":"C0000002"}"#);
        let altered = parts.join(".");
        assert_eq!(
            key.verifier().verify::<Value>("receipt+jwt", &altered),
            Err(VerifyError::BadSignature)
        );
        assert!(matches!(
            key.verifier().verify::<Value>("checkpoint+jwt", &jws),
            Err(VerifyError::WrongType { .. })
        ));
        assert!(matches!(
            other.verifier().verify::<Value>("receipt+jwt", &jws),
            Err(VerifyError::OtherKey { .. })
        ));
        assert_eq!(
            key.verifier().verify::<Value>("receipt+jwt", "not a jws"),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn a_file_that_is_not_a_key_is_named_without_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.pem");
        std::fs::write(&path, "secret-looking garbage").unwrap();
        let error = SigningKey::load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("bad.pem"), "{error}");
        assert!(!error.contains("secret-looking"), "{error}");
    }
}
