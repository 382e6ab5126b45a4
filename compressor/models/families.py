"""Where each supported model family keeps the parts the stages touch: architecture knowledge as data.

One ``Family`` per architecture names, as dotted module paths, the encoder layers and, inside a layer, the
attention projections, the module whose output is the attention probabilities (eager attention), the FFN
layers and the two LayerNorms; the config key of the FFN width; how a layer takes the attention mask; where
position ids start; and how the classifier reads the last hidden states. Attribution, scoring, pruning,
recovery, export and the trees read these instead of naming BERT's modules, so adding a family is one entry
here plus its tests (the idea of TextPruner's model-structure tables).

All families are post-LayerNorm encoders: layer output = LN(h + FFN(LN(x + Attention(x)))), which is what
pruning (silent heads and neurons) and the least-squares recovery rely on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from attr_compress.compressor.errors import InputError
from torch import nn


def _pooled_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """BERT: tanh pooler over [CLS], dropout, linear classifier."""
    return model.classifier(model.dropout(model.bert.pooler(hidden)))


def _sequence_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """RoBERTa, XLM-R, ELECTRA: the classification head takes the whole sequence and reads its first token."""
    return model.classifier(hidden)


def _distilbert_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """DistilBERT: linear + ReLU over the first token, dropout, linear classifier."""
    return model.classifier(model.dropout(torch.relu(model.pre_classifier(hidden[:, 0]))))


@dataclass(frozen=True)
class Block:
    """An attention or FFN block as the layer calls it, so an emptied one (no head or no FFN neuron left) can be
    replaced in the exported graph by what it still computes: its output bias on the residual stream."""

    module: str  # the module the layer calls for the block (replaced)
    residual: int | str  # the call's argument that carries the residual stream: position or keyword
    bias: str  # the linear layer whose bias is all the emptied block adds
    norm: str | None  # the LayerNorm the replaced module applies itself (None: the layer applies it afterwards)
    returns_tuple: bool  # the layer reads the block's output as a tuple's first item


@dataclass(frozen=True)
class Family:
    """One architecture: module paths from the classifier (``embeddings``, ``layers``) or from one encoder
    layer (the rest), and the few behaviours that differ between families."""

    name: str
    model_type: str
    classifier: str  # the transformers class of the sequence classifier
    embeddings: str
    layers: str
    head: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # logits from the last layer's hidden states
    logits_weight: str = "classifier.weight"  # the weight whose rows are the labels, as a state-dict key
    attention: str = "attention"
    query: str = "attention.self.query"
    key: str = "attention.self.key"
    value: str = "attention.self.value"
    heads: str = "attention.self.num_attention_heads"  # attribute: the layer's head count
    probabilities: str = "attention.self.dropout"  # its output is the attention probabilities (eager path)
    attention_output: str = "attention.output.dense"
    attention_norm: str = "attention.output.LayerNorm"
    ffn_input: str = "intermediate.dense"
    ffn_activation: str = "intermediate"  # its output is the FFN neurons' activations
    ffn_output: str = "output.dense"
    output_norm: str = "output.LayerNorm"
    ffn_width: str = "intermediate_size"  # config key
    padding_mask: bool = False  # layers take the [batch, tokens] 1/0 mask, not the additive [batch, 1, 1, tokens]
    token_types: bool = True  # the embeddings take token_type_ids
    positions_after_padding: bool = False  # position ids start at pad_token_id + 1 (RoBERTa)
    embedding_projection: str | None = None  # ELECTRA: a linear map when embeddings are narrower than layers
    traced_attention: str = "eager"  # the attention implementation whose ONNX graph onnxruntime's fusion matches
    attention_block: Block = Block("attention", 0, "attention.output.dense", "attention.output.LayerNorm", True)
    ffn_block: Block = Block("output", 1, "output.dense", "output.LayerNorm", False)  # output(intermediate, residual)


BERT = Family(
    name="BERT",
    model_type="bert",
    classifier="BertForSequenceClassification",
    embeddings="bert.embeddings",
    layers="bert.encoder.layer",
    head=_pooled_head,
)
ROBERTA = replace(
    BERT,
    name="RoBERTa",
    model_type="roberta",
    classifier="RobertaForSequenceClassification",
    embeddings="roberta.embeddings",
    layers="roberta.encoder.layer",
    head=_sequence_head,
    logits_weight="classifier.out_proj.weight",
    positions_after_padding=True,
)
XLM_ROBERTA = replace(
    ROBERTA, name="XLM-RoBERTa", model_type="xlm-roberta", classifier="XLMRobertaForSequenceClassification"
)
ELECTRA = replace(
    BERT,
    name="ELECTRA",
    model_type="electra",
    classifier="ElectraForSequenceClassification",
    embeddings="electra.embeddings",
    layers="electra.encoder.layer",
    head=_sequence_head,
    logits_weight="classifier.out_proj.weight",
    embedding_projection="electra.embeddings_project",
)
DISTILBERT = Family(
    name="DistilBERT",
    model_type="distilbert",
    classifier="DistilBertForSequenceClassification",
    embeddings="distilbert.embeddings",
    layers="distilbert.transformer.layer",
    head=_distilbert_head,
    query="attention.q_lin",
    key="attention.k_lin",
    value="attention.v_lin",
    heads="attention.n_heads",
    probabilities="attention.dropout",
    attention_output="attention.out_lin",
    attention_norm="sa_layer_norm",
    ffn_input="ffn.lin1",
    ffn_activation="ffn.activation",
    ffn_output="ffn.lin2",
    output_norm="output_layer_norm",
    ffn_width="hidden_dim",
    padding_mask=True,
    token_types=False,
    traced_attention="sdpa",  # the eager graph's masked_fill/scaled-query pattern is not fused (onnxruntime 1.32)
    attention_block=Block("attention", "query", "attention.out_lin", None, True),
    ffn_block=Block("ffn", 0, "ffn.lin2", None, False),
)
FAMILIES = {family.model_type: family for family in (BERT, ROBERTA, XLM_ROBERTA, ELECTRA, DISTILBERT)}
CLASSIFIERS = {family.classifier for family in FAMILIES.values()}


def supported_families() -> str:
    """For messages: the families by name."""
    return f"{', '.join(f.name for f in FAMILIES.values())} sequence classifiers (*ForSequenceClassification)"


def check_supported(architecture: str, model_type: str | None, where: str) -> Family:
    """The family of a classifier whose modules the stages know; anything else is refused with one line."""
    family = FAMILIES.get(model_type or "")
    if family is not None and architecture != family.classifier and architecture in CLASSIFIERS:
        raise InputError(
            f"{where} holds {architecture} but its model_type is {model_type!r}; repair config.json or re-save it"
        )
    if family is None or architecture != family.classifier:
        found = architecture or model_type or "an unknown architecture"
        raise InputError(f"{where} holds {found}, which is not supported; supported: {supported_families()}")
    return family


def family_of(model: nn.Module | Any) -> Family:
    """The family of a model or of its config (the class was checked on loading: ``check_supported``)."""
    model_type = getattr(getattr(model, "config", model), "model_type", None)
    if model_type not in FAMILIES:
        raise InputError(f"model type {model_type!r} is not supported; supported: {supported_families()}")
    return FAMILIES[model_type]


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    return model.get_submodule(family_of(model).layers)


def set_encoder_layers(model: nn.Module, layers: nn.ModuleList) -> None:
    set_part(model, family_of(model).layers, layers)


def part(layer: nn.Module, path: str) -> nn.Module:
    """A module inside one encoder layer, by the family's path."""
    return layer.get_submodule(path)


