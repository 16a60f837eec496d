//! The v3.0 writer: round trips, crash safety, append, refusal to overwrite, determinism,
//! validation of what it wrote, and clear errors on bad input.

use std::path::Path;

use mulli_core::{DType, FeatureSpec, Features, Frame, Value};
use mulli_data::demo::DemoSpec;
use mulli_data::loader::DecoderCache;
use mulli_data::{DataError, Dataset, DatasetWriter, WriteMode, WriterOptions, validate};

fn small(video: bool) -> DemoSpec {
    DemoSpec {
        episodes: 3,
        frames_per_episode: 7,
        height: 32,
        width: 48,
        video,
        ..Default::default()
    }
}

fn opts(mode: WriteMode) -> WriterOptions {
    WriterOptions {
        fps: 10,
        mode,
        ..Default::default()
    }
}

fn write(spec: &DemoSpec, dir: &Path) {
    spec.write(dir, opts(WriteMode::Create), &mut |_, _| {})
        .unwrap();
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
}

#[test]
fn video_dataset_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let spec = small(true);
    write(&spec, dir.path());
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!((ds.episodes.len(), ds.len()), (3, 21));
    assert_eq!(ds.info.total_frames, 21);
    assert_eq!(
        ds.info.features["observation.images.front"]
            .info
            .as_ref()
            .unwrap()["video.codec"],
        "h264"
    );
    assert_eq!(ds.tasks.len(), 3);
    assert!(ds.tasks.contains(&"케첩을 냉장고에 넣어줘".to_string()));
    let mut cache = DecoderCache::new(2);
    let mut buf = vec![0u8; 32 * 48 * 3];
    for ep in 0..3 {
        let mut walk = vec![0f32; 15];
        for k in 0..7 {
            let row = ep * 7 + k;
            let f = spec.frame(ep, k, &mut walk);
            assert_eq!(
                ds.table.column("observation.state").unwrap().value(row),
                f.values["observation.state"]
            );
            assert_eq!(ds.task_of_row(row), f.task);
            for (ci, cam) in ["front", "wrist"].iter().enumerate() {
                let key = format!("observation.images.{cam}");
                let (p, t) = ds.video_location(&key, row).unwrap().unwrap();
                ds.read_video_frame(cache.get(&p).unwrap(), t, &mut buf)
                    .unwrap();
                let q = psnr(&buf, &spec.image(ep, k, ci));
                assert!(q > 30.0, "episode {ep} frame {k} {cam}: PSNR {q:.1} dB");
            }
        }
    }
    // The episodes' video segments tile the concatenated file.
    let segs: Vec<_> = ds
        .episodes
        .iter()
        .map(|e| e.videos["observation.images.front"].clone().unwrap())
        .collect();
    assert_eq!(segs[0].from_timestamp, 0.0);
    assert!(
        (segs[1].from_timestamp - 0.7).abs() < 1e-9 && (segs[2].to_timestamp - 2.1).abs() < 1e-9
    );
    assert!(validate::validate(&ds, &mut |_, _| {}).unwrap().is_empty());
    // Stats: image stats per channel in [0, 1], numeric stats exact.
    let s = &ds.stats["observation.images.front"];
    assert!(s.image && s.dim() == 3 && s.max.iter().all(|&m| m <= 1.0));
    assert_eq!(ds.stats["observation.state"].count, 21);
}

#[test]
fn image_dataset_round_trips_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    let spec = small(false);
    write(&spec, dir.path());
    let ds = Dataset::open(dir.path()).unwrap();
    let mut buf = vec![0u8; 32 * 48 * 3];
    for row in 0..ds.len() {
        let (ep, k) = (row / 7, row % 7);
        ds.read_image("observation.images.wrist", row, &mut buf)
            .unwrap();
        assert_eq!(buf, spec.image(ep, k, 1), "row {row}");
    }
    assert!(validate::validate(&ds, &mut |_, _| {}).unwrap().is_empty());
}

#[test]
fn same_seed_gives_the_same_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write(&small(true), a.path());
    write(&small(true), b.path());
    for rel in [
        "data/chunk-000/file-000.parquet",
        "videos/observation.images.front/chunk-000/file-000.mp4",
        "meta/episodes/chunk-000/file-000.parquet",
        "meta/stats.json",
        "meta/info.json",
        "meta/tasks.parquet",
    ] {
        let x = std::fs::read(a.path().join(rel)).unwrap();
        let y = std::fs::read(b.path().join(rel)).unwrap();
        assert!(x == y, "{rel} differs between two runs with the same seed");
    }
}

