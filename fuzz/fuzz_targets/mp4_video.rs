//! MP4 demuxer + H.264/AV1 decoders: `VideoReader::open` on arbitrary file contents, then
//! `decode` of the first, middle and last frame (and the first again, which restarts the
//! decoder from a sync sample).
//!
//! Properties: never panics; never hangs (libFuzzer's `-timeout` catches that). The work per
//! input is bounded by the input: sample tables cannot declare more samples than the file
//! has bytes. Frames larger than `MAX_FRAME_BYTES` are not decoded, because `decode` allocates
//! the whole RGB frame up front and a 16-bit width/height in the sample entry allows 12 GiB,
//! which libFuzzer's malloc limit would report as a crash although nothing is ever written.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use mulli_data::video::VideoReader;

const MAX_FRAME_BYTES: usize = 1 << 26; // 64 MiB: a 4K RGB frame is ~24 MiB

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::Builder::new()
        .prefix("mulli-fuzz-")
        .suffix(".mp4")
        .tempfile()
        .expect("temp file");
    file.write_all(data).expect("write temp file");
    file.flush().expect("flush temp file");
    let Ok(mut reader) = VideoReader::open(file.path()) else {
        return;
    };
    let len = reader.len();
    let ts = reader.timestamps();
    assert_eq!(ts.len(), len, "one timestamp per frame");
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "timestamps are sorted");
    if let (Some(&first), Some(&last)) = (ts.first(), ts.last()) {
        for t in [first, (first + last) / 2.0, last, f64::NAN, f64::INFINITY, -1.0] {
            assert!(reader.index_at(t) < len.max(1));
        }
    }
    if len == 0 || reader.frame_len() > MAX_FRAME_BYTES {
        return;
    }
    for i in [0, len / 2, len - 1, 0] {
        if let Ok(rgb) = reader.decode(i) {
            assert_eq!(rgb.len(), reader.frame_len());
        }
    }
    let _ = reader.decode(len); // out of range: an error, not a panic
});
