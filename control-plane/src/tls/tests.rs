use super::dev_certs::{self, DevCertRequest};
use super::identity::{cert_names, names_node, spiffe_id, CertName};
use super::*;

fn dns(name: &str) -> CertName {
    CertName::Dns(name.into())
}

fn uri(name: &str) -> CertName {
    CertName::Uri(name.into())
}

#[test]
fn a_node_is_named_by_a_spiffe_uri_ending_in_its_id_or_an_equal_dns_name() {
    let node = "tokenward-gateway-1";
    assert!(names_node(
        &[uri("spiffe://tokenward/node/tokenward-gateway-1")],
        node
    ));
    assert!(names_node(
        &[uri("spiffe://prod.example/node/tokenward-gateway-1")],
        node
    ));
    assert!(names_node(&[dns("tokenward-gateway-1")], node));
    // Any one of several names suffices.
    assert!(names_node(
        &[dns("other"), uri("spiffe://td/node/tokenward-gateway-1")],
        node
    ));
    // Istio-style ids with ~ and dots.
    let istio = "sidecar~10.0.0.1~gw-1.ns~ns.svc.cluster.local";
    assert!(names_node(&[uri(&spiffe_id("td", istio))], istio));
}

#[test]
fn a_node_is_not_named_by_near_misses() {
    let node = "gw-1";
    let misses = [
        // Another node, a prefix, a suffix.
        uri("spiffe://td/node/gw-2"),
        uri("spiffe://td/node/gw-10"),
        uri("spiffe://td/node/gw"),
        uri("spiffe://td/node/gw-1/extra"),
        // The id elsewhere in the path, or no trust domain, or another scheme.
        uri("spiffe://td/ns/x/node/gw-1"),
        uri("spiffe://td/gw-1"),
        uri("spiffe:///node/gw-1"),
        uri("https://td/node/gw-1"),
        uri("SPIFFE://td/node/gw-1"),
        // Case and encodings are not folded.
        uri("spiffe://td/node/GW-1"),
        uri("spiffe://td/node/gw%2D1"),
        dns("GW-1"),
        dns("gw-1.example"),
        // A wildcard names no node.
        dns("*"),
    ];
    for miss in misses {
        assert!(
            !names_node(std::slice::from_ref(&miss), node),
            "{miss} must not name {node}"
        );
    }
    assert!(!names_node(&[], node));
    assert!(
        !names_node(&[dns(""), uri("spiffe://td/node/")], ""),
        "no empty node id"
    );
    assert!(!names_node(&[dns("*.example")], "*.example"));
}

#[test]
fn plain_listeners_are_refused_beyond_loopback_unless_insecure() {
    let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let lan: SocketAddr = "10.1.2.3:18000".parse().unwrap();
    let v6_any: SocketAddr = "[::]:18000".parse().unwrap();
    for loopback in ["127.0.0.1:8080", "127.0.0.2:1", "[::1]:18000"] {
        let addr: SocketAddr = loopback.parse().unwrap();
        for role in [Role::Admin, Role::Ads] {
            assert_eq!(check_exposure(role, addr, Transport::Plain, false), Ok(()));
        }
    }
    assert_eq!(
        check_exposure(Role::Admin, any, Transport::Plain, false),
        Err(ExposureError::PlainAdmin(any))
    );
    assert_eq!(
        check_exposure(Role::Admin, any, Transport::Tls, false),
        Ok(())
    );
    assert_eq!(
        check_exposure(Role::Ads, lan, Transport::Plain, false),
        Err(ExposureError::PlainAds(lan))
    );
    assert_eq!(
        check_exposure(Role::Ads, v6_any, Transport::Tls, false),
        Err(ExposureError::UnauthenticatedAds(v6_any)),
        "ADS without client certificates hands anyone the provider credentials"
    );
    assert_eq!(
        check_exposure(Role::Ads, lan, Transport::MutualTls, false),
        Ok(())
    );
    for transport in [Transport::Plain, Transport::Tls] {
        assert_eq!(check_exposure(Role::Ads, lan, transport, true), Ok(()));
        assert_eq!(check_exposure(Role::Admin, any, transport, true), Ok(()));
    }
    let message = ExposureError::PlainAdmin(any).to_string();
    assert!(
        message.contains("--tls-cert") && message.contains("--insecure"),
        "{message}"
    );
}

