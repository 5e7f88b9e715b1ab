//! Who a request comes from. The TCP peer is the client, unless the peer is one of the operator's
//! `--trusted-proxies`: then the client is the address that proxy says it forwarded for
//! (`X-Forwarded-For`, else `Forwarded: for=`), read from the right and skipping further trusted
//! proxies, since everything left of the last untrusted hop is whatever the client chose to send.
//! Per-client limits key on `ClientKey`: an IPv4 address, or the /64 of an IPv6 address (one
//! host or home usually gets a whole /64, so single addresses would cost an attacker nothing).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use hyper::header::{HeaderMap, FORWARDED};
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: &[IpNet]) -> TrustedProxies {
        TrustedProxies(nets.to_vec())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether the client reached us over HTTPS: only a trusted proxy can say so, with
    /// `X-Forwarded-Proto: https` or `Forwarded: proto=https` (the engine itself speaks HTTP).
    pub fn came_over_https(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        if !self.trusts(peer.to_canonical()) {
            return false;
        }
        let xfp = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).and_then(|v| v.rsplit(',').next());
        if let Some(proto) = xfp {
            return proto.trim().eq_ignore_ascii_case("https");
        }
        headers.get_all(FORWARDED).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split([',', ';'])).any(|pair| {
            pair.split_once('=')
                .is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("proto") && v.trim().trim_matches('"').eq_ignore_ascii_case("https"))
        })
    }

    /// The client address of a request that arrived from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        for hop in forwarded_for(headers).into_iter().rev() {
            // An entry that is no address ("unknown", an obfuscated name) ends what can be told.
            let Some(ip) = hop else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// The hops a proxy chain recorded, oldest first: every `X-Forwarded-For` entry, or when there is
/// none, the `for=` of every `Forwarded` element. `None` for an entry that is not an address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
    if !xff.is_empty() {
        return xff
            .into_iter()
            .flat_map(|value| match value.to_str() {
                Ok(list) => list.split(',').map(node).collect(),
                Err(_) => vec![None],
            })
            .collect();
    }
    headers
        .get_all(FORWARDED)
        .iter()
        .flat_map(|value| match value.to_str() {
            Ok(list) => list.split(',').map(forwarded_element).collect(),
            Err(_) => vec![None],
        })
        .collect()
}

/// The `for=` of one `Forwarded` element (RFC 7239), e.g. `for="[2001:db8::1]:4711";proto=https`.
fn forwarded_element(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then(|| node(value))?
    })
}

/// One address as proxies write it: bare, quoted, with a port, IPv6 in brackets.
fn node(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim().trim_matches('"');
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = raw.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    raw.strip_prefix('[')?.strip_suffix(']')?.parse::<Ipv6Addr>().ok().map(|ip| IpAddr::V6(ip).to_canonical())
}

/// What the per-client limits count by: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !(u128::MAX >> 64);
                ClientKey(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => ClientKey(v4),
        }
    }
}

/// A `--trusted-proxies` entry: a CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is not a CIDR (10.0.0.0/8) or an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(&nets.iter().map(|n| parse_net(n).unwrap()).collect::<Vec<_>>())
    }

    #[test]
    fn only_a_trusted_proxy_says_the_request_came_over_https() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let h = headers(&[("x-forwarded-proto", "https")]);
        assert!(!trusted(&[]).came_over_https(peer, &h));
        assert!(trusted(&["127.0.0.1"]).came_over_https(peer, &h));
        assert!(!trusted(&["127.0.0.1"]).came_over_https(peer, &headers(&[("x-forwarded-proto", "http")])));
        assert!(trusted(&["127.0.0.1"]).came_over_https(peer, &headers(&[("forwarded", "for=192.0.2.1;proto=https")])));
        assert!(!trusted(&["127.0.0.1"]).came_over_https(peer, &headers(&[])));
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_peers() {
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(trusted(&[]).client_ip(peer, &h), peer);
        assert_eq!(trusted(&["127.0.0.1"]).client_ip(peer, &h), "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let peer = "10.0.0.2".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9"), ("x-forwarded-for", "10.1.2.3")]);
        assert_eq!(proxies.client_ip(peer, &h), "203.0.113.9".parse::<IpAddr>().unwrap());
        let h = headers(&[("x-forwarded-for", "203.0.113.9, unknown, 10.1.2.3")]);
        assert_eq!(proxies.client_ip(peer, &h), "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(proxies.client_ip(peer, &HeaderMap::new()), peer);
    }

    #[test]
    fn forwarded_for_with_ports_brackets_and_quotes() {
        let proxies = trusted(&["127.0.0.0/8"]);
        let peer = "127.0.0.1".parse().unwrap();
        let h = headers(&[("forwarded", r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711";by=x"#)]);
        assert_eq!(proxies.client_ip(peer, &h), "2001:db8:cafe::17".parse::<IpAddr>().unwrap());
        let h = headers(&[("x-forwarded-for", "192.0.2.1:5678, ::ffff:192.0.2.2")]);
        assert_eq!(proxies.client_ip(peer, &h), "192.0.2.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let key = |s: &str| ClientKey::of(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
    }
}
