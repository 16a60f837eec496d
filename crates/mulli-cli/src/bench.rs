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
}

pub fn run(cmd: BenchCmd) -> Result<ExitCode> {
    match cmd {
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
