//! End-to-end rendering tests: geometry, shading, visibility, clipping and robustness.

use super::shade::linear_to_srgb;
use super::*;
use glam::{Quat, Vec3};
use proptest::prelude::*;
use std::f32::consts::FRAC_PI_3;

const BACKGROUND: [f32; 3] = [0.2, 0.3, 0.4];

/// 96×96, 60° vertical field of view, at the origin looking down -Z.
fn origin_camera() -> Camera {
    Camera {
        width: 96,
        height: 96,
        fov_y: FRAC_PI_3,
        near: 0.01,
        far: 10.0,
        pose: Affine3A::IDENTITY,
    }
}

fn focal(camera: &Camera) -> f32 {
    0.5 * camera.height as f32 / (0.5 * camera.fov_y).tan()
}

/// Light from +Z (towards the origin camera).
fn frontal_light() -> Lighting {
    Lighting {
        direction: Vec3::Z,
        color: [0.6, 0.5, 0.4],
        ambient: [0.1, 0.1, 0.1],
    }
}

fn render(camera: &Camera, items: &[DrawItem<'_>]) -> Image {
    let mut out = Image::new(0, 0);
    Rasterizer::default().render(camera, items, &frontal_light(), BACKGROUND, &mut out);
    out
}

fn item(mesh: &Mesh, at: Vec3, color: [f32; 3]) -> DrawItem<'_> {
    DrawItem {
        mesh,
        transform: Affine3A::from_translation(at),
        material: Material::solid(color),
    }
}

fn background_rgb() -> [u8; 3] {
    BACKGROUND.map(|c| (linear_to_srgb(c) * 255.0).round() as u8)
}

fn pixel(image: &Image, x: usize, y: usize) -> [u8; 3] {
    let i = 3 * (y * image.width + x);
    [image.rgb[i], image.rgb[i + 1], image.rgb[i + 2]]
}

fn depth(image: &Image, x: usize, y: usize) -> f32 {
    image.depth[y * image.width + x]
}

fn covered(image: &Image) -> Vec<(usize, usize)> {
    let far = origin_camera().far;
    (0..image.height)
        .flat_map(|y| (0..image.width).map(move |x| (x, y)))
        .filter(|&(x, y)| depth(image, x, y) < far)
        .collect()
}

fn assert_close_rgb(got: [u8; 3], expected_linear: [f32; 3]) {
    // The renderer encodes through a lookup table: allow one code of quantisation.
    let expected = expected_linear.map(|c| linear_to_srgb(c) * 255.0);
    for k in 0..3 {
        assert!(
            (f32::from(got[k]) - expected[k]).abs() <= 1.0,
            "channel {k}: got {got:?}, expected {expected:?}"
        );
    }
}

#[test]
fn head_on_cuboid_covers_its_projection_at_the_right_depth() {
    let camera = origin_camera();
    let cube = Mesh::cuboid(Vec3::splat(0.2));
    let image = render(&camera, &[item(&cube, Vec3::new(0.0, 0.0, -2.0), [0.5; 3])]);

    // Only the front face (z = -1.8) is visible; it projects to a square around the centre.
    let half = 0.2 * focal(&camera) / 1.8;
    let (lo, hi) = (48.0 - half, 48.0 + half);
    let side = (0..96)
        .filter(|&k| (lo..=hi).contains(&(k as f32 + 0.5)))
        .count();
    let hits = covered(&image);
    assert_eq!(
        hits.len(),
        side * side,
        "pixel centres inside the projected square"
    );
    let area = (2.0 * half) * (2.0 * half);
    assert!(
        (hits.len() as f32 - area).abs() <= 4.0 * half,
        "{} vs {area}",
        hits.len()
    );
    for &(x, y) in &hits {
        let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
        assert!(
            (lo..=hi).contains(&cx) && (lo..=hi).contains(&cy),
            "stray pixel ({x}, {y})"
        );
    }
    assert!((depth(&image, 48, 48) - 1.8).abs() < 0.018);
}

