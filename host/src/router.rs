//! Which sender carries an email, and why.
//!
//! | rule | |
//! |---|---|
//! | 1 | a sender named by the caller (`--sender`) is used, or the send fails with the reason |
//! | 2 | only senders whose plugin handles the event are eligible |
//! | 3 | among the eligible: the `preferred` sender, then SMTP senders, then the rest in file order |
//! | 4 | no eligible sender: fail, saying for each sender why it was not eligible |
//!
//! The job-context rules (job source settings, job recipients) come with the routing work; the
//! decision is already a table of every sender with its verdict, so `route` can print it.

use crate::outcome::{Failure, FailureKind};
use crate::wit::types::EventKind;

/// What the router needs to know of a sender.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub plugin_id: &'a str,
    pub preferred: bool,
    pub events: &'a [EventKind],
}

/// A sender's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub sender: String,
    pub eligible: bool,
    pub reason: String,
}

/// The chosen sender and every sender's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub chosen: String,
    pub verdicts: Vec<Verdict>,
}

pub fn choose(
    candidates: &[Candidate<'_>],
    event: EventKind,
    explicit: Option<&str>,
) -> Result<Decision, Failure> {
    let event_name = crate::message::event_name(event);
    if let Some(name) = explicit {
        let Some(c) = candidates.iter().find(|c| c.name == name) else {
            let names: Vec<&str> = candidates.iter().map(|c| c.name).collect();
            return Err(Failure::new(
                FailureKind::InvalidSettings,
                format!(
                    "no sender named '{name}'; the settings file has: {}",
                    names.join(", ")
                ),
            ));
        };
        if !c.events.contains(&event) {
            return Err(Failure::new(
                FailureKind::InvalidMessage,
                format!(
                    "sender '{name}' ({}) does not handle {event_name} emails",
                    c.plugin_id
                ),
            ));
        }
        let verdicts = candidates
            .iter()
            .map(|o| Verdict {
                sender: o.name.to_string(),
                eligible: o.name == name,
                reason: if o.name == name {
                    "named by the caller".into()
                } else {
                    "another sender was named by the caller".into()
                },
            })
            .collect();
        return Ok(Decision {
            chosen: name.to_string(),
            verdicts,
        });
    }

    let rank = |c: &Candidate<'_>| match (c.preferred, c.plugin_id == "smtp") {
        (true, _) => 0,
        (false, true) => 1,
        (false, false) => 2,
    };
    let mut eligible: Vec<(usize, &Candidate<'_>)> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.events.contains(&event))
        .collect();
    eligible.sort_by_key(|(i, c)| (rank(c), *i));
    let chosen = eligible.first().map(|(_, c)| c.name.to_string());
    let verdicts: Vec<Verdict> = candidates
        .iter()
        .map(|c| {
            let handles = c.events.contains(&event);
            let reason = if !handles {
                format!(
                    "its plugin ({}) does not handle {event_name} emails",
                    c.plugin_id
                )
            } else if chosen.as_deref() == Some(c.name) {
                match rank(c) {
                    0 => "preferred sender".to_string(),
                    1 => "first SMTP sender (no preferred sender is eligible)".to_string(),
                    _ => "first eligible sender in the file".to_string(),
                }
            } else {
                "eligible, but ranked after the chosen sender".to_string()
            };
            Verdict {
                sender: c.name.to_string(),
                eligible: handles,
                reason,
            }
        })
        .collect();
    match chosen {
        Some(chosen) => Ok(Decision { chosen, verdicts }),
        None => {
            let why: Vec<String> = verdicts
                .iter()
                .map(|v| format!("{}: {}", v.sender, v.reason))
                .collect();
            Err(Failure::new(
                FailureKind::InvalidSettings,
                format!(
                    "no sender can carry {event_name} emails ({})",
                    why.join("; ")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[EventKind] = &[
        EventKind::JobOutput,
        EventKind::SavedScanCopy,
        EventKind::PinRequest,
        EventKind::QueueNotification,
    ];
    const NO_QUEUE: &[EventKind] = &[
        EventKind::JobOutput,
        EventKind::SavedScanCopy,
        EventKind::PinRequest,
    ];

    fn c<'a>(
        name: &'a str,
        plugin_id: &'a str,
        preferred: bool,
        events: &'a [EventKind],
    ) -> Candidate<'a> {
        Candidate {
            name,
            plugin_id,
            preferred,
            events,
        }
    }

    #[test]
    fn preferred_sender_wins_over_smtp_and_file_order() {
        let cs = [
            c("relay", "smtp", false, ALL),
            c("o365", "graph", true, NO_QUEUE),
        ];
        assert_eq!(
            choose(&cs, EventKind::PinRequest, None).unwrap().chosen,
            "o365"
        );
    }

    #[test]
    fn smtp_comes_before_other_plugins_without_a_preferred_sender() {
        let cs = [
            c("o365", "graph", false, NO_QUEUE),
            c("relay", "smtp", false, ALL),
        ];
        assert_eq!(
            choose(&cs, EventKind::JobOutput, None).unwrap().chosen,
            "relay"
        );
    }

    #[test]
    fn a_sender_whose_plugin_does_not_handle_the_event_is_skipped() {
        let cs = [
            c("o365", "graph", true, NO_QUEUE),
            c("relay", "smtp", false, ALL),
        ];
        let d = choose(&cs, EventKind::QueueNotification, None).unwrap();
        assert_eq!(d.chosen, "relay");
        assert!(!d.verdicts[0].eligible);
        assert!(
            d.verdicts[0]
                .reason
                .contains("does not handle queue-notification")
        );
    }

    #[test]
    fn no_eligible_sender_says_why_for_each() {
        let cs = [c("o365", "graph", false, NO_QUEUE)];
        let e = choose(&cs, EventKind::QueueNotification, None).unwrap_err();
        assert!(
            e.message
                .contains("o365: its plugin (graph) does not handle"),
            "{e}"
        );
    }

    #[test]
    fn an_explicit_sender_is_used_or_the_send_fails() {
        let cs = [
            c("relay", "smtp", false, ALL),
            c("o365", "graph", true, NO_QUEUE),
        ];
        assert_eq!(
            choose(&cs, EventKind::JobOutput, Some("relay"))
                .unwrap()
                .chosen,
            "relay"
        );
        assert_eq!(
            choose(&cs, EventKind::JobOutput, Some("nope"))
                .unwrap_err()
                .kind,
            FailureKind::InvalidSettings
        );
        assert_eq!(
            choose(&cs, EventKind::QueueNotification, Some("o365"))
                .unwrap_err()
                .kind,
            FailureKind::InvalidMessage
        );
    }
}
