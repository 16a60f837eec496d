//! Staged-packet blob parser: `mulli_data::video::packets_from_bytes` (the blob mulli stages
//! encoded video packets in). Decoding PNG images from a dataset is internal to mulli-data
//! and not reachable from here without a dataset on disk.
//!
//! Properties: never panics; the format is canonical, so whatever parses serializes back to
//! exactly the input bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mulli_data::video::{packets_from_bytes, packets_to_bytes};

fuzz_target!(|data: &[u8]| {
    let Ok(packets) = packets_from_bytes(data) else {
        return;
    };
    assert!(packets.len() <= data.len() / 5, "more packets than bytes");
    assert_eq!(packets_to_bytes(&packets), data, "packet blob does not round-trip");
});
