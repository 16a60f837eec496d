//! The harness end to end in the real kitchen: a policy that replays the scripted expert
//! succeeds, one that stands still fails with a timeout (with its hand closed: a missed
//! grasp), workers do not change results, and
//! eval_info.json agrees with the report and the videos on disk; a trace has every query.

mod common;

use std::convert::Infallible;
use std::sync::Arc;

use common::{Plans, Replay, Still};
use mulli_core::{ActionChunk, Execution, Observation, Policy};
use mulli_eval::{EvalOptions, EvalReport, evaluate, info::EvalSettings, write_eval_dir};
use mulli_sim::{EnvConfig, Split};

const TASKS: [&str; 2] = ["open_drawer", "pick_up_cube"];

fn options(workers: usize) -> EvalOptions {
    let mut env = EnvConfig::default();
    env.cameras.width = 32;
    env.cameras.height = 32;
    EvalOptions {
        suite: "kitchen-v1-single".into(),
        tasks: TASKS.iter().map(|s| s.to_string()).collect(),
        splits: vec![Split::SeenLayouts, Split::Distractors],
        episodes_per_task: 2,
        seed: 7,
        env,
        execution: Execution::RecedingHorizon { execute: 4 },
        workers,
        videos_per_outcome: 1,
        ..Default::default()
    }
}

/// The expert's actions for every episode the options will run.
fn expert_plans(opts: &EvalOptions) -> Plans {
    let mut plans = Plans::new();
    for &split in &opts.splits {
        plans.extend(common::expert_plans(
            &opts.suite,
            &opts.tasks,
            split,
            opts.episodes_per_task as u64,
            opts.seed,
            &opts.env,
            |a| a,
        ));
    }
    plans
}

fn run_replay(opts: &EvalOptions, plans: &Arc<Plans>) -> EvalReport {
    let mut calls = 0;
    let report = evaluate(
        |_| Ok::<_, Infallible>(Replay::new(plans.clone())),
        opts,
        |done, total, _| {
            calls += 1;
            assert!(done <= total);
        },
    )
    .unwrap();
    assert_eq!(calls, report.episodes.len());
    report
}

#[test]
fn replayed_experts_succeed_and_workers_do_not_change_results() {
    let opts = options(1);
    let plans = Arc::new(expert_plans(&opts));
    let one = run_replay(&opts, &plans);
    assert_eq!(one.episodes.len(), 2 * 2 * 2);
    assert!(
        one.episodes.iter().all(|e| e.success),
        "{:#?}",
        one.episodes
    );
    assert!(one.episodes.iter().all(|e| e.max_reward == 1.0));
    // Reach diagnostics exist for the grasping task only; the expert closed on the cube.
    for e in &one.episodes {
        let grasping = e.task == "pick_up_cube";
        assert_eq!(e.closest_m.is_some(), grasping, "{e:?}");
        if grasping {
            assert!(e.at_close_m.is_some_and(|d| d < 0.02), "{e:?}");
        }
    }
    assert!(
        one.scores
            .iter()
            .all(|s| s.median_at_close_m.is_some() == (s.task == "pick_up_cube"))
    );
    assert_eq!(one.scores.len(), 4);
    assert_eq!(one.split_scores.len(), 2);
    assert!(one.scores.iter().all(|s| s.rate == 1.0 && s.ci.0 > 0.1));
    // One success video per task and split, none for failures (there are none).
    assert_eq!(one.videos.len(), 4);

    let two = run_replay(&options(2), &plans);
    assert_eq!(two.workers, 2);
    assert_eq!(one.episodes, two.episodes);
    assert_eq!(one.scores, two.scores);
    let ids = |r: &EvalReport| r.videos.iter().map(|v| v.episode).collect::<Vec<_>>();
    assert_eq!(ids(&one), ids(&two));
    assert_eq!(
        one.videos[0].packets.len(),
        two.videos[0].packets.len(),
        "the same frames"
    );
}

/// Stands still with the hand closed: a grasp that misses by far.
struct Grip;

