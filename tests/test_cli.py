"""The command line: train both stages and sample on the synthetic set, and clean user errors."""
from __future__ import annotations

import json
import runpy
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from spiking_diffusion import SpikingDiffusionPipeline
from spiking_diffusion.cli import main

torch.set_num_threads(1)

TRAIN = ["--dataset", "synthetic", "--preset", "tiny", "--epochs", "1", "--limit", "64", "--batch-size", "16",
         "--no-progress", "--log-every", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Run train-vqsvae then train-prior through the CLI (4 steps each); returns the run folders."""
    root = tmp_path_factory.mktemp("cli")
    vq, prior = root / "vq", root / "prior"
    assert main(["train-vqsvae", "--out", str(vq), *TRAIN]) == 0
    assert main(["train-prior", "--out", str(prior), "--vqsvae", str(vq), *TRAIN[2:]]) == 0
    return vq, prior


def _log(path):
    return [json.loads(line) for line in (path / "log.jsonl").read_text().splitlines()]


def test_train_vqsvae_writes_a_run(trained):
    vq, _ = trained
    for name in ("config.json", "model.safetensors", "training_state.safetensors", "log.jsonl"):
        assert (vq / name).is_file(), name
    config = json.loads((vq / "config.json").read_text())
    assert config["denoiser"] is None and config["vqsvae"]["time_steps"] == 4
    assert config["info"]["dataset"] == "synthetic" and config["info"]["steps"] == 4
    assert 0 < config["vqsvae"]["data_variance"] < 1                # set from the training images
    log = _log(vq)
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(np.isfinite(r["total"]) and r["total"] > 0 for r in log)
    assert {"reconstruction", "codebook", "spike_train"} <= set(log[0])


def test_train_prior_writes_a_full_checkpoint(trained):
    vq, prior = trained
    pipe = SpikingDiffusionPipeline.from_pretrained(prior)
    assert pipe.denoiser is not None and pipe.denoiser.cfg.codebook_size == pipe.codebook_size == 32
    assert pipe.info["dataset"] == "synthetic" and pipe.info["stage"] == "prior"
    assert (prior / "tokens_train.npz").is_file() and (prior / "training_state.safetensors").is_file()
    # the prior's checkpoint carries the VQ-SVAE unchanged
    v = SpikingDiffusionPipeline.from_pretrained(vq).vqsvae.state_dict()
    assert all(torch.equal(v[k], pipe.vqsvae.state_dict()[k]) for k in v)
    assert [r["step"] for r in _log(prior)] == [1, 2, 3, 4]


def test_train_decoder_writes_a_checkpoint_with_the_same_prior(trained, tmp_path):
    _, prior = trained
    out = tmp_path / "dec"
    assert main(["train-decoder", "--out", str(out), "--vqsvae", str(prior), *TRAIN[4:]]) == 0
    old, new = (SpikingDiffusionPipeline.from_pretrained(p) for p in (prior, out))
    assert all(torch.equal(v, new.denoiser.state_dict()[k]) for k, v in old.denoiser.state_dict().items())
    assert not torch.equal(old.vqsvae.decoder.out.weight, new.vqsvae.decoder.out.weight)
    assert new.info["stage"] == "prior" and new.info["decoder_steps"] == 4
    assert [r["step"] for r in _log(out)] == [1, 2, 3, 4]


def test_sample_writes_png_and_npy(trained, tmp_path, capsys):
    _, prior = trained
    out = tmp_path / "deep" / "samples"
    assert main(["sample", "--checkpoint", str(prior), "--out", str(out), "--num-images", "4", "--steps", "5",
                 "--seed", "3"]) == 0
    images = np.load(out.with_suffix(".npy"))
    assert images.dtype == np.uint8 and images.shape == (4, 28, 28, 1)
    png = Image.open(out.with_suffix(".png"))
    assert png.size == (2 * 30 + 2, 2 * 30 + 2)                     # a 2x2 grid, 2-pixel padding
    # the same images as the pipeline with the checkpoint's default temperature
    pipe = SpikingDiffusionPipeline.from_pretrained(prior)
    ref = pipe(num_images=4, steps=5, seed=3, sampler=pipe.sampling_defaults)
    assert np.array_equal(images, ref.images)
    assert "4 images" in capsys.readouterr().out
    # sampling options on the command line: the same as the pipeline with them
    assert main(["sample", "--checkpoint", str(prior), "--out", str(out), "--num-images", "3", "--steps", "5",
                 "--seed", "3", "--temperature", "1.2", "--top-p", "0.7", "--corrector-steps", "4",
                 "--corrector-cells", "2"]) == 0
    ref = pipe(num_images=3, steps=5, seed=3, temperature=1.2, top_p=0.7, corrector_steps=4, corrector_cells=2)
    assert np.array_equal(np.load(out.with_suffix(".npy")), ref.images)


def test_sample_out_keeps_dots_in_the_name_and_drops_an_image_ending(trained, tmp_path):
    """--out run-v1.5 writes run-v1.5.png / .npy (not run-v1.png); --out grid.png writes grid.png and
    grid.npy (not grid.png.png)."""
    _, prior = trained
    for given, stem in (("run-v1.5", "run-v1.5"), ("grid.png", "grid"), ("arr.NPY", "arr")):
        assert main(["sample", "--checkpoint", str(prior), "--out", str(tmp_path / given), "--num-images", "1",
                     "--steps", "3"]) == 0
        assert (tmp_path / f"{stem}.png").is_file() and (tmp_path / f"{stem}.npy").is_file(), given
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["run-v1.5.png", "run-v1.5.npy", "grid.png", "grid.npy", "arr.png", "arr.npy"])


@pytest.mark.parametrize("out", [".", "..", "/"])
def test_sample_out_that_names_no_file_is_refused_before_sampling(trained, out, capsys, monkeypatch):
    """--out . wrote nothing and crashed with a traceback ("has an empty name"); --out .. wrote '...png'."""
    _, prior = trained
    monkeypatch.setattr(SpikingDiffusionPipeline, "from_pretrained", lambda *a, **k: pytest.fail("sampled"))
    assert main(["sample", "--checkpoint", str(prior), "--out", out]) == 2
    assert f"--out must end in a file name (e.g. samples/mnist, which writes samples/mnist.png and .npy); got '{out}'" \
        in capsys.readouterr().err


def test_sample_threads_are_applied_and_a_bad_count_is_refused(trained, tmp_path, capsys):
    """--threads N (as for evaluate and training): torch runs N threads, the images are the same;
    0 is refused with a message naming the accepted values, and nothing is written."""
    _, prior = trained
    before = torch.get_num_threads()
    out = tmp_path / "t"
    try:
        torch.set_num_threads(2)
        assert main(["sample", "--checkpoint", str(prior), "--out", str(out), "--num-images", "2", "--steps", "5",
                     "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        pipe = SpikingDiffusionPipeline.from_pretrained(prior)
        assert np.array_equal(np.load(out.with_suffix(".npy")),
                              pipe(num_images=2, steps=5, seed=0, sampler=pipe.sampling_defaults).images)
        capsys.readouterr()
        bad = tmp_path / "bad"
        assert main(["sample", "--checkpoint", str(prior), "--out", str(bad), "--threads", "0"]) == 2
        assert "--threads must be a whole number >= 1; got 0" in capsys.readouterr().err
        assert not bad.with_suffix(".npy").exists() and not bad.with_suffix(".png").exists()
    finally:
        torch.set_num_threads(before)


def test_train_classifier_does_not_replace_a_classifier_unasked(tmp_path, capsys, monkeypatch):
    """train-classifier's default --out is the bundled classifier evaluate scores with: a folder holding a
    classifier is refused before any data is read (it was overwritten without a word); --replace trains
    there; --out naming a file is refused too."""
    import spiking_diffusion.classifier as C

    trained = []
    monkeypatch.setattr(C, "train_classifier", lambda dataset, root, out, **k: trained.append(out) or (None, {}))
    out = tmp_path / "clf"
    out.mkdir()
    (out / "config.json").write_text("{}")
    args = ["train-classifier", "--dataset", "mnist", "--data-root", str(tmp_path / "none"), "--no-download"]
    assert main([*args, "--out", str(out)]) == 2
    assert f"{out} already holds a classifier" in capsys.readouterr().err and not trained
    assert main([*args, "--out", str(out), "--replace"]) == 0 and trained == [out]
    monkeypatch.setattr(C, "default_classifier_dir", lambda dataset: out)            # the default --out likewise
    assert main(args) == 2 and len(trained) == 1
    assert main([*args, "--out", str(out / "config.json")]) == 2
    assert "is a file; a classifier is saved as a folder" in capsys.readouterr().err


def test_sample_nrow_and_device_are_checked_before_sampling(trained, tmp_path, capsys, monkeypatch):
    _, prior = trained
    monkeypatch.setattr(SpikingDiffusionPipeline, "from_pretrained", lambda *a, **k: pytest.fail("sampled"))
    assert main(["sample", "--checkpoint", str(prior), "--out", str(tmp_path / "s"), "--nrow", "-2"]) == 2
    assert "--nrow must be an integer >= 1; got -2" in capsys.readouterr().err
    monkeypatch.undo()
    code = main(["sample", "--checkpoint", str(prior), "--out", str(tmp_path / "s"), "--device", "cuda:999"])
    assert code == 2 and "device 'cuda:999' is missing" in capsys.readouterr().err    # cuda:N is a name sample takes


def test_train_classifier_threads_are_checked_like_every_command(tmp_path, capsys):
    """train-classifier shares --threads with sample, evaluate and training: 0 is refused before any data
    is read, with the same message, and no classifier folder is made."""
    out = tmp_path / "clf"
    assert main(["train-classifier", "--dataset", "mnist", "--data-root", str(tmp_path / "none"), "--out", str(out),
                 "--no-download", "--threads", "0"]) == 2
    assert "--threads must be a whole number >= 1; got 0" in capsys.readouterr().err
    assert not out.exists()


def _user_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_user_errors_exit_2_with_one_line(trained, tmp_path, capsys):
    _, prior = trained
    out = str(tmp_path / "s")
    msg = _user_error(capsys, ["sample", "--checkpoint", str(tmp_path / "missing"), "--out", out])
    assert "missing" in msg
    assert "steps" in _user_error(capsys, ["sample", "--checkpoint", str(prior), "--out", out, "--steps", "60"])
    assert "temperature" in _user_error(capsys, ["sample", "--checkpoint", str(prior), "--out", out,
                                                 "--temperature", "0"])
    assert "top_p" in _user_error(capsys, ["sample", "--checkpoint", str(prior), "--out", out, "--top-p", "0"])
    assert "corrector_cells" in _user_error(capsys, ["sample", "--checkpoint", str(prior), "--out", out,
                                                     "--corrector-steps", "2", "--corrector-cells", "99"])
    assert "/proc/x" in _user_error(capsys, ["sample", "--checkpoint", str(prior), "--out", "/proc/x/y"])
    assert "num_images" in _user_error(capsys, ["sample", "--checkpoint", str(prior), "--out", out,
                                                "--num-images", "0"])
    _user_error(capsys, ["train-prior", "--out", str(tmp_path / "p"), "--vqsvae", str(tmp_path / "none"), *TRAIN[2:]])
    assert "train-decoder" in _user_error(capsys, ["train-decoder", "--out", str(tmp_path / "d"), "--vqsvae", "",
                                                   *TRAIN[4:]])
    assert "resume" in _user_error(capsys, ["train-vqsvae", "--out", str(tmp_path / "fresh"), "--resume", *TRAIN])
    assert "fewer than one batch" in _user_error(
        capsys, ["train-vqsvae", "--out", str(tmp_path / "few"), *TRAIN[:4], "--limit", "8", "--batch-size", "16"])
    assert "mnist" in _user_error(
        capsys, ["train-vqsvae", "--out", str(tmp_path / "m"), "--dataset", "mnist", "--no-download",
                 "--data-root", str(tmp_path / "nodata"), "--preset", "tiny"])
    assert not (tmp_path / "s.png").exists()


def test_bad_arguments_exit_2(capsys):
    for argv in (["sample"], ["sample", "--checkpoint", "x", "--out", "y", "--steps", "many"], ["fly"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


def test_module_entry_point_user_error(tmp_path, monkeypatch, capsys):
    """``python -m spiking_diffusion`` (its __main__, run in this process) exits 2 with one line."""
    monkeypatch.setattr(sys, "argv", ["spiking_diffusion", "sample", "--checkpoint", str(tmp_path / "nope"),
                                      "--out", str(tmp_path / "s")])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("spiking_diffusion", run_name="__main__", alter_sys=True)
    assert info.value.code == 2
    out = capsys.readouterr()
    assert out.err.startswith("error: ") and len(out.err.strip().splitlines()) == 1, out.err
    assert "nope" in out.err and "Traceback" not in out.err and out.out == ""
