//! Builds the xDS resources from the rendered filter configuration, pure: the Wasm filter's
//! configuration as an ECDS resource (the same `vm_config` every time, so Envoy reuses the
//! VMs and the quota counters in shared data), a cluster per provider (TLS to its authority,
//! or a plain address an operator overrides, as tests do) and the route table that turns the
//! filter's `x-tokenward-cluster` header into a cluster. Versions are content hashes.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{
    address, async_data_source, data_source, socket_address, transport_socket, Address,
    AsyncDataSource, DataSource, SocketAddress, TransportSocket, TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, route, route_action, route_match, DirectResponseAction, HeaderMatcher, Route,
    RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, subject_alt_name_matcher, CertificateValidationContext, CommonTlsContext,
    SubjectAltNameMatcher, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::wasm::v3::{
    plugin_config, EnvironmentVariables, FailurePolicy, PluginConfig, VmConfig,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::google::protobuf::{Any, Duration, StringValue};
use prost::Message;
use tokenward_filter::config::Config;

use super::stream::{Snapshot, TypeSnapshot};

pub const ECDS_TYPE: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
pub const CDS_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const RDS_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// The ECDS resource the bootstrap's filter names.
pub const FILTER_NAME: &str = "tokenward";
/// The route configuration the bootstrap's listener asks for.
pub const ROUTE_CONFIG_NAME: &str = "tokenward_routes";
pub const CLUSTER_HEADER: &str = tokenward_filter::CLUSTER_HEADER;

/// What the snapshot needs besides the filter configuration.
#[derive(Debug, Clone, Default)]
pub struct SnapshotSettings {
    /// The module's path on the Envoy host.
    pub wasm_path: String,
    /// Environment variables the Wasm VM may read (provider credentials named by `env`).
    pub env_keys: Vec<String>,
    /// Clusters sent to a plain-HTTP address instead of TLS to the provider's authority.
    pub upstream_overrides: BTreeMap<String, SocketAddr>,
    /// Where the system's CA bundle is on the Envoy host.
    pub ca_bundle: String,
}

/// The resources for `config`.
pub fn build(
    config: &Config,
    settings: &SnapshotSettings,
) -> Result<Snapshot<Any>, serde_json::Error> {
    let json = serde_json::to_string(config)?;
    let mut types = BTreeMap::new();
    types.insert(
        ECDS_TYPE.to_string(),
        typed([(FILTER_NAME.to_string(), filter_config(&json, settings))]),
    );
    let mut clusters = BTreeMap::new();
    for provider in &config.providers {
        clusters.insert(
            provider.cluster.clone(),
            any(
                CDS_TYPE,
                &cluster(&provider.cluster, &provider.authority, settings),
            ),
        );
    }
    types.insert(CDS_TYPE.to_string(), typed(clusters));
    let clusters: Vec<&str> = config
        .providers
        .iter()
        .map(|p| p.cluster.as_str())
        .collect();
    types.insert(
        RDS_TYPE.to_string(),
        typed([(
            ROUTE_CONFIG_NAME.to_string(),
            any(RDS_TYPE, &routes(&clusters)),
        )]),
    );
    Ok(Snapshot { types })
}

/// A type's resources, versioned by the hash of their encoding.
fn typed(resources: impl IntoIterator<Item = (String, Any)>) -> TypeSnapshot<Any> {
    let resources: BTreeMap<String, Any> = resources.into_iter().collect();
    let mut bytes = Vec::new();
    for (name, resource) in &resources {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&resource.value);
    }
    let hash = hmac_sha256::Hash::hash(&bytes);
    TypeSnapshot {
        version: hash[..8].iter().map(|b| format!("{b:02x}")).collect(),
        resources,
    }
}

fn any(type_url: &str, message: &impl Message) -> Any {
    Any {
        type_url: type_url.to_string(),
        value: message.encode_to_vec(),
    }
}

/// The Wasm filter with this configuration. Everything but `configuration` is the same in
/// every snapshot (and equal to the bootstrap's fail-closed default), so VMs are reused.
fn filter_config(json: &str, settings: &SnapshotSettings) -> Any {
    let plugin = plugin_config(Some(json), settings);
    any(
        ECDS_TYPE,
        &TypedExtensionConfig {
            name: FILTER_NAME.to_string(),
            typed_config: Some(any(
                "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                &Wasm {
                    config: Some(plugin),
                },
            )),
        },
    )
}