/// Area of the convex hull of `points` (monotone chain + shoelace), and its perimeter.
fn hull_area_perimeter(mut points: Vec<(f32, f32)>) -> (f32, f32) {
    points.sort_by(|a, b| a.partial_cmp(b).expect("finite points"));
    let cross = |o: (f32, f32), a: (f32, f32), b: (f32, f32)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut hull: Vec<(f32, f32)> = Vec::new();
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &(f32, f32)>> = if pass == 0 {
            Box::new(points.iter())
        } else {
            Box::new(points.iter().rev())
        };
        for &p in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    let mut area = 0.0;
    let mut perimeter = 0.0;
    for i in 0..hull.len() {
        let (a, b) = (hull[i], hull[(i + 1) % hull.len()]);
        area += a.0 * b.1 - b.0 * a.1;
        perimeter += ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
    }
    (0.5 * area.abs(), perimeter)
}

#[test]
fn rotated_cuboid_silhouette_matches_projected_hull() {
    let camera = Camera::look_at(
        Vec3::new(0.4, 0.9, 1.6),
        Vec3::new(0.05, -0.02, 0.0),
        Vec3::Y,
        0.9,
        96,
        80,
    );
    let cube = Mesh::cuboid(Vec3::new(0.25, 0.15, 0.2));
    let transform = Affine3A::from_rotation_translation(
        Quat::from_euler(glam::EulerRot::XYZ, 0.3, 0.8, -0.2),
        Vec3::new(0.05, 0.0, 0.0),
    );
    let items = [DrawItem {
        mesh: &cube,
        transform,
        material: Material::solid([0.7; 3]),
    }];
    let image = render(&camera, &items);
    let corners = cube
        .positions
        .iter()
        .map(|&p| camera.project(transform.transform_point3(p)))
        .collect::<Option<Vec<_>>>()
        .expect("cube is in front of the camera");
    let (area, perimeter) = hull_area_perimeter(corners.iter().map(|&(x, y, _)| (x, y)).collect());
    let count = covered(&image).len() as f32;
    assert!(area > 300.0, "test geometry too small: {area}");
    // Sampling at pixel centres errs by a fraction of the perimeter; cracks between faces or
    // overdraw would show up as much larger differences.
    assert!(
        (count - area).abs() <= 0.1 * perimeter + 3.0,
        "{count} vs {area}"
    );
}

#[test]
fn directly_lit_face_has_the_expected_srgb_colour() {
    let camera = origin_camera();
    let cube = Mesh::cuboid(Vec3::splat(0.2));
    let color = [0.8, 0.6, 0.4];
    let image = render(&camera, &[item(&cube, Vec3::new(0.0, 0.0, -2.0), color)]);
    let light = frontal_light();
    let expected = [0, 1, 2].map(|k| color[k] * (light.ambient[k] + light.color[k]));
    assert_close_rgb(pixel(&image, 48, 48), expected);

    // Light at 60° from the face normal: half the direct contribution.
    let tilted = Lighting {
        direction: Vec3::new(0.0, FRAC_PI_3.sin(), FRAC_PI_3.cos()),
        ..light
    };
    let mut out = Image::new(96, 96);
    let items = [item(&cube, Vec3::new(0.0, 0.0, -2.0), color)];
    Rasterizer::default().render(&camera, &items, &tilted, BACKGROUND, &mut out);
    let expected = [0, 1, 2].map(|k| color[k] * (light.ambient[k] + 0.5 * light.color[k]));
    assert_close_rgb(pixel(&out, 48, 48), expected);
}

#[test]
fn camera_inside_a_cuboid_sees_only_background() {
    let camera = origin_camera();
    let room = Mesh::cuboid(Vec3::splat(1.0));
    let image = render(&camera, &[item(&room, Vec3::ZERO, [0.9; 3])]);
    assert!(covered(&image).is_empty(), "inward faces must be culled");
    assert!(image.rgb.chunks(3).all(|p| p == background_rgb()));
}

