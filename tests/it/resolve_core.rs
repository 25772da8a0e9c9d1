//! The resolver core over real HTTP on 127.0.0.1 (testkit fixture servers) and real stack
//! folders: the torch cu130 closure with local labels and index pins, extras, markers per
//! platform, yanked, pre-releases, Requires-Python, wheel-less projects, conflicts explained
//! with pak lines, constraints, direct wheel URLs, refused sdist / VCS URLs, preferences,
//! upgrades and local-label preference.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use comfypak::cuda::Backend;
use comfypak::index::trace::RequestKind;
use comfypak::resolve::backend::select_backend;
use comfypak::resolve::profile::ResolveProfile;
use comfypak::resolve::{
    resolve_counted, resolve_target, NoProgress, Resolution, ResolveError, ResolveOptions,
    ResolveProgress, Upgrade,
};
use comfypak::stack::Stack;
use comfypak::target::Target;
use comfypak_testkit::{
    Fault, FixtureFile, FixtureIndex, RequestRecord, ServerOptions, TestServer, WheelSpec,
};
use pep440_rs::Version;
use pep508_rs::PackageName;

use crate::common::{client, name, rt, write_index_definitions};

const X86: &str = "3.14:manylinux_2_39_x86_64";
const ARM: &str = "3.14:manylinux_2_39_aarch64";

fn version(v: &str) -> Version {
    Version::from_str(v).unwrap()
}

/// A stack folder under `dir`: `indexes/<name>.toml` for each (name, simple URL), and
/// `pak/stack.toml` with the layers (name, [(pak file, contents)]), defaults and pins.
struct StackSpec<'a> {
    indexes: &'a [(&'a str, String)],
    default: &'a [&'a str],
    pins: &'a [(&'a str, &'a [&'a str])],
    layers: &'a [(&'a str, &'a [(&'a str, &'a str)])],
    backend: &'a str,
    /// Extra files next to the pak files (constraint files).
    files: &'a [(&'a str, &'a str)],
}

fn write_stack(dir: &Path, spec: &StackSpec<'_>) -> PathBuf {
    let definitions: Vec<(&str, &str, &str)> = spec
        .indexes
        .iter()
        .map(|(index, url)| (*index, url.as_str(), "simple"))
        .collect();
    write_index_definitions(dir, &definitions);
    let pak = dir.join("pak");
    std::fs::create_dir_all(&pak).unwrap();
    let quoted = |items: &[&str]| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut manifest = format!(
        "[stack]\nname = \"demo\"\nindex-dir = \"../indexes\"\n\n[target]\npython = \"3.14\"\n\
         platforms = [\"manylinux_2_39_x86_64\", \"manylinux_2_39_aarch64\"]\n\
         venv = \"/opt/venv\"\ntorch-backend = \"{}\"\n\n[indexes]\ndefault = [{}]\n",
        spec.backend,
        quoted(spec.default)
    );
    if !spec.pins.is_empty() {
        manifest.push_str("\n[indexes.pins]\n");
        for (index, packages) in spec.pins {
            manifest.push_str(&format!("{index} = [{}]\n", quoted(packages)));
        }
    }
    for (layer, files) in spec.layers {
        let names: Vec<&str> = files.iter().map(|(f, _)| *f).collect();
        manifest.push_str(&format!(
            "\n[[layer]]\nname = \"{layer}\"\npaks = [{}]\n",
            quoted(&names)
        ));
        for (file, contents) in *files {
            std::fs::write(pak.join(file), contents).unwrap();
        }
    }
    for (file, contents) in spec.files {
        std::fs::write(pak.join(file), contents).unwrap();
    }
    std::fs::write(pak.join("stack.toml"), manifest).unwrap();
    pak
}

/// One index called "pypi" with `layers`; the same server is the backend's index
/// (`pytorch-cu130`), where the torch family comes from.
fn simple_stack(dir: &Path, server: &TestServer, layers: &[(&str, &[(&str, &str)])]) -> PathBuf {
    write_stack(
        dir,
        &StackSpec {
            indexes: &[
                ("pypi", server.simple_url()),
                ("pytorch-cu130", server.simple_url()),
            ],
            default: &["pypi"],
            pins: &[],
            layers,
            backend: "cu130",
            files: &[],
        },
    )
}

/// The backend `build` chooses for `stack` (its `target.torch-backend`), once, before
/// resolving.
fn chosen_backend(stack: &Stack) -> Backend {
    select_backend(&stack.target.torch_backend, &stack.target)
        .unwrap()
        .backend
}

fn options_for(stack: &Stack) -> ResolveOptions {
    ResolveOptions::new(chosen_backend(stack))
}

/// Resolves the stack at `pak` for `target` with the options `options` makes of the stack's
/// defaults.
fn resolve_with(
    pak: &Path,
    target: &str,
    options: impl FnOnce(ResolveOptions) -> ResolveOptions,
) -> Result<Resolution, ResolveError> {
    let stack = Stack::load(pak).unwrap();
    let options = &options(options_for(&stack));
    let cache = tempfile::tempdir().unwrap();
    let client = client(cache.path());
    let target = Target::from_str(target).unwrap();
    rt().block_on(resolve_target(
        &stack,
        &target,
        &client,
        options,
        &NoProgress,
    ))
}

fn resolve(pak: &Path, target: &str) -> Resolution {
    match resolve_with(pak, target, |o| o) {
        Ok(r) => r,
        Err(e) => panic!("resolution failed:\n{e}"),
    }
}

