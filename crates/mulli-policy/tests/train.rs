//! Training end to end on tiny datasets: checkpoints, bit-for-bit resume, loading a policy,
//! and the errors users hit.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use mulli_core::{CameraImage, Observation, Policy};
use mulli_data::WriterOptions;
use mulli_data::demo::DemoSpec;
use mulli_policy::train::{Event, Metrics, TrainConfig};
use mulli_policy::{Head, VlaConfig, VlaPolicy, train};

fn dataset(root: &Path, cameras: &[&str], seed: u64) -> PathBuf {
    let spec = DemoSpec {
        episodes: 6,
        frames_per_episode: 10,
        height: 24,
        width: 24,
        cameras: cameras.iter().map(|c| c.to_string()).collect(),
        video: seed.is_multiple_of(2),
        state_dim: 4,
        action_dim: 3,
        seed,
        ..DemoSpec::default()
    };
    let dir = root.join(format!("data-{seed}"));
    spec.write(&dir, WriterOptions::default(), &mut |_, _| {})
        .unwrap();
    dir
}

fn tiny(head: Head) -> TrainConfig {
    TrainConfig {
        steps: 6,
        batch_size: 8,
        warmup_steps: 2,
        val_every: 3,
        checkpoint_every: 3,
        log_every: 1,
        val_samples: 8,
        val_fraction: 0.2,
        augment: mulli_policy::data::Augment {
            shift: 2,
            ..Default::default()
        },
        model: VlaConfig {
            image_size: 24,
            conv_channels: vec![8, 16],
            d_model: 32,
            d_ff: 64,
            n_layers: 1,
            chunk: 4,
            text_len: 40,
            head,
            ..VlaConfig::default()
        },
        ..TrainConfig::default()
    }
}

/// A one-camera 24-px demo dataset of `(episodes, frames)` that records a (blob) environment
/// state: `blob.x`, `blob.y` and a constant `blob.qw`.
fn env_dataset(dir: &Path, size: (usize, usize), seed: u64) -> PathBuf {
    write_demo(dir, &env_spec(size, seed))
}

/// The spec of [`env_dataset`].
fn env_spec((episodes, frames): (usize, usize), seed: u64) -> DemoSpec {
    DemoSpec {
        episodes,
        frames_per_episode: frames,
        height: 24,
        width: 24,
        cameras: vec!["front".into()],
        video: false,
        state_dim: 4,
        action_dim: 3,
        seed,
        environment_state: true,
        ..DemoSpec::default()
    }
}

fn write_demo(dir: &Path, spec: &DemoSpec) -> PathBuf {
    spec.write(dir, WriterOptions::default(), &mut |_, _| {})
        .unwrap();
    dir.to_path_buf()
}

fn device() -> Device {
    Device::flex().autodiff()
}

/// The error of a training run that must fail, as text.
/// Train a fresh run (no resume) on the test device; panics on an error.
fn train_ok(run: &Path, data: &[PathBuf], config: TrainConfig) {
    train(run, data, Some(config), false, &device(), |_| {}).unwrap();
}

fn train_error(run: &Path, data: &[PathBuf], config: TrainConfig) -> String {
    train(run, data, Some(config), false, &device(), |_| {})
        .unwrap_err()
        .to_string()
}

/// Trains `run` until its checkpoint of step `step`, kills it there (a panic in the event
/// callback), then resumes it to the end.
fn kill_at_checkpoint_and_resume(run: &Path, data: &[PathBuf], config: TrainConfig, step: u64) {
    let r = catch_unwind(AssertUnwindSafe(|| {
        train(run, data, Some(config), false, &device(), |e| {
            if let Event::Checkpoint(dir) = e
                && serde_json::from_str::<serde_json::Value>(
                    &std::fs::read_to_string(dir.join("state.json")).unwrap(),
                )
                .unwrap()["step"]
                    == step
            {
                panic!("killed");
            }
        })
    }));
    assert!(
        r.is_err(),
        "the run never reached its checkpoint of step {step}"
    );
    train(run, &[], None, true, &device(), |_| {}).unwrap();
}

fn metrics(run: &Path) -> Vec<Metrics> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_killed_run_resumes_bit_for_bit() {
    for head in [Head::L1, Head::Flow] {
        let tmp = tempfile::tempdir().unwrap();
        let data = vec![dataset(tmp.path(), &["front", "wrist"], 2)];
        let straight = tmp.path().join("straight");
        train(&straight, &data, Some(tiny(head)), false, &device(), |_| {}).unwrap();

        // Kill the second run right after its first checkpoint (step 3).
        let killed = tmp.path().join("killed");
        let r = catch_unwind(AssertUnwindSafe(|| {
            train(&killed, &data, Some(tiny(head)), false, &device(), |e| {
                if let Event::Checkpoint(_) = e {
                    panic!("killed");
                }
            })
        }));
        assert!(r.is_err());
        assert_eq!(metrics(&killed).len(), 3);
        // A new run into the same directory is refused; resuming continues it.
        let e = train(&killed, &data, Some(tiny(head)), false, &device(), |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("--resume"), "{e}");
        train(&killed, &[], None, true, &device(), |_| {}).unwrap();

        let a = std::fs::read(straight.join("checkpoint/model.safetensors")).unwrap();
        let b = std::fs::read(killed.join("checkpoint/model.safetensors")).unwrap();
        assert!(
            a == b,
            "{head:?}: resumed weights differ from the uninterrupted run"
        );
        let key = |m: &Metrics| (m.step, m.loss.to_bits(), m.val_loss.map(f32::to_bits));
        let (ma, mb) = (metrics(&straight), metrics(&killed));
        assert_eq!(ma.len(), 6);
        assert_eq!(
            ma.iter().map(key).collect::<Vec<_>>(),
            mb.iter().map(key).collect::<Vec<_>>()
        );
        assert!(ma.iter().all(|m| m.loss.is_finite()));
        assert!(ma[5].val_loss.is_some());
    }
}

