//! The SSRF guard: webhook targets that resolve to loopback, private, link-local (which
//! includes cloud metadata at 169.254.169.254), unique-local, CGNAT, multicast or
//! unspecified addresses are refused, when an endpoint is created and at every delivery.
//! The check sits in the HTTP client's DNS resolver, so the address that is checked is the
//! address that is connected to (no DNS-rebinding window); IP-literal URLs, which skip the
//! resolver, are checked before the request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

pub use crate::config::PortPolicy;

/// Why a target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not an absolute http(s) URL with a host.
    #[error("the URL must be an absolute http or https URL")]
    Malformed,
    /// It resolves to a forbidden address.
    #[error("the URL resolves to a loopback, private, link-local or otherwise internal address")]
    Forbidden,
    /// The host does not resolve.
    #[error("the URL's host does not resolve")]
    Unresolvable,
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1]))
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
        || o[0] >= 240
}

fn v4_at(seg: &[u16; 8], i: usize) -> Ipv4Addr {
    let [a, b] = seg[i].to_be_bytes();
    let [c, d] = seg[i + 1].to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// The IPv4 address an IPv6 address embeds or is translated to on the way, if any:
/// IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, SIIT `::ffff:0:a.b.c.d`,
/// NAT64 `64:ff9b::a.b.c.d` and 6to4 `2002:AABB:CCDD::`.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = v6.segments();
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    if seg[..6].iter().all(|s| *s == 0) {
        return Some(v4_at(&seg, 6));
    }
    if seg[..4].iter().all(|s| *s == 0) && seg[4] == 0xffff && seg[5] == 0 {
        return Some(v4_at(&seg, 6));
    }
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6].iter().all(|s| *s == 0) {
        return Some(v4_at(&seg, 6));
    }
    if seg[0] == 0x2002 {
        return Some(v4_at(&seg, 1));
    }
    None
}

/// Whether connecting to `ip` is refused.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return forbidden_v4(v4);
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // unique local fc00::/7, link local fe80::/10, site local fec0::/10
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] & 0xffc0) == 0xfec0
                // local-use NAT64 64:ff9b:1::/48 translates to addresses we cannot see
                || (seg[0] == 0x64 && seg[1] == 0xff9b)
                // Teredo 2001::/32 hides its IPv4 address; documentation 2001:db8::/32
                || (seg[0] == 0x2001 && (seg[1] == 0 || seg[1] == 0xdb8))
                // discard-only 100::/64
                || (seg[0] == 0x100 && seg[1..4].iter().all(|s| *s == 0))
        }
    }
}

/// Parses a target URL and checks it without DNS (literal addresses and the scheme).
pub fn check_url(raw: &str, allow_private: bool) -> Result<Url, TargetError> {
    let url = Url::parse(raw).map_err(|_| TargetError::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(TargetError::Malformed);
    }
    match url.host() {
        None => return Err(TargetError::Malformed),
        Some(Host::Ipv4(ip)) if !allow_private && is_forbidden(IpAddr::V4(ip)) => {
            return Err(TargetError::Forbidden)
        }
        Some(Host::Ipv6(ip)) if !allow_private && is_forbidden(IpAddr::V6(ip)) => {
            return Err(TargetError::Forbidden)
        }
        Some(Host::Domain(d))
            if !allow_private && (d == "localhost" || d.ends_with(".localhost")) =>
        {
            return Err(TargetError::Forbidden)
        }
        _ => {}
    }
    Ok(url)
}

/// Why a webhook URL is refused before any address is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlPolicyError {
    /// Whitespace, control characters or a backslash anywhere in it.
    #[error("url must not contain whitespace, control characters or backslashes")]
    Characters,
    /// Not `http://host...` or `https://host...` exactly.
    #[error("url must be an absolute http or https URL of the form scheme://host/path")]
    Form,
    /// `user:password@` before the host.
    #[error("url must not contain a user name or password")]
    Userinfo,
    /// A port outside the policy.
    #[error("url's port is not allowed (see webhooks.allowed_ports)")]
    Port,
}

/// Parses a webhook URL under the policy and returns its normalised form (what is stored
/// and echoed): no whitespace, control characters or backslashes (parsers disagree about
/// them), no user information, the `scheme://host` form spelled out, and an allowed port.
pub fn normalise(raw: &str, ports: &PortPolicy) -> Result<Url, UrlPolicyError> {
    if raw
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(UrlPolicyError::Characters);
    }
    let lower = raw.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or(UrlPolicyError::Form)?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(UrlPolicyError::Form);
    }
    let url = Url::parse(raw).map_err(|_| UrlPolicyError::Form)?;
    if url.host().is_none() || url.cannot_be_a_base() {
        return Err(UrlPolicyError::Form);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlPolicyError::Userinfo);
    }
    let port = url.port_or_known_default().ok_or(UrlPolicyError::Form)?;
    if !ports.allows(port) {
        return Err(UrlPolicyError::Port);
    }
    Ok(url)
}

