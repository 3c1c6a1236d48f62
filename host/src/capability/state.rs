//! The `state` interface: a small per-sender key-value store that outlives a call (each call has
//! a fresh instance), e.g. for an access token. Bounded per sender in entries, key length, value
//! size and bytes altogether, so what the host holds for a plugin stays small however it asks.
//! A value over a bound is not kept (the plugin finds it missing, as after expiry), and the host
//! says so in a warning counted against the call's log budget.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::HostState;
use crate::wit::state::Host;

pub const MAX_ENTRIES_PER_SENDER: usize = 64;
pub const MAX_KEY_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Keys and values of one sender together.
pub const MAX_BYTES_PER_SENDER: usize = 1 << 20;

/// Why a value was not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotKept {
    #[error("plugin state key over {MAX_KEY_BYTES} bytes; value not kept")]
    KeyTooLong,
    #[error("plugin state value over {MAX_VALUE_BYTES} bytes; not kept")]
    ValueTooLarge,
    #[error("plugin state full ({MAX_ENTRIES_PER_SENDER} entries); value not kept")]
    TooManyEntries,
    #[error("plugin state full ({MAX_BYTES_PER_SENDER} bytes for this sender); value not kept")]
    TooManyBytes,
}

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

    fn set(&self, sender: &str, key: String, value: Vec<u8>, ttl: Duration) -> Result<(), NotKept> {
        if key.len() > MAX_KEY_BYTES {
            return Err(NotKept::KeyTooLong);
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(NotKept::ValueTooLarge);
        }
        let mut entries = self.entries.lock().unwrap();
        let now = Instant::now();
        entries.retain(|_, (_, expires)| *expires > now);
        let id = (sender.to_string(), key);
        let (mut count, mut bytes) = (0, 0);
        for ((s, k), (v, _)) in entries.iter() {
            if s == sender && *k != id.1 {
                count += 1;
                bytes += k.len() + v.len();
            }
        }
        if count >= MAX_ENTRIES_PER_SENDER {
            return Err(NotKept::TooManyEntries);
        }
        if bytes + id.1.len() + value.len() > MAX_BYTES_PER_SENDER {
            return Err(NotKept::TooManyBytes);
        }
        entries.insert(id, (value, now + ttl));
        Ok(())
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
        if let Err(not_kept) = self.sender.state.set(&self.sender.name, key, value, ttl)
            && self.log.allow(&self.sender.name)
        {
            tracing::warn!(sender = %self.sender.name, "{not_kept}");
        }
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
        store
            .set("a", "token".into(), b"x".to_vec(), Duration::from_secs(60))
            .unwrap();
        assert_eq!(store.get("a", "token"), Some(b"x".to_vec()));
        assert_eq!(store.get("b", "token"), None);
    }

    #[test]
    fn expired_values_are_gone() {
        let store = StateStore::default();
        store
            .set("a", "token".into(), b"x".to_vec(), Duration::ZERO)
            .unwrap();
        assert_eq!(store.get("a", "token"), None);
    }

    #[test]
    fn long_keys_and_large_values_are_not_kept() {
        let store = StateStore::default();
        let hour = Duration::from_secs(3600);
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(
            store.set("a", long_key.clone(), b"x".to_vec(), hour),
            Err(NotKept::KeyTooLong)
        );
        assert_eq!(store.get("a", &long_key), None);
        assert_eq!(
            store.set("a", "k".into(), vec![0; MAX_VALUE_BYTES + 1], hour),
            Err(NotKept::ValueTooLarge)
        );
    }

    #[test]
    fn a_sender_holds_at_most_its_byte_budget() {
        let store = StateStore::default();
        let hour = Duration::from_secs(3600);
        let mut kept = 0;
        for i in 0..MAX_ENTRIES_PER_SENDER {
            if store
                .set("a", format!("key{i}"), vec![0; MAX_VALUE_BYTES], hour)
                .is_ok()
            {
                kept += 1;
            }
        }
        assert!(kept * MAX_VALUE_BYTES <= MAX_BYTES_PER_SENDER);
        assert_eq!(kept, MAX_BYTES_PER_SENDER / (MAX_VALUE_BYTES + 5));
        // Replacing a kept value does not count the old one twice.
        assert!(
            store
                .set("a", "key0".into(), vec![1; MAX_VALUE_BYTES], hour)
                .is_ok()
        );
        // Another sender has its own budget.
        assert!(store.set("b", "key".into(), vec![0; 10], hour).is_ok());
    }
}
