//! Triangle meshes and the primitive shapes the kitchen is built from.

use glam::{Affine3A, Vec3};
use std::f32::consts::{FRAC_PI_2, PI, TAU};

/// An indexed triangle mesh in object (local) coordinates.
///
/// Triangles wind counter-clockwise when seen from outside; the rasterizer culls the other side.
/// `normals` holds one unit normal per position (used for lighting only).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mesh {
    pub positions: Vec<Vec3>,
    pub normals: Vec<Vec3>,
    pub triangles: Vec<[u32; 3]>,
}

impl Mesh {
    /// An axis-aligned box centred on the origin. Each face has its own four vertices so that
    /// edges shade sharply.
    pub fn cuboid(half_extents: Vec3) -> Mesh {
        let h = half_extents;
        let mut mesh = Mesh::default();
        // (outward normal, two in-face axes u and v with u × v = normal, so u-then-v is CCW).
        let faces = [
            (Vec3::X, Vec3::Y, Vec3::Z),
            (Vec3::NEG_X, Vec3::Z, Vec3::Y),
            (Vec3::Y, Vec3::Z, Vec3::X),
            (Vec3::NEG_Y, Vec3::X, Vec3::Z),
            (Vec3::Z, Vec3::X, Vec3::Y),
            (Vec3::NEG_Z, Vec3::Y, Vec3::X),
        ];
        for (n, u, v) in faces {
            let base = mesh.next_index();
            let (c, u, v) = (n * h, u * h, v * h);
            for corner in [c - u - v, c + u - v, c + u + v, c - u + v] {
                mesh.positions.push(corner);
                mesh.normals.push(n);
            }
            mesh.push_quad(base, base + 1, base + 2, base + 3);
        }
        mesh
    }

    /// A capped cylinder along local Z, from `-half_height` to `+half_height`, with smooth sides.
    pub fn cylinder(radius: f32, half_height: f32, segments: usize) -> Mesh {
        Mesh::frustum(radius, radius, half_height, segments)
    }

    /// A capped truncated cone along local Z: `radius_bottom` at `-half_height`, `radius_top` at
    /// `+half_height`. A zero radius gives a cone without that cap.
    pub fn frustum(radius_bottom: f32, radius_top: f32, half_height: f32, segments: usize) -> Mesh {
        let segments = segments.max(3);
        let (rb, rt, hh) = (radius_bottom.abs(), radius_top.abs(), half_height.abs());
        // Outward side normal in the (radial, z) plane: perpendicular to the slanted profile.
        let side = (rb - rt, 2.0 * hh);
        let len = (side.0 * side.0 + side.1 * side.1).sqrt();
        let (nz, nr) = if len > 0.0 {
            (side.0 / len, side.1 / len)
        } else {
            (0.0, 1.0)
        };
        let mut mesh = Mesh::default();
        mesh.lathe(
            &[
                ProfilePoint {
                    r: rb,
                    z: -hh,
                    nr,
                    nz,
                },
                ProfilePoint {
                    r: rt,
                    z: hh,
                    nr,
                    nz,
                },
            ],
            segments,
        );
        if rb > 0.0 {
            mesh.disc(rb, -hh, false, segments);
        }
        if rt > 0.0 {
            mesh.disc(rt, hh, true, segments);
        }
        mesh
    }

    /// A UV sphere centred on the origin with poles on local ±Z. `segments` counts meridians
    /// (at least 3) and `rings` latitude bands (at least 2).
    pub fn sphere(radius: f32, segments: usize, rings: usize) -> Mesh {
        let rings = rings.max(2);
        let r = radius.abs();
        let profile: Vec<ProfilePoint> = (0..=rings)
            .map(|i| {
                let phi = PI * i as f32 / rings as f32;
                pole_safe(ProfilePoint::on_circle(r, phi, 0.0), i == 0 || i == rings)
            })
            .collect();
        let mut mesh = Mesh::default();
        mesh.lathe(&profile, segments.max(3));
        mesh
    }

    /// A capsule along local Z: a cylinder of `radius` from `-half_height` to `+half_height`
    /// closed by hemispheres, so its total length is `2 * (half_height + radius)`.
    pub fn capsule(radius: f32, half_height: f32, segments: usize) -> Mesh {
        let segments = segments.max(3);
        let (r, hh) = (radius.abs(), half_height.abs());
        // Latitude bands per hemisphere, scaled with the meridian count so that caps look as
        // round as the sides.
        let bands = (segments / 4).max(2);
        let mut profile = Vec::with_capacity(2 * bands + 2);
        for k in 0..=bands {
            let phi = FRAC_PI_2 * k as f32 / bands as f32;
            profile.push(pole_safe(ProfilePoint::on_circle(r, phi, -hh), k == 0));
        }
        for k in 0..=bands {
            let phi = FRAC_PI_2 + FRAC_PI_2 * k as f32 / bands as f32;
            profile.push(pole_safe(ProfilePoint::on_circle(r, phi, hh), k == bands));
        }
        let mut mesh = Mesh::default();
        mesh.lathe(&profile, segments);
        mesh
    }

