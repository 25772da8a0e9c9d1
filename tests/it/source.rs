//! Source builds: real sdists and folders made by the tests, built into wheels by the PEP 517
//! frontend in the sandbox of a real Debian root with CPython 3.14 (made by
//! scripts/python-root.sh; skipped with a note where it is absent), with a build backend
//! written here in Python, served as a real wheel from a loopback index and installed into the
//! build environment by comfypak's own resolver and installer. Failures (a failing build, a
//! hash mismatch, a build that wants the network, one that hangs, one that writes outside its
//! folder, one whose wheel contradicts its sdist) are each checked to leave nothing in the
//! built-wheel cache.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use comfypak::build::{NetworkOptions, Session, StackBuildEnvs};
use comfypak::runtime::{Base, Runtime};
use comfypak::source::{
    build_wheel, metadata, BuildFailure, BuildOptions, MetadataOrigin, Source, SourceError,
    SourceKind,
};
use comfypak::stack::Stack;
use comfypak::target::{Arch, Target};
use comfypak_testkit::{FixtureIndex, ServerOptions, TestServer, WheelSpec};
use sha2::{Digest, Sha256};

use super::common::write_index_definitions;
use super::runtime::{debian_root, options, target};

/// A PEP 517 backend in a few lines: packs the `[project]` table of `pyproject.toml` and the
/// package folder into a wheel, with zip times from `SOURCE_DATE_EPOCH`; `[tool.mini]` adds
/// build requirements and tells a hook to fail, hang, reach the network or write outside.
const MINI_BACKEND: &str = r#"
import base64, hashlib, os, time, tomllib, zipfile

def _git_version(project):
    # What setuptools-scm reads, without git: HEAD, and a tag pointing at it.
    with open(".git/HEAD") as f:
        head = f.read().strip()
    if head.startswith("ref: "):
        with open(os.path.join(".git", head[5:])) as f:
            head = f.read().strip()
    tags = {}
    for top, dirs, names in os.walk(".git/refs/tags"):
        for n in names:
            with open(os.path.join(top, n)) as f:
                tags[f.read().strip()] = n
    if os.path.exists(".git/packed-refs"):
        with open(".git/packed-refs") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1].startswith("refs/tags/"):
                    tags[parts[0]] = parts[1][len("refs/tags/"):]
    if head in tags:
        return tags[head].lstrip("v")
    return project["version"] + ".dev0+g" + head[:7]

def _load():
    with open("pyproject.toml", "rb") as f:
        data = tomllib.load(f)
    project, tool = data["project"], data.get("tool", {}).get("mini", {})
    if tool.get("version-from-git"):
        project["version"] = _git_version(project)
    return project, tool

def _dist(name):
    return name.replace("-", "_").replace(".", "_").lower()

def _metadata(name, version, project):
    lines = ["Metadata-Version: 2.4", "Name: " + name, "Version: " + version]
    lines += ["Requires-Dist: " + r for r in project.get("dependencies", [])]
    return "\n".join(lines) + "\n"

def _act(tool, hook):
    what = tool.get(hook)
    if what == "fail":
        for i in range(1, 41):
            print("mini: log line %d" % i)
        raise RuntimeError("told to fail in " + hook)
    if what == "hang":
        print("mini: hanging", flush=True)
        while True:
            time.sleep(1)
    if what == "network":
        import urllib.request
        urllib.request.urlopen("http://192.0.2.10/blob-1.0.tar.gz")
    if what == "write-outside":
        with open("/usr/lib/mini-was-here", "w") as f:
            f.write("x")

def get_requires_for_build_wheel(config_settings=None):
    project, tool = _load()
    _act(tool, "get_requires")
    return list(tool.get("extra-requires", []))

def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    project, tool = _load()
    _act(tool, "prepare")
    d = "%s-%s.dist-info" % (_dist(project["name"]), project["version"])
    os.makedirs(os.path.join(metadata_directory, d))
    with open(os.path.join(metadata_directory, d, "METADATA"), "w") as f:
        f.write(_metadata(project["name"], project["version"], project))
    return d

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project, tool = _load()
    _act(tool, "build")
    built_with = []
    for module in tool.get("import", []):
        built_with.append((module, getattr(__import__(module), "VALUE", None)))
    for module in tool.get("import-if-present", []):
        try:
            built_with.append((module, getattr(__import__(module), "VALUE", None)))
        except ImportError:
            built_with.append((module, None))
    for module in tool.get("require-if-present", []):
        try:
            __import__(module)
            project.setdefault("dependencies", []).append(module.replace("_", "-"))
        except ImportError:
            pass
    name = _dist(project["name"])
    version = tool.get("claim-version", project["version"])
    date = time.gmtime(max(int(os.environ["SOURCE_DATE_EPOCH"]), 315532800))[:6]
    contents = []
    for top, dirs, names in os.walk(name):
        dirs.sort()
        for n in sorted(names):
            path = os.path.join(top, n)
            with open(path, "rb") as f:
                contents.append((path, f.read()))
    if tool.get("record-imports"):
        contents.append((name + "/_built_with.py", ("BUILT_WITH = %r\n" % built_with).encode()))
    if config_settings:
        contents.append((name + "/_config.py", ("CONFIG = %r\n" % sorted(config_settings.items())).encode()))
    dist_info = "%s-%s.dist-info" % (name, version)
    contents.append((dist_info + "/METADATA", _metadata(project["name"], version, project).encode()))
    contents.append((dist_info + "/WHEEL", b"Wheel-Version: 1.0\nGenerator: mini\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
    record = []
    for path, data in contents:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (path, digest, len(data)))
    record.append(dist_info + "/RECORD,,")
    contents.append((dist_info + "/RECORD", ("\n".join(record) + "\n").encode()))
    wheel = "%s-%s-py3-none-any.whl" % (name, version)
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as z:
        for path, data in contents:
            info = zipfile.ZipInfo(path, date)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    print("mini: built", wheel)
    return wheel
"#;

/// The loopback index: the backend, and a helper a project's `get_requires` asks for.
fn index() -> FixtureIndex {
    FixtureIndex::builder()
        .wheel(WheelSpec::new("mini-backend", "1.0").file("mini_backend/__init__.py", MINI_BACKEND))
        .wheel(
            WheelSpec::new("helper-dep", "2.0")
                .file("helper_dep/__init__.py", "VALUE = 'helped'\n"),
        )
        .wheel(
            WheelSpec::new("helper-dep", "1.0")
                .file("helper_dep/__init__.py", "VALUE = 'helped-1.0'\n"),
        )
        .wheel(WheelSpec::new("six", "1.17.0"))
        .build()
}

/// A stack folder whose one index is `server`; returns the loaded stack.
fn stack(dir: &Path, server: &TestServer) -> Stack {
    write_index_definitions(dir, &[("pypi", server.simple_url().as_str(), "simple")]);
    let pak = dir.join("pak");
    std::fs::create_dir_all(&pak).unwrap();
    std::fs::write(pak.join("deps.txt"), "").unwrap();
    std::fs::write(
        pak.join("stack.toml"),
        "[stack]\nname = \"demo\"\nindex-dir = \"../indexes\"\n\n[target]\npython = \"3.14\"\n\
         platforms = [\"manylinux_2_39_x86_64\"]\nvenv = \"/opt/venv\"\ntorch-backend = \"cpu\"\n\n\
         [indexes]\ndefault = [\"pypi\"]\n\n[[layer]]\nname = \"deps\"\npaks = [\"deps.txt\"]\n",
    )
    .unwrap();
    Stack::load(&pak).unwrap()
}

/// `pyproject.toml` of project `name` 1.0 built by the mini backend, with `tool` lines.
fn pyproject(name: &str, tool: &str) -> String {
    format!(
        "[build-system]\nrequires = [\"mini-backend>=1\"]\nbuild-backend = \"mini_backend\"\n\n\
         [project]\nname = \"{name}\"\nversion = \"1.0\"\ndependencies = [\"six>=1\"]\n\n\
         [tool.mini]\n{tool}\n"
    )
}

/// The files of project `name` (a module that says hello).
fn project_files(name: &str, tool: &str) -> Vec<(String, String)> {
    vec![
        ("pyproject.toml".to_string(), pyproject(name, tool)),
        (
            format!("{name}/__init__.py"),
            format!("GREETING = 'hello from {name}'\n"),
        ),
    ]
}

/// A `.tar.gz` sdist of project `name` 1.0 (top folder `name-1.0/`) with a PEP 643 PKG-INFO
/// (`Metadata-Version` as given).
fn write_sdist(dir: &Path, name: &str, tool: &str, metadata_version: &str) -> PathBuf {
    let path = dir.join(format!("{name}-1.0.tar.gz"));
    let mut files = project_files(name, tool);
    files.push((
        "PKG-INFO".to_string(),
        format!(
            "Metadata-Version: {metadata_version}\nName: {name}\nVersion: 1.0\nRequires-Dist: six>=1\n"
        ),
    ));
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (rel, text) in &files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(text.len() as u64);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, format!("{name}-1.0/{rel}"), text.as_bytes())
            .unwrap();
    }
    let bytes = tar.into_inner().unwrap().finish().unwrap();
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    path
}

fn write_folder(dir: &Path, name: &str, tool: &str) -> PathBuf {
    let root = dir.join(name);
    for (rel, text) in project_files(name, tool) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    root
}

struct Env {
    _dir: tempfile::TempDir,
    _server: TestServer,
    work: PathBuf,
    cache: PathBuf,
    session: Session,
    stack: Stack,
    runtime: Runtime,
    target: Target,
}

