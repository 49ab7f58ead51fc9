"""Load and validate an evaluation dataset folder: BEIR format or FlagEmbedding's local format.

BEIR (``--split test`` reads ``qrels/test.tsv``)::

    corpus.jsonl      {"_id", "title"?, "text"} per line
    queries.jsonl     {"_id", "text"} per line
    qrels/<split>.tsv query-id <TAB> corpus-id <TAB> score   (a header line is optional; TREC's
                      space-separated "qid 0 docid relevance" is read too)

FlagEmbedding (``FlagEmbedding.abc.evaluation`` local data)::

    corpus.jsonl              {"id" (or "_id"), "title"?, "text"} per line
    <split>_queries.jsonl     {"id", "text"} per line
    <split>_qrels.jsonl       {"qid", "docid", "relevance"} per line

Rules (every violation is an ``InputError``, exit 2, with one line naming the file):
- a judgement with score > 0 is relevant; 0 or less is not;
- only queries with at least one relevant document in the split are evaluated;
- qrels that name a query absent from the queries file are refused, with how many and a few
  examples; documents absent from the corpus are a note and count as relevant documents never
  retrieved (as trec_eval and BEIR count them), unless the corpus holds none of the relevant ones
  (then it is refused: the wrong corpus);
- relevance grades are whole numbers; nDCG takes them as gains, the other metrics count > 0; a
  (query, document) pair judged twice takes its last grade (as BEIR's loader and pytrec_eval do);
- a query id given twice in the queries file is refused; a UTF-8 BOM is ignored;
- a split with no judgements, or none relevant, is refused.

A FlagEmbedding corpus (``"id"`` instead of ``"_id"``) cannot be read by ``wb index`` as it is;
``beir_corpus_for_index`` writes a BEIR copy into the workspace (rewritten only when it changed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import InputError
from workbench.text import file_lines, plural

EXAMPLES = 3


@dataclass
class EvalDataset:
    name: str  # the folder's name
    root: Path  # absolute folder
    split: str
    format: str  # "beir" or "flagembedding"
    corpus_path: Path  # the dataset's corpus.jsonl
    queries: dict[str, str]  # evaluated queries only: id -> text, in qrels order
    qrels: dict[str, dict[str, int]]  # evaluated queries only: id -> {doc id: relevance > 0}
    qrels_path: Path
    corpus_size: int = 0
    judged_queries: int = 0  # queries named in the split's qrels (with or without a relevant doc)
    corpus_id_field: str = "_id"
    notes: list[str] = field(default_factory=list)
    corpus_ids: frozenset[str] = frozenset()

    @property
    def query_ids(self) -> list[str]:
        return list(self.queries)

    @property
    def input_files(self) -> tuple[Path, Path, Path]:
        """The files the dataset is read from: corpus, the split's queries and qrels."""
        return self.corpus_path, _split_files(self.root, self.format, self.split)[0], self.qrels_path


def _examples(items) -> str:
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:EXAMPLES])
    return shown + (", …" if len(items) > EXAMPLES else "")


def _read_jsonl(path: Path, id_fields: tuple[str, ...], what: str, need_text: bool):
    """Yield (id, row) of a JSON-lines file; malformed lines are an InputError naming the line."""
    try:
        handle = open(path, encoding="utf-8-sig")  # a BOM (Windows editors) is not part of the first row
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        try:
            yield from jsonl_rows(handle, str(path), id_fields, what, need_text)
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not valid UTF-8 ({exc.reason})") from exc


