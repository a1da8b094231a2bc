"""A local sequence-classification model as the scorer of any score metric (``stageguard[models]``).

Give it the path of a directory holding an exported model and plug it in per metric::

    from stageguard import Protect
    from stageguard.scorers.local_model import LocalModelScorer

    injection = LocalModelScorer("/models/prompt-injection-onnx", positive_label="INJECTION")
    protect = Protect(scorers={"prompt_injection": injection})

The ONNX backend (the default) needs ``onnxruntime`` and ``tokenizers`` and this layout::

    model.onnx       the exported graph: inputs input_ids, attention_mask (token_type_ids if the model
                     has them), output logits of shape [batch, labels]
    tokenizer.json   the Hugging Face fast tokenizer file
    config.json      optional: id2label (to name the positive label), problem_type, pad_token_id

``optimum-cli export onnx --task text-classification --model NAME DIR`` writes exactly that (see
docs/local_models.md). With ``backend="transformers"`` the scorer loads a transformers model directory
(``save_pretrained`` output) with ``transformers`` and ``torch`` instead.

The value is the probability of the positive label: softmax over the logits (sigmoid for a model with
one logit or a multi-label model). A text longer than ``max_length`` tokens is cut into overlapping
windows and the value is the maximum over them, so a short attack deep in a long text is not diluted.
The model loads on first use (or on :meth:`LocalModelScorer.load`), once, shared by every thread and by
the clones :meth:`~stageguard.scorers.base.TextScorer.for_field` makes.
"""

from __future__ import annotations

import importlib
import inspect
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import StageguardError
from .base import ScoreResult, TextScorer

Backend = Literal["auto", "onnx", "transformers"]
Activation = Literal["auto", "softmax", "sigmoid"]
LabelRef = str | int
Logits = Callable[[dict[str, np.ndarray[Any, Any]]], np.ndarray[Any, Any]]

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# With no positive_label, a binary model's label 1 is positive unless its name says it is the benign one.
_NEGATIVE_NAMES = {"safe", "benign", "clean", "neutral", "normal", "ok", "legit", "legitimate", "harmless"}
_NEGATIVE_PREFIXES = ("non", "not", "no_", "no-", "no ")
_MISSING_ONNX = (
    "LocalModelScorer needs onnxruntime and tokenizers, which are not installed: "
    "pip install 'stageguard[models]'"
)
_MISSING_TRANSFORMERS = (
    "LocalModelScorer(backend='transformers') needs transformers and torch, which are not installed: "
    "pip install transformers torch (or export the model to ONNX and use pip install 'stageguard[models]')"
)
_GUIDE = "see docs/local_models.md"
_INT_TYPES: dict[str, type[np.integer[Any]]] = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


class LocalModelError(StageguardError, ValueError):
    """A local model directory is incomplete, or does not fit the scorer's settings."""


def _require_onnx() -> tuple[Any, Any]:
    """``onnxruntime`` and ``tokenizers``, imported on first use, with an error naming the extra."""
    try:
        ort = importlib.import_module("onnxruntime")
        tokenizers = importlib.import_module("tokenizers")
    except ImportError as exc:
        raise ImportError(_MISSING_ONNX) from exc
    return ort, tokenizers


def _require_transformers() -> tuple[Any, Any]:
    try:
        torch = importlib.import_module("torch")
        transformers = importlib.import_module("transformers")
    except ImportError as exc:
        raise ImportError(_MISSING_TRANSFORMERS) from exc
    return torch, transformers


@dataclass(frozen=True)
class _Runtime:
    """A loaded model: its tokenizer (configured for windows), a logits function and how to read it."""

    tokenizer: Any  # tokenizers.Tokenizer, truncating into overlapping windows
    logits: Logits
    inputs: dict[str, type[np.integer[Any]]]  # model input -> integer dtype
    pad_id: int
    fixed_batch: int | None  # the graph takes exactly this many rows
    fixed_length: int | None  # the graph takes exactly this many tokens
    labels: tuple[str, ...]
    positive: tuple[int, ...]
    sigmoid: bool


@dataclass(frozen=True)
class _Config:
    labels: tuple[str, ...] | None
    multi_label: bool
    pad_id: int | None
    max_positions: int | None


