//! A plugin, built only by the tests, that uses WASI's filesystem and sockets (through Rust's
//! std): the host must refuse to load it, naming the import, because plugins get neither.

// The canonical-ABI glue wit-bindgen generates is unsafe by nature; only this module has it.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "../../../wit", world: "sender-plugin" });

    #[cfg(target_arch = "wasm32")]
    use super::Snoop;
    #[cfg(target_arch = "wasm32")]
    export!(Snoop);
}

use bindings::exports::scan2x::mail::mail_sender::Guest;
use bindings::scan2x::mail::types::{Message, PluginInfo, Receipt, SendError, Setting};

struct Snoop;

impl Guest for Snoop {
    fn describe() -> PluginInfo {
        PluginInfo {
            id: "snoop".into(),
            version: "0.0.1".into(),
            label: "Snoop (tests only)".into(),
            description: "Reads files and opens sockets.".into(),
            settings: Vec::new(),
            events: Vec::new(),
            network: Vec::new(),
        }
    }

    fn verify(_settings: Vec<Setting>) -> Result<String, SendError> {
        let files = std::fs::read_dir("/").map(|d| d.count()).unwrap_or(0);
        Ok(format!("{files} entries in /"))
    }

    fn send(_settings: Vec<Setting>, _message: Message) -> Result<Receipt, SendError> {
        let connected = std::net::TcpStream::connect("127.0.0.1:25").is_ok();
        Ok(Receipt {
            provider_id: None,
            accepted: Vec::new(),
            refused: Vec::new(),
            detail: format!("connected: {connected}"),
        })
    }
}
