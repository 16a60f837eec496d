//! The kitchen as rapier3d bodies and render meshes: table, fridge with a hinged door and a
//! shelf, a drawer cabinet, receptacles, objects, and the arm with its friction gripper.
//!
//! Frames: z up, metres; the arm's base sits at the world origin on the table top (z = 0)
//! facing +x. The fridge stands on the robot's left (+y), the drawer cabinet on its right.
//!
//! The arm links and the hand are kinematic bodies that follow the joint trajectory exactly
//! (an ideal position-controlled arm, as a stiff Panda impedance controller behaves); the
//! two fingers are dynamic bodies on prismatic joints with force-limited motors, so objects
//! are held only by friction between the fingers.

use crate::layout::{Layout, Placement};
use crate::objects::{ObjectKind, Receptacle, Shape};
use crate::render::{DrawItem, Material, Mesh, Pattern};
use crate::robot::{self, DOF, Joints};
use glam::{Affine3A, DAffine3, DQuat, Quat, Vec3};
use rapier3d::prelude::*;

/// Physics rate (Hz) and step (s). Measured: at 60 Hz the side-grasped bottle of the fridge
/// task slips in 28 % of expert runs (2 % at 100 Hz), whatever the finger force.
pub const PHYSICS_HZ: u32 = 100;
pub const PHYSICS_DT: f32 = 1.0 / PHYSICS_HZ as f32;

/// Fridge outer half extents (x depth, y width, z height) and wall thickness.
pub const FRIDGE_HALF: [f32; 3] = [0.12, 0.15, 0.2];
pub const FRIDGE_WALL: f32 = 0.015;
/// Height of the shelf's top surface above the table.
pub const FRIDGE_SHELF_Z: f32 = 0.2;
/// Door: thickness, handle standoff from the door's outer face, handle half length.
const DOOR_T: f32 = 0.015;
const HANDLE_STANDOFF: f32 = 0.04;
const HANDLE_R: f32 = 0.007;
const DOOR_HANDLE_HALF: f32 = 0.07;
/// Door handle position along the door (from the door's centre towards the free edge).
const DOOR_HANDLE_Y: f32 = -FRIDGE_HALF[1] + 0.04;
/// Door opening limit (rad).
pub const DOOR_MAX: f32 = 1.9;

/// Drawer cabinet outer half extents and the drawer's travel.
pub const CABINET_HALF: [f32; 3] = [0.13, 0.14, 0.09];
pub const DRAWER_TRAVEL: f32 = 0.16;
const DRAWER_HANDLE_Z: f32 = 0.14;
const DRAWER_HANDLE_HALF: f32 = 0.06;

/// Gripper geometry (tool frame: z = approach, y = finger motion).
pub const FINGER_HALF: [f32; 3] = [0.01, 0.006, 0.025];
/// Finger centre along the approach axis relative to the tool centre point.
pub const FINGER_Z: f32 = -0.022;
pub const PALM_HALF: [f32; 3] = [0.03, 0.075, 0.022];
pub const PALM_Z: f32 = -0.07;
/// Maximum finger force (N), as Panda's continuous gripping force is about 70 N for both.
pub const FINGER_FORCE: f32 = 40.0;

// Collision groups. The kinematic arm cannot respond to contacts, so its links only touch
// loose objects (which it pushes); it passes through furniture like through fixed walls,
// which keeps a swinging elbow from slamming the fridge door. The hand (palm) also pushes
// the door and drawer; the dynamic fingers touch everything except the arm.
const G_WORLD: Group = Group::GROUP_1;
const G_OBJECT: Group = Group::GROUP_2;
const G_ARM: Group = Group::GROUP_3;
const G_FINGER: Group = Group::GROUP_4;
/// Door and drawer: dynamic furniture.
const G_FURNITURE: Group = Group::GROUP_5;
const G_HAND: Group = Group::GROUP_6;

fn groups(member: Group) -> InteractionGroups {
    let filter = if member == G_WORLD {
        G_OBJECT | G_FINGER
    } else if member == G_OBJECT {
        G_WORLD | G_OBJECT | G_ARM | G_HAND | G_FINGER | G_FURNITURE
    } else if member == G_FURNITURE {
        G_OBJECT | G_HAND | G_FINGER
    } else if member == G_ARM {
        G_OBJECT
    } else if member == G_HAND {
        G_OBJECT | G_FURNITURE
    } else {
        G_WORLD | G_OBJECT | G_FINGER | G_FURNITURE
    };
    InteractionGroups::new(member, filter, InteractionTestMode::And)
}

/// A draw item with its world bounding sphere, and whether it can never move (furniture
/// on fixed bodies and the world itself).
#[derive(Clone, Copy)]
pub struct SceneItem<'a> {
    pub item: DrawItem<'a>,
    pub center: Vec3,
    pub radius: f32,
    pub fixed: bool,
}

/// Something drawn: a mesh attached to a body (or to the world) with a local transform.
#[derive(Clone, Debug)]
pub struct Visual {
    pub body: Option<RigidBodyHandle>,
    pub mesh: usize,
    pub local: Affine3A,
    pub material: Material,
    /// Bounding sphere of the mesh in its own frame (for culling whole objects per camera).
    pub bound: (Vec3, f32),
}

#[derive(Clone, Debug)]
pub struct SceneObject {
    pub kind: ObjectKind,
    pub body: RigidBodyHandle,
    pub collider: ColliderHandle,
}

#[derive(Clone, Debug)]
pub struct SceneReceptacle {
    pub kind: Receptacle,
    pub body: RigidBodyHandle,
}

