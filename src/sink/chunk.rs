//! Compressed chunk files of one slice of one index.
//!
//! A chunk is streamed to the archive's store ([`crate::archive::store::ArchiveStore::upload`])
//! through compressor -> [`CryptWriter`] (age, when the archive is
//! encrypted; else a pass-through) -> [`HashingWriter`] -> buffer ->
//! upload, so its sha256 (of the stored bytes) is known when it closes
//! without reading it again; it is
//! published under its name only when complete ([`ObjectUpload::commit`]:
//! in a local folder, a `<name>.partial` file fsynced and renamed into
//! place). A new chunk starts at the first page boundary after the
//! compressed size reaches the `--file-size` limit.
//!
//! zstd chunks are a sequence of frames, one per page (archive format 3),
//! each compressed in one call with a context kept for the whole slice.
//! A streaming encoder copies its input into a ring buffer and, once that
//! wraps, matches through zstd's slower "external dictionary" path: on
//! 50,000 sample documents one frame per page took 20 % less CPU at level
//! 3 (114 ms instead of 143 ms; 90 ms at level 1, the default), with
//! archives within 1 % of the size. A
//! page (2,000 documents, ~1.8 MB) is larger than the window of the default
//! level, so little is lost by not matching across pages. Any zstd decoder
//! reads the frames as one stream.

use std::path::PathBuf;

use async_compression::tokio::write::GzipEncoder;
use async_compression::Level;
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::archive::compression::Compression;
use crate::archive::crypt::CryptWriter;
use crate::archive::hash::HashingWriter;
use crate::archive::manifest::{FileEntry, FileKind};
use crate::archive::store::ObjectUpload;
use crate::archive::writer::ArchiveWriter;
use crate::archive::ArchiveError;

/// Write buffer in front of the upload: tokio hands each file write to a
/// blocking thread, so fewer, larger writes matter. A zstd frame of a page
/// (~350 KB) is larger and goes straight through; the buffer gathers gzip's
/// and uncompressed output.
const FILE_BUFFER: usize = 256 << 10;

type Sink = CryptWriter<Stored>;
type Stored = HashingWriter<BufWriter<Box<dyn ObjectUpload>>>;

/// Compresses pages into zstd frames, one per call, reusing the context
/// and the output buffer from page to page.
pub struct PageCompressor {
    context: zstd::bulk::Compressor<'static>,
    frame: Vec<u8>,
}

impl PageCompressor {
    pub fn new(level: i32) -> std::io::Result<PageCompressor> {
        Ok(PageCompressor {
            context: zstd::bulk::Compressor::new(level)?,
            frame: Vec::new(),
        })
    }

    /// One complete frame holding `page`; valid until the next call.
    pub fn compress(&mut self, page: &[u8]) -> std::io::Result<&[u8]> {
        self.frame.clear();
        self.frame
            .reserve_exact(zstd::zstd_safe::compress_bound(page.len()));
        self.context.compress_to_buffer(page, &mut self.frame)?;
        Ok(&self.frame)
    }
}

/// Compresses pages into lz4 frames (LZ4F, the format of the `lz4` tool),
/// one per call, with one compression context and one output buffer kept
/// for the whole slice.
///
/// The frame is made by liblz4's own calls (`LZ4F_compressBegin`, one
/// `LZ4F_compressUpdate` of the whole page, `LZ4F_compressEnd`) into a
/// buffer of the bound liblz4 gives, with `autoFlush` and `stableSrc`: the
/// page is compressed straight from the caller's buffer into the frame,
/// never copied into the context's own block buffer first. The `lz4`
/// crate's `Encoder` made a new context (and its 320 KiB block buffer) for
/// every page and copied each block through it: dumping the benchmark's
/// 100,000 documents, `LZ4_compress_fast_continue` went from 746 M to
/// 653 M instructions under callgrind (the same frames: only the copies
/// and the per-page setup are gone).
pub struct Lz4PageCompressor {
    context: lz4::liblz4::LZ4FCompressionContext,
    level: i32,
    frame: Vec<u8>,
}

/// The largest LZ4F frame header (`LZ4F_HEADER_SIZE_MAX` in lz4frame.h).
const LZ4F_HEADER_SIZE_MAX: usize = 19;

