//! The loopback server over real TCP: negotiation, ranges, revalidation, faults, accounting.

mod common;

use std::time::{Duration, Instant};

use comfypak_testkit::{Fault, FixtureIndex, Format, ServerOptions, TestServer, WheelSpec};
use common::{get, Conn};

fn small_index() -> FixtureIndex {
    FixtureIndex::builder()
        .wheel(
            WheelSpec::new("torch", "2.11.0+cu130")
                .tag("cp314-cp314-manylinux_2_28_x86_64")
                .requires_python(">=3.10")
                .requires("filelock")
                .pad_bytes(200_000),
        )
        .package("filelock", "3.32.5", &[])
        .build()
}

const TORCH: &str = "torch-2.11.0+cu130-cp314-cp314-manylinux_2_28_x86_64.whl";
const TORCH_PATH: &str = "/files/torch-2.11.0%2Bcu130-cp314-cp314-manylinux_2_28_x86_64.whl";
const JSON: &str = "application/vnd.pypi.simple.v1+json";

#[test]
fn negotiates_json_and_html() {
    let server = TestServer::serve_index(&small_index(), ServerOptions::default());
    assert!(server.url().starts_with("http://127.0.0.1:"));
    assert_eq!(server.simple_url(), format!("{}/simple/", server.url()));

    let html = get(server.addr(), "/simple/torch/", &[]);
    assert_eq!(html.status, 200);
    assert_eq!(html.header("content-type"), Some("text/html"));
    assert_eq!(html.header("vary"), Some("Accept"));
    assert!(html.text().contains("data-requires-python=\"&gt;=3.10\""));

    let json = get(
        server.addr(),
        "/simple/torch/",
        &[("Accept", "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01")],
    );
    assert_eq!(json.status, 200);
    assert_eq!(json.header("content-type"), Some(JSON));
    let page: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(page["name"], "torch");
    assert_eq!(page["files"][0]["filename"], TORCH);

    let html_pref = get(
        server.addr(),
        "/simple/torch/",
        &[(
            "Accept",
            "application/vnd.pypi.simple.v1+json;q=0.1, text/html",
        )],
    );
    assert_eq!(html_pref.header("content-type"), Some("text/html"));

    // Fixed formats ignore Accept.
    let json_only = TestServer::serve_index(
        &small_index(),
        ServerOptions {
            format: Format::Json,
            ..Default::default()
        },
    );
    assert_eq!(
        get(json_only.addr(), "/simple/", &[]).header("content-type"),
        Some(JSON)
    );
    let html_only = TestServer::serve_index(
        &small_index(),
        ServerOptions {
            format: Format::Html,
            ..Default::default()
        },
    );
    assert_eq!(
        get(html_only.addr(), "/simple/torch/", &[("Accept", JSON)]).header("content-type"),
        Some("text/html")
    );

    // Non-normalized and missing paths.
    let redirect = get(server.addr(), "/simple/torch", &[]);
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("location"), Some("/simple/torch/"));
    assert_eq!(get(server.addr(), "/simple/nope/", &[]).status, 404);
    assert_eq!(
        get(server.addr(), "/files/../simple/index.html", &[]).status,
        404
    );
    // The find-links page links every wheel.
    let links = get(server.addr(), "/find-links/", &[]);
    assert_eq!(links.status, 200);
    assert!(links.text().contains("../files/torch-2.11.0%2Bcu130-"));
}

#[test]
fn serves_wheels_and_metadata_by_percent_encoded_path() {
    let index = small_index();
    let torch = index.file(TORCH).unwrap();
    let server = TestServer::serve_index(&index, ServerOptions::default());
    let r = get(server.addr(), TORCH_PATH, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, torch.wheel.bytes);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let md = get(server.addr(), &format!("{TORCH_PATH}.metadata"), &[]);
    assert_eq!(md.status, 200);
    assert_eq!(md.body, torch.wheel.metadata);

    let head = Conn::open(server.addr()).request("HEAD", TORCH_PATH, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(torch.wheel.bytes.len().to_string().as_str())
    );
    assert!(head.body.is_empty());

    let without = TestServer::serve_index(
        &index,
        ServerOptions {
            serve_metadata_files: false,
            ..Default::default()
        },
    );
    assert_eq!(
        get(without.addr(), &format!("{TORCH_PATH}.metadata"), &[]).status,
        404
    );
    let page = get(without.addr(), "/simple/torch/", &[]).text();
    assert!(!page.contains("data-core-metadata"));
    let json: serde_json::Value =
        serde_json::from_slice(&get(without.addr(), "/simple/torch/", &[("Accept", JSON)]).body)
            .unwrap();
    assert_eq!(json["files"][0]["core-metadata"], false);

    let post = Conn::open(server.addr()).request("POST", TORCH_PATH, &[("Content-Length", "0")]);
    assert_eq!(post.status, 405);
}

