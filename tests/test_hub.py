"""Loading from and pushing to the Hugging Face Hub, without network (huggingface_hub patched)."""
import shutil

import huggingface_hub
import numpy as np
import pytest
from huggingface_hub import constants

from spiking_diffusion import CheckpointError, SpikingDiffusionPipeline
from spiking_diffusion.cli import main
from spiking_diffusion.hub import HUB_FILES, is_repo_id, push_to_hub


@pytest.fixture
def no_network(monkeypatch):
    """Any real request to the Hub fails the test."""
    def refuse(*a, **k):
        raise AssertionError("the Hub must not be contacted")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", refuse)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", refuse)


def test_repo_ids():
    assert is_repo_id("owner/name") and is_repo_id("a-b/c.d_e")
    assert not any(map(is_repo_id, ["name", "a/b/c", "/abs/path", "./x", "owner/..", "../x", ""]))


def test_a_local_folder_never_asks_the_hub(tiny_checkpoint, no_network, tmp_path, monkeypatch):
    pipe = SpikingDiffusionPipeline.from_pretrained(tiny_checkpoint)
    assert pipe.path == tiny_checkpoint
    # a relative 'owner/name' path that exists on disk is the local folder, not a repo
    shutil.copytree(tiny_checkpoint, tmp_path / "runs" / "tiny")
    monkeypatch.chdir(tmp_path)
    assert SpikingDiffusionPipeline.from_pretrained("runs/tiny").info["dataset"] == "synthetic"
    with pytest.raises(CheckpointError, match="not a directory"):          # neither a folder nor a repo id
        SpikingDiffusionPipeline.from_pretrained("no/such/folder")
    with pytest.raises(CheckpointError, match="revision 'v1' names a version of a Hugging Face Hub repo, and "
                                              "'runs/tiny' is a local folder"):   # it used to be ignored
        SpikingDiffusionPipeline.from_pretrained("runs/tiny", revision="v1")


def test_a_repo_id_is_downloaded_into_the_cache(tiny_checkpoint, tiny_pipeline, tmp_path, monkeypatch):
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        snapshot = tmp_path / "cache" / repo_id.replace("/", "--")
        shutil.copytree(tiny_checkpoint, snapshot, dirs_exist_ok=True)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    pipe = SpikingDiffusionPipeline.from_pretrained("someone/tiny-spiking", revision="v1", local_files_only=True)
    (repo_id, kw), = calls
    assert repo_id == "someone/tiny-spiking" and kw["revision"] == "v1" and kw["local_files_only"] is True
    assert {"config.json", "model.safetensors"} <= set(kw["allow_patterns"])
    assert pipe.path == tmp_path / "cache" / "someone--tiny-spiking"
    assert np.array_equal(pipe(2, 4, seed=1).tokens, tiny_pipeline(2, 4, seed=1).tokens)
    # the command line takes a repo id wherever it takes a checkpoint
    out = tmp_path / "samples"
    assert main(["sample", "--checkpoint", "someone/tiny-spiking", "--out", str(out), "--num-images", "2",
                 "--steps", "4"]) == 0 and out.with_suffix(".npy").is_file()


def test_evaluate_records_only_into_a_local_folder(tiny_checkpoint, tmp_path, monkeypatch):
    """--record writes into the checkpoint folder: refused for a checkpoint read from the Hub cache."""
    from spiking_diffusion.evaluation import evaluate
    from spiking_diffusion.errors import SpikingDiffusionError

    snapshot = shutil.copytree(tiny_checkpoint, tmp_path / "cache" / "snapshot")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **k: str(snapshot))
    before = (snapshot / "config.json").read_text()
    with pytest.raises(SpikingDiffusionError, match="--record writes into the checkpoint folder"):
        evaluate("someone/tiny-spiking", "unused", tmp_path / "eval", record=True, num_samples=8, sweeps=False)
    assert (snapshot / "config.json").read_text() == before and not (tmp_path / "eval").exists()


@pytest.mark.parametrize("how", ["local_files_only", "HF_HUB_OFFLINE"])
def test_offline_without_a_cached_copy_says_so(tmp_path, monkeypatch, how):
    """The real huggingface_hub, an empty cache, no network allowed: one clear CheckpointError."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    kwargs = {"cache_dir": tmp_path / "hf" / "hub"}
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    else:
        kwargs["local_files_only"] = True
    with pytest.raises(CheckpointError, match="not in the local cache.*offline") as info:
        SpikingDiffusionPipeline.from_pretrained("someone/not-cached", **kwargs)
    assert "\n" not in str(info.value)


def test_push_to_hub_uploads_a_checked_folder(tiny_checkpoint, tiny_pipeline, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **k: calls.append(("create", repo_id, k)))

    def upload_folder(self, **k):
        calls.append(("upload", k["repo_id"], k))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{k['repo_id']}/commit/abc"})()

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert push_to_hub(tiny_checkpoint, "me/tiny", private=True) == "https://huggingface.co/me/tiny/commit/abc"
    (_, rid, create), (_, rid2, up) = calls
    assert rid == rid2 == "me/tiny" and create["private"] is True and create["exist_ok"] is True
    assert up["folder_path"] == str(tiny_checkpoint) and up["allow_patterns"] == HUB_FILES
    assert not (tiny_checkpoint / "code_usage.json").is_file() and not (tiny_checkpoint / "README.md").is_file()
    assert up["delete_patterns"] == ["code_usage.json"]       # an earlier push's usage goes; a model card stays
    shutil.copytree(tiny_checkpoint, tmp_path / "with_usage")
    (tmp_path / "with_usage" / "code_usage.json").write_text("{}")
    calls.clear()
    push_to_hub(tmp_path / "with_usage", "me/tiny")
    assert calls[1][2]["delete_patterns"] is None
    # a pipeline pushes what save_pretrained writes
    calls.clear()
    seen = {}
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder",
                        lambda self, **k: seen.update(files=sorted(p.name for p in __import__("pathlib").Path(k["folder_path"]).iterdir())) or "url")
    assert tiny_pipeline.push_to_hub("me/tiny") == "url"
    assert {"config.json", "model.safetensors"} <= set(seen["files"])
    # nothing is uploaded from a broken folder or to a malformed repo id
    calls.clear()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="must hold config.json"):
        push_to_hub(tmp_path / "empty", "me/tiny")
    with pytest.raises(CheckpointError, match="owner/name"):
        push_to_hub(tiny_checkpoint, "not a repo")
    assert calls == []


def test_push_to_hub_command(tiny_checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **k: None)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **k: "https://hub/commit")
    assert main(["push-to-hub", "--checkpoint", str(tiny_checkpoint), "--repo", "me/tiny"]) == 0
    assert "https://hub/commit" in capsys.readouterr().out
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder",
                        lambda self, **k: (_ for _ in ()).throw(RuntimeError("401 Unauthorized")))
    assert main(["push-to-hub", "--checkpoint", str(tiny_checkpoint), "--repo", "me/tiny"]) == 2
    assert "401 Unauthorized" in capsys.readouterr().err
