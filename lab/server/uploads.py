"""Upload safety: a stranger's file → a bounded (32, 32, 3) uint8 array, or ImageError in words they can act on.

A path is taken only from where the server put files it received (check_upload); a file is bounded in bytes
(UPLOAD_MAX_BYTES, also Gradio's max_file_size) and in decoded pixels, judged from its header before any pixel is
decoded (open_image); any PIL mode becomes RGB (to_rgb) and the centre square is resized to what the network sees
(to_network_input). lab.insights then works on the array.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lab.server.policy import UPLOAD_MAX_BYTES


class ImageError(ValueError):
    """An upload that cannot be used as an image; the message says why, in words a user can act on."""


# An upload's size is bounded twice: in bytes (the file as sent; the app also passes this to Gradio's
# max_file_size, so a bigger upload is cut off while it arrives) and in decoded pixels, judged from the header
# before any pixel is decoded: a 60 KB PNG of zeros can claim 64 megapixels (~200 MB as RGB). 40 megapixels
# take most camera photos (a 48 MP phone saves 12 MP unless told otherwise); PIL's own MAX_IMAGE_PIXELS check
# (89 MP) stays on as well.
MAX_UPLOAD_BYTES = UPLOAD_MAX_BYTES  # lab.server.policy: the one value, also Gradio's max_file_size
MAX_UPLOAD_PIXELS = 40_000_000

NOT_UPLOADED = ("this image was not uploaded to this app; upload an image file (PNG, JPEG, GIF, BMP, TIFF, WebP) or "
                "pick one of the examples")


def check_upload(source: Any, roots: Sequence[str | os.PathLike]) -> Any:
    """`source` unchanged when it is bytes, a PIL image or the path of a file inside one of `roots` (after '..'
    and symbolic links are resolved); otherwise ImageError(NOT_UPLOADED).

    A web client sends a path, and the server would open whatever it names: any file on its disk. So a path
    must lie where the server put files it received (the caller's roots); anything else gets the same message
    whether or not it exists, so the answer says nothing about the server's files."""
    if isinstance(source, (bytes, bytearray, Image.Image)):
        return source
    if isinstance(source, (str, os.PathLike)):
        try:
            real = Path(os.path.realpath(source))
            if str(source) and any(real.is_relative_to(os.path.realpath(r)) for r in roots):
                return source
        except (ValueError, OSError):  # an embedded NUL byte, a symlink loop
            pass
    raise ImageError(NOT_UPLOADED)


_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def open_image(source: str | os.PathLike | bytes | Image.Image) -> Image.Image:
    """Open and fully decode an upload (a path, raw bytes or a PIL image); ImageError with a clear message for
    an empty, non-image or truncated file, or one past MAX_UPLOAD_BYTES or MAX_UPLOAD_PIXELS. Animated images
    give their first frame. A path is opened as given: check_upload first says whether a client may name it."""
    if isinstance(source, Image.Image):
        return source
    name = "the upload"
    try:
        if isinstance(source, (bytes, bytearray)):
            if not source:
                raise ImageError("the uploaded file is empty (0 bytes); pick an image file such as a PNG or JPEG")
            size = len(source)
            fp: Any = io.BytesIO(source)
        else:
            path = Path(source)
            name = path.name
            if not path.is_file():
                raise ImageError(f"{name}: no such file")
            size = path.stat().st_size
            if size == 0:
                raise ImageError(f"{name} is empty (0 bytes); pick an image file such as a PNG or JPEG")
            fp = path
        if size > MAX_UPLOAD_BYTES:
            raise ImageError(f"{name} is too large ({size / 2**20:.1f} MiB; this app takes images up to "
                             f"{MAX_UPLOAD_BYTES // 2**20} MiB); upload a smaller file")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(fp)  # reads the header only: the pixels are decoded by load() below
            w, h = im.size
            if w * h > MAX_UPLOAD_PIXELS:
                im.close()
                raise ImageError(f"{name} is too large to decode safely ({w}×{h} pixels, more than this app's "
                                 f"{MAX_UPLOAD_PIXELS / 1e6:g} megapixels); upload a smaller image")
            if im.format == "JPEG":
                im.draft("RGB", (256, 256))  # decode a big JPEG at a reduced scale: we only need 32×32
            im.seek(0)
            im.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image this app can read; upload a PNG, JPEG, GIF, BMP, TIFF or WebP "
                         "file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name} is too large to decode safely ({e}); upload a smaller image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{name} is truncated or damaged and cannot be decoded ({e}); upload the whole file "
                         "again or another image") from None
    return im


