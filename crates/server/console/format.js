// What a person reads: amounts with their currency, times in the operator's own zone, words for
// the API's codes, and DOM building without HTML strings (no data is ever parsed as markup).

// Builds an element: h("p", { class: "x", id: "y" }, "text", child, ...).
export function h(tag, attributes = {}, ...children) {
  const svg = tag.startsWith("svg:");
  const element = svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

// "1234567.50" -> "1,234,567.50" (string work only: amounts are never floats here).
export function groupDigits(decimal) {
  const text = String(decimal);
  const negative = text.startsWith("-");
  const [whole, fraction] = (negative ? text.slice(1) : text).split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (negative ? "-" : "") + grouped + (fraction !== undefined ? "." + fraction : "");
}

// Minor units (a number or a string of digits) and an exponent -> the decimal text.
export function minorToDecimal(minor, exponent) {
  let text = String(minor);
  const negative = text.startsWith("-");
  if (negative) text = text.slice(1);
  if (!/^\d+$/.test(text)) return String(minor);
  if (!exponent) return (negative ? "-" : "") + text;
  text = text.padStart(exponent + 1, "0");
  const whole = text.slice(0, text.length - exponent);
  const fraction = text.slice(text.length - exponent);
  return (negative ? "-" : "") + whole + "." + fraction;
}

// Decimal places of the currencies the rails use; others are shown in minor units with a note.
const EXPONENTS = { KES: 2, UGX: 0, TZS: 2, USD: 2, EUR: 2, GBP: 2, NGN: 2, GHS: 2, RWF: 0, XOF: 0, ZAR: 2, INR: 2 };

// An amount for a person: "1,234.50 KES". Accepts "1234.50 KES", {amount, currency},
// a decimal and a currency, or minor units and a currency.
export function money(value, currency, { minor = false } = {}) {
  if (value === undefined || value === null) return "—";
  if (typeof value === "object") {
    if (value.amount !== undefined) return money(value.amount, value.currency || currency);
    if (value.decimal !== undefined) return money(value.decimal, value.currency || currency);
    if (value.minor !== undefined) return money(value.minor, value.currency || currency, { minor: true });
    return JSON.stringify(value);
  }
  let text = String(value).trim();
  const parts = text.split(/\s+/);
  if (parts.length === 2 && /^[A-Z]{3}$/.test(parts[1])) {
    [text, currency] = parts;
  } else if (parts.length === 2 && /^[A-Z]{3}$/.test(parts[0])) {
    [currency, text] = parts;
  }
  if (minor) {
    const exponent = EXPONENTS[currency];
    if (exponent === undefined) return `${groupDigits(text)} minor units of ${currency || "?"}`;
    text = minorToDecimal(text, exponent);
  }
  return currency ? `${groupDigits(text)} ${currency}` : groupDigits(text);
}

// A time for a person, in their zone, with the zone named. Takes epoch milliseconds or RFC 3339.
export function when(value) {
  if (value === undefined || value === null || value === "") return "—";
  const date = typeof value === "number" ? new Date(value) : new Date(String(value));
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
  });
}

// An API code or field name in words: "agent_float" -> "agent float", "last_sync_at_ms" ->
// "last sync at".
export function words(code) {
  if (code === undefined || code === null) return "—";
  return String(code)
    .replace(/_(ms|minor|sha256)$/, "")
    .replace(/[_-]+/g, " ")
    .replace(/([a-z])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .trim();
}

// A sentence-case label for a field name.
export function label(name) {
  const text = words(name);
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// The CSS class of a state word.
export function stateClass(state) {
  const text = String(state || "").toLowerCase();
  if (/(block|lock|fraud|open|escalat|refus|fail|dead|suspend|frozen|revok|clone|gap|mismatch)/.test(text)) return "state bad";
  if (/(pending|wait|held|queued|retry)/.test(text)) return "state warn";
  return "state good";
}

// A state badge.
export function badge(state) {
  return h("span", { class: stateClass(state) }, words(state));
}

// A value of an API object for a person, guessing from the field name: *_ms -> time,
// *_minor with a currency -> amount, amounts as "x KES", booleans as yes/no.
export function field(name, value, currency) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (/(_at_ms|_ms_at|^at_ms|_time_ms|_until_ms|^last_.*_ms)$/.test(name) || /_at$/.test(name) && typeof value === "string" && /^\d{4}-\d\d-\d\dT/.test(value)) {
    return when(value);
  }
  if (/_minor$/.test(name) && currency) return money(value, currency, { minor: true });
  if (/(amount|balance|available|value|limit|float|total|sum)/.test(name) && currency && /^-?\d+(\.\d+)?$/.test(String(value))) {
    return money(value, currency);
  }
  if (typeof value === "string" && /^-?\d+(\.\d+)? [A-Z]{3}$/.test(value)) return money(value);
  if (Array.isArray(value)) return value.length === 0 ? "none" : value.map((item) => (typeof item === "object" ? JSON.stringify(item) : String(item))).join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  if (/(state|status|kind|outcome|rail|role)$/.test(name)) return words(value);
  return String(value);
}

// A definition list of an object's plain fields (secrets never reach the console: the API
// does not send them).
export function facts(object, { skip = [], currency } = {}) {
  const list = h("dl", { class: "facts" });
  const unit = currency || (object && typeof object.currency === "string" ? object.currency : undefined);
  for (const [name, value] of Object.entries(object || {})) {
    if (skip.includes(name) || name === "version") continue;
    if (value !== null && typeof value === "object" && !Array.isArray(value)) continue;
    if (Array.isArray(value) && value.some((item) => item !== null && typeof item === "object")) continue;
    list.append(h("dt", {}, label(name)), h("dd", {}, field(name, value, unit)));
  }
  return list;
}

// A table of objects: columns [{ name, title, render? }].
export function table(caption, rows, columns, { empty = "Nothing to show." } = {}) {
  if (!rows || rows.length === 0) return h("p", { class: "muted" }, `${caption}: ${empty}`);
  return h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((column) => h("th", { scope: "col", class: column.amount ? "amount" : undefined }, column.title || label(column.name))))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((column) => h("td", { class: column.amount ? "amount" : undefined },
      column.render ? column.render(row) : field(column.name, row[column.name], row.currency)))))));
}
