"""Launch the CIFAR-10 super-convergence lab (a Gradio app; also the Hugging Face Space entry point).

    python app.py            # http://127.0.0.1:7860; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT change host and port

Environment: CIFAR10_DIR (where the data is), LAB_RUNS_DIR (where runs are saved, default runs/), LAB_DOWNLOAD=1
(download CIFAR-10 on first use when it is not found), LAB_PUBLIC=1 (shared-server mode — per-job caps, a runs/
quota, session-owned Stop — on by itself on a Hugging Face Space), LAB_MANAGE_RUNS=1|0 (whether visitors may rename
and delete runs; default on, off on a shared server). On a ZeroGPU Space (SPACES_ZERO_GPU, set by the Hub) each
job runs as one @spaces.GPU call (lab/server/zerogpu.py); LAB_ZEROGPU_MAX_S caps a call's length (default 120 s).
"""

import spaces  # noqa: F401  first: on a ZeroGPU Space it patches torch before anything initialises CUDA; elsewhere inert

import signal

from lab.ui.app import build_app, default_manager, launch_kwargs, stop_job_then_exit

manager = default_manager()
demo = build_app(manager)

if __name__ == "__main__":
    for sig in (signal.SIGTERM, signal.SIGINT):  # a running job records `stopped` before the server goes
        signal.signal(sig, stop_job_then_exit(manager))
    demo.queue(default_concurrency_limit=2).launch(**launch_kwargs())
