//! What an IMAP server answers, read and judged: the untagged data a command gathers
//! ([`Untagged`]), its tagged verdict ([`Reply`], a UID or a [`Refusal`]), and what a refusal
//! means for the plugin ([`classify`]). async-imap is used here only as the reader: its stream
//! buffers what the server sends and imap-proto parses it; every command is written by the host
//! (`session`, `login`), so async-imap never sees one.
//!
//! Reply codes are read from plain facts, unit-tested here: the codes imap-proto parses
//! (RFC 3501's, `APPENDUID` …) by name, and RFC 5530's (`[AUTHENTICATIONFAILED]`,
//! `[NONEXISTENT]`, `[OVERQUOTA]` …), which imap-proto leaves in the text, from the text.

use std::future::Future;
use std::time::Duration;

use async_imap::Connection;
use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{
    Capability, MailboxDatum, NameAttribute, Response, ResponseCode, Status,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::temporary;
use super::wire;
use crate::wit::imap::Folder;
use crate::wit::types::SendError;

/// The protocol step a reply answers; it decides how a refusal is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Greeting,
    Starttls,
    Login,
    List,
    Examine,
    Create,
    Append,
    Logout,
}

impl Step {
    pub fn doing(self) -> &'static str {
        match self {
            Step::Greeting => "connecting to",
            Step::Starttls => "starting TLS with",
            Step::Login => "logging in to",
            Step::List => "listing the folders of",
            Step::Examine => "examining a folder on",
            Step::Create => "creating a folder on",
            Step::Append => "appending the message to",
            Step::Logout => "logging out of",
        }
    }
}

/// A tagged reply that was not OK, as plain data (so the decision below is unit-tested).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `NO`, `BAD` or `BYE`.
    pub status: &'static str,
    /// The response code, upper case, without brackets: `TRYCREATE`, `AUTHENTICATIONFAILED`.
    pub code: Option<String>,
    /// The server's human text (with the code, as the server sent it).
    pub text: String,
}

impl Refusal {
    pub fn of(status: &Status, code: Option<&ResponseCode<'_>>, information: Option<&str>) -> Self {
        let information = information.unwrap_or_default().trim().to_string();
        let known = code.and_then(code_name).map(str::to_string);
        // imap-proto parses only the RFC 3501 codes and a few extensions'; RFC 5530 codes
        // ([AUTHENTICATIONFAILED], [NONEXISTENT], [OVERQUOTA] …) stay at the start of the text.
        let unknown = || {
            information
                .strip_prefix('[')
                .and_then(|rest| rest.split([']', ' ']).next())
                .map(str::to_ascii_uppercase)
        };
        let code = known.or_else(unknown);
        let text = match (&code, information.starts_with('[')) {
            (Some(code), false) => format!("[{code}] {information}"),
            _ => information,
        };
        Refusal {
            status: status_word(status),
            code,
            text,
        }
    }

    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    pub fn said(&self) -> String {
        format!("{} {}", self.status, self.text)
    }
}

fn status_word(status: &Status) -> &'static str {
    match status {
        Status::No => "NO",
        Status::Bad => "BAD",
        Status::Bye => "BYE",
        Status::Ok => "OK",
        Status::PreAuth => "PREAUTH",
    }
}

