//! What the IMAP sender tells the administrator: the receipt's one line, the "Test" line, and
//! the missing-folder error. IMAP places a message in one account's folder and delivers it to
//! no one, and every line here says so rather than suggest that mail went out.
//!
//! Pure text over plain values; it never calls a host capability.

use crate::target::Target;

/// The receipt's detail after a successful APPEND.
pub fn stored(target: &Target, account: &str, at: &str, uid: Option<u32>, created: bool) -> String {
    let uid = uid.map(|uid| format!(" as UID {uid}")).unwrap_or_default();
    let created = if created { " (folder created)" } else { "" };
    format!(
        "stored in folder {target}{created} of account {account:?} on {at}{uid}; IMAP delivers \
         to no one else: other recipients receive it only if the server submits from that folder"
    )
}

/// The settings error for a folder that does not exist while `create_mailbox` is off.
pub fn missing_folder(target: &Target, account: &str, at: &str, server: &str) -> String {
    format!(
        "mailbox: folder {target} does not exist in account {account:?} on {at} ({server}); set \
         mailbox to an existing folder, create the folder on the server, or turn on \
         create_mailbox"
    )
}

/// The "Test" line: what was checked, and that no mail was placed.
pub fn verified(target: &Target, account: &str, at: &str, tls: &str, count: Option<u32>) -> String {
    let folder = match count {
        Some(count) => format!("folder {target} holds {count} messages"),
        None => format!("folder {target} does not exist yet and will be created at the first send"),
    };
    format!("{at}: {tls}, login accepted for {account:?}; {folder}; no mail placed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Why;

    fn sent_items() -> Target {
        Target {
            name: "Sent Items".to_owned(),
            why: Why::SpecialUse,
            listed: true,
        }
    }

    #[test]
    fn receipt_names_folder_account_uid_and_that_no_one_else_receives_it() {
        let line = stored(&sent_items(), "scanner", "mx:993", Some(42), false);
        assert_eq!(
            line,
            "stored in folder \"Sent Items\" (the server marks it \\Sent) of account \"scanner\" \
             on mx:993 as UID 42; IMAP delivers to no one else: other recipients receive it only \
             if the server submits from that folder"
        );
        assert!(
            stored(&sent_items(), "scanner", "mx:993", None, true).contains("(folder created)")
        );
    }

    #[test]
    fn missing_folder_error_names_the_setting_and_the_ways_out() {
        let target = Target {
            name: "Outbox".to_owned(),
            why: Why::Configured,
            listed: false,
        };
        let text = missing_folder(
            &target,
            "scanner",
            "mx:993",
            "NO [TRYCREATE] Mailbox doesn't exist",
        );
        assert!(text.starts_with("mailbox: folder \"Outbox\""), "{text}");
        assert!(text.contains("create_mailbox"), "{text}");
        assert!(text.contains("[TRYCREATE]"), "{text}");
    }

    #[test]
    fn test_line_says_no_mail_was_placed() {
        let line = verified(&sent_items(), "scanner", "mx:993", "implicit TLS", Some(3));
        assert!(line.ends_with("no mail placed"), "{line}");
        assert!(line.contains("holds 3 messages"), "{line}");
        let line = verified(&sent_items(), "scanner", "mx:993", "STARTTLS", None);
        assert!(line.contains("will be created at the first send"), "{line}");
    }
}
