"""The built-in synthetic dataset: determinism, ranges, exact masks, known factor count k."""

import numpy as np
import pytest

from entropy_ae.data import synthetic as S
from entropy_ae.data import DataError, load_data

SMALL = dict(n_train=40, n_val=8, n_test=24)


def _gen(image_size=32, seed=0, **kw):
    return S.generate(S.SyntheticConfig(**{**SMALL, **kw}), image_size=image_size, seed=seed)


def test_same_seed_same_arrays_other_seed_other_arrays():
    a, b, c = _gen(seed=3), _gen(seed=3), _gen(seed=4)
    for key in ("train", "val", "test", "test_labels", "test_masks"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["train"], c["train"])
    assert not np.array_equal(a["test_masks"], c["test_masks"])


def test_splits_have_independent_streams():
    # Changing the test size must not change the training images (one random stream per split).
    a, b = _gen(n_test=24), _gen(n_test=60)
    np.testing.assert_array_equal(a["train"], b["train"])
    np.testing.assert_array_equal(a["val"], b["val"])


def test_shapes_dtypes_ranges():
    g = _gen(image_size=32, abnormal_fraction=0.25)
    assert g["train"].shape == (40, 1, 32, 32) and g["train"].dtype == np.float32
    assert g["val"].shape == (8, 1, 32, 32) and g["test"].shape == (24, 1, 32, 32)
    assert g["test_labels"].dtype == np.int64 and g["test_labels"].tolist() == [0] * 18 + [1] * 6
    assert g["test_masks"].dtype == bool and g["test_masks"].shape == g["test"].shape
    for key in ("train", "val", "test"):
        assert g[key].min() >= -1.0 and g[key].max() <= 1.0
        assert g[key].min() == -1.0  # black background is present
    # The organ is visible: every image has tissue clearly above the background.
    # (smallest organ: semi-axes 0.44*0.95 x 0.44*0.8 half-widths, i.e. 11.6% of the image)
    assert (g["train"].reshape(40, -1) > -0.99).mean(axis=1).min() > 0.1


def test_masks_are_exactly_the_changed_pixels():
    g = _gen(image_size=64, max_lesions=3)
    labels, masks = g["test_labels"], g["test_masks"]
    abnormal = g["test"][labels == 1]
    np.testing.assert_array_equal(masks[labels == 1], abnormal != g["test_normal_base"])
    assert not masks[labels == 0].any()
    assert masks[labels == 1].reshape(int(labels.sum()), -1).any(axis=1).all()  # every lesion visible
    # Lesions stay inside the organ: never on the black background of the lesion-free image.
    assert (g["test_normal_base"][masks[labels == 1]] > -1.0).all()


def test_lesion_contrast_and_size_follow_the_parameters():
    cfg = dict(lesion_contrast_min=0.1, lesion_contrast_max=0.1, lesion_radius_min=0.1, lesion_radius_max=0.1)
    g = _gen(image_size=64, **cfg)
    ab = g["test_labels"] == 1
    change = np.abs(g["test"][ab] - g["test_normal_base"]).reshape(int(ab.sum()), -1)
    # Flat lesion core inside the organ: the largest change is the contrast itself.
    np.testing.assert_allclose(change.max(axis=1), 0.1, atol=1e-5)
    # Radius 0.1 half-widths = 3.2 px: the footprint is at most the disc area pi * 3.2^2 ~ 32 px.
    area = g["test_masks"][ab].reshape(int(ab.sum()), -1).sum(axis=1)
    assert area.max() <= np.pi * 3.2**2 + 4 and area.min() >= 10


def test_images_are_a_function_of_exactly_k_factors():
    g = _gen(k=3)
    assert g["train_factors"].shape == (40, 3)
    full = np.zeros((40, S.MAX_FACTORS))
    full[:, :3] = g["train_factors"]
    np.testing.assert_array_equal(S.render_normal(full, 32)[0][:, None], g["train"])


