"""3-D volumes as slice data: NIfTI and DICOM reading, slicing, intensities, patient splits, errors, CLI."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Installed by the dev extra, which the test command installs: a missing one must fail, not skip
# (test_missing_nibabel_names_the_extra covers a user without them).
import nibabel as nib
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from entropy_ae.data import DataError, load_data, parse_spec
from entropy_ae.data import volumes
from entropy_ae.data._volume_io import read_volume
from entropy_ae.data.volumes import DEFAULTS, WINDOW_PRESETS, load_with_sources

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (24, 16, 12)  # slices along axis 2 are 24 x 16: not square, so they are padded
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
# Test volumes: {name: [(slice index, side of the square lesion), ...]}; lesion voxels = side ** 2.
TESTS = {"t0_flair": [(4, 4), (5, 1)], "t1_flair": [(6, 3)], "h0_flair": []}


def _volume(vid: int, lesions=()):
    """A body of texture (slices 0 and 11 empty), brighter per volume id; bright square lesions."""
    rng = np.random.default_rng(vid)
    a = np.zeros(SHAPE, np.float32)
    a[3:21, 2:14, 1:11] = 100 + 10 * vid + rng.uniform(0, 50, (18, 12, 10))
    seg = np.zeros(SHAPE, np.uint8)
    for k, side in lesions:
        a[8:8 + side, 5:5 + side, k] = 400
        seg[8:8 + side, 5:5 + side, k] = 1
    return a, seg


def _save(path: Path, array, affine=AFFINE, zooms=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(array), affine)
    if zooms is not None:
        img.header.set_zooms(zooms)
    nib.save(img, str(path))


def make_root(tmp_path: Path, n_train: int = 4, tests=TESTS, name: str = "study") -> Path:
    root = tmp_path / name
    for i in range(n_train):
        _save(root / "train" / f"p{i}.nii.gz", _volume(i)[0])
    for j, (stem, lesions) in enumerate(tests.items()):
        image, seg = _volume(100 + j, lesions)
        _save(root / "test" / f"{stem}.nii.gz", image)
        _save(root / "labels" / f"{stem.replace('flair', 'seg')}.nii.gz", seg)
    return root


@pytest.fixture
def root(tmp_path):
    return make_root(tmp_path)


# --------------------------------------------------------------------------------------- NIfTI


def test_nifti_spec_is_json_and_rebuilds_the_data_exactly(root):
    spec = parse_spec(f"nifti:{root}[min_lesion_voxels=2]", image_size=16)
    assert spec == {**DEFAULTS, "source": "nifti", "path": str(root), "min_lesion_voxels": 2, "image_size": 16,
                    "seed": 0}
    data = load_data(spec)
    assert json.loads(json.dumps(data.spec)) == data.spec == spec
    again = load_data(json.loads(json.dumps(data.spec)))
    for key in ("train", "val", "test", "test_labels", "test_masks"):
        np.testing.assert_array_equal(getattr(data, key), getattr(again, key), err_msg=key)
    assert data.train.shape[1:] == (1, 16, 16) and data.train.dtype == np.float32
    assert data.train.min() >= -1 and data.train.max() <= 1
    assert data.name.startswith("study-nifti-")  # a hash of the non-default option: its own run paths
    assert load_data(f"nifti:{root}", image_size=16).name == "study-nifti"


def test_a_plain_folder_of_nifti_volumes_is_a_nifti_spec(root):
    assert parse_spec(str(root), image_size=16) == parse_spec(f"nifti:{root}", image_size=16)


def test_labels_and_masks_come_from_the_segmentation(root):
    data, sources = load_with_sources(parse_spec(f"nifti:{root}[min_lesion_voxels=2]", image_size=24))
    by_source = dict(zip(sources["test"], data.test_labels))
    assert by_source[("t0_flair", 4)] == 1 and by_source[("t1_flair", 6)] == 1  # 16 and 9 lesion voxels
    assert ("t0_flair", 5) not in by_source  # 1 lesion voxel < 2: ambiguous, left out
    assert by_source[("t0_flair", 3)] == 0 and all(by_source[("h0_flair", k)] == 0 for k in range(1, 11))
    assert int(data.test_labels.sum()) == 2
    # image_size 24 = the padded slice side: no resizing, so the mask is the segmentation slice, padded
    i = sources["test"].index(("t0_flair", 4))
    expected = np.zeros((24, 24), bool)
    expected[8:12, 4 + 5:4 + 9] = True  # 16 columns padded by 4 on each side
    np.testing.assert_array_equal(data.test_masks[i, 0], expected)
    assert not data.test_masks[data.test_labels == 0].any()
    with_one = load_data(f"nifti:{root}", image_size=24)  # default: one voxel makes a slice abnormal
    assert int(with_one.test_labels.sum()) == 3


def test_non_square_slices_are_padded_with_background(root):
    data, sources = load_with_sources(parse_spec(f"nifti:{root}[min_foreground=0]", image_size=24))
    image = data.train[sources["train"].index(("p1", 5)), 0] if ("p1", 5) in sources["train"] else \
        data.val[sources["val"].index(("p1", 5)), 0]
    assert (image[:, :4] == -1).all() and (image[:, -4:] == -1).all()  # the padding
    assert (image[3:21, 6:18] > -1).mean() > 0.95  # the body


def _expected_slice(vid: int, k: int) -> np.ndarray:
    """Slice k of volume vid as the loader should give it at image_size 24: 1-99 % normalised, padded."""
    a = _volume(vid)[0]
    fg = a[a > a.min()]
    low, high = np.percentile(fg, [1, 99])
    out = np.full((24, 24), -1.0, np.float32)
    out[:, 4:20] = np.clip((a[:, :, k] - low) / (high - low) * 2 - 1, -1, 1)
    return out


def test_patient_level_split_never_shares_a_volume(tmp_path):
    big = make_root(tmp_path, n_train=10, name="big")
    held_out = set()
    for seed in range(4):
        data, sources = load_with_sources(parse_spec(f"nifti:{big}[val_fraction=0.3]", image_size=24, seed=seed))
        vols = {split: {v for v, _ in src} for split, src in sources.items()}
        assert len(vols["val"]) == 3 and len(vols["train"]) == 7 and vols["test"] == set(TESTS)
        assert not vols["train"] & vols["val"] and not vols["train"] & vols["test"] and not vols["val"] & vols["test"]
        # whole volumes are held out: each has all its non-empty slices in its one split
        for split in ("train", "val"):
            for v in vols[split]:
                assert sorted(k for w, k in sources[split] if w == v) == list(range(1, 11))
        # and the provenance is true: every image is its claimed volume's slice
        for split in ("train", "val"):
            for image, (v, k) in zip(getattr(data, split), sources[split]):
                np.testing.assert_allclose(image[0], _expected_slice(int(v[1:]), k), atol=1e-5)
        held_out.add(tuple(sorted(vols["val"])))
    assert len(held_out) > 1  # the seed chooses the held-out volumes


def test_a_val_folder_is_used_as_is(root):
    _save(root / "val" / "v0.nii.gz", _volume(50)[0])
    data, sources = load_with_sources(parse_spec(f"nifti:{root}", image_size=16))
    assert {v for v, _ in sources["val"]} == {"v0"} and {v for v, _ in sources["train"]} == {"p0", "p1", "p2", "p3"}


def test_training_slices_with_lesions_are_left_out(root):
    image, seg = _volume(7, [(3, 2)])
    _save(root / "train" / "p9.nii.gz", image)
    _save(root / "labels" / "p9_seg.nii.gz", seg)
    _, sources = load_with_sources(parse_spec(f"nifti:{root}", image_size=16))
    kept = {k for v, k in sources["train"] + sources["val"] if v == "p9"}
    assert kept == set(range(1, 11)) - {3}


def test_slice_axis_range_and_foreground(root):
    _, src = load_with_sources(parse_spec(f"nifti:{root}[slice_range=3,6]", image_size=16))
    assert {k for _, k in src["train"] + src["val"] + src["test"]} == {3, 4, 5}
    _, src = load_with_sources(parse_spec(f"nifti:{root}[min_foreground=0]", image_size=16))
    assert {k for _, k in src["train"]} == set(range(12))  # the empty end slices too
    _, src = load_with_sources(parse_spec(f"nifti:{root}", image_size=16))
    assert {k for _, k in src["train"]} == set(range(1, 11))  # default 0.01: empty slices skipped
    _, src = load_with_sources(parse_spec(f"nifti:{root}[min_foreground=0.5]", image_size=16))
    assert {k for _, k in src["train"]} == set(range(1, 11))  # the body covers 56 % of a slice
    _expect(f"nifti:{root}[min_foreground=0.6]", "lesion-free training slices", "min_foreground")
    data, src = load_with_sources(parse_spec(f"nifti:{root}[axis=0]", image_size=16))
    assert {k for _, k in src["train"]} == set(range(3, 21)) and data.train.shape[1:] == (1, 16, 16)


def test_mr_percentile_normalisation_per_volume(root):
    data, src = load_with_sources(parse_spec(f"nifti:{root}[percentiles=5,95]", image_size=24))
    a = _volume(2)[0]
    fg = a[a > a.min()]
    low, high = np.percentile(fg, [5, 95])
    expected = np.clip((a[:, :, 5] - low) / (high - low) * 2 - 1, -1, 1)
    where = "train" if ("p2", 5) in src["train"] else "val"
    got = getattr(data, where)[src[where].index(("p2", 5)), 0][:, 4:20]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, _expected_slice(2, 5)[:, 4:20], atol=1e-3)  # other percentiles, other values


def test_ct_windows_in_hounsfield_units(tmp_path):
    root = tmp_path / "ct"
    hu = np.full((16, 16, 6), -1000.0, np.float32)  # air
    hu[4:12, 4:12, 1:5] = 40.0  # brain-window level: maps to 0
    hu[6:8, 6:8, 1:5] = 500.0  # above the window: 1
    for i in range(3):
        _save(root / "train" / f"c{i}.nii.gz", hu + i)
    lesion = np.zeros(hu.shape, np.uint8)
    lesion[5, 5, 2] = 1
    _save(root / "test" / "c9.nii.gz", hu + 9)
    _save(root / "labels" / "c9.nii.gz", lesion)
    data = load_data(f"nifti:{root}[window=brain]", image_size=16)
    assert data.spec["window"] == list(WINDOW_PRESETS["brain"]) and data.spec["modality"] == "auto"
    img = data.train[0, 0]
    assert img[0, 0] == -1 and img[7, 7] == 1 and img[4, 4] == pytest.approx((40 - 0) / 80 * 2 - 1, abs=0.03)
    same = load_data(f"nifti:{root}[window=0,80]", image_size=16)
    np.testing.assert_array_equal(same.train, data.train)
    lung = load_data(f"nifti:{root}", image_size=16, volume_options={"window": "lung"})
    assert lung.spec["window"] == [-1350.0, 150.0] and lung.train[0, 0, 0, 0] > -1  # air inside the lung window


# --------------------------------------------------------------------------------------- DICOM


CT5N = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests" / "98892001" / "CT5N"


def test_pydicom_test_series_is_ordered_by_position_with_rescale():
    vol = read_volume(CT5N)
    files = {p.name: pydicom.dcmread(p) for p in CT5N.iterdir()}
    z = {name: float(ds.ImagePositionPatient[2]) for name, ds in files.items()}
    order = sorted(z, key=z.get)  # position along the normal (0, 0, 1), not file names or instance numbers
    assert vol.array.shape == (16, 16, 5) and vol.modality == "CT"
    for k, name in enumerate(order):
        ds = files[name]
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(vol.array[:, :, k], hu.T)
    assert vol.spacing == pytest.approx((0.488281, 0.488281, 2.5))
    ipp = [float(v) for v in files[order[0]].ImagePositionPatient]
    np.testing.assert_allclose(vol.affine[:3, 3], [-ipp[0], -ipp[1], ipp[2]])  # LPS -> RAS


def _series(folder: Path, n: int = 4, step: float = 2.5, uid: str | None = None, slope: float = 1.0,
            intercept: float = -1024.0, skip=(), offset: int = 0):
    """Copies of pydicom's CT_small.dcm as one series, file names in reverse order of position."""
    src = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    uid = uid or generate_uid(entropy_srcs=[folder.name])
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        if k in skip:
            continue
        ds = copy.deepcopy(src)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[folder.name, str(k)])
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-158.1, -179.0, -75.7 + k * step]
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = (src.pixel_array + 7 * k + offset).astype(src.pixel_array.dtype).tobytes()
        ds.save_as(folder / f"IM{n - k:03d}.dcm")
    return uid


