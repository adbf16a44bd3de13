"""A corpus of bad and odd inputs for ``focal-detect``, each with the outcome it must get.

Every case is one entry of :data:`CASES`: a file (or link, FIFO, folder) to
write, where it goes, and what its record in ``results.jsonl`` must say:
``done`` (mask and overlay written, optionally of a stated size), ``failed``
with a substring of the error, or ``absent`` (not considered: the folder
listing leaves it out, so it has no record). The files are built here from
NumPy, OpenCV and hand-written headers; nothing is downloaded, and the whole
corpus is well under 1 MB.

Layout under the corpus folder:

- ``tree/``: a folder given to the CLI as one input (cases found by listing it);
- ``named/``: files given to the CLI one by one (read whatever their suffix);
  ``tree/`` and ``named/`` are one run, ``main``;
- ``bytes-name/``: a file name that is not UTF-8, a run of its own so that
  a regression stopping the whole run leaves the rest of the corpus checked;
- ``bombs/``: header bombs, one per accepted format and encoding, run on
  their own so the run's peak RSS is theirs. Each declares more than the
  100 MP limit but stays under OpenCV's own 2^30-pixel limit, and five
  (``real_bomb``) are valid enough that a decoder fed them would fill the
  whole canvas (the missing data of a JPEG is filled in, a BMP's RLE
  "end of bitmap" fills the rest, TIFF strips may share one compressed
  block, 1-bit PNG rows compress 1000:1): so a refusal that came after
  decoding shows as gigabytes of peak memory, not only as a wrong record.

Run as a script to write a corpus and list it:

    python tests/fuzz_corpus.py /tmp/focal-fuzz
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

__all__ = ["BOMB_SIDE", "CASES", "Case", "peak_rss_argv", "read_peak_mb", "run_inputs", "write_corpus"]

SEED = 16
# Bomb canvases: 16000 x 16000 = 256 MP, over focal's 100 MP limit and under OpenCV's own 2^30 one,
# so OpenCV would decode it (a 768 MB RGB array) if focal's header check let it through.
BOMB_SIDE = 16000
_LIMIT_ERROR = "over the limit max_pixels="


@dataclass(frozen=True)
class Case:
    """One corpus entry and the outcome its record must have."""

    name: str  # test id
    path: str  # relative to the corpus folder: "tree/...", "named/...", "bombs/..." or "bytes-name/..."
    outcome: str  # "done", "failed" or "absent"
    build: Callable[[Path], None] = field(repr=False, compare=False)  # writes the entry at the given path
    error: str = ""  # failed: a substring of the record's error
    shape: tuple[int, int] | None = None  # done: the mask's (height, width), when the case is about it
    decoder: str = ""  # a substring one of the record's decoder_messages must hold
    real_bomb: bool = False  # bombs: a decoder given this file would allocate and fill the declared canvas
    why: str = ""  # what the case checks, or why it is built the way it is

    @property
    def group(self) -> str:
        """The top folder: ``tree``, ``named``, ``bombs``, or a run of its own."""
        return self.path.split("/", 1)[0]

    @property
    def run(self) -> str:
        """Which ``focal-detect`` run considers it: ``main`` (``tree/`` and ``named/``) or its group's own."""
        return "main" if self.group in ("tree", "named") else self.group


# -- encoders -------------------------------------------------------------------------------------
def _rng(salt: int) -> np.random.Generator:
    return np.random.default_rng([SEED, salt])


def _noise(h: int, w: int, channels: int = 3, salt: int = 0) -> np.ndarray:
    """Seeded uint8 noise, [h, w, channels] (or [h, w] for one channel), values in [0, 255]."""
    shape = (h, w) if channels == 1 else (h, w, channels)
    return _rng(salt).integers(0, 256, shape, dtype=np.uint8)


def _encode(ext: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, params or [])
    if not ok:
        raise RuntimeError(f"OpenCV cannot encode {ext} {image.shape} {image.dtype}")
    return buf.tobytes()