def set_part(root: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at ``path`` inside ``root`` (a layer, or the whole model)."""
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def heads_of(layer: nn.Module, family: Family) -> int:
    owner, _, name = family.heads.rpartition(".")
    return int(getattr(layer.get_submodule(owner), name))


def ffn_width(config: Any) -> int:
    """The FFN width from a config object (``intermediate_size``; DistilBERT's ``hidden_dim``)."""
    return int(getattr(config, family_of(config).ffn_width))


def set_ffn_width(config: Any, width: int) -> None:
    setattr(config, family_of(config).ffn_width, width)


def position_offset(config: Any) -> int:
    """How many position embeddings come before the first token's (RoBERTa: pad_token_id + 1)."""
    return int(config.pad_token_id or 0) + 1 if family_of(config).positions_after_padding else 0


def embed(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The first encoder layer's input: the embeddings (and ELECTRA's projection to the layers' width)."""
    family = family_of(model)
    arguments = {"input_ids": inputs["input_ids"]}
    if family.token_types and inputs.get("token_type_ids") is not None:
        arguments["token_type_ids"] = inputs["token_type_ids"]
    hidden = model.get_submodule(family.embeddings)(**arguments)
    if family.embedding_projection and _has_module(model, family.embedding_projection):
        hidden = model.get_submodule(family.embedding_projection)(hidden)
    return hidden


def _has_module(root: nn.Module, path: str) -> bool:
    try:
        root.get_submodule(path)
    except AttributeError:
        return False
    return True


def layer_mask(model: nn.Module, attention_mask: torch.Tensor) -> torch.Tensor:
    """The attention mask in the form one encoder layer takes it (eager attention)."""
    if family_of(model).padding_mask:
        return attention_mask
    return model.get_extended_attention_mask(attention_mask, attention_mask.shape)


def run_layer(
    layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor, head_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """One encoder layer's output; every family's layer takes (hidden, mask, head_mask) in this order."""
    return layer(hidden, mask, head_mask)[0]


def classify(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Logits from the last layer's hidden states, through the family's classification head."""
    return family_of(model).head(model, hidden)


def with_attention(model: nn.Module, implementation: str) -> nn.Module:
    """``model`` itself if its layers already use attention ``implementation``, else a copy with the same weights
    (pruned heads, FFN widths and dropped layers included) whose layers use it."""
    if model.config._attn_implementation == implementation:
        return model
    config = copy.deepcopy(model.config)
    config._attn_implementation = implementation
    twin = type(model)(config).eval()  # builds the pruned heads from config.pruned_heads
    family = family_of(model)
    for mine, theirs in zip(encoder_layers(twin), encoder_layers(model), strict=True):
        for path in (family.ffn_input, family.ffn_output):  # real widths, which the config cannot say
            set_part(mine, path, copy.deepcopy(part(theirs, path)))
    twin.load_state_dict(model.state_dict())
    return twin


class BiasOnly(nn.Module):
    """Stands in for an emptied block: adds the block's output bias to the residual stream (and applies the
    block's LayerNorm when the block applied it), with no matrix product left in the graph."""

    def __init__(self, block: Block, layer: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.register_buffer("bias", part(layer, block.bias).bias.detach().clone())
        self.norm = copy.deepcopy(part(layer, block.norm)) if block.norm else None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        residual = kwargs[self.block.residual] if isinstance(self.block.residual, str) else args[self.block.residual]
        output = self.norm(residual + self.bias) if self.norm is not None else self.bias.expand_as(residual)
        return (output,) if self.block.returns_tuple else output
