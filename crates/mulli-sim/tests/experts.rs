//! Scripted experts succeed on random layouts (a few seeds here; the 200-seed table is
//! `mulli sim experts`, recorded in docs/benchmarks.md).

use mulli_sim::expert::Expert;
use mulli_sim::tasks::registry;
use mulli_sim::{EnvConfig, KitchenEnv};

fn run(
    task: &std::sync::Arc<dyn mulli_sim::Task>,
    seed: u64,
) -> (bool, usize, Option<mulli_sim::FailureReason>) {
    let config = EnvConfig {
        render: false,
        ..EnvConfig::default()
    };
    let mut env = KitchenEnv::new(config, task.clone(), seed, &task.canonical()).unwrap();
    let mut expert = task.expert();
    loop {
        let a = expert.act(env.scene());
        let r = env.step(&a).unwrap();
        if r.terminated || r.truncated {
            return (r.info.success, r.info.step, r.info.failure);
        }
    }
}

#[test]
fn every_expert_solves_its_task_on_random_layouts() {
    let seeds: u64 = std::env::var("MULLI_EXPERT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let only = std::env::var("MULLI_EXPERT_TASK").ok();
    let mut failures = Vec::new();
    for task in registry() {
        if only.as_deref().is_some_and(|o| o != task.id()) {
            continue;
        }
        let mut ok = 0;
        for seed in 0..seeds {
            let (success, steps, failure) = run(&task, 1000 + seed);
            if success {
                ok += 1;
            } else {
                failures.push(format!(
                    "{} seed {}: {:?} after {steps} steps",
                    task.id(),
                    1000 + seed,
                    failure
                ));
            }
        }
        eprintln!("{:40} {ok}/{seeds}", task.id());
    }
    assert!(
        failures.is_empty(),
        "expert failures:\n{}",
        failures.join("\n")
    );
}

#[test]
#[ignore]
fn trace_one_task() {
    let id = std::env::var("MULLI_EXPERT_TASK")
        .unwrap_or_else(|_| "put_ketchup_in_fridge_and_close_it".into());
    let seed: u64 = std::env::var("MULLI_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let task = mulli_sim::tasks::task(&id).unwrap();
    let config = EnvConfig {
        render: false,
        ..EnvConfig::default()
    };
    let mut env = KitchenEnv::new(config, task.clone(), seed, &task.canonical()).unwrap();
    let mut expert = task.expert();
    for i in 0.. {
        let a = expert.act(env.scene());
        let s = env.scene();
        if i % 10 == 0 {
            let t = s.tcp().translation;
            let k = s
                .object_pose(mulli_sim::ObjectKind::Ketchup)
                .unwrap()
                .translation;
            eprintln!(
                "{i:4} tcp ({:.3},{:.3},{:.3}) door {:.2} drawer {:.3} ketchup ({:.3},{:.3},{:.3}) w {:.3} grasp {} a {:?}",
                t.x,
                t.y,
                t.z,
                s.door_angle(),
                s.drawer_opening(),
                k.x,
                k.y,
                k.z,
                s.gripper_width(),
                s.is_grasped(mulli_sim::ObjectKind::Ketchup),
                a.map(|v| (v * 1000.0).round() / 1000.0)
            );
        }
        let r = env.step(&a).unwrap();
        if r.terminated || r.truncated {
            eprintln!(
                "end at {}: success {} {:?}",
                r.info.step, r.info.success, r.info.failure
            );
            break;
        }
    }
}

#[test]
#[ignore]
fn side_grasp_reachability() {
    use glam::{DAffine3, DMat3, DVec3};
    use mulli_sim::robot;
    let settings = robot::IkSettings {
        iterations: 300,
        ..Default::default()
    };
    eprintln!(
        "pitch home y {:?}",
        robot::forward(&robot::HOME).tcp.matrix3.y_axis
    );
    for pitch in [0.0f64, 0.3, 0.6] {
        for &(x, y, z) in &[
            (0.35, 0.0, 0.075),
            (0.45, -0.1, 0.075),
            (0.55, -0.2, 0.075),
            (0.65, 0.2, 0.075),
            (0.5, 0.4, 0.09),
            (0.45, 0.4, 0.09),
        ] {
            let home_y = robot::forward(&robot::HOME).tcp.matrix3.y_axis;
            let rot = mulli_sim::expert::side_near(DVec3::X, pitch, home_y);
            let target = DAffine3 {
                matrix3: DMat3::from_quat(rot),
                translation: DVec3::new(x, y, z),
            };
            let (q, err) = robot::inverse(&robot::HOME, &target, &settings);
            let r =
                robot::rotation_error(glam::DQuat::from_mat3(&robot::forward(&q).tcp.matrix3), rot)
                    .length();
            eprintln!(
                "pitch {pitch} ({x},{y},{z}) pos err {err:.4} rot err {r:.3} q {:?}",
                q.map(|v| (v * 100.0).round() / 100.0)
            );
        }
    }
}

#[test]
#[ignore]
fn ik_tracks_a_reorientation() {
    use glam::{DAffine3, DMat3, DQuat, DVec3};
    use mulli_sim::robot;
    let home = robot::forward(&robot::HOME).tcp;
    let r0 = DQuat::from_mat3(&home.matrix3);
    let p0 = home.translation;
    for pitch in [0.6, 0.7, 0.8, 0.9] {
        for p1 in [
            DVec3::new(0.575, 0.0, 0.22),
            DVec3::new(0.55, 0.1, 0.1),
            DVec3::new(0.4, 0.4, 0.1),
            DVec3::new(0.45, 0.4, 0.1),
            DVec3::new(0.5, -0.2, 0.1),
            DVec3::new(0.42, 0.0, 0.1),
        ] {
            let r1 = mulli_sim::expert::side_near(
                DVec3::new(p1.x, p1.y, 0.0),
                pitch,
                home.matrix3.y_axis,
            );
            let (qq, e) = robot::inverse(
                &robot::HOME,
                &DAffine3 {
                    matrix3: DMat3::from_quat(r1),
                    translation: p1,
                },
                &robot::IkSettings {
                    iterations: 500,
                    ..Default::default()
                },
            );
            let _ = (qq, e);
            let mut q = robot::HOME;
            for i in 1..=40 {
                let t = i as f64 / 40.0;
                let target = DAffine3 {
                    matrix3: DMat3::from_quat(r0.slerp(r1, t)),
                    translation: p0.lerp(p1, t),
                };
                let (q2, err) = robot::inverse(&q, &target, &robot::IkSettings::default());
                q = robot::limit_step(&q, &q2, 0.05);
                let f = robot::forward(&q).tcp;
                let rerr = robot::rotation_error(
                    DQuat::from_mat3(&f.matrix3),
                    DQuat::from_mat3(&target.matrix3),
                )
                .length();
                if i == 40 {
                    eprintln!(
                        "pitch {pitch} to {p1}: err {err:.4} pos {:.4} rot {rerr:.3} q {:?}",
                        (f.translation - target.translation).length(),
                        q.map(|v| (v * 100.0).round() / 100.0)
                    );
                }
            }
        }
    }
}
