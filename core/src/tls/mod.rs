//! TLS, only as far as a proxy may look without decrypting anything: the
//! ClientHello a client sends first through a CONNECT tunnel.

pub mod client_hello;
