//! mulli-serve: any [`mulli_core::Policy`] behind openpi's websocket protocol, and the client
//! side of that protocol as a `Policy`.
//!
//! It owns the wire format ([`wire`]: msgpack with numpy arrays exactly as
//! `openpi_client.msgpack_numpy` packs them), the mapping from a client's observation dict to
//! an [`Observation`](mulli_core::Observation) ([`mapping`]), the server ([`Server`]: one port
//! for the websocket, `GET /healthz` and `GET /metrics`; batched inference on one thread that
//! owns the policy), and the client ([`RemotePolicy`]).
//!
//! It knows nothing about models: the caller hands [`Server::start`] a factory for its policy
//! and a [`PolicyInfo`] (cameras and sizes, state and action dimensions, chunk length), so
//! this crate builds and tests without the learning stack.
//!
//! Protocol, as openpi's `WebsocketPolicyServer` speaks it: on connect the server sends one
//! binary msgpack frame of metadata; each binary frame from the client is an observation
//! dict and is answered with `{"actions": float32 [H, A], "server_timing": {...},
//! "policy_timing": {...}}`. Errors are a text frame followed by a close frame.

pub mod client;
pub mod error;
pub mod mapping;
pub mod metrics;
pub mod server;
pub mod wire;

pub use client::{RemotePolicy, Reply, parse_reply};
pub use error::{ClientError, ConfigError, FrameError, ObservationError, ServeError};
pub use mapping::{CameraInfo, ObservationMap, ObservationMapConfig, PolicyInfo};
pub use metrics::Metrics;
pub use server::{ServeConfig, Server};
