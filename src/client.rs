//! The HTTP client: one POST of one survey request, over rustls with
//! verified certificates and reused connections, turned into an [`Attempt`]
//! that says whether the request may have reached DigiDesk. The direct
//! transport is in [`crate::direct`].

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};

use crate::api::{self, StopKind, Verdict};
use crate::config::Credentials;
use crate::exit::Fatal;

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

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoint: url::Url,
    pub credentials: Credentials,
    pub timeout: Duration,
    /// Extra trusted roots, PEM.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Connections kept open per host.
    pub pool_size: usize,
}

/// A client bound to one endpoint and one set of credentials.
///
/// Requests go straight to the endpoint over a pool of HTTP/1.1 connections
/// (hyper, rustls). When a proxy is set in the environment (`HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY`, in either case), they go through reqwest,
/// which honours it and `NO_PROXY`. Both say the same [`Attempt`]s.
#[derive(Clone)]
pub struct Client {
    transport: Transport,
    endpoint: url::Url,
}

#[derive(Clone)]
enum Transport {
    Direct(std::sync::Arc<crate::direct::Direct>),
    Proxied(Proxied),
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The auth header is never printed.
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

/// The environment variables that name a proxy (reqwest's).
pub const PROXY_VARS: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether the environment names a proxy.
fn proxy_configured() -> bool {
    PROXY_VARS
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

impl Client {
    pub fn new(cfg: &ClientConfig) -> Result<Client, Fatal> {
        let transport = if proxy_configured() {
            tracing::debug!("a proxy is set in the environment: requests go through it");
            Transport::Proxied(Proxied::new(cfg)?)
        } else {
            Transport::Direct(std::sync::Arc::new(crate::direct::Direct::new(cfg)?))
        };
        Ok(Client {
            transport,
            endpoint: cfg.endpoint.clone(),
        })
    }

    /// Posts one JSON body once.
    pub async fn post(&self, body: Bytes) -> Attempt {
        match &self.transport {
            Transport::Direct(d) => d.post(body).await,
            Transport::Proxied(p) => p.post(body).await,
        }
    }
}

/// The reqwest transport, for endpoints reached through a proxy.
#[derive(Clone)]
struct Proxied {
    http: reqwest::Client,
    endpoint: url::Url,
    auth: HeaderValue,
}

impl Proxied {
    fn new(cfg: &ClientConfig) -> Result<Proxied, Fatal> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(cfg.endpoint.scheme() == "https")
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .timeout(cfg.timeout)
            .pool_max_idle_per_host(cfg.pool_size)
            .pool_idle_timeout(Duration::from_secs(50))
            .tcp_nodelay(true)
            .user_agent(concat!("digidesk-upload/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &cfg.ca_cert_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                Fatal::usage(format!(
                    "--ca-cert: not a PEM certificate ({e}); give the CA certificate in PEM form"
                ))
            })?;
            if certs.is_empty() {
                return Err(Fatal::usage(
                    "--ca-cert: the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Fatal::usage(format!("cannot set up the HTTP client: {}", chain(&e))))?;
        Ok(Proxied {
            http,
            endpoint: cfg.endpoint.clone(),
            auth: cfg.credentials.header(),
        })
    }

    /// Posts one JSON body once.
    async fn post(&self, body: Bytes) -> Attempt {
        let request = self
            .http
            .post(self.endpoint.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .body(body);
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return failed(&e),
        };
        let http = response.status().as_u16();
        let (retry_after, content_type) = answer_headers(response.headers());
        let bytes = response.bytes().await.map_err(|e| chain(&e));
        answered(http, retry_after.as_deref(), content_type.as_deref(), bytes)
    }
}

/// An answer's `Retry-After` and `Content-Type`, as text.
pub(crate) fn answer_headers(
    headers: &reqwest::header::HeaderMap,
) -> (Option<String>, Option<String>) {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    (text(RETRY_AFTER), text(CONTENT_TYPE))
}

/// The attempt for an answer: its status, `Retry-After`, content type and
/// body (or why the body broke off).
pub(crate) fn answered(
    http: u16,
    retry_after: Option<&str>,
    content_type: Option<&str>,
    body: Result<Bytes, String>,
) -> Attempt {
    let retry_after = retry_after.and_then(|v| api::parse_retry_after(v, SystemTime::now()));
    let body = match body {
        Ok(bytes) => api::read_body(content_type, &bytes),
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
pub(crate) fn tls_failed(words: &str) -> Attempt {
    Attempt::Tls(format!(
        "TLS failed: {words}. If the endpoint uses a private or corporate certificate authority, pass its certificate with --ca-cert FILE"
    ))
}

/// Sorts a failed request into "never left", "may have arrived" and "TLS".
fn failed(e: &reqwest::Error) -> Attempt {
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
