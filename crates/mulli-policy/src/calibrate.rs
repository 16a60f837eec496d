//! Hand–eye calibration: where a camera that moves with the hand sits on it and how it
//! looks, fitted to the training data's pixel labels — the hand's pose (from the state), a
//! thing's position (its auxiliary target) and where that thing is in the camera's image.
//!
//! Why fit rather than learn: the labels of a rigid pinhole camera satisfy a projective map
//! from the hand's frame exactly, so the direct linear transform (DLT) recovers it in closed
//! form, to the labels' float precision; the model's lift then follows rays
//! ([`crate::model::HandEye`]) rather than approximating them with an MLP.

use nalgebra::{DMatrix, Matrix3, SMatrix, Vector3, Vector4};

use crate::PolicyError;
use crate::data::TrainData;
use crate::model::{HandCamera, HandEye, VlaConfig};
use crate::normalize::Normalizer;

/// One label: the hand's pose (x, y, z, qx, qy, qz, qw), a thing's position, and where the
/// camera sees that thing (u, v in [-1, 1]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Label {
    pub hand: [f64; 7],
    pub point: [f64; 3],
    pub uv: [f64; 2],
}

/// Fewest labels a fit accepts: 11 unknowns, and a margin against near-degenerate sets.
pub const MIN_LABELS: usize = 50;

/// Row-major rotation matrix of quaternion (x, y, z, w), normalized first (the formula the
/// model uses on tensors, [`crate::model`]'s `lift_by_ray`).
pub fn rotation(q: [f64; 4]) -> Matrix3<f64> {
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    let [x, y, z, w] = q.map(|v| v / n);
    Matrix3::new(
        1.0 - 2.0 * (y * y + z * z),
        2.0 * (x * y - z * w),
        2.0 * (x * z + y * w),
        2.0 * (x * y + z * w),
        1.0 - 2.0 * (x * x + z * z),
        2.0 * (y * z - x * w),
        2.0 * (x * z - y * w),
        2.0 * (y * z + x * w),
        1.0 - 2.0 * (x * x + y * y),
    )
}

/// The label's point in the hand's frame.
fn in_hand(l: &Label) -> Vector3<f64> {
    let r = rotation([l.hand[3], l.hand[4], l.hand[5], l.hand[6]]);
    let p = Vector3::new(l.hand[0], l.hand[1], l.hand[2]);
    r.transpose() * (Vector3::from(l.point) - p)
}

/// Fits the camera to `labels` (pixel errors reported at a `side`-pixel image): the 3×4
/// projection from the hand's frame by DLT with Hartley's normalization, then its ray map
/// and centre. Errors when there are too few labels, or when they fit no camera in front of
/// the points (all in a plane, or not a pinhole's).
pub fn fit_hand_camera(labels: &[Label], side: usize) -> Result<HandCamera, PolicyError> {
    if labels.len() < MIN_LABELS {
        return Err(PolicyError::Data(format!(
            "{} pixel labels of a camera on the hand; fitting it needs at least {MIN_LABELS}",
            labels.len()
        )));
    }
    let points: Vec<Vector3<f64>> = labels.iter().map(in_hand).collect();
    let n = points.len() as f64;
    let mean = points.iter().sum::<Vector3<f64>>() / n;
    let spread = points.iter().map(|p| (p - mean).norm()).sum::<f64>() / n;
    if spread.is_nan() || spread <= 1e-9 {
        return Err(PolicyError::Data(
            "the labelled points do not move relative to the hand; no camera fits".into(),
        ));
    }
    let s = 3f64.sqrt() / spread;
    let mut normal = SMatrix::<f64, 12, 12>::zeros();
    for (p, l) in points.iter().zip(labels) {
        let x = Vector4::new(
            s * (p.x - mean.x),
            s * (p.y - mean.y),
            s * (p.z - mean.z),
            1.0,
        );
        for (k, c) in l.uv.iter().enumerate() {
            let mut row = SMatrix::<f64, 1, 12>::zeros();
            for i in 0..4 {
                row[4 * k + i] = x[i];
                row[8 + i] = -c * x[i];
            }
            normal += row.transpose() * row;
        }
    }
    let eigen = nalgebra::SymmetricEigen::new(normal);
    let smallest = eigen.eigenvalues.imin();
    let v = eigen.eigenvectors.column(smallest);
    let normalized = DMatrix::from_fn(3, 4, |r, c| v[4 * r + c]);
    // Undo the normalization: P = P̂ · T with T = [sI, -s·mean; 0, 1].
    let mut t = DMatrix::<f64>::identity(4, 4) * s;
    t[(3, 3)] = 1.0;
    for i in 0..3 {
        t[(i, 3)] = -s * mean[i];
    }
    let mut projection = normalized * t;
    let homogeneous = |p: &Vector3<f64>| Vector4::new(p.x, p.y, p.z, 1.0);
    let depth = |m: &DMatrix<f64>, p: &Vector3<f64>| (m.row(2) * homogeneous(p))[0];
    // The points are in front of the camera: positive depth.
    let depths: Vec<f64> = points.iter().map(|p| depth(&projection, p)).collect();
    if mulli_core::stats::median(depths.iter().copied()).unwrap_or(0.0) < 0.0 {
        projection = -projection;
    }
    let a = Matrix3::from_fn(|r, c| projection[(r, c)]);
    let centre_term = Vector3::new(projection[(0, 3)], projection[(1, 3)], projection[(2, 3)]);
    let Some(ray) = a.try_inverse() else {
        return Err(PolicyError::Data(
            "the pixel labels fit no camera (singular projection): are the points all in one plane?"
                .into(),
        ));
    };
    let centre = -(ray * centre_term);
    let ray = ray / (ray * Vector3::z()).norm().max(1e-12);
    let mut errors: Vec<f64> = Vec::with_capacity(labels.len());
    let mut behind = 0usize;
    for (p, l) in points.iter().zip(labels) {
        let x = homogeneous(p);
        let w = (projection.row(2) * x)[0];
        if w <= 0.0 {
            behind += 1;
            continue;
        }
        let u = (projection.row(0) * x)[0] / w;
        let v = (projection.row(1) * x)[0] / w;
        errors.push((u - l.uv[0]).hypot(v - l.uv[1]) * side as f64 / 2.0);
    }
    if behind * 10 > labels.len() {
        return Err(PolicyError::Data(format!(
            "the pixel labels fit no camera: {behind} of {} points would be behind it",
            labels.len()
        )));
    }
    let fit_px = mulli_core::stats::median(errors).unwrap_or(f64::INFINITY);
    let f = |v: f64| v as f32;
    Ok(HandCamera {
        ray: [0, 1, 2].map(|r| [0, 1, 2].map(|c| f(ray[(r, c)]))),
        centre: [0, 1, 2].map(|i| f(centre[i])),
        fit_px: f(fit_px),
        points: labels.len(),
    })
}

