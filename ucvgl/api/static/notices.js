// The page's two message areas: a polite status line and an alert listing current errors.

import { setText } from "./format.js";

export class Notices {
  /**
   * @param {HTMLElement} statusEl role=status element for confirmations.
   * @param {HTMLElement} alertEl role=alert element for errors.
   */
  constructor(statusEl, alertEl) {
    this.statusEl = statusEl;
    this.alertEl = alertEl;
    this.errors = new Map();
  }

  /** Say that something worked (replaces the previous confirmation). */
  info(message) {
    setText(this.statusEl, message);
  }

  /** Show an error from `source` (one per source; the same text is not re-announced). */
  error(source, message) {
    if (this.errors.get(source) === message) {
      return;
    }
    this.errors.set(source, message);
    this.render();
  }

  /** The error from `source` is over. */
  clear(source) {
    if (this.errors.delete(source)) {
      this.render();
    }
  }

  render() {
    const messages = Array.from(this.errors.values());
    setText(this.alertEl, messages.join("\n"));
    this.alertEl.hidden = messages.length === 0;
  }
}
