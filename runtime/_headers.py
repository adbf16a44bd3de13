"""Image formats and declared sizes, from the first bytes of a file.

The decoder accepts exactly the formats this module can size without
decoding, so every accepted file's pixel count is checked before OpenCV
allocates anything: a 38-byte WebP or a 4 MB TIFF that declares a
gigapixel canvas is refused from its header. The format is told by its
magic bytes, never by the file name.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

__all__ = ["ACCEPTED_FORMATS", "HeaderError", "image_format", "declared_size"]

ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "TIFF", "WebP", "PNM")

# JPEG start-of-frame markers (SOF0..SOF15 minus DHT, JPG and DAC).
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Formats OpenCV may decode that are refused, by magic, named in the error.
_REFUSED = ((b"GIF8", "GIF"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xffO\xffQ", "JPEG 2000"),
            (b"v/1\x01", "OpenEXR"), (b"#?RADIANCE", "Radiance HDR"), (b"#?RGBE", "Radiance HDR"),
            (b"\x59\xa6\x6a\x95", "Sun raster"), (b"PF", "PFM"), (b"Pf", "PFM"))
# PNM: magic, then width and height as decimal text, with '#' comments between tokens.
_PNM_TOKENS = re.compile(rb"(?:\s|#[^\n]*\n)+(\d+)(?:\s|#[^\n]*\n)+(\d+)")


class HeaderError(ValueError):
    """The file is of a refused format, or its header cannot be read."""


def image_format(data: bytes) -> str:
    """The accepted format the bytes start with.

    Raises:
        HeaderError: the bytes are of no accepted format; the message names
            the format where known ("unsupported format GIF").
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:2] == b"\xff\xd8":
        return "JPEG"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if len(data) >= 2 and data[:1] == b"P" and data[1:2] in b"1234567":
        return "PNM"
    for magic, name in _REFUSED:
        if data.startswith(magic):
            raise HeaderError(f"unsupported format {name} (accepted: {', '.join(ACCEPTED_FORMATS)})")
    raise HeaderError(f"unsupported format (accepted: {', '.join(ACCEPTED_FORMATS)})")


def declared_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` as the file's header declares it, without decoding.

    Args:
        data: The file's bytes (the whole file, or enough of its start).

    Returns:
        The declared canvas size in pixels.

    Raises:
        HeaderError: unsupported format, or a header too short or malformed
            to say its size.
    """
    fmt = image_format(data)
    size = _READERS[fmt](data)
    if size is None:
        raise HeaderError(f"{fmt} header is truncated or malformed (no image size found)")
    return size


def _png(data: bytes) -> tuple[int, int] | None:
    if len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


def _bmp(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
        return width, height
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # negative height = top-down rows


def jpeg_segments(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(marker, payload)`` of a JPEG's header segments, up to and including the first scan's.

    Fill bytes and markers without a length are stepped over; the walk stops
    at the end of the image, at anything that is not a marker, or where the
    bytes run out. A payload is cut short where the file is (callers check
    its length), so a truncated or hostile header cannot read past the buffer.
    """
    if data[:2] != b"\xff\xd8":
        return
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker == 0xD9:  # end of image
            return
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        yield marker, data[pos + 4 : pos + 2 + length]
        if marker == 0xDA:  # start of scan: entropy-coded data follows, no more header
            return
        pos += 2 + length


def _jpeg(data: bytes) -> tuple[int, int] | None:
    for marker, payload in jpeg_segments(data):
        if marker == 0xDA:  # a scan before any frame
            return None
        if marker in JPEG_SOF_MARKERS and len(payload) >= 5:
            height, width = struct.unpack(">HH", payload[1:5])
            return width, height
    return None


def _tiff(data: bytes) -> tuple[int, int] | None:
    """The largest size declared by any IFD of the chain (OpenCV may read any page)."""
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        return None
    (offset,) = struct.unpack(order + "I", data[4:8])
    best: tuple[int, int] | None = None
    seen: set[int] = set()
    while offset and offset not in seen and offset + 2 <= len(data):
        seen.add(offset)  # a looping IFD chain is read once
        (count,) = struct.unpack(order + "H", data[offset : offset + 2])
        width = height = None
        for i in range(count):
            entry = offset + 2 + 12 * i
            if entry + 12 > len(data):
                return best
            tag, kind = struct.unpack(order + "HH", data[entry : entry + 4])
            if tag in (256, 257):
                # SHORT (3) or LONG (4), stored left-justified in the value field.
                value = struct.unpack(order + ("H" if kind == 3 else "I"), data[entry + 8 : entry + (10 if kind == 3 else 12)])[0]
                width, height = (value, height) if tag == 256 else (width, value)
        if width is not None and height is not None and (best is None or width * height > best[0] * best[1]):
            best = (width, height)
        end = offset + 2 + 12 * count
        offset = struct.unpack(order + "I", data[end : end + 4])[0] if end + 4 <= len(data) else 0
    return best


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk, body = data[12:16], data[20:]
    if chunk == b"VP8X" and len(body) >= 10:  # extended: 24-bit canvas size minus one
        return 1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little")
    if chunk == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:  # lossless: 14-bit sizes minus one
        bits = int.from_bytes(body[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":  # lossy key frame
        width, height = struct.unpack("<HH", body[6:10])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _pnm(data: bytes) -> tuple[int, int] | None:
    if data[1:2] == b"7":  # PAM: WIDTH/HEIGHT lines
        head = data[:4096]
        w, h = re.search(rb"\nWIDTH\s+(\d+)", head), re.search(rb"\nHEIGHT\s+(\d+)", head)
        return (int(w.group(1)), int(h.group(1))) if w and h else None
    match = _PNM_TOKENS.match(data, 2)
    return (int(match.group(1)), int(match.group(2))) if match else None


_READERS = {"PNG": _png, "JPEG": _jpeg, "BMP": _bmp, "TIFF": _tiff, "WebP": _webp, "PNM": _pnm}
