// Per dataset: the pseudo-label curve (labels and correct labels per round, as the paper's
// Fig. 6), the margin threshold and the recall of each round's model, the label-free stage
// checks of the run (and the message of a check that stopped it), plus data tables.

import { lineChart } from "./chart.js";
import { el, fillSelect, formatNumber, formatTime, setText } from "./format.js";

const UNKNOWN_RUN = "unknown run";

/** The run folder's last component ("default", a run_name) or the job when unknown. */
function runKeyOf(round, jobsById) {
  const job = round.job_id == null ? null : jobsById.get(round.job_id);
  if (job?.run_dir) {
    return job.run_dir;
  }
  return round.job_id == null ? UNKNOWN_RUN : `job #${round.job_id}`;
}

function runLabel(key) {
  const parts = key.split(/[\\/]/).filter(Boolean);
  return parts.length > 1 ? parts[parts.length - 1] : key;
}

/**
 * The stage checks of each run: those of the newest job of the run folder that reported
 * any (a job's ``health``; ``failure`` is the check that stopped it). Map run key ->
 * {job, health, failure}.
 */
export function latestHealth(jobs) {
  const byRun = new Map();
  const ordered = jobs.slice().sort((a, b) => a.id - b.id);
  for (const job of ordered) {
    const health = Array.isArray(job.health) ? job.health : [];
    if (health.length === 0 && !job.failure) {
      continue;
    }
    const key = job.run_dir || `job #${job.id}`;
    byRun.set(key, { job, health, failure: job.failure || null });
  }
  return byRun;
}

function formatValue(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    return value == null ? "—" : String(value);
  }
  return Number.isInteger(value) ? String(value) : value.toFixed(3);
}

function countsText(counts) {
  if (!counts || typeof counts !== "object") {
    return "";
  }
  return Object.entries(counts)
    .map(([name, value]) => {
      if (value && typeof value === "object") {
        const inner = Object.entries(value)
          .map(([k, v]) => `${v} ${k}`)
          .join(", ");
        return `${name}: ${inner}`;
      }
      return `${name}: ${value}`;
    })
    .join("; ");
}

/**
 * The model whose recall belongs to each round: a model's recall is shown at the LAST round
 * that used it (a pipeline job records every round with its final model; a job per round
 * gives each round its own model). Returns a model or null per round.
 */
export function recallModels(rounds, modelsById) {
  const lastIndex = new Map();
  rounds.forEach((r, i) => {
    if (r.model_id != null) {
      lastIndex.set(r.model_id, i);
    }
  });
  return rounds.map((r, i) =>
    r.model_id != null && lastIndex.get(r.model_id) === i ? modelsById.get(r.model_id) ?? null : null,
  );
}

