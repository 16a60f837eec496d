//! `mulli bench ...`: speed measurements that print numbers and ratios (never assertions).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Subcommand;
use mulli_data::demo::DemoSpec;
use mulli_data::loader::TensorData;
use mulli_data::{Dataset, DeltaTimestamps, Loader, LoaderConfig, WriteMode, WriterOptions};
use rayon::prelude::*;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Training-loader throughput: shuffled batches with action chunks and all cameras.
    Loader {
        /// Dataset to load (e.g. the LeRobot fixture). Without it a demo dataset like the
        /// fixture (50 episodes × 100 frames, two 96×96 cameras) is written to a temp dir.
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Worker threads (default: all cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Action-chunk length (frames).
        #[arg(long, default_value_t = 10)]
        chunk: i64,
        /// Stop after this many batches (default: one epoch).
        #[arg(long)]
        batches: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A baseline in samples/s (e.g. LeRobot's on the same data) to print the ratio against.
        #[arg(long)]
        baseline: Option<f64>,
    },
    /// Dataset-writer throughput (frames/s, two 96×96 cameras, H.264 encoding included).
    Write {
        #[arg(long, default_value_t = 20)]
        episodes: usize,
        #[arg(long, default_value_t = 100)]
        frames: usize,
        /// Store cameras as PNG images instead of video.
        #[arg(long)]
        images: bool,
        #[arg(long)]
        baseline: Option<f64>,
    },
    /// Kitchen simulator throughput: env steps/s on one thread with and without both
    /// cameras, and across all threads with parallel environments.
    Sim {
        /// Control steps per measurement.
        #[arg(long, default_value_t = 2000)]
        steps: usize,
        #[arg(long, default_value_t = 96)]
        width: usize,
        #[arg(long, default_value_t = 96)]
        height: usize,
        /// A baseline in steps/s (e.g. a MuJoCo env rendering the same cameras) for the ratio.
        #[arg(long)]
        baseline: Option<f64>,
    },
    /// Training throughput of the default VLA (samples/s, with a forward/backward/optimizer
    /// split), on synthetic kitchen-shaped batches.
    Train {
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long, value_enum, default_value_t = HeadArg::L1)]
        head: HeadArg,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Model sizes as TOML (the `[model]` table of a training config) instead of the
        /// default VLA; `--head` still applies.
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// A baseline in samples/s (the PyTorch twin's) for the ratio.
        #[arg(long)]
        baseline: Option<f64>,
        /// Split each batch into this many micro-batches on threads of their own, as
        /// `mulli train` does (`micro_batches` in its config); 1 times forward and backward
        /// apart.
        #[arg(long, default_value_t = 1)]
        micro_batches: usize,
    },
    /// Batch-1 inference latency (p50/p99) of the default VLA.
    Infer {
        #[arg(long, default_value_t = 200)]
        calls: usize,
        #[arg(long, value_enum, default_value_t = HeadArg::L1)]
        head: HeadArg,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Model sizes as TOML instead of the default VLA (see `bench train --model`).
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// A baseline p50 in ms (the PyTorch twin's) for the ratio.
        #[arg(long)]
        baseline: Option<f64>,
    },
    /// Policy-server overhead: loopback openpi requests (2×96×96 cameras) with 1, 10, 100
    /// concurrent clients against in-process inference, on a cheap stand-in policy (protocol
    /// only) and optionally the default VLA or a trained run.
    Serve {
        /// Concurrent client counts to measure (repeatable).
        #[arg(long = "clients", default_values_t = [1, 10, 100])]
        clients: Vec<usize>,
        /// Requests per client.
        #[arg(long, default_value_t = 100)]
        requests: usize,
        /// Also serve the default VLA (untrained weights; real model cost).
        #[arg(long)]
        vla: bool,
        /// Also serve this trained run.
        #[arg(long)]
        policy: Option<PathBuf>,
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum HeadArg {
    L1,
    Flow,
}

impl From<HeadArg> for mulli_policy::Head {
    fn from(h: HeadArg) -> Self {
        match h {
            HeadArg::L1 => mulli_policy::Head::L1,
            HeadArg::Flow => mulli_policy::Head::Flow,
        }
    }
}

/// One line naming the machine a benchmark ran on: numbers from another CPU kind are not
/// comparable, and the SIMD level also decides which kernels `gemm` and burn-flex run (so
/// training runs on two kinds of machine differ in their last bits).
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| cpu_model(&info))
        .unwrap_or_else(|| "unknown CPU".into());
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {threads} hardware threads, SIMD {}", simd_level())
}

