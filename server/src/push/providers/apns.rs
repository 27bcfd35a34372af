//! Apple Push Notification service with token-based authentication: an ES256 provider token
//! signed with the team's `.p8` key and reused for `token_lifetime`, one HTTP/2 POST per
//! notification to `/3/device/{token}` (Apple's "Sending notification requests to APNs").

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};

use super::http;
use super::{InvalidTarget, Notification, Outcome, Priority, Provider, ProviderKind, ProviderSetupError, Target};
use crate::config::ApnsConfig;

/// The longest `apns-collapse-id` APNs accepts, in bytes.
pub const MAX_COLLAPSE_ID: usize = 64;

/// APNs provider. Payloads (at most 4 KB):
/// - alert targets: `{"aps": {"alert": {"loc-key": "CONFAB_NEW_MESSAGE"}` (call invites,
///   [`Priority::High`]: `CONFAB_INCOMING_CALL`) `, "mutable-content": 1, "thread-id":
///   collapse key}, "confab": {…data…}}`; with a preview the alert is `{"title", "body"}`
///   instead. Always `apns-push-type: alert` and `apns-priority: 10` (the push shows an alert).
/// - VoIP (PushKit) targets take call invites only: `{"confab": {…data…}}` plus `"preview":
///   {"title", "body"}` when allowed, `apns-push-type: voip`, priority 10, topic `BUNDLE.voip`.
pub struct Apns {
    key: EncodingKey,
    key_id: String,
    team_id: String,
    topic: String,
    base_url: String,
    lifetime: Duration,
    client: reqwest::Client,
    token: Mutex<Option<ProviderToken>>,
}

impl std::fmt::Debug for Apns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apns")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("topic", &self.topic)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// The provider token in use: the JWT, its `iat` (epoch seconds) and when it was made.
#[derive(Clone)]
struct ProviderToken {
    jwt: String,
    iat: u64,
    made: Instant,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

/// What one request came to.
enum Attempt {
    Done(Outcome),
    /// 403 ExpiredProviderToken: renew the token and try once more.
    ExpiredToken,
}

impl Apns {
    /// Reads and checks `config.key_file` (a PKCS#8 PEM P-256 key; one token is signed to be
    /// sure it works). With an `http://` base URL (tests) requests use HTTP/2 without TLS
    /// (prior knowledge, h2c); over https ALPN negotiates h2.
    ///
    /// # Errors
    /// No key file, one that cannot be read or is not a P-256 key, no key id or team id, or an
    /// HTTP client that cannot be built.
    pub fn new(config: &ApnsConfig, timeout: Duration) -> Result<Self, ProviderSetupError> {
        let fail = |message: String| ProviderSetupError { provider: "apns", message };
        let Some(path) = &config.key_file else { return Err(fail("no key_file".into())) };
        let pem = std::fs::read(path).map_err(|e| fail(format!("key_file {}: {e}", path.display())))?;
        let key = EncodingKey::from_ec_pem(&pem)
            .map_err(|e| fail(format!("key_file {}: not a PKCS#8 P-256 key: {e}", path.display())))?;
        if config.key_id.is_empty() || config.team_id.is_empty() {
            return Err(fail("key_file needs key_id and team_id".into()));
        }
        let mut builder = http::client_builder(timeout);
        if config.base_url.starts_with("http://") {
            builder = builder.http2_prior_knowledge();
        }
        let apns = Self {
            key,
            key_id: config.key_id.clone(),
            team_id: config.team_id.clone(),
            topic: config.topic.clone(),
            base_url: config.base_url.trim_end_matches('/').to_string(),
            lifetime: config.token_lifetime,
            client: http::build_client("apns", builder)?,
            token: Mutex::new(None),
        };
        apns.sign(None).map_err(|e| fail(format!("key_file {}: cannot sign: {e}", path.display())))?;
        Ok(apns)
    }

    /// A new provider token: header `alg: ES256, kid`, claims `iss` (team id) and `iat`. The
    /// `iat` is later than `after` (a renewal within the same second still changes the token).
    fn sign(&self, after: Option<u64>) -> Result<ProviderToken, jsonwebtoken::errors::Error> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let iat = after.map_or(now, |a| now.max(a + 1));
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let jwt = jsonwebtoken::encode(&header, &Claims { iss: &self.team_id, iat }, &self.key)?;
        Ok(ProviderToken { jwt, iat, made: Instant::now() })
    }

    /// The current provider token, a new one once it is `token_lifetime` old. With `rejected`
    /// (a token APNs called expired) a new one unless another send renewed it already: Apple
    /// answers 429 TooManyProviderTokenUpdates to renewals more often than every 20 minutes.
    fn provider_token(&self, rejected: Option<&str>) -> Result<String, Outcome> {
        let mut slot = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = slot.as_ref() {
            let stale = match rejected {
                Some(r) => t.jwt == r,
                None => t.made.elapsed() >= self.lifetime,
            };
            if !stale {
                return Ok(t.jwt.clone());
            }
        }
        let token = self
            .sign(slot.as_ref().map(|t| t.iat))
            .map_err(|e| Outcome::Failed { status: 0, reason: format!("cannot sign the provider token: {e}") })?;
        let jwt = token.jwt.clone();
        *slot = Some(token);
        Ok(jwt)
    }

