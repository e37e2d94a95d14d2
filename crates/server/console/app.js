// The console's shell: login, the session, the sections menu and the page router (the part of the
// address after #). Pages are in pages.js; every server call goes through api.js.

import * as api from "./api.js";
import { h, when } from "./format.js";
import { PAGES, takeFlash } from "./pages.js";

const $ = (id) => document.getElementById(id);
let session = null;

function showLogin(message) {
  session = null;
  $("who").hidden = true;
  $("sections").hidden = true;
  $("page").replaceChildren();
  $("login-view").hidden = false;
  $("login-error").textContent = message || "";
  $("session-note").textContent = "";
  document.title = "Log in — offpay console";
  $("login-user").focus();
}

function showSession(current) {
  session = current;
  $("login-view").hidden = true;
  $("who").hidden = false;
  $("who-name").textContent = `${current.user} (${current.role})`;
  $("sections").hidden = false;
  for (const link of document.querySelectorAll("#sections a[data-needs]")) {
    link.parentElement.hidden = !api.mayRoute(link.dataset.needs);
  }
  $("session-note").textContent =
    `Session ends after 30 minutes without use, and at the latest 8 hours after login (now: until ${when(current.expires_at_ms)}).`;
}

// The first section the role may open.
function homePage() {
  const first = [...document.querySelectorAll("#sections li:not([hidden]) a")][0];
  return first ? first.getAttribute("href") : "#/search";
}

async function render() {
  if (!session) return;
  const hash = location.hash || homePage();
  if (!location.hash) {
    history.replaceState(null, "", hash);
  }
  const [, name, ...rest] = hash.slice(1).split("/");
  const page = PAGES[name];
  for (const link of document.querySelectorAll("#sections a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const target = $("page");
  if (!page) {
    target.replaceChildren(h("h1", {}, "Not found"), h("p", {}, "There is no such page. Pick a section from the menu."));
    return;
  }
  target.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  try {
    const content = await page(rest.map(decodeURIComponent), { session });
    target.replaceChildren(...[content].flat().filter(Boolean));
    const message = takeFlash();
    if (message) {
      const heading = target.querySelector("h1");
      const flash = h("p", { id: "flash", class: "notice", role: "status" }, message);
      if (heading) heading.after(flash);
      else target.prepend(flash);
    }
  } catch (error) {
    target.replaceChildren(h("h1", {}, "Something went wrong"),
      h("p", { class: "error", role: "alert" }, error.message || String(error)));
  }
  const heading = target.querySelector("h1");
  document.title = `${heading ? heading.textContent : "offpay"} — offpay console`;
}

async function start() {
  api.whenSessionEnds((error) => showLogin(`${error.message} Log in again.`));
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("login-submit");
    button.disabled = true;
    $("login-error").textContent = "";
    try {
      const current = await api.login($("login-user").value.trim(), $("login-token").value);
      $("login-token").value = "";
      showSession(current);
      await render();
      $("main").focus();
    } catch (error) {
      $("login-error").textContent = error.status === 429
        ? `Too many failed logins. ${error.message}`
        : `Login failed: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });
  $("logout").addEventListener("click", async () => {
    await api.logout();
    history.replaceState(null, "", "#");
    showLogin("You are logged out.");
  });
  window.addEventListener("hashchange", () => {
    render().then(() => {
      const heading = $("page").querySelector("h1");
      if (heading) {
        heading.setAttribute("tabindex", "-1");
        heading.focus();
      }
    });
  });
  const current = await api.restore();
  if (current) {
    showSession(current);
    await render();
  } else {
    showLogin("");
  }
}

start();
