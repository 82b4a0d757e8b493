"""dha_jax.augment.ops against PIL, the reference the ops are defined by.

Every batch here has BATCH images of 48 x 64 so that `ops.apply` compiles
once per channel count and the file stays fast.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps
from sklearn.datasets import load_sample_images

from dha_jax.augment import ops

MAGNITUDES = (-1.0, -0.6, -0.2, 0.0, 0.3, 0.7, 1.0)
WIDTH, HEIGHT = 64, 48
NUM_PHOTOS = 2
BATCH = len(ops.OP_NAMES) * NUM_PHOTOS * len(MAGNITUDES)  # 196

POINT_OPS = ("AutoContrast", "Equalize", "Posterize", "Solarize", "Identity")
ENHANCE_OPS = ("Color", "Contrast", "Brightness", "Sharpness")
GEOMETRIC_OPS = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
# No magnitude (docs/method.md section 2): full strength at every m, as in PIL.
MAGNITUDE_FREE_OPS = ("AutoContrast", "Equalize", "Identity")
# Magnitudes for the magnitude-free checks: 0 (both signs), tiny and small
# ones (where a blend with |m| would be near the identity), and larger ones.
FREE_MAGNITUDES = (0.0, -0.0, 1e-6, -1e-6, 1e-3, -0.004, 0.01, -0.05, 0.1,
                   -0.25, 0.5, -0.75, 1.0, -1.0)

# Tolerances, in 8-bit levels (1 level = 1/255).
# Point ops replay PIL's integer arithmetic: every level must be equal.
POINT_MAX_LEVELS = 0
# Enhance ops replay PIL's float32 blend and truncation, and match exactly on
# this sweep. PIL computes the factor 1 + 0.9 m in double; ours can be 1 ulp
# off for other m, which moves a few pixels by one level: allow one level on
# at most 0.1% of the pixels.
ENHANCE_MAX_LEVELS = 1
ENHANCE_MAX_OFF_FRACTION = 1e-3
# Geometric ops: PIL interpolates in double and truncates to uint8, we keep
# the float, so ours - PIL is in [0, 1) level inside the image (1 level when
# float32 vs double coordinates flip PIL's truncation) and -0.5 level in
# the fill (0.5 vs 128/255). Measured: max 1.0, mean 0.36-0.42.
GEOMETRIC_MAX_LEVELS = 1.0 + 1e-3
GEOMETRIC_MEAN_LEVELS = 0.6
# m = 0 keeps every level; level ops return level / 255 as XLA computes it
# (times 1/255), within one float32 ulp of the input's numpy level / 255.
IDENTITY_ATOL = 1e-7


def _load_photos():
    photos = [Image.fromarray(a).resize((WIDTH, HEIGHT), Image.BILINEAR)
              for a in load_sample_images().images]
    return photos[:NUM_PHOTOS]


PHOTOS = {"RGB": _load_photos()}
PHOTOS["L"] = [p.convert("L") for p in PHOTOS["RGB"]]


def to_array(images):
    """PIL images -> float32 [N, H, W, C] in [0, 1]."""
    arrays = [np.asarray(im, np.float32).reshape(HEIGHT, WIDTH, -1) for im in images]
    return np.stack(arrays) / 255.0


def pil_reference(image, name, m):
    """The op as PIL computes it (the oracle)."""
    fill = 128 if image.mode == "L" else (128, 128, 128)
    affine = {
        "ShearX": (1, 0.3 * m, 0, 0, 1, 0),
        "ShearY": (1, 0, 0, 0.3 * m, 1, 0),
        "TranslateX": (1, 0, 0.45 * m * WIDTH, 0, 1, 0),
        "TranslateY": (1, 0, 0, 0, 1, 0.45 * m * HEIGHT),
    }
    if name in affine:
        return image.transform(image.size, Image.AFFINE, affine[name],
                               resample=Image.BILINEAR, fillcolor=fill)
    if name == "Rotate":
        return image.rotate(30 * m, resample=Image.BILINEAR, fillcolor=fill)
    if name in ENHANCE_OPS:
        return getattr(ImageEnhance, name)(image).enhance(1 + 0.9 * m)
    if name == "AutoContrast":  # magnitude-free: m is ignored
        return ImageOps.autocontrast(image)
    if name == "Equalize":
        return ImageOps.equalize(image)
    if name == "Posterize":
        return ImageOps.posterize(image, 8 - round(4 * abs(m)))
    if name == "Solarize":
        return ImageOps.solarize(image, 256 * (1 - abs(m)))
    assert name == "Identity"
    return image.copy()


def sweep_cases():
    """(op, photo, magnitude) for every op, photo and magnitude: BATCH cases."""
    return [(k, p, np.float32(m)) for k in range(len(ops.OP_NAMES))
            for p in range(NUM_PHOTOS) for m in MAGNITUDES]


_SWEEP = {}


def sweep(mode):
    """Our outputs for the whole sweep (one apply call), and the cases."""
    if mode not in _SWEEP:
        cases = sweep_cases()
        images = to_array([PHOTOS[mode][p] for _, p, _ in cases])
        op_ids = np.array([k for k, _, _ in cases], np.int32)
        mags = np.array([m for _, _, m in cases], np.float32)
        _SWEEP[mode] = np.asarray(ops.apply(images, op_ids, mags)), cases
    return _SWEEP[mode]


def level_errors(name, mode):
    """Per case: ours * 255 - PIL's uint8 levels, for op ``name``."""
    out, cases = sweep(mode)
    errors = []
    for i, (k, p, m) in enumerate(cases):
        if ops.OP_NAMES[k] == name:
            ref = np.asarray(pil_reference(PHOTOS[mode][p], name, float(m)))
            errors.append(out[i] * 255.0 - ref.reshape(out[i].shape))
    return np.stack(errors)


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("name", POINT_OPS)
def test_point_ops_equal_pil(name, mode):
    err = np.abs(np.round(level_errors(name, mode)))
    assert err.max() <= POINT_MAX_LEVELS


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("name", ENHANCE_OPS)
def test_enhance_ops_match_pil(name, mode):
    err = np.abs(np.round(level_errors(name, mode)))
    assert err.max() <= ENHANCE_MAX_LEVELS
    assert np.mean(err > 0) <= ENHANCE_MAX_OFF_FRACTION


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("name", GEOMETRIC_OPS)
def test_geometric_ops_match_pil(name, mode):
    err = np.abs(level_errors(name, mode))
    assert err.max() <= GEOMETRIC_MAX_LEVELS
    assert err.mean() <= GEOMETRIC_MEAN_LEVELS


