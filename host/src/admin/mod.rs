//! weir's admin API: the server `weir run` starts ([`server`]), and the
//! client behind `weir plugin ...` ([`client`]).

pub mod client;
pub mod server;
mod status;

pub use server::{Admin, PipelineInfo, serve};
