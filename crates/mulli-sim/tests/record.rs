//! Recording expert demonstrations into LeRobot v3 datasets.

use mulli_data::{Dataset, WriteMode};
use mulli_sim::EnvConfig;
use mulli_sim::record::{RecordOptions, record};
use std::path::Path;

fn options(episodes: usize) -> RecordOptions {
    let mut env = EnvConfig::default();
    env.cameras.width = 32;
    env.cameras.height = 32;
    RecordOptions {
        tasks: vec!["pick_up_apple".into(), "open_drawer".into()],
        episodes,
        seed: 9,
        env,
        ..RecordOptions::default()
    }
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
fn recorded_datasets_validate_and_are_byte_identical_for_a_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let report = record(&a, &options(3), WriteMode::Create, |_, _| {}).unwrap();
    assert_eq!(report.episodes, 3);
    assert!(report.frames > 30);

    let ds = Dataset::open(&a).unwrap();
    assert_eq!(ds.episodes.len(), 3);
    assert_eq!(ds.info.fps, 20);
    for key in [
        "observation.images.agentview",
        "observation.images.wrist",
        "observation.state",
        "observation.environment_state",
        "action",
        "next.success",
    ] {
        assert!(ds.info.features.contains_key(key), "missing feature {key}");
    }
    let problems = mulli_data::validate::validate(&ds, &mut |_, _| {}).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let tasks: Vec<String> = ds.tasks.clone();
    assert!(
        tasks
            .iter()
            .any(|t| t.contains("apple") || t.contains("사과")),
        "{tasks:?}"
    );

    // Same options and seed, one thread instead of many: same bytes.
    let b = tmp.path().join("b");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| record(&b, &options(3), WriteMode::Create, |_, _| {}))
        .unwrap();
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(
        fa.iter().map(|f| &f.0).collect::<Vec<_>>(),
        fb.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (x, y) in fa.iter().zip(&fb) {
        assert!(x.1 == y.1, "{} differs between runs", x.0);
    }

    // Nothing already written is overwritten without asking.
    let e = record(&a, &options(1), WriteMode::Create, |_, _| {})
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains(a.to_str().unwrap()) || e.contains("not empty"),
        "{e}"
    );
    // Appending adds episodes.
    record(&a, &options(1), WriteMode::Append, |_, _| {}).unwrap();
    assert_eq!(Dataset::open(&a).unwrap().episodes.len(), 4);
}

#[test]
fn bad_record_options_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = options(1);
    o.tasks = vec!["make_coffee".into()];
    let e = record(&tmp.path().join("x"), &o, WriteMode::Create, |_, _| {})
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("make_coffee") && e.contains("pick_up_apple"),
        "{e}"
    );
    let mut o = options(1);
    o.suite = "kitchen-v9".into();
    assert!(record(&tmp.path().join("y"), &o, WriteMode::Create, |_, _| {}).is_err());
    let mut o = options(0);
    o.episodes = 0;
    assert!(record(&tmp.path().join("z"), &o, WriteMode::Create, |_, _| {}).is_err());
    let mut o = options(1);
    o.noise = -1.0;
    assert!(record(&tmp.path().join("w"), &o, WriteMode::Create, |_, _| {}).is_err());
}

#[test]
fn splits_and_kept_failures_are_recorded_as_asked() {
    let tmp = tempfile::tempdir().unwrap();
    // Korean split: every task string is Korean.
    let mut o = options(2);
    o.split = mulli_sim::Split::Korean;
    record(&tmp.path().join("ko"), &o, WriteMode::Create, |_, _| {}).unwrap();
    let ds = Dataset::open(tmp.path().join("ko")).unwrap();
    assert!(
        ds.tasks
            .iter()
            .all(|t| t.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c))),
        "{:?}",
        ds.tasks
    );
    // A step budget too small to succeed: failures are kept only when asked, and marked.
    let mut o = options(2);
    o.env.max_steps = Some(3);
    o.keep_failures = true;
    let report = record(&tmp.path().join("fail"), &o, WriteMode::Create, |_, _| {}).unwrap();
    assert_eq!(report.episodes, 2);
    assert!(
        report
            .per_task
            .values()
            .all(|t| t.successes == 0 && t.failures.contains_key("timeout"))
    );
    let mut o = options(1);
    o.env.max_steps = Some(3);
    let e = record(&tmp.path().join("none"), &o, WriteMode::Create, |_, _| {})
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("only 0 of 1 episodes succeeded"), "{e}");
}

