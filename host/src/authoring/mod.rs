//! Tools for plugin authors, run with no Kafka and no database:
//!
//! - [`local`]: `weir plugin test`, a plugin over a JSON Lines file;
//! - [`inspect`]: `weir plugin inspect`, what a component is and declares.

pub mod inspect;
pub mod local;
