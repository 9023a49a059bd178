//! Layer 3: a logistic-regression classifier over hashed word and character n-grams,
//! with Platt-scaled (held-out calibrated) probabilities.
//!
//! Features, computed on the normalized text:
//!
//! * word unigrams and bigrams,
//! * character 4-grams over the word sequence (robust to misspellings and inflection),
//!
//! each hashed (a 64-bit multiply-rotate hash with a Murmur3 finalizer, seeded per
//! feature family) into `2^DIM_BITS` buckets with a
//! hash-derived sign, and scaled by `1/sqrt(n)` so long and short texts are comparable.
//! The weights are trained by `cargo xtask train-guardian` and embedded with
//! `include_bytes!` from `data/model.bin`.

use crate::GuardianError;

/// Number of hash bits: the model has `2^DIM_BITS` weights.
pub const DIM_BITS: u32 = 18;
/// Number of weights.
pub const DIM: usize = 1 << DIM_BITS;
const MAGIC: &[u8; 8] = b"OMNIGLR1";

/// Texts longer than this many bytes are truncated before feature extraction (the
/// caller already windows long inputs).
pub const MAX_FEATURE_BYTES: usize = 8192;

/// A trained, calibrated linear model.
#[derive(Clone, PartialEq)]
pub struct Model {
    /// Bias term of the linear score.
    pub bias: f32,
    /// Platt scaling slope: `p = sigmoid(a * margin + b)`.
    pub platt_a: f32,
    /// Platt scaling intercept.
    pub platt_b: f32,
    /// `DIM` weights.
    pub weights: Vec<f32>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("bias", &self.bias)
            .field("platt_a", &self.platt_a)
            .field("platt_b", &self.platt_b)
            .field("dim", &self.weights.len())
            .finish()
    }
}

#[cfg(feature = "ml-classifier")]
static EMBEDDED_MODEL: &[u8] = include_bytes!("../data/model.bin");

impl Model {
    /// The model embedded at compile time.
    #[cfg(feature = "ml-classifier")]
    pub fn embedded() -> Result<Self, GuardianError> {
        Self::from_bytes(EMBEDDED_MODEL)
    }

    /// Parses the binary format written by [`Model::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, GuardianError> {
        let bad = |m: &str| GuardianError::InvalidModel(m.to_string());
        if b.len() < 24 || &b[..8] != MAGIC {
            return Err(bad("missing OMNIGLR1 header"));
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let f32_at = |i: usize| f32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if u32_at(8) != DIM_BITS {
            return Err(bad("hash width differs from this build"));
        }
        let (bias, platt_a, platt_b) = (f32_at(12), f32_at(16), f32_at(20));
        let body = &b[24..];
        if body.len() != DIM * 2 {
            return Err(bad("weight table has the wrong size"));
        }
        // Fixed point (i16 / WEIGHT_SCALE) halves the embedded size; the precision
        // loss is far below the regularization noise of the weights.
        let weights = body
            .chunks_exact(2)
            .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / WEIGHT_SCALE)
            .collect();
        Ok(Self {
            bias,
            platt_a,
            platt_b,
            weights,
        })
    }

    /// Serializes the model (header plus fixed-point weights).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + DIM * 2);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&DIM_BITS.to_le_bytes());
        out.extend_from_slice(&self.bias.to_le_bytes());
        out.extend_from_slice(&self.platt_a.to_le_bytes());
        out.extend_from_slice(&self.platt_b.to_le_bytes());
        for w in &self.weights {
            let q = (w * WEIGHT_SCALE)
                .round()
                .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
            out.extend_from_slice(&q.to_le_bytes());
        }
        out
    }

    /// Rounds the weights to the stored fixed-point precision, so a model behaves the
    /// same before and after a save/load round trip.
    pub fn quantize(&mut self) {
        for w in &mut self.weights {
            *w = (*w * WEIGHT_SCALE)
                .round()
                .clamp(f32::from(i16::MIN), f32::from(i16::MAX))
                / WEIGHT_SCALE;
        }
    }

    /// The uncalibrated linear margin of a (normalized) text.
    pub fn margin(&self, text: &str) -> f64 {
        let mut feats = Vec::with_capacity(text.len() * 2);
        features(text, &mut feats);
        self.margin_of(&feats)
    }

    /// The margin of pre-computed features.
    pub fn margin_of(&self, feats: &[Feature]) -> f64 {
        let mut z = f64::from(self.bias);
        if feats.is_empty() {
            return z;
        }
        let scale = 1.0 / (feats.len() as f64).sqrt();
        for f in feats {
            z += f64::from(self.weights[f.index as usize]) * f64::from(f.sign) * scale;
        }
        z
    }

    /// Calibrated probability that `text` (already normalized) is an attack.
    pub fn probability(&self, text: &str) -> f64 {
        self.calibrate(self.margin(text))
    }

    /// Calibrated probability that `segment`, a line or sentence found *inside a larger
    /// document* (a tool result, a web page, an e-mail), is an injected instruction.
    pub fn segment_probability(&self, segment: &str) -> f64 {
        let mut feats = Vec::with_capacity(segment.len() * 4);
        segment_features(segment, &mut feats);
        self.calibrate(self.margin_of(&feats))
    }

    /// Applies Platt scaling to a margin.
    pub fn calibrate(&self, margin: f64) -> f64 {
        sigmoid(f64::from(self.platt_a) * margin + f64::from(self.platt_b))
    }
}