def test_dicom_study_loads_with_a_window(tmp_path):
    root = tmp_path / "dicom"
    for i in range(3):
        _series(root / "train" / f"s{i}", n=4, offset=3 * i)
    _series(root / "test" / "x0", n=4, offset=100)
    grid = read_volume(root / "test" / "x0")
    seg = np.zeros(grid.array.shape, np.uint8)
    seg[40:60, 40:60, 2] = 1
    _save(root / "labels" / "x0.nii.gz", seg, grid.affine)
    data, src = load_with_sources(parse_spec(f"dicom:{root}[window=soft_tissue]", image_size=32))
    assert data.spec["source"] == "dicom" and data.test.shape[1:] == (1, 32, 32)
    assert dict(zip(src["test"], data.test_labels)) == {("x0", 0): 0, ("x0", 1): 0, ("x0", 2): 1, ("x0", 3): 0}
    assert data.test_masks[2].any() and not data.test_masks[[0, 1, 3]].any()
    assert {v for v, _ in src["val"]} and not {v for v, _ in src["val"]} & {v for v, _ in src["train"]}
    # slope and intercept are applied: slope 2 doubles HU offsets from the intercept
    _series(tmp_path / "rescaled", n=2, slope=2.0, intercept=-2048.0)
    raw = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array.astype(np.float32)
    np.testing.assert_array_equal(read_volume(tmp_path / "rescaled").array[:, :, 0], (raw * 2 - 2048).T)
    with pytest.raises(DataError, match="is CT: give a window"):
        load_data(f"dicom:{root}", image_size=32)


