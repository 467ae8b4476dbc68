"""Sessions of real length: the rollout and the inverse dynamics in blocks, their per-frame
outputs in scratch files, written to the session block by block: the same numbers as all at
once, and memory that does not hold the outputs."""

from dataclasses import replace

import h5py
import numpy as np
import psutil
import pytest

from mimic_nwb.body_model import build_body_model
from mimic_nwb.controller import (
    ControllerCheckpoint,
    ControllerConfig,
    ReferenceTrajectory,
    build_training_set,
    network_from_params,
    network_params,
)
from mimic_nwb.data import data_path
from mimic_nwb.session import append
from mimic_nwb.simulate import InverseDynamicsConfig, RolloutConfig, run_inverse_dynamics, run_rollout
from mimic_nwb.simulate.testing import smooth_reference
from mimic_nwb.storage import is_scratch, quantized, release, scratch_array, stored
from ndx_mimic import NamedColumnSeries

from helpers import new_session

FPS = 50.0
N = 45


@pytest.fixture(scope="module")
def body_model():
    return build_body_model(data_path("rat23_rodent_sites.yaml"))


@pytest.fixture(scope="module")
def reference(body_model):
    qpos = smooth_reference(body_model, N, FPS, height=0.1, seed=2)
    return ReferenceTrajectory.from_inverse_dynamics(run_inverse_dynamics(qpos, body_model, FPS))


@pytest.fixture(scope="module")
def checkpoint(body_model, reference):
    data = build_training_set(body_model, reference, np.zeros((N, body_model.model.nu)))
    spec = data.spec.with_statistics(data.reference, data.proprioception)
    config = ControllerConfig(observation=spec, encoder_sizes=(32,), latent_size=6, decoder_sizes=(16, 16))
    return ControllerCheckpoint(config=config, params=network_params(network_from_params(config, seed=5)))


