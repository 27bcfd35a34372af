//! Firebase Cloud Messaging, HTTP v1 API: a service account's RS256 JWT exchanged for an OAuth 2
//! access token (RFC 7523 grant, cached and refreshed before it expires), then one
//! `messages:send` per notification with that bearer token.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http;
use super::{InvalidTarget, Notification, Outcome, Priority, Provider, ProviderKind, ProviderSetupError, Target};
use crate::config::FcmConfig;

/// The OAuth 2 scope that lets an access token send FCM messages.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The RFC 7523 grant type of the token exchange.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google's token endpoint, when neither the key file nor the configuration names one.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// An access token is refreshed this long before it expires (half its life when shorter).
const REFRESH_EARLY: Duration = Duration::from_secs(300);
/// The longest FCM registration token accepted, in bytes.
const MAX_TOKEN: usize = 4096;

/// The fields of a service account's JSON key file that are used.
#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

/// FCM provider. Sends data messages: `{"message": {"token", "data": {…}, "android":
/// {"priority": "HIGH"|"NORMAL", "collapse_key", "ttl": "Ns"}, "apns": {"headers": {…},
/// "payload": {"aps": …}}}}`, plus `"notification": {"title", "body"}` only with a preview. The
/// `apns` part makes iOS devices behind FCM wake the app: `content-available` at priority 5
/// without a preview, a mutable alert at priority 10 with one or for a call invite. The whole
/// message stays within 4096 bytes (a preview's body is cut to fit).
pub struct Fcm {
    key: EncodingKey,
    key_id: Option<String>,
    client_email: String,
    token_url: String,
    send_url: String,
    client: reqwest::Client,
    access: tokio::sync::Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for Fcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fcm")
            .field("client_email", &self.client_email)
            .field("send_url", &self.send_url)
            .finish_non_exhaustive()
    }
}