impl Policy for Grip {
    type Error = Infallible;
    fn reset(&mut self) {}
    fn act(&mut self, _: &Observation) -> Result<ActionChunk, Infallible> {
        Ok(ActionChunk {
            actions: vec![vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]; 4],
        })
    }
}

/// A grasping task whose hand closed on nothing fails as a missed grasp, with the reach at
/// the close; a task without a target object still times out.
#[test]
fn a_hand_that_closes_on_nothing_missed_its_grasp() {
    let mut opts = options(1);
    opts.splits = vec![Split::SeenLayouts];
    opts.episodes_per_task = 1;
    opts.videos_per_outcome = 0;
    let report = evaluate(|_| Ok::<_, Infallible>(Grip), &opts, |_, _, _| {}).unwrap();
    let by_task = |t: &str| report.episodes.iter().find(|e| e.task == t).unwrap();
    let cube = by_task("pick_up_cube");
    assert_eq!(cube.failure.as_deref(), Some("missed_grasp"));
    assert!(
        cube.at_close_m.is_some_and(|d| d > 0.1),
        "{:?}",
        cube.at_close_m
    );
    assert_eq!(by_task("open_drawer").failure.as_deref(), Some("timeout"));
}

#[test]
fn a_policy_that_stands_still_times_out_and_eval_info_agrees() {
    let mut opts = options(2);
    opts.splits = vec![Split::SeenLayouts];
    opts.instructions = vec![mulli_eval::CustomInstruction {
        task: "open_drawer".into(),
        instruction: "서랍 좀 열어줄래".into(),
    }];
    opts.episodes_per_task = 1;
    let report = evaluate(|_| Ok::<_, Infallible>(Still), &opts, |_, _, _| {}).unwrap();
    assert_eq!(report.episodes.len(), 2 + 1);
    assert!(report.episodes.iter().all(|e| !e.success));
    assert!(
        report
            .episodes
            .iter()
            .all(|e| e.failure.as_deref() == Some("timeout"))
    );
    // Standing still: the hand never closed, and stayed as far as it started.
    let cube = report
        .episodes
        .iter()
        .find(|e| e.task == "pick_up_cube")
        .unwrap();
    assert!(cube.at_close_m.is_none() && cube.closest_m.is_some_and(|d| d > 0.1));
    let custom = report.episodes.last().unwrap();
    assert_eq!(custom.split, mulli_eval::CUSTOM_SPLIT);
    assert_eq!(custom.instruction, "서랍 좀 열어줄래");
    assert_eq!(report.videos.len(), 3, "one failure video per group");

    let dir = tempfile::tempdir().unwrap();
    let settings = EvalSettings::new("still", &opts, &report);
    let path = write_eval_dir(dir.path(), &report, settings.clone()).unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(info["aggregated"]["pc_success"], 0.0);
    assert_eq!(info["overall"]["n_episodes"], 3);
    assert_eq!(info["per_episode"].as_array().unwrap().len(), 3);
    assert_eq!(info["per_episode"][0]["success"], false);
    let cube_info = info["per_episode"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["task"] == "pick_up_cube")
        .unwrap();
    assert!(cube_info["closest_m"].as_f64().is_some() && cube_info.get("at_close_m").is_none());
    assert!(info["aggregated"]["eval_s"].as_f64().unwrap() > 0.0);
    assert_eq!(info["per_group"]["custom_instructions"]["n_episodes"], 1);
    assert_eq!(info["scores"][2]["instruction"], "서랍 좀 열어줄래");
    let videos = info["overall"]["video_paths"].as_array().unwrap();
    assert_eq!(videos.len(), 3);
    for v in videos {
        let p = dir.path().join(v.as_str().unwrap());
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[4..8], b"ftyp", "{} is an MP4", p.display());
        assert!(p.with_extension("png").exists());
        // The video decodes with mulli's own reader, one frame per step plus the last.
        let reader = mulli_data::video::VideoReader::open(&p).unwrap();
        assert_eq!(reader.width(), 64, "both 32-px cameras side by side");
    }
    // Nothing is overwritten.
    let e = write_eval_dir(dir.path(), &report, settings)
        .unwrap_err()
        .to_string();
    assert!(e.contains("already exists"), "{e}");
}

