//! Expo push service: a message POSTed to `/--/api/v2/push/send` answers with a push ticket; the
//! ticket's receipt (`/--/api/v2/push/getReceipts`) later says whether it reached the device
//! (Expo's "Sending notifications with Expo's push API").

use std::time::Duration;

use serde_json::{Value, json};

use super::http;
use super::{InvalidTarget, Notification, Outcome, Priority, Provider, ProviderKind, ProviderSetupError, Target};
use crate::config::ExpoConfig;

/// The most ids one getReceipts request may carry (Expo's limit).
pub const MAX_RECEIPT_IDS: usize = 1000;
/// The longest Expo push token accepted, in bytes.
const MAX_TOKEN: usize = 256;

/// Expo provider. Each send POSTs `[{"to", "data": {…}, "priority": "high"|"normal", "ttl":
/// seconds}]`, with `"title"` and `"body"` only when the user allowed previews and
/// `"_contentAvailable": true` (iOS background wake-up) when not; within 4 KB. A ticket is
/// `Sent` with `receipt_pending` and its id as the ref, for [`Provider::receipts`]. Expo's error
/// messages quote the token, so only their error codes (`details.error`) are kept.
pub struct Expo {
    base_url: String,
    access_token: Option<String>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Expo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expo")
            .field("base_url", &self.base_url)
            .field("access_token", &self.access_token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Expo {
    /// Reads `config.access_token_file` when set (its trimmed content is the bearer token).
    ///
    /// # Errors
    /// The access token file cannot be read or is empty; the HTTP client cannot be built.
    pub fn new(config: &ExpoConfig, timeout: Duration) -> Result<Self, ProviderSetupError> {
        let fail = |message: String| ProviderSetupError { provider: "expo", message };
        let access_token = match &config.access_token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| fail(format!("access_token_file {}: {e}", path.display())))?;
                let token = text.trim().to_string();
                if token.is_empty() {
                    return Err(fail(format!("access_token_file {} is empty", path.display())));
                }
                Some(token)
            }
            None => None,
        };
        Ok(Self {
            base_url: config.base_url.trim_end_matches('/').to_string(),
            access_token,
            client: http::build_client("expo", http::client_builder(timeout))?,
        })
    }

    /// A POST of `body` (JSON) to `path`, with the access token when there is one.
    async fn post(&self, path: &str, body: Vec<u8>) -> Result<reqwest::Response, reqwest::Error> {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = &self.access_token {
            request = request.bearer_auth(token);
        }
        request.send().await
    }
}

/// The one-message array POSTed to send (see [`Expo`]).
fn message(target: &Target, n: &Notification, preview: Option<(&str, &str)>) -> Vec<u8> {
    let mut message = json!({
        "to": target.token,
        "data": n.data,
        "priority": if n.priority == Priority::High { "high" } else { "normal" },
        "ttl": http::ttl_secs(n.expires_at_ms),
    });
    match preview {
        Some((title, body)) => {
            message["title"] = json!(title);
            message["body"] = json!(body);
        }
        None => message["_contentAvailable"] = json!(true),
    }
    serde_json::to_vec(&json!([message])).unwrap_or_default()
}

/// An error ticket or receipt (`{"status": "error", "message", "details": {"error": CODE}}`):
/// DeviceNotRegistered is `TokenGone`, MessageRateExceeded `Retry`, the rest `Failed`.
fn error_outcome(status: u16, entry: &Value) -> Outcome {
    let code = entry.pointer("/details/error").and_then(Value::as_str).map_or("error", |c| http::cut(c, 60));
    match code {
        "DeviceNotRegistered" => Outcome::TokenGone { status, reason: code.to_string() },
        "MessageRateExceeded" => Outcome::Retry { status, after: None, reason: code.to_string() },
        _ => Outcome::Failed { status, reason: code.to_string() },
    }
}

/// An Expo push token: `ExponentPushToken[…]` or `ExpoPushToken[…]`, letters, digits, `-` and
/// `_` inside, at most 256 bytes.
fn check_token(token: &str) -> Result<(), InvalidTarget> {
    let inner = token
        .strip_prefix("ExponentPushToken[")
        .or_else(|| token.strip_prefix("ExpoPushToken["))
        .and_then(|t| t.strip_suffix(']'));
    let ok = token.len() <= MAX_TOKEN
        && inner
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    if ok { Ok(()) } else { Err(InvalidTarget("expo token must be ExponentPushToken[…]".into())) }
}

