//! The sorting of every failure, against tiny servers on loopback that
//! fail on purpose: each asserts the exact [`Attempt`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::api::{StopKind, Verdict};

const BODY: &[u8] = br#"{"customer_contact":"+447400100001","campaign_name":"x"}"#;

fn config(endpoint: &str, timeout: Duration) -> ClientConfig {
    ClientConfig {
        endpoint: url::Url::parse(endpoint).unwrap(),
        credentials: Credentials::new("demo", "demo"),
        timeout,
        ca_cert_pem: None,
        pool_size: 4,
        retry_server_errors: false,
    }
}

/// A direct client to `endpoint`, trusting `ca_pem` too.
fn direct(endpoint: &str, timeout: Duration, ca_pem: Option<&str>) -> Client {
    let mut cfg = config(endpoint, timeout);
    cfg.ca_cert_pem = ca_pem.map(|p| p.as_bytes().to_vec());
    let tls = Arc::new(tls::client_config(cfg.ca_cert_pem.as_deref()).unwrap());
    Client {
        transport: Transport::Direct(Arc::new(direct::Direct::new(&cfg, tls).unwrap())),
        endpoint: cfg.endpoint,
    }
}

/// A listener on a free loopback port and its `scheme://` endpoint.
async fn listen(scheme: &str) -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (
        l,
        format!("{scheme}://127.0.0.1:{port}/api/survey_requests/"),
    )
}

/// Reads one whole request (head and `Content-Length` body) off a stream.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the client closed before its request was whole");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return buf;
            }
        }
    }
}

/// Answers one connection with `respond` once its request is read.
fn serve_one<F, Fut>(listener: TcpListener, respond: F) -> tokio::task::JoinHandle<Vec<u8>>
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let request = read_request(&mut s).await;
        respond(s).await;
        request
    })
}

/// A certificate for 127.0.0.1 and a TLS acceptor serving it.
fn tls_server() -> (String, tokio_rustls::TlsAcceptor) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    (
        ck.cert.pem(),
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    )
}

const CREATED: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 47\r\n\r\n{\"status\":\"success\",\"data\":1234,\"message\":null}";

#[tokio::test]
async fn an_answer_is_answered() {
    let (l, endpoint) = listen("http").await;
    let server = serve_one(l, |mut s| async move {
        s.write_all(CREATED).await.unwrap();
    });
    let a = direct(&endpoint, Duration::from_secs(5), None)
        .post(Bytes::from_static(BODY))
        .await;
    assert_eq!(
        a,
        Attempt::Answered {
            http: 201,
            verdict: Verdict::Created(1234),
            retry_after: None
        }
    );
    let request = String::from_utf8(server.await.unwrap()).unwrap();
    assert!(request.starts_with("POST /api/survey_requests/ HTTP/1.1\r\n"));
    assert!(request.contains(&format!("user-agent: {}", tls::USER_AGENT)));
}

#[tokio::test]
async fn a_refused_connection_was_never_sent() {
    let (l, endpoint) = listen("http").await;
    drop(l);
    let a = direct(&endpoint, Duration::from_secs(5), None)
        .post(Bytes::from_static(BODY))
        .await;
    assert!(
        matches!(&a, Attempt::NotSent(w) if w.starts_with("could not connect")),
        "{a:?}"
    );
}

#[tokio::test]
async fn a_reset_before_the_request_was_written_was_never_sent() {
    // Over HTTPS the request is written only after the handshake: a server
    // that resets on the client's first bytes never saw the request.
    let (l, endpoint) = listen("https").await;
    let (ca, _) = tls_server();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut hello = [0u8; 5];
        s.read_exact(&mut hello).await.unwrap();
        s.set_zero_linger().unwrap();
        drop(s);
        hello
    });
    let a = direct(&endpoint, Duration::from_secs(5), Some(&ca))
        .post(Bytes::from_static(BODY))
        .await;
    assert!(
        matches!(&a, Attempt::NotSent(w) if w.contains("TLS handshake")),
        "{a:?}"
    );
    assert_eq!(
        server.await.unwrap()[0],
        0x16,
        "a TLS handshake record came"
    );
}

#[tokio::test]
async fn a_reset_after_the_request_was_written_may_have_arrived() {
    let (l, endpoint) = listen("http").await;
    let server = serve_one(l, |s| async move {
        s.set_zero_linger().unwrap();
        drop(s);
    });
    let a = direct(&endpoint, Duration::from_secs(5), None)
        .post(Bytes::from_static(BODY))
        .await;
    assert!(
        matches!(&a, Attempt::Lost(w) if w.contains("lost after sending")),
        "{a:?}"
    );
    assert!(server.await.unwrap().ends_with(BODY), "the request arrived");
}

