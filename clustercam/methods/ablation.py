"""Ablation-CAM (Desai & Ramaswamy; Feng et al. eq. 7), batched, re-running only the network's tail.

``α_n = (S_c − S_{c,n}) / S_c`` where ``S_c`` is the target class's logit for the image and
``S_{c,n}`` its logit when feature map ``n`` of the target layer is set to zero; the map is then
eq. 1, ``ReLU(Σ_n α_n F_n)``.

**Speed.** Ablating a channel changes nothing *before* the target layer, so only what follows the
layer is re-run (:class:`clustercam.tail.Tail`): the network is called on *one* copy of the image
and the layer's output replaced by ``k`` ablated copies of the captured activations (channel ``n``
zeroed in row ``n``); the layers before the target run once per chunk of ``batch_size`` rows,
those after it ``k`` times. This *tail* mode is validated once per call: the first chunk carries
one extra, un-ablated row whose logits must reproduce the original logits (relative tolerance
``1e-4``). If they do not, if the result has the wrong batch size, or if the pass raises (e.g. a
concatenation with a one-image tensor), every chunk is instead evaluated by *full* re-runs of the
whole network on ``k`` copies of the image with the same replacing hook. ``extras["ablation_mode"]``
says which mode ran (``"tail"`` or ``"full"``) and ``extras["tail_fallback_reason"]`` why.

**Pass counts.** Forward passes count the rows evaluated through the network's tail: the ``N``
ablated rows per image, plus the one validation row in tail mode (plus the original pass that
:class:`~clustercam.methods.base.BaseCAM` always counts). The per-chunk one-image passes through the
layers *before* the target are reported in ``extras["head_passes"]``, the rows through the tail
alone in ``extras["tail_rows"]`` (0 in full mode).

**Ablation value and pytorch-grad-cam.** Eq. 7 sets the map to zero (``ablation_value=0.0``, the
default). pytorch-grad-cam's ``AblationLayer`` (grad-cam 1.5.7) zeroes the map only when the
minimum of the whole batch of activations is exactly 0, which is the case after a ReLU/ReLU6 such
as EfficientNet-Lite's default layer ``bn2``; otherwise (layers with negative outputs, e.g. a
block's linear projection) it writes ``min − 1e7``, and because its loop recomputes the minimum
after each row it ablates, row ``i`` of a batch gets about ``min − (i + 1)·1e7``, so its weights
there depend on its batch size. The two implementations agree at post-ReLU layers; elsewhere this
one follows the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from ..tail import VALIDATION_RTOL, Tail, TailMismatchError, replaced_output
from .base import ChannelWeights, ForwardState, WeightedCAM

__all__ = ["VALIDATION_RTOL", "AblationCAM", "TailMismatchError", "ablated_copies", "replaced_output"]


def ablated_copies(activations: torch.Tensor, channels: torch.Tensor, value: float) -> torch.Tensor:
    """``(k, N, h, w)``: copies of one image's ``(N, h, w)`` maps, channel ``channels[i]`` of row ``i``
    set to ``value``; a negative index leaves its row un-ablated."""
    rows = activations.unsqueeze(0).repeat(channels.shape[0], 1, 1, 1)
    ablate = channels >= 0
    rows[torch.nonzero(ablate).squeeze(1), channels[ablate]] = value
    return rows


class AblationCAM(WeightedCAM):
    """Ablation-CAM (eq. 7): ``α_n = (S_c − S_{c,n}) / S_c`` with ``S`` the target logit.

    Args:
        model: ``nn.Module`` (eval mode) or zoo ``ModelSpec``.
        layer: target layer; default the spec's default layer.
        batch_size: ablated rows per forward pass.
        ablation_value: what an ablated map is set to (eq. 7: 0).
        mode: ``"auto"`` (tail mode, validated, with full re-runs as fallback), ``"tail"``
            (tail mode; raise if validation fails) or ``"full"`` (always re-run the whole network).

    Cost per image: ``1 + N`` forward passes (``+ 1`` validation row in tail mode), no backward.
    A negative ``S_c`` flips the sign of every weight, as in eq. 7 and pytorch-grad-cam.
    """

    name = "ablationcam"
    title = "Ablation-CAM"

    def __init__(
        self,
        model,
        layer: str | nn.Module | None = None,
        *,
        batch_size: int = 64,
        ablation_value: float = 0.0,
        mode: str = "auto",
    ):
        super().__init__(model, layer, batch_size=batch_size)
        if mode not in ("auto", "tail", "full"):
            raise ValueError(f"mode must be 'auto', 'tail' or 'full'; got {mode!r}.")
        self.ablation_value = float(ablation_value)
        self.mode = mode

    @classmethod
    def planned_passes(cls, channels: int, **options) -> tuple[int, int]:
        """``1 + N`` rows, ``+ 1`` validation row unless ``mode="full"``."""
        return 1 + int(channels) + int(options.get("mode", "auto") != "full"), 0

    def _validated_tail(
        self, state: ForwardState, channels: torch.Tensor
    ) -> tuple[torch.Tensor | None, str, int]:
        """Run the first chunk in tail mode with an un-ablated row first.

        Returns ``(logits of the ablated rows, "", rows evaluated)`` on success and
        ``(None, reason, rows evaluated)`` when tail mode does not reproduce the network.
        """
        own = state.own_output(0)
        rows = state.layout.to_output(ablated_copies(state.activations[0], channels, self.ablation_value), own)
        check = Tail(self.network, self.layer).validated(state.inputs[:1], own, state.logits[0], rows)
        return check.logits, check.reason, check.rows_run

    @torch.inference_mode()
    def weights(self, state: ForwardState) -> ChannelWeights:
        """α of eq. 7 per image and channel, the rows evaluated, and how (module docstring)."""
        batch, channels = state.activations.shape[:2]
        chunks = [
            torch.arange(start, min(start + self.batch_size, channels), device=state.inputs.device)
            for start in range(0, channels, self.batch_size)
        ]
        first_chunk, reason, rows_evaluated, head_passes = None, "", 0, 0
        if self.mode != "full":
            first_chunk, reason, rows_evaluated = self._validated_tail(state, chunks[0])
            head_passes = 1
            if first_chunk is None and self.mode == "tail":
                raise TailMismatchError(f"Tail-only ablation failed validation: {reason}.")
        tail = first_chunk is not None
        scores = torch.empty(batch, channels, device=state.inputs.device)
        for b in range(batch):
            target = state.targets[b]
            for index, chunk in enumerate(chunks):
                if b == 0 and index == 0 and first_chunk is not None:
                    logits = first_chunk
                else:
                    rows = ablated_copies(state.activations[b], chunk, self.ablation_value)
                    rows = state.layout.to_output(rows, state.own_output(b))  # a transformer's tokens
                    logits = Tail(self.network, self.layer).logits(state.inputs[b : b + 1], rows, full=not tail)
                    rows_evaluated += chunk.shape[0]
                    head_passes += 1 if tail else chunk.shape[0]
                scores[b, chunk] = logits[:, target]
        original = state.logits.float().gather(1, state.targets[:, None])
        safe = torch.where(original.abs() > 1e-12, original, torch.full_like(original, 1e-12))
        extras = {
            "ablation_mode": "tail" if tail else "full",
            "tail_fallback_reason": reason,
            "head_passes": head_passes,
            "tail_rows": rows_evaluated if tail else 0,
            "ablated_scores": scores,
        }
        return ChannelWeights((original - scores) / safe, rows_evaluated, 0, extras)
