"""The ZeroGPU path (lab.server.zerogpu), exercised off Spaces.

There the `spaces` decorator passes functions through unchanged, so the handler is also run with a stand-in
decorator that does what ZeroGPU does with a generator: call `duration` with the task's arguments, run the task in
a forked child process, pickle its arguments and every yield across, and on close ask the child to stop after its
next yield. Nothing of the child's state reaches the server except what it yields: the server's job record, the
page's messages and the run folder (written by the child) must all come out right regardless.
"""

from __future__ import annotations

import inspect
import json
import multiprocessing
import pickle
import queue
from pathlib import Path

import gradio as gr
import pytest
import spaces

from lab.config import TrainConfig
from lab.runs import Run
from lab.ui import lr_range, train
from lab.ui.app import build_app
from lab.ui.common import control_defaults
from lab.server.jobs import Busy, JobDelta, stream_job
from lab.server.zerogpu import MAX_CALL_S, TooLong, ZeroGPU, estimate_seconds, on_zerogpu

FORK = multiprocessing.get_context("fork")
# a real run small enough for a test: 2 epochs of 512 images at width 0.125
TINY = dict(width=0.125, subset=512, test_subset=128, epochs=2, peak_epoch=0.5, batch_size=64, device="cpu")


class ForkedGPU:
    """A stand-in for spaces.GPU that runs the decorated generator in a forked child, as ZeroGPU does."""

    def __init__(self):
        self.durations: list[int] = []
        self.children: list = []

    def __call__(self, duration=None):
        def decorate(task):
            def handler(*args):
                self.durations.append(duration(*args) if callable(duration) else duration)
                payload = pickle.dumps(args)  # the arguments cross as pickles, as through ZeroGPU's queue
                results, stop = FORK.Queue(), FORK.Event()

                def child():
                    gen = task(*pickle.loads(payload))
                    try:
                        for item in gen:
                            if stop.is_set():
                                gen.close()
                                break
                            results.put(("yield", pickle.dumps(item)))
                        results.put(("end", None))
                    except Exception as e:
                        results.put(("error", f"{type(e).__name__}: {e}"))

                proc = FORK.Process(target=child, daemon=True)
                proc.start()
                self.children.append(proc)
                try:
                    while True:
                        try:
                            kind, item = results.get(timeout=300)
                        except queue.Empty:
                            raise RuntimeError("the GPU child went quiet") from None
                        if kind == "end":
                            return
                        if kind == "error":
                            raise RuntimeError(item)
                        yield pickle.loads(item)
                except GeneratorExit:
                    stop.set()  # as ZeroGPU's wrapper does: the child closes the task at its next yield
                    raise

            return handler

        return decorate

    def join(self, timeout: float = 120) -> None:
        for proc in self.children:
            proc.join(timeout)
            assert proc.exitcode == 0, f"GPU child exited with {proc.exitcode}"


def controls(**overrides):
    return {**control_defaults(), **TINY, **overrides}


@pytest.fixture
def gpu():
    return ForkedGPU()


@pytest.fixture
def zctx(ctx, gpu):
    ctx.runner = ZeroGPU(ctx.manager, gpu=gpu)
    return ctx


def test_off_spaces_the_decorator_passes_functions_through():
    def gen():
        yield 1

    assert not on_zerogpu()
    assert spaces.GPU(duration=10)(gen) is gen
    assert spaces.GPU(gen) is gen


def test_the_estimate_grows_with_the_job_and_the_spec_recipe_fits_one_call():
    spec = estimate_seconds("train", TrainConfig(), slowdown=132 / 60)
    assert spec < MAX_CALL_S
    longer = estimate_seconds("train", TrainConfig.from_flat(epochs=48), slowdown=132 / 60)
    assert longer > spec
    assert estimate_seconds("train", TrainConfig.from_flat(**TINY)) < spec
    few, many = (estimate_seconds("lr_range", TrainConfig(), {"iters": n}) for n in (50, 500))
    assert few < many


def test_a_training_run_streams_from_a_forked_gpu_process_into_the_servers_record(zctx, gpu):
    messages = list(train.start(zctx, **controls()))
    gpu.join()
    assert len(gpu.durations) == 1
    cfg = TrainConfig.from_flat(**TINY)
    assert gpu.durations[0] == zctx.runner.duration_s(estimate_seconds("train", cfg)) <= MAX_CALL_S
    assert "On ZeroGPU: one GPU call of up to" in messages[0]
    assert "finished after 2 of 2 epochs" in messages[-1], messages[-1]
    # the server's record was filled from the child's yields alone: no thread ran here
    assert zctx.manager._thread is None
    status = zctx.manager.status("train")
    assert status["status"] == "done" and len(status["epochs"]) == 2
    assert status["steps"][-1]["global_step"] == 2 * 8
    # the child wrote the run folder, and it agrees with what was streamed
    run = Run(status["run_dir"])
    doc = json.loads((run.path / "config.json").read_text())
    assert doc["status"] == "done" and doc["started_from"] == "app (ZeroGPU)"
    assert [m["test_acc"] for m in run.metrics()] == [e["test_acc"] for e in status["epochs"]]
    assert zctx.manager.status_json()["status"] == "done"


