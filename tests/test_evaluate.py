"""The classifier and the evaluation, end to end on tiny models and the synthetic data set."""
import argparse
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from spiking_diffusion import SpikingDenoiser, SpikingDiffusionPipeline, VQSVAE, get_preset
from spiking_diffusion import evaluate as E
from spiking_diffusion.evaluation import inception as I
from spiking_diffusion.evaluation import metrics as M
from spiking_diffusion.evaluation import run as R
from spiking_diffusion.evaluation.energy import expected_denoiser_calls
from spiking_diffusion.checkpoint import VQSVAE_METRICS, read_config, update_metadata
from spiking_diffusion.classifier import TrainClassifierConfig, holdout_split, load_classifier, train_classifier
from spiking_diffusion.cli import add_evaluate_arguments, add_train_classifier_arguments
from spiking_diffusion.data import load_images
from spiking_diffusion.errors import SettingError

torch.set_num_threads(1)  # more threads spin and run far slower on a small shared machine


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A tiny random checkpoint on the synthetic data set; BatchNorm gains raised so that it spikes."""
    torch.manual_seed(0)
    p = get_preset("tiny")
    vq, den = VQSVAE(p.vqsvae), SpikingDenoiser(p.denoiser)
    for m in [*vq.modules(), *den.modules()]:
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.constant_(m.weight, 2.0)
            torch.nn.init.constant_(m.bias, 1.2)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    SpikingDiffusionPipeline(vq, den, config={"info": {"dataset": "synthetic"}, "metrics": {"fid": 123.0}}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "synthetic"
    # 16-d features: the 24 samples of the end-to-end run are enough for a Fréchet distance
    tcfg = TrainClassifierConfig(epochs=1, batch_size=32, max_steps=8, holdout=48, feature_dim=16, log_every=0)
    _, info = train_classifier("synthetic", "unused", out, tcfg=tcfg, log=lambda *a: None)
    assert 0 <= info["test_accuracy"] <= 1 and info["train_images"] == 256 - 48
    return out


def test_classifier_roundtrip(classifier_dir):
    clf = load_classifier(classifier_dir)
    assert (classifier_dir / "model.safetensors").is_file() and not list(classifier_dir.glob("*.pt*"))
    imgs = load_images("synthetic", train=False, limit=10)
    feats, probs = clf.embed(imgs.images)                                   # uint8 NCHW
    feats2, _ = clf.embed(imgs.images.permute(0, 2, 3, 1).numpy())         # uint8 NHWC (pipeline output)
    assert feats.shape == (10, clf.cfg.feature_dim) and probs.shape == (10, 4)
    np.testing.assert_allclose(feats, feats2, rtol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    assert clf.cfg.holdout == 48 and "test_accuracy" in clf.cfg.info
    assert sum(p.numel() for p in clf.parameters()) < 250_000
    args = add_train_classifier_arguments(argparse.ArgumentParser()).parse_args(["--dataset", "mnist"])
    assert args.epochs >= 1 and args.out is None


def test_a_holdout_above_a_fifth_of_the_train_split_is_refused_not_cut(tmp_path):
    """The synthetic train split has 256 images: --holdout 52 (above 51) is refused by name, with the
    limit and why, and nothing is written; 51 is accepted (it was silently cut to 51 before)."""
    tcfg = TrainClassifierConfig(epochs=1, batch_size=32, max_steps=1, holdout=52, feature_dim=16, log_every=0)
    with pytest.raises(SettingError, match=r"--holdout must be an integer in 1\.\.51; got 52 \(at most a fifth of the "
                                           r"256 training images of synthetic\)"):
        train_classifier("synthetic", "unused", tmp_path / "no", tcfg=tcfg, log=lambda *a: None)
    assert not (tmp_path / "no").exists()
    tcfg = TrainClassifierConfig(epochs=1, batch_size=32, max_steps=1, holdout=51, feature_dim=16, log_every=0)
    train_classifier("synthetic", "unused", tmp_path / "yes", tcfg=tcfg, log=lambda *a: None)
    assert load_classifier(tmp_path / "yes").cfg.holdout == 51


def test_missing_inception_weights_are_refused_before_generating(tiny_ckpt, tmp_path, monkeypatch):
    """A mistyped --inception-weights was found only after every sample was generated (and the run ended
    without its FIDs); it is refused first, by its path."""
    from spiking_diffusion import SpikingDiffusionPipeline

    monkeypatch.setattr(SpikingDiffusionPipeline, "from_pretrained", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(E.SpikingDiffusionError, match=r"--inception-weights .*typo\.pth: no such file"):
        E.evaluate(tiny_ckpt, "unused", tmp_path / "out", num_samples=8, sweeps=False,
                 inception_weights=str(tmp_path / "typo.pth"))
    assert not (tmp_path / "out").exists()


def test_holdout_split():
    fit, held = holdout_split(100, 20, seed=0)
    assert len(fit) == 80 and len(held) == 20 and sorted(fit.tolist() + held.tolist()) == list(range(100))
    assert held.tolist() != list(range(80, 100))                        # random: class-sorted sets stay mixed
    assert holdout_split(100, 20, seed=0)[1].tolist() == held.tolist()  # reproducible
    assert holdout_split(100, 20, seed=None)[1].tolist() == list(range(80, 100))


def test_evaluate_end_to_end(tiny_ckpt, classifier_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))  # no Inception weights anywhere
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, ckpt)
    out = tmp_path / "eval"
    logs = []
    report = E.evaluate(ckpt, "unused", out, log=logs.append, num_samples=24, classifier=str(classifier_dir),
                        inception_weights=None, temperatures=("1.0", "1.5..0.5"), top_ps=(0.9,), steps_sweep=(4,),
                        sweep_samples=8, recon_samples=40, spike_samples=8, batch_size=16, record=True,
                        temperature=0.9, temperature_end=0.4, top_p=0.95, corrector_steps=2, corrector_cells=3,
                        corrector_temperature=0.4, corrector_sweep=(0,))
    saved = json.loads((out / "report.json").read_text())
    assert saved == report
    assert {"inception", "classifier", "model", "sweeps", "headline", "messages", "settings"} <= set(saved)
    for kind in ("standard", "paper"):
        entry = saved["inception"][kind]
        assert entry["fid"] is None and "not computed" in entry["message"] and entry["protocol"]
        assert "torch's hub cache" in entry["message"] and str(tmp_path) not in entry["message"]  # no machine's path
    assert any(str(tmp_path / "empty_hub") in line for line in logs)          # the log names this machine's folder
    hub = str(tmp_path / "empty_hub")                                          # the report does not
    assert hub not in json.dumps(saved) and hub not in (out / "summary.md").read_text()
    for key in ("generated", "real_heldout", "reconstructed_heldout"):
        c = saved["classifier"][key]
        assert {"fd", "precision", "recall", "confident_share", "class_entropy"} <= set(c)
        assert c["fd"] >= 0 and 0 <= c["precision"] <= 1 and 0 <= c["class_entropy"] <= 1
    assert saved["classifier"]["generated"]["n"] == 24 and saved["classifier"]["real_heldout"]["n"] == 24
    # the reconstructions are of the held-out images: the same count, not the same images
    recon, real = saved["classifier"]["reconstructed_heldout"], saved["classifier"]["real_heldout"]
    assert recon["n"] == 24 and recon["fd"] != real["fd"]
    m = saved["model"]
    assert 0 <= m["recon_mse"] < 1 and -1 <= m["recon_ssim"] <= 1 and m["recon_images"] == 40
    assert 1 <= m["codebook_test"]["perplexity"] <= 32 and len(m["codebook_test"]["counts"]) == 32
    assert set(m["firing_rates"]["denoiser_sampling"]) == {"lif1", "conv2.2", "conv3.2", "conv4.2", "conv5.2"}
    for group in ("denoiser_sampling", "vqsvae_test_images", "vqsvae_generated_tokens"):
        assert all(0 < r < 1 for r in m["firing_rates"][group].values()), group     # the fixture's models spike
    e = m["energy"]["per_image"]
    assert e["sops"] > 0 and 0 < e["energy_ratio"] < 10 and e["ann_macs"] > 0
    assert m["energy"]["denoiser_calls_per_image"] == pytest.approx(expected_denoiser_calls(49, 49) + 2)  # + 2 corrector rounds
    # the 2 corrector calls are priced at the corrector's own firing rates (3 cells masked), not the steps'
    en = m["energy"]
    assert set(m["firing_rates"]["denoiser_corrector"]) == set(m["firing_rates"]["denoiser_sampling"])
    assert m["firing_rates"]["denoiser_corrector"] != m["firing_rates"]["denoiser_sampling"]
    calls = en["denoiser_calls_per_image"]
    want = ((calls - 2) * en["denoiser_per_call"]["snn_energy_pj"] + 2 * en["denoiser_per_corrector_call"]["snn_energy_pj"]
            + en["decode_per_image"]["snn_energy_pj"])
    assert e["snn_energy_pj"] == pytest.approx(want) and "the corrector's in one of its rounds (3 cells masked)" in en["assumptions"]
    assert [(r["sweep"], r["temperature"], r["top_p"], r["corrector_steps"], r["steps"], r["n"]) for r in saved["sweeps"]] == [
        ("temperature", "1", 0.95, 2, 49, 8), ("temperature", "1.5..0.5", 0.95, 2, 49, 8),
        ("top_p", "0.9..0.4", 0.9, 2, 49, 8), ("corrector", "0.9..0.4", 0.95, 0, 49, 8),
        ("steps", "0.9..0.4", 0.95, 2, 4, 8)]
    assert "fd" in saved["sweeps"][4]
    summary = (out / "summary.md").read_text()
    assert "not computed" in summary and "real held-out" in summary and (out / "samples.png").is_file()
    assert "temperature 0.9..0.4, top-p 0.95, corrector 2 rounds x 3 cells at temperature 0.4" in summary
    assert SpikingDiffusionPipeline.from_pretrained(ckpt).sampling_defaults.to_dict() == {   # --record: the new defaults
        "temperature": 0.9, "temperature_end": 0.4, "top_p": 0.95, "corrector_steps": 2, "corrector_cells": 3,
        "corrector_temperature": 0.4, "guidance": 0.0}
    metrics = read_config(ckpt)["metrics"]
    assert metrics == saved["headline"] and "classifier_fd" in metrics and "recon_mse" in metrics
    assert set(VQSVAE_METRICS) <= set(metrics)          # what a new prior on this VQ-SVAE keeps: all recorded
    assert "fid" not in metrics                          # the old figure went: it described other samples
    assert metrics["eval_settings"]["recon_images"] == 40                # what the figures measured, recorded with them
    assert metrics["eval_settings"]["classifier"] == str(classifier_dir)
    usage = json.loads((ckpt / "code_usage.json").read_text())                 # the test split's code usage
    assert usage["split"] == "test" and usage["dataset"] == "synthetic" and usage["images"] == 40
    assert len(usage["counts"]) == 32 and usage["counts"] == m["codebook_test"]["counts"]
    assert np.array(usage["per_position"]).shape == (49, 32) and np.sum(usage["per_position"], 0).tolist() == usage["counts"]
    assert not list(ckpt.glob("*.tmp"))
    assert SpikingDiffusionPipeline.from_pretrained(ckpt).test_code_usage() == usage
    copy = SpikingDiffusionPipeline.from_pretrained(ckpt).save_pretrained(tmp_path / "copy")
    assert SpikingDiffusionPipeline.from_pretrained(copy).test_code_usage() == usage    # saved along


def test_a_setting_in_two_sweeps_is_generated_once(tiny_ckpt, classifier_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))
    calls, real = [], R.generate
    monkeypatch.setattr(R, "generate", lambda *a, **k: calls.append(a[2:4]) or real(*a, **k))
    report = E.evaluate(tiny_ckpt, "unused", tmp_path / "eval", log=lambda *a: None, num_samples=8,
                        classifier=str(classifier_dir), temperatures=("0.65", "1.0"), steps_sweep=(49, 4),
                        sweep_samples=8, recon_samples=8, spike_samples=4, batch_size=8)
    assert len(calls) == 1 + 3                           # the main run; 0.65 at 49 steps == steps 49; 1.0; 4 steps
    assert report["settings"]["steps"] == 49 and calls[0][0] == 49          # unset: all N steps
    rows = {(r["sweep"], r["temperature"], r["steps"]): r for r in report["sweeps"]}
    assert len(rows) == 4 and rows[("temperature", "0.65", 49)]["fd"] == rows[("steps", "0.65", 49)]["fd"]


def test_record_needs_the_steps_and_order_the_checkpoint_samples_with(tiny_ckpt, classifier_dir, tmp_path):
    """--record puts the figures beside the settings pipe(), sample and the studio use (all N steps, random
    order): figures from fewer steps or the confidence order are refused before any work; steps beyond N too."""
    ckpt = shutil.copytree(tiny_ckpt, tmp_path / "ckpt")
    before = (ckpt / "config.json").read_text()
    kw = dict(log=lambda *a: None, num_samples=24, classifier=str(classifier_dir), sweeps=False, recon_samples=8,
              spike_samples=4, batch_size=8, record=True)
    for bad, match in (({"steps": 25}, "25 steps in random order"), ({"order": "confidence"}, "49 steps in confidence order"),
                       ({"steps": 50}, r"steps must be an integer in 1..49; got 50"),
                       ({"dataset": "mnist"}, r"trained on 'synthetic', and its recorded figures would come from 'mnist'")):
        with pytest.raises(E.SpikingDiffusionError, match=match):
            E.evaluate(ckpt, "unused", tmp_path / "refused", **kw, **bad)
    with pytest.raises(E.SpikingDiffusionError, match=r"steps must be an integer in 1..49; got 98"):
        E.evaluate(ckpt, "unused", tmp_path / "refused", **{**kw, "record": False, "sweeps": True, "steps_sweep": (98,)})
    assert (ckpt / "config.json").read_text() == before and not (tmp_path / "refused").exists()


def test_code_usage_only_with_record(tiny_ckpt, classifier_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, ckpt)
    update_metadata(ckpt, info={"temperature": 0.7, "top_p": 0.8})
    report = E.evaluate(ckpt, "unused", tmp_path / "eval", log=lambda *a: None, num_samples=8,
                        classifier=str(classifier_dir), sweeps=False, recon_samples=8, spike_samples=4, batch_size=8)
    s = report["settings"]                                                    # the checkpoint's own settings
    assert (s["temperature"], s["temperature_end"], s["top_p"]) == (0.7, None, 0.8)
    assert not (ckpt / "code_usage.json").exists()
    pipe = SpikingDiffusionPipeline.from_pretrained(ckpt)
    assert pipe.test_code_usage() is None
    assert SpikingDiffusionPipeline(pipe.vqsvae, pipe.denoiser).test_code_usage() is None   # not from a directory
    (ckpt / "code_usage.json").write_text("{not json")
    with pytest.raises(E.SpikingDiffusionError, match="not valid JSON"):
        pipe.test_code_usage()


def test_few_samples_warn_show_the_floor_and_refuse_record(tiny_ckpt, classifier_dir, tmp_path, monkeypatch):
    """No more samples than feature dimensions (8 <= 16): a warning, the real-data floor at the same count
    next to the figure, and --record refused before anything is generated or written."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))
    ckpt = shutil.copytree(tiny_ckpt, tmp_path / "ckpt")
    before = (ckpt / "config.json").read_text()
    kw = dict(log=lambda *a: None, num_samples=8, classifier=str(classifier_dir), sweeps=False, recon_samples=8,
              spike_samples=4, batch_size=8)
    with pytest.raises(E.SpikingDiffusionError, match=r"--record refused: 8 samples .* 16 feature dimensions.*--num-samples 17"):
        E.evaluate(ckpt, "unused", tmp_path / "refused", record=True, **kw)
    assert (ckpt / "config.json").read_text() == before and not (ckpt / "code_usage.json").exists()
    assert not (tmp_path / "refused").exists()
    report = E.evaluate(ckpt, "unused", tmp_path / "eval", **kw)
    c = report["classifier"]
    assert c["generated"]["fd_floor"] == c["real_heldout"]["fd"] and c["generated"]["fd_floor_n"] == 8
    assert "only 8 samples for 16-d" in c["few_samples"] and any("only 8 samples" in m for m in report["messages"])
    summary = (tmp_path / "eval" / "summary.md").read_text()
    assert "**Warning:** only 8 samples" in summary and f"(floor at n=8: {c['real_heldout']['fd']:.3f})" in summary
    # enough samples: no warning, no floor column
    report = E.evaluate(ckpt, "unused", tmp_path / "eval2", **{**kw, "num_samples": 24})
    assert "few_samples" not in report["classifier"] and "fd_floor" not in report["classifier"]["generated"]