#[test]
fn nearer_object_hides_the_farther_in_any_draw_order() {
    let camera = origin_camera();
    let small = Mesh::cuboid(Vec3::splat(0.1));
    let big = Mesh::cuboid(Vec3::splat(0.3));
    let red = [0.9, 0.05, 0.05];
    let green = [0.05, 0.9, 0.05];
    let front = item(&small, Vec3::new(0.0, 0.0, -1.5), red);
    let back = item(&big, Vec3::new(0.0, 0.0, -3.0), green);
    for items in [[front, back], [back, front]] {
        let image = render(&camera, &items);
        let centre = pixel(&image, 48, 48);
        assert!(centre[0] > centre[1], "red in front: {centre:?}");
        assert!((depth(&image, 48, 48) - 1.4).abs() < 0.014);
        // Beside the small cube, the big one shows through.
        let side = pixel(&image, 55, 48);
        assert!(side[1] > side[0], "green behind: {side:?}");
        assert!((depth(&image, 55, 48) - 2.7).abs() < 0.027);
    }
}

/// A 10 m square floor at y = -0.5 around the origin camera, so it passes behind the camera.
fn floor_through_camera() -> Mesh {
    Mesh {
        positions: vec![
            Vec3::new(-5.0, -0.5, 5.0),
            Vec3::new(5.0, -0.5, 5.0),
            Vec3::new(5.0, -0.5, -5.0),
            Vec3::new(-5.0, -0.5, -5.0),
        ],
        normals: vec![Vec3::Y; 4],
        triangles: vec![[0, 1, 2], [0, 2, 3]],
    }
}

#[test]
fn triangles_crossing_the_near_plane_are_clipped() {
    let camera = origin_camera();
    let floor = floor_through_camera();
    let image = render(&camera, &[item(&floor, Vec3::ZERO, [0.5; 3])]);
    let f = focal(&camera);
    // The far edge (z = -5) projects to this row; unclipped vertices behind the camera would
    // instead smear the floor over the upper half.
    let far_edge_row = 48.0 + f * 0.5 / 5.0;
    for y in 0..96 {
        let centre = y as f32 + 0.5;
        for x in 0..96 {
            let d = depth(&image, x, y);
            assert!((camera.near..=camera.far).contains(&d));
            if centre < far_edge_row - 0.5 {
                assert_eq!(d, camera.far, "above the floor at ({x}, {y})");
            } else if centre > far_edge_row + 0.5 {
                assert!(d < camera.far, "floor missing at ({x}, {y})");
            }
        }
    }
    // Ray through the bottom row's centres meets y = -0.5 at depth 0.5 f / (95.5 - 48).
    let expected = 0.5 * f / (95.5 - 48.0);
    assert!((depth(&image, 48, 95) - expected).abs() < 0.01 * expected);

    // A triangle whose corners sit between the camera and the near plane, and one behind it.
    let sliver = Mesh {
        positions: vec![
            Vec3::new(-0.5, -0.5, -0.005),
            Vec3::new(0.5, -0.5, 0.5),
            Vec3::new(0.0, 0.5, -2.0),
        ],
        normals: vec![Vec3::Z; 3],
        triangles: vec![[0, 1, 2], [0, 2, 1]],
    };
    let image = render(&camera, &[item(&sliver, Vec3::ZERO, [0.5; 3])]);
    assert!(!covered(&image).is_empty());
    assert!(
        image
            .depth
            .iter()
            .all(|d| (camera.near..=camera.far).contains(d))
    );
}

#[test]
fn empty_scene_is_background_at_far_depth() {
    let camera = origin_camera();
    let image = render(&camera, &[]);
    assert_eq!((image.width, image.height), (96, 96));
    assert_eq!(image.rgb.len(), 96 * 96 * 3);
    assert!(image.rgb.chunks(3).all(|p| p == background_rgb()));
    assert!(image.depth.iter().all(|&d| d == camera.far));
    assert_eq!(image.depth_to_gray(10.0)[0], 255);
}

