//! Joining a community without copying key files: the certificate
//! request, its signing, the verification code and the TLS settings of the
//! join exchange (`lppsp join`, `lppsp ca approve`).
//!
//! The new node makes its key pair locally and sends only a certificate
//! signing request (CSR): the private key never leaves the machine. The
//! exchange runs over TLS with server authentication only, and the joiner
//! cannot check the server's certificate, since it does not have the CA
//! yet. What protects it is the verification code: a hash of the CA's
//! public key and the CSR's public key, shown on both sides. A man in the
//! middle who substitutes either key changes the code on one side, and the
//! operator, comparing the two, refuses.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use lppsp_core::NodeId;
use rcgen::{CertificateParams, CertificateSigningRequestParams, KeyPair, PKCS_ED25519};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, ServerName, UnixTime};

use crate::ca::{self, CaError, LoadedCa};
use crate::identity::{self, Identity, Verifier};

/// The file names `lppsp join` writes in its output folder.
pub const JOINED_CERT_FILE: &str = "node.pem";
pub const JOINED_KEY_FILE: &str = "node.key";
pub const JOINED_CA_FILE: &str = "ca.pem";

/// Largest CSR accepted, PEM bytes (an Ed25519 one is about 400).
pub const MAX_CSR_PEM: usize = 8 * 1024;

/// What can go wrong with a join request.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("bad certificate request: {0}")]
    BadRequest(String),
    #[error("bad certificate from the CA: {0}")]
    BadCertificate(String),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// A fresh node key and the certificate request made with it.
pub struct NewKey {
    key: KeyPair,
    csr_pem: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("node", &self.node_id())
            .finish()
    }
}

impl NewKey {
    /// Makes an Ed25519 key and a CSR for `node_name`.
    pub fn generate(node_name: &str) -> Result<Self, JoinError> {
        ca::check_node_name(node_name)?;
        let key = KeyPair::generate_for(&PKCS_ED25519).map_err(CaError::Generate)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, node_name);
        let csr_pem = params
            .serialize_request(&key)
            .and_then(|csr| csr.pem())
            .map_err(CaError::Generate)?;
        Ok(Self { key, csr_pem })
    }

    pub fn csr_pem(&self) -> &str {
        &self.csr_pem
    }

    /// The public key, DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key.public_key_der()
    }

    pub fn node_id(&self) -> NodeId {
        NodeId::from_public_key_der(&self.key.public_key_der())
    }
}

/// A certificate request whose signature checked out.
#[derive(Debug, Clone)]
pub struct CheckedRequest {
    /// The requester's public key, DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    /// The NodeId the certificate will name.
    pub node: NodeId,
}

/// Reads a CSR, checks its self-signature (the requester holds the key)
/// and that its key is Ed25519, like every key in a community.
pub fn check_request(csr_pem: &str) -> Result<CheckedRequest, JoinError> {
    if csr_pem.len() > MAX_CSR_PEM {
        return Err(JoinError::BadRequest("too large".into()));
    }
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| JoinError::BadRequest(format!("no PEM request: {e}")))?;
    let parsed = CertificateSigningRequestParams::from_der(&der)
        .map_err(|e| JoinError::BadRequest(format!("unreadable or badly signed: {e}")))?;
    if parsed.public_key.algorithm() != &PKCS_ED25519 {
        return Err(JoinError::BadRequest("the key must be Ed25519".into()));
    }
    use x509_parser::prelude::FromDer as _;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
            .map_err(|e| JoinError::BadRequest(format!("unreadable: {e}")))?;
    let public_key_der = csr.certification_request_info.subject_pki.raw.to_vec();
    Ok(CheckedRequest {
        node: NodeId::from_public_key_der(&public_key_der),
        public_key_der,
    })
}

/// Signs the request with the CA in `ca_dir`, as a node certificate named
/// `node_name` (whatever else the request asked for). Returns the PEM
/// certificate and the NodeId it names.
pub fn sign_request(
    ca_dir: &Path,
    node_name: &str,
    csr_pem: &str,
) -> Result<(String, NodeId), JoinError> {
    ca::check_node_name(node_name)?;
    let checked = check_request(csr_pem)?;
    let mut request = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| JoinError::BadRequest(e.to_string()))?;
    let ca = LoadedCa::load(ca_dir)?;
    request.params = ca::node_params(node_name, ca.not_after)?;
    let cert = request
        .signed_by(&ca.cert, &ca.key)
        .map_err(CaError::Generate)?;
    tracing::info!(node = %checked.node, name = node_name, "signed a join request");
    Ok((cert.pem(), checked.node))
}

