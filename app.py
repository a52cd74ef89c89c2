"""Spiking-Diffusion studio: ``python app.py`` serves it on http://127.0.0.1:7860 (offline).

Options (and environment variables): --checkpoints DIR (SD_CHECKPOINTS, default assets/),
--host (SD_HOST, default 127.0.0.1), --port (SD_PORT, default 7860), --max-batch (SD_MAX_BATCH),
--concurrency (SD_CONCURRENCY: model jobs at once, all views together), --queue-size (SD_QUEUE_SIZE: jobs
waiting at most), --max-upload (SD_MAX_UPLOAD),
--max-runs / --run-ttl (SD_MAX_RUNS / SD_RUN_TTL: generations kept, and for how long after their last use),
--cache-ttl (SD_CACHE_TTL: served files older than this are deleted), --max-sessions (SD_MAX_SESSIONS),
--data DIR (SD_DATA: test images for codebook statistics), --share (off by default).
"""
from __future__ import annotations

import argparse
import os
import re

for _k, _v in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(_k, _v)

from demo.memory import limit_malloc_arenas  # noqa: E402  (ctypes only; after the environment defaults)


def _at_least(lo: float, kind=int):
    """An argparse type: a ``kind`` (int: a whole number) >= ``lo`` (the library's range check,
    :class:`~spiking_diffusion.errors.Setting`), else a message naming both."""
    from spiking_diffusion.errors import Setting, SettingError

    setting = Setting("value", kind, lo, None)

    def convert(text):
        try:
            return setting.check(text)
        except SettingError:
            raise argparse.ArgumentTypeError(f"must be {'a whole number' if kind is int else 'a number'} >= {lo:g}; "
                                             f"got {text!r}") from None
    return convert


def _file_size(text: str) -> str:
    """An argparse type: a file size as Gradio's ``max_file_size`` reads it, a whole number and a unit
    (b, kb, mb, gb, tb: "20mb"), checked here rather than by Gradio once the models have loaded."""
    m = re.fullmatch(r"\s*(\d+)\s*(b|kb|mb|gb|tb)\s*", str(text), re.IGNORECASE)
    if not m or int(m[1]) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 and a unit, b, kb, mb, gb or tb (e.g. 20mb); "
                                         f"got {text!r}")
    return f"{int(m[1])}{m[2].lower()}"


def parse_args(argv=None) -> argparse.Namespace:
    from demo.checks import MAX_UPLOAD
    from demo.generations import MAX_RUNS, RUN_TTL_S   # here: numpy loads after main() caps malloc's arenas

    env = os.environ.get
    p = argparse.ArgumentParser(description="Spiking-Diffusion studio (Gradio)")
    p.add_argument("--checkpoints", default=env("SD_CHECKPOINTS", "assets"), help="folder of model folders")
    p.add_argument("--host", default=env("SD_HOST", "127.0.0.1"))
    # numbers are checked as given, from the command line or the environment (argparse converts a default too)
    p.add_argument("--port", type=_at_least(0), default=env("SD_PORT", "7860"), help="0: any free port")
    p.add_argument("--max-batch", type=_at_least(1), default=env("SD_MAX_BATCH", "64"), help="most images per generation")
    p.add_argument("--concurrency", type=_at_least(1), default=env("SD_CONCURRENCY", "2"),
                   help="model jobs run at once, over all views together")
    p.add_argument("--queue-size", type=_at_least(1), default=env("SD_QUEUE_SIZE", "32"), help="jobs waiting at most")
    p.add_argument("--max-upload", type=_file_size, default=env("SD_MAX_UPLOAD", MAX_UPLOAD),
                   help=f"largest upload, e.g. 5mb or 1gb (default: {MAX_UPLOAD})")
    p.add_argument("--max-runs", type=_at_least(1), default=env("SD_MAX_RUNS", str(MAX_RUNS)),
                   help="generations kept for the Unmasking, Spikes and Codebook views and the energy estimate (Learn), over all sessions")
    p.add_argument("--run-ttl", type=_at_least(1, float), default=env("SD_RUN_TTL", str(RUN_TTL_S)),
                   help="seconds a generation is kept after its last use")
    p.add_argument("--cache-ttl", type=_at_least(1), default=env("SD_CACHE_TTL", "3600"),
                   help="seconds after which served files (images, exports, uploads) are deleted")
    p.add_argument("--max-sessions", type=_at_least(1), default=env("SD_MAX_SESSIONS", "100"),
                   help="browser sessions whose state is kept (the oldest are dropped)")
    p.add_argument("--data", default=env("SD_DATA"), help="data folder with test images (torchvision layout)")
    p.add_argument("--share", action="store_true", help="make a public Gradio link (off by default)")
    return p.parse_args(argv)


def make_app(args: argparse.Namespace):
    from demo.guards import guard_inputs
    from demo.served_files import make_cache_writes_atomic
    from demo.studio import Studio
    from demo.ui import build_demo

    make_cache_writes_atomic()   # two visitors shown the same picture share one served file

    studio = Studio(args.checkpoints, max_batch=args.max_batch, data_dir=args.data, max_runs=args.max_runs,
                    run_ttl=args.run_ttl, max_upload=args.max_upload)
    if studio.default_model:
        studio.pipe(studio.default_model)  # load + warm up before the first visitor
    demo = guard_inputs(build_demo(studio))       # every API value checked, with a clear message
    demo.queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size)
    demo.delete_cache = (max(10, args.cache_ttl // 4), args.cache_ttl)   # (check every, delete older than) s
    demo.studio = studio
    return demo


def launch_kwargs(args: argparse.Namespace) -> dict:
    from demo.ui import CSS, I18N, theme

    return dict(server_name=args.host, server_port=args.port, share=args.share, max_file_size=args.max_upload,
                css=CSS, theme=theme(), ssr_mode=False, state_session_capacity=args.max_sessions, i18n=I18N)


def startup_message(local_url: str, share: bool, share_url: str | None) -> str:
    """What the terminal says once the studio serves, in this app's words: Gradio's own line names its
    ``launch(share=True)`` for a public link, where this app has ``--share``. (With ``--share`` Gradio
    prints the public address itself, even when quiet.)"""
    if not share:
        return f"Studio running on {local_url} (open it in a browser; stop with Ctrl+C; a public link: python app.py --share)"
    if share_url:
        return f"Studio running on {local_url}, and publicly on the address above (the link lasts about a week)"
    return f"Studio running on {local_url}; the public link could not be made (see Gradio's message above)"


def main(argv=None):
    limit_malloc_arenas()
    args = parse_args(argv)
    demo = make_app(args)
    _, local_url, share_url = demo.launch(**launch_kwargs(args), quiet=True, prevent_thread_lock=True)
    print(startup_message(local_url, args.share, share_url), flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
