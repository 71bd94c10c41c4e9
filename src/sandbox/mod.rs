//! The sandbox: a local DigiDesk Post API that follows the spec as
//! `docs/digidesk-api.md` reads it, with injectable faults, usable as the
//! `sandbox` command and in-process from tests and `demo`.
//!
//! Each request goes through, in order: route and method, Basic auth, the
//! rate limit (429), the injected faults (close before acting, 500/503, 502
//! with an HTML page), the content type, the JSON body and its rules (422),
//! then creation (an id, the record), the "close after accepting" fault, the
//! latency, and the answer (JSON, or XML when `format=xml` is in the body or
//! the query).

mod answers;
mod bucket;
mod rules;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt, Limited};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use answers::{answer, error, gateway_timeout, html_502, with_retry_after, Answer};
use bucket::Bucket;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use rules::Rules;

/// Largest body the sandbox reads.
const MAX_BODY: usize = 1024 * 1024;

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
    /// How many requests the rate limit lets through at once [default: one
    /// second's worth].
    pub rate_limit_burst: Option<u32>,
    pub error_rate: f64,
    pub html_error_rate: f64,
    pub drop_before_rate: f64,
    pub drop_after_rate: f64,
    /// Share of requests created and recorded, then answered 504 as a
    /// gateway does when it gave up waiting for the service.
    pub gateway_timeout_rate: f64,
    /// Share of requests answered [`fault_status`](Self::fault_status)
    /// before anything is created.
    pub fault_status_rate: f64,
    pub fault_status: u16,
    /// The `Retry-After` sent with 429 and 503 answers (and the fault
    /// status) instead of the sandbox's own.
    pub retry_after: Option<String>,
    pub seed: Option<u64>,
    pub fast: bool,
    /// Keep every request in memory for [`Sandbox::accepted`] and
    /// [`Sandbox::requests`] (tests); the `sandbox` command, which may run
    /// for days, keeps only counts and writes `--record`.
    pub remember: bool,
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
            rate_limit_burst: None,
            error_rate: 0.0,
            html_error_rate: 0.0,
            drop_before_rate: 0.0,
            drop_after_rate: 0.0,
            gateway_timeout_rate: 0.0,
            fault_status_rate: 0.0,
            fault_status: 500,
            retry_after: None,
            seed: None,
            fast: false,
            remember: true,
        }
    }
}

impl SandboxConfig {
    /// Checks the fault shares and the rate.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("--error-rate", self.error_rate),
            ("--html-error-rate", self.html_error_rate),
            ("--drop-before-rate", self.drop_before_rate),
            ("--drop-after-rate", self.drop_after_rate),
            ("--gateway-timeout-rate", self.gateway_timeout_rate),
            ("--fault-status-rate", self.fault_status_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!(
                    "{name} is a share of requests between 0 and 1 (got {v})"
                ));
            }
        }
        if self.error_rate + self.html_error_rate + self.drop_before_rate + self.fault_status_rate
            > 1.0 + 1e-9
        {
            return Err(
                "--error-rate, --html-error-rate, --drop-before-rate and --fault-status-rate add up to more than 1"
                    .into(),
            );
        }
        if self.drop_after_rate + self.gateway_timeout_rate > 1.0 + 1e-9 {
            return Err(
                "--drop-after-rate and --gateway-timeout-rate add up to more than 1".into(),
            );
        }
        if !(100..=999).contains(&self.fault_status) {
            return Err(format!(
                "--fault-status must be an HTTP status between 100 and 999 (got {})",
                self.fault_status
            ));
        }
        if let Some(v) = &self.retry_after {
            if HeaderValue::from_str(v).is_err() {
                return Err(format!("--retry-after {v:?} is not a header value"));
            }
        }
        if let Some(r) = self.rate_limit {
            if !(r.is_finite() && r > 0.0) {
                return Err(format!(
                    "--rate-limit must be a positive number of requests per second (got {r})"
                ));
            }
        }
        match (self.rate_limit, self.rate_limit_burst) {
            (_, Some(0)) => return Err("--rate-limit-burst must be at least 1".into()),
            (None, Some(_)) => return Err("--rate-limit-burst needs --rate-limit".into()),
            _ => {}
        }
        Ok(())
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

/// One request as the sandbox saw it, accepted or not.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When it arrived, since the sandbox started.
    pub at: Duration,
    /// The status answered; `None` when the connection was closed instead.
    pub status: Option<u16>,
}

/// What every connection shares.
struct State {
    cfg: SandboxConfig,
    rules: Rules,
    /// `Basic base64(user:pass)`, compared whole.
    expected_auth: Mutex<String>,
    next_id: AtomicU64,
    accepted: Mutex<Vec<Accepted>>,
    accepted_count: tokio::sync::watch::Sender<usize>,
    seen: Mutex<Vec<Seen>>,
    started: Instant,
    rng: Mutex<rand::rngs::SmallRng>,
    bucket: Option<Bucket>,
    record: Option<Mutex<std::fs::File>>,
}

