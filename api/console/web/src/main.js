// The console's shell: sign-in, navigation between the views, and the hash router.

import "./styles.css";
import { h, notice, replace } from "./dom.js";
import { resetSchemaCache, schemaOverview } from "./schema.js";
import { currentSession, signIn, signOut } from "./session.js";
import { signInView } from "./signIn.js";
import { completeSignOn, signOnConfig } from "./signOn.js";
import { activityView } from "./views/activity.js";
import { auditView } from "./views/audit.js";
import { forecastsView } from "./views/forecasts.js";
import { graphView } from "./views/graph.js";
import { inboxView } from "./views/inbox.js";
import { lineageView } from "./views/lineage.js";
import { scenariosView } from "./views/scenarios.js";

const VIEWS = {
  graph: { title: "Graph explorer", render: graphView },
  scenarios: { title: "Scenarios", render: scenariosView },
  forecasts: { title: "Forecasts", render: forecastsView },
  lineage: { title: "Lineage", render: lineageView },
  audit: { title: "Audit", render: auditView },
  activity: { title: "Activity", render: activityView },
  inbox: { title: "Inbox", render: inboxView },
};
const HOME_BY_ROLE = { executive: "scenarios", compliance: "audit" };

const app = document.getElementById("app");
let teardown = () => {};
let signOn = { issuer: null };
let expiry = null;

function route() {
  const [name, ...params] = location.hash.replace(/^#\/?/, "").split("?")[0].split("/");
  return { name, params: params.filter(Boolean) };
}

function home(session) {
  const roles = session.claims.roles || [];
  const role = roles.includes(session.role) ? session.role : roles[0];
  return HOME_BY_ROLE[role] || "graph";
}

function shell(session, active) {
  const roles = (session.claims.roles || []).join(", ") || "no roles";
  const mismatch = session.role && !(session.claims.roles || []).includes(session.role);
  const main = h("main", { id: "view" });
  replace(app,
    h("header", { class: "topbar" },
      h("span", { class: "brand" }, "Enterprise Twin"),
      h("nav", {}, Object.entries(VIEWS).map(([name, view]) =>
        h("a", { href: `#/${name}`, class: name === active ? "active" : "", "aria-current": name === active ? "page" : null }, view.title))),
      h("span", { class: "spacer" }),
      h("span", { id: "whoami", class: "whoami", dataset: { roles } }, `${session.claims.sub || "?"} · ${roles}`),
      h("button", { class: "secondary small", id: "sign-out", onclick: () => { signOut(); render("signed out"); } }, "Sign out")),
    mismatch ? notice("info", `You picked ${session.role}, but the token grants ${roles}; the token's roles apply.`) : null,
    main);
  return main;
}

/** Ask the API once right after sign-in, so a token the server does not trust is refused at the door. */
async function checkToken() {
  resetSchemaCache();
  try {
    await schemaOverview();
  } catch (error) {
    if (error.status !== 401) {
      signOut();
      render(`The API could not be reached with this token: ${error.message}`);
    }
    return;
  }
  history.replaceState(null, "", location.pathname);
  render();
}

/** End the session when its token expires: back to the sign-in page, saying why. */
function watchExpiry(session) {
  clearTimeout(expiry);
  if (!session.claims.exp) return;
  expiry = setTimeout(() => {
    signOut();
    render("Your session expired; sign in again.");
  }, Math.max(session.claims.exp * 1000 - Date.now(), 0));
}

function render(reason) {
  teardown();
  teardown = () => {};
  const session = currentSession();
  if (!session) {
    clearTimeout(expiry);
    resetSchemaCache();
    signInView(app, () => checkToken(), reason, signOn);
    return;
  }
  watchExpiry(session);
  let { name, params } = route();
  if (!VIEWS[name]) {
    name = home(session);
    history.replaceState(null, "", `#/${name}`);
  }
  const main = shell(session, name);
  document.title = `${VIEWS[name].title} · Enterprise Twin`;
  teardown = VIEWS[name].render(main, params) || (() => {});
}

/** Start: learn whether the server names an identity provider, finish a sign-on coming back from it, render. */
async function boot() {
  signOn = await signOnConfig();
  if (signOn.issuer) {
    try {
      const token = await completeSignOn(signOn);
      if (token) {
        signIn(token, null);
        await checkToken();
        return;
      }
    } catch (error) {
      render(error.message);
      return;
    }
  }
  render();
}

window.addEventListener("hashchange", () => render());
window.addEventListener("twin:unauthenticated", (event) => {
  signOut();
  render(`The server refused the token (${event.detail}); sign in again.`);
});
boot();
