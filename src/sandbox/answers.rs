//! The sandbox's answers: DigiDesk's JSON or XML, and a proxy's HTML page.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

pub type Answer = Response<Full<Bytes>>;

pub fn error(status: StatusCode, messages: &[String], xml: bool) -> Answer {
    answer(status, "error", None, messages, xml)
}

/// A DigiDesk answer: `{"status","data","message"}` in JSON, or the same in XML.
pub fn answer(
    status: StatusCode,
    word: &str,
    id: Option<u64>,
    messages: &[String],
    xml: bool,
) -> Answer {
    let (body, content_type) = if xml {
        let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
        let data = id
            .map(|i| format!("<data>{i}</data>"))
            .unwrap_or_else(|| "<data/>".into());
        let message = if messages.is_empty() {
            "<message/>".to_string()
        } else {
            let items: String = messages
                .iter()
                .map(|m| format!("<item>{}</item>", esc(m)))
                .collect();
            format!("<message>{items}</message>")
        };
        (
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response><status>{word}</status>{data}{message}</response>\n"),
            "application/xml",
        )
    } else {
        let message = if messages.is_empty() {
            Value::Null
        } else {
            json!(messages)
        };
        (
            json!({"status": word, "data": id, "message": message}).to_string(),
            "application/json",
        )
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// What a proxy in front of the service sends when the service is down.
pub fn html_502() -> Answer {
    let body = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

/// The configured `Retry-After`, if any, in place of the answer's own.
pub fn with_retry_after(cfg: &super::SandboxConfig, mut r: Answer) -> Answer {
    if let Some(v) = cfg.retry_after.as_deref() {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    r
}

/// What a gateway sends when the service took too long: the survey
/// request may well have been created behind it.
pub fn gateway_timeout() -> Answer {
    let body = "<html><head><title>504 Gateway Time-out</title></head><body><h1>504 Gateway Time-out</h1></body></html>\r\n";
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}
