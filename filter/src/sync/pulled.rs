//! Pull mode: the driving worker long-polls the control plane for the configuration,
//! verifies the control plane's signature on it (keys of the bootstrap's trust anchor or of
//! the configuration in force), compiles it as `on_configure` would, and only then leaves it
//! in shared data for the other workers, each of which copies it once per change. The
//! last good configuration stays in force while the control plane is away, up to the
//! maximum staleness; after it, every request is refused (fail closed).

use std::collections::HashSet;

use super::{
    stat, Answer, Apply, Call, ConfigSignature, RefusedConfig, SyncHost, SyncSettings, CONFIG_PATH,
    POLL_WAIT_SECONDS, REVISION_HEADER, SIGNATURE_AUDIENCE, SIGNATURE_HEADER,
};
use crate::auth::keys::{ClaimRules, Jws, VerificationKey};
use crate::policy::Policy;
use crate::quota::counter::{SharedStore, MAX_CAS_ATTEMPTS};
use crate::quoted::Quoted;

/// The configuration the driving worker verified, and what is known of it: `<contact_ms>
/// <revision> <version>` (small: every worker reads it every tick).
const HEAD: &str = "tokenward.sync.head";
const CONFIG: &str = "tokenward.sync.config";

/// Signatures a configuration may carry (one per published key).
const MAX_SIGNATURES: usize = 8;
/// A signature older than this is refused: a recorded answer cannot be replayed for long.
const CLOCK_SKEW_SECONDS: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    contact_ms: u64,
    revision: u64,
    version: String,
}

impl Head {
    fn parse(bytes: &[u8]) -> Option<Head> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, ' ');
        Some(Head {
            contact_ms: parts.next()?.parse().ok()?,
            revision: parts.next()?.parse().ok()?,
            version: parts.next()?.to_string(),
        })
    }

    fn encode(&self) -> String {
        format!("{} {} {}", self.contact_ms, self.revision, self.version)
    }
}

/// A worker's view of the pulled configuration.
#[derive(Debug, Default)]
pub(super) struct PulledState {
    /// The version this worker has in force.
    applied: Option<String>,
    /// The last version the control plane sent, good or not: what the next poll names.
    seen: Option<String>,
    refused: Option<RefusedConfig>,
    stale: bool,
}

#[allow(clippy::large_enum_variant)]
pub(super) enum Outcome {
    /// The control plane answered.
    Polled(Apply),
    /// No answer, an error, or a configuration that is not the control plane's.
    Failed,
}

impl PulledState {
    pub(super) fn refused(&self) -> Option<RefusedConfig> {
        self.refused.clone()
    }

