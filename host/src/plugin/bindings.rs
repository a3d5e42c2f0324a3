//! The one place the WIT contract becomes Rust: host bindings for the three
//! worlds of `weir:plugin@0.2.0`. The host imports are generated once (with
//! the filter world) and reused by the other two; the shared types are
//! [`types`], so a `Record` is one type whatever the world.

#![allow(missing_docs, reason = "generated code")]

pub mod types;

/// The `types` interface as generated, which [`types`] completes.
mod types_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "package weir:host; world types { import weir:plugin/types@0.2.0; }",
        world: "weir:host/types",
        additional_derives: [PartialEq],
    });
}

/// The `filter` world, and the home of the host imports.
pub mod filter_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "weir:plugin/filter@0.2.0",
        with: {
            "weir:plugin/types": crate::plugin::bindings::types,
        },
        additional_derives: [PartialEq],
    });
}

/// The `transform` world.
pub mod transform_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "weir:plugin/transform@0.2.0",
        with: {
            "weir:plugin/types": crate::plugin::bindings::types,
            "weir:plugin/logging": crate::plugin::bindings::filter_world::weir::plugin::logging,
            "weir:plugin/config": crate::plugin::bindings::filter_world::weir::plugin::config,
            "weir:plugin/lookup": crate::plugin::bindings::filter_world::weir::plugin::lookup,
            "weir:plugin/metrics": crate::plugin::bindings::filter_world::weir::plugin::metrics,
        },
    });
}

/// The `aggregator` world.
pub mod aggregator_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "weir:plugin/aggregator@0.2.0",
        with: {
            "weir:plugin/types": crate::plugin::bindings::types,
            "weir:plugin/logging": crate::plugin::bindings::filter_world::weir::plugin::logging,
            "weir:plugin/config": crate::plugin::bindings::filter_world::weir::plugin::config,
            "weir:plugin/lookup": crate::plugin::bindings::filter_world::weir::plugin::lookup,
            "weir:plugin/metrics": crate::plugin::bindings::filter_world::weir::plugin::metrics,
        },
    });
}

pub use aggregator_world::exports::weir::plugin::aggregating;
pub use filter_world::exports::weir::plugin::filtering;
pub use filter_world::weir::plugin::{config, logging, lookup, metrics};
pub use transform_world::exports::weir::plugin::transforming;
