//! mulli-serve's frame decoder: `wire::decode_frame` and `ObservationMap::decode` (what the
//! server runs on every websocket frame a client sends) on arbitrary bytes.
//!
//! Properties: never panics; a decoded observation has exactly the policy's cameras at the
//! policy's size and `state_dim` finite values; a decoded numpy array holds exactly
//! `shape.product() × itemsize` bytes; a decoded observation re-encoded (as the Rust client
//! sends it) decodes to the same observation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mulli_serve::{CameraInfo, ObservationMap, ObservationMapConfig, PolicyInfo, wire};

fn info() -> PolicyInfo {
    PolicyInfo {
        name: "fuzz".into(),
        cameras: vec![
            CameraInfo { name: "agentview".into(), height: 8, width: 8 },
            CameraInfo { name: "wrist".into(), height: 4, width: 6 },
        ],
        state_dim: 3,
        state_names: None,
        action_dim: 2,
        chunk: 2,
        execution: None,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = wire::decode_frame(data)
        && let Some(Ok(a)) = wire::as_ndarray(&v)
    {
        assert_eq!(a.data.len(), a.shape.iter().product::<usize>() * a.dtype.size());
        let _ = a.to_f32();
    }
    let info = info();
    let config = ObservationMapConfig {
        default_prompt: Some("fallback".into()),
        ..Default::default()
    };
    let map = ObservationMap::resolve(&config, &info).expect("valid mapping");
    let Ok(obs) = map.decode(data, &info) else {
        return;
    };
    for cam in &info.cameras {
        let img = &obs.images[&cam.name];
        assert_eq!((img.height, img.width), (cam.height, cam.width));
        assert_eq!(img.rgb.len(), cam.height * cam.width * 3);
    }
    assert_eq!(obs.state.len(), info.state_dim);
    assert!(obs.state.iter().all(|v| v.is_finite()));
    let again = map
        .decode(&map.encode(&obs).expect("a decoded observation encodes"), &info)
        .expect("a re-encoded observation decodes");
    assert_eq!(again, obs);
});
