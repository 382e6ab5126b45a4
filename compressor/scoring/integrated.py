"""Integrated gradients over one layer's internal activations of a classifier, one layer at a time.

Self-attention attribution (Hao et al., AAAI 2021): the post-softmax attention probabilities A of all heads
of a layer are replaced by alpha * A; layers below are unchanged, layers above recompute as usual. The
attribution of head h is A_h * integral_0^1 dF(alpha A)/dA_h d(alpha), approximated by a quadrature rule
(the paper: left Riemann, m=20).

FFN neuron attribution (Dai, Dong, Hao et al. 2022, "Knowledge Neurons") is the same machinery applied to
a layer's feed-forward intermediate activations (after the GELU) instead of its attention probabilities.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from attr_compress.compressor.defaults import RULES
from attr_compress.compressor.models.families import (
    classify,
    embed,
    encoder_layers,
    family_of,
    layer_mask,
    part,
    run_layer,
)
from torch import nn


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) on [0, 1] for a rule; 'left' is exactly the paper's sum (alphas k/m, weights 1/m)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if rule == "left":
        return np.arange(steps) / steps, np.full(steps, 1.0 / steps)
    if rule == "midpoint":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    if rule == "gauss":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    raise ValueError(f"unknown quadrature rule {rule!r}; choose one of {', '.join(RULES)}")


@dataclass(frozen=True)
class LayerAttribution:
    """Attribution of one layer for a batch and the activations it scales: attention probabilities
    [batch, heads, n, n] or FFN intermediate activations [batch, n, neurons]."""

    layer: int
    scores: torch.Tensor
    activations: torch.Tensor


class LayerIntegratedGradients:
    """Integrated gradients over the output of one module per layer (``scaled_module``), zero baseline."""

    def __init__(self, model: nn.Module, head_mask: torch.Tensor | None = None) -> None:
        """``head_mask`` ([layers, heads], 1 keeps, 0 masks) scores a partly pruned model (iterative ranking)."""
        self.model = model
        self.family = family_of(model)
        self.layers = encoder_layers(model)
        self.head_mask = head_mask

    def scaled_module(self, layer: int) -> nn.Module:
        """The module whose output is scaled by alpha in ``layer``."""
        raise NotImplementedError

    def _run_layer(self, index: int, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.head_mask is None:
            return run_layer(self.layers[index], hidden, mask)
        head_mask = self.head_mask[index].view(1, -1, 1, 1).to(hidden.device, hidden.dtype)
        return run_layer(self.layers[index], hidden, mask, head_mask)

    def hidden_states(self, inputs: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Input of every layer (plus the final output) and the attention mask as the layers take it, without
        gradients."""
        with torch.no_grad():
            hidden = embed(self.model, inputs)
            mask = layer_mask(self.model, inputs["attention_mask"])
            states = [hidden]
            for index in range(len(self.layers)):
                hidden = self._run_layer(index, hidden, mask)
                states.append(hidden)
        return states, mask

    def probabilities(self, hidden: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
        """Class probabilities from the input of layer ``start`` upwards."""
        for index in range(start, len(self.layers)):
            hidden = self._run_layer(index, hidden, mask)
        return torch.softmax(classify(self.model, hidden), dim=-1)

    def target_probability(
        self, inputs: dict[str, torch.Tensor], target: torch.Tensor, scale_layer: int | None = None, alpha: float = 1.0
    ) -> torch.Tensor:
        """F for each example, optionally with one layer's scaled activations multiplied by ``alpha``."""
        states, mask = self.hidden_states(inputs)
        start = 0 if scale_layer is None else scale_layer
        with torch.no_grad(), self._scaled(scale_layer, torch.tensor([alpha]), requires_grad=False):
            probs = self.probabilities(states[start], mask, start)
        return probs.gather(1, target[:, None])[:, 0]

    def attribute(
        self,
        inputs: dict[str, torch.Tensor],
        target: torch.Tensor | None,
        *,
        layers: Sequence[int] | None = None,
        steps: int = 20,
        rule: str = "left",
        internal_batch_size: int | None = None,
        log_probability: bool = False,
    ) -> Iterator[LayerAttribution]:
        """Yield the attribution of each requested layer for a padded batch, F = probability of ``target``
        (or its logarithm with ``log_probability``); ``target`` None means the predicted class.

        The layers below each target layer run once; the quadrature points go through the layers above in
        chunks of ``internal_batch_size`` rows (examples x steps), so memory stays bounded.
        """
        alphas, weights = quadrature(rule, steps)
        states, mask = self.hidden_states(inputs)
        if target is None:  # the predicted class, from the pass the layers below need anyway
            with torch.no_grad():
                target = self.probabilities(states[0], mask, 0).argmax(-1)
        batch = inputs["input_ids"].shape[0]
        chunk = max(1, (internal_batch_size or batch * steps) // batch)
        for layer in range(len(self.layers)) if layers is None else layers:
            total: torch.Tensor | None = None
            activations: torch.Tensor | None = None
            for begin in range(0, steps, chunk):
                k = min(chunk, steps - begin)
                hidden = states[layer].repeat_interleave(k, dim=0)
                chunk_mask = mask.repeat_interleave(k, dim=0)
                chunk_alphas = torch.tensor(alphas[begin : begin + k], dtype=hidden.dtype, device=hidden.device)
                chunk_alphas = chunk_alphas.repeat(batch)
                chunk_weights = torch.tensor(weights[begin : begin + k], dtype=hidden.dtype, device=hidden.device)
                with torch.enable_grad(), self._scaled(layer, chunk_alphas, requires_grad=True) as scaled:
                    probs = self.probabilities(hidden, chunk_mask, layer)
                    chosen = probs.gather(1, target.repeat_interleave(k)[:, None])
                    f = (torch.log(chosen) if log_probability else chosen).sum()
                    (grad,) = torch.autograd.grad(f, scaled[0])
                grad = grad.view(batch, k, *grad.shape[1:])
                weighted = (grad * chunk_weights.view(1, k, *[1] * (grad.dim() - 2))).sum(dim=1)
                total = weighted if total is None else total + weighted
                if activations is None:
                    activations = scaled[1].view(batch, k, *grad.shape[2:])[:, 0]
            yield LayerAttribution(layer=layer, scores=activations * total, activations=activations)

    @contextmanager
    def _scaled(self, layer: int | None, alphas: torch.Tensor, *, requires_grad: bool) -> Iterator[list]:
        """Replace one layer's activations X by alpha * X (one alpha per batch row).

        Yields [scaled, X] once the forward pass has run: the leaf tensor gradients are taken against, and
        the unscaled activations.
        """
        captured: list[torch.Tensor] = []
        if layer is None:
            yield captured
            return

        def substitute(_module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
            activations = output.detach()
            shape = (-1, *[1] * (activations.dim() - 1))
            scaled = activations * alphas.to(activations.device, activations.dtype).view(shape)
            if requires_grad:
                scaled.requires_grad_(True)
            captured[:] = [scaled, activations]
            return scaled

        handle = self.scaled_module(layer).register_forward_hook(substitute)
        try:
            yield captured
        finally:
            handle.remove()


class AttentionAttribution(LayerIntegratedGradients):
    """Self-attention attribution: integrated gradients over one layer's attention probabilities.

    The model must use eager attention (``attn_implementation="eager"``): the probabilities are substituted
    at the attention dropout module, which only the eager path calls.
    """

    def __init__(self, model: nn.Module, head_mask: torch.Tensor | None = None) -> None:
        if getattr(model.config, "_attn_implementation", "eager") != "eager":
            raise ValueError("AttentionAttribution needs a model loaded with attn_implementation='eager'")
        super().__init__(model, head_mask)

    def scaled_module(self, layer: int) -> nn.Module:
        return part(self.layers[layer], self.family.probabilities)


class NeuronAttribution(LayerIntegratedGradients):
    """FFN neuron attribution: integrated gradients over one layer's intermediate activations (after GELU)."""

    def scaled_module(self, layer: int) -> nn.Module:
        return part(self.layers[layer], self.family.ffn_activation)
