//! A component that exports an interface unrelated to weir's contract.

wit_bindgen::generate!({
    inline: "
        package elsewhere:greeter@1.0.0;
        interface greet { hello: func(name: string) -> string; }
        world greeter { export greet; }
    ",
    world: "greeter",
});

struct Greeter;

impl exports::elsewhere::greeter::greet::Guest for Greeter {
    fn hello(name: String) -> String {
        format!("hello, {name}")
    }
}

export!(Greeter);
