"""Training data: the example type, every reader format and its errors, unsupervised pairs,
the task batch sampler, and that the trainers package imports without the workbench's heavy
dependencies."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from trainers.data import (
    ExampleList,
    TaskBatchSampler,
    TrainingExample,
    detect_format,
    independent_cropping,
    inverse_cloze,
    iter_examples,
    read_datasets,
    read_examples,
)
from workbench.errors import InputError, TrainingError, UsageError

REPO = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------- TrainingExample


def test_example_validates_and_normalises():
    ex = TrainingExample("q", ["a", "b"], ["n"], positive_scores=[1, 0.5], negative_scores=[0])
    assert ex.positives == ("a", "b") and ex.negatives == ("n",)
    assert ex.positive_scores == (1.0, 0.5) and ex.negative_scores == (0.0,)
    assert ex.task == "default" and ex.instruction == "" and ex.query_id is None
    assert ex.has_scores
    with pytest.raises(FrozenInstanceError):
        ex.query = "other"  # type: ignore[misc]
    hash(ex)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"query": "q", "positives": ()}, "at least one positive"),
        ({"query": "", "positives": ("a",)}, "query is an empty string"),
        ({"query": "q", "positives": ("a", "")}, r"positives\[1\] is an empty string"),
        ({"query": "q", "positives": "abc"}, "sequence of strings"),
        ({"query": "q", "positives": ("a",), "positive_scores": (1.0, 2.0)}, "2 values for 1 positives"),
        ({"query": "q", "positives": ("a",), "negative_scores": (1.0,)}, "1 values for 0 negatives"),
        ({"query": "q", "positives": ("a",), "positive_scores": (float("nan"),)}, "not finite"),
    ],
)
def test_example_rejects_bad_values(kwargs, message):
    with pytest.raises(InputError, match=message):
        TrainingExample(**kwargs)


# ----------------------------------------------------------------- FlagEmbedding


def test_flagembedding_jsonl(tmp_path):
    path = write_jsonl(
        tmp_path / "bge.jsonl",
        [
            {"query": "what is bm25", "pos": ["BM25 ranks by term frequency"], "neg": ["a cat"]},
            {"query": "no negatives here", "pos": ["p1", "p2"]},  # 'neg' is optional
            {
                "query": "scored",
                "pos": ["p"],
                "neg": ["n1", "n2"],
                "pos_scores": [0.9],
                "neg_scores": [0.2, 0.1],
                "prompt": "Represent this query: ",
                "type": "retrieval",
            },
            {"query": "null neg", "pos": ["p"], "neg": None},
        ],
    )
    assert detect_format(path) == "flagembedding"
    examples = read_examples(path, instruction="Default instruction: ")
    assert isinstance(examples, ExampleList) and isinstance(examples, list)
    assert [e.query for e in examples] == ["what is bm25", "no negatives here", "scored", "null neg"]
    assert examples[1].positives == ("p1", "p2") and examples[1].negatives == ()
    scored = examples[2]
    assert scored.positive_scores == (0.9,) and scored.negative_scores == (0.2, 0.1)
    assert scored.instruction == "Represent this query" and scored.task == "retrieval"  # the template adds ": "
    assert examples[0].instruction == "Default instruction: " and examples[0].task == "bge"
    report = examples.report
    assert (report.format, report.read, report.kept, report.skipped) == ("flagembedding", 4, 4, {})
    assert read_examples(path, task="mine")[2].task == "mine"  # the argument wins


def test_a_row_prompt_in_flagembeddings_convention_trains_as_the_same_instruction_is_served(tmp_path):
    """BGE's query instruction as FlagEmbedding rows carry it (trailing ": "): the training query is
    written exactly as `wb query -i` with that text writes it, once with its separator."""
    from workbench.encoders.templates import LLM_EMBEDDER, PLAIN, resolve_instruction

    bge = "Represent this sentence for searching relevant passages: "
    path = write_jsonl(tmp_path / "bge.jsonl", [{"query": "what is x", "pos": ["x is y"], "prompt": bge},
                                                {"query": "what is z", "pos": ["z is w"], "prompt": "  :  "}])
    first, second = read_examples(path, instruction="fallback")
    for templates in (PLAIN, LLM_EMBEDDER):
        served = templates.render_query("what is x", resolve_instruction(bge))
        assert templates.render_query(first.query, first.instruction) == served
    assert PLAIN.render_query(first.query, first.instruction) == (
        "Represent this sentence for searching relevant passages: what is x")
    assert second.instruction == "fallback"  # a prompt of nothing but a colon is no prompt


def test_a_negative_equal_to_a_positive_of_its_row_is_dropped_with_its_score(tmp_path):
    """Kept, it is the target itself among the negatives: the loss cannot fall below log 2."""
    path = write_jsonl(tmp_path / "bge.jsonl", [
        {"query": "q", "pos": ["p", "p2"], "neg": ["n1", "p2", "n2"], "pos_scores": [1.0, 0.9],
         "neg_scores": [0.3, 0.9, 0.1]},
        {"query": "clean", "pos": ["p"], "neg": ["n"]},
    ])
    examples = read_examples(path)
    assert examples[0].negatives == ("n1", "n2") and examples[0].negative_scores == (0.3, 0.1)
    assert examples[0].positives == ("p", "p2") and examples[1].negatives == ("n",)
    assert examples.report.warnings == {"hard negatives equal to a positive of their query dropped": 1}
    assert "hard negatives equal to a positive of their query dropped (1)" in examples.report.summary()
    st = tmp_path / "triplets.csv"
    st.write_text("anchor,positive,negative\nq,same passage,same passage\nq2,p,n\n")
    assert [e.negatives for e in read_examples(st)] == [(), ("n",)]


def test_a_negative_that_is_a_positive_of_the_same_query_in_another_row_is_dropped(tmp_path):
    """Rows of one query (sentence-transformers pairs/triplets, FlagEmbedding): one row's negative
    may be another row's labelled positive; dropped with its score, in the same warning. Another
    task's query of the same text keeps it."""
    st = tmp_path / "samequery.tsv"
    st.write_text("query\tpositive\tnegative\nwhat is x\tx is one thing\tx is another thing\n"
                  "what is x\tx is another thing\tx is one thing\nwhat is y\ty\tx is one thing\n")
    examples = read_examples(st)
    assert [e.negatives for e in examples] == [(), (), ("x is one thing",)]
    assert examples.report.warnings == {"hard negatives equal to a positive of their query dropped": 2}
    path = write_jsonl(tmp_path / "bge.jsonl", [
        {"query": "q", "pos": ["a"], "neg": ["b", "n"], "neg_scores": [0.5, 0.1], "type": "t1"},
        {"query": "q", "pos": ["b"], "neg": ["n"], "type": "t1"},
        {"query": "q", "pos": ["c"], "neg": ["a"], "type": "t2"},  # another task: its own query
    ])
    examples = read_examples(path)
    assert examples[0].negatives == ("n",) and examples[0].negative_scores == (0.1,)
    assert examples[1].negatives == ("n",) and examples[2].negatives == ("a",)


