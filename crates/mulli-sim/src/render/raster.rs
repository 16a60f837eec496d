//! The triangle rasterizer: vertex processing, near-plane clipping, fixed-point edge-function
//! scan conversion into a visibility buffer, then one shading pass per pixel.
//!
//! Two passes keep shading cost independent of overdraw: the scan loop only tests edges and
//! depth and stores a triangle id; colours are computed once per visible pixel afterwards from
//! that triangle's screen-space attribute planes.

use super::camera::{Camera, Intrinsics};
use super::shade::{Lighting, Material, Pattern, SrgbEncoder};
use super::{DrawItem, Image};
use glam::{Affine3A, Mat3A, Vec3};

/// Sub-pixel precision of snapped vertex positions (1/256 px). Integer edge functions make
/// coverage exact, so shared edges are watertight and the fill rule is applied without
/// floating-point ties.
const SUBPIXEL_BITS: u32 = 8;
const SUBPIXEL: f32 = (1 << SUBPIXEL_BITS) as f32;
const HALF_PIXEL: i64 = 1 << (SUBPIXEL_BITS - 1);

/// Polygons reaching further than this many pixels from the image origin are clipped to it, so
/// snapped coordinates stay below 2^29 and edge-function products fit in i64 with margin.
const GUARD_BAND: f32 = (1 << 20) as f32;
/// Vertices produced by guard-band clipping land on the band up to rounding; accept those.
const GUARD_BAND_ACCEPT: f32 = GUARD_BAND * 1.01;
/// Largest image side rendered; keeps the whole viewport inside the guard band.
const MAX_IMAGE_SIDE: usize = 1 << 19;

/// Visibility-buffer value for pixels no triangle covers.
const NO_TRIANGLE: u32 = u32::MAX;

/// Turns draw items into images. Holds scratch buffers that are reused between frames, so
/// keep one per rendering thread.
#[derive(Default)]
pub struct Rasterizer {
    targets: Targets,
    vertices: Vec<PreparedVertex>,
    materials: Vec<Material>,
    /// The static layer of the last [`Rasterizer::render_layered`] call, reused while the
    /// camera, the lighting and the static items stay the same.
    base: Option<StaticLayer>,
}

/// A rasterized static layer: the visibility buffer, shade records and materials after the
/// static items were drawn, keyed by everything that determines them.
struct StaticLayer {
    key: u64,
    inv_depth: Vec<f32>,
    ids: Vec<u32>,
    records: Vec<ShadeRecord>,
    materials: Vec<Material>,
}

/// FNV-1a over the bits of everything the static layer depends on.
struct KeyHasher(u64);

