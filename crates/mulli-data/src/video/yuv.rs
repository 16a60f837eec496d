//! Colour conversion between 8-bit YUV 4:2:0 (I420) and packed RGB8.
//!
//! Decoding reproduces, bit for bit, what LeRobot's readers get from PyAV
//! `frame.to_ndarray(format="rgb24")` on x86-64: FFmpeg's swscale SIMD path for yuv420p → rgb24,
//! i.e. BT.601 limited range, nearest chroma (one sample per 2×2 block), 13-bit coefficients
//! applied with truncating 16-bit multiplies (`pmulhw`). The hot loop does the same arithmetic
//! in 16-bit lanes over blocks of 16 pixels, which LLVM vectorizes even for baseline x86-64
//! (about 0.7 ns per pixel). Odd sizes use the same arithmetic; FFmpeg itself switches to a
//! different, interpolating path there (see `scripts/make_video_reference.py`).

/// A borrowed 8-bit I420 picture: a full-size luma plane and two half-size chroma planes
/// (rounded up for odd sizes), each with its own row stride.
#[derive(Clone, Copy, Debug)]
pub(crate) struct YuvPlanes<'a> {
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub y_stride: usize,
    pub uv_stride: usize,
    pub width: usize,
    pub height: usize,
}

/// Fixed-point coefficients from FFmpeg's `ff_yuv2rgb_c_init_tables` for BT.601, limited range
/// (`roundToInt16(coeff * (1 << 13))`), as used by its x86 `yuv420_rgb24` kernels.
const Y_COEFF: i32 = 9539;
const Y_OFFSET: i32 = 128; // 16 << 3
const VR_COEFF: i32 = 13075;
const UB_COEFF: i32 = 16525;
const UG_COEFF: i32 = -3209;
const VG_COEFF: i32 = -6660;

/// `pmulhw` on widened values: multiply, keep the high 16 bits (an arithmetic shift: floor).
const fn mulhi(a: i32, b: i32) -> i32 {
    (a * b) >> 16
}

const fn luma(y: i32) -> i32 {
    mulhi((y << 3) - Y_OFFSET, Y_COEFF)
}
const fn red_v(v: i32) -> i32 {
    mulhi((v - 128) << 3, VR_COEFF)
}
const fn green_u(u: i32) -> i32 {
    mulhi((u - 128) << 3, UG_COEFF)
}
const fn green_v(v: i32) -> i32 {
    mulhi((v - 128) << 3, VG_COEFF)
}
const fn blue_u(u: i32) -> i32 {
    mulhi((u - 128) << 3, UB_COEFF)
}

#[inline(always)]
fn clamp_u8(x: i32) -> u8 {
    x.clamp(0, 255) as u8
}

/// Bytes a plane must hold for `rows` rows of `row_len` bytes at `stride` (the last row needs
/// no padding).
fn plane_len(stride: usize, row_len: usize, rows: usize) -> Option<usize> {
    if rows == 0 {
        return Some(0);
    }
    stride.checked_mul(rows - 1)?.checked_add(row_len)
}

impl YuvPlanes<'_> {
    fn chroma_size(&self) -> (usize, usize) {
        (self.width.div_ceil(2), self.height.div_ceil(2))
    }

    /// Checks that strides and plane lengths cover the picture, so the conversion loop can use
    /// unchecked-looking but safe slicing without panicking on a misbehaving decoder.
    fn check(&self) -> Result<(), String> {
        let (cw, ch) = self.chroma_size();
        if self.width == 0 || self.height == 0 {
            return Err(format!(
                "decoded picture has no pixels ({}x{})",
                self.width, self.height
            ));
        }
        if self.y_stride < self.width || self.uv_stride < cw {
            return Err(format!(
                "decoded picture strides ({}, {}) are smaller than its width {}",
                self.y_stride, self.uv_stride, self.width
            ));
        }
        let y_need = plane_len(self.y_stride, self.width, self.height);
        let uv_need = plane_len(self.uv_stride, cw, ch);
        match (y_need, uv_need) {
            (Some(yn), Some(cn))
                if self.y.len() >= yn && self.u.len() >= cn && self.v.len() >= cn =>
            {
                Ok(())
            }
            _ => Err(format!(
                "decoded picture planes are too small for {}x{}",
                self.width, self.height
            )),
        }
    }

    /// Converts to packed RGB8 (HWC). `out` must hold exactly `width * height * 3` bytes.
    pub(crate) fn write_rgb(&self, out: &mut [u8]) -> Result<(), String> {
        self.check()?;
        let (w, h) = (self.width, self.height);
        if out.len() != w * h * 3 {
            return Err(format!(
                "output buffer has {} bytes, a {w}x{h} RGB frame needs {}",
                out.len(),
                w * h * 3
            ));
        }
        let cw = w.div_ceil(2);
        for (row, out_row) in out.chunks_exact_mut(w * 3).enumerate() {
            let y_row = &self.y[row * self.y_stride..][..w];
            let c_off = (row / 2) * self.uv_stride;
            let u_row = &self.u[c_off..][..cw];
            let v_row = &self.v[c_off..][..cw];
            convert_row(y_row, u_row, v_row, out_row);
        }
        Ok(())
    }
}

