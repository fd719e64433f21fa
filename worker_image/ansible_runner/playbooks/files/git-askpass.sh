#!/bin/sh
# Answers git's credential prompts from the environment: the token is never written to disk.
case "$1" in
  Username*) echo x-access-token ;;
  *) printf '%s\n' "$ORCH_GIT_TOKEN" ;;
esac
