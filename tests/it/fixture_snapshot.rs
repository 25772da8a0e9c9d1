//! The offline snapshot of the public package index (`fixtures/indexes/pypi-snapshot.json`):
//! it loads as a testkit fixture, every project has a wheel for the target, names are
//! normalized, no index host leaks into it, and it covers the roots it was made from.

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;

use comfypak::filename::WheelFilename;
use comfypak::index::definition::IndexDefs;
use comfypak::target::{Platform, PythonVersion, Target};
use comfypak_testkit::{normalize_name, FixtureIndex};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn snapshot_path() -> std::path::PathBuf {
    root().join("fixtures/indexes/pypi-snapshot.json")
}

fn load() -> FixtureIndex {
    FixtureIndex::load(snapshot_path()).expect("pypi-snapshot.json loads as a fixture index")
}

#[test]
fn snapshot_loads_with_many_projects_and_versions() {
    let index = load();
    assert!(
        index.projects().len() >= 250,
        "only {} projects",
        index.projects().len()
    );
    assert!(index.files().count() >= 1000);
    // The torch family's PyPI-side dependencies are there.
    for name in [
        "filelock",
        "sympy",
        "networkx",
        "jinja2",
        "fsspec",
        "setuptools",
        "typing-extensions",
        "numpy",
        "pillow",
        "mpmath",
        "markupsafe",
    ] {
        assert!(index.project(name).is_some(), "{name} missing");
    }
    // The torch family itself comes from pytorch-cu130.json, not from here.
    for name in [
        "torch",
        "torchvision",
        "torchaudio",
        "triton",
        "nvidia-cublas",
    ] {
        assert!(index.project(name).is_none(), "{name} must not be here");
    }
}

#[test]
fn every_project_has_a_wheel_for_cp314_x86_64_or_pure_python() {
    let python = PythonVersion::from_str("3.14").unwrap();
    let platform = Platform::from_str("manylinux_2_39_x86_64").unwrap();
    let tags = Target::new(python, false, platform).tags();
    for (key, project) in load().projects() {
        let fits = project.files.iter().any(|f| {
            let wheel: WheelFilename =
                match comfypak::filename::DistFilename::parse(&f.entry.filename, None) {
                    Ok(comfypak::filename::DistFilename::Wheel(w)) => w,
                    other => panic!("{}: not a wheel: {other:?}", f.entry.filename),
                };
            wheel.best_priority(&tags).is_some() || f.entry.filename.ends_with("-py3-none-any.whl")
        });
        assert!(fits, "{key}: no wheel for cp314 x86_64 nor py3-none-any");
    }
}

#[test]
fn names_are_normalized_and_files_carry_real_facts() {
    let index = load();
    for (key, project) in index.projects() {
        assert_eq!(&project.name, key, "project key is not its normalized name");
        assert_eq!(normalize_name(key), *key);
        for f in &project.files {
            assert!(
                f.entry.upload_time.is_some(),
                "{}: no upload time",
                f.entry.filename
            );
            assert!(
                f.entry.real_size.unwrap_or(0) > 0,
                "{}: no installed size",
                f.entry.filename
            );
        }
    }
    // Real METADATA: transformers depends on huggingface-hub, with extras declared.
    let transformers = index.project("transformers").unwrap();
    let newest = transformers.files.last().unwrap();
    assert!(newest
        .entry
        .requires_dist
        .iter()
        .any(|r| normalize_name(r).starts_with("huggingface-hub")));
    assert!(!newest.entry.provides_extra.is_empty());
}

#[test]
fn no_index_host_appears_in_the_snapshot() {
    let text = std::fs::read_to_string(snapshot_path()).unwrap();
    assert!(!text.contains("://"), "the snapshot holds a URL");
    let defs = IndexDefs::load_dir(&root().join("indexes")).unwrap();
    for def in defs.iter() {
        if let Some(host) = def.url.host_str() {
            assert!(
                !text.contains(host),
                "the snapshot names the host of index `{}`",
                def.name
            );
        }
    }
}

#[test]
fn every_pinned_root_with_a_wheel_is_in_the_snapshot() {
    let index = load();
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snapshot_path()).unwrap()).unwrap();
    let sdists = spec["sdists"].as_object().expect("an `sdists` table");
    let roots =
        std::fs::read_to_string(root().join("fixtures/indexes/snapshot-roots.txt")).unwrap();
    let mut pins = 0;
    let mut in_pins = true;
    for line in roots.lines() {
        let line = line.split('#').next().unwrap().trim();
        match line {
            "" => continue,
            "[pins]" => in_pins = true,
            "[visited]" => in_pins = false,
            _ if in_pins => {
                let (name, version) = line.split_once("==").unwrap();
                pins += 1;
                let key = normalize_name(name);
                let versions: BTreeSet<String> = index
                    .project(&key)
                    .map(|p| p.files.iter().map(|f| f.entry.version.clone()).collect())
                    .unwrap_or_default();
                let pinned = pep440_rs::Version::from_str(version).unwrap();
                let has_pin = versions
                    .iter()
                    .any(|v| pep440_rs::Version::from_str(v).unwrap() == pinned);
                // A pin without a fitting wheel (sdist-only) is recorded as an sdist.
                assert!(
                    has_pin || sdists.contains_key(&key),
                    "{name}=={version}: neither a wheel nor an sdist in the snapshot"
                );
            }
            _ => {}
        }
    }
    assert!(pins >= 250, "only {pins} pins read");
}
