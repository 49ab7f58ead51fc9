"""Model soups: one model whose weights are the (weighted) average of several fine-tuned models.

Wortsman et al. 2022 ("Model soups"): models fine-tuned from one shared starting point (the same
pretrained weights *and* the same freshly initialised head) sit in one basin of the loss, so the
average of their weights is a single model that usually scores like their ensemble, at the cost of
one model. ``wb runs soup OUT A B ...`` makes one from finished runs.

Contract of :func:`make_soup`:
- every ingredient is a model folder of the same kind (``wb_model.json``'s ``kind``) with the same
  weight files (``*.safetensors`` and ``*.pt`` state dicts at its top level), the same tensor names
  and shapes, and the same serving settings (every ``wb_model.json`` field but the descriptive ones in
  :data:`DESCRIPTIVE_FIELDS`, and ``wb_colbert.json``: prompts, answer tokens, templates, markers,
  lengths, pooling; a field the kind's server ignores, :data:`DESCRIPTIVE_BY_KIND`, may differ);
  otherwise :class:`~workbench.errors.UsageError` names the first difference. The
  ``base`` may differ: a fine-tune averaged with the model it started from (WiSE-FT) is a soup too;
- floating-point tensors are averaged with ``weights`` (normalised to sum to 1); other tensors
  (integer buffers such as position ids) must be equal and are copied;
- everything else (config, tokenizer) is copied from the first ingredient; a LoRA ``adapter/`` folder
  is not (the merged weights at the top level are what is averaged); ``wb_model.json`` gains
  ``"soup": {"ingredients": [...], "weights": [...]}``; a layer-wise reranker's per-layer eval figures
  (they measured one ingredient) are dropped, and its ``default_cutoff`` kept only where every
  ingredient chose that layer (else the last layer serves: no early exit was measured for the soup);
- the folder is written whole or not at all (:func:`trainers.runs.staged_folder`).
Averaging models that did not start from one point (two independently initialised heads) gives a
poor model: nothing here can detect that, so the folder records the ingredients for the user to judge.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import InputError, UsageError, first_line

WEIGHT_SUFFIXES = (".safetensors", ".pt")
SERVING_FILES = ("wb_model.json", "wb_colbert.json")  # JSON settings the served model is built from
# wb_model.json fields that describe how an ingredient was made, not how it is served
DESCRIPTIVE_FIELDS = frozenset({"base", "soup", "loss", "group_size", "lora", "lora_r", "distill_weight",
                                "distill_temperature", "temperature", "heads_from", "eval_mrr_by_layer",
                                "default_cutoff", "query_augmentation", "residual"})
# further wb_model.json fields that one kind's server does not read: a cross-encoder serves at 512
# tokens whatever length it trained at (CrossEncoderReranker reads no wb_model.json); the
# layer-wise and LLM rerankers serve at their saved max_length, so for them it stays a serving field
DESCRIPTIVE_BY_KIND = {"cross-encoder": frozenset({"max_length"})}
SKIPPED = ("adapter",)  # a peft adapter is one ingredient's, not the soup's


@dataclass(frozen=True)
class SoupSummary:
    """What :func:`make_soup` wrote."""

    out: Path
    ingredients: tuple[str, ...]
    weights: tuple[float, ...]
    tensors: int
    parameters: int

    def line(self) -> str:
        return (f"{describe(self.ingredients, self.weights)}: {self.tensors} tensors, "
                f"{self.parameters:,} parameters averaged -> {self.out}")


def describe(ingredients, weights) -> str:
    """``soup of a ×0.5 + b ×0.5``: runs by name (``.../runs/a/model`` -> ``a``), folders by theirs."""
    from workbench.variants import short_model_name

    return "soup of " + " + ".join(f"{short_model_name(str(i))} ×{w:.3g}" for i, w in zip(ingredients, weights))


def _weight_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def _load(path: Path) -> dict:
    """The tensors of a weight file; InputError, one line, for one that cannot be read (truncated,
    not a safetensors file, not a torch state dict)."""
    import torch

    try:
        if path.name.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - SafetensorError, UnpicklingError, EOFError, OSError...: one line
        raise InputError(f"cannot read {path}: {first_line(exc)}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{path} is not a state dict of tensors: it cannot be averaged")
    return state


def _save(state: dict, path: Path) -> None:
    import torch

    if path.name.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})
    else:
        torch.save(state, str(path))


def _kind(folder: Path) -> str | None:
    meta = folder / "wb_model.json"
    return _settings(meta).get("kind") if meta.exists() else None


def _settings(path: Path) -> dict:
    """A JSON settings file's object ({} when the file does not exist); UsageError when unreadable."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UsageError(f"{path} is not readable JSON") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a JSON object")
    return data


