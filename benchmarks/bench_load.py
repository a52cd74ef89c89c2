"""Sustained traffic on the studio: many short sessions, several clients at a time.

    python benchmarks/bench_load.py [--checkpoints assets] [--clients 8] [--generations 104]
                                    [--images 16] [--steps 6] [--tiny] [--cache-ttl 60]

Starts ``app.py`` as a subprocess on a free loopback port (its own temp folders), then ``--clients``
gradio_client threads each run rounds in a new session (``reset_session``): a generation, then
a look at one frame of it (Unmasking) and, in turn, an export, an upload to encode or the spikes
view; every 8th generation is cancelled after its first streamed step (a closed tab). It reports
errors, the server's resident memory (after start, after the first wave of ``--clients``
generations, at the end), its threads, the CPU it used while idle after the last request (work
left running) and the disk used by its temp folders. Bounded: ``--generations`` rounds and at most
``--max-seconds``; the server is stopped at the end.
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stats(pid: int) -> dict:
    """Resident memory (MB), threads and CPU seconds of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    field = {k.strip(): v.split() for k, v in (line.split(":", 1) for line in status.splitlines() if ":" in line)}
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {"rss_mb": int(field["VmRSS"][0]) / 1024, "threads": int(field["Threads"][0]),
            "cpu_s": (int(stat[11]) + int(stat[12])) / ticks}


def disk_mb(folder: Path) -> float:
    """Bytes in the files under ``folder`` (files deleted meanwhile are skipped), in MB."""
    total = 0
    for parent, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.lstat(os.path.join(parent, f)).st_size
            except OSError:
                pass
    return total / 2**20


def tiny_checkpoints(root: Path) -> Path:
    """The tests' tiny random checkpoint (fast, for a quick run or the test suite)."""
    from conftest import build_tiny_models
    from test_app import make_checkpoints

    return make_checkpoints(root, build_tiny_models)


def start_server(checkpoints, tmp: Path, port: int, args) -> subprocess.Popen:
    env = dict(os.environ, GRADIO_TEMP_DIR=str(tmp / "gradio"), TMPDIR=str(tmp / "tmp"), PYTHONUNBUFFERED="1")
    # glibc's per-thread malloc arenas fragment under many server threads (+26% RSS over 104 generations,
    # against +10% with 2 arenas): serve the studio with MALLOC_ARENA_MAX=2 (set it to 0 here to compare)
    env.setdefault("MALLOC_ARENA_MAX", "2")
    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / "app.py"), "--checkpoints", str(checkpoints), "--host", "127.0.0.1",
           "--port", str(port), "--max-batch", str(max(16, args.images)), "--concurrency", str(args.concurrency),
           "--queue-size", str(4 * args.clients), "--cache-ttl", str(args.cache_ttl), "--max-runs", str(args.max_runs),
           "--max-sessions", str(args.max_sessions)]
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + args.start_timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}); see {tmp / 'server.log'}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the server did not start in time")