@pytest.mark.parametrize("name", GEOMETRIC_OPS)
def test_geometric_fill_region_matches_pil(name):
    """On a white image, PIL's fill (128) and ours (0.5) must coincide."""
    white = Image.new("L", (WIDTH, HEIGHT), 255)
    mags = np.resize(np.array(MAGNITUDES, np.float32), BATCH)
    op_ids = np.full(BATCH, ops.OP_NAMES.index(name), np.int32)
    out = np.asarray(ops.apply(to_array([white] * BATCH), op_ids, mags))
    for i, m in enumerate(mags[:len(MAGNITUDES)]):
        ref = np.asarray(pil_reference(white, name, float(m)))
        np.testing.assert_array_equal(out[i, ..., 0] == 0.5, ref == 128)
        np.testing.assert_array_equal(out[i, ..., 0] == 1.0, ref == 255)


def _synthetic_gray_images(rng):
    """Images that stress AutoContrast / Equalize corner cases."""
    pixels = HEIGHT * WIDTH
    images = [np.full(pixels, 77), np.where(np.arange(pixels) % 3, 10, 250)]
    # Narrow ranges hit the (lo, hi) pairs where PIL's double arithmetic
    # rounds autocontrast down by one.
    for lo, hi in [(0, 25), (0, 41), (3, 121), (17, 100), (100, 103), (200, 255)]:
        images.append(rng.integers(lo, hi + 1, pixels))
    # Few pixels below the top level: equalize's step is 1 and its lut
    # runs past 255 (PIL saturates it).
    few = np.full(pixels, 255)
    few[:509] = rng.integers(0, 200, 509)
    images.append(few)
    images += [rng.integers(0, 256, pixels) for _ in range(3)]
    return [Image.fromarray(a.reshape(HEIGHT, WIDTH).astype(np.uint8)) for a in images]


