//! Synthetic demo datasets: deterministic, camera-like content (moving gradients and a blob,
//! which compress like real frames) with random-walk state and action. Used by tests,
//! benchmarks and `mulli dataset demo`; it mirrors the content of the LeRobot fixtures so
//! speeds are comparable.

use std::path::Path;

use mulli_core::rng::{self, RngCore};
use mulli_core::{FeatureSpec, Features, Frame, Value};

use crate::error::Result;
use crate::writer::{DatasetWriter, WriterOptions};

#[derive(Debug, Clone)]
pub struct DemoSpec {
    pub episodes: usize,
    pub frames_per_episode: usize,
    pub fps: u32,
    pub height: usize,
    pub width: usize,
    /// Camera names; each becomes `observation.images.<name>`.
    pub cameras: Vec<String>,
    /// Store cameras as MP4 video (true) or PNG images in parquet (false).
    pub video: bool,
    pub state_dim: usize,
    pub action_dim: usize,
    pub seed: u64,
    /// Also write `observation.environment_state`: the first camera's blob centre
    /// (`blob.x`, `blob.y`, in [0, 1] of the image's width and height) and a constant
    /// `blob.qw`, a stand-in for a simulator's object poses.
    pub environment_state: bool,
    /// With `environment_state`: also the blob's image position in each camera,
    /// `blob.<camera>.u|v` in [-1, 1] (the simulator's pixel labels).
    pub pixel_labels: bool,
}

impl Default for DemoSpec {
    fn default() -> Self {
        DemoSpec {
            episodes: 50,
            frames_per_episode: 100,
            fps: 10,
            height: 96,
            width: 96,
            cameras: vec!["front".into(), "wrist".into()],
            video: true,
            state_dim: 8,
            action_dim: 7,
            seed: 0,
            environment_state: false,
            pixel_labels: false,
        }
    }
}

const TASKS: [&str; 3] = [
    "pick up the cube and place it",
    "put the ketchup in the fridge",
    "케첩을 냉장고에 넣어줘",
];

impl DemoSpec {
    pub fn features(&self) -> Features {
        let mut f = Features::new();
        let names = |p: &str, n: usize| (0..n).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
        let s = names("s", self.state_dim);
        let a = names("a", self.action_dim);
        let state = FeatureSpec::vector(
            "observation.state",
            &s.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let action =
            FeatureSpec::vector("action", &a.iter().map(String::as_str).collect::<Vec<_>>());
        f.insert(state.name.clone(), state);
        f.insert(action.name.clone(), action);
        if self.environment_state {
            let mut names = vec!["blob.x".to_string(), "blob.y".into(), "blob.qw".into()];
            if self.pixel_labels {
                for cam in &self.cameras {
                    names.extend(["u", "v"].map(|a| format!("blob.{cam}.{a}")));
                }
            }
            let env = FeatureSpec::vector(
                "observation.environment_state",
                &names.iter().map(String::as_str).collect::<Vec<_>>(),
            );
            f.insert(env.name.clone(), env);
        }
        for c in &self.cameras {
            let cam = FeatureSpec::camera(
                format!("observation.images.{c}"),
                self.height,
                self.width,
                self.video,
            );
            f.insert(cam.name.clone(), cam);
        }
        f
    }

    /// Frame `k` of episode `ep`, deterministic in (seed, ep, k).
    pub fn frame(&self, ep: usize, k: usize, walk: &mut [f32]) -> Frame {
        let task = TASKS[ep % TASKS.len()];
        let mut r = rng::substream(self.seed, "demo-frame", (ep * 1_000_003 + k) as u64);
        for w in walk.iter_mut() {
            *w = (*w * 0.95 + ((r.next_u32() % 2001) as f32 / 1000.0 - 1.0) * 0.1).clamp(-2.0, 2.0);
        }
        let mut f = Frame::new(task)
            .with(
                "observation.state",
                Value::F32(walk[..self.state_dim].to_vec()),
            )
            .with(
                "action",
                Value::F32(walk[self.state_dim..self.state_dim + self.action_dim].to_vec()),
            );
        if self.environment_state {
            let (bx, by) = self.blob(ep, k, 0);
            let mut env = vec![bx, by, 1.0];
            if self.pixel_labels {
                for ci in 0..self.cameras.len() {
                    let (u, v) = self.blob(ep, k, ci);
                    env.extend([2.0 * u - 1.0, 2.0 * v - 1.0]);
                }
            }
            f = f.with("observation.environment_state", Value::F32(env));
        }
        for (ci, c) in self.cameras.iter().enumerate() {
            f = f.with(
                format!("observation.images.{c}"),
                Value::U8(self.image(ep, k, ci)),
            );
        }
        f
    }

    /// Centre of camera `cam`'s blob in frame `k` of episode `ep`, as fractions of the image's
    /// width and height.
    pub fn blob(&self, ep: usize, k: usize, cam: usize) -> (f32, f32) {
        let t = k as f32 * 0.15 + ep as f32 * 0.7 + cam as f32 * 1.3;
        (t.sin() * 0.35 + 0.5, (t * 0.7).cos() * 0.35 + 0.5)
    }

    /// A smooth moving gradient with a bright blob, HWC RGB.
    pub fn image(&self, ep: usize, k: usize, cam: usize) -> Vec<u8> {
        let (h, w) = (self.height, self.width);
        let mut px = vec![0u8; h * w * 3];
        let (bx, by) = self.blob(ep, k, cam);
        let (bx, by) = (bx * w as f32, by * h as f32);
        let rad2 = (w.min(h) as f32 * 0.12).powi(2);
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                let g = ((x + k * 2 + cam * 17) % (2 * w)) as f32 / (2 * w) as f32;
                let d2 = (x as f32 - bx).powi(2) + (y as f32 - by).powi(2);
                let blob = if d2 < rad2 { 1.0 } else { 0.0 };
                px[i] = (30.0 + 200.0 * g) as u8;
                px[i + 1] = (30.0 + 200.0 * (y as f32 / h as f32)) as u8;
                px[i + 2] = (60.0 + 120.0 * blob + 20.0 * g) as u8;
            }
        }
        px
    }

    /// Write the whole dataset to `root` with `opts` (fps is taken from the spec).
    pub fn write(
        &self,
        root: &Path,
        mut opts: WriterOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<()> {
        opts.fps = self.fps;
        let mut w = DatasetWriter::create(root, &self.features(), opts)?;
        for ep in 0..self.episodes {
            let mut walk = vec![0f32; self.state_dim + self.action_dim];
            for k in 0..self.frames_per_episode {
                w.add_frame(&self.frame(ep, k, &mut walk))?;
            }
            w.save_episode()?;
            progress(ep + 1, self.episodes);
        }
        w.finalize()?;
        Ok(())
    }
}
