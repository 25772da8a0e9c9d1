//! What a user sees when things go wrong: the rendered text of one error per family,
//! from the real binary (`error:` first, `Caused by:` with indented causes, `help:` last,
//! nothing twice). Paths, ports and timings are normalised; the rest is compared exactly.

use std::path::Path;
use std::process::{Command, Output};

use comfypak_testkit::{Fault, FixtureIndex, ServerOptions, TestServer, WheelSpec};

use crate::common::write_index_definitions;

/// A one-layer stack for x86_64 on the index `pypi` at `url`, with `pak` as its pak file.
fn stack(dir: &Path, url: &str, pak: &str) -> std::path::PathBuf {
    write_index_definitions(dir, &[("pypi", url, "simple")]);
    let stack = dir.join("pak");
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::write(
        stack.join("stack.toml"),
        r#"[stack]
name = "errors"
index-dir = "../indexes"

[target]
python = "3.14"
platforms = ["manylinux_2_39_x86_64"]
venv = "/opt/venv"
torch-backend = "cpu"

[indexes]
default = ["pypi"]

[[layer]]
name = "deps"
paks = ["pak4.txt"]
"#,
    )
    .unwrap();
    std::fs::write(stack.join("pak4.txt"), pak).unwrap();
    stack
}

fn index() -> FixtureIndex {
    FixtureIndex::builder()
        .wheel(WheelSpec::new("requests", "2.32.0").requires("urllib3<3,>=1.26"))
        .wheel(WheelSpec::new("urllib3", "2.0.0"))
        .wheel(WheelSpec::new("urllib3", "3.0.0"))
        .build()
}

fn comfypak(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(args)
        .current_dir(dir)
        .env("COMFYPAK_CACHE_DIR", dir.join("cache"))
        .env_remove("NETRC")
        .output()
        .unwrap()
}

