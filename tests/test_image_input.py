"""The image reader: every kind of file gives the model input of the same picture saved as a plain
8-bit grey PNG; MNIST framing; inversion from the border; size checked from the header."""
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from spiking_diffusion import SpikingDiffusionError
from spiking_diffusion.image_input import MAX_PIXELS, prepare_image

REPO = Path(__file__).resolve().parent.parent


def seven(size=200, offset=(0, 0), canvas=None) -> np.ndarray:
    """A hand-drawn-looking 7: ink coverage in [0, 1], ``[canvas, canvas]`` (anti-aliased)."""
    canvas = canvas or size
    big = Image.new("L", (canvas * 4, canvas * 4), 0)
    d = ImageDraw.Draw(big)
    s, (oy, ox) = size * 4, (offset[0] * 4, offset[1] * 4)
    d.line([(ox + 0.25 * s, oy + 0.22 * s), (ox + 0.72 * s, oy + 0.2 * s), (ox + 0.42 * s, oy + 0.8 * s)],
           fill=255, width=int(0.07 * s), joint="curve")
    return np.asarray(big.resize((canvas, canvas), Image.Resampling.BOX), np.float32) / 255


def grey_png(grey: np.ndarray, tmp_path, name="plain.png") -> Path:
    """The reference: a plain 8-bit grey PNG of ``grey`` (floats in [0, 1])."""
    path = tmp_path / name
    Image.fromarray((grey * 255).round().astype(np.uint8), "L").save(path)
    return path


def model_input(source, **kw):
    return prepare_image(source, **{"channels": 1, "dataset": "mnist", **kw})[0]


def paper_with_ink(ink, paper=(245, 240, 228), colour=(25, 45, 190)) -> np.ndarray:
    """RGB uint8 of coloured ink on paper."""
    a = ink[..., None]
    return (a * np.array(colour) + (1 - a) * np.array(paper)).round().astype(np.uint8)


def save(img: Image.Image, tmp_path, name, **kw) -> Path:
    path = tmp_path / name
    img.save(path, **kw)
    return path


def seen_as_grey(path) -> np.ndarray:
    """What a person sees, as grey floats: the file decoded to RGB by Pillow, then to 'L'."""
    return np.asarray(Image.open(path).convert("RGB").convert("L"), np.float32) / 255


INK = seven()


