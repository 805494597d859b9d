"""minimenet/data/folders.py: layouts and pairing, benchmark folders as they are downloaded, subsets and
the decoded-sample cache."""

import numpy as np
import pytest

from minimenet.data import DatasetError, DatasetWarning, SaliencyDataset

from conftest import make_msra_folder, make_split_folder, quiet_dataset, square_mask, write_image, write_mask


def test_msra10k_layout_pairs_by_stem(tmp_path):
    dataset = SaliencyDataset(make_msra_folder(tmp_path / "d"))
    assert dataset.layout == "MSRA10K"
    assert dataset.stems == ["a", "b", "c"]
    sample = dataset.load(1)
    assert sample.stem == "b" and sample.image.shape == (10, 12, 3) and sample.image.dtype == np.uint8
    assert sample.mask.dtype == bool and sample.mask.sum() == 20


def test_split_layout_pairs_by_stem(tmp_path):
    dataset = SaliencyDataset(make_split_folder(tmp_path / "d"))
    assert dataset.layout == "split"
    assert dataset.stems == ["a", "b", "c"]
    assert dataset.samples[0].image.name == "a.png" and dataset.samples[0].mask.name == "a.bmp"


def test_missing_masks_and_images_are_reported_not_fatal(tmp_path):
    root = make_msra_folder(tmp_path / "d")
    write_image(root / "lonely_image.jpg")
    write_mask(root / "lonely_mask.png", square_mask())
    with pytest.warns(DatasetWarning) as records:
        dataset = SaliencyDataset(root)
    messages = " ".join(str(record.message) for record in records)
    assert "1 images have no mask" in messages and "lonely_image" in messages
    assert "1 masks have no image" in messages and "lonely_mask" in messages
    assert dataset.stems == ["a", "b", "c"]
    assert dataset.unpaired_images == ["lonely_image"] and dataset.unpaired_masks == ["lonely_mask"]
    assert "1 images without mask, 1 masks without image" in dataset.summary()


def test_empty_folder_error_names_the_accepted_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is empty") as error:
        SaliencyDataset(tmp_path / "empty")
    assert "MSRA10K" in str(error.value) and "images/" in str(error.value)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        SaliencyDataset(tmp_path / "nowhere")


def test_wrong_layout_error_says_what_was_found(tmp_path):
    root = tmp_path / "d"
    (root / "Imgs").mkdir(parents=True)
    (root / "notes.txt").write_text("hello")
    write_image(root / "Imgs" / "a.jpg")
    with pytest.raises(DatasetError) as error:
        SaliencyDataset(root)
    message = str(error.value)
    assert "no image-mask pairs" in message and "Imgs/" in message and ".txt" in message
    assert "accepted layouts" in message


def test_images_folder_without_masks_folder_is_named(tmp_path):
    (tmp_path / "d" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="has images/ but no masks/"):
        SaliencyDataset(tmp_path / "d")


def test_cache_respects_its_byte_budget(tmp_path):
    root = make_msra_folder(tmp_path / "d")
    uncached = SaliencyDataset(root, cache_bytes=0)
    first = uncached.load(0)
    assert uncached.load(0) is not first
    cached = SaliencyDataset(root)
    assert cached.load(0) is cached.load(0)


def test_subset_shares_the_dataset_and_rejects_unknown_stems(tmp_path):
    dataset = SaliencyDataset(make_msra_folder(tmp_path / "d"))
    subset = dataset.subset(["c", "a"])
    assert subset.stems == ["a", "c"] and subset.load(1).stem == "c"
    with pytest.raises(DatasetError, match="not usable pairs"):
        dataset.subset(["zz"])


def make_pair_folders(root, image_folder, mask_folder, stems=("0001", "0002", "0003"),
                      image_suffix=".jpg", mask_suffix=".png"):
    (root / image_folder).mkdir(parents=True)
    (root / mask_folder).mkdir(parents=True)
    for number, stem in enumerate(stems):
        write_image(root / image_folder / f"{stem}{image_suffix}", seed=number)
        write_mask(root / mask_folder / f"{stem}{mask_suffix}", square_mask())
    return root


