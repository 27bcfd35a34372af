//! UnifiedPush and generic webhooks (RFC 8030): the notification's JSON POSTed to the endpoint
//! the device registered, with `TTL`, `Urgency` and `Topic`; and the endpoint rules (scheme,
//! length, allowed hosts, global addresses only) checked at registration and again at send.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::http::{self, MAX_PAYLOAD};
use super::{InvalidTarget, Notification, Outcome, Priority, Provider, ProviderKind, ProviderSetupError, Target};
use crate::config::WebPushConfig;

/// The longest endpoint URL accepted, in bytes.
pub const MAX_ENDPOINT_LEN: usize = 2048;

/// WebPush / UnifiedPush provider: one POST per notification, no credentials.
///
/// The body is `{"data": {…the notification's data…}}`, with `"notification": {"title", "body"}`
/// added only when the user allowed previews; at most 4096 bytes (RFC 8030 §7.2). Not encrypted
/// (RFC 8291 is not applied): the endpoint is trusted with the data map, which holds ids only.
#[derive(Debug)]
pub struct WebPush {
    config: WebPushConfig,
    client: reqwest::Client,
}

impl WebPush {
    /// A provider following `config`'s endpoint rules, with `timeout` per request.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(config: &WebPushConfig, timeout: Duration) -> Result<Self, ProviderSetupError> {
        let mut builder = http::client_builder(timeout).no_proxy();
        if !config.allow_private_addresses {
            // Names are checked where they are resolved, for the connection actually made: a
            // name checked at registration may point elsewhere by the time of a send.
            builder = builder.dns_resolver(Arc::new(GlobalOnlyResolver));
        }
        Ok(Self { config: config.clone(), client: http::build_client("webpush", builder)? })
    }
}

/// The RFC 8030 `Topic` for a collapse key: base64url (no padding) of the first 24 bytes of its
/// SHA-256, always 32 characters of the URL-safe alphabet the RFC requires.
pub fn topic_for(collapse_key: &str) -> String {
    let digest = Sha256::digest(collapse_key.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..24])
}

/// Checks an endpoint against `config`: an absolute URL of at most [`MAX_ENDPOINT_LEN`] bytes,
/// `https` (or `http` with `allow_http`), no user info, a host in `allowed_hosts` when that is
/// set (the host itself or a subdomain), and unless `allow_private_addresses` neither a
/// non-global IP literal (see [`is_global`]) nor `localhost`. Names are resolved only at send.
///
/// # Errors
/// [`InvalidTarget`] saying which rule (never the URL: its path is a secret).
pub fn check_endpoint(endpoint: &str, config: &WebPushConfig) -> Result<url::Url, InvalidTarget> {
    let refuse = |m: &str| Err(InvalidTarget(format!("webpush endpoint: {m}")));
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return refuse(&format!("longer than {MAX_ENDPOINT_LEN} bytes"));
    }
    let Ok(url) = url::Url::parse(endpoint) else { return refuse("not a URL") };
    match url.scheme() {
        "https" => {}
        "http" if config.allow_http => {}
        "http" => return refuse("http is not allowed (https only)"),
        _ => return refuse("not an https URL"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("user info is not allowed");
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if !config.allow_private_addresses && (d == "localhost" || d.ends_with(".localhost")) {
                return refuse("host is not a public address");
            }
            d
        }
        Some(url::Host::Ipv4(ip)) => {
            if !config.allow_private_addresses && !is_global(IpAddr::V4(ip)) {
                return refuse("host is not a public address");
            }
            ip.to_string()
        }
        Some(url::Host::Ipv6(ip)) => {
            if !config.allow_private_addresses && !is_global(IpAddr::V6(ip)) {
                return refuse("host is not a public address");
            }
            ip.to_string()
        }
        None => return refuse("no host"),
    };
    if !config.allowed_hosts.is_empty() {
        let allowed = config.allowed_hosts.iter().any(|a| {
            let a = a.trim_end_matches('.').to_ascii_lowercase();
            host == a || host.strip_suffix(a.as_str()).is_some_and(|rest| rest.ends_with('.'))
        });
        if !allowed {
            return refuse("host is not in push.webpush.allowed_hosts");
        }
    }
    Ok(url)
}

/// Whether `ip` is a globally reachable unicast address. Refused: unspecified, loopback,
/// private (RFC 1918), shared/CGNAT (100.64/10), link-local, IETF protocol assignments
/// (192.0.0/24, 2001::/23), documentation (192.0.2/24, 198.51.100/24, 203.0.113/24,
/// 2001:db8::/32, 3fff::/20), benchmarking (198.18/15), 6to4 relay anycast, multicast,
/// reserved (240/4) and broadcast; unique-local (fc00::/7), site-local, discard (100::/64),
/// IPv4-compatible; and IPv4-mapped, NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses
/// whose embedded IPv4 address is one of those.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 192 && b == 88 && c == 99)
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        return false; // unspecified, loopback, IPv4-compatible (deprecated)
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_global_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return is_global_v4(embedded(s[1], s[2]));
    }
    !((s[0] == 0x100 && s[1..4] == [0, 0, 0])
        || (s[0] == 0x2001 && s[1] < 0x200)
        || (s[0] == 0x2001 && s[1] == 0xdb8)
        || (s[0] & 0xfff0 == 0x3ff0)
        || (s[0] & 0xfe00 == 0xfc00)
        || (s[0] & 0xffc0 == 0xfe80)
        || (s[0] & 0xffc0 == 0xfec0)
        || (s[0] & 0xff00 == 0xff00))
}

