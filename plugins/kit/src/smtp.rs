//! The host's `smtp` capability with the kit's types: connect, secure, authenticate, then
//! MAIL/RCPT/DATA. The host checks `smtp://{host}:{port}` against the sender's grants first,
//! requires STARTTLS when asked, and never sends credentials over plaintext.

use crate::Secret;
use crate::bindings::scan2x::mail::{smtp, types as wit};
use crate::compose::{Envelope, Part};
use crate::convert;
use crate::error::SendError;
use crate::message::RefusedRecipient;
use crate::settings::{Endpoint, Login};

/// What the server said about a message it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Recipients the server accepted.
    pub accepted: Vec<String>,
    /// Recipients refused one by one; the message still went to the accepted ones.
    pub refused: Vec<RefusedRecipient>,
    /// The reply to the end of DATA, e.g. "250 2.0.0 Ok: queued as 4F1A2".
    pub reply: String,
}

fn credentials(login: Option<&Login<Secret>>) -> Option<wit::Credentials<'_>> {
    login.map(|login| wit::Credentials {
        username: login.username.clone(),
        password: &login.password,
    })
}

/// Sends the message (its [`Part`]s: the complete RFC 5322 message, CRLF line ends) to the
/// envelope's recipients. The host writes the attachments' bytes itself.
pub fn send(
    endpoint: &Endpoint,
    login: Option<&Login<Secret>>,
    envelope: &Envelope,
    message: &[Part],
) -> Result<Report, SendError> {
    let envelope = smtp::Envelope {
        mail_from: envelope.mail_from.clone(),
        rcpt_to: envelope.rcpt_to.clone(),
    };
    let report = smtp::send(
        &convert::endpoint(endpoint),
        credentials(login).as_ref(),
        &envelope,
        &convert::message_parts(message),
    )
    .map_err(convert::send_error_from_wit)?;
    Ok(Report {
        accepted: report.accepted,
        refused: report
            .refused
            .into_iter()
            .map(convert::refused_from_wit)
            .collect(),
        reply: report.reply,
    })
}

/// Connect, EHLO, TLS, AUTH, QUIT; no mail. Ok: what the server said it supports.
pub fn verify(endpoint: &Endpoint, login: Option<&Login<Secret>>) -> Result<String, SendError> {
    smtp::verify(&convert::endpoint(endpoint), credentials(login).as_ref())
        .map_err(convert::send_error_from_wit)
}