/// The name a code has on the wire, for a code imap-proto parsed out of the text.
fn code_name(code: &ResponseCode<'_>) -> Option<&'static str> {
    Some(match code {
        ResponseCode::Alert => "ALERT",
        ResponseCode::BadCharset(_) => "BADCHARSET",
        ResponseCode::Capabilities(_) => "CAPABILITY",
        ResponseCode::HighestModSeq(_) => "HIGHESTMODSEQ",
        ResponseCode::Parse => "PARSE",
        ResponseCode::PermanentFlags(_) => "PERMANENTFLAGS",
        ResponseCode::ReadOnly => "READ-ONLY",
        ResponseCode::ReadWrite => "READ-WRITE",
        ResponseCode::TryCreate => "TRYCREATE",
        ResponseCode::UidNext(_) => "UIDNEXT",
        ResponseCode::UidValidity(_) => "UIDVALIDITY",
        ResponseCode::Unseen(_) => "UNSEEN",
        ResponseCode::AppendUid(..) => "APPENDUID",
        ResponseCode::CopyUid(..) => "COPYUID",
        ResponseCode::UidNotSticky => "UIDNOTSTICKY",
        ResponseCode::MetadataLongEntries(_)
        | ResponseCode::MetadataMaxSize(_)
        | ResponseCode::MetadataTooMany
        | ResponseCode::MetadataNoPrivate => "METADATA",
        // A code a later imap-proto parses: none of those decides anything here.
        _ => return None,
    })
}

/// The `send-error` for a refused step: what should happen next.
pub fn classify(step: Step, at: &str, subject: &str, refusal: &Refusal) -> SendError {
    let said = refusal.said();
    if refusal.is("UNAVAILABLE") || refusal.is("INUSE") || refusal.is("SERVERBUG") {
        return temporary(format!("{at} is busy {} {subject}: {said}", step.doing()));
    }
    if refusal.status == "BYE" {
        return temporary(format!(
            "{at} closed the connection {} it: {said}",
            step.doing()
        ));
    }
    match step {
        Step::Login => {
            if refusal.is("PRIVACYREQUIRED") {
                return SendError::InvalidSettings(format!(
                    "{at} refuses the login on this connection: {said}"
                ));
            }
            SendError::AuthFailed(format!(
                "{at} refused the login{subject}: {said}; check username and password"
            ))
        }
        _ if refusal.is("TRYCREATE") || refusal.is("NONEXISTENT") => SendError::InvalidSettings(
            format!("{at} has no folder {subject}: {said}; check the mailbox setting"),
        ),
        _ if refusal.is("OVERQUOTA") => temporary(format!(
            "the account on {at} is over its quota {} {subject}: {said}",
            step.doing()
        )),
        _ if refusal.is("LIMIT") || refusal.is("TOOBIG") => {
            SendError::InvalidMessage(format!("{at} refused the message as too large: {said}"))
        }
        _ if refusal.is("NOPERM") || refusal.is("CANNOT") => SendError::InvalidSettings(format!(
            "{at} does not let this account do that with {subject}: {said}; check the mailbox \
             setting"
        )),
        _ => SendError::Rejected(format!("{at} refused {} {subject}: {said}", step.doing())),
    }
}

/// Runs one step under a time limit; a failure to talk (I/O, time-out) is temporary.
pub async fn timed<T, E: std::fmt::Display>(
    step: Step,
    at: &str,
    limit: Duration,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, SendError> {
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(temporary(format!("failed {} {at}: {e}", step.doing()))),
        Err(_) => Err(temporary(format!(
            "timed out after {} s {} {at}",
            limit.as_secs(),
            step.doing()
        ))),
    }
}

/// At most this many untagged responses to one command: no real account lists more folders.
/// With [`super::budget::MAX_ANSWER_BYTES`], it bounds what the host gathers for one command.
const MAX_UNTAGGED: usize = 20_000;

/// What the untagged data of a reply said, gathered while reading it.
#[derive(Debug, Default)]
pub struct Untagged {
    /// How many untagged responses were read.
    count: usize,
    /// CAPABILITY names, upper case.
    pub capabilities: Vec<String>,
    pub folders: Vec<Folder>,
    /// The message count of the folder EXAMINE opened.
    pub exists: Option<u32>,
}

impl Untagged {
    pub fn take(&mut self, response: &Response<'_>) -> std::io::Result<()> {
        self.count += 1;
        if self.count > MAX_UNTAGGED {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the server sent more than {MAX_UNTAGGED} untagged responses to one command"
                ),
            ));
        }
        match response {
            Response::Capabilities(list) => {
                self.capabilities.extend(list.iter().map(capability_name));
            }
            Response::MailboxData(MailboxDatum::List(list)) => self.folders.push(Folder {
                name: wire::decode_mutf7(&list.name),
                special_use: list
                    .name_attributes
                    .iter()
                    .filter_map(special_use)
                    .collect(),
            }),
            Response::MailboxData(MailboxDatum::Exists(n)) => self.exists = Some(*n),
            _ => {}
        }
        Ok(())
    }
}

