// The dashboard's entry point: wires the panels, the token form and the polling loops.

import { apiBlob, apiForm, apiRequest, getToken, setToken } from "./api.js";
import { DatasetPanel } from "./datasets.js";
import { setText } from "./format.js";
import { JobsPanel } from "./jobs.js";
import { Notices } from "./notices.js";
import { QueryPanel } from "./query.js";
import { StartForm } from "./start.js";

const JOBS_EVERY_MS = 1500;
const DATASET_EVERY_MS = 5000;
const DATASET_LIST_EVERY_MS = 15000;
const HIDDEN_EVERY_MS = 15000;
const MAX_BACKOFF_MS = 30000;

function readConfig() {
  const node = document.getElementById("dashboard-config");
  return JSON.parse(node.textContent);
}

/**
 * Run `task` now and then every `everyMs` after it finishes (never two at once); errors go to
 * `onError` and back off exponentially. Returns a function that runs the task right away.
 */
function poll(task, everyMs, onError) {
  let timer = null;
  let running = false;
  let again = false;
  let failures = 0;
  const run = async () => {
    clearTimeout(timer);
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await task();
      failures = 0;
    } catch (error) {
      failures += 1;
      onError(error);
    } finally {
      running = false;
    }
    if (again) {
      again = false;
      run();
      return;
    }
    const base = document.hidden ? Math.max(everyMs, HIDDEN_EVERY_MS) : everyMs;
    const delay = Math.min(base * 2 ** Math.min(failures, 5), MAX_BACKOFF_MS);
    timer = setTimeout(run, delay);
  };
  run();
  return run;
}

function main() {
  const config = readConfig();
  const notices = new Notices(document.getElementById("status"), document.getElementById("alert"));
  const api = (path, options) => apiRequest(config.apiBase, path, options);
  const names = new Map();

  let refreshJobs = () => {};
  let refreshDataset = () => {};
  let refreshDatasets = () => {};
  let refreshQuery = () => {};
  let jobs = null;

  const startForm = new StartForm({
    api,
    config,
    notices,
    onStarted: () => refreshJobs(),
  });
  const datasets = new DatasetPanel({
    api,
    notices,
    onDatasets: (list) => {
      names.clear();
      for (const d of list) {
        names.set(d.id, d.name);
      }
      startForm.setDatasets(list);
      jobs?.rerender();
    },
  });
  jobs = new JobsPanel({
    api,
    config,
    notices,
    datasetName: (id) => names.get(id) ?? `#${id}`,
    onJobEnded: (job) => {
      if (job.dataset_id === Number(datasets.select.value)) {
        refreshDataset();
      }
      if (!names.has(job.dataset_id)) {
        refreshDatasets();
      }
    },
  });

  const query = new QueryPanel({
    api,
    base: config.apiBase,
    form: (path, body) => apiForm(config.apiBase, path, body),
    blob: (url) => apiBlob(url),
    notices,
  });

  const reportTo = (source, what) => (error) => notices.error(source, `${what}: ${error.message}`);
  // Without public reads, nothing can be read before a token is given: say so, ask nothing.
  const canRead = () => {
    if (config.publicReads || getToken()) {
      notices.clear("auth");
      return true;
    }
    notices.error("auth", "This server needs the API token for reading too: enter it above.");
    return false;
  };
  refreshJobs = poll(
    async () => {
      if (!canRead()) {
        return;
      }
      await jobs.refresh();
      notices.clear("jobs");
    },
    JOBS_EVERY_MS,
    reportTo("jobs", "Reading the jobs"),
  );
  refreshDatasets = poll(
    async () => {
      if (!canRead()) {
        return;
      }
      await datasets.refreshList();
      notices.clear("datasets");
      refreshDataset();
    },
    DATASET_LIST_EVERY_MS,
    reportTo("datasets", "Reading the datasets"),
  );
  refreshQuery = poll(
    async () => {
      if (!canRead()) {
        return;
      }
      await query.refresh();
      notices.clear("query-list");
    },
    DATASET_LIST_EVERY_MS,
    reportTo("query-list", "Reading the indexes"),
  );
  refreshDataset = poll(
    () => (canRead() ? datasets.refreshSelected() : undefined),
    DATASET_EVERY_MS,
    reportTo("dataset", "Reading the dataset"),
  );

  document.getElementById("job-state-filter").addEventListener("change", () => refreshJobs());
  document.getElementById("job-limit").addEventListener("change", () => refreshJobs());
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) {
      refreshJobs();
    }
  });

  const tokenInput = document.getElementById("token-input");
  const tokenState = document.getElementById("token-state");
  const showTokenState = () => {
    const has = Boolean(getToken());
    const reads = config.publicReads ? "read-only" : "reads need the token";
    setText(tokenState, has ? "token set for this tab" : `no token: ${reads}`);
  };
  tokenInput.value = getToken();
  showTokenState();
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(tokenInput.value.trim());
    showTokenState();
    const sources = ["auth", "start", "cancel", "jobs", "datasets", "dataset", "models"];
    for (const source of [...sources, "query", "query-list"]) {
      notices.clear(source); // errors seen with the old token are stale
    }
    notices.info(getToken() ? "Token saved for this browser tab." : "Token cleared.");
    refreshJobs();
    refreshDatasets();
    refreshQuery();
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    tokenInput.value = "";
    setToken("");
    showTokenState();
    notices.info("Token forgotten.");
  });
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", main);
} else {
  main();
}
