//! The per-sender limits of deliveries from the outbox: at most `max_concurrent` at once and at
//! most `max_per_minute` started in any 60 seconds ([`Throttle`]). A delivery waits for its turn
//! ([`Throttle::admit`]) just before its plugin is called and holds a [`Permit`] until the call
//! returns; the worker keeps the email's claim alive while it waits. `send` (one email, its own
//! process) is not throttled.
//!
//! The limits are the host's, per sender name: a reload that keeps a sender's limits keeps its
//! gate (the deliveries in flight still count, and the last minute's starts); changed limits
//! start a new gate for the deliveries that follow.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::settings::Settings;

/// The window `max_per_minute` counts starts in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// One sender's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_concurrent: u32,
    pub max_per_minute: u32,
}

/// One sender's gate: a semaphore for the deliveries in flight, the start times of the last
/// [`WINDOW`] for the rate.
#[derive(Debug)]
struct Gate {
    limits: Limits,
    in_flight: Arc<Semaphore>,
    /// At most `max_per_minute` instants, oldest first.
    started: Mutex<VecDeque<Instant>>,
}

impl Gate {
    fn new(limits: Limits) -> Gate {
        Gate {
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_concurrent as usize)),
            started: Mutex::new(VecDeque::with_capacity(limits.max_per_minute as usize)),
        }
    }

    /// A start now if the window has room (recorded), else the instant it will.
    fn start_or_wait(&self) -> Result<(), Instant> {
        let now = Instant::now();
        let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        while started.front().is_some_and(|t| *t + WINDOW <= now) {
            started.pop_front();
        }
        if started.len() < self.limits.max_per_minute as usize {
            started.push_back(now);
            Ok(())
        } else {
            // Full: the oldest start leaves the window first.
            Err(started[0] + WINDOW)
        }
    }
}

/// The gates of every sender of one settings file.
#[derive(Debug, Clone)]
pub struct Throttle {
    gates: HashMap<String, Arc<Gate>>,
    /// True once [`Throttle::close`] was called: waiting deliveries give up their turn.
    closed: watch::Sender<bool>,
}

/// A turn to deliver through one sender: counts against its `max_concurrent` until dropped.
#[derive(Debug)]
pub struct Permit(#[allow(dead_code)] OwnedSemaphorePermit);

/// Why [`Throttle::admit`] gave no turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The throttle was closed (the service is stopping): the email is handed back untried.
    Closed,
}

