//! Where a destination the gate allowed becomes the socket addresses a capability connects to:
//! the one DNS lookup of every network capability (`smtp`, `imap`, and `http` through its
//! client's resolver), made after the gate and before any connection.
//!
//! | the gate's host | addresses |
//! |---|---|
//! | an IP address (a numeric spelling is one by then) | that address, no lookup: the administrator wrote it |
//! | `localhost`, `*.localhost` | the system resolver's answer: a name for this machine, written on purpose |
//! | any other name | the system resolver's answer, refused as `denied` if any answer is loopback, link-local (cloud metadata at 169.254.169.254 among them) or unspecified, IPv4-mapped forms included, unless the sender sets `allow_loopback_names = true` |
//!
//! Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) are answers like any other: internal
//! relays live there. The addresses returned are the ones connected to; nothing resolves the
//! name a second time, so the answer checked is the answer used.
//!
//! This module must never connect, and never resolve a host that has not passed the gate.

use std::net::{IpAddr, SocketAddr};

use super::SenderContext;
use crate::gate::Host;
use crate::wit::types::Endpoint;

/// The sender setting that lets a name resolve to this machine's own addresses.
pub const ALLOW_LOOPBACK_NAMES: &str = "allow_loopback_names";

/// Why a destination yields no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The name resolves to an address of this machine or its link: the call is `denied`.
    #[error(
        "{name} resolves to {address} ({kind}), an address a name should not lead to; nothing was \
         connected. Write the address itself as the host if it is meant, or set \
         {ALLOW_LOOPBACK_NAMES} = true for this sender"
    )]
    LocalAnswer {
        name: String,
        address: IpAddr,
        kind: &'static str,
    },
    /// The lookup failed, or found nothing: the resolver's own error, passed on.
    #[error("{0}")]
    Failed(#[source] std::io::Error),
}

impl LookupError {
    /// Whether the call is refused (`denied`), rather than failed (a temporary network error).
    pub fn is_denied(&self) -> bool {
        matches!(self, LookupError::LocalAnswer { .. })
    }

    /// The refusal inside an I/O error made by `From<LookupError>`, if it holds one.
    pub fn denial(e: &std::io::Error) -> Option<&LookupError> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<LookupError>())
            .filter(|lookup| lookup.is_denied())
    }
}

impl From<LookupError> for std::io::Error {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::Failed(e) => e,
            denied => std::io::Error::new(std::io::ErrorKind::PermissionDenied, denied),
        }
    }
}

/// The addresses to connect to for `host` (as [`crate::gate::Gate::check`] returned it) and
/// `port`, in the resolver's order.
pub async fn addresses(
    host: &Host,
    port: u16,
    allow_loopback_names: bool,
) -> Result<Vec<SocketAddr>, LookupError> {
    match host {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Name(name) => {
            let answers = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(LookupError::Failed)?
                .collect();
            checked(name, answers, allow_loopback_names)
        }
    }
}

/// The addresses of a plugin's `endpoint` (its host parsed as the gate parsed it), for the
/// sender whose context this is.
pub async fn endpoint_addresses(
    ctx: &SenderContext,
    endpoint: &Endpoint,
) -> Result<Vec<SocketAddr>, LookupError> {
    let host = Host::parse(&endpoint.host).map_err(|e| {
        LookupError::Failed(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    })?;
    addresses(&host, endpoint.port, ctx.allow_loopback_names).await
}

/// The resolver's `answers` for `name`, or the refusal they earn.
pub fn checked(
    name: &str,
    answers: Vec<SocketAddr>,
    allow_loopback_names: bool,
) -> Result<Vec<SocketAddr>, LookupError> {
    if answers.is_empty() {
        return Err(LookupError::Failed(std::io::Error::other(format!(
            "{name} resolves to no address"
        ))));
    }
    let named_on_purpose = name == "localhost" || name.ends_with(".localhost");
    if !allow_loopback_names && !named_on_purpose {
        for answer in &answers {
            if let Some(kind) = local_kind(answer.ip()) {
                return Err(LookupError::LocalAnswer {
                    name: name.to_string(),
                    address: answer.ip(),
                    kind,
                });
            }
        }
    }
    Ok(answers)
}

/// What makes `ip` an address of this machine or its link, if it is one: `loopback`
/// (127/8, ::1), `link-local` (169.254/16, fe80::/10) or `unspecified` (0/8, ::, which
/// reach this machine too); an IPv4-mapped IPv6 address counts as its IPv4 address.
pub fn local_kind(ip: IpAddr) -> Option<&'static str> {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None if v6.is_loopback() => return Some("loopback"),
            None if v6.is_unspecified() => return Some("unspecified"),
            None if v6.is_unicast_link_local() => return Some("link-local"),
            None => return None,
        },
    };
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if v4.octets()[0] == 0 {
        Some("unspecified")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_of_this_machine_and_its_link_are_local() {
        for (address, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.0.1.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("169.254.0.1", "link-local"),
            ("::ffff:169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("febf:ffff::1", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("::ffff:0.0.0.0", "unspecified"),
        ] {
            assert_eq!(local_kind(ip(address)), Some(kind), "{address}");
        }
    }

    #[test]
    fn private_and_public_ranges_are_not_local() {
        for address in [
            "10.0.0.25",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.10",
            "fc00::25",
            "fd12:3456::1",
            "::ffff:10.1.2.3",
            "192.0.2.10",
            "2001:db8::25",
            "1.0.0.1",
            "fec0::1",
        ] {
            assert_eq!(local_kind(ip(address)), None, "{address}");
        }
    }

    fn answers(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| SocketAddr::new(ip(a), 25)).collect()
    }

    #[test]
    fn a_name_with_any_local_answer_is_denied_naming_the_address_and_the_setting() {
        let refused = checked(
            "mail.example.com",
            answers(&["192.0.2.10", "169.254.169.254"]),
            false,
        )
        .unwrap_err();
        assert!(refused.is_denied());
        let text = refused.to_string();
        assert!(
            text.contains("mail.example.com resolves to 169.254.169.254 (link-local)"),
            "{text}"
        );
        assert!(text.contains("allow_loopback_names = true"), "{text}");
        let io: std::io::Error = refused.into();
        assert!(LookupError::denial(&io).is_some());
    }

    #[test]
    fn the_opt_in_and_localhost_names_let_local_answers_through() {
        let local = answers(&["127.0.0.1", "::1"]);
        assert_eq!(checked("vm.internal", local.clone(), true).unwrap(), local);
        for name in ["localhost", "box.localhost"] {
            assert_eq!(
                checked(name, local.clone(), false).unwrap(),
                local,
                "{name}"
            );
        }
        assert!(checked("localhost.example.com", local, false).is_err());
    }

    #[test]
    fn private_answers_are_allowed() {
        let private = answers(&["10.0.0.25", "fd00::25"]);
        assert_eq!(
            checked("relay.corp", private.clone(), false).unwrap(),
            private
        );
    }

    #[tokio::test]
    async fn an_address_is_used_as_it_is_without_a_lookup() {
        let host = Host::parse("127.0.0.1").unwrap();
        assert_eq!(
            addresses(&host, 2525, false).await.unwrap(),
            answers(&["127.0.0.1"])
                .into_iter()
                .map(|a| SocketAddr::new(a.ip(), 2525))
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn localhost_resolves() {
        let host = Host::parse("localhost").unwrap();
        let found = addresses(&host, 2525, false).await.unwrap();
        assert!(found.iter().all(|a| a.ip().is_loopback()), "{found:?}");
    }
}
