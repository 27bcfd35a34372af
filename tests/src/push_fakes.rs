//! Fake push provider servers for tests: real HTTP servers on 127.0.0.1 (HTTP/1.1, and h2c for
//! APNs) that record every request (time, method, path, HTTP version, headers, body), check
//! credentials the way the real services do (APNs ES256 provider tokens, FCM's RS256 assertion
//! and issued access tokens, Expo's bearer), and answer from a script of canned responses.
//! Also the credentials they check: a generated APNs `.p8` key and an FCM service account.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The test-only RSA key of the FCM service account (tests/fixtures/push/README.md).
const FCM_PRIVATE_PEM: &str = include_str!("../fixtures/push/fcm_test_rsa_private.pem");
const FCM_PUBLIC_PEM: &str = include_str!("../fixtures/push/fcm_test_rsa_public.pem");
/// The FCM fake's service account and project.
pub const FCM_CLIENT_EMAIL: &str = "confab-push@confab-test.iam.gserviceaccount.com";
pub const FCM_PROJECT: &str = "confab-test";
const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const FCM_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One request a fake received.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub method: String,
    /// Path and query.
    pub path: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The body as JSON, when it is JSON.
    pub json: Option<Value>,
    /// APNs: the `iat` of the request's provider token, when its signature checked out.
    pub jwt_iat: Option<u64>,
}

impl Received {
    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The bearer token of `authorization`, when there is one.
    pub fn bearer(&self) -> Option<&str> {
        let auth = self.header("authorization");
        auth.strip_prefix("bearer ").or_else(|| auth.strip_prefix("Bearer "))
    }
}

/// A scripted answer.
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Canned {
    /// An answer with `status` and no body.
    pub fn status(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: String::new() }
    }

    /// An answer with `status` and a JSON body.
    pub fn json(status: u16, body: Value) -> Self {
        Self { status, headers: vec![("content-type".into(), "application/json".into())], body: body.to_string() }
    }

    /// With one more header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What a fake received and the answers scripted for it.
#[derive(Debug, Default)]
pub struct Recorder {
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    script: Mutex<VecDeque<Canned>>,
}

impl Recorder {
    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.received).clone()
    }

    /// Waits until at least `n` requests arrived, and returns them all.
    ///
    /// # Panics
    /// When they have not within `within` (naming how many did).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let now = self.received();
            if now.len() >= n {
                return now;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("{} requests within {within:?}, expected {n}: {:?}", now.len(), paths(&now));
            }
        }
    }

    /// Queues an answer: the next request the fake scripts its answers for gets it (first in,
    /// first out); with none queued the fake answers success.
    pub fn script(&self, canned: Canned) {
        lock(&self.script).push_back(canned);
    }

    fn next_canned(&self) -> Option<Canned> {
        lock(&self.script).pop_front()
    }

    fn record(&self, received: Received) {
        lock(&self.received).push(received);
        self.arrived.notify_waiters();
    }
}

fn paths(received: &[Received]) -> Vec<&str> {
    received.iter().map(|r| r.path.as_str()).collect()
}

type Handler = Arc<dyn Fn(&mut Received) -> Canned + Send + Sync>;

/// A running server: stops (with its connections) when dropped.
#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Serves on 127.0.0.1 (any port) with HTTP/1.1, or HTTP/2 without TLS (`h2c`, prior
    /// knowledge). Each request is read whole, answered by `handler`, then recorded.
    async fn start(h2c: bool, recorder: Arc<Recorder>, handler: Handler) -> Server {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind a fake provider");
        let addr = listener.local_addr().expect("fake provider address");
        let task = tokio::spawn(async move {
            // Dropped with the task when the server is: its connections are aborted too.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (recorder, handler) = (recorder.clone(), handler.clone());
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (recorder, handler) = (recorder.clone(), handler.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                        let mut received = Received {
                            at: Instant::now(),
                            method: parts.method.to_string(),
                            path: parts
                                .uri
                                .path_and_query()
                                .map_or_else(|| parts.uri.path().to_string(), |p| p.to_string()),
                            version: parts.version,
                            headers: parts.headers,
                            json: serde_json::from_slice(&body).ok(),
                            body,
                            jwt_iat: None,
                        };
                        let canned = handler(&mut received);
                        recorder.record(received);
                        let mut response = Response::builder().status(canned.status);
                        for (name, value) in &canned.headers {
                            response = response.header(name, value);
                        }
                        let response = response
                            .body(Full::new(Bytes::from(canned.body)))
                            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
                        Ok::<_, Infallible>(response)
                    }
                });
                let io = TokioIo::new(stream);
                if h2c {
                    connections.spawn(async move {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service)
                            .await;
                    });
                } else {
                    connections.spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    });
                }
                while connections.try_join_next().is_some() {}
            }
        });
        Server { addr, task }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A UnifiedPush / webhook endpoint: accepts a POST on any path (201 unless scripted).