def test_malformed_row_names_file_line_and_reason(tmp_path):
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"query": "ok", "pos": ["p"]},
            {"query": "ok too", "pos": ["p"]},
            {"query": "missing pos"},
        ],
    )
    with pytest.raises(InputError) as info:
        read_examples(path)
    assert f"{path}:3: missing field 'pos'" in str(info.value)
    assert str(info.value).endswith("; fix or delete the row")


def test_skip_malformed_counts_by_reason(tmp_path):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"query": "good", "pos": ["p"], "neg": ["n"]},
            "{not json",
            {"query": "no pos"},
            "",  # blank lines are ignored, not counted
            {"query": "scores", "pos": ["p"], "pos_scores": [1.0, 2.0]},
            {"query": "no pos either", "pos": []},
            {"query": "bad neg", "pos": ["p"], "neg": [1, 2]},
            "[1, 2]",
            {"query": "good 2", "pos": ["p"]},
        ],
    )
    examples = read_examples(path, skip_malformed=True)
    assert [e.query for e in examples] == ["good", "good 2"]
    report = examples.report
    assert report.read == 8 and report.kept == 2 and report.malformed == 6
    assert report.skipped == {
        "invalid JSON": 1,
        "missing field 'pos'": 1,
        "'pos_scores' and 'pos' differ in length": 1,
        "'pos' is empty": 1,
        "'neg' must be a list of strings": 1,
        "not a JSON object": 1,
    }
    assert report.first_skip["invalid JSON"] == f"{path}:2"
    assert "skipped 6" in report.summary()


def test_zero_examples_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match=r"no usable training examples in .*empty\.jsonl: the file is empty"):
        read_examples(empty)
    bad = write_jsonl(tmp_path / "allbad.jsonl", [{"query": "a", "pos": []}, {"query": "b", "pos": []}])
    with pytest.raises(InputError) as info:
        read_examples(bad, skip_malformed=True)
    message = str(info.value)
    assert message.startswith(f"no usable training examples in {bad}: read 2 records, all skipped")
    assert "'pos' is empty (2, first at" in message
    header_only = tmp_path / "header.tsv"
    header_only.write_text("query\tpositive\n")
    with pytest.raises(InputError, match="no usable training examples .* no data rows"):
        read_examples(header_only)


def test_unusable_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_examples(tmp_path / "missing.jsonl")
    array = tmp_path / "array.json"
    array.write_text('[{"query": "q", "pos": ["p"]}]\n')
    with pytest.raises(InputError, match="JSON array"):
        read_examples(array)
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"foo": 1, "bar": 2}])
    with pytest.raises(InputError, match=r"cannot tell the format .* keys of line 1 \(foo, bar\)"):
        read_examples(unknown)
    # a first row that fits no format does not stop detection from the next rows
    late = write_jsonl(tmp_path / "late.jsonl", [{"query": "no pos"}, {"query": "q", "pos": ["p"]}])
    assert detect_format(late) == "flagembedding"
    assert len(read_examples(late, skip_malformed=True)) == 1
    # a row of another format in the file says so
    mixed = write_jsonl(
        tmp_path / "mixed.jsonl",
        [{"query": "q", "pos": ["p"]}, {"anchor": "a", "positive": "p", "negative": "n"}],
    )
    with pytest.raises(InputError, match=r"mixed\.jsonl:2: missing field 'query' \(the row looks like sentence-transformers"):
        read_examples(mixed)
    with pytest.raises(InputError, match="unknown training data format"):
        read_examples(unknown, format="parquet")
    binary = tmp_path / "latin1.jsonl"
    binary.write_bytes(
        json.dumps({"query": "q", "pos": ["p"]}).encode() + b"\n" + b'{"query": "caf\xe9", "pos": ["p"]}\n'
    )
    with pytest.raises(InputError, match=r"latin1\.jsonl:2: invalid UTF-8"):
        read_examples(binary)
    assert len(read_examples(binary, skip_malformed=True)) == 1