impl Env {
    fn new() -> Option<Env> {
        let root = debian_root()?;
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::serve_index(&index(), ServerOptions::default());
        let cache = dir.path().join("cache");
        let session = Session::new(NetworkOptions {
            cache_dir: Some(cache.clone()),
            ..NetworkOptions::default()
        })
        .unwrap();
        let stack = stack(&dir.path().join("stack"), &server);
        let target = target((3, 14), Arch::X86_64);
        let runtime = Runtime::for_platform(
            &Base::Root(root),
            &target,
            "/opt/venv",
            &options(&cache, Duration::from_secs(120)),
        )
        .unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        Some(Env {
            work,
            cache,
            _dir: dir,
            _server: server,
            session,
            stack,
            runtime,
            target,
        })
    }

    /// The stack's torch backend, chosen as `build` chooses it.
    fn backend(&self) -> comfypak::cuda::Backend {
        comfypak::resolve::backend::select_backend(
            &self.stack.target.torch_backend,
            &self.stack.target,
        )
        .unwrap()
        .backend
    }

    fn envs(&self) -> StackBuildEnvs<'_> {
        StackBuildEnvs {
            session: &self.session,
            stack: &self.stack,
            backend: self.backend(),
            target: self.target.clone(),
            image: None,
        }
    }

    fn options(&self) -> BuildOptions {
        let mut options = BuildOptions::new(&self.cache);
        options.jobs = 2;
        options
    }

    fn build(
        &self,
        kind: SourceKind,
        package: &str,
        options: &BuildOptions,
    ) -> Result<comfypak::source::BuiltWheel, SourceError> {
        let source = Source {
            kind,
            package: package.to_string(),
            expected_sha256: None,
        };
        build_wheel(&source, &self.target, &self.runtime, &self.envs(), options)
    }

    /// The entries of the built-wheel cache.
    fn cached_builds(&self) -> Vec<String> {
        match std::fs::read_dir(self.cache.join("source-builds/v1")) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn wheel_members(path: &Path) -> Vec<String> {
    let zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    zip.file_names().map(str::to_string).collect()
}

#[test]
fn source_sdist_and_folder_build_in_the_sandbox_and_the_second_build_is_a_cache_hit() {
    let Some(env) = Env::new() else { return };
    // get_requires asks for helper-dep; build_wheel imports it: the second environment holds it.
    let tool = "extra-requires = [\"helper-dep\"]\nimport = [\"helper_dep\"]";
    let sdist = write_sdist(&env.work, "demo", tool, "2.2");
    let options = env.options();

    let first = env
        .build(SourceKind::Sdist(sdist.clone()), "demo", &options)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!first.cached);
    assert_eq!(first.filename, "demo-1.0-py3-none-any.whl");
    assert_eq!(sha256_of(&first.path), first.sha256);
    assert_eq!(first.source_sha256, sha256_of(&sdist));
    let members = wheel_members(&first.path);
    assert!(
        members.contains(&"demo/__init__.py".to_string()),
        "{members:?}"
    );
    let log = std::fs::read_to_string(&first.log).unwrap();
    assert!(
        log.contains("mini: built demo-1.0-py3-none-any.whl"),
        "{log}"
    );
    assert!(
        log.contains("get_requires_for_build_wheel via mini_backend"),
        "{log}"
    );

    let second = env
        .build(SourceKind::Sdist(sdist.clone()), "demo", &options)
        .unwrap();
    assert!(second.cached, "the same inputs are never built twice");
    assert_eq!(second.sha256, first.sha256);
    assert_eq!(second.key, first.key);
    println!(
        "demo sdist: first build {:.2}s, second (cache hit) {:.2}s",
        first.seconds, second.seconds
    );

    // A clean rebuild makes the same bytes (SOURCE_DATE_EPOCH, sorted members).
    std::fs::remove_dir_all(env.cache.join("source-builds/v1")).unwrap();
    let again = env
        .build(SourceKind::Sdist(sdist.clone()), "demo", &options)
        .unwrap();
    assert!(!again.cached);
    assert_eq!(again.sha256, first.sha256, "two clean builds differ");

    // Another config setting is another build.
    let mut other = env.options();
    other
        .config_settings
        .insert("flavour".to_string(), "b".to_string());
    let flavoured = env
        .build(SourceKind::Sdist(sdist.clone()), "demo", &other)
        .unwrap();
    assert!(!flavoured.cached);
    assert_ne!(flavoured.key, first.key);

    // The same project as a local folder.
    let folder = write_folder(&env.work, "demo", tool);
    let from_folder = env
        .build(SourceKind::Directory(folder.clone()), "demo", &options)
        .unwrap();
    assert_eq!(from_folder.filename, "demo-1.0-py3-none-any.whl");
    assert!(!from_folder.cached);
    // The folder was not written to (the build ran on a copy).
    assert!(!folder.join("build").exists());
    let entries: Vec<_> = std::fs::read_dir(&folder).unwrap().flatten().collect();
    assert_eq!(entries.len(), 2);
    // A change to the folder is a new build; the same content again is a hit.
    let hit = env
        .build(SourceKind::Directory(folder.clone()), "demo", &options)
        .unwrap();
    assert!(hit.cached);
    std::fs::write(folder.join("demo/extra.py"), "X = 1\n").unwrap();
    let changed = env
        .build(SourceKind::Directory(folder), "demo", &options)
        .unwrap();
    assert!(!changed.cached);
    assert!(wheel_members(&changed.path).contains(&"demo/extra.py".to_string()));
    // Nothing of the builds' work folders is left.
    let tmp = env.cache.join("source-builds/tmp");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn source_metadata_from_pep643_pkg_info_or_the_prepare_hook_and_cached() {
    let Some(env) = Env::new() else { return };
    let options = env.options();
    let source = |kind| Source {
        kind,
        package: "demo".to_string(),
        expected_sha256: None,
    };
    // PEP 643 PKG-INFO: read directly, even though the backend would fail.
    let static_sdist = write_sdist(&env.work, "demo", "prepare = \"fail\"", "2.2");
    let (meta, origin) = metadata(
        &source(SourceKind::Sdist(static_sdist)),
        &env.target,
        &env.runtime,
        &env.envs(),
        &options,
    )
    .unwrap();
    assert_eq!(origin, MetadataOrigin::PkgInfo);
    assert_eq!(meta.name, "demo");
    assert_eq!(meta.requires_dist.len(), 1);

    // Metadata-Version 2.1: the prepare hook runs in the runtime; then the cache answers.
    let old_dir = env.work.join("old");
    std::fs::create_dir_all(&old_dir).unwrap();
    let old = write_sdist(&old_dir, "demo", "", "2.1");
    let (meta, origin) = metadata(
        &source(SourceKind::Sdist(old.clone())),
        &env.target,
        &env.runtime,
        &env.envs(),
        &options,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(origin, MetadataOrigin::PrepareHook);
    assert_eq!(meta.version.to_string(), "1.0");
    assert_eq!(meta.requires_dist[0].name.as_ref(), "six");
    let (_, origin) = metadata(
        &source(SourceKind::Sdist(old)),
        &env.target,
        &env.runtime,
        &env.envs(),
        &options,
    )
    .unwrap();
    assert_eq!(origin, MetadataOrigin::Cache);
    assert!(env.cached_builds().is_empty(), "no wheel was built");
}

#[test]
fn source_build_failures_say_what_failed_and_cache_nothing() {
    let Some(env) = Env::new() else { return };
    let options = env.options();
    let case = |name: &str, tool: &str, options: &BuildOptions| -> SourceError {
        let dir = env.work.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let sdist = write_sdist(&dir, "demo", tool, "2.2");
        let e = env
            .build(SourceKind::Sdist(sdist), "demo", options)
            .expect_err(name);
        println!("--- {name}:\n{e}\nhelp: {:?}", e.help());
        e
    };

    // A failing build: package, backend, the last 30 lines of its log, the whole log's path.
    let e = case("fail", "build = \"fail\"", &options);
    let SourceError::BuildFailed(failure) = &e else {
        panic!("{e:?}")
    };
    let BuildFailure {
        package,
        backend,
        hook,
        tail,
        log,
        ..
    } = failure.as_ref();
    assert_eq!(package, "demo");
    assert_eq!(backend, "mini_backend");
    assert_eq!(hook, "build_wheel");
    assert_eq!(tail.lines().count(), 30, "{tail}");
    assert!(
        tail.contains("RuntimeError: told to fail in build"),
        "{tail}"
    );
    assert!(tail.contains("mini: log line 40"), "{tail}");
    assert!(!tail.lines().any(|l| l == "mini: log line 2"), "{tail}");
    let whole = std::fs::read_to_string(log).unwrap();
    assert!(whole.lines().any(|l| l == "mini: log line 2"), "{whole}");
    let message = e.to_string();
    assert!(
        message.contains("building demo failed: backend mini_backend"),
        "{message}"
    );
    assert!(message.contains(&log.display().to_string()), "{message}");

    // A hash mismatch: refused before anything runs.
    let dir = env.work.join("hash");
    std::fs::create_dir_all(&dir).unwrap();
    let sdist = write_sdist(&dir, "demo", "", "2.2");
    let e = build_wheel(
        &Source {
            kind: SourceKind::Sdist(sdist),
            package: "demo".to_string(),
            expected_sha256: Some("0".repeat(64)),
        },
        &env.target,
        &env.runtime,
        &env.envs(),
        &options,
    )
    .unwrap_err();
    assert!(matches!(e, SourceError::HashMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains(&"0".repeat(64)), "{e}");

    // A build that reaches for the network: the package and the URL it wanted.
    let e = case("network", "build = \"network\"", &options);
    let message = e.to_string();
    assert!(matches!(e, SourceError::Network { .. }), "{e:?}");
    assert!(
        message.contains("building demo tried to reach the network"),
        "{message}"
    );
    assert!(
        message.contains("http://192.0.2.10/blob-1.0.tar.gz"),
        "{message}"
    );

    // A build that writes outside its folder: the base is read-only.
    let e = case("outside", "build = \"write-outside\"", &options);
    let SourceError::BuildFailed(failure) = &e else {
        panic!("{e:?}")
    };
    let tail = &failure.tail;
    assert!(tail.contains("Read-only file system"), "{tail}");

    // A wheel that contradicts the sdist's PKG-INFO.
    let e = case("contradiction", "claim-version = \"2.0\"", &options);
    let message = e.to_string();
    assert!(matches!(e, SourceError::BadOutput { .. }), "{e:?}");
    assert!(
        message.contains("contradicts the sdist's PKG-INFO"),
        "{message}"
    );

    // A backend that is not installed.
    let dir = env.work.join("nobackend");
    let root = dir.join("demo");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("pyproject.toml"),
        "[build-system]\nrequires = []\nbuild-backend = \"no_such_backend\"\n",
    )
    .unwrap();
    let e = env
        .build(SourceKind::Directory(root), "demo", &options)
        .unwrap_err();
    assert!(
        e.to_string().contains("No module named 'no_such_backend'"),
        "{e}"
    );

    // A build that hangs is killed at the time limit.
    let mut short = env.options();
    short.timeout = Duration::from_secs(5);
    let e = case("hang", "build = \"hang\"", &short);
    assert!(matches!(e, SourceError::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("ran longer than 5s"), "{e}");

    assert!(
        env.cached_builds().is_empty(),
        "a failed build cached {:?}",
        env.cached_builds()
    );
    let tmp = env.cache.join("source-builds/tmp");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

/// Progress that keeps the notes (which say whether a source was built or came from cache).
#[derive(Default)]
struct Notes(std::sync::Mutex<Vec<String>>);

impl comfypak::resolve::ResolveProgress for Notes {}
impl comfypak::build::Progress for Notes {
    fn note(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

impl Notes {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

#[test]
fn source_requirements_are_built_locked_with_their_sources_and_installed_from_the_built_bytes() {
    use comfypak::build::{InstallRequest, ResolveRequest, ResolveStatus};
    use comfypak::runtime::Bases;

    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::serve_index(&index(), ServerOptions::default());
    // An sdist served over HTTP, one on disk, and a folder.
    let files = dir.path().join("site/files");
    std::fs::create_dir_all(&files).unwrap();
    let remote = write_sdist(&files, "remote", "", "2.2");
    let remote_sha = sha256_of(&remote);
    let site = TestServer::serve_dir(&dir.path().join("site"), ServerOptions::default());
    let local = write_sdist(dir.path(), "localsd", "", "2.1");
    let folder = write_folder(dir.path(), "folderpkg", "");
    // Written relative to the pak file (stack/pak/deps.txt): a bare sdist path and a named
    // folder.
    write_folder(dir.path(), "relfolder", "");
    let stack_dir = dir.path().join("stack");
    stack(&stack_dir, &server);
    let deps = |remote_sha: &str| {
        format!(
            "remote @ {}/files/remote-1.0.tar.gz#sha256={remote_sha}\n../../{}\n\
             folderpkg @ file://{}\nrelfolder @ ../../relfolder\n",
            site.url(),
            local.file_name().unwrap().to_str().unwrap(),
            folder.display()
        )
    };
    std::fs::write(stack_dir.join("pak/deps.txt"), deps(&remote_sha)).unwrap();
    let cache = dir.path().join("cache");
    let session = Session::new(NetworkOptions {
        cache_dir: Some(cache.clone()),
        ..NetworkOptions::default()
    })
    .unwrap();
    let lock_path = stack_dir.join("pylock.toml");
    let request = ResolveRequest {
        stack: stack_dir.join("pak"),
        lock: lock_path.clone(),
        bases: Bases {
            all: Some(root.clone()),
            ..Bases::default()
        },
        ..ResolveRequest::default()
    };
    let notes = Notes::default();
    let started = std::time::Instant::now();
    let report = comfypak::build::resolve(&session, &request, &notes)
        .unwrap_or_else(|e| panic!("{e}\n{:?}", e.help()));
    let cold = started.elapsed().as_secs_f64();
    assert_eq!(report.status, ResolveStatus::Written);
    let built = notes.take();
    assert_eq!(
        built.iter().filter(|n| n.contains(" built in ")).count(),
        4,
        "{built:?}"
    );

    // The lock names the sources and the built wheels, and nothing of this machine's cache.
    let text = std::fs::read_to_string(&lock_path).unwrap();
    println!("{text}");
    assert!(!text.contains(cache.to_str().unwrap()), "{text}");
    let lock = comfypak::lock::Lock::read(&lock_path).unwrap();
    let entry = |name: &str| {
        lock.packages
            .iter()
            .find(|p| p.name.as_ref() == name)
            .unwrap_or_else(|| panic!("{name} not locked"))
    };
    let remote_entry = entry("remote");
    let sdist = remote_entry.sdist.as_ref().unwrap();
    assert_eq!(
        sdist.url.as_deref(),
        Some(format!("{}/files/remote-1.0.tar.gz", site.url()).as_str())
    );
    assert_eq!(sdist.hashes.sha256.as_ref().unwrap().as_str(), remote_sha);
    assert!(remote_entry.wheels.is_empty());
    let remote_built = &remote_entry.tool.comfypak.built;
    assert_eq!(remote_built.len(), 1);
    assert_eq!(remote_built[0].name.as_str(), "remote-1.0-py3-none-any.whl");
    assert!(remote_built[0].url.is_none() && remote_built[0].path.is_none());
    let built_sha = remote_built[0].sha256().unwrap().as_str().to_string();
    let in_cache = cache
        .join("source-builds/v1")
        .read_dir()
        .unwrap()
        .flatten()
        .map(|e| e.path().join("remote-1.0-py3-none-any.whl"))
        .find(|p| p.is_file())
        .unwrap();
    assert_eq!(sha256_of(&in_cache), built_sha);
    assert_eq!(
        remote_built[0].size,
        Some(std::fs::metadata(&in_cache).unwrap().len())
    );
    // Local sources are recorded relative to the lock, as PEP 751 has it.
    assert_eq!(
        entry("localsd").sdist.as_ref().unwrap().path.as_deref(),
        Some("../localsd-1.0.tar.gz")
    );
    assert_eq!(
        entry("relfolder").directory.as_ref().unwrap().path,
        "../relfolder"
    );
    let folder_entry = entry("folderpkg");
    assert!(folder_entry.directory.is_some());
    assert!(folder_entry.tool.comfypak.source_hash.is_some());
    // The sources' dependency came from the index.
    assert_eq!(entry("six").version.to_string(), "1.17.0");

    // Again: every source comes from the build cache (0 builds), and the lock is unchanged.
    let started = std::time::Instant::now();
    let again = comfypak::build::resolve(&session, &request, &notes).unwrap();
    let warm = started.elapsed().as_secs_f64();
    assert_eq!(again.status, ResolveStatus::Unchanged);
    let notes_again = notes.take();
    assert_eq!(
        notes_again
            .iter()
            .filter(|n| n.contains("from the build cache"))
            .count(),
        4,
        "{notes_again:?}"
    );
    println!("resolve with 4 source builds: cold {cold:.2}s, warm (0 builds) {warm:.2}s");

    // Install uses exactly the built bytes, from the cache.
    let out = dir.path().join("out");
    comfypak::build::install(
        &session,
        &InstallRequest {
            lock: lock_path.clone(),
            out: out.clone(),
            ..InstallRequest::default()
        },
        &comfypak::build::Silent,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let site_packages = out.join("layers/deps/opt/venv/lib/python3.14/site-packages");
    for module in ["remote", "localsd", "folderpkg", "relfolder", "six"] {
        assert!(
            site_packages.join(module).join("__init__.py").is_file(),
            "{module} not installed"
        );
    }
    let direct_url =
        std::fs::read_to_string(site_packages.join("remote-1.0.dist-info/direct_url.json"))
            .unwrap();
    assert!(direct_url.contains("remote-1.0.tar.gz"), "{direct_url}");

    // Without the built wheel in the cache, install says so (and does not guess).
    std::fs::remove_dir_all(cache.join("wheels")).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    let e = comfypak::build::install(
        &session,
        &InstallRequest {
            lock: lock_path.clone(),
            out: out.clone(),
            offline: true,
            ..InstallRequest::default()
        },
        &comfypak::build::Silent,
    )
    .unwrap_err();
    let message = format!("{e} {:?}", e.help());
    assert!(message.contains("built from source"), "{message}");

    // A remote sdist whose bytes are not the pinned ones is refused.
    std::fs::write(stack_dir.join("pak/deps.txt"), deps(&"1".repeat(64))).unwrap();
    let e = comfypak::build::resolve(&session, &request, &notes).unwrap_err();
    let message = e.to_string();
    assert!(message.contains("1111111111"), "{message}");
    assert!(message.contains(&remote_sha), "{message}");
}

/// Serves the git repositories under `root` over smart HTTP on 127.0.0.1, each request
/// answered by a real `git http-backend` (CGI): one connection at a time per thread, the
/// request body read whole (`Content-Length` or chunked), the CGI answer sent back with
/// `Connection: close`.
struct GitServer {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl GitServer {
    fn start(root: &Path) -> GitServer {
        use std::io::{BufRead, BufReader, Read};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let root = root.to_path_buf();
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let root = root.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).is_err() {
                        return;
                    }
                    let mut parts = request_line.split_whitespace();
                    let method = parts.next().unwrap_or("GET").to_string();
                    let target = parts.next().unwrap_or("/").to_string();
                    let mut headers = Vec::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        let line = line.trim_end().to_string();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                        }
                    }
                    let header = |name: &str| {
                        headers
                            .iter()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.clone())
                    };
                    let mut body = Vec::new();
                    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                        loop {
                            let mut size = String::new();
                            reader.read_line(&mut size).unwrap();
                            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                            if n == 0 {
                                let mut end = String::new();
                                let _ = reader.read_line(&mut end);
                                break;
                            }
                            let mut chunk = vec![0; n + 2];
                            reader.read_exact(&mut chunk).unwrap();
                            body.extend_from_slice(&chunk[..n]);
                        }
                    } else if let Some(len) = header("content-length") {
                        let mut chunk = vec![0; len.parse().unwrap_or(0)];
                        reader.read_exact(&mut chunk).unwrap();
                        body = chunk;
                    }
                    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                    let mut cgi = std::process::Command::new("git");
                    cgi.arg("http-backend")
                        .env_clear()
                        .env("PATH", std::env::var("PATH").unwrap_or_default())
                        .env("GIT_PROJECT_ROOT", &root)
                        .env("GIT_HTTP_EXPORT_ALL", "1")
                        .env("REQUEST_METHOD", &method)
                        .env("PATH_INFO", path)
                        .env("QUERY_STRING", query)
                        .env("CONTENT_LENGTH", body.len().to_string())
                        .env("REMOTE_ADDR", "127.0.0.1")
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::piped());
                    if let Some(t) = header("content-type") {
                        cgi.env("CONTENT_TYPE", t);
                    }
                    if let Some(p) = header("git-protocol") {
                        cgi.env("GIT_PROTOCOL", p);
                    }
                    let mut child = cgi.spawn().unwrap();
                    let mut stdin = child.stdin.take().unwrap();
                    let writer = std::thread::spawn(move || {
                        let _ = stdin.write_all(&body);
                    });
                    let output = child.wait_with_output().unwrap();
                    let _ = writer.join();
                    let out = output.stdout;
                    let split = out
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|p| (p, 4))
                        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)));
                    let (head, rest) = match split {
                        Some((p, n)) => (
                            String::from_utf8_lossy(&out[..p]).to_string(),
                            &out[p + n..],
                        ),
                        None => (String::new(), &out[..]),
                    };
                    let mut status = "200 OK".to_string();
                    let mut response_headers = String::new();
                    for line in head.lines() {
                        if let Some(s) = line.strip_prefix("Status:") {
                            status = s.trim().to_string();
                        } else if !line.is_empty() {
                            response_headers.push_str(line);
                            response_headers.push_str("\r\n");
                        }
                    }
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\n{response_headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                        rest.len()
                    );
                    let _ = stream.write_all(rest);
                });
            }
        });
        GitServer { addr, stop }
    }

    fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}", self.addr)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