#[test]
fn zero_size_camera_gives_an_empty_image() {
    let mut camera = origin_camera();
    camera.width = 0;
    let cube = Mesh::cuboid(Vec3::splat(0.2));
    let image = render(&camera, &[item(&cube, Vec3::new(0.0, 0.0, -2.0), [0.5; 3])]);
    assert_eq!(image.width, 0);
    assert!(image.rgb.is_empty() && image.depth.is_empty());
}

#[test]
fn stripes_move_with_the_object() {
    // 90° field of view: 48 px focal length, so at depth 2 one metre is 24 px and a 0.25 m
    // stripe is 6 px with its boundaries on pixel edges.
    let camera = Camera {
        fov_y: std::f32::consts::FRAC_PI_2,
        ..origin_camera()
    };
    let board = Mesh::cuboid(Vec3::new(1.0, 0.3, 0.05));
    let material = Material {
        color: [0.9, 0.9, 0.9],
        pattern: Pattern::Stripes {
            color: [0.05, 0.05, 0.6],
            period: 0.25,
            axis: 0,
        },
    };
    let at = |x: f32| DrawItem {
        mesh: &board,
        transform: Affine3A::from_translation(Vec3::new(x, 0.0, -2.05)),
        material,
    };
    let a = render(&camera, &[at(0.0)]);
    let b = render(&camera, &[at(0.25)]);
    let columns = 26..70;
    let distinct: std::collections::HashSet<_> =
        columns.clone().map(|x| pixel(&a, x, 48)).collect();
    assert_eq!(distinct.len(), 2, "both stripe colours visible");
    for x in columns {
        assert_eq!(pixel(&a, x, 48), pixel(&b, x + 6, 48), "column {x}");
        assert_ne!(
            pixel(&a, x, 48),
            pixel(&b, x, 48),
            "pattern must not stay in world space"
        );
    }
}

#[test]
fn project_agrees_with_where_the_rasterizer_draws() {
    let camera = Camera::look_at(
        Vec3::new(0.7, -0.4, 1.2),
        Vec3::new(0.0, 0.0, 0.3),
        Vec3::Z,
        1.0,
        96,
        72,
    );
    let dot = Mesh::cuboid(Vec3::splat(0.03));
    let at = Vec3::new(0.1, 0.05, 0.35);
    let image = render(&camera, &[item(&dot, at, [1.0; 3])]);
    let (px, py, d) = camera.project(at).expect("in front");
    let hits = covered(&image);
    assert!(hits.len() >= 4, "{} pixels", hits.len());
    let n = hits.len() as f32;
    let cx = hits.iter().map(|&(x, _)| x as f32 + 0.5).sum::<f32>() / n;
    let cy = hits.iter().map(|&(_, y)| y as f32 + 0.5).sum::<f32>() / n;
    assert!(
        (cx - px).abs() < 0.75 && (cy - py).abs() < 0.75,
        "({cx}, {cy}) vs ({px}, {py})"
    );
    let nearest = hits
        .iter()
        .map(|&(x, y)| depth(&image, x, y))
        .fold(f32::MAX, f32::min);
    // The nearest visible point is at most a half-diagonal in front of the centre.
    assert!(
        nearest < d && nearest > d - 0.03 * 3f32.sqrt(),
        "{nearest} vs {d}"
    );
}

/// The robot kitchen at roughly the detail the simulator uses (about 1000 triangles).
struct Kitchen {
    parts: Vec<(Mesh, Affine3A, Material)>,
}