fn observation(cams: &[&str], size: usize) -> Observation {
    let mut obs = Observation {
        state: vec![0.1, -0.2, 0.3, 0.0],
        instruction: "케첩을 냉장고에 넣어줘".into(),
        ..Observation::default()
    };
    for c in cams {
        obs.images.insert(
            c.to_string(),
            CameraImage {
                width: size,
                height: size,
                rgb: vec![128; size * size * 3],
                depth: None,
            },
        );
    }
    obs
}

#[test]
fn a_trained_policy_acts_and_rejects_bad_observations() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vec![
        dataset(tmp.path(), &["front", "wrist"], 4),
        dataset(tmp.path(), &["front", "wrist"], 5),
    ];
    let run = tmp.path().join("run");
    let mut config = tiny(Head::Flow);
    config.steps = 3;
    train_ok(&run, &data, config);

    let mut policy = VlaPolicy::load(&run, &Device::flex()).unwrap();
    assert_eq!(policy.spec().cameras, ["front", "wrist"]);
    assert_eq!(policy.spec().training.datasets.len(), 2);
    policy.set_seed(9);
    // Images at another resolution are resized like the training frames.
    let chunk = policy.act(&observation(&["front", "wrist"], 48)).unwrap();
    assert_eq!(chunk.len(), 4);
    assert!(
        chunk
            .actions
            .iter()
            .all(|a| a.len() == 3 && a.iter().all(|v| v.is_finite()))
    );
    // Same seed, same episode → same actions (the flow head's noise is seeded).
    policy.set_seed(9);
    let again = policy.act(&observation(&["front", "wrist"], 48)).unwrap();
    assert_eq!(chunk, again);
    // The policy keeps the last instruction encoded; a new instruction is encoded anew,
    // and acts exactly as on a policy that never saw another.
    let mut other = observation(&["front", "wrist"], 48);
    other.instruction = "open the drawer".into();
    policy.set_seed(9);
    let changed = policy.act(&other).unwrap();
    assert_ne!(changed, chunk, "the instruction reaches the actions");
    let mut fresh = VlaPolicy::load(&run, &Device::flex()).unwrap();
    fresh.set_seed(9);
    assert_eq!(fresh.act(&other).unwrap(), changed);
    policy.set_seed(9);
    assert_eq!(
        policy.act(&observation(&["front", "wrist"], 48)).unwrap(),
        chunk
    );

    let err = |policy: &mut VlaPolicy, obs: Observation| policy.act(&obs).unwrap_err().to_string();
    let e = err(&mut policy, observation(&["front"], 24));
    assert!(e.contains("`wrist` is missing"), "{e}");
    let e = err(&mut policy, observation(&["front", "wrist", "top"], 24));
    assert!(e.contains("unknown camera `top`"), "{e}");
    let mut o = observation(&["front", "wrist"], 24);
    o.state[2] = f32::NAN;
    let e = err(&mut policy, o);
    assert!(e.contains("s2") && e.contains("NaN"), "{e}");
    let mut o = observation(&["front", "wrist"], 24);
    o.state.pop();
    let e = err(&mut policy, o);
    assert!(e.contains("3 values") && e.contains("expects 4"), "{e}");
    let mut o = observation(&["front", "wrist"], 24);
    o.images.get_mut("front").unwrap().rgb.pop();
    let e = err(&mut policy, o);
    assert!(e.contains("`front`"), "{e}");
}

