//! The control plane's ADS stream state machine (`xds::stream::StreamState`), driven by a
//! fuzzer-chosen sequence of client requests (subscriptions, ACKs, NACKs, stale and bogus
//! nonces, reconnect versions) and snapshot changes, next to a model of what the protocol
//! asks of it. Checked at every step: responses and verdicts are exactly the model's
//! (ACK/NACK only for the last nonce sent, stale nonces ignored, no needless push, a change
//! is pushed), nonces are never reused, a NACKed version is never sent again, resources are
//! those of the snapshot the subscription names, and clusters go before what names them.
#![no_main]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use libfuzzer_sys::fuzz_target;
use tokenward_fuzz::ads_stream::{Request, Response, Snapshot, StreamState, TypeSnapshot, Verdict};
use tokenward_fuzz::choices::Choices;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ECDS: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const TYPES: [&str; 3] = [CDS, ECDS, RDS];
const NAMES: [&str; 4] = ["a", "b", "c", "*"];
/// Which of a, b, c each version holds: versions are content hashes, so a version always
/// means the same resources.
const VERSION_CONTENT: [u8; 6] = [0b011, 0b110, 0b101, 0b111, 0b001, 0b000];

fn type_snapshot(version: usize) -> TypeSnapshot<String> {
    let version_name = format!("v{version}");
    let mask = VERSION_CONTENT[version % VERSION_CONTENT.len()];
    TypeSnapshot {
        resources: NAMES[..3]
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, n)| (n.to_string(), format!("{n}@{version_name}")))
            .collect(),
        version: version_name,
    }
}

/// What the protocol says one type's subscription on this stream is.
#[derive(Debug, Default)]
struct Model {
    /// A request for the type was accepted (a stale one does not subscribe).
    subscribed: bool,
    names: Vec<String>,
    sent: Option<(String, String)>,
    current: Option<String>,
    nacked: HashSet<String>,
}

struct Harness {
    state: StreamState,
    snapshot: Snapshot<String>,
    models: HashMap<&'static str, Model>,
    nonces: BTreeSet<u64>,
    /// Every nonce this stream sent, to replay old ones.
    history: Vec<(String, String)>,
}

impl Harness {
    /// Whether the model expects a response for `type_url` now, and with which resources.
    fn expected(&self, type_url: &str, names_changed: bool) -> Option<(String, BTreeSet<String>)> {
        let typed = self.snapshot.types.get(type_url)?;
        let model = self.models.get(type_url).filter(|m| m.subscribed)?;
        let wildcard = model.names.is_empty() || model.names.iter().any(|n| n == "*");
        let resources: BTreeSet<String> = typed
            .resources
            .iter()
            .filter(|(name, _)| wildcard || model.names.contains(name))
            .map(|(_, r)| r.clone())
            .collect();
        if !wildcard && resources.is_empty() {
            return None;
        }
        if model.nacked.contains(&typed.version) {
            return None;
        }
        let unchanged = model.current.as_ref() == Some(&typed.version)
            || model
                .sent
                .as_ref()
                .is_some_and(|(v, _)| *v == typed.version);
        if unchanged && !names_changed {
            return None;
        }
        Some((typed.version.clone(), resources))
    }

    /// Checks a response the state machine sent against the model's expectation, and
    /// records it.
    fn check_response(
        &mut self,
        response: &Response<String>,
        expected: Option<(String, BTreeSet<String>)>,
    ) {
        let Some((version, resources)) = expected else {
            panic!("unexpected response {response:?}");
        };
        assert_eq!(response.version, version, "version");
        let got: BTreeSet<String> = response.resources.iter().cloned().collect();
        assert_eq!(got, resources, "resources of {}", response.type_url);
        let nonce: u64 = match response.nonce.parse() {
            Ok(n) => n,
            Err(_) => panic!("nonce {:?} is not a counter", response.nonce),
        };
        assert!(
            self.nonces.last().is_none_or(|&last| nonce > last),
            "nonce reused or went back"
        );
        self.nonces.insert(nonce);
        let Some(model) = self.models.get_mut(response.type_url.as_str()) else {
            panic!(
                "response for a type nobody asked for: {}",
                response.type_url
            );
        };
        assert!(
            !model.nacked.contains(&response.version),
            "resent a NACKed version"
        );
        model.sent = Some((response.version.clone(), response.nonce.clone()));
        self.history
            .push((response.version.clone(), response.nonce.clone()));
    }

