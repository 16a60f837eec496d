//! Video decoding against PyAV's pixels (what LeRobot's readers see), H.264 write → read round
//! trips, and bad input.
//!
//! Reference PNGs and the two tiny videos in `tests/fixtures/video/` come from
//! `scripts/make_video_reference.py`. Tests on LeRobot 0.6.1's own 5,000-frame videos look for
//! them in `$MULLI_LEROBOT_FIXTURES` (default `<workspace>/../shared/fixtures/lerobot-0.6.1`)
//! and are skipped, loudly, when they are absent.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mulli_data::video::{
    Codec, EncodedPacket, Mp4H264Writer, VideoError, VideoReader, packets_from_bytes,
    packets_to_bytes, write_h264_mp4,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/video")
}

/// LeRobot's fixture datasets, or `None` (with a message) when they are not on this machine.
fn lerobot_fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("MULLI_LEROBOT_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/lerobot-0.6.1")
        });
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: fixtures not found at {} (set MULLI_LEROBOT_FIXTURES)",
            dir.display()
        );
        None
    }
}

fn lerobot_video(root: &Path, codec: &str) -> PathBuf {
    root.join(codec)
        .join("videos/observation.images.front/chunk-000/file-000.mp4")
}

fn load_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// (max abs difference, mean abs difference)
fn diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let mut max = 0u8;
    let mut sum = 0u64;
    for (x, y) in a.iter().zip(b) {
        let d = x.abs_diff(*y);
        max = max.max(d);
        sum += d as u64;
    }
    (max, sum as f64 / a.len() as f64)
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// Reference frames of a video, by presentation index.
fn references(dir: &Path) -> Vec<(usize, Vec<u8>)> {
    let mut refs: Vec<(usize, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .map(|p| {
            let index: usize = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            (index, load_png(&p).2)
        })
        .collect();
    refs.sort_by_key(|r| r.0);
    refs
}

/// A fixed pseudo-random permutation (no RNG dependency needed).
fn scrambled(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..n).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
    v
}

/// Decodes the referenced frames in `order`, checks each against its reference and that it is
/// nearer its own reference than to the other referenced frames next to it (frame-exact
/// seeking). Returns the worst (max, mean) difference.
fn check_against_references(
    reader: &mut VideoReader,
    refs: &[(usize, Vec<u8>)],
    order: &[usize],
    label: &str,
) -> (u8, f64) {
    let mut worst = (0u8, 0f64);
    let mut out = vec![0u8; reader.frame_len()];
    for &k in order {
        let (index, want) = &refs[k];
        reader
            .decode_into(*index, &mut out)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let (max, mean) = diff(&out, want);
        worst = (worst.0.max(max), worst.1.max(mean));
        assert!(
            max <= 3 && mean < 1.0,
            "{label}: frame {index} differs from PyAV: max {max}, mean {mean:.3}"
        );
        for (other, other_ref) in refs {
            if other != index && other.abs_diff(*index) <= 2 {
                let (_, other_mean) = diff(&out, other_ref);
                assert!(
                    mean < other_mean,
                    "{label}: frame {index} is as close to frame {other}'s reference ({other_mean:.3}) as to its own ({mean:.3})"
                );
            }
        }
    }
    worst
}

