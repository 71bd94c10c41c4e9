//! The sandbox held to the spec and to each fault, over HTTP and HTTPS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// A client that trusts nothing but what it is told (never the system's roots).
fn client(ca_pem: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false);
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn valid() -> Value {
    json!({"customer_contact": "+447400123456", "campaign_name": "Post-call survey"})
}

async fn post(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = c
        .post(url)
        .basic_auth("demo", Some("demo"))
        .json(body)
        .send()
        .await
        .expect("answer");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_example_request_gets_the_spec_example_answer() {
    let sb = sandbox(SandboxConfig::default()).await;
    // The spec's example, byte for byte as a client sends it (with the
    // braces the document lost, and the path with its underscore).
    let body = r#"{"customer_contact":"john.smith@email.com", "campaign_name": "My Survey Campaign", "customer_name":"John Smith", "account_number": "ABC123", "agent_name": "A.N. Agent", "misc_data":{ "Contact Reason":"Billing enquiry" }}"#;
    let addr = sb.addr();
    let raw = format!(
        "POST /api/survey_requests/ HTTP/1.1\r\nHost: digidesk.citrustelecom.net\r\nAccept: application/json\r\nAuthorization: Basic ZGVtbzpkZW1v\r\nContent-type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 201 Created\r\n"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("content-type: application/json"), "{answer}");
    assert!(lower.contains("content-length: "), "{answer}");
    let json: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        json,
        json!({"status": "success", "data": 1, "message": null})
    );
    let accepted = sb.accepted();
    assert_eq!(
        accepted[0].body["misc_data"]["Contact Reason"],
        "Billing enquiry"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_accept_and_ids_increase() {
    let sb = sandbox(SandboxConfig::default()).await;
    let c = client(None);
    let base = format!("http://{}", sb.addr());
    let (s1, a1) = post(&c, &format!("{base}/api/survey_requests/"), &valid()).await;
    let (s2, a2) = post(&c, &format!("{base}/api/v1/survey_requests/"), &valid()).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(
        a1["data"].as_u64().unwrap() + 1,
        a2["data"].as_u64().unwrap()
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_path_method_auth_type_and_json_each_get_their_status() {
    let sb = sandbox(SandboxConfig::default()).await;
    let c = client(None);
    let url = sb.endpoint();
    let base = format!("http://{}", sb.addr());

    let r = c
        .post(format!("{base}/api/other/"))
        .basic_auth("demo", Some("demo"))
        .json(&valid())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .get(&url)
        .basic_auth("demo", Some("demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = c.post(&url).json(&valid()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"DigiDesk\"");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "error");
    assert!(v["data"].is_null());
    let r = c
        .post(&url)
        .basic_auth("demo", Some("nope"))
        .json(&valid())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(&url)
        .basic_auth("demo", Some("demo"))
        .header("content-type", "text/plain")
        .body(valid().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = c
        .post(&url)
        .basic_auth("demo", Some("demo"))
        .header("content-type", "application/json; charset=utf-8")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["message"][0].as_str().unwrap().contains("not valid JSON"));
    let (s, _) = post(&c, &url, &json!(["an", "array"])).await;
    assert_eq!(s, 400);
    assert!(sb.accepted().is_empty(), "nothing was created");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_rules_answer_422_with_one_message_per_problem() {
    let sb = sandbox(SandboxConfig {
        campaigns: Some(vec!["Post-call survey".into()]),
        allowed_params: vec!["source".into()],
        ..SandboxConfig::default()
    })
    .await;
    let c = client(None);
    let url = sb.endpoint();
    let (s, v) = post(
        &c,
        &url,
        &json!({
            "customer_contact": "  ",
            "campaign_name": "Unknown campaign",
            "customer_name": "é".repeat(251),
            "misc_data": (0..11).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>(),
            "source": "crm",
            "colour": "blue",
        }),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(v["status"], "error");
    assert_eq!(
        v["message"],
        json!([
            "customer_contact must not be blank",
            "customer_name must be at most 250 characters (got 251)",
            "campaign_name \"Unknown campaign\" is not a configured campaign",
            "misc_data may have at most 10 entries (got 11)",
            "unknown parameter \"colour\""
        ])
    );
    let mut ok = valid();
    ok["customer_name"] = json!("é".repeat(250));
    ok["source"] = json!("crm");
    assert_eq!(
        post(&c, &url, &ok).await.0,
        201,
        "250 characters of two bytes each is valid"
    );
    assert_eq!(
        post(&c, &url, &json!({"campaign_name": "Post-call survey"}))
            .await
            .0,
        422
    );
    assert_eq!(sb.accepted().len(), 1);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_xml_in_body_or_query_answers_in_xml() {
    let sb = sandbox(SandboxConfig::default()).await;
    let c = client(None);
    let mut body = valid();
    body["format"] = json!("xml");
    let r = c
        .post(sb.endpoint())
        .basic_auth("demo", Some("demo"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["content-type"], "application/xml");
    let text = r.text().await.unwrap();
    assert!(
        text.contains("<status>success</status><data>1</data><message/>"),
        "{text}"
    );

    let r = c
        .post(format!("{}?format=xml", sb.endpoint()))
        .basic_auth("demo", Some("demo"))
        .header("content-type", "application/json")
        .body("{broken")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("<status>error</status><data/><message><item>the body is not valid JSON"),
        "{text}"
    );
    // And the uploader's reader understands both.
    let parsed = digidesk_upload::api::read_body(Some("application/xml"), text.as_bytes());
    assert_eq!(parsed.status.as_deref(), Some("error"));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_generated_certificate_and_not_without_it() {
    let w = Work::new();
    let cert = w.path("ca.pem");
    let sb = sandbox(SandboxConfig {
        tls: true,
        cert_out: Some(cert.clone()),
        ..SandboxConfig::default()
    })
    .await;
    let pem = std::fs::read_to_string(&cert).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(Some(pem.clone()), sb.ca_cert_pem());
    let (s, v) = post(&client(Some(&pem)), &sb.endpoint(), &valid()).await;
    assert_eq!((s, v["status"].as_str()), (201, Some("success")));
    let localhost = sb.endpoint().replace("127.0.0.1", "localhost");
    assert_eq!(
        post(&client(Some(&pem)), &localhost, &valid()).await.0,
        201,
        "the certificate covers localhost"
    );
    let err = client(None)
        .post(sb.endpoint())
        .json(&valid())
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("certificate") || err.is_connect(),
        "{err:?}"
    );
    assert_eq!(sb.accepted().len(), 2);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_get_distinct_consecutive_ids() {
    let sb = sandbox(SandboxConfig::default()).await;
    let c = client(None);
    let url = sb.endpoint();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            post(&c, &url, &valid()).await.1["data"].as_u64().unwrap()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort();
    assert_eq!(ids, (1..=200).collect::<Vec<u64>>());
    sb.shutdown().await;
}

async fn statuses(
    cfg: SandboxConfig,
    n: usize,
) -> (Sandbox, Vec<Result<(u16, Option<String>), String>>) {
    let sb = sandbox(cfg).await;
    let c = client(None);
    let mut out = Vec::new();
    for _ in 0..n {
        let r = c
            .post(sb.endpoint())
            .basic_auth("demo", Some("demo"))
            .json(&valid())
            .send()
            .await;
        out.push(match r {
            Ok(r) => {
                let retry = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                Ok((r.status().as_u16(), retry))
            }
            Err(e) => Err(format!("{e:?}")),
        });
    }
    (sb, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rate_answers_500_or_503_and_html_rate_502_pages() {
    let (sb, out) = statuses(
        SandboxConfig {
            error_rate: 1.0,
            seed: Some(1),
            ..SandboxConfig::default()
        },
        30,
    )
    .await;
    assert!(
        out.iter()
            .all(|r| matches!(r, Ok((500, _)) | Ok((503, Some(_))))),
        "{out:?}"
    );
    assert!(
        out.iter().any(|r| matches!(r, Ok((500, _))))
            && out.iter().any(|r| matches!(r, Ok((503, _))))
    );
    assert!(sb.accepted().is_empty());
    sb.shutdown().await;

    let sb = sandbox(SandboxConfig {
        html_error_rate: 1.0,
        ..SandboxConfig::default()
    })
    .await;
    let r = client(None)
        .post(sb.endpoint())
        .basic_auth("demo", Some("demo"))
        .json(&valid())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "text/html");
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("<title>502 Bad Gateway</title>"));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_before_creates_nothing_and_drop_after_creates_then_closes() {
    let (sb, out) = statuses(
        SandboxConfig {
            drop_before_rate: 1.0,
            ..SandboxConfig::default()
        },
        5,
    )
    .await;
    assert!(out.iter().all(|r| r.is_err()), "{out:?}");
    assert!(sb.accepted().is_empty());
    assert!(sb.requests().iter().all(|s| s.status.is_none()));
    sb.shutdown().await;

    let w = Work::new();
    let record = w.path("accepted.jsonl");
    let (sb, out) = statuses(
        SandboxConfig {
            drop_after_rate: 1.0,
            record: Some(record.clone()),
            ..SandboxConfig::default()
        },
        5,
    )
    .await;
    assert!(out.iter().all(|r| r.is_err()), "no answer came: {out:?}");
    assert_eq!(sb.accepted().len(), 5, "but every request was created");
    let lines: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[0]["body"], valid());
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after_past_the_burst() {
    let started = Instant::now();
    let (sb, out) = statuses(
        SandboxConfig {
            rate_limit: Some(5.0),
            ..SandboxConfig::default()
        },
        12,
    )
    .await;
    let created = out.iter().filter(|r| matches!(r, Ok((201, _)))).count();
    let limited: Vec<_> = out.iter().filter(|r| matches!(r, Ok((429, _)))).collect();
    // A burst of 5, then 5 more per second of the test's own duration.
    let refill = (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        (5..=5 + refill).contains(&created),
        "a burst of 5, then 5/s: {out:?}"
    );
    assert!(!limited.is_empty());
    for r in &limited {
        let Ok((429, Some(secs))) = r else {
            panic!("429 without Retry-After: {r:?}")
        };
        assert!(secs.parse::<u64>().unwrap() >= 1);
    }
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_burst_sets_how_many_pass_at_once() {
    let started = Instant::now();
    let (sb, out) = statuses(
        SandboxConfig {
            rate_limit: Some(5.0),
            rate_limit_burst: Some(2),
            retry_after: Some("1".into()),
            ..SandboxConfig::default()
        },
        12,
    )
    .await;
    let created = out.iter().filter(|r| matches!(r, Ok((201, _)))).count();
    // A burst of 2, then 5 more per second of the test's own duration.
    let refill = (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!((2..=2 + refill).contains(&created), "{out:?}");
    for r in out.iter().filter(|r| !matches!(r, Ok((201, _)))) {
        assert_eq!(r, &Ok((429, Some("1".to_string()))));
    }
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_faults() {
    let cfg = SandboxConfig {
        error_rate: 0.3,
        html_error_rate: 0.2,
        seed: Some(42),
        ..SandboxConfig::default()
    };
    let (a, first) = statuses(cfg.clone(), 40).await;
    let (b, second) = statuses(cfg, 40).await;
    assert_eq!(first, second);
    assert!(
        first.iter().any(|r| matches!(r, Ok((201, _))))
            && first.iter().any(|r| !matches!(r, Ok((201, _))))
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_each_answer() {
    let sb = sandbox(SandboxConfig {
        latency_ms: 120,
        jitter_ms: 30,
        ..SandboxConfig::default()
    })
    .await;
    let started = Instant::now();
    assert_eq!(post(&client(None), &sb.endpoint(), &valid()).await.0, 201);
    assert!(started.elapsed() >= Duration::from_millis(120));
    sb.shutdown().await;
}

#[test]
fn bad_fault_shares_are_refused() {
    let out = bin()
        .args(["sandbox", "--listen", "127.0.0.1:0", "--error-rate", "1.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("between 0 and 1"));
}

#[test]
fn a_burst_needs_a_rate_limit_and_at_least_one() {
    for (args, says) in [
        (&["--rate-limit-burst", "2"][..], "needs --rate-limit"),
        (
            &["--rate-limit", "5", "--rate-limit-burst", "0"][..],
            "at least 1",
        ),
    ] {
        let out = bin()
            .args(["sandbox", "--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(says), "{}", text(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_command_prints_its_endpoint_and_credentials() {
    let w = Work::new();
    let cert = w.path("sb.pem");
    let mut child = bin()
        .args([
            "sandbox",
            "--listen",
            "127.0.0.1:0",
            "--tls",
            "--username",
            "u1",
            "--password",
            "p1",
            "--cert-out",
        ])
        .arg(&cert)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<String> = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(4)
            .map(|l| l.unwrap())
            .collect()
    })
    .await
    .unwrap();
    let endpoint = lines[0]
        .strip_prefix("endpoint: ")
        .expect("endpoint line")
        .to_string();
    assert!(
        endpoint.starts_with("https://127.0.0.1:") && endpoint.ends_with("/api/survey_requests/"),
        "{lines:?}"
    );
    assert_eq!(lines[1], "username: u1");
    assert_eq!(lines[2], "password: p1");
    assert!(lines[3].starts_with("ca-cert: "));
    let pem = std::fs::read_to_string(&cert).unwrap();
    let r = client(Some(&pem))
        .post(&endpoint)
        .basic_auth("u1", Some("p1"))
        .json(&valid())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = tokio::task::block_in_place(|| child.wait().unwrap());
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sandbox_help_documents_every_option() {
    let out = bin().args(["sandbox", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--listen",
        "--username",
        "--password",
        "--tls",
        "--cert-out",
        "--record",
        "--campaigns",
        "--allow-param",
        "--latency-ms",
        "--jitter-ms",
        "--rate-limit",
        "--error-rate",
        "--html-error-rate",
        "--drop-before-rate",
        "--drop-after-rate",
        "--seed",
        "--fast",
    ] {
        assert!(help.contains(opt), "{opt} missing from sandbox --help");
    }
}