def test_dicom_series_errors(tmp_path):
    uid_gap = _series(tmp_path / "gap", n=5, skip=(2,))  # positions 0, 2.5, -, 7.5, 10 mm; files IM005 (k=0) .. IM001
    with pytest.raises(DataError) as err:
        read_volume(tmp_path / "gap")
    for fragment in (f"DICOM series {tmp_path / 'gap'} has missing slices", "a gap of 5 mm between IM004.dcm "
                     "(InstanceNumber 2) and IM002.dcm (InstanceNumber 4)", "2.5 mm apart (about 1 missing)",
                     "copy the complete series into the folder"):
        assert fragment in str(err.value), str(err.value)
    real_gap = CT5N.parents[1] / "77654033" / "CT2"  # pydicom's own series with a hole in it
    with pytest.raises(DataError, match="missing slices"):
        read_volume(real_gap)
    uid_mixed = _series(tmp_path / "mixed", n=3)
    shutil.copy(next((tmp_path / "gap").iterdir()), tmp_path / "mixed" / "stray.dcm")
    with pytest.raises(DataError) as err:
        read_volume(tmp_path / "mixed")
    for fragment in (f"DICOM folder {tmp_path / 'mixed'} mixes 2 series", f"{uid_mixed}: 3 files",
                     f"{uid_gap}: 1 files", "put each series in its own folder (one folder = one volume)"):
        assert fragment in str(err.value), str(err.value)
    _series(tmp_path / "junk", n=2)
    (tmp_path / "junk" / "notes.txt").write_text("not dicom")
    with pytest.raises(DataError, match=r"notes.txt is not a readable DICOM file"):
        read_volume(tmp_path / "junk")
    _series(tmp_path / "dup", n=2, step=0.0)
    with pytest.raises(DataError, match="same position"):
        read_volume(tmp_path / "dup")


