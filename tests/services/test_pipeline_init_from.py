"""``init_from``: a run starts from another run's selected model (adaptation, Ours-base*)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ucvgl.services.init_source import file_sha256
from ucvgl.services.models import build_model, load_model
from ucvgl.services.pipeline import PipelineRun, run_pipeline
from ucvgl.services.presets import get_preset
from ucvgl.shared.errors import ConfigError


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Two shared cores: one torch thread avoids oversubscription."""


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """A finished supervised tiny run on a CVUSA-layout world (the source model)."""
    from ucvgl.services.synth import generate_world

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("source")
    world = generate_world(
        base / "cvusa", "cvusa", 16, 8, seed=1, pano_size=(32, 64), sat_size=32, workers=1
    )
    out = base / "run"
    run_pipeline(world, "cvusa", "supervised", "tiny", out, device="cpu")
    return out


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Path:
    """A CVACT-layout world of another seed (the new region)."""
    from ucvgl.services.synth import generate_world

    out = tmp_path_factory.mktemp("target") / "cvact"
    return generate_world(out, "cvact", 16, 8, seed=2, pano_size=(32, 64), sat_size=32, workers=1)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_adapted_run_starts_from_the_source_and_skips_the_cold_start(
    source_run, target, tmp_path, monkeypatch
):
    from ucvgl.services.training import amm

    seen: dict[int, dict[str, torch.Tensor]] = {}
    label_round = amm._label_round

    def spy(**kwargs):
        seen.setdefault(kwargs["round_index"], _state(kwargs["model"]))
        return label_round(**kwargs)

    monkeypatch.setattr(amm, "_label_round", spy)
    out = tmp_path / "adapted"
    skip = get_preset("tiny").replace(init_cold_start="skip")
    report = run_pipeline(
        target, "cvact", "unsupervised", skip, out, device="cpu", init_from=source_run
    )
    source, _ = load_model(source_run / "model" / "selected.pt")
    expected = source.state_dict()
    # The weights at the start of the first AMM round are the source's, exactly ...
    assert set(seen[1]) == set(expected)
    assert all(torch.equal(seen[1][k], expected[k]) for k in expected)
    # ... which is not what a fresh model of the same seed holds (the check means something)
    torch.manual_seed(0)
    fresh = build_model(get_preset("tiny").encoder_config()).state_dict()
    assert any(not torch.equal(fresh[k], expected[k]) for k in expected)
    # No cold start: no stage, no stage folder, no check, no budget of it
    names = [s["name"] for s in report["stages"]]
    assert names == ["project", "prior", "amm", "select", "evaluate", "index"]
    assert not list((out / "stages").glob("cold_start*"))
    assert all(c["stage"] != "cold_start" for c in report["health"])
    assert not any(b.startswith("cold_start") for b in report["budgets"])
    # The 'start' candidate is the run's copy of the source, byte for byte
    init = report["init_from"]
    assert report["selection"]["candidates"][0]["path"] == init["copy"]
    assert file_sha256(Path(init["copy"])) == file_sha256(source_run / "model" / "selected.pt")
    # report.json names the source model
    assert init["run_dir"] == str(source_run.resolve())
    assert init["model_file"] == str((source_run / "model" / "selected.pt").resolve())
    assert init["sha256"] == file_sha256(source_run / "model" / "selected.pt")
    assert init["preset"] == "tiny" and init["mode"] == "supervised"
    assert init["backbone"] == "test_convnext" and init["dataset"]["format"] == "cvusa"
    assert report["recall"] is not None and len(report["rounds"]) == 2
    # the CVUSA-band source reads the band's rows of the full CVACT panoramas, to the end
    band = json.loads((source_run.parent / "cvusa" / "synth_meta.json").read_text())["panorama"]
    rows = ((90 - band["top_elevation_deg"]) / 180, (90 - band["bottom_elevation_deg"]) / 180)
    assert init["ground_view"]["rows"] == pytest.approx(rows)
    selected, _ = load_model(out / "model" / "selected.pt")
    assert selected.config.ground_rows == pytest.approx(rows)
    # it needs no backbone weights: the weights record names the source's copy
    weights = report["weights"]["ground"]
    assert weights["source"] == "init_from" and weights["file"] == init["copy"]
    assert weights["sha256"] == init["sha256"]
    # the run folder remembers its source: resuming without it is refused ...
    with pytest.raises(ConfigError, match="init_from"):
        run_pipeline(target, "cvact", "unsupervised", skip, out, device="cpu")
    # ... and resuming after the source folder is gone goes on from the run's copy
    moved = source_run.rename(tmp_path / "moved-away")
    try:
        again = run_pipeline(
            target, "cvact", "unsupervised", skip, out, device="cpu", init_from=source_run
        )
        assert again["init_from"]["sha256"] == init["sha256"]
        assert again["recall_per_split"] == report["recall_per_split"]
    finally:
        moved.rename(source_run)


