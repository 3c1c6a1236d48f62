//! The `state` interface: a small per-sender key-value store that outlives a call (each call has
//! a fresh instance), e.g. for an access token. Bounded in entries and value size.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::HostState;
use crate::wit::state::Host;

const MAX_ENTRIES_PER_SENDER: usize = 64;
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// (sender, key) → (value, expiry).
type Entries = HashMap<(String, String), (Vec<u8>, Instant)>;

/// Shared by all senders of a process; keys are private to each sender.
#[derive(Debug, Default)]
pub struct StateStore {
    entries: Mutex<Entries>,
}

impl StateStore {
    fn get(&self, sender: &str, key: &str) -> Option<Vec<u8>> {
        let mut entries = self.entries.lock().unwrap();
        let id = (sender.to_string(), key.to_string());
        match entries.get(&id) {
            Some((value, expires)) if *expires > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(&id);
                None
            }
            None => None,
        }
    }

    fn set(&self, sender: &str, key: String, value: Vec<u8>, ttl: Duration) {
        if value.len() > MAX_VALUE_BYTES {
            tracing::warn!(
                sender,
                key,
                "plugin state value over {MAX_VALUE_BYTES} bytes not kept"
            );
            return;
        }
        let mut entries = self.entries.lock().unwrap();
        let now = Instant::now();
        entries.retain(|_, (_, expires)| *expires > now);
        let count = entries.keys().filter(|(s, _)| s == sender).count();
        let id = (sender.to_string(), key);
        if count >= MAX_ENTRIES_PER_SENDER && !entries.contains_key(&id) {
            tracing::warn!(
                sender,
                "plugin state full ({MAX_ENTRIES_PER_SENDER} entries); value not kept"
            );
            return;
        }
        entries.insert(id, (value, now + ttl));
    }

    fn remove(&self, sender: &str, key: &str) {
        self.entries
            .lock()
            .unwrap()
            .remove(&(sender.to_string(), key.to_string()));
    }
}

impl Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.sender.state.get(&self.sender.name, &key))
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_secs: u32) -> wasmtime::Result<()> {
        let ttl = Duration::from_secs(u64::from(ttl_secs));
        self.sender.state.set(&self.sender.name, key, value, ttl);
        Ok(())
    }

    fn remove(&mut self, key: String) -> wasmtime::Result<()> {
        self.sender.state.remove(&self.sender.name, &key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_do_not_see_each_others_keys() {
        let store = StateStore::default();
        store.set("a", "token".into(), b"x".to_vec(), Duration::from_secs(60));
        assert_eq!(store.get("a", "token"), Some(b"x".to_vec()));
        assert_eq!(store.get("b", "token"), None);
    }

    #[test]
    fn expired_values_are_gone() {
        let store = StateStore::default();
        store.set("a", "token".into(), b"x".to_vec(), Duration::ZERO);
        assert_eq!(store.get("a", "token"), None);
    }
}