/// stderr with the temp folder, loopback ports and timings replaced by placeholders.
fn rendered(out: &Output, dir: &Path) -> String {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = text.replace(&dir.display().to_string(), "[TMP]");
    let mut normal = String::new();
    let mut rest = text.as_str();
    // 127.0.0.1:PORT -> 127.0.0.1:[PORT]
    while let Some(at) = rest.find("127.0.0.1:") {
        normal.push_str(&rest[..at + "127.0.0.1:".len()]);
        rest = &rest[at + "127.0.0.1:".len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        normal.push_str(if digits > 0 { "[PORT]" } else { "" });
        rest = &rest[digits..];
    }
    normal.push_str(rest);
    // "in 0.3 s" -> "in [T] s"
    let mut out_text = String::new();
    let mut rest = normal.as_str();
    while let Some(at) = rest.find(" in ") {
        out_text.push_str(&rest[..at + 4]);
        rest = &rest[at + 4..];
        let n = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .count();
        if n > 0 && rest[n..].starts_with(" s") {
            out_text.push_str("[T]");
            rest = &rest[n..];
        }
    }
    out_text.push_str(rest);
    out_text
}

fn assert_shape(text: &str) {
    assert!(text.starts_with("error: "), "{text}");
    assert!(!text.contains("error: error:"), "{text}");
    assert!(!text.contains("= help:"), "{text}");
    if let Some(help) = text.find("\nhelp: ") {
        // Help comes last: nothing but more help after the first one.
        assert!(
            text[help..]
                .lines()
                .skip(1)
                .all(|l| l.starts_with("help: ") || l.starts_with("      ")),
            "{text}"
        );
        if let Some(caused) = text.find("Caused by:") {
            assert!(caused < help, "{text}");
        }
    }
}

#[test]
fn a_pak_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(
        dir.path(),
        "http://127.0.0.1:9/simple/",
        "urllib3 >=1.0,<\n",
    );
    let out = comfypak(dir.path(), &["resolve", "--stack", stack.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let text = rendered(&out, dir.path());
    assert_shape(&text);
    assert_eq!(
        text,
        "error: [TMP]/pak/pak4.txt:1:15: invalid version specifier `>=1.0,<`: Unexpected end of \
         version specifier, expected version
  |
1 | urllib3 >=1.0,<
  |               ^

help: write a complete specifier such as `urllib3>=1.0,<2`
"
    );
}

#[test]
fn an_unreachable_index() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stack = stack(
        dir.path(),
        &format!("http://127.0.0.1:{port}/simple/"),
        "requests\n",
    );
    let out = comfypak(dir.path(), &["resolve", "--stack", stack.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let text = rendered(&out, dir.path());
    assert_shape(&text);
    assert_eq!(
        text,
        "error: resolving for 3.14:manylinux_2_39_x86_64

Caused by:
  looking up `requests`
  index `pypi` (http://127.0.0.1:[PORT]/simple/) cannot be reached
  GET http://127.0.0.1:[PORT]/simple/requests/: cannot connect to 127.0.0.1:[PORT]: the \
         connection was refused (Connection refused (os error 111)); gave up after 4 attempts in \
         [T] s: 4 failures in a row

help: point `pypi` at a mirror or a local copy with --index pypi=URL (file:// works; `comfypak \
         mirror` makes one); see README.md, \"Offline builds\"
help: check the network; behind a proxy set HTTPS_PROXY (and NO_PROXY for local hosts)
"
    );
}

/// A wheel download whose server refuses the connection names the index the lock says the
/// wheel came from (of two, the one that failed) and how to point that index elsewhere.
#[test]
fn an_unreachable_index_while_fetching() {
    let dir = tempfile::tempdir().unwrap();
    let pypi = TestServer::serve_index(
        &FixtureIndex::builder()
            .wheel(WheelSpec::new("urllib3", "2.0.0"))
            .build(),
        ServerOptions::default(),
    );
    let other = TestServer::serve_index(
        &FixtureIndex::builder()
            .wheel(WheelSpec::new("requests", "2.32.0").requires("urllib3<3,>=1.26"))
            .build(),
        ServerOptions::default(),
    );
    let stack = stack(dir.path(), &pypi.simple_url(), "requests\n");
    write_index_definitions(
        dir.path(),
        &[
            ("pypi", &pypi.simple_url(), "simple"),
            ("other", &other.simple_url(), "simple"),
        ],
    );
    let manifest = stack.join("stack.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("default = [\"pypi\"]", "default = [\"pypi\", \"other\"]"),
    )
    .unwrap();
    let stack_arg = stack.to_str().unwrap();
    let out = comfypak(dir.path(), &["--quiet", "resolve", "--stack", stack_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", rendered(&out, dir.path()));

    // `other` moves to a port where nothing listens; `pypi` stays reachable.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let lock_path = dir.path().join("pylock.toml");
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    let other_origin = other.simple_url().replace("/simple/", "");
    assert!(lock.contains(&other_origin), "{lock}");
    std::fs::write(
        &lock_path,
        lock.replace(&other_origin, &format!("http://127.0.0.1:{dead}")),
    )
    .unwrap();
    let out = comfypak(dir.path(), &["--quiet", "fetch", "--lock", "pylock.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let text = rendered(&out, dir.path());
    assert_shape(&text);
    assert_eq!(
        text,
        "error: fetching the wheels of pylock.toml

Caused by:
  index `other` (http://127.0.0.1:[PORT]/simple/) cannot be reached
  requests-2.32.0-py3-none-any.whl
  GET http://127.0.0.1:[PORT]/files/requests-2.32.0-py3-none-any.whl: cannot connect to \
         127.0.0.1:[PORT]: the connection was refused (Connection refused (os error 111)); gave \
         up after 4 attempts in [T] s: 4 failures in a row

help: point `other` at a mirror or a local copy with --index other=URL and lock again \
         (`comfypak resolve --index other=URL`, or `comfypak build --index other=URL`): the \
         lock's wheel URLs come from the index it was made from (file:// works; `comfypak \
         mirror` makes one); see README.md, \"Offline builds\"
help: check the network; behind a proxy set HTTPS_PROXY (and NO_PROXY for local hosts)
"
    );
}

#[test]
fn a_resolution_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::serve_index(&index(), ServerOptions::default());
    let stack = stack(dir.path(), &server.simple_url(), "requests\nurllib3>=3\n");
    let out = comfypak(dir.path(), &["resolve", "--stack", stack.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let text = rendered(&out, dir.path());
    assert_shape(&text);
    assert_eq!(
        text,
        "error: resolving for 3.14:manylinux_2_39_x86_64

Caused by:
  cannot resolve the stack for 3.14:manylinux_2_39_x86_64: pak4.txt:2 needs urllib3>=3, but \
         requests 2.32.0 (pak4.txt:1) needs urllib3>=1.26, <3
    because:
      - pak4.txt:1 needs requests
      - pak4.txt:2 needs urllib3>=3
      - requests 2.32.0 (pak4.txt:1) needs urllib3>=1.26, <3

  PubGrub's derivation:
      Because requests depends on urllib3 >=1.26, <3 and the stack 0 depends on requests, the \
         stack 0 depends on urllib3 >=1.26, <3.
      And because the stack 0 depends on urllib3 >=3, the stack 0 is forbidden.

help: relax requests in pak4.txt:1 or urllib3>=3 in pak4.txt:2, or pin requests to a version \
         that accepts urllib3>=3
"
    );
}

#[test]
fn a_hash_mismatch_and_a_stale_lock() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::serve_index(&index(), ServerOptions::default());
    let stack = stack(dir.path(), &server.simple_url(), "urllib3==2.0.0\n");
    let stack_arg = stack.to_str().unwrap();
    let out = comfypak(dir.path(), &["--quiet", "resolve", "--stack", stack_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", rendered(&out, dir.path()));

    // The server now sends other bytes than the lock records.
    server.inject(Fault::CorruptBody {
        path_suffix: ".whl".into(),
        times: 100,
    });
    let out = comfypak(dir.path(), &["--quiet", "fetch", "--lock", "pylock.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let text = rendered(&out, dir.path());
    assert_shape(&text);
    assert_eq!(
        text,
        "error: fetching the wheels of pylock.toml

Caused by:
  urllib3-2.0.0-py3-none-any.whl from \
         http://127.0.0.1:[PORT]/files/urllib3-2.0.0-py3-none-any.whl: sha256 mismatch: expected \
         151663cd9d3d583643b84083b26a3aa8ff91aec0059ac190bbcffc2fd759d8e4, received \
         e469f4db30dae4a0943721eec7c24af1c1e8145e3a1c9a4672d006ff545e48b7; the download was \
         discarded and nothing was cached

help: the server sent other bytes than the lock records; if the file legitimately changed \
         upstream, re-create the lock with `comfypak resolve`
"
    );

    // The stack changed since the lock was written: `--locked` says what, and how to fix it.
    std::fs::write(stack.join("pak4.txt"), "urllib3==2.0.0\nrequests\n").unwrap();
    let out = comfypak(dir.path(), &["resolve", "--stack", stack_arg, "--locked"]);
    assert_eq!(out.status.code(), Some(1));
    let text = rendered(&out, dir.path());
    assert_shape(&text);
    assert_eq!(
        text,
        "error: pylock.toml is stale: it does not match what the stack resolves to now

  layer `deps`: its inputs changed (pak lines, constraints or target: the inputs-hash differs)
  layer `deps`: requests 2.32.0: added

help: run `comfypak resolve` (without --locked) to update it
"
    );
}

#[test]
fn a_stack_that_no_longer_matches_the_lock_at_pack() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::serve_index(&index(), ServerOptions::default());
    let stack = stack(dir.path(), &server.simple_url(), "urllib3==2.0.0\n");
    let stack_arg = stack.to_str().unwrap();
    let out = comfypak(dir.path(), &["--quiet", "resolve", "--stack", stack_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", rendered(&out, dir.path()));

    // A layer added to the stack after the lock (and the install) was made.
    let manifest = stack.join("stack.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("\n[[layer]]\nname = \"volatile\"\npaks = [\"pak9.txt\"]\n");
    std::fs::write(&manifest, text).unwrap();
    std::fs::write(stack.join("pak9.txt"), "requests\n").unwrap();
    let out = comfypak(dir.path(), &["pack", "--stack", stack_arg]);
    assert_eq!(out.status.code(), Some(2));
    let text = rendered(&out, dir.path());
    assert_shape(&text);
    assert_eq!(
        text,
        "error: cannot pack: the layers of [TMP]/pak/stack.toml no longer match the lock the \
         layers were installed from

Caused by:
  pylock.toml: the lock's layers (deps) are not the stack's (deps, volatile)

help: install the layers again from a lock made from this stack (`comfypak build`, or \
         `comfypak resolve` then `comfypak install --all`), or pack with the stack the lock was \
         made from
help: the stack's layers changed since the lock was made; run `comfypak resolve` to re-create it
"
    );
}

/// Help comes from each error type's `help()`, printed last by the renderer; a message that
/// carries its own `= help:` line would print it in the middle. Checked on the source.
#[test]
fn no_message_carries_its_own_help() {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    let code = line.trim_start();
                    if !code.starts_with("//") && code.contains("= help:") {
                        found.push(format!("{}:{}: {}", path.display(), n + 1, code));
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    assert!(
        found.is_empty(),
        "help text inside messages:\n{}",
        found.join("\n")
    );
}

/// A lock value that does not parse: the file, line and column, the line itself, and the
/// reason, each once (no value or list of choices repeated by the layers of the reader).
#[test]
fn a_damaged_lock_value() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::serve_index(&index(), ServerOptions::default());
    let stack = stack(dir.path(), &server.simple_url(), "urllib3==2.0.0\n");
    let stack_arg = stack.to_str().unwrap();
    let out = comfypak(dir.path(), &["--quiet", "resolve", "--stack", stack_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", rendered(&out, dir.path()));
    let lock = std::fs::read_to_string(dir.path().join("pylock.toml")).unwrap();
    let damaged = |from: &str, to: &str| {
        assert!(lock.contains(from), "{from} not in\n{lock}");
        std::fs::write(dir.path().join("bad.toml"), lock.replacen(from, to, 1)).unwrap();
        let out = comfypak(dir.path(), &["--quiet", "fetch", "--lock", "bad.toml"]);
        assert_eq!(out.status.code(), Some(2));
        let text = rendered(&out, dir.path());
        assert_shape(&text);
        text
    };
    let line = |key: &str| {
        lock.lines()
            .position(|l| l.starts_with(key))
            .map(|n| n + 1)
            .unwrap()
    };
    let n = line("torch-backend = ");
    let gutter = " ".repeat(n.to_string().len());
    assert_eq!(
        damaged("torch-backend = \"cpu\"", "torch-backend = \"cu999\""),
        format!(
            "error: bad.toml:{n}:17: unknown torch backend \"cu999\": write one of cu130, cu128, \
             cu126, cpu
{gutter} |
{n} | torch-backend = \"cu999\"
{gutter} |                 ^^^^^^^

help: the lock was edited by hand or is damaged; re-create it with `comfypak resolve`
"
        )
    );
    // A parse error that does not quote the value gets it, and the kind of value wanted.
    let n = line("version = \"2.0.0\"");
    let gutter = " ".repeat(n.to_string().len());
    assert_eq!(
        damaged("\nversion = \"2.0.0\"", "\nversion = \"one\""),
        format!(
            "error: bad.toml:{n}:11: \"one\" is not a PEP 440 version: expected version to start \
             with a number, but no leading ASCII digits were found
{gutter} |
{n} | version = \"one\"
{gutter} |           ^^^^^

help: the lock was edited by hand or is damaged; re-create it with `comfypak resolve`
"
        )
    );
    // A marker is checked after the shape is read: the parser's account is the cause.
    assert_eq!(
        damaged(
            "\nversion = \"2.0.0\"",
            "\nversion = \"2.0.0\"\nmarker = \"platform_machine ==\""
        ),
        "error: bad.toml: `packages.marker of urllib3 2.0.0`: not a PEP 508 marker

Caused by:
  Expected marker value, found end of dependency specification
  platform_machine ==
                     ^

help: the lock was edited by hand or is damaged; re-create it with `comfypak resolve`
"
    );
}

#[test]
fn a_check_before_anything_was_installed() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path(), "http://127.0.0.1:9/simple/", "urllib3\n");
    let stack_arg = stack.to_str().unwrap();
    let out = comfypak(dir.path(), &["check", "--stack", stack_arg, "--base", "/"]);
    assert_eq!(out.status.code(), Some(2));
    let text = rendered(&out, dir.path());
    assert_shape(&text);
    assert_eq!(
        text,
        "error: no installed layers in build/layers

help: run `comfypak build` (or `comfypak install --all`) first, with the same --out
"
    );
    let out = comfypak(
        dir.path(),
        &["check", "--stack", stack_arg, "--platform", "aarch64"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        rendered(&out, dir.path()),
        "error: the stack has no platform `aarch64` (it has manylinux_2_39_x86_64)

help: pass --platform with one of those, or `all`
"
    );
}