impl Lz4PageCompressor {
    /// `level` as the `lz4` tool takes it: 1-2 the fast mode, 3-12 lz4 HC.
    pub fn new(level: i32) -> std::io::Result<Lz4PageCompressor> {
        use lz4::liblz4::{LZ4FCompressionContext, LZ4F_createCompressionContext, LZ4F_VERSION};
        let mut context = LZ4FCompressionContext(std::ptr::null_mut());
        // SAFETY: liblz4 writes a new context's pointer into `context`; it
        // is freed once, in `drop`.
        lz4_result(unsafe { LZ4F_createCompressionContext(&mut context, LZ4F_VERSION) })?;
        Ok(Lz4PageCompressor {
            context,
            level,
            frame: Vec::new(),
        })
    }

    fn preferences(&self) -> lz4::liblz4::LZ4FPreferences {
        use lz4::liblz4::{
            BlockChecksum, BlockMode, BlockSize, ContentChecksum, FrameType, LZ4FFrameInfo,
            LZ4FPreferences,
        };
        LZ4FPreferences {
            frame_info: LZ4FFrameInfo {
                // 256 KiB blocks, linked (each may match into the one
                // before). No content checksum: the chunk's sha256 in the
                // manifest covers it, and verifying lz4's (xxHash32) was
                // 19 % of a restore's CPU. Independent blocks would spare
                // the decoder its 64 KiB dictionary copy per block, yet a
                // restore of 100,000 generated documents into the null
                // sink took 282-285 ms of CPU against 256-257 linked
                // (`perf stat -r 8`, twice each, alternated), and the
                // archive grew 0.6 %.
                block_size_id: BlockSize::Max256KB,
                block_mode: BlockMode::Linked,
                content_checksum_flag: ContentChecksum::NoChecksum,
                frame_type: FrameType::Frame,
                content_size: 0,
                dict_id: 0,
                block_checksum_flag: BlockChecksum::NoBlockChecksum,
            },
            // A C `int` in lz4frame.h, declared unsigned by lz4-sys: the
            // same bits either way.
            compression_level: self.level as u32,
            auto_flush: 1,
            favor_dec_speed: 0,
            reserved: [0; 3],
        }
    }

    /// One complete frame holding `page`; valid until the next call.
    pub fn compress(&mut self, page: &[u8]) -> std::io::Result<&[u8]> {
        use lz4::liblz4::{
            LZ4FCompressOptions, LZ4F_compressBegin, LZ4F_compressBound, LZ4F_compressEnd,
            LZ4F_compressUpdate,
        };
        let preferences = self.preferences();
        // SAFETY: a bound computed from plain values.
        let bound = lz4_result(unsafe { LZ4F_compressBound(page.len(), &preferences) })?;
        let capacity = LZ4F_HEADER_SIZE_MAX + bound;
        self.frame.clear();
        self.frame.reserve(capacity);
        let options = LZ4FCompressOptions {
            // `page` stays where it is for the whole frame.
            stable_src: 1,
            reserved: [0; 3],
        };
        let out = self.frame.as_mut_ptr();
        // SAFETY: each call writes at most the capacity it is given, into
        // `frame`'s reserved, unused memory (`capacity` bytes from `out`),
        // and returns how much it wrote or an error code; the length is set
        // to what was written, no more.
        let written = unsafe {
            let mut at = lz4_result(LZ4F_compressBegin(
                self.context,
                out,
                capacity,
                &preferences,
            ))?;
            at += lz4_result(LZ4F_compressUpdate(
                self.context,
                out.add(at),
                capacity - at,
                page.as_ptr(),
                page.len(),
                &options,
            ))?;
            at += lz4_result(LZ4F_compressEnd(
                self.context,
                out.add(at),
                capacity - at,
                &options,
            ))?;
            at
        };
        // SAFETY: `written` bytes from the start were initialised above.
        unsafe { self.frame.set_len(written) };
        Ok(&self.frame)
    }
}

impl Drop for Lz4PageCompressor {
    fn drop(&mut self) {
        // SAFETY: the context was created in `new` and is freed only here.
        unsafe {
            lz4::liblz4::LZ4F_freeCompressionContext(self.context);
        }
    }
}

