"""Safe to expose: a stranger's request cannot make the app read a file of the server's.

Image inputs take only files Gradio received as uploads (its cache folder) or the bundled examples; any other
path is refused with one message, the same whether or not the file exists, so the answer says nothing about the
server's disk. Driven over raw HTTP against `python app.py`: the named `classify` endpoint
(`/gradio_api/call/classify`) and every private handler bound to the Classify tab's image (queue join by
fn_index: the button, the image's change, the controls' changes), with and without Gradio's `meta` marker.
Uploads are bounded in bytes (Gradio's max_file_size) and in decoded pixels.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import uuid
import zlib
from pathlib import Path

import pytest
from PIL import Image

from conftest import start_app, stop_app
from lab.server.uploads import ImageError, prepare_upload
from lab.data import CLASSES
from lab.ui import classify

NOT_UPLOADED = "was not uploaded to this app"  # the words of the one refusal message
META = {"_type": "gradio.FileData"}


def png_bytes(size=(64, 48), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def flat_png(width: int, height: int) -> bytes:
    """A valid, all-black 8-bit greyscale PNG of any size, built by hand: rows of zeros deflate to almost
    nothing, so a 64-megapixel image is a ~60 KB file (a decompression bomb in miniature)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = zlib.compress(bytes(width + 1) * height, 9)  # each row: filter byte 0, then `width` zero pixels
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


# ---------------------------------------------------------------------------------------- the check itself


def test_paths_outside_the_upload_folder_and_examples_are_refused_alike(tmp_path, uploads):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes())
    (uploads / "sub").mkdir()
    (uploads / "sub" / "link.png").symlink_to(secret)  # a link inside the cache still points outside it
    probes = [secret, "/etc/passwd", "/no/such/file.png", uploads / ".." / "secret.png", uploads / "sub" / "link.png",
              classify.EXAMPLES / ".." / ".." / "app.py", "", "bad\0path", 42]
    messages = set()
    for probe in probes:
        arg = str(probe) if isinstance(probe, Path) else probe
        with pytest.raises(ImageError, match=NOT_UPLOADED) as e:
            classify.checked_image(arg)
        messages.add(str(e.value))
    assert len(messages) == 1, messages  # one message: it does not tell which files exist
    assert "\n" not in messages.pop()


def test_uploads_examples_bytes_and_images_pass(uploads):
    upload = uploads / "0123abcd" / "photo.png"
    upload.parent.mkdir()
    upload.write_bytes(png_bytes())
    for ok in (str(upload), upload, classify.examples()[0], png_bytes(), Image.new("RGB", (8, 8))):
        assert classify.checked_image(ok) is ok
    assert prepare_upload(classify.checked_image(str(upload))).shape == (32, 32, 3)


def test_every_classify_handler_refuses_a_server_path(ctx, tmp_path, uploads):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes())
    seen, label, cam, msg = classify.view(ctx, str(secret), None, 3, "layer3", 0.5, classify.TOP)
    assert seen is None and label is None and cam is None and NOT_UPLOADED in msg
    with pytest.raises(ValueError, match=NOT_UPLOADED):
        classify.predict(ctx, str(secret))


def test_decoded_pixels_are_bounded(tmp_path):
    bomb = flat_png(8000, 8000)  # 64 megapixels in a small file: refused before it is decoded
    assert len(bomb) < 200_000
    for source in (bomb, tmp_path / "bomb.png"):
        if isinstance(source, Path):
            source.write_bytes(bomb)
        with pytest.raises(ImageError, match="too large") as e:
            prepare_upload(source)
        assert "8000×8000" in str(e.value) and "\n" not in str(e.value)
    assert prepare_upload(flat_png(4000, 3000)).shape == (32, 32, 3)  # a 12-megapixel photo is fine