@pytest.mark.parametrize("k", [1, 4, 8])
def test_every_factor_moves_the_image_independently(k):
    # Numerical Jacobian of the rendering w.r.t. the k factors at a random point has full rank k,
    # so the normal images form a k-dimensional manifold (intrinsic dimension k).
    rng = np.random.default_rng(k)
    f0 = S.sample_factors(rng, 1, k) * 0.5
    eps = 1e-2
    cols = []
    for j in range(k):
        step = np.zeros_like(f0)
        step[0, j] = eps
        plus, minus = S.render_normal(f0 + step, 64)[0], S.render_normal(f0 - step, 64)[0]
        cols.append(((plus - minus) / (2 * eps)).ravel())
    sv = np.linalg.svd(np.stack(cols, axis=1).astype(np.float64), compute_uv=False)
    assert sv.min() > 0.05 * sv.max(), sv


def test_factors_beyond_k_are_held_fixed():
    f = S.sample_factors(np.random.default_rng(0), 50, 2)
    assert np.all(f[:, 2:] == 0) and np.all(np.abs(f[:, :2]) <= 1) and f[:, :2].std() > 0.4


def test_noise_has_the_stated_standard_deviation():
    clean, noisy = _gen(n_train=200), _gen(n_train=200, noise=0.05)
    inside = (clean["train"] > -0.9) & (clean["train"] < 0.9)  # away from the clipping bounds
    diff = (noisy["train"] - clean["train"])[inside]
    assert abs(diff.std() - 0.05) < 0.005 and abs(diff.mean()) < 0.005
    np.testing.assert_array_equal(noisy["test_masks"], clean["test_masks"])  # masks are noise-free


@pytest.mark.parametrize(
    "bad",
    [dict(k=0), dict(k=9), dict(n_train=1), dict(n_val=0), dict(abnormal_fraction=1.0), dict(n_test=1),
     dict(lesion_radius_min=0.3, lesion_radius_max=0.2), dict(lesion_contrast_min=0.0), dict(noise=-0.1)],
)
def test_invalid_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        S.SyntheticConfig(**{**SMALL, **bad})
    with pytest.raises(DataError):
        load_data({"source": "synthetic", **SMALL, **bad}, image_size=16)


def test_load_data_exposes_k_and_rebuilds_identically():
    d = load_data("synthetic[k=3, n_train=30, n_val=6, n_test=10]", image_size=16, seed=2)
    assert d.spec["k"] == 3 and d.spec["seed"] == 2 and d.spec["image_size"] == 16
    assert d.name.startswith("synthetic-k3-") and d.image_size == 16
    assert d.train.shape == (30, 1, 16, 16) and d.test_masks.shape == (10, 1, 16, 16)
    again = load_data(d.spec)
    for key in ("train", "val", "test", "test_labels", "test_masks"):
        np.testing.assert_array_equal(getattr(d, key), getattr(again, key))
    assert again.spec == d.spec and again.name == d.name


def test_default_spec_and_name():
    d = load_data("synthetic", image_size=16)
    assert d.name == "synthetic-k4"
    assert (len(d.train), len(d.val), len(d.test), int(d.test_labels.sum())) == (1000, 200, 400, 200)


def test_fine_detail_adds_small_factors_and_keeps_masks_exact():
    plain, detailed = _gen(), _gen(detail=0.1)
    diff = detailed["train"] - plain["train"]
    # The anatomy (k factors) is unchanged; the detail is a small, organ-bound perturbation.
    assert 0 < np.abs(diff).max() <= 0.1 * S.SyntheticConfig().detail_grid**2
    assert np.abs(diff).mean() < 0.05
    assert (diff[plain["train"] == -1.0] == 0).all()  # nothing on the background
    ab = detailed["test_labels"] == 1
    np.testing.assert_array_equal(detailed["test_masks"][ab], detailed["test"][ab] != detailed["test_normal_base"])
    np.testing.assert_array_equal(_gen(detail=0.1)["train"], detailed["train"])


def _pca_auroc(data, latent_sizes):
    """Test AUROC of PCA reconstruction error fitted on the normal training images: the linear
    limit of an AE of each latent size (the best a linear code of that size can do)."""
    from sklearn.metrics import roc_auc_score

    train = data.train.reshape(len(data.train), -1).astype(np.float64)
    mean = train.mean(axis=0)
    components = np.linalg.svd(train - mean, full_matrices=False)[2]
    test = data.test.reshape(len(data.test), -1) - mean
    out = {}
    for d in latent_sizes:
        residual = test - (test @ components[:d].T) @ components[:d]
        out[d] = roc_auc_score(data.test_labels, (residual ** 2).mean(axis=1))
    return out


