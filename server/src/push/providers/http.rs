//! HTTP plumbing the four push providers share: the client (timeout, HTTP/2, no redirects),
//! Retry-After parsing, the mapping of transport errors and statuses to [`Outcome`], bounded
//! reads of answers, and fitting a payload (preview body cut) into the providers' 4 KB limit.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Outcome, Preview, ProviderSetupError};

/// The payload limit all four providers share, in bytes: APNs 4 KB, FCM 4096 bytes, the 4096
/// bytes an RFC 8030 push service must accept, Expo 4 KB.
pub const MAX_PAYLOAD: usize = 4096;

/// The most of a provider's answer body that is read (error details are small; anything larger
/// is cut, never buffered whole).
pub const MAX_ANSWER: usize = 64 * 1024;

/// The longest Retry-After honoured: a provider asking for more is asked again after a day.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A client builder with what every provider wants: `timeout` for the whole request (and for
/// connecting), redirects never followed, HTTP/2 offered by ALPN over TLS.
///
/// Installs ring as the process's rustls provider first unless one is installed already:
/// reqwest is built without a bundled provider (see the workspace Cargo.toml).
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("confab-server/", env!("CARGO_PKG_VERSION")))
}

/// Builds `builder`'s client.
///
/// # Errors
/// [`ProviderSetupError`] naming `provider` when the TLS backend cannot be set up.
pub fn build_client(
    provider: &'static str,
    builder: reqwest::ClientBuilder,
) -> Result<reqwest::Client, ProviderSetupError> {
    builder.build().map_err(|e| ProviderSetupError {
        provider,
        message: format!("HTTP client: {}", error_chain(&e.without_url())),
    })
}

/// A transport failure (connection refused or reset, DNS, TLS, timeout) as `Retry` with
/// status 0. The URL is left out of the reason (a WebPush endpoint's path is a secret).
pub fn transport_error(error: reqwest::Error) -> Outcome {
    let error = error.without_url();
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    Outcome::Retry { status: 0, after: None, reason: format!("{what}: {}", error_chain(&error)) }
}

/// `error` and its sources, `: `-joined, at most 300 bytes.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    cut(&text, 300).to_string()
}

/// A status that is not a success and has no provider-specific meaning: 408, 429 and 5xx are
/// `Retry` (with the answer's Retry-After), 3xx (redirects are never followed) and other 4xx
/// are `Failed`.
pub fn status_outcome(status: u16, headers: &reqwest::header::HeaderMap, reason: String) -> Outcome {
    if status == 408 || status == 429 || (500..=599).contains(&status) {
        Outcome::Retry { status, after: retry_after(headers), reason }
    } else if (300..=399).contains(&status) {
        Outcome::Failed { status, reason: format!("redirect not followed ({reason})") }
    } else {
        Outcome::Failed { status, reason }
    }
}

/// The answer's `Retry-After` (RFC 9110 §10.2.3), when present and readable.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// Parses a Retry-After value: delta-seconds (`120`) or an HTTP-date (IMF-fixdate
/// `Sun, 06 Nov 1994 08:49:37 GMT`, or the obsolete RFC 850 and asctime forms), as the wait from
/// `now` (zero for a date already past), capped at a day. `None` when unreadable.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = parse_http_date(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)).min(MAX_RETRY_AFTER))
}

/// An HTTP-date (RFC 9110 §5.6.7) as seconds since the epoch.
fn parse_http_date(value: &str) -> Option<u64> {
    let cleaned: String = value.chars().map(|c| if c == ',' || c == '-' { ' ' } else { c }).collect();
    let tokens: Vec<&str> = cleaned.split_whitespace().collect();
    let (day, month, year, time) = match tokens.as_slice() {
        // IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`; RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT`.
        [_, day, month, year, time, "GMT"] => (*day, *month, *year, *time),
        // asctime `Sun Nov  6 08:49:37 1994`.
        [_, month, day, time, year] => (*day, *month, *year, *time),
        _ => return None,
    };
    let day: u32 = day.parse().ok()?;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == month)? as u32
        + 1;
    let mut year: i64 = year.parse().ok()?;
    if year < 100 {
        year += if year >= 70 { 1900 } else { 2000 };
    }
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 || year < 1970 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    u64::try_from(days).ok().map(|d| d * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Reads at most [`MAX_ANSWER`] bytes of an answer's body; a body that fails mid-way gives what
/// was read.
pub async fn read_answer(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ANSWER - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ANSWER {
            break;
        }
    }
    body
}