#[async_trait::async_trait]
impl Provider for Expo {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Expo
    }

    fn check_target(&self, token: &str, _app_id: &str, voip: bool) -> Result<(), InvalidTarget> {
        if voip {
            return Err(InvalidTarget("expo targets cannot be VoIP targets".into()));
        }
        check_token(token)
    }

    async fn send(&self, target: &Target, notification: &Notification) -> Outcome {
        let body = match http::fit_payload(notification.preview.as_ref(), |p| message(target, notification, p)) {
            Ok(body) => body,
            Err(outcome) => return outcome,
        };
        let response = match self.post("/--/api/v2/push/send", body).await {
            Ok(r) => r,
            Err(e) => return http::transport_error(e),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let answer = serde_json::from_slice::<Value>(&http::read_answer(response).await).unwrap_or(Value::Null);
        if status != 200 {
            // Request errors: `{"errors": [{"code", "message"}]}`.
            let code = answer.pointer("/errors/0/code").and_then(Value::as_str).map_or("", |c| http::cut(c, 60));
            return http::status_outcome(status, &headers, format!("Expo answered {status} {code}"));
        }
        // One message sent as an array: `data` is an array of one ticket (an object for a
        // message sent alone, accepted too).
        let ticket = match answer.get("data") {
            Some(Value::Array(tickets)) => tickets.first(),
            Some(ticket @ Value::Object(_)) => Some(ticket),
            _ => None,
        };
        let Some(ticket) = ticket else {
            return Outcome::Retry { status, after: None, reason: "Expo's answer has no ticket".into() };
        };
        match ticket.get("status").and_then(Value::as_str) {
            Some("ok") => match ticket.get("id").and_then(Value::as_str) {
                Some(id) => Outcome::Sent { status, provider_ref: Some(id.to_string()), receipt_pending: true },
                None => Outcome::Sent { status, provider_ref: None, receipt_pending: false },
            },
            _ => error_outcome(status, ticket),
        }
    }

    /// Asks getReceipts (`{"ids": […]}`, at most 1000 a request) and maps each receipt: `ok` is
    /// `Sent` (not pending), errors as at send (DeviceNotRegistered is `TokenGone`,
    /// MessageRateExceeded `Retry`, others `Failed`). Ids without a receipt yet, and all of a
    /// request that failed, are left out (asked again later).
    async fn receipts(&self, refs: &[String]) -> Vec<(String, Outcome)> {
        let mut outcomes = Vec::new();
        for ids in refs.chunks(MAX_RECEIPT_IDS) {
            let body = serde_json::to_vec(&json!({ "ids": ids })).unwrap_or_default();
            let response = match self.post("/--/api/v2/push/getReceipts", body).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %http::error_chain(&e.without_url()), "expo getReceipts failed");
                    continue;
                }
            };
            let status = response.status().as_u16();
            if status != 200 {
                tracing::warn!(status, "expo getReceipts refused");
                continue;
            }
            let answer = serde_json::from_slice::<Value>(&http::read_answer(response).await).unwrap_or(Value::Null);
            let Some(receipts) = answer.get("data").and_then(Value::as_object) else { continue };
            for id in ids {
                let Some(receipt) = receipts.get(id) else { continue };
                let outcome = match receipt.get("status").and_then(Value::as_str) {
                    Some("ok") => Outcome::Sent { status, provider_ref: Some(id.clone()), receipt_pending: false },
                    _ => error_outcome(status, receipt),
                };
                outcomes.push((id.clone(), outcome));
            }
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_errors() {
        assert!(check_token("ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]").is_ok());
        assert!(check_token("ExpoPushToken[abc-_1]").is_ok());
        assert!(check_token("ExponentPushToken[]").is_err());
        assert!(check_token("ExponentPushToken[a b]").is_err());
        assert!(check_token("abc").is_err());
        let gone = json!({"status": "error", "message": "\"ExponentPushToken[x]\" is not registered",
            "details": {"error": "DeviceNotRegistered"}});
        assert_eq!(error_outcome(200, &gone), Outcome::TokenGone { status: 200, reason: "DeviceNotRegistered".into() });
        let too_big = json!({"status": "error", "details": {"error": "MessageTooBig"}});
        assert!(matches!(error_outcome(200, &too_big), Outcome::Failed { .. }));
    }
}
