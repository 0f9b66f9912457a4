"""End to end: `python app.py` on localhost, driven through its named API endpoints with gradio_client —
classify an image (and a file that is not one), start a tiny CPU run, read its status, stop it."""

from __future__ import annotations

import time

import pytest

from lab.data import CLASSES
from lab.ui import classify

TINY_RUN = dict(width=0.125, subset=256, test_subset=128, epochs=5, peak_epoch=1, batch_size=16, device="cpu",
                loader="reference")


def poll(client, until, timeout=120.0, every=0.2):
    t0 = time.time()
    while True:
        status = client.predict(api_name="/train_status")
        if until(status):
            return status
        if time.time() - t0 > timeout:
            raise AssertionError(f"status never got there: {status}")
        time.sleep(every)


@pytest.fixture
def client(launch_app, runs_root):
    from gradio_client import Client

    url = launch_app(runs_root)
    return Client(url, verbose=False)


def test_the_app_classifies_trains_reports_and_stops(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name in ("/classify", "/train_start", "/train_status", "/train_stop", "/find_lr"):
        assert name in endpoints, name

    # classify: image in, label confidences out
    out = client.predict(handle_file(classify.examples()[0]), api_name="/classify")
    assert out["label"] in CLASSES and len(out["confidences"]) == len(CLASSES)
    assert sum(c["confidence"] for c in out["confidences"]) == pytest.approx(1, abs=1e-3)

    # a file that is not an image: a clear message, and the server carries on
    bad = tmp_path / "notes.png"
    bad.write_text("not an image at all")
    with pytest.raises(AppError, match="not an image this app can read"):
        client.predict(handle_file(str(bad)), api_name="/classify")
    truncated = tmp_path / "half.png"
    truncated.write_bytes(open(classify.examples()[0], "rb").read()[:300])
    with pytest.raises(AppError, match="truncated or damaged"):
        client.predict(handle_file(str(truncated)), api_name="/classify")
    assert client.predict(handle_file(classify.examples()[1]), api_name="/classify")["label"] in CLASSES

    # nothing has run yet
    assert client.predict(api_name="/train_status")["status"] == "idle"

    # a tiny CPU run, in the background: train_start returns as soon as the job starts (the first start on a
    # server also times a few steps for its estimate, so the reply's own delay is not the measure)
    msg = client.predict(**TINY_RUN, api_name="/train_start")
    assert msg.startswith("Run started at") and "Expected to take" in msg, msg
    assert client.predict(api_name="/train_status")["elapsed"] < 10
    status = poll(client, lambda s: s["status"] != "running" or s["last_step"])
    assert status["kind"] == "train"

    # a second start while it runs: busy, with when the running one started
    if status["busy"]:
        busy = client.predict(**TINY_RUN, api_name="/train_start")
        assert "busy — a training run started at" in busy and "is in progress" in busy

    # stop it
    stopped = client.predict(api_name="/train_stop")
    final = poll(client, lambda s: not s["busy"])
    if stopped.startswith("stopping"):
        assert final["status"] == "stopped", final
    else:  # it had already finished (a very fast machine)
        assert stopped == "nothing is running" and final["status"] == "done"
    assert f"saved to {final['run_dir']}" in final["message"]
    assert client.predict(api_name="/train_stop") == "nothing is running"
