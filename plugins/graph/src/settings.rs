//! The Graph sender's settings: the schema the host shows an administrator, and the parser that
//! turns the host's `list<setting>` into [`Settings`].
//!
//! | key             | kind   | required | default                             | becomes                         |
//! |-----------------|--------|----------|-------------------------------------|---------------------------------|
//! | `tenant_id`     | text   | yes      |                                     | the token URL's tenant           |
//! | `client_id`     | text   | yes      |                                     | the application (a GUID)         |
//! | `client_secret` | secret | yes      |                                     | a handle the host fills in       |
//! | `username`      | text   | yes      |                                     | the mailbox that sends (UPN or id) |
//! | `from_email`    | text   | no       | the mailbox's own address            | the From address                 |
//! | `authority_url` | text   | no       | `https://login.microsoftonline.com` | where tokens come from           |
//! | `graph_url`     | text   | no       | `https://graph.microsoft.com`       | the Graph API                    |
//! | `outlook_url`   | text   | no       | `https://outlook.office.com`        | where large attachments upload   |
//!
//! `outlook_url` exists because Graph hands out upload URLs for large attachments on the Outlook
//! origin, not on Graph's: the sender must be granted it, and national clouds use other hosts.
//!
//! Plain Rust over the kit's [`Values`], generic in the secret handle, so it tests natively.
//! It must never read a secret's value (it can't) and never call a host capability.

pub use scan2x_mail_plugin_kit::settings::{
    InvalidSettings, SettingDefault, SettingKind, SettingSpec, SettingValue, Values,
};

/// What an administrator sees: the sender's label.
pub const LABEL: &str = "Microsoft Graph";

pub const DEFAULT_AUTHORITY_URL: &str = "https://login.microsoftonline.com";
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
pub const DEFAULT_OUTLOOK_URL: &str = "https://outlook.office.com";

/// The destinations the sender needs, as templates over its settings (whole origins).
pub const NETWORK: [&str; 3] = ["{authority_url}", "{graph_url}", "{outlook_url}"];

/// The sender's settings, checked. URLs have no trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings<S> {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: S,
    pub username: String,
    /// None: the mailbox's own address.
    pub from_email: Option<String>,
    pub authority_url: String,
    pub graph_url: String,
    pub outlook_url: String,
}

/// The schema, in the order an administrator fills it in.
pub fn schema() -> Vec<SettingSpec> {
    vec![
        SettingSpec {
            key: "tenant_id",
            label: "Tenant ID",
            kind: SettingKind::Text,
            required: true,
            default: None,
            help: "The Directory (tenant) ID of your Microsoft 365 organisation (a GUID), or its \
                   domain, e.g. contoso.onmicrosoft.com.",
        },
        SettingSpec {
            key: "client_id",
            label: "Client ID",
            kind: SettingKind::Text,
            required: true,
            default: None,
            help: "The Application (client) ID of the app registration (a GUID). The app needs \
                   the Mail.Send application permission with admin consent; large attachments \
                   also need Mail.ReadWrite.",
        },
        SettingSpec {
            key: "client_secret",
            label: "Client secret",
            kind: SettingKind::Secret,
            required: true,
            default: None,
            help: "A client secret of the app registration: its Value, not its Secret ID.",
        },
        SettingSpec {
            key: "username",
            label: "Username",
            kind: SettingKind::Text,
            required: true,
            default: None,
            help: "The mailbox that sends: its user principal name (scanner@contoso.com) or \
                   object ID. It needs an Exchange Online mailbox.",
        },
        SettingSpec {
            key: "from_email",
            label: "From email",
            kind: SettingKind::Text,
            required: false,
            default: None,
            help: "The From address, when it differs from the mailbox's own (the mailbox needs \
                   Send As permission on it). Empty: the mailbox's own address.",
        },
        SettingSpec {
            key: "authority_url",
            label: "Authority URL",
            kind: SettingKind::Text,
            required: false,
            default: Some(SettingDefault::Text(DEFAULT_AUTHORITY_URL)),
            help: "Where access tokens come from. Change it only for a national cloud, e.g. \
                   https://login.microsoftonline.us.",
        },
        SettingSpec {
            key: "graph_url",
            label: "Graph URL",
            kind: SettingKind::Text,
            required: false,
            default: Some(SettingDefault::Text(DEFAULT_GRAPH_URL)),
            help: "The Microsoft Graph endpoint. Change it only for a national cloud, e.g. \
                   https://graph.microsoft.us.",
        },
        SettingSpec {
            key: "outlook_url",
            label: "Outlook URL",
            kind: SettingKind::Text,
            required: false,
            default: Some(SettingDefault::Text(DEFAULT_OUTLOOK_URL)),
            help: "Where Graph uploads attachments over 3 MB (its upload URLs point there). \
                   Change it only for a national cloud, e.g. https://outlook.office365.us.",
        },
    ]
}

