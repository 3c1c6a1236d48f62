//! Free TCP ports on 127.0.0.1 for test servers.
//!
//! A port is found by binding port 0 and dropping the listener, so another process may take it
//! before the server binds it; the servers started on such a port try again with a new one when
//! that happens. The fixed ports the implicit-TLS tests need (465, 993) are taken in turn:
//! [`hold`] serializes the tests of this binary that use one. Never binds anything but loopback.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, MutexGuard};

/// The fixed ports tests share, each with its lock.
static FIXED: [(u16, Mutex<()>); 2] = [(465, Mutex::new(())), (993, Mutex::new(()))];

/// The fixed `port` for this test alone while the guard lives (another test that failed while
/// holding it leaves it free, not poisoned).
pub fn hold(port: u16) -> MutexGuard<'static, ()> {
    let (_, lock) = FIXED
        .iter()
        .find(|(p, _)| *p == port)
        .unwrap_or_else(|| panic!("port {port} is not one of the fixed test ports"));
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

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

/// How many times a server started on a port from [`free_port`] is started again, on a new
/// port, when another process took the port first.
pub const ATTEMPTS: u32 = 5;

/// Whether a server's start failed because its port was taken (the error holds its output).
pub fn taken(error: &str) -> bool {
    error
        .to_ascii_lowercase()
        .contains("address already in use")
}