/// Keypoints trained with the auxiliary loss learn where the blob is: the auxiliary loss
/// (blob position from the images, normalized L1) falls well below what a constant guess
/// gets; data without environment state trains without it; the policy still acts.
#[test]
fn keypoints_learn_object_positions_from_the_auxiliary_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let with_env = env_dataset(&tmp.path().join("env"), (8, 12), 11);
    let mut config = tiny(Head::L1);
    config.steps = 150;
    config.lr = 3e-3;
    config.log_every = 10;
    config.val_every = 150;
    config.checkpoint_every = 150;
    config.augment = mulli_policy::data::Augment::none();
    config.model.keypoints = 8;
    let run = tmp.path().join("aux");
    train_ok(&run, std::slice::from_ref(&with_env), config.clone());
    let m = metrics(&run);
    let aux: Vec<f32> = m
        .iter()
        .map(|m| m.aux_loss.expect("aux loss logged"))
        .collect();
    let (first, last) = (aux[0], *aux.last().unwrap());
    // Normalized targets: predicting the mean scores ~0.8 (mean |z| of a unit normal).
    assert!(
        last < 0.45 && last < 0.6 * first,
        "auxiliary loss {first} → {last}: keypoints did not learn the blob's position"
    );
    let policy = VlaPolicy::load(&run, &Device::flex()).unwrap();
    assert_eq!(
        policy.spec().aux_names,
        ["blob.x", "blob.y"],
        "orientations are not targets"
    );
    assert_eq!(policy.spec().model.aux_dim, 2);
    let mut policy = policy;
    assert!(policy.act(&observation(&["front"], 24)).is_ok());

    // No environment state (or no keypoints, or aux_weight = 0): no auxiliary loss.
    let plain = dataset(tmp.path(), &["front"], 12);
    config.steps = 3;
    config.val_every = 3;
    config.checkpoint_every = 3;
    let quiet = |run: &Path, data: &[PathBuf], config: &TrainConfig| {
        train(run, data, Some(config.clone()), false, &device(), |_| {})
    };
    let run = tmp.path().join("plain");
    quiet(&run, &[plain], &config).unwrap();
    assert!(metrics(&run).iter().all(|m| m.aux_loss.is_none()));
    config.aux_weight = 0.0;
    let run = tmp.path().join("off");
    quiet(&run, &[with_env], &config).unwrap();
    assert!(metrics(&run).iter().all(|m| m.aux_loss.is_none()));
    config.aux_weight = f32::NAN;
    let e = train_error(&tmp.path().join("nan"), &[], config);
    assert!(e.contains("aux_weight"), "{e}");
}

