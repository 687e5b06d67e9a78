// The query panel: a panorama (uploaded, or one of the index's dataset) -> POST /query ->
// the top-k satellite tiles as images with rank, score, file and coordinates; the true tile
// is marked when the dataset knows it. Images come through fetch (with the token if any).

import { el, fillSelect, formatNumber, setText } from "./format.js";

const PANORAMAS_SHOWN = 200;
const MAX_K = 100;

function coordinates(match) {
  if (typeof match.lat === "number" && typeof match.lon === "number") {
    return `lat ${match.lat.toFixed(6)}, lon ${match.lon.toFixed(6)}`;
  }
  if (typeof match.x === "number" && typeof match.y === "number") {
    return `x ${match.x.toFixed(1)}, y ${match.y.toFixed(1)}`;
  }
  return "no coordinates";
}

export class QueryPanel {
  /**
   * @param {{api: Function, base: string, form: Function, blob: Function, notices: object}} deps
   *   api(path) GETs JSON below `base` (the API prefix), form(path, FormData) POSTs a form,
   *   blob(url) GETs an image.
   */
  constructor({ api, base, form, blob, notices }) {
    this.api = api;
    this.base = base;
    this.postForm = form;
    this.blob = blob;
    this.notices = notices;
    this.form = document.getElementById("query-form");
    this.index = document.getElementById("query-index");
    this.split = document.getElementById("query-split");
    this.panorama = document.getElementById("query-panorama");
    this.file = document.getElementById("query-file");
    this.k = document.getElementById("query-k");
    this.submit = document.getElementById("query-submit");
    this.info = document.getElementById("query-info");
    this.figure = document.getElementById("query-figure");
    this.preview = document.getElementById("query-preview");
    this.caption = document.getElementById("query-caption");
    this.results = document.getElementById("query-results");
    this.page = null; // the listed panoramas of the chosen index and split
    this.loadedFor = null;
    this.urls = { preview: null, tiles: [] };
    this.index.addEventListener("change", () => this.loadPanoramas().catch((e) => this.fail(e)));
    this.split.addEventListener("change", () => this.loadPanoramas().catch((e) => this.fail(e)));
    this.panorama.addEventListener("change", () => {
      this.file.value = "";
      this.showPick().catch((e) => this.fail(e));
    });
    this.file.addEventListener("change", () => this.showUpload());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run().catch((e) => this.fail(e));
    });
    this.setEnabled(false);
  }

  fail(error) {
    this.notices.error("query", `Query: ${error.message}`);
    this.submit.disabled = !this.index.value;
  }

  setEnabled(hasIndex) {
    this.submit.disabled = !hasIndex;
    this.panorama.disabled = !hasIndex || !this.page?.items?.length;
    this.split.disabled = !hasIndex || (this.page?.splits?.length ?? 0) < 2;
  }

  /** Offer the built indexes (newest first), labelled with their dataset and model. */
  async refresh() {
    const [indexes, models, datasets] = await Promise.all([
      this.api("/indexes?limit=100"),
      this.api("/models?limit=500"),
      this.api("/datasets?limit=500"),
    ]);
    const modelsById = new Map((models?.items ?? []).map((m) => [m.id, m]));
    const names = new Map((datasets?.items ?? []).map((d) => [d.id, d.name]));
    const options = (indexes?.items ?? []).map((index) => {
      const model = modelsById.get(index.model_id);
      const dataset = model ? names.get(model.dataset_id) ?? `dataset #${model.dataset_id}` : "?";
      const mode = model ? ` ${model.mode}` : "";
      return {
        value: index.id,
        label: `#${index.id} · ${dataset} · model #${index.model_id}${mode} · ${index.size} tiles`,
      };
    });
    fillSelect(this.index, options);
    this.index.disabled = options.length === 0;
    this.notices.clear("query-list");
    if (!options.length) {
      setText(this.info, "No index yet: build one (an 'index' job, or POST /api/v1/indexes).");
      this.setEnabled(false);
      return;
    }
    if (this.loadedFor !== this.index.value) {
      await this.loadPanoramas();
    }
  }

  /** List the chosen index's dataset panoramas of the chosen (or first) split. */
  async loadPanoramas() {
    const indexId = this.index.value;
    if (!indexId) {
      return;
    }
    const sameIndex = this.loadedFor === indexId;
    const split = sameIndex && this.split.value ? `&split=${encodeURIComponent(this.split.value)}` : "";
    const page = await this.api(
      `/indexes/${indexId}/panoramas?limit=${PANORAMAS_SHOWN}${split}`,
    );
    if (this.index.value !== indexId) {
      return; // another index was chosen meanwhile
    }
    this.page = page;
    this.loadedFor = indexId;
    fillSelect(
      this.split,
      page.splits.map((s) => ({ value: s, label: s })),
      page.split,
    );
    fillSelect(
      this.panorama,
      page.items.map((p) => ({
        value: p.position,
        label: `${p.file_name}${p.true_satellite_id == null ? "" : " (true tile known)"}`,
      })),
    );
    const shown = page.total > page.items.length ? ` (the first ${page.items.length})` : "";
    const gt = page.has_ground_truth ? "with ground truth" : "without ground truth";
    setText(
      this.info,
      `${page.dataset_name}, ${gt}: ${page.total} panoramas in split ${page.split}${shown}.`,
    );
    this.notices.clear("query");
    this.setEnabled(true);
    if (!this.file.files?.length) {
      await this.showPick();
    }
  }

  pick() {
    const position = Number(this.panorama.value);
    return this.page?.items?.find((p) => p.position === position) ?? null;
  }

  setPreview(blob, caption) {
    if (this.urls.preview) {
      URL.revokeObjectURL(this.urls.preview);
    }
    this.urls.preview = URL.createObjectURL(blob);
    this.preview.src = this.urls.preview;
    this.preview.alt = `ground panorama ${caption}`;
    setText(this.caption, caption);
    this.figure.hidden = false;
  }

  async showPick() {
    const pick = this.pick();
    if (!pick) {
      return;
    }
    this.setPreview(await this.blob(pick.image_url), `${pick.split}/${pick.file_name}`);
  }

  showUpload() {
    const file = this.file.files?.[0];
    if (file) {
      this.setPreview(file, `uploaded ${file.name}`);
    }
  }

  /** POST the panorama to /query and show the tiles. */
  async run() {
    const indexId = Number(this.index.value);
    const k = Math.min(Math.max(Math.round(Number(this.k.value) || 5), 1), MAX_K);
    let image;
    let name;
    let heading = null;
    let truth = null;
    let source;
    const upload = this.file.files?.[0];
    if (upload) {
      image = upload;
      name = upload.name;
      source = `uploaded ${upload.name}`;
    } else {
      const pick = this.pick();
      if (!pick) {
        throw new Error("choose a panorama of the dataset or upload one");
      }
      image = await this.blob(pick.image_url);
      name = pick.file_name;
      heading = pick.heading_deg;
      truth = pick.true_satellite_id;
      source = `${pick.split}/${pick.file_name}`;
    }
    const body = new FormData();
    body.append("files", image, name);
    body.append("k", String(k));
    body.append("index_id", String(indexId));
    if (heading != null) {
      body.append("heading", String(heading));
    }
    this.submit.disabled = true;
    setText(this.info, `Querying index #${indexId} with ${source}…`);
    try {
      const answer = await this.postForm("/query", body);
      this.notices.clear("query");
      this.render(answer, answer.results[0]?.matches ?? [], { indexId, truth, source, upload });
    } finally {
      this.submit.disabled = false;
    }
  }

  render(answer, matches, { indexId, truth, source, upload }) {
    for (const url of this.urls.tiles) {
      URL.revokeObjectURL(url);
    }
    this.urls.tiles = [];
    const items = matches.map((m) => {
      const item = el("li", "tile");
      item.dataset.rank = String(m.rank);
      item.dataset.satelliteId = m.satellite_id;
      const isTrue = truth != null && m.satellite_id === truth;
      if (isTrue) {
        item.classList.add("true-tile");
        item.dataset.true = "true";
      }
      const image = document.createElement("img");
      image.alt = `satellite tile ${m.satellite_id}`;
      image.width = 128;
      image.height = 128;
      const head = el("div", "tile-head", `#${m.rank} · score ${formatNumber(m.score, 4)}`);
      if (isTrue) {
        head.append(" ", el("span", "badge true-badge", "true tile"));
      }
      item.append(
        image,
        head,
        el("div", "tile-id", m.satellite_id),
        el("div", "tile-file muted", m.file_name),
        el("div", "tile-coords", coordinates(m)),
      );
      this.loadTile(indexId, m.satellite_id, image);
      return item;
    });
    this.results.replaceChildren(...items);
    let verdict;
    if (upload) {
      verdict = "An uploaded panorama has no known true tile.";
    } else if (truth == null) {
      verdict = "The dataset gives no true tile for this panorama.";
    } else {
      const hit = matches.find((m) => m.satellite_id === truth);
      verdict = hit
        ? `True tile ${truth}: rank ${hit.rank}.`
        : `True tile ${truth} is not among the top ${matches.length}.`;
    }
    setText(
      this.info,
      `Top ${matches.length} tiles of index #${answer.index_id} for ${source}. ${verdict}`,
    );
  }

  async loadTile(indexId, satelliteId, image) {
    try {
      const blob = await this.blob(
        `${this.base}/indexes/${indexId}/tile?satellite_id=${encodeURIComponent(satelliteId)}`,
      );
      const url = URL.createObjectURL(blob);
      this.urls.tiles.push(url);
      image.src = url;
    } catch (error) {
      image.alt = `tile ${satelliteId}: ${error.message}`;
      image.classList.add("missing");
    }
  }
}
