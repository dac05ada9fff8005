"""Face alignment geometry and image operations (paper section 2.1.2)."""

from __future__ import annotations

import numpy as np
import pytest

from emotiw_utils import faces


def _similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = np.radians(angle_deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.concatenate([r, [[tx], [ty]]], axis=1)


SHAPE = np.array([[16.8, 21.1], [31.1, 21.0], [24.0, 30.0], [17.7, 37.2], [30.4, 37.2]])


@pytest.mark.parametrize("params", [(1.0, 0.0, 0.0, 0.0), (0.79, 3.0, 5.0, 3.6), (2.5, -40.0, -12.0, 7.5),
                                    (0.3, 170.0, 100.0, -50.0)])
def test_fit_similarity_recovers_a_known_transform(params):
    m = _similarity(*params)
    dst = faces.apply_similarity(m, SHAPE)
    fit = faces.fit_similarity(SHAPE, dst)
    np.testing.assert_allclose(fit, m, atol=1e-9)
    p = faces.similarity_parameters(fit)
    assert p["scale"] == pytest.approx(params[0]) and p["rotation_deg"] == pytest.approx(params[1])


def test_fit_similarity_is_the_least_squares_solution_and_never_reflects():
    rng = np.random.default_rng(0)
    noisy = faces.apply_similarity(_similarity(1.3, 10.0, 2.0, -1.0), SHAPE) + rng.normal(0, 0.3, SHAPE.shape)
    fit = faces.fit_similarity(SHAPE, noisy)
    # The same problem as a linear least-squares system in (a, b, tx, ty): x' = a x - b y + tx, y' = b x + a y + ty.
    x, y = SHAPE[:, 0], SHAPE[:, 1]
    one, zero = np.ones(5), np.zeros(5)
    design = np.concatenate([np.c_[x, -y, one, zero], np.c_[y, x, zero, one]])
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, np.concatenate([noisy[:, 0], noisy[:, 1]]), rcond=None)
    np.testing.assert_allclose(fit, [[a, -b, tx], [b, a, ty]], atol=1e-9)
    mirrored = SHAPE * [-1, 1]
    assert np.linalg.det(faces.fit_similarity(SHAPE, mirrored)[:, :2]) > 0  # rotation, not a mirror


def test_fit_similarity_rejects_bad_points():
    with pytest.raises(ValueError, match="NaN"):
        faces.fit_similarity(np.full((5, 2), np.nan), SHAPE)
    with pytest.raises(ValueError, match="identical"):
        faces.fit_similarity(np.ones((5, 2)), SHAPE)
    with pytest.raises(ValueError, match="same shape"):
        faces.fit_similarity(SHAPE[:4], SHAPE)