/// Why a name was not connected to: it resolved to a non-global address.
#[derive(Debug, thiserror::Error)]
#[error("the endpoint's host resolves to a non-public address")]
pub struct NonGlobalAddress;

/// Resolves names with the system resolver and refuses the lot when any address is not global
/// (so a name cannot mix a public and a private address to get through).
#[derive(Debug)]
struct GlobalOnlyResolver;

impl reqwest::dns::Resolve for GlobalOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            check_resolved(&addrs)?;
            Ok::<reqwest::dns::Addrs, Box<dyn std::error::Error + Send + Sync>>(Box::new(addrs.into_iter()))
        })
    }
}

/// Refuses `addrs` when any is not global.
fn check_resolved(addrs: &[SocketAddr]) -> Result<(), NonGlobalAddress> {
    if addrs.iter().all(|a| is_global(a.ip())) { Ok(()) } else { Err(NonGlobalAddress) }
}

/// Whether `error` is [`GlobalOnlyResolver`]'s refusal.
fn is_refusal(error: &reqwest::Error) -> bool {
    std::iter::successors(Some(error as &(dyn std::error::Error + 'static)), |e| e.source())
        .any(|e| e.is::<NonGlobalAddress>())
}

/// The POSTed body (see [`WebPush`]).
fn payload(notification: &Notification, preview: Option<(&str, &str)>) -> Vec<u8> {
    let mut body = serde_json::json!({ "data": notification.data });
    if let Some((title, text)) = preview {
        body["notification"] = serde_json::json!({ "title": title, "body": text });
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

#[async_trait::async_trait]
impl Provider for WebPush {
    fn kind(&self) -> ProviderKind {
        ProviderKind::WebPush
    }

    fn check_target(&self, token: &str, _app_id: &str, voip: bool) -> Result<(), InvalidTarget> {
        if voip {
            return Err(InvalidTarget("webpush targets cannot be VoIP targets".into()));
        }
        check_endpoint(token, &self.config).map(|_| ())
    }

    async fn send(&self, target: &Target, notification: &Notification) -> Outcome {
        // Again at send: the rules may have changed since registration.
        let url = match check_endpoint(&target.token, &self.config) {
            Ok(url) => url,
            Err(e) => return Outcome::Failed { status: 0, reason: e.0 },
        };
        let body = match http::fit_payload(notification.preview.as_ref(), |p| payload(notification, p)) {
            Ok(body) => body,
            Err(outcome) => return outcome,
        };
        debug_assert!(body.len() <= MAX_PAYLOAD);
        let urgency = match notification.priority {
            Priority::Normal => "normal",
            Priority::High => "high",
        };
        let request = self
            .client
            .post(url)
            .header("TTL", http::ttl_secs(notification.expires_at_ms).to_string())
            .header("Urgency", urgency)
            .header("Topic", topic_for(&notification.collapse_key))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if is_refusal(&e) => return Outcome::Failed { status: 0, reason: NonGlobalAddress.to_string() },
            Err(e) => return http::transport_error(e),
        };
        let status = response.status().as_u16();
        match status {
            200..=299 => Outcome::Sent { status, provider_ref: None, receipt_pending: false },
            404 | 410 => Outcome::TokenGone { status, reason: format!("endpoint answered {status}") },
            413 => Outcome::Failed { status, reason: "payload too large".into() },
            _ => http::status_outcome(status, response.headers(), format!("endpoint answered {status}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_addresses() {
        for bad in [
            "0.0.0.0",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(!is_global(bad.parse().unwrap_or_else(|_| panic!("{bad}"))), "{bad} is not global");
        }
        for good in
            ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"]
        {
            assert!(is_global(good.parse().unwrap_or_else(|_| panic!("{good}"))), "{good} is global");
        }
        let resolved = |ips: &[&str]| -> Vec<SocketAddr> {
            ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()).map(|ip| SocketAddr::new(ip, 443)).collect()
        };
        assert!(check_resolved(&resolved(&["8.8.8.8", "2606:4700::1111"])).is_ok());
        assert!(check_resolved(&resolved(&["8.8.8.8", "10.0.0.1"])).is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_not_connected_to() {
        let webpush = WebPush::new(&WebPushConfig::default(), Duration::from_secs(5)).expect("client");
        // Past check_endpoint (which refuses `localhost` by name): the resolver refuses too.
        let error = webpush.client.post("http://localhost:9/x").send().await.expect_err("refused");
        assert!(is_refusal(&error), "{error:?}");
    }

    #[test]
    fn endpoint_rules() {
        let default = WebPushConfig::default();
        assert!(check_endpoint("https://push.example.com/up/abc", &default).is_ok());
        assert!(check_endpoint("http://push.example.com/up/abc", &default).is_err());
        assert!(check_endpoint("https://localhost/x", &default).is_err());
        assert!(check_endpoint("https://[::1]/x", &default).is_err());
        assert!(check_endpoint("https://user:pw@push.example.com/x", &default).is_err());
        assert!(check_endpoint("ftp://push.example.com/x", &default).is_err());
        let hosts = WebPushConfig { allowed_hosts: vec!["example.com".into()], ..default.clone() };
        assert!(check_endpoint("https://push.example.com/x", &hosts).is_ok());
        assert!(check_endpoint("https://example.com/x", &hosts).is_ok());
        assert!(check_endpoint("https://badexample.com/x", &hosts).is_err());
        let long = format!("https://push.example.com/{}", "a".repeat(MAX_ENDPOINT_LEN));
        assert!(check_endpoint(&long, &default).is_err());
        let topic = topic_for("conversation:42");
        assert_eq!(topic.len(), 32);
        assert!(topic.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}