def test_frechet_distance_from_few_samples_is_noise():
    """The reason for the warning: two samples of one distribution, n < dim, are far apart."""
    g = np.random.default_rng(0)
    dim = 32
    small = M.fid_from_features(g.normal(size=(10, dim)), g.normal(size=(10, dim)))
    large = M.fid_from_features(g.normal(size=(2000, dim)), g.normal(size=(2000, dim)))
    assert M.too_few_for_frechet(10, dim) and not M.too_few_for_frechet(2000, dim)
    # n samples give a covariance of rank n - 1: still singular at n == dim
    rank = lambda n: np.linalg.matrix_rank(np.cov(g.normal(size=(n, dim)), rowvar=False))  # noqa: E731
    assert rank(dim) < dim == rank(dim + 1)
    assert M.too_few_for_frechet(dim, dim) and not M.too_few_for_frechet(dim + 1, dim)
    assert small > 20 * large


def test_evaluate_cli_arguments(tmp_path):
    p = add_evaluate_arguments(argparse.ArgumentParser())
    a = p.parse_args(["--checkpoint", "c", "--out", "o", "--no-sweeps", "--inception-weights", "x.pth",
                      "--temperatures", "0.5", "1.0..0.5", "--record"])
    assert a.no_sweeps and a.inception_weights == ["x.pth"] and a.temperatures == ["0.5", "1.0..0.5"] and a.record
    assert E.parse_temperature("1.0..0.5") == (1.0, 0.5) and E.parse_temperature("0.8") == (0.8, None)
    with pytest.raises(E.SpikingDiffusionError, match="START..END"):
        E.parse_temperature("warm")