#[tokio::test]
async fn a_timeout_after_the_request_was_written_may_have_arrived() {
    let (l, endpoint) = listen("http").await;
    let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
    let server = serve_one(l, |s| async move {
        // No answer until the test is over.
        let _ = hold_rx.await;
        drop(s);
    });
    let a = direct(&endpoint, Duration::from_millis(300), None)
        .post(Bytes::from_static(BODY))
        .await;
    assert!(
        matches!(&a, Attempt::Lost(w) if w.contains("no answer within the timeout")),
        "{a:?}"
    );
    drop(hold_tx);
    assert!(server.await.unwrap().ends_with(BODY));
}

#[tokio::test]
async fn an_untrusted_certificate_is_tls() {
    let (l, endpoint) = listen("https").await;
    let (_, acceptor) = tls_server();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let _ = acceptor.accept(s).await;
    });
    let a = direct(&endpoint, Duration::from_secs(5), None)
        .post(Bytes::from_static(BODY))
        .await;
    assert!(
        matches!(&a, Attempt::Tls(w) if w.contains("--ca-cert")),
        "{a:?}"
    );
}

#[tokio::test]
async fn a_trusted_certificate_is_answered() {
    let (l, endpoint) = listen("https").await;
    let (ca, acceptor) = tls_server();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut s = acceptor.accept(s).await.unwrap();
        read_request(&mut s).await;
        s.write_all(CREATED).await.unwrap();
        s.flush().await.unwrap();
    });
    let a = direct(&endpoint, Duration::from_secs(5), Some(&ca))
        .post(Bytes::from_static(BODY))
        .await;
    assert!(
        matches!(
            &a,
            Attempt::Answered {
                verdict: Verdict::Created(1234),
                ..
            }
        ),
        "{a:?}"
    );
}

#[tokio::test]
async fn an_answer_that_is_not_http_may_have_arrived() {
    let (l, endpoint) = listen("http").await;
    let server = serve_one(l, |mut s| async move {
        s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await.unwrap();
    });
    let a = direct(&endpoint, Duration::from_secs(5), None)
        .post(Bytes::from_static(BODY))
        .await;
    assert!(matches!(&a, Attempt::Lost(_)), "{a:?}");
    assert!(server.await.unwrap().ends_with(BODY));
}

#[tokio::test]
async fn a_scripted_transport_answers_each_try_from_its_script() {
    let client = Client::scripted(
        url::Url::parse("https://digidesk.invalid/api/survey_requests/").unwrap(),
        |n, body| {
            assert_eq!(&body[..], BODY);
            match n {
                1 => Attempt::NotSent("refused".into()),
                2 => Attempt::Lost("reset".into()),
                _ => Attempt::Tls("untrusted".into()),
            }
        },
    );
    let body = Bytes::from_static(BODY);
    assert_eq!(
        client.post(body.clone()).await,
        Attempt::NotSent("refused".into())
    );
    assert_eq!(
        client.post(body.clone()).await,
        Attempt::Lost("reset".into())
    );
    assert_eq!(client.post(body).await, Attempt::Tls("untrusted".into()));
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_the_cap_and_unknown() {
    let (l, endpoint) = listen("http").await;
    let server = serve_one(l, |mut s| async move {
        s.write_all(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 4096, "a".repeat(4096));
        let mut sent = 0usize;
        // Until the client hangs up.
        while s.write_all(chunk.as_bytes()).await.is_ok() {
            sent += 4096;
            assert!(sent < 64 << 20, "the client kept reading past the cap");
        }
    });
    let a = direct(&endpoint, Duration::from_secs(30), None)
        .post(Bytes::from_static(BODY))
        .await;
    assert!(
        matches!(&a, Attempt::Answered { http: 201, verdict: Verdict::Unknown(w), .. } if w.contains("over 64 KiB")),
        "{a:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_retry_after_over_an_hour_stops_and_never_overflows() {
    for wait in ["3601", "18446744073709551615", "999999999999999999999999"] {
        let (l, endpoint) = listen("http").await;
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {wait}\r\nContent-Length: 0\r\n\r\n"
        );
        serve_one(l, |mut s| async move {
            s.write_all(answer.as_bytes()).await.unwrap();
        });
        let a = direct(&endpoint, Duration::from_secs(5), None)
            .post(Bytes::from_static(BODY))
            .await;
        assert!(
            matches!(&a, Attempt::Answered { http: 503, verdict: Verdict::Stop(StopKind::Throttled, w), .. } if w.contains("--resume")),
            "{wait}: {a:?}"
        );
    }
}

#[tokio::test]
async fn http_to_a_tls_port_is_recognised() {
    let (l, endpoint) = listen("http").await;
    let (_, acceptor) = tls_server();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let _ = acceptor.accept(s).await;
    });
    let a = direct(&endpoint, Duration::from_secs(5), None)
        .post(Bytes::from_static(BODY))
        .await;
    assert!(
        matches!(&a, Attempt::Tls(w) if w.contains("Use https://")),
        "{a:?}"
    );
}