/// Alphabet of the verification code: Crockford's base 32 (no I, L, O, U),
/// easy to read aloud and hard to confuse.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The code both sides show: 40 bits of SHA-256 over the CA certificate's
/// public key and the request's public key, as `XXXX-XXXX`.
pub fn verification_code(
    ca_cert_der: &[u8],
    request_public_key_der: &[u8],
) -> Result<String, JoinError> {
    let ca_spki = identity::spki_der(ca_cert_der).map_err(JoinError::BadCertificate)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"lppsp join code v1\0");
    // Lengths first, so that no two different key pairs hash alike.
    for part in [ca_spki, request_public_key_der] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let digest = ctx.finish();
    let bits = digest
        .as_ref()
        .iter()
        .take(5)
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut code = String::with_capacity(9);
    for i in 0..8 {
        if i == 4 {
            code.push('-');
        }
        let index = ((bits >> (35 - 5 * i)) & 31) as usize;
        code.push(char::from(
            CODE_ALPHABET.get(index).copied().unwrap_or(b'0'),
        ));
    }
    Ok(code)
}

/// The certificate of a PEM string (the first one).
pub fn cert_der_of_pem(pem: &str) -> Result<CertificateDer<'static>, JoinError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| JoinError::BadCertificate(format!("no PEM certificate: {e}")))
}

/// The files `lppsp join` wrote.
#[derive(Debug, Clone)]
pub struct JoinedFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub node: NodeId,
}

/// The paths [`write_joined`] will write in `out_dir`; fails naming the
/// first that already exists, so a join never overwrites an identity.
pub fn joined_paths(out_dir: &Path) -> Result<[PathBuf; 3], JoinError> {
    let paths = [
        out_dir.join(JOINED_CERT_FILE),
        out_dir.join(JOINED_KEY_FILE),
        out_dir.join(JOINED_CA_FILE),
    ];
    let [a, b, c] = &paths;
    ca::refuse_existing(&[a, b, c])?;
    Ok(paths)
}

/// Checks the certificate the CA sent (it names our key and is valid under
/// the CA sent with it), then writes key (0600), certificate and CA.
pub fn write_joined(
    out_dir: &Path,
    key: &NewKey,
    cert_pem: &str,
    ca_pem: &str,
) -> Result<JoinedFiles, JoinError> {
    let cert_der = cert_der_of_pem(cert_pem)?;
    let ca_der = cert_der_of_pem(ca_pem)?;
    let spki = identity::spki_der(&cert_der).map_err(JoinError::BadCertificate)?;
    if spki != key.public_key_der().as_slice() {
        return Err(JoinError::BadCertificate(
            "it does not certify the key this node made".into(),
        ));
    }
    let verifier = Verifier::new(ca_der).map_err(JoinError::BadCertificate)?;
    let node = verifier
        .verify_cert(&cert_der, SystemTime::now())
        .map_err(|e| JoinError::BadCertificate(e.to_string()))?;
    fs::create_dir_all(out_dir).map_err(ca::io_err(out_dir))?;
    let [cert, key_path, ca_path] = joined_paths(out_dir)?;
    ca::write_new(&key_path, key.key.serialize_pem().as_bytes(), true)?;
    let rest = ca::write_new(&cert, cert_pem.as_bytes(), false)
        .and_then(|()| ca::write_new(&ca_path, ca_pem.as_bytes(), false));
    if let Err(e) = rest {
        // Leave no half-made identity behind.
        let _ = fs::remove_file(&key_path);
        let _ = fs::remove_file(&cert);
        return Err(e.into());
    }
    Ok(JoinedFiles {
        cert,
        key: key_path,
        ca: ca_path,
        node,
    })
}

