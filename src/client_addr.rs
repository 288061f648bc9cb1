//! The real client address behind trusted proxies (`[server] trusted_proxies`).
//!
//! A client can write any `X-Forwarded-For` it likes, so the header is read only when the
//! TCP peer is a trusted proxy, and then from the right: each trusted hop appends the
//! address it saw, so the rightmost entry that is not itself a trusted proxy is the first
//! address no proxy of ours vouches for beyond — the client. Entries left of it are the
//! client's own claims and are ignored.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// `X-Forwarded-For` (also in the `x-forwarded-for` spelling hyper gives every name).
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address, and whether the peer is a trusted proxy (whose forwarding
/// headers are then kept and extended). With no trusted proxies, the peer itself.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> (IpAddr, bool) {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(&ip));
    if trusted.is_empty() || !is_trusted(peer) {
        return (peer, false);
    }
    // Every X-Forwarded-For line, in order, as one list; read from the right.
    let mut client = peer;
    let entries: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for entry in entries.iter().rev() {
        let Some(ip) = parse_entry(entry.trim()) else {
            // An entry we cannot read ends the walk: what is left of it is unverifiable.
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    (client, true)
}

/// An address as `X-Forwarded-For` writes it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`
/// or `[2001:db8::1]:5678`.
fn parse_entry(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = text.parse::<std::net::SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    None
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's view of IPv4 peers) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_send() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(peer, &xff(&["1.1.1.1"]), &trusted),
            (peer, false)
        );
        assert_eq!(client_address(peer, &xff(&["1.1.1.1"]), &[]), (peer, false));
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let lb: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        // The client forged "6.6.6.6"; our edge proxy 10.0.0.1 appended the real address.
        let h = xff(&["6.6.6.6, 198.51.100.7", "10.0.0.1"]);
        assert_eq!(
            client_address(lb, &h, &trusted),
            ("198.51.100.7".parse().unwrap(), true)
        );
        // Ports and brackets as some proxies write them.
        let h = xff(&["[2001:db8::5]:4711"]);
        assert_eq!(
            client_address(lb, &h, &trusted).0,
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
        // No header: the proxy itself is all we know.
        assert_eq!(client_address(lb, &HeaderMap::new(), &trusted), (lb, true));
        // Garbage stops the walk at the last readable trusted hop.
        let h = xff(&["198.51.100.7, junk, 10.0.0.1"]);
        assert_eq!(
            client_address(lb, &h, &trusted).0,
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_networks() {
        let peer: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let trusted = nets(&["127.0.0.1/32"]);
        let h = xff(&["192.0.2.1"]);
        assert_eq!(
            client_address(peer, &h, &trusted),
            ("192.0.2.1".parse().unwrap(), true)
        );
    }
}
