"""Served images are written atomically: a download never sees half a file (demo/served_files.py)."""
from __future__ import annotations

import threading

import gradio as gr
import numpy as np
from gradio import processing_utils
from PIL import Image

from demo.served_files import make_cache_writes_atomic


def _rewrite_while_reading(path: str, picture: Image.Image, cache: str, reads: int = 2000) -> int:
    """Rewrite ``picture`` into the cache in a loop while reading ``path``; returns reads that differed."""
    full = open(path, "rb").read()
    stop, bad = threading.Event(), [0]

    def writer():
        while not stop.is_set():
            processing_utils.save_pil_to_cache(picture, cache)

    w = threading.Thread(target=writer)
    w.start()
    try:
        for _ in range(reads):
            with open(path, "rb") as f:
                bad[0] += f.read() != full
    finally:
        stop.set()
        w.join()
    return bad[0]


def test_a_picture_served_twice_is_never_read_half_written(tmp_path):
    make_cache_writes_atomic()
    make_cache_writes_atomic()                                      # idempotent
    rng = np.random.default_rng(0)
    picture = Image.fromarray((rng.random((300, 300, 3)) * 255).astype(np.uint8))
    path = processing_utils.save_pil_to_cache(picture, str(tmp_path))
    assert _rewrite_while_reading(path, picture, str(tmp_path)) == 0
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["image.webp"]   # no staging files left
    # a component's own output goes through it: the same path, the same bytes
    served = gr.Image(format="webp").postprocess(np.asarray(picture)).path
    assert open(served, "rb").read() == open(path, "rb").read()


def test_bytes_keep_gradios_names(tmp_path):
    make_cache_writes_atomic()
    a = processing_utils.save_bytes_to_cache(b"RIFF....WAVEfmt ", "sound", str(tmp_path))
    b = processing_utils.save_bytes_to_cache(b"hello", "note.txt", str(tmp_path))
    assert a.endswith(".wav") and b.endswith("note.txt") and open(b, "rb").read() == b"hello"
