//! Free TCP ports on 127.0.0.1 for test servers.
//!
//! A port is found by binding port 0 and dropping the listener, so another process may take it
//! before the server binds it; test servers fail loudly when that happens. Never binds anything
//! but loopback.

use std::net::{Ipv4Addr, TcpListener};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `port` if it can be bound on 127.0.0.1 right now (a fixed port such as 465 may be taken, or
/// need privileges), else `None`.
pub fn bindable(port: u16) -> Option<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .ok()
        .map(|_| port)
}
