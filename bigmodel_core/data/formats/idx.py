"""IDX files (LeCun's format, MNIST's): a big-endian header, then one array of fixed shape.

The header is two zero bytes, a type code, the number of dimensions, and one uint32 per dimension; the values
follow, big-endian, with nothing after them. Files may be gzip-compressed (found by the gzip magic, not the
name). Every error names the file and the byte where the file stops making sense.
"""

from __future__ import annotations

import gzip
import zlib

import numpy as np

from bigmodel_core.errors import DataError

#: IDX type codes and the numpy type each stores (big-endian)
TYPES: dict[int, np.dtype] = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2")}
TYPES |= {0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def parse_idx(data: bytes, shown: str) -> np.ndarray:
    """The array an IDX file holds (native byte order); DataError naming `shown` and the byte when it is not one."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{shown}: a gzip file that cannot be decompressed whole ({e})") from None
    if len(data) < 4 or data[:2] != b"\0\0":
        raise DataError(f"{shown}: byte 0: not an IDX file (it starts {data[:4]!r}; IDX starts with two zero bytes)")
    code, ndim = data[2], data[3]
    if code not in TYPES:
        known = ", ".join(f"0x{c:02X}" for c in TYPES)
        raise DataError(f"{shown}: byte 2: unknown IDX type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DataError(f"{shown}: byte 3: an IDX file with 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{shown}: byte {len(data)}: the header of {ndim} dimensions needs {header} bytes")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = TYPES[code]
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = len(data) - header
    if have != need:
        dims = " x ".join(f"{d:,}" for d in shape)
        what = "truncated" if have < need else f"{have - need:,} bytes too many"
        raise DataError(
            f"{shown}: byte {header + min(have, need):,}: the header declares {dims} values of {dtype.name} "
            f"({need:,} bytes) but {have:,} follow ({what})"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def images_and_labels(images: np.ndarray, labels: np.ndarray, shown_images: str, shown_labels: str) -> np.ndarray:
    """Check that an IDX image file and its label file belong together; the images as (n, height, width, 1)
    uint8, as image tables store them."""
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{shown_images}: images must be n x height x width uint8 values, found {images.ndim} dimension(s) of "
            f"{images.dtype}"
        )
    if labels.ndim != 1:
        raise DataError(f"{shown_labels}: labels must be one dimension, found {labels.ndim}")
    if len(images) != len(labels):
        raise DataError(
            f"{shown_images} holds {len(images):,} images but {shown_labels} holds {len(labels):,} labels: "
            "they must be the same count, in the same order"
        )
    return images[:, :, :, None]