#[test]
fn refuses_a_non_empty_directory_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let spec = small(true);
    let e = DatasetWriter::create(dir.path(), &spec.features(), opts(WriteMode::Create))
        .err()
        .unwrap();
    assert!(matches!(e, DataError::NotEmpty { .. }), "{e}");
    assert!(e.to_string().contains("--force"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("precious.txt")).unwrap(),
        "keep me"
    );
    // Overwrite replaces it.
    spec.write(dir.path(), opts(WriteMode::Overwrite), &mut |_, _| {})
        .unwrap();
    assert!(!dir.path().join("precious.txt").exists());
    assert_eq!(Dataset::open(dir.path()).unwrap().episodes.len(), 3);
}

#[test]
fn a_crash_loses_at_most_the_episode_being_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let spec = small(true);
    let mut w =
        DatasetWriter::create(dir.path(), &spec.features(), opts(WriteMode::Create)).unwrap();
    for ep in 0..3 {
        let mut walk = vec![0f32; 15];
        for k in 0..7 {
            w.add_frame(&spec.frame(ep, k, &mut walk)).unwrap();
        }
        if ep < 2 {
            w.save_episode().unwrap();
        }
    }
    // "Crash": the process dies with episode 2 half recorded and nothing finalized.
    std::mem::forget(w);
    // Debris of a staging write and of a consolidation that were interrupted.
    std::fs::create_dir_all(dir.path().join(".mulli-staging/.episode-000002.tmp")).unwrap();
    std::fs::create_dir_all(dir.path().join("data/chunk-000")).unwrap();
    std::fs::write(
        dir.path().join("data/chunk-000/.file-000.parquet.tmp"),
        b"half a file",
    )
    .unwrap();

    let n = mulli_data::writer::recover(dir.path()).unwrap();
    assert_eq!(n, 2);
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!((ds.episodes.len(), ds.len()), (2, 14));
    assert!(validate::validate(&ds, &mut |_, _| {}).unwrap().is_empty());
    assert!(
        !dir.path()
            .join("data/chunk-000/.file-000.parquet.tmp")
            .exists()
    );
    assert!(!dir.path().join(".mulli-staging").exists());
}

#[test]
fn append_mode_adds_episodes_in_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let spec = small(true);
    write(&spec, dir.path());
    let mut w =
        DatasetWriter::create(dir.path(), &spec.features(), opts(WriteMode::Append)).unwrap();
    assert_eq!(w.num_episodes(), 3);
    let mut walk = vec![0f32; 15];
    for k in 0..5 {
        w.add_frame(&spec.frame(9, k, &mut walk)).unwrap();
    }
    assert_eq!(w.save_episode().unwrap(), 3);
    w.finalize().unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    assert_eq!((ds.episodes.len(), ds.len()), (4, 26));
    assert_eq!(ds.episodes[3].data_file, 1);
    assert!(validate::validate(&ds, &mut |_, _| {}).unwrap().is_empty());
    // Appending data of another shape is refused, naming the feature.
    let mut other = spec.features();
    other.insert("action".into(), FeatureSpec::vector("action", &["a"]));
    let e = DatasetWriter::create(dir.path(), &other, opts(WriteMode::Append))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("action"), "{e}");
}

#[test]
fn bad_frames_are_refused_with_the_feature_named() {
    let dir = tempfile::tempdir().unwrap();
    let spec = small(true);
    let mut w =
        DatasetWriter::create(dir.path(), &spec.features(), opts(WriteMode::Create)).unwrap();
    let mut walk = vec![0f32; 15];
    let good = spec.frame(0, 0, &mut walk);
    let mut short = good.clone();
    short
        .values
        .insert("action".into(), Value::F32(vec![0.0; 2]));
    assert!(
        w.add_frame(&short)
            .unwrap_err()
            .to_string()
            .contains("action")
    );
    let mut wrong = good.clone();
    wrong.values.insert(
        "observation.images.front".into(),
        Value::F32(vec![0.0; 32 * 48 * 3]),
    );
    assert!(
        w.add_frame(&wrong)
            .unwrap_err()
            .to_string()
            .contains("observation.images.front")
    );
    let mut no_task = good.clone();
    no_task.task.clear();
    assert!(w.add_frame(&no_task).is_err());
    assert!(
        w.save_episode().is_err(),
        "an empty episode must not be saved"
    );
    // Odd video sizes cannot be H.264-encoded: refused up front.
    let mut feats = Features::new();
    let cam = FeatureSpec::camera("cam", 31, 32, true);
    feats.insert("cam".into(), cam);
    let e = DatasetWriter::create(
        tempfile::tempdir().unwrap().path(),
        &feats,
        opts(WriteMode::Create),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("cam") && e.contains("even"), "{e}");
}

