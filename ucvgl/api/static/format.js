// Formatting helpers and small DOM helpers shared by the dashboard panels.

/** "1 h 02 min", "3 min 05 s", "12 s"; an em dash when unknown. */
export function formatDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) {
    return "—";
  }
  const s = Math.round(seconds);
  if (s < 60) {
    return `${s} s`;
  }
  const minutes = Math.floor(s / 60);
  if (minutes < 60) {
    return `${minutes} min ${String(s % 60).padStart(2, "0")} s`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 48) {
    return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
  }
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** Progress 0..1 as a whole percent, "60%". */
export function formatPercent(fraction) {
  const value = typeof fraction === "number" && Number.isFinite(fraction) ? fraction : 0;
  return `${Math.round(Math.min(Math.max(value, 0), 1) * 100)}%`;
}

/** A number with `digits` decimals, or an em dash for null/undefined/NaN. */
export function formatNumber(value, digits = 2) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

/** An ISO timestamp as local date and time, or an em dash. */
export function formatTime(iso) {
  if (!iso) {
    return "—";
  }
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "—" : date.toLocaleString();
}

/** Set an element's text only when it changed (keeps the DOM and screen readers quiet). */
export function setText(element, text) {
  const value = String(text);
  if (element.textContent !== value) {
    element.textContent = value;
  }
}

/** Create an element with a class name and text. */
export function el(tag, className = "", text = "") {
  const element = document.createElement(tag);
  if (className) {
    element.className = className;
  }
  if (text) {
    element.textContent = text;
  }
  return element;
}

/**
 * Replace a <select>'s options with `options` ([{value, label}]) keeping the selection when
 * it is still offered; returns the selected value.
 */
export function fillSelect(select, options, preferred = select.value) {
  const wanted = options.map((o) => `${o.value}\u0000${o.label}`).join("\u0001");
  const current = Array.from(select.options)
    .map((o) => `${o.value}\u0000${o.textContent}`)
    .join("\u0001");
  if (wanted !== current) {
    select.replaceChildren(
      ...options.map((o) => {
        const option = document.createElement("option");
        option.value = String(o.value);
        option.textContent = o.label;
        return option;
      }),
    );
  }
  const values = options.map((o) => String(o.value));
  if (values.includes(String(preferred))) {
    select.value = String(preferred);
  } else if (values.length) {
    select.value = values[0];
  }
  return select.value;
}
