//! One layer blob in one streaming pass: tar → sha256 (diff_id) → gzip or zstd → sha256
//! (digest) and byte count → a file in the layout's `blobs/sha256/`.
//!
//! Owns compression settings and the hashing writers. It must not decide what goes in a
//! layer (that is [`super::tar`]) or how layers form an image (that is [`super::image`]).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::gzip::ParallelGzip;
use super::oci::{media, BlobStore};
use super::tar::{collect_entries, Entry, TarWriter, TreeSource};
use super::PackError;

/// How layer tars are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip with a fixed header (no name, mtime 0); level 0-9; compressed in parallel blocks
    /// ([`super::gzip`]), the bytes independent of the thread count.
    Gzip { level: u32 },
    /// zstd with a checksum; level 1-19.
    Zstd { level: i32 },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip { level: 6 }
    }
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(&self) -> &'static str {
        match self {
            Compression::Gzip { .. } => media::LAYER_GZIP,
            Compression::Zstd { .. } => media::LAYER_ZSTD,
        }
    }
}

/// A layer blob written into a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// `sha256:HEX` of the compressed bytes (the blob's name).
    pub digest: String,
    /// Compressed size in bytes.
    pub size: u64,
    /// `sha256:HEX` of the uncompressed tar.
    pub diff_id: String,
    /// Uncompressed tar size in bytes.
    pub tar_size: u64,
    pub media_type: String,
    /// Entries in the tar (directories, files, links).
    pub entries: usize,
}

/// Packs `sources` into one compressed layer blob in `store`.
pub fn build_layer(
    sources: &[TreeSource],
    store: &BlobStore,
    compression: Compression,
    mtime: u64,
) -> Result<LayerBlob, PackError> {
    let entries = collect_entries(sources)?;
    build_layer_from_entries(&entries, store, compression, mtime)
}

/// Packs collected tar `entries` (in tar order) into one compressed layer blob in `store`.
pub fn build_layer_from_entries(
    entries: &[Entry],
    store: &BlobStore,
    compression: Compression,
    mtime: u64,
) -> Result<LayerBlob, PackError> {
    crate::test_hook::count(crate::test_hook::Count::LayersCompressed);
    let (tmp_path, file) = store.temp_file()?;
    let io_err = |source: io::Error| PackError::Io {
        path: tmp_path.clone(),
        source,
    };
    // Two stages on two threads, like `tar | gzip`: this thread writes the tar and hashes it
    // (diff_id); the compressor thread compresses, hashes (digest) and writes the file. The
    // bytes do not depend on the split: the compressor sees one stream either way.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let compressor = std::thread::spawn(move || -> io::Result<(String, u64)> {
        let compressed = HashCount::new(BufWriter::with_capacity(1 << 20, file));
        let mut encoder = Encoder::new(compressed, compression)?;
        for chunk in receiver {
            encoder.write_all(&chunk)?;
        }
        let (file_writer, digest, size) = encoder.finish()?.finish();
        let file = file_writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok((digest, size))
    });
    let uncompressed = HashCount::new(ChunkSender {
        sender,
        buffer: Vec::with_capacity(CHUNK),
    });
    let mut tar = TarWriter::new(uncompressed, mtime);
    let written = tar
        .write_entries(entries)
        .map_err(PackError::from)
        .and_then(|()| tar.finish().map_err(io_err));
    let finished = written.and_then(|uncompressed| {
        let (chunks, diff_id, tar_size) = uncompressed.finish();
        chunks.close().map_err(io_err)?;
        Ok((diff_id, tar_size))
    });
    let compressed = compressor
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the compressor thread panicked")));
    let ((diff_id, tar_size), (digest, size)) = match (finished, compressed) {
        (Ok(tar), Ok(compressed)) => (tar, compressed),
        (Err(e), _) => {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(e);
        }
        (_, Err(e)) => {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(io_err(e));
        }
    };
    store.commit(&tmp_path, &digest)?;
    Ok(LayerBlob {
        digest: format!("sha256:{digest}"),
        size,
        diff_id: format!("sha256:{diff_id}"),
        tar_size,
        media_type: compression.media_type().to_string(),
        entries: entries.len(),
    })
}

const CHUNK: usize = 1 << 20;

/// Hands the tar stream to the compressor thread in 1 MiB pieces.
struct ChunkSender {
    sender: std::sync::mpsc::SyncSender<Vec<u8>>,
    buffer: Vec<u8>,
}

impl ChunkSender {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        self.sender
            .send(full)
            .map_err(|_| io::Error::other("the compressor stopped early"))
    }

    /// Sends what is left; dropping the sender ends the compressor's stream.
    fn close(mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buffer.len();
        let n = room.min(buf.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == CHUNK {
            self.send_buffer()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that hashes (sha256) and counts what passes through it.
pub struct HashCount<W: Write> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashCount<W> {
    pub fn new(inner: W) -> Self {
        HashCount {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the lowercase hex sha256 and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<W: Write> Write for HashCount<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Encoder<W: Write> {
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn new(inner: W, compression: Compression) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip { level } => Encoder::Gzip(ParallelGzip::new(inner, level)?),
            Compression::Zstd { level } => {
                let mut encoder = zstd::stream::Encoder::new(inner, level.clamp(1, 19))?;
                encoder.include_checksum(true)?;
                Encoder::Zstd(encoder)
            }
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    /// Does not flush the compressor: a sync flush would put bytes into the stream that
    /// depend on when callers flush, and the blob must depend on the tar bytes only.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// sha256 and size of a file, streamed.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hc = HashCount::new(io::sink());
    io::copy(&mut file, &mut hc)?;
    let (_, hex, size) = hc.finish();
    Ok((hex, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3.5 MiB of compressible bytes, the same on every machine.
    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        let mut x: u32 = 7;
        while out.len() < 3 * CHUNK + CHUNK / 2 {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            out.extend_from_slice(
                format!("lib/site-packages/pkg{}/mod{}.py\n", x >> 28, x >> 20).as_bytes(),
            );
            out.push((x >> 24) as u8);
        }
        out
    }

    fn compressed_digest(compression: Compression) -> String {
        let mut encoder = Encoder::new(HashCount::new(io::sink()), compression).unwrap();
        for chunk in sample().chunks(CHUNK) {
            encoder.write_all(chunk).unwrap();
        }
        let (_, digest, _) = encoder.finish().unwrap().finish();
        digest
    }

    /// The compressors are pinned (src/pack/gzip.rs, Cargo.toml, Cargo.lock): a new version or
    /// setting that changes their bytes fails here, before it changes every layer digest.
    #[test]
    fn compressor_bytes_are_pinned() {
        assert_eq!(
            compressed_digest(Compression::Gzip { level: 6 }),
            "74d367b79cd5c796fc1d8ec8981a746f462c3c91bf435d074f2b36c04d8490ba"
        );
        assert_eq!(
            compressed_digest(Compression::Zstd { level: 3 }),
            "abc98859ec1bfeada742382c1da1a4449750d2e25ca75514d340f15ff1fe146a"
        );
    }
}