fn resolve_err(pak: &Path, target: &str) -> String {
    match resolve_with(pak, target, |o| o) {
        Ok(r) => panic!("expected an error, resolved {:?}", versions(&r)),
        Err(e) => {
            let message = comfypak::diagnostic::with_help(&e);
            println!("{message}\n---");
            message
        }
    }
}

/// name → version of every resolved package.
fn versions(r: &Resolution) -> BTreeMap<String, String> {
    r.packages
        .iter()
        .map(|(n, p)| (n.to_string(), p.version.to_string()))
        .collect()
}

fn serve(index: &FixtureIndex) -> TestServer {
    TestServer::serve_index(index, ServerOptions::default())
}

/// Requests for METADATA (PEP 658 files, or ranges over wheels) a server answered.
fn metadata_requests(server: &TestServer) -> usize {
    server
        .log()
        .iter()
        .filter(|r| is_metadata_request(r))
        .count()
}

fn is_metadata_request(r: &RequestRecord) -> bool {
    r.path.ends_with(".metadata") || (r.path.ends_with(".whl") && r.range.is_some())
}

fn is_torch_family(project: &str) -> bool {
    let n = comfypak_testkit::normalize_name(project);
    ["torch", "torchvision", "torchaudio", "triton"].contains(&n.as_str())
        || n.starts_with("nvidia-")
        || n.starts_with("cuda-")
}

#[derive(Default)]
struct Counting {
    discovered: AtomicUsize,
    fetched: AtomicUsize,
}