/// Closing the connection without an answer: hyper does that when the
/// service fails.
#[derive(Debug)]
struct HangUp;

impl std::fmt::Display for HangUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for HangUp {}

/// A running sandbox.
pub struct Sandbox {
    addr: SocketAddr,
    scheme: &'static str,
    ca_pem: Option<String>,
    state: Arc<State>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Sandbox {
    /// Binds and starts serving; returns once the socket is listening.
    pub async fn start(cfg: SandboxConfig) -> anyhow::Result<Sandbox> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let tls = if cfg.tls {
            Some(tls::generate()?)
        } else {
            None
        };
        let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
        if let (Some(path), Some(pem)) = (&cfg.cert_out, &ca_pem) {
            std::fs::write(path, pem)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
        let record = match &cfg.record {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| anyhow::anyhow!("cannot open --record {}: {e}", p.display()))?,
            )),
            None => None,
        };
        let seed = cfg.seed.unwrap_or_else(rand::random);
        let state = Arc::new(State {
            rules: Rules {
                campaigns: cfg.campaigns.clone(),
                allowed_params: cfg.allowed_params.clone(),
            },
            expected_auth: Mutex::new(basic(&cfg.username, &cfg.password)),
            next_id: AtomicU64::new(1),
            accepted: Mutex::new(Vec::new()),
            accepted_count: tokio::sync::watch::channel(0).0,
            seen: Mutex::new(Vec::new()),
            started: Instant::now(),
            rng: Mutex::new(rand::rngs::SmallRng::seed_from_u64(seed)),
            bucket: cfg.rate_limit.map(|r| Bucket::new(r, cfg.rate_limit_burst)),
            record,
            cfg,
        });
        let stop = CancellationToken::new();
        let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.server_config));
        let task = tokio::spawn(serve(listener, acceptor, state.clone(), stop.clone()));
        Ok(Sandbox {
            addr,
            scheme: if ca_pem.is_some() { "https" } else { "http" },
            ca_pem,
            state,
            stop,
            task,
        })
    }

    /// The endpoint URL to post to (`http(s)://127.0.0.1:PORT/api/survey_requests/`).
    pub fn endpoint(&self) -> String {
        let host = match self.addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        format!(
            "{}://{host}:{}{}",
            self.scheme,
            self.addr.port(),
            crate::spec::PATHS[0]
        )
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// With TLS, the certificate authority's certificate as PEM.
    pub fn ca_cert_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// Every request accepted so far, in id order.
    pub fn accepted(&self) -> Vec<Accepted> {
        let mut v = self
            .state
            .accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        v.sort_by_key(|a| a.id);
        v
    }

    /// Every request received so far, accepted or not, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        let mut v = self
            .state
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        v.sort_by_key(|s| s.at);
        v
    }

    /// Accepts other credentials from now on (a password changed mid-run).
    pub fn set_credentials(&self, username: &str, password: &str) {
        *self
            .state
            .expected_auth
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = basic(username, password);
    }

    /// Waits until at least `n` requests have been accepted.
    pub async fn wait_accepted(&self, n: usize) {
        let mut rx = self.state.accepted_count.subscribe();
        let _ = rx.wait_for(|c| *c >= n).await;
    }

    /// Stops serving and closes every connection.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The `Authorization` value for a username and password.
fn basic(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

async fn serve(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    stop: CancellationToken,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("sandbox: accept failed: {e}");
                    continue;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let http = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => {
                        let _ = http.serve_connection(TokioIo::new(tls), service).await;
                    }
                    Err(e) => tracing::debug!("sandbox: TLS handshake failed: {e}"),
                },
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Answers one request, or drops its connection.
async fn handle(state: Arc<State>, req: Request<hyper::body::Incoming>) -> Result<Answer, HangUp> {
    let arrived = state.started.elapsed();
    let xml_query = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.eq_ignore_ascii_case("format=xml")));
    let result = respond(&state, req, xml_query).await;
    let status = result.as_ref().ok().map(|r| r.status().as_u16());
    if state.cfg.remember {
        let seen = Seen {
            at: arrived,
            status,
        };
        state
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(seen);
    }
    result
}