/// `env_state = "observed"` appends the environment state's positions to the policy's state:
/// the checkpoint records which entries, inference reads them from the observation and
/// rejects a missing, short or non-finite one by name, and data without it is an error.
#[test]
fn a_policy_can_observe_or_perceive_the_environment_state() {
    let tmp = tempfile::tempdir().unwrap();
    let with_env = env_dataset(&tmp.path().join("env"), (4, 8), 15);
    let mut config = tiny(Head::L1);
    config.steps = 3;
    config.env_state = mulli_policy::EnvState::Observed;
    let e = train_error(
        &tmp.path().join("origin"),
        std::slice::from_ref(&with_env),
        config.clone(),
    );
    assert!(
        e.contains("env_state_origin = \"ee\"") && e.contains("blob.x"),
        "{e}"
    );
    // The demo's only object is the blob: absolute positions.
    config.env_state_origin = String::new();
    let run = tmp.path().join("run");
    train_ok(&run, std::slice::from_ref(&with_env), config.clone());
    let mut policy = VlaPolicy::load(&run, &Device::flex()).unwrap();
    let env = policy
        .spec()
        .env_state
        .clone()
        .expect("observes the env state");
    assert_eq!((env.width, env.index.as_slice()), (3, &[0, 1][..]));
    assert_eq!(env.names, ["blob.x", "blob.y"], "orientations are left out");
    assert_eq!(policy.spec().model.state_dim, 6);
    assert_eq!(policy.spec().proprio_dim(), 4);
    assert_eq!(
        policy.spec().state_names.as_deref().unwrap()[4..],
        ["blob.x", "blob.y"]
    );

    let mut obs = observation(&["front"], 24);
    let act =
        |policy: &mut VlaPolicy, obs: &Observation| policy.act(obs).map_err(|e| e.to_string());
    let e = act(&mut policy, &obs).unwrap_err();
    assert!(e.contains("environment_state has 0 values"), "{e}");
    assert!(e.contains("blob.x"), "{e}");
    obs.environment_state = vec![0.5, 0.5];
    let e = act(&mut policy, &obs).unwrap_err();
    assert!(e.contains("environment_state has 2 values"), "{e}");
    obs.environment_state = vec![0.5, f32::NAN, 1.0];
    let e = act(&mut policy, &obs).unwrap_err();
    assert!(e.contains("environment_state value blob.y is NaN"), "{e}");
    obs.environment_state = vec![0.5, 0.5, 1.0];
    let a = act(&mut policy, &obs).unwrap();
    obs.environment_state[2] = 1e6;
    assert_eq!(
        act(&mut policy, &obs).unwrap(),
        a,
        "blob.qw is not observed"
    );
    obs.environment_state[0] = 0.9;
    assert_ne!(act(&mut policy, &obs).unwrap(), a, "blob.x is observed");

    // Object tokens: the blob's entries become a token of their own.
    let mut tokens = config.clone();
    tokens.object_tokens = true;
    let run = tmp.path().join("tokens");
    train_ok(&run, std::slice::from_ref(&with_env), tokens.clone());
    let mut policy = VlaPolicy::load(&run, &Device::flex()).unwrap();
    assert_eq!(policy.spec().model.object_tokens, [2]);
    let a = act(&mut policy, &obs).unwrap();
    obs.environment_state[0] = 0.1;
    assert_ne!(act(&mut policy, &obs).unwrap(), a, "blob.x is read");
    tokens.env_state = mulli_policy::EnvState::Off;
    let e = train_error(
        &tmp.path().join("tokens-off"),
        std::slice::from_ref(&with_env),
        tokens,
    );
    assert!(
        e.contains("object_tokens") && e.contains("env_state"),
        "{e}"
    );

    // Perceived: the keypoints' head predicts the positions, the observation needs none.
    let mut perceiving = config.clone();
    perceiving.env_state = mulli_policy::EnvState::Perceived;
    let e = train_error(
        &tmp.path().join("nokp"),
        std::slice::from_ref(&with_env),
        perceiving.clone(),
    );
    assert!(e.contains("perceived") && e.contains("keypoints"), "{e}");
    perceiving.model.keypoints = 4;
    let run = tmp.path().join("perceive");
    train_ok(&run, std::slice::from_ref(&with_env), perceiving);
    let mut policy = VlaPolicy::load(&run, &Device::flex()).unwrap();
    assert_eq!(policy.spec().model.perceived, 2);
    assert!(policy.spec().required_env_state().is_none());
    let mut obs = observation(&["front"], 24);
    let a = act(&mut policy, &obs).unwrap();
    obs.environment_state = vec![0.9, 0.1, 1.0];
    assert_eq!(
        act(&mut policy, &obs).unwrap(),
        a,
        "given values are not read"
    );
    // An oracle (`mulli eval --oracle`) gives the control the truth for named things: then
    // the observation's values are read, and must be there.
    let e = policy
        .set_oracle(&["banana".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`banana`") && e.contains("blob"), "{e}");
    policy.set_oracle(&["blob".into()]).unwrap();
    let told = act(&mut policy, &obs).unwrap();
    assert_ne!(told, a, "the oracle's values are read");
    obs.environment_state[0] = 0.1;
    assert_ne!(act(&mut policy, &obs).unwrap(), told);
    assert_eq!(
        policy.perceived().len(),
        2,
        "the perception still runs and is reported"
    );
    let mut blind = observation(&["front"], 24);
    let e = act(&mut policy, &blind).unwrap_err();
    assert!(
        e.contains("oracle") && e.contains("environment_state has 0 values"),
        "{e}"
    );
    blind.environment_state = vec![f32::NAN, 0.1, 1.0];
    let e = act(&mut policy, &blind).unwrap_err();
    assert!(e.contains("blob.x is NaN"), "{e}");
    policy.set_oracle(&[]).unwrap();
    assert_eq!(act(&mut policy, &obs).unwrap(), a, "off again");

    // Data without an environment state cannot train such a policy.
    let plain = dataset(tmp.path(), &["front"], 16);
    let e = train_error(
        &tmp.path().join("plain"),
        std::slice::from_ref(&plain),
        config,
    );
    assert!(
        e.contains("env_state = \"observed\"") && e.contains(&plain.display().to_string()),
        "{e}"
    );
}

/// A perceiving policy trained on pixel labels: 150 steps, `keypoints` per camera.
fn pixel_config(keypoints: usize) -> TrainConfig {
    let mut config = tiny(Head::L1);
    config.steps = 150;
    config.lr = 3e-3;
    config.log_every = 10;
    config.val_every = 150;
    config.checkpoint_every = 150;
    config.model.keypoints = keypoints;
    config.pixel_weight = 1.0;
    config.env_state = mulli_policy::EnvState::Perceived;
    config.env_state_origin = String::new();
    config
}

/// The last logged keypoint error of a run, and how far off keypoints that ignore the
/// images and sit at their centres would be (px of the 24-px images, over `cameras`).
fn pixel_errors(run: &Path, spec: &DemoSpec, cameras: usize) -> (Vec<f32>, f32) {
    let err: Vec<f32> = metrics(run)
        .iter()
        .map(|m| m.pixel_err_px.expect("pixel error logged"))
        .collect();
    let offs: Vec<f32> = (0..spec.episodes)
        .flat_map(|ep| (0..spec.frames_per_episode).map(move |k| (ep, k)))
        .flat_map(|(ep, k)| (0..cameras).map(move |c| (ep, k, c)))
        .map(|(ep, k, c)| {
            let (bx, by) = spec.blob(ep, k, c);
            ((2.0 * bx - 1.0).abs() + (2.0 * by - 1.0).abs()) / 2.0 * 12.0
        })
        .collect();
    (err, offs.iter().sum::<f32>() / offs.len() as f32)
}

/// Pixel labels (`<thing>.<camera>.u|v` in the environment state) train the first
/// keypoints onto the things: the keypoint error falls to a few pixels, the labelled
/// thing's position is lifted from its own keypoint, and the policy reports what it
/// perceived next to the truth. Data without labels, or too few keypoints, are errors.
#[test]
fn pixel_labels_train_keypoints_onto_the_things() {
    let tmp = tempfile::tempdir().unwrap();
    let labelled = DemoSpec {
        pixel_labels: true,
        ..env_spec((8, 12), 21)
    };
    let data = write_demo(&tmp.path().join("labelled"), &labelled);
    let mut config = pixel_config(2);
    let run = tmp.path().join("run");
    train_ok(&run, std::slice::from_ref(&data), config.clone());
    let (err, blind) = pixel_errors(&run, &labelled, 1);
    let last = *err.last().unwrap();
    assert!(
        last < 0.4 * blind,
        "pixel error {err:?} px, against {blind} px for a blind keypoint: the keypoint did not find the blob"
    );
    let mut policy = VlaPolicy::load(&run, &Device::flex()).unwrap();
    let spec = policy.spec().clone();
    assert_eq!(spec.pixel_things, ["blob"]);
    assert_eq!(
        (
            spec.model.pixel_targets,
            spec.model.pixel_cameras.as_slice()
        ),
        (1, [0].as_slice())
    );
    assert!(
        !spec.model.lift_reads_arm,
        "one labelled camera: the lift reads no arm state"
    );
    // blob.x and blob.y come from the lift (after the head's two outputs).
    assert_eq!(spec.model.aux_select, [2, 3]);
    let mut obs = observation(&["front"], 24);
    obs.environment_state = vec![0.25, 0.75, 1.0, -0.5, 0.5];
    policy.act(&obs).unwrap();
    let seen = policy.perceived();
    let names: Vec<&str> = seen.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["blob.x", "blob.y"]);
    assert_eq!(
        seen.iter().map(|p| p.truth).collect::<Vec<_>>(),
        [Some(0.25), Some(0.75)]
    );
    assert!(seen.iter().all(|p| p.value.is_finite()));

    // Too few keypoints for the labelled things; data without labels.
    config.steps = 2;
    config.model.keypoints = 0;
    config.env_state = mulli_policy::EnvState::Off;
    let e = train_error(
        &tmp.path().join("few"),
        std::slice::from_ref(&data),
        config.clone(),
    );
    assert!(
        e.contains("one keypoint per labelled thing") && e.contains("blob"),
        "{e}"
    );
    config.model.keypoints = 2;
    let unlabelled = env_dataset(&tmp.path().join("env"), (4, 8), 22);
    let e = train_error(
        &tmp.path().join("none"),
        std::slice::from_ref(&unlabelled),
        config,
    );
    assert!(
        e.contains("pixel_weight") && e.contains(&unlabelled.display().to_string()),
        "{e}"
    );
}

/// Labels in two cameras (an agent view and a wrist view): each camera gets keypoints of its
/// own for the things, both find their blob, the lift reads both and the arm's state, and
/// too few keypoints for both cameras is an error that says how many are needed.
#[test]
fn labels_in_two_cameras_train_keypoints_in_both() {
    let tmp = tempfile::tempdir().unwrap();
    let labelled = DemoSpec {
        pixel_labels: true,
        cameras: vec!["front".into(), "wrist".into()],
        ..env_spec((8, 12), 23)
    };
    let data = write_demo(&tmp.path().join("two"), &labelled);
    let mut config = pixel_config(1);
    let e = train_error(
        &tmp.path().join("few"),
        std::slice::from_ref(&data),
        config.clone(),
    );
    assert!(
        e.contains("keypoints ≥ 2") && e.contains("front, wrist"),
        "{e}"
    );
    config.model.keypoints = 2;
    // Asked for, the hand-relative state needs a calibration this data cannot give.
    config.model.hand_relative = true;
    let run = tmp.path().join("run");
    train_ok(&run, std::slice::from_ref(&data), config);
    let (err, blind) = pixel_errors(&run, &labelled, 2);
    let last = *err.last().unwrap();
    assert!(
        last < 0.4 * blind,
        "pixel error {err:?} px, against {blind} px for blind keypoints"
    );
    // Both cameras' errors are logged, and the overall error lies between them.
    let m = metrics(&run).pop().unwrap();
    for cams in [&m.pixel_err_px_by_camera, &m.val_pixel_err_px_by_camera] {
        let cams = cams.as_ref().expect("per-camera errors logged");
        assert_eq!(cams.len(), 2);
        assert!(cams.iter().all(|e| e.is_finite() && *e < blind), "{cams:?}");
    }
    let cams = m.pixel_err_px_by_camera.unwrap();
    let all = m.pixel_err_px.unwrap();
    let (lo, hi) = (cams[0].min(cams[1]), cams[0].max(cams[1]));
    assert!(lo - 1e-4 <= all && all <= hi + 1e-4, "{all} vs {cams:?}");
    let mut policy = VlaPolicy::load(&run, &Device::flex()).unwrap();
    let spec = policy.spec().clone();
    assert_eq!(spec.model.pixel_cameras, [0, 1]);
    assert!(spec.model.lift_reads_arm);
    // The synthetic demo's labels come from no camera on a hand (its state has no hand
    // pose): the lift keeps its MLP (the kitchen's is calibrated; see the CLI's flywheel test).
    assert_eq!(spec.model.hand_eye, None);
    assert!(!spec.model.hand_relative, "falls back with a warning");
    let mut obs = observation(&["front", "wrist"], 24);
    obs.environment_state = vec![0.25, 0.75, 1.0, -0.5, 0.5, 0.1, 0.2];
    policy.act(&obs).unwrap();
    let seen = policy.perceived();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|p| p.value.is_finite()), "{seen:?}");
}

