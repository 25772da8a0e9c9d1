//! `comfypak diff` on pairs of real locks written by `comfypak resolve` from fixture indexes
//! on 127.0.0.1: no change, a volatile-only bump, a torch bump that moves the stable layer, a
//! package moving between layers, and a same-version hash change. Each checks the text,
//! markdown and JSON outputs and the exit code.

use std::path::Path;
use std::process::{Command, Output};

use comfypak_testkit::{FixtureIndex, ServerOptions, TestServer, WheelSpec};

fn torch_index() -> FixtureIndex {
    let torch = |v: &str| {
        WheelSpec::new("torch", v)
            .tag("cp314-cp314-manylinux_2_28_x86_64")
            .requires("numpy")
    };
    FixtureIndex::builder()
        .wheel(torch("2.10.0+cu130"))
        .wheel(torch("2.11.0+cu130"))
        .build()
}

/// The public side. `pillow_extra` changes the bytes of pillow 1.0's wheel (a rebuild).
fn public_index(pillow_extra: bool) -> FixtureIndex {
    let mut pillow = WheelSpec::new("pillow", "1.0").tag("py3-none-any");
    if pillow_extra {
        pillow = pillow.file("pillow/_rebuilt.py", "REBUILT = True\n");
    }
    FixtureIndex::builder()
        .wheel(WheelSpec::new("numpy", "2.1.0").tag("py3-none-any"))
        .wheel(pillow)
        .wheel(WheelSpec::new("frontend", "1.0").tag("py3-none-any"))
        .wheel(WheelSpec::new("frontend", "1.1").tag("py3-none-any"))
        .build()
}

struct Stack {
    dir: tempfile::TempDir,
}