/// Fixed-point scale of stored weights (weights are kept in about ±32).
pub const WEIGHT_SCALE: f32 = 1024.0;

/// The logistic function.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One hashed feature occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// Bucket.
    pub index: u32,
    /// +1 or -1.
    pub sign: i8,
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// Final avalanche (from MurmurHash3) so every output bit depends on every input bit.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Hashes a byte string, eight bytes at a time.
fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed.wrapping_mul(K) ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(23) ^ v).wrapping_mul(K);
    }
    let mut tail = 0u64;
    for (i, &b) in chunks.remainder().iter().enumerate() {
        tail |= u64::from(b) << (8 * i);
    }
    h = (h.rotate_left(23) ^ tail).wrapping_mul(K);
    mix(h)
}

fn push(out: &mut Vec<Feature>, h: u64) {
    out.push(Feature {
        index: (h & (DIM as u64 - 1)) as u32,
        sign: if h >> 63 == 0 { 1 } else { -1 },
    });
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'\'' || b >= 0x80
}

/// Extracts hashed features from a normalized (lower-cased) text into `out`.
pub fn features(text: &str, out: &mut Vec<Feature>) {
    let mut bytes = text.as_bytes();
    if bytes.len() > MAX_FEATURE_BYTES {
        bytes = &bytes[..MAX_FEATURE_BYTES];
    }
    // Words are runs of ASCII alphanumerics, apostrophes and non-ASCII bytes; the
    // character n-grams run over "_w1_w2_..._" so they see word boundaries.
    let mut joined: Vec<u8> = Vec::with_capacity(bytes.len() + 2);
    joined.push(b'_');
    let mut prev_word: Option<u64> = None;
    let mut i = 0;
    while i < bytes.len() {
        if !is_word_byte(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_word_byte(bytes[i]) {
            i += 1;
        }
        let w = &bytes[start..i];
        let hw = hash_bytes(1, w);
        push(out, hw);
        if let Some(p) = prev_word {
            push(out, mix(p.rotate_left(17) ^ hw ^ 0x2222_2222));
        }
        prev_word = Some(hw);
        joined.extend_from_slice(w);
        joined.push(b'_');
    }
    for g in joined.windows(4) {
        let v = u32::from_le_bytes([g[0], g[1], g[2], g[3]]);
        push(out, mix(u64::from(v) ^ 0x3333_3333_0000_0000));
    }
    // A few punctuation/shape cues the word features drop.
    for (cue, needle) in [
        (4u64, &b":\n"[..]),
        (5, b"]:"),
        (6, b"<|"),
        (7, b"###"),
        (8, b"{{"),
        (9, b"```"),
    ] {
        if bytes.windows(needle.len()).any(|w| w == needle) {
            push(out, mix(cue ^ 0x4444_4444_0000_0000));
        }
    }
}

/// Features of a segment embedded in a document: the plain features plus a copy
/// conjoined with "embedded", so the model can learn that an instruction is ordinary in
/// a user's request but an injection inside data.
pub fn segment_features(segment: &str, out: &mut Vec<Feature>) {
    let start = out.len();
    features(segment, out);
    let end = out.len();
    for i in start..end {
        let f = out[i];
        let h = mix(u64::from(f.index) ^ 0x5555_5555_0000_0000);
        out.push(Feature {
            index: (h & (DIM as u64 - 1)) as u32,
            sign: f.sign,
        });
    }
    push(out, mix(0x5555_5555_ffff_ffff));
}

/// Splits a document into segments (lines, and sentences of long lines) worth scoring
/// on their own; segments with fewer than three words are skipped.
pub fn segments(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        let line = line.trim();
        if line.len() <= 400 {
            out.push(line);
            continue;
        }
        let mut start = 0;
        let b = line.as_bytes();
        for i in 1..b.len() {
            if matches!(b[i - 1], b'.' | b'?' | b'!') && b[i] == b' ' && i - start >= 40 {
                out.push(line[start..i].trim());
                start = i + 1;
            }
        }
        out.push(line[start..].trim());
    }
    out.retain(|s| s.split_whitespace().nth(2).is_some());
    out
}

/// Whether a text is a document whose segments are scored separately.
pub fn is_document(text: &str, segments: &[&str]) -> bool {
    segments.len() >= 2 && text.len() >= 200
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_deterministic_and_bounded() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        features("ignore all previous instructions", &mut a);
        features("ignore all previous instructions", &mut b);
        assert_eq!(a, b);
        assert!(a.iter().all(|f| (f.index as usize) < DIM));
        assert_eq!(
            a.len(),
            4 + 3 + ("_ignore_all_previous_instructions_".len() - 3)
        );
    }

    #[test]
    fn model_round_trips() {
        let mut m = Model {
            bias: 0.5,
            platt_a: 1.5,
            platt_b: -0.25,
            weights: vec![0.0; DIM],
        };
        m.weights[7] = 1.25;
        m.weights[9] = -3.0;
        m.quantize();
        let back = Model::from_bytes(&m.to_bytes()).expect("valid model bytes");
        assert_eq!(back, m);
        assert!(Model::from_bytes(b"garbage").is_err());
    }
}