def _cheap_fd(mu1, s1, mu2, s2):
    """Stand-in: scipy's sqrtm of a 2048x2048 matrix takes minutes on a small machine."""
    assert mu1.shape == (2048,) and s1.shape == s2.shape == (2048, 2048)
    return float(((mu1 - mu2) ** 2).sum())


def test_inception_protocols_with_random_weights(tmp_path, monkeypatch):
    """Random Inception weights of both kinds, a handful of images: exercises the code, not the numbers."""
    from torchvision.models import inception_v3

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))
    monkeypatch.setattr(M, "frechet_distance", _cheap_fd)
    monkeypatch.setattr(M, "frechet_distance_svd", _cheap_fd)
    monkeypatch.setattr(I, "INCEPTION_SIZE", 75)   # the smallest input Inception-v3 takes: 16x cheaper
    torch.manual_seed(0)
    tv, fid = tmp_path / "tv.pth", tmp_path / "fid.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), tv)
    torch.save(inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008).state_dict(), fid)
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    found, notes = E.find_inception_weights([str(tv), str(fid), str(tmp_path / "junk.pth"), str(tmp_path / "none.pth")])
    assert found == {"paper": str(tv), "standard": str(fid)} and len(notes) == 2

    test = load_images("synthetic", train=False, limit=3)
    fake = test.floats()[:2].flip(3)
    fed = []
    features = I.inception_features
    monkeypatch.setattr(I, "inception_features", lambda net, images, *a: fed.append(images) or features(net, images, *a))
    cfg = E.EvalConfig(inception_weights=[str(tv), str(fid)], fid_samples=2, paper_samples=2, inception_batch=4, seed=5)
    section = E.inception_section(cfg, fake, test, log=lambda *a: None)
    # standard: the whole test split; the paper's: its first test images, whatever the seed (the authors' loader)
    assert torch.equal(fed[1], test.floats()) and torch.equal(fed[3], test.floats()[:2])
    assert section["standard"]["n_generated"] == 2 and section["standard"]["n_reference"] == 3
    assert section["paper"]["n_generated"] == 2 and section["paper"]["n_reference"] == 2
    assert np.isfinite(section["standard"]["fid"]) and np.isfinite(section["paper"]["fid_svd_root"])
    assert "only 2 generated" in section["standard"]["note"]
    assert (section["standard"]["weights"], section["paper"]["weights"]) == ("fid.pth", "tv.pth")   # no machine's path
    assert str(tmp_path) not in json.dumps(section)


