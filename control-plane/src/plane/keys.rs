//! Signing keys: the first one at `init`, rotation (announce, activate, retire, unpublish),
//! the published JWK set and each key's state.

use super::*;

impl<S: Store + ?Sized> ControlPlane<S> {
    /// Sets the issuer and audiences, makes the first signing key (active at once) and the
    /// first admin credential: an API key with both admin scopes, returned once.
    pub fn init(
        &self,
        settings: &InitSettings,
        now: u64,
    ) -> Result<(SigningKeyRecord, CreatedApiKey), PlaneError> {
        self.serialized(|| {
            if self.store.setting(SETTING_ISSUER)?.is_some() {
                return Err(PlaneError::AlreadyInitialised);
            }
            if settings.issuer.is_empty()
                || settings.audiences.iter().any(|a| a.is_empty())
                || settings.audiences.is_empty()
            {
                return Err(invalid(
                    "the issuer and at least one audience must not be empty",
                ));
            }
            self.store.set_setting(SETTING_ISSUER, &settings.issuer)?;
            self.store.set_setting(
                SETTING_AUDIENCES,
                &serde_json::to_string(&settings.audiences).map_err(StoreError::from)?,
            )?;
            self.audit(
                now,
                "init",
                &settings.issuer,
                &format!("audiences {:?}", settings.audiences),
            )?;
            let key = self.rotate_key(settings.alg, Some(0), now)?;
            let admin = self.create_api_key(
                &ApiKeyRequest {
                    subject: "admin".into(),
                    scopes: vec![SCOPE_ADMIN_READ.into(), SCOPE_ADMIN_WRITE.into()],
                    ..ApiKeyRequest::default()
                },
                now,
            )?;
            Ok((key, admin))
        })
    }

    /// Makes a new signing key, published now and signing after `overlap` seconds (the
    /// configured overlap when `None`); the key signing until then retires at that moment and
    /// stays published until the last token it can have signed has expired.
    pub fn rotate_key(
        &self,
        alg: Alg,
        overlap: Option<u64>,
        now: u64,
    ) -> Result<SigningKeyRecord, PlaneError> {
        self.serialized(|| {
            let overlap = match overlap {
                Some(o) if o > MAX_KEY_OVERLAP => {
                    return Err(invalid(format!(
                        "the overlap must be at most {MAX_KEY_OVERLAP} seconds (7 days)"
                    )))
                }
                Some(o) => o,
                None => self.number_setting(SETTING_OVERLAP, DEFAULT_KEY_OVERLAP)?,
            };
            let kid = format!(
                "{}-{}",
                alg.as_str().to_ascii_lowercase(),
                crypto::random_hex(6)?
            );
            let (public_jwk, private) = generate_key(alg, &kid)?;
            let activate_at = now + overlap;
            let record = SigningKeyRecord {
                private_sealed: self
                    .master
                    .seal(&SigningKeyRecord::seal_context(&kid), &private)?,
                kid: kid.clone(),
                alg,
                public_jwk,
                created_at: now,
                activate_at,
                retired_at: None,
                publish_until: None,
            };
            self.store.insert_signing_key(&record)?;
            let publish_until = activate_at
                + self.max_token_ttl()?
                + self.number_setting(SETTING_SKEW, DEFAULT_CLOCK_SKEW)?;
            self.store
                .retire_signing_keys(&kid, activate_at, publish_until)?;
            self.audit(
                now,
                "key.rotate",
                &kid,
                &format!("{} signing from {activate_at}", alg.as_str()),
            )?;
            Ok(record)
        })
    }

    /// Rotates when the newest signing key was made `every` seconds ago or longer (the
    /// scheduled rotation of `serve --rotate-keys-every`), keeping its algorithm. Checked
    /// inside the rotation's own transaction: two replicas cannot both rotate.
    pub fn rotate_if_older(
        &self,
        every: u64,
        now: u64,
    ) -> Result<Option<SigningKeyRecord>, PlaneError> {
        self.serialized(|| {
            let keys = self.store.signing_keys()?;
            let Some(newest) = keys.iter().max_by_key(|k| (k.created_at, k.activate_at)) else {
                return Err(PlaneError::NotInitialised);
            };
            if now < newest.created_at.saturating_add(every) {
                return Ok(None);
            }
            let alg = newest.alg;
            self.rotate_key(alg, None, now).map(Some)
        })
    }

    pub fn keys(&self) -> Result<Vec<SigningKeyRecord>, PlaneError> {
        Ok(self.store.signing_keys()?)
    }

    /// The public keys to publish at `now` (the JWKS document's `keys`).
    pub fn jwks(&self, now: u64) -> Result<JwkSet, PlaneError> {
        let keys = self.store.signing_keys()?;
        Ok(JwkSet {
            keys: model::published_keys(&keys, now)
                .into_iter()
                .map(|k| k.public_jwk.clone())
                .collect(),
        })
    }

    /// The state of each key at `now`, for listing.
    pub fn key_states(&self, now: u64) -> Result<Vec<(SigningKeyRecord, KeyState)>, PlaneError> {
        Ok(self
            .store
            .signing_keys()?
            .into_iter()
            .map(|k| {
                let state = k.state(now);
                (k, state)
            })
            .collect())
    }
}

/// A new key pair: its public JWK and the private key's bytes.
pub(super) fn generate_key(alg: Alg, kid: &str) -> Result<(Jwk, Vec<u8>), PlaneError> {
    let encode = |bytes: &[u8]| {
        Base64UrlSafeNoPadding::encode_to_string(bytes)
            .map_err(|e| PlaneError::Signing(e.to_string()))
    };
    Ok(match alg {
        Alg::EdDSA => {
            let pair = Ed25519KeyPair::generate();
            let jwk = Jwk {
                kty: "OKP".into(),
                kid: Some(kid.into()),
                alg: Some("EdDSA".into()),
                use_: Some("sig".into()),
                crv: Some("Ed25519".into()),
                x: Some(encode(&pair.public_key().to_bytes())?),
                y: None,
                k: None,
                allow_symmetric: false,
            };
            (jwk, pair.to_bytes())
        }
        Alg::ES256 => {
            let pair = ES256KeyPair::generate();
            let point = pair.public_key().public_key().to_bytes_uncompressed();
            // SEC1 uncompressed: 0x04, then x and y, 32 bytes each.
            let (x, y) = point
                .get(1..33)
                .zip(point.get(33..65))
                .ok_or_else(|| PlaneError::Signing("unexpected P-256 point".into()))?;
            let jwk = Jwk {
                kty: "EC".into(),
                kid: Some(kid.into()),
                alg: Some("ES256".into()),
                use_: Some("sig".into()),
                crv: Some("P-256".into()),
                x: Some(encode(x)?),
                y: Some(encode(y)?),
                k: None,
                allow_symmetric: false,
            };
            (jwk, pair.to_bytes())
        }
    })
}
