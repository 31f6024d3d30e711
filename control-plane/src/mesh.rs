//! The filter's configuration as Kubernetes manifests for meshes that run Envoy: Istio (a
//! WasmPlugin on the egress gateway, with a ServiceEntry, DestinationRule and route per
//! provider) and Envoy Gateway (an EnvoyExtensionPolicy on an HTTPRoute, with a Backend and
//! TLS policy per provider). Pure: rendered from the same `Config` as every other output, so
//! providers and their routes in the mesh follow the control plane. Output is a Kubernetes
//! `List` in JSON, which `kubectl apply -f` takes as it is.

use serde_json::{json, Value};
use tokenward_filter::config::{
    default_report_interval, Bootstrap, Config, CredentialSource, JwkSet, SyncConfig,
};
use tokenward_filter::CLUSTER_HEADER;

/// Where the module is and where the manifests go.
#[derive(Debug, Clone)]
pub struct MeshSettings {
    /// The module as the mesh fetches it: `oci://…` or `https://…`.
    pub wasm_url: String,
    pub namespace: String,
    /// The host clients call (Istio: the egress gateway's; Envoy Gateway: the HTTPRoute's).
    pub host: String,
    /// Pull mode: the plugin configuration is a bootstrap, the filter fetches the rest.
    pub pull: Option<PullSettings>,
}

/// What a pull-mode bootstrap names: the control plane as the mesh reaches it, the proxy
/// credential, and the keys that sign the configuration today.
#[derive(Debug, Clone)]
pub struct PullSettings {
    /// `https://host[:port]` (or `http://` inside a mesh that encrypts itself).
    pub url: String,
    pub credential: CredentialSource,
    pub max_staleness_seconds: u64,
    pub trust_anchor: JwkSet,
}

/// The control plane's address, parsed from `PullSettings::url`.
struct SyncTarget {
    host: String,
    port: u16,
    tls: bool,
}

impl SyncTarget {
    fn parse(url: &str) -> Result<SyncTarget, anyhow::Error> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            anyhow::bail!(
                "--sync-url {url:?}: give https://host[:port] (or http:// inside the mesh)"
            );
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            anyhow::bail!("--sync-url {url:?}: give the control plane's address only, no path");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host.to_string(),
                port.parse()
                    .map_err(|_| anyhow::anyhow!("--sync-url {url:?}: the port is not a number"))?,
            ),
            None => (authority.to_string(), if tls { 443 } else { 80 }),
        };
        // Istio names a Kubernetes service's cluster by its full name.
        let host = match host.strip_suffix(".svc") {
            Some(short) => format!("{short}.svc.cluster.local"),
            None => host,
        };
        Ok(SyncTarget { host, port, tls })
    }

    fn in_cluster(&self) -> bool {
        self.host.ends_with(".svc.cluster.local")
    }

    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The plugin configuration of pull mode: only the channel.
fn bootstrap(pull: &PullSettings, target: &SyncTarget, cluster: String) -> Value {
    let bootstrap = Bootstrap {
        sync: SyncConfig {
            cluster,
            authority: Some(target.authority()),
            credential: pull.credential.clone(),
            report_interval_ms: default_report_interval(),
            max_staleness_seconds: pull.max_staleness_seconds,
            trust_anchor: pull.trust_anchor.clone(),
        },
    };
    serde_json::to_value(bootstrap).unwrap_or(Value::Null)
}

/// A plain Envoy's bootstrap (pull mode): the plugin configuration, naming the cluster
/// `tokenward_sync`, which the Envoy's own configuration defines (docs/sync.md).
pub fn envoy_bootstrap(pull: &PullSettings) -> anyhow::Result<Value> {
    let target = SyncTarget::parse(&pull.url)?;
    Ok(bootstrap(pull, &target, SYNC_CLUSTER.to_string()))
}

/// The Wasm VM's environment: the providers' keys by variable, and in pull mode the proxy
/// credential's variable.
fn vm_env_keys(config: &Config, settings: &MeshSettings) -> Vec<String> {
    let mut keys = env_keys(config);
    if let Some(PullSettings {
        credential: CredentialSource::Env(var),
        ..
    }) = &settings.pull
    {
        keys.push(var.clone());
    }
    keys
}

