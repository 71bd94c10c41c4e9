//! The direct transport: HTTP/1.1 straight to the endpoint over a pool of
//! kept-alive connections (hyper's connection API, rustls for HTTPS).
//!
//! A general-purpose client (redirects, proxies, cookies, decompression,
//! a URL re-parsed for every answer) costs about three times as much CPU
//! per request as the request itself; this one builds the few headers the
//! API needs and nothing else. It tells the same [`Attempt`]s apart:
//! a request that never left (no connection, or one that closed before a
//! byte was written) is `NotSent`; once written, a missing answer is `Lost`.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::attempt::{self, chain, AnswerHeaders, AnswerRules, Attempt, BodyError, MAX_ANSWER};
use super::{tls, ClientConfig, TransportError};

/// Connections idle longer than this are closed rather than reused: a
/// server may be closing them at that very moment.
const IDLE_LIMIT: Duration = Duration::from_secs(50);

/// Connections are tried at most this many times for one request when a
/// pooled one turns out closed before the request was written.
const STALE_RETRIES: usize = 3;

type Sender = SendRequest<Full<Bytes>>;

/// A connection: its sender, and whether the server's first bytes on it
/// were TLS (an http:// endpoint that is an HTTPS port).
struct Conn {
    sender: Sender,
    answered_tls: Arc<AtomicBool>,
}

pub struct Direct {
    /// Host and port to connect to.
    host: String,
    port: u16,
    /// For HTTPS: the connector and the name the certificate must carry.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    /// The request target (path and query) and the fixed headers.
    target: Uri,
    host_header: HeaderValue,
    auth: HeaderValue,
    user_agent: HeaderValue,
    connect_timeout: Duration,
    timeout: Duration,
    rules: AnswerRules,
    /// Idle connections, the most recently used last.
    idle: Mutex<Vec<(Conn, Instant)>>,
}

impl Direct {
    /// A transport to `cfg.endpoint`; `tls` is used for HTTPS.
    pub fn new(
        cfg: &ClientConfig,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Direct, TransportError> {
        let url = &cfg.endpoint;
        let bad = |what: &str| TransportError::Endpoint {
            endpoint: url.to_string(),
            what: what.to_string(),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(bad("no host")),
        };
        let port = url.port_or_known_default().ok_or_else(|| bad("no port"))?;
        let host_header = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(bad("no host")),
        };
        let target_text = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let target: Uri = target_text
            .parse()
            .map_err(|e| bad(&format!("not a request path ({e})")))?;
        let tls = match url.scheme() {
            "https" => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| bad(&format!("not a name a certificate can carry ({e})")))?;
                Some((tokio_rustls::TlsConnector::from(tls), name))
            }
            "http" => None,
            other => return Err(bad(&format!("the scheme {other} is not http or https"))),
        };
        Ok(Direct {
            host,
            port,
            tls,
            target,
            host_header: HeaderValue::from_str(&host_header).map_err(|_| bad("a bad host"))?,
            auth: cfg.credentials.header(),
            user_agent: HeaderValue::from_static(tls::USER_AGENT),
            connect_timeout: cfg.timeout.min(Duration::from_secs(10)),
            timeout: cfg.timeout,
            rules: cfg.answer_rules(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Posts one JSON body once.
    pub async fn post(&self, body: Bytes) -> Attempt {
        let deadline = Instant::now() + self.timeout;
        let mut request = Some(self.request(body));
        for _ in 0..STALE_RETRIES {
            let mut conn = match self.checkout(deadline).await {
                Ok(c) => c,
                Err(attempt) => return attempt,
            };
            let Some(req) = request.take() else { break };
            let sent = tokio::time::timeout_at(deadline, conn.sender.try_send_request(req)).await;
            let response = match sent {
                Err(_) => {
                    return Attempt::Lost(format!(
                        "no answer within the timeout after sending ({}s)",
                        self.timeout.as_secs_f64()
                    ))
                }
                Ok(Ok(response)) => response,
                Ok(Err(mut e)) => {
                    // Closed before a byte was written: try another connection.
                    if let Some(req) = e.take_message() {
                        request = Some(req);
                        continue;
                    }
                    if conn.answered_tls.load(Ordering::Relaxed) {
                        return attempt::tls_port(&self.target_words());
                    }
                    return attempt::from_hyper(&e.into_error());
                }
            };
            let http = response.status().as_u16();
            let headers = AnswerHeaders::from_map(response.headers());
            let capped = Limited::new(response.into_body(), MAX_ANSWER);
            let body = match tokio::time::timeout_at(deadline, capped.collect()).await {
                Ok(Ok(b)) => Ok(b.to_bytes()),
                Ok(Err(e)) if e.is::<LengthLimitError>() => Err(BodyError::TooLong),
                Ok(Err(e)) => Err(BodyError::Broken(chain(&*e))),
                Err(_) => Err(BodyError::Broken(
                    "no end of the body within the timeout".to_string(),
                )),
            };
            // A connection whose body was not read to its end is dropped.
            if body.is_ok() {
                self.checkin(conn);
            }
            return attempt::answered(http, &headers, body, &self.rules);
        }
        Attempt::NotSent("request not sent: every connection closed before it was written".into())
    }

    fn request(&self, body: Bytes) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.target.clone();
        let h = req.headers_mut();
        h.insert(HOST, self.host_header.clone());
        h.insert(AUTHORIZATION, self.auth.clone());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        h.insert(USER_AGENT, self.user_agent.clone());
        req
    }

    /// `host:port`, for messages.
    fn target_words(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// An idle connection that is still open, or a new one.
    async fn checkout(&self, deadline: Instant) -> Result<Conn, Attempt> {
        loop {
            let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match pooled {
                Some((c, since)) if !c.sender.is_closed() && since.elapsed() < IDLE_LIMIT => {
                    if c.sender.is_ready() {
                        return Ok(c);
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        let connect_by = deadline.min(Instant::now() + self.connect_timeout);
        match tokio::time::timeout_at(connect_by, self.connect()).await {
            Ok(result) => result,
            Err(_) => Err(Attempt::NotSent(format!(
                "could not connect: no connection within {}s",
                self.connect_timeout.as_secs_f64()
            ))),
        }
    }

    fn checkin(&self, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((conn, Instant::now()));
    }

    async fn connect(&self) -> Result<Conn, Attempt> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| Attempt::NotSent(format!("could not connect: {}", chain(&e))))?;
        let _ = tcp.set_nodelay(true);
        let answered_tls = Arc::new(AtomicBool::new(false));
        let sender = match &self.tls {
            None => {
                handshake(Sniff {
                    inner: tcp,
                    seen: false,
                    answered_tls: answered_tls.clone(),
                })
                .await?
            }
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| attempt::from_handshake(&e, &self.target_words()))?;
                handshake(stream).await?
            }
        };
        Ok(Conn {
            sender,
            answered_tls,
        })
    }
}

async fn handshake<S>(stream: S) -> Result<Sender, Attempt>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Attempt::NotSent(format!("could not connect: {}", chain(&e))))?;
    // The connection runs until either side closes it; its end is seen as
    // `is_closed` on the sender.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// A plain connection that notes whether the server's first bytes are a
/// TLS record.
struct Sniff {
    inner: TcpStream,
    seen: bool,
    answered_tls: Arc<AtomicBool>,
}

impl tokio::io::AsyncRead for Sniff {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if !self.seen && buf.filled().len() > before {
            self.seen = true;
            if attempt::looks_like_tls(&buf.filled()[before..]) {
                self.answered_tls.store(true, Ordering::Relaxed);
            }
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Sniff {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
