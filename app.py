"""Launch the CIFAR-10 super-convergence lab (a Gradio app; also the Hugging Face Space entry point).

    python app.py            # http://127.0.0.1:7860; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT change host and port

Environment: CIFAR10_DIR (where the data is), LAB_RUNS_DIR (where runs are saved, default runs/), LAB_DOWNLOAD=1
(download CIFAR-10 on first use when it is not found), LAB_PUBLIC=1 (shared-server mode, on by itself on a Space).
"""

import signal

from lab.ui.app import build_app, default_manager, launch_kwargs, stop_job_then_exit

manager = default_manager()
demo = build_app(manager)

if __name__ == "__main__":
    for sig in (signal.SIGTERM, signal.SIGINT):  # a running job records `stopped` before the server goes
        signal.signal(sig, stop_job_then_exit(manager))
    demo.queue(default_concurrency_limit=2).launch(**launch_kwargs())
