//! Property-based fuzzing (proptest) of every parser that reads untrusted bytes: pak files,
//! simple-API HTML and JSON pages, find-links pages, METADATA, RECORD, wheel file names and
//! pylock.toml. Inputs are random bytes and random edits (insert, replace, delete, splice)
//! of valid seeds, so the runs reach past the first syntax check. The property: no panic,
//! whatever the input (an `Err` is fine). `COMFYPAK_FUZZ_CASES` sets the cases per parser
//! (default 1000: a short run for CI; raise it for a longer local run). The inputs come from
//! a fixed seed, so CI runs the same cases every time (a red run is reproducible); set
//! `COMFYPAK_FUZZ_RANDOM=1` to draw new ones.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRng, TestRunner};
use url::Url;

fn cases() -> u32 {
    std::env::var("COMFYPAK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// One edit of a seed: at a position (taken modulo the length), with some bytes.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, Vec<u8>),
    Replace(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for edit in edits {
        let len = out.len().max(1);
        match edit {
            Edit::Insert(at, bytes) => {
                let at = at % (out.len() + 1);
                out.splice(at..at, bytes.iter().copied());
            }
            Edit::Replace(at, bytes) => {
                let at = at % len;
                for (i, b) in bytes.iter().enumerate() {
                    if let Some(slot) = out.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n % 64).min(out.len());
                if at < end {
                    out.drain(at..end);
                }
            }
            Edit::Duplicate(at, n) => {
                let at = at % len;
                let end = (at + n % 256).min(out.len());
                if at < end {
                    let piece: Vec<u8> = out[at..end].to_vec();
                    out.splice(end..end, piece);
                }
            }
        }
    }
    out
}

/// Bytes that matter to these parsers, to make edits likelier to hit a branch.
fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    let tokens: Vec<&'static [u8]> = vec![
        b"<",
        b">",
        b"</a>",
        b"<a href=\"",
        b"\"",
        b"'",
        b"&amp;",
        b"&#",
        b"#sha256=",
        b"=",
        b"\n",
        b"\r\n",
        b"\\\n",
        b" ",
        b"\t",
        b"--",
        b"-r ",
        b"${",
        b"}",
        b"[",
        b"]",
        b"@",
        b";",
        b",",
        b"==",
        b">=",
        b"~=",
        b"+",
        b"-",
        b".whl",
        b".tar.gz",
        b"{",
        b":",
        b"null",
        b"\xff",
        b"\xc3",
        b"\xe9",
        b"\0",
        b"..",
        b"/",
        b"%2F",
        b"Name: ",
        b"Version: ",
        b"Requires-Dist: ",
        b"sha256=",
        b"[[packages]]",
        b"[tool.comfypak]",
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..8),
        proptest::sample::select(tokens).prop_map(|t| t.to_vec()),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), interesting_bytes()).prop_map(|(a, b)| Edit::Insert(a, b)),
        (any::<usize>(), interesting_bytes()).prop_map(|(a, b)| Edit::Replace(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, n)| Edit::Duplicate(a, n)),
    ]
}

/// Random bytes, or a seed with up to 8 edits.
fn input(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..512),
        4 => (proptest::sample::select(seeds), proptest::collection::vec(edit(), 0..8))
            .prop_map(|(seed, edits)| apply(&seed, &edits)),
    ]
}

/// Runs `check` on `cases()` inputs; returns how many ran. A panic fails the test with the
/// shrunk input.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, check: impl Fn(&[u8])) -> u32 {
    let n = cases();
    let config = Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = if std::env::var("COMFYPAK_FUZZ_RANDOM").as_deref() == Ok("1") {
        TestRunner::new(config)
    } else {
        let rng = TestRng::deterministic_rng(config.rng_algorithm);
        TestRunner::new_with_rng(config, rng)
    };
    let result = runner.run(&input(seeds), |bytes| {
        check(&bytes);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    eprintln!("fuzz {name}: {n} executions, 0 panics");
    n
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const PAK_SEED: &str = "# comment\nnumpy>=1.26,<3 ; python_version >= \"3.10\"\ntorch==2.11.0+cu130 \\\n  --hash=sha256:abababababababababababababababababababababababababababababababab\nPillow[extra1, extra2] @ https://files.example/pillow-12.0-py3-none-any.whl\n--pre\n--only-binary :all:\n--extra-index-url https://mirror.example/simple\nname-${VAR}==1.0\n-c constraints.txt\n";

#[test]
fn fuzz_pak_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("constraints.txt"), "numpy<2.5\n").unwrap();
    let path = dir.path().join("pak.txt");
    let vars = |name: &str| (name == "VAR").then(|| "x".to_string());
    fuzz(
        "pak",
        vec![
            PAK_SEED.as_bytes().to_vec(),
            b"-r other.txt\nrequests\n".to_vec(),
        ],
        |bytes| {
            let _ = comfypak::pak::parse_str(&path, &text(bytes), &vars).map(|_| ());
            if let Err(e) = comfypak::pak::parse_str(&path, &text(bytes), &vars) {
                // Rendering the error must not panic either, and stays small.
                assert!(e.to_string().len() < 16 * 1024);
            }
        },
    );
}

const HTML_SEED: &str = r#"<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1"><base href="https://files.example/base/"></head><body>
<a href="../../packages/demo-1.0-py3-none-any.whl#sha256=abababababababababababababababababababababababababababababababab" data-requires-python="&gt;=3.8" data-dist-info-metadata="sha256=cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd">demo-1.0-py3-none-any.whl</a>
<a href="demo-1.1.tar.gz#md5=0123456789abcdef0123456789abcdef" data-yanked="bad &amp; broken">demo-1.1.tar.gz</a>
<!-- a comment <a href="x"> --><A HREF='demo-2.0-cp314-cp314-manylinux_2_39_x86_64.whl'>x</A>
</body></html>"#;

