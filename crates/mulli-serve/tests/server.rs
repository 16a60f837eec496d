//! A real server on an ephemeral port, driven through the Rust client and raw sockets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mulli_core::{ActionChunk, CameraImage, Observation, Policy};
use mulli_serve::metrics::ErrorKind;
use mulli_serve::{CameraInfo, ClientError, PolicyInfo, RemotePolicy, ServeConfig, Server, wire};

const H: usize = 4;
const A: usize = 3;

/// Its actions encode its input, so a reply sent to the wrong client (a mixed-up batch) shows:
/// action[i][0] = state[0], action[i][1] = first agentview pixel, action[i][2] = i.
#[derive(Default)]
struct Echo {
    /// Per-batch sleep, to make concurrent requests pile up into batches.
    delay: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("negative state {0}")]
struct EchoError(f32);

impl Policy for Echo {
    type Error = EchoError;
    fn reset(&mut self) {}
    fn act(&mut self, obs: &Observation) -> Result<ActionChunk, EchoError> {
        let s = obs.state[0];
        if s < 0.0 {
            return Err(EchoError(s));
        }
        if s == 666.0 {
            panic!("the stand-in policy panics on 666");
        }
        let px = f32::from(obs.images["agentview"].rgb[0]);
        Ok(ActionChunk {
            actions: (0..H).map(|i| vec![s, px, i as f32]).collect(),
        })
    }
    fn act_batch(&mut self, obs: &[Observation]) -> Result<Vec<ActionChunk>, EchoError> {
        std::thread::sleep(self.delay);
        obs.iter().map(|o| self.act(o)).collect()
    }
}

fn info() -> PolicyInfo {
    PolicyInfo {
        name: "echo".into(),
        cameras: vec![
            CameraInfo {
                name: "agentview".into(),
                height: 8,
                width: 8,
            },
            CameraInfo {
                name: "wrist".into(),
                height: 8,
                width: 8,
            },
        ],
        state_dim: 2,
        state_names: None,
        env_state_dim: 0,
        action_dim: A,
        chunk: H,
        execution: None,
    }
}

fn start(config: ServeConfig, delay: Duration) -> Server {
    Server::start(
        move || Ok::<_, String>(Echo { delay }),
        info(),
        config,
        "127.0.0.1:0",
    )
    .unwrap()
}

fn url(s: &Server) -> String {
    format!("ws://{}", s.local_addr())
}

fn obs(state0: f32, pixel: u8) -> Observation {
    let mut o = Observation {
        state: vec![state0, 0.0],
        instruction: "pick up the apple".into(),
        ..Default::default()
    };
    for name in ["agentview", "wrist"] {
        let mut rgb = vec![7u8; 8 * 8 * 3];
        rgb[0] = pixel;
        o.images.insert(
            name.into(),
            CameraImage {
                width: 8,
                height: 8,
                rgb,
                depth: None,
            },
        );
    }
    o
}

