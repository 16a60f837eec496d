//! Surface appearance: materials, procedural patterns, lighting and the linear→sRGB encoding.

use glam::Vec3;
use std::sync::OnceLock;

/// A procedural texture, evaluated in the mesh's local coordinates so it moves with the object.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pattern {
    Solid,
    /// Bands `period` metres wide across local axis `axis` (0 = X, 1 = Y, 2 = Z; larger values
    /// mean Z), alternating between the material colour and `color`.
    Stripes {
        color: [f32; 3],
        period: f32,
        axis: u8,
    },
    /// A 3D checkerboard of `size`-metre cells alternating between the material colour and
    /// `color`.
    Checker {
        color: [f32; 3],
        size: f32,
    },
}

/// How a surface looks: a linear-RGB base colour (0..1) and an optional pattern.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Material {
    pub color: [f32; 3],
    pub pattern: Pattern,
}

impl Material {
    pub const fn solid(color: [f32; 3]) -> Material {
        Material {
            color,
            pattern: Pattern::Solid,
        }
    }

    /// The pattern's second colour (the base colour for `Solid`).
    pub(crate) fn alternate_color(&self) -> [f32; 3] {
        match self.pattern {
            Pattern::Solid => self.color,
            Pattern::Stripes { color, .. } | Pattern::Checker { color, .. } => color,
        }
    }

    /// Whether the pattern shows its second colour at local position `p`.
    #[inline]
    pub(crate) fn is_alternate(&self, p: Vec3) -> bool {
        match self.pattern {
            Pattern::Solid => false,
            Pattern::Stripes { period, axis, .. } => {
                let coord = p[usize::from(axis.min(2))];
                is_odd_cell(coord / period)
            }
            // Parity of the sum of cell indices = xor of their parities.
            Pattern::Checker { size, .. } => {
                is_odd_cell(p.x / size) ^ is_odd_cell(p.y / size) ^ is_odd_cell(p.z / size)
            }
        }
    }
}

/// Whether `x` falls in an odd cell of the integer grid (cells are `[k, k+1)`).
///
/// Floors by truncation plus a correction: `f32::floor` is a libm call on baseline x86-64
/// (no SSE4.1), and this runs per pixel. Saturating casts keep NaN and huge values from
/// panicking; they just land in some cell.
#[inline]
fn is_odd_cell(x: f32) -> bool {
    let truncated = x as i64;
    let floor = truncated.wrapping_sub(i64::from((truncated as f32) > x));
    floor & 1 != 0
}

/// One directional light plus ambient, all in linear RGB.
#[derive(Clone, Copy, Debug)]
pub struct Lighting {
    /// Unit vector from the surface towards the light (world frame).
    pub direction: Vec3,
    pub color: [f32; 3],
    pub ambient: [f32; 3],
}

impl Default for Lighting {
    /// A soft key light from above and slightly in front, as in a room with ceiling lights.
    fn default() -> Lighting {
        Lighting {
            direction: Vec3::new(0.3, -0.4, 0.87).normalize_or_zero(),
            color: [0.75, 0.75, 0.72],
            ambient: [0.3, 0.3, 0.32],
        }
    }
}

/// Entries in the linear→sRGB table. 4096 steps keep the error within one 8-bit code even in
/// the steep dark end of the curve, and the table (4 KiB) stays in L1.
const SRGB_LUT_SIZE: usize = 4096;

/// The exact sRGB transfer function (linear 0..1 → encoded 0..1).
pub(crate) fn linear_to_srgb(x: f32) -> f32 {
    let x = x.clamp(0.0, 1.0);
    if x <= 0.003_130_8 {
        12.92 * x
    } else {
        1.055 * x.powf(1.0 / 2.4) - 0.055
    }
}