    /// This mesh with `t` baked in. Normals go through the inverse transpose so that
    /// non-uniform scales keep them perpendicular to the surface; a mirroring transform also
    /// flips the winding so that triangles stay counter-clockwise from outside.
    pub fn transformed(&self, t: Affine3A) -> Mesh {
        let normal_matrix = t.matrix3.inverse_or_zero().transpose();
        let mirrored = t.matrix3.determinant() < 0.0;
        Mesh {
            positions: self
                .positions
                .iter()
                .map(|&p| t.transform_point3(p))
                .collect(),
            normals: self
                .normals
                .iter()
                .map(|&n| (normal_matrix * n).normalize_or_zero())
                .collect(),
            triangles: self
                .triangles
                .iter()
                .map(|&[a, b, c]| if mirrored { [a, c, b] } else { [a, b, c] })
                .collect(),
        }
    }

    /// All `parts` as one mesh (indices re-based onto the concatenated vertices).
    pub fn merge(parts: &[Mesh]) -> Mesh {
        let mut mesh = Mesh::default();
        for part in parts {
            let base = mesh.next_index();
            mesh.positions.extend_from_slice(&part.positions);
            mesh.normals.extend_from_slice(&part.normals);
            // Keep positions and normals paired even when a part has too few normals.
            mesh.normals.resize(mesh.positions.len(), Vec3::ZERO);
            mesh.triangles.extend(
                part.triangles
                    .iter()
                    .map(|t| t.map(|i| i.wrapping_add(base))),
            );
        }
        mesh
    }

    /// A sphere enclosing every vertex (centre of the bounding box, farthest vertex).
    pub fn bounding_sphere(&self) -> (Vec3, f32) {
        if self.positions.is_empty() {
            return (Vec3::ZERO, 0.0);
        }
        let (lo, hi) = self.positions.iter().fold(
            (Vec3::splat(f32::MAX), Vec3::splat(f32::MIN)),
            |(lo, hi), &p| (lo.min(p), hi.max(p)),
        );
        let c = (lo + hi) * 0.5;
        let r = self
            .positions
            .iter()
            .map(|&p| p.distance(c))
            .fold(0.0, f32::max);
        (c, r)
    }

    pub fn triangle_count(&self) -> usize {
        self.triangles.len()
    }

    /// Index the next pushed vertex will get. Meshes over u32::MAX vertices are not supported;
    /// the rasterizer skips triangles whose indices are out of range rather than panicking.
    fn next_index(&self) -> u32 {
        self.positions.len() as u32
    }

    /// Two triangles for the quad a-b-c-d (counter-clockwise from outside).
    fn push_quad(&mut self, a: u32, b: u32, c: u32, d: u32) {
        self.triangles.push([a, b, c]);
        self.triangles.push([a, c, d]);
    }

    /// Sweeps `profile` (ordered from low z to high z) around the Z axis. A point with zero
    /// radius becomes a single pole vertex closed with a triangle fan.
    fn lathe(&mut self, profile: &[ProfilePoint], segments: usize) {
        let angles: Vec<(f32, f32)> = (0..segments)
            .map(|j| {
                let theta = TAU * j as f32 / segments as f32;
                (theta.cos(), theta.sin())
            })
            .collect();
        // First index of each ring, and whether that ring is a single pole vertex.
        let mut rings: Vec<(u32, bool)> = Vec::with_capacity(profile.len());
        for p in profile {
            let start = self.next_index();
            let pole = p.r == 0.0;
            let columns = if pole { &angles[..1] } else { &angles[..] };
            for &(c, s) in columns {
                let (c, s) = if pole { (0.0, 0.0) } else { (c, s) };
                self.positions.push(Vec3::new(p.r * c, p.r * s, p.z));
                let n = if pole {
                    Vec3::new(0.0, 0.0, p.nz.signum())
                } else {
                    Vec3::new(p.nr * c, p.nr * s, p.nz)
                };
                self.normals.push(n);
            }
            rings.push((start, pole));
        }
        let seg = segments as u32;
        for pair in rings.windows(2) {
            let ((lo, lo_pole), (hi, hi_pole)) = (pair[0], pair[1]);
            for j in 0..seg {
                let k = (j + 1) % seg;
                match (lo_pole, hi_pole) {
                    (true, true) => {}
                    (true, false) => self.triangles.push([lo, hi + k, hi + j]),
                    (false, true) => self.triangles.push([lo + j, lo + k, hi]),
                    (false, false) => self.push_quad(lo + j, lo + k, hi + k, hi + j),
                }
            }
        }
    }

    /// A flat cap at height `z` facing +Z (`up`) or -Z.
    fn disc(&mut self, radius: f32, z: f32, up: bool, segments: usize) {
        let normal = if up { Vec3::Z } else { Vec3::NEG_Z };
        let centre = self.next_index();
        self.positions.push(Vec3::new(0.0, 0.0, z));
        self.normals.push(normal);
        let seg = segments as u32;
        for j in 0..seg {
            let theta = TAU * j as f32 / seg as f32;
            let (s, c) = theta.sin_cos();
            self.positions.push(Vec3::new(radius * c, radius * s, z));
            self.normals.push(normal);
        }
        for j in 0..seg {
            let (a, b) = (centre + 1 + j, centre + 1 + (j + 1) % seg);
            self.triangles
                .push(if up { [centre, a, b] } else { [centre, b, a] });
        }
    }
}

