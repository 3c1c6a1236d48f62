//! Reads what an SMTP server said when it took a message: the queue id for the receipt, and
//! the reply as one human line.
//!
//! | server    | reply to the end of DATA                        | provider id |
//! |-----------|-------------------------------------------------|-------------|
//! | Postfix   | `250 2.0.0 Ok: queued as 4F1A2C3D`              | `4F1A2C3D`  |
//! | others    | `250 Message queued as <abc@host>`              | `abc@host`  |
//! | Exim      | `250 OK id=1rAbCd-000123-4X`                    | `1rAbCd-000123-4X` |
//! | any other | e.g. `250 2.0.0 OK 1700000000 gsmtp`            | none        |
//!
//! It must never guess: a reply that names no id in one of these forms gives none.

/// The queue id the reply names, if it names one.
pub fn queue_id(reply: &str) -> Option<String> {
    let lower = reply.to_ascii_lowercase();
    let from_queued_as = lower
        .find("queued as")
        .map(|at| &reply[at + "queued as".len()..])
        .and_then(|rest| rest.split_whitespace().next());
    // Exim's `id=`, only as a word of its own, so "InternalId=…" or "msgid=…" don't count.
    let from_exim = || {
        reply
            .split_whitespace()
            .find_map(|word| word.strip_prefix("id="))
    };
    let token = from_queued_as.or_else(from_exim)?;
    let id = token
        .trim_start_matches('<')
        .trim_end_matches(['>', '.', ',', ';', ')', ']']);
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_graphic())).then(|| id.to_owned())
}

/// The reply on one line: a multi-line reply's lines joined by spaces.
pub fn one_line(reply: &str) -> String {
    reply
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_queue_id_is_read() {
        assert_eq!(
            queue_id("250 2.0.0 Ok: queued as 4F1A2C3D"),
            Some("4F1A2C3D".to_owned())
        );
    }

    #[test]
    fn queued_as_is_read_in_any_case_and_without_punctuation() {
        assert_eq!(
            queue_id("250 Message Queued As <abc.123@mx.example.com>."),
            Some("abc.123@mx.example.com".to_owned())
        );
        assert_eq!(
            queue_id("250 Ok: queued as 9AB12\r\n"),
            Some("9AB12".to_owned())
        );
    }

    #[test]
    fn exim_id_is_read() {
        assert_eq!(
            queue_id("250 OK id=1rAbCd-000123-4X"),
            Some("1rAbCd-000123-4X".to_owned())
        );
    }

    #[test]
    fn id_inside_another_word_is_not_a_queue_id() {
        assert_eq!(
            queue_id("250 2.6.0 <x@y> [InternalId=123, Hostname=mx] Queued mail for delivery"),
            None
        );
    }

    #[test]
    fn reply_without_a_queue_id_gives_none() {
        assert_eq!(queue_id("250 2.0.0 OK 1700000000 a1si123 - gsmtp"), None);
        assert_eq!(queue_id("250 Ok: queued as "), None);
        assert_eq!(queue_id(""), None);
    }

    #[test]
    fn multi_line_reply_becomes_one_line() {
        assert_eq!(
            one_line("250-first\r\n250 2.0.0 Ok: queued as X\r\n"),
            "250-first 250 2.0.0 Ok: queued as X"
        );
    }
}
