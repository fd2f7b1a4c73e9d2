"""Decision orchestration: automations turn changes of the twin into alerts and proposed actions; people approve
them under the policy; approved actions run exactly once, write back to their source, and every step is audited."""
