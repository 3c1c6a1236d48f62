//! Which folder a message is placed in, and how that was decided: the folder the settings name,
//! else the one the server marks `\Sent` (RFC 6154 SPECIAL-USE), else `Sent`.
//!
//! Plain Rust over the folder list the host returned; it never calls a host capability.

use std::fmt;

/// A folder as the server listed it.
pub use scan2x_mail_plugin_kit::imap::Folder;

/// The folder used when neither the settings nor the server name one.
pub const FALLBACK: &str = "Sent";

/// How the target folder was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The `mailbox` setting names it.
    Configured,
    /// The server marks it `\Sent`.
    SpecialUse,
    /// Nothing names a Sent folder: the conventional name.
    Fallback,
}

/// The folder a message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub why: Why,
    /// Whether the server listed it.
    pub listed: bool,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.why {
            Why::Configured => "the mailbox setting",
            Why::SpecialUse => "the server marks it \\Sent",
            Why::Fallback => "no folder is marked \\Sent",
        };
        write!(f, "{:?} ({why})", self.name)
    }
}

/// The target: `configured` when set, else the first folder marked `\Sent`, else [`FALLBACK`]
/// (matched without regard to case, as servers differ in spelling it).
pub fn choose(configured: Option<&str>, folders: &[Folder]) -> Target {
    let listed = |name: &str| folders.iter().any(|f| f.name == name);
    if let Some(name) = configured {
        return Target {
            name: name.to_owned(),
            why: Why::Configured,
            listed: listed(name),
        };
    }
    let sent = folders.iter().find(|f| {
        f.special_use
            .iter()
            .any(|attribute| attribute.eq_ignore_ascii_case("\\Sent"))
    });
    if let Some(sent) = sent {
        return Target {
            name: sent.name.clone(),
            why: Why::SpecialUse,
            listed: true,
        };
    }
    let existing = folders
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(FALLBACK))
        .map(|f| f.name.clone());
    Target {
        listed: existing.is_some(),
        name: existing.unwrap_or_else(|| FALLBACK.to_owned()),
        why: Why::Fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str, special_use: &[&str]) -> Folder {
        Folder {
            name: name.to_owned(),
            special_use: special_use.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn account() -> Vec<Folder> {
        vec![
            folder("INBOX", &[]),
            folder("Drafts", &["\\Drafts"]),
            folder("Sent", &[]),
            folder("Sent Items", &["\\Sent"]),
            folder("Trash", &["\\Trash"]),
        ]
    }

    #[test]
    fn the_folder_marked_sent_wins_over_one_merely_named_sent() {
        let t = choose(None, &account());
        assert_eq!(t.name, "Sent Items");
        assert_eq!(t.why, Why::SpecialUse);
        assert!(t.listed);
    }

    #[test]
    fn a_configured_folder_wins_whether_listed_or_not() {
        let t = choose(Some("INBOX/Outbox"), &account());
        assert_eq!(
            (t.name.as_str(), t.why, t.listed),
            ("INBOX/Outbox", Why::Configured, false)
        );
        let t = choose(Some("Trash"), &account());
        assert_eq!(
            (t.name.as_str(), t.why, t.listed),
            ("Trash", Why::Configured, true)
        );
    }

    #[test]
    fn without_special_use_an_existing_sent_folder_is_used_in_its_own_spelling() {
        let folders = vec![folder("INBOX", &[]), folder("SENT", &[])];
        let t = choose(None, &folders);
        assert_eq!(
            (t.name.as_str(), t.why, t.listed),
            ("SENT", Why::Fallback, true)
        );
    }

    #[test]
    fn with_nothing_to_go_by_the_target_is_sent_and_unlisted() {
        let t = choose(None, &[folder("INBOX", &[])]);
        assert_eq!(
            (t.name.as_str(), t.why, t.listed),
            ("Sent", Why::Fallback, false)
        );
    }

    #[test]
    fn display_says_why() {
        let t = choose(None, &account());
        assert_eq!(t.to_string(), "\"Sent Items\" (the server marks it \\Sent)");
    }
}