/// `cameras` picks the cameras a policy sees: a subset (the others are ignored in
/// observations), or none for a state-only policy that trains and acts without images.
#[test]
fn a_policy_can_see_a_subset_of_the_cameras_or_none() {
    let tmp = tempfile::tempdir().unwrap();
    let two = vec![dataset(tmp.path(), &["front", "wrist"], 20)];
    let act =
        |policy: &mut VlaPolicy, obs: &Observation| policy.act(obs).map_err(|e| e.to_string());
    let mut config = tiny(Head::L1);
    config.steps = 3;

    config.cameras = Some(vec!["side".into()]);
    let e = train_error(&tmp.path().join("side"), &two, config.clone());
    assert!(
        e.contains("`side`") && e.contains("\"front\", \"wrist\""),
        "{e}"
    );
    config.cameras = Some(vec!["wrist".into(), "wrist".into()]);
    let e = train_error(&tmp.path().join("twice"), &two, config.clone());
    assert!(e.contains("`wrist` twice"), "{e}");

    config.cameras = Some(vec!["wrist".into()]);
    let run = tmp.path().join("wrist");
    train(&run, &two, Some(config.clone()), false, &device(), |_| {}).unwrap();
    let mut policy = VlaPolicy::load(&run, &Device::flex()).unwrap();
    assert_eq!(policy.spec().cameras, ["wrist"]);
    assert_eq!(policy.spec().unused_cameras, ["front"]);
    assert_eq!(policy.spec().model.cameras, 1);
    let mut obs = observation(&["front", "wrist"], 24);
    let a = act(&mut policy, &obs).unwrap();
    obs.images.get_mut("front").unwrap().rgb.fill(0);
    assert_eq!(act(&mut policy, &obs).unwrap(), a, "front is not read");
    obs.images.get_mut("wrist").unwrap().rgb.fill(0);
    assert_ne!(act(&mut policy, &obs).unwrap(), a, "wrist is read");
    let e = act(&mut policy, &observation(&["wrist", "side"], 24)).unwrap_err();
    assert!(
        e.contains("unknown camera `side`") && e.contains("ignores"),
        "{e}"
    );
    let e = act(&mut policy, &observation(&["front"], 24)).unwrap_err();
    assert!(e.contains("camera `wrist` is missing"), "{e}");

    // None: the state (with the objects' positions) is all the policy has.
    let with_env = vec![env_dataset(&tmp.path().join("env"), (4, 8), 21)];
    config.cameras = Some(Vec::new());
    config.env_state = mulli_policy::EnvState::Observed;
    config.env_state_origin = String::new();
    config.model.keypoints = 4;
    let e = train_error(&tmp.path().join("kp"), &with_env, config.clone());
    assert!(
        e.contains("keypoints = 4") && e.contains("no cameras"),
        "{e}"
    );
    config.model.keypoints = 0;
    let run = tmp.path().join("blind");
    let mut events = Vec::new();
    train(&run, &with_env, Some(config), false, &device(), |e| {
        if let Event::Loading(m) = e {
            events.push(m.to_owned());
        }
    })
    .unwrap();
    assert!(
        !events.iter().any(|m| m.contains("decoding")),
        "no frame is decoded: {events:?}"
    );
    let mut policy = VlaPolicy::load(&run, &Device::flex()).unwrap();
    assert!(policy.spec().cameras.is_empty());
    assert_eq!(policy.spec().unused_cameras, ["front"]);
    assert_eq!(policy.spec().model.cameras, 0);
    let mut obs = observation(&[], 24);
    obs.environment_state = vec![0.5, 0.5, 1.0];
    let a = act(&mut policy, &obs).unwrap();
    assert_eq!(a.actions.len(), 4);
    let mut seen = observation(&["front"], 24);
    seen.environment_state = obs.environment_state.clone();
    assert_eq!(act(&mut policy, &seen).unwrap(), a, "images are not read");
    obs.environment_state[0] = 0.9;
    assert_ne!(act(&mut policy, &obs).unwrap(), a, "blob.x is read");
}

