//! Rendering from files on disk: what the report shows comes from eval_info.json, strings are
//! escaped, inconsistent or hostile inputs are refused with the file named.

use std::path::Path;

use mulli_report::{ReportInputs, render, write};
use serde_json::json;

fn eval_info(success: [bool; 2], pc: f64, video: Option<&str>) -> serde_json::Value {
    json!({
        "per_episode": [
            {"episode_ix": 0, "sum_reward": 1.0, "max_reward": 1.0, "success": success[0], "seed": 3,
             "task": "open_drawer", "split": "seen_layouts", "index": 0,
             "instruction": "open the <drawer>", "failure": null, "steps": 40, "policy_queries": 5,
             "video": video},
            {"episode_ix": 1, "sum_reward": 0.0, "max_reward": 0.0, "success": success[1], "seed": 4,
             "task": "open_drawer", "split": "korean", "index": 0,
             "instruction": "서랍을 열어줘", "failure": "timeout", "steps": 180, "policy_queries": 23}
        ],
        "aggregated": {"avg_sum_reward": 0.5, "avg_max_reward": 0.5, "pc_success": pc, "eval_s": 2.0, "eval_ep_s": 1.0},
        "per_task": [], "per_group": {}, "overall": {},
        "scores": [
            {"task": "open_drawer", "split": "seen_layouts", "episodes": 1, "successes": 1, "rate": 1.0,
             "ci": [0.2, 1.0], "failures": {}},
            {"task": "open_drawer", "split": "korean", "episodes": 1, "successes": 0, "rate": 0.0,
             "ci": [0.0, 0.8], "failures": {"timeout": 1}}
        ],
        "split_scores": [
            {"split": "seen_layouts", "episodes": 1, "successes": 1, "rate": 1.0, "ci": [0.2, 1.0]},
            {"split": "korean", "episodes": 1, "successes": 0, "rate": 0.0, "ci": [0.0, 0.8]}
        ],
        "pc_success_ci95": [9.0, 90.0],
        "settings": {"policy": "runs/x", "suite": "kitchen-v1-single", "episodes_per_task": 1, "seed": 1, "mulli_version": "0.1.0",
                     "execution": {"mode": "temporal_ensemble", "decay": 0.1}}
    })
}

fn eval_dir(dir: &Path, info: &serde_json::Value) {
    std::fs::create_dir_all(dir.join("videos/seen_layouts")).unwrap();
    std::fs::write(dir.join("videos/seen_layouts/a.mp4"), b"\0\0\0\x18ftypisom").unwrap();
    std::fs::write(dir.join("eval_info.json"), info.to_string()).unwrap();
}

fn inputs(dir: &Path) -> ReportInputs {
    ReportInputs {
        title: "test <report>".into(),
        eval_dir: dir.to_path_buf(),
        ..Default::default()
    }
}

#[test]
fn renders_a_self_contained_page_from_eval_info() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("metrics.jsonl"),
        "{\"step\":1,\"loss\":1.0,\"lr\":0.001,\"samples_per_s\":50,\"elapsed_s\":1}\n\
         {\"step\":2,\"loss\":0.5,\"lr\":0.001,\"samples_per_s\":50,\"elapsed_s\":2,\"val_loss\":0.6}\n\
         {\"step\":3,\"lo",
    )
    .unwrap();
    eval_dir(
        tmp.path(),
        &eval_info([true, false], 50.0, Some("videos/seen_layouts/a.mp4")),
    );
    let mut i = inputs(tmp.path());
    i.train_run = Some(run);
    let html = render(&i).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("test &lt;report&gt;") && !html.contains("<report>"));
    assert!(html.contains("open the &lt;drawer&gt;") && !html.contains("<drawer>"));
    assert!(
        html.contains(">50%<"),
        "the headline is eval_info's pc_success"
    );
    assert!(html.contains("data:video/mp4;base64,"));
    assert!(
        html.contains("chunks ensembled every step (decay 0.1)"),
        "the execution mode is in the subtitle"
    );
    assert!(html.contains("<svg") && html.contains("val loss"));
    assert!(!html.contains("<script"), "no scripts in the report");
    assert!(
        !html.contains("auxiliary loss")
            && !html.contains("hand–object")
            && !html.contains("target seen off"),
        "no auxiliary curve or reach columns without their data"
    );
    let out = tmp.path().join("report.html");
    write(&i, &out).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), html);
}