fn run_git(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "comfypak tests")
        .env("GIT_AUTHOR_EMAIL", "tests@comfypak.invalid")
        .env("GIT_COMMITTER_NAME", "comfypak tests")
        .env("GIT_COMMITTER_EMAIL", "tests@comfypak.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Adds every file of the work tree `work` and commits them as `message`; returns the commit.
fn commit_all(work: &Path, message: &str) -> String {
    run_git(work, &["add", "."]);
    run_git(work, &["commit", "--quiet", "-m", message]);
    run_git(work, &["rev-parse", "HEAD"])
}

/// Project `name` of the mini backend (`tool` lines) in `dir/name`, made a git repository
/// whose `main` holds it in one commit, `message`; returns the work tree and that commit.
fn git_project(dir: &Path, name: &str, tool: &str, message: &str) -> (PathBuf, String) {
    let work = write_folder(dir, name, tool);
    run_git(&work, &["init", "--quiet", "--initial-branch=main"]);
    let head = commit_all(&work, message);
    (work, head)
}

/// A bare clone of a work tree in `served/REPO`, served over smart HTTP on loopback.
struct ServedRepo {
    server: GitServer,
    bare: PathBuf,
    repo: String,
}

impl ServedRepo {
    /// Clones `work` bare into `dir/served/repo` and serves `dir/served`.
    fn new(dir: &Path, work: &Path, repo: &str) -> ServedRepo {
        let served = dir.join("served");
        std::fs::create_dir_all(&served).unwrap();
        run_git(
            &served,
            &["clone", "--quiet", "--bare", work.to_str().unwrap(), repo],
        );
        ServedRepo {
            server: GitServer::start(&served),
            bare: served.join(repo),
            repo: repo.to_string(),
        }
    }

    /// The repository's URL.
    fn url(&self) -> String {
        self.server.url(&self.repo)
    }

    /// Pushes `refname` of `work` to the served repository (upstream moves).
    fn push(&self, work: &Path, refname: &str) {
        run_git(
            work,
            &["push", "--quiet", self.bare.to_str().unwrap(), refname],
        );
    }
}

#[test]
fn source_git_requirements_resolve_refs_to_commits_over_smart_http_and_lock_them() {
    use comfypak::build::{ResolveRequest, ResolveStatus};
    use comfypak::runtime::Bases;

    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::serve_index(&index(), ServerOptions::default());
    // A real repository: v1.0 tagged, then a second commit on main; served bare over
    // `git http-backend`.
    // Its version comes from git metadata, as setuptools-scm's does: the build sees `.git`.
    let (work, v1) = git_project(dir.path(), "gitdemo", "version-from-git = true", "v1");
    run_git(&work, &["tag", "v1.0.7"]);
    std::fs::write(work.join("gitdemo/more.py"), "MORE = 1\n").unwrap();
    let head = commit_all(&work, "more");
    let served = ServedRepo::new(dir.path(), &work, "gitdemo.git");

    let stack_dir = dir.path().join("stack");
    stack(&stack_dir, &server);
    let cache = dir.path().join("cache");
    let session = Session::new(NetworkOptions {
        cache_dir: Some(cache.clone()),
        ..NetworkOptions::default()
    })
    .unwrap();
    let lock_path = stack_dir.join("pylock.toml");
    let request = ResolveRequest {
        stack: stack_dir.join("pak"),
        lock: lock_path.clone(),
        bases: Bases {
            all: Some(root),
            ..Bases::default()
        },
        ..ResolveRequest::default()
    };
    let resolve_with = |line: String| {
        std::fs::write(stack_dir.join("pak/deps.txt"), line).unwrap();
        comfypak::build::resolve(&session, &request, &Notes::default())
            .map_err(|e| format!("{e}\nhelp: {:?}", e.help()))
    };

    // A tag resolves to its commit; the lock records URL, requested revision and commit.
    let url = served.url();
    let report =
        resolve_with(format!("gitdemo @ git+{url}@v1.0.7\n")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.status, ResolveStatus::Written);
    let lock = comfypak::lock::Lock::read(&lock_path).unwrap();
    let entry = lock
        .packages
        .iter()
        .find(|p| p.name.as_ref() == "gitdemo")
        .unwrap();
    let vcs = entry.vcs.as_ref().unwrap();
    assert_eq!(vcs.kind, "git");
    assert_eq!(vcs.url, url);
    assert_eq!(vcs.requested_revision.as_deref(), Some("v1.0.7"));
    assert_eq!(vcs.commit_id, v1);
    let built = &entry.tool.comfypak.built[0];
    assert_eq!(built.name.as_str(), "gitdemo-1.0.7-py3-none-any.whl");
    assert_eq!(entry.version.to_string(), "1.0.7");
    let v1_sha = built.sha256().unwrap().clone();

    // The branch (written the pip way, `git+URL@REF#egg=name`) is at the newer commit, whose
    // wheel has the new module.
    resolve_with(format!("git+{url}@main#egg=gitdemo\n")).unwrap();
    let lock = comfypak::lock::Lock::read(&lock_path).unwrap();
    let entry = lock
        .packages
        .iter()
        .find(|p| p.name.as_ref() == "gitdemo")
        .unwrap();
    assert_eq!(entry.vcs.as_ref().unwrap().commit_id, head);
    assert_ne!(entry.tool.comfypak.built[0].sha256().unwrap(), &v1_sha);
    // Untagged: the version names the commit the build saw as HEAD.
    assert_eq!(
        entry.version.to_string(),
        format!("1.0.dev0+g{}", &head[..7])
    );

    // The branch moves upstream: `--locked` fails and names the move.
    std::fs::write(work.join("gitdemo/later.py"), "LATER = 1\n").unwrap();
    let moved = commit_all(&work, "later");
    served.push(&work, "main");
    let checked = comfypak::build::resolve(
        &session,
        &ResolveRequest {
            mode: comfypak::build::LockMode::Locked,
            ..request.clone()
        },
        &Notes::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ResolveStatus::Stale(lines) = &checked.status else {
        panic!("{:?}", checked.status)
    };
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("at main moved from commit {head} to {moved}"))),
        "{lines:?}"
    );

    // A commit id is taken as it is; the same commit again is a build-cache hit.
    let notes = Notes::default();
    std::fs::write(
        stack_dir.join("pak/deps.txt"),
        format!("gitdemo @ git+{url}@{v1}\n"),
    )
    .unwrap();
    comfypak::build::resolve(&session, &request, &notes).unwrap();
    let said = notes.take();
    assert!(
        said.iter().any(|n| n.contains("from the build cache")),
        "{said:?}"
    );
    let lock = comfypak::lock::Lock::read(&lock_path).unwrap();
    let entry = lock
        .packages
        .iter()
        .find(|p| p.name.as_ref() == "gitdemo")
        .unwrap();
    assert_eq!(entry.tool.comfypak.built[0].sha256().unwrap(), &v1_sha);

    // A tag added upstream on the same commit: the files and the commit are the same, but
    // the build's `.git` carries the tag, and setuptools-scm-style versions come from tags;
    // so the build cache must not answer with the untagged build (its key has the tags).
    resolve_with(format!("git+{url}@main#egg=gitdemo\n")).unwrap();
    let untagged = comfypak::lock::Lock::read(&lock_path).unwrap();
    let untagged = untagged
        .packages
        .iter()
        .find(|p| p.name.as_ref() == "gitdemo")
        .unwrap();
    assert_eq!(untagged.vcs.as_ref().unwrap().commit_id, moved);
    assert_eq!(
        untagged.version.to_string(),
        format!("1.0.dev0+g{}", &moved[..7])
    );
    run_git(&work, &["tag", "v1.0.9"]);
    served.push(&work, "v1.0.9");
    let notes = Notes::default();
    std::fs::write(
        stack_dir.join("pak/deps.txt"),
        format!("git+{url}@main#egg=gitdemo\n"),
    )
    .unwrap();
    comfypak::build::resolve(&session, &request, &notes).unwrap();
    let said = notes.take();
    assert!(
        !said.iter().any(|n| n.contains("from the build cache")),
        "a new tag must not reuse the untagged build: {said:?}"
    );
    let tagged = comfypak::lock::Lock::read(&lock_path).unwrap();
    let tagged = tagged
        .packages
        .iter()
        .find(|p| p.name.as_ref() == "gitdemo")
        .unwrap();
    assert_eq!(tagged.vcs.as_ref().unwrap().commit_id, moved);
    assert_eq!(tagged.version.to_string(), "1.0.9");

    // A ref that does not exist names itself and the repository.
    let message = resolve_with(format!("gitdemo @ git+{url}@no-such-tag\n")).unwrap_err();
    assert!(
        message.contains("no branch, tag or commit `no-such-tag`"),
        "{message}"
    );
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("deps.txt:1"), "{message}");
    // Nothing half-made is left in the checkouts.
    for entry in std::fs::read_dir(cache.join("git/checkouts"))
        .unwrap()
        .flatten()
    {
        for checkout in std::fs::read_dir(entry.path()).unwrap().flatten() {
            let name = checkout.file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".tmp"), "{name}");
            assert!(checkout.path().join(".comfypak-complete").is_file());
        }
    }
}

