//! Signing keys: turns a JWK into a verification key pinned to one algorithm, and verifies
//! a JWT's signature and registered claims with jwt-simple. Which key to use (by `kid`) and
//! what the claims mean are decided in `token`.

use std::collections::HashSet;

use jwt_simple::prelude::*;
use jwt_simple::JWTError;

use crate::claims::TokenwardClaims;
use crate::config::Jwk;
pub use crate::invalid::KeyError;

/// JWT algorithms tokenward accepts. Anything else, `none` included, is refused before any
/// signature check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    EdDsa,
    Es256,
    Hs256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Es256 => "ES256",
            Algorithm::Hs256 => "HS256",
        }
    }
}

/// A verification key, pinned to the one algorithm its JWK declares.
pub enum VerificationKey {
    EdDsa(Ed25519PublicKey),
    Es256(ES256PublicKey),
    Hs256(HS256Key),
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material (an HS256 key is a secret).
        write!(f, "VerificationKey({})", self.algorithm().name())
    }
}

impl VerificationKey {
    pub fn from_jwk(jwk: &Jwk) -> Result<VerificationKey, KeyError> {
        if let Some(use_) = &jwk.use_ {
            if use_ != "sig" {
                return Err(KeyError::WrongUse(use_.clone()));
            }
        }
        let algorithm = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("OKP", Some("Ed25519")) => Algorithm::EdDsa,
            ("EC", Some("P-256")) => Algorithm::Es256,
            ("oct", None) => Algorithm::Hs256,
            _ => {
                return Err(KeyError::Unsupported {
                    kty: jwk.kty.clone(),
                    crv: jwk.crv.clone(),
                })
            }
        };
        if let Some(alg) = &jwk.alg {
            if alg != algorithm.name() {
                return Err(KeyError::AlgorithmMismatch {
                    alg: alg.clone(),
                    kty: jwk.kty.clone(),
                });
            }
        }
        let invalid = |e: jwt_simple::Error| KeyError::InvalidKey(e.to_string());
        Ok(match algorithm {
            Algorithm::EdDsa => {
                let x = decode_param(&jwk.x, "x")?;
                VerificationKey::EdDsa(Ed25519PublicKey::from_bytes(&x).map_err(invalid)?)
            }
            Algorithm::Es256 => {
                let x = decode_param(&jwk.x, "x")?;
                let y = decode_param(&jwk.y, "y")?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(KeyError::InvalidKey(
                        "P-256 coordinates must be 32 bytes".into(),
                    ));
                }
                let mut sec1 = Vec::with_capacity(65);
                sec1.push(0x04);
                sec1.extend_from_slice(&x);
                sec1.extend_from_slice(&y);
                VerificationKey::Es256(ES256PublicKey::from_bytes(&sec1).map_err(invalid)?)
            }
            Algorithm::Hs256 => {
                if !jwk.allow_symmetric {
                    return Err(KeyError::SymmetricNotAllowed);
                }
                let k = decode_param(&jwk.k, "k")?;
                if k.len() < 32 {
                    return Err(KeyError::InvalidKey(
                        "HS256 secret shorter than 32 bytes".into(),
                    ));
                }
                VerificationKey::Hs256(HS256Key::from_bytes(&k))
            }
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            VerificationKey::EdDsa(_) => Algorithm::EdDsa,
            VerificationKey::Es256(_) => Algorithm::Es256,
            VerificationKey::Hs256(_) => Algorithm::Hs256,
        }
    }

    /// Checks the signature and the registered claims against `rules` at time `now`.
    pub fn verify(
        &self,
        token: &str,
        rules: &ClaimRules,
        now: u64,
    ) -> Result<JWTClaims<TokenwardClaims>, SignatureError> {
        let options = VerificationOptions {
            allowed_issuers: Some(rules.issuers.clone()),
            allowed_audiences: Some(rules.audiences.clone()),
            time_tolerance: Some(Duration::from_secs(rules.clock_skew_seconds)),
            artificial_time: Some(Duration::from_secs(now)),
            max_token_length: Some(MAX_TOKEN_LENGTH),
            max_header_length: Some(MAX_HEADER_LENGTH),
            ..VerificationOptions::default()
        };
        self.verify_with(token, options)
    }

    /// Checks the signature of a JWT with claims of another shape (the control plane's
    /// signature on a pulled configuration) under `options`.
    pub fn verify_with<C: Serialize + serde::de::DeserializeOwned>(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Result<JWTClaims<C>, SignatureError> {
        let result = match self {
            VerificationKey::EdDsa(key) => key.verify_token(token, Some(options)),
            VerificationKey::Es256(key) => key.verify_token(token, Some(options)),
            VerificationKey::Hs256(key) => key.verify_token(token, Some(options)),
        };
        result.map_err(SignatureError::from)
    }
}

/// Longest JWT accepted; longer ones are refused before any decoding work.
pub const MAX_TOKEN_LENGTH: usize = 8 * 1024;
pub const MAX_HEADER_LENGTH: usize = 1024;

/// The registered-claim rules every JWT is checked against.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    pub issuers: HashSet<String>,
    pub audiences: HashSet<String>,
    pub clock_skew_seconds: u64,
}

/// Why jwt-simple refused a token, reduced to what the client may be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token is too long")]
    TooLong,
    #[error("token is malformed")]
    Malformed,
}

impl From<jwt_simple::Error> for SignatureError {
    fn from(error: jwt_simple::Error) -> Self {
        match error.downcast_ref::<JWTError>() {
            Some(JWTError::TokenHasExpired) => SignatureError::Expired,
            Some(JWTError::TokenNotValidYet) => SignatureError::NotYetValid,
            Some(JWTError::ClockDrift) => SignatureError::IssuedInFuture,
            Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => {
                SignatureError::WrongIssuer
            }
            Some(JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing) => {
                SignatureError::WrongAudience
            }
            Some(JWTError::InvalidSignature | JWTError::InvalidAuthenticationTag) => {
                SignatureError::BadSignature
            }
            Some(JWTError::TokenTooLong | JWTError::HeaderTooLarge) => SignatureError::TooLong,
            // Everything else (encoding, algorithm, unparsable JSON, p256/ed25519 errors that
            // are not JWTError) is a malformed or forged token.
            _ => SignatureError::Malformed,
        }
    }
}

fn decode_param(value: &Option<String>, name: &'static str) -> Result<Vec<u8>, KeyError> {
    let value = value.as_deref().ok_or(KeyError::MissingParameter(name))?;
    Base64UrlSafeNoPadding::decode_to_vec(value, None).map_err(|_| KeyError::BadEncoding(name))
}

#[cfg(test)]
mod tests;
