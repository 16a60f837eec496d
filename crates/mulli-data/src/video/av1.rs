//! AV1 decoding with `rav1d` (dav1d ported to Rust), through its dav1d C ABI, wrapped once here.
//!
//! All `unsafe` for AV1 lives in this file: the context, input buffers and pictures are owned
//! by RAII guards that release them in `Drop`, so no error path leaks or double-frees.
//!
//! Threads: the loader parallelises across samples, so one thread per decoder would do, but
//! rav1d 1.1 aborts the process on any decode error when it has a single frame context
//! (memorysafety/rav1d#1497: a panic inside its `extern "C"` API), i.e. on any corrupt file.
//! Two threads and a frame delay of 2 take the other error path; measured CPU time per frame
//! is the same. The decoder is still used synchronously: after each temporal unit the reader
//! drains (a second `dav1d_get_picture` waits for the frame), so its picture comes out at once.

use std::mem::MaybeUninit;
use std::ptr::NonNull;

use rav1d::include::dav1d::data::Dav1dData;
use rav1d::include::dav1d::dav1d::{Dav1dContext, Dav1dLogger, Dav1dSettings};
use rav1d::include::dav1d::headers::DAV1D_PIXEL_LAYOUT_I420;
use rav1d::include::dav1d::picture::Dav1dPicture;
use rav1d::src::lib::{
    dav1d_close, dav1d_data_create, dav1d_data_unref, dav1d_default_settings, dav1d_flush,
    dav1d_get_picture, dav1d_open, dav1d_picture_unref, dav1d_send_data,
};

use super::h264::PictureSink;
use super::mp4::CodecConfig;
use super::yuv::YuvPlanes;

/// dav1d's "try again" result (`DAV1D_ERR(EAGAIN)`).
const EAGAIN: i32 = -libc::EAGAIN;

/// Largest picture area accepted (dav1d's own limit on 32-bit targets), so a corrupt sequence
/// header cannot make the decoder allocate gigabytes.
const FRAME_SIZE_LIMIT: u32 = 8192 * 8192;

fn describe(res: i32) -> String {
    let errno = -res;
    let name = match errno {
        e if e == libc::EINVAL => "invalid data (EINVAL)",
        e if e == libc::ENOMEM => "out of memory (ENOMEM)",
        e if e == libc::ENOPROTOOPT => "unsupported bitstream feature (ENOPROTOOPT)",
        e if e == libc::ERANGE => "value out of range (ERANGE)",
        e if e == libc::EIO => "I/O error (EIO)",
        _ => "decoding error",
    };
    format!("rav1d: {name}, code {res}")
}

/// An owned dav1d input buffer.
struct Data(Dav1dData);

impl Data {
    /// Copies `bytes` into a dav1d-allocated buffer tagged with `tag` (returned on the
    /// picture as `m.timestamp`).
    fn new(bytes: &[u8], tag: i64) -> Result<Self, String> {
        let mut data = Self(Dav1dData::default());
        // SAFETY: `data.0` is valid for writes; on success dav1d returns a buffer of exactly
        // `bytes.len()` writable bytes owned by `data.0` (released in `Drop`).
        let ptr = unsafe { dav1d_data_create(Some(NonNull::from(&mut data.0)), bytes.len()) };
        if ptr.is_null() {
            return Err(format!(
                "rav1d could not allocate an input buffer of {} bytes",
                bytes.len()
            ));
        }
        // SAFETY: see above; the regions cannot overlap (fresh allocation).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
        data.0.m.timestamp = tag;
        Ok(data)
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        // SAFETY: `self.0` is either empty or a buffer from `dav1d_data_create`, possibly
        // partially consumed by `dav1d_send_data`; unref handles all of these.
        unsafe { dav1d_data_unref(Some(NonNull::from(&mut self.0))) };
    }
}

/// An owned decoded picture.
struct Picture(Dav1dPicture);

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: `self.0` is a default (empty) picture or one returned by
        // `dav1d_get_picture`; unref releases its references exactly once.
        unsafe { dav1d_picture_unref(Some(NonNull::from(&mut self.0))) };
    }
}

impl Picture {
    /// The picture's planes, checked against its reported size and strides.
    fn planes(&self) -> Result<YuvPlanes<'_>, String> {
        let p = &self.0;
        if p.p.bpc != 8 {
            return Err(format!("{}-bit AV1 is not supported (8-bit only)", p.p.bpc));
        }
        if p.p.layout != DAV1D_PIXEL_LAYOUT_I420 {
            return Err(format!(
                "AV1 pixel layout {} is not supported (4:2:0 only)",
                p.p.layout
            ));
        }
        let dims = [p.p.w as isize, p.p.h as isize, p.stride[0], p.stride[1]].map(usize::try_from);
        let [Ok(w), Ok(h), Ok(y_stride), Ok(uv_stride)] = dims else {
            return Err("rav1d returned a picture with negative size or stride".into());
        };
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        if w == 0 || h == 0 || y_stride < w || uv_stride < cw {
            return Err(format!(
                "rav1d returned an invalid picture ({w}x{h}, strides {y_stride}/{uv_stride})"
            ));
        }
        let [Some(y), Some(u), Some(v)] = p.data else {
            return Err("rav1d returned a picture without planes".into());
        };
        let y_len = y_stride * (h - 1) + w;
        let uv_len = uv_stride * (ch - 1) + cw;
        // SAFETY: dav1d allocates each plane with `stride * aligned height` bytes, which covers
        // these lengths; the memory lives as long as `self` holds the picture reference.
        unsafe {
            Ok(YuvPlanes {
                y: std::slice::from_raw_parts(y.as_ptr().cast::<u8>(), y_len),
                u: std::slice::from_raw_parts(u.as_ptr().cast::<u8>(), uv_len),
                v: std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), uv_len),
                y_stride,
                uv_stride,
                width: w,
                height: h,
            })
        }
    }
}

