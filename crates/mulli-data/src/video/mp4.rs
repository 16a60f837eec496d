//! MP4 container: the sample table of the first video track (demux) and H.264 MP4 writing
//! (mux, through `muxide`).
//!
//! The demuxer reads only the boxes it needs (`moov/trak/mdia/{mdhd,hdlr,minf/stbl}`, `edts/elst`)
//! with a bounds-checked cursor, so truncated or hostile files become errors. `re_mp4` parses
//! LeRobot's files fine, but its sample-table builder indexes tables unchecked (panics on bad
//! input) and its box loops do not advance over zero-sized child boxes (hangs), so it is used
//! only as a cross-check in tests.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom};
use std::path::Path;

use super::{Codec, EncodedPacket, VideoError};

/// Out-of-band decoder configuration from the sample entry.
#[derive(Clone, Debug)]
pub(crate) enum CodecConfig {
    /// `avcC`: NAL length size and the parameter sets (without start codes).
    Avc {
        nal_length_size: usize,
        sps: Vec<Vec<u8>>,
        pps: Vec<Vec<u8>>,
    },
    /// `av1C`: the configOBUs (usually the sequence header), in low-overhead format.
    Av1 { config_obus: Vec<u8> },
}

/// One coded sample, in decode order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SampleRef {
    pub offset: u64,
    pub size: u32,
    pub is_sync: bool,
    /// Presentation time in track timescale units, edit list applied.
    pub pts: i64,
}

/// What the reader needs to know about the video track.
#[derive(Clone, Debug)]
pub(crate) struct VideoTrack {
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    pub timescale: u32,
    pub config: CodecConfig,
    /// Decode order.
    pub samples: Vec<SampleRef>,
}

type R<T> = Result<T, String>;

/// A bounds-checked big-endian cursor over a box body.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    fn take(&mut self, n: usize, what: &str) -> R<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("{what}: box is truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn skip(&mut self, n: usize, what: &str) -> R<()> {
        self.take(n, what).map(|_| ())
    }
    fn u8(&mut self, what: &str) -> R<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> R<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> R<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> R<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }
    /// Entry count of a table whose entries are `entry_size` bytes: rejects counts that cannot
    /// fit in the box (so a corrupt count cannot trigger a huge allocation).
    fn count(&mut self, entry_size: usize, what: &str) -> R<usize> {
        let n = self.u32(what)? as usize;
        if n > self.rest().len() / entry_size {
            return Err(format!(
                "{what}: entry count {n} does not fit in the box ({} bytes left)",
                self.rest().len()
            ));
        }
        Ok(n)
    }
}

fn fourcc(t: [u8; 4]) -> String {
    t.iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Child boxes of a container body: `(type, body)`, or an error for a size that overruns the
/// parent or is smaller than its header. Fewer than 8 trailing bytes are ignored (some muxers
/// pad containers with a 32-bit zero terminator).
struct Boxes<'a> {
    rest: &'a [u8],
    failed: bool,
}

fn boxes(body: &[u8]) -> Boxes<'_> {
    Boxes {
        rest: body,
        failed: false,
    }
}

impl<'a> Iterator for Boxes<'a> {
    type Item = R<([u8; 4], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.len() < 8 {
            return None;
        }
        let r = self.rest;
        let size32 = u32::from_be_bytes([r[0], r[1], r[2], r[3]]);
        let typ = [r[4], r[5], r[6], r[7]];
        let (header, size) = match size32 {
            0 => (8usize, r.len() as u64),
            1 => {
                let Some(b) = r.get(8..16) else {
                    self.failed = true;
                    return Some(Err(format!("box '{}' has a truncated header", fourcc(typ))));
                };
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (16usize, u64::from_be_bytes(a))
            }
            n => (8usize, n as u64),
        };
        if size < header as u64 || size > r.len() as u64 {
            self.failed = true;
            return Some(Err(format!(
                "box '{}' claims {size} bytes but {} remain in its parent",
                fourcc(typ),
                r.len()
            )));
        }
        let size = size as usize;
        self.rest = &r[size..];
        Some(Ok((typ, &r[header..size])))
    }
}

