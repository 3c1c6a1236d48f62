//! The SMTP sender's settings: the schema the host shows an administrator, and the parser that
//! turns the host's `list<setting>` into [`Settings`].
//!
//! | key             | kind    | required | default | becomes                         |
//! |-----------------|---------|----------|---------|---------------------------------|
//! | `host`          | text    | yes      |         | [`Endpoint::host`]              |
//! | `port`          | integer | no       | 587     | [`Endpoint::port`] (1..=65535)  |
//! | `enable_ssl`    | boolean | no       | true    | [`TlsMode`], with the port      |
//! | `username`      | text    | no       |         | [`Login::username`]             |
//! | `password`      | secret  | no       |         | [`Login::password`] (a handle)  |
//! | `email_address` | text    | yes      |         | the From address                |
//!
//! Everything here is plain Rust over the kit's [`Values`], generic in the secret handle, so it
//! tests natively. It must never read a secret's value (it can't: a secret is an opaque handle)
//! and never call a host capability.

use scan2x_mail_plugin_kit::compose::Address;

pub use scan2x_mail_plugin_kit::settings::{
    Endpoint, InvalidSettings, Login, SettingDefault, SettingKind, SettingSpec, SettingValue,
    TlsMode, Values,
};
use scan2x_mail_plugin_kit::settings::{host, port};

/// The destination the sender needs, as a URL template over its settings; the host grants
/// exactly this, resolved against the sender's settings.
pub const NETWORK: &str = "smtp://{host}:{port}";

/// What an administrator sees: the sender's label.
pub const LABEL: &str = "SMTP";

/// The port on which TLS starts with the first byte (RFC 8314); every other port uses STARTTLS.
pub const IMPLICIT_TLS_PORT: u16 = 465;

/// The default port: message submission (RFC 6409).
pub const DEFAULT_PORT: u16 = 587;

/// The sender's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings<S> {
    pub endpoint: Endpoint,
    /// Only ever set when the endpoint is secured (see [`parse`]).
    pub login: Option<Login<S>>,
    /// The From address, used when a message names none.
    pub email_address: Address,
}

/// The schema, in the order an administrator fills it in.
pub fn schema() -> Vec<SettingSpec> {
    vec![
        SettingSpec {
            key: "host",
            label: "SMTP host",
            kind: SettingKind::Text,
            required: true,
            default: None,
            help: "The SMTP server's host name or IP address, e.g. smtp.example.com.",
        },
        SettingSpec {
            key: "port",
            label: "Port",
            kind: SettingKind::Integer,
            required: false,
            default: Some(SettingDefault::Integer(i64::from(DEFAULT_PORT))),
            help: "The SMTP server's port (1 to 65535): usually 587 (STARTTLS) or 465 \
                   (implicit TLS).",
        },
        SettingSpec {
            key: "enable_ssl",
            label: "Enable SSL",
            kind: SettingKind::Boolean,
            required: false,
            default: Some(SettingDefault::Boolean(true)),
            help: "Secure the connection with TLS. Port 465: implicit TLS (TLS from the first \
                   byte). Any other port: STARTTLS, which is then required; there is no fallback \
                   to plaintext. Unchecked: plaintext, and credentials are never sent over \
                   plaintext, so leave Username and Password empty.",
        },
        SettingSpec {
            key: "username",
            label: "Username",
            kind: SettingKind::Text,
            required: false,
            default: None,
            help: "The login for SMTP authentication, set together with Password. Leave both \
                   empty when the server accepts mail without a login.",
        },
        SettingSpec {
            key: "password",
            label: "Password",
            kind: SettingKind::Secret,
            required: false,
            default: None,
            help: "The password for Username. It stays with the host; the plugin never sees it.",
        },
        SettingSpec {
            key: "email_address",
            label: "Email address",
            kind: SettingKind::Text,
            required: true,
            default: None,
            help: "The From address of the mail this sender sends, e.g. scanner@example.com.",
        },
    ]
}

/// Parses the settings the host hands over, already checked against [`schema`] by the kit
/// (each key known, of its kind, once; defaults filled in). This checks what a schema can't say:
/// the host and port, the login's two halves, and that credentials never go over plaintext.
pub fn parse<S>(mut values: Values<S>) -> Result<Settings<S>, InvalidSettings> {
    let host = host(values.required_text("host")?)?;
    let port = port(values.integer("port")?.unwrap_or(i64::from(DEFAULT_PORT)))?;
    let enable_ssl = values.boolean("enable_ssl")?.unwrap_or(true);
    let tls = tls_mode(enable_ssl, port);

    let email_address = values.required_text("email_address")?;
    let email_address: Address = email_address.parse().map_err(|_| {
        InvalidSettings(format!(
            "email_address: {email_address:?} is not an email address"
        ))
    })?;

    // An empty username is "not set": a form field the administrator cleared.
    let login = scan2x_mail_plugin_kit::settings::login(
        values.text("username")?,
        values.secret("password")?,
    )?;
    if login.is_some() && tls == TlsMode::Plaintext {
        return Err(InvalidSettings(
            "credentials are never sent over plaintext: turn on enable_ssl, or remove username \
             and password"
                .to_owned(),
        ));
    }

    Ok(Settings {
        endpoint: Endpoint { host, port, tls },
        login,
        email_address,
    })
}

