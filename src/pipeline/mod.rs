//! Pure CPU stages of the backup data flow: chunk, identify, compress, seal.
//!
//! Nothing here does I/O beyond pulling bytes from a caller-supplied `Read`;
//! the repository layer decides where the results go.

pub mod chunk;
pub mod compress;
pub mod id;
pub mod seal;

pub use chunk::{Chunker, ChunkerParams};
pub use compress::{Codec, compress, decompress, decompress_limited};
pub use id::{ChunkId, IdKey};
pub use seal::{SealError, SealKey};
