"""End to end: `python app.py` on localhost, driven through its named API endpoints with gradio_client —
classify an image (and a file that is not one), start a tiny CPU run, read its status, stop it."""

from __future__ import annotations

import time

import pytest

from lab.data import CLASSES
from lab.ui import classify

pytestmark = pytest.mark.slow  # python app.py over HTTP, and signals to it

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


def _raw_call(url: str, api_name: str, data: list) -> tuple[str, str]:
    """A stranger's raw HTTP call (no gradio_client): POST the values, read the event stream; (event, data)."""
    import json
    import urllib.request

    req = urllib.request.Request(f"{url}gradio_api/call/{api_name}", data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        event_id = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=120) as r:
        stream = r.read().decode()
    events = [line.split(":", 1)[1].strip() for line in stream.splitlines() if line.startswith("event:")]
    datas = [line.split(":", 1)[1].strip() for line in stream.splitlines() if line.startswith("data:")]
    return events[-1], datas[-1]


def test_a_shared_server_checks_every_api_argument_and_lets_only_the_starter_stop(launch_app, runs_root, tmp_path):
    """LAB_PUBLIC=1: wrong-typed and missing arguments are one line naming the parameter (never {"error": null}),
    a job over a cap is refused, an upload over the size cap is refused, and Stop works only from the client
    (browser session) that started the job; the other sees when it should end."""
    import httpx
    from gradio_client import Client

    from lab.server.policy import SHARED_CAPS, UPLOAD_MAX_BYTES

    url = launch_app(runs_root, env={"LAB_PUBLIC": "1"})
    alice, bob = Client(url, verbose=False), Client(url, verbose=False)

    # wrong types: an answer that names the parameter, and nothing starts
    for kwargs, words in ((dict(width="wide"), "width must be a number, got 'wide' (`width`)"),
                          (dict(seed=-1), "(`seed`)"), (dict(cycle_momentum="yes"), "(`cycle_momentum`)"),
                          (dict(device=["cpu"]), "(`device`)"), (dict(max_lr=None), "max LR is empty")):
        msg = alice.predict(**{**TINY_RUN, **kwargs}, api_name="/train_start")
        assert msg.startswith("⚠ ") and words in msg, msg
    msg = alice.predict(iters=50, start_lr=1.0, end_lr=0.1, api_name="/find_lr")
    assert msg.startswith("⚠ ") and "start LR < end LR" in msg and "(`end_lr`)" in msg
    # over a cap
    msg = alice.predict(**{**TINY_RUN, "width": SHARED_CAPS["width"] * 2}, api_name="/train_start")
    assert "above this shared server's cap" in msg and "(`width`)" in msg
    assert alice.predict(api_name="/train_status")["status"] == "idle"

    # missing arguments, from a raw HTTP caller: the error names them
    from lab.ui.app import API_DEFAULTS
    from lab.ui.common import CONTROL_NAMES, control_defaults

    n = len(CONTROL_NAMES) + 1  # and confirm
    event, data = _raw_call(url, "train_start", [0.125])
    assert event == "error" and f"train_start got 1 of its {n} parameters; missing: subset, test_subset" in data, data
    assert "null" not in data and "confirm" not in data  # optional ones are not "missing"
    # a script written before the loss controls and confirm existed: those take their defaults
    first_api = [control_defaults()[name] for name in CONTROL_NAMES if name not in API_DEFAULTS]
    first_api[0] = "wide"
    event, data = _raw_call(url, "train_start", first_api)
    assert event == "complete" and "width must be a number, got 'wide' (`width`)" in data, data
    # a sweep on a shared server: refused, saying so
    msg = alice.predict("tiny", "adam", "0.01", 1, 10, api_name="/sweep_start")
    assert msg.startswith("⚠ sweeps are switched off on this shared server"), msg

    # an upload over the size cap is refused by the server
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (UPLOAD_MAX_BYTES + 1))
    with big.open("rb") as f:
        r = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.png", f)}, timeout=120)
    assert r.status_code == 413 and "maximum allowed size" in r.text

    # session-owned Stop
    assert alice.predict(**TINY_RUN, api_name="/train_start").startswith("Run started")
    poll(alice, lambda s: s["last_step"] or not s["busy"])
    refused = bob.predict(api_name="/train_stop")
    if refused != "nothing is running":  # (it had already finished: a very fast machine)
        assert refused.startswith("⚠ ") and "another browser session" in refused
        assert alice.predict(api_name="/train_status")["busy"]  # Bob's Stop did not stop it
        busy = bob.predict(**TINY_RUN, api_name="/train_start")
        assert "only the browser session that started it" in busy
    stopped = alice.predict(api_name="/train_stop")
    final = poll(alice, lambda s: not s["busy"])
    if stopped.startswith("stopping"):
        assert final["status"] == "stopped", final
    else:
        assert stopped == "nothing is running" and final["status"] == "done"


def test_sigterm_to_the_server_records_the_running_job_as_stopped(launch_app, runs_root):
    """A Space restarting sends SIGTERM: the job's run folder says `stopped`, not `running` forever."""
    import signal

    from gradio_client import Client

    from lab.runs import LOCK, Run

    url = launch_app(runs_root)
    client = Client(url, verbose=False)
    assert client.predict(**{**TINY_RUN, "epochs": 50}, api_name="/train_start").startswith("Run started")
    status = poll(client, lambda s: s["last_step"] or not s["busy"])
    assert status["busy"], status
    run = Run(status["run_dir"])
    proc = launch_app.procs[-1][0]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) is not None
    assert run.config_doc()["status"] == "stopped" and run.summary().status == "stopped"
    assert not (run.path / LOCK).exists()
