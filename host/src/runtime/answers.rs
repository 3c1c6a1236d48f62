//! What the host keeps of a plugin's words: every string a plugin hands back (its description,
//! a `send-error`, a receipt, a verify line) is cut to a stated length, marked where it was cut,
//! and has its control characters escaped, right after it is lifted out of the plugin's memory.
//!
//! Lifting is bounded by the plugin's own memory limit; these bounds make what the host then
//! *keeps* and prints small and fixed, whatever the limit, and make sure such text can't forge a
//! line of the host's own output (a newline and `ERROR …`) or hide part of one (terminal escape
//! codes, bidirectional controls). This module must never pass a plugin's string on unbounded.

use crate::secret::{escape_controls, truncate_marked};
use crate::wit::types::{PluginInfo, Receipt, SendError, SettingDefault, SettingSpec};

/// A name: a plugin id, a version, a setting key.
pub const MAX_NAME: usize = 64;
/// A label or an address.
pub const MAX_LABEL: usize = 256;
/// A description, a help text, an error or a receipt's detail.
pub const MAX_TEXT: usize = 4096;
/// One network need (a URL template).
pub const MAX_NETWORK_ENTRY: usize = 1024;
/// How many settings and network needs a description may list.
pub const MAX_SETTINGS: usize = 128;
pub const MAX_NETWORK: usize = 64;

/// `text` bounded to `max` bytes and safe to print on one line.
pub fn line(text: &mut String, max: usize) {
    // Cut first, so escaping works on a bounded text; escaping may grow it by a fixed factor.
    truncate_marked(text, max);
    if let std::borrow::Cow::Owned(escaped) = escape_controls(text) {
        *text = escaped;
    }
}

/// A plugin's description, bounded and escaped.
pub fn plugin_info(info: &mut PluginInfo) {
    line(&mut info.id, MAX_NAME);
    line(&mut info.version, MAX_NAME);
    line(&mut info.label, MAX_LABEL);
    line(&mut info.description, MAX_TEXT);
    info.settings.truncate(MAX_SETTINGS);
    info.settings.iter_mut().for_each(setting_spec);
    info.network.truncate(MAX_NETWORK);
    for need in &mut info.network {
        line(need, MAX_NETWORK_ENTRY);
    }
}

fn setting_spec(spec: &mut SettingSpec) {
    line(&mut spec.key, MAX_NAME);
    line(&mut spec.label, MAX_LABEL);
    line(&mut spec.help, MAX_TEXT);
    if let Some(SettingDefault::Text(text)) = &mut spec.default {
        line(text, MAX_TEXT);
    }
}

/// A `send-error`, bounded and escaped.
pub fn send_error(error: &mut SendError) {
    line(crate::capability::send_error_text(error), MAX_TEXT);
}

/// A receipt, bounded and escaped (its total size was checked before).
pub fn receipt(receipt: &mut Receipt) {
    if let Some(id) = &mut receipt.provider_id {
        line(id, MAX_LABEL);
    }
    line(&mut receipt.detail, MAX_TEXT);
    for address in &mut receipt.accepted {
        line(address, MAX_LABEL);
    }
    for refused in &mut receipt.refused {
        line(&mut refused.address, MAX_LABEL);
        line(&mut refused.reason, MAX_TEXT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_error_is_cut_and_marked() {
        let mut e = SendError::Rejected("x".repeat(64 << 20));
        send_error(&mut e);
        let SendError::Rejected(text) = e else {
            unreachable!()
        };
        assert!(text.len() < MAX_TEXT + 100, "{} bytes kept", text.len());
        assert!(
            text.contains("cut: 67108864 bytes"),
            "{}",
            &text[MAX_TEXT..]
        );
    }

    #[test]
    fn a_forged_line_stays_on_its_own_line() {
        let mut e = SendError::Rejected("no\nERROR scan2x-mail: forged".into());
        send_error(&mut e);
        assert!(
            matches!(&e, SendError::Rejected(t) if t == "no\\nERROR scan2x-mail: forged"),
            "{e:?}"
        );
    }

    #[test]
    fn escape_codes_in_a_description_are_shown_not_obeyed() {
        let mut info = PluginInfo {
            id: "x".into(),
            version: "1".into(),
            label: "L".into(),
            description: "d".into(),
            settings: Vec::new(),
            events: Vec::new(),
            network: vec!["https://a.example\x1b[8m https://hidden.example\x1b[0m".into()],
        };
        plugin_info(&mut info);
        assert!(!info.network[0].contains('\x1b'));
        assert!(info.network[0].contains("\\u{1b}[8m"));
    }
}