#[test]
fn range_requests() {
    let index = small_index();
    let bytes = index.file(TORCH).unwrap().wheel.bytes.clone();
    let len = bytes.len();
    let server = TestServer::serve_index(&index, ServerOptions::default());
    let mut conn = Conn::open(server.addr());

    let r = conn.request("GET", TORCH_PATH, &[("Range", "bytes=10-19")]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 10-19/{len}").as_str())
    );
    assert_eq!(r.body, &bytes[10..20]);

    let r = conn.request("GET", TORCH_PATH, &[("Range", "bytes=100000-")]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100000-{}/{len}", len - 1).as_str())
    );
    assert_eq!(r.body, &bytes[100_000..]);

    let r = conn.request("GET", TORCH_PATH, &[("Range", "bytes=-22")]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {}-{}/{len}", len - 22, len - 1).as_str())
    );
    assert_eq!(r.body, &bytes[len - 22..]);
    assert_eq!(
        &r.body[..4],
        b"PK\x05\x06",
        "the tail of a wheel is the end-of-central-directory record"
    );

    let r = conn.request("GET", TORCH_PATH, &[("Range", "bytes=5-999999999")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &bytes[5..]);

    let r = conn.request("GET", TORCH_PATH, &[("Range", &format!("bytes={len}-"))]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    assert!(r.body.is_empty());

    // All of it went over one keep-alive connection.
    let log = server.log();
    assert_eq!(log.len(), 5);
    assert!(log.iter().all(|rec| rec.connection == log[0].connection));
    assert_eq!(log[0].range.as_deref(), Some("bytes=10-19"));
    assert_eq!(log[0].body_bytes, 10);

    let off = TestServer::serve_index(
        &index,
        ServerOptions {
            range: false,
            ..Default::default()
        },
    );
    let r = get(off.addr(), TORCH_PATH, &[("Range", "bytes=0-9")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, bytes);
    assert_eq!(r.header("accept-ranges"), None);
    assert_eq!(r.header("content-range"), None);
}

#[test]
fn etag_revalidation() {
    let server = TestServer::serve_index(&small_index(), ServerOptions::default());
    let first = get(server.addr(), "/simple/torch/", &[("Accept", JSON)]);
    let etag = first.header("etag").expect("ETag sent").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    let again = get(
        server.addr(),
        "/simple/torch/",
        &[("Accept", JSON), ("If-None-Match", &etag)],
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    // The HTML variant has another ETag, so the JSON tag does not validate it.
    let html = get(server.addr(), "/simple/torch/", &[("If-None-Match", &etag)]);
    assert_eq!(html.status, 200);
    assert_ne!(html.header("etag"), Some(etag.as_str()));
    assert_eq!(
        get(
            server.addr(),
            "/simple/torch/",
            &[("If-None-Match", "\"other\", W/".to_string().as_str())]
        )
        .status,
        200
    );

    let off = TestServer::serve_index(
        &small_index(),
        ServerOptions {
            etag: false,
            ..Default::default()
        },
    );
    let r = get(off.addr(), "/simple/torch/", &[("If-None-Match", "*")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), None);
}

#[test]
fn status_fault_then_success() {
    let server = TestServer::serve_index(&small_index(), ServerOptions::default());
    server.inject(Fault::Status {
        path_suffix: "/simple/torch/".into(),
        status: 503,
        times: 2,
    });
    let statuses: Vec<u16> = (0..3)
        .map(|_| get(server.addr(), "/simple/torch/", &[]).status)
        .collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    assert!(server.pending_faults().is_empty());
    // Other paths are untouched.
    assert_eq!(get(server.addr(), "/simple/filelock/", &[]).status, 200);
    let log = server.log();
    assert_eq!(log[0].fault.as_deref(), Some("status 503"));
    assert_eq!(log[2].fault, None);
}

#[test]
fn reset_fault_truncates_the_body() {
    let index = small_index();
    let bytes = index.file(TORCH).unwrap().wheel.bytes.clone();
    let server = TestServer::serve_index(&index, ServerOptions::default());
    server.inject(Fault::ResetAfter {
        path_suffix: ".whl".into(),
        bytes: 1000,
        times: 1,
    });
    let mut conn = Conn::open(server.addr());
    let r = conn.request("GET", TORCH_PATH, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
    assert!(r.truncated, "the client must see a short read");
    assert_eq!(r.body, &bytes[..1000]);
    assert!(conn.is_closed());
    // Next attempt (a retry) gets everything; a resumed range request works too.
    let full = get(server.addr(), TORCH_PATH, &[]);
    assert!(!full.truncated);
    assert_eq!(full.body, bytes);
    let rest = get(server.addr(), TORCH_PATH, &[("Range", "bytes=1000-")]);
    assert_eq!(rest.body, &bytes[1000..]);
    assert_eq!(server.requests_for(TORCH), 3);
    assert_eq!(
        server.bytes_sent_for(TORCH),
        1000 + bytes.len() as u64 + (bytes.len() as u64 - 1000)
    );
}

#[test]
fn delay_fault_delays() {
    let server = TestServer::serve_index(&small_index(), ServerOptions::default());
    server.inject(Fault::Delay {
        path_suffix: "/simple/filelock/".into(),
        millis: 400,
        times: 1,
    });
    // A lower bound only: a delay can make a request slower, never faster, whatever the load.
    let t = Instant::now();
    assert_eq!(get(server.addr(), "/simple/filelock/", &[]).status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    // The fault is used up: the second request is answered without a delay.
    assert_eq!(get(server.addr(), "/simple/filelock/", &[]).status, 200);
    let faults: Vec<Option<String>> = server.log().into_iter().map(|r| r.fault).collect();
    assert_eq!(faults, [Some("delay 400ms".to_string()), None]);
}

#[test]
fn corrupt_fault_breaks_the_hash() {
    use sha2::{Digest, Sha256};
    let index = small_index();
    let torch = index.file(TORCH).unwrap();
    let server = TestServer::serve_index(&index, ServerOptions::default());
    server.inject(Fault::CorruptBody {
        path_suffix: TORCH.into(),
        times: 1,
    });
    let bad = get(server.addr(), TORCH_PATH, &[]);
    assert_eq!(bad.status, 200);
    assert_eq!(bad.body.len(), torch.wheel.bytes.len());
    assert_ne!(hex::encode(Sha256::digest(&bad.body)), torch.wheel.sha256);
    let good = get(server.addr(), TORCH_PATH, &[]);
    assert_eq!(hex::encode(Sha256::digest(&good.body)), torch.wheel.sha256);
}

#[test]
fn accounting_counts_requests_and_bytes() {
    let index = small_index();
    let server = TestServer::serve_index(&index, ServerOptions::default());
    let torch_len = index.file(TORCH).unwrap().wheel.bytes.len() as u64;
    let mut conn = Conn::open(server.addr());
    conn.request("GET", "/simple/torch/", &[("Accept", JSON)]);
    conn.request("HEAD", TORCH_PATH, &[]);
    conn.request("GET", TORCH_PATH, &[("Range", "bytes=0-99")]);
    conn.request("GET", TORCH_PATH, &[]);
    assert_eq!(server.requests_for(TORCH), 3);
    assert_eq!(server.bytes_sent_for(TORCH), 100 + torch_len);
    assert_eq!(server.requests_for("/simple/torch/"), 1);
    let log = server.log();
    assert_eq!(log[0].accept.as_deref(), Some(JSON));
    assert_eq!(log[1].method, "HEAD");
    assert_eq!(log[1].body_bytes, 0);
    assert_eq!(log[3].target, TORCH_PATH);
    assert_eq!(log[3].path, format!("/files/{TORCH}"));
    server.clear_log();
    assert!(server.log().is_empty());
}

#[test]
fn serves_a_written_tree_and_stops_on_drop() {
    let index = small_index();
    let dir = std::env::temp_dir().join(format!("testkit-serve-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    index.write_simple_tree(&dir).unwrap();
    index.write_find_links_page(&dir).unwrap();
    let server = TestServer::serve_dir(&dir, ServerOptions::default());
    let addr = server.addr();
    let json = get(addr, "/simple/torch/", &[("Accept", JSON)]);
    assert_eq!(json.header("content-type"), Some(JSON));
    let page: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    let url = page["files"][0]["url"].as_str().unwrap();
    assert_eq!(
        url,
        "../../files/torch-2.11.0%2Bcu130-cp314-cp314-manylinux_2_28_x86_64.whl"
    );
    let wheel = get(addr, TORCH_PATH, &[]);
    assert_eq!(wheel.body, index.file(TORCH).unwrap().wheel.bytes);
    assert_eq!(get(addr, "/find-links/", &[]).status, 200);
    // An idle keep-alive connection must not keep the server alive.
    let _idle = Conn::open(addr);
    let t = Instant::now();
    drop(server);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener closed after drop"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serves_the_pytorch_fixture() {
    let index = FixtureIndex::pytorch_cu130().unwrap();
    let server = TestServer::serve_index(&index, ServerOptions::default());
    let page: serde_json::Value = serde_json::from_slice(
        &get(server.addr(), "/simple/nvidia-cublas/", &[("Accept", JSON)]).body,
    )
    .unwrap();
    assert_eq!(page["files"].as_array().unwrap().len(), 2);
    let root = get(server.addr(), "/simple/", &[]).text();
    assert!(root.contains("<a href=\"markupsafe/\">markupsafe</a>"));
    let md = get(
        server.addr(),
        "/files/torch-2.11.0%2Bcu130-cp314-cp314-manylinux_2_28_aarch64.whl.metadata",
        &[],
    );
    assert!(md
        .text()
        .contains("Requires-Dist: cuda-bindings<14,>=13.0.3; platform_system == \"Linux\""));
}
