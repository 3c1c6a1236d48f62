//! Sending one email along a routing decision: the chosen sender, then (with failover) the next
//! eligible ones while the failure is temporary. Every attempt is kept, so the result says which
//! senders were tried and what each answered. Permanent failures (rejected, settings, auth,
//! denied, a crashed plugin) are never retried elsewhere: another sender would not fix them, and
//! a message twice delivered is worse than one reported. Nor is `uncertain`: the email may be
//! delivered already, and only the caller can find out.
//!
//! A delivery from the outbox passes each sender's [`Throttle`] just before its plugin is
//! called; one refused its turn (the service is stopping) stops there, untried.

use crate::message::Email;
use crate::outcome::{Failure, FailureKind, Sent};
use crate::router::Decision;
use crate::runtime::{Runtime, Sender};
use crate::throttle::Throttle;

/// One sender tried.
#[derive(Debug)]
pub struct Attempt {
    pub sender: String,
    pub plugin: String,
    pub result: Result<Sent, Failure>,
}

/// Tries the decision's senders in order; returns every attempt, the last one decides. With a
/// throttle, each try first waits for its sender's turn; a turn refused (the throttle closed)
/// ends the tries there, so no attempt at all means none was made.
pub async fn deliver(
    runtime: &Runtime,
    senders: &[Sender],
    decision: &Decision,
    failover: bool,
    message: &Email,
    throttle: Option<&Throttle>,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let tries = if failover && !decision.explicit {
        decision.order.len()
    } else {
        1
    };
    for name in decision.order.iter().take(tries) {
        let Some(sender) = senders.iter().find(|s| &s.settings.name == name) else {
            continue;
        };
        let _turn = match throttle {
            Some(throttle) => match throttle.admit(name).await {
                Ok(turn) => turn,
                Err(_) => break,
            },
            None => None,
        };
        tracing::info!("sending through '{name}' ({})", decision.reason_for(name));
        let (answer, witnessed) = runtime.send_witnessed(sender, message).await;
        let result = crate::outcome::judge(answer.map_err(Failure::from), &witnessed);
        let again = matches!(&result, Err(f) if f.kind == FailureKind::Temporary);
        if let Err(f) = &result {
            tracing::info!("sender '{name}' failed: {}", f.message);
        }
        attempts.push(Attempt {
            sender: name.clone(),
            plugin: sender.plugin.info.id.clone(),
            result,
        });
        if !again {
            break;
        }
    }
    attempts
}