#[tokio::test]
async fn https_to_a_plain_http_port_is_recognised() {
    let (l, endpoint) = listen("https").await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut hello = [0u8; 5];
        s.read_exact(&mut hello).await.unwrap();
        let _ = s
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
    });
    let a = direct(&endpoint, Duration::from_secs(5), None)
        .post(Bytes::from_static(BODY))
        .await;
    assert!(
        matches!(&a, Attempt::Tls(w) if w.contains("not an HTTPS port")),
        "{a:?}"
    );
}

/// A client through `proxy` (an `http://host:port` URL).
fn proxied(endpoint: &str, proxy: &str, timeout: Duration) -> Client {
    let cfg = config(endpoint, timeout);
    let tls = tls::client_config(None).unwrap();
    let proxy = route::Proxy {
        url: proxy.to_string(),
        auth: None,
    };
    Client {
        transport: Transport::Proxied(Arc::new(proxied::Proxied::new(&cfg, &tls, &proxy).unwrap())),
        endpoint: cfg.endpoint,
    }
}

#[tokio::test]
async fn through_a_proxy_that_answers_the_request_is_answered() {
    let (l, proxy) = listen("http").await;
    let server = serve_one(l, |mut s| async move {
        s.write_all(CREATED).await.unwrap();
    });
    let endpoint = "http://127.0.0.1:9/api/survey_requests/";
    let a = proxied(
        endpoint,
        &proxy.replace("/api/survey_requests/", ""),
        Duration::from_secs(5),
    )
    .post(Bytes::from_static(BODY))
    .await;
    assert!(
        matches!(
            &a,
            Attempt::Answered {
                verdict: Verdict::Created(1234),
                ..
            }
        ),
        "{a:?}"
    );
    let request = String::from_utf8(server.await.unwrap()).unwrap();
    assert!(
        request.starts_with(&format!("POST {endpoint} HTTP/1.1")),
        "the proxy is asked for the endpoint: {request}"
    );
}

#[tokio::test]
async fn through_a_refused_proxy_nothing_was_sent() {
    let (l, proxy) = listen("http").await;
    drop(l);
    let a = proxied(
        "http://127.0.0.1:9/api/survey_requests/",
        &proxy.replace("/api/survey_requests/", ""),
        Duration::from_secs(5),
    )
    .post(Bytes::from_static(BODY))
    .await;
    assert!(matches!(&a, Attempt::NotSent(_)), "{a:?}");
}

#[tokio::test]
async fn through_a_proxy_that_resets_after_the_request_it_may_have_arrived() {
    let (l, proxy) = listen("http").await;
    let server = serve_one(l, |s| async move {
        s.set_zero_linger().unwrap();
        drop(s);
    });
    let a = proxied(
        "http://127.0.0.1:9/api/survey_requests/",
        &proxy.replace("/api/survey_requests/", ""),
        Duration::from_secs(5),
    )
    .post(Bytes::from_static(BODY))
    .await;
    assert!(matches!(&a, Attempt::Lost(_)), "{a:?}");
    assert!(server.await.unwrap().ends_with(BODY));
}

#[tokio::test]
async fn through_a_proxy_a_reset_on_connect_was_never_sent() {
    // For an https:// endpoint the request goes inside a tunnel: a proxy
    // that resets on CONNECT never saw it.
    let (l, proxy) = listen("http").await;
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut head = [0u8; 8];
        s.read_exact(&mut head).await.unwrap();
        s.set_zero_linger().unwrap();
        drop(s);
        head
    });
    let a = proxied(
        "https://digidesk.invalid/api/survey_requests/",
        &proxy.replace("/api/survey_requests/", ""),
        Duration::from_secs(5),
    )
    .post(Bytes::from_static(BODY))
    .await;
    assert!(matches!(&a, Attempt::NotSent(_)), "{a:?}");
    assert_eq!(&server.await.unwrap(), b"CONNECT ");
}

#[tokio::test]
async fn through_a_proxy_an_endless_answer_is_cut_at_the_cap_too() {
    let (l, proxy) = listen("http").await;
    serve_one(l, |mut s| async move {
        s.write_all(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 4096, "a".repeat(4096));
        let mut sent = 0usize;
        while s.write_all(chunk.as_bytes()).await.is_ok() {
            sent += 4096;
            assert!(sent < 64 << 20, "the client kept reading past the cap");
        }
    });
    let a = proxied(
        "http://127.0.0.1:9/api/survey_requests/",
        &proxy.replace("/api/survey_requests/", ""),
        Duration::from_secs(30),
    )
    .post(Bytes::from_static(BODY))
    .await;
    assert!(
        matches!(&a, Attempt::Answered { http: 201, verdict: Verdict::Unknown(w), .. } if w.contains("over 64 KiB")),
        "{a:?}"
    );
}
