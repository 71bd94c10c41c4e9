//! The sandbox: a local DigiDesk Post API that follows the spec as NOTES.md
//! reads it, with injectable faults, usable as the `sandbox` command and
//! in-process from tests and `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything the sandbox can be told.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub listen: SocketAddr,
    pub username: String,
    pub password: String,
    pub tls: bool,
    pub cert_out: Option<PathBuf>,
    pub record: Option<PathBuf>,
    pub campaigns: Option<Vec<String>>,
    pub allowed_params: Vec<String>,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    pub rate_limit: Option<f64>,
    pub error_rate: f64,
    pub html_error_rate: f64,
    pub drop_before_rate: f64,
    pub drop_after_rate: f64,
    pub seed: Option<u64>,
    pub fast: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            username: "demo".into(),
            password: "demo".into(),
            tls: false,
            cert_out: None,
            record: None,
            campaigns: None,
            allowed_params: Vec::new(),
            latency_ms: 0,
            jitter_ms: 0,
            rate_limit: None,
            error_rate: 0.0,
            html_error_rate: 0.0,
            drop_before_rate: 0.0,
            drop_after_rate: 0.0,
            seed: None,
            fast: false,
        }
    }
}

/// A request the sandbox accepted (created a survey request for).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Accepted {
    pub id: u64,
    /// RFC 3339 time of acceptance.
    pub time: String,
    pub body: serde_json::Value,
}

/// A running sandbox.
pub struct Sandbox {}

impl Sandbox {
    /// Binds and starts serving; returns once the socket is listening.
    pub async fn start(_cfg: SandboxConfig) -> anyhow::Result<Sandbox> {
        todo!("sandbox: start")
    }

    /// The endpoint URL to post to (`http(s)://127.0.0.1:PORT/api/survey_requests/`).
    pub fn endpoint(&self) -> String {
        todo!()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        todo!()
    }

    /// With TLS, the generated certificate as PEM.
    pub fn ca_cert_pem(&self) -> Option<String> {
        todo!()
    }

    /// Every request accepted so far, in id order.
    pub fn accepted(&self) -> Vec<Accepted> {
        todo!()
    }

    /// Stops serving and waits for connections to close.
    pub async fn shutdown(self) {
        todo!()
    }
}
