//! CPU rendering of camera images: triangle meshes, pinhole cameras, patterned materials and a
//! deterministic z-buffer rasterizer producing RGB8 + metric depth.
//!
//! Owns how the world *looks*, not what it is: callers hand over meshes with world-from-local
//! transforms and get pixels back. Nothing here knows about physics, tasks or datasets.
//!
//! The pipeline (`raster.rs`): per-vertex lighting in world space, near-plane clipping,
//! fixed-point edge functions with the top-left fill rule into a visibility buffer, then a
//! single shading pass with perspective-correct attributes. Same inputs give the same bytes.

mod camera;
mod mesh;
mod raster;
mod shade;

#[cfg(test)]
mod tests;

pub use camera::Camera;
pub use mesh::Mesh;
pub use raster::Rasterizer;
pub use shade::{Lighting, Material, Pattern};

use glam::Affine3A;

/// One mesh instance to draw.
#[derive(Clone, Copy, Debug)]
pub struct DrawItem<'a> {
    pub mesh: &'a Mesh,
    /// World-from-local.
    pub transform: Affine3A,
    pub material: Material,
}

/// A rendered frame: sRGB colour and z-depth, both row-major with the top row first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    /// `height × width × 3` bytes (HWC).
    pub rgb: Vec<u8>,
    /// Metres along the camera axis; the camera's `far` where nothing was hit.
    pub depth: Vec<f32>,
}

impl Image {
    /// A black image with zero depth. Sizes whose byte count would overflow `usize` give an
    /// empty 0×0 image.
    pub fn new(width: usize, height: usize) -> Image {
        let mut image = Image::default();
        image.resize(width, height);
        image
    }

    /// Sets the size, reusing the buffers; contents are unspecified afterwards.
    pub(crate) fn resize(&mut self, width: usize, height: usize) {
        let pixels = width
            .checked_mul(height)
            .filter(|n| n.checked_mul(3).is_some());
        let (width, height, pixels) = match pixels {
            Some(n) => (width, height, n),
            None => (0, 0, 0),
        };
        self.width = width;
        self.height = height;
        self.rgb.resize(pixels * 3, 0);
        self.depth.resize(pixels, 0.0);
    }

    /// Depth as 8-bit gray for viewing: 0 at the camera, 255 at `max_depth` and beyond.
    pub fn depth_to_gray(&self, max_depth: f32) -> Vec<u8> {
        let scale = 255.0 / max_depth;
        // Float→u8 casts saturate, so NaN, negative and overflowing values cannot panic.
        self.depth
            .iter()
            .map(|&d| (d * scale + 0.5) as u8)
            .collect()
    }
}
