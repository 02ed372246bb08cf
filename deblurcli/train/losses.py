"""The training losses of the three papers, as one configurable sum.

ALGNet: Charbonnier + 0.05 edge + 0.1 FFT on each of its four outputs; EVSSM: L1 + 0.1 FFT;
XYScanNet: Charbonnier + 0.05 edge (+ a VGG-19 contrastive term). The coarse outputs are compared
with the sharp image resampled the way the network resamples its input (nearest), so each coarse
prediction's target sits on exactly the pixel grid of the blurred input it was built from.

Losses are computed in float32 even under autocast: FFTs of half-precision tensors are either
unsupported or too coarse to rank small differences between restorations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DeblurError


def charbonnier(x: Tensor, y: Tensor, eps: float = 1e-3) -> Tensor:
    """A smooth L1: behaves like L1 for large errors but has a gradient that vanishes at zero."""
    d = x - y
    return torch.sqrt(d * d + eps * eps).mean()


class EdgeLoss(nn.Module):
    """Charbonnier distance between Laplacian-pyramid detail layers (MPRNet's edge loss).

    The detail layer is the image minus its Gaussian-blurred, decimated and re-expanded self:
    that isolates edges and fine texture, the part of the image an L1 loss under-weights.
    """

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        k = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05])
        self.register_buffer("kernel", torch.outer(k, k).expand(channels, 1, 5, 5).clone(), persistent=False)

    def _gauss(self, x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), self.kernel.to(x.dtype), groups=x.shape[1])

    def laplacian(self, x: Tensor) -> Tensor:
        blurred = self._gauss(x)
        up = torch.zeros_like(blurred)
        up[..., ::2, ::2] = blurred[..., ::2, ::2] * 4
        return x - self._gauss(up)

    def forward(self, x: Tensor, y: Tensor, eps: float = 1e-3) -> Tensor:
        return charbonnier(self.laplacian(x), self.laplacian(y), eps)


def fft_loss(x: Tensor, y: Tensor) -> Tensor:
    """L1 between the real and imaginary parts of the 2-D spectra: penalises lost high frequencies."""
    return F.l1_loss(torch.view_as_real(torch.fft.rfft2(x)), torch.view_as_real(torch.fft.rfft2(y)))


class ContrastiveLoss(nn.Module):
    """XYScanNet's (Stripformer's) contrastive term: VGG-19 feature distance of the restoration to
    the sharp image divided by its distance to the blurred input, which pushes the result away
    from the blur as well as towards the target.

    Needs torchvision and its ImageNet VGG-19 weights (downloaded on first use), which is why the
    default configurations leave it off.
    """

    _LAYERS = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in vgg19().features
    _WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

    def __init__(self) -> None:
        super().__init__()
        try:
            from torchvision.models import VGG19_Weights, vgg19
        except ImportError as exc:
            raise DeblurError(
                "loss.contrastive needs torchvision (pip install torchvision); "
                "set loss.contrastive=0 to train without it"
            ) from exc
        try:
            features = vgg19(weights=VGG19_Weights.IMAGENET1K_V1).features[: max(self._LAYERS) + 1]
        except Exception as exc:  # network or cache failures come in many types
            raise DeblurError(
                f"could not load the VGG-19 weights for loss.contrastive ({str(exc).splitlines()[0][:120]}); "
                "connect to the internet once or set loss.contrastive=0"
            ) from exc
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def _feats(self, x: Tensor) -> list[Tensor]:
        out = []
        h = (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self._LAYERS:
                out.append(h)
        return out

    def forward(self, pred: Tensor, sharp: Tensor, blurred: Tensor) -> Tensor:
        fp = self._feats(pred)
        with torch.no_grad():
            fs, fb = self._feats(sharp), self._feats(blurred)
        total = pred.new_zeros(())
        for w, a, p, n in zip(self._WEIGHTS, fp, fs, fb, strict=True):
            total = total + w * F.l1_loss(a, p) / (F.l1_loss(a, n) + 1e-7)
        return total


class DeblurLoss(nn.Module):
    """The configured sum over the network's outputs (coarse to fine); returns (total, parts)."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.pixel = str(cfg["pixel"])
        self.eps = float(cfg["eps"])
        self.w_edge = float(cfg["edge"])
        self.w_fft = float(cfg["fft"])
        self.w_con = float(cfg["contrastive"])
        self.all_scales = bool(cfg["all_scales"])
        self.edge = EdgeLoss() if self.w_edge > 0 else None
        self.contrastive = ContrastiveLoss() if self.w_con > 0 else None

    def forward(self, outputs: Sequence[Tensor], sharp: Tensor, blurred: Tensor) -> tuple[Tensor, dict[str, float]]:
        preds = list(outputs) if self.all_scales else [outputs[-1]]
        sharp = sharp.float()
        parts: dict[str, Tensor] = {}
        for pred in preds:
            pred = pred.float()
            if pred.shape[-2:] != sharp.shape[-2:]:
                target = F.interpolate(sharp, size=pred.shape[-2:], mode="nearest")
            else:
                target = sharp
            pix = charbonnier(pred, target, self.eps) if self.pixel == "charbonnier" else F.l1_loss(pred, target)
            _add(parts, "pixel", pix)
            if self.edge is not None:
                _add(parts, "edge", self.w_edge * self.edge(pred, target, self.eps))
            if self.w_fft > 0:
                _add(parts, "fft", self.w_fft * fft_loss(pred, target))
        if self.contrastive is not None:
            _add(parts, "contrastive", self.w_con * self.contrastive(preds[-1].float(), sharp, blurred.float()))
        total = sum(parts.values(), sharp.new_zeros(()))
        return total, {k: v.detach() for k, v in parts.items()}


def _add(parts: dict[str, Tensor], key: str, value: Tensor) -> None:
    parts[key] = parts[key] + value if key in parts else value