#[test]
fn every_dtype_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut feats = Features::new();
    let specs = [
        FeatureSpec::new("b", DType::Bool, vec![2]),
        FeatureSpec::new("u", DType::UInt8, vec![1]),
        FeatureSpec::new("i", DType::Int32, vec![3]),
        FeatureSpec::new("l", DType::Int64, vec![1]),
        FeatureSpec::new("f", DType::Float32, vec![2, 3]),
        FeatureSpec::new("d", DType::Float64, vec![2]),
        FeatureSpec::new("s", DType::String, vec![1]),
    ];
    for s in specs {
        feats.insert(s.name.clone(), s);
    }
    let mut w = DatasetWriter::create(dir.path(), &feats, opts(WriteMode::Create)).unwrap();
    let frame = |k: usize| {
        Frame::new("t")
            .with("b", Value::Bool(vec![k.is_multiple_of(2), true]))
            .with("u", Value::U8(vec![k as u8]))
            .with("i", Value::I32(vec![-(k as i32), 0, i32::MAX]))
            .with("l", Value::I64(vec![i64::MIN + k as i64]))
            .with(
                "f",
                Value::F32((0..6).map(|x| x as f32 * 0.5 + k as f32).collect()),
            )
            .with("d", Value::F64(vec![f64::MAX, -1e-300]))
            .with("s", Value::Str(format!("문장 {k}")))
    };
    for k in 0..4 {
        w.add_frame(&frame(k)).unwrap();
    }
    w.save_episode().unwrap();
    w.finalize().unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    for k in 0..4 {
        for (name, v) in frame(k).values {
            assert_eq!(
                ds.table.column(&name).unwrap().value(k),
                v,
                "feature {name} row {k}"
            );
        }
    }
}

#[test]
fn bad_datasets_give_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(&small(true), dir.path());
    let root = dir.path();
    let copy = |name: &str| {
        let d = tempfile::tempdir().unwrap();
        copy_dir(root, d.path());
        let _ = name;
        d
    };
    // Missing info.json.
    let e = Dataset::open(root.join("nope")).unwrap_err().to_string();
    assert!(e.contains("info.json"), "{e}");
    // Malformed info.json.
    let d = copy("info");
    std::fs::write(
        d.path().join("meta/info.json"),
        "{\"codebase_version\": \"v3.0\", \"fps\": ",
    )
    .unwrap();
    let e = Dataset::open(d.path()).unwrap_err().to_string();
    assert!(e.contains("info.json") && e.contains("JSON"), "{e}");
    // Truncated data parquet.
    let d = copy("trunc");
    let p = d.path().join("data/chunk-000/file-000.parquet");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = Dataset::open(d.path()).unwrap_err().to_string();
    assert!(e.contains("file-000.parquet"), "{e}");
    // Missing data file.
    let d = copy("missing");
    std::fs::remove_file(d.path().join("data/chunk-000/file-000.parquet")).unwrap();
    let e = Dataset::open(d.path()).unwrap_err().to_string();
    assert!(
        e.contains("file-000.parquet") && e.contains("missing"),
        "{e}"
    );
    // Corrupt MP4: opening works (metadata only), reading a frame names the video.
    let d = copy("mp4");
    let p = d
        .path()
        .join("videos/observation.images.front/chunk-000/file-000.mp4");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.truncate(bytes.len() / 3);
    std::fs::write(&p, &bytes).unwrap();
    let ds = Dataset::open(d.path()).unwrap();
    let problems = validate::validate(&ds, &mut |_, _| {}).unwrap();
    assert!(
        problems.iter().any(|p| p.file.ends_with("file-000.mp4")),
        "{problems:#?}"
    );
    // Wrong dtype declared for a column.
    let d = copy("dtype");
    let ip = d.path().join("meta/info.json");
    let text = std::fs::read_to_string(&ip)
        .unwrap()
        .replacen("\"float32\"", "\"string\"", 1);
    std::fs::write(&ip, text).unwrap();
    let e = Dataset::open(d.path()).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("file-000.parquet"), "{e}");
    // Out-of-range access.
    let ds = Dataset::open(root).unwrap();
    assert!(matches!(
        ds.episode_of_row(10_000),
        Err(DataError::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        ds.episode_rows(99),
        Err(DataError::EpisodeOutOfRange { .. })
    ));
}

