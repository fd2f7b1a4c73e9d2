// Lineage and audit reads: where a value came from, the audit log page by page, and chain verification.

import { graphql, rest } from "./api.js";
import { maskIndex } from "./masking.js";

const LINEAGE_FIELDS = `twinUid property valueDigest value erased sourceSystem sourceObject recordKey sourceField
  runId mappingRule transform recordedAt`;

/** Provenance records of a twin (one property or all), newest first, with the masking mode of each value. */
export async function lineageOf(uid, property, first = 50) {
  const { data, extensions } = await graphql(
    `query ConsoleLineage($uid: ID!, $property: String, $first: Int) {
      twin(uid: $uid) { uid className }
      lineage(uid: $uid, property: $property, first: $first) { ${LINEAGE_FIELDS} }
    }`,
    { uid, property: property || null, first },
  );
  const masks = maskIndex(extensions);
  const className = data.twin?.className;
  return (data.lineage || []).map((record) => ({ ...record, mode: masks.get(`${className}.${record.property}`) }));
}

/** One page of the audit log, newest first; filters are exact matches (empty = any). */
export async function auditPage({ subject, operation, decision, first = 50, offset = 0 }) {
  const { data } = await graphql(
    `query ConsoleAudit($subject: String, $operation: String, $decision: String, $first: Int, $offset: Int) {
      auditLog(subject: $subject, operation: $operation, decision: $decision, first: $first, offset: $offset) {
        seq time subject roles operation decision policyVersion rowsReturned detail hash
      }
    }`,
    { subject: subject || null, operation: operation || null, decision: decision || null, first, offset },
  );
  return data.auditLog;
}

/** Verify the audit log's hash chain (and signed checkpoints) on the server. */
export async function verifyAuditChain() {
  return rest("/operations/audit/verify");
}
