use tokenward_filter::config::{CredentialSource, ProviderConfig, ProviderStyle};

use super::*;

fn config(version: &str) -> Config {
    let provider = |name: &str, authority: &str| ProviderConfig {
        name: name.into(),
        style: ProviderStyle::Openai,
        cluster: name.into(),
        authority: authority.into(),
        credential: CredentialSource::Env("OPENAI_API_KEY".into()),
        headers: Default::default(),
    };
    Config {
        version: Some(version.into()),
        providers: vec![
            provider("openai", "api.openai.com"),
            provider("local", "llm.internal:8443"),
        ],
        ..tokenward_filter::testing::bare_config("https://cp.test", "gw")
    }
}

fn settings() -> SnapshotSettings {
    SnapshotSettings {
        wasm_path: "/etc/envoy/tokenward.wasm".into(),
        env_keys: vec!["OPENAI_API_KEY".into()],
        upstream_overrides: [("local".to_string(), "127.0.0.1:9999".parse().unwrap())].into(),
        ca_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
    }
}

fn plugin(snapshot: &Snapshot<Any>) -> PluginConfig {
    let resource = &snapshot.types[ECDS_TYPE].resources[FILTER_NAME];
    let typed = TypedExtensionConfig::decode(resource.value.as_slice()).unwrap();
    let wasm = Wasm::decode(typed.typed_config.unwrap().value.as_slice()).unwrap();
    wasm.config.unwrap()
}

#[test]
fn the_filter_configuration_round_trips_through_the_filters_parser() {
    let snapshot = build(&config("a"), &settings()).unwrap();
    let plugin = plugin(&snapshot);
    let json = StringValue::decode(plugin.configuration.unwrap().value.as_slice())
        .unwrap()
        .value;
    let policy =
        tokenward_filter::policy::Policy::from_json(json.as_bytes(), &|_| Some("k".into()))
            .unwrap();
    assert_eq!(policy.version.as_deref(), Some("a"));
    assert_eq!(plugin.failure_policy, FailurePolicy::FailClosed as i32);
}

#[test]
fn versions_follow_content_and_the_vm_stays_the_same() {
    let a = build(&config("a"), &settings()).unwrap();
    let a_again = build(&config("a"), &settings()).unwrap();
    let b = build(&config("b"), &settings()).unwrap();
    assert_eq!(a.types[ECDS_TYPE].version, a_again.types[ECDS_TYPE].version);
    assert_ne!(a.types[ECDS_TYPE].version, b.types[ECDS_TYPE].version);
    assert_eq!(
        a.types[CDS_TYPE].version, b.types[CDS_TYPE].version,
        "clusters did not change"
    );
    assert_eq!(
        plugin(&a).vm,
        plugin(&b).vm,
        "the same vm_config: Envoy reuses the VMs"
    );
}

#[test]
fn clusters_use_tls_to_the_authority_unless_overridden_and_routes_are_an_allowlist() {
    let snapshot = build(&config("a"), &settings()).unwrap();
    let clusters = &snapshot.types[CDS_TYPE].resources;
    let openai = Cluster::decode(clusters["openai"].value.as_slice()).unwrap();
    let tls = openai.transport_socket.unwrap();
    assert_eq!(tls.name, "envoy.transport_sockets.tls");
    let Some(transport_socket::ConfigType::TypedConfig(any)) = tls.config_type else {
        panic!("a typed TLS config")
    };
    let context = UpstreamTlsContext::decode(any.value.as_slice()).unwrap();
    assert_eq!(context.sni, "api.openai.com");
    let Some(common_tls_context::ValidationContextType::ValidationContext(validation)) =
        context.common_tls_context.unwrap().validation_context_type
    else {
        panic!("a validation context")
    };
    let san = &validation.match_typed_subject_alt_names[0];
    assert_eq!(san.san_type, subject_alt_name_matcher::SanType::Dns as i32);
    assert_eq!(
        san.matcher.as_ref().unwrap().match_pattern,
        Some(string_matcher::MatchPattern::Exact("api.openai.com".into())),
        "the certificate must name the provider"
    );
    let local = Cluster::decode(clusters["local"].value.as_slice()).unwrap();
    assert!(
        local.transport_socket.is_none(),
        "overridden: plain HTTP to the given address"
    );
    let routes = RouteConfiguration::decode(
        snapshot.types[RDS_TYPE].resources[ROUTE_CONFIG_NAME]
            .value
            .as_slice(),
    )
    .unwrap();
    let table = &routes.virtual_hosts[0].routes;
    assert_eq!(table.len(), 3, "one per cluster and the 404");
    assert_eq!(table[0].request_headers_to_remove, [CLUSTER_HEADER]);
    assert!(
        matches!(table[2].action, Some(route::Action::DirectResponse(ref d)) if d.status == 404)
    );
}
