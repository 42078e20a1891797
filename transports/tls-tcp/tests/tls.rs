//! The tls-tcp transport over real loopback sockets, with a CA and node
//! certificates made by the `ca` module in a temporary directory.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lppsp_core::component::{Connection, Transport, TransportError};
use lppsp_core::config::IdentitySection;
use lppsp_core::registry::{Options, TransportParams};
use lppsp_core::wire::{Body, DecodeErrorKind, Frame, JobId, KernelName, Limits, Message};
use lppsp_core::Price;
use lppsp_transport_tls::transport::{client_config, server_name};
use lppsp_transport_tls::{ca, Identity, TlsTransport};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);

struct Pki {
    _tmp: tempfile::TempDir,
    ca: std::path::PathBuf,
    other_ca: std::path::PathBuf,
    nodes: std::path::PathBuf,
}

impl Pki {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca");
        let other_ca = tmp.path().join("other-ca");
        let nodes = tmp.path().join("nodes");
        ca::init_ca(&ca, "lab").unwrap();
        ca::init_ca(&other_ca, "intruders").unwrap();
        for n in ["a", "b", "c"] {
            ca::issue(&ca, n, &nodes).unwrap();
        }
        ca::issue(&other_ca, "mallory", &nodes).unwrap();
        Self {
            _tmp: tmp,
            ca,
            other_ca,
            nodes,
        }
    }

    fn section(&self, ca_dir: &Path, name: &str) -> IdentitySection {
        IdentitySection {
            ca_cert: ca_dir.join("ca.pem"),
            cert: self.nodes.join(format!("{name}.pem")),
            key: self.nodes.join(format!("{name}.key")),
        }
    }

    fn good(&self, name: &str) -> IdentitySection {
        self.section(&self.ca, name)
    }

    fn foreign(&self) -> IdentitySection {
        self.section(&self.other_ca, "mallory")
    }

    fn params(&self, identity: IdentitySection, options: Options) -> TransportParams {
        TransportParams {
            listen: "127.0.0.1:0".parse().unwrap(),
            identity,
            limits: Limits::default(),
            options,
        }
    }

    async fn bind(&self, identity: IdentitySection) -> Arc<TlsTransport> {
        TlsTransport::bind(self.params(identity, Options::new()))
            .await
            .unwrap()
    }
}

fn frame(i: u64) -> Frame {
    Frame::new(
        Price::from_micros(1_000_000 + i),
        Message::Accept {
            job: JobId(42),
            task: i,
        },
    )
    .with_header("X-Seq", i.to_string())
}

async fn pair(
    client: &TlsTransport,
    server: &TlsTransport,
) -> (Box<dyn Connection>, Box<dyn Connection>) {
    let addr = server.local_addr();
    let (c, s) = tokio::join!(
        timeout(T, client.connect(addr)),
        timeout(T, server.accept())
    );
    (c.unwrap().unwrap(), s.unwrap().unwrap())
}