impl ResolveProgress for Counting {
    fn discovered(&self, _name: &PackageName) {
        self.discovered.fetch_add(1, Ordering::Relaxed);
    }
    fn metadata_fetched(&self, _name: &PackageName) {
        self.fetched.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn resolve_core_torch_family_comes_from_cu130_with_local_label_and_the_rest_from_pypi() {
    let cu130 = FixtureIndex::pytorch_cu130().unwrap();
    // "pypi": everything of the closure that is not torch family, plus a decoy torch that
    // is newer than anything on the cu130 index: the pin must keep it out.
    let mut spec = cu130.spec();
    spec.projects.retain(|project, _| !is_torch_family(project));
    spec.projects.insert(
        "torch".to_string(),
        vec![FixtureFile::new("2.13.0", "torch-2.13.0-py3-none-any.whl")],
    );
    let pypi = FixtureIndex::from_spec(spec).unwrap();
    let torch_server = serve(&cu130);
    let pypi_server = serve(&pypi);
    let dir = tempfile::tempdir().unwrap();
    let pak = write_stack(
        dir.path(),
        &StackSpec {
            indexes: &[
                ("pypi", pypi_server.simple_url()),
                ("pytorch-cu130", torch_server.simple_url()),
            ],
            default: &["pypi"],
            pins: &[(
                "pytorch-cu130",
                &[
                    "torch",
                    "torchvision",
                    "torchaudio",
                    "triton",
                    "nvidia-*",
                    "cuda-*",
                ],
            )],
            layers: &[(
                "stable",
                &[("pak1.txt", "torch==2.11.0\ntorchvision\ntorchaudio\n")],
            )],
            backend: "cu130",
            files: &[],
        },
    );
    let stack = Stack::load(&pak).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let client = client(cache.path());
    let progress = Counting::default();
    let runtime = rt();
    let started = Instant::now();
    let (x86, reads) = runtime
        .block_on(resolve_counted(
            &stack,
            &Target::from_str(X86).unwrap(),
            &client,
            &options_for(&stack),
            &progress,
        ))
        .unwrap();
    let cold = started.elapsed();
    let requests = metadata_requests(&torch_server) + metadata_requests(&pypi_server);
    let page_requests = torch_server
        .log()
        .iter()
        .chain(pypi_server.log().iter())
        .filter(|r| r.path.starts_with("/simple/"))
        .count();
    println!(
        "torch cu130 closure (x86_64, cold cache): {} packages in {:?}; {} METADATA reads started, {} METADATA requests, {} page requests",
        x86.packages.len(),
        cold,
        reads,
        requests,
        page_requests
    );

    let torch = &x86.packages[&name("torch")];
    assert_eq!(torch.version.to_string(), "2.11.0+cu130");
    assert_eq!(torch.index, "pytorch-cu130");
    assert!(torch.index_url.starts_with("http://127.0.0.1:"));
    assert_eq!(
        torch.wheel.filename,
        "torch-2.11.0+cu130-cp314-cp314-manylinux_2_28_x86_64.whl"
    );
    assert!(torch.requested_by[0].file.ends_with("pak1.txt"));
    assert_eq!(torch.requested_by[0].line, 1);
    assert_eq!(
        x86.packages[&name("torchvision")].version.to_string(),
        "0.26.0+cu130"
    );
    assert_eq!(
        x86.packages[&name("torchaudio")].version.to_string(),
        "2.11.0+cu130"
    );
    for (n, p) in &x86.packages {
        let expected = if is_torch_family(n.as_ref()) {
            "pytorch-cu130"
        } else {
            "pypi"
        };
        assert_eq!(p.index, expected, "{n}");
    }
    // The whole real closure: every project of the fixture (it is the torch closure).
    let expected: BTreeSet<String> = cu130
        .projects()
        .keys()
        .map(|p| comfypak_testkit::normalize_name(p))
        .collect();
    let got: BTreeSet<String> = x86.packages.keys().map(|n| n.to_string()).collect();
    assert_eq!(got, expected);
    // The extras torch asks of cuda-toolkit are active and pull the nvidia libraries.
    let toolkit = &x86.packages[&name("cuda-toolkit")];
    assert!(toolkit.extras.contains("cublas"), "{:?}", toolkit.extras);
    assert!(toolkit.dependencies.contains(&name("nvidia-cublas")));
    assert!(torch.dependencies.contains(&name("triton")));
    assert_eq!(
        x86.roots,
        vec![(
            "stable".to_string(),
            vec![name("torch"), name("torchvision"), name("torchaudio")]
        )]
    );
    assert_eq!(
        progress.discovered.load(Ordering::Relaxed),
        x86.packages.len()
    );
    assert!(progress.fetched.load(Ordering::Relaxed) >= x86.packages.len());

    // aarch64: same versions, aarch64 wheels.
    let arm = runtime
        .block_on(resolve_target(
            &stack,
            &Target::from_str(ARM).unwrap(),
            &client,
            &options_for(&stack),
            &NoProgress,
        ))
        .unwrap();
    assert_eq!(versions(&arm), versions(&x86));
    assert_eq!(
        arm.packages[&name("torch")].wheel.filename,
        "torch-2.11.0+cu130-cp314-cp314-manylinux_2_28_aarch64.whl"
    );

    // Warm cache: the same resolution again.
    let started = Instant::now();
    let warm = runtime
        .block_on(resolve_target(
            &stack,
            &Target::from_str(X86).unwrap(),
            &client,
            &options_for(&stack),
            &NoProgress,
        ))
        .unwrap();
    println!(
        "torch cu130 closure (x86_64, warm cache): {:?}",
        started.elapsed()
    );
    assert_eq!(warm, x86);
}

#[test]
fn resolve_core_unpinned_torch_skips_the_release_candidate_unless_pre() {
    let cu130 = FixtureIndex::pytorch_cu130().unwrap();
    let server = serve(&cu130);
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(
        dir.path(),
        &server,
        &[("stable", &[("pak1.txt", "torch\n")])],
    );
    let r = resolve(&pak, X86);
    assert_eq!(
        r.packages[&name("torch")].version.to_string(),
        "2.11.0+cu130"
    );
    let pre = resolve_with(&pak, X86, |o| ResolveOptions {
        prerelease: true,
        ..o
    })
    .unwrap();
    assert_eq!(
        pre.packages[&name("torch")].version.to_string(),
        "2.12.0rc1+cu130"
    );
}

#[test]
fn resolve_core_extras_pull_their_requirements() {
    let index = FixtureIndex::builder()
        .wheel(
            WheelSpec::new("app", "1.0")
                .requires("base-lib>=1")
                .requires("speedup>=2; extra == \"fast\"")
                .requires("never; extra == \"other\"")
                .provides_extra("fast")
                .provides_extra("other"),
        )
        .package("base-lib", "1.0", &[])
        .package("speedup", "1.0", &[])
        .package("speedup", "2.1", &[])
        .package("never", "1.0", &[])
        .build();
    let server = serve(&index);
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(
        dir.path(),
        &server,
        &[("deps", &[("deps.txt", "app[fast]\n")])],
    );
    let r = resolve(&pak, X86);
    assert_eq!(
        versions(&r),
        BTreeMap::from([
            ("app".to_string(), "1.0".to_string()),
            ("base-lib".to_string(), "1.0".to_string()),
            ("speedup".to_string(), "2.1".to_string()),
        ])
    );
    let app = &r.packages[&name("app")];
    assert_eq!(app.extras, BTreeSet::from(["fast".to_string()]));
    assert_eq!(
        app.dependencies,
        BTreeSet::from([name("base-lib"), name("speedup")])
    );

    // Without the extra: no speedup.
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(dir.path(), &server, &[("deps", &[("deps.txt", "app\n")])]);
    let r = resolve(&pak, X86);
    assert!(!r.packages.contains_key(&name("speedup")));
    assert!(r.packages[&name("app")].extras.is_empty());

    // An extra requested by a dependency, not a pak line.
    let index = FixtureIndex::builder()
        .package("front", "1.0", &["app[fast]>=1"])
        .wheel(
            WheelSpec::new("app", "1.0")
                .requires("speedup; extra == \"fast\"")
                .provides_extra("fast"),
        )
        .package("speedup", "1.0", &[])
        .build();
    let server = serve(&index);
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(dir.path(), &server, &[("deps", &[("deps.txt", "front\n")])]);
    let r = resolve(&pak, X86);
    assert!(
        r.packages.contains_key(&name("speedup")),
        "{:?}",
        versions(&r)
    );
    assert!(r.packages[&name("app")].extras.contains("fast"));
}

#[test]
fn resolve_core_markers_differ_per_platform() {
    let index = FixtureIndex::builder()
        .package(
            "app",
            "1.0",
            &[
                "armonly>=1; platform_machine == \"aarch64\"",
                "x86only; platform_machine == \"x86_64\"",
                "old-python; python_version < \"3.10\"",
            ],
        )
        .package("armonly", "1.0", &[])
        .package("x86only", "1.0", &[])
        .package("old-python", "1.0", &[])
        .wheel(WheelSpec::new("native", "1.0").tag("cp314-cp314-manylinux_2_28_x86_64"))
        .wheel(WheelSpec::new("native", "1.0").tag("cp314-cp314-manylinux_2_28_aarch64"))
        .build();
    let server = serve(&index);
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(
        dir.path(),
        &server,
        &[(
            "deps",
            &[(
                "deps.txt",
                "app\nnative\nx86-root-only; platform_machine == \"x86_64\" and sys_platform == \"win32\"\n",
            )],
        )],
    );
    let x86 = resolve(&pak, X86);
    let arm = resolve(&pak, ARM);
    let names = |r: &Resolution| r.packages.keys().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(names(&x86), ["app", "native", "x86only"]);
    assert_eq!(names(&arm), ["app", "armonly", "native"]);
    assert!(x86.packages[&name("native")]
        .wheel
        .filename
        .ends_with("x86_64.whl"));
    assert!(arm.packages[&name("native")]
        .wheel
        .filename
        .ends_with("aarch64.whl"));
    assert_eq!(
        arm.packages[&name("app")].dependencies,
        BTreeSet::from([name("armonly")])
    );
}

#[test]
fn resolve_core_yanked_is_skipped_unless_pinned() {
    let index = FixtureIndex::builder()
        .package("lib", "1.0", &[])
        .package("lib", "2.0", &[])
        .yank("lib", "2.0", "broken build")
        .build();
    let server = serve(&index);
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(dir.path(), &server, &[("deps", &[("deps.txt", "lib\n")])]);
    assert_eq!(
        resolve(&pak, X86).packages[&name("lib")].version,
        version("1.0")
    );

    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(
        dir.path(),
        &server,
        &[("deps", &[("deps.txt", "lib==2.0\n")])],
    );
    assert_eq!(
        resolve(&pak, X86).packages[&name("lib")].version,
        version("2.0")
    );

    // Only a range that needs the yanked version: an error that says so.
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(
        dir.path(),
        &server,
        &[("deps", &[("deps.txt", "lib>=2\n")])],
    );
    let message = resolve_err(&pak, X86);
    assert!(message.contains("yanked"), "{message}");
    assert!(message.contains("deps.txt:1"), "{message}");
}

#[test]
fn resolve_core_prereleases_only_when_asked_named_or_alone() {
    let index = FixtureIndex::builder()
        .package("lib", "1.0", &[])
        .package("lib", "2.0b1", &[])
        .package("onlypre", "0.1a1", &[])
        .package("onlypre", "0.1a2", &[])
        .package("user", "1.0", &["lib>=2.0b1"])
        .build();
    let server = serve(&index);
    let case = |contents: &str, prerelease: bool| -> BTreeMap<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let pak = simple_stack(dir.path(), &server, &[("deps", &[("deps.txt", contents)])]);
        let r = resolve_with(&pak, X86, |o| ResolveOptions { prerelease, ..o }).unwrap();
        versions(&r)
    };
    assert_eq!(case("lib\n", false)["lib"], "1.0");
    assert_eq!(case("lib\n", true)["lib"], "2.0b1");
    assert_eq!(case("--pre\nlib\n", false)["lib"], "2.0b1");
    assert_eq!(case("lib>=2.0b1\n", false)["lib"], "2.0b1");
    // A dependency's specifier that names a pre-release allows it too.
    assert_eq!(case("user\n", false)["lib"], "2.0b1");
    // Nothing but pre-releases: the newest is taken.
    assert_eq!(case("onlypre\n", false)["onlypre"], "0.1a2");
}

#[test]
fn resolve_core_requires_python_skips_versions_for_newer_pythons() {
    let index = FixtureIndex::builder()
        .package("lib", "1.0", &[])
        .wheel(WheelSpec::new("lib", "2.0").requires_python(">=3.15"))
        .wheel(WheelSpec::new("lib", "1.5").requires_python(">=3.14"))
        .wheel(WheelSpec::new("future", "1.0").requires_python(">=3.15"))
        .build();
    let server = serve(&index);
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(dir.path(), &server, &[("deps", &[("deps.txt", "lib\n")])]);
    let r = resolve(&pak, X86);
    assert_eq!(r.packages[&name("lib")].version, version("1.5"));
    assert_eq!(
        r.packages[&name("lib")].requires_python.as_deref(),
        Some(">=3.14")
    );

    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(
        dir.path(),
        &server,
        &[("deps", &[("deps.txt", "future\n")])],
    );
    let message = resolve_err(&pak, X86);
    assert!(message.contains("Python >=3.15"), "{message}");
    assert!(message.contains("deps.txt:1"), "{message}");
}

/// A PEP 503 page per project, written as files and served: sdists and foreign wheels,
/// which the fixture builder (wheels for the target) does not make.
fn html_site(dir: &Path, projects: &[(&str, &[&str])]) {
    for (project, files) in projects {
        let page = dir.join("simple").join(project);
        std::fs::create_dir_all(&page).unwrap();
        let links: String = files
            .iter()
            .map(|f| format!("<a href=\"../../files/{f}\">{f}</a><br/>\n"))
            .collect();
        std::fs::write(
            page.join("index.html"),
            format!("<!DOCTYPE html><html><body>\n{links}</body></html>\n"),
        )
        .unwrap();
    }
    std::fs::create_dir_all(dir.join("files")).unwrap();
    for (_, files) in projects {
        for f in *files {
            std::fs::write(dir.join("files").join(f), b"not read").unwrap();
        }
    }
}

#[test]
fn resolve_core_wheel_less_project_lists_the_tags_it_has() {
    let site = tempfile::tempdir().unwrap();
    html_site(
        site.path(),
        &[(
            "legacy",
            &[
                "legacy-2.0.tar.gz",
                "legacy-1.0.tar.gz",
                "legacy-1.0-cp39-cp39-win_amd64.whl",
                "legacy-1.0-cp314-cp314-macosx_11_0_arm64.whl",
            ],
        )],
    );
    let server = TestServer::serve_dir(site.path(), ServerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(
        dir.path(),
        &server,
        &[("deps", &[("deps.txt", "# old project\nlegacy>=1\n")])],
    );
    let message = resolve_err(&pak, X86);
    let first = message.lines().next().unwrap();
    assert!(first.contains("deps.txt:2 needs legacy>=1"), "{message}");
    assert!(
        message.contains("legacy 2.0: an sdist legacy-2.0.tar.gz"),
        "{message}"
    );
    assert!(message.contains("cp39-cp39-win_amd64"), "{message}");
    assert!(
        message.contains("cp314-cp314-macosx_11_0_arm64"),
        "{message}"
    );
    // No base: the sdists are not built, and the message says what would build them.
    assert!(
        message.contains("not built: sdists are built only in the target runtime of a base"),
        "{message}"
    );
    assert!(
        message.contains("let comfypak build its sdist"),
        "{message}"
    );
}

#[test]
fn resolve_core_conflict_names_both_pak_lines() {
    let index = FixtureIndex::builder()
        .wheel(
            WheelSpec::new("torchish", "2.11.0+cu130")
                .tag("cp314-cp314-manylinux_2_28_x86_64")
                .requires("numpy>=2.1"),
        )
        .package("numpy", "1.26.4", &[])
        .package("numpy", "2.1.0", &[])
        .build();
    let server = serve(&index);
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(
        dir.path(),
        &server,
        &[
            (
                "stable",
                &[("pak1.txt", "# the torch layer\n\n\ntorchish==2.11.0\n")],
            ),
            (
                "deps",
                &[("pak4.txt", "pillow-like; python_version < '3'\nnumpy<2\n")],
            ),
        ],
    );
    let message = resolve_err(&pak, X86);
    let first = message.lines().next().unwrap();
    assert!(
        first.contains(
            "pak4.txt:2 needs numpy<2, but torchish 2.11.0+cu130 (pak1.txt:4) needs numpy>=2.1"
        ),
        "{message}"
    );
    assert!(
        message.contains("relax numpy<2 in pak4.txt:2 or torchish==2.11.0 in pak1.txt:4")
            || message.contains("relax torchish==2.11.0 in pak1.txt:4 or numpy<2 in pak4.txt:2"),
        "{message}"
    );
    assert!(
        message.contains("pin torchish to a version that accepts numpy<2"),
        "{message}"
    );
    assert!(message.contains("PubGrub's derivation"), "{message}");
}

#[test]
fn resolve_core_constraints_restrict_but_never_add() {
    let index = FixtureIndex::builder()
        .package("app", "1.0", &["lib"])
        .package("lib", "1.0", &[])
        .package("lib", "1.9", &[])
        .package("lib", "2.0", &[])
        .package("unused", "1.0", &[])
        .build();
    let server = serve(&index);
    let dir = tempfile::tempdir().unwrap();
    let pak = write_stack(
        dir.path(),
        &StackSpec {
            indexes: &[("pypi", server.simple_url())],
            default: &["pypi"],
            pins: &[],
            layers: &[("deps", &[("deps.txt", "-c constraints.txt\napp\n")])],
            backend: "cu130",
            files: &[("constraints.txt", "lib<2\nunused<1\n")],
        },
    );
    let r = resolve(&pak, X86);
    assert_eq!(
        versions(&r),
        BTreeMap::from([
            ("app".to_string(), "1.0".to_string()),
            ("lib".to_string(), "1.9".to_string()),
        ])
    );
    // A constraint no version satisfies, on a dependency: explained with the constraint's line.
    let dir = tempfile::tempdir().unwrap();
    let pak = write_stack(
        dir.path(),
        &StackSpec {
            indexes: &[("pypi", server.simple_url())],
            default: &["pypi"],
            pins: &[],
            layers: &[("deps", &[("deps.txt", "-c constraints.txt\napp\n")])],
            backend: "cu130",
            files: &[("constraints.txt", "lib>5\n")],
        },
    );
    let message = resolve_err(&pak, X86);
    assert!(message.contains("constraints.txt:1"), "{message}");
}

#[test]
fn resolve_core_direct_wheel_url_is_the_only_candidate() {
    let index = FixtureIndex::builder()
        .package("dep", "1.0", &[])
        .package("direct", "9.0", &[])
        .build();
    let server = serve(&index);
    // The direct wheel lives elsewhere (another server), with its sha256 in the fragment.
    let elsewhere = FixtureIndex::builder()
        .package("direct", "1.0", &["dep"])
        .build();
    let other = serve(&elsewhere);
    let file = elsewhere.file("direct-1.0-py3-none-any.whl").unwrap();
    let sha = &file.wheel.sha256;
    let url = other.file_url("direct-1.0-py3-none-any.whl");
    let line = format!("direct @ {url}#sha256={sha}\n");
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(dir.path(), &server, &[("deps", &[("deps.txt", &line)])]);
    let r = resolve(&pak, X86);
    let direct = &r.packages[&name("direct")];
    assert_eq!(direct.version, version("1.0"));
    assert_eq!(direct.index, "direct");
    assert_eq!(direct.wheel.url.as_str(), url);
    assert_eq!(direct.wheel.hashes.sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(r.packages[&name("dep")].index, "pypi");
    // The index was never asked about `direct`.
    assert_eq!(server.requests_for("/simple/direct/"), 0);
}

#[test]
fn resolve_core_refuses_what_must_be_built() {
    let index = FixtureIndex::builder().package("dep", "1.0", &[]).build();
    let server = serve(&index);
    for (line, expect) in [
        (
            "pkg @ https://index.example/files/pkg-1.0.tar.gz",
            "source distribution",
        ),
        (
            "pkg @ git+https://index.example/org/pkg.git@main",
            "git repository",
        ),
        (
            "https://index.example/files/pkg-1.0.tar.gz",
            "source distribution",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let contents = format!("dep\n{line}\n");
        let pak = simple_stack(dir.path(), &server, &[("deps", &[("deps.txt", &contents)])]);
        let message = resolve_err(&pak, X86);
        assert!(message.contains("deps.txt:2:1"), "{line}: {message}");
        assert!(message.contains(expect), "{line}: {message}");
        assert!(message.contains("before resolving"), "{line}: {message}");
    }
}

#[test]
fn resolve_core_preferences_keep_locked_versions_and_upgrade_moves_them() {
    let index = FixtureIndex::builder()
        .package("app", "1.0", &["lib>=1"])
        .package("app", "1.1", &["lib>=1"])
        .package("lib", "1.0", &[])
        .package("lib", "1.2", &[])
        .package("lib", "2.0", &[])
        .build();
    let server = serve(&index);
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(dir.path(), &server, &[("deps", &[("deps.txt", "app\n")])]);
    let preferences =
        BTreeMap::from([(name("app"), version("1.0")), (name("lib"), version("1.2"))]);
    let with = |upgrade: Upgrade| {
        versions(
            &resolve_with(&pak, X86, |o| ResolveOptions {
                preferences: preferences.clone(),
                upgrade,
                ..o
            })
            .unwrap(),
        )
    };
    let kept = with(Upgrade::None);
    assert_eq!(kept["app"], "1.0");
    assert_eq!(kept["lib"], "1.2");
    let all = with(Upgrade::All);
    assert_eq!(all["app"], "1.1");
    assert_eq!(all["lib"], "2.0");
    let one = with(Upgrade::Packages(BTreeSet::from([name("lib")])));
    assert_eq!(one["app"], "1.0");
    assert_eq!(one["lib"], "2.0");

    // A preference that no longer satisfies the inputs is dropped.
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(
        dir.path(),
        &server,
        &[("deps", &[("deps.txt", "app\nlib>=2\n")])],
    );
    let r = resolve_with(&pak, X86, |o| ResolveOptions {
        preferences: preferences.clone(),
        ..o
    })
    .unwrap();
    assert_eq!(versions(&r)["lib"], "2.0");
    assert_eq!(versions(&r)["app"], "1.0");
}

#[test]
fn resolve_core_local_versions_match_and_prefer_the_backend_label() {
    let index = FixtureIndex::builder()
        .wheel(WheelSpec::new("accel", "1.0"))
        .wheel(WheelSpec::new("accel", "1.0+cpu"))
        .wheel(WheelSpec::new("accel", "1.0+cu130"))
        .wheel(WheelSpec::new("accel", "1.0+cu126"))
        .wheel(WheelSpec::new("accel", "0.9+cu130"))
        .build();
    let server = serve(&index);
    let pick = |backend: &str, line: &str| {
        let dir = tempfile::tempdir().unwrap();
        let contents = format!("{line}\n");
        let pak = write_stack(
            dir.path(),
            &StackSpec {
                indexes: &[("pypi", server.simple_url())],
                default: &["pypi"],
                pins: &[],
                layers: &[("deps", &[("deps.txt", &contents)])],
                backend,
                files: &[],
            },
        );
        resolve(&pak, X86).packages[&name("accel")]
            .version
            .to_string()
    };
    assert_eq!(pick("cu130", "accel==1.0"), "1.0+cu130");
    assert_eq!(pick("cpu", "accel==1.0"), "1.0+cpu");
    assert_eq!(pick("cu126", "accel"), "1.0+cu126");
    assert_eq!(pick("cpu", "accel==1.0+cpu"), "1.0+cpu");
    // A CPU build is never taken on a CUDA backend, even named exactly.
    let dir = tempfile::tempdir().unwrap();
    let pak = write_stack(
        dir.path(),
        &StackSpec {
            indexes: &[("pypi", server.simple_url())],
            default: &["pypi"],
            pins: &[],
            layers: &[("deps", &[("deps.txt", "accel==1.0+cpu\n")])],
            backend: "cu130",
            files: &[],
        },
    );
    let message = resolve_err(&pak, X86);
    assert!(
        message.contains("a CPU build (no CUDA kernels), backend cu130 is a CUDA backend"),
        "{message}"
    );
    assert_eq!(pick("cu130", "accel<=0.9"), "0.9+cu130");
    assert_eq!(pick("cu130", "accel!=1.0"), "0.9+cu130");
}

#[test]
fn resolve_core_missing_project_is_explained() {
    let index = FixtureIndex::builder()
        .package("app", "1.0", &["ghost>=1"])
        .build();
    let server = serve(&index);
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(dir.path(), &server, &[("deps", &[("deps.txt", "app\n")])]);
    let message = resolve_err(&pak, X86);
    assert!(message.contains("`ghost` was not found"), "{message}");
    assert!(message.contains("app 1.0"), "{message}");
}

#[test]
fn resolve_core_hash_options_restrict_the_files() {
    let index = FixtureIndex::builder()
        .package("lib", "1.0", &[])
        .package("lib", "2.0", &[])
        .build();
    let server = serve(&index);
    let old = &index.file("lib-1.0-py3-none-any.whl").unwrap().wheel.sha256;
    let dir = tempfile::tempdir().unwrap();
    let contents = format!("lib --hash=sha256:{old}\n");
    let pak = simple_stack(dir.path(), &server, &[("deps", &[("deps.txt", &contents)])]);
    assert_eq!(
        resolve(&pak, X86).packages[&name("lib")].version,
        version("1.0")
    );
    let dir = tempfile::tempdir().unwrap();
    let contents = format!("lib>=2 --hash=sha256:{old}\n");
    let pak = simple_stack(dir.path(), &server, &[("deps", &[("deps.txt", &contents)])]);
    let message = resolve_err(&pak, X86);
    assert!(message.contains("--hash"), "{message}");
}

/// Every request to both servers takes 100 ms: a resolver that fetched one page or METADATA
/// at a time would need over 6 s for the 33-package closure (66 requests); prefetching makes
/// it wait on the depth of the graph instead.
#[test]
fn resolve_core_prefetch_waits_on_depth_not_package_count() {
    let cu130 = FixtureIndex::pytorch_cu130().unwrap();
    let server = serve(&cu130);
    server.inject(Fault::Delay {
        path_suffix: String::new(),
        millis: 100,
        times: 10_000,
    });
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(
        dir.path(),
        &server,
        &[(
            "stable",
            &[("pak1.txt", "torch==2.11.0\ntorchvision\ntorchaudio\n")],
        )],
    );
    let r = resolve(&pak, X86);
    let requests = server.log().len();
    let events = server.events();
    println!(
        "torch cu130 closure with 100 ms per request: {} packages, {requests} requests, at most {} at once",
        r.packages.len(),
        events.max_in_flight
    );
    assert_eq!(r.packages.len(), 33);
    assert!(requests >= 66, "{requests}");
    // Pages and METADATA are read concurrently, not one round trip after another: while
    // one slowed request waits, others are sent.
    assert!(
        events.max_in_flight >= 4,
        "at most {} requests in flight at once",
        events.max_in_flight
    );
}

/// Resolves `base==1.0` and `lib` against `index` served with every METADATA read slowed
/// to 100 ms, as on a real index; returns the server (for its log), the resolution and how
/// long it took.
fn resolve_walking_back(index: FixtureIndex) -> (TestServer, Resolution, Duration) {
    let server = serve(&index);
    server.inject(Fault::Delay {
        path_suffix: ".metadata".to_string(),
        millis: 100,
        times: 1000,
    });
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(
        dir.path(),
        &server,
        &[("deps", &[("deps.txt", "base==1.0\nlib\n")])],
    );
    let started = Instant::now();
    let resolution = resolve(&pak, X86);
    (server, resolution, started.elapsed())
}

/// Requests for METADATA of `project`'s wheels (see [`metadata_requests`]).
fn metadata_requests_of(server: &TestServer, project: &str) -> usize {
    let prefix = format!("/{project}-");
    server
        .log()
        .iter()
        .filter(|r| r.path.contains(&prefix) && is_metadata_request(r))
        .count()
}

/// `base>=2` for the versions above 10 (they conflict with `base==1.0`), else `base>=1`.
fn base_requirement(major: u32) -> &'static [&'static str] {
    if major > 10 {
        &["base>=2"]
    } else {
        &["base>=1"]
    }
}

/// Walking back through many versions of one project (each newer one conflicts), the solver
/// reads the METADATA of the versions it will try next ahead, in batches, instead of one
/// round trip per version; what it reads beyond its answer is bounded by one batch.
#[test]
fn resolve_core_backtracking_reads_older_versions_ahead() {
    let mut builder = FixtureIndex::builder().package("base", "1.0", &[]);
    for major in 1..=20 {
        builder = builder.package("lib", &format!("{major}.0"), base_requirement(major));
    }
    let (server, resolution, took) = resolve_walking_back(builder.build());
    assert_eq!(versions(&resolution)["lib"], "10.0");
    let lib_reads = metadata_requests_of(&server, "lib");
    println!("lib: 11 versions tried, {lib_reads} METADATA requests, {took:?}");
    // 20.0 down to 10.0 are tried; older ones are read only ahead of the walk.
    assert!(lib_reads > 11, "no read-ahead: {lib_reads} reads");
    assert!(
        lib_reads <= 11 + 32,
        "read too far ahead: {lib_reads} reads"
    );
}

/// The same walk where each version pins another project exactly (`lib N` needs
/// `pinned==N`, and the newer `pinned` conflict), as google-generativeai does with
/// google-ai-generativelanguage: the pinned versions are read ahead with the versions that
/// pin them.
#[test]
fn resolve_core_backtracking_reads_the_exact_pins_of_older_versions_ahead() {
    let mut builder = FixtureIndex::builder().package("base", "1.0", &[]);
    for major in 1..=20 {
        let pin = format!("pinned=={major}.0");
        builder = builder.package("lib", &format!("{major}.0"), &[pin.as_str()]);
        builder = builder.package("pinned", &format!("{major}.0"), base_requirement(major));
    }
    let (server, resolution, took) = resolve_walking_back(builder.build());
    assert_eq!(versions(&resolution)["lib"], "10.0");
    assert_eq!(versions(&resolution)["pinned"], "10.0");
    let (lib, pinned) = (
        metadata_requests_of(&server, "lib"),
        metadata_requests_of(&server, "pinned"),
    );
    println!("11 versions of lib and of pinned tried; METADATA requests: lib {lib}, pinned {pinned}; {took:?}");
    assert!(pinned > 11, "the pins were not read ahead: {pinned} reads");
    assert!(lib <= 11 + 32 && pinned <= 11 + 32, "read too far ahead");
}

/// Keeps each target's profile.
#[derive(Default)]
struct Profiles(std::sync::Mutex<Vec<ResolveProfile>>);

impl ResolveProgress for Profiles {
    fn profile(&self, _target: &Target, profile: &ResolveProfile) {
        self.0.lock().unwrap().push(profile.clone());
    }
}

impl Profiles {
    fn last(&self) -> ResolveProfile {
        self.0.lock().unwrap().last().cloned().expect("no profile")
    }
}

#[test]
fn resolve_core_profile_accounts_for_every_request_and_the_chain_of_causes() {
    // The real torch cu130 closure, METADATA by ranges (no PEP 658 files), on one index.
    let cu130 = FixtureIndex::pytorch_cu130().unwrap();
    let server = TestServer::serve_index(
        &cu130,
        ServerOptions {
            serve_metadata_files: false,
            ..ServerOptions::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(
        dir.path(),
        &server,
        &[("stable", &[("pak1.txt", "torch\n")])],
    );
    let stack = Stack::load(&pak).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let client = client(cache.path());
    let target = Target::from_str(X86).unwrap();
    let runtime = rt();
    let progress = Profiles::default();
    let (cold, _) = runtime
        .block_on(resolve_counted(
            &stack,
            &target,
            &client,
            &options_for(&stack),
            &progress,
        ))
        .unwrap();
    let profile = progress.last();
    println!("{profile}");
    let log = server.log();
    // Every request the server answered is in the profile, under its kind, with its bytes.
    assert_eq!(profile.requests(), log.len(), "{log:#?}");
    let pages: Vec<&RequestRecord> = log
        .iter()
        .filter(|r| r.path.starts_with("/simple/"))
        .collect();
    let ranges: Vec<&RequestRecord> = log.iter().filter(|r| r.range.is_some()).collect();
    let page_phase = &profile.phases[&RequestKind::Page];
    assert_eq!(page_phase.requests, pages.len());
    assert_eq!(
        page_phase.bytes,
        pages.iter().map(|r| r.body_bytes).sum::<u64>()
    );
    let range_requests: usize = profile
        .phases
        .iter()
        .filter(|(kind, _)| {
            matches!(
                kind,
                RequestKind::RangeTail | RequestKind::RangeDirectory | RequestKind::RangeMember
            )
        })
        .map(|(_, phase)| phase.requests)
        .sum();
    assert_eq!(range_requests, ranges.len());
    assert_eq!(profile.pages.total, cold.packages.len());
    assert_eq!(profile.pages.from_cache, 0);
    assert!(profile.metadata.total >= cold.packages.len());
    assert!(profile.solver_waiting <= profile.solver);
    // The chain starts at the pak file's requirement and alternates page, METADATA, page, ...
    // each fetch caused by the one before it: torch's page, torch's METADATA, then the
    // pages and METADATA of what torch needs.
    let chain = &profile.chain;
    assert!(chain.len() >= 4, "{chain:#?}");
    assert_eq!(chain[0].what, "page torch");
    assert!(chain[1].what.starts_with("METADATA torch 2."), "{chain:#?}");
    for (i, link) in chain.iter().enumerate() {
        let page = i % 2 == 0;
        assert_eq!(link.what.starts_with("page "), page, "{chain:#?}");
        assert!(link.requests >= 1, "{chain:#?}");
    }
    for pair in chain.windows(2) {
        assert!(pair[0].end <= pair[1].start + pair[1].gap, "{chain:#?}");
    }
    assert!(profile.chain_requests() <= profile.requests());

    // Warm: the same cache; the server's ETags make every page a revalidation (304) and
    // every METADATA comes from the cache without a request.
    server.clear_log();
    let warm = Profiles::default();
    runtime
        .block_on(resolve_counted(
            &stack,
            &target,
            &client,
            &options_for(&stack),
            &warm,
        ))
        .unwrap();
    let profile = warm.last();
    assert_eq!(profile.metadata.from_cache, profile.metadata.total);
    assert!(!profile.phases.contains_key(&RequestKind::RangeTail));
    assert_eq!(profile.requests(), server.log().len());
    assert_eq!(
        profile.phases[&RequestKind::PageNotModified].requests,
        server.log().iter().filter(|r| r.status == 304).count()
    );
}

#[test]
fn resolve_core_a_cache_that_cannot_be_written_fails_the_resolution_after_the_solve() {
    // The cache is written behind the solver (on the blocking pool); a write that fails
    // still fails the resolution, with the cache path, once the solver is done.
    let index = FixtureIndex::builder()
        .wheel(
            WheelSpec::new("demo", "1.0")
                .tag("py3-none-any")
                .requires("dep>=1"),
        )
        .wheel(WheelSpec::new("dep", "1.2").tag("py3-none-any"))
        .build();
    let server = serve(&index);
    let dir = tempfile::tempdir().unwrap();
    let pak = simple_stack(dir.path(), &server, &[("deps", &[("pak.txt", "demo\n")])]);
    let stack = Stack::load(&pak).unwrap();
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let client = client(blocker.path());
    let err = rt()
        .block_on(resolve_target(
            &stack,
            &Target::from_str(X86).unwrap(),
            &client,
            &options_for(&stack),
            &NoProgress,
        ))
        .unwrap_err();
    assert!(matches!(err, ResolveError::Cache(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("writing the index cache: cache "),
        "{text}"
    );
    assert!(
        text.contains(&blocker.path().display().to_string()),
        "{text}"
    );
}
