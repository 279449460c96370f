"""Images, IDX files and feature vectors to arrays: every bad input refused with its rule, every conversion checked
by value."""

from __future__ import annotations

import gzip
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from bigmodel_core.data.formats.idx import images_and_labels, parse_idx
from bigmodel_core.data.images import Decoded, ImageProblem, ImageSpec, decode
from bigmodel_core.data.vectors import (
    constant_features,
    feature_columns,
    load_array,
    matrix_from_columns,
    matrix_from_lists,
    population_stability,
    row_problems,
)
from bigmodel_core.errors import DataError
from tests.conftest import DATASETS, needs_datasets


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _digit(size: int = 28) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(size, size), dtype=np.uint8)


def _problem(data: bytes, spec: ImageSpec) -> ImageProblem:
    with pytest.raises(ImageProblem) as err:
        decode(data, spec)
    return err.value


GRAY28 = ImageSpec(28, 28, 1)


def test_a_png_of_the_declared_shape_comes_back_pixel_for_pixel():
    pixels = _digit()
    out = decode(_encode(Image.fromarray(pixels), "PNG"), GRAY28)
    assert isinstance(out, Decoded)
    assert out.pixels.shape == (28, 28, 1) and out.pixels.dtype == np.uint8
    assert np.array_equal(out.pixels[:, :, 0], pixels)
    assert (out.format, out.mode, out.width, out.height, out.converted) == ("PNG", "L", 28, 28, ())


@pytest.mark.parametrize(
    ("data", "rule", "words"),
    [
        (b"", "empty_file", "0 bytes"),
        (b"this is a text file, not a picture\n", "not_an_image", "not an image"),
    ],
    ids=["zero-byte", "text-named-png"],
)
def test_bytes_that_are_no_image_are_refused_with_their_rule(data, rule, words):
    problem = _problem(data, GRAY28)
    assert problem.rule == rule and words in problem.reason