#[test]
fn a_failing_policy_stops_the_evaluation_with_its_error() {
    #[derive(Debug, thiserror::Error)]
    #[error("camera unplugged")]
    struct Broken;
    struct Fails;
    impl Policy for Fails {
        type Error = Broken;
        fn reset(&mut self) {}
        fn act(&mut self, _: &Observation) -> Result<ActionChunk, Broken> {
            Err(Broken)
        }
    }
    let e = evaluate(|_| Ok::<_, Broken>(Fails), &options(2), |_, _, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("policy failed in") && e.contains("camera unplugged"),
        "{e}"
    );
    let e = evaluate(|_| Err::<Fails, _>(Broken), &options(2), |_, _, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("worker") && e.contains("camera unplugged"),
        "{e}"
    );
}

/// A replaying policy that reports having perceived `cube.x` as its own query count in the
/// episode, next to a fixed truth: what the trace must carry through.
struct Perceives {
    inner: Replay,
    queries: usize,
}

impl Policy for Perceives {
    type Error = Infallible;
    fn reset(&mut self) {
        self.inner.reset();
        self.queries = 0;
    }
    fn act(&mut self, obs: &Observation) -> Result<ActionChunk, Infallible> {
        self.queries += 1;
        self.inner.act(obs)
    }
    fn perceived(&self) -> Vec<mulli_core::Perceived> {
        vec![mulli_core::Perceived {
            name: "cube.x".into(),
            value: self.queries as f32,
            truth: Some(0.5),
        }]
    }
}

/// `trace`: one row per policy query, in episode order, with the step, the tool, the
/// fingers and what the policy perceived next to the truth; `trace.jsonl` holds the same
/// rows. Without `trace` there are none and no file.
#[test]
fn a_trace_has_every_query() {
    let opts = EvalOptions {
        tasks: vec!["pick_up_cube".into()],
        splits: vec![Split::SeenLayouts],
        videos_per_outcome: 0,
        trace: true,
        ..options(2)
    };
    let plans = Arc::new(expert_plans(&opts));
    let report = evaluate(
        |_| {
            Ok::<_, Infallible>(Perceives {
                inner: Replay::new(plans.clone()),
                queries: 0,
            })
        },
        &opts,
        |_, _, _| {},
    )
    .unwrap();
    assert_eq!(report.episodes.len(), 2);
    for (i, e) in report.episodes.iter().enumerate() {
        assert!(e.success);
        let rows: Vec<_> = report.traces.iter().filter(|t| t.episode == i).collect();
        assert_eq!(rows.len(), e.policy_queries, "episode {i}");
        for (k, t) in rows.iter().enumerate() {
            assert_eq!(t.step, 4 * k, "a query every 4 steps (execute 4)");
            assert_eq!(t.perceived["cube.x"], [Some(k as f32 + 1.0), Some(0.5)]);
            assert!(
                t.tool[2] > 0.0 && (-0.001..=0.081).contains(&t.gripper_m),
                "{t:?}"
            );
        }
        // The replayed expert closes its hand on the cube: the last rows show it.
        assert!(rows.last().unwrap().gripper_m < rows[0].gripper_m);
    }
    assert!(
        report
            .traces
            .windows(2)
            .all(|w| w[0].episode <= w[1].episode)
    );

    let dir = tempfile::tempdir().unwrap();
    let settings = EvalSettings::new("trace", &opts, &report);
    write_eval_dir(dir.path(), &report, settings).unwrap();
    let text = std::fs::read_to_string(dir.path().join("trace.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), report.traces.len());
    assert_eq!(lines[1]["step"], 4);
    assert_eq!(lines[1]["perceived"]["cube.x"][0], 2.0);

    let plain = run_replay(
        &EvalOptions {
            trace: false,
            ..opts.clone()
        },
        &plans,
    );
    assert!(plain.traces.is_empty());
    let dir = tempfile::tempdir().unwrap();
    write_eval_dir(
        dir.path(),
        &plain,
        EvalSettings::new("plain", &opts, &plain),
    )
    .unwrap();
    assert!(!dir.path().join("trace.jsonl").exists());
}
