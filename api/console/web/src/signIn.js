// The sign-in screen: single sign-on through the identity provider when the server names one, and for local
// development a bearer token pasted from `twin token --role ROLE`.

import { h, notice, replace } from "./dom.js";
import { ROLES, signIn } from "./session.js";
import { startSignOn } from "./signOn.js";

/** The "sign in with your identity provider" part, when the server configured one. */
function signOnPart(signOn, message) {
  if (!signOn?.issuer) return null;
  const button = h("button", { type: "button", id: "sign-on", onclick: async () => {
    button.disabled = true;
    try {
      await startSignOn(signOn);
    } catch (error) {
      button.disabled = false;
      replace(message, notice("error", error.message));
    }
  } }, "Sign in with your identity provider");
  return h("div", { class: "sign-on" },
    button,
    h("p", { class: "muted" }, `Signs you in at ${signOn.issuer}; your roles come from its token.`),
    h("h2", {}, "Or, for local development"));
}

/** Render the sign-in form into `root`; `onSignedIn(session)` runs after a token was accepted locally. */
export function signInView(root, onSignedIn, reason, signOn) {
  const role = h("select", { id: "sign-in-role", name: "role", "aria-label": "Role" }, ROLES.map((r) => h("option", { value: r }, r)));
  const command = h("code", { id: "token-command" }, `twin token --role ${role.value}`);
  role.addEventListener("change", () => { command.textContent = `twin token --role ${role.value}`; });
  const token = h("textarea", { id: "sign-in-token", name: "token", rows: 5, required: true, spellcheck: false, placeholder: "eyJhbGciOi…", "aria-label": "Bearer token" });
  const message = h("div", { class: "messages" }, reason ? notice("info", reason) : null);
  const sso = signOnPart(signOn, message);
  const form = h("form", { id: "sign-in", class: "card sign-in", onsubmit: (e) => {
    e.preventDefault();
    try {
      onSignedIn(signIn(token.value, role.value));
    } catch (error) {
      replace(message, notice("error", error.message));
    }
  } },
  h("h1", {}, "Enterprise Twin"),
  h("p", { class: "muted" }, "What you see is what the access policy lets your token's roles read."),
  sso,
  h("label", {}, "Role ", role),
  h("p", {}, "Get a development token on the server with ", command, ", or use one from your identity provider."),
  h("label", { class: "block" }, "Token", token),
  message,
  h("button", { type: "submit" }, "Sign in"));
  replace(root, h("div", { class: "sign-in-wrap" }, form));
}
