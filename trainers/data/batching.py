"""Batches drawn from one task at a time, with a resumable, seeded schedule.

In-batch negatives only make sense when the other examples of a batch come from the same
task (a code query is not a useful negative for a medical one, and some tasks are trained
with a different loss), so :class:`TaskBatchSampler` makes every batch single-task and picks
which task each batch comes from.

How an epoch is built (all of it a pure function of ``seed``, ``epoch`` and the examples):

1. Each task's examples are shuffled (``Random(f"{seed}|{epoch}|{task}|{pass}")``) and cut
   into batches of ``batch_size`` (see "duplicates" below); this is one *pass* over the task.
2. The epoch has ``batches_per_epoch`` batches (default: the total over tasks of one pass).
   ``proportional`` with the default length uses every task's pass exactly once (each example
   once per epoch, p_t ∝ n_t). Otherwise task t gets p_t · M batches, p_t ∝ 1 (``uniform``),
   n_t^(1/T) (``temperature``) or n_t (``proportional`` with an explicit length); the batches
   left over by the whole parts go to tasks by systematic sampling (one uniform draw, the tasks
   whose cumulative fractional parts it crosses), so each task gets one of them with probability
   its fractional part and the expected count is exactly p_t · M. A task that needs more batches
   than one pass goes on with new passes (each a new shuffle) as one stream: a pass's short last
   batch is not handed out but leads the next pass, so its batches stay full (not one short batch
   a pass); a task that needs fewer leaves the rest of its pass unseen this epoch.
3. The task of each batch is a seeded shuffle of those counts.

Duplicates: two examples in one batch where a positive of one is a positive or a hard
negative of the other, or that share their query (rows of one query with different positives,
as sentence-transformers pairs and FlagEmbedding files give several positives), give a false
negative (the loss pushes the query away from a passage that is relevant to it). When ``avoid_duplicates`` is on (the default), a batch is filled
greedily in shuffled order, skipping examples that would clash with what the batch already
holds; skipped ones wait for the next batch. When no clash-free example is left to fill a
batch, it is topped up with clashing ones rather than left short, so batches keep their size
and the clash is only where it cannot be avoided (``stats["batches_with_duplicates"]``). The
embedder's loss masks such a clash anyway (a candidate equal to one of the query's positives is
no negative, also across ranks, which this sampler cannot see); keeping clashes apart keeps the
batch's negatives useful rather than masked.

With ``drop_last`` a task's last short batch is dropped, and a task with fewer than
``batch_size`` examples is left out entirely (an error if that leaves nothing).

Resume: ``state_dict()`` is ``{epoch, position, ...}``, the epoch and the number of batches of
it already handed out; ``load_state_dict`` makes the next ``iter()`` continue with exactly the
next batch. Iterating to the end of an epoch moves on to the next epoch. A DataLoader with
workers pulls indices ahead of the training loop, so a trainer should save the position it
has *consumed* (``{"epoch": e, "position": steps_done_in_epoch}``) rather than the sampler's.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

from workbench.errors import InputError, TrainingError, UsageError

from .example import TrainingExample

__all__ = ["TaskBatchSampler", "SAMPLING"]

SAMPLING = ("proportional", "uniform", "temperature")


class TaskBatchSampler:
    """Yield lists of example indices, each list from a single task (see the module docstring).

    Args:
        examples: the training examples (their ``task``, ``positives`` and ``negatives`` are used).
        batch_size: examples per batch.
        sampling: ``"proportional"`` (p_t ∝ n_t), ``"uniform"`` (p_t = 1/K) or
            ``"temperature"`` (p_t ∝ n_t^(1/temperature)).
        temperature: T for ``"temperature"``; T = 1 is proportional, large T tends to uniform.
        seed: the whole schedule is a function of the seed and the epoch.
        drop_last: drop each task's last short batch.
        avoid_duplicates: keep examples whose positives clash out of the same batch when possible.
        batches_per_epoch: the epoch length; default: the batches in one pass over every task.
    """

    def __init__(
        self,
        examples: Sequence[TrainingExample],
        batch_size: int,
        *,
        sampling: str = "proportional",
        temperature: float = 2.0,
        seed: int = 0,
        drop_last: bool = False,
        avoid_duplicates: bool = True,
        batches_per_epoch: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        if sampling not in SAMPLING:
            raise UsageError(f"unknown sampling {sampling!r}: expected one of {', '.join(SAMPLING)}")
        if sampling == "temperature" and not temperature > 0:
            raise UsageError(f"temperature must be > 0, got {temperature}")
        if batches_per_epoch is not None and batches_per_epoch < 1:
            raise UsageError(f"batches_per_epoch must be at least 1, got {batches_per_epoch}")
        if len(examples) == 0:
            raise InputError("no training examples to batch")
        self.examples = examples
        self.batch_size = batch_size
        self.sampling = sampling
        self.temperature = float(temperature)
        self.seed = seed
        self.drop_last = drop_last
        self.avoid_duplicates = avoid_duplicates
        self.batches_per_epoch = batches_per_epoch

        by_task: dict[str, list[int]] = {}
        for i, example in enumerate(examples):
            by_task.setdefault(example.task, []).append(i)
        self.task_sizes = {task: len(by_task[task]) for task in sorted(by_task)}
        self._by_task = {task: by_task[task] for task in sorted(by_task)}
        usable = [t for t, n in self.task_sizes.items() if n >= batch_size or not drop_last]
        if not usable:
            raise InputError(
                f"every task has fewer than batch_size={batch_size} examples and drop_last is on: "
                + ", ".join(f"{t} ({n})" for t, n in self.task_sizes.items())
            )
        self.tasks = usable
        self.epoch = 0
        self.position = 0
        self.stats: dict[str, int] = {"batches_with_duplicates": 0}
        self._cache: tuple[int, list[list[int]]] | None = None

    # ------------------------------------------------------------------ schedule

    def task_probabilities(self) -> dict[str, float]:
        """p_t for every usable task under the chosen sampling."""
        sizes = [self.task_sizes[t] for t in self.tasks]
        if self.sampling == "uniform":
            weights = [1.0] * len(sizes)
        elif self.sampling == "temperature":
            weights = [n ** (1.0 / self.temperature) for n in sizes]
        else:
            weights = [float(n) for n in sizes]
        total = sum(weights)
        return {t: w / total for t, w in zip(self.tasks, weights)}

    def _chunk(self, order: list[int]) -> list[list[int]]:
        """``order`` cut into batches (:meth:`_cut`), the last short one dropped with ``drop_last``."""
        batches = self._cut(order)
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return batches

    def _cut(self, order: list[int]) -> list[list[int]]:
        """``order`` cut into batches of ``batch_size`` (clash-avoiding when ``avoid_duplicates``).
        ``order`` may hold an example more than once (a pass's leftovers before the next pass): a
        batch never holds it twice, so then more than the last batch may be short."""
        size = self.batch_size
        if self.avoid_duplicates:
            return self._clash_free_batches(order, texts=True)
        if len(set(order)) == len(order):
            return [order[i : i + size] for i in range(0, len(order), size)]
        return self._clash_free_batches(order, texts=False)

    def _clash_free_batches(self, order: list[int], *, texts: bool) -> list[list[int]]:
        """Batches filled greedily in ``order``, skipping an example already in the batch and, with
        ``texts``, one that clashes with it (see the module docstring); topped up with clashing
        ones, never with an example already in it."""
        size, examples = self.batch_size, self.examples
        remaining = dict.fromkeys(range(len(order)))  # positions in order: an example may recur
        batches = []
        while remaining:
            taken: list[int] = []  # positions
            members: set[int] = set()
            positives: set[str] = set()
            seen: set[str] = set()  # positives and negatives of the batch
            queries: set[str] = set()
            for pos in remaining:
                idx = order[pos]
                if idx in members:
                    continue
                ex = examples[idx]
                if texts and (ex.query in queries or any(p in seen for p in ex.positives) or any(
                    t in positives for t in (*ex.positives, *ex.negatives)
                )):
                    continue
                taken.append(pos)
                members.add(idx)
                if texts:
                    queries.add(ex.query)
                    positives.update(ex.positives)
                    seen.update(ex.positives)
                    seen.update(ex.negatives)
                if len(taken) == size:
                    break
            if len(taken) < size and len(taken) < len(remaining):
                chosen = set(taken)  # no clash-free example left: top up rather than go short
                topped = False
                for pos in remaining:
                    if pos not in chosen and order[pos] not in members:
                        taken.append(pos)
                        members.add(order[pos])
                        topped = True
                        if len(taken) == size:
                            break
                if topped:
                    self.stats["batches_with_duplicates"] += 1
            for pos in taken:
                del remaining[pos]
            batches.append([order[pos] for pos in taken])
        return batches

    def _shuffled(self, task: str, epoch: int, number: int) -> list[int]:
        order = list(self._by_task[task])
        random.Random(f"{self.seed}|{epoch}|{task}|{number}").shuffle(order)
        return order

    def _pass(self, task: str, epoch: int, number: int) -> list[list[int]]:
        return self._chunk(self._shuffled(task, epoch, number))

    def _stream(self, task: str, epoch: int, count: int, first: list[list[int]]) -> list[list[int]]:
        """``count`` batches of ``task``: the first ones of its first pass when it has enough. Else
        passes (each a new shuffle) follow one another as one stream: a pass's short last batch is
        not handed out but goes ahead of the next pass's examples, so every batch is full (a task
        smaller than a batch: one short batch a pass, as full as it can be)."""
        if count <= len(first) or not first:
            return first[:count]
        size = self.batch_size
        if len(self._by_task[task]) < size:
            stream, number = list(first), 1
            while len(stream) < count:
                stream.extend(self._pass(task, epoch, number))
                number += 1
            return stream[:count]
        stream, carry, number = [], [], 0
        while len(stream) < count:
            batches = self._cut(carry + self._shuffled(task, epoch, number))
            number += 1
            full = next((j for j, b in enumerate(batches) if len(b) < size), len(batches))
            stream.extend(batches[:full])
            carry = [i for b in batches[full:] for i in b]
        return stream[:count]

    def _counts(self, first_passes: dict[str, list[list[int]]], rng: random.Random) -> dict[str, int]:
        if self.sampling == "proportional" and self.batches_per_epoch is None:
            return {t: len(first_passes[t]) for t in self.tasks}
        total = self.batches_per_epoch or sum(len(b) for b in first_passes.values())
        probs = self.task_probabilities()
        exact = {t: probs[t] * total for t in self.tasks}
        counts = {t: math.floor(v) for t, v in exact.items()}
        left = total - sum(counts.values())
        if left <= 0:
            return counts
        # systematic sampling: points u, u+1, ... over the cumulative fractional parts (each < 1,
        # so no task is hit twice); task t is hit with probability exactly its fractional part
        point, cumulative = rng.random(), 0.0
        for t in self.tasks:
            cumulative += exact[t] - counts[t]
            while left and point < cumulative:
                counts[t] += 1
                point += 1.0
                left -= 1
        if left:  # rounding: the last point fell past the sum of the parts
            counts[self.tasks[-1]] += left
        return counts

    def epoch_batches(self, epoch: int | None = None) -> list[list[int]]:
        """Every batch of an epoch (default: the current one), in order."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        self.stats["batches_with_duplicates"] = 0
        first = {t: self._pass(t, epoch, 0) for t in self.tasks}
        rng = random.Random(f"{self.seed}|{epoch}|schedule")
        counts = self._counts(first, rng)
        streams = {task: self._stream(task, epoch, count, first[task]) for task, count in counts.items()}
        sequence = [t for t in self.tasks for _ in range(len(streams[t]))]
        rng.shuffle(sequence)
        cursor = dict.fromkeys(self.tasks, 0)
        batches = []
        for task in sequence:
            batches.append(streams[task][cursor[task]])
            cursor[task] += 1
        if not batches:
            raise InputError(f"no batch of size {self.batch_size} can be formed from the examples")
        self._cache = (epoch, batches)
        return batches

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.epoch_batches(self.epoch)
        while self.position < len(batches):
            batch = batches[self.position]
            self.position += 1
            yield list(batch)
        self.epoch += 1
        self.position = 0

    def __len__(self) -> int:
        """Batches in the current epoch (all of them, not only those left)."""
        return len(self.epoch_batches(self.epoch))

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch (a no-op when it is already the current epoch)."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.position = 0

    # ------------------------------------------------------------------ resume

    def _fingerprint(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "sampling": self.sampling,
            "temperature": self.temperature,
            "drop_last": self.drop_last,
            "avoid_duplicates": self.avoid_duplicates,
            "batches_per_epoch": self.batches_per_epoch,
            "task_sizes": dict(self.task_sizes),
        }

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "position", "seed", "config"}``: enough to continue exactly."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "config": self._fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; raises TrainingError when the data or settings differ."""
        try:
            epoch, position = int(state["epoch"]), int(state["position"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TrainingError(f"cannot resume the batch sampler: bad state {state!r}") from exc
        if "seed" in state and state["seed"] != self.seed:
            raise TrainingError(f"cannot resume the batch sampler: seed {state['seed']} != {self.seed}")
        config = state.get("config")
        if config is not None and config != self._fingerprint():
            changed = sorted(k for k in config.keys() | self._fingerprint().keys()
                             if config.get(k) != self._fingerprint().get(k))
            raise TrainingError(
                "cannot resume the batch sampler: the data or settings changed since the checkpoint "
                f"({', '.join(changed)})"
            )
        if epoch < 0 or position < 0:
            raise TrainingError(f"cannot resume the batch sampler: negative epoch/position in {state!r}")
        self.epoch, self.position = epoch, position


def draw_negatives(exs, n: int, rng: random.Random) -> list[list[int]]:
    """Per example, the indices of the hard negatives it brings to a micro-batch: ``n`` of its own
    when it has any (without replacement when it has enough, else with), none when it has none (the
    others keep theirs). The draws of ``rng.sample`` / ``rng.choices`` over the indices, the same as
    sampling the texts themselves, so runs made before this helper replay identically."""
    return [_pick_negative_indices(ex, n, rng) if n > 0 and ex.negatives else [] for ex in exs]


def _pick_negative_indices(ex, n: int, rng: random.Random) -> list[int]:
    if len(ex.negatives) >= n:
        return rng.sample(range(len(ex.negatives)), n)
    return rng.choices(range(len(ex.negatives)), k=n)
