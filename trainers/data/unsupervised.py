"""Unsupervised (query, positive) pairs from raw passages, for a corpus with no labels.

Two classic recipes, both deterministic for a seed and both returning
:class:`~trainers.data.example.TrainingExample` objects with no hard negatives (in-batch
negatives do the work):

* :func:`independent_cropping` (Contriever, Izacard et al. 2022): two spans cropped
  independently at random from the same passage are a query and its positive.
* :func:`inverse_cloze` (ICT, Lee et al. 2019, "Latent Retrieval for Weakly Supervised Open
  Domain QA"): one sentence of a passage is the query, the rest of the passage the positive.

Spans are counted in whitespace-separated words, not model tokens, so the data does not
depend on a tokenizer.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

from workbench.errors import InputError, UsageError

from .example import TrainingExample

__all__ = ["cloze_candidates", "cloze_pair", "crop_pair", "independent_cropping", "inverse_cloze", "split_sentences"]

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def split_sentences(text: str) -> list[str]:
    """Split on whitespace after ``.``, ``!`` or ``?`` (a simple, dependency-free splitter)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _as_list(passages: Iterable[str]) -> list[str]:
    out = list(passages)
    for i, passage in enumerate(out):
        if not isinstance(passage, str):
            raise InputError(f"passage {i} is {type(passage).__name__}, expected a string")
    return out


def _order(eligible: list[int], n: int | None, rng: random.Random) -> list[int]:
    """Which passages to use: all of them once (n=None) or n of them, shuffled passes over the
    eligible passages so that no passage repeats before every one was used."""
    if n is None:
        return list(eligible)
    if n < 1:
        raise UsageError(f"n must be at least 1, got {n}")
    order: list[int] = []
    while len(order) < n:
        chunk = list(eligible)
        rng.shuffle(chunk)
        order.extend(chunk)
    return order[:n]


def independent_cropping(
    passages: Iterable[str],
    n: int | None = None,
    seed: int = 0,
    min_words: int = 8,
    max_words: int = 64,
    *,
    task: str = "independent-cropping",
    instruction: str = "",
    sources: list[int] | None = None,
) -> list[TrainingExample]:
    """Contriever's independent cropping: two random spans of one passage as (query, positive).

    For each chosen passage of W >= ``min_words`` words, each of the two spans independently
    gets a length L uniform in ``[min_words, min(max_words, W)]`` and a start uniform in
    ``[0, W - L]``; the first span is the query, the second the positive. (Contriever draws
    L as 10-50 % of the passage; fixed word bounds are easier to reason about on short
    passages.) Passages shorter than ``min_words`` words are not used.

    Args:
        passages: the raw passages.
        n: how many examples; None = one per usable passage, in corpus order.
        seed: the same seed and passages always give the same examples.
        min_words / max_words: span length bounds, in words.
        sources: when given, the index of each example's passage is appended to it (so that a
            trainer can draw the example again: :func:`crop_pair`).

    Raises:
        UsageError: bad bounds or n. InputError: no passage has ``min_words`` words.
    """
    if min_words < 1 or max_words < min_words:
        raise UsageError(f"need 1 <= min_words <= max_words, got {min_words} and {max_words}")
    texts = _as_list(passages)
    words = [t.split() for t in texts]
    eligible = [i for i, w in enumerate(words) if len(w) >= min_words]
    if not eligible:
        raise InputError(
            f"no passage has at least {min_words} words ({len(texts)} passages): "
            "lower min_words or add longer passages"
        )
    rng = random.Random(seed)
    examples = []
    for index in _order(eligible, n, rng):
        query, positive = crop_pair(words[index], rng, min_words, max_words)
        examples.append(TrainingExample(query=query, positives=(positive,), instruction=instruction, task=task))
        if sources is not None:
            sources.append(index)
    return examples


def crop_pair(words: list[str], rng: random.Random, min_words: int = 8, max_words: int = 64) -> tuple[str, str]:
    """One draw of :func:`independent_cropping` from a passage's words (at least ``min_words``):
    (query span, positive span). A trainer calls it again each step for fresh crops every epoch."""
    spans = []
    for _ in range(2):
        length = rng.randint(min_words, min(max_words, len(words)))
        start = rng.randint(0, len(words) - length)
        spans.append(" ".join(words[start : start + length]))
    return spans[0], spans[1]


def inverse_cloze(
    passages: Iterable[str],
    n: int | None = None,
    seed: int = 0,
    *,
    min_sentences: int = 2,
    min_query_words: int = 3,
    keep_query_prob: float = 0.0,
    task: str = "inverse-cloze",
    instruction: str = "",
    sources: list[int] | None = None,
) -> list[TrainingExample]:
    """Inverse Cloze Task: a random sentence as the query, the rest of its passage as the positive.

    A passage is usable when it has at least ``min_sentences`` sentences (see
    :func:`split_sentences`) and one of them has ``min_query_words`` words; the query is drawn
    uniformly among such sentences. With probability ``keep_query_prob`` the sentence is left
    in the positive (ORQA keeps it 10 % of the time so the model still learns word overlap;
    the default 0 always removes it).

    Args:
        passages: the raw passages.
        n: how many examples; None = one per usable passage, in corpus order.
        seed: the same seed and passages always give the same examples.
        sources: when given, the index of each example's passage is appended to it (see
            :func:`cloze_pair`).

    Raises:
        UsageError: bad arguments. InputError: no usable passage.
    """
    if min_sentences < 2:
        raise UsageError(f"min_sentences must be at least 2, got {min_sentences}")
    if not 0.0 <= keep_query_prob <= 1.0:
        raise UsageError(f"keep_query_prob must be in [0, 1], got {keep_query_prob}")
    texts = _as_list(passages)
    sentences = [split_sentences(t) for t in texts]
    candidates = [cloze_candidates(sents, min_query_words) for sents in sentences]
    eligible = [
        i for i, sents in enumerate(sentences) if len(sents) >= min_sentences and candidates[i]
    ]
    if not eligible:
        raise InputError(
            f"no passage has {min_sentences} sentences with one of at least {min_query_words} words "
            f"({len(texts)} passages)"
        )
    rng = random.Random(seed)
    examples = []
    for index in _order(eligible, n, rng):
        query, context = cloze_pair(sentences[index], candidates[index], rng, keep_query_prob)
        examples.append(TrainingExample(query=query, positives=(context,), instruction=instruction, task=task))
        if sources is not None:
            sources.append(index)
    return examples


def cloze_candidates(sentences: list[str], min_query_words: int = 3) -> list[int]:
    """The indices of the sentences long enough (``min_query_words`` words) to be a cloze query."""
    return [j for j, s in enumerate(sentences) if len(s.split()) >= min_query_words]


def cloze_pair(sentences: list[str], candidates: list[int], rng: random.Random,
               keep_query_prob: float = 0.0) -> tuple[str, str]:
    """One draw of :func:`inverse_cloze` from a passage's sentences (``candidates``: the indices of
    those long enough to be a query): (query sentence, the rest of the passage)."""
    pick = rng.choice(candidates)
    keep = rng.random() < keep_query_prob
    return sentences[pick], " ".join(s for j, s in enumerate(sentences) if keep or j != pick)