const NOT_ROUTED: &str = r#"{"error":{"message":"no provider route for this request","type":"not_found_error","param":null,"code":"route_not_found"}}"#;

/// Environment variables the configuration names for provider credentials: the mesh must give
/// them to the Wasm VM.
fn env_keys(config: &Config) -> Vec<String> {
    config
        .providers
        .iter()
        .filter_map(|p| match &p.credential {
            CredentialSource::Env(var) => Some(var.clone()),
            CredentialSource::Inline(_) => None,
        })
        .collect()
}

fn plugin_config(config: &Config) -> Value {
    serde_json::to_value(config).unwrap_or(Value::Null)
}

fn host_port(authority: &str) -> (String, u16) {
    match authority.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(port) => (host.to_string(), port),
            Err(_) => (authority.to_string(), 443),
        },
        None => (authority.to_string(), 443),
    }
}

/// Istio: the module on the egress gateway (FAIL_CLOSE, before authorization), and for each
/// provider a ServiceEntry, a DestinationRule originating TLS (and checking the certificate's
/// name), and a route matched on the filter's cluster header, which is removed on the way out.
pub fn istio(config: &Config, settings: &MeshSettings) -> anyhow::Result<Value> {
    let ns = &settings.namespace;
    let mut sync_items = Vec::new();
    let plugin = match &settings.pull {
        Some(pull) => {
            let target = SyncTarget::parse(&pull.url)?;
            if !target.in_cluster() {
                sync_items.push(json!({
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "ServiceEntry",
                    "metadata": {"name": "tokenward-control-plane", "namespace": ns},
                    "spec": {
                        "hosts": [target.host],
                        "ports": [{"number": target.port, "name": if target.tls { "https" } else { "http" }, "protocol": if target.tls { "HTTPS" } else { "HTTP" }}],
                        "resolution": "DNS",
                        "location": "MESH_EXTERNAL"
                    }
                }));
            }
            if target.tls {
                sync_items.push(json!({
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "DestinationRule",
                    "metadata": {"name": "tokenward-control-plane", "namespace": ns},
                    "spec": {
                        "host": target.host,
                        "trafficPolicy": {"portLevelSettings": [{
                            "port": {"number": target.port},
                            "tls": {"mode": "SIMPLE", "sni": target.host, "subjectAltNames": [target.host]}
                        }]}
                    }
                }));
            }
            // Istio's name for the cluster of a service host and port.
            let cluster = format!("outbound|{}||{}", target.port, target.host);
            bootstrap(pull, &target, cluster)
        }
        None => plugin_config(config),
    };
    let mut items = vec![json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "tokenward", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"istio": "egressgateway"}},
            "url": settings.wasm_url,
            "phase": "AUTHN",
            "failStrategy": "FAIL_CLOSE",
            "vmConfig": {"env": vm_env_keys(config, settings).iter().map(|k| json!({"name": k, "valueFrom": "HOST"})).collect::<Vec<_>>()},
            "pluginConfig": plugin
        }
    })];
    items.append(&mut sync_items);
    items.push(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "tokenward-egress", "namespace": ns},
        "spec": {
            "selector": {"istio": "egressgateway"},
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [settings.host]}]
        }
    }));
    let mut routes = Vec::new();
    for provider in &config.providers {
        let (host, port) = host_port(&provider.authority);
        items.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": format!("tokenward-{}", provider.cluster), "namespace": ns},
            "spec": {
                "hosts": [host],
                "ports": [{"number": port, "name": "https", "protocol": "HTTPS"}],
                "resolution": "DNS",
                "location": "MESH_EXTERNAL"
            }
        }));
        items.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": format!("tokenward-{}", provider.cluster), "namespace": ns},
            "spec": {
                "host": host,
                "trafficPolicy": {"portLevelSettings": [{
                    "port": {"number": port},
                    "tls": {"mode": "SIMPLE", "sni": host, "subjectAltNames": [host]}
                }]}
            }
        }));
        routes.push(json!({
            "name": provider.cluster,
            "match": [{"headers": {CLUSTER_HEADER: {"exact": provider.cluster}}}],
            "headers": {"request": {"remove": [CLUSTER_HEADER]}},
            "route": [{"destination": {"host": host, "port": {"number": port}}}],
            "timeout": "600s"
        }));
    }
    routes.push(json!({"name": "not-routed", "directResponse": {"status": 404, "body": {"string": NOT_ROUTED}}}));
    items.push(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "tokenward", "namespace": ns},
        "spec": {"hosts": [settings.host], "gateways": ["tokenward-egress"], "http": routes}
    }));
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