/// pak7.txt's git lines as the real stack writes them: a public forge URL with no `#egg=`
/// name. The forge cannot be reached here, so git's own config maps it to a mirror
/// (`url.<mirror>.insteadOf`, given through `GIT_CONFIG_COUNT`/`KEY`/`VALUE` as a user or CI
/// would): comfypak runs the system git with the environment it was given. The lock records
/// the URL written in the pak file, and the project's name is the one its build gives.
#[test]
fn source_git_lines_without_a_name_build_through_an_insteadof_mirror_and_lock_the_written_url() {
    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::serve_index(&index(), ServerOptions::default());
    let (work, head) = git_project(dir.path(), "mirrored", "", "one");
    let served = ServedRepo::new(dir.path(), &work, "Mirrored-Repo.git");
    let stack_dir = dir.path().join("stack");
    stack(&stack_dir, &server);
    let forge = "https://forge.invalid/owner/";
    let written = format!("{forge}Mirrored-Repo.git");
    std::fs::write(
        stack_dir.join("pak/deps.txt"),
        format!("git+{written}@main\n"),
    )
    .unwrap();
    let resolve = |mirror: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_comfypak"));
        command
            .args(["resolve", "--stack", "pak", "--base"])
            .arg(&root)
            .current_dir(&stack_dir)
            .env("COMFYPAK_CACHE_DIR", dir.path().join("cache"))
            .env("SOURCE_DATE_EPOCH", "1700000000");
        if mirror {
            command
                .env("GIT_CONFIG_COUNT", "1")
                .env(
                    "GIT_CONFIG_KEY_0",
                    format!("url.{}.insteadOf", served.server.url("")),
                )
                .env("GIT_CONFIG_VALUE_0", forge);
        }
        command.output().unwrap()
    };
    // Without the mirror the forge is out of reach, and the error names the written URL.
    let out = resolve(false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("deps.txt:1:1"), "{stderr}");
    assert!(stderr.contains(&written), "{stderr}");

    let out = resolve(true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("builds the project mirrored"),
        "the stand-in name differs from the built one: {stderr}"
    );
    let lock = comfypak::lock::Lock::read(&stack_dir.join("pylock.toml")).unwrap();
    let entry = lock
        .packages
        .iter()
        .find(|p| p.name.as_ref() == "mirrored")
        .unwrap_or_else(|| panic!("{:?}", lock.packages));
    let vcs = entry.vcs.as_ref().unwrap();
    assert_eq!(vcs.url, written, "the lock keeps the URL of the pak file");
    assert_eq!(vcs.requested_revision.as_deref(), Some("main"));
    assert_eq!(vcs.commit_id, head);
    assert_eq!(
        entry.tool.comfypak.built[0].name.as_str(),
        "mirrored-1.0-py3-none-any.whl"
    );
    assert!(
        !std::fs::read_to_string(stack_dir.join("pylock.toml"))
            .unwrap()
            .contains(&served.server.url("")),
        "the mirror is not in the lock"
    );
}

