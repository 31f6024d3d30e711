//! Compact JWS (RFC 7515) as tokenward reads it: three base64url parts, a header that names
//! the algorithm (and may name the key), no critical extensions, and the registered claims of
//! RFC 7519 checked against the claim rules. The signature itself is `keys`' business: this
//! module splits and decodes, and judges the claims once the signature holds.

use std::collections::HashSet;

use ct_codecs::{Base64UrlSafeNoPadding, Decoder};

use crate::config::read::{self, Fields, Node, Read, ReadError};

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
#[derive(Debug)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
}

impl Header {
    fn read(value: &Node) -> Read<Header> {
        let fields = Fields::open(value)?;
        if fields.get("crit").is_some_and(|crit| *crit != Node::Null) {
            return Err(ReadError::new("a critical extension"));
        }
        Ok(Header {
            alg: fields.required("alg", read::string)?,
            kid: fields.optional("kid", read::string)?,
        })
    }
}

/// Claims a token carries beside the registered ones, read from the claims object (where
/// claims they do not name are ignored).
pub trait CustomClaims: Sized {
    fn read(claims: &Node) -> Read<Self>;
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
        // Strict JSON, as for the claims: valid UTF-8 and escapes in every parameter, even
        // those tokenward ignores, and none twice.
        let header = read::from_json(&decode(header)?, Header::read)
            .map_err(|_| SignatureError::Malformed)?;
        Ok(Jws {
            header,
            signed: &token.as_bytes()[..token.len() - signature.len() - 1],
            claims,
            signature: decode(signature)?,
        })
    }

    /// The claims, once the signature is verified: the registered ones checked against
    /// `rules` at `now`, and `C` (tokenward's, or a configuration signature's) beside them.
    pub fn claims<C: CustomClaims>(
        &self,
        rules: &ClaimRules,
        now: u64,
    ) -> Result<Claims<C>, SignatureError> {
        let json = decode(self.claims)?;
        // The whole payload is parsed strictly, claims tokenward does not read included:
        // invalid UTF-8 or escapes anywhere, or a claim twice, make the token malformed.
        let value = read::parse(&json).map_err(|_| SignatureError::Malformed)?;
        let registered = Claims::read(&value).map_err(|_| SignatureError::Malformed)?;
        registered.check(rules, now)?;
        let custom = C::read(&value).map_err(|_| SignatureError::Malformed)?;
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
/// Unknown claims are ignored: tokens may carry claims for other consumers. A registered
/// claim that is `null` is absent.
#[derive(Debug, Clone, Default)]
pub struct Claims<C> {
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub audiences: Option<Audiences>,
    pub expires_at: Option<u64>,
    pub invalid_before: Option<u64>,
    pub issued_at: Option<u64>,
    pub jwt_id: Option<String>,
    pub custom: C,
}

impl Claims<()> {
    fn read(value: &Node) -> Read<Claims<()>> {
        let fields = Fields::open(value)?;
        Ok(Claims {
            issuer: fields.optional("iss", read::string)?,
            subject: fields.optional("sub", read::string)?,
            audiences: fields.optional("aud", Audiences::read)?,
            expires_at: fields.optional("exp", numeric_date)?,
            invalid_before: fields.optional("nbf", numeric_date)?,
            issued_at: fields.optional("iat", numeric_date)?,
            jwt_id: fields.optional("jti", read::string)?,
            custom: (),
        })
    }

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
/// the fraction is dropped and a negative float is 0; a negative integer is malformed. Read
/// as serde_json reads numbers: an integer too large for u64 is a float (so u64::MAX), a
/// number too large for f64 malformed.
fn numeric_date(value: &Node) -> Read<u64> {
    let Node::Number(text) = value else {
        return Err(ReadError::invalid_type(value, "seconds since the epoch"));
    };
    if !text.contains(['.', 'e', 'E']) {
        match text.strip_prefix('-') {
            None => {
                if let Ok(seconds) = text.parse::<u64>() {
                    return Ok(seconds);
                }
            }
            Some(digits) => {
                if digits.parse::<u64>().is_ok_and(|n| (1..=1 << 63).contains(&n)) {
                    return Err(ReadError::new("a negative integer is not a time"));
                }
            }
        }
    }
    // What serde_json reads as a float: fractions, exponents, `-0`, integers past 64 bits.
    match crate::json::number::parse_f64(text) {
        // `as` saturates: a negative time is 0, a huge one u64::MAX.
        Some(seconds) if seconds.is_finite() => Ok(seconds as u64),
        _ => Err(ReadError::new("not a time")),
    }
}

/// `aud`: one string or an array of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audiences(Vec<String>);

impl Audiences {
    fn any_in(&self, accepted: &HashSet<String>) -> bool {
        self.0.iter().any(|a| accepted.contains(a))
    }

    fn read(value: &Node) -> Read<Audiences> {
        match value {
            Node::String(one) => Ok(Audiences(vec![one.to_string()])),
            _ => read::strings(value).map(Audiences),
        }
    }
}

#[cfg(test)]
mod tests;
