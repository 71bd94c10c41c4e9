//! The proxied transport: reqwest, for endpoints reached through a proxy
//! the environment names. It tells the same [`Attempt`]s apart as the
//! direct one.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};

use super::attempt::{self, chain, AnswerHeaders, AnswerRules, Attempt, BodyError, MAX_ANSWER};
use super::{route, tls, ClientConfig, TransportError};

/// Requests through a proxy.
#[derive(Clone)]
pub struct Proxied {
    http: reqwest::Client,
    endpoint: url::Url,
    auth: HeaderValue,
    rules: AnswerRules,
}

impl Proxied {
    /// A transport to `cfg.endpoint` through `proxy`; `tls` is the one TLS
    /// set-up of both transports.
    pub fn new(
        cfg: &ClientConfig,
        tls: &rustls::ClientConfig,
        proxy: &route::Proxy,
    ) -> Result<Proxied, TransportError> {
        let proxy_error = |source| TransportError::Proxy {
            proxy: proxy.url.clone(),
            source,
        };
        let mut through = reqwest::Proxy::all(&proxy.url).map_err(proxy_error)?;
        if let Some(auth) = &proxy.auth {
            through = through.custom_http_auth(auth.clone());
        }
        let http = reqwest::Client::builder()
            .proxy(through)
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
            rules: cfg.answer_rules(),
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
        let body = read_capped(response).await;
        attempt::answered(http, &headers, body, &self.rules)
    }
}

/// The body, up to [`MAX_ANSWER`] bytes.
async fn read_capped(mut response: reqwest::Response) -> Result<Bytes, BodyError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER as u64)
    {
        return Err(BodyError::TooLong);
    }
    let mut body = bytes::BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > MAX_ANSWER => {
                return Err(BodyError::TooLong)
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return Ok(body.freeze()),
            Err(e) => return Err(BodyError::Broken(chain(&e))),
        }
    }
}
