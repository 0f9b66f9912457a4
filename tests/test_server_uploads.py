"""lab.server.uploads: a stranger's file of any size, mode and (bad) format → a (32, 32, 3) uint8 array, or
ImageError in words they can act on. (Moved from test_insights.py; test_security.py drives the same checks over
HTTP.)"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lab.server import uploads

RGB = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def check(x):
    assert x.shape == (32, 32, 3) and x.dtype == np.uint8


ALL_MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "F", "LA", "PA", "RGBX",
             "RGBa", "La"]


@pytest.mark.parametrize("mode", ALL_MODES)
def test_every_pil_mode_becomes_32x32_rgb(mode):
    base = Image.fromarray(RGB)
    try:
        im = base.convert(mode)
    except ValueError:
        im = Image.new(mode, base.size)
    check(uploads.prepare_upload(im))


@pytest.mark.parametrize("mode,fmt", [("RGB", "PNG"), ("RGBA", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"),
                                      ("1", "PNG"), ("I;16", "PNG"), ("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"),
                                      ("F", "TIFF"), ("I", "TIFF"), ("CMYK", "TIFF"), ("RGB", "BMP"), ("P", "GIF"),
                                      ("RGBA", "WEBP")])
def test_files_of_every_common_format_and_mode(mode, fmt):
    im = Image.fromarray(RGB).convert(mode)
    check(uploads.prepare_upload(encode(im, fmt)))


def test_a_path_works_too(tmp_path):
    p = tmp_path / "x.png"
    Image.fromarray(RGB).save(p)
    check(uploads.prepare_upload(p))
    check(uploads.prepare_upload(str(p)))


def test_transparency_is_composited_on_white():
    im = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent red
    assert (uploads.prepare_upload(im) == 255).all()
    p = Image.new("P", (40, 40), 3)
    p.putpalette([0, 0, 0, 10, 10, 10, 20, 20, 20, 200, 0, 0])
    p.info["transparency"] = 3  # palette entry 3 (red) is transparent
    assert (uploads.prepare_upload(encode(p, "PNG")) == 255).all()


def test_sixteen_bit_and_float_greyscale_are_scaled_not_clipped():
    a = np.full((40, 40), 32768, dtype=np.uint16)  # mid grey in 16 bits
    x = uploads.prepare_upload(encode(Image.fromarray(a), "PNG"))
    assert 120 <= x.mean() <= 135
    f = Image.fromarray(np.full((40, 40), 0.5, dtype=np.float32), "F")
    assert 120 <= uploads.prepare_upload(f).mean() <= 135


def test_centre_square_is_kept():
    a = np.zeros((100, 300, 3), dtype=np.uint8)
    a[:, 100:200] = 255  # the white centre square of a wide image
    assert uploads.prepare_upload(Image.fromarray(a)).mean() > 250


def test_exif_orientation_is_applied():
    a = np.zeros((40, 80, 3), dtype=np.uint8)
    a[:, :40] = 255  # left half white
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display: the white half comes to the top
    x = uploads.to_rgb(Image.open(io.BytesIO(encode(im, "JPEG", exif=exif))))
    assert x.size == (40, 80)
    top, bottom = np.asarray(x)[:40].mean(), np.asarray(x)[40:].mean()
    assert top > 200 and bottom < 50


def test_large_and_animated_images():
    big = Image.fromarray(np.random.default_rng(2).integers(0, 256, (3000, 4000, 3), dtype=np.uint8))
    check(uploads.prepare_upload(encode(big, "JPEG", quality=80)))
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    x = uploads.prepare_upload(buf.getvalue())
    assert x[..., 0].mean() > 200 and x[..., 2].mean() < 50  # the first frame: red


def test_decompression_bombs_are_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(uploads.ImageError, match="too large"):
        uploads.prepare_upload(encode(Image.new("RGB", (100, 100)), "PNG"))


def _png():
    return encode(Image.fromarray(RGB), "PNG")


def _jpeg():
    return encode(Image.fromarray(RGB), "JPEG")


@pytest.mark.parametrize("raw,message", [
    (b"", "empty"),
    (b"this is not an image\n" * 20, "not an image"),
    (b"%PDF-1.4\n" + bytes(range(256)), "not an image"),
    (_png()[: len(_png()) // 2], "truncated or damaged"),
    (_jpeg()[: len(_jpeg()) // 2], "truncated or damaged"),
    (_png()[:40], "truncated or damaged|not an image"),
])
def test_bad_files_give_a_clear_image_error(raw, message, tmp_path):
    with pytest.raises(uploads.ImageError, match=message):
        uploads.prepare_upload(raw)
    p = tmp_path / "upload.png"
    p.write_bytes(raw)
    with pytest.raises(uploads.ImageError, match=message) as e:
        uploads.prepare_upload(p)
    if raw:
        assert "upload.png" in str(e.value)  # the message names the file


@pytest.mark.parametrize("size,words,caution", [
    ((1, 1), "The 1×1 image was upscaled to 32×32.", "one pixel"),
    ((5, 9), "cropped to its centre 5×5 square and upscaled to 32×32", "no shape survives"),
    ((20, 20), "The 20×20 image was upscaled to 32×32.", "with care"),
    ((32, 32), "32×32 already", None),
    ((64, 32), "cropped to its centre 32×32 square.", None),
    ((300, 200), "The 300×200 image was cropped to its centre 200×200 square and shrunk to 32×32.", None),
])
def test_resize_note_says_what_happened_and_cautions_on_tiny_images(size, words, caution):
    note, warn = uploads.resize_note(*size)
    assert words in note
    assert ("shrunk" in note) == (min(size) > 32) and ("upscaled" in note) == (min(size) < 32)
    if caution is None:
        assert warn is None
    else:
        assert caution in warn and "at least 32×32" in warn


def test_read_upload_reports_the_upright_size():
    x, size = uploads.read_upload(encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"))
    check(x)
    assert size == (1, 1) and (x == (200, 30, 30)).all()
    im = Image.fromarray(np.zeros((40, 80, 3), dtype=np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # shown rotated: 40 wide, 80 high
    assert uploads.read_upload(encode(im, "JPEG", exif=exif))[1] == (40, 80)


def test_a_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(uploads.ImageError, match="no such file"):
        uploads.prepare_upload(tmp_path / "gone.png")
