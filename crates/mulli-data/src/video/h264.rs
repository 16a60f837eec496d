//! H.264 through openh264 (bundled C source): a decoder that tags every picture with the
//! sample it came from, the RGB → MP4 encoder ([`Mp4H264Writer`]), and the staging format for
//! encoded packets.
//!
//! The decoder is driven through openh264's raw API because the safe wrapper does not pass an
//! input timestamp: tagging each access unit and reading the tag back from the output picture
//! is what maps pictures to samples whatever order and delay openh264 releases them with
//! (B-frames, seeks).

use std::os::raw::c_int;
use std::path::Path;
use std::ptr::null_mut;

use openh264::OpenH264API;
use openh264::Timestamp;
use openh264::decoder::{Decoder, DecoderConfig};
use openh264::encoder::{
    Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, QpRange,
    RateControlMode, UsageType,
};
use openh264::formats::YUVSource;
use openh264_sys2::{SBufferInfo, dsErrorFree, videoFormatI420};

use super::mp4::CodecConfig;
use super::yuv::{YuvPlanes, rgb_to_i420};
use super::{EncodedPacket, VideoError, write_h264_mp4};

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Appends the length-prefixed (AVCC) NAL units of `sample` to `out` in Annex B form.
pub(crate) fn avcc_to_annexb(
    sample: &[u8],
    nal_length_size: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut rest = sample;
    while !rest.is_empty() {
        if rest.len() < nal_length_size {
            return Err(format!(
                "sample ends inside a NAL length field ({} bytes left)",
                rest.len()
            ));
        }
        let (len, tail) = rest.split_at(nal_length_size);
        let n = len.iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        if n > tail.len() {
            return Err(format!(
                "NAL unit of {n} bytes overruns the sample ({} bytes left)",
                tail.len()
            ));
        }
        let (nal, tail) = tail.split_at(n);
        if !nal.is_empty() {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
        }
        rest = tail;
    }
    Ok(())
}

/// Receives decoded pictures: `(tag, picture)`. The picture borrows decoder memory and is only
/// valid during the call.
pub(crate) type PictureSink<'s> = dyn FnMut(u64, &YuvPlanes<'_>) -> Result<(), String> + 's;

/// openh264 decoder for AVCC samples from an MP4 track.
///
/// Pictures come out through openh264's normal reordering path, i.e. usually one sample
/// late (it releases a picture once the next one arrives). Its `FlushFrame` is deliberately
/// never used: in single-threaded mode it does not drop its reference on the pictures it
/// releases (`m_pPicBuff` is NULL there), so every flush leaks a picture buffer until
/// decoding fails with "out of memory". To push out the last pictures of a stream the reader
/// feeds an extra keyframe instead.
pub(crate) struct H264Decoder {
    decoder: Decoder,
    nal_length_size: usize,
    /// SPS and PPS from `avcC`, Annex B. FFmpeg-muxed files carry them only out of band, so
    /// they go before the first sample of a new decoder and before each restart.
    parameter_sets: Vec<u8>,
    needs_parameter_sets: bool,
    annexb: Vec<u8>,
}

fn new_decoder() -> Result<Decoder, String> {
    Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
        .map_err(|e| format!("cannot create the openh264 decoder: {e}"))
}

impl H264Decoder {
    pub(crate) fn new(config: &CodecConfig) -> Result<Self, String> {
        let CodecConfig::Avc {
            nal_length_size,
            sps,
            pps,
        } = config
        else {
            return Err("H.264 track without an 'avcC' configuration".into());
        };
        let mut parameter_sets = Vec::new();
        for ps in sps.iter().chain(pps) {
            parameter_sets.extend_from_slice(&START_CODE);
            parameter_sets.extend_from_slice(ps);
        }
        Ok(Self {
            decoder: new_decoder()?,
            nal_length_size: *nal_length_size,
            parameter_sets,
            needs_parameter_sets: true,
            annexb: Vec::new(),
        })
    }

