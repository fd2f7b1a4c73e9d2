"""The GraphQL edge: the schema generated from the ontology (scalars, types, naming, builder), the root fields read by
plans (planning → graph engine → shaping, completion), mutations, records, the change feed and its subscription."""
