//! tokenward's custom JWT claims, shared with the control plane that mints them. The
//! registered claims (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`) are read by `auth::jws`.

use serde::{Deserialize, Serialize};

use crate::auth::jws::CustomClaims;
use crate::config::read::{self, Fields, Node, Read};

/// Claims beyond the registered ones. Unknown claims in a token are ignored, not refused:
/// tokens may carry claims for other consumers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenwardClaims {
    /// Space-delimited scopes (RFC 8693 §4.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Model patterns the token may use (`gpt-4o*`); absent means no model at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The quota plan the token counts against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

impl CustomClaims for TokenwardClaims {
    fn read(claims: &Node) -> Read<TokenwardClaims> {
        let fields = Fields::open(claims)?;
        Ok(TokenwardClaims {
            scope: fields.optional("scope", read::string)?,
            models: fields.optional("models", read::strings)?,
            tenant: fields.optional("tenant", read::string)?,
            plan: fields.optional("plan", read::string)?,
        })
    }
}

impl TokenwardClaims {
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
    }
}