/// A rav1d decoder for the samples (temporal units) of one AV1 track.
pub(crate) struct Av1Decoder {
    context: Option<Dav1dContext>,
    /// configOBUs from `av1C` (the sequence header), sent after every flush so decoding can
    /// restart at any keyframe even if it does not repeat the sequence header.
    config_obus: Vec<u8>,
}

// SAFETY: the context is an `Arc<Rav1dContext>` behind a raw pointer; rav1d's context is
// internally synchronised (it is shared with worker threads when multithreaded) and has no
// thread affinity. `Av1Decoder` is only used through `&mut self`, one call at a time.
unsafe impl Send for Av1Decoder {}

impl Drop for Av1Decoder {
    fn drop(&mut self) {
        if self.context.is_some() {
            // SAFETY: the context came from `dav1d_open` and is closed only here; dav1d_close
            // takes it out of the Option, so it cannot be used again.
            unsafe { dav1d_close(Some(NonNull::from(&mut self.context))) };
        }
    }
}

impl Av1Decoder {
    pub(crate) fn new(config: &CodecConfig) -> Result<Self, String> {
        let CodecConfig::Av1 { config_obus } = config else {
            return Err("AV1 track without an 'av1C' configuration".into());
        };
        let mut settings = MaybeUninit::<Dav1dSettings>::uninit();
        // SAFETY: dav1d_default_settings initialises every field of the struct it is given.
        let mut settings = unsafe {
            dav1d_default_settings(NonNull::new_unchecked(settings.as_mut_ptr()));
            settings.assume_init()
        };
        settings.n_threads = 2; // see the module docs
        settings.max_frame_delay = 2;
        settings.frame_size_limit = FRAME_SIZE_LIMIT;
        // SAFETY: no callback means no logging; there is nothing for dav1d to call.
        settings.logger = unsafe { Dav1dLogger::new(None, None) };
        let mut context: Option<Dav1dContext> = None;
        // SAFETY: both pointers are valid for the call; on success `context` owns the decoder.
        let res = unsafe {
            dav1d_open(
                Some(NonNull::from(&mut context)),
                Some(NonNull::from(&mut settings)),
            )
        };
        if res.0 != 0 || context.is_none() {
            return Err(format!("cannot open the AV1 decoder: {}", describe(res.0)));
        }
        let mut decoder = Self {
            context,
            config_obus: config_obus.clone(),
        };
        decoder.send_config()?;
        Ok(decoder)
    }

    /// Drops all decoding state (after a seek or an error) and re-sends the configuration.
    pub(crate) fn reset(&mut self) -> Result<(), String> {
        if let Some(c) = self.context {
            // SAFETY: `c` is an open context, used from this thread only.
            unsafe { dav1d_flush(c) };
        }
        self.send_config()
    }

    fn send_config(&mut self) -> Result<(), String> {
        if self.config_obus.is_empty() {
            return Ok(());
        }
        let obus = std::mem::take(&mut self.config_obus);
        // The sequence header produces no picture; a tag that matches no sample.
        let res = self.feed(&obus, u64::MAX, &mut |_, _| Ok(()));
        self.config_obus = obus;
        res
    }

    /// Decodes one temporal unit tagged `tag`; each picture that comes out goes to `sink` with
    /// the tag of the unit that produced it.
    pub(crate) fn feed(
        &mut self,
        sample: &[u8],
        tag: u64,
        sink: &mut PictureSink<'_>,
    ) -> Result<(), String> {
        let Some(c) = self.context else {
            return Err("the AV1 decoder is closed".into());
        };
        if sample.is_empty() {
            return Ok(());
        }
        let mut data = Data::new(sample, tag as i64)?;
        // Send until dav1d has consumed the whole unit, collecting pictures in between (dav1d
        // answers EAGAIN to send_data while a picture is waiting to be taken). Bounded, in case
        // a corrupt stream makes no progress.
        for _ in 0..1024 {
            // SAFETY: `c` is open; `data.0` is a valid, owned input buffer.
            let res = unsafe { dav1d_send_data(Some(c), Some(NonNull::from(&mut data.0))) };
            if res.0 != 0 && res.0 != EAGAIN {
                return Err(describe(res.0));
            }
            self.drain(sink)?;
            if data.0.sz == 0 {
                return Ok(());
            }
        }
        Err("rav1d made no progress on this sample".into())
    }

    /// Takes every picture dav1d has, waiting for frames in flight: with frame threading the
    /// first `dav1d_get_picture` after new data answers EAGAIN, the next one drains.
    pub(crate) fn drain(&mut self, sink: &mut PictureSink<'_>) -> Result<(), String> {
        let Some(c) = self.context else {
            return Err("the AV1 decoder is closed".into());
        };
        let mut again = 0;
        // At most a frame delay's worth of pictures can be waiting; the bound is a backstop.
        for _ in 0..64 {
            let mut pic = Picture(Dav1dPicture::default());
            // SAFETY: `c` is open; `pic.0` is valid for writes (it holds no references yet).
            let res = unsafe { dav1d_get_picture(Some(c), Some(NonNull::from(&mut pic.0))) };
            if res.0 == EAGAIN {
                again += 1;
                if again >= 2 {
                    return Ok(());
                }
                continue;
            }
            if res.0 != 0 {
                return Err(describe(res.0));
            }
            let tag = pic.0.m.timestamp as u64;
            sink(tag, &pic.planes()?)?;
        }
        Err("rav1d kept returning pictures".into())
    }
}