/// Envoy Gateway: an HTTPRoute on the Gateway `tokenward` with a rule per provider (matched on
/// the filter's cluster header, removed before sending), a Backend and a BackendTLSPolicy per
/// provider, and the module attached to the route by an EnvoyExtensionPolicy (fail closed).
pub fn envoy_gateway(config: &Config, settings: &MeshSettings) -> anyhow::Result<Value> {
    let ns = &settings.namespace;
    let mut items = Vec::new();
    let plugin = match &settings.pull {
        Some(pull) => {
            let target = SyncTarget::parse(&pull.url)?;
            // Envoy Gateway makes clusters only for routes' backends: the channel's cluster is
            // added to the Gateway's xDS by an EnvoyPatchPolicy (enableEnvoyPatchPolicy must
            // be on in the EnvoyGateway configuration).
            let mut cluster = json!({
                "name": SYNC_CLUSTER,
                "type": "STRICT_DNS",
                "connect_timeout": "5s",
                "load_assignment": {
                    "cluster_name": SYNC_CLUSTER,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": target.host, "port_value": target.port}}}}]}]
                }
            });
            if target.tls {
                cluster["transport_socket"] = json!({
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "sni": target.host,
                        "common_tls_context": {"validation_context": {
                            "trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"},
                            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": target.host}}]
                        }}
                    }
                });
            }
            items.push(json!({
                "apiVersion": "gateway.envoyproxy.io/v1alpha1",
                "kind": "EnvoyPatchPolicy",
                "metadata": {"name": "tokenward-sync", "namespace": ns},
                "spec": {
                    "targetRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "tokenward"},
                    "type": "JSONPatch",
                    "jsonPatches": [{
                        "type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                        "name": SYNC_CLUSTER,
                        "operation": {"op": "add", "path": "", "value": cluster}
                    }]
                }
            }));
            bootstrap(pull, &target, SYNC_CLUSTER.to_string())
        }
        None => plugin_config(config),
    };
    let mut rules = Vec::new();
    for provider in &config.providers {
        let (host, port) = host_port(&provider.authority);
        let name = format!("tokenward-{}", provider.cluster);
        items.push(json!({
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "Backend",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"endpoints": [{"fqdn": {"hostname": host, "port": port}}]}
        }));
        items.push(json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "BackendTLSPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "targetRefs": [{"group": "gateway.envoyproxy.io", "kind": "Backend", "name": name}],
                "validation": {"wellKnownCACertificates": "System", "hostname": host}
            }
        }));
        rules.push(json!({
            "matches": [{"headers": [{"type": "Exact", "name": CLUSTER_HEADER, "value": provider.cluster}]}],
            "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": [CLUSTER_HEADER]}}],
            "backendRefs": [{"group": "gateway.envoyproxy.io", "kind": "Backend", "name": name, "port": port}],
            "timeouts": {"request": "600s"}
        }));
    }
    items.push(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "tokenward", "namespace": ns},
        "spec": {
            "parentRefs": [{"name": "tokenward"}],
            "hostnames": [settings.host],
            "rules": rules
        }
    }));
    items.push(json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyExtensionPolicy",
        "metadata": {"name": "tokenward", "namespace": ns},
        "spec": {
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "tokenward"}],
            "wasm": [{
                "name": "tokenward",
                "rootID": "tokenward",
                "code": {"type": "Image", "image": {"url": settings.wasm_url.trim_start_matches("oci://")}},
                "config": plugin,
                "failOpen": false,
                "env": {"hostKeys": vm_env_keys(config, settings)}
            }]
        }
    }));
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

/// The Envoy Gateway cluster of the sync channel (added by the EnvoyPatchPolicy).
pub const SYNC_CLUSTER: &str = "tokenward_sync";

#[cfg(test)]
mod tests;