impl Kitchen {
    fn new() -> Kitchen {
        let solid = Material::solid;
        let at = |x: f32, y: f32, z: f32| Affine3A::from_translation(Vec3::new(x, y, z));
        let mut parts = vec![
            (
                Mesh::cuboid(Vec3::new(3.0, 3.0, 0.01)),
                at(0.0, 0.0, -0.01),
                Material {
                    color: [0.55, 0.5, 0.45],
                    pattern: Pattern::Checker {
                        color: [0.35, 0.3, 0.28],
                        size: 0.3,
                    },
                },
            ),
            (
                Mesh::cuboid(Vec3::new(3.0, 0.02, 1.5)),
                at(0.0, 1.2, 1.5),
                solid([0.8, 0.8, 0.75]),
            ),
            (
                Mesh::cuboid(Vec3::new(0.6, 0.4, 0.025)),
                at(0.4, 0.0, 0.75),
                solid([0.45, 0.3, 0.18]),
            ),
            (
                Mesh::cuboid(Vec3::new(0.35, 0.3, 0.9)),
                at(-0.7, 0.7, 0.9),
                solid([0.85, 0.87, 0.9]),
            ),
            (
                Mesh::cylinder(0.015, 0.2, 6),
                at(-0.37, 0.5, 1.1),
                solid([0.3, 0.3, 0.3]),
            ),
            (
                Mesh::cuboid(Vec3::new(0.25, 0.2, 0.08)),
                at(0.4, 0.22, 0.62),
                Material {
                    color: [0.5, 0.35, 0.2],
                    pattern: Pattern::Stripes {
                        color: [0.4, 0.28, 0.16],
                        period: 0.03,
                        axis: 0,
                    },
                },
            ),
            (
                Mesh::sphere(0.04, 14, 8),
                at(0.55, -0.15, 0.815),
                solid([0.7, 0.05, 0.04]),
            ),
            (
                Mesh::frustum(0.05, 0.09, 0.03, 16),
                at(0.2, -0.2, 0.805),
                solid([0.9, 0.9, 0.85]),
            ),
            (
                Mesh::cylinder(0.2, 0.3, 16),
                at(-0.8, -0.8, 0.3),
                solid([0.3, 0.4, 0.35]),
            ),
        ];
        for (i, (x, y)) in [(-0.15, -0.25), (0.75, -0.3), (-0.1, 0.3), (0.7, 0.3)]
            .into_iter()
            .enumerate()
        {
            parts.push((
                Mesh::cuboid(Vec3::new(0.03, 0.03, 0.36)),
                at(x, y, 0.36),
                solid([0.4, 0.28, 0.16]),
            ));
            let hue = i as f32 / 4.0;
            let glass = solid([0.1 + 0.5 * hue, 0.6 - 0.3 * hue, 0.3]);
            let bottle = Mesh::merge(&[
                Mesh::cylinder(0.03, 0.07, 10),
                Mesh::frustum(0.03, 0.012, 0.03, 10).transformed(at(0.0, 0.0, 0.1)),
                Mesh::cylinder(0.012, 0.025, 8).transformed(at(0.0, 0.0, 0.155)),
            ]);
            parts.push((bottle, at(0.1 + 0.12 * i as f32, 0.15, 0.845), glass));
        }
        // The arm: base, then links as capsules along a bent chain.
        parts.push((
            Mesh::cylinder(0.08, 0.05, 16),
            at(0.9, -0.25, 0.825),
            solid([0.2, 0.2, 0.22]),
        ));
        let mut joint = Vec3::new(0.9, -0.25, 0.87);
        let link = Mesh::capsule(0.035, 0.14, 10);
        for (k, dir) in [
            Vec3::new(0.0, 0.0, 1.0),
            Vec3::new(-0.6, 0.1, 0.6),
            Vec3::new(-0.7, 0.0, -0.4),
        ]
        .into_iter()
        .enumerate()
        {
            let dir = dir.normalize();
            let centre = joint + dir * 0.14;
            let pose =
                Affine3A::from_rotation_translation(Quat::from_rotation_arc(Vec3::Z, dir), centre);
            let shade = if k % 2 == 0 {
                [0.9, 0.55, 0.1]
            } else {
                [0.85, 0.85, 0.85]
            };
            parts.push((link.clone(), pose, solid(shade)));
            joint = centre + dir * 0.14;
        }
        Kitchen { parts }
    }