    async fn post(&self, target: &Target, topic: &str, n: &Notification, payload: &[u8], jwt: &str) -> Attempt {
        let mut request = self
            .client
            .post(format!("{}/3/device/{}", self.base_url, target.token))
            .bearer_auth(jwt)
            .header("apns-topic", topic)
            .header("apns-push-type", if target.voip { "voip" } else { "alert" })
            .header("apns-priority", "10")
            .header("apns-expiration", (n.expires_at_ms.max(0) / 1000).to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(payload.to_vec());
        if !n.collapse_key.is_empty() && !target.voip {
            request = request.header("apns-collapse-id", collapse_id(&n.collapse_key));
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Done(http::transport_error(e)),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if status == 200 {
            let apns_id = headers.get("apns-id").and_then(|v| v.to_str().ok()).map(str::to_string);
            return Attempt::Done(Outcome::Sent { status, provider_ref: apns_id, receipt_pending: false });
        }
        let body = http::read_answer(response).await;
        let reason = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(|r| http::cut(r, 100).to_string()))
            .unwrap_or_default();
        let why = if reason.is_empty() { format!("APNs answered {status}") } else { reason.clone() };
        Attempt::Done(match (status, reason.as_str()) {
            (403, "ExpiredProviderToken") => return Attempt::ExpiredToken,
            (410, _) | (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => Outcome::TokenGone { status, reason: why },
            (413, _) => Outcome::Failed { status, reason: why },
            _ => http::status_outcome(status, &headers, why),
        })
    }
}

/// `collapse_key` as an `apns-collapse-id`: itself when at most 64 bytes, else the hex SHA-256
/// (64 characters).
pub fn collapse_id(collapse_key: &str) -> String {
    if collapse_key.len() <= MAX_COLLAPSE_ID {
        collapse_key.to_string()
    } else {
        hex::encode(Sha256::digest(collapse_key.as_bytes()))
    }
}

/// The payload (see [`Apns`]).
fn payload(n: &Notification, voip: bool, preview: Option<(&str, &str)>) -> Vec<u8> {
    let body = if voip {
        let mut body = serde_json::json!({ "confab": n.data });
        if let Some((title, text)) = preview {
            body["preview"] = serde_json::json!({ "title": title, "body": text });
        }
        body
    } else {
        let alert = match preview {
            Some((title, text)) => serde_json::json!({ "title": title, "body": text }),
            None => {
                let key = match n.priority {
                    Priority::High => "CONFAB_INCOMING_CALL",
                    Priority::Normal => "CONFAB_NEW_MESSAGE",
                };
                serde_json::json!({ "loc-key": key })
            }
        };
        serde_json::json!({
            "aps": { "alert": alert, "mutable-content": 1, "thread-id": n.collapse_key },
            "confab": n.data,
        })
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A device token: hex, even length, 64 to 200 characters (32 bytes today, up to 100 allowed).
fn check_token(token: &str) -> Result<(), InvalidTarget> {
    let ok = (64..=200).contains(&token.len())
        && token.len().is_multiple_of(2)
        && token.bytes().all(|b| b.is_ascii_hexdigit());
    if ok { Ok(()) } else { Err(InvalidTarget("apns token must be 64 to 200 hex digits".into())) }
}

/// A bundle id: letters, digits, `.` and `-`, at most 155 bytes.
fn check_bundle_id(app_id: &str) -> Result<(), InvalidTarget> {
    let ok = app_id.len() <= 155 && app_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if ok { Ok(()) } else { Err(InvalidTarget("apns app id must be a bundle id".into())) }
}

#[async_trait::async_trait]
impl Provider for Apns {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Apns
    }

    fn check_target(&self, token: &str, app_id: &str, _voip: bool) -> Result<(), InvalidTarget> {
        check_token(token)?;
        check_bundle_id(app_id)?;
        if app_id.is_empty() && self.topic.is_empty() {
            return Err(InvalidTarget("apns target needs an app id (no push.apns.topic is configured)".into()));
        }
        Ok(())
    }

    async fn send(&self, target: &Target, notification: &Notification) -> Outcome {
        if let Err(e) = check_token(&target.token).and_then(|()| check_bundle_id(&target.app_id)) {
            return Outcome::Failed { status: 0, reason: e.0 };
        }
        if target.voip && notification.priority != Priority::High {
            return Outcome::Failed { status: 0, reason: "VoIP targets take call invites only".into() };
        }
        let bundle = if target.app_id.is_empty() { self.topic.as_str() } else { target.app_id.as_str() };
        if bundle.is_empty() {
            return Outcome::Failed { status: 0, reason: "no apns topic".into() };
        }
        let topic =
            if target.voip && !bundle.ends_with(".voip") { format!("{bundle}.voip") } else { bundle.to_string() };
        let body = match http::fit_payload(notification.preview.as_ref(), |p| payload(notification, target.voip, p)) {
            Ok(body) => body,
            Err(outcome) => return outcome,
        };
        let jwt = match self.provider_token(None) {
            Ok(jwt) => jwt,
            Err(outcome) => return outcome,
        };
        match self.post(target, &topic, notification, &body, &jwt).await {
            Attempt::Done(outcome) => outcome,
            Attempt::ExpiredToken => {
                let jwt = match self.provider_token(Some(&jwt)) {
                    Ok(jwt) => jwt,
                    Err(outcome) => return outcome,
                };
                match self.post(target, &topic, notification, &body, &jwt).await {
                    Attempt::Done(outcome) => outcome,
                    // Renewed and still expired: the clock is likely off; later, not never.
                    Attempt::ExpiredToken => Outcome::Retry {
                        status: 403,
                        after: None,
                        reason: "ExpiredProviderToken after renewal (is the clock right?)".into(),
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_ids_fit() {
        assert_eq!(collapse_id("c:42"), "c:42");
        let long = "x".repeat(65);
        assert_eq!(collapse_id(&long).len(), MAX_COLLAPSE_ID);
        assert!(check_token(&"ab".repeat(32)).is_ok());
        assert!(check_token(&"zz".repeat(32)).is_err());
        assert!(check_token("abcd").is_err());
        assert!(check_bundle_id("chat.confab.app").is_ok());
        assert!(check_bundle_id("chat/confab").is_err());
    }
}
