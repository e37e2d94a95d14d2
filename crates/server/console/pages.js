// The console's pages. Each takes the address's parts after its name and returns the nodes to
// show. What a page offers to do follows from the session's role (api.may); the server checks
// again on every call.

import { API, call, freshKey, may } from "./api.js";
import { badge, facts, h, label, money, table, when, words } from "./format.js";
import { lineChart } from "./chart.js";

// ---------------------------------------------------------------------------------------------
// Helpers.

const link = (href, text) => h("a", { href }, text);
const customerLink = (phone) => link(`#/customer/${encodeURIComponent(phone)}`, phone);
const accountLink = (id) => link(`#/account/${encodeURIComponent(id)}`, id);

function items(body, ...names) {
  if (!body) return [];
  if (Array.isArray(body.items)) return body.items;
  for (const name of names) if (Array.isArray(body[name])) return body[name];
  return [];
}

function heading(text, ...rest) {
  return [h("h1", {}, text), ...rest];
}

// A message region under an action.
function note() {
  return h("p", { class: "notice", role: "status" });
}

function showError(where, error) {
  where.className = "error";
  where.setAttribute("role", "alert");
  where.textContent = error.message || String(error);
}

function showDone(where, text) {
  where.className = "notice";
  where.setAttribute("role", "status");
  where.textContent = text;
}

// Reloads the current page (after an action changed what it shows).
function reload() {
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}

// A message to show at the top of the page drawn next (what the last action did).
let flashMessage = null;

export function takeFlash() {
  const message = flashMessage;
  flashMessage = null;
  return message;
}

function flashAndReload(text) {
  flashMessage = text;
  reload();
}

// A button that makes `apiCall` (if the role may) and says what happened.
function actionButton(text, apiCall, options, { danger = false, done, confirmText, status } = {}) {
  if (!may(apiCall)) return null;
  const where = status || note();
  const button = h("button", { type: "button", class: danger ? "danger" : undefined }, text);
  button.addEventListener("click", async () => {
    if (confirmText && !window.confirm(confirmText)) return;
    button.disabled = true;
    try {
      const answer = await call(apiCall, typeof options === "function" ? options() : options);
      flashAndReload(done ? done(answer) : `${text}: done.`);
    } catch (error) {
      showError(where, error);
    } finally {
      button.disabled = false;
    }
  });
  return status ? button : h("span", {}, button, " ", where);
}

// A labelled input in an inline form.
function input(id, text, attributes = {}) {
  return h("p", {}, h("label", { for: id }, text), h("input", { id, name: id, ...attributes }));
}

// A small form that makes `apiCall` with the values of its inputs.
function actionForm(title, apiCall, fields, build, { submit = title, done } = {}) {
  if (!may(apiCall)) return null;
  const where = note();
  const form = h("form", { class: "inline", "aria-label": title }, fields, h("p", {}, h("button", { type: "submit" }, submit)));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form).entries());
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const answer = await call(apiCall, build(values));
      showDone(where, done ? done(answer, values) : `${title}: done.`);
    } catch (error) {
      showError(where, error);
    } finally {
      button.disabled = false;
    }
  });
  return h("section", { class: "card", "aria-label": title }, h("h3", {}, title), form, where);
}

// What a request held for a second user answers.
function heldOrDone(answer, what) {
  if (answer.status === 202 && answer.body && answer.body.approval) {
    const approval = answer.body.approval;
    return `${what} is above the approval amount: it waits for a second finance user (approval ${approval.id}, ${money(approval.value)}).`;
  }
  return `${what}: done.`;
}

// Asks for the user's token again (and a reason, for a refusal); resolves to { token, reason }
// or null when cancelled. The token stays in this closure and the dialog's input, which is
// cleared at once.
function reauthenticate(what, { reason = false } = {}) {
  const dialog = document.getElementById("reauth");
  const token = document.getElementById("reauth-token");
  const reasonInput = document.getElementById("reauth-reason");
  document.getElementById("reauth-what").textContent = what;
  reasonInput.value = "";
  reasonInput.parentElement.hidden = !reason;
  token.value = "";
  return new Promise((resolve) => {
    const form = document.getElementById("reauth-form");
    const cancel = document.getElementById("reauth-cancel");
    const finish = (value) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      token.value = "";
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      finish({ token: token.value, reason: reasonInput.value });
    };
    const onCancel = (event) => {
      event.preventDefault();
      finish(null);
    };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    token.focus();
  });
}

async function optional(apiCall, options) {
  if (!apiCall || !may(apiCall)) return null;
  try {
    return (await call(apiCall, options)).body;
  } catch (error) {
    return { error };
  }
}

function failed(section, result) {
  return result && result.error ? h("p", { class: "error" }, `${section}: ${result.error.message}`) : null;
}

// ---------------------------------------------------------------------------------------------
// Search and the customer view.

function looksLikePhone(text) {
  return /^\+?[\d\s-]{7,20}$/.test(text.trim());
}

const HIT_LINKS = {
  purse: (hit) => `#/purse/${encodeURIComponent(hit.id)}`,
  sms_account: (hit) => `#/sms/account/${encodeURIComponent(hit.id)}`,
  envelope: (hit) => `#/sms/envelope/${encodeURIComponent(hit.id)}`,
  wallet: (hit) => `#/wallets/${encodeURIComponent(hit.id)}`,
  microcheck_payer: (hit) => `#/microcheck/payer/${encodeURIComponent(hit.id)}`,
  ledger_account: (hit) => `#/account/${encodeURIComponent(hit.id)}`,
};

