//! The authenticated session a plugin holds: the connection, its tags, whether it broke, and
//! its commands (CAPABILITY, LIST, EXAMINE, CREATE, APPEND, LOGOUT). Every command is written
//! by the host straight to the stream ([`command`], APPEND's [`append_literal`]) and read back
//! with [`read_done`]; async-imap only reads.

use std::time::Duration;

use async_imap::{Client, Connection};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::budget::Budgeted;
use super::replies::{Reply, Step, Untagged, classify, continuation, read_done, timed};
use super::{APPEND_TIMEOUT, COMMAND_TIMEOUT, PIECE_TIMEOUT, wire};
use crate::capability::blobs::MessageText;
use crate::capability::temporary;
use crate::capability::witness::Witness;
use crate::wit::imap::{AppendError, AppendReport, Folder};
use crate::wit::types::SendError;

/// The encrypted connection under an authenticated session, every answer budgeted.
pub type Wire = TlsStream<Budgeted<TcpStream>>;

/// One authenticated IMAP connection, held in the call's resource table.
pub struct ImapSession {
    /// async-imap's client, as the reader of the server's responses (it never writes).
    conn: Client<Wire>,
    /// `host:port`, for messages.
    at: String,
    /// What the server said it supports after login, upper case.
    capabilities: Vec<String>,
    next_tag: u32,
    /// A step failed half-way (time-out, broken connection): the connection's state is unknown,
    /// so nothing more is sent on it.
    broken: bool,
    /// The call's witness: the session's waits and its APPEND's hand-over are the call's.
    witness: Witness,
}

impl std::fmt::Debug for ImapSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSession")
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// Writes `tag command\r\n` and reads until the tagged reply. The host writes the command
/// straight to the stream (and traces it), so async-imap never sees it.
pub async fn command<T>(conn: &mut Connection<T>, tag: &str, line: &str) -> std::io::Result<Reply>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    tracing::trace!("imap C: {tag} {line}");
    let stream = conn.get_mut();
    stream
        .write_all(format!("{tag} {line}\r\n").as_bytes())
        .await?;
    stream.flush().await?;
    read_done(conn, tag, Untagged::default()).await
}

/// APPEND's exchange, each wait within its own bound: the command until the server's `+`
/// ([`COMMAND_TIMEOUT`]), each piece of the literal ([`PIECE_TIMEOUT`]), and the tagged answer
/// after the literal's last byte ([`APPEND_TIMEOUT`]). That last byte is the hand-over: without
/// an answer the message may be stored.
async fn append_literal(
    session: &mut Connection<Wire>,
    witness: &Witness,
    at: &str,
    tag: &str,
    line: &str,
    message: &MessageText,
) -> Result<Reply, SendError> {
    let start = async {
        tracing::trace!("imap C: {}", line.trim_end());
        let stream = session.get_mut();
        stream.write_all(line.as_bytes()).await?;
        stream.flush().await?;
        // A synchronizing literal: the server says "+" first, or refuses right away.
        let verdict = continuation(session, tag).await?;
        Ok::<_, std::io::Error>(verdict.map(|done| Reply {
            untagged: Untagged::default(),
            done,
        }))
    };
    if let Some(refused) = timed(Step::Append, at, COMMAND_TIMEOUT, start).await? {
        return Ok(refused);
    }
    // The literal in pieces, attachments encoded as they are reached.
    for piece in message.pieces() {
        let write = session.get_mut().write_all(&piece);
        match tokio::time::timeout(PIECE_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(temporary(format!(
                    "failed writing the message to {at}: {e}"
                )));
            }
            Err(_) => {
                return Err(temporary(format!(
                    "timed out after {} s writing the message to {at}: the server stopped reading it",
                    PIECE_TIMEOUT.as_secs()
                )));
            }
        }
    }
    let end = async {
        let stream = session.get_mut();
        stream.write_all(b"\r\n").await?;
        stream.flush().await
    };
    timed(Step::Append, at, PIECE_TIMEOUT, end).await?;
    let hand_over = witness.hand_over(format!("the whole message was written to {at} (APPEND)"));
    match tokio::time::timeout(APPEND_TIMEOUT, read_done(session, tag, Untagged::default())).await {
        Ok(Ok(reply)) => {
            hand_over.answered();
            Ok(reply)
        }
        Ok(Err(e)) => {
            hand_over.lost(&e.to_string());
            Err(temporary(format!(
                "failed waiting for {at} to answer APPEND: {e}; {UNCERTAIN}"
            )))
        }
        Err(_) => {
            hand_over.lost(&format!(
                "no answer came within {} s",
                APPEND_TIMEOUT.as_secs()
            ));
            Err(temporary(format!(
                "timed out after {} s waiting for {at} to answer APPEND: {UNCERTAIN}",
                APPEND_TIMEOUT.as_secs()
            )))
        }
    }
}

/// Said when an APPEND's literal went out and no answer came back.
const UNCERTAIN: &str = "the whole message was sent; whether the server stored it is unknown";

impl ImapSession {
    /// The session on a connection that just logged in. After login a server may say more
    /// (SPECIAL-USE, UIDPLUS), so CAPABILITY is asked again.
    pub(super) async fn start(
        conn: Client<Wire>,
        at: String,
        witness: &Witness,
    ) -> Result<Self, SendError> {
        let mut session = ImapSession {
            conn,
            at,
            capabilities: Vec::new(),
            next_tag: 0,
            broken: false,
            witness: witness.clone(),
        };
        let tag = session.tag();
        let reply = session
            .run(Step::Login, &tag, "CAPABILITY", COMMAND_TIMEOUT)
            .await?;
        session.capabilities = match reply.done {
            Ok(_) => reply.untagged.capabilities,
            Err(refusal) => return Err(classify(Step::Login, &session.at, "", &refusal)),
        };
        Ok(session)
    }

