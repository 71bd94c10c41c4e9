use super::*;

fn verdict(http: u16, body: &Body) -> Verdict {
    classify(http, body, None, ServerErrors::Unknown)
}

fn json(s: &str) -> Body {
    read_body(Some("application/json"), s.as_bytes())
}

#[test]
fn spec_success_is_created() {
    let b = json(r#"{"status": "success", "data":1234, "message":null}"#);
    assert_eq!(verdict(201, &b), Verdict::Created(1234));
}

#[test]
fn two_xx_without_id_is_unknown_not_created() {
    assert!(matches!(
        verdict(201, &json(r#"{"status":"success","data":null}"#)),
        Verdict::Unknown(_)
    ));
    assert!(matches!(
        verdict(200, &read_body(None, b"")),
        Verdict::Unknown(_)
    ));
}

#[test]
fn two_xx_saying_error_is_rejected_with_messages() {
    let b = json(r#"{"status":"error","data":null,"message":["campaign_name is required"]}"#);
    assert_eq!(
        verdict(200, &b),
        Verdict::Rejected(vec!["campaign_name is required".into()])
    );
}

#[test]
fn reads_message_or_messages_array_or_string() {
    assert_eq!(
        json(r#"{"status":"error","messages":["a","b"]}"#).messages,
        vec!["a", "b"]
    );
    assert_eq!(
        json(r#"{"status":"error","message":"just one"}"#).messages,
        vec!["just one"]
    );
    let b = json(r#"{"status":"error","data":null,"message":["x"]}"#);
    assert_eq!(verdict(422, &b), Verdict::Rejected(vec!["x".into()]));
}

#[test]
fn reads_xml_answers() {
    let ok = read_body(
        Some("application/xml"),
        br#"<?xml version="1.0"?><response><status>success</status><data>77</data><message/></response>"#,
    );
    assert_eq!(verdict(201, &ok), Verdict::Created(77));
    let err = read_body(
        Some("text/xml"),
        b"<response><status>error</status><data/><message><item>customer_contact is required</item><item>a &amp; b</item></message></response>",
    );
    assert_eq!(err.messages, vec!["customer_contact is required", "a & b"]);
    assert_eq!(verdict(422, &err), Verdict::Rejected(err.messages.clone()));
}

#[test]
fn html_and_empty_bodies_become_words() {
    let html = read_body(
        Some("text/html"),
        b"<html><head><title>502 Bad Gateway</title></head><body><h1>502</h1></body></html>",
    );
    match verdict(502, &html) {
        Verdict::Unknown(w) => assert!(w.contains("HTML page \"502 Bad Gateway\""), "{w}"),
        other => panic!("{other:?}"),
    }
    match verdict(503, &read_body(None, b"")) {
        Verdict::Transient(w) => assert_eq!(w, "HTTP 503 with an empty body"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn statuses_map_to_what_the_api_notes_say() {
    let b = Body::default();
    for s in [408, 429, 503] {
        assert!(matches!(verdict(s, &b), Verdict::Transient(_)), "{s}");
    }
    for s in [500, 501, 502, 504, 505, 507, 520, 522, 524, 599] {
        assert!(matches!(verdict(s, &b), Verdict::Unknown(_)), "{s}");
        assert!(
            matches!(
                classify(s, &b, None, ServerErrors::Retry),
                Verdict::Transient(_)
            ),
            "{s} with --retry-server-errors"
        );
    }
    for s in [401, 403] {
        assert!(
            matches!(verdict(s, &b), Verdict::Stop(StopKind::Credentials, _)),
            "{s}"
        );
    }
    for s in [404, 405, 301] {
        assert!(
            matches!(verdict(s, &b), Verdict::Stop(StopKind::Endpoint, _)),
            "{s}"
        );
    }
    assert!(matches!(
        verdict(407, &b),
        Verdict::Stop(StopKind::Proxy, _)
    ));
    for s in [400, 409, 413, 422] {
        assert!(matches!(verdict(s, &b), Verdict::Rejected(_)), "{s}");
    }
}

#[test]
fn stop_messages_say_the_status_once_and_name_the_redirect() {
    let b = json(r#"{"status":"error","message":["authentication failed"]}"#);
    let Verdict::Stop(_, msg) = verdict(401, &b) else {
        panic!()
    };
    assert!(
        msg.starts_with("DigiDesk answered HTTP 401 (authentication failed): check"),
        "{msg}"
    );
    let to = "https://digidesk.example/api/survey_requests/";
    let Verdict::Stop(_, msg) = classify(301, &b, Some(to), ServerErrors::Unknown) else {
        panic!()
    };
    assert!(msg.contains(&format!("--endpoint {to}")), "{msg}");
}

#[test]
fn server_text_loses_escapes_and_control_characters() {
    assert_eq!(
        clean("\u{1b}[31mred\u{1b}[0m \u{1b}]0;title\u{7}ok\u{1b}(B\tx\ny\u{0}\u{9b}2Jz\u{202e}"),
        "red ok x yz"
    );
    let b = json("{\"status\":\"error\",\"message\":[\"\\u001b[2J=1+1\",\"\\u001b[0m\"]}");
    assert_eq!(b.messages, vec!["=1+1"]);
    let binary = read_body(Some("application/gzip"), b"\x1f\x8b\x08\x00\x1b[2Jabc\x07");
    let words = binary.unreadable.unwrap();
    assert!(!words.chars().any(|c| c.is_control()), "{words:?}");
}

#[test]
fn retry_after_in_both_forms() {
    let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
    let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
    assert_eq!(
        parse_retry_after(&later, now),
        Some(Duration::from_secs(30))
    );
    let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
    assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("soon", now), None);
    let max = Some(Duration::from_secs(u64::MAX));
    assert_eq!(parse_retry_after("18446744073709551615", now), max);
    assert_eq!(parse_retry_after("99999999999999999999999999", now), max);
}
