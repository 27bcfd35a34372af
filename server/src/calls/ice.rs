//! ICE servers for clients (docs/protocol.md §20.1): STUN URLs as configured, TURN URLs with
//! short-lived credentials in the TURN REST style that coturn's `use-auth-secret` accepts:
//! username = "EXPIRY:USER", password = base64(HMAC-SHA1(secret, username)).

use base64::Engine as _;
use confab_protocol::v1;
use hmac::{Hmac, Mac};

use crate::config::CallsConfig;
use crate::store::UserId;

/// The TURN REST credential for `user` valid until `expires_unix` (seconds).
pub fn turn_credential(secret: &str, user: UserId, expires_unix: u64) -> (String, String) {
    let username = format!("{expires_unix}:{user}");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

/// The ICE server list for `user` at `now_ms`, and when its TURN credentials expire (ms).
pub fn ice_servers(config: &CallsConfig, user: UserId, now_ms: i64) -> (Vec<v1::IceServer>, u64) {
    let mut out = Vec::new();
    if !config.stun_urls.is_empty() {
        out.push(v1::IceServer { urls: config.stun_urls.clone(), ..Default::default() });
    }
    let expires_unix = (now_ms.max(0) as u64) / 1000 + config.turn_credential_ttl.as_secs();
    if let (false, Some(secret)) = (config.turn_urls.is_empty(), &config.turn_secret) {
        let (username, credential) = turn_credential(secret.expose(), user, expires_unix);
        out.push(v1::IceServer { urls: config.turn_urls.clone(), username, credential });
    }
    (out, expires_unix * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn turn_credentials_match_coturn() {
        // coturn computes base64(HMAC-SHA1(static-auth-secret, "expiry:user")); checked against
        // `printf %s '1700000000:42' | openssl dgst -sha1 -hmac north -binary | base64`.
        let (u, p) = turn_credential("north", UserId(42), 1_700_000_000);
        assert_eq!(u, "1700000000:42");
        assert_eq!(p, "DWX3FI7DiPIpadEYQAZsnZBAagI=");
    }

    #[test]
    fn lists_stun_and_turn() {
        let config = CallsConfig {
            stun_urls: vec!["stun:stun.example.com:3478".into()],
            turn_urls: vec!["turn:turn.example.com:3478?transport=udp".into()],
            turn_secret: Some(Secret::new("s3cret")),
            ..CallsConfig::default()
        };
        let (servers, expires) = ice_servers(&config, UserId(7), 1_000_000);
        assert_eq!(servers.len(), 2);
        assert!(servers[0].username.is_empty() && servers[0].credential.is_empty());
        assert_eq!(servers[1].username, format!("{}:7", 1000 + 3600));
        assert_eq!(expires, (1000 + 3600) * 1000);
        let (none, _) = ice_servers(&CallsConfig::default(), UserId(7), 0);
        assert!(none.is_empty());
    }
}
