"""The paper's ablation switches (Tab. 2, 3, 5) and the authors' AMM schedule change what
they should: labels, thresholds, stages, optimiser state, smoothing, shared weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ucvgl.services.matching import mutual_match
from ucvgl.services.presets import get_preset
from ucvgl.services.training.amm import (
    PoolMatch,
    _label_round,
    pseudo_label_round,
    round_dir,
    round_stage_config,
    round_threshold,
)
from ucvgl.services.training.trainer import (
    CHECKPOINT,
    StageConfig,
    import_optimizer_moments,
    window_lambda,
)

from .test_amm import _pool, _reference


def test_without_mutual_matching_every_panorama_keeps_its_nearest_tile(tmp_path):
    ground, sat, split = _pool(0)
    pairs, _, margin, sim = _reference(ground.numpy(), sat.numpy(), 0.0)
    matches = mutual_match(ground, sat, device="cpu")
    common = dict(round_index=1, tau=0.0, threshold_T=0.05, positives=split.positives)
    record, tg, ts = pseudo_label_round(
        matches, ground, sat, split, labels_csv=tmp_path / "a.csv", one_sided=True, **common
    )
    assert tg.tolist() == list(range(len(ground)))  # every panorama, mutual or not
    assert ts.tolist() == sim.argmax(1).tolist()
    assert record["labels"] == len(ground) > len(pairs) and record["source"] == "nearest"
    mutual, mg, _ = pseudo_label_round(
        matches, ground, sat, split, labels_csv=tmp_path / "b.csv", **common
    )
    assert mutual["labels"] == len(pairs) and mutual["source"] == "mutual"
    # the threshold still filters the one-sided labels on their own margins
    _, fg, _ = pseudo_label_round(
        matches,
        ground,
        sat,
        split,
        labels_csv=tmp_path / "c.csv",
        one_sided=True,
        **{**common, "tau": 0.05},
    )
    assert fg.tolist() == [i for i in range(len(ground)) if margin[i] >= 0.05]


def test_without_threshold_filter_every_mutual_pair_is_kept(tmp_path):
    ground, sat, split = _pool(0)
    pairs, kept, _, _ = _reference(ground.numpy(), sat.numpy(), 0.05)
    assert len(kept) < len(pairs)  # the filter would drop some here
    preset = get_preset("tiny").replace(threshold_filter=False)
    assert all(round_threshold(preset, 0.05, r, 4) == 0.0 for r in range(1, 5))
    matches = mutual_match(ground, sat, device="cpu")
    record, tg, ts = pseudo_label_round(
        matches,
        ground,
        sat,
        split,
        round_index=1,
        tau=round_threshold(preset, 0.05, 1, 4),
        threshold_T=0.05,
        labels_csv=tmp_path / "l.csv",
    )
    assert list(zip(tg.tolist(), ts.tolist(), strict=True)) == pairs


def test_curricula_cosine_falls_fixed_stays_at_T():
    tiny = get_preset("tiny")
    cosine = [round_threshold(tiny, 0.04, r, 4) for r in range(1, 5)]
    assert cosine[0] == pytest.approx(0.04) and cosine[-1] < 0.01
    assert all(a > b for a, b in zip(cosine, cosine[1:], strict=False))
    for name in ("fixed", "frozen"):
        fixed = tiny.replace(curriculum=name)
        assert [round_threshold(fixed, 0.04, r, 4) for r in range(1, 5)] == [0.04] * 4


@pytest.mark.parametrize("curriculum", ["frozen", "cosine"])
def test_frozen_curriculum_keeps_round_one_labels(tmp_path, curriculum):
    preset = get_preset("tiny").replace(curriculum=curriculum)
    labels = []
    for r, seed in ((1, 0), (2, 5)):  # round 2 sees other embeddings
        ground, sat, split = _pool(seed)
        pool = PoolMatch(mutual_match(ground, sat, device="cpu"), ground, sat)
        _label_round(
            model=None,
            split=split,
            preset=preset,
            threshold_T=0.02,
            round_index=r,
            rounds=2,
            stage_dir=round_dir(tmp_path, r),
            run_dir=tmp_path,
            known_pairs=None,
            positives=None,
            device="cpu",
            cache_dir=None,
            progress=None,
            pool=pool,
        )
        with np.load(round_dir(tmp_path, r) / "labels.npz") as data:
            labels.append((data["ground"].tolist(), data["satellite"].tolist()))
    assert labels[0][0]  # round 1 labelled something
    assert (labels[1] == labels[0]) == (curriculum == "frozen")


def test_continuous_schedule_is_one_cosine_over_all_rounds(tmp_path):
    preset = get_preset("tiny").replace(amm_schedule="continuous", amm_epochs_per_round=2)
    start = tmp_path / "cold_start_cross" / "model.pt"
    lrs = []
    for r in (1, 2, 3):
        cfg, previous = round_stage_config(preset, r, 3, start, tmp_path, extra=False, seed=0)
        assert cfg.epoch_window == ((r - 1) * 2, 6) and cfg.warmup_fraction == 0.0
        expected = start.parent if r == 1 else round_dir(tmp_path, r - 1)
        assert previous == expected / CHECKPOINT
        factor = window_lambda(*cfg.epoch_window, steps_per_epoch=5)
        lrs += [factor(step) for step in range(10)]
    # one value per epoch, the authors' cosine over the 6 epochs of the 3 rounds
    per_epoch = [lrs[i * 5] for i in range(6)]
    assert per_epoch == pytest.approx([0.5 * (1 + math.cos(math.pi * e / 6)) for e in range(6)])
    assert all(lrs[i * 5 : i * 5 + 5] == [lrs[i * 5]] * 5 for i in range(6))
    tiny = get_preset("tiny")
    per_round, fresh = round_stage_config(tiny, 2, 3, start, tmp_path, extra=False, seed=0)
    assert fresh is None and per_round.epoch_window is None
    # with extra rounds allowed, the cosine spans the most rounds that may run
    longer = preset.replace(amm_max_rounds=5)
    assert longer.amm_schedule_rounds == 5
    cfg, _ = round_stage_config(longer, 2, 3, start, tmp_path, extra=False, seed=0)
    assert cfg.epoch_window == (2, 10)


def test_semi_warm_up_epochs_open_the_continuous_cosine(tiny_world, tmp_path):
    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.models import build_model
    from ucvgl.services.training.supervised import known_pairs_from_ratio, train_on_pairs

    preset = get_preset("tiny").replace(
        amm_schedule="continuous", amm_rounds=2, hard_negatives=False
    )
    start = tmp_path / "semi_warmup" / "model.pt"
    cfg, previous = round_stage_config(
        preset, 1, 2, start, tmp_path, extra=False, seed=0, schedule_offset=1
    )
    assert cfg.epoch_window == (1, 3) and previous == start.parent / CHECKPOINT
    split = load_dataset(tiny_world, "cvact").split("train")
    torch.manual_seed(0)
    result = train_on_pairs(
        build_model(preset.encoder_config()),
        split,
        known_pairs_from_ratio(split, 0.5, 0),
        preset,
        start.parent,
        name="semi warm-up",
        epochs=1,
        epoch_window=(0, 3),
    )
    # after its one epoch the lr is the cosine's value for epoch 1 of 3 (no warm-up restart)
    expected = preset.lr * 0.5 * (1 + math.cos(math.pi / 3))
    assert result.history[0]["lr"] == pytest.approx(expected)
    assert (start.parent / CHECKPOINT).is_file()


def test_epoch_window_refuses_budget_cycles():
    with pytest.raises(ValueError, match="epoch_window"):
        StageConfig("x", 2, 1e-4, max_epochs=4, epoch_window=(0, 4))
    with pytest.raises(ValueError, match="epoch_window"):
        StageConfig("x", 3, 1e-4, epoch_window=(2, 4))


def test_optimizer_moments_carry_over_without_the_learning_rate(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    old = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.3)
    net(torch.randn(3, 4)).sum().backward()
    old.step()
    torch.save({"optimizer": old.state_dict()}, tmp_path / CHECKPOINT)
    new = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.01)
    assert import_optimizer_moments(new, tmp_path / CHECKPOINT)
    for p in net.parameters():
        assert torch.equal(new.state[p]["exp_avg"], old.state[p]["exp_avg"])
    assert new.param_groups[0]["lr"] == 1e-4 and new.param_groups[0]["weight_decay"] == 0.01
    other = torch.optim.AdamW(torch.nn.Linear(4, 2, bias=False).parameters())
    assert not import_optimizer_moments(other, tmp_path / CHECKPOINT)  # another layout
    assert not import_optimizer_moments(new, tmp_path / "missing.pt")


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from ucvgl.services.synth import generate_world

    out = tmp_path_factory.mktemp("world") / "w"
    return generate_world(out, "cvact", 16, 4, seed=1, pano_size=(32, 64), sat_size=32, workers=1)


def test_continuous_amm_round_two_starts_from_round_one_optimiser(tiny_world, tmp_path):
    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.models import build_model, save_model
    from ucvgl.services.training.amm import run_amm

    preset = get_preset("tiny").replace(amm_schedule="continuous", amm_rounds=2)
    split = load_dataset(tiny_world, "cvact").split("train")
    torch.manual_seed(0)
    model = build_model(preset.encoder_config())
    start = save_model(model, tmp_path / "start" / "model.pt")
    result = run_amm(model, split, preset, 0.025, tmp_path, tmp_path, initial_path=start)
    assert len(result["rounds"]) == 2
    state = torch.load(round_dir(tmp_path, 2) / CHECKPOINT, weights_only=False)["state"]
    assert state["optimizer_from"] == str(round_dir(tmp_path, 1) / CHECKPOINT)
    first = torch.load(round_dir(tmp_path, 1) / CHECKPOINT, weights_only=False)["state"]
    assert first["optimizer_from"] is None  # the start file has no checkpoint next to it
    lr1 = result["rounds"][0]["train"][0]["lr"]
    lr2 = result["rounds"][1]["train"][0]["lr"]
    assert lr1 > lr2  # one falling cosine, no restart at amm_lr
    assert json.loads(json.dumps(result["rounds"][1]["threshold"])) < 0.025


def test_cold_start_without_intra_or_cross_skips_that_stage(tiny_world, tmp_path, monkeypatch):
    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.models import build_model
    from ucvgl.services.training import cold_start as cs

    split = load_dataset(tiny_world, "cvact").split("train")
    fakes = [split.satellite_paths[j] for j in split.positives]  # stand-ins for the fakes
    smoothing = []
    real_loss = cs.contrastive_loss

    def recording_loss(q, r, log_scale, eps, mask=None):
        smoothing.append(eps)
        return real_loss(q, r, log_scale, eps, mask)

    monkeypatch.setattr(cs, "contrastive_loss", recording_loss)
    tiny = get_preset("tiny")
    no_intra = tiny.replace(intra_view=False)
    torch.manual_seed(0)
    out = cs.cold_start(build_model(tiny.encoder_config()), split, fakes, no_intra, tmp_path / "a")
    assert set(out) == {"cross"} and not (tmp_path / "a" / cs.INTRA_DIR).exists()
    assert cs.cold_start_model_path(no_intra, tmp_path / "a").is_file()
    assert smoothing == []  # the intra-view loss never ran

    no_cross = tiny.replace(cross_view=False, label_smoothing=False)
    out = cs.cold_start(build_model(tiny.encoder_config()), split, None, no_cross, tmp_path / "b")
    assert set(out) == {"intra"} and not (tmp_path / "b" / cs.CROSS_DIR).exists()
    assert cs.cold_start_model_path(no_cross, tmp_path / "b") == out["intra"].model_path
    assert smoothing and set(smoothing) == {0.0}  # without label smoothing


def test_label_smoothing_switch_reaches_every_stage(monkeypatch):
    from ucvgl.services.training import cold_start as cs

    tiny = get_preset("tiny")
    off = tiny.replace(label_smoothing=False)
    assert [tiny.smoothing_for(s) for s in ("intra", "cross", "pseudo")] == [0.1, 0.3, 0.1]
    assert [off.smoothing_for(s) for s in ("intra", "cross", "pseudo")] == [0.0, 0.0, 0.0]
    seen = {}
    monkeypatch.setattr(cs, "train_on_items", lambda *a, **kw: seen.update(kw))
    split = type("S", (), {"num_ground": 3})()
    cs.train_ground_fake(None, split, [Path("f")] * 3, off, Path("unused"))
    assert seen["smoothing"] == 0.0


def test_shared_weights_give_one_backbone_parameter_set(tmp_path):
    from ucvgl.services.models import build_model, load_model, save_model

    tiny = get_preset("tiny")
    two = build_model(tiny.encoder_config())
    one = build_model(tiny.replace(shared_weights=True).encoder_config())
    assert one.ground_encoder.backbone is one.satellite_encoder.backbone
    assert two.ground_encoder.backbone is not two.satellite_encoder.backbone
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731 (unique tensors)
    backbone = count(two.ground_encoder.backbone)
    assert count(two) - count(one) == backbone
    square = build_model(tiny.replace(shared_weights=True, ground_size=(32, 32)).encoder_config())
    assert square.satellite_encoder is square.ground_encoder  # same map size: one encoder
    loaded, _ = load_model(save_model(one, tmp_path / "m.pt"))
    assert loaded.ground_encoder.backbone is loaded.satellite_encoder.backbone


def test_drop_path_reaches_the_backbone():
    from ucvgl.services.models import build_model

    assert get_preset("paper-small").encoder_config().drop_path_rate == 0.2
    model = build_model(get_preset("tiny").replace(drop_path_rate=0.2).encoder_config())
    rates = [
        float(getattr(m, "drop_prob", 0.0))
        for m in model.ground_encoder.backbone.modules()
        if type(m).__name__ == "DropPath"
    ]
    assert rates and max(rates) == pytest.approx(0.2)
    plain = build_model(get_preset("tiny").encoder_config())
    assert not any(type(m).__name__ == "DropPath" for m in plain.modules())
