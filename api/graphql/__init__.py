"""The GraphQL edge: the schema generated from the ontology and its resolvers."""
