//! LPPSP transport over TCP with TLS 1.3 and mutual authentication against the community CA
