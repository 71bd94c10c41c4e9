//! The outcome of one try, and the sorting of a failed request into "never
//! left" (safe to send again), "may have arrived" (the row is `unknown`)
//! and "TLS" (stop): the decision that keeps a survey from being sent twice.
//! See `docs/design.md` for why each case falls where it does.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};

use crate::api::{self, StopKind, Verdict};

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
        }
    }
}

/// The attempt for an answer: its status, headers and body (or why the
/// body broke off).
pub fn answered(http: u16, headers: &AnswerHeaders, body: Result<Bytes, String>) -> Attempt {
    let retry_after = headers
        .retry_after
        .as_deref()
        .and_then(|v| api::parse_retry_after(v, SystemTime::now()));
    let body = match body {
        Ok(bytes) => api::read_body(headers.content_type.as_deref(), &bytes),
        // The status line came, the body did not: whatever the status
        // says happened, happened. A 2xx whose body is lost may have
        // created the survey, so it must not be counted as not sent.
        Err(why) => api::Body {
            unreadable: Some(format!("a body that broke off ({why})")),
            ..api::Body::default()
        },
    };
    Attempt::Answered {
        http,
        verdict: api::classify(http, &body),
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
    if is_tls_failure(e) {
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

/// Sorts a failed TLS handshake: a rustls error is TLS (stop); anything
/// else (the connection reset or closed mid-handshake) happened before the
/// request was written.
pub fn from_handshake(e: &std::io::Error) -> Attempt {
    let words = chain(e);
    let is_tls = e
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    if is_tls {
        tls_failed(&words)
    } else {
        Attempt::NotSent(format!("could not connect: TLS handshake: {words}"))
    }
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

fn is_tls_failure(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return true;
            }
        }
        source = err.source();
    }
    let text = chain(e);
    text.contains("invalid peer certificate") || text.contains("certificate")
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