def test_file_size_is_bounded(tmp_path):
    big = png_bytes() + bytes(20 * 2**20)  # a valid PNG padded past the 20 MiB limit
    p = tmp_path / "big.png"
    p.write_bytes(big)
    for source in (big, p):
        with pytest.raises(ImageError, match="too large") as e:
            prepare_upload(source)
        assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------ over HTTP


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_checkpoint):
    """`python app.py` with its own Gradio cache folder and no CIFAR-10 (Classify needs only a checkpoint):
    (base URL, cache folder, a secret image on the server's disk outside the cache)."""
    import shutil

    root = tmp_path_factory.mktemp("security-app")
    runs = root / "runs"
    shutil.copytree(tiny_checkpoint, runs / tiny_checkpoint.name)
    cache = root / "gradio-cache"
    cache.mkdir()
    no_data = root / "no-data"
    no_data.mkdir()
    secret = root / "secret.png"
    secret.write_bytes(png_bytes())
    proc, _, url = start_app(runs, root, no_data, env={"GRADIO_TEMP_DIR": str(cache)})
    yield url.rstrip("/"), cache, secret
    stop_app(proc)


@pytest.fixture(scope="module")
def http(app):
    import httpx

    with httpx.Client(base_url=app[0], timeout=120) as c:
        yield c


def call_classify(http, payload) -> tuple[str, object]:
    """POST /gradio_api/call/classify, then read its event stream: ('complete', data) or ('error', message)."""
    event_id = http.post("/gradio_api/call/classify", json={"data": [payload]}).raise_for_status().json()["event_id"]
    event = None
    with http.stream("GET", f"/gradio_api/call/classify/{event_id}") as r:
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                data = json.loads(line[5:])
                return event, (data.get("error") if event == "error" and isinstance(data, dict) else data)
    raise AssertionError("the event stream ended without a result")


def join_queue(http, fn_index: int, data: list) -> dict:
    """What the browser does: join the queue for one dependency by fn_index, read the session's stream until
    the process_completed message, and return it."""
    session = uuid.uuid4().hex
    http.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                              "event_data": None, "trigger_id": None}).raise_for_status()
    with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return msg
    raise AssertionError("the queue stream ended without process_completed")


def upload(http, raw: bytes, name: str = "photo.png"):
    return http.post("/gradio_api/upload", files={"files": (name, raw, "image/png")})


def probes(app) -> dict[str, str]:
    """Paths a stranger might send: an image on the server's disk (it would be classified and shown back),
    files that exist and files that do not, and ways out of the cache folder."""
    _, cache, secret = app
    link = cache / "link-out.png"
    if not link.is_symlink():
        link.symlink_to(secret)
    return {"server image": str(secret), "existing file": "/etc/passwd", "missing file": "/no/such/file.png",
            "dot-dot out of the cache": f"{cache}/../{secret.name}", "link out of the cache": str(link),
            "repository file": str(classify.EXAMPLES.parent.parent / "app.py")}


@pytest.mark.slow
def test_the_classify_endpoint_refuses_paths_it_was_not_sent(app, http):
    answers = {}
    for what, path in probes(app).items():
        for with_meta in (False, True):
            payload = {"path": path, "meta": META} if with_meta else {"path": path}
            event, data = call_classify(http, payload)
            assert event == "error", f"{what} (meta {with_meta}): {data}"
            answers.setdefault(with_meta, set()).add(str(data))
    # Without meta Gradio passes the path through untouched and the app refuses it with its own message;
    # with meta Gradio refuses it itself, before the app runs, and the stream shows no message at all.
    assert len(answers[False]) == 1 and NOT_UPLOADED in answers[False].pop()
    assert answers[True] == {"None"}


def component_ids(config: dict) -> dict[str, int]:
    return {c["props"]["elem_id"]: c["id"] for c in config["components"] if c.get("props", {}).get("elem_id")}