fn check_tiny(name: &str, codec: Codec, size: (u32, u32), frames: usize) {
    let path = fixtures().join(format!("{name}.mp4"));
    let mut reader = VideoReader::open(&path).unwrap();
    assert_eq!(reader.codec(), codec);
    assert_eq!((reader.width(), reader.height()), size);
    assert_eq!(reader.len(), frames);
    for (i, t) in reader.timestamps().iter().enumerate() {
        assert!(
            (t - i as f64 / 10.0).abs() < 1e-9,
            "{name}: pts of frame {i} is {t}"
        );
    }
    let refs = references(&fixtures().join(name));
    assert_eq!(refs.len(), frames);
    let n = refs.len();
    let sequential: Vec<usize> = (0..n).collect();
    let reverse: Vec<usize> = (0..n).rev().collect();
    let mut worst = (0u8, 0f64);
    for (label, order) in [
        ("sequential", sequential),
        ("reverse", reverse),
        ("scrambled", scrambled(n)),
    ] {
        let w = check_against_references(&mut reader, &refs, &order, &format!("{name} {label}"));
        worst = (worst.0.max(w.0), worst.1.max(w.1));
    }
    // A fresh reader per frame (cold decoder) agrees too.
    for (index, want) in &refs {
        let got = VideoReader::open(&path).unwrap().decode(*index).unwrap();
        let (max, mean) = diff(&got, want);
        assert!(
            max <= 3 && mean < 1.0,
            "{name} cold: frame {index}: max {max}, mean {mean:.3}"
        );
    }
    eprintln!(
        "{name}: max abs diff {} mean abs diff {:.4} vs PyAV",
        worst.0, worst.1
    );
}

#[test]
fn tiny_h264_with_b_frames_matches_pyav_in_any_order() {
    check_tiny("tiny_h264", Codec::H264, (64, 48), 16);
}

#[test]
fn tiny_av1_matches_pyav_in_any_order() {
    check_tiny("tiny_av1", Codec::Av1, (64, 64), 12);
}

/// Odd sizes: the references are PyAV's YUV through FFmpeg's fast-path arithmetic (see
/// `scripts/make_video_reference.py` for why not its rgb24 output).
#[test]
fn tiny_av1_with_odd_size_decodes_exactly() {
    check_tiny("tiny_av1_odd", Codec::Av1, (63, 47), 6);
}

#[test]
fn lerobot_fixture_videos_match_pyav() {
    let Some(root) = lerobot_fixtures() else {
        return;
    };
    for (name, codec) in [("h264", Codec::H264), ("av1", Codec::Av1)] {
        let path = lerobot_video(&root, name);
        let mut reader = VideoReader::open(&path).unwrap();
        assert_eq!(reader.codec(), codec);
        assert_eq!(
            (reader.width(), reader.height(), reader.len()),
            (96, 96, 5000)
        );
        for (i, t) in reader.timestamps().iter().enumerate() {
            assert!(
                (t - i as f64 / 10.0).abs() < 1e-9,
                "{name}: pts of frame {i} is {t}"
            );
        }
        for i in [0, 1, 99, 100, 2501, 4999] {
            assert_eq!(reader.index_at(i as f64 / 10.0), i);
            assert_eq!(reader.index_at(i as f64 / 10.0 + 0.049), i);
            assert_eq!(reader.index_at(i as f64 / 10.0 - 0.049), i);
        }
        let refs = references(&fixtures().join("lerobot").join(name));
        let n = refs.len();
        let mut worst = (0u8, 0f64);
        for order in [
            (0..n).collect::<Vec<_>>(),
            (0..n).rev().collect(),
            scrambled(n),
        ] {
            let w = check_against_references(&mut reader, &refs, &order, name);
            worst = (worst.0.max(w.0), worst.1.max(w.1));
        }
        // Frames without a stored reference must still differ from their neighbours.
        let a = reader.decode(2500).unwrap();
        let b = reader.decode(2501).unwrap();
        let c = reader.decode(2502).unwrap();
        assert!(
            diff(&a, &b).1 > 0.5 && diff(&b, &c).1 > 0.5,
            "{name}: 2500..2502 look identical"
        );
        eprintln!(
            "lerobot {name}: max abs diff {} mean abs diff {:.4} vs PyAV over {n} frames",
            worst.0, worst.1
        );
    }
}

/// 64×48 smooth moving gradient with a blob, like a camera frame.
fn synthetic_frame(k: usize, w: usize, h: usize) -> Vec<u8> {
    let mut img = Vec::with_capacity(w * h * 3);
    let t = k as f64 * 0.4;
    let (bx, by) = (
        (t.sin() * 0.3 + 0.5) * w as f64,
        ((t * 0.7).cos() * 0.3 + 0.5) * h as f64,
    );
    for y in 0..h {
        for x in 0..w {
            let blob = (-((x as f64 - bx).powi(2) + (y as f64 - by).powi(2)) / 40.0).exp();
            img.push((40.0 + 150.0 * ((x as f64 + 2.0 * k as f64) % w as f64) / w as f64) as u8);
            img.push((50.0 + 140.0 * y as f64 / h as f64 + 30.0 * blob) as u8);
            img.push((60.0 + 120.0 * blob) as u8);
        }
    }
    img
}

