//! Byte-level tokenizer: any UTF-8 instruction (English, Korean, …) becomes token ids without
//! a vocabulary file, so languages work out of the box. Ids 0–255 are bytes.

use serde::{Deserialize, Serialize};

pub const BOS: u32 = 256;
pub const EOS: u32 = 257;
pub const PAD: u32 = 258;
/// Number of distinct token ids.
pub const VOCAB: usize = 259;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteTokenizer {
    /// Tokens per instruction, BOS and EOS included; longer instructions are truncated (on
    /// a character boundary, so no partial UTF-8 sequence is kept).
    pub max_len: usize,
}

impl ByteTokenizer {
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len: max_len.max(2),
        }
    }

    /// Token ids padded with [`PAD`] to `max_len`, and how many are real tokens.
    pub fn encode(&self, text: &str) -> (Vec<u32>, usize) {
        let room = self.max_len - 2;
        let mut end = text.len().min(room);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(BOS);
        ids.extend(text.as_bytes()[..end].iter().map(|&b| u32::from(b)));
        ids.push(EOS);
        let len = ids.len();
        ids.resize(self.max_len, PAD);
        (ids, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn english_and_korean_encode_to_bytes_between_bos_and_eos() {
        let t = ByteTokenizer::new(16);
        let (ids, n) = t.encode("open it");
        assert_eq!(n, 9);
        assert_eq!(&ids[..3], &[BOS, u32::from(b'o'), u32::from(b'p')]);
        assert_eq!(ids[8], EOS);
        assert!(ids[9..].iter().all(|&i| i == PAD));
        // "서랍" is 6 UTF-8 bytes; with room for 5 only the first syllable (3 bytes) is kept.
        let t = ByteTokenizer::new(7);
        let (ids, n) = t.encode("서랍");
        assert_eq!(n, 5);
        assert_eq!(ids[4], EOS);
    }

    proptest! {
        #[test]
        fn always_max_len_and_a_valid_utf8_prefix(text in ".{0,80}", max_len in 2usize..64) {
            let t = ByteTokenizer::new(max_len);
            let (ids, n) = t.encode(&text);
            prop_assert_eq!(ids.len(), max_len);
            prop_assert!(n >= 2 && n <= max_len);
            let bytes: Vec<u8> = ids[1..n - 1].iter().map(|&i| i as u8).collect();
            let s = std::str::from_utf8(&bytes);
            prop_assert!(s.is_ok());
            prop_assert!(text.starts_with(s.unwrap_or_default()));
        }
    }
}
