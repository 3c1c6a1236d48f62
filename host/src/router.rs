//! Which sender carries an email, and why.
//!
//! | # | rule |
//! |---|---|
//! | 1 | A sender named by the caller (`--sender`) is used, or the send fails with the reason (its plugin does not handle the event, or job recipients and no `allow_job_recipients`). |
//! | 2 | Only senders whose plugin handles the event are eligible. |
//! | 3 | Recipients from the job configuration go out only through a sender with `allow_job_recipients`. |
//! | 4 | A sender named in the job's source settings comes first if it has `allow_job_source` and is eligible; otherwise the job's choice is set aside (and the table says why) and the rules below choose. |
//! | 5 | Then the `preferred` sender, then SMTP senders (those whose plugin needs an `smtp://` destination: SMTP is what every mail system takes, so it goes first among equals), then the rest, in file order ([`Rank`]). |
//! | 6 | No eligible sender: the send fails, saying for each sender why it was not eligible. |
//!
//! With `failover = true`, the eligible senders after the first are tried in the same order when
//! a send fails temporarily; a sender named by the caller is never replaced.
//! The decision is pure data: `route` prints it, `send` follows it, nothing here does I/O.

use crate::outcome::{Failure, FailureKind};
use crate::wit::event_name;
use crate::wit::types::EventKind;

/// What the router needs to know of a sender.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub plugin_id: &'a str,
    /// Its plugin speaks SMTP (rule 5): it declares an `smtp://` destination.
    pub speaks_smtp: bool,
    pub preferred: bool,
    pub allow_job_source: bool,
    pub allow_job_recipients: bool,
    pub events: &'a [EventKind],
}

/// Where an email comes from, when a job sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobContext {
    /// The job's name, for the log and the result.
    pub name: Option<String>,
    /// The sender named in the job's source settings.
    pub source_sender: Option<String>,
    /// Recipients defined in the job configuration (kept apart from recipients given directly).
    pub recipients: Vec<String>,
}

/// What is being routed.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub event: EventKind,
    /// `--sender`: the caller's own choice.
    pub explicit: Option<&'a str>,
    pub job: Option<&'a JobContext>,
}

/// One sender's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub sender: String,
    pub plugin: String,
    pub eligible: bool,
    pub reason: String,
}

/// The senders to try, in order (the first is the choice, the rest are for failover), and every
/// sender's verdict in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub order: Vec<String>,
    pub verdicts: Vec<Verdict>,
    /// Whether the caller named the sender (then there is no failover).
    pub explicit: bool,
}

impl Decision {
    pub fn chosen(&self) -> &str {
        &self.order[0]
    }

    pub fn reason_for(&self, sender: &str) -> &str {
        self.verdicts
            .iter()
            .find(|v| v.sender == sender)
            .map(|v| v.reason.as_str())
            .unwrap_or_default()
    }
}

/// Why a candidate may not carry this email, if it may not.
fn ineligible(c: &Candidate<'_>, request: &Request<'_>) -> Option<String> {
    if !c.events.contains(&request.event) {
        return Some(format!(
            "its plugin ({}) does not handle {} emails",
            c.plugin_id,
            event_name(request.event)
        ));
    }
    let job_recipients = request.job.is_some_and(|j| !j.recipients.is_empty());
    if job_recipients && !c.allow_job_recipients {
        return Some(
            "the email has recipients from the job configuration and allow_job_recipients is off"
                .into(),
        );
    }
    None
}

/// Where an eligible sender comes in the order (rules 4 and 5), first to last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// Named by the job's source settings, with `allow_job_source`.
    JobSource,
    Preferred,
    Smtp,
    /// The rest, in file order.
    Other,
}

impl Rank {
    fn of(c: &Candidate<'_>, job_choice: Option<&str>) -> Rank {
        if Some(c.name) == job_choice {
            Rank::JobSource
        } else if c.preferred {
            Rank::Preferred
        } else if c.speaks_smtp {
            Rank::Smtp
        } else {
            Rank::Other
        }
    }