/// A liblz4 frame function's result: a size, or an error code it names.
fn lz4_result(code: usize) -> std::io::Result<usize> {
    lz4::liblz4::check_error(code)
}

/// The frame compressor of a chunk.
enum Frames {
    Zstd(PageCompressor),
    Lz4(Lz4PageCompressor),
}

/// zstd or lz4 into a chunk file: a frame per write.
struct FrameEncoder {
    frames: Frames,
    sink: Sink,
}

impl FrameEncoder {
    fn new(sink: Sink, frames: Frames) -> FrameEncoder {
        FrameEncoder { frames, sink }
    }

    async fn write_frame(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let frame = match &mut self.frames {
            Frames::Zstd(c) => c.compress(buf)?,
            Frames::Lz4(c) => c.compress(buf)?,
        };
        self.sink.write_all(frame).await
    }
}

enum Encoder {
    Frames(Box<FrameEncoder>),
    Gzip(GzipEncoder<Sink>),
    Plain(Sink),
}

impl Encoder {
    fn new(sink: Sink, compression: Compression, level: i32) -> std::io::Result<Encoder> {
        Ok(match compression {
            Compression::Zstd => Encoder::Frames(Box::new(FrameEncoder::new(
                sink,
                Frames::Zstd(PageCompressor::new(level)?),
            ))),
            Compression::Lz4 => Encoder::Frames(Box::new(FrameEncoder::new(
                sink,
                Frames::Lz4(Lz4PageCompressor::new(level)?),
            ))),
            Compression::Gzip => {
                Encoder::Gzip(GzipEncoder::with_quality(sink, Level::Precise(level)))
            }
            Compression::None => Encoder::Plain(sink),
        })
    }

    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Frames(e) => e.write_frame(buf).await,
            Encoder::Gzip(e) => e.write_all(buf).await,
            Encoder::Plain(e) => e.write_all(buf).await,
        }
    }

    fn bytes_out(&self) -> u64 {
        match self {
            Encoder::Frames(e) => e.sink.accepted(),
            Encoder::Gzip(e) => e.get_ref().accepted(),
            Encoder::Plain(e) => e.accepted(),
        }
    }

    /// The upload, without ending the compressed stream: what it holds is
    /// to be dropped.
    fn into_upload(self) -> Box<dyn ObjectUpload> {
        let sink = match self {
            Encoder::Frames(e) => e.sink,
            Encoder::Gzip(e) => e.into_inner(),
            Encoder::Plain(e) => e,
        };
        sink.into_inner_unfinished().finish().0.into_inner()
    }

    /// Ends the compressed stream and flushes everything to the upload.
    async fn finish(self) -> std::io::Result<(Box<dyn ObjectUpload>, u64, String)> {
        let sink = match self {
            Encoder::Frames(e) => e.sink,
            Encoder::Gzip(mut e) => {
                e.shutdown().await?;
                e.into_inner()
            }
            Encoder::Plain(e) => e,
        };
        // Ends the age file, if any, and writes what is left of it.
        let stored = sink.finish().await?;
        let (mut buffered, bytes, sha256) = stored.finish();
        buffered.flush().await?;
        Ok((buffered.into_inner(), bytes, sha256))
    }
}

struct OpenChunk {
    rel: String,
    /// Where the bytes go until committed, for error messages.
    writing: PathBuf,
    encoder: Encoder,
    docs: u64,
}

/// Writes the data chunks of one slice: `push` pages, then `finish`.
pub struct ChunkWriter {
    archive: ArchiveWriter,
    folder: String,
    slice: u32,
    compression: Compression,
    level: i32,
    max_bytes: u64,
    next_seq: u32,
    open: Option<OpenChunk>,
    done: Vec<FileEntry>,
}

impl ChunkWriter {
    /// `folder` is the index folder relative to the archive root.
    pub fn new(
        archive: ArchiveWriter,
        folder: &str,
        slice: u32,
        compression: Compression,
        level: i32,
        max_bytes: u64,
    ) -> ChunkWriter {
        ChunkWriter {
            archive,
            folder: folder.to_string(),
            slice,
            compression,
            level,
            max_bytes: max_bytes.max(1),
            next_seq: 0,
            open: None,
            done: Vec::new(),
        }
    }