def test_standard_inception_uses_fid_pooling(tmp_path):
    """The hooks give pytorch-fid's FID blocks: average pools that ignore padding, a max pool in Mixed_7c."""
    import torch.nn.functional as F
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    path = tmp_path / "fid.pth"
    torch.save(inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008).state_dict(), path)
    net = E.inception_net(path, "standard")
    with torch.no_grad():
        a, x = net.Mixed_5b, torch.randn(1, 192, 35, 35)
        want = torch.cat([a.branch1x1(x), a.branch5x5_2(a.branch5x5_1(x)),
                          a.branch3x3dbl_3(a.branch3x3dbl_2(a.branch3x3dbl_1(x))),
                          a.branch_pool.forward(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))], 1)
        torch.testing.assert_close(a(x), want)
        e, x = net.Mixed_7c, torch.randn(1, 2048, 8, 8)
        b3, bd = e.branch3x3_1(x), e.branch3x3dbl_2(e.branch3x3dbl_1(x))
        want = torch.cat([e.branch1x1(x), e.branch3x3_2a(b3), e.branch3x3_2b(b3), e.branch3x3dbl_3a(bd),
                          e.branch3x3dbl_3b(bd), e.branch_pool.forward(F.max_pool2d(x, 3, 1, 1))], 1)
        torch.testing.assert_close(e(x), want)