    fn tag(&mut self) -> String {
        self.next_tag += 1;
        format!("S{}", self.next_tag)
    }

    fn usable(&self) -> Result<(), SendError> {
        if self.broken {
            return Err(temporary(format!(
                "the connection to {} broke in an earlier step",
                self.at
            )));
        }
        Ok(())
    }

    /// One command under a time limit; a failure to talk leaves the session broken.
    async fn run(
        &mut self,
        step: Step,
        tag: &str,
        line: &str,
        limit: Duration,
    ) -> Result<Reply, SendError> {
        self.usable()?;
        let at = self.at.clone();
        let _waiting = self.witness.waiting_on(format!("imap {at}"));
        let result = timed(step, &at, limit, command(&mut self.conn, tag, line)).await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    pub(super) async fn folders(&mut self) -> Result<Vec<Folder>, SendError> {
        let tag = self.tag();
        let reply = self
            .run(Step::List, &tag, "LIST \"\" \"*\"", COMMAND_TIMEOUT)
            .await?;
        if let Err(refusal) = reply.done {
            return Err(classify(Step::List, &self.at, "", &refusal));
        }
        Ok(reply.untagged.folders)
    }

    pub(super) async fn examine(&mut self, folder: &str) -> Result<u32, SendError> {
        let quoted = wire::quoted_folder(folder)
            .map_err(|e| SendError::InvalidSettings(format!("mailbox: {}", e.0)))?;
        let tag = self.tag();
        let reply = self
            .run(
                Step::Examine,
                &tag,
                &format!("EXAMINE {quoted}"),
                COMMAND_TIMEOUT,
            )
            .await?;
        if let Err(refusal) = reply.done {
            return Err(classify(
                Step::Examine,
                &self.at,
                &format!("{folder:?}"),
                &refusal,
            ));
        }
        Ok(reply.untagged.exists.unwrap_or(0))
    }

    pub(super) async fn create(&mut self, folder: &str) -> Result<(), SendError> {
        let quoted = wire::quoted_folder(folder)
            .map_err(|e| SendError::InvalidSettings(format!("mailbox: {}", e.0)))?;
        let tag = self.tag();
        let reply = self
            .run(
                Step::Create,
                &tag,
                &format!("CREATE {quoted}"),
                COMMAND_TIMEOUT,
            )
            .await?;
        match reply.done {
            Ok(_) => Ok(()),
            // Someone else made it in the meantime: the folder is there, which is the point.
            Err(refusal) if refusal.is("ALREADYEXISTS") => Ok(()),
            Err(refusal) => Err(classify(
                Step::Create,
                &self.at,
                &format!("{folder:?}"),
                &refusal,
            )),
        }
    }

    pub(super) async fn append(
        &mut self,
        folder: &str,
        flags: &[String],
        internal_date: Option<i64>,
        message: &MessageText,
    ) -> Result<AppendReport, AppendError> {
        let failed = AppendError::Failed;
        self.usable().map_err(failed)?;
        let quoted = wire::quoted_folder(folder)
            .map_err(|e| failed(SendError::InvalidSettings(format!("mailbox: {}", e.0))))?;
        let flags = wire::flag_list(flags)
            .map_err(|e| failed(SendError::InvalidMessage(format!("flags: {}", e.0))))?;
        let date = match internal_date {
            Some(secs) => {
                let date = wire::date_time(secs)
                    .map_err(|e| failed(SendError::InvalidMessage(format!("date: {}", e.0))))?;
                format!(" {date}")
            }
            None => String::new(),
        };
        if message.is_empty() {
            return Err(failed(SendError::InvalidMessage(
                "the message is empty".into(),
            )));
        }
        let tag = self.tag();
        let line = format!(
            "{tag} APPEND {quoted} {flags}{date} {{{}}}\r\n",
            message.len()
        );
        let at = self.at.clone();
        let waiting = self.witness.waiting_on(format!("imap {at}"));
        let appended = append_literal(&mut self.conn, &self.witness, &at, &tag, &line, message);
        let appended = appended.await;
        drop(waiting);
        let reply = match appended {
            Ok(reply) => reply,
            Err(e) => {
                self.broken = true;
                return Err(failed(e));
            }
        };
        match reply.done {
            Ok(uid) => {
                let detail = match uid {
                    Some(uid) => format!("{at} stored the message in {folder:?} as UID {uid}"),
                    None => format!("{at} stored the message in {folder:?}"),
                };
                Ok(AppendReport { uid, detail })
            }
            Err(refusal) if refusal.is("TRYCREATE") => Err(AppendError::NoSuchFolder(format!(
                "{at} has no folder {folder:?}: {}",
                refusal.said()
            ))),
            Err(refusal) => Err(failed(classify(
                Step::Append,
                &at,
                &format!("{folder:?}"),
                &refusal,
            ))),
        }
    }

    pub(super) async fn logout(&mut self) -> Result<(), SendError> {
        let tag = self.tag();
        let reply = self
            .run(Step::Logout, &tag, "LOGOUT", COMMAND_TIMEOUT)
            .await;
        // Whatever happened, nothing more goes over this connection.
        self.broken = true;
        match reply {
            Ok(Reply { done: Ok(_), .. }) => Ok(()),
            // A BYE is how LOGOUT ends; some servers close before the tagged OK.
            Ok(Reply {
                done: Err(refusal), ..
            }) if refusal.status == "BYE" => Ok(()),
            Ok(Reply {
                done: Err(refusal), ..
            }) => Err(classify(Step::Logout, &self.at, "", &refusal)),
            Err(SendError::Temporary(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
