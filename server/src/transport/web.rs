//! The meeting page on the HTTP port (docs/operations.md "Meeting links"): `GET /call/ROOM_ID`
//! answers the page and `GET /call/assets/NAME` its script and style sheet. The files are the
//! committed build in `web/dist/`, embedded in the binary at compile time, so a server serves
//! the page with nothing else installed; CI rebuilds `web/dist/` and checks it is unchanged.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};

/// The prefix of every path this module answers.
pub(crate) const PREFIX: &str = "/call/";

/// The Content-Security-Policy of every answer: scripts, styles and connections (the WebSocket
/// on `/v1/ws`) from this origin only, no inline code, no plug-ins, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; media-src 'self' blob:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const PAGE: &[u8] = include_bytes!("../../../web/dist/index.html");

/// Everything under `/call/assets/`, matched by exact name: nothing else is served from there.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/dist/assets/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../../web/dist/assets/style.css"),
    },
];

/// A room id as rooms.proto has it: 32 lower-case hex digits.
fn is_room_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The answer for a path under [`PREFIX`]: the page, an asset, 405 for a method other than GET
/// or HEAD, 404 for anything else.
pub(crate) fn answer(method: &Method, path: &str) -> Response<Full<Bytes>> {
    let rest = path.strip_prefix(PREFIX).unwrap_or_default();
    let found = if let Some(name) = rest.strip_prefix("assets/") {
        ASSETS.iter().find(|a| a.name == name).map(|a| (a.content_type, a.body))
    } else if is_room_id(rest) {
        Some(("text/html; charset=utf-8", PAGE))
    } else {
        None
    };
    let Some((content_type, body)) = found else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    if method != Method::GET && method != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::from_static(body)));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The files change with the binary; revalidating is cheap next to a stale page.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(h);
    r
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    secure(r.headers_mut());
    r
}

fn secure(h: &mut hyper::HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The invite token is in the fragment, which is never sent; no referrer leaks the room id.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("permissions-policy", HeaderValue::from_static("camera=(self), microphone=(self), geolocation=()"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> (StatusCode, Option<String>) {
        let r = answer(&Method::GET, path);
        let ct = r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        (r.status(), ct)
    }

    #[test]
    fn page_and_assets_only() {
        let room = "/call/0123456789abcdef0123456789abcdef";
        assert_eq!(get(room), (StatusCode::OK, Some("text/html; charset=utf-8".into())));
        assert_eq!(get("/call/assets/app.js").0, StatusCode::OK);
        assert_eq!(get("/call/assets/style.css").1.as_deref(), Some("text/css; charset=utf-8"));
        for bad in [
            "/call/",
            "/call/assets/",
            "/call/assets/../index.html",
            "/call/assets/app.js/",
            "/call/assets/%2e%2e/app.js",
            "/call/0123456789ABCDEF0123456789ABCDEF",
            "/call/0123456789abcdef0123456789abcdef/x",
            "/call/../metrics",
        ] {
            assert_eq!(get(bad).0, StatusCode::NOT_FOUND, "{bad}");
        }
        let r = answer(&Method::POST, room);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(r.headers().get(header::CONTENT_SECURITY_POLICY).is_some());
    }

    #[test]
    fn the_page_loads_only_embedded_assets() {
        let page = std::str::from_utf8(PAGE).expect("utf-8");
        for a in ASSETS {
            assert!(page.contains(&format!("/call/assets/{}", a.name)), "{} not referenced", a.name);
        }
        assert!(!page.contains("<script>") && !page.contains("style="), "inline code would break the CSP");
    }
}