    /// Continues after chunks finished by an earlier run.
    pub fn resume(mut self, finished: Vec<FileEntry>) -> ChunkWriter {
        self.next_seq = finished.len() as u32;
        self.done = finished;
        self
    }

    /// Chunks finished so far.
    pub fn finished(&self) -> &[FileEntry] {
        &self.done
    }

    /// Documents in the open chunk, if one is open.
    pub fn open_docs(&self) -> Option<u64> {
        self.open.as_ref().map(|c| c.docs)
    }

    /// Deletes every chunk of this slice, finished or open, and starts
    /// over at the first chunk name: the slice is being read again.
    pub async fn discard(&mut self) -> Result<(), ArchiveError> {
        if let Some(open) = self.open.take() {
            open.encoder.into_upload().abort().await?;
        }
        for file in self.done.drain(..) {
            self.archive.store().delete(&file.path).await?;
        }
        self.next_seq = 0;
        Ok(())
    }

    /// The file name of chunk `seq` of slice `slice`.
    pub fn chunk_name(slice: u32, seq: u32, compression: Compression) -> String {
        format!("data-s{slice:03}-{seq:05}.{}", compression.extension())
    }

    /// Appends a page of archive lines holding `docs` documents.
    ///
    /// Uncompressed chunks are cut exactly at the line that would cross
    /// `--file-size` (a single longer line gets a chunk of its own). For
    /// compressed ones the size is only known once the encoder has flushed,
    /// so they are cut at the first page boundary past the limit: a chunk
    /// can exceed it by one compressed page.
    pub async fn push(&mut self, lines: &[u8], docs: u64) -> Result<(), ArchiveError> {
        if self.compression != Compression::None {
            return self.write_piece(lines, docs).await;
        }
        let mut rest = lines;
        while !rest.is_empty() {
            let used = self.open.as_ref().map_or(0, |c| c.encoder.bytes_out());
            let room = self.max_bytes.saturating_sub(used) as usize;
            let cut = line_aligned_prefix(rest, room);
            if cut == 0 {
                // Not even one line fits in what is left: start a new chunk,
                // or give an over-long line a chunk of its own.
                if used > 0 {
                    self.close_open().await?;
                    continue;
                }
                let first = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
                self.write_piece(&rest[..first], 1).await?;
                rest = &rest[first..];
                continue;
            }
            let piece = &rest[..cut];
            let piece_docs = memchr::memchr_iter(b'\n', piece).count() as u64;
            self.write_piece(piece, piece_docs).await?;
            rest = &rest[cut..];
        }
        Ok(())
    }

    /// Writes bytes to the open chunk (opening one if needed), then closes
    /// it when it reached the size limit.
    async fn write_piece(&mut self, bytes: &[u8], docs: u64) -> Result<(), ArchiveError> {
        if self.open.is_none() {
            self.open = Some(self.open_next().await?);
        }
        let chunk = self.open.as_mut().expect("opened above");
        chunk
            .encoder
            .write_all(bytes)
            .await
            .map_err(|e| ArchiveError::io(&chunk.writing, e))?;
        chunk.docs += docs;
        if chunk.encoder.bytes_out() >= self.max_bytes {
            self.close_open().await?;
        }
        Ok(())
    }

    /// Closes the last chunk and returns the manifest entries of all.
    pub async fn finish(mut self) -> Result<Vec<FileEntry>, ArchiveError> {
        self.close_open().await?;
        Ok(self.done)
    }

    async fn open_next(&mut self) -> Result<OpenChunk, ArchiveError> {
        let name = Self::chunk_name(self.slice, self.next_seq, self.compression);
        self.next_seq += 1;
        let rel = format!("{}/{}", self.folder, name);
        let upload = self.archive.store().upload(&rel).await?;
        let writing = upload.location().to_path_buf();
        let stored = HashingWriter::new(BufWriter::with_capacity(FILE_BUFFER, upload));
        let sink = CryptWriter::new(stored, self.archive.recipients())
            .map_err(|e| ArchiveError::io(&writing, e))?;
        let encoder = Encoder::new(sink, self.compression, self.level)
            .map_err(|e| ArchiveError::io(&writing, e))?;
        Ok(OpenChunk {
            rel,
            writing,
            encoder,
            docs: 0,
        })
    }