const JSON_SEED: &str = r#"{"meta":{"api-version":"1.1"},"name":"demo","versions":["1.0"],"files":[{"filename":"demo-1.0-py3-none-any.whl","url":"https://files.example/demo-1.0-py3-none-any.whl","hashes":{"sha256":"abababababababababababababababababababababababababababababababab"},"requires-python":">=3.8","core-metadata":{"sha256":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"},"yanked":false,"size":1234,"upload-time":"2026-01-02T03:04:05.000000Z"},{"filename":"demo-1.1.tar.gz","url":"../demo-1.1.tar.gz","hashes":{},"yanked":"reason","dist-info-metadata":true}]}"#;

#[test]
fn fuzz_simple_pages_html_json_and_find_links() {
    use comfypak::index::page;
    let url = Url::parse("https://index.example/simple/demo/").unwrap();
    let root = Url::parse("https://index.example/simple/").unwrap();
    fuzz(
        "simple-html",
        vec![HTML_SEED.as_bytes().to_vec()],
        |bytes| {
            let body = text(bytes);
            let _ = page::parse_simple_html(&url, &body);
            let _ = page::parse_find_links_html(&url, &body);
            let _ = page::parse_project_list_html(&root, &body);
            let _ = page::parse_simple_page(&url, Some("text/html"), bytes);
        },
    );
    fuzz(
        "simple-json",
        vec![JSON_SEED.as_bytes().to_vec()],
        |bytes| {
            let _ = page::parse_simple_json(&url, bytes);
            let _ = page::parse_project_list_json(&root, bytes);
            let _ =
                page::parse_simple_page(&url, Some("application/vnd.pypi.simple.v1+json"), bytes);
        },
    );
}

const METADATA_SEED: &str = "Metadata-Version: 2.4\nName: demo-pkg\nVersion: 1.0.post1+local.7\nRequires-Python: >=3.10\nRequires-Dist: numpy>=1.26; python_version >= \"3.10\"\nRequires-Dist: extra-thing[a,b]; extra == \"x\"\nProvides-Extra: x\nSummary: a\n  continued line\n\nBody text: not a header\n";

#[test]
fn fuzz_metadata() {
    fuzz(
        "metadata",
        vec![METADATA_SEED.as_bytes().to_vec()],
        |bytes| {
            let _ = comfypak::index::core_metadata::parse_headers(bytes);
            let _ = comfypak::index::core_metadata::CoreMetadata::parse(bytes);
        },
    );
}

const RECORD_SEED: &str = "demo/__init__.py,sha256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA,12\n\"demo/with,comma.py\",sha512=abc,7\ndemo-1.0.dist-info/RECORD,,\n\"quoted \"\"x\"\"\",,\n";

#[test]
fn fuzz_record() {
    fuzz("record", vec![RECORD_SEED.as_bytes().to_vec()], |bytes| {
        let _ = comfypak::install::record::parse_record(&text(bytes));
    });
}

#[test]
fn fuzz_wheel_file_names() {
    let seeds = vec![
        b"torch-2.11.0+cu130-cp314-cp314-manylinux_2_28_x86_64.whl".to_vec(),
        b"flash_attn-2.8.3+cu12torch2.8cxx11abiTRUE-1hopper-cp313-cp313-linux_x86_64.whl".to_vec(),
        b"demo-1.0-py2.py3-none-any.whl".to_vec(),
        b"demo-1.0.tar.gz".to_vec(),
    ];
    fuzz("wheel-file-names", seeds, |bytes| {
        let name = text(bytes);
        let _ = name.parse::<comfypak::filename::WheelFilename>();
        let _ = comfypak::filename::SafeFileName::parse(&name);
        let _ = comfypak::filename::wheel_name_version(&name);
        let _ = comfypak::filename::DistFilename::parse(&name, None);
    });
}

const LOCK_SEED: &str = r#"lock-version = "1.0"
created-by = "comfypak"

[[packages]]
name = "demo"
version = "1.0"
wheels = [{ name = "demo-1.0-py3-none-any.whl", url = "https://files.example/demo-1.0-py3-none-any.whl", size = 10, hashes = { sha256 = "abababababababababababababababababababababababababababababababab" } }]

[packages.tool.comfypak]
layer = "deps"
index-name = "pypi"

[tool.comfypak]
stack = "demo"
torch-backend = "cpu"

[tool.comfypak.target]
python = "3.14"
platforms = ["manylinux_2_39_x86_64"]
venv = "/opt/venv"

[[tool.comfypak.layers]]
name = "deps"
rank = 1
paks = ["pak.txt"]
inputs-hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#;

#[test]
fn fuzz_pylock_toml() {
    fuzz("pylock", vec![LOCK_SEED.as_bytes().to_vec()], |bytes| {
        let text = text(bytes);
        if let Ok(lock) = comfypak::lock::Lock::from_toml_str(&text, Path::new("pylock.toml")) {
            // What reads back must also pass the later stages' queries without panicking.
            let _ = comfypak::fetch::targets_for(&lock, Some("all")).map(|targets| {
                for target in &targets {
                    let _ = comfypak::fetch::select_wheels(&lock, None, target);
                }
            });
        }
    });
}