@pytest.mark.parametrize("name", ["AutoContrast", "Equalize"])
def test_histogram_ops_equal_pil_on_corner_cases(name):
    rng = np.random.default_rng(0)
    images = _synthetic_gray_images(rng)
    cases = [(im, m) for im in images for m in MAGNITUDES]
    cases += [(images[0], 0.0)] * (BATCH - len(cases))
    mags = np.array([m for _, m in cases], np.float32)
    op_ids = np.full(BATCH, ops.OP_NAMES.index(name), np.int32)
    out = np.asarray(ops.apply(to_array([im for im, _ in cases]), op_ids, mags))
    for i, (im, m) in enumerate(cases):
        ref = np.asarray(pil_reference(im, name, float(m)))
        np.testing.assert_array_equal(np.round(out[i, ..., 0] * 255), ref)


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("name", MAGNITUDE_FREE_OPS)
def test_magnitude_free_ops_ignore_magnitude(name, mode):
    """At every m, 0 and tiny ones included, the output is the same (bit for
    bit) and equals PIL's full-strength op exactly (no blend with |m|)."""
    images = to_array(PHOTOS[mode] * (BATCH // NUM_PHOTOS))
    # Image i is photo i % 2; each photo meets every magnitude.
    mags = np.resize(np.repeat(np.float32(FREE_MAGNITUDES), NUM_PHOTOS), BATCH)
    op_ids = np.full(BATCH, ops.OP_NAMES.index(name), np.int32)
    out = np.asarray(ops.apply(images, op_ids, mags))
    for p in range(NUM_PHOTOS):
        same_photo = out[p::NUM_PHOTOS]
        np.testing.assert_array_equal(same_photo, np.broadcast_to(
            same_photo[:1], same_photo.shape))
        ref = np.asarray(pil_reference(PHOTOS[mode][p], name, 0.0))
        np.testing.assert_array_equal(np.round(out[p] * 255),
                                      ref.reshape(out[p].shape))
    if name != "Identity":  # full strength changes these photos at m = 0
        assert np.abs(np.round(out[0] * 255) - np.round(images[0] * 255)).max() > 0


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_zero_magnitude_is_identity(mode):
    """m = 0 is the identity for every op but AutoContrast and Equalize."""
    images = to_array(PHOTOS[mode] * (BATCH // NUM_PHOTOS))
    identity_at_zero = [k for k, name in enumerate(ops.OP_NAMES)
                        if name not in ("AutoContrast", "Equalize")]
    op_ids = np.resize(np.array(identity_at_zero, np.int32), BATCH)
    signs = np.where(np.arange(BATCH) % 2, 0.0, -0.0).astype(np.float32)
    out = np.asarray(ops.apply(images, op_ids, signs))
    np.testing.assert_allclose(out, images, rtol=0, atol=IDENTITY_ATOL)
    np.testing.assert_array_equal(np.round(out * 255), np.round(images * 255))


def _random_batch(rng, mode):
    images = to_array(PHOTOS[mode] * (BATCH // NUM_PHOTOS))
    op_ids = rng.integers(0, len(ops.OP_NAMES), BATCH).astype(np.int32)
    mags = rng.uniform(-1, 1, BATCH).astype(np.float32)
    return images, op_ids, mags


def test_each_image_gets_its_own_op():
    """A batch mixing all 14 ops equals running each op on the whole batch."""
    rng = np.random.default_rng(1)
    images, _, mags = _random_batch(rng, "RGB")
    op_ids = np.arange(BATCH, dtype=np.int32) % len(ops.OP_NAMES)
    mixed = np.asarray(ops.apply(images, op_ids, mags))
    for k in range(len(ops.OP_NAMES)):
        alone = np.asarray(ops.apply(images, np.full(BATCH, k, np.int32), mags))
        np.testing.assert_array_equal(mixed[op_ids == k], alone[op_ids == k])


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_apply_pair_is_apply_twice(mode):
    rng = np.random.default_rng(2)
    images, op_a, mag_a = _random_batch(rng, mode)
    _, op_b, mag_b = _random_batch(rng, mode)
    pair = ops.apply_pair(images, op_a, op_b, mag_a, mag_b)
    twice = ops.apply(ops.apply(images, op_a, mag_a), op_b, mag_b)
    np.testing.assert_array_equal(np.asarray(pair), np.asarray(twice))


@pytest.mark.parametrize("channels", [3, 1])
def test_output_shape_dtype_and_range(channels):
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 1, (BATCH, HEIGHT, WIDTH, channels)).astype(np.float32)
    images[:, :4] = 0.0  # extremes survive every op
    images[:, -4:] = 1.0
    op_a = rng.integers(0, len(ops.OP_NAMES), BATCH).astype(np.int32)
    op_b = rng.integers(0, len(ops.OP_NAMES), BATCH).astype(np.int32)
    mag_a = rng.uniform(-1.5, 1.5, BATCH).astype(np.float32)  # clipped to 1
    mag_b = rng.uniform(-1, 1, BATCH).astype(np.float32)
    for out in (ops.apply(images, op_a, mag_a),
                ops.apply_pair(images, op_a, op_b, mag_a, mag_b)):
        chex.assert_shape(out, images.shape)
        chex.assert_type(out, jnp.float32)
        assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_jit_traces_once_for_any_ops_and_magnitudes():
    traces = []

    def augment(images, op_a, op_b, mag_a, mag_b):
        traces.append(None)
        return ops.apply_pair(images, op_a, op_b, mag_a, mag_b)

    augment = jax.jit(augment)
    rng = np.random.default_rng(4)
    for _ in range(3):
        images, op_a, mag_a = _random_batch(rng, "RGB")
        _, op_b, mag_b = _random_batch(rng, "RGB")
        augment(images, op_a, op_b, mag_a, mag_b).block_until_ready()
    assert len(traces) == 1


def test_op_names():
    assert ops.OP_NAMES == (
        "AutoContrast", "Equalize", "Rotate", "Posterize", "Solarize",
        "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
        "TranslateX", "TranslateY", "Identity")
