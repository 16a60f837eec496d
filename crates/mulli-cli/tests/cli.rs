//! End-to-end: the `mulli` binary of this test build, driven like a user would.

use std::path::Path;
use std::process::{Command, Output};

fn mulli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mulli"))
        .args(args)
        .output()
        .expect("running mulli")
}

fn ok(args: &[&str]) -> String {
    let o = mulli(args);
    assert!(
        o.status.success(),
        "mulli {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn dataset_commands_work_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = tmp.path().join("demo");
    let out = ok(&[
        "dataset",
        "demo",
        "--out",
        s(&demo),
        "--episodes",
        "6",
        "--frames",
        "8",
        "--size",
        "32",
    ]);
    assert!(out.contains("wrote 6 episodes"), "{out}");
    let info = ok(&["dataset", "info", s(&demo)]);
    assert!(
        info.contains("LeRobot v3.0") && info.contains("6 (48 frames") && info.contains("(h264)"),
        "{info}"
    );
    assert!(ok(&["dataset", "validate", s(&demo)]).contains("ok (6 episodes, 48 frames)"));
    let stats = ok(&["dataset", "stats", s(&demo), "--feature", "action"]);
    assert!(stats.contains("\"q99\""), "{stats}");

    // Writing again into the same directory is refused; --force replaces it.
    let o = mulli(&[
        "dataset",
        "demo",
        "--out",
        s(&demo),
        "--episodes",
        "1",
        "--frames",
        "2",
        "--size",
        "32",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));

    let splits = tmp.path().join("splits");
    let out = ok(&[
        "dataset",
        "split",
        s(&demo),
        "--out-dir",
        s(&splits),
        "--splits",
        "train=0:4,val=4:6",
    ]);
    assert!(
        out.contains("train: 4 episodes") && out.contains("val: 2 episodes"),
        "{out}"
    );
    let merged = tmp.path().join("merged");
    ok(&[
        "dataset",
        "merge",
        s(&splits.join("train")),
        s(&splits.join("val")),
        "--out",
        s(&merged),
    ]);
    assert!(ok(&["dataset", "validate", s(&merged)]).contains("ok (6 episodes, 48 frames)"));

    let frames = tmp.path().join("frames");
    ok(&[
        "dataset",
        "frames",
        s(&merged),
        "--rows",
        "0,47",
        "--out",
        s(&frames),
    ]);
    assert!(frames.join("observation.images.front/47.png").exists());

    let conv = tmp.path().join("converted");
    ok(&["dataset", "convert", s(&demo), "--out", s(&conv)]);
    assert!(ok(&["dataset", "validate", s(&conv)]).contains("ok"));
}

#[test]
fn converts_a_lerobot_v21_dataset() {
    let v21 =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../mulli-data/tests/fixtures/lerobot/v21");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("v30");
    ok(&["dataset", "convert", s(&v21), "--out", s(&out)]);
    let info = ok(&["dataset", "info", s(&out)]);
    assert!(
        info.contains("LeRobot v3.0")
            && info.contains("3 (36 frames")
            && info.contains("케첩을 냉장고에 넣어줘"),
        "{info}"
    );
    assert!(ok(&["dataset", "validate", s(&out)]).contains("ok"));
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let o = mulli(&["dataset", "info", s(&tmp.path().join("missing"))]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("info.json") && !err.contains("panicked"),
        "{err}"
    );

    std::fs::create_dir_all(tmp.path().join("bad/meta")).unwrap();
    std::fs::write(
        tmp.path().join("bad/meta/info.json"),
        r#"{"codebase_version":"v3.0","fps":"fast","features":{}}"#,
    )
    .unwrap();
    let o = mulli(&["dataset", "validate", s(&tmp.path().join("bad"))]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("fps") && err.contains("\"fast\""), "{err}");

    let demo = tmp.path().join("demo");
    ok(&[
        "dataset",
        "demo",
        "--out",
        s(&demo),
        "--episodes",
        "2",
        "--frames",
        "3",
        "--size",
        "16",
    ]);
    let o = mulli(&[
        "dataset",
        "frames",
        s(&demo),
        "--rows",
        "99",
        "--out",
        s(&tmp.path().join("f")),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("row 99 is out of range"));
    let o = mulli(&[
        "dataset",
        "split",
        s(&demo),
        "--out-dir",
        s(&tmp.path().join("s")),
        "--splits",
        "train=0:9",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("beyond the 2 episodes"));

    // A trace goes into an evaluation directory: without --out there is nowhere to put it.
    let o = mulli(&["eval", "--policy", s(&demo), "--trace"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--out"), "{err}");
    // Perturbed demo starts are probabilities, and together at most 1.
    let o = mulli(&[
        "sim",
        "record",
        "--recover",
        "0.7",
        "--off-centre",
        "0.7",
        "--out",
        s(&tmp.path().join("r")),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("together at most 1"), "{err}");
}

#[test]
fn bench_measures_a_model_from_a_file_and_names_bad_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model.toml");
    std::fs::write(
        &model,
        "image_size = 16\nconv_channels = [8, 8]\nstem = \"patch\"\nd_model = 16\nd_ff = 32\n\
         n_heads = 2\nn_layers = 1\ntext_len = 16\nchunk = 2\n",
    )
    .unwrap();
    let out = ok(&[
        "bench",
        "train",
        "--model",
        s(&model),
        "--steps",
        "1",
        "--batch-size",
        "2",
    ]);
    assert!(out.contains("samples/s"), "{out}");
    let out = ok(&["bench", "infer", "--model", s(&model), "--calls", "2"]);
    assert!(out.contains("p50"), "{out}");
    // Every benchmark names the machine it ran on (numbers are per CPU kind).
    assert!(out.starts_with("machine: "), "{out}");

    std::fs::write(&model, "stem = \"pyramid\"\n").unwrap();
    let o = mulli(&["bench", "train", "--model", s(&model), "--steps", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("model.toml") && err.contains("pyramid"),
        "{err}"
    );
}

#[test]
fn sim_commands_record_a_valid_dataset_and_render_cameras() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("kitchen");
    let text = ok(&[
        "sim",
        "record",
        "--episodes",
        "2",
        "--tasks",
        "close_drawer",
        "--width",
        "32",
        "--height",
        "32",
        "--out",
        s(&out),
    ]);
    assert!(text.contains("wrote 2 episodes"), "{text}");
    ok(&["dataset", "validate", s(&out)]);
    let info = ok(&["dataset", "info", s(&out)]);
    assert!(info.contains("observation.images.wrist"), "{info}");

    let renders = tmp.path().join("renders");
    let text = ok(&[
        "sim",
        "render",
        "--task",
        "open_fridge",
        "--steps",
        "5",
        "--width",
        "32",
        "--height",
        "32",
        "--out",
        s(&renders),
    ]);
    for name in [
        "step000_agentview.png",
        "step005_wrist.png",
        "step000_agentview_depth.png",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    // Renders never silently replace files already there.
    let again = mulli(&[
        "sim",
        "render",
        "--task",
        "open_fridge",
        "--width",
        "32",
        "--height",
        "32",
        "--out",
        s(&renders),
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    ok(&[
        "sim",
        "render",
        "--task",
        "open_fridge",
        "--width",
        "32",
        "--height",
        "32",
        "--out",
        s(&renders),
        "--force",
    ]);
    let tasks = ok(&["sim", "tasks"]);
    assert!(
        tasks.contains("put_ketchup_in_fridge_and_close_it") && tasks.contains("케첩을 냉장고에"),
        "{tasks}"
    );

    let bad = mulli(&[
        "sim",
        "record",
        "--episodes",
        "1",
        "--tasks",
        "make_coffee",
        "--out",
        s(&tmp.path().join("x")),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("unknown task 'make_coffee'") && err.contains("open_drawer"),
        "{err}"
    );
}

#[test]
fn teleop_replays_keys_and_records_the_episodes_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("teleop");
    // Down six steps, close, up three, keep (Enter); two steps then discard; one step, keep; quit.
    let keys = "ffffff rrr\nww\u{8}s\n\u{1b}";
    let text = ok(&[
        "sim",
        "teleop",
        "--task",
        "pick_up_cube",
        "--keys",
        keys,
        "--out",
        s(&out),
    ]);
    assert!(text.contains("kept 2 episode(s)"), "{text}");
    ok(&["dataset", "validate", s(&out)]);
    let info = ok(&["dataset", "info", s(&out)]);
    assert!(info.contains("episodes   2 (11 frames"), "{info}");
    let bad = mulli(&["sim", "teleop", "--keys", "x"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a teleop key"));
    // Without --keys and without a terminal it says so instead of hanging.
    let no_tty = mulli(&["sim", "teleop"]);
    assert_eq!(no_tty.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_tty.stderr).contains("interactive terminal"));
}

#[test]
fn train_info_and_eval_a_policy_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("kitchen");
    ok(&[
        "sim",
        "record",
        "--suite",
        "kitchen-v1-single",
        "--tasks",
        "open_drawer",
        "--episodes",
        "3",
        "--width",
        "32",
        "--height",
        "32",
        "--out",
        s(&data),
    ]);
    let config = tmp.path().join("tiny.toml");
    std::fs::write(
        &config,
        "steps = 4\nbatch_size = 8\nwarmup_steps = 1\nval_every = 2\ncheckpoint_every = 2\n\
         log_every = 1\nval_fraction = 0.34\nstate_ignore = [\"joint_1\", \"ee_x\"]\n\
         [augment]\nshift = 2\n\
         [model]\nimage_size = 32\nconv_channels = [8, 16]\nd_model = 32\nd_ff = 64\n\
         n_layers = 1\nchunk = 4\nhead = \"flow\"\nkeypoints = 4\n",
    )
    .unwrap();
    let run = tmp.path().join("run");
    let out = ok(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--config",
        s(&config),
    ]);
    assert!(out.contains("trained 4 steps"), "{out}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 4);

    // The same --out again is refused (nothing is overwritten), --resume is the way back in.
    let o = mulli(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--config",
        s(&config),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
    // An unknown config key names itself.
    std::fs::write(tmp.path().join("bad.toml"), "stepz = 3\n").unwrap();
    let o = mulli(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&tmp.path().join("bad")),
        "--config",
        s(&tmp.path().join("bad.toml")),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("stepz"));

    let info = ok(&["policy", "info", s(&run)]);
    assert!(
        info.contains("parameters") && info.contains("Flow head"),
        "{info}"
    );
    assert!(info.contains("agentview, wrist"), "{info}");
    // Keypoints, auxiliary targets from the recorded environment state, hidden state.
    assert!(info.contains("4 spatial-softmax keypoints"), "{info}");
    assert!(
        info.contains("aux") && info.contains("drawer.opening"),
        "{info}"
    );
    assert!(
        info.lines()
            .filter(|l| l.contains("hidden from the policy"))
            .count()
            == 2,
        "{info}"
    );
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("aux_loss"), "{metrics}");
    // `policy explain` shows a gate or slots; this policy has neither, and says so.
    let o = mulli(&[
        "policy",
        "explain",
        s(&run),
        "--instruction",
        "open the drawer",
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("neither a state gate nor slots"), "{e}");

    let eval_dir = tmp.path().join("eval");
    let instructions = tmp.path().join("mine.toml");
    std::fs::write(
        &instructions,
        "[[instruction]]\ntask = \"open_drawer\"\ninstruction = \"서랍 좀 열어 <b>\"\n",
    )
    .unwrap();
    let out = ok(&[
        "eval",
        "--policy",
        s(&run),
        "--task",
        "open_drawer",
        "--episodes",
        "1",
        "--split",
        "seen_layouts",
        "--instructions",
        s(&instructions),
        "--workers",
        "2",
        "--out",
        s(&eval_dir),
    ]);
    assert!(out.contains("| seen_layouts | open_drawer |"), "{out}");
    assert!(out.contains("custom_instructions"), "{out}");
    // One episode cannot tell a task below half from one above it.
    assert!(
        out.contains("seen_layouts, per task: ")
            && (out.contains("1 of 1 succeed") || out.contains("more episodes would tell")),
        "{out}"
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval_dir.join("eval_info.json")).unwrap())
            .unwrap();
    assert_eq!(info["per_episode"].as_array().unwrap().len(), 2);
    assert!(info["aggregated"]["pc_success"].is_number());
    // Evaluating into the same directory again is refused.
    let o = mulli(&[
        "eval",
        "--policy",
        s(&run),
        "--task",
        "open_drawer",
        "--episodes",
        "1",
        "--out",
        s(&eval_dir),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds an evaluation"));
    // The same policy behind `mulli serve` (openpi protocol), evaluated through the wire.
    let mut server = Command::new(env!("CARGO_BIN_EXE_mulli"))
        .args(["serve", "--policy", s(&run), "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut reader, &mut first).unwrap();
    // Keep reading: a closed pipe would make the server's next line of output fail.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .unwrap_or_else(|| panic!("no ws:// address in {first:?}"))
        .to_string();
    let remote = mulli(&[
        "eval",
        "--server",
        &url,
        "--task",
        "open_drawer",
        "--episodes",
        "1",
        "--split",
        "seen_layouts",
    ]);
    let _ = server.kill();
    let _ = server.wait();
    let remote_out = String::from_utf8_lossy(&remote.stdout);
    assert!(
        remote.status.success(),
        "{remote_out}\n{}",
        String::from_utf8_lossy(&remote.stderr)
    );
    let row = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("| seen_layouts | open_drawer |"))
            .map(|l| l.split('|').nth(3).unwrap().trim().to_string())
    };
    assert!(row(&remote_out).is_some(), "{remote_out}");
    assert_eq!(
        row(&remote_out),
        row(&out),
        "same episodes, same success through the wire"
    );
    // A report of this evaluation, with the user's instruction escaped.
    let path = ok(&[
        "report",
        s(&eval_dir),
        "--train",
        s(&run),
        "--data",
        s(&data),
    ]);
    let html = std::fs::read_to_string(path.trim()).unwrap();
    assert!(html.contains("서랍 좀 열어 &lt;b&gt;") && !html.contains("열어 <b>"));
    assert!(html.contains("<svg") && html.contains("data:video/mp4;base64,"));

    // Corrections: the policy drives, the expert takes over; the episodes train.
    let fixes = tmp.path().join("fixes");
    let corr = |extra: &[&str]| {
        let mut args = vec!["correct", "--policy", s(&run), "--out", s(&fixes)];
        args.extend_from_slice(&["--attempts", "2", "--takeover", "0.05", "0.1"]);
        args.extend_from_slice(extra);
        mulli(&args)
    };
    let o = corr(&["--task", "open_drawer"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("can take over midway"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = corr(&["--task", "pick_up_cube"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("| pick_up_cube | 2 |"), "{text}");
    ok(&["dataset", "validate", s(&fixes)]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixes.join("correct_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["attempts"], 2);
    assert!(report["per_task"]["pick_up_cube"]["written"].is_number());
    let o = corr(&["--task", "pick_up_cube"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("non-empty directory"));
    let out = ok(&[
        "train",
        "--data",
        s(&data),
        "--data",
        s(&fixes),
        "--out",
        s(&tmp.path().join("run2")),
        "--config",
        s(&config),
    ]);
    assert!(out.contains("trained 4 steps"), "{out}");
}

/// The main job with --quick: every stage writes valid artifacts, a rerun reuses them, and
/// a changed config runs again beside the old results. (Success is not asserted: the quick
/// budgets train for seconds.)
#[test]
fn quick_flywheel_runs_every_stage_and_caches_them() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("fw");
    let out = ok(&["flywheel", "--quick", "--out", s(&out_dir)]);
    for stage in ["capture", "multiply", "train", "correct", "eval", "report"] {
        assert!(out.contains(stage), "{stage}: {out}");
    }
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("flywheel.json")).unwrap())
            .unwrap();
    let dir = |name: &str| -> std::path::PathBuf {
        let st = record["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == name)
            .unwrap();
        out_dir.join(st["dir"].as_str().unwrap())
    };
    // The captured, the generated and the corrected datasets are valid LeRobot datasets.
    for stage in ["capture", "multiply", "correct"] {
        let v = ok(&["dataset", "validate", s(&dir(stage).join("dataset"))]);
        assert!(v.contains("ok") || v.contains("valid"), "{v}");
    }
    // The corrections are appended to a copy of the generated demos, which stay as they were.
    let episodes = |stage: &str| -> u64 {
        let info: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir(stage).join("dataset/meta/info.json")).unwrap(),
        )
        .unwrap();
        info["total_episodes"].as_u64().unwrap()
    };
    let correct: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir("correct").join("stage.json")).unwrap())
            .unwrap();
    // 3 clean demos per task, then one from a wandering hand per grasping task (2 of 3).
    assert_eq!(episodes("capture"), 3 * 3 + 2);
    let written = correct["summary"]["episodes"].as_u64().unwrap();
    assert!(written > 0, "{correct}");
    assert_eq!(episodes("correct"), episodes("multiply") + written);
    // The stages run in order, and the policy evaluated is the one trained with them.
    let names: Vec<&str> = record["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "capture", "multiply", "train", "correct", "train", "eval", "report"
        ]
    );
    let last_train = record["stages"][4]["dir"].as_str().unwrap();
    assert_ne!(last_train, record["stages"][2]["dir"].as_str().unwrap());
    let eval_info = std::fs::read_to_string(dir("eval").join("eval_info.json")).unwrap();
    assert!(eval_info.contains(last_train), "{eval_info}");
    // The policy loads.
    let info = ok(&["policy", "info", s(&dir("train").join("run"))]);
    assert!(info.contains("parameters"), "{info}");
    // The wrist camera's lift is calibrated on the capture's labels: the kitchen's wrist
    // camera sits 7 cm beside and 10 cm behind the hand, and the labels fit it exactly.
    let lift = info
        .lines()
        .find(|l| l.starts_with("lift       wrist: along the keypoint's ray"))
        .unwrap_or_else(|| panic!("no calibrated wrist lift: {info}"));
    assert!(
        lift.contains("to 0.00") && lift.contains("centre 0.070,") && lift.contains(", -0.100 m"),
        "{lift}"
    );
    // With it, the control reads the things relative to the hand.
    assert!(info.contains("relative to the hand"), "{info}");
    // An oracle evaluation gives the control the truth for the named things, says that it
    // is a diagnosis and records it; an unknown thing is an error that names the known.
    let oracle_dir = tmp.path().join("oracle");
    let run = dir("train").join("run");
    // `policy explain`: for each instruction (any language), the gate on every state entry,
    // each a factor in [0, 2]; the default has no slots, so none are listed.
    let explain = ok(&[
        "policy",
        "explain",
        s(&run),
        "--instruction",
        "put the apple in the bowl",
        "--instruction",
        "사과를 그릇에 담아",
    ]);
    assert!(
        explain.contains("\"put the apple in the bowl\"")
            && explain.contains("\"사과를 그릇에 담아\""),
        "{explain}"
    );
    assert!(!explain.contains("  slot "), "{explain}");
    let gates: Vec<f32> = explain
        .lines()
        .filter(|l| !l.starts_with('"') && !l.contains("gate"))
        .flat_map(|l| l.split_whitespace().skip(1).step_by(2).collect::<Vec<_>>())
        .map(|g| g.parse().unwrap())
        .collect();
    assert!(
        !gates.is_empty() && gates.iter().all(|g| (0.0..=2.0).contains(g)),
        "{explain}"
    );
    assert!(
        explain.contains("apple.x") && explain.matches("gate").count() == 2,
        "{explain}"
    );
    let eval_one = |extra: &[&str]| {
        let mut args = vec!["eval", "--policy", s(&run), "--task", "pick_up_cube"];
        args.extend(["--episodes", "1", "--workers", "1"]);
        args.extend(extra);
        mulli(&args)
    };
    let o = eval_one(&["--oracle", "cube,drawer", "--out", s(&oracle_dir)]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("true positions of cube, drawer"), "{text}");
    let oracle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(oracle_dir.join("eval_info.json")).unwrap())
            .unwrap();
    assert_eq!(
        oracle["settings"]["oracle"],
        serde_json::json!(["cube", "drawer"])
    );
    assert!(eval_info.contains("\"settings\"") && !eval_info.contains("\"oracle\""));
    let o = eval_one(&["--oracle", "banana"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("`banana`") && e.contains("cube"),
        "{e}"
    );
    // eval_info.json covers 3 tasks × 6 splits × 1 episode and lists videos that exist.
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir("eval").join("eval_info.json")).unwrap())
            .unwrap();
    assert_eq!(eval["per_episode"].as_array().unwrap().len(), 18);
    assert_eq!(eval["per_group"].as_object().unwrap().len(), 6);
    let videos = eval["overall"]["video_paths"].as_array().unwrap();
    assert!(!videos.is_empty());
    for v in videos {
        assert!(dir("eval").join(v.as_str().unwrap()).exists(), "{v}");
    }
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!doctype html>") && html.ends_with("</html>\n"));
    assert!(html.contains("open_drawer") && html.contains("<svg"));

    // Same config again: every stage is cached.
    let again = ok(&["flywheel", "--quick", "--out", s(&out_dir)]);
    assert_eq!(again.matches("cached").count(), 6, "{again}");
    // One changed key: capture and multiply stay cached, training and evaluation run again,
    // in new directories.
    let cfg = tmp.path().join("fw.toml");
    std::fs::write(&cfg, "[train]\nsteps = 20\n").unwrap();
    let changed = ok(&[
        "flywheel",
        "--quick",
        "--out",
        s(&out_dir),
        "--config",
        s(&cfg),
    ]);
    assert_eq!(changed.matches("cached").count(), 2, "{changed}");
    let trains = std::fs::read_dir(&out_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("train-")
        })
        .count();
    assert_eq!(trains, 4, "the first run's trainings are kept");
    // Bad configs are named.
    std::fs::write(&cfg, "[eval]\nsplits = [\"upside_down\"]\n").unwrap();
    let o = mulli(&[
        "flywheel",
        "--quick",
        "--out",
        s(&out_dir),
        "--config",
        s(&cfg),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("upside_down"));
    // A device this build lacks is named before any stage runs; --device shows in the config.
    let fresh = tmp.path().join("fresh");
    let o = mulli(&[
        "flywheel",
        "--quick",
        "--out",
        s(&fresh),
        "--device",
        "tpu:0",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("tpu:0") && err.contains("use cpu, cuda:N or vulkan:N"),
        "{err}"
    );
    assert!(!fresh.exists(), "nothing was written");
    let printed = ok(&[
        "flywheel",
        "--quick",
        "--device",
        "vulkan:1",
        "--print-config",
    ]);
    assert!(printed.contains("device = \"vulkan:1\""), "{printed}");
}

#[test]
fn synth_multiplies_recorded_demos_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    ok(&[
        "sim",
        "record",
        "--tasks",
        "open_drawer",
        "--episodes",
        "2",
        "--width",
        "32",
        "--height",
        "32",
        "--out",
        s(&src),
    ]);
    let out = tmp.path().join("gen");
    let text = ok(&[
        "synth",
        "--source",
        s(&src),
        "--out",
        s(&out),
        "--per-task",
        "1",
        "--workers",
        "2",
        "--seed",
        "3",
    ]);
    assert!(text.contains("wrote 1 episodes"), "{text}");
    let report = std::fs::read_to_string(out.join("synth_report.json")).unwrap();
    assert!(
        report.contains("\"yield\"") && report.contains("open_drawer"),
        "{report}"
    );
    assert!(ok(&["dataset", "validate", s(&out)]).contains("ok (1 episodes"));
    // The output exists now: refused, nothing touched.
    let o = mulli(&[
        "synth",
        "--source",
        s(&src),
        "--out",
        s(&out),
        "--per-task",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not empty"));
    // A dataset from another world.
    let demo = tmp.path().join("demo");
    ok(&[
        "dataset",
        "demo",
        "--out",
        s(&demo),
        "--episodes",
        "1",
        "--frames",
        "4",
        "--size",
        "16",
    ]);
    let o = mulli(&[
        "synth",
        "--source",
        s(&demo),
        "--out",
        s(&tmp.path().join("x")),
        "--per-task",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("observation.environment_state"), "{err}");
}
