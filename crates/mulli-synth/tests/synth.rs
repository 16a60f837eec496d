//! Demo multiplication end to end: scripted source demos → generated datasets.

use mulli_data::{Dataset, WriteMode, WriterOptions};
use mulli_sim::EnvConfig;
use mulli_sim::record::{RecordOptions, record};
use mulli_synth::{SynthError, SynthOptions, load, synthesize};
use std::path::Path;

const TASKS: [&str; 3] = ["pick_up_cube", "open_drawer", "put_apple_in_bowl"];

/// Three clean-ish scripted demos per task at 32×32.
fn record_source(dir: &Path) {
    record_source_with_tail(dir, 0);
}

/// [`record_source`] with demos that go on `tail` steps past their first success.
fn record_source_with_tail(dir: &Path, tail: usize) {
    let mut env = EnvConfig {
        success_tail: tail,
        ..EnvConfig::default()
    };
    env.cameras.width = 32;
    env.cameras.height = 32;
    let opts = RecordOptions {
        tasks: TASKS.iter().map(|s| s.to_string()).collect(),
        episodes: 3 * TASKS.len(),
        seed: 5,
        env,
        ..RecordOptions::default()
    };
    record(dir, &opts, WriteMode::Create, |_, _| {}).unwrap();
}

fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn generates_valid_deterministic_datasets_from_a_few_demos() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("source");
    record_source(&src);
    let source = load(&src).unwrap();
    assert_eq!(source.demos.len(), 9, "skipped: {:?}", source.skipped);
    assert_eq!(source.camera, Some((32, 32)));

    let opts = SynthOptions {
        per_task: 2,
        seed: 11,
        max_attempts_factor: 5.0,
        ..SynthOptions::default()
    };
    let a = tmp.path().join("a");
    let report = synthesize(&source, None, &a, &opts, |_, _| {}).unwrap();
    for id in TASKS {
        let t = &report.per_task[id];
        assert!(t.accepted > 0 && t.yield_rate > 0.0, "{id}: {t:?}");
        assert_eq!(t.attempts, t.reasons.values().sum::<usize>());
    }
    assert_eq!(
        report.per_task["open_drawer"].subtasks,
        "drawer_handle → cabinet"
    );
    assert_eq!(
        report.per_task["put_apple_in_bowl"].subtasks,
        "apple → bowl"
    );
    assert_eq!(report.per_task["pick_up_cube"].subtasks, "cube");

    let ds = Dataset::open(&a).unwrap();
    assert_eq!(ds.episodes.len(), report.accepted);
    let problems = mulli_data::validate::validate(&ds, &mut |_, _| {}).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    // Every generated episode ends in success.
    let success = ds.table.column("next.success").unwrap();
    for pos in 0..ds.episodes.len() {
        let (_, end) = ds.episode_rows(pos).unwrap();
        assert_eq!(success.value(end - 1).to_f64(), vec![1.0]);
    }

    // Same seed, one thread: the same bytes.
    let b = tmp.path().join("b");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let again = pool
        .install(|| synthesize(&source, None, &b, &opts, |_, _| {}))
        .unwrap();
    assert_eq!(again.attempts, report.attempts);
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa.len(), fb.len());
    for ((na, da), (nb, db)) in fa.iter().zip(&fb) {
        assert_eq!(na, nb);
        assert!(da == db, "{na} differs between runs");
    }

    // An existing non-empty output is never overwritten.
    let e = synthesize(&source, None, &a, &opts, |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("non-empty"), "{e}");
}

#[test]
fn bad_sources_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let e = load(&tmp.path().join("nowhere")).unwrap_err().to_string();
    assert!(e.contains("nowhere"), "{e}");

    // A dataset from another world: no object poses.
    let other = tmp.path().join("other");
    let spec = mulli_data::demo::DemoSpec {
        episodes: 2,
        frames_per_episode: 4,
        height: 16,
        width: 16,
        ..Default::default()
    };
    spec.write(&other, WriterOptions::default(), &mut |_, _| {})
        .unwrap();
    let e = load(&other).unwrap_err();
    assert!(matches!(e, SynthError::NotKitchen { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("info.json") && msg.contains("observation.environment_state"),
        "{msg}"
    );
}

/// Generated demos go on past their first success when asked, like the source's: in every
/// generated episode the frames from the first success on number `tail` + 1 or more (the
/// episode ends only once the task holds `tail` steps later), and the last one succeeds;
/// without a tail the first success is the last frame.
#[test]
fn a_success_tail_carries_over_to_generated_demos() {
    let tail = 5;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("source");
    record_source_with_tail(&src, tail);
    let source = load(&src).unwrap();
    assert_eq!(source.demos.len(), 9, "skipped: {:?}", source.skipped);
    // Per episode: frames from the first success to the end, and whether the last succeeds.
    let trailing = |dir: &Path| -> Vec<(usize, bool)> {
        let ds = Dataset::open(dir).unwrap();
        let success = ds.table.column("next.success").unwrap();
        let ok = |r: usize| success.value(r).to_f64() == vec![1.0];
        (0..ds.episodes.len())
            .map(|pos| {
                let (start, end) = ds.episode_rows(pos).unwrap();
                let first = (start..end).find(|&r| ok(r)).unwrap_or(end);
                (end - first, end > start && ok(end - 1))
            })
            .collect()
    };
    let n = trailing(&src);
    assert!(n.iter().all(|&(k, last)| k > tail && last), "{n:?}");
    for (name, t) in [("tailed", tail), ("plain", 0)] {
        let opts = SynthOptions {
            per_task: 1,
            seed: 3,
            max_attempts_factor: 6.0,
            success_tail: t,
            ..SynthOptions::default()
        };
        let out = tmp.path().join(name);
        let report = synthesize(&source, None, &out, &opts, |_, _| {}).unwrap();
        assert!(report.accepted > 0, "{name}: {report:?}");
        let n = trailing(&out);
        let fits = |k: usize| if t == 0 { k == 1 } else { k > t };
        assert!(n.iter().all(|&(k, last)| fits(k) && last), "{name}: {n:?}");
    }
}

/// Demos whose object slipped away from the first grasp (`slip`) are left out of the
/// sources, with a reason that names the object and the frame; the others are used.
/// Demos that start from a missed grasp (`recover`) are not sources either: they start
/// with the hand closed, away from the rest pose every generated demo starts from.
#[test]
fn slipped_and_recovering_demos_are_not_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let mut env = EnvConfig::default();
    env.cameras.width = 32;
    env.cameras.height = 32;
    let opts = RecordOptions {
        tasks: vec!["pick_up_cube".into()],
        episodes: 4,
        seed: 5,
        slip: 0.5,
        env,
        ..RecordOptions::default()
    };
    for (name, opts, why) in [
        ("slip", opts.clone(), "cube jumped"),
        (
            "recover",
            RecordOptions {
                slip: 0.0,
                recover: 0.5,
                ..opts
            },
            "it starts",
        ),
    ] {
        let src = tmp.path().join(name);
        let report = record(&src, &opts, WriteMode::Create, |_, _| {}).unwrap();
        let perturbed = report.slipped + report.recovered;
        assert!(perturbed > 0 && perturbed < 4, "{name}: {report:?}");
        let source = load(&src).unwrap();
        assert_eq!(source.demos.len(), 4 - perturbed, "{name}");
        assert_eq!(source.skipped.len(), perturbed, "{name}");
        for (_, reason) in &source.skipped {
            assert!(
                reason.starts_with(why) && reason.contains(name),
                "{name}: {reason}"
            );
        }
    }
}
