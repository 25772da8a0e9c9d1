//! The checked-in fixture specs load, say what the real index says, and render to disk.

use comfypak_testkit::{FixtureFile, FixtureIndex, WheelSpec};

#[test]
fn pytorch_cu130_has_torch_2_11_for_cp314_on_both_arches() {
    let index = FixtureIndex::pytorch_cu130().expect("pytorch-cu130.json loads");
    let torch = index.project("torch").expect("torch project");
    for arch in ["x86_64", "aarch64"] {
        let filename = format!("torch-2.11.0+cu130-cp314-cp314-manylinux_2_28_{arch}.whl");
        let f = torch
            .files
            .iter()
            .find(|f| f.entry.filename == filename)
            .unwrap_or_else(|| panic!("{filename} missing"));
        assert_eq!(f.entry.version, "2.11.0+cu130");
        assert_eq!(f.entry.requires_python.as_deref(), Some(">=3.10"));
        assert!(f.entry.requires_dist.contains(
            &"cuda-toolkit[cublas,cudart,cufft,cufile,cupti,curand,cusolver,cusparse,nvjitlink,nvrtc,nvtx]==13.0.2; platform_system == \"Linux\"".to_string()
        ));
        assert!(f
            .entry
            .requires_dist
            .contains(&"triton==3.6.0; platform_system == \"Linux\"".to_string()));
        assert_eq!(f.entry.real_size, Some(1_135_606_183));
        // The built wheel carries the same metadata.
        let md = String::from_utf8(f.wheel.metadata.clone()).unwrap();
        assert!(md.contains("Version: 2.11.0+cu130\n"));
        assert!(md.contains(
            "Requires-Dist: nvidia-cudnn-cu13==9.19.0.56; platform_system == \"Linux\"\n"
        ));
        assert_eq!(f.wheel.filename, filename);
    }
    // cp314t, cp312, cp313 too, plus the older release and a pre-release.
    for name in [
        "torch-2.11.0+cu130-cp314-cp314t-manylinux_2_28_x86_64.whl",
        "torch-2.11.0+cu130-cp312-cp312-manylinux_2_28_aarch64.whl",
        "torch-2.10.0+cu130-cp313-cp313-manylinux_2_28_x86_64.whl",
        "torch-2.12.0rc1+cu130-cp314-cp314-manylinux_2_28_x86_64.whl",
        "torchvision-0.25.0+cu130-cp314-cp314-manylinux_2_28_x86_64.whl",
        "torchaudio-2.10.0+cu130-cp314-cp314-manylinux_2_28_aarch64.whl",
    ] {
        assert!(index.file(name).is_some(), "{name} missing");
    }
    let old_vision = index
        .file("torchvision-0.25.0+cu130-cp314-cp314-manylinux_2_28_x86_64.whl")
        .unwrap();
    assert!(old_vision
        .entry
        .requires_dist
        .contains(&"torch (==2.10.0)".to_string()));
}

#[test]
fn pytorch_cu130_labels_and_tags_are_faithful() {
    let index = FixtureIndex::pytorch_cu130().unwrap();
    for f in index.files() {
        let labelled = f.entry.version.ends_with("+cu130");
        let torch_family = ["torch", "torchvision", "torchaudio"].contains(&f.project.as_str());
        assert_eq!(
            labelled, torch_family,
            "{}: +cu130 only on the torch family",
            f.entry.filename
        );
        assert!(
            f.entry.real_size.unwrap_or(0) > 0,
            "{} has a real size",
            f.entry.filename
        );
    }
    let triton = index
        .file("triton-3.6.0-cp314-cp314-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl")
        .expect("triton with its real compressed tag set");
    assert_eq!(
        triton.entry.requires_python.as_deref(),
        Some(">=3.10,<3.15")
    );
    let cublas = index.project("nvidia-cublas").unwrap();
    let names: Vec<&str> = cublas
        .files
        .iter()
        .map(|f| f.entry.filename.as_str())
        .collect();
    assert!(names.contains(&"nvidia_cublas-13.1.0.3-py3-none-manylinux_2_27_x86_64.whl"));
    assert!(names.contains(&"nvidia_cublas-13.1.0.3-py3-none-manylinux_2_27_aarch64.whl"));
    // Real nvidia-* wheels say Root-Is-Purelib: true despite platform tags.
    let wheel_text = {
        let spec = &cublas.files[0].entry;
        assert_eq!(spec.root_is_purelib, Some(true));
        let mut archive =
            zip::ZipArchive::new(std::io::Cursor::new(cublas.files[0].wheel.bytes.clone()))
                .unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(
            &mut archive
                .by_name("nvidia_cublas-13.1.0.3.dist-info/WHEEL")
                .unwrap(),
            &mut s,
        )
        .unwrap();
        s
    };
    assert!(wheel_text.contains("Root-Is-Purelib: true\n"));
    let cudnn = index.project("nvidia-cudnn-cu13").unwrap();
    assert!(cudnn
        .files
        .iter()
        .any(|f| f.entry.requires_dist == vec!["nvidia-cublas".to_string()]));
    // Pure-Python dists are single py3-none-any files; MarkupSafe keeps its METADATA name.
    assert_eq!(index.project("filelock").unwrap().files.len(), 1);
    assert_eq!(index.project("markupsafe").unwrap().name, "MarkupSafe");
    assert!(index.project("cuda-toolkit").unwrap().files[0]
        .entry
        .filename
        .ends_with("-py2.py3-none-any.whl"));
}

