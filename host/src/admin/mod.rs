//! weir's admin API: the server `weir run` starts ([`server`]; who may do
//! what, [`access`]; optional TLS, [`tls`]), and the client behind
//! `weir plugin ...` ([`client`]).

pub mod access;
pub mod client;
pub mod server;
mod status;
pub mod tls;

pub use access::Access;
pub use server::{Admin, PipelineInfo, serve};
pub use tls::{AdminTls, TlsError};