def test_init_match_layout_off_feeds_the_target_panoramas_as_they_are(source_run, target, tmp_path):
    preset = get_preset("tiny").replace(init_cold_start="skip", init_match_layout=False)
    out = tmp_path / "as-is"
    report = run_pipeline(
        target, "cvact", "unsupervised", preset, out, device="cpu", init_from=source_run
    )
    assert report["init_from"]["ground_view"] is None
    selected, _ = load_model(out / "model" / "selected.pt")
    assert selected.config.ground_rows is None


def test_the_source_check_keeps_the_tile_scale_at_which_the_source_finds_most_pairs(
    source_run, target, tmp_path, monkeypatch
):
    """init_tile_scales: label-free, the scale with the most pairs against decoys wins."""
    from ucvgl.services import source_check

    pairs_at = {0.5: 3, 1.0: 5, 2.0: 9}
    seen: list[float | None] = []
    measure = source_check.measure_source

    def spy(model, *args, **kwargs):
        seen.append(model.config.satellite_scale)
        pairs, targets, decoys = measure(model, *args, **kwargs)  # the real embeddings run
        return pairs_at[model.config.satellite_scale or 1.0], targets, decoys

    monkeypatch.setattr(source_check, "measure_source", spy)
    preset = get_preset("tiny").replace(init_tile_scales=(0.5, 1.0, 2.0))
    out = tmp_path / "scales"
    report = run_pipeline(
        target, "cvact", "unsupervised", preset, out, device="cpu", init_from=source_run
    )
    assert seen == [0.5, None, 2.0]
    check = report["init_from"]["check"]
    assert check["scale_pairs"] == {"0.5": 3, "1": 5, "2": 9}
    assert check["satellite_scale"] == 2.0 and check["source_pairs"] == 9
    selected, _ = load_model(out / "model" / "selected.pt")
    assert selected.config.satellite_scale == 2.0
    pairs_at.update({0.5: 9, 2.0: 3})  # a new run folder with other counts picks 0.5
    again = run_pipeline(
        target,
        "cvact",
        "unsupervised",
        preset,
        tmp_path / "scales2",
        device="cpu",
        init_from=source_run,
    )
    assert again["init_from"]["check"]["satellite_scale"] == 0.5
    # a tie goes to the tiles as they are
    pairs_at.update({0.5: 5, 1.0: 5, 2.0: 5})
    tie = run_pipeline(
        target,
        "cvact",
        "unsupervised",
        preset,
        tmp_path / "tie",
        device="cpu",
        init_from=source_run,
    )
    assert tie["init_from"]["check"]["satellite_scale"] is None


