//! The community CA: `lppsp ca init` and `lppsp ca issue`.
//!
//! A community has one CA; it issues every node a certificate. Keys are
//! Ed25519: the smallest keys and signatures rustls and ring support in
//! TLS 1.3, which keeps a node certificate small enough to ride inside a
//! Hand beacon (one UDP datagram). Node certificates all carry the same DNS
//! name, [`SERVER_NAME`], which the transport uses as the TLS server name:
//! TLS proves "a member of this community"; *which* member is the NodeId
//! derived from the certificate's public key.
//!
//! Files are never overwritten: a CA key or a node key that is replaced by
//! mistake cannot be recovered, so both functions refuse and name the file.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use lppsp_core::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, PKCS_ED25519,
};
use time::{Duration, OffsetDateTime};

/// The DNS name in every node certificate, and the TLS server name the
/// transport asks for on every connection.
pub const SERVER_NAME: &str = "node.lppsp";
/// The CA certificate's file name in a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA private key's file name in a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// How long a community CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 20 * 365;
/// How long a node certificate is valid (never past the CA's own end).
pub const NODE_VALIDITY_DAYS: i64 = 5 * 365;
/// Certificates start this long before they are made, so that a peer whose
/// clock is somewhat behind still accepts them.
pub const BACKDATE: Duration = Duration::days(1);

/// Longest community or node name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// What can go wrong making a CA or issuing a certificate.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} already exists; refusing to overwrite it", path.display())]
    Exists { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("bad {what} {name:?}: {reason}")]
    BadName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error("making the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`init_ca`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes a new community CA in `dir` (created if missing): `ca.pem`, the
/// certificate, and `ca.key`, the private key (mode 0600). Refuses when
/// either file exists.
pub fn init_ca(dir: &Path, community_name: &str) -> Result<CaFiles, CaError> {
    check_community_name(community_name)?;
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    refuse_existing(&[&cert_path, &key_path])?;
    fs::create_dir_all(dir).map_err(io_err(dir))?;

    let key = KeyPair::generate_for(&PKCS_ED25519)?;
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, community_name);
    dn.push(DnType::OrganizationName, "LPPSP community CA");
    params.distinguished_name = dn;
    // No intermediates: the CA signs node certificates directly.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
    let cert = params.self_signed(&key)?;

    write_pair(&cert_path, cert.pem(), &key_path, key.serialize_pem())?;
    tracing::info!(cert = %cert_path.display(), community = community_name, "made community CA");
    Ok(CaFiles {
        cert: cert_path,
        key: key_path,
    })
}

/// Issues a node certificate signed by the CA in `ca_dir`: writes
/// `<node_name>.pem` and `<node_name>.key` (mode 0600) in `out_dir` (created
/// if missing) and returns the node's NodeId. Refuses when either file
/// exists.
pub fn issue(ca_dir: &Path, node_name: &str, out_dir: &Path) -> Result<NodeId, CaError> {
    check_node_name(node_name)?;
    let cert_path = out_dir.join(format!("{node_name}.pem"));
    let key_path = out_dir.join(format!("{node_name}.key"));
    refuse_existing(&[&cert_path, &key_path])?;

    let ca = LoadedCa::load(ca_dir)?;
    let key = KeyPair::generate_for(&PKCS_ED25519)?;
    let cert = node_params(node_name, ca.not_after)?.signed_by(&key, &ca.cert, &ca.key)?;

    let node = NodeId::from_public_key_der(&key.public_key_der());
    fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    write_pair(&cert_path, cert.pem(), &key_path, key.serialize_pem())?;
    tracing::info!(cert = %cert_path.display(), %node, name = node_name, "issued node certificate");
    Ok(node)
}

/// The community CA, read back from its folder to sign with.
pub(crate) struct LoadedCa {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
    pub not_after: OffsetDateTime,
}

impl LoadedCa {
    /// Reads ca.pem and ca.key from `ca_dir` and checks that they belong together.
    pub(crate) fn load(ca_dir: &Path) -> Result<Self, CaError> {
        let ca_cert_path = ca_dir.join(CA_CERT_FILE);
        let ca_key_path = ca_dir.join(CA_KEY_FILE);
        let ca_cert_pem = fs::read_to_string(&ca_cert_path).map_err(io_err(&ca_cert_path))?;
        let ca_key_pem = fs::read_to_string(&ca_key_path).map_err(io_err(&ca_key_path))?;
        let ca_params =
            CertificateParams::from_ca_cert_pem(&ca_cert_pem).map_err(|e| CaError::Parse {
                path: ca_cert_path.clone(),
                reason: format!("not a CA certificate: {e}"),
            })?;
        let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| CaError::Parse {
            path: ca_key_path.clone(),
            reason: format!("not a private key: {e}"),
        })?;
        if ca_key.public_key_der() != spki_of_pem_cert(&ca_cert_pem, &ca_cert_path)? {
            return Err(CaError::Parse {
                path: ca_key_path,
                reason: format!("this key does not belong to {}", ca_cert_path.display()),
            });
        }
        let not_after = ca_params.not_after;
        // Rebuilding the CA certificate from its own fields and key gives the
        // issuer name and key identifier that the node certificate refers to.
        let cert = ca_params.self_signed(&ca_key)?;
        Ok(Self {
            cert,
            key: ca_key,
            not_after,
        })
    }
}