def test_the_shortcut_preset_has_an_interior_peak_in_its_linear_limit():
    """Small codes miss the normal detail, codes as large as the detail copy the lesion too."""
    data = load_data("synthetic:shortcut[n_train=600,n_val=50,n_test=400]", image_size=32)
    auroc = _pca_auroc(data, (1, 2, 4, 8, 16, 32, 64, 128))
    peak = max(auroc, key=auroc.get)
    assert 1 < peak < 64, auroc
    # 0.05: the gap; the PCA limit has gaps of ~0.25 on each side (n_test = 400: AUROC sd ~0.02)
    assert auroc[peak] > auroc[1] + 0.05 and auroc[peak] > auroc[128] + 0.05, auroc


def test_detail_block_lesions_stay_in_range_and_have_exact_masks():
    config = dict(k=2, detail=0.3, detail_grid=4, lesion_type="detail_block", lesion_block=2, lesion_level=1.0)
    out = _gen(**config)
    ab = out["test_labels"] == 1
    change = np.abs(out["test"][ab] - out["test_normal_base"])
    masks = out["test_masks"][ab]
    assert masks.any(axis=(1, 2, 3)).all()
    assert (change[masks] > S.BLOCK_MASK_THRESHOLD).all() and (change[~masks] <= S.BLOCK_MASK_THRESHOLD).all()
    assert not out["test_masks"][~ab].any()
    # A block at lesion_level 1 is a normal image whose block bumps sit at the edge of the range:
    # re-rendering the lesion-free image with those amplitudes gives the lesion image back.
    rng = np.random.default_rng(0)
    factors = S.sample_factors(rng, 3, 2)
    detail = rng.uniform(-0.3, 0.3, size=(3, 16))
    base, _ = S.render_normal(factors, 32, detail)
    lesioned, _ = S.add_detail_block_lesions(base, factors, detail, 32, np.random.default_rng(1),
                                             S.SyntheticConfig(**config))
    expected = []
    for i in range(3):  # find each image's block: the bumps whose amplitude became +-0.3
        candidates = []
        for row in range(3):
            for col in range(3):
                changed = detail[i].copy()
                for sign in (-1.0, 1.0):
                    changed[[row * 4 + col, row * 4 + col + 1, row * 4 + col + 4, row * 4 + col + 5]] = sign * 0.3
                    image = S.render_normal(factors[i:i + 1], 32, changed[None])[0][0]
                    candidates.append(np.abs(image - lesioned[i]).max())
        expected.append(min(candidates))
    assert max(expected) < 1e-6
    weaker = _gen(**{**config, "lesion_level": 0.5})
    assert np.abs(weaker["test"][ab] - weaker["test_normal_base"]).sum() < change.sum()


@pytest.mark.parametrize("bad, message", [
    ({"lesion_type": "scratch"}, "lesion_type must be one of blob, detail_block"),
    ({"lesion_type": "detail_block"}, "needs detail > 0"),
    ({"detail": 0.2, "detail_grid": 3, "lesion_block": 4}, "lesion_block must be from 1 to detail_grid=3"),
    ({"lesion_level": 0.0}, r"lesion_level must be in \(0, 2\]"),
])
def test_bad_lesion_settings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        S.SyntheticConfig(**bad)


def test_presets_are_spec_shortcuts_and_an_unknown_one_lists_them():
    data = load_data("synthetic:shortcut[n_train=20,n_val=4,n_test=8]", image_size=16)
    assert data.spec["lesion_type"] == "detail_block" and data.spec["n_train"] == 20
    again = load_data(data.spec)  # the spec dict holds every field: no preset needed to rebuild
    np.testing.assert_array_equal(again.test, data.test)
    with pytest.raises(DataError, match="unknown synthetic preset 'nope'; the presets are shortcut"):
        load_data("synthetic:nope")
