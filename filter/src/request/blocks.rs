//! The guard on the request path (docs/guard.md): refuses a blocked client address or
//! credential before its signature is checked, and counts each failed authentication. The
//! client's address is read from the host only when needed (a cache miss, a failure, or a
//! block somewhere in this Envoy); the counting itself is `guard`'s.

use crate::error::{ErrorCode, Refusal};
use crate::guard::{self, GuardSettings, SourceKind};
use crate::host::Host;

use super::Worker;

/// Stats of the guard.
pub mod stat {
    /// Credentials that reached the API-key lookup or the JWT signature check (cache misses
    /// let through): what a burst of bad tokens costs when it is not stopped.
    pub const VERIFICATIONS: &str = "tokenward.auth.verifications";
    /// Blocks started, by kind.
    pub fn blocked(kind: &str) -> String {
        format!("tokenward.guard.blocked.{kind}")
    }
    /// Shared-data operations of the guard that failed: the request went on unguarded.
    pub const STORE_ERRORS: &str = "tokenward.guard.store_errors";
}

/// The client of one request as the guard sees it.
pub(super) struct Source<'h, H: Host> {
    host: &'h H,
    settings: &'h GuardSettings,
    /// The client's IP once read: `Some(None)` when unknown or exempt.
    address: Option<Option<String>>,
}

impl<'h, H: Host> Source<'h, H> {
    pub(super) fn new(host: &'h H, settings: &'h GuardSettings) -> Self {
        Source {
            host,
            settings,
            address: None,
        }
    }

    /// The client's IP, read once; `None` when Envoy names none or it is exempt.
    fn address(&mut self) -> Option<&str> {
        if self.address.is_none() {
            let ip = self
                .host
                .source_address()
                .map(|raw| client_ip(&raw).to_string())
                .filter(|ip| !ip.is_empty() && !self.settings.exempts(ip));
            self.address = Some(ip);
        }
        self.address.as_ref().and_then(Option::as_deref)
    }

    /// Refuses the request if its address (and, given one, its credential's fingerprint) is
    /// blocked. A store that cannot be read lets the request go on: authentication still
    /// decides, and the guard must not turn a shared-data fault into refusals.
    pub(super) fn refuse_if_blocked(
        &mut self,
        fingerprint: Option<&str>,
        now: u64,
        events: &mut Vec<String>,
    ) -> Result<(), Refusal> {
        let store = self.host.store();
        let address = self.address().map(str::to_string);
        let checks = [
            (SourceKind::Address, address.as_deref()),
            (SourceKind::Credential, fingerprint),
        ];
        for (kind, value) in checks {
            let Some(value) = value else { continue };
            match guard::blocked_until(store, kind, value, now) {
                Ok(Some(until)) => return Err(blocked(kind, until, now)),
                Ok(None) => {}
                Err(error) => {
                    log::warn!("the guard could not read shared data: {error}");
                    events.push(stat::STORE_ERRORS.to_string());
                }
            }
        }
        Ok(())
    }

    /// Counts a failed authentication against the address and, when the credential was
    /// there to fingerprint, against it; a block that starts is logged once, announced to
    /// every worker and queued for the control plane.
    pub(super) fn note_failure(
        &mut self,
        worker: &Worker,
        fingerprint: Option<&str>,
        now: u64,
        events: &mut Vec<String>,
    ) {
        let settings = self.settings;
        let address = self.address().map(str::to_string);
        let store = self.host.store();
        let counts = [
            (SourceKind::Address, address.as_deref()),
            (SourceKind::Credential, fingerprint),
        ];
        for (kind, value) in counts {
            let Some(value) = value else { continue };
            let block = match guard::record_failure(store, settings, kind, value, now) {
                Ok(Some(block)) => block,
                Ok(None) => continue,
                Err(error) => {
                    log::warn!("the guard could not count a failure: {error}");
                    events.push(stat::STORE_ERRORS.to_string());
                    continue;
                }
            };
            // Never the credential: its short fingerprint and the address name the source.
            log::warn!(
                "guard: {} {} blocked until {} ({} s) after {} failed authentications in {} s (address {}, credential {})",
                kind.label(),
                block.value,
                block.until,
                settings.block_seconds,
                block.failures,
                settings.window_seconds,
                address.as_deref().unwrap_or("unknown"),
                fingerprint.unwrap_or("none"),
            );
            events.push(stat::blocked(kind.label()));
            worker.note_block_until(block.until);
            if let Err(error) = guard::announce(store, &block) {
                log::warn!("the guard could not share a block: {error}");
                events.push(stat::STORE_ERRORS.to_string());
            }
        }
    }
}

/// The refusal of a blocked source: 429 with the seconds left.
fn blocked(kind: SourceKind, until: u64, now: u64) -> Refusal {
    let left = until.saturating_sub(now).max(1);
    let whom = match kind {
        SourceKind::Address => "this client address",
        SourceKind::Credential => "this credential",
    };
    Refusal::new(
        ErrorCode::TemporarilyBlocked,
        format!("too many failed authentications from {whom}; retry in {left} seconds"),
    )
    .with_headers(vec![("retry-after".to_string(), left.to_string())])
}

/// The IP of Envoy's `source.address` (`ip:port`, `[v6]:port`, or a bare IP).
pub(crate) fn client_ip(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(ip, _)| ip);
    }
    match address.rsplit_once(':') {
        // One colon: IPv4 with a port. More: a bare IPv6 address.
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => ip,
        _ => address,
    }
}

#[cfg(test)]
mod tests;
