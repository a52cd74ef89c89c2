"""Image helpers for the studio: tiling, input preparation, GIF/MP4 export."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

MAX_PIXELS = 4096 * 4096  # refuse decompression bombs before converting


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


def prepare_image(img, channels: int, size: int = 28, invert: str = "auto") -> tuple[np.ndarray, str]:
    """Any picture (PIL, uint8/float array, grey/RGB/RGBA, any size) -> float ``[1, C, size, size]``
    in [0, 1], plus a note of what was changed. ``invert``: 'auto' (dark strokes on a light
    background are flipped to the data sets' light-on-dark), 'yes' or 'no'."""
    notes = []
    if img is None:
        raise InputError("no image given: upload or draw one first")
    if not isinstance(img, Image.Image):
        a = np.asarray(img)
        if a.ndim not in (2, 3) or a.size == 0 or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
            raise InputError(f"expected an image shaped [H, W] or [H, W, 1|3|4]; got {list(a.shape)}")
        if a.dtype != np.uint8:
            a = np.nan_to_num(a.astype(float))
            a = (np.clip(a / 255 if a.max() > 1 else a, 0, 1) * 255).astype(np.uint8)
        img = Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a)
    if img.width * img.height > MAX_PIXELS:
        raise InputError(f"image too large ({img.width}x{img.height}); the limit is {MAX_PIXELS} pixels")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img.convert("RGBA"))
        notes.append("transparent areas filled with white")
    mode = "L" if channels == 1 else "RGB"
    if img.mode != mode:
        notes.append(f"converted {img.mode} to {'grey' if mode == 'L' else 'RGB'}")
        img = img.convert(mode)
    if img.size != (size, size):
        notes.append(f"resized from {img.width}x{img.height} to {size}x{size}")
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    x = np.asarray(img, np.float32) / 255.0
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)                      # [C, H, W]
    if invert == "yes" or (invert == "auto" and x.mean() > 0.5):
        x = 1 - x
        notes.append("inverted to light-on-dark")
    return x[None], "; ".join(notes) or "used as is"


def frames_for_export(committed: np.ndarray, predicted: np.ndarray, scale: int = 6) -> list[np.ndarray]:
    """Per step, [committed | predicted] side by side, upscaled, RGB, over a progress bar."""
    out, n = [], len(committed)
    for i, (a, b) in enumerate(zip(committed, predicted)):
        pair = np.concatenate([a, np.full((a.shape[0], 2, a.shape[2]), 255, np.uint8), b], 1)
        pair = np.repeat(pair, 3, 2) if pair.shape[2] == 1 else pair
        bar = np.full((2, pair.shape[1], 3), 60, np.uint8)
        bar[:, : max(1, round(pair.shape[1] * (i + 1) / n))] = (230, 60, 60)
        out.append(upscale(np.concatenate([pair, bar]), scale))
    return out


def export_run(frames: list[np.ndarray], folder: str | None = None, fps: int = 8) -> tuple[str, str]:
    """Write frames as a looping GIF and an MP4 (H.264); returns the two paths."""
    import imageio.v2 as imageio

    folder = Path(folder or tempfile.mkdtemp(prefix="sd_export_"))
    gif, mp4 = folder / "unmasking.gif", folder / "unmasking.mp4"
    hold = frames + [frames[-1]] * fps  # hold the final image for a second
    imageio.mimsave(gif, hold, duration=1000 / fps, loop=0)
    even = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in hold]
    imageio.mimsave(mp4, even, fps=fps, codec="libx264", macro_block_size=1, quality=8)
    return str(gif), str(mp4)