def kinds(tmp_path):
    """(name, file, the same picture as grey floats)."""
    paper = 1 - INK                                                              # black ink on white
    u8 = (paper * 255).round().astype(np.uint8)
    out = []
    out.append(("palette", save(Image.fromarray(u8).convert("P"), tmp_path, "p.png"), u8 / 255))
    cmyk = save(Image.fromarray(paper_with_ink(INK)).convert("CMYK"), tmp_path, "cmyk.jpg", quality=95)
    out.append(("cmyk jpeg, blue ink on paper", cmyk, seen_as_grey(cmyk)))
    out.append(("16-bit grey", save(Image.fromarray(u8.astype(np.uint16) * 257), tmp_path, "g16.png"), u8 / 255))
    out.append(("32-bit integer", save(Image.fromarray(u8.astype(np.int32) * 257), tmp_path, "i32.tif"), u8 / 255))
    out.append(("32-bit float", save(Image.fromarray(u8.astype(np.float32) / 255), tmp_path, "f32.tif"), u8 / 255))
    alpha = (INK * 255).round().astype(np.uint8)
    la = np.stack([np.zeros_like(alpha), alpha], -1)
    out.append(("grey+alpha, black ink", save(Image.fromarray(la, "LA"), tmp_path, "la.png"), 1 - alpha / 255))
    white = np.dstack([np.full(alpha.shape + (3,), 255, np.uint8), alpha])
    out.append(("rgba, white ink on transparent", save(Image.fromarray(white, "RGBA"), tmp_path, "w.png"), 1 - alpha / 255))
    red = np.dstack([np.full(alpha.shape + (3,), (200, 20, 20), np.uint8), alpha])
    out.append(("rgba, red ink on transparent", save(Image.fromarray(red, "RGBA"), tmp_path, "r.png"),
                1 - alpha / 255 * (1 - Image.new("RGB", (1, 1), (200, 20, 20)).convert("L").getpixel((0, 0)) / 255)))
    bits = paper > 0.5
    out.append(("1-bit", save(Image.fromarray(bits), tmp_path, "b.png"), bits.astype(np.float32)))
    frames = [Image.fromarray(u8).convert("P"), Image.fromarray(np.random.default_rng(0).integers(0, 255, u8.shape, np.uint8)).convert("P")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out.append(("animated gif", gif, u8 / 255))
    exif = Image.Exif()
    exif[0x0112] = 6                                                             # stored turned: rotate 90 cw to view
    stored = Image.fromarray(u8).transpose(Image.Transpose.ROTATE_90)
    out.append(("exif-rotated", save(stored, tmp_path, "rot.png", exif=exif), u8 / 255))
    big = 1 - seven(size=90, offset=(20, 1010), canvas=1200)
    out.append(("small digit in a corner of a large canvas", save(Image.fromarray((big * 255).round().astype(np.uint8)),
                                                                   tmp_path, "corner.png"), big))
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return kinds(tmp_path_factory.mktemp("kinds"))


KINDS = ["palette", "cmyk jpeg, blue ink on paper", "16-bit grey", "32-bit integer", "32-bit float",
         "grey+alpha, black ink", "rgba, white ink on transparent", "rgba, red ink on transparent", "1-bit",
         "animated gif", "exif-rotated", "small digit in a corner of a large canvas"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_file_reads_as_its_plain_grey_png(kind, files, tmp_path):
    name, path, grey = next(k for k in files if k[0] == kind)
    want = model_input(grey_png(grey, tmp_path))
    got = model_input(path)
    assert want.max() == 1 and (want > 0.5).sum() > 20          # the reference is a real digit
    diff = np.abs(got - want)
    # equal up to 8-bit rounding; a low-contrast ink may move the ink's bounding box by a pixel
    assert diff.mean() < 0.005 and diff.max() < 0.12, (name, diff.mean(), diff.max())
    assert np.array_equal(model_input(Image.open(path)), got)   # an opened PIL image reads the same


def test_the_note_says_each_kind_of_file_in_words(files):
    """The note a student reads names the picture's kind in words, not Pillow's mode codes (L, I;16, P)."""
    from spiking_diffusion.image_input import mode_words

    said = {}
    for name, path, _ in files:
        with Image.open(path) as im:
            mode = im.mode
        note = prepare_image(path, 1, "mnist")[1]
        said[mode] = note.split(";")[0]
        assert note.startswith("read ") and note.split(";")[0].endswith(mode_words(mode)), (name, note)
    assert {"L", "P", "CMYK", "RGBA", "1"} <= said.keys() and any(m.startswith("I;16") for m in said)
    assert not any(part.split()[-1] in ("L", "P", "I", "F", "1", "LA", "RGBA", "CMYK") or "I;16" in part
                   for part in said.values()), said
    assert mode_words("I;16B") == "16-bit greyscale" and mode_words("RGB") == "colour"


def test_mnist_framing(tmp_path):
    from scipy import ndimage

    x = model_input(grey_png(1 - seven(size=90, offset=(5, 600), canvas=800), tmp_path))[0, 0]
    rows, cols = np.nonzero(x > 0.25)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (20, 21)   # the box fits 20x20
    cy, cx = ndimage.center_of_mass(x)
    assert abs(cy - 13.5) <= 0.6 and abs(cx - 13.5) <= 0.6                         # mass centred
    assert x[0].max() == x[-1].max() == x[:, 0].max() == x[:, -1].max() == 0         # background 0
    # Fashion-MNIST: longest side 28, box centred
    f = prepare_image(grey_png(1 - seven(), tmp_path), 1, "fashion-mnist")[0][0, 0]
    rows, cols = np.nonzero(f > 0.25)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 >= 27


def test_inversion_is_decided_by_the_border_not_the_mean(tmp_path):
    bold = np.zeros((100, 100), np.float32)
    bold[8:92, 8:92] = 1.0                     # light ink covering most of the frame on black: mean > 0.5
    bold[40:60, 40:60] = 0
    assert bold.mean() > 0.5
    x = model_input(grey_png(bold, tmp_path))
    assert x[0, 0, 12:16, 12:16].max() < 0.1 and x[0, 0, 5, 14] > 0.9 and x[0, 0, 0, 0] == 0   # not inverted
    dark_on_light, note = prepare_image(grey_png(1 - bold, tmp_path, "neg.png"), 1, "mnist")
    assert np.abs(dark_on_light - x).max() < 1e-6                                 # inverted to the same
    assert "inverted: its border is light" in note                                # and the note says why
    assert "invert" not in prepare_image(grey_png(bold, tmp_path), 1, "mnist")[1]


def test_ink_on_the_wrong_side_of_the_background_is_named_not_just_blank(tmp_path):
    """Dark ink on white with Invert colours 'no' (or light ink on black with 'yes') leaves no light
    ink: the input is blank, and the note says which setting reads the picture (it said 'no ink found')."""
    ink = np.zeros((60, 60), np.float32)
    ink[10:50, 28:32] = 1.0                                                        # a light "1" on black
    for picture, invert, advice in ((1 - ink, "no", "choose Invert colours 'yes'"), (ink, "yes", "choose Invert colours 'no'")):
        x, note = prepare_image(grey_png(picture, tmp_path), 1, "mnist", invert=invert)
        assert x.max() == 0 and "the ink is darker than the background" in note and advice in note
    x, note = prepare_image(grey_png(np.full((60, 60), 0.7, np.float32), tmp_path), 1, "mnist", invert="no")
    assert x.max() == 0 and "no ink found against the background" in note                  # a flat grey: no ink at all
    assert prepare_image(grey_png(1 - ink, tmp_path), 1, "mnist", invert="auto")[0].max() > 0.9   # auto reads it


def test_colour_models_never_auto_invert_and_keep_the_picture(tmp_path):
    rng = np.random.default_rng(0)
    photo = np.clip(rng.normal(200, 30, (64, 48, 3)), 0, 255).astype(np.uint8)   # a bright photo
    path = save(Image.fromarray(photo), tmp_path, "photo.png")
    x, note = prepare_image(path, 3, "cifar10-folder")
    assert x.shape == (1, 3, 28, 28) and x.mean() > 0.6 and "invert" not in note
    want = np.asarray(Image.fromarray(photo[8:56]).resize((28, 28), Image.Resampling.LANCZOS), np.float32) / 255
    assert np.abs(x[0].transpose(1, 2, 0) - want).max() < 0.01                   # centre square, resized
    assert prepare_image(path, 3, "cifar10", invert="yes")[0].mean() < 0.4


def test_arrays_as_the_sketchpad_gives_them():
    a = np.zeros((280, 280, 4), np.uint8)                # black strokes on a transparent canvas
    a[60:220, 130:150, 3] = 255
    x, note = prepare_image(a, 1, "mnist")
    assert x.max() == 1 and x[0, 0, 0, 0] == 0 and "transparent areas made white" in note
    rows, cols = np.nonzero(x[0, 0] > 0.25)
    assert rows.max() - rows.min() + 1 in (20, 21)


def _png_header_only(width, height) -> bytes:
    """A PNG whose header claims ``width x height`` (grey), with a tiny body."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_size_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(9400, 9400))
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(1))
    with pytest.raises(SpikingDiffusionError, match=r"9400x9400 pixels; at most 16,777,216"):
        prepare_image(path)
    assert not decoded and 9400 * 9400 > MAX_PIXELS


@pytest.mark.parametrize("data,match", [
    (b"\x89PNG\r\n\x1a\n not really a png", "could not read the image"),
    (None, "no image given"),
    ("/no/such/file.png", "not found"),
    (np.zeros((4, 4, 5)), "expected an image array"),
    (np.array(["a"]), "expected an image array"),
])
def test_bad_pictures_get_clear_messages(data, match):
    with pytest.raises(SpikingDiffusionError, match=match):
        prepare_image(data)


def test_an_unreadable_files_message_names_it_without_its_folders(tmp_path):
    bad = tmp_path / "deep" / "notimage.png"
    bad.parent.mkdir()
    bad.write_bytes(b"just some text")
    with pytest.raises(SpikingDiffusionError, match=r"this file is not a picture in a format we can read \(accepted: PNG, JPEG") as e:
        prepare_image(bad)
    assert str(tmp_path) not in str(e.value)


@pytest.mark.parametrize("empty", ["path", "bytes", "file"])
def test_an_empty_file_is_said_to_be_empty(tmp_path, empty):
    path = tmp_path / "nothing.png"
    path.write_bytes(b"")
    source = {"path": path, "bytes": b"", "file": io.BytesIO(b"")}[empty]
    with pytest.raises(SpikingDiffusionError, match=r"the file is empty \(0 bytes\)"):
        prepare_image(source)


def test_messages_name_files_without_their_folders():
    from spiking_diffusion.image_input import unreadable_reason

    why = unreadable_reason(OSError("broken data stream when reading image file /tmp/gradio/3f9a/photo.png"))
    assert why == "the file is damaged or truncated (broken data stream when reading image file photo.png)"
    # a system error (it has an errno) is no damaged file: said as it is
    why = unreadable_reason(IsADirectoryError(21, "Is a directory"))
    assert "damaged" not in why and "Is a directory" in why


def test_truncated_file(tmp_path):
    buf = io.BytesIO()
    Image.fromarray((seven() * 255).astype(np.uint8)).save(buf, "PNG")
    with pytest.raises(SpikingDiffusionError, match="damaged or truncated"):
        prepare_image(buf.getvalue()[: len(buf.getvalue()) // 2])
    # a PNG signature whose header breaks off (Pillow: "Truncated File Read" alone) says so in words too
    with pytest.raises(SpikingDiffusionError, match=r"the file is damaged or truncated \(Truncated File Read\)"):
        prepare_image(b"\x89PNG\r\n\x1a\ngarbagegarbagegarbage")
    with pytest.raises(SpikingDiffusionError, match="invert must be one of"):
        prepare_image(buf.getvalue(), invert="maybe")


@pytest.mark.skipif(not (REPO / "assets" / "mnist").is_dir(), reason="bundled MNIST model not present")
def test_every_kind_encodes_to_the_same_digit(files, tmp_path):
    """With the bundled MNIST model and classifier: every kind of file reconstructs to a 7, like its grey PNG."""
    import torch

    from spiking_diffusion import SpikingDiffusionPipeline
    from spiking_diffusion.classifier import default_classifier_dir, load_classifier

    pipe = SpikingDiffusionPipeline.from_pretrained(REPO / "assets" / "mnist")
    clf = load_classifier(default_classifier_dir("mnist"))
    ks = files
    x = np.concatenate([model_input(grey_png(ks[0][2], tmp_path))] + [model_input(p) for _, p, _ in ks])
    with torch.no_grad():
        digits = clf(pipe.decode(pipe.encode(x))).argmax(1).tolist()
    assert digits == [7] * len(x), dict(zip(["plain"] + [k[0] for k in ks], digits))


def test_a_large_pictures_note_says_it_was_reduced_before_its_ink_was_measured():
    """The ink box is measured on the reduced picture: the note says so, so its sizes add up."""
    from spiking_diffusion.image_input import WORK_SIDE

    big = np.zeros((2000, 3000), np.uint8)
    big[500:1500, 1200:1800] = 255                                             # 600x1000 of ink
    note = prepare_image(big, 1, "mnist")[1]
    f = -(-3000 // WORK_SIDE)                                                   # PIL's reduce: sizes round up
    assert f"read 3000x2000 greyscale; reduced to {-(-3000 // f)}x{-(-2000 // f)}; ink {600 // f}x" in note
    assert int(note.split("; ink ")[1].split("x")[1].split()[0]) in (1000 // f, 1000 // f + 1)
    assert "reduced" not in prepare_image(big[:500, :700], 1, "mnist")[1]


@pytest.mark.parametrize("dataset, channels, box", [("mnist", 1, 20), ("fashion-mnist", 1, 28), ("cifar10", 3, 28)])
def test_a_tiny_pictures_note_says_it_was_enlarged(dataset, channels, box):
    """A picture (or ink) with far fewer pixels than the model's input is enlarged into a blur: the
    note says by how much and from how few pixels; a picture of the input's size, ink half the box's
    side or more, or ink that was small only after a large picture was reduced, is not flagged."""
    tiny = np.zeros((5, 5, 3), np.uint8)
    tiny[1:4, 2] = 255                                                         # ink 1 wide, 3 tall
    note = prepare_image(tiny, channels, dataset)[1]
    want = (f"enlarged {28 / 5:.1f}x from only 5x5 pixels, so it looks blocky or blurred" if channels == 3 else
            f"enlarged {box / 3:.1f}x from only 1x3 pixels of ink, so it looks blocky or blurred")
    assert want in note
    fine = np.zeros((28, 28, 3), np.uint8)
    fine[5:5 + box // 2, 12:16] = 255                                          # ink box // 2 tall: enlarged 2x
    assert "enlarged" not in prepare_image(fine, channels, dataset)[1]
    big = np.zeros((3000, 3000, 3), np.uint8)
    big[1000:1000 + box, 1500:1503] = 255                                      # ink 3 x box: reduced to 1 x box/3
    note = prepare_image(big, channels, dataset)[1]
    assert "reduced to" in note and "enlarged" not in note