def _writer(data: Callable[[], bytes]) -> Callable[[Path], None]:
    """A builder that writes the bytes ``data()`` returns (made only when the corpus is written)."""
    return lambda path: path.write_bytes(data())


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, depth: int, color: int, rows: bytes, extra: bytes = b"") -> bytes:
    """A PNG from filtered scanlines (each row: filter byte 0 + packed samples)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + extra
            + _png_chunk(b"IDAT", zlib.compress(rows, 9)) + _png_chunk(b"IEND", b""))


def _palette_png() -> bytes:
    """A 24 x 40 palette (colour type 3) PNG of 4 colours: OpenCV cannot write one."""
    palette = bytes([200, 30, 30, 30, 200, 30, 30, 30, 200, 240, 240, 240])
    index = (np.arange(24)[:, None] // 6 + np.arange(40)[None, :] // 10) % 4
    rows = b"".join(b"\x00" + bytes(row.astype(np.uint8)) for row in index)
    return _png(40, 24, 8, 3, rows, _png_chunk(b"PLTE", palette))


def _tiff(width: int, height: int, tags: dict[int, tuple[int, list[int]]], strips: list[bytes],
          shared_strip: bool = False) -> bytes:
    """A little-endian one-IFD TIFF. ``tags``: tag -> (type 3 SHORT / 4 LONG, values); strips appended.

    ``tags`` must hold RowsPerStrip (278); the sizes and strip tables are
    added here. With ``shared_strip`` every StripOffsets entry points at the
    one block ``strips[0]``.
    """
    n_strips = -(-height // tags[278][1][0])
    copies = n_strips if shared_strip else 1
    tags = {**tags, 256: (4, [width]), 257: (4, [height]), 273: (4, [0] * n_strips),  # offsets: set below
            279: (4, [len(s) for s in strips] * copies)}
    pack = {tag: (kind, "<" + ("H" if kind == 3 else "I") * len(values)) for tag, (kind, values) in tags.items()}
    # Values longer than 4 bytes go after the IFD, then the strip data.
    pos, offsets = 8 + 2 + 12 * len(tags) + 4, {}
    for tag in sorted(tags):
        if struct.calcsize(pack[tag][1]) > 4:
            offsets[tag], pos = pos, pos + struct.calcsize(pack[tag][1])
    strip_at = []
    for strip in strips:
        strip_at, pos = strip_at + [pos], pos + len(strip)
    tags[273] = (4, strip_at * copies)
    ifd, blobs = bytearray(struct.pack("<H", len(tags))), bytearray()
    for tag in sorted(tags):
        kind, values = tags[tag]
        packed = struct.pack(pack[tag][1], *values)
        ifd += struct.pack("<HHI", tag, kind, len(values))
        ifd += struct.pack("<I", offsets[tag]) if tag in offsets else packed.ljust(4, b"\x00")
        blobs += packed if tag in offsets else b""
    return b"II*\x00" + struct.pack("<I", 8) + bytes(ifd) + struct.pack("<I", 0) + bytes(blobs) + b"".join(strips)


def _cmyk_tiff() -> bytes:
    """An uncompressed 8-bit CMYK (Photometric 5 Separated, InkSet 1) 16 x 24 TIFF: OpenCV cannot write one."""
    h, w = 16, 24
    pixels = _noise(h, w, 4, salt=11)
    tags = {258: (3, [8, 8, 8, 8]), 259: (3, [1]), 262: (3, [5]), 277: (3, [4]), 278: (4, [h]),
            284: (3, [1]), 332: (3, [1])}
    return _tiff(w, h, tags, [pixels.tobytes()])


class _Bits:
    """MSB-first bit writer for JPEG entropy data (0xFF bytes stuffed, padded with 1s)."""

    def __init__(self) -> None:
        self.out, self.acc, self.n = bytearray(), 0, 0

    def put(self, value: int, length: int) -> None:
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc, self.n = 0, 0

    def done(self) -> bytes:
        while self.n:
            self.put(1, 1)
        return bytes(self.out)


# The JPEG standard's luminance DC table (Annex K.3): code counts per length 1..16, then symbols.
_DC_BITS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
_DC_VALS = list(range(12))


def _huffman_codes(bits: list[int], vals: list[int]) -> dict[int, tuple[int, int]]:
    """Canonical Huffman codes: symbol -> (code, length)."""
    codes, code, k = {}, 0, 0
    for length, count in enumerate(bits, start=1):
        for _ in range(count):
            codes[vals[k]] = (code, length)
            code, k = code + 1, k + 1
        code <<= 1
    return codes


def _segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body


def _cmyk_jpeg() -> bytes:
    """A baseline 4-component (Adobe CMYK, transform 0) 16 x 8 JPEG, DC-only blocks: OpenCV cannot write one.

    Each component's two blocks are flat at their own level, so the decoded
    picture has colour. The AC table holds only end-of-block (code ``0``).
    """
    h, w, levels = 8, 16, [(40, 200), (120, 60), (220, 10), (0, 90)]  # per component: (left, right) block level
    dc = _huffman_codes(_DC_BITS, _DC_VALS)
    bits, prev = _Bits(), [0, 0, 0, 0]
    for block in range(2):  # MCUs, left to right; one block per component each (H = V = 1)
        for comp in range(4):
            coef = (levels[comp][block] - 128) * 8  # DC of a flat block, quantiser 1
            diff, prev[comp] = coef - prev[comp], coef
            cat = abs(diff).bit_length()
            code, length = dc[cat]
            bits.put(code, length)
            if cat:
                bits.put(diff if diff > 0 else diff + (1 << cat) - 1, cat)
            bits.put(0, 1)  # end of block
    comps = b"".join(bytes([i + 1, 0x11, 0]) for i in range(4))
    return (b"\xff\xd8"
            + _segment(0xEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0))  # transform 0: CMYK as stored
            + _segment(0xDB, b"\x00" + bytes([1] * 64))
            + _segment(0xC0, struct.pack(">BHHB", 8, h, w, 4) + comps)
            + _segment(0xC4, b"\x00" + bytes(_DC_BITS) + bytes(_DC_VALS))
            + _segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")
            + _segment(0xDA, b"\x04" + b"".join(bytes([i + 1, 0x00]) for i in range(4)) + b"\x00\x3f\x00")
            + bits.done() + b"\xff\xd9")


def _exif_jpeg(orientation: int) -> bytes:
    """A 48 x 80 (h x w) JPEG with an APP1 Exif block holding only Orientation (tag 0x0112)."""
    body = _encode(".jpg", _noise(48, 80, salt=12))
    tiff = b"MM\x00*" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + bytes(4)
    return body[:2] + _segment(0xE1, b"Exif\x00\x00" + tiff) + body[2:]


def _float_tiff(high: float) -> bytes:
    """An uncompressed float32 16 x 16 RGB TIFF ramp over [0, ``high``].

    Uncompressed because OpenCV 4.11's default float TIFF compression does not
    round-trip exactly (see tests/runtime/test_image_headers.py).
    """
    ramp = np.linspace(0, high, 16 * 16, dtype=np.float32).reshape(16, 16)
    return _encode(".tiff", np.dstack([ramp] * 3), [cv2.IMWRITE_TIFF_COMPRESSION, 1])


# -- header bombs ---------------------------------------------------------------------------------
def _bomb_png_1bit() -> bytes:
    """A complete 1-bit gray PNG of BOMB_SIDE^2 zeros: 32 MB of rows deflate to ~32 KB."""
    row = bytes(1 + BOMB_SIDE // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(BOMB_SIDE)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", BOMB_SIDE, BOMB_SIDE, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _bomb_png_ihdr() -> bytes:
    """A 1 x 1 RGB PNG whose IHDR is rewritten to BOMB_SIDE^2 (data runs out after one row)."""
    data = bytearray(_encode(".png", _noise(1, 1)))
    data[16:24] = struct.pack(">II", BOMB_SIDE, BOMB_SIDE)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # a valid CRC, so libpng reads on
    return bytes(data)


def _bomb_jpeg(progressive: bool) -> bytes:
    """An 8 x 8 colour JPEG whose frame header says BOMB_SIDE^2: libjpeg fills the missing MCUs and decodes all."""
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    data = bytearray(_encode(".jpg", _noise(8, 8, salt=3), params))
    sof = data.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", BOMB_SIDE, BOMB_SIDE)
    return bytes(data)


def _bomb_bmp_rle8() -> bytes:
    """An RLE8 BMP of BOMB_SIDE^2 whose data is only "end of bitmap": the decoder fills the canvas (~1 KB file)."""
    palette = bytes([0, 0, 0, 0]) * 256
    rle = b"\x00\x01"
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, BOMB_SIDE, BOMB_SIDE, 1, 8, 1, len(rle), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(rle), 0, 0, offset) + info + palette + rle


def _bomb_bmp_header() -> bytes:
    """A 1 x 1 BMP whose info header is rewritten to BOMB_SIDE^2 (top-down: negative height)."""
    data = bytearray(_encode(".bmp", _noise(1, 1)))
    data[18:26] = struct.pack("<ii", BOMB_SIDE, -BOMB_SIDE)
    return bytes(data)


def _bomb_tiff_shared() -> bytes:
    """A deflate gray TIFF of BOMB_SIDE^2 whose every strip points at one compressed block of zeros (~4 KB)."""
    rows = 64
    block = zlib.compress(bytes(rows * BOMB_SIDE), 9)
    tags = {258: (3, [8]), 259: (3, [8]), 262: (3, [1]), 277: (3, [1]), 278: (4, [rows]), 284: (3, [1])}
    return _tiff(BOMB_SIDE, BOMB_SIDE, tags, [block], shared_strip=True)


def _bomb_tiff_second_page() -> bytes:
    """A valid 8 x 8 TIFF page followed by a second IFD declaring BOMB_SIDE^2 (OpenCV may read any page)."""
    first = bytearray(_encode(".tif", _noise(8, 8, salt=4), [cv2.IMWRITE_TIFF_COMPRESSION, 1]))
    (ifd,) = struct.unpack("<I", first[4:8])
    (count,) = struct.unpack("<H", first[ifd: ifd + 2])
    next_at = ifd + 2 + 12 * count
    second = len(first)
    entries = [(256, 4, 1, BOMB_SIDE), (257, 4, 1, BOMB_SIDE), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, BOMB_SIDE), (279, 4, 1, BOMB_SIDE * BOMB_SIDE)]
    page = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + bytes(4)
    first[next_at: next_at + 4] = struct.pack("<I", second)
    return bytes(first) + page


def _bomb_webp_vp8x() -> bytes:
    """A 1 x 1 lossy WebP with a VP8X chunk declaring a BOMB_SIDE^2 canvas (24-bit sizes minus one)."""
    data = _encode(".webp", _noise(1, 1), [cv2.IMWRITE_WEBP_QUALITY, 80])
    chunk = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (BOMB_SIDE - 1).to_bytes(3, "little") * 2
    body = b"WEBP" + chunk + data[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _bomb_webp_vp8l() -> bytes:
    """A lossless WebP whose VP8L header says 16384 x 16384 (its 14-bit maximum, 268 MP), no pixel data."""
    bits = (16384 - 1) | ((16384 - 1) << 14)
    vp8l = b"\x2f" + bits.to_bytes(4, "little") + bytes(8)
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _bomb_pnm(magic: str) -> bytes:
    """A binary PNM (P4 bits, P5 gray, P6 RGB) declaring BOMB_SIDE^2, with a comment and a few data bytes."""
    maxval = "" if magic == "P4" else "255\n"
    return f"{magic}\n# bomb\n{BOMB_SIDE} {BOMB_SIDE}\n{maxval}".encode() + bytes(64)


def _bomb_pam() -> bytes:
    return (f"P7\nWIDTH {BOMB_SIDE}\nHEIGHT {BOMB_SIDE}\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n".encode()
            + bytes(64))


# -- special entries ------------------------------------------------------------------------------
def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _symlink(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


def _symlink_loop(path: Path) -> None:
    path.symlink_to(path.with_name("loop-b.jpg").name)
    path.with_name("loop-b.jpg").symlink_to(path.name)


def _folder_with_image(path: Path) -> None:
    path.mkdir()
    (path / "inner.jpg").write_bytes(_encode(".jpg", _noise(24, 24, salt=13)))


# -- the table ------------------------------------------------------------------------------------
def _jpeg(h: int, w: int, salt: int) -> Callable[[Path], None]:
    return _writer(lambda: _encode(".jpg", _noise(h, w, salt=salt)))


def _truncated(ext: str, salt: int) -> Callable[[Path], None]:
    return _writer(lambda: (data := _encode(ext, _noise(64, 64, salt=salt)))[: len(data) // 2])


_UNSUPPORTED = "unsupported format (accepted: JPEG, PNG, BMP, TIFF, WebP, PNM)"
# A valid 1 x 1 GIF (2-colour table, one LZW-coded pixel): refused by its magic whether or not this
# OpenCV build has a GIF decoder (the pip wheel of 4.11 has none; other builds decode it).
_GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
        + b",\x00\x00\x00\x00\x01\x00\x01\x00\x00" + b"\x02\x02D\x01\x00;")


def _bomb(name: str, path: str, build: Callable[[], bytes], real: bool, why: str) -> Case:
    return Case(name, f"bombs/{path}", "failed", _writer(build), error=_LIMIT_ERROR, real_bomb=real, why=why)


CASES: list[Case] = [
    # -- files that fail, each with its one-line reason
    Case("zero-byte", "tree/zero.jpg", "failed", _writer(lambda: b""), error="file is empty"),
    Case("truncated-png", "tree/truncated.png", "failed", _truncated(".png", 1),
         error="not a readable image", decoder="PNG",
         why="half a PNG: the decoder's complaint joins the record, not stderr on its own"),
    Case("truncated-jpeg", "tree/truncated.jpg", "failed", _truncated(".jpg", 5), error="not a readable image",
         why="half a JPEG: OpenCV 4.11 returns no image (older ones filled the rest with gray)"),
    Case("random-bytes", "tree/random.jpg", "failed",
         _writer(lambda: b"\x00" + _rng(2).integers(0, 256, 2047, dtype=np.uint8).tobytes()), error=_UNSUPPORTED,
         why="noise under an image suffix: told by its bytes (the leading 0x00 is no format's magic)"),
    Case("text-as-image", "tree/notes.png", "failed", _writer(lambda: b"a text file, saved as .png\n" * 4),
         error=_UNSUPPORTED),
    Case("gif-bytes-png-suffix", "tree/anim.png", "failed", _writer(lambda: _GIF), error="unsupported format GIF"),
    Case("gif-in-folder", "tree/clip.gif", "failed", _writer(lambda: _GIF), error="unsupported format GIF",
         why="a folder lists refused image formats too, so the file gets a record instead of vanishing"),
    Case("gif-named", "named/anim.gif", "failed", _writer(lambda: _GIF), error="unsupported format GIF",
         why="refused by its magic: GIF has no header reader here, so no pixel check could precede a decode "
             "(this OpenCV wheel has no GIF decoder; other builds decode it)"),
    Case("float-tiff-0-255", "tree/float255.tif", "failed", _writer(lambda: _float_tiff(255.0)),
         error="float pixels must lie in [0, 1], these span [0, 255]", why="clipping would turn it white"),
    Case("fifo", "tree/pipe.png", "failed", _fifo, error="not a regular file",
         why="reading a FIFO would block the run forever"),
    Case("symlink-loop", "tree/loop-a.jpg", "failed", _symlink_loop, error="symlink loop",
         why="loop-a.jpg -> loop-b.jpg -> loop-a.jpg (until Dec 2026 a traceback that stopped the run)"),
    Case("symlink-loop-other-end", "tree/loop-b.jpg", "failed", lambda path: None, error="symlink loop",
         why="written by symlink-loop"),
    Case("dangling-symlink", "tree/dangling.png", "failed", _symlink("gone.png"), error="dangling symlink"),
    # -- files that pass (today's behaviour, kept)
    Case("png-16bit", "tree/deep16.png", "done",
         _writer(lambda: _encode(".png", (_noise(32, 40, salt=6).astype(np.uint16) * 257))), shape=(32, 40)),
    Case("gray-png", "tree/gray.png", "done", _writer(lambda: _encode(".png", _noise(32, 24, 1, salt=7))),
         shape=(32, 24)),
    Case("gray-jpeg", "tree/gray.jpg", "done", _writer(lambda: _encode(".jpg", _noise(24, 32, 1, salt=7))),
         shape=(24, 32)),
    Case("rgba-png", "tree/rgba.png", "done", _writer(lambda: _encode(".png", _noise(24, 32, 4, salt=8))),
         shape=(24, 32)),
    Case("palette-png", "tree/palette.png", "done", _writer(_palette_png), shape=(24, 40),
         why="hand-built: OpenCV writes no palette PNG"),
    Case("cmyk-jpeg", "tree/cmyk.jpg", "done", _writer(_cmyk_jpeg), shape=(8, 16),
         why="hand-built: OpenCV writes no CMYK JPEG"),
    Case("cmyk-tiff", "tree/cmyk.tif", "done", _writer(_cmyk_tiff), shape=(16, 24),
         why="hand-built: OpenCV writes no CMYK TIFF"),
    Case("one-pixel", "tree/one.png", "done", _writer(lambda: _encode(".png", _noise(1, 1, salt=9))), shape=(1, 1)),
    Case("20000x50", "tree/wide.png", "done",
         _writer(lambda: _encode(".png", np.broadcast_to((np.arange(20000) // 80).astype(np.uint8)[None, :, None],
                                                         (50, 20000, 3)).copy())),
         shape=(50, 20000), why="a gradient, so the PNG stays a few KB"),
    Case("exif-rotated-jpeg", "tree/exif6.jpg", "done", _writer(lambda: _exif_jpeg(6)), shape=(80, 48),
         why="stored 48 x 80, Orientation 6 (90 degrees clockwise): the mask matches the picture as shown"),
    Case("non-ascii-name", "tree/фото über 写真.jpg", "done", _jpeg(32, 32, 14)),
    Case("subfolder", "tree/sub/deeper/nested.png", "done", _writer(lambda: _encode(".png", _noise(20, 28, salt=15))),
         shape=(20, 28)),
    Case("folder-with-image-suffix", "tree/album.png", "absent", _folder_with_image,
         why="a folder named like an image is a folder: its file is the next case"),
    Case("file-in-folder-with-image-suffix", "tree/album.png/inner.jpg", "done", lambda path: None,
         shape=(24, 24), why="written by folder-with-image-suffix"),
    Case("duplicate-stem-jpg", "tree/a.jpg", "done", _jpeg(40, 56, 16), shape=(40, 56),
         why="a.jpg and a.png: distinct output names, each its own size"),
    Case("duplicate-stem-png", "tree/a.png", "done", _writer(lambda: _encode(".png", _noise(56, 40, salt=17))),
         shape=(56, 40)),
    Case("upper-case-suffix", "tree/LOUD.JPG", "done", _jpeg(16, 16, 18)),
    Case("float-tiff-0-1", "tree/float01.tif", "done", _writer(lambda: _float_tiff(1.0)), shape=(16, 16)),
    Case("bmp", "tree/plain.bmp", "done", _writer(lambda: _encode(".bmp", _noise(20, 20, salt=19)))),
    Case("tiff", "tree/plain.tif", "done", _writer(lambda: _encode(".tif", _noise(20, 20, salt=20)))),
    Case("webp", "tree/plain.webp", "done", _writer(lambda: _encode(".webp", _noise(20, 20, salt=21)))),
    Case("ppm", "tree/plain.ppm", "done", _writer(lambda: _encode(".ppm", _noise(20, 20, salt=22)))),
    Case("pgm", "tree/plain.pgm", "done", _writer(lambda: _encode(".pgm", _noise(20, 20, 1, salt=23)))),
    Case("named-odd-suffix", "named/photo.dat", "done", _writer(lambda: _encode(".png", _noise(12, 12, salt=24))),
         why="a file named explicitly is read whatever its suffix"),
    # -- not considered: no record, by design (docs/runtime.md, "Inputs")
    Case("hidden-file", "tree/.hidden.png", "absent", _writer(lambda: _encode(".png", _noise(4, 4, salt=25)))),
    Case("no-image-suffix", "tree/readme.txt", "absent", _writer(lambda: b"not an image\n")),
    Case("folder-symlink-loop", "tree/sub/up", "absent", _symlink(".."),
         why="a link to a parent folder: the listing does not follow it, so nothing is listed twice or forever"),
    # -- in a run of its own: a name no str.encode() takes once stopped a whole run with a traceback
    Case("undecodable-name", "bytes-name/" + os.fsdecode(b"\xff\xfe.png"), "done",
         _writer(lambda: _encode(".png", _noise(8, 8, salt=26))), shape=(8, 8),
         why="a file name that is not UTF-8 (bytes 0xff 0xfe), as a Latin-1 or broken copy leaves"),
    # -- header bombs: one per accepted format and encoding, all refused from the header
    _bomb("bomb-png-1bit", "png-1bit.png", _bomb_png_1bit, True, "complete 1-bit rows of zeros"),
    _bomb("bomb-png-ihdr", "png-ihdr.png", _bomb_png_ihdr, False, "IHDR rewritten, data of a 1 x 1"),
    _bomb("bomb-jpeg-baseline", "jpeg-baseline.jpg", lambda: _bomb_jpeg(False), True, "SOF0 rewritten"),
    _bomb("bomb-jpeg-progressive", "jpeg-progressive.jpg", lambda: _bomb_jpeg(True), True, "SOF2 rewritten"),
    _bomb("bomb-bmp-rle8", "bmp-rle8.bmp", _bomb_bmp_rle8, True, "RLE8 end-of-bitmap"),
    _bomb("bomb-bmp-header", "bmp-header.bmp", _bomb_bmp_header, False, "top-down, rows missing"),
    _bomb("bomb-tiff-shared-strips", "tiff-shared.tif", _bomb_tiff_shared, True, "all strips share one block"),
    _bomb("bomb-tiff-second-page", "tiff-page2.tif", _bomb_tiff_second_page, False, "page 1 small, page 2 huge"),
    _bomb("bomb-webp-vp8x", "webp-vp8x.webp", _bomb_webp_vp8x, False, "VP8X canvas over a 1 x 1 frame"),
    _bomb("bomb-webp-vp8l", "webp-vp8l.webp", _bomb_webp_vp8l, False, "VP8L header only"),
    _bomb("bomb-pbm", "bits.pnm", lambda: _bomb_pnm("P4"), False, "P4 header, a few bytes"),
    _bomb("bomb-pgm", "gray.pgm", lambda: _bomb_pnm("P5"), False, "P5 header, a few bytes"),
    _bomb("bomb-ppm", "rgb.ppm", lambda: _bomb_pnm("P6"), False, "P6 header, a few bytes"),
    _bomb("bomb-pam", "tuple.pnm", _bomb_pam, False, "P7 header, a few bytes"),
]


def write_corpus(folder: Path, cases: list[Case] = CASES) -> list[Case]:
    """Writes every case under ``folder`` (created; must not hold an earlier corpus).

    Args:
        folder: where ``tree/``, ``named/`` and ``bombs/`` go.
        cases: the cases to write (default: all of :data:`CASES`).

    Returns:
        The cases written, in table order.
    """
    for group in dict.fromkeys(c.group for c in cases):
        (folder / group).mkdir(parents=True, exist_ok=True)
    for case in cases:
        path = folder / case.path
        path.parent.mkdir(parents=True, exist_ok=True)
        case.build(path)
    return list(cases)


def run_inputs(folder: Path, run: str, cases: list[Case] = CASES) -> list[str]:
    """The ``focal-detect`` positionals of one run over a written corpus: its folders, then its named files."""
    groups = dict.fromkeys(c.group for c in cases if c.run == run)
    folders = [str(folder / g) for g in groups if g != "named"]
    named = [str(folder / c.path) for c in cases if c.group == "named" and c.run == run]
    return folders + named


# Runs argv[2:] and writes its ru_maxrss to argv[1]; exits with its status (128 + N for signal N).
_PEAK_WRAPPER = """\
import os, sys
report, argv = sys.argv[1], sys.argv[2:]
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as handle:
    handle.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def peak_rss_argv(argv: list[str], report: Path) -> list[str]:
    """``argv`` (an absolute executable first) wrapped so that its own peak RSS is written to ``report``.

    A child's ``ru_maxrss`` (``wait4``, ``RUSAGE_CHILDREN``) starts from its
    parent's high-water mark: Linux charges the mm that ``vfork`` + ``exec``
    leaves to the child, so a child of a 1 GB pytest reports at least 1 GB.
    The command is therefore spawned by a bare interpreter (about 10 MB),
    which reports what the command itself reached.
    """
    return [sys.executable, "-S", "-c", _PEAK_WRAPPER, str(report), *argv]


def read_peak_mb(report: Path) -> float:
    """The peak RSS :func:`peak_rss_argv` wrote, in MB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    return int(report.read_text()) / (2**20 if sys.platform == "darwin" else 2**10)


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "focal-fuzz")
    for c in write_corpus(root):
        p = root / c.path
        size = p.lstat().st_size if os.path.lexists(p) else 0
        print(f"{c.run:10} {c.outcome:7} {size:8d} B  {c.path!r}  {c.error}")
