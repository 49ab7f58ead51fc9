"""Read training data in the formats users already have, detecting which one a path holds.

Supported formats (``format=`` names in brackets):

* FlagEmbedding JSON Lines [``flagembedding``]: ``{"query": str, "pos": [str], "neg": [str],
  "pos_scores": [float], "neg_scores": [float], "prompt": str, "type": str}``; only ``query``
  and ``pos`` are required (a missing or null ``neg`` means "no hard negatives").
* BEIR folder [``beir``]: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
  (``_id``, ``text``) and ``qrels/{split}.tsv`` (header ``query-id corpus-id score``). One
  example per query: every passage with score > 0 is a positive, judged passages with
  score <= 0 become hard negatives; passage text is ``title + " " + text``.
* sentence-transformers columns [``sentence-transformers``] in JSON Lines, CSV or TSV (CSV/TSV
  with a header row unless ``header=False`` or the first row reads as data, a cell with a space
  or over 40 characters, as in MS MARCO's header-less triples): ``(anchor, positive[, negative...])``,
  ``(query, positive, negative...)`` or ``(sentence1, sentence2[, label|score])``. Rows with a
  label/score column are kept as positive pairs when the label is > 0 and skipped otherwise.
  Unknown column names are read by position (query, positive, negatives...), as
  sentence-transformers does; a ``label``/``score`` column is always found by name. In JSON Lines
  every row's keys are read by name (a ``label`` or ``negative`` only later rows carry counts;
  a row without the first row's label is malformed).
* Tevatron JSON Lines [``tevatron``]: ``{"query_id", "query", "positive_passages": [{docid, title,
  text}], "negative_passages": [...]}``.

Files are streamed line by line (``.gz`` works too), so a large file never has to fit in
memory as text. A malformed row raises :class:`workbench.errors.InputError` naming the file,
the line and the reason; with ``skip_malformed=True`` it is skipped and counted instead. Every
read ends with a :class:`ReadReport` (rows read, kept, skipped by reason); zero usable examples
is always an error that says why.

``task``: the ``task=`` argument when given, else the row's ``type`` (FlagEmbedding), else the
file's stem (``msmarco.jsonl`` -> ``msmarco``) or the BEIR folder's name.
``instruction``: the row's ``prompt`` when it has a non-empty one, else ``instruction=``. A
prompt is normalised as a typed ``--instruction`` is (``resolve_instruction``): stripped, a
trailing colon dropped, since every template adds its own separator (FlagEmbedding's rows carry
``"...passages: "``, which would otherwise train as ``"...passages: : query"``).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from workbench.errors import InputError

from .example import TrainingExample

__all__ = [
    "FORMATS",
    "ExampleList",
    "ReadReport",
    "detect_format",
    "iter_examples",
    "read_examples",
]

FORMATS = ("flagembedding", "beir", "sentence-transformers", "tevatron")
_FORMAT_ALIASES = {
    "auto": "auto",
    "flag": "flagembedding",
    "flagembedding": "flagembedding",
    "bge": "flagembedding",
    "beir": "beir",
    "st": "sentence-transformers",
    "sentence-transformers": "sentence-transformers",
    "sentence_transformers": "sentence-transformers",
    "tevatron": "tevatron",
}

_QUERY_COLUMNS = ("anchor", "query", "sentence1", "question", "text1", "sentence_a")
_POSITIVE_COLUMNS = ("positive", "sentence2", "answer", "document", "passage", "text2", "sentence_b")
_LABEL_COLUMNS = ("label", "score")
_NEGATIVE_IS_POSITIVE = "hard negatives equal to a positive of their query dropped"
_SNIFF_LINES = 50
_SURROGATE = re.compile("[\ud800-\udfff]")
_DELIMITED = (".tsv", ".csv")


# --------------------------------------------------------------------------- report


@dataclass
class ReadReport:
    """What a read did: records read, examples kept, records skipped by reason.

    ``read`` counts records (non-blank lines or rows; for BEIR, queries that have qrels),
    ``kept`` the examples returned, ``skipped`` maps a reason to a count. ``malformed`` is the
    part of the skips that were malformed rows (the rest are rows filtered on purpose, such as
    a pair labelled 0). ``first_skip`` maps each reason to where it first happened
    (``file:line``). ``warnings`` counts problems that cost no record (a BEIR qrel naming a
    passage missing from the corpus). ``columns`` says how sentence-transformers columns were
    mapped.
    """

    path: str
    format: str = ""
    read: int = 0
    kept: int = 0
    malformed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    first_skip: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    columns: dict[str, Any] | None = None

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def skip(self, reason: str, where: str, *, malformed: bool) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.first_skip.setdefault(reason, where)
        if malformed:
            self.malformed += 1

    def warn(self, reason: str) -> None:
        self.warnings[reason] = self.warnings.get(reason, 0) + 1

    def describe_skips(self) -> str:
        parts = [
            f"{reason} ({count}, first at {self.first_skip[reason]})"
            for reason, count in sorted(self.skipped.items(), key=lambda kv: -kv[1])
        ]
        return "; ".join(parts)

    def summary(self) -> str:
        """One line: ``read 10, kept 8, skipped 2 (missing field 'pos' (2, first at f:3))``."""
        text = f"{self.format or 'unknown format'}: read {self.read}, kept {self.kept}"
        if self.skipped:
            text += f", skipped {self.skipped_total} ({self.describe_skips()})"
        if self.warnings:
            text += ", warnings: " + "; ".join(f"{k} ({v})" for k, v in self.warnings.items())
        return text


class ExampleList(list):
    """A plain ``list`` of :class:`TrainingExample` that also carries the :class:`ReadReport`."""

    report: ReadReport

    def __init__(self, examples: Iterable[TrainingExample] = (), report: ReadReport | None = None):
        super().__init__(examples)
        self.report = report if report is not None else ReadReport(path="")


class _Malformed(Exception):
    """A row that cannot be used; ``reason`` is the category counted in the report."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class _Filtered(Exception):
    """A well-formed row that is not a training example on purpose (a pair labelled 0)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- low-level IO


def _open_binary(path: Path) -> IO[bytes]:
    try:
        if path.suffix == ".gz":
            return gzip.open(path, "rb")
        return path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot open {path}: {exc.strerror or exc}") from exc


def _lines(path: Path) -> Iterator[tuple[int, str | _Malformed]]:
    """(line number, text without the newline) for every line; undecodable lines as _Malformed."""
    with _open_binary(path) as handle:
        try:
            for lineno, raw in enumerate(handle, start=1):
                if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
                try:
                    yield lineno, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    yield lineno, _Malformed("invalid UTF-8", f"byte {exc.start}")
        except (OSError, EOFError) as exc:  # truncated gzip, I/O error mid-file
            raise InputError(f"cannot read {path}: {exc}") from exc


def _lone_surrogate(value: Any) -> bool:
    """Whether a string in the JSON value ``value`` holds a lone surrogate (``"\\ud800"``: valid JSON,
    but no Unicode text; no tokenizer or UTF-8 writer takes it)."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    return False


