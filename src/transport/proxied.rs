//! The proxied transport: reqwest, for endpoints reached through a proxy
//! the environment names. It tells the same [`Attempt`]s apart as the
//! direct one.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};

use super::attempt::{self, chain, AnswerHeaders, Attempt};
use super::{tls, ClientConfig, TransportError};

/// Requests through a proxy.
#[derive(Clone)]
pub struct Proxied {
    http: reqwest::Client,
    endpoint: url::Url,
    auth: HeaderValue,
}

impl Proxied {
    /// A transport to `cfg.endpoint` through the environment's proxy; `tls`
    /// is the one TLS set-up of both transports.
    pub fn new(cfg: &ClientConfig, tls: &rustls::ClientConfig) -> Result<Proxied, TransportError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .https_only(cfg.endpoint.scheme() == "https")
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .timeout(cfg.timeout)
            .pool_max_idle_per_host(cfg.pool_size)
            .pool_idle_timeout(Duration::from_secs(50))
            .tcp_nodelay(true)
            .user_agent(tls::USER_AGENT)
            .build()
            .map_err(|source| TransportError::Http { source })?;
        Ok(Proxied {
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
            Err(e) => return attempt::from_reqwest(&e),
        };
        let http = response.status().as_u16();
        let headers = AnswerHeaders::from_map(response.headers());
        let bytes = response.bytes().await.map_err(|e| chain(&e));
        attempt::answered(http, &headers, bytes)
    }
}