/// The arm's bodies and its commanded state.
#[derive(Clone, Debug)]
pub struct Arm {
    pub links: [RigidBodyHandle; DOF],
    pub hand: RigidBodyHandle,
    pub fingers: [RigidBodyHandle; 2],
    pub finger_colliders: [ColliderHandle; 2],
    pub finger_joints: [ImpulseJointHandle; 2],
    /// Joint positions the kinematic links are at.
    pub q: Joints,
    /// Commanded finger opening (m, distance between the fingers).
    pub gripper_target: f32,
}

/// A built kitchen.
pub struct Scene {
    pub world: PhysicsWorld,
    pub meshes: Vec<Mesh>,
    pub visuals: Vec<Visual>,
    pub objects: Vec<SceneObject>,
    pub receptacles: Vec<SceneReceptacle>,
    pub fridge: RigidBodyHandle,
    pub door: RigidBodyHandle,
    pub cabinet: RigidBodyHandle,
    pub drawer: RigidBodyHandle,
    pub arm: Arm,
    pub floor_color: [f32; 3],
    pub layout: Layout,
    /// Rapier quarantined a body whose state went non-finite (a physics blow-up).
    pub fault: bool,
}

fn v(x: f32, y: f32, z: f32) -> Vec3 {
    Vec3::new(x, y, z)
}

fn pose(t: Vec3, yaw: f32) -> Pose {
    Pose::from_parts(t, Quat::from_rotation_z(yaw))
}

pub(crate) fn to_pose(a: &DAffine3) -> Pose {
    let q = DQuat::from_mat3(&a.matrix3).normalize();
    Pose::from_parts(a.translation.as_vec3(), q.as_quat())
}

/// Builds meshes and visuals while the bodies are created.
struct Builder {
    world: PhysicsWorld,
    meshes: Vec<Mesh>,
    visuals: Vec<Visual>,
    /// Mesh detail (1 = full); round things get fewer segments for small images.
    detail: f32,
}

impl Builder {
    /// Segments for a round mesh designed with `n` at full detail.
    fn seg(&self, n: usize) -> usize {
        ((n as f32 * self.detail).round() as usize).max(6)
    }
    fn mesh(&mut self, mesh: Mesh) -> usize {
        self.meshes.push(mesh);
        self.meshes.len() - 1
    }
    fn visual(
        &mut self,
        body: Option<RigidBodyHandle>,
        mesh: Mesh,
        local: Affine3A,
        material: Material,
    ) {
        let bound = mesh.bounding_sphere();
        let mesh = self.mesh(mesh);
        self.visuals.push(Visual {
            body,
            mesh,
            local,
            material,
            bound,
        });
    }
    /// A box open at its front (-x): back, sides, top and a floor (`floor_half_y` wide, in
    /// `floor_mat`), walls `t` thick, outer half extents `half`, standing on z = 0.
    fn carcass(
        &mut self,
        body: RigidBodyHandle,
        half: [f32; 3],
        t: f32,
        mat: Material,
        floor_half_y: f32,
        floor_mat: Material,
    ) {
        let [hx, hy, hz] = half;
        let walls = [
            (v(hx - t / 2.0, 0.0, hz), v(t / 2.0, hy, hz), mat),
            (v(0.0, hy - t / 2.0, hz), v(hx, t / 2.0, hz), mat),
            (v(0.0, -hy + t / 2.0, hz), v(hx, t / 2.0, hz), mat),
            (v(0.0, 0.0, 2.0 * hz - t / 2.0), v(hx, hy, t / 2.0), mat),
            (
                v(0.0, 0.0, t / 2.0),
                v(hx, floor_half_y, t / 2.0),
                floor_mat,
            ),
        ];
        for (center, half, material) in walls {
            self.box_part(body, center, half, G_WORLD, 0.6, material);
        }
    }

    /// A cuboid collider on `body` at `center` (body frame) plus its visual.
    fn box_part(
        &mut self,
        body: RigidBodyHandle,
        center: Vec3,
        half: Vec3,
        group: Group,
        friction: f32,
        material: Material,
    ) -> ColliderHandle {
        let collider = ColliderBuilder::cuboid(half.x, half.y, half.z)
            .translation(center)
            .friction(friction)
            .collision_groups(groups(group))
            .density(0.0)
            .build();
        let h = self
            .world
            .colliders
            .insert_with_parent(collider, body, &mut self.world.bodies);
        self.visual(
            Some(body),
            Mesh::cuboid(half),
            Affine3A::from_translation(center),
            material,
        );
        h
    }
}

impl Scene {
    /// Build the physics world and visuals for `layout`, with the arm at `q`.
    pub fn build(layout: &Layout, q: Joints) -> Scene {
        Self::build_with_detail(layout, q, 1.0)
    }

