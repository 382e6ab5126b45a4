"""Loading a user's model folder safely: checks first, clear errors, never remote code."""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attr_compress.compressor.artifacts import read_json
from attr_compress.compressor.data.rows import Example
from attr_compress.compressor.errors import InputError, ModelLoadError
from attr_compress.compressor.models.families import CLASSIFIERS, FAMILIES, check_supported, family_of, position_offset

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
# files every tokenizer may read beside its vocabulary files (``tokenizer.vocab_files_names``)
TOKENIZER_SIDE_FILES = (
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
PATH_KEYS = ("_name_or_path",)  # where the config was read from, not what it computes


def weights_digest(model: Any) -> str:
    """The weights as the model computes with them: every tensor's name, shape, dtype and bytes."""
    hasher = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        hasher.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        hasher.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return hasher.hexdigest()


def tokenizer_files(tokenizer: Any) -> list[Path]:
    """The files in the folder ``tokenizer`` was loaded from that it reads (none for one built in memory)."""
    folder = Path(tokenizer.name_or_path or "")
    if not tokenizer.name_or_path or not folder.is_dir():
        return []
    names = {*tokenizer.vocab_files_names.values(), *TOKENIZER_SIDE_FILES}
    return sorted(folder / name for name in names if (folder / name).is_file())


def save_tokenizer(tokenizer: Any, folder: str | Path) -> None:
    """The tokenizer beside a model we write: the user's files byte for byte (re-saving can change them),
    or ``save_pretrained`` for a tokenizer built in memory."""
    files = tokenizer_files(tokenizer)
    if not files:
        tokenizer.save_pretrained(str(folder))
        return
    for path in files:
        shutil.copyfile(path, Path(folder) / path.name)


def tokenizer_digests(tokenizer: Any) -> dict[str, str]:
    """Each tokenizer file's hash, or of what ``save_pretrained`` writes for one built in memory."""
    files = tokenizer_files(tokenizer)
    if files:
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files}
    with tempfile.TemporaryDirectory(prefix="attr-compress-tokenizer-") as scratch:
        tokenizer.save_pretrained(scratch)
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(Path(scratch).iterdir())}


@dataclass(frozen=True)
class ModelIdentity:
    """The model as it computes, for cache keys: weights, the whole config as loaded (but the path it was read
    from), and the tokenizer's files. Two folders with the same weights but another activation, LayerNorm
    epsilon or vocabulary have different identities."""

    weights: str
    config: dict[str, Any]
    tokenizer: dict[str, str]

    @classmethod
    def of(cls, model: Any, tokenizer: Any) -> ModelIdentity:
        config = {key: value for key, value in model.config.to_dict().items() if key not in PATH_KEYS}
        return cls(weights_digest(model), config, tokenizer_digests(tokenizer))


@dataclass(frozen=True)
class LoadedModel:
    """A classifier ready for scoring, with how it was loaded (for the report)."""

    path: str
    model: PreTrainedModel  # a sequence classifier of one of compressor.architectures.FAMILIES
    tokenizer: PreTrainedTokenizerBase
    weights_file: str
    stored_dtype: str

    @classmethod
    def wrap(cls, model: Any, tokenizer: Any, name: str = "in-memory model") -> LoadedModel:
        """A model and tokenizer already in memory (for the Python API): eval mode, gradients off, fp32."""
        check_supported(type(model).__name__, getattr(model.config, "model_type", None), name)
        check_model_parts(model, tokenizer, name)
        model.float().eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return cls(path=name, model=model, tokenizer=tokenizer, weights_file="(in memory)", stored_dtype="float32")

    @functools.cached_property
    def identity(self) -> ModelIdentity:
        """Computed once: the model is never changed in place (pruning works on copies)."""
        return ModelIdentity.of(self.model, self.tokenizer)

    def cache_identity(self) -> ModelIdentity:
        return self.identity

    @property
    def weights_note(self) -> str:
        if self.weights_file.startswith("model.safetensors"):
            return "safetensors (no code can run on load)"
        if self.weights_file == "(in memory)":
            return "passed in memory"
        return "pickle file loaded with torch.load(weights_only=True): tensors only"

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def label2id(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.model.config.label2id.items()}


FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")