#[derive(Debug)]
pub struct FakeWebPush {
    server: Server,
    recorder: Arc<Recorder>,
}

impl FakeWebPush {
    pub async fn start() -> Self {
        let recorder = Arc::new(Recorder::default());
        let script = recorder.clone();
        let handler: Handler = Arc::new(move |r: &mut Received| {
            if r.method != "POST" {
                return Canned::status(405);
            }
            script.next_canned().unwrap_or_else(|| Canned::status(201))
        });
        Self { server: Server::start(false, recorder.clone(), handler).await, recorder }
    }

    /// An endpoint URL on this fake (`path` starts with `/`).
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url())
    }
}

impl std::ops::Deref for FakeWebPush {
    type Target = Recorder;
    fn deref(&self) -> &Recorder {
        &self.recorder
    }
}

/// An APNs signing key, as Apple hands it out (`.p8`: PKCS#8 PEM, P-256), with its ids.
#[derive(Clone, Debug)]
pub struct ApnsKey {
    pub key_id: String,
    pub team_id: String,
    pub private_pem: String,
    pub public_pem: String,
}

impl ApnsKey {
    /// A new P-256 key, key id `ABC123DEFG`, team id `TEAM123456`.
    pub fn generate() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate a P-256 key");
        Self {
            key_id: "ABC123DEFG".into(),
            team_id: "TEAM123456".into(),
            private_pem: pair.serialize_pem(),
            public_pem: pair.public_key_pem(),
        }
    }

    /// Writes the `.p8` file into `dir`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("AuthKey_{}.p8", self.key_id));
        std::fs::write(&path, &self.private_pem).expect("write the .p8 key");
        path
    }
}

/// APNs over h2c: POST `/3/device/{hex token}` with a bearer provider token whose ES256
/// signature, `kid` and `iss` are checked (403 InvalidProviderToken otherwise; its `iat` is
/// recorded). Answers 200 with an `apns-id` unless scripted.
#[derive(Debug)]
pub struct FakeApns {
    server: Server,
    recorder: Arc<Recorder>,
}

impl FakeApns {
    pub async fn start(key: &ApnsKey) -> Self {
        let recorder = Arc::new(Recorder::default());
        let script = recorder.clone();
        let decoding = DecodingKey::from_ec_pem(key.public_pem.as_bytes()).expect("the APNs public key");
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.required_spec_claims = HashSet::new();
        validation.set_issuer(&[&key.team_id]);
        let key_id = key.key_id.clone();
        let sent = Arc::new(AtomicU64::new(0));
        let handler: Handler = Arc::new(move |r: &mut Received| {
            let checked = r.bearer().and_then(|jwt| {
                let data = jsonwebtoken::decode::<Value>(jwt, &decoding, &validation).ok()?;
                (data.header.kid.as_deref() == Some(key_id.as_str())).then_some(data.claims)
            });
            let Some(claims) = checked else {
                return Canned::json(403, json!({ "reason": "InvalidProviderToken" }));
            };
            r.jwt_iat = claims.get("iat").and_then(Value::as_u64);
            let token = r.path.strip_prefix("/3/device/").unwrap_or_default();
            if r.method != "POST" || token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Canned::json(404, json!({ "reason": "BadPath" }));
            }
            script.next_canned().unwrap_or_else(|| {
                let n = sent.fetch_add(1, Ordering::SeqCst) + 1;
                Canned::status(200).header("apns-id", &format!("00000000-0000-4000-8000-{n:012}"))
            })
        });
        Self { server: Server::start(true, recorder.clone(), handler).await, recorder }
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }
}

impl std::ops::Deref for FakeApns {
    type Target = Recorder;
    fn deref(&self) -> &Recorder {
        &self.recorder
    }
}

/// The FCM fake's token endpoint state.
#[derive(Debug)]
struct FcmState {
    /// Access tokens issued, with when they expire.
    issued: Mutex<HashMap<String, Instant>>,
    expires_in: AtomicU64,
    exchanges: AtomicUsize,
}

