"""Logical <-> physical queue names, including names that end like other names."""

from __future__ import annotations

import pytest

from shared.contracts import QUEUES
from shared.queues.naming import logical_from_arn, physical_name


@pytest.mark.parametrize("logical", sorted(QUEUES))
def test_every_queue_round_trips_through_its_arn(logical: str) -> None:
    arn = f"arn:aws:sqs:eu-west-1:123456789012:{physical_name('orch', logical)}"
    assert logical_from_arn(arn) == logical
    assert logical_from_arn(arn, prefix="orch") == logical


def test_a_name_that_ends_like_another_maps_to_itself() -> None:
    # orch-ansible-deploy-queue also ends with -deploy-queue
    assert logical_from_arn("arn:aws:sqs:local:0:orch-ansible-deploy-queue") == "ansible:deploy:queue"
    assert logical_from_arn("arn:aws:sqs:local:0:orch-deploy-queue") == "deploy:queue"


def test_an_unknown_queue_is_refused() -> None:
    with pytest.raises(ValueError, match="no logical queue"):
        logical_from_arn("arn:aws:sqs:local:0:orch-nothing-here")
