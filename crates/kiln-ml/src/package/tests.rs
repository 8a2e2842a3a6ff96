use super::*;
use crate::linear::LinearModel;
use crate::native::Scorer;
use crate::tensor::ElemType;
use kiln_transform::{DType, Step};

fn model_json() -> Vec<u8> {
    let m = NativeModel {
        algorithm: "linear".into(),
        task: Task::Regression,
        feature_names: vec!["a".into(), "b=x".into()],
        class_labels: vec![],
        scorer: Scorer::Linear(LinearModel {
            n_features: 2,
            n_targets: 1,
            coefficients: vec![1.0, 2.0],
            intercepts: vec![0.5],
        }),
    };
    serde_json::to_vec(&m).unwrap()
}

fn draft() -> Manifest {
    let mut m = Manifest::new("price", ModelFormat::KilnNative, "model.json");
    m.task = Some(Task::Regression);
    m.inputs = vec![TensorSpec {
        name: "input".into(),
        datatype: ElemType::Fp32,
        shape: vec![-1, 2],
    }];
    m.outputs = vec![TensorSpec {
        name: "prediction".into(),
        datatype: ElemType::Fp32,
        shape: vec![-1],
    }];
    m.transform = Some(TransformSpec {
        inputs: vec![
            Column::new("a", DType::Float),
            Column::new("b", DType::String),
        ],
        steps: vec![Step::OneHot {
            column: "b".into(),
            categories: vec!["x".into()],
        }],
        outputs: vec!["a".into(), "b=x".into()],
    });
    m.metrics.insert("valid_rmse".into(), 1.25);
    m.metrics.insert("valid_r2".into(), f64::NAN);
    m.params.insert("alpha".into(), serde_json::json!(1.0));
    m.lineage = Lineage {
        run_id: Some("r1".into()),
        experiment_id: Some("1".into()),
        datasets: vec![DatasetRef {
            name: "flights".into(),
            digest: "abc".into(),
            role: "train".into(),
        }],
        code_commit: Some("deadbeef".into()),
        code_dirty: Some(false),
    };
    m
}

fn build(dir: &Path) -> Package {
    PackageBuilder::new(draft())
        .file("model.json", model_json())
        .file("extra/notes.txt", b"hello".to_vec())
        .write(dir.join("pkg"))
        .unwrap()
}

fn package_error(r: Result<Package>) -> PackageError {
    match r {
        Err(MlError::Package(e)) => e,
        other => panic!("expected a package error, got {other:?}"),
    }
}

#[test]
fn round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let built = build(tmp.path());
    let opened = Package::open(tmp.path().join("pkg")).unwrap();
    assert_eq!(opened.manifest(), built.manifest());
    assert_eq!(opened.digest(), built.digest());
    assert_eq!(
        opened.digest(),
        sha256_hex(&fs::read(tmp.path().join("pkg/manifest.json")).unwrap())
    );
    let m = opened.manifest();
    assert_eq!(m.version, FORMAT_VERSION);
    assert_eq!(m.files.len(), 2);
    assert_eq!(m.files[0].path, "extra/notes.txt");
    assert_eq!(m.files[0].bytes, 5);
    assert_eq!(m.files[0].sha256, sha256_hex(b"hello"));
    assert_eq!(m.raw_inputs.len(), 2);
    assert!(!m.metrics.contains_key("valid_r2"));
    assert_eq!(m.created_at.len(), 20);
    assert_eq!(opened.native_model().unwrap().feature_names[1], "b=x");
    assert_eq!(opened.read_file("extra/notes.txt").unwrap(), b"hello");
    // No temporary folder is left behind.
    let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
    // The same target twice is refused.
    let again = PackageBuilder::new(draft())
        .file("model.json", model_json())
        .write(tmp.path().join("pkg"));
    assert!(matches!(package_error(again), PackageError::Invalid(_)));
}

#[test]
fn write_into_names_the_folder_by_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = draft();
    d.created_at = "2025-01-01T00:00:00Z".into();
    let p1 = PackageBuilder::new(d.clone())
        .file("model.json", model_json())
        .write_into(tmp.path())
        .unwrap();
    assert_eq!(p1.dir(), tmp.path().join(p1.digest()));
    let p2 = PackageBuilder::new(d)
        .file("model.json", model_json())
        .write_into(tmp.path())
        .unwrap();
    assert_eq!(p1.digest(), p2.digest());
}

#[test]
fn a_flipped_byte_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = build(tmp.path());
    let path = pkg.dir().join("model.json");
    let mut b = fs::read(&path).unwrap();
    b[3] ^= 1;
    fs::write(&path, &b).unwrap();
    let e = package_error(Package::open(pkg.dir()));
    let msg = e.to_string();
    match e {
        PackageError::FileMismatch {
            file,
            expected_sha256,
            actual_sha256,
            ..
        } => {
            assert_eq!(file, "model.json");
            assert_eq!(actual_sha256, sha256_hex(&b));
            assert!(msg.contains(&expected_sha256) && msg.contains(&actual_sha256));
        }
        other => panic!("{other:?}"),
    }
    // read_file of an opened package notices a later change too.
    let e = pkg.read_file("model.json").unwrap_err().to_string();
    assert!(e.contains("model.json"), "{e}");
}