    /// Every worker, every tick: the configuration in shared data, if newer than this
    /// worker's; refusal once it is older than the maximum staleness.
    pub(super) fn follow(
        &mut self,
        host: &dyn SyncHost,
        settings: &SyncSettings,
        now_ms: u64,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Apply {
        let store = host.store();
        let Some(head) = read_head(store) else {
            return Apply::Keep;
        };
        let since = now_ms.saturating_sub(head.contact_ms);
        host.gauge(stat::SECONDS_SINCE_CONTACT, since / 1000);
        if settings.max_staleness_ms > 0 && since > settings.max_staleness_ms {
            if self.stale {
                return Apply::Keep;
            }
            log::error!(
                "no answer from the control plane for {} s (max_staleness_seconds {}): every request is refused until it answers",
                since / 1000,
                settings.max_staleness_ms / 1000
            );
            self.stale = true;
            self.applied = None;
            host.gauge(stat::STALE, 1);
            return Apply::Stale;
        }
        if self.stale {
            log::info!("the control plane answers again");
            self.stale = false;
            host.gauge(stat::STALE, 0);
        }
        if self.applied.as_deref() == Some(head.version.as_str()) {
            return Apply::Keep;
        }
        // The one copy of the configuration this worker makes for this change.
        let bytes = match store.get(CONFIG) {
            Ok(Some((bytes, _))) => bytes,
            _ => return Apply::Keep,
        };
        match Policy::load(&bytes, env) {
            Ok(policy) => {
                self.applied = policy.version.clone();
                self.seen = self.applied.clone();
                Apply::Install(Box::new(policy))
            }
            Err(error) => {
                // Verified and compiled by the driving worker: only the VM's environment
                // differs between workers, and it does not. Not tried again until it changes.
                log::error!(
                    "the pulled configuration {} did not load here: {error}",
                    head.version
                );
                self.applied = Some(head.version);
                Apply::Keep
            }
        }
    }

    /// The long poll: answered at once when the control plane has another version than the
    /// one named, else when it changes or after `POLL_WAIT_SECONDS` (304).
    pub(super) fn poll_call(
        &self,
        settings: &SyncSettings,
        node: &str,
        current: Option<&Policy>,
    ) -> Call {
        let path = format!("{CONFIG_PATH}?wait={POLL_WAIT_SECONDS}");
        let mut headers = settings.headers("GET", &path, node);
        let known = self
            .seen
            .clone()
            .or_else(|| current.and_then(|p| p.version.clone()));
        if let Some(version) = known {
            headers.push(("if-none-match".into(), format!("\"{version}\"")));
        }
        Call {
            cluster: settings.cluster.clone(),
            headers,
            body: None,
            timeout_ms: (POLL_WAIT_SECONDS + 10) * 1000,
        }
    }

    /// The driving worker: the answer to its poll.
    pub(super) fn on_answer(
        &mut self,
        host: &dyn SyncHost,
        settings: &SyncSettings,
        answer: &Answer,
        now_ms: u64,
        current: Option<&Policy>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Outcome {
        match answer.status {
            Some(304) => {
                touch_contact(host.store(), now_ms);
                Outcome::Polled(Apply::Keep)
            }
            Some(200) => self.on_config(host, settings, answer, now_ms, current, env),
            status => {
                log::warn!(
                    "the configuration poll failed ({}); the last configuration stays in force",
                    super::answer_status(status)
                );
                Outcome::Failed
            }
        }
    }

    fn on_config(
        &mut self,
        host: &dyn SyncHost,
        settings: &SyncSettings,
        answer: &Answer,
        now_ms: u64,
        current: Option<&Policy>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Outcome {
        let store = host.store();
        let version = answer
            .header("etag")
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_default();
        let revision = answer.header(REVISION_HEADER).and_then(|r| r.parse().ok());
        let signed = verify_signature(
            settings,
            current,
            answer.header(SIGNATURE_HEADER).unwrap_or(""),
            &answer.body,
            now_ms / 1000,
        );
        let revision = match (signed, revision) {
            (Ok(signed), Some(revision)) if signed == revision => revision,
            (Ok(_), _) => {
                return self.refuse(
                    host,
                    version,
                    "the signature names another revision".into(),
                    None,
                )
            }
            (Err(reason), _) => return self.refuse(host, version, reason, None),
        };
        let head = read_head(store);
        if head.as_ref().is_some_and(|h| revision < h.revision) {
            return self.refuse(
                host,
                version,
                format!("revision {revision} is older than the one in force"),
                None,
            );
        }
        self.seen = Some(version.clone());
        let policy = match Policy::load(&answer.body, env) {
            Ok(policy) => policy,
            Err(error) => return self.refuse(host, version, error.to_string(), Some(now_ms)),
        };
        if policy.version.as_deref() != Some(version.as_str()) {
            return self.refuse(
                host,
                version,
                "the configuration's version is not its ETag".into(),
                Some(now_ms),
            );
        }
        for part in policy.unavailable() {
            log::error!(
                "configuration {version}: {} {} is unavailable: {}",
                part.kind.label(),
                Quoted(&part.name),
                part.reason
            );
        }
        if !write(store, CONFIG, &answer.body) {
            return Outcome::Failed;
        }
        let written = write(
            store,
            HEAD,
            Head {
                contact_ms: now_ms,
                revision,
                version: version.clone(),
            }
            .encode()
            .as_bytes(),
        );
        if !written {
            return Outcome::Failed;
        }
        log::info!("pulled configuration {version} (revision {revision}) applied");
        host.count(stat::CONFIGS_APPLIED, 1);
        self.applied = Some(version);
        self.refused = None;
        Outcome::Polled(Apply::Install(Box::new(policy)))
    }

    /// A configuration that is not taken: the last good one stays. `answered_at`: the control
    /// plane sent it (a configuration this filter cannot load counts as contact; one whose
    /// signature does not verify does not).
    fn refuse(
        &mut self,
        host: &dyn SyncHost,
        version: String,
        reason: String,
        answered_at: Option<u64>,
    ) -> Outcome {
        log::error!(
            "pulled configuration {} refused: {reason}",
            Quoted(&version)
        );
        host.count(stat::CONFIGS_REFUSED, 1);
        self.refused = Some(RefusedConfig {
            version,
            error: reason,
        });
        match answered_at {
            Some(now_ms) => {
                touch_contact(host.store(), now_ms);
                Outcome::Polled(Apply::Keep)
            }
            None => Outcome::Failed,
        }
    }
}

/// Which keys may sign: the bootstrap's trust anchor and the keys of the configuration in
/// force (so a rotation carries over), never a key revoked there. Returns the revision the
/// signature vouches for, once one signature verifies and covers these bytes.
fn verify_signature(
    settings: &SyncSettings,
    current: Option<&Policy>,
    header: &str,
    body: &[u8],
    now: u64,
) -> Result<u64, String> {
    if header.is_empty() {
        return Err("the configuration is not signed".into());
    }
    let revoked: HashSet<&str> = current
        .map(|p| p.credentials.revocations.revoked_key_ids().collect())
        .unwrap_or_default();
    let trusted: Vec<(Option<&str>, &VerificationKey)> = settings
        .trust_anchor
        .iter()
        .map(|(kid, key)| (kid.as_deref(), key))
        .chain(
            current
                .into_iter()
                .flat_map(|p| p.credentials.keys_in_force()),
        )
        .filter(|(kid, _)| kid.is_none_or(|k| !revoked.contains(k)))
        // A shared secret (an HS256 key the operator allowed for tokens) is in every Envoy:
        // whoever holds one of those could sign a configuration. Only public keys vouch.
        .filter(|(_, key)| key.algorithm() != crate::auth::keys::Algorithm::Hs256)
        .collect();
    let digest = hex(&hmac_sha256::Hash::hash(body));
    let mut last_error = String::from("no signature is by a trusted key");
    for token in header.split(',').map(str::trim).take(MAX_SIGNATURES) {
        let Ok(jws) = Jws::parse(token) else {
            last_error = "a signature is not a JWS".into();
            continue;
        };
        let kid = jws.header.kid.as_deref();
        for (_, key) in trusted
            .iter()
            .filter(|(k, _)| kid.is_none() || k.is_none() || *k == kid)
        {
            if jws.header.alg != key.algorithm().name() {
                continue;
            }
            let rules = ClaimRules {
                issuers: None,
                audiences: Some([SIGNATURE_AUDIENCE.to_string()].into()),
                clock_skew_seconds: CLOCK_SKEW_SECONDS,
            };
            match key.verify_with::<ConfigSignature>(&jws, &rules, now) {
                Ok(claims) if claims.custom.sha256 == digest => {
                    return Ok(claims.custom.revision);
                }
                Ok(_) => last_error = "the signature covers other bytes".into(),
                Err(error) => last_error = format!("signature: {error}"),
            }
        }
    }
    Err(last_error)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_head(store: &dyn SharedStore) -> Option<Head> {
    match store.get(HEAD) {
        Ok(Some((bytes, _))) => Head::parse(&bytes),
        _ => None,
    }
}

/// The control plane answered at `now_ms`: the configuration in force is current.
pub(super) fn touch_contact(store: &dyn SharedStore, now_ms: u64) {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Ok(Some((bytes, cas))) = store.get(HEAD) else {
            return;
        };
        let Some(mut head) = Head::parse(&bytes) else {
            return;
        };
        if head.contact_ms >= now_ms {
            return;
        }
        head.contact_ms = now_ms;
        if store
            .compare_and_set(HEAD, head.encode().as_bytes(), Some(cas))
            .unwrap_or(false)
        {
            return;
        }
    }
}

/// Writes a key whatever it held.
fn write(store: &dyn SharedStore, key: &str, value: &[u8]) -> bool {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let cas = match store.get(key) {
            Ok(found) => found.map(|(_, cas)| cas),
            Err(_) => return false,
        };
        match store.compare_and_set(key, value, cas) {
            Ok(true) => return true,
            Ok(false) => continue,
            Err(error) => {
                log::error!("shared data refused {key}: {error}");
                return false;
            }
        }
    }
    false
}
