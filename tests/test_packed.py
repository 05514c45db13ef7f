"""A packed run of K seeds equals K single-model reference runs; members are independent."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from drm.reference import ReferenceTrainer
from drm.train import PackedTrainer
from tests.helpers import small


def _member_params(trainer: PackedTrainer, k: int) -> list[torch.Tensor]:
    out = []
    for w, b in zip(trainer.model.weights, trainer.model.biases):
        out += [w[k].detach().T, b[k, 0].detach()]
    return out


def _reference_params(ref: ReferenceTrainer) -> list[torch.Tensor]:
    out = []
    for layer in ref.net.mlp:
        if isinstance(layer, torch.nn.Linear):
            out += [layer.weight.detach(), layer.bias.detach()]
    return out


CONFIGS = {
    "1d-relu-map": dict(problem="double_well", fourier=2),
    "1d-u2-tanh-eps": dict(problem="double_well_u2", activation="tanh", epsilon=0.05),
    "2d-smooth-abs-eps": dict(problem="twin_branching", fourier=1, epsilon=0.1 / 16),
    "2d-fixed-points": dict(problem="twin_branching", resample=False, activation="smooth_relu"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_packed_equals_reference_runs(name):
    config = small(**CONFIGS[name], epochs=300)
    seeds = [0, 5, 9]
    packed = PackedTrainer(config, seeds)
    packed.run()
    for k, seed in enumerate(seeds):
        ref = ReferenceTrainer(config, seed)
        for _ in range(config.epochs):
            ref.train_step()
        for got, want in zip(_member_params(packed, k), _reference_params(ref)):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(packed.last_loss[k], ref.losses[-1], rtol=1e-9, atol=1e-11)


def test_members_do_not_depend_on_their_pack():
    config = small("double_well", fourier=3, epochs=150)
    pack = PackedTrainer(config, [4, 7, 2])
    pack.run()
    alone = PackedTrainer(config, [7])
    alone.run()
    for got, want in zip(_member_params(pack, 1), _member_params(alone, 0)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_a_diverged_member_is_frozen_and_its_siblings_go_on():
    config = small("twin_branching", epsilon=0.01, epochs=120)
    pack = PackedTrainer(config, [0, 1, 2])
    pack.run(steps=20)
    with torch.no_grad():
        pack.model.weights[1][1].fill_(float("nan"))  # member 1 breaks at step 20
    frozen = [p[1].clone() for p in pack.model.parameters()]
    pack.run()
    assert pack.status() == ["ok", "diverged", "ok"]
    assert pack.diverged_step.tolist() == [-1, 20, -1]
    for before, p in zip(frozen, pack.model.parameters()):
        torch.testing.assert_close(p[1], before, equal_nan=True, rtol=0, atol=0)  # not moved

    siblings = PackedTrainer(config, [0, 2])
    siblings.run()
    for k_pack, k_alone in [(0, 0), (2, 1)]:
        for got, want in zip(_member_params(pack, k_pack), _member_params(siblings, k_alone)):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_a_non_finite_loss_from_a_huge_lr_is_recorded():
    config = small("double_well", fourier=2, epochs=200, lr=1e4, dtype="float32")  # overflows float32
    pack = PackedTrainer(config, [0, 1])
    pack.run()
    status = pack.status()
    assert "diverged" in status
    steps = pack.diverged_step.tolist()
    assert all((s >= 0) == (st == "diverged") for s, st in zip(steps, status))


def test_resolved_config_round_trips_and_hash_ignores_nothing_but_the_seed():
    a = small("double_well", fourier=2)
    b = dataclasses.replace(a, fourier=3)
    assert a.config_hash() != b.config_hash()
    assert a.config_hash() == small("double_well", fourier=2).config_hash()


def test_a_run_resumed_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    config = small("twin_branching", epochs=90, epsilon=0.01)
    whole = PackedTrainer(config, [3, 4])
    whole.run()
    first = PackedTrainer(config, [3, 4])
    first.run(steps=37)
    torch.save(first.state_dict(), tmp_path / "state.pt")
    resumed = PackedTrainer(config, [3, 4])
    resumed.load_state_dict(torch.load(tmp_path / "state.pt"))
    resumed.run()
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert whole.curves().steps.tolist() == resumed.curves().steps.tolist()
    torch.testing.assert_close(torch.tensor(whole.curves().loss), torch.tensor(resumed.curves().loss), rtol=0, atol=0)
    assert whole.curves().transitions.tolist() == resumed.curves().transitions.tolist()  # the counts through training too
    assert whole.curves().bands.tolist() == resumed.curves().bands.tolist()


MIXED = {
    "1d-frequencies": [small("double_well", fourier=i, epochs=150) for i in (1, 2, 3)],
    "1d-frequencies-and-eps": [small("double_well_u2", activation="tanh", fourier=i, epsilon=e, epochs=120) for i in (1, 3) for e in (0.0, 0.05)],
    "2d-frequencies-and-eps": [small("twin_branching", fourier=i, epsilon=e, epochs=60) for i in (1, 2) for e in (0.0, 0.1 / 16)],
    "2d-eps-no-map": [small("twin_branching", epsilon=e, epochs=60) for e in (0.1 / 16, 0.1 / 4)],
}


@pytest.mark.parametrize("name", list(MIXED))
def test_a_mixed_pack_gives_each_member_what_it_gets_alone(name):
    """Members of one pack with their own frequency and ε train and measure as separate runs do."""
    from drm.measurement import measure

    configs = MIXED[name]
    seeds = [3, 1, 4, 1][: len(configs)]
    mixed = PackedTrainer(configs, seeds)
    assert mixed.mixed
    mixed.run()
    together = measure(mixed.model, configs)
    for k, (config, seed) in enumerate(zip(configs, seeds)):
        alone = PackedTrainer(config, [seed])
        alone.run()
        for got, want in zip(_member_params(mixed, k), _member_params(alone, 0)):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(mixed.last_loss[k], alone.last_loss[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(torch.tensor(mixed.curves().loss[:, k]), torch.tensor(alone.curves().loss[:, 0]), rtol=1e-10, atol=1e-12)
        single = measure(alone.model, config)
        assert together.energy[k] == pytest.approx(single.energy[0], rel=1e-10)
        assert together.transitions[k] == single.transitions[0]
        if single.transitions_per_period is not None:
            assert together.transitions_per_period[k] == single.transitions_per_period[0]


def test_a_mixed_pack_resumes_exactly_and_refuses_a_checkpoint_of_another_pack(tmp_path):
    configs = MIXED["2d-frequencies-and-eps"]
    whole = PackedTrainer(configs, [0, 1, 2, 3])
    whole.run()
    first = PackedTrainer(configs, [0, 1, 2, 3])
    first.run(steps=25)
    torch.save(first.state_dict(), tmp_path / "state.pt")
    resumed = PackedTrainer(configs, [0, 1, 2, 3])
    resumed.load_state_dict(torch.load(tmp_path / "state.pt"))
    resumed.run()
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    other = PackedTrainer(list(reversed(configs)), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="another configuration"):
        other.load_state_dict(torch.load(tmp_path / "state.pt"))


@pytest.mark.parametrize(
    "configs, differ",
    [
        ([small("double_well", fourier=2), small("double_well")], "none with a map"),
        ([small("double_well", fourier=2), small("double_well", fourier=2, depth=4)], "depth"),
        ([small("twin_branching", fourier=1), small("twin_branching", fourier=1, lr=1e-3)], "lr"),
    ],
)
def test_a_pack_of_configurations_that_differ_in_shape_or_schedule_is_refused(configs, differ):
    from drm.config import ConfigError

    with pytest.raises(ConfigError, match=differ):
        PackedTrainer(configs, [0, 1])


def test_a_mixed_pack_trained_in_member_chunks_equals_one_trained_whole():
    """On a CPU members train in chunks (drm.autotune): each chunk must see its own members' frequencies."""
    from drm.autotune import Tuning

    configs = [small("twin_branching", fourier=i, epsilon=e, epochs=30) for i in (1, 2, 3) for e in (0.0, 0.01)]
    whole = PackedTrainer(configs, [0] * 6, tuning=Tuning(6, "given"))
    whole.run()
    chunked = PackedTrainer(configs, [0] * 6, tuning=Tuning(1, "given"))  # one member per chunk
    assert len(chunked._chunks) == 6 and len(whole._chunks) == 1
    chunked.run()
    for a, b in zip(whole.model.parameters(), chunked.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