/// `pmulhw`: signed 16-bit multiply keeping the high half.
#[inline(always)]
fn mulhi16(a: i16, b: i16) -> i16 {
    ((a as i32 * b as i32) >> 16) as i16
}

/// One output row: pixel pairs share a chroma sample (nearest chroma; an odd last pixel uses
/// the last one). Blocks of 16 pixels are computed in 16-bit lanes exactly as FFmpeg's SIMD
/// does, into small arrays that LLVM vectorizes (SSE2 `pmulhw`/`packuswb`), then interleaved.
#[inline]
fn convert_row(y_row: &[u8], u_row: &[u8], v_row: &[u8], out_row: &mut [u8]) {
    const PX: usize = 16;
    let blocks = out_row
        .chunks_exact_mut(PX * 3)
        .zip(y_row.chunks_exact(PX))
        .zip(u_row.chunks_exact(PX / 2).zip(v_row.chunks_exact(PX / 2)));
    let mut done = 0;
    for ((o, yy), (uu, vv)) in blocks {
        // Chroma repeated to full width first, so every step below is a plain lane-wise op.
        let (mut u2, mut v2) = ([0u8; PX], [0u8; PX]);
        for (i, (&u, &v)) in uu.iter().zip(vv).enumerate() {
            u2[2 * i] = u;
            u2[2 * i + 1] = u;
            v2[2 * i] = v;
            v2[2 * i + 1] = v;
        }
        let (mut r, mut g, mut b) = ([0u8; PX], [0u8; PX], [0u8; PX]);
        for i in 0..PX {
            let l = mulhi16(((yy[i] as i16) << 3) - Y_OFFSET as i16, Y_COEFF as i16);
            let u = ((u2[i] as i16) - 128) << 3;
            let v = ((v2[i] as i16) - 128) << 3;
            r[i] = (l + mulhi16(v, VR_COEFF as i16)).clamp(0, 255) as u8;
            g[i] =
                (l + mulhi16(u, UG_COEFF as i16) + mulhi16(v, VG_COEFF as i16)).clamp(0, 255) as u8;
            b[i] = (l + mulhi16(u, UB_COEFF as i16)).clamp(0, 255) as u8;
        }
        for (i, px) in o.chunks_exact_mut(3).enumerate() {
            px[0] = r[i];
            px[1] = g[i];
            px[2] = b[i];
        }
        done += PX;
    }
    for x in done..y_row.len() {
        let (Some(&y), Some(&u), Some(&v)) = (y_row.get(x), u_row.get(x / 2), v_row.get(x / 2))
        else {
            return;
        };
        let l = luma(y as i32);
        let (u, v) = (u as i32, v as i32);
        if let Some(o) = out_row.get_mut(x * 3..x * 3 + 3) {
            o[0] = clamp_u8(l + red_v(v));
            o[1] = clamp_u8(l + green_u(u) + green_v(v));
            o[2] = clamp_u8(l + blue_u(u));
        }
    }
}

/// An owned, tightly packed I420 picture (kept when a decoder hands out a frame before it is
/// asked for, e.g. with B-frames).
#[derive(Clone, Debug, Default)]
pub(crate) struct YuvBuf {
    data: Vec<u8>,
    width: usize,
    height: usize,
}