def normalised_weights(count: int, weights: list[float] | None) -> list[float]:
    """``weights`` scaled to sum to 1 (uniform when None); one per ingredient, each finite and >= 0,
    not all 0, their sum finite (1e308 twice would sum to inf and every scaled weight to 0: an
    all-zero model). Scaled in float64 by the largest first, so a tiny or huge but finite set keeps
    its ratios."""
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise UsageError(f"{len(weights)} weights for {count} models: give one weight per model")
    if not all(math.isfinite(w) for w in weights):
        raise UsageError(f"soup weights must be finite numbers, not {weights}")
    if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise UsageError(f"soup weights must be >= 0 and not all 0, not {weights}")
    if not math.isfinite(sum(weights)):
        raise UsageError(f"soup weights must have a finite sum, not {weights}: give their ratios (e.g. 1,1)")
    largest = max(weights)
    scaled = [float(w) / largest for w in weights]  # in [0, 1]: their sum cannot overflow
    total = math.fsum(scaled)
    return [w / total for w in scaled]


def check_ingredients(folders: list[Path]) -> list[str]:
    """The weight files every ingredient has; :class:`UsageError` when they cannot be averaged."""
    if len(folders) < 2:
        raise UsageError("a soup needs at least two models")
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"no model folder at {folder}")
    seen: set[Path] = set()
    for folder in folders:
        if folder.resolve() in seen:
            raise UsageError(f"{folder} is named twice: name each model once (--weights gives one more weight)")
        seen.add(folder.resolve())
    files = _weight_files(folders[0])
    if not files:
        raise UsageError(f"{folders[0]} has no weight files (*.safetensors, *.pt)")
    kind = _kind(folders[0])
    for folder in folders[1:]:
        if _kind(folder) != kind:
            raise UsageError(f"{folder} is a model of kind '{_kind(folder) or 'plain'}' and {folders[0]} of kind "
                             f"'{kind or 'plain'}': only models of one kind can be averaged")
        if _weight_files(folder) != files:
            raise UsageError(f"{folder} has weight files {_weight_files(folder)}, {folders[0]} has {files}")
    for name in SERVING_FILES:
        first = _serving_settings(folders[0] / name, kind)
        for folder in folders[1:]:
            other = _serving_settings(folder / name, kind)
            differing = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
            if differing:
                key = differing[0]
                raise UsageError(f"{folder} is served with {key} = {json.dumps(other.get(key))} and {folders[0]} "
                                 f"with {json.dumps(first.get(key))} ({name}): only models served alike can be averaged")
    return files


def _serving_settings(path: Path, kind: str | None) -> dict:
    """The fields of a settings file that decide how its model, of ``kind``, is served ({} when it has
    none): all but :data:`DESCRIPTIVE_FIELDS` and the kind's :data:`DESCRIPTIVE_BY_KIND`."""
    ignored = DESCRIPTIVE_FIELDS | DESCRIPTIVE_BY_KIND.get(kind or "", frozenset())
    return {k: v for k, v in _settings(path).items() if k not in ignored}