#[test]
fn perf_wheels_have_the_real_name_shapes() {
    let index = FixtureIndex::perf_wheels().expect("perf-wheels.json loads");
    for name in [
        "flash_attn-2.8.3+cu13torch2.11cxx11abiTRUE-cp314-cp314-linux_x86_64.whl",
        "flash_attn-2.8.3+cu12torch2.8cxx11abiFALSE-cp313-cp313-linux_aarch64.whl",
        "sageattention-2.2.0-hopper-cp314-cp314-linux_x86_64.whl",
        "sageattention-2.2.0+cu130torch2.11-cp314-cp314-linux_x86_64.whl",
        "flash_attn_3-3.0.0+cu130torch2.11gite2743ab-cp39-abi3-linux_x86_64.whl",
        "nunchaku-1.2.1+cu13.0torch2.11-cp314-cp314-linux_x86_64.whl",
        "sageattn3-1.0.0-cp314-cp314-linux_x86_64.whl",
    ] {
        assert!(index.file(name).is_some(), "{name} missing");
    }
    let fa = index.project("flash-attn").unwrap();
    assert_eq!(fa.files.len(), 4 * 2 * 2 * 2 * 2);
    assert!(fa
        .files
        .iter()
        .all(|f| f.entry.requires_dist == vec!["torch", "einops"]));
    let hopper = index
        .file("sageattention-2.2.0-hopper-cp314-cp314-linux_x86_64.whl")
        .unwrap();
    assert_eq!(hopper.entry.build_tag.as_deref(), Some("hopper"));
    assert_eq!(
        hopper.entry.effective_tags().unwrap(),
        vec!["cp314-cp314-linux_x86_64".to_string()]
    );
}

