"""Many autoencoders as one module: the paper's AE stacked M times, with one set of kernels.

* convolutions become grouped convolutions (``groups=M``, channels ``M*C``);
  model m owns channel block m, so BatchNorm over ``M*C`` channels keeps its
  batch statistics and running statistics per model;
* linear layers become batched matrix products over a leading model axis
  (``torch.baddbmm`` with weights ``(M, out, in)``);
* models of different latent sizes share the group's largest size D: the
  encoder's last Linear gets zero rows and the decoder's first Linear zero
  columns beyond a model's own d, and ``z[:, d:]`` is multiplied by 0. The
  padded weights then receive exactly zero gradient and Adam leaves them at
  exactly zero, so the padded model computes the small model's function.

:mod:`entropy_ae.training.batched` trains such a module; trained weights go back
into ordinary :class:`~entropy_ae.model.Autoencoder` modules.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..model import CHANNELS, HIDDEN, Autoencoder

__all__ = ["StackedAutoencoder", "StackedLinear", "StackedBatchNorm1d"]


class StackedLinear(nn.Module):
    """M independent ``nn.Linear(in_features, out_features)`` on input ``(M, n, in)``.

    ``ragged = (in_sizes, out_sizes)`` makes model i use only the leading
    ``in_sizes[i] x out_sizes[i]`` block of its (zero-padded) weight, with one
    ``F.linear`` per model: exactly the kernel, shape and so the rounding of the
    unpadded model. The output's unused columns are exact zeros.
    """

    def __init__(self, num_models: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_models, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(num_models, out_features))
        self.ragged: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ragged is None:
            return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))
        out_features = self.weight.shape[1]
        outs = []
        for i, (n_in, n_out) in enumerate(zip(*self.ragged)):
            # Contiguous slices: the single model's weights and inputs are contiguous too.
            y = F.linear(
                x[i, :, :n_in].contiguous(),
                self.weight[i, :n_out, :n_in].contiguous(),
                self.bias[i, :n_out],
            )
            outs.append(F.pad(y, (0, out_features - n_out)))
        return torch.stack(outs)


class StackedBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d(M * features)`` applied to input ``(M, n, features)``.

    Channel block m holds model m's statistics, so they stay per model.
    """

    def __init__(self, num_models: int, num_features: int):
        super().__init__(num_models * num_features)
        self.num_models = num_models

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, n, f = x.shape
        y = super().forward(x.transpose(0, 1).reshape(n, m * f))
        return y.view(n, m, f).transpose(0, 1)


class _EdgeConv2d(nn.Conv2d):
    """Grouped conv that can run its groups one by one (``split=True``).

    The first encoder conv (1 input channel per model) and the last decoder
    conv (1 output channel per model) are the two layers whose grouped CPU
    kernels sum the weight gradient in a different order from the single
    model's kernel. Run per model, they reproduce it bit for bit.
    """

    split = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.split:
            return super().forward(x)
        return torch.cat(
            [
                F.conv2d(xi, wi, None, self.stride, self.padding)
                for xi, wi in zip(x.chunk(self.groups, 1), self.weight.chunk(self.groups))
            ],
            1,
        )


class _EdgeConvTranspose2d(nn.ConvTranspose2d):
    """Transposed counterpart of :class:`_EdgeConv2d` (the decoder's output layer)."""

    split = False

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if not self.split:
            return super().forward(x)
        m = self.groups
        biases = self.bias.chunk(m) if self.bias is not None else [None] * m
        return torch.cat(
            [
                F.conv_transpose2d(xi, wi, bi, self.stride, self.padding)
                for xi, wi, bi in zip(x.chunk(m, 1), self.weight.chunk(m), biases)
            ],
            1,
        )


