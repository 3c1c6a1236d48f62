//! A plugin, built only by the tests, against a WIT version this host does not know
//! (`scan2x:mail@9.0.0`): the host must refuse it at load, naming both versions.

// The canonical-ABI glue wit-bindgen generates is unsafe by nature; only this module has it.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        inline: "
            package scan2x:mail@9.0.0;
            interface mail-sender {
                describe: func() -> string;
            }
            world sender-plugin {
                export mail-sender;
            }
        ",
        world: "sender-plugin",
    });

    #[cfg(target_arch = "wasm32")]
    use super::Future;
    #[cfg(target_arch = "wasm32")]
    export!(Future);
}

struct Future;

impl bindings::exports::scan2x::mail::mail_sender::Guest for Future {
    fn describe() -> String {
        "from the future".into()
    }
}
