//! The `secrets` interface: secret handles live in the call's resource table; the plugin holds
//! only the handle. Capabilities read the value with [`secret_value`] where a protocol needs it.

use wasmtime::component::Resource;

use super::HostState;
use crate::secret::Secret;
use crate::wit::secrets::{Host, HostSecret};

/// What a `secret` handle points at.
#[derive(Debug)]
pub struct SecretValue(pub Secret);

impl Host for HostState {}

impl HostSecret for HostState {
    fn drop(&mut self, rep: Resource<SecretValue>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

/// The secret behind a handle the plugin passed in. A dangling handle is a host bug (the
/// component model checks handles), so it traps.
pub fn secret_value(state: &HostState, handle: &Resource<SecretValue>) -> wasmtime::Result<Secret> {
    Ok(state.table.get(handle)?.0.clone())
}
