//! A node's identity: its certificate and key, and the community CA they
//! are checked against.
//!
//! [`Identity`] signs (beacons); [`Verifier`] checks other nodes'
//! certificates and signatures. Chain checks are webpki's (through rustls),
//! signatures are ring's; nothing here is hand-rolled crypto.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use lppsp_core::config::IdentitySection;
use lppsp_core::NodeId;
use ring::signature::{self, Ed25519KeyPair};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

/// Length of an Ed25519 signature, what [`Identity::sign`] returns.
pub const SIGNATURE_LEN: usize = 64;

const OID_ED25519: &str = "1.3.101.112";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// What can go wrong loading an identity or checking a peer.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("key {} does not belong to certificate {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("certificate {} is not valid under CA {}: {reason}", cert.display(), ca.display())]
    OwnCertUntrusted {
        cert: PathBuf,
        ca: PathBuf,
        reason: String,
    },
    #[error("CA certificate {}: {reason}", path.display())]
    BadCa { path: PathBuf, reason: String },
    /// A peer's certificate does not lead to the community CA, is expired,
    /// not yet valid, or not a node certificate.
    #[error("certificate not trusted: {0}")]
    Untrusted(String),
    /// A certificate that cannot be read at all.
    #[error("malformed certificate: {0}")]
    BadCert(String),
    #[error("unsupported public key: {0}")]
    UnsupportedKey(String),
    #[error("signature does not verify")]
    BadSignature,
}

/// Reads every byte of `path`, naming it on error.
fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the first PEM certificate in `path`.
pub fn read_cert_pem(path: &Path) -> Result<CertificateDer<'static>, IdentityError> {
    let data = read(path)?;
    CertificateDer::from_pem_slice(&data).map_err(|e| IdentityError::Pem {
        path: path.to_path_buf(),
        reason: format!("no PEM certificate: {e}"),
    })
}

/// The DER SubjectPublicKeyInfo inside a DER certificate.
pub fn spki_der(cert_der: &[u8]) -> Result<&[u8], String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| format!("cannot parse certificate: {e}"))?;
    Ok(cert.tbs_certificate.subject_pki.raw)
}

/// The NodeId a certificate names: the hash of its public key. This does
/// not check the certificate; see [`Verifier::verify_cert`].
pub fn node_id_of_cert(cert_der: &[u8]) -> Result<NodeId, IdentityError> {
    spki_der(cert_der)
        .map(NodeId::from_public_key_der)
        .map_err(IdentityError::BadCert)
}

/// Checks a signature made by the key of the certificate `cert_der`
/// (Ed25519, or ECDSA P-256/P-384 with SHA-256/384, ASN.1 form). This does
/// not check the certificate itself.
pub fn verify_signature(cert_der: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| IdentityError::BadCert(format!("cannot parse certificate: {e}")))?;
    let spki = &cert.tbs_certificate.subject_pki;
    let alg_oid = spki.algorithm.algorithm.to_id_string();
    let alg: &'static dyn signature::VerificationAlgorithm = match alg_oid.as_str() {
        OID_ED25519 => &signature::ED25519,
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some(OID_P256) => &signature::ECDSA_P256_SHA256_ASN1,
                Some(OID_P384) => &signature::ECDSA_P384_SHA384_ASN1,
                other => {
                    return Err(IdentityError::UnsupportedKey(format!(
                        "EC curve {}",
                        other.unwrap_or("(none)")
                    )))
                }
            }
        }
        other => {
            return Err(IdentityError::UnsupportedKey(format!(
                "key algorithm {other}"
            )))
        }
    };
    signature::UnparsedPublicKey::new(alg, &*spki.subject_public_key.data)
        .verify(msg, sig)
        .map_err(|_| IdentityError::BadSignature)
}

/// Checks node certificates against the community CA.
#[derive(Clone)]
pub struct Verifier {
    ca_der: CertificateDer<'static>,
    roots: Arc<RootCertStore>,
    inner: Arc<dyn ClientCertVerifier>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("ca_cert_bytes", &self.ca_der.len())
            .finish()
    }
}

