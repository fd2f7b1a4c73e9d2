// Single sign-on through the deployment's OpenID Connect provider: the authorization-code flow with PKCE for a public
// client (no secret in the page). The verifier, state and nonce wait in sessionStorage during the round trip to the
// provider; the tokens it returns end up in the session (sessionStorage, as a pasted token does).

const PENDING = "twin.console.signOn";

/** The console's sign-on settings from the server ({issuer, clientId, scope} or {issuer: null}). */
export async function signOnConfig() {
  try {
    const response = await fetch("sign-on.json", { headers: { Accept: "application/json" } });
    return response.ok ? await response.json() : { issuer: null };
  } catch {
    return { issuer: null };
  }
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomText(size = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

async function discover(issuer) {
  const response = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (!response.ok) throw new Error(`the identity provider ${issuer} did not answer its discovery document (HTTP ${response.status})`);
  const metadata = await response.json();
  if (metadata.issuer !== issuer && metadata.issuer !== issuer.replace(/\/$/, "")) {
    throw new Error(`the identity provider calls itself ${metadata.issuer}, not ${issuer}`);
  }
  return metadata;
}

function redirectUri() {
  return `${location.origin}${location.pathname}`;
}

/** Send the browser to the provider's login page (state, nonce and the PKCE verifier kept for the way back). */
export async function startSignOn(config) {
  const metadata = await discover(config.issuer);
  const verifier = randomText(48);
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const pending = { verifier, state: randomText(), nonce: randomText(), tokenEndpoint: metadata.token_endpoint };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const url = new URL(metadata.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: config.clientId,
    redirect_uri: redirectUri(),
    scope: config.scope || "openid",
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: challenge,
    code_challenge_method: "S256",
  }).toString();
  location.assign(url.toString());
}

function claimsOf(token) {
  const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))));
}

/**
 * When the provider sent the browser back (?code=…&state=…), exchange the code for tokens and return the bearer
 * token for the API: the access token when it is a JWT, else the ID token (whose audience is the console's client).
 * Returns null when this page load is not a way back; throws with a readable message when the sign-on failed.
 */
export async function completeSignOn(config) {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return null;
  history.replaceState(null, "", location.pathname + location.hash);
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  if (params.has("error")) throw new Error(`the identity provider refused the sign-in: ${params.get("error_description") || params.get("error")}`);
  if (!pending || params.get("state") !== pending.state) throw new Error("the sign-in answer does not belong to this tab (state mismatch); sign in again");
  const response = await fetch(pending.tokenEndpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: redirectUri(),
      client_id: config.clientId,
      code_verifier: pending.verifier,
    }),
  });
  const tokens = await response.json().catch(() => ({}));
  if (!response.ok || !tokens.id_token) {
    throw new Error(`the identity provider did not issue tokens: ${tokens.error_description || tokens.error || `HTTP ${response.status}`}`);
  }
  if (claimsOf(tokens.id_token).nonce !== pending.nonce) throw new Error("the ID token was not issued for this sign-in (nonce mismatch)");
  const access = tokens.access_token || "";
  return access.split(".").length === 3 ? access : tokens.id_token;
}