function recallOf(model, key) {
  const value = model?.recall?.[key];
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

export class DatasetPanel {
  /** @param {{api: Function, notices: object, onDatasets: Function}} deps onDatasets(list). */
  constructor({ api, notices, onDatasets }) {
    this.api = api;
    this.notices = notices;
    this.onDatasets = onDatasets;
    this.datasets = [];
    this.select = document.getElementById("dataset-select");
    this.runSelect = document.getElementById("run-select");
    this.info = document.getElementById("dataset-info");
    this.empty = document.getElementById("rounds-empty");
    this.roundsBody = document.getElementById("rounds-body");
    this.modelsBody = document.getElementById("models-body");
    this.healthBody = document.getElementById("health-body");
    this.healthTable = document.getElementById("health-table");
    this.healthEmpty = document.getElementById("health-empty");
    this.healthFailure = document.getElementById("health-failure");
    this.charts = {
      labels: document.getElementById("labels-chart"),
      threshold: document.getElementById("threshold-chart"),
      recall: document.getElementById("recall-chart"),
    };
    this.lastDrawn = null;
    this.data = null;
    this.loaded = false;
    this.select.addEventListener("change", () => this.refreshSelected().catch((e) => this.fail(e)));
    this.runSelect.addEventListener("change", () => this.draw());
    this.drawEmpty();
  }

  fail(error) {
    this.notices.error("dataset", `Reading the dataset: ${error.message}`);
  }

  /** Fetch the dataset list and fill the selectors. */
  async refreshList() {
    const page = await this.api("/datasets?limit=500");
    this.datasets = Array.isArray(page?.items) ? page.items : [];
    fillSelect(
      this.select,
      this.datasets.map((d) => ({ value: d.id, label: `${d.name} (#${d.id}, ${d.format})` })),
    );
    this.select.disabled = this.datasets.length === 0;
    this.loaded = true;
    this.onDatasets?.(this.datasets);
  }

  selectedDataset() {
    const id = Number(this.select.value);
    return this.datasets.find((d) => d.id === id) || null;
  }

  /** Fetch the rounds, models and jobs of the selected dataset and redraw when they changed. */
  async refreshSelected() {
    if (!this.loaded) {
      return; // the dataset list comes first
    }
    const dataset = this.selectedDataset();
    if (!dataset) {
      this.data = null;
      setText(this.info, "No dataset registered yet.");
      fillSelect(this.runSelect, []);
      this.runSelect.disabled = true;
      this.drawEmpty();
      return;
    }
    const id = dataset.id;
    const [rounds, models, jobs] = await Promise.all([
      this.api(`/datasets/${id}/rounds?limit=1000`),
      this.api(`/models?dataset_id=${id}&limit=500`),
      this.api(`/jobs?dataset_id=${id}&limit=500`),
    ]);
    if (Number(this.select.value) !== id) {
      return; // the user chose another dataset meanwhile
    }
    this.notices.clear("dataset");
    this.data = {
      dataset,
      rounds: rounds?.items ?? [],
      models: models?.items ?? [],
      jobs: jobs?.items ?? [],
    };
    this.draw();
  }

  draw() {
    if (!this.data) {
      return;
    }
    const { dataset, rounds, models, jobs } = this.data;
    const gt = dataset.has_ground_truth
      ? "has ground truth"
      : "no ground truth (correct labels and recall are not known)";
    setText(this.info, `${dataset.name}: ${dataset.format}, ${gt}. ${countsText(dataset.counts)}`);

    const jobsById = new Map(jobs.map((j) => [j.id, j]));
    const runs = new Map();
    for (const round of rounds) {
      const key = runKeyOf(round, jobsById);
      if (!runs.has(key)) {
        runs.set(key, []);
      }
      runs.get(key).push(round);
    }
    const healthByRun = latestHealth(jobs);
    for (const key of healthByRun.keys()) {
      if (!runs.has(key)) {
        runs.set(key, []); // a run stopped by a stage check may have no round
      }
    }
    // Newest run first: the one whose latest job (with a round or a stage check) is newest.
    const recency = (key) =>
      Math.max(
        -1,
        ...runs.get(key).map((r) => r.job_id ?? -1),
        healthByRun.get(key)?.job.id ?? -1,
      );
    const keys = Array.from(runs.keys()).sort((a, b) => recency(b) - recency(a));
    const runText = (k) => {
      const failed = healthByRun.get(k)?.failure ? ", failed" : "";
      return `${runLabel(k)} (${runs.get(k).length} rounds${failed})`;
    };
    const run = fillSelect(
      this.runSelect,
      keys.map((k) => ({ value: k, label: runText(k) })),
    );
    this.runSelect.disabled = keys.length < 2;
    const selected = (runs.get(run) || []).slice().sort((a, b) => a.round - b.round || a.id - b.id);
    const modelsById = new Map(models.map((m) => [m.id, m]));

    const health = healthByRun.get(run) || null;
    const signature = JSON.stringify([dataset.id, run, selected, models, health]);
    if (signature === this.lastDrawn) {
      return;
    }
    this.lastDrawn = signature;
    this.empty.hidden = selected.length > 0;
    this.drawCharts(selected, modelsById, dataset);
    this.fillRoundsTable(selected, modelsById);
    this.fillModelsTable(models);
    this.fillHealth(health);
  }

  /** The stage checks of the selected run and, when one stopped it, its message. */
  fillHealth(entry) {
    const checks = entry?.health ?? [];
    const failure = entry?.failure ?? null;
    this.healthFailure.hidden = !failure;
    setText(
      this.healthFailure,
      failure ? `Job #${entry.job.id} stopped at stage ${failure.stage}: ${failure.message}` : "",
    );
    this.healthEmpty.hidden = checks.length > 0;
    this.healthTable.hidden = checks.length === 0;
    this.healthBody.replaceChildren(
      ...checks.map((c) => {
        const tr = el("tr");
        tr.dataset.stage = String(c.stage);
        const outcome = el("span", `outcome-${c.action}`, c.passed ? c.action : `failed: ${c.action}`);
        const cells = [
          el("td", "", String(c.stage)),
          el("td", "", String(c.check)),
          el("td", "", `${c.metric} ${formatValue(c.numbers?.[c.metric])}`),
          el("td", "", formatValue(c.floor)),
          el("td"),
          el("td", "message", String(c.message || "")),
        ];
        cells[4].append(outcome);
        tr.append(...cells);
        return tr;
      }),
    );
  }

  drawEmpty() {
    this.lastDrawn = null;
    this.drawCharts([], new Map(), null);
    this.roundsBody.replaceChildren();
    this.modelsBody.replaceChildren();
    this.fillHealth(null);
  }

  drawCharts(rounds, modelsById, dataset) {
    const xLabels = rounds.map((r) => String(r.round));
    const name = dataset ? dataset.name : "no dataset";
    lineChart(this.charts.labels, {
      xLabels,
      label: `Pseudo-labels and correct labels per round, ${name}`,
      emptyText: "No rounds yet.",
      series: [
        { key: "labels", name: "pseudo-labels", values: rounds.map((r) => r.labels) },
        { key: "correct", name: "correct labels", values: rounds.map((r) => r.correct ?? null) },
      ],
    });
    lineChart(this.charts.threshold, {
      xLabels,
      label: `Margin threshold per round, ${name}`,
      emptyText: "No rounds yet.",
      series: [{ key: "threshold", name: "threshold", values: rounds.map((r) => r.threshold) }],
    });
    const models = recallModels(rounds, modelsById);
    lineChart(this.charts.recall, {
      xLabels,
      yMax: 100,
      label: `Recall of the model trained up to each round, ${name}`,
      emptyText: "No recall measured yet (it needs ground truth and an evaluation).",
      series: [
        { key: "r1", name: "R@1", values: models.map((m) => recallOf(m, "r1")) },
        { key: "r5", name: "R@5", values: models.map((m) => recallOf(m, "r5")) },
        { key: "r1p", name: "R@1%", values: models.map((m) => recallOf(m, "r1p")) },
      ],
    });
  }

  fillRoundsTable(rounds, modelsById) {
    const models = recallModels(rounds, modelsById);
    this.roundsBody.replaceChildren(
      ...rounds.map((r, i) => {
        const tr = el("tr");
        const model = models[i];
        const cells = [
          String(r.round),
          formatNumber(r.threshold, 3),
          String(r.mutual),
          String(r.labels),
          r.correct == null ? "—" : String(r.correct),
          r.correct_ratio == null ? "—" : `${formatNumber(100 * r.correct_ratio, 1)}%`,
          formatNumber(r.label_health_score, 3),
          r.model_id == null ? "—" : `#${r.model_id}`,
          formatNumber(recallOf(model, "r1"), 2),
        ];
        tr.append(...cells.map((text) => el("td", "", text)));
        return tr;
      }),
    );
  }

  fillModelsTable(models) {
    this.modelsBody.replaceChildren(
      ...models.map((m) => {
        const tr = el("tr");
        const cells = [
          `#${m.id}`,
          m.mode,
          m.preset || "—",
          formatNumber(recallOf(m, "r1"), 2),
          formatNumber(recallOf(m, "r5"), 2),
          formatNumber(recallOf(m, "r10"), 2),
          formatNumber(recallOf(m, "r1p"), 2),
          formatTime(m.created_at),
        ];
        tr.append(...cells.map((text) => el("td", "", text)));
        return tr;
      }),
    );
  }
}
