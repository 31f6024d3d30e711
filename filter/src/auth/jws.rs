//! Compact JWS (RFC 7515) as tokenward reads it: three base64url parts, a header that names
//! the algorithm (and may name the key), no critical extensions, and the registered claims of
//! RFC 7519 checked against the claim rules. The signature itself is `keys`' business: this
//! module splits and decodes, and judges the claims once the signature holds.

use std::collections::HashSet;

use ct_codecs::{Base64UrlSafeNoPadding, Decoder};
use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// Longest JWT accepted; longer ones are refused before any decoding work.
pub const MAX_TOKEN_LENGTH: usize = 8 * 1024;
/// Longest encoded header accepted.
pub const MAX_HEADER_LENGTH: usize = 1024;

/// Why a token was refused, reduced to what the client may be told.
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
    #[error("token algorithm does not match its key")]
    WrongAlgorithm,
    /// The host cannot verify this algorithm (ES256 where Envoy's `verify_signature` is
    /// missing): refused, never let through.
    #[error("this gateway cannot verify the token's algorithm")]
    Unverifiable,
}

/// What a JWS header says that tokenward reads. Other parameters are ignored, except `crit`:
/// tokenward understands no extension, so a token that makes one critical is refused.
#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    crit: Option<de::IgnoredAny>,
}

/// A token split in its parts: the decoded header, the bytes the signature covers, the
/// encoded claims and the decoded signature.
#[derive(Debug)]
pub struct Jws<'t> {
    pub header: Header,
    pub signed: &'t [u8],
    claims: &'t str,
    pub signature: Vec<u8>,
}

impl<'t> Jws<'t> {
    /// Splits and decodes `token`; nothing is verified yet.
    pub fn parse(token: &'t str) -> Result<Jws<'t>, SignatureError> {
        if token.len() > MAX_TOKEN_LENGTH {
            return Err(SignatureError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SignatureError::Malformed);
        };
        if header.len() > MAX_HEADER_LENGTH {
            return Err(SignatureError::TooLong);
        }
        let header = decode(header)?;
        // Strict JSON, as for the claims: a header read into `Header` skips what it ignores.
        serde_json::from_slice::<serde_json::Value>(&header)
            .map_err(|_| SignatureError::Malformed)?;
        let header: Header =
            serde_json::from_slice(&header).map_err(|_| SignatureError::Malformed)?;
        if header.crit.is_some() {
            return Err(SignatureError::Malformed);
        }
        Ok(Jws {
            header,
            signed: &token.as_bytes()[..token.len() - signature.len() - 1],
            claims,
            signature: decode(signature)?,
        })
    }

    /// The claims, once the signature is verified: the registered ones checked against
    /// `rules` at `now`, and `C` (tokenward's, or a configuration signature's) beside them.
    pub fn claims<C: DeserializeOwned>(
        &self,
        rules: &ClaimRules,
        now: u64,
    ) -> Result<Claims<C>, SignatureError> {
        let json = decode(self.claims)?;
        // Strict JSON first: reading into structs skips the claims it does not name without
        // checking them (invalid UTF-8 or escapes in an unknown claim would pass).
        let value: serde_json::Value =
            serde_json::from_slice(&json).map_err(|_| SignatureError::Malformed)?;
        // The registered claims from the bytes, so a duplicated one is refused.
        let registered: Claims<()> =
            serde_json::from_slice(&json).map_err(|_| SignatureError::Malformed)?;
        registered.check(rules, now)?;
        let custom = C::deserialize(&value).map_err(|_| SignatureError::Malformed)?;
        Ok(registered.with(custom))
    }
}

fn decode(part: &str) -> Result<Vec<u8>, SignatureError> {
    Base64UrlSafeNoPadding::decode_to_vec(part, None).map_err(|_| SignatureError::Malformed)
}

/// The registered-claim rules a JWT is checked against. Without issuers or audiences, that
/// claim is not checked.
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    pub issuers: Option<HashSet<String>>,
    pub audiences: Option<HashSet<String>>,
    pub clock_skew_seconds: u64,
}

