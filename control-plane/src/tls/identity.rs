//! Which Envoy node a client certificate names (pure): the names a certificate carries, read
//! once at the handshake, and the one rule that decides whether an ADS stream may claim a node
//! id. The chain itself is verified by rustls against the client CA before this is asked.

use crate::tls::TlsError;

/// A subject alternative name of a client certificate, as far as node identity goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertName {
    Dns(String),
    Uri(String),
}

impl std::fmt::Display for CertName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertName::Dns(name) => write!(f, "DNS:{name}"),
            CertName::Uri(uri) => write!(f, "URI:{uri}"),
        }
    }
}

/// The DNS and URI subject alternative names of a DER certificate (others are ignored).
pub fn cert_names(der: &[u8]) -> Result<Vec<CertName>, TlsError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    Ok(san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(CertName::Dns(dns.to_string())),
                    GeneralName::URI(uri) => Some(CertName::Uri(uri.to_string())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The URI SAN a certificate carries for node `node_id` in `trust_domain` (what
/// `tokenward tls dev-certs` issues).
pub fn spiffe_id(trust_domain: &str, node_id: &str) -> String {
    format!("spiffe://{trust_domain}/node/{node_id}")
}

/// Whether a certificate with these names may speak for Envoy node `node_id`: one of its URI
/// SANs is `spiffe://<any trust domain>/node/<node id>`, or one of its DNS SANs is the node id.
///
/// Comparison is exact, byte for byte: no case folding (node ids are case-sensitive, and two
/// proxies may differ only by case), no percent-decoding, no wildcards (`*.example` names no
/// node). The subject's common name is not consulted: RFC 6125 retired it as an identity, and
/// a CN is easier to get from a careless CA than a SAN. The trust domain is not checked: the
/// client CA given to `serve` is the trust anchor, so it should sign only Envoys.
pub fn names_node(names: &[CertName], node_id: &str) -> bool {
    if node_id.is_empty() {
        return false;
    }
    names.iter().any(|name| match name {
        CertName::Dns(dns) => !dns.starts_with('*') && dns == node_id,
        CertName::Uri(uri) => uri
            .strip_prefix("spiffe://")
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(trust_domain, path)| {
                !trust_domain.is_empty() && path.strip_prefix("node/") == Some(node_id)
            }),
    })
}
