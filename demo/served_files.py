"""Gradio's cache of served images, written so that a download never sees half a file.

Gradio saves every image a handler returns under a name made from a hash of its bytes, and rewrites that
file in place (truncate, then write) each time the same picture is returned again. Two visitors who get
the same picture (the all-masked grid at a generation's first step, the same upload encoded twice)
therefore share one file, and one visitor's rewrite can cut short the other's download: in a loop that
rewrote a 63 kB picture while reading it, 50 of 3,000 reads got a partial file (Gradio 6.31), and the
load benchmark saw one "download cut short" in 207 generations.

:func:`make_cache_writes_atomic` makes those writes atomic (a temporary file in the same folder, then
``os.replace``): a reader gets the old bytes or the new ones, which are the same picture. It replaces
``gradio.processing_utils.save_pil_to_cache`` and ``save_bytes_to_cache``, which the image, gallery,
annotated-image and video components, and audio given as bytes, call through the module (Gradio's
own copy of a file, ``save_file_to_cache``, is atomic already). If a Gradio release changes their
parameters, nothing is replaced and a warning says so.
"""
from __future__ import annotations

import inspect
import os
import tempfile
import warnings
from pathlib import Path

from gradio import processing_utils


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()             # what a plain open(..., "wb") gives


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that no reader ever sees a partial file."""
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(staging, _FILE_MODE)      # mkstemp makes 0600
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    path = (folder / f"{name}.{format}").resolve()
    write_atomically(path, data)
    return str(path)


def save_bytes_to_cache(data: bytes, file_name: str, cache_dir: str) -> str:
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    if not Path(file_name).suffix:
        file_name = file_name + processing_utils.detect_audio_format(data)
    path = (folder / Path(file_name).name).resolve()
    write_atomically(path, data)
    return str(path)


_REPLACEMENTS = {"save_pil_to_cache": save_pil_to_cache, "save_bytes_to_cache": save_bytes_to_cache}
_GRADIO = {name: getattr(processing_utils, name, None) for name in _REPLACEMENTS}   # Gradio's own, kept for tests


def make_cache_writes_atomic() -> bool:
    """Replace Gradio's in-place cache writes with atomic ones (idempotent; process-wide). Returns
    whether they are replaced: not when this Gradio's functions take other parameters (warned)."""
    for name, ours in _REPLACEMENTS.items():
        theirs = getattr(processing_utils, name, None)
        if theirs is ours:
            continue
        if theirs is None or list(inspect.signature(theirs).parameters) != list(inspect.signature(ours).parameters):
            warnings.warn(f"gradio.processing_utils.{name} changed in this Gradio release: served pictures are "
                          "written the way Gradio writes them (a download may be cut short under concurrent traffic)")
            return False
    for name, ours in _REPLACEMENTS.items():
        setattr(processing_utils, name, ours)
    return True