fn dev_certs(dir: &Path, nodes: &[&str]) -> Vec<dev_certs::DevCertFile> {
    dev_certs::write(&DevCertRequest {
        out: dir.to_path_buf(),
        node_ids: nodes.iter().map(|n| n.to_string()).collect(),
        server_names: vec![
            dev_certs::SERVER_NAME.into(),
            "localhost".into(),
            "127.0.0.1".into(),
        ],
        days: 30,
    })
    .unwrap()
}

#[test]
fn dev_certs_make_a_ca_a_server_and_node_certificates_with_private_keys() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let files = dev_certs(dir.path(), &["gw-1"]);
    assert!(files.iter().all(|f| f.written), "{files:?}");
    let mode = |name: &str| {
        std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    for key in ["ca.key", "server.key", "node-gw-1.key"] {
        assert_eq!(mode(key), 0o600, "{key}");
    }
    // The node certificate names its node, and only it.
    let node = read_certificates(&dev_certs::node_cert(dir.path(), "gw-1")).unwrap();
    let names = cert_names(&node[0]).unwrap();
    assert_eq!(names, [uri("spiffe://tokenward/node/gw-1")]);
    assert!(names_node(&names, "gw-1") && !names_node(&names, "gw-2"));
    let server = read_certificates(&dev_certs::server_cert(dir.path())).unwrap();
    assert_eq!(
        cert_names(&server[0]).unwrap(),
        [dns(dev_certs::SERVER_NAME), dns("localhost")],
        "(the IP address SAN is not a DNS or URI name)"
    );

    // Run again with another node: the CA and the first certificates are kept, the new one is
    // signed by the same CA (an mTLS server with that CA accepts it: below).
    let ca_before = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let files = dev_certs(dir.path(), &["gw-1", "gw-2"]);
    let written: Vec<_> = files
        .iter()
        .filter(|f| f.written)
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written, ["node-gw-2.crt", "node-gw-2.key"]);
    assert_eq!(std::fs::read(dir.path().join("ca.crt")).unwrap(), ca_before);
    let roots = read_roots(&dev_certs::ca_cert(dir.path())).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap();
    let second = read_certificates(&dev_certs::node_cert(dir.path(), "gw-2")).unwrap();
    verifier
        .verify_client_cert(&second[0], &[], rustls_pki_types::UnixTime::now())
        .unwrap();
}

#[test]
fn dev_certs_refuse_node_ids_that_are_no_file_name() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["../etc", "a/b", ".hidden", "", "a b"] {
        let result = dev_certs::write(&DevCertRequest {
            out: dir.path().to_path_buf(),
            node_ids: vec![bad.into()],
            server_names: vec!["localhost".into()],
            days: 1,
        });
        assert!(
            matches!(result, Err(TlsError::Invalid(_))),
            "{bad:?}: {result:?}"
        );
    }
    assert!(!dir.path().join("ca.crt").exists(), "nothing written");
}

#[test]
fn a_missing_or_wrong_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    dev_certs(dir.path(), &[]);
    let files = |cert: &str, key: &str| TlsFiles {
        cert: dir.path().join(cert),
        key: dir.path().join(key),
        client_ca: None,
    };
    let error = ServerTls::load(files("missing.crt", "server.key"), ADS_ALPN, "ADS")
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("missing.crt"), "{error}");
    let error = ServerTls::load(files("server.key", "server.key"), ADS_ALPN, "ADS")
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("no certificate"), "{error}");
    let error = ServerTls::load(files("server.crt", "server.crt"), ADS_ALPN, "ADS")
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("no private key"), "{error}");
    // The CA's key with the server's certificate.
    assert!(ServerTls::load(files("server.crt", "ca.key"), ADS_ALPN, "ADS").is_err());
}