/// The plugin: the configuration (none: every request refused with 503), the module, the VM.
pub fn plugin_config(json: Option<&str>, settings: &SnapshotSettings) -> PluginConfig {
    PluginConfig {
        name: FILTER_NAME.to_string(),
        root_id: FILTER_NAME.to_string(),
        configuration: json.map(|json| {
            any(
                "type.googleapis.com/google.protobuf.StringValue",
                &StringValue {
                    value: json.to_string(),
                },
            )
        }),
        failure_policy: FailurePolicy::FailClosed as i32,
        vm: Some(plugin_config::Vm::VmConfig(VmConfig {
            vm_id: FILTER_NAME.to_string(),
            runtime: "envoy.wasm.runtime.v8".to_string(),
            code: Some(AsyncDataSource {
                specifier: Some(async_data_source::Specifier::Local(DataSource {
                    specifier: Some(data_source::Specifier::Filename(settings.wasm_path.clone())),
                    ..Default::default()
                })),
            }),
            environment_variables: Some(EnvironmentVariables {
                host_env_keys: settings.env_keys.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn cluster(name: &str, authority: &str, settings: &SnapshotSettings) -> Cluster {
    let (host, port, tls, discovery) = match settings.upstream_overrides.get(name) {
        Some(addr) => (
            addr.ip().to_string(),
            u32::from(addr.port()),
            false,
            cluster::DiscoveryType::Static,
        ),
        None => {
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if p.parse::<u32>().is_ok() => {
                    (h.to_string(), p.parse().unwrap_or(443))
                }
                _ => (authority.to_string(), 443),
            };
            (host, port, true, cluster::DiscoveryType::LogicalDns)
        }
    };
    let endpoint = LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: host.clone(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    Cluster {
        name: name.to_string(),
        connect_timeout: Some(Duration {
            seconds: 10,
            nanos: 0,
        }),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(discovery as i32)),
        dns_lookup_family: cluster::DnsLookupFamily::V4Preferred as i32,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![endpoint],
                ..Default::default()
            }],
            ..Default::default()
        }),
        transport_socket: tls.then(|| TransportSocket {
            name: "envoy.transport_sockets.tls".to_string(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(any(
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                &UpstreamTlsContext {
                    sni: host.clone(),
                    common_tls_context: Some(CommonTlsContext {
                        validation_context_type: Some(
                            common_tls_context::ValidationContextType::ValidationContext(
                                CertificateValidationContext {
                                    trusted_ca: Some(DataSource {
                                        specifier: Some(data_source::Specifier::Filename(
                                            settings.ca_bundle.clone(),
                                        )),
                                        ..Default::default()
                                    }),
                                    // A certificate from a trusted CA is not enough:
                                    // it must be the provider's, or its credential goes
                                    // to whoever holds one.
                                    match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                                        san_type: subject_alt_name_matcher::SanType::Dns as i32,
                                        matcher: Some(StringMatcher {
                                            match_pattern: Some(
                                                string_matcher::MatchPattern::Exact(host.clone()),
                                            ),
                                            ..Default::default()
                                        }),
                                        ..Default::default()
                                    }],
                                    ..Default::default()
                                },
                            ),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ))),
        }),
        ..Default::default()
    }
}

/// One route per provider cluster, matched on the filter's header (removed before sending),
/// and a JSON 404 for anything else: the table is the allowlist of clusters.
fn routes(clusters: &[&str]) -> RouteConfiguration {
    let mut routes: Vec<Route> = clusters
        .iter()
        .map(|cluster| Route {
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                headers: vec![HeaderMatcher {
                    name: CLUSTER_HEADER.to_string(),
                    header_match_specifier: Some(
                        header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
                            match_pattern: Some(string_matcher::MatchPattern::Exact(
                                cluster.to_string(),
                            )),
                            ..Default::default()
                        }),
                    ),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            action: Some(route::Action::Route(RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                    cluster.to_string(),
                )),
                timeout: Some(Duration {
                    seconds: 600,
                    nanos: 0,
                }),
                ..Default::default()
            })),
            request_headers_to_remove: vec![CLUSTER_HEADER.to_string()],
            ..Default::default()
        })
        .collect();
    routes.push(Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(route::Action::DirectResponse(DirectResponseAction {
            status: 404,
            body: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(
                    r#"{"error":{"message":"no provider route for this request","type":"not_found_error","param":null,"code":"route_not_found"}}"#.into(),
                )),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    });
    RouteConfiguration {
        name: ROUTE_CONFIG_NAME.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: "providers".into(),
            domains: vec!["*".into()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
