//! The settings vocabulary every sender plugin shares: the kinds of value, the schema entry the
//! host shows an administrator, the values the host hands over (generic in the secret handle,
//! so parsers test natively), and the checks and rules that must read the same in every
//! plugin: a host name that can't change the meaning of a grant, a port in 1..=65535, and how
//! "Enable SSL" and the port choose TLS.
//!
//! It must never read a secret's value (a secret is an opaque handle `S` here) and never call
//! a host capability.

use std::fmt;

/// The kind of value a setting holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    Text,
    Integer,
    Boolean,
    Secret,
}

/// A setting's default, filled in by the host when the administrator left it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingDefault {
    Text(&'static str),
    Integer(i64),
    Boolean(bool),
}

/// One entry of the schema a plugin describes to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingSpec {
    pub key: &'static str,
    pub label: &'static str,
    pub kind: SettingKind,
    pub required: bool,
    pub default: Option<SettingDefault>,
    pub help: &'static str,
}

/// A setting's value as the host hands it over; `S` is the secret handle (the host's resource
/// in a plugin, anything in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingValue<S> {
    Text(String),
    Integer(i64),
    Boolean(bool),
    Secret(S),
}

impl<S> SettingValue<S> {
    pub fn kind(&self) -> SettingKind {
        match self {
            Self::Text(_) => SettingKind::Text,
            Self::Integer(_) => SettingKind::Integer,
            Self::Boolean(_) => SettingKind::Boolean,
            Self::Secret(_) => SettingKind::Secret,
        }
    }
}

/// How the connection to the server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS; credentials are never sent.
    Plaintext,
    /// Connect in clear, then STARTTLS, which is required: no fallback to plaintext.
    Starttls,
    /// TLS from the first byte (SMTP 465, IMAP 993).
    ImplicitTls,
}

/// Where a mail-protocol connection goes and how it is secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
}

/// A login: both halves or none, so a half-configured login can't exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login<S> {
    pub username: String,
    pub password: S,
}

/// The settings can't work as given; the text names the offending key and says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSettings(pub String);

impl fmt::Display for InvalidSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidSettings {}

