//! What a policy sees at one control step: camera images, proprioceptive state, the
//! instruction and, where known, the privileged scene state. Simulators produce it, robots send it over the wire, policies consume it.

use std::collections::BTreeMap;

/// One camera image: RGB8 in HWC order, with optional metric depth (metres, row-major).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CameraImage {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
    pub depth: Option<Vec<f32>>,
}

/// A policy's input at one step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// Camera name (e.g. `agentview`, `wrist`) → image.
    pub images: BTreeMap<String, CameraImage>,
    /// Proprioceptive state, in the embodiment's `state_names` order.
    pub state: Vec<f32>,
    /// The instruction being carried out, in any language.
    pub instruction: String,
    /// Privileged scene state (LeRobot's `observation.environment_state`: object poses,
    /// articulations) where the source has it — a simulator, or a robot with a pose
    /// estimator; empty otherwise. Only policies trained to observe it read it.
    pub environment_state: Vec<f32>,
}

/// Bilinear resize of an HWC RGB8 image (`h`×`w`) to `th`×`tw`, with half-pixel centres.
/// Training data (mulli-policy), live observations (mulli-policy) and wire images
/// (mulli-serve) all go through this one filter, so a policy sees the same pixels wherever
/// its input comes from.
pub fn resize_rgb(src: &[u8], h: usize, w: usize, th: usize, tw: usize) -> Vec<u8> {
    if h == th && w == tw {
        return src.to_vec();
    }
    let mut out = vec![0u8; th * tw * 3];
    let (sy, sx) = (h as f32 / th as f32, w as f32 / tw as f32);
    for y in 0..th {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f32);
        let (y0, wy) = (fy.floor() as usize, fy.fract());
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..tw {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f32);
            let (x0, wx) = (fx.floor() as usize, fx.fract());
            let x1 = (x0 + 1).min(w - 1);
            for c in 0..3 {
                let p = |yy: usize, xx: usize| f32::from(src[(yy * w + xx) * 3 + c]);
                let top = p(y0, x0) * (1.0 - wx) + p(y0, x1) * wx;
                let bot = p(y1, x0) * (1.0 - wx) + p(y1, x1) * wx;
                out[(y * tw + x) * 3 + c] = (top * (1.0 - wy) + bot * wy).round() as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::resize_rgb;
    use proptest::prelude::*;

    #[test]
    fn halving_averages_each_two_by_two_block() {
        // 2×2 → 1×1: the centre sits between all four pixels.
        let src = [0, 0, 0, 100, 100, 100, 50, 50, 50, 250, 250, 250];
        assert_eq!(resize_rgb(&src, 2, 2, 1, 1), vec![100, 100, 100]);
    }

    proptest! {
        #[test]
        fn same_size_is_identity_and_flat_images_stay_flat(
            h in 1usize..12, w in 1usize..12, th in 1usize..12, tw in 1usize..12,
            rgb in any::<[u8; 3]>(), seed in any::<u64>(),
        ) {
            let noise: Vec<u8> = (0..h * w * 3)
                .map(|i| (seed.wrapping_mul(i as u64 + 1) >> 13) as u8)
                .collect();
            prop_assert_eq!(resize_rgb(&noise, h, w, h, w), noise);
            let flat: Vec<u8> = (0..h * w).flat_map(|_| rgb).collect();
            let out = resize_rgb(&flat, h, w, th, tw);
            prop_assert_eq!(out.len(), th * tw * 3);
            prop_assert!(out.chunks(3).all(|p| p == rgb));
        }
    }
}