    /// [`Scene::build`] with render-mesh detail `detail` (1 = full; 0.67 suits 96×96 images,
    /// where a 12-sided bottle is 8 pixels wide). Physics is the same at any detail.
    pub fn build_with_detail(layout: &Layout, q: Joints, detail: f32) -> Scene {
        let mut world = PhysicsWorld::new();
        world.gravity = v(0.0, 0.0, -9.81);
        world.integration_parameters.dt = PHYSICS_DT;
        let mut b = Builder {
            world,
            meshes: Vec::new(),
            visuals: Vec::new(),
            detail: detail.clamp(0.1, 4.0),
        };
        let p = &layout.palette;

        // Table (top surface at z = 0) and its legs.
        let table = b.world.bodies.insert(RigidBodyBuilder::fixed());
        b.box_part(
            table,
            v(0.35, 0.0, -0.025),
            v(0.65, 0.8, 0.025),
            G_WORLD,
            0.7,
            p.table,
        );
        for (x, y) in [(-0.25, -0.75), (-0.25, 0.75), (0.95, -0.75), (0.95, 0.75)] {
            b.visual(
                None,
                Mesh::cuboid(v(0.03, 0.03, 0.36)),
                Affine3A::from_translation(v(x, y, -0.41)),
                p.table,
            );
        }
        // The floor catches what falls off the table (tasks then fail, but nothing falls forever).
        let floor = b.world.bodies.insert(RigidBodyBuilder::fixed());
        let floor_collider = ColliderBuilder::cuboid(3.0, 3.0, 0.05)
            .translation(v(0.3, 0.0, -0.82))
            .collision_groups(groups(G_WORLD))
            .build();
        b.world
            .colliders
            .insert_with_parent(floor_collider, floor, &mut b.world.bodies);
        b.visual(
            None,
            Mesh::cuboid(v(3.0, 3.0, 0.01)),
            Affine3A::from_translation(v(0.3, 0.0, -0.78)),
            Material::solid(p.floor),
        );

        let (fridge, door) = build_fridge(
            &mut b,
            &layout.fridge,
            layout.fridge_door,
            p.fridge,
            p.fridge_door,
            p.handle,
        );
        let (cabinet, drawer) = build_cabinet(
            &mut b,
            &layout.cabinet,
            layout.drawer_opening,
            p.cabinet,
            p.drawer,
            p.handle,
        );

        let receptacles = layout
            .receptacles
            .iter()
            .map(|r| SceneReceptacle {
                kind: r.kind,
                body: build_receptacle(&mut b, r.kind, &r.placement, r.material),
            })
            .collect();
        let objects = layout
            .objects
            .iter()
            .map(|o| {
                let (body, collider) = build_object(
                    &mut b,
                    o.kind,
                    &o.placement,
                    o.physical.mass,
                    o.physical.friction,
                    o.material,
                );
                SceneObject {
                    kind: o.kind,
                    body,
                    collider,
                }
            })
            .collect();

        let arm = build_arm(&mut b, q, &layout.palette);
        Scene {
            world: b.world,
            meshes: b.meshes,
            visuals: b.visuals,
            objects,
            receptacles,
            fridge,
            door,
            cabinet,
            drawer,
            arm,
            floor_color: p.floor,
            layout: layout.clone(),
            fault: false,
        }
    }