/// Resolves the URL's host and checks every address (for endpoint creation).
pub async fn check_target(raw: &str, allow_private: bool) -> Result<Url, TargetError> {
    let url = check_url(raw, allow_private)?;
    if allow_private {
        return Ok(url);
    }
    if let Some(Host::Domain(d)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((d, port))
            .await
            .map_err(|_| TargetError::Unresolvable)?
            .collect();
        if addrs.is_empty() {
            return Err(TargetError::Unresolvable);
        }
        if addrs.iter().any(|a| is_forbidden(a.ip())) {
            return Err(TargetError::Forbidden);
        }
    }
    Ok(url)
}

/// A DNS resolver for the delivery client that drops forbidden addresses.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// Allow every address (dev and test configurations).
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow || !is_forbidden(a.ip()))
                .collect();
            if addrs.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> = Box::new(TargetError::Forbidden);
                return Err(e);
            }
            let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused() {
        for bad in [
            "http://127.0.0.1/x",
            "http://169.254.169.254/latest/meta-data",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:8080/hook",
        ] {
            assert_eq!(check_url(bad, false), Err(TargetError::Forbidden), "{bad}");
            assert!(check_url(bad, true).is_ok(), "{bad}");
        }
        for bad in ["ftp://example.com/", "not a url", "mailto:a@b.c", "http://"] {
            assert!(check_url(bad, true).is_err(), "{bad}");
        }
        assert!(check_url("https://8.8.8.8/hook", false).is_ok());
        assert!(check_url("https://hooks.example.com/x", false).is_ok());
    }

    #[test]
    fn ipv6_forms_that_embed_or_translate_to_internal_ipv4_are_refused() {
        for bad in [
            // NAT64 to the metadata service and to loopback
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b::7f00:1]/",
            // local-use NAT64
            "http://[64:ff9b:1::808:808]/",
            // 6to4 of 127.0.0.1 and 10.0.0.1
            "http://[2002:7f00:1::]/",
            "http://[2002:a00:1::1]/",
            // IPv4-compatible and SIIT
            "http://[::127.0.0.1]/",
            "http://[::a9fe:a9fe]/",
            "http://[::ffff:0:a9fe:a9fe]/",
            // Teredo, site local, discard, documentation
            "http://[2001::1]/",
            "http://[fec0::1]/",
            "http://[100::1]/",
            "http://[2001:db8::1]/",
        ] {
            assert_eq!(check_url(bad, false), Err(TargetError::Forbidden), "{bad}");
        }
        // The same forms around a public address pass.
        for good in [
            "http://[64:ff9b::808:808]/",
            "http://[2002:808:808::]/",
            "http://[2606:4700::1111]/",
        ] {
            assert!(check_url(good, false).is_ok(), "{good}");
        }
    }

    #[test]
    fn webhook_urls_are_normalised_and_tricky_forms_refused() {
        let ports =
            PortPolicy::parse(&["80".into(), "443".into(), "1024-65535".into()]).expect("policy");
        let ok = normalise("HTTP://Hooks.Example.COM/a?b=1", &ports).expect("ok");
        assert_eq!(ok.as_str(), "http://hooks.example.com/a?b=1");
        assert!(normalise("https://8.8.8.8:8443/x", &ports).is_ok());
        for (bad, why) in [
            (" http://8.8.8.8/", UrlPolicyError::Characters),
            ("http://8.8.8.8/\n", UrlPolicyError::Characters),
            ("http://8.8.8.8\\@127.0.0.1/", UrlPolicyError::Characters),
            ("http:8.8.8.8/", UrlPolicyError::Form),
            ("http:///8.8.8.8/", UrlPolicyError::Form),
            ("ftp://8.8.8.8/", UrlPolicyError::Form),
            ("http://user:pw@8.8.8.8/", UrlPolicyError::Userinfo),
            ("http://8.8.8.8@127.0.0.1/", UrlPolicyError::Userinfo),
            ("http://8.8.8.8:1023/", UrlPolicyError::Port),
            ("http://8.8.8.8:22/", UrlPolicyError::Port),
        ] {
            assert_eq!(normalise(bad, &ports), Err(why), "{bad}");
        }
        assert!(PortPolicy::parse(&["70000".into()]).is_none());
        assert!(PortPolicy::parse(&["9-3".into()]).is_none());
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        assert_eq!(
            check_target("http://localhost/", false).await,
            Err(TargetError::Forbidden)
        );
    }
}