# --------------------------------------------------------------------------------------- errors


def _expect(spec, *fragments, **kwargs):
    with pytest.raises(DataError) as err:
        load_data(spec, image_size=16, **kwargs)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    return str(err.value)


def test_image_and_segmentation_must_agree(root):
    image, seg = _volume(1, [(4, 3)])
    _save(root / "labels" / "t1_seg.nii.gz", seg[:, :, :10])
    _expect(f"nifti:{root}", "t1_seg.nii.gz", "has shape (24, 16, 10)", "t1_flair.nii.gz has shape (24, 16, 12)",
            "voxel grid", "resample it onto the image")
    _save(root / "labels" / "t1_seg.nii.gz", seg, np.diag([1.0, 1.0, 3.0, 1.0]))
    _expect(f"nifti:{root}", "t1_seg.nii.gz", "voxel spacing 1x1x3 mm", "t1_flair.nii.gz has 1x1x2 mm",
            "resample it onto the image")
    # spacing in the header alone (same affine): still the spacing error, not a silent pass
    _save(root / "labels" / "t1_seg.nii.gz", seg, AFFINE, zooms=(1.0, 1.0, 2.5))
    _expect(f"nifti:{root}", "t1_seg.nii.gz", "voxel spacing 1x1x2.5 mm")
    shifted = AFFINE.copy()
    shifted[:3, 3] = [5.0, 0.0, 0.0]
    _save(root / "labels" / "t1_seg.nii.gz", seg, shifted)
    _expect(f"nifti:{root}", "t1_seg.nii.gz", "t1_flair.nii.gz have different affines", "the image's affine")