    /// Draw items for the current physics state.
    pub fn draw_items(&self) -> Vec<SceneItem<'_>> {
        self.visuals
            .iter()
            .map(|vis| {
                let (world, fixed) = match vis.body {
                    Some(h) => {
                        let b = &self.world.bodies[h];
                        let p = b.position();
                        (
                            Affine3A::from_rotation_translation(p.rotation, p.translation),
                            b.is_fixed(),
                        )
                    }
                    None => (Affine3A::IDENTITY, true),
                };
                let transform = world * vis.local;
                let center = transform.transform_point3(vis.bound.0);
                let item = DrawItem {
                    mesh: &self.meshes[vis.mesh],
                    transform,
                    material: vis.material,
                };
                SceneItem {
                    item,
                    center,
                    radius: vis.bound.1,
                    fixed,
                }
            })
            .collect()
    }

    pub fn body_pose(&self, h: RigidBodyHandle) -> Pose {
        *self.world.bodies[h].position()
    }

    pub fn object(&self, kind: ObjectKind) -> Option<&SceneObject> {
        self.objects.iter().find(|o| o.kind == kind)
    }

    pub fn object_pose(&self, kind: ObjectKind) -> Option<Pose> {
        self.object(kind).map(|o| self.body_pose(o.body))
    }

    pub fn receptacle_pose(&self, kind: Receptacle) -> Option<Pose> {
        self.receptacles
            .iter()
            .find(|r| r.kind == kind)
            .map(|r| self.body_pose(r.body))
    }

    /// Fridge door opening angle (rad, 0 = closed, positive = open).
    pub fn door_angle(&self) -> f32 {
        let f = self.body_pose(self.fridge).rotation;
        let d = self.body_pose(self.door).rotation;
        let rel = f.inverse() * d;
        // Opening rotates the door about -z.
        let (axis, angle) = rel.to_axis_angle();
        if angle.abs() < 1e-6 {
            0.0
        } else {
            -axis.z * angle
        }
    }

    /// Drawer opening (m, 0 = closed).
    pub fn drawer_opening(&self) -> f32 {
        let c = self.body_pose(self.cabinet);
        let d = self.body_pose(self.drawer);
        let local = c.inverse_transform_point(d.translation);
        -(local.x - drawer_closed_x())
    }

    /// Fridge frame (origin at the fridge's centre on the table, x pointing to its back).
    pub fn fridge_pose(&self) -> Pose {
        self.body_pose(self.fridge)
    }

    pub fn cabinet_pose(&self) -> Pose {
        self.body_pose(self.cabinet)
    }

    /// World position of the door handle's top end and the door's current outward normal.
    pub fn door_handle(&self) -> (Vec3, Vec3) {
        let d = self.body_pose(self.door);
        let top = d.transform_point(door_handle_local() + v(0.0, 0.0, DOOR_HANDLE_HALF));
        let normal = d.transform_vector(v(-1.0, 0.0, 0.0));
        (top, normal)
    }

    /// World position of the drawer handle's centre.
    pub fn drawer_handle(&self) -> Vec3 {
        self.body_pose(self.drawer)
            .transform_point(drawer_handle_local())
    }

    /// World hinge axis point of the fridge door (at table height).
    pub fn door_hinge(&self) -> Vec3 {
        let f = self.fridge_pose();
        f.transform_point(v(
            -FRIDGE_HALF[0] - DOOR_T / 2.0 - 0.002,
            FRIDGE_HALF[1],
            0.0,
        ))
    }

    /// Tool-centre-point pose (world) from the arm's joint positions.
    pub fn tcp(&self) -> DAffine3 {
        robot::forward(&self.arm.q).tcp
    }

    /// Measured distance between the fingers' inner faces.
    pub fn gripper_width(&self) -> f32 {
        let hand = self.body_pose(self.arm.hand);
        let a = hand
            .inverse_transform_point(self.body_pose(self.arm.fingers[0]).translation)
            .y
            - FINGER_HALF[1];
        let b = hand
            .inverse_transform_point(self.body_pose(self.arm.fingers[1]).translation)
            .y
            + FINGER_HALF[1];
        (a - b).max(0.0)
    }

    /// Whether both fingers touch the collider of `kind`.
    pub fn is_grasped(&self, kind: ObjectKind) -> bool {
        let Some(obj) = self.object(kind) else {
            return false;
        };
        self.arm.finger_colliders.iter().all(|&f| {
            self.world
                .narrow_phase
                .contact_pair(f, obj.collider)
                .is_some_and(|c| c.has_any_active_contact())
        })
    }

    /// Whether the hand holds `kind`: both fingers touch it and are commanded to close.
    /// Why not [`Self::is_grasped`] alone: an open hand coming down around the apple
    /// touches it with both fingers before it closes.
    pub fn holds(&self, kind: ObjectKind) -> bool {
        self.arm.gripper_target < (robot::GRIPPER_MAX_WIDTH / 2.0) as f32 && self.is_grasped(kind)
    }

    /// Moves the loose object `kind` horizontally by `offset` (m) and stops it, if the new
    /// spot is inside the placement region and clear of every other object and receptacle;
    /// returns whether it moved. Why: a recorder's perturbation (the object slips away as
    /// the hand closes on it, [`crate::record::RecordOptions::slip`]), so that demos show
    /// what to do after a missed grasp.
    pub fn displace_object(&mut self, kind: ObjectKind, offset: glam::Vec2) -> bool {
        let Some(obj) = self.object(kind) else {
            return false;
        };
        let body = obj.body;
        let r = kind.shape().footprint_radius();
        let at = self.body_pose(body).translation + offset.extend(0.0);
        let (px, py) = (crate::layout::PLACE_X, crate::layout::PLACE_Y);
        if at.x < px.0 + r || at.x > px.1 - r || at.y < py.0 + r || at.y > py.1 - r {
            return false;
        }
        let clear = |c: Vec3, cr: f32| (at - c).truncate().length() >= r + cr + 0.01;
        let objects_clear = self.objects.iter().filter(|o| o.kind != kind).all(|o| {
            clear(
                self.body_pose(o.body).translation,
                o.kind.shape().footprint_radius(),
            )
        });
        let receptacles_clear = self.receptacles.iter().all(|rc| {
            clear(
                self.body_pose(rc.body).translation,
                rc.kind.footprint_radius(),
            )
        });
        if !objects_clear || !receptacles_clear {
            return false;
        }
        let b = &mut self.world.bodies[body];
        b.set_translation(at, true);
        b.set_linvel(Vec3::ZERO, true);
        b.set_angvel(Vec3::ZERO, true);
        true
    }

    /// Slides the loose object `kind` `distance` m (signed) along the hand's horizontal x
    /// axis — across the fingers' closing direction, so it leaves the gap between them
    /// without passing through one — or, where that spot is taken, the other way, with
    /// [`Self::displace_object`]'s checks.
    pub fn slip_object(&mut self, kind: ObjectKind, distance: f32) -> bool {
        let x = self.body_pose(self.arm.hand).rotation * Vec3::X;
        let dir = x.truncate().normalize_or_zero();
        dir != glam::Vec2::ZERO
            && (self.displace_object(kind, dir * distance)
                || self.displace_object(kind, -dir * distance))
    }

    /// Whether any finger touches the collider of `kind`.
    pub fn touches(&self, kind: ObjectKind) -> bool {
        let Some(obj) = self.object(kind) else {
            return false;
        };
        self.arm.finger_colliders.iter().any(|&f| {
            self.world
                .narrow_phase
                .contact_pair(f, obj.collider)
                .is_some_and(|c| c.has_any_active_contact())
        })
    }

    /// Set the finger motors to open to `width` (m).
    pub fn set_gripper(&mut self, width: f32) {
        let width = width.clamp(0.0, robot::GRIPPER_MAX_WIDTH as f32);
        self.arm.gripper_target = width;
        for &j in &self.arm.finger_joints {
            if let Some(joint) = self.world.impulse_joints.get_mut(j, true) {
                joint
                    .data
                    .set_motor_position(JointAxis::LinX, width / 2.0, 2000.0, 80.0);
            }
        }
    }

    /// Move the kinematic arm to `q` by the end of the next physics step.
    pub fn drive_arm(&mut self, q: &Joints) {
        self.arm.q = *q;
        let pose = robot::forward(q);
        for (i, &h) in self.arm.links.iter().enumerate() {
            self.world.bodies[h].set_next_kinematic_position(to_pose(&pose.links[i]));
        }
        self.world.bodies[self.arm.hand].set_next_kinematic_position(to_pose(&pose.tcp));
    }

    /// One physics step; remembers whether rapier had to quarantine a non-finite body.
    pub fn step(&mut self) {
        self.world.step();
        self.fault |= !self.world.quarantine().is_empty();
    }

    /// Whether every dynamic body has a finite pose and none was quarantined (physics has
    /// not blown up).
    pub fn is_finite(&self) -> bool {
        !self.fault
            && self.world.bodies.iter().all(|(_, b)| {
                b.position().translation.is_finite() && b.position().rotation.is_finite()
            })
    }
}

