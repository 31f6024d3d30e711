use super::*;

const T: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
const C: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

fn snapshot(version: &str, names: &[&str]) -> Snapshot<String> {
    let mut types = BTreeMap::new();
    types.insert(
        T.to_string(),
        TypeSnapshot {
            version: version.into(),
            resources: names
                .iter()
                .map(|n| (n.to_string(), format!("{n}@{version}")))
                .collect(),
        },
    );
    Snapshot { types }
}

fn request(version: &str, nonce: &str, names: &[&str]) -> Request {
    Request {
        type_url: T.into(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        error: None,
    }
}

#[test]
fn the_first_request_gets_the_resources_and_an_ack_is_recorded() {
    let mut stream = StreamState::default();
    let snap = snapshot("v1", &["tokenward"]);
    let (response, verdict) = stream.on_request(&request("", "", &["tokenward"]), &snap);
    let response = response.unwrap();
    assert_eq!(
        (response.version.as_str(), response.resources.as_slice()),
        ("v1", &["tokenward@v1".to_string()][..])
    );
    assert_eq!(verdict, None);
    let (again, verdict) =
        stream.on_request(&request("v1", &response.nonce, &["tokenward"]), &snap);
    assert_eq!(again, None, "nothing new after the ACK");
    assert_eq!(
        verdict,
        Some(Verdict::Ack {
            type_url: T.into(),
            version: "v1".into()
        })
    );
}

#[test]
fn a_new_snapshot_is_pushed_and_a_nacked_version_is_never_resent() {
    let mut stream = StreamState::default();
    let (first, _) = stream.on_request(
        &request("", "", &["tokenward"]),
        &snapshot("v1", &["tokenward"]),
    );
    stream.on_request(
        &request("v1", &first.unwrap().nonce, &["tokenward"]),
        &snapshot("v1", &["tokenward"]),
    );
    let pushed = stream.on_snapshot(&snapshot("v2", &["tokenward"]));
    assert_eq!(pushed.len(), 1);
    let mut nack = request("v1", &pushed[0].nonce, &["tokenward"]);
    nack.error = Some("configuration refused: routes[0]: unknown provider".into());
    let (response, verdict) = stream.on_request(&nack, &snapshot("v2", &["tokenward"]));
    assert_eq!(response, None, "the refused version is not sent again");
    assert!(matches!(verdict, Some(Verdict::Nack { ref version, .. }) if version == "v2"));
    assert!(stream
        .on_snapshot(&snapshot("v2", &["tokenward"]))
        .is_empty());
    let fixed = stream.on_snapshot(&snapshot("v3", &["tokenward"]));
    assert_eq!(fixed[0].version, "v3", "a new version is sent again");
}

#[test]
fn a_stale_nonce_is_ignored() {
    let mut stream = StreamState::default();
    let (first, _) = stream.on_request(
        &request("", "", &["tokenward"]),
        &snapshot("v1", &["tokenward"]),
    );
    let second = stream.on_snapshot(&snapshot("v2", &["tokenward"]));
    assert_ne!(first.as_ref().unwrap().nonce, second[0].nonce);
    let (response, verdict) = stream.on_request(
        &request("v1", &first.unwrap().nonce, &["tokenward"]),
        &snapshot("v2", &["tokenward"]),
    );
    assert_eq!((response, verdict), (None, None));
}

/// Found by the `ads_stream` fuzz target: a request whose nonce this stream never sent was
/// ignored, but left a wildcard subscription behind that the next snapshot answered with
/// every resource of the type.
#[test]
fn a_stale_nonce_subscribes_to_nothing() {
    let mut stream = StreamState::default();
    let mut stale = request("", "7", &["tokenward"]);
    stale.error = Some("refused".into());
    let (response, verdict) = stream.on_request(&stale, &snapshot("v1", &["tokenward"]));
    assert_eq!((response, verdict), (None, None));
    assert!(
        stream
            .on_snapshot(&snapshot("v2", &["tokenward", "other"]))
            .is_empty(),
        "nothing is pushed to a type no valid request subscribed to"
    );
    let (response, _) = stream.on_request(
        &request("", "", &["tokenward"]),
        &snapshot("v2", &["tokenward", "other"]),
    );
    assert_eq!(response.unwrap().resources, ["tokenward@v2"]);
}

#[test]
fn a_reconnecting_client_with_the_current_version_gets_no_push() {
    let mut stream = StreamState::default();
    let (response, _) = stream.on_request(
        &request("v1", "", &["tokenward"]),
        &snapshot("v1", &["tokenward"]),
    );
    assert_eq!(response, None);
    let (response, _) = StreamState::default().on_request(
        &request("v0", "", &["tokenward"]),
        &snapshot("v1", &["tokenward"]),
    );
    assert_eq!(
        response.unwrap().version,
        "v1",
        "an older version is replaced"
    );
}

#[test]
fn a_subscription_to_a_resource_that_does_not_exist_yet_is_answered_when_it_appears() {
    let mut stream = StreamState::default();
    let (response, _) = stream.on_request(&request("", "", &["tokenward"]), &snapshot("v0", &[]));
    assert_eq!(response, None);
    let pushed = stream.on_snapshot(&snapshot("v1", &["tokenward"]));
    assert_eq!(pushed[0].resources, ["tokenward@v1"]);
}

#[test]
fn types_are_independent_and_wildcards_get_everything() {
    let mut stream = StreamState::default();
    let mut snap = snapshot("v1", &["tokenward"]);
    snap.types.insert(
        C.into(),
        TypeSnapshot {
            version: "c1".into(),
            resources: [
                ("openai".to_string(), "openai".to_string()),
                ("anthropic".to_string(), "anthropic".to_string()),
            ]
            .into(),
        },
    );
    let wildcard = Request {
        type_url: C.into(),
        ..Request::default()
    };
    let (clusters, _) = stream.on_request(&wildcard, &snap);
    assert_eq!(clusters.unwrap().resources.len(), 2);
    let (filter, _) = stream.on_request(&request("", "", &["tokenward"]), &snap);
    assert_eq!(filter.unwrap().type_url, T);
    // A type nobody asked for is never pushed.
    let mut other = StreamState::default();
    assert!(other.on_snapshot(&snap).is_empty());
}

#[test]
fn clusters_go_out_before_what_names_them_and_a_star_is_a_wildcard() {
    let mut stream = StreamState::default();
    let mut snap = snapshot("v1", &["tokenward"]);
    snap.types.insert(
        C.into(),
        TypeSnapshot {
            version: "c1".into(),
            resources: [("openai".to_string(), "openai".to_string())].into(),
        },
    );
    stream.on_request(&request("", "", &["tokenward"]), &snap);
    stream.on_request(
        &Request {
            type_url: C.into(),
            resource_names: vec!["*".into()],
            ..Request::default()
        },
        &snap,
    );
    let mut next = snapshot("v2", &["tokenward"]);
    next.types.insert(
        C.into(),
        TypeSnapshot {
            version: "c2".into(),
            resources: [
                ("openai".to_string(), "openai".to_string()),
                ("new".to_string(), "new".to_string()),
            ]
            .into(),
        },
    );
    let pushed = stream.on_snapshot(&next);
    assert_eq!(
        pushed
            .iter()
            .map(|r| r.type_url.as_str())
            .collect::<Vec<_>>(),
        [C, T]
    );
    assert_eq!(
        pushed[0].resources.len(),
        2,
        "\"*\" subscribes to every cluster"
    );
}