/// The settings the host handed over, checked against the plugin's schema (each key known, of
/// its kind, at most once), with typed getters. A getter falls back to the schema's default, and
/// every error names the key. Getters take the value out (a secret handle moves), so each key is
/// read once.
#[derive(Debug)]
pub struct Values<S> {
    schema: Vec<SettingSpec>,
    values: Vec<(&'static str, SettingValue<S>)>,
}

impl<S> Values<S> {
    /// Checks `entries` against `schema`; `label` names the sender in the error for an unknown
    /// key ("is not a setting of the SMTP sender").
    pub fn new(
        label: &str,
        schema: Vec<SettingSpec>,
        entries: impl IntoIterator<Item = (String, SettingValue<S>)>,
    ) -> Result<Self, InvalidSettings> {
        let mut values: Vec<(&'static str, SettingValue<S>)> = Vec::new();
        for (key, value) in entries {
            let Some(spec) = schema.iter().find(|spec| spec.key == key) else {
                return Err(InvalidSettings(format!(
                    "{key:?} is not a setting of the {label} sender"
                )));
            };
            if value.kind() != spec.kind {
                return Err(InvalidSettings(format!(
                    "{key}: expected {} value, got {} value",
                    kind_name(spec.kind),
                    kind_name(value.kind())
                )));
            }
            if values.iter().any(|(k, _)| *k == spec.key) {
                return Err(InvalidSettings(format!("{key}: given more than once")));
            }
            values.push((spec.key, value));
        }
        Ok(Self { schema, values })
    }

    fn take(
        &mut self,
        key: &str,
        kind: SettingKind,
    ) -> Result<Option<SettingValue<S>>, InvalidSettings> {
        let Some(spec) = self.schema.iter().find(|s| s.key == key) else {
            return Err(InvalidSettings(format!(
                "{key}: not in the sender's schema"
            )));
        };
        if spec.kind != kind {
            return Err(InvalidSettings(format!(
                "{key}: read as {} value, but the schema says {}",
                kind_name(kind),
                kind_name(spec.kind)
            )));
        }
        let given = self
            .values
            .iter()
            .position(|(k, _)| *k == key)
            .map(|at| self.values.remove(at).1);
        Ok(given.or_else(|| {
            spec.default.as_ref().map(|d| match d {
                SettingDefault::Text(t) => SettingValue::Text((*t).to_owned()),
                SettingDefault::Integer(i) => SettingValue::Integer(*i),
                SettingDefault::Boolean(b) => SettingValue::Boolean(*b),
            })
        }))
    }

    /// A text setting, or its default; none when neither is set.
    pub fn text(&mut self, key: &str) -> Result<Option<String>, InvalidSettings> {
        match self.take(key, SettingKind::Text)? {
            Some(SettingValue::Text(v)) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    /// A text setting that must be set; blank counts as missing. Trimmed.
    pub fn required_text(&mut self, key: &str) -> Result<String, InvalidSettings> {
        required_text(key, self.text(key)?)
    }

    /// A text setting where blank means "not set" (a form field the administrator cleared).
    pub fn optional_text(&mut self, key: &str) -> Result<Option<String>, InvalidSettings> {
        Ok(self
            .text(key)?
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()))
    }

    pub fn integer(&mut self, key: &str) -> Result<Option<i64>, InvalidSettings> {
        match self.take(key, SettingKind::Integer)? {
            Some(SettingValue::Integer(v)) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    pub fn boolean(&mut self, key: &str) -> Result<Option<bool>, InvalidSettings> {
        match self.take(key, SettingKind::Boolean)? {
            Some(SettingValue::Boolean(v)) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    /// A secret's handle, when set.
    pub fn secret(&mut self, key: &str) -> Result<Option<S>, InvalidSettings> {
        match self.take(key, SettingKind::Secret)? {
            Some(SettingValue::Secret(v)) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    pub fn required_secret(&mut self, key: &str) -> Result<S, InvalidSettings> {
        self.secret(key)?
            .ok_or_else(|| InvalidSettings(format!("{key}: required, but not set")))
    }
}

/// The product's rule for "Enable SSL": on the protocol's implicit-TLS port (SMTP 465, IMAP
/// 993) TLS starts with the first byte; on any other port the connection upgrades with
/// STARTTLS, which is then required; without SSL it stays in clear.
pub fn tls_mode(enable_ssl: bool, port: u16, implicit_tls_port: u16) -> TlsMode {
    match enable_ssl {
        true if port == implicit_tls_port => TlsMode::ImplicitTls,
        true => TlsMode::Starttls,
        false => TlsMode::Plaintext,
    }
}

/// The kind with its article, for error messages.
pub fn kind_name(kind: SettingKind) -> &'static str {
    match kind {
        SettingKind::Text => "a text",
        SettingKind::Integer => "an integer",
        SettingKind::Boolean => "a boolean",
        SettingKind::Secret => "a secret",
    }
}

/// A text that must be set: blank counts as missing.
pub fn required_text(key: &str, value: Option<String>) -> Result<String, InvalidSettings> {
    match value.map(|v| v.trim().to_owned()) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(InvalidSettings(format!("{key}: required, but not set"))),
    }
}

/// A host name, an IPv4 address or a bracketed IPv6 literal; nothing that would change the
/// meaning of a `scheme://{host}:{port}` grant (a port, a path, credentials).
pub fn host(host: String) -> Result<String, InvalidSettings> {
    let bracketed = host.starts_with('[') && host.ends_with(']');
    let bad = host.chars().find(|&c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '/' | '\\' | '@' | '?' | '#')
            || (c == ':' && !bracketed)
    });
    match bad {
        None => Ok(host),
        Some(':') => Err(InvalidSettings(format!(
            "host: {host:?} holds a ':'; give the port in port, not in host"
        ))),
        Some(c) => Err(InvalidSettings(format!(
            "host: {host:?} is not a host name (it holds {c:?})"
        ))),
    }
}

/// A port number from 1 to 65535.
pub fn port(port: i64) -> Result<u16, InvalidSettings> {
    match u16::try_from(port) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(InvalidSettings(format!(
            "port: {port} is not a port (1 to 65535)"
        ))),
    }
}

/// The login from the two settings: an empty username is "not set" (a form field the
/// administrator cleared); one half without the other is refused.
pub fn login<S>(
    username: Option<String>,
    password: Option<S>,
) -> Result<Option<Login<S>>, InvalidSettings> {
    let username = username.filter(|u| !u.trim().is_empty());
    match (username, password) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(InvalidSettings(
            "username is set but password is not: set both, or neither".to_owned(),
        )),
        (None, Some(_)) => Err(InvalidSettings(
            "password is set but username is not: set both, or neither".to_owned(),
        )),
        (Some(username), Some(password)) => Ok(Some(Login { username, password })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Vec<SettingSpec> {
        let spec = |key, kind, default| SettingSpec {
            key,
            label: key,
            kind,
            required: false,
            default,
            help: "",
        };
        vec![
            spec("host", SettingKind::Text, None),
            spec(
                "port",
                SettingKind::Integer,
                Some(SettingDefault::Integer(587)),
            ),
            spec("password", SettingKind::Secret, None),
        ]
    }

    fn values(entries: Vec<(&str, SettingValue<u8>)>) -> Result<Values<u8>, InvalidSettings> {
        Values::new(
            "Test",
            schema(),
            entries.into_iter().map(|(k, v)| (k.to_owned(), v)),
        )
    }

    #[test]
    fn values_refuse_unknown_keys_wrong_kinds_and_duplicates_naming_the_key() {
        let e = |entries| values(entries).unwrap_err().0;
        assert_eq!(
            e(vec![("hots", SettingValue::Text("x".into()))]),
            "\"hots\" is not a setting of the Test sender"
        );
        assert_eq!(
            e(vec![("port", SettingValue::Text("25".into()))]),
            "port: expected an integer value, got a text value"
        );
        assert_eq!(
            e(vec![
                ("port", SettingValue::Integer(1)),
                ("port", SettingValue::Integer(2))
            ]),
            "port: given more than once"
        );
    }

    #[test]
    fn getters_fall_back_to_the_schema_default_and_move_secrets_out() {
        let mut v = values(vec![
            ("host", SettingValue::Text(" mx ".into())),
            ("password", SettingValue::Secret(9)),
        ])
        .unwrap();
        assert_eq!(v.integer("port"), Ok(Some(587)));
        assert_eq!(v.required_text("host"), Ok("mx".to_owned()));
        assert_eq!(v.required_secret("password"), Ok(9));
        assert_eq!(
            v.required_secret("password").unwrap_err().0,
            "password: required, but not set"
        );
        assert!(v.boolean("port").unwrap_err().0.starts_with("port:"));
    }

    #[test]
    fn ssl_on_the_implicit_port_is_implicit_tls_and_elsewhere_required_starttls() {
        assert_eq!(tls_mode(true, 993, 993), TlsMode::ImplicitTls);
        assert_eq!(tls_mode(true, 143, 993), TlsMode::Starttls);
        assert_eq!(tls_mode(true, 465, 993), TlsMode::Starttls);
        assert_eq!(tls_mode(true, 465, 465), TlsMode::ImplicitTls);
        assert_eq!(tls_mode(false, 993, 993), TlsMode::Plaintext);
    }

    #[test]
    fn host_with_port_path_or_userinfo_is_refused_naming_host() {
        for bad in ["mx:25", "mx/x", "u@mx", "m x", "mx?a", "mx#a"] {
            let e = host(bad.to_owned()).unwrap_err().0;
            assert!(e.starts_with("host:"), "{bad}: {e}");
        }
        assert_eq!(host("[::1]".to_owned()).unwrap(), "[::1]");
        assert_eq!(host("127.0.0.1".to_owned()).unwrap(), "127.0.0.1");
    }

    #[test]
    fn ports_outside_1_to_65535_are_refused() {
        for bad in [0, -1, 65536] {
            assert!(port(bad).is_err(), "{bad}");
        }
        assert_eq!(port(993), Ok(993));
    }

    #[test]
    fn half_a_login_is_refused_and_a_blank_username_is_none() {
        assert!(login(Some("u".to_owned()), None::<u8>).is_err());
        assert!(login(None, Some(1u8)).is_err());
        assert_eq!(login(Some("  ".to_owned()), None::<u8>), Ok(None));
        assert_eq!(
            login(Some("u".to_owned()), Some(7u8)),
            Ok(Some(Login {
                username: "u".to_owned(),
                password: 7
            }))
        );
    }
}