    fn items(&self) -> Vec<DrawItem<'_>> {
        self.parts
            .iter()
            .map(|(mesh, transform, material)| DrawItem {
                mesh,
                transform: *transform,
                material: *material,
            })
            .collect()
    }

    fn triangle_count(&self) -> usize {
        self.parts.iter().map(|(m, _, _)| m.triangle_count()).sum()
    }

    fn camera(width: usize, height: usize) -> Camera {
        Camera::look_at(
            Vec3::new(1.7, -1.3, 1.55),
            Vec3::new(0.35, 0.05, 0.8),
            Vec3::Z,
            0.9,
            width,
            height,
        )
    }

    fn render(&self, rasterizer: &mut Rasterizer, width: usize, height: usize) -> Image {
        let mut out = Image::new(width, height);
        let lighting = Lighting::default();
        rasterizer.render(
            &Kitchen::camera(width, height),
            &self.items(),
            &lighting,
            BACKGROUND,
            &mut out,
        );
        out
    }
}

#[test]
fn render_is_deterministic_and_reuses_scratch_cleanly() {
    let kitchen = Kitchen::new();
    let mut shared = Rasterizer::default();
    let triangles = kitchen.triangle_count();
    assert!(
        (800..=1500).contains(&triangles),
        "{triangles} triangles: keep the timing scene typical"
    );
    let first = kitchen.render(&mut shared, 96, 96);
    // A different frame in between must leave nothing behind in the scratch buffers.
    let _ = kitchen.render(&mut shared, 40, 30);
    let again = kitchen.render(&mut shared, 96, 96);
    let fresh = kitchen.render(&mut Rasterizer::default(), 96, 96);
    assert_eq!(first, again);
    assert_eq!(first, fresh);
    assert!(
        covered(&first).len() > 96 * 96 / 2,
        "the kitchen fills most of the view"
    );
}

#[test]
fn demo_render_saved_on_request() {
    let Ok(dir) = std::env::var("MULLI_SAVE_RENDERS") else {
        return;
    };
    let dir = if dir.is_empty() {
        std::env::temp_dir()
    } else {
        std::env::temp_dir().join(dir)
    };
    std::fs::create_dir_all(&dir).expect("create render directory");
    let kitchen = Kitchen::new();
    for size in [96, 256] {
        let image = kitchen.render(&mut Rasterizer::default(), size, size);
        let (w, h) = (size as u32, size as u32);
        let rgb = mulli_data::encode_png(&image.rgb, w, h, 3).expect("encode rgb");
        let gray =
            mulli_data::encode_png(&image.depth_to_gray(4.0), w, h, 1).expect("encode depth");
        std::fs::write(dir.join(format!("mulli_kitchen_{size}.png")), rgb).expect("write png");
        std::fs::write(dir.join(format!("mulli_kitchen_{size}_depth.png")), gray)
            .expect("write png");
    }
    eprintln!("renders saved under {}", dir.display());
}

/// Rough speed check: `cargo test -p mulli-sim --release --lib render::tests::timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_kitchen_96() {
    let kitchen = Kitchen::new();
    let mut rasterizer = Rasterizer::default();
    let camera = Kitchen::camera(96, 96);
    let items = kitchen.items();
    let lighting = Lighting::default();
    let mut out = Image::new(96, 96);
    let frames = 20_000;
    for _ in 0..200 {
        rasterizer.render(&camera, &items, &lighting, BACKGROUND, &mut out);
    }
    let start = std::time::Instant::now();
    for _ in 0..frames {
        rasterizer.render(&camera, &items, &lighting, BACKGROUND, &mut out);
    }
    let per_frame = start.elapsed() / frames;
    eprintln!(
        "{} triangles, 96×96: {:.1} µs/frame ({:.0} fps)",
        kitchen.triangle_count(),
        per_frame.as_secs_f64() * 1e6,
        1.0 / per_frame.as_secs_f64()
    );
}

fn wild_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -3.0f32..3.0,
        1 => prop_oneof![
            Just(f32::NAN),
            Just(f32::INFINITY),
            Just(f32::NEG_INFINITY),
            Just(1e30f32),
            Just(-1e30f32),
            Just(0.0f32),
            Just(1e-30f32),
        ],
        1 => -1e6f32..1e6,
    ]
}

