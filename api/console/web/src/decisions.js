// Alerts and proposed actions of the automations, through the governed GraphQL API: what the token may see, masked.

import { graphql } from "./api.js";

const ALERT_FIELDS = "id automation severity state twin className message evidence fired snoozed snoozedUntil createdAt updatedBy";
const PROPOSAL_FIELDS = "id automation actionType parameters twin className state proposer reason evidence result approvedBy createdAt expiresAt mayApprove";

/** Open (and acknowledged) alerts and open proposals, newest first. */
export async function inbox() {
  const { data } = await graphql(`query Inbox {
    alerts(states: ["open", "acknowledged"], first: 100) { nodes { ${ALERT_FIELDS} } }
    proposals(states: ["proposed", "approved", "executed", "failed"], first: 100) { nodes { ${PROPOSAL_FIELDS} } }
  }`);
  return { alerts: data.alerts.nodes, proposals: data.proposals.nodes };
}

/** Approve or reject a proposal (reject needs a reason); the proposal as it now stands. */
export async function decide(id, action, reason) {
  const field = action === "approve" ? "approveProposal" : "rejectProposal";
  const type = action === "approve" ? "String" : "String!";
  const { data } = await graphql(`mutation Decide($id: ID!, $reason: ${type}) {
    ${field}(id: $id, reason: $reason) { ${PROPOSAL_FIELDS} }
  }`, { id, reason });
  return data[field];
}

/** Acknowledge or resolve an alert. */
export async function updateAlert(id, action) {
  const field = action === "acknowledge" ? "acknowledgeAlert" : "resolveAlert";
  const { data } = await graphql(`mutation Alert($id: ID!) { ${field}(id: $id) { ${ALERT_FIELDS} } }`, { id });
  return data[field];
}