#[test]
fn simple_tree_on_disk_is_complete_and_escaped() {
    let index = FixtureIndex::builder()
        .wheel(
            WheelSpec::new("Weird.Name", "1.0+cu130")
                .requires_python(">=3.10,<3.15")
                .tag("cp314-cp314-manylinux_2_28_x86_64"),
        )
        .package("plain", "0.1", &["weird-name"])
        .package("plain", "0.2", &[])
        .yank("plain", "0.2", "broken <build>")
        .upload_time("plain", "0.1", "2026-01-02T03:04:05.000000Z")
        .build();
    let dir = std::env::temp_dir().join(format!("testkit-tree-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    index.write_simple_tree(&dir).unwrap();
    index.write_find_links_page(&dir).unwrap();
    let flat = dir.join("flat");
    index.write_flat_dir(&flat).unwrap();

    let root = std::fs::read_to_string(dir.join("simple/index.html")).unwrap();
    assert!(root.contains("<a href=\"weird-name/\">weird-name</a>"));
    let page = std::fs::read_to_string(dir.join("simple/weird-name/index.html")).unwrap();
    let w = &index.project("weird_name").unwrap().files[0];
    assert!(page.contains(&format!(
        "href=\"../../files/weird_name-1.0%2Bcu130-cp314-cp314-manylinux_2_28_x86_64.whl#sha256={}\"",
        w.wheel.sha256
    )));
    assert!(page.contains("data-requires-python=\"&gt;=3.10,&lt;3.15\""));
    assert!(page.contains(&format!(
        "data-core-metadata=\"sha256={}\"",
        w.wheel.metadata_sha256()
    )));
    assert!(page.contains(&format!(
        "data-dist-info-metadata=\"sha256={}\"",
        w.wheel.metadata_sha256()
    )));
    let plain = std::fs::read_to_string(dir.join("simple/plain/index.html")).unwrap();
    assert!(plain.contains("data-yanked=\"broken &lt;build&gt;\""));

    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("simple/plain/index.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["meta"]["api-version"], "1.1");
    assert_eq!(json["name"], "plain");
    assert_eq!(json["versions"], serde_json::json!(["0.1", "0.2"]));
    let files = json["files"].as_array().unwrap();
    assert_eq!(files[0]["upload-time"], "2026-01-02T03:04:05.000000Z");
    assert_eq!(files[0]["yanked"], false);
    assert_eq!(files[1]["yanked"], "broken <build>");
    let p01 = index.file("plain-0.1-py3-none-any.whl").unwrap();
    assert_eq!(files[0]["hashes"]["sha256"], p01.wheel.sha256);
    assert_eq!(files[0]["size"], p01.wheel.bytes.len() as u64);
    assert_eq!(
        files[0]["core-metadata"]["sha256"],
        p01.wheel.metadata_sha256()
    );

    let on_disk = std::fs::read(dir.join("files/plain-0.1-py3-none-any.whl")).unwrap();
    assert_eq!(on_disk, p01.wheel.bytes);
    let md = std::fs::read(dir.join("files/plain-0.1-py3-none-any.whl.metadata")).unwrap();
    assert_eq!(md, p01.wheel.metadata);
    assert!(String::from_utf8(md)
        .unwrap()
        .contains("Requires-Dist: weird-name\n"));
    let links = std::fs::read_to_string(dir.join("find-links/index.html")).unwrap();
    assert_eq!(links.matches("<a href=\"../files/").count(), 3);
    assert_eq!(std::fs::read_dir(&flat).unwrap().count(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_specs_are_reported_with_context() {
    let err = FixtureIndex::builder()
        .file(
            "torch",
            FixtureFile::new("2.11.0", "numpy-2.11.0-py3-none-any.whl"),
        )
        .try_build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("numpy-2.11.0-py3-none-any.whl") && err.contains("torch-2.11.0-"),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("testkit-badspec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.json");
    std::fs::write(
        &path,
        "{\n  \"projects\": {\n    \"a\": [ { \"version\": 1 } ]\n  }\n}\n",
    )
    .unwrap();
    let err = FixtureIndex::load(&path).unwrap_err().to_string();
    assert!(err.contains("bad.json") && err.contains("line 3"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn spec_round_trips_through_json() {
    let index = FixtureIndex::pytorch_cu130().unwrap();
    let spec = index.spec();
    let again = FixtureIndex::from_spec(
        serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap(),
    )
    .unwrap();
    let a: Vec<_> = index.files().map(|f| f.wheel.sha256.clone()).collect();
    let b: Vec<_> = again.files().map(|f| f.wheel.sha256.clone()).collect();
    assert_eq!(a, b, "the same spec builds the same wheels");
}

#[test]
fn pad_bytes_in_a_spec_make_the_wheel_that_much_larger_with_incompressible_filler() {
    let spec_json = |pad: &str| {
        format!(
            "{{\"projects\": {{\"big\": [{{\"version\": \"1.0\", \"filename\": \"big-1.0-py3-none-any.whl\"{pad}}}]}}}}"
        )
    };
    let load = |json: String| {
        let index = FixtureIndex::from_spec(serde_json::from_str(&json).unwrap()).unwrap();
        let file = index.files().next().unwrap();
        (file.entry.pad_bytes, file.wheel.bytes.len())
    };
    let (none, tiny) = load(spec_json(""));
    let (pad, padded) = load(spec_json(", \"pad_bytes\": 200000"));
    assert_eq!(none, None);
    assert_eq!(pad, Some(200_000));
    // Stored, not deflated, and random: the zip grows by the filler's full size.
    assert!(padded >= tiny + 200_000, "tiny {tiny}, padded {padded}");
    assert!(padded < tiny + 201_000, "tiny {tiny}, padded {padded}");
}
