//! The filter's configuration as Kubernetes manifests for meshes that run Envoy: Istio (a
//! WasmPlugin on the egress gateway, with a ServiceEntry, DestinationRule and route per
//! provider) and Envoy Gateway (an EnvoyExtensionPolicy on an HTTPRoute, with a Backend and
//! TLS policy per provider). Pure: rendered from the same `Config` as every other output, so
//! providers and their routes in the mesh follow the control plane. Output is a Kubernetes
//! `List` in JSON, which `kubectl apply -f` takes as it is.

use serde_json::{json, Value};
use tokenward_filter::config::{Config, CredentialSource};
use tokenward_filter::CLUSTER_HEADER;

/// Where the module is and where the manifests go.
#[derive(Debug, Clone)]
pub struct MeshSettings {
    /// The module as the mesh fetches it: `oci://…` or `https://…`.
    pub wasm_url: String,
    pub namespace: String,
    /// The host clients call (Istio: the egress gateway's; Envoy Gateway: the HTTPRoute's).
    pub host: String,
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
pub fn istio(config: &Config, settings: &MeshSettings) -> Value {
    let ns = &settings.namespace;
    let mut items = vec![json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "tokenward", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"istio": "egressgateway"}},
            "url": settings.wasm_url,
            "phase": "AUTHN",
            "failStrategy": "FAIL_CLOSE",
            "vmConfig": {"env": env_keys(config).iter().map(|k| json!({"name": k, "valueFrom": "HOST"})).collect::<Vec<_>>()},
            "pluginConfig": plugin_config(config)
        }
    })];
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
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// Envoy Gateway: an HTTPRoute on the Gateway `tokenward` with a rule per provider (matched on
/// the filter's cluster header, removed before sending), a Backend and a BackendTLSPolicy per
/// provider, and the module attached to the route by an EnvoyExtensionPolicy (fail closed).
pub fn envoy_gateway(config: &Config, settings: &MeshSettings) -> Value {
    let ns = &settings.namespace;
    let mut items = Vec::new();
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
                "config": plugin_config(config),
                "failOpen": false,
                "env": {"hostKeys": env_keys(config)}
            }]
        }
    }));
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

#[cfg(test)]
mod tests;