#[test]
fn h264_writer_round_trip() {
    let (w, h, fps, gop, n) = (64usize, 48usize, 10u32, 5u32, 40usize);
    let frames: Vec<Vec<u8>> = (0..n).map(|k| synthetic_frame(k, w, h)).collect();
    let mut writer = Mp4H264Writer::new(w as u32, h as u32, fps, gop).unwrap();
    for f in &frames {
        writer.push_rgb(f).unwrap();
    }
    assert_eq!(writer.frames(), n);
    for (i, p) in writer.packets().iter().enumerate() {
        assert_eq!(
            p.keyframe,
            i % gop as usize == 0,
            "keyframe flag of frame {i}"
        );
    }
    // Stage and restore the packets as the dataset writer does.
    let packets = packets_from_bytes(&packets_to_bytes(writer.packets())).unwrap();
    assert_eq!(packets, writer.into_packets());
    let bytes: usize = packets.iter().map(|p| p.data.len()).sum();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("round_trip.mp4");
    write_h264_mp4(&path, w as u32, h as u32, fps, &packets).unwrap();
    let mut reader = VideoReader::open(&path).unwrap();
    assert_eq!(reader.codec(), Codec::H264);
    assert_eq!((reader.width(), reader.height(), reader.len()), (64, 48, n));
    for (i, &t) in reader.timestamps().iter().enumerate() {
        assert_eq!(t, i as f64 / fps as f64, "pts of frame {i}");
    }
    let mut worst = f64::INFINITY;
    // Random access over the GOP structure, then sequential.
    for i in scrambled(n).into_iter().chain(0..n) {
        let got = reader.decode(i).unwrap();
        let p = psnr(&got, &frames[i]);
        worst = worst.min(p);
        assert!(p > 30.0, "frame {i}: PSNR {p:.1} dB");
    }
    eprintln!(
        "round trip: worst PSNR {worst:.1} dB, {:.0} bytes/frame at {w}x{h}",
        bytes as f64 / n as f64
    );
}

#[test]
fn write_h264_mp4_rejects_bad_packet_lists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.mp4");
    let not_key = EncodedPacket {
        data: vec![0, 0, 0, 1, 0x41, 0],
        keyframe: false,
    };
    for (packets, fps) in [
        (vec![], 10),
        (vec![not_key.clone()], 10),
        (vec![not_key], 0),
    ] {
        let err = write_h264_mp4(&path, 16, 16, fps, &packets).unwrap_err();
        assert!(matches!(err, VideoError::Mux { .. }), "{err}");
        assert!(err.to_string().contains("bad.mp4"), "{err}");
    }
    // A keyframe without parameter sets is refused by the muxer, not written broken.
    let no_sps = EncodedPacket {
        data: vec![0, 0, 0, 1, 0x65, 0x88, 0x84],
        keyframe: true,
    };
    assert!(write_h264_mp4(&path, 16, 16, 10, &[no_sps]).is_err());
}

#[test]
fn index_at_clamps_and_rounds() {
    let reader = VideoReader::open(&fixtures().join("tiny_h264.mp4")).unwrap();
    let last = reader.len() - 1;
    assert_eq!(reader.index_at(f64::NAN), 0);
    assert_eq!(reader.index_at(-5.0), 0);
    assert_eq!(reader.index_at(f64::NEG_INFINITY), 0);
    assert_eq!(reader.index_at(1e9), last);
    assert_eq!(reader.index_at(f64::INFINITY), last);
    assert_eq!(reader.index_at(0.3), 3);
    assert_eq!(reader.index_at(0.34), 3);
    assert_eq!(reader.index_at(0.36), 4);
    assert_eq!(reader.index_at(0.35), 3, "ties go to the earlier frame");
}

fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn assert_names_path(err: &VideoError, path: &Path) {
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        err.to_string().contains(name),
        "error does not name the file: {err}"
    );
}

#[test]
fn truncated_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["tiny_h264.mp4", "tiny_av1.mp4", "tiny_av1_odd.mp4"] {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        for cut in [
            0,
            3,
            8,
            40,
            200,
            bytes.len() / 2,
            bytes.len() - 100,
            bytes.len() - 1,
        ] {
            let p = write_temp(dir.path(), &format!("cut_{cut}_{name}"), &bytes[..cut]);
            let err = VideoReader::open(&p).expect_err("a truncated file must not open");
            assert!(matches!(err, VideoError::Demux { .. }), "{err}");
            assert_names_path(&err, &p);
        }
    }
}

#[test]
fn garbage_and_missing_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = 12345u32;
    let garbage: Vec<u8> = (0..5000)
        .map(|_| {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (s >> 16) as u8
        })
        .collect();
    let p = write_temp(dir.path(), "garbage.mp4", &garbage);
    let err = VideoReader::open(&p).unwrap_err();
    assert!(matches!(err, VideoError::Demux { .. }), "{err}");
    assert_names_path(&err, &p);

    let p = write_temp(
        dir.path(),
        "text.mp4",
        b"this is not a video at all, just text\n",
    );
    assert!(matches!(
        VideoReader::open(&p),
        Err(VideoError::Demux { .. })
    ));

    let p = dir.path().join("missing.mp4");
    let err = VideoReader::open(&p).unwrap_err();
    assert!(matches!(err, VideoError::Io { .. }), "{err}");
    assert_names_path(&err, &p);
}

/// Replaces the first occurrence of `from` inside the `moov` box with `to` (same length).
fn patch_moov(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let moov = find(bytes, b"moov").expect("moov present");
    let at = moov + find(&bytes[moov..], from).expect("pattern present");
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

#[test]
fn mp4_without_video_track_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixtures().join("tiny_h264.mp4")).unwrap();
    // The handler type marks the track as video; make it a sound track.
    let p = write_temp(
        dir.path(),
        "audio_only.mp4",
        &patch_moov(&bytes, b"vide", b"soun"),
    );
    let err = VideoReader::open(&p).unwrap_err();
    assert!(
        matches!(&err, VideoError::Demux { message, .. } if message.contains("no video track")),
        "{err}"
    );
    assert_names_path(&err, &p);
}

#[test]
fn unsupported_codec_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixtures().join("tiny_h264.mp4")).unwrap();
    let p = write_temp(
        dir.path(),
        "hevc.mp4",
        &patch_moov(&bytes, b"avc1", b"hvc1"),
    );
    let err = VideoReader::open(&p).unwrap_err();
    assert!(
        matches!(&err, VideoError::UnsupportedCodec { codec, .. } if codec == "hvc1"),
        "{err}"
    );
    assert_names_path(&err, &p);
}

/// Inputs that make re_mp4 0.5 hang (a zero-sized box inside `moov`) or panic (an empty
/// `stsc`): mulli's demuxer must answer promptly, without panicking.
#[test]
fn crafted_boxes_do_not_hang_or_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixtures().join("tiny_h264.mp4")).unwrap();
    let find = |b: &[u8], n: &[u8]| b.windows(n.len()).position(|w| w == n).unwrap();

    let mut zero = bytes.clone();
    let at = find(&zero, b"udta") - 4;
    zero[at..at + 8].copy_from_slice(&[0, 0, 0, 0, b'z', b'z', b'z', b'z']);
    let p = write_temp(dir.path(), "zero_box.mp4", &zero);
    // A zero size means "to the end of the parent": the file stays readable.
    let mut reader = VideoReader::open(&p).unwrap();
    reader.decode(3).unwrap();

    let mut empty_stsc = bytes.clone();
    let at = find(&empty_stsc, b"stsc");
    empty_stsc[at + 8..at + 12].copy_from_slice(&[0, 0, 0, 0]);
    let p = write_temp(dir.path(), "empty_stsc.mp4", &empty_stsc);
    let err = VideoReader::open(&p).unwrap_err();
    assert!(matches!(err, VideoError::Demux { .. }), "{err}");
    assert_names_path(&err, &p);
}

