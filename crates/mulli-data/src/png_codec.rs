//! PNG encode/decode for `image` features (HF `Image` structs in parquet hold PNG bytes).

use crate::error::{DataError, Result};
use std::path::Path;

/// Encode an RGB8 (or gray / RGBA, by `channels`) HWC image as PNG.
pub fn encode(pixels: &[u8], width: u32, height: u32, channels: usize) -> Result<Vec<u8>> {
    let color = match channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        c => {
            return Err(DataError::Invalid(format!(
                "PNG images need 1, 3 or 4 channels, got {c}"
            )));
        }
    };
    let mut out = Vec::with_capacity(pixels.len() / 2 + 64);
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    // Fast compression: recording speed matters more than a few percent of size.
    enc.set_compression(png::Compression::Fast);
    let mut w = enc
        .write_header()
        .map_err(|e| DataError::Invalid(format!("PNG header: {e}")))?;
    w.write_image_data(pixels)
        .map_err(|e| DataError::Invalid(format!("PNG encode: {e}")))?;
    w.finish()
        .map_err(|e| DataError::Invalid(format!("PNG encode: {e}")))?;
    Ok(out)
}

/// Decode PNG bytes to HWC u8 with `channels` channels (converting gray/RGBA/16-bit as needed).
pub fn decode_into(
    bytes: &[u8],
    want: (usize, usize, usize),
    out: &mut [u8],
    ctx: (&Path, &str, usize),
) -> Result<()> {
    let err = |message: String| DataError::Image {
        path: ctx.0.to_owned(),
        feature: ctx.1.to_owned(),
        row: ctx.2,
        message,
    };
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec
        .read_info()
        .map_err(|e| err(format!("not a valid PNG: {e}")))?;
    let (w, h) = (reader.info().width as usize, reader.info().height as usize);
    let (wh, ww, wc) = want;
    if (h, w) != (wh, ww) {
        return Err(err(format!(
            "PNG is {w}×{h}, the feature's shape says {ww}×{wh}"
        )));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| err("PNG too large".into()))?;
    if size > 1 << 28 {
        return Err(err("PNG too large".into()));
    }
    let mut buf = vec![0u8; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| err(format!("corrupt PNG data: {e}")))?;
    let src_c = info.color_type.samples();
    let px = &buf[..info.buffer_size()];
    if out.len() != wh * ww * wc {
        return Err(err("output buffer has the wrong size".into()));
    }
    for i in 0..wh * ww {
        let s = &px[i * src_c..(i + 1) * src_c];
        let d = &mut out[i * wc..(i + 1) * wc];
        match (src_c, wc) {
            (a, b) if a == b => d.copy_from_slice(s),
            (1 | 2, _) => d.iter_mut().for_each(|x| *x = s[0]),
            (3 | 4, 1) => {
                d[0] = ((u16::from(s[0]) * 77 + u16::from(s[1]) * 150 + u16::from(s[2]) * 29) >> 8)
                    as u8
            }
            (4, 3) => d.copy_from_slice(&s[..3]),
            (3, 4) => {
                d[..3].copy_from_slice(s);
                d[3] = 255;
            }
            _ => return Err(err(format!("cannot convert {src_c} PNG channels to {wc}"))),
        }
    }
    Ok(())
}