/// The TLS mode the two settings select: 465 speaks TLS from the first byte, every other port
/// upgrades with STARTTLS (required), and without SSL the connection stays in clear.
pub fn tls_mode(enable_ssl: bool, port: u16) -> TlsMode {
    scan2x_mail_plugin_kit::settings::tls_mode(enable_ssl, port, IMPLICIT_TLS_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings as the kit hands them to [`super::parse`]: checked against the schema.
    fn parse(
        entries: Vec<(String, SettingValue<Handle>)>,
    ) -> Result<Settings<Handle>, InvalidSettings> {
        super::parse(Values::new(LABEL, schema(), entries)?)
    }

    /// Stands for the host's secret handle: the parser only moves it around.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Handle(u32);

    fn text(key: &str, value: &str) -> (String, SettingValue<Handle>) {
        (key.to_owned(), SettingValue::Text(value.to_owned()))
    }
    fn integer(key: &str, value: i64) -> (String, SettingValue<Handle>) {
        (key.to_owned(), SettingValue::Integer(value))
    }
    fn boolean(key: &str, value: bool) -> (String, SettingValue<Handle>) {
        (key.to_owned(), SettingValue::Boolean(value))
    }
    fn secret(key: &str, handle: u32) -> (String, SettingValue<Handle>) {
        (key.to_owned(), SettingValue::Secret(Handle(handle)))
    }

    fn minimal() -> Vec<(String, SettingValue<Handle>)> {
        vec![
            text("host", "smtp.example.com"),
            text("email_address", "scanner@example.com"),
        ]
    }

    fn with(extra: Vec<(String, SettingValue<Handle>)>) -> Vec<(String, SettingValue<Handle>)> {
        let mut entries = minimal();
        entries.extend(extra);
        entries
    }

    fn error(entries: Vec<(String, SettingValue<Handle>)>) -> String {
        parse(entries).unwrap_err().0
    }

    #[test]
    fn defaults_are_port_587_with_required_starttls_and_no_login() {
        let settings = parse(minimal()).unwrap();
        assert_eq!(
            settings.endpoint,
            Endpoint {
                host: "smtp.example.com".to_owned(),
                port: 587,
                tls: TlsMode::Starttls,
            }
        );
        assert_eq!(settings.login, None);
        assert_eq!(settings.email_address.to_string(), "scanner@example.com");
    }

    #[test]
    fn schema_defaults_match_the_parser_defaults() {
        let schema = schema();
        let default_of = |key: &str| {
            schema
                .iter()
                .find(|s| s.key == key)
                .and_then(|s| s.default.clone())
        };
        let settings = parse(minimal()).unwrap();
        assert_eq!(
            default_of("port"),
            Some(SettingDefault::Integer(i64::from(settings.endpoint.port)))
        );
        assert_eq!(
            default_of("enable_ssl"),
            Some(SettingDefault::Boolean(
                settings.endpoint.tls != TlsMode::Plaintext
            ))
        );
    }

    #[test]
    fn schema_has_exactly_the_six_keys_with_their_kinds() {
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
                ("username", SettingKind::Text, false),
                ("password", SettingKind::Secret, false),
                ("email_address", SettingKind::Text, true),
            ]
        );
    }

    #[test]
    fn enable_ssl_help_explains_465_starttls_and_plaintext() {
        let help = schema()
            .into_iter()
            .find(|s| s.key == "enable_ssl")
            .unwrap()
            .help;
        assert!(help.contains("465"), "{help}");
        assert!(help.contains("implicit TLS"), "{help}");
        assert!(help.contains("STARTTLS, which is then required"), "{help}");
        assert!(help.contains("no fallback"), "{help}");
        assert!(
            help.contains("credentials are never sent over plaintext"),
            "{help}"
        );
    }

    #[test]
    fn network_template_only_names_schema_keys() {
        let keys: Vec<_> = schema().iter().map(|s| s.key).collect();
        let placeholders: Vec<_> = NETWORK
            .split('{')
            .skip(1)
            .map(|rest| rest.split('}').next().unwrap())
            .collect();
        assert_eq!(placeholders, vec!["host", "port"]);
        assert!(placeholders.iter().all(|p| keys.contains(p)));
    }

    #[test]
    fn tls_mode_follows_enable_ssl_and_port() {
        let cases = [
            (true, 465, TlsMode::ImplicitTls),
            (true, 587, TlsMode::Starttls),
            (true, 25, TlsMode::Starttls),
            (true, 2525, TlsMode::Starttls),
            (false, 465, TlsMode::Plaintext),
            (false, 587, TlsMode::Plaintext),
            (false, 25, TlsMode::Plaintext),
        ];
        for (enable_ssl, port, expected) in cases {
            let settings = parse(with(vec![
                boolean("enable_ssl", enable_ssl),
                integer("port", port),
            ]))
            .unwrap();
            assert_eq!(
                settings.endpoint.tls, expected,
                "enable_ssl={enable_ssl} port={port}"
            );
            assert_eq!(i64::from(settings.endpoint.port), port);
        }
    }

    #[test]
    fn missing_host_is_refused_naming_host() {
        let message = error(vec![text("email_address", "scanner@example.com")]);
        assert_eq!(message, "host: required, but not set");
    }

    #[test]
    fn blank_host_counts_as_missing() {
        let message = error(vec![
            text("host", "   "),
            text("email_address", "scanner@example.com"),
        ]);
        assert_eq!(message, "host: required, but not set");
    }

    #[test]
    fn missing_email_address_is_refused_naming_it() {
        let message = error(vec![text("host", "smtp.example.com")]);
        assert_eq!(message, "email_address: required, but not set");
    }

    #[test]
    fn email_address_must_be_an_address() {
        let message = error(vec![
            text("host", "smtp.example.com"),
            text("email_address", "scanner at example.com"),
        ]);
        assert!(message.starts_with("email_address:"), "{message}");
    }

    #[test]
    fn host_with_a_port_is_refused() {
        let message = error(vec![
            text("host", "smtp.example.com:587"),
            text("email_address", "scanner@example.com"),
        ]);
        assert!(message.starts_with("host:"), "{message}");
        assert!(message.contains("port"), "{message}");
    }

    #[test]
    fn host_with_a_path_or_login_is_refused() {
        for bad in [
            "smtp.example.com/x",
            "user@smtp.example.com",
            "smtp example.com",
        ] {
            let message = error(vec![
                text("host", bad),
                text("email_address", "scanner@example.com"),
            ]);
            assert!(message.starts_with("host:"), "{bad}: {message}");
        }
    }

    #[test]
    fn ports_outside_1_to_65535_are_refused() {
        for bad in [0, -1, 65536, i64::MAX] {
            let message = error(with(vec![integer("port", bad)]));
            assert!(message.starts_with("port:"), "{bad}: {message}");
        }
        for good in [1, 65535] {
            assert!(parse(with(vec![integer("port", good)])).is_ok(), "{good}");
        }
    }

    #[test]
    fn unknown_key_is_refused_naming_it() {
        let message = error(with(vec![text("smtp_server", "x")]));
        assert!(message.contains("\"smtp_server\""), "{message}");
    }

    #[test]
    fn wrong_kind_is_refused_naming_the_key() {
        let message = error(with(vec![text("port", "587")]));
        assert_eq!(message, "port: expected an integer value, got a text value");
        let message = error(with(vec![text("password", "hunter2")]));
        assert!(message.starts_with("password:"), "{message}");
    }

    #[test]
    fn duplicate_key_is_refused() {
        let message = error(with(vec![text("host", "other.example.com")]));
        assert_eq!(message, "host: given more than once");
    }

    #[test]
    fn login_carries_username_and_the_secret_handle() {
        let settings = parse(with(vec![
            text("username", "scanner"),
            secret("password", 7),
        ]))
        .unwrap();
        assert_eq!(
            settings.login,
            Some(Login {
                username: "scanner".to_owned(),
                password: Handle(7),
            })
        );
    }

    #[test]
    fn username_without_password_is_refused() {
        let message = error(with(vec![text("username", "scanner")]));
        assert_eq!(
            message,
            "username is set but password is not: set both, or neither"
        );
    }

    #[test]
    fn password_without_username_is_refused() {
        let message = error(with(vec![secret("password", 1)]));
        assert_eq!(
            message,
            "password is set but username is not: set both, or neither"
        );
    }

    #[test]
    fn empty_username_without_password_means_no_login() {
        let settings = parse(with(vec![text("username", "")])).unwrap();
        assert_eq!(settings.login, None);
    }

    #[test]
    fn credentials_over_plaintext_are_refused() {
        let message = error(with(vec![
            boolean("enable_ssl", false),
            text("username", "scanner"),
            secret("password", 1),
        ]));
        assert_eq!(
            message,
            "credentials are never sent over plaintext: turn on enable_ssl, or remove username \
             and password"
        );
    }

    #[test]
    fn plaintext_without_credentials_is_allowed() {
        let settings = parse(with(vec![
            boolean("enable_ssl", false),
            integer("port", 25),
        ]))
        .unwrap();
        assert_eq!(settings.endpoint.tls, TlsMode::Plaintext);
        assert_eq!(settings.login, None);
    }
}
