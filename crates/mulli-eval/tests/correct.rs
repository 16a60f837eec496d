//! Corrections in the real kitchen: the expert takes over from where the policy left the
//! arm and its steps become a dataset `mulli train` reads; attempts the policy already
//! solved, or where it holds an object, write nothing; workers do not change the bytes.

mod common;

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use common::{Plans, Replay, Still};
use mulli_core::{Execution, Value};
use mulli_data::{Dataset, WriteMode};
use mulli_eval::{CorrectOptions, CorrectReport, EvalError, Trigger, correct};
use mulli_sim::expert::CLOSE;
use mulli_sim::{EnvConfig, Split};

fn options(
    tasks: &[&str],
    attempts: usize,
    takeover: (f64, f64),
    workers: usize,
) -> CorrectOptions {
    let mut env = EnvConfig::default();
    env.cameras.width = 32;
    env.cameras.height = 32;
    CorrectOptions {
        suite: "kitchen-v1-single".into(),
        tasks: tasks.iter().map(|s| s.to_string()).collect(),
        attempts_per_task: attempts,
        seed: 3,
        env,
        execution: Execution::RecedingHorizon { execute: 4 },
        workers,
        noise: 0.002,
        takeover,
        trigger: Trigger::Time,
    }
}

/// The clean expert's actions on every attempt's layout, cut by `cut`.
fn plans(opts: &CorrectOptions, cut: impl Fn(Vec<Vec<f32>>) -> Vec<Vec<f32>>) -> Arc<Plans> {
    Arc::new(common::expert_plans(
        &opts.suite,
        &opts.tasks,
        Split::Train,
        opts.attempts_per_task as u64,
        opts.seed,
        &opts.env,
        cut,
    ))
}

/// Corrections with the replaying policy; none is expected to be written.
fn run_replay(opts: &CorrectOptions, plans: &Arc<Plans>, out: &Path) -> EvalError {
    correct(
        |_| Ok::<_, Infallible>(Replay::new(plans.clone())),
        opts,
        out,
        WriteMode::Create,
        |_, _| {},
    )
    .unwrap_err()
}

fn run_still(opts: &CorrectOptions, out: &Path) -> Result<CorrectReport, EvalError> {
    correct(
        |_| Ok::<_, Infallible>(Still),
        opts,
        out,
        WriteMode::Create,
        |_, _| {},
    )
}