/// World position of the drawer handle's centre for a cabinet centred at `cabinet` (x, y on
/// the table, yaw 0 as layouts place it) with the drawer open by `opening` (m): what
/// [`Scene::drawer_handle`] returns, computed from the environment state alone.
pub fn drawer_handle_at(cabinet: [f32; 2], opening: f32) -> Vec3 {
    v(cabinet[0], cabinet[1], 0.0)
        + v(drawer_closed_x() - opening, 0.0, CABINET_HALF[2])
        + drawer_handle_local()
}

/// World position of the fridge door handle's top end for a fridge centred at `fridge` (x, y,
/// yaw 0) with the door open by `angle` (rad): what [`Scene::door_handle`] returns, from the
/// environment state alone.
pub fn door_handle_at(fridge: [f32; 2], angle: f32) -> Vec3 {
    let [hx, hy, hz] = FRIDGE_HALF;
    let hinge = v(fridge[0], fridge[1], 0.0) + v(-hx - DOOR_T / 2.0 - 0.002, hy, hz);
    let rot = Quat::from_rotation_z(-angle);
    hinge + rot * (v(0.0, -hy, 0.0) + door_handle_local() + v(0.0, 0.0, DOOR_HANDLE_HALF))
}

fn door_handle_local() -> Vec3 {
    v(-DOOR_T / 2.0 - HANDLE_STANDOFF, DOOR_HANDLE_Y, 0.0)
}

fn build_fridge(
    b: &mut Builder,
    at: &Placement,
    door_angle: f32,
    body_mat: Material,
    door_mat: Material,
    handle_mat: Material,
) -> (RigidBodyHandle, RigidBodyHandle) {
    let [hx, hy, hz] = FRIDGE_HALF;
    let t = FRIDGE_WALL;
    let fridge = b
        .world
        .bodies
        .insert(RigidBodyBuilder::fixed().pose(pose(v(at.x, at.y, 0.0), at.yaw)));
    let inner = Material {
        color: body_mat.color.map(|c| c * 0.75),
        pattern: Pattern::Solid,
    };
    // Back, sides, top, bottom; then the shelf.
    b.carcass(fridge, [hx, hy, hz], t, body_mat, hy - t, inner);
    b.box_part(
        fridge,
        v(0.01, 0.0, FRIDGE_SHELF_Z - 0.005),
        v(hx - t - 0.01, hy - t, 0.005),
        G_WORLD,
        0.6,
        inner,
    );

    // Door hinged on the fridge's +y front edge; opening swings its free edge towards the robot.
    let hinge_local = v(-hx - DOOR_T / 2.0 - 0.002, hy, hz);
    let fridge_pose = pose(v(at.x, at.y, 0.0), at.yaw);
    let door_closed_center = hinge_local + v(0.0, -hy, 0.0);
    let rot = Quat::from_rotation_z(at.yaw) * Quat::from_rotation_z(-door_angle);
    let hinge_world = fridge_pose.transform_point(hinge_local);
    let door_pos = hinge_world + rot * (door_closed_center - hinge_local);
    let door = b.world.bodies.insert(
        RigidBodyBuilder::dynamic()
            .pose(Pose::from_parts(door_pos, rot))
            .angular_damping(2.0),
    );
    let panel = ColliderBuilder::cuboid(DOOR_T / 2.0, hy - 0.002, hz - 0.002)
        .friction(0.6)
        .mass(1.2)
        .collision_groups(groups(G_FURNITURE))
        .build();
    b.world
        .colliders
        .insert_with_parent(panel, door, &mut b.world.bodies);
    b.visual(
        Some(door),
        Mesh::cuboid(v(DOOR_T / 2.0, hy - 0.002, hz - 0.002)),
        Affine3A::IDENTITY,
        door_mat,
    );
    let handle_at = door_handle_local();
    let handle = ColliderBuilder::cuboid(HANDLE_R, HANDLE_R, DOOR_HANDLE_HALF)
        .translation(handle_at)
        .friction(1.0)
        .mass(0.05)
        .collision_groups(groups(G_FURNITURE))
        .build();
    b.world
        .colliders
        .insert_with_parent(handle, door, &mut b.world.bodies);
    b.visual(
        Some(door),
        Mesh::cuboid(v(HANDLE_R, HANDLE_R, DOOR_HANDLE_HALF)),
        Affine3A::from_translation(handle_at),
        handle_mat,
    );
    for dz in [-DOOR_HANDLE_HALF + 0.01, DOOR_HANDLE_HALF - 0.01] {
        let c = v(-DOOR_T / 2.0 - HANDLE_STANDOFF / 2.0, DOOR_HANDLE_Y, dz);
        b.visual(
            Some(door),
            Mesh::cuboid(v(HANDLE_STANDOFF / 2.0, 0.005, 0.005)),
            Affine3A::from_translation(c),
            handle_mat,
        );
    }
    let joint = RevoluteJointBuilder::new(Vec3::NEG_Z)
        .local_anchor1(hinge_local)
        .local_anchor2(hinge_local - door_closed_center)
        .limits([0.0, DOOR_MAX])
        // A light hinge friction so the door stays where it is left.
        .motor_velocity(0.0, 0.3)
        .contacts_enabled(false);
    b.world.impulse_joints.insert(fridge, door, joint, true);
    (fridge, door)
}

