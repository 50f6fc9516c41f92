"""The paper's autoencoder: shapes, parameter count, size checks."""

from __future__ import annotations

import pytest
import torch

from entropy_ae.model import Autoencoder, count_parameters


def expected_parameter_count(latent_size: int, image_size: int) -> int:
    """Parameter count derived by hand from the architecture (not from the code under test).

    At latent_size=16, image_size=64 (flat = 64 channels * 4 * 4 = 1024):
      encoder convs, no bias:  1*16*16 + 16*32*16 + 32*64*16 + 64*64*16        = 106,752
      encoder BatchNorm2d:     2 * (16 + 32 + 64 + 64)                          =     352
      Linear(1024, 1024):      1024*1024 + 1024                                 = 1,049,600
      BatchNorm1d(1024):       2 * 1024                                         =   2,048
      Linear(1024, 16):        1024*16 + 16                                     =  16,400
      Linear(16, 1024):        16*1024 + 1024                                   =  17,408
      BatchNorm1d(1024):                                                         =   2,048
      Linear(1024, 1024):                                                        = 1,049,600
      decoder transposed convs (bias only on the last): 64*64*16 + 64*32*16
                               + 32*16*16 + 16*1*16 + 1                         = 106,753
      decoder BatchNorm2d:     2 * (64 + 32 + 16)                               =     224
      total                                                                     = 2,351,185
    """
    flat = 64 * (image_size // 16) ** 2
    convs = 16 * (1 * 16 + 16 * 32 + 32 * 64 + 64 * 64)
    encoder = convs + 2 * (16 + 32 + 64 + 64) + (flat * 1024 + 1024) + 2 * 1024 + (1024 * latent_size + latent_size)
    decoder = (latent_size * 1024 + 1024) + 2 * 1024 + (1024 * flat + flat) + convs + 1 + 2 * (64 + 32 + 16)
    return encoder + decoder


def test_parameter_count_at_paper_setting():
    model = Autoencoder(latent_size=16, image_size=64)
    assert count_parameters(model) == 2_351_185
    assert expected_parameter_count(16, 64) == 2_351_185


@pytest.mark.parametrize("image_size", [16, 32, 64, 128])
@pytest.mark.parametrize("latent_size", [1, 16, 1024])
def test_shapes_and_counts(image_size, latent_size):
    model = Autoencoder(latent_size=latent_size, image_size=image_size)
    assert count_parameters(model) == expected_parameter_count(latent_size, image_size)
    x = torch.rand(3, 1, image_size, image_size) * 2 - 1
    x_hat, z = model(x)
    assert z.shape == (3, latent_size)
    assert x_hat.shape == x.shape
    assert model.encode(x).shape == (3, latent_size)
    assert model.decode(z).shape == x.shape


def test_code_has_no_activation():
    # z = Linear(1024, d) output: it must take negative values (no ReLU/sigmoid after it).
    torch.manual_seed(0)
    model = Autoencoder(latent_size=64, image_size=16).eval()
    with torch.no_grad():
        z = model.encode(torch.rand(8, 1, 16, 16) * 2 - 1)
    assert (z < 0).any() and (z > 0).any()


def test_eval_mode_encodes_one_image():
    # BatchNorm in eval mode uses running statistics, so a batch of one works for scoring.
    model = Autoencoder(latent_size=4, image_size=16).eval()
    with torch.no_grad():
        x_hat, z = model(torch.zeros(1, 1, 16, 16))
    assert z.shape == (1, 4) and torch.isfinite(x_hat).all()


@pytest.mark.parametrize("kwargs", [
    {"latent_size": 0}, {"latent_size": 1025}, {"latent_size": 2.0},
    {"image_size": 40}, {"image_size": 8}, {"image_size": 0},
])
def test_bad_sizes_are_refused(kwargs):
    with pytest.raises(ValueError, match="latent_size|image_size"):
        Autoencoder(**kwargs)
