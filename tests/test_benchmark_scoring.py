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
    monkeypatch.setattr(C.Reference, "of", classmethod(lambda cls, clf, images: f"test split for {clf}"))
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