fn drawer_closed_x() -> f32 {
    // Drawer body centre (cabinet frame) when closed.
    0.0
}

fn drawer_handle_local() -> Vec3 {
    v(
        -CABINET_HALF[0] - 0.016 - 0.045,
        0.0,
        DRAWER_HANDLE_Z - CABINET_HALF[2],
    )
}

fn build_cabinet(
    b: &mut Builder,
    at: &Placement,
    opening: f32,
    body_mat: Material,
    drawer_mat: Material,
    handle_mat: Material,
) -> (RigidBodyHandle, RigidBodyHandle) {
    let [hx, hy, hz] = CABINET_HALF;
    let t = 0.012;
    let cab_pose = pose(v(at.x, at.y, 0.0), at.yaw);
    let cabinet = b
        .world
        .bodies
        .insert(RigidBodyBuilder::fixed().pose(cab_pose));
    b.carcass(cabinet, [hx, hy, hz], t, body_mat, hy, body_mat);

    // The drawer: a tray with a front panel, sliding along the cabinet's -x.
    let rot = Quat::from_rotation_z(at.yaw);
    let center = cab_pose.transform_point(v(drawer_closed_x() - opening, 0.0, hz));
    let drawer = b.world.bodies.insert(
        RigidBodyBuilder::dynamic()
            .pose(Pose::from_parts(center, rot))
            .linear_damping(2.0),
    );
    let (dx, dy, dz) = (hx - t - 0.004, hy - t - 0.004, hz - t - 0.01);
    let parts = [
        (v(0.0, 0.0, -dz + 0.004), v(dx, dy, 0.004)),
        (v(dx - 0.004, 0.0, 0.0), v(0.004, dy, dz)),
        (v(0.0, dy - 0.004, 0.0), v(dx, 0.004, dz)),
        (v(0.0, -dy + 0.004, 0.0), v(dx, 0.004, dz)),
        (v(-hx - 0.008, 0.0, 0.0), v(0.008, hy - 0.003, hz - 0.004)),
    ];
    for (c, h) in parts {
        let col = ColliderBuilder::cuboid(h.x, h.y, h.z)
            .translation(c)
            .friction(0.6)
            .density(300.0)
            .collision_groups(groups(G_FURNITURE))
            .build();
        b.world
            .colliders
            .insert_with_parent(col, drawer, &mut b.world.bodies);
        b.visual(
            Some(drawer),
            Mesh::cuboid(h),
            Affine3A::from_translation(c),
            drawer_mat,
        );
    }
    let handle_at = drawer_handle_local();
    let handle = ColliderBuilder::cuboid(HANDLE_R, DRAWER_HANDLE_HALF, HANDLE_R)
        .translation(handle_at)
        .friction(1.0)
        .density(500.0)
        .collision_groups(groups(G_FURNITURE))
        .build();
    b.world
        .colliders
        .insert_with_parent(handle, drawer, &mut b.world.bodies);
    b.visual(
        Some(drawer),
        Mesh::cuboid(v(HANDLE_R, DRAWER_HANDLE_HALF, HANDLE_R)),
        Affine3A::from_translation(handle_at),
        handle_mat,
    );
    for dy in [-DRAWER_HANDLE_HALF + 0.01, DRAWER_HANDLE_HALF - 0.01] {
        let c = v(-hx - 0.016 - 0.0225, dy, handle_at.z);
        b.visual(
            Some(drawer),
            Mesh::cuboid(v(0.0225, 0.005, 0.005)),
            Affine3A::from_translation(c),
            handle_mat,
        );
    }
    let joint = PrismaticJointBuilder::new(Vec3::NEG_X)
        .local_anchor1(v(drawer_closed_x(), 0.0, hz))
        .local_anchor2(Vec3::ZERO)
        .limits([0.0, DRAWER_TRAVEL])
        .motor_velocity(0.0, 0.5)
        .contacts_enabled(false);
    b.world.impulse_joints.insert(cabinet, drawer, joint, true);
    (cabinet, drawer)
}