/// Parses the host's settings. Defaults are filled in by the host; they are filled in here too,
/// so a missing optional key means the same everywhere.
pub fn parse<S>(mut values: Values<S>) -> Result<Settings<S>, InvalidSettings> {
    let tenant_id = tenant_id(values.required_text("tenant_id")?)?;
    let client_id = values.required_text("client_id")?;
    if !is_guid(&client_id) {
        return Err(InvalidSettings(format!(
            "client_id: {client_id:?} is not an Application (client) ID; copy the GUID from the \
             app registration's Overview page"
        )));
    }
    let client_secret = values.required_secret("client_secret")?;
    let username = values.required_text("username")?;
    if !(is_address(&username) || is_guid(&username)) {
        return Err(InvalidSettings(format!(
            "username: {username:?} is neither a user principal name (name@domain) nor a user's \
             object ID"
        )));
    }
    let from_email = values.optional_text("from_email")?;
    if let Some(from) = &from_email
        && !is_address(from)
    {
        return Err(InvalidSettings(format!(
            "from_email: {from:?} is not an email address"
        )));
    }
    Ok(Settings {
        tenant_id,
        client_id,
        client_secret,
        username,
        from_email,
        authority_url: base_url(
            "authority_url",
            values
                .text("authority_url")?
                .as_deref()
                .unwrap_or(DEFAULT_AUTHORITY_URL),
        )?,
        graph_url: base_url(
            "graph_url",
            values
                .text("graph_url")?
                .as_deref()
                .unwrap_or(DEFAULT_GRAPH_URL),
        )?,
        outlook_url: base_url(
            "outlook_url",
            values
                .text("outlook_url")?
                .as_deref()
                .unwrap_or(DEFAULT_OUTLOOK_URL),
        )?,
    })
}

/// `8-4-4-4-12` hex digits.
pub fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `local@domain` with nothing that could break a URL path or a JSON address field.
pub fn is_address(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && domain.contains('.')
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '\\' | '?' | '#'))
}

/// A tenant GUID or a verified domain. The multi-tenant aliases can't issue app-only tokens.
fn tenant_id(text: String) -> Result<String, InvalidSettings> {
    let lower = text.to_ascii_lowercase();
    if matches!(lower.as_str(), "common" | "organizations" | "consumers") {
        return Err(InvalidSettings(format!(
            "tenant_id: {text:?} is not a tenant; app-only sign-in needs your Directory (tenant) \
             ID or a domain of your organisation"
        )));
    }
    let domain = lower.contains('.')
        && lower.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if is_guid(&text) || domain {
        Ok(text)
    } else {
        Err(InvalidSettings(format!(
            "tenant_id: {text:?} is neither a Directory (tenant) ID (a GUID) nor a domain such as \
             contoso.onmicrosoft.com"
        )))
    }
}