    fn request(&mut self, choices: &mut Choices) {
        let type_url = TYPES[choices.below(TYPES.len())];
        let model = self.models.entry(type_url).or_default();
        let sent = model.sent.clone();
        let pick = |choices: &mut Choices, from: &[Option<String>]| {
            from.get(choices.below(from.len()))
                .cloned()
                .flatten()
                .unwrap_or_default()
        };
        let old = self
            .history
            .get(choices.below(self.history.len().max(1)))
            .cloned();
        let nonce = pick(
            choices,
            &[
                None,
                sent.as_ref().map(|(_, n)| n.clone()),
                sent.as_ref().map(|(_, n)| n.clone()),
                old.as_ref().map(|(_, n)| n.clone()),
                Some("999999".into()),
            ],
        );
        let any_version = format!("v{}", choices.below(VERSION_CONTENT.len()));
        let version = pick(
            choices,
            &[
                None,
                sent.as_ref().map(|(v, _)| v.clone()),
                old.as_ref().map(|(v, _)| v.clone()),
                Some(any_version),
            ],
        );
        let mask = choices.byte();
        let names: Vec<String> = NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, n)| n.to_string())
            .collect();
        let error = (choices.byte() & 3 == 0).then(|| "refused".to_string());
        let request = Request {
            type_url: type_url.to_string(),
            version_info: version.clone(),
            response_nonce: nonce.clone(),
            resource_names: names.clone(),
            error: error.clone(),
        };
        let (response, verdict) = self.state.on_request(&request, &self.snapshot);

        // The model's view of the same request.
        let mut expected_verdict = None;
        if !nonce.is_empty() {
            let fresh = sent.as_ref().filter(|(_, n)| *n == nonce);
            let Some((sent_version, _)) = fresh else {
                assert_eq!(
                    (&response, &verdict),
                    (&None, &None),
                    "a stale nonce was answered"
                );
                return;
            };
            let model = self.models.entry(type_url).or_default();
            expected_verdict = Some(match error {
                Some(error) => {
                    model.nacked.insert(sent_version.clone());
                    Verdict::Nack {
                        type_url: type_url.into(),
                        version: sent_version.clone(),
                        error,
                    }
                }
                None => {
                    model.current = Some(version.clone());
                    Verdict::Ack {
                        type_url: type_url.into(),
                        version: version.clone(),
                    }
                }
            });
        } else if !version.is_empty() {
            self.models.entry(type_url).or_default().current = Some(version.clone());
        }
        assert_eq!(verdict, expected_verdict, "verdict");
        let model = self.models.entry(type_url).or_default();
        let names_changed = model.subscribed && model.names != names;
        model.subscribed = true;
        model.names = names;
        let expected = self.expected(type_url, names_changed);
        match response {
            Some(response) => {
                assert_eq!(response.type_url, type_url, "response for another type");
                self.check_response(&response, expected);
            }
            None => assert_eq!(expected, None, "no response where one was due"),
        }
    }

    fn change_snapshot(&mut self, choices: &mut Choices) {
        let type_url = TYPES[choices.below(TYPES.len())];
        let version = choices.below(VERSION_CONTENT.len() + 1);
        if version == VERSION_CONTENT.len() {
            self.snapshot.types.remove(type_url);
        } else {
            self.snapshot
                .types
                .insert(type_url.to_string(), type_snapshot(version));
        }
        let responses = self.state.on_snapshot(&self.snapshot);
        // Clusters first, then the rest in type order; one response per type at most.
        let mut due: Vec<&'static str> = TYPES
            .iter()
            .copied()
            .filter(|t| self.expected(t, false).is_some())
            .collect();
        due.sort_by_key(|t| (!t.ends_with(".Cluster"), *t));
        let sent: Vec<&str> = responses.iter().map(|r| r.type_url.as_str()).collect();
        assert_eq!(sent, due, "pushed types after a snapshot change");
        for response in &responses {
            let expected = self.expected(&response.type_url, false);
            self.check_response(response, expected);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut choices = Choices::new(data);
    let mut harness = Harness {
        state: StreamState::default(),
        snapshot: Snapshot {
            types: BTreeMap::new(),
        },
        models: HashMap::new(),
        nonces: BTreeSet::new(),
        history: Vec::new(),
    };
    for _ in 0..64 {
        if choices.is_empty() {
            break;
        }
        match choices.byte() % 3 {
            0 => harness.change_snapshot(&mut choices),
            _ => harness.request(&mut choices),
        }
    }
});