async fn wait_refused(t: &TlsTransport, n: u64) {
    timeout(T, async {
        while t.refused_handshakes() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("refused_handshakes stayed at {}", t.refused_handshakes()));
}

/// A TLS client using the real client config of `identity`, for writing
/// raw bytes that the transport's writer would never produce.
async fn raw_client(
    identity: &IdentitySection,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let id = Identity::load(identity).unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(&id).unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    timeout(T, connector.connect(server_name().unwrap(), tcp))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn frames_both_ways_and_peer_ids() {
    let pki = Pki::new();
    let a = pki.bind(pki.good("a")).await;
    let b = pki.bind(pki.good("b")).await;
    assert_eq!(a.name(), "tls-tcp");
    let (ca_, cb) = pair(&a, &b).await;
    assert_eq!(ca_.peer().node, b.identity().node_id());
    assert_eq!(cb.peer().node, a.identity().node_id());
    assert_eq!(ca_.peer().cert_der, b.identity().cert_der());
    assert_eq!(ca_.remote_addr(), b.local_addr());

    let (mut aw, mut ar) = ca_.split();
    let (mut bw, mut br) = cb.split();
    let batch: Vec<Frame> = (0..500).map(frame).collect();
    aw.write_frames(&batch).await.unwrap();
    for f in &batch {
        assert_eq!(br.read_frame().await.unwrap().as_ref(), Some(f));
    }
    bw.write_frames(&batch[..3]).await.unwrap();
    for f in &batch[..3] {
        assert_eq!(ar.read_frame().await.unwrap().as_ref(), Some(f));
    }
    // A clean close reads as the end of the stream.
    aw.close().await.unwrap();
    assert!(timeout(T, br.read_frame())
        .await
        .unwrap()
        .unwrap()
        .is_none());
    // The other direction still works.
    bw.write_frames(&[frame(9)]).await.unwrap();
    assert_eq!(ar.read_frame().await.unwrap(), Some(frame(9)));
    assert_eq!(b.accepted_handshakes(), 1);
    assert_eq!(b.refused_handshakes(), 0);
}

#[tokio::test]
async fn big_body_round_trips() {
    let pki = Pki::new();
    let a = pki.bind(pki.good("a")).await;
    let b = pki.bind(pki.good("b")).await;
    let (ca_, cb) = pair(&a, &b).await;
    let (mut aw, _ar) = ca_.split();
    let (_bw, mut br) = cb.split();

    let data: Vec<u8> = (0..16u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let data = Bytes::from(data);
    let task = Frame::new(
        Price::from_micros(3_000_000),
        Message::Task {
            job: JobId(7),
            task: 1,
            kernel: KernelName::new("sum").unwrap(),
        },
    )
    .with_body(Body::from_bytes(data.clone()));
    let sent = vec![frame(1), task.clone(), frame(2)];
    let writer = tokio::spawn(async move {
        aw.write_frames(&sent).await.unwrap();
        aw
    });
    assert_eq!(br.read_frame().await.unwrap(), Some(frame(1)));
    let got = timeout(T, br.read_frame()).await.unwrap().unwrap().unwrap();
    assert_eq!(got.message, task.message);
    let body = got.body.unwrap();
    assert_eq!(body.len(), data.len());
    assert!(body.to_bytes() == data, "body differs");
    assert_eq!(br.read_frame().await.unwrap(), Some(frame(2)));
    writer.await.unwrap();
}

#[tokio::test]
async fn client_from_another_ca_is_refused() {
    let pki = Pki::new();
    let b = pki.bind(pki.good("b")).await;
    let m = pki.bind(pki.foreign()).await;
    let a = pki.bind(pki.good("a")).await;

    // Mallory's transport trusts only its own CA: it rejects b's
    // certificate, and b sees a failed handshake.
    let err = match timeout(T, m.connect(b.local_addr())).await.unwrap() {
        Ok(_) => panic!("connected to a server of another CA"),
        Err(e) => e,
    };
    assert!(matches!(err, TransportError::Handshake { .. }), "{err}");
    wait_refused(&b, 1).await;

    // A client that trusts our CA but holds a foreign certificate: TLS 1.3
    // lets its handshake finish, but the server refuses it and nothing it
    // sends is delivered; its first read fails or ends.
    let mallory = Identity::load(&pki.foreign()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(Identity::load(&pki.good("a")).unwrap().verifier().roots())
    .with_client_auth_cert(vec![mallory.certificate().clone()], mallory.private_key())
    .unwrap();
    cfg.alpn_protocols = vec![b"lppsp/1.0".to_vec()];
    let tcp = tokio::net::TcpStream::connect(b.local_addr())
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    if let Ok(mut s) = connector.connect(server_name().unwrap(), tcp).await {
        let _ = s.write_all(&frame(1).to_bytes()).await;
        let mut buf = [0u8; 64];
        let r = timeout(T, s.read(&mut buf)).await.unwrap();
        assert!(matches!(r, Err(_) | Ok(0)), "{r:?}");
    }
    wait_refused(&b, 2).await;

    // The server still accepts a good client, and it is the one delivered.
    let (ca_, cb) = pair(&a, &b).await;
    assert_eq!(cb.peer().node, a.identity().node_id());
    assert_eq!(ca_.peer().node, b.identity().node_id());
    assert_eq!(b.accepted_handshakes(), 1);
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let pki = Pki::new();
    let b = pki.bind(pki.good("b")).await;
    let a = pki.bind(pki.good("a")).await;
    let roots = b.identity().verifier().roots();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"lppsp/1.0".to_vec()];
    let tcp = tokio::net::TcpStream::connect(b.local_addr())
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    if let Ok(mut s) = connector.connect(server_name().unwrap(), tcp).await {
        let _ = s.write_all(&frame(1).to_bytes()).await;
        let mut buf = [0u8; 64];
        let r = timeout(T, s.read(&mut buf)).await.unwrap();
        assert!(matches!(r, Err(_) | Ok(0)), "{r:?}");
    }
    wait_refused(&b, 1).await;
    let (_ca, cb) = pair(&a, &b).await;
    assert_eq!(cb.peer().node, a.identity().node_id());
}

#[tokio::test]
async fn server_from_another_ca_is_rejected() {
    let pki = Pki::new();
    let m = pki.bind(pki.foreign()).await;
    let a = pki.bind(pki.good("a")).await;
    let err = match timeout(T, a.connect(m.local_addr())).await.unwrap() {
        Ok(_) => panic!("connected to a server of another CA"),
        Err(e) => e,
    };
    match &err {
        TransportError::Handshake { addr, reason } => {
            assert_eq!(addr, &m.local_addr().to_string());
            assert!(!reason.is_empty());
        }
        other => panic!("{other}"),
    }
    wait_refused(&m, 1).await;
}

#[tokio::test]
async fn recoverable_bad_frame_then_good_frame() {
    let pki = Pki::new();
    let b = pki.bind(pki.good("b")).await;
    let mut raw = raw_client(&pki.good("c"), b.local_addr()).await;
    let conn = timeout(T, b.accept()).await.unwrap().unwrap();
    let (_w, mut r) = conn.split();
    let mut bytes = b"LPPSP/1\r\nBogus/1/2\r\nX-Seq: 1\r\n\r\n".to_vec();
    bytes.extend_from_slice(&frame(2).to_bytes());
    raw.write_all(&bytes).await.unwrap();
    raw.flush().await.unwrap();
    match timeout(T, r.read_frame()).await.unwrap() {
        Err(TransportError::BadFrame(e)) => assert!(e.is_recoverable(), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.read_frame().await.unwrap(), Some(frame(2)));
}

#[tokio::test]
async fn garbage_is_a_protocol_error() {
    let pki = Pki::new();
    let b = pki.bind(pki.good("b")).await;
    let mut raw = raw_client(&pki.good("c"), b.local_addr()).await;
    let conn = timeout(T, b.accept()).await.unwrap().unwrap();
    let (_w, mut r) = conn.split();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    raw.flush().await.unwrap();
    match timeout(T, r.read_frame()).await.unwrap() {
        Err(TransportError::Protocol(e)) => {
            assert!(!e.is_recoverable());
            assert!(matches!(e.kind, DecodeErrorKind::BadProtocolLine(_)), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // The connection stays failed.
    assert!(matches!(
        r.read_frame().await,
        Err(TransportError::Protocol(_))
    ));
}

#[tokio::test]
async fn truncated_frame_at_close_is_a_protocol_error() {
    let pki = Pki::new();
    let b = pki.bind(pki.good("b")).await;
    let mut raw = raw_client(&pki.good("c"), b.local_addr()).await;
    let conn = timeout(T, b.accept()).await.unwrap().unwrap();
    let (_w, mut r) = conn.split();
    raw.write_all(b"LPPSP/1\r\nIdle/true\r\n").await.unwrap();
    raw.shutdown().await.unwrap();
    match timeout(T, r.read_frame()).await.unwrap() {
        Err(TransportError::Protocol(e)) => assert_eq!(e.kind, DecodeErrorKind::Truncated),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn silent_peer_times_out_without_blocking_others() {
    let pki = Pki::new();
    let mut options = Options::new();
    options.insert("handshake_timeout_ms".into(), toml::Value::Integer(1000));
    let b = TlsTransport::bind(pki.params(pki.good("b"), options))
        .await
        .unwrap();
    let a = pki.bind(pki.good("a")).await;
    // Connects at the TCP level and says nothing.
    let silent = tokio::net::TcpStream::connect(b.local_addr())
        .await
        .unwrap();
    // A good peer is served meanwhile.
    let (_ca, cb) = pair(&a, &b).await;
    assert_eq!(cb.peer().node, a.identity().node_id());
    wait_refused(&b, 1).await;
    drop(silent);
}

#[tokio::test]
async fn bad_options_and_identity_are_config_errors() {
    let pki = Pki::new();
    let mut options = Options::new();
    options.insert("handshake_timeout".into(), toml::Value::Integer(3));
    let err = TlsTransport::bind(pki.params(pki.good("a"), options))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("transport.handshake_timeout"),
        "{err}"
    );
    let mut options = Options::new();
    options.insert("handshake_timeout_ms".into(), toml::Value::Integer(-1));
    let err = TlsTransport::bind(pki.params(pki.good("a"), options))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("positive integer"), "{err}");
    let mut options = Options::new();
    options.insert(
        "max_pending_handshakes".into(),
        toml::Value::Integer(1 << 40),
    );
    let err = TlsTransport::bind(pki.params(pki.good("a"), options))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
    let err = TlsTransport::bind(pki.params(pki.good("nobody"), Options::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Config(m) if m.contains("nobody.pem")),
        "{err}"
    );
}

#[tokio::test]
async fn connect_to_closed_port_fails() {
    let pki = Pki::new();
    let a = pki.bind(pki.good("a")).await;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    assert!(timeout(T, a.connect(addr)).await.unwrap().is_err());
}

#[tokio::test]
async fn registry_builds_the_transport() {
    let pki = Pki::new();
    let mut reg = lppsp_core::registry::Registry::new();
    lppsp_transport_tls::register(&mut reg);
    let section = lppsp_core::config::ComponentSection {
        kind: "tls-tcp".into(),
        ..Default::default()
    };
    let t = reg
        .transport(&section, pki.params(pki.good("a"), Options::new()))
        .unwrap()
        .await
        .unwrap();
    assert_eq!(t.name(), "tls-tcp");
    assert_ne!(t.local_addr().port(), 0);
}
