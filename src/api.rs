//! What a DigiDesk answer means. Reads the body as `docs/digidesk-api.md`
//! says (JSON or XML, `message` or `messages`, an array or a single string)
//! and classifies the HTTP status into what the uploader does next: done,
//! retry, or stop.

use std::time::Duration;

/// The parts of an answer body the uploader cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body {
    /// The `status` field: `success` or `error`, when present.
    pub status: Option<String>,
    /// The `data` field when it is an integer id.
    pub id: Option<u64>,
    /// The server's messages, verbatim.
    pub messages: Vec<String>,
    /// When the body could not be read as a DigiDesk answer: what it was, in words.
    pub unreadable: Option<String>,
}

/// What to do with a row after one answered attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Created, with DigiDesk's id.
    Created(u64),
    /// The data was refused; resending it as is will not help.
    Rejected(Vec<String>),
    /// A transient failure: try again (after `Retry-After` when given).
    Transient(String),
    /// A 2xx that does not say it created anything, or says so unreadably:
    /// the survey may exist, so the row must not be sent again automatically.
    Unknown(String),
    /// Nothing will work until the user fixes something: stop the whole run.
    Stop(StopKind, String),
}

/// Why a run stops part-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// 401/403: wrong or missing credentials, or no permission.
    Credentials,
    /// 407: the proxy wants credentials.
    Proxy,
    /// 404, 405 or a redirect: the endpoint is wrong.
    Endpoint,
    /// The certificate is not trusted, TLS failed, or http and https are mixed up.
    Tls,
    /// The server asked to wait longer than the run is willing to (`Retry-After`).
    Throttled,
    /// The service kept failing (the circuit breaker opened).
    ServiceDown,
    /// The ledger of surveys sent failed part-way (disk full, locked too long).
    Ledger,
}

/// What a 500, 502, 504 or other 5xx means for the row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServerErrors {
    /// It may come after the request was processed (a gateway that timed
    /// out waiting for DigiDesk): the row is `unknown`, never resent.
    #[default]
    Unknown,
    /// The endpoint is known to answer them before doing anything
    /// (`--retry-server-errors`): retried like a 503.
    Retry,
}

/// Classifies one answered attempt (`docs/digidesk-api.md`, #6 to #8).
/// `location` is a redirect's target, already made absolute.
pub fn classify(
    http: u16,
    body: &Body,
    location: Option<&str>,
    server_errors: ServerErrors,
) -> Verdict {
    let words = || describe(http, body);
    match http {
        200..=299 => match (body.status.as_deref(), body.id) {
            (Some("success"), Some(id)) => Verdict::Created(id),
            (Some("error"), _) => Verdict::Rejected(non_empty(body.messages.clone(), words)),
            _ => Verdict::Unknown(format!(
                "HTTP {http} without a survey request id ({}); it may have been created: check DigiDesk before resending",
                body.unreadable.clone().unwrap_or_else(|| "no id in the answer".into())
            )),
        },
        401 | 403 => Verdict::Stop(
            StopKind::Credentials,
            format!(
                "DigiDesk answered HTTP {http} ({}): check DIGIDESK_USERNAME and DIGIDESK_PASSWORD (or --credentials) and that the account may post survey requests",
                reason(body)
            ),
        ),
        404 => Verdict::Stop(
            StopKind::Endpoint,
            format!(
                "DigiDesk answered HTTP 404 ({}): the endpoint is wrong; check --endpoint or DIGIDESK_ENDPOINT (the spec's is {})",
                reason(body),
                crate::spec::DEFAULT_ENDPOINT
            ),
        ),
        405 => Verdict::Stop(
            StopKind::Endpoint,
            format!(
                "the endpoint answered HTTP 405 ({}): it does not take survey requests by POST; check --endpoint or DIGIDESK_ENDPOINT (the spec's is {})",
                reason(body),
                crate::spec::DEFAULT_ENDPOINT
            ),
        ),
        407 => Verdict::Stop(
            StopKind::Proxy,
            format!(
                "the proxy answered HTTP 407 ({}): it wants credentials; put them in the proxy variable (HTTPS_PROXY=http://USER:PASSWORD@HOST:PORT) or ask for the endpoint to be let through",
                reason(body)
            ),
        ),
        300..=399 => Verdict::Stop(
            StopKind::Endpoint,
            match location {
                Some(to) => format!(
                    "the endpoint answered with a redirect (HTTP {http}) to {to}; use that URL: --endpoint {to}"
                ),
                None => format!(
                    "the endpoint answered with a redirect (HTTP {http}) that names no target; use the final URL as --endpoint"
                ),
            },
        ),
        400 if body
            .unreadable
            .as_deref()
            .is_some_and(|u| u.contains("plain HTTP request was sent to HTTPS port")) =>
        {
            Verdict::Stop(
                StopKind::Tls,
                "the endpoint is an HTTPS port and was sent plain HTTP (HTTP 400: the plain HTTP request was sent to HTTPS port): nothing was created; use https:// in --endpoint".into(),
            )
        }
        408 | 429 | 503 => Verdict::Transient(words()),
        500..=599 => match server_errors {
            ServerErrors::Retry => Verdict::Transient(words()),
            ServerErrors::Unknown => Verdict::Unknown(format!(
                "{}: a server error may come after the survey request was created (a gateway that gave up waiting); check DigiDesk before resending (retry --only unknown), or pass --retry-server-errors if this endpoint answers them before doing anything",
                words()
            )),
        },
        400..=499 => Verdict::Rejected(non_empty(body.messages.clone(), words)),
        _ => Verdict::Rejected(vec![words()]),
    }
}

