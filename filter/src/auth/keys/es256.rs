//! ES256: ECDSA over P-256 with SHA-256. In the module the host verifies, through Envoy's
//! `verify_signature` foreign function (BoringSSL, natively compiled: P-256 in Wasm is several
//! times slower than Envoy's own `jwt_authn`), and a host without it refuses ES256 tokens.
//! Natively (the control plane, tests) p256 verifies.

use super::KeyError;
use crate::auth::jws::SignatureError;

/// A P-256 public key.
pub struct PublicKey {
    /// SubjectPublicKeyInfo (DER), as the host takes it.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    spki: Vec<u8>,
    #[cfg(not(target_arch = "wasm32"))]
    key: p256::ecdsa::VerifyingKey,
}

/// The DER of a SubjectPublicKeyInfo for an uncompressed P-256 point, up to the point:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING { 0x04 || X || Y } }.
const SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];

impl PublicKey {
    /// The key of a JWK's 32-byte coordinates. Natively the point is checked to be on the
    /// curve here; in the module the host checks it on every verification.
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Result<PublicKey, KeyError> {
        let mut spki = Vec::with_capacity(SPKI_PREFIX.len() + 64);
        spki.extend_from_slice(&SPKI_PREFIX);
        spki.extend_from_slice(x);
        spki.extend_from_slice(y);
        Ok(PublicKey {
            #[cfg(not(target_arch = "wasm32"))]
            key: p256::ecdsa::VerifyingKey::from_sec1_bytes(&spki[SPKI_PREFIX.len() - 1..])
                .map_err(|_| KeyError::InvalidKey("not a point of P-256".into()))?,
            spki,
        })
    }

    /// Whether `signature` (JWS form: R and S, 32 bytes each) signs `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<bool, SignatureError> {
        if signature.len() != 64 {
            return Ok(false);
        }
        self.verify_rs(message, signature)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn verify_rs(&self, message: &[u8], signature: &[u8]) -> Result<bool, SignatureError> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let Ok(signature) = p256::ecdsa::Signature::from_slice(signature) else {
            return Ok(false);
        };
        let digest = hmac_sha256::Hash::hash(message);
        Ok(self.key.verify_prehash(&digest, &signature).is_ok())
    }

    #[cfg(target_arch = "wasm32")]
    fn verify_rs(&self, message: &[u8], signature: &[u8]) -> Result<bool, SignatureError> {
        crate::abi::verify_signature("sha256", &self.spki, &der_signature(signature), message)
            .ok_or(SignatureError::Unverifiable)
    }
}

/// An ECDSA signature as DER wants it: SEQUENCE { INTEGER r, INTEGER s }, each minimal and
/// positive.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub fn der_signature(rs: &[u8]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, bytes: &[u8]) {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len() - 1);
        let bytes = &bytes[start..];
        let pad = bytes[0] & 0x80 != 0;
        out.push(0x02);
        out.push((bytes.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(bytes);
    }
    let mut body = Vec::with_capacity(72);
    integer(&mut body, &rs[..32]);
    integer(&mut body, &rs[32..]);
    let mut out = Vec::with_capacity(body.len() + 2);
    out.push(0x30);
    out.push(body.len() as u8);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests;
