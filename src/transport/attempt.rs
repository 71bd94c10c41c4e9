//! The outcome of one try, and the sorting of a failed request into "never
//! left" (safe to send again), "may have arrived" (the row is `unknown`)
//! and "TLS" (stop): the decision that keeps a survey from being sent twice.
//! See `docs/design.md` for why each case falls where it does.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};

use crate::api::{self, ServerErrors, StopKind, Verdict};

/// The most of an answer's body that is read. DigiDesk's answers are a few
/// hundred bytes; past this the answer is not DigiDesk's, and the row is
/// `unknown`.
pub const MAX_ANSWER: usize = 64 * 1024;

/// The longest `Retry-After` the run waits out; a server asking for more
/// stops the run (it can be resumed later).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The outcome of one try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// DigiDesk (or something in front of it) answered.
    Answered {
        http: u16,
        verdict: Verdict,
        retry_after: Option<Duration>,
    },
    /// The request never left: connection refused, DNS, connect timeout.
    /// Safe to send again.
    NotSent(String),
    /// The request may have reached the server but no answer came: timeout
    /// waiting for the answer, connection closed after sending.
    Lost(String),
    /// The server's certificate is not trusted, or TLS failed: stop.
    Tls(String),
}

/// The headers of an answer the uploader reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerHeaders {
    pub retry_after: Option<String>,
    pub content_type: Option<String>,
    pub location: Option<String>,
}

/// How answers are read: the endpoint (a redirect's target is made
/// absolute against it) and what a 5xx means.
#[derive(Debug, Clone)]
pub struct AnswerRules {
    pub endpoint: url::Url,
    pub server_errors: ServerErrors,
}

/// Why an answer's body was not read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than [`MAX_ANSWER`].
    TooLong,
    /// It broke off, or did not end within the timeout.
    Broken(String),
}

impl AnswerHeaders {
    pub fn from_map(headers: &HeaderMap) -> AnswerHeaders {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        AnswerHeaders {
            retry_after: text(RETRY_AFTER),
            content_type: text(CONTENT_TYPE),
            location: text(LOCATION),
        }
    }
}

/// The attempt for an answer: its status, headers and body (or why the
/// body was not read whole).
pub fn answered(
    http: u16,
    headers: &AnswerHeaders,
    body: Result<Bytes, BodyError>,
    rules: &AnswerRules,
) -> Attempt {
    let body = match body {
        Ok(bytes) => api::read_body(headers.content_type.as_deref(), &bytes),
        Err(BodyError::TooLong) => {
            return Attempt::Answered {
                http,
                verdict: Verdict::Unknown(format!(
                    "HTTP {http} with an answer over {} KiB, far more than DigiDesk sends; it may have been created: check DigiDesk before resending",
                    MAX_ANSWER / 1024
                )),
                retry_after: None,
            }
        }
        // The status line came, the body did not: whatever the status
        // says happened, happened. A 2xx whose body is lost may have
        // created the survey, so it must not be counted as not sent.
        Err(BodyError::Broken(why)) => api::Body {
            unreadable: Some(format!("a body that broke off ({})", api::clean(&why))),
            ..api::Body::default()
        },
    };
    let location = headers
        .location
        .as_deref()
        .map(|to| match rules.endpoint.join(to) {
            Ok(url) => url.to_string(),
            Err(_) => api::clean(to),
        });
    let mut verdict = api::classify(http, &body, location.as_deref(), rules.server_errors);
    let raw_wait = headers.retry_after.as_deref();
    let retry_after = raw_wait.and_then(|v| api::parse_retry_after(v, SystemTime::now()));
    if let (Verdict::Transient(_), Some(wait)) = (&verdict, retry_after) {
        if wait > MAX_RETRY_AFTER {
            let raw: String = api::clean(raw_wait.unwrap_or_default())
                .chars()
                .take(40)
                .collect();
            verdict = Verdict::Stop(
                StopKind::Throttled,
                format!(
                    "DigiDesk answered HTTP {http} and asked to wait {} before trying again (Retry-After: {raw}), more than the hour the run waits at most; the rows not yet sent are left for later: continue with --resume",
                    humantime::format_duration(wait)
                ),
            );
        }
    }
    Attempt::Answered {
        http,
        verdict,
        retry_after,
    }
}

