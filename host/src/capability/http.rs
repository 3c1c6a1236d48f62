//! The `http` interface. This host version defines the contract but does not lend HTTP yet:
//! a request to a granted origin answers `denied` with that reason; an ungranted one is denied
//! by the gate as it always will be.

use super::HostState;
use crate::wit::http::{Host, HttpError, Request, Response};

impl Host for HostState {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let destination = match crate::gate::Grant::parse(&request.url) {
            Ok(d) => d,
            Err(e) => return Ok(Err(HttpError::InvalidRequest(e))),
        };
        if let Err(denied) = self.sender.gate.check(
            &destination.scheme,
            &destination.host.to_string(),
            destination.port,
        ) {
            return Ok(Err(HttpError::Denied(denied.to_string())));
        }
        Ok(Err(HttpError::Denied(
            "the http capability is not available in this version of scan2x-mail".into(),
        )))
    }
}
