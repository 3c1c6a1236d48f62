//! The capability gate: the one place that decides whether a sender may reach a destination.
//!
//! A sender's grants are the network needs its plugin declares in `describe()` (URL templates
//! such as `smtp://{host}:{port}`), filled in from the sender's own settings when the sender is
//! loaded, and parsed into [`Grant`]s then. Every host function that touches the network calls
//! [`Gate::check`] on its first line with the scheme, host and port it is about to connect to;
//! a refusal is returned to the plugin as a `denied` error, never a trap. The name checked is the
//! name connected to: the capabilities resolve DNS only after the check, and only through
//! `capability::resolve`, from the [`Host`] the check returns.
//!
//! Hosts, in grants and in calls alike, are parsed by [`Host::parse`] into a name or an address:
//!
//! | written | parsed as |
//! |---|---|
//! | `Mail.Example.COM.` | the name `mail.example.com` (letters, digits and `-` in labels of 1–63) |
//! | `127.0.0.1`, `[::1]`, `::1` | that address |
//! | `[::ffff:127.0.0.1]` | `127.0.0.1`: an IPv4-mapped IPv6 address is the IPv4 address it reaches |
//! | `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`, `0x7f000001` | `127.0.0.1`, by the WHATWG (inet_aton) IPv4 rules every resolver and URL parser applies to them |
//! | `1.2.3.4.5`, `999.1.1.1`, `0x`, `08.1.1.1`, `a.123` | refused: a host whose last label is a number is an IPv4 address or nothing |
//!
//! so a grant and a call compare as the addresses they mean, whatever their spelling, and the
//! system resolver is never handed a numeric spelling to read its own way. This module must never
//! resolve a name or open a connection.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    /// A host name or an IP address, in whatever spelling: numeric spellings become the address
    /// they mean (see the module's table), names are lowercased without their trailing dot.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a host name or IP address");
        if let Some(inner) = text.strip_prefix('[') {
            // Brackets hold an IPv6 address, and nothing else.
            let ip = inner
                .strip_suffix(']')
                .and_then(|ip| ip.parse::<Ipv6Addr>().ok())
                .ok_or_else(bad)?;
            return Ok(Host::ip(IpAddr::V6(ip)));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Host::ip(ip));
        }
        let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        if ends_in_a_number(&name) {
            return ipv4_numeric(&name)
                .map(|ip| Host::Ip(IpAddr::V4(ip)))
                .ok_or_else(|| {
                    format!(
                        "{text:?} is not a host name, and not an IPv4 address either: 1 to 4 \
                         numbers, each at most 255 but the last, e.g. 192.0.2.10"
                    )
                });
        }
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if valid {
            Ok(Host::Name(name))
        } else {
            Err(bad())
        }
    }

    /// An address as the gate compares it: an IPv4-mapped IPv6 address is its IPv4 address.
    fn ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Host::Ip(IpAddr::V4(v4)),
                None => Host::Ip(ip),
            },
            v4 => Host::Ip(v4),
        }
    }

    /// The host as a TLS client names it: a name, or an address without brackets.
    pub fn server_name(&self) -> String {
        match self {
            Host::Name(name) => name.clone(),
            Host::Ip(ip) => ip.to_string(),
        }
    }
}

/// Whether a host's last label is a number (WHATWG "ends in a number"), which makes the whole
/// host an IPv4 address to every URL parser and resolver, or an invalid one.
fn ends_in_a_number(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or_default();
    let hex = last
        .strip_prefix("0x")
        .is_some_and(|digits| digits.chars().all(|c| c.is_ascii_hexdigit()));
    hex || (!last.is_empty() && last.chars().all(|c| c.is_ascii_digit()))
}

