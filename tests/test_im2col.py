"""minimenet/im2col.py: the blocks a convolution's input is cut into, and its copies.

The copies themselves are checked through the primitives that use them (``test_conv_cpu.py``,
in every chunking, and ``test_threads.py``, on two workers); here, that the blocks cover every
output row of every image once, in the shapes those tests need, within the budgets, and shared
evenly among the workers, and that the stacked rows (read in place, not copied) are what they say.
"""
import numpy as np
import pytest

from minimenet import im2col
from minimenet.conv_geometry import ConvGeometry

from test_conv_cpu import CASES, budgets, case_arrays, set_budget


def test_the_blocks_are_what_the_conv_cpu_tests_need(monkeypatch):
    """Bands of one row and of several with a shorter last one, one image per block, a shorter
    last block, and the whole batch: all occur, and each budget's blocks cover every output row of
    every image once, in order."""
    kinds = set()
    for case in CASES:
        x, w, _, stride, padding = case_arrays(case, "float64")
        geometry = ConvGeometry.of(x.shape, w.shape, stride, padding, "test")
        for budget in budgets(case):
            set_budget(monkeypatch, budget)
            blocks = list(im2col.blocks(geometry))
            covered = [(first + i, row + r) for first, n, row, rows in blocks for i in range(n) for r in range(rows)]
            assert covered == [(i, r) for i in range(geometry.batch) for r in range(geometry.out_height)]
            for first, n, row, rows in blocks:
                if rows < geometry.out_height:
                    kinds.add("short band" if rows < blocks[0][3] else "one-row band" if rows == 1 else "band")
                else:
                    kinds.add("short block" if n < blocks[0][1] else "one image" if n == 1 else
                              "whole batch" if n == geometry.batch else "images")
    assert {"one-row band", "band", "short band", "one image", "images", "short block", "whole batch"} <= kinds


def test_images_go_several_to_a_block_only_under_the_band_budget(monkeypatch):
    """An image over BAND_BUDGET is cut into bands even when COLUMNS_BUDGET would hold several."""
    geometry = ConvGeometry.of((5, 2, 6, 6), (3, 2, 3, 3), 1, 1, "test")  # 18 x 36 = 648 elements an image
    monkeypatch.setattr(im2col, "COLUMNS_BUDGET", 3 * 648)
    monkeypatch.setattr(im2col, "BAND_BUDGET", 648)
    assert [(n, rows) for _, n, _, rows in im2col.blocks(geometry)] == [(3, 6), (2, 6)]
    monkeypatch.setattr(im2col, "BAND_BUDGET", 647)
    assert [(n, rows) for _, n, _, rows in im2col.blocks(geometry)] == [(1, 3), (1, 3)] * 5  # even bands
    monkeypatch.setattr(im2col, "BAND_BUDGET", 2 * 108 - 1)  # one row under two rows: six bands of one
    assert [(n, rows) for _, n, _, rows in im2col.blocks(geometry)] == [(1, 1)] * 30


def test_bands_are_as_even_as_the_rows_allow_the_longer_first(monkeypatch):
    """7 rows at most 3 to a band: 3, 2, 2 (not 3, 3, 1, whose turns among two workers would
    give one of them all the long bands)."""
    geometry = ConvGeometry.of((2, 2, 7, 7), (3, 2, 3, 3), 1, 1, "test")  # 18 x 7 = 126 elements a row
    monkeypatch.setattr(im2col, "BAND_BUDGET", 3 * 126)
    assert list(im2col.blocks(geometry)) == [(0, 1, 0, 3), (0, 1, 3, 2), (0, 1, 5, 2),
                                             (1, 1, 0, 3), (1, 1, 3, 2), (1, 1, 5, 2)]


@pytest.mark.parametrize("fitting,shares,expected", [
    (4, 1, [(4, 6), (1, 6)]),
    (4, 2, [(2, 6), (2, 6), (1, 3), (1, 3)]),           # 2 + 2 images, and the fifth in halves
    (1, 2, [(1, 6)] * 4 + [(1, 3)] * 2),
    (4, 3, [(1, 6)] * 3 + [(1, 2)] * 6),                # 1 + 1 + 1, and two images in thirds
    (5, 2, [(5, 6)]), (9, 2, [(5, 6)])])
def test_several_blocks_of_images_are_shared_evenly_among_the_workers(fitting, shares, expected, monkeypatch):
    """A batch of 5 that takes several blocks gives each worker an even share of whole images
    and an even share of the bands that the images left over are cut into, in the turns that the
    workers take them (worker k: blocks k, k + shares, ...); a batch in one block stays one."""
    geometry = ConvGeometry.of((5, 2, 6, 6), (3, 2, 3, 3), 1, 1, "test")  # 648 elements an image
    monkeypatch.setattr(im2col, "COLUMNS_BUDGET", fitting * 648)
    blocks = list(im2col.blocks(geometry, shares=shares))
    assert [(n, rows) for _, n, _, rows in blocks] == expected
    covered = sorted((first + i, row + r) for first, n, row, rows in blocks for i in range(n) for r in range(rows))
    assert covered == [(i, r) for i in range(5) for r in range(6)]
    if len(blocks) > 1:  # (one block is shared by its product's rows instead)
        assert len({sum(n * rows for _, n, _, rows in blocks[k::shares]) for k in range(shares)}) == 1


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_stacked_rows_hold_the_rows_each_output_row_reads_in_place(dtype):
    """Item (b, r), row (u, i), column c of ``stacked_rows`` is relu(x scale + shift)[b, i,
    row + r - ph + u, c - pw], zero outside the image, for bands at the top, inside and at the
    bottom, with padding of 2 rows (all the kernel reaches) and 3 columns (more); and it is a view
    of one buffer whose rows each output row shares with the next, not a copy per row."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 5)).astype(dtype)
    scale, shift = np.linspace(0.5, 2, 3).astype(dtype), np.linspace(-0.3, 0.2, 3).astype(dtype)
    relu_x = np.maximum(x * scale.reshape(-1, 1, 1) + shift.reshape(-1, 1, 1), 0)
    geometry = ConvGeometry.of(x.shape, (4, 3, 3, 2), 1, (2, 3), "test")  # 9 x 10 outputs
    for row, rows in [(0, 3), (3, 4), (7, 2), (0, geometry.out_height)]:
        for affine, source in [(None, x), ((scale, shift), relu_x)]:
            stacked = im2col.stacked_rows(x, geometry, row, rows, affine)
            assert stacked.shape == (2, rows, 3 * 3, 5 + 2 * 3) and stacked.base is not None
            expected = np.zeros(stacked.shape, dtype)
            for r in range(rows):
                for u in range(3):
                    p = row + r - 2 + u
                    if 0 <= p < 7:
                        expected[:, r, u * 3:(u + 1) * 3, 3:3 + 5] = source[:, :, p]
            np.testing.assert_array_equal(stacked, expected)
            if rows > 1:  # row u + 1 of output row r is row u of output row r + 1: the same memory
                assert np.shares_memory(stacked[:, 0, 3:], stacked[:, 1, :-3])