def to_rgb(im: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any PIL mode → RGB. Orientation from EXIF is applied; transparency is composited over `background`
    (white, as a browser shows it); 16-bit and float greyscale are scaled into 0–255 rather than clipped."""
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block is no reason to refuse the pixels
        pass
    if im.mode in _WIDE_MODES:
        a = np.asarray(im, dtype=np.float64)
        top = float(a.max()) if a.size else 0.0
        if im.mode == "F" and top <= 1.0:
            a = a * 255.0
        elif top > 255:
            a = a * (255.0 / (65535.0 if top <= 65535 else top))
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    if im.mode in _ALPHA_MODES or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        if im.mode == "La":  # premultiplied: PIL converts La to nothing, so undo the premultiplication here
            a = np.asarray(im, dtype=np.float64)
            alpha = a[..., 1:2]
            lum = np.divide(a[..., :1] * 255.0, alpha, out=np.zeros_like(alpha), where=alpha > 0)
            a = np.concatenate([np.clip(lum, 0, 255), alpha], axis=2).round().astype(np.uint8)
            im = Image.frombytes("LA", im.size, a.tobytes())
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, background)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")


def to_network_input(im: Image.Image, size: int = 32) -> np.ndarray:
    """What the network sees: the largest centred square of an RGB image, resized (antialiased) to size×size,
    as uint8 HWC."""
    if im.mode != "RGB":
        im = to_rgb(im)
    w, h = im.size
    if w == 0 or h == 0:
        raise ImageError("the image has no pixels")
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = im.crop((left, top, left + side, top + side))
    return np.array(square.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)  # writable


def prepare_upload(source: str | os.PathLike | bytes | Image.Image) -> np.ndarray:
    """An upload of any size, mode and common format → (32, 32, 3) uint8 RGB; ImageError if it is unusable."""
    return read_upload(source)[0]


def read_upload(source: str | os.PathLike | bytes | Image.Image) -> tuple[np.ndarray, tuple[int, int]]:
    """prepare_upload, and the upload's (width, height) once upright (EXIF): what resize_note describes."""
    im = to_rgb(open_image(source))
    return to_network_input(im), im.size


# Below this side the centre square is blown up with no detail to show: 8×8 is a quarter of CIFAR's side.
TINY_SIDE = 8


def resize_note(width: int, height: int, size: int = 32) -> tuple[str, str | None]:
    """What happened to an upload of width × height on its way to size × size, in words that are true for it
    (cropped or not, shrunk, upscaled or kept), and a caution (else None) when the network sees less detail
    than a CIFAR-10 image holds, so its answer says little."""
    side = min(width, height)
    steps = [f"cropped to its centre {side}×{side} square"] if width != height else []
    if side > size:
        steps.append(f"shrunk to {size}×{size}")
    elif side < size:
        steps.append(f"upscaled to {size}×{size}")
    note = (f"The {width}×{height} image was {' and '.join(steps)}." if steps
            else f"The image is {size}×{size} already: the network sees it as it is.")
    if side >= size:
        return note, None
    if side == 1:
        what = "one pixel reaches the network: a flat colour with no shape, so this prediction says nothing"
    elif side < TINY_SIDE:
        what = (f"{side}×{side} pixels reach the network, smoothed over {size}×{size}: no shape survives, so this "
                "prediction says next to nothing")
    else:
        what = (f"{side}×{side} pixels reach the network: less detail than a CIFAR-10 photo holds, so take this "
                "prediction with care")
    return note, f"Only {what}. For a meaningful answer upload an image at least {size}×{size}."