def test_a_truncated_png_is_refused_as_truncated():
    whole = _encode(Image.fromarray(_digit(64)), "PNG")
    problem = _problem(whole[: len(whole) // 2], GRAY28)
    assert problem.rule == "truncated_image"
    assert "PNG image 64x64" in problem.reason


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height grayscale pixels, with no pixel data behind it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_from_its_header():
    # 400 million pixels declared in 57 bytes: refused at the header, nothing allocated
    problem = _problem(_png_header_only(20_000, 20_000), GRAY28)
    assert problem.rule == "decompression_bomb" and "before decoding" in problem.reason
    # the limit is the spec's: 40x40 is past a limit of 1,000 pixels
    problem = _problem(_encode(Image.fromarray(_digit(40)), "PNG"), ImageSpec(28, 28, 1, max_pixels=1000))
    assert problem.rule == "decompression_bomb" and "1,600 pixels" in problem.reason and "1,000" in problem.reason


def test_a_16_bit_png_is_scaled_to_8_bits():
    values = np.array([[0, 257, 65535, 257 * 100]] * 28 * 7, dtype=np.uint16).reshape(28, 28)
    data = _encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # Pillow reads it as 16-bit
    out = decode(data, GRAY28)
    assert out.pixels[0, :4, 0].tolist() == [0, 1, 255, 100]
    assert out.converted and "to L" in out.converted[0]


def test_a_cmyk_jpeg_becomes_rgb_and_gray():
    cmyk = Image.new("CMYK", (28, 28), (0, 255, 255, 0))  # pure red in CMYK
    data = _encode(cmyk, "JPEG", quality=95)
    rgb = decode(data, ImageSpec(28, 28, 3))
    assert rgb.mode == "CMYK" and rgb.pixels.shape == (28, 28, 3)
    r, g, b = rgb.pixels[14, 14].tolist()
    assert r > 200 and g < 60 and b < 60
    gray = decode(data, GRAY28)
    assert abs(int(gray.pixels[14, 14, 0]) - round(0.299 * r + 0.587 * g + 0.114 * b)) <= 2


def test_a_palette_gif_takes_its_palette_colours():
    pal = Image.new("P", (28, 28), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0, 0, 0] * 254)
    out = decode(_encode(pal, "GIF"), ImageSpec(28, 28, 3))
    assert out.format == "GIF" and out.mode == "P"
    assert out.pixels[0, 0].tolist() == [10, 200, 30]


def test_wrong_size_and_channels_are_converted_or_quarantined_as_params_say():
    rgb = Image.fromarray(np.full((30, 40, 3), 200, dtype=np.uint8))
    data = _encode(rgb, "PNG")
    out = decode(data, GRAY28)
    assert out.pixels.shape == (28, 28, 1) and (out.width, out.height) == (40, 30)
    assert out.converted == ("RGB to L", "resized from 40x30")
    assert _problem(data, ImageSpec(28, 28, 1, mismatch="quarantine")).rule == "wrong_mode"
    assert _problem(data, ImageSpec(28, 28, 3, mismatch="quarantine")).rule == "wrong_size"
    assert "40x30" in _problem(data, ImageSpec(28, 28, 3, mismatch="quarantine")).reason


def test_pad_keeps_the_aspect_ratio_on_black():
    white = Image.fromarray(np.full((10, 20), 255, dtype=np.uint8))  # 20 wide, 10 high
    out = decode(_encode(white, "PNG"), ImageSpec(20, 20, 1, fit="pad")).pixels[:, :, 0]
    assert (out[5:15] == 255).all()  # the image, centred
    assert (out[:5] == 0).all() and (out[15:] == 0).all()  # black above and below
    stretched = decode(_encode(white, "PNG"), ImageSpec(20, 20, 1, fit="resize")).pixels
    assert (stretched == 255).all()


def test_grayscale_to_rgb_repeats_the_channel():
    pixels = _digit()
    out = decode(_encode(Image.fromarray(pixels), "PNG"), ImageSpec(28, 28, 3)).pixels
    assert all(np.array_equal(out[:, :, c], pixels) for c in range(3))


# --------------------------------------------------------------------------- IDX


def _idx(values: np.ndarray, code: int) -> bytes:
    head = bytes([0, 0, code, values.ndim]) + struct.pack(f">{values.ndim}I", *values.shape)
    return head + values.astype(values.dtype.newbyteorder(">")).tobytes()


def test_idx_round_trip_plain_and_gzip():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for data in (_idx(images, 0x08), gzip.compress(_idx(images, 0x08))):
        assert np.array_equal(parse_idx(data, "x.idx"), images)
    floats = np.array([1.5, -2.25], dtype=np.float32)
    assert parse_idx(_idx(floats, 0x0D), "f.idx").tolist() == [1.5, -2.25]
    shorts = np.array([[-2, 300]], dtype=np.int16)
    assert parse_idx(_idx(shorts, 0x0B), "s.idx").tolist() == [[-2, 300]]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"PK\x03\x04....", "byte 0: not an IDX file"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "byte 2: unknown IDX type code 0x07"),
        (bytes([0, 0, 0x08, 3, 0, 0, 0, 2]), "byte 8: the header of 3 dimensions needs 16 bytes"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 4, 1, 2]), "byte 10: the header declares 4 values of uint8 (4 bytes) but 2"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 1, 1, 2]), "1 bytes too many"),
        (gzip.compress(b"\0\0\x08\x01\0\0\0\x01\x07")[:-6], "gzip file that cannot be decompressed"),
    ],
    ids=["zip", "type", "short-header", "truncated", "too-long", "truncated-gzip"],
)
def test_a_broken_idx_file_is_named_with_the_byte(data, words):
    with pytest.raises(DataError) as err:
        parse_idx(data, "data/train-images-idx3-ubyte.gz")
    assert str(err.value).startswith("data/train-images-idx3-ubyte.gz: ") and words in str(err.value)


def test_images_and_labels_must_pair():
    images, labels = np.zeros((3, 2, 2), np.uint8), np.array([1, 2, 3], np.uint8)
    assert images_and_labels(images, labels, "i", "l").shape == (3, 2, 2, 1)
    with pytest.raises(DataError, match="holds 3 images but l holds 2 labels"):
        images_and_labels(images, labels[:2], "i", "l")
    with pytest.raises(DataError, match="n x height x width uint8"):
        images_and_labels(images.astype(np.float32), labels, "i", "l")


@pytest.mark.datasets
@needs_datasets
def test_the_real_mnist_files_parse_to_their_published_counts():
    root = DATASETS / "mnist"
    train = parse_idx((root / "train-images-idx3-ubyte.gz").read_bytes(), "train-images")
    labels = parse_idx((root / "train-labels-idx1-ubyte.gz").read_bytes(), "train-labels")
    images = images_and_labels(train, labels, "train-images", "train-labels")
    assert images.shape == (60_000, 28, 28, 1)
    assert np.bincount(labels, minlength=10).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert round(float(images.mean()) / 255, 4) == 0.1307
    test = parse_idx((root / "t10k-images-idx3-ubyte.gz").read_bytes(), "t10k-images")
    assert test.shape == (10_000, 28, 28)