def jsonl_rows(lines, source: str, id_fields: tuple[str, ...], what: str, need_text: bool, first_line: int = 1):
    """Yield (id, row) for each non-blank line of ``lines`` (JSON objects; the first is line
    ``first_line`` of ``source``, which names them in errors). The id is the first of ``id_fields`` a
    row has; a malformed line, a line that is not an object, a missing id, an id that is not valid
    Unicode (a lone surrogate escape, ``"\\ud800"``: it could name nothing in a run file) or
    (``need_text``) a missing string "text" is an InputError naming the line. Lone surrogates in
    "text" and "title" are replaced by U+FFFD, as the corpus reader replaces them."""
    from workbench.ingest.readers import without_lone_surrogates

    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{source}:{number}: malformed JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise InputError(f"{source}:{number}: a {what} line must be a JSON object")
        raw = next((row[f] for f in id_fields if row.get(f) not in (None, "")), None)
        if raw is None:
            raise InputError(f"{source}:{number}: {what} has no {' or '.join(repr(f) for f in id_fields)}")
        if isinstance(raw, str) and without_lone_surrogates(raw) != raw:
            raise InputError(f"{source}:{number}: {what} id {raw!r} is not valid Unicode (a lone surrogate)")
        for key in ("text", "title"):
            if isinstance(row.get(key), str):
                row[key] = without_lone_surrogates(row[key])
        if need_text and not isinstance(row.get("text"), str):
            raise InputError(f"{source}:{number}: {what} {raw!r} has no \"text\"")
        yield str(raw), row


def _corpus_ids(path: Path) -> tuple[set[str], str]:
    ids: set[str] = set()
    id_field = "_id"
    for doc_id, row in _read_jsonl(path, ("_id", "id"), "document", need_text=False):
        if row.get("_id") in (None, ""):
            id_field = "id"
        ids.add(doc_id)
    return ids, id_field


def _queries(path: Path) -> dict[str, str]:
    """id -> text; a query id given twice is an InputError (which text was meant is unknowable)."""
    out: dict[str, str] = {}
    for qid, row in _read_jsonl(path, ("_id", "id"), "query", need_text=True):
        if qid in out:
            raise InputError(f"{path}: query id {qid!r} is given twice")
        out[qid] = row["text"]
    return out