fn wild_vec3() -> impl Strategy<Value = Vec3> {
    (wild_f32(), wild_f32(), wild_f32()).prop_map(|(x, y, z)| Vec3::new(x, y, z))
}

fn wild_transform() -> impl Strategy<Value = Affine3A> {
    prop_oneof![
        3 => (wild_vec3(), -3.0f32..3.0, wild_vec3()).prop_map(|(axis, angle, t)| {
            let axis = axis.try_normalize().unwrap_or(Vec3::Z);
            Affine3A::from_rotation_translation(Quat::from_axis_angle(axis, angle), t)
        }),
        1 => (wild_vec3(), wild_vec3(), wild_vec3(), wild_vec3())
            .prop_map(|(x, y, z, w)| Affine3A::from_cols(x.into(), y.into(), z.into(), w.into())),
    ]
}

fn wild_mesh() -> impl Strategy<Value = Mesh> {
    (
        prop::collection::vec(wild_vec3(), 0..10),
        prop::collection::vec(wild_vec3(), 0..10),
        prop::collection::vec([0u32..12, 0u32..12, 0u32..12], 0..16),
    )
        .prop_map(|(positions, normals, triangles)| Mesh {
            positions,
            normals,
            triangles,
        })
}

fn wild_camera() -> impl Strategy<Value = Camera> {
    (
        0usize..24,
        0usize..24,
        prop_oneof![4 => 0.05f32..3.1, 1 => wild_f32()],
        1e-3f32..0.5,
        1.1f32..1000.0,
        wild_vec3(),
        wild_vec3(),
    )
        .prop_map(
            |(width, height, fov_y, near, far_ratio, eye, target)| Camera {
                near,
                far: near * far_ratio,
                ..Camera::look_at(eye, target, Vec3::Z, fov_y, width, height)
            },
        )
}

proptest! {
    #[test]
    fn arbitrary_scenes_never_panic_and_depth_stays_in_range(
        camera in wild_camera(),
        scene in prop::collection::vec((wild_mesh(), wild_transform(), wild_vec3()), 0..4),
        light in wild_vec3(),
    ) {
        let items: Vec<DrawItem<'_>> = scene
            .iter()
            .map(|(mesh, transform, color)| DrawItem {
                mesh,
                transform: *transform,
                material: Material {
                    color: color.to_array(),
                    pattern: Pattern::Checker { color: [0.5; 3], size: color.x },
                },
            })
            .collect();
        let lighting = Lighting { direction: light, color: [light.x; 3], ambient: [0.2; 3] };
        let mut out = Image::new(3, 3);
        Rasterizer::default().render(&camera, &items, &lighting, BACKGROUND, &mut out);
        prop_assert_eq!((out.width, out.height), (camera.width, camera.height));
        prop_assert_eq!(out.rgb.len(), 3 * camera.width * camera.height);
        prop_assert_eq!(out.depth.len(), camera.width * camera.height);
        for &d in &out.depth {
            prop_assert!(d >= camera.near && d <= camera.far, "depth {} outside [{}, {}]", d, camera.near, camera.far);
        }
    }

    #[test]
    fn garbage_camera_ranges_never_panic(
        near in wild_f32(),
        far in wild_f32(),
        fov_y in wild_f32(),
        pose in wild_transform(),
    ) {
        let camera = Camera { width: 8, height: 6, fov_y, near, far, pose };
        let cube = Mesh::cuboid(Vec3::splat(0.5));
        let items = [item(&cube, Vec3::new(0.0, 0.0, -2.0), [0.5; 3])];
        let mut out = Image::new(0, 0);
        Rasterizer::default().render(&camera, &items, &frontal_light(), BACKGROUND, &mut out);
        prop_assert_eq!(out.rgb.len(), 8 * 6 * 3);
    }
}