/// `https://host[:port][/path]`, without user info, query or fragment; no trailing `/`.
fn base_url(key: &str, text: &str) -> Result<String, InvalidSettings> {
    let text = text.trim().trim_end_matches('/');
    let Some(rest) = text.strip_prefix("https://") else {
        return Err(InvalidSettings(format!(
            "{key}: {text:?} must start with https://"
        )));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let bad = rest.chars().find(|&c| {
        c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '@' | '\\' | '%')
    });
    if authority.is_empty() || bad.is_some() {
        return Err(InvalidSettings(format!(
            "{key}: {text:?} is not an https://host[:port] URL"
        )));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const CLIENT: &str = "0b7b1a2c-3d4e-4f50-8a6b-7c8d9e0f1a2b";

    /// The settings as the kit hands them to [`super::parse`]: checked against the schema.
    fn parse(entries: Vec<(String, SettingValue<u32>)>) -> Result<Settings<u32>, InvalidSettings> {
        super::parse(Values::new(LABEL, schema(), entries)?)
    }

    fn text(key: &str, value: &str) -> (String, SettingValue<u32>) {
        (key.to_owned(), SettingValue::Text(value.to_owned()))
    }

    fn good() -> Vec<(String, SettingValue<u32>)> {
        vec![
            text("tenant_id", TENANT),
            text("client_id", CLIENT),
            ("client_secret".to_owned(), SettingValue::Secret(7)),
            text("username", "scanner@contoso.example"),
        ]
    }

    fn with(key: &str, value: &str) -> Vec<(String, SettingValue<u32>)> {
        let mut entries: Vec<_> = good().into_iter().filter(|(k, _)| k != key).collect();
        entries.push(text(key, value));
        entries
    }

    fn error(entries: Vec<(String, SettingValue<u32>)>) -> String {
        parse(entries).unwrap_err().0
    }

    #[test]
    fn the_seeds_fields_parse_with_public_cloud_defaults() {
        let s = parse(good()).unwrap();
        assert_eq!(s.tenant_id, TENANT);
        assert_eq!(s.client_id, CLIENT);
        assert_eq!(s.client_secret, 7);
        assert_eq!(s.username, "scanner@contoso.example");
        assert_eq!(s.from_email, None);
        assert_eq!(s.authority_url, "https://login.microsoftonline.com");
        assert_eq!(s.graph_url, "https://graph.microsoft.com");
        assert_eq!(s.outlook_url, "https://outlook.office.com");
    }

    #[test]
    fn schema_lists_the_seeds_fields_then_the_cloud_urls() {
        let keys: Vec<_> = schema()
            .iter()
            .map(|s| (s.key, s.kind, s.required))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("tenant_id", SettingKind::Text, true),
                ("client_id", SettingKind::Text, true),
                ("client_secret", SettingKind::Secret, true),
                ("username", SettingKind::Text, true),
                ("from_email", SettingKind::Text, false),
                ("authority_url", SettingKind::Text, false),
                ("graph_url", SettingKind::Text, false),
                ("outlook_url", SettingKind::Text, false),
            ]
        );
    }

    #[test]
    fn network_needs_are_the_three_url_settings() {
        let keys: Vec<_> = schema().iter().map(|s| s.key).collect();
        for need in NETWORK {
            let key = need.trim_start_matches('{').trim_end_matches('}');
            assert!(keys.contains(&key), "{need}");
        }
    }

    #[test]
    fn urls_lose_a_trailing_slash_and_may_carry_a_port() {
        let s = parse(with("graph_url", "https://127.0.0.1:8443/")).unwrap();
        assert_eq!(s.graph_url, "https://127.0.0.1:8443");
    }

    #[test]
    fn urls_must_be_https_without_query_or_user_info() {
        for bad in [
            "http://graph.microsoft.com",
            "graph.microsoft.com",
            "https://",
            "https://a@graph.microsoft.com",
            "https://graph.microsoft.com?x=1",
            "https://graph.microsoft.com/#x",
        ] {
            let e = error(with("graph_url", bad));
            assert!(e.starts_with("graph_url:"), "{bad}: {e}");
        }
    }

    #[test]
    fn tenant_must_be_a_guid_or_a_domain_not_a_multi_tenant_alias() {
        assert!(parse(with("tenant_id", "contoso.onmicrosoft.com")).is_ok());
        for bad in [
            "common",
            "organizations",
            "not a tenant",
            "contoso",
            "x/y.z",
        ] {
            let e = error(with("tenant_id", bad));
            assert!(e.starts_with("tenant_id:"), "{bad}: {e}");
        }
    }

    #[test]
    fn client_id_must_be_a_guid() {
        let e = error(with("client_id", "my-app"));
        assert!(e.starts_with("client_id:"), "{e}");
        assert!(e.contains("Application (client) ID"), "{e}");
    }

    #[test]
    fn username_is_a_upn_or_an_object_id() {
        assert!(parse(with("username", CLIENT)).is_ok());
        for bad in ["scanner", "a/b@c.d", "x@y"] {
            let e = error(with("username", bad));
            assert!(e.starts_with("username:"), "{bad}: {e}");
        }
    }

    #[test]
    fn from_email_is_optional_and_checked_when_given() {
        let s = parse(with("from_email", "desk@contoso.example")).unwrap();
        assert_eq!(s.from_email.as_deref(), Some("desk@contoso.example"));
        assert_eq!(parse(with("from_email", " ")).unwrap().from_email, None);
        assert!(error(with("from_email", "desk")).starts_with("from_email:"));
    }

    #[test]
    fn missing_secret_and_unknown_or_mistyped_keys_are_named() {
        let entries: Vec<_> = good()
            .into_iter()
            .filter(|(k, _)| k != "client_secret")
            .collect();
        assert_eq!(error(entries), "client_secret: required, but not set");
        assert!(error(with("password", "x")).contains("\"password\""));
        assert_eq!(
            error(with("client_secret", "plain")),
            "client_secret: expected a secret value, got a text value"
        );
    }
}
