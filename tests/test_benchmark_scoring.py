"""The benchmark scripts that score checkpoints: each by its own data set."""
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from spiking_diffusion.checkpoint import update_metadata
from spiking_diffusion.data import load_images

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compare_settings as C  # noqa: E402

torch.set_num_threads(1)


def test_each_checkpoint_is_scored_with_its_own_data_sets_classifier(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """Two checkpoints of two data sets in one call: the second must not be scored by the first's
    classifier against the first's test split (it was: an MNIST row scored by the Fashion-MNIST classifier)."""
    folders = {}
    for dataset in ("mnist", "fashion-mnist"):
        folders[dataset] = shutil.copytree(tiny_checkpoint, tmp_path / dataset)
        update_metadata(folders[dataset], info={"dataset": dataset})
    loaded = []
    monkeypatch.setattr(C, "find_classifier_dir", lambda dataset: f"classifier of {dataset}")
    monkeypatch.setattr(C, "load_classifier", lambda where: where)
    monkeypatch.setattr(C, "load_images", lambda dataset, *a, **k: loaded.append(dataset) or load_images("synthetic", limit=8))
    monkeypatch.setattr(C.Reference, "of", classmethod(lambda cls, clf, images, seed: f"test split for {clf}"))
    rows = []
    monkeypatch.setattr(C, "classifier_metrics", lambda clf, images, ref: rows.append((clf, ref)) or {"fd": float(len(images))})
    C.main(["--samples", "4", "--seed", "0", f"{folders['fashion-mnist']}:T=1.0", f"{folders['mnist']}:T=1.0",
            f"{folders['fashion-mnist']}:T=0.8"])
    assert rows == [("classifier of fashion-mnist", "test split for classifier of fashion-mnist"),
                    ("classifier of mnist", "test split for classifier of mnist"),
                    ("classifier of fashion-mnist", "test split for classifier of fashion-mnist")]
    assert loaded == ["fashion-mnist", "mnist"]                          # each test split read once
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [Path(r["checkpoint"]).name for r in lines] == ["fashion-mnist", "mnist", "fashion-mnist"]
    assert all(r["fd"] == 4.0 for r in lines)


def test_benchmarks_comparing_on_one_data_set_refuse_mixed_checkpoints(tiny_checkpoint, tmp_path):
    """recon_metrics and prior_elbo score every checkpoint on the same images: checkpoints of two data
    sets are refused, naming them, before any image is read."""
    import prior_elbo
    import recon_metrics

    other = shutil.copytree(tiny_checkpoint, tmp_path / "fashion")
    update_metadata(other, info={"dataset": "fashion-mnist"})
    for script in (recon_metrics, prior_elbo):
        with pytest.raises(SystemExit, match=r"different data sets \(synthetic, fashion-mnist\)"):
            script.main([str(tiny_checkpoint), str(other), "--data-root", str(tmp_path / "no data")])


def _fake_scoring(module, monkeypatch, scored: list, seeds: list | None = None):
    """The classifier and test split replaced by stand-ins; each scored image batch goes to ``scored``,
    the seed of each reference subset (the test images recall is counted against) to ``seeds``."""
    seeds = [] if seeds is None else seeds
    monkeypatch.setattr(module, "find_classifier_dir", lambda dataset: dataset)
    monkeypatch.setattr(module, "load_classifier", lambda where: where)
    monkeypatch.setattr(module, "load_images", lambda dataset, *a, **k: load_images("synthetic", limit=8))
    monkeypatch.setattr(module.Reference, "of", classmethod(lambda cls, clf, images, seed: seeds.append(seed)))
    monkeypatch.setattr(module, "classifier_metrics", lambda clf, images, ref: scored.append(images) or {"fd": 1.0})


def _changed_copy(checkpoint, out, part):
    """A copy of ``checkpoint`` whose VQ-SVAE has ``part(vqsvae)``'s first weight scaled by 1.5."""
    from spiking_diffusion.checkpoint import load_checkpoint, save_checkpoint

    vq, den, config = load_checkpoint(checkpoint)
    with torch.no_grad():
        next(part(vq).parameters()).mul_(1.5)
    save_checkpoint(out, vq, den, config["info"], config["metrics"])
    return out


def test_compare_decoders_scores_each_decoder_on_the_same_kept_tokens(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """The prior's own decoder on the kept tokens gives exactly compare_settings' (evaluate's) images;
    a second call reads the tokens back instead of sampling; another seed samples again; a decoder
    trained on (same encoder and codebook) is scored on the same tokens and gives other images."""
    import compare_decoders as D

    decoder = _changed_copy(tiny_checkpoint, tmp_path / "decoder", lambda vq: vq.decoder)  # a decoder trained on
    settings, seeds = [], []
    _fake_scoring(C, monkeypatch, settings, seeds)
    C.main(["--samples", "4", "--seed", "3", str(tiny_checkpoint)])
    scored = []
    _fake_scoring(D, monkeypatch, scored, seeds)
    kept = tmp_path / "tokens.npz"
    args = ["--samples", "4", "--seed", "3", "--prior", str(tiny_checkpoint), "--tokens", str(kept), str(decoder)]
    D.main(args)
    assert kept.is_file() and len(scored) == 2
    assert seeds == [3, 3]                                                # evaluate --seed 3's test subset, in both
    assert (scored[0] == settings[0]).all()                               # the prior's own decoder: evaluate's images
    assert not (scored[1] == scored[0]).all()                             # the other decoder reads the same tokens
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"decoder"')]
    assert [Path(r["decoder"]).name for r in lines] == ["tiny", "decoder"]

    def sampling(*a, **k):
        raise RuntimeError("sampled again")

    monkeypatch.setattr(D, "generate", sampling)
    D.main(args)                                                          # read back: no sampling
    assert len(scored) == 4 and all((a == b).all() for a, b in zip(scored[2:], scored[:2]))
    with pytest.raises(RuntimeError, match="sampled again"):              # another seed: other tokens
        D.main([*args[:3], "4", *args[4:]])


def test_compare_decoders_refuses_a_decoder_of_other_tokens(tiny_checkpoint, tmp_path, monkeypatch):
    import compare_decoders as D

    other = _changed_copy(tiny_checkpoint, tmp_path / "other", lambda vq: vq.quantizer)
    _fake_scoring(D, monkeypatch, [])
    with pytest.raises(SystemExit, match="tokenises differently"):
        D.main(["--samples", "2", "--prior", str(tiny_checkpoint), str(other)])


def test_guided_sampling_without_guidance_or_schedule_draws_the_plain_samples(tiny_checkpoint):
    """Autoguidance at weight 0, or guided by the prior itself, changes no draw (log-softmax only shifts
    each position's logits); a constant corrector schedule at the checkpoint's own count neither."""
    import guided_sampling as G
    from spiking_diffusion import SpikingDiffusionPipeline

    sampler = dict(corrector_steps=3, corrector_cells=4, corrector_temperature=0.5)
    plain = SpikingDiffusionPipeline.from_pretrained(tiny_checkpoint)(4, seed=0, **sampler).tokens
    itself = G.sampler_pipeline(tiny_checkpoint, tiny_checkpoint, None)                # its own prior as guide
    assert (itself(4, seed=0, guidance=2.0, **sampler).tokens == plain).all()
    constant = G.sampler_pipeline(tiny_checkpoint, None, "4..4", rounds=3)             # 4 cells every round
    assert (constant(4, seed=0, **sampler).tokens == plain).all()
    other = G.sampler_pipeline(tiny_checkpoint, None, "12..1", rounds=3)(4, seed=0, **sampler).tokens
    assert not (other == plain).all()                                            # the schedule is used


def test_guided_sampling_refuses_a_guide_at_weight_zero(tiny_checkpoint):
    import guided_sampling as G

    with pytest.raises(SystemExit, match="with guidance 0 .* give --weight W > 0"):   # before any data is read
        G.main(["--guide", str(tiny_checkpoint), "--data-root", "nowhere", str(tiny_checkpoint)])


def test_the_corrector_schedule_goes_from_first_to_last_each_sampling():
    import guided_sampling as G

    seen = []
    correct = G.shrinking_corrector(lambda denoise, x, cells, *a: seen.append(cells), rounds=5, first=20, last=2)
    for _ in range(10):                                                          # two samplings of 5 rounds
        correct(None, None, 8, 0.05, 1.0, None)
    assert seen[:5] == seen[5:] and seen[0] == 20 and seen[4] == 2 and seen[:5] == sorted(seen[:5], reverse=True)


def test_fast_agreement_reports_spikes_logits_and_the_codes_decoded_apart(tiny_checkpoint, monkeypatch):
    """benchmarks/fast_agreement.py: on a checkpoint the fast path agrees (same spikes, logits and images
    within float rounding); a reference decoder that moves one code's image is named by that code."""
    import fast_agreement as F
    from spiking_diffusion import SpikingDiffusionPipeline

    pipe = SpikingDiffusionPipeline.from_pretrained(tiny_checkpoint)
    row = F.agreement(pipe, images=4, calls=2, seed=0)
    assert row["same_spikes"] and row["logits_max_abs"] > 0 and row["logits_max_abs_diff"] < 1e-4
    assert row["codes_decoded_apart"] == [] and row["images_max_abs_diff"] < 1e-5
    plain = F.reference_decode

    def one_code_moved(vq, tokens, mask_id=None):
        out = plain(vq, tokens, mask_id)
        out[tokens[:, 0, 0] == 5] += 0.25                       # every image of code 5 (one grid per code)
        return out
    monkeypatch.setattr(F, "reference_decode", one_code_moved)
    row = F.agreement(pipe, images=4, calls=1, seed=0)
    assert row["codes_decoded_apart"] == [5] and row["images_max_abs_diff"] == pytest.approx(0.25, abs=1e-5)