/// DART: the same noisy execution (so the same states, frame by frame), but the recorded
/// actions are the expert's own, without the noise; without noise both are the same bytes.
#[test]
fn dart_records_the_experts_action_on_the_noisy_path() {
    let tmp = tempfile::tempdir().unwrap();
    let read = |name: &str, noise: f64, dart: bool| {
        let dir = tmp.path().join(name);
        let opts = RecordOptions {
            noise,
            dart,
            ..options(2)
        };
        record(&dir, &opts, WriteMode::Create, |_, _| {}).unwrap();
        let ds = Dataset::open(&dir).unwrap();
        let state = ds.table.f32s("observation.state").unwrap().to_vec();
        let action = ds.table.f32s("action").unwrap().to_vec();
        (state, action, dir)
    };
    let (s_noisy, a_noisy, _) = read("noisy", 0.006, false);
    let (s_dart, a_dart, _) = read("dart", 0.006, true);
    assert_eq!(s_noisy, s_dart, "the executed path is the same");
    assert_ne!(a_noisy, a_dart, "the labels differ");
    // Frame-to-frame change of the translation commands: the noise makes the executed
    // ones rougher than the expert's.
    let rough = |a: &[f32]| {
        let rows: Vec<&[f32]> = a.chunks(7).collect();
        rows.windows(2)
            .map(|w| (0..3).map(|k| (w[1][k] - w[0][k]).abs()).sum::<f32>())
            .sum::<f32>()
            / rows.len() as f32
    };
    assert!(
        rough(&a_dart) < 0.8 * rough(&a_noisy),
        "dart {} vs noisy {}",
        rough(&a_dart),
        rough(&a_noisy)
    );
    let (_, _, clean) = read("clean", 0.0, false);
    let (_, _, clean_dart) = read("clean_dart", 0.0, true);
    assert_eq!(files(&clean), files(&clean_dart));
}

/// `slip`: the object slides away as the hand first closes on it; the expert finds the
/// gripper empty, opens and grasps again, and the demo still succeeds. The same seed gives
/// the same bytes, and an out-of-range probability is refused by name.
#[test]
fn a_slipped_grasp_is_followed_by_a_second_one() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = RecordOptions {
        tasks: vec!["pick_up_cube".into()],
        slip: 1.0,
        ..options(4)
    };
    let a = tmp.path().join("a");
    let report = record(&a, &opts, WriteMode::Create, |_, _| {}).unwrap();
    assert_eq!((report.episodes, report.attempts), (4, 4), "{report:?}");
    assert!(
        report.slipped >= 2,
        "slipped {} of 4 (the spot beside the cube is free in most layouts)",
        report.slipped
    );

    let ds = Dataset::open(&a).unwrap();
    let action = ds.table.f32s("action").unwrap();
    let env = ds.table.f32s("observation.environment_state").unwrap();
    let names = mulli_sim::env::environment_state_names();
    let (cx, cy) = (
        names.iter().position(|n| n == "cube.x").unwrap(),
        names.iter().position(|n| n == "cube.y").unwrap(),
    );
    let (aw, ew) = (action.len() / ds.table.len, names.len());
    let mut with_retry = 0;
    for pos in 0..ds.episodes.len() {
        let (from, to) = ds.episode_rows(pos).unwrap();
        let closes = (from + 1..to)
            .filter(|&r| action[r * aw + 6] > 0.0 && action[(r - 1) * aw + 6] <= 0.0)
            .count();
        let jump = (from + 1..to)
            .map(|r| {
                let (x0, y0) = (env[(r - 1) * ew + cx], env[(r - 1) * ew + cy]);
                (env[r * ew + cx] - x0).hypot(env[r * ew + cy] - y0)
            })
            .fold(0.0f32, f32::max);
        if jump > 0.045 {
            assert!(
                closes >= 2,
                "episode {pos}: the cube jumped but one grasp only"
            );
            with_retry += 1;
        }
    }
    assert_eq!(with_retry, report.slipped);

    let b = tmp.path().join("b");
    record(&b, &opts, WriteMode::Create, |_, _| {}).unwrap();
    assert!(files(&a) == files(&b), "same seed, same bytes");

    let bad = RecordOptions { slip: 1.5, ..opts };
    let e = record(&tmp.path().join("c"), &bad, WriteMode::Create, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("slip = 1.5"), "{e}");
}