impl KeyHasher {
    fn new() -> Self {
        KeyHasher(0xcbf2_9ce4_8422_2325)
    }
    fn u64(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn f32s(&mut self, vs: &[f32]) {
        for v in vs {
            self.u64(u64::from(v.to_bits()));
        }
    }
    fn material(&mut self, m: &Material) {
        self.f32s(&m.color);
        match m.pattern {
            Pattern::Solid => self.u64(0),
            Pattern::Stripes {
                color,
                period,
                axis,
            } => {
                self.u64(1);
                self.f32s(&color);
                self.f32s(&[period]);
                self.u64(u64::from(axis));
            }
            Pattern::Checker { color, size } => {
                self.u64(2);
                self.f32s(&color);
                self.f32s(&[size]);
            }
        }
    }
}

fn static_key(camera: &Camera, lighting: &Lighting, items: &[DrawItem<'_>]) -> u64 {
    let mut h = KeyHasher::new();
    h.u64(camera.width as u64);
    h.u64(camera.height as u64);
    h.f32s(&[camera.fov_y, camera.near, camera.far]);
    h.f32s(&camera.pose.to_cols_array());
    h.f32s(&lighting.direction.to_array());
    h.f32s(&lighting.color);
    h.f32s(&lighting.ambient);
    for item in items {
        // The mesh by identity and shape (address, sizes, a vertex), then where and how.
        h.u64(item.mesh as *const _ as usize as u64);
        h.u64(item.mesh.positions.len() as u64);
        h.u64(item.mesh.triangles.len() as u64);
        if let Some(p) = item.mesh.positions.first() {
            h.f32s(&p.to_array());
        }
        h.f32s(&item.transform.to_cols_array());
        h.material(&item.material);
    }
    h.0
}

/// Per-frame render targets: the visibility buffer and what is needed to shade it.
#[derive(Default)]
struct Targets {
    width: usize,
    height: usize,
    /// 1/depth of the nearest surface so far (1/far where none). Inverse depth is affine in
    /// screen space, so it interpolates without a division per pixel.
    inv_depth: Vec<f32>,
    /// Index into `records` of the triangle seen at each pixel, or `NO_TRIANGLE`.
    ids: Vec<u32>,
    records: Vec<ShadeRecord>,
}

/// What the shading pass needs to colour a pixel of one visible triangle.
#[derive(Clone, Copy)]
struct ShadeRecord {
    lit: Lit,
    /// Pixel the planes are anchored at (keeps plane constants small).
    origin: [f32; 2],
    /// Planes of light/depth per channel; multiplied by depth they give perspective-correct
    /// per-vertex lighting.
    light: [Plane; 3],
    /// Planes of local position/depth per axis (only filled for patterned materials).
    local: [Plane; 3],
    material: u32,
}

/// How a triangle's lighting is known.
#[derive(Clone, Copy)]
enum Lit {
    /// Uniformly lit (every flat face) with a solid material: the final colour.
    Flat([u8; 3]),
    /// Uniformly lit with a pattern: the final colours of the base and the alternate.
    FlatPattern { base: [u8; 3], alternate: [u8; 3] },
    /// Smoothly lit: interpolate the light planes per pixel.
    Smooth,
}

/// An attribute that varies affinely over the screen: `c + gx * dx + gy * dy` at the centre of
/// the pixel `(dx, dy)` pixels from the plane's origin.
#[derive(Clone, Copy, Default)]
struct Plane {
    gx: f32,
    gy: f32,
    c: f32,
}

impl Plane {
    #[inline]
    fn at(&self, dx: f32, dy: f32) -> f32 {
        self.c + self.gx * dx + self.gy * dy
    }
}

/// A mesh vertex after the per-item vertex pass.
#[derive(Clone, Copy)]
struct PreparedVertex {
    /// Camera-space position (looking down -Z).
    cam: Vec3,
    /// Linear light arriving at the vertex: ambient + colour · max(0, n·l).
    light: Vec3,
    /// Snapped screen position and 1/depth, when the vertex is in front of the near plane and
    /// inside the guard band (the fast path); otherwise the triangle goes through clipping.
    screen: Option<Snapped>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Snapped {
    /// Pixel coordinates in 1/256 px.
    x: i64,
    y: i64,
    inv_depth: f32,
}

/// A triangle corner ready for scan conversion.
#[derive(Clone, Copy)]
struct ScreenVertex {
    at: Snapped,
    light: Vec3,
    local: Vec3,
}

/// A polygon corner during clipping (camera space).
#[derive(Clone, Copy, Default)]
struct ClipVertex {
    cam: Vec3,
    light: Vec3,
    local: Vec3,
}

impl ClipVertex {
    fn lerp(&self, other: &ClipVertex, t: f32) -> ClipVertex {
        ClipVertex {
            cam: self.cam.lerp(other.cam, t),
            light: self.light.lerp(other.light, t),
            local: self.local.lerp(other.local, t),
        }
    }
}

/// Frame constants shared by every item.
struct Frame {
    encoder: SrgbEncoder,
    intrinsics: Intrinsics,
    view: Affine3A,
    near: f32,
    inv_far: f32,
    light_direction: Vec3,
    light_color: Vec3,
    ambient: Vec3,
}

impl Frame {
    /// Snaps a camera-space point in front of the camera to the sub-pixel grid; `None` outside
    /// the guard band or when not finite.
    #[inline]
    fn snap(&self, cam: Vec3) -> Option<Snapped> {
        let (x, y) = self.intrinsics.project_to_pixel(cam);
        if !(x.abs() <= GUARD_BAND_ACCEPT && y.abs() <= GUARD_BAND_ACCEPT) {
            return None;
        }
        // Truncating `v + 0.5` rounds to nearest for the on-screen (positive) range and is off
        // by at most one sub-pixel step elsewhere; what matters is that equal inputs snap alike.
        Some(Snapped {
            x: (x * SUBPIXEL + 0.5) as i64,
            y: (y * SUBPIXEL + 0.5) as i64,
            inv_depth: 1.0 / -cam.z,
        })
    }
}

impl Rasterizer {
    /// Renders `items` as seen by `camera` into `out` (resized to the camera's size).
    ///
    /// Pixels no surface covers get `background` (linear RGB) and depth `camera.far`. Never
    /// panics: degenerate and non-finite geometry is skipped; a camera without a usable
    /// projection (zero or NaN field of view, `near <= 0`, `far <= near`) gives a background
    /// image; sides over 2^19 pixels give an empty image.
    pub fn render(
        &mut self,
        camera: &Camera,
        items: &[DrawItem<'_>],
        lighting: &Lighting,
        background: [f32; 3],
        out: &mut Image,
    ) {
        self.render_layered(camera, &[], items, lighting, background, out);
    }

    /// Like [`Rasterizer::render`] with `static_items` drawn first — but only when they,
    /// the camera or the lighting changed since the last call: otherwise their rasterized
    /// layer is reused. For a fixed camera over furniture that never moves, this skips the
    /// most expensive triangles (floor, table) every frame. The image is byte-identical to
    /// rendering all items in order.
    pub fn render_layered(
        &mut self,
        camera: &Camera,
        static_items: &[DrawItem<'_>],
        items: &[DrawItem<'_>],
        lighting: &Lighting,
        background: [f32; 3],
        out: &mut Image,
    ) {
        let encoder = SrgbEncoder::new();
        let (width, height) = if camera.width <= MAX_IMAGE_SIDE && camera.height <= MAX_IMAGE_SIDE {
            (camera.width, camera.height)
        } else {
            (0, 0)
        };
        out.resize(width, height);
        let background_rgb = encoder.encode_rgb(background);
        let frame = match Intrinsics::new(camera) {
            Some(intrinsics)
                if camera.near > 0.0 && camera.near.is_finite() && camera.far > camera.near =>
            {
                Frame {
                    encoder,
                    intrinsics,
                    view: camera.view(),
                    near: camera.near,
                    inv_far: 1.0 / camera.far,
                    light_direction: lighting.direction.normalize_or_zero(),
                    light_color: Vec3::from(lighting.color),
                    ambient: Vec3::from(lighting.ambient),
                }
            }
            _ => {
                fill_background(out, background_rgb, camera.far);
                return;
            }
        };

        let key = (!static_items.is_empty()).then(|| static_key(camera, lighting, static_items));
        let cached = matches!((&self.base, key), (Some(b), Some(k)) if b.key == k && b.ids.len() == width * height);
        if cached {
            if let Some(base) = &self.base {
                self.targets.width = width;
                self.targets.height = height;
                self.targets.inv_depth.clone_from(&base.inv_depth);
                self.targets.ids.clone_from(&base.ids);
                self.targets.records.clone_from(&base.records);
                self.materials.clone_from(&base.materials);
            }
        } else {
            self.targets.clear(width, height, frame.inv_far);
            self.materials.clear();
            self.draw_items(&frame, static_items);
            if let Some(key) = key {
                self.base = Some(StaticLayer {
                    key,
                    inv_depth: self.targets.inv_depth.clone(),
                    ids: self.targets.ids.clone(),
                    records: self.targets.records.clone(),
                    materials: self.materials.clone(),
                });
            }
        }
        self.draw_items(&frame, items);
        self.shade(&encoder, background_rgb, camera, out);
    }

    fn draw_items(&mut self, frame: &Frame, items: &[DrawItem<'_>]) {
        for item in items {
            let Ok(material) = u32::try_from(self.materials.len()) else {
                break;
            };
            self.materials.push(item.material);
            self.draw_item(frame, item, material);
        }
    }

    /// Vertex pass for one item, then each triangle through the fast path or clipping.
    fn draw_item(&mut self, frame: &Frame, item: &DrawItem<'_>, material_index: u32) {
        let mesh = item.mesh;
        let model_view = frame.view * item.transform;
        // Inverse transpose keeps normals perpendicular under non-uniform scale.
        let normal_matrix: Mat3A = item.transform.matrix3.inverse_or_zero().transpose();
        // A mirroring transform turns counter-clockwise triangles clockwise.
        let mirrored = item.transform.matrix3.determinant() < 0.0;
        let material = &item.material;
        let patterned = material.pattern != Pattern::Solid;

        self.vertices.clear();
        self.vertices
            .extend(mesh.positions.iter().enumerate().map(|(i, &p)| {
                let cam = model_view.transform_point3(p);
                let normal = mesh.normals.get(i).copied().unwrap_or(Vec3::ZERO);
                let lambert = (normal_matrix * normal)
                    .normalize_or_zero()
                    .dot(frame.light_direction)
                    .max(0.0);
                let screen = if -cam.z >= frame.near {
                    frame.snap(cam)
                } else {
                    None
                };
                PreparedVertex {
                    cam,
                    light: frame.ambient + frame.light_color * lambert,
                    screen,
                }
            }));

        for tri in &mesh.triangles {
            let [Some(a), Some(b), Some(c)] = tri.map(|i| self.vertices.get(i as usize)) else {
                continue;
            };
            let local = |i: u32| {
                if patterned {
                    mesh.positions
                        .get(i as usize)
                        .copied()
                        .unwrap_or(Vec3::ZERO)
                } else {
                    Vec3::ZERO
                }
            };
            if let (Some(sa), Some(sb), Some(sc)) = (a.screen, b.screen, c.screen) {
                if sa.inv_depth < frame.inv_far
                    && sb.inv_depth < frame.inv_far
                    && sc.inv_depth < frame.inv_far
                {
                    continue; // wholly beyond the far plane
                }
                let corners = [
                    ScreenVertex {
                        at: sa,
                        light: a.light,
                        local: local(tri[0]),
                    },
                    ScreenVertex {
                        at: sb,
                        light: b.light,
                        local: local(tri[1]),
                    },
                    ScreenVertex {
                        at: sc,
                        light: c.light,
                        local: local(tri[2]),
                    },
                ];
                self.targets
                    .draw_triangle(frame, corners, mirrored, material, material_index);
            } else {
                let corners = [(a, tri[0]), (b, tri[1]), (c, tri[2])].map(|(v, i)| ClipVertex {
                    cam: v.cam,
                    light: v.light,
                    local: local(i),
                });
                self.targets
                    .draw_clipped(frame, corners, mirrored, material, material_index);
            }
        }
    }

    /// Colours every pixel once from the visibility buffer and writes metric depth.
    fn shade(&self, encoder: &SrgbEncoder, background: [u8; 3], camera: &Camera, out: &mut Image) {
        let t = &self.targets;
        if t.width == 0 {
            return;
        }
        let (near, far) = (camera.near, camera.far);
        // Depth first, in a branch-free loop the compiler can vectorise. Interpolation can
        // overshoot the clipped range by a rounding error, hence the clamp.
        for (d, (&w, &id)) in out.depth.iter_mut().zip(t.inv_depth.iter().zip(&t.ids)) {
            let z = (1.0 / w).max(near).min(far);
            *d = if id == NO_TRIANGLE { far } else { z };
        }
        let rows = out.rgb.chunks_exact_mut(3 * t.width).zip(
            t.ids
                .chunks_exact(t.width)
                .zip(t.inv_depth.chunks_exact(t.width)),
        );
        for (y, (rgb_row, (id_row, inv_depth_row))) in rows.enumerate() {
            let pixels = rgb_row
                .chunks_exact_mut(3)
                .zip(id_row.iter().zip(inv_depth_row));
            for (x, (rgb, (&id, &inv_depth))) in pixels.enumerate() {
                let record = if id == NO_TRIANGLE {
                    None
                } else {
                    t.records.get(id as usize)
                };
                let Some(record) = record else {
                    rgb.copy_from_slice(&background);
                    continue;
                };
                if let Lit::Flat(colour) = record.lit {
                    rgb.copy_from_slice(&colour);
                    continue;
                }
                let Some(material) = self.materials.get(record.material as usize) else {
                    rgb.copy_from_slice(&background);
                    continue;
                };
                let patterned = material.pattern != Pattern::Solid;
                let z = 1.0 / inv_depth;
                let dx = x as f32 - record.origin[0];
                let dy = y as f32 - record.origin[1];
                let alternate = patterned && {
                    let [lx, ly, lz] = record.local.map(|p| p.at(dx, dy) * z);
                    material.is_alternate(Vec3::new(lx, ly, lz))
                };
                match record.lit {
                    Lit::FlatPattern {
                        base,
                        alternate: other,
                    } => {
                        rgb.copy_from_slice(if alternate { &other } else { &base });
                    }
                    Lit::Flat(colour) => rgb.copy_from_slice(&colour),
                    Lit::Smooth => {
                        let albedo = if alternate {
                            material.alternate_color()
                        } else {
                            material.color
                        };
                        for ((out, a), light) in rgb.iter_mut().zip(albedo).zip(&record.light) {
                            *out = encoder.encode(a * light.at(dx, dy) * z);
                        }
                    }
                }
            }
        }
    }
}

fn fill_background(out: &mut Image, rgb: [u8; 3], depth: f32) {
    for px in out.rgb.chunks_exact_mut(3) {
        px.copy_from_slice(&rgb);
    }
    out.depth.fill(depth);
}

impl Targets {
    fn clear(&mut self, width: usize, height: usize, inv_far: f32) {
        let n = width * height; // both ≤ MAX_IMAGE_SIDE, cannot overflow
        self.width = width;
        self.height = height;
        self.inv_depth.clear();
        self.inv_depth.resize(n, inv_far);
        self.ids.clear();
        self.ids.resize(n, NO_TRIANGLE);
        self.records.clear();
    }

    /// Clips a triangle that reaches behind the near plane or outside the guard band, then
    /// draws the resulting convex polygon as a fan.
    fn draw_clipped(
        &mut self,
        frame: &Frame,
        corners: [ClipVertex; 3],
        mirrored: bool,
        material: &Material,
        material_index: u32,
    ) {
        if !corners.iter().all(|v| v.cam.is_finite()) {
            return;
        }
        let mut polygon = Polygon::from_triangle(corners);
        // Near plane: depth (= -z) ≥ near.
        polygon = polygon.clip(|p| -p.z - frame.near);
        let project = |v: &ClipVertex| frame.snap(v.cam);
        if polygon.vertices().iter().any(|v| project(v).is_none()) {
            // Guard band: keep -G ≤ pixel ≤ G on both axes, written as planes through the eye
            // (multiplied through by depth, which is positive after the near clip).
            let Intrinsics { focal, cx, cy } = frame.intrinsics;
            polygon = polygon
                .clip(|p| (GUARD_BAND - cx) * -p.z - focal * p.x)
                .clip(|p| (GUARD_BAND + cx) * -p.z + focal * p.x)
                .clip(|p| (GUARD_BAND - cy) * -p.z + focal * p.y)
                .clip(|p| (GUARD_BAND + cy) * -p.z - focal * p.y);
        }
        let mut screen = [None; Polygon::CAPACITY];
        for (s, v) in screen.iter_mut().zip(polygon.vertices()) {
            *s = project(v).map(|at| ScreenVertex {
                at,
                light: v.light,
                local: v.local,
            });
        }
        let screen = &screen[..polygon.len];
        let Some(Some(first)) = screen.first().copied() else {
            return;
        };
        for pair in screen.get(1..).unwrap_or(&[]).windows(2) {
            if let [Some(b), Some(c)] = *pair {
                self.draw_triangle(frame, [first, b, c], mirrored, material, material_index);
            }
        }
    }

    /// Scan-converts one front-facing triangle into the visibility buffer and, if any pixel
    /// survived the depth test, records how to shade it.
    fn draw_triangle(
        &mut self,
        frame: &Frame,
        mut corners: [ScreenVertex; 3],
        mirrored: bool,
        material: &Material,
        material_index: u32,
    ) {
        let Ok(id) = u32::try_from(self.records.len()) else {
            return;
        };
        if id == NO_TRIANGLE {
            return;
        }
        let Some(setup) = Setup::new(&mut corners, mirrored, self.width, self.height) else {
            return;
        };
        let width = self.width;
        let (inv_depth, ids) = (&mut self.inv_depth, &mut self.ids);
        let plane = setup.inv_depth;
        let mut visible = false;
        setup.scan(|y, xa, xb| {
            let (start, end) = (y * width + xa, y * width + xb);
            let (Some(z_span), Some(id_span)) =
                (inv_depth.get_mut(start..=end), ids.get_mut(start..=end))
            else {
                return;
            };
            let row = plane.c + plane.gy * (y - setup.y0) as f32;
            let first = (xa - setup.x0) as i32;
            // Branch-free over equal-length slices indexed from 0, so the compiler can
            // vectorise long spans (an iterator over `first..` kept it scalar: ~10 ns/pixel).
            let n = z_span.len().min(id_span.len());
            let (z_span, id_span) = (&mut z_span[..n], &mut id_span[..n]);
            let mut any = 0u32;
            for k in 0..n {
                let w = row + plane.gx * (first + k as i32) as f32;
                let z = z_span[k];
                let closer = w > z;
                z_span[k] = if closer { w } else { z };
                id_span[k] = if closer { id } else { id_span[k] };
                any |= closer as u32;
            }
            visible |= any != 0;
        });
        if !visible {
            return;
        }
        // Attributes divided by depth are affine in screen space; the shading pass multiplies
        // them back by depth (perspective-correct interpolation).
        let light = corners.map(|v| v.light);
        let uniform = light[1] == light[0] && light[2] == light[0];
        // Flat faces: colour once per triangle instead of once per pixel.
        let encode = |albedo: [f32; 3]| {
            frame
                .encoder
                .encode_rgb((Vec3::from(albedo) * light[0]).to_array())
        };
        let lit = match (uniform, material.pattern) {
            (false, _) => Lit::Smooth,
            (true, Pattern::Solid) => Lit::Flat(encode(material.color)),
            (true, _) => Lit::FlatPattern {
                base: encode(material.color),
                alternate: encode(material.alternate_color()),
            },
        };
        let per_depth = |a: [Vec3; 3]| {
            let [p, q, r] = [0, 1, 2].map(|k| a[k] * corners[k].at.inv_depth);
            setup.planes([p, q, r])
        };
        let unused = [Plane::default(); 3];
        let light = if uniform { unused } else { per_depth(light) };
        let local = if material.pattern == Pattern::Solid {
            unused
        } else {
            per_depth(corners.map(|v| v.local))
        };
        self.records.push(ShadeRecord {
            lit,
            origin: [setup.x0 as f32, setup.y0 as f32],
            light,
            local,
            material: material_index,
        });
    }
}

/// Bounding boxes wider than this are scanned by solving each row's span from the edge
/// equations; narrower ones by stepping pixel by pixel (cheaper for small triangles).
const WIDE_TRIANGLE: usize = 12;

/// Scan-conversion state of one triangle: clamped bounding box, fixed-point edge functions and
/// the geometry needed to build attribute planes.
struct Setup {
    /// Inclusive pixel bounds, clamped to the image.
    x0: usize,
    x1: usize,
    y0: usize,
    y1: usize,
    /// Edge functions at the centre of pixel (x0, y0), biased so that `>= 0` means inside
    /// under the top-left rule, and their change per pixel step in x and y.
    edge: [i64; 3],
    step_x: [i64; 3],
    step_y: [i64; 3],
    /// `1 / |step_x|` (0 where the step is 0), to estimate span ends without integer division.
    /// Only computed for wide triangles, the only ones `scan` solves spans for.
    inv_step_x: [f64; 3],
    /// Corner positions in pixels relative to the centre of pixel (x0, y0).
    px: [f64; 3],
    py: [f64; 3],
    inv_area: f64,
    inv_depth: Plane,
}

impl Setup {
    /// `None` for back-facing, degenerate or off-screen triangles. Reorders `corners` so that
    /// their signed area is positive (the order the planes are built in).
    fn new(
        corners: &mut [ScreenVertex; 3],
        mirrored: bool,
        width: usize,
        height: usize,
    ) -> Option<Setup> {
        let area = edge_function(&corners[0].at, &corners[1].at, &corners[2].at);
        // Screen y points down, so a triangle counter-clockwise from outside has negative area.
        let front = if mirrored { area > 0 } else { area < 0 };
        if !front {
            return None;
        }
        if area < 0 {
            corners.swap(1, 2);
        }
        let [a, b, c] = corners.map(|v| v.at);

        // Pixel x is covered only if its centre (x * 256 + 128) is within the vertex range.
        let first = |lo: i64| (lo - HALF_PIXEL + (1 << SUBPIXEL_BITS) - 1) >> SUBPIXEL_BITS;
        let last = |hi: i64| (hi - HALF_PIXEL) >> SUBPIXEL_BITS;
        let x0 = first(a.x.min(b.x).min(c.x)).max(0);
        let y0 = first(a.y.min(b.y).min(c.y)).max(0);
        let x1 = last(a.x.max(b.x).max(c.x)).min(width as i64 - 1);
        let y1 = last(a.y.max(b.y).max(c.y)).min(height as i64 - 1);
        if x0 > x1 || y0 > y1 {
            return None;
        }

        let wide = x1 - x0 >= WIDE_TRIANGLE as i64;
        let start_x = (x0 << SUBPIXEL_BITS) + HALF_PIXEL;
        let start_y = (y0 << SUBPIXEL_BITS) + HALF_PIXEL;
        let start = Snapped {
            x: start_x,
            y: start_y,
            inv_depth: 0.0,
        };
        let mut edge = [0; 3];
        let mut step_x = [0; 3];
        let mut step_y = [0; 3];
        let mut inv_step_x = [0.0; 3];
        for (k, (p, q)) in [(a, b), (b, c), (c, a)].into_iter().enumerate() {
            let (dx, dy) = (q.x - p.x, q.y - p.y);
            // Top-left rule: with positive area in y-down coordinates, top edges run towards +x
            // horizontally and left edges run upwards. Pixels exactly on other edges belong to
            // the neighbouring triangle.
            let top_left = dy < 0 || (dy == 0 && dx > 0);
            edge[k] = edge_function(&p, &q, &start) - i64::from(!top_left);
            step_x[k] = -dy << SUBPIXEL_BITS;
            step_y[k] = dx << SUBPIXEL_BITS;
            if dy != 0 && wide {
                inv_step_x[k] = 1.0 / step_x[k].unsigned_abs() as f64;
            }
        }

        let to_px = |fixed: i64, start: i64| (fixed - start) as f64 / f64::from(SUBPIXEL);
        let px = [a, b, c].map(|v| to_px(v.x, start_x));
        let py = [a, b, c].map(|v| to_px(v.y, start_y));
        let area_px = area.unsigned_abs() as f64 / f64::from(SUBPIXEL * SUBPIXEL);
        let mut setup = Setup {
            x0: x0 as usize,
            x1: x1 as usize,
            y0: y0 as usize,
            y1: y1 as usize,
            edge,
            step_x,
            step_y,
            inv_step_x,
            px,
            py,
            inv_area: 1.0 / area_px,
            inv_depth: Plane::default(),
        };
        setup.inv_depth = setup.plane([a.inv_depth, b.inv_depth, c.inv_depth]);
        Some(setup)
    }

    /// The affine function through the corner values `v`, anchored at pixel (x0, y0).
    fn plane(&self, v: [f32; 3]) -> Plane {
        let [v0, v1, v2] = v.map(f64::from);
        let (dx1, dy1) = (self.px[1] - self.px[0], self.py[1] - self.py[0]);
        let (dx2, dy2) = (self.px[2] - self.px[0], self.py[2] - self.py[0]);
        let (dv1, dv2) = (v1 - v0, v2 - v0);
        let gx = (dv1 * dy2 - dv2 * dy1) * self.inv_area;
        let gy = (dv2 * dx1 - dv1 * dx2) * self.inv_area;
        Plane {
            gx: gx as f32,
            gy: gy as f32,
            c: (v0 - gx * self.px[0] - gy * self.py[0]) as f32,
        }
    }

    /// One plane per component of a vector attribute.
    fn planes(&self, v: [Vec3; 3]) -> [Plane; 3] {
        [0, 1, 2].map(|k| self.plane(v.map(|p| p[k])))
    }

    /// Calls `visit(y, first x, last x)` for each row's run of covered pixels (inclusive).
    #[inline]
    fn scan(&self, visit: impl FnMut(usize, usize, usize)) {
        self.scan_with(self.x1 - self.x0 >= WIDE_TRIANGLE, visit);
    }

    fn scan_with(&self, wide: bool, mut visit: impl FnMut(usize, usize, usize)) {
        let max_k = (self.x1 - self.x0) as i64;
        let mut row_edge = self.edge;
        for y in self.y0..=self.y1 {
            let span = if wide {
                self.solve_span(row_edge, max_k)
            } else {
                self.walk_span(row_edge, max_k)
            };
            if let Some((lo, hi)) = span {
                visit(y, self.x0 + lo as usize, self.x0 + hi as usize);
            }
            for (e, s) in row_edge.iter_mut().zip(self.step_y) {
                *e += s;
            }
        }
    }

    /// The covered run of one row (pixel offsets from x0), found by testing pixel by pixel.
    /// Triangles are convex, so the run is contiguous.
    #[inline]
    fn walk_span(&self, edge: [i64; 3], max_k: i64) -> Option<(i64, i64)> {
        let [mut e0, mut e1, mut e2] = edge;
        let [s0, s1, s2] = self.step_x;
        let mut k = 0;
        while k <= max_k && (e0 | e1 | e2) < 0 {
            (e0, e1, e2, k) = (e0 + s0, e1 + s1, e2 + s2, k + 1);
        }
        let lo = k;
        while k <= max_k && (e0 | e1 | e2) >= 0 {
            (e0, e1, e2, k) = (e0 + s0, e1 + s1, e2 + s2, k + 1);
        }
        (k > lo).then_some((lo, k - 1))
    }

    /// The covered run of one row, solved per edge: edges whose function grows with x bound
    /// the run on the left, the others on the right. A floating-point estimate is corrected
    /// with exact integer tests, so the result equals `walk_span`'s.
    #[inline]
    fn solve_span(&self, edge: [i64; 3], max_k: i64) -> Option<(i64, i64)> {
        let (mut lo, mut hi) = (0, max_k);
        for ((e, s), inv_step) in edge.into_iter().zip(self.step_x).zip(self.inv_step_x) {
            let inside = |x: i64| e + x * s >= 0;
            if s > 0 {
                if e < 0 {
                    let estimate = (-e) as f64 * inv_step;
                    let mut x = estimate.min((max_k + 1) as f64) as i64;
                    while x > 0 && inside(x - 1) {
                        x -= 1;
                    }
                    while x <= max_k && !inside(x) {
                        x += 1;
                    }
                    lo = lo.max(x);
                }
            } else if e < 0 {
                return None; // already outside, and moving right never helps
            } else if s < 0 {
                let estimate = e as f64 * inv_step;
                let mut x = estimate.min(max_k as f64) as i64;
                while x < max_k && inside(x + 1) {
                    x += 1;
                }
                while x >= 0 && !inside(x) {
                    x -= 1;
                }
                hi = hi.min(x);
            }
        }
        (lo <= hi).then_some((lo, hi))
    }
}

/// Twice the signed area of (a, b, p) in fixed-point units: positive when p is on the inner
/// side of a→b for a positively oriented triangle.
#[inline]
fn edge_function(a: &Snapped, b: &Snapped, p: &Snapped) -> i64 {
    (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x)
}

/// A convex polygon being clipped; a triangle gains at most one corner per plane.
struct Polygon {
    corners: [ClipVertex; Polygon::CAPACITY],
    len: usize,
}

impl Polygon {
    /// Triangle + near plane + four guard-band planes, with room for rounding surprises.
    const CAPACITY: usize = 12;

    fn from_triangle(t: [ClipVertex; 3]) -> Polygon {
        let mut corners = [ClipVertex::default(); Polygon::CAPACITY];
        corners[..3].copy_from_slice(&t);
        Polygon { corners, len: 3 }
    }

    fn vertices(&self) -> &[ClipVertex] {
        &self.corners[..self.len]
    }

    /// Sutherland–Hodgman against the half-space `distance(p) >= 0`.
    fn clip(&self, distance: impl Fn(Vec3) -> f32) -> Polygon {
        let mut out = Polygon {
            corners: [ClipVertex::default(); Polygon::CAPACITY],
            len: 0,
        };
        let mut push = |v: ClipVertex| {
            if let Some(slot) = out.corners.get_mut(out.len) {
                *slot = v;
                out.len += 1;
            }
        };
        let vertices = self.vertices();
        for (i, cur) in vertices.iter().enumerate() {
            let prev = &vertices[(i + vertices.len() - 1) % vertices.len()];
            let (dp, dc) = (distance(prev.cam), distance(cur.cam));
            if (dp >= 0.0) != (dc >= 0.0) {
                push(prev.lerp(cur, dp / (dp - dc)));
            }
            if dc >= 0.0 {
                push(*cur);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vertex(x: f32, y: f32) -> ScreenVertex {
        ScreenVertex {
            at: Snapped {
                x: (x * SUBPIXEL) as i64,
                y: (y * SUBPIXEL) as i64,
                inv_depth: 1.0,
            },
            light: Vec3::ONE,
            local: Vec3::ZERO,
        }
    }

    /// Counts how often each pixel is covered by a set of screen triangles (either winding).
    fn coverage(triangles: &[[(f32, f32); 3]], width: usize, height: usize) -> Vec<u32> {
        let mut counts = vec![0; width * height];
        for t in triangles {
            for mirrored in [false, true] {
                let mut corners = t.map(|(x, y)| vertex(x, y));
                if let Some(setup) = Setup::new(&mut corners, mirrored, width, height) {
                    setup.scan(|y, xa, xb| {
                        for x in xa..=xb {
                            counts[y * width + x] += 1;
                        }
                    });
                }
            }
        }
        counts
    }

    #[test]
    fn shared_edges_cover_each_pixel_once() {
        // A 5×4 grid of quads with jittered interior vertices, some exactly on pixel centres
        // and on pixel-centre rows/columns, split into triangles both ways.
        let (w, h) = (40, 32);
        let mut grid = vec![[(0.0f32, 0.0f32); 6]; 5];
        for (i, row) in grid.iter_mut().enumerate() {
            for (j, p) in row.iter_mut().enumerate() {
                let interior = (1..4).contains(&i) && (1..5).contains(&j);
                let jitter = if interior {
                    ((i * 7 + j * 3) % 5) as f32 * 0.75 - 1.5
                } else {
                    0.0
                };
                *p = (
                    3.5 + 6.0 * j as f32 + jitter,
                    2.5 + 6.0 * i as f32 - jitter * 0.5,
                );
            }
        }
        let mut triangles = Vec::new();
        for i in 0..4 {
            for j in 0..5 {
                let (a, b, c, d) = (
                    grid[i][j],
                    grid[i][j + 1],
                    grid[i + 1][j + 1],
                    grid[i + 1][j],
                );
                if (i + j) % 2 == 0 {
                    triangles.extend([[a, b, c], [a, c, d]]);
                } else {
                    triangles.extend([[a, b, d], [b, c, d]]);
                }
            }
        }
        let counts = coverage(&triangles, w, h);
        // The union is the rectangle [3.5, 33.5] × [2.5, 26.5]; its boundary runs through
        // pixel centres, where the top-left rule keeps the top and left sides only.
        for y in 0..h {
            for x in 0..w {
                let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
                let inside = (3.5..33.5).contains(&cx) && (2.5..26.5).contains(&cy);
                assert_eq!(counts[y * w + x], u32::from(inside), "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn solved_spans_equal_walked_spans() {
        // xorshift: deterministic pseudo-random triangles from tiny to far past the image.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move |range: i64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % (2 * range as u64)) as i64 - range
        };
        let (w, h) = (64, 48);
        let mut compared = 0;
        for case in 0..3000 {
            let reach = [6, 64, 5000][case % 3] * SUBPIXEL as i64;
            let centre = (next(32 * 256) + 32 * 256, next(24 * 256) + 24 * 256);
            let mut corners = [0; 3].map(|_| {
                let mut v = vertex(0.0, 0.0);
                v.at.x = centre.0 + next(reach);
                v.at.y = centre.1 + next(reach);
                v
            });
            for mirrored in [false, true] {
                if let Some(setup) = Setup::new(&mut corners, mirrored, w, h) {
                    let spans = |wide| {
                        let mut out = Vec::new();
                        setup.scan_with(wide, |y, a, b| out.push((y, a, b)));
                        out
                    };
                    // Narrow triangles have no span estimates, so forcing the solver on them
                    // exercises its exact correction loops alone.
                    assert_eq!(spans(false), spans(true), "case {case}");
                    compared += 1;
                }
            }
        }
        assert!(compared > 1000, "{compared}");
    }

    #[test]
    fn setup_rejects_degenerate_and_offscreen_triangles() {
        let mut line = [vertex(1.0, 1.0), vertex(5.0, 5.0), vertex(9.0, 9.0)];
        assert!(Setup::new(&mut line, false, 10, 10).is_none());
        assert!(Setup::new(&mut line, true, 10, 10).is_none());
        let mut outside = [vertex(-9.0, 1.0), vertex(-5.0, 1.0), vertex(-7.0, 5.0)];
        let mut inside = outside;
        assert!(Setup::new(&mut outside, false, 10, 10).is_none());
        assert!(Setup::new(&mut outside, true, 10, 10).is_none());
        for c in &mut inside {
            c.at.x += 12 * SUBPIXEL as i64;
        }
        let hits = [false, true]
            .iter()
            .filter(|&&m| Setup::new(&mut inside.clone(), m, 10, 10).is_some())
            .count();
        assert_eq!(hits, 1, "exactly one winding is front-facing");
    }

    #[test]
    fn inverse_depth_plane_interpolates_corners() {
        let mut corners = [vertex(0.5, 0.5), vertex(8.5, 0.5), vertex(0.5, 8.5)];
        corners[0].at.inv_depth = 1.0;
        corners[1].at.inv_depth = 0.5;
        corners[2].at.inv_depth = 0.25;
        let setup = [false, true]
            .into_iter()
            .find_map(|m| Setup::new(&mut corners, m, 16, 16))
            .expect("one winding is front-facing");
        assert_eq!((setup.x0, setup.y0), (0, 0));
        let p = setup.inv_depth;
        assert!((p.at(0.0, 0.0) - 1.0).abs() < 1e-6);
        assert!((p.at(8.0, 0.0) - 0.5).abs() < 1e-6);
        assert!((p.at(0.0, 8.0) - 0.25).abs() < 1e-6);
    }
}
