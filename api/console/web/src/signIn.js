// The sign-in screen: paste a bearer token (from `twin token --role ROLE`); nothing is requested from anywhere.

import { h, notice, replace } from "./dom.js";
import { ROLES, signIn } from "./session.js";

/** Render the sign-in form into `root`; `onSignedIn(session)` runs after a token was accepted locally. */
export function signInView(root, onSignedIn, reason) {
  const role = h("select", { id: "sign-in-role", name: "role", "aria-label": "Role" }, ROLES.map((r) => h("option", { value: r }, r)));
  const command = h("code", { id: "token-command" }, `twin token --role ${role.value}`);
  role.addEventListener("change", () => { command.textContent = `twin token --role ${role.value}`; });
  const token = h("textarea", { id: "sign-in-token", name: "token", rows: 5, required: true, spellcheck: false, placeholder: "eyJhbGciOi…", "aria-label": "Bearer token" });
  const message = h("div", { class: "messages" }, reason ? notice("info", reason) : null);
  const form = h("form", { id: "sign-in", class: "card sign-in", onsubmit: (e) => {
    e.preventDefault();
    try {
      onSignedIn(signIn(token.value, role.value));
    } catch (error) {
      replace(message, notice("error", error.message));
    }
  } },
  h("h1", {}, "Enterprise Twin"),
  h("p", { class: "muted" }, "Sign in with a bearer token. What you see is what the access policy lets your token's roles read."),
  h("label", {}, "Role ", role),
  h("p", {}, "Get a development token on the server with ", command, ", or use one from your identity provider."),
  h("label", { class: "block" }, "Token", token),
  message,
  h("button", { type: "submit" }, "Sign in"));
  replace(root, h("div", { class: "sign-in-wrap" }, form));
}
