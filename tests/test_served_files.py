"""Served images are written atomically: a download never sees half a file (demo/served_files.py)."""
from __future__ import annotations

import os

import gradio as gr
import numpy as np
import pytest
from gradio import processing_utils
from PIL import Image

from demo import served_files


@pytest.fixture
def atomic(monkeypatch):
    """The replacement, undone after the test."""
    for name in served_files._REPLACEMENTS:
        monkeypatch.setattr(processing_utils, name, getattr(processing_utils, name))
    assert served_files.make_cache_writes_atomic() is True
    assert served_files.make_cache_writes_atomic() is True                # idempotent


def _picture() -> Image.Image:
    return Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))


def test_a_picture_served_again_never_changes_under_a_reader(tmp_path, atomic):
    path = processing_utils.save_pil_to_cache(_picture(), str(tmp_path))
    full = open(path, "rb").read()
    with open(path, "rb") as reader:                                      # a download in progress
        head = reader.read(100)
        again = processing_utils.save_pil_to_cache(_picture(), str(tmp_path))   # the same picture, served again
        assert again == path
        assert os.stat(path).st_ino != os.fstat(reader.fileno()).st_ino  # a new file put in the old one's place
        assert head + reader.read() == full                               # the reader's bytes never changed
    assert open(path, "rb").read() == full
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["image.webp"]   # no staging files left
    served = gr.Image(format="webp").postprocess(np.asarray(_picture())).path     # a component's output
    assert open(served, "rb").read() == full


def test_gradios_own_write_rewrites_the_readers_file(tmp_path):
    """Why: Gradio's write truncates and rewrites the very file a reader holds open."""
    gradio_write = served_files._GRADIO["save_pil_to_cache"]
    path = gradio_write(_picture(), str(tmp_path))
    with open(path, "rb") as reader:
        gradio_write(_picture(), str(tmp_path))
        assert os.stat(path).st_ino == os.fstat(reader.fileno()).st_ino  # the same file, rewritten in place


def test_bytes_keep_gradios_names(tmp_path, atomic):
    a = processing_utils.save_bytes_to_cache(b"RIFF....WAVEfmt ", "sound", str(tmp_path))
    b = processing_utils.save_bytes_to_cache(b"hello", "note.txt", str(tmp_path))
    assert a.endswith(".wav") and b.endswith("note.txt") and open(b, "rb").read() == b"hello"
    assert oct(os.stat(b).st_mode & 0o777) == oct(served_files._FILE_MODE)


def test_a_changed_gradio_is_left_alone(monkeypatch):
    monkeypatch.setattr(processing_utils, "save_pil_to_cache", lambda img, cache_dir, quality=90: "x")
    before = processing_utils.save_bytes_to_cache
    with pytest.warns(UserWarning, match="save_pil_to_cache changed"):
        assert served_files.make_cache_writes_atomic() is False
    assert processing_utils.save_bytes_to_cache is before                   # nothing replaced