impl YuvBuf {
    /// Copies `p` into `self`, reusing the allocation.
    pub(crate) fn copy_from(&mut self, p: &YuvPlanes<'_>) -> Result<(), String> {
        p.check()?;
        let (w, h) = (p.width, p.height);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        self.data.clear();
        self.data.reserve(w * h + 2 * cw * ch);
        for row in 0..h {
            self.data.extend_from_slice(&p.y[row * p.y_stride..][..w]);
        }
        for plane in [p.u, p.v] {
            for row in 0..ch {
                self.data
                    .extend_from_slice(&plane[row * p.uv_stride..][..cw]);
            }
        }
        self.width = w;
        self.height = h;
        Ok(())
    }

    pub(crate) fn planes(&self) -> YuvPlanes<'_> {
        let (w, h) = (self.width, self.height);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let (y, rest) = self.data.split_at((w * h).min(self.data.len()));
        let (u, v) = rest.split_at((cw * ch).min(rest.len()));
        YuvPlanes {
            y,
            u,
            v,
            y_stride: w,
            uv_stride: cw,
            width: w,
            height: h,
        }
    }
}

/// RGB8 (HWC) → I420, BT.601 limited range, each chroma sample the rounded mean of its (up to)
/// 2×2 block, as FFmpeg/libx264 pipelines feed encoders. `y` must hold `w*h` bytes, `u` and `v`
/// `ceil(w/2)*ceil(h/2)` bytes each.
pub(crate) fn rgb_to_i420(
    rgb: &[u8],
    w: usize,
    h: usize,
    y: &mut [u8],
    u: &mut [u8],
    v: &mut [u8],
) {
    let cw = w.div_ceil(2);
    // Luma: Y = 16 + (66 R + 129 G + 25 B) / 256, rounded.
    for (px, yo) in rgb.chunks_exact(3).zip(y.iter_mut()) {
        let (r, g, b) = (px[0] as i32, px[1] as i32, px[2] as i32);
        *yo = (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8;
    }
    // Chroma from the block means of R, G, B (kept as sums ×4 for precision).
    for (cy, (u_row, v_row)) in u
        .chunks_exact_mut(cw)
        .zip(v.chunks_exact_mut(cw))
        .enumerate()
    {
        for (cx, (uo, vo)) in u_row.iter_mut().zip(v_row.iter_mut()).enumerate() {
            let (mut sr, mut sg, mut sb, mut n) = (0i32, 0i32, 0i32, 0i32);
            for yy in (2 * cy)..(2 * cy + 2).min(h) {
                for xx in (2 * cx)..(2 * cx + 2).min(w) {
                    let i = (yy * w + xx) * 3;
                    if let Some(px) = rgb.get(i..i + 3) {
                        sr += px[0] as i32;
                        sg += px[1] as i32;
                        sb += px[2] as i32;
                        n += 1;
                    }
                }
            }
            // U = 128 + (-38 R - 74 G + 112 B) / 256, V = 128 + (112 R - 94 G - 18 B) / 256,
            // on the block mean, rounded half up.
            let d = 256 * n.max(1);
            let uu = (-38 * sr - 74 * sg + 112 * sb + d / 2).div_euclid(d);
            let vv = (112 * sr - 94 * sg - 18 * sb + d / 2).div_euclid(d);
            *uo = (128 + uu).clamp(0, 255) as u8;
            *vo = (128 + vv).clamp(0, 255) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(y: u8, u: u8, v: u8) -> [u8; 3] {
        let (y, u, v) = (y as i32, u as i32, v as i32);
        let l = mulhi((y << 3) - Y_OFFSET, Y_COEFF);
        let uu = (u - 128) << 3;
        let vv = (v - 128) << 3;
        [
            (l + mulhi(vv, VR_COEFF)).clamp(0, 255) as u8,
            (l + mulhi(uu, UG_COEFF) + mulhi(vv, VG_COEFF)).clamp(0, 255) as u8,
            (l + mulhi(uu, UB_COEFF)).clamp(0, 255) as u8,
        ]
    }

    #[test]
    fn gray_levels_map_to_gray() {
        // Limited-range black and white land on (or within a truncation step of) 0 and 255.
        assert_eq!(reference(16, 128, 128), [0, 0, 0]);
        let white = reference(235, 128, 128);
        assert!(white.iter().all(|&c| c >= 254), "{white:?}");
    }

    #[test]
    fn odd_sizes_and_strides_convert_every_pixel() {
        // 37×5 with padded strides: two 16-pixel blocks and an odd 5-pixel tail per row,
        // chroma 19×3.
        let (w, h) = (37usize, 5usize);
        let y_stride = 40;
        let uv_stride = 21;
        // Every byte value shows up, including the clamped extremes.
        let y: Vec<u8> = (0..y_stride * h).map(|i| (i * 7) as u8).collect();
        let u: Vec<u8> = (0..uv_stride * 3).map(|i| (i * 9 + 3) as u8).collect();
        let v: Vec<u8> = (0..uv_stride * 3)
            .map(|i| (255 - (i * 11) % 256) as u8)
            .collect();
        let p = YuvPlanes {
            y: &y,
            u: &u,
            v: &v,
            y_stride,
            uv_stride,
            width: w,
            height: h,
        };
        let mut out = vec![0u8; w * h * 3];
        p.write_rgb(&mut out).unwrap();
        for row in 0..h {
            for col in 0..w {
                let want = reference(
                    y[row * y_stride + col],
                    u[(row / 2) * uv_stride + col / 2],
                    v[(row / 2) * uv_stride + col / 2],
                );
                assert_eq!(
                    &out[(row * w + col) * 3..][..3],
                    &want,
                    "pixel ({row},{col})"
                );
            }
        }
        // The packed copy converts identically.
        let mut buf = YuvBuf::default();
        buf.copy_from(&p).unwrap();
        let mut out2 = vec![0u8; w * h * 3];
        buf.planes().write_rgb(&mut out2).unwrap();
        assert_eq!(out, out2);
    }

    #[test]
    fn short_planes_are_an_error_not_a_panic() {
        let y = [0u8; 10];
        let c = [0u8; 2];
        let p = YuvPlanes {
            y: &y,
            u: &c,
            v: &c,
            y_stride: 4,
            uv_stride: 2,
            width: 4,
            height: 4,
        };
        let mut out = vec![0u8; 48];
        assert!(p.write_rgb(&mut out).is_err());
        let p = YuvPlanes { y_stride: 2, ..p };
        assert!(p.write_rgb(&mut out).is_err());
    }

    #[test]
    fn rgb_round_trip_is_close() {
        let (w, h) = (7usize, 5usize);
        // Colour constant over each 2×2 block plus a small gray ripple, so subsampling loses
        // nothing and the difference measures the conversions alone.
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                let block = (x / 2 + 3 * (y / 2)) as u8;
                let ripple = ((x % 2) + (y % 2)) as u8 * 2;
                [
                    60 + 9 * block + ripple,
                    120 + ripple,
                    200 - 7 * block + ripple,
                ]
            })
            .collect();
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let (mut y, mut u, mut v) = (vec![0; w * h], vec![0; cw * ch], vec![0; cw * ch]);
        rgb_to_i420(&rgb, w, h, &mut y, &mut u, &mut v);
        let p = YuvPlanes {
            y: &y,
            u: &u,
            v: &v,
            y_stride: w,
            uv_stride: cw,
            width: w,
            height: h,
        };
        let mut back = vec![0u8; w * h * 3];
        p.write_rgb(&mut back).unwrap();
        let max = rgb
            .iter()
            .zip(&back)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap();
        assert!(max <= 3, "max diff {max}");
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// `cargo test --release -p mulli-data --lib yuv::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn conversion_speed() {
        let (w, h) = (96usize, 96usize);
        let y: Vec<u8> = (0..w * h).map(|i| (i * 7 % 220) as u8 + 16).collect();
        let u: Vec<u8> = (0..w * h / 4).map(|i| (i * 3 % 200) as u8 + 20).collect();
        let v: Vec<u8> = (0..w * h / 4).map(|i| (i * 5 % 200) as u8 + 20).collect();
        let p = YuvPlanes {
            y: &y,
            u: &u,
            v: &v,
            y_stride: w,
            uv_stride: w / 2,
            width: w,
            height: h,
        };
        let mut out = vec![0u8; w * h * 3];
        // Thread CPU time, so a busy machine does not distort the figure.
        let cpu = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is valid for writes.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
        };
        let n = 20_000;
        let t = cpu();
        for _ in 0..n {
            p.write_rgb(std::hint::black_box(&mut out)).unwrap();
        }
        let per = (cpu() - t) / n as f64;
        eprintln!(
            "yuv420 -> rgb24 {w}x{h}: {:.1} us/frame, {:.2} ns/pixel",
            per * 1e6,
            per * 1e9 / (w * h) as f64
        );
    }
}
