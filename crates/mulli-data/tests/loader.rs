//! The training loader: action chunks with padding at episode ends, observation history,
//! determinism, and identical batches with and without worker threads.

use std::sync::Arc;

use mulli_data::demo::DemoSpec;
use mulli_data::loader::{DecoderCache, TensorData};
use mulli_data::{Dataset, DeltaTimestamps, Loader, LoaderConfig, WriteMode, WriterOptions};

fn dataset(video: bool) -> (tempfile::TempDir, Arc<Dataset>) {
    let dir = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        episodes: 4,
        frames_per_episode: 6,
        height: 16,
        width: 16,
        video,
        ..Default::default()
    };
    spec.write(
        dir.path(),
        WriterOptions {
            mode: WriteMode::Create,
            ..Default::default()
        },
        &mut |_, _| {},
    )
    .unwrap();
    let ds = Arc::new(Dataset::open(dir.path()).unwrap());
    (dir, ds)
}

fn cfg(ds: &Dataset, workers: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 5,
        seed: 7,
        num_workers: workers,
        delta_timestamps: DeltaTimestamps::default()
            .frames("action", 0..4, ds.fps())
            .frames("observation.state", [-2, -1, 0], ds.fps())
            .frames("observation.images.front", [-1, 0], ds.fps()),
        ..Default::default()
    }
}

#[test]
fn action_chunks_clamp_and_pad_at_episode_ends() {
    let (_d, ds) = dataset(true);
    let loader = Loader::new(ds.clone(), cfg(&ds, 0)).unwrap();
    // Row 4 is frame 4 of episode 0 (6 frames): chunk rows 4,5,5,5 with pads F,F,T,T.
    let b = loader.batch(&[4, 6], &mut DecoderCache::new(2)).unwrap();
    let act = &b.tensors["action"];
    assert_eq!(act.shape, vec![2, 4, 7]);
    let TensorData::F32(a) = &act.data else {
        panic!()
    };
    let col = ds.table.f32s("action").unwrap();
    let row = |r: usize| &col[r * 7..r * 7 + 7];
    assert_eq!(&a[0..7], row(4));
    assert_eq!(&a[7..14], row(5));
    assert_eq!(
        &a[14..21],
        row(5),
        "clamped to the last frame of the episode"
    );
    assert_eq!(&a[21..28], row(5));
    let TensorData::Bool(pad) = &b.tensors["action_is_pad"].data else {
        panic!()
    };
    assert_eq!(&pad[..4], &[false, false, true, true]);
    assert_eq!(&pad[4..], &[false, false, false, false]);
    // History before the episode start: row 6 is frame 0 of episode 1.
    let TensorData::Bool(spad) = &b.tensors["observation.state_is_pad"].data else {
        panic!()
    };
    assert_eq!(&spad[..3], &[false, false, false]);
    assert_eq!(&spad[3..], &[true, true, false]);
    let TensorData::F32(s) = &b.tensors["observation.state"].data else {
        panic!()
    };
    let scol = ds.table.f32s("observation.state").unwrap();
    assert_eq!(
        &s[24..32],
        &scol[6 * 8..7 * 8],
        "clamped to the episode's first frame"
    );
    // Images stay uint8, HWC, with a time axis.
    let img = &b.tensors["observation.images.front"];
    assert_eq!(img.shape, vec![2, 2, 16, 16, 3]);
    assert!(matches!(img.data, TensorData::U8(_)));
    assert_eq!(b.episode_index, vec![0, 1]);
}

#[test]
fn batches_are_deterministic_and_independent_of_threads() {
    for video in [true, false] {
        let (_d, ds) = dataset(video);
        let inline: Vec<_> = Loader::new(ds.clone(), cfg(&ds, 0))
            .unwrap()
            .epoch(3)
            .map(Result::unwrap)
            .collect();
        let threaded: Vec<_> = Loader::new(ds.clone(), cfg(&ds, 3))
            .unwrap()
            .epoch(3)
            .map(Result::unwrap)
            .collect();
        assert_eq!(inline.len(), 5, "24 samples in batches of 5");
        assert_eq!(inline, threaded);
        let other_epoch: Vec<_> = Loader::new(ds.clone(), cfg(&ds, 2))
            .unwrap()
            .epoch(4)
            .map(Result::unwrap)
            .collect();
        assert_ne!(
            inline[0].rows, other_epoch[0].rows,
            "epochs are shuffled differently"
        );
        let mut all: Vec<usize> = inline.iter().flat_map(|b| b.rows.clone()).collect();
        all.sort();
        assert_eq!(
            all,
            (0..24).collect::<Vec<_>>(),
            "every sample once per epoch"
        );
    }
}

#[test]
fn bad_loader_configs_are_explained() {
    let (_d, ds) = dataset(true);
    let mut c = cfg(&ds, 0);
    c.delta_timestamps = DeltaTimestamps::default();
    c.delta_timestamps
        .0
        .insert("action".into(), vec![0.0, 0.05]);
    let e = Loader::new(ds.clone(), c).err().unwrap().to_string();
    assert!(e.contains("action") && e.contains("1/fps"), "{e}");
    let mut c = cfg(&ds, 0);
    c.keys = Some(vec!["nope".into()]);
    c.delta_timestamps = DeltaTimestamps::default();
    let e = Loader::new(ds.clone(), c).err().unwrap().to_string();
    assert!(e.contains("nope"), "{e}");
    let mut c = cfg(&ds, 0);
    c.batch_size = 0;
    assert!(Loader::new(ds.clone(), c).is_err());
    let loader = Loader::new(ds.clone(), cfg(&ds, 0)).unwrap();
    assert!(loader.batch(&[999], &mut DecoderCache::new(1)).is_err());
}

#[test]
fn frame_cache_is_bounded_and_transparent() {
    let (_d, ds) = dataset(true);
    let key = "observation.images.front";
    let n = 16 * 16 * 3;
    let (path, t) = ds.video_location(key, 3).unwrap().unwrap();
    let mut plain = vec![0u8; n];
    DecoderCache::new(1)
        .read_frame(&ds, &path, t, &mut plain)
        .unwrap();
    // Room for two frames: the third evicts the oldest.
    let mut c = DecoderCache::with_frame_budget(1, 2 * n);
    let mut out = vec![0u8; n];
    c.read_frame(&ds, &path, t, &mut out).unwrap();
    c.read_frame(&ds, &path, t, &mut out).unwrap();
    assert_eq!((c.hits, c.misses), (1, 1));
    assert_eq!(out, plain, "a cached frame is the decoded frame");
    for row in [4, 5, 3] {
        let (p, t) = ds.video_location(key, row).unwrap().unwrap();
        c.read_frame(&ds, &p, t, &mut out).unwrap();
    }
    assert_eq!(
        (c.hits, c.misses),
        (1, 4),
        "row 3 was evicted by rows 4 and 5"
    );
    // Batches are the same with and without the frame cache.
    let mut with = cfg(&ds, 2);
    with.frame_cache_mb = 1;
    let mut without = cfg(&ds, 2);
    without.frame_cache_mb = 0;
    let a: Vec<_> = Loader::new(ds.clone(), with)
        .unwrap()
        .epoch(0)
        .map(Result::unwrap)
        .collect();
    let b: Vec<_> = Loader::new(ds.clone(), without)
        .unwrap()
        .epoch(0)
        .map(Result::unwrap)
        .collect();
    assert_eq!(a, b);
}
