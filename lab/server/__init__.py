"""The server's job system: what runs a job (runner: a background thread, a shared server, ZeroGPU), the job
record and its bodies (jobs), ZeroGPU's GPU calls (zerogpu), the shared server's policy (policy) and upload
safety (uploads: a stranger's file → a bounded array). No Gradio here: lab.ui draws what this runs."""