/// The state entries of the hand's pose, by name.
const HAND: [&str; 7] = ["ee_x", "ee_y", "ee_z", "ee_qx", "ee_qy", "ee_qz", "ee_qw"];

/// Most training frames read for a fit (evenly spaced): thousands of labels already pin
/// down its 11 unknowns.
const MAX_FRAMES: usize = 5000;

/// A fit this far off (median, px) is not a rigid pinhole on the hand: the MLP lift stays.
pub const MAX_FIT_PX: f32 = 1.0;

/// The hand–eye geometry of `config` (which has `lift_reads_arm`, its pixel labels and
/// auxiliary targets set) from `data`'s training frames, or why there is none — the hand's
/// pose is not in the state by name, no labelled thing has an absolute position target, or
/// a camera fits no pinhole on the hand — in which case the lift keeps its MLP.
pub fn hand_eye(
    data: &TrainData,
    config: &VlaConfig,
    state_norm: &Normalizer,
    aux_norm: &Normalizer,
) -> Result<HandEye, String> {
    let arm = config.state_dim - config.perceived;
    let names = data
        .layout
        .state_names
        .as_ref()
        .ok_or("the state has no names, so the hand's pose cannot be found in it")?;
    let mut hand = [0usize; 7];
    for (slot, name) in hand.iter_mut().zip(HAND) {
        *slot = names
            .iter()
            .position(|n| n == name)
            .filter(|&i| i < arm && !state_norm.ignored.get(i).copied().unwrap_or(false))
            .ok_or_else(|| format!("the state has no (observed) `{name}` entry"))?;
    }
    // Each labelled thing's lifted (x, y, z): the auxiliary entry its lift output becomes.
    let p = config.pixel_targets;
    let lifted = config.lifted_entries();
    if lifted.iter().all(Option::is_none) {
        return Err(
            "no labelled thing has an absolute position among the auxiliary targets".into(),
        );
    }
    let step = data.train_len.div_ceil(MAX_FRAMES).max(1);
    let frames: Vec<_> = data.train_samples().step_by(step).collect();
    let moving = config.pixel_cameras.len() - 1;
    let mut cameras = Vec::with_capacity(moving);
    for j in 1..=moving {
        let mut labels = Vec::new();
        for &sample in &frames {
            let (state, aux, pixels) = data.labels(sample);
            let pose = hand.map(|i| f64::from(state[i]));
            for (k, entries) in lifted.iter().enumerate() {
                let Some(entries) = entries else { continue };
                let at = 2 * (j * p + k);
                let (Some(&u), Some(&v)) = (pixels.get(at), pixels.get(at + 1)) else {
                    continue;
                };
                if u.is_nan() || v.is_nan() || u.abs() > 1.0 || v.abs() > 1.0 {
                    continue;
                }
                let label = Label {
                    hand: pose,
                    point: entries.map(|e| f64::from(aux[e])),
                    uv: [f64::from(u), f64::from(v)],
                };
                let numbers = label.hand.iter().chain(&label.point);
                if numbers.into_iter().all(|x| x.is_finite()) {
                    labels.push(label);
                }
            }
        }
        let camera = fit_hand_camera(&labels, config.image_size).map_err(|e| e.to_string())?;
        if camera.fit_px.is_nan() || camera.fit_px > MAX_FIT_PX {
            return Err(format!(
                "labelled camera {j} fits a pinhole on the hand only to {:.2} px (median over {} labels; at most {MAX_FIT_PX} px)",
                camera.fit_px, camera.points
            ));
        }
        cameras.push(camera);
    }
    let map = |k: usize, of: &[f32], default: f32| -> [f32; 3] {
        lifted[k].map_or([default; 3], |e| e.map(|i| of[i]))
    };
    Ok(HandEye {
        cameras,
        hand,
        hand_shift: hand.map(|i| state_norm.shift[i]),
        hand_scale: hand.map(|i| state_norm.scale[i]),
        thing_shift: (0..p).map(|k| map(k, &aux_norm.shift, 0.0)).collect(),
        thing_scale: (0..p).map(|k| map(k, &aux_norm.scale, 1.0)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mulli_core::rng::{self, RngExt};

    /// A camera 10 cm behind and 7 cm beside the hand, looking along its z axis and a
    /// little inwards (the kitchen's wrist camera), as a projection from the hand's frame.
    fn project(p: Vector3<f64>) -> Option<[f64; 2]> {
        let eye = Vector3::new(0.07, 0.0, -0.10);
        let forward = (Vector3::new(0.0, 0.0, 0.08) - eye).normalize();
        let right = Vector3::x().cross(&forward).normalize();
        let down = forward.cross(&right);
        let d = p - eye;
        let z = d.dot(&forward);
        let f = 1.0 / (37.5f64).to_radians().tan();
        (z > 0.01).then(|| [f * d.dot(&right) / z, f * d.dot(&down) / z])
    }

    fn labels(n: usize, seed: u64) -> Vec<Label> {
        let mut r = rng::substream(seed, "calibrate-test", 0);
        let mut out = Vec::new();
        while out.len() < n {
            let q = [
                r.random_range(-1.0..1.0),
                r.random_range(-1.0..1.0),
                r.random_range(-1.0..1.0),
                r.random_range(-1.0..1.0),
            ];
            let hand = [
                r.random_range(0.2..0.7),
                r.random_range(-0.3..0.3),
                r.random_range(0.05..0.5),
            ];
            let local = Vector3::new(
                r.random_range(-0.2..0.2),
                r.random_range(-0.2..0.2),
                r.random_range(0.0..0.4),
            );
            let Some(uv) = project(local) else { continue };
            if uv.iter().any(|c| c.abs() > 1.0) {
                continue;
            }
            let world = rotation(q) * local + Vector3::from(hand);
            out.push(Label {
                hand: [hand[0], hand[1], hand[2], q[0], q[1], q[2], q[3]],
                point: [world.x, world.y, world.z],
                uv,
            });
        }
        out
    }

    #[test]
    fn the_fit_recovers_the_camera_and_its_rays_reach_the_points() {
        let data = labels(200, 3);
        let cam = fit_hand_camera(&data, 64).unwrap();
        assert!(cam.fit_px < 1e-3, "fit {} px", cam.fit_px);
        let centre = Vector3::from(cam.centre.map(f64::from));
        assert!(
            (centre - Vector3::new(0.07, 0.0, -0.10)).norm() < 1e-4,
            "{centre}"
        );
        let ray = Matrix3::from_fn(|r, c| f64::from(cam.ray[r][c]));
        for l in &data[..20] {
            let p = in_hand(l);
            let d = ray * Vector3::new(l.uv[0], l.uv[1], 1.0);
            // Same direction as centre → point: a positive multiple.
            let to = p - centre;
            assert!(d.normalize().dot(&to.normalize()) > 1.0 - 1e-6);
        }
    }

    #[test]
    fn too_few_or_degenerate_labels_are_errors() {
        let data = labels(20, 4);
        let e = fit_hand_camera(&data, 64).unwrap_err().to_string();
        assert!(e.contains("20 pixel labels") && e.contains("50"), "{e}");
        let still = vec![data[0]; 60];
        let e = fit_hand_camera(&still, 64).unwrap_err().to_string();
        assert!(e.contains("do not move"), "{e}");
    }

    #[test]
    fn labels_of_no_camera_fit_badly() {
        let mut data = labels(200, 5);
        let mut r = rng::substream(9, "calibrate-noise", 0);
        for l in &mut data {
            l.uv = [r.random_range(-1.0..1.0), r.random_range(-1.0..1.0)];
        }
        match fit_hand_camera(&data, 64) {
            Ok(cam) => assert!(cam.fit_px > 5.0, "random labels fit at {} px", cam.fit_px),
            Err(e) => assert!(e.to_string().contains("no camera"), "{e}"),
        }
    }
}