# --------------------------------------------------------------------------- vectors


def test_feature_columns_by_list_or_pattern_in_file_order():
    cols = ["label", "pixel0", "pixel1", "pixel10", "pixel2"]
    assert feature_columns(cols, "pixel*", "t.csv") == ["pixel0", "pixel1", "pixel10", "pixel2"]
    assert feature_columns(cols, ["pixel2", "pixel0"], "t.csv") == ["pixel2", "pixel0"]
    assert feature_columns(cols, "*", "t.csv", exclude=("label",))[0] == "pixel0"
    with pytest.raises(DataError, match=r"t.csv: no column matches the feature pattern 'px\*'"):
        feature_columns(cols, "px*", "t.csv")
    with pytest.raises(DataError, match="feature column\\(s\\) pixel9 not found"):
        feature_columns(cols, ["pixel0", "pixel9"], "t.csv")


def test_matrix_from_columns_names_a_column_that_is_not_numeric():
    import pyarrow as pa

    table = pa.table({"a": [1, 2, None], "b": [0.5, 1.5, 2.5], "c": ["1", "x", "3"]})
    x = matrix_from_columns(table, ["a", "b"], "t.parquet")
    assert x.dtype == np.float32 and x[:2].tolist() == [[1.0, 0.5], [2.0, 1.5]] and np.isnan(x[2, 0])
    with pytest.raises(DataError, match=r"feature column 'c' holds string, not numbers \(row 2: 'x'\)"):
        matrix_from_columns(table, ["a", "c"], "t.parquet")


def test_rows_with_nan_wrong_length_or_out_of_bounds_are_named():
    x, wrong = matrix_from_lists([[1, 2, 3], [1, 2], None, [0, 0, 9]], 3)
    assert wrong.tolist() == [False, True, True, False] and x[0].tolist() == [1, 2, 3]
    x = np.array([[0, 1], [np.nan, 0], [0, np.inf], [0, 300], [-1, 0]], dtype=np.float32)
    rules, reasons = row_problems(x, low=0, high=255)
    assert rules.tolist() == ["", "nonfinite", "nonfinite", "out_of_bounds", "out_of_bounds"]
    assert reasons[1] == "feature 0 is nan" and reasons[2] == "feature 1 is inf"
    assert reasons[3] == "feature 1 is 300, outside [0, 255]"
    assert constant_features(np.array([[1, 5, 0], [1, 6, np.nan], [1, 7, 0]])) == [0, 2]


def test_npy_and_npz_load_and_pickles_are_refused():
    buf = io.BytesIO()
    np.save(buf, np.arange(6).reshape(2, 3))
    assert load_array(buf.getvalue(), "x.npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    buf = io.BytesIO()
    np.savez(buf, x=np.ones((2, 2)), y=np.zeros(2))
    assert load_array(buf.getvalue(), "d.npz", key="x").shape == (2, 2)
    with pytest.raises(DataError, match=r"an \.npz of 2 arrays"):
        load_array(buf.getvalue(), "d.npz")
    with pytest.raises(DataError, match="no array 'z'"):
        load_array(buf.getvalue(), "d.npz", key="z")
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"x\.npy: not a numeric \.npy/\.npz array"):
        load_array(buf.getvalue(), "x.npy")
    with pytest.raises(DataError, match="2-D numeric array, found shape \\(3,\\)"):
        buf = io.BytesIO()
        np.save(buf, np.arange(3))
        load_array(buf.getvalue(), "v.npy")


def test_population_stability_is_zero_on_the_same_data_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(5000, 2))
    same = population_stability(base, base)
    assert np.allclose(same, 0.0)
    moved = population_stability(base, base + np.array([0.0, 1.0]))
    assert moved[0] < 1e-9 and moved[1] > 0.25
    # by hand: two bins at the median, shares 0.5/0.5 against 0.9/0.1
    e = np.array([[0.0], [0.0], [1.0], [1.0]] * 25)
    a = np.array([[0.0]] * 90 + [[1.0]] * 10)
    expected = (0.9 - 0.5) * np.log(0.9 / 0.5) + (0.1 - 0.5) * np.log(0.1 / 0.5)
    assert population_stability(e, a, bins=2)[0] == pytest.approx(expected)