def test_evaluate_refuses_too_few_samples(tiny_ckpt, tmp_path):
    with pytest.raises(E.SpikingDiffusionError, match="num_samples"):
        E.evaluate(tiny_ckpt, "unused", tmp_path / "o", num_samples=3)


def test_reconstructions_are_the_vqsvaes_in_any_batch_size(tiny_pipeline):
    from spiking_diffusion.evaluate import reconstructions

    images = (torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    with torch.inference_mode():
        expected = tiny_pipeline.vqsvae.reconstruct(images.float() / 255.0)
    got, tokens = reconstructions(tiny_pipeline, images, batch_size=4)
    assert torch.equal(torch.from_numpy(tokens), tiny_pipeline.encode(images.float() / 255.0))
    assert got.shape == (10, 1, 28, 28) and torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, images.float() / 255.0, atol=0.05)     # a reconstruction, not the input


def test_reports_name_paths_inside_the_working_folder_relatively(tmp_path, monkeypatch):
    from spiking_diffusion.evaluation.run import _shown_path

    (tmp_path / "assets" / "clf").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert _shown_path(tmp_path / "assets" / "clf") == "assets/clf"
    assert _shown_path("/somewhere/else/clf") == "/somewhere/else/clf"


def test_cifar10s_two_loaders_find_one_classifier(tmp_path, monkeypatch):
    from spiking_diffusion import classifier as C

    monkeypatch.setattr(C, "ASSETS", tmp_path)
    (tmp_path / "cifar10-folder").mkdir()
    assert C.find_classifier_dir("cifar10") == tmp_path / "cifar10-folder"          # the other loader's
    assert C.find_classifier_dir("cifar10-folder") == tmp_path / "cifar10-folder"
    assert C.find_classifier_dir("mnist") == tmp_path / "mnist"                     # no alias: its own
    assert C.default_classifier_dir("cifar10") == tmp_path / "cifar10"              # train-classifier's output


