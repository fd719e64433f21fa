"""The worker manager: worker:commands in, workers started/stopped, worker:responses out."""