def run(args) -> dict:
    from gradio_client import Client, handle_file
    from PIL import Image
    import numpy as np

    tmp = Path(tempfile.mkdtemp(prefix="sd_load_"))
    ck = tiny_checkpoints(tmp / "ck") if args.tiny else Path(args.checkpoints)
    port = free_port()
    proc = start_server(ck, tmp, port, args)
    url = f"http://127.0.0.1:{port}/"
    picture = tmp / "digit.png"
    digit = np.zeros((64, 64), np.uint8)
    digit[10:54, 28:36] = 255
    Image.fromarray(digit).save(picture)
    report = {"errors": [], "generations": 0, "cancelled": 0}
    lock = threading.Lock()
    start = time.time()
    try:
        probe = Client(url, verbose=False, analytics_enabled=False)
        model = args.model or probe.view_api(return_format="dict", print_info=False)["named_endpoints"][
            "/generate"]["parameters"][0]["parameter_default"]
        report["model"] = model
        report["start"] = proc_stats(proc.pid) | {"disk_mb": disk_mb(tmp / "gradio") + disk_mb(tmp / "tmp")}
        gen_args = [model, args.images, args.steps, 0.65, 0, 0.65, 1.0, args.corrector_rounds, 5, 0.5]

        def one_round(c, i):
            c.reset_session()                                  # a new visitor
            call = gen_args[:4] + [i] + gen_args[5:]
            if i % 8 == 7:                                     # a tab closed while generating
                job = c.submit(*call, api_name="/generate")
                deadline = time.time() + 120
                while not job.outputs() and not job.done() and time.time() < deadline:
                    time.sleep(0.05)
                job.cancel()
                with lock:
                    report["cancelled"] += 1
                return
            grid, status = c.predict(*call, api_name="/generate")
            if 'data-state="done"' not in status:
                raise RuntimeError(f"generation did not finish: {status[:200]}")
            frames = args.steps + args.corrector_rounds
            c.predict(i % args.images, 1 + i % frames, 24, api_name="/unmask")
            if i % 4 == 0:
                c.predict(0, api_name="/export")
            elif i % 4 == 1:
                c.predict(model, handle_file(str(picture)), "auto", api_name="/encode")
            elif i % 4 == 2:
                c.predict(0, 24, api_name="/spikes")
            with lock:
                report["generations"] += 1

        def worker(rounds):
            c = Client(url, verbose=False, analytics_enabled=False)
            for i in rounds:
                if time.time() - start > args.max_seconds:
                    return
                try:
                    one_round(c, i)
                except Exception as e:  # counted and reported
                    with lock:
                        report["errors"].append(f"round {i}: {type(e).__name__}: {str(e)[:300]}")

        def wave(indices):
            per = [indices[k::args.clients] for k in range(args.clients)]
            threads = [threading.Thread(target=worker, args=(r,)) for r in per if r]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        peak = {"rss_mb": 0.0, "disk_mb": 0.0}
        stop_watch = threading.Event()

        def watch():
            while not stop_watch.wait(1.0):
                peak["rss_mb"] = max(peak["rss_mb"], proc_stats(proc.pid)["rss_mb"])
                peak["disk_mb"] = max(peak["disk_mb"], disk_mb(tmp / "gradio") + disk_mb(tmp / "tmp"))
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        # first wave: one plain generation per client (round numbers not cancelled)
        first = list(itertools.islice((i for i in itertools.count() if i % 8 != 7), args.clients))
        wave(first)
        time.sleep(args.idle)
        report["after_first_wave"] = proc_stats(proc.pid) | {"disk_mb": disk_mb(tmp / "gradio") + disk_mb(tmp / "tmp")}
        rest = [i for i in range(first[-1] + 1, first[-1] + 1 + args.generations * 8 // 7 + 8)]
        need = args.generations - len(first)
        rest = [i for i in rest if i % 8 != 7][:need] + [i for i in rest if i % 8 == 7][: max(1, need // 8)]
        wave(sorted(rest))
        time.sleep(args.idle)
        before = proc_stats(proc.pid)
        time.sleep(args.idle)
        end = proc_stats(proc.pid)
        stop_watch.set()
        report["end"] = end | {"disk_mb": disk_mb(tmp / "gradio") + disk_mb(tmp / "tmp")}
        report["idle_cpu_s"] = end["cpu_s"] - before["cpu_s"]
        report["peak"] = peak
        report["seconds"] = time.time() - start
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return report


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=str(ROOT / "assets"))
    ap.add_argument("--model", default=None, help="default: the studio's default model")
    ap.add_argument("--tiny", action="store_true", help="use the tests' tiny random checkpoint instead")
    ap.add_argument("--clients", type=int, default=8, help="clients at a time")
    ap.add_argument("--generations", type=int, default=104, help="generations in all (each in a new session)")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--corrector-rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=2, help="the server's --concurrency")
    ap.add_argument("--max-runs", type=int, default=32, help="the server's --max-runs")
    ap.add_argument("--cache-ttl", type=int, default=60, help="the server's --cache-ttl (s)")
    ap.add_argument("--max-sessions", type=int, default=16, help="the server's --max-sessions")
    ap.add_argument("--idle", type=float, default=5.0, help="seconds to wait after a wave before measuring")
    ap.add_argument("--start-timeout", type=float, default=600.0)
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="no new rounds after this")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (server log)")
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    r = run(args)
    fmt = lambda s: f"RSS {s['rss_mb']:.0f} MB, {s['threads']} threads, temp disk {s['disk_mb']:.1f} MB"
    print(f"model {r['model']}: {r['generations']} generations + {r['cancelled']} cancelled, {args.clients} clients "
          f"at a time, {args.images} images x {args.steps} steps + {args.corrector_rounds} corrector rounds, "
          f"{r['seconds']:.0f} s, {os.cpu_count()} CPUs")
    print(f"errors: {len(r['errors'])}")
    for e in r["errors"][:20]:
        print("  ", e)
    print(f"after start:      {fmt(r['start'])}")
    print(f"after 1st wave:   {fmt(r['after_first_wave'])}")
    print(f"at the end:       {fmt(r['end'])}")
    print(f"peak:             RSS {r['peak']['rss_mb']:.0f} MB, temp disk {r['peak']['disk_mb']:.1f} MB")
    growth = r["end"]["rss_mb"] / r["after_first_wave"]["rss_mb"] - 1
    print(f"RSS end vs after the first wave: {100 * growth:+.1f}%; CPU used while idle after the last request: "
          f"{r['idle_cpu_s']:.2f} s in {args.idle:.0f} s")
    return r


if __name__ == "__main__":
    main()