#[test]
fn sphere_culling_is_conservative() {
    use glam::Vec3;
    let cam = super::Camera::look_at(Vec3::new(0.0, 0.0, 1.0), Vec3::ZERO, Vec3::Y, 1.0, 64, 48);
    assert!(cam.sees_sphere(Vec3::ZERO, 0.01));
    assert!(
        !cam.sees_sphere(Vec3::new(0.0, 0.0, 2.0), 0.5),
        "behind the camera"
    );
    assert!(
        !cam.sees_sphere(Vec3::new(5.0, 0.0, 0.0), 0.5),
        "far to the side"
    );
    // A sphere just outside the image edge but overlapping it by its radius is kept.
    let edge = (0.5f32).tan() * 64.0 / 48.0; // half-width at depth 1
    assert!(cam.sees_sphere(Vec3::new(edge + 0.05, 0.0, 0.0), 0.1));
    // Every point the camera projects into the image lies in a sphere it keeps.
    for &(x, y) in &[(0.3f32, 0.2f32), (-0.5, 0.4), (0.6, -0.45)] {
        let p = Vec3::new(x, y, 0.0);
        if let Some((px, py, _)) = cam.project(p)
            && (0.0..64.0).contains(&px)
            && (0.0..48.0).contains(&py)
        {
            {
                assert!(
                    cam.sees_sphere(p, 0.0),
                    "{p} projects to ({px},{py}) but was culled"
                );
            }
        }
    }
}

#[test]
fn layered_rendering_equals_drawing_everything_and_tracks_changes() {
    let kitchen = Kitchen::new();
    let items = kitchen.items();
    let (fixed, moving) = items.split_at(items.len() / 2);
    let light = frontal_light();
    let camera = Kitchen::camera(96, 96);
    let reference = {
        let mut ordered = fixed.to_vec();
        ordered.extend_from_slice(moving);
        let mut img = Image::new(0, 0);
        Rasterizer::default().render(&camera, &ordered, &light, [0.1, 0.2, 0.3], &mut img);
        img
    };
    let mut r = Rasterizer::default();
    let mut first = Image::new(0, 0);
    r.render_layered(&camera, fixed, moving, &light, [0.1, 0.2, 0.3], &mut first);
    assert_eq!(first, reference, "first (uncached) layered frame");
    // Cached static layer, and an unrelated frame in between, change nothing.
    let mut other = Image::new(0, 0);
    r.render(
        &Kitchen::camera(40, 30),
        &items,
        &light,
        [0.0; 3],
        &mut other,
    );
    let mut again = Image::new(0, 0);
    r.render_layered(&camera, fixed, moving, &light, [0.1, 0.2, 0.3], &mut again);
    assert_eq!(again, reference, "cached layered frame");
    // Moving a static item, the camera or the light invalidates the cache.
    let mut moved = fixed.to_vec();
    moved[0].transform = Affine3A::from_translation(Vec3::new(0.05, 0.0, 0.0)) * moved[0].transform;
    let mut expect = moved.clone();
    expect.extend_from_slice(moving);
    let mut want = Image::new(0, 0);
    Rasterizer::default().render(&camera, &expect, &light, [0.1, 0.2, 0.3], &mut want);
    let mut got = Image::new(0, 0);
    r.render_layered(&camera, &moved, moving, &light, [0.1, 0.2, 0.3], &mut got);
    assert_eq!(got, want, "static item moved");
    let dim = Lighting {
        ambient: [0.05; 3],
        ..light
    };
    let mut want = Image::new(0, 0);
    Rasterizer::default().render(&camera, &expect, &dim, [0.1, 0.2, 0.3], &mut want);
    r.render_layered(&camera, &moved, moving, &dim, [0.1, 0.2, 0.3], &mut got);
    assert_eq!(got, want, "lighting changed");
    let small = Kitchen::camera(64, 48);
    let mut want = Image::new(0, 0);
    Rasterizer::default().render(&small, &expect, &dim, [0.1, 0.2, 0.3], &mut want);
    r.render_layered(&small, &moved, moving, &dim, [0.1, 0.2, 0.3], &mut got);
    assert_eq!(got, want, "camera changed");
}