def _assert_same_rollout(a, b):
    for name in ("frames", "qpos", "qvel", "actuator_controls", "actuator_activations", "actuator_forces"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("reward", "tracking_error", "step_error", "tracking"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for term in a.reward_terms:
        np.testing.assert_array_equal(a.reward_terms[term], b.reward_terms[term], err_msg=term)
    assert list(a.activations) == list(b.activations)
    for layer in a.activations:
        np.testing.assert_array_equal(a.activations[layer], b.activations[layer], err_msg=layer)
    np.testing.assert_array_equal(a.latent_resampling.action_std, b.latent_resampling.action_std)
    np.testing.assert_array_equal(a.latent_resampling.latent_std, b.latent_resampling.latent_std)
    for name in ("start_frame", "stop_frame", "termination", "episode_return"):
        np.testing.assert_array_equal(getattr(a.episodes, name), getattr(b.episodes, name), err_msg=name)


@pytest.mark.parametrize("mode", ["closed_loop", "open_loop"])
def test_a_rollout_in_blocks_with_scratch_files_equals_the_whole(tmp_path, body_model, reference, checkpoint, mode):
    config = RolloutConfig(
        mode=mode,
        seed=3,
        start_frame=2,
        min_episode_frames=3,
        termination_error=0.01,
        resample_latent=True,
        latent_samples=3,
    )
    whole = run_rollout(body_model, reference, checkpoint, config)
    assert mode == "open_loop" or len(whole.episodes) > 2  # restarts inside and across blocks
    for block in (1, 7, 16):
        blocks = run_rollout(body_model, reference, checkpoint, config, block_frames=block, scratch=tmp_path)
        _assert_same_rollout(whole, blocks)
        assert is_scratch(blocks.qpos) and not is_scratch(whole.qpos)
        assert all(is_scratch(values) for values in blocks.activations.values())
    with pytest.raises(ValueError, match="block_frames"):
        run_rollout(body_model, reference, checkpoint, config, block_frames=0)
    assert list(tmp_path.iterdir()) == []  # scratch files are unlinked at once


def test_scratch_arrays_are_written_block_by_block_with_the_same_values(tmp_path):
    rng = np.random.default_rng(1)
    full = rng.standard_normal((5000, 30)).astype(np.float32)
    full[:, 3] = 2.5  # a constant column
    scratch = scratch_array(full.shape, np.float32, tmp_path)
    scratch[:] = full
    release(scratch)
    np.testing.assert_array_equal(scratch, full)  # released pages come back from the file
    with_nan = scratch_array((100, 4), np.float64, tmp_path)
    with_nan[:] = np.nan
    path = new_session(tmp_path)
    q_scratch = quantized(scratch[:, 2:9], "x")
    with append(path) as s:
        for name, data in (("memory", stored(full)), ("scratch", stored(scratch))):
            s.add(
                NamedColumnSeries(name=name, data=data, unit="a", column_names=[f"c{i}" for i in range(30)], rate=50.0)
            )
        for name, q in (("q_memory", quantized(full[:, 2:9], "x")), ("q_scratch", q_scratch)):
            s.add(NamedColumnSeries(name=name, unit="a", column_names=[f"c{i}" for i in range(7)], rate=50.0, **q))
        s.add(NamedColumnSeries(name="nan", unit="a", column_names=list("abcd"), rate=50.0, **quantized(with_nan, "x")))
    with h5py.File(path, "r") as f:
        group = f["processing/mimic"]
        np.testing.assert_array_equal(group["scratch/data"][:], full)
        assert group["scratch/data"].chunks == group["memory/data"].chunks
        assert group["q_scratch/data"].dtype == np.int16
        np.testing.assert_array_equal(group["q_scratch/data"][:], group["q_memory/data"][:])
        assert group["q_scratch/data"].attrs["conversion"] == group["q_memory/data"].attrs["conversion"]
        assert group["nan/data"].dtype == np.float32 and np.isnan(group["nan/data"][:]).all()


def test_released_scratch_pages_leave_the_process(tmp_path):
    rss = psutil.Process().memory_info().rss
    array = scratch_array((2048, 32768), np.float32, tmp_path)  # 256 MiB
    for start in range(0, len(array), 256):
        array[start : start + 256] = 1.0
        release(array)
    assert psutil.Process().memory_info().rss - rss < 64 * 2**20
    assert float(array[-1, -1]) == 1.0 and float(array[0, 0]) == 1.0


def test_inverse_dynamics_in_workers_and_scratch_files_equals_in_memory(tmp_path, body_model):
    qpos = smooth_reference(body_model, 70, FPS, height=0.1, seed=4)
    config = InverseDynamicsConfig(block_frames=16)
    here = run_inverse_dynamics(qpos, body_model, FPS, config)
    elsewhere = run_inverse_dynamics(qpos, body_model, FPS, replace(config, n_workers=2), scratch=tmp_path)
    assert is_scratch(elsewhere.actuator_controls) and not is_scratch(here.actuator_controls)
    for name in (
        "qpos",
        "qvel",
        "qacc",
        "generalized_forces",
        "actuator_forces",
        "actuator_activations",
        "actuator_controls",
        "residual_forces",
        "penetration",
    ):
        np.testing.assert_array_equal(getattr(here, name), getattr(elsewhere, name), err_msg=name)
    assert here.report == elsewhere.report
    with pytest.raises(ValueError, match="n_workers"):
        InverseDynamicsConfig(n_workers=0)


def test_glm_with_float32_hessians_reaches_the_float64_solution(monkeypatch):
    import mimic_nwb.encoding.glm as glm

    rng = np.random.default_rng(3)
    X = rng.standard_normal((6000, 8)) @ rng.standard_normal((8, 8))  # correlated columns
    Y = rng.poisson(np.exp(-1.5 + 0.1 * X @ rng.standard_normal((8, 4))))
    # every bin in the Hessian (the subset is test_encoding_core's): only its precision differs
    mixed = glm.fit_poisson_glm(X, Y, alpha=1e-4)
    monkeypatch.setattr(glm, "_FLOAT32_HESSIAN_ITERATIONS", 0)  # float64 Hessians from the start
    exact = glm.fit_poisson_glm(X, Y, alpha=1e-4)
    assert mixed.converged.all() and exact.converged.all()
    np.testing.assert_allclose(mixed.coef, exact.coef, rtol=0, atol=1e-8)
    np.testing.assert_allclose(mixed.intercept, exact.intercept, rtol=0, atol=1e-8)


def test_encoding_in_blocks_of_bins_and_groups_of_units_equals_all_at_once(monkeypatch):
    import mimic_nwb.encoding.core as core
    import mimic_nwb.encoding.glm as glm

    rng = np.random.default_rng(4)
    n_bins = 5000
    features = {
        "smooth": np.cumsum(rng.standard_normal((n_bins, 6)), axis=0).astype(np.float32),
        "noise": rng.standard_normal((n_bins, 3)),
    }
    drive = features["smooth"][:, :2] @ np.array([[0.02, -0.01], [0.0, 0.03]])
    counts = rng.poisson(np.exp(-1.5 + np.column_stack([drive, -drive, drive[:, :1]])))
    config = core.EncodingConfig(lags=(0.0, 0.1), chunk_duration=2.0)
    whole = core.fit_encoding_models(counts, features, config, feature_set_names=["smooth", "noise"])
    monkeypatch.setattr(core, "_TRANSFORM_BLOCK_ROWS", 700)  # standardise and project in blocks
    monkeypatch.setattr(glm, "_UNIT_ARRAYS_BYTES", 40 * n_bins * 2)  # units two at a time
    parts = core.fit_encoding_models(counts, features, config, feature_set_names=["smooth", "noise"])
    np.testing.assert_array_equal(parts.n_components, whole.n_components)
    np.testing.assert_allclose(parts.cv_llr, whole.cv_llr, rtol=0, atol=1e-9)
    np.testing.assert_allclose(parts.pseudo_r2, whole.pseudo_r2, rtol=0, atol=1e-9)
    assert parts.converged.all() and whole.converged.all()


def test_cli_inverse_dynamics_workers_are_checked(tmp_path, capsys):
    from mimic_nwb.cli import main

    assert main(["simulate", str(tmp_path / "s.nwb"), "--mode", "inverse_dynamics", "--workers", "0"]) == 2
    assert "n_workers: must be >= 1" in capsys.readouterr().err