/// An IPv4 address in the WHATWG / inet_aton spelling: 1–4 numbers, each decimal, octal (a
/// leading `0`) or hexadecimal (`0x`); all but the last fill one byte, the last fills the rest.
/// None for anything else, and for `0x` without digits (0 to some parsers, an error to others).
fn ipv4_numeric(host: &str) -> Option<Ipv4Addr> {
    let parts = host
        .split('.')
        .map(|part| {
            let (digits, radix) = match part.strip_prefix("0x") {
                Some(hex) => (hex, 16),
                None if part.len() > 1 && part.starts_with('0') => (&part[1..], 8),
                None => (part, 10),
            };
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            u32::from_str_radix(digits, radix).ok()
        })
        .collect::<Option<Vec<u32>>>()?;
    let (last, head) = parts.split_last()?;
    if head.len() > 3 || head.iter().any(|&part| part > 255) {
        return None;
    }
    let room = 8 * (4 - head.len() as u32);
    if room < 32 && *last >= 1 << room {
        return None;
    }
    let high = head
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, &part)| acc | part << (24 - 8 * i as u32));
    Some(Ipv4Addr::from(high | last))
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
    /// The host as the grants were compared with it: the address, for a numeric spelling.
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

    /// The check every network capability makes before it connects. The host it returns is the
    /// one to connect to: a numeric spelling is the address the grants were compared with.
    pub fn check(&self, scheme: &str, host: &str, port: u16) -> Result<Host, Denied> {
        let parsed = Host::parse(host);
        if let Ok(h) = &parsed
            && self.grants.iter().any(|g| g.allows(scheme, h, port))
        {
            return Ok(h.clone());
        }
        let granted: Vec<String> = self.grants.iter().map(ToString::to_string).collect();
        Err(Denied {
            sender: self.sender.clone(),
            scheme: scheme.to_string(),
            host: parsed
                .as_ref()
                .map_or_else(|_| host.to_string(), ToString::to_string),
            port,
            granted: if granted.is_empty() {
                "none".into()
            } else {
                granted.join(", ")
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn numeric_spellings_are_the_address_they_mean() {
        let loopback = Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        for spelling in [
            "127.0.0.1",
            "2130706433",
            "0x7f.1",
            "0177.0.0.1",
            "127.1",
            "127.0.1",
            "0x7f000001",
            "0X7F.0.0.1",
            "0x7F.0x00.0x0.01",
            "017700000001",
            "127.0.0.1.",
            "[::ffff:127.0.0.1]",
            "::ffff:7f00:1",
        ] {
            assert_eq!(Host::parse(spelling), Ok(loopback.clone()), "{spelling}");
        }
        assert_eq!(
            Host::parse("0xa9.0xfe.0xa9.0xfe"),
            Ok(Host::Ip(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))))
        );
        assert_eq!(
            Host::parse("0"),
            Ok(Host::Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
        );
        assert_eq!(
            Host::parse("4294967295"),
            Ok(Host::Ip(IpAddr::V4(Ipv4Addr::BROADCAST)))
        );
    }

    #[test]
    fn ambiguous_or_out_of_range_numbers_are_refused() {
        for junk in [
            "1.2.3.4.5",
            "0x",
            "0x.1",
            "999.1.1.1",
            "256.0.0.1",
            "1.2.3.256",
            "1.2.65536",
            "1.16777216",
            "4294967296",
            "08.1.1.1",
            "0x1g.1",
            "1..1",
            ".1.2.3",
            "a.123",
            "mail.example.0x10",
            "99999999999999999999",
        ] {
            assert!(
                Host::parse(junk).is_err(),
                "{junk} parsed as {:?}",
                Host::parse(junk)
            );
        }
    }

    #[test]
    fn hosts_that_are_neither_names_nor_addresses_are_refused() {
        for junk in [
            "",
            ".",
            "a b",
            "-mail.example.com",
            "mail-.example.com",
            "mail..example.com",
            "mail_relay.example.com",
            "[mail.example.com]",
            "[127.0.0.1]",
            "[[::1]]",
            "[::1",
            "fe80::1%eth0",
            "mail.example.com:25",
            "münchen.example",
        ] {
            assert!(
                Host::parse(junk).is_err(),
                "{junk:?} parsed as {:?}",
                Host::parse(junk)
            );
        }
        for name in [
            "1e100.net",
            "xn--mnchen-3ya.example",
            "a-b.c0x1",
            "0x1.example",
        ] {
            assert!(matches!(Host::parse(name), Ok(Host::Name(_))), "{name}");
        }
    }

    #[test]
    fn numeric_grant_is_canonicalised() {
        let gate = Gate::new(
            "relay",
            vec![Grant::parse("smtp://2130706433:2525").unwrap()],
        );
        assert_eq!(gate.grants()[0].to_string(), "smtp://127.0.0.1:2525");
        assert_eq!(
            gate.check("smtp", "127.0.0.1", 2525),
            Ok(Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)))
        );
        assert!(gate.check("smtp", "0x7f.1", 2525).is_ok());
        assert!(gate.check("smtp", "[::ffff:127.0.0.1]", 2525).is_ok());
        let denied = gate.check("smtp", "2130706434", 2525).unwrap_err();
        assert_eq!(denied.host, "127.0.0.2");
        assert!(
            denied.to_string().contains("smtp://127.0.0.2:2525;"),
            "{denied}"
        );
    }

    #[test]
    fn numeric_call_host_is_checked_and_returned_as_its_address() {
        let gate = Gate::new(
            "relay",
            vec![Grant::parse("smtp://127.0.0.1:2525").unwrap()],
        );
        for spelling in ["2130706433", "0177.0.0.1", "127.1", "0x7f000001"] {
            assert_eq!(
                gate.check("smtp", spelling, 2525),
                Ok(Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))),
                "{spelling}"
            );
        }
        let named = Gate::new(
            "relay",
            vec![Grant::parse("smtp://mail.example.com:25").unwrap()],
        );
        assert_eq!(
            named.check("smtp", "Mail.Example.com.", 25),
            Ok(Host::Name("mail.example.com".into()))
        );
    }
}