/// The fields of a node certificate named `node_name`.
pub(crate) fn node_params(
    node_name: &str,
    ca_not_after: OffsetDateTime,
) -> Result<CertificateParams, CaError> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_name);
    params.distinguished_name = dn;
    let san = SERVER_NAME.try_into().map_err(CaError::Generate)?;
    params.subject_alt_names = vec![SanType::DnsName(san)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = (now + Duration::days(NODE_VALIDITY_DAYS)).min(ca_not_after);
    Ok(params)
}

fn spki_of_pem_cert(pem: &str, path: &Path) -> Result<Vec<u8>, CaError> {
    use rustls_pki_types::pem::PemObject as _;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
        CaError::Parse {
            path: path.to_path_buf(),
            reason: format!("no PEM certificate: {e}"),
        }
    })?;
    crate::identity::spki_der(&der)
        .map(|s| s.to_vec())
        .map_err(|reason| CaError::Parse {
            path: path.to_path_buf(),
            reason,
        })
}

fn check_community_name(name: &str) -> Result<(), CaError> {
    let bad = |reason| CaError::BadName {
        what: "community name",
        name: name.to_string(),
        reason,
    };
    if name.trim().is_empty() || name.len() > MAX_NAME_LEN {
        return Err(bad("must be 1 to 64 bytes, not only blanks"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("must not hold control characters"));
    }
    Ok(())
}

/// Node names become file names and the certificate's common name.
pub fn check_node_name(name: &str) -> Result<(), CaError> {
    let bad = |reason| CaError::BadName {
        what: "node name",
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(bad("must be 1 to 64 characters"));
    }
    if name.starts_with('.') {
        return Err(bad("must not start with '.'"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(bad("may hold only letters, digits and -_."));
    }
    Ok(())
}

pub(crate) fn refuse_existing(paths: &[&Path]) -> Result<(), CaError> {
    for p in paths {
        // symlink_metadata: a dangling symlink is "existing" too.
        if fs::symlink_metadata(p).is_ok() {
            return Err(CaError::Exists {
                path: p.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Writes the key (0600) then the certificate, both with create-new; if the
/// certificate cannot be written the key is removed again, so a failure
/// leaves no half-made identity behind.
fn write_pair(
    cert_path: &Path,
    cert_pem: String,
    key_path: &Path,
    key_pem: String,
) -> Result<(), CaError> {
    write_new(key_path, key_pem.as_bytes(), true)?;
    if let Err(e) = write_new(cert_path, cert_pem.as_bytes(), false) {
        // The key was made by this call; without its certificate it is useless.
        let _ = fs::remove_file(key_path);
        return Err(e);
    }
    Ok(())
}

pub(crate) fn write_new(path: &Path, data: &[u8], secret: bool) -> Result<(), CaError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            CaError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            CaError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let files = init_ca(&dir, "lab").unwrap();
        let before = fs::read(&files.key).unwrap();
        let err = init_ca(&dir, "lab").unwrap_err();
        assert!(matches!(err, CaError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");
        assert_eq!(fs::read(&files.key).unwrap(), before);
        // Only the key left behind is still refused.
        fs::remove_file(&files.cert).unwrap();
        let err = init_ca(&dir, "lab").unwrap_err();
        assert!(err.to_string().contains("ca.key"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let files = init_ca(tmp.path(), "lab").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files.key), 0o600);
        issue(tmp.path(), "n1", tmp.path()).unwrap();
        assert_eq!(mode(&tmp.path().join("n1.key")), 0o600);
        assert_eq!(mode(&tmp.path().join("n1.pem")) & 0o077, 0o044);
    }

    #[test]
    fn issue_refuses_to_overwrite_and_checks_names() {
        let tmp = tempfile::tempdir().unwrap();
        init_ca(tmp.path(), "lab").unwrap();
        let out = tmp.path().join("out");
        let a = issue(tmp.path(), "n1", &out).unwrap();
        let err = issue(tmp.path(), "n1", &out).unwrap_err();
        assert!(matches!(err, CaError::Exists { .. }), "{err}");
        let b = issue(tmp.path(), "n2", &out).unwrap();
        assert_ne!(a, b);
        for bad in ["", ".hidden", "a/b", "../x", "sp ace", &"x".repeat(65)] {
            assert!(
                matches!(issue(tmp.path(), bad, &out), Err(CaError::BadName { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(init_ca(&out, " "), Err(CaError::BadName { .. })));
    }

    #[test]
    fn missing_or_broken_ca_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let err = issue(tmp.path(), "n1", tmp.path()).unwrap_err();
        assert!(matches!(err, CaError::Io { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");
        fs::write(tmp.path().join(CA_CERT_FILE), "garbage").unwrap();
        fs::write(tmp.path().join(CA_KEY_FILE), "garbage").unwrap();
        let err = issue(tmp.path(), "n1", tmp.path()).unwrap_err();
        assert!(matches!(err, CaError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");
        // A key that is not the CA's.
        let other = tmp.path().join("other");
        init_ca(tmp.path().join("real").as_path(), "lab").unwrap();
        init_ca(&other, "lab").unwrap();
        fs::copy(
            tmp.path().join("real/ca.pem"),
            tmp.path().join(CA_CERT_FILE),
        )
        .unwrap();
        fs::copy(other.join(CA_KEY_FILE), tmp.path().join(CA_KEY_FILE)).unwrap();
        let err = issue(tmp.path(), "n1", tmp.path()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        // Nothing half-made was left behind.
        assert!(!tmp.path().join("n1.key").exists());
    }
}
