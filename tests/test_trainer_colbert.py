"""ColBERT runs on a tiny random BERT: trains, the served vectors equal the trained ones, and
`wb train colbert` -> `wb index --model colbert=runs/NAME` -> `wb query --model ...` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import copy_small_corpus, require_models
from tiny_models import run_wb, tiny_bert, topic_groups

pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random 2-layer, 32-wide BertModel with the MiniLM tokenizer, and 24 rows with 3 negatives."""
    require_models()
    root = tmp_path_factory.mktemp("tiny_cb")
    base = root / "base"
    tiny_bert(base)
    data = topic_groups(root / "train.jsonl", 24, 3)
    return base, data


def test_colbert_trains_and_serves_the_trained_vectors(tiny, tmp_path, monkeypatch):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from trainers.config import ColbertConfig
    from trainers.loop import train_run
    from trainers.runs import new_run
    from workbench.encoders.colbert import COLBERT_HEAD, ColbertEncoder

    base, data = tiny
    cfg = ColbertConfig(data=str(data), base=str(base), name="cb", batch_size=4, max_steps=16, lr=1e-2,
                        head_lr=1e-2, warmup_ratio=0.0, save_every=100, dim=16, passage_max_length=64)
    run = new_run(tmp_path, "cb", cfg.to_json())
    status = train_run(run)
    assert status["state"] == "finished" and status["step"] == 16
    losses = [e["loss"] for e in run.events() if e["event"] == "step"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    meta = json.loads((run.model_dir / "wb_colbert.json").read_text())
    assert meta["dim"] == 16 and meta["query_marker_id"] != meta["document_marker_id"]

    monkeypatch.setenv("WB_DTYPE", "float32")
    enc = ColbertEncoder(str(run.model_dir), device="cpu")
    assert enc.dim == 16
    q = enc.encode_queries(["cats question 0"])[0]
    docs = enc.encode_documents(["the answer: cats 0", "unrelated notes, chess 0"])
    assert q.shape == (6, 16)  # [CLS] [Q] cats question 0 [SEP]
    assert np.allclose(np.linalg.norm(q.astype(np.float32), axis=1), 1.0, atol=1e-2)
    scores = [float((q.astype(np.float32) @ d.astype(np.float32).T).max(axis=1).sum()) for d in docs]
    assert scores[0] > scores[1]
    # the served vectors are the trained model's: encoder + projection + normalisation, by hand
    tok = AutoTokenizer.from_pretrained(run.model_dir)
    model = AutoModel.from_pretrained(run.model_dir).eval()
    weight = torch.load(run.model_dir / COLBERT_HEAD)["weight"]
    ids = tok("cats question 0")["input_ids"]
    ids = [ids[0], meta["query_marker_id"], *ids[1:]]
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    expected = torch.nn.functional.normalize(hidden @ weight.T, dim=-1).numpy()
    assert np.allclose(q.astype(np.float32), expected, atol=2e-3)


def test_cli_train_index_and_query_a_colbert_variant(tiny, tmp_path, capsys, monkeypatch):
    from workbench.index.indexer import Indexer
    from workbench.workspace import Workspace

    monkeypatch.setenv("WB_DTYPE", "float32")  # both query backends in fp32 (a bf16 CPU would differ)
    base, data = tiny
    corpus = copy_small_corpus(tmp_path / "corpus", ["itertools/groupby.md", "time/sleep.md", "heapq/overview.md"])
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(corpus)
    code, out, err = run_wb(capsys, monkeypatch, "train", "colbert", "--data", str(data), "--base", str(base),
                            "--out", "cb1", "--max-steps", "2", "--batch-size", "4", "--dim", "16",
                            "--passage-max-length", "64", "-w", str(ws.root))
    assert code == 0, err
    assert json.loads((ws.runs_dir / "cb1" / "config.json").read_text())["trainer"] == "colbert"
    # querying before the variant is indexed: one clear line
    code, _out, err = run_wb(capsys, monkeypatch, "query", "sleep", "-p", "colbert", "--model", "colbert=runs/cb1",
                             "-w", str(ws.root))
    assert code != 0 and "wb index" in err
    code, out, err = run_wb(capsys, monkeypatch, "index", "--model", "colbert=runs/cb1", "-w", str(ws.root))
    assert code == 0, err
    code, out, err = run_wb(capsys, monkeypatch, "query", "pause the program for a while", "-p", "colbert",
                            "--model", "colbert=runs/cb1", "-w", str(ws.root), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["models"]["colbert"] == "runs/cb1 (trained ColBERT)"
    assert "zero-shot" not in result["models"]["colbert"]
    assert len(result["results"]) == 3 and "encode_colbert" in result["timings_ms"]
    # the variant stores 16-d token vectors; the workspace's own index keeps MiniLM's 384-d ones
    from workbench.search.searcher import Searcher
    from workbench.variants import serving

    serve = serving(ws, {"colbert": "runs/cb1"})
    searcher = Searcher(serve.workspace, config=serve.config)
    q = searcher.encode_queries(["sleep"], {"colbert"})[0]
    assert q.tokens.shape[1] == 16
    assert searcher.snapshot.tokens.bits.shape[1] == 16
    # `wb query` answered through the numpy backend: the trained ColBERT runs there too, and the
    # answers are the torch backend's
    mine = Searcher(serve.workspace, config=serve.config, backend="numpy")
    for pipeline in ("colbert", "hybrid"):
        a = mine.search("pause the program for a while", pipeline=pipeline, k=3)
        b = searcher.search("pause the program for a while", pipeline=pipeline, k=3)
        assert [h.doc_id for h in a.results] == [h.doc_id for h in b.results]
        # abs 1e-3: hybrid's min-max fusion magnifies the two backends' ~1e-6 differences in summation
        # order (AVX-512 and AVX2 kernels sum differently), a mode alone stays within 1e-4
        assert [h.score for h in a.results] == pytest.approx([h.score for h in b.results],
                                                             abs=1e-4 if pipeline != "hybrid" else 1e-3)
    assert type(mine.bundle.colbert).__name__ == "NumpyColbertEncoder"
    # the TUI preview explains the trained ColBERT's own match (it used the dense model's tokens:
    # other matches, a score the ranking never saw)
    from workbench.search.explain import colbert_matches

    top = searcher.search("pause the program for a while", pipeline="colbert", k=1).results[0]
    explained = colbert_matches(searcher, "pause the program for a while", top.chunk_id)
    assert explained.score == pytest.approx(top.score, abs=2e-3)
    assert [m.query_token for m in explained.matches][:2] == ["[CLS]", searcher.bundle.colbert.encoder.tokenizer
                                                               .convert_ids_to_tokens(json.loads(
                                                                   (ws.runs_dir / "cb1" / "model" / "wb_colbert.json")
                                                                   .read_text())["query_marker_id"])]
    assert [m.part for m in explained.matches if m.query_token == "pause"] == ["query"]
    base_searcher = Searcher(ws)
    assert base_searcher.snapshot.tokens.bits.shape[1] == 384
    hybrid = base_searcher.search("pause the program", pipeline="hybrid", k=3)
    assert hybrid.models["colbert"].endswith("(zero-shot)")


@pytest.mark.parametrize("init", ["identity", "pca", "orthogonal"])
def test_projection_init(tiny, init):
    """identity keeps the base's normalised token states exactly; pca and orthogonal give orthonormal rows;
    a bad choice or an identity with dim != hidden is one UsageError."""
    import torch

    from trainers.colbert import ColbertTrainer
    from trainers.config import ColbertConfig
    from workbench.errors import UsageError

    base, data = tiny
    dim = 32 if init == "identity" else 16  # the tiny encoder is 32 wide
    trainer = ColbertTrainer(ColbertConfig(data=str(data), base=str(base), name="p", dim=dim, projection_init=init))
    trainer.examples()
    model = trainer.build()
    weight = model.projection.weight.detach()
    assert torch.allclose(weight @ weight.T, torch.eye(dim), atol=1e-4)
    if init == "identity":
        ids = torch.tensor([[101, 2061, 2003, 102]])
        mask = torch.ones_like(ids)
        with torch.no_grad():
            hidden = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            assert torch.allclose(model(ids, mask), torch.nn.functional.normalize(hidden, dim=-1), atol=1e-5)
        with pytest.raises(UsageError, match="hidden size"):
            ColbertTrainer(ColbertConfig(data=str(data), base=str(base), name="p", dim=16, projection_init="identity")).build()
    with pytest.raises(UsageError, match="projection_init"):
        ColbertTrainer(ColbertConfig(data=str(data), base=str(base), name="p", dim=16, projection_init="random")).build()


def test_markers_that_are_one_token_in_a_byte_level_vocabulary_are_refused():
    """BERT vocabularies give [unused0]/[unused1]; a byte-level BPE cuts "[Q]" and "[D]" to the same
    first token "[", which would mark queries and documents alike: refused, naming what to set; two
    markers with different first tokens work."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from trainers.colbert import marker_ids
    from workbench.errors import UsageError
    from workbench.models.cache import resolve_model_path

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(["a question about cats", "a document about dogs"] * 10,
                            trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    byte_level = PreTrainedTokenizerFast(tokenizer_object=bpe)
    with pytest.raises(UsageError, match="query_marker and document_marker"):
        marker_ids(byte_level, "[Q] ", "[D] ")
    q, d = marker_ids(byte_level, "Q ", "D ")
    assert q != d and byte_level.convert_ids_to_tokens([q, d]) == ["Q", "D"]
    bert = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    assert marker_ids(bert, "[Q] ", "[D] ") == (bert.convert_tokens_to_ids("[unused0]"),
                                                bert.convert_tokens_to_ids("[unused1]"))


def test_a_positive_two_rows_share_is_no_negative_of_either(tiny):
    """Two examples of a batch with one positive text (several queries per passage, a clash the
    sampler cannot always avoid): the duplicate column is masked, as the embedder masks it. Before,
    it counted as a negative of its own query: the loss could never go below log 2."""
    import math

    from tiny_models import shared_positive_loss
    from trainers.colbert import ColbertTrainer
    from trainers.config import ColbertConfig

    base, data = tiny
    cfg = ColbertConfig(data=str(data), base=str(base), name="n", dim=16, negatives_per_query=0)
    assert shared_positive_loss(ColbertTrainer(cfg)) < math.log(2) / 10


def test_an_example_without_negatives_keeps_the_others_distillation(tiny):
    """kl_weight > 0: example 0 (a negative, teacher scores 5 / -5) keeps its KL term when the other
    example of its batch has no hard negative; the KL is its alone. Before, one negative-less example
    dropped the KL (and the hard negatives) of the whole batch, silently."""
    from tiny_models import loss_once
    from trainers.colbert import ColbertTrainer
    from trainers.config import ColbertConfig
    from trainers.data.example import TrainingExample

    base, data = tiny
    exs = [TrainingExample(query="cats question", positives=("the answer: cats",), negatives=("rivers",),
                           positive_scores=(5.0,), negative_scores=(-5.0,)),
           TrainingExample(query="stars question", positives=("stars answer",), negatives=(),
                           positive_scores=(5.0,), negative_scores=())]

    def kl_term(batch):
        def loss(weight):
            cfg = ColbertConfig(data=str(data), base=str(base), name="n", dim=8, kl_weight=weight)
            return loss_once(ColbertTrainer(cfg), batch)
        return (loss(100.0) - loss(0.0)) / 100.0

    alone = kl_term(exs[:1])
    assert alone > 1e-3
    assert kl_term(exs) == pytest.approx(alone, rel=1e-3)


def test_distillation_without_negatives_is_refused_before_the_run_exists(tiny, tmp_path, capsys, monkeypatch):
    """kl_weight > 0 with negatives_per_query = 0: each group is the positive alone, the KL is 0 and
    kl_weight does nothing; one line, exit 2, no run folder (and the trainer refuses it too)."""
    from trainers.colbert import ColbertTrainer
    from trainers.config import ColbertConfig
    from workbench.errors import UsageError

    base, data = tiny
    config = tmp_path / "run.toml"
    config.write_text("kl_weight = 1.0\nnegatives_per_query = 0\n")
    code, _out, err = run_wb(capsys, monkeypatch, "train", "colbert", "--data", str(data), "--base", str(base),
                             "--out", "c0", "--config", str(config), "--detach", "-w", str(tmp_path / "ws"))
    assert code == 2 and "set negatives_per_query (--negatives) >= 1" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ws" / "runs" / "c0").exists()
    with pytest.raises(UsageError):
        ColbertTrainer(ColbertConfig(data=str(data), base=str(base), name="n", kl_weight=1.0, negatives_per_query=0))
