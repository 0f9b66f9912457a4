"""lab.insights: evaluation, Grad-CAM on a snapshot, and uploads of any size, mode and (bad) file."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from lab import insights as ins
from lab.data import CLASSES
from lab.model import Net


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return Net(width=0.125).eval()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ evaluation


def test_evaluation_confusion_per_class_and_misclassified():
    probs = np.full((4, 10), 0.01)
    probs[0, 0] = probs[1, 1] = probs[2, 3] = probs[3, 2] = 0.9
    probs[3, 2] = 0.5
    ev = ins.Evaluation(np.array([0, 1, 2, 2]), probs)
    assert ev.accuracy == 0.75
    m = ev.confusion()
    assert m[2, 3] == 1 and m[2, 2] == 1 and m.sum() == 4
    assert ev.per_class_accuracy()["bird"] == 0.5
    assert list(ev.misclassified()) == [2]  # index 3 is right (argmax 2)


def test_classify_is_sorted_probabilities(net, images):
    probs = ins.classify(net, images[0])
    assert list(probs) == sorted(probs, key=probs.get, reverse=True)
    assert set(probs) == set(CLASSES) and sum(probs.values()) == pytest.approx(1, abs=1e-5)
    assert len(ins.classify(net, images[0], top_k=3)) == 3


# -------------------------------------------------------------------------------------------------- Grad-CAM


@pytest.mark.parametrize("layer", ins.CAM_LAYERS)
def test_gradcam_gives_one_normalised_32x32_map_per_image(net, images, layer):
    cams = ins.gradcam(net, images, [0, 1, 2], layer)
    assert cams.shape == (3, 32, 32) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() <= 1 and np.isfinite(cams).all()


def test_gradcam_runs_on_a_snapshot_and_leaves_the_model_alone(images):
    model = Net(width=0.125).train()  # as a training thread would hold it
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ins.gradcam(model, images, [1, 2, 3], "layer2")
    assert model.training  # not switched to eval
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():  # BN running stats untouched: no forward pass in train mode
        assert torch.equal(v, before[k]), k


def test_gradcam_depends_on_the_target_class(net, images):
    a = ins.gradcam(net, images[:1], [0], "layer1")
    b = ins.gradcam(net, images[:1], [7], "layer1")
    assert not np.allclose(a, b)


def test_gradcam_rejects_bad_input(net, images):
    with pytest.raises(ValueError, match="unknown Grad-CAM layer"):
        ins.gradcam(net, images, [0, 0, 0], "fc")
    with pytest.raises(ValueError, match="one target class per image"):
        ins.gradcam(net, images, [0], "layer3")
    with pytest.raises(ValueError, match="uint8"):
        ins.gradcam(net, images.astype(np.float32), [0, 0, 0])
    assert ins.gradcam(net, images[:0], [], "layer3").shape == (0, 32, 32)


def test_snapshot_is_an_independent_eval_copy():
    model = Net(width=0.125).train()
    snap = ins.snapshot(model)
    assert not snap.training and model.training
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(model.parameters(), snap.parameters()))


def test_cam_overlay_blends_image_and_heat_map(images):
    cam = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    out = ins.cam_overlay(images[0], cam, opacity=0.5, size=128)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    plain = ins.cam_overlay(images[0], cam, opacity=0.0, size=64)
    assert np.abs(plain.astype(int) - ins.upscale(images[0], 64).astype(int)).max() <= 1
    with pytest.raises(ValueError, match="opacity"):
        ins.cam_overlay(images[0], cam, opacity=1.5)


# --------------------------------------------------------------------------------------------------- uploads

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
    check(ins.prepare_upload(im))


@pytest.mark.parametrize("mode,fmt", [("RGB", "PNG"), ("RGBA", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"),
                                      ("1", "PNG"), ("I;16", "PNG"), ("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"),
                                      ("F", "TIFF"), ("I", "TIFF"), ("CMYK", "TIFF"), ("RGB", "BMP"), ("P", "GIF"),
                                      ("RGBA", "WEBP")])
def test_files_of_every_common_format_and_mode(mode, fmt):
    im = Image.fromarray(RGB).convert(mode)
    check(ins.prepare_upload(encode(im, fmt)))


def test_a_path_works_too(tmp_path):
    p = tmp_path / "x.png"
    Image.fromarray(RGB).save(p)
    check(ins.prepare_upload(p))
    check(ins.prepare_upload(str(p)))


def test_transparency_is_composited_on_white():
    im = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent red
    assert (ins.prepare_upload(im) == 255).all()
    p = Image.new("P", (40, 40), 3)
    p.putpalette([0, 0, 0, 10, 10, 10, 20, 20, 20, 200, 0, 0])
    p.info["transparency"] = 3  # palette entry 3 (red) is transparent
    assert (ins.prepare_upload(encode(p, "PNG")) == 255).all()


def test_sixteen_bit_and_float_greyscale_are_scaled_not_clipped():
    a = np.full((40, 40), 32768, dtype=np.uint16)  # mid grey in 16 bits
    x = ins.prepare_upload(encode(Image.fromarray(a), "PNG"))
    assert 120 <= x.mean() <= 135
    f = Image.fromarray(np.full((40, 40), 0.5, dtype=np.float32), "F")
    assert 120 <= ins.prepare_upload(f).mean() <= 135


def test_centre_square_is_kept():
    a = np.zeros((100, 300, 3), dtype=np.uint8)
    a[:, 100:200] = 255  # the white centre square of a wide image
    assert ins.prepare_upload(Image.fromarray(a)).mean() > 250


def test_exif_orientation_is_applied():
    a = np.zeros((40, 80, 3), dtype=np.uint8)
    a[:, :40] = 255  # left half white
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display: the white half comes to the top
    x = ins.to_rgb(Image.open(io.BytesIO(encode(im, "JPEG", exif=exif))))
    assert x.size == (40, 80)
    top, bottom = np.asarray(x)[:40].mean(), np.asarray(x)[40:].mean()
    assert top > 200 and bottom < 50


def test_large_and_animated_images():
    big = Image.fromarray(np.random.default_rng(2).integers(0, 256, (3000, 4000, 3), dtype=np.uint8))
    check(ins.prepare_upload(encode(big, "JPEG", quality=80)))
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    x = ins.prepare_upload(buf.getvalue())
    assert x[..., 0].mean() > 200 and x[..., 2].mean() < 50  # the first frame: red


def test_decompression_bombs_are_refused(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ins.ImageError, match="too large"):
        ins.prepare_upload(encode(Image.new("RGB", (100, 100)), "PNG"))


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
    with pytest.raises(ins.ImageError, match=message):
        ins.prepare_upload(raw)
    p = tmp_path / "upload.png"
    p.write_bytes(raw)
    with pytest.raises(ins.ImageError, match=message) as e:
        ins.prepare_upload(p)
    if raw:
        assert "upload.png" in str(e.value)  # the message names the file


def test_a_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ins.ImageError, match="no such file"):
        ins.prepare_upload(tmp_path / "gone.png")