class StackedAutoencoder(nn.Module):
    """M :class:`Autoencoder` s of one image size as one module.

    Its state_dict has the same keys as an ``Autoencoder``'s; conv and
    BatchNorm tensors hold the M models' tensors concatenated along dim 0,
    linear tensors stacked along a new dim 0. Latent sizes below the largest,
    D, are zero-padded and masked (see the module docstring).

    Input ``(n, M, s, s)`` (image i of model m at ``[i, m]``); output
    ``(x_hat (n, M, s, s), z (M, n, D))``.
    """

    def __init__(self, latent_sizes: Sequence[int], image_size: int):
        super().__init__()
        if not latent_sizes:
            raise ValueError("StackedAutoencoder needs at least one latent size")
        m = len(latent_sizes)
        d_max = max(latent_sizes)
        self.num_models = m
        self.latent_sizes = tuple(int(d) for d in latent_sizes)
        self.image_size = image_size
        side = image_size // 16
        self._feature_shape = (CHANNELS[-1], side, side)
        flat = CHANNELS[-1] * side * side

        enc = []
        c_in = 1
        for i, c_out in enumerate(CHANNELS):
            conv = _EdgeConv2d if i == 0 else nn.Conv2d
            enc += [
                conv(m * c_in, m * c_out, 4, 2, 1, bias=False, groups=m),
                nn.BatchNorm2d(m * c_out),
                nn.ReLU(True),
            ]
            c_in = c_out
        self.encoder_conv = nn.Sequential(*enc)
        # Index 0 of the single model's encoder_fc is Flatten: keep the
        # indices (and so the state_dict keys) the same.
        self.encoder_fc = nn.Sequential(
            nn.Identity(),
            StackedLinear(m, flat, HIDDEN),
            StackedBatchNorm1d(m, HIDDEN),
            nn.ReLU(True),
            StackedLinear(m, HIDDEN, d_max),
        )
        self.decoder_fc = nn.Sequential(
            StackedLinear(m, d_max, HIDDEN),
            StackedBatchNorm1d(m, HIDDEN),
            nn.ReLU(True),
            StackedLinear(m, HIDDEN, flat),
        )
        dec = []
        c_in = CHANNELS[-1]
        decoder_channels = CHANNELS[-2::-1] + (1,)
        for i, c_out in enumerate(decoder_channels):
            last = i == len(decoder_channels) - 1
            conv = _EdgeConvTranspose2d if last else nn.ConvTranspose2d
            dec.append(conv(m * c_in, m * c_out, 4, 2, 1, bias=last, groups=m))
            if not last:
                dec += [nn.BatchNorm2d(m * c_out), nn.ReLU(True)]
            c_in = c_out
        self.decoder_conv = nn.Sequential(*dec)

        self._ragged = False
        if min(self.latent_sizes) < d_max:
            mask = torch.zeros(m, 1, d_max)
            for i, d in enumerate(self.latent_sizes):
                mask[i, 0, :d] = 1.0
            self.register_buffer("latent_mask", mask, persistent=False)
        else:
            self.latent_mask = None

    # -- stacking ---------------------------------------------------------------

    @classmethod
    def from_models(cls, models: Sequence[Autoencoder]) -> "StackedAutoencoder":
        """Stack trained or freshly initialised models (copies their tensors)."""
        sizes = {mod.image_size for mod in models}
        if len(sizes) != 1:
            raise ValueError(f"all models of a group need one image_size, got {sorted(sizes)}")
        stacked = cls([mod.latent_size for mod in models], sizes.pop())
        states = [mod.state_dict() for mod in models]
        own = stacked.state_dict()
        new = {}
        for key, target in own.items():
            parts = [s[key].to(target.device) for s in states]
            if target.ndim == 0:  # num_batches_tracked: one counter for the group
                counts = {int(p) for p in parts}
                if len(counts) != 1:
                    raise ValueError(f"models disagree on {key} ({sorted(counts)}); train them in separate groups")
                new[key] = parts[0].clone()
            elif target.ndim == parts[0].ndim + 1:  # linear: new model axis
                new[key] = torch.stack([_pad_to(p, target.shape[1:]) for p in parts])
            else:  # conv / BatchNorm: channel blocks
                new[key] = torch.cat(parts)
        stacked.load_state_dict(new)
        return stacked

    def unstack(self) -> list[Autoencoder]:
        """Ordinary :class:`Autoencoder` s (on this module's device, in its train/eval mode)."""
        state = self.state_dict()
        device = next(self.parameters()).device
        models = []
        for i, d in enumerate(self.latent_sizes):
            model = Autoencoder(d, self.image_size).to(device)
            single = {}
            for key, ref in model.state_dict().items():
                src = state[key]
                if src.ndim == 0:
                    part = src
                elif src.ndim == ref.ndim + 1:
                    part = src[i]
                else:
                    part = src.chunk(self.num_models)[i]
                # Padding is always at the end: slicing to the small shape undoes it.
                single[key] = part[tuple(slice(0, n) for n in ref.shape)].clone()
            model.load_state_dict(single)
            model.train(self.training)
            models.append(model)
        return models

    # -- computation -------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        h = self.encoder_conv(x).reshape(n, self.num_models, -1).transpose(0, 1)
        z = self.encoder_fc(h)
        if self.latent_mask is not None and not self._ragged:
            # Zero the padded units: their weights then get exactly zero gradient.
            z = z * self.latent_mask
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[1]
        c, side, _ = self._feature_shape
        h = self.decoder_fc(z).transpose(0, 1).reshape(n, self.num_models * c, side, side)
        return self.decoder_conv(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z

    def split_edge_convs(self, split: bool = True) -> "StackedAutoencoder":
        """Run the first and last conv per model (bit-identical CPU gradients); returns self."""
        self.encoder_conv[0].split = bool(split)
        self.decoder_conv[-1].split = bool(split)
        return self

    def ragged_latent(self, ragged: bool = True) -> "StackedAutoencoder":
        """Compute the two latent-size Linears per model at their own size; returns self.

        Off (the default), models of smaller latent size run padded to the
        largest and masked: one batched kernel, equal up to rounding. On, each
        model's latent layers run at its own shape with ``F.linear``, as in the
        single model: bit-identical on CPU, at the cost of 2 x M small kernels
        per pass.
        """
        # Also without padding: a batched product with a narrow output rounds
        # unlike F.linear's addmm, so the per-model kernel is needed anyway.
        self._ragged = bool(ragged)
        enc, dec = self.encoder_fc[-1], self.decoder_fc[0]
        if self._ragged:
            enc.ragged = ((enc.weight.shape[2],) * self.num_models, self.latent_sizes)
            dec.ragged = (self.latent_sizes, (dec.weight.shape[1],) * self.num_models)
        else:
            enc.ragged = dec.ragged = None
        return self


def _pad_to(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Zero-pad ``t`` at the end of each dim up to ``shape``."""
    if tuple(t.shape) == tuple(shape):
        return t
    out = t.new_zeros(tuple(shape))
    out[tuple(slice(0, n) for n in t.shape)] = t
    return out