def test_empty_and_broken_volumes(root):
    _save(root / "train" / "p0.nii.gz", np.zeros(SHAPE, np.float32))
    _expect(f"nifti:{root}", "train volume", "p0.nii.gz is empty", "every voxel has the value 0", "remove it")
    (root / "train" / "p0.nii.gz").write_bytes(b"truncated")
    _expect(f"nifti:{root}", "cannot read NIfTI file", "p0.nii.gz")
    _save(root / "train" / "p0.nii.gz", np.zeros((4, 4, 4, 2), np.float32))
    _expect(f"nifti:{root}", "4-D", "one 3-D volume per file")


def test_layout_errors(root, tmp_path):
    (root / "labels" / "h0_seg.nii.gz").unlink()
    _expect(f"nifti:{root}", "h0_flair.nii.gz has no segmentation", "all zeros for a healthy volume")
    make_root(tmp_path, name="leak")
    shutil.copy(tmp_path / "leak" / "train" / "p1.nii.gz", tmp_path / "leak" / "test" / "p1.nii.gz")
    _expect(f"nifti:{tmp_path / 'leak'}", "'p1' is in both train/ and test/", "leak")
    other = make_root(tmp_path, name="copy")
    shutil.copy(other / "train" / "p1.nii.gz", other / "train" / "p1_copy.nii.gz")
    _expect(f"nifti:{other}", "p1_copy.nii.gz has the same voxels as", "remove the copy")
    one = make_root(tmp_path, n_train=1, name="one")
    _expect(f"nifti:{one}", "need at least 2", "ROOT/val/")
    _expect(f"nifti:{tmp_path / 'nowhere'}", "does not exist", "ROOT/train/")
    _expect(f"dicom:{root}", "holds no DICOM series", "nifti: spec")
    no_abnormal = make_root(tmp_path, tests={"h0": [], "h1": []}, name="healthy")
    _expect(f"nifti:{no_abnormal}", "no test slice", "abnormal")


@pytest.mark.parametrize("options, fragments", [
    ("window=skull", ["unknown CT window 'skull'", "brain"]),
    ("window=80,0", ["high end must exceed"]),
    ("percentiles=1,120", ["0 <= LOW < HIGH <= 100"]),
    ("axis=3", ["axis=", "[0, 2]"]),
    ("slice_range=5,2", ["START,STOP"]),
    ("min_lesion_voxels=0", ["min_lesion_voxels"]),
    ("min_foreground=2", ["min_foreground"]),
    ("colour=red", ["unknown volume option", "colour"]),
    ("modality=mr,window=brain", ["CT only"]),
    ("modality=pet", ["modality"]),
    ("axis", ["not 'key=value'"]),
])
def test_bad_volume_options(root, options, fragments):
    _expect(f"nifti:{root}[{options}]", *fragments)


