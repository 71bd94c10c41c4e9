//! The HTTP client: one POST of one survey request, over rustls with
//! verified certificates and reused connections, turned into an [`Attempt`]
//! that says whether the request may have reached DigiDesk.

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
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: url::Url,
    auth: HeaderValue,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The auth header is never printed.
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(cfg: &ClientConfig) -> Result<Client, Fatal> {
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
        Ok(Client {
            http,
            endpoint: cfg.endpoint.clone(),
            auth: cfg.credentials.header(),
        })
    }

    /// Posts one JSON body once.
    pub async fn post(&self, body: Bytes) -> Attempt {
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
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| api::parse_retry_after(v, SystemTime::now()));
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = match response.bytes().await {
            Ok(b) => b,
            // The status line came, the body did not: whatever the status
            // says happened, happened. A 2xx whose body is lost may have
            // created the survey, so it must not be counted as not sent.
            Err(e) => {
                let body = api::Body {
                    unreadable: Some(format!("a body that broke off ({})", chain(&e))),
                    ..api::Body::default()
                };
                let verdict = api::classify(http, &body);
                return Attempt::Answered {
                    http,
                    verdict,
                    retry_after,
                };
            }
        };
        let body = api::read_body(content_type.as_deref(), &bytes);
        Attempt::Answered {
            http,
            verdict: api::classify(http, &body),
            retry_after,
        }
    }
}

/// Sorts a failed request into "never left", "may have arrived" and "TLS".
fn failed(e: &reqwest::Error) -> Attempt {
    let words = chain(e);
    if is_tls_failure(e) {
        return Attempt::Tls(format!(
            "TLS failed: {words}. If the endpoint uses a private or corporate certificate authority, pass its certificate with --ca-cert FILE"
        ));
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
