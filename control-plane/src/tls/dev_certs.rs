//! `tokenward tls dev-certs`: a small CA and the certificates `serve --tls-cert/--xds-client-ca`
//! and Envoy's bootstrap need, for development, the bundled docker setup and the tests. Files
//! that exist are kept, so running it again adds a node's certificate signed by the same CA.
//! A production deployment would use its own PKI (cert-manager, SPIRE, Vault); the files and
//! names here show what such certificates must carry.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::identity::spiffe_id;
use super::TlsError;

/// The trust domain of the node certificates' SPIFFE ids.
pub const TRUST_DOMAIN: &str = "tokenward";
/// The name the shipped bootstrap expects the control plane's certificate to carry (its SNI
/// and SAN check).
pub const SERVER_NAME: &str = "tokenward-control-plane";

#[derive(Debug, Clone)]
pub struct DevCertRequest {
    pub out: PathBuf,
    /// An Envoy client certificate for each.
    pub node_ids: Vec<String>,
    /// DNS names and IP addresses of the server certificate.
    pub server_names: Vec<String>,
    /// Lifetime of the server and node certificates (the CA lives ten times as long).
    pub days: u32,
}

/// A file the command wrote, or (certificates only) found and kept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DevCertFile {
    pub path: PathBuf,
    pub written: bool,
}

pub fn ca_cert(dir: &Path) -> PathBuf {
    dir.join("ca.crt")
}
pub fn server_cert(dir: &Path) -> PathBuf {
    dir.join("server.crt")
}
pub fn server_key(dir: &Path) -> PathBuf {
    dir.join("server.key")
}
pub fn node_cert(dir: &Path, node_id: &str) -> PathBuf {
    dir.join(format!("node-{node_id}.crt"))
}
pub fn node_key(dir: &Path, node_id: &str) -> PathBuf {
    dir.join(format!("node-{node_id}.key"))
}

/// Node ids become file names: letters, digits and `._~-` only (Istio's `sidecar~ip~pod.ns~…`
/// fits), and not starting with a dot.
fn check_node_id(node_id: &str) -> Result<(), TlsError> {
    let fits = !node_id.is_empty()
        && !node_id.starts_with('.')
        && node_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c));
    if fits {
        Ok(())
    } else {
        Err(TlsError::Invalid(format!(
            "node id {node_id:?}: use letters, digits and ._~- (it names the files)"
        )))
    }
}

fn leaf_params(
    common_name: &str,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
    days: u32,
) -> CertificateParams {
    let now = time::OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.subject_alt_names = sans;
    // An hour back: a host whose clock is a little behind still accepts a fresh certificate.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    params
}

/// Writes what is missing of: `ca.crt` + `ca.key`, `server.crt` + `server.key`, and
/// `node-<id>.crt` + `node-<id>.key` for every node id. Keys are readable by their owner only.
pub fn write(request: &DevCertRequest) -> Result<Vec<DevCertFile>, TlsError> {
    for node_id in &request.node_ids {
        check_node_id(node_id)?;
    }
    if request.days == 0 {
        return Err(TlsError::Invalid("--days must be at least 1".into()));
    }
    std::fs::create_dir_all(&request.out).map_err(|source| TlsError::Write {
        path: request.out.clone(),
        source,
    })?;
    let dir = &request.out;
    let mut files = Vec::new();
    let (ca_crt, ca_key) = (ca_cert(dir), dir.join("ca.key"));
    let ca_signing_key = if ca_crt.exists() {
        files.push(DevCertFile {
            path: ca_crt.clone(),
            written: false,
        });
        None
    } else {
        let key = KeyPair::generate()?;
        let mut params = leaf_params(
            "tokenward development CA",
            vec![],
            ExtendedKeyUsagePurpose::Any,
            request.days.saturating_mul(10),
        );
        params.extended_key_usages = vec![];
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        write_file(&ca_key, key.serialize_pem().as_bytes(), true)?;
        write_file(&ca_crt, cert.pem().as_bytes(), false)?;
        files.push(DevCertFile {
            path: ca_crt.clone(),
            written: true,
        });
        files.push(DevCertFile {
            path: ca_key.clone(),
            written: true,
        });
        Some(key)
    };
    // The CA is read back from its files either way: one path for a new and a kept CA.
    let issuer = || -> Result<Issuer<'static, KeyPair>, TlsError> {
        let key = match &ca_signing_key {
            Some(key) => KeyPair::from_pem(&key.serialize_pem())?,
            None => KeyPair::from_pem(&read_text(&ca_key)?)?,
        };
        Ok(Issuer::from_ca_cert_pem(&read_text(&ca_crt)?, key)?)
    };

    let mut leaves = vec![(
        server_cert(dir),
        server_key(dir),
        SERVER_NAME.to_string(),
        server_sans(&request.server_names)?,
        ExtendedKeyUsagePurpose::ServerAuth,
    )];
    for node_id in &request.node_ids {
        leaves.push((
            node_cert(dir, node_id),
            node_key(dir, node_id),
            node_id.clone(),
            vec![SanType::URI(
                spiffe_id(TRUST_DOMAIN, node_id).as_str().try_into()?,
            )],
            ExtendedKeyUsagePurpose::ClientAuth,
        ));
    }
    let mut ca = None;
    for (crt, key_path, common_name, sans, usage) in leaves {
        if crt.exists() {
            files.push(DevCertFile {
                path: crt,
                written: false,
            });
            continue;
        }
        let ca = match &mut ca {
            Some(ca) => ca,
            None => ca.insert(issuer()?),
        };
        let key = KeyPair::generate()?;
        let cert = leaf_params(&common_name, sans, usage, request.days).signed_by(&key, ca)?;
        write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
        write_file(&crt, cert.pem().as_bytes(), false)?;
        files.push(DevCertFile {
            path: crt,
            written: true,
        });
        files.push(DevCertFile {
            path: key_path,
            written: true,
        });
    }
    Ok(files)
}

fn server_sans(names: &[String]) -> Result<Vec<SanType>, TlsError> {
    names
        .iter()
        .map(|name| {
            Ok(match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.as_str().try_into()?),
            })
        })
        .collect()
}

fn read_text(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a new file; a private one is created with mode 0600, never readable by others even
/// for a moment. A key is written only when its certificate is missing: one found then is left
/// from an interrupted run and is replaced.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let error = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if private {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(error(e)),
            _ => {}
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(error)?;
    file.write_all(bytes).map_err(error)?;
    file.sync_all().map_err(error)
}
