"""``--push-to-hub REPO [--private]``: upload a saved model folder (weights, tokenizer, model
card, audit record, train log) to the Hugging Face Hub with :class:`huggingface_hub.HfApi`.

:func:`check_push` runs before any work (offline mode or no token fail at once, not after a
long run); :func:`push_folder` runs after the output is published, so a failed upload never
loses the saved model. The endpoint is ``HF_ENDPOINT`` (default https://huggingface.co).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ConfigError, UnilogitError

_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.\-]*/)?[A-Za-z0-9][\w.\-]*$")


class PushError(UnilogitError):
    """The upload failed (the saved model is kept; the message says how to retry)."""


def check_push(repo_id: str) -> None:
    """ConfigError unless ``repo_id`` is a valid repository name, the Hub is not in offline mode
    and a token is available (``HF_TOKEN`` or ``hf auth login``)."""
    from huggingface_hub import get_token

    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise ConfigError(f"--push-to-hub {repo_id!r}: expected a repository id like 'user/name'")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ConfigError(f"--push-to-hub {repo_id}: HF_HUB_OFFLINE is set; unset it to upload")
    if get_token() is None:
        raise ConfigError(
            f"--push-to-hub {repo_id}: no Hugging Face token; set HF_TOKEN or run `hf auth login`"
        )


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    commit_message: str | None = None,
) -> str:
    """Create ``repo_id`` (a model repository; kept if it exists) and upload every file of
    ``folder`` in one commit. Returns the commit's URL; :class:`PushError` on failure."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    api = HfApi()
    message = commit_message or f"unilogit: upload {folder.name}"
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(
            repo_id=repo.repo_id,
            folder_path=folder,
            repo_type="model",
            commit_message=message,
        )
    except Exception as e:  # HTTP errors, connection errors (httpx or requests), bad files
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PushError(
            f"upload of {folder} to {repo_id} failed ({first}); the model is saved in {folder}; "
            f"retry with: hf upload {repo_id} {folder}"
        ) from None
    return str(info.commit_url)
