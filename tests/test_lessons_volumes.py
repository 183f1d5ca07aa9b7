"""Tests of the volumes lesson's logic (lessons/volumes.py) and drawing (viz/volumes.py), without Streamlit."""

import numpy as np
import pytest

import kernels
from lessons import volumes
from scans import read_sample
from viz.volumes import orthogonal_views, voxel_from_click


def test_a_2d_kernel_cannot_tell_a_ball_from_a_tube_and_a_3d_kernel_can():
    demo = volumes.sphere_and_tube()
    # Through the middle both are the same disc: slice by slice, the same answer at both centres.
    np.testing.assert_array_equal(demo.volume[demo.sphere[0], :, :demo.volume.shape[2] // 2],
                                  demo.volume[demo.tube[0], :, demo.volume.shape[2] // 2:])
    assert demo.flat[demo.sphere] == demo.flat[demo.tube] > 0
    # The 3-D kernel answers the ball at least 1.5 times more strongly, and most strongly there.
    assert demo.deep[demo.sphere] > 1.5 * demo.deep[demo.tube] > 0
    peak = np.unravel_index(int(np.argmax(demo.deep)), demo.deep.shape)
    assert np.abs(np.subtract(peak, demo.sphere)).max() <= 1
    # Along the tube the 2-D kernel answers on every slice; the 3-D one keeps its answer to the ball's slices.
    assert np.all(demo.flat[:, demo.tube[1], demo.tube[2]] == demo.flat[demo.tube])
    assert demo.flat[0, demo.sphere[1], demo.sphere[2]] == 0
    # The answers are kernels.conv3d's, with the lesson's kernels.
    np.testing.assert_array_equal(demo.deep, kernels.conv3d(demo.volume, demo.deep_kernel, padding="same",
                                                            padding_mode="replicate"))


def test_working_volume_averages_whole_blocks_of_a_large_slice():
    volume = np.arange(2 * 600 * 520, dtype=np.float32).reshape(2, 600, 520)
    smaller, factor = volumes.working_volume(volume)
    assert factor == 3 and smaller.shape == (2, 200, 173)
    np.testing.assert_allclose(smaller[1, 0, 0], volume[1, :3, :3].mean(), rtol=1e-6)
    same, one = volumes.working_volume(volume[:, :100, :100])
    assert one == 1 and same.shape == (2, 100, 100)


def test_region_bounds_shift_inside_the_volume_and_shrink_only_when_it_is_smaller():
    assert volumes.region_bounds((48, 128, 128), (24, 64, 64), 4, 6) == ((22, 26), (61, 67), (61, 67))
    assert volumes.region_bounds((48, 128, 128), (0, 127, 1), 4, 6) == ((0, 4), (122, 128), (0, 6))
    assert volumes.region_bounds((3, 5, 128), (1, 2, 3), 4, 6) == ((0, 3), (0, 5), (0, 6))


@pytest.mark.parametrize("aspect", [1.0, 2.2])
def test_a_click_on_each_plane_chooses_the_voxel_drawn_there(aspect):
    volume = np.random.default_rng(1).random((12, 40, 50)).astype(np.float32)
    voxel = (7, 13, 31)
    picture, layout = orthogonal_views(volume, voxel, aspect=aspect, height=200)
    assert picture.dtype == np.uint8 and picture.shape[:2] == layout.size
    for top, left, height, width in layout.boxes:
        # The cyan lines cross at the voxel: a click there chooses it again.
        rows = np.where((picture[top:top + height, left:left + width] == (0, 200, 255)).all(axis=2).all(axis=1))[0]
        cols = np.where((picture[top:top + height, left:left + width] == (0, 200, 255)).all(axis=2).all(axis=0))[0]
        assert voxel_from_click(layout, top + rows[0] + 0.5, left + cols[0] + 0.5, voxel, volume.shape) == voxel
    top, left, height, width = layout.boxes[1]  # coronal: the top row is the last slice
    assert voxel_from_click(layout, top + 1, left + width - 1, voxel, volume.shape) == (11, 13, 49)
    assert voxel_from_click(layout, 0, 0, voxel, volume.shape) == voxel  # the title band: nothing changes


def test_a_typed_kernel_is_read_or_refused_with_what_to_correct():
    kernel = volumes.parse_kernel("1 0 -1\n2 0 -2\n1 0 -1\n\n1, 2, 1\n0, 0, 0\n-1, -2, -1\n")
    assert kernel.shape == (2, 3, 3) and kernel.dtype == np.float32
    np.testing.assert_array_equal(volumes.parse_kernel(volumes.kernel_text(kernel)), kernel)
    for text, message in (("", "at least one number"), ("1 2\n3", "rows of different lengths"),
                          ("1 x", "not all numbers: '1 x'"), ("1 2\n3 4\n\n1 2 3", "different shapes"),
                          ("\n".join(["1 " * 9] * 9), "at most 7"), ("1e9", "from -100 to 100")):
        with pytest.raises(ValueError, match=message):
            volumes.parse_kernel(text)


def test_stage_table_counts_voxels_and_multiply_adds():
    rows = volumes.stage_table((48, 128, 128), (3, 3, 3), 2)
    assert [row.shape for row in rows] == [(48, 128, 128), (48, 128, 128), (24, 64, 64), (24, 64, 64), (12, 32, 32)]
    assert rows[1].multiply_adds == 48 * 128 * 128 * 27 and rows[2].multiply_adds == 0
    assert rows[2].voxels * 8 == rows[1].voxels
    outputs = volumes.run_stages(np.random.default_rng(2).random((8, 16, 16)).astype(np.float32),
                                 kernels.KERNELS_3D["sobel x"].weights, 2)
    assert [output.shape for output in outputs] == [(4, 8, 8), (2, 4, 4)]
    assert all(output.min() >= 0 for output in outputs)  # after ReLU


def test_the_field_of_a_3d_stage_is_a_box_across_slices_around_the_voxel():
    size, box = volumes.stage_field((3, 3, 3), 2, (48, 128, 128), (20, 60, 70))
    assert size == (10, 10, 10)
    for (start, stop), index in zip(box, (20, 60, 70)):
        assert stop - start == 10 and start <= index < stop
    size, box = volumes.stage_field((5, 3, 3), 1, (48, 128, 128), (0, 0, 0))
    assert size == (6, 4, 4) and box[0] == (0, 4)  # clipped at the first slice (padding holds no voxels)


def test_clips_are_told_from_volumes_and_their_frame_differences_are_the_changes():
    assert volumes.is_clip(read_sample("Echocardiogram clip"))
    assert not volumes.is_clip(read_sample("Chest CT volume"))
    assert not volumes.is_clip(read_sample("Head MR volume"))
    clip = np.random.default_rng(3).random((5, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(volumes.frame_differences(clip), np.diff(clip, axis=0), atol=1e-6)


def test_slice_aspect_uses_the_slice_spacing():
    ct = read_sample("Chest CT volume")
    assert volumes.slice_aspect(ct) == pytest.approx(5.0 / 2.28125)
    assert volumes.slice_aspect(ct, 2) == pytest.approx(5.0 / 4.5625)


def test_a_deep_series_is_averaged_in_plane_to_keep_the_working_volume_small():
    volume = np.zeros((300, 512, 512), dtype=np.float32)
    smaller, factor = volumes.working_volume(volume)
    assert smaller.shape == (300, 128, 128) and factor == 4  # the slices stay the series' own
    assert smaller.size <= volumes.WORKING_VOXELS
