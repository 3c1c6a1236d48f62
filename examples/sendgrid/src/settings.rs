//! The SendGrid sender's settings: the schema the host shows an administrator and checks the
//! sender's table against, and the parser of what the host hands over.
//!
//! | key          | kind   | required | default                    | becomes                           |
//! |--------------|--------|----------|----------------------------|-----------------------------------|
//! | `api_key`    | secret | yes      |                            | `Authorization: Bearer …`, filled in by the host |
//! | `from_email` | text   | yes      |                            | the From address (a verified Sender Identity) |
//! | `from_name`  | text   | no       |                            | the From display name             |
//! | `api_url`    | text   | no       | `https://api.sendgrid.com` | where requests go (the only grant) |
//!
//! Plain Rust over the kit's [`Values`], generic in the secret handle; it never reads a secret.

use scan2x_mail_plugin_kit::settings::{
    InvalidSettings, SettingDefault, SettingKind, SettingSpec, Values,
};

/// What an administrator sees: the sender's label.
pub const LABEL: &str = "SendGrid";

/// SendGrid's API; `https://api.eu.sendgrid.com` for an EU-pinned subuser.
pub const DEFAULT_API_URL: &str = "https://api.sendgrid.com";

/// The one destination the sender needs: the API's origin, from its own setting.
pub const NETWORK: &str = "{api_url}";

/// The sender's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings<S> {
    pub api_key: S,
    pub from_email: String,
    pub from_name: Option<String>,
    /// `https://host[:port]`, no trailing `/`.
    pub api_url: String,
}

/// The schema, in the order an administrator fills it in.
pub fn schema() -> Vec<SettingSpec> {
    vec![
        SettingSpec {
            key: "api_key",
            label: "API key",
            kind: SettingKind::Secret,
            required: true,
            default: None,
            help: "A SendGrid API key with the Mail Send permission (starts with SG.). It stays \
                   with the host; the plugin never sees it.",
        },
        SettingSpec {
            key: "from_email",
            label: "From email",
            kind: SettingKind::Text,
            required: true,
            default: None,
            help: "The From address; SendGrid sends only from a verified Sender Identity (a \
                   verified sender or an authenticated domain).",
        },
        SettingSpec {
            key: "from_name",
            label: "From name",
            kind: SettingKind::Text,
            required: false,
            default: None,
            help: "The display name of the From address, e.g. Scanner.",
        },
        SettingSpec {
            key: "api_url",
            label: "API URL",
            kind: SettingKind::Text,
            required: false,
            default: Some(SettingDefault::Text(DEFAULT_API_URL)),
            help: "SendGrid's API. Change it only for EU data residency \
                   (https://api.eu.sendgrid.com).",
        },
    ]
}

/// Parses the settings the kit checked against [`schema`]: an address that looks like one, and
/// an `https://` origin a grant can name.
pub fn parse<S>(mut values: Values<S>) -> Result<Settings<S>, InvalidSettings> {
    let api_key = values.required_secret("api_key")?;
    let from_email = values.required_text("from_email")?;
    let looks_like_address = from_email
        .rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !from_email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control());
    if !looks_like_address {
        return Err(InvalidSettings(format!(
            "from_email: {from_email:?} is not an email address"
        )));
    }
    let from_name = values.optional_text("from_name")?;
    let api_url = values
        .text("api_url")?
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    let api_url = api_url.trim().trim_end_matches('/').to_owned();
    let origin_only = api_url
        .strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '?', '#', '@', '\\', ' ']));
    if !origin_only {
        return Err(InvalidSettings(format!(
            "api_url: {api_url:?} is not an https://host[:port] URL"
        )));
    }
    Ok(Settings {
        api_key,
        from_email,
        from_name,
        api_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scan2x_mail_plugin_kit::settings::SettingValue;

    fn parse(entries: &[(&str, &str)]) -> Result<Settings<u8>, InvalidSettings> {
        let mut list = vec![("api_key".to_owned(), SettingValue::Secret(1))];
        list.extend(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), SettingValue::Text((*v).to_owned()))),
        );
        super::parse(Values::new(LABEL, schema(), list)?)
    }

    #[test]
    fn defaults_to_sendgrids_api_and_no_from_name() {
        let s = parse(&[("from_email", "scans@example.com")]).unwrap();
        assert_eq!(s.api_url, "https://api.sendgrid.com");
        assert_eq!(s.from_name, None);
        assert_eq!(s.api_key, 1);
    }

    #[test]
    fn api_url_must_be_an_https_origin() {
        for bad in [
            "http://api.sendgrid.com",
            "https://api.sendgrid.com/v3",
            "https://u@api.sendgrid.com",
        ] {
            let e = parse(&[("from_email", "a@example.com"), ("api_url", bad)]).unwrap_err();
            assert!(e.0.starts_with("api_url:"), "{bad}: {e}");
        }
        let s = parse(&[
            ("from_email", "a@example.com"),
            ("api_url", "https://127.0.0.1:8443/"),
        ])
        .unwrap();
        assert_eq!(s.api_url, "https://127.0.0.1:8443");
    }

    #[test]
    fn from_email_is_required_and_must_be_an_address() {
        assert_eq!(
            parse(&[]).unwrap_err().0,
            "from_email: required, but not set"
        );
        assert!(
            parse(&[("from_email", "scans at example.com")])
                .unwrap_err()
                .0
                .starts_with("from_email:")
        );
    }

    #[test]
    fn network_need_is_the_api_url_setting() {
        assert_eq!(NETWORK, "{api_url}");
        assert!(schema().iter().any(|s| s.key == "api_url"));
    }
}
