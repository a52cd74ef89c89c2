"""Shared by the browser benchmarks: the studio served in this process on a free loopback port."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
for _k, _v in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(_k, _v)


def launch_studio(checkpoints: str):
    """Build ``app.py``'s studio on ``checkpoints`` and serve it without blocking -> (demo, url);
    call ``demo.close()`` when done."""
    import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = app.parse_args(["--checkpoints", checkpoints, "--port", str(port)])
    demo = app.make_app(args)
    _, url, _ = demo.launch(**app.launch_kwargs(args), prevent_thread_lock=True, quiet=True, inbrowser=False)
    return demo, url
