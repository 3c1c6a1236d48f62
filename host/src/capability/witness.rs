//! What the host itself saw of one plugin call, beside what the plugin answers: a hand-over whose
//! answer was lost, the recipients a server refused for now, and the server the call is waiting
//! on. The outcome layer reads it when the call ends ([`crate::outcome::judge`]): a failure after
//! a lost answer is `uncertain`, never `temporary`, so nothing sends the email again on its own;
//! a call stopped while it waits on a server is that server's time-out, not a plugin crash; and a
//! certificate the host refused is a settings problem, even where the plugin only got a
//! connection error (WIT 0.2.0's `http-error` has no case for it).
//!
//! A hand-over is the write after which a server may act on the message, so that an answer lost
//! after it leaves the email maybe delivered:
//!
//! | protocol | the hand-over | answered by |
//! |---|---|---|
//! | SMTP | the final `.` of DATA | its reply, whatever it says |
//! | IMAP | the last byte of APPEND's literal | the tagged reply |
//! | HTTP | the whole request of a POST or PATCH (RFC 9110's methods that are not idempotent), except an OAuth token request (a form with `grant_type` or a secret in it) | the status line |
//!
//! The host can't tell an HTTP POST that creates a draft from one that sends it: both count, so
//! a lost answer to either is `uncertain`. That errs towards asking the caller, never towards a
//! duplicate.
//!
//! The plugin never sees any of this; it is the host's account of the call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One call's witness, shared by its store and [`crate::runtime::Runtime`]'s call, which reads it
/// before and after the call's future is dropped.
#[derive(Debug, Default, Clone)]
pub struct Witness(Arc<Mutex<Witnessed>>);

/// What a witness saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Witnessed {
    /// Each hand-over whose answer never came, in one line: where, and why no answer.
    pub lost: Vec<String>,
    /// Addresses a server refused for now (a 4xx to RCPT TO), as the envelope spelled them.
    pub deferred: Vec<String>,
    /// The server the call is waiting on right now, e.g. "smtp 127.0.0.1:25".
    pub waiting_on: Option<String>,
    /// A server certificate the host refused in an HTTP request, said for the administrator:
    /// a settings problem (`ca_file`), whatever the plugin makes of the connection error it got.
    pub certificate: Option<String>,
}

impl Witness {
    fn seen(&self) -> MutexGuard<'_, Witnessed> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything seen so far.
    pub fn snapshot(&self) -> Witnessed {
        self.seen().clone()
    }

    /// The host refused a server's certificate (the first one is kept).
    pub fn certificate_refused(&self, what: String) {
        self.seen().certificate.get_or_insert(what);
    }

    /// A server refused `address` for now: a later try may succeed.
    pub fn deferred(&self, address: &str) {
        self.seen().deferred.push(address.to_owned());
    }

    /// The message is about to be complete at the server, `what` saying where and how (e.g. "the
    /// whole message was written to mx:25"); the answer is owed until [`HandOver::answered`].
    pub fn hand_over(&self, what: String) -> HandOver {
        HandOver {
            witness: self.clone(),
            what: Some(what),
            made: None,
        }
    }

    /// A hand-over that counts only once `made` is set: a request whose last byte is taken by
    /// another task (hyper's connection) some time after the request starts.
    pub fn hand_over_once(&self, what: String, made: Arc<AtomicBool>) -> HandOver {
        HandOver {
            witness: self.clone(),
            what: Some(what),
            made: Some(made),
        }
    }

    /// The call waits on `server` until the guard is dropped.
    pub fn waiting_on(&self, server: String) -> Waiting {
        let before = self.seen().waiting_on.replace(server);
        Waiting {
            witness: self.clone(),
            before,
        }
    }
}

/// A hand-over whose answer is owed. Dropped without [`HandOver::answered`] (an error, a time-out,
/// or the call stopped while it waited), it is recorded as lost.
#[must_use = "a hand-over is lost unless it is answered"]
pub struct HandOver {
    witness: Witness,
    what: Option<String>,
    made: Option<Arc<AtomicBool>>,
}

impl HandOver {
    /// The server answered: whatever it said, the outcome is known.
    pub fn answered(mut self) {
        self.what = None;
    }

    /// Nothing reached the server (the connection was never made): there is nothing to lose.
    pub fn never_made(mut self) {
        self.what = None;
    }

    /// No answer came, for the reason given ("timed out after 600 s").
    pub fn lost(mut self, why: &str) {
        self.record(why);
    }

    fn record(&mut self, why: &str) {
        let made = self.made.as_ref().is_none_or(|m| m.load(Ordering::Acquire));
        if let Some(what) = self.what.take()
            && made
        {
            self.witness.seen().lost.push(format!("{what}; then {why}"));
        }
    }
}

impl Drop for HandOver {
    fn drop(&mut self) {
        self.record("the call ended before the answer came");
    }
}

/// A wait on a server, cleared when dropped.
pub struct Waiting {
    witness: Witness,
    before: Option<String>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.witness.seen().waiting_on = self.before.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answered_hand_over_leaves_nothing_and_an_unanswered_one_is_lost() {
        let witness = Witness::default();
        witness.hand_over("sent to a".into()).answered();
        assert!(witness.snapshot().lost.is_empty());
        witness
            .hand_over("sent to b".into())
            .lost("timed out after 600 s");
        drop(witness.hand_over("sent to c".into()));
        assert_eq!(
            witness.snapshot().lost,
            [
                "sent to b; then timed out after 600 s",
                "sent to c; then the call ended before the answer came"
            ]
        );
    }

    #[test]
    fn a_hand_over_that_was_never_made_is_not_lost() {
        let witness = Witness::default();
        let made = Arc::new(AtomicBool::new(false));
        drop(witness.hand_over_once("request 1".into(), made.clone()));
        witness
            .hand_over_once("request 2".into(), made.clone())
            .lost("reset");
        assert!(witness.snapshot().lost.is_empty());
        made.store(true, Ordering::Release);
        witness
            .hand_over_once("request 3".into(), made)
            .lost("reset");
        assert_eq!(witness.snapshot().lost, ["request 3; then reset"]);
    }

    #[test]
    fn waiting_is_set_while_the_guard_lives() {
        let witness = Witness::default();
        {
            let _outer = witness.waiting_on("smtp mx:25".into());
            {
                let _inner = witness.waiting_on("http login".into());
                assert_eq!(witness.snapshot().waiting_on.as_deref(), Some("http login"));
            }
            assert_eq!(witness.snapshot().waiting_on.as_deref(), Some("smtp mx:25"));
        }
        assert_eq!(witness.snapshot().waiting_on, None);
    }
}
