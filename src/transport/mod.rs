//! The transport: one POST of one survey request to the endpoint, turned
//! into an [`Attempt`] that says whether the request may have reached
//! DigiDesk.
//!
//! - [`Client`]: bound to one endpoint and one set of credentials.
//! - [`Transport`]: how requests travel: [`direct`] (hyper over a pool of
//!   kept-alive connections), [`proxied`] (reqwest, through the proxy the
//!   environment names), or scripted (a closure, for tests).
//! - [`attempt`]: the outcome of a try and the sorting of failures.
//! - [`tls`]: the one rustls set-up, `--ca-cert` reader and User-Agent.
//! - [`credentials`]: HTTP Basic credentials.

pub mod attempt;
pub mod credentials;
pub mod direct;
mod error;
pub mod proxied;
pub mod route;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use attempt::{chain, stop_of, Attempt};
pub use credentials::Credentials;
pub use error::TransportError;
pub use route::{route, Route, PROXY_VARS};

use crate::api::ServerErrors;

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoint: url::Url,
    pub credentials: Credentials,
    pub timeout: Duration,
    /// Extra trusted roots, PEM (from [`tls::read_ca_cert`]).
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Connections kept open per host.
    pub pool_size: usize,
    /// Retry 500, 502, 504 and other 5xx like a 503 (`--retry-server-errors`).
    pub retry_server_errors: bool,
}

impl ClientConfig {
    /// How answers to this client are read.
    fn answer_rules(&self) -> attempt::AnswerRules {
        attempt::AnswerRules {
            endpoint: self.endpoint.clone(),
            server_errors: if self.retry_server_errors {
                ServerErrors::Retry
            } else {
                ServerErrors::Unknown
            },
        }
    }
}

/// A client bound to one endpoint and one set of credentials.
#[derive(Clone)]
pub struct Client {
    transport: Transport,
    endpoint: url::Url,
}

/// The answer a scripted transport gives to each try: the try's number
/// (from 1, over the whole client) and the body.
pub type Script = dyn Fn(u64, &Bytes) -> Attempt + Send + Sync;

/// How requests travel.
#[derive(Clone)]
pub enum Transport {
    /// Straight to the endpoint (hyper, rustls).
    Direct(Arc<direct::Direct>),
    /// Through the proxy the environment names (reqwest).
    Proxied(Arc<proxied::Proxied>),
    /// No network: each try's attempt comes from a closure (tests).
    Scripted(Arc<Scripted>),
}

/// A transport that answers from a script.
pub struct Scripted {
    script: Box<Script>,
    tries: std::sync::atomic::AtomicU64,
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
    /// A client over the network: through a proxy when the environment
    /// names one for the endpoint, straight to the endpoint otherwise.
    pub fn new(cfg: &ClientConfig) -> Result<Client, TransportError> {
        let tls = Arc::new(tls::client_config(cfg.ca_cert_pem.as_deref())?);
        let transport = match route(&cfg.endpoint)? {
            Route::Proxy(proxy) => {
                tracing::debug!(proxy = %proxy.url, "requests go through the proxy set in the environment");
                Transport::Proxied(Arc::new(proxied::Proxied::new(cfg, &tls, &proxy)?))
            }
            Route::Direct => Transport::Direct(Arc::new(direct::Direct::new(cfg, tls)?)),
        };
        Ok(Client {
            transport,
            endpoint: cfg.endpoint.clone(),
        })
    }

    /// A client whose every try is answered by `script` (given the try's
    /// number, from 1, and the body), with no network: tests drive the
    /// pipeline with it through any sequence of failures.
    pub fn scripted(
        endpoint: url::Url,
        script: impl Fn(u64, &Bytes) -> Attempt + Send + Sync + 'static,
    ) -> Client {
        Client {
            transport: Transport::Scripted(Arc::new(Scripted {
                script: Box::new(script),
                tries: std::sync::atomic::AtomicU64::new(0),
            })),
            endpoint,
        }
    }

    /// How requests travel.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Posts one JSON body once.
    pub async fn post(&self, body: Bytes) -> Attempt {
        match &self.transport {
            Transport::Direct(d) => d.post(body).await,
            Transport::Proxied(p) => p.post(body).await,
            Transport::Scripted(s) => {
                let n = s.tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                (s.script)(n, &body)
            }
        }
    }
}

#[cfg(test)]
mod tests;