fn data_bytes(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![root.join("data")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                files.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_expert_takes_over_and_its_steps_become_a_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    // open_drawer's expert cannot take over midway: skipped.
    let opts = options(
        &["open_drawer", "pick_up_apple", "pick_up_cube"],
        2,
        (0.1, 0.3),
        1,
    );
    let mut calls = 0;
    let report = correct(
        |_| Ok::<_, Infallible>(Still),
        &opts,
        &tmp.path().join("one"),
        WriteMode::Create,
        |done, total| {
            calls += 1;
            assert!(done <= total && total == 4);
        },
    )
    .unwrap();
    assert_eq!(calls, 4);
    assert_eq!(report.attempts, 4);
    assert_eq!(report.skipped_tasks, ["open_drawer"]);
    // A policy that stands still neither succeeds nor holds anything: every attempt is
    // the expert's from a still arm, and the expert succeeds.
    assert_eq!(report.episodes, 4, "{report:?}");
    for t in report.per_task.values() {
        assert_eq!(
            (t.attempts, t.written, t.policy_succeeded, t.holding),
            (2, 2, 0, 0)
        );
    }
    let ds = Dataset::open(tmp.path().join("one")).unwrap();
    assert_eq!(ds.episodes.len(), 4);
    assert_eq!(ds.len(), report.frames);
    for (e, ep) in ds.episodes.iter().enumerate() {
        let (from, to) = ds.episode_rows(e).unwrap();
        assert_eq!(to - from, ep.length);
        // Each episode ends in success; the budget was the takeover plus the task's own.
        let success = ds.table.column("next.success").unwrap().value(to - 1);
        assert_eq!(
            success,
            Value::Bool(vec![true]),
            "episode {e} ends in success"
        );
        assert!(ep.length < 200, "episode {e}: {} frames", ep.length);
    }
    // Two workers write the same bytes.
    let two = run_still(
        &options(
            &["open_drawer", "pick_up_apple", "pick_up_cube"],
            2,
            (0.1, 0.3),
            2,
        ),
        &tmp.path().join("two"),
    )
    .unwrap();
    assert_eq!(two.per_task, report.per_task);
    assert_eq!(
        data_bytes(&tmp.path().join("one")),
        data_bytes(&tmp.path().join("two"))
    );
}

/// Cut just after the hand closed on the object: it holds it, not yet lifted.
fn just_closed(a: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    let k = a
        .iter()
        .position(|a| a[6] == CLOSE)
        .expect("the expert closes the hand");
    a[..k + 8].to_vec()
}

#[test]
fn solved_and_holding_attempts_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // The replayed expert has lifted the cube long before 90% of the budget.
    let opts = options(&["pick_up_cube"], 2, (0.9, 0.9), 2);
    let solved = plans(&opts, |a| a);
    let out = tmp.path().join("solved");
    let err = run_replay(&opts, &solved, &out);
    assert!(err.to_string().contains("none of the 2 attempts"), "{err}");
    // Typed, so a caller (the flywheel) can keep its policy instead of failing.
    match &err {
        EvalError::NothingCorrected { report, .. } => {
            assert_eq!(report.attempts, 2);
            assert_eq!(report.per_task["pick_up_cube"].policy_succeeded, 2);
            assert_eq!(report.episodes, 0);
        }
        other => panic!("expected NothingCorrected, got {other:?}"),
    }
    assert!(!out.exists(), "no half-made dataset is left behind");

    // The policy holds the apple on a cube task (the apple expert's plan on the same
    // layout): no demo shows the way from there.
    let cube = plans(&opts, |a| a);
    let apple = plans(
        &CorrectOptions {
            tasks: vec!["pick_up_apple".into()],
            ..opts.clone()
        },
        just_closed,
    );
    let wrong: common::Plans = cube
        .keys()
        .map(|(instruction, image)| {
            let (_, plan) = apple
                .iter()
                .find(|((_, i), _)| i == image)
                .expect("the two tasks share layouts");
            ((instruction.clone(), image.clone()), plan.clone())
        })
        .collect();
    let out = tmp.path().join("holding");
    let err = run_replay(&opts, &Arc::new(wrong), &out);
    assert!(err.to_string().contains("\"holding\":2"), "{err}");
}

#[test]
fn a_policy_holding_the_object_is_taken_over_after_the_grasp() {
    let tmp = tempfile::tempdir().unwrap();
    for task in ["pick_up_cube", "put_apple_in_bowl"] {
        let opts = options(&[task], 2, (0.5, 0.5), 1);
        let closed = plans(&opts, just_closed);
        let out = tmp.path().join(task);
        let report = correct(
            |_| Ok::<_, Infallible>(Replay::new(closed.clone())),
            &opts,
            &out,
            WriteMode::Create,
            |_, _| {},
        )
        .unwrap();
        let t = &report.per_task[task];
        // The expert lifts (and carries and places) what the policy holds.
        assert_eq!((t.written, t.holding), (2, 0), "{task}: {t:?}");
        let ds = Dataset::open(&out).unwrap();
        let grip = ds.table.column("action").unwrap();
        for e in 0..ds.episodes.len() {
            let (from, _) = ds.episode_rows(e).unwrap();
            // It does not open the hand first, as a fresh expert would.
            let Value::F32(a) = grip.value(from) else {
                panic!("action is f32")
            };
            assert_eq!(a[6], CLOSE, "{task} episode {e} starts with {a:?}");
        }
    }
}