/// `text` cut to at most `max` bytes on a char boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The longest prefix of `body`, cut on a char boundary with `…` appended when cut, for which
/// `size(prefix)` is at most `limit` bytes. `size` must grow with its argument (it is the size
/// of the whole payload built around the body). `None` when not even an empty body fits.
pub fn fit_body(body: &str, limit: usize, size: impl Fn(&str) -> usize) -> Option<String> {
    if size(body) <= limit {
        return Some(body.to_string());
    }
    let cut_at = |end: usize| format!("{}…", &body[..end]);
    let ends: Vec<usize> = body.char_indices().map(|(i, _)| i).collect();
    // Binary search the last char boundary whose cut fits: fits(ends[0]) may be false too.
    let (mut lo, mut hi) = (0usize, ends.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if size(&cut_at(ends[mid])) <= limit {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo > 0 {
        Some(cut_at(ends[lo - 1]))
    } else if size("") <= limit {
        Some(String::new())
    } else {
        None
    }
}

/// Builds a payload with `build`, the preview's body cut (see [`fit_body`]) so the payload stays
/// within [`MAX_PAYLOAD`]; without the preview when even its title does not fit.
///
/// # Errors
/// `Outcome::Failed` (status 0) when the payload is too large without any preview.
pub fn fit_payload(
    preview: Option<&Preview>,
    build: impl Fn(Option<(&str, &str)>) -> Vec<u8>,
) -> Result<Vec<u8>, Outcome> {
    if let Some(p) = preview {
        let title = cut(&p.title, 256);
        if let Some(body) = fit_body(&p.body, MAX_PAYLOAD, |b| build(Some((title, b))).len()) {
            return Ok(build(Some((title, &body))));
        }
    }
    let payload = build(None);
    if payload.len() <= MAX_PAYLOAD {
        Ok(payload)
    } else {
        Err(Outcome::Failed {
            status: 0,
            reason: format!("payload of {} bytes over the {MAX_PAYLOAD}-byte limit", payload.len()),
        })
    }
}

/// Seconds from now until `expires_at_ms` (epoch ms), zero when past.
pub fn ttl_secs(expires_at_ms: i64) -> u64 {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let left = i128::from(expires_at_ms) - i128::try_from(now_ms).unwrap_or(i128::MAX);
    u64::try_from(left.max(0) / 1000).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("Sun Nov  6 08:51:37 1994", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now), Some(Duration::ZERO));
        for bad in ["", "-5", "1.5", "soon", "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        // 2024-02-29 (a leap day) against a known epoch value.
        assert_eq!(parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT"), Some(1_709_164_800));
    }

    #[test]
    fn statuses_map_to_retry_or_failed() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, reqwest::header::HeaderValue::from_static("7"));
        let after = Some(Duration::from_secs(7));
        assert!(
            matches!(status_outcome(503, &headers, "x".into()), Outcome::Retry { status: 503, after: a, .. } if a == after)
        );
        assert!(matches!(status_outcome(429, &headers, "x".into()), Outcome::Retry { status: 429, .. }));
        assert!(matches!(status_outcome(400, &headers, "x".into()), Outcome::Failed { status: 400, .. }));
        assert!(matches!(status_outcome(301, &headers, "x".into()), Outcome::Failed { status: 301, .. }));
    }

    #[test]
    fn body_is_cut_on_a_char_boundary_to_fit() {
        let size = |b: &str| 100 + b.len();
        assert_eq!(fit_body("short", 200, size).as_deref(), Some("short"));
        // 'é' is 2 bytes, '…' 3: 100 + 3 + 2k <= 110 → k = 3.
        let cut = fit_body("ééééééééé", 110, size).expect("fits when cut");
        assert_eq!(cut, "ééé…");
        assert!(size(&cut) <= 110);
        // Not even "…" fits, the empty body does.
        assert_eq!(fit_body("abc", 102, size).as_deref(), Some(""));
        assert_eq!(fit_body("abc", 99, size), None);
        // Emoji (4 bytes) never split.
        let cut = fit_body(&"😀".repeat(50), 120, size).expect("fits");
        assert!(cut.ends_with('…') && cut.chars().filter(|c| *c == '😀').count() == 4);
    }

    #[test]
    fn payload_fits_4096_bytes() {
        let preview = Preview { title: "Ann".into(), body: "ü".repeat(5000) };
        let build = |p: Option<(&str, &str)>| {
            serde_json::to_vec(&serde_json::json!({ "t": p.map(|p| p.0), "b": p.map(|p| p.1) })).unwrap_or_default()
        };
        let payload = fit_payload(Some(&preview), build).expect("fits");
        assert!(payload.len() <= MAX_PAYLOAD && payload.len() > MAX_PAYLOAD - 8, "{}", payload.len());
        let too_big = |_: Option<(&str, &str)>| vec![b'x'; MAX_PAYLOAD + 1];
        assert!(matches!(fit_payload(None, too_big), Err(Outcome::Failed { .. })));
        assert_eq!(cut("aé", 2), "a");
    }
}
