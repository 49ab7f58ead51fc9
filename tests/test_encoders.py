"""Encoders reproduce their reference implementations; chunks map back into their documents."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import SAMPLE, require_models
from workbench.encoders.batching import length_sorted_batches

TEXTS = [
    "Return consecutive keys and groups from the iterable.",
    "shutil.rmtree deletes an entire directory tree; path must point to a directory.",
    "A very short one.",
    (SAMPLE / "itertools" / "groupby.md").read_text()[:3000],
]


def test_length_sorted_batches_cover_every_input_once():
    lengths = [5, 300, 12, 12, 256, 1, 90]
    batches = list(length_sorted_batches(lengths, max_tokens=400, max_batch=3))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 400


def test_dense_equals_sentence_transformers(monkeypatch):
    require_models()
    monkeypatch.setenv("WB_DTYPE", "float32")
    from sentence_transformers import SentenceTransformer

    from workbench.encoders.dense import DenseEncoder
    from workbench.models.cache import resolve_model_path

    path = resolve_model_path("all-MiniLM-L6-v2")
    ours = DenseEncoder(path).encode(TEXTS, tokens=True)
    ref = SentenceTransformer(path, device="cpu").encode(TEXTS)
    np.testing.assert_allclose(ours.dense, ref, atol=1e-5)
    # token vectors: one per input token, unit length, from the same pass
    assert [t.shape[0] for t in ours.tokens][2] == len(DenseEncoder(path).tokenize([TEXTS[2]])[0])
    norms = np.linalg.norm(ours.tokens[0].astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)


def _st_folder(dest, pooling_config: dict, modules_extra: list | None = None, seq_limit_in_tokenizer=True):
    """A sentence-transformers 5/6-style folder around a tiny random BERT: modules.json, a Pooling
    config in the new format, the length limit in tokenizer_config.json (no max_seq_length)."""
    import json

    from tiny_models import tiny_bert

    tiny_bert(dest)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               *(modules_extra or [])]
    (dest / "modules.json").write_text(json.dumps(modules))
    (dest / "1_Pooling").mkdir()
    (dest / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **pooling_config}))
    (dest / "sentence_bert_config.json").write_text(json.dumps({"do_lower_case": False}))
    tok_cfg = json.loads((dest / "tokenizer_config.json").read_text())
    tok_cfg["model_max_length"] = 16 if seq_limit_in_tokenizer else 1_000_000_000_000_000_019_884_624_838_656
    (dest / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    return dest


def test_a_sentence_transformers_6_folder_pools_and_truncates_as_sentence_transformers(tmp_path, monkeypatch):
    """sentence-transformers 5+ writes {"pooling_mode": "cls"} and keeps the length limit in the
    tokenizer's config: a CLS model was served mean-pooled at 512 tokens (cosine 0.5-0.7 to ST's)."""
    require_models()
    monkeypatch.setenv("WB_DTYPE", "float32")
    from sentence_transformers import SentenceTransformer

    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.numpy_bert import NumpyDenseEncoder

    path = str(_st_folder(tmp_path / "st_cls", {"pooling_mode": "cls"}))
    ref = SentenceTransformer(path, device="cpu")
    assert ref.max_seq_length == 16
    # no Normalize module, similarity cosine (the default): served as unit vectors, so that the exact
    # scan and LanceDB's cosine index rank alike (it ranked by raw dot products below 200,000 rows)
    expected = ref.encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(DenseEncoder(path).encode(TEXTS).dense, expected, atol=1e-5)
    np.testing.assert_allclose(NumpyDenseEncoder.load(path).encode(TEXTS).dense, expected, atol=1e-4)


def test_a_model_that_leaves_its_prompt_out_of_pooling_pools_as_sentence_transformers(tmp_path, monkeypatch):
    """INSTRUCTOR-style folders (Pooling ``include_prompt: false``): the instruction's tokens are left
    out of the mean, as ``SentenceTransformer.encode(text, prompt=...)`` does (wb refused them:
    pooled in, the cosine to the model's vectors was 0.89); without a prompt nothing is left out; the
    numpy backend declines them (torch serves), and the embedder trainer refuses them as a base."""
    require_models()
    monkeypatch.setenv("WB_DTYPE", "float32")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.numpy_bert import NumpyDenseEncoder
    from workbench.encoders.templates import PromptTemplates

    path = str(_st_folder(tmp_path / "st", {"pooling_mode": "mean", "include_prompt": False},
                          seq_limit_in_tokenizer=False))
    ref = SentenceTransformer(path, device="cpu")
    ours = DenseEncoder(path)
    templates = PromptTemplates()
    short = ["Return consecutive keys and groups.", "Delete a directory tree.", "A short one."]
    for instruction in ("Represent the query for retrieving code", ""):
        prompt = templates.query_prompt(instruction)
        rendered = [templates.render_query(t, instruction) for t in short]
        expected = ref.encode(short, prompt=prompt or None, normalize_embeddings=True)
        got = ours.encode(rendered, queries=True, prompt=prompt).dense
        np.testing.assert_allclose(got, expected, atol=1e-5)
        if prompt:  # and it matters: pooled in, the vectors are others
            pooled_in = ours.encode(rendered, queries=True).dense
            assert np.min(np.sum(pooled_in * expected, axis=1)) < 0.999
    assert NumpyDenseEncoder.load(path) is None

    from trainers.config import EmbedderConfig
    from workbench.errors import ModelError

    with pytest.raises(ModelError, match=r"leaves its prompt's tokens out of its pooling \(include_prompt: false\)"):
        EmbedderConfig(data="unsupervised", base=path, name="x", corpus="c.jsonl").check_base()


def test_queries_with_an_instruction_reach_a_prompt_excluding_model_with_their_prompt(tmp_path, monkeypatch):
    """Through the engine (`wb index` + a query with an instruction, the torch backend): the query
    vector is sentence-transformers' with the rendered instruction as its prompt."""
    require_models()
    monkeypatch.setenv("WB_DTYPE", "float32")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from workbench.index.indexer import Indexer
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    path = str(_st_folder(tmp_path / "st", {"pooling_mode": "mean", "include_prompt": False},
                          seq_limit_in_tokenizer=False))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "text": "groupby makes groups of consecutive keys"}\n'
                      '{"_id": "b", "text": "rmtree deletes a directory tree"}\n')
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    text = ws.config_path.read_text().replace('dense = "all-MiniLM-L6-v2"', f'dense = "{path}"', 1)
    ws.config_path.write_text(text.replace("chunk_tokens = 256", "chunk_tokens = 100", 1))  # the tiny model reads 128
    Indexer(ws).run(corpus)
    searcher = Searcher(ws)
    instruction = "Represent the query for retrieving code"
    [q] = searcher.encode_queries(["delete a folder"], {"dense"}, instruction)
    prompt = searcher.settings.templates.query_prompt(instruction)
    assert prompt.startswith(instruction)
    expected = SentenceTransformer(path, device="cpu").encode(["delete a folder"], prompt=prompt, normalize_embeddings=True)[0]
    np.testing.assert_allclose(q.dense, expected, atol=1e-5)


