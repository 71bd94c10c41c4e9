//! What can go wrong while setting up the transport, before any request.

use std::path::PathBuf;

/// A transport that cannot be set up: nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot read --ca-cert {}: {source}", path.display())]
    CaCertRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--ca-cert: not a PEM certificate ({source}); give the CA certificate in PEM form")]
    CaCertPem { source: std::io::Error },
    #[error("--ca-cert: the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    CaCertEmpty,
    #[error("--ca-cert: a certificate rustls cannot use as a root ({source})")]
    CaCertRoot { source: rustls::Error },
    #[error("cannot set up TLS: {source}")]
    Tls { source: rustls::Error },
    #[error("--endpoint {endpoint}: {what}")]
    Endpoint { endpoint: String, what: String },
    #[error("cannot set up the HTTP client: {}", super::chain(source))]
    Http { source: reqwest::Error },
    #[error("the proxy {proxy} cannot be used: {}", super::chain(source))]
    Proxy {
        proxy: String,
        source: reqwest::Error,
    },
    #[error(
        "--endpoint {endpoint} uses plain http://, and the proxy set in the environment ({proxy}) is not on this machine: the password would cross the network unencrypted. Use https://, or set NO_PROXY to reach a local endpoint directly"
    )]
    PlainHttpThroughProxy { endpoint: String, proxy: String },
    #[error("credentials missing: set {missing} in the environment, or pass --credentials FILE with `username=...` and `password=...` lines")]
    CredentialsMissing { missing: String },
    #[error("cannot read the credentials file {}: {source}", path.display())]
    CredentialsRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {what}", path.display())]
    CredentialsLine {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("the credentials file {} needs both `username=...` and `password=...`", path.display())]
    CredentialsIncomplete { path: PathBuf },
}