def test_volume_options_on_other_data_are_refused():
    _expect("digits", "only apply to 'nifti:' / 'dicom:'", volume_options={"window": "lung"})


def test_option_given_twice(root):
    _expect(f"nifti:{root}[axis=1]", "given both", volume_options={"axis": "2"})


def test_missing_nibabel_names_the_extra(root, monkeypatch):
    monkeypatch.setitem(sys.modules, "nibabel", None)  # makes `import nibabel` fail
    _expect(f"nifti:{root}", "pip install 'entropy-ae[medical]'")


def test_nibabel_and_pydicom_load_only_for_volumes():
    probe = ("import sys; from entropy_ae.data import load_data; load_data('digits', image_size=16); "
             "print(sorted(m for m in ('nibabel', 'pydicom') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------ CLI


def test_cli_options_match_the_volume_options():
    from entropy_ae.options import VOLUME_OPTIONS

    assert {key for _, key, _, _ in VOLUME_OPTIONS} == set(DEFAULTS) - {"val_fraction"}
    helps = {key: text for _, key, _, text in VOLUME_OPTIONS}
    assert "(default 1,99)" in helps["percentiles"] and DEFAULTS["percentiles"] == [1.0, 99.0]
    assert f"(default {DEFAULTS['axis']})" in helps["axis"]
    assert f"(default {DEFAULTS['min_foreground']})" in helps["min_foreground"]
    assert f"(default {DEFAULTS['min_lesion_voxels']})" in helps["min_lesion_voxels"]
    assert all(name in helps["window"] for name in WINDOW_PRESETS)


def test_cli_volume_options_reach_the_spec(root):
    from analysis.cli import build_parser
    from entropy_ae.options import load_data_from_args

    args = build_parser().parse_args(["train", "--data", f"nifti:{root}", "--out", "x", "--window=-160,240",
                                      "--slice-range", "2,8", "--min-lesion-voxels", "2"])
    data = load_data_from_args(args, image_size=16)
    assert data.spec["window"] == [-160.0, 240.0] and data.spec["slice_range"] == [2, 8]
    assert data.spec["min_lesion_voxels"] == 2


@pytest.mark.filterwarnings("ignore:only .* normal validation images")  # tiny volumes, few val slices
def test_nifti_study_end_to_end_from_the_cli(tmp_path, capsys):
    from analysis.cli import main

    study = make_root(tmp_path, n_train=5)
    data = ["--data", f"nifti:{study}", "--min-lesion-voxels", "2"]
    run = tmp_path / "run"
    assert main(["train", *data, "--image-size", "16", "--epochs", "1", "--latent-size", "2", "--device", "cpu",
                 "--out", str(run), "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["source"] == "nifti" and config["data"]["min_lesion_voxels"] == 2
    assert main(["evaluate", str(run), "--device", "cpu", "--json"]) == 0  # rebuilt from config.json
    sweep = tmp_path / "sweep"
    assert main(["sweep", *data, "--image-size", "16", "--latent-sizes", "1,2", "--seeds", "0", "--epochs", "1",
                 "--out", str(sweep), "--executor", "sequential", "--device", "cpu", "--quiet"]) == 0
    assert (sweep / "results.csv").is_file()
    assert main(["report", str(sweep), "--no-paper-reference"]) == 0
    assert (sweep / "report.md").is_file()
    capsys.readouterr()
    assert main(["recommend", str(sweep)]) == 0
    assert json.loads(capsys.readouterr().out)["latent_size"] in (1, 2)
    assert main(["recommend", *data, "--image-size", "16"]) == 0
    assert json.loads(capsys.readouterr().out)["criterion"] == "intrinsic_dimension"
    assert main(["train", "--data", f"nifti:{study}[axis=7]", "--out", str(tmp_path / "bad")]) == 2
    assert "axis" in capsys.readouterr().err


def test_volume_module_reports_its_spec_example():
    assert volumes.match("nifti:/x[axis=1]") and volumes.match("dicom:/x") and not volumes.match("digits")
