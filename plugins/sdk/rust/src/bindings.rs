//! The WIT bindings, one module per world. The imports and shared types are
//! generated once (with the filter world) and reused by the other two, so a
//! `Record` is the same Rust type whichever world a plugin exports.

#![allow(missing_docs, reason = "generated code")]

/// The `filter` world; also the home of the shared types and host imports.
pub mod filter_world {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "weir:plugin/filter@0.2.0",
        pub_export_macro: true,
        export_macro_name: "export_filter_world",
        default_bindings_module: "weir_plugin_sdk::bindings::filter_world",
        generate_all,
    });
}

/// The `transform` world.
pub mod transform_world {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "weir:plugin/transform@0.2.0",
        with: {
            "weir:plugin/types@0.2.0": crate::bindings::filter_world::weir::plugin::types,
            "weir:plugin/logging@0.2.0": crate::bindings::filter_world::weir::plugin::logging,
            "weir:plugin/config@0.2.0": crate::bindings::filter_world::weir::plugin::config,
            "weir:plugin/lookup@0.2.0": crate::bindings::filter_world::weir::plugin::lookup,
            "weir:plugin/metrics@0.2.0": crate::bindings::filter_world::weir::plugin::metrics,
        },
        pub_export_macro: true,
        export_macro_name: "export_transform_world",
        default_bindings_module: "weir_plugin_sdk::bindings::transform_world",
    });
}

/// The `aggregator` world.
pub mod aggregator_world {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "weir:plugin/aggregator@0.2.0",
        with: {
            "weir:plugin/types@0.2.0": crate::bindings::filter_world::weir::plugin::types,
            "weir:plugin/logging@0.2.0": crate::bindings::filter_world::weir::plugin::logging,
            "weir:plugin/config@0.2.0": crate::bindings::filter_world::weir::plugin::config,
            "weir:plugin/lookup@0.2.0": crate::bindings::filter_world::weir::plugin::lookup,
            "weir:plugin/metrics@0.2.0": crate::bindings::filter_world::weir::plugin::metrics,
        },
        pub_export_macro: true,
        export_macro_name: "export_aggregator_world",
        default_bindings_module: "weir_plugin_sdk::bindings::aggregator_world",
    });
}

pub use aggregator_world::exports::weir::plugin::aggregating;
pub use filter_world::exports::weir::plugin::filtering;
pub use filter_world::weir::plugin::types;
pub use transform_world::exports::weir::plugin::transforming;