fn http_get(s: &Server, path: &str) -> String {
    let mut t = TcpStream::connect(s.local_addr()).unwrap();
    write!(t, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    t.read_to_string(&mut out).unwrap();
    out
}

fn server_error(r: Result<Vec<u8>, ClientError>) -> String {
    match r {
        Err(ClientError::Server(m)) => m,
        other => panic!("expected an error frame, got {other:?}"),
    }
}

#[test]
fn metadata_actions_health_and_metrics() {
    let s = start(ServeConfig::default(), Duration::ZERO);
    let mut c = RemotePolicy::connect(&url(&s), None).unwrap();
    let info2 = c.policy_info().unwrap();
    assert_eq!(info2, &info());
    assert_eq!(
        c.observation_map().unwrap().cameras[1].1,
        "observation/wrist_image"
    );
    let chunk = c.act(&obs(3.0, 200)).unwrap();
    assert_eq!(chunk.actions.len(), H);
    assert_eq!(chunk.actions[2], [3.0, 200.0, 2.0]);
    let r = c.last_reply().unwrap();
    assert!(r.server_timing.contains_key("infer_ms"));
    assert!(r.policy_timing.contains_key("infer_ms"));
    assert!(!r.server_timing.contains_key("prev_total_ms"));
    c.act(&obs(1.0, 1)).unwrap();
    assert!(
        c.last_reply()
            .unwrap()
            .server_timing
            .contains_key("prev_total_ms")
    );

    let h = http_get(&s, "/healthz");
    assert!(
        h.starts_with("HTTP/1.1 200 OK") && h.ends_with("\r\n\r\nOK\n"),
        "{h}"
    );
    // Counted once the reply is sent, which may be just after the client read it.
    let mut m = http_get(&s, "/metrics");
    for _ in 0..500 {
        if m.contains("mulli_serve_requests_total 2\n") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        m = http_get(&s, "/metrics");
    }
    assert!(m.contains("mulli_serve_requests_total 2\n"), "{m}");
    assert!(m.contains("mulli_serve_connections_open 1\n"), "{m}");
    assert!(http_get(&s, "/nope").starts_with("HTTP/1.1 404"));
}

#[test]
fn api_key_is_required_when_set() {
    let config = ServeConfig {
        api_key: Some("s3cret".into()),
        ..Default::default()
    };
    let s = start(config, Duration::ZERO);
    let e = RemotePolicy::connect(&url(&s), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("401"), "{e}");
    assert!(RemotePolicy::connect(&url(&s), Some("wrong")).is_err());
    let mut c = RemotePolicy::connect(&url(&s), Some("s3cret")).unwrap();
    c.act(&obs(1.0, 1)).unwrap();
    // Health checks stay open (orchestrators probe without credentials).
    assert!(http_get(&s, "/healthz").starts_with("HTTP/1.1 200"));
    assert_eq!(s.metrics().errors(ErrorKind::Unauthorized), 2);
}

#[test]
fn malformed_frames_get_an_error_frame_and_only_that_client_is_closed() {
    let s = start(ServeConfig::default(), Duration::ZERO);
    let mut good = RemotePolicy::connect(&url(&s), None).unwrap();

    let mut bad = RemotePolicy::connect(&url(&s), None).unwrap();
    let e = server_error(bad.infer_frame(vec![0xc1, 0xff, 0x00]));
    assert!(e.contains("malformed msgpack"), "{e}");
    // The server closed that connection.
    assert!(bad.infer_frame(vec![0x80]).is_err());

    // A well-formed frame with a missing key names the key.
    let mut bad = RemotePolicy::connect(&url(&s), None).unwrap();
    let frame = wire::encode(&rmpv::Value::Map(vec![(
        rmpv::Value::from("prompt"),
        rmpv::Value::from("x"),
    )]));
    let e = server_error(bad.infer_frame(frame));
    assert!(e.contains("`observation/image` is missing"), "{e}");

    // Wrong dtype for the state.
    let mut bad = RemotePolicy::connect(&url(&s), None).unwrap();
    let map = bad.observation_map().unwrap().clone();
    let mut frame = map.encode(&obs(1.0, 1)).unwrap();
    let at = frame.windows(3).position(|w| w == b"<f4").unwrap();
    frame[at..at + 3].copy_from_slice(b"<c8");
    let e = server_error(bad.infer_frame(frame));
    assert!(e.contains("observation/state") && e.contains("<c8"), "{e}");

    // A bad image shape.
    let mut bad = RemotePolicy::connect(&url(&s), None).unwrap();
    let mut o = obs(1.0, 1);
    let img = o.images.get_mut("wrist").unwrap();
    img.width = 4;
    img.rgb.truncate(8 * 4 * 3);
    let e = server_error(bad.infer_frame(map.encode(&o).unwrap()));
    assert!(
        e.contains("observation/wrist_image") && e.contains("aspect"),
        "{e}"
    );

    // The good client was never disturbed.
    assert_eq!(good.act(&obs(5.0, 9)).unwrap().actions[0], [5.0, 9.0, 0.0]);
    assert_eq!(s.metrics().errors(ErrorKind::BadRequest), 4);
}

#[test]
fn oversized_frames_are_refused() {
    let config = ServeConfig {
        max_frame_bytes: 4096,
        ..Default::default()
    };
    let s = start(config, Duration::ZERO);
    let mut c = RemotePolicy::connect(&url(&s), None).unwrap();
    let e = server_error(c.infer_frame(vec![0u8; 10_000]));
    assert!(e.contains("max_frame_bytes is 4096"), "{e}");
    let mut c = RemotePolicy::connect(&url(&s), None).unwrap();
    c.act(&obs(1.0, 1)).unwrap();
    assert_eq!(s.metrics().errors(ErrorKind::TooLarge), 1);
}

#[test]
fn text_frames_are_refused() {
    let s = start(ServeConfig::default(), Duration::ZERO);
    let (mut ws, _) = tungstenite::connect(url(&s)).unwrap();
    let _metadata = ws.read().unwrap();
    ws.send(tungstenite::Message::Text("{}".into())).unwrap();
    let m = ws.read().unwrap();
    assert!(m.to_text().unwrap().contains("got a text frame"), "{m:?}");
}

#[test]
fn a_client_that_disconnects_mid_request_does_not_hurt_others() {
    let s = start(ServeConfig::default(), Duration::from_millis(100));
    let mut c = RemotePolicy::connect(&url(&s), None).unwrap();
    let frame = c.observation_map().unwrap().encode(&obs(1.0, 1)).unwrap();
    // Send a request, then vanish without a close frame.
    let (mut ws, _) = tungstenite::connect(url(&s)).unwrap();
    let _metadata = ws.read().unwrap();
    ws.send(tungstenite::Message::Binary(frame.into())).unwrap();
    drop(ws);
    // A half-written frame, then gone.
    let mut t = TcpStream::connect(s.local_addr()).unwrap();
    t.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: web")
        .unwrap();
    drop(t);
    for i in 0..3 {
        let a = c.act(&obs(i as f32, 2)).unwrap();
        assert_eq!(a.actions[0][0], i as f32);
    }
}

#[test]
fn policy_errors_and_panics_stay_with_their_request() {
    let s = start(ServeConfig::default(), Duration::ZERO);
    let mut c = RemotePolicy::connect(&url(&s), None).unwrap();
    let e = c.act(&obs(-1.0, 1)).unwrap_err().to_string();
    assert!(e.contains("negative state -1"), "{e}");
    let mut c = RemotePolicy::connect(&url(&s), None).unwrap();
    let e = c.act(&obs(666.0, 1)).unwrap_err().to_string();
    assert!(e.contains("panicked"), "{e}");
    // The inference thread survived.
    let mut c = RemotePolicy::connect(&url(&s), None).unwrap();
    assert_eq!(c.act(&obs(2.0, 3)).unwrap().actions[0], [2.0, 3.0, 0.0]);
}

#[test]
fn concurrent_clients_are_batched_and_get_their_own_answers() {
    let config = ServeConfig {
        batch_wait_ms: 5.0,
        max_batch: 8,
        ..Default::default()
    };
    let s = start(config, Duration::from_millis(2));
    let u = url(&s);
    let clients = 24;
    let handles: Vec<_> = (0..clients)
        .map(|k| {
            let u = u.clone();
            std::thread::spawn(move || {
                let mut c = RemotePolicy::connect(&u, None).unwrap();
                for r in 0..15 {
                    // A policy error in the batch must not spill over: client 0 sends one.
                    let state = if k == 0 && r == 14 {
                        -1.0
                    } else {
                        (k * 1000 + r) as f32
                    };
                    let px = (k * 7 + r) as u8;
                    match c.act(&obs(state, px)) {
                        Ok(a) => {
                            for (i, row) in a.actions.iter().enumerate() {
                                assert_eq!(
                                    row,
                                    &[state, f32::from(px), i as f32],
                                    "client {k} request {r}"
                                );
                            }
                        }
                        Err(e) => assert!(state < 0.0, "client {k} request {r}: {e}"),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // A request is counted once its reply has been sent, which can be just after the client
    // has read it: give the server's connection tasks a moment to settle.
    let expected = format!("mulli_serve_requests_total {}\n", clients * 15 - 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut m = s.metrics().render();
    while !m.contains(&expected) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        m = s.metrics().render();
    }
    assert!(m.contains(&expected), "{m}");
    // Some batches held more than one request.
    let singles: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("mulli_serve_batch_size_bucket{le=\"1\"} "))
        .unwrap()
        .parse()
        .unwrap();
    let batches: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("mulli_serve_batch_size_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(singles < batches, "no batching: {m}");
}

#[test]
fn too_many_clients_are_refused_with_503() {
    let config = ServeConfig {
        max_clients: 1,
        ..Default::default()
    };
    let s = start(config, Duration::ZERO);
    let _c = RemotePolicy::connect(&url(&s), None).unwrap();
    let e = RemotePolicy::connect(&url(&s), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("503"), "{e}");
}

#[test]
fn a_failing_factory_is_reported() {
    let r = Server::start(
        || Err::<Echo, _>("no checkpoint here"),
        info(),
        ServeConfig::default(),
        "127.0.0.1:0",
    );
    let e = r.err().unwrap().to_string();
    assert!(e.contains("no checkpoint here"), "{e}");
}