impl Verifier {
    /// A verifier trusting exactly the CA certificate `ca_der`.
    pub fn new(ca_der: CertificateDer<'static>) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        roots
            .add(ca_der.clone())
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
        let roots = Arc::new(roots);
        let inner = WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| format!("cannot build a verifier: {e}"))?;
        Ok(Self {
            ca_der,
            roots,
            inner,
        })
    }

    /// A verifier trusting the CA certificate in the PEM file `path`.
    pub fn from_pem_file(path: &Path) -> Result<Self, IdentityError> {
        let ca = read_cert_pem(path)?;
        Self::new(ca).map_err(|reason| IdentityError::BadCa {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The CA as a rustls root store.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }

    /// Checks that `cert_der` is a node certificate issued by the community
    /// CA and valid at `now`, and returns the NodeId it names.
    pub fn verify_cert(&self, cert_der: &[u8], now: SystemTime) -> Result<NodeId, IdentityError> {
        let since = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| IdentityError::Untrusted("time is before 1970".into()))?;
        self.inner
            .verify_client_cert(
                &CertificateDer::from(cert_der),
                &[],
                UnixTime::since_unix_epoch(since),
            )
            .map_err(|e| IdentityError::Untrusted(e.to_string()))?;
        node_id_of_cert(cert_der)
    }

    /// Checks that `sig` over `msg` was made with the key of `cert_der`
    /// (see [`verify_signature`]); does not check the certificate.
    pub fn verify_signature(
        &self,
        cert_der: &[u8],
        msg: &[u8],
        sig: &[u8],
    ) -> Result<(), IdentityError> {
        verify_signature(cert_der, msg, sig)
    }

    /// Both checks at once: the certificate is the community's and valid at
    /// `now`, and `sig` over `msg` is its key's. Returns the signer.
    pub fn verify_signed(
        &self,
        cert_der: &[u8],
        msg: &[u8],
        sig: &[u8],
        now: SystemTime,
    ) -> Result<NodeId, IdentityError> {
        let node = self.verify_cert(cert_der, now)?;
        verify_signature(cert_der, msg, sig)?;
        Ok(node)
    }
}

/// This node's identity: certificate, key, and the community CA.
pub struct Identity {
    node: NodeId,
    cert_der: CertificateDer<'static>,
    key_der: PrivateKeyDer<'static>,
    signer: Ed25519KeyPair,
    verifier: Verifier,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Identity")
            .field("node", &self.node)
            .field("cert_bytes", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads the CA certificate, the node certificate and the node key
    /// (PEM files), and checks that they fit: the key is the certificate's,
    /// and the certificate is the CA's and valid now.
    pub fn load(section: &IdentitySection) -> Result<Self, IdentityError> {
        let verifier = Verifier::from_pem_file(&section.ca_cert)?;
        let cert_der = read_cert_pem(&section.cert)?;
        let key_data = read(&section.key)?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_data).map_err(|e| IdentityError::Pem {
            path: section.key.clone(),
            reason: format!("no PEM private key: {e}"),
        })?;
        let PrivateKeyDer::Pkcs8(pkcs8) = &key_der else {
            return Err(IdentityError::Key {
                path: section.key.clone(),
                reason: "not a PKCS#8 key; node keys are Ed25519 (made by `lppsp ca issue`)".into(),
            });
        };
        let signer =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.secret_pkcs8_der()).map_err(|e| {
                IdentityError::Key {
                    path: section.key.clone(),
                    reason: format!(
                        "not an Ed25519 key ({e}); node keys are Ed25519 (made by `lppsp ca issue`)"
                    ),
                }
            })?;

