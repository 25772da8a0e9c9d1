//! The shared HTTP client's one retry policy, against the testkit's fault-injecting server
//! on 127.0.0.1: what is retried (5xx, 429 with `Retry-After`, resets), that every loop
//! stops (attempt caps, the time budget, a `Retry-After` longer than it), that errors stay
//! typed and say what was given up on, and the redirect rule. Requests are counted in the
//! server's log; nothing here measures wall-clock time.

use std::time::Duration;

use comfypak::http::{
    backoff_delay, check_redirect, parse_retry_after, ConnectKind, GiveUp, HttpClient, HttpError,
    HttpSettings,
};
use comfypak_testkit::{Fault, FixtureIndex, ServerOptions, TestServer, WheelSpec};
use reqwest::header::HeaderMap;
use reqwest::Method;
use url::Url;

use crate::common::rt;

fn settings() -> HttpSettings {
    HttpSettings {
        backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
        read_timeout: Duration::from_secs(10),
        netrc: None,
        ..HttpSettings::default()
    }
}

fn server() -> (TestServer, String) {
    let spec = WheelSpec::new("demo", "1.0").pad_bytes(64 << 10);
    let filename = spec.wheel_filename();
    let index = FixtureIndex::builder().wheel(spec).build();
    (
        TestServer::serve_index(&index, ServerOptions::default()),
        filename,
    )
}

fn file_url(server: &TestServer, filename: &str) -> Url {
    Url::parse(&server.file_url(filename)).unwrap()
}

#[test]
fn a_429_is_retried_after_the_delay_the_server_asks_for() {
    let (server, filename) = server();
    server.inject(Fault::Answer {
        path_suffix: filename.clone(),
        status: 429,
        headers: vec![("Retry-After".into(), "0".into())],
        times: 2,
    });
    let client = HttpClient::new(settings()).unwrap();
    let url = file_url(&server, &filename);
    let response = rt().block_on(client.get(&url, HeaderMap::new())).unwrap();
    assert_eq!(response.status, 200);
    let statuses: Vec<u16> = server.log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 200]);
}

