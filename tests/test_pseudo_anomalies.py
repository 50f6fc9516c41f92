"""Pseudo-anomalies from normal images (exact masks, monotone strength) and the copy ratio."""

import numpy as np
import pytest
import torch

from entropy_ae.data import DataError, load_data
from entropy_ae.data.pseudo_anomalies import FAMILIES, MIN_IMAGES, make_pseudo_anomalies
from entropy_ae.leakage import METRICS, copy_ratio, pseudo_anomaly_metrics


@pytest.fixture(scope="module")
def normal_images():
    return load_data("synthetic[k=2,n_train=30,n_val=24,n_test=10,detail=0.2]", image_size=32).val


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_changes_only_inside_its_mask_and_grows_with_strength(normal_images, family):
    weak, weak_masks = make_pseudo_anomalies(normal_images, family, strength=0.3, seed=5)
    strong, masks = make_pseudo_anomalies(normal_images, family, strength=1.0, seed=5)
    np.testing.assert_array_equal(weak_masks, masks)  # the region does not depend on the strength
    assert masks.any(axis=(1, 2, 3)).all() and not masks.all(axis=(1, 2, 3)).any()
    np.testing.assert_array_equal(strong[~masks], normal_images[~masks])  # exact: nothing outside changes
    change_weak, change_strong = np.abs(weak - normal_images), np.abs(strong - normal_images)
    assert (change_strong >= change_weak - 1e-6).all()  # monotone in the strength, pixel by pixel
    assert change_strong.sum() > change_weak.sum() > 0
    assert strong.dtype == np.float32 and strong.min() >= -1 and strong.max() <= 1
    again, _ = make_pseudo_anomalies(normal_images, family, strength=1.0, seed=5)
    np.testing.assert_array_equal(again, strong)  # same seed, same defects
    other, _ = make_pseudo_anomalies(normal_images, family, strength=1.0, seed=6)
    assert not np.array_equal(other, strong)


def test_bad_family_and_strength_are_refused_with_the_valid_choices(normal_images):
    with pytest.raises(DataError, match="unknown pseudo-anomaly family 'scratch'.*" + ", ".join(FAMILIES)):
        make_pseudo_anomalies(normal_images, "scratch")
    for strength in (0, -0.5, 1.5):
        with pytest.raises(DataError, match=r"strength must be in \(0, 1\]"):
            make_pseudo_anomalies(normal_images, "cutpaste", strength=strength)
    with pytest.raises(DataError, match="at least 2 images"):
        make_pseudo_anomalies(normal_images[:1], "cutpaste")


def test_copy_ratio_is_one_for_the_identity_and_zero_for_a_constant_map(normal_images):
    perturbed, masks = make_pseudo_anomalies(normal_images, "intensity_blob", seed=1)
    identity = copy_ratio(normal_images, perturbed, normal_images, perturbed, masks)
    np.testing.assert_allclose(identity, 1.0)
    constant = np.zeros_like(normal_images)
    np.testing.assert_array_equal(copy_ratio(normal_images, perturbed, constant, constant, masks), 0.0)
    halfway = copy_ratio(normal_images, perturbed, normal_images, (normal_images + perturbed) / 2, masks)
    np.testing.assert_allclose(halfway, 0.25, rtol=1e-5)  # half the change back: a quarter of its energy


class _Map(torch.nn.Module):
    """A stand-in AE ``x -> f(x)`` with the Autoencoder's ``(reconstruction, code)`` output."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device

    def forward(self, x):
        return self.fn(x), x.flatten(1)[:, :2]


def test_pseudo_anomaly_metrics_tell_a_copying_map_from_an_ignoring_one(normal_images):
    copying = pseudo_anomaly_metrics(_Map(lambda x: x), normal_images)
    ignoring = pseudo_anomaly_metrics(_Map(lambda x: torch.zeros_like(x)), normal_images)
    for family in FAMILIES:
        assert copying[f"copy_ratio_{family}"] == pytest.approx(1.0)
        assert ignoring[f"copy_ratio_{family}"] == 0.0
        assert copying[f"pseudo_auroc_{family}"] == 0.5  # an identity map scores every image 0
    assert set(METRICS) <= set(copying) and copying["n_pseudo"] == len(normal_images)
    assert copying["copy_ratio"] == pytest.approx(1.0)


def test_too_few_validation_images_warn_with_the_number_needed(normal_images):
    with pytest.warns(UserWarning, match=f"at least {MIN_IMAGES}"):
        pseudo_anomaly_metrics(_Map(lambda x: x), normal_images[:5])