/// `recover`: a grasping task's demo starts from a missed grasp — the hand closed on
/// nothing, lifted, beside the object — and shows the expert opening it and grasping; the
/// demo still succeeds. `off_centre`: it starts with the open hand low beside the object.
/// Tasks without a grasp (the drawer) start as usual. The same seed
/// gives the same bytes, and an out-of-range probability is refused by name.
#[test]
fn a_demo_can_start_from_a_missed_grasp() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = RecordOptions {
        recover: 1.0,
        ..options(4)
    };
    let a = tmp.path().join("a");
    let report = record(&a, &opts, WriteMode::Create, |_, _| {}).unwrap();
    assert_eq!(report.episodes, 4, "{report:?}");
    let apples = report.per_task["pick_up_apple"].written;
    assert!(apples >= 1, "{report:?}");
    assert_eq!(
        report.recovered, apples,
        "every apple demo starts from a miss"
    );

    let ds = Dataset::open(&a).unwrap();
    let state = ds.table.f32s("observation.state").unwrap();
    let action = ds.table.f32s("action").unwrap();
    let names = mulli_sim::env::state_names();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    let (g, z) = (at("gripper_width"), at("ee_z"));
    let (sw, aw) = (names.len(), action.len() / ds.table.len);
    let mut from_a_miss = 0;
    for pos in 0..ds.episodes.len() {
        let (from, to) = ds.episode_rows(pos).unwrap();
        let width = state[from * sw + g];
        if width > 0.07 {
            continue; // a drawer demo: starts at rest, hand open
        }
        from_a_miss += 1;
        assert!(
            width < 0.01,
            "episode {pos}: starts closed on nothing ({width} m)"
        );
        assert!(
            state[from * sw + z] > 0.05,
            "episode {pos}: starts with the hand lifted"
        );
        // The expert opens first, then closes again on the apple.
        let gripper: Vec<f32> = (from..to).map(|r| action[r * aw + 6]).collect();
        let opened = gripper.iter().position(|&a| a < 0.0).expect("opens");
        assert!(
            gripper[opened..].iter().any(|&a| a > 0.0),
            "episode {pos}: grasps again"
        );
    }
    assert_eq!(from_a_miss, apples, "the drawer demos start open");

    let b = tmp.path().join("b");
    record(&b, &opts, WriteMode::Create, |_, _| {}).unwrap();
    assert!(files(&a) == files(&b), "same seed, same bytes");

    // Off centre: the apple demos start with the open hand low beside the apple.
    let off = RecordOptions {
        recover: 0.0,
        off_centre: 1.0,
        ..opts.clone()
    };
    let c = tmp.path().join("c");
    let report = record(&c, &off, WriteMode::Create, |_, _| {}).unwrap();
    let apples = report.per_task["pick_up_apple"].written;
    assert!(apples >= 1 && report.recovered == apples, "{report:?}");
    let ds = Dataset::open(&c).unwrap();
    let state = ds.table.f32s("observation.state").unwrap();
    let low = (0..ds.episodes.len())
        .map(|pos| ds.episode_rows(pos).unwrap().0)
        .filter(|&from| state[from * sw + z] < 0.2)
        .inspect(|&from| assert!(state[from * sw + g] > 0.07, "open hand"))
        .count();
    assert_eq!(low, apples, "only the apple demos start low");

    for (bad, needle) in [
        (
            RecordOptions {
                recover: -0.5,
                ..opts.clone()
            },
            "recover = -0.5",
        ),
        (
            RecordOptions {
                recover: 0.6,
                off_centre: 0.6,
                ..opts.clone()
            },
            "together at most 1",
        ),
    ] {
        let e = record(&tmp.path().join("d"), &bad, WriteMode::Create, |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{e}");
    }
}

