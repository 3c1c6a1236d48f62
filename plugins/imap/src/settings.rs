//! The IMAP sender's settings: the schema the host shows an administrator, and the parser that
//! turns the host's `list<setting>` into [`Settings`].
//!
//! | key              | kind    | required | default | becomes                                   |
//! |------------------|---------|----------|---------|-------------------------------------------|
//! | `host`           | text    | yes      |         | [`Endpoint::host`]                        |
//! | `port`           | integer | no       | 993     | [`Endpoint::port`] (1..=65535)            |
//! | `enable_ssl`     | boolean | no       | true    | [`TlsMode`] with the port; must stay on    |
//! | `username`       | text    | yes      |         | [`Login::username`]                       |
//! | `password`       | secret  | yes      |         | [`Login::password`] (a handle)            |
//! | `from_email`     | text    | yes      |         | the From address                          |
//! | `mailbox`        | text    | no       |         | the folder; unset: the account's \Sent    |
//! | `create_mailbox` | boolean | no       | false   | CREATE a missing folder instead of failing |
//!
//! IMAP always logs in, so the login is required and TLS must be on: credentials are never
//! sent over plaintext. Plain Rust over the plugin kit's [`Values`], generic in the secret
//! handle, so it tests natively; it never reads a secret and never calls a host capability.

use scan2x_mail_plugin_kit::compose::Address;
pub use scan2x_mail_plugin_kit::settings::{
    Endpoint, InvalidSettings, Login, SettingDefault, SettingKind, SettingSpec, SettingValue,
    TlsMode, Values,
};
use scan2x_mail_plugin_kit::settings::{host, port, tls_mode};

/// The destination the sender needs, as a URL template over its settings.
pub const NETWORK: &str = "imap://{host}:{port}";

/// What an administrator sees: the sender's label.
pub const LABEL: &str = "IMAP";

/// The port on which TLS starts with the first byte (RFC 8314); every other port uses STARTTLS.
pub const IMPLICIT_TLS_PORT: u16 = 993;

/// The default port: IMAP over TLS.
pub const DEFAULT_PORT: u16 = 993;

/// The sender's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings<S> {
    /// Never plaintext (see [`parse`]).
    pub endpoint: Endpoint,
    pub login: Login<S>,
    /// The From address, used when a message names none.
    pub from_email: Address,
    /// The folder to place messages in; none: the account's \Sent folder.
    pub mailbox: Option<String>,
    /// Whether a missing folder is created.
    pub create_mailbox: bool,
}

/// The schema, in the order an administrator fills it in.
pub fn schema() -> Vec<SettingSpec> {
    vec![
        SettingSpec {
            key: "host",
            label: "IMAP host",
            kind: SettingKind::Text,
            required: true,
            default: None,
            help: "The IMAP server's host name or IP address, e.g. imap.example.com.",
        },
        SettingSpec {
            key: "port",
            label: "Port",
            kind: SettingKind::Integer,
            required: false,
            default: Some(SettingDefault::Integer(i64::from(DEFAULT_PORT))),
            help: "The IMAP server's port (1 to 65535): usually 993 (implicit TLS) or 143 \
                   (STARTTLS).",
        },
        SettingSpec {
            key: "enable_ssl",
            label: "Enable SSL",
            kind: SettingKind::Boolean,
            required: false,
            default: Some(SettingDefault::Boolean(true)),
            help: "Secure the connection with TLS. Port 993: implicit TLS (TLS from the first \
                   byte). Any other port: STARTTLS, which is then required; there is no fallback \
                   to plaintext. IMAP always logs in and credentials are never sent over \
                   plaintext, so this must stay on.",
        },
        SettingSpec {
            key: "username",
            label: "Username",
            kind: SettingKind::Text,
            required: true,
            default: None,
            help: "The login of the mail account the messages are placed in.",
        },
        SettingSpec {
            key: "password",
            label: "Password",
            kind: SettingKind::Secret,
            required: true,
            default: None,
            help: "The password for Username. It stays with the host; the plugin never sees it.",
        },
        SettingSpec {
            key: "from_email",
            label: "From email",
            kind: SettingKind::Text,
            required: true,
            default: None,
            help: "The From address of the messages, e.g. scanner@example.com.",
        },
        SettingSpec {
            key: "mailbox",
            label: "Folder",
            kind: SettingKind::Text,
            required: false,
            default: None,
            help: "The folder of the account the message is placed in. Empty: the account's \
                   Sent folder (the one the server marks \\Sent), else the folder \"Sent\". Any \
                   folder may be named, e.g. an outbox folder from which the server itself \
                   sends what is placed in it. IMAP cannot send mail: recipients other than \
                   this account receive nothing unless the server submits from that folder.",
        },
        SettingSpec {
            key: "create_mailbox",
            label: "Create the folder",
            kind: SettingKind::Boolean,
            required: false,
            default: Some(SettingDefault::Boolean(false)),
            help: "Create the folder when it does not exist. Off: a missing folder is a \
                   settings error that names it.",
        },
    ]
}