/// `[build] base` (and `--build-base`) is where sources build, apart from the image's base:
/// a build base adds a toolchain to the image's. Here the image's base is a folder with no
/// Python at all, so only a build that used the build base can succeed.
#[test]
fn source_builds_run_in_the_build_base_not_the_images_base() {
    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::serve_index(&index(), ServerOptions::default());
    let folder = write_folder(dir.path(), "demo", "");
    let stack_dir = dir.path().join("stack");
    stack(&stack_dir, &server);
    std::fs::create_dir_all(stack_dir.join("pak/no-python")).unwrap();
    let folder_url = url::Url::from_directory_path(&folder).unwrap();
    std::fs::write(
        stack_dir.join("pak/deps.txt"),
        format!("demo @ {folder_url}\n"),
    )
    .unwrap();
    let manifest = stack_dir.join("pak/stack.toml");
    let plain = std::fs::read_to_string(&manifest).unwrap();
    let with = |extra: &str| {
        std::fs::write(
            &manifest,
            format!("{plain}\n[base]\npath = \"no-python\"\n{extra}"),
        )
        .unwrap();
    };
    let resolve = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_comfypak"))
            .args(["resolve", "--stack", "pak"])
            .args(args)
            .current_dir(&stack_dir)
            .env("COMFYPAK_CACHE_DIR", dir.path().join("cache"))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let built = || {
        let lock = comfypak::lock::Lock::read(&stack_dir.join("pylock.toml")).unwrap();
        let demo = lock
            .packages
            .iter()
            .find(|p| p.name.as_ref() == "demo")
            .unwrap()
            .clone();
        std::fs::remove_file(stack_dir.join("pylock.toml")).unwrap();
        demo.tool.comfypak.built[0].name.to_string()
    };

    // The image's base alone: the build runs there, and that base has no Python.
    with("");
    let (code, stderr) = resolve(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no-python"), "{stderr}");

    // `[build] base`: the build runs in the build base; the image's base is not asked.
    with(&format!(
        "\n[build]\nbase = {:?}\n",
        root.display().to_string()
    ));
    let (code, stderr) = resolve(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(built(), "demo-1.0-py3-none-any.whl");

    // Per architecture, and `--build-base` ahead of the stack's `[build] base`.
    with("\n[build]\nbase = { x86_64 = \"no-python\" }\n");
    let (code, stderr) = resolve(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no-python"), "{stderr}");
    let arg = format!("x86_64={}", root.display());
    let (code, stderr) = resolve(&["--build-base", &arg]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(built(), "demo-1.0-py3-none-any.whl");

    // A relative `--cache-dir` is taken against the current folder: the built wheel's cached
    // path goes into a `file:` URL, which needs an absolute path.
    let (code, stderr) = resolve(&["--build-base", &arg, "--cache-dir", "relative-cache"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(built(), "demo-1.0-py3-none-any.whl");
    assert!(stack_dir.join("relative-cache/wheels").is_dir());

    // `[build] timeout` bounds each build (dlib under load needs more than the default).
    let hangs = write_folder(dir.path(), "hangs", "get_requires = \"hang\"");
    std::fs::write(
        stack_dir.join("pak/deps.txt"),
        format!(
            "hangs @ {}\n",
            url::Url::from_directory_path(&hangs).unwrap()
        ),
    )
    .unwrap();
    with(&format!(
        "\n[build]\nbase = {:?}\ntimeout = \"2\"\n",
        root.display().to_string()
    ));
    let (code, stderr) = resolve(&[]);
    // A failed build exits 1, every other error 2.
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("building hangs ran longer than 2s"),
        "{stderr}"
    );
    assert!(stderr.contains("[build] timeout"), "{stderr}");
    let fails = write_folder(dir.path(), "fails", "build = \"fail\"");
    std::fs::write(
        stack_dir.join("pak/deps.txt"),
        format!(
            "fails @ {}\n",
            url::Url::from_directory_path(&fails).unwrap()
        ),
    )
    .unwrap();
    // The default limit again: a 2 s limit would fail a build that is only slow (the hooks
    // of this one take over 2 s at load 10 on 2 cores).
    with(&format!(
        "\n[build]\nbase = {:?}\n",
        root.display().to_string()
    ));
    let (code, stderr) = resolve(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("building fails failed: backend mini_backend, hook build_wheel"),
        "{stderr}"
    );
    assert!(!stack_dir.join("pylock.toml").exists());
    with("\n[build]\ntimeout = \"forever\"\n");
    let (code, stderr) = resolve(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("`build.timeout`"), "{stderr}");

    // A build base is a path or a registry image, nothing else.
    with("\n[build]\nbase = \"https://example.invalid/build-root\"\n");
    let (code, stderr) = resolve(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("`build.base`"), "{stderr}");
    assert!(
        stderr.contains("is neither a path on disk nor a docker:// image"),
        "{stderr}"
    );

    // A registry image: pulled (this architecture only) when the first build needs it, and
    // the build runs in it; plain HTTP only when asked for, and only to this machine.
    let Some(registry) = super::push::start_registry() else {
        return;
    };
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", &root).unwrap();
    let (digest, _) = super::base_pull::base_layout(
        &dir.path().join("build-image"),
        &[(Arch::X86_64, vec![builder.into_inner().unwrap()])],
    );
    super::base_pull::serve(&registry, &dir.path().join("build-image"), "lib/build:1");
    let reference = format!("docker://127.0.0.1:{}/lib/build:1", registry.port);
    // With a match-runtime requirement, demo builds twice (in isolation for the resolution,
    // then with the image's mini-backend): every stage shares one runtime of the base, pulled
    // once.
    std::fs::write(
        stack_dir.join("pak/deps.txt"),
        format!("demo @ {folder_url}\nmini-backend\n"),
    )
    .unwrap();
    with(&format!(
        "\n[build]\nbase = \"{reference}\"\n\n[build.match-runtime]\ndemo = [\"mini-backend\"]\n"
    ));
    let (code, stderr) = resolve(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--insecure-base"), "{stderr}");
    let (code, stderr) = resolve(&["--insecure-base"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "build base {reference} for x86_64: {digest} (pulled)"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.matches("build base ").count(), 1, "{stderr}");
    assert_eq!(built(), "demo-1.0-py3-none-any.whl");
    // `--build-base` takes one too; the build itself now comes from the build cache.
    let (code, stderr) = resolve(&["--insecure-base", "--build-base", &reference]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("from the build cache"), "{stderr}");
    assert_eq!(built(), "demo-1.0-py3-none-any.whl");
}

#[test]
fn source_aarch64_builds_run_under_qemu_and_make_the_same_pure_python_wheel() {
    use super::runtime::debian_root_aarch64;
    let Some(env) = Env::new() else { return };
    let Some(arm_root) = debian_root_aarch64() else {
        return;
    };
    let arm_target = target((3, 14), Arch::Aarch64);
    let arm_runtime = Runtime::for_platform(
        &Base::Root(arm_root),
        &arm_target,
        "/opt/venv",
        &options(&env.cache, Duration::from_secs(600)),
    )
    .unwrap();
    let sdist = write_sdist(&env.work, "demo", "", "2.2");
    let source = Source {
        kind: SourceKind::Sdist(sdist),
        package: "demo".to_string(),
        expected_sha256: None,
    };
    let options = env.options();
    let x86 = build_wheel(&source, &env.target, &env.runtime, &env.envs(), &options)
        .unwrap_or_else(|e| panic!("{e}"));
    let arm_envs = StackBuildEnvs {
        session: &env.session,
        stack: &env.stack,
        backend: env.backend(),
        target: arm_target.clone(),
        image: None,
    };
    let arm = build_wheel(&source, &arm_target, &arm_runtime, &arm_envs, &options)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!arm.cached, "another target is another build");
    assert_ne!(arm.key, x86.key);
    let log = std::fs::read_to_string(&arm.log).unwrap();
    assert!(
        log.contains("mini: built demo-1.0-py3-none-any.whl"),
        "{log}"
    );
    // A pure-Python wheel: the same bytes from both architectures' interpreters.
    assert_eq!(arm.sha256, x86.sha256);
    println!(
        "demo sdist: x86_64 build {:.2}s, aarch64 build under qemu {:.2}s",
        x86.seconds, arm.seconds
    );
}

/// A PEP 503 simple index of `files` (name → file names) under `dir/simple/`, each link with
/// its `#sha256=`, the files under `dir/files/`.
fn write_simple_site(dir: &Path, projects: &[(&str, Vec<PathBuf>)]) {
    let files_dir = dir.join("files");
    std::fs::create_dir_all(&files_dir).unwrap();
    for (project, files) in projects {
        let page = dir.join("simple").join(project);
        std::fs::create_dir_all(&page).unwrap();
        let mut links = String::new();
        for file in files {
            let name = file.file_name().unwrap().to_str().unwrap();
            let dest = files_dir.join(name);
            if file != &dest {
                std::fs::copy(file, &dest).unwrap();
            }
            links.push_str(&format!(
                "<a href=\"../../files/{name}#sha256={}\">{name}</a><br/>\n",
                sha256_of(&dest)
            ));
        }
        std::fs::write(
            page.join("index.html"),
            format!("<!DOCTYPE html><html><body>\n{links}</body></html>\n"),
        )
        .unwrap();
    }
}

/// An index sdist whose `prepare_metadata_for_build_wheel` fails while resolving: the
/// resolution stops there (as pip's does) and says which package, which backend and hook,
/// the last 30 lines of the hook's log and where the whole log is; no lock is written and
/// no metadata is cached.
#[test]
fn source_a_failing_prepare_hook_aborts_the_resolution_naming_package_backend_and_log() {
    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::serve_index(&index(), ServerOptions::default());
    let made = dir.path().join("made");
    std::fs::create_dir_all(&made).unwrap();
    // Metadata-Version 2.1: the prepare hook must answer, and it fails.
    let failing = write_sdist(&made, "failsd", "prepare = \"fail\"", "2.1");
    let site_dir = dir.path().join("site");
    write_simple_site(&site_dir, &[("failsd", vec![failing])]);
    let site = TestServer::serve_dir(&site_dir, ServerOptions::default());
    let stack_dir = dir.path().join("stack");
    stack(&stack_dir, &server);
    write_index_definitions(
        &stack_dir,
        &[
            ("pypi", server.simple_url().as_str(), "simple"),
            ("sdists", &format!("{}/simple/", site.url()), "simple"),
        ],
    );
    let manifest = stack_dir.join("pak/stack.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("default = [\"pypi\"]", "default = [\"pypi\", \"sdists\"]"),
    )
    .unwrap();
    std::fs::write(stack_dir.join("pak/deps.txt"), "six\nfailsd\n").unwrap();
    let cache = dir.path().join("cache");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_comfypak"))
        .args(["resolve", "--stack", "pak", "--base"])
        .arg(&root)
        .current_dir(&stack_dir)
        .env("COMFYPAK_CACHE_DIR", &cache)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A failed build hook exits 1 (other errors exit 2), also while resolving.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failsd 1.0"), "{stderr}");
    assert!(
        stderr.contains(
            "building failsd failed: backend mini_backend, hook prepare_metadata_for_build_wheel"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("told to fail in prepare"), "{stderr}");
    // Exactly the last 30 lines of the log, ending with the hook's exception.
    let tail: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.contains("--- last 30 lines of the build log ---"))
        .skip(1)
        .take_while(|l| !l.contains("--- the whole log: "))
        .collect();
    assert_eq!(tail.len(), 30, "{stderr}");
    assert!(
        tail.iter().any(|l| l.contains("mini: log line 40")),
        "{stderr}"
    );
    assert!(
        tail.last()
            .unwrap()
            .contains("RuntimeError: told to fail in prepare"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[build] base"),
        "the help names the build base: {stderr}"
    );
    let log = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("--- the whole log: ")
                .and_then(|l| l.strip_suffix(" ---"))
        })
        .unwrap_or_else(|| panic!("no log path in {stderr}"));
    let whole = std::fs::read_to_string(log).unwrap();
    assert!(whole.contains("mini: log line 1\n"), "{whole}");
    assert!(!stack_dir.join("pylock.toml").exists());
    let metadata_dir = cache.join("source-builds/metadata");
    assert!(
        std::fs::read_dir(&metadata_dir)
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "nothing is cached for a failed prepare hook"
    );
}

#[test]
fn source_index_sdists_are_candidates_where_no_wheel_fits_locked_built_and_installed() {
    use comfypak::build::{InstallRequest, ResolveRequest, ResolveStatus};
    use comfypak::lock::Lock;
    use comfypak::pak::{BinarySelector, FormatOption};
    use comfypak::runtime::Bases;

    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::serve_index(&index(), ServerOptions::default());
    // A second index with sdists: one with PEP 643 metadata (and a wheel for another
    // platform only), one with Metadata-Version 2.1 (the prepare hook answers), and one with
    // both an sdist and a wheel that fits.
    let made = dir.path().join("made");
    std::fs::create_dir_all(&made).unwrap();
    let staticsd = write_sdist(&made, "staticsd", "", "2.2");
    let windows = made.join("staticsd-1.0-cp39-cp39-win_amd64.whl");
    std::fs::write(&windows, b"never read").unwrap();
    let dynsd = write_sdist(&made, "dynsd", "", "2.1");
    let both_sdist = write_sdist(&made, "both", "", "2.2");
    let wheel = WheelSpec::new("both", "1.0")
        .file("both/__init__.py", "GREETING = 'from the wheel'\n")
        .build();
    let both_wheel = made.join(&wheel.filename);
    std::fs::write(&both_wheel, &wheel.bytes).unwrap();
    let site_dir = dir.path().join("site");
    write_simple_site(
        &site_dir,
        &[
            ("staticsd", vec![staticsd.clone(), windows]),
            ("dynsd", vec![dynsd]),
            ("both", vec![both_sdist, both_wheel]),
        ],
    );
    let site = TestServer::serve_dir(&site_dir, ServerOptions::default());
    let stack_dir = dir.path().join("stack");
    stack(&stack_dir, &server);
    write_index_definitions(
        &stack_dir,
        &[
            ("pypi", server.simple_url().as_str(), "simple"),
            ("sdists", &format!("{}/simple/", site.url()), "simple"),
        ],
    );
    let manifest = stack_dir.join("pak/stack.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    // dynsd's build gets PEP 517 config settings from the stack.
    std::fs::write(
        &manifest,
        text.replace("default = [\"pypi\"]", "default = [\"pypi\", \"sdists\"]")
            + "\n[build.config-settings.dynsd]\nmode = \"fast\"\n",
    )
    .unwrap();
    std::fs::write(stack_dir.join("pak/deps.txt"), "staticsd\ndynsd\nboth\n").unwrap();
    let cache = dir.path().join("cache");
    let session = Session::new(NetworkOptions {
        cache_dir: Some(cache.clone()),
        ..NetworkOptions::default()
    })
    .unwrap();
    let lock_path = stack_dir.join("pylock.toml");
    let mut request = ResolveRequest {
        stack: stack_dir.join("pak"),
        lock: lock_path.clone(),
        ..ResolveRequest::default()
    };
    let notes = Notes::default();

    // Without a base nothing can build the sdists: the resolver says so and what to do.
    let e = comfypak::build::resolve(&session, &request, &notes).unwrap_err();
    let message = format!("{e}\n{:?}", e.help());
    assert!(
        message.contains("an sdist staticsd-1.0.tar.gz, not built: sdists are built only in the target runtime of a base"),
        "{message}"
    );

    // With a base: the sdists are candidates, their metadata read (PKG-INFO) or prepared.
    request.bases = Bases {
        all: Some(root.clone()),
        ..Bases::default()
    };
    let report = comfypak::build::resolve(&session, &request, &notes)
        .unwrap_or_else(|e| panic!("{e}\n{:?}", e.help()));
    assert_eq!(report.status, ResolveStatus::Written);
    let said = notes.take();
    let has = |needle: &str| said.iter().any(|n| n.contains(needle));
    assert!(has("staticsd 1.0: metadata of the sdist staticsd-1.0.tar.gz read from its PKG-INFO (PEP 643)"), "{said:?}");
    assert!(has("dynsd 1.0: metadata of the sdist dynsd-1.0.tar.gz from prepare_metadata_for_build_wheel"), "{said:?}");
    assert!(
        has("staticsd: staticsd-1.0-py3-none-any.whl built in"),
        "{said:?}"
    );
    assert!(
        has("dynsd: dynsd-1.0-py3-none-any.whl built in"),
        "{said:?}"
    );
    assert!(
        !said.iter().any(|n| n.starts_with("both")),
        "the wheel is preferred: {said:?}"
    );
    let lock = Lock::read(&lock_path).unwrap();
    let entry = |lock: &Lock, name: &str| {
        lock.packages
            .iter()
            .find(|p| p.name.as_ref() == name)
            .unwrap_or_else(|| panic!("{name} not locked"))
            .clone()
    };
    let locked = entry(&lock, "staticsd");
    let sdist = locked.sdist.as_ref().unwrap();
    assert_eq!(
        sdist.url.as_deref(),
        Some(format!("{}/files/staticsd-1.0.tar.gz", site.url()).as_str())
    );
    assert_eq!(
        sdist.hashes.sha256.as_ref().unwrap().as_str(),
        sha256_of(&staticsd)
    );
    assert!(locked.wheels.is_empty());
    assert!(locked.index.is_some());
    assert_eq!(locked.tool.comfypak.index_name, "sdists");
    let built = &locked.tool.comfypak.built;
    assert_eq!(built.len(), 1);
    assert_eq!(built[0].name.as_str(), "staticsd-1.0-py3-none-any.whl");
    let built_sha = built[0].sha256().unwrap().as_str().to_string();
    assert_eq!(entry(&lock, "dynsd").tool.comfypak.built.len(), 1);
    let both = entry(&lock, "both");
    assert!(both.sdist.is_none() && both.wheels.len() == 1, "{both:?}");
    assert_eq!(entry(&lock, "six").version.to_string(), "1.17.0");

    // Again, and --locked: no build runs (the build cache), the lock is unchanged.
    let again = comfypak::build::resolve(&session, &request, &notes).unwrap();
    assert_eq!(again.status, ResolveStatus::Unchanged);
    let said = notes.take();
    assert_eq!(
        said.iter()
            .filter(|n| n.contains("from the build cache"))
            .count(),
        2,
        "{said:?}"
    );
    assert!(!said.iter().any(|n| n.contains(" built in ")), "{said:?}");
    let checked = comfypak::build::resolve(
        &session,
        &ResolveRequest {
            mode: comfypak::build::LockMode::Locked,
            ..request.clone()
        },
        &notes,
    )
    .unwrap();
    assert_eq!(checked.status, ResolveStatus::UpToDate);
    notes.take();

    // Install takes exactly the built bytes; an index sdist gets no direct_url.json.
    let out = dir.path().join("out");
    comfypak::build::install(
        &session,
        &InstallRequest {
            lock: lock_path.clone(),
            out: out.clone(),
            ..InstallRequest::default()
        },
        &comfypak::build::Silent,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let site_packages = out.join("layers/deps/opt/venv/lib/python3.14/site-packages");
    for module in ["staticsd", "dynsd", "both", "six"] {
        assert!(
            site_packages.join(module).join("__init__.py").is_file(),
            "{module} not installed"
        );
    }
    assert!(!site_packages
        .join("staticsd-1.0.dist-info/direct_url.json")
        .exists());
    let record =
        std::fs::read_to_string(site_packages.join("staticsd-1.0.dist-info/RECORD")).unwrap();
    assert!(record.contains("staticsd/__init__.py"), "{record}");
    let in_cache: Vec<PathBuf> = walk(&cache.join("wheels"))
        .into_iter()
        .filter(|p| p.ends_with("staticsd-1.0-py3-none-any.whl"))
        .collect();
    assert_eq!(in_cache.len(), 1, "{in_cache:?}");
    assert_eq!(sha256_of(&in_cache[0]), built_sha);
    assert_eq!(
        std::fs::read_to_string(site_packages.join("both/__init__.py")).unwrap(),
        "GREETING = 'from the wheel'\n"
    );
    assert_eq!(
        std::fs::read_to_string(site_packages.join("dynsd/_config.py")).unwrap(),
        "CONFIG = [('mode', 'fast')]\n"
    );
    assert!(!site_packages.join("staticsd/_config.py").exists());

    // --no-binary both: its sdist is built although a wheel fits.
    let no_binary = ResolveRequest {
        formats: vec![FormatOption::NoBinary(BinarySelector::Packages(vec![
            "both".parse().unwrap(),
        ]))],
        ..request.clone()
    };
    comfypak::build::resolve(&session, &no_binary, &notes)
        .unwrap_or_else(|e| panic!("{e}\n{:?}", e.help()));
    let said = notes.take();
    assert!(
        said.iter()
            .any(|n| n.contains("both: both-1.0-py3-none-any.whl built in")),
        "{said:?}"
    );
    let both = entry(&Lock::read(&lock_path).unwrap(), "both");
    assert!(both.wheels.is_empty() && both.sdist.is_some(), "{both:?}");
    assert_eq!(both.tool.comfypak.built.len(), 1);

    // only-binary in the stack: the sdists are refused again, naming why.
    let plain_manifest = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!("{plain_manifest}\n[build]\nonly-binary = [\":all:\"]\n"),
    )
    .unwrap();
    let e = comfypak::build::resolve(&session, &request, &notes).unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("not built: only-binary covers the project"),
        "{message}"
    );
    // ... and `--no-binary staticsd` on the command line re-opens the one project (pip's
    // rule: a later option for a name wins).
    std::fs::write(stack_dir.join("pak/deps.txt"), "staticsd\n").unwrap();
    let reopened = ResolveRequest {
        formats: vec![FormatOption::NoBinary(BinarySelector::Packages(vec![
            "staticsd".parse().unwrap(),
        ]))],
        ..request.clone()
    };
    comfypak::build::resolve(&session, &reopened, &notes)
        .unwrap_or_else(|e| panic!("{e}\n{:?}", e.help()));
    let said = notes.take();
    assert!(
        said.iter()
            .any(|n| n.contains("staticsd-1.0-py3-none-any.whl from the build cache")),
        "{said:?}"
    );
    std::fs::write(&manifest, &plain_manifest).unwrap();

    // An index whose sdist is not the bytes its page names: refused, nothing cached.
    let page = site_dir.join("simple/staticsd/index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    std::fs::write(&page, html.replace(&sha256_of(&staticsd), &"2".repeat(64))).unwrap();
    let builds_before = walk(&cache.join("source-builds/v1")).len();
    let e = comfypak::build::resolve(&session, &request, &notes).unwrap_err();
    let message = e.to_string();
    assert!(message.contains(&"2".repeat(64)), "{message}");
    assert!(message.contains(&sha256_of(&staticsd)), "{message}");
    assert!(!cache.join("sources/v1").join("2".repeat(64)).exists());
    assert_eq!(walk(&cache.join("source-builds/v1")).len(), builds_before);
}

/// Every file below `dir` (none when it does not exist).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(here) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&here) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}

#[test]
fn source_index_sdists_build_against_the_image_with_match_runtime_or_without_isolation() {
    use comfypak::build::{InstallRequest, ResolveRequest};
    use comfypak::runtime::Bases;

    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::serve_index(&index(), ServerOptions::default());
    // Both import helper_dep while building, which their [build-system] does not require:
    // `matchrt` gets it as a match-runtime build requirement, pinned to the image's 1.0 (the
    // index's newest is 2.0); `noiso` is built in the image's environment.
    let made = dir.path().join("made");
    std::fs::create_dir_all(&made).unwrap();
    let tool = "import = [\"helper_dep\"]\nrecord-imports = true";
    let matchrt = write_sdist(&made, "matchrt", tool, "2.2");
    let noiso = write_sdist(&made, "noiso", tool, "2.2");
    let site_dir = dir.path().join("site");
    write_simple_site(
        &site_dir,
        &[("matchrt", vec![matchrt]), ("noiso", vec![noiso])],
    );
    let site = TestServer::serve_dir(&site_dir, ServerOptions::default());
    let stack_dir = dir.path().join("stack");
    stack(&stack_dir, &server);
    write_index_definitions(
        &stack_dir,
        &[
            ("pypi", server.simple_url().as_str(), "simple"),
            ("sdists", &format!("{}/simple/", site.url()), "simple"),
        ],
    );
    let manifest = stack_dir.join("pak/stack.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("default = [\"pypi\"]", "default = [\"pypi\", \"sdists\"]")
            + "\n[build]\nno-isolation = [\"noiso\"]\n\n[build.match-runtime]\nmatchrt = [\"helper-dep\"]\n",
    )
    .unwrap();
    std::fs::write(
        stack_dir.join("pak/deps.txt"),
        "matchrt\nnoiso\nhelper-dep==1.0\nmini-backend\n",
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let session = Session::new(NetworkOptions {
        cache_dir: Some(cache.clone()),
        ..NetworkOptions::default()
    })
    .unwrap();
    let lock_path = stack_dir.join("pylock.toml");
    let request = ResolveRequest {
        stack: stack_dir.join("pak"),
        lock: lock_path.clone(),
        bases: Bases {
            all: Some(root),
            ..Bases::default()
        },
        ..ResolveRequest::default()
    };
    comfypak::build::resolve(&session, &request, &Notes::default())
        .unwrap_or_else(|e| panic!("{e}\n{:?}", e.help()));
    let out = dir.path().join("out");
    comfypak::build::install(
        &session,
        &InstallRequest {
            lock: lock_path.clone(),
            out: out.clone(),
            ..InstallRequest::default()
        },
        &comfypak::build::Silent,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let site_packages = out.join("layers/deps/opt/venv/lib/python3.14/site-packages");
    for module in ["matchrt", "noiso"] {
        assert_eq!(
            std::fs::read_to_string(site_packages.join(module).join("_built_with.py")).unwrap(),
            "BUILT_WITH = [('helper_dep', 'helped-1.0')]\n",
            "{module}"
        );
    }

    // A match-runtime package the image does not have is named, with what to do.
    std::fs::write(stack_dir.join("pak/deps.txt"), "matchrt\nmini-backend\n").unwrap();
    let e = comfypak::build::resolve(&session, &request, &Notes::default()).unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("asks for the image's helper-dep, which the image does not install"),
        "{message}"
    );
}

#[test]
fn direct_sources_build_against_the_image_with_match_runtime_or_without_isolation() {
    use comfypak::build::{InstallRequest, ResolveRequest};
    use comfypak::runtime::Bases;

    let Some(root) = debian_root() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::serve_index(&index(), ServerOptions::default());
    // Local sdists (direct sources, built before the resolution) whose builds see helper_dep:
    // `matchrt` imports it, as a match-runtime build requirement pinned to the image's 1.0
    // after the resolution (the index's newest is 2.0, which its first build, in isolation,
    // gets); `noiso` imports it if it is there, which it is only in the image's environment.
    let made = dir.path().join("made");
    std::fs::create_dir_all(&made).unwrap();
    let matchrt = write_sdist(
        &made,
        "matchrt",
        "import = [\"helper_dep\"]\nrecord-imports = true",
        "2.2",
    );
    let noiso = write_sdist(
        &made,
        "noiso",
        "import-if-present = [\"helper_dep\"]\nrecord-imports = true",
        "2.2",
    );
    let stack_dir = dir.path().join("stack");
    stack(&stack_dir, &server);
    let manifest = stack_dir.join("pak/stack.toml");
    let plain = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        plain.clone()
            + "\n[build]\nno-isolation = [\"noiso\"]\n\n[build.match-runtime]\nmatchrt = [\"helper-dep\"]\n",
    )
    .unwrap();
    let file_url = |p: &Path| url::Url::from_file_path(p).unwrap();
    std::fs::write(
        stack_dir.join("pak/deps.txt"),
        format!(
            "matchrt @ {}\nnoiso @ {}\nhelper-dep==1.0\nmini-backend\n",
            file_url(&matchrt),
            file_url(&noiso)
        ),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let session = Session::new(NetworkOptions {
        cache_dir: Some(cache.clone()),
        ..NetworkOptions::default()
    })
    .unwrap();
    let lock_path = stack_dir.join("pylock.toml");
    let request = ResolveRequest {
        stack: stack_dir.join("pak"),
        lock: lock_path.clone(),
        bases: Bases {
            all: Some(root),
            ..Bases::default()
        },
        ..ResolveRequest::default()
    };
    let notes = Notes::default();
    comfypak::build::resolve(&session, &request, &notes)
        .unwrap_or_else(|e| panic!("{e}\n{:?}", e.help()));
    let said = notes.take().join("\n");
    assert!(
        said.contains("matchrt: matchrt-1.0-py3-none-any.whl built against the image"),
        "{said}"
    );
    assert!(
        said.contains("noiso: noiso-1.0-py3-none-any.whl built against the image"),
        "{said}"
    );
    let out = dir.path().join("out");
    comfypak::build::install(
        &session,
        &InstallRequest {
            lock: lock_path.clone(),
            out: out.clone(),
            ..InstallRequest::default()
        },
        &comfypak::build::Silent,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let site_packages = out.join("layers/deps/opt/venv/lib/python3.14/site-packages");
    for module in ["matchrt", "noiso"] {
        assert_eq!(
            std::fs::read_to_string(site_packages.join(module).join("_built_with.py")).unwrap(),
            "BUILT_WITH = [('helper_dep', 'helped-1.0')]\n",
            "{module}"
        );
    }
    // The lock names the sdists and the wheels built against the image.
    let lock = comfypak::lock::Lock::read(&lock_path).unwrap();
    let installed = |name: &str| {
        let p = lock
            .packages
            .iter()
            .find(|p| p.name.as_ref() == name)
            .unwrap();
        assert!(p.sdist.is_some(), "{p:?}");
        p.tool.comfypak.built[0]
            .sha256()
            .unwrap()
            .as_str()
            .to_string()
    };
    let record =
        std::fs::read_to_string(site_packages.join("matchrt-1.0.dist-info/RECORD")).unwrap();
    assert!(record.contains("matchrt/_built_with.py"), "{record}");
    // --locked: the second build of each comes from the build cache, the lock is up to date.
    let before = (installed("matchrt"), installed("noiso"));
    let locked = ResolveRequest {
        mode: comfypak::build::LockMode::Locked,
        ..request.clone()
    };
    comfypak::build::resolve(&session, &locked, &Notes::default())
        .unwrap_or_else(|e| panic!("{e}\n{:?}", e.help()));
    let lock = comfypak::lock::Lock::read(&lock_path).unwrap();
    let again = |name: &str| {
        lock.packages
            .iter()
            .find(|p| p.name.as_ref() == name)
            .unwrap()
            .tool
            .comfypak
            .built[0]
            .sha256()
            .unwrap()
            .as_str()
            .to_string()
    };
    assert_eq!(before, (again("matchrt"), again("noiso")));

    // A build whose dependencies follow what is installed at build time contradicts the
    // metadata the resolution used: an error, and no lock is written.
    std::fs::remove_file(&lock_path).unwrap();
    let moody = write_sdist(
        &made,
        "moody",
        "require-if-present = [\"helper_dep\"]",
        "2.2",
    );
    std::fs::write(&manifest, plain + "\n[build]\nno-isolation = [\"moody\"]\n").unwrap();
    std::fs::write(
        stack_dir.join("pak/deps.txt"),
        format!(
            "moody @ {}\nhelper-dep==1.0\nmini-backend\n",
            file_url(&moody)
        ),
    )
    .unwrap();
    let e = comfypak::build::resolve(&session, &request, &Notes::default()).unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("built against the image, whose metadata")
            && message.contains("requires six>=1, helper-dep)")
            && message.contains("requires six>=1)"),
        "{message}"
    );
    assert!(!lock_path.exists());
}
