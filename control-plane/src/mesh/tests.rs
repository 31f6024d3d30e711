use tokenward_filter::config::{ProviderConfig, ProviderStyle};
use tokenward_filter::policy::Policy;

use super::*;

fn config() -> Config {
    let provider = |name: &str, authority: &str, credential: CredentialSource| ProviderConfig {
        name: name.into(),
        style: ProviderStyle::Openai,
        cluster: name.into(),
        authority: authority.into(),
        credential,
        headers: Default::default(),
    };
    Config {
        version: Some("v1".into()),
        providers: vec![
            provider(
                "openai",
                "api.openai.com",
                CredentialSource::Env("OPENAI_API_KEY".into()),
            ),
            provider(
                "local",
                "llm.internal:8443",
                CredentialSource::Inline("k".into()),
            ),
        ],
        ..tokenward_filter::testing::bare_config("https://cp.test", "gw")
    }
}

fn settings() -> MeshSettings {
    MeshSettings {
        wasm_url: "oci://ghcr.io/example/tokenward:0.1.0".into(),
        namespace: "ai-egress".into(),
        host: "ai.internal".into(),
        pull: None,
    }
}

fn pull_settings(url: &str) -> MeshSettings {
    MeshSettings {
        pull: Some(PullSettings {
            url: url.into(),
            credential: CredentialSource::Env("TOKENWARD_PROXY_CREDENTIAL".into()),
            max_staleness_seconds: 120,
            trust_anchor: JwkSet::default(),
        }),
        ..settings()
    }
}

/// The bootstrap a plugin configuration holds, read by the filter's own loader.
fn assert_bootstrap(plugin: &Value, cluster: &str) {
    let bytes = serde_json::to_vec(plugin).unwrap();
    match tokenward_filter::sync::PluginConfig::load(&bytes, &|_| Some("twp".into())).unwrap() {
        tokenward_filter::sync::PluginConfig::Bootstrap(sync) => {
            assert_eq!(sync.cluster, cluster);
            assert_eq!(sync.max_staleness_ms, 120_000);
        }
        tokenward_filter::sync::PluginConfig::Full(_) => panic!("not a bootstrap: {plugin}"),
    }
}

fn kinds(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap().to_string())
        .collect()
}

fn item<'a>(list: &'a Value, kind: &str, name: &str) -> &'a Value {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == kind && i["metadata"]["name"] == name)
        .unwrap()
}

