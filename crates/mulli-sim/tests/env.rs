//! The Env API: determinism, observations, bad input, recording.

use mulli_sim::tasks::{Split, Suite, registry, task};
use mulli_sim::{EnvConfig, KitchenEnv, SimError, VecEnv};

fn small() -> EnvConfig {
    let mut c = EnvConfig::default();
    c.cameras.width = 48;
    c.cameras.height = 40;
    c
}

/// Run the expert for `steps` and return every observation's bytes and states.
fn trajectory(seed: u64, steps: usize) -> Vec<(Vec<u8>, Vec<f32>, Vec<f32>)> {
    let t = task("put_cube_on_plate").unwrap();
    let mut env = KitchenEnv::new(small(), t.clone(), seed, "put the cube on the plate").unwrap();
    let mut expert = t.expert();
    let mut out = Vec::new();
    for _ in 0..steps {
        let a = expert.act(env.scene());
        let r = env.step(&a).unwrap();
        let mut px = Vec::new();
        for img in r.observation.images.values() {
            px.extend_from_slice(&img.rgb);
            px.extend(
                img.depth
                    .as_ref()
                    .unwrap()
                    .iter()
                    .flat_map(|d| d.to_le_bytes()),
            );
        }
        out.push((px, r.observation.state, env.environment_state()));
        if r.terminated || r.truncated {
            break;
        }
    }
    out
}

#[test]
fn identical_seeds_give_bitwise_identical_trajectories() {
    let a = trajectory(42, 60);
    let b = trajectory(42, 60);
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x.0 == y.0, "images differ at step {i}");
        assert_eq!(
            x.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            y.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "state differs at step {i}"
        );
        assert_eq!(
            x.2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            y.2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "scene differs at step {i}"
        );
    }
    let c = trajectory(43, 5);
    assert_ne!(
        a[0].2, c[0].2,
        "different seeds should give different scenes"
    );
}

#[test]
fn observations_have_both_cameras_state_and_instruction() {
    let t = task("open_drawer").unwrap();
    let mut env = KitchenEnv::new(small(), t, 3, "서랍을 열어줘").unwrap();
    let obs = env.observe();
    assert_eq!(obs.instruction, "서랍을 열어줘");
    assert_eq!(obs.state.len(), mulli_sim::env::state_names().len());
    assert_eq!(
        env.environment_state().len(),
        mulli_sim::env::environment_state_names().len()
    );
    for cam in KitchenEnv::CAMERAS {
        let img = &obs.images[cam];
        assert_eq!(
            (img.width, img.height, img.rgb.len()),
            (48, 40, 48 * 40 * 3)
        );
        let depth = img.depth.as_ref().unwrap();
        assert!(depth.iter().all(|d| d.is_finite() && *d > 0.0));
        // The scene is not a flat colour.
        let distinct: std::collections::BTreeSet<&[u8]> = img.rgb.chunks(3).collect();
        assert!(
            distinct.len() > 20,
            "{cam} has only {} colours",
            distinct.len()
        );
    }
}

#[test]
fn bad_actions_and_configs_are_clear_errors() {
    let t = task("pick_up_apple").unwrap();
    let mut env = KitchenEnv::new(
        EnvConfig {
            render: false,
            ..small()
        },
        t.clone(),
        1,
        "pick up the apple",
    )
    .unwrap();
    let e = env.step(&[0.0; 6]).err().unwrap().to_string();
    assert!(e.contains("expected 7") && e.contains("got 6"), "{e}");
    let e = env
        .step(&[0.0, f32::NAN, 0.0, 0.0, 0.0, 0.0, 1.0])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("dy") && e.contains("NaN"), "{e}");
    // Huge actions are clipped, not a blow-up.
    let r = env
        .step(&[1e30, -1e30, 1e30, 1e30, 1e30, 1e30, 5.0])
        .unwrap();
    assert!(r.observation.state.iter().all(|v| v.is_finite()));
    let mut c = small();
    c.control_hz = 7;
    assert!(
        matches!(KitchenEnv::new(c, t.clone(), 1, "x"), Err(SimError::Config(m)) if m.contains("control_hz = 7"))
    );
    let mut c = small();
    c.cameras.width = 0;
    assert!(KitchenEnv::new(c, t, 1, "x").is_err());
}