    /// Drops all decoder state (after an error): a fresh openh264 instance.
    pub(crate) fn recreate(&mut self) -> Result<(), String> {
        self.decoder = new_decoder()?;
        self.needs_parameter_sets = true;
        Ok(())
    }

    /// Decodes one sample (AVCC), tagged `tag`; pictures that become available go to `sink`
    /// with the tag of the sample they were decoded from. `restart` marks a sync sample that
    /// starts decoding afresh: the parameter sets are sent first.
    pub(crate) fn feed(
        &mut self,
        sample: &[u8],
        tag: u64,
        restart: bool,
        sink: &mut PictureSink<'_>,
    ) -> Result<(), String> {
        self.annexb.clear();
        if restart || self.needs_parameter_sets {
            self.annexb.extend_from_slice(&self.parameter_sets);
        }
        avcc_to_annexb(sample, self.nal_length_size, &mut self.annexb)?;
        if self.annexb.is_empty() {
            return Ok(());
        }
        let len = c_int::try_from(self.annexb.len())
            .map_err(|_| format!("sample of {} bytes is too large", self.annexb.len()))?;
        let mut dst = [null_mut::<u8>(); 3];
        let mut info = SBufferInfo {
            uiInBsTimeStamp: tag,
            ..SBufferInfo::default()
        };
        // SAFETY: the input pointer/length describe `self.annexb`, which outlives the call;
        // `dst` and `info` are valid for writes. openh264 copies what it keeps.
        let state = unsafe {
            self.decoder.raw_api().decode_frame_no_delay(
                self.annexb.as_ptr(),
                len,
                dst.as_mut_ptr(),
                &raw mut info,
            )
        };
        if state != dsErrorFree {
            return Err(describe_state(state));
        }
        self.needs_parameter_sets = false;
        if info.iBufferStatus == 1 {
            emit(&dst, &info, sink)?;
        }
        Ok(())
    }
}

/// Hands one output picture to `sink`, after checking what openh264 reported about it.
fn emit(dst: &[*mut u8; 3], info: &SBufferInfo, sink: &mut PictureSink<'_>) -> Result<(), String> {
    // SAFETY: for an output picture (iBufferStatus == 1) openh264 fills the system-buffer arm
    // of this union, the only arm it has.
    let sb = unsafe { info.UsrData.sSystemBuffer };
    if sb.iFormat != videoFormatI420 as c_int {
        return Err(format!("openh264 returned pixel format {}", sb.iFormat));
    }
    let dims = [sb.iWidth, sb.iHeight, sb.iStride[0], sb.iStride[1]].map(usize::try_from);
    let [Ok(w), Ok(h), Ok(y_stride), Ok(uv_stride)] = dims else {
        return Err("openh264 returned a picture with negative size or stride".into());
    };
    if w == 0 || h == 0 || y_stride < w || uv_stride < w.div_ceil(2) {
        return Err(format!(
            "openh264 returned an invalid picture ({w}x{h}, strides {y_stride}/{uv_stride})"
        ));
    }
    if dst.iter().any(|p| p.is_null()) {
        return Err("openh264 returned a picture without planes".into());
    }
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let y_len = y_stride * (h - 1) + w;
    let uv_len = uv_stride * (ch - 1) + cw;
    // SAFETY: openh264's picture buffers hold `stride * height` bytes per plane (plus
    // padding), which covers these lengths; they stay valid until the next decoder call, and
    // the slices do not outlive `sink`.
    let planes = unsafe {
        YuvPlanes {
            y: std::slice::from_raw_parts(dst[0], y_len),
            u: std::slice::from_raw_parts(dst[1], uv_len),
            v: std::slice::from_raw_parts(dst[2], uv_len),
            y_stride,
            uv_stride,
            width: w,
            height: h,
        }
    };
    sink(info.uiOutYuvTimeStamp, &planes)
}