/// One point of a surface-of-revolution profile: radius and height, plus the outward normal's
/// radial and axial components.
#[derive(Clone, Copy)]
struct ProfilePoint {
    r: f32,
    z: f32,
    nr: f32,
    nz: f32,
}

impl ProfilePoint {
    /// The point at polar angle `phi` (0 = bottom pole) on a circle of radius `r` centred at
    /// height `z0` in the (radial, z) plane.
    fn on_circle(r: f32, phi: f32, z0: f32) -> ProfilePoint {
        let (s, c) = phi.sin_cos();
        ProfilePoint {
            r: r * s,
            z: z0 - r * c,
            nr: s,
            nz: -c,
        }
    }
}

/// `sin(PI)` is not exactly zero in f32; force true poles to radius zero so `lathe` fans them.
fn pole_safe(mut p: ProfilePoint, is_pole: bool) -> ProfilePoint {
    if is_pole {
        p.r = 0.0;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use glam::Quat;

    fn primitives() -> Vec<(&'static str, Mesh)> {
        vec![
            ("cuboid", Mesh::cuboid(Vec3::new(0.3, 0.2, 0.1))),
            ("cylinder", Mesh::cylinder(0.1, 0.2, 12)),
            ("frustum", Mesh::frustum(0.1, 0.03, 0.2, 10)),
            ("cone", Mesh::frustum(0.1, 0.0, 0.2, 10)),
            ("sphere", Mesh::sphere(0.2, 12, 8)),
            ("capsule", Mesh::capsule(0.05, 0.2, 12)),
        ]
    }

    /// Every triangle's geometric normal (from its winding) must point the same way as its
    /// vertex normals: this is what makes back-face culling keep the outside.
    fn assert_outward(name: &str, mesh: &Mesh) {
        assert_eq!(mesh.positions.len(), mesh.normals.len(), "{name}");
        for t in &mesh.triangles {
            let [a, b, c] = t.map(|i| mesh.positions[i as usize]);
            let geometric = (b - a).cross(c - a);
            let shading: Vec3 = t.iter().map(|&i| mesh.normals[i as usize]).sum();
            assert!(
                geometric.length() > 0.0,
                "{name}: degenerate triangle {t:?}"
            );
            assert!(
                geometric.dot(shading) > 0.0,
                "{name}: triangle {t:?} winds inward"
            );
        }
        for n in &mesh.normals {
            assert!(
                (n.length() - 1.0).abs() < 1e-4,
                "{name}: normal {n} not unit"
            );
        }
    }

    #[test]
    fn primitives_wind_outward() {
        for (name, mesh) in primitives() {
            assert_outward(name, &mesh);
        }
    }

    #[test]
    fn transformed_keeps_winding_and_normals_outward() {
        let mirror_stretch = Affine3A::from_scale(Vec3::new(-2.0, 0.5, 1.0))
            * Affine3A::from_rotation_translation(
                Quat::from_rotation_y(0.7),
                Vec3::new(1.0, 2.0, 3.0),
            );
        for (name, mesh) in primitives() {
            assert_outward(name, &mesh.transformed(mirror_stretch));
        }
    }

    #[test]
    fn primitives_are_closed_and_sized() {
        // A closed mesh uses every edge once in each direction.
        for (name, mesh) in primitives() {
            let mut edges = std::collections::HashMap::new();
            for t in &mesh.triangles {
                for k in 0..3 {
                    let key = (
                        mesh.positions[t[k] as usize].to_array().map(f32::to_bits),
                        mesh.positions[t[(k + 1) % 3] as usize]
                            .to_array()
                            .map(f32::to_bits),
                    );
                    *edges.entry(key).or_insert(0) += 1;
                }
            }
            for ((a, b), n) in &edges {
                assert_eq!(edges.get(&(*b, *a)), Some(n), "{name}: open edge");
            }
        }
        let capsule = Mesh::capsule(0.05, 0.2, 12);
        let max_z = capsule
            .positions
            .iter()
            .map(|p| p.z)
            .fold(f32::MIN, f32::max);
        assert!((max_z - 0.25).abs() < 1e-6);
        assert_eq!(Mesh::cuboid(Vec3::ONE).triangle_count(), 12);
    }

    #[test]
    fn merge_rebases_indices() {
        let a = Mesh::cuboid(Vec3::ONE);
        let b = Mesh::sphere(1.0, 6, 4);
        let m = Mesh::merge(&[a.clone(), b.clone()]);
        assert_eq!(m.triangle_count(), a.triangle_count() + b.triangle_count());
        assert_eq!(m.positions.len(), a.positions.len() + b.positions.len());
        let last = m.triangles[m.triangle_count() - 1];
        let orig = b.triangles[b.triangle_count() - 1];
        assert_eq!(last[0], orig[0] + a.positions.len() as u32);
    }
}