/// The registered claims (RFC 7519 §4.1; times in Unix seconds) and `custom` beside them.
/// Unknown claims are ignored: tokens may carry claims for other consumers.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Claims<C> {
    #[serde(default, rename = "iss")]
    pub issuer: Option<String>,
    #[serde(default, rename = "sub")]
    pub subject: Option<String>,
    #[serde(default, rename = "aud")]
    pub audiences: Option<Audiences>,
    #[serde(default, rename = "exp", deserialize_with = "numeric_date")]
    pub expires_at: Option<u64>,
    #[serde(default, rename = "nbf", deserialize_with = "numeric_date")]
    pub invalid_before: Option<u64>,
    #[serde(default, rename = "iat", deserialize_with = "numeric_date")]
    pub issued_at: Option<u64>,
    #[serde(default, rename = "jti")]
    pub jwt_id: Option<String>,
    #[serde(skip)]
    pub custom: C,
}

impl Claims<()> {
    /// The same registered claims with `custom` beside them.
    fn with<C>(self, custom: C) -> Claims<C> {
        Claims {
            issuer: self.issuer,
            subject: self.subject,
            audiences: self.audiences,
            expires_at: self.expires_at,
            invalid_before: self.invalid_before,
            issued_at: self.issued_at,
            jwt_id: self.jwt_id,
            custom,
        }
    }

    /// Times with `rules.clock_skew_seconds` of tolerance, then issuer and audience.
    fn check(&self, rules: &ClaimRules, now: u64) -> Result<(), SignatureError> {
        let skew = rules.clock_skew_seconds;
        if self.issued_at.is_some_and(|iat| iat > now.saturating_add(skew)) {
            return Err(SignatureError::IssuedInFuture);
        }
        if self.expires_at.is_some_and(|exp| exp.saturating_add(skew) < now) {
            return Err(SignatureError::Expired);
        }
        if self.invalid_before.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
            return Err(SignatureError::NotYetValid);
        }
        if let Some(issuers) = &rules.issuers {
            if !self.issuer.as_ref().is_some_and(|iss| issuers.contains(iss)) {
                return Err(SignatureError::WrongIssuer);
            }
        }
        if let Some(audiences) = &rules.audiences {
            if !self.audiences.as_ref().is_some_and(|aud| aud.any_in(audiences)) {
                return Err(SignatureError::WrongAudience);
            }
        }
        Ok(())
    }
}

/// A NumericDate (RFC 7519 §2): seconds, which may have a fraction. As jwt-simple read them,
/// the fraction is dropped and a negative float is 0; a negative integer is malformed.
fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    struct Seconds;
    impl Visitor<'_> for Seconds {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("seconds since the epoch")
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<Option<u64>, E> {
            Ok(Some(value))
        }
        fn visit_f64<E: de::Error>(self, value: f64) -> Result<Option<u64>, E> {
            if !value.is_finite() {
                return Err(E::custom("not a time"));
            }
            // `as` saturates: a negative time is 0, a huge one u64::MAX.
            Ok(Some(value as u64))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(Seconds)
}

/// `aud`: one string or an array of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audiences(Vec<String>);

impl Audiences {
    fn any_in(&self, accepted: &HashSet<String>) -> bool {
        self.0.iter().any(|a| accepted.contains(a))
    }
}

impl<'de> Deserialize<'de> for Audiences {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> Visitor<'de> for OneOrMany {
            type Value = Audiences;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Audiences, E> {
                Ok(Audiences(vec![value.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audiences, A::Error> {
                let mut all = Vec::new();
                while let Some(one) = seq.next_element::<String>()? {
                    all.push(one);
                }
                Ok(Audiences(all))
            }
        }
        deserializer.deserialize_any(OneOrMany)
    }
}

#[cfg(test)]
mod tests;
