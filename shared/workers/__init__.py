"""Worker runtimes: where a worker's wrapper process runs (a Fargate task, or a local subprocess)."""