#[test]
fn episodes_end_with_truncation_and_a_reason() {
    let t = task("open_fridge").unwrap();
    let config = EnvConfig {
        render: false,
        max_steps: Some(5),
        ..small()
    };
    let mut env = KitchenEnv::new(config, t, 1, "open the fridge").unwrap();
    let mut last = None;
    for _ in 0..5 {
        last = Some(env.step(&[0.0; 7]).unwrap());
    }
    let r = last.unwrap();
    assert!(r.truncated && !r.terminated && !r.info.success);
    assert_eq!(r.info.failure, Some(mulli_sim::FailureReason::Timeout));
    assert!(
        env.step(&[0.0; 7]).is_err(),
        "stepping a finished episode must be an error"
    );
}

#[test]
fn vec_env_steps_many_kitchens_in_parallel_like_one_by_one() {
    let suite = Suite::named("kitchen-v1").unwrap();
    let specs: Vec<_> = (0..4).map(|i| suite.episode(Split::Train, i, 5)).collect();
    let config = small();
    let mut venv = VecEnv::new(&config, &specs).unwrap();
    let actions = vec![vec![0.01, 0.0, -0.01, 0.0, 0.0, 0.05, -1.0]; 4];
    let batched = venv.step(&actions, &[true; 4]).unwrap();
    for (i, spec) in specs.iter().enumerate() {
        let mut env = KitchenEnv::new(
            config.clone(),
            spec.task.clone(),
            spec.seed,
            &spec.instruction,
        )
        .unwrap();
        let one = env.step(&actions[i]).unwrap();
        assert_eq!(batched[i].as_ref().unwrap().observation, one.observation);
    }
    assert!(venv.step(&actions[..2], &[true; 4]).is_err());
}

#[test]
fn every_task_resets_to_a_valid_not_yet_solved_state() {
    for t in registry() {
        for seed in 0..3 {
            let env = KitchenEnv::new(
                EnvConfig {
                    render: false,
                    ..small()
                },
                t.clone(),
                seed,
                &t.canonical(),
            )
            .unwrap();
            assert!(
                !env.is_success(),
                "{} is solved at reset (seed {seed})",
                t.id()
            );
        }
    }
}

#[test]
fn the_env_trait_resets_by_task_id_and_describes_the_embodiment() {
    use mulli_sim::Env;
    let t = task("pick_up_cube").unwrap();
    let mut env = KitchenEnv::new(
        EnvConfig {
            render: false,
            ..small()
        },
        t,
        1,
        "pick up the cube",
    )
    .unwrap();
    let e = env.embodiment();
    assert_eq!(e.action_dim(), 7);
    assert_eq!(e.state_dim(), mulli_sim::env::state_names().len());
    assert_eq!(
        e.cameras,
        vec!["observation.images.agentview", "observation.images.wrist"]
    );
    let obs = Env::reset(&mut env, 4, "open_drawer", "서랍을 열어줘").unwrap();
    assert_eq!(obs.instruction, "서랍을 열어줘");
    assert_eq!(env.task().id(), "open_drawer");
    let err = Env::reset(&mut env, 4, "fly_away", "x")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("fly_away"), "{err}");
    assert!(Env::step(&mut env, &[0.0; 7]).is_ok());
}

#[test]
fn handle_positions_follow_from_the_environment_state() {
    use mulli_sim::env::environment_state_names;
    use mulli_sim::scene::{door_handle_at, drawer_handle_at};
    let names = environment_state_names();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    let config = EnvConfig {
        render: false,
        ..EnvConfig::default()
    };
    for (id, seed) in [("close_drawer", 3), ("close_fridge", 4), ("open_drawer", 5)] {
        let t = task(id).unwrap();
        let env = KitchenEnv::new(config.clone(), t, seed, "x").unwrap();
        let s = env.environment_state();
        let drawer = drawer_handle_at(
            [s[at("cabinet.x")], s[at("cabinet.y")]],
            s[at("drawer.opening")],
        );
        assert!(
            (drawer - env.scene().drawer_handle()).length() < 1e-4,
            "{id}"
        );
        let door = door_handle_at(
            [s[at("fridge.x")], s[at("fridge.y")]],
            s[at("fridge_door.angle")],
        );
        assert!(
            (door - env.scene().door_handle().0).length() < 1e-3,
            "{id}: {door} vs {:?}",
            env.scene().door_handle()
        );
    }
}