def _grade(text) -> int:
    """A qrels relevance grade: a whole number (``2``, ``1.0``, ``-1``); ValueError otherwise."""
    try:
        value = float(text)
    except OverflowError:
        raise ValueError(text) from None
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def _qrels_tsv(path: Path) -> list[tuple[str, str, int]]:
    rows: list[tuple[str, str, int]] = []
    try:
        lines = file_lines(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 ({exc.reason})") from exc
    first = True
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        # BEIR's tab-separated columns; TREC qrels files are often space-separated
        line = line.strip()  # a stray tab or space at either end is no column
        parts = line.split("\t") if "\t" in line else line.split()
        # only the first line may be a header, and only one that reads as one: no digit anywhere and
        # a column named as headers name them (`query-id corpus-id score`); `q1 d1 relevant` is a
        # row with a bad score, not a header to skip with its judgement
        if first and _is_header(parts):
            first = False
            continue
        first = False
        if len(parts) == 4 and (parts[1].strip().isdigit() or parts[1].strip() == "Q0"):
            parts = [parts[0], parts[2], parts[3]]  # TREC qrels: qid iteration docid relevance
        if len(parts) != 3:
            raise InputError(f"{path}:{number}: expected 'query-id<TAB>corpus-id<TAB>score' "
                             f"(or TREC's 'qid 0 docid relevance'), got {line[:80]!r}")
        try:
            score = _grade(parts[2])
        except ValueError:
            raise InputError(f"{path}:{number}: score {parts[2].strip()!r} is not a whole number "
                             "(relevance grades are 0, 1, 2, ...)") from None
        rows.append((parts[0].strip(), parts[1].strip(), score))
    return rows


HEADER_WORDS = frozenset({"query-id", "queryid", "qid", "query", "topic", "corpus-id", "corpusid", "doc-id", "docid",
                          "doc", "document", "score", "relevance", "rel", "label", "grade", "iter", "iteration"})


def _is_header(parts: list[str]) -> bool:
    """Whether a qrels file's first line is a header row (BEIR's ``query-id corpus-id score``)."""
    columns = [p.strip().lower().replace("_", "-") for p in parts]
    return not any(ch.isdigit() for c in columns for ch in c) and any(c in HEADER_WORDS for c in columns)


def graded_judgements(rows: list[tuple[str, str, int]]) -> dict[str, dict[str, int]]:
    """``{query id: {doc id: grade}}`` of qrels rows, in file order; a pair judged twice takes its
    last grade, as BEIR's loader and pytrec_eval/ranx dictionaries read it (``q1 d1 2`` then
    ``q1 d1 0``: not relevant)."""
    graded: dict[str, dict[str, int]] = {}
    for qid, doc, score in rows:
        graded.setdefault(qid, {})[doc] = score
    return graded


def _qrels_jsonl(path: Path) -> list[tuple[str, str, int]]:
    rows: list[tuple[str, str, int]] = []
    for qid, row in _read_jsonl(path, ("qid", "query-id", "query_id"), "judgement", need_text=False):
        doc = next((row[f] for f in ("docid", "corpus-id", "doc_id") if row.get(f) not in (None, "")), None)
        if doc is None:
            raise InputError(f"{path}: judgement for query {qid!r} has no \"docid\"")
        try:
            score = _grade(row.get("relevance", row.get("score", 1)))
        except (TypeError, ValueError):
            raise InputError(f"{path}: judgement ({qid!r}, {doc!r}) has a relevance that is not a whole "
                             "number") from None
        rows.append((qid, str(doc), score))
    return rows


def _available_splits(root: Path, fmt: str) -> list[str]:
    if fmt == "beir":
        folder = root / "qrels"
        return sorted(p.stem for p in folder.glob("*.tsv")) if folder.is_dir() else []
    return sorted(p.name[: -len("_qrels.jsonl")] for p in root.glob("*_qrels.jsonl"))


def detect_format(root: Path, split: str) -> str:
    if (root / "queries.jsonl").exists() or (root / "qrels").is_dir():
        return "beir"
    if (root / f"{split}_qrels.jsonl").exists() or (root / f"{split}_queries.jsonl").exists() or any(
        root.glob("*_qrels.jsonl")
    ):
        return "flagembedding"
    return "beir"  # report the BEIR files as missing


def _split_files(root: Path, fmt: str, split: str) -> tuple[Path, Path]:
    """(queries file, qrels file) of ``split`` in a dataset folder of format ``fmt``."""
    if fmt == "beir":
        return root / "queries.jsonl", root / "qrels" / f"{split}.tsv"
    return root / f"{split}_queries.jsonl", root / f"{split}_qrels.jsonl"


def judgements(path: str | Path, split: str, query_id: str) -> dict[str, int]:
    """{doc id: grade > 0} of one query in a dataset's ``split`` (its qrels file only: no corpus or
    queries read), for marking relevant hits (the TUI's Search, opened from Evaluate)."""
    root = Path(path).expanduser()
    fmt = detect_format(root, split)
    _queries_path, qrels_path = _split_files(root, fmt, split)
    if not qrels_path.is_file():
        raise InputError(f"dataset {root} has no {split} qrels")
    rows = _qrels_tsv(qrels_path) if fmt == "beir" else _qrels_jsonl(qrels_path)
    return {doc: grade for doc, grade in graded_judgements(rows).get(query_id, {}).items() if grade > 0}


def load_dataset(path: str | Path, split: str = "test") -> EvalDataset:
    """Read and check a dataset folder; see the module docstring for the formats and rules."""
    root = Path(path).expanduser()
    if not root.exists():
        raise InputError(f"no such dataset folder: {path}")
    if not root.is_dir():
        raise InputError(f"a dataset is a folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), not a file: {path}")
    root = root.absolute()
    if not split or "/" in split or split.startswith("."):
        raise InputError(f"bad split name {split!r}")
    fmt = detect_format(root, split)
    corpus = root / "corpus.jsonl"
    queries_path, qrels_path = _split_files(root, fmt, split)
    missing = [p for p in (corpus, queries_path, qrels_path) if not p.is_file()]
    if missing:
        names = ", ".join(str(p.relative_to(root)) for p in missing)
        splits = [s for s in _available_splits(root, fmt) if s != split]
        hint = f" (splits present: {', '.join(splits)})" if splits and qrels_path in missing else ""
        raise InputError(f"dataset {root} is missing {names}{hint}")

    rows = _qrels_tsv(qrels_path) if fmt == "beir" else _qrels_jsonl(qrels_path)
    if not rows:
        raise InputError(f"split '{split}' is empty: {qrels_path} holds no judgements")
    doc_ids, id_field = _corpus_ids(corpus)
    if not doc_ids:
        raise InputError(f"{corpus} holds no documents")
    all_queries = _queries(queries_path)
    unknown_docs = sorted({d for _q, d, _s in rows if d not in doc_ids})
    unknown_queries = sorted({q for q, _d, _s in rows if q not in all_queries})
    if unknown_queries:
        raise InputError(f"{qrels_path} names {len(unknown_queries)} quer{'y' if len(unknown_queries) == 1 else 'ies'} "
                         f"not in {queries_path.name} ({_examples(unknown_queries)})")
    judged = graded_judgements(rows)  # judged query ids in file order; a pair judged twice: its last grade
    relevant_docs = {d for docs in judged.values() for d, g in docs.items() if g > 0}
    if relevant_docs and relevant_docs <= set(unknown_docs):
        raise InputError(f"{corpus.name} holds none of the {len(relevant_docs)} documents {qrels_path.name} judges "
                         f"relevant ({_examples(sorted(relevant_docs))}): is it this dataset's corpus?")
    notes = []
    if unknown_docs:  # as trec_eval and BEIR count them: relevant, and never retrieved
        missing = sorted(set(unknown_docs) & relevant_docs)
        notes.append(f"{qrels_path.name} judges {len(unknown_docs)} document(s) not in {corpus.name} "
                     f"({_examples(unknown_docs)}); "
                     + (f"{len(missing)} of them relevant, counted as relevant documents never retrieved"
                        if missing else "none of them relevant, so no metric changes"))

    qrels = {q: relevant for q, docs in judged.items() if (relevant := {d: g for d, g in docs.items() if g > 0})}
    if not qrels:
        raise InputError(f"split '{split}' is empty: no judgement in {qrels_path} has a score above 0")
    order = [q for q in judged if q in qrels]
    dataset = EvalDataset(
        name=root.name,
        root=root,
        split=split,
        format=fmt,
        corpus_path=corpus,
        queries={q: all_queries[q] for q in order},
        qrels={q: qrels[q] for q in order},
        qrels_path=qrels_path,
        corpus_size=len(doc_ids),
        judged_queries=len(judged),
        corpus_id_field=id_field,
        corpus_ids=frozenset(doc_ids),
    )
    empty = [q for q in order if not all_queries[q].strip()]
    if empty:
        raise InputError(f"{queries_path}: {len(empty)} evaluated quer{'y has' if len(empty) == 1 else 'ies have'} "
                         f"empty text ({_examples(empty)})")
    dataset.notes.extend(notes)
    if len(judged) > len(order):
        n = len(judged) - len(order)
        dataset.notes.append(f"{plural(n, 'judged query', 'judged queries')} {'has' if n == 1 else 'have'} no relevant "
                             f"document and {'is' if n == 1 else 'are'} not evaluated")
    return dataset


def first_queries(dataset: EvalDataset, n: int) -> EvalDataset:
    """The same dataset restricted to its first ``n`` evaluated queries."""
    from dataclasses import replace

    keep = dataset.query_ids[:n]
    return replace(dataset, queries={q: dataset.queries[q] for q in keep}, qrels={q: dataset.qrels[q] for q in keep})


def beir_corpus_for_index(dataset: EvalDataset, folder: Path) -> Path:
    """The file to give ``wb index``: the dataset's own corpus.jsonl when its rows carry ``_id``,
    else a BEIR copy (``id`` renamed ``_id``) written under ``folder`` only when its content changed."""
    if dataset.corpus_id_field == "_id":
        return dataset.corpus_path
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "corpus.jsonl"
    lines = []
    for doc_id, row in _read_jsonl(dataset.corpus_path, ("_id", "id"), "document", need_text=False):
        out = {"_id": doc_id, "title": row.get("title") or "", "text": row.get("text") or ""}
        lines.append(json.dumps(out, ensure_ascii=False))
    content = "\n".join(lines) + "\n"
    if not target.exists() or target.read_text(encoding="utf-8") != content:
        tmp = target.with_suffix(".tmp")
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(target)
    return target