def _json_objects(path: Path) -> Iterator[tuple[int, dict | _Malformed]]:
    """(line number, object) for every non-blank line; a line that is no JSON object, or whose text
    is not valid Unicode (a lone surrogate escape, refused as the corpus reader refuses it in an
    ``_id``), as _Malformed."""
    for lineno, text in _lines(path):
        if isinstance(text, _Malformed):
            yield lineno, text
            continue
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield lineno, _Malformed("invalid JSON", f"{exc.msg} at column {exc.colno}")
            continue
        if not isinstance(obj, dict):
            yield lineno, _Malformed("not a JSON object", f"found {type(obj).__name__}")
            continue
        if "\\u" in text and _lone_surrogate(obj):  # only an escape makes one: json.loads of UTF-8 cannot
            yield lineno, _Malformed("text is not valid Unicode (a lone surrogate)")
            continue
        yield lineno, obj


def _strip_suffixes(path: Path) -> str:
    name = path.name
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix in (".jsonl", ".json", ".tsv", ".csv", ".txt"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or name
    return Path(name).stem or name


def _inner_suffix(path: Path) -> str:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    return Path(name).suffix.lower()


# --------------------------------------------------------------------------- field helpers


def _req_str(obj: dict, key: str) -> str:
    if key not in obj or obj[key] is None:
        raise _Malformed(f"missing field '{key}'")
    value = obj[key]
    if not isinstance(value, str):
        raise _Malformed(f"'{key}' must be a string", f"found {type(value).__name__}")
    if not value.strip():
        raise _Malformed(f"'{key}' is empty")
    return value


def _str_list(obj: dict, key: str, *, required: bool) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        if required:
            raise _Malformed(f"missing field '{key}'")
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise _Malformed(f"'{key}' must be a list of strings", f"found {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _Malformed(f"'{key}' must be a list of strings", f"item {i} is {type(item).__name__}")
        if not item.strip():
            raise _Malformed(f"'{key}' holds an empty string", f"item {i}")
    if required and not value:
        raise _Malformed(f"'{key}' is empty")
    return tuple(value)


def _num_list(obj: dict, key: str) -> list[float] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _Malformed(f"'{key}' must be a list of numbers", f"found {type(value).__name__}")
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise _Malformed(f"'{key}' must be a list of numbers", f"item {i} is {type(item).__name__}")
    return value


def _opt_str(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Malformed(f"'{key}' must be a string", f"found {type(value).__name__}")
    return value


def _passage_text(item: Any, key: str) -> str:
    """A Tevatron passage: {docid, title, text} (or a bare string) -> "title text"."""
    if isinstance(item, str):
        text = item
    elif isinstance(item, dict):
        body = item.get("text")
        title = item.get("title") or ""
        if not isinstance(body, str) or not isinstance(title, str):
            raise _Malformed(f"'{key}' passages need a string 'text'")
        text = f"{title} {body}" if title.strip() else body
    else:
        raise _Malformed(f"'{key}' must be a list of passages", f"found {type(item).__name__}")
    text = text.strip()
    if not text:
        raise _Malformed(f"'{key}' holds an empty passage")
    return text


def _build(**kwargs: Any) -> TrainingExample:
    try:
        return TrainingExample(**kwargs)
    except InputError as exc:  # e.g. 3 pos_scores for 2 positives
        raise _Malformed(str(exc)) from None


# --------------------------------------------------------------------------- row parsers


def _row_prompt(prompt: str | None) -> str:
    """A row's ``prompt`` as an instruction: stripped, a trailing colon dropped ("" for none)."""
    return (prompt or "").strip().rstrip(":").rstrip()


def _flag_example(obj: dict, task: str | None, default_task: str, instruction: str) -> TrainingExample:
    query = _req_str(obj, "query")
    pos = _str_list(obj, "pos", required=True)
    neg = _str_list(obj, "neg", required=False)
    pos_scores = _num_list(obj, "pos_scores")
    neg_scores = _num_list(obj, "neg_scores")
    if pos_scores is not None and len(pos_scores) != len(pos):
        raise _Malformed("'pos_scores' and 'pos' differ in length", f"{len(pos_scores)} vs {len(pos)}")
    if neg_scores is not None and len(neg_scores) != len(neg):
        raise _Malformed("'neg_scores' and 'neg' differ in length", f"{len(neg_scores)} vs {len(neg)}")
    prompt = _row_prompt(_opt_str(obj, "prompt"))
    row_type = _opt_str(obj, "type")
    return _build(
        query=query,
        positives=pos,
        negatives=neg,
        positive_scores=pos_scores,
        negative_scores=neg_scores,
        instruction=prompt or instruction,
        task=task or (row_type.strip() if row_type and row_type.strip() else default_task),
        query_id=_query_id(obj, "query_id"),
    )


def _query_id(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def _tevatron_example(obj: dict, task: str, instruction: str) -> TrainingExample:
    if isinstance(obj.get("query"), list):
        raise _Malformed("'query' is pre-tokenized", "wb needs the query text")
    query = _req_str(obj, "query")
    positives = obj.get("positive_passages")
    if positives is None:
        raise _Malformed("missing field 'positive_passages'")
    negatives = obj.get("negative_passages") or []
    if not isinstance(positives, list) or not isinstance(negatives, list):
        raise _Malformed("'positive_passages' and 'negative_passages' must be lists")
    if not positives:
        raise _Malformed("'positive_passages' is empty")
    return _build(
        query=query,
        positives=tuple(_passage_text(p, "positive_passages") for p in positives),
        negatives=tuple(_passage_text(n, "negative_passages") for n in negatives),
        instruction=instruction,
        task=task,
        query_id=_query_id(obj, "query_id"),
    )


@dataclass(frozen=True)
class _Columns:
    """Where the query, positive, negatives and label live in a sentence-transformers row."""

    query: str | int
    positive: str | int
    negatives: tuple[str | int, ...]
    label: str | int | None
    by_name: bool

    def describe(self, names: list[str] | None = None) -> dict[str, Any]:
        def show(c: str | int | None) -> Any:
            if c is None or isinstance(c, str) or names is None:
                return c
            return names[c]

        return {
            "query": show(self.query),
            "positive": show(self.positive),
            "negatives": [show(c) for c in self.negatives],
            "label": show(self.label),
            "by_name": self.by_name,
        }


def _st_columns(names: list[str], *, keys: bool) -> _Columns | None:
    """Map column names (or dict keys when ``keys``) to roles; None when fewer than 2 columns."""
    lowered = [n.strip().lower() for n in names]

    def ref(i: int) -> str | int:
        return names[i] if keys else i

    label = next((i for i, n in enumerate(lowered) if n in _LABEL_COLUMNS), None)
    query = next((i for q in _QUERY_COLUMNS for i, n in enumerate(lowered) if n == q), None)
    positive = next((i for p in _POSITIVE_COLUMNS for i, n in enumerate(lowered) if n == p), None)
    if query is not None and positive is not None:
        negatives = tuple(ref(i) for i, n in enumerate(lowered) if n.startswith("negative"))
        return _Columns(ref(query), ref(positive), negatives, None if label is None else ref(label), True)
    others = [i for i in range(len(names)) if i != label]
    if len(others) < 2:
        return None
    return _Columns(
        ref(others[0]),
        ref(others[1]),
        tuple(ref(i) for i in others[2:]),
        None if label is None else ref(label),
        False,
    )


def _label_value(value: Any, column: str | int) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _Malformed("label is not a number", repr(value)[:40]) from None
    else:
        raise _Malformed("label is not a number", f"found {type(value).__name__}")
    if not math.isfinite(number):
        raise _Malformed("label is not a number", repr(value))
    return number


def _st_example(row: Any, cols: _Columns, task: str, instruction: str) -> TrainingExample:
    def get(c: str | int, required: bool) -> Any:
        if isinstance(row, dict):
            if c not in row or row[c] is None:
                if required:
                    raise _Malformed(f"missing field '{c}'")
                return None
            return row[c]
        return row[c]  # list rows are length-checked before

    def text(c: str | int, role: str) -> str:
        value = get(c, True)
        if not isinstance(value, str):
            raise _Malformed(f"{role} must be a string", f"found {type(value).__name__}")
        if not value.strip():
            raise _Malformed(f"{role} is empty")
        return value

    if cols.label is not None:
        label = _label_value(get(cols.label, True), cols.label)
        if label <= 0:
            raise _Filtered("label <= 0 (not a positive pair)")
    query = text(cols.query, "query")
    positive = text(cols.positive, "positive")
    negatives = []
    for c in cols.negatives:
        value = get(c, False)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # rows may have fewer negatives than the widest row
        if not isinstance(value, str):
            raise _Malformed("negative must be a string", f"found {type(value).__name__}")
        negatives.append(value)
    return _build(
        query=query,
        positives=(positive,),
        negatives=tuple(negatives),
        instruction=instruction,
        task=task,
    )


# --------------------------------------------------------------------------- detection


def _keys_format(obj: dict) -> str | None:
    if "positive_passages" in obj:
        return "tevatron"
    if "pos" in obj or ("neg" in obj and "query" in obj):  # FlagEmbedding's keys, even with its pos missing
        return "flagembedding"
    if _st_columns(list(obj.keys()), keys=True) is not None and any(
        k.strip().lower() in _QUERY_COLUMNS + _POSITIVE_COLUMNS for k in obj
    ):
        return "sentence-transformers"
    return None


def _sniff_json(path: Path) -> tuple[str | None, dict | None]:
    """(format, first object) from the first parseable object among the first lines."""
    first_problem: tuple[int, _Malformed] | None = None
    unknown_keys: tuple[int, list[str]] | None = None
    seen = 0
    for lineno, text in _lines(path):
        if isinstance(text, _Malformed):
            first_problem = first_problem or (lineno, text)
        elif text.strip():
            stripped = text.lstrip()
            if seen == 0 and stripped.startswith("["):
                raise InputError(
                    f"{path} holds a JSON array; wb reads JSON Lines (one JSON object per line)"
                )
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                first_problem = first_problem or (lineno, _Malformed("invalid JSON", exc.msg))
            else:
                if isinstance(obj, dict):
                    fmt = _keys_format(obj)
                    if fmt is not None:
                        return fmt, obj
                    unknown_keys = unknown_keys or (lineno, list(obj)[:8])
                else:
                    first_problem = first_problem or (lineno, _Malformed("not a JSON object"))
        else:
            continue
        seen += 1
        if seen >= _SNIFF_LINES:
            break
    if seen == 0:
        return None, None
    if unknown_keys is not None:
        lineno, keys = unknown_keys
        raise InputError(
            f"cannot tell the format of {path} from the keys of line {lineno} ({', '.join(keys)}): "
            "expected FlagEmbedding (query, pos[, neg]), Tevatron (query, positive_passages) "
            "or sentence-transformers columns (anchor/query/sentence1, positive/sentence2"
            "[, negative...][, label])"
        )
    lineno, problem = first_problem  # type: ignore[misc]
    raise InputError(
        f"cannot tell the format of {path}: no JSON object in its first {seen} lines "
        f"(line {lineno}: {problem.reason}{': ' + problem.detail if problem.detail else ''})"
    )


def detect_format(path: str | Path) -> str:
    """The format of a path: one of :data:`FORMATS`. Raises InputError when it cannot tell."""
    path = Path(path)
    if path.is_dir():
        if (path / "corpus.jsonl").exists() or (path / "qrels").is_dir():
            return "beir"
        raise InputError(
            f"{path} is a folder but not a BEIR dataset (expected corpus.jsonl, queries.jsonl, qrels/)"
        )
    if not path.exists():
        raise InputError(f"training data not found: {path}")
    if _inner_suffix(path) in _DELIMITED:
        return "sentence-transformers"
    fmt, _ = _sniff_json(path)
    if fmt is None:
        raise InputError(f"no usable training examples in {path}: the file is empty")
    return fmt


# --------------------------------------------------------------------------- readers


class _Reader:
    def __init__(self, path: Path, report: ReadReport, skip_malformed: bool):
        self.path = path
        self.report = report
        self.skip_malformed = skip_malformed

    def bad(self, lineno: int, problem: _Malformed, file: Path | None = None) -> None:
        file = file or self.path
        where = f"{file}:{lineno}"
        if not self.skip_malformed:
            detail = f" ({problem.detail})" if problem.detail else ""
            raise InputError(
                f"{where}: {problem.reason}{detail}; fix or delete the row"
            )
        self.report.skip(problem.reason, where, malformed=True)

    def filtered(self, lineno: int, reason: str) -> None:
        self.report.skip(reason, f"{self.path}:{lineno}", malformed=False)


def _row_columns(obj: dict, seen: dict[tuple[str, ...], _Columns], first: _Columns | None) -> _Columns:
    """The roles of a sentence-transformers JSON row's keys, found in that row by name (a ``label``
    or ``negative`` only later rows carry counts there); ``seen`` caches them by key tuple. A row
    without the label column of the ``first`` row keeps looking for it there (so it is refused as
    missing, not taken for an unlabelled pair)."""
    keys = tuple(obj)
    cols = seen.get(keys)
    if cols is None:
        cols = _st_columns(list(keys), keys=True)
        if cols is None:
            raise _Malformed("needs at least two text columns")
        seen[keys] = cols
    if cols.label is None and first is not None and first.label is not None:
        cols = replace(cols, label=first.label)
    return cols


def _read_json_format(
    reader: _Reader, fmt: str, task: str | None, default_task: str, instruction: str
) -> Iterator[TrainingExample]:
    report = reader.report
    first: _Columns | None = None  # a sentence-transformers file's first row's columns
    seen: dict[tuple[str, ...], _Columns] = {}  # columns by a row's keys
    for lineno, obj in _json_objects(reader.path):
        report.read += 1
        if isinstance(obj, _Malformed):
            reader.bad(lineno, obj)
            continue
        try:
            if fmt == "flagembedding":
                example = _flag_example(obj, task, default_task, instruction)
            elif fmt == "tevatron":
                example = _tevatron_example(obj, task or default_task, instruction)
            else:
                cols = _row_columns(obj, seen, first)
                if first is None:
                    first = cols
                    report.columns = cols.describe()
                example = _st_example(obj, cols, task or default_task, instruction)
        except _Malformed as problem:
            other = _keys_format(obj)
            if other is not None and other != fmt and not problem.detail:
                problem.detail = f"the row looks like {other}, but the file was detected as {fmt}"
            reader.bad(lineno, problem)
            continue
        except _Filtered as skip:
            reader.filtered(lineno, skip.reason)
            continue
        report.kept += 1
        yield example


class _DecodingLines:
    """Decoded lines for the csv module, remembering which line numbers failed to decode."""

    def __init__(self, path: Path):
        self.path = path
        self.bad_lines: set[int] = set()

    def __iter__(self) -> Iterator[str]:
        for lineno, text in _lines(self.path):
            if isinstance(text, _Malformed):
                self.bad_lines.add(lineno)
                yield ""
            else:
                yield text + "\n"


def _delimited_rows(path: Path, delimiter: str) -> Iterator[tuple[int, list[str] | _Malformed]]:
    """(first line number, fields) per record. TSV is split on tabs with no quoting (MS MARCO
    style); CSV goes through the csv module, so quoted fields may span lines."""
    if delimiter == "\t":
        for lineno, text in _lines(path):
            if isinstance(text, _Malformed):
                yield lineno, text
            elif text.strip():
                yield lineno, text.split("\t")
        return
    lines = _DecodingLines(path)
    reader = csv.reader(iter(lines), delimiter=delimiter, strict=True)  # an unclosed quote is an error
    previous_end = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            start = previous_end + 1
            previous_end = reader.line_num
            yield start, _Malformed("unparseable CSV (unbalanced quote?)", str(exc))
            continue
        start, previous_end = previous_end + 1, reader.line_num
        if any(n in lines.bad_lines for n in range(start, previous_end + 1)):
            yield start, _Malformed("invalid UTF-8")
            continue
        if not row or all(not field.strip() for field in row):
            continue
        yield start, row


def _read_delimited(
    reader: _Reader, task: str, instruction: str, header: bool
) -> Iterator[TrainingExample]:
    report = reader.report
    delimiter = "\t" if _inner_suffix(reader.path) == ".tsv" else ","
    cols: _Columns | None = None
    width = 0
    for lineno, row in _delimited_rows(reader.path, delimiter):
        if cols is None:
            if isinstance(row, _Malformed):
                raise InputError(f"{reader.path}:{lineno}: cannot read the first row: {row.reason}")
            if header and not _header_like(row):  # MS MARCO's triples have none: the first row is data
                header = False
            names = [c.strip() for c in row] if header else [f"column {i + 1}" for i in range(len(row))]
            width = len(row)
            cols = _st_columns(names, keys=False) if header else _Columns(0, 1, tuple(range(2, width)), None, False)
            if cols is None or width < 2:
                raise InputError(
                    f"{reader.path}:{lineno}: needs at least two columns (query, positive); "
                    f"found {width} (wrong delimiter? .tsv files are tab-separated, .csv comma-separated)"
                )
            report.columns = cols.describe(names)
            if header:
                continue
        report.read += 1
        if isinstance(row, _Malformed):
            reader.bad(lineno, row)
            continue
        if len(row) != width:
            reader.bad(lineno, _Malformed(f"expected {width} columns", f"found {len(row)}"))
            continue
        try:
            example = _st_example(row, cols, task, instruction)
        except _Malformed as problem:
            reader.bad(lineno, problem)
            continue
        except _Filtered as skip:
            reader.filtered(lineno, skip.reason)
            continue
        report.kept += 1
        yield example


def _header_like(row: list[str]) -> bool:
    """Whether a first row reads as column names (``query``, ``positive``, ``negative_1``, any
    short name without spaces) rather than data (a sentence): a file without a header loses no row."""
    names = [c.strip().lower() for c in row]
    known = set(_QUERY_COLUMNS) | set(_POSITIVE_COLUMNS) | set(_LABEL_COLUMNS)
    if any(n in known or n.startswith("negative") for n in names):
        return True
    return all(n and len(n) <= 40 and not any(ch.isspace() for ch in n) for n in names)


def _read_beir(reader: _Reader, split: str, task: str, instruction: str) -> Iterator[TrainingExample]:
    folder, report = reader.path, reader.report
    corpus, queries = folder / "corpus.jsonl", folder / "queries.jsonl"
    qrels = folder / "qrels" / f"{split}.tsv"
    for needed in (corpus, queries):
        if not needed.exists():
            raise InputError(f"{folder} is not a complete BEIR folder: {needed.name} is missing")
    if not qrels.exists():
        found = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        hint = (f" (splits present: {', '.join(found)}; choose one with split = \"NAME\" in the run.toml "
                "given to --config, or in the dataset's [[data]] table)" if found else "")
        raise InputError(f"{folder}: qrels/{split}.tsv not found{hint}")

    # 1. qrels (small): query -> [(doc, score)], in file order.
    judged: dict[str, list[tuple[str, float]]] = {}
    for lineno, text in _lines(qrels):
        if isinstance(text, _Malformed):
            reader.bad(lineno, text, qrels)
            continue
        if not text.strip():
            continue
        fields = text.split("\t") if "\t" in text else text.split()
        if len(fields) == 4:  # TREC qrels: qid iteration docid relevance
            fields = [fields[0], fields[2], fields[3]]
        if len(fields) != 3:
            reader.bad(lineno, _Malformed("qrels rows need 3 columns", f"found {len(fields)}"), qrels)
            continue
        qid, did, raw_score = (f.strip() for f in fields)
        try:
            score = float(raw_score)
        except ValueError:
            if lineno == 1:
                continue  # the header: query-id corpus-id score
            reader.bad(lineno, _Malformed("qrels score is not a number", repr(raw_score)[:40]), qrels)
            continue
        judged.setdefault(qid, []).append((did, score))
    needed_docs = {did for pairs in judged.values() for did, _ in pairs}

    # 2. queries and passages: stream, keep only what the qrels name.
    def load(path: Path, wanted: set[str] | dict, passage: bool) -> dict[str, str]:
        out: dict[str, str] = {}
        for lineno, obj in _json_objects(path):
            if isinstance(obj, _Malformed):
                reader.bad(lineno, obj, path)
                continue
            raw_id = obj.get("_id")
            if raw_id is None:
                reader.bad(lineno, _Malformed("missing field '_id'"), path)
                continue
            key = str(raw_id)
            if key not in wanted:
                continue
            body, title = obj.get("text"), obj.get("title") or ""
            if not isinstance(body, str) or not isinstance(title, str):
                reader.bad(lineno, _Malformed("'text' and 'title' must be strings"), path)
                continue
            value = (f"{title} {body}" if passage and title.strip() else body).strip()
            if value:
                out[key] = value
        return out

    query_text = load(queries, judged, passage=False)
    passage_text = load(corpus, needed_docs, passage=True)

    # 3. one example per judged query.
    for qid, pairs in judged.items():
        report.read += 1
        where = f"{qrels}:query-id {qid}"
        if qid not in query_text:
            report.skip("query-id missing from queries.jsonl (or empty)", where, malformed=False)
            continue
        positives, negatives = [], []
        for did, score in pairs:
            text = passage_text.get(did)
            if text is None:
                report.warn("qrels corpus-id missing from corpus.jsonl (or empty)")
                continue
            (positives if score > 0 else negatives).append(text)
        if not positives:
            report.skip("no positive passage (score > 0) found in corpus.jsonl", where, malformed=False)
            continue
        report.kept += 1
        yield TrainingExample(
            query=query_text[qid],
            positives=tuple(dict.fromkeys(positives)),
            negatives=tuple(n for n in dict.fromkeys(negatives) if n not in positives),
            instruction=instruction,
            task=task,
            query_id=qid,
        )


def iter_examples(
    path: str | Path,
    *,
    split: str = "train",
    task: str | None = None,
    instruction: str | None = None,
    skip_malformed: bool = False,
    format: str = "auto",
    header: bool = True,
    report: ReadReport | None = None,
) -> Iterator[TrainingExample]:
    """Stream the examples of ``path``; see :func:`read_examples` for the arguments.

    Pass a :class:`ReadReport` as ``report`` to get the counts as the stream is consumed. The
    "no usable examples" check is done by :func:`read_examples`, not here.
    """
    path = Path(path)
    report = report if report is not None else ReadReport(path=str(path))
    report.path = str(path)
    name = _FORMAT_ALIASES.get(format.lower())
    if name is None:
        raise InputError(f"unknown training data format {format!r}: expected one of {', '.join(FORMATS)}")
    fmt = detect_format(path) if name == "auto" else name
    if not path.exists():
        raise InputError(f"training data not found: {path}")
    report.format = fmt
    reader = _Reader(path, report, skip_malformed)
    default_task = path.name if path.is_dir() else _strip_suffixes(path)
    default_instruction = instruction or ""
    if fmt == "beir":
        if not path.is_dir():
            raise InputError(f"{path}: a BEIR dataset is a folder (corpus.jsonl, queries.jsonl, qrels/)")
        rows = _read_beir(reader, split, task or default_task, default_instruction)
    elif path.is_dir():
        raise InputError(f"{path} is a folder; the {fmt} format is a file")
    elif fmt == "sentence-transformers" and _inner_suffix(path) in _DELIMITED:
        rows = _read_delimited(reader, task or default_task, default_instruction, header)
    else:
        rows = _read_json_format(reader, fmt, task, default_task, default_instruction)
    for example in rows:
        yield _without_positive_negatives(example, report)


def _without_positive_negatives(example: TrainingExample, report: ReadReport,
                                positives: Iterable[str] | None = None) -> TrainingExample:
    """``example`` less the hard negatives that equal a positive (with their scores), counted in
    ``report``: such a negative is the target itself, so the loss could not fall below log 2 and
    would push the query away from a passage it is pulled to. ``positives``: every positive of the
    example's query (default: its own row's)."""
    own = set(example.positives if positives is None else positives)
    if not any(n in own for n in example.negatives):
        return example
    keep = [i for i, n in enumerate(example.negatives) if n not in own]
    report.warn(_NEGATIVE_IS_POSITIVE)
    scores = example.negative_scores
    return replace(example, negatives=tuple(example.negatives[i] for i in keep),
                   negative_scores=None if scores is None else tuple(scores[i] for i in keep))


def _without_query_positive_negatives(examples: list[TrainingExample], report: ReadReport) -> None:
    """Drop, in place, hard negatives that are a positive of the same query (its text, within its
    task) in another row: sentence-transformers pairs and FlagEmbedding files give one query several
    rows, and one row's negative may be another row's labelled positive."""
    rows: dict[tuple[str, str], int] = {}
    for ex in examples:
        key = (ex.task, ex.query)
        rows[key] = rows.get(key, 0) + 1
    positives: dict[tuple[str, str], set[str]] = {key: set() for key, n in rows.items() if n > 1}
    if not positives:
        return
    for ex in examples:
        if (ex.task, ex.query) in positives:
            positives[(ex.task, ex.query)].update(ex.positives)
    for i, ex in enumerate(examples):
        if ex.negatives and (ex.task, ex.query) in positives:
            examples[i] = _without_positive_negatives(ex, report, positives[(ex.task, ex.query)])


def read_examples(
    path: str | Path,
    *,
    split: str = "train",
    task: str | None = None,
    instruction: str | None = None,
    skip_malformed: bool = False,
    format: str = "auto",
    header: bool = True,
) -> ExampleList:
    """Read every training example of a file or BEIR folder, detecting its format.

    Args:
        path: a ``.jsonl``/``.json``/``.csv``/``.tsv`` file (optionally ``.gz``) or a BEIR folder.
        split: the BEIR qrels split (``qrels/{split}.tsv``).
        task: the task of every example (default: the row's ``type``, else the file stem).
        instruction: the instruction of rows that have no ``prompt`` of their own.
        skip_malformed: skip and count malformed rows instead of raising on the first one.
        format: ``"auto"`` or one of :data:`FORMATS` (``"flag"``/``"st"`` also accepted).
        header: CSV/TSV only: False when the file has no header row (columns by position).

    Returns:
        An :class:`ExampleList` (a list) whose ``.report`` holds the counts. A hard negative that
        is a positive of the same query (same text, same task, in any row) is dropped and counted
        in the report's warnings (:func:`iter_examples` streams, so it sees each row's own only).

    Raises:
        InputError: a missing path, an unknown format, a malformed row (naming the file,
        line and reason) unless ``skip_malformed``, or no usable example at all.
    """
    report = ReadReport(path=str(path))
    examples = ExampleList(
        iter_examples(
            path,
            split=split,
            task=task,
            instruction=instruction,
            skip_malformed=skip_malformed,
            format=format,
            header=header,
            report=report,
        ),
        report,
    )
    _without_query_positive_negatives(examples, report)
    if not examples:
        if report.skipped:
            why = f"read {report.read} records, all skipped: {report.describe_skips()}"
        elif report.read == 0:
            why = "the file has no data rows" if not Path(path).is_dir() else f"qrels/{split}.tsv has no rows"
        else:
            why = f"read {report.read} records, none kept"
        if report.warnings:
            why += "; " + "; ".join(f"{k} ({v})" for k, v in report.warnings.items())
        raise InputError(f"no usable training examples in {path}: {why}")
    return examples