def read_model_config(path: str | Path) -> dict[str, Any]:
    """Validate a model folder without importing torch, so bad input fails in milliseconds."""
    folder = Path(path)
    if not folder.exists():
        raise InputError(f"model folder '{folder}' does not exist; pass the path of a Hugging Face model folder")
    if not folder.is_dir():
        raise InputError(f"'{folder}' is a file, not a model folder; pass the folder that holds config.json")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise InputError(f"'{folder}' has no config.json; pass a Hugging Face model folder (save_pretrained output)")
    config = read_json(config_path, "repair or re-save the model")
    if not isinstance(config, dict):
        raise InputError(f"'{config_path}' must hold a JSON object; repair or re-save the model")
    if config.get("auto_map"):
        raise InputError(
            f"'{config_path}' asks for custom code (auto_map); attr-compress never runs code from a model "
            "folder: use a plain transformers sequence classifier"
        )
    if config.get("quantization_config"):
        raise InputError(
            f"'{config_path}' describes a quantised model (quantization_config); pass the full-precision fine-tuned "
            "model: attr-compress quantises the result itself"
        )
    dtype = config.get("torch_dtype") or config.get("dtype")
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise InputError(
            f"'{config_path}' stores the weights as {dtype}; attr-compress needs floating-point weights "
            f"({', '.join(FLOAT_DTYPES)})"
        )
    architectures = config.get("architectures") or []
    supported = set(architectures) & CLASSIFIERS
    check_supported(next(iter(supported), ", ".join(architectures)), config.get("model_type"), f"'{folder}'")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise InputError(
            f"'{folder}' has no weights ({' or '.join(WEIGHT_FILES[::2])}); save the model with its weights"
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise InputError(
            f"'{folder}' has no tokenizer ({' or '.join(TOKENIZER_FILES)}); save the tokenizer with the model"
        )
    return config


USERS_ATTENTION = None  # transformers' own choice (SDPA where the family has it): the model as users load it


def load_model(path: str | Path, *, attn_implementation: str | None = "eager") -> LoadedModel:
    """Load a classifier in fp32 eval mode; eager attention exposes the probabilities attribution needs,
    ``USERS_ATTENTION`` times the model as plain transformers runs it."""
    import torch
    import transformers
    from attr_compress.compressor.pruning.prune import strip_ffn_padding
    from safetensors import SafetensorError
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = Path(path)
    config = read_model_config(folder)
    classifier = getattr(transformers, FAMILIES[config["model_type"]].classifier)
    weights_file = next(name for name in WEIGHT_FILES if (folder / name).is_file())
    check_classifier_shape(folder / weights_file, config)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = classifier.from_pretrained(
            folder,
            dtype=torch.float32,
            attn_implementation=attn_implementation,
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=weights_file.startswith("model.safetensors") or None,
            weights_only=True,  # pickle files: tensors only, never arbitrary objects
            output_loading_info=True,
        )
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        lines = [line.strip() for line in str(err).strip().splitlines()] or [type(err).__name__]
        first_line = next((line for line in lines if line.startswith("size mismatch")), lines[0])
        raise ModelLoadError(folder, first_line) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = [key for key in info["missing_keys"] if not key.endswith("position_ids")]
    if missing or info["mismatched_keys"]:
        problem = f"missing {missing[:3]}" if missing else f"wrong shapes {[k[0] for k in info['mismatched_keys'][:3]]}"
        raise InputError(f"weights in '{folder}' do not match its config ({problem}); re-save the model")
    strip_ffn_padding(model).eval()  # a pruned folder: give each FFN layer its real width back
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    logging.getLogger("transformers.tokenization_utils_base").setLevel(logging.ERROR)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError) as err:
        raise InputError(
            f"cannot load the tokenizer in '{folder}' ({err}); save the tokenizer with the model"
        ) from None
    check_model_parts(model, tokenizer, f"'{folder / weights_file}'")
    return LoadedModel(
        path=str(folder),
        model=model,
        tokenizer=tokenizer,
        weights_file=weights_file,
        stored_dtype=str(config.get("torch_dtype") or config.get("dtype") or "float32"),
    )


def check_classifier_shape(weights: Path, config: dict[str, Any]) -> None:
    """The classifier's outputs against the labels config.json names (read from the safetensors header)."""
    from safetensors import SafetensorError, safe_open

    if weights.suffix != ".safetensors":
        return
    labels = len(config["id2label"]) if config.get("id2label") else config.get("num_labels", 2)
    logits_weight = FAMILIES[config["model_type"]].logits_weight
    try:
        with safe_open(weights, framework="pt") as handle:
            if logits_weight not in set(handle.keys()):
                return
            outputs = handle.get_slice(logits_weight).get_shape()[0]
    except (OSError, SafetensorError):
        return  # unreadable: the loader says so with its own message
    if outputs != labels:
        raise InputError(
            f"the classifier in '{weights}' has {outputs} outputs but config.json names {labels} labels "
            "(id2label/num_labels); make them agree and re-save the model"
        )