/// Parses the settings the host hands over. The host has already checked them against the
/// schema and filled in defaults; this checks again (a host bug must not become a wrong
/// connection) and then checks what a schema can't say: the port range, an address, a folder
/// name a command can carry, and that TLS is on.
pub fn parse<S>(mut values: Values<S>) -> Result<Settings<S>, InvalidSettings> {
    let host = host(values.required_text("host")?)?;
    let port = port(values.integer("port")?.unwrap_or(i64::from(DEFAULT_PORT)))?;
    let tls = tls_mode(
        values.boolean("enable_ssl")?.unwrap_or(true),
        port,
        IMPLICIT_TLS_PORT,
    );
    if tls == TlsMode::Plaintext {
        return Err(InvalidSettings(
            "enable_ssl: IMAP always logs in, and credentials are never sent over plaintext: \
             turn on enable_ssl (port 993: implicit TLS; other ports: STARTTLS)"
                .to_owned(),
        ));
    }

    let from_email = values.required_text("from_email")?;
    let from_email: Address = from_email.parse().map_err(|_| {
        InvalidSettings(format!(
            "from_email: {from_email:?} is not an email address"
        ))
    })?;

    let login = match scan2x_mail_plugin_kit::settings::login(
        values.text("username")?,
        values.secret("password")?,
    )? {
        Some(login) => login,
        None => {
            return Err(InvalidSettings(
                "username: required, but not set (IMAP always logs in); set username and \
                 password"
                    .to_owned(),
            ));
        }
    };

    if login.username.chars().any(char::is_control) {
        return Err(InvalidSettings(
            "username: holds a control character (a line break?), which no IMAP login can carry"
                .to_owned(),
        ));
    }

    // An empty folder field is "not set": the account's Sent folder.
    let mailbox = values.optional_text("mailbox")?;
    if let Some(bad) = mailbox
        .as_deref()
        .and_then(|m| m.chars().find(|c| c.is_control()))
    {
        return Err(InvalidSettings(format!(
            "mailbox: {:?} holds the control character {bad:?}",
            mailbox.unwrap_or_default()
        )));
    }

    Ok(Settings {
        endpoint: Endpoint { host, port, tls },
        login,
        from_email,
        mailbox,
        create_mailbox: values.boolean("create_mailbox")?.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Entry = (String, SettingValue<u32>);

    /// The settings as the kit hands them to [`super::parse`]: checked against the schema.
    fn parse(entries: Vec<Entry>) -> Result<Settings<u32>, InvalidSettings> {
        super::parse(Values::new(LABEL, schema(), entries)?)
    }

    fn text(key: &str, value: &str) -> Entry {
        (key.to_owned(), SettingValue::Text(value.to_owned()))
    }
    fn integer(key: &str, value: i64) -> Entry {
        (key.to_owned(), SettingValue::Integer(value))
    }
    fn boolean(key: &str, value: bool) -> Entry {
        (key.to_owned(), SettingValue::Boolean(value))
    }

    fn minimal() -> Vec<Entry> {
        vec![
            text("host", "imap.example.com"),
            text("username", "scanner"),
            ("password".to_owned(), SettingValue::Secret(7)),
            text("from_email", "scanner@example.com"),
        ]
    }

    fn with(extra: Vec<Entry>) -> Vec<Entry> {
        let mut entries = minimal();
        entries.extend(extra);
        entries
    }

    fn error(entries: Vec<Entry>) -> String {
        parse(entries).unwrap_err().0
    }

    #[test]
    fn defaults_are_implicit_tls_on_993_the_sent_folder_and_no_create() {
        let s = parse(minimal()).unwrap();
        assert_eq!(
            s.endpoint,
            Endpoint {
                host: "imap.example.com".to_owned(),
                port: 993,
                tls: TlsMode::ImplicitTls
            }
        );
        assert_eq!(
            s.login,
            Login {
                username: "scanner".to_owned(),
                password: 7
            }
        );
        assert_eq!(s.from_email.to_string(), "scanner@example.com");
        assert_eq!(s.mailbox, None);
        assert!(!s.create_mailbox);
    }

    #[test]
    fn schema_has_the_seeds_fields_plus_mailbox_and_create_mailbox() {
        let keys: Vec<_> = schema()
            .iter()
            .map(|s| (s.key, s.kind, s.required))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("host", SettingKind::Text, true),
                ("port", SettingKind::Integer, false),
                ("enable_ssl", SettingKind::Boolean, false),
                ("username", SettingKind::Text, true),
                ("password", SettingKind::Secret, true),
                ("from_email", SettingKind::Text, true),
                ("mailbox", SettingKind::Text, false),
                ("create_mailbox", SettingKind::Boolean, false),
            ]
        );
    }

    #[test]
    fn schema_defaults_match_the_parser_defaults() {
        let s = parse(minimal()).unwrap();
        let default_of = |key: &str| {
            schema()
                .into_iter()
                .find(|spec| spec.key == key)
                .and_then(|spec| spec.default)
        };
        assert_eq!(
            default_of("port"),
            Some(SettingDefault::Integer(i64::from(s.endpoint.port)))
        );
        assert_eq!(
            default_of("enable_ssl"),
            Some(SettingDefault::Boolean(true))
        );
        assert_eq!(
            default_of("create_mailbox"),
            Some(SettingDefault::Boolean(s.create_mailbox))
        );
    }

    #[test]
    fn port_993_is_implicit_tls_and_any_other_port_required_starttls() {
        for (port, expected) in [
            (993, TlsMode::ImplicitTls),
            (143, TlsMode::Starttls),
            (10143, TlsMode::Starttls),
        ] {
            let s = parse(with(vec![integer("port", port)])).unwrap();
            assert_eq!(s.endpoint.tls, expected, "{port}");
        }
    }

    #[test]
    fn ssl_off_is_refused_because_imap_always_logs_in() {
        let e = error(with(vec![boolean("enable_ssl", false)]));
        assert!(e.starts_with("enable_ssl:"), "{e}");
        assert!(e.contains("never sent over plaintext"), "{e}");
    }

    #[test]
    fn login_is_required() {
        let e = error(vec![
            text("host", "imap.example.com"),
            text("from_email", "scanner@example.com"),
        ]);
        assert!(e.starts_with("username: required"), "{e}");
        let e = error(vec![
            text("host", "imap.example.com"),
            text("username", "scanner"),
            text("from_email", "scanner@example.com"),
        ]);
        assert!(e.contains("password is not"), "{e}");
    }

    #[test]
    fn username_with_a_line_break_is_refused_naming_username() {
        let e = error(vec![
            text("host", "imap.example.com"),
            text("username", "scanner\r\nA1 LOGOUT"),
            ("password".to_owned(), SettingValue::Secret(7)),
            text("from_email", "scanner@example.com"),
        ]);
        assert!(e.starts_with("username:"), "{e}");
    }

    #[test]
    fn blank_mailbox_means_the_sent_folder_and_a_name_is_kept_as_given() {
        assert_eq!(
            parse(with(vec![text("mailbox", "  ")])).unwrap().mailbox,
            None
        );
        assert_eq!(
            parse(with(vec![text("mailbox", "INBOX/Outbox")]))
                .unwrap()
                .mailbox
                .as_deref(),
            Some("INBOX/Outbox")
        );
    }

    #[test]
    fn mailbox_with_a_line_break_is_refused_naming_mailbox() {
        let e = error(with(vec![text("mailbox", "Sent\r\nA1 DELETE INBOX")]));
        assert!(e.starts_with("mailbox:"), "{e}");
    }

    #[test]
    fn from_email_must_be_an_address() {
        let e = error(vec![
            text("host", "imap.example.com"),
            text("username", "scanner"),
            ("password".to_owned(), SettingValue::Secret(7)),
            text("from_email", "scanner at example.com"),
        ]);
        assert!(e.starts_with("from_email:"), "{e}");
    }

    #[test]
    fn unknown_or_mistyped_keys_are_refused_naming_them() {
        assert!(error(with(vec![text("email_address", "x@y")])).contains("\"email_address\""));
        assert_eq!(
            error(with(vec![text("port", "993")])),
            "port: expected an integer value, got a text value"
        );
        assert_eq!(
            error(with(vec![text("host", "other")])),
            "host: given more than once"
        );
    }

    #[test]
    fn mailbox_help_says_plainly_that_imap_delivers_to_no_one_else() {
        let help = schema()
            .into_iter()
            .find(|s| s.key == "mailbox")
            .unwrap()
            .help;
        assert!(help.contains("IMAP cannot send mail"), "{help}");
        assert!(
            help.contains("receive nothing unless the server submits from that folder"),
            "{help}"
        );
    }
}
