"""Image helpers for the studio: tiling and GIF/MP4 export (pictures are read by
:mod:`spiking_diffusion.image_input`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

class InputError(ValueError):
    """A user input the studio cannot use; the message is shown as is."""


def upscale(img: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscale of ``[H, W, C]``."""
    return img.repeat(scale, 0).repeat(scale, 1)


def show(img: np.ndarray, scale: int = 8) -> np.ndarray:
    """``[H, W, C]`` uint8 -> upscaled image for display (grey as ``[H, W]``)."""
    img = upscale(img, scale)
    return img[..., 0] if img.shape[-1] == 1 else img


def tile(images: np.ndarray, cols: int | None = None, scale: int = 3, pad: int = 2) -> np.ndarray:
    """``[N, H, W, C]`` uint8 -> one RGB grid image, upscaled ``scale`` times, with white gaps."""
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    H, W = h * scale, w * scale
    out = np.full((rows * (H + pad) + pad, cols * (W + pad) + pad, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        im = np.repeat(im, 3, 2) if c == 1 else im
        out[pad + r * (H + pad):pad + r * (H + pad) + H, pad + q * (W + pad):pad + q * (W + pad) + W] = upscale(im, scale)
    return out


def tile_index(x: float, y: float, n: int, h: int, w: int, cols: int | None = None, scale: int = 3,
               pad: int = 2) -> int | None:
    """The image under pixel (x, y) of ``tile(images [n, h, w, C], cols, scale, pad)``; None on a gap."""
    cols = cols or int(np.ceil(np.sqrt(n)))
    H, W = h * scale + pad, w * scale + pad
    q, dx = divmod(int(x) - pad, W)
    r, dy = divmod(int(y) - pad, H)
    i = r * cols + q
    if x < pad or y < pad or dx >= W - pad or dy >= H - pad or q >= cols or not 0 <= i < n:
        return None
    return i


def write_mp4(frames: list[np.ndarray], path: str | Path, fps: int, hold_s: float) -> Path:
    """Write RGB frames ``[H, W, 3]`` as an MP4 (H.264) at ``fps``, the last one held ``hold_s`` seconds
    (the GIF's timing: :func:`demo.frames.write_gif`)."""
    import imageio.v2 as imageio

    hold = frames + [frames[-1]] * round(hold_s * fps)
    even = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in hold]   # H.264 wants even sizes
    imageio.mimsave(path, even, fps=fps, codec="libx264", macro_block_size=1, quality=8)
    return Path(path)