#[test]
fn an_empty_hand_under_the_funnel_is_taken_over_there() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = CorrectOptions {
        trigger: Trigger::UnderFunnel,
        ..options(&["pick_up_cube"], 2, (0.9, 0.9), 1)
    };
    // The expert's own plan, pushed 6 cm sideways on the way: it comes down beside the cube.
    let beside = plans(&opts, |mut a| {
        for step in a.iter_mut().take(20) {
            step[0] += 0.003;
        }
        a
    });
    let run = |opts: &CorrectOptions, out: &str| {
        correct(
            |_| Ok::<_, Infallible>(Replay::new(beside.clone())),
            opts,
            &tmp.path().join(out),
            WriteMode::Create,
            |_, _| {},
        )
        .unwrap()
    };
    let report = run(&opts, "under");
    let t = &report.per_task["pick_up_cube"];
    assert_eq!((t.attempts, t.under_funnel, t.written), (2, 2, 2), "{t:?}");
    // Each corrected episode starts there: the hand low and off the cube, the expert then
    // rising back onto its funnel.
    let ds = Dataset::open(tmp.path().join("under")).unwrap();
    let names = mulli_sim::env::environment_state_names();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    let col = ds.table.column("observation.environment_state").unwrap();
    for e in 0..ds.episodes.len() {
        let (from, _) = ds.episode_rows(e).unwrap();
        let Value::F32(s) = col.value(from) else {
            panic!("environment_state is f32")
        };
        let lateral = (s[at("ee.x")] - s[at("cube.x")]).hypot(s[at("ee.y")] - s[at("cube.y")]);
        let height = s[at("ee.z")] - s[at("cube.z")];
        assert!(
            lateral > 0.02 && height < 0.09,
            "episode {e} starts {lateral} m beside, {height} m above the cube"
        );
    }
    // The same policy with the time trigger is taken over late, after its miss.
    let late = run(
        &CorrectOptions {
            trigger: Trigger::Time,
            ..opts.clone()
        },
        "late",
    );
    assert_eq!(late.per_task["pick_up_cube"].under_funnel, 0);
    assert!(ds.len() != late.frames, "the takeovers differ");
    // The option's names, and a clear error for others.
    assert_eq!(
        "under_funnel".parse::<Trigger>().unwrap(),
        Trigger::UnderFunnel
    );
    assert_eq!("time".parse::<Trigger>().unwrap(), Trigger::Time);
    let err = "sometimes".parse::<Trigger>().unwrap_err().to_string();
    assert!(
        err.contains("\"sometimes\"") && err.contains("under_funnel"),
        "{err}"
    );
}

#[test]
fn bad_options_and_existing_data_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    for (opts, what) in [
        (
            options(&["pick_up_cube"], 0, (0.1, 0.3), 1),
            "attempts_per_task = 0",
        ),
        (
            options(&["pick_up_cube"], 1, (0.5, 0.3), 1),
            "takeover = (0.5, 0.3)",
        ),
        (
            options(&["pick_up_cube"], 1, (0.1, 1.5), 1),
            "takeover = (0.1, 1.5)",
        ),
        (
            CorrectOptions {
                noise: 0.5,
                ..options(&["pick_up_cube"], 1, (0.1, 0.3), 1)
            },
            "noise = 0.5",
        ),
        (
            options(&["open_drawer", "close_fridge"], 1, (0.1, 0.3), 1),
            "can take over midway (tasks: open_drawer, close_fridge)",
        ),
        (options(&["no_such_task"], 1, (0.1, 0.3), 1), "no_such_task"),
    ] {
        let err = run_still(&opts, &out).unwrap_err().to_string();
        assert!(err.contains(what), "{err} should name {what}");
        assert!(!out.exists());
    }
    // A directory with something in it is not replaced.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"mine").unwrap();
    let err = run_still(&options(&["pick_up_cube"], 1, (0.1, 0.3), 1), &out).unwrap_err();
    assert!(err.to_string().contains("non-empty directory"), "{err}");
    assert_eq!(std::fs::read(out.join("keep.txt")).unwrap(), b"mine");
}