impl Throttle {
    /// Gates for the senders of `settings`, keeping those of `previous` whose sender has the same
    /// name and limits.
    pub fn new(settings: &Settings, previous: Option<&Throttle>) -> Throttle {
        let gates = settings
            .senders
            .iter()
            .map(|s| {
                let limits = Limits {
                    max_concurrent: s.max_concurrent(),
                    max_per_minute: s.max_per_minute(),
                };
                let gate = previous
                    .and_then(|p| p.gates.get(&s.name))
                    .filter(|g| g.limits == limits)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Gate::new(limits)));
                (s.name.clone(), gate)
            })
            .collect();
        let closed = previous
            .map(|p| p.closed.clone())
            .unwrap_or_else(|| watch::channel(false).0);
        Throttle { gates, closed }
    }

    /// The limits of sender `name`, if it has a gate.
    pub fn limits(&self, name: &str) -> Option<Limits> {
        self.gates.get(name).map(|g| g.limits)
    }

    /// How many deliveries may be in flight at once through all senders together.
    pub fn total_concurrent(&self) -> usize {
        self.gates
            .values()
            .map(|g| g.limits.max_concurrent as usize)
            .sum::<usize>()
            .max(1)
    }

    /// Waits for a turn to deliver through `sender`: a free place among its `max_concurrent`,
    /// then room in its minute. A sender without a gate (none of these settings) is let through.
    pub async fn admit(&self, sender: &str) -> Result<Option<Permit>, Refused> {
        let Some(gate) = self.gates.get(sender) else {
            return Ok(None);
        };
        let mut closed = self.closed.subscribe();
        if *closed.borrow() {
            return Err(Refused::Closed);
        }
        let permit = tokio::select! {
            permit = gate.in_flight.clone().acquire_owned() => {
                permit.expect("a gate's semaphore is never closed")
            }
            _ = closed.wait_for(|c| *c) => return Err(Refused::Closed),
        };
        loop {
            match gate.start_or_wait() {
                Ok(()) => return Ok(Some(Permit(permit))),
                Err(until) => tokio::select! {
                    () = tokio::time::sleep_until(until) => {}
                    _ = closed.wait_for(|c| *c) => return Err(Refused::Closed),
                },
            }
        }
    }

    /// Whether [`Throttle::close`] was called.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Every delivery waiting for a turn (now or later, through any throttle made from this one)
    /// gives up: the service is stopping. Deliveries holding a permit are not affected.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings of one sender `a` with `keys` in its table.
    fn settings(keys: &str) -> Settings {
        let text = format!("[senders.a]\nplugin = \"smtp\"\n{keys}");
        Settings::parse(std::path::Path::new("s.toml"), &text).unwrap()
    }

    fn throttle(keys: &str) -> Throttle {
        Throttle::new(&settings(keys), None)
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_lets_max_per_minute_start_then_each_waits_for_the_oldest_to_leave() {
        let t = throttle("max_concurrent = 64\nmax_per_minute = 3\n");
        let begin = Instant::now();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(t.admit("a").await.unwrap());
        }
        assert_eq!(Instant::now(), begin, "three start at once");
        tokio::time::advance(Duration::from_secs(10)).await;
        held.push(t.admit("a").await.unwrap());
        assert_eq!(Instant::now() - begin, WINDOW, "the fourth waits a minute");
        held.push(t.admit("a").await.unwrap());
        held.push(t.admit("a").await.unwrap());
        assert_eq!(Instant::now() - begin, WINDOW, "as the first three left");
        held.push(t.admit("a").await.unwrap());
        assert_eq!(Instant::now() - begin, 2 * WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_max_concurrent_hold_a_permit_and_a_dropped_one_frees_a_place() {
        let t = throttle("max_concurrent = 2\nmax_per_minute = 100000\n");
        let first = t.admit("a").await.unwrap();
        let _second = t.admit("a").await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_secs(3600), t.admit("a")).await;
        assert!(waiting.is_err(), "a third waits while two are in flight");
        drop(first);
        let third = tokio::time::timeout(Duration::from_millis(1), t.admit("a")).await;
        assert!(matches!(third, Ok(Ok(Some(_)))), "{third:?}");
        assert_eq!(t.total_concurrent(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn closing_refuses_the_waiting_and_the_later_not_the_holders() {
        let t = throttle("max_concurrent = 1\n");
        let held = t.admit("a").await.unwrap();
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move { t.admit("a").await.map(|p| p.is_some()) })
        };
        tokio::task::yield_now().await;
        assert!(!t.is_closed());
        t.close();
        assert!(t.is_closed());
        assert_eq!(waiter.await.unwrap(), Err(Refused::Closed));
        assert_eq!(t.admit("a").await.map(|_| ()), Err(Refused::Closed));
        drop(held);
        assert!(
            t.admit("other").await.unwrap().is_none(),
            "no gate, no limit"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_keeps_the_gate_of_a_sender_whose_limits_are_the_same() {
        let old = throttle("max_concurrent = 1\n");
        let held = old.admit("a").await.unwrap();
        let same = Throttle::new(&settings("max_concurrent = 1\n"), Some(&old));
        let busy = tokio::time::timeout(Duration::from_secs(60), same.admit("a")).await;
        assert!(busy.is_err(), "the delivery in flight still counts");
        let changed = Throttle::new(&settings("max_concurrent = 2\n"), Some(&old));
        assert_eq!(
            changed.limits("a"),
            Some(Limits {
                max_concurrent: 2,
                max_per_minute: 30
            })
        );
        assert!(changed.admit("a").await.unwrap().is_some());
        drop(held);
    }
}