def check_model_parts(model: Any, tokenizer: Any, where: str) -> None:
    """The parts of a model folder must agree before any work: every token id has an embedding row, the
    tokenizer does not promise inputs longer than the position embeddings, and every weight is finite."""
    import torch

    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise InputError(
            f"the tokenizer has {len(tokenizer)} tokens but the embedding table in {where} has {rows} rows; "
            "save the model with the tokenizer it was trained with"
        )
    positions, claimed = max_positions(model.config), tokenizer.model_max_length
    if claimed and positions < claimed < 10**6:
        raise InputError(
            f"the tokenizer allows {claimed} tokens but {where} has position embeddings for {positions}; set "
            f"model_max_length to at most {positions} in tokenizer_config.json"
        )
    for name, parameter in model.named_parameters():
        if not torch.isfinite(parameter).all():
            raise InputError(
                f"the weights of {where} contain NaN or infinity ({name}); the file is broken: re-export or "
                "re-train the model"
            )


def max_positions(config: Any) -> int:
    """Tokens the position embeddings cover (RoBERTa's first rows belong to the padding index)."""
    return int(config.max_position_embeddings) - position_offset(config)


def max_length(loaded: LoadedModel) -> int:
    """The longest input the model takes: position embeddings bound it, tokenizers often say 'very large'."""
    limit = max_positions(loaded.config)
    tokenizer_limit = loaded.tokenizer.model_max_length
    return min(limit, tokenizer_limit) if tokenizer_limit and tokenizer_limit < 10**6 else limit


def split_texts(examples: Sequence[Example]) -> tuple[list[str], list[str] | None]:
    """Texts and, for pair tasks, second texts, as the tokenizer takes them."""
    texts = [e.text for e in examples]
    if not any(e.text_pair is not None for e in examples):
        return texts, None
    return texts, [e.text_pair or "" for e in examples]


def encode(loaded: LoadedModel, examples: Sequence[Example], *, return_tensors: str = "pt") -> dict[str, Any]:
    """Tokenise a batch, padded to its longest member and truncated to the model's limit; token_type_ids only
    for families that take them (a DistilBERT saved with a BERT tokenizer gets them from it)."""
    texts, pairs = split_texts(examples)
    encoded = loaded.tokenizer(
        texts,
        pairs,
        padding=True,
        truncation=True,
        max_length=max_length(loaded),
        return_tensors=return_tensors,
    )
    if not family_of(loaded.model).token_types:
        encoded.pop("token_type_ids", None)
    return encoded.to(loaded.model.device) if return_tensors == "pt" else encoded


def token_lengths(loaded: LoadedModel, examples: Sequence[Example]) -> list[int]:
    """Untruncated token counts: for length bucketing and for counting inputs that get truncated."""
    texts, pairs = split_texts(examples)
    return [len(ids) for ids in loaded.tokenizer(texts, pairs, truncation=False)["input_ids"]]


def count_truncated(loaded: LoadedModel, examples: Sequence[Example]) -> int:
    """How many inputs exceed the model's limit and so lose tokens (reported, never silent)."""
    return sum(length > max_length(loaded) for length in token_lengths(loaded, examples))


def check_device(device: str) -> None:
    """A missing GPU is a user error found before any work, not a crash in the middle."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device} asked for a GPU but none is available; use --device cpu")


@contextmanager
def on_device(loaded: LoadedModel, device: str) -> Iterator[None]:
    """Run a block (attribution) with the model on ``device``, then move it back to the CPU, where
    pruning, export and latency work."""
    with modules_on(device, loaded.model):
        yield


@contextmanager
def modules_on(device: str, *modules: Any) -> Iterator[None]:
    """Inside: the modules on ``device`` (scoring moves the model; the refit and the distillation the original
    and the pruned model); afterwards back on the CPU, where they are pruned, exported and served. Inputs follow
    the model in ``encode``."""
    if device == "cpu":
        yield
        return
    import torch

    check_device(device)
    try:
        for module in modules:
            module.to(torch.device(device))
    except RuntimeError as err:
        raise InputError(f"cannot use --device {device} ({str(err).splitlines()[0]}); use cpu or cuda:N") from None
    try:
        yield
    finally:
        for module in modules:
            module.to(torch.device("cpu"))