class _Lazy:
    """The loaded runtime, shared by a scorer and its field clones; loaded once under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runtime: _Runtime | None = None


class LocalModelScorer(TextScorer):
    """The probability of a positive label from a local sequence-classification model.

    ``path``: a model directory (see the module docstring), or an ``.onnx`` file with its tokenizer
    beside it. ``positive_label``: the label (name, as in ``config.json``'s ``id2label``, or index)
    whose probability is the value; a list of labels scores the probability of any of them. By default
    a model with one logit uses it, and a two-label model uses label 1 (or label 0 when label 1 is named
    like the benign class, e.g. ``SAFE``); a model with more labels needs ``positive_label``.

    ``max_length``: tokens per window, special tokens included (at most the model's positions).
    ``stride``: tokens each window repeats from the one before (default ``max_length // 8``, at most 64).
    ``batch_size``: windows per model call. ``max_windows``: refuse (raise, so the stage's fail policy
    applies) a text needing more windows than this, to bound the work per invoke; ``None``: no limit.
    ``activation``: ``"auto"`` picks sigmoid for one logit or ``problem_type: multi_label_classification``,
    softmax otherwise. ``threads``: onnxruntime intra-op threads (default: its own choice).
    """

    name = "local_model"
    mode = "thread"  # model inference blocks: run in a worker so the invoke's time-out can stop waiting

    def __init__(
        self,
        path: str | Path,
        field: Literal["input", "output"] = "input",
        *,
        positive_label: LabelRef | Sequence[LabelRef] | None = None,
        max_length: int = 512,
        stride: int | None = None,
        batch_size: int = 8,
        max_windows: int | None = None,
        backend: Backend = "auto",
        activation: Activation = "auto",
        model_file: str = "model.onnx",
        threads: int | None = None,
    ) -> None:
        super().__init__(field)
        if max_length < 4:
            raise ValueError(f"max_length must be at least 4 tokens, got {max_length}")
        if stride is not None and not 0 <= stride < max_length // 2:
            raise ValueError(f"stride must be in [0, max_length // 2 = {max_length // 2}), got {stride}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_windows is not None and max_windows < 1:
            raise ValueError(f"max_windows must be at least 1, got {max_windows}")
        if activation not in ("auto", "softmax", "sigmoid"):
            raise ValueError(f"activation must be 'auto', 'softmax' or 'sigmoid', got {activation!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        target = Path(path).expanduser()
        if target.suffix == ".onnx" and not target.is_dir():
            target, model_file = target.parent, target.name
        self.path = target
        self.model_file = model_file
        self.backend: Literal["onnx", "transformers"] = self._pick_backend(backend)
        self.positive_label = positive_label
        self.max_length = max_length
        self.stride = stride
        self.batch_size = batch_size
        self.max_windows = max_windows
        self.activation = activation
        self.threads = threads
        self._config = self._read_config()
        if self._config.labels is not None:  # fail at set-up, not at the first invoke
            self._resolve_positive(self._config.labels)
        self._lazy = _Lazy()

    # -- set-up checks (cheap: no model is loaded)

    def _pick_backend(self, backend: Backend) -> Literal["onnx", "transformers"]:
        if not self.path.is_dir():
            raise LocalModelError(f"model directory {str(self.path)!r} does not exist ({_GUIDE})")
        onnx_file = self.path / self.model_file
        if backend == "auto":
            if onnx_file.is_file():
                backend = "onnx"
            elif any((self.path / name).is_file() for name in _WEIGHT_FILES):
                backend = "transformers"
            else:
                raise LocalModelError(
                    f"no model in {str(self.path)!r}: expected {self.model_file} (an ONNX export) with "
                    f"tokenizer.json beside it, or a transformers model directory (config.json and "
                    f"model.safetensors) for backend='transformers' ({_GUIDE})"
                )
        if backend == "onnx":
            if not onnx_file.is_file():
                raise LocalModelError(
                    f"{self.model_file} not found in {str(self.path)!r}: the ONNX backend expects the "
                    f"exported sequence-classification graph there ({_GUIDE})"
                )
            if not (self.path / "tokenizer.json").is_file():
                raise LocalModelError(
                    f"tokenizer.json not found in {str(self.path)!r}: the ONNX backend expects the model's "
                    f"Hugging Face fast tokenizer file beside {self.model_file} (optimum-cli export onnx "
                    f"writes it; so does tokenizer.save_pretrained(dir)) ({_GUIDE})"
                )
            return "onnx"
        if backend == "transformers":
            if not (self.path / "config.json").is_file():
                raise LocalModelError(
                    f"config.json not found in {str(self.path)!r}: backend='transformers' expects a "
                    f"directory written by save_pretrained ({_GUIDE})"
                )
            return "transformers"
        raise ValueError(f"backend must be 'auto', 'onnx' or 'transformers', got {backend!r}")

    def _read_config(self) -> _Config:
        file = self.path / "config.json"
        if not file.is_file():
            return _Config(labels=None, multi_label=False, pad_id=None, max_positions=None)
        try:
            config = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LocalModelError(f"cannot read {file}: {exc}") from exc
        if not isinstance(config, dict):
            raise LocalModelError(f"{file} must hold a JSON object")
        labels: tuple[str, ...] | None = None
        id2label = config.get("id2label")
        if isinstance(id2label, dict) and id2label:
            try:
                by_index = {int(k): str(v) for k, v in id2label.items()}
            except ValueError as exc:
                raise LocalModelError(f"{file}: id2label keys must be label indices, got {id2label}") from exc
            if sorted(by_index) != list(range(len(by_index))):
                raise LocalModelError(f"{file}: id2label must number its labels 0..n-1, got {id2label}")
            labels = tuple(by_index[i] for i in range(len(by_index)))
        elif isinstance(config.get("num_labels"), int):
            labels = tuple(f"LABEL_{i}" for i in range(config["num_labels"]))
        pad_id = config.get("pad_token_id")
        positions = config.get("max_position_embeddings")
        return _Config(
            labels=labels,
            multi_label=config.get("problem_type") == "multi_label_classification",
            pad_id=pad_id if isinstance(pad_id, int) else None,
            max_positions=positions if isinstance(positions, int) and positions > 0 else None,
        )

    def _resolve_positive(self, labels: Sequence[str]) -> tuple[int, ...]:
        """Indices of the positive label(s) among ``labels``, or an error listing the labels."""
        listed = ", ".join(f"{i} {name!r}" for i, name in enumerate(labels))
        wanted = self.positive_label
        if wanted is None:
            if len(labels) == 1:
                return (0,)
            if len(labels) == 2:
                return (0,) if _looks_negative(labels[1]) and not _looks_negative(labels[0]) else (1,)
            raise LocalModelError(
                f"the model at {str(self.path)!r} has {len(labels)} labels ({listed}): "
                f"pass positive_label= one of them (or a list of them)"
            )
        refs: Sequence[LabelRef] = [wanted] if isinstance(wanted, (str, int)) else wanted
        if not refs:
            raise LocalModelError("positive_label must name at least one label")
        indices: list[int] = []
        for ref in refs:
            index = _find_label(ref, labels)
            if index is None:
                raise LocalModelError(
                    f"positive_label {ref!r} is not a label of the model at {str(self.path)!r}; "
                    f"its labels are: {listed}"
                )
            if index not in indices:
                indices.append(index)
        return tuple(indices)

    def for_field(self, field: Literal["input", "output"]) -> LocalModelScorer:
        """The same model reading another field (the loaded model is shared)."""
        clone = super().for_field(field)
        assert isinstance(clone, LocalModelScorer)
        return clone

    # -- loading (once, on first use)

    def load(self) -> LocalModelScorer:
        """Load the model now (e.g. at start-up, so the first invoke does not pay for it)."""
        self._runtime()
        return self

    def _runtime(self) -> _Runtime:
        runtime = self._lazy.runtime
        if runtime is not None:
            return runtime
        with self._lazy.lock:
            if self._lazy.runtime is None:
                load = self._load_onnx if self.backend == "onnx" else self._load_transformers
                self._lazy.runtime = load()
            return self._lazy.runtime

    def _load_onnx(self) -> _Runtime:
        ort, tokenizers = _require_onnx()
        model_path = self.path / self.model_file
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise LocalModelError(f"onnxruntime cannot load {model_path}: {exc}") from exc
        inputs: dict[str, type[np.integer[Any]]] = {}
        fixed_batch: int | None = None
        fixed_length: int | None = None
        for arg in session.get_inputs():
            if arg.name not in MODEL_INPUTS:
                raise LocalModelError(
                    f"{model_path} has an input {arg.name!r}; a sequence-classification export takes "
                    f"{', '.join(MODEL_INPUTS)} (the last two optional)"
                )
            dtype = _INT_TYPES.get(arg.type)
            if dtype is None:
                raise LocalModelError(
                    f"{model_path}: input {arg.name!r} is {arg.type}, expected int64 or int32"
                )
            inputs[arg.name] = dtype
            shape = list(arg.shape or [])
            if len(shape) == 2 and isinstance(shape[0], int) and shape[0] > 0:
                fixed_batch = shape[0]
            if len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0:
                fixed_length = shape[1]
        if "input_ids" not in inputs:
            raise LocalModelError(f"{model_path} has no input named 'input_ids'")
        outputs = session.get_outputs()
        output = next((o for o in outputs if o.name == "logits"), outputs[0])
        out_shape = list(output.shape or [])
        width = out_shape[-1] if len(out_shape) == 2 and isinstance(out_shape[-1], int) else None

        def logits(feeds: dict[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
            result: np.ndarray[Any, Any] = session.run([output.name], feeds)[0]
            return result

        tokenizer = tokenizers.Tokenizer.from_file(str(self.path / "tokenizer.json"))
        pad_id = (tokenizer.padding or {}).get("pad_id")
        if pad_id is None:
            pad_id = self._config.pad_id
        if pad_id is None:
            pad_id = next((i for t in ("[PAD]", "<pad>") if (i := tokenizer.token_to_id(t)) is not None), 0)
        return self._finish(tokenizer, logits, inputs, int(pad_id), fixed_batch, fixed_length, width)

    def _load_transformers(self) -> _Runtime:
        torch, transformers = _require_transformers()
        try:
            hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                str(self.path), local_files_only=True
            )
        except Exception as exc:
            raise LocalModelError(f"transformers cannot load the model at {str(self.path)!r}: {exc}") from exc
        tokenizer = getattr(hf_tokenizer, "backend_tokenizer", None)
        if tokenizer is None:
            raise LocalModelError(
                f"the tokenizer at {str(self.path)!r} has no fast (tokenizers) backend, which the windowing "
                f"needs: save a fast tokenizer (tokenizer.json) with the model"
            )
        model.eval()
        accepted = inspect.signature(model.forward).parameters
        inputs: dict[str, type[np.integer[Any]]] = {n: np.int64 for n in MODEL_INPUTS if n in accepted}

        def logits(feeds: dict[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
            tensors = {name: torch.from_numpy(array) for name, array in feeds.items()}
            with torch.inference_mode():
                result: np.ndarray[Any, Any] = model(**tensors).logits.float().numpy()
            return result

        pad_id = hf_tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self._config.pad_id if self._config.pad_id is not None else 0
        width = int(model.config.num_labels)
        return self._finish(tokenizer, logits, inputs, int(pad_id), None, None, width)

    def _finish(
        self,
        tokenizer: Any,
        logits: Logits,
        inputs: dict[str, type[np.integer[Any]]],
        pad_id: int,
        fixed_batch: int | None,
        fixed_length: int | None,
        width: int | None,
    ) -> _Runtime:
        """Set the tokenizer up for windows and settle the labels (probing the model if it hides them)."""
        max_length = self.max_length
        if self._config.max_positions is not None:
            max_length = min(max_length, self._config.max_positions)
        if fixed_length is not None:
            max_length = min(max_length, fixed_length)
        post = tokenizer.post_processor
        special = post.num_special_tokens_to_add(False) if post is not None else 0
        room = max_length - special
        if room < 2:
            raise LocalModelError(
                f"max_length {max_length} leaves no room for text after {special} special tokens"
            )
        stride = min(64, max_length // 8) if self.stride is None else self.stride
        if stride >= room:
            raise LocalModelError(f"stride {stride} must be below the {room} text tokens of a window")
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length, stride=stride, strategy="longest_first", direction="right")
        runtime = _Runtime(
            tokenizer=tokenizer,
            logits=logits,
            inputs=inputs,
            pad_id=pad_id,
            fixed_batch=fixed_batch,
            fixed_length=fixed_length,
            labels=(),
            positive=(),
            sigmoid=False,
        )
        if width is None:  # the graph's label dimension is dynamic: ask it
            width = int(self._run(runtime, [tokenizer.encode("probe")]).shape[-1])
        labels = self._config.labels
        if labels is None:
            labels = tuple(f"LABEL_{i}" for i in range(width))
        elif len(labels) != width:
            raise LocalModelError(
                f"config.json in {str(self.path)!r} names {len(labels)} labels but the model outputs "
                f"{width} logits"
            )
        sigmoid = self.activation == "sigmoid" or (
            self.activation == "auto" and (width == 1 or self._config.multi_label)
        )
        return _Runtime(
            tokenizer=tokenizer,
            logits=logits,
            inputs=inputs,
            pad_id=pad_id,
            fixed_batch=fixed_batch,
            fixed_length=fixed_length,
            labels=labels,
            positive=self._resolve_positive(labels),
            sigmoid=sigmoid,
        )

    # -- scoring

    def _run(self, runtime: _Runtime, windows: Sequence[Any]) -> np.ndarray[Any, Any]:
        """Logits [len(windows), labels] for tokenized windows, in padded batches."""
        step = runtime.fixed_batch or self.batch_size
        rows: list[np.ndarray[Any, Any]] = []
        for start in range(0, len(windows), step):
            chunk = windows[start : start + step]
            length = runtime.fixed_length or max(len(w.ids) for w in chunk)
            count = runtime.fixed_batch or len(chunk)
            ids = np.full((count, length), runtime.pad_id, dtype=np.int64)
            mask = np.zeros((count, length), dtype=np.int64)
            types = np.zeros((count, length), dtype=np.int64)
            for row, window in enumerate(chunk):
                n = len(window.ids)
                ids[row, :n] = window.ids
                mask[row, :n] = window.attention_mask
                types[row, :n] = window.type_ids
            arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            feeds = {name: arrays[name].astype(dtype, copy=False) for name, dtype in runtime.inputs.items()}
            out = np.asarray(runtime.logits(feeds), dtype=np.float64)
            rows.append(out.reshape(count, -1)[: len(chunk)])
        return np.concatenate(rows)

    def score_text(self, text: str) -> ScoreResult:
        if not text.strip():
            return ScoreResult(value=0.0, explanation="empty text")
        runtime = self._runtime()
        first = runtime.tokenizer.encode(text)
        windows = [first, *first.overflowing]
        if self.max_windows is not None and len(windows) > self.max_windows:
            raise LocalModelError(
                f"the text needs {len(windows)} windows of {self.max_length} tokens, more than "
                f"max_windows={self.max_windows}"
            )
        logits = self._run(runtime, windows)
        if runtime.sigmoid:
            probs = 0.5 * (1.0 + np.tanh(0.5 * logits))
            values = probs[:, list(runtime.positive)].max(axis=1)
        else:
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = shifted / shifted.sum(axis=1, keepdims=True)
            values = np.minimum(probs[:, list(runtime.positive)].sum(axis=1), 1.0)
        best = int(np.argmax(values))
        value = float(values[best])
        label = "|".join(runtime.labels[i] for i in runtime.positive)
        explanation = f"{label} p={value:.3f}"
        if len(windows) > 1:
            explanation += f" (strongest of {len(windows)} windows, chars {_char_range(windows[best])})"
        return ScoreResult(value=round(value, 6), explanation=explanation)


def _looks_negative(label: str) -> bool:
    name = label.strip().lower()
    return name in _NEGATIVE_NAMES or name.startswith(_NEGATIVE_PREFIXES)


def _find_label(ref: LabelRef, labels: Sequence[str]) -> int | None:
    if isinstance(ref, bool):
        return None
    if isinstance(ref, int):
        return ref if 0 <= ref < len(labels) else None
    if ref in labels:
        return labels.index(ref)
    folded = [name.casefold() for name in labels]
    if ref.casefold() in folded:
        return folded.index(ref.casefold())
    prefix, _, digits = ref.partition("_")
    if prefix.upper() == "LABEL" and digits.isdigit() and int(digits) < len(labels):
        return int(digits)
    return None


def _char_range(window: Any) -> str:
    spans = [o for o, special in zip(window.offsets, window.special_tokens_mask, strict=True) if not special]
    return f"{spans[0][0]}-{spans[-1][1]}" if spans else "?"
