"""AMM bookkeeping against a NumPy reference, item building, and GT-free model selection."""

from __future__ import annotations

import csv
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ucvgl.services.datasets.index import ViewSplit
from ucvgl.services.matching import mutual_match
from ucvgl.services.training.amm import (
    _label_round,
    label_free_criterion,
    pseudo_label_round,
    select_by_criterion,
)
from ucvgl.services.training.pair_stage import build_items


def _pool(seed: int = 0, g: int = 30, s: int = 40, d: int = 8):
    rng = np.random.default_rng(seed)
    sat = rng.normal(size=(s, d))
    truth = rng.permutation(s)[:g]
    noise = rng.uniform(0.1, 1.2, size=(g, 1))  # some pairs clean, some ambiguous
    ground = sat[truth] + noise * rng.normal(size=(g, d))
    ground /= np.linalg.norm(ground, axis=1, keepdims=True)
    sat /= np.linalg.norm(sat, axis=1, keepdims=True)
    split = ViewSplit(
        [f"g{i}" for i in range(g)],
        [Path(f"g{i}.jpg") for i in range(g)],
        [f"s{j}" for j in range(s)],
        [Path(f"s{j}.jpg") for j in range(s)],
        positives=truth.astype(np.int64),
    )
    return torch.tensor(ground, dtype=torch.float32), torch.tensor(sat, dtype=torch.float32), split