def test_held_out_images_come_from_the_classifiers_own_loader(classifier_dir, monkeypatch):
    """The hold-out indices are positions in the classifier's loader: CIFAR-10's two loaders order the
    images differently, so a model of one is scored on the held-out images of the other's order."""
    from spiking_diffusion.data import ImageSet

    asked = []

    def fake_load(name, root, train=True, download=False, limit=None):
        asked.append(name)
        images = torch.arange(256, dtype=torch.uint8).view(256, 1, 1, 1).expand(256, 1, 28, 28).clone()
        return ImageSet(images, torch.zeros(256, dtype=torch.long), name)

    clf = load_classifier(classifier_dir)
    clf.cfg = replace(clf.cfg, dataset="cifar10-folder")
    monkeypatch.setattr(R, "load_images", fake_load)
    held = R.heldout_images(clf, "unused", 5)
    assert asked == ["cifar10-folder"]
    want = holdout_split(256, clf.cfg.holdout, clf.cfg.holdout_seed)[1][:5]
    assert held[:, 0, 0, 0].tolist() == want.tolist()


def test_evaluate_skips_the_held_out_rows_when_the_classifiers_data_is_missing(tiny_ckpt, classifier_dir, tmp_path):
    clf = tmp_path / "clf"
    shutil.copytree(classifier_dir, clf)
    cfg = json.loads((clf / "config.json").read_text())
    cfg["dataset"] = "mnist"                                   # held out of MNIST, which is not under the root
    (clf / "config.json").write_text(json.dumps(cfg))
    report = E.evaluate(tiny_ckpt, str(tmp_path / "no-data"), tmp_path / "eval", log=lambda *a: None, num_samples=24,
                        classifier=str(clf), inception_weights=None, sweeps=False, recon_samples=8, spike_samples=4,
                        batch_size=16, download=False)
    c = report["classifier"]
    assert "generated" in c and "real_heldout" not in c and "reconstructed_heldout" not in c
    assert any("held-out rows are skipped" in m and "'mnist'" in m for m in report["messages"])
    summary = (tmp_path / "eval" / "summary.md").read_text()
    assert "| generated | 24 |" in summary and "real held-out" not in summary


