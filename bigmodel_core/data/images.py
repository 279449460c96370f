"""Images to arrays: one decode (Pillow) to the size and channels params declare, with every refusal named.

`decode` turns a file's bytes into a uint8 array of shape (height, width, channels), the form the image
tables store, so training never decodes. What it cannot or may not turn into that array raises ImageProblem
with a rule name (what the quarantine and the report call it) and a reason a person can act on:

- empty_file, not_an_image, truncated_image: bytes Pillow cannot read as a whole image;
- decompression_bomb: a header whose pixel count is past `max_pixels`, refused before any pixel is decoded;
- wrong_mode, wrong_size: with `mismatch: quarantine`, an image whose channels or size differ from the
  declared ones (with `mismatch: convert`, the default, they are converted instead).

Conversions, when allowed: the EXIF orientation is applied (photos from cameras); palette, CMYK, alpha and
16-bit images become 8-bit luminance (channels 1, ITU-R 601-2 weights) or RGB (channels 3), a 16-bit
value v becoming round(v / 257); alpha is dropped. The size is reached by `fit`: `resize` stretches to it,
`pad` scales to fit inside it keeping the aspect ratio and centres the result on black.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

#: how a single image's pixel count may grow before it is refused, by default (Pillow's own warning level)
DEFAULT_MAX_PIXELS = 89_478_485


class ImageProblem(ValueError):
    """An image that cannot become a row: `rule` names the check, `reason` says what was found."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule, self.reason = rule, reason


@dataclass(frozen=True)
class ImageSpec:
    """What every stored image is: `height` x `width` pixels, `channels` 1 (grayscale) or 3 (RGB)."""

    height: int
    width: int
    channels: Literal[1, 3] = 1
    fit: Literal["resize", "pad"] = "resize"
    mismatch: Literal["convert", "quarantine"] = "convert"
    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


@dataclass(frozen=True)
class Decoded:
    """A decoded image and what it was before: its format, mode and size as the file had them."""

    pixels: np.ndarray  # uint8, spec.shape
    format: str
    mode: str
    width: int
    height: int
    converted: tuple[str, ...]  # what was changed to reach the spec, in words ("CMYK to RGB", "resized 40x30")


def decode(data: bytes, spec: ImageSpec) -> Decoded:
    """The image in `data` as spec.shape uint8 pixels; ImageProblem when it cannot or may not be."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise ImageProblem("empty_file", "the file is empty (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img: Image.Image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageProblem("decompression_bomb", f"refused before decoding: {e}") from None
        except UnidentifiedImageError:
            raise ImageProblem(
                "not_an_image", f"not an image Pillow can read ({len(data):,} bytes starting {data[:8]!r})"
            ) from None
    width, height, fmt, mode = img.width, img.height, img.format or "unknown", img.mode
    if width * height > spec.max_pixels:
        raise ImageProblem(
            "decompression_bomb",
            f"{width}x{height} is {width * height:,} pixels, past the limit of {spec.max_pixels:,} "
            "(refused before decoding)",
        )
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageProblem("truncated_image", f"{fmt} image {width}x{height} cannot be decoded whole: {e}") from None
    converted: list[str] = []
    oriented = ImageOps.exif_transpose(img)
    if oriented is not None and oriented.size != img.size:
        converted.append("rotated by its EXIF orientation")
    img = oriented if oriented is not None else img
    target = "L" if spec.channels == 1 else "RGB"
    if img.mode != target:
        if spec.mismatch == "quarantine":
            raise ImageProblem("wrong_mode", f"mode {img.mode} ({fmt}), params declare {spec.channels} channel(s)")
        img = _to_mode(img, target)
        converted.append(f"{mode} to {target}")
    if img.size != (spec.width, spec.height):
        if spec.mismatch == "quarantine":
            raise ImageProblem(
                "wrong_size", f"{img.width}x{img.height}, params declare {spec.width}x{spec.height} (width x height)"
            )
        converted.append(f"{spec.fit}d from {img.width}x{img.height}")
        img = _fit(img, spec)
    pixels = np.asarray(img, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return Decoded(np.ascontiguousarray(pixels), fmt, mode, width, height, tuple(converted))


def _to_mode(img, target: str):
    """`img` as 8-bit L or RGB: 16- and 32-bit integer images scaled to 8 bits, float ones clipped to 0..255,
    palette and alpha images through RGBA (alpha dropped), CMYK by Pillow's conversion."""
    from PIL import Image

    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        values = np.asarray(img)
        if img.mode == "F":
            values = np.clip(np.rint(values), 0, 255)
        elif img.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = np.rint(np.clip(values, 0, 65535) / 257.0)
        img = Image.fromarray(values.astype(np.uint8), mode="L")
    elif img.mode in ("P", "PA", "LA", "La", "RGBa", "1"):
        img = img.convert("RGBA" if img.mode != "1" else "L")
    return img.convert(target)


def _fit(img, spec: ImageSpec):
    from PIL import Image

    size = (spec.width, spec.height)
    if spec.fit == "resize":
        return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    scale = min(spec.width / img.width, spec.height / img.height)
    inner = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    canvas = Image.new(img.mode, size, 0)
    canvas.paste(
        img.resize(inner, Image.Resampling.LANCZOS, reducing_gap=3.0),
        ((spec.width - inner[0]) // 2, (spec.height - inner[1]) // 2),
    )
    return canvas