def test_gzip_and_streaming(tmp_path):
    path = tmp_path / "big.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for i in range(500):
            handle.write(json.dumps({"query": f"q{i}", "pos": [f"p{i}"]}) + "\n")
    stream = iter_examples(path)
    first = next(stream)  # a generator: rows are produced one at a time
    assert first.query == "q0" and first.task == "big"
    assert len(read_examples(path)) == 500


# ----------------------------------------------------------------- Tevatron


def test_tevatron_jsonl(tmp_path):
    path = write_jsonl(
        tmp_path / "tevatron.jsonl",
        [
            {
                "query_id": 17,
                "query": "who wrote hamlet",
                "positive_passages": [{"docid": "1", "title": "Hamlet", "text": "by Shakespeare"}],
                "negative_passages": [
                    {"docid": "2", "title": "", "text": "Macbeth is a play"},
                    {"docid": "3", "title": "Othello", "text": "a tragedy"},
                ],
            },
            {"query_id": "18", "query": "no negatives", "positive_passages": [{"docid": "4", "text": "t"}]},
            {"query_id": "19", "query": "empty", "positive_passages": [], "negative_passages": []},
        ],
    )
    assert detect_format(path) == "tevatron"
    with pytest.raises(InputError, match=r"tevatron\.jsonl:3: 'positive_passages' is empty"):
        read_examples(path)
    examples = read_examples(path, skip_malformed=True)
    assert examples[0].query_id == "17"
    assert examples[0].positives == ("Hamlet by Shakespeare",)
    assert examples[0].negatives == ("Macbeth is a play", "Othello a tragedy")
    assert examples[1].negatives == () and examples[1].query_id == "18"


# ----------------------------------------------------------------- sentence-transformers


def test_sentence_transformers_jsonl_triplets(tmp_path):
    path = write_jsonl(
        tmp_path / "triplets.jsonl",
        [
            {"anchor": "a1", "positive": "p1", "negative": "n1"},
            {"anchor": "a2", "positive": "p2", "negative": "n2"},
        ],
    )
    assert detect_format(path) == "sentence-transformers"
    examples = read_examples(path)
    assert [(e.query, e.positives, e.negatives) for e in examples] == [
        ("a1", ("p1",), ("n1",)),
        ("a2", ("p2",), ("n2",)),
    ]
    assert examples.report.columns["query"] == "anchor"


def test_sentence_transformers_jsonl_reads_every_rows_keys_by_name(tmp_path):
    """A label or negative that only later rows carry counts: a label-0 pair is skipped, not trained
    as a positive, and a later row's negative is kept; a row lacking the first row's label is malformed."""
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"sentence1": "a1", "sentence2": "p1"},
        {"sentence1": "a2", "sentence2": "unrelated", "label": 0},
        {"sentence1": "a3", "sentence2": "p3", "negative": "n3"},
        {"sentence2": "p4", "sentence1": "a4", "label": 1},  # keys in another order: still by name
    ])
    examples = read_examples(path)
    assert [(e.query, e.positives, e.negatives) for e in examples] == [
        ("a1", ("p1",), ()), ("a3", ("p3",), ("n3",)), ("a4", ("p4",), ())]
    assert examples.report.skipped == {"label <= 0 (not a positive pair)": 1}
    assert examples.report.columns["label"] is None  # the first row's columns
    labelled = write_jsonl(tmp_path / "labelled.jsonl", [
        {"sentence1": "a1", "sentence2": "p1", "label": 1},
        {"sentence1": "a2", "sentence2": "p2"},
    ])
    with pytest.raises(InputError, match=r"labelled\.jsonl:2: missing field 'label'"):
        read_examples(labelled)


