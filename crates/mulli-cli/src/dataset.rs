//! `mulli dataset ...`: info, validate, stats, merge, split, convert, recover, demo.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use mulli_data::demo::DemoSpec;
use mulli_data::{Dataset, WriteMode, WriterOptions, ops, validate};

use crate::progress;

#[derive(Subcommand)]
pub enum DatasetCmd {
    /// Summary of a dataset: version, fps, features, episodes, tasks, files.
    Info {
        dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check schema, index continuity, timestamps vs fps, video frame counts and statistics;
    /// print every problem with its file and row. Exits 1 if any problem is found.
    Validate { dir: PathBuf },
    /// Print dataset statistics (meta/stats.json), or recompute them from the data.
    Stats {
        dir: PathBuf,
        /// Only this feature.
        #[arg(long)]
        feature: Option<String>,
    },
    /// Merge datasets with the same fps and features into one v3.0 dataset.
    Merge {
        #[arg(required = true, num_args = 1..)]
        inputs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Replace `--out` if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Split a dataset by episodes into several datasets under `--out-dir`.
    Split {
        dir: PathBuf,
        #[arg(long)]
        out_dir: PathBuf,
        /// `train=0.8,val=0.2` (fractions, shuffled by --seed) or `train=0:40,val=40:50`.
        #[arg(long, default_value = "train=0.9,val=0.1")]
        splits: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        force: bool,
    },
    /// Convert a dataset (v2.1 or v3.0, AV1 or H.264 video) into a mulli v3.0 dataset.
    Convert {
        dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Export camera frames as PNG files (`<out>/<camera>/<row>.png`), decoded the way the
    /// loader decodes them.
    Frames {
        dir: PathBuf,
        /// Rows (global frame indices), e.g. `0,5,17`.
        #[arg(long, value_delimiter = ',', required = true)]
        rows: Vec<usize>,
        #[arg(long)]
        out: PathBuf,
        /// Overwrite PNGs already in --out.
        #[arg(long)]
        force: bool,
    },
    /// Make a dataset left by an interrupted recording consistent again (keeps every
    /// episode that was saved).
    Recover { dir: PathBuf },
    /// Write a synthetic demo dataset (moving gradients, random-walk state/action).
    Demo {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 50)]
        episodes: usize,
        #[arg(long, default_value_t = 100)]
        frames: usize,
        #[arg(long, default_value_t = 10)]
        fps: u32,
        #[arg(long, default_value_t = 96)]
        size: usize,
        /// Store cameras as PNG images in parquet instead of MP4 video.
        #[arg(long)]
        images: bool,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        force: bool,
    },
}

fn mode(force: bool) -> WriteMode {
    if force {
        WriteMode::Overwrite
    } else {
        WriteMode::Create
    }
}

fn open(dir: &Path) -> Result<Dataset> {
    Dataset::open(dir).with_context(|| format!("cannot open dataset {}", dir.display()))
}

pub fn run(cmd: DatasetCmd) -> Result<ExitCode> {
    match cmd {
        DatasetCmd::Info { dir, json } => info(&dir, json),
        DatasetCmd::Validate { dir } => {
            let ds = open(&dir)?;
            let pb = progress::bar(ds.episodes.len(), "validating");
            let problems = validate::validate(&ds, &mut progress::callback(&pb))?;
            pb.finish_and_clear();
            if problems.is_empty() {
                println!(
                    "{}: ok ({} episodes, {} frames)",
                    dir.display(),
                    ds.episodes.len(),
                    ds.len()
                );
                return Ok(ExitCode::SUCCESS);
            }
            for p in &problems {
                println!("{p}");
            }
            println!("{} problem(s) found in {}", problems.len(), dir.display());
            Ok(ExitCode::from(1))
        }
        DatasetCmd::Stats { dir, feature } => {
            let ds = open(&dir)?;
            let mut out = serde_json::Map::new();
            for (k, s) in &ds.stats {
                if feature.as_ref().is_none_or(|f| f == k) {
                    out.insert(k.clone(), s.to_json());
                }
            }
            if let Some(f) = &feature {
                anyhow::ensure!(
                    !out.is_empty(),
                    "no statistics for feature `{f}` (features with stats: {})",
                    ds.stats.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        DatasetCmd::Merge { inputs, out, force } => {
            let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
            let pb = progress::bar(0, "merging");
            let n = ops::merge(&refs, &out, mode(force), &mut progress::callback(&pb))
                .with_context(|| format!("merging into {}", out.display()))?;
            pb.finish_and_clear();
            println!("wrote {} episodes to {}", n, out.display());
            Ok(ExitCode::SUCCESS)
        }
        DatasetCmd::Split {
            dir,
            out_dir,
            splits,
            seed,
            force,
        } => {
            let ds = open(&dir)?;
            let plan = ops::plan_split(&splits, ds.episodes.len(), seed)?;
            for (name, eps) in plan {
                let out = out_dir.join(&name);
                let pb = progress::bar(eps.len(), &name);
                let n = ops::subset(&ds, &eps, &out, mode(force), &mut progress::callback(&pb))
                    .with_context(|| format!("writing split `{name}` to {}", out.display()))?;
                pb.finish_and_clear();
                println!("{name}: {n} episodes → {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        DatasetCmd::Convert { dir, out, force } => {
            let pb = progress::bar(0, "converting");
            let n = ops::convert(&dir, &out, mode(force), &mut progress::callback(&pb))
                .with_context(|| format!("converting {} into {}", dir.display(), out.display()))?;
            pb.finish_and_clear();
            println!(
                "converted {n} episodes → {} (LeRobot v3.0, H.264)",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DatasetCmd::Frames {
            dir,
            rows,
            out,
            force,
        } => {
            let ds = open(&dir)?;
            let mut cache = mulli_data::loader::DecoderCache::new(4);
            let cams: Vec<String> = ds
                .info
                .video_keys()
                .into_iter()
                .chain(ds.info.image_keys())
                .collect();
            anyhow::ensure!(!cams.is_empty(), "{} has no camera features", dir.display());
            for cam in &cams {
                let (h, w, c) = ds.info.features[cam].image_hwc()?;
                let mut buf = vec![0u8; h * w * c];
                let cam_dir = out.join(cam);
                std::fs::create_dir_all(&cam_dir)
                    .with_context(|| format!("creating {}", cam_dir.display()))?;
                for &row in &rows {
                    anyhow::ensure!(
                        row < ds.len(),
                        "row {row} is out of range: {} has {} frames",
                        dir.display(),
                        ds.len()
                    );
                    if ds.info.features[cam].dtype == mulli_core::DType::Video {
                        match ds.video_location(cam, row)? {
                            Some((path, t)) => {
                                ds.read_video_frame(cache.get(&path)?, t, &mut buf)?
                            }
                            None => buf.fill(0),
                        }
                    } else {
                        ds.read_image(cam, row, &mut buf)?;
                    }
                    let png = mulli_data::encode_png(&buf, w as u32, h as u32, c)?;
                    let p = cam_dir.join(format!("{row}.png"));
                    crate::files::write_new(&p, &png, force)?;
                }
            }
            println!(
                "wrote {} frames of {} camera(s) under {}",
                rows.len(),
                cams.len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DatasetCmd::Recover { dir } => {
            let n = mulli_data::writer::recover(&dir)
                .with_context(|| format!("recovering {}", dir.display()))?;
            println!("{}: consistent, {n} episodes", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        DatasetCmd::Demo {
            out,
            episodes,
            frames,
            fps,
            size,
            images,
            seed,
            force,
        } => {
            anyhow::ensure!(
                episodes > 0 && frames > 0,
                "--episodes and --frames must be > 0"
            );
            anyhow::ensure!(
                size >= 16 && size % 2 == 0 && size <= 2048,
                "--size must be an even number in 16..=2048, got {size}"
            );
            let spec = DemoSpec {
                episodes,
                frames_per_episode: frames,
                fps,
                height: size,
                width: size,
                video: !images,
                seed,
                ..Default::default()
            };
            let pb = progress::bar(episodes, "writing");
            let t = std::time::Instant::now();
            spec.write(
                &out,
                WriterOptions {
                    mode: mode(force),
                    ..Default::default()
                },
                &mut progress::callback(&pb),
            )
            .with_context(|| format!("writing {}", out.display()))?;
            pb.finish_and_clear();
            let s = t.elapsed().as_secs_f64();
            println!(
                "wrote {} episodes × {} frames to {} in {s:.1} s ({:.0} frames/s)",
                episodes,
                frames,
                out.display(),
                (episodes * frames) as f64 / s
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn info(dir: &Path, json: bool) -> Result<ExitCode> {
    let ds = open(dir)?;
    let i = &ds.info;
    if json {
        let v = serde_json::json!({
            "root": dir,
            "info": i.to_json(),
            "tasks": ds.tasks,
            "episodes": ds.episodes.len(),
            "frames": ds.len(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let version = match i.version {
        mulli_data::Version::V30 => "v3.0",
        mulli_data::Version::V21 => "v2.1",
    };
    println!("{}", dir.display());
    println!(
        "  format     LeRobot {version}, {} fps, robot_type {}",
        i.fps,
        i.robot_type.as_deref().unwrap_or("-")
    );
    let secs = ds.len() as f64 / f64::from(i.fps);
    println!(
        "  episodes   {} ({} frames, {:.1} min)",
        ds.episodes.len(),
        ds.len(),
        secs / 60.0
    );
    println!("  tasks      {}", ds.tasks.len());
    for (n, t) in ds.tasks.iter().enumerate().take(10) {
        println!("             [{n}] {t}");
    }
    if ds.tasks.len() > 10 {
        println!("             … {} more", ds.tasks.len() - 10);
    }
    println!("  features");
    for f in i.features.values() {
        let codec = f
            .info
            .as_ref()
            .and_then(|v| v.get("video.codec"))
            .and_then(|v| v.as_str())
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        println!(
            "    {:<32} {:<8} {:?}{codec}",
            f.name,
            f.dtype.as_str(),
            f.shape
        );
    }
    let mut files: Vec<&PathBuf> = ds.episodes.iter().map(|e| &e.data_path).collect();
    files.dedup();
    println!("  data files {}", files.len());
    Ok(ExitCode::SUCCESS)
}