/// `model name` of the first processor in `/proc/cpuinfo`, with the x86 family and model
/// numbers that tell CPU generations of the same marketing name apart.
fn cpu_model(info: &str) -> Option<String> {
    let field = |key: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let name = field("model name")?;
    Some(match (field("cpu family"), field("model")) {
        (Some(family), Some(model)) => format!("{name} (family {family}, model {model})"),
        _ => name,
    })
}

fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "AVX2+FMA";
        }
        "SSE"
    }
    #[cfg(target_arch = "aarch64")]
    {
        "NEON"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

pub fn run(cmd: BenchCmd) -> Result<ExitCode> {
    println!("machine: {}", machine());
    match cmd {
        BenchCmd::Serve {
            clients,
            requests,
            vla,
            policy,
            device,
        } => crate::serve::bench(&clients, requests, vla, policy.as_deref(), &device),
        BenchCmd::Train {
            batch_size,
            steps,
            head,
            device,
            model,
            baseline,
            micro_batches,
        } => {
            let config = crate::bench_policy::config_for(head.into(), model.as_deref())?;
            crate::bench_policy::train(batch_size, steps, micro_batches, &config, &device, baseline)
        }
        BenchCmd::Infer {
            calls,
            head,
            device,
            model,
            baseline,
        } => {
            let config = crate::bench_policy::config_for(head.into(), model.as_deref())?;
            crate::bench_policy::infer(calls, &config, &device, baseline)
        }
        BenchCmd::Sim {
            steps,
            width,
            height,
            baseline,
        } => sim(steps, width, height, baseline),
        BenchCmd::Loader {
            data,
            batch_size,
            workers,
            chunk,
            batches,
            seed,
            baseline,
        } => loader(data, batch_size, workers, chunk, batches, seed, baseline),
        BenchCmd::Write {
            episodes,
            frames,
            images,
            baseline,
        } => write(episodes, frames, images, baseline),
    }
}

fn loader(
    data: Option<PathBuf>,
    batch_size: usize,
    workers: Option<usize>,
    chunk: i64,
    max_batches: Option<usize>,
    seed: u64,
    baseline: Option<f64>,
) -> Result<ExitCode> {
    let tmp;
    let root = match data {
        Some(d) => d,
        None => {
            tmp = tempdir()?;
            let spec = DemoSpec::default();
            eprintln!(
                "writing a demo dataset (50 × 100 frames, two 96×96 H.264 cameras) to {}",
                tmp.display()
            );
            spec.write(
                &tmp,
                WriterOptions {
                    mode: WriteMode::Overwrite,
                    ..Default::default()
                },
                &mut |_, _| {},
            )?;
            tmp.clone()
        }
    };
    let t_open = Instant::now();
    let ds = Arc::new(Dataset::open(&root).with_context(|| format!("opening {}", root.display()))?);
    let open_s = t_open.elapsed().as_secs_f64();
    let fps = ds.fps();
    anyhow::ensure!(
        ds.feature("action").is_some(),
        "{} has no `action` feature to chunk",
        root.display()
    );
    let workers = workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let cfg = LoaderConfig {
        batch_size,
        seed,
        num_workers: workers,
        delta_timestamps: DeltaTimestamps::default().frames("action", 0..chunk, fps),
        ..Default::default()
    };
    let loader = Loader::new(ds.clone(), cfg)?;
    let n = max_batches
        .unwrap_or(loader.num_batches())
        .min(loader.num_batches());
    let cams = ds.info.video_keys().len() + ds.info.image_keys().len();
    println!(
        "dataset     {} ({} frames, {} cameras, fps {fps}), opened in {open_s:.3} s",
        root.display(),
        ds.len(),
        cams
    );
    println!(
        "config      batch {batch_size}, {workers} workers, action chunk {chunk}, {n} batches"
    );
    let t = Instant::now();
    let mut first = None;
    let (mut samples, mut checksum) = (0usize, 0u64);
    for (i, b) in loader.epoch(0).take(n).enumerate() {
        let b = b?;
        if i == 0 {
            first = Some(t.elapsed().as_secs_f64());
        }
        samples += b.rows.len();
        // Touch the data so nothing is optimised away, and so runs can be compared.
        for tensor in b.tensors.values() {
            if let TensorData::U8(v) = &tensor.data {
                checksum =
                    checksum.wrapping_add(v.iter().step_by(97).map(|&x| u64::from(x)).sum::<u64>());
            }
        }
    }
    let s = t.elapsed().as_secs_f64();
    let sps = samples as f64 / s;
    println!("first batch {:.3} s", first.unwrap_or(0.0));
    println!(
        "throughput  {sps:.0} samples/s, {:.1} batches/s, {:.0} camera frames/s ({samples} samples in {s:.2} s)",
        n as f64 / s,
        sps * cams as f64
    );
    println!(
        "peak memory {} MiB (VmHWM), checksum {checksum}",
        peak_rss_mib()
    );
    if let Some(b) = baseline {
        println!("vs baseline {b:.0} samples/s: {:.1}×", sps / b);
    }
    Ok(ExitCode::SUCCESS)
}

fn write(episodes: usize, frames: usize, images: bool, baseline: Option<f64>) -> Result<ExitCode> {
    let dir = tempdir()?;
    let spec = DemoSpec {
        episodes,
        frames_per_episode: frames,
        video: !images,
        ..Default::default()
    };
    // Pre-render frames so only the writer is measured.
    let mut walk = vec![0f32; spec.state_dim + spec.action_dim];
    let rendered: Vec<_> = (0..frames).map(|k| spec.frame(0, k, &mut walk)).collect();
    let t = Instant::now();
    let mut w = mulli_data::DatasetWriter::create(
        &dir,
        &spec.features(),
        WriterOptions {
            fps: spec.fps,
            mode: WriteMode::Overwrite,
            ..Default::default()
        },
    )?;
    for _ in 0..episodes {
        for f in &rendered {
            w.add_frame(f)?;
        }
        w.save_episode()?;
    }
    w.finalize()?;
    let s = t.elapsed().as_secs_f64();
    let fps = (episodes * frames) as f64 / s;
    println!(
        "wrote {episodes} × {frames} frames ({}) in {s:.2} s: {fps:.0} frames/s",
        if images { "PNG images" } else { "H.264 video" }
    );
    if let Some(b) = baseline {
        println!("vs baseline {b:.0} frames/s: {:.1}×", fps / b);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}

/// Step the pick-up-apple task with its expert (episodes restart when they end) and return
/// steps/s. Resets are timed too: they are part of any real workload.
fn sim_rate(steps: usize, config: &mulli_sim::EnvConfig, seed: u64) -> Result<f64> {
    let task = mulli_sim::tasks::task("put_apple_in_basket")?;
    let mut env =
        mulli_sim::KitchenEnv::new(config.clone(), task.clone(), seed, &task.canonical())?;
    let mut expert = task.expert();
    let mut episode = 0;
    let start = Instant::now();
    for _ in 0..steps {
        let a = expert.act(env.scene());
        let r = env.step(&a)?;
        std::hint::black_box(&r.observation);
        if r.terminated || r.truncated {
            episode += 1;
            env.reset_with(seed + episode, task.clone(), &task.canonical())?;
            expert = task.expert();
        }
    }
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

fn sim(steps: usize, width: usize, height: usize, baseline: Option<f64>) -> Result<ExitCode> {
    anyhow::ensure!(steps > 0, "--steps must be at least 1");
    let mut config = mulli_sim::EnvConfig::default();
    config.cameras.width = width;
    config.cameras.height = height;
    let blind = mulli_sim::EnvConfig {
        render: false,
        ..config.clone()
    };
    // One thread: the per-core figure.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    // Three interleaved runs each, reporting the median: this VM's speed drifts by ±25 %.
    let (no_render, render) = pool.install(|| -> Result<(f64, f64)> {
        sim_rate(steps / 10, &config, 1)?; // warm-up
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            a.push(sim_rate(steps, &blind, 2)?);
            b.push(sim_rate(steps, &config, 3)?);
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Ok((median(a), median(b)))
    })?;
    println!(
        "kitchen env, put_apple_in_basket expert, {} Hz control, {width}x{height} cameras",
        config.control_hz
    );
    println!("  1 thread, physics only        : {no_render:>8.0} steps/s (median of 3)");
    println!("  1 thread, physics + 2 cameras : {render:>8.0} steps/s (median of 3)");
    let threads = rayon::current_num_threads();
    let start = Instant::now();
    let per = (steps / threads).max(1);
    let total: usize = (0..threads)
        .into_par_iter()
        .map(|t| sim_rate(per, &config, 10 + t as u64).map(|_| per))
        .sum::<Result<usize>>()?;
    let all = total as f64 / start.elapsed().as_secs_f64();
    println!("  {threads} threads, physics + 2 cameras: {all:>8.0} steps/s");
    if let Some(b) = baseline {
        println!(
            "  vs baseline {b:.0} steps/s      : {:.1}x (1 thread, with cameras)",
            render / b
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn tempdir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("mulli-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_names_the_generation() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n\
                    model name\t: AMD EPYC\nstepping\t: 1\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(
            cpu_model(info).as_deref(),
            Some("AMD EPYC (family 25, model 1)")
        );
        // Without family and model (e.g. some ARM kernels) the name alone; none at all: None.
        assert_eq!(cpu_model("model name : X\n").as_deref(), Some("X"));
        assert_eq!(cpu_model("Hardware : foo\n"), None);
        assert!(machine().contains("hardware threads, SIMD "));
    }
}