/// A cached access token and when to stop using it.
struct AccessToken {
    token: String,
    refresh_at: Instant,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Fcm {
    /// Reads `config.service_account_file` (`client_email`, `private_key` (PKCS#8 RSA PEM),
    /// optional `private_key_id`, `project_id`, `token_uri`); `config.project_id` and
    /// `config.token_url` win over the file's. No request is made yet.
    ///
    /// # Errors
    /// No file, one that cannot be read or parsed, a missing field, no project id, a key that
    /// is not RSA or cannot sign, or an HTTP client that cannot be built.
    pub fn new(config: &FcmConfig, timeout: Duration) -> Result<Self, ProviderSetupError> {
        let fail = |message: String| ProviderSetupError { provider: "fcm", message };
        let Some(path) = &config.service_account_file else { return Err(fail("no service_account_file".into())) };
        let account = read_account(path).map_err(fail)?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|e| fail(format!("{}: private_key is not an RSA PEM key: {e}", path.display())))?;
        let Some(project_id) = config.project_id.clone().or(account.project_id).filter(|p| !p.is_empty()) else {
            return Err(fail(format!("{}: no project_id (set push.fcm.project_id)", path.display())));
        };
        if !project_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b':' || b == b'.') {
            return Err(fail("project_id has characters a project id does not".into()));
        }
        let token_url = config.token_url.clone().or(account.token_uri).unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string());
        let fcm = Self {
            key,
            key_id: account.private_key_id,
            client_email: account.client_email,
            token_url,
            send_url: format!("{}/v1/projects/{project_id}/messages:send", config.base_url.trim_end_matches('/')),
            client: http::build_client("fcm", http::client_builder(timeout))?,
            access: tokio::sync::Mutex::new(None),
        };
        fcm.assertion().map_err(|e| fail(format!("{}: private_key cannot sign: {e}", path.display())))?;
        Ok(fcm)
    }

    /// The service account's signed JWT for the token exchange: RS256 (`kid` = the key's id),
    /// `iss` = client email, `scope`, `aud` = the token endpoint, `iat`, `exp` = `iat` + 1 h.
    fn assertion(&self) -> Result<String, jsonwebtoken::errors::Error> {
        let iat = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut header = Header::new(Algorithm::RS256);
        header.kid.clone_from(&self.key_id);
        let claims = Claims { iss: &self.client_email, scope: SCOPE, aud: &self.token_url, iat, exp: iat + 3600 };
        jsonwebtoken::encode(&header, &claims, &self.key)
    }

    /// The cached access token, a new one when it is due for refresh, or when `rejected` (the
    /// token FCM answered 401 to) is still the cached one. One exchange at a time: concurrent
    /// sends wait for it and share the result.
    async fn access_token(&self, rejected: Option<&str>) -> Result<String, Outcome> {
        let mut slot = self.access.lock().await;
        if let Some(t) = slot.as_ref() {
            let stale = match rejected {
                Some(r) => t.token == r,
                None => Instant::now() >= t.refresh_at,
            };
            if !stale {
                return Ok(t.token.clone());
            }
        }
        *slot = None;
        let fresh = self.exchange().await?;
        let token = fresh.token.clone();
        *slot = Some(fresh);
        Ok(token)
    }

    /// The token exchange: `grant_type` and `assertion` form-POSTed to the token endpoint.
    async fn exchange(&self) -> Result<AccessToken, Outcome> {
        let assertion = self
            .assertion()
            .map_err(|e| Outcome::Failed { status: 0, reason: format!("cannot sign the assertion: {e}") })?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", GRANT_TYPE)
            .append_pair("assertion", &assertion)
            .finish();
        let asked = Instant::now();
        let response = self
            .client
            .post(&self.token_url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(http::transport_error)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = http::read_answer(response).await;
        if status != 200 {
            // OAuth errors (RFC 6749 §5.2) name the problem in `error`, e.g. invalid_grant.
            let error = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(|e| http::cut(e, 100).to_string()))
                .unwrap_or_default();
            return Err(http::status_outcome(status, &headers, format!("token endpoint answered {status} {error}")));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| Outcome::Retry {
            status,
            after: None,
            reason: format!("token endpoint's answer unreadable: {e}"),
        })?;
        // Capped at a day: a silly `expires_in` must not overflow the Instant.
        let life = Duration::from_secs(answer.expires_in.unwrap_or(3600).min(86_400));
        Ok(AccessToken { token: answer.access_token, refresh_at: asked + (life - REFRESH_EARLY.min(life / 2)) })
    }

    /// The request body (see [`Fcm`]).
    fn message(target: &Target, n: &Notification, preview: Option<(&str, &str)>) -> Vec<u8> {
        let high = n.priority == Priority::High;
        let mut android = json!({
            "priority": if high { "HIGH" } else { "NORMAL" },
            "ttl": format!("{}s", http::ttl_secs(n.expires_at_ms)),
        });
        let mut apns_headers = json!({
            "apns-priority": if high || preview.is_some() { "10" } else { "5" },
            "apns-push-type": if preview.is_some() { "alert" } else { "background" },
            "apns-expiration": (n.expires_at_ms.max(0) / 1000).to_string(),
        });
        if !n.collapse_key.is_empty() {
            android["collapse_key"] = json!(n.collapse_key);
            apns_headers["apns-collapse-id"] = json!(super::apns::collapse_id(&n.collapse_key));
        }
        let aps = if preview.is_some() {
            json!({ "mutable-content": 1, "thread-id": n.collapse_key })
        } else {
            json!({ "content-available": 1 })
        };
        let mut message = json!({
            "token": target.token,
            "data": n.data,
            "android": android,
            "apns": { "headers": apns_headers, "payload": { "aps": aps } },
        });
        if let Some((title, body)) = preview {
            message["notification"] = json!({ "title": title, "body": body });
        }
        serde_json::to_vec(&json!({ "message": message })).unwrap_or_default()
    }

    /// One `messages:send`; `Err(())` on 401 (the access token was refused).
    async fn post(&self, body: &[u8], access: &str) -> Result<Outcome, ()> {
        let request = self
            .client
            .post(&self.send_url)
            .bearer_auth(access)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Ok(http::transport_error(e)),
        };
        let status = response.status().as_u16();
        if status == 401 {
            return Err(());
        }
        let headers = response.headers().clone();
        let answer = serde_json::from_slice::<Value>(&http::read_answer(response).await).unwrap_or(Value::Null);
        if status == 200 {
            let name = answer.get("name").and_then(Value::as_str).map(str::to_string);
            return Ok(Outcome::Sent { status, provider_ref: name, receipt_pending: false });
        }
        Ok(error_outcome(status, &headers, &answer))
    }
}