/// A TLS client of `addr` trusting `ca`, presenting `identity` (certificate, key) if given;
/// returns the server certificate's DER on success.
async fn connect(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Vec<u8>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(read_roots(ca).unwrap());
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certificates(cert).unwrap(), read_key(key).unwrap())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    // TLS 1.3 reports a refused client certificate only on the first read.
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await {
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(0)) => return Err("closed".into()),
        _ => {}
    }
    Ok(stream.get_ref().1.peer_certificates().unwrap()[0].to_vec())
}

#[tokio::test]
async fn ads_under_mutual_tls_accepts_only_clients_of_the_ca_and_reads_their_names() {
    let dir = tempfile::tempdir().unwrap();
    dev_certs(dir.path(), &["gw-1"]);
    let other = tempfile::tempdir().unwrap();
    dev_certs(other.path(), &["gw-1"]);
    let files = TlsFiles {
        cert: dev_certs::server_cert(dir.path()),
        key: dev_certs::server_key(dir.path()),
        client_ca: Some(dev_certs::ca_cert(dir.path())),
    };
    let tls = ServerTls::load(files, ADS_ALPN, "ADS").unwrap();
    assert_eq!(tls.transport(), Transport::MutualTls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = TlsIncoming::new(listener, tls);
    let ca = dev_certs::ca_cert(dir.path());

    let node = (
        dev_certs::node_cert(dir.path(), "gw-1"),
        dev_certs::node_key(dir.path(), "gw-1"),
    );
    connect(addr, &ca, Some((&node.0, &node.1))).await.unwrap();
    use tokio_stream::StreamExt;
    let connection = incoming.next().await.unwrap().unwrap();
    use tonic::transport::server::Connected;
    let peer = connection.connect_info();
    let names = peer.client_names.unwrap();
    assert!(names_node(&names, "gw-1"), "{names:?}");

    // No client certificate, or one from another CA: refused in the handshake.
    let error = connect(addr, &ca, None).await.unwrap_err();
    assert!(
        error.contains("CertificateRequired") || error.contains("certificate"),
        "{error}"
    );
    let stranger = (
        dev_certs::node_cert(other.path(), "gw-1"),
        dev_certs::node_key(other.path(), "gw-1"),
    );
    // (The other CA has the same name: the server finds it wanting at the signature.)
    assert!(connect(addr, &ca, Some((&stranger.0, &stranger.1)))
        .await
        .is_err());
}

#[tokio::test]
async fn a_rotated_server_certificate_is_served_to_the_next_connection_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    dev_certs(dir.path(), &[]);
    let files = TlsFiles {
        cert: dir.path().join("live.crt"),
        key: dir.path().join("live.key"),
        client_ca: None,
    };
    std::fs::copy(dev_certs::server_cert(dir.path()), &files.cert).unwrap();
    std::fs::copy(dev_certs::server_key(dir.path()), &files.key).unwrap();
    let tls = ServerTls::load(files.clone(), ADMIN_ALPN, "admin API")
        .unwrap()
        .with_check_interval(Duration::ZERO);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _listener = TlsListener::new(listener, tls).unwrap();
    let ca = dev_certs::ca_cert(dir.path());
    let first = connect(addr, &ca, None).await.unwrap();

    // A new certificate from the same CA, moved into place as a rotation would.
    std::fs::rename(dir.path().join("server.crt"), dir.path().join("old.crt")).unwrap();
    std::fs::remove_file(dev_certs::server_key(dir.path())).unwrap();
    dev_certs(dir.path(), &[]);
    std::fs::copy(
        dev_certs::server_key(dir.path()),
        dir.path().join("new.key"),
    )
    .unwrap();
    std::fs::copy(
        dev_certs::server_cert(dir.path()),
        dir.path().join("new.crt"),
    )
    .unwrap();
    std::fs::rename(dir.path().join("new.key"), &files.key).unwrap();
    std::fs::rename(dir.path().join("new.crt"), &files.cert).unwrap();
    let second = connect(addr, &ca, None).await.unwrap();
    assert_ne!(first, second, "the new certificate is served");
    assert_eq!(second, read_certificates(&files.cert).unwrap()[0].to_vec());

    // A broken rotation (garbage in the certificate file) keeps the last good one.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    let third = connect(addr, &ca, None).await.unwrap();
    assert_eq!(third, second);
}