/// The server's reason in words, without the status: its messages, or
/// what the body was.
fn reason(body: &Body) -> String {
    if !body.messages.is_empty() {
        return body.messages.join("; ");
    }
    body.unreadable
        .clone()
        .unwrap_or_else(|| "no message".into())
}

fn non_empty(messages: Vec<String>, words: impl FnOnce() -> String) -> Vec<String> {
    if messages.is_empty() {
        vec![words()]
    } else {
        messages
    }
}

/// The answer in words: the server's messages when it gave any, otherwise
/// what the body was.
pub fn describe(http: u16, body: &Body) -> String {
    if !body.messages.is_empty() {
        return format!("HTTP {http}: {}", body.messages.join("; "));
    }
    match &body.unreadable {
        Some(what) => format!("HTTP {http} with {what}"),
        None => format!("HTTP {http}"),
    }
}

/// Reads an answer body whatever its format. Never fails: a body that is not
/// a DigiDesk answer is described in `unreadable`. Every text in it is
/// [`clean`]: it may reach a terminal, a log or the results file.
pub fn read_body(content_type: Option<&str>, bytes: &[u8]) -> Body {
    let mut body = read_raw(content_type, bytes);
    for m in &mut body.messages {
        *m = clean(m);
    }
    body.messages.retain(|m| !m.trim().is_empty());
    body.unreadable = body.unreadable.as_deref().map(clean);
    body
}

/// Text from the server made safe to show: ANSI escape sequences and other
/// control characters removed (tabs and line breaks become spaces), and
/// the invisible characters that reorder text on screen.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => skip_escape(&mut chars),
            // The one-character CSI: its parameters follow.
            '\u{9b}' => skip_csi(&mut chars),
            '\t' | '\n' | '\r' => out.push(' '),
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Skips the rest of an escape sequence whose ESC was just read.
fn skip_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.peek() {
        Some('[') => {
            chars.next();
            skip_csi(chars);
        }
        // Strings (OSC, DCS, ...): up to BEL or the string terminator.
        Some(']' | 'P' | 'X' | '^' | '_') => {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '\u{7}' || c == '\u{9c}' {
                    break;
                }
                if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                    chars.next();
                    break;
                }
            }
        }
        Some(_) => {
            // Intermediate bytes, then one final character.
            while chars.peek().is_some_and(|c| (' '..='/').contains(c)) {
                chars.next();
            }
            chars.next();
        }
        None => {}
    }
}

/// Skips a control sequence's parameters and its final character.
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars
        .peek()
        .is_some_and(|c| ('0'..='?').contains(c) || (' '..='/').contains(c))
    {
        chars.next();
    }
    if chars.peek().is_some_and(|c| ('@'..='~').contains(c)) {
        chars.next();
    }
}