/// A tagged command's outcome: its untagged data and either the APPENDUID's UID (when the
/// server gave one) or the refusal.
pub struct Reply {
    pub untagged: Untagged,
    pub done: Result<Option<u32>, Refusal>,
}

/// The tagged reply's verdict.
fn verdict(
    status: &Status,
    code: Option<&ResponseCode<'_>>,
    information: Option<&str>,
) -> Result<Option<u32>, Refusal> {
    match status {
        Status::Ok => Ok(match code {
            Some(ResponseCode::AppendUid(_, uids)) => uids.first().map(|u| match u {
                UidSetMember::Uid(uid) => *uid,
                UidSetMember::UidRange(range) => *range.start(),
            }),
            _ => None,
        }),
        other => Err(Refusal::of(other, code, information)),
    }
}

/// Reads until the reply tagged `tag` (or a BYE), gathering the untagged data.
pub async fn read_done<T>(
    conn: &mut Connection<T>,
    tag: &str,
    mut untagged: Untagged,
) -> std::io::Result<Reply>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    loop {
        let Some(response) = conn.read_response().await? else {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        };
        let parsed = response.parsed();
        match ending(parsed, tag) {
            Some(done) => return Ok(Reply { untagged, done }),
            None => untagged.take(parsed)?,
        }
    }
}

/// Reads until the server's `+` (a continuation request: go on with the literal, or with the
/// SASL response): `None`; or until the command tagged `tag` ended without one (the server
/// refused right away): its verdict.
pub async fn continuation<T>(
    conn: &mut Connection<T>,
    tag: &str,
) -> std::io::Result<Option<Result<Option<u32>, Refusal>>>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    loop {
        let Some(response) = conn.read_response().await? else {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        };
        let parsed = response.parsed();
        if let Response::Continue(_) = parsed {
            return Ok(None);
        }
        if let Some(done) = ending(parsed, tag) {
            return Ok(Some(done));
        }
    }
}

/// The verdict, when `response` ends the command tagged `tag`: its tagged reply, or a BYE.
pub fn ending(response: &Response<'_>, tag: &str) -> Option<Result<Option<u32>, Refusal>> {
    match response {
        Response::Done {
            tag: done,
            status,
            outcome,
        } if done.0 == tag => Some(verdict(
            status,
            outcome.code.as_ref(),
            outcome.information.as_deref(),
        )),
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Some(Err(Refusal::of(
            &Status::Bye,
            outcome.code.as_ref(),
            outcome.information.as_deref(),
        ))),
        _ => None,
    }
}

/// A response as words for a message, for one that came where it should not (the greeting).
pub fn described(response: &Response<'_>) -> String {
    match response {
        Response::Data { status, outcome } => format!(
            "{} {}",
            status_word(status),
            outcome.information.as_deref().unwrap_or_default()
        ),
        Response::Done { status, .. } => format!("a tagged {}", status_word(status)),
        Response::Continue(_) => "a continuation request (+)".to_string(),
        _ => "untagged data".to_string(),
    }
}

fn capability_name(capability: &Capability<'_>) -> String {
    match capability {
        Capability::Imap4rev1 => "IMAP4REV1".to_string(),
        Capability::Auth(mechanism) => format!("AUTH={}", mechanism.to_ascii_uppercase()),
        Capability::Atom(atom) => atom.to_ascii_uppercase(),
    }
}

/// The RFC 6154 attribute, as the WIT spells it (`\Sent`), of a LIST attribute.
fn special_use(attribute: &NameAttribute<'_>) -> Option<String> {
    let name = match attribute {
        NameAttribute::All => "\\All",
        NameAttribute::Archive => "\\Archive",
        NameAttribute::Drafts => "\\Drafts",
        NameAttribute::Flagged => "\\Flagged",
        NameAttribute::Junk => "\\Junk",
        NameAttribute::Sent => "\\Sent",
        NameAttribute::Trash => "\\Trash",
        _ => return None,
    };
    Some(name.to_string())
}

