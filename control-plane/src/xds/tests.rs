use super::*;
use crate::tls::identity::CertName;

fn names(node: &str) -> Vec<CertName> {
    vec![CertName::Uri(format!("spiffe://tokenward/node/{node}"))]
}

#[test]
fn a_stream_is_the_node_its_certificate_names() {
    let gw1 = names("gw-1");
    assert_eq!(
        authorize_node(Some(&gw1), "", Some("gw-1")),
        Ok("gw-1".into())
    );
    // Later requests may omit the node (Envoy sends it once) or repeat it.
    assert_eq!(authorize_node(Some(&gw1), "gw-1", None), Ok("gw-1".into()));
    assert_eq!(
        authorize_node(Some(&gw1), "gw-1", Some("gw-1")),
        Ok("gw-1".into())
    );
}

#[test]
fn regression_a_certificate_for_one_node_cannot_claim_another() {
    let gw1 = names("gw-1");
    let refusal = authorize_node(Some(&gw1), "", Some("gw-2")).unwrap_err();
    assert_eq!(
        refusal,
        NodeRefusal::NotNamed {
            node: "gw-2".into(),
            names: "URI:spiffe://tokenward/node/gw-1".into()
        }
    );
    assert_eq!(refusal.status().code(), tonic::Code::PermissionDenied);
    assert!(refusal.to_string().contains("\"gw-2\""), "{refusal}");
    // Nor switch to it mid-stream, after a first request that passed.
    assert_eq!(
        authorize_node(Some(&gw1), "gw-1", Some("gw-2")),
        Err(NodeRefusal::Changed {
            from: "gw-1".into(),
            to: "gw-2".into()
        })
    );
    // A first request without a node, and a connection without a certificate, are refused.
    assert_eq!(
        authorize_node(Some(&gw1), "", None),
        Err(NodeRefusal::NoNode)
    );
    let refusal = authorize_node(None, "", Some("gw-1")).unwrap_err();
    assert_eq!(refusal, NodeRefusal::NoCertificate);
    assert_eq!(refusal.status().code(), tonic::Code::Unauthenticated);
    // A certificate without DNS or URI names names no node, and says so.
    let refusal = authorize_node(Some(&[]), "", Some("gw-1")).unwrap_err();
    assert!(
        refusal.to_string().contains("no DNS or URI name"),
        "{refusal}"
    );
}