        // The key must be the certificate's: sign and check with the cert.
        let probe = b"lppsp identity self-check";
        if verify_signature(&cert_der, probe, signer.sign(probe).as_ref()).is_err() {
            return Err(IdentityError::KeyMismatch {
                key: section.key.clone(),
                cert: section.cert.clone(),
            });
        }
        let node = verifier
            .verify_cert(&cert_der, SystemTime::now())
            .map_err(|e| IdentityError::OwnCertUntrusted {
                cert: section.cert.clone(),
                ca: section.ca_cert.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            node,
            cert_der,
            key_der,
            signer,
            verifier,
        })
    }

    /// This node's id (hash of its public key).
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// This node's certificate, DER (what a Hand beacon carries).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate as rustls takes it.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The private key as rustls takes it.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        self.key_der.clone_key()
    }

    /// Signs `msg` with the node key (Ed25519, [`SIGNATURE_LEN`] bytes).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.signer.sign(msg).as_ref().to_vec()
    }

    /// The verifier for the community CA.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca;

    fn section(ca_dir: &Path, dir: &Path, name: &str) -> IdentitySection {
        IdentitySection {
            ca_cert: ca_dir.join(ca::CA_CERT_FILE),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        }
    }

    struct Setup {
        _tmp: tempfile::TempDir,
        ca: PathBuf,
        other_ca: PathBuf,
        nodes: PathBuf,
    }

    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        let other_ca = tmp.path().join("other-ca");
        let nodes = tmp.path().join("nodes");
        ca::init_ca(&ca, "test community").unwrap();
        ca::init_ca(&other_ca, "other community").unwrap();
        Setup {
            _tmp: tmp,
            ca,
            other_ca,
            nodes,
        }
    }

    #[test]
    fn issue_and_load() {
        let s = setup();
        let id = ca::issue(&s.ca, "alpha", &s.nodes).unwrap();
        let me = Identity::load(&section(&s.ca, &s.nodes, "alpha")).unwrap();
        assert_eq!(me.node_id(), id);
        assert_eq!(node_id_of_cert(me.cert_der()).unwrap(), id);
        // Small enough for a beacon.
        assert!(
            me.cert_der().len() < 600,
            "cert is {} bytes",
            me.cert_der().len()
        );
        assert!(!format!("{me:?}").contains("PRIVATE"));
    }

    #[test]
    fn sign_and_verify() {
        let s = setup();
        ca::issue(&s.ca, "alpha", &s.nodes).unwrap();
        ca::issue(&s.ca, "beta", &s.nodes).unwrap();
        let a = Identity::load(&section(&s.ca, &s.nodes, "alpha")).unwrap();
        let b = Identity::load(&section(&s.ca, &s.nodes, "beta")).unwrap();
        let msg = b"LPPSP/1\r\nIdle/true\r\n\r\n";
        let sig = a.sign(msg);
        assert_eq!(sig.len(), SIGNATURE_LEN);
        let v = b.verifier();
        v.verify_signature(a.cert_der(), msg, &sig).unwrap();
        assert_eq!(
            v.verify_signed(a.cert_der(), msg, &sig, SystemTime::now())
                .unwrap(),
            a.node_id()
        );
        // Tampered message.
        let mut bad = msg.to_vec();
        bad[7] = b'2';
        assert!(matches!(
            v.verify_signature(a.cert_der(), &bad, &sig),
            Err(IdentityError::BadSignature)
        ));
        // Tampered signature.
        let mut bad_sig = sig.clone();
        bad_sig[0] ^= 1;
        assert!(v.verify_signature(a.cert_der(), msg, &bad_sig).is_err());
        // Right signature, wrong certificate.
        assert!(v.verify_signature(b.cert_der(), msg, &sig).is_err());
    }

    #[test]
    fn foreign_cert_fails() {
        let s = setup();
        ca::issue(&s.ca, "alpha", &s.nodes).unwrap();
        ca::issue(&s.other_ca, "mallory", &s.nodes).unwrap();
        let a = Identity::load(&section(&s.ca, &s.nodes, "alpha")).unwrap();
        let m = Identity::load(&section(&s.other_ca, &s.nodes, "mallory")).unwrap();
        let v = a.verifier();
        assert_eq!(
            v.verify_cert(a.cert_der(), SystemTime::now()).unwrap(),
            a.node_id()
        );
        assert!(matches!(
            v.verify_cert(m.cert_der(), SystemTime::now()),
            Err(IdentityError::Untrusted(_))
        ));
        // Loading with the wrong CA names the files.
        let err = Identity::load(&section(&s.ca, &s.nodes, "mallory")).unwrap_err();
        assert!(
            matches!(err, IdentityError::OwnCertUntrusted { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("mallory.pem"), "{err}");
        // Garbage is not a certificate.
        assert!(v.verify_cert(b"not a cert", SystemTime::now()).is_err());
        // The CA itself is not a node certificate.
        assert!(v.verify_cert(v.ca_der(), SystemTime::now()).is_err());
    }

    #[test]
    fn validity_window() {
        let s = setup();
        ca::issue(&s.ca, "alpha", &s.nodes).unwrap();
        let a = Identity::load(&section(&s.ca, &s.nodes, "alpha")).unwrap();
        let v = a.verifier();
        let day = std::time::Duration::from_secs(86_400);
        let now = SystemTime::now();
        assert!(v.verify_cert(a.cert_der(), now + 365 * day).is_ok());
        assert!(v.verify_cert(a.cert_der(), now - 3 * day).is_err());
        assert!(v.verify_cert(a.cert_der(), now + 6 * 365 * day).is_err());
    }

    #[test]
    fn key_mismatch_and_missing_files() {
        let s = setup();
        ca::issue(&s.ca, "alpha", &s.nodes).unwrap();
        ca::issue(&s.ca, "beta", &s.nodes).unwrap();
        let mut sec = section(&s.ca, &s.nodes, "alpha");
        sec.key = s.nodes.join("beta.key");
        assert!(matches!(
            Identity::load(&sec),
            Err(IdentityError::KeyMismatch { .. })
        ));
        let sec = section(&s.ca, &s.nodes, "nobody");
        let err = Identity::load(&sec).unwrap_err();
        assert!(err.to_string().contains("nobody.pem"), "{err}");
        let mut sec = section(&s.ca, &s.nodes, "alpha");
        sec.key = s.nodes.join("alpha.pem");
        let err = Identity::load(&sec).unwrap_err();
        assert!(matches!(err, IdentityError::Pem { .. }), "{err}");
    }
}