/// Grasping diagnostics and the auxiliary loss appear when the files have them: the reach
/// columns show the medians over failed episodes, in centimetres.
#[test]
fn reach_medians_and_the_auxiliary_loss_are_shown_when_present() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("metrics.jsonl"),
        "{\"step\":1,\"loss\":1.0,\"lr\":0.001,\"samples_per_s\":50,\"elapsed_s\":1,\"aux_loss\":0.8}\n\
         {\"step\":2,\"loss\":0.5,\"lr\":0.001,\"samples_per_s\":50,\"elapsed_s\":2,\"aux_loss\":0.4}\n",
    )
    .unwrap();
    let mut info = eval_info([true, false], 20.0, None);
    let fail = |i: usize, closest: f64, close: Option<f64>, seen: f64| {
        json!({"episode_ix": i, "sum_reward": 0.0, "max_reward": 0.0, "success": false, "seed": 5,
               "task": "pick_up_cube", "split": "korean", "index": i, "instruction": "큐브를 집어줘",
               "failure": "timeout", "steps": 160, "policy_queries": 20,
               "closest_m": closest, "at_close_m": close, "perceived_err_m": seen})
    };
    let eps = info["per_episode"].as_array_mut().unwrap();
    eps.push(fail(2, 0.02, Some(0.15), 0.05));
    eps.push(fail(3, 0.04, Some(0.25), 0.09));
    eps.push(fail(4, 0.10, None, 0.071));
    info["scores"].as_array_mut().unwrap().push(json!(
        {"task": "pick_up_cube", "split": "korean", "episodes": 3, "successes": 0, "rate": 0.0,
         "ci": [0.0, 0.6], "failures": {"timeout": 3}}));
    eval_dir(tmp.path(), &info);
    let mut i = inputs(tmp.path());
    i.train_run = Some(run.clone());
    let html = render(&i).unwrap();
    assert!(html.contains("auxiliary loss"));
    assert!(html.contains("hand–object at close"));
    assert!(!html.contains("Inputs:"), "no policy.json, no inputs line");
    // closest: median of 2, 4, 10 cm; at close: of 15 and 25 cm (one never closed).
    assert!(html.contains(">4.0<") && html.contains(">20.0<"), "{html}");
    // Where the policy saw the cube: median of 5, 7.1 and 9 cm.
    assert!(
        html.contains("target seen off by") && html.contains(">7.1<"),
        "{html}"
    );
    // open_drawer has no target object: a dash.
    assert!(html.contains(">—<"));
    assert!(
        !html.contains("let go from the target"),
        "no release, no column"
    );
    // A placing task that let go of its object 12.3 cm from the receptacle's centre.
    let mut placed = fail(5, 0.03, Some(0.02), 0.04);
    placed["task"] = json!("put_cube_on_plate");
    placed["failure"] = json!("dropped_object");
    placed["released_m"] = json!(0.123);
    info["per_episode"].as_array_mut().unwrap().push(placed);
    info["aggregated"]["pc_success"] = json!(100.0 / 6.0);
    info["scores"].as_array_mut().unwrap().push(json!(
        {"task": "put_cube_on_plate", "split": "korean", "episodes": 1, "successes": 0,
         "rate": 0.0, "ci": [0.0, 0.8], "failures": {"dropped_object": 1}}));
    eval_dir(tmp.path(), &info);
    let html = render(&i).unwrap();
    assert!(
        html.contains("let go from the target (cm)") && html.contains(">12.3<"),
        "{html}"
    );

    // The policy's inputs: whether success needed privileged object positions.
    std::fs::create_dir_all(run.join("checkpoint")).unwrap();
    let spec = |perceived: u64| {
        json!({"model": {"head": "l1", "image_size": 64, "keypoints": 32, "perceived": perceived},
               "training": {"step": 2},
               "state_norm": {"ignored": [true, false, true]},
               "env_state": {"width": 5, "index": [0, 1], "names": ["cube.x", "cube.y"]}})
    };
    std::fs::write(run.join("checkpoint/policy.json"), spec(0).to_string()).unwrap();
    let html = render(&i).unwrap();
    assert!(
        html.contains("32 spatial-softmax keypoints")
            && html.contains("2 state entries hidden")
            && html.contains("2 object positions <b>observed</b>"),
        "{html}"
    );
    std::fs::write(run.join("checkpoint/policy.json"), spec(2).to_string()).unwrap();
    assert!(
        render(&i)
            .unwrap()
            .contains("2 object positions <b>perceived</b>")
    );
    // A state-only policy, and one that reads one of the data's two cameras.
    let blind = json!({"model": {"head": "l1", "cameras": 0, "d_model": 96, "object_tokens": [3, 1]},
                       "cameras": [], "unused_cameras": ["agentview", "wrist"],
                       "training": {"step": 2},
                       "env_state": {"width": 5, "index": [0], "names": ["cube.x"]}});
    std::fs::write(run.join("checkpoint/policy.json"), blind.to_string()).unwrap();
    let html = render(&i).unwrap();
    assert!(
        html.contains("<b>no cameras</b> (a state-only policy)")
            && html.contains("one token per object (2)")
            && html.contains("no images · d_model 96")
            && !html.contains("px images"),
        "{html}"
    );
    let wrist = json!({"model": {"head": "l1", "cameras": 1, "image_size": 64},
                       "cameras": ["wrist"], "unused_cameras": ["agentview"],
                       "training": {"step": 2}});
    std::fs::write(run.join("checkpoint/policy.json"), wrist.to_string()).unwrap();
    let html = render(&i).unwrap();
    assert!(
        html.contains("cameras wrist (not agentview)") && html.contains("64 px images"),
        "{html}"
    );
}

#[test]
fn inconsistent_or_hostile_eval_info_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // pc_success disagrees with the episodes.
    eval_dir(tmp.path(), &eval_info([true, false], 100.0, None));
    let e = render(&inputs(tmp.path())).unwrap_err().to_string();
    assert!(
        e.contains("eval_info.json") && e.contains("pc_success"),
        "{e}"
    );
    // Scores disagree with the episodes.
    eval_dir(tmp.path(), &eval_info([true, true], 100.0, None));
    let e = render(&inputs(tmp.path())).unwrap_err().to_string();
    assert!(e.contains("scores"), "{e}");
    // A video path that leaves the directory.
    eval_dir(
        tmp.path(),
        &eval_info([true, false], 50.0, Some("../../etc/passwd")),
    );
    let e = render(&inputs(tmp.path())).unwrap_err().to_string();
    assert!(e.contains("leaves the evaluation directory"), "{e}");
    // Not JSON at all; missing.
    std::fs::write(tmp.path().join("eval_info.json"), "{").unwrap();
    let e = render(&inputs(tmp.path())).unwrap_err().to_string();
    assert!(e.contains("not valid JSON"), "{e}");
    let e = render(&inputs(&tmp.path().join("nope")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read"), "{e}");
}
