//! Shared by tests/it/pack.rs, tests/it/pack_tools.rs and tests/it/push.rs: a small stack, installed
//! layer trees with every kind of entry (modes, executables, hard links, symlinks, nested and
//! empty directories, very long paths), a `pack` call, and outside-tool lookup.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use comfypak::lock::{ComfypakLock, Lock, LockTool, LockedLayer, LockedTarget};
use comfypak::pack::{
    pack, Compression, ImageSettings, OutputFormat, PackRequest, PackedImage, PlatformLayers,
};
use comfypak::stack::Stack;

pub const LAYERS: [&str; 4] = ["stable", "deps", "perf", "volatile"];
pub const SITE: &str = "opt/comfyui/venv/lib/python3.14/site-packages";

/// Writes `stack.toml` and one pak file per layer into `dir`.
pub fn write_stack(dir: &Path, platforms: &[&str]) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let indexes = Path::new(env!("CARGO_MANIFEST_DIR")).join("indexes");
    let mut toml = format!(
        "[stack]\nname = \"comfyui\"\nindex-dir = \"{}\"\n\n[target]\npython = \"3.14\"\n\
         platforms = [{}]\nvenv = \"/opt/comfyui/venv\"\n\n[indexes]\ndefault = [\"pypi\"]\n",
        indexes.display(),
        platforms
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (i, layer) in LAYERS.iter().enumerate() {
        let pak = format!("pak{}.txt", i + 1);
        fs::write(dir.join(&pak), format!("{layer}-package==1.0\n")).unwrap();
        toml.push_str(&format!(
            "\n[[layer]]\nname = \"{layer}\"\npaks = [\"{pak}\"]\n"
        ));
    }
    fs::write(dir.join("stack.toml"), toml).unwrap();
    dir.to_path_buf()
}

/// The lock `pack` reads for `stack`: its layers (no packages), venv and platforms, as
/// `comfypak resolve` would record them.
pub fn lock_for(stack: &Stack) -> Lock {
    let dir = stack.manifest.parent().unwrap();
    Lock {
        lock_version: "1.0".into(),
        environments: vec![],
        requires_python: None,
        extras: vec![],
        dependency_groups: vec![],
        default_groups: vec![],
        created_by: "comfypak-tests".into(),
        packages: vec![],
        tool: LockTool {
            comfypak: ComfypakLock {
                stack: stack.name.clone(),
                target: LockedTarget {
                    python: stack.target.python,
                    free_threaded: stack.target.free_threaded,
                    platforms: stack.target.platforms.clone(),
                    venv: stack.target.venv.parse().unwrap(),
                    gpus: vec![],
                    min_driver: None,
                },
                torch_backend: comfypak::cuda::Backend::Cpu,
                layers: stack
                    .layers
                    .iter()
                    .map(|l| LockedLayer {
                        name: l.name.clone(),
                        rank: l.rank,
                        paks: l
                            .paks
                            .iter()
                            .map(|p| p.path.strip_prefix(dir).unwrap().display().to_string())
                            .collect(),
                        inputs_hash: "sha256:00".into(),
                    })
                    .collect(),
                indexes: BTreeMap::new(),
                bases: Vec::new(),
            },
        },
    }
}

/// Writes [`lock_for`] the stack in `stack_dir` to `path`.
pub fn write_lock(stack_dir: &Path, path: &Path) {
    let stack = Stack::load(stack_dir).unwrap();
    lock_for(&stack).write(path).unwrap();
}