/// FCM HTTP v1: `POST /token` (the OAuth 2 token endpoint: checks `grant_type` and the RS256
/// assertion's signature, `iss`, `aud`, `scope` and `exp`, then issues `fake-access-N` for
/// `expires_in` seconds, 3600 unless set) and `POST /v1/projects/confab-test/messages:send`
/// (401 unless the bearer is an issued, unexpired, unrevoked access token; then the script or
/// 200 `{"name": "projects/confab-test/messages/N"}`). Only messages:send takes the script.
#[derive(Debug)]
pub struct FakeFcm {
    server: Server,
    recorder: Arc<Recorder>,
    state: Arc<FcmState>,
}

impl FakeFcm {
    pub async fn start() -> Self {
        let recorder = Arc::new(Recorder::default());
        let state = Arc::new(FcmState {
            issued: Mutex::default(),
            expires_in: AtomicU64::new(3600),
            exchanges: AtomicUsize::new(0),
        });
        // The token endpoint's URL (the assertion's audience) is known once bound.
        let token_uri = Arc::new(Mutex::new(String::new()));
        let decoding = DecodingKey::from_rsa_pem(FCM_PUBLIC_PEM.as_bytes()).expect("the FCM public key");
        let (script, st, uri) = (recorder.clone(), state.clone(), token_uri.clone());
        let sent = Arc::new(AtomicU64::new(0));
        let handler: Handler = Arc::new(move |r: &mut Received| {
            if r.method != "POST" {
                return Canned::status(405);
            }
            if r.path == "/token" {
                let body = String::from_utf8_lossy(&r.body).into_owned();
                if form_value(&body, "grant_type").as_deref() != Some(FCM_GRANT) {
                    return Canned::json(400, json!({ "error": "unsupported_grant_type" }));
                }
                let mut validation = Validation::new(Algorithm::RS256);
                validation.set_audience(&[lock(&uri).as_str()]);
                validation.set_issuer(&[FCM_CLIENT_EMAIL]);
                validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
                let claims = form_value(&body, "assertion")
                    .and_then(|a| jsonwebtoken::decode::<Value>(&a, &decoding, &validation).ok())
                    .map(|d| d.claims);
                if claims.as_ref().and_then(|c| c.get("scope")).and_then(Value::as_str) != Some(FCM_SCOPE) {
                    return Canned::json(400, json!({ "error": "invalid_grant" }));
                }
                let n = st.exchanges.fetch_add(1, Ordering::SeqCst) + 1;
                let access = format!("fake-access-{n}");
                let expires_in = st.expires_in.load(Ordering::SeqCst);
                lock(&st.issued).insert(access.clone(), Instant::now() + Duration::from_secs(expires_in));
                return Canned::json(
                    200,
                    json!({ "access_token": access, "expires_in": expires_in, "token_type": "Bearer" }),
                );
            }
            if r.path != format!("/v1/projects/{FCM_PROJECT}/messages:send") {
                return Canned::json(404, json!({ "error": { "code": 404, "status": "NOT_FOUND" } }));
            }
            let valid =
                r.bearer().and_then(|b| lock(&st.issued).get(b).copied()).is_some_and(|until| Instant::now() < until);
            if !valid {
                return Canned::json(
                    401,
                    json!({ "error": { "code": 401, "status": "UNAUTHENTICATED",
                    "message": "Request had invalid authentication credentials." } }),
                );
            }
            script.next_canned().unwrap_or_else(|| {
                let n = sent.fetch_add(1, Ordering::SeqCst) + 1;
                Canned::json(200, json!({ "name": format!("projects/{FCM_PROJECT}/messages/{n}") }))
            })
        });
        let server = Server::start(false, recorder.clone(), handler).await;
        *lock(&token_uri) = format!("{}/token", server.base_url());
        Self { server, recorder, state }
    }

    /// The FCM API base URL (`push.fcm.base_url`).
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The OAuth 2 token endpoint.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.server.base_url())
    }

    /// Writes a service account key file (the fixture RSA key, `token_uri` this fake) into `dir`.
    pub fn write_service_account(&self, dir: &Path) -> PathBuf {
        let account = json!({
            "type": "service_account",
            "project_id": FCM_PROJECT,
            "private_key_id": "0123456789abcdef",
            "private_key": FCM_PRIVATE_PEM,
            "client_email": FCM_CLIENT_EMAIL,
            "client_id": "1234567890",
            "token_uri": self.token_uri(),
        });
        let path = dir.join("service-account.json");
        std::fs::write(&path, account.to_string()).expect("write the service account");
        path
    }

    /// The `expires_in` (seconds) of access tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.state.expires_in.store(secs, Ordering::SeqCst);
    }

    /// Revokes every access token issued so far: messages:send answers 401 to them.
    pub fn revoke_all(&self) {
        lock(&self.state.issued).clear();
    }

    /// Token exchanges that issued a token.
    pub fn exchanges(&self) -> usize {
        self.state.exchanges.load(Ordering::SeqCst)
    }

    /// The messages:send requests received.
    pub fn sends(&self) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.path.ends_with("messages:send")).collect()
    }
}