def test_stop_reaches_the_gpu_process_and_the_run_folder_records_it(zctx, gpu):
    stream = train.start(zctx, **controls(subset=4096, epochs=3, peak_epoch=1))
    next(stream)
    while not zctx.manager.status("train")["steps"]:
        next(stream)
    assert zctx.manager.stop().startswith("stopping the training run")
    rest = list(stream)
    gpu.join()
    status = zctx.manager.status("train")
    assert status["status"] == "stopped" and "stopped" in rest[-1]
    doc = json.loads((Path(status["run_dir"]) / "config.json").read_text())
    assert doc["status"] == "stopped"  # written by the child once the stop reached it


def test_a_job_that_cannot_fit_one_call_is_refused_before_it_starts_with_the_limit_named(zctx, gpu):
    zctx.runner.max_call_s = 60
    messages = list(train.start(zctx, **controls(width=1.0, subset=0, test_subset=0, epochs=24,
                                                 peak_epoch=5, batch_size=512)))
    assert len(messages) == 1 and "limited to 60 s" in messages[0] and "⚠" in messages[0]
    assert gpu.durations == [] and zctx.manager.status() is None
    assert not any(p.name != "20000101-000000" for p in zctx.runs_root.iterdir())  # no run folder made
    with pytest.raises(TooLong, match="limited to 60 s"):
        zctx.runner.check("train", TrainConfig())


def test_a_second_job_while_one_streams_is_busy(zctx, gpu):
    stream = train.start(zctx, **controls(subset=4096, epochs=3, peak_epoch=1))
    next(stream)
    with pytest.raises(Busy, match="training run"):
        zctx.manager.start_training(TrainConfig.from_flat(**TINY))
    assert "busy" in next(iter(train.start(zctx, **controls())))
    stream.close()  # the page went away: the child is asked to stop
    gpu.join()
    assert zctx.manager.status("train")["status"] == "stopped"


def test_a_failing_gpu_call_ends_the_job_with_its_message(zctx):
    def refused(duration=None):
        def decorate(task):
            def handler(*args):
                raise gr.Error("You have exceeded your free ZeroGPU quota (95s requested vs. 40s left).")
                yield  # noqa: unreachable — makes this a generator, as ZeroGPU's wrapper is

            return handler

        return decorate

    zctx.runner = ZeroGPU(zctx.manager, gpu=refused)
    messages = list(train.start(zctx, **controls()))
    status = zctx.manager.status("train")
    assert status["status"] == "error" and "quota" in status["message"] and "quota" in messages[-1]


def test_a_range_test_streams_too(zctx, gpu):
    args = dict(iters=12, start_lr=1e-5, end_lr=1.0, mode="exp", optimizer="adam")
    messages = list(lr_range.start(zctx, controls(), **args))
    gpu.join()
    status = zctx.manager.status("lr_range")
    assert status["status"] == "done", status["message"]
    assert len(status["points"]) >= 10 and status["result"]["max_lr"] > 0
    assert "suggested max LR" in messages[-1]


def test_stream_job_yields_plain_picklable_deltas_and_ends_with_the_result(cifar10, tmp_path):
    cfg = TrainConfig.from_flat(**TINY)
    deltas = list(stream_job("train", cfg, cifar10, run_dir=str(tmp_path / "run"), poll=0.05))
    assert all(isinstance(d, JobDelta) for d in deltas)
    pickle.loads(pickle.dumps(deltas))
    assert sum(len(d.epochs) for d in deltas) == 2 and deltas[-1].status == "done"
    assert deltas[-1].result is not None and all(d.result is None for d in deltas[:-1])


def test_the_app_streams_start_on_zerogpu_and_returns_at_once_elsewhere(manager, tmp_path):
    def handler(demo, name):
        return next(f.fn for f in demo.fns.values() if f.api_name == name)

    pretrained = tmp_path / "none.pt"
    plain = build_app(manager, pretrained=pretrained)
    zero = build_app(manager, pretrained=pretrained, runner=ZeroGPU(manager, gpu=ForkedGPU()))
    for name in ("train_start", "find_lr"):
        assert not inspect.isgeneratorfunction(handler(plain, name))
        assert inspect.isgeneratorfunction(handler(zero, name))
        # the API's parameters are the same either way
        assert inspect.signature(handler(plain, name)) == inspect.signature(handler(zero, name))


def test_a_shared_server_caps_a_zerogpu_job_before_any_gpu_is_asked_for(zctx, gpu):
    """Issue 10 item 3: the caps bound a GPU call too (the call's own limit is about time, not width or batch)."""
    zctx.manager.shared = True
    zctx.manager.caps = {**zctx.manager.caps, "width": 0.125, "range_test_iters": 20}
    messages = list(train.start(zctx, **controls(width=0.25)))
    assert len(messages) == 1 and "above this shared server's cap of 0.125" in messages[0] and "(`width`)" in messages[0]
    args = dict(iters=50, start_lr=1e-5, end_lr=1.0, mode="exp", optimizer="adam")
    messages = list(lr_range.start(zctx, controls(), **args))
    assert len(messages) == 1 and "50 range-test iterations are above" in messages[0]
    assert gpu.durations == [] and zctx.manager.status() is None  # refused before a job or a GPU call existed


def test_on_a_shared_server_only_the_starting_session_stops_a_streamed_job(zctx, gpu):
    zctx.manager.shared = True
    stream = train.start(zctx, session="alice", **controls(subset=4096, epochs=3, peak_epoch=1))
    next(stream)
    assert "another browser session" in train.stop(zctx, "bob")
    assert zctx.manager.status("train")["status"] == "running"
    assert train.stop(zctx, "alice").startswith("stopping the training run")
    list(stream)
    gpu.join()
    assert zctx.manager.status("train")["status"] == "stopped"