fn srgb_lut() -> &'static [u8; SRGB_LUT_SIZE] {
    static LUT: OnceLock<[u8; SRGB_LUT_SIZE]> = OnceLock::new();
    LUT.get_or_init(|| {
        let mut lut = [0u8; SRGB_LUT_SIZE];
        for (i, v) in lut.iter_mut().enumerate() {
            let linear = i as f32 / (SRGB_LUT_SIZE - 1) as f32;
            *v = (linear_to_srgb(linear) * 255.0 + 0.5) as u8;
        }
        lut
    })
}

/// Linear→sRGB8 encoder with the table fetched once per frame.
#[derive(Clone, Copy)]
pub(crate) struct SrgbEncoder {
    lut: &'static [u8; SRGB_LUT_SIZE],
}

impl SrgbEncoder {
    pub fn new() -> SrgbEncoder {
        SrgbEncoder { lut: srgb_lut() }
    }

    /// Clamps to 0..1 and encodes. The float→usize cast saturates (negative and NaN give 0),
    /// so only the upper end needs a clamp.
    #[inline]
    pub fn encode(&self, linear: f32) -> u8 {
        let index = (linear * (SRGB_LUT_SIZE - 1) as f32 + 0.5) as usize;
        self.lut[index.min(SRGB_LUT_SIZE - 1)]
    }

    pub fn encode_rgb(&self, c: [f32; 3]) -> [u8; 3] {
        c.map(|v| self.encode(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The surface colour at local position `p`, as the shading pass picks it.
    fn albedo(m: &Material, p: Vec3) -> [f32; 3] {
        if m.is_alternate(p) {
            m.alternate_color()
        } else {
            m.color
        }
    }

    #[test]
    fn srgb_table_is_within_one_code_of_the_exact_curve() {
        let enc = SrgbEncoder::new();
        for i in 0..=10_000 {
            let x = i as f32 / 10_000.0;
            let exact = linear_to_srgb(x) * 255.0;
            let got = f32::from(enc.encode(x));
            assert!((got - exact).abs() <= 1.0, "x={x}: {got} vs {exact}");
        }
        assert_eq!(enc.encode(-1.0), 0);
        assert_eq!(enc.encode(f32::NAN), 0);
        assert_eq!(enc.encode(7.0), 255);
        assert_eq!(enc.encode(f32::INFINITY), 255);
        assert_eq!(enc.encode(0.5), 188); // the textbook value
    }

    #[test]
    fn patterns_alternate_in_local_space() {
        let base = [0.1, 0.2, 0.3];
        let other = [0.9, 0.8, 0.7];
        let stripes = Material {
            color: base,
            pattern: Pattern::Stripes {
                color: other,
                period: 0.5,
                axis: 0,
            },
        };
        assert_eq!(albedo(&stripes, Vec3::new(0.1, 5.0, 5.0)), base);
        assert_eq!(albedo(&stripes, Vec3::new(0.6, 0.0, 0.0)), other);
        assert_eq!(albedo(&stripes, Vec3::new(-0.1, 0.0, 0.0)), other);
        let checker = Material {
            color: base,
            pattern: Pattern::Checker {
                color: other,
                size: 1.0,
            },
        };
        assert_eq!(albedo(&checker, Vec3::new(0.5, 0.5, 0.5)), base);
        assert_eq!(albedo(&checker, Vec3::new(1.5, 0.5, 0.5)), other);
        assert_eq!(albedo(&checker, Vec3::new(1.5, 1.5, 0.5)), base);
        // Garbage parameters pick some colour without panicking.
        let broken = Material {
            color: base,
            pattern: Pattern::Checker {
                color: other,
                size: 0.0,
            },
        };
        let _ = albedo(&broken, Vec3::new(f32::NAN, f32::INFINITY, -1e30));
    }

    #[test]
    fn cell_parity_floors_negative_values() {
        for (x, odd) in [
            (0.0, false),
            (0.5, false),
            (1.0, true),
            (-0.5, true),
            (-1.0, true),
            (-1.5, false),
            (-2.0, false),
            (2.99, false),
            (-1e-7, true),
        ] {
            assert_eq!(is_odd_cell(x), odd, "{x}");
        }
        for x in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30] {
            let _ = is_odd_cell(x);
        }
    }
}
