//! Camera videos: frame-exact random access into MP4 files (H.264 and AV1, as LeRobot writes
//! them) and H.264 MP4 writing.
//!
//! This module owns everything between an `.mp4` path and RGB8 pixels: the MP4 sample table
//! (`mp4.rs`), the decoders (openh264 in `h264.rs`, rav1d in `av1.rs`), YUV → RGB conversion
//! (`yuv.rs`, bit-exact with what LeRobot gets from PyAV on x86-64) and the H.264
//! encoder/muxer the dataset writer uses. It knows nothing about datasets: callers map episode
//! timestamps to frames with [`VideoReader::index_at`].
//!
//! Random access is GOP-aware: a [`VideoReader`] keeps its decoder warm and decodes forward
//! when the requested frame follows the last one with no sync sample in between (or is already
//! in flight), otherwise it restarts at the nearest preceding sync sample (LeRobot writes a
//! keyframe every 2 frames). Decoded pictures are matched to samples by a tag carried through
//! the decoder, so B-frame reordering and decoder delays cannot shift frames.

mod av1;
mod h264;
mod mp4;
mod yuv;

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub use h264::{Mp4H264Writer, packets_from_bytes, packets_to_bytes};
pub use mp4::write_h264_mp4;

use av1::Av1Decoder;
use h264::H264Decoder;
use mp4::{SampleRef, VideoTrack};
use yuv::{YuvBuf, YuvPlanes};

/// Errors from reading, decoding, encoding or writing video. Every variant that concerns a
/// file names it.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable MP4 video: {message}")]
    Demux { path: PathBuf, message: String },
    #[error("{path}: video codec `{codec}` is not supported (mulli decodes h264 and av1)")]
    UnsupportedCodec { path: PathBuf, codec: String },
    #[error("{path}: cannot decode frame {frame}: {message}")]
    Decode {
        path: PathBuf,
        frame: usize,
        message: String,
    },
    #[error("{path}: frame {index} is out of range: the video has {len} frames")]
    FrameOutOfRange {
        path: PathBuf,
        index: usize,
        len: usize,
    },
    #[error(
        "{path}: output buffer for frame {frame} has {got} bytes, expected {expected} (width x height x 3)"
    )]
    OutputSize {
        path: PathBuf,
        frame: usize,
        expected: usize,
        got: usize,
    },
    #[error("H.264 encoding failed: {message}")]
    Encode { message: String },
    #[error("{path}: cannot write MP4: {message}")]
    Mux { path: PathBuf, message: String },
}

/// Video codecs mulli reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    H264,
    Av1,
}

impl Codec {
    /// The name LeRobot writes in `info.json` as `video.codec`.
    pub fn info_name(&self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::Av1 => "av1",
        }
    }
}

/// One encoded frame: Annex B bytes (H.264) and whether it is a keyframe (IDR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPacket {
    pub data: Vec<u8>,
    pub keyframe: bool,
}

enum FrameDecoder {
    H264(H264Decoder),
    Av1(Av1Decoder),
}

/// How many decoded-but-not-yet-requested frames are kept (B-frames come out of order).
const MAX_AHEAD: usize = 8;
/// How many samples past the requested one may be fed before giving up on its picture
/// (covers the deepest reorder delay H.264 allows).
const MAX_REORDER: usize = 16;
/// Tag of filler access units, matching no sample.
const FILLER_TAG: u64 = u64::MAX;

/// Random-access reader of one MP4 video track (the first video track).
///
/// Frames are numbered in presentation order. The reader holds the file open, the sample
/// table and a warm decoder; it is `Send` (one reader per thread).
pub struct VideoReader {
    path: PathBuf,
    file: File,
    codec: Codec,
    width: u32,
    height: u32,
    /// Decode order.
    samples: Vec<SampleRef>,
    /// For each sample (decode order), the nearest sync sample at or before it.
    sync_before: Vec<u32>,
    /// Presentation index → decode index, and back.
    pres_to_dec: Vec<u32>,
    dec_to_pres: Vec<u32>,
    timestamps: Vec<f64>,
    decoder: Option<FrameDecoder>,
    config: mp4::CodecConfig,
    /// First sync sample (decode order), fed as a filler to flush H.264 at the end.
    first_sync: usize,
    /// Decode index of the next sample the warm decoder expects; `None` = restart needed.
    next_sample: Option<usize>,
    /// Samples fed since the last restart whose pictures have not come out yet.
    pending: Vec<usize>,
    /// Pictures decoded ahead of the request, by decode index.
    ahead: Vec<(usize, YuvBuf)>,
    spare: Vec<YuvBuf>,
    sample_buf: Vec<u8>,
}

impl std::fmt::Debug for VideoReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoReader")
            .field("path", &self.path)
            .field("codec", &self.codec)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("frames", &self.samples.len())
            .finish_non_exhaustive()
    }
}