/// The agent-view image positions in the environment state: on the image for everything
/// on the table, off it for what the layout lacks, and where a pinhole model of the nominal
/// camera puts them (u to the right, v down; the layout's camera jitter is a few cm).
#[test]
fn image_positions_of_the_objects_are_in_the_environment_state() {
    use glam::Vec3;
    use mulli_sim::env::{OFF_IMAGE, environment_state_names};
    let names = environment_state_names();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    let config = EnvConfig {
        render: false,
        ..EnvConfig::default()
    };
    let cam = &config.cameras;
    let eye = Vec3::from(cam.agent_eye);
    let forward = (Vec3::from(cam.agent_target) - eye).normalize();
    let right = forward.cross(Vec3::Z).normalize();
    let up = right.cross(forward);
    let focal = 1.0 / (0.5 * cam.agent_fov_deg.to_radians()).tan();
    let things = [
        "ketchup", "mustard", "milk", "apple", "cube", "basket", "plate", "bowl",
    ];
    let (mut present, mut absent) = (0, 0);
    for seed in 0..12 {
        let t = task("put_apple_in_basket").unwrap();
        let env = KitchenEnv::new(config.clone(), t, seed, "x").unwrap();
        let s = env.environment_state();
        for thing in things {
            let (u, v) = (
                s[at(&format!("{thing}.agentview.u"))],
                s[at(&format!("{thing}.agentview.v"))],
            );
            let p = Vec3::new(
                s[at(&format!("{thing}.x"))],
                s[at(&format!("{thing}.y"))],
                s[at(&format!("{thing}.z"))],
            );
            // An absent thing's pose is all zeros.
            if p.x == 0.0 && p.y == 0.0 {
                assert_eq!((u, v), (OFF_IMAGE, OFF_IMAGE), "seed {seed}: {thing}");
                absent += 1;
                continue;
            }
            present += 1;
            assert!(
                u.abs() < 1.0 && v.abs() < 1.0,
                "seed {seed}: {thing} at ({u}, {v}) is off the image"
            );
            let d = p - eye;
            let depth = d.dot(forward);
            let (eu, ev) = (focal * d.dot(right) / depth, -focal * d.dot(up) / depth);
            assert!(
                (u - eu).abs() < 0.1 && (v - ev).abs() < 0.1,
                "seed {seed}: {thing} labelled ({u}, {v}), the nominal camera puts it at ({eu}, {ev})"
            );
        }
    }
    // Every layout of this task has every thing; the absent case is the same rule.
    assert!(present > 40, "{present} present, {absent} absent");
}

/// The wrist-camera image positions: where the expert closes the hand on the cube, the cube
/// sits on the wrist image between the fingers (within a few pixels of where it sits in
/// every other grasp), and it stays there while it is lifted.
#[test]
fn wrist_image_positions_follow_the_grasp() {
    use mulli_sim::env::environment_state_names;
    let names = environment_state_names();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    let (iu, iv) = (at("cube.wrist.u"), at("cube.wrist.v"));
    let config = EnvConfig {
        render: false,
        ..EnvConfig::default()
    };
    let mut at_grasp = Vec::new();
    for seed in 0..6 {
        let t = task("pick_up_cube").unwrap();
        let mut env = KitchenEnv::new(config.clone(), t.clone(), seed, "x").unwrap();
        let mut expert = t.expert();
        let mut grasp: Option<[f32; 2]> = None;
        let mut held = Vec::new();
        for _ in 0..400 {
            let a = expert.act(env.scene());
            let r = env.step(&a).unwrap();
            let s = env.environment_state();
            let uv = [s[iu], s[iv]];
            // The gripper command turns to close (+1) once, at the grasp.
            if a[6] > 0.0 && grasp.is_none() {
                grasp = Some(uv);
            } else if grasp.is_some() {
                held.push(uv);
            }
            if r.terminated || r.truncated {
                break;
            }
        }
        let g = grasp.unwrap_or_else(|| panic!("seed {seed}: the expert never closed the hand"));
        assert!(
            g[0].abs() < 0.9 && g[1].abs() < 0.9,
            "seed {seed}: at the grasp the cube is at {g:?}, not on the wrist image"
        );
        let last = held.last().copied().unwrap_or(g);
        assert!(
            (last[0] - g[0]).abs() < 0.3 && (last[1] - g[1]).abs() < 0.3,
            "seed {seed}: the held cube moved on the wrist image from {g:?} to {last:?}"
        );
        at_grasp.push(g);
    }
    // Every grasp puts the cube at about the same spot between the fingers.
    let spread = at_grasp
        .iter()
        .flat_map(|a| {
            at_grasp
                .iter()
                .map(move |b| (a[0] - b[0]).abs() + (a[1] - b[1]).abs())
        })
        .fold(0.0f32, f32::max);
    assert!(spread < 0.2, "grasp positions {at_grasp:?} spread {spread}");
}