def test_sentence_transformers_csv_with_header_and_several_negatives(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(
        "query,positive,negative_1,negative_2\n"
        'what is a "tensor",an n-d array,a cat,\n'  # the second negative is empty: fine
        '"multi\nline query",p2,n1,n2\n'
        "q3,p3,n3,n4\n"
    )
    examples = read_examples(path)
    assert examples[0].query == 'what is a "tensor"'  # quotes inside an unquoted field are text
    assert examples[0].negatives == ("a cat",)
    assert examples[1].query == "multi\nline query" and examples[1].negatives == ("n1", "n2")
    assert examples[2].negatives == ("n3", "n4")


def test_csv_errors_point_at_the_line(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("anchor,positive\nq1,p1\nq2,p2,extra\nq3,p3\n")
    with pytest.raises(InputError, match=r"broken\.csv:3: expected 2 columns \(found 3\)"):
        read_examples(path)
    runaway = tmp_path / "runaway.csv"
    runaway.write_text('anchor,positive\nq1,p1\nq2,"never closed\nq3,p3\nq4,p4\n')
    with pytest.raises(InputError, match=r"runaway\.csv:3: "):
        read_examples(runaway)


def test_sentence_transformers_tsv_pairs_with_labels(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text(
        "sentence1\tsentence2\tlabel\n"
        "a cat sits\ta feline sits\t1\n"
        "a cat sits\ta stock market\t0\n"
        "dogs bark\tcanines bark\t0.8\n"
        "bad\tlabel\tmaybe\n"
    )
    with pytest.raises(InputError, match=r"pairs\.tsv:5: label is not a number"):
        read_examples(path)
    examples = read_examples(path, skip_malformed=True)
    assert [(e.query, e.positives) for e in examples] == [
        ("a cat sits", ("a feline sits",)),
        ("dogs bark", ("canines bark",)),
    ]
    report = examples.report
    assert report.skipped == {"label <= 0 (not a positive pair)": 1, "label is not a number": 1}
    assert report.malformed == 1  # the 0-label pair is filtered, not malformed
    # with skip_malformed off, a 0 label alone is no error
    path.write_text("sentence1\tsentence2\tscore\nx\ty\t0\nu\tv\t2\n")
    assert [e.query for e in read_examples(path)] == ["u"]


def test_tsv_without_header_reads_columns_by_position(tmp_path):
    path = tmp_path / "triples.train.tsv"
    path.write_text('what is "rust"\ta language\ta fungus\nq2\tp2\tn2\n')  # MS MARCO style
    examples = read_examples(path, header=False)
    assert examples[0].query == 'what is "rust"'  # no quoting in TSV
    assert (examples[1].positives, examples[1].negatives) == (("p2",), ("n2",))
    assert examples[0].task == "triples.train"
    # without header=False too (what `wb train --data triples.tsv` reads): a first row of
    # sentences is data, not column names, and is not lost
    assert [e.query for e in read_examples(path)] == ['what is "rust"', "q2"]


def test_unknown_column_names_are_read_by_position(tmp_path):
    path = tmp_path / "cols.tsv"
    path.write_text("question_text\tgood_doc\tbad_doc\nq\tp\tn\n")
    examples = read_examples(path)
    assert (examples[0].query, examples[0].positives, examples[0].negatives) == ("q", ("p",), ("n",))
    assert examples.report.columns == {
        "query": "question_text", "positive": "good_doc", "negatives": ["bad_doc"], "label": None,
        "by_name": False,
    }


# ----------------------------------------------------------------- BEIR


def make_beir(root: Path) -> Path:
    root.mkdir()
    write_jsonl(
        root / "corpus.jsonl",
        [
            {"_id": "d1", "title": "Python", "text": "a programming language"},
            {"_id": "d2", "title": "", "text": "snakes are reptiles"},
            {"_id": "d3", "title": "Rust", "text": "memory safety"},
            {"_id": "d4", "title": "Go", "text": "goroutines"},
            {"_id": "unused", "title": "x", "text": "never referenced"},
        ],
    )
    write_jsonl(
        root / "queries.jsonl",
        [
            {"_id": "q1", "text": "programming languages"},
            {"_id": "q2", "text": "reptiles"},
            {"_id": "q3", "text": "nothing relevant"},
        ],
    )
    (root / "qrels").mkdir()
    (root / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        "q1\td1\t1\n"
        "q1\td3\t2\n"
        "q1\td2\t0\n"  # judged non-relevant: a hard negative
        "q1\tgone\t1\n"  # not in the corpus: warned, dropped
        "q2\td2\t1\n"
        "q3\td4\t0\n"  # no positive: skipped
    )
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td2\t1\n")
    return root


def test_beir_folder_gives_all_positives_per_query(tmp_path):
    root = make_beir(tmp_path / "scifact")
    assert detect_format(root) == "beir"
    examples = read_examples(root)
    assert [e.query_id for e in examples] == ["q1", "q2"]
    q1 = examples[0]
    assert q1.query == "programming languages"
    assert q1.positives == ("Python a programming language", "Rust memory safety")
    assert q1.negatives == ("snakes are reptiles",)
    assert q1.task == "scifact"
    report = examples.report
    assert report.read == 3 and report.kept == 2
    assert report.skipped == {"no positive passage (score > 0) found in corpus.jsonl": 1}
    assert report.warnings == {"qrels corpus-id missing from corpus.jsonl (or empty)": 1}
    assert [e.query_id for e in read_examples(root, split="test")] == ["q2"]


def test_beir_errors(tmp_path):
    root = make_beir(tmp_path / "beir")
    with pytest.raises(InputError, match=r"qrels/dev\.tsv not found \(splits present: test, train") as info:
        read_examples(root, split="dev")
    # `wb train` has no --split flag: the hint names the run.toml key it has
    assert "--split" not in str(info.value) and 'split = "NAME" in the run.toml given to --config' in str(info.value)
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(InputError, match=r"train\.tsv:2: qrels rows need 3 columns"):
        read_examples(root)
    (root / "queries.jsonl").unlink()
    with pytest.raises(InputError, match="queries.jsonl is missing"):
        read_examples(root)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InputError, match="not a BEIR dataset"):
        read_examples(plain)


# ----------------------------------------------------------------- unsupervised


PASSAGES = [
    "The quick brown fox jumps over the lazy dog. It was not amused at all. Then it left the farm for good.",
    "Retrieval models map queries and passages into one vector space. Similar texts land close together. "
    "Training uses contrastive losses with negatives.",
    "too short",
    "Hash tables give constant time lookups on average. Collisions are resolved by chaining or probing.",
]


def test_independent_cropping_is_deterministic_and_in_bounds():
    a = independent_cropping(PASSAGES, n=20, seed=1, min_words=3, max_words=6)
    b = independent_cropping(PASSAGES, n=20, seed=1, min_words=3, max_words=6)
    c = independent_cropping(PASSAGES, n=20, seed=2, min_words=3, max_words=6)
    assert a == b and a != c and len(a) == 20
    for ex in a:
        assert 3 <= len(ex.query.split()) <= 6 and 3 <= len(ex.positives[0].split()) <= 6
        assert any(ex.query in p and ex.positives[0] in p for p in PASSAGES)  # both from one passage
        assert "too short" not in ex.query and ex.task == "independent-cropping"
    assert len(independent_cropping(PASSAGES, seed=0, min_words=3)) == 3  # one per usable passage
    with pytest.raises(InputError, match="no passage has at least 50 words"):
        independent_cropping(PASSAGES, min_words=50, max_words=60)
    with pytest.raises(UsageError):
        independent_cropping(PASSAGES, min_words=5, max_words=2)


def test_inverse_cloze_uses_a_sentence_as_query_and_the_rest_as_positive():
    a = inverse_cloze(PASSAGES, n=12, seed=4)
    assert a == inverse_cloze(PASSAGES, n=12, seed=4) and len(a) == 12
    for ex in a:
        source = next(p for p in PASSAGES if ex.query in p)
        assert ex.query not in ex.positives[0]  # removed from its context
        assert len(ex.positives[0]) + len(ex.query) + 1 == len(source)
    kept = inverse_cloze(PASSAGES, seed=4, keep_query_prob=1.0)
    assert all(ex.query in ex.positives[0] for ex in kept)
    with pytest.raises(InputError, match="no passage has 2 sentences"):
        inverse_cloze(["One sentence only.", "Another one here."])


# ----------------------------------------------------------------- TaskBatchSampler


def make_examples(sizes: dict[str, int]) -> list[TrainingExample]:
    return [
        TrainingExample(f"{task} query {i}", (f"{task} passage {i}",), task=task)
        for task, n in sizes.items()
        for i in range(n)
    ]


def test_several_datasets_keep_their_own_task_instruction_and_split(tmp_path):
    nli = write_jsonl(tmp_path / "nli.jsonl", [{"query": f"n{i}", "pos": [f"p{i}"]} for i in range(5)])
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"query": f"q{i}", "pos": [f"a{i}"], "prompt": "Own prompt: "}
                                             for i in range(3)])
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    write_jsonl(beir / "corpus.jsonl", [{"_id": "d1", "title": "", "text": "doc one"},
                                         {"_id": "d2", "title": "", "text": "doc two"}])
    write_jsonl(beir / "queries.jsonl", [{"_id": "1", "text": "first"}, {"_id": "2", "text": "second"}])
    (beir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n2\td2\t1\n")
    examples = read_datasets(
        [str(nli), {"path": str(qa), "task": "answers", "instruction": "Unused: "},
         {"path": str(beir), "split": "dev", "instruction": "Find: "}],
        split="train", instruction="Run default: ")
    assert [e.task for e in examples] == ["nli"] * 5 + ["answers"] * 3 + ["beir"]
    assert {e.instruction for e in examples[:5]} == {"Run default: "}  # the run's, for rows without a prompt
    assert {e.instruction for e in examples[5:8]} == {"Own prompt"}  # a row's prompt wins (its ": " is the template's)
    assert examples[8].query == "second" and examples[8].instruction == "Find: "  # the dataset's split
    summary = examples.report.summary()
    assert "nli.jsonl: flagembedding: read 5, kept 5" in summary and "tasks: nli (5), answers (3), beir (1)" in summary
    batches = list(TaskBatchSampler(examples, 4, seed=0))  # every batch is one dataset's
    assert all(len({examples[i].task for i in batch}) == 1 for batch in batches)
    again = tmp_path / "again"
    again.mkdir()
    twin = write_jsonl(again / "nli.jsonl", [{"query": "t", "pos": ["p"]}])
    twins = read_datasets([str(nli), str(twin)])  # one file name twice: two tasks, not one
    assert [e.task for e in twins] == ["nli"] * 5 + ["nli-2"]
    typed = write_jsonl(tmp_path / "a.jsonl", [{"query": "a1", "pos": ["p"], "type": "x"},
                                               {"query": "a2", "pos": ["p"], "type": "y"}])
    later = write_jsonl(tmp_path / "b.jsonl", [{"query": "b1", "pos": ["p"], "type": "x"},
                                               {"query": "b2", "pos": ["p"], "type": "z"}])
    # only the clashing task of the later file is renamed: z was not taken
    assert [e.task for e in read_datasets([str(typed), str(later)])] == ["x", "y", "x-2", "z"]
    one = read_datasets(str(nli))  # one dataset: exactly read_examples
    assert [e.query for e in one] == [e.query for e in read_examples(nli)] and one.report.kept == 5


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "non-empty list"),
        ([{"task": "x"}], "data #1 has no 'path'"),
        (["a.jsonl", {"path": "b.jsonl", "prompt": "x"}], r"data #2: unknown key\(s\) prompt"),
        ([{"path": "b.jsonl", "split": 3}], "data #1: split must be text"),
        (["unsupervised", "b.jsonl"], "cannot be one of several"),
    ],
)
def test_bad_dataset_lists_are_one_line_usage_errors(tmp_path, data, message):
    from trainers.config import EmbedderConfig

    with pytest.raises(UsageError, match=message):
        if data and data[0] == "unsupervised":
            write_jsonl(tmp_path / "b.jsonl", [{"query": "q", "pos": ["p"]}])
            read_datasets(["unsupervised", str(tmp_path / "b.jsonl")])
        else:
            EmbedderConfig.from_dict({"data": data, "base": "b", "name": "n"})


