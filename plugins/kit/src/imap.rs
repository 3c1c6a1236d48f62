//! The host's `imap` capability with the kit's types: one [`Session`] is one authenticated
//! connection (TLS required, login by the host with the password handle). The host checks
//! `imap://{host}:{port}` against the sender's grants first.

use crate::Secret;
use crate::bindings::scan2x::mail::{imap, types as wit};
use crate::compose::Part;
use crate::convert;
use crate::error::SendError;
use crate::settings::{Endpoint, Login};

/// A folder of the account, its name decoded from modified UTF-7 by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub name: String,
    /// SPECIAL-USE attributes (RFC 6154), e.g. `\Sent`.
    pub special_use: Vec<String>,
}

/// What the server said about an appended message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendReport {
    /// The UID the server gave it (UIDPLUS).
    pub uid: Option<u32>,
    pub detail: String,
}

/// Why an APPEND failed: the folder's absence is its own case, so a sender can CREATE it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// The server answered `[TRYCREATE]`; its text.
    NoSuchFolder(String),
    Failed(SendError),
}

/// An open, authenticated IMAP connection.
pub struct Session(imap::Session);

impl Session {
    /// Connect, secure, log in.
    pub fn open(endpoint: &Endpoint, login: &Login<Secret>) -> Result<Self, SendError> {
        let credentials = wit::Credentials {
            username: login.username.clone(),
            password: &login.password,
        };
        imap::Session::open(&convert::endpoint(endpoint), &credentials)
            .map(Session)
            .map_err(convert::send_error_from_wit)
    }

    /// LIST with SPECIAL-USE attributes.
    pub fn folders(&self) -> Result<Vec<Folder>, SendError> {
        let list = self.0.folders().map_err(convert::send_error_from_wit)?;
        Ok(list
            .into_iter()
            .map(|f| Folder {
                name: f.name,
                special_use: f.special_use,
            })
            .collect())
    }

    /// EXAMINE (read-only); the message count.
    pub fn examine(&self, folder: &str) -> Result<u32, SendError> {
        self.0.examine(folder).map_err(convert::send_error_from_wit)
    }

    pub fn create(&self, folder: &str) -> Result<(), SendError> {
        self.0.create(folder).map_err(convert::send_error_from_wit)
    }

    /// APPEND the message (its [`Part`]s) with `flags` and the internal date (seconds since
    /// the Unix epoch). The host writes the attachments' bytes itself.
    pub fn append(
        &self,
        folder: &str,
        flags: &[String],
        internal_date: Option<i64>,
        message: &[Part],
    ) -> Result<AppendReport, AppendError> {
        let parts = convert::message_parts(message);
        match self.0.append(folder, flags, internal_date, &parts) {
            Ok(r) => Ok(AppendReport {
                uid: r.uid,
                detail: r.detail,
            }),
            Err(imap::AppendError::NoSuchFolder(text)) => Err(AppendError::NoSuchFolder(text)),
            Err(imap::AppendError::Failed(e)) => {
                Err(AppendError::Failed(convert::send_error_from_wit(e)))
            }
        }
    }

    /// LOGOUT; dropping the session also closes it.
    pub fn logout(self) -> Result<(), SendError> {
        self.0.logout().map_err(convert::send_error_from_wit)
    }
}
