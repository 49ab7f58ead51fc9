"""The Runs screen's launch form, driven by one table: :data:`TRAINERS`.

Each :class:`TrainerSpec` says which ``wb train COMMAND`` a trainer is, the fields the form shows
for it (rows of :class:`Field`: the ``wb train`` option, its label, kind, default and help), which
model roles its finished run fills (``--model ROLE=runs/NAME``), and how a finished run is compared
(the Search pipelines and the ``wb eval`` pipelines). Adding a trainer is one entry.

The form offers a trainer only when ``wb train`` has that subcommand, and a field only when the
subcommand has that option (both read from the Typer app in ``workbench.cli.main``), so an entry
for a trainer that is not in the CLI yet is simply not offered. A field's default, when the table
gives none, is the trainer config's own (the dataclass in ``trainers/config.py``); an empty box
passes nothing, i.e. the trainer's default.

Submitting runs ``wb train COMMAND ... --out NAME --detach -w WORKSPACE`` through the spawner
(``argv -> (exit code, stdout, stderr)``; tests replace it); a failing command's last line stays
in the form. The device is not a field: the trainer picks it (accelerate: CUDA when a GPU is
visible, else the CPU); the form shows which one it will be, read-only (``auto_device``, which
imports torch in a worker thread, never on the event loop).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import MISSING, dataclass, fields
from functools import lru_cache
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Select, Static

from trainers.config import option_highest
from trainers.runs import check_run_name, runs_dir
from workbench.errors import UsageError, WbError
from workbench.tui.common import MODE_OF_ROLE, Palette, pipeline_uses
from workbench.tui.footer import WbFooter

Spawner = Callable[[list[str]], Awaitable[tuple[int, str, str]]]


# ---------------------------------------------------------------------------------------------
# Running `wb ...`
# ---------------------------------------------------------------------------------------------
async def spawn(argv: list[str]) -> tuple[int, str, str]:
    """Run ``argv`` to completion (``wb ... --detach`` returns once the run is started)."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    try:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE,
                                                    stdin=asyncio.subprocess.DEVNULL, env=env)
    except OSError as exc:
        return 127, "", f"cannot start {argv[0]}: {exc}"
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def wb_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "workbench.cli.main", *args]


def error_line(rc: int, err: str) -> str:
    """The last line a failed ``wb`` printed, without its ``wb: error:`` prefix."""
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    line = lines[-1] if lines else f"exit code {rc}"
    return re.sub(r"^wb: (error|internal error): ", "", line)