/// Maps an FCM error answer (`{"error": {"code", "message", "status", "details": [{"@type":
/// "…FcmError", "errorCode"}]}}`): `UNREGISTERED` is `TokenGone`, 429 and 5xx `Retry`, the rest
/// `Failed`.
fn error_outcome(status: u16, headers: &reqwest::header::HeaderMap, answer: &Value) -> Outcome {
    let error = answer.get("error");
    let code = error
        .and_then(|e| e.get("details"))
        .and_then(Value::as_array)
        .and_then(|details| details.iter().find_map(|d| d.get("errorCode").and_then(Value::as_str)));
    let grpc = error.and_then(|e| e.get("status")).and_then(Value::as_str);
    let message = error.and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or_default();
    let reason = format!("{} {}", code.or(grpc).unwrap_or("error"), http::cut(message, 200));
    if code == Some("UNREGISTERED") {
        return Outcome::TokenGone { status, reason };
    }
    http::status_outcome(status, headers, reason)
}

/// Reads and parses a service account key file.
fn read_account(path: &Path) -> Result<ServiceAccount, String> {
    let text = std::fs::read(path).map_err(|e| format!("service_account_file {}: {e}", path.display()))?;
    let account: ServiceAccount = serde_json::from_slice(&text)
        .map_err(|e| format!("service_account_file {}: not a service account key: {e}", path.display()))?;
    if account.client_email.is_empty() || account.private_key.is_empty() {
        return Err(format!("service_account_file {}: client_email or private_key is empty", path.display()));
    }
    Ok(account)
}

#[async_trait::async_trait]
impl Provider for Fcm {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Fcm
    }

    fn check_target(&self, token: &str, _app_id: &str, voip: bool) -> Result<(), InvalidTarget> {
        if voip {
            return Err(InvalidTarget("fcm targets cannot be VoIP targets".into()));
        }
        if token.is_empty() || token.len() > MAX_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidTarget(format!("fcm token must be 1 to {MAX_TOKEN} printable ASCII characters")));
        }
        Ok(())
    }

    async fn send(&self, target: &Target, notification: &Notification) -> Outcome {
        let body = match http::fit_payload(notification.preview.as_ref(), |p| Self::message(target, notification, p)) {
            Ok(body) => body,
            Err(outcome) => return outcome,
        };
        let access = match self.access_token(None).await {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        if let Ok(outcome) = self.post(&body, &access).await {
            return outcome;
        }
        // 401: the token was revoked or expired early. A new one, once.
        let access = match self.access_token(Some(&access)).await {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        self.post(&body, &access)
            .await
            .unwrap_or_else(|()| Outcome::Failed { status: 401, reason: "access token refused twice".into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_outcomes() {
        let headers = reqwest::header::HeaderMap::new();
        let gone = json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "Requested entity was not found.",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}});
        assert!(matches!(error_outcome(404, &headers, &gone), Outcome::TokenGone { status: 404, .. }));
        let bad = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "bad"}});
        assert!(matches!(error_outcome(400, &headers, &bad), Outcome::Failed { status: 400, .. }));
        assert!(matches!(error_outcome(503, &headers, &Value::Null), Outcome::Retry { status: 503, .. }));
    }
}