impl Stack {
    fn new() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let idx = dir.path().join("indexes");
        std::fs::create_dir(&idx).unwrap();
        for name in ["pypi", "torch"] {
            std::fs::write(
                idx.join(format!("{name}.toml")),
                format!(
                    "name = \"{name}\"\nurl = \"http://127.0.0.1:9/{name}/\"\nkind = \"simple\"\n"
                ),
            )
            .unwrap();
        }
        let pak = dir.path().join("pak");
        std::fs::create_dir(&pak).unwrap();
        std::fs::write(
            pak.join("stack.toml"),
            r#"
[stack]
name = "diffdemo"
[target]
python = "3.14"
platforms = ["manylinux_2_39_x86_64"]
venv = "/opt/venv"
[indexes]
default = ["pypi"]
[indexes.pins]
torch = ["torch"]
[[layer]]
name = "stable"
paks = ["pak1.txt"]
[[layer]]
name = "deps"
paks = ["pak2.txt"]
[[layer]]
name = "volatile"
paks = ["pak9.txt"]
"#,
        )
        .unwrap();
        let stack = Stack { dir };
        stack.write("pak1.txt", "torch==2.10.0\n");
        stack.write("pak2.txt", "pillow\nnumpy\n");
        stack.write("pak9.txt", "frontend==1.0\n");
        stack
    }

    fn write(&self, pak: &str, text: &str) {
        std::fs::write(self.dir.path().join("pak").join(pak), text).unwrap();
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `comfypak resolve` into `out`, starting from `out` if it exists (minimal churn).
    fn resolve(&self, torch: &TestServer, public: &TestServer, out: &str) {
        let output = Command::new(env!("CARGO_BIN_EXE_comfypak"))
            .args(["resolve", "--stack", "pak", "-o", out])
            .args(["--index", &format!("torch={}", torch.simple_url())])
            .args(["--index", &format!("pypi={}", public.simple_url())])
            .env("COMFYPAK_CACHE_DIR", self.path().join("cache"))
            .current_dir(self.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn copy(&self, from: &str, to: &str) {
        std::fs::copy(self.path().join(from), self.path().join(to)).unwrap();
    }

    fn diff(&self, old: &str, new: &str, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_comfypak"))
            .args(["diff", old, new])
            .args(extra)
            .current_dir(self.path())
            .output()
            .unwrap()
    }
}

/// Text, markdown and JSON of one diff, and its exit code.
struct Seen {
    code: Option<i32>,
    text: String,
    markdown: String,
    json: serde_json::Value,
}

fn seen(stack: &Stack, old: &str, new: &str) -> Seen {
    let text = stack.diff(old, new, &[]);
    let md = stack.diff(old, new, &["--format", "markdown"]);
    let json = stack.diff(old, new, &["--format", "json"]);
    assert_eq!(text.status.code(), md.status.code());
    assert_eq!(text.status.code(), json.status.code());
    Seen {
        code: text.status.code(),
        text: String::from_utf8(text.stdout).unwrap(),
        markdown: String::from_utf8(md.stdout).unwrap(),
        json: serde_json::from_slice(&json.stdout).unwrap(),
    }
}

fn layer<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap()
}

fn changed_layers(json: &serde_json::Value) -> Vec<String> {
    json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["changed"] == true)
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn real_lock_pairs() {
    let torch = TestServer::serve_index(&torch_index(), ServerOptions::default());
    let public = TestServer::serve_index(&public_index(false), ServerOptions::default());
    let stack = Stack::new();
    stack.resolve(&torch, &public, "a.toml");

    // No change: the same inputs give the same lock, and diff says so.
    stack.copy("a.toml", "same.toml");
    stack.resolve(&torch, &public, "same.toml");
    let s = seen(&stack, "a.toml", "same.toml");
    assert_eq!(s.code, Some(0), "{}", s.text);
    assert_eq!(s.json["changed"], false);
    assert!(s.text.contains("stable unchanged"), "{}", s.text);
    assert!(
        s.markdown.contains("| 1 `stable` | reused |"),
        "{}",
        s.markdown
    );

    // A volatile-only bump.
    stack.write("pak9.txt", "frontend==1.1\n");
    stack.copy("a.toml", "b.toml");
    stack.resolve(&torch, &public, "b.toml");
    let s = seen(&stack, "a.toml", "b.toml");
    assert_eq!(s.code, Some(1));
    assert_eq!(changed_layers(&s.json), ["volatile"]);
    let v = layer(&s.json, "volatile");
    assert_eq!(v["changes"][0]["kind"], "upgraded");
    assert_eq!(v["changes"][0]["old_version"], "1.0");
    assert_eq!(v["changes"][0]["new_version"], "1.1");
    assert!(v["inputs_changed"].as_bool().unwrap());
    assert!(
        s.text.contains("frontend 1.0 -> 1.1 upgraded"),
        "{}",
        s.text
    );
    assert!(
        s.markdown.contains("| 3 `volatile` | **rebuilds** |"),
        "{}",
        s.markdown
    );
    let guard = stack.diff("a.toml", "b.toml", &["--fail-on-layer", "deps"]);
    assert_eq!(
        guard.status.code(),
        Some(0),
        "volatile only: deps guard passes"
    );

    // A torch bump moves the stable layer.
    stack.write("pak1.txt", "torch==2.11.0\n");
    stack.copy("b.toml", "c.toml");
    stack.resolve(&torch, &public, "c.toml");
    let s = seen(&stack, "b.toml", "c.toml");
    assert_eq!(s.code, Some(1));
    assert_eq!(changed_layers(&s.json), ["stable"]);
    let st = layer(&s.json, "stable");
    assert_eq!(st["changes"][0]["name"], "torch");
    assert_eq!(st["changes"][0]["new_version"], "2.11.0+cu130");
    assert!(
        s.text
            .contains("torch 2.10.0+cu130 -> 2.11.0+cu130 upgraded"),
        "{}",
        s.text
    );
    assert!(
        s.markdown
            .contains("| `stable` | upgraded | `torch` | 2.10.0+cu130 | 2.11.0+cu130 |"),
        "{}",
        s.markdown
    );
    let guard = stack.diff("b.toml", "c.toml", &["--fail-on-layer", "stable"]);
    assert_eq!(guard.status.code(), Some(1));

    // pillow moves from deps to stable when the stable pak names it.
    stack.write("pak1.txt", "torch==2.11.0\npillow\n");
    stack.copy("c.toml", "d.toml");
    stack.resolve(&torch, &public, "d.toml");
    let s = seen(&stack, "c.toml", "d.toml");
    assert_eq!(s.code, Some(1));
    assert_eq!(changed_layers(&s.json), ["stable", "deps"]);
    assert_eq!(layer(&s.json, "stable")["changes"][0]["kind"], "moved-in");
    assert_eq!(layer(&s.json, "deps")["changes"][0]["kind"], "moved-out");
    assert_eq!(
        layer(&s.json, "stable")["download_bytes"],
        0,
        "same wheel: nothing to download"
    );
    assert!(
        s.text.contains("pillow 1.0 moved in (from deps)"),
        "{}",
        s.text
    );
    assert!(
        s.markdown
            .contains("| `deps` | moved out | `pillow` | 1.0 |  |"),
        "{}",
        s.markdown
    );

    // The index rebuilds pillow 1.0 with other bytes: same version, new hash.
    drop(public);
    let public = TestServer::serve_index(&public_index(true), ServerOptions::default());
    stack.copy("d.toml", "e.toml");
    stack.resolve(&torch, &public, "e.toml");
    let s = seen(&stack, "d.toml", "e.toml");
    assert_eq!(s.code, Some(1));
    assert_eq!(changed_layers(&s.json), ["stable"]);
    let st = layer(&s.json, "stable");
    let pillow = st["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pillow")
        .unwrap();
    assert_eq!(pillow["kind"], "rebuilt");
    assert_eq!(pillow["old_version"], pillow["new_version"]);
    assert!(st["download_bytes"].as_u64().unwrap() > 0);
    assert!(s.text.contains("pillow 1.0 rebuilt"), "{}", s.text);
    assert!(
        s.markdown
            .contains("| `stable` | rebuilt | `pillow` | 1.0 | 1.0 |"),
        "{}",
        s.markdown
    );
}