#[test]
fn missing_and_extra_files() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = build(tmp.path());
    fs::write(pkg.dir().join("extra/stray.bin"), b"x").unwrap();
    match package_error(Package::open(pkg.dir())) {
        PackageError::ExtraFiles { files } => assert_eq!(files, vec!["extra/stray.bin"]),
        other => panic!("{other:?}"),
    }
    fs::remove_file(pkg.dir().join("extra/stray.bin")).unwrap();
    fs::remove_file(pkg.dir().join("extra/notes.txt")).unwrap();
    match package_error(Package::open(pkg.dir())) {
        PackageError::MissingFile { file } => assert_eq!(file, "extra/notes.txt"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_manifest_names_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = build(tmp.path());
    let mpath = pkg.dir().join(MANIFEST_FILE);
    let text = fs::read_to_string(&mpath).unwrap();
    let bad = text.replacen("\"version\": 1", "\"version\": \"one\"", 1);
    assert_ne!(bad, text);
    fs::write(&mpath, &bad).unwrap();
    let e = package_error(Package::open(pkg.dir())).to_string();
    assert!(e.contains("version") && e.contains("line"), "{e}");
    let bad = text.replacen("\"format\": \"kiln-native\"", "\"format\": \"pickle\"", 1);
    fs::write(&mpath, &bad).unwrap();
    let e = package_error(Package::open(pkg.dir())).to_string();
    assert!(e.contains("format"), "{e}");
    let bad = text.replacen("\"version\": 1", "\"version\": 99", 1);
    fs::write(&mpath, &bad).unwrap();
    let e = package_error(Package::open(pkg.dir())).to_string();
    assert!(e.contains("version 99"), "{e}");
    fs::remove_file(&mpath).unwrap();
    let e = package_error(Package::open(pkg.dir())).to_string();
    assert!(e.contains("not a Kiln package"), "{e}");
}

#[test]
fn signatures() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = build(tmp.path());
    let (private, public) = generate_keypair().unwrap();
    assert_eq!(private.key_id(), public.key_id());
    assert_eq!(public.key_id().len(), 16);
    let mut trusted = TrustedKeys::new();
    trusted.add(public.clone());

    let e = package_error(pkg.verify_signature(&trusted).map(|_| pkg.clone()));
    assert!(matches!(e, PackageError::NotSigned));

    sign_package(pkg.dir(), &private).unwrap();
    let opened = Package::open(pkg.dir()).unwrap();
    assert!(opened.is_signed());
    assert_eq!(opened.verify_signature(&trusted).unwrap(), public.key_id());

    // Signed by a key that is not trusted.
    let (_, other) = generate_keypair().unwrap();
    let mut strangers = TrustedKeys::new();
    strangers.add(other);
    match package_error(opened.verify_signature(&strangers).map(|_| opened.clone())) {
        PackageError::UnknownKey { key_id } => assert_eq!(key_id, public.key_id()),
        e => panic!("{e:?}"),
    }

    // An edited manifest (still consistent with the files) fails the signature.
    let mpath = pkg.dir().join(MANIFEST_FILE);
    let text = fs::read_to_string(&mpath).unwrap();
    fs::write(&mpath, text.replacen("\"price\"", "\"prize\"", 1)).unwrap();
    let edited = Package::open(pkg.dir()).unwrap();
    assert!(matches!(
        package_error(edited.verify_signature(&trusted).map(|_| edited.clone())),
        PackageError::BadSignature { .. }
    ));
}

#[test]
fn key_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (private, public) = generate_keypair().unwrap();
    let kp = tmp.path().join("signing.key");
    private.save(&kp).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(&kp).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(
        private.save(&kp).is_err(),
        "an existing key is not replaced"
    );
    let loaded = PrivateKey::load(&kp).unwrap();
    assert_eq!(loaded.key_id(), private.key_id());
    assert_eq!(loaded.sign(b"m"), private.sign(b"m"));
    let text: serde_json::Value = serde_json::from_str(&private.to_text()).unwrap();
    let seed = text["private_key"].as_str().unwrap();
    assert!(!format!("{loaded:?}").contains(seed));

    let dir = tmp.path().join("trusted");
    fs::create_dir(&dir).unwrap();
    public.save(dir.join("ci.pub")).unwrap();
    let (_, p2) = generate_keypair().unwrap();
    p2.save(dir.join("other.pub")).unwrap();
    fs::write(dir.join("README"), "not a key").unwrap();
    let trusted = TrustedKeys::load(&[&dir]).unwrap();
    assert_eq!(trusted.len(), 2);
    assert!(trusted.get(public.key_id()).is_some());
    assert!(public.verify(b"m", &private.sign(b"m")));

    // A private key file is not a public key file, and a tampered id is caught.
    let e = PublicKey::load(&kp).unwrap_err().to_string();
    assert!(e.contains("signing.key"), "{e}");
    let text = public
        .to_text()
        .replace(public.key_id(), "0000000000000000");
    assert!(PublicKey::from_text(&text).unwrap_err().contains("key_id"));
}

#[test]
fn builder_refuses_bad_paths() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["../x", "/abs", "a//b", "manifest.json", "signature.json"] {
        let r = PackageBuilder::new(draft())
            .file("model.json", model_json())
            .file(bad, b"x".to_vec())
            .write(tmp.path().join("p"));
        assert!(
            matches!(package_error(r), PackageError::Invalid(_)),
            "{bad}"
        );
    }
    let r = PackageBuilder::new(draft())
        .file("weights.bin", b"x".to_vec())
        .write(tmp.path().join("p"));
    assert!(package_error(r).to_string().contains("model.json"));
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn rfc3339_dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
}