fn write_file(path: &Path, contents: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Fills `layers_dir/<layer>/` for every layer, like `comfypak install` does: rootfs-shaped
/// trees under the venv. `mode_bits` is OR-ed/AND-ed into modes to mimic another umask.
pub fn write_layers(layers_dir: &Path, volatile_version: &str, strict_modes: bool) {
    let (file_mode, exec_mode) = if strict_modes {
        (0o600, 0o700)
    } else {
        (0o664, 0o775)
    };
    for layer in LAYERS {
        let root = layers_dir.join(layer);
        let site = root.join(SITE);
        let package = site.join(format!("{layer}_pkg"));
        write_file(
            &package.join("__init__.py"),
            format!("NAME = {layer:?}\n").as_bytes(),
            file_mode,
        );
        write_file(
            &package.join("sub/deeper/data.bin"),
            &(0..5000u32)
                .map(|i| (i * 7 + layer.len() as u32) as u8)
                .collect::<Vec<_>>(),
            file_mode,
        );
        write_file(
            &package.join("_native.so"),
            format!("\x7fELF fake {layer}").as_bytes(),
            exec_mode,
        );
        fs::create_dir_all(package.join("empty_dir")).unwrap();
        let dist = site.join(format!("{layer}_pkg-1.0.dist-info"));
        write_file(
            &dist.join("METADATA"),
            b"Metadata-Version: 2.4\n",
            file_mode,
        );
        write_file(&dist.join("INSTALLER"), b"comfypak\n", file_mode);
        write_file(
            &root.join(format!("opt/comfyui/venv/bin/{layer}-tool")),
            b"#!/opt/comfyui/venv/bin/python3.14\nprint('hi')\n",
            exec_mode,
        );
        // A hard link inside the layer (like the installer's linked files).
        fs::hard_link(
            package.join("sub/deeper/data.bin"),
            package.join("data_link.bin"),
        )
        .unwrap();
        // A symlink.
        symlink("sub/deeper/data.bin", package.join("data_symlink")).unwrap();
        // Paths longer than ustar's 100 and 256 bytes.
        let long_dir = package.join("d".repeat(90)).join("e".repeat(90));
        write_file(&long_dir.join("f".repeat(60)), b"long path\n", file_mode);
        write_file(&long_dir.join("g".repeat(99)), b"longer path\n", file_mode);
    }
    write_file(
        &layers_dir
            .join("volatile")
            .join(SITE)
            .join("volatile_pkg/version.py"),
        format!("VERSION = {volatile_version:?}\n").as_bytes(),
        file_mode,
    );
}

/// Sets every file's and folder's mtime under `dir` to `secs`.
pub fn set_mtimes(dir: &Path, secs: u64) {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    for entry in walk(dir) {
        let meta = fs::symlink_metadata(&entry).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        let file = fs::File::options().read(true).open(&entry).unwrap();
        file.set_modified(time).unwrap();
    }
}

/// Every path under `dir` (not following symlinks), sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Options for [`pack_dir`].
pub struct PackSetup<'a> {
    pub stack_dir: &'a Path,
    pub layer_dirs: Vec<(&'a str, PathBuf)>,
    pub output: PathBuf,
    pub format: OutputFormat,
    pub compression: Compression,
    pub epoch: u64,
    pub base: Option<PathBuf>,
    pub base_by_arch: Vec<(comfypak::target::Arch, PathBuf)>,
    pub previous: Option<PathBuf>,
}

impl<'a> PackSetup<'a> {
    pub fn new(stack_dir: &'a Path, layers: PathBuf, output: PathBuf) -> Self {
        PackSetup {
            stack_dir,
            layer_dirs: vec![("x86_64", layers)],
            output,
            format: OutputFormat::OciLayout,
            compression: Compression::default(),
            epoch: 1_700_000_000,
            base: None,
            base_by_arch: Vec::new(),
            previous: None,
        }
    }

    pub fn run(&self) -> PackedImage {
        self.try_run().unwrap()
    }

    pub fn try_run(&self) -> Result<PackedImage, comfypak::pack::PackError> {
        let stack = Stack::load(self.stack_dir).unwrap();
        let settings = ImageSettings::for_stack(&stack)?;
        let platforms = self
            .layer_dirs
            .iter()
            .map(|(arch, dir)| {
                let platform = *stack
                    .target
                    .platforms
                    .iter()
                    .find(|p| p.arch.as_str() == *arch)
                    .expect("platform in stack");
                PlatformLayers {
                    platform,
                    dir: dir.clone(),
                }
            })
            .collect();
        let lock = lock_for(&stack);
        pack(&PackRequest {
            lock: &lock,
            stack_dir: self.stack_dir,
            settings,
            platforms,
            output: self.output.clone(),
            format: self.format,
            compression: self.compression,
            source_date_epoch: self.epoch,
            base: self.base.clone(),
            base_by_arch: self.base_by_arch.clone(),
            previous: self.previous.clone(),
            tag: "latest".to_string(),
            name: "comfyui".to_string(),
            split_threshold: None,
            layer_cache: None,
        })
    }
}

/// Layer name → digest, for one platform.
pub fn layer_digests(image: &PackedImage, platform: usize) -> BTreeMap<String, String> {
    image.platforms[platform]
        .layers
        .iter()
        .map(|l| (l.name.clone(), l.descriptor.digest.clone()))
        .collect()
}

/// Every blob file name and `index.json` bytes of a layout.
pub fn layout_fingerprint(dir: &Path) -> (Vec<String>, Vec<u8>) {
    let mut blobs: Vec<String> = fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    (blobs, fs::read(dir.join("index.json")).unwrap())
}

/// The path of an outside tool, or `None` (outside CI: the test prints a note and skips).
/// With `CI=true` a missing tool fails the test, naming the setup script that installs it.
pub fn tool(name: &str) -> Option<PathBuf> {
    let env_key = format!(
        "COMFYPAK_{}_BIN",
        name.to_ascii_uppercase().replace('-', "_")
    );
    if let Ok(path) = std::env::var(&env_key) {
        if !path.is_empty() && Path::new(&path).exists() {
            return Some(PathBuf::from(path));
        }
    }
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string()));
    if found.is_none() {
        let message = format!(
            "`{name}` is not installed; .ci/setup.d/40-image-tools.sh installs it \
             (apt-get install skopeo umoci oci-image-tool docker-registry apache2-utils openssl)"
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{message}");
        }
        eprintln!("note: skipping: {message}");
    }
    found
}

/// Runs a command and returns stdout, failing with its stderr.
pub fn run_ok(cmd: &mut Command) -> String {
    let output = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
