// The jobs table: polled, updated row by row in place (focus and scroll survive each poll).

import { el, formatDuration, formatPercent, setText } from "./format.js";

const CONFIRM_MS = 4000;

export class JobsPanel {
  /**
   * @param {{api: Function, config: object, notices: object, datasetName: Function,
   *          onJobEnded: Function}} deps api(path, options) -> JSON; datasetName(id) -> text;
   *   onJobEnded(job) is called when a job seen active becomes terminal.
   */
  constructor({ api, config, notices, datasetName, onJobEnded }) {
    this.api = api;
    this.notices = notices;
    this.datasetName = datasetName;
    this.onJobEnded = onJobEnded;
    this.terminal = new Set(config.terminalStates);
    this.body = document.getElementById("jobs-body");
    this.empty = document.getElementById("jobs-empty");
    this.total = document.getElementById("jobs-total");
    this.updated = document.getElementById("jobs-updated");
    this.stateFilter = document.getElementById("job-state-filter");
    this.limit = document.getElementById("job-limit");
    this.rows = new Map();
    this.lastState = new Map();
    for (const state of config.jobStates) {
      const option = document.createElement("option");
      option.value = state;
      option.textContent = state.toLowerCase();
      this.stateFilter.append(option);
    }
  }

  /** Fetch the newest jobs and update the table. */
  async refresh() {
    const params = new URLSearchParams({ limit: this.limit.value || "25" });
    if (this.stateFilter.value) {
      params.set("state", this.stateFilter.value);
    }
    const page = await this.api(`/jobs?${params}`);
    this.render(page);
    setText(this.updated, `updated ${new Date().toLocaleTimeString()}`);
  }

  /** Redraw the last page (e.g. once the dataset names are known). */
  rerender() {
    if (this.lastPage) {
      this.render(this.lastPage);
    }
  }

  render(page) {
    this.lastPage = page;
    const items = Array.isArray(page?.items) ? page.items : [];
    const seen = new Set();
    const ordered = items.map((job) => {
      seen.add(job.id);
      this.noticeTransition(job);
      let row = this.rows.get(job.id);
      if (!row) {
        row = this.createRow(job.id);
        this.rows.set(job.id, row);
      }
      this.updateRow(row, job);
      return row.tr;
    });
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
    const current = Array.from(this.body.children);
    if (current.length !== ordered.length || current.some((tr, i) => tr !== ordered[i])) {
      this.body.append(...ordered); // moves rows into order; unchanged order touches nothing
    }
    this.empty.hidden = items.length > 0;
    const total = typeof page?.total === "number" ? page.total : items.length;
    setText(this.total, total > items.length ? `Showing ${items.length} of ${total} jobs.` : "");
  }

  noticeTransition(job) {
    const before = this.lastState.get(job.id);
    this.lastState.set(job.id, job.state);
    if (before && !this.terminal.has(before) && this.terminal.has(job.state)) {
      this.onJobEnded?.(job);
    }
  }

  createRow(id) {
    const tr = el("tr");
    tr.dataset.jobId = String(id);
    const cell = (field) => {
      const td = el("td");
      td.dataset.field = field;
      tr.append(td);
      return td;
    };
    const row = { tr, id };
    row.idCell = cell("id");
    row.type = cell("type");
    row.dataset = cell("dataset");
    row.state = cell("state");
    row.stateBadge = el("span", "badge");
    row.state.append(row.stateBadge);
    row.stage = cell("stage");
    const progressCell = cell("progress");
    row.bar = el("progress");
    row.bar.max = 100;
    row.bar.setAttribute("aria-label", `Job ${id} progress`);
    row.percent = el("span", "percent");
    row.percent.dataset.role = "percent";
    progressCell.append(row.bar, row.percent);
    row.eta = cell("eta");
    row.error = cell("error");
    const actions = cell("actions");
    row.cancel = el("button", "cancel", "Cancel");
    row.cancel.type = "button";
    row.cancel.setAttribute("aria-label", `Cancel job ${id}`);
    row.cancel.addEventListener("click", () => this.onCancelClick(row));
    actions.append(row.cancel);
    return row;
  }

  updateRow(row, job) {
    const terminal = this.terminal.has(job.state);
    const progress = job.state === "SUCCEEDED" ? 1 : job.progress;
    setText(row.idCell, `#${job.id}`);
    setText(row.type, job.type);
    setText(row.dataset, job.dataset_id == null ? "—" : this.datasetName(job.dataset_id));
    setText(row.stateBadge, job.state.toLowerCase());
    row.stateBadge.className = `badge state-${job.state.toLowerCase()}`;
    setText(row.stage, job.stage || "—");
    const value = Math.round(Math.min(Math.max(progress || 0, 0), 1) * 100);
    if (row.bar.value !== value) {
      row.bar.value = value;
    }
    setText(row.percent, formatPercent(progress));
    setText(row.eta, terminal ? "—" : formatDuration(job.eta_seconds));
    const problem = job.error || (job.state === "FAILED" ? "failed" : job.message || "");
    setText(row.error, problem);
    row.error.title = problem;
    row.error.classList.toggle("error-text", Boolean(job.error));
    row.tr.classList.toggle("is-terminal", terminal);
    if (terminal) {
      row.cancel.hidden = true;
    } else {
      row.cancel.hidden = false;
      if (job.cancel_requested) {
        this.resetConfirm(row);
        row.cancel.disabled = true;
        setText(row.cancel, "Cancelling…");
      } else if (!row.confirming && !row.busy) {
        row.cancel.disabled = false;
        setText(row.cancel, "Cancel");
      }
    }
  }

  resetConfirm(row) {
    row.confirming = false;
    clearTimeout(row.confirmTimer);
  }

  async onCancelClick(row) {
    if (!row.confirming) {
      // Two steps, no modal dialog: the first click asks, the second within 4 s cancels.
      row.confirming = true;
      setText(row.cancel, "Confirm cancel");
      row.confirmTimer = setTimeout(() => {
        row.confirming = false;
        if (!row.busy && !row.cancel.disabled) {
          setText(row.cancel, "Cancel");
        }
      }, CONFIRM_MS);
      return;
    }
    this.resetConfirm(row);
    row.busy = true;
    row.cancel.disabled = true;
    try {
      const job = await this.api(`/jobs/${row.id}/cancel`, { method: "POST" });
      this.notices.clear("cancel");
      this.notices.info(`Cancel requested for job #${row.id} (${job.state.toLowerCase()}).`);
      this.updateRow(row, job);
    } catch (error) {
      this.notices.error("cancel", `Could not cancel job #${row.id}: ${error.message}`);
      row.cancel.disabled = false;
      setText(row.cancel, "Cancel");
    } finally {
      row.busy = false;
    }
  }
}