fn build_receptacle(
    b: &mut Builder,
    kind: Receptacle,
    at: &Placement,
    mat: Material,
) -> RigidBodyHandle {
    let body = b.world.bodies.insert(
        RigidBodyBuilder::dynamic()
            .pose(pose(v(at.x, at.y, 0.0), at.yaw))
            .linear_damping(0.5)
            .angular_damping(1.0),
    );
    let mut parts: Vec<(Vec3, Vec3, f32)> = Vec::new(); // centre, half, yaw
    match kind {
        Receptacle::Basket => {
            let (r, h, t) = (0.08, kind.rim_height(), 0.008);
            parts.push((v(0.0, 0.0, t / 2.0), v(r, r, t / 2.0), 0.0));
            for (c, half) in [
                (v(r - t / 2.0, 0.0, h / 2.0), v(t / 2.0, r, h / 2.0)),
                (v(-r + t / 2.0, 0.0, h / 2.0), v(t / 2.0, r, h / 2.0)),
                (v(0.0, r - t / 2.0, h / 2.0), v(r, t / 2.0, h / 2.0)),
                (v(0.0, -r + t / 2.0, h / 2.0), v(r, t / 2.0, h / 2.0)),
            ] {
                parts.push((c, half, 0.0));
            }
        }
        Receptacle::Plate => {
            let col = ColliderBuilder::cylinder(0.006, 0.09)
                .rotation(v(std::f32::consts::FRAC_PI_2, 0.0, 0.0))
                .translation(v(0.0, 0.0, 0.006))
                .friction(0.8)
                .mass(kind.mass())
                .collision_groups(groups(G_OBJECT))
                .build();
            b.world
                .colliders
                .insert_with_parent(col, body, &mut b.world.bodies);
            b.visual(
                Some(body),
                Mesh::cylinder(0.09, 0.006, b.seg(16)),
                Affine3A::from_translation(v(0.0, 0.0, 0.006)),
                mat,
            );
            let rim = Material {
                color: mat.color.map(|c| c * 0.8),
                pattern: Pattern::Solid,
            };
            b.visual(
                Some(body),
                Mesh::cylinder(0.065, 0.0005, b.seg(16)),
                Affine3A::from_translation(v(0.0, 0.0, 0.0125)),
                rim,
            );
            return body;
        }
        Receptacle::Bowl => {
            let (r, h, t) = (0.075, kind.rim_height(), 0.008);
            parts.push((v(0.0, 0.0, t / 2.0), v(0.05, 0.05, t / 2.0), 0.0));
            let n = 10;
            for i in 0..n {
                let a = i as f32 / n as f32 * std::f32::consts::TAU;
                let c = v(r * a.cos(), r * a.sin(), h / 2.0);
                parts.push((c, v(t / 2.0, r * 0.34, h / 2.0), a));
            }
        }
    }
    let n = parts.len() as f32;
    for (c, half, yaw) in parts {
        let col = ColliderBuilder::cuboid(half.x, half.y, half.z)
            .translation(c)
            .rotation(v(0.0, 0.0, yaw))
            .friction(0.8)
            .mass(kind.mass() / n)
            .collision_groups(groups(G_OBJECT))
            .build();
        b.world
            .colliders
            .insert_with_parent(col, body, &mut b.world.bodies);
        b.visual(
            Some(body),
            Mesh::cuboid(half),
            Affine3A::from_rotation_translation(Quat::from_rotation_z(yaw), c),
            mat,
        );
    }
    body
}

fn build_object(
    b: &mut Builder,
    kind: ObjectKind,
    at: &Placement,
    mass: f32,
    friction: f32,
    mat: Material,
) -> (RigidBodyHandle, ColliderHandle) {
    let shape = kind.shape();
    let hh = shape.half_height();
    let body = b.world.bodies.insert(
        RigidBodyBuilder::dynamic()
            .pose(pose(v(at.x, at.y, hh + 0.001), at.yaw))
            .angular_damping(0.8)
            .linear_damping(0.1)
            .ccd_enabled(false),
    );
    let up = v(std::f32::consts::FRAC_PI_2, 0.0, 0.0); // parry cylinders run along y
    let builder = match shape {
        Shape::Cylinder {
            radius,
            half_height,
        } => ColliderBuilder::cylinder(half_height, radius).rotation(up),
        Shape::Cuboid { half } => ColliderBuilder::cuboid(half[0], half[1], half[2]),
        Shape::Fruit {
            radius,
            half_height,
        } => {
            let border = 0.6 * half_height;
            ColliderBuilder::round_cylinder(half_height - border, radius - border, border)
                .rotation(up)
        }
    };
    let collider = builder
        .friction(friction)
        .mass(mass)
        .collision_groups(groups(G_OBJECT))
        .build();
    let ch = b
        .world
        .colliders
        .insert_with_parent(collider, body, &mut b.world.bodies);
    let dark = Material {
        color: mat.color.map(|c| c * 0.35),
        pattern: Pattern::Solid,
    };
    let white = Material::solid([0.9, 0.9, 0.88]);
    match (kind, shape) {
        (
            _,
            Shape::Cylinder {
                radius,
                half_height,
            },
        ) => {
            b.visual(
                Some(body),
                Mesh::cylinder(radius, half_height, b.seg(12)),
                Affine3A::IDENTITY,
                mat,
            );
            if matches!(kind, ObjectKind::Ketchup | ObjectKind::Mustard) {
                // Label band and cap make bottles recognisable.
                b.visual(
                    Some(body),
                    Mesh::cylinder(radius * 1.01, half_height * 0.3, b.seg(12)),
                    Affine3A::from_translation(v(0.0, 0.0, -0.1 * half_height)),
                    white,
                );
                b.visual(
                    Some(body),
                    Mesh::frustum(radius, radius * 0.45, 0.012, b.seg(8)),
                    Affine3A::from_translation(v(0.0, 0.0, half_height + 0.012)),
                    mat,
                );
                b.visual(
                    Some(body),
                    Mesh::cylinder(radius * 0.45, 0.008, b.seg(8)),
                    Affine3A::from_translation(v(0.0, 0.0, half_height + 0.032)),
                    white,
                );
            } else {
                b.visual(
                    Some(body),
                    Mesh::cylinder(radius * 0.9, 0.002, b.seg(12)),
                    Affine3A::from_translation(v(0.0, 0.0, half_height)),
                    dark,
                );
            }
        }
        (_, Shape::Cuboid { half }) => {
            b.visual(
                Some(body),
                Mesh::cuboid(Vec3::from(half)),
                Affine3A::IDENTITY,
                mat,
            );
            if kind == ObjectKind::Milk {
                b.visual(
                    Some(body),
                    Mesh::cuboid(v(half[0] * 1.02, half[1] * 1.02, half[2] * 0.25)),
                    Affine3A::from_translation(v(0.0, 0.0, 0.2 * half[2])),
                    Material::solid([0.1, 0.25, 0.6]),
                );
            }
        }
        (
            _,
            Shape::Fruit {
                radius,
                half_height,
            },
        ) => {
            let sphere = Mesh::sphere(1.0, b.seg(12), (b.seg(12) / 2).max(4))
                .transformed(Affine3A::from_scale(v(radius, radius, half_height)));
            b.visual(Some(body), sphere, Affine3A::IDENTITY, mat);
            b.visual(
                Some(body),
                Mesh::cylinder(0.003, 0.008, 6),
                Affine3A::from_translation(v(0.0, 0.0, half_height + 0.004)),
                Material::solid([0.2, 0.12, 0.04]),
            );
        }
    }
    (body, ch)
}