def test_a_dataset_without_examples_is_named(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [{"query": "q", "pos": ["p"]}])
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    with pytest.raises(InputError, match="no usable training examples in .*empty.jsonl"):
        read_datasets([str(good), str(empty)])


def test_batches_are_single_task_and_cover_every_example_once():
    examples = make_examples({"a": 30, "b": 11, "c": 5})
    sampler = TaskBatchSampler(examples, 4, seed=0)
    batches = list(sampler)
    for batch in batches:
        assert len({examples[i].task for i in batch}) == 1
        assert 1 <= len(batch) <= 4
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(examples)))  # proportional: each example once per epoch
    assert len(batches) == 8 + 3 + 2
    assert sampler.epoch == 1 and sampler.position == 0  # moved on to the next epoch
    dropped = list(TaskBatchSampler(examples, 4, seed=0, drop_last=True))
    assert all(len(b) == 4 for b in dropped) and len(dropped) == 7 + 2 + 1


def test_same_seed_same_batches_other_seed_or_epoch_differs():
    examples = make_examples({"a": 40, "b": 20})
    first = list(TaskBatchSampler(examples, 5, seed=3, sampling="uniform"))
    again = list(TaskBatchSampler(examples, 5, seed=3, sampling="uniform"))
    other = list(TaskBatchSampler(examples, 5, seed=4, sampling="uniform"))
    sampler = TaskBatchSampler(examples, 5, seed=3, sampling="uniform")
    sampler.set_epoch(1)
    assert first == again and first != other and first != list(sampler)


