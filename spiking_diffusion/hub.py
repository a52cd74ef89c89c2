"""Checkpoints on the Hugging Face Hub: load by repo id, upload a checkpoint folder.

``SpikingDiffusionPipeline.from_pretrained("owner/name")`` downloads the checkpoint's files into
the Hugging Face cache (``huggingface_hub.snapshot_download``; ``HF_HOME``, ``HF_HUB_OFFLINE`` and
``HF_TOKEN`` work as everywhere in that ecosystem) and loads them from there; a local folder is
used as it is. :func:`push_to_hub` uploads a checkpoint folder (``HfApi().upload_folder``).
Errors: :class:`~spiking_diffusion.errors.CheckpointError` with one line saying what to do.
"""
from __future__ import annotations

import re
from pathlib import Path

from .checkpoint import CODE_USAGE_NAME, CONFIG_NAME, WEIGHTS_NAME, check_same_save
from .errors import CheckpointError

HUB_FILES = [CONFIG_NAME, WEIGHTS_NAME, CODE_USAGE_NAME, "README.md"]   # what a checkpoint repo holds
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")                   # owner/name


def is_repo_id(name: str) -> bool:
    """Whether ``name`` has the form of a Hub repo id, ``owner/name``."""
    return bool(_REPO_ID.match(str(name))) and ".." not in str(name) and not str(name).endswith(".")


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointError("loading from or pushing to the Hugging Face Hub needs huggingface_hub "
                              "(pip install huggingface_hub)") from None
    return huggingface_hub


def resolve_checkpoint(name_or_path: str | Path, revision: str | None = None, cache_dir: str | Path | None = None,
                       local_files_only: bool = False, token: str | bool | None = None) -> Path:
    """The local folder of a checkpoint: ``name_or_path`` itself when it exists on disk, else the
    Hub repo ``owner/name`` downloaded into (or found in) the Hugging Face cache.

    local_files_only: use the cache only (as ``HF_HUB_OFFLINE=1`` does). Raises
    :class:`CheckpointError` when neither a local folder nor a reachable / cached Hub repo, and for a
    ``revision`` given with a local folder (it would be ignored)."""
    path = Path(name_or_path)
    if path.exists() or not is_repo_id(str(name_or_path)):
        if revision is not None:                  # it would be ignored: a folder has no revisions
            raise CheckpointError(f"revision {revision!r} names a version of a Hugging Face Hub repo, and "
                                  f"{str(name_or_path)!r} is {'a local folder' if path.exists() else 'no repo id (owner/name)'}; "
                                  "drop revision, or pass the repo id with no folder of that name here")
        return path                               # load_checkpoint names what is wrong with it
    hub = _hub()
    from huggingface_hub import errors

    repo_id = str(name_or_path)
    try:
        folder = hub.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                       local_files_only=local_files_only, allow_patterns=HUB_FILES,
                                       library_name="spiking-diffusion")
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled):
        raise CheckpointError(
            f"{repo_id!r} is not a local folder, and the Hugging Face Hub repo {repo_id} is not in the local cache "
            "while the Hub cannot be reached (offline: HF_HUB_OFFLINE=1, local_files_only or no network); "
            "download it once online, or pass a local checkpoint folder") from None
    except errors.RevisionNotFoundError:
        raise CheckpointError(f"the Hub repo {repo_id} has no revision {revision!r}") from None
    except (errors.RepositoryNotFoundError, errors.GatedRepoError):
        raise CheckpointError(f"{repo_id!r} is neither a local folder nor a Hugging Face Hub repo you can read "
                              "(for a private repo, log in: hf auth login, or set HF_TOKEN)") from None
    except (errors.HfHubHTTPError, OSError) as e:
        raise CheckpointError(f"could not download {repo_id} from the Hugging Face Hub: {str(e).splitlines()[0][:200]}") from None
    return Path(folder)


def push_to_hub(folder: str | Path, repo_id: str, private: bool | None = None, token: str | bool | None = None,
                commit_message: str | None = None, revision: str | None = None) -> str:
    """Upload a checkpoint folder (config.json, model.safetensors, and code_usage.json / README.md
    when present) to the Hub repo ``repo_id`` (created if missing). Returns the commit's URL.
    A code_usage.json the folder lacks is deleted from the repo in the same commit (an earlier
    push's would be shown as this model's code usage); a README.md (model card) on the Hub is kept.
    The folder is checked first (a broken checkpoint is never uploaded)."""
    folder = Path(folder)
    check_same_save(folder)
    if not is_repo_id(repo_id):
        raise CheckpointError(f"a Hub repo id has the form owner/name; got {repo_id!r}")
    hub = _hub()
    api = hub.HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        stale = [] if (folder / CODE_USAGE_NAME).is_file() else [CODE_USAGE_NAME]     # derived data only
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=HUB_FILES,
                                 delete_patterns=stale or None, revision=revision,
                                 commit_message=commit_message or f"Upload spiking-diffusion checkpoint {folder.name}")
    except Exception as e:  # huggingface_hub's HTTP, auth and validation errors
        raise CheckpointError(f"could not push {folder} to the Hub repo {repo_id}: "
                              f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}") from None
    return str(getattr(info, "commit_url", info))
