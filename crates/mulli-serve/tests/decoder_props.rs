//! Property tests for the frame decoder: any bytes are answered with a value or an error,
//! never a panic, and arrays survive a round trip.

use mulli_core::{CameraImage, Observation};
use mulli_serve::{CameraInfo, ObservationMap, PolicyInfo, wire};
use proptest::prelude::*;

fn info() -> PolicyInfo {
    PolicyInfo {
        name: "p".into(),
        cameras: vec![CameraInfo {
            name: "agentview".into(),
            height: 4,
            width: 4,
        }],
        state_dim: 3,
        state_names: None,
        env_state_dim: 0,
        action_dim: 2,
        chunk: 2,
        execution: None,
    }
}

fn valid_frame() -> Vec<u8> {
    let i = info();
    let map = ObservationMap::resolve(&Default::default(), &i).unwrap();
    let mut o = Observation {
        state: vec![1.0, 2.0, 3.0],
        instruction: "open the drawer".into(),
        ..Default::default()
    };
    o.images.insert(
        "agentview".into(),
        CameraImage {
            width: 4,
            height: 4,
            rgb: (0..48).collect(),
            depth: None,
        },
    );
    map.encode(&o).unwrap()
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let i = info();
        let map = ObservationMap::resolve(&Default::default(), &i).unwrap();
        let _ = wire::decode_frame(&bytes);
        let _ = map.decode(&bytes, &i);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let i = info();
        let map = ObservationMap::resolve(&Default::default(), &i).unwrap();
        let mut f = valid_frame();
        for (at, b) in edits {
            let k = at.index(f.len());
            f[k] = b;
        }
        let _ = map.decode(&f, &i);
        let n = cut.index(f.len());
        let _ = map.decode(&f[..n], &i);
    }

    #[test]
    fn f32_arrays_round_trip(values in proptest::collection::vec(any::<f32>(), 0..64), rows in 1usize..4) {
        let n = values.len() / rows * rows;
        let shape = [rows, n / rows];
        let bytes = wire::encode(&wire::f32_array(&shape, &values[..n]));
        let v = wire::decode_frame(&bytes).unwrap();
        let a = wire::as_ndarray(&v).unwrap().unwrap();
        prop_assert_eq!(&a.shape[..], &shape[..]);
        let back = a.to_f32();
        prop_assert_eq!(back.len(), n);
        for (x, y) in back.iter().zip(&values[..n]) {
            prop_assert_eq!(x.to_bits(), y.to_bits());
        }
    }
}

#[test]
fn the_valid_frame_decodes() {
    let i = info();
    let map = ObservationMap::resolve(&Default::default(), &i).unwrap();
    let o = map.decode(&valid_frame(), &i).unwrap();
    assert_eq!(o.state, [1.0, 2.0, 3.0]);
}

/// The fuzz seeds (packed by openpi-client's `msgpack_numpy`) decode for the fuzz target's
/// policy, and re-encoding round-trips, as `fuzz/fuzz_targets/openpi_frame.rs` asserts.
#[test]
fn fuzz_seeds_from_openpi_client_decode() {
    let info = PolicyInfo {
        name: "fuzz".into(),
        cameras: vec![
            CameraInfo {
                name: "agentview".into(),
                height: 8,
                width: 8,
            },
            CameraInfo {
                name: "wrist".into(),
                height: 4,
                width: 6,
            },
        ],
        state_dim: 3,
        state_names: None,
        env_state_dim: 0,
        action_dim: 2,
        chunk: 2,
        execution: None,
    };
    let config = mulli_serve::ObservationMapConfig {
        default_prompt: Some("fallback".into()),
        ..Default::default()
    };
    let map = ObservationMap::resolve(&config, &info).unwrap();
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/openpi_frame");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let obs = map.decode(&bytes, &info).unwrap();
        assert_eq!(obs.images["wrist"].rgb.len(), 4 * 6 * 3);
        let again = map.decode(&map.encode(&obs).unwrap(), &info).unwrap();
        assert_eq!(again, obs);
        n += 1;
    }
    assert_eq!(n, 2);
}