def _reference(ground: np.ndarray, sat: np.ndarray, tau: float):
    """Mutual nearest neighbours with margin >= tau, from the paper's definition."""
    sim = ground @ sat.T
    best_s = sim.argmax(1)
    best_g = sim.argmax(0)
    top2 = np.sort(sim, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    pairs = [(i, int(best_s[i])) for i in range(len(ground)) if best_g[best_s[i]] == i]
    kept = [(i, j) for i, j in pairs if margin[i] >= tau]
    return pairs, kept, margin, sim


def test_round_record_matches_numpy_reference(tmp_path):
    ground, sat, split = _pool()
    tau, T = 0.05, 0.1
    pairs, kept, margin, sim = _reference(ground.numpy(), sat.numpy(), tau)
    assert 0 < len(kept) < len(pairs)  # the filter does something here
    matches = mutual_match(ground, sat, device="cpu")
    csv_path = tmp_path / "labels" / "round_001.csv"
    record, tg, ts = pseudo_label_round(
        matches,
        ground,
        sat,
        split,
        round_index=1,
        tau=tau,
        threshold_T=T,
        labels_csv=csv_path,
        positives=split.positives,
    )
    assert record["round"] == 1 and record["threshold"] == tau
    assert record["mutual"] == len(pairs)
    assert record["labels"] == len(kept)
    assert list(zip(tg.tolist(), ts.tolist(), strict=True)) == kept
    truth = split.positives
    correct = sum(truth[i] == j for i, j in kept)
    assert record["correct"] == correct
    assert record["label_precision"] == pytest.approx(correct / len(kept))
    assert sum(record["margin_histogram"]["counts"]) == len(pairs)
    rows = list(csv.DictReader(open(csv_path)))
    assert [(r["ground_id"], r["satellite_id"]) for r in rows] == [
        (f"g{i}", f"s{j}") for i, j in kept
    ]
    for r, (i, j) in zip(rows, kept, strict=True):
        assert float(r["margin"]) == pytest.approx(margin[i], abs=1e-5)
        assert float(r["similarity"]) == pytest.approx(sim[i, j], abs=1e-5)
        assert r["correct"] == str(int(truth[i] == j))
    crit = record["criterion_before"]
    confident = [margin[i] for i, _ in pairs if margin[i] >= T]
    assert crit["mutual"] == len(pairs) and crit["confident"] == len(confident)
    assert crit["score"] == pytest.approx(len(confident) + np.mean(confident), abs=1e-5)


def test_round_without_ground_truth_has_no_correct_counts(tmp_path):
    ground, sat, split = _pool(1)
    matches = mutual_match(ground, sat, device="cpu")
    record, _, _ = pseudo_label_round(
        matches,
        ground,
        sat,
        split,
        round_index=2,
        tau=0.0,
        threshold_T=0.05,
        labels_csv=tmp_path / "l.csv",
        positives=None,
    )
    assert record["correct"] is None and record["label_precision"] is None
    rows = list(csv.DictReader(open(tmp_path / "l.csv")))
    assert len(rows) == record["labels"] == record["mutual"]
    assert all(r["correct"] == "" for r in rows)


def test_known_pairs_are_kept_and_win_conflicts(tmp_path):
    ground, sat, split = _pool(2)
    matches = mutual_match(ground, sat, device="cpu")
    _, kept, _, _ = _reference(ground.numpy(), sat.numpy(), 0.0)
    # Known: the true tile of ground 0 and of the first pseudo-labelled ground.
    g0 = next(i for i, _ in kept if i != 0)
    known = (np.array([0, g0]), split.positives[[0, g0]])
    record, tg, ts = pseudo_label_round(
        matches,
        ground,
        sat,
        split,
        round_index=1,
        tau=0.0,
        threshold_T=0.05,
        labels_csv=tmp_path / "l.csv",
        known_pairs=known,
        positives=split.positives,
    )
    assert tg[:2].tolist() == known[0].tolist() and ts[:2].tolist() == known[1].tolist()
    # No pseudo-pair reuses a known panorama or tile; each image appears once.
    assert len(set(tg.tolist())) == len(tg) and len(set(ts.tolist())) == len(ts)
    assert record["known_labels"] == 2 and record["labels"] == len(tg) - 2


def test_build_items_duplicates_while_coverage_is_low():
    items = build_items(
        np.array([0, 1, 2]),
        np.array([5, 6, 7]),
        100,
        120,
        unlabelled_ratio=0.5,
        coverage_switch=0.4,
        min_epoch_fraction=0.4,
        seed=0,
    )
    pos = items.positive
    assert pos.sum() == 40  # duplicated up to 40% of the pool
    assert set(
        zip(items.ground_idx[pos].tolist(), items.satellite_idx[pos].tolist(), strict=True)
    ) == {(0, 5), (1, 6), (2, 7)}
    assert (~pos).sum() == 20  # unlabelled negatives: half the labelled items
    assert not set(items.ground_idx[~pos]) & {0, 1, 2}
    assert not set(items.satellite_idx[~pos]) & {5, 6, 7}
    assert len(set(items.satellite_idx[~pos].tolist())) == 20
    # Above the switch: no duplication, every unlabelled panorama joins as a negative.
    g = np.arange(50)
    items = build_items(
        g,
        g + 1,
        100,
        120,
        unlabelled_ratio=0.5,
        coverage_switch=0.4,
        min_epoch_fraction=0.4,
        seed=0,
    )
    assert items.positive.sum() == 50 and (~items.positive).sum() == 50


def test_selection_prefers_confident_mutual_matches():
    c = [
        {"name": "start", "path": "a", "criterion": {"score": 10.2}},
        {"name": "round 1", "path": "b", "criterion": {"score": 14.1}},
        {"name": "round 2", "path": "c", "criterion": {"score": 12.3}},
    ]
    assert select_by_criterion(c)["name"] == "round 1"
    with pytest.raises(ValueError):
        select_by_criterion([])


def test_criterion_is_label_free():
    ground, sat, _ = _pool(3)
    matches = mutual_match(ground, sat, device="cpu")
    a = label_free_criterion(matches, 0.05)
    assert set(a) == {"mutual", "confident", "tau_ref", "mean_margin", "score"}


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    from ucvgl.services.synth import generate_world

    out = tmp_path_factory.mktemp("world") / "w"
    return generate_world(out, "cvact", 16, 4, seed=1, pano_size=(32, 64), sat_size=32, workers=1)


def test_selection_is_the_same_without_ground_truth(tiny_world, tmp_path):
    """Removing every ground-truth pair changes nothing but the 'correct' counts."""
    import dataclasses

    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.models import build_model, save_model
    from ucvgl.services.presets import get_preset
    from ucvgl.services.training.amm import run_amm

    torch.set_num_threads(1)
    preset = get_preset("tiny")
    split = load_dataset(tiny_world, "cvact").split("train")
    blind = dataclasses.replace(split, positives=None)
    results = []
    for name, s, positives in (("gt", split, split.positives), ("blind", blind, None)):
        torch.manual_seed(0)
        model = build_model(preset.encoder_config())
        start = save_model(model, tmp_path / name / "start.pt")
        results.append(
            run_amm(
                model,
                s,
                preset,
                0.025,
                tmp_path / name,
                tmp_path / name,
                initial_path=start,
                positives=positives,
                device="cpu",
            )
        )
    gt, blind_result = results
    strip = lambda c: {k: v for k, v in c.items() if k != "path"}  # noqa: E731
    assert [strip(c) for c in gt["candidates"]] == [strip(c) for c in blind_result["candidates"]]
    assert gt["selected"]["name"] == blind_result["selected"]["name"]
    for a, b in zip(gt["rounds"], blind_result["rounds"], strict=True):
        assert b["correct"] is None
        assert a["labels"] == b["labels"] and a["mutual"] == b["mutual"]
        assert a["train"][0]["loss"] == pytest.approx(b["train"][0]["loss"])


def test_match_pool_queries_with_ground_plus_fake(monkeypatch):
    from ucvgl.services.presets import get_preset
    from ucvgl.services.training import amm

    ground, sat, split = _pool(seed=3)
    rng = np.random.default_rng(4)
    fake = torch.tensor(
        sat.numpy()[split.positives] + 0.3 * rng.normal(size=ground.shape), dtype=torch.float32
    )
    fake = torch.nn.functional.normalize(fake, dim=1)
    fake_paths = [Path(f"f{i}.png") for i in range(len(ground))]

    def fake_embed(model, split_, view, *, paths=None, **_):
        if view == "fake":
            assert paths == fake_paths
        return {"ground": ground, "satellite": sat, "fake": fake}[view]

    monkeypatch.setattr(amm, "embed_split", fake_embed)
    preset = get_preset("tiny")
    common = dict(device="cpu", cache_dir=None, progress=amm.NullProgress())
    plain = amm.match_pool(None, split, preset, **common)
    both = amm.match_pool(None, split, preset, fake_paths=fake_paths, **common)
    torch.testing.assert_close(plain.ground, ground)
    query = ground.numpy() + fake.numpy()
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    torch.testing.assert_close(both.ground, torch.tensor(query), rtol=1e-5, atol=1e-6)
    pairs, _, _, _ = _reference(query, sat.numpy(), 0.0)
    got = sorted(
        zip(both.matches.ground_idx.tolist(), both.matches.satellite_idx.tolist(), strict=True)
    )
    assert got == sorted(pairs)
    with pytest.raises(ValueError, match="one fake satellite image per panorama"):
        amm.match_pool(None, split, preset, fake_paths=fake_paths[:-1], **common)


def test_build_items_without_unlabelled_items_at_any_coverage():
    for n_lab in (5, 60):  # below and above the 40% coverage switch
        g = np.arange(n_lab)
        items = build_items(
            g,
            g,
            100,
            100,
            unlabelled_ratio=0.0,
            coverage_switch=0.4,
            min_epoch_fraction=0.4,
            seed=0,
        )
        assert items.positive.all()
        assert set(items.ground_idx.tolist()) == set(g.tolist())


def test_label_round_takes_keywords_only_and_reloads_an_interrupted_round(tmp_path):
    params = inspect.signature(_label_round).parameters.values()
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    assert all(p.annotation is not inspect.Parameter.empty for p in params)
    stage_dir = tmp_path / "amm_round_002"
    stage_dir.mkdir()
    record = {"round": 2, "threshold": 0.05, "labels": 3}
    (stage_dir / "record.json").write_text(json.dumps(record))
    np.savez(stage_dir / "labels.npz", ground=np.arange(3), satellite=np.arange(3))
    kwargs = dict(
        model=None,  # a finished labelling is reloaded without embedding anything
        split=None,
        preset=None,
        threshold_T=0.1,
        round_index=2,
        rounds=3,
        stage_dir=stage_dir,
        run_dir=tmp_path,
        known_pairs=None,
        positives=None,
        device="cpu",
        cache_dir=None,
        progress=None,
    )
    assert _label_round(**kwargs) == record
    with pytest.raises(TypeError):
        _label_round(*kwargs.values())