#[test]
fn istio_gets_the_plugin_fail_closed_and_a_route_per_provider() {
    let list = istio(&config(), &settings()).unwrap();
    assert_eq!(
        kinds(&list),
        [
            "WasmPlugin",
            "Gateway",
            "ServiceEntry",
            "DestinationRule",
            "ServiceEntry",
            "DestinationRule",
            "VirtualService"
        ]
    );
    let plugin = item(&list, "WasmPlugin", "tokenward");
    assert_eq!(plugin["spec"]["failStrategy"], "FAIL_CLOSE");
    assert_eq!(
        plugin["spec"]["vmConfig"]["env"],
        json!([{"name": "OPENAI_API_KEY", "valueFrom": "HOST"}])
    );
    let embedded = serde_json::to_vec(&plugin["spec"]["pluginConfig"]).unwrap();
    Policy::from_json(&embedded, &|_| Some("k".into()))
        .expect("the embedded configuration is the filter's own");
    let rule = item(&list, "DestinationRule", "tokenward-local");
    assert_eq!(
        rule["spec"]["trafficPolicy"]["portLevelSettings"][0]["port"]["number"],
        8443
    );
    assert_eq!(
        rule["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["subjectAltNames"],
        json!(["llm.internal"])
    );
    let routes = &item(&list, "VirtualService", "tokenward")["spec"]["http"];
    assert_eq!(
        routes[0]["match"][0]["headers"][CLUSTER_HEADER]["exact"],
        "openai"
    );
    assert_eq!(
        routes[0]["headers"]["request"]["remove"],
        json!([CLUSTER_HEADER])
    );
    assert_eq!(
        routes[2]["directResponse"]["status"], 404,
        "anything else is not routed"
    );
}

#[test]
fn envoy_gateway_gets_the_policy_fail_closed_and_a_rule_per_provider() {
    let list = envoy_gateway(&config(), &settings()).unwrap();
    assert_eq!(
        kinds(&list),
        [
            "Backend",
            "BackendTLSPolicy",
            "Backend",
            "BackendTLSPolicy",
            "HTTPRoute",
            "EnvoyExtensionPolicy"
        ]
    );
    let policy = item(&list, "EnvoyExtensionPolicy", "tokenward");
    let wasm = &policy["spec"]["wasm"][0];
    assert_eq!(wasm["failOpen"], false);
    assert_eq!(
        wasm["code"]["image"]["url"],
        "ghcr.io/example/tokenward:0.1.0"
    );
    assert_eq!(wasm["env"]["hostKeys"], json!(["OPENAI_API_KEY"]));
    Policy::from_json(&serde_json::to_vec(&wasm["config"]).unwrap(), &|_| {
        Some("k".into())
    })
    .unwrap();
    let route = item(&list, "HTTPRoute", "tokenward");
    let rule = &route["spec"]["rules"][1];
    assert_eq!(rule["matches"][0]["headers"][0]["value"], "local");
    assert_eq!(rule["backendRefs"][0]["port"], 8443);
    assert_eq!(
        rule["filters"][0]["requestHeaderModifier"]["remove"],
        json!([CLUSTER_HEADER])
    );
    assert_eq!(
        item(&list, "BackendTLSPolicy", "tokenward-openai")["spec"]["validation"]["hostname"],
        "api.openai.com"
    );
}

#[test]
fn istio_pull_mode_gets_a_bootstrap_and_the_control_planes_service() {
    let list = istio(&config(), &pull_settings("https://cp.example.com:8443")).unwrap();
    let plugin = item(&list, "WasmPlugin", "tokenward");
    assert_bootstrap(
        &plugin["spec"]["pluginConfig"],
        "outbound|8443||cp.example.com",
    );
    assert_eq!(
        plugin["spec"]["vmConfig"]["env"],
        json!([
            {"name": "OPENAI_API_KEY", "valueFrom": "HOST"},
            {"name": "TOKENWARD_PROXY_CREDENTIAL", "valueFrom": "HOST"}
        ])
    );
    let entry = item(&list, "ServiceEntry", "tokenward-control-plane");
    assert_eq!(entry["spec"]["location"], "MESH_EXTERNAL");
    let rule = item(&list, "DestinationRule", "tokenward-control-plane");
    assert_eq!(
        rule["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["sni"],
        "cp.example.com"
    );
    // A control plane inside the cluster is already a mesh service: no ServiceEntry.
    let list = istio(
        &config(),
        &pull_settings("http://tokenward.tokenward.svc:8080"),
    )
    .unwrap();
    assert_bootstrap(
        &item(&list, "WasmPlugin", "tokenward")["spec"]["pluginConfig"],
        "outbound|8080||tokenward.tokenward.svc.cluster.local",
    );
    assert!(!list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["metadata"]["name"] == "tokenward-control-plane"));
    assert!(istio(&config(), &pull_settings("cp.example.com")).is_err());
}

#[test]
fn envoy_gateway_pull_mode_patches_in_the_channels_cluster() {
    let list = envoy_gateway(&config(), &pull_settings("https://cp.example.com")).unwrap();
    let wasm = &item(&list, "EnvoyExtensionPolicy", "tokenward")["spec"]["wasm"][0];
    assert_bootstrap(&wasm["config"], SYNC_CLUSTER);
    let patch = &item(&list, "EnvoyPatchPolicy", "tokenward-sync")["spec"]["jsonPatches"][0];
    assert_eq!(patch["name"], SYNC_CLUSTER);
    let cluster = &patch["operation"]["value"];
    assert_eq!(
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]["port_value"],
        443
    );
    assert_eq!(
        cluster["transport_socket"]["typed_config"]["sni"],
        "cp.example.com"
    );
}
