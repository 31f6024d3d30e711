//! Signing keys: turns a JWK into a verification key pinned to one algorithm, and verifies
//! a JWT's signature (Ed25519 with ed25519-dalek, ES256 with the host's BoringSSL in the
//! module and p256 natively, HS256 with hmac-sha256) before its claims are read. Which key
//! to use (by `kid`) and what the claims mean are decided in `token`.

use ct_codecs::{Base64UrlSafeNoPadding, Decoder};

use crate::claims::TokenwardClaims;
use crate::config::Jwk;
pub use crate::invalid::KeyError;
pub use super::jws::{ClaimRules, Claims, CustomClaims, Jws, SignatureError};

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
    EdDsa(ed25519_dalek::VerifyingKey),
    Es256(es256::PublicKey),
    Hs256(Vec<u8>),
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
        Ok(match algorithm {
            Algorithm::EdDsa => {
                let x = decode_param(&jwk.x, "x")?;
                let bytes: [u8; 32] = x.as_slice().try_into().map_err(|_| {
                    KeyError::InvalidKey("an Ed25519 key is 32 bytes".to_string())
                })?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| KeyError::InvalidKey("not an Ed25519 point".to_string()))?;
                // A small-order key verifies signatures anyone can make.
                if key.is_weak() {
                    return Err(KeyError::InvalidKey("a weak (small-order) Ed25519 key".to_string()));
                }
                VerificationKey::EdDsa(key)
            }
            Algorithm::Es256 => {
                let x = decode_param(&jwk.x, "x")?;
                let y = decode_param(&jwk.y, "y")?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(KeyError::InvalidKey(
                        "P-256 coordinates must be 32 bytes".into(),
                    ));
                }
                VerificationKey::Es256(es256::PublicKey::from_coordinates(&x, &y)?)
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
                VerificationKey::Hs256(k)
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
    ) -> Result<Claims<TokenwardClaims>, SignatureError> {
        self.verify_with(&Jws::parse(token)?, rules, now)
    }

    /// Checks the signature of a parsed JWT, then its registered claims against `rules` at
    /// `now`; its other claims are read as `C` (tokenward's, or the control plane's signature
    /// on a pulled configuration). The header's algorithm must be the key's.
    pub fn verify_with<C: CustomClaims>(
        &self,
        jws: &Jws<'_>,
        rules: &ClaimRules,
        now: u64,
    ) -> Result<Claims<C>, SignatureError> {
        if jws.header.alg != self.algorithm().name() {
            return Err(SignatureError::WrongAlgorithm);
        }
        let valid = match self {
            // Strict: a canonical `s`, no small-order `R` or key, and the cofactorless
            // equation (RFC 8032's encoding checks and more).
            VerificationKey::EdDsa(key) => ed25519_dalek::Signature::from_slice(&jws.signature)
                .is_ok_and(|signature| key.verify_strict(jws.signed, &signature).is_ok()),
            VerificationKey::Es256(key) => key.verify(jws.signed, &jws.signature)?,
            VerificationKey::Hs256(secret) => {
                let mac = hmac_sha256::HMAC::mac(jws.signed, secret);
                constant_time_eq(&mac, &jws.signature)
            }
        };
        if !valid {
            return Err(SignatureError::BadSignature);
        }
        jws.claims(rules, now)
    }
}

/// Compares a MAC without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn decode_param(value: &Option<String>, name: &'static str) -> Result<Vec<u8>, KeyError> {
    let value = value.as_deref().ok_or(KeyError::MissingParameter(name))?;
    Base64UrlSafeNoPadding::decode_to_vec(value, None).map_err(|_| KeyError::BadEncoding(name))
}

mod es256;

#[cfg(test)]
mod tests;
