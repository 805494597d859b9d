"""minimenet/data/synthetic_set.py: the synthetic data set on disk: deterministic, reused or
regenerated, and where it is kept."""
import json

import pytest

from minimenet import data
from minimenet.data import DatasetError, SaliencyDataset

from conftest import write_image


def test_synthetic_set_is_deterministic_and_loadable(tmp_path):
    first = data.make_synthetic_dataset(tmp_path / "one", count=4, seed=3)
    second = data.make_synthetic_dataset(tmp_path / "two", count=4, seed=3)
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    dataset = SaliencyDataset(first)
    assert dataset.layout == "MSRA10K" and len(dataset) == 4
    sizes = set()
    for index in range(4):
        sample = dataset.load(index)
        sizes.add(sample.image.shape[:2])
        assert 80 <= min(sample.image.shape[:2]) and max(sample.image.shape[:2]) <= 128
        assert 0.05 < sample.mask.mean() < 0.6
    assert len(sizes) > 1


def test_synthetic_set_is_reused_or_regenerated(tmp_path):
    root = data.make_synthetic_dataset(tmp_path / "s", count=2, seed=0)
    stamp = (root / "00000.jpg").stat().st_mtime_ns
    data.make_synthetic_dataset(root, count=2, seed=0)
    assert (root / "00000.jpg").stat().st_mtime_ns == stamp  # reused
    (root / data.synthetic_set._SYNTHETIC_MARKER).unlink()  # as if writing had been interrupted before the marker
    data.make_synthetic_dataset(root, count=2, seed=0)
    assert (root / data.synthetic_set._SYNTHETIC_MARKER).exists()
    (root / "mine.txt").write_text("not generated")
    (root / data.synthetic_set._SYNTHETIC_MARKER).unlink()
    with pytest.raises(DatasetError, match="holds files other than a synthetic set"):
        data.make_synthetic_dataset(root, count=2, seed=0)
    data.make_synthetic_dataset(tmp_path / "t", count=3, seed=0)
    data.make_synthetic_dataset(tmp_path / "t", count=2, seed=1)  # different parameters: regenerated
    assert sorted(path.name for path in (tmp_path / "t").glob("*.jpg")) == ["00000.jpg", "00001.jpg"]
    assert not list(tmp_path.glob(".*partial*"))


def test_default_synthetic_root_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIMENET_DATA", str(tmp_path / "here"))
    assert data.default_synthetic_root() == tmp_path / "here"
    monkeypatch.delenv("MINIMENET_DATA")
    # The version is in the folder's name: a cache of the first generator (synthetic-v1) is never reused.
    assert data.SYNTHETIC_VERSION >= 2
    assert data.default_synthetic_root().name == f"synthetic-v{data.SYNTHETIC_VERSION}"


def test_each_seed_has_its_own_synthetic_folder(monkeypatch, tmp_path):
    # Runs with different seeds at once once rewrote one shared folder under each other.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("MINIMENET_DATA", raising=False)
    roots = {seed: data.default_synthetic_root(seed) for seed in (0, 1, 2)}
    assert len(set(roots.values())) == 3 and roots[1].name == f"synthetic-v{data.SYNTHETIC_VERSION}-seed1"
    first = data.make_synthetic_dataset(count=3, seed=1, min_side=32, max_side=40)
    second = data.make_synthetic_dataset(count=3, seed=2, min_side=32, max_side=40)
    assert first == roots[1] and second == roots[2]
    assert (first / "00000.jpg").read_bytes() != (second / "00000.jpg").read_bytes()
    assert data.make_synthetic_dataset(count=3, seed=1, min_side=32, max_side=40) == first  # both still there


def test_a_set_of_an_older_generator_version_is_regenerated(tmp_path):
    root = data.make_synthetic_dataset(tmp_path / "s", count=2, seed=0)
    marker = json.loads((root / data.synthetic_set._SYNTHETIC_MARKER).read_text())
    assert marker["version"] == data.SYNTHETIC_VERSION
    fresh = {path.name: path.read_bytes() for path in root.iterdir()}
    # As an older minimenet left it: its own marker version and its own pictures.
    marker["version"] = 1
    (root / data.synthetic_set._SYNTHETIC_MARKER).write_text(json.dumps(marker))
    write_image(root / "00000.jpg", 90, 100)
    data.make_synthetic_dataset(root, count=2, seed=0)
    assert {path.name: path.read_bytes() for path in root.iterdir()} == fresh
    assert not list(tmp_path.glob(".*partial*"))