/// The WIT name of an error's case, for tests.
#[cfg(test)]
pub fn kind(e: &SendError) -> &'static str {
    match e {
        SendError::InvalidSettings(_) => "invalid-settings",
        SendError::InvalidMessage(_) => "invalid-message",
        SendError::AuthFailed(_) => "auth-failed",
        SendError::Rejected(_) => "rejected",
        SendError::Temporary(_) => "temporary",
        SendError::Denied(_) => "denied",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no(information: &str) -> Refusal {
        Refusal::of(&Status::No, None, Some(information))
    }

    #[test]
    fn rfc_5530_codes_are_read_from_the_text() {
        let r = no("[AUTHENTICATIONFAILED] Authentication failed.");
        assert_eq!(r.code.as_deref(), Some("AUTHENTICATIONFAILED"));
        assert_eq!(r.said(), "NO [AUTHENTICATIONFAILED] Authentication failed.");
        assert_eq!(no("Mailbox is busy").code, None);
    }

    #[test]
    fn parsed_trycreate_keeps_its_code_in_the_text() {
        let r = Refusal::of(
            &Status::No,
            Some(&ResponseCode::TryCreate),
            Some("Mailbox doesn't exist: Outbox"),
        );
        assert!(r.is("TRYCREATE"));
        assert_eq!(r.said(), "NO [TRYCREATE] Mailbox doesn't exist: Outbox");
    }

    #[test]
    fn parsed_codes_are_named_as_on_the_wire() {
        let r = Refusal::of(&Status::No, Some(&ResponseCode::UidNext(7)), Some("odd"));
        assert_eq!(r.said(), "NO [UIDNEXT] odd");
        let r = Refusal::of(&Status::Bad, Some(&ResponseCode::ReadOnly), Some("x"));
        assert!(r.is("READ-ONLY"), "{r:?}");
    }

    #[test]
    fn refusals_map_to_what_to_do_next() {
        let cases = [
            (
                Step::Login,
                no("[AUTHENTICATIONFAILED] Authentication failed."),
                "auth-failed",
            ),
            (Step::Login, no("[UNAVAILABLE] Try later"), "temporary"),
            (
                Step::Login,
                no("[PRIVACYREQUIRED] TLS first"),
                "invalid-settings",
            ),
            (
                Step::Examine,
                no("[NONEXISTENT] Mailbox doesn't exist: X"),
                "invalid-settings",
            ),
            (
                Step::Append,
                no("[TRYCREATE] Mailbox doesn't exist: X"),
                "invalid-settings",
            ),
            (Step::Append, no("[OVERQUOTA] Quota exceeded"), "temporary"),
            (Step::Append, no("[LIMIT] Too big"), "invalid-message"),
            (
                Step::Create,
                no("[NOPERM] Permission denied"),
                "invalid-settings",
            ),
            (Step::Append, no("Something else"), "rejected"),
            (
                Step::Append,
                Refusal::of(&Status::Bye, None, Some("Shutting down")),
                "temporary",
            ),
        ];
        for (step, refusal, expected) in cases {
            let e = classify(step, "mx:993", "\"Sent\"", &refusal);
            assert_eq!(kind(&e), expected, "{step:?} {refusal:?}: {e:?}");
        }
    }

    #[test]
    fn missing_folder_error_names_the_mailbox_setting() {
        let e = classify(
            Step::Examine,
            "mx:993",
            "\"Outbox\"",
            &no("[NONEXISTENT] Mailbox doesn't exist: Outbox"),
        );
        let SendError::InvalidSettings(text) = e else {
            panic!("{e:?}")
        };
        assert!(
            text.contains("\"Outbox\"") && text.contains("mailbox setting"),
            "{text}"
        );
    }

    #[test]
    fn special_use_attributes_keep_their_rfc_6154_spelling() {
        assert_eq!(special_use(&NameAttribute::Sent).as_deref(), Some("\\Sent"));
        assert_eq!(special_use(&NameAttribute::NoSelect), None);
    }
}