/// The release diagnostic: the scripted expert lets go of the object over the receptacle's
/// centre (well inside it) in every layout it solves; a task that only picks has no
/// release to measure.
#[test]
fn the_release_is_measured_from_the_receptacle_centre() {
    use mulli_sim::objects::Receptacle;
    let config = EnvConfig {
        render: false,
        ..EnvConfig::default()
    };
    for (id, receptacle) in [
        ("put_apple_in_bowl", Some(Receptacle::Bowl)),
        ("put_cube_on_plate", Some(Receptacle::Plate)),
        ("pick_up_cube", None),
    ] {
        for seed in 0..3 {
            let t = task(id).unwrap();
            let mut env = KitchenEnv::new(config.clone(), t.clone(), seed, "x").unwrap();
            let mut expert = t.expert();
            let success = loop {
                let r = env.step(&expert.act(env.scene())).unwrap();
                if r.terminated || r.truncated {
                    break r.info.success;
                }
            };
            assert!(success, "{id} seed {seed}: the expert failed");
            let released = env.reach().unwrap().released_m;
            match receptacle {
                Some(r) => {
                    let d = released.unwrap_or_else(|| panic!("{id} seed {seed}: no release"));
                    assert!(
                        d < 0.5 * f64::from(r.inner_radius()),
                        "{id} seed {seed}: released {d} m from the centre"
                    );
                }
                None => assert_eq!(released, None, "{id} seed {seed}"),
            }
        }
    }
}

/// With a success tail, an episode keeps running that many steps after its first success
/// and then ends as a success (the expert has let go and moved away); without one it ends
/// at the first success. The steps up to the first success are the same either way.
#[test]
fn a_success_tail_keeps_the_episode_running_past_the_first_success() {
    let run = |tail: usize| {
        let config = EnvConfig {
            render: false,
            success_tail: tail,
            ..EnvConfig::default()
        };
        let t = task("put_cube_on_plate").unwrap();
        let mut env = KitchenEnv::new(config, t.clone(), 4, "x").unwrap();
        let mut expert = t.expert();
        let mut trace = Vec::new();
        loop {
            let r = env.step(&expert.act(env.scene())).unwrap();
            trace.push((r.info.success, env.state()));
            if r.terminated || r.truncated {
                assert!(r.terminated && r.info.success && r.info.failure.is_none());
                assert!(env.step(&[0.0; 7]).is_err(), "the episode is over");
                return trace;
            }
        }
    };
    let plain = run(0);
    let tailed = run(10);
    assert!(plain.last().unwrap().0 && plain[..plain.len() - 1].iter().all(|s| !s.0));
    assert_eq!(tailed.len(), plain.len() + 10);
    assert_eq!(&tailed[..plain.len()], &plain[..]);
    assert!(
        tailed[plain.len()..].iter().all(|s| s.0),
        "the task holds in the tail"
    );
    // The hand moves away from the placed cube during the tail.
    let z = |s: &[f32]| s[9];
    assert!(z(&tailed.last().unwrap().1) > z(&plain.last().unwrap().1) + 0.01);
}
