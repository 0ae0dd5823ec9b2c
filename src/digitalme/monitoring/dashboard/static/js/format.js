// How figures read on the page. Every value from the server may be null
// ("no data"), which reads as an en dash, never as 0.

export const NONE = "–";

export function number(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return NONE;
  return Number(value).toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

export function rate(value) {
  if (value === null || value === undefined) return NONE;
  return number(value, value < 10 ? 2 : 1);
}

export function ms(value) {
  if (value === null || value === undefined) return NONE;
  return `${number(value, value < 10 ? 1 : 0)} ms`;
}

export function percent(ratio, digits = 1) {
  if (ratio === null || ratio === undefined) return NONE;
  return `${number(ratio * 100, digits)}%`;
}

export function bytes(value) {
  if (value === null || value === undefined) return NONE;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${number(size, unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return NONE;
  const s = Math.floor(seconds);
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (days > 0) return `${days}d ${hours}h`;
  if (hours > 0) return `${hours}h ${minutes}m`;
  if (minutes > 0) return `${minutes}m ${s % 60}s`;
  return `${s}s`;
}

export function time(iso) {
  if (!iso) return NONE;
  const at = new Date(iso);
  return at.toLocaleString(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

// An element with text (never HTML: every string from the server is data).
export function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

// Fill a <dl> with [label, text] pairs.
export function figures(list, pairs) {
  list.replaceChildren(
    ...pairs.flatMap(([label, text]) => [element("dt", label), element("dd", text)]),
  );
}
