//! Pinhole cameras: pose, intrinsics and the world-to-pixel projection the rasterizer uses.

use glam::{Affine3A, Mat3A, Vec3, Vec3A};

/// A pinhole camera with square pixels.
///
/// The camera looks down its local -Z with +Y up (OpenGL convention). Pixel (x, y) covers
/// `[x, x+1) × [y, y+1)` with its centre at `+0.5`; row 0 is the top row.
#[derive(Clone, Copy, Debug)]
pub struct Camera {
    pub width: usize,
    pub height: usize,
    /// Vertical field of view in radians.
    pub fov_y: f32,
    /// Near clipping distance in metres (along the camera axis).
    pub near: f32,
    /// Far clipping distance in metres; also the depth reported for background pixels.
    pub far: f32,
    /// World-from-camera transform.
    pub pose: Affine3A,
}

impl Camera {
    /// A camera at `eye` looking at `target`, with `up` as close to image-up as it can be.
    /// Degenerate inputs (eye == target, `up` parallel to the view direction) fall back to an
    /// arbitrary but valid orientation instead of producing NaNs.
    pub fn look_at(
        eye: Vec3,
        target: Vec3,
        up: Vec3,
        fov_y: f32,
        width: usize,
        height: usize,
    ) -> Camera {
        let forward = (target - eye).try_normalize().unwrap_or(Vec3::NEG_Z);
        let right = forward
            .cross(up)
            .try_normalize()
            .unwrap_or_else(|| forward.any_orthonormal_vector());
        let cam_up = right.cross(forward);
        Camera {
            width,
            height,
            fov_y,
            near: 0.01,
            far: 10.0,
            pose: Affine3A::from_cols(right.into(), cam_up.into(), (-forward).into(), eye.into()),
        }
    }

    /// Where `world` lands in the image: pixel x, pixel y (row 0 = top) and z-depth in metres.
    /// `None` when the point is nearer than `near` (or behind the camera) or not finite.
    /// Points outside the image still project (to coordinates outside `0..width`).
    pub fn project(&self, world: Vec3) -> Option<(f32, f32, f32)> {
        let intrinsics = Intrinsics::new(self)?;
        let p = self.view().transform_point3(world);
        let depth = -p.z;
        if !p.is_finite() || depth <= 0.0 || depth < self.near {
            return None;
        }
        let (x, y) = intrinsics.project_to_pixel(p);
        Some((x, y, depth))
    }

    /// Whether a sphere (world centre, radius) can touch the image: a conservative test
    /// against the near plane and the four side planes, used to skip whole objects.
    pub fn sees_sphere(&self, center: Vec3, radius: f32) -> bool {
        let p = self.view().transform_point3(center);
        let depth = -p.z;
        if !p.is_finite() || depth + radius < self.near || depth - radius > self.far {
            return false;
        }
        let ty = (self.fov_y * 0.5).tan();
        let tx = ty * self.width as f32 / self.height.max(1) as f32;
        // Distance from the centre to each side plane through the eye (normals unit length).
        let side = |t: f32, c: f32| (c.abs() - t * depth) / (1.0 + t * t).sqrt();
        side(tx, p.x) <= radius && side(ty, p.y) <= radius
    }

    /// Camera-from-world. A singular pose gives the zero transform (everything at the camera
    /// centre, so nothing renders) rather than NaNs or a panic.
    pub(crate) fn view(&self) -> Affine3A {
        let matrix3: Mat3A = self.pose.matrix3.inverse_or_zero();
        let translation: Vec3A = -(matrix3 * self.pose.translation);
        Affine3A {
            matrix3,
            translation,
        }
    }
}

/// The projection constants derived from a camera.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Intrinsics {
    /// Focal length in pixels (same for x and y).
    pub focal: f32,
    pub cx: f32,
    pub cy: f32,
}

impl Intrinsics {
    /// `None` for a field of view that gives no usable focal length (zero, negative, ≥ π, NaN).
    pub fn new(camera: &Camera) -> Option<Intrinsics> {
        let focal = 0.5 * camera.height as f32 / (0.5 * camera.fov_y).tan();
        if !(focal.is_finite() && focal > 0.0) {
            return None;
        }
        Some(Intrinsics {
            focal,
            cx: 0.5 * camera.width as f32,
            cy: 0.5 * camera.height as f32,
        })
    }

    /// Camera-space point (depth = -z > 0) to continuous pixel coordinates.
    #[inline]
    pub fn project_to_pixel(&self, p: Vec3) -> (f32, f32) {
        let inv_depth = 1.0 / -p.z;
        (
            self.cx + self.focal * p.x * inv_depth,
            self.cy - self.focal * p.y * inv_depth,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_at_projects_target_to_image_centre() {
        let cam = Camera::look_at(
            Vec3::new(1.0, 2.0, 3.0),
            Vec3::new(0.2, 0.1, 0.0),
            Vec3::Z,
            1.0,
            96,
            64,
        );
        let (x, y, d) = cam
            .project(Vec3::new(0.2, 0.1, 0.0))
            .expect("target is in front");
        assert!(
            (x - 48.0).abs() < 1e-3 && (y - 32.0).abs() < 1e-3,
            "{x} {y}"
        );
        let expected = (Vec3::new(1.0, 2.0, 3.0) - Vec3::new(0.2, 0.1, 0.0)).length();
        assert!((d - expected).abs() < 1e-4);
        // World up stays image up: a point above the target lands in a smaller row.
        let (_, y_up, _) = cam.project(Vec3::new(0.2, 0.1, 0.5)).expect("in front");
        assert!(y_up < y);
    }

    #[test]
    fn project_rejects_points_behind_and_degenerate_cameras() {
        let cam = Camera::look_at(Vec3::ZERO, Vec3::NEG_Z, Vec3::Y, 1.0, 10, 10);
        assert!(cam.project(Vec3::new(0.0, 0.0, 1.0)).is_none());
        assert!(cam.project(Vec3::new(0.0, 0.0, -0.001)).is_none());
        assert!(cam.project(Vec3::splat(f32::NAN)).is_none());
        let degenerate = Camera::look_at(Vec3::ONE, Vec3::ONE, Vec3::ONE, f32::NAN, 10, 10);
        assert!(degenerate.pose.is_finite());
        assert!(degenerate.project(Vec3::ZERO).is_none());
    }
}
