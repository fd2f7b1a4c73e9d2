// The signed-in session: the bearer token lives in sessionStorage only (gone when the tab closes).

const KEY = "twin.console.session";

/** The roles a token can be asked for with `twin token --role ROLE`. */
export const ROLES = ["architect", "executive", "analyst", "compliance", "viewer", "data_steward", "hr", "admin"];

/** The claims of a JWT, read without verification (the server verifies; this is only for display). */
export function decodeClaims(token) {
  const parts = token.trim().split(".");
  if (parts.length !== 3) throw new Error("this is not a bearer token (expected three dot-separated parts)");
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = new TextDecoder().decode(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
    return JSON.parse(json);
  } catch {
    throw new Error("the token's payload cannot be read; copy the whole output of `twin token`");
  }
}

/** The current session {token, role, claims}, or null when signed out or expired. */
export function currentSession() {
  const raw = sessionStorage.getItem(KEY);
  if (!raw) return null;
  try {
    const session = JSON.parse(raw);
    if (session.claims.exp && session.claims.exp * 1000 < Date.now()) {
      sessionStorage.removeItem(KEY);
      return null;
    }
    return session;
  } catch {
    sessionStorage.removeItem(KEY);
    return null;
  }
}

/** Remember a token for this tab; returns the session. */
export function signIn(token, role) {
  const trimmed = token.trim();
  const claims = decodeClaims(trimmed);
  const session = { token: trimmed, role, claims };
  sessionStorage.setItem(KEY, JSON.stringify(session));
  return session;
}

/** Forget the token. */
export function signOut() {
  sessionStorage.removeItem(KEY);
}