/// TLS settings of the join listener: the node's own certificate, no
/// client certificate asked for (the joiner has none yet).
pub fn server_config(identity: &Identity) -> Result<Arc<ServerConfig>, JoinError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| JoinError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![identity.certificate().clone()], identity.private_key())
        .map_err(|e| JoinError::Tls(e.to_string()))?;
    Ok(Arc::new(config))
}

/// TLS settings of the joiner: any server certificate is taken (trust on
/// first use; the verification code is the check), but the handshake
/// signature must still be made by that certificate's key.
pub fn client_config() -> Result<Arc<ClientConfig>, JoinError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(TrustOnFirstUse(provider.clone()));
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| JoinError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The TLS server name the joiner asks for (node certificates carry it).
pub fn server_name() -> Result<ServerName<'static>, JoinError> {
    ServerName::try_from(ca::SERVER_NAME).map_err(|e| JoinError::Tls(e.to_string()))
}

#[derive(Debug)]
struct TrustOnFirstUse(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for TrustOnFirstUse {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_signed_and_written_with_matching_codes() {
        let tmp = tempfile::tempdir().unwrap();
        let ca_dir = tmp.path().join("ca");
        ca::init_ca(&ca_dir, "lab").unwrap();
        let ca_pem = fs::read_to_string(ca_dir.join(ca::CA_CERT_FILE)).unwrap();
        let ca_der = cert_der_of_pem(&ca_pem).unwrap();

        let key = NewKey::generate("laptop").unwrap();
        let checked = check_request(key.csr_pem()).unwrap();
        assert_eq!(checked.node, key.node_id());
        // Both sides compute the same code from what they hold.
        let operator = verification_code(&ca_der, &checked.public_key_der).unwrap();
        let joiner = verification_code(&ca_der, &key.public_key_der()).unwrap();
        assert_eq!(operator, joiner);
        assert_eq!(operator.len(), 9);
        assert_eq!(operator.chars().nth(4), Some('-'));
        // Another key gives another code.
        let other = NewKey::generate("laptop").unwrap();
        assert_ne!(
            verification_code(&ca_der, &other.public_key_der()).unwrap(),
            joiner
        );

        let (cert_pem, node) = sign_request(&ca_dir, "laptop", key.csr_pem()).unwrap();
        assert_eq!(node, key.node_id());
        let out = tmp.path().join("joined");
        // A certificate for another key is refused and nothing is written.
        let err = write_joined(&out, &other, &cert_pem, &ca_pem).unwrap_err();
        assert!(err.to_string().contains("does not certify"), "{err}");
        assert!(!out.join(JOINED_KEY_FILE).exists());
        let files = write_joined(&out, &key, &cert_pem, &ca_pem).unwrap();
        assert_eq!(files.node, node);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(joined_paths(&out).is_err());
        // The written identity loads like any issued one.
        let id = Identity::load(&lppsp_core::config::IdentitySection {
            ca_cert: files.ca,
            cert: files.cert,
            key: files.key,
        })
        .unwrap();
        assert_eq!(id.node_id(), node);
    }

    #[test]
    fn bad_requests_are_refused() {
        for bad in ["", "garbage", &"A".repeat(MAX_CSR_PEM + 1)] {
            assert!(matches!(check_request(bad), Err(JoinError::BadRequest(_))));
        }
        // A request whose body was altered after signing.
        let key = NewKey::generate("n1").unwrap();
        let pem = key.csr_pem();
        let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).unwrap();
        let mut bytes = der.as_ref().to_vec();
        // The signature is the last field; its last byte is signature bits.
        if let Some(last) = bytes.last_mut() {
            *last ^= 1;
        }
        let tampered = CertificateSigningRequestDer::from(bytes);
        assert!(CertificateSigningRequestParams::from_der(&tampered).is_err());
        // The subject name inside the signed part.
        let mut renamed = der.as_ref().to_vec();
        let at = renamed.windows(2).position(|w| w == b"n1").unwrap();
        renamed[at] = b'm';
        let renamed = CertificateSigningRequestDer::from(renamed);
        assert!(CertificateSigningRequestParams::from_der(&renamed).is_err());
        assert!(matches!(
            NewKey::generate("../x"),
            Err(JoinError::Ca(CaError::BadName { .. }))
        ));
    }
}