#[test]
fn out_of_range_and_wrong_buffer_are_errors() {
    let path = fixtures().join("tiny_av1.mp4");
    let mut reader = VideoReader::open(&path).unwrap();
    let len = reader.len();
    let err = reader.decode(len).unwrap_err();
    assert!(
        matches!(err, VideoError::FrameOutOfRange { index, len: l, .. } if index == len && l == len),
        "{err}"
    );
    assert_names_path(&err, &path);
    assert!(matches!(
        reader.decode(usize::MAX),
        Err(VideoError::FrameOutOfRange { .. })
    ));
    let mut small = vec![0u8; 10];
    let err = reader.decode_into(0, &mut small).unwrap_err();
    assert!(matches!(err, VideoError::OutputSize { .. }), "{err}");
    // The reader still works afterwards.
    reader.decode(len - 1).unwrap();
}

/// Flips bytes all over the file: opening and decoding must return (Ok or a VideoError),
/// never panic or hang, and a reader recovers for later requests.
#[test]
fn corrupted_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["tiny_h264.mp4", "tiny_av1.mp4", "tiny_av1_odd.mp4"] {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        let mut opened = 0;
        let mut decode_errors = 0;
        for (k, pos) in (0..bytes.len()).step_by(7).enumerate() {
            let mut b = bytes.clone();
            b[pos] ^= [0xff, 0x80, 0x01, 0x55][k % 4];
            let p = write_temp(dir.path(), name, &b);
            let Ok(mut reader) = VideoReader::open(&p) else {
                continue;
            };
            opened += 1;
            for i in [0, reader.len() / 2, reader.len().saturating_sub(1), 1] {
                if let Err(e) = reader.decode(i) {
                    decode_errors += 1;
                    assert!(
                        matches!(
                            e,
                            VideoError::Decode { .. } | VideoError::FrameOutOfRange { .. }
                        ),
                        "{e}"
                    );
                    assert_names_path(&e, &p);
                }
            }
        }
        eprintln!(
            "{name}: {opened} corrupted variants opened, {decode_errors} decode errors, no panic"
        );
    }
}

/// Process CPU time in seconds (decoder worker threads included).
fn cpu_seconds() -> f64 {
    // SAFETY: `rusage` is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Decode speed on LeRobot's fixtures: frames/s (wall) and CPU time per frame, for sequential
/// and random access. Run alone, on an idle machine:
/// `cargo test --release -p mulli-data --test video -- --ignored --nocapture`.
#[test]
#[ignore]
fn decode_speed() {
    let Some(root) = lerobot_fixtures() else {
        return;
    };
    for name in ["h264", "av1"] {
        let path = lerobot_video(&root, name);
        let mut reader = VideoReader::open(&path).unwrap();
        let n = reader.len();
        let mut out = vec![0u8; reader.frame_len()];
        for (label, order) in [
            ("sequential", (0..n).collect::<Vec<_>>()),
            ("random", scrambled(n)),
        ] {
            let (t, c) = (Instant::now(), cpu_seconds());
            for &i in &order {
                reader.decode_into(i, &mut out).unwrap();
            }
            let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
            eprintln!(
                "{name} {label}: {:.0} frames/s, {:.0} us CPU/frame ({n} frames, 96x96)",
                n as f64 / wall,
                cpu * 1e6 / n as f64
            );
        }
        let t = Instant::now();
        for _ in 0..20 {
            let _ = VideoReader::open(&path).unwrap();
        }
        eprintln!(
            "{name} open: {:.2} ms",
            t.elapsed().as_secs_f64() * 1000.0 / 20.0
        );
    }
}