/// The first child box of type `t`, if any.
fn child<'a>(body: &'a [u8], t: &[u8; 4]) -> R<Option<&'a [u8]>> {
    for b in boxes(body) {
        let (typ, b) = b?;
        if &typ == t {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

fn need<'a>(body: &'a [u8], t: &[u8; 4], parent: &str) -> R<&'a [u8]> {
    child(body, t)?.ok_or_else(|| format!("'{parent}' has no '{}' box", fourcc(*t)))
}

/// Reads the whole `moov` box of `file` (top-level boxes are walked by their headers, so the
/// media data is never read here). Also checks the file is not cut short.
fn read_moov(file: &mut File, file_len: u64) -> R<Vec<u8>> {
    let mut pos = 0u64;
    let mut moov = None;
    let mut saw_moof = false;
    while pos < file_len {
        let left = file_len - pos;
        if left < 8 {
            if moov.is_some() {
                break; // tolerate a few stray trailing bytes after a complete file
            }
            return Err(format!("truncated box header at byte {pos}"));
        }
        let mut h = [0u8; 16];
        file.seek(SeekFrom::Start(pos))
            .and_then(|_| file.read_exact(&mut h[..8]))
            .map_err(|e| format!("cannot read box header at byte {pos}: {e}"))?;
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let typ = [h[4], h[5], h[6], h[7]];
        let (header, size) = match size32 {
            0 => (8u64, left),
            1 => {
                if left < 16 {
                    return Err(format!("truncated box header at byte {pos}"));
                }
                file.read_exact(&mut h[8..16])
                    .map_err(|e| format!("cannot read box header at byte {pos}: {e}"))?;
                let mut a = [0u8; 8];
                a.copy_from_slice(&h[8..16]);
                (16u64, u64::from_be_bytes(a))
            }
            n => (8u64, n as u64),
        };
        if size < header {
            return Err(format!(
                "box '{}' at byte {pos} has an invalid size {size}",
                fourcc(typ)
            ));
        }
        if size > left {
            return Err(format!(
                "box '{}' at byte {pos} needs {size} bytes but only {left} remain: the file is truncated",
                fourcc(typ)
            ));
        }
        match &typ {
            b"moov" if moov.is_none() => {
                let body_len = usize::try_from(size - header)
                    .map_err(|_| "the 'moov' box is too large".to_string())?;
                let mut body = vec![0u8; body_len];
                file.read_exact(&mut body)
                    .map_err(|e| format!("cannot read the 'moov' box: {e}"))?;
                moov = Some(body);
            }
            b"moof" => saw_moof = true,
            _ => {}
        }
        pos += size;
    }
    match moov {
        Some(m) => Ok(m),
        None if saw_moof => Err("fragmented MP4 without a 'moov' box is not supported".into()),
        None if pos == 0 => Err("the file is empty".into()),
        None => Err("no 'moov' box: not an MP4 file".into()),
    }
}

/// Movie timescale from `mvhd` (needed to convert edit-list durations).
fn movie_timescale(moov: &[u8]) -> R<u32> {
    let mvhd = need(moov, b"mvhd", "moov")?;
    let mut c = Cursor::new(mvhd);
    let version = c.u8("mvhd")?;
    c.skip(3, "mvhd")?;
    c.skip(if version == 1 { 16 } else { 8 }, "mvhd")?;
    c.u32("mvhd")
}

