//! `mulli sim ...`: the kitchen world — list tasks, render cameras, measure the scripted
//! experts, record demonstration datasets.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Subcommand;
use mulli_data::WriteMode;
use mulli_sim::record::{RecordOptions, rollout};
use mulli_sim::{EnvConfig, KitchenEnv, Split, Suite, VisualVariation};
use rayon::prelude::*;

#[derive(clap::Args, Clone)]
pub struct CameraArgs {
    /// Camera image width (pixels).
    #[arg(long, default_value_t = 96)]
    width: usize,
    /// Camera image height (pixels).
    #[arg(long, default_value_t = 96)]
    height: usize,
}

impl CameraArgs {
    fn config(&self) -> EnvConfig {
        let mut c = EnvConfig::default();
        c.cameras.width = self.width;
        c.cameras.height = self.height;
        c
    }
}

#[derive(Subcommand)]
pub enum SimCmd {
    /// List the tasks of a suite with their instructions (English and Korean).
    Tasks {
        #[arg(long, default_value = "kitchen-v1")]
        suite: String,
    },
    /// Save both cameras (RGB and depth) as PNG for a task and seed, at the start and
    /// optionally after the scripted expert has run for some steps.
    Render {
        #[arg(long, default_value = "put_ketchup_in_fridge_and_close_it")]
        task: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also render after this many expert steps.
        #[arg(long)]
        steps: Vec<usize>,
        /// Strong visual randomization (colours, textures, lighting).
        #[arg(long)]
        strong_visuals: bool,
        #[arg(long)]
        out: PathBuf,
        /// Overwrite PNGs already in --out.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        camera: CameraArgs,
    },
    /// Success rate of the scripted experts per task over many random layouts.
    Experts {
        #[arg(long, default_value = "kitchen-v1")]
        suite: String,
        /// Seeds (layouts) per task.
        #[arg(long, default_value_t = 200)]
        seeds: u64,
        /// Expert action noise (m per step).
        #[arg(long, default_value_t = 0.0)]
        noise: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Drive the arm from the keyboard (both cameras drawn in the terminal) and record the
    /// episodes you keep.
    Teleop(crate::teleop::TeleopArgs),
    /// Record scripted demonstrations as a LeRobot v3 dataset.
    Record {
        #[arg(long, default_value = "kitchen-v1")]
        suite: String,
        /// Only these tasks (comma-separated ids; see `mulli sim tasks`).
        #[arg(long, value_delimiter = ',')]
        tasks: Vec<String>,
        #[arg(long, default_value_t = 20)]
        episodes: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Human-like expert noise (m per step; 0 for clean demos).
        #[arg(long, default_value_t = 0.002)]
        noise: f64,
        /// Keep episodes where the expert failed (marked by `next.success`).
        #[arg(long)]
        keep_failures: bool,
        /// DART: execute the noisy action but record the expert's own, so the demos show
        /// the way back from where the noise pushed the arm (use a larger --noise, e.g.
        /// 0.006).
        #[arg(long)]
        dart: bool,
        /// Probability per episode that the object slips 5–7 cm away as the hand first
        /// closes on it, so the demo shows the expert's second grasp (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        slip: f64,
        /// Probability per episode that it starts from a missed grasp: unrecorded, the
        /// hand goes down beside the object, closes on nothing and lifts; the demo is the
        /// expert opening the hand and grasping again (0 to 1; grasping tasks only).
        #[arg(long, default_value_t = 0.0)]
        recover: f64,
        /// Probability per episode that it starts off centre: unrecorded, the open hand
        /// goes down beside the object; the demo is the expert rising, re-centring and
        /// grasping (0 to 1, with --recover at most 1; grasping tasks only).
        #[arg(long, default_value_t = 0.0)]
        off_centre: f64,
        /// Probability per episode that it starts from a wandering hand: unrecorded, the
        /// open hand goes 3–20 cm beside the object and 5–30 cm above it; the demo is the
        /// expert's way to the object from there (0 to 1, with --recover and --off-centre at
        /// most 1; grasping tasks only).
        #[arg(long, default_value_t = 0.0)]
        wander: f64,
        /// Which layouts, phrasings and scene variations: train (default; EN + KO training
        /// phrasings), or an evaluation split (seen_layouts, held_out_layouts,
        /// held_out_phrasings, korean, distractors, visual_changes).
        #[arg(long, default_value = "train")]
        split: String,
        /// Replace what is in --out.
        #[arg(long, conflicts_with = "append")]
        force: bool,
        /// Add episodes to the dataset in --out.
        #[arg(long)]
        append: bool,
        /// Keep recording this many steps after the task first succeeds (the expert
        /// moving away from a placed object); 0 ends each demo at its first success.
        #[arg(long, default_value_t = 0)]
        success_tail: usize,
        #[command(flatten)]
        camera: CameraArgs,
    },
}

pub fn run(cmd: SimCmd) -> Result<ExitCode> {
    match cmd {
        SimCmd::Tasks { suite } => tasks(&suite),
        SimCmd::Teleop(args) => crate::teleop::run(args),
        SimCmd::Render {
            task,
            seed,
            steps,
            strong_visuals,
            out,
            force,
            camera,
        } => render(&task, seed, &steps, strong_visuals, &out, force, &camera),
        SimCmd::Experts {
            suite,
            seeds,
            noise,
            seed,
        } => experts(&suite, seeds, noise, seed),
        SimCmd::Record {
            suite,
            tasks,
            episodes,
            out,
            seed,
            noise,
            keep_failures,
            dart,
            slip,
            recover,
            off_centre,
            wander,
            split,
            force,
            append,
            success_tail,
            camera,
        } => {
            let mode = crate::files::write_mode(force, append);
            let opts = RecordOptions {
                suite,
                tasks,
                episodes,
                seed,
                noise,
                keep_failures,
                dart,
                slip,
                recover,
                off_centre,
                wander,
                split: Split::from_id(&split)?,
                env: EnvConfig {
                    success_tail,
                    ..camera.config()
                },
            };
            record(&out, &opts, mode)
        }
    }
}

fn tasks(suite: &str) -> Result<ExitCode> {
    let suite = Suite::named(suite)?;
    for t in &suite.tasks {
        let p = t.phrasings();
        println!("{}", t.id());
        println!("  en (train):    {}", p.en_train.join(" | "));
        println!("  en (held out): {}", p.en_held_out.join(" | "));
        println!("  ko (train):    {}", p.ko_train.join(" | "));
        println!("  ko (held out): {}", p.ko_held_out.join(" | "));
    }
    Ok(ExitCode::SUCCESS)
}

fn save_png(
    path: &Path,
    rgb: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    force: bool,
) -> Result<()> {
    let bytes = mulli_data::encode_png(rgb, width as u32, height as u32, channels)?;
    crate::files::write_new(path, &bytes, force)
}

fn depth_gray(depth: &[f32], max: f32) -> Vec<u8> {
    depth
        .iter()
        .map(|&d| (255.0 * (1.0 - (d / max).clamp(0.0, 1.0))) as u8)
        .collect()
}

fn render(
    task: &str,
    seed: u64,
    steps: &[usize],
    strong: bool,
    out: &Path,
    force: bool,
    camera: &CameraArgs,
) -> Result<ExitCode> {
    let t = mulli_sim::tasks::task(task)?;
    let mut config = camera.config();
    if strong {
        config.layout.visual = VisualVariation::Strong;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut env = KitchenEnv::new(config, t.clone(), seed, &t.canonical())?;
    let mut expert = t.expert();
    let mut shots = steps.to_vec();
    shots.push(0);
    shots.sort_unstable();
    shots.dedup();
    let mut written = Vec::new();
    for &shot in &shots {
        while env.steps() < shot {
            let a = expert.act(env.scene());
            let r = env.step(&a)?;
            if r.terminated || r.truncated {
                break;
            }
        }
        let obs = env.observe();
        for (name, img) in &obs.images {
            let base = out.join(format!("{task}_seed{seed}_step{:03}_{name}", env.steps()));
            let rgb = base.with_extension("png");
            save_png(&rgb, &img.rgb, img.width, img.height, 3, force)?;
            written.push(rgb);
            if let Some(d) = &img.depth {
                let path = PathBuf::from(format!("{}_depth.png", base.display()));
                save_png(&path, &depth_gray(d, 2.0), img.width, img.height, 1, force)?;
                written.push(path);
            }
        }
    }
    for p in written {
        println!("{}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn experts(suite: &str, seeds: u64, noise: f64, seed: u64) -> Result<ExitCode> {
    let suite = Suite::named(suite)?;
    anyhow::ensure!(seeds > 0, "--seeds must be at least 1");
    let config = EnvConfig {
        render: false,
        ..EnvConfig::default()
    };
    let total = suite.tasks.len() as u64 * seeds;
    let pb = crate::progress::bar(total as usize, "rollouts");
    let start = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    println!("| task | success | 95% CI | mean steps | failures |");
    println!("|---|---|---|---|---|");
    let mut all_ok = 0;
    for task in &suite.tasks {
        let results: Vec<_> = (0..seeds)
            .into_par_iter()
            .map(|i| {
                // Layout seeds from the suite's training pool, one per index.
                let spec = mulli_sim::tasks::EpisodeSpec {
                    task: task.clone(),
                    seed: mulli_core::rng::derive_seed(seed, task.id(), i),
                    instruction: task.canonical(),
                    layout: config.layout,
                    split: Split::Train,
                };
                let r = rollout(&spec, i, &config, noise, false);
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                pb.set_position(n as u64);
                r
            })
            .collect::<Result<_, _>>()?;
        let ok = results.iter().filter(|r| r.success).count();
        all_ok += ok;
        let steps: f64 = results.iter().map(|r| r.steps as f64).sum::<f64>() / results.len() as f64;
        let mut reasons = std::collections::BTreeMap::<&str, usize>::new();
        for r in results.iter().filter(|r| !r.success) {
            *reasons
                .entry(r.failure.map_or("unknown", |f| f.as_str()))
                .or_default() += 1;
        }
        let (lo, hi) = mulli_eval::wilson(ok, results.len());
        let reasons = reasons
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        pb.suspend(|| {
            println!(
                "| {} | {ok}/{} ({:.1}%) | {:.1}–{:.1}% | {steps:.0} | {} |",
                task.id(),
                results.len(),
                100.0 * ok as f64 / results.len() as f64,
                100.0 * lo,
                100.0 * hi,
                if reasons.is_empty() { "–" } else { &reasons }
            )
        });
    }
    pb.finish_and_clear();
    println!(
        "\nall tasks: {all_ok}/{total} ({:.1}%), noise {noise}, {:.1} s on {} threads",
        100.0 * all_ok as f64 / total as f64,
        start.elapsed().as_secs_f64(),
        rayon::current_num_threads()
    );
    Ok(ExitCode::SUCCESS)
}

fn record(out: &Path, opts: &RecordOptions, mode: WriteMode) -> Result<ExitCode> {
    let pb = crate::progress::bar(opts.episodes, "episodes");
    let start = Instant::now();
    let report = mulli_sim::record::record(out, opts, mode, crate::progress::callback(&pb))
        .with_context(|| {
            format!(
                "recording {} episodes of {} to {}",
                opts.episodes,
                opts.suite,
                out.display()
            )
        })?;
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "wrote {} episodes ({} frames) to {} in {secs:.1} s ({:.0} frames/s); expert attempts: {}",
        report.episodes,
        report.frames,
        out.display(),
        report.frames as f64 / secs,
        report.attempts
    );
    if report.slipped > 0 {
        println!(
            "{} episodes with a slipped first grasp (--slip)",
            report.slipped
        );
    }
    if report.recovered > 0 {
        println!(
            "{} episodes start from a missed grasp, off centre or a wandering hand (--recover, --off-centre, --wander)",
            report.recovered
        );
    }
    for (task, t) in &report.per_task {
        let failures = t
            .failures
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "  {task:40} {}/{} succeeded{}",
            t.successes,
            t.attempts,
            if failures.is_empty() {
                String::new()
            } else {
                format!(" ({failures})")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