def _spy_cold_start(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """The model's weights each time the cold start's training begins."""
    from ucvgl.services.training import cold_start as cold_start_module

    starts: list[dict[str, torch.Tensor]] = []
    real = cold_start_module.cold_start

    def spy(model, *args, **kwargs):
        starts.append(_state(model))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(cold_start_module, "cold_start", spy)
    return starts


def test_a_source_weaker_than_the_prior_gets_the_cold_start_from_its_own_weights(
    source_run, target, tmp_path, monkeypatch
):
    """init_cold_start 'auto': the label-free source check measures the real source."""
    from ucvgl.services import source_check

    measured: list[tuple[int, int, int]] = []
    measure = source_check.measure_source

    def spy(*args, **kwargs):
        measured.append(measure(*args, **kwargs))
        return measured[-1]

    monkeypatch.setattr(source_check, "measure_source", spy)
    starts = _spy_cold_start(monkeypatch)
    # a prior of 16 pairs on a 16-panorama pool: no source can keep more, so it is weaker
    # (the target's panoramas as they are: the band source is at chance on full spheres)
    preset = get_preset("tiny").replace(prior_max_fdr=1.0, init_match_layout=False)
    out = tmp_path / "auto"
    report = run_pipeline(
        target, "cvact", "unsupervised", preset, out, device="cpu", init_from=source_run
    )
    names = [s["name"] for s in report["stages"]]
    assert names[names.index("translate") + 1 : names.index("amm")] == [
        "source_check",
        "cold_start",
    ]
    check = report["init_from"]["check"]
    pairs, targets, decoys = measured[0]
    assert len(measured) == 1 and check["setting"] == "auto" and check["cold_start"] is True
    assert (check["source_pairs"], check["mutual_targets"], check["mutual_decoys"]) == (
        pairs,
        targets,
        decoys,
    )
    assert 0 <= pairs <= targets <= 16 and 0 <= decoys <= 16
    assert check["prior_pairs"] == report["prior"]["pairs"] and pairs < check["prior_pairs"]
    # the cold start began from the source's weights, not from a fresh model's
    source, _ = load_model(source_run / "model" / "selected.pt")
    assert len(starts) == 1
    assert all(torch.equal(starts[0][k], v) for k, v in source.state_dict().items())
    # AMM's start candidate is the cold-started model; the source stays the run's copy
    assert "cold_start" in report["selection"]["candidates"][0]["path"]
    assert any(c["stage"] == "cold_start" for c in report["health"])


def test_a_source_that_keeps_more_pairs_than_the_prior_skips_the_cold_start(
    source_run, target, tmp_path, monkeypatch
):
    from ucvgl.services import source_check

    monkeypatch.setattr(source_check, "measure_source", lambda *a, **k: (16, 16, 0))
    starts = _spy_cold_start(monkeypatch)
    out = tmp_path / "strong"
    report = run_pipeline(
        target, "cvact", "unsupervised", "tiny", out, device="cpu", init_from=source_run
    )
    check = report["init_from"]["check"]
    assert check["cold_start"] is False and check["source_pairs"] == 16
    assert "at least the projection prior's" in check["reason"]
    assert starts == [] and not list((out / "stages").glob("cold_start*"))
    assert report["selection"]["candidates"][0]["path"] == report["init_from"]["copy"]
    # the decision is kept: a resumed run does not measure again
    monkeypatch.setattr(source_check, "measure_source", lambda *a, **k: (0, 0, 0))
    again = run_pipeline(
        target, "cvact", "unsupervised", "tiny", out, device="cpu", init_from=source_run
    )
    assert again["init_from"]["check"] == check


def test_semi_from_a_source_trains_the_known_pairs_from_it(
    source_run, target, tmp_path, monkeypatch
):
    """Ours-base*: no cold start even where the preset has one; warm-up at amm_lr."""
    from ucvgl.services.training import supervised

    calls: list[tuple[dict[str, torch.Tensor], float | None]] = []
    train_on_pairs = supervised.train_on_pairs

    def spy(model, *args, **kwargs):
        calls.append((_state(model), kwargs.get("lr")))
        return train_on_pairs(model, *args, **kwargs)

    monkeypatch.setattr(supervised, "train_on_pairs", spy)
    preset = get_preset("tiny").replace(semi_cold_start=True, amm_rounds=1)
    out = tmp_path / "semi"
    report = run_pipeline(
        target, "cvact", "semi", preset, out, device="cpu", gt_ratio=0.25, init_from=source_run
    )
    source, _ = load_model(source_run / "model" / "selected.pt")
    state, lr = calls[0]
    assert all(torch.equal(state[k], v) for k, v in source.state_dict().items())
    assert lr == preset.amm_lr
    assert not list((out / "stages").glob("cold_start*")) and not (out / "fake").exists()
    assert [s["name"] for s in report["stages"]][0] == "semi_warmup"
    assert report["init_from"]["sha256"] == file_sha256(source_run / "model" / "selected.pt")


def test_a_source_that_does_not_fit_the_preset_is_refused(source_run, target, tmp_path):
    wide = get_preset("tiny").replace(name="tiny-wide", ground_size=(32, 128))
    dataset = _dataset(target)
    with pytest.raises(ConfigError) as err:
        PipelineRun(dataset, tmp_path / "r", preset=wide, device="cpu", init_from=source_run)
    message = str(err.value)
    assert "ground_size=[32, 64]" in message and "ground_size=[32, 128]" in message
    assert "'tiny-wide'" in message and str(source_run.resolve()) in message
    assert not (tmp_path / "r" / "run.json").exists()


def test_a_source_without_a_selected_model_is_refused(target, tmp_path):
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(ConfigError, match="no selected model"):
        PipelineRun(
            _dataset(target), tmp_path / "r", preset="tiny", init_from=tmp_path / "unfinished"
        )
    with pytest.raises(ConfigError, match="no such run folder"):
        PipelineRun(_dataset(target), tmp_path / "r", preset="tiny", init_from=tmp_path / "x")


def _dataset(root: Path):
    from ucvgl.services.datasets import load_dataset

    return load_dataset(root, "cvact")