fn read_raw(content_type: Option<&str>, bytes: &[u8]) -> Body {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Body {
            unreadable: Some("an empty body".into()),
            ..Body::default()
        };
    }
    if trimmed.starts_with('{') || ct.contains("json") {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(trimmed) {
            return from_json(&value);
        }
    }
    if ct.contains("html") || looks_like_html(trimmed) {
        let title = html_title(trimmed);
        return Body {
            unreadable: Some(match title {
                Some(t) => {
                    format!("an HTML page \"{t}\" (a proxy or gateway answered, not DigiDesk)")
                }
                None => "an HTML page (a proxy or gateway answered, not DigiDesk)".into(),
            }),
            ..Body::default()
        };
    }
    if trimmed.starts_with('<') || ct.contains("xml") {
        if let Some(body) = from_xml(trimmed) {
            return body;
        }
    }
    Body {
        unreadable: Some(format!(
            "a body that is not a DigiDesk answer ({})",
            snippet(trimmed)
        )),
        ..Body::default()
    }
}

fn from_json(value: &serde_json::Value) -> Body {
    let Some(obj) = value.as_object() else {
        return Body {
            unreadable: Some("JSON that is not an object".into()),
            ..Body::default()
        };
    };
    let status = obj
        .get("status")
        .and_then(|s| s.as_str())
        .map(|s| s.trim().to_ascii_lowercase());
    let id = obj.get("data").and_then(|d| {
        d.as_u64()
            .or_else(|| d.as_str().and_then(|s| s.trim().parse().ok()))
    });
    let mut messages = Vec::new();
    for key in ["message", "messages"] {
        match obj.get(key) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => messages.push(s.clone()),
            Some(serde_json::Value::Array(items)) => {
                for item in items {
                    match item {
                        serde_json::Value::String(s) => messages.push(s.clone()),
                        serde_json::Value::Null => {}
                        other => messages.push(other.to_string()),
                    }
                }
            }
            _ => {}
        }
    }
    let unreadable = if status.is_none() {
        Some("JSON without a status field".into())
    } else {
        None
    };
    Body {
        status,
        id,
        messages,
        unreadable,
    }
}

/// Reads `<status>`, `<data>` and every text under `<message>`/`<messages>`.
fn from_xml(text: &str) -> Option<Body> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut body = Body::default();
    let mut saw_root = false;
    // Text of the current element; quick-xml splits it around entity references.
    let mut text_buf = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                saw_root = true;
                record_xml_text(&mut body, &path, &mut text_buf);
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).to_ascii_lowercase());
            }
            Ok(Event::Empty(_)) => saw_root = true,
            Ok(Event::End(_)) => {
                record_xml_text(&mut body, &path, &mut text_buf);
                path.pop();
            }
            Ok(Event::Text(t)) => {
                if let Ok(c) = t.decode() {
                    text_buf.push_str(&unescape_xml(&c));
                }
            }
            Ok(Event::CData(t)) => text_buf.push_str(&String::from_utf8_lossy(&t)),
            Ok(Event::GeneralRef(r)) => {
                text_buf.push_str(&unescape_xml(&format!("&{};", String::from_utf8_lossy(&r))));
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    if !saw_root {
        return None;
    }
    if body.status.is_none() {
        body.unreadable = Some("XML without a status element".into());
    }
    Some(body)
}

fn record_xml_text(body: &mut Body, path: &[String], text: &mut String) {
    let value = std::mem::take(text).trim().to_string();
    if value.is_empty() {
        return;
    }
    if path.iter().any(|p| p == "message" || p == "messages") {
        body.messages.push(value);
    } else if path.last().map(String::as_str) == Some("status") {
        body.status = Some(value.trim().to_ascii_lowercase());
    } else if path.last().map(String::as_str) == Some("data") {
        body.id = value.trim().parse().ok();
    }
}

fn unescape_xml(s: &str) -> String {
    quick_xml::escape::unescape(s)
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| s.to_string())
}

fn looks_like_html(s: &str) -> bool {
    let head: String = s.chars().take(200).collect::<String>().to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.contains("<html")
}

fn html_title(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    let title = s.get(start..end)?.trim();
    (!title.is_empty()).then(|| title.chars().take(100).collect())
}

fn snippet(s: &str) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 80 {
        format!("{}...", one_line.chars().take(80).collect::<String>())
    } else {
        one_line
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
/// Any number of digits is read, saturating: no value can overflow.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.bytes().fold(0u64, |n, b| {
            n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        });
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests;