fn describe_state(state: c_int) -> String {
    const FLAGS: [(c_int, &str); 11] = [
        (0x01, "frame pending"),
        (0x02, "reference lost"),
        (0x04, "bitstream error"),
        (0x08, "dependent layer lost"),
        (0x10, "no parameter sets"),
        (0x20, "data error concealed"),
        (0x40, "reference list null"),
        (0x1000, "invalid argument"),
        (0x2000, "decoder not initialised"),
        (0x4000, "out of memory"),
        (0x8000, "destination buffer too small"),
    ];
    let names: Vec<&str> = FLAGS
        .iter()
        .filter(|(bit, _)| state & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    format!("openh264 decoding state {state:#x} ({})", names.join(", "))
}

/// An I420 frame owned by the encoder, converted from RGB.
struct I420 {
    data: Vec<u8>,
    width: usize,
    height: usize,
}

impl I420 {
    fn split(&self) -> (&[u8], &[u8], &[u8]) {
        let luma = self.width * self.height;
        let chroma = (self.width / 2) * (self.height / 2);
        let (y, rest) = self.data.split_at(luma);
        let (u, v) = rest.split_at(chroma);
        (y, u, v)
    }
}

impl YUVSource for I420 {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }
    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }
    fn y(&self) -> &[u8] {
        self.split().0
    }
    fn u(&self) -> &[u8] {
        self.split().1
    }
    fn v(&self) -> &[u8] {
        self.split().2
    }
}

/// Encodes RGB8 HWC frames to H.264 (openh264, bundled source) and writes MP4 with muxide.
///
/// Every frame becomes exactly one packet (frame skipping is off), an IDR keyframe every
/// `gop` frames. Packets stay in memory (a 96×96 frame is ~100–300 bytes) so callers can stage
/// them ([`packets_to_bytes`]) and mux later ([`write_h264_mp4`]).
pub struct Mp4H264Writer {
    encoder: Encoder,
    width: u32,
    height: u32,
    fps: u32,
    gop: u32,
    frame: I420,
    packets: Vec<EncodedPacket>,
}

impl std::fmt::Debug for Mp4H264Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mp4H264Writer")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("fps", &self.fps)
            .field("gop", &self.gop)
            .field("frames", &self.packets.len())
            .finish_non_exhaustive()
    }
}

/// Rate control: a constant QP (openh264's buffer-based mode with `min == max` QP). It keeps
/// quality uniform across episodes and frames, unlike a bitrate target, and never skips.
const QP: u8 = 26;