@pytest.mark.parametrize("layout, image_folder, mask_folder, image_suffix", [
    ("DUTS-TR", "DUTS-TR-Image", "DUTS-TR-Mask", ".jpg"),
    ("DUTS-TE", "DUTS-TE-Image", "DUTS-TE-Mask", ".jpg"),
    ("ECSSD", "images", "ground_truth_mask", ".jpg"),
    ("HKU-IS", "imgs", "gt", ".png"),  # HKU-IS ships its photographs as PNG
    ("DUT-OMRON", "DUT-OMRON-image", "pixelwiseGT-new-PNG", ".jpg"),
    ("PASCAL-S", "Imgs", "Masks", ".jpg"),
    ("PASCAL-S", "imgs/pascal", "masks/pascal", ".jpg"),  # the authors' salObj/datasets folder
    ("image/ + mask/", "image", "mask", ".jpg"),  # PASCAL-S, SOD and others in several repositories
    ("Imgs/ + GT/", "Imgs", "GT", ".jpg"),  # SOD
    ("split", "images", "masks", ".jpg"),  # the built-in name, and ../shared/data/sod200
])
def test_benchmark_split_layouts_are_detected_and_paired(tmp_path, layout, image_folder, mask_folder, image_suffix):
    root = make_pair_folders(tmp_path / "bench", image_folder, mask_folder, image_suffix=image_suffix)
    write_image(root / image_folder / f"only_image{image_suffix}")  # unpaired files are still left out
    (root / "readme.txt").write_text("benchmark notes")
    dataset = quiet_dataset(root)
    assert dataset.layout == layout and layout in dataset.summary()
    assert dataset.stems == ["0001", "0002", "0003"] and dataset.unpaired_images == ["only_image"]
    pair = dataset.samples[1]
    assert pair.image == root / image_folder / f"0002{image_suffix}" and pair.mask == root / mask_folder / "0002.png"
    assert dataset.load(0).mask.sum() == 20


def test_msra10k_zip_and_msra_b_flat_folders(tmp_path):
    # MSRA10K_Imgs_GT.zip unpacks to MSRA10K_Imgs_GT/Imgs/ holding NAME.jpg and NAME.png (and a
    # Readme.txt beside Imgs/); MSRA-B and the flat ECSSD/SOD copies are one folder of both.
    zipped = tmp_path / "MSRA10K_Imgs_GT"
    zipped.mkdir()
    make_msra_folder(zipped / "Imgs", stems=("75", "76"))
    (zipped / "Readme.txt").write_text("MSRA10K")
    dataset = SaliencyDataset(zipped)
    assert dataset.layout == "MSRA10K (Imgs/)" and dataset.stems == ["75", "76"]
    assert dataset.samples[0].image == zipped / "Imgs" / "75.jpg"
    flat = SaliencyDataset(make_msra_folder(tmp_path / "MSRA-B", stems=("0_1_1339", "0_2_2")))
    assert flat.layout == "MSRA10K" and flat.stems == ["0_1_1339", "0_2_2"]


def test_a_named_pair_of_folders_wins_over_a_generic_one(tmp_path):
    # ECSSD unpacked beside an unrelated, empty gt/ folder: images/ + ground_truth_mask/ is used.
    root = make_pair_folders(tmp_path / "ECSSD", "images", "ground_truth_mask", stems=("0001",))
    (root / "gt").mkdir()
    dataset = SaliencyDataset(root)
    assert dataset.layout == "ECSSD" and dataset.stems == ["0001"]


def test_image_and_mask_folders_with_no_names_in_common_are_explained(tmp_path):
    root = tmp_path / "d"
    make_pair_folders(root, "Imgs", "GT", stems=("a",))
    (root / "GT" / "a.png").rename(root / "GT" / "a_gt.png")
    with pytest.raises(DatasetError) as error:
        SaliencyDataset(root)
    message = str(error.value)
    assert "no image-mask pairs" in message and "Imgs/ and GT/" in message and "accepted layouts" in message
    assert "DUTS-TE-Image/" in message and "ground_truth_mask/" in message