def make_soup(folders: list[Path], out: Path, weights: list[float] | None = None) -> SoupSummary:
    """Average the models in ``folders`` into the model folder ``out`` (module docstring)."""
    import torch

    from trainers.runs import staged_folder

    folders = [Path(f) for f in folders]
    files = check_ingredients(folders)
    mix = normalised_weights(len(folders), weights)
    averaged: dict[str, dict] = {}
    tensors = parameters = 0
    for name in files:
        states = [_load(folder / name) for folder in folders]
        first = states[0]
        for folder, state in zip(folders[1:], states[1:]):
            if state.keys() != first.keys():
                missing = sorted(set(first) ^ set(state))[:3]
                raise UsageError(f"{folder / name} and {folders[0] / name} hold different tensors (e.g. {missing})")
            for key, value in state.items():
                if value.shape != first[key].shape:
                    raise UsageError(f"{key} in {folder / name} has shape {tuple(value.shape)}, "
                                     f"{tuple(first[key].shape)} in {folders[0] / name}")
        soup = {}
        for key, value in first.items():
            if value.is_floating_point():
                acc = sum(w * state[key].to(torch.float32) for w, state in zip(mix, states))
                soup[key] = acc.to(value.dtype)
                tensors += 1
                parameters += value.numel()
            else:
                if not all(torch.equal(state[key], value) for state in states[1:]):
                    raise UsageError(f"{key} (a {value.dtype} tensor) differs between the models: it cannot be averaged")
                soup[key] = value.clone()
        averaged[name] = soup

    with staged_folder(out) as tmp:
        for item in folders[0].iterdir():
            if item.name in files or item.name in SKIPPED:
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)
        for name, state in averaged.items():
            _save(state, tmp / name)
        meta_path = tmp / "wb_model.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        meta["soup"] = {"ingredients": [str(f) for f in folders], "weights": mix}
        if "eval_mrr_by_layer" in meta:  # a layer-wise reranker: its figures measured the first ingredient
            meta["eval_mrr_by_layer"] = None
            cutoffs = {json.dumps(json.loads((f / "wb_model.json").read_text()).get("default_cutoff"))
                       for f in folders}
            if len(cutoffs) > 1 and isinstance(meta.get("layers"), list) and meta["layers"]:
                meta["default_cutoff"] = meta["layers"][-1]
        meta_path.write_text(json.dumps(meta, indent=2))
    return SoupSummary(out=Path(out), ingredients=tuple(str(f) for f in folders), weights=tuple(mix),
                       tensors=tensors, parameters=parameters)


def ingredient_trainer(folders: list[Path]) -> str | None:
    """The ``trainer`` of the runs whose ``model/`` folders ``folders`` are, when they are all runs
    made by one trainer (a soup counts as its own ingredients' trainer); else None."""
    from trainers.runs import RunFolder

    trainers = set()
    for folder in map(Path, folders):
        run = RunFolder(folder.parent)
        if folder.name != "model" or not run.exists():
            return None
        config = run.read_config()  # a damaged config.json: InputError, one line
        trainer = config.get("trainer")
        trainers.add(config.get("ingredient_trainer") if trainer == "soup" else trainer)
    return trainers.pop() if len(trainers) == 1 else None


def soup_run(workspace_root: Path, name: str, folders: list[Path], weights: list[float] | None = None) -> SoupSummary:
    """A finished run ``runs/<name>`` whose ``model/`` is the soup of ``folders``: usable as
    ``--model ROLE=runs/<name>`` like any trained run. The name is reserved (a ``queued`` run) before
    the averaging starts, so of two soups (or a soup and a `wb train`) given one name, one is refused
    at once; nothing is left behind when it fails."""
    from trainers.runs import check_run_name, new_run, runs_dir

    run_path = runs_dir(Path(workspace_root)) / check_run_name(name)
    if run_path.exists() and not (run_path / "config.json").exists():  # not a run: never taken over
        raise UsageError(f"'{run_path}' exists already: pick another name for the soup")
    folders = [Path(f) for f in folders]
    check_ingredients(folders)  # a mistake is said before the name is taken
    config = {"trainer": "soup", "name": name, "ingredients": [str(f) for f in folders],
              "weights": normalised_weights(len(folders), weights)}
    made_by = ingredient_trainer(folders)
    if made_by:
        config["ingredient_trainer"] = made_by  # the soup serves in the role its ingredients' trainer fills
    run = new_run(Path(workspace_root), name, json.dumps(config, indent=2),
                  taken="pick another name for the soup")
    try:
        summary = make_soup(folders, run.model_dir, weights)
    except BaseException:
        shutil.rmtree(run.path, ignore_errors=True)  # this process made the folder: the name is free again
        raise
    kind = _kind(run.model_dir)
    run.append_event({"event": "finished", "soup": config})
    run.write_status(state="finished", step=0, total_steps=0, model=str(run.model_dir), pid=None,
                     **({"kind": kind} if kind else {}))
    return summary
