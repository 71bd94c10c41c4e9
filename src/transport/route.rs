//! Which way requests go: straight to the endpoint, or through the proxy
//! the environment names (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, in
//! either case, less `NO_PROXY`, as curl reads them). Plain http is allowed
//! only when the connection itself stays on this machine.

use std::net::IpAddr;

use hyper_util::client::proxy::matcher::Matcher;
use reqwest::header::HeaderValue;

use super::TransportError;

/// The environment variables that name a proxy.
pub const PROXY_VARS: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The way to the endpoint.
#[derive(Debug, Clone)]
pub enum Route {
    Direct,
    Proxy(Proxy),
}

/// A proxy to go through.
#[derive(Clone)]
pub struct Proxy {
    /// The proxy's URL, without credentials.
    pub url: String,
    /// `Proxy-Authorization` from the credentials in the variable.
    pub auth: Option<HeaderValue>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The proxy's credentials are never printed.
        f.debug_struct("Proxy").field("url", &self.url).finish()
    }
}

/// The way to `endpoint` from the environment's proxy variables. An
/// `http://` endpoint through a proxy that is not on this machine is
/// refused: the credentials would cross the network in clear.
pub fn route(endpoint: &url::Url) -> Result<Route, TransportError> {
    let no_proxy = ["NO_PROXY", "no_proxy"]
        .iter()
        .find_map(|v| std::env::var(v).ok())
        .unwrap_or_default();
    // `*` means no proxy for any host, names and addresses alike.
    if no_proxy.split(',').any(|entry| entry.trim() == "*") {
        return Ok(Route::Direct);
    }
    let Ok(uri) = endpoint.as_str().parse::<hyper::Uri>() else {
        return Ok(Route::Direct);
    };
    let Some(intercept) = Matcher::from_env().intercept(&uri) else {
        return Ok(Route::Direct);
    };
    let proxy_uri = intercept.uri();
    let url = format!(
        "{}://{}",
        proxy_uri.scheme_str().unwrap_or("http"),
        proxy_uri
            .authority()
            .map(|a| a.as_str().rsplit('@').next().unwrap_or_default())
            .unwrap_or_default()
    );
    if endpoint.scheme() == "http" && !proxy_uri.host().is_some_and(is_loopback) {
        return Err(TransportError::PlainHttpThroughProxy {
            endpoint: endpoint.to_string(),
            proxy: url,
        });
    }
    Ok(Route::Proxy(Proxy {
        url,
        auth: intercept.basic_auth().cloned(),
    }))
}

/// A host name or address that is this machine.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_addresses() {
        for h in ["localhost", "127.0.0.1", "127.8.9.10", "[::1]", "::1"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "10.0.0.1",
            "proxy.example.com",
            "localhost.example.com",
            "[::2]",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
