// Live data for the Activity view: the twin's change feed over the GraphQL subscription (graphql-transport-ws at
// /graphql, authenticated with the signed-in token) and the connectors' status from /ready.

import { currentSession } from "./session.js";

const CHANGES = "subscription { changes { seq uid kind op className linkType target after } }";

/**
 * Follow the change feed from now on. Calls onChange(change) per change and onState(text, kind) when the connection
 * opens, fails or closes. Returns a function that closes the subscription.
 */
export function followChanges(onChange, onState) {
  const session = currentSession();
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
  const socket = new WebSocket(url, "graphql-transport-ws");
  let closedByUs = false;
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ type: "connection_init", payload: { Authorization: `Bearer ${session?.token || ""}` } }));
  });
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "connection_ack") {
      socket.send(JSON.stringify({ id: "changes", type: "subscribe", payload: { query: CHANGES } }));
      onState("live", "ok");
    } else if (message.type === "next") {
      if (message.payload?.errors?.length) onState(message.payload.errors[0].message, "error");
      const change = message.payload?.data?.changes;
      if (change) onChange(change);
    } else if (message.type === "error") {
      onState(message.payload?.[0]?.message || "the subscription was refused", "error");
    } else if (message.type === "ping") {
      socket.send(JSON.stringify({ type: "pong" }));
    }
  });
  socket.addEventListener("close", (event) => {
    if (!closedByUs) onState(`disconnected${event.reason ? `: ${event.reason}` : ""}`, "error");
  });
  return () => {
    closedByUs = true;
    socket.close(1000);
  };
}

/** The connectors the server's runtime syncs by itself, with schedule, runs and lag (from /ready), by name. */
export async function connectorStatus() {
  const response = await fetch("/ready", { headers: { Accept: "application/json" } });
  const body = await response.json();
  return body.connectors || {};
}