/// `state_ignore` hides state entries from the model in training and at inference: the
/// actions do not change whatever the hidden entry's value; unknown names are errors.
#[test]
fn ignored_state_entries_do_not_reach_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vec![dataset(tmp.path(), &["front"], 14)];
    let mut config = tiny(Head::L1);
    config.steps = 3;
    config.state_ignore = vec!["s1".into()];
    let run = tmp.path().join("run");
    train(&run, &data, Some(config.clone()), false, &device(), |_| {}).unwrap();
    let mut policy = VlaPolicy::load(&run, &Device::flex()).unwrap();
    assert_eq!(
        policy.spec().state_norm.ignored,
        [false, true, false, false]
    );
    let mut obs = observation(&["front"], 24);
    let a = policy.act(&obs).unwrap();
    obs.state[1] = 1e6;
    assert_eq!(policy.act(&obs).unwrap(), a, "s1 is hidden");
    obs.state[2] = 5.0;
    assert_ne!(policy.act(&obs).unwrap(), a, "s2 is seen");

    config.state_ignore = vec!["elbow".into()];
    let e = train_error(&tmp.path().join("bad"), &data, config);
    assert!(e.contains("`elbow`") && e.contains("s0, s1, s2, s3"), "{e}");
}

#[test]
fn broken_checkpoints_and_mismatched_data_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vec![dataset(tmp.path(), &["front", "wrist"], 6)];
    let run = tmp.path().join("run");
    let mut config = tiny(Head::L1);
    config.steps = 3;
    train_ok(&run, &data, config);
    let ckpt = run.join("checkpoint");

    // Truncated weights.
    let bad = tmp.path().join("truncated");
    copy_dir(&ckpt, &bad);
    let w = std::fs::read(bad.join("model.safetensors")).unwrap();
    std::fs::write(bad.join("model.safetensors"), &w[..w.len() / 2]).unwrap();
    let e = VlaPolicy::load(&bad, &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("model.safetensors"), "{e}");

    // Weights of another architecture.
    let other = tmp.path().join("other");
    copy_dir(&ckpt, &other);
    let spec_path = other.join("policy.json");
    let text = std::fs::read_to_string(&spec_path).unwrap();
    let mut spec: serde_json::Value = serde_json::from_str(&text).unwrap();
    spec["model"]["d_model"] = 64.into();
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let e = VlaPolicy::load(&other, &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not match the architecture"), "{e}");

    // Not a policy at all.
    let e = VlaPolicy::load(tmp.path(), &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no policy here"), "{e}");

    // Datasets that disagree.
    let one_cam = dataset(tmp.path(), &["front"], 7);
    let e = train(
        &tmp.path().join("mixed"),
        &[data[0].clone(), one_cam.clone()],
        Some(tiny(Head::L1)),
        false,
        &device(),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("does not match") && e.contains("cameras"), "{e}");

    // Resume with nothing to resume.
    let e = train(
        &tmp.path().join("empty"),
        &[],
        None,
        true,
        &device(),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no checkpoint to resume"), "{e}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_pretrained_text_encoder_plugs_into_training_and_inference() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vec![dataset(tmp.path(), &["front", "wrist"], 8)];
    let bert = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
    let run = tmp.path().join("run");
    let mut config = tiny(Head::L1);
    config.steps = 2;
    config.text_encoder_dir = Some(bert.clone());
    train_ok(&run, &data, config);

    let mut policy = VlaPolicy::load(&run, &Device::flex()).unwrap();
    assert!(matches!(
        policy.spec().model.text_encoder,
        mulli_policy::TextEncoderKind::Pretrained { .. }
    ));
    let chunk = policy.act(&observation(&["front", "wrist"], 24)).unwrap();
    assert_eq!(chunk.len(), 4);

    // A missing encoder directory is named.
    let mut config = tiny(Head::L1);
    config.text_encoder_dir = Some(tmp.path().join("no-such-bert"));
    let e = train_error(&tmp.path().join("run2"), &data, config);
    assert!(e.contains("no-such-bert"), "{e}");
}

/// A tiny config of `steps` image steps whose images feed only a perception of the
/// environment state (4 keypoints), checkpointed and validated every 2 steps.
fn perceiving(steps: u64) -> TrainConfig {
    let mut config = tiny(Head::L1);
    config.steps = steps;
    config.checkpoint_every = 2;
    config.val_every = 2;
    config.env_state = mulli_policy::EnvState::Perceived;
    config.env_state_origin = String::new();
    config.model.keypoints = 4;
    config.model.images_perception_only = true;
    config
}

/// Control steps: after `steps` with images, the policy's control part trains from states
/// alone. The perception stays as the image steps left it (a perceiving policy with and
/// without the control steps perceives the same), the actions change, a run killed during
/// the control steps resumes bit for bit, and configs that cannot work are named errors.
#[test]
fn control_steps_train_the_policy_from_states_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vec![env_dataset(&tmp.path().join("env"), (4, 8), 21)];
    let mut config = perceiving(3);
    // The EMA is the last weights: what the policy perceives is what training left.
    config.ema_decay = 0.0;
    let images_only = tmp.path().join("images-only");
    train_ok(&images_only, &data, config.clone());

    let mut control = config.clone();
    control.control_steps = 4;
    let straight = tmp.path().join("straight");
    train_ok(&straight, &data, control.clone());
    let m = metrics(&straight);
    assert_eq!(
        m.iter().map(|m| m.step).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert!(m.iter().all(|m| m.loss.is_finite()));
    // The schedule starts again for the control steps.
    assert_eq!(m[3].lr, m[0].lr, "{m:?}");

    let mut obs = observation(&["front"], 24);
    let seen = |run: &Path, obs: &Observation| {
        let mut policy = VlaPolicy::load(run, &Device::flex()).unwrap();
        let a = policy.act(obs).unwrap();
        let p: Vec<f32> = policy.perceived().iter().map(|p| p.value).collect();
        (a, p)
    };
    let (a_images, p_images) = seen(&images_only, &obs);
    let (a_control, p_control) = seen(&straight, &obs);
    assert_eq!(p_images.len(), 2);
    assert_eq!(
        p_images, p_control,
        "the control steps leave perception alone"
    );
    assert_ne!(a_images, a_control, "the control steps train the actions");
    // A bright blob in the top-left corner of the uniform image.
    let img = obs.images.get_mut("front").unwrap();
    for y in 0..8 {
        img.rgb[y * 24 * 3..(y * 24 + 8) * 3].fill(250);
    }
    assert_ne!(
        seen(&straight, &obs).1,
        p_control,
        "the images still reach the policy through perception"
    );

    // Killed at the checkpoint of step 4, within the control steps.
    let killed = tmp.path().join("killed");
    kill_at_checkpoint_and_resume(&killed, &data, control.clone(), 4);
    let read = |run: &Path| std::fs::read(run.join("checkpoint/model.safetensors")).unwrap();
    assert!(
        read(&straight) == read(&killed),
        "a run resumed within the control steps differs from the uninterrupted one"
    );

    // A fusion that reads the images cannot train without them.
    control.model.images_perception_only = false;
    let e = train_error(&tmp.path().join("reads-images"), &data, control.clone());
    assert!(
        e.contains("control_steps = 4") && e.contains("images_perception_only = true"),
        "{e}"
    );
    // Images for perception only need something to perceive.
    control.model.images_perception_only = true;
    control.env_state = mulli_policy::EnvState::Observed;
    let e = train_error(&tmp.path().join("nothing-perceived"), &data, control);
    assert!(
        e.contains("images_perception_only") && e.contains("env_state = \"perceived\""),
        "{e}"
    );
}

/// `reopen_gate`: the state gate starts again from open where the control steps begin,
/// exactly once — a run killed at that very step and resumed matches the uninterrupted one
/// — and it needs control steps and a gate.
#[test]
fn the_state_gate_reopens_where_the_control_steps_begin() {
    let tmp = tempfile::tempdir().unwrap();
    let data = vec![env_dataset(&tmp.path().join("env"), (4, 8), 22)];
    let mut config = perceiving(4);
    config.control_steps = 4;
    config.model.state_gate = true;
    let kept = tmp.path().join("kept");
    train_ok(&kept, &data, config.clone());
    config.reopen_gate = true;
    let straight = tmp.path().join("straight");
    train_ok(&straight, &data, config.clone());
    let read = |run: &Path| std::fs::read(run.join("checkpoint/model.safetensors")).unwrap();
    assert!(read(&kept) != read(&straight), "reopening changes nothing");

    // Killed at the checkpoint of step 4: the resumed run reopens the gate itself.
    let killed = tmp.path().join("killed");
    kill_at_checkpoint_and_resume(&killed, &data, config.clone(), 4);
    assert!(
        read(&straight) == read(&killed),
        "a run resumed where the gate reopens differs from the uninterrupted one"
    );

    let mut no_control = config.clone();
    no_control.control_steps = 0;
    let e = train_error(&tmp.path().join("no-control"), &data, no_control);
    assert!(
        e.contains("reopen_gate = true") && e.contains("control_steps = 0"),
        "{e}"
    );
    config.model.state_gate = false;
    let e = train_error(&tmp.path().join("no-gate"), &data, config);
    assert!(e.contains("state_gate = false"), "{e}");
}

/// A randomly shifted image moves its pixel labels, and the batch says by how much, per
/// sample and camera: a label of the shifted batch plus its camera's shift is the same label
/// unshifted — where the lift must read a keypoint to place the thing on the table.
#[test]
fn a_batch_says_how_far_each_camera_was_shifted() {
    use mulli_policy::data::{Augment, LoadOptions, Norms, TrainData};
    use mulli_policy::{NormMode, Normalizer};
    let tmp = tempfile::tempdir().unwrap();
    let spec = DemoSpec {
        pixel_labels: true,
        cameras: vec!["front".into(), "wrist".into()],
        ..env_spec((4, 8), 29)
    };
    let dir = write_demo(&tmp.path().join("data"), &spec);
    let options = LoadOptions {
        image_size: 24,
        chunk: 2,
        val_fraction: 0.0,
        seed: 0,
        max_memory_mb: 256,
        cameras: None,
    };
    let mut data = TrainData::load(&[dir], &options, |_| {}).unwrap();
    data.observe_env_state("").unwrap();
    let source = data.supervise_pixels().unwrap();
    let identity = |n: usize| Normalizer::new(NormMode::MeanStd, &vec![0.0; n], &vec![1.0; n]);
    let (state, action) = (
        identity(data.layout.state_dim).unwrap(),
        identity(3).unwrap(),
    );
    let norms = Norms {
        state: &state,
        action: &action,
        aux: None,
    };
    let samples: Vec<_> = data.train_samples().collect();
    let shifted = Augment {
        shift: 3,
        ..Augment::default()
    };
    let plain = Augment {
        shift: 0,
        ..shifted.clone()
    };
    let a = data.batch(&samples, norms, &shifted, 5, ("test", 0));
    let b = data.batch(&samples, norms, &plain, 5, ("test", 0));
    let (cams, things) = (2, source.things.len());
    assert_eq!(a.shifts.len(), samples.len() * cams * 2);
    assert!(b.shifts.is_empty(), "nothing shifted, nothing to undo");
    let step = 2.0 / 24.0;
    assert!(
        a.shifts.iter().all(|s| s.abs() <= 3.0 * step + 1e-6)
            && a.shifts.iter().any(|s| s.abs() > 0.5 * step),
        "{:?}",
        a.shifts
    );
    let mut compared = 0;
    for i in 0..samples.len() {
        for c in 0..cams {
            let (du, dv) = (
                a.shifts[(i * cams + c) * 2],
                a.shifts[(i * cams + c) * 2 + 1],
            );
            for t in 0..things {
                let at = ((i * cams + c) * things + t) * 2;
                let (u, v) = (b.pixels[at], b.pixels[at + 1]);
                if !(u.is_finite() && v.is_finite()) {
                    continue;
                }
                assert!(
                    (a.pixels[at] + du - u).abs() < 1e-5
                        && (a.pixels[at + 1] + dv - v).abs() < 1e-5,
                    "sample {i}, camera {c}: ({}, {}) + ({du}, {dv}) vs ({u}, {v})",
                    a.pixels[at],
                    a.pixels[at + 1]
                );
                compared += 1;
            }
        }
    }
    assert!(compared > samples.len(), "{compared} labels compared");
}