def inputs_for(config: dict, dep: dict, image_id: int, image) -> list:
    """A dependency's inputs as the browser sends them: each component's current value, the image replaced."""
    values = {c["id"]: c.get("props", {}).get("value") for c in config["components"]}
    return [image if c == image_id else values.get(c) for c in dep["inputs"]]


@pytest.mark.slow
def test_every_private_handler_on_the_image_refuses_them(app, http):
    config = http.get("/config").raise_for_status().json()
    image_id = component_ids(config)["classify-input"]
    props = {c["id"]: c.get("props", {}) for c in config["components"]}
    names = {i: p.get("elem_id") or p.get("label") for i, p in props.items()}
    deps = [(i, d) for i, d in enumerate(config["dependencies"]) if image_id in d["inputs"]]
    private = [(i, d) for i, d in deps if d["api_visibility"] == "private"]
    triggers = {(names[t], kind) for _, d in private for t, kind in d["targets"]}
    # the Classify button, the image itself, and the controls that redraw it (top-k, layer, opacity, CAM for,
    # checkpoint) are all bound to the image
    assert {("classify-button", "click"), ("classify-input", "change")} <= triggers and len(triggers) >= 7
    for index, dep in deps:
        for what, path in probes(app).items():
            msg = join_queue(http, index, inputs_for(config, dep, image_id, {"path": path}))
            where = f"{dep['api_name']} ({what})"
            if dep["api_visibility"] == "private":  # the tab's view: (32×32 seen, label, Grad-CAM, message)
                assert msg["success"], where
                seen, label, cam, message = msg["output"]["data"]
                assert seen is None and cam is None and not label, f"{where}: the server's image was shown"
                assert NOT_UPLOADED in message, f"{where}: {message}"
            else:  # the classify endpoint raises gr.Error
                assert not msg["success"] and NOT_UPLOADED in msg["output"]["error"], where


@pytest.mark.slow
def test_real_uploads_examples_and_pasted_images_still_work(app, http):
    raw = png_bytes()
    r = upload(http, raw)
    assert r.status_code == 200, r.text
    path = r.json()[0]
    assert Path(path).resolve().is_relative_to(app[1].resolve())  # Gradio put it in its cache
    for payload in ({"path": path, "meta": META}, {"path": path}, {"path": classify.examples()[0]},
                    {"path": None, "url": "data:image/png;base64," + base64.b64encode(raw).decode(), "meta": META}):
        event, data = call_classify(http, payload)
        assert event == "complete", f"{payload}: {data}"
        assert data[0]["label"] in CLASSES
    config = http.get("/config").json()
    ids = component_ids(config)
    index, dep = next((i, d) for i, d in enumerate(config["dependencies"])
                      if [ids["classify-button"], "click"] in d["targets"])
    data = inputs_for(config, dep, ids["classify-input"], {"path": path, "meta": META})
    seen, label, cam, message = join_queue(http, index, data)["output"]["data"]
    assert seen is not None and cam is not None and message.startswith("Prediction"), message


@pytest.mark.slow
def test_uploads_are_bounded_in_bytes_and_pixels(app, http):
    too_big = upload(http, png_bytes() + bytes(25 * 2**20))  # past the 20 MiB limit: Gradio stops reading it
    assert too_big.status_code == 413, too_big.text
    r = upload(http, flat_png(8000, 8000), "bomb.png")
    assert r.status_code == 200  # a small file: Gradio accepts it, the app refuses to decode it
    event, message = call_classify(http, {"path": r.json()[0], "meta": META})
    assert event == "error" and "too large" in message and "\n" not in message, message
    assert os.path.getsize(r.json()[0]) < 200_000
    # the cap holds for an image pasted as a data: URL in the call's JSON too (issue 21: 60 MB went through)
    pasted = "data:image/png;base64," + base64.b64encode(png_bytes() + bytes(21 * 2**20)).decode()
    event, message = call_classify(http, {"path": None, "url": pasted, "meta": META})
    assert event == "error" and "over this server's 20 MB limit" in message and "\n" not in message, message