/// Cylinder mesh from `a` to `b` (local coordinates).
fn segment_mesh(a: Vec3, b: Vec3, radius: f32, segments: usize) -> Option<(Mesh, Affine3A)> {
    let d = b - a;
    let len = d.length();
    if len < 1e-3 {
        return None;
    }
    let rot = Quat::from_rotation_arc(Vec3::Z, d / len);
    Some((
        Mesh::cylinder(radius, len / 2.0, segments),
        Affine3A::from_rotation_translation(rot, (a + b) / 2.0),
    ))
}

fn build_arm(b: &mut Builder, q: Joints, palette: &crate::layout::Palette) -> Arm {
    let pose = robot::forward(&q);
    // Pedestal (link 0).
    b.visual(
        None,
        Mesh::cylinder(0.08, 0.02, b.seg(12)),
        Affine3A::from_translation(v(0.0, 0.0, 0.02)),
        palette.robot_joint,
    );
    if let Some((m, t)) = segment_mesh(Vec3::ZERO, v(0.0, 0.0, 0.333), 0.06, b.seg(8)) {
        b.visual(None, m, t, palette.robot);
    }
    let radii = [0.06, 0.06, 0.055, 0.055, 0.05, 0.045, 0.04];
    let links: [RigidBodyHandle; DOF] = std::array::from_fn(|i| {
        let body = b
            .world
            .bodies
            .insert(RigidBodyBuilder::kinematic_position_based().pose(to_pose(&pose.links[i])));
        let end = robot::link_segment(i).as_vec3();
        if let Some((m, t)) = segment_mesh(Vec3::ZERO, end, radii[i], b.seg(8)) {
            let col = ColliderBuilder::capsule_from_endpoints(Vec3::ZERO, end, radii[i])
                .collision_groups(groups(G_ARM))
                .build();
            b.world
                .colliders
                .insert_with_parent(col, body, &mut b.world.bodies);
            b.visual(Some(body), m, t, palette.robot);
        }
        // Joint housing along the joint axis.
        b.visual(
            Some(body),
            Mesh::cylinder(radii[i] * 1.05, 0.05, b.seg(8)),
            Affine3A::IDENTITY,
            palette.robot_joint,
        );
        body
    });
    let hand = b
        .world
        .bodies
        .insert(RigidBodyBuilder::kinematic_position_based().pose(to_pose(&pose.tcp)));
    let palm_c = v(0.0, 0.0, PALM_Z);
    let palm = ColliderBuilder::cuboid(PALM_HALF[0], PALM_HALF[1], PALM_HALF[2])
        .translation(palm_c)
        .collision_groups(groups(G_HAND))
        .build();
    b.world
        .colliders
        .insert_with_parent(palm, hand, &mut b.world.bodies);
    b.visual(
        Some(hand),
        Mesh::cuboid(Vec3::from(PALM_HALF)),
        Affine3A::from_translation(palm_c),
        palette.robot,
    );
    b.visual(
        Some(hand),
        Mesh::cylinder(0.03, 0.02, b.seg(8)),
        Affine3A::from_translation(v(0.0, 0.0, PALM_Z - PALM_HALF[2] - 0.02)),
        palette.robot_joint,
    );

    let width = robot::GRIPPER_MAX_WIDTH as f32;
    let hand_pose = to_pose(&pose.tcp);
    let mut fingers = [hand; 2];
    let mut colliders = [ColliderHandle::invalid(); 2];
    let mut joints = [ImpulseJointHandle::invalid(); 2];
    for (k, sign) in [1.0f32, -1.0].into_iter().enumerate() {
        let local = v(0.0, sign * (width / 2.0 + FINGER_HALF[1]), FINGER_Z);
        let body = b.world.bodies.insert(
            RigidBodyBuilder::dynamic()
                .pose(Pose::from_parts(
                    hand_pose.transform_point(local),
                    hand_pose.rotation,
                ))
                .gravity_scale(0.0)
                .ccd_enabled(true),
        );
        let col = ColliderBuilder::cuboid(FINGER_HALF[0], FINGER_HALF[1], FINGER_HALF[2])
            .friction(1.5)
            .mass(0.1)
            .collision_groups(groups(G_FINGER))
            .build();
        colliders[k] = b
            .world
            .colliders
            .insert_with_parent(col, body, &mut b.world.bodies);
        b.visual(
            Some(body),
            Mesh::cuboid(Vec3::from(FINGER_HALF)),
            Affine3A::IDENTITY,
            palette.finger,
        );
        let joint = PrismaticJointBuilder::new(v(0.0, sign, 0.0))
            .local_anchor1(v(0.0, 0.0, FINGER_Z))
            .local_anchor2(v(0.0, -sign * FINGER_HALF[1], 0.0))
            .limits([0.0, width / 2.0])
            .motor_model(MotorModel::ForceBased)
            .motor_position(width / 2.0, 2000.0, 80.0)
            .motor_max_force(FINGER_FORCE)
            .contacts_enabled(false);
        joints[k] = b.world.impulse_joints.insert(hand, body, joint, true);
        fingers[k] = body;
    }
    Arm {
        links,
        hand,
        fingers,
        finger_colliders: colliders,
        finger_joints: joints,
        q,
        gripper_target: width,
    }
}
