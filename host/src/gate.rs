//! The capability gate: the one place that decides whether a sender may reach a destination.
//!
//! A sender's grants are the network needs its plugin declares in `describe()` (URL templates
//! such as `smtp://{host}:{port}`), filled in from the sender's own settings when the sender is
//! loaded, and parsed into [`Grant`]s then. Every host function that touches the network calls
//! [`Gate::check`] on its first line with the scheme, host and port it is about to connect to;
//! a refusal is returned to the plugin as a `denied` error, never a trap. The name checked is the
//! name connected to: the capabilities resolve DNS only after the check.

use std::fmt;
use std::net::IpAddr;

use crate::settings::ResolvedSetting;
use crate::settings::ResolvedValue;

/// One destination a sender may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `smtp`, `imap`, `https`, `http`: the capability's own scheme.
    pub scheme: String,
    pub host: HostPattern,
    /// None: any port (written `*`, only in `allow_hosts`).
    pub port: Option<u16>,
}

/// A host name (lowercase, no trailing dot) or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

/// What a grant matches: one host, or (`*.example.com`) every name below a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(Host),
    /// The domain, without the `*.`; matches names strictly below it, not the domain itself.
    Below(String),
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.strip_prefix("*.") {
            Some(domain) => match Host::parse(domain)? {
                Host::Name(name) if name.contains('.') => Ok(HostPattern::Below(name)),
                _ => Err(format!(
                    "{text:?}: a wildcard needs a domain of two labels or more, e.g. *.example.com"
                )),
            },
            None => Host::parse(text).map(HostPattern::Exact),
        }
    }

    fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (HostPattern::Exact(h), host) => h == host,
            (HostPattern::Below(domain), Host::Name(name)) => name
                .strip_suffix(domain.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            (HostPattern::Below(_), Host::Ip(_)) => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => write!(f, "{h}"),
            HostPattern::Below(domain) => write!(f, "*.{domain}"),
        }
    }
}

impl Host {
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = trimmed.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        let name = trimmed.trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if valid {
            Ok(Host::Name(name))
        } else {
            Err(format!("{text:?} is not a host name or IP address"))
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}://{}:{port}", self.scheme, self.host),
            None => write!(f, "{}://{}:*", self.scheme, self.host),
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "smtp" => Some(25),
        "imap" => Some(143),
        _ => None,
    }
}

impl Grant {
    /// Parses `scheme://host[:port][/path]`; `host` may be `*.domain` and `port` may be `*`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("{text:?} is not scheme://host:port"))?;
        let scheme = scheme.to_ascii_lowercase();
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err(format!(
                "{text:?}: user info is not allowed in a destination"
            ));
        }
        let bad_port = || format!("{text:?}: the port must be a number from 1 to 65535, or *");
        let (host, port) = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => {
                let port = match &authority[i + 1..] {
                    "*" => None,
                    digits => Some(
                        digits
                            .parse::<u16>()
                            .ok()
                            .filter(|p| *p != 0)
                            .ok_or_else(bad_port)?,
                    ),
                };
                (&authority[..i], port)
            }
            _ => (
                authority,
                Some(default_port(&scheme).ok_or_else(|| format!("{text:?}: give a port"))?),
            ),
        };
        Ok(Grant {
            scheme,
            host: HostPattern::parse(host)?,
            port,
        })
    }

    /// Fills `{key}` placeholders from the sender's settings, then parses the result.
    pub fn from_template(template: &str, settings: &[ResolvedSetting]) -> Result<Self, String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("network need {template:?}: unclosed `{{`"))?
                + start;
            let key = &rest[start + 1..end];
            let value = settings.iter().find(|s| s.key == key).map(|s| &s.value);
            match value {
                Some(ResolvedValue::Text(t)) => out.push_str(t),
                Some(ResolvedValue::Integer(i)) => out.push_str(&i.to_string()),
                Some(_) => {
                    return Err(format!(
                        "network need {template:?}: setting `{key}` is not text or a number"
                    ));
                }
                None => {
                    return Err(format!(
                        "network need {template:?}: setting `{key}` is not set"
                    ));
                }
            }
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Grant::parse(&out).map_err(|e| format!("network need {template:?} gives {e}"))
    }

    fn allows(&self, scheme: &str, host: &Host, port: u16) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
            && self.host.matches(host)
            && self.port.is_none_or(|p| p == port)
    }

    /// Whether every destination this grant allows is also allowed by `other`.
    pub fn covered_by(&self, other: &Grant) -> bool {
        let host = match &self.host {
            HostPattern::Exact(h) => other.host.matches(h),
            HostPattern::Below(_) => other.host == self.host,
        };
        self.scheme == other.scheme && host && (other.port.is_none() || other.port == self.port)
    }
}

/// Why the gate refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sender '{sender}' is not granted {scheme}://{host}:{port}; its grants: {granted}")]
pub struct Denied {
    pub sender: String,
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub granted: String,
}

/// The grants of one sender.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    sender: String,
    grants: Vec<Grant>,
}