@pytest.mark.parametrize(
    "sampling, expected",
    [
        ("proportional", {"a": 400 / 525, "b": 100 / 525, "c": 25 / 525}),
        ("uniform", {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}),
        ("temperature", {"a": 20 / 35, "b": 10 / 35, "c": 5 / 35}),  # T=2: sqrt(400), sqrt(100), sqrt(25)
    ],
)
def test_task_proportions_follow_the_requested_distribution(sampling, expected):
    examples = make_examples({"a": 400, "b": 100, "c": 25})
    sampler = TaskBatchSampler(examples, 5, sampling=sampling, temperature=2.0, seed=0, drop_last=True)
    assert sampler.task_probabilities() == pytest.approx(expected)
    counts: Counter[str] = Counter()
    for _ in range(20):
        for batch in sampler:
            counts[examples[batch[0]].task] += 1
    total = sum(counts.values())
    for task, p in expected.items():
        assert counts[task] / total == pytest.approx(p, abs=0.02), (task, counts)


def test_temperature_upsamples_small_tasks_with_fresh_passes():
    examples = make_examples({"big": 200, "small": 10})
    sampler = TaskBatchSampler(examples, 5, sampling="uniform", seed=0, drop_last=True)
    small = [b for b in sampler.epoch_batches(0) if examples[b[0]].task == "small"]
    assert len(small) == 21  # half of the 42 batches, from 2-example passes repeated
    for batch in small:
        assert len(set(batch)) == len(batch)  # never the same example twice in a batch


@pytest.mark.parametrize("avoid_duplicates", [True, False])
@pytest.mark.parametrize("sampling", ["uniform", "temperature"])
def test_a_small_task_repeated_over_passes_gets_full_batches(sampling, avoid_duplicates):
    """Passes follow one another as one stream: not one short batch at the end of every pass
    (2-example batches: one in-batch negative, and 4x the weight per example in the batch mean)."""
    examples = make_examples({"big": 100, "small": 10})
    sampler = TaskBatchSampler(examples, 8, sampling=sampling, temperature=4.0, seed=0,
                               avoid_duplicates=avoid_duplicates)
    for epoch in range(3):
        small = [b for b in sampler.epoch_batches(epoch) if examples[b[0]].task == "small"]
        assert len(small) > 2  # several passes over the 10 examples
        assert all(len(b) == 8 for b in small), [len(b) for b in small]
        assert all(len(set(b)) == len(b) for b in small)  # never one example twice in a batch
    tiny = make_examples({"big": 100, "tiny": 3})  # smaller than a batch: as full as it can be
    batches = TaskBatchSampler(tiny, 8, sampling="uniform", seed=0).epoch_batches(0)
    assert {len(b) for b in batches if tiny[b[0]].task == "tiny"} == {3}


def test_state_dict_resumes_exactly_where_it_stopped():
    examples = make_examples({"a": 50, "b": 23, "c": 9})
    kwargs = dict(sampling="temperature", temperature=3.0, seed=7)
    reference = TaskBatchSampler(examples, 4, **kwargs)
    full = list(reference) + list(reference)  # two epochs

    sampler = TaskBatchSampler(examples, 4, **kwargs)
    seen = []
    for i, batch in enumerate(sampler):
        seen.append(batch)
        if i == 6:
            break
    state = json.loads(json.dumps(sampler.state_dict()))  # survives a JSON checkpoint
    assert (state["epoch"], state["position"]) == (0, 7)

    resumed = TaskBatchSampler(examples, 4, **kwargs)
    resumed.load_state_dict(state)
    seen += list(resumed) + list(resumed)
    assert seen == full

    with pytest.raises(TrainingError, match="changed since the checkpoint"):
        TaskBatchSampler(examples[:-1], 4, **kwargs).load_state_dict(state)
    with pytest.raises(TrainingError, match="seed"):
        TaskBatchSampler(examples, 4, sampling="temperature", temperature=3.0, seed=8).load_state_dict(state)