impl std::ops::Deref for FakeFcm {
    type Target = Recorder;
    fn deref(&self) -> &Recorder {
        &self.recorder
    }
}

/// A form field of an `application/x-www-form-urlencoded` body, decoded.
fn form_value(body: &str, key: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Expo fake's receipts.
#[derive(Debug, Default)]
struct ExpoState {
    /// Tickets' receipts by id; `None`: not ready yet. Ids not here get `{"status": "ok"}`.
    receipts: Mutex<HashMap<String, Option<Value>>>,
    tickets: AtomicU64,
}

/// Expo: `POST /--/api/v2/push/send` (a JSON array of messages; the script answers the whole
/// request, else one ticket `{"status": "ok", "id": "ticket-N"}` per message) and `POST
/// /--/api/v2/push/getReceipts` (`{"ids": […]}` → each id's scripted receipt, `ok` by default).
/// With an expected access token, both answer 401 to any other bearer.
#[derive(Debug)]
pub struct FakeExpo {
    server: Server,
    recorder: Arc<Recorder>,
    state: Arc<ExpoState>,
}

impl FakeExpo {
    pub async fn start(access_token: Option<&str>) -> Self {
        let recorder = Arc::new(Recorder::default());
        let state = Arc::new(ExpoState::default());
        let (script, st) = (recorder.clone(), state.clone());
        let expected = access_token.map(str::to_string);
        let handler: Handler = Arc::new(move |r: &mut Received| {
            if expected.is_some() && r.bearer() != expected.as_deref() {
                return Canned::json(401, json!({ "errors": [{ "code": "UNAUTHORIZED", "message": "bad token" }] }));
            }
            match (r.method.as_str(), r.path.as_str()) {
                ("POST", "/--/api/v2/push/send") => {
                    if let Some(canned) = script.next_canned() {
                        return canned;
                    }
                    let Some(Value::Array(messages)) = &r.json else {
                        return Canned::json(400, json!({ "errors": [{ "code": "VALIDATION_ERROR" }] }));
                    };
                    let tickets: Vec<Value> = messages
                        .iter()
                        .map(|_| {
                            let n = st.tickets.fetch_add(1, Ordering::SeqCst) + 1;
                            json!({ "status": "ok", "id": format!("ticket-{n}") })
                        })
                        .collect();
                    Canned::json(200, json!({ "data": tickets }))
                }
                ("POST", "/--/api/v2/push/getReceipts") => {
                    let ids = r
                        .json
                        .as_ref()
                        .and_then(|j| j.get("ids"))
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let receipts = lock(&st.receipts);
                    let mut data = serde_json::Map::new();
                    for id in ids.iter().filter_map(Value::as_str) {
                        match receipts.get(id) {
                            Some(None) => {}
                            Some(Some(receipt)) => {
                                data.insert(id.to_string(), receipt.clone());
                            }
                            None => {
                                data.insert(id.to_string(), json!({ "status": "ok" }));
                            }
                        }
                    }
                    Canned::json(200, json!({ "data": data }))
                }
                _ => Canned::status(404),
            }
        });
        Self { server: Server::start(false, recorder.clone(), handler).await, recorder, state }
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The receipt getReceipts gives for `ticket` (e.g. `{"status": "error", "details":
    /// {"error": "DeviceNotRegistered"}}`).
    pub fn set_receipt(&self, ticket: &str, receipt: Value) {
        lock(&self.state.receipts).insert(ticket.into(), Some(receipt));
    }

    /// getReceipts leaves `ticket` out (not ready yet).
    pub fn receipt_not_ready(&self, ticket: &str) {
        lock(&self.state.receipts).insert(ticket.into(), None);
    }
}

impl std::ops::Deref for FakeExpo {
    type Target = Recorder;
    fn deref(&self) -> &Recorder {
        &self.recorder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_decoded() {
        let body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b-c_d&x=1+2%";
        assert_eq!(form_value(body, "grant_type").as_deref(), Some(FCM_GRANT));
        assert_eq!(form_value(body, "assertion").as_deref(), Some("a.b-c_d"));
        assert_eq!(form_value(body, "x").as_deref(), Some("1 2%"));
        assert_eq!(form_value(body, "y"), None);
    }
}