/// Parses the file's first video track. `path` is only for error messages.
pub(crate) fn read_video_track(path: &Path, file: &mut File) -> Result<VideoTrack, VideoError> {
    let demux = |message: String| VideoError::Demux {
        path: path.to_path_buf(),
        message,
    };
    let file_len = file
        .metadata()
        .map_err(|source| VideoError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let moov = read_moov(file, file_len).map_err(demux)?;
    let movie_ts = movie_timescale(&moov).map_err(demux)?;
    for b in boxes(&moov) {
        let (typ, trak) = b.map_err(demux)?;
        if &typ != b"trak" {
            continue;
        }
        let mdia = need(trak, b"mdia", "trak").map_err(demux)?;
        let hdlr = need(mdia, b"hdlr", "mdia").map_err(demux)?;
        if hdlr.get(8..12) != Some(b"vide".as_slice()) {
            continue;
        }
        return parse_video_trak(path, trak, mdia, movie_ts, file_len);
    }
    Err(demux("no video track".into()))
}

fn parse_video_trak(
    path: &Path,
    trak: &[u8],
    mdia: &[u8],
    movie_ts: u32,
    file_len: u64,
) -> Result<VideoTrack, VideoError> {
    let demux = |message: String| VideoError::Demux {
        path: path.to_path_buf(),
        message,
    };
    let stbl = need(mdia, b"minf", "mdia")
        .and_then(|minf| need(minf, b"stbl", "minf"))
        .map_err(demux)?;
    let timescale = mdhd_timescale(mdia).map_err(demux)?;
    let (codec, width, height, config) = sample_entry(path, stbl)?;
    let (width, height) = if width > 0 && height > 0 {
        (width, height)
    } else {
        tkhd_size(trak).map_err(demux)?
    };
    if width == 0 || height == 0 {
        return Err(demux("the video track has no picture size".into()));
    }
    let edit_shift = edit_shift(trak, movie_ts, timescale).map_err(demux)?;
    let samples = sample_table(stbl, file_len, edit_shift).map_err(demux)?;
    Ok(VideoTrack {
        codec,
        width,
        height,
        timescale,
        config,
        samples,
    })
}

fn mdhd_timescale(mdia: &[u8]) -> R<u32> {
    let mdhd = need(mdia, b"mdhd", "mdia")?;
    let mut c = Cursor::new(mdhd);
    let version = c.u8("mdhd")?;
    c.skip(3, "mdhd")?;
    c.skip(if version == 1 { 16 } else { 8 }, "mdhd")?;
    let ts = c.u32("mdhd")?;
    if ts == 0 {
        return Err("the video track's timescale is 0".into());
    }
    Ok(ts)
}

fn tkhd_size(trak: &[u8]) -> R<(u32, u32)> {
    let tkhd = need(trak, b"tkhd", "trak")?;
    let mut c = Cursor::new(tkhd);
    let version = c.u8("tkhd")?;
    c.skip(3, "tkhd")?;
    // times, track id, reserved, duration, reserved, layer, group, volume, reserved, matrix
    c.skip(if version == 1 { 32 } else { 20 }, "tkhd")?;
    c.skip(8 + 8 + 36, "tkhd")?;
    let w = c.u32("tkhd")? >> 16;
    let h = c.u32("tkhd")? >> 16;
    Ok((w, h))
}

/// Codec, coded size and decoder configuration from the first `stsd` entry.
fn sample_entry(path: &Path, stbl: &[u8]) -> Result<(Codec, u32, u32, CodecConfig), VideoError> {
    let demux = |message: String| VideoError::Demux {
        path: path.to_path_buf(),
        message,
    };
    let stsd = need(stbl, b"stsd", "stbl").map_err(demux)?;
    let entries = stsd
        .get(8..)
        .ok_or_else(|| demux("'stsd' is truncated".into()))?;
    let (typ, entry) = boxes(entries)
        .next()
        .ok_or_else(|| demux("'stsd' has no sample entry".into()))?
        .map_err(demux)?;
    let codec = match &typ {
        b"avc1" | b"avc3" => Codec::H264,
        b"av01" => Codec::Av1,
        _ => {
            return Err(VideoError::UnsupportedCodec {
                path: path.to_path_buf(),
                codec: fourcc(typ),
            });
        }
    };
    // VisualSampleEntry: 8 bytes SampleEntry, 16 pre-defined/reserved, width, height, 50 more
    // bytes (resolution, frame count, compressor name, depth, pre-defined), then child boxes.
    let mut c = Cursor::new(entry);
    c.skip(24, "sample entry").map_err(demux)?;
    let width = c.u16("sample entry").map_err(demux)? as u32;
    let height = c.u16("sample entry").map_err(demux)? as u32;
    c.skip(50, "sample entry").map_err(demux)?;
    let children = c.rest();
    let config = match codec {
        Codec::H264 => {
            let avcc = need(children, b"avcC", "avc1").map_err(demux)?;
            parse_avcc(avcc).map_err(demux)?
        }
        Codec::Av1 => {
            let av1c = need(children, b"av1C", "av01").map_err(demux)?;
            let config_obus = av1c
                .get(4..)
                .ok_or_else(|| demux("'av1C' is truncated".into()))?
                .to_vec();
            CodecConfig::Av1 { config_obus }
        }
    };
    Ok((codec, width, height, config))
}

fn parse_avcc(avcc: &[u8]) -> R<CodecConfig> {
    let mut c = Cursor::new(avcc);
    c.skip(4, "avcC")?; // version, profile, compatibility, level
    let nal_length_size = (c.u8("avcC")? & 0x03) as usize + 1;
    if nal_length_size == 3 {
        return Err("'avcC' declares 3-byte NAL lengths, which H.264 does not allow".into());
    }
    let mut read_sets = |mask: u8| -> R<Vec<Vec<u8>>> {
        let n = (c.u8("avcC")? & mask) as usize;
        (0..n)
            .map(|_| {
                let len = c.u16("avcC")? as usize;
                Ok(c.take(len, "avcC")?.to_vec())
            })
            .collect()
    };
    let sps = read_sets(0x1f)?;
    let pps = read_sets(0xff)?;
    Ok(CodecConfig::Avc {
        nal_length_size,
        sps,
        pps,
    })
}

/// Offset subtracted from composition times so they become presentation times, from the first
/// edit-list entry that maps media (`media_time`), minus any leading empty edits. Without an
/// edit list the composition times are used as they are (as FFmpeg does).
fn edit_shift(trak: &[u8], movie_ts: u32, media_ts: u32) -> R<i64> {
    let Some(edts) = child(trak, b"edts")? else {
        return Ok(0);
    };
    let Some(elst) = child(edts, b"elst")? else {
        return Ok(0);
    };
    let mut c = Cursor::new(elst);
    let version = c.u8("elst")?;
    c.skip(3, "elst")?;
    let entry_size = if version == 1 { 20 } else { 12 };
    let n = c.count(entry_size, "elst")?;
    let mut empty = 0i64; // in media timescale
    for _ in 0..n {
        let (duration, media_time) = if version == 1 {
            (c.u64("elst")?, c.u64("elst")? as i64)
        } else {
            (c.u32("elst")? as u64, c.u32("elst")? as i32 as i64)
        };
        c.skip(4, "elst")?; // media rate
        if media_time == -1 {
            if movie_ts > 0 {
                let d = (duration as i128 * media_ts as i128 / movie_ts as i128)
                    .clamp(0, i64::MAX as i128) as i64;
                empty = empty.saturating_add(d);
            }
            continue;
        }
        return Ok(media_time.saturating_sub(empty));
    }
    Ok(0)
}

/// Expands a run-length table `(count, value)` to exactly `n` values; missing entries repeat
/// the last value (FFmpeg is equally lenient), extra ones are ignored.
fn expand_runs(runs: &[(u32, i64)], n: usize, default: i64) -> Vec<i64> {
    let mut out = Vec::with_capacity(n);
    for &(count, value) in runs {
        let take = (count as usize).min(n - out.len());
        out.extend(std::iter::repeat_n(value, take));
        if out.len() == n {
            return out;
        }
    }
    let last = runs.last().map_or(default, |r| r.1);
    out.resize(n, last);
    out
}

fn sample_table(stbl: &[u8], file_len: u64, edit_shift: i64) -> R<Vec<SampleRef>> {
    // Sizes (stsz; stz2 compact sizes are not used by FFmpeg's muxer).
    let stsz = match child(stbl, b"stsz")? {
        Some(b) => b,
        None if child(stbl, b"stz2")?.is_some() => {
            return Err("compact sample sizes ('stz2') are not supported".into());
        }
        None => return Err("'stbl' has no 'stsz' box".into()),
    };
    let mut c = Cursor::new(stsz);
    c.skip(4, "stsz")?;
    let constant_size = c.u32("stsz")?;
    let sizes: Vec<u32> = if constant_size == 0 {
        let n = c.count(4, "stsz")?;
        (0..n).map(|_| c.u32("stsz")).collect::<R<_>>()?
    } else {
        let n = c.u32("stsz")? as u64;
        // every sample occupies at least one byte of the file
        if n.saturating_mul(constant_size as u64) > file_len {
            return Err(format!(
                "'stsz' declares {n} samples of {constant_size} bytes, more than the file holds"
            ));
        }
        vec![constant_size; n as usize]
    };
    let n = sizes.len();
    if n == 0 {
        return Err("the video track has no samples".into());
    }

    // Chunk offsets.
    let chunk_offsets: Vec<u64> = if let Some(stco) = child(stbl, b"stco")? {
        let mut c = Cursor::new(stco);
        c.skip(4, "stco")?;
        let k = c.count(4, "stco")?;
        (0..k)
            .map(|_| c.u32("stco").map(u64::from))
            .collect::<R<_>>()?
    } else if let Some(co64) = child(stbl, b"co64")? {
        let mut c = Cursor::new(co64);
        c.skip(4, "co64")?;
        let k = c.count(8, "co64")?;
        (0..k).map(|_| c.u64("co64")).collect::<R<_>>()?
    } else {
        return Err("'stbl' has neither 'stco' nor 'co64'".into());
    };

    // Sample-to-chunk runs: (first_chunk (1-based), samples_per_chunk).
    let stsc = need(stbl, b"stsc", "stbl")?;
    let mut c = Cursor::new(stsc);
    c.skip(4, "stsc")?;
    let k = c.count(12, "stsc")?;
    let mut runs = Vec::with_capacity(k);
    for _ in 0..k {
        let first = c.u32("stsc")?;
        let per_chunk = c.u32("stsc")?;
        c.skip(4, "stsc")?;
        runs.push((first, per_chunk));
    }

    // Byte ranges.
    let mut offsets = Vec::with_capacity(n);
    'runs: for (i, &(first, per_chunk)) in runs.iter().enumerate() {
        let end_chunk = runs
            .get(i + 1)
            .map_or(chunk_offsets.len() as u64 + 1, |r| r.0 as u64);
        if first == 0 || (first as u64) > end_chunk {
            return Err(format!(
                "'stsc' entry {i} has an invalid first chunk {first}"
            ));
        }
        for chunk in first as u64..end_chunk {
            let Some(&base) = chunk_offsets.get((chunk - 1) as usize) else {
                break 'runs;
            };
            let mut off = base;
            for _ in 0..per_chunk {
                let Some(&size) = sizes.get(offsets.len()) else {
                    break 'runs;
                };
                offsets.push(off);
                off = off.saturating_add(size as u64);
            }
        }
    }
    if offsets.len() < n {
        return Err(format!(
            "the chunk tables place {} of {n} samples",
            offsets.len()
        ));
    }
    for (i, (&off, &size)) in offsets.iter().zip(&sizes).enumerate() {
        if off
            .checked_add(size as u64)
            .is_none_or(|end| end > file_len)
        {
            return Err(format!(
                "sample {i} (bytes {off}..{}) lies beyond the end of the file ({file_len} bytes): the file is truncated",
                off.saturating_add(size as u64)
            ));
        }
    }

    // Decode times (stts) and composition offsets (ctts).
    let stts = need(stbl, b"stts", "stbl")?;
    let mut c = Cursor::new(stts);
    c.skip(4, "stts")?;
    let k = c.count(8, "stts")?;
    let deltas = (0..k)
        .map(|_| Ok((c.u32("stts")?, c.u32("stts")? as i64)))
        .collect::<R<Vec<_>>>()?;
    let deltas = expand_runs(&deltas, n, 0);
    let cts_offsets = match child(stbl, b"ctts")? {
        Some(ctts) => {
            let mut c = Cursor::new(ctts);
            c.skip(4, "ctts")?;
            let k = c.count(8, "ctts")?;
            // Version 0 offsets are nominally unsigned, but writers store negative ones too;
            // reading them as signed is what FFmpeg does.
            let runs = (0..k)
                .map(|_| Ok((c.u32("ctts")?, c.u32("ctts")? as i32 as i64)))
                .collect::<R<Vec<_>>>()?;
            expand_runs(&runs, n, 0)
        }
        None => vec![0; n],
    };

    // Sync samples (1-based); without 'stss' every sample is a sync sample.
    let mut sync = vec![true; n];
    if let Some(stss) = child(stbl, b"stss")? {
        let mut c = Cursor::new(stss);
        c.skip(4, "stss")?;
        let k = c.count(4, "stss")?;
        sync.fill(false);
        for _ in 0..k {
            let s = c.u32("stss")? as usize;
            if let Some(flag) = s.checked_sub(1).and_then(|i| sync.get_mut(i)) {
                *flag = true;
            }
        }
    }

    let mut dts = 0i64;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        samples.push(SampleRef {
            offset: offsets[i],
            size: sizes[i],
            is_sync: sync[i],
            pts: dts
                .saturating_add(cts_offsets[i])
                .saturating_sub(edit_shift),
        });
        dts = dts.saturating_add(deltas[i]);
    }
    Ok(samples)
}