async function searchPage([query = ""]) {
  const box = h("input", { id: "search-q", name: "q", type: "search", value: query, required: true, autocomplete: "off" });
  const form = h("form", { role: "search", class: "inline", "aria-label": "Find a customer" },
    h("p", {}, h("label", { for: "search-q" }, "Phone, account, envelope, wallet or payer"), box),
    h("p", {}, h("button", { type: "submit", id: "search-submit" }, "Search")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/search/${encodeURIComponent(box.value.trim())}`;
  });
  const page = heading("Find a customer", form);
  if (!query) {
    page.push(h("p", { class: "muted" }, "Type a phone number (any spacing), an SMS account number, an envelope number, a wallet id, a payer or merchant name, or a ledger account."));
    return page;
  }
  const results = h("section", { "aria-labelledby": "results-heading" }, h("h2", { id: "results-heading" }, `Results for “${query}”`));
  if (looksLikePhone(query) && may(API.customer)) {
    results.append(h("p", {}, link(`#/customer/${encodeURIComponent(query.trim())}`, `Open the customer view for ${query.trim()}`)));
  }
  const answer = await call(API.search, { query: { q: query } });
  const hits = items(answer.body);
  if (hits.length === 0) {
    results.append(h("p", {}, "Nothing matches."));
  } else {
    results.append(h("ul", { id: "search-results" }, hits.map((hit) => {
      const href = (HIT_LINKS[hit.kind] || (() => null))(hit);
      return h("li", {}, href ? link(href, hit.label || hit.id) : (hit.label || hit.id), " ",
        h("span", { class: "muted" }, `(${words(hit.kind)}, ${words(hit.rail)})`), " ", hit.state ? badge(hit.state) : null);
    })));
  }
  page.push(results);
  return page;
}

function flagCard(flag, { actions = true } = {}) {
  const card = h("article", { class: "card fraud-case", "aria-label": `Case ${flag.summary}` },
    h("h3", {}, flag.summary),
    h("dl", { class: "facts" },
      h("dt", {}, "Case"), h("dd", {}, badge(flag.state || flag.status || "open")),
      h("dt", {}, "Rail"), h("dd", {}, words(flag.rail)),
      h("dt", {}, "Pattern"), h("dd", {}, words(flag.kind)),
      h("dt", {}, "Culprit"), h("dd", { class: "culprit" }, culprit(flag)),
      h("dt", {}, "Raised"), h("dd", {}, when(flag.raised_at))),
    h("details", {}, h("summary", {}, "Evidence"), h("pre", { class: "evidence" }, JSON.stringify(flag.evidence, null, 2))));
  const decisions = flag.decisions || [];
  if (decisions.length > 0) {
    card.append(table("Decisions", decisions, [
      { name: "state", title: "Decision", render: (row) => words(row.state) },
      { name: "by", title: "By" },
      { name: "at", title: "When", render: (row) => when(row.at) },
      { name: "note", title: "Note" },
    ]));
  }
  if (actions) card.append(caseActions(flag));
  return card;
}

// Who the flag is about, as a link to their page.
function culprit(flag) {
  const subject = flag.subject;
  switch (flag.rail) {
    case "purse": return h("span", {}, "purse ", customerLink(subject));
    case "wallet": return h("span", {}, "wallet ", link(`#/wallets/${encodeURIComponent(subject)}`, subject));
    case "microcheck": return h("span", {}, "payer or merchant ", link(`#/microcheck/payer/${encodeURIComponent(subject)}`, subject));
    case "sms": {
      const account = flag.evidence && flag.evidence.account;
      return h("span", {}, "envelope ", link(`#/sms/envelope/${encodeURIComponent(subject)}`, subject),
        account ? [" of account ", link(`#/sms/account/${encodeURIComponent(account)}`, account)] : null);
    }
    default: return subject;
  }
}

// Block and unblock the culprit (the rail's own routes), clear or escalate the case.
function caseActions(flag) {
  const status = note();
  const noteInput = h("input", { id: `note-${flag.id}`, maxlength: 500, class: "case-note" });
  const buttons = [];
  const subject = flag.subject;
  const account = flag.evidence && flag.evidence.account;
  // Each rail's own block and unblock routes (docs/guide/operator-api.md).
  if (flag.rail === "purse") {
    buttons.push(actionButton(`Block purse ${subject}`, API.purseBlock, { params: { phone: subject }, body: { blocked: true } }, { danger: true, status, done: () => `Purse ${subject} is blocked.` }));
    buttons.push(actionButton(`Unblock purse ${subject}`, API.purseBlock, { params: { phone: subject }, body: { blocked: false } }, { status, done: () => `Purse ${subject} is unblocked.` }));
  } else if (flag.rail === "wallet") {
    buttons.push(actionButton(`Block wallet ${subject}`, API.walletBlock, { params: { id: subject } }, { danger: true, status, done: () => `Wallet ${subject} is blocked (a blocked wallet's value is reissued, not unblocked).` }));
  } else if (flag.rail === "microcheck") {
    // The culprit of a microcheck flag is a payer (or a machine, which has no block: the
    // evidence names the payer when there is one).
    const payer = (flag.evidence && flag.evidence.payer) || subject;
    buttons.push(actionButton(`Block payer ${payer}`, API.microcheckPayerBlock, () => ({ params: { name: payer }, body: { reason: noteInput.value || `fraud case ${flag.id}` } }), { danger: true, status, done: () => `Payer ${payer} is blocked: the PA issues it no credential until it is unblocked.` }));
    buttons.push(actionButton(`Unblock payer ${payer}`, API.microcheckPayerUnblock, { params: { name: payer } }, { status, done: () => `Payer ${payer} is unblocked.` }));
  } else if (flag.rail === "sms") {
    if (account) {
      buttons.push(actionButton(`Freeze account ${account}`, API.smsAccountUpdate, { params: { number: account }, body: { active: false } }, { danger: true, status, done: () => `Account ${account} is frozen.` }));
      buttons.push(actionButton(`Unfreeze account ${account}`, API.smsAccountUpdate, { params: { number: account }, body: { active: true } }, { status, done: () => `Account ${account} is active again.` }));
    }
    if (/^\d{11}$/.test(subject)) {
      buttons.push(actionButton(`Unlock envelope ${subject}`, API.smsEnvelopeUnlock, { params: { euin: subject } }, { status, done: () => `Envelope ${subject} is unlocked.` }));
    }
  }
  const state = flag.state || flag.status;
  if (state !== "cleared") {
    buttons.push(actionButton("Clear the case", API.fraudClear, () => ({ params: { id: flag.id }, body: { note: noteInput.value } }), { status, done: () => "The case is cleared." }));
  }
  if (state === "open") {
    buttons.push(actionButton("Escalate", API.fraudEscalate, () => ({ params: { id: flag.id }, body: { note: noteInput.value } }), { status, done: () => "The case is escalated." }));
  }
  const shown = buttons.filter(Boolean);
  if (shown.length === 0) return h("p", { class: "muted" }, "Your role can look at this case but not decide it.");
  return h("div", { class: "case-actions" },
    h("p", {}, h("label", { for: `note-${flag.id}` }, "Note for the decision"), noteInput),
    h("p", { class: "actions" }, shown), status);
}

async function customerPage([phone]) {
  if (!phone) return heading("Customer", h("p", {}, "Search for a customer first: ", link("#/search", "Find a customer"), "."));
  let view;
  try {
    view = (await call(API.customer, { params: { phone } })).body;
  } catch (error) {
    if (error.status === 404) return heading(`Customer ${phone}`, h("p", {}, error.message), h("p", {}, link(`#/search/${encodeURIComponent(phone)}`, "Search instead")));
    throw error;
  }
  const page = heading(`Customer ${view.phone}`);
  const flags = view.fraud_flags || [];
  page.push(h("section", { "aria-labelledby": "flags-heading" }, h("h2", { id: "flags-heading" }, `Fraud flags (${flags.length})`),
    flags.length === 0 ? h("p", {}, "No open fraud flag names this customer.") : flags.map((flag) => flagCard(flag))));
  const purses = view.purses || [];
  page.push(h("section", { "aria-labelledby": "purses-heading" }, h("h2", { id: "purses-heading" }, "Purse (short codes)"),
    purses.length === 0 ? h("p", { class: "muted" }, "No purse.") : purses.map((purse) => h("article", { class: "card" },
      h("h3", {}, `Purse ${purse.phone} (${words(purse.kind)})`),
      h("dl", { class: "facts" },
        h("dt", {}, "State"), h("dd", {}, badge(purse.state)),
        h("dt", {}, "Balance"), h("dd", { class: "balance" }, money(purse.balance, purse.currency)),
        h("dt", {}, "Last sync"), h("dd", {}, purse.last_sync_at ? `${when(purse.last_sync_at)} (upload ${purse.last_sync_sequence})` : "never")),
      h("p", { class: "actions" }, link(`#/purse/${encodeURIComponent(purse.phone)}`, "Purse statement and actions"), " ",
        link(`#/account/${encodeURIComponent(purse.ledger_account)}`, "Ledger statement"))))));
  const accounts = view.sms_accounts || [];
  page.push(h("section", { "aria-labelledby": "sms-heading" }, h("h2", { id: "sms-heading" }, "SMS-TAN accounts"),
    accounts.length === 0 ? h("p", { class: "muted" }, "No SMS-TAN account.") : accounts.map((account) => h("article", { class: "card" },
      h("h3", {}, `Account ${account.receive_number}`),
      h("dl", { class: "facts" },
        h("dt", {}, "State"), h("dd", {}, badge(account.state)),
        h("dt", {}, "Balance"), h("dd", { class: "balance" }, money(account.balance, account.currency)),
        h("dt", {}, "Current envelope"), h("dd", {}, account.current_envelope ? link(`#/sms/envelope/${account.current_envelope}`, account.current_envelope) : "none"),
        h("dt", {}, "Phones allowed to pay"), h("dd", {}, (account.bound_phones || []).join(", ") || "any"),
        h("dt", {}, "Notified at"), h("dd", {}, account.notify_phone || "—")),
      h("p", { class: "actions" }, link(`#/sms/account/${encodeURIComponent(account.receive_number)}`, "Account details and actions"), " ",
        link(`#/account/${encodeURIComponent(account.ledger_account)}`, "Ledger statement"))))));
  page.push(h("section", { "aria-labelledby": "envelopes-heading" }, h("h2", { id: "envelopes-heading" }, "TAN envelopes"),
    table("Envelopes", view.envelopes || [], [
      { name: "euin", title: "Envelope", render: (row) => link(`#/sms/envelope/${row.euin}`, row.euin) },
      { name: "state", title: "State", render: (row) => badge(row.state) },
      { name: "account", title: "Account" },
      { name: "free_rows", title: "Rows left", render: (row) => `${row.free_rows} of ${row.rows}` },
      { name: "consecutive_failures", title: "Wrong codes in a row" },
    ])));
  page.push(h("section", { "aria-labelledby": "ledger-heading" }, h("h2", { id: "ledger-heading" }, "Ledger accounts"),
    table("Balances", view.ledger_accounts || [], [
      { name: "id", title: "Account", render: (row) => accountLink(row.id) },
      { name: "kind", title: "Kind", render: (row) => words(row.kind) },
      { name: "balance", title: "Balance", amount: true, render: (row) => money(row.balance, row.currency) },
      { name: "available", title: "Available", amount: true, render: (row) => money(row.available, row.currency) },
    ])));
  const notLinked = view.not_linked || [];
  if (notLinked.length > 0) {
    page.push(h("section", { "aria-labelledby": "unlinked-heading" }, h("h2", { id: "unlinked-heading" }, "Not linked to a phone"),
      h("ul", {}, notLinked.map((item) => h("li", {}, `${label(item.rail)}: ${item.why}`)))));
  }
  if (view.complete === false) page.push(h("p", { class: "muted" }, "The scan stopped at its bound: there may be more."));
  return page;
}

// A ledger account's statement: every movement with its counterparty.
async function accountPage([id, before]) {
  const options = { params: { id }, query: { limit: 50, before } };
  const answer = (await call(API.accountHistory, options)).body;
  const account = answer.account;
  const page = heading(`Statement of ${account.id}`,
    h("dl", { class: "facts" },
      h("dt", {}, "Kind"), h("dd", {}, words(account.kind)),
      h("dt", {}, "Balance"), h("dd", { id: "statement-balance" }, money(account.balance, account.currency)),
      h("dt", {}, "Available"), h("dd", {}, money(account.available, account.currency)),
      h("dt", {}, "Opened"), h("dd", {}, when(account.created_at_ms))));
  page.push(table("Movements, newest first", answer.entries || [], [
    { name: "committed_at_ms", title: "When", render: (row) => when(row.committed_at_ms) },
    { name: "memo", title: "What", render: (row) => row.memo || row.id },
    { name: "counterparty", title: "Counterparty", render: (row) => accountLink(row.counterparty) },
    { name: "direction", title: "In or out", render: (row) => (row.direction === "credit" ? "in" : "out") },
    { name: "amount", title: "Amount", amount: true, render: (row) => money(`${row.direction === "credit" ? "" : "-"}${row.amount}`, account.currency) },
    { name: "state", title: "State", render: (row) => words(row.pending_state || (row.kind && row.kind.type) || "posted") },
  ]));
  if (answer.next_before) page.push(h("p", {}, link(`#/account/${encodeURIComponent(id)}/${answer.next_before}`, "Older movements")));
  return page;
}

// ---------------------------------------------------------------------------------------------
// Fraud queue.

async function fraudPage([state = "open"]) {
  const picker = h("p", { class: "actions" }, ["open", "escalated", "cleared"].map((choice) =>
    choice === state ? h("strong", {}, words(choice)) : link(`#/fraud/${choice}`, words(choice))));
  const answer = (await call(API.fraud, { query: { state, limit: 100 } })).body;
  const flags = items(answer, "flags").map((item) => (item.flag ? { id: item.key, ...item.flag } : item));
  return heading(`Fraud queue: ${words(state)} cases`, h("nav", { "aria-label": "Case states" }, picker),
    flags.length === 0 ? h("p", {}, `No ${words(state)} case.`) : h("div", { id: "fraud-cases" }, flags.map((flag) => flagCard(flag))),
    answer.next_cursor ? h("p", { class: "muted" }, "More cases follow; decide these first.") : null);
}

// ---------------------------------------------------------------------------------------------
// Finance.

async function financePage() {
  const page = heading("Finance");
  const totals = (await call(API.totals)).body;
  page.push(h("section", { "aria-labelledby": "totals-heading" }, h("h2", { id: "totals-heading" }, "Ledger totals"),
    h("p", { id: "conservation", class: totals.balanced ? "notice" : "error" }, totals.balanced
      ? "Conservation check: every currency sums to zero (money is neither created nor lost)."
      : "Conservation check FAILED: a currency does not sum to zero. Stop and investigate."),
    table("Per currency", totals.currencies || [], [
      { name: "currency", title: "Currency" },
      { name: "accounts", title: "Accounts" },
      { name: "posted_sum_minor", title: "Sum of posted balances", amount: true, render: (row) => money(row.posted_sum_minor, row.currency, { minor: true }) },
      { name: "pending_sum_minor", title: "Sum of pending", amount: true, render: (row) => money(row.pending_sum_minor, row.currency, { minor: true }) },
      { name: "balanced", title: "Balanced", render: (row) => (row.balanced ? "yes" : "NO") },
    ])));
  if (may(API.approvals)) page.push(await approvalsSection());
  const forms = [
    actionForm("Float a purse", API.purseFloat, [
      input("float-phone", "Purse phone", { required: true, autocomplete: "off" }),
      input("float-amount", "Amount", { required: true, inputmode: "decimal", autocomplete: "off" }),
      input("float-memo", "Memo"),
    ], (values) => ({ params: { phone: values["float-phone"].trim() }, body: { amount: values["float-amount"].trim(), memo: values["float-memo"] || undefined }, idempotencyKey: freshKey("console-float") }),
    { done: (answer) => heldOrDone(answer, "The float") }),
    actionForm("Settle an agent purse", API.purseSettle, [
      input("settle-phone", "Agent purse phone", { required: true, autocomplete: "off" }),
      input("settle-amount", "Amount the agent gives up", { required: true, inputmode: "decimal", autocomplete: "off" }),
    ], (values) => ({ params: { phone: values["settle-phone"].trim() }, body: { amount: values["settle-amount"].trim() }, idempotencyKey: freshKey("console-settle") }),
    { done: (answer) => heldOrDone(answer, "The settlement") }),
    actionForm("Charge a wallet from the operator's float", API.walletCharge, [
      input("charge-wallet", "Wallet id", { required: true, autocomplete: "off" }),
      input("charge-amount", "Amount", { required: true, inputmode: "decimal", autocomplete: "off" }),
    ], (values) => ({ params: { id: values["charge-wallet"].trim() }, body: { amount: values["charge-amount"].trim() }, idempotencyKey: freshKey("console-charge") }),
    { done: (answer) => heldOrDone(answer, "The charge") }),
  ].filter(Boolean);
  if (forms.length > 0) page.push(h("section", { "aria-labelledby": "floats-heading" }, h("h2", { id: "floats-heading" }, "Floats and settlements"), forms));
  page.push(await balancesChart());
  return page;
}

async function approvalsSection() {
  const answer = (await call(API.approvals, { query: { state: "pending" } })).body;
  const approvals = items(answer, "approvals");
  const section = h("section", { "aria-labelledby": "approvals-heading" }, h("h2", { id: "approvals-heading" }, `Waiting for a second user (${approvals.length})`));
  if (approvals.length === 0) {
    section.append(h("p", {}, "No request waits for approval."));
    return section;
  }
  section.append(h("ul", { id: "approvals", class: "plain" }, approvals.map((approval) => {
    const status = note();
    const decide = (verb, apiCall) => {
      if (!may(apiCall)) return null;
      const button = h("button", { type: "button", class: verb === "Refuse" ? "danger" : undefined, "data-approval": approval.id }, `${verb} ${money(approval.value)}`);
      button.addEventListener("click", async () => {
        const answerGiven = await reauthenticate(`${verb} ${approval.method} ${decodeURIComponent(approval.path)} for ${money(approval.value)}, asked by ${approval.requester}.`, { reason: verb === "Refuse" });
        if (!answerGiven) return;
        button.disabled = true;
        try {
          const result = await call(apiCall, { params: { id: approval.id }, body: verb === "Refuse" ? { reason: answerGiven.reason } : {}, reauth: answerGiven.token });
          const executed = result.body && result.body.executed;
          flashAndReload(verb === "Approve"
            ? (executed ? `Approved and executed: ${money(approval.value)}, ${decodeURIComponent(approval.path)}.` : "Approved, but the request failed: see the audit log.")
            : "Refused: nothing was applied.");
        } catch (error) {
          showError(status, error);
          button.disabled = false;
        }
      });
      return button;
    };
    return h("li", { class: "card approval" },
      h("p", {}, h("strong", {}, money(approval.value)), ` — ${approval.method} ${decodeURIComponent(approval.path)}`),
      h("p", { class: "muted" }, `Asked by ${approval.requester} (${approval.requester_role}) at ${when(approval.created_at_ms)}; approval ${approval.id}.`),
      h("details", {}, h("summary", {}, "The request"), h("pre", { class: "evidence" }, JSON.stringify(approval.body, null, 2))),
      h("p", { class: "actions" }, decide("Approve", API.approve), decide("Refuse", API.refuse)), status);
  })));
  return section;
}

// Suspense and fees balances over time, rebuilt from each account's history.
async function balancesChart() {
  const section = h("section", { "aria-labelledby": "chart-heading" }, h("h2", { id: "chart-heading" }, "Suspense and fees over time"));
  if (!may(API.accounts) || !may(API.accountHistory)) {
    section.append(h("p", { class: "muted" }, "Your role cannot read the ledger's accounts."));
    return section;
  }
  const listed = items((await call(API.accounts, { query: { limit: 500 } })).body, "accounts");
  const watched = listed.filter((account) => account.kind === "suspense" || account.kind === "fees").slice(0, 4);
  if (watched.length === 0) {
    section.append(h("p", {}, "No suspense or fees account yet."));
    return section;
  }
  const series = [];
  for (const account of watched) {
    const history = (await call(API.accountHistory, { params: { id: account.id }, query: { limit: 500 } })).body;
    // Walk back from today's balance: each movement is the step between two balances.
    let balance = Number(history.account.balance_minor);
    const points = [{ at: Date.now(), value: balance }];
    for (const entry of history.entries || []) {
      if (entry.kind && entry.kind.type === "pending") continue;
      points.push({ at: entry.committed_at_ms, value: balance });
      const amount = Number(entry.amount_minor);
      balance += entry.direction === "credit" ? -amount : amount;
      points.push({ at: entry.committed_at_ms - 1, value: balance });
    }
    series.push({ label: `${account.id} (${money(account.balance, account.currency)} now)`, points, currency: account.currency });
  }
  const currency = series[0].currency;
  section.append(lineChart("Balances of the suspense and fees accounts", series, (value) => money(String(Math.round(value)), currency, { minor: true })));
  section.append(table("Now", watched, [
    { name: "id", title: "Account", render: (row) => accountLink(row.id) },
    { name: "kind", title: "Kind", render: (row) => words(row.kind) },
    { name: "balance", title: "Balance", amount: true, render: (row) => money(row.balance, row.currency) },
  ]));
  return section;
}

// ---------------------------------------------------------------------------------------------
// Rail pages.

async function pursePage([phone]) {
  if (phone) return purseDetail(phone);
  const page = heading("Purses");
  const [purses, scheme] = await Promise.all([
    optional(API.purses, { query: { limit: 200 } }),
    optional(API.purseSchemeKey),
  ]);
  if (scheme) {
    page.push(h("section", { "aria-labelledby": "epochs-heading" }, h("h2", { id: "epochs-heading" }, "Scheme key"), failed("Scheme key", scheme) ||
      h("dl", { class: "facts", id: "scheme-key" },
        h("dt", {}, "Current scheme-key epoch"), h("dd", {}, scheme.scheme_epoch === null ? "none yet" : String(scheme.scheme_epoch)),
        h("dt", {}, "Key generation epoch"), h("dd", {}, scheme.generation_epoch === null ? "none yet" : String(scheme.generation_epoch)),
        h("dt", {}, "Purses provisioned"), h("dd", {}, String(scheme.purses_provisioned)),
        h("dt", {}, "Purses blocked"), h("dd", {}, String(scheme.purses_blocked)))));
  }
  page.push(h("section", { "aria-labelledby": "purses-heading" }, h("h2", { id: "purses-heading" }, "Purses"), failed("Purses", purses) ||
    table("Purses", items(purses), [
      { name: "phone", title: "Phone", render: (row) => link(`#/purse/${encodeURIComponent(row.phone)}`, row.phone) },
      { name: "kind", title: "Kind", render: (row) => words(row.kind) },
      { name: "state", title: "State", render: (row) => badge(row.state) },
      { name: "balance", title: "Balance", amount: true, render: (row) => money(row.balance, row.currency) },
      { name: "last_sync_at", title: "Last sync", render: (row) => (row.last_sync_at ? when(row.last_sync_at) : "never") },
      { name: "last_sync_sequence", title: "Uploads synced", render: (row) => String(row.last_sync_sequence ?? 0) },
    ])));
  return page;
}

async function purseDetail(phone) {
  const purse = (await call(API.purse, { params: { phone } })).body;
  const page = heading(`Purse ${purse.phone}`);
  page.push(h("dl", { class: "facts" },
    h("dt", {}, "Kind"), h("dd", {}, words(purse.kind)),
    h("dt", {}, "State"), h("dd", {}, badge(purse.blocked ? "blocked" : "active")),
    h("dt", {}, "Balance (server's shadow)"), h("dd", {}, money(purse.balance, purse.currency)),
    h("dt", {}, "Balance the purse reported"), h("dd", {}, money(purse.reported_balance, purse.currency)),
    h("dt", {}, "Last sync"), h("dd", {}, purse.last_sync_at ? `${when(purse.last_sync_at)} (upload ${purse.last_sync_sequence})` : "never"),
    h("dt", {}, "Limits valid until"), h("dd", {}, purse.limits ? when(purse.limits.valid_until * 1000) : "—"),
    h("dt", {}, "Largest payment"), h("dd", {}, purse.limits ? money(purse.limits.max_single_payment, purse.currency) : "—"),
    h("dt", {}, "Trust class"), h("dd", {}, purse.trust_class ? words(purse.trust_class) : "—"),
    h("dt", {}, "Largest payment its class allows"), h("dd", {}, purse.class_ceiling ? money(purse.class_ceiling.max_single_payment, purse.currency) : "—"),
    h("dt", {}, "Ledger account"), h("dd", {}, accountLink(purse.ledger_account))));
  const status = note();
  page.push(h("p", { class: "actions" },
    purse.blocked
      ? actionButton("Unblock this purse", API.purseBlock, { params: { phone }, body: { blocked: false } }, { status })
      : actionButton("Block this purse", API.purseBlock, { params: { phone }, body: { blocked: true } }, { danger: true, status, confirmText: `Block purse ${phone}? It is refused at its next sync.` }),
    status));
  const syncs = await optional(API.purseSyncs, { params: { phone }, query: { limit: 50 } });
  if (syncs) {
    page.push(h("section", { "aria-labelledby": "syncs-heading" }, h("h2", { id: "syncs-heading" }, "Syncs"), failed("Syncs", syncs) ||
      table("Last syncs, newest first", items(syncs), [
        { name: "synced_at", title: "When", render: (row) => when(row.synced_at) },
        { name: "sequence", title: "Upload" },
        { name: "entries", title: "Entries uploaded" },
        { name: "postings", title: "Postings" },
        { name: "reported_balance", title: "Balance reported", amount: true, render: (row) => money(row.reported_balance, row.currency) },
        { name: "shadow_balance", title: "Server's shadow", amount: true, render: (row) => money(row.shadow_balance, row.currency) },
        { name: "balances_agree", title: "Agree", render: (row) => (row.balances_agree ? "yes" : badge("mismatch")) },
        { name: "flags", title: "Flagged", render: (row) => (row.flags_total ? `${row.flags.map(words).join(", ")}${row.flags_total > row.flags.length ? ` and ${row.flags_total - row.flags.length} more` : ""}` : "nothing") },
      ], { empty: "no sync since the server began keeping them." })));
  }
  if (may(API.purseStatement)) {
    const statement = (await call(API.purseStatement, { params: { phone } })).body;
    page.push(table("Statement", statement.lines || [], [
      { name: "at_ms", title: "When", render: (row) => when(row.at_ms) },
      { name: "what", title: "What" },
      { name: "amount", title: "Amount", amount: true, render: (row) => money(row.amount, row.currency) },
    ]));
  }
  return page;
}

async function smsPage([what, id]) {
  if (what === "account" && id) return smsAccountPage(id);
  if (what === "envelope" && id) return smsEnvelopePage(id);
  const page = heading("SMS payments");
  const [status, outbox, dead, sent] = await Promise.all([
    optional(API.smsStatus), optional(API.smsOutbox), optional(API.smsDeadLetters, { query: { limit: 100 } }), optional(API.smsSent),
  ]);
  if (status && !status.error) {
    const handed = Number(status.sent || 0);
    const failures = Number(status.send_failures || 0);
    const attempts = handed + failures;
    const rate = attempts === 0 ? "no attempt yet" : `${Math.round((handed * 1000) / attempts) / 10} % of ${attempts} attempts handed to the gateway`;
    page.push(h("section", { "aria-labelledby": "delivery-heading" }, h("h2", { id: "delivery-heading" }, "Delivery since the server started"),
      h("dl", { class: "facts" },
        h("dt", {}, "Gateway"), h("dd", {}, status.kannel ? "Kannel" : "webhook or none configured"),
        h("dt", {}, "Delivery rate"), h("dd", { id: "delivery-rate" }, rate),
        h("dt", {}, "Inbound messages"), h("dd", {}, String(status.inbound)),
        h("dt", {}, "Gateway retries absorbed"), h("dd", {}, String(status.duplicates)),
        h("dt", {}, "Sent"), h("dd", {}, String(status.sent)),
        h("dt", {}, "Failed sends"), h("dd", {}, String(status.send_failures)))));
  }
  const messages = [
    { name: "to", title: "To" },
    // The API never shows a text (it may hold a TAN): its length, and whether it is still kept.
    { name: "text_chars", title: "Message", render: (row) => row.text_kept === undefined ? "—" : row.text_kept ? `${row.text_chars} characters (text not shown)` : "not kept once delivered" },
    { name: "queued_at_ms", title: "Queued", render: (row) => when(row.queued_at_ms || row.queued_at) },
    { name: "attempts", title: "Attempts" },
    { name: "last_error", title: "Last error", render: (row) => row.last_error || "—" },
  ];
  if (outbox) page.push(h("section", { "aria-labelledby": "outbox-heading" }, h("h2", { id: "outbox-heading" }, "Outbox"), failed("Outbox", outbox) || table("Waiting to be sent", items(outbox, "outbox"), messages)));
  if (dead) page.push(h("section", { "aria-labelledby": "dead-heading" }, h("h2", { id: "dead-heading" }, "Dead letters"), failed("Dead letters", dead) || table("Given up after retries", items(dead, "dead_letters"), messages)));
  if (sent) page.push(h("section", { "aria-labelledby": "sent-heading" }, h("h2", { id: "sent-heading" }, "Sent"), failed("Sent", sent) || table("Handed to the gateway", items(sent, "sent"), messages)));
  return page;
}

async function smsAccountPage(number) {
  const account = (await call(API.smsAccount, { params: { number } })).body;
  const status = note();
  return heading(`SMS-TAN account ${account.receive_number}`,
    facts(account, { skip: ["limits"] }),
    h("p", { class: "actions" },
      account.active
        ? actionButton("Freeze this account", API.smsAccountUpdate, { params: { number }, body: { active: false } }, { danger: true, status })
        : actionButton("Unfreeze this account", API.smsAccountUpdate, { params: { number }, body: { active: true } }, { status }),
      status),
    h("p", {}, accountLink(account.ledger_account)));
}

async function smsEnvelopePage(euin) {
  const envelope = (await call(API.smsEnvelope, { params: { euin } })).body;
  const status = note();
  return heading(`Envelope ${envelope.euin}`,
    h("dl", { class: "facts" },
      h("dt", {}, "State"), h("dd", {}, badge(envelope.status || envelope.state)),
      h("dt", {}, "Account"), h("dd", {}, envelope.account ? link(`#/sms/account/${envelope.account}`, envelope.account) : "not bound"),
      h("dt", {}, "Rows left"), h("dd", {}, `${envelope.free_rows} of ${envelope.rows}`),
      h("dt", {}, "Rows used"), h("dd", {}, (envelope.used_rows || []).join(", ") || "none"),
      h("dt", {}, "Wrong codes in a row"), h("dd", {}, String(envelope.consecutive_failures))),
    h("p", { class: "actions" },
      actionButton("Unlock this envelope", API.smsEnvelopeUnlock, { params: { euin } }, { status }),
      status));
}

async function walletsPage([id]) {
  if (id) return walletDetail(id);
  const wallets = await optional(API.wallets, { query: { limit: 200 } });
  return heading("Wallet office", failed("Wallets", wallets) ||
    table("Wallets", items(wallets, "wallets"), [
      { name: "wallet_id", title: "Wallet", render: (row) => link(`#/wallets/${encodeURIComponent(row.wallet_id || row.id)}`, row.wallet_id || row.id) },
      { name: "state", title: "State", render: (row) => badge(row.state || (row.blocked ? "blocked" : "active")) },
      { name: "balance", title: "Balance", amount: true, render: (row) => money(row.balance, row.currency) },
      { name: "open_transfers", title: "Open transfers", render: (row) => String(Array.isArray(row.open_transfers) ? row.open_transfers.length : row.open_transfers ?? "—") },
    ]));
}

async function walletDetail(id) {
  const wallet = (await call(API.wallet, { params: { id } })).body;
  const account = wallet.account || {};
  const status = note();
  const blocked = wallet.blocked_at_ms !== null && wallet.blocked_at_ms !== undefined;
  return heading(`Wallet ${wallet.wallet_id}`,
    h("dl", { class: "facts" },
      h("dt", {}, "State"), h("dd", {}, badge(blocked ? "blocked" : "active")),
      h("dt", {}, "Balance"), h("dd", {}, money(account.balance, account.currency)),
      h("dt", {}, "Credential expires"), h("dd", {}, wallet.credential ? when(wallet.credential.expires_at_ms) : "—"),
      h("dt", {}, "Largest payment"), h("dd", {}, wallet.credential ? money(wallet.credential.payment_max, wallet.credential.currency) : "—"),
      h("dt", {}, "Charges"), h("dd", {}, `${wallet.charges_applied} of ${wallet.charges} applied`),
      h("dt", {}, "Open transfers"), h("dd", {}, String((wallet.open_transfers || []).length)),
      h("dt", {}, "Case"), h("dd", {}, wallet.case ? JSON.stringify(wallet.case) : "none"),
      h("dt", {}, "Ledger account"), h("dd", {}, account.id ? accountLink(account.id) : "—")),
    h("p", { class: "actions" },
      blocked
        ? h("span", { class: "muted" }, "A blocked wallet is not unblocked: finance reissues its value to a new wallet.")
        : actionButton("Block this wallet", API.walletBlock, { params: { id } }, { danger: true, status }),
      status));
}

async function microcheckPage([what, name]) {
  if (what === "payer" && name) return payerDetail(name);
  const page = heading("Microchecks");
  const [strategy, payers, merchants, deposits, strikes] = await Promise.all([
    optional(API.microcheckStrategy), optional(API.microcheckPayers, { query: { limit: 200 } }),
    optional(API.microcheckMerchants, { query: { limit: 200 } }), optional(API.microcheckDeposits, { query: { limit: 50 } }),
    optional(API.microcheckStrikes, { query: { limit: 200 } }),
  ]);
  if (strategy && strategy.strategy) {
    const s = strategy.strategy;
    page.push(h("section", { "aria-labelledby": "strategy-heading" }, h("h2", { id: "strategy-heading" }, "Risk strategy"),
      h("dl", { class: "facts" },
        h("dt", {}, "Application domain"), h("dd", {}, s.app_domain),
        h("dt", {}, "Online purchase up to"), h("dd", {}, money(s.transaction_amount_max, s.currency)),
        h("dt", {}, "Online purchases a day"), h("dd", {}, String(s.transaction_day_max)),
        h("dt", {}, "Purchases per machine a day"), h("dd", {}, String(s.machine_day_purchases_max)),
        h("dt", {}, "Fastest believable travel"), h("dd", {}, `${s.travel_speed_kmh_max} km/h`)),
      table("Credential tiers", s.tiers || [], [
        { name: "name", title: "Tier" },
        { name: "amount_max", title: "Up to per purchase", amount: true, render: (row) => money(row.amount_max, s.currency) },
        { name: "per_merchant_day_max", title: "Per merchant a day" },
        { name: "validity_seconds", title: "Valid for", render: (row) => `${Math.round(row.validity_seconds / 3600)} hours` },
      ])));
  }
  if (deposits) {
    page.push(h("section", { "aria-labelledby": "deposits-heading" }, h("h2", { id: "deposits-heading" }, "Deposits"), failed("Deposits", deposits) ||
      depositTable("Microchecks of the last deposits (per machine, newest first)", items(deposits))));
  }
  if (strikes) {
    page.push(h("section", { "aria-labelledby": "strikes-heading" }, h("h2", { id: "strikes-heading" }, "Strikes and blocks"), failed("Strikes", strikes) ||
      table("Payers with strikes or blocked", items(strikes), [
        { name: "payer", title: "Payer", render: (row) => link(`#/microcheck/payer/${encodeURIComponent(row.payer)}`, row.payer) },
        { name: "disputes", title: "Disputes" },
        { name: "bounces", title: "Bounced" },
        { name: "strikes", title: "Strikes", render: (row) => `${row.strikes} of ${row.strikes_max}` },
        { name: "effect", title: "What the PA issues" },
        { name: "blocked", title: "Blocked", render: (row) => (row.blocked ? [badge("blocked"), ` since ${when(row.blocked_at)}`, row.block_reason ? ` (${row.block_reason})` : ""] : "no") },
      ], { empty: "no payer has a strike or a block." })));
  }
  page.push(h("section", { "aria-labelledby": "payers-heading" }, h("h2", { id: "payers-heading" }, "Payers"), failed("Payers", payers) ||
    table("Payers", items(payers, "payers"), [
      { name: "payer", title: "Payer", render: (row) => link(`#/microcheck/payer/${encodeURIComponent(row.payer || row.name)}`, row.payer || row.name) },
      { name: "state", title: "State", render: (row) => badge(row.state || "active") },
      { name: "balance", title: "Balance", amount: true, render: (row) => money(row.balance, row.currency) },
      { name: "disputes", title: "Disputes", render: (row) => String(row.disputes ?? 0) },
    ])));
  page.push(h("section", { "aria-labelledby": "merchants-heading" }, h("h2", { id: "merchants-heading" }, "Merchants"), failed("Merchants", merchants) ||
    table("Merchants", items(merchants, "merchants"), [
      { name: "merchant", title: "Merchant", render: (row) => row.merchant || row.id || row.name },
      { name: "state", title: "State", render: (row) => badge(row.state || "active") },
      { name: "balance", title: "Balance", amount: true, render: (row) => money(row.balance, row.currency) },
    ])));
  return page;
}

// One row per deposited microcheck: the machine, when it deposited, the payer, the amount and
// whether it was paid (refused ones with the reason).
function depositTable(caption, deposits) {
  const rows = deposits.flatMap((deposit) => (deposit.items || []).map((item) => ({ ...item, merchant: deposit.merchant, received_at: deposit.received_at })));
  return table(caption, rows, [
    { name: "received_at", title: "Deposited", render: (row) => when(row.received_at) },
    { name: "merchant", title: "Machine" },
    { name: "payer", title: "Payer", render: (row) => (row.payer ? link(`#/microcheck/payer/${encodeURIComponent(row.payer)}`, row.payer) : "unknown") },
    { name: "amount", title: "Amount", amount: true, render: (row) => money(row.amount, row.currency) },
    { name: "state", title: "Outcome", render: (row) => [badge(row.state === "posted" ? (row.bounced ? "paid from suspense" : "paid") : "refused"), row.reason ? ` ${row.reason}` : ""] },
    { name: "flags", title: "Flags", render: (row) => (row.flags && row.flags.length ? row.flags.map(words).join(", ") : "none") },
  ], { empty: "no deposit kept yet." });
}

async function payerDetail(name) {
  const payer = (await call(API.microcheckPayer, { params: { name } })).body;
  const status = note();
  const reasonId = "block-reason";
  const reason = h("input", { id: reasonId, maxlength: 200 });
  const actions = payer.blocked
    ? actionButton("Unblock this payer", API.microcheckPayerUnblock, { params: { name } }, { status, done: () => `Payer ${name} is unblocked: its device gets credentials again.` })
    : actionButton("Block this payer", API.microcheckPayerBlock, () => ({ params: { name }, body: { reason: reason.value } }), { danger: true, status, confirmText: `Block payer ${name}? The PA issues it no credential; microchecks it already signed are still paid to the machines.`, done: () => `Payer ${name} is blocked.` });
  const page = heading(`Payer ${payer.payer}`,
    h("dl", { class: "facts", id: "payer-state" },
      h("dt", {}, "State"), h("dd", {}, payer.blocked ? [badge("blocked"), ` since ${when(payer.blocked_at)}`, payer.block_reason ? ` (${payer.block_reason})` : ""] : badge("active")),
      h("dt", {}, "Balance"), h("dd", {}, money(payer.balance, payer.currency)),
      h("dt", {}, "Strikes"), h("dd", {}, `${payer.strikes ?? 0} (disputes ${payer.disputes}, bounced ${payer.bounces})`),
      h("dt", {}, "Adult"), h("dd", {}, payer.adult ? "yes" : "no"),
      h("dt", {}, "Device key"), h("dd", {}, payer.key_fingerprint)),
    h("p", { class: "muted" }, "A microcheck payer's exposure is bounded by its credentials' limits and lifetimes; the Provisioning Agent lowers them with each strike and issues nothing to a blocked payer. Microchecks signed before a block are still paid to the machines."),
    actions && !payer.blocked ? h("p", {}, h("label", { for: reasonId }, "Reason for the block"), reason) : null,
    actions ? h("p", { class: "actions" }, actions, status) : null,
    h("p", {}, accountLink(`mc:payer:${payer.payer}`)));
  const deposits = await optional(API.microcheckDeposits, { query: { payer: name, limit: 50 } });
  if (deposits) {
    page.push(h("section", { "aria-labelledby": "payer-deposits-heading" }, h("h2", { id: "payer-deposits-heading" }, "Deposits holding its microchecks"), failed("Deposits", deposits) ||
      depositTable("Deposits holding its microchecks", items(deposits).map((deposit) => ({ ...deposit, items: deposit.items.filter((item) => item.payer === name) })))));
  }
  return page;
}

// ---------------------------------------------------------------------------------------------
// Audit log.

async function auditPage([after]) {
  const [verification, log] = await Promise.all([
    call(API.auditVerify).then((answer) => answer.body),
    call(API.audit, { query: { limit: 100, cursor: after } }).then((answer) => answer.body),
  ]);
  const entries = items(log, "entries");
  const page = heading("Audit log");
  page.push(h("p", { id: "audit-verified", class: verification.ok ? "notice" : "error", role: "status" }, verification.ok
    ? `Chain verified: all ${verification.entries_checked} entries check out (newest is number ${verification.head_number}).`
    : `Chain BROKEN at entry ${verification.first_break && verification.first_break.number}: ${verification.first_break && verification.first_break.problem}`));
  page.push(table("Entries", entries, [
    { name: "number", title: "Number" },
    { name: "at_ms", title: "When", render: (row) => when(row.at_ms || row.at) },
    { name: "user", title: "Who", render: (row) => (row.user ? `${row.user} (${row.role || "?"})` : "unknown") },
    { name: "remote", title: "From" },
    { name: "action", title: "What" },
    { name: "outcome", title: "Outcome" },
  ]));
  const next = log.next_cursor || log.next_after;
  if (next) page.push(h("p", {}, link(`#/audit/${encodeURIComponent(next)}`, "Later entries")));
  return page;
}

export const PAGES = {
  search: searchPage,
  customer: customerPage,
  account: accountPage,
  fraud: fraudPage,
  finance: financePage,
  purse: pursePage,
  sms: smsPage,
  wallets: walletsPage,
  microcheck: microcheckPage,
  audit: auditPage,
};