#[test]
fn validate_reports_inconsistent_metadata() {
    let dir = tempfile::tempdir().unwrap();
    write(&small(true), dir.path());
    let ip = dir.path().join("meta/info.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ip).unwrap()).unwrap();
    v["total_frames"] = serde_json::json!(999);
    std::fs::write(&ip, v.to_string()).unwrap();
    let sp = dir.path().join("meta/stats.json");
    let mut s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sp).unwrap()).unwrap();
    s["action"]["mean"][0] = serde_json::json!(123.0);
    std::fs::write(&sp, s.to_string()).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let problems = validate::validate(&ds, &mut |_, _| {}).unwrap();
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|p| p.contains("total_frames is 999")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|p| p.contains("stats.json") && p.contains("action")),
        "{text:#?}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
fn files_roll_over_by_size_and_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let spec = small(true);
    // A 0 MB limit puts every episode in its own data and video file; chunks of 2 files.
    let o = WriterOptions {
        fps: 10,
        mode: WriteMode::Create,
        data_files_size_in_mb: 0,
        video_files_size_in_mb: 0,
        chunks_size: 2,
        ..Default::default()
    };
    spec.write(dir.path(), o, &mut |_, _| {}).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let files: Vec<_> = ds
        .episodes
        .iter()
        .map(|e| (e.data_chunk, e.data_file))
        .collect();
    assert_eq!(files, vec![(0, 0), (0, 1), (1, 0)]);
    assert!(dir.path().join("data/chunk-001/file-000.parquet").exists());
    assert!(
        dir.path()
            .join("videos/observation.images.wrist/chunk-001/file-000.mp4")
            .exists()
    );
    let seg = ds.episodes[2].videos["observation.images.wrist"]
        .clone()
        .unwrap();
    assert_eq!(
        (seg.chunk_index, seg.file_index, seg.from_timestamp),
        (1, 0, 0.0)
    );
    assert!(validate::validate(&ds, &mut |_, _| {}).unwrap().is_empty());
}

/// A camera absent in one episode (all its `videos/<key>/*` columns null, as LeRobot allows):
/// the episode reads as black frames for that camera, the others are untouched.
#[test]
fn a_camera_missing_in_an_episode_reads_as_black() {
    use arrow::array::{Array, ArrayRef, new_null_array};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    write(&small(true), dir.path());
    let ep_path = dir.path().join("meta/episodes/chunk-000/file-000.parquet");
    let file = std::fs::File::open(&ep_path).unwrap();
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let schema = batch.schema();
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| {
            if !f.name().starts_with("videos/observation.images.wrist/") {
                return c.clone();
            }
            // Null in row 1 only.
            let nulls = new_null_array(c.data_type(), 1);
            arrow::compute::concat(&[
                c.slice(0, 1).as_ref(),
                nulls.as_ref(),
                c.slice(2, c.len() - 2).as_ref(),
            ])
            .unwrap()
        })
        .collect();
    let patched = arrow::array::RecordBatch::try_new(schema.clone(), cols).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&ep_path).unwrap(),
        schema,
        None,
    )
    .unwrap();
    w.write(&patched).unwrap();
    w.close().unwrap();

    let ds = Arc::new(Dataset::open(dir.path()).unwrap());
    assert!(ds.episodes[1].videos["observation.images.wrist"].is_none());
    assert!(ds.episodes[1].videos["observation.images.front"].is_some());
    assert!(
        ds.video_location("observation.images.wrist", 8)
            .unwrap()
            .is_none()
    );
    let loader = mulli_data::Loader::new(
        ds.clone(),
        mulli_data::LoaderConfig {
            num_workers: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let b = loader.batch(&[8, 15], &mut DecoderCache::new(2)).unwrap();
    let mulli_data::loader::TensorData::U8(px) = &b.tensors["observation.images.wrist"].data else {
        panic!()
    };
    let n = 32 * 48 * 3;
    assert!(
        px[..n].iter().all(|&p| p == 0),
        "episode 1's wrist frame is black"
    );
    assert!(
        px[n..].iter().any(|&p| p != 0),
        "episode 2's wrist frame is real"
    );
    assert_eq!(
        b.tensors["observation.images.front"].shape,
        vec![2, 32, 48, 3]
    );
}
