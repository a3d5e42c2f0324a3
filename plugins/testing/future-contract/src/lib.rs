//! A filter built against a later, incompatible contract (`weir:plugin@0.3.0`).

wit_bindgen::generate!({
    inline: "
        package weir:plugin@0.3.0;
        interface filtering { init: func() -> result<_, string>; }
        world filter { export filtering; }
    ",
    world: "filter",
});

struct Future;

impl exports::weir::plugin::filtering::Guest for Future {
    fn init() -> Result<(), String> {
        Ok(())
    }
}

export!(Future);