def test_evaluate_skips_the_held_out_rows_when_the_classifier_holds_out_too_few(tiny_ckpt, classifier_dir, tmp_path):
    """A classifier holding out no more images than k: the k-NN floor cannot be drawn, so the rows are
    skipped with a message (it crashed after the whole generation before)."""
    clf = tmp_path / "clf"
    shutil.copytree(classifier_dir, clf)
    cfg = json.loads((clf / "config.json").read_text())
    cfg["holdout"] = 3
    (clf / "config.json").write_text(json.dumps(cfg))
    report = E.evaluate(tiny_ckpt, "unused", tmp_path / "eval", log=lambda *a: None, num_samples=24, classifier=str(clf),
                        sweeps=False, recon_samples=8, spike_samples=4, batch_size=16)
    c = report["classifier"]
    assert "generated" in c and "real_heldout" not in c and "reconstructed_heldout" not in c
    assert any("holds out only 3 images" in m and "k=3" in m for m in report["messages"])


@pytest.mark.parametrize("name, bad, words", [
    ("recon_samples", -5, "--recon-samples must be an integer >= 1; got -5"),
    ("recon_samples", 0, "--recon-samples must be an integer >= 1; got 0"),
    ("batch_size", 0, "--batch-size must be an integer in 1..1024; got 0"),
    ("batch_size", 5000, "--batch-size must be an integer in 1..1024; got 5000"),
    ("fid_samples", 1, "--fid-samples must be an integer >= 2; got 1"),
    ("paper_samples", 0, "--paper-samples must be an integer >= 2; got 0"),
    ("sweep_samples", 2.5, "--sweep-samples must be an integer >= 1; got 2.5"),
    ("seed", -1, "--seed must be an integer in 0..9223372036854775807; got -1"),
    ("seed", 1.9, "--seed must be an integer"),
])
def test_bad_evaluation_numbers_are_refused_before_any_work(tiny_ckpt, tmp_path, name, bad, words):
    """Each count is checked when the settings are made: a negative --recon-samples silently dropped
    images from the end, a zero --batch-size crashed after the whole generation."""
    with pytest.raises(SettingError) as e:
        E.evaluate(tiny_ckpt, "unused", tmp_path / "o", num_samples=8, **{name: bad})
    assert words in str(e.value)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name, bad", [("holdout", 0), ("holdout", -5), ("epochs", 0), ("batch_size", 0), ("lr", 0),
                                       ("max_steps", 0)])
def test_bad_classifier_training_numbers_are_refused(name, bad):
    with pytest.raises(SettingError, match=f"--{name.replace('_', '-')} must be"):
        TrainClassifierConfig(**{name: bad})


def test_counted_denoiser_calls_are_the_calls_a_traced_run_makes(tiny_pipeline, monkeypatch):
    """A traced run calls the denoiser for every image at its first step (the Unmasking view shows
    each image's prediction), afterwards only for the images that unmask something: the count
    the studio's energy view prices is what the denoiser really ran, corrector rounds included."""
    from spiking_diffusion.evaluation.energy import counted_denoiser_calls

    rows = []
    denoise = tiny_pipeline._denoise
    monkeypatch.setattr(tiny_pipeline, "_denoise", lambda tokens, t: rows.append(len(tokens)) or denoise(tokens, t))
    out = tiny_pipeline(num_images=16, seed=0, trace=True, corrector_steps=2, corrector_cells=3)
    assert rows[0] == 16 and min(rows[1:-2]) < 16                    # every image at the first step, fewer later
    assert counted_denoiser_calls(out.trace) == pytest.approx(sum(rows) / 16)