def test_compose_and_invert():
    a, b = _similarity(2.0, 30.0, 1.0, 2.0), _similarity(0.5, -10.0, -3.0, 4.0)
    pts = SHAPE
    np.testing.assert_allclose(faces.apply_similarity(faces.compose(a, b), pts),
                               faces.apply_similarity(a, faces.apply_similarity(b, pts)))
    np.testing.assert_allclose(faces.compose(a, faces.invert_similarity(a)), [[1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_mean_shape_ignores_rows_without_a_face():
    kps = np.stack([SHAPE, SHAPE + 2, np.full((5, 2), np.nan)])
    np.testing.assert_allclose(faces.mean_shape(kps), SHAPE + 1)
    with pytest.raises(ValueError, match="no image"):
        faces.mean_shape(np.full((2, 5, 2), np.nan))


def test_dataset_alignment_maps_mean_shape_onto_target():
    rng = np.random.default_rng(1)
    m = _similarity(1.25, 2.0, -4.0, -5.0)
    src_mean = faces.apply_similarity(faces.invert_similarity(m), SHAPE)
    kps = src_mean + rng.normal(0, 0.5, (200, 5, 2))
    al = faces.fit_dataset_alignment("TFD", kps, SHAPE)
    assert al.n_images == 200 and al.residual < 0.2
    back = faces.DatasetAlignment.from_dict(al.to_dict())
    np.testing.assert_allclose(back.transform, al.transform)
    fer = faces.fit_dataset_alignment("FER2013", kps, faces.mean_shape(kps))
    np.testing.assert_allclose(fer.transform, [[1, 0, 0], [0, 1, 0]], atol=1e-9)


def test_fill_missing_keypoints_uses_the_nearest_frame():
    kps = np.full((6, 5, 2), np.nan)
    kps[1], kps[4] = SHAPE, SHAPE + 10
    filled, has = faces.fill_missing_keypoints(kps)
    assert has.tolist() == [False, True, False, False, True, False]
    # frame 0 -> 1, frame 2 -> 1, frame 3 -> 4, frame 5 -> 4; ties would go to the earlier frame
    np.testing.assert_array_equal(filled[[0, 1, 2]], [SHAPE] * 3)
    np.testing.assert_array_equal(filled[[3, 4, 5]], [SHAPE + 10] * 3)
    kps[3] = np.nan
    kps[2] = np.nan
    tie = np.full((3, 5, 2), np.nan)
    tie[0], tie[2] = SHAPE, SHAPE + 1
    np.testing.assert_array_equal(faces.fill_missing_keypoints(tie)[0][1], SHAPE)
    none, has = faces.fill_missing_keypoints(np.full((3, 5, 2), np.nan))
    assert none is None and not has.any()


def test_crop_keypoints_do_not_depend_on_where_the_face_is_in_the_frame():
    base = np.stack([SHAPE * 2.0 + [40, 30]])
    moved = np.stack([SHAPE * 3.1 + [10, 55]])
    a, b = faces.crop_keypoints(base), faces.crop_keypoints(moved)
    np.testing.assert_allclose(a, b, atol=1e-9)
    assert (a > 0).all() and (a < faces.FACE_SIZE).all()  # the whole face shape is inside its box


def test_warp_identity_has_no_noise_and_shrinking_adds_a_noisy_border():
    rng = np.random.default_rng(0)
    img = np.tile(np.arange(48, dtype=np.uint8) * 5, (48, 1))
    same, frac = faces.warp_with_noisy_border(img, np.eye(2, 3), rng)
    assert frac == 0.0 and np.array_equal(same, img)
    shrink = _similarity(0.8, 0.0, 4.8, 4.8)  # like TFD onto FER2013: the crop covers the centre only
    out, frac = faces.warp_with_noisy_border(img, shrink, rng)
    assert 0.3 < frac < 0.4  # 1 - 0.8**2 = 0.36
    assert np.abs(out[24, 10:38].astype(int) - faces.apply_similarity(
        faces.invert_similarity(shrink), np.c_[np.arange(10, 38), np.full(28, 24)])[:, 0] * 5).max() <= 3
    corner = out[:3, :3].astype(float)
    assert corner.std() > 10  # noise, not a smeared copy of the edge


def test_align_static_identity_is_equalisation_only():
    rng = np.random.default_rng(0)
    imgs = rng.integers(60, 120, (4, 48, 48)).astype(np.uint8)
    al = faces.fit_dataset_alignment("FER2013", np.stack([SHAPE] * 3), SHAPE)
    np.testing.assert_array_equal(faces.align_static(imgs, al), faces.equalise(imgs))
    assert faces.equalise(imgs).max() == 255  # stretched
    with pytest.raises(ValueError, match="uint8"):
        faces.align_static(imgs.astype(float), al)
    tfd = faces.fit_dataset_alignment("TFD", np.stack([SHAPE * 1.2 - 4.8] * 3), SHAPE)
    a, b = faces.align_static(imgs, tfd, seed=3), faces.align_static(imgs, tfd, seed=3)
    np.testing.assert_array_equal(a, b)


def test_align_frames_policy_and_flags():
    rng = np.random.default_rng(0)
    t, h, w = 5, 90, 120
    frames = rng.integers(0, 255, (t, h, w)).astype(np.uint8)
    kps = np.repeat((SHAPE * 1.5 + [20, 10])[None], t, axis=0)
    kps[2] = np.nan
    al = faces.fit_dataset_alignment("AFEW", faces.crop_keypoints(kps), SHAPE)
    fb = np.nanmean(kps, axis=0)
    out, has, no_face = faces.align_frames(frames, kps, al, fb, np.random.default_rng(1))
    assert out.shape == (t, 48, 48) and out.dtype == np.uint8
    assert has.tolist() == [True, True, False, True, True] and not no_face
    out2, has2, no_face2 = faces.align_frames(frames, None, al, fb, np.random.default_rng(1))
    assert no_face2 and not has2.any() and out2.shape == out.shape  # kept, flagged
    # keypoints shorter than the clip: the rest counts as missing
    _, has3, _ = faces.align_frames(frames, kps[:3], al, fb, np.random.default_rng(1))
    assert has3.tolist() == [True, True, False, False, False]
    with pytest.raises(ValueError, match="gray"):
        faces.align_frames(frames[..., None], kps, al, fb, rng)