impl VideoReader {
    /// Opens `path` and parses its sample table; decoding starts with the first request.
    pub fn open(path: &Path) -> Result<Self, VideoError> {
        let mut file = File::open(path).map_err(|source| VideoError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let VideoTrack {
            codec,
            width,
            height,
            timescale,
            config,
            samples,
        } = mp4::read_video_track(path, &mut file)?;
        let n = samples.len();
        if u32::try_from(n).is_err() {
            return Err(VideoError::Demux {
                path: path.to_path_buf(),
                message: format!("{n} samples is more than mulli supports"),
            });
        }
        let samples_first_sync = samples.iter().position(|s| s.is_sync).unwrap_or(0);
        let mut sync_before = Vec::with_capacity(n);
        let mut last_sync = 0u32;
        for (i, s) in samples.iter().enumerate() {
            if s.is_sync {
                last_sync = i as u32;
            }
            sync_before.push(last_sync);
        }
        // Presentation order: by pts, ties kept in decode order.
        let mut pres_to_dec: Vec<u32> = (0..n as u32).collect();
        pres_to_dec.sort_by_key(|&d| samples[d as usize].pts);
        let mut dec_to_pres = vec![0u32; n];
        for (p, &d) in pres_to_dec.iter().enumerate() {
            dec_to_pres[d as usize] = p as u32;
        }
        let ts = f64::from(timescale);
        let timestamps = pres_to_dec
            .iter()
            .map(|&d| samples[d as usize].pts as f64 / ts)
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            codec,
            width,
            height,
            samples,
            sync_before,
            pres_to_dec,
            dec_to_pres,
            timestamps,
            decoder: None,
            config,
            first_sync: samples_first_sync,
            next_sample: None,
            pending: Vec::new(),
            ahead: Vec::new(),
            spare: Vec::new(),
            sample_buf: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Bytes of one RGB8 frame (`width * height * 3`).
    pub fn frame_len(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// Presentation time in seconds of each frame, sorted (track timescale, composition
    /// offsets and edit list applied, as FFmpeg reports `frame.pts * time_base`).
    pub fn timestamps(&self) -> &[f64] {
        &self.timestamps
    }

    /// Index of the frame whose presentation time is nearest `t` (the earlier one on a tie),
    /// clamped to the video; NaN gives 0.
    pub fn index_at(&self, t: f64) -> usize {
        let ts = &self.timestamps;
        if ts.is_empty() || t.is_nan() {
            return 0;
        }
        let i = ts.partition_point(|&x| x < t);
        if i == 0 {
            return 0;
        }
        if i >= ts.len() {
            return ts.len() - 1;
        }
        if t - ts[i - 1] <= ts[i] - t { i - 1 } else { i }
    }

    /// Decodes frame `index` (presentation order) into `out` as RGB8 HWC
    /// (`width * height * 3` bytes).
    pub fn decode_into(&mut self, index: usize, out: &mut [u8]) -> Result<(), VideoError> {
        let len = self.samples.len();
        if index >= len {
            return Err(VideoError::FrameOutOfRange {
                path: self.path.clone(),
                index,
                len,
            });
        }
        if out.len() != self.frame_len() {
            return Err(VideoError::OutputSize {
                path: self.path.clone(),
                frame: index,
                expected: self.frame_len(),
                got: out.len(),
            });
        }
        self.decode_sample(index, out).map_err(|message| {
            // Whatever state the decoder is in now is suspect: restart on the next request.
            self.discard_state();
            VideoError::Decode {
                path: self.path.clone(),
                frame: index,
                message,
            }
        })
    }

    /// Decodes frame `index` into a new buffer.
    pub fn decode(&mut self, index: usize) -> Result<Vec<u8>, VideoError> {
        let mut out = vec![0u8; self.frame_len()];
        self.decode_into(index, &mut out)?;
        Ok(out)
    }

    fn decode_sample(&mut self, index: usize, out: &mut [u8]) -> Result<(), String> {
        let target = self.pres_to_dec[index] as usize;
        let (w, h) = (self.width as usize, self.height as usize);

        if let Some(pos) = self.ahead.iter().position(|(d, _)| *d == target) {
            let (_, buf) = self.ahead.swap_remove(pos);
            let res = check_size(&buf.planes(), w, h).and_then(|()| buf.planes().write_rgb(out));
            self.spare.push(buf);
            return res;
        }

        // Keep going with the warm decoder if the target is already in flight, or lies ahead
        // with no sync sample in between; otherwise restart at the target's sync sample.
        let n = self.samples.len();
        let sync = self.sync_before[target] as usize;
        let (mut next, mut restart) = match self.next_sample.take() {
            Some(next) if self.pending.contains(&target) || (sync <= next && next <= target) => {
                (next, false)
            }
            _ => {
                // H.264 needs no reset: the keyframe clears the references, and pictures still
                // held back from before come out later under their own tags (still correct).
                if let Some(FrameDecoder::Av1(d)) = &mut self.decoder {
                    d.reset()?;
                }
                self.pending.clear();
                (sync, true)
            }
        };
        if self.decoder.is_none() {
            self.decoder = Some(self.new_decoder()?);
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return Err("no decoder".into());
        };

        let found = Cell::new(false);
        let pending = RefCell::new(std::mem::take(&mut self.pending));
        let mut used_filler = false;
        {
            let ahead = &mut self.ahead;
            let spare = &mut self.spare;
            let dec_to_pres = &self.dec_to_pres;
            let mut sink = |tag: u64, pic: &YuvPlanes<'_>| -> Result<(), String> {
                let Ok(d) = usize::try_from(tag) else {
                    return Ok(());
                };
                pending.borrow_mut().retain(|&p| p != d);
                if d == target {
                    check_size(pic, w, h)?;
                    pic.write_rgb(out)?;
                    found.set(true);
                } else if d < n && dec_to_pres[d] as usize > index {
                    // Presented after the target but already decoded (B-frames, or released
                    // by a seek): keep it for a later request.
                    if ahead.len() >= MAX_AHEAD {
                        spare.push(ahead.remove(0).1);
                    }
                    let mut buf = spare.pop().unwrap_or_default();
                    buf.copy_from(pic)?;
                    ahead.push((d, buf));
                }
                Ok(())
            };
            // Samples up to the target, then up to MAX_REORDER more for the target's picture to
            // come out; past the end of the stream, fillers (see `H264Decoder`).
            let budget = target.saturating_sub(next) + 2 * MAX_REORDER + 2;
            for _ in 0..budget {
                if found.get() {
                    break;
                }
                if next < n {
                    read_sample(&mut self.file, &self.samples[next], &mut self.sample_buf)?;
                    pending.borrow_mut().push(next);
                    match decoder {
                        FrameDecoder::H264(d) => {
                            d.feed(&self.sample_buf, next as u64, restart, &mut sink)?
                        }
                        FrameDecoder::Av1(d) => d.feed(&self.sample_buf, next as u64, &mut sink)?,
                    }
                    restart = false;
                    next += 1;
                    continue;
                }
                match decoder {
                    FrameDecoder::H264(d) => {
                        // A keyframe starts a new sequence, which makes openh264 release the
                        // pictures it holds back, one per call. (Decoding a non-key sample a
                        // second time instead is rejected as a bitstream error.)
                        let filler = &self.samples[self.first_sync];
                        read_sample(&mut self.file, filler, &mut self.sample_buf)?;
                        d.feed(&self.sample_buf, FILLER_TAG, true, &mut sink)?;
                        used_filler = true;
                    }
                    FrameDecoder::Av1(d) => {
                        d.drain(&mut sink)?;
                        break;
                    }
                }
            }
        }
        self.pending = pending.into_inner();
        if !found.get() {
            return Err("the decoder produced no picture for this frame".into());
        }
        // After a filler the decoder's references no longer match the stream.
        self.next_sample = if used_filler { None } else { Some(next) };
        Ok(())
    }

    fn new_decoder(&self) -> Result<FrameDecoder, String> {
        Ok(match self.codec {
            Codec::H264 => FrameDecoder::H264(H264Decoder::new(&self.config)?),
            Codec::Av1 => FrameDecoder::Av1(Av1Decoder::new(&self.config)?),
        })
    }

    /// Forgets all decoding state after an error; the next request restarts at a sync sample.
    fn discard_state(&mut self) {
        self.next_sample = None;
        self.pending.clear();
        self.spare.extend(self.ahead.drain(..).map(|(_, b)| b));
        let ok = match &mut self.decoder {
            Some(FrameDecoder::H264(d)) => d.recreate().is_ok(),
            Some(FrameDecoder::Av1(d)) => d.reset().is_ok(),
            None => true,
        };
        if !ok {
            self.decoder = None;
        }
    }
}

fn check_size(pic: &YuvPlanes<'_>, w: usize, h: usize) -> Result<(), String> {
    if pic.width != w || pic.height != h {
        return Err(format!(
            "decoded picture is {}x{} but the track declares {w}x{h}",
            pic.width, pic.height
        ));
    }
    Ok(())
}

fn read_sample(file: &mut File, s: &SampleRef, buf: &mut Vec<u8>) -> Result<(), String> {
    buf.resize(s.size as usize, 0);
    file.seek(SeekFrom::Start(s.offset))
        .and_then(|_| file.read_exact(buf))
        .map_err(|e| format!("cannot read {} bytes at offset {}: {e}", s.size, s.offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn reader_and_writer_are_send() {
        assert_send::<VideoReader>();
        assert_send::<Mp4H264Writer>();
    }

    #[test]
    fn codec_names_match_lerobot() {
        assert_eq!(Codec::H264.info_name(), "h264");
        assert_eq!(Codec::Av1.info_name(), "av1");
    }
}