def test_duplicate_positives_are_kept_apart_when_possible():
    shared = "the same passage"
    examples = [TrainingExample(f"q{i}", (shared if i % 4 == 0 else f"p{i}",)) for i in range(16)]
    examples.append(TrainingExample("q-neg", ("p-own",), ("the same passage",)))  # its negative clashes
    sampler = TaskBatchSampler(examples, 4, seed=0)
    for batch in sampler:
        texts = [t for i in batch for t in examples[i].positives]
        assert texts.count(shared) <= 1
        if 16 in batch:  # the example whose negative is the shared passage
            assert shared not in texts
    assert sampler.stats["batches_with_duplicates"] == 0

    clash = [TrainingExample(f"q{i}", ("same",)) for i in range(8)]
    forced = TaskBatchSampler(clash, 4, seed=0)
    assert [len(b) for b in forced] == [4, 4]  # unavoidable: batches keep their size
    assert forced.stats["batches_with_duplicates"] == 2


def test_rows_of_one_query_are_kept_apart_when_possible():
    """Rows that repeat a query with another positive (sentence-transformers pairs, a FlagEmbedding
    file) would make each other's positive an in-batch negative: they go to different batches."""
    examples = [TrainingExample(f"query {i % 4}", (f"passage {i}",)) for i in range(16)]  # 4 rows a query
    for seed in range(20):
        sampler = TaskBatchSampler(examples, 4, seed=seed)
        for batch in sampler.epoch_batches(0):
            queries = [examples[i].query for i in batch]
            assert len(set(queries)) == len(queries), (seed, queries)
        assert sampler.stats["batches_with_duplicates"] == 0


@pytest.mark.parametrize("sampling, length", [("uniform", 2), ("proportional", 2), ("temperature", None)])
def test_leftover_batches_keep_the_expected_count_of_each_task(sampling, length):
    """p_t · M is not whole: the leftover batches are given so that a task's mean count over epochs
    is p_t · M (drawing them one by one without replacement weighted by the fractions was biased:
    0.79 for an expected 0.9)."""
    examples = make_examples({"a": 9, "b": 6, "c": 5})
    sampler = TaskBatchSampler(examples, 1 if length else 4, sampling=sampling, seed=1, batches_per_epoch=length)
    probs, per_epoch = sampler.task_probabilities(), len(sampler.epoch_batches(0))
    epochs = 3000
    counts: Counter[str] = Counter()
    for epoch in range(epochs):
        batches = sampler.epoch_batches(epoch)
        assert len(batches) == per_epoch
        counts.update(examples[b[0]].task for b in batches)
    for task, p in probs.items():
        assert counts[task] / epochs == pytest.approx(p * per_epoch, abs=0.03), (task, counts)


def test_sampler_argument_errors():
    examples = make_examples({"a": 3})
    with pytest.raises(UsageError):
        TaskBatchSampler(examples, 0)
    with pytest.raises(UsageError, match="unknown sampling"):
        TaskBatchSampler(examples, 2, sampling="random")
    with pytest.raises(InputError, match="fewer than batch_size=4"):
        TaskBatchSampler(examples, 4, drop_last=True)
    with pytest.raises(InputError, match="no training examples"):
        TaskBatchSampler([], 4)


# ----------------------------------------------------------------- import isolation

BLOCKED = ("lancedb", "tantivy", "textual", "pydantic", "datasets")


