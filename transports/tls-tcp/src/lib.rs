//! LPPSP transport over TCP with TLS 1.3 and mutual authentication against the community CA
//!
//! Also the node's identity, since the transport is where it is proven:
//!
//! - [`ca`]: make a community CA and issue node certificates (`lppsp ca`);
//! - [`identity`]: load a node's certificate and key, sign with the key,
//!   and check other nodes' certificates and signatures against the CA
//!   (what the runtime uses for UDP beacons);
//! - [`transport`]: the `tls-tcp` [`Transport`](lppsp_core::component::Transport);
//! - [`framing`]: LPPSP frames over any async byte stream;
//! - [`join`]: certificate requests, their signing and the verification
//!   code of `lppsp join`.

#![forbid(unsafe_code)]

pub mod ca;
pub mod framing;
pub mod identity;
pub mod join;
pub mod transport;

pub use ca::{init_ca, issue, CaError, SERVER_NAME};
pub use identity::{Identity, IdentityError, Verifier};
pub use transport::{
    register, TlsConnection, TlsFrameReader, TlsFrameWriter, TlsOptions, TlsTransport, NAME,
};