#[test]
fn a_retry_after_longer_than_the_time_budget_ends_the_retries_at_once() {
    let (server, filename) = server();
    server.inject(Fault::Answer {
        path_suffix: filename.clone(),
        status: 503,
        headers: vec![("Retry-After".into(), "3600".into())],
        times: 10,
    });
    let client = HttpClient::new(settings()).unwrap();
    let url = file_url(&server, &filename);
    let err = rt()
        .block_on(client.get(&url, HeaderMap::new()))
        .unwrap_err();
    assert_eq!(server.requests_for(&filename), 1);
    match &err {
        HttpError::Status {
            status, attempts, ..
        } => {
            assert_eq!(*status, 503);
            assert_eq!(attempts.count, 1);
            assert_eq!(
                attempts.gave_up,
                GiveUp::RetryAfter(Duration::from_secs(3600))
            );
        }
        other => panic!("not a status error: {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(url.as_str()), "{text}");
    assert!(text.contains("retry after 3600 s"), "{text}");
}

#[test]
fn persistent_5xx_answers_stop_after_the_retry_cap_and_say_so() {
    let (server, filename) = server();
    server.inject(Fault::Status {
        path_suffix: filename.clone(),
        status: 502,
        times: 1000,
    });
    let client = HttpClient::new(HttpSettings {
        retries: 2,
        ..settings()
    })
    .unwrap();
    let url = file_url(&server, &filename);
    let err = rt()
        .block_on(client.get(&url, HeaderMap::new()))
        .unwrap_err();
    // One attempt and two retries, then the error, never more.
    assert_eq!(server.requests_for(&filename), 3);
    let text = err.to_string();
    assert!(text.contains("502"), "{text}");
    assert!(text.contains("gave up after 3 attempts"), "{text}");
    assert!(text.contains(url.as_str()), "{text}");
}

#[test]
fn the_total_attempt_cap_holds_even_with_more_retries_allowed() {
    let (server, filename) = server();
    server.inject(Fault::Status {
        path_suffix: filename.clone(),
        status: 500,
        times: 1000,
    });
    let client = HttpClient::new(HttpSettings {
        retries: 100,
        max_attempts: 5,
        ..settings()
    })
    .unwrap();
    let err = rt()
        .block_on(client.get(&file_url(&server, &filename), HeaderMap::new()))
        .unwrap_err();
    assert_eq!(server.requests_for(&filename), 5);
    assert!(err.to_string().contains("the most allowed"), "{err}");
}

#[test]
fn a_zero_time_budget_allows_no_retry() {
    let (server, filename) = server();
    server.inject(Fault::Status {
        path_suffix: filename.clone(),
        status: 503,
        times: 1000,
    });
    let client = HttpClient::new(HttpSettings {
        retry_time: Duration::ZERO,
        ..settings()
    })
    .unwrap();
    let err = rt()
        .block_on(client.get(&file_url(&server, &filename), HeaderMap::new()))
        .unwrap_err();
    assert_eq!(server.requests_for(&filename), 1);
    assert!(err.to_string().contains("retry time limit 0 s"), "{err}");
}

#[test]
fn a_4xx_is_an_answer_not_a_retry() {
    let (server, filename) = server();
    server.inject(Fault::Status {
        path_suffix: filename.clone(),
        status: 403,
        times: 1000,
    });
    let client = HttpClient::new(settings()).unwrap();
    let url = file_url(&server, &filename);
    let err = rt()
        .block_on(client.get(&url, HeaderMap::new()))
        .unwrap_err();
    assert_eq!(server.requests_for(&filename), 1);
    assert_eq!(err.status(), Some(403));
    assert!(err.help().unwrap().contains("credentials"));
    // `request` hands any non-retryable status back for the caller to judge.
    let response = rt()
        .block_on(client.request(Method::HEAD, &url, HeaderMap::new(), None))
        .unwrap();
    assert_eq!(response.status, 403);
}

#[test]
fn a_body_cut_short_is_retried_in_full() {
    let (server, filename) = server();
    server.inject(Fault::ResetAfter {
        path_suffix: filename.clone(),
        bytes: 1000,
        times: 2,
    });
    let client = HttpClient::new(settings()).unwrap();
    let response = rt()
        .block_on(client.get(&file_url(&server, &filename), HeaderMap::new()))
        .unwrap();
    assert!(response.body.len() > 64 << 10);
    assert_eq!(server.requests_for(&filename), 3);
}

#[test]
fn a_refused_connection_is_a_typed_connect_error_naming_the_host() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = HttpClient::new(HttpSettings {
        retries: 1,
        ..settings()
    })
    .unwrap();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/simple/demo/")).unwrap();
    let err = rt()
        .block_on(client.get(&url, HeaderMap::new()))
        .unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    match &err {
        HttpError::Connect {
            host,
            kind,
            attempts,
            ..
        } => {
            assert_eq!(host, &format!("127.0.0.1:{port}"));
            assert_eq!(*kind, ConnectKind::Refused);
            assert_eq!(attempts.count, 2);
        }
        other => panic!("not a connect error: {other:?}"),
    }
    assert!(err.help().unwrap().contains("HTTPS_PROXY"));
}

#[test]
fn an_unknown_host_is_a_dns_error() {
    let client = HttpClient::new(HttpSettings {
        retries: 0,
        ..settings()
    })
    .unwrap();
    let url = Url::parse("http://no-such-host.invalid/simple/").unwrap();
    match rt().block_on(client.get(&url, HeaderMap::new())) {
        Err(HttpError::Connect { kind, host, .. }) => {
            assert_eq!(kind, ConnectKind::Dns);
            assert_eq!(host, "no-such-host.invalid");
        }
        other => panic!("not a DNS error: {other:?}"),
    }
}

#[test]
fn retry_after_reads_seconds_and_dates() {
    assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
    assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
    // A date in the past means now.
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
        Some(Duration::ZERO)
    );
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(600));
    let wait = parse_retry_after(&later).unwrap();
    assert!(wait > Duration::from_secs(500) && wait <= Duration::from_secs(600));
    assert_eq!(parse_retry_after("soon"), None);
}

#[test]
fn backoff_doubles_is_jittered_and_capped() {
    let s = HttpSettings {
        backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(1000),
        ..HttpSettings::default()
    };
    for n in 1..=8u32 {
        let full = (Duration::from_millis(100) * (1 << (n - 1))).min(Duration::from_millis(1000));
        let d = backoff_delay(&s, n);
        assert!(
            d >= full / 2 && d <= full,
            "retry {n}: {d:?} outside {full:?}/2..{full:?}"
        );
    }
    // Jitter: a run of delays for the same retry is not one constant.
    let delays: std::collections::BTreeSet<Duration> =
        (0..20).map(|_| backoff_delay(&s, 3)).collect();
    assert!(delays.len() > 1);
}

#[test]
fn https_never_redirects_to_http() {
    let https = Url::parse("https://index.example/simple/").unwrap();
    let http = Url::parse("http://index.example/simple/").unwrap();
    let err = check_redirect(Some(&https), &http).unwrap_err();
    assert!(err.to_string().contains("https://index.example/simple/"));
    assert!(err.to_string().contains("http://index.example/simple/"));
    assert!(check_redirect(Some(&http), &https).is_ok());
    assert!(check_redirect(Some(&http), &http).is_ok());
    assert!(check_redirect(Some(&https), &https).is_ok());
}

#[test]
fn a_plain_http_redirect_on_loopback_is_followed() {
    let (server, filename) = server();
    let target = server.file_url(&filename);
    server.inject(Fault::Answer {
        path_suffix: "/moved.whl".into(),
        status: 302,
        headers: vec![("Location".into(), target)],
        times: 1,
    });
    let client = HttpClient::new(settings()).unwrap();
    let url = Url::parse(&format!("{}/moved.whl", server.url())).unwrap();
    let response = rt().block_on(client.get(&url, HeaderMap::new())).unwrap();
    assert_eq!(response.status, 200);
    assert!(response.url.as_str().ends_with(".whl"));
    assert_eq!(server.requests_for(&filename), 1);
}
