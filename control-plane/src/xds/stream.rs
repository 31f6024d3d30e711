//! One ADS stream's state machine (state of the world, xDS v3), separate from gRPC so every
//! rule is tested natively: per resource type, what the client subscribed to, what was sent
//! under which nonce, what it ACKed, which versions it NACKed (never sent again), and
//! subscriptions to resources that do not exist yet (answered once they do). A client that
//! reconnects with the current version gets no needless push.

use std::collections::{BTreeMap, HashMap, HashSet};

/// The resources of one type, as the server has them now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeSnapshot<R> {
    pub version: String,
    pub resources: BTreeMap<String, R>,
}

/// Every type the server serves, by type URL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot<R> {
    pub types: BTreeMap<String, TypeSnapshot<R>>,
}

/// A DiscoveryRequest, as far as the state machine cares.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub type_url: String,
    pub version_info: String,
    pub response_nonce: String,
    pub resource_names: Vec<String>,
    /// The client's error when it NACKs.
    pub error: Option<String>,
}

/// A DiscoveryResponse to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Response<R> {
    pub type_url: String,
    pub version: String,
    pub nonce: String,
    pub resources: Vec<R>,
}

/// What the client said about a version we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ack {
        type_url: String,
        version: String,
    },
    Nack {
        type_url: String,
        version: String,
        error: String,
    },
}

#[derive(Debug, Default)]
struct Subscription {
    /// Empty: every resource of the type (a wildcard subscription).
    names: Vec<String>,
    /// The version and nonce of the last response on this stream.
    sent: Option<(String, String)>,
    /// The version the client runs (ACKed, or reported when it connected).
    current: Option<String>,
    nacked: HashSet<String>,
    /// A request for this type came before on this stream.
    seen: bool,
}

#[derive(Debug, Default)]
pub struct StreamState {
    next_nonce: u64,
    subscriptions: HashMap<String, Subscription>,
}

impl StreamState {
    /// Handles one request; returns the response to send now (if any) and what the request
    /// said about the previous response.
    pub fn on_request<R: Clone>(
        &mut self,
        request: &Request,
        snapshot: &Snapshot<R>,
    ) -> (Option<Response<R>>, Option<Verdict>) {
        // A nonce this stream did not send last (an answer to an older response, overtaken
        // by a newer one, or one from another stream) makes the whole request stale: it is
        // ignored, and in particular subscribes to nothing. Creating the subscription first
        // turned such a request into a wildcard subscription that the next snapshot answered.
        let sent = self
            .subscriptions
            .get(&request.type_url)
            .and_then(|sub| sub.sent.clone());
        if !request.response_nonce.is_empty()
            && sent
                .as_ref()
                .is_none_or(|(_, nonce)| *nonce != request.response_nonce)
        {
            return (None, None);
        }
        let sub = self
            .subscriptions
            .entry(request.type_url.clone())
            .or_default();
        let mut verdict = None;
        if let Some((sent_version, _)) = sent.filter(|_| !request.response_nonce.is_empty()) {
            match &request.error {
                Some(error) => {
                    sub.nacked.insert(sent_version.clone());
                    verdict = Some(Verdict::Nack {
                        type_url: request.type_url.clone(),
                        version: sent_version,
                        error: error.clone(),
                    });
                }
                None => {
                    sub.current = Some(request.version_info.clone());
                    verdict = Some(Verdict::Ack {
                        type_url: request.type_url.clone(),
                        version: request.version_info.clone(),
                    });
                }
            }
        } else if !request.version_info.is_empty() {
            // A client that reconnects says what it runs.
            sub.current = Some(request.version_info.clone());
        }
        // A changed subscription needs an answer even at an unchanged version; a client's
        // first request on a stream does not (it may already run the current version).
        let names_changed = sub.seen && sub.names != request.resource_names;
        sub.seen = true;
        sub.names = request.resource_names.clone();
        let response = self.maybe_respond(&request.type_url, snapshot, names_changed);
        (response, verdict)
    }

    /// A new snapshot: a response for every subscribed type whose resources changed, in
    /// make-before-break order: clusters before the routes and filter configuration that
    /// may name them.
    pub fn on_snapshot<R: Clone>(&mut self, snapshot: &Snapshot<R>) -> Vec<Response<R>> {
        let mut types: Vec<String> = self.subscriptions.keys().cloned().collect();
        types.sort_by_key(|t| (!t.ends_with(".Cluster"), t.clone()));
        types
            .into_iter()
            .filter_map(|type_url| self.maybe_respond(&type_url, snapshot, false))
            .collect()
    }

    fn maybe_respond<R: Clone>(
        &mut self,
        type_url: &str,
        snapshot: &Snapshot<R>,
        names_changed: bool,
    ) -> Option<Response<R>> {
        let typed = snapshot.types.get(type_url)?;
        let sub = self.subscriptions.get_mut(type_url)?;
        // No names, or "*", is a wildcard subscription.
        let wildcard = sub.names.is_empty() || sub.names.iter().any(|n| n == "*");
        let resources: Vec<R> = if wildcard {
            typed.resources.values().cloned().collect()
        } else {
            sub.names
                .iter()
                .filter_map(|name| typed.resources.get(name).cloned())
                .collect()
        };
        if !wildcard && resources.is_empty() {
            // Asked for names that do not exist yet: remembered, answered when they do.
            return None;
        }
        if sub.nacked.contains(&typed.version) {
            return None;
        }
        let unchanged = sub.current.as_deref() == Some(typed.version.as_str())
            || sub.sent.as_ref().is_some_and(|(v, _)| *v == typed.version);
        if unchanged && !names_changed {
            return None;
        }
        self.next_nonce += 1;
        let nonce = self.next_nonce.to_string();
        sub.sent = Some((typed.version.clone(), nonce.clone()));
        Some(Response {
            type_url: type_url.to_string(),
            version: typed.version.clone(),
            nonce,
            resources,
        })
    }
}

#[cfg(test)]
mod tests;
