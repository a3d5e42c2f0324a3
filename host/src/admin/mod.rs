//! weir's admin API: the server `weir run` starts ([`server`]), and the
//! client behind `weir plugin ...` ([`client`]).

pub mod access;
pub mod client;
pub mod server;
mod status;

pub use access::Access;
pub use server::{Admin, PipelineInfo, serve};
