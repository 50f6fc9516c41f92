"""Data loaders: spec strings and dicts, digits, folders (two layouts), MedMNIST .npz, arrays, errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from entropy_ae.data import DataError, from_arrays, load_data

ARRAYS = ("train", "val", "test", "test_labels", "test_masks")


def _same(a, b):
    for key in ARRAYS:
        x, y = getattr(a, key), getattr(b, key)
        assert (x is None) == (y is None), key
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=key)


def _check_contract(d, size):
    assert d.image_size == size
    for arr in (d.train, d.val, d.test):
        assert arr.dtype == np.float32 and arr.ndim == 4 and arr.shape[1:] == (1, size, size)
        assert arr.min() >= -1.0 and arr.max() <= 1.0
    assert d.test_labels.dtype == np.int64 and d.test_labels.shape == (len(d.test),)
    assert set(np.unique(d.test_labels).tolist()) == {0, 1}
    if d.test_masks is not None:
        assert d.test_masks.dtype == bool and d.test_masks.shape == d.test.shape
    json.dumps(d.spec)
    assert all(c.isalnum() or c in "._-" for c in d.name)


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def _img(rng, size=20):
    return rng.integers(0, 256, size=(size, size))


def _disc_mask(size=20, value=255):
    yy, xx = np.mgrid[:size, :size]
    return np.where((yy - 10) ** 2 + (xx - 8) ** 2 < 16, value, 0)


# ----------------------------------------------------------------------------- digits


def test_digits_split_sizes_and_balance():
    d = load_data("digits", image_size=16)
    _check_contract(d, 16)
    assert d.name == "digits-0" and d.spec == {"source": "digits", "normal_class": 0, "image_size": 16, "seed": 0}
    # 178 zeros: 30% test (53), 10% val (18), the rest (107) train; 53 abnormal test images.
    assert (len(d.train), len(d.val), len(d.test), int(d.test_labels.sum())) == (107, 18, 106, 53)
    _same(d, load_data(d.spec))


def test_digits_normal_images_are_the_chosen_class():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    d = load_data("digits:3", image_size=8)  # 8x8: no resizing, images comparable exactly
    originals = bunch.images.reshape(len(bunch.images), -1) / 16.0 * 2.0 - 1.0

    def classes(images):
        flat = images.reshape(len(images), -1)
        idx = [np.flatnonzero(np.abs(originals - x).max(axis=1) < 1e-6) for x in flat]
        assert all(len(i) >= 1 for i in idx)
        return np.array([bunch.target[i[0]] for i in idx])

    assert (classes(d.train) == 3).all() and (classes(d.val) == 3).all()
    test_classes = classes(d.test)
    assert (test_classes[d.test_labels == 0] == 3).all() and (test_classes[d.test_labels == 1] != 3).all()
    # Abnormal images spread evenly over the nine other classes.
    counts = np.bincount(test_classes[d.test_labels == 1], minlength=10)
    others = np.delete(counts, 3)
    assert others.max() - others.min() <= 1


@pytest.mark.parametrize("spec", ["digits:12", "digits:-1"])
def test_digits_empty_class(spec):
    with pytest.raises(DataError, match="no images"):
        load_data(spec)


# ----------------------------------------------------------------------------- spec strings


@pytest.mark.parametrize(
    "spec, match",
    [
        ("synthetc", "valid data specs"),
        ("digits:x", "integer 0..9"),
        ("synthetic[k=4,n_train]", "key=value"),
        ("synthetic[k=4,bogus=3]", "unknown synthetic parameter 'bogus'"),
        ("synthetic[k=four]", "k='four' is not a valid int"),
        ("synthetic[k=2,k=3]", "given twice"),
        ("synthetic[k=12]", "k must be from 1 to 8"),
    ],
)
def test_malformed_specs(spec, match):
    with pytest.raises(DataError, match=match):
        load_data(spec, image_size=16)


def test_bad_spec_types_and_arguments(tmp_path):
    with pytest.raises(DataError, match="string or a dict"):
        load_data(3)
    with pytest.raises(DataError, match="image_size"):
        load_data("synthetic", image_size=0)
    with pytest.raises(DataError, match="only applies to '.npz'"):
        load_data("digits", normal_labels=[0])
    with pytest.raises(DataError, match="source"):
        load_data({"source": "mnist"})
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="not a '.npz' file"):
        load_data(str(tmp_path / "x.txt"))


def test_missing_folder_and_npz(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_data(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="does not exist"):
        load_data(str(tmp_path / "nowhere.npz"))


def test_dict_spec_is_authoritative():
    d = load_data("synthetic[n_train=20,n_val=4,n_test=8]", image_size=16, seed=5)
    # A rebuild with other arguments still gives the recorded data (the spec is the full recipe).
    _same(d, load_data(d.spec, image_size=64, seed=0))


# ----------------------------------------------------------------------------- folders


def _medianomaly(root, rng, masks=False, n_train=6):
    names = {"train": [f"tr{i}.png" for i in range(n_train)], "n": ["tn0.png", "tn1.png"], "a": ["ta0.png", "ta1.png"]}
    for n in names["train"] + names["n"] + names["a"]:
        _png(root / "images" / n, _img(rng))
    (root / "data.json").write_text(json.dumps({"train": {"0": names["train"]}, "test": {"0": names["n"], "1": names["a"]}}))
    if masks:
        for n in names["a"]:
            _png(root / "masks" / n, _disc_mask())
    return names


def test_medianomaly_folder_without_masks(tmp_path):
    _medianomaly(tmp_path / "rsna_small", np.random.default_rng(0))
    d = load_data(str(tmp_path / "rsna_small"), image_size=16)
    _check_contract(d, 16)
    assert d.name == "rsna_small" and d.test_masks is None
    assert (len(d.train), len(d.val)) == (5, 1)  # 10% of 6, at least one, held out with the seed
    assert d.test_labels.tolist() == [0, 0, 1, 1]
    _same(d, load_data(d.spec))


def test_medianomaly_folder_pixel_values_and_masks(tmp_path):
    root = tmp_path / "brats"
    rng = np.random.default_rng(1)
    _medianomaly(root, rng, masks=True)
    _png(root / "images" / "tn0.png", np.full((20, 20), 255))  # known intensities: white and black
    _png(root / "images" / "tn1.png", np.zeros((20, 20)))
    d = load_data(str(root), image_size=20)  # same size: no interpolation
    np.testing.assert_array_equal(d.test[0], 1.0)
    np.testing.assert_array_equal(d.test[1], -1.0)
    expected = _disc_mask() > 0
    assert not d.test_masks[:2].any()
    np.testing.assert_array_equal(d.test_masks[2, 0], expected)
    np.testing.assert_array_equal(d.test_masks[3, 0], expected)
    small = load_data(str(root), image_size=16)
    assert small.test_masks[2].sum() > 0 and small.test_masks.shape == (4, 1, 16, 16)


def test_medianomaly_val_list_is_used(tmp_path):
    root = tmp_path / "ds"
    names = _medianomaly(root, np.random.default_rng(2))
    index = json.loads((root / "data.json").read_text())
    index["val"] = {"0": names["train"][:2]}
    index["train"] = {"0": names["train"][2:]}
    (root / "data.json").write_text(json.dumps(index))
    d = load_data(str(root), image_size=16)
    assert (len(d.train), len(d.val)) == (4, 2)


def _mvtec(root, rng, masks=False):
    for i in range(5):
        _png(root / "train" / "good" / f"{i:03d}.png", _img(rng))
    _png(root / "test" / "good" / "000.png", _img(rng))
    for defect in ("crack", "hole"):
        _png(root / "test" / defect / "000.png", _img(rng))
        if masks:
            _png(root / "ground_truth" / defect / "000_mask.png", _disc_mask())


def test_mvtec_folder_with_and_without_masks(tmp_path):
    rng = np.random.default_rng(3)
    _mvtec(tmp_path / "plain", rng)
    d = load_data(str(tmp_path / "plain"), image_size=16)
    _check_contract(d, 16)
    assert d.test_masks is None and d.test_labels.tolist() == [0, 1, 1] and len(d.train) + len(d.val) == 5
    _mvtec(tmp_path / "masked", rng, masks=True)
    d = load_data(str(tmp_path / "masked"), image_size=20)
    assert not d.test_masks[0].any()
    np.testing.assert_array_equal(d.test_masks[1, 0], _disc_mask() > 0)
    np.testing.assert_array_equal(d.test_masks[2, 0], _disc_mask() > 0)
    _same(d, load_data(d.spec))


def test_brats_style_folder_with_annotation(tmp_path):
    # MedIAnomaly's BraTS2021 layout: train/ images, test/normal, test/tumor, test/annotation (flair -> seg).
    root, rng = tmp_path / "BraTS2021", np.random.default_rng(4)
    for i in range(4):
        _png(root / "train" / f"s{i}_flair.png", _img(rng))
    _png(root / "test" / "normal" / "n0_flair.png", _img(rng))
    _png(root / "test" / "tumor" / "t0_flair.png", _img(rng))
    _png(root / "test" / "annotation" / "t0_seg.png", _disc_mask())
    d = load_data(str(root), image_size=20)
    assert d.test_labels.tolist() == [0, 1]
    np.testing.assert_array_equal(d.test_masks[1, 0], _disc_mask() > 0)


def test_folder_errors(tmp_path):
    rng = np.random.default_rng(5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither 'data.json'"):
        load_data(str(tmp_path / "empty"))

    root = tmp_path / "corrupt"
    _medianomaly(root, rng)
    (root / "images" / "tr3.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"cannot read image .*tr3\.png"):
        load_data(str(root), image_size=16)

    root = tmp_path / "missing_image"
    _medianomaly(root, rng)
    (root / "images" / "ta1.png").unlink()
    with pytest.raises(DataError, match=r"ta1\.png does not exist"):
        load_data(str(root), image_size=16)

    root = tmp_path / "bad_mask_shape"
    _medianomaly(root, rng, masks=True)
    _png(root / "masks" / "ta1.png", np.zeros((12, 12)))
    with pytest.raises(DataError, match=r"mask .*ta1\.png is 12x12 pixels but its image"):
        load_data(str(root), image_size=16)

    root = tmp_path / "missing_mask"
    _medianomaly(root, rng, masks=True)
    (root / "masks" / "ta0.png").unlink()
    with pytest.raises(DataError, match=r"no mask for abnormal test image .*ta0\.png"):
        load_data(str(root), image_size=16)

    root = tmp_path / "bad_label"
    _medianomaly(root, rng)
    index = json.loads((root / "data.json").read_text())
    index["test"]["2"] = ["tn0.png"]
    (root / "data.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match=r"labels must be \"0\" \(normal\) or \"1\""):
        load_data(str(root), image_size=16)

    root = tmp_path / "bad_json"
    _medianomaly(root, rng)
    (root / "data.json").write_text("{not json")
    with pytest.raises(DataError, match=r"cannot read .*data\.json"):
        load_data(str(root), image_size=16)

    root = tmp_path / "no_abnormal"
    _mvtec(root, rng)
    for p in (root / "test" / "crack").iterdir():
        p.unlink()
    for p in (root / "test" / "hole").iterdir():
        p.unlink()
    with pytest.raises(DataError, match="no abnormal test images"):
        load_data(str(root), image_size=16)

    root = tmp_path / "empty_train"
    _medianomaly(root, rng, n_train=0)
    with pytest.raises(DataError, match="training images"):
        load_data(str(root), image_size=16)


# ----------------------------------------------------------------------------- npz


def _npz(path, rng, labels_shape="column", rgb=False, val=False, n=40):
    shape = (n, 28, 28, 3) if rgb else (n, 28, 28)
    arrays = {}
    for split in ("train", "test") + (("val",) if val else ()):
        lab = np.arange(n) % 3
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        if labels_shape == "column":
            arrays[f"{split}_labels"] = lab[:, None]
        elif labels_shape == "flat":
            arrays[f"{split}_labels"] = lab
        else:  # multi-label: 0, 1 or 2 findings
            arrays[f"{split}_labels"] = (np.arange(4)[None, :] < lab[:, None]).astype(np.uint8)
    np.savez(path, **arrays)
    return arrays


def test_npz_class_labels(tmp_path):
    arrays = _npz(tmp_path / "pneumoniamnist.npz", np.random.default_rng(6))
    d = load_data(str(tmp_path / "pneumoniamnist.npz"), image_size=16, normal_labels="0,1")
    _check_contract(d, 16)
    assert d.name == "pneumoniamnist-normal0-1" and d.spec["normal_labels"] == [0, 1]
    n_normal_train = int(np.isin(arrays["train_labels"], [0, 1]).sum())
    assert len(d.train) + len(d.val) == n_normal_train and len(d.val) == round(0.1 * n_normal_train)
    np.testing.assert_array_equal(d.test_labels, (arrays["test_labels"][:, 0] == 2).astype(int))
    _same(d, load_data(d.spec))
    # At 28x28 no resizing: grey values map linearly 0..255 -> -1..1.
    d28 = load_data(str(tmp_path / "pneumoniamnist.npz"), image_size=28, normal_labels=[0, 1])
    np.testing.assert_allclose(d28.test[:, 0], arrays["test_images"] / 127.5 - 1.0, atol=1e-6)


def test_npz_rgb_flat_labels_and_val(tmp_path):
    arrays = _npz(tmp_path / "derma.npz", np.random.default_rng(7), labels_shape="flat", rgb=True, val=True)
    d = load_data(str(tmp_path / "derma.npz"), image_size=28, normal_labels=2)
    assert len(d.val) == int((arrays["val_labels"] == 2).sum())  # the file's own validation set
    grey = arrays["test_images"].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    np.testing.assert_allclose(d.test[:, 0], grey / 127.5 - 1.0, atol=1e-5)
    assert d.test_labels.tolist() == (arrays["test_labels"] != 2).astype(int).tolist()


def test_npz_multilabel_normal_is_all_zero(tmp_path):
    arrays = _npz(tmp_path / "chest.npz", np.random.default_rng(8), labels_shape="multi")
    d = load_data(str(tmp_path / "chest.npz"), image_size=16, normal_labels=None)
    assert d.spec["normal_labels"] is None and d.name == "chest-nofinding"
    np.testing.assert_array_equal(d.test_labels, arrays["test_labels"].any(axis=1).astype(int))
    with pytest.raises(DataError, match="multi-label"):
        load_data(str(tmp_path / "chest.npz"), image_size=16, normal_labels=[1])


def test_npz_errors(tmp_path):
    rng = np.random.default_rng(9)
    arrays = _npz(tmp_path / "ok.npz", rng)
    with pytest.raises(DataError, match=r"normal label\(s\) \[7\] do not occur in train_labels"):
        load_data(str(tmp_path / "ok.npz"), image_size=16, normal_labels=[7])
    with pytest.raises(DataError, match="comma-separated"):
        load_data(str(tmp_path / "ok.npz"), image_size=16, normal_labels="a,b")
    with pytest.raises(DataError, match="test set .* has no abnormal images"):
        load_data(str(tmp_path / "ok.npz"), image_size=16, normal_labels=[0, 1, 2])
    partial = {k: v for k, v in arrays.items() if k != "test_labels"}
    np.savez(tmp_path / "partial.npz", **partial)
    with pytest.raises(DataError, match=r"partial\.npz lacks test_labels"):
        load_data(str(tmp_path / "partial.npz"))
    np.savez(tmp_path / "float.npz", **{**arrays, "train_images": arrays["train_images"] / 255.0})
    with pytest.raises(DataError, match="train_images .* has dtype float64"):
        load_data(str(tmp_path / "float.npz"))
    np.savez(tmp_path / "rows.npz", **{**arrays, "test_labels": arrays["test_labels"][:-1]})
    with pytest.raises(DataError, match="test_labels .* has 39 rows but its images have 40"):
        load_data(str(tmp_path / "rows.npz"))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"cannot read npz file .*junk\.npz"):
        load_data(str(tmp_path / "junk.npz"))


def _broken_npz(tmp_path, rng, kind):
    good = tmp_path / "good.npz"
    _npz(good, rng)
    raw = good.read_bytes()
    bad = tmp_path / f"{kind}.npz"
    if kind == "truncated":  # an interrupted download: the zip's central directory is missing
        bad.write_bytes(raw[: len(raw) // 2])
    elif kind == "random":  # neither zip nor .npy: numpy would try to unpickle it
        bad.write_bytes(rng.bytes(1000))
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "object_array":
        np.savez(bad, train_images=np.array([{"a": 1}], dtype=object))
    elif kind == "npy":
        np.save(tmp_path / "x.npy", np.zeros(3))
        bad.write_bytes((tmp_path / "x.npy").read_bytes())
    return bad


@pytest.mark.parametrize("kind, match", [
    ("truncated", "not a readable .npz file .*truncated or corrupt download\\? re-download it"),
    ("random", "not a valid .npz archive of arrays .*pickled content is refused for safety"),
    ("empty", "the file is empty \\(0 bytes\\).*re-download it"),
    ("object_array", "'train_images' is an object \\(pickled\\) array.*refused for safety"),
    ("npy", "a single .npy array, not an .npz archive"),
])
def test_unreadable_npz_files_are_a_data_error(tmp_path, kind, match):
    bad = _broken_npz(tmp_path, np.random.default_rng(13), kind)
    with pytest.raises(DataError, match=f"cannot read npz file .*{kind}\\.npz: .*{match}") as info:
        load_data(str(bad), image_size=16)
    assert "allow_pickle" not in str(info.value)  # never advise loading pickles


def _png_rect(path, rng, height, width):
    _png(path, rng.integers(0, 256, size=(height, width)))


def test_non_square_images_are_refused_by_every_loader(tmp_path):
    rng = np.random.default_rng(14)
    crop = "28x20 pixels \\(height x width\\) but must be square.*crop or pad them to square first"
    arrays = _npz(tmp_path / "square.npz", rng)
    for rgb in (False, True):
        rect = rng.integers(0, 256, size=(40, 28, 20, 3) if rgb else (40, 28, 20), dtype=np.uint8)
        np.savez(tmp_path / "rect.npz", **{**arrays, "train_images": rect})
        with pytest.raises(DataError, match=f"train_images in .*rect\\.npz .*{crop}"):
            load_data(str(tmp_path / "rect.npz"), image_size=16)

    x = rng.integers(0, 256, size=(8, 28, 20), dtype=np.uint8)
    for image_size in (None, 16):  # resizing would squash them, so image_size= is no way out
        with pytest.raises(DataError, match=f"train .*{crop}"):
            from_arrays(x, x[:4], [0, 1, 0, 1], image_size=image_size)
    square = rng.integers(0, 256, size=(8, 20, 20), dtype=np.uint8)
    with pytest.raises(DataError, match=f"test .*{crop}"):
        from_arrays(square, x[:4, None], [0, 1, 0, 1], image_size=16)

    root = tmp_path / "medianomaly"
    _medianomaly(root, rng)
    _png_rect(root / "images" / "tr2.png", rng, 28, 20)
    with pytest.raises(DataError, match=f"image .*tr2\\.png: .*{crop}"):
        load_data(str(root), image_size=16)
    root = tmp_path / "mvtec"
    _mvtec(root, rng)
    _png_rect(root / "test" / "hole" / "000.png", rng, 28, 20)
    with pytest.raises(DataError, match=f"image .*hole.000\\.png: .*{crop}"):
        load_data(str(root), image_size=16)


# ----------------------------------------------------------------------------- arrays


def test_from_arrays_value_ranges_and_shapes():
    rng = np.random.default_rng(10)
    u8 = rng.integers(0, 256, size=(12, 16, 16), dtype=np.uint8)
    labels = np.array([0, 1] * 3)
    d = from_arrays(u8, u8[:6], labels, name="u8")
    np.testing.assert_allclose(d.test[:, 0], u8[:6] / 127.5 - 1.0, atol=1e-6)
    assert (len(d.train), len(d.val)) == (11, 1)
    unit = u8 / 255.0
    d01 = from_arrays(unit[:, None], unit[:6, None], labels, value_range=(0, 1), val=unit[:2])
    np.testing.assert_allclose(d01.test, d.test, atol=1e-6)
    assert len(d01.train) == 12 and len(d01.val) == 2
    t = torch.as_tensor(unit * 2 - 1, dtype=torch.float32)
    dt = from_arrays(t, t[:6], torch.as_tensor(labels), value_range=(-1, 1), image_size=32)
    _check_contract(dt, 32)
    assert dt.spec["source"] == "arrays"
    with pytest.raises(DataError, match="cannot be rebuilt"):
        load_data(dt.spec)


def test_from_arrays_masks():
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, size=(8, 16, 16), dtype=np.uint8)
    masks = np.zeros((4, 16, 16), dtype=bool)
    masks[1, 4:8, 4:8] = True
    d = from_arrays(x, x[:4], [0, 1, 0, 1], test_masks=masks, image_size=32)
    assert d.test_masks.shape == (4, 1, 32, 32) and d.test_masks[1].sum() == 64  # nearest: 4x4 -> 8x8
    with pytest.raises(DataError, match="test_masks has shape"):
        from_arrays(x, x[:4], [0, 1, 0, 1], test_masks=masks[:, :8])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(value_range=None, floats=True), "pass value_range"),
        (dict(value_range=(0, 1), floats=True, scale=2.0), "outside value_range"),
        (dict(labels=[0, 1, 2, 1]), r"values \[2\] outside \{0, 1\}"),
        (dict(labels=[0, 0, 0, 0]), "only label 0"),
        (dict(labels=[0, 1, 0]), "one label per test image"),
        (dict(name="a/b"), "filesystem-safe"),
        (dict(nan=True), "NaN"),
        (dict(value_range=(1, 0), floats=True), "high > low"),
    ],
)
def test_from_arrays_errors(kwargs, match):
    rng = np.random.default_rng(12)
    x = rng.uniform(0, 1, size=(8, 16, 16))
    if not kwargs.get("floats") and not kwargs.get("nan"):
        x = (x * 255).astype(np.uint8)
    if "scale" in kwargs:
        x = x * kwargs["scale"]
    if kwargs.get("nan"):
        x[0, 0, 0] = np.nan
    vr = kwargs.get("value_range", (0, 1) if kwargs.get("nan") else None)
    with pytest.raises(DataError, match=match):
        from_arrays(x, x[:4], kwargs.get("labels", [0, 1, 0, 1]), name=kwargs.get("name", "arrays"), value_range=vr)
