"""BM25 queries: punctuation-joined words (code identifiers) are searched as their parts, OR'ed.

Against a real Tantivy index in a temporary folder (no models needed: BM25 is Tantivy's own).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLE
from workbench.store.tantivy_store import TantivyChunkStore, bm25_query_text

NO_SPARSE = (np.zeros(0, np.int32), np.zeros(0, np.float32))


def _store(folder: Path, texts: list[str]) -> TantivyChunkStore:
    """A Tantivy store holding ``texts``, chunk key = position."""
    store = TantivyChunkStore(folder, 0.02)
    store.create_if_missing()
    store.add(list(range(len(texts))), [f"d{i}" for i in range(len(texts))], texts, [NO_SPARSE] * len(texts))
    store.commit()
    return store


def _search(store: TantivyChunkStore, query: str, k: int = 1000) -> dict[int, float]:
    keys, scores = store.bm25_search(query, k)
    return dict(zip(keys.tolist(), scores.tolist()))


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory) -> TantivyChunkStore:
    """Every file of the bundled sample corpus as one Tantivy document."""
    files = sorted(p for p in SAMPLE.rglob("*") if p.is_file() and not p.name.startswith("."))
    return _store(tmp_path_factory.mktemp("tv-sample"), [p.read_text(encoding="utf-8") for p in files])


@pytest.mark.parametrize("dotted", ["itertools.groupby", "heapq.heappush", "os.path.join", "functools.lru_cache"])
def test_dotted_identifier_finds_what_its_spaced_words_find(sample_store, dotted):
    spaced = _search(sample_store, " ".join(dotted.replace("_", ".").split(".")))
    got = _search(sample_store, dotted)
    assert got.keys() == spaced.keys()
    assert got == pytest.approx(spaced)


def test_dotted_identifier_is_not_a_phrase_on_the_sample_corpus(sample_store):
    # The reported bug: as a phrase, itertools.groupby found 2 documents and heapq.heappush 1.
    assert len(_search(sample_store, "itertools.groupby", 10)) == 10
    assert len(_search(sample_store, "heapq.heappush", 10)) == len(_search(sample_store, "heapq heappush", 10)) > 5


def test_parts_need_not_be_adjacent_and_the_exact_identifier_still_matches(tmp_path):
    store = _store(tmp_path / "tv", [
        "Use itertools.groupby to group consecutive items.",  # the identifier itself
        "groupby comes from the itertools module.",  # both words, not adjacent, reversed
        "A note on itertools only.",  # one part
        "Nothing relevant here.",
    ])
    got = _search(store, "itertools.groupby")
    assert set(got) == {0, 1, 2}
    assert got[0] > got[2] and got[1] > got[2]  # matching both parts beats matching one
    assert set(_search(store, "snake_case")) == set()  # no part occurs: nothing, not an error
    assert _search(store, "find snake_case") == _search(store, "find snake case")


def test_plain_word_queries_score_exactly_as_the_query_parser_does(sample_store):
    for text in ["itertools groupby", "remove a directory tree", "Sleep seconds", "json encoder decoder"]:
        assert bm25_query_text(text) == text.lower()
        query, _ = sample_store.index.parse_query_lenient(text, ["bm25"])
        keys, scores = sample_store._run(query, 50)
        assert _search(sample_store, text, 50) == dict(zip(keys.tolist(), scores.tolist()))


def test_upper_case_operators_are_words(sample_store):
    # the parser reads AND / OR / NOT as operators: "sleep NOT seconds" would exclude documents
    assert _search(sample_store, "sleep NOT seconds", 50) == _search(sample_store, "sleep not seconds", 50)
    assert _search(sample_store, "heapq AND nosuchword", 50) == _search(sample_store, "heapq and nosuchword", 50)
    assert _search(sample_store, "heapq AND nosuchword", 50)  # an OR: heapq alone still matches


def test_query_syntax_and_bare_punctuation_are_harmless(sample_store):
    assert bm25_query_text('heapq.heappush(heap, "item")') == "heapq heappush heap item"
    assert _search(sample_store, "...") == {}
    assert _search(sample_store, "") == {}
    assert _search(sample_store, 'heapq.heappush(heap, "item")')


def test_a_repeated_query_word_counts_once(sample_store):
    """As README says: a word repeated (in any case) counts once, no query-term frequency; two
    words of one stem (`heap heaps`) count each, as two different words do."""
    one = _search(sample_store, "heap")
    assert one
    got = _search(sample_store, "heap Heap HEAP heap")
    assert got.keys() == one.keys() and all(abs(got[k] - one[k]) < 1e-5 for k in one)
    stems = _search(sample_store, "heap heaps")
    assert stems.keys() == one.keys() and all(abs(stems[k] - 2 * one[k]) < 1e-4 for k in one)