@pytest.mark.parametrize("pooling,extra,says", [
    ({"pooling_mode": "max"}, [], "its pooling (max) is not one wb runs"),
    ({"pooling_mode_mean_sqrt_len_tokens": True}, [], "its pooling (mean_sqrt_len_tokens) is not one wb runs"),
    # sentence-transformers 5/6 writes several modes as a list (vectors concatenated): was served as mean
    ({"pooling_mode": ["cls", "max"]}, [], "its pooling (cls + max) is not one wb runs"),
    ({"pooling_mode": ["mean"]}, [], None),
    ({"pooling_mode": "mean"}, [{"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}],
     "its sentence-transformers modules include Dense, which wb does not run"),
    ({"pooling_mode": "mean"}, [], "its similarity is the dot product of unnormalised vectors"),
    ({"pooling_mode": "mean"}, [], "its Transformer module is in the subfolder 0_Transformer/"),
])
def test_a_folder_needing_what_wb_does_not_run_is_refused_in_one_line(tmp_path, pooling, extra, says):
    """Max pooling, sqrt-length mean, a Dense projection: served as plain mean pooling before,
    vectors unlike the model's (or of another width) without a word; a dot-product model without
    Normalize: wb ranks by cosine, so it would rank otherwise than it was trained to."""
    require_models()
    import json

    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.numpy_bert import NumpyDenseEncoder
    from workbench.errors import ModelError

    path = str(_st_folder(tmp_path / "st", pooling, extra))
    if says and says.startswith("its similarity"):
        (tmp_path / "st" / "config_sentence_transformers.json").write_text(json.dumps({"similarity_fn_name": "dot"}))
    if says and says.startswith("its Transformer module"):  # sentence-transformers < 2: the model in 0_Transformer/
        inner = tmp_path / "st" / "0_Transformer"
        inner.mkdir()
        for item in list((tmp_path / "st").iterdir()):
            if item.is_file() and item.name not in ("modules.json", "sentence_bert_config.json"):
                item.rename(inner / item.name)
        modules = json.loads((tmp_path / "st" / "modules.json").read_text())
        modules[0]["path"] = "0_Transformer"
        (tmp_path / "st" / "modules.json").write_text(json.dumps(modules))
    for load in (DenseEncoder, NumpyDenseEncoder.load):
        if says is None:  # a one-mode list is that mode
            load(path)
            continue
        with pytest.raises(ModelError, match=re.escape(says)):
            load(path)


@pytest.mark.parametrize("damage", ["no tokenizer", "corrupt weights", "remote code"])
def test_a_broken_or_code_carrying_model_folder_is_one_model_error(tmp_path, damage):
    """No tokenizer: transformers built an empty one (every word [UNK], every text alike); corrupt
    safetensors: "internal error"; a folder with its own modelling code: transformers asked on the
    terminal whether to run it (trust_remote_code is off: refused, nothing run)."""
    require_models()
    import json

    from tiny_models import tiny_bert
    from workbench.encoders.rerankers import CrossEncoderReranker
    from workbench.encoders.sparse import SparseEncoder
    from workbench.errors import ModelError

    for role, masked in (("dense", False), ("sparse", True)):
        folder = tiny_bert(tmp_path / f"{role}-{damage.replace(' ', '_')}", masked_lm=masked)
        if damage == "no tokenizer":
            for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
                (folder / name).unlink(missing_ok=True)
        elif damage == "corrupt weights":
            weights = folder / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[:200])
        else:
            marker = tmp_path / "RAN"
            (folder / "custom_config.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                                     "from transformers import BertConfig as CustomConfig\n")
            config = json.loads((folder / "config.json").read_text())
            config.update(model_type="custombert", auto_map={"AutoConfig": "custom_config.CustomConfig",
                                                              "AutoModel": "custom_config.CustomConfig"})
            (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(ModelError) as err:
            if role == "dense":
                from workbench.encoders.dense import DenseEncoder

                DenseEncoder(str(folder)).encode(["a text"])
            else:
                SparseEncoder(str(folder)).encode(["a text"])
        assert "\n" not in str(err.value) and str(folder) in str(err.value)
        if damage == "remote code":
            assert not (tmp_path / "RAN").exists()
    if damage == "no tokenizer":
        with pytest.raises(ModelError, match="the folder has no tokenizer"):
            CrossEncoderReranker(str(tmp_path / "dense-no_tokenizer"))


def test_dense_bf16_stays_close_to_fp32(monkeypatch):
    require_models()
    from workbench.encoders.dense import DenseEncoder
    from workbench.models.cache import resolve_model_path

    path = resolve_model_path("all-MiniLM-L6-v2")
    monkeypatch.setenv("WB_DTYPE", "float32")
    full = DenseEncoder(path).encode(TEXTS).dense
    monkeypatch.setenv("WB_DTYPE", "bfloat16")
    half = DenseEncoder(path).encode(TEXTS).dense
    assert float((full * half).sum(1).min()) > 0.999


@pytest.mark.parametrize("candidate_dtype", ["bfloat16", "float32"])
def test_sparse_equals_plain_splade(candidate_dtype, monkeypatch):
    """Full-precision SPLADE whichever dtype the candidate projection runs in (bf16 where the CPU has
    it, float32 where bf16 is emulated: both are forced here through WB_DTYPE)."""
    require_models()
    monkeypatch.setenv("WB_DTYPE", candidate_dtype)
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from workbench.encoders.sparse import SparseEncoder
    from workbench.models.cache import resolve_model_path

    path = resolve_model_path("splade-tiny")
    encoder = SparseEncoder(path)
    assert str(encoder._fast_dtype) == f"torch.{candidate_dtype}"
    ours = encoder.encode(TEXTS)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForMaskedLM.from_pretrained(path).eval()
    with torch.inference_mode():
        batch = tok(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
        logits = model(**batch).logits
        ref = (torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1)).amax(dim=1).numpy()
    for i, vec in enumerate(ours):
        dense = np.zeros(ref.shape[1], dtype=np.float32)
        dense[vec.ids] = vec.weights
        np.testing.assert_allclose(dense, ref[i], atol=1e-4)
        assert set(vec.ids.tolist()) == set(np.nonzero(ref[i] > 0)[0].tolist())
    # blocks of a few rows and vocabulary slices that do not divide it: the very same vectors
    tiled = SparseEncoder(path, rows_per_slice=8, vocab_slice=777).encode(TEXTS)
    for a, b in zip(ours, tiled):
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.weights, b.weights)


@pytest.mark.parametrize("lean", ["1", "0"])
def test_a_bf16_stored_splade_checkpoint_runs_in_float32(tmp_path, lean, monkeypatch):
    """A SPLADE checkpoint uploaded in bf16 is encoded in float32 (its weights widened), as numpy does
    and as an fp32 checkpoint is: the same terms and weights, not bf16-rounded ones (lean BERT and
    the transformers path alike)."""
    require_models()
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from workbench.encoders.numpy_bert import NumpySparseEncoder
    from workbench.encoders.sparse import SparseEncoder
    from workbench.models.cache import resolve_model_path

    src = resolve_model_path("splade-tiny")
    folder = tmp_path / "splade-bf16"
    shutil.copytree(src, folder)
    state = load_file(str(folder / "model.safetensors"))
    save_file({k: v.to(torch.bfloat16) for k, v in state.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    monkeypatch.setenv("WB_DTYPE", "float32")
    ref = NumpySparseEncoder.load(str(folder)).encode(TEXTS)  # numpy widens bf16 tensors to float32
    monkeypatch.setenv("WB_LEAN", lean)
    encoder = SparseEncoder(str(folder), device="cpu")
    assert encoder._decoder_weight.dtype == torch.float32
    ours = encoder.encode(TEXTS)
    for a, b in zip(ours, ref):
        assert a.ids.tolist() == b.ids.tolist()
        np.testing.assert_allclose(a.weights, b.weights, atol=1e-4)


@pytest.mark.parametrize("value, name", [("float32", "float32"), ("fp32", "float32"), ("BF16", "bfloat16"),
                                         ("bfloat16", "bfloat16"), ("fp16", "float16"), (" ", None)])
def test_wb_dtype_takes_the_dtype_names_and_their_short_forms(value, name, monkeypatch):
    import torch

    from workbench.encoders.device import pick_dtype

    monkeypatch.setenv("WB_DTYPE", value)
    if name is not None:
        assert pick_dtype(torch.device("cpu")) == getattr(torch, name)
    else:
        assert pick_dtype(torch.device("cpu")) in (torch.float32, torch.bfloat16)


@pytest.mark.parametrize("value", ["float64", "int8", "fp8", "torch.float32"])
def test_any_other_wb_dtype_is_one_line_exit_2(value, monkeypatch, capsys):
    from tiny_models import run_wb

    monkeypatch.setenv("WB_DTYPE", value)
    code, out, err = run_wb(capsys, monkeypatch, "models")
    assert code == 2 and out == ""
    assert err.strip() == (f"wb: error: WB_DTYPE={value!r} is not a dtype wb runs in; "
                           "use one of float32, fp32, bfloat16, bf16, float16, fp16")


def _tiny_roberta(dest, *, masked_lm: bool, family: str = "roberta"):
    """A random 1-layer, 32-wide RoBERTa (or MPNet: ``family="mpnet"``; 514 positions, pad id 1, as
    roberta-base and mpnet-base) with a word-level tokenizer of "w0".."w99" saved into ``dest``."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4, **{f"w{i}": 5 + i for i in range(100)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")
    prefix = {"roberta": "Roberta", "mpnet": "MPNet"}[family]
    config = getattr(transformers, f"{prefix}Config")(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=514, pad_token_id=1)
    torch.manual_seed(0)
    getattr(transformers, f"{prefix}ForMaskedLM" if masked_lm else f"{prefix}Model")(config).save_pretrained(dest)
    fast.save_pretrained(dest)
    return dest


@pytest.mark.parametrize("family", ["roberta", "mpnet"])
def test_a_roberta_style_model_reads_512_tokens_not_its_514_positions(tmp_path, family):
    """RoBERTa's (and MPNet's) position ids start at pad_token_id + 1, so of max_position_embeddings=514
    only 512 serve tokens: a longer text asked for is cut there (SPLADE from an MLM, a dense
    sentence-transformers folder), not an index error past the position table."""
    import json

    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.layout import read_layout
    from workbench.encoders.sparse import SparseEncoder

    long_text = " ".join(f"w{i % 100}" for i in range(700))
    mlm = _tiny_roberta(tmp_path / "mlm", masked_lm=True, family=family)
    sparse = SparseEncoder(str(mlm), device="cpu", max_length=1024)  # what the bundle asks for 1024-token chunks
    assert sparse.max_length == 512
    assert len(sparse.encode([long_text])[0].ids) > 0
    st = _tiny_roberta(tmp_path / "st", masked_lm=False, family=family)
    (st / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (st / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 1024}))
    assert read_layout(str(st)).max_length == 512
    dense = DenseEncoder(str(st), device="cpu")
    assert dense.max_length == 512
    assert np.isfinite(dense.encode([long_text]).dense).all()


def test_do_lower_case_in_sentence_bert_config_lowercases_as_sentence_transformers(tmp_path, monkeypatch):
    """A folder whose sentence_bert_config.json sets do_lower_case, with a cased tokenizer: both
    backends lowercase the text before tokenizing, as sentence-transformers does (same vectors)."""
    require_models()
    import json
    import shutil

    from sentence_transformers import SentenceTransformer

    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.numpy_bert import NumpyDenseEncoder
    from workbench.models.cache import resolve_model_path

    monkeypatch.setenv("WB_DTYPE", "float32")
    folder = tmp_path / "minilm-cased"
    shutil.copytree(resolve_model_path("all-MiniLM-L6-v2"), folder)
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256, "do_lower_case": True}))
    for name, edit in (("tokenizer_config.json", lambda c: c.update(do_lower_case=False)),
                       ("tokenizer.json", lambda c: c["normalizer"].update(lowercase=False))):
        config = json.loads((folder / name).read_text())
        edit(config)
        (folder / name).write_text(json.dumps(config))
    texts = ["Vitamin C Deficiency Causes Scurvy", "BRCA1 Mutations and Breast Cancer", "ÉCOLE Normale"]
    ref = SentenceTransformer(str(folder), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(DenseEncoder(str(folder), device="cpu").encode(texts).dense, ref, atol=1e-5)
    np.testing.assert_allclose(NumpyDenseEncoder.load(str(folder)).encode(texts).dense, ref, atol=1e-5)


def test_chunks_point_into_their_document_and_overlap():
    require_models()
    from transformers import AutoTokenizer

    from workbench.ingest.chunking import Chunker, ChunkingSettings
    from workbench.ingest.readers import iter_sources
    from workbench.models.cache import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    docs = [d for d in iter_sources(SAMPLE / "itertools") if hasattr(d, "text")]
    chunker = Chunker(tok, ChunkingSettings(max_tokens=64, overlap=16))
    for doc, chunks in zip(docs, chunker.chunk_many(docs)):
        assert chunks, doc.doc_id
        assert [c.ordinal for c in chunks] == list(range(len(chunks)))
        for c in chunks:
            assert doc.text[c.char_start : c.char_end] == c.text
            n = len(tok(f"{c.title} {c.text}")["input_ids"])
            assert n <= 64, (doc.doc_id, n)  # the window holds, special tokens included
        for a, b in zip(chunks, chunks[1:]):
            assert b.char_start < a.char_end  # consecutive windows overlap
        assert chunks[-1].char_end == len(doc.text.rstrip()) or chunks[-1].char_end <= len(doc.text)


def _minilm_chunker(max_tokens: int, overlap: int):
    require_models()
    from transformers import AutoTokenizer

    from workbench.ingest.chunking import Chunker, ChunkingSettings
    from workbench.models.cache import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    return tok, Chunker(tok, ChunkingSettings(max_tokens=max_tokens, overlap=overlap))


def test_windows_start_and_end_on_word_boundaries():
    from workbench.types import SourceDocument

    _, chunker = _minilm_chunker(32, 8)
    text = " ".join(f"lorem{i} dolor{i}" for i in range(80))  # every word is two or three word pieces
    words = set(text.split())
    (chunks,) = chunker.chunk_many([SourceDocument("d", "d.txt", "", text, "h")])
    assert len(chunks) > 5
    for c in chunks:
        assert set(c.text.split()) <= words, c.text  # no window starts or ends inside a word
    for a, b in zip(chunks, chunks[1:]):
        assert b.char_start < a.char_end  # and consecutive windows still overlap


def test_chunking_in_groups_gives_the_chunks_of_chunking_all_at_once():
    """The indexer chunked every document to index in one tokenizer call with offsets (+665 MB of
    RSS for SciFact's 5,183 abstracts, ~125 KB a document): now at most ``GROUP_DOCS`` documents are
    tokenized at once, and every chunk (id, text, span, title, order) is the one chunking all at
    once gives, for plain documents, long titles that are cut, long documents, title-only and
    wordless ones."""
    from workbench.ingest.chunking import GROUP_DOCS
    from workbench.ingest.readers import iter_sources
    from workbench.types import SourceDocument

    tok, chunker = _minilm_chunker(64, 8)
    docs = [d for d in iter_sources(SAMPLE) if hasattr(d, "text")]
    docs += [SourceDocument(f"edge{i}", f"edge{i}.txt", title, text, "h") for i, (title, text) in enumerate([
        (" ".join(["lorem"] * 200), " ".join(f"filler{i}" for i in range(300))),  # a title cut to 16 tokens
        ("Xylophone tuning", ""), ("", "   "), ("", " ".join(f"lorem{i} dolor{i}" for i in range(400))),
        ("t", "x" * 3000), ("Café ünïcode", "naïve façade — “quoted” text… " * 40),
    ])]
    assert len(docs) > GROUP_DOCS

    calls: list[int] = []

    class Counting:  # the real tokenizer, counting the texts of each call that returns offsets (documents')
        def __call__(self, texts, *args, **kwargs):
            if kwargs.get("return_offsets_mapping"):
                calls.append(len(texts) if isinstance(texts, list) else 1)
            return tok(texts, *args, **kwargs)

    chunker.tokenizer = Counting()
    grouped = chunker.chunk_many(docs)
    assert 0 < max(calls) <= GROUP_DOCS
    whole = chunker.chunk_many(docs, group=len(docs))
    assert max(calls) == len(docs)
    assert grouped == whole
    assert chunker.chunk_many(docs, group=7) == whole  # groups of any size, the last one short
    assert sum(map(len, whole)) > len(docs) and [] in whole  # many chunks; the wordless document has none


def test_a_long_title_is_cut_so_every_window_keeps_its_own_text():
    from workbench.ingest.chunking import chunk_input_text
    from workbench.types import SourceDocument

    tok, chunker = _minilm_chunker(64, 8)
    title = " ".join(["lorem"] * 200)
    text = " ".join(f"filler{i}" for i in range(300))
    (chunks,) = chunker.chunk_many([SourceDocument("long", "long", title, text, "h")])
    assert len({c.text for c in chunks}) == len(chunks) > 1
    for c in chunks:
        n = len(tok(chunk_input_text(c))["input_ids"])
        assert n <= 64, n  # title ("…" included) and text fit the window, so no encoder truncates the text away
        assert c.title.endswith("…") and len(tok(c.title.rstrip("…"), add_special_tokens=False)["input_ids"]) == 16


@pytest.mark.parametrize("template", ["{text}", "passage: {text}"])
def test_no_chunk_is_longer_than_what_the_dense_encoder_feeds_the_model(template):
    """Chunks at the model's own length (MiniLM: 256) of a long-title document and a plain one:
    what DenseEncoder.tokenize feeds the model for a chunk, with the document template (E5's
    "passage: ") and the cut title's "…", is the whole input, untruncated, at most the model's
    length. (The "…" and the template's words were not counted: the last word piece of every full
    window was cut off by the encoder.)"""
    require_models()
    from types import SimpleNamespace

    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.templates import PromptTemplates
    from workbench.index.indexer import chunking_settings
    from workbench.ingest.chunking import Chunker, chunk_input_text
    from workbench.models.cache import resolve_model_path
    from workbench.types import SourceDocument

    encoder = DenseEncoder(resolve_model_path("all-MiniLM-L6-v2"))
    assert encoder.max_length == 256
    # the index settings' fields the indexer's chunker is built from (chunk_tokens at the model's length)
    settings = SimpleNamespace(dense_path=encoder.path, chunk_tokens=256, chunk_overlap=32,
                               templates=PromptTemplates(document=template))
    chunker = Chunker(encoder.tokenizer, chunking_settings(settings))
    title = " ".join(f"term{i}" for i in range(80))  # an 80-word <title>: cut to 64 tokens plus "…"
    text = " ".join(f"word{i}" for i in range(2000))
    docs = [SourceDocument("long", "d.html", title, text, "h"), SourceDocument("plain", "p.txt", "p", text, "h")]
    per_doc = chunker.chunk_many(docs)
    assert per_doc[0][0].title.endswith("…")
    for chunks in per_doc:
        assert len(chunks) > 5
        rendered = [settings.templates.render_document(chunk_input_text(c)) for c in chunks]
        full = encoder.tokenizer(rendered, add_special_tokens=True)["input_ids"]
        fed = encoder.tokenize(rendered)
        for c, whole, ids in zip(chunks, full, fed):
            assert len(whole) <= encoder.max_length, (c.chunk_id, len(whole))
            assert list(ids) == list(whole), c.chunk_id  # nothing cut off: the chunk's last word reaches the model
    # the windows still use the room they have
    assert max(len(x) for x in encoder.tokenizer([settings.templates.render_document(chunk_input_text(c))
                                                   for c in per_doc[1]])["input_ids"]) >= 250


def test_a_decoder_dense_models_eos_and_byte_level_pieces_fit_the_window():
    """A decoder dense model (SmolLM2: byte-level BPE, no special tokens of its own) gets an EOS
    appended by DenseEncoder.tokenize, and a CJK or emoji character split across two byte-level
    tokens re-tokenizes longer than its window: both are counted, no chunk's input exceeds it."""
    from workbench.models.cache import is_installed, resolve_model_path

    if not is_installed("smollm2-135m-instruct"):
        pytest.skip("smollm2-135m-instruct is not installed (`wb models install`)")
    from transformers import AutoTokenizer

    from workbench.encoders.dense import DenseEncoder
    from workbench.encoders.layout import read_layout
    from workbench.ingest.chunking import Chunker, ChunkingSettings, chunk_input_text
    from workbench.types import SourceDocument

    tok = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m-instruct"))
    encoder = object.__new__(DenseEncoder)  # its tokenize() as is, without loading the weights
    encoder._lean_tokenizer, encoder._tokenizer, encoder.is_decoder, encoder.max_length = None, tok, True, 64
    encoder.layout = read_layout(resolve_model_path("smollm2-135m-instruct"))
    chunker = Chunker(tok, ChunkingSettings(64, 8, document_template="{text}", appends_eos=True))
    rng = np.random.default_rng(0)
    alphabet = list("日本語の文章を検索する") + ["😀", "🎉", "é", "ß", "word", "Ünïcödé"]
    docs = [SourceDocument(f"d{i}", f"d{i}.txt", "標題 " * (i % 3),
                           " ".join("".join(rng.choice(alphabet, size=rng.integers(1, 6))) for _ in range(400)), "h")
            for i in range(12)]
    for chunks in chunker.chunk_many(docs):
        assert chunks
        for c in chunks:
            whole = tok(chunk_input_text(c), add_special_tokens=True)["input_ids"] + [tok.eos_token_id]
            assert len(whole) <= 64, (c.chunk_id, len(whole))
            assert encoder.tokenize([chunk_input_text(c)])[0] == whole, c.chunk_id


def test_a_title_only_document_is_one_title_chunk_and_a_wordless_one_none():
    from workbench.ingest.chunking import chunk_input_text
    from workbench.types import SourceDocument

    _, chunker = _minilm_chunker(64, 8)
    titled, wordless = chunker.chunk_many([SourceDocument("t", "c.jsonl", "Xylophone tuning", "", "h"),
                                           SourceDocument("w", "w.txt", "", "\x01\x02\u200b", "h")])
    assert [chunk_input_text(c) for c in titled] == ["Xylophone tuning"] and wordless == []


@pytest.mark.parametrize("value,expected", [(None, ""), ("scifact", "Given a scientific claim"), ("Find code:", "Find code"),
                                            (" scifact ", "Given a scientific claim"),
                                            ("scifact:", "Given a scientific claim"),
                                            ("SciFact", "Given a scientific claim"), ("NONE", "")])
def test_instruction_presets_and_free_text(value, expected):
    from workbench.encoders.templates import resolve_instruction

    assert resolve_instruction(value).startswith(expected)


@pytest.mark.parametrize("value", ["scifcat", "nosuchpreset:", "  qa2  "])
def test_a_single_word_that_is_no_preset_is_refused_naming_the_presets(value):
    from workbench.encoders.templates import resolve_instruction
    from workbench.errors import UsageError

    with pytest.raises(UsageError, match="unknown instruction preset.*scifact, python-docs"):
        resolve_instruction(value)


@pytest.mark.parametrize("value", [":", "  ", " : "])
def test_an_instruction_of_nothing_but_a_colon_is_refused_as_empty(value):
    from workbench.encoders.templates import resolve_instruction
    from workbench.errors import UsageError

    with pytest.raises(UsageError, match="the instruction is empty"):
        resolve_instruction(value)


def test_a_sentence_transformers_config_s_prompts_are_the_templates(tmp_path):
    """e5/nomic-style folders name their query and document prompts in
    config_sentence_transformers.json: served with them (only a name with "e5" in it was)."""
    import json

    from workbench.encoders.templates import PLAIN, templates_for

    folder = tmp_path / "embedder"
    folder.mkdir()
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"search_query": "search_query: ", "search_document": "search_document: ", "clustering": "c: "},
         "default_prompt_name": None}))
    t = templates_for("embedder", "sentence-transformers", str(folder))
    assert t.render_query("vitamin D", "Given a claim") == "search_query: Given a claim: vitamin D"
    assert t.render_document("a text {with braces}") == "search_document: a text {with braces}"
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {}}))
    assert templates_for("embedder", "sentence-transformers", str(folder)) == PLAIN


def test_an_instruction_replaces_the_task_an_st_query_prompt_already_names(tmp_path):
    """A Qwen3-Embedding-style query prompt ("Instruct: TASK\nQuery:") holds a task: without -i the
    query is that prompt + text (as sentence-transformers renders it); -i's instruction takes the
    task's place, one instruction, not two (also after the index settings' round trip)."""
    import json

    from workbench.encoders.templates import PromptTemplates, resolve_instruction, templates_for

    builtin = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
    folder = tmp_path / "qwen3-like"
    folder.mkdir()
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": builtin, "document": ""}, "default_prompt_name": None}))
    t = templates_for("qwen3-like", "sentence-transformers", str(folder))
    stored = PromptTemplates(t.query, t.document, t.instruction_format)  # what the index settings keep
    for templates in (t, stored):
        assert templates.render_query("Vitamin C prevents scurvy") == builtin + "Vitamin C prevents scurvy"
        assert templates.render_query("Vitamin C prevents scurvy", resolve_instruction("scifact")) == (
            "Instruct: Given a scientific claim, retrieve documents that support or refute the claim\n"
            "Query:Vitamin C prevents scurvy")
        assert templates.render_document("a {text}") == "a {text}"
