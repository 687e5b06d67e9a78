// The "start a job" form: POST /jobs with the API token; the server validates everything.

import { fillSelect } from "./format.js";

// Job types that take a `mode` parameter (ucvgl.services.pipeline validates the rest).
const MODE_TYPES = new Set(["pipeline", "amm_round", "evaluate", "index"]);

export class StartForm {
  /**
   * @param {{api: Function, config: object, notices: object, onStarted: Function}} deps
   *   onStarted(job) runs after the server accepted a job.
   */
  constructor({ api, config, notices, onStarted }) {
    this.api = api;
    this.notices = notices;
    this.onStarted = onStarted;
    this.jobTypes = new Map(config.jobTypes.map((t) => [t.value, t]));
    this.form = document.getElementById("start-form");
    this.dataset = document.getElementById("start-dataset");
    this.type = document.getElementById("start-type");
    this.model = document.getElementById("start-model");
    this.mode = document.getElementById("start-mode");
    this.gtRatio = document.getElementById("start-gt-ratio");
    this.round = document.getElementById("start-round");
    this.preset = document.getElementById("start-preset");
    this.runName = document.getElementById("start-run-name");
    this.submit = document.getElementById("start-submit");
    fillSelect(
      this.type,
      config.jobTypes.map((t) => ({ value: t.value, label: t.value.replace("_", " ") })),
      "pipeline",
    );
    fillSelect(this.mode, config.modes.map((m) => ({ value: m, label: m })), "unsupervised");
    this.type.addEventListener("change", () => this.toggleFields());
    this.mode.addEventListener("change", () => this.toggleFields());
    this.dataset.addEventListener("change", () => this.refreshModels());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.start();
    });
    this.toggleFields();
  }

  /** Offer the registered datasets (newest first). */
  setDatasets(datasets) {
    fillSelect(
      this.dataset,
      datasets.map((d) => ({ value: d.id, label: `${d.name} (#${d.id})` })),
    );
    this.submit.disabled = datasets.length === 0;
    this.refreshModels();
  }

  needsModel() {
    return Boolean(this.jobTypes.get(this.type.value)?.needsModel);
  }

  toggleFields() {
    const type = this.type.value;
    const takesMode = MODE_TYPES.has(type);
    document.getElementById("start-model-field").hidden = !this.needsModel();
    document.getElementById("start-mode-field").hidden = !takesMode;
    document.getElementById("start-gt-field").hidden = !(
      type === "semi" ||
      (takesMode && this.mode.value === "semi")
    );
    document.getElementById("start-round-field").hidden = type !== "amm_round";
    this.model.required = this.needsModel();
    if (this.needsModel()) {
      this.refreshModels();
    }
  }

  async refreshModels() {
    if (!this.needsModel() || !this.dataset.value) {
      return;
    }
    try {
      const page = await this.api(`/models?dataset_id=${Number(this.dataset.value)}&limit=500`);
      const models = page?.items ?? [];
      fillSelect(
        this.model,
        models.map((m) => ({ value: m.id, label: `#${m.id} ${m.mode}${m.preset ? ` (${m.preset})` : ""}` })),
      );
      this.notices.clear("models");
    } catch (error) {
      this.notices.error("models", `Reading the models: ${error.message}`);
    }
  }

  /** The request body from the visible fields. */
  body() {
    const type = this.type.value;
    const params = {};
    if (MODE_TYPES.has(type)) {
      params.mode = this.mode.value;
    }
    if (!document.getElementById("start-gt-field").hidden && this.gtRatio.value !== "") {
      params.gt_ratio = Number(this.gtRatio.value);
    }
    if (type === "amm_round" && this.round.value !== "") {
      params.round = Number(this.round.value);
    }
    if (this.preset.value.trim()) {
      params.preset = this.preset.value.trim();
    }
    if (this.runName.value.trim()) {
      params.run_name = this.runName.value.trim();
    }
    const body = { type, dataset_id: Number(this.dataset.value), params };
    if (this.needsModel() && this.model.value) {
      body.model_id = Number(this.model.value);
    }
    return body;
  }

  async start() {
    if (!this.dataset.value) {
      this.notices.error("start", "Register a dataset first (POST /api/v1/datasets).");
      return;
    }
    this.submit.disabled = true;
    try {
      const job = await this.api("/jobs", { method: "POST", body: this.body() });
      this.notices.clear("start");
      this.notices.info(`Job #${job.id} (${job.type}) is ${job.state.toLowerCase()}.`);
      this.onStarted?.(job);
    } catch (error) {
      this.notices.error("start", `Could not start the job: ${error.message}`);
    } finally {
      this.submit.disabled = false;
    }
  }
}
