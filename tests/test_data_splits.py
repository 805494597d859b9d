"""minimenet/data/splits.py: the MSRA10K split, splits by fractions and from lists, and the training
splits (train, validation, test) with their size flags."""

import pytest

from minimenet import data
from minimenet.data import DatasetError, training_splits


@pytest.mark.parametrize("count", [3, 4, 7, 12, 19])
def test_every_default_split_of_three_or_more_pairs_has_all_three_parts(count):
    stems = [f"{i:03d}" for i in range(count)]
    splits = training_splits(stems, seed=0)
    assert all(len(splits[name]) >= 1 for name in ("train", "val", "test"))
    assert sorted(sum(splits.values(), [])) == stems


def test_split_sizes_have_flags_and_an_impossible_split_says_which():
    stems = [f"{i:03d}" for i in range(30)]
    splits = training_splits(stems, seed=0, val_count=4, test_count=0)
    assert [len(splits[name]) for name in ("train", "val", "test")] == [26, 4, 0]
    with pytest.raises(ValueError, match="--val-count"):
        training_splits(stems[:2], seed=0)
    with pytest.raises(ValueError, match="--val-count.*--test-count"):
        training_splits(stems, seed=0, val_count=20, test_count=10)


MSRA_STEMS = [f"{number:04d}" for number in range(10000)]


def test_msra10k_split_counts_and_determinism():
    splits = data.split_msra10k(MSRA_STEMS, seed=3)
    assert [len(splits[name]) for name in ("train", "val", "test")] == [8500, 500, 1000]
    assert set().union(*splits.values()) == set(MSRA_STEMS)
    assert splits == data.split_msra10k(list(reversed(MSRA_STEMS)), seed=3)  # order of input irrelevant
    assert splits != data.split_msra10k(MSRA_STEMS, seed=4)


def test_msra10k_split_with_a_test_list(tmp_path):
    held_out = MSRA_STEMS[::10]
    list_file = tmp_path / "msra1k.txt"
    list_file.write_text("# MSRA1K\n" + "\n".join(stem + ".jpg" for stem in held_out) + "\n\n")
    assert data.read_stem_list(list_file) == held_out
    splits = data.split_msra10k(MSRA_STEMS, test_stems=data.read_stem_list(list_file))
    assert splits["test"] == held_out
    assert len(splits["val"]) == 500 and len(splits["train"]) == 8500
    assert not set(splits["train"]) & set(held_out)


def test_msra10k_split_refuses_a_small_dataset():
    with pytest.raises(DatasetError, match="split_by_fractions"):
        data.split_msra10k(MSRA_STEMS[:100])


def test_split_by_fractions_adds_up_and_is_seeded():
    stems = [str(number) for number in range(101)]
    splits = data.split_by_fractions(stems, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert [len(splits[name]) for name in ("train", "val", "test")] == [81, 10, 10]
    assert sorted(sum(splits.values(), [])) == sorted(stems)
    assert splits == data.split_by_fractions(stems, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    with pytest.raises(DatasetError, match="add up to 1"):
        data.split_by_fractions(stems, {"train": 0.8, "val": 0.1})


def test_split_from_lists(tmp_path):
    (tmp_path / "test.txt").write_text("b\nd\n")
    (tmp_path / "val.txt").write_text("a\n")
    splits = data.split_from_lists(["a", "b", "c", "d", "e"], {"test": tmp_path / "test.txt",
                                                               "val": tmp_path / "val.txt"}, remainder="train")
    assert splits == {"test": ["b", "d"], "val": ["a"], "train": ["c", "e"]}
    (tmp_path / "bad.txt").write_text("zz\n")
    with pytest.raises(DatasetError, match="not in the dataset"):
        data.split_from_lists(["a"], {"test": tmp_path / "bad.txt"})
