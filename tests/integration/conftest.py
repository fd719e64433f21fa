from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from shared.queues.local import LocalQueue
from shared.queues.port import QueuePort
from shared.queues.sqs import SqsQueue

MAX_RECEIVES = 2


@pytest.fixture(params=["local", "sqs"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueuePort]:
    """The same contract, once per adapter. Default visibility timeout 0 so redelivery tests are quick;
    tests that need a hidden message pass an explicit timeout to `receive`."""
    if request.param == "local":
        local = LocalQueue(tmp_path / "queue.db", max_receives=MAX_RECEIVES, visibility_timeout=0)
        yield local
        local.close()
    else:
        with mock_aws():
            sqs = SqsQueue(
                "test", client=boto3.client("sqs", region_name="us-east-1"), max_receives=MAX_RECEIVES
            )
            sqs.ensure_queues(visibility_timeout=0)
            yield sqs


@pytest.fixture
def embedded_home() -> Iterator[Path]:
    """$ORCH_HOME (the suite's per-test one); the stack's start-up may change the environment: restored."""
    saved = dict(os.environ)
    try:
        yield Path(os.environ["ORCH_HOME"])
    finally:
        os.environ.clear()
        os.environ.update(saved)