    async fn close_open(&mut self) -> Result<(), ArchiveError> {
        let Some(chunk) = self.open.take() else {
            return Ok(());
        };
        let (upload, bytes, sha256) = chunk
            .encoder
            .finish()
            .await
            .map_err(|e| ArchiveError::io(&chunk.writing, e))?;
        upload.commit().await?;
        self.done.push(FileEntry {
            kind: FileKind::Data,
            path: chunk.rel,
            bytes,
            docs: Some(chunk.docs),
            sha256,
            slice: Some(self.slice),
            encrypted: self.archive.recipients().is_some(),
        });
        Ok(())
    }
}

/// The length of the longest prefix of `lines` made of whole lines and at
/// most `limit` bytes long (0 when the first line alone is longer).
fn line_aligned_prefix(lines: &[u8], limit: usize) -> usize {
    if lines.len() <= limit {
        return lines.len();
    }
    match memchr::memrchr(b'\n', &lines[..limit]) {
        Some(i) => i + 1,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_on_line_boundaries() {
        let lines = b"aaa\nbb\ncccc\n";
        assert_eq!(line_aligned_prefix(lines, 100), lines.len());
        assert_eq!(line_aligned_prefix(lines, 7), 7);
        assert_eq!(line_aligned_prefix(lines, 6), 4);
        assert_eq!(line_aligned_prefix(lines, 3), 0);
    }

    #[tokio::test]
    async fn uncompressed_chunks_never_cross_the_limit_but_by_one_long_line() {
        let dir = tempfile::tempdir().unwrap();
        let archive = ArchiveWriter::create(dir.path(), false).await.unwrap();
        archive.create_dir("i").await.unwrap();
        let mut w = ChunkWriter::new(archive, "i", 0, Compression::None, 0, 100);
        let line = |n: usize| format!("{}\n", "x".repeat(n - 1));
        let page: String = (0..10).map(|_| line(30)).collect();
        w.push(page.as_bytes(), 10).await.unwrap();
        w.push(line(250).as_bytes(), 1).await.unwrap();
        w.push(line(30).as_bytes(), 1).await.unwrap();
        let files = w.finish().await.unwrap();
        let sizes: Vec<u64> = files.iter().map(|f| f.bytes).collect();
        let docs: Vec<u64> = files.iter().map(|f| f.docs.unwrap()).collect();
        assert_eq!(sizes, [90, 90, 90, 30, 250, 30]);
        assert_eq!(docs, [3, 3, 3, 1, 1, 1]);
    }

    #[tokio::test]
    async fn zstd_chunks_hold_one_frame_per_page_and_decode_as_one_stream() {
        let dir = tempfile::tempdir().unwrap();
        let archive = ArchiveWriter::create(dir.path(), false).await.unwrap();
        archive.create_dir("i").await.unwrap();
        let mut w = ChunkWriter::new(archive, "i", 0, Compression::Zstd, 3, 1 << 30);
        let pages: Vec<String> = (0..3)
            .map(|p| {
                (0..50)
                    .map(|k| format!("{{\"_id\":\"{p}-{k}\",\"_source\":{{\"n\":{k}}}}}\n"))
                    .collect()
            })
            .collect();
        for page in &pages {
            w.push(page.as_bytes(), 50).await.unwrap();
        }
        let files = w.finish().await.unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].docs, Some(150));
        let bytes = std::fs::read(dir.path().join(&files[0].path)).unwrap();
        assert_eq!(bytes.len() as u64, files[0].bytes);
        let mut frames = 0;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let size = zstd::zstd_safe::find_frame_compressed_size(rest).unwrap();
            rest = &rest[size..];
            frames += 1;
        }
        assert_eq!(frames, 3);
        assert_eq!(
            zstd::decode_all(&bytes[..]).unwrap(),
            pages.concat().into_bytes()
        );
    }
}