/// Writes `packets` (Annex B H.264, decode = presentation order, the first a keyframe carrying
/// SPS/PPS) as an MP4 whose frame `i` is presented at `i / fps` seconds.
///
/// muxide uses a 90 kHz media timescale, so times are exact when `fps` divides 90 000 (all
/// usual rates) and within 1/180 000 s otherwise.
pub fn write_h264_mp4(
    path: &Path,
    width: u32,
    height: u32,
    fps: u32,
    packets: &[EncodedPacket],
) -> Result<(), VideoError> {
    let mux = |message: String| VideoError::Mux {
        path: path.to_path_buf(),
        message,
    };
    if fps == 0 {
        return Err(mux("fps must be positive".into()));
    }
    if packets.is_empty() {
        return Err(mux("no frames to write".into()));
    }
    if !packets[0].keyframe {
        return Err(mux("the first packet must be a keyframe".into()));
    }
    let file = File::create(path).map_err(|source| VideoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut muxer = muxide::api::MuxerBuilder::new(BufWriter::new(file))
        .video(muxide::api::VideoCodec::H264, width, height, f64::from(fps))
        .build()
        .map_err(|e| mux(e.to_string()))?;
    for (i, p) in packets.iter().enumerate() {
        let pts = i as f64 / f64::from(fps);
        muxer
            .write_video(pts, &p.data, p.keyframe)
            .map_err(|e| mux(format!("frame {i}: {e}")))?;
    }
    let writer = {
        muxer.finish_in_place().map_err(|e| mux(e.to_string()))?;
        muxer.into_writer()
    };
    let file = writer
        .into_inner()
        .map_err(|e| mux(format!("cannot flush: {}", e.error())))?;
    file.sync_all().map_err(|source| VideoError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/video")
            .join(name)
    }

    fn track(path: &Path) -> VideoTrack {
        read_video_track(path, &mut File::open(path).unwrap()).unwrap()
    }

    /// The sample tables agree with re_mp4's parser (offsets, sizes, sync flags, and
    /// presentation times: re_mp4 shifts composition times to start at 0, which for these
    /// files is what their edit lists do).
    #[test]
    fn sample_tables_agree_with_re_mp4() {
        for name in ["tiny_h264.mp4", "tiny_av1.mp4", "tiny_av1_odd.mp4"] {
            let path = fixture(name);
            let ours = track(&path);
            let bytes = std::fs::read(&path).unwrap();
            let mp4 = re_mp4::Mp4::read_bytes(&bytes).unwrap();
            let theirs = mp4
                .tracks()
                .values()
                .find(|t| t.kind == Some(re_mp4::TrackKind::Video))
                .unwrap();
            assert_eq!(ours.timescale as u64, theirs.timescale, "{name}");
            assert_eq!(ours.samples.len(), theirs.samples.len(), "{name}");
            for (a, b) in ours.samples.iter().zip(&theirs.samples) {
                assert_eq!(
                    (a.offset, a.size as u64, a.is_sync, a.pts),
                    (b.offset, b.size, b.is_sync, b.composition_timestamp),
                    "{name} sample {}",
                    b.id
                );
            }
        }
    }

    #[test]
    fn b_frame_fixture_has_reordered_presentation_times() {
        let t = track(&fixture("tiny_h264.mp4"));
        assert_eq!(t.codec, Codec::H264);
        let pts: Vec<i64> = t.samples.iter().map(|s| s.pts).collect();
        let mut sorted = pts.clone();
        sorted.sort_unstable();
        assert_ne!(
            pts, sorted,
            "decode order should differ from presentation order"
        );
        assert_eq!(
            sorted.first(),
            Some(&0),
            "edit list shifts the first frame to 0"
        );
        let CodecConfig::Avc {
            nal_length_size,
            sps,
            pps,
        } = &t.config
        else {
            panic!("not AVC")
        };
        assert_eq!((*nal_length_size, sps.len(), pps.len()), (4, 1, 1));
    }

    #[test]
    fn written_mp4_marks_keyframes_as_sync_samples() {
        let (w, h, fps, gop, n) = (32u32, 16u32, 30u32, 4u32, 11usize);
        let mut writer = super::super::Mp4H264Writer::new(w, h, fps, gop).unwrap();
        for k in 0..n {
            let frame: Vec<u8> = (0..(w * h * 3) as usize)
                .map(|i| ((i + 7 * k) % 200) as u8 + 20)
                .collect();
            writer.push_rgb(&frame).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gop.mp4");
        writer.write_mp4(&path).unwrap();
        let t = track(&path);
        assert_eq!((t.width, t.height, t.samples.len()), (w, h, n));
        for (i, s) in t.samples.iter().enumerate() {
            assert_eq!(s.is_sync, i % gop as usize == 0, "sample {i}");
            // 90 kHz: exact for 30 fps
            assert_eq!(
                s.pts * fps as i64,
                i as i64 * t.timescale as i64,
                "sample {i}"
            );
        }
    }

    #[test]
    fn box_walker_rejects_bad_sizes() {
        // size 0 inside a container means "to the end": fine, one box.
        let b: Vec<_> = boxes(&[0, 0, 0, 0, b'f', b'r', b'e', b'e', 1, 2]).collect();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].as_ref().unwrap().1, &[1, 2]);
        // Smaller than its header, larger than its parent, truncated largesize.
        for bad in [
            vec![0, 0, 0, 4, b'f', b'r', b'e', b'e'],
            vec![0, 0, 0, 9, b'f', b'r', b'e', b'e'],
            vec![0, 0, 0, 1, b'f', b'r', b'e', b'e', 0, 0],
            vec![0, 0, 0, 1, b'f', b'r', b'e', b'e', 0, 0, 0, 0, 0, 0, 0, 8],
        ] {
            let r: Vec<_> = boxes(&bad).collect();
            assert_eq!(r.len(), 1, "{bad:?}");
            assert!(r[0].is_err(), "{bad:?}");
        }
        // Short trailing bytes are ignored.
        assert_eq!(boxes(&[0, 0, 0]).count(), 0);
    }

    #[test]
    fn table_counts_must_fit_their_box() {
        let mut c = Cursor::new(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(c.count(4, "stsz").is_err());
        let mut c = Cursor::new(&[0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(c.count(4, "stsz").unwrap(), 1);
        assert!(Cursor::new(&[1, 2]).u32("x").is_err());
    }

    #[test]
    fn run_tables_expand_leniently() {
        assert_eq!(expand_runs(&[(2, 5), (1, 7)], 5, 0), vec![5, 5, 7, 7, 7]);
        assert_eq!(expand_runs(&[(10, 5)], 3, 0), vec![5, 5, 5]);
        assert_eq!(expand_runs(&[], 2, 9), vec![9, 9]);
    }
}