async fn respond(
    state: &State,
    req: Request<hyper::body::Incoming>,
    xml_query: bool,
) -> Result<Answer, HangUp> {
    let cfg = &state.cfg;
    let path = req.uri().path().to_string();
    let mut xml = xml_query;
    if !crate::spec::PATHS.contains(&path.as_str()) {
        if crate::spec::PATHS
            .iter()
            .any(|p| p.trim_end_matches('/') == path)
        {
            // As the service's framework does: the same path with its slash.
            let mut r = error(
                StatusCode::MOVED_PERMANENTLY,
                &[format!("use {path}/")],
                xml,
            );
            if let Ok(v) = HeaderValue::from_str(&format!("{path}/")) {
                r.headers_mut().insert(LOCATION, v);
            }
            return Ok(r);
        }
        return Ok(error(
            StatusCode::NOT_FOUND,
            &[format!(
                "no resource at {path}; post survey requests to {}",
                crate::spec::PATHS[0]
            )],
            xml,
        ));
    }
    if req.method() != Method::POST {
        let mut r = error(
            StatusCode::METHOD_NOT_ALLOWED,
            &[format!("method {} is not allowed; use POST", req.method())],
            xml,
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return Ok(r);
    }
    let authorized = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            *v == *state
                .expected_auth
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        });
    if !authorized {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            &["authentication failed: wrong or missing username and password".into()],
            xml,
        );
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"DigiDesk\""),
        );
        return Ok(r);
    }
    if let Some(bucket) = &state.bucket {
        if let Err(wait) = bucket.take() {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                &["rate limit exceeded; slow down".into()],
                xml,
            );
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
            return Ok(with_retry_after(cfg, r));
        }
    }
    // The fault draws: one for what happens before acting, one for after
    // (none without faults: 1.0 never falls under a rate).
    let faults = cfg.drop_before_rate
        + cfg.error_rate
        + cfg.html_error_rate
        + cfg.fault_status_rate
        + cfg.drop_after_rate
        + cfg.gateway_timeout_rate;
    let (before, after, which) = if faults > 0.0 {
        let mut rng = state.rng.lock().unwrap_or_else(|p| p.into_inner());
        (
            rng.random::<f64>(),
            rng.random::<f64>(),
            rng.random::<bool>(),
        )
    } else {
        (1.0, 1.0, false)
    };
    let delay = latency(state);
    let mut threshold = cfg.drop_before_rate;
    if before < threshold {
        pause(delay).await;
        return Err(HangUp);
    }
    threshold += cfg.error_rate;
    if before < threshold {
        pause(delay).await;
        return Ok(if which {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &["internal server error".into()],
                xml,
            )
        } else {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                &["service temporarily unavailable".into()],
                xml,
            );
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            with_retry_after(cfg, r)
        });
    }
    threshold += cfg.html_error_rate;
    if before < threshold {
        pause(delay).await;
        return Ok(html_502());
    }
    threshold += cfg.fault_status_rate;
    if before < threshold {
        pause(delay).await;
        let status =
            StatusCode::from_u16(cfg.fault_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let r = error(
            status,
            &[format!("injected HTTP {}", cfg.fault_status)],
            xml,
        );
        return Ok(with_retry_after(cfg, r));
    }

    let json_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &[format!("the body is over {MAX_BODY} bytes")],
                xml,
            ))
        }
    };
    let id = if cfg.fast {
        state.next_id.fetch_add(1, Ordering::Relaxed)
    } else {
        if !json_type {
            return Ok(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &["Content-Type must be application/json".into()],
                xml,
            ));
        }
        let value: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return Ok(error(
                    StatusCode::BAD_REQUEST,
                    &[format!("the body is not valid JSON: {e}")],
                    xml,
                ))
            }
        };
        let Some(object) = value.as_object() else {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                &["the body must be a JSON object".into()],
                xml,
            ));
        };
        if let Some(Value::String(f)) = object.get(crate::spec::FORMAT) {
            xml = xml || f.eq_ignore_ascii_case("xml");
        }
        let problems = state.rules.check(object);
        if !problems.is_empty() {
            pause(delay).await;
            return Ok(error(StatusCode::UNPROCESSABLE_ENTITY, &problems, xml));
        }
        create(state, value)
    };
    pause(delay).await;
    if after < cfg.drop_after_rate {
        return Err(HangUp);
    }
    if after < cfg.drop_after_rate + cfg.gateway_timeout_rate {
        return Ok(gateway_timeout());
    }
    Ok(answer(StatusCode::CREATED, "success", Some(id), &[], xml))
}

/// Gives the request an id, records it, and returns the id.
fn create(state: &State, body: Value) -> u64 {
    // Ids and records are taken under one lock, so ids increase in record order.
    let mut accepted = state.accepted.lock().unwrap_or_else(|p| p.into_inner());
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let entry = Accepted {
        id,
        time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        body,
    };
    if let Some(file) = &state.record {
        use std::io::Write;
        let mut line = serde_json::to_vec(&entry).unwrap_or_default();
        line.push(b'\n');
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&line).and_then(|_| f.flush()) {
            tracing::warn!("sandbox: cannot append to --record: {e}");
        }
    }
    if state.cfg.remember {
        accepted.push(entry);
    }
    drop(accepted);
    state.accepted_count.send_modify(|n| *n += 1);
    id
}

/// Waits out the simulated latency; no timer at all when there is none.
async fn pause(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

fn latency(state: &State) -> Duration {
    let cfg = &state.cfg;
    let jitter = if cfg.jitter_ms > 0 {
        state
            .rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .random_range(0..=cfg.jitter_ms)
    } else {
        0
    };
    Duration::from_millis(cfg.latency_ms + jitter)
}
