"""One construct per capability; `infra_cdk.stack.OrchestratorStack` only wires them together."""