/// `wander`: each apple demo starts with the open hand away from the rest pose, beside
/// the apple and above it, at heights that differ from demo to demo; the drawer demos
/// start at rest. The same seed gives the same bytes; the three perturbations share one
/// draw, so together they are refused above 1.
#[test]
fn a_demo_can_start_from_a_wandering_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = RecordOptions {
        wander: 1.0,
        ..options(6)
    };
    let a = tmp.path().join("a");
    let report = record(&a, &opts, WriteMode::Create, |_, _| {}).unwrap();
    let apples = report.per_task["pick_up_apple"].written;
    assert!(apples >= 2, "{report:?}");
    assert_eq!(report.recovered, apples, "every apple demo wanders first");

    let ds = Dataset::open(&a).unwrap();
    let state = ds.table.f32s("observation.state").unwrap();
    let env = ds.table.f32s("observation.environment_state").unwrap();
    let names = mulli_sim::env::state_names();
    let env_names = mulli_sim::env::environment_state_names();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    let env_at = |n: &str| env_names.iter().position(|x| x == n).unwrap();
    // The named entries come first; pixel positions may follow them.
    let (sw, ew) = (names.len(), env.len() / ds.table.len);
    assert!(ew >= env_names.len());
    let (x, y, z, g) = (at("ee_x"), at("ee_y"), at("ee_z"), at("gripper_width"));
    let (ax, ay) = (env_at("apple.x"), env_at("apple.y"));
    let rest = {
        let (from, _) = (0..ds.episodes.len())
            .map(|p| ds.episode_rows(p).unwrap())
            .find(|&(from, _)| (state[from * sw + z] - 0.423).abs() < 0.01)
            .expect("a drawer demo starts at rest");
        [
            state[from * sw + x],
            state[from * sw + y],
            state[from * sw + z],
        ]
    };
    let mut heights = Vec::new();
    for pos in 0..ds.episodes.len() {
        let (from, _) = ds.episode_rows(pos).unwrap();
        let s = |i: usize| state[from * sw + i];
        let moved =
            ((s(x) - rest[0]).powi(2) + (s(y) - rest[1]).powi(2) + (s(z) - rest[2]).powi(2)).sqrt();
        if moved < 0.01 {
            continue; // a drawer demo
        }
        assert!(s(g) > 0.07, "episode {pos}: the hand starts open");
        let aside =
            ((s(x) - env[from * ew + ax]).powi(2) + (s(y) - env[from * ew + ay]).powi(2)).sqrt();
        assert!(
            (0.025..0.21).contains(&aside),
            "episode {pos}: {aside} m beside the apple"
        );
        heights.push(s(z));
    }
    assert_eq!(heights.len(), apples, "only the apple demos wander");
    let spread = heights.iter().cloned().fold(f32::MIN, f32::max)
        - heights.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 0.02, "start heights vary: {heights:?}");

    let b = tmp.path().join("b");
    record(&b, &opts, WriteMode::Create, |_, _| {}).unwrap();
    assert!(files(&a) == files(&b), "same seed, same bytes");

    let bad = RecordOptions {
        wander: 0.5,
        recover: 0.6,
        ..opts
    };
    let e = record(&tmp.path().join("c"), &bad, WriteMode::Create, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("wander = 0.5") && e.contains("at most 1"), "{e}");
}
