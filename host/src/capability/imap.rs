//! The `imap` interface. This host version defines the contract but does not lend IMAP yet:
//! every `open` answers `denied` with that reason (after the gate, so a plugin learns nothing
//! it could not learn anyway). No session can exist, so the session methods are unreachable.

use wasmtime::component::Resource;

use super::HostState;
use crate::wit::imap::{AppendReport, Folder, Host, HostSession};
use crate::wit::types::{Credentials, Endpoint, SendError};

/// An IMAP connection; none is made by this host version.
#[derive(Debug)]
pub struct ImapSession;

const NOT_AVAILABLE: &str = "the imap capability is not available in this version of scan2x-mail";

impl Host for HostState {}

impl HostSession for HostState {
    async fn open(
        &mut self,
        endpoint: Endpoint,
        _credentials: Credentials,
    ) -> wasmtime::Result<Result<Resource<ImapSession>, SendError>> {
        if let Err(denied) = self
            .sender
            .gate
            .check("imap", &endpoint.host, endpoint.port)
        {
            return Ok(Err(SendError::Denied(denied.to_string())));
        }
        Ok(Err(SendError::Denied(NOT_AVAILABLE.into())))
    }

    async fn folders(
        &mut self,
        _: Resource<ImapSession>,
    ) -> wasmtime::Result<Result<Vec<Folder>, SendError>> {
        wasmtime::bail!("{NOT_AVAILABLE}")
    }

    async fn examine(
        &mut self,
        _: Resource<ImapSession>,
        _: String,
    ) -> wasmtime::Result<Result<u32, SendError>> {
        wasmtime::bail!("{NOT_AVAILABLE}")
    }

    async fn create(
        &mut self,
        _: Resource<ImapSession>,
        _: String,
    ) -> wasmtime::Result<Result<(), SendError>> {
        wasmtime::bail!("{NOT_AVAILABLE}")
    }

    async fn append(
        &mut self,
        _: Resource<ImapSession>,
        _: String,
        _: Vec<String>,
        _: Vec<u8>,
    ) -> wasmtime::Result<Result<AppendReport, SendError>> {
        wasmtime::bail!("{NOT_AVAILABLE}")
    }

    async fn logout(
        &mut self,
        _: Resource<ImapSession>,
    ) -> wasmtime::Result<Result<(), SendError>> {
        wasmtime::bail!("{NOT_AVAILABLE}")
    }

    async fn drop(&mut self, rep: Resource<ImapSession>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}