/// The attempt for a TLS failure: stop, and say how to trust a private CA.
pub fn tls_failed(words: &str) -> Attempt {
    Attempt::Tls(format!(
        "TLS failed: {words}. If the endpoint uses a private or corporate certificate authority, pass its certificate with --ca-cert FILE"
    ))
}

/// Sorts a failed reqwest request into "never left", "may have arrived"
/// and "TLS".
pub fn from_reqwest(e: &reqwest::Error) -> Attempt {
    let words = chain(e);
    if let Some(tls) = rustls_error(e) {
        if answered_in_plain_http(tls) {
            return plain_http_port(e.url().map(url_target).as_deref());
        }
        return tls_failed(&words);
    }
    if words.contains("invalid peer certificate") || words.contains("certificate") {
        return tls_failed(&words);
    }
    if e.is_connect() {
        return Attempt::NotSent(format!("could not connect: {words}"));
    }
    if e.is_builder() || e.is_request() && !e.is_timeout() && request_never_written(e) {
        return Attempt::NotSent(format!("request not sent: {words}"));
    }
    if e.is_timeout() {
        return Attempt::Lost(format!(
            "no answer within the timeout after sending ({words})"
        ));
    }
    Attempt::Lost(format!("the answer was lost after sending ({words})"))
}

/// Sorts a failed hyper request (the direct transport) whose request was
/// handed to the connection: cancelled means it was never written.
pub fn from_hyper(e: &hyper::Error) -> Attempt {
    if e.is_canceled() {
        return Attempt::NotSent(format!("request not sent: {}", chain(e)));
    }
    Attempt::Lost(format!("the answer was lost after sending ({})", chain(e)))
}

/// Sorts a failed TLS handshake with `target` (`host:port`): a rustls
/// error is TLS (stop); anything else (the connection reset or closed
/// mid-handshake) happened before the request was written.
pub fn from_handshake(e: &std::io::Error, target: &str) -> Attempt {
    let words = chain(e);
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) if answered_in_plain_http(tls) => plain_http_port(Some(target)),
        Some(_) => tls_failed(&words),
        None => Attempt::NotSent(format!("could not connect: TLS handshake: {words}")),
    }
}

/// An https:// endpoint whose port speaks plain HTTP: stop before any
/// request is written.
fn plain_http_port(target: Option<&str>) -> Attempt {
    Attempt::Tls(format!(
        "the endpoint{} answered the TLS handshake in plain HTTP: it is not an HTTPS port, so nothing was sent. Check the port in --endpoint (a local sandbox started without --tls is http://)",
        target.map(|t| format!(" {t}")).unwrap_or_default()
    ))
}

/// An http:// endpoint whose port speaks TLS: the server did not read the
/// request as HTTP, so nothing was created.
pub fn tls_port(target: &str) -> Attempt {
    Attempt::Tls(format!(
        "the endpoint {target} answered plain HTTP with TLS: it is an HTTPS port, and no survey request was created. Use https:// in --endpoint (with --ca-cert FILE for a private certificate)"
    ))
}

/// True when the first bytes of an answer are a TLS record (handshake or
/// alert), not HTTP.
pub fn looks_like_tls(first: &[u8]) -> bool {
    matches!(first, [0x15 | 0x16, 0x03, ..])
}

/// A TLS handshake answered with something that is not TLS at all (the
/// first byte is no TLS record type: an HTTP server's `HTTP/1.1 400`).
fn answered_in_plain_http(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
    )
}

/// `host:port` of a URL.
fn url_target(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

/// True when hyper says the request was cancelled before a byte was written
/// (it could not get a connection).
fn request_never_written(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            return h.is_canceled();
        }
        source = err.source();
    }
    false
}

/// The rustls error under a reqwest error, if TLS failed.
fn rustls_error(e: &reqwest::Error) -> Option<&rustls::Error> {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        source = err.source();
    }
    None
}

/// An error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

/// The stop an attempt calls for, if any.
pub fn stop_of(attempt: &Attempt) -> Option<(StopKind, String)> {
    match attempt {
        Attempt::Answered {
            verdict: Verdict::Stop(kind, msg),
            ..
        } => Some((*kind, msg.clone())),
        Attempt::Tls(msg) => Some((StopKind::Tls, msg.clone())),
        _ => None,
    }
}
