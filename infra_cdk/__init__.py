"""The CDK app: one construct per concern (network, data, messaging, state, api, consumers, workers, schedules, observability)."""

import os

# jsii starts its Node process on the first `import aws_cdk` and prints a screen-long
# end-of-life banner for Node 20. Every entry point (app, tests) imports this package first.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