impl Gate {
    pub fn new(sender: impl Into<String>, grants: Vec<Grant>) -> Self {
        Self {
            sender: sender.into(),
            grants,
        }
    }

    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// The check every network capability makes before it connects.
    pub fn check(&self, scheme: &str, host: &str, port: u16) -> Result<(), Denied> {
        let allowed = Host::parse(host)
            .map(|h| self.grants.iter().any(|g| g.allows(scheme, &h, port)))
            .unwrap_or(false);
        if allowed {
            Ok(())
        } else {
            let granted: Vec<String> = self.grants.iter().map(ToString::to_string).collect();
            Err(Denied {
                sender: self.sender.clone(),
                scheme: scheme.to_string(),
                host: host.to_string(),
                port,
                granted: if granted.is_empty() {
                    "none".into()
                } else {
                    granted.join(", ")
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(key: &str, value: &str) -> ResolvedSetting {
        ResolvedSetting {
            key: key.into(),
            value: ResolvedValue::Text(value.into()),
        }
    }

    fn int(key: &str, value: i64) -> ResolvedSetting {
        ResolvedSetting {
            key: key.into(),
            value: ResolvedValue::Integer(value),
        }
    }

    #[test]
    fn template_is_filled_from_settings() {
        let g = Grant::from_template(
            "smtp://{host}:{port}",
            &[text("host", "Mail.Example.COM."), int("port", 587)],
        )
        .unwrap();
        assert_eq!(g.to_string(), "smtp://mail.example.com:587");
    }

    #[test]
    fn url_settings_fill_whole_origins() {
        let g = Grant::from_template(
            "{graph_url}",
            &[text("graph_url", "https://graph.example.test/v1.0")],
        )
        .unwrap();
        assert_eq!(g.to_string(), "https://graph.example.test:443");
    }

    #[test]
    fn granted_destination_is_allowed() {
        let gate = Gate::new(
            "relay",
            vec![Grant::parse("smtp://127.0.0.1:2525").unwrap()],
        );
        assert!(gate.check("smtp", "127.0.0.1", 2525).is_ok());
    }

    #[test]
    fn ungranted_host_port_or_scheme_is_denied() {
        let gate = Gate::new(
            "relay",
            vec![Grant::parse("smtp://mail.example.com:587").unwrap()],
        );
        for (scheme, host, port) in [
            ("smtp", "evil.example.com", 587),
            ("smtp", "mail.example.com", 25),
            ("imap", "mail.example.com", 587),
            ("smtp", "mail.example.com.evil.test", 587),
        ] {
            let denied = gate.check(scheme, host, port).unwrap_err();
            assert_eq!(denied.host, host);
            assert!(
                denied.to_string().contains("smtp://mail.example.com:587"),
                "{denied}"
            );
        }
    }

    #[test]
    fn host_names_compare_without_case_or_trailing_dot() {
        let gate = Gate::new(
            "relay",
            vec![Grant::parse("smtp://mail.example.com:587").unwrap()],
        );
        assert!(gate.check("SMTP", "MAIL.example.com.", 587).is_ok());
    }

    #[test]
    fn ipv6_hosts_are_parsed_and_compared_as_addresses() {
        let gate = Gate::new("relay", vec![Grant::parse("smtp://[::1]:2525").unwrap()]);
        assert!(gate.check("smtp", "::1", 2525).is_ok());
        assert!(gate.check("smtp", "0:0:0:0:0:0:0:1", 2525).is_ok());
        assert!(gate.check("smtp", "127.0.0.1", 2525).is_err());
    }

    #[test]
    fn a_wildcard_grants_names_below_its_domain_only() {
        let gate = Gate::new("o365", vec![Grant::parse("https://*.example.com").unwrap()]);
        assert!(gate.check("https", "graph.example.com", 443).is_ok());
        assert!(gate.check("https", "a.b.example.com", 443).is_ok());
        for host in [
            "example.com",
            "evilexample.com",
            "example.com.evil.test",
            "127.0.0.1",
        ] {
            assert!(gate.check("https", host, 443).is_err(), "{host}");
        }
        assert!(gate.check("https", "graph.example.com", 8443).is_err());
    }

    #[test]
    fn a_star_port_grants_every_port_of_the_host() {
        let gate = Gate::new(
            "relay",
            vec![Grant::parse("smtp://mx.example.com:*").unwrap()],
        );
        assert!(gate.check("smtp", "mx.example.com", 2525).is_ok());
        assert!(gate.check("smtp", "mx2.example.com", 2525).is_err());
    }

    #[test]
    fn coverage_compares_grants() {
        let need = Grant::parse("https://graph.example.com").unwrap();
        assert!(need.covered_by(&Grant::parse("https://*.example.com:*").unwrap()));
        assert!(!need.covered_by(&Grant::parse("https://login.example.com").unwrap()));
        assert!(
            !Grant::parse("https://*.example.com")
                .unwrap()
                .covered_by(&need)
        );
    }

    #[test]
    fn malformed_destinations_are_refused_at_parse_time() {
        for bad in [
            "smtp:/x:1",
            "smtp://a b:25",
            "smtp://x:0",
            "smtp://x:99999",
            "foo://x",
            "smtp://u@x:25",
            "https://*.com",
            "https://*",
        ] {
            assert!(Grant::parse(bad).is_err(), "{bad} parsed");
        }
    }
}
