//! `[server] trusted_proxies`: whose `X-Forwarded-For` names the real client (and, unless
//! `[forward_auth] trusted_proxies` says otherwise, who may describe a request to the
//! forward-auth endpoints). `key` is the list's key path, for problems.

use ipnet::IpNet;

use super::report::Report;

pub(super) fn trusted_proxies(r: &mut Report, key: &str, list: Option<&Vec<String>>) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (i, text) in list.into_iter().flatten().enumerate() {
        // A bare address is its own /32 (or /128).
        let parsed = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => out.push(net.trunc()),
            Err(_) => r.problem(
                format!("{key}[{i}]"),
                format!("`{text}` is not a CIDR or an address"),
                "write e.g. \"10.0.0.0/8\" or \"127.0.0.1/32\"",
            ),
        }
    }
    out
}
