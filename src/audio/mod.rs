//! Audio: formats, decoding of source files, sample conversion, resampling
//! and WAV output.
//!
//! Inside the engine audio is interleaved `f32` in the range [-1.0, 1.0).
//! Integer samples of 16 and 24 bits convert to `f32` and back without loss,
//! so PCM passes through sample for sample when no resampling is needed.

pub mod convert;
pub mod format;
pub mod resample;
pub mod source;
pub mod wav;

pub use format::{AudioFormat, Codec};