def suggest_name(root: Path, prefix: str = "ft") -> str:
    """``ft-1``, ``ft-2``, …: the first name no run folder has."""
    folder = runs_dir(root)
    i = 1
    while (folder / f"{prefix}-{i}").exists():
        i += 1
    return f"{prefix}-{i}"


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One option of ``wb train COMMAND`` as a form field.

    ``kind``: ``text`` / ``path`` (a wide box unless ``wide`` is False; empty passes nothing),
    ``int`` / ``float`` (a short box; an int must be >= ``least``, a float > ``least`` when
    ``strict`` else >= ``least``), ``choice`` (a Select of ``choices``), ``bool`` (a checkbox:
    ``--flag`` / ``--no-flag``).
    ``default`` None: the config dataclass's default for ``config_key`` (or ``key``); none there
    either: an empty box. ``help``: the tooltip (and placeholder of wide boxes); "" takes the CLI
    option's help.
    """

    key: str
    flag: str
    label: str
    kind: str = "text"
    default: str | bool | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    least: float = 0
    strict: bool = True
    required: bool = False
    config_key: str | None = None
    wide: bool = True  # a text field's box takes the row's room (False: a short box)

    @property
    def widget_id(self) -> str:
        return "launch-" + self.key.replace("_", "-")


@dataclass(frozen=True)
class TrainerSpec:
    """A trainer as the launch form and the Runs screen's compare keys see it.

    ``kind`` is config.json's ``trainer``; ``command`` the ``wb train`` subcommand; ``roles`` the
    model roles the finished run fills (compare: ``--model ROLE=runs/NAME`` for each); ``config`` the
    dataclass in ``trainers/config.py`` whose defaults the fields show; ``rows`` the form's rows (the
    first field of a row names it); ``search`` the (left, right) Search pipelines of ``c`` (None:
    both columns keep the left pipeline when it uses one of ``roles``, else the role's own mode);
    ``eval_pipelines`` what ``e`` evaluates; ``eval_is_beir``: the run's ``eval_data`` is a BEIR
    folder ``e`` can reuse; ``check`` validates the values together (UsageError)."""

    kind: str
    command: str
    roles: tuple[str, ...]
    about: str
    config: str
    rows: tuple[tuple[Field, ...], ...]
    eval_pipelines: str
    search: tuple[str, str] | None = None
    eval_is_beir: bool = True
    check: Callable[[dict], None] | None = None

    @property
    def fields(self) -> list[Field]:
        return [f for row in self.rows for f in row]


def _data(help_text: str) -> Field:
    return Field("data", "--data", "data", "path", "", required=True,
                 help=help_text + "; several, comma-separated: a multi-task run (one task each)")


def _base(default: str, help_text: str) -> Field:
    return Field("base", "--base", "base model", "text", default, help=help_text, required=True)


EPOCHS = Field("epochs", "--epochs", "epochs", "float")
BATCH = Field("batch_size", "--batch-size", "batch size", "int", least=1)
LR = Field("lr", "--lr", "lr", "float")
EVAL_EVERY = Field("eval_every", "--eval-every", "eval every", "int",
                   help="evaluate on the eval data every N steps (0: only at the end)")
KEEP_BEST = Field("keep_best", "--keep-best", "keep best", "bool",
                  help="with eval data: the model kept is the best-evaluated step's, not the last")
NEGATIVES = Field("negatives", "--negatives", "negatives", "int", config_key="negatives_per_query",
                  help="hard negatives per query (from the data: wb mine makes them)")
MAX_STEPS = Field("max_steps", "--max-steps", "max steps", "int", "",
                  help="optimizer steps, overriding the epochs (empty or 0: from the epochs)")
SCHEDULE = (EPOCHS, BATCH, LR, MAX_STEPS)
TRAIN_DATA = "FlagEmbedding jsonl (wb mine writes one), BEIR folder or sentence-transformers file"
BEIR_EVAL = Field("eval_data", "--eval-data", "eval data", "path",
                  help="optional BEIR folder evaluated during training (nDCG@10)")
GROUP_EVAL = Field("eval_data", "--eval-data", "eval data", "path",
                   help="optional FlagEmbedding jsonl of held-out groups (MRR of the positive)")
GROUP_SIZE = Field("group_size", "--group-size", "group size", "int", least=2,
                   help="passages per query: 1 positive + N-1 hard negatives")
RERANK_LOSS = Field("loss", "--loss", "loss", "choice", choices=("listwise", "pairwise", "pointwise"),
                    help="listwise: softmax CE over the group · pairwise: RankNet · pointwise: BCE")
LORA = Field("lora", "--lora", "LoRA", "bool", help="train LoRA adapters (merged into the final model)")


def _unsupervised_needs_corpus(v: dict) -> None:
    if v.get("data") == "unsupervised" and not v.get("corpus"):
        raise UsageError("corpus: data 'unsupervised' needs passages (a BEIR corpus.jsonl or folder)")


TRAINERS: dict[str, TrainerSpec] = {s.kind: s for s in (
    TrainerSpec(
        "embedder", "embedder", ("dense",), "bi-encoder (encoder or decoder LLM)", "EmbedderConfig",
        rows=(
            (_data("FlagEmbedding jsonl, BEIR folder, sentence-transformers file, or unsupervised"),),
            (Field("corpus", "--corpus", "corpus", "path",
                   help="passages for data 'unsupervised' (BEIR corpus.jsonl or folder)"),),
            (_base("dense", "dense = the workspace's dense model; a name, folder or runs/NAME"), LORA),
            (Field("loss", "--loss", "loss", "choice", choices=("infonce", "jointlh", "summarglh", "lsepair",
                                                                "rand1lh", "kl"),
                   help="kl: distillation from the data's teacher scores alone"), NEGATIVES),
            SCHEDULE,
            (BEIR_EVAL, EVAL_EVERY, KEEP_BEST),
        ),
        eval_pipelines="dense,hybrid", check=_unsupervised_needs_corpus),
    TrainerSpec(
        "reranker", "reranker", ("reranker",), "cross-encoder reranker", "RerankerConfig",
        rows=(
            (_data(TRAIN_DATA),),
            (_base("dense", "dense = the workspace's dense model (gets a new one-logit head); a cross-encoder, "
                            "folder or runs/NAME"),),
            (RERANK_LOSS, GROUP_SIZE,
             Field("max_length", "--max-length", "max length", "int", least=8, help="tokens of query + passage")),
            SCHEDULE,
            (GROUP_EVAL, EVAL_EVERY, KEEP_BEST),
        ),
        eval_pipelines="hybrid,hybrid+rerank", search=("hybrid", "hybrid+rerank"), eval_is_beir=False),
    TrainerSpec(
        "colbert", "colbert", ("colbert",), "ColBERT: encoder + token projection, MaxSim", "ColbertConfig",
        rows=(
            (_data(TRAIN_DATA),),
            (_base("dense", "dense = the workspace's dense model; a BERT-like name, folder or runs/NAME"),),
            (Field("dim", "--dim", "dim", "int", least=8, help="token vector size (the projection's outputs)"),
             NEGATIVES, Field("head_lr", "--head-lr", "head lr", "float", help="the projection's learning rate")),
            SCHEDULE,
            (BEIR_EVAL, EVAL_EVERY, KEEP_BEST),
        ),
        eval_pipelines="colbert,hybrid"),
    TrainerSpec(
        "splade", "splade", ("sparse",), "SPLADE learned sparse (contrastive + FLOPS)", "SpladeConfig",
        rows=(
            (_data(TRAIN_DATA),),
            (_base("sparse", "sparse = the workspace's sparse model; a masked LM name, folder or runs/NAME"),),
            (Field("lambda_q", "--lambda-q", "FLOPS query", "float", strict=False,
                   help="FLOPS weight on the query vectors (sparser queries)"),
             Field("lambda_d", "--lambda-d", "FLOPS docs", "float", strict=False,
                   help="FLOPS weight on the document vectors (sparser documents)"),
             NEGATIVES),
            SCHEDULE,
            (BEIR_EVAL, EVAL_EVERY, KEEP_BEST),
        ),
        eval_pipelines="sparse,hybrid"),
    TrainerSpec(
        "llm-reranker", "llm-reranker", ("reranker",), "decoder LLM yes/no reranker",
        "LlmRerankerConfig",
        rows=(
            (_data(TRAIN_DATA),),
            (_base("llm", "llm = the built-in SmolLM2-135M-Instruct; a causal LM name, folder or runs/NAME"), LORA),
            (RERANK_LOSS, GROUP_SIZE, Field("lora_r", "--lora-r", "LoRA r", "int", least=1, help="LoRA rank")),
            SCHEDULE,
            (GROUP_EVAL, EVAL_EVERY, KEEP_BEST),
        ),
        eval_pipelines="hybrid,hybrid+rerank", search=("hybrid", "hybrid+rerank"), eval_is_beir=False),
    TrainerSpec(
        "layerwise", "layerwise", ("reranker",), "layer-wise cross-encoder (early exit)",
        "LayerwiseConfig",
        rows=(
            (_data(TRAIN_DATA),),
            (_base("dense", "dense = the workspace's dense model; a BERT-like name, folder or runs/NAME"),),
            (RERANK_LOSS, GROUP_SIZE,
             Field("layers", "--layers", "layers", "text", wide=False,
                   help="layers that get a score head, e.g. 2,4,6 (empty: 2 to the last)")),
            (Field("distill_weight", "--distill-weight", "distill", "float", strict=False,
                   help="weight of the self-distillation KL(last layer || layer l); 0: off"),
             Field("head_lr", "--head-lr", "head lr", "float", help="learning rate of the per-layer heads")),
            SCHEDULE,
            (GROUP_EVAL, EVAL_EVERY, KEEP_BEST),
        ),
        eval_pipelines="hybrid,hybrid+rerank", search=("hybrid", "hybrid+rerank"), eval_is_beir=False),
    TrainerSpec(
        "joint", "joint", ("dense", "colbert", "sparse"), "BGE-M3 style, one encoder",
        "JointConfig",
        rows=(
            (_data(TRAIN_DATA),),
            (_base("dense", "dense = the workspace's dense model; a BERT-like name, folder or runs/NAME"),),
            (Field("dense_weight", "--dense-weight", "dense w", "float", strict=False),
             Field("sparse_weight", "--sparse-weight", "sparse w", "float", strict=False),
             Field("colbert_weight", "--colbert-weight", "colbert w", "float", strict=False)),
            (Field("distill_weight", "--distill-weight", "distill", "float", strict=False,
                   help="weight of the self-distillation from the modes' ensemble; 0: off"),
             Field("colbert_dim", "--colbert-dim", "colbert dim", "int",
                   help="ColBERT vector size (0: the encoder's hidden size)"),
             NEGATIVES),
            SCHEDULE,
            (BEIR_EVAL, EVAL_EVERY, KEEP_BEST),
        ),
        eval_pipelines="dense,colbert,sparse,hybrid"),
)}


# ---------------------------------------------------------------------------------------------
# The table against the CLI and the configs
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def cli_train_options() -> dict[str, dict[str, str]]:
    """``wb train`` subcommand -> {option flag (``--x`` and ``--no-x``): its help}, read from the
    Typer app in ``workbench.cli.main`` (what the CLI has right now)."""
    import typer

    from workbench.cli.main import app

    group = typer.main.get_command(app)
    train = getattr(group, "commands", {}).get("train")
    out: dict[str, dict[str, str]] = {}
    for name, command in getattr(train, "commands", {}).items():
        opts: dict[str, str] = {}
        for param in command.params:
            for flag in [*param.opts, *getattr(param, "secondary_opts", [])]:
                opts[flag] = getattr(param, "help", None) or ""
        out[name] = opts
    return out


def available_trainers() -> list[TrainerSpec]:
    """The table's trainers whose ``wb train`` subcommand exists, in table order."""
    cli = cli_train_options()
    return [s for s in TRAINERS.values() if s.command in cli]


def trainer_spec(kind: str | None) -> TrainerSpec | None:
    """The spec of a run's config.json ``trainer`` (None for one the table does not know)."""
    return TRAINERS.get(kind or "embedder")


def shown_fields(spec: TrainerSpec) -> list[list[Field]]:
    """The spec's rows with only the fields whose option its CLI command has (empty rows dropped)."""
    opts = cli_train_options().get(spec.command, {})
    rows = [[f for f in row if f.flag in opts] for row in spec.rows]
    return [row for row in rows if row]


def _fmt(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value and not 1e-3 <= abs(value) < 1e6:  # 3e-05 -> 3e-5, 0.0001 -> 1e-4
            mantissa, exponent = f"{value:.10e}".split("e")
            return mantissa.rstrip("0").rstrip(".") + "e" + str(int(exponent))
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def field_default(spec: TrainerSpec, f: Field) -> str | bool:
    """What the field shows first: its own default, else the trainer config's, else empty/False."""
    if f.default is not None:
        return f.default
    import trainers.config as configs

    cls = getattr(configs, spec.config, None)
    if cls is not None:
        for fld in fields(cls):
            if fld.name == (f.config_key or f.key) and fld.default is not MISSING:
                return bool(fld.default) if f.kind == "bool" else _fmt(fld.default)
    return False if f.kind == "bool" else ""


def field_help(spec: TrainerSpec, f: Field) -> str:
    return f.help or cli_train_options().get(spec.command, {}).get(f.flag, "")


def check_values(spec: TrainerSpec, raw: dict[str, str | bool]) -> dict[str, str | bool]:
    """The raw form values of ``spec``'s shown fields, checked: UsageError names the first bad one."""
    out: dict[str, str | bool] = {}
    for f in (f for row in shown_fields(spec) for f in row):
        value = raw.get(f.key, "")
        if f.kind == "bool":
            out[f.key] = bool(value)
            continue
        text = str(value).strip()
        if not text:
            if f.required:
                raise UsageError(f"{f.label}: give a value")
            continue
        if f.kind in ("int", "float"):
            kind = int if f.kind == "int" else float
            try:
                number = kind(text)
            except ValueError:
                raise UsageError(f"{f.label}: '{text}' is not a{'n integer' if kind is int else ' number'}") from None
            if kind is float and not math.isfinite(number):  # nan passes every comparison below
                raise UsageError(f"{f.label}: '{text}' is not a finite number")
            if number < f.least or (kind is float and f.strict and number <= f.least):
                raise UsageError(f"{f.label}: {text} is too small")
            highest = option_highest(f.config_key or f.key)  # the bound `wb train` refuses beyond
            if highest is not None and (number > highest[0] or (number == highest[0] and not highest[1])):
                raise UsageError(f"{f.label}: {text} is too large ({'at most' if highest[1] else 'less than'} "
                                 f"{highest[0]})")
        elif f.kind == "choice" and f.choices and text not in f.choices:
            raise UsageError(f"{f.label}: '{text}' is not one of {', '.join(f.choices)}")
        out[f.key] = text
    if spec.check is not None:
        spec.check(out)
    return out


def train_command(spec: TrainerSpec, values: dict, name: str, workspace: str) -> list[str]:
    """``wb train COMMAND --FLAG VALUE ... --out NAME --detach -w WORKSPACE`` for checked values
    (empty ones are left out: the trainer's default)."""
    args = ["train", spec.command]
    opts = cli_train_options().get(spec.command, {})
    for f in spec.fields:
        if f.key not in values or f.flag not in opts:
            continue
        value = values[f.key]
        if f.kind == "bool":
            negative = "--no-" + f.flag[2:]
            args.append(f.flag if value else negative)
        elif f.key == "data" and "," in str(value):  # several datasets: a multi-task run
            for part in (p.strip() for p in str(value).split(",")):
                if part:
                    args += [f.flag, part]
        elif value not in (None, ""):
            args += [f.flag, str(value)]
    return wb_command(*args, "--out", name, "--detach", "-w", workspace)


def compare_overrides(spec: TrainerSpec, name: str) -> dict[str, str]:
    """``{role: "runs/NAME"}`` for each role the run's model fills (``--model`` / ``--compare``)."""
    return {role: f"runs/{name}" for role in spec.roles}


def compare_pipelines(spec: TrainerSpec, current: str) -> tuple[str, str]:
    """The (left, right) Search pipelines for comparing a run of ``spec``: its own pair, else the
    left column's pipeline on both sides when it uses the run's model, else the role's own mode."""
    if spec.search is not None:
        return spec.search
    if pipeline_uses(current, spec.roles):
        return current, current
    mode = next((MODE_OF_ROLE[r] for r in spec.roles if r in MODE_OF_ROLE), "hybrid")
    return mode, mode


def auto_device() -> str:
    """The device the trainer will pick (accelerate's default): ``cuda`` with the GPU's name when
    torch sees one, ``mps`` on Apple silicon, else ``cpu``."""
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"cuda ({torch.cuda.get_device_name(0)}{f' ×{n}' if n > 1 else ''})"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


# ---------------------------------------------------------------------------------------------
# The form
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FormDraft:
    """What a closed form held (its trainer, every field as typed, the run name), so that reopening
    it does not lose a half-filled form: Escape, which leaves a text box elsewhere, closes this one."""

    trainer: str
    values: dict[str, str | bool]
    name: str


class LaunchScreen(ModalScreen):
    """The form that starts a training run; dismissed with the new run's name (or None, and then
    :attr:`draft` holds what it showed, for the next form to start from)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", tooltip="Close the form without starting a run"),
        Binding("ctrl+s", "launch", "Launch", tooltip="Start the run (Enter in any box does too)"),
    ]

    def __init__(self, workspace: Path, spawner: Spawner, trainer: str | None = None,
                 draft: FormDraft | None = None) -> None:
        super().__init__()
        self.workspace = Path(workspace)
        self.spawner = spawner
        self.error = ""
        self.trainers = available_trainers()
        if not self.trainers:
            raise UsageError("this wb has no `wb train` trainers the form knows")
        kinds = [s.kind for s in self.trainers]
        if trainer is None and draft is not None:
            trainer = draft.trainer
        self.spec = self.trainers[kinds.index(trainer)] if trainer in kinds else self.trainers[0]
        self.start_from = draft if draft is not None and draft.trainer == self.spec.kind else None
        self.draft: FormDraft | None = None  # set when the form closes without starting a run
        self._switching = False
        self._checked = False  # the error shown is a field's (checked again as fields change)

    # -- building ----------------------------------------------------------------------
    @staticmethod
    def _row(label: str, *widgets: Widget) -> Horizontal:
        return Horizontal(Static(label, classes="row-label"), *widgets, classes="form-row")

    def _field_rows(self, spec: TrainerSpec, kept: dict | None = None) -> list[Horizontal]:
        """The widgets of ``spec``'s fields, each with its default or the value ``kept`` (key ->
        value: what the user changed before switching trainers, or a closed form's draft) holds for
        its key (a choice only when it is one of the field's)."""
        rows = []
        for row in shown_fields(spec):
            widgets: list[Widget] = []
            for i, f in enumerate(row):
                value = field_default(spec, f)
                if kept and f.key in kept and (f.kind != "choice" or kept[f.key] in f.choices):
                    value = kept[f.key]
                tip = field_help(spec, f) or None
                if f.kind == "bool":
                    widgets.append(Checkbox(f.label, bool(value), compact=True, id=f.widget_id, tooltip=tip))
                    continue
                if i:
                    widgets.append(Static(f.label, classes="row-label inline-label"))
                if f.kind == "choice":
                    options = [(c, c) for c in f.choices]
                    start = value if value in f.choices else f.choices[0]
                    widgets.append(Select(options, value=start, allow_blank=False, compact=True, id=f.widget_id,
                                          tooltip=tip))
                elif f.kind in ("int", "float") or not f.wide:
                    widgets.append(Input(str(value), compact=True, id=f.widget_id, classes="short", tooltip=tip,
                                         placeholder="default"))
                else:
                    widgets.append(Input(str(value), compact=True, id=f.widget_id, tooltip=tip,
                                         placeholder=tip or ""))
            rows.append(self._row(row[0].label if row[0].kind != "bool" else "", *widgets))
        return rows

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="launch"):
            yield Static(Text("New training run", style="bold"), id="launch-title")
            yield self._row("trainer",
                            Select([(s.kind, s.kind) for s in self.trainers], value=self.spec.kind,
                                   allow_blank=False, compact=True, id="launch-trainer",
                                   tooltip="which model to train: the fields below follow it"),
                            Static(self._about(), id="launch-about"))
            kept = self.start_from
            with Vertical(id="launch-fields"):  # a draft's values win over the defaults
                yield from self._field_rows(self.spec, kept.values if kept else None)
            name = kept.name if kept and kept.name and not (runs_dir(self.workspace) / kept.name).exists() else ""
            yield self._row("run name", Input(name or suggest_name(self.workspace), compact=True, id="launch-name"))
            yield self._row("device", Static(Text("detecting…", style="dim"), id="launch-device"))
            yield Static("", id="launch-error")
            with Horizontal(id="launch-buttons"):
                yield Button("Launch", id="launch-go", variant="primary", compact=True)
                yield Button("Cancel", id="launch-cancel", compact=True)
        yield WbFooter()

    def _about(self) -> Text:
        spec = self.spec
        text = Text(spec.about, style="dim")
        text.append(" → " + ", ".join(spec.roles), style="dim")
        return text

    def on_mount(self) -> None:
        self.query_one("#launch").border_title = "wb train (runs in the background)"
        self.query_one("#launch-data", Input).focus()
        self._device_worker()

    @work(thread=True, exclusive=True, group="device", name="device")
    def _device_worker(self) -> None:
        try:
            device = auto_device()
        except Exception as exc:  # a broken CUDA install: the trainer will say more
            device = f"unknown ({type(exc).__name__})"
        self.app.call_from_thread(self._show_device, device)

    def _show_device(self, device: str) -> None:
        text = Text(device, style="bold")
        text.append("  chosen automatically (the GPU when there is one)", style="dim")
        launcher = os.environ.get("WB_TRAIN_LAUNCHER", "").strip()
        if launcher:
            text.append(f" · launched with {launcher}", style="dim")
        self.query_one("#launch-device", Static).update(text)

    # -- switching trainers ------------------------------------------------------------
    @on(Select.Changed, "#launch-trainer")
    async def _trainer_changed(self, event: Select.Changed) -> None:
        """Replace the fields with the picked trainer's (values the user changed carry over)."""
        event.stop()
        if self._switching:
            return  # the running switch re-reads the Select when it is done
        self._switching = True
        try:
            while True:
                kind = str(self.query_one("#launch-trainer", Select).value)
                new = next((s for s in self.trainers if s.kind == kind), None)
                if new is None or new is self.spec:
                    break
                old = self.spec
                raw = self.raw_values()
                changed = {f.key: raw[f.key] for f in old.fields if f.key in raw and raw[f.key] != field_default(old, f)}
                box = self.query_one("#launch-fields", Vertical)
                await box.remove_children()
                self.spec = new
                await box.mount_all(self._field_rows(new, changed))
                self.query_one("#launch-about", Static).update(self._about())
                self.show_error("")
        finally:
            self._switching = False

    # -- values ------------------------------------------------------------------------
    def raw_values(self) -> dict[str, str | bool]:
        """What the shown fields hold now (unchecked)."""
        out: dict[str, str | bool] = {}
        for row in shown_fields(self.spec):
            for f in row:
                found = self.query(f"#{f.widget_id}")
                if not found:
                    continue
                widget = found.first()
                if isinstance(widget, Checkbox):
                    out[f.key] = widget.value
                elif isinstance(widget, Select):
                    out[f.key] = str(widget.value)
                elif isinstance(widget, Input):
                    out[f.key] = widget.value
        return out

    def values(self) -> dict:
        """The form's values, checked (UsageError names the first bad one), with ``trainer`` and ``name``."""
        v = check_values(self.spec, self.raw_values())
        name = self.query_one("#launch-name", Input).value.strip()
        try:
            check_run_name(name)  # the CLI's rule, and no space (the form's name goes on a command line)
            if " " in name:
                raise UsageError(name)
        except UsageError:
            raise UsageError(f"run name: '{name}' is not a plain folder name (not starting with '.' or '-')") from None
        if (runs_dir(self.workspace) / name).exists():
            raise UsageError(f"run name: a run named '{name}' exists already")
        return {"trainer": self.spec.kind, **v, "name": name}

    def command(self) -> list[str]:
        """The ``wb train`` command the form would run now (values checked)."""
        v = self.values()
        return train_command(self.spec, v, v["name"], str(self.workspace))

    def show_error(self, message: str, checked: bool = False) -> None:
        self.error = message
        self._checked = checked and bool(message)
        self.query_one("#launch-error", Static).update(
            Text(message, style=f"bold {Palette.of(self.app).down}") if message else "")

    # -- launching ---------------------------------------------------------------------
    @on(Input.Submitted)
    @on(Button.Pressed, "#launch-go")
    def action_launch(self) -> None:
        if self._switching or any(w.group == "launch" and not w.is_finished for w in self.workers):
            return
        try:
            argv = self.command()
        except WbError as exc:
            self.show_error(str(exc), checked=True)
            return
        self._launch_worker(argv, argv[argv.index("--out") + 1])

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _field_changed(self, event) -> None:
        """A field's error is checked again as the fields change: gone once the value is right (or
        replaced by the next field's); a failed command's line stays until the next launch."""
        if not self._checked or self._switching:
            return
        try:
            self.values()
        except WbError as exc:
            self.show_error(str(exc), checked=True)
            return
        self.show_error("")

    @work(exclusive=True, group="launch", name="launch run")
    async def _launch_worker(self, argv: list[str], name: str) -> None:
        go = self.query_one("#launch-go", Button)
        go.disabled = True
        self.query_one("#launch-error", Static).update(Text(f"starting wb train {self.spec.command}…",
                                                            style="italic"))
        rc, out, err = await self.spawner(argv)
        go.disabled = False
        if rc != 0:
            self.show_error(error_line(rc, err))
            return
        printed = [ln.strip() for ln in out.splitlines() if ln.strip()]
        self.dismiss(printed[-1] if printed else name)

    def current_draft(self) -> FormDraft:
        """What the form holds now (the trainer, every field, the name), to reopen it as it is."""
        return FormDraft(self.spec.kind, self.raw_values(), self.query_one("#launch-name", Input).value.strip())

    @on(Button.Pressed, "#launch-cancel")
    def action_cancel(self) -> None:
        self.workers.cancel_group(self, "launch")
        self.draft = self.current_draft()
        self.dismiss(None)