def test_trainers_imports_without_heavy_dependencies():
    """Every trainers module imports with lancedb, tantivy, textual, pydantic and datasets
    made unimportable, as on a bare GPU machine."""
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, pkgutil, sys

        BLOCKED = {BLOCKED!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked for this test: {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        import trainers
        names = ["trainers"]
        for info in pkgutil.walk_packages(trainers.__path__, "trainers."):
            importlib.import_module(info.name)
            names.append(info.name)
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not leaked, leaked
        print(len(names), "modules:", " ".join(sorted(names)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for module in (
        "trainers.data.readers",
        "trainers.data.batching",
        "trainers.data.unsupervised",
        "trainers.losses.infonce",
        "trainers.losses.kl_distill",
    ):
        assert module in result.stdout


def test_a_mistyped_loss_is_refused_with_the_options_not_at_the_first_step():
    """`--loss foo` is refused where the other options are (before a run folder exists, so a
    detached run never reports "started" first); the names accepted are the loss registries'."""
    from trainers.config import LOSS_NAMES, ColbertConfig, EmbedderConfig, LayerwiseConfig, RerankerConfig
    from trainers.losses import LOSSES, RERANK_LOSSES
    from trainers.losses import _RERANK_ALIASES as aliases
    from workbench.errors import UsageError

    assert set(LOSS_NAMES["retrieval"]) == set(LOSSES)
    from trainers.config import MULTI_POSITIVE_LOSSES
    from trainers.losses import MULTI_POSITIVE

    assert set(MULTI_POSITIVE_LOSSES) == set(MULTI_POSITIVE)  # distillation is refused with these before a run
    assert set(LOSS_NAMES["rerank"]) == set(RERANK_LOSSES) | set(aliases)
    base = {"data": "train.jsonl", "base": "dense", "name": "r"}
    for cls, good in ((EmbedderConfig, "Sum-Marg-LH"), (RerankerConfig, "ranknet"), (LayerwiseConfig, "listwise"),
                      (ColbertConfig, "infonce")):
        assert cls.from_dict({**base, "loss": good}).loss == good
        with pytest.raises(UsageError, match=f"unknown loss 'foo' for the {cls.TRAINER} trainer"):
            cls.from_dict({**base, "loss": "foo"})


@pytest.mark.parametrize("body,message", [
    ('eval_data = 7', "eval_data (--eval-data) must be a string, not 7"),
    ('instruction = 4', "instruction (--instruction) must be a string, not 4"),
    ('seed = -1', "seed (--seed) must be at least 0"),
    ('seed = 5000000000', "seed (--seed) must be at most 4294967295"),
    ('lora_dropout = 2.0', "lora_dropout must be less than 1.0"),
    ('temperature = nan', "temperature (--temperature) must be a finite number"),
    ('query_template = "abc"', "query_template must hold {text}, where the query goes"),
    ('query_template = "q: {foo} {text}"', "query_template names {foo}: it may use {instruction}, {text} only"),
    ('lr = 1.0\n[train]\nlr = 2.0', "lr set both in [train] and outside it"),
    ('[train]\nlr = -5.0', "lr (--lr) must be more than 0.0, not -5.0"),  # keys outside [train] count too
])
def test_a_bad_run_toml_is_one_line_before_any_run_folder(tmp_path, capsys, monkeypatch, body, message):
    from tiny_models import run_wb

    (tmp_path / "d.jsonl").write_text('{"query": "q", "pos": ["p"], "neg": ["n"]}\n')
    (tmp_path / "base").mkdir()  # a local folder: the base is resolved before the options are built
    (tmp_path / "run.toml").write_text(f'data = "d.jsonl"\nbase = "base"\nname = "x"\n{body}\n')
    code, _out, err = run_wb(capsys, monkeypatch, "train", "embedder", "--config", str(tmp_path / "run.toml"),
                             "-w", str(tmp_path / "ws"))
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "ws" / "runs" / "x").exists()


def test_a_run_toml_that_is_a_folder_and_the_toml_only_options_are_said_as_such(tmp_path, capsys, monkeypatch):
    import re
    from dataclasses import fields

    from tiny_models import run_wb
    from trainers import config as c

    code, _out, err = run_wb(capsys, monkeypatch, "train", "embedder", "--config", str(tmp_path), "-w", str(tmp_path))
    assert code == 2 and "is a folder: give a run.toml file" in err
    # option_name names a flag only where `wb train` has one
    cli = Path(c.__file__).parents[1] / "workbench/cli"
    flags = set(re.findall(r"(--[a-z0-9-]+)", "".join(p.read_text() for p in sorted(cli.glob("*.py")))))
    without = {f.name for cls in (c.EmbedderConfig, c.RerankerConfig, c.LlmRerankerConfig, c.ColbertConfig,
                                  c.SpladeConfig, c.LayerwiseConfig, c.JointConfig) for f in fields(cls)
               if c.FLAG_OF_FIELD.get(f.name, "--" + f.name.replace("_", "-")) not in flags}
    assert without == c.TOML_ONLY


def test_a_task_whose_batches_hold_one_example_and_no_negatives_is_said(capsys):
    """Batches are single-task: a one-example task without hard negatives gives steps of constant
    loss (no gradient) even when the other tasks are large; the run says which task."""
    from types import SimpleNamespace

    from trainers.loop import _warn_without_negatives

    cfg = SimpleNamespace(batch_size=4)
    big = [TrainingExample(f"q{i}", (f"p{i}",), task="big") for i in range(8)]
    tiny = [TrainingExample("lonely", ("p",), task="tiny1")]
    _warn_without_negatives(cfg, big + tiny)
    out = capsys.readouterr().out
    assert "task tiny1: one example a batch and no hard negatives" in out and "big" not in out
    _warn_without_negatives(cfg, big + [TrainingExample("lonely", ("p",), ("n",), task="tiny1")])
    assert capsys.readouterr().out == ""
    _warn_without_negatives(cfg, tiny)
    assert "1 example at batch size 4 and no hard negatives" in capsys.readouterr().out


@pytest.mark.parametrize("qrels", ["q1\td1\t1\n", "q1 d1 1\n", "q1 0 d1 1\n", "query-id\tcorpus-id\tscore\nq1\td1\t1\n"])
def test_the_eval_overlap_check_reads_queries_and_qrels_as_wb_eval_does(tmp_path, qrels):
    """Space-separated or TREC qrels and a BOM'd queries.jsonl: the queries `wb eval` asks, so the
    "evaluation queries are training queries too" warning sees them."""
    from trainers.data.eval_data import eval_queries

    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    write_jsonl(root / "corpus.jsonl", [{"_id": "d1", "text": "doc one"}, {"_id": "d2", "text": "doc two"}])
    (root / "queries.jsonl").write_text('\ufeff{"_id": "q1", "text": "what is x"}\n{"_id": "q2", "text": "unjudged"}\n',
                                        encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text(qrels)
    assert eval_queries(str(root), "beir", "test") == {"what is x"}