impl Mp4H264Writer {
    pub fn new(width: u32, height: u32, fps: u32, gop: u32) -> Result<Self, VideoError> {
        let bad = |message: String| Err(VideoError::Encode { message });
        if width == 0 || height == 0 || width % 2 == 1 || height % 2 == 1 {
            return bad(format!(
                "H.264 4:2:0 needs a positive, even width and height, got {width}x{height}"
            ));
        }
        if width > 3840 || height > 3840 {
            return bad(format!(
                "{width}x{height} exceeds openh264's maximum of 3840x2160"
            ));
        }
        if fps == 0 || gop == 0 {
            return bad(format!(
                "fps and gop must be positive, got fps {fps}, gop {gop}"
            ));
        }
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bufferbased)
            .qp(QpRange::new(QP, QP))
            .max_frame_rate(FrameRate::from_hz(fps as f32))
            .skip_frames(false)
            .scene_change_detect(false)
            .complexity(Complexity::Medium)
            .intra_frame_period(IntraFramePeriod::from_num_frames(gop))
            .num_threads(1);
        let encoder =
            Encoder::with_api_config(OpenH264API::from_source(), config).map_err(|e| {
                VideoError::Encode {
                    message: format!("cannot create the openh264 encoder: {e}"),
                }
            })?;
        let (w, h) = (width as usize, height as usize);
        Ok(Self {
            encoder,
            width,
            height,
            fps,
            gop,
            frame: I420 {
                data: vec![0; w * h + 2 * (w / 2) * (h / 2)],
                width: w,
                height: h,
            },
            packets: Vec::new(),
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    pub fn fps(&self) -> u32 {
        self.fps
    }
    pub fn gop(&self) -> u32 {
        self.gop
    }

    /// Encodes one RGB8 HWC frame (`width * height * 3` bytes).
    pub fn push_rgb(&mut self, rgb: &[u8]) -> Result<(), VideoError> {
        let (w, h) = (self.width as usize, self.height as usize);
        if rgb.len() != w * h * 3 {
            return Err(VideoError::Encode {
                message: format!(
                    "frame {} has {} bytes, a {w}x{h} RGB frame needs {}",
                    self.packets.len(),
                    rgb.len(),
                    w * h * 3
                ),
            });
        }
        let index = self.packets.len();
        {
            let luma = w * h;
            let chroma = (w / 2) * (h / 2);
            let (y, rest) = self.frame.data.split_at_mut(luma);
            let (u, v) = rest.split_at_mut(chroma);
            rgb_to_i420(rgb, w, h, y, u, v);
        }
        // An IDR exactly every `gop` frames (openh264's intra period counts from its own
        // start, so force it rather than trust the count).
        if index > 0 && index.is_multiple_of(self.gop as usize) {
            self.encoder.force_intra_frame();
        }
        let millis = index as u64 * 1000 / u64::from(self.fps);
        let stream = self
            .encoder
            .encode_at(&self.frame, Timestamp::from_millis(millis))
            .map_err(|e| VideoError::Encode {
                message: format!("frame {index}: {e}"),
            })?;
        let frame_type = stream.frame_type();
        let data = stream.to_vec();
        if data.is_empty() || matches!(frame_type, FrameType::Skip | FrameType::Invalid) {
            return Err(VideoError::Encode {
                message: format!("frame {index}: openh264 produced no data ({frame_type:?})"),
            });
        }
        self.packets.push(EncodedPacket {
            data,
            keyframe: matches!(frame_type, FrameType::IDR),
        });
        Ok(())
    }

    pub fn frames(&self) -> usize {
        self.packets.len()
    }

    /// Encoded packets so far (Annex B bytes + keyframe flag), one per frame.
    pub fn packets(&self) -> &[EncodedPacket] {
        &self.packets
    }

    pub fn into_packets(self) -> Vec<EncodedPacket> {
        self.packets
    }

    /// Writes the frames so far as an MP4 (see [`write_h264_mp4`]).
    pub fn write_mp4(&self, path: &Path) -> Result<(), VideoError> {
        write_h264_mp4(path, self.width, self.height, self.fps, &self.packets)
    }
}

const PACKETS_MAGIC: &[u8; 8] = b"MULLIPKT";
const PACKETS_VERSION: u16 = 1;

/// Serializes packets into a self-describing blob: magic `MULLIPKT`, u16 version, u32 count,
/// then per packet a u8 keyframe flag, u32 length and the bytes (little endian).
pub fn packets_to_bytes(packets: &[EncodedPacket]) -> Vec<u8> {
    let total: usize = packets.iter().map(|p| 5 + p.data.len()).sum();
    let mut out = Vec::with_capacity(14 + total);
    out.extend_from_slice(PACKETS_MAGIC);
    out.extend_from_slice(&PACKETS_VERSION.to_le_bytes());
    out.extend_from_slice(&(packets.len() as u32).to_le_bytes());
    for p in packets {
        out.push(u8::from(p.keyframe));
        out.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&p.data);
    }
    out
}

/// Parses [`packets_to_bytes`] output; truncated or foreign input is an error, never a panic.
pub fn packets_from_bytes(bytes: &[u8]) -> Result<Vec<EncodedPacket>, String> {
    fn take<'a>(rest: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], String> {
        if rest.len() < n {
            return Err(format!(
                "truncated packet blob: {what} needs {n} bytes, {} left",
                rest.len()
            ));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    fn u32_le(b: &[u8]) -> u32 {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    let mut rest = bytes;
    if take(&mut rest, 8, "magic")? != PACKETS_MAGIC {
        return Err("not a mulli packet blob (bad magic)".into());
    }
    let v = take(&mut rest, 2, "version")?;
    let version = u16::from_le_bytes([v[0], v[1]]);
    if version != PACKETS_VERSION {
        return Err(format!(
            "packet blob version {version} is not supported (expected {PACKETS_VERSION})"
        ));
    }
    let count = u32_le(take(&mut rest, 4, "count")?) as usize;
    if count > rest.len() / 5 {
        return Err(format!(
            "packet blob declares {count} packets but holds only {} bytes",
            rest.len()
        ));
    }
    let mut packets = Vec::with_capacity(count);
    for i in 0..count {
        let keyframe = match take(&mut rest, 1, "keyframe flag")?[0] {
            0 => false,
            1 => true,
            other => return Err(format!("packet {i}: invalid keyframe flag {other}")),
        };
        let len = u32_le(take(&mut rest, 4, "packet length")?) as usize;
        let data = take(&mut rest, len, "packet data")?.to_vec();
        packets.push(EncodedPacket { data, keyframe });
    }
    if !rest.is_empty() {
        return Err(format!(
            "{} unexpected bytes after the last packet",
            rest.len()
        ));
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avcc_converts_and_rejects_overruns() {
        let mut out = Vec::new();
        avcc_to_annexb(&[0, 0, 0, 2, 0x65, 0xaa, 0, 0, 0, 1, 0x41], 4, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x65, 0xaa, 0, 0, 0, 1, 0x41]);
        out.clear();
        assert!(avcc_to_annexb(&[0, 0, 0, 9, 0x65], 4, &mut out).is_err());
        assert!(avcc_to_annexb(&[0, 0], 4, &mut out).is_err());
        out.clear();
        avcc_to_annexb(&[0, 1, 0x09], 2, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x09]);
    }

    #[test]
    fn packet_blob_round_trips_and_rejects_garbage() {
        let packets = vec![
            EncodedPacket {
                data: vec![0, 0, 0, 1, 0x67, 1, 2, 3],
                keyframe: true,
            },
            EncodedPacket {
                data: vec![],
                keyframe: false,
            },
            EncodedPacket {
                data: vec![9; 300],
                keyframe: false,
            },
        ];
        let bytes = packets_to_bytes(&packets);
        assert_eq!(packets_from_bytes(&bytes).unwrap(), packets);
        assert_eq!(
            packets_from_bytes(&packets_to_bytes(&[])).unwrap(),
            Vec::new()
        );
        // Every truncation is an error.
        for cut in 0..bytes.len() {
            assert!(packets_from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Trailing bytes, bad magic, bad version, bad flag, absurd count.
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(packets_from_bytes(&extra).is_err());
        assert!(packets_from_bytes(b"garbage garbage garbage").is_err());
        let mut v = bytes.clone();
        v[8] = 2;
        assert!(packets_from_bytes(&v).is_err());
        let mut f = bytes.clone();
        f[14] = 7;
        assert!(packets_from_bytes(&f).is_err());
        let mut c = bytes.clone();
        c[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(packets_from_bytes(&c).is_err());
    }

    #[test]
    fn writer_rejects_bad_sizes() {
        assert!(Mp4H264Writer::new(95, 96, 10, 2).is_err());
        assert!(Mp4H264Writer::new(0, 96, 10, 2).is_err());
        assert!(Mp4H264Writer::new(96, 96, 0, 2).is_err());
        assert!(Mp4H264Writer::new(96, 96, 10, 0).is_err());
        let mut w = Mp4H264Writer::new(16, 16, 10, 2).unwrap();
        assert!(matches!(
            w.push_rgb(&[0; 10]),
            Err(VideoError::Encode { .. })
        ));
    }
}