    /// Why the first sender in the order was chosen.
    fn chosen(self) -> &'static str {
        match self {
            Rank::JobSource => "chosen: named by the job's source settings (allow_job_source)",
            Rank::Preferred => "chosen: the preferred sender",
            Rank::Smtp => "chosen: the first SMTP sender (no preferred sender can carry it)",
            Rank::Other => "chosen: the first eligible sender in the file",
        }
    }
}

pub fn choose(candidates: &[Candidate<'_>], request: &Request<'_>) -> Result<Decision, Failure> {
    let names = || {
        candidates
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = request.explicit {
        let Some(c) = candidates.iter().find(|c| c.name == name) else {
            return Err(Failure::new(
                FailureKind::InvalidSettings,
                format!(
                    "no sender named '{name}'; the settings file has: {}",
                    names()
                ),
            ));
        };
        if let Some(why) = ineligible(c, request) {
            return Err(Failure::new(
                FailureKind::InvalidMessage,
                format!("sender '{name}' was named, but it cannot carry this email: {why}"),
            ));
        }
        let verdicts = candidates
            .iter()
            .map(|o| Verdict {
                sender: o.name.to_string(),
                plugin: o.plugin_id.to_string(),
                eligible: o.name == name,
                reason: if o.name == name {
                    "named by the caller".into()
                } else {
                    "not used: the caller named another sender".into()
                },
            })
            .collect();
        return Ok(Decision {
            order: vec![name.to_string()],
            verdicts,
            explicit: true,
        });
    }

    // The job's own choice, if it may be honoured.
    let job_source = request.job.and_then(|j| j.source_sender.as_deref());
    let mut job_note = None;
    let mut job_choice = None;
    if let Some(source) = job_source {
        match candidates.iter().find(|c| c.name == source) {
            None => {
                job_note = Some(format!(
                    "the job's source settings name '{source}', which is not configured"
                ));
            }
            Some(c) if !c.allow_job_source => {}
            Some(c) if ineligible(c, request).is_some() => {}
            Some(c) => job_choice = Some(c.name),
        }
    }

    let rank = |c: &Candidate<'_>| Rank::of(c, job_choice);
    let mut eligible: Vec<(usize, &Candidate<'_>)> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| ineligible(c, request).is_none())
        .collect();
    eligible.sort_by_key(|(i, c)| (rank(c), *i));
    let order: Vec<String> = eligible.iter().map(|(_, c)| c.name.to_string()).collect();

    let verdicts: Vec<Verdict> = candidates
        .iter()
        .map(|c| {
            let position = order.iter().position(|n| n == c.name);
            let mut reason = match (ineligible(c, request), position) {
                (Some(why), _) => why,
                (None, Some(0)) => rank(c).chosen().to_string(),
                (None, Some(n)) => format!("eligible: number {} in line", n + 1),
                (None, None) => unreachable!("every eligible sender is in the order"),
            };
            if job_source == Some(c.name) && job_choice != Some(c.name) {
                if c.allow_job_source {
                    reason.push_str(
                        "; the job's source settings name it, but it cannot carry this email",
                    );
                } else {
                    reason.push_str(
                        "; the job's source settings name it, but allow_job_source is off",
                    );
                }
            }
            Verdict {
                sender: c.name.to_string(),
                plugin: c.plugin_id.to_string(),
                eligible: position.is_some(),
                reason,
            }
        })
        .collect();

    if order.is_empty() {
        let mut why: Vec<String> = verdicts
            .iter()
            .map(|v| format!("{}: {}", v.sender, v.reason))
            .collect();
        if let Some(note) = job_note {
            why.push(note);
        }
        return Err(Failure::new(
            FailureKind::InvalidSettings,
            format!(
                "no sender can carry this {} email: {}",
                event_name(request.event),
                why.join("; ")
            ),
        ));
    }
    if let Some(note) = job_note {
        tracing::warn!("{note}; the settings choose instead");
    }
    Ok(Decision {
        order,
        verdicts,
        explicit: false,
    })
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

    /// A sender: name, plugin, then its options as a string of flags:
    /// `p` preferred, `s` allow_job_source, `r` allow_job_recipients.
    fn c<'a>(name: &'a str, plugin_id: &'a str, flags: &str) -> Candidate<'a> {
        Candidate {
            name,
            plugin_id,
            speaks_smtp: plugin_id == "smtp",
            preferred: flags.contains('p'),
            allow_job_source: flags.contains('s'),
            allow_job_recipients: flags.contains('r'),
            events: if plugin_id == "smtp" { ALL } else { NO_QUEUE },
        }
    }

    fn job(source: Option<&str>, recipients: &[&str]) -> JobContext {
        JobContext {
            name: Some("Scan to Email".into()),
            source_sender: source.map(String::from),
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn route(
        cs: &[Candidate<'_>],
        event: EventKind,
        explicit: Option<&str>,
        job: Option<&JobContext>,
    ) -> Result<Vec<String>, Failure> {
        choose(
            cs,
            &Request {
                event,
                explicit,
                job,
            },
        )
        .map(|d| d.order)
    }

    #[test]
    fn the_rules_choose_as_the_table_says() {
        use EventKind::*;
        let j_src_graph = job(Some("graph"), &[]);
        let j_src_relay = job(Some("relay"), &[]);
        let j_rcpt = job(None, &["team@example.com"]);
        let j_src_imap_rcpt = job(Some("imap"), &["team@example.com"]);
        let j_src_missing = job(Some("gone"), &[]);
        // (senders, event, explicit, job, expected order or the failure's kind)
        type Case<'a> = (
            Vec<Candidate<'a>>,
            EventKind,
            Option<&'a str>,
            Option<&'a JobContext>,
            Result<Vec<&'a str>, FailureKind>,
        );
        let cases: Vec<Case<'_>> = vec![
            // rule 5: preferred, then SMTP, then file order
            (
                vec![c("relay", "smtp", ""), c("graph", "graph", "p")],
                PinRequest,
                None,
                None,
                Ok(vec!["graph", "relay"]),
            ),
            (
                vec![c("graph", "graph", ""), c("relay", "smtp", "")],
                JobOutput,
                None,
                None,
                Ok(vec!["relay", "graph"]),
            ),
            (
                vec![c("graph", "graph", ""), c("imap", "imap", "")],
                SavedScanCopy,
                None,
                None,
                Ok(vec!["graph", "imap"]),
            ),
            (
                vec![c("a", "smtp", ""), c("b", "smtp", "p"), c("c", "smtp", "")],
                JobOutput,
                None,
                None,
                Ok(vec!["b", "a", "c"]),
            ),
            // rule 2: the event must be handled
            (
                vec![c("graph", "graph", "p"), c("relay", "smtp", "")],
                QueueNotification,
                None,
                None,
                Ok(vec!["relay"]),
            ),
            (
                vec![c("graph", "graph", ""), c("imap", "imap", "")],
                QueueNotification,
                None,
                None,
                Err(FailureKind::InvalidSettings),
            ),
            // rule 4: the job's source sender, only with allow_job_source
            (
                vec![c("relay", "smtp", "p"), c("graph", "graph", "s")],
                JobOutput,
                None,
                Some(&j_src_graph),
                Ok(vec!["graph", "relay"]),
            ),
            (
                vec![c("relay", "smtp", "p"), c("graph", "graph", "")],
                JobOutput,
                None,
                Some(&j_src_graph),
                Ok(vec!["relay", "graph"]),
            ),
            (
                vec![c("relay", "smtp", "s"), c("graph", "graph", "p")],
                JobOutput,
                None,
                Some(&j_src_relay),
                Ok(vec!["relay", "graph"]),
            ),
            (
                vec![c("relay", "smtp", "")],
                JobOutput,
                None,
                Some(&j_src_missing),
                Ok(vec!["relay"]),
            ),
            // rule 3: job recipients need allow_job_recipients
            (
                vec![c("relay", "smtp", "p"), c("graph", "graph", "r")],
                JobOutput,
                None,
                Some(&j_rcpt),
                Ok(vec!["graph"]),
            ),
            (
                vec![c("relay", "smtp", "p"), c("graph", "graph", "")],
                JobOutput,
                None,
                Some(&j_rcpt),
                Err(FailureKind::InvalidSettings),
            ),
            // rules 3 and 4 together: the job's sender lacks allow_job_recipients
            (
                vec![c("relay", "smtp", "r"), c("imap", "imap", "s")],
                JobOutput,
                None,
                Some(&j_src_imap_rcpt),
                Ok(vec!["relay"]),
            ),
            (
                vec![c("relay", "smtp", "r"), c("imap", "imap", "sr")],
                JobOutput,
                None,
                Some(&j_src_imap_rcpt),
                Ok(vec!["imap", "relay"]),
            ),
            // rule 1: the caller's sender, or a failure
            (
                vec![c("relay", "smtp", ""), c("graph", "graph", "p")],
                JobOutput,
                Some("relay"),
                None,
                Ok(vec!["relay"]),
            ),
            (
                vec![c("relay", "smtp", "")],
                JobOutput,
                Some("nope"),
                None,
                Err(FailureKind::InvalidSettings),
            ),
            (
                vec![c("relay", "smtp", ""), c("graph", "graph", "p")],
                QueueNotification,
                Some("graph"),
                None,
                Err(FailureKind::InvalidMessage),
            ),
            (
                vec![c("relay", "smtp", ""), c("graph", "graph", "")],
                JobOutput,
                Some("relay"),
                Some(&j_rcpt),
                Err(FailureKind::InvalidMessage),
            ),
            (
                vec![c("relay", "smtp", "r"), c("graph", "graph", "s")],
                JobOutput,
                Some("relay"),
                Some(&j_src_graph),
                Ok(vec!["relay"]),
            ),
        ];
        for (i, (cs, event, explicit, job, expected)) in cases.into_iter().enumerate() {
            let got = route(&cs, event, explicit, job);
            match expected {
                Ok(order) => assert_eq!(
                    got.as_ref().map_err(|e| e.message.clone()),
                    Ok(&order.iter().map(|s| s.to_string()).collect()),
                    "case {i}"
                ),
                Err(kind) => assert_eq!(got.map_err(|e| e.kind), Err(kind), "case {i}"),
            }
        }
    }

    #[test]
    fn no_eligible_sender_says_why_for_each() {
        let cs = [c("graph", "graph", ""), c("relay", "smtp", "")];
        let j = job(None, &["team@example.com"]);
        let e = route(&cs, EventKind::QueueNotification, None, Some(&j)).unwrap_err();
        assert!(
            e.message
                .contains("graph: its plugin (graph) does not handle queue-notification"),
            "{e}"
        );
        assert!(
            e.message
                .contains("relay: the email has recipients from the job configuration"),
            "{e}"
        );
    }

    #[test]
    fn a_job_source_without_allow_job_source_is_explained() {
        let cs = [c("relay", "smtp", "p"), c("graph", "graph", "")];
        let j = job(Some("graph"), &[]);
        let d = choose(
            &cs,
            &Request {
                event: EventKind::JobOutput,
                explicit: None,
                job: Some(&j),
            },
        )
        .unwrap();
        assert_eq!(d.chosen(), "relay");
        assert_eq!(d.reason_for("relay"), "chosen: the preferred sender");
        assert!(
            d.reason_for("graph")
                .ends_with("the job's source settings name it, but allow_job_source is off"),
            "{d:?}"
        );
    }

    #[test]
    fn an_explicit_choice_has_no_failover() {
        let cs = [c("a", "smtp", ""), c("b", "smtp", "")];
        let d = choose(
            &cs,
            &Request {
                event: EventKind::JobOutput,
                explicit: Some("b"),
                job: None,
            },
        )
        .unwrap();
        assert!(d.explicit);
        assert_eq!(d.order, ["b"]);
    }
}
